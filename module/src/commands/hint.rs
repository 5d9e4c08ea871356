//! Hinted handoff storage on this Redis (writes held for a node that was down): the handlers of
//! `RC.HINT.PUT` and `RC.HINT.DONE`, as `rcluster_domain::rc::hint` defines them, the cap on the
//! hint bytes held for one node (`max_hint_bytes_per_node` of the topology), and dropping the
//! hints held for nodes that are no longer members.

use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::config::DEFAULT_MAX_HINT_BYTES_PER_NODE;
use rcluster_domain::hint::{self, hint_key};
use rcluster_domain::rc::hint::{HintDone, HintPut};
use rcluster_domain::topology::Topology;
use rcluster_domain::version::{decide, PutOutcome};
use redis_module::raw::KeyType;
use redis_module::{Context, RedisString, RedisValue};

use crate::cluster;
use crate::coord::hints;
use crate::guard::Outcome;
use crate::settings;
use crate::stats;
use crate::store;

/// The hint held for `key` in `hint:<node>`, if any and readable, with the bytes it takes.
fn held(
    ctx: &Context,
    hash: &RedisString,
    key: &RedisString,
) -> Result<Option<(hint::Hint, u64)>, CodedError> {
    let reply = store::call(ctx, "HGET", &[hash, key])?;
    Ok(reply.bytes().and_then(|b| {
        let bytes = hint::stored_bytes(key.as_slice(), b.len());
        hint::decode(b).map(|h| (h, bytes))
    }))
}

fn open_hints(ctx: &Context, node: &str) -> Result<RedisString, CodedError> {
    let name = hint_key(node);
    let redis_name = store::string(ctx, &name);
    store::expect_type(
        || name.clone(),
        ctx.open_key(&redis_name).key_type(),
        KeyType::Hash,
    )?;
    Ok(redis_name)
}

/// `TOOLARGE` (counted) when a hint of `bytes` replacing one of `replaced` would take `node`'s
/// backlog past the cap: the writer then counts that replica's write as failed.
fn admit(node: &str, bytes: u64, replaced: u64) -> Result<(), CodedError> {
    let cap = cluster::current().map_or(DEFAULT_MAX_HINT_BYTES_PER_NODE, |v| {
        v.topology.max_hint_bytes_per_node
    });
    hints::admits(node, bytes, replaced, cap).map_err(|held| {
        stats::hint_refused();
        CodedError::new(
            Code::TooLarge,
            format!(
                "the hints held for {node} take {held} bytes; {bytes} more would pass \
                 max_hint_bytes_per_node {cap}; the hint was not stored"
            ),
        )
    })
}

pub fn put(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let put = HintPut::parse(&args, &settings::limits())?;
    let hash = open_hints(ctx, put.node)?;
    let held = held(ctx, &hash, &args[2])?;
    let outcome = decide(held.as_ref().map(|(h, _)| &h.version), &put.version);
    if outcome == PutOutcome::Applied {
        let encoded = hint::encode(&put.version, put.tombstone, put.value);
        let bytes = hint::stored_bytes(put.key, encoded.len());
        let replaced = held.as_ref().map_or(0, |(_, b)| *b);
        // A hint replayed from the AOF was admitted when it was written.
        if !store::loading(ctx) {
            admit(put.node, bytes, replaced)?;
        }
        let encoded = store::string(ctx, encoded);
        store::call(ctx, "HSET", &[&hash, &args[2], &encoded])?;
        if let Some((old, old_bytes)) = &held {
            hints::removed(put.node, old.version.ts, *old_bytes);
        }
        hints::added(put.node, put.version.ts, bytes);
        stats::hint_stored();
        ctx.replicate_verbatim();
    }
    Ok(RedisValue::SimpleStringStatic(outcome.as_str()))
}

pub fn done(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let done = HintDone::parse(&args, &settings::limits())?;
    let hash = open_hints(ctx, done.node)?;
    let Some((h, bytes)) = held(ctx, &hash, &args[2])?.filter(|(h, _)| h.version == *done.version)
    else {
        return Ok(RedisValue::Integer(0));
    };
    store::call(ctx, "HDEL", &[&hash, &args[2]])?;
    hints::removed(done.node, h.version.ts, bytes);
    if ctx.open_key(&hash).key_type() == KeyType::Empty {
        hints::forget(done.node);
    }
    ctx.replicate_verbatim();
    Ok(RedisValue::Integer(1))
}

/// Drops the hints held for nodes that are not members of `topology` (they would never be
/// delivered, and would hold memory for good), counted in `hints_dropped`. The hash is unlinked
/// (freed off the main thread) and the `UNLINK` propagated, so a reload drops them too.
pub fn drop_removed(ctx: &Context, topology: &Topology) {
    for node in hints::nodes() {
        if topology.member(&node).is_some() {
            continue;
        }
        let name = store::string(ctx, hint_key(&node));
        match store::call(ctx, "UNLINK", &[&name]) {
            Ok(_) => {
                let gone = hints::forget(&node);
                stats::hints_dropped(u64::try_from(gone.count).unwrap_or(0));
                ctx.replicate("UNLINK", &[&name][..]);
            }
            Err(e) => ctx.log_warning(&format!(
                "rcluster: could not drop the hints for {node}, no longer a member: {e}"
            )),
        }
    }
}
