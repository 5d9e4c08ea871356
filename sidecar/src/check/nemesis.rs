//! The fault executor: follows a schedule by calling the faults API (`POST /api/faults` at each
//! step's time, `DELETE /api/faults/{id}` at its end; the fault's own TTL ends it anyway), and
//! heals the cluster after the workload (`DELETE /api/faults`, then waits until every node's
//! Redis is up). Each step goes to a node the fault does not stop. Never injects faults by
//! other means.

use std::sync::Arc;
use std::time::Duration;

use rcluster_domain::check::history::{Kind, Op, NEMESIS};
use rcluster_domain::check::schedule::{Fault, Step, Target};
use tokio::time::Instant;

use super::record::Recorder;
use super::{http_failure, Cluster, Log};
use crate::api::Health;

/// The Raft leader as some node knows it (`GET /api/cluster`).
async fn leader(cluster: &Cluster) -> Option<String> {
    for i in 0..cluster.ids().len() {
        if let Some((_, r)) = cluster.ask("GET", "/api/cluster", i).await {
            let found = serde_json::from_slice::<crate::api::Cluster>(&r.body)
                .ok()
                .and_then(|c| c.raft)
                .and_then(|raft| raft.leader);
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

/// Injects one step; `Some(id)` when the API took it.
async fn inject(
    cluster: &Cluster,
    rec: &Recorder,
    step: &Step,
    index: usize,
    protect: Option<&str>,
    log: &Log,
) -> Option<String> {
    let needs_leader = matches!(
        &step.fault,
        Fault::Crash { targets, .. } | Fault::Pause { targets, .. } if targets.contains(&Target::Leader)
    );
    let leader = if needs_leader {
        leader(cluster).await
    } else {
        None
    };
    let fault = match protect {
        Some(p) => step.fault.clone().sparing(p, leader.as_deref()),
        None => step.fault.clone(),
    };
    let mut e = rec.event(Kind::Info, NEMESIS, Op::FaultStart);
    let body = match fault.body(step.ttl_ms, leader.as_deref()) {
        Ok(b) => b,
        Err(why) => {
            e.kind = Kind::Fail;
            e.error = Some(why.clone());
            rec.record(e);
            log(&format!("fault {} not injected: {why}", fault.kind()));
            return None;
        }
    };
    let stopped = fault.stopped(leader.as_deref());
    let ids = cluster.ids();
    let via = (0..ids.len())
        .map(|i| (index + i) % ids.len())
        .find(|i| !stopped.contains(&ids[*i]))
        .unwrap_or(0);
    let node = cluster.nth(via).0;
    e.node = Some(node.id.clone());
    let text = body.to_string();
    let answer = cluster
        .http(
            "POST",
            node,
            "/api/faults",
            Some(text.as_bytes()),
            Duration::from_secs(5),
        )
        .await;
    match &answer {
        Ok(r) if r.status == 201 => {
            let fault: serde_json::Value =
                serde_json::from_slice(&r.body).unwrap_or_else(|_| body.clone());
            let id = fault["id"].as_str().unwrap_or("f-?").to_string();
            log(&format!(
                "{:>6.1}s fault {id} injected: {text}",
                e.time as f64 / 1e6
            ));
            e.key = Some(id.clone());
            e.fault = Some(fault);
            rec.record(e);
            Some(id)
        }
        _ => {
            let (_, why) = http_failure(&answer);
            let detail = answer.as_ref().map_or_else(|e| e.clone(), |r| r.text());
            log(&format!(
                "fault {} refused ({why}): {}",
                fault.kind(),
                detail.trim()
            ));
            e.kind = Kind::Fail;
            e.error = Some(why);
            e.fault = Some(body);
            rec.record(e);
            None
        }
    }
}

/// Runs the steps in time; each ends at its TTL.
pub async fn execute(
    cluster: Arc<Cluster>,
    rec: Arc<Recorder>,
    steps: Vec<Step>,
    protect: Option<String>,
    log: Log,
) {
    let start = Instant::now();
    let mut ends: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_millis(step.at_ms)).await;
        let Some(id) = inject(&cluster, &rec, step, i, protect.as_deref(), &log).await else {
            continue;
        };
        let (cluster, rec) = (cluster.clone(), rec.clone());
        let end = start + Duration::from_millis(step.at_ms + step.ttl_ms);
        ends.push(tokio::spawn(async move {
            tokio::time::sleep_until(end).await;
            let path = format!("/api/faults/{id}");
            for i in 0..cluster.ids().len() {
                let node = cluster.nth(i).0;
                let gone = cluster
                    .http("DELETE", node, &path, None, Duration::from_secs(5))
                    .await;
                if matches!(&gone, Ok(r) if r.status < 500) {
                    break;
                }
            }
            let mut e = rec.event(Kind::Info, NEMESIS, Op::FaultEnd);
            e.key = Some(id);
            rec.record(e);
        }));
    }
    for end in ends {
        let _ = end.await;
    }
}

/// Ends every fault and waits (at most a minute) until every node's Redis is up again.
pub async fn heal(cluster: &Cluster, rec: &Recorder, log: &Log) {
    let _ = cluster.ask("DELETE", "/api/faults", 0).await;
    rec.record(rec.event(Kind::Info, NEMESIS, Op::Heal));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut down = Vec::new();
        for (i, id) in cluster.ids().iter().enumerate() {
            let node = cluster.nth(i).0;
            let health = cluster
                .http("GET", node, "/api/health", None, Duration::from_secs(2))
                .await
                .ok()
                .and_then(|r| serde_json::from_slice::<Health>(&r.body).ok());
            if !health.is_some_and(|h| h.redis_up) {
                down.push(id.clone());
            }
        }
        if down.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            log(&format!(
                "healing: still down after a minute: {}",
                down.join(", ")
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
