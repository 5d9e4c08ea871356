//! Failure detection with real node processes: a SIGKILLed Redis is seen down by the other nodes
//! (API, `node:<id>:status` hashes, `cluster:events`, the module's routing) and alive again once
//! its node restarted it; a whole node frozen with SIGSTOP is seen down, and alive after SIGCONT.

use std::sync::mpsc;
use std::time::Duration;

use rcluster_tests::nodes::NodeCluster;
use rcluster_tests::{call, wait_for};

const FAST: &str = "intervals: {heartbeat_ms: 100}\nsupervision: {restart_delay_ms: 1500}";
/// The kill test checks what the others report while the Redis is down: its node waits 8 s
/// before restarting it, far more than detection takes (about 150 ms at 100 ms heartbeats), so a
/// slow poll on a loaded machine still finds it down.
const SLOW_RESTART: &str = "intervals: {heartbeat_ms: 100}\nsupervision: {restart_delay_ms: 8000}";

/// Waits (at most `within`) for an event about `node` turning `to`.
fn await_event(
    events: &mpsc::Receiver<serde_json::Value>,
    node: &str,
    to: &str,
    within: Duration,
) -> serde_json::Value {
    rcluster_tests::nodes::await_event(events, "node_state", node, to, within)
}

fn status_field(cluster: &NodeCluster, observer: usize, node: &str, field: &str) -> Option<String> {
    let mut c = cluster.redis(observer);
    redis::cmd("HGET")
        .arg(format!("node:{node}:status"))
        .arg(field)
        .query(&mut c)
        .ok()
}

#[test]
fn a_killed_redis_is_seen_down_then_alive_after_its_node_restarts_it() {
    let cluster = NodeCluster::start("fd-kill", 3, SLOW_RESTART);
    for observer in [0, 2] {
        cluster.await_state(observer, 1, "alive", Duration::from_secs(10));
    }
    let events = cluster.subscribe_events(0);
    let old_pid = cluster.redis_pid(1);
    // SAFETY: kill(2) on a redis-server this test's cluster started.
    unsafe { libc::kill(old_pid as i32, libc::SIGKILL) };

    for observer in [0, 2] {
        cluster.await_state(observer, 1, "down", Duration::from_secs(5));
    }
    let event = await_event(&events, "n2", "down", Duration::from_secs(15));
    assert_eq!(event["observer"], "n1");
    assert_eq!(
        status_field(&cluster, 0, "n2", "state").as_deref(),
        Some("down")
    );
    assert_eq!(
        status_field(&cluster, 0, "n2", "redis_up").as_deref(),
        Some("0")
    );
    // The module of n1 routes around n2 at once.
    let mut c1 = cluster.redis(0);
    let locate = format!("{:?}", call(&mut c1, &[b"RC.LOCATE", b"any-key"]).unwrap());
    assert!(locate.contains("down"), "{locate}");

    // n2's node process restarts its Redis after the configured delay: alive again.
    await_event(&events, "n2", "alive", Duration::from_secs(30));
    cluster.await_state(2, 1, "alive", Duration::from_secs(10));
    assert_ne!(cluster.redis_pid(1), old_pid, "a new redis-server");
    assert_eq!(
        status_field(&cluster, 0, "n2", "state").as_deref(),
        Some("alive")
    );
    let metrics = cluster.http(1, "GET", "/metrics", None).body;
    assert!(
        metrics.contains("rcluster_redis_restarts_total{node=\"n2\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_frozen_node_is_seen_down_and_alive_after_it_continues() {
    let cluster = NodeCluster::start("fd-stop", 3, FAST);
    cluster.await_state(0, 2, "alive", Duration::from_secs(10));
    let (node, redis) = (cluster.node_pid(2), cluster.redis_pid(2));
    for pid in [node, redis] {
        // SAFETY: kill(2) on processes of this test's cluster.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    }
    cluster.await_state(0, 2, "down", Duration::from_secs(5));
    cluster.await_state(1, 2, "down", Duration::from_secs(5));
    let reason = cluster.nodes_seen_by(0)["nodes"][2]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("heartbeats missing"), "{reason}");
    for pid in [redis, node] {
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    }
    cluster.await_state(0, 2, "alive", Duration::from_secs(10));
    cluster.await_state(1, 2, "alive", Duration::from_secs(10));
}

#[test]
fn every_node_starts_alive_with_measured_round_trips() {
    let cluster = NodeCluster::start("fd-alive", 3, FAST);
    cluster.await_state(0, 1, "alive", Duration::from_secs(10));
    cluster.await_state(0, 2, "alive", Duration::from_secs(10));
    let view = cluster.nodes_seen_by(0);
    let states: Vec<&str> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["alive", "alive", "alive"]);
    wait_for(
        "heartbeat round trips measured",
        Duration::from_secs(5),
        || {
            let v = cluster.nodes_seen_by(0);
            v["nodes"][1]["rtt_ms"].as_f64()
        },
    );
}
