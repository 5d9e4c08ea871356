//! Counters behind the `INFO rcluster` section: calls and errors per command, the duration of
//! every command by outcome and the round trip to each peer (histograms laid out as
//! `rcluster_domain::histogram` says), NOQUORUM answers by reason, repairs and hints, and how
//! many registers and chunks this Redis holds (kept incrementally, recounted after every load by
//! `crate::recount`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcluster_domain::codes::CodedError;
use rcluster_domain::histogram::{self, Snapshot, BUCKETS};
pub use rcluster_domain::quorum::NoQuorumReason;

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

    /// True for the commands whose duration [`quorum_op`] records when they answer.
    pub fn is_quorum_command(cmd: Cmd) -> bool {
        Op::ALL.iter().any(|(op, _)| op.command() == cmd)
    }

    /// The command that runs this operation.
    pub fn command(self) -> Cmd {
        match self {
            Op::Set => Cmd::Set,
            Op::Get => Cmd::Get,
            Op::Del => Cmd::Del,
            Op::ChunkSet => Cmd::ChunkSet,
            Op::ChunkGet => Cmd::ChunkFetch,
        }
    }
}

/// How a quorum operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Ok,
    NoQuorum(NoQuorumReason),
}

impl End {
    /// A round out of reach: NOQUORUM, for the reason its message names.
    pub fn out_of_reach(e: &CodedError) -> End {
        End::NoQuorum(NoQuorumReason::of_shortfall(&e.message))
    }
}

/// Why one replica did not answer usefully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaFailure {
    Timeout = 0,
    Unreachable = 1,
    ErrorReply = 2,
}

/// A duration histogram, lock-free: counts per bucket of `histogram::BOUNDS_US` and the sum.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.buckets[histogram::bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

/// How a command ended, for its duration histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok = 0,
    Error = 1,
    NoQuorum = 2,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Error, Outcome::NoQuorum];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::NoQuorum => "noquorum",
        }
    }
}

static DURATIONS: [[Histogram; 3]; N] = [const { [const { Histogram::new() }; 3] }; N];
/// Round trips of calls to each member's Redis, by member id (bounded by the members).
static RTT: Mutex<BTreeMap<String, Arc<Histogram>>> = Mutex::new(BTreeMap::new());
static NOQUORUM: [AtomicU64; NoQuorumReason::ALL.len()] =
    [const { AtomicU64::new(0) }; NoQuorumReason::ALL.len()];

static QUORUM_OPS: [[AtomicU64; 2]; 5] = [const { [const { AtomicU64::new(0) }; 2] }; 5];
static REPLICA_FAILURES: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static READ_REPAIRS: AtomicU64 = AtomicU64::new(0);
static STALE_FOUND: AtomicU64 = AtomicU64::new(0);
static HINTS_STORED: AtomicU64 = AtomicU64::new(0);
static HINTS_REPLAYED: AtomicU64 = AtomicU64::new(0);
static HINTS_REFUSED: AtomicU64 = AtomicU64::new(0);
static HINTS_DROPPED: AtomicU64 = AtomicU64::new(0);
static TOMBSTONES_PURGED: AtomicU64 = AtomicU64::new(0);
static CHUNK_REPAIRS: AtomicU64 = AtomicU64::new(0);
static WRITES_REISSUED: AtomicU64 = AtomicU64::new(0);

/// A command answered after `elapsed`, as `outcome`.
pub fn command_done(cmd: Cmd, outcome: Outcome, elapsed: Duration) {
    DURATIONS[cmd as usize][outcome as usize].observe(elapsed);
}
pub fn durations(cmd: Cmd, outcome: Outcome) -> Snapshot {
    DURATIONS[cmd as usize][outcome as usize].snapshot()
}

/// One call to member `peer`'s Redis answered (or failed) after `elapsed`.
pub fn replica_rtt(peer: &str, elapsed: Duration) {
    let h = {
        let mut map = RTT.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(peer) {
            Some(h) => h.clone(),
            None => map.entry(peer.to_string()).or_default().clone(),
        }
    };
    h.observe(elapsed);
}
/// Every peer's round-trip histogram, by member id.
pub fn replica_rtts() -> Vec<(String, Snapshot)> {
    let map = RTT.lock().unwrap_or_else(|p| p.into_inner());
    map.iter()
        .map(|(id, h)| (id.clone(), h.snapshot()))
        .collect()
}

/// A NOQUORUM answered, by reason.
pub fn noquorum(reason: NoQuorumReason) {
    NOQUORUM[reason as usize].fetch_add(1, Ordering::Relaxed);
}
pub fn noquorums(reason: NoQuorumReason) -> u64 {
    NOQUORUM[reason as usize].load(Ordering::Relaxed)
}

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

/// A quorum operation answered: counted by how it ended, and its command's duration recorded.
pub fn quorum_op(op: Op, end: End, elapsed: Duration) {
    let (index, outcome) = match end {
        End::Ok => (0, Outcome::Ok),
        End::NoQuorum(reason) => {
            noquorum(reason);
            (1, Outcome::NoQuorum)
        }
    };
    QUORUM_OPS[op as usize][index].fetch_add(1, Ordering::Relaxed);
    command_done(op.command(), outcome, elapsed);
}
/// Quorum operations of kind `op` that ended well (`ok`) or in NOQUORUM.
pub fn quorum_ops(op: Op, ok: bool) -> u64 {
    QUORUM_OPS[op as usize][usize::from(!ok)].load(Ordering::Relaxed)
}
pub fn replica_failure(kind: ReplicaFailure) {
    REPLICA_FAILURES[kind as usize].fetch_add(1, Ordering::Relaxed);
}
pub fn replica_failures(kind: ReplicaFailure) -> u64 {
    REPLICA_FAILURES[kind as usize].load(Ordering::Relaxed)
}
/// A read found a replica with an older version or none: a repair is sent to it.
pub fn stale_replica_found() {
    STALE_FOUND.fetch_add(1, Ordering::Relaxed);
}
pub fn stale_replicas_found() -> u64 {
    STALE_FOUND.load(Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_operation_lands_in_its_commands_histogram_and_its_reason() {
        let before = durations(Cmd::Del, Outcome::NoQuorum).count();
        let reasons = noquorums(NoQuorumReason::Timeout);
        quorum_op(
            Op::Del,
            End::NoQuorum(NoQuorumReason::Timeout),
            Duration::from_millis(3),
        );
        let after = durations(Cmd::Del, Outcome::NoQuorum);
        assert_eq!(after.count(), before + 1);
        assert!(after.buckets[histogram::bucket_of(3_000)] >= 1);
        assert_eq!(noquorums(NoQuorumReason::Timeout), reasons + 1);
        assert!(quorum_ops(Op::Del, false) >= 1);
    }

    #[test]
    fn round_trips_are_kept_per_peer() {
        replica_rtt("t-peer", Duration::from_micros(50));
        replica_rtt("t-peer", Duration::from_micros(700));
        let (_, s) = replica_rtts()
            .into_iter()
            .find(|(id, _)| id == "t-peer")
            .unwrap();
        assert_eq!(s.count(), 2);
        assert_eq!(s.sum_us, 750);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[3], 1);
    }
}
