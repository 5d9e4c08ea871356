//! Versioned registers on this Redis only (the replica level under the quorum commands):
//!
//! `RC.REPLICA.PUT key value version origin` stores if (version, origin) is newer than what is
//! held; `RC.REPLICA.DEL key version origin` does the same with a tombstone;
//! `RC.REPLICA.GET key` returns `[value|nil, version, origin, tombstone]` or nil;
//! `RC.REPLICA.PURGE key version origin` removes a tombstone of exactly that version (1 or 0).
//! Both writes reply `[applied|duplicate|stale, version, origin]` with the version now held.
//! [`apply`] and [`read`] are also the local half of the quorum commands.

use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::keys::{kv_field, kv_key};
use rcluster_domain::quorum::Held;
use rcluster_domain::validate;
use rcluster_domain::version::{decide, PutOutcome, Version};
use redis_module::raw::KeyType;
use redis_module::{Context, RedisString, RedisValue};

use crate::commands::clock;
use crate::guard::{arity, number, Outcome};
use crate::settings;
use crate::stats::{self, Cmd};
use crate::store;

const PUT_USAGE: &str = "RC.REPLICA.PUT <key> <value> <version> <origin-node>";
const DEL_USAGE: &str = "RC.REPLICA.DEL <key> <version> <origin-node>";
const GET_USAGE: &str = "RC.REPLICA.GET <key>";
const PURGE_USAGE: &str = "RC.REPLICA.PURGE <key> <version> <origin-node>";

/// The stored version fields of a register.
struct Record {
    version: Version,
    tombstone: bool,
}

/// The Redis key of a register, printable for messages.
fn display(user_key: &str) -> String {
    format!("kv:{}", validate::show(user_key.as_bytes()))
}

/// `CORRUPT` naming the register and what is wrong with it.
fn corrupt(user_key: &str, what: &str) -> CodedError {
    CodedError::new(
        Code::Corrupt,
        format!(
            "{} has {what}; repair or delete it (it was left unchanged)",
            display(user_key)
        ),
    )
}

/// Reads and checks the stored version fields (not the value: a write does not need it, and
/// copying a large value out would cost as much as the write). A hash without a valid version
/// is reported as `CORRUPT`.
fn parse_record(
    user_key: &str,
    get: impl Fn(&str) -> Option<RedisString>,
) -> Result<Record, CodedError> {
    let ts = get(kv_field::VERSION)
        .and_then(|v| validate::u64_arg("version", v.as_slice()).ok())
        .ok_or_else(|| corrupt(user_key, "no valid 'version' field"))?;
    let origin = get(kv_field::ORIGIN)
        .and_then(|v| validate::node_id(v.as_slice()).ok())
        .ok_or_else(|| corrupt(user_key, "no valid 'origin' field"))?;
    let tombstone = get(kv_field::TOMBSTONE).is_some_and(|t| t.as_slice() == b"1");
    Ok(Record {
        version: Version::new(ts, origin),
        tombstone,
    })
}

fn write_reply(outcome: PutOutcome, held: &Version) -> RedisValue {
    RedisValue::Array(vec![
        RedisValue::SimpleStringStatic(outcome.as_str()),
        number(held.ts),
        RedisValue::BulkString(held.node.clone()),
    ])
}

/// Checks a key argument against the limits.
pub fn check_key(key: &RedisString) -> Result<&str, CodedError> {
    validate::user_key(key.as_slice(), settings::max_key_bytes())
}

/// Checks a value argument against the limits.
pub fn check_value(value: &RedisString) -> Result<(), CodedError> {
    validate::check_size(
        "value",
        value.len(),
        settings::max_value_bytes(),
        "rcluster.max-value-bytes",
    )
}

/// Put-if-newer of a value (`Some`) or a tombstone (`None`) on this Redis. Propagates the write
/// to the AOF as `RC.REPLICA.PUT`/`RC.REPLICA.DEL` when it changed something. Returns the
/// outcome and the version held afterwards.
pub fn apply(
    ctx: &Context,
    key_arg: &RedisString,
    value: Option<&RedisString>,
    incoming: Version,
) -> Result<(PutOutcome, Version), CodedError> {
    let user_key = check_key(key_arg)?;
    if let Some(v) = value {
        check_value(v)?;
    }
    let name = store::string(ctx, kv_key(key_arg.as_slice()));
    let (key, exists) = store::open_hash_writable(ctx, &name, || display(user_key))?;
    let stored = if exists {
        Some(parse_record(user_key, |f| key.hash_get(f).ok().flatten())?.version)
    } else {
        None
    };
    // Lamport receive rule: a replica's clock moves past every version it stores. A version too
    // far in the future is still stored (it is data), but does not drag the clock along.
    clock::observe(incoming.ts);
    let outcome = decide(stored.as_ref(), &incoming);
    if outcome != PutOutcome::Applied {
        return Ok((outcome, stored.unwrap_or(incoming)));
    }
    let ts = store::string(ctx, incoming.ts.to_string());
    let origin = store::string(ctx, &incoming.node);
    store::set_fields(
        &key,
        vec![
            (
                kv_field::VALUE,
                value.map_or_else(|| store::string(ctx, ""), |v| v.safe_clone(ctx)),
            ),
            (kv_field::VERSION, ts.safe_clone(ctx)),
            (kv_field::ORIGIN, origin.safe_clone(ctx)),
            (
                kv_field::TOMBSTONE,
                store::string(ctx, if value.is_some() { "0" } else { "1" }),
            ),
        ],
    );
    drop(key);
    if !exists {
        stats::kv_keys_added(1);
    }
    match value {
        Some(v) => ctx.replicate("RC.REPLICA.PUT", &[key_arg, v, &ts, &origin][..]),
        None => ctx.replicate("RC.REPLICA.DEL", &[key_arg, &ts, &origin][..]),
    }
    Ok((outcome, incoming))
}

/// What this Redis holds for a key (value copied out), `None` when nothing.
pub fn read(ctx: &Context, key_arg: &RedisString) -> Result<Option<Held>, CodedError> {
    let user_key = check_key(key_arg)?;
    let name = store::string(ctx, kv_key(key_arg.as_slice()));
    let key = ctx.open_key(&name);
    if !store::expect_type(|| display(user_key), key.key_type(), KeyType::Hash)? {
        return Ok(None);
    }
    let field = |f: &str| key.hash_get(f).ok().flatten();
    let record = parse_record(user_key, field)?;
    let value = match (record.tombstone, field(kv_field::VALUE)) {
        (false, Some(v)) => v.as_slice().to_vec(),
        (false, None) => return Err(corrupt(user_key, "no 'value' field")),
        (true, _) => Vec::new(),
    };
    Ok(Some(Held {
        version: record.version,
        tombstone: record.tombstone,
        value,
    }))
}

fn version_args(version: &RedisString, origin: &RedisString) -> Result<Version, CodedError> {
    let ts = validate::u64_arg("version", version.as_slice())?;
    let node = validate::node_id(origin.as_slice())?;
    Ok(Version::new(ts, node))
}

pub fn put(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::ReplicaPut, &args, 5, 5, PUT_USAGE)?;
    check_key(&args[1])?;
    check_value(&args[2])?;
    let (outcome, held) = apply(
        ctx,
        &args[1],
        Some(&args[2]),
        version_args(&args[3], &args[4])?,
    )?;
    Ok(write_reply(outcome, &held))
}

pub fn del(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::ReplicaDel, &args, 4, 4, DEL_USAGE)?;
    check_key(&args[1])?;
    let (outcome, held) = apply(ctx, &args[1], None, version_args(&args[2], &args[3])?)?;
    Ok(write_reply(outcome, &held))
}

pub fn get(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::ReplicaGet, &args, 2, 2, GET_USAGE)?;
    Ok(match read(ctx, &args[1])? {
        None => RedisValue::Null,
        Some(h) => RedisValue::Array(vec![
            if h.tombstone {
                RedisValue::Null
            } else {
                RedisValue::StringBuffer(h.value)
            },
            number(h.version.ts),
            RedisValue::BulkString(h.version.node),
            RedisValue::Integer(i64::from(h.tombstone)),
        ]),
    })
}

/// Deletes the register if it still holds exactly `version` (and, for a purge, is a tombstone).
fn delete_if_version(ctx: &Context, args: &[RedisString], tombstone_only: bool) -> Outcome {
    let user_key = check_key(&args[1])?;
    let version = version_args(&args[2], &args[3])?;
    let name = store::string(ctx, kv_key(args[1].as_slice()));
    let key = ctx.open_key_writable(&name);
    if !store::expect_type(|| display(user_key), key.key_type(), KeyType::Hash)? {
        return Ok(RedisValue::Integer(0));
    }
    let record = parse_record(user_key, |f| key.hash_get(f).ok().flatten())?;
    if (tombstone_only && !record.tombstone) || record.version != version {
        return Ok(RedisValue::Integer(0));
    }
    key.delete().map_err(|e| {
        CodedError::new(
            Code::Internal,
            format!("deleting {}: {e}", display(user_key)),
        )
    })?;
    stats::kv_keys_added(-1);
    ctx.replicate_verbatim();
    Ok(RedisValue::Integer(1))
}

pub fn purge(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::ReplicaPurge, &args, 4, 4, PURGE_USAGE)?;
    let out = delete_if_version(ctx, &args, true)?;
    if out == RedisValue::Integer(1) {
        stats::tombstone_purged();
    }
    Ok(out)
}

/// `RC.REPLICA.DROP key version origin`: removes this replica's copy if it is still exactly that
/// version (after the data moved to its new owners); 1 or 0.
pub fn drop_copy(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(
        Cmd::ReplicaDrop,
        &args,
        4,
        4,
        "RC.REPLICA.DROP <key> <version> <origin-node>",
    )?;
    delete_if_version(ctx, &args, false)
}
