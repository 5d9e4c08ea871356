//! A node whose own Redis is down still serves reads and writes: its API hands data requests to
//! a peer whose Redis is up (the answer names that peer in `X-RC-Served-By`), through curl and
//! through the CLI pointed at that node. Its own row in `/api/nodes` says its Redis is down on the
//! next request after its supervisor saw it, and a new Raft leader shows in `/api/nodes` as soon
//! as `/api/cluster` knows it.

use std::process::Command;
use std::time::{Duration, Instant};

use rcluster_tests::nodes::{NodeCluster, ADMIN_KEY, READ_KEY};
use rcluster_tests::{pseudo_random, wait_for};

/// One answer as curl saw it: status, headers (lowercase names), body.
struct Curl {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Curl {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs curl with `args` against `url` and the key given; panics when curl itself fails.
fn curl(url: &str, key: &str, args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "60", "-H"])
        .arg(format!("Authorization: Bearer {key}"))
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {url} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut raw = out.stdout.as_slice();
    loop {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head");
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        raw = &raw[end + 4..];
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        if status == 100 {
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        return Curl {
            status,
            headers,
            body: raw.to_vec(),
        };
    }
}

fn url(c: &NodeCluster, i: usize, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", c.http_ports[i])
}

fn rcluster(c: &NodeCluster, args: &[&str]) -> (Option<i32>, String, String) {
    let config = c.config_path().display().to_string();
    let mut all = args.to_vec();
    all.extend(["--config", &config]);
    rcluster_tests::nodes::rcluster(&all, c.dir.path())
}

/// Node `i`'s own row in its `/api/nodes`.
fn own_row(c: &NodeCluster, i: usize) -> serde_json::Value {
    let view: serde_json::Value =
        serde_json::from_slice(&curl(&url(c, i, "/api/nodes"), READ_KEY, &[]).body)
            .expect("nodes JSON");
    view["nodes"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["self"] == true)
        .cloned()
        .expect("an own row")
}

/// Kills node `i`'s redis-server with SIGKILL.
fn kill_redis(c: &NodeCluster, i: usize) {
    let pid = c.redis_pid(i);
    // SAFETY: kill(2) on this test's own redis-server.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

#[test]
fn a_node_whose_redis_is_down_hands_data_requests_to_a_peer() {
    // The supervisor does not restart a crashed Redis: n1 stays without storage.
    let c = NodeCluster::start(
        "failover",
        3,
        "supervision: {restart_on_crash: false}\nredis_maxmemory_mb: 256\n",
    );
    c.await_all_alive(Duration::from_secs(20));
    let put = curl(
        &url(&c, 1, "/api/kv/greeting"),
        ADMIN_KEY,
        &["-X", "PUT", "--data-binary", "hello"],
    );
    assert_eq!(put.status, 200, "{}", put.text());
    // Its own node answered: it says so.
    assert_eq!(put.header("x-rc-served-by"), Some("n2"));
    let bytes = pseudo_random(300_000, 14);
    let file = c.dir.path().join("up.bin");
    std::fs::write(&file, &bytes).unwrap();
    let upload = curl(
        &url(&c, 1, "/api/files?name=up.bin"),
        ADMIN_KEY,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", file.display()),
        ],
    );
    assert_eq!(upload.status, 201, "{}", upload.text());
    let meta: serde_json::Value = serde_json::from_slice(&upload.body).unwrap();
    let id = meta["id"].as_str().expect("an id").to_string();

    kill_redis(&c, 0);
    // The supervisor sees it at once (its health says so); the very next /api/nodes says so too.
    wait_for(
        "n1's supervisor to see its Redis gone",
        Duration::from_secs(10),
        || {
            let h = curl(&url(&c, 0, "/api/health"), READ_KEY, &[]);
            let health: serde_json::Value = serde_json::from_slice(&h.body).ok()?;
            (health["redis_state"] != "running").then_some(())
        },
    );
    let row = own_row(&c, 0);
    assert_eq!(row["redis_up"], false, "{row}");
    assert_eq!(row["state"], "down", "{row}");
    assert_ne!(row["redis_state"], "running", "{row}");

    // Reads through n1: served by a peer.
    let got = curl(&url(&c, 0, "/api/kv/greeting"), READ_KEY, &[]);
    assert_eq!((got.status, got.text().as_str()), (200, "hello"));
    let served = got.header("x-rc-served-by").expect("served-by").to_string();
    assert!(served == "n2" || served == "n3", "{served}");
    let download = curl(
        &url(&c, 0, &format!("/api/files/{id}/content")),
        READ_KEY,
        &[],
    );
    assert_eq!(download.status, 200, "{}", download.text());
    assert!(download.body == bytes, "{} bytes back", download.body.len());
    assert_ne!(download.header("x-rc-served-by"), Some("n1"));
    let head = curl(
        &url(&c, 0, &format!("/api/files/{id}/content")),
        READ_KEY,
        &["-I"],
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("300000"));
    let range = curl(
        &url(&c, 0, &format!("/api/files/{id}/content")),
        READ_KEY,
        &["-r", "10-19"],
    );
    assert_eq!(range.status, 206, "{}", range.text());
    assert_eq!(range.body, bytes[10..20]);
    let meta = curl(&url(&c, 0, &format!("/api/files/{id}")), READ_KEY, &[]);
    assert_eq!(meta.status, 200, "{}", meta.text());
    // Writes too, and an error answer comes back as the peer gave it.
    let put = curl(
        &url(&c, 0, "/api/kv/while-down"),
        ADMIN_KEY,
        &["-X", "PUT", "--data-binary", "kept"],
    );
    assert_eq!(put.status, 200, "{}", put.text());
    assert_ne!(put.header("x-rc-served-by"), Some("n1"));
    // An upload through n1 streams to the peer, with its length or in chunks.
    let second = pseudo_random(200_000, 15);
    let file2 = c.dir.path().join("second.bin");
    std::fs::write(&file2, &second).unwrap();
    let data_arg = format!("@{}", file2.display());
    for extra in [&[][..], &["-H", "Transfer-Encoding: chunked"][..]] {
        let mut args = vec![
            "-X",
            "POST",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &data_arg,
        ];
        args.extend_from_slice(extra);
        let up = curl(&url(&c, 0, "/api/files?name=second.bin"), ADMIN_KEY, &args);
        assert_eq!(up.status, 201, "{extra:?}: {}", up.text());
        assert_ne!(up.header("x-rc-served-by"), Some("n1"));
        let meta: serde_json::Value = serde_json::from_slice(&up.body).unwrap();
        let id2 = meta["id"].as_str().expect("an id");
        let back = curl(
            &url(&c, 2, &format!("/api/files/{id2}/content")),
            READ_KEY,
            &[],
        );
        assert!(
            back.body == second,
            "{extra:?}: {} bytes back",
            back.body.len()
        );
    }
    let missing = curl(&url(&c, 0, "/api/kv/never-written"), READ_KEY, &[]);
    assert_eq!(missing.status, 404, "{}", missing.text());
    // The peer checks the key as it would its own callers'.
    let refused = curl(
        &url(&c, 0, "/api/kv/greeting"),
        READ_KEY,
        &["-X", "PUT", "--data-binary", "nope"],
    );
    assert_eq!(refused.status, 403, "{}", refused.text());

    // The CLI pointed at n1 alone: the read succeeds.
    let (code, out, err) = rcluster(&c, &["get", "greeting", "--node", "n1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.trim_end(), "hello");
    let copy = c.dir.path().join("copy.bin");
    let copy_arg = copy.display().to_string();
    let (code, out, err) = rcluster(&c, &["file", "get", &id, "-o", &copy_arg, "--node", "n1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(std::fs::read(&copy).unwrap() == bytes);
    assert_eq!(value_at(&c, 2, "while-down"), "kept");
}

/// What `rcluster get key` answers through node `i`.
fn value_at(c: &NodeCluster, i: usize, key: &str) -> String {
    let id = c.ids[i].clone();
    let (code, out, err) = rcluster(c, &["get", key, "--node", &id]);
    assert_eq!(code, Some(0), "{out}{err}");
    out.trim_end().to_string()
}

#[test]
fn a_new_leader_shows_in_api_nodes_as_soon_as_api_cluster_knows_it() {
    let mut c = NodeCluster::start("failover-leader", 3, "");
    c.await_all_alive(Duration::from_secs(20));
    let leader = c.await_leader(&[0, 1, 2], Duration::from_secs(30));
    let old = c.ids.iter().position(|id| *id == leader).unwrap();
    let observer = (old + 1) % 3;
    c.kill_node(old);
    // Poll /api/cluster on the observer; the first answer naming a new leader is followed at
    // once by /api/nodes, which must name the same one.
    let started = Instant::now();
    let new = loop {
        assert!(started.elapsed() < Duration::from_secs(30), "no new leader");
        let known = c
            .cluster_view(observer)
            .and_then(|v| v["raft"]["leader"].as_str().map(str::to_string));
        match known {
            Some(l) if l != leader => break l,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let view: serde_json::Value =
        serde_json::from_slice(&curl(&url(&c, observer, "/api/nodes"), READ_KEY, &[]).body)
            .unwrap();
    let row = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == new.as_str())
        .cloned()
        .unwrap();
    assert_eq!(row["raft_role"], "leader", "{view}");
    // Its own row is live too: the observer's role and term are its Raft driver's.
    let own = own_row(&c, observer);
    let cluster = c.cluster_view(observer).unwrap();
    assert_eq!(own["raft_role"], cluster["raft"]["role"], "{own} {cluster}");
    assert_eq!(own["raft_term"], cluster["raft"]["term"], "{own} {cluster}");
}
