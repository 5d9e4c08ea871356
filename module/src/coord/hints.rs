//! Hint replay: every `hint_replay_ms`, for each node this Redis holds hints for, read them (over
//! this node's own connection), deliver each to its node as a replica write, and drop the ones
//! delivered. A node still unreachable is left for the next round.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use rcluster_domain::hint::{self, hint_key};
use rcluster_domain::rc::hint::HintDone;
use rcluster_domain::rc::replica::{is_ack, ReplicaWrite};
use rcluster_domain::rc::reply::flag_of;
use redis::Value;

use crate::cluster;
use crate::coord::peers::{self, Failure, Peer};
use crate::coord::wire::{self, V};
use crate::coord::{deadline_in, me, reply_bytes as bytes};
use crate::stats;

/// Nodes with hints held here (rebuilt from the keyspace after every load).
static HINTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

pub fn note(node: &str) {
    HINTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(node.to_string());
}

pub fn forget(node: &str) {
    HINTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(node);
}

fn hinted() -> Vec<String> {
    HINTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
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
    for node in hinted() {
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
