//! Counters behind the `INFO rcluster` section: calls and errors per command, and how many
//! registers and chunks this Redis holds (kept incrementally, recounted after every load by
//! `crate::recount`).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

pub use rcluster_domain::rc::Command as Cmd;

/// One counter per command of the contract's table, indexed by the command's position there.
const N: usize = rcluster_domain::rc::COUNT;
static CALLS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static ERRORS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static KV_KEYS: AtomicI64 = AtomicI64::new(0);
static CHUNKS: AtomicI64 = AtomicI64::new(0);
static CHUNK_BYTES: AtomicI64 = AtomicI64::new(0);
static CHECKSUM_FAILURES: AtomicU64 = AtomicU64::new(0);
static PANICS: AtomicU64 = AtomicU64::new(0);
/// Set when the keyspace was replaced (load from disk): the held counts are recounted.
static NEEDS_RECOUNT: AtomicBool = AtomicBool::new(true);
/// Set from a recount's request until it published (`crate::recount`): the held counts shown
/// meanwhile are the previous ones.
static RECOUNT_IN_PROGRESS: AtomicBool = AtomicBool::new(true);
/// Steps the recounts took (each at most `recount::STEP_BUDGET` of the main thread).
static RECOUNT_STEPS: AtomicU64 = AtomicU64::new(0);

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

/// A quorum operation kind, for the per-operation counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Set = 0,
    Get = 1,
    Del = 2,
    ChunkSet = 3,
    ChunkGet = 4,
}

impl Op {
    pub const ALL: [(Op, &'static str); 5] = [
        (Op::Set, "set"),
        (Op::Get, "get"),
        (Op::Del, "del"),
        (Op::ChunkSet, "chunk_set"),
        (Op::ChunkGet, "chunk_get"),
    ];
}

/// How a quorum operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Ok = 0,
    NoQuorum = 1,
}

/// Why one replica did not answer usefully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaFailure {
    Timeout = 0,
    Unreachable = 1,
    ErrorReply = 2,
}

/// Upper bounds (ms) of the latency histogram buckets; the last bucket is everything above.
pub const LATENCY_BOUNDS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];

static QUORUM_OPS: [[AtomicU64; 2]; 5] = [const { [const { AtomicU64::new(0) }; 2] }; 5];
static REPLICA_FAILURES: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static LATENCY: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1] =
    [const { AtomicU64::new(0) }; LATENCY_BOUNDS_MS.len() + 1];
static READ_REPAIRS: AtomicU64 = AtomicU64::new(0);
static HINTS_STORED: AtomicU64 = AtomicU64::new(0);
static HINTS_REPLAYED: AtomicU64 = AtomicU64::new(0);
static HINTS_REFUSED: AtomicU64 = AtomicU64::new(0);
static HINTS_DROPPED: AtomicU64 = AtomicU64::new(0);
static TOMBSTONES_PURGED: AtomicU64 = AtomicU64::new(0);
static CHUNK_REPAIRS: AtomicU64 = AtomicU64::new(0);
static WRITES_REISSUED: AtomicU64 = AtomicU64::new(0);

/// A client's write re-issued with a newer version (a replica held a newer one).
pub fn write_reissued() {
    WRITES_REISSUED.fetch_add(1, Ordering::Relaxed);
}
pub fn writes_reissued() -> u64 {
    WRITES_REISSUED.load(Ordering::Relaxed)
}

pub fn chunk_repaired() {
    CHUNK_REPAIRS.fetch_add(1, Ordering::Relaxed);
}
pub fn chunk_repairs() -> u64 {
    CHUNK_REPAIRS.load(Ordering::Relaxed)
}

pub fn quorum_op(op: Op, end: End, elapsed: std::time::Duration) {
    QUORUM_OPS[op as usize][end as usize].fetch_add(1, Ordering::Relaxed);
    let ms = u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .div_ceil(1000);
    let bucket = LATENCY_BOUNDS_MS
        .iter()
        .position(|b| ms <= *b)
        .unwrap_or(LATENCY_BOUNDS_MS.len());
    LATENCY[bucket].fetch_add(1, Ordering::Relaxed);
}
pub fn quorum_ops(op: Op, end: End) -> u64 {
    QUORUM_OPS[op as usize][end as usize].load(Ordering::Relaxed)
}
pub fn replica_failure(kind: ReplicaFailure) {
    REPLICA_FAILURES[kind as usize].fetch_add(1, Ordering::Relaxed);
}
pub fn replica_failures(kind: ReplicaFailure) -> u64 {
    REPLICA_FAILURES[kind as usize].load(Ordering::Relaxed)
}
/// Cumulative latency histogram: count of operations at or below each bound, then the total.
pub fn latency_cumulative() -> Vec<u64> {
    let mut sum = 0;
    LATENCY
        .iter()
        .map(|c| {
            sum += c.load(Ordering::Relaxed);
            sum
        })
        .collect()
}
pub fn read_repaired() {
    READ_REPAIRS.fetch_add(1, Ordering::Relaxed);
}
pub fn read_repairs() -> u64 {
    READ_REPAIRS.load(Ordering::Relaxed)
}
pub fn hint_stored() {
    HINTS_STORED.fetch_add(1, Ordering::Relaxed);
}
pub fn hints_stored() -> u64 {
    HINTS_STORED.load(Ordering::Relaxed)
}
pub fn hint_replayed() {
    HINTS_REPLAYED.fetch_add(1, Ordering::Relaxed);
}
pub fn hints_replayed() -> u64 {
    HINTS_REPLAYED.load(Ordering::Relaxed)
}
/// A hint refused: its node's backlog would have passed `max_hint_bytes_per_node`.
pub fn hint_refused() {
    HINTS_REFUSED.fetch_add(1, Ordering::Relaxed);
}
pub fn hints_refused() -> u64 {
    HINTS_REFUSED.load(Ordering::Relaxed)
}
/// Hints dropped because their node is no longer a member.
pub fn hints_dropped(count: u64) {
    HINTS_DROPPED.fetch_add(count, Ordering::Relaxed);
}
pub fn hints_dropped_total() -> u64 {
    HINTS_DROPPED.load(Ordering::Relaxed)
}
pub fn tombstone_purged() {
    TOMBSTONES_PURGED.fetch_add(1, Ordering::Relaxed);
}
pub fn tombstones_purged() -> u64 {
    TOMBSTONES_PURGED.load(Ordering::Relaxed)
}

pub fn request_recount() {
    RECOUNT_IN_PROGRESS.store(true, Ordering::Relaxed);
    NEEDS_RECOUNT.store(true, Ordering::Relaxed);
}
pub fn recount_step() {
    RECOUNT_STEPS.fetch_add(1, Ordering::Relaxed);
}
pub fn recount_steps() -> u64 {
    RECOUNT_STEPS.load(Ordering::Relaxed)
}
pub fn set_recount_in_progress(running: bool) {
    RECOUNT_IN_PROGRESS.store(running, Ordering::Relaxed);
}
pub fn recount_in_progress() -> bool {
    RECOUNT_IN_PROGRESS.load(Ordering::Relaxed)
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
