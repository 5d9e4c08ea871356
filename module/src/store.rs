//! Low-level access to the hashes the module keeps: open a key expecting a hash (or nothing),
//! read fields as bytes, and name the problem when a key holds something else.

use rcluster_domain::codes::{Code, CodedError};
use redis_module::{
    key::RedisKeyWritable, raw::KeyType, CallOptionsBuilder, CallReply, CallResult, Context,
    RedisString,
};

/// The Redis type name of a key type, for error messages.
fn type_name(t: KeyType) -> &'static str {
    match t {
        KeyType::Empty => "nothing",
        KeyType::String => "a string",
        KeyType::List => "a list",
        KeyType::Hash => "a hash",
        KeyType::Set => "a set",
        KeyType::ZSet => "a sorted set",
        KeyType::Module => "a module type",
        KeyType::Stream => "a stream",
    }
}

/// `WRONGTYPE` unless the key is empty or of the `expected` type. Returns whether it exists.
/// `name` renders the key for the message (only called on error).
pub fn expect_type(
    name: impl FnOnce() -> String,
    actual: KeyType,
    expected: KeyType,
) -> Result<bool, CodedError> {
    match actual {
        KeyType::Empty => Ok(false),
        t if t == expected => Ok(true),
        t => Err(CodedError::new(
            Code::WrongType,
            format!(
                "{} holds {}, expected {}; it was left unchanged",
                name(),
                type_name(t),
                type_name(expected)
            ),
        )),
    }
}

/// The context's `REDISMODULE_CTX_FLAGS_*` bits.
pub fn context_flags(ctx: &Context) -> u32 {
    // SAFETY: a valid context; the API table is filled at load and only read afterwards.
    let flags = unsafe { redis_module::raw::RedisModule_GetContextFlags.map_or(0, |f| f(ctx.ctx)) };
    flags as u32
}

/// Whether Redis is loading its data (AOF or RDB): a command replayed then was admitted when it
/// first ran.
pub fn loading(ctx: &Context) -> bool {
    context_flags(ctx) & redis_module::raw::REDISMODULE_CTX_FLAGS_LOADING != 0
}

/// A hash field's bytes, or `None` when the field (or key) is absent.
pub fn field(ctx: &Context, key_name: &RedisString, field: &str) -> Option<RedisString> {
    ctx.open_key(key_name).hash_get(field).ok().flatten()
}

/// Opens `name` for writing, requiring it to be a hash or absent. Returns the key and whether
/// it existed.
pub fn open_hash_writable(
    ctx: &Context,
    name: &RedisString,
    display: impl FnOnce() -> String,
) -> Result<(RedisKeyWritable, bool), CodedError> {
    let key = ctx.open_key_writable(name);
    let exists = expect_type(display, key.key_type(), KeyType::Hash)?;
    Ok((key, exists))
}

/// Sets hash fields. `RM_HashSet` can only fail on a key not open for writing or of another
/// type, both excluded by [`open_hash_writable`]; its return value counts replaced fields (and
/// the crate maps that count onto a status), so it carries no error and is not inspected.
pub fn set_fields(key: &RedisKeyWritable, fields: Vec<(&str, RedisString)>) {
    for (field, value) in fields {
        let _replaced = key.hash_set(field, value);
    }
}

/// A Redis string of any bytes. (`Context::create_string` goes through a C string and panics on
/// a NUL byte, which client input may contain.)
pub fn string(ctx: &Context, bytes: impl AsRef<[u8]>) -> RedisString {
    RedisString::create_from_slice(ctx.ctx, bytes.as_ref())
}

/// A Redis string kept alive for another thread. Its bytes may be read from any thread: it is
/// trimmed when retained, which Redis documents as what makes a retained string safe to read
/// from other threads (Redis would otherwise trim it after the command, moving its bytes). Its
/// reference count is not atomic, so it is released only while Redis's lock is held
/// ([`Retained::release_locked`]); a `Retained` dropped any other way is leaked, never freed.
pub struct Retained(std::mem::ManuallyDrop<RedisString>);

// SAFETY: other threads only read the bytes (see above); the release is under Redis's lock.
unsafe impl Send for Retained {}

impl Retained {
    /// Keeps `s` alive (on the main thread, where `ctx` is the command's context).
    pub fn new(ctx: &Context, s: &RedisString) -> Retained {
        let kept = s.safe_clone(ctx);
        // SAFETY: the API table is filled at load; `kept` is a live string on the main thread.
        if let Some(trim) = unsafe { redis_module::raw::RedisModule_TrimStringAllocation } {
            unsafe { trim(kept.inner) };
        }
        Retained(std::mem::ManuallyDrop::new(kept))
    }

    /// The string's bytes (any thread).
    pub fn bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// Runs `f` with the string, then releases it. `_locked` is the context Redis's lock was
    /// taken with (`Blocked::with_redis_locked`): call it only there or on the main thread.
    pub fn release_locked<R>(mut self, _locked: &Context, f: impl FnOnce(&RedisString) -> R) -> R {
        // SAFETY: taken once; `self` is consumed and its ManuallyDrop is not used again.
        let s = unsafe { std::mem::ManuallyDrop::take(&mut self.0) };
        f(&s)
    }
}

/// A reply of a command run inside Redis, as owned bytes (no UTF-8 assumption: the crate's own
/// conversion of `ctx.call` replies panics on binary strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    Nil,
    Int(i64),
    Bytes(Vec<u8>),
    Array(Vec<Raw>),
    Other,
}

impl Raw {
    fn from_reply(reply: &CallReply<'_>) -> Raw {
        match reply {
            CallReply::String(s) => Raw::Bytes(s.as_bytes().to_vec()),
            CallReply::I64(i) => Raw::Int(i.to_i64()),
            CallReply::Null(_) => Raw::Nil,
            CallReply::Array(a) => Raw::Array(
                a.iter()
                    .map(|item| item.map_or(Raw::Other, |r| Raw::from_reply(&r)))
                    .collect(),
            ),
            CallReply::Set(set) => Raw::Array(
                set.iter()
                    .map(|item| item.map_or(Raw::Other, |r| Raw::from_reply(&r)))
                    .collect(),
            ),
            _ => Raw::Other,
        }
    }

    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Raw::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// Runs a command inside Redis (not propagated, not ACL-checked) and returns its reply as bytes.
pub fn call(ctx: &Context, command: &str, args: &[&RedisString]) -> Result<Raw, CodedError> {
    let options = CallOptionsBuilder::new().build();
    let result: CallResult<'static> = ctx.call_ext(command, &options, args);
    match result {
        Ok(reply) => Ok(Raw::from_reply(&reply)),
        Err(e) => Err(CodedError::new(
            Code::Internal,
            format!(
                "{command} failed: {}",
                e.to_utf8_string().unwrap_or_default()
            ),
        )),
    }
}
