//! Counters behind the `INFO rcluster` section: calls and errors per command, and how many
//! registers and chunks this Redis holds (kept incrementally, recounted after every load).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Every command of the module, in registration order; the index into the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    ReplicaPut,
    ReplicaGet,
    ReplicaDel,
    ChunkPut,
    ChunkGet,
    ChunkList,
    ChunkDel,
    Clock,
    Debug,
}

impl Cmd {
    pub const ALL: [Cmd; 9] = [
        Cmd::ReplicaPut,
        Cmd::ReplicaGet,
        Cmd::ReplicaDel,
        Cmd::ChunkPut,
        Cmd::ChunkGet,
        Cmd::ChunkList,
        Cmd::ChunkDel,
        Cmd::Clock,
        Cmd::Debug,
    ];

    /// The command name as a client types it.
    pub fn name(self) -> &'static str {
        match self {
            Cmd::ReplicaPut => "RC.REPLICA.PUT",
            Cmd::ReplicaGet => "RC.REPLICA.GET",
            Cmd::ReplicaDel => "RC.REPLICA.DEL",
            Cmd::ChunkPut => "RC.CHUNK.PUT",
            Cmd::ChunkGet => "RC.CHUNK.GET",
            Cmd::ChunkList => "RC.CHUNK.LIST",
            Cmd::ChunkDel => "RC.CHUNK.DEL",
            Cmd::Clock => "RC.CLOCK",
            Cmd::Debug => "RC.DEBUG",
        }
    }
}

const N: usize = Cmd::ALL.len();
static CALLS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static ERRORS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static KV_KEYS: AtomicI64 = AtomicI64::new(0);
static CHUNKS: AtomicI64 = AtomicI64::new(0);
static CHUNK_BYTES: AtomicI64 = AtomicI64::new(0);
static CHECKSUM_FAILURES: AtomicU64 = AtomicU64::new(0);
static PANICS: AtomicU64 = AtomicU64::new(0);
/// Set when the keyspace was replaced (load from disk): the held counts are recounted.
static NEEDS_RECOUNT: AtomicBool = AtomicBool::new(true);

pub fn record(cmd: Cmd, ok: bool) {
    CALLS[cmd as usize].fetch_add(1, Ordering::Relaxed);
    if !ok {
        ERRORS[cmd as usize].fetch_add(1, Ordering::Relaxed);
    }
}

pub fn calls(cmd: Cmd) -> u64 {
    CALLS[cmd as usize].load(Ordering::Relaxed)
}
pub fn errors(cmd: Cmd) -> u64 {
    ERRORS[cmd as usize].load(Ordering::Relaxed)
}

pub fn kv_keys_added(delta: i64) {
    KV_KEYS.fetch_add(delta, Ordering::Relaxed);
}
pub fn chunks_added(count: i64, bytes: i64) {
    CHUNKS.fetch_add(count, Ordering::Relaxed);
    CHUNK_BYTES.fetch_add(bytes, Ordering::Relaxed);
}
pub fn checksum_failure() {
    CHECKSUM_FAILURES.fetch_add(1, Ordering::Relaxed);
}
pub fn panic_caught() {
    PANICS.fetch_add(1, Ordering::Relaxed);
}

/// Held counts as (registers, chunks, chunk bytes).
pub fn held() -> (i64, i64, i64) {
    (
        KV_KEYS.load(Ordering::Relaxed),
        CHUNKS.load(Ordering::Relaxed),
        CHUNK_BYTES.load(Ordering::Relaxed),
    )
}
pub fn checksum_failures() -> u64 {
    CHECKSUM_FAILURES.load(Ordering::Relaxed)
}
pub fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

pub fn request_recount() {
    NEEDS_RECOUNT.store(true, Ordering::Relaxed);
}
/// True once per request: the caller then recounts and calls [`set_held`].
pub fn take_recount_request() -> bool {
    NEEDS_RECOUNT.swap(false, Ordering::Relaxed)
}
pub fn set_held(kv_keys: i64, chunks: i64, chunk_bytes: i64) {
    KV_KEYS.store(kv_keys, Ordering::Relaxed);
    CHUNKS.store(chunks, Ordering::Relaxed);
    CHUNK_BYTES.store(chunk_bytes, Ordering::Relaxed);
}
