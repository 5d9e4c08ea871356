//! The metrics checked on real software: Debian's `prometheus` scrapes a real 3-node cluster
//! (configured by `rcluster prometheus-config`) under a short load, loads the recording and
//! alerting rules of `config/prometheus/rules` (also checked and unit-tested with `promtool`),
//! and answers every query of every panel of every Grafana dashboard of `config/grafana`, each
//! of which must return series.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcluster_tests::nodes::{download, rcluster, upload, NodeCluster, ADMIN_KEY};
use rcluster_tests::{free_port, pseudo_random, repo_root, wait_for, TempDir};

/// Heartbeats every 100 ms so the cluster settles quickly.
const FAST: &str = "intervals: {heartbeat_ms: 100}";
const WAIT: Duration = Duration::from_secs(60);

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a tool that must be installed (`./rc.sh deps` installs the prometheus package).
fn tool(name: &str, args: &[&str], dir: &Path) -> std::process::Output {
    match Command::new(name).args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run {name} (run ./rc.sh deps, which installs prometheus): {e}"),
    }
}

fn assert_ok(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `GET` on Prometheus's HTTP API through curl, the query string's pairs URL-encoded.
fn api(port: u16, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
    let mut args = vec![
        "-sS".to_string(),
        "--max-time".into(),
        "10".into(),
        "-G".into(),
        format!("http://127.0.0.1:{port}{path}"),
    ];
    for (k, v) in params {
        args.push("--data-urlencode".into());
        args.push(format!("{k}={v}"));
    }
    let out = Command::new("curl").args(&args).output().expect("run curl");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        serde_json::json!({"status": "curl", "error": format!("{e}: {}{}",
            String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))})
    })
}

/// An instant query: the result vector, or why it failed.
fn query(port: u16, expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let r = api(port, "/api/v1/query", &[("query", expr)]);
    if r["status"] != "success" {
        return Err(format!("{}: {}", r["errorType"], r["error"]));
    }
    Ok(r["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// A Grafana expression made plain PromQL: every dashboard variable as its "All" value, and the
/// interval variables Grafana fills in as fixed ranges.
fn substitute(expr: &str, variables: &[(String, String)]) -> String {
    let mut e = expr
        .replace("$__rate_interval", "15s")
        .replace("$__interval", "5s")
        .replace("$__range", "5m");
    for (name, value) in variables {
        for form in [
            format!("${{{name}}}"),
            format!("[[{name}]]"),
            format!("${name}"),
        ] {
            e = e.replace(&form, value);
        }
    }
    e
}

fn dashboards() -> Vec<(PathBuf, serde_json::Value)> {
    let dir = repo_root().join("config/grafana/dashboards");
    let mut out: Vec<(PathBuf, serde_json::Value)> = std::fs::read_dir(&dir)
        .expect("config/grafana/dashboards")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (p, json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The Prometheus expressions a dashboard runs: every panel target's (with its title), and its
/// variables' `label_values(selector, label)` queries as `count by (label) (selector)`.
fn expressions(d: &serde_json::Value) -> Vec<(String, String)> {
    let variables: Vec<(String, String)> = d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let all = v["allValue"].as_str().unwrap_or(".*").to_string();
            (v["name"].as_str().unwrap_or_default().to_string(), all)
        })
        .collect();
    let mut out = Vec::new();
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["definition"].as_str().unwrap_or_default();
        if let Some(inner) = q
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
        {
            let (selector, label) = inner
                .rsplit_once(',')
                .expect("label_values(selector, label)");
            let expr = format!("count by ({}) ({})", label.trim(), selector.trim());
            out.push((
                format!("variable {}", v["name"]),
                substitute(&expr, &variables),
            ));
        }
    }
    for p in d["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("every target has an expr");
            out.push((
                format!("panel {} ({})", p["title"], t["refId"]),
                substitute(expr, &variables),
            ));
        }
    }
    out
}

#[test]
fn dashboards_parse_and_reference_their_data_source() {
    let ds = std::fs::read_to_string(
        repo_root().join("config/grafana/provisioning/datasources/rcluster.yml"),
    )
    .unwrap();
    assert!(ds.contains("uid: rcluster-prometheus"), "{ds}");
    let all = dashboards();
    assert!(all.len() >= 6, "{all:?}");
    let mut uids = Vec::new();
    for (path, d) in &all {
        uids.push(d["uid"].as_str().unwrap().to_string());
        let panels = d["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{}", path.display());
        for p in panels {
            assert_eq!(
                p["datasource"]["uid"],
                "rcluster-prometheus",
                "{}",
                path.display()
            );
        }
        assert!(!expressions(d).is_empty());
    }
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), all.len(), "dashboard uids are unique");
    // Substitution leaves no variable behind.
    let e = substitute(
        "rate(x{node=~\"$node\", c=~\"${cluster}\"}[$__rate_interval])",
        &[
            ("node".into(), ".*".into()),
            ("cluster".into(), ".*".into()),
        ],
    );
    assert_eq!(e, "rate(x{node=~\".*\", c=~\".*\"}[15s])");
}

#[test]
fn rules_pass_promtool() {
    let dir = repo_root().join("config/prometheus");
    let out = tool(
        "promtool",
        &["check", "rules", "rules/recording.yml", "rules/alerts.yml"],
        &dir,
    );
    assert_ok("promtool check rules", &out);
    let out = tool(
        "promtool",
        &["test", "rules", "tests/alerts_test.yml"],
        &dir,
    );
    assert_ok("promtool test rules", &out);
    let out = tool("promtool", &["check", "config", "prometheus.yml"], &dir);
    assert_ok("promtool check config", &out);
    let alerts = std::fs::read_to_string(dir.join("rules/alerts.yml")).unwrap();
    for name in [
        "RClusterNodeDown",
        "RClusterQuorumLost",
        "RClusterClockDrift",
        "RClusterHintBacklogGrowing",
        "RClusterRedisMemoryNearLimit",
        "RClusterNoRaftLeader",
    ] {
        assert!(alerts.contains(&format!("alert: {name}")), "{name}");
    }
}

#[test]
fn every_dashboard_query_returns_series_from_a_real_prometheus() {
    let cluster = NodeCluster::start("observability", 3, FAST);
    cluster.await_leader(&[0, 1, 2], WAIT);
    for observer in 0..3 {
        for node in 0..3 {
            cluster.await_state(observer, node, "alive", WAIT);
        }
    }

    // The scrape configuration, generated for this cluster, with the repository's rules.
    let work = TempDir::new("prometheus");
    let rules = repo_root().join("config/prometheus/rules/*.yml");
    let config_path = cluster.config_path();
    let (code, text, err) = rcluster(
        &[
            "prometheus-config",
            "--config",
            config_path.to_str().unwrap(),
            "--scrape-interval",
            "1s",
            "--rules",
            rules.to_str().unwrap(),
        ],
        work.path(),
    );
    assert_eq!(code, Some(0), "{err}");
    for port in &cluster.http_ports {
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    }
    let prom_config = work.path().join("prometheus.yml");
    std::fs::write(&prom_config, &text).unwrap();
    assert_ok(
        "promtool check config",
        &tool(
            "promtool",
            &["check", "config", "prometheus.yml"],
            work.path(),
        ),
    );

    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start prometheus (run ./rc.sh deps, which installs it)");
    let prom = Prometheus { child, port };

    // A short load: quorum writes and reads on every node, kv over HTTP, a file both ways.
    for i in 0..3 {
        let mut c = cluster.redis(i);
        for k in 0..20 {
            let key = format!("obs-{i}-{k}");
            wait_for("an RC.SET and an RC.GET", WAIT, || {
                let mut set = redis::cmd("RC.SET");
                set.arg(&key).arg("v").query::<redis::Value>(&mut c).ok()?;
                redis::cmd("RC.GET")
                    .arg(&key)
                    .query::<redis::Value>(&mut c)
                    .ok()
            });
        }
        let _ = redis::cmd("RC.GET").query::<redis::Value>(&mut c); // an error: wrong arity
    }
    let body = pseudo_random(3 << 20, 7);
    let meta = upload(&cluster, 0, "obs.bin", &body);
    let (status, _, back) = download(&cluster, 1, meta["id"].as_str().unwrap(), None);
    assert_eq!((status, back.len()), (200, body.len()));
    let r = cluster.http(2, "PUT", "/api/kv/obs-http", Some(ADMIN_KEY));
    assert!(r.status < 500, "{r:?}");

    // Every family a node shows is documented.
    let docs = std::fs::read_to_string(repo_root().join("docs/metrics.md")).unwrap();
    let text = cluster.http(0, "GET", "/metrics", None).body;
    let undocumented: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|name| !docs.contains(&format!("`{name}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
    // And the exposition after the load (every histogram filled) passes promtool's lint.
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    std::io::Write::write_all(&mut lint.stdin.take().unwrap(), text.as_bytes()).unwrap();
    assert_ok("promtool check metrics", &lint.wait_with_output().unwrap());

    // Every node scraped, and the rules loaded and evaluated without error.
    wait_for("every target up in Prometheus", WAIT, || {
        let up = query(prom.port, "up{job=\"rcluster\"} == 1").ok()?;
        (up.len() == 3).then_some(())
    });
    wait_for("the rules loaded and evaluated", WAIT, || {
        let r = api(prom.port, "/api/v1/rules", &[]);
        let groups = r["data"]["groups"].as_array()?.clone();
        let names: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
        if !(names.contains(&"rcluster-recording") && names.contains(&"rcluster-alerts")) {
            return None;
        }
        let rules: Vec<&serde_json::Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        for rule in &rules {
            assert_ne!(rule["health"], "err", "rule failed: {rule}");
        }
        rules.iter().all(|r| r["health"] == "ok").then_some(())
    });
    // A few scrapes after the load, so rates have two samples in their windows.
    let settled = Instant::now();
    wait_for("RC.SET durations scraped from every node", WAIT, || {
        let v = query(
            prom.port,
            "rcluster_rc_request_duration_seconds_count{command=\"RC.SET\",outcome=\"ok\"} > 0",
        )
        .ok()?;
        (v.len() == 3 && settled.elapsed() > Duration::from_secs(5)).then_some(())
    });

    let mut failures = Vec::new();
    let mut checked = 0;
    for (path, d) in dashboards() {
        for (what, expr) in expressions(&d) {
            checked += 1;
            // A query may lack data for a scrape or two more: retried briefly before it fails.
            let deadline = Instant::now() + Duration::from_secs(10);
            let outcome = loop {
                match query(prom.port, &expr) {
                    Ok(v) if !v.is_empty() => break Ok(()),
                    Ok(_) if Instant::now() < deadline => {}
                    Ok(_) => break Err("no series".to_string()),
                    Err(e) => break Err(e),
                }
                std::thread::sleep(Duration::from_millis(500));
            };
            if let Err(e) = outcome {
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                failures.push(format!("{file} {what}: {e}\n    {expr}"));
            }
        }
    }
    assert!(checked >= 40, "only {checked} queries");
    assert!(
        failures.is_empty(),
        "{} of {checked} dashboard queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
