//! Hinted handoff storage on this Redis: writes held for a node that was down.
//!
//! `RC.HINT.PUT node key version origin tombstone value` keeps the write in `hint:<node>` (field
//! = key) unless a hint at least as new is already held; replies `applied|duplicate|stale`.
//! `RC.HINT.DONE node key version origin` drops the hint after delivery, only if it is still that
//! version (a newer hint stays); replies 1 or 0.

use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::hint::{self, hint_key};
use rcluster_domain::validate;
use rcluster_domain::version::{decide, PutOutcome, Version};
use redis_module::raw::KeyType;
use redis_module::{Context, RedisString, RedisValue};

use crate::commands::kv::{check_key, check_value};
use crate::coord::hints;
use crate::guard::{arity, Outcome};
use crate::stats::{self, Cmd};
use crate::store;

const PUT_USAGE: &str = "RC.HINT.PUT <node> <key> <version> <origin> <0|1 tombstone> <value>";
const DONE_USAGE: &str = "RC.HINT.DONE <node> <key> <version> <origin>";

/// The hint held for `key` in `hint:<node>`, if any and readable.
fn held(
    ctx: &Context,
    hash: &RedisString,
    key: &RedisString,
) -> Result<Option<hint::Hint>, CodedError> {
    let reply = store::call(ctx, "HGET", &[hash, key])?;
    Ok(reply.bytes().and_then(hint::decode))
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

pub fn put(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::HintPut, &args, 7, 7, PUT_USAGE)?;
    let node = validate::node_id(args[1].as_slice())?;
    check_key(&args[2])?;
    let ts = validate::u64_arg("version", args[3].as_slice())?;
    let origin = validate::node_id(args[4].as_slice())?;
    let tombstone = match args[5].as_slice() {
        b"0" => false,
        b"1" => true,
        other => {
            return Err(CodedError::new(
                Code::BadArg,
                format!(
                    "tombstone flag must be 0 or 1, got '{}'",
                    validate::show(other)
                ),
            ))
        }
    };
    check_value(&args[6])?;
    let hash = open_hints(ctx, &node)?;
    let incoming = Version::new(ts, origin);
    let stored = held(ctx, &hash, &args[2])?.map(|h| h.version);
    let outcome = decide(stored.as_ref(), &incoming);
    if outcome == PutOutcome::Applied {
        let encoded = store::string(ctx, hint::encode(&incoming, tombstone, args[6].as_slice()));
        store::call(ctx, "HSET", &[&hash, &args[2], &encoded])?;
        hints::note(&node);
        stats::hint_stored();
        ctx.replicate_verbatim();
    }
    Ok(RedisValue::SimpleStringStatic(outcome.as_str()))
}

pub fn done(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::HintDone, &args, 5, 5, DONE_USAGE)?;
    let node = validate::node_id(args[1].as_slice())?;
    check_key(&args[2])?;
    let ts = validate::u64_arg("version", args[3].as_slice())?;
    let origin = validate::node_id(args[4].as_slice())?;
    let hash = open_hints(ctx, &node)?;
    let matches =
        held(ctx, &hash, &args[2])?.is_some_and(|h| h.version == Version::new(ts, origin));
    if !matches {
        return Ok(RedisValue::Integer(0));
    }
    store::call(ctx, "HDEL", &[&hash, &args[2]])?;
    if ctx.open_key(&hash).key_type() == KeyType::Empty {
        hints::forget(&node);
    }
    ctx.replicate_verbatim();
    Ok(RedisValue::Integer(1))
}
