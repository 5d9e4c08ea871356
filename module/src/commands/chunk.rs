//! File chunks on this Redis only, each stored with its SHA-256 and CRC-32C and checked: the
//! handlers of `RC.CHUNK.PUT`, `.GET`, `.LIST` and `.DEL` (as `rcluster_domain::rc::chunk`
//! defines them). A chunk is stored only if its data hashes to the digest given (or, when the
//! sender computed it from the same checked bytes, matches the CRC-32C given), and re-checked
//! against the stored CRC-32C whenever it is read.

use rcluster_domain::checksum::{crc32c_hex, sha256_hex};
use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::keys::{chunk_field, chunk_key, file_chunks_key};
use rcluster_domain::rc::chunk::{ChunkDel, ChunkGet, ChunkList, ChunkPut, ListRow};
use rcluster_domain::rc::Command;
use rcluster_domain::validate;
use redis_module::raw::KeyType;
use redis_module::{Context, RedisString, RedisValue};

use crate::guard::{Outcome, Reply};
use crate::settings;
use crate::stats;
use crate::store;

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

/// The checked arguments of a chunk write.
pub struct ChunkArgs {
    pub file_id: String,
    pub index: u32,
    pub sha256: String,
    /// CRC-32C of the data, checked on every later read and copy.
    pub crc32c: String,
}

/// Checks a parsed `RC.CHUNK.PUT`'s data against the CRC-32C when one is given (the sender
/// computed it from bytes it had checked against the SHA-256, so only the transfer is left to
/// check), else against the SHA-256.
pub fn check_put(put: &ChunkPut) -> Result<ChunkArgs, CodedError> {
    let Some(expected) = &put.crc32c else {
        return check(put.file_id, put.index, Some(&put.sha256), put.data);
    };
    let crc32c = crc32c_hex(put.data);
    mismatch(put.file_id, put.index, "crc32c", &crc32c, expected)?;
    Ok(ChunkArgs {
        file_id: put.file_id.to_string(),
        index: put.index,
        sha256: put.sha256.to_string(),
        crc32c,
    })
}

/// `CHECKSUM` when the data's `kind` checksum is not the one the writer gave.
fn mismatch(
    file_id: &str,
    index: u32,
    kind: &str,
    actual: &str,
    expected: &str,
) -> Result<(), CodedError> {
    if actual == expected {
        return Ok(());
    }
    stats::checksum_failure();
    Err(CodedError::new(
        Code::Checksum,
        format!(
            "{}: data has {kind} {actual}, not {expected}; nothing was stored",
            chunk_key(file_id, index)
        ),
    ))
}

/// Checks `data` against the SHA-256 `expected`; `None` means "hash the data here" (the digest
/// is then the one computed).
pub fn check(
    file_id: &str,
    index: u32,
    expected: Option<&str>,
    data: &[u8],
) -> Result<ChunkArgs, CodedError> {
    let actual = sha256_hex(data);
    if let Some(expected) = expected {
        mismatch(file_id, index, "sha256", &actual, expected)?;
    }
    Ok(ChunkArgs {
        file_id: file_id.to_string(),
        index,
        sha256: actual,
        crc32c: crc32c_hex(data),
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
    let crc = store::string(ctx, &c.crc32c);
    store::set_fields(
        &key,
        vec![
            (chunk_field::SHA256, sha.safe_clone(ctx)),
            (chunk_field::CRC32C, crc.safe_clone(ctx)),
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
    // With the CRC-32C, so replaying the AOF checks each chunk at CRC speed.
    let flag = store::string(ctx, "CRC32C");
    ctx.replicate(
        Command::ChunkPut.name(),
        &[&file, &member, &sha, data, &flag, &crc][..],
    );
    Ok(())
}

pub fn put(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let checked = check_put(&ChunkPut::parse(&args, &settings::limits())?)?;
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
    let Some(held) = read(ctx, file_id, index)? else {
        return Ok(None);
    };
    held.verify(&chunk_key(file_id, index), expected)?;
    Ok(Some(held.data))
}

/// A chunk as stored on this node, not yet checked.
pub struct Stored<T> {
    pub sha256: T,
    /// Absent on chunks stored before CRC-32C was recorded.
    pub crc32c: Option<T>,
    pub data: T,
}

impl<T: std::ops::Deref<Target = [u8]>> Stored<T> {
    /// Whether checking this copy is cheap enough for Redis's main thread (CRC-32C runs at
    /// memory speed; a SHA-256 of a 5 MiB chunk would stall every client for milliseconds).
    pub fn quick_to_check(&self) -> bool {
        self.crc32c.is_some()
    }

    /// Checks the bytes against the stored CRC-32C (or, for older copies, the stored SHA-256),
    /// and the stored SHA-256 against the caller's `expected` digest (pure; any thread).
    pub fn verify(&self, display: &str, expected: Option<&str>) -> Result<(), CodedError> {
        let stored_sha = &self.sha256[..];
        let data = &self.data[..];
        let (kind, stored, actual) = match &self.crc32c {
            Some(crc) => ("crc32c", &crc[..], crc32c_hex(data)),
            None => ("sha256", stored_sha, sha256_hex(data)),
        };
        if actual.as_bytes() != stored {
            stats::checksum_failure();
            return Err(CodedError::new(
                Code::Checksum,
                format!(
                    "{display} is corrupt: stored {kind} {}, data has {actual}; the bytes were not returned",
                    validate::show(stored)
                ),
            ));
        }
        if let Some(expected) = expected.filter(|e| e.as_bytes() != stored_sha) {
            stats::checksum_failure();
            return Err(CodedError::new(
                Code::Checksum,
                format!(
                    "{display} holds sha256 {}, not the expected {expected}; the bytes were not returned",
                    validate::show(stored_sha)
                ),
            ));
        }
        Ok(())
    }

    /// The same copy with owned bytes, to be checked off the main thread.
    pub fn to_owned(&self) -> Stored<Vec<u8>> {
        Stored {
            sha256: self.sha256.to_vec(),
            crc32c: self.crc32c.as_ref().map(|c| c.to_vec()),
            data: self.data.to_vec(),
        }
    }
}

/// This node's copy of a chunk as stored, not yet checked.
pub fn read(
    ctx: &Context,
    file_id: &str,
    index: u32,
) -> Result<Option<Stored<RedisString>>, CodedError> {
    let display = chunk_key(file_id, index);
    let name = store::string(ctx, display.as_str());
    let key = ctx.open_key(&name);
    if !store::expect_type(|| display.clone(), key.key_type(), KeyType::Hash)? {
        return Ok(None);
    }
    let field = |f: &str| key.hash_get(f).ok().flatten();
    match (field(chunk_field::SHA256), field(chunk_field::DATA)) {
        (Some(sha256), Some(data)) => Ok(Some(Stored {
            sha256,
            crc32c: field(chunk_field::CRC32C),
            data,
        })),
        _ => Err(CodedError::new(
            Code::Corrupt,
            format!("{display} lacks its 'sha256' or 'data' field; the chunk must be repaired from another replica"),
        )),
    }
}

pub fn get(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let ChunkGet { file_id, index } = ChunkGet::parse(&args)?;
    Ok(load(ctx, file_id, index, None)?.map_or(RedisValue::Null, RedisValue::BulkRedisString))
}

pub fn list(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let file_id = ChunkList::parse(&args)?.file_id;
    let mut rows = Vec::new();
    for index in indexes(ctx, file_id)? {
        let name = store::string(ctx, chunk_key(file_id, index));
        let key = ctx.open_key(&name);
        if key.key_type() != KeyType::Hash {
            continue; // Deleted behind the module's back: not held any more.
        }
        let field = |f: &str| key.hash_get(f).ok().flatten();
        let length = field(chunk_field::LENGTH)
            .and_then(|v| v.parse_integer().ok())
            .unwrap_or(-1);
        let sha256 = field(chunk_field::SHA256).map_or_else(String::new, |s| s.to_string_lossy());
        rows.push(ListRow {
            index,
            length,
            sha256,
        });
    }
    Ok(ListRow::encode::<Reply>(rows))
}

pub fn del(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let ChunkDel { file_id, index } = ChunkDel::parse(&args)?;
    let targets = match index {
        Some(i) => vec![i],
        None => indexes(ctx, file_id)?,
    };
    let set_name = check_index_set(ctx, file_id)?;
    // Type-check every target first, so a refusal leaves everything in place.
    for index in &targets {
        let display = chunk_key(file_id, *index);
        let name = store::string(ctx, display.as_str());
        store::expect_type(
            || display.clone(),
            ctx.open_key(&name).key_type(),
            KeyType::Hash,
        )?;
    }
    let mut deleted = 0i64;
    for index in &targets {
        let name = store::string(ctx, chunk_key(file_id, *index));
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
