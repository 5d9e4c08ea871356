//! The rcluster Redis module: registration of every `RC.*` command of the contract's table, the
//! module's configuration, the `INFO rcluster` section, and the server-event hooks that keep its
//! counters true across loads and flushes.

pub mod alloc;
pub mod cluster;
pub mod commands;
pub mod coord;
pub mod faults;
pub mod guard;
pub mod recount;
pub mod settings;
pub mod stats;
pub mod store;
pub mod trace;

use std::ffi::CString;
use std::os::raw::c_int;

use rcluster_domain::rc;
use redis_module::configuration::ConfigurationFlags;
use redis_module::server_events::{FlushSubevent, LoadingSubevent};
use redis_module::{raw, redis_module, Context, InfoContext, RedisResult, RedisString};
use redis_module_macros::{cron_event_handler, flush_event_handler, loading_event_handler};

use commands::{chunk, clock, debug, fault, hint, kv, quorum};
use stats::Cmd;

/// The module version as Redis shows it (`MODULE LIST`): major * 10000 + minor * 100 + patch.
pub const MODULE_VERSION: i32 = 100;

/// The handler of each command of the contract's table.
fn handler(cmd: Cmd) -> guard::Handler {
    match cmd {
        Cmd::Set => quorum::set,
        Cmd::Get => quorum::get,
        Cmd::Del => quorum::del,
        Cmd::Locate => quorum::locate,
        Cmd::ReplicaPut => kv::put,
        Cmd::ReplicaGet => kv::get,
        Cmd::ReplicaDel => kv::del,
        Cmd::ReplicaPurge => kv::purge,
        Cmd::ReplicaDrop => kv::drop_copy,
        Cmd::HintPut => hint::put,
        Cmd::HintDone => hint::done,
        Cmd::ChunkPut => chunk::put,
        Cmd::ChunkGet => chunk::get,
        Cmd::ChunkList => chunk::list,
        Cmd::ChunkDel => chunk::del,
        Cmd::Clock => clock::clock,
        Cmd::ClusterSet => cluster::set,
        Cmd::ClusterGet => cluster::get,
        Cmd::ClusterNodeState => cluster::nodestate,
        Cmd::ClusterSettled => cluster::settled,
        Cmd::ChunkSet => quorum::chunk_set,
        Cmd::ChunkFetch => quorum::chunk_fetch,
        Cmd::Meta => cluster::meta,
        Cmd::Debug => debug::debug,
        Cmd::Trace => trace::command,
        Cmd::Fault => fault::fault,
    }
}

/// Redis's entry point for the command at position `I` of the table (what the `redis_module!`
/// command rows generate, once per row).
extern "C" fn dispatch<const I: usize>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let context = Context::new(ctx);
    let args = redis_module::decode_args(ctx, argv, argc);
    let cmd = Cmd::ALL[I];
    context.reply(guard::run(cmd, &context, args, handler(cmd))) as c_int
}

type EntryPoint = unsafe extern "C" fn(
    *mut raw::RedisModuleCtx,
    *mut *mut raw::RedisModuleString,
    c_int,
) -> c_int;

macro_rules! entry_points {
    ($($i:literal)*) => { [$(dispatch::<$i> as EntryPoint),*] };
}

/// One entry point per row of the table (its length is the table's: a row added there without
/// one here does not compile).
const ENTRY_POINTS: [EntryPoint; rc::COUNT] =
    entry_points!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25);

/// Registers every command of the contract's table with its name and flags. Our commands derive
/// the Redis key from their arguments (kv:<key>, chunk:<id>:<n>), so none declares key positions.
fn register_commands(ctx: &Context) -> Result<(), String> {
    // SAFETY: the API table is filled once the module is initialised (before `init` runs).
    let create =
        unsafe { raw::RedisModule_CreateCommand }.ok_or("RedisModule_CreateCommand is missing")?;
    for (spec, entry) in rc::COMMANDS.iter().zip(ENTRY_POINTS) {
        let cannot = |why: &str| format!("cannot register {}: {why}", spec.name);
        let name = CString::new(spec.name).map_err(|e| cannot(&e.to_string()))?;
        let flags = CString::new(spec.flags).map_err(|e| cannot(&e.to_string()))?;
        // SAFETY: called from the module's OnLoad with its context; the strings outlive the call
        // (Redis copies them).
        let status =
            unsafe { create(ctx.ctx, name.as_ptr(), Some(entry), flags.as_ptr(), 0, 0, 0) };
        if status == raw::Status::Err as c_int {
            return Err(cannot("Redis refused it"));
        }
    }
    Ok(())
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
    ctx.add_info_field_long_long(
        "recount_in_progress",
        i64::from(stats::recount_in_progress()),
    );
    ctx.add_info_field_long_long("recount_steps", to_i64(stats::recount_steps()));
    ctx.add_info_field_long_long("checksum_failures", to_i64(stats::checksum_failures()));
    ctx.add_info_field_long_long("panics_caught", to_i64(stats::panics()));
    for (op, name) in stats::Op::ALL {
        let value = format!(
            "ok={},noquorum={}",
            stats::quorum_ops(op, true),
            stats::quorum_ops(op, false)
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
    ctx.add_info_field_long_long(
        "stale_replicas_found",
        to_i64(stats::stale_replicas_found()),
    );
    ctx.add_info_field_long_long("hints_stored", to_i64(stats::hints_stored()));
    ctx.add_info_field_long_long("hints_replayed", to_i64(stats::hints_replayed()));
    ctx.add_info_field_long_long("hints_refused", to_i64(stats::hints_refused()));
    ctx.add_info_field_long_long("hints_dropped", to_i64(stats::hints_dropped_total()));
    for (name, value) in coord::hints::info_fields(clock::wall_ms()) {
        ctx.add_info_field_str(&name, &value);
    }
    ctx.add_info_field_long_long("tombstones_purged", to_i64(stats::tombstones_purged()));
    ctx.add_info_field_long_long("chunk_repairs", to_i64(stats::chunk_repairs()));
    ctx.add_info_field_long_long("writes_reissued", to_i64(stats::writes_reissued()));
    ctx.add_info_field_str("rebalance_pass_kind", coord::rebalance::pass_kind());
    for (name, value) in coord::rebalance::info_fields()
        .into_iter()
        .chain(coord::fast::info_fields())
        .chain(trace::info_fields())
    {
        ctx.add_info_field_long_long(name, to_i64(value));
    }
    let reasons: Vec<String> = stats::NoQuorumReason::ALL
        .iter()
        .map(|r| format!("{}={}", r.as_str(), stats::noquorums(*r)))
        .collect();
    ctx.add_info_field_str("noquorum_reasons", &reasons.join(","));
    for cmd in Cmd::ALL {
        let name = cmd.name().to_ascii_lowercase().replace('.', "_");
        let value = format!("calls={},errors={}", stats::calls(cmd), stats::errors(cmd));
        ctx.add_info_field_str(&format!("cmd_{name}"), &value);
        // duration_rc_set_ok:count=..,sum_us=..,b<i>=.. (histograms with no observation left out)
        for outcome in stats::Outcome::ALL {
            let h = stats::durations(cmd, outcome);
            if h.count() > 0 {
                ctx.add_info_field_str(
                    &format!("duration_{name}_{}", outcome.as_str()),
                    &h.encode(),
                );
            }
        }
    }
    for (peer, h) in stats::replica_rtts() {
        ctx.add_info_field_str(&format!("rtt_{peer}"), &h.encode());
    }
}

/// Module load: register the commands, start the coordinator runtime and its background duties.
fn init(ctx: &Context, _args: &[RedisString]) -> redis_module::Status {
    match register_commands(ctx).and_then(|()| coord::start()) {
        Ok(()) => redis_module::Status::Ok,
        Err(e) => {
            ctx.log_warning(&format!("rcluster: {e}"));
            redis_module::Status::Err
        }
    }
}

#[cron_event_handler]
fn on_cron(ctx: &Context, _hz: u64) {
    recount::on_cron(ctx);
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
    // Registered from the contract's table by `init` (register_commands).
    commands: [],
    configurations: [
        i64: [
            ["max-key-bytes", &settings::MAX_KEY_BYTES, settings::DEFAULT_MAX_KEY_BYTES, 1, 65_536, ConfigurationFlags::DEFAULT, None],
            ["max-value-bytes", &settings::MAX_VALUE_BYTES, settings::DEFAULT_MAX_VALUE_BYTES, 1, 512 << 20, ConfigurationFlags::MEMORY, None],
            ["max-chunk-bytes", &settings::MAX_CHUNK_BYTES, settings::DEFAULT_MAX_CHUNK_BYTES, 1, 64 << 20, ConfigurationFlags::MEMORY, None],
            ["anti-entropy-interval-ms", &settings::ANTI_ENTROPY_INTERVAL_MS, settings::DEFAULT_ANTI_ENTROPY_INTERVAL_MS, 0, 86_400_000, ConfigurationFlags::DEFAULT, None],
            ["clock-max-forward-ms", &settings::CLOCK_MAX_FORWARD_MS, settings::DEFAULT_CLOCK_MAX_FORWARD_MS, 0, 86_400_000, ConfigurationFlags::DEFAULT, None],
            ["trace-sample-per-million", &settings::TRACE_SAMPLE_PER_MILLION, 0, 0, 1_000_000, ConfigurationFlags::DEFAULT, None],
            ["trace-max-count", &settings::TRACE_MAX_COUNT, settings::DEFAULT_TRACE_MAX_COUNT, 0, 1_000_000, ConfigurationFlags::DEFAULT, None],
            ["trace-max-bytes", &settings::TRACE_MAX_BYTES, settings::DEFAULT_TRACE_MAX_BYTES, 0, 1 << 30, ConfigurationFlags::MEMORY, None],
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
