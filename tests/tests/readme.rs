//! Every runnable example of README.md, run against a real 3-node cluster: the commands of its
//! fenced blocks (`redis-cli`, `rcluster`, `curl`, `kill`), in order, with the README's ports
//! (Redis 6379-6381, HTTP 8080-8082) replaced by the ones the harness picked and `rcluster`
//! pointed at the harness's config. Each must succeed, and where the README shows output, the
//! output must have that shape: lines compared with runs of spaces as one, `...` standing for
//! anything within a line (or, alone on a line, for any number of lines), `<name>` for one word
//! that later commands use in its place. The examples that cannot run here are listed in
//! [`NOT_RUN`], with why.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rcluster_tests::nodes::{http_try, NodeCluster};
use rcluster_tests::{module_path, rcluster_bin, repo_root, wait_for};

/// README commands that do not run here, by their start, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "./rc.sh up",
        "builds in release mode and starts its own cluster on the fixed ports; the harness \
         starts the same 3 nodes with `rcluster up` on free ports",
    ),
    (
        "./rc.sh test",
        "runs the whole test suite, this test included",
    ),
    (
        "rcluster prometheus-config --config config/cluster.yaml >",
        "rewrites the repository's config/prometheus/prometheus.yml; tests/tests/observability.rs \
         checks that the committed file is this command's output",
    ),
    (
        "rcluster check --schedule mixed --seconds 60",
        "a minute of faults; tests/tests/check.rs runs the checker with real faults (a short \
         partition-halves schedule) in CI, and checks that it fails when replicas drop writes",
    ),
    (
        "./rc.sh compose-secrets",
        "writes random keys into the checkout's .env and deploy/secrets/ (git-ignored)",
    ),
    (
        "docker compose up",
        "no container engine runs here: tests/deploy/validate.sh checks docker-compose.yml with \
         docker-compose config, and tests/tests/netns.rs runs its containers' configuration in \
         network namespaces",
    ),
    (
        "rcluster demo normal",
        "a guided scenario; tests/tests/demo.rs runs each in its short mode on its own cluster and \
         asserts its verdict",
    ),
    (
        "rcluster demo node-failure",
        "kills the leader under load (tests/tests/demo.rs runs it)",
    ),
    (
        "rcluster demo scaling",
        "adds and removes a fourth node (tests/tests/demo.rs runs it)",
    ),
    (
        "rcluster demo resources",
        "fills a node's memory on purpose (tests/tests/demo.rs runs it)",
    ),
    (
        "rcluster demo trade-offs",
        "changes the quorum and chunk size for a while (tests/tests/demo.rs runs it)",
    ),
    (
        "prometheus --config.file",
        "a Prometheus server that runs until stopped; tests/tests/observability.rs runs Debian's \
         prometheus against a cluster and every dashboard query through it",
    ),
];

/// One example: the command and the output the README shows (empty: none shown).
#[derive(Debug)]
struct Example {
    command: String,
    output: Vec<String>,
}

/// The examples of the fenced blocks of `readme`: in `sh` blocks every line that is not a
/// comment; in `text` blocks every line starting with `$ `, with the lines up to the next one as
/// its output. A trailing `# comment` (after two spaces) is dropped.
fn examples(readme: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut fence: Option<String> = None;
    for line in readme.lines() {
        if let Some(rest) = line.strip_prefix("```") {
            fence = match fence {
                None => Some(rest.trim().to_string()),
                Some(_) => None,
            };
            continue;
        }
        let Some(kind) = fence.as_deref() else {
            continue;
        };
        let command = match kind {
            "sh" | "bash" => Some(line).filter(|l| !l.trim().is_empty() && !l.starts_with('#')),
            _ => line.strip_prefix("$ "),
        };
        match command {
            Some(c) => out.push(Example {
                command: strip_comment(c).to_string(),
                output: Vec::new(),
            }),
            None if kind != "sh" && kind != "bash" => {
                if let Some(last) = out.last_mut() {
                    last.output.push(line.to_string());
                }
            }
            None => {}
        }
    }
    out
}

/// `cmd  # comment` -> `cmd`.
fn strip_comment(line: &str) -> &str {
    match line.find("  #") {
        Some(i) => line[..i].trim_end(),
        None => line.trim_end(),
    }
}

/// Runs of whitespace as one space, trimmed.
fn squeeze(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `line` has the shape of `expected` (squeezed both), where `...` stands for anything
/// and `<name>` for one word, recorded in `vars`.
fn line_matches(expected: &str, line: &str, vars: &mut BTreeMap<String, String>) -> bool {
    fn go(pattern: &str, text: &str, vars: &mut BTreeMap<String, String>) -> bool {
        if pattern.is_empty() {
            return text.is_empty();
        }
        if let Some(rest) = pattern.strip_prefix("...") {
            return (0..=text.len())
                .filter(|i| text.is_char_boundary(*i))
                .any(|i| go(rest, &text[i..], vars));
        }
        if let Some(end) = pattern
            .strip_prefix('<')
            .and_then(|p| p.find('>'))
            .filter(|end| {
                let name = &pattern[1..=*end];
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        {
            let name = pattern[1..=end].to_string();
            let word_end = text.find(' ').unwrap_or(text.len());
            if word_end == 0 {
                return false;
            }
            let before = vars.insert(name.clone(), text[..word_end].to_string());
            if go(&pattern[end + 2..], &text[word_end..], vars) {
                return true;
            }
            match before {
                Some(v) => vars.insert(name, v),
                None => vars.remove(&name),
            };
            return false;
        }
        let mut chars = pattern.chars();
        let c = chars.next().unwrap_or_default();
        text.starts_with(c) && go(chars.as_str(), &text[c.len_utf8()..], vars)
    }
    go(&squeeze(expected), &squeeze(line), vars)
}

/// Whether `lines` have the shape of `expected`; a line `...` stands for any number of lines.
fn output_matches(
    expected: &[String],
    lines: &[&str],
    vars: &mut BTreeMap<String, String>,
) -> bool {
    match expected.split_first() {
        None => lines.is_empty(),
        Some((e, rest)) if e.trim() == "..." => {
            (0..=lines.len()).any(|skip| output_matches(rest, &lines[skip..], vars))
        }
        Some((e, rest)) => match lines.split_first() {
            Some((l, more)) => line_matches(e, l, vars) && output_matches(rest, more, vars),
            None => false,
        },
    }
}

/// The README's ports and the harness's, in that order.
fn ports(c: &NodeCluster) -> Vec<(String, String)> {
    let mut map = Vec::new();
    for i in 0..3 {
        map.push(((6379 + i).to_string(), c.redis_ports[i].to_string()));
        map.push(((8080 + i).to_string(), c.http_ports[i].to_string()));
    }
    map
}

/// `text` with the README's ports replaced by the harness's, and `<name>` by what was recorded.
fn substitute(text: &str, ports: &[(String, String)], vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (readme, ours) in ports {
        out = out.replace(&format!(":{readme}"), &format!(":{ours}"));
        out = out.replace(&format!("-p {readme}"), &format!("-p {ours}"));
    }
    for (name, value) in vars {
        out = out.replace(&format!("<{name}>"), value);
    }
    out
}

/// Runs `command` with bash in `dir` (from a script file, so a `pgrep -f` in it never finds the
/// shell itself): `rcluster` is the built binary on the harness's config, and `redis-cli` prints
/// as on a terminal (`--no-raw`). Returns (success, stdout, stderr).
fn run(dir: &Path, config: &Path, command: &str) -> (bool, String, String) {
    let script = format!(
        "rcluster() {{ '{}' \"$@\" --config '{}'; }}\n\
         redis-cli() {{ command redis-cli --no-raw \"$@\"; }}\n\
         {command}\n",
        rcluster_bin().display(),
        config.display()
    );
    let path = dir.join("example.sh");
    std::fs::write(&path, script).expect("write the script");
    let out = Command::new("bash")
        .arg(&path)
        .current_dir(dir)
        .output()
        .expect("run sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_readme_example_runs_as_shown() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let all = examples(&readme);
    assert!(all.len() >= 15, "too few examples found: {all:#?}");
    let c = NodeCluster::start("readme", 3, "redis_maxmemory_mb: 256\n");
    for observer in 0..3 {
        for node in 0..3 {
            c.await_state(observer, node, "alive", Duration::from_secs(20));
        }
    }
    let dir = c.dir.path().to_path_buf();
    // The files the examples name.
    std::fs::write(
        dir.join("video.mp4"),
        rcluster_tests::pseudo_random(1_500_000, 6),
    )
    .unwrap();
    // `rcluster node add` starts the new node with the module next to the binary.
    assert!(module_path().exists());
    let ports = ports(&c);
    let mut vars = BTreeMap::new();
    let mut ran = 0;
    let mut not_run = std::collections::BTreeSet::new();
    let mut skipped = 0;
    for example in &all {
        if let Some((start, why)) = NOT_RUN.iter().find(|(s, _)| example.command.starts_with(s)) {
            eprintln!("not run: {} ({why})", example.command);
            not_run.insert(*start);
            skipped += 1;
            continue;
        }
        let known = ["redis-cli ", "rcluster ", "curl ", "kill "];
        assert!(
            known.iter().any(|k| example.command.starts_with(k)),
            "a README example neither run nor listed in NOT_RUN: {}",
            example.command
        );
        let command = substitute(&example.command, &ports, &vars);
        let (ok, out, err) = run(&dir, &c.config_path(), &command);
        assert!(ok, "README example failed: {command}\n{out}{err}");
        if !example.output.is_empty() {
            let expected: Vec<String> = example
                .output
                .iter()
                .map(|l| substitute(l, &ports, &BTreeMap::new()))
                .collect();
            let lines: Vec<&str> = out.lines().collect();
            assert!(
                output_matches(&expected, &lines, &mut vars),
                "README example {command}: output\n{out}\ndoes not have the shape\n{}",
                expected.join("\n")
            );
        }
        if example.command.starts_with("kill ") {
            // The README says the node process starts its Redis again: the rest needs it.
            let port = c.http_ports[1];
            wait_for("n2's Redis back", Duration::from_secs(30), || {
                http_try(port, "GET", "/api/health", None).filter(|h| h.status == 200)
            });
        }
        ran += 1;
    }
    assert_eq!(ran + skipped, all.len(), "every example run or listed");
    // No stale entry: every command listed as not run is still in the README.
    let stale: Vec<&str> = NOT_RUN
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| !not_run.contains(s))
        .collect();
    assert!(
        stale.is_empty(),
        "NOT_RUN lists commands the README no longer has: {stale:?}"
    );
}

#[test]
fn shapes_match_as_documented() {
    let mut vars = BTreeMap::new();
    assert!(line_matches(
        "n1* 127.0.0.1:6379  alive ...",
        "n1*   127.0.0.1:6379 alive 0.1s ago up",
        &mut vars
    ));
    assert!(!line_matches("n1* alive ...", "n1* down ...", &mut vars));
    assert!(line_matches("id: <id>", "id: 4e74", &mut vars));
    assert_eq!(vars["id"], "4e74");
    assert!(!line_matches("id: <id>", "id: ", &mut vars));
    let expected: Vec<String> = ["saved: x", "...", "checksum verified"]
        .map(String::from)
        .to_vec();
    assert!(output_matches(
        &expected,
        &["saved: x", "size: 3", "sha256: ab", "checksum verified"],
        &mut vars
    ));
    assert!(!output_matches(
        &expected,
        &["saved: x", "size: 3"],
        &mut vars
    ));
    let found = examples("```sh\n./rc.sh up   # go\n```\ntext\n```text\n$ a  # c\nout\n$ b\n```\n");
    assert_eq!(found.len(), 3);
    assert_eq!((found[1].command.as_str(), found[1].output.len()), ("a", 1));
    assert_eq!(found[2].command, "b");
}
