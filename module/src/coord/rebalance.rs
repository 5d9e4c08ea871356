//! Data redistribution after the member list changed: this node walks the registers and chunks it
//! holds (over its own connection), writes each one to the nodes that own it under the new ring
//! but did not under the old one, and drops its own copy only once every such new owner has
//! acknowledged and this node is no longer an owner itself. Progress is counted in
//! `INFO rcluster` (`rebalance_*`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcluster_domain::keys::{kv_field, KV_PREFIX};
use rcluster_domain::ring::Ring;
use redis::Value;

use crate::cluster::{self, View};
use crate::coord::peers::{self, Peer};
use crate::coord::write::{is_ack, replica_cmd};
use crate::coord::{deadline_in, me};
use rcluster_domain::version::Version;

/// The view a pass still has to move data away from (set when the member list changes).
static PENDING: Mutex<Option<Arc<View>>> = Mutex::new(None);

pub static PASSES: AtomicU64 = AtomicU64::new(0);
pub static KEYS_MOVED: AtomicU64 = AtomicU64::new(0);
pub static BYTES_MOVED: AtomicU64 = AtomicU64::new(0);
pub static KEYS_DROPPED: AtomicU64 = AtomicU64::new(0);
pub static IN_PROGRESS: AtomicU64 = AtomicU64::new(0);

/// Called when a topology replaces `old`: if the members differ, a pass is scheduled.
pub fn topology_changed(old: Option<Arc<View>>, new: &View) {
    let Some(old) = old else { return };
    let ids = |v: &View| v.ring.nodes().to_vec();
    if ids(&old) != ids(new) || old.topology.quorum.n != new.topology.quorum.n {
        // Keep the oldest pending view: data placed under it has not moved yet.
        let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_none() {
            *pending = Some(old);
        }
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    crate::coord::reply_bytes(v).map(<[u8]>::to_vec)
}

/// New owners of a key: in the new preference list, not in the old one, not this node.
fn new_owners<'a>(
    old: &Ring,
    new: &'a Ring,
    n_old: usize,
    n_new: usize,
    key: &[u8],
    me: &str,
) -> (Vec<&'a str>, bool) {
    let before = old.preference_list(key, n_old);
    let after = new.preference_list(key, n_new);
    let still_owner = after.contains(&me);
    let added = after
        .into_iter()
        .filter(|id| *id != me && !before.contains(id))
        .collect();
    (added, still_owner)
}

/// Sends `cmd` to every target; true when all acknowledged.
async fn send_all(view: &View, targets: &[&str], cmd: &redis::Cmd, timeout_ms: u64) -> bool {
    let mut all = true;
    for id in targets {
        let Some(m) = view.topology.member(id) else {
            all = false;
            continue;
        };
        let ok = matches!(peers::peer(m).call(cmd, deadline_in(timeout_ms)).await, Ok(ref v) if is_ack(v));
        all &= ok;
    }
    all
}

/// One scan over a key pattern; `handle` returns whether the pass must run again.
async fn scan(local: &Peer, pattern: &str, timeout_ms: u64) -> Option<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    let mut cursor = b"0".to_vec();
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(&cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500);
        let Ok(Value::Array(reply)) = local.call(&cmd, deadline_in(timeout_ms)).await else {
            return None;
        };
        let (Some(next), Some(Value::Array(found))) = (reply.first().and_then(bytes), reply.get(1))
        else {
            return None;
        };
        keys.extend(found.iter().filter_map(bytes));
        if next == b"0" {
            return Some(keys);
        }
        cursor = next;
    }
}

/// One pass, if one is pending; returns the pause before the next check.
pub async fn round() -> Duration {
    let idle = Duration::from_millis(200);
    let Some(old) = PENDING.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return idle;
    };
    let Some(new) = cluster::current() else {
        return idle;
    };
    // A node leaving the cluster is not in the new topology but must still hand over its data.
    let Some((me_id, member)) = me(&new).or_else(|| me(&old)) else {
        return idle;
    };
    let local = peers::peer(member);
    let timeout_ms = new.topology.request_timeout_ms;
    let (n_old, n_new) = (
        usize::from(old.topology.quorum.n),
        usize::from(new.topology.quorum.n),
    );
    IN_PROGRESS.store(1, Ordering::Relaxed);
    let mut complete = true;

    // Registers.
    for key in scan(&local, "kv:*", timeout_ms).await.unwrap_or_default() {
        let user_key = &key[KV_PREFIX.len()..];
        let (targets, still_owner) =
            new_owners(&old.ring, &new.ring, n_old, n_new, user_key, &me_id);
        if targets.is_empty() && still_owner {
            continue;
        }
        let mut get = redis::cmd("HMGET");
        get.arg(&key)
            .arg(kv_field::VALUE)
            .arg(kv_field::VERSION)
            .arg(kv_field::ORIGIN)
            .arg(kv_field::TOMBSTONE);
        let Ok(Value::Array(f)) = local.call(&get, deadline_in(timeout_ms)).await else {
            complete = false;
            continue;
        };
        let f: Vec<Option<Vec<u8>>> = f.iter().map(bytes).collect();
        let [value, Some(ts), Some(origin), tomb] = f.as_slice() else {
            continue;
        };
        let Some(ts) = std::str::from_utf8(ts)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            continue;
        };
        let version = Version::new(ts, String::from_utf8_lossy(origin).into_owned());
        let tombstone = tomb.as_deref() == Some(b"1");
        let value = if tombstone { None } else { value.clone() };
        let cmd = replica_cmd(user_key, value.as_deref(), &version);
        if !send_all(&new, &targets, &cmd, timeout_ms).await {
            complete = false;
            continue;
        }
        KEYS_MOVED.fetch_add(targets.len() as u64, Ordering::Relaxed);
        BYTES_MOVED.fetch_add(
            (value.map_or(0, |v| v.len()) * targets.len()) as u64,
            Ordering::Relaxed,
        );
        if !still_owner {
            let mut drop = redis::cmd("RC.REPLICA.DROP");
            drop.arg(user_key).arg(version.ts).arg(&version.node);
            if let Ok(Value::Int(1)) = local.call(&drop, deadline_in(timeout_ms)).await {
                KEYS_DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    // Chunks: placed by "<file>:<index>".
    for key in scan(&local, "chunk:*", timeout_ms)
        .await
        .unwrap_or_default()
    {
        let text = String::from_utf8_lossy(&key).into_owned();
        let Some((file, index)) = text.strip_prefix("chunk:").and_then(|r| r.rsplit_once(':'))
        else {
            continue;
        };
        let ring_key = format!("{file}:{index}");
        let (targets, still_owner) = new_owners(
            &old.ring,
            &new.ring,
            n_old,
            n_new,
            ring_key.as_bytes(),
            &me_id,
        );
        if targets.is_empty() && still_owner {
            continue;
        }
        let mut get = redis::cmd("RC.CHUNK.GET");
        get.arg(file).arg(index);
        let Ok(Value::BulkString(data)) = local.call(&get, deadline_in(timeout_ms)).await else {
            complete = false;
            continue;
        };
        let sha = rcluster_domain::checksum::sha256_hex(&data);
        let mut put = redis::cmd("RC.CHUNK.PUT");
        put.arg(file).arg(index).arg(&sha).arg(&data);
        if !send_all(&new, &targets, &put, timeout_ms).await {
            complete = false;
            continue;
        }
        KEYS_MOVED.fetch_add(targets.len() as u64, Ordering::Relaxed);
        BYTES_MOVED.fetch_add((data.len() * targets.len()) as u64, Ordering::Relaxed);
        if !still_owner {
            let mut del = redis::cmd("RC.CHUNK.DEL");
            del.arg(file).arg(index);
            if let Ok(Value::Int(1)) = local.call(&del, deadline_in(timeout_ms)).await {
                KEYS_DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    PASSES.fetch_add(1, Ordering::Relaxed);
    IN_PROGRESS.store(0, Ordering::Relaxed);
    if !complete {
        // Something was unreachable: try the whole pass again later (writes are idempotent).
        let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_none() {
            *pending = Some(old);
        }
        return Duration::from_secs(1);
    }
    idle
}
