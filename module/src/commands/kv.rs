//! Versioned registers on this Redis only (the replica level under the quorum commands):
//!
//! `RC.REPLICA.PUT key value version origin` stores if (version, origin) is newer than what is held;
//! `RC.REPLICA.DEL key version origin` does the same with a tombstone;
//! `RC.REPLICA.GET key` returns `[value|nil, version, origin, tombstone]` or nil.
//! Both writes reply `[applied|duplicate|stale, version, origin]` with the version now held.

use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::keys::{kv_field, kv_key};
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

/// A stored register as read back from its hash.
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
    let corrupt = |what: &str| corrupt(user_key, what);
    let ts = get(kv_field::VERSION)
        .and_then(|v| validate::u64_arg("version", v.as_slice()).ok())
        .ok_or_else(|| corrupt("no valid 'version' field"))?;
    let origin = get(kv_field::ORIGIN)
        .and_then(|v| validate::node_id(v.as_slice()).ok())
        .ok_or_else(|| corrupt("no valid 'origin' field"))?;
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

/// Put-if-newer of a value (`Some`) or a tombstone (`None`).
fn versioned_write(
    ctx: &Context,
    key_arg: &RedisString,
    value: Option<&RedisString>,
    version_arg: &RedisString,
    origin_arg: &RedisString,
) -> Outcome {
    let user_key = validate::user_key(key_arg.as_slice(), settings::max_key_bytes())?;
    if let Some(v) = value {
        validate::check_size(
            "value",
            v.len(),
            settings::max_value_bytes(),
            "rcluster.max-value-bytes",
        )?;
    }
    let ts = validate::u64_arg("version", version_arg.as_slice())?;
    let origin = validate::node_id(origin_arg.as_slice())?;
    let incoming = Version::new(ts, origin);

    let name = store::string(ctx, kv_key(key_arg.as_slice()));
    let (key, exists) = store::open_hash_writable(ctx, &name, || display(user_key))?;
    let stored = if exists {
        Some(parse_record(user_key, |f| key.hash_get(f).ok().flatten())?.version)
    } else {
        None
    };
    // Lamport receive rule: a replica's clock moves past every version it stores. A version too
    // far in the future is still stored (it is data), but does not drag the clock along.
    clock::observe(ts);
    let outcome = decide(stored.as_ref(), &incoming);
    if outcome != PutOutcome::Applied {
        let held = stored.unwrap_or(incoming);
        return Ok(write_reply(outcome, &held));
    }
    let empty = || store::string(ctx, "");
    store::set_fields(
        &key,
        vec![
            (
                kv_field::VALUE,
                value.map_or_else(empty, |v| v.safe_clone(ctx)),
            ),
            (kv_field::VERSION, store::string(ctx, ts.to_string())),
            (kv_field::ORIGIN, origin_arg.safe_clone(ctx)),
            (
                kv_field::TOMBSTONE,
                store::string(ctx, if value.is_some() { "0" } else { "1" }),
            ),
        ],
    );
    if !exists {
        stats::kv_keys_added(1);
    }
    ctx.replicate_verbatim();
    Ok(write_reply(outcome, &incoming))
}

pub fn put(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::ReplicaPut, &args, 5, 5, PUT_USAGE)?;
    versioned_write(ctx, &args[1], Some(&args[2]), &args[3], &args[4])
}

pub fn del(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::ReplicaDel, &args, 4, 4, DEL_USAGE)?;
    versioned_write(ctx, &args[1], None, &args[2], &args[3])
}

pub fn get(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::ReplicaGet, &args, 2, 2, GET_USAGE)?;
    let user_key = validate::user_key(args[1].as_slice(), settings::max_key_bytes())?;
    let name = store::string(ctx, kv_key(args[1].as_slice()));
    let key = ctx.open_key(&name);
    if !store::expect_type(|| display(user_key), key.key_type(), KeyType::Hash)? {
        return Ok(RedisValue::Null);
    }
    let field = |f: &str| key.hash_get(f).ok().flatten();
    let record = parse_record(user_key, field)?;
    let value = match (record.tombstone, field(kv_field::VALUE)) {
        (false, Some(v)) => RedisValue::BulkRedisString(v),
        (false, None) => return Err(corrupt(user_key, "no 'value' field")),
        (true, _) => RedisValue::Null,
    };
    Ok(RedisValue::Array(vec![
        value,
        number(record.version.ts),
        RedisValue::BulkString(record.version.node),
        RedisValue::Integer(i64::from(record.tombstone)),
    ]))
}
