//! Time against a local SNTP responder on loopback: a server reporting a clock 250 ms ahead makes
//! the node show a drift within 5 ms of that and correct its module's hybrid clock; with no server
//! answering the node reports the fallback and keeps working.

use std::net::UdpSocket;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcluster_domain::sntp;
use rcluster_tests::nodes::{NodeCluster, READ_KEY};
use rcluster_tests::{call, free_port, wait_for};

const SKEW_MS: i64 = 250;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// An SNTP server on a free loopback port whose clock runs `skew_ms` ahead; serves until the
/// test process ends.
fn skewed_server(skew_ms: i64) -> u16 {
    let port = free_port();
    let socket = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = socket.recv_from(&mut buf) {
            let t = now_ms().saturating_add_signed(skew_ms);
            if let Some(reply) = sntp::server_reply(&buf[..len], t, t, 2) {
                let _ = socket.send_to(&reply, from);
            }
        }
    });
    port
}

fn self_view(cluster: &NodeCluster) -> serde_json::Value {
    cluster.nodes_seen_by(0)["nodes"][0].clone()
}

/// The module's `rcluster.clock-offset-ms`.
fn module_offset(c: &mut redis::Connection) -> i64 {
    let offset: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("rcluster.clock-offset-ms")
        .query(c)
        .unwrap();
    offset[1].parse().unwrap()
}

/// How far ahead of this machine's clock the module's hybrid clock runs, in ms, bracketed by
/// reading the wall clock before and after `RC.CLOCK` (so a slow reply widens the bracket instead
/// of looking like skew): `(lowest, highest)`.
fn module_ahead(c: &mut redis::Connection) -> (i64, i64) {
    let before = now_ms() as i64;
    let physical = match call(c, &[b"RC.CLOCK"]).unwrap() {
        redis::Value::Array(items) => match items[1] {
            redis::Value::Int(ms) => ms,
            ref other => panic!("RC.CLOCK physical part: {other:?}"),
        },
        other => panic!("RC.CLOCK: {other:?}"),
    };
    let after = now_ms() as i64;
    (physical - after, physical - before)
}

fn metric_drift_ms(cluster: &NodeCluster) -> Option<f64> {
    let metrics = cluster.http(0, "GET", "/metrics", None).body;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("rcluster_time_drift_seconds{"))?
        .to_string();
    let value: f64 = line.rsplit(' ').next()?.parse().ok()?;
    Some(value * 1000.0)
}

// Each SNTP sample's offset is off by at most half its round trip, and the node keeps the sample
// with the shortest round trip; on a loaded machine one sample may be late, so the test awaits
// the values converging to within 5 ms of the skew instead of trusting the first sample.
#[test]
fn a_skewed_ntp_server_shows_as_drift_and_corrects_the_clock() {
    let port = skewed_server(SKEW_MS);
    let cluster = NodeCluster::start(
        "ntp-skew",
        1,
        &format!("time: {{ntp_servers: [\"127.0.0.1:{port}\"], ntp_interval_ms: 1000}}"),
    );
    wait_for(
        "the drift to be within 5 ms of the skew",
        Duration::from_secs(60),
        || {
            let drift = self_view(&cluster)["drift_ms"].as_i64()?;
            ((drift - SKEW_MS).abs() <= 5).then_some(())
        },
    );
    assert_eq!(self_view(&cluster)["time_source"], "ntp");
    // The correction reached the module's clock.
    let mut c = cluster.redis(0);
    wait_for(
        "the module's clock offset to be within 5 ms of the skew",
        Duration::from_secs(60),
        || ((module_offset(&mut c) - SKEW_MS).abs() <= 5).then_some(()),
    );
    wait_for(
        "the module's clock to run the skew ahead",
        Duration::from_secs(60),
        || {
            let (low, high) = module_ahead(&mut c);
            (low <= SKEW_MS + 5 && high >= SKEW_MS - 5 && high - low <= 50).then_some(())
        },
    );
    wait_for(
        "rcluster_time_drift_seconds to show the skew",
        Duration::from_secs(60),
        || {
            let ms = metric_drift_ms(&cluster)?;
            ((ms - SKEW_MS as f64).abs() <= 5.0).then_some(())
        },
    );
}

#[test]
fn without_an_answering_ntp_server_the_node_reports_the_fallback() {
    // A port where nothing answers.
    let silent = free_port();
    let cluster = NodeCluster::start(
        "ntp-none",
        1,
        &format!("time: {{ntp_servers: [\"127.0.0.1:{silent}\"], ntp_interval_ms: 1000, ntp_timeout_ms: 200}}"),
    );
    let cluster_view = wait_for("the NTP round to finish", Duration::from_secs(10), || {
        let v = cluster
            .http(0, "GET", "/api/cluster", Some(READ_KEY))
            .json();
        (v["time"]["source"] == "unavailable").then_some(v)
    });
    let error = cluster_view["time"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no NTP server answered") && error.contains("logical"),
        "{error}"
    );
    assert!(self_view(&cluster)["drift_ms"].is_null());
    // The node and its clock keep working.
    let mut c = cluster.redis(0);
    assert_eq!(
        call(&mut c, &[b"RC.SET", b"k", b"v"]).unwrap(),
        redis::Value::Okay
    );
    assert!(matches!(
        call(&mut c, &[b"RC.CLOCK"]).unwrap(),
        redis::Value::Array(_)
    ));
}
