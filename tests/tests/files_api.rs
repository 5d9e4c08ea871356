//! Files and keys over the HTTP API of a real 3-node cluster: uploads of every awkward size come
//! back byte-identical through every node, a restart of a node's Redis costs no transfer, a node
//! killed during an upload or a download does not stop it, a corrupt replica is read around and repaired, an aborted upload leaves nothing, and
//! bad requests get a clear 4xx.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use rcluster_domain::checksum::sha256_hex;
use rcluster_tests::nodes::{
    download, http, http_raw as request, upload, Http, NodeCluster, ADMIN_KEY, READ_KEY,
};
use rcluster_tests::pseudo_random as data;
use rcluster_tests::{info_number, wait_for};
use serde_json::Value;

const CHUNK: usize = 1 << 20;

/// Chunk keys of file `id` on every node.
fn chunk_keys(cluster: &NodeCluster, id: &str) -> usize {
    (0..3)
        .map(|i| {
            let mut c = cluster.redis(i);
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("chunk:{id}:*"))
                .query(&mut c)
                .unwrap();
            keys.len()
        })
        .sum()
}

#[test]
fn files_of_every_awkward_size_come_back_identical_through_every_node() {
    let cluster = NodeCluster::start("files-sizes", 3, "redis_maxmemory_mb: 1024");
    for (i, len) in [0, 1, CHUNK, CHUNK + 1, 100_000_000]
        .into_iter()
        .enumerate()
    {
        let body = data(len, i as u64 + 7);
        let meta = upload(&cluster, i % 3, &format!("file-{len}.bin"), &body);
        assert_eq!(meta["size"], len as u64);
        assert_eq!(meta["sha256"], sha256_hex(&body));
        assert_eq!(meta["chunk_count"], len.div_ceil(CHUNK) as u64);
        let id = meta["id"].as_str().unwrap().to_string();
        for node in 0..3 {
            let (status, head, got) = download(&cluster, node, &id, None);
            assert_eq!(status, 200, "{head}");
            assert_eq!(got.len(), len, "size through n{}", node + 1);
            assert_eq!(
                sha256_hex(&got),
                sha256_hex(&body),
                "{len} bytes through n{}",
                node + 1
            );
        }
        let listed = http(
            cluster.http_ports[0],
            "GET",
            &format!("/api/files/{id}"),
            Some(READ_KEY),
        )
        .json();
        assert_eq!(listed["name"], format!("file-{len}.bin"));
    }
    // Deleting a file removes its metadata and every copy of its chunks.
    let before = http(
        cluster.http_ports[2],
        "GET",
        "/api/files?limit=1000",
        Some(READ_KEY),
    )
    .json();
    assert_eq!(before["files"].as_array().unwrap().len(), 5);
    let victim = before["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["size"] == CHUNK as u64 + 1)
        .and_then(|f| f["id"].as_str())
        .unwrap()
        .to_string();
    assert_eq!(chunk_keys(&cluster, &victim), 6, "2 chunks on 3 nodes");
    let gone = http(
        cluster.http_ports[1],
        "DELETE",
        &format!("/api/files/{victim}"),
        Some(ADMIN_KEY),
    );
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert_eq!(chunk_keys(&cluster, &victim), 0);
    let all = http(
        cluster.http_ports[2],
        "GET",
        "/api/files?limit=1000",
        Some(READ_KEY),
    )
    .json();
    assert_eq!(all["files"].as_array().unwrap().len(), 4);
    let page = http(
        cluster.http_ports[2],
        "GET",
        "/api/files?limit=2",
        Some(READ_KEY),
    )
    .json();
    assert_eq!(page["files"].as_array().unwrap().len(), 2);
    let after = page["next_after"].as_str().unwrap();
    let rest = http(
        cluster.http_ports[2],
        "GET",
        &format!("/api/files?limit=10&after={after}"),
        Some(READ_KEY),
    )
    .json();
    assert_eq!(rest["files"].as_array().unwrap().len(), 2);
}

#[test]
fn ranges_are_served_from_the_chunks_they_touch() {
    let cluster = NodeCluster::start("files-range", 3, "");
    let body = data(3 * CHUNK + 500, 3);
    let id = upload(&cluster, 0, "r.bin", &body)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cases = [
        ("bytes=0-9", 0, 9),
        ("bytes=1048570-1048590", CHUNK - 6, CHUNK + 14),
        ("bytes=-100", body.len() - 100, body.len() - 1),
        (
            &format!("bytes={}-", 2 * CHUNK + 1)[..],
            2 * CHUNK + 1,
            body.len() - 1,
        ),
    ];
    for (range, a, b) in cases {
        let (status, head, got) = download(&cluster, 1, &id, Some(range));
        assert_eq!(status, 206, "{range}: {head}");
        assert_eq!(got, body[a..=b], "{range}");
        assert!(
            head.contains(&format!("bytes {a}-{b}/{}", body.len())),
            "{head}"
        );
    }
    let (status, head, _) = download(&cluster, 1, &id, Some("bytes=99999999-"));
    assert_eq!(status, 416, "{head}");
}

#[test]
fn transfers_after_a_restart_of_the_nodes_redis_replace_its_dead_connections() {
    let cluster = NodeCluster::start("files-reconnect", 3, "");
    let body = data(3 * CHUNK + 7, 5);
    // Both ways through n2, so n2 keeps connections to its Redis for the next transfers.
    let id = upload(&cluster, 1, "a.bin", &body)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, head, got) = download(&cluster, 1, &id, None);
    assert_eq!((status, got.len()), (200, body.len()), "{head}");
    let before = cluster.redis_pid(1);
    let r = cluster.http(1, "POST", "/api/nodes/n2/restart", Some(ADMIN_KEY));
    assert_eq!(r.status, 200, "{r:?}");
    assert_ne!(cluster.redis_pid(1), before, "a new redis-server");
    // Every connection n2 kept is dead now: the first transfers replace them and succeed.
    let (status, head, got) = download(&cluster, 1, &id, None);
    assert_eq!(status, 200, "{head}");
    assert_eq!(sha256_hex(&got), sha256_hex(&body));
    let again = upload(&cluster, 1, "b.bin", &body);
    assert_eq!(again["sha256"].as_str(), Some(sha256_hex(&body).as_str()));
}

/// The number of chunk reads a node's process has made (`rcluster_chunk_operations_total`).
fn chunk_reads(port: u16) -> Option<f64> {
    let metrics = http(port, "GET", "/metrics", None).body;
    let read = metrics
        .lines()
        .find(|l| l.starts_with("rcluster_chunk_operations_total{op=\"read\""))?;
    read.rsplit(' ').next()?.parse::<f64>().ok()
}

#[test]
fn a_node_killed_during_an_upload_and_a_download_does_not_stop_them() {
    // A killed Redis stays down until started through the API.
    let cluster = NodeCluster::start(
        "files-kill",
        3,
        "redis_maxmemory_mb: 1024\nsupervision: {restart_on_crash: false}",
    );
    let body = data(100_000_000, 11);
    let chunk_count = body.len().div_ceil(CHUNK) as i64;
    let victim = cluster.redis_pid(2);
    let port = cluster.http_ports[0];
    let uploader = {
        let body = body.clone();
        std::thread::spawn(move || {
            request(
                port,
                "POST",
                "/api/files?name=big.bin&w=2",
                ADMIN_KEY,
                &[],
                &body,
            )
        })
    };
    // Kill n3's Redis once the upload is under way (chunks are arriving).
    let mut c1 = cluster.redis(0);
    wait_for(
        "the upload to start storing chunks",
        Duration::from_secs(30),
        || (info_number(&mut c1, "chunks") >= 5).then_some(()),
    );
    assert!(
        !uploader.is_finished(),
        "the upload ended before n3's Redis was killed"
    );
    // SAFETY: kill(2) on a redis-server of this test's cluster.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let (status, _, reply) = uploader.join().unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
    let meta: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(meta["sha256"], sha256_hex(&body));
    let id = meta["id"].as_str().unwrap().to_string();

    // n3 comes back holding only the chunks written before it died: the upload went on
    // without it.
    let r = cluster.http(2, "POST", "/api/nodes/n3/start", Some(ADMIN_KEY));
    assert_eq!(r.status, 200, "{r:?}");
    let held = info_number(&mut cluster.redis(2), "chunks");
    eprintln!("n3 holds {held} of {chunk_count} chunks");
    assert!(
        held > 0 && held < chunk_count,
        "n3 holds {held} of {chunk_count} chunks"
    );

    // A download through n3, which must fetch most chunks from a replica, while n1's Redis is
    // killed half way: the rest comes from n2, whole and identical.
    let victim = cluster.redis_pid(0);
    let port = cluster.http_ports[2];
    let downloader = {
        let id = id.clone();
        std::thread::spawn(move || {
            request(
                port,
                "GET",
                &format!("/api/files/{id}/content"),
                READ_KEY,
                &[],
                b"",
            )
        })
    };
    wait_for(
        "the download to read chunks",
        Duration::from_secs(30),
        || (chunk_reads(port)? >= held as f64 + 2.0).then_some(()),
    );
    assert!(
        !downloader.is_finished(),
        "the download ended before n1's Redis was killed"
    );
    // SAFETY: as above.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let (status, head, got) = downloader.join().unwrap();
    assert_eq!(status, 200, "{head}");
    assert_eq!(sha256_hex(&got), sha256_hex(&body));
}

#[test]
fn a_corrupt_replica_is_read_around_repaired_and_counted() {
    let cluster = NodeCluster::start("files-corrupt", 3, "");
    let body = data(2 * CHUNK + 10, 5);
    let id = upload(&cluster, 0, "c.bin", &body)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c2 = cluster.redis(1);
    let _: () = redis::cmd("HSET")
        .arg(format!("chunk:{id}:1"))
        .arg("data")
        .arg("rotten")
        .query(&mut c2)
        .unwrap();
    let (status, _, got) = download(&cluster, 1, &id, None);
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&got), sha256_hex(&body));
    wait_for(
        "the corrupt replica repaired",
        Duration::from_secs(10),
        || {
            let v: Option<Vec<u8>> = redis::cmd("RC.CHUNK.GET")
                .arg(&id)
                .arg(1)
                .query(&mut c2)
                .ok()?;
            (v.as_deref() == Some(&body[CHUNK..2 * CHUNK])).then_some(())
        },
    );
    // The counters move once the repair is acknowledged, just after the replica has it.
    wait_for(
        "the repair and the checksum failure counted",
        Duration::from_secs(10),
        || {
            let metrics = http(cluster.http_ports[1], "GET", "/metrics", None).body;
            let counted = |name: &str| {
                metrics
                    .lines()
                    .any(|l| l.starts_with(&format!("{name}{{")) && !l.ends_with(" 0"))
            };
            (counted("rcluster_chunk_repairs_total")
                && counted("rcluster_module_checksum_failures_total"))
            .then_some(())
        },
    );
}

#[test]
fn an_aborted_upload_leaves_no_file_and_no_chunks() {
    let cluster = NodeCluster::start("files-abort", 3, "");
    let mut s = TcpStream::connect(("127.0.0.1", cluster.http_ports[0])).unwrap();
    write!(
        s,
        "POST /api/files?name=half.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Length: 20000000\r\n\r\n"
    )
    .unwrap();
    s.write_all(&data(5 * CHUNK, 9)).unwrap();
    wait_for("some chunks stored", Duration::from_secs(20), || {
        let mut c = cluster.redis(0);
        let keys: Vec<String> = redis::cmd("KEYS").arg("chunk:*").query(&mut c).ok()?;
        (!keys.is_empty()).then_some(())
    });
    drop(s); // The client goes away half way.
    wait_for("the chunks cleaned up", Duration::from_secs(20), || {
        let left: usize = (0..3)
            .map(|i| {
                let mut c = cluster.redis(i);
                redis::cmd("KEYS")
                    .arg("chunk:*")
                    .query::<Vec<String>>(&mut c)
                    .map(|k| k.len())
                    .unwrap_or(1)
            })
            .sum();
        (left == 0).then_some(())
    });
    let listed = http(cluster.http_ports[1], "GET", "/api/files", Some(READ_KEY)).json();
    assert_eq!(listed["files"].as_array().unwrap().len(), 0);
}

#[test]
fn bad_file_requests_get_a_clear_4xx_and_store_nothing() {
    let cluster = NodeCluster::start(
        "files-bad",
        3,
        "files: {max_file_bytes: 3000000, max_concurrent_uploads: 1}",
    );
    let port = cluster.http_ports[0];
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "/api/files?name=..%2Fetc%2Fpasswd",
            b"x".to_vec(),
            400,
            "BAD_NAME",
        ),
        ("/api/files?name=a%00b", b"x".to_vec(), 400, "BAD_NAME"),
        ("/api/files", b"x".to_vec(), 400, "BAD_NAME"),
        ("/api/files?name=big", vec![0u8; 3_000_001], 413, ""),
        ("/api/files?name=x&bogus=1", b"x".to_vec(), 400, ""),
    ];
    for (path, body, want, code) in cases {
        let (status, head, reply) = request(port, "POST", path, ADMIN_KEY, &[], &body);
        assert_eq!(
            status,
            want,
            "{path}: {head} {}",
            String::from_utf8_lossy(&reply)
        );
        assert!(
            String::from_utf8_lossy(&reply).contains(code),
            "{path}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    // A read key cannot upload.
    let (status, _, _) = request(port, "POST", "/api/files?name=x", READ_KEY, &[], b"x");
    assert_eq!(status, 403);
    // Unknown ids.
    assert_eq!(
        http(
            port,
            "GET",
            "/api/files/00000000000000000000000000000000",
            Some(READ_KEY)
        )
        .status,
        404
    );
    assert_eq!(
        http(port, "GET", "/api/files/not-an-id/content", Some(READ_KEY)).status,
        400
    );
    // One upload at a time on this node: a second one meanwhile gets 429.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(slow, "POST /api/files?name=slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Length: 10\r\n\r\nabc").unwrap();
    wait_for("the second upload refused", Duration::from_secs(10), || {
        let (status, head, _) =
            request(port, "POST", "/api/files?name=second", ADMIN_KEY, &[], b"y");
        (status == 429).then_some(head)
    });
    drop(slow);
    for i in 0..3 {
        let mut c = cluster.redis(i);
        wait_for("nothing stored", Duration::from_secs(10), || {
            let keys: Vec<String> = redis::cmd("KEYS").arg("chunk:*").query(&mut c).ok()?;
            keys.is_empty().then_some(())
        });
    }
}

#[test]
fn keys_over_http() {
    let cluster = NodeCluster::start("kv-http", 3, "");
    let (status, _, reply) = request(
        cluster.http_ports[0],
        "PUT",
        "/api/kv/greeting?w=2",
        ADMIN_KEY,
        &[],
        b"hello\x00world",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let (status, _, body) = request(
        cluster.http_ports[2],
        "GET",
        "/api/kv/greeting?r=2",
        READ_KEY,
        &[],
        b"",
    );
    assert_eq!((status, body.as_slice()), (200, &b"hello\x00world"[..]));
    let got: Http = http(
        cluster.http_ports[1],
        "GET",
        "/api/kv/missing",
        Some(READ_KEY),
    );
    assert_eq!(got.status, 404);
    let (status, _, body) = request(
        cluster.http_ports[0],
        "PUT",
        "/api/kv/k?w=9",
        ADMIN_KEY,
        &[],
        b"v",
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("between 1 and N=3"));
    let (status, _, _) = request(
        cluster.http_ports[0],
        "PUT",
        "/api/kv/k",
        READ_KEY,
        &[],
        b"v",
    );
    assert_eq!(status, 403);
    let (status, _, _) = request(
        cluster.http_ports[1],
        "DELETE",
        "/api/kv/greeting",
        ADMIN_KEY,
        &[],
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(
        http(
            cluster.http_ports[2],
            "GET",
            "/api/kv/greeting",
            Some(READ_KEY)
        )
        .status,
        404
    );
}
