//! The data commands of the `rcluster` CLI against a real 3-node cluster: files of awkward sizes
//! (empty, one byte, exactly one chunk, one chunk and a byte, 100 MB) go up with `file put` and
//! come back byte-identical with `file get` through every node; `file ls` and `file rm`; keys
//! with `put`/`get`/`del`; and the exit codes (2 for bad input and 4xx answers, 1 when no node
//! can be reached), with nothing left behind by a refused download. A read moves on past a node
//! whose own Redis is down; a write does not.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcluster_domain::checksum::sha256_hex;
use rcluster_tests::nodes::{rcluster, NodeCluster, ADMIN_KEY, READ_KEY};
use rcluster_tests::pseudo_random as data;

const CHUNK: usize = 1 << 20;

/// Runs `rcluster <args> --config <cluster config>` in `dir`; returns (exit code, stdout, stderr).
fn cli(c: &NodeCluster, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let config = c.config_path().display().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", &config]);
    rcluster(&all, dir)
}

/// The value of a `name: value` line of the CLI's output.
fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no '{name}:' line in {out:?}"))
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn files_round_trip_through_every_node() {
    let c = NodeCluster::start(
        "cli-files",
        3,
        "redis_maxmemory_mb: 1024\nfiles: {max_file_bytes: 100000000}",
    );
    c.await_all_alive(Duration::from_secs(15));
    let up = c.dir.path().join("up");
    let down = c.dir.path().join("down");
    std::fs::create_dir_all(&up).unwrap();
    std::fs::create_dir_all(&down).unwrap();
    let sizes = [0, 1, CHUNK, CHUNK + 1, 100_000_000];
    let mut ids = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let bytes = data(size, i as u64 + 7);
        let sha = sha256_hex(&bytes);
        let name = format!("f{size}.bin");
        let path = up.join(&name);
        std::fs::write(&path, &bytes).unwrap();
        let (code, out, err) = cli(&c, &up, &["file", "put", path.to_str().unwrap(), "-q"]);
        assert_eq!(code, Some(0), "put {size} B: {out}{err}");
        assert!(out.contains("checksum verified"), "{out}");
        assert_eq!(field(&out, "sha256"), sha, "put {size} B");
        assert_eq!(field(&out, "size"), size.to_string());
        assert_eq!(field(&out, "name"), name);
        let id = field(&out, "id").to_string();
        for node in &c.ids {
            let target = down.join(format!("{node}-{name}"));
            let (code, out, err) = cli(
                &c,
                &down,
                &[
                    "file",
                    "get",
                    &id,
                    "-o",
                    target.to_str().unwrap(),
                    "--node",
                    node,
                    "-q",
                ],
            );
            assert_eq!(code, Some(0), "get {size} B via {node}: {out}{err}");
            assert!(out.contains("checksum verified"), "{out}");
            let got = std::fs::read(&target).unwrap();
            assert_eq!(got.len(), size, "get {size} B via {node}");
            assert_eq!(sha256_hex(&got), sha, "get {size} B via {node}");
        }
        ids.push((id, name, sha));
    }

    // Default destination: the stored name in the current folder; no overwrite without --force.
    let (id, name, sha) = ids[3].clone();
    let (code, out, err) = cli(&c, &down, &["file", "get", &id, "-q"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(sha256_hex(&std::fs::read(down.join(&name)).unwrap()), sha);
    std::fs::write(down.join(&name), b"keep me").unwrap();
    let (code, _, err) = cli(&c, &down, &["file", "get", &id, "-q"]);
    assert_eq!(code, Some(2), "existing destination: {err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(down.join(&name)).unwrap(), b"keep me");
    let (code, out, err) = cli(&c, &down, &["file", "get", &id, "-q", "--force"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(sha256_hex(&std::fs::read(down.join(&name)).unwrap()), sha);

    // The listing shows every file, with its SHA-256 prefix; pages are followed up to --limit.
    let (code, out, err) = cli(&c, &down, &["file", "ls"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("ID"), "{out}");
    for (id, name, sha) in &ids {
        let line = out
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not listed: {out}"));
        assert!(
            line.contains(name.as_str()) && line.contains(&sha[..12]),
            "{line}"
        );
    }
    let (code, out, _) = cli(&c, &down, &["file", "ls", "--limit", "2"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 3, "header and two files: {out}");

    // A file bigger than files.max_file_bytes is refused (413 → exit 2) with the server's word.
    let big = up.join("big.bin");
    std::fs::write(&big, data(100_000_001, 99)).unwrap();
    let (code, _, err) = cli(&c, &up, &["file", "put", big.to_str().unwrap(), "-q"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("413 TOO_LARGE") && err.contains("max_file_bytes"),
        "{err}"
    );

    // Removing a file; then it is missing (exit 2) and the refused download leaves nothing.
    let (id, _, _) = ids[1].clone();
    let (code, out, err) = cli(&c, &down, &["file", "rm", &id]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("deleted"), "{out}");
    let before = listing(&down);
    let (code, _, err) = cli(&c, &down, &["file", "get", &id, "-q"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("NOT_FOUND"), "{err}");
    let (code, _, err) = cli(&c, &down, &["file", "rm", &id]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(listing(&down), before, "nothing left behind");
    assert!(
        !listing(&down).iter().any(|n| n.ends_with(".part")),
        "no partial files"
    );
}

#[test]
fn keys_and_exit_codes() {
    let c = NodeCluster::start("cli-kv", 3, "");
    c.await_all_alive(Duration::from_secs(15));
    let dir: PathBuf = c.dir.path().to_path_buf();
    let (code, out, err) = cli(&c, &dir, &["put", "greeting", "hello world", "-w", "3"]);
    assert_eq!(code, Some(0), "{out}{err}");
    for node in &c.ids {
        let (code, out, err) = cli(&c, &dir, &["get", "greeting", "--node", node, "-r", "3"]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, "hello world", "via {node}");
    }
    // A value starting with '-' is a value, not a flag.
    let (code, _, err) = cli(&c, &dir, &["put", "neg", "-5"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(cli(&c, &dir, &["get", "neg"]).1, "-5");
    let (code, _, err) = cli(&c, &dir, &["del", "greeting"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = cli(&c, &dir, &["get", "greeting"]);
    assert_eq!(code, Some(2), "a missing key is bad input: {err}");
    assert!(
        err.contains("no key 'greeting'"),
        "the server's message: {err}"
    );

    // Bad input: a quorum the server refuses (400), a missing file id (404), unknown node,
    // a read-only key for a write (403), bad arguments.
    let (code, _, err) = cli(&c, &dir, &["get", "x", "-r", "9"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = cli(
        &c,
        &dir,
        &["file", "get", "00000000000000000000000000000000"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("404"), "{err}");
    let (code, _, err) = cli(&c, &dir, &["get", "x", "--node", "n9"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = cli(
        &c,
        &dir,
        &[
            "put",
            "x",
            "y",
            "--api-key",
            rcluster_tests::nodes::READ_KEY,
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("403"), "{err}");
    let (code, _, _) = cli(&c, &dir, &["file", "put"]);
    assert_eq!(code, Some(2));
}

#[test]
fn unreachable_cluster_exits_1() {
    // A config whose nodes were never started: nothing listens on its ports.
    let c = NodeCluster::configure("cli-down", 3, "");
    let dir = c.dir.path().to_path_buf();
    let file = dir.join("a.bin");
    std::fs::write(&file, b"abc").unwrap();
    for args in [
        &["get", "k"][..],
        &["put", "k", "v"],
        &["file", "ls"],
        &["file", "put", file.to_str().unwrap()],
        &["file", "get", "00000000000000000000000000000000"],
    ] {
        let (code, _, err) = cli(&c, &dir, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("no node could be reached"), "{err}");
    }
}

#[test]
fn a_read_moves_past_a_node_whose_redis_is_down() {
    let c = NodeCluster::start("cli-failover", 3, "");
    c.await_all_alive(Duration::from_secs(15));
    let dir = c.dir.path().to_path_buf();
    let (code, _, err) = cli(&c, &dir, &["put", "kept", "still here", "-w", "3"]);
    assert_eq!(code, Some(0), "{err}");

    // n1, the config's first node, answers but its Redis is stopped.
    let r = c.http(1, "POST", "/api/nodes/n1/stop", Some(ADMIN_KEY));
    assert_eq!(r.status, 200, "stop n1's Redis: {r:?}");
    // n1 cannot serve the read itself: it hands it to a peer whose Redis is up (before, it
    // answered 503 REDIS_UNAVAILABLE; tests/failover.rs covers the hand-over).
    let r = c.http(0, "GET", "/api/kv/kept", Some(READ_KEY));
    assert_eq!(r.status, 200, "n1 hands the read on: {r:?}");
    assert_ne!(r.header("x-rc-served-by").as_deref(), Some("n1"), "{r:?}");

    // Reads go on to n2, which has a read quorum of two.
    let (code, out, err) = cli(&c, &dir, &["get", "kept", "-r", "2"]);
    assert_eq!(code, Some(0), "get with n1's Redis down: {err}");
    assert_eq!(out, "still here");
    let (code, out, err) = cli(&c, &dir, &["file", "ls"]);
    assert_eq!(code, Some(0), "file ls with n1's Redis down: {err}");
    assert_eq!(out.trim(), "no files");

    // A write through n1 is handed to a peer too (the CLI itself sends a write to one node only:
    // one that node answered may have been applied there).
    let (code, _, err) = cli(&c, &dir, &["put", "other", "v"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = cli(&c, &dir, &["get", "other", "--node", "n3"]);
    assert_eq!((code, out.as_str()), (Some(0), "v"), "{err}");
}

#[test]
fn file_get_resumes_a_download_cut_by_its_node_dying_on_the_next_node() {
    let mut c = NodeCluster::start("cli-resume", 3, "redis_maxmemory_mb: 512");
    c.await_all_alive(Duration::from_secs(15));
    let body = data(48 << 20, 41);
    let sha = sha256_hex(&body);
    let id = rcluster_tests::nodes::upload(&c, 1, "big.bin", &body)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let down = c.dir.path().join("down");
    std::fs::create_dir_all(&down).unwrap();
    let dest = down.join("big.bin");
    let config = c.config_path().display().to_string();
    // Starts on n1, the config's first node.
    let get = std::process::Command::new(rcluster_tests::rcluster_bin())
        .args([
            "file",
            "get",
            &id,
            "-o",
            dest.to_str().unwrap(),
            "--config",
            &config,
        ])
        .current_dir(&down)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start rcluster file get");
    // Once bytes arrive, stop the CLI: n1 sends on until the socket buffers are full.
    let part = rcluster_tests::wait_for(
        "the download to start writing",
        Duration::from_secs(30),
        || {
            std::fs::read_dir(&down).ok()?.flatten().find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let len = e.metadata().ok()?.len();
                (name.ends_with(".part") && len > 0).then(|| e.path())
            })
        },
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(get.id() as i32, libc::SIGSTOP) };
    let held = std::fs::metadata(&part).unwrap().len();
    assert!(held < body.len() as u64, "stopped before the end: {held}");
    // n1 dies with the download half way; the CLI goes on reading what reached it.
    c.kill_node(0);
    // SAFETY: as above.
    unsafe { libc::kill(get.id() as i32, libc::SIGCONT) };
    let out = get.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("resuming"), "{stderr}");
    assert!(stdout.contains("checksum verified"), "{stdout}");
    assert_eq!(field(&stdout, "sha256"), sha);
    let got = std::fs::read(&dest).unwrap();
    assert_eq!(got.len(), body.len());
    assert_eq!(sha256_hex(&got), sha);
}
