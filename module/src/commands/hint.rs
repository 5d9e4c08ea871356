//! Hinted handoff storage on this Redis (writes held for a node that was down): the handlers of
//! `RC.HINT.PUT` and `RC.HINT.DONE`, as `rcluster_domain::rc::hint` defines them.

use rcluster_domain::codes::CodedError;
use rcluster_domain::hint::{self, hint_key};
use rcluster_domain::rc::hint::{HintDone, HintPut};
use rcluster_domain::version::{decide, PutOutcome};
use redis_module::raw::KeyType;
use redis_module::{Context, RedisString, RedisValue};

use crate::coord::hints;
use crate::guard::Outcome;
use crate::settings;
use crate::stats;
use crate::store;

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
    let put = HintPut::parse(&args, &settings::limits())?;
    let hash = open_hints(ctx, put.node)?;
    let stored = held(ctx, &hash, &args[2])?.map(|h| h.version);
    let outcome = decide(stored.as_ref(), &put.version);
    if outcome == PutOutcome::Applied {
        let encoded = store::string(ctx, hint::encode(&put.version, put.tombstone, put.value));
        store::call(ctx, "HSET", &[&hash, &args[2], &encoded])?;
        hints::note(put.node);
        stats::hint_stored();
        ctx.replicate_verbatim();
    }
    Ok(RedisValue::SimpleStringStatic(outcome.as_str()))
}

pub fn done(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let done = HintDone::parse(&args, &settings::limits())?;
    let hash = open_hints(ctx, done.node)?;
    let matches = held(ctx, &hash, &args[2])?.is_some_and(|h| h.version == *done.version);
    if !matches {
        return Ok(RedisValue::Integer(0));
    }
    store::call(ctx, "HDEL", &[&hash, &args[2]])?;
    if ctx.open_key(&hash).key_type() == KeyType::Empty {
        hints::forget(done.node);
    }
    ctx.replicate_verbatim();
    Ok(RedisValue::Integer(1))
}
