//! Hint replay: every `hint_replay_ms`, for each node this Redis holds hints for, read them (over
//! this node's own connection), deliver each to its node as a replica write, and drop the ones
//! delivered. A node still unreachable is left for the next round. Also the backlog of hints held
//! per node (count, bytes, oldest), which `RC.HINT.PUT` checks against the cap.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use rcluster_domain::hint::{self, hint_key, Backlog};
use rcluster_domain::rc::hint::HintDone;
use rcluster_domain::rc::replica::{is_ack, ReplicaWrite};
use rcluster_domain::rc::reply::flag_of;
use redis::Value;

use crate::cluster;
use crate::coord::peers::{self, Failure, Peer};
use crate::coord::wire::{self, V};
use crate::coord::{deadline_in, me, reply_bytes as bytes};
use crate::stats;

/// The backlog of hints held here, per node they are for (rebuilt from the keyspace after every
/// load; kept by `RC.HINT.PUT` and `RC.HINT.DONE` in between).
static BACKLOGS: Mutex<BTreeMap<String, Backlog>> = Mutex::new(BTreeMap::new());

fn backlogs() -> std::sync::MutexGuard<'static, BTreeMap<String, Backlog>> {
    BACKLOGS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A hint of version timestamp `ts` and `bytes` ([`hint::stored_bytes`]) is now held for `node`.
pub fn added(node: &str, ts: u64, bytes: u64) {
    backlogs()
        .entry(node.to_string())
        .or_default()
        .add(ts, bytes);
}

/// A hint added with these arguments is no longer held.
pub fn removed(node: &str, ts: u64, bytes: u64) {
    let mut all = backlogs();
    if let Some(b) = all.get_mut(node) {
        b.remove(ts, bytes);
        if b.is_empty() {
            all.remove(node);
        }
    }
}

/// Whether a hint of `new_bytes` replacing one of `replaced_bytes` (0: none) keeps `node`'s
/// backlog within `cap`; else the bytes held for it now.
pub fn admits(node: &str, new_bytes: u64, replaced_bytes: u64, cap: u64) -> Result<(), i64> {
    let all = backlogs();
    let empty = Backlog::default();
    let b = all.get(node).unwrap_or(&empty);
    if b.admits(new_bytes, replaced_bytes, cap) {
        Ok(())
    } else {
        Err(b.bytes)
    }
}

/// Every backlog, by node.
pub fn snapshot() -> BTreeMap<String, Backlog> {
    backlogs().clone()
}

/// Replaces every backlog (after a recount).
pub fn replace(all: BTreeMap<String, Backlog>) {
    *backlogs() = all;
}

/// Forgets `node`'s backlog (its hints were dropped); returns what it was.
pub fn forget(node: &str) -> Backlog {
    backlogs().remove(node).unwrap_or_default()
}

/// The nodes hints are held for here.
pub fn nodes() -> Vec<String> {
    backlogs().keys().cloned().collect()
}

/// `INFO rcluster` fields: `hints_for_<node>` = `count=..,bytes=..,oldest_ms=..` per node this
/// Redis holds hints for (`oldest_ms`: age of the oldest hint, to the second).
pub fn info_fields(now_ms: u64) -> Vec<(String, String)> {
    backlogs()
        .iter()
        .map(|(node, b)| {
            (
                format!("hints_for_{node}"),
                format!(
                    "count={},bytes={},oldest_ms={}",
                    b.count,
                    b.bytes,
                    b.oldest_age_ms(now_ms)
                ),
            )
        })
        .collect()
}

/// One replay round; returns the pause before the next.
pub async fn replay_round() -> Duration {
    let Some(view) = cluster::current() else {
        return Duration::from_secs(1);
    };
    let pause = Duration::from_millis(view.topology.hint_replay_ms);
    let Some((_, member)) = me(&view) else {
        return pause;
    };
    let local = peers::peer(member);
    for node in nodes() {
        let Some(target) = view.topology.member(&node) else {
            continue;
        };
        let target = peers::peer(target);
        replay(&local, &target, &node, view.topology.request_timeout_ms).await;
    }
    pause
}

async fn replay(local: &Peer, target: &Peer, node: &str, timeout_ms: u64) {
    let mut cursor = b"0".to_vec();
    loop {
        let mut scan = redis::cmd("HSCAN");
        scan.arg(hint_key(node)).arg(&cursor).arg("COUNT").arg(100);
        let Ok(Value::Array(reply)) = local.call(&scan, deadline_in(timeout_ms)).await else {
            return;
        };
        let (Some(next), Some(Value::Array(fields))) =
            (reply.first().and_then(bytes), reply.get(1))
        else {
            return;
        };
        for pair in fields.chunks(2) {
            let (Some(key), Some(encoded)) =
                (pair.first().and_then(bytes), pair.get(1).and_then(bytes))
            else {
                continue;
            };
            let Some(h) = hint::decode(encoded) else {
                continue;
            };
            let write = wire::cmd(&ReplicaWrite {
                key,
                value: (!h.tombstone).then_some(h.value.as_slice()),
                version: Cow::Borrowed(&h.version),
            });
            match target.call(&write, deadline_in(timeout_ms)).await {
                Ok(reply) if is_ack(V(&reply)) => {
                    let done = wire::cmd(&HintDone {
                        node,
                        key,
                        version: Cow::Borrowed(&h.version),
                    });
                    let removed = local.call(&done, deadline_in(timeout_ms)).await;
                    if removed.is_ok_and(|r| flag_of(V(&r)) == Some(true)) {
                        stats::hint_replayed();
                    }
                }
                // Still down: try again next round.
                Err(Failure::Timeout | Failure::Unreachable(_)) => return,
                // It answered but refused (e.g. the key is of another type there): keep the
                // hint, counted, and go on with the others.
                _ => stats::replica_failure(stats::ReplicaFailure::ErrorReply),
            }
        }
        if next == b"0" {
            return;
        }
        cursor = next.to_vec();
    }
}
