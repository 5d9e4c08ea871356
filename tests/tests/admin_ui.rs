//! The admin page's server side on a real 3-node cluster, through real clients (curl and the
//! `tungstenite` WebSocket client): the events stream (key in `?key=`, read keys allowed, the
//! snapshot frame, every `cluster:events` message as published, no key refused, a client that
//! does not read dropped), `GET /api/whoami`, `GET /api/ring` and `GET /api/locate/{key}` against
//! `RC.LOCATE`, and the page's files.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use rcluster_tests::nodes::NodeCluster;
use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const ADMIN: &str = "ui-admin-key-0123456789";
const READ: &str = "ui-read-key-0123456789";

fn keys() -> String {
    format!(
        "api:\n  keys:\n    - {{ name: a, key: {ADMIN}, role: admin }}\n    - {{ name: r, key: {READ}, role: read }}\n"
    )
}

/// `curl` a path of node `port`: status and body.
fn curl(port: u16, path: &str, key: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "20", "-w", "\n%{http_code}"]);
    if let Some(key) = key {
        cmd.args(["-H", &format!("X-API-Key: {key}")]);
    }
    let out = cmd
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.trim().parse().expect("status"), body.to_string())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(port: u16, key: &str) -> Socket {
    let url = format!("ws://127.0.0.1:{port}/api/events?key={key}");
    let (socket, response) = tungstenite::connect(url).expect("websocket");
    assert_eq!(response.status(), 101);
    if let MaybeTlsStream::Plain(s) = socket.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    socket
}

/// The next text frame whose JSON satisfies `want`, within `limit`.
fn next_frame(socket: &mut Socket, limit: Duration, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match socket.read() {
            Ok(Message::Text(text)) => {
                let v = json(text.as_str());
                if want(&v) {
                    return v;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("stream ended: {e}"),
        }
    }
    panic!("no wanted frame within {limit:?}");
}

#[test]
fn events_stream_snapshots_and_every_published_message() {
    let cluster = NodeCluster::start("ui-events", 3, &keys());
    let port = cluster.http_ports[1];

    // No key, an unknown key, or no WebSocket handshake: refused with the usual JSON errors.
    let (status, body) = curl(port, "/api/events", None);
    assert_eq!(status, 401, "{body}");
    let (status, _) = curl(port, "/api/events?key=nope-nope-nope", None);
    assert_eq!(status, 401);
    let (status, body) = curl(port, "/api/events", Some(READ));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("WebSocket"), "{body}");
    let refused = tungstenite::connect(format!("ws://127.0.0.1:{port}/api/events"));
    assert!(refused.is_err());

    // A read key is enough. The first snapshot has the rows of GET /api/nodes; the stream says
    // when it subscribed (either may come first).
    let mut socket = connect(port, READ);
    let mut snapshot = None;
    let mut subscribed = false;
    while snapshot.is_none() || !subscribed {
        let v = next_frame(&mut socket, Duration::from_secs(30), |v| {
            v["type"] == "snapshot" || (v["type"] == "stream" && v["state"] == "subscribed")
        });
        if v["type"] == "snapshot" {
            snapshot.get_or_insert(v);
        } else {
            subscribed = true;
        }
    }
    let snapshot = snapshot.expect("a snapshot");
    assert_eq!(snapshot["observer"], "n2");
    let ids: Vec<&str> = snapshot["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["n1", "n2", "n3"]);
    assert!(snapshot["heartbeat_ms"].as_u64().unwrap() > 0);

    // Subscribed: every published message comes out as sent.
    let mut redis = cluster.redis(1);
    for i in 0..20 {
        let event = format!("{{\"type\":\"probe\",\"node\":\"n1\",\"i\":{i}}}");
        let _: i64 = redis::cmd("PUBLISH")
            .arg("cluster:events")
            .arg(&event)
            .query(&mut redis)
            .unwrap();
    }
    for i in 0..20 {
        let got = next_frame(&mut socket, Duration::from_secs(10), |v| {
            v["type"] == "probe"
        });
        assert_eq!(got["i"], i);
    }
    // Snapshots keep coming, once per heartbeat.
    next_frame(&mut socket, Duration::from_secs(5), |v| {
        v["type"] == "snapshot"
    });
    socket.close(None).ok();
}

#[test]
fn a_client_that_does_not_read_is_dropped() {
    let cluster = NodeCluster::start("ui-slow", 3, &keys());
    let port = cluster.http_ports[0];
    let mut socket = connect(port, ADMIN);
    next_frame(&mut socket, Duration::from_secs(10), |v| {
        v["type"] == "stream" && v["state"] == "subscribed"
    });
    // Far more than the connection's buffer and the sockets' buffers hold, not read meanwhile.
    let mut redis = cluster.redis(0);
    let payload = format!(
        "{{\"type\":\"flood\",\"pad\":\"{}\"}}",
        "x".repeat(16 << 10)
    );
    let mut pipe = redis::pipe();
    for _ in 0..4000 {
        pipe.cmd("PUBLISH")
            .arg("cluster:events")
            .arg(&payload)
            .ignore();
    }
    pipe.query::<()>(&mut redis).unwrap();
    std::thread::sleep(Duration::from_secs(12));
    // Reading now finds the stream closed before all 4000 frames.
    let mut floods = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let ended = loop {
        assert!(Instant::now() < deadline, "the stream was never closed");
        match socket.read() {
            Ok(Message::Text(t)) if t.as_str().contains("\"flood\"") => floods += 1,
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                panic!("the stream is still open after {floods} frames")
            }
            Err(_) => break None,
        }
    };
    assert!(floods < 4000, "{floods} frames, {ended:?}");
    // The node is fine and serves a new stream.
    let mut again = connect(port, ADMIN);
    next_frame(&mut again, Duration::from_secs(10), |v| {
        v["type"] == "snapshot"
    });
}

#[test]
fn whoami_ring_and_locate_agree_with_the_module() {
    let cluster = NodeCluster::start("ui-locate", 3, &keys());
    let port = cluster.http_ports[0];

    let (status, body) = curl(port, "/api/whoami", Some(READ));
    assert_eq!(status, 200, "{body}");
    let me = json(&body);
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("r"), Some("read"))
    );
    assert!(!body.contains(READ), "the key itself is never echoed");
    assert_eq!(curl(port, "/api/whoami", None).0, 401);

    let (status, body) = curl(port, "/api/ring", Some(READ));
    assert_eq!(status, 200, "{body}");
    let ring = json(&body);
    let tokens = ring["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 3 * ring["vnodes"].as_u64().unwrap() as usize);
    let at: Vec<f64> = tokens.iter().map(|t| t["at"].as_f64().unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]) && at[0] >= 0.0 && at[at.len() - 1] < 1.0);

    assert!(ring["change"].is_null());

    // A previewed change: the share of the hash space whose replicas would differ.
    let (status, body) = curl(port, "/api/ring?without=n3", Some(READ));
    assert_eq!(status, 200, "{body}");
    let preview = json(&body);
    assert_eq!(preview["nodes"], serde_json::json!(["n1", "n2"]));
    let share = preview["change"]["moving_share"].as_f64().unwrap();
    // With N=3 on three nodes every key is on n3: every replica set changes.
    assert!((share - 1.0).abs() < 1e-9, "{share}");
    let (_, body) = curl(port, "/api/ring?with=n4&vnodes=16", Some(READ));
    let grown = json(&body);
    assert_eq!(grown["vnodes"], 16);
    let share = grown["change"]["moving_share"].as_f64().unwrap();
    assert!(share > 0.0 && share <= 1.0, "{share}");
    assert_eq!(curl(port, "/api/ring?vnodes=0", Some(READ)).0, 400);

    // A written key: the preference list is RC.LOCATE's, each replica holds the same version.
    let mut c = cluster.redis(0);
    let _: () = redis::cmd("RC.SET")
        .arg("user:7")
        .arg("hello")
        .query(&mut c)
        .unwrap();
    let locate: Vec<Vec<String>> = redis::cmd("RC.LOCATE").arg("user:7").query(&mut c).unwrap();
    let expected: Vec<&str> = locate.iter().map(|row| row[0].as_str()).collect();
    let (status, body) = curl(port, "/api/locate/user:7", Some(READ));
    assert_eq!(status, 200, "{body}");
    let located = json(&body);
    let replicas = located["replicas"].as_array().unwrap();
    let shown: Vec<&str> = replicas
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(shown, expected);
    let versions: Vec<&Value> = replicas.iter().map(|r| &r["held"]["version"]).collect();
    assert!(
        versions
            .iter()
            .all(|v| v.as_u64().is_some() && *v == versions[0]),
        "{body}"
    );
    assert_eq!(replicas[0]["held"]["bytes"], 5);
    assert_eq!(replicas[0]["held"]["tombstone"], false);

    // A key never written: every replica holds nothing.
    let (_, body) = curl(port, "/api/locate/never-written", Some(READ));
    let none = json(&body);
    assert!(
        none["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["held"].is_null() && r["error"].is_null()),
        "{body}"
    );
}

#[test]
fn a_files_chunks_are_placed_on_their_preference_nodes() {
    let cluster = NodeCluster::start("ui-chunks", 3, &keys());
    let port = cluster.http_ports[0];
    let dir = rcluster_tests::TempDir::new("ui-chunks-file");
    let path = dir.path().join("three-chunks.bin");
    std::fs::write(&path, rcluster_tests::pseudo_random(2_500_000, 7)).unwrap();
    let out = Command::new("curl")
        .args(["-s", "-m", "60", "-H", &format!("X-API-Key: {ADMIN}")])
        .args([
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
        ])
        .arg(format!("@{}", path.display()))
        .arg(format!(
            "http://127.0.0.1:{port}/api/files?name=three-chunks.bin"
        ))
        .output()
        .expect("curl upload");
    let meta = json(&String::from_utf8_lossy(&out.stdout));
    let id = meta["id"].as_str().expect("uploaded").to_string();
    let (status, body) = curl(port, &format!("/api/ring/files/{id}"), Some(READ));
    assert_eq!(status, 200, "{body}");
    let placed = json(&body);
    assert_eq!(placed["chunk_count"], 3);
    let chunks = placed["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 3);
    let mut c = cluster.redis(0);
    for (i, chunk) in chunks.iter().enumerate() {
        let locate: Vec<Vec<String>> = redis::cmd("RC.LOCATE")
            .arg(format!("{id}:{i}"))
            .query(&mut c)
            .unwrap();
        let expected: Vec<&str> = locate.iter().map(|row| row[0].as_str()).collect();
        let preference: Vec<&str> = chunk["preference"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(preference, expected);
        let mut held: Vec<&str> = chunk["held_on"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        held.sort_unstable();
        assert_eq!(held, ["n1", "n2", "n3"], "chunk {i}");
    }
    assert_eq!(
        curl(
            port,
            "/api/ring/files/0123456789abcdef0123456789abcdef",
            Some(READ)
        )
        .0,
        404
    );
}

#[test]
fn the_page_is_served_or_says_how_to_build_it() {
    let cluster = NodeCluster::start("ui-page", 1, &keys());
    let port = cluster.http_ports[0];
    let (status, body) = curl(port, "/", None);
    assert_eq!(status, 200);
    let built = rcluster_tests::repo_root()
        .join("admin-ui/dist/index.html")
        .exists();
    if built {
        let start = body.find("/assets/app-").expect("the script's path") + "/assets/".len();
        let script = &body[start..start + body[start..].find('"').expect("quoted")];
        let (status, js) = curl(port, &format!("/assets/{script}"), None);
        assert_eq!(status, 200);
        assert!(js.len() > 1000);
    } else {
        assert!(body.contains("npm ci && npm run build"), "{body}");
    }
    for bad in [
        "/assets/..%2F..%2FCargo.toml",
        "/assets/.env",
        "/assets/missing.js",
    ] {
        assert_eq!(curl(port, bad, None).0, 404, "{bad}");
    }
}
