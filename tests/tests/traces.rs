//! Request traces on real clusters: a traced `RC.SET` with one replica frozen (SIGSTOP) shows
//! its timeout and the hint kept for it; a traced `RC.GET` with a stale replica shows the stale
//! answer and the read repair with its acknowledgement; traced and untraced replies are equal;
//! the ring holds its count and byte caps; sampling traces unasked requests; and through the
//! node processes, `?trace=1` names the trace in `X-RC-Trace` (curl), `GET /api/traces/{id}`
//! serves it and `rcluster trace` draws it.

use std::process::Command;
use std::time::Duration;

use rcluster_tests::nodes::{rcluster, NodeCluster, ADMIN_KEY, READ_KEY};
use rcluster_tests::{call, info_number, wait_for, TestCluster};
use redis::Value;
use serde_json::Value as Json;

fn cmd(c: &mut redis::Connection, args: &[&str]) -> Value {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    call(c, &args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// The trace with this id, once the coordinator kept it.
fn trace(c: &mut redis::Connection, id: &str) -> Json {
    wait_for(
        &format!("trace {id} kept"),
        Duration::from_secs(10),
        || match cmd(c, &["RC.TRACE", "GET", id]) {
            Value::BulkString(b) => Some(serde_json::from_slice(&b).expect("trace JSON")),
            _ => None,
        },
    )
}

/// The events of a trace as (node, what, the whole event).
fn events(t: &Json) -> Vec<(String, String, Json)> {
    t["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["node"].as_str().unwrap().to_string(),
                e["what"].as_str().unwrap().to_string(),
                e.clone(),
            )
        })
        .collect()
}

fn has(evs: &[(String, String, Json)], node: &str, what: &str) -> Option<Json> {
    evs.iter()
        .find(|(n, w, _)| n == node && w == what)
        .map(|(_, _, e)| e.clone())
}

/// A key whose preference list starts with n1 (so n1 coordinates and holds a replica).
fn key_led_by_n1(cluster: &TestCluster, tag: &str) -> String {
    (0..1000)
        .map(|i| format!("{tag}-{i}"))
        .find(|k| cluster.preference(k)[0] == "n1")
        .expect("a key n1 leads")
}

#[test]
fn a_traced_write_with_a_frozen_replica_shows_its_timeout_and_the_hint() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c1 = cluster.conn(0);
    let key = key_led_by_n1(&cluster, "frozen");
    // Warm the fast path's connections, so the traced write starts there.
    cmd(&mut c1, &["RC.SET", &key, "warm", "W", "3"]);
    let frozen = cluster.index("n3");
    cluster.signal(frozen, libc::SIGSTOP);
    let reply = cmd(
        &mut c1,
        &["RC.SET", &key, "v", "TIMEOUT", "500", "TRACE", "w-frozen"],
    );
    assert_eq!(reply, Value::Okay, "a traced reply is the plain reply");
    let t = trace(&mut c1, "w-frozen");
    cluster.signal(frozen, libc::SIGCONT);
    let evs = events(&t);
    assert_eq!(t["command"], "RC.SET");
    assert_eq!(t["key"], key.as_str());
    assert_eq!(t["coordinator"], "n1");
    assert!(
        ["fast", "runtime"].contains(&t["path"].as_str().unwrap()),
        "{t}"
    );
    assert!(t["outcome"].as_str().unwrap().starts_with("OK"), "{t}");
    for n in ["n1", "n2", "n3"] {
        assert!(
            has(&evs, n, "preference").is_some(),
            "{n} in the preference list: {t}"
        );
    }
    assert_eq!(has(&evs, "n1", "preference").unwrap()["state"], "self");
    assert!(
        has(&evs, "n2", "asked").is_some() && has(&evs, "n3", "asked").is_some(),
        "{t}"
    );
    assert!(has(&evs, "n2", "ack").is_some(), "{t}");
    let timeout = has(&evs, "n3", "timeout").unwrap_or_else(|| panic!("n3's timeout: {t}"));
    let hint = has(&evs, "n1", "hint").unwrap_or_else(|| panic!("the hint kept for n3: {t}"));
    assert_eq!(hint["hint_for"], "n3");
    let quorum = has(&evs, "n1", "quorum").expect("W reached");
    assert_eq!(
        (quorum["got"].as_u64(), quorum["needed"].as_u64()),
        (Some(2), Some(2))
    );
    let reply_at = has(&evs, "n1", "reply").unwrap()["at_us"].as_u64().unwrap();
    // The reply went at the second acknowledgement, long before n3's timeout (500 ms).
    let timeout_at = timeout["at_us"].as_u64().unwrap();
    assert!(reply_at < timeout_at, "{t}");
    assert!(timeout_at >= 400_000, "{t}");
    assert!(hint["at_us"].as_u64().unwrap() >= timeout_at, "{t}");
    // Events are in time order.
    let ats: Vec<u64> = evs
        .iter()
        .map(|(_, _, e)| e["at_us"].as_u64().unwrap())
        .collect();
    assert!(ats.windows(2).all(|w| w[0] <= w[1]), "{ats:?}");
    // The listing names it first.
    match cmd(&mut c1, &["RC.TRACE", "LIST", "1"]) {
        Value::Array(items) => {
            let Value::BulkString(b) = &items[0] else {
                panic!("{items:?}")
            };
            let s: Json = serde_json::from_slice(b).unwrap();
            assert_eq!(s["id"], "w-frozen");
            assert_eq!(s["events"].as_u64(), Some(evs.len() as u64));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_traced_read_with_a_stale_replica_shows_the_stale_answer_and_the_repair() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c: Vec<_> = (0..3).map(|i| cluster.conn(i)).collect();
    let key = key_led_by_n1(&cluster, "stale");
    cmd(&mut c[0], &["RC.SET", &key, "old", "W", "3"]);
    // n1 and n2 get a newer version behind the quorum layer: n3 is stale.
    let Value::Array(held) = cmd(&mut c[2], &["RC.REPLICA.GET", &key]) else {
        panic!("n3 holds the key")
    };
    let Value::BulkString(old) = &held[1] else {
        panic!("{held:?}")
    };
    let old: u64 = String::from_utf8_lossy(old).parse().unwrap();
    let newer = (old + 1000).to_string();
    for conn in c.iter_mut().take(2) {
        cmd(conn, &["RC.REPLICA.PUT", &key, "new", &newer, "n1"]);
    }
    let reply = cmd(&mut c[0], &["RC.GET", &key, "TRACE", "r-stale"]);
    assert_eq!(reply, Value::BulkString(b"new".to_vec()));
    let t = trace(&mut c[0], "r-stale");
    let evs = events(&t);
    let stale = has(&evs, "n3", "stale").unwrap_or_else(|| panic!("n3's stale answer: {t}"));
    assert_eq!(stale["version"], format!("{old}@n1").as_str(), "{t}");
    let fresh = has(&evs, "n2", "answer").unwrap_or_else(|| panic!("n2's answer: {t}"));
    assert_eq!(fresh["version"], format!("{newer}@n1").as_str());
    let repair = has(&evs, "n3", "repair").unwrap_or_else(|| panic!("the repair: {t}"));
    assert_eq!(repair["version"], format!("{newer}@n1").as_str());
    assert!(has(&evs, "n3", "repair_ack").is_some(), "{t}");
    assert!(has(&evs, "n1", "quorum").is_some(), "R reached: {t}");
    assert_eq!(t["outcome"], "value (3 bytes)");
    assert!(has(&evs, "n1", "repair").is_none() && has(&evs, "n2", "repair").is_none());
}

#[test]
fn traced_replies_equal_untraced_ones_and_bad_ids_are_refused() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c = cluster.conn(1);
    for (plain, traced) in [
        (
            vec!["RC.SET", "same", "value"],
            vec!["RC.SET", "same", "value", "TRACE"],
        ),
        (
            vec!["RC.GET", "same"],
            vec!["RC.GET", "same", "trace", "mine-1"],
        ),
        (
            vec!["RC.GET", "missing", "R", "1"],
            vec!["RC.GET", "missing", "TRACE", "R", "1"],
        ),
        (
            vec!["RC.DEL", "same"],
            vec!["RC.DEL", "same", "W", "3", "TRACE"],
        ),
        (
            vec!["RC.GET", "same"],
            vec!["RC.GET", "same", "TRACE", "mine-2"],
        ),
    ] {
        assert_eq!(cmd(&mut c, &plain), cmd(&mut c, &traced), "{traced:?}");
    }
    trace(&mut c, "mine-1");
    let e = call(&mut c, &[b"RC.SET", b"k", b"v", b"TRACE", b"bad id"]).unwrap_err();
    assert!(e.to_string().contains("trace id"), "{e}");
    let e = call(&mut c, &[b"RC.TRACE", b"LIST", b"0"]).unwrap_err();
    assert!(e.to_string().contains("n must be"), "{e}");
    assert_eq!(cmd(&mut c, &["RC.TRACE", "GET", "never"]), Value::Nil);
}

#[test]
fn the_ring_holds_its_caps_and_sampling_traces_unasked_requests() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c = cluster.conn(0);
    let config = |c: &mut redis::Connection, name: &str, value: &str| {
        cmd(c, &["CONFIG", "SET", &format!("rcluster.{name}"), value]);
    };
    config(&mut c, "trace-max-count", "3");
    for i in 0..5 {
        cmd(
            &mut c,
            &[
                "RC.SET",
                &format!("k{i}"),
                "v",
                "W",
                "3",
                "TRACE",
                &format!("cap-{i}"),
            ],
        );
    }
    trace(&mut c, "cap-4");
    let listed = |c: &mut redis::Connection| -> Vec<String> {
        let Value::Array(items) = cmd(c, &["RC.TRACE", "LIST", "100"]) else {
            panic!()
        };
        items
            .iter()
            .map(|v| match v {
                Value::BulkString(b) => serde_json::from_slice::<Json>(b).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    wait_for("three traces held", Duration::from_secs(5), || {
        (listed(&mut c) == ["cap-4", "cap-3", "cap-2"]).then_some(())
    });
    assert_eq!(cmd(&mut c, &["RC.TRACE", "GET", "cap-0"]), Value::Nil);
    assert_eq!(info_number(&mut c, "traces_held"), 3);
    assert!(info_number(&mut c, "traces_dropped") >= 2);
    // The byte cap: one trace's worth.
    let Value::BulkString(one) = cmd(&mut c, &["RC.TRACE", "GET", "cap-4"]) else {
        panic!()
    };
    let cap = one.len() + one.len() / 2;
    config(&mut c, "trace-max-bytes", &cap.to_string());
    cmd(&mut c, &["RC.SET", "k9", "v", "W", "3", "TRACE", "cap-9"]);
    trace(&mut c, "cap-9");
    assert_eq!(listed(&mut c), ["cap-9"]);
    assert!(info_number(&mut c, "traces_bytes") as usize <= cap);
    // Sampling: every request traced without asking, then none.
    config(&mut c, "trace-max-bytes", "1048576");
    config(&mut c, "trace-max-count", "100");
    config(&mut c, "trace-sample-per-million", "1000000");
    let started = info_number(&mut c, "traces_started");
    cmd(&mut c, &["RC.SET", "sampled", "v", "W", "3"]);
    cmd(&mut c, &["RC.GET", "sampled"]);
    assert_eq!(info_number(&mut c, "traces_started"), started + 2);
    config(&mut c, "trace-sample-per-million", "0");
    cmd(&mut c, &["RC.GET", "sampled"]);
    assert_eq!(info_number(&mut c, "traces_started"), started + 2);
}

/// `curl` with the headers printed before the body.
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-i"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn http_traces_and_the_cli_timeline() {
    let cluster = NodeCluster::start("traces-http", 3, "");
    let port = cluster.http_ports[0];
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let auth = |key: &str| format!("Authorization: Bearer {key}");
    // A plain PUT names no trace; with ?trace=1 the answer is the same plus X-RC-Trace.
    let put = |path: &str| {
        let admin = auth(ADMIN_KEY);
        curl(&["-X", "PUT", "-H", &admin, "--data-binary", "v1", &url(path)])
    };
    let (head, plain) = put("/api/kv/traced");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("x-rc-trace"), "{head}");
    let (head, traced) = put("/api/kv/traced?trace=1");
    assert_eq!(plain, traced);
    let id = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("x-rc-trace: ")
                .or_else(|| l.strip_prefix("X-RC-Trace: "))
        })
        .unwrap_or_else(|| panic!("X-RC-Trace in {head}"))
        .trim()
        .to_string();
    let (head, body) = curl(&["-H", &auth(READ_KEY), &url("/api/kv/traced?trace=1")]);
    assert!(head.to_ascii_lowercase().contains("x-rc-trace: "), "{head}");
    assert_eq!(body, "v1");
    let doc: Json = wait_for("the trace over HTTP", Duration::from_secs(10), || {
        let (head, body) = curl(&["-H", &auth(READ_KEY), &url(&format!("/api/traces/{id}"))]);
        head.starts_with("HTTP/1.1 200")
            .then(|| serde_json::from_str(&body).unwrap())
    });
    assert_eq!(doc["id"], id.as_str());
    assert_eq!(doc["command"], "RC.SET");
    assert_eq!(doc["coordinator"], "n1");
    assert!(doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["what"] == "quorum"));
    let (head, body) = curl(&["-H", &auth(READ_KEY), &url("/api/traces?n=5")]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let list: Json = serde_json::from_str(&body).unwrap();
    assert!(list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id.as_str()));
    let (head, _) = curl(&["-H", &auth(READ_KEY), &url("/api/traces/nope")]);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = curl(&["-H", &auth(READ_KEY), &url("/api/traces/bad%20id")]);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    // The CLI finds it (on whichever node holds it) and draws a lane per node.
    let config = cluster.config_path();
    let config = config.to_str().unwrap();
    let (code, out, err) = rcluster(&["trace", &id, "--config", config], cluster.dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("trace {id}  RC.SET traced  coordinator n1")),
        "{out}"
    );
    assert!(
        out.contains("n1 (coordinator)") && out.contains("│ n2") && out.contains("│ n3"),
        "{out}"
    );
    assert!(out.contains("quorum"), "{out}");
    let (code, out, err) = rcluster(
        &["trace", "--last", "2", "--config", config],
        cluster.dir.path(),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        out.matches("\ntrace ").count() + usize::from(out.starts_with("trace ")),
        2,
        "{out}"
    );
    let (code, _, err) = rcluster(&["trace", "nope", "--config", config], cluster.dir.path());
    assert_eq!(code, Some(2), "{err}");
}
