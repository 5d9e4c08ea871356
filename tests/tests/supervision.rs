//! Supervision of a node's Redis with real node processes: a Redis SIGKILLed again and again
//! while it loads its AOF is started again by its node, with a growing pause, until it runs,
//! and every write it acknowledged is there; its state says `crash_looping` and why, in the
//! API, in the `cluster:events` of another node and in the metrics. A Redis whose port another
//! process holds is `cannot_start`, not retried.

use std::sync::mpsc;
use std::time::Duration;

use rcluster_tests::nodes::{NodeCluster, READ_KEY};
use rcluster_tests::wait_for;

/// Short pauses (200 ms doubling to 1 s) keep the test quick; room for the data below.
const CONFIG: &str = "redis_maxmemory_mb: 2048\n\
    intervals: {heartbeat_ms: 100}\n\
    supervision: {restart_delay_ms: 200, max_restart_delay_ms: 1000}";
/// Registers written into n1's Redis: enough that loading its AOF takes a while (about a
/// second in a debug build), so each kill below lands while it loads.
const KEYS: usize = 300_000;
const VALUE_BYTES: usize = 300;
const BATCH: usize = 2_000;

fn key(i: usize) -> String {
    format!("sup-{i:07}")
}

fn value(i: usize) -> String {
    let mut v = format!("{i}:");
    v.extend(std::iter::repeat_n('v', VALUE_BYTES - v.len()));
    v
}

/// Writes every register into node `i`'s own replica (`RC.REPLICA.PUT`, pipelined); each one
/// acknowledged `applied`.
fn load(cluster: &NodeCluster, i: usize) {
    let mut c = cluster.redis(i);
    for start in (0..KEYS).step_by(BATCH) {
        let mut pipe = redis::pipe();
        for k in start..(start + BATCH).min(KEYS) {
            pipe.cmd("RC.REPLICA.PUT")
                .arg(key(k))
                .arg(value(k))
                .arg(1_000 + k)
                .arg("n1");
        }
        let replies: Vec<Vec<redis::Value>> = pipe.query(&mut c).expect("pipelined puts");
        for (k, reply) in replies.iter().enumerate() {
            assert_eq!(
                reply.first(),
                Some(&redis::Value::SimpleString("applied".into())),
                "put {}",
                start + k
            );
        }
    }
}

/// The pid of the redis-server on `port` while it loads its data (`INFO` answers then; `loading:1`).
fn loading_pid(port: u16) -> Option<u32> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut c = client
        .get_connection_with_timeout(Duration::from_millis(200))
        .ok()?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .arg("persistence")
        .query(&mut c)
        .ok()?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    (field("loading") == Some("1"))
        .then(|| field("process_id")?.parse().ok())
        .flatten()
}

fn sigkill(pid: u32) {
    // SAFETY: kill(2) on a redis-server of this test's cluster.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// The next `redis_state` event about `node` turning `to` (with what it says).
fn await_redis_event(
    events: &mpsc::Receiver<serde_json::Value>,
    node: &str,
    to: &str,
    within: Duration,
) -> serde_json::Value {
    rcluster_tests::nodes::await_event(events, "redis_state", node, to, within)
}

fn metric(cluster: &NodeCluster, i: usize, line_start: &str) -> f64 {
    let text = cluster.http(i, "GET", "/metrics", None).body;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line_start} in {text}"))
}

#[test]
fn a_redis_killed_again_and_again_while_loading_comes_back_with_every_write() {
    let cluster = NodeCluster::start("sup-loading", 2, CONFIG);
    cluster.await_state(1, 0, "alive", Duration::from_secs(10));
    load(&cluster, 0);
    let port = cluster.redis_ports[0];
    // n2 tells what it hears of n1's Redis on its own channel (n1's goes down with it).
    let events = cluster.subscribe_events(1);

    // A crash while running, then three kills in a row, each while the new Redis loads its AOF.
    let mut killed = vec![cluster.redis_pid(0)];
    sigkill(killed[0]);
    for round in 1..=3 {
        let pid = wait_for(
            &format!("n1's Redis to be loading again (round {round})"),
            Duration::from_secs(60),
            || loading_pid(port).filter(|p| !killed.contains(p)),
        );
        sigkill(pid);
        killed.push(pid);
    }
    // Its state says it crash-loops, and why, to the other node's subscribers.
    let looping = await_redis_event(&events, "n1", "crash_looping", Duration::from_secs(30));
    assert!(looping["restarts"].as_u64().unwrap_or(0) >= 2, "{looping}");
    assert!(
        looping["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("exited"),
        "{looping}"
    );
    assert_eq!(looping["observer"], "n2");

    // It runs again by itself.
    await_redis_event(&events, "n1", "running", Duration::from_secs(120));
    let health = wait_for("n1's Redis to run", Duration::from_secs(30), || {
        let h = cluster.http(0, "GET", "/api/health", None);
        (h.json()["redis_state"] == "running").then(|| h.json())
    });
    assert!(!killed.contains(&(health["redis_pid"].as_u64().unwrap_or(0) as u32)));
    let row = wait_for(
        "n2 to see n1's Redis running",
        Duration::from_secs(10),
        || {
            let view = cluster.http(1, "GET", "/api/nodes", Some(READ_KEY)).json();
            let row = view["nodes"][0].clone();
            (row["redis_state"] == "running").then_some(row)
        },
    );
    assert_eq!(row["redis_restarts"], 0, "{row}");
    // n2's status hash of n1 carries the supervision fields too.
    let mut c2 = cluster.redis(1);
    let status: std::collections::HashMap<String, String> = wait_for(
        "n2's status hash to show n1's Redis running",
        Duration::from_secs(10),
        || {
            let h: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
                .arg("node:n1:status")
                .query(&mut c2)
                .ok()?;
            (h.get("redis_state").map(String::as_str) == Some("running")).then_some(h)
        },
    );
    assert_eq!(status.get("redis_restarts").map(String::as_str), Some("0"));
    assert!(status.contains_key("redis_next_attempt_ms"), "{status:?}");
    // Crashes and failed starts were counted, and the one restart that took.
    assert!(metric(&cluster, 0, "rcluster_redis_crashes_total") >= 4.0);
    assert_eq!(metric(&cluster, 0, "rcluster_redis_restarts_total"), 1.0);
    assert_eq!(
        metric(&cluster, 0, "rcluster_redis_state{state=\"running\""),
        1.0
    );

    // Every acknowledged write is there.
    let mut c = cluster.redis(0);
    for start in (0..KEYS).step_by(BATCH) {
        let mut pipe = redis::pipe();
        for k in start..(start + BATCH).min(KEYS) {
            pipe.cmd("RC.REPLICA.GET").arg(key(k));
        }
        let replies: Vec<Vec<redis::Value>> = pipe.query(&mut c).expect("pipelined gets");
        for (j, reply) in replies.iter().enumerate() {
            let k = start + j;
            assert_eq!(
                reply.first(),
                Some(&redis::Value::BulkString(value(k).into_bytes())),
                "register {k} after the kills"
            );
        }
    }
}

#[test]
fn a_redis_whose_port_is_taken_cannot_start_and_says_why() {
    let cluster = NodeCluster::start("sup-port", 2, CONFIG);
    let events = cluster.subscribe_events(1);
    let port = cluster.redis_ports[0];
    // Stop n1's Redis, and hold its port with another listener.
    let r = cluster.http(
        0,
        "POST",
        "/api/nodes/n1/stop",
        Some(rcluster_tests::nodes::ADMIN_KEY),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", port)).expect("take the port");
    let r = cluster.http(
        0,
        "POST",
        "/api/nodes/n1/start",
        Some(rcluster_tests::nodes::ADMIN_KEY),
    );
    assert_eq!(r.status, 500, "{r:?}");
    assert!(r.body.contains("ACTION_FAILED"), "{r:?}");
    let health = cluster.http(0, "GET", "/api/health", None).json();
    assert_eq!(health["redis_state"], "cannot_start", "{health}");
    let reason = health["redis_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("port is held by another process"),
        "{health}"
    );
    let e = await_redis_event(&events, "n1", "cannot_start", Duration::from_secs(10));
    assert!(
        e["reason"].as_str().unwrap_or_default().contains("port"),
        "{e}"
    );
}
