//! After healing: every written key read back through every node (quorum reads), every
//! acknowledged file downloaded, and every replica's version of every key (`RC.LOCATE`, then
//! `RC.REPLICA.GET` on each preference node's Redis), read again until they agree or the bound
//! passes. Everything read is recorded in the history, where the judge finds it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use rcluster_domain::check::history::{Kind, Op, Workload, NEMESIS};
use rcluster_domain::rc::kv::{Get, Locate, LocateRow, QuorumOptions};
use rcluster_domain::rc::replica::{HeldReply, ReplicaGet};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::record::Recorder;
use super::workload::Written;
use super::{http_failure, redis_failure, Cluster, Log};
use crate::node::local::{contract_value, rc};

/// Keys handled at once.
const BATCH: usize = 32;
/// Tries of one read after healing.
const TRIES: usize = 3;

/// One quorum read of `key` through node `i`, retried; recorded.
async fn final_read(cluster: &Cluster, rec: &Recorder, workload: Workload, key: &str, i: usize) {
    let (node, local) = cluster.nth(i);
    let cmd = rc(&Get {
        key: key.as_bytes(),
        options: QuorumOptions::NONE,
    });
    let mut e = rec.event(Kind::Ok, NEMESIS, Op::FinalRead);
    e.workload = Some(workload);
    e.node = Some(node.id.clone());
    e.key = Some(key.to_string());
    for attempt in 0..TRIES {
        match local
            .query::<Option<Vec<u8>>>(&cmd, cluster.op_timeout)
            .await
        {
            Ok(v) => {
                e.value = v.map(|b| String::from_utf8_lossy(&b).into_owned());
                e.kind = Kind::Ok;
                e.error = None;
                break;
            }
            Err(err) => {
                let (kind, why) = redis_failure(&err);
                e.kind = kind;
                e.error = Some(why);
                if attempt + 1 < TRIES {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }
    e.time = rec.now();
    rec.record(e);
}

/// Downloads an acknowledged file (trying the nodes in turn); recorded with the SHA-256 of
/// what came back.
async fn final_download(cluster: &Cluster, rec: &Recorder, name: &str, id: &str, i: usize) {
    let mut e = rec.event(Kind::Ok, NEMESIS, Op::FinalDownload);
    e.workload = Some(Workload::Files);
    e.key = Some(name.to_string());
    e.id = Some(id.to_string());
    let path = format!("/api/files/{id}/content");
    for attempt in 0..TRIES {
        let node = cluster.nth(i + attempt).0;
        e.node = Some(node.id.clone());
        let answer = cluster
            .http("GET", node, &path, None, cluster.op_timeout * 10)
            .await;
        match &answer {
            Ok(r) if r.status == 200 => {
                e.kind = Kind::Ok;
                e.value = Some(hex::encode(Sha256::digest(&r.body)));
                e.error = None;
                break;
            }
            _ => {
                let (kind, why) = http_failure(&answer);
                e.kind = kind;
                e.error = Some(why);
                if matches!(&answer, Ok(r) if r.status == 404) {
                    break;
                }
            }
        }
    }
    e.time = rec.now();
    rec.record(e);
}

/// Reads every written key through every node and downloads every acknowledged file.
pub async fn final_reads(cluster: &Cluster, rec: &Recorder, written: &Written) {
    let nodes = cluster.ids().len();
    for batch in written.keys.chunks(BATCH) {
        let reads = batch
            .iter()
            .flat_map(|(w, key)| (0..nodes).map(move |i| final_read(cluster, rec, *w, key, i)));
        join_all(reads).await;
    }
    for (n, batch) in written.files.chunks(4).enumerate() {
        let downloads = batch
            .iter()
            .enumerate()
            .map(|(i, (name, id))| final_download(cluster, rec, name, id, n * 4 + i));
        join_all(downloads).await;
    }
}

/// What one replica holds of a key: its version (`<ts>-<origin>`, ` tombstone` after a delete),
/// `none`, or why it could not be read.
type Reading = (String, Result<Option<String>, String>);

/// Every preference node's version of `key`.
async fn replicas(cluster: &Cluster, key: &str, via: usize) -> Vec<Reading> {
    let (node, local) = cluster.nth(via);
    let locate = rc(&Locate {
        key: key.as_bytes(),
    });
    let rows = match local
        .query::<redis::Value>(&locate, cluster.op_timeout)
        .await
    {
        Ok(v) => match LocateRow::decode(&contract_value(v)) {
            Some(rows) => rows,
            None => return vec![(node.id.clone(), Err("bad RC.LOCATE reply".into()))],
        },
        Err(e) => return vec![(node.id.clone(), Err(format!("RC.LOCATE: {e}")))],
    };
    let get = rc(&ReplicaGet {
        key: key.as_bytes(),
    });
    let reads = rows.into_iter().map(|row| {
        let get = &get;
        async move {
            let Some(local) = cluster.redis_of(&row.node) else {
                return (row.node, Err("not in the config".into()));
            };
            let held = match local.query::<redis::Value>(get, cluster.op_timeout).await {
                Ok(v) => HeldReply::decode(&contract_value(v))
                    .map(|h| {
                        h.map(|h| {
                            let dead = if h.tombstone { " tombstone" } else { "" };
                            format!("{}-{}{dead}", h.version.ts, h.version.node)
                        })
                    })
                    .ok_or_else(|| "bad RC.REPLICA.GET reply".to_string()),
                Err(e) => Err(redis_failure(&e).1),
            };
            (row.node, held)
        }
    });
    join_all(reads).await
}

fn agree(readings: &[Reading]) -> bool {
    readings.iter().all(|(_, r)| r.is_ok()) && readings.windows(2).all(|w| w[0].1 == w[1].1)
}

/// Reads every replica of every written key until they agree or `bound_s` passed; records the
/// last readings.
pub async fn converge(
    cluster: &Cluster,
    rec: &Recorder,
    written: &Written,
    bound_s: u32,
    log: &Log,
) {
    let deadline = Instant::now() + Duration::from_secs(u64::from(bound_s));
    let mut last: BTreeMap<&str, (Workload, Vec<Reading>)> = BTreeMap::new();
    let mut pending: Vec<&(Workload, String)> = written.keys.iter().collect();
    let mut round = 0usize;
    while !pending.is_empty() {
        let mut next = Vec::new();
        for batch in pending.chunks(BATCH) {
            let reads = batch
                .iter()
                .enumerate()
                .map(|(i, (_, key))| replicas(cluster, key, round + i));
            for (item, readings) in batch.iter().zip(join_all(reads).await) {
                if !agree(&readings) {
                    next.push(*item);
                }
                last.insert(item.1.as_str(), (item.0, readings));
            }
        }
        pending = next;
        round += 1;
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        if round.is_multiple_of(5) {
            log(&format!(
                "converging: {} key(s) still differ",
                pending.len()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for (key, (w, readings)) in last {
        for (node, held) in readings {
            let mut e = rec.event(Kind::Ok, NEMESIS, Op::ReplicaRead);
            e.workload = Some(w);
            e.key = Some(key.to_string());
            e.node = Some(node);
            match held {
                Ok(v) => e.version = v,
                Err(why) => {
                    e.kind = Kind::Fail;
                    e.error = Some(why);
                }
            }
            rec.record(e);
        }
    }
}
