//! The HTTP API's edges as real clients meet them, through `curl` and Python's `http.client`
//! (subprocesses) and raw sockets against a real cluster: a body that stalls is refused after `api.body_idle_timeout_ms` and
//! frees its upload slot; a refusal sent before the body was read (403, 413, 429) reaches a
//! client that sends a 1 MB body; a read key gets 403 on every write whatever it sent; refusals
//! name the field and the limit, never a Rust type; a quorum with w + r <= n comes with a warning.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rcluster_tests::nodes::{rcluster, NodeCluster, ADMIN_KEY, READ_KEY};
use rcluster_tests::pseudo_random;

/// The idle bound the tests configure (the default is 5 s).
const IDLE_MS: u64 = 3_000;

/// One answer as curl saw it: status (0 when curl got none), body, and curl's exit status.
#[derive(Debug)]
struct Curl {
    status: u16,
    body: String,
    exit: Option<i32>,
    stderr: String,
}

impl Curl {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Asserts an error answer with this status and code; returns its message.
    fn error(&self, status: u16, code: &str, what: &str) -> String {
        assert_eq!(self.status, status, "{what}: {self:?}");
        assert_eq!(self.exit, Some(0), "{what}: curl failed: {}", self.stderr);
        let json = self.json();
        assert_eq!(json["error"]["code"], code, "{what}: {self:?}");
        json["error"]["message"].as_str().unwrap_or("").to_string()
    }
}

/// Runs curl with `args` (after the common ones) against `http://127.0.0.1:<port><path>`.
fn curl(port: u16, method: &str, path: &str, key: &str, args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(args)
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    Curl {
        status: status.trim().parse().unwrap_or(0),
        body: body.to_string(),
        exit: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends `len` bytes with Python's `http.client`, which sends the whole body before it reads
/// the answer (as most HTTP libraries do): the status, or the exception it raised.
fn python(port: u16, method: &str, path: &str, key: &str, len: usize) -> String {
    const SCRIPT: &str = "
import http.client, sys
port, method, path, key, size = sys.argv[1:]
c = http.client.HTTPConnection('127.0.0.1', int(port), timeout=30)
try:
    c.request(method, path, body=b'x' * int(size), headers={
        'Authorization': 'Bearer ' + key, 'Content-Type': 'application/octet-stream'})
    r = c.getresponse()
    print(r.status, r.read().decode())
except Exception as e:
    print(type(e).__name__, e)
";
    let out = Command::new("python3")
        .args([
            "-c",
            SCRIPT,
            &port.to_string(),
            method,
            path,
            key,
            &len.to_string(),
        ])
        .output()
        .expect("run python3");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A file of `len` bytes in `dir`, for `--data-binary @file`.
fn payload(dir: &Path, len: usize) -> String {
    let path = dir.join(format!("payload-{len}.bin"));
    std::fs::write(&path, pseudo_random(len, len as u64)).expect("write the payload");
    format!("@{}", path.display())
}

/// A connection that sent a request's head and the first `sent` bytes of a body declared
/// `declared` bytes long, then stalls.
fn stall(port: u16, method: &str, path: &str, declared: usize, sent: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("send the head");
    s.write_all(sent).expect("send the first bytes");
    s
}

/// The status and body of the answer on a stalled connection, and when it came.
fn answer(mut s: TcpStream, within: Duration) -> (u16, String, Instant) {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the body of a JSON answer is complete (the connection may stay open).
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&out);
        if let Some((_, body)) = text.split_once("\r\n\r\n") {
            if serde_json::from_str::<serde_json::Value>(body).is_ok() {
                break;
            }
        }
    }
    let at = Instant::now();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string(), at)
}

/// Four uploads that send their head and 2 bytes of 1 MB hold every upload slot of the node
/// (files.max_concurrent_uploads 4): a fifth gets 429 TOO_MANY_UPLOADS, read by curl although
/// it sent its whole 1 MB body. Within api.body_idle_timeout_ms of their last byte the stalled
/// uploads are refused (408) and their slots freed: the fifth upload then succeeds. A stalled
/// `PUT /api/kv` body gets 408 the same way. Observed before: the slots stayed taken for
/// files.transfer_timeout_ms (an hour) and the kv write never got an answer.
#[test]
fn stalled_bodies_are_refused_after_the_idle_bound_and_free_their_slots() {
    let c = NodeCluster::start(
        "http-stall",
        3,
        &format!("api: {{body_idle_timeout_ms: {IDLE_MS}}}"),
    );
    let port = c.http_ports[0];
    let data = payload(c.dir.path(), 1_000_000);
    let started = Instant::now();
    let stalled: Vec<TcpStream> = (0..4)
        .map(|i| {
            let path = format!("/api/files?name=stalled-{i}.bin");
            stall(port, "POST", &path, 1_000_000, b"ab")
        })
        .collect();
    let kv = stall(port, "PUT", "/api/kv/stalled", 1_000, b"ab");
    std::thread::sleep(Duration::from_millis(300));
    let upload = |name: &str| {
        let path = format!("/api/files?name={name}");
        curl(
            port,
            "POST",
            &path,
            ADMIN_KEY,
            &["-H", "Expect:", "--data-binary", &data],
        )
    };
    let fifth = upload("fifth.bin");
    let message = fifth.error(429, "TOO_MANY_UPLOADS", "a fifth upload while four stall");
    assert!(message.contains("4 uploads"), "{message}");
    let refused = python(port, "POST", "/api/files?name=py.bin", ADMIN_KEY, 4_000_000);
    assert!(
        refused.starts_with("429 ") && refused.contains("TOO_MANY_UPLOADS"),
        "{refused}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(IDLE_MS),
        "too slow to check the slots"
    );
    let bound = Duration::from_millis(IDLE_MS);
    for (i, s) in stalled.into_iter().chain([kv]).enumerate() {
        let (status, body, at) = answer(s, Duration::from_secs(20));
        assert_eq!(status, 408, "stalled request {i}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
        assert_eq!(json["error"]["code"], "REQUEST_TIMEOUT", "{body}");
        let message = json["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("api.body_idle_timeout_ms"), "{message}");
        let took = at.duration_since(started);
        assert!(
            took >= bound && took < bound + Duration::from_secs(5),
            "stalled request {i} answered after {took:?}"
        );
    }
    let fifth = upload("fifth.bin");
    assert_eq!(
        fifth.status, 201,
        "the fifth upload once the slots are free: {fifth:?}"
    );
    assert_eq!(fifth.json()["size"], 1_000_000);
}

/// A refusal sent before the body was read reaches a client that sends its whole body before
/// it reads (Python's `http.client`; curl with and without `Expect: 100-continue`): 403 for a
/// read key with 4 MB, 413 for a value over limits.max_value_bytes, and a control route that
/// ignores its body answers too. Observed before: Python got BrokenPipeError for the 4 MB upload
/// with a read key and for `POST /api/nodes/n1/start` with 1 MB (the node closed the connection
/// with the body unread).
#[test]
fn refusals_before_the_body_reach_the_client() {
    let c = NodeCluster::start("http-refuse", 3, "limits: {max_value_bytes: 65536}");
    let port = c.http_ports[0];
    let data = payload(c.dir.path(), 1_000_000);
    for round in 0..5 {
        let answer = python(port, "POST", "/api/files?name=x.bin", READ_KEY, 4_000_000);
        assert!(
            answer.starts_with("403 ") && answer.contains("FORBIDDEN"),
            "{round}: {answer}"
        );
        let answer = python(port, "PUT", "/api/kv/big", ADMIN_KEY, 1_000_000);
        assert!(
            answer.starts_with("413 ") && answer.contains("\"TOO_LARGE\""),
            "{round}: {answer}"
        );
        assert!(
            answer.contains("limits.max_value_bytes (65536 bytes)"),
            "{answer}"
        );
        let answer = python(port, "POST", "/api/nodes/n1/start", ADMIN_KEY, 1_000_000);
        assert!(answer.starts_with("200 "), "{round}: {answer}");
        for expect in ["Expect:", "Expect: 100-continue"] {
            let what = format!("round {round}, {expect}");
            let body = ["-H", expect, "--data-binary", &data];
            let r = curl(port, "POST", "/api/files?name=x.bin", READ_KEY, &body);
            r.error(403, "FORBIDDEN", &format!("upload with a read key, {what}"));
            let r = curl(port, "PUT", "/api/kv/big", ADMIN_KEY, &body);
            let m = r.error(413, "TOO_LARGE", &format!("1 MB value, {what}"));
            assert!(m.contains("limits.max_value_bytes (65536 bytes)"), "{m}");
        }
    }
    // The limit is exactly limits.max_value_bytes: that many bytes are stored, one more is not.
    // The CLI says the same.
    let config = c.config_path();
    let value = "x".repeat(70_000);
    let args = [
        "put",
        "big",
        &value,
        "--config",
        config.to_str().expect("path"),
    ];
    let (code, _, err) = rcluster(&args, c.dir.path());
    assert_eq!(code, Some(2), "a refused input: {err}");
    assert!(
        err.contains("413 TOO_LARGE") && err.contains("limits.max_value_bytes (65536 bytes)"),
        "{err}"
    );
    for len in [65_536, 65_537] {
        let value = payload(c.dir.path(), len);
        let r = curl(
            port,
            "PUT",
            "/api/kv/v",
            ADMIN_KEY,
            &["--data-binary", &value],
        );
        if len == 65_536 {
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.json()["bytes"], 65_536);
        } else {
            r.error(413, "TOO_LARGE", "one byte over");
        }
    }
}

/// A read key gets 403 on every write route, whatever it sent (wrong content type, not JSON,
/// a body of the wrong shape, a large body); the admin key's refusals name the field and what
/// it must be, never a Rust type; a quorum with w + r <= n is accepted with a warning.
#[test]
fn writes_check_the_role_first_and_refusals_say_what_is_expected() {
    let c = NodeCluster::start("http-roles", 3, "");
    let port = c.http_ports[1];
    let data = payload(c.dir.path(), 1_000_000);
    let text = [
        "-H",
        "Content-Type: text/plain",
        "--data-binary",
        "{not json",
    ];
    let json = [
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        "[3,2,2]",
    ];
    let big = ["-H", "Expect:", "--data-binary", &data];
    for (method, path) in [
        ("PUT", "/api/cluster/quorum"),
        ("PUT", "/api/cluster/settings"),
        ("POST", "/api/nodes"),
        ("DELETE", "/api/nodes/n3"),
        ("POST", "/api/nodes/n1/stop"),
        ("PUT", "/api/kv/k"),
        ("DELETE", "/api/kv/k"),
        ("POST", "/api/files?name=a.bin"),
        ("DELETE", "/api/files/0123456789abcdef0123456789abcdef"),
    ] {
        for args in [&text[..], &json[..], &big[..]] {
            let r = curl(port, method, path, READ_KEY, args);
            r.error(403, "FORBIDDEN", &format!("read key, {method} {path}"));
        }
    }
    let quorum = |body: &str| {
        let args = [
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ];
        curl(port, "PUT", "/api/cluster/quorum", ADMIN_KEY, &args)
    };
    let rust_words = ["u8", "struct", "Quorum", "sequence", "invalid type"];
    for (body, expected) in [
        (
            "[3,2,2]",
            r#"the body must be a JSON object with the fields "n", "w", "r""#,
        ),
        (
            r#"{"n":3,"w":"x","r":2}"#,
            r#""w" must be an integer from 1 to 255, not string "x""#,
        ),
        (
            r#"{"n":3,"w":256,"r":2}"#,
            r#""w" must be an integer from 1 to 255, not integer 256"#,
        ),
        (
            r#"{"n":3,"r":2}"#,
            r#""w" is missing: it must be an integer from 1 to 255"#,
        ),
    ] {
        let message = quorum(body).error(422, "UNPROCESSABLE_ENTITY", body);
        assert_eq!(message, expected);
        assert!(rust_words.iter().all(|w| !message.contains(w)), "{message}");
    }
    let r = curl(port, "GET", "/api/kv/k?r=two", READ_KEY, &[]);
    let message = r.error(400, "BAD_REQUEST", "?r=two");
    assert_eq!(
        message,
        r#""r" must be an integer from 1 to 255, not "two""#
    );
    // w + r <= n: accepted (through a follower or the leader), with a warning.
    let r = quorum(r#"{"n":3,"w":1,"r":1}"#);
    assert_eq!(r.status, 200, "{r:?}");
    let warning = r.json()["warning"].as_str().unwrap_or("").to_string();
    assert!(
        warning.contains("a read may miss a write that was acknowledged"),
        "{r:?}"
    );
    let r = quorum(r#"{"n":3,"w":2,"r":2}"#);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.json().get("warning").is_none(), "{r:?}");
    // The CLI says so too when a request's own quorum does it (the config's r is 2 of 3).
    let config = c.config_path();
    let config = config.to_str().expect("path");
    let (code, _, err) = rcluster(
        &["put", "k", "v", "-w", "1", "--config", config],
        c.dir.path(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: w + r = 3 is not above n = 3"),
        "{err}"
    );
    let (code, _, err) = rcluster(
        &["put", "k", "v", "-w", "2", "--config", config],
        c.dir.path(),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
}
