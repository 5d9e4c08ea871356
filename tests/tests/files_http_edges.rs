//! The files API as a real HTTP client (curl) meets it: ranges, ETag, If-Range, If-None-Match
//! and HEAD as RFC 9110 says; the type `curl --data-binary` sends is not stored as a file's
//! type; ids in either case; bad `?after=` and `?w=` refused before anything is written; an
//! upload that breaks off or runs out of time frees its slot and leaves no chunks; a reader that
//! stops is cut and frees its slot; and a download whose node loses its Redis half way goes on
//! from the other replicas.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use rcluster_domain::checksum::sha256_hex;
use rcluster_tests::nodes::{http, upload, NodeCluster, ADMIN_KEY, READ_KEY};
use rcluster_tests::pseudo_random as data;
use rcluster_tests::wait_for;
use serde_json::Value;

const CHUNK: usize = 1 << 20;

/// One answer as curl got it.
struct Curl {
    status: u16,
    /// The last header block (after any `100 Continue`).
    head: String,
    body: Vec<u8>,
}

impl Curl {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The arguments that make curl write the headers to `dir/head` and the body to `dir/body`.
fn curl_command(dir: &Path, key: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-H", &format!("Authorization: Bearer {key}")])
        .arg("-D")
        .arg(dir.join("head"))
        .arg("-o")
        .arg(dir.join("body"))
        .args(args);
    cmd
}

/// What curl wrote to `dir` after it ended.
fn curl_answer(dir: &Path) -> Curl {
    let all_heads = std::fs::read_to_string(dir.join("head")).unwrap_or_default();
    let head = all_heads
        .rsplit_once("HTTP/")
        .map(|(_, h)| format!("HTTP/{h}"))
        .unwrap_or_default();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = std::fs::read(dir.join("body")).unwrap_or_default();
    Curl { status, head, body }
}

/// Runs curl with `args` (the URL among them) and the key; returns its answer.
fn curl(dir: &Path, key: &str, args: &[&str]) -> Curl {
    let _ = std::fs::remove_file(dir.join("head"));
    let _ = std::fs::remove_file(dir.join("body"));
    let out = curl_command(dir, key, args).output().expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    curl_answer(dir)
}

fn url(cluster: &NodeCluster, node: usize, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", cluster.http_ports[node])
}

/// A `/metrics` value of node `node` (the first line starting with `line_start`).
fn metric(cluster: &NodeCluster, node: usize, line_start: &str) -> Option<f64> {
    let text = http(cluster.http_ports[node], "GET", "/metrics", None).body;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Chunk keys on node `node`'s Redis.
fn chunk_keys(cluster: &NodeCluster, node: usize) -> Option<usize> {
    let mut c = cluster.redis(node);
    redis::cmd("KEYS")
        .arg("chunk:*")
        .query::<Vec<String>>(&mut c)
        .ok()
        .map(|k| k.len())
}

/// Waits (at most 30 s) until the chunk keys on node 0 satisfy `ok`.
fn await_chunks(cluster: &NodeCluster, what: &str, ok: impl Fn(usize) -> bool) {
    wait_for(what, Duration::from_secs(30), || {
        chunk_keys(cluster, 0).filter(|n| ok(*n))
    });
}

#[test]
fn ranges_validators_ids_types_and_queries_as_rfc_9110_and_the_docs_say() {
    let cluster = NodeCluster::start("edges-ranges", 3, "");
    let dir = cluster.dir.path().to_path_buf();
    let body = data(2 * CHUNK + CHUNK / 2 + 3, 21);
    let len = body.len();
    let source = dir.join("d.bin");
    std::fs::write(&source, &body).unwrap();
    let at = |path: &str| url(&cluster, 0, path);

    // `curl --data-binary` sends application/x-www-form-urlencoded: not the file's type.
    let data_arg = format!("@{}", source.display());
    let up = curl(
        &dir,
        ADMIN_KEY,
        &["--data-binary", &data_arg, &at("/api/files?name=d.bin")],
    );
    assert_eq!(up.status, 201, "{}", up.text());
    let meta = up.json();
    assert_eq!(meta["content_type"], "application/octet-stream");
    let id = meta["id"].as_str().unwrap().to_string();
    let sha = sha256_hex(&body);
    let note = curl(
        &dir,
        ADMIN_KEY,
        &["--data-binary", "hello", &at("/api/files?name=notes.txt")],
    );
    assert_eq!(note.json()["content_type"], "text/plain", "by the name");
    let typed = curl(
        &dir,
        ADMIN_KEY,
        &[
            "--data-binary",
            "a,b",
            "-H",
            "Content-Type: text/csv",
            &at("/api/files?name=t.bin"),
        ],
    );
    assert_eq!(typed.json()["content_type"], "text/csv", "as sent");

    let content = at(&format!("/api/files/{id}/content"));
    let etag = format!("\"{sha}\"");
    // The whole file carries a strong ETag.
    let whole = curl(&dir, READ_KEY, &[&content]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("etag").as_deref(), Some(etag.as_str()));
    assert_eq!(whole.header("accept-ranges").as_deref(), Some("bytes"));
    assert!(whole.body == body);
    // HEAD: the same headers, no body.
    let head = curl(&dir, READ_KEY, &["-I", &content]);
    assert_eq!(head.status, 200, "{}", head.head);
    assert_eq!(head.header("etag").as_deref(), Some(etag.as_str()));
    assert_eq!(head.header("content-length"), Some(len.to_string()));
    let shown = String::from_utf8_lossy(&head.body);
    assert!(
        shown.starts_with("HTTP/") && head.body.len() < 4096,
        "curl -I shows only the headers: {shown}"
    );

    // Another unit and several ranges: the whole file, 200.
    for range in ["Range: items=0-1", "Range: bytes=0-1,5-6"] {
        let r = curl(&dir, READ_KEY, &["-H", range, &content]);
        assert_eq!(r.status, 200, "{range}: {}", r.head);
        assert!(r.body == body, "{range}: the whole file");
        assert_eq!(r.header("content-range"), None, "{range}");
    }
    // One byte range past the end: 416 with the size.
    let past = format!("Range: bytes={len}-");
    let r = curl(&dir, READ_KEY, &["-H", &past, &content]);
    assert_eq!(r.status, 416, "{}", r.head);
    assert_eq!(r.header("content-range"), Some(format!("bytes */{len}")));
    // If-Range: the range while the tag matches, the whole file otherwise.
    let if_range = format!("If-Range: {etag}");
    let r = curl(
        &dir,
        READ_KEY,
        &["-H", "Range: bytes=0-9", "-H", &if_range, &content],
    );
    assert_eq!(r.status, 206, "{}", r.head);
    assert_eq!(r.body, body[..10]);
    assert_eq!(r.header("content-range"), Some(format!("bytes 0-9/{len}")));
    let r = curl(
        &dir,
        READ_KEY,
        &[
            "-H",
            "Range: bytes=0-9",
            "-H",
            "If-Range: \"other\"",
            &content,
        ],
    );
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.body == body);
    // If-None-Match naming the file: 304, no body.
    let none_match = format!("If-None-Match: {etag}");
    let r = curl(&dir, READ_KEY, &["-H", &none_match, &content]);
    assert_eq!(r.status, 304, "{}", r.head);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag").as_deref(), Some(etag.as_str()));

    // Ids in upper case are the same file everywhere.
    let upper = id.to_ascii_uppercase();
    let r = curl(&dir, READ_KEY, &[&at(&format!("/api/files/{upper}"))]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], id.as_str());
    let r = curl(
        &dir,
        READ_KEY,
        &["-r", "0-3", &at(&format!("/api/files/{upper}/content"))],
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &body[..4]));
    let r = curl(&dir, READ_KEY, &[&at("/api/files/xyz")]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("BAD_ID"), "{}", r.text());
    let r = curl(
        &dir,
        READ_KEY,
        &[&at(&format!("/api/files?after={upper}&limit=1000"))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // A listing after something that is no id: 400 naming the parameter.
    let r = curl(&dir, READ_KEY, &[&at("/api/files?after=xyz")]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("after"), "{}", r.text());

    // ?w= beyond N (or 0): refused before a chunk is written, naming N.
    let writes = || metric(&cluster, 0, "rcluster_chunk_operations_total{op=\"write\"");
    let before = writes();
    for w in ["4", "0"] {
        let r = curl(
            &dir,
            ADMIN_KEY,
            &[
                "--data-binary",
                &data_arg,
                &at(&format!("/api/files?name=w.bin&w={w}")),
            ],
        );
        assert_eq!(r.status, 400, "w={w}: {}", r.text());
        assert!(r.text().contains("N=3"), "w={w}: {}", r.text());
    }
    assert_eq!(writes(), before, "no chunk write was attempted");

    // Deleting by the upper-case id removes the file.
    let r = curl(
        &dir,
        ADMIN_KEY,
        &["-X", "DELETE", &at(&format!("/api/files/{upper}"))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = curl(&dir, READ_KEY, &[&at(&format!("/api/files/{id}"))]);
    assert_eq!(r.status, 404);
}

/// Starts curl streaming its stdin as an upload of `name` to node 0 (chunked), sends `first`
/// and then nothing more: the client stays connected while its stdin is held open.
fn streaming_upload(
    cluster: &NodeCluster,
    dir: &Path,
    name: &str,
    first: &[u8],
) -> (Child, ChildStdin) {
    std::fs::create_dir_all(dir).unwrap();
    let mut child = curl_command(dir, ADMIN_KEY, &["-X", "POST", "-T", "-"])
        .arg(url(cluster, 0, &format!("/api/files?name={name}")))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start curl");
    let mut input = child.stdin.take().unwrap();
    input.write_all(first).unwrap();
    input.flush().unwrap();
    (child, input)
}

#[test]
fn uploads_that_break_off_or_run_out_of_time_and_readers_that_stop_free_their_slots() {
    let cluster = NodeCluster::start(
        "edges-slots",
        1,
        "redis_maxmemory_mb: 256\nfiles: {max_concurrent_uploads: 1, transfer_timeout_ms: 3000, \
         max_concurrent_downloads: 1, download_stall_timeout_ms: 1000}",
    );
    let work = cluster.dir.path().join("curl");
    std::fs::create_dir_all(&work).unwrap();

    // An upload that stalls after three chunks runs out of time: 408, and its chunks go.
    let (mut stalled, input) = streaming_upload(
        &cluster,
        &work.join("a"),
        "stalled.bin",
        &data(3 * CHUNK + 10, 1),
    );
    await_chunks(&cluster, "chunks of the stalled upload", |n| n >= 3);
    await_chunks(&cluster, "the timed-out upload's chunks removed", |n| {
        n == 0
    });
    // The client still holds its body open; once it ends it, it reads the answer it got.
    drop(input);
    let status = wait_for("the stalled upload to end", Duration::from_secs(30), || {
        stalled.try_wait().unwrap()
    });
    assert!(status.success(), "curl: {status}");
    let answer = curl_answer(&work.join("a"));
    assert_eq!(answer.status, 408, "{}", answer.text());
    assert!(
        answer.text().contains("transfer_timeout_ms"),
        "{}",
        answer.text()
    );

    // A client that goes away half way: its slot is free for the next upload at once, and its
    // chunks go.
    let (mut gone, input) = streaming_upload(
        &cluster,
        &work.join("b"),
        "gone.bin",
        &data(2 * CHUNK + 10, 2),
    );
    await_chunks(&cluster, "chunks of the upload", |n| n >= 2);
    gone.kill().unwrap();
    gone.wait().unwrap();
    drop(input);
    let next = work.join("next.bin");
    std::fs::write(&next, data(CHUNK + 5, 3)).unwrap();
    let next_arg = format!("@{}", next.display());
    let next_url = url(&cluster, 0, "/api/files?name=next.bin");
    let meta = wait_for("the slot to be free", Duration::from_secs(5), || {
        let r = curl(&work, ADMIN_KEY, &["--data-binary", &next_arg, &next_url]);
        (r.status == 201).then(|| r.json())
    });
    let chunks_of_next = meta["chunk_count"].as_u64().unwrap() as usize;
    await_chunks(&cluster, "the broken-off upload's chunks removed", |n| {
        n == chunks_of_next
    });

    // A reader that stops reading is cut after files.download_stall_timeout_ms, and its slot
    // freed.
    let big = data(40 << 20, 4);
    let id = upload(&cluster, 0, "big.bin", &big)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let content = url(&cluster, 0, &format!("/api/files/{id}/content"));
    let mut reader = Command::new("curl")
        .args(["-sS", "-H", &format!("Authorization: Bearer {READ_KEY}")])
        .arg(&content)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = reader.stdout.take().unwrap();
    let mut first = vec![0u8; 1 << 16];
    out.read_exact(&mut first).unwrap();
    // Nothing reads curl's output now: curl stops reading its socket.
    wait_for("the stalled reader cut", Duration::from_secs(30), || {
        (metric(
            &cluster,
            0,
            "rcluster_download_cuts_total{reason=\"stalled\"",
        )? >= 1.0)
            .then_some(())
    });
    wait_for("the download slot free", Duration::from_secs(10), || {
        (metric(&cluster, 0, "rcluster_downloads_active")? == 0.0).then_some(())
    });
    let r = curl(&work, READ_KEY, &["-r", "0-99", &content]);
    assert_eq!((r.status, r.body.as_slice()), (206, &big[..100]));
    let mut rest = Vec::new();
    let _ = out.read_to_end(&mut rest);
    assert!(
        first.len() + rest.len() < big.len(),
        "the stalled reader was cut"
    );
    let _ = reader.wait();
}

#[test]
fn four_stalled_uploads_give_way_to_a_fifth_and_leave_no_chunks() {
    let cluster = NodeCluster::start(
        "edges-idle",
        1,
        "redis_maxmemory_mb: 256\napi: {body_idle_timeout_ms: 1500}\nfiles: {max_concurrent_uploads: 4}",
    );
    let work = cluster.dir.path().join("curl");
    std::fs::create_dir_all(&work).unwrap();
    // Four uploads that send a chunk and a half, then nothing (their clients stay connected).
    let mut stalled: Vec<(Child, ChildStdin)> = (0..4)
        .map(|i| {
            let dir = work.join(format!("s{i}"));
            let name = format!("stalled-{i}.bin");
            streaming_upload(&cluster, &dir, &name, &data(CHUNK + CHUNK / 2, i))
        })
        .collect();
    await_chunks(&cluster, "a chunk of each stalled upload", |n| n >= 4);
    // Within api.body_idle_timeout_ms of their last byte they are refused, their chunks go and
    // their slots are free: a fifth upload goes through.
    await_chunks(&cluster, "the stalled uploads' chunks removed", |n| n == 0);
    let fifth = work.join("fifth.bin");
    std::fs::write(&fifth, data(CHUNK + 1, 9)).unwrap();
    let r = curl(
        &work,
        ADMIN_KEY,
        &[
            "--data-binary",
            &format!("@{}", fifth.display()),
            &url(&cluster, 0, "/api/files?name=fifth.bin"),
        ],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    for (i, (mut child, input)) in stalled.drain(..).enumerate() {
        drop(input);
        let status = wait_for("a stalled client to end", Duration::from_secs(30), || {
            child.try_wait().unwrap()
        });
        let answer = curl_answer(&work.join(format!("s{i}")));
        assert_eq!(
            answer.status,
            408,
            "stalled upload {i} ({status}): {}",
            answer.text()
        );
        assert!(
            answer.text().contains("REQUEST_TIMEOUT"),
            "{}",
            answer.text()
        );
    }
    assert_eq!(
        chunk_keys(&cluster, 0),
        Some(2),
        "only the fifth file's chunks"
    );
}

#[test]
fn a_download_goes_on_from_other_replicas_when_the_serving_nodes_redis_dies() {
    // A killed Redis stays down until started through the API.
    let cluster = NodeCluster::start(
        "edges-failover",
        3,
        "redis_maxmemory_mb: 512\nsupervision: {restart_on_crash: false}",
    );
    // Larger than what socket buffers, curl and the server's read-ahead hold for a client that
    // pauses: most chunks are fetched after the kill.
    let body = data(48 << 20, 31);
    let id = upload(&cluster, 1, "big.bin", &body)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = cluster.dir.path().to_path_buf();
    let mut reader = Command::new("curl")
        .args(["-sS", "-H", &format!("Authorization: Bearer {READ_KEY}")])
        .arg("-D")
        .arg(dir.join("head"))
        .arg(url(&cluster, 0, &format!("/api/files/{id}/content")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = reader.stdout.take().unwrap();
    // Take the first chunk, then pause (curl's output is not read: it stops reading).
    let mut got = vec![0u8; CHUNK];
    out.read_exact(&mut got).unwrap();
    let victim = cluster.redis_pid(0);
    // SAFETY: kill(2) on a redis-server of this test's cluster.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    wait_for("n1 to see its Redis gone", Duration::from_secs(10), || {
        let h = http(cluster.http_ports[0], "GET", "/api/health", None).json();
        (h["redis_state"] != "running").then_some(())
    });
    // Read on: the rest comes from n2 and n3, whole.
    out.read_to_end(&mut got).unwrap();
    let status = reader.wait().unwrap();
    assert!(status.success(), "curl: {status}");
    assert_eq!(got.len(), body.len(), "the whole file");
    assert_eq!(sha256_hex(&got), sha256_hex(&body));
    let peer_reads = metric(
        &cluster,
        0,
        "rcluster_chunk_operations_total{op=\"read_peer\"",
    );
    assert!(
        peer_reads.is_some_and(|n| n >= 1.0),
        "chunks were fetched from the other members: {peer_reads:?}"
    );
}
