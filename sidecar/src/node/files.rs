//! Files over HTTP: an upload is cut into chunks of the configured size as it streams in, each
//! chunk written with quorum through the module (`RC.CHUNK.SET <id> <i> * <data>`, a few in
//! flight: the module hashes it and answers the SHA-256), the whole file hashed here, and the
//! metadata written last (`RC.SET file:<id>`), so a failed or aborted upload never shows as a file
//! and its chunks are removed. A download reads the metadata, fetches each chunk
//! (`RC.CHUNK.FETCH ... SHA256 <digest recorded at upload>`, a few ahead: the module serves only
//! its copy that carries that digest and matches its CRC-32C), and streams it; Range requests are
//! served from the chunks they touch. A download holds one of `files.max_concurrent_downloads`
//! slots until its last byte is handed on or it is cut: after `files.transfer_timeout_ms`, or
//! when its client accepts no byte for `files.download_stall_timeout_ms` (its connection, see
//! `node::conn`). Chunks cross to and from this node's Redis on the
//! connections of `node::bulk`, without copies around them. Failures are a typed
//! [`TransferError`]; the HTTP layer maps them to answers.

use std::collections::VecDeque;
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

/// An upload in progress: feed it bytes, then finish or abort it.
pub struct Upload<'a> {
    shared: &'a Shared,
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
    _transfer: crate::node::memory::Transfer,
    started: std::time::Instant,
}

impl<'a> Upload<'a> {
    pub fn new(
        shared: &'a Shared,
        name: String,
        content_type: String,
        w: Option<u8>,
    ) -> Result<Self, TransferError> {
        let id = new_id().map_err(|e| {
            TransferError::Internal(format!("cannot read random bytes for a file id: {e}"))
        })?;
        let chunk_size = usize::try_from(shared.chunk_size_bytes()).unwrap_or(1 << 20);
        Ok(Upload {
            shared,
            id,
            name,
            content_type,
            w,
            chunk_size,
            max_bytes: shared.config.files.max_file_bytes,
            buffer: Vec::with_capacity(chunk_size),
            size: 0,
            whole: Sha256::new(),
            chunk_sha: Vec::new(),
            chunks: 0,
            in_flight: VecDeque::new(),
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

    /// Writes the last chunk and the metadata; the file exists from here on.
    pub async fn finish(
        mut self,
        expected_len: Option<u64>,
    ) -> Result<FileMeta, (TransferError, Upload<'a>)> {
        if let Some(n) = expected_len.filter(|n| *n != self.size) {
            let e = TransferError::LengthMismatch {
                got: self.size,
                declared: n,
            };
            return Err((e, self));
        }
        if !self.buffer.is_empty() {
            if let Err(e) = self.flush_chunk().await {
                return Err((e, self));
            }
        }
        while !self.in_flight.is_empty() {
            if let Err(e) = self.wait_one().await {
                return Err((e, self));
            }
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
        if let Err(e) = self.shared.local.query::<()>(&cmd, timeout).await {
            return Err((redis_failure("writing the file's metadata")(e), self));
        }
        self.shared
            .metrics
            .bytes
            .with_label_values(&["uploaded"])
            .inc_by(meta.size);
        (self.shared.metrics).transfer_done("upload", meta.size, self.started.elapsed());
        Ok(meta)
    }

    /// Stops the upload and removes whatever chunks it wrote.
    pub async fn abort(mut self) {
        for task in self.in_flight.drain(..) {
            let _ = task.await;
        }
        remove_chunks(self.shared, &self.id).await;
    }
}

/// A connection to a member's Redis (with this cluster's Redis password), or `None` when it
/// cannot be had.
pub async fn member_conn(
    shared: &Shared,
    n: &rcluster_domain::config::NodeConfig,
) -> Option<redis::aio::MultiplexedConnection> {
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

/// The metadata of file `id`, `None` when there is no such file.
pub async fn read_meta(shared: &Shared, id: &str) -> Result<Option<FileMeta>, TransferError> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TransferError::BadId(id.to_string()));
    }
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

/// Fetches chunk `index` of `meta`, verified against the digest recorded at upload.
pub async fn fetch_chunk(
    shared: &Shared,
    meta: &FileMeta,
    index: u64,
) -> Result<Vec<u8>, TransferError> {
    let expected = meta
        .chunk_sha256
        .get(index as usize)
        .map(String::as_str)
        .unwrap_or_default();
    // The module checks the copy it serves against the digest recorded at upload (and hashes
    // it once for that); the bytes then only cross loopback to here.
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
    shared.metrics.chunk_ops.with_label_values(&["read"]).inc();
    let data = shared.local.bulk(&cmd, timeout).await.map_err(|e| {
        if let RedisError::Module(CodedError {
            code: Code::Checksum,
            ..
        }) = e
        {
            // No copy matches the digest recorded at upload: never serve bad bytes.
            shared.metrics.checksum_failures.inc();
        }
        redis_failure(format!("reading chunk {index} of {}", meta.id))(e)
    })?;
    let data = data.ok_or_else(|| TransferError::ChunkMissing {
        id: meta.id.clone(),
        index,
    })?;
    Ok(data)
}

/// A Range header that is not one satisfiable byte range.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not one satisfiable byte range")]
pub struct BadRange;

/// A byte range within a file of `size` bytes: `Ok(None)` for the whole file.
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, BadRange> {
    let Some(h) = header else { return Ok(None) };
    let spec = h.trim().strip_prefix("bytes=").ok_or(BadRange)?;
    if spec.contains(',') {
        return Err(BadRange); // One range at a time.
    }
    let (a, b) = spec.split_once('-').ok_or(BadRange)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| BadRange)?;
            if n == 0 {
                return Err(BadRange);
            }
            (size.saturating_sub(n), size.checked_sub(1).ok_or(BadRange)?)
        }
        (a, "") => (
            a.parse().map_err(|_| BadRange)?,
            size.checked_sub(1).ok_or(BadRange)?,
        ),
        (a, b) => (
            a.parse().map_err(|_| BadRange)?,
            b.parse::<u64>()
                .map_err(|_| BadRange)?
                .min(size.saturating_sub(1)),
        ),
    };
    if start > end || start >= size {
        return Err(BadRange);
    }
    Ok(Some((start, end)))
}

/// What one download holds and how it may be cut.
pub struct Download {
    /// Its slot among `files.max_concurrent_downloads`, given back when the sending ends.
    pub permit: tokio::sync::OwnedSemaphorePermit,
    /// Its connection, cut when its time is up (none in tests without a socket).
    pub conn: Option<std::sync::Arc<crate::node::conn::Control>>,
    /// When it must be done (`files.transfer_timeout_ms` after it began).
    pub deadline: tokio::time::Instant,
}

/// Streams bytes `start..=end` of the file (all of it when `range` is `None`) chunk by chunk,
/// fetching a few chunks ahead. A failure mid-stream ends the stream with an error: the client sees a
/// cut connection, never wrong bytes. So does running past the download's deadline.
pub fn stream(
    shared: std::sync::Arc<Shared>,
    meta: FileMeta,
    range: Option<(u64, u64)>,
    download: Download,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let (start, end) = range.unwrap_or((0, meta.size.saturating_sub(1)));
    let empty = meta.size == 0;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let transfer = crate::node::memory::Transfer::begin();
    let (meta, started) = (std::sync::Arc::new(meta), std::time::Instant::now());
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
                let (shared, meta) = (shared.clone(), meta.clone());
                async move { (index, fetch_chunk(&shared, &meta, index).await) }
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
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Ok(Some((0, 4))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=-0",
        ] {
            assert_eq!(parse_range(Some(bad), 10), Err(BadRange), "{bad}");
        }
        assert_eq!(parse_range(Some("bytes=0-"), 0), Err(BadRange));
    }

    #[test]
    fn ids_are_random_hex() {
        let (a, b) = (new_id().unwrap(), new_id().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
