//! The node process's defences, with real node processes: it refuses to start beyond loopback
//! with development defaults (and says what to change), warns about them on loopback, logs
//! every line with a timestamp and a level, runs with a password on its Redis's default user,
//! and bounds downloads: a cap on how many run at once, and a client that stops reading has its
//! connection cut and its slot freed.

use std::io::{Read, Write};
use std::time::Duration;

use rcluster_tests::nodes::{download, http_raw, upload, NodeCluster, ADMIN_KEY, READ_KEY};
use rcluster_tests::{free_port, module_path, rcluster_bin, repo_root, wait_for, TempDir};

/// Is `line` `<RFC 3339 UTC timestamp> <LEVEL> ...`?
fn stamped(line: &str) -> bool {
    let Some((stamp, rest)) = line.split_once(' ') else {
        return false;
    };
    let b = stamp.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let date_time = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && stamp.ends_with('Z');
    let level = rest.trim_start().split(' ').next().unwrap_or_default();
    date_time && ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level)
}

#[test]
fn the_stamp_check_tells_stamped_lines() {
    assert!(stamped(
        "2026-12-06T04:07:26.123456Z  INFO node=n1: http on 127.0.0.1:8080"
    ));
    assert!(stamped("2026-12-06T04:07:26Z WARN x"));
    assert!(!stamped("node n1: http on 127.0.0.1:8080"));
    assert!(!stamped("2026-12-06 04:07:26 INFO x"));
    assert!(!stamped("2026-12-06T04:07:26.1Z LOUD x"));
}

#[test]
fn a_node_logs_stamped_lines_and_warns_about_development_keys() {
    let cluster = NodeCluster::start("harden-log", 1, "");
    let log_path = cluster.dir.path().join("data/n1/node.log");
    let log = wait_for(
        "the node to log that it serves",
        Duration::from_secs(10),
        || {
            let log = std::fs::read_to_string(&log_path).ok()?;
            log.contains("http on").then_some(log)
        },
    );
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        assert!(stamped(line), "not stamped: {line:?} in\n{log}");
    }
    // The demo config starts, and says it accepts the development keys.
    let warning = lines
        .iter()
        .find(|l| l.contains("development key"))
        .unwrap_or_else(|| panic!("no development key warning in\n{log}"));
    assert!(warning.contains(" WARN "), "{warning}");
    assert!(warning.contains("dev-admin, dev-read"), "{warning}");
    // The level comes from the config: debug lines appear only when asked for.
    assert!(!log.contains(" DEBUG "), "{log}");
}

/// A config for one node on `host`, with `extra` top-level settings.
fn one_node_config(dir: &TempDir, host: &str, extra: &str) -> std::path::PathBuf {
    let (r, h, p) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "cluster_name: exposed\ndata_dir: data\nredis_conf: {}\nquorum: {{n: 1, w: 1, r: 1}}\n{extra}\nnodes:\n  - {{ id: n1, host: {host}, redis_port: {r}, http_port: {h}, peer_port: {p} }}\n",
        repo_root().join("redis.conf").display()
    );
    let path = dir.path().join("cluster.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

fn run_node(config: &std::path::Path) -> std::process::Output {
    let mut child = std::process::Command::new(rcluster_bin())
        .arg("node")
        .arg("--config")
        .arg(config)
        .args(["--id", "n1"])
        .arg("--module")
        .arg(module_path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start rcluster node");
    // It must refuse at once; one that started is stopped (and the test fails on its output).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

#[test]
fn a_node_beyond_loopback_refuses_development_defaults_before_it_listens() {
    let dir = TempDir::new("harden-exposed");
    let config = one_node_config(&dir, "0.0.0.0", "");
    let out = run_node(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "bad input: {stderr}");
    for needle in [
        "listens on 0.0.0.0, beyond loopback",
        "development key(s) dev-admin, dev-read",
        "api.keys",
        "redis_password is not set",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
    // Nothing was started: no Redis log, no cluster secret.
    assert!(!dir.path().join("data/n1/redis.log").exists());
    assert!(!dir.path().join("data/cluster.secret").exists());

    // With its own keys but still no Redis password: refused, naming only that.
    let config = one_node_config(
        &dir,
        "0.0.0.0",
        "api:\n  keys:\n    - { name: ops, key: ops-key-0123456789abcdef, role: admin }",
    );
    let out = run_node(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("redis_password is not set"), "{stderr}");
    assert!(!stderr.contains("api.keys holds"), "{stderr}");
}

#[test]
fn a_redis_password_closes_the_default_user_and_the_node_still_works() {
    let cluster = NodeCluster::start("harden-pass", 1, "redis_password: test-redis-password-0123");
    // The default user needs the password now.
    let mut plain = cluster.redis(0);
    let refused: redis::RedisResult<String> = redis::cmd("PING").query(&mut plain);
    let e = refused.expect_err("no password, no PING");
    assert!(e.to_string().contains("NOAUTH"), "{e}");
    // The node reaches it: health, a register, a file (chunks over its own connections), the
    // file list (which reads every member's Redis).
    let health = cluster.http(0, "GET", "/api/health", None);
    assert_eq!(health.status, 200, "{health:?}");
    let (status, _, body) = http_raw(
        cluster.http_ports[0],
        "PUT",
        "/api/kv/greeting",
        ADMIN_KEY,
        &[],
        b"hello",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let r = cluster.http(0, "GET", "/api/kv/greeting", Some(READ_KEY));
    assert_eq!(r.status, 200, "{r:?}");
    let data = rcluster_tests::pseudo_random(3 << 20, 7);
    let meta = upload(&cluster, 0, "secret.bin", &data);
    let id = meta["id"].as_str().expect("id").to_string();
    let (status, _, body) = download(&cluster, 0, &id, None);
    assert_eq!(status, 200);
    assert!(body == data, "the file comes back whole");
    let list = cluster.http(0, "GET", "/api/files", Some(READ_KEY)).json();
    assert_eq!(list["files"][0]["id"], id.as_str(), "{list}");
}

fn metric(cluster: &NodeCluster, line_start: &str) -> Option<f64> {
    let text = cluster.http(0, "GET", "/metrics", None).body;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn downloads_are_capped_and_a_stalled_reader_is_cut_and_frees_its_slot() {
    let cluster = NodeCluster::start(
        "harden-dl",
        1,
        "files: {max_concurrent_downloads: 1, download_stall_timeout_ms: 1000}",
    );
    // Larger than what the socket buffers, hyper and the read-ahead hold for a client that
    // never reads.
    let data = rcluster_tests::pseudo_random(40 << 20, 11);
    let meta = upload(&cluster, 0, "big.bin", &data);
    let id = meta["id"].as_str().expect("id").to_string();

    // A client that asks and never reads.
    let mut stalled =
        std::net::TcpStream::connect(("127.0.0.1", cluster.http_ports[0])).expect("connect");
    let request = format!(
        "GET /api/files/{id}/content HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READ_KEY}\r\n\r\n"
    );
    stalled.write_all(request.as_bytes()).expect("send");
    wait_for(
        "the stalled download to take the slot",
        Duration::from_secs(10),
        || (metric(&cluster, "rcluster_downloads_active")? >= 1.0).then_some(()),
    );

    // The one slot is taken: the next download is refused, saying when to come back.
    let (status, head, body) = download(&cluster, 0, &id, None);
    assert_eq!(status, 429, "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("TOO_MANY_DOWNLOADS"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );

    // The server cuts the stalled connection, counts it and frees the slot.
    wait_for(
        "the stalled download to be cut",
        Duration::from_secs(30),
        || {
            (metric(&cluster, "rcluster_download_cuts_total{reason=\"stalled\"")? >= 1.0)
                .then_some(())
        },
    );
    wait_for("the slot to be free", Duration::from_secs(30), || {
        (metric(&cluster, "rcluster_downloads_active")? == 0.0).then_some(())
    });
    let (status, _, body) = download(&cluster, 0, &id, None);
    assert_eq!(status, 200);
    assert!(body == data, "a reading client gets the whole file");
    // What the stalled client got ends early: its connection was closed.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = Vec::new();
    let _ = stalled.read_to_end(&mut got);
    assert!(got.len() < data.len(), "{} bytes", got.len());
}
