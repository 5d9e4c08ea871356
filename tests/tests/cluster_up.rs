//! `rcluster up` with three real nodes: it starts every Redis (with the module) and node process,
//! all three Redis ports serve `RC.*` commands, a second launch is refused, a bad config is named,
//! and Ctrl-C or SIGTERM stops everything with no child process left behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rcluster_tests::{
    call, free_port, module_path, ping, rcluster_bin, repo_root, wait_for, TempDir,
};

struct Cluster {
    dir: TempDir,
    redis_ports: Vec<u16>,
    http_ports: Vec<u16>,
}

fn write_config(tag: &str) -> Cluster {
    let dir = TempDir::new(tag);
    let mut nodes = String::new();
    let (mut redis_ports, mut http_ports) = (Vec::new(), Vec::new());
    for i in 1..=3 {
        let (r, h, p) = (free_port(), free_port(), free_port());
        redis_ports.push(r);
        http_ports.push(h);
        nodes.push_str(&format!(
            "  - {{ id: n{i}, redis_port: {r}, http_port: {h}, peer_port: {p} }}\n"
        ));
    }
    let yaml = format!(
        "cluster_name: test\ndata_dir: data\nredis_conf: {}\nredis_maxmemory_mb: 64\nnodes:\n{nodes}",
        repo_root().join("redis.conf").display()
    );
    std::fs::write(dir.path().join("cluster.yaml"), yaml).unwrap();
    Cluster {
        dir,
        redis_ports,
        http_ports,
    }
}

/// Starts `rcluster up` and returns it once it printed "cluster ready", with its output lines.
fn launch(config: &Path, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(rcluster_bin())
        .arg("up")
        .arg("--config")
        .arg(config)
        .arg("--module")
        .arg(module_path())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains("cluster ready") => break,
            Ok(line) => seen.push(line),
            Err(e) => panic!(
                "rcluster up never became ready ({e}); output:\n{}",
                seen.join("\n")
            ),
        }
    }
    (child, rx)
}

/// Every process whose parent chain leads to `root`.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.to_string()) else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        parent_of.push((pid, ppid));
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; only count processes that are not zombies.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

fn stop_and_check(mut up: Child, signal: i32, cluster: &Cluster) {
    let children = descendants(up.id());
    // 3 node processes + 3 redis-servers.
    assert_eq!(
        children.len(),
        6,
        "expected 3 nodes and 3 redis-servers, found {children:?}"
    );
    unsafe { libc::kill(up.id() as i32, signal) };
    let status = wait_for("rcluster up to exit", Duration::from_secs(60), || {
        up.try_wait().unwrap()
    });
    assert!(status.success(), "up exited with {status}");
    let left: Vec<u32> = children.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    for port in &cluster.redis_ports {
        assert!(!ping(*port), "redis on {port} still answers");
    }
}

#[test]
fn up_starts_three_nodes_serves_and_stops_cleanly() {
    let cluster = write_config("up");
    let config = cluster.dir.path().join("cluster.yaml");
    let (up, _out) = launch(&config, &[]);

    for (i, port) in cluster.redis_ports.iter().enumerate() {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
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
        let maxmemory: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .query(&mut c)
            .unwrap();
        assert_eq!(maxmemory[1], (64u64 << 20).to_string());
    }
    for port in &cluster.http_ports {
        let body = http_get(*port, "/api/health");
        assert!(body.contains("\"redis_up\":true"), "{body}");
    }

    // A second launch of the same cluster is refused with a clear message, and harms nothing.
    let second = Command::new(rcluster_bin())
        .args(["up", "--config"])
        .arg(&config)
        .arg("--module")
        .arg(module_path())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running"), "{err}");
    assert!(ping(cluster.redis_ports[0]));

    stop_and_check(up, libc::SIGTERM, &cluster);
    // Data written before the stop is still there after a restart (AOF), then Ctrl-C stops it.
    // This time in low-resource mode: each Redis gets half the memory cap.
    let (up, _out) = launch(&config, &["--low-resource"]);
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", cluster.redis_ports[1]))
        .unwrap()
        .get_connection()
        .unwrap();
    let maxmemory: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut c)
        .unwrap();
    assert_eq!(maxmemory[1], (32u64 << 20).to_string());
    let got = call(&mut c, &[b"RC.REPLICA.GET", b"key-on-n2"]).unwrap();
    assert!(
        matches!(got, redis::Value::Array(ref v) if v[0] == redis::Value::BulkString(b"v".to_vec())),
        "{got:?}"
    );
    stop_and_check(up, libc::SIGINT, &cluster);
}

#[test]
fn another_program_on_a_port_is_named() {
    let cluster = write_config("up-busy");
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", cluster.http_ports[1])).unwrap();
    let out = Command::new(rcluster_bin())
        .args(["up", "--config"])
        .arg(cluster.dir.path().join("cluster.yaml"))
        .arg("--module")
        .arg(module_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
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

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
