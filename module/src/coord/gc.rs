//! Tombstone purge: walks this Redis's `kv:*` keys a batch per round (over this node's own
//! connection) and removes tombstones older than the grace period with `RC.REPLICA.PURGE`, which
//! deletes only if the key still holds that very tombstone.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcluster_domain::hlc::Timestamp;
use rcluster_domain::keys::KV_PREFIX;
use rcluster_domain::rc::replica::ReplicaRemove;
use rcluster_domain::version::Version;
use redis::Value;

use crate::cluster;
use crate::coord::wire;
use crate::coord::{deadline_in, me, peers};

/// The SCAN cursor between rounds.
static CURSOR: Mutex<Vec<u8>> = Mutex::new(Vec::new());
const BATCH: u32 = 200;
const ROUND_PAUSE: Duration = Duration::from_millis(200);

fn bytes(v: &Value) -> Option<Vec<u8>> {
    crate::coord::reply_bytes(v).map(<[u8]>::to_vec)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One purge round over the next batch of keys; returns the pause before the next.
pub async fn purge_round() -> Duration {
    let Some(view) = cluster::current() else {
        return ROUND_PAUSE;
    };
    let Some((_, member)) = me(&view) else {
        return ROUND_PAUSE;
    };
    let local = peers::peer(member);
    let timeout_ms = view.topology.request_timeout_ms;
    let grace_ms = view.topology.tombstone_grace_ms;
    let cursor = {
        let c = CURSOR.lock().unwrap_or_else(|p| p.into_inner());
        if c.is_empty() {
            b"0".to_vec()
        } else {
            c.clone()
        }
    };
    let mut scan = redis::cmd("SCAN");
    scan.arg(&cursor)
        .arg("MATCH")
        .arg("kv:*")
        .arg("COUNT")
        .arg(BATCH);
    let Ok(Value::Array(reply)) = local.call(&scan, deadline_in(timeout_ms)).await else {
        return ROUND_PAUSE;
    };
    let (Some(next), Some(Value::Array(keys))) = (reply.first().and_then(bytes), reply.get(1))
    else {
        return ROUND_PAUSE;
    };
    for key in keys.iter().filter_map(bytes) {
        let mut get = redis::cmd("HMGET");
        get.arg(&key).arg("tombstone").arg("version").arg("origin");
        let Ok(Value::Array(f)) = local.call(&get, deadline_in(timeout_ms)).await else {
            continue;
        };
        let fields: Vec<Option<Vec<u8>>> = f.iter().map(bytes).collect();
        let [Some(tomb), Some(version), Some(origin)] = fields.as_slice() else {
            continue;
        };
        let Some(ts) = std::str::from_utf8(version)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let age_ms = now_ms().saturating_sub(Timestamp(ts).physical_ms());
        if tomb.as_slice() != b"1" || age_ms <= grace_ms {
            continue;
        }
        let purge = wire::cmd(&ReplicaRemove {
            tombstone_only: true,
            key: &key[KV_PREFIX.len()..],
            version: Cow::Owned(Version::new(ts, String::from_utf8_lossy(origin))),
        });
        let _ = local.call(&purge, deadline_in(timeout_ms)).await;
    }
    *CURSOR.lock().unwrap_or_else(|p| p.into_inner()) = next;
    ROUND_PAUSE
}
