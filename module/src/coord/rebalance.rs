//! Data redistribution after the member list changed: this node walks the registers and chunks it
//! holds (over its own connection), writes each one to the nodes that own it under the new ring
//! but may lack it, and drops its own copy only once every such owner has acknowledged and this
//! node is no longer an owner itself. Up to 32 registers (4 chunks) are in flight at once. A pass
//! that changed anything is followed ~1 s later by another against the same old views (a write
//! coordinated under a stale topology can land after a pass), until one finds nothing to do.
//! After a restart (the topology restored from Redis's own data), once the node process has
//! pushed the current topology (the restored one may be stale), a sweep looks at every copy this
//! node holds but does not own, whatever views it remembers: a pass cut short by the restart
//! leaves such copies behind, and the old views it had are gone once the AOF was rewritten. Each
//! goes to every owner (which applies it only if newer, or lacks the chunk) and is dropped here.
//! Anti-entropy: every `rcluster.anti-entropy-interval-ms` (10 min by default, 0 = never) an audit
//! pass sends each register this node owns to the next owner in the key's preference list
//! (put-if-newer, so only a missing or older copy changes) and checks each chunk's digest there,
//! copying it when missing. Every owner does the same for its successor, so a replica that lost
//! its data (a wiped disk, a hint lost with its holder) is refilled without any read touching
//! it. An audit that cannot reach a node waits for the next interval instead of repeating.
//! Progress and totals are in `INFO rcluster` (`rebalance_*`).

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use rcluster_domain::keys::{chunk_field, kv_field, CHUNK_PREFIX, KV_PREFIX};
use rcluster_domain::rc::chunk::{chunk_data, ChunkDel, ChunkGet, ChunkPut};
use rcluster_domain::rc::replica::{applied, is_ack, ReplicaRemove, ReplicaWrite};
use rcluster_domain::rc::reply::{flag_of, version_of};
use rcluster_domain::validate;
use rcluster_domain::version::Version;
use redis::Value;

use crate::cluster::{self, View};
use crate::coord::peers::{self, Failure, Peer};
use crate::coord::wire::{self, V};
use crate::coord::{deadline_in, me};

/// Registers handled at once by a pass.
const KV_IN_FLIGHT: usize = 32;
/// Chunks handled at once (each is held in memory while it is copied: up to a few MiB).
const CHUNK_IN_FLIGHT: usize = 4;
/// Old views remembered; past this a pass sends every key to all its owners.
const MAX_OLD_VIEWS: usize = 16;
/// Pause before the next pass after one that changed something or could not finish.
const AGAIN: Duration = Duration::from_secs(1);
/// Pause between checks for a pending pass.
const IDLE: Duration = Duration::from_millis(200);
/// Registers and chunks an audit alone examines per second at most: a maintenance pass spreads
/// its load (100,000 keys take 50 s) instead of competing with clients in a burst.
const AUDIT_ITEMS_PER_SEC: u32 = 2_000;
/// In an audit, a register value from this size on is sent only to an owner that lacks its
/// version (asked first); smaller ones are sent at once, which costs about as much as asking.
const AUDIT_ASK_FIRST_BYTES: usize = 4096;

/// The views data may still be placed under, oldest first, since the last pass that found
/// nothing to do. `overflowed`: older views were forgotten, so no owner is assumed to hold a key.
/// `sweep`: the copies held here but not owned are handed to every owner (see the module doc).
/// `audit`: an anti-entropy pass is due.
struct Pending {
    olds: Vec<Arc<View>>,
    overflowed: bool,
    sweep: bool,
    audit: bool,
}

static PENDING: Mutex<Pending> = Mutex::new(Pending {
    olds: Vec::new(),
    overflowed: false,
    sweep: false,
    audit: false,
});

/// Anti-entropy passes run, and the copies they changed (a missing or older replica refilled).
static AUDITS: AtomicU64 = AtomicU64::new(0);
static AUDIT_REPAIRS: AtomicU64 = AtomicU64::new(0);
/// When the last audit began (at first: when the module started).
static LAST_AUDIT: Mutex<Option<std::time::Instant>> = Mutex::new(None);

/// Marks an audit due when the interval has passed since the last one.
fn audit_due(p: &mut Pending) {
    let interval = crate::settings::anti_entropy_interval_ms();
    let mut last = LAST_AUDIT.lock().unwrap_or_else(|e| e.into_inner());
    let since = *last.get_or_insert_with(std::time::Instant::now);
    if interval > 0 && since.elapsed() >= Duration::from_millis(interval) {
        p.audit = true;
        *last = Some(std::time::Instant::now());
    }
}

static PASSES: AtomicU64 = AtomicU64::new(0);
/// Copies that changed a new owner (a register applied, a chunk it did not hold).
static KEYS_MOVED: AtomicU64 = AtomicU64::new(0);
static BYTES_MOVED: AtomicU64 = AtomicU64::new(0);
static KEYS_DROPPED: AtomicU64 = AtomicU64::new(0);
static IN_PROGRESS: AtomicU64 = AtomicU64::new(0);
/// Registers and chunks the running (or last) pass examines, and how many it has examined.
static PASS_ITEMS: AtomicU64 = AtomicU64::new(0);
static PASS_DONE: AtomicU64 = AtomicU64::new(0);
/// How long the last finished pass took, in ms.
static LAST_PASS_MS: AtomicU64 = AtomicU64::new(0);
/// What the running (or last) pass is for: 0 redistribution, 1 sweep, 2 anti-entropy.
static PASS_KIND: AtomicU8 = AtomicU8::new(0);

/// `rebalance_pass_kind`: what the running (or last) pass is for.
pub fn pass_kind() -> &'static str {
    match PASS_KIND.load(Ordering::Relaxed) {
        1 => "sweep",
        2 => "anti-entropy",
        _ => "redistribution",
    }
}

fn pending() -> std::sync::MutexGuard<'static, Pending> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds `views` (oldest first) to the pending ones, skipping those already there.
fn remember(p: &mut Pending, views: Vec<Arc<View>>, overflowed: bool) {
    p.overflowed |= overflowed;
    for v in views {
        if !p.olds.iter().any(|o| Arc::ptr_eq(o, &v)) {
            p.olds.push(v);
        }
    }
    if p.olds.len() > MAX_OLD_VIEWS {
        let extra = p.olds.len() - MAX_OLD_VIEWS;
        p.olds.drain(..extra);
        p.overflowed = true;
    }
}

/// Called when a topology replaces `old`: if the members (or N) differ, a pass is scheduled.
pub fn topology_changed(old: Option<Arc<View>>, new: &View) {
    let Some(old) = old else { return };
    if crate::cluster::placement_changed(&old, &new.topology, &new.ring) {
        remember(&mut pending(), vec![old], false);
    }
}

/// Set after a restart: the next pushed topology schedules a sweep.
static SWEEP_ARMED: AtomicBool = AtomicBool::new(false);

/// After a restart: the next topology pushed (`RC.CLUSTER.SET`) schedules a sweep of the copies
/// held here but not owned.
pub fn arm_sweep() {
    SWEEP_ARMED.store(true, Ordering::Relaxed);
}

/// A topology was pushed: schedules the sweep a restart armed.
pub fn topology_pushed() {
    if SWEEP_ARMED.swap(false, Ordering::Relaxed) {
        pending().sweep = true;
    }
}

/// `rebalance_percent`: 100 when no pass runs, else the share of the pass's items examined.
fn percent(in_progress: bool, items: u64, done: u64) -> u64 {
    match (in_progress, items) {
        (false, _) => 100,
        (true, 0) => 0,
        (true, _) => {
            let share = u128::from(done.min(items)) * 100 / u128::from(items);
            u64::try_from(share).unwrap_or(100)
        }
    }
}

/// The `rebalance_*` and `anti_entropy_*` fields of `INFO rcluster`, in order.
pub fn info_fields() -> [(&'static str, u64); 11] {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (running, items, done) = (load(&IN_PROGRESS), load(&PASS_ITEMS), load(&PASS_DONE));
    [
        ("rebalance_in_progress", running),
        ("rebalance_passes", load(&PASSES)),
        ("rebalance_keys_moved", load(&KEYS_MOVED)),
        ("rebalance_bytes_moved", load(&BYTES_MOVED)),
        ("rebalance_keys_dropped", load(&KEYS_DROPPED)),
        ("rebalance_pass_items", items),
        ("rebalance_pass_done", done),
        ("rebalance_percent", percent(running == 1, items, done)),
        ("rebalance_last_pass_ms", load(&LAST_PASS_MS)),
        ("anti_entropy_passes", load(&AUDITS)),
        ("anti_entropy_repairs", load(&AUDIT_REPAIRS)),
    ]
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    crate::coord::reply_bytes(v).map(<[u8]>::to_vec)
}

/// What handling one register or chunk did.
#[derive(Clone, Copy, Default)]
struct Done {
    /// Something could not be read, copied, acknowledged or dropped (a newer write arrived):
    /// the pass must run again.
    again: bool,
    copies: u64,
    dropped: u64,
}

impl Done {
    const AGAIN: Done = Done {
        again: true,
        copies: 0,
        dropped: 0,
    };

    /// `copies` were made but the item must be looked at again.
    fn retry(copies: u64) -> Done {
        Done {
            again: true,
            copies,
            dropped: 0,
        }
    }

    /// Handled: `copies` made and `dropped` own copies removed (counted here).
    fn finished(copies: u64, dropped: u64) -> Done {
        KEYS_DROPPED.fetch_add(dropped, Ordering::Relaxed);
        Done {
            again: false,
            copies,
            dropped,
        }
    }

    fn merge(self, other: Done) -> Done {
        Done {
            again: self.again || other.again,
            copies: self.copies.saturating_add(other.copies),
            dropped: self.dropped.saturating_add(other.dropped),
        }
    }
}

/// One pass: the old views, the new one, and this node's connection to its own Redis.
struct Pass {
    olds: Vec<Arc<View>>,
    overflowed: bool,
    sweep: bool,
    audit: bool,
    new: Arc<View>,
    me: String,
    local: Arc<Peer>,
    timeout_ms: u64,
}

impl Pass {
    /// The owners of `ring_key` under the new ring that may lack it (not owners under every old
    /// view; never this node), and whether this node stays an owner. In a sweep, a copy this node
    /// does not own may be missing on any owner; a copy it owns is left to the views (none, in a
    /// sweep alone: nothing to do).
    fn targets(&self, ring_key: &[u8]) -> (Vec<String>, bool) {
        let after = self
            .new
            .ring
            .preference_list(ring_key, usize::from(self.new.topology.quorum.n));
        let still_owner = after.contains(&self.me.as_str());
        let assume_missing = self.overflowed || ((self.sweep || self.audit) && !still_owner);
        if self.olds.is_empty() && !assume_missing {
            if self.audit && still_owner {
                // The next owner after this node (the first after the last), if another.
                let at = after.iter().position(|id| *id == self.me).unwrap_or(0);
                let next = after[(at + 1) % after.len()];
                let targets = (next != self.me).then(|| next.to_string());
                return (targets.into_iter().collect(), true);
            }
            return (Vec::new(), still_owner);
        }
        let held_throughout = |id: &str| {
            !assume_missing
                && self.olds.iter().all(|v| {
                    v.ring
                        .preference_list(ring_key, usize::from(v.topology.quorum.n))
                        .contains(&id)
                })
        };
        let targets = after
            .iter()
            .filter(|id| **id != self.me && !held_throughout(id))
            .map(|id| id.to_string())
            .collect();
        (targets, still_owner)
    }

    /// Whether data may have to move after a member change (old views, or forgotten ones).
    fn moves_data(&self) -> bool {
        !self.olds.is_empty() || self.overflowed
    }

    /// An anti-entropy pass and nothing else.
    fn audit_only(&self) -> bool {
        self.audit && !self.moves_data() && !self.sweep
    }

    fn count_copies(&self, copies: u64) {
        KEYS_MOVED.fetch_add(copies, Ordering::Relaxed);
        if self.audit {
            AUDIT_REPAIRS.fetch_add(copies, Ordering::Relaxed);
        }
    }

    async fn local(&self, cmd: &redis::Cmd) -> Result<Value, Failure> {
        self.local.call(cmd, deadline_in(self.timeout_ms)).await
    }

    /// Sends `cmd` to every target at once; one reply per target (`None`: no reply).
    async fn send_all(&self, targets: &[String], cmd: &redis::Cmd) -> Vec<Option<Value>> {
        join_all(targets.iter().map(|id| async move {
            let m = self.new.topology.member(id)?;
            peers::peer(m)
                .try_call(cmd, deadline_in(self.timeout_ms))
                .await
                .ok()
        }))
        .await
    }

    /// The `targets` that do not hold register `key` at `version` or newer (or could not say).
    async fn lacking(&self, key: &[u8], targets: &[String], version: &Version) -> Vec<String> {
        let mut ask = redis::cmd("HMGET");
        ask.arg(key).arg(kv_field::VERSION).arg(kv_field::ORIGIN);
        let theirs = self.send_all(targets, &ask).await;
        let held = |v: &Option<Value>| match v {
            Some(Value::Array(f)) => f
                .first()
                .zip(f.get(1))
                .and_then(|(ts, origin)| version_of(V(ts), V(origin))),
            _ => None,
        };
        targets
            .iter()
            .zip(&theirs)
            .filter(|(_, v)| held(v).is_none_or(|h| h < *version))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every key of this Redis matching `pattern`, each once; `None` when the scan failed.
    async fn scan(&self, pattern: &str) -> Option<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        let mut cursor = b"0".to_vec();
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(&cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(500);
            let Ok(Value::Array(reply)) = self.local(&cmd).await else {
                return None;
            };
            let (Some(next), Some(Value::Array(found))) =
                (reply.first().and_then(bytes), reply.get(1))
            else {
                return None;
            };
            keys.extend(found.iter().filter_map(bytes));
            if next == b"0" {
                // SCAN may return a key twice.
                keys.sort_unstable();
                keys.dedup();
                return Some(keys);
            }
            cursor = next;
        }
    }

    /// Copies register `kv:<key>` to the owners that may lack it; drops it here once they all
    /// acknowledged and this node no longer owns it.
    async fn register(&self, key: Vec<u8>) -> Done {
        let Some(user_key) = key.strip_prefix(KV_PREFIX) else {
            return Done::default();
        };
        let (targets, still_owner) = self.targets(user_key);
        if targets.is_empty() && still_owner {
            return Done::default();
        }
        let mut get = redis::cmd("HMGET");
        get.arg(&key)
            .arg(kv_field::VALUE)
            .arg(kv_field::VERSION)
            .arg(kv_field::ORIGIN)
            .arg(kv_field::TOMBSTONE);
        let Ok(Value::Array(f)) = self.local(&get).await else {
            return Done::AGAIN;
        };
        let f: Vec<Option<Vec<u8>>> = f.iter().map(bytes).collect();
        // Gone since the scan, or not a register this module wrote: nothing to move.
        let [value, Some(ts), Some(origin), tomb] = f.as_slice() else {
            return Done::default();
        };
        let Some(ts) = std::str::from_utf8(ts)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            return Done::default();
        };
        let version = Version::new(ts, String::from_utf8_lossy(origin).into_owned());
        let value = if tomb.as_deref() == Some(b"1") {
            None
        } else {
            value.clone()
        };
        let targets = if self.audit
            && value
                .as_ref()
                .is_some_and(|v| v.len() >= AUDIT_ASK_FIRST_BYTES)
        {
            self.lacking(&key, &targets, &version).await
        } else {
            targets
        };
        let cmd = wire::cmd(&ReplicaWrite {
            key: user_key,
            value: value.as_deref(),
            version: Cow::Borrowed(&version),
        });
        let replies = self.send_all(&targets, &cmd).await;
        let copies = replies.iter().flatten().filter(|v| applied(V(v))).count() as u64;
        self.count_copies(copies);
        BYTES_MOVED.fetch_add(
            copies * value.as_ref().map_or(0, |v| v.len() as u64),
            Ordering::Relaxed,
        );
        if !replies
            .iter()
            .all(|r| r.as_ref().is_some_and(|r| is_ack(V(r))))
        {
            return Done::retry(copies);
        }
        let mut dropped = 0;
        if !still_owner {
            // Only the exact version copied: a newer write that arrived meanwhile stays.
            let drop = wire::cmd(&ReplicaRemove {
                tombstone_only: false,
                key: user_key,
                version: Cow::Borrowed(&version),
            });
            match self.local(&drop).await {
                Ok(r) if flag_of(V(&r)) == Some(true) => dropped = 1,
                // A corrupt record: never dropped, nothing a new pass could change.
                Err(Failure::Replied(_)) => {}
                // A newer version arrived (or it went away): the next pass looks again.
                Ok(_) | Err(_) => return Done::retry(copies),
            }
        }
        Done::finished(copies, dropped)
    }

    /// Copies chunk `chunk:<file>:<index>` (placed by `<file>:<index>`) to the owners that do not
    /// hold the same digest; drops it here once they all hold it and this node no longer owns it.
    async fn chunk(&self, key: Vec<u8>) -> Done {
        let Some(rest) = key.strip_prefix(CHUNK_PREFIX) else {
            return Done::default();
        };
        let rest = String::from_utf8_lossy(rest);
        let Some((file, index)) = rest.rsplit_once(':') else {
            return Done::default();
        };
        // Not a chunk this module wrote: nothing to move.
        let Ok(index_number) = validate::chunk_index(index.as_bytes()) else {
            return Done::default();
        };
        let (targets, still_owner) = self.targets(format!("{file}:{index}").as_bytes());
        if targets.is_empty() && still_owner {
            return Done::default();
        }
        // The digest field of an HMGET reply, and the CRC-32C after it.
        let field_of = |v: &Value, at: usize| match v {
            Value::Array(items) => items.get(at).and_then(bytes),
            _ => None,
        };
        let sha_of = |v: &Value| field_of(v, 0);
        let mut digest = redis::cmd("HMGET");
        digest
            .arg(&key)
            .arg(chunk_field::SHA256)
            .arg(chunk_field::CRC32C);
        let (held, crc) = match self.local(&digest).await {
            Ok(v) => match sha_of(&v) {
                Some(sha) => (sha, field_of(&v, 1)),
                None => return Done::default(), // gone since the scan
            },
            Err(_) => return Done::AGAIN,
        };
        // Skip the owners that already hold these bytes (another old owner was faster, or an
        // earlier pass copied them): a chunk is never rewritten in place.
        let theirs = self.send_all(&targets, &digest).await;
        let missing: Vec<String> = targets
            .iter()
            .zip(&theirs)
            .filter(|(_, v)| v.as_ref().and_then(sha_of).as_deref() != Some(held.as_slice()))
            .map(|(id, _)| id.clone())
            .collect();
        let mut copies = 0;
        if !missing.is_empty() {
            let get = wire::cmd(&ChunkGet {
                file_id: file,
                index: index_number,
            });
            let data = match self.local(&get).await {
                Ok(reply) => match chunk_data(V(&reply)) {
                    Some(Some(data)) => data.to_vec(),
                    Some(None) => return Done::default(), // gone since the scan
                    // Not a chunk reply: never copied, never dropped.
                    None => return Done::default(),
                },
                // Corrupt here: never copied, never dropped; chunk repair deals with it.
                Err(Failure::Replied(_)) => return Done::default(),
                Err(_) => return Done::AGAIN,
            };
            // RC.CHUNK.GET checked the bytes against the stored CRC-32C read above (or the
            // digest, for older copies), and each target checks them again: no need to hash
            // them here too.
            let put = wire::cmd(&ChunkPut {
                file_id: file,
                index: index_number,
                sha256: String::from_utf8_lossy(&held),
                data: &data,
                crc32c: crc.as_deref().map(String::from_utf8_lossy),
            });
            let replies = self.send_all(&missing, &put).await;
            copies = replies
                .iter()
                .filter(|r| r.as_ref().is_some_and(|r| is_ack(V(r))))
                .count() as u64;
            self.count_copies(copies);
            BYTES_MOVED.fetch_add(copies * data.len() as u64, Ordering::Relaxed);
            if copies < missing.len() as u64 {
                return Done::retry(copies);
            }
        }
        let mut dropped = 0;
        if !still_owner {
            let del = wire::cmd(&ChunkDel {
                file_id: file,
                index: Some(index_number),
            });
            match self.local(&del).await {
                Ok(r) if flag_of(V(&r)) == Some(true) => dropped = 1,
                Ok(_) => {}
                Err(_) => return Done::retry(copies),
            }
        }
        Done::finished(copies, dropped)
    }

    /// Examines every register, then every chunk, several at once; counts progress as it goes.
    async fn run(&self) -> Done {
        let kv = self.scan("kv:*").await;
        let chunks = self.scan("chunk:*").await;
        let scanned = Done {
            again: kv.is_none() || chunks.is_none(),
            ..Done::default()
        };
        let (kv, chunks) = (kv.unwrap_or_default(), chunks.unwrap_or_default());
        PASS_ITEMS.store((kv.len() + chunks.len()) as u64, Ordering::Relaxed);
        // An audit alone goes at a steady pace: item i starts no earlier than i / rate.
        let paced = self.audit_only();
        let started = tokio::time::Instant::now();
        let pace = move |i: usize| async move {
            if paced {
                let step = Duration::from_secs(1) / AUDIT_ITEMS_PER_SEC;
                let at = step.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
                tokio::time::sleep_until(started + at).await;
            }
        };
        let registers_count = kv.len();
        let tally = |acc: Done, d: Done| async move {
            PASS_DONE.fetch_add(1, Ordering::Relaxed);
            acc.merge(d)
        };
        let registers = stream::iter(kv.into_iter().enumerate())
            .map(|(i, k)| async move {
                pace(i).await;
                self.register(k).await
            })
            .buffer_unordered(KV_IN_FLIGHT)
            .fold(scanned, tally)
            .await;
        stream::iter(chunks.into_iter().enumerate())
            .map(|(i, k)| async move {
                pace(registers_count + i).await;
                self.chunk(k).await
            })
            .buffer_unordered(CHUNK_IN_FLIGHT)
            .fold(registers, tally)
            .await
    }
}

/// One pass, if one is pending; returns the pause before the next check.
pub async fn round() -> Duration {
    let (olds, overflowed, sweep, audit) = {
        let mut p = pending();
        audit_due(&mut p);
        (
            std::mem::take(&mut p.olds),
            std::mem::take(&mut p.overflowed),
            std::mem::take(&mut p.sweep),
            std::mem::take(&mut p.audit),
        )
    };
    if olds.is_empty() && !overflowed && !sweep && !audit {
        return IDLE;
    }
    let requeue = |olds: Vec<Arc<View>>, overflowed: bool, sweep: bool| {
        let mut p = pending();
        // Views that were replaced during the pass are newer than these: keep the order.
        let newer = std::mem::take(&mut p.olds);
        remember(&mut p, olds, overflowed);
        remember(&mut p, newer, false);
        p.sweep |= sweep;
        AGAIN
    };
    let Some(new) = cluster::current() else {
        return requeue(olds, overflowed, sweep);
    };
    // A node leaving the cluster is not in the new topology but must still hand over its data.
    let Some((me_id, local)) = me(&new)
        .or_else(|| olds.iter().rev().find_map(|v| me(v)))
        .map(|(id, member)| (id, peers::peer(member)))
    else {
        // Never a member: nothing of ours to move.
        return IDLE;
    };
    let pass = Pass {
        local,
        olds,
        overflowed,
        sweep,
        audit,
        timeout_ms: new.topology.request_timeout_ms,
        new,
        me: me_id,
    };
    let kind = match (pass.moves_data(), pass.sweep) {
        (true, _) => 0,
        (false, true) => 1,
        (false, false) => 2,
    };
    PASS_KIND.store(kind, Ordering::Relaxed);
    PASS_ITEMS.store(0, Ordering::Relaxed);
    PASS_DONE.store(0, Ordering::Relaxed);
    IN_PROGRESS.store(1, Ordering::Relaxed);
    let began = std::time::Instant::now();
    let done = pass.run().await;
    let took = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
    LAST_PASS_MS.store(took, Ordering::Relaxed);
    PASSES.fetch_add(1, Ordering::Relaxed);
    IN_PROGRESS.store(0, Ordering::Relaxed);
    if pass.audit {
        AUDITS.fetch_add(1, Ordering::Relaxed);
    }
    if pass.audit_only() {
        // An audit alone: what it could not reach or change waits for the next interval.
        return IDLE;
    }
    if done.again || done.copies > 0 || done.dropped > 0 {
        // Something was unreachable (copies are idempotent, so the pass is simply repeated), or
        // something moved: a write coordinated under a stale topology may still land here.
        return requeue(pass.olds, pass.overflowed, pass.sweep);
    }
    IDLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_bounded() {
        assert_eq!(percent(false, 0, 0), 100);
        assert_eq!(percent(false, 10, 3), 100);
        assert_eq!(percent(true, 0, 0), 0);
        assert_eq!(percent(true, 10, 3), 30);
        assert_eq!(percent(true, 10, 10), 100);
        assert_eq!(percent(true, 10, 11), 100);
        assert_eq!(percent(true, u64::MAX, u64::MAX), 100);
    }
}
