//! The faults this node's process pushed into its module (`RC.FAULT SET`), each ending by itself
//! at its deadline on the module's own clock, and what they do to the module's traffic: every
//! call to another member (`coord::peers`) is lost or delayed as `domain::fault` decides, the
//! main-thread fast path steps aside while any link fault touches this node (its requests take
//! the runtime's path, where the delays are applied), and the hybrid clock's physical part is
//! shifted by the skew on this node.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use rcluster_domain::fault::{Held, Link, Table};

use crate::settings;

static TABLE: Mutex<Option<Table>> = Mutex::new(None);
/// Whether the table holds anything (read on every request without the lock).
static ANY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Milliseconds on the module's monotonic clock.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A fresh random u64 (loss draws and jitter need no reproducibility here).
fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn with_table<T>(f: impl FnOnce(&mut Table, u64) -> T) -> T {
    let mut guard = TABLE.lock().unwrap_or_else(|p| p.into_inner());
    let table = guard.get_or_insert_with(Table::default);
    let now = now_ms();
    table.expire(now);
    let out = f(table, now);
    ANY.store(table.next_deadline().is_some(), Ordering::Relaxed);
    out
}

/// Replaces the table (what `RC.FAULT SET` carries).
pub fn set(held: Vec<Held>) -> usize {
    with_table(|t, now| {
        t.replace(held, now);
        t.live(now).count()
    })
}

/// The faults held now, with the time each has left.
pub fn held() -> Vec<Held> {
    if !ANY.load(Ordering::Relaxed) {
        return Vec::new();
    }
    with_table(|t, now| t.held(now))
}

/// What happens to a call from this node to member `peer` and its answer.
pub fn call(peer: &str) -> Link {
    if !ANY.load(Ordering::Relaxed) {
        return Link::Pass { delay_ms: 0 };
    }
    let me = settings::node_id();
    with_table(|t, now| t.round_trip(&me, peer, now, &mut random))
}

/// Whether a link fault is held now (the node process pushes only those that touch this node):
/// requests then skip the fast path.
pub fn on_links() -> bool {
    ANY.load(Ordering::Relaxed) && with_table(|t, now| t.any_on_links(now))
}

/// The shift of this node's clock, in ms.
pub fn skew_ms() -> i64 {
    if !ANY.load(Ordering::Relaxed) {
        return 0;
    }
    let me = settings::node_id();
    with_table(|t, now| t.skew_ms(&me, now))
}
