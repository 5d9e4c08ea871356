//! File chunks on this Redis only, each checked against its SHA-256:
//!
//! `RC.CHUNK.PUT file-id index sha256 data` stores the chunk if `data` hashes to `sha256`, else
//! stores nothing and replies `CHECKSUM`; `RC.CHUNK.GET file-id index` returns the data after
//! re-checking it (`CHECKSUM` naming the key when the stored bytes changed); `RC.CHUNK.LIST
//! file-id` returns `[[index, length, sha256], ...]`; `RC.CHUNK.DEL file-id [index]` deletes
//! one chunk or all of them and returns how many went.

use rcluster_domain::checksum::sha256_hex;
use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::keys::{chunk_field, chunk_key, file_chunks_key};
use rcluster_domain::validate;
use redis_module::raw::KeyType;
use redis_module::{Context, RedisString, RedisValue};

use crate::guard::{arity, Outcome};
use crate::settings;
use crate::stats::{self, Cmd};
use crate::store;

const PUT_USAGE: &str = "RC.CHUNK.PUT <file-id> <index> <sha256-hex> <data>";
const GET_USAGE: &str = "RC.CHUNK.GET <file-id> <index>";
const LIST_USAGE: &str = "RC.CHUNK.LIST <file-id>";
const DEL_USAGE: &str = "RC.CHUNK.DEL <file-id> [index]";

fn internal(what: &str, e: impl std::fmt::Display) -> CodedError {
    CodedError::new(Code::Internal, format!("{what}: {e}"))
}

/// Requires the per-file index set to be a set (or absent) before anything is written.
fn check_index_set(ctx: &Context, file_id: &str) -> Result<RedisString, CodedError> {
    let display = file_chunks_key(file_id);
    let name = store::string(ctx, display.as_str());
    store::expect_type(
        || display.clone(),
        ctx.open_key(&name).key_type(),
        KeyType::Set,
    )?;
    Ok(name)
}

/// The chunk indexes recorded for a file, ascending.
fn indexes(ctx: &Context, file_id: &str) -> Result<Vec<u32>, CodedError> {
    check_index_set(ctx, file_id)?;
    let name = store::string(ctx, file_chunks_key(file_id));
    let members = store::call(ctx, "SMEMBERS", &[&name])?;
    let mut out: Vec<u32> = match members {
        store::Raw::Array(items) => items
            .iter()
            .filter_map(|item| item.bytes())
            .filter_map(|b| validate::chunk_index(b).ok())
            .collect(),
        _ => Vec::new(),
    };
    out.sort_unstable();
    Ok(out)
}

fn stored_length(key: &redis_module::key::RedisKeyWritable) -> i64 {
    key.hash_get(chunk_field::LENGTH)
        .ok()
        .flatten()
        .and_then(|v| v.parse_integer().ok())
        .unwrap_or(0)
}

/// The validated arguments of a chunk write.
pub struct ChunkArgs {
    pub file_id: String,
    pub index: u32,
    pub sha256: String,
}

/// Checks `file-id index sha256 data`: ids, limits, and that the data hashes to the digest.
pub fn check_put(args: &[RedisString]) -> Result<ChunkArgs, CodedError> {
    check(args, false)
}

/// Like [`check_put`]; with `may_compute`, a digest of `*` means "hash the data here" (the
/// digest is then the one computed).
pub fn check(args: &[RedisString], may_compute: bool) -> Result<ChunkArgs, CodedError> {
    let file_id = validate::file_id(args[0].as_slice())?;
    let index = validate::chunk_index(args[1].as_slice())?;
    let expected = if may_compute && args[2].as_slice() == b"*" {
        None
    } else {
        Some(validate::sha256(args[2].as_slice())?)
    };
    let data = &args[3];
    validate::check_size(
        "chunk",
        data.len(),
        settings::max_chunk_bytes(),
        "rcluster.max-chunk-bytes",
    )?;
    let actual = sha256_hex(data.as_slice());
    if let Some(expected) = expected.filter(|e| *e != actual) {
        stats::checksum_failure();
        return Err(CodedError::new(
            Code::Checksum,
            format!(
                "{}: data hashes to {actual}, not {expected}; nothing was stored",
                chunk_key(&file_id, index)
            ),
        ));
    }
    Ok(ChunkArgs {
        file_id,
        index,
        sha256: actual,
    })
}

/// Stores a checked chunk on this Redis and propagates it to the AOF as `RC.CHUNK.PUT`.
pub fn store(ctx: &Context, c: &ChunkArgs, data: &RedisString) -> Result<(), CodedError> {
    let display = chunk_key(&c.file_id, c.index);
    let set_name = check_index_set(ctx, &c.file_id)?;
    let name = store::string(ctx, display.as_str());
    let (key, exists) = store::open_hash_writable(ctx, &name, || display.clone())?;
    let old_len = if exists { stored_length(&key) } else { 0 };
    let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
    let sha = store::string(ctx, &c.sha256);
    store::set_fields(
        &key,
        vec![
            (chunk_field::SHA256, sha.safe_clone(ctx)),
            (chunk_field::LENGTH, store::string(ctx, len.to_string())),
            (chunk_field::DATA, data.safe_clone(ctx)),
        ],
    );
    drop(key);
    // The index as a canonical number, so "7" and "007" are one member.
    let member = store::string(ctx, c.index.to_string());
    store::call(ctx, "SADD", &[&set_name, &member])?;
    stats::chunks_added(i64::from(!exists), len - old_len);
    let file = store::string(ctx, &c.file_id);
    ctx.replicate("RC.CHUNK.PUT", &[&file, &member, &sha, data][..]);
    Ok(())
}

pub fn put(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::ChunkPut, &args, 5, 5, PUT_USAGE)?;
    let checked = check_put(&args[1..])?;
    store(ctx, &checked, &args[4])?;
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// This node's copy of a chunk, checked against its stored digest and, when given, against
/// `expected` (the digest the caller recorded at upload): `None` when it has none.
pub fn load(
    ctx: &Context,
    file_id: &str,
    index: u32,
    expected: Option<&str>,
) -> Result<Option<RedisString>, CodedError> {
    let Some((stored_sha, data)) = read(ctx, file_id, index)? else {
        return Ok(None);
    };
    verify(
        &chunk_key(file_id, index),
        stored_sha.as_slice(),
        expected,
        data.as_slice(),
    )?;
    Ok(Some(data))
}

/// This node's copy of a chunk as stored, not yet checked: (stored sha256, data).
pub fn read(
    ctx: &Context,
    file_id: &str,
    index: u32,
) -> Result<Option<(RedisString, RedisString)>, CodedError> {
    let display = chunk_key(file_id, index);
    let name = store::string(ctx, display.as_str());
    let key = ctx.open_key(&name);
    if !store::expect_type(|| display.clone(), key.key_type(), KeyType::Hash)? {
        return Ok(None);
    }
    let field = |f: &str| key.hash_get(f).ok().flatten();
    match (field(chunk_field::SHA256), field(chunk_field::DATA)) {
        (Some(sha), Some(data)) => Ok(Some((sha, data))),
        _ => Err(CodedError::new(
            Code::Corrupt,
            format!("{display} lacks its 'sha256' or 'data' field; the chunk must be repaired from another replica"),
        )),
    }
}

/// Checks a copy's bytes against its stored digest and the caller's (pure; any thread).
pub fn verify(
    display: &str,
    stored_sha: &[u8],
    expected: Option<&str>,
    data: &[u8],
) -> Result<(), CodedError> {
    let actual = sha256_hex(data);
    if actual.as_bytes() != stored_sha {
        stats::checksum_failure();
        return Err(CodedError::new(
            Code::Checksum,
            format!(
                "{display} is corrupt: stored sha256 {}, data hashes to {actual}; the bytes were not returned",
                validate::show(stored_sha)
            ),
        ));
    }
    if let Some(expected) = expected.filter(|e| *e != actual) {
        stats::checksum_failure();
        return Err(CodedError::new(
            Code::Checksum,
            format!(
                "{display} hashes to {actual}, not to the expected {expected}; the bytes were not returned"
            ),
        ));
    }
    Ok(())
}

pub fn get(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::ChunkGet, &args, 3, 3, GET_USAGE)?;
    let file_id = validate::file_id(args[1].as_slice())?;
    let index = validate::chunk_index(args[2].as_slice())?;
    Ok(load(ctx, &file_id, index, None)?.map_or(RedisValue::Null, RedisValue::BulkRedisString))
}

pub fn list(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::ChunkList, &args, 2, 2, LIST_USAGE)?;
    let file_id = validate::file_id(args[1].as_slice())?;
    let mut rows = Vec::new();
    for index in indexes(ctx, &file_id)? {
        let name = store::string(ctx, chunk_key(&file_id, index));
        let key = ctx.open_key(&name);
        if key.key_type() != KeyType::Hash {
            continue; // Deleted behind the module's back: not held any more.
        }
        let field = |f: &str| key.hash_get(f).ok().flatten();
        let length = field(chunk_field::LENGTH)
            .and_then(|v| v.parse_integer().ok())
            .unwrap_or(-1);
        let sha = field(chunk_field::SHA256).map_or_else(String::new, |s| s.to_string_lossy());
        rows.push(RedisValue::Array(vec![
            RedisValue::Integer(i64::from(index)),
            RedisValue::Integer(length),
            RedisValue::BulkString(sha),
        ]));
    }
    Ok(RedisValue::Array(rows))
}

pub fn del(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    arity(Cmd::ChunkDel, &args, 2, 3, DEL_USAGE)?;
    let file_id = validate::file_id(args[1].as_slice())?;
    let targets = match args.get(2) {
        Some(i) => vec![validate::chunk_index(i.as_slice())?],
        None => indexes(ctx, &file_id)?,
    };
    let set_name = check_index_set(ctx, &file_id)?;
    // Type-check every target first, so a refusal leaves everything in place.
    for index in &targets {
        let display = chunk_key(&file_id, *index);
        let name = store::string(ctx, display.as_str());
        store::expect_type(
            || display.clone(),
            ctx.open_key(&name).key_type(),
            KeyType::Hash,
        )?;
    }
    let mut deleted = 0i64;
    for index in &targets {
        let name = store::string(ctx, chunk_key(&file_id, *index));
        let key = ctx.open_key_writable(&name);
        if key.key_type() == KeyType::Hash {
            let len = stored_length(&key);
            key.delete().map_err(|e| internal("deleting a chunk", e))?;
            stats::chunks_added(-1, -len);
            deleted += 1;
        }
        drop(key);
        let member = store::string(ctx, index.to_string());
        store::call(ctx, "SREM", &[&set_name, &member])?;
    }
    if deleted > 0 || !targets.is_empty() {
        ctx.replicate_verbatim();
    }
    Ok(RedisValue::Integer(deleted))
}
