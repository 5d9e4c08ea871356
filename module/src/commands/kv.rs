//! Versioned registers on this Redis only: the handlers of `RC.REPLICA.PUT`, `.DEL`, `.GET`,
//! `.PURGE` and `.DROP` (arguments and replies as `rcluster_domain::rc::replica` defines them).
//! [`apply`] and [`read`] are also the local half of the quorum commands.

use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::keys::{kv_field, kv_key};
use rcluster_domain::quorum::Held;
use rcluster_domain::rc::replica::{
    HeldReply, ReplicaGet, ReplicaRemove, ReplicaWrite, WriteReply,
};
use rcluster_domain::rc::{kv as rc_kv, Command};
use rcluster_domain::validate;
use rcluster_domain::version::{decide, PutOutcome, Version};
use redis_module::raw::KeyType;
use redis_module::{Context, RedisString, RedisValue};

use crate::commands::{clock, debug};
use crate::guard::{Outcome, Reply};
use crate::settings;
use crate::stats;
use crate::store;

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

/// Checks a key argument against the limits.
fn check_key(key: &RedisString) -> Result<&str, CodedError> {
    rc_kv::check_key(key.as_slice(), &settings::limits())
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
    let limits = settings::limits();
    let user_key = rc_kv::check_key(key_arg.as_slice(), &limits)?;
    if let Some(v) = value {
        rc_kv::check_value(v.as_slice(), &limits)?;
    }
    if debug::drops_writes() {
        return Ok((PutOutcome::Applied, incoming));
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
        Some(v) => ctx.replicate(Command::ReplicaPut.name(), &[key_arg, v, &ts, &origin][..]),
        None => ctx.replicate(Command::ReplicaDel.name(), &[key_arg, &ts, &origin][..]),
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

/// Applies a parsed replica write; replies the outcome and the version held.
fn write(ctx: &Context, args: &[RedisString], w: ReplicaWrite) -> Outcome {
    let value = w.value.map(|_| &args[2]);
    let (outcome, held) = apply(ctx, &args[1], value, w.version.into_owned())?;
    Ok(WriteReply { outcome, held }.encode::<Reply>())
}

pub fn put(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let w = ReplicaWrite::parse_put(&args, &settings::limits())?;
    write(ctx, &args, w)
}

pub fn del(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let w = ReplicaWrite::parse_del(&args, &settings::limits())?;
    write(ctx, &args, w)
}

pub fn get(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    ReplicaGet::parse(&args)?;
    Ok(HeldReply::encode::<Reply>(read(ctx, &args[1])?))
}

/// Deletes the register if it still holds exactly `version` (and, for a purge, is a tombstone).
fn delete_if_version(ctx: &Context, args: &[RedisString], tombstone_only: bool) -> Outcome {
    let remove = ReplicaRemove::parse(args, &settings::limits(), tombstone_only)?;
    let user_key = check_key(&args[1])?;
    let version = remove.version.into_owned();
    let name = store::string(ctx, kv_key(args[1].as_slice()));
    let key = ctx.open_key_writable(&name);
    if !store::expect_type(|| display(user_key), key.key_type(), KeyType::Hash)? {
        return Ok(RedisValue::Integer(0));
    }
    let record = parse_record(user_key, |f| key.hash_get(f).ok().flatten())?;
    if (remove.tombstone_only && !record.tombstone) || record.version != version {
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
    let out = delete_if_version(ctx, &args, true)?;
    if out == RedisValue::Integer(1) {
        stats::tombstone_purged();
    }
    Ok(out)
}

/// `RC.REPLICA.DROP key version origin`: removes this replica's copy if it is still exactly that
/// version (after the data moved to its new owners); 1 or 0.
pub fn drop_copy(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    delete_if_version(ctx, &args, false)
}
