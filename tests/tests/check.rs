//! The consistency checker against a real 3-node cluster: `rcluster check` without faults
//! passes (exit 0) and writes a JSON-lines history that judges the same again; it FAILS (exit
//! 1, lost writes reported) when two replicas acknowledge writes without storing them
//! (`RC.DEBUG DROP-WRITES on`, only allowed with `debug_commands: true`); `POST /api/checks`
//! runs one at a time and reports by id (driven with curl); and a short fault schedule passes.

use std::path::Path;
use std::time::{Duration, Instant};

use rcluster_domain::check::history::{self, Kind, Op};
use rcluster_tests::nodes::{json, rcluster, NodeCluster, ADMIN_KEY, READ_KEY};
use rcluster_tests::{call, error_of};

/// Runs `rcluster check <args, split at spaces> --config <cluster config>`; returns (exit
/// code, stdout, stderr).
fn check(c: &NodeCluster, args: &str) -> (Option<i32>, String, String) {
    let config = c.config_path().display().to_string();
    let mut all = vec!["check"];
    all.extend(args.split_whitespace());
    all.extend(["--config", &config, "--converge-seconds", "10"]);
    rcluster(&all, c.dir.path())
}

/// The number on the report line starting with `name: `.
fn count(out: &str, name: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no '{name}: <n>' line in:\n{out}"))
}

#[test]
fn a_check_without_faults_passes_writes_a_history_and_runs_over_http() {
    let c = NodeCluster::start("check-pass", 3, "");
    c.await_all_alive(Duration::from_secs(20));
    // Without debug_commands the debug switch is refused.
    let (code, detail) = error_of(call(&mut c.redis(1), &[b"RC.DEBUG", b"DROP-WRITES", b"on"]));
    assert_eq!(code, "BADARG", "{detail}");
    assert!(detail.contains("disabled"), "{detail}");

    let history_path = c.dir.path().join("history.jsonl");
    let history_arg = history_path.display().to_string();
    let (status, out, err) = check(
        &c,
        &format!("--schedule none --seconds 4 --seed 11 --history {history_arg}"),
    );
    assert_eq!(status, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("verdict: PASSED (replay with --seed 11)"),
        "{out}"
    );
    assert_eq!(count(&out, "acknowledged writes lost"), 0, "{out}");
    assert_eq!(count(&out, "stale reads"), 0, "{out}");
    assert_eq!(count(&out, "replicas not converged"), 0, "{out}");
    // The history: invokes and their outcomes, reads after healing, replica versions.
    let text = std::fs::read_to_string(&history_path).expect("history written");
    let events = history::parse(&text).expect("every line is an event");
    let has = |kind: Kind, op: Op| events.iter().any(|e| e.kind == kind && e.op == op);
    for op in [Op::Write, Op::Read, Op::Upload] {
        assert!(
            has(Kind::Invoke, op) && has(Kind::Ok, op),
            "no acknowledged {op:?}"
        );
    }
    assert!(has(Kind::Ok, Op::FinalRead) && has(Kind::Ok, Op::FinalDownload));
    assert!(events
        .iter()
        .any(|e| e.op == Op::ReplicaRead && e.version.as_deref().is_some_and(|v| v.contains('-'))));
    // Judging the file again gives the same verdict.
    let again = rcluster_domain::check::judge::judge(&events, Default::default());
    assert!(again.passed && again.operations.acknowledged > 0);

    // Over HTTP (curl): a bad request, then a run, one at a time, reported by id.
    let (status, body) = c.curl(
        0,
        "POST",
        "/api/checks",
        ADMIN_KEY,
        Some(r#"{"schedule":"chaos","seconds":3}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown schedule 'chaos'"), "{body}");
    let (status, _) = c.curl(
        0,
        "POST",
        "/api/checks",
        READ_KEY,
        Some(r#"{"schedule":"none","seconds":3}"#),
    );
    assert_eq!(status, 403);
    let start = r#"{"schedule":"none","seconds":3,"seed":5,"workloads":["register","set"]}"#;
    let (status, body) = c.curl(0, "POST", "/api/checks", ADMIN_KEY, Some(start));
    assert_eq!(status, 202, "{body}");
    let id = json(&body)["id"].as_str().expect("an id").to_string();
    let (status, body) = c.curl(0, "POST", "/api/checks", ADMIN_KEY, Some(start));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains(&format!("check {id} is running")), "{body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let (status, body) = c.curl(0, "GET", &format!("/api/checks/{id}"), READ_KEY, None);
        assert_eq!(status, 200, "{body}");
        let check = json(&body);
        assert_eq!(check["seed"], 5);
        assert!(check["progress"]["phase"].is_string());
        if check["state"] != "running" {
            break check;
        }
        assert!(Instant::now() < deadline, "the check never ended: {check}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(done["state"], "passed", "{done:#}");
    let report = &done["report"];
    assert!(
        report["operations"]["acknowledged"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["lost"], serde_json::json!([]));
    assert_eq!(
        report["setup"]["workloads"],
        serde_json::json!(["register", "set"])
    );
    let history = done["history"].as_str().expect("a history file");
    assert!(Path::new(history).exists(), "{history}");
    let (status, body) = c.curl(1, "GET", "/api/checks", READ_KEY, None);
    assert_eq!(status, 200);
    assert_eq!(
        json(&body)["checks"],
        serde_json::json!([]),
        "each node lists its own"
    );
    let (_, body) = c.curl(0, "GET", "/api/checks", READ_KEY, None);
    assert_eq!(json(&body)["checks"][0]["id"], id.as_str());
    let (status, _) = c.curl(0, "GET", "/api/checks/c-999", READ_KEY, None);
    assert_eq!(status, 404);
}

#[test]
fn the_checker_fails_when_replicas_acknowledge_writes_without_storing_them() {
    let c = NodeCluster::start("check-drop", 3, "debug_commands: true\n");
    c.await_all_alive(Duration::from_secs(20));
    for i in [1, 2] {
        let ok: String = redis::cmd("RC.DEBUG")
            .arg("DROP-WRITES")
            .arg("on")
            .query(&mut c.redis(i))
            .expect("DROP-WRITES on");
        assert_eq!(ok, "OK");
    }
    let (status, out, err) = check(
        &c,
        "--schedule none --seconds 4 --seed 3 --workload register,set",
    );
    assert_eq!(status, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(count(&out, "acknowledged writes lost") > 0, "{out}");
    assert!(count(&out, "replicas not converged") > 0, "{out}");
    assert!(out.contains("verdict: FAILED"), "{out}");
    assert!(err.contains("check failed:"), "{err}");
}

#[test]
fn a_short_fault_schedule_passes() {
    let c = NodeCluster::start("check-faults", 3, "");
    c.await_all_alive(Duration::from_secs(20));
    let (status, out, err) = check(
        &c,
        "--schedule partition-halves --seconds 8 --seed 2 --workload register,set",
    );
    assert_eq!(status, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let faults = count(&out, "faults");
    assert!(
        faults >= 2,
        "the schedule's partitions were injected:\n{out}\n{err}"
    );
    assert!(!out.contains("refused"), "{out}");
    assert!(err.contains("injected: {\"groups\":"), "{err}");
    assert_eq!(count(&out, "acknowledged writes lost"), 0, "{out}");
    assert_eq!(count(&out, "stale reads"), 0, "{out}");
}
