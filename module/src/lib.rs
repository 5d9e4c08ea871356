//! The rcluster Redis module: the registration table of every `RC.*` command with its flags, the
//! module's configuration, the `INFO rcluster` section, and the server-event hooks that keep its
//! counters true across loads and flushes.

pub mod alloc;
pub mod cluster;
pub mod commands;
pub mod coord;
pub mod guard;
pub mod settings;
pub mod stats;
pub mod store;

use std::cell::Cell;

use rcluster_domain::keys::{chunk_field, classify, RecordKind};
use redis_module::configuration::ConfigurationFlags;
use redis_module::server_events::{FlushSubevent, LoadingSubevent};
use redis_module::{redis_module, Context, InfoContext, KeysCursor, RedisResult, RedisString};
use redis_module_macros::{cron_event_handler, flush_event_handler, loading_event_handler};

use commands::{chunk, clock, debug, hint, kv, quorum};
use stats::Cmd;

/// The module version as Redis shows it (`MODULE LIST`): major * 10000 + minor * 100 + patch.
pub const MODULE_VERSION: i32 = 100;

fn rc_set(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::Set, ctx, args, quorum::set)
}
fn rc_get(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::Get, ctx, args, quorum::get)
}
fn rc_del(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::Del, ctx, args, quorum::del)
}
fn rc_locate(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::Locate, ctx, args, quorum::locate)
}
fn rc_replica_put(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ReplicaPut, ctx, args, kv::put)
}
fn rc_replica_get(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ReplicaGet, ctx, args, kv::get)
}
fn rc_replica_del(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ReplicaDel, ctx, args, kv::del)
}
fn rc_replica_purge(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ReplicaPurge, ctx, args, kv::purge)
}
fn rc_replica_drop(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ReplicaDrop, ctx, args, kv::drop_copy)
}
fn rc_hint_put(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::HintPut, ctx, args, hint::put)
}
fn rc_hint_done(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::HintDone, ctx, args, hint::done)
}
fn rc_chunk_put(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ChunkPut, ctx, args, chunk::put)
}
fn rc_chunk_get(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ChunkGet, ctx, args, chunk::get)
}
fn rc_chunk_list(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ChunkList, ctx, args, chunk::list)
}
fn rc_chunk_del(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ChunkDel, ctx, args, chunk::del)
}
fn rc_clock(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::Clock, ctx, args, clock::clock)
}
fn rc_cluster_set(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ClusterSet, ctx, args, cluster::set)
}
fn rc_meta(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::Meta, ctx, args, cluster::meta)
}
fn rc_cluster_get(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ClusterGet, ctx, args, cluster::get)
}
fn rc_cluster_nodestate(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ClusterNodeState, ctx, args, cluster::nodestate)
}
fn rc_cluster_settled(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ClusterSettled, ctx, args, cluster::settled)
}
fn rc_chunk_set(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ChunkSet, ctx, args, quorum::chunk_set)
}
fn rc_chunk_fetch(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::ChunkFetch, ctx, args, quorum::chunk_fetch)
}
fn rc_debug(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    guard::run(Cmd::Debug, ctx, args, debug::debug)
}

/// `INFO rcluster`: version, what this Redis holds, and calls and errors per command.
/// Uses the older field API on purpose: the builder can only add `rcluster_<name>` sections,
/// while this one is named after the module itself.
#[allow(deprecated)]
fn info(ctx: &InfoContext, _for_crash_report: bool) {
    let (kv_keys, chunks, chunk_bytes) = stats::held();
    let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    ctx.add_info_section(None);
    ctx.add_info_field_str("module_version", env!("CARGO_PKG_VERSION"));
    ctx.add_info_field_str("node_id", &settings::node_id());
    let view = cluster::current();
    let epoch = view.as_ref().map_or(0, |v| v.topology.epoch);
    let transition = view.as_ref().is_some_and(|v| v.transition().is_some());
    ctx.add_info_field_long_long("topology_epoch", to_i64(epoch));
    ctx.add_info_field_long_long("transition_open", i64::from(transition));
    ctx.add_info_field_long_long("kv_keys", kv_keys);
    ctx.add_info_field_long_long("chunks", chunks);
    ctx.add_info_field_long_long("chunk_bytes", chunk_bytes);
    ctx.add_info_field_long_long("checksum_failures", to_i64(stats::checksum_failures()));
    ctx.add_info_field_long_long("panics_caught", to_i64(stats::panics()));
    for (op, name) in stats::Op::ALL {
        let value = format!(
            "ok={},noquorum={}",
            stats::quorum_ops(op, stats::End::Ok),
            stats::quorum_ops(op, stats::End::NoQuorum)
        );
        ctx.add_info_field_str(&format!("quorum_{name}"), &value);
    }
    let failures = format!(
        "timeout={},unreachable={},error_reply={}",
        stats::replica_failures(stats::ReplicaFailure::Timeout),
        stats::replica_failures(stats::ReplicaFailure::Unreachable),
        stats::replica_failures(stats::ReplicaFailure::ErrorReply)
    );
    ctx.add_info_field_str("replica_failures", &failures);
    ctx.add_info_field_long_long("read_repairs", to_i64(stats::read_repairs()));
    ctx.add_info_field_long_long("hints_stored", to_i64(stats::hints_stored()));
    ctx.add_info_field_long_long("hints_replayed", to_i64(stats::hints_replayed()));
    ctx.add_info_field_long_long("tombstones_purged", to_i64(stats::tombstones_purged()));
    ctx.add_info_field_long_long("chunk_repairs", to_i64(stats::chunk_repairs()));
    ctx.add_info_field_long_long("writes_reissued", to_i64(stats::writes_reissued()));
    ctx.add_info_field_str("rebalance_pass_kind", coord::rebalance::pass_kind());
    for (name, value) in coord::rebalance::info_fields()
        .into_iter()
        .chain(coord::fast::info_fields())
    {
        ctx.add_info_field_long_long(name, to_i64(value));
    }
    let cumulative = stats::latency_cumulative();
    let mut buckets: Vec<String> = stats::LATENCY_BOUNDS_MS
        .iter()
        .zip(&cumulative)
        .map(|(bound, count)| format!("le_{bound}={count}"))
        .collect();
    buckets.push(format!(
        "le_inf={}",
        cumulative.last().copied().unwrap_or(0)
    ));
    ctx.add_info_field_str("quorum_latency_ms", &buckets.join(","));
    for cmd in Cmd::ALL {
        let name = format!("cmd_{}", cmd.name().to_ascii_lowercase().replace('.', "_"));
        let value = format!("calls={},errors={}", stats::calls(cmd), stats::errors(cmd));
        ctx.add_info_field_str(&name, &value);
    }
}

/// Counts the registers and chunks in the keyspace (once after each load or flush).
fn recount(ctx: &Context) {
    let (kv, chunks, bytes) = (Cell::new(0i64), Cell::new(0i64), Cell::new(0i64));
    let cursor = KeysCursor::new();
    let count = |_ctx: &Context, name: RedisString, key: Option<&redis_module::key::RedisKey>| {
        match classify(name.as_slice()) {
            RecordKind::Kv => kv.set(kv.get() + 1),
            RecordKind::Chunk => {
                chunks.set(chunks.get() + 1);
                let len = key
                    .and_then(|k| k.hash_get(chunk_field::LENGTH).ok().flatten())
                    .and_then(|v| v.parse_integer().ok())
                    .unwrap_or(0);
                bytes.set(bytes.get() + len);
            }
            RecordKind::Hint(node) => coord::hints::note(&String::from_utf8_lossy(node)),
            RecordKind::Other => {}
        }
    };
    while cursor.scan(ctx, &count) {}
    stats::set_held(kv.get(), chunks.get(), bytes.get());
}

/// Module load: start the coordinator runtime and its background duties.
fn init(ctx: &Context, _args: &[RedisString]) -> redis_module::Status {
    match coord::start() {
        Ok(()) => redis_module::Status::Ok,
        Err(e) => {
            ctx.log_warning(&format!("rcluster: {e}"));
            redis_module::Status::Err
        }
    }
}

#[cron_event_handler]
fn on_cron(ctx: &Context, _hz: u64) {
    if stats::take_recount_request() {
        recount(ctx);
    }
}

#[loading_event_handler]
fn on_loading(ctx: &Context, sub: LoadingSubevent) {
    if matches!(sub, LoadingSubevent::Ended) {
        stats::request_recount();
        cluster::restore(ctx);
    }
}

#[flush_event_handler]
fn on_flush(_ctx: &Context, sub: FlushSubevent) {
    if matches!(sub, FlushSubevent::Ended) {
        stats::request_recount();
    }
}

/// Inside Redis, memory that grows with the data comes from Redis's allocator (counted in `INFO
/// memory`, bounded by maxmemory; see [`alloc`]). The crate's unit-test binary runs outside
/// Redis, where that allocator does not exist, so it uses the system allocator.
#[cfg(not(test))]
type ModuleAlloc = alloc::SplitAlloc;
#[cfg(not(test))]
const MODULE_ALLOC: ModuleAlloc = alloc::SplitAlloc;
#[cfg(test)]
type ModuleAlloc = std::alloc::System;
#[cfg(test)]
const MODULE_ALLOC: ModuleAlloc = std::alloc::System;

redis_module! {
    name: "rcluster",
    version: MODULE_VERSION,
    allocator: (ModuleAlloc, MODULE_ALLOC),
    data_types: [],
    init: init,
    info: info,
    commands: [
        // name, handler, flags, first key, last key, key step. Our commands derive the Redis
        // key from their arguments (kv:<key>, chunk:<id>:<n>), so none declares key positions.
        ["RC.SET", rc_set, "write deny-oom", 0, 0, 0],
        ["RC.GET", rc_get, "readonly", 0, 0, 0],
        ["RC.DEL", rc_del, "write deny-oom", 0, 0, 0],
        ["RC.LOCATE", rc_locate, "readonly fast", 0, 0, 0],
        ["RC.REPLICA.PUT", rc_replica_put, "write deny-oom", 0, 0, 0],
        ["RC.REPLICA.GET", rc_replica_get, "readonly", 0, 0, 0],
        ["RC.REPLICA.DEL", rc_replica_del, "write deny-oom", 0, 0, 0],
        ["RC.REPLICA.PURGE", rc_replica_purge, "write", 0, 0, 0],
        ["RC.REPLICA.DROP", rc_replica_drop, "write", 0, 0, 0],
        ["RC.HINT.PUT", rc_hint_put, "write deny-oom", 0, 0, 0],
        ["RC.HINT.DONE", rc_hint_done, "write", 0, 0, 0],
        ["RC.CHUNK.SET", rc_chunk_set, "write deny-oom", 0, 0, 0],
        ["RC.CHUNK.FETCH", rc_chunk_fetch, "readonly", 0, 0, 0],
        ["RC.CHUNK.PUT", rc_chunk_put, "write deny-oom", 0, 0, 0],
        ["RC.CHUNK.GET", rc_chunk_get, "readonly", 0, 0, 0],
        ["RC.CHUNK.LIST", rc_chunk_list, "readonly", 0, 0, 0],
        ["RC.CHUNK.DEL", rc_chunk_del, "write", 0, 0, 0],
        ["RC.CLOCK", rc_clock, "fast", 0, 0, 0],
        ["RC.CLUSTER.SET", rc_cluster_set, "write", 0, 0, 0],
        ["RC.CLUSTER.GET", rc_cluster_get, "readonly", 0, 0, 0],
        ["RC.CLUSTER.NODESTATE", rc_cluster_nodestate, "fast", 0, 0, 0],
        ["RC.CLUSTER.SETTLED", rc_cluster_settled, "fast", 0, 0, 0],
        ["RC.META", rc_meta, "write", 0, 0, 0],
        ["RC.DEBUG", rc_debug, "", 0, 0, 0],
    ],
    configurations: [
        i64: [
            ["max-key-bytes", &settings::MAX_KEY_BYTES, settings::DEFAULT_MAX_KEY_BYTES, 1, 65_536, ConfigurationFlags::DEFAULT, None],
            ["max-value-bytes", &settings::MAX_VALUE_BYTES, settings::DEFAULT_MAX_VALUE_BYTES, 1, 512 << 20, ConfigurationFlags::MEMORY, None],
            ["max-chunk-bytes", &settings::MAX_CHUNK_BYTES, settings::DEFAULT_MAX_CHUNK_BYTES, 1, 64 << 20, ConfigurationFlags::MEMORY, None],
            ["anti-entropy-interval-ms", &settings::ANTI_ENTROPY_INTERVAL_MS, settings::DEFAULT_ANTI_ENTROPY_INTERVAL_MS, 0, 86_400_000, ConfigurationFlags::DEFAULT, None],
            ["clock-max-forward-ms", &settings::CLOCK_MAX_FORWARD_MS, settings::DEFAULT_CLOCK_MAX_FORWARD_MS, 0, 86_400_000, ConfigurationFlags::DEFAULT, None],
            ["clock-offset-ms", &settings::CLOCK_OFFSET_MS, 0, -settings::MAX_CLOCK_OFFSET_MS, settings::MAX_CLOCK_OFFSET_MS, ConfigurationFlags::DEFAULT, None],
        ],
        string: [
            ["node-id", &settings::NODE_ID, "", ConfigurationFlags::DEFAULT, None],
            ["internal-password", &settings::INTERNAL_PASSWORD, "", ConfigurationFlags::SENSITIVE, None],
        ],
        bool: [
            ["enable-debug-command", &debug::ENABLED, false, ConfigurationFlags::IMMUTABLE, None],
            ["fast-path", &coord::fast::ENABLED, true, ConfigurationFlags::DEFAULT, None],
        ],
        enum: [],
        module_args_as_configuration: true,
    ]
}
