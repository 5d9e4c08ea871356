//! Adding and removing nodes on a real running cluster: a 3-node cluster holding 10,000 keys and
//! 20 MiB of files gets a fourth node through `rcluster node add`, then loses one through
//! `DELETE /api/nodes/{id}`, while a client keeps writing and reading with W=2, R=2. No request
//! may fail, and afterwards every register and chunk is on exactly its preference nodes among
//! the members, checked key by key; the node that left holds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rcluster_domain::checksum::sha256_hex;
use rcluster_tests::nodes::{
    download, http, http_json, rcluster, upload, NodeCluster, ADMIN_KEY, READ_KEY,
};
use rcluster_tests::{info_number, module_path, pseudo_random, wait_for};

const KEYS: usize = 10_000;
const FILES: usize = 4;
const FILE_BYTES: usize = 5 << 20;
const LOAD_KEYS: u64 = 200;

fn connect(port: u16) -> redis::Connection {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .expect("url")
        .get_connection_with_timeout(Duration::from_secs(5))
        .expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    c
}

/// What the client saw while the membership changed.
#[derive(Debug, Default)]
struct LoadReport {
    writes: u64,
    reads: u64,
    failures: Vec<String>,
}

struct Load {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<LoadReport>,
}

/// A client that writes `load:<j>` (one writer, so the newest value is known) and reads it and
/// the preloaded keys back, each through a different node, with W=2 and R=2.
fn start_load(ports: Vec<u16>, seed: u64) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut conns: Vec<redis::Connection> = ports.iter().map(|p| connect(*p)).collect();
        let mut report = LoadReport::default();
        let mut last: BTreeMap<u64, u64> = BTreeMap::new();
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut seq = 0u64;
        while !flag.load(Ordering::Relaxed) {
            seq += 1;
            let j = next() % LOAD_KEYS;
            let node = (next() % conns.len() as u64) as usize;
            let key = format!("load:{j}");
            let wrote: redis::RedisResult<String> = redis::cmd("RC.SET")
                .arg(&key)
                .arg(seq)
                .arg("W")
                .arg(2)
                .query(&mut conns[node]);
            match wrote {
                Ok(_) => {
                    last.insert(j, seq);
                    report.writes += 1;
                }
                Err(e) => report
                    .failures
                    .push(format!("RC.SET {key} on #{node}: {e}")),
            }
            // Read a written load key and a preloaded key through another node.
            let other = (node + 1) % conns.len();
            let j = next() % LOAD_KEYS;
            let want = last.get(&j).map(|v| v.to_string());
            let i = next() % KEYS as u64;
            for (key, want) in [
                (format!("load:{j}"), want),
                (format!("k{i}"), Some(format!("v{i}"))),
            ] {
                let Some(want) = want else { continue };
                let got: redis::RedisResult<Option<String>> = redis::cmd("RC.GET")
                    .arg(&key)
                    .arg("R")
                    .arg(2)
                    .query(&mut conns[other]);
                report.reads += 1;
                match got {
                    Ok(Some(v)) if v == want => {}
                    other_answer => report.failures.push(format!(
                        "RC.GET {key} on #{other}: {other_answer:?}, expected {want}"
                    )),
                }
            }
        }
        report
    });
    Load { stop, thread }
}

impl Load {
    fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("load thread")
    }
}

/// Writes `k<i>` = `v<i>` for i < `count` through the Redis at `port`, 1,000 per pipeline.
fn preload(port: u16, count: usize) {
    let mut c = connect(port);
    for start in (0..count).step_by(1000) {
        let mut pipe = redis::pipe();
        for k in start..(start + 1000).min(count) {
            pipe.cmd("RC.SET")
                .arg(format!("k{k}"))
                .arg(format!("v{k}"))
                .ignore();
        }
        let () = pipe.query(&mut c).expect("preload");
    }
}

/// Waits until [`misplaced`] finds nothing wrong among `members`.
fn await_placed(cluster: &NodeCluster, members: &[usize], what: &str, timeout: Duration) {
    wait_for(what, timeout, || {
        misplaced(cluster, members).is_none().then_some(())
    });
}

/// Ends a membership change made under `load`: waits until every copy is in place among
/// `members`, stops the client, prints how long `what` took and what the client did, and
/// checks that none of its requests failed.
fn settled(
    cluster: &NodeCluster,
    members: &[usize],
    load: Load,
    started: std::time::Instant,
    what: &str,
) -> LoadReport {
    await_placed(
        cluster,
        members,
        &format!("every key and chunk on exactly its preference nodes after {what}"),
        Duration::from_secs(120),
    );
    eprintln!("{what}: every copy in place after {:?}", started.elapsed());
    let report = load.finish();
    eprintln!(
        "client during {what}: {} writes, {} reads",
        report.writes, report.reads
    );
    assert!(report.failures.is_empty(), "failed: {:?}", report.failures);
    report
}

/// Every key matching `pattern` on a node's Redis.
fn scan(c: &mut redis::Connection, pattern: &str) -> Vec<String> {
    let iter: redis::Iter<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(c)
        .expect("scan");
    iter.collect()
}

/// Whether every register and chunk held by `members` is held by exactly its preference nodes
/// (as `RC.LOCATE` on the first member says); returns what is wrong, if anything.
fn misplaced(cluster: &NodeCluster, members: &[usize]) -> Option<String> {
    // ring key -> nodes holding it
    let mut holders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for &i in members {
        let mut c = connect(cluster.redis_ports[i]);
        for k in scan(&mut c, "kv:*") {
            let ring_key = k["kv:".len()..].to_string();
            holders
                .entry(ring_key)
                .or_default()
                .insert(cluster.ids[i].clone());
        }
        for k in scan(&mut c, "chunk:*") {
            // chunk:<file>:<index> is placed by "<file>:<index>"; skip the per-file index hash.
            let rest = &k["chunk:".len()..];
            if rest.matches(':').count() == 1 {
                holders
                    .entry(rest.to_string())
                    .or_default()
                    .insert(cluster.ids[i].clone());
            }
        }
    }
    let mut c = connect(cluster.redis_ports[members[0]]);
    let keys: Vec<&String> = holders.keys().collect();
    for batch in keys.chunks(2000) {
        let mut pipe = redis::pipe();
        for k in batch {
            pipe.cmd("RC.LOCATE").arg(k.as_str());
        }
        let lists: Vec<Vec<Vec<String>>> = pipe.query(&mut c).expect("RC.LOCATE");
        for (k, list) in batch.iter().zip(lists) {
            let want: BTreeSet<String> = list.iter().map(|e| e[0].clone()).collect();
            let have = &holders[*k];
            if *have != want {
                return Some(format!("{k} is on {have:?}, should be on {want:?}"));
            }
        }
    }
    None
}

/// Every preloaded key through every member, and every file through the last member.
fn check_everything(cluster: &NodeCluster, members: &[usize], files: &[(String, String)]) {
    for &i in members {
        let mut c = connect(cluster.redis_ports[i]);
        for start in (0..KEYS).step_by(1000) {
            let mut pipe = redis::pipe();
            for k in start..start + 1000 {
                pipe.cmd("RC.GET").arg(format!("k{k}")).arg("R").arg(2);
            }
            let values: Vec<Option<String>> = pipe.query(&mut c).expect("RC.GET");
            for (k, v) in (start..).zip(values) {
                assert_eq!(
                    v.as_deref(),
                    Some(format!("v{k}").as_str()),
                    "k{k} through {}",
                    cluster.ids[i]
                );
            }
        }
    }
    let last = *members.last().expect("members");
    for (id, sha) in files {
        let (status, _, body) = download(cluster, last, id, None);
        assert_eq!(status, 200);
        assert_eq!(
            &sha256_hex(&body),
            sha,
            "file {id} through {}",
            cluster.ids[last]
        );
    }
}

fn held(cluster: &NodeCluster, i: usize) -> (i64, i64) {
    let h = http(cluster.http_ports[i], "GET", "/api/health", None).json();
    (
        h["kv_keys"].as_i64().expect("kv_keys"),
        h["chunks"].as_i64().expect("chunks"),
    )
}

/// `rcluster node add` for the reserved node `i` on its reserved ports.
fn add_node(cluster: &NodeCluster, i: usize, extra: &[&str]) -> (Option<i32>, String, String) {
    let config = cluster.config_path().display().to_string();
    let module = module_path().display().to_string();
    let ports = [
        cluster.redis_ports[i].to_string(),
        cluster.http_ports[i].to_string(),
        cluster.peer_ports[i].to_string(),
    ];
    let mut args = vec![
        "node",
        "add",
        &cluster.ids[i],
        "--config",
        &config,
        "--module",
        &module,
        "--redis-port",
        &ports[0],
        "--http-port",
        &ports[1],
        "--peer-port",
        &ports[2],
    ];
    args.extend_from_slice(extra);
    rcluster(&args, cluster.dir.path())
}

#[test]
fn a_node_joins_and_a_node_leaves_under_load_without_a_failed_request_or_a_lost_key() {
    let mut cluster = NodeCluster::start("membership", 3, "");
    let ports = cluster.redis_ports.clone();

    // 10,000 keys and 20 MiB of files.
    preload(ports[0], KEYS);
    let files: Vec<(String, String)> = (0..FILES)
        .map(|f| {
            let body = pseudo_random(FILE_BYTES, 7 + f as u64);
            let meta = upload(&cluster, f % 3, &format!("f{f}.bin"), &body);
            (
                meta["id"].as_str().expect("id").to_string(),
                sha256_hex(&body),
            )
        })
        .collect();

    // A fourth node through the CLI, which starts it, has it admitted and follows the move.
    let load = start_load(vec![ports[0], ports[1], ports[2]], 11);
    let n4 = cluster.reserve_node();
    let started = std::time::Instant::now();
    let (code, out, err) = add_node(&cluster, n4, &["--timeout-s", "120"]);
    assert_eq!(code, Some(0), "node add failed:\n{out}\n{err}");
    assert!(err.contains("n4 admitted by leader"), "{err}");
    let all = [0, 1, 2, n4];
    let report = settled(&cluster, &all, load, started, "n4 joining");
    assert!(report.writes > 100, "the client kept writing: {report:?}");
    let (kv, chunks) = held(&cluster, n4);
    assert!(
        kv > 1000 && chunks > 0,
        "n4 holds {kv} registers, {chunks} chunks"
    );
    check_everything(&cluster, &all, &files);
    for i in all {
        let view = cluster.cluster_view(i).expect("view");
        let voters = view["raft"]["voters"].as_array().expect("voters").len();
        assert_eq!(voters, 4, "{}: {view}", cluster.ids[i]);
    }

    // n2 leaves through the API of n4 (forwarded to the leader if n4 does not lead).
    let events = cluster.subscribe_events(0);
    let started = std::time::Instant::now();
    let load = start_load(vec![ports[0], ports[2], cluster.redis_ports[n4]], 13);
    let answer = http_json(
        cluster.http_ports[n4],
        "DELETE",
        "/api/nodes/n2",
        Some(ADMIN_KEY),
        "",
    )
    .expect("answer");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let members = [0, 2, n4];
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let last = held(&cluster, 1);
        if last == (0, 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "n2 still holds {last:?} (registers, chunks); its view: {:?}",
            cluster.cluster_view(1)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    settled(&cluster, &members, load, started, "n2 leaving");
    check_everything(&cluster, &members, &files);
    let health = http(cluster.http_ports[1], "GET", "/api/health", None).json();
    assert_eq!(health["member"], false, "{health}");
    let view = cluster.cluster_view(0).expect("view");
    let ids: Vec<&str> = view["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert_eq!(ids, ["n1", "n3", "n4"]);

    // The move is visible in the events and the metrics.
    let seen: Vec<serde_json::Value> = events.try_iter().collect();
    assert!(
        seen.iter().any(|e| e["type"] == "rebalance"),
        "no rebalance event in {seen:?}"
    );
    // Copies moved, summed over the nodes (a node may lose every race to the other old owners).
    let moved: f64 = [0, 2, n4]
        .iter()
        .map(|i| {
            let metrics = http(cluster.http_ports[*i], "GET", "/metrics", Some(READ_KEY)).body;
            metrics
                .lines()
                .find_map(|l| l.strip_prefix("rcluster_rebalance_keys_moved_total{"))
                .and_then(|l| l.split_once('}'))
                .and_then(|(_, v)| v.trim().parse::<f64>().ok())
                .expect("rcluster_rebalance_keys_moved_total in /metrics")
        })
        .sum();
    assert!(moved > 0.0, "no copies moved");

    // The next `rcluster up` starts n1, n3 and n4 (saved by `node add`) but not n2, which left.
    assert!(cluster.dir.path().join("data/n2/left").exists());
    cluster.stop(libc::SIGTERM);
    cluster.launch(&[]);
    assert!(
        rcluster_tests::nodes::http_try(cluster.http_ports[1], "GET", "/api/health", None)
            .is_none(),
        "n2 was started again"
    );
    let view = cluster.cluster_view(n4).expect("n4 answers");
    assert_eq!(view["nodes"].as_array().expect("nodes").len(), 3, "{view}");
    check_everything(&cluster, &members, &files);
    cluster.stop(libc::SIGTERM);
}

/// A port where another cluster's node answers its health check (once).
fn stranger() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = r#"{"node":"n9","cluster":"another","redis_port":1}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn bad_membership_requests_get_a_clear_error_and_change_nothing() {
    let cluster = NodeCluster::start("membership-bad", 3, "");
    let port = cluster.http_ports[0];
    let add = |key: &str, body: &str| {
        http_json(port, "POST", "/api/nodes", Some(key), body).expect("answer")
    };
    let ok_shape = r#"{"id":"n9","redis_port":1,"http_port":2,"peer_port":3}"#;
    let cases = [
        (READ_KEY, ok_shape, 403, "FORBIDDEN"),
        (ADMIN_KEY, r#"{"id":"n9"}"#, 422, ""),
        (
            ADMIN_KEY,
            r#"{"id":"N 9!","redis_port":1,"http_port":2,"peer_port":3}"#,
            400,
            "BAD_NODE",
        ),
        (
            ADMIN_KEY,
            r#"{"id":"n9","redis_port":0,"http_port":2,"peer_port":3}"#,
            400,
            "BAD_NODE",
        ),
        // n9 on n1's own ports.
        (
            ADMIN_KEY,
            &format!(
                r#"{{"id":"n9","redis_port":{},"http_port":{},"peer_port":{}}}"#,
                cluster.redis_ports[0], cluster.http_ports[0], cluster.peer_ports[0]
            ),
            400,
            "BAD_NODE",
        ),
        // Nothing runs there.
        (ADMIN_KEY, ok_shape, 409, "NODE_NOT_RUNNING"),
        // Something else answers there.
        (
            ADMIN_KEY,
            &format!(
                r#"{{"id":"n9","redis_port":{},"http_port":{},"peer_port":{}}}"#,
                rcluster_tests::free_port(),
                stranger(),
                rcluster_tests::free_port()
            ),
            409,
            "NODE_MISMATCH",
        ),
        (
            ADMIN_KEY,
            &format!(
                r#"{{"id":"n2","redis_port":{},"http_port":{},"peer_port":{}}}"#,
                rcluster_tests::free_port(),
                rcluster_tests::free_port(),
                rcluster_tests::free_port()
            ),
            409,
            "ALREADY_MEMBER",
        ),
    ];
    for (key, body, status, code) in cases {
        let answer = add(key, body);
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        assert!(answer.body.contains(code), "{body}: {}", answer.body);
        assert!(answer.body.contains("\"message\""), "{}", answer.body);
    }
    let delete = |key: &str, id: &str| {
        http_json(port, "DELETE", &format!("/api/nodes/{id}"), Some(key), "").expect("answer")
    };
    let answer = delete(READ_KEY, "n2");
    assert_eq!(answer.status, 403, "{}", answer.body);
    let answer = delete(ADMIN_KEY, "n7");
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(answer.body.contains("NOT_A_MEMBER"), "{}", answer.body);
    // Three nodes keep three copies: none may leave.
    let answer = delete(ADMIN_KEY, "n2");
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert!(answer.body.contains("TOO_FEW_NODES"), "{}", answer.body);

    // The CLI names the problem too, with exit code 2 for refused input.
    let config = cluster.config_path().display().to_string();
    let (code, _, err) = rcluster(
        &["node", "remove", "n2", "--config", &config],
        cluster.dir.path(),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("TOO_FEW_NODES"), "{err}");
    let (code, _, err) = rcluster(
        &["node", "add", "n1", "--config", &config, "--no-start"],
        cluster.dir.path(),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("already a member"), "{err}");

    // A node that cannot start (n1's Redis port) is reported with its output and left behind
    // neither as a process nor as a member.
    let module = module_path().display().to_string();
    let taken = cluster.redis_ports[0].to_string();
    let (code, _, err) = rcluster(
        &[
            "node",
            "add",
            "n9",
            "--config",
            &config,
            "--module",
            &module,
            "--redis-port",
            &taken,
        ],
        cluster.dir.path(),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("n9 exited") && err.contains(&taken), "{err}");
    assert!(!cluster.dir.path().join("data/n9/node.pid").exists());

    // Nothing changed: three members, three voters, on every node.
    for i in 0..3 {
        let view = cluster.cluster_view(i).expect("view");
        assert_eq!(view["nodes"].as_array().expect("nodes").len(), 3, "{view}");
        assert_eq!(view["raft"]["voters"].as_array().expect("v").len(), 3);
    }
}

#[test]
fn a_node_added_here_stops_and_starts_again_with_the_launcher() {
    let mut cluster = NodeCluster::start("membership-up", 3, "");
    preload(cluster.redis_ports[0], 300);
    let n4 = cluster.reserve_node();
    let (code, out, err) = add_node(&cluster, n4, &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let pid_file = cluster.dir.path().join("data/n4/node.pid");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    wait_for("n4 to hold data", Duration::from_secs(30), || {
        (held(&cluster, n4).0 > 0).then_some(())
    });
    let before = held(&cluster, n4).0;

    // Ctrl-C on the launcher stops n4 too.
    let redis_of_n4 = rcluster_tests::nodes::descendants(pid);
    cluster.stop(libc::SIGINT);
    wait_for("n4 and its Redis to stop", Duration::from_secs(30), || {
        let left = std::iter::once(pid)
            .chain(redis_of_n4.iter().copied())
            .any(rcluster_tests::nodes::alive);
        (!left).then_some(())
    });

    // The next `rcluster up` starts n4 again (its ports saved in data/n4/member.json), with its
    // data, as a member of the four.
    cluster.launch(&[]);
    assert_eq!(held(&cluster, n4).0, before);
    for i in [0, n4] {
        wait_for("four voters", Duration::from_secs(30), || {
            let v = cluster.cluster_view(i)?;
            (v["raft"]["voters"].as_array()?.len() == 4 && v["nodes"].as_array()?.len() == 4)
                .then_some(())
        });
    }
    let got: String = redis::cmd("RC.GET")
        .arg("k7")
        .query(&mut connect(cluster.redis_ports[n4]))
        .expect("RC.GET through n4");
    assert_eq!(got, "v7");
    cluster.stop(libc::SIGTERM);
}

#[test]
fn ring_and_chunk_size_changes_go_through_raft_move_the_data_and_survive_a_restart() {
    let mut cluster = NodeCluster::start("settings", 4, "");
    let all = [0, 1, 2, 3];
    preload(cluster.redis_ports[0], 2000);
    let body = pseudo_random(3 << 20, 5);
    let old = upload(&cluster, 0, "old.bin", &body);
    await_placed(
        &cluster,
        &all,
        "the preload placed",
        Duration::from_secs(30),
    );

    // Refused: nothing to change, out of range, a read key.
    let put = |key: &str, json: &str| {
        http_json(
            cluster.http_ports[1],
            "PUT",
            "/api/cluster/settings",
            Some(key),
            json,
        )
        .expect("answer")
    };
    for (key, json, status) in [
        (ADMIN_KEY, "{}", 400),
        (ADMIN_KEY, r#"{"vnodes":0}"#, 400),
        (ADMIN_KEY, r#"{"chunk_size_bytes":1000}"#, 400),
        (READ_KEY, r#"{"vnodes":1}"#, 403),
    ] {
        let answer = put(key, json);
        assert_eq!(answer.status, status, "{json}: {}", answer.body);
    }

    // One virtual node per node and 2 MiB chunks, through a node that may not lead.
    let answer = put(ADMIN_KEY, r#"{"vnodes":1,"chunk_size_bytes":2097152}"#);
    assert_eq!(answer.status, 200, "{}", answer.body);
    for i in all {
        wait_for(
            "every module on one virtual node",
            Duration::from_secs(10),
            || {
                let json: String = redis::cmd("RC.CLUSTER.GET")
                    .query(&mut connect(cluster.redis_ports[i]))
                    .ok()?;
                let topology: serde_json::Value = serde_json::from_str(&json).ok()?;
                (topology["vnodes"] == 1).then_some(())
            },
        );
    }
    await_placed(
        &cluster,
        &all,
        "every key and chunk on its preference nodes of the new ring",
        Duration::from_secs(60),
    );
    let mut c = connect(cluster.redis_ports[3]);
    for k in (0..2000).step_by(97) {
        let v: String = redis::cmd("RC.GET")
            .arg(format!("k{k}"))
            .query(&mut c)
            .expect("RC.GET");
        assert_eq!(v, format!("v{k}"));
    }
    let old_id = old["id"].as_str().expect("id");
    let (status, _, got) = download(&cluster, 2, old_id, None);
    assert_eq!(status, 200);
    assert_eq!(
        sha256_hex(&got),
        sha256_hex(&body),
        "the old file, cut in 1 MiB chunks"
    );
    let new = upload(&cluster, 1, "new.bin", &pseudo_random(5 << 20, 6));
    assert_eq!(new["chunk_size"], 2 << 20, "{new}");
    assert_eq!(new["chunk_count"], 3, "{new}");

    // The whole cluster restarts with what Raft committed, not the config file's values.
    cluster.stop(libc::SIGTERM);
    cluster.launch(&[]);
    for i in all {
        wait_for(
            "the settings after a restart",
            Duration::from_secs(30),
            || {
                let view = cluster.cluster_view(i)?;
                (view["vnodes"] == 1 && view["chunk_size_bytes"] == 2 << 20).then_some(())
            },
        );
    }
    cluster.stop(libc::SIGTERM);
}

#[test]
fn a_dead_node_is_removed_and_its_copies_are_recreated_from_the_others() {
    let mut cluster = NodeCluster::start("membership-dead", 4, "");
    preload(cluster.redis_ports[0], 2000);
    await_placed(
        &cluster,
        &[0, 1, 2, 3],
        "the preload placed",
        Duration::from_secs(30),
    );
    let (held_by_n4, _) = held(&cluster, 3);
    assert!(held_by_n4 > 0);

    // n4 dies (node process and Redis) and cannot hand anything over; it is removed anyway.
    cluster.kill_node(3);
    // n4 may have led Raft: nothing commits until the others elect a leader among themselves.
    wait_for(
        "n1, n2 and n3 to agree on a leader other than n4",
        Duration::from_secs(10),
        || {
            let leaders = (0..3)
                .map(|i| {
                    cluster.cluster_view(i)?["raft"]["leader"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect::<Option<Vec<String>>>()?;
            (leaders.iter().all(|l| *l == leaders[0]) && leaders[0] != "n4").then_some(())
        },
    );
    let answer = http_json(
        cluster.http_ports[0],
        "DELETE",
        "/api/nodes/n4",
        Some(ADMIN_KEY),
        "",
    )
    .expect("answer");
    assert_eq!(answer.status, 200, "{}", answer.body);
    // With three members left and N=3 every member holds every key again: the copies n4 had
    // were written again from the other replicas.
    await_placed(
        &cluster,
        &[0, 1, 2],
        "every key on exactly its preference nodes among the three left",
        Duration::from_secs(60),
    );
    for i in 0..3 {
        assert_eq!(held(&cluster, i).0, 2000, "{}", cluster.ids[i]);
        let view = cluster.cluster_view(i).expect("view");
        assert_eq!(view["raft"]["voters"].as_array().expect("voters").len(), 3);
    }
    let mut c = connect(cluster.redis_ports[2]);
    for k in (0..2000).step_by(13) {
        let v: String = redis::cmd("RC.GET")
            .arg(format!("k{k}"))
            .query(&mut c)
            .expect("RC.GET");
        assert_eq!(v, format!("v{k}"));
    }
}

/// SIGCONTs a process when dropped (a failing test must not leave it stopped).
struct Frozen(u32);

impl Frozen {
    fn new(pid: u32) -> Frozen {
        // SAFETY: kill(2) on a process this test's cluster started.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

/// `INFO rcluster` field `name` of node `i`'s module.
fn module_info(cluster: &NodeCluster, i: usize, name: &str) -> i64 {
    info_number(&mut connect(cluster.redis_ports[i]), name)
}

#[test]
fn a_change_of_placement_stays_joint_until_every_member_installed_it() {
    let mut cluster = NodeCluster::start("transition", 3, "");
    let before = module_info(&cluster, 0, "topology_epoch");
    // A follower's node process stops (the leader must stay to commit the change): its module
    // keeps the current topology.
    let leader = cluster.await_leader(&[0, 1, 2], Duration::from_secs(30));
    let lag = (0..3)
        .find(|i| cluster.ids[*i] != leader)
        .expect("a follower");
    let others: Vec<usize> = (0..3).filter(|i| *i != lag).collect();
    let frozen = Frozen::new(cluster.node_pid(lag));
    let answer = http_json(
        cluster.http_ports[others[0]],
        "PUT",
        "/api/cluster/settings",
        Some(ADMIN_KEY),
        r#"{"vnodes":1}"#,
    )
    .expect("answer");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let changed = wait_for(
        "the others on the new ring",
        Duration::from_secs(20),
        || {
            let epochs: Vec<i64> = others
                .iter()
                .map(|i| module_info(&cluster, *i, "topology_epoch"))
                .collect();
            epochs.iter().all(|e| *e > before).then_some(epochs[0])
        },
    );
    assert_eq!(module_info(&cluster, lag, "topology_epoch"), before);
    // Past the 10 s a timer used to allow, the others still use both rings: the lagging node
    // has not installed the change, and requests through it still place keys on the old ring.
    let opened = std::time::Instant::now();
    while opened.elapsed() < Duration::from_secs(12) {
        for &i in &others {
            assert_eq!(
                module_info(&cluster, i, "transition_open"),
                1,
                "{} after {:?}",
                cluster.ids[i],
                opened.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // It catches up; once every member reports the epoch in its heartbeats, each node ends its
    // transition (after one request timeout).
    drop(frozen);
    wait_for(
        "every node on the new epoch with its transition ended",
        Duration::from_secs(30),
        || {
            (0..3)
                .all(|i| {
                    module_info(&cluster, i, "topology_epoch") == changed
                        && module_info(&cluster, i, "transition_open") == 0
                })
                .then_some(())
        },
    );
    cluster.stop(libc::SIGTERM);
}
