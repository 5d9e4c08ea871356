//! `rcluster up` with three real nodes: it starts every Redis (with the module) and node process,
//! all three Redis ports serve `RC.*` commands, a second launch is refused, a bad config is named,
//! and Ctrl-C or SIGTERM stops everything with no child process left behind.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use rcluster_tests::nodes::{descendants, http, NodeCluster};
use rcluster_tests::{call, module_path, ping, rcluster_bin, wait_for, TempDir};

fn config_get(c: &mut redis::Connection, name: &str) -> String {
    let v: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(c).unwrap();
    v[1].clone()
}

fn maxmemory(c: &mut redis::Connection) -> String {
    config_get(c, "maxmemory")
}

/// Runs `rcluster up` for `cluster`'s config expecting it to refuse: its exit code and stderr.
fn up_once(cluster: &NodeCluster) -> (Option<i32>, String) {
    let out = Command::new(rcluster_bin())
        .args(["up", "--config"])
        .arg(cluster.config_path())
        .arg("--module")
        .arg(module_path())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn up_starts_three_nodes_serves_and_stops_cleanly() {
    let mut cluster = NodeCluster::start("up", 3, "intervals: {anti_entropy_ms: 123000}\n");
    for i in 0..3 {
        let mut c = cluster.redis(i);
        let key = format!("key-on-n{}", i + 1);
        call(
            &mut c,
            &[b"RC.REPLICA.PUT", key.as_bytes(), b"v", b"1", b"n1"],
        )
        .unwrap();
        let info: String = redis::cmd("INFO").arg("rcluster").query(&mut c).unwrap();
        assert!(
            info.contains(&format!("rcluster_node_id:n{}", i + 1)),
            "{info}"
        );
        assert_eq!(maxmemory(&mut c), (64u64 << 20).to_string());
        assert_eq!(
            config_get(&mut c, "rcluster.anti-entropy-interval-ms"),
            "123000"
        );
        let health = http(cluster.http_ports[i], "GET", "/api/health", None);
        assert!(health.body.contains("\"redis_up\":true"), "{}", health.body);
        // The node process reaches its own Redis over a Unix socket in its data folder, which
        // only the owner may open.
        let sock = cluster
            .dir
            .path()
            .join(format!("data/n{}/redis.sock", i + 1));
        let mode = std::fs::metadata(&sock)
            .unwrap_or_else(|e| panic!("{}: {e}", sock.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{}", sock.display());
        wait_for(
            "the node's connection over the socket",
            Duration::from_secs(10),
            || {
                let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
                clients.contains("redis.sock").then_some(())
            },
        );
    }
    // 3 node processes + 3 redis-servers.
    let up_pid = cluster.up.as_ref().unwrap().id();
    assert_eq!(descendants(up_pid).len(), 6);

    // A second launch of the same cluster is refused with a clear message, and harms nothing.
    let (code, err) = up_once(&cluster);
    assert_eq!(code, Some(2));
    assert!(err.contains("already running"), "{err}");
    assert!(ping(cluster.redis_ports[0]));

    assert!(cluster.stop(libc::SIGTERM).success());
    for port in &cluster.redis_ports {
        assert!(!ping(*port), "redis on {port} still answers");
    }
    // Data written before the stop is still there after a restart (AOF), then Ctrl-C stops it.
    // This time in low-resource mode: each Redis gets half the memory cap.
    cluster.launch(&["--low-resource"]);
    let mut c = cluster.redis(1);
    assert_eq!(maxmemory(&mut c), (32u64 << 20).to_string());
    let got = call(&mut c, &[b"RC.REPLICA.GET", b"key-on-n2"]).unwrap();
    assert!(
        matches!(got, redis::Value::Array(ref v) if v[0] == redis::Value::BulkString(b"v".to_vec())),
        "{got:?}"
    );
    assert!(cluster.stop(libc::SIGINT).success());
}

#[test]
fn another_program_on_a_port_is_named() {
    let cluster = NodeCluster::configure("up-busy", 3, "");
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", cluster.http_ports[1])).unwrap();
    let (code, err) = up_once(&cluster);
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!("port {} (n2 http_port)", cluster.http_ports[1])),
        "{err}"
    );
}

#[test]
fn bad_config_is_refused_with_the_problem_named() {
    let tmp = TempDir::new("badcfg");
    let cases = [
        ("cluster_name: x\nnodes: []\n", "no nodes"),
        ("cluster_name: x\nbogus: 1\nnodes: []\n", "unknown field `bogus`"),
        (
            "cluster_name: x\nquorum: {n: 3, w: 4, r: 2}\nnodes:\n  - {id: a, redis_port: 1, http_port: 2, peer_port: 3}\n  - {id: b, redis_port: 4, http_port: 5, peer_port: 6}\n  - {id: c, redis_port: 7, http_port: 8, peer_port: 9}\n",
            "w=4 is greater than n=3",
        ),
        (
            "cluster_name: x\nnodes:\n  - {id: a, redis_port: 1, http_port: 2, peer_port: 3}\n  - {id: a, redis_port: 4, http_port: 5, peer_port: 6}\n",
            "duplicate node id",
        ),
        (
            "cluster_name: x\nquorum: {n: 1, w: 1, r: 1}\nchunk_size_bytes: 100\nnodes:\n  - {id: a, redis_port: 1, http_port: 2, peer_port: 3}\n",
            "chunk_size_bytes 100 is out of range",
        ),
        (
            "cluster_name: x\nquorum: {n: 1, w: 1, r: 1}\napi: {keys: [{name: k, key: short, role: admin}]}\nnodes:\n  - {id: a, redis_port: 1, http_port: 2, peer_port: 3}\n",
            "api.keys",
        ),
    ];
    for (yaml, needle) in cases {
        let path = tmp.path().join("bad.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(rcluster_bin())
            .args(["up", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{yaml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "expected '{needle}' in: {err}");
    }
    let out = Command::new(rcluster_bin())
        .args(["up", "--config", "/nonexistent.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config /nonexistent.yaml"));
}
