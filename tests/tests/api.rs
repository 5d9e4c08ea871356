//! The node's HTTP API and `rcluster status` against real clusters started with `rcluster up`:
//! API keys and roles, stopping/starting/restarting a node's Redis through any node, the per-key
//! rate limit, the body limit, the Prometheus `/metrics` exposition (checked by `promtool`), and
//! the status command (table, JSON, a frozen node, a refused key).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use rcluster_tests::nodes::{rcluster, Http, NodeCluster, ADMIN_KEY, READ_KEY};
use rcluster_tests::{call, ping, wait_for};
use redis::Value;

/// Heartbeats every 100 ms so liveness changes show within about a second.
const FAST: &str = "intervals: {heartbeat_ms: 100}";
const WAIT: Duration = Duration::from_secs(15);

/// A raw HTTP/1.1 request with the given extra header lines and body. Reads whatever the server
/// sends until it closes (a server refusing a body may reset the connection after answering).
fn raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Http {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).expect("send the request head");
    // The server may answer and close before reading the whole body: ignore write errors.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path}: {out:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    Http {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    }
}

/// Asserts a JSON error answer `{"error":{"code","message"}}` with this status and code.
fn assert_error(r: &Http, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    let json = r.json();
    assert_eq!(json["error"]["code"], code, "{what}: {}", r.body);
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: the error names the problem: {}",
        r.body
    );
}

fn set(c: &mut redis::Connection, key: &str, value: &str, w: &str) -> redis::RedisResult<Value> {
    call(
        c,
        &[
            b"RC.SET",
            key.as_bytes(),
            value.as_bytes(),
            b"W",
            w.as_bytes(),
        ],
    )
}

/// The value node-local replica `c` holds for `key`, if any.
fn replica_value(c: &mut redis::Connection, key: &str) -> Option<Vec<u8>> {
    match call(c, &[b"RC.REPLICA.GET", key.as_bytes()]).expect("RC.REPLICA.GET") {
        Value::Array(items) => match &items[0] {
            Value::BulkString(b) => Some(b.clone()),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn keys_and_roles_are_enforced() {
    let c = NodeCluster::start("api-auth", 3, FAST);
    let port = c.http_ports[0];
    for (method, path) in [
        ("GET", "/api/nodes"),
        ("GET", "/api/cluster"),
        ("POST", "/api/nodes/n1/stop"),
    ] {
        let r = c.http(0, method, path, None);
        assert_error(
            &r,
            401,
            "UNAUTHORIZED",
            &format!("{method} {path} without key"),
        );
        let r = c.http(0, method, path, Some("not-a-key-of-this-cluster"));
        assert_error(
            &r,
            401,
            "UNAUTHORIZED",
            &format!("{method} {path} unknown key"),
        );
    }
    // Another scheme than Bearer is no key at all.
    let r = raw(
        port,
        "GET",
        "/api/nodes",
        &[("Authorization", &format!("Basic {READ_KEY}"))],
        b"",
    );
    assert_error(&r, 401, "UNAUTHORIZED", "Authorization: Basic");

    // A read key may look but not act, on this node or (before any forwarding) another one.
    for target in ["n1", "n2"] {
        let r = c.http(
            0,
            "POST",
            &format!("/api/nodes/{target}/stop"),
            Some(READ_KEY),
        );
        assert_error(&r, 403, "FORBIDDEN", &format!("read key stopping {target}"));
    }
    assert!(ping(c.redis_ports[0]), "n1's Redis still answers");
    assert!(ping(c.redis_ports[1]), "n2's Redis still answers");
    assert_eq!(
        c.http(0, "GET", "/api/health", None).json()["redis_up"],
        true
    );

    let r = c.http(0, "GET", "/api/nodes", Some(READ_KEY));
    assert_eq!(r.status, 200, "{r:?}");
    let ids: Vec<String> = r.json()["nodes"]
        .as_array()
        .expect("nodes array")
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["n1", "n2", "n3"]);
    let r = c.http(0, "GET", "/api/cluster", Some(ADMIN_KEY));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["observer"], "n1");
    assert_eq!(r.json()["nodes"].as_array().map(Vec::len), Some(3));

    // The X-API-Key header works as well as Authorization: Bearer.
    let r = raw(port, "GET", "/api/nodes", &[("X-API-Key", READ_KEY)], b"");
    assert_eq!(r.status, 200, "X-API-Key: {r:?}");
    assert_eq!(r.json()["nodes"].as_array().map(Vec::len), Some(3));
    let r = raw(
        port,
        "GET",
        "/api/nodes",
        &[("X-API-Key", "not-a-key-of-this-cluster")],
        b"",
    );
    assert_error(&r, 401, "UNAUTHORIZED", "unknown X-API-Key");
    let r = raw(
        port,
        "POST",
        "/api/nodes/n1/stop",
        &[("X-API-Key", READ_KEY)],
        b"",
    );
    assert_error(&r, 403, "FORBIDDEN", "read X-API-Key stopping n1");
    assert!(ping(c.redis_ports[0]), "n1's Redis still answers");
}

#[test]
fn admin_stops_starts_and_restarts_a_node_through_another() {
    let c = NodeCluster::start("api-ctl", 3, FAST);
    c.await_all_alive(WAIT);
    // Written on all three replicas through n1, so n2 holds it.
    let mut n1 = c.redis(0);
    wait_for("RC.SET W 3 through n1", WAIT, || {
        set(&mut n1, "api-key", "kept", "3").ok()
    });
    assert_eq!(
        replica_value(&mut c.redis(1), "api-key").as_deref(),
        Some(&b"kept"[..])
    );

    let r = c.http(0, "POST", "/api/nodes/n2/stop", Some(ADMIN_KEY));
    assert_eq!(r.status, 200, "stop n2 via n1: {r:?}");
    assert_eq!(r.json()["node"], "n2", "{}", r.body);
    assert!(!ping(c.redis_ports[1]), "n2's Redis answers after stop");
    let health = c.http(1, "GET", "/api/health", None);
    assert_eq!(
        health.status, 503,
        "n2 health with Redis stopped: {health:?}"
    );
    assert_eq!(health.json()["redis_up"], false, "{}", health.body);
    assert_eq!(health.json()["node"], "n2", "{}", health.body);
    c.await_state(0, 1, "down", WAIT);
    // Stopping again is harmless.
    let r = c.http(0, "POST", "/api/nodes/n2/stop", Some(ADMIN_KEY));
    assert_eq!(r.status, 200, "second stop: {r:?}");

    let r = c.http(0, "POST", "/api/nodes/n2/start", Some(ADMIN_KEY));
    assert_eq!(r.status, 200, "start n2 via n1: {r:?}");
    assert!(
        ping(c.redis_ports[1]),
        "n2's Redis does not answer after start"
    );
    assert_eq!(c.http(1, "GET", "/api/health", None).status, 200);
    c.await_state(0, 1, "alive", WAIT);
    assert_eq!(
        replica_value(&mut c.redis(1), "api-key").as_deref(),
        Some(&b"kept"[..]),
        "data survives stop/start"
    );

    let before = c.redis_pid(1);
    let r = c.http(2, "POST", "/api/nodes/n2/restart", Some(ADMIN_KEY));
    assert_eq!(r.status, 200, "restart n2 via n3: {r:?}");
    assert!(
        ping(c.redis_ports[1]),
        "n2's Redis does not answer after restart"
    );
    let after = c.redis_pid(1);
    assert_ne!(before, after, "restart gives a new redis-server");
    assert_eq!(
        replica_value(&mut c.redis(1), "api-key").as_deref(),
        Some(&b"kept"[..]),
        "data survives a restart"
    );
    c.await_state(0, 1, "alive", WAIT);

    let r = c.http(0, "POST", "/api/nodes/n9/stop", Some(ADMIN_KEY));
    assert_error(&r, 404, "UNKNOWN_NODE", "unknown node");
    let r = c.http(0, "POST", "/api/nodes/n2/explode", Some(ADMIN_KEY));
    assert_error(&r, 404, "NOT_FOUND", "unknown action");
    let r = c.http(0, "GET", "/api/nope", Some(ADMIN_KEY));
    assert_error(&r, 404, "NOT_FOUND", "unknown endpoint");
    assert!(ping(c.redis_ports[1]), "n2's Redis still answers");
}

#[test]
fn each_key_is_rate_limited_on_its_own() {
    let c = NodeCluster::start("api-rate", 3, "api: {rate_per_s: 2, burst: 3}");
    let limited = (1..=10)
        .map(|_| c.http(0, "GET", "/api/nodes", Some(READ_KEY)))
        .inspect(|r| assert!(r.status == 200 || r.status == 429, "{r:?}"))
        .position(|r| r.status == 429)
        .map(|i| i + 1);
    let n = limited.expect("the read key was never limited in 10 quick requests");
    assert!(n >= 4, "limited after {n} requests, burst is 3");
    let r = c.http(0, "GET", "/api/nodes", Some(READ_KEY));
    assert_error(&r, 429, "RATE_LIMITED", "over the rate");
    let retry: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {r:?}"))
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry >= 1, "Retry-After {retry}");
    // The admin key has its own budget.
    let r = c.http(0, "GET", "/api/nodes", Some(ADMIN_KEY));
    assert_eq!(
        r.status, 200,
        "admin key limited by the read key's use: {r:?}"
    );
    // Another node keeps its own budget too.
    let r = c.http(1, "GET", "/api/nodes", Some(READ_KEY));
    assert_eq!(r.status, 200, "n2 limited by n1's use: {r:?}");
    // The budget refills at the configured rate.
    wait_for("the read key to be served again", WAIT, || {
        (c.http(0, "GET", "/api/nodes", Some(READ_KEY)).status == 200).then_some(())
    });
}

#[test]
fn request_bodies_over_the_limit_are_refused() {
    let c = NodeCluster::start("api-body", 3, "api: {body_limit_bytes: 1024}");
    let port = c.http_ports[0];
    let auth = format!("Bearer {ADMIN_KEY}");
    // Within the limit: start of a running Redis answers 200 and changes nothing.
    let small = vec![b'x'; 512];
    let r = raw(
        port,
        "POST",
        "/api/nodes/n1/start",
        &[("Authorization", &auth)],
        &small,
    );
    assert_eq!(r.status, 200, "small body: {r:?}");
    // Over the limit: refused with 413 Payload Too Large. Observed so far: 200, the body is
    // ignored, because `DefaultBodyLimit` only bounds handlers that extract a body and no
    // handler does; the route groups' own limit (`http::body::limit`) answers 413 for every
    // route, naming the setting.
    let big = vec![b'x'; 4096];
    let r = raw(
        port,
        "POST",
        "/api/nodes/n1/start",
        &[("Authorization", &auth)],
        &big,
    );
    assert_eq!(
        r.status, 413,
        "4096-byte body with a 1024-byte limit: {r:?}"
    );
    assert_error(&r, 413, "TOO_LARGE", "4096-byte body");
    assert!(
        r.body.contains("api.body_limit_bytes (1024 bytes)"),
        "the refusal names the limit: {}",
        r.body
    );
    assert!(ping(c.redis_ports[0]));
}

/// The sample lines (not comments) of a metrics text.
fn samples(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    samples(text)
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_are_valid_prometheus_text() {
    let c = NodeCluster::start("api-metrics", 3, FAST);
    c.await_all_alive(WAIT);
    let mut n1 = c.redis(0);
    for i in 0..5 {
        wait_for("RC.SET through n1", WAIT, || {
            set(&mut n1, &format!("m{i}"), "v", "2").ok()
        });
    }
    let body = wait_for("a /metrics scrape with heartbeat round trips", WAIT, || {
        let r = c.http(0, "GET", "/metrics", None);
        assert_eq!(r.status, 200, "{r:?}");
        let ok = r.body.contains("rcluster_heartbeat_rtt_seconds_bucket");
        ok.then_some(r.body)
    });
    for name in [
        "rcluster_heartbeats_sent_total",
        "rcluster_heartbeat_rtt_seconds",
        "rcluster_peer_state",
        "rcluster_time_drift_seconds",
        "rcluster_redis_up",
        "rcluster_process_resident_memory_bytes",
        "rcluster_module_held",
    ] {
        assert!(
            samples(&body).any(|l| l.starts_with(name)),
            "no {name} sample in:\n{body}"
        );
    }
    for line in samples(&body) {
        assert!(
            line.contains("node=\"n1\""),
            "sample without node=\"n1\": {line}"
        );
    }
    assert_eq!(sample(&body, "rcluster_redis_up"), Some(1.0), "{body}");
    let quorum_ok = sample(
        &body,
        "rcluster_rc_request_duration_seconds_count{command=\"RC.SET\",outcome=\"ok\"",
    );
    assert!(
        quorum_ok.is_some_and(|v| v >= 5.0),
        "quorum_set ok {quorum_ok:?} after 5 RC.SETs:\n{body}"
    );

    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("promtool is not installed: run ./rc.sh deps (installs the prometheus package)")
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // promtool exits 1 on a parse error, 3 on lint problems (e.g. names with unit abbreviations).
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\nmetrics:\n{body}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn status_command_prints_the_cluster() {
    let c = NodeCluster::start("api-status", 3, FAST);
    c.await_all_alive(WAIT);
    let config = c.config_path();
    let config = config.to_str().unwrap();
    let dir = c.dir.path();

    let (code, out, err) = rcluster(&["status", "--config", config], dir);
    assert_eq!(code, Some(0), "status failed: {out}{err}");
    let mut lines = out.lines();
    assert!(lines.next().is_some_and(|l| l.contains("n1")), "{out}");
    let header = lines.next().unwrap_or_default();
    assert!(
        header.contains("NODE") && header.contains("STATE") && header.ends_with("EPOCH"),
        "no header: {out}"
    );
    for id in ["n1", "n2", "n3"] {
        let row = out
            .lines()
            .find(|l| l.split_whitespace().next().map(|w| w.trim_end_matches('*')) == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}: {out}"));
        assert!(row.contains("alive"), "{id} not alive: {row}");
    }
    // Last column: the topology epoch each module installed (as its heartbeats tell), with no
    // transition open.
    wait_for("every node on epoch 1", Duration::from_secs(10), || {
        let (_, out, _) = rcluster(&["status", "--config", config], dir);
        let rows: Vec<&str> = out.lines().skip(2).collect();
        (rows.len() == 3
            && rows
                .iter()
                .all(|r| r.split_whitespace().last() == Some("1")))
        .then_some(())
    });

    let (code, out, err) = rcluster(&["status", "--config", config, "--json"], dir);
    assert_eq!(code, Some(0), "status --json failed: {out}{err}");
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(3), "{out}");

    let (code, out, err) = rcluster(
        &[
            "status",
            "--config",
            config,
            "--api-key",
            "wrongwrongwrongwrong",
        ],
        dir,
    );
    assert_eq!(code, Some(2), "wrong key: {out}{err}");
    assert!(
        err.contains("API key"),
        "stderr does not name the key: {err}"
    );

    // n1's node process frozen: its port accepts but never answers; the CLI asks n2.
    let pid = c.node_pid(0) as i32;
    // SAFETY: kill(2) on a process this test started (continued again below and on drop).
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let (code, out, err) = rcluster(&["status", "--config", config, "--json"], dir);
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(code, Some(0), "status with n1 frozen: {out}{err}");
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_ne!(json["observer"], "n1", "{out}");
    assert_eq!(json["nodes"].as_array().map(Vec::len), Some(3), "{out}");
}
