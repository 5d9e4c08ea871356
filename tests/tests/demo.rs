//! The guided scenarios against real clusters: each of the five runs in its short mode through
//! `rcluster demo <name> --short` and its verdict is asserted from the narration; through the
//! HTTP API (curl), `POST /api/demos` runs one to its verdict, refuses a second while it runs
//! (409, saying why), and a run stopped with `DELETE /api/demos/{id}` ends `stopped` with the
//! cluster restored; a cluster with a node down is refused.

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use rcluster_tests::nodes::{rcluster, NodeCluster, ADMIN_KEY};
use rcluster_tests::wait_for;
use serde_json::Value;

/// One cluster at a time: the scenarios load the machine on purpose.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `rcluster demo <name> --short` on a fresh three-node cluster; returns the cluster, the
/// exit code and the output, and the verdict JSON printed at the end.
fn demo(name: &str) -> (NodeCluster, Option<i32>, String, Value) {
    let cluster = NodeCluster::start(&format!("demo-{name}"), 3, "");
    let config = cluster.config_path();
    let (code, out, err) = rcluster(
        &[
            "demo",
            name,
            "--short",
            "--config",
            config.to_str().unwrap(),
        ],
        cluster.dir.path(),
    );
    let text = format!("{out}\n--- stderr ---\n{err}");
    let verdict = verdict_of(&out).unwrap_or_else(|| panic!("no verdict in:\n{text}"));
    (cluster, code, text, verdict)
}

/// The verdict printed at the end: `verdict: PASSED|FAILED`, then one `name value` line per
/// figure, the value as JSON (the lines carry a time prefix).
fn verdict_of(out: &str) -> Option<Value> {
    let lines: Vec<&str> = out.lines().collect();
    let start = lines.iter().position(|l| l.contains("verdict: "))? + 1;
    let mut v = serde_json::Map::new();
    for l in &lines[start..] {
        let (name, value) = l.trim_start().split_once(char::is_whitespace)?;
        v.insert(name.to_string(), serde_json::from_str(value.trim()).ok()?);
    }
    Some(Value::Object(v))
}

#[test]
fn normal_every_read_sees_the_latest_acknowledged_write() {
    let _one = serial();
    let (_cluster, code, text, v) = demo("normal");
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(v["passed"], true, "{text}");
    assert_eq!(v["reads"], v["reads_saw_latest_write"], "{text}");
    assert_eq!(v["file_intact"], true, "{text}");
    assert_eq!(v["stale_replica_repaired"], true, "{text}");
    assert!(
        v["chunk_placement"]
            .as_array()
            .is_some_and(|c| c.len() >= 2),
        "{text}"
    );
    assert!(
        text.contains("acknowledged by") && text.contains("quorum met"),
        "{text}"
    );
    assert!(text.contains("read repair sent to"), "{text}");
    assert!(text.contains("[3/3]"), "every step narrated: {text}");
}

#[test]
fn node_failure_loses_no_acknowledged_write() {
    let _one = serial();
    let (cluster, code, text, v) = demo("node-failure");
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(v["acknowledged_writes_lost"], 0, "{text}");
    assert!(v["detection_ms"].as_u64().is_some(), "{text}");
    assert_eq!(v["every_hint_delivered"], true, "{text}");
    assert!(
        v["hints_stored"].as_u64() > Some(0),
        "writes kept as hints: {text}"
    );
    if v["victim_was_leader"] == true {
        assert!(v["failover_ms"].as_u64().is_some(), "{text}");
    }
    assert!(v["unavailable_s"].as_f64().is_some(), "{text}");
    // Restored: no fault left, every node alive.
    let faults = cluster
        .http(0, "GET", "/api/faults", Some(ADMIN_KEY))
        .json();
    assert_eq!(
        faults["faults"].as_array().map(Vec::len),
        Some(0),
        "{faults}"
    );
    for i in 0..3 {
        cluster.await_state(0, i, "alive", Duration::from_secs(30));
    }
}

#[test]
fn scaling_moves_about_one_share_and_loses_nothing() {
    let _one = serial();
    let (cluster, code, text, v) = demo("scaling");
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(v["acknowledged_writes_lost"], 0, "{text}");
    assert_eq!(v["moved"]["near_ideal"], true, "{text}");
    assert!(
        (v["moved"]["ideal"].as_f64().unwrap() - 0.25).abs() < 1e-9,
        "{text}"
    );
    assert!(
        v["latency_during_move"]["count"].as_u64() > Some(0),
        "{text}"
    );
    // Restored: the temporary node left.
    let nodes = cluster.http(0, "GET", "/api/nodes", Some(ADMIN_KEY)).json();
    assert_eq!(nodes["nodes"].as_array().map(Vec::len), Some(3), "{nodes}");
}

#[test]
fn resources_a_full_node_answers_clearly_and_recovers() {
    let _one = serial();
    let (cluster, code, text, v) = demo("resources");
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(v["clear_error"], true, "{text}");
    assert_eq!(v["acknowledged_writes_lost"], 0, "{text}");
    assert_eq!(v["recovered"], true, "{text}");
    // Restored: the node's maxmemory is the config's 64 MB again.
    let full_id = v["full_node"].as_str().unwrap();
    let full = cluster.ids.iter().position(|i| i == full_id).unwrap();
    let mut c = cluster.redis(full);
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut c)
        .unwrap();
    assert_eq!(got[1], (64u64 << 20).to_string());
}

#[test]
fn trade_offs_measure_every_setting() {
    let _one = serial();
    let (cluster, code, text, v) = demo("trade-offs");
    assert_eq!(code, Some(0), "{text}");
    let rows = v["rows"].as_array().expect("rows");
    let settings: Vec<&str> = rows
        .iter()
        .map(|r| r["setting"].as_str().unwrap())
        .collect();
    assert_eq!(
        settings,
        ["W/R 1/1", "W/R 2/2", "W/R 3/1", "W/R 1/3"],
        "{text}"
    );
    for r in rows {
        assert!(r["ops"].as_u64() > Some(0) && r["p99_ms"].as_f64() >= r["p50_ms"].as_f64());
    }
    assert_eq!(v["stale_reads_with_overlapping_quorums"], 0, "{text}");
    assert_eq!(v["files"].as_array().map(Vec::len), Some(2), "{text}");
    assert!(
        text.contains("p50 ms") && text.contains("low-resource mode"),
        "{text}"
    );
    // Restored: the quorum and chunk size are the config's again.
    let c = cluster
        .http(0, "GET", "/api/cluster", Some(ADMIN_KEY))
        .json();
    assert_eq!(
        c["quorum"],
        serde_json::json!({"n": 3, "w": 2, "r": 2}),
        "{c}"
    );
}

fn curl(args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {ADMIN_KEY}"))
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn the_http_api_runs_refuses_and_stops_scenarios() {
    let _one = serial();
    let mut cluster = NodeCluster::start("demo-http", 3, "");
    let base = format!("http://127.0.0.1:{}/api/demos", cluster.http_ports[0]);
    let post = |name: &str| {
        curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &format!("{{\"name\":\"{name}\",\"short\":true}}"),
            &base,
        ])
    };
    let (code, unknown) = post("nope");
    assert_eq!(code, 400, "{unknown}");
    assert!(unknown["error"]["message"]
        .as_str()
        .unwrap()
        .contains("trade-offs"));
    let (code, started) = post("normal");
    assert_eq!(code, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let (code, refused) = post("resources");
    assert_eq!(code, 409, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("is running"));
    let done = wait_for("the run's end", Duration::from_secs(120), || {
        let (_, d) = curl(&[&format!("{base}/{id}")]);
        (d["state"] != "running").then_some(d)
    });
    assert_eq!(done["state"], "passed", "{done}");
    assert_eq!(done["verdict"]["passed"], true, "{done}");
    assert_eq!(done["step"]["index"], 3, "{done}");
    assert!(done["narration"].as_array().unwrap().len() > 5, "{done}");
    let (_, list) = curl(&[&base]);
    assert_eq!(list["demos"].as_array().map(Vec::len), Some(1), "{list}");

    // Stopped between steps: ends `stopped`, the fault it injected cleared.
    let (code, started) = post("node-failure");
    assert_eq!(code, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    wait_for("the kill step", Duration::from_secs(30), || {
        let (_, d) = curl(&[&format!("{base}/{id}")]);
        (d["step"]["index"].as_u64() >= Some(3)).then_some(())
    });
    let (code, _) = curl(&["-X", "DELETE", &format!("{base}/{id}")]);
    assert_eq!(code, 202);
    let done = wait_for("the stop", Duration::from_secs(60), || {
        let (_, d) = curl(&[&format!("{base}/{id}")]);
        (d["state"] != "running").then_some(d)
    });
    assert_eq!(done["state"], "stopped", "{done}");
    let text = done["narration"].to_string();
    assert!(text.contains("cleared"), "{done}");

    // A node down: refused, saying which.
    wait_for("n3 back", Duration::from_secs(60), || {
        let n = cluster.http(0, "GET", "/api/nodes", Some(ADMIN_KEY)).json();
        n["nodes"]
            .as_array()?
            .iter()
            .all(|r| r["state"] == "alive")
            .then_some(())
    });
    cluster.kill_node(2);
    cluster.await_state(0, 2, "down", Duration::from_secs(30));
    let (code, refused) = post("normal");
    assert_eq!(code, 409, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not healthy"),
        "{refused}"
    );
}
