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

/// The Raft leader as some node knows it (`GET /api/cluster`).
async fn leader(cluster: &Cluster) -> Option<String> {
    for i in 0..cluster.ids().len() {
        if let Some((_, r)) = cluster.ask("GET", "/api/cluster", i).await {
            let found = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|c| c["raft"]["leader"].as_str().map(str::to_string));
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
                .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok());
            if !health.is_some_and(|h| h["redis_up"] == true) {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rcluster_domain::check::history::Event;
    use rcluster_domain::check::judge::judge;
    use rcluster_domain::check::schedule::Fault;
    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::api::CheckProgress;

    /// What the fake nodes were asked: (node, method, path, body).
    type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

    /// Reads one request: method, path, body.
    async fn request(s: &mut tokio::net::TcpStream) -> Option<(String, String, String)> {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            let n = s.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let mut words = head.split_whitespace();
                let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                return Some((method, path, body));
            }
        }
    }

    /// A node's faults API as the contract describes it (`POST` answers 201 with the fault and
    /// an id, a skew is refused with 400), its `/api/cluster` naming n1 the leader, its health.
    async fn fake_node(id: String, listener: TcpListener, seen: Seen) {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let Some((method, path, body)) = request(&mut s).await else {
                continue;
            };
            let count = {
                let mut seen = seen.lock().unwrap();
                seen.push((id.clone(), method.clone(), path.clone(), body.clone()));
                seen.iter().filter(|r| r.1 == "POST").count()
            };
            let (status, answer) = match (method.as_str(), path.as_str()) {
                ("GET", "/api/cluster") => (200, json!({"raft": {"leader": "n1"}})),
                ("GET", "/api/health") => (200, json!({"redis_up": true})),
                ("POST", "/api/faults") => {
                    let mut fault: Value = serde_json::from_str(&body).unwrap();
                    if fault["kind"] == "skew" {
                        (
                            400,
                            json!({"error": {"code": "BAD_REQUEST", "message": "no"}}),
                        )
                    } else {
                        fault["id"] = json!(format!("f-{count}"));
                        fault["expires_in_ms"] = fault["ttl_ms"].clone();
                        fault["nodes"] = json!(["n1", "n2", "n3"]);
                        (201, fault)
                    }
                }
                ("DELETE", _) => (200, json!({"cleared": [], "nodes": []})),
                _ => (404, json!({})),
            };
            let text = answer.to_string();
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = s.write_all(reply.as_bytes()).await;
        }
    }

    fn of(events: &[Event], op: Op, kind: Kind) -> Vec<&Event> {
        events
            .iter()
            .filter(|e| e.op == op && e.kind == kind)
            .collect()
    }

    #[tokio::test]
    async fn steps_go_through_the_faults_api_to_a_node_they_do_not_stop() {
        let seen: Seen = Arc::default();
        let mut nodes = String::new();
        for i in 1..=3 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(fake_node(format!("n{i}"), listener, seen.clone()));
            nodes.push_str(&format!(
                "  - {{ id: n{i}, redis_port: {}, http_port: {port}, peer_port: {} }}\n",
                40_000 + i,
                41_000 + i
            ));
        }
        let config =
            rcluster_domain::config::parse(&format!("cluster_name: t\nnodes:\n{nodes}")).unwrap();
        let cluster = Arc::new(Cluster::new(config, Some("k".into())));
        let rec =
            Arc::new(Recorder::new(None, Arc::new(Mutex::new(CheckProgress::default()))).unwrap());
        let steps = vec![
            Step {
                at_ms: 0,
                ttl_ms: 300,
                fault: Fault::Crash {
                    targets: vec![Target::Leader],
                    process: "both",
                },
            },
            Step {
                at_ms: 50,
                ttl_ms: 100,
                fault: Fault::Partition {
                    groups: vec![vec!["n1".into()], vec!["n2".into(), "n3".into()]],
                },
            },
            Step {
                at_ms: 100,
                ttl_ms: 100,
                fault: Fault::Skew {
                    targets: vec!["n3".into()],
                    ms: 5000,
                },
            },
        ];
        let log: Log = Arc::new(|_: &str| {});
        // n1 runs the check: the leader's crash stops only its Redis.
        execute(
            cluster.clone(),
            rec.clone(),
            steps,
            Some("n1".into()),
            log.clone(),
        )
        .await;
        heal(&cluster, &rec, &log).await;

        let seen = seen.lock().unwrap().clone();
        let posts: Vec<(&str, Value)> = seen
            .iter()
            .filter(|r| r.1 == "POST")
            .map(|r| (r.0.as_str(), serde_json::from_str(&r.3).unwrap()))
            .collect();
        assert_eq!(posts.len(), 3, "{seen:?}");
        assert_eq!(posts[0].0, "n2", "not sent to the node it crashes");
        assert_eq!(
            posts[0].1,
            json!({"kind": "crash", "targets": ["n1"], "process": "redis", "ttl_ms": 300})
        );
        assert_eq!(posts[1].1["groups"], json!([["n1"], ["n2", "n3"]]));
        let deleted: Vec<&str> = seen
            .iter()
            .filter(|r| r.1 == "DELETE")
            .map(|r| r.2.as_str())
            .collect();
        assert!(deleted.contains(&"/api/faults/f-1") && deleted.contains(&"/api/faults/f-2"));
        assert_eq!(
            deleted.last(),
            Some(&"/api/faults"),
            "healing clears everything"
        );

        let events = rec.events();
        let started = of(&events, Op::FaultStart, Kind::Info);
        let ids: Vec<Option<&str>> = started.iter().map(|e| e.key.as_deref()).collect();
        assert_eq!(ids, vec![Some("f-1"), Some("f-2")]);
        assert_eq!(
            started[0].fault.as_ref().unwrap()["nodes"],
            json!(["n1", "n2", "n3"])
        );
        assert_eq!(
            of(&events, Op::FaultStart, Kind::Fail)[0].error.as_deref(),
            Some("400")
        );
        assert_eq!(of(&events, Op::FaultEnd, Kind::Info).len(), 2);
        assert_eq!(of(&events, Op::Heal, Kind::Info).len(), 1);
        let report = judge(&events, Default::default());
        assert_eq!(report.faults_injected, 2);
        assert_eq!(report.faults_refused.get("400"), Some(&1));
        let kinds: Vec<&str> = report
            .unavailability
            .iter()
            .map(|w| w.kind.as_str())
            .collect();
        assert_eq!(kinds, vec!["crash", "partition"]);
    }
}
