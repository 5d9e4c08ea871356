//! Files over HTTP: an upload is cut into chunks of the configured size as it streams in, each
//! chunk written with quorum through the module (`RC.CHUNK.SET <id> <i> * <data>`, a few in
//! flight: the module hashes it and answers the SHA-256), the whole file hashed here, and the
//! metadata written last (`RC.SET file:<id>`), so a failed or aborted upload never shows as a file
//! and its chunks are removed (also when the upload is dropped half way: its client went away, its
//! time ran out). A download reads the metadata, fetches each chunk
//! (`RC.CHUNK.FETCH ... SHA256 <digest recorded at upload>`, a few ahead: the module serves only
//! its copy that carries that digest and matches its CRC-32C), and streams it; when this node's
//! Redis fails mid-download the remaining chunks come from the other members' Redis (verified
//! against the same digest here). Range requests (RFC 9110: one byte range; other units and
//! several ranges get the whole file) are served from the chunks they touch. A download holds one of `files.max_concurrent_downloads`
//! slots until its last byte is handed on or it is cut: after `files.transfer_timeout_ms`, or
//! when its client accepts no byte for `files.download_stall_timeout_ms` (its connection, see
//! `node::conn`). Chunks cross to and from this node's Redis on the
//! connections of `node::bulk`, without copies around them. Failures are a typed
//! [`TransferError`]; the HTTP layer maps them to answers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use rcluster_domain::quorum::Options;
use rcluster_domain::rc::chunk::{ChunkDel, ChunkFetch, FetchOptions};
use rcluster_domain::rc::kv::{Get, QuorumOptions, Set};
use rcluster_domain::rc::{Command, Request};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

pub use crate::api::FileMeta;
use crate::node::bulk::Bulk;
use crate::node::local::rc;
use crate::node::redis_error::RedisError;
use crate::node::view::{unix_ms, Shared};
use rcluster_domain::codes::{Code, CodedError};

/// Chunk writes in flight during one upload.
const UPLOAD_PARALLELISM: usize = 4;
/// Chunk reads in flight during one download (4 measured faster than 3; 6 no faster than 4).
const DOWNLOAD_PARALLELISM: usize = 4;

/// The register holding a file's metadata.
pub fn meta_key(id: &str) -> String {
    format!("file:{id}")
}

/// A file id as given (32 hex digits, either case) in its one stored form, lower case.
pub fn file_id(given: &str) -> Result<String, TransferError> {
    if given.len() == 32 && given.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(given.to_ascii_lowercase())
    } else {
        Err(TransferError::BadId(given.to_string()))
    }
}

/// The content type an upload is stored with: what the client sent, except that no type or
/// `application/x-www-form-urlencoded` (what `curl --data-binary` sends unless told otherwise:
/// never a file's real type) becomes the type its name's extension says, else
/// `application/octet-stream`.
pub fn stored_content_type(sent: Option<&str>, name: &str) -> String {
    let sent = sent.map(str::trim).filter(|t| !t.is_empty());
    let is_form = |t: &str| {
        t.split(';').next().is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    };
    match sent {
        Some(t) if !is_form(t) => t.to_string(),
        _ => type_of_name(name).to_string(),
    }
}

/// The content type a file name's extension says (a short list of common ones).
fn type_of_name(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// A new random file id (128 bits, hex).
pub fn new_id() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes))?;
    Ok(hex::encode(bytes))
}

/// Why an upload, a download or a metadata read failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Not a file id (32 hex characters).
    #[error("'{0}' is not a file id (32 hex characters)")]
    BadId(String),
    /// The file grew over `files.max_file_bytes`.
    #[error("the file is larger than files.max_file_bytes ({max} bytes)")]
    TooLarge { max: u64 },
    /// The body was not as long as its declared length.
    #[error("the body had {got} bytes but Content-Length said {declared}")]
    LengthMismatch { got: u64, declared: u64 },
    /// This node's Redis (or the module's quorum behind it) refused or did not answer.
    #[error("{what}: {source}")]
    Redis {
        what: String,
        #[source]
        source: RedisError,
    },
    /// A chunk write answered something that is no SHA-256 digest.
    #[error("writing a chunk: the module answered {0:?}, not a digest")]
    NoDigest(String),
    /// No reachable replica holds the chunk.
    #[error("chunk {index} of {id} is on no reachable replica")]
    ChunkMissing { id: String, index: u64 },
    /// The stored metadata is not a file's metadata.
    #[error("metadata of {id} is unreadable: {reason}")]
    CorruptMetadata { id: String, reason: String },
    /// Something on this node failed (no random bytes, a task panicked).
    #[error("{0}")]
    Internal(String),
}

fn redis_failure(what: impl Into<String>) -> impl FnOnce(RedisError) -> TransferError {
    let what = what.into();
    move |source| TransferError::Redis { what, source }
}

/// An upload in progress: feed it bytes, then finish it. An upload dropped before it finished
/// (failed, refused, its client gone, its time up) removes the chunks it wrote, in the
/// background: whoever held it (and its upload slot) is free at once.
pub struct Upload {
    shared: Arc<Shared>,
    pub id: String,
    name: String,
    content_type: String,
    w: Option<u8>,
    chunk_size: usize,
    max_bytes: u64,
    buffer: Vec<u8>,
    size: u64,
    whole: Sha256,
    chunk_sha: Vec<String>,
    /// Chunks handed to the module so far (their digests arrive in `chunk_sha`, in order).
    chunks: usize,
    in_flight: VecDeque<JoinHandle<Result<String, RedisError>>>,
    /// Set once the metadata is written: the chunks belong to a file from then on.
    stored: bool,
    _transfer: crate::node::memory::Transfer,
    started: std::time::Instant,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.stored || self.chunks == 0 {
            return;
        }
        let writes: Vec<_> = self.in_flight.drain(..).collect();
        let (shared, id) = (self.shared.clone(), self.id.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            // Chunk writes still on their way land first, so none is left behind.
            for write in writes {
                let _ = write.await;
            }
            let removed = remove_chunks(&shared, &id).await;
            tracing::info!(
                node = %shared.me.id,
                "upload {id} did not finish: removed {removed} chunk copies"
            );
        });
    }
}

impl Upload {
    pub fn new(
        shared: Arc<Shared>,
        name: String,
        content_type: String,
        w: Option<u8>,
    ) -> Result<Self, TransferError> {
        let id = new_id().map_err(|e| {
            TransferError::Internal(format!("cannot read random bytes for a file id: {e}"))
        })?;
        let chunk_size = usize::try_from(shared.chunk_size_bytes()).unwrap_or(1 << 20);
        let max_bytes = shared.config.files.max_file_bytes;
        Ok(Upload {
            shared,
            id,
            name,
            content_type,
            w,
            chunk_size,
            max_bytes,
            buffer: Vec::with_capacity(chunk_size),
            size: 0,
            whole: Sha256::new(),
            chunk_sha: Vec::new(),
            chunks: 0,
            in_flight: VecDeque::new(),
            stored: false,
            _transfer: crate::node::memory::Transfer::begin(),
            started: std::time::Instant::now(),
        })
    }

    /// Takes the next piece of the body.
    pub async fn feed(&mut self, mut data: &[u8]) -> Result<(), TransferError> {
        self.size += data.len() as u64;
        if self.size > self.max_bytes {
            return Err(TransferError::TooLarge {
                max: self.max_bytes,
            });
        }
        self.whole.update(data);
        while !data.is_empty() {
            let take = (self.chunk_size - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == self.chunk_size {
                self.flush_chunk().await?;
            }
        }
        Ok(())
    }

    async fn flush_chunk(&mut self) -> Result<(), TransferError> {
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.chunk_size));
        let index = self.chunks;
        self.chunks += 1;
        // `*`: the coordinating module hashes the chunk (it had to, to check it) and answers
        // the digest, so the chunk is hashed once here less.
        let (id, w) = (self.id.clone(), self.w.map(|w| w.to_string()));
        let timeout =
            Duration::from_millis(self.shared.config.intervals.request_timeout_ms + 2_000);
        let shared_local = self.shared.local_handle();
        self.shared
            .metrics
            .chunk_ops
            .with_label_values(&["write"])
            .inc();
        self.in_flight.push_back(tokio::spawn(async move {
            let index = index.to_string();
            // The contract's RC.CHUNK.SET with `*` (the module hashes the chunk), the chunk's
            // bytes borrowed rather than copied into an encoded argument vector.
            let mut cmd: Vec<&[u8]> = vec![
                Command::ChunkSet.name().as_bytes(),
                id.as_bytes(),
                index.as_bytes(),
                b"*",
                &data,
            ];
            if let Some(w) = &w {
                cmd.extend([b"W".as_slice(), w.as_bytes()]);
            }
            let reply = shared_local.bulk(&cmd, timeout).await?;
            Ok(String::from_utf8_lossy(&reply.unwrap_or_default()).into_owned())
        }));
        while self.in_flight.len() >= UPLOAD_PARALLELISM {
            self.wait_one().await?;
        }
        Ok(())
    }

    async fn wait_one(&mut self) -> Result<(), TransferError> {
        let Some(task) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match task.await {
            Ok(Ok(sha)) if sha.len() == 64 => {
                self.chunk_sha.push(sha);
                Ok(())
            }
            Ok(Ok(other)) => Err(TransferError::NoDigest(other)),
            Ok(Err(e)) => Err(redis_failure("writing a chunk")(e)),
            Err(e) => Err(TransferError::Internal(format!("chunk writer failed: {e}"))),
        }
    }

    /// Writes the last chunk and the metadata; the file exists from here on. On failure the
    /// upload is dropped, which removes its chunks.
    pub async fn finish(mut self, expected_len: Option<u64>) -> Result<FileMeta, TransferError> {
        if let Some(n) = expected_len.filter(|n| *n != self.size) {
            return Err(TransferError::LengthMismatch {
                got: self.size,
                declared: n,
            });
        }
        if !self.buffer.is_empty() {
            self.flush_chunk().await?;
        }
        while !self.in_flight.is_empty() {
            self.wait_one().await?;
        }
        let meta = FileMeta {
            id: self.id.clone(),
            name: self.name.clone(),
            size: self.size,
            content_type: self.content_type.clone(),
            chunk_size: self.chunk_size as u64,
            chunk_count: self.chunk_sha.len() as u64,
            sha256: hex::encode(self.whole.clone().finalize()),
            chunk_sha256: self.chunk_sha.clone(),
            created_ms: unix_ms(),
        };
        let json = serde_json::to_string(&meta).unwrap_or_default();
        let key = meta_key(&self.id);
        let cmd = rc(&Set {
            key: key.as_bytes(),
            value: json.as_bytes(),
            options: QuorumOptions::Typed(Options {
                count: self.w,
                timeout_ms: None,
            }),
        });
        let timeout =
            Duration::from_millis(self.shared.config.intervals.request_timeout_ms + 2_000);
        self.shared
            .local
            .query::<()>(&cmd, timeout)
            .await
            .map_err(redis_failure("writing the file's metadata"))?;
        self.stored = true;
        self.shared
            .metrics
            .bytes
            .with_label_values(&["uploaded"])
            .inc_by(meta.size);
        (self.shared.metrics).transfer_done("upload", meta.size, self.started.elapsed());
        Ok(meta)
    }
}

/// A connection to a member's Redis (with this cluster's Redis password), or `None` when it
/// cannot be had (also across an injected fault that cuts the two nodes apart).
pub async fn member_conn(
    shared: &Shared,
    n: &rcluster_domain::config::NodeConfig,
) -> Option<redis::aio::MultiplexedConnection> {
    tokio::time::sleep(crate::node::faults::round_trip(&n.id)?).await;
    let client = crate::probe::redis_client(
        &n.host,
        n.redis_port,
        shared.config.redis_password.as_deref(),
    )
    .ok()?;
    client.get_multiplexed_async_connection().await.ok()
}

/// Deletes a file's chunks on every node that answers (best effort; returns how many went).
pub async fn remove_chunks(shared: &Shared, id: &str) -> u64 {
    let mut removed = 0;
    for n in &shared.members() {
        let attempt = async {
            let mut conn = member_conn(shared, n).await?;
            rc(&ChunkDel {
                file_id: id,
                index: None,
            })
            .query_async::<u64>(&mut conn)
            .await
            .ok()
        };
        if let Ok(Some(n)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
            removed += n;
        }
    }
    removed
}

/// The ids of the files whose metadata any reachable node holds (`kv:file:*`), sorted.
pub async fn list_ids(shared: &Shared) -> Vec<String> {
    let mut ids = std::collections::BTreeSet::new();
    for n in &shared.members() {
        let attempt = async {
            let mut conn = member_conn(shared, n).await?;
            let mut found = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg("kv:file:*")
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                found.extend(keys);
                if next == 0 {
                    return Some(found);
                }
                cursor = next;
            }
        };
        if let Ok(Some(keys)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
            ids.extend(
                keys.into_iter()
                    .filter_map(|k| k.strip_prefix("kv:file:").map(str::to_string)),
            );
        }
    }
    ids.into_iter().collect()
}

/// The metadata of file `id` (either case), `None` when there is no such file.
pub async fn read_meta(shared: &Shared, id: &str) -> Result<Option<FileMeta>, TransferError> {
    let id = &file_id(id)?;
    let key = meta_key(id);
    let cmd = rc(&Get {
        key: key.as_bytes(),
        options: QuorumOptions::NONE,
    });
    let timeout = Duration::from_millis(shared.config.intervals.request_timeout_ms + 2_000);
    let raw: Option<Vec<u8>> = shared
        .local
        .query(&cmd, timeout)
        .await
        .map_err(redis_failure("reading metadata"))?;
    match raw {
        None => Ok(None),
        Some(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| TransferError::CorruptMetadata {
                    id: id.to_string(),
                    reason: e.to_string(),
                })
        }
    }
}

/// Where one download's chunks come from: this node's Redis, and when that fails, the other
/// members' Redis (each on bulk connections of its own, kept for the rest of the download).
pub struct Source {
    shared: Arc<Shared>,
    /// Set once this node's Redis could not be reached: the other members are asked first from
    /// then on (this node's Redis last, in case it came back).
    local_down: AtomicBool,
    peers: Mutex<HashMap<String, Arc<Bulk>>>,
}

/// Whether a failed chunk read may succeed through another member: anything but a checked
/// answer that no copy matches the digest (every member would find the same copies).
fn worth_another_member(e: &RedisError) -> bool {
    !matches!(
        e,
        RedisError::Module(CodedError {
            code: Code::Checksum,
            ..
        })
    )
}

impl Source {
    pub fn new(shared: Arc<Shared>) -> Source {
        Source {
            shared,
            local_down: AtomicBool::new(false),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Chunk `index` of `meta` from this node's Redis, or (when that fails) from another
    /// member's, verified against the digest recorded at upload.
    pub async fn fetch(&self, meta: &FileMeta, index: u64) -> Result<Vec<u8>, TransferError> {
        let shared = &self.shared;
        let expected = meta
            .chunk_sha256
            .get(index as usize)
            .map(String::as_str)
            .unwrap_or_default();
        // The module checks the copy it serves against the digest recorded at upload (and
        // hashes it once for that); the bytes then only cross loopback to here.
        let fetch = ChunkFetch {
            file_id: &meta.id,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            options: FetchOptions::Typed {
                sha256: Some(expected.into()),
                timeout_ms: None,
            },
        }
        .encode();
        let cmd: Vec<&[u8]> = fetch.iter().map(Vec::as_slice).collect();
        let timeout = Duration::from_millis(shared.config.intervals.request_timeout_ms + 2_000);
        let what = || format!("reading chunk {index} of {}", meta.id);
        let missing = || TransferError::ChunkMissing {
            id: meta.id.clone(),
            index,
        };
        let local_first = !self.local_down.load(Ordering::Relaxed);
        let local_error = if local_first {
            shared.metrics.chunk_ops.with_label_values(&["read"]).inc();
            match shared.local.bulk(&cmd, timeout).await {
                Ok(Some(data)) => return Ok(data),
                Ok(None) => return Err(missing()),
                Err(e) if worth_another_member(&e) => {
                    if matches!(e, RedisError::Unreachable(_) | RedisError::Timeout(_)) {
                        self.local_down.store(true, Ordering::Relaxed);
                    }
                    tracing::warn!(
                        node = %shared.me.id,
                        "{}: {e}; asking the other members",
                        what()
                    );
                    Some(e)
                }
                Err(e) => return Err(self.checksum_failed(what(), e)),
            }
        } else {
            None
        };
        if let Some(data) = self.ask_peers(&cmd, expected, timeout).await {
            return Ok(data);
        }
        if let Some(e) = local_error {
            return Err(redis_failure(what())(e));
        }
        // This node's Redis failed earlier: ask it again, it may be back.
        shared.metrics.chunk_ops.with_label_values(&["read"]).inc();
        match shared.local.bulk(&cmd, timeout).await {
            Ok(Some(data)) => {
                self.local_down.store(false, Ordering::Relaxed);
                Ok(data)
            }
            Ok(None) => Err(missing()),
            Err(e) if worth_another_member(&e) => Err(redis_failure(what())(e)),
            Err(e) => Err(self.checksum_failed(what(), e)),
        }
    }

    fn checksum_failed(&self, what: String, e: RedisError) -> TransferError {
        // No copy matches the digest recorded at upload: never serve bad bytes.
        self.shared.metrics.checksum_failures.inc();
        redis_failure(what)(e)
    }

    /// The chunk `cmd` fetches, from the first other member whose Redis serves it with the
    /// `expected` digest.
    async fn ask_peers(&self, cmd: &[&[u8]], expected: &str, timeout: Duration) -> Option<Vec<u8>> {
        let shared = &self.shared;
        let password = shared.config.redis_password.as_deref();
        for node in shared.members().iter().filter(|n| n.id != shared.me.id) {
            let bulk = self
                .peers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(node.id.clone())
                .or_default()
                .clone();
            let addr = redis::ConnectionAddr::Tcp(node.host.clone(), node.redis_port);
            shared
                .metrics
                .chunk_ops
                .with_label_values(&["read_peer"])
                .inc();
            match bulk.get(&addr, password, cmd, timeout).await {
                Ok(Some(data)) if hex::encode(Sha256::digest(&data)) == expected => {
                    return Some(data)
                }
                Ok(Some(_)) => {
                    shared.metrics.checksum_failures.inc();
                    tracing::warn!(
                        node = %shared.me.id,
                        "member {} served a chunk that does not match its digest",
                        node.id
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(node = %shared.me.id, "member {}: {e}", node.id);
                }
            }
        }
        None
    }
}

/// What a Range header asks of a file (RFC 9110, section 14).
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// The whole file (200): no Range, or one to ignore: a unit other than `bytes`, or several
    /// ranges (not served as multipart).
    Whole,
    /// One satisfiable byte range, first and last byte included (206).
    Part(u64, u64),
    /// One byte range that is malformed or starts at or past the end (416 with
    /// `Content-Range: bytes */size`).
    Unsatisfiable,
}

/// What the `Range` header asks of a file of `size` bytes.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(h) = header else {
        return RangeAsk::Whole;
    };
    let Some((unit, spec)) = h.trim().split_once('=') else {
        return RangeAsk::Whole; // No range-unit: not a range this server knows.
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeAsk::Whole;
    }
    one_byte_range(spec, size).map_or(RangeAsk::Unsatisfiable, |(a, b)| RangeAsk::Part(a, b))
}

/// `a-b`, `a-` or `-n` within a file of `size` bytes, clipped to its end.
fn one_byte_range(spec: &str, size: u64) -> Option<(u64, u64)> {
    let (a, b) = spec.split_once('-')?;
    let digits = |t: &str| -> Option<u64> {
        (!t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let last = size.checked_sub(1)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n = digits(n).filter(|n| *n > 0)?;
            (size.saturating_sub(n), last)
        }
        (a, "") => (digits(a)?, last),
        (a, b) => {
            let (a, b) = (digits(a)?, digits(b)?);
            if b < a {
                return None;
            }
            (a, b.min(last))
        }
    };
    (start <= end && start < size).then_some((start, end))
}

/// A file's entity tag: strong, its SHA-256 (a file's bytes never change under its id).
pub fn etag(meta: &FileMeta) -> String {
    format!("\"{}\"", meta.sha256)
}

/// Whether `If-Range` lets a range be served: absent, or the file's entity tag exactly (a
/// strong comparison; a date never matches, as no Last-Modified is sent).
pub fn if_range_holds(if_range: Option<&str>, etag: &str) -> bool {
    if_range.is_none_or(|v| v.trim() == etag)
}

/// Whether `If-None-Match` names the file (`*`, or its entity tag, weak or strong): then the
/// answer is 304 Not Modified.
pub fn none_match(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(list) = if_none_match else {
        return false;
    };
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// What one download holds and how it may be cut.
pub struct Download {
    /// Its slot among `files.max_concurrent_downloads`, given back when the sending ends.
    pub permit: tokio::sync::OwnedSemaphorePermit,
    /// Its connection, cut when its time is up (none in tests without a socket).
    pub conn: Option<Arc<crate::node::conn::Control>>,
    /// When it must be done (`files.transfer_timeout_ms` after it began).
    pub deadline: tokio::time::Instant,
}

/// Streams bytes `start..=end` of the file (all of it when `range` is `None`) chunk by chunk,
/// fetching a few chunks ahead (from this node's Redis, or the other members' when it fails). A
/// failure mid-stream ends the stream with an error: the client sees a cut connection, never
/// wrong bytes. So does running past the download's deadline.
pub fn stream(
    shared: Arc<Shared>,
    meta: FileMeta,
    range: Option<(u64, u64)>,
    download: Download,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let (start, end) = range.unwrap_or((0, meta.size.saturating_sub(1)));
    let empty = meta.size == 0;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let transfer = crate::node::memory::Transfer::begin();
    let (meta, started) = (Arc::new(meta), std::time::Instant::now());
    let source = Arc::new(Source::new(shared.clone()));
    tokio::spawn(async move {
        let _transfer = transfer;
        let Download {
            permit: _permit,
            conn,
            deadline,
        } = download;
        let active = shared.metrics.downloads_active.clone();
        active.inc();
        struct Done(prometheus::IntGauge);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        let _done = Done(active);
        if empty {
            return;
        }
        let out_of_time = |what: &str| {
            shared
                .metrics
                .download_cuts
                .with_label_values(&["timeout"])
                .inc();
            tracing::warn!(
                node = %shared.me.id,
                "download of {} cut {what}: over files.transfer_timeout_ms",
                meta.id
            );
            if let Some(c) = &conn {
                c.cut();
            }
        };
        let cs = meta.chunk_size.max(1);
        // Chunks are fetched DOWNLOAD_PARALLELISM at a time and sent in order.
        let fetches = futures_util::stream::iter(start / cs..=end / cs)
            .map(|index| {
                let (source, meta) = (source.clone(), meta.clone());
                async move { (index, source.fetch(&meta, index).await) }
            })
            .buffered(DOWNLOAD_PARALLELISM);
        futures_util::pin_mut!(fetches);
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline, fetches.next()).await else {
                out_of_time("while reading chunks");
                let _ = tx.try_send(Err(std::io::Error::other("over files.transfer_timeout_ms")));
                return;
            };
            let Some((index, fetched)) = next else {
                (shared.metrics).transfer_done("download", end + 1 - start, started.elapsed());
                return;
            };
            let data = match fetched {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(node = %shared.me.id, "download of {} failed: {e}", meta.id);
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            let chunk_start = index * cs;
            let from = start.saturating_sub(chunk_start) as usize;
            let to = ((end - chunk_start + 1) as usize).min(data.len());
            let piece = Bytes::from(data).slice(from..to);
            shared
                .metrics
                .bytes
                .with_label_values(&["downloaded"])
                .inc_by(piece.len() as u64);
            match tokio::time::timeout_at(deadline, tx.send(Ok(piece))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return, // The client went away (or its connection was cut).
                Err(_) => {
                    out_of_time("while the client was reading");
                    return;
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeAsk::*;
        assert_eq!(parse_range(None, 10), Whole);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Part(0, 4));
        assert_eq!(parse_range(Some("Bytes = 0-4"), 10), Part(0, 4));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Part(0, 9));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Part(8, 9));
        // Another unit, several ranges, no unit at all: ignored, the whole file.
        for whole in [
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=0-1, 3-4",
            "0-4",
            "none",
        ] {
            assert_eq!(parse_range(Some(whole), 10), Whole, "{whole}");
        }
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=-0",
            "bytes=+1-2",
            "bytes=",
            "bytes=-",
        ] {
            assert_eq!(parse_range(Some(bad), 10), Unsatisfiable, "{bad}");
        }
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-1"), 0), Unsatisfiable);
    }

    #[test]
    fn validators_compare_as_rfc_9110_says() {
        let tag = "\"ab12\"";
        assert!(if_range_holds(None, tag));
        assert!(if_range_holds(Some(" \"ab12\" "), tag));
        assert!(
            !if_range_holds(Some("W/\"ab12\""), tag),
            "If-Range is strong"
        );
        assert!(!if_range_holds(Some("\"other\""), tag));
        assert!(!if_range_holds(Some("Sun, 06 Nov 1994 08:49:37 GMT"), tag));
        assert!(!none_match(None, tag));
        assert!(none_match(Some("*"), tag));
        assert!(
            none_match(Some("\"x\", W/\"ab12\""), tag),
            "weak comparison"
        );
        assert!(!none_match(Some("\"x\""), tag));
    }

    #[test]
    fn ids_are_accepted_in_either_case_and_stored_in_lower_case() {
        let upper = "0123456789ABCDEF0123456789ABCDEF";
        assert_eq!(file_id(upper).unwrap(), upper.to_ascii_lowercase());
        for bad in ["", "xyz", &upper[1..], "0123456789abcdef0123456789abcdeg"] {
            assert!(
                matches!(file_id(bad), Err(TransferError::BadId(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_form_content_type_is_no_files_type() {
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(
            stored_content_type(form, "a.bin"),
            "application/octet-stream"
        );
        assert_eq!(
            stored_content_type(form, "noext"),
            "application/octet-stream"
        );
        assert_eq!(stored_content_type(form, "notes.TXT"), "text/plain");
        assert_eq!(
            stored_content_type(
                Some("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
                "p.png"
            ),
            "image/png"
        );
        assert_eq!(stored_content_type(None, "a.json"), "application/json");
        assert_eq!(
            stored_content_type(Some(" "), "a"),
            "application/octet-stream"
        );
        assert_eq!(stored_content_type(Some("text/csv"), "a.bin"), "text/csv");
    }

    #[test]
    fn ids_are_random_hex() {
        let (a, b) = (new_id().unwrap(), new_id().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
