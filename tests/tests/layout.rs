//! Checks that keep the workspace's structure honest, by reading the source tree (no processes,
//! no network):
//!
//! 1. The pure crates (`domain/`, `raft/`) stay pure: no line of their `src/` names tokio, redis,
//!    sockets, threads, the wall clock (`SystemTime`, `Instant::now`), global randomness,
//!    the file system, processes or the environment, and their Cargo.toml lists only
//!    allow-listed dependencies. A failure prints `file:line: the line (what it is)`.
//! 2. The code map of ARCHITECTURE.md names no path that does not exist. The rule, for whoever
//!    writes the map:
//!    - Only the table rows between `## Code map` and the next `## ` heading are read. The first
//!      column names the row's folders and files; the other columns describe them.
//!    - A backticked token is a path when it has no whitespace, does not start with `/` (that is
//!      a URL path) and has no `<`, `>`, `{` or `}` (placeholders), and it contains a `/` or ends
//!      in `.rs`, `.sh`, `.yaml`, `.md` or `.toml`. Anything else (`hlc`, `RC.SET`,
//!      `cargo run ...`, `POST /api/nodes`) is prose and not checked.
//!    - A path resolves against the repo root, or against any folder named in the first column
//!      of its row (a first-column token ending in `/`), or against that folder's `src/`. So in
//!      the row of `raft/`, `node.rs` means `raft/src/node.rs` and `tests/*.rs` in the row of
//!      `tests/` means `tests/tests/*.rs`.
//!    - A `*` in the last component matches any run of characters; such a pattern must match at
//!      least one file.
//!
//!    A name left out of the map cannot be checked; a name that went stale is.
//! 3. Every `.rs` file in the workspace (outside `target/` and hidden folders) starts with a
//!    `//!` or `//` comment saying its one job.

use std::fs;
use std::path::{Path, PathBuf};

/// The repository root (this crate lives in `<root>/tests`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, skipping `target/` and hidden folders, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

// ---- 1. Pure crates stay pure ----

/// What a pure crate's source may not name, and what it is. A pattern matches where the
/// character before it cannot continue an identifier (so `fs::` does not match `refs::`).
const FORBIDDEN: &[(&str, &str)] = &[
    ("tokio", "the tokio runtime"),
    ("redis::", "a Redis client"),
    ("net::", "sockets (std::net)"),
    ("TcpStream", "a socket"),
    ("TcpListener", "a socket"),
    ("UdpSocket", "a socket"),
    ("UnixStream", "a socket"),
    ("UnixListener", "a socket"),
    ("UnixDatagram", "a socket"),
    ("ToSocketAddrs", "name resolution"),
    ("thread::", "threads (std::thread)"),
    ("SystemTime", "the wall clock"),
    ("UNIX_EPOCH", "the wall clock"),
    ("Instant::now", "the OS clock"),
    ("thread_rng", "global randomness"),
    ("rand::random", "global randomness"),
    ("rand::rng", "global randomness"),
    ("OsRng", "OS randomness"),
    ("getrandom", "OS randomness"),
    ("from_entropy", "OS randomness"),
    ("RandomState::new", "OS randomness"),
    ("fs::", "the file system (std::fs)"),
    ("File::", "the file system"),
    ("process::", "processes (std::process)"),
    ("Command::new", "a child process"),
    ("env::", "the environment (std::env)"),
];

/// Dependencies a pure crate may have, per Cargo.toml section.
const ALLOWED_DEPENDENCIES: &[&str] = &[
    "serde",
    "serde_json",
    "serde_norway",
    "sha2",
    "hmac",
    "crc32c",
    "hex",
    "thiserror",
];
/// Test-only dependencies of a pure crate (they never reach a binary).
const ALLOWED_DEV_DEPENDENCIES: &[&str] = &["proptest", "rcluster-raft-sim"];

/// The pure crates, relative to the root.
const PURE_CRATES: &[&str] = &["domain", "raft"];

/// `line` without a trailing `//` comment (one outside a string literal).
fn code_part(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
        i += 1;
    }
    line
}

/// Whether `pattern` occurs in `code` not as the tail of a longer identifier.
fn names(code: &str, pattern: &str) -> bool {
    code.match_indices(pattern).any(|(at, _)| {
        !matches!(code[..at].chars().next_back(), Some(c) if c.is_alphanumeric() || c == '_')
    })
}

/// The forbidden names in one file's text, as `file:line: text (what)`.
fn impurities(file: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = code_part(line);
        for (pattern, what) in FORBIDDEN {
            if names(code, pattern) {
                found.push(format!("{file}:{}: {} ({what})", n + 1, line.trim()));
            }
        }
    }
    found
}

/// The dependencies a Cargo.toml declares that its section does not allow, as
/// `file:line: text`.
fn unexpected_dependencies(file: &str, toml: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut allowed: Option<&[&str]> = None;
    for (n, line) in toml.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            let section = line.trim_matches(|c| c == '[' || c == ']');
            // `[dependencies.foo]` declares foo by its header.
            let (table, named) = match section.rsplit_once("dependencies.") {
                Some((head, name)) => (format!("{head}dependencies"), Some(name)),
                None => (section.to_string(), None),
            };
            allowed = if table.ends_with("dev-dependencies") {
                Some(ALLOWED_DEV_DEPENDENCIES)
            } else if table.ends_with("dependencies") {
                // Normal, build and target-specific dependencies.
                Some(if table == "dependencies" {
                    ALLOWED_DEPENDENCIES
                } else {
                    &[]
                })
            } else {
                None
            };
            if let (Some(list), Some(name)) = (allowed, named) {
                if !list.contains(&name) {
                    found.push(format!("{file}:{}: {line}", n + 1));
                }
                allowed = None;
            }
            continue;
        }
        let Some(list) = allowed else { continue };
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let name = key.trim().split('.').next().unwrap_or("").trim_matches('"');
        if !name.is_empty() && !list.contains(&name) {
            found.push(format!("{file}:{}: {line}", n + 1));
        }
    }
    found
}

#[test]
fn the_pure_crates_use_no_io_clock_threads_or_global_randomness() {
    let root = root();
    let mut found = Vec::new();
    let mut files = 0;
    for krate in PURE_CRATES {
        for path in rust_files(&root.join(krate).join("src")) {
            let text = fs::read_to_string(&path).expect("readable source");
            found.extend(impurities(&shown(&path), &text));
            files += 1;
        }
        let toml = root.join(krate).join("Cargo.toml");
        let text = fs::read_to_string(&toml).expect("readable Cargo.toml");
        found.extend(unexpected_dependencies(&shown(&toml), &text));
    }
    assert!(
        files >= 10,
        "only {files} files found under the pure crates"
    );
    assert!(
        found.is_empty(),
        "the pure crates (domain/, raft/) must not do I/O, read the clock, start threads or use \
         global randomness; pass what they need in instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_purity_check_sees_what_it_forbids() {
    let text = "use std::net::TcpStream;\n\
                let t = std::time::SystemTime::now(); // the wall clock\n\
                // use tokio::net; only a comment\n\
                let s = \"http://x\"; let x = refs::y; std::thread::spawn(f);\n\
                use std::{fs, io};\nlet f = fs::read(p);\n";
    assert_eq!(
        impurities("x.rs", text),
        [
            "x.rs:1: use std::net::TcpStream; (sockets (std::net))",
            "x.rs:1: use std::net::TcpStream; (a socket)",
            "x.rs:2: let t = std::time::SystemTime::now(); // the wall clock (the wall clock)",
            "x.rs:4: let s = \"http://x\"; let x = refs::y; std::thread::spawn(f); \
             (threads (std::thread))",
            "x.rs:6: let f = fs::read(p); (the file system (std::fs))",
        ]
    );
    let toml = "[package]\nname = \"x\"\n[dependencies]\nserde.workspace = true\n\
                tokio = { version = \"1\" }\n[dev-dependencies]\nproptest = \"1\"\n\
                [dependencies.redis]\nversion = \"0.27\"\n[build-dependencies]\ncc = \"1\"\n";
    let found = unexpected_dependencies("Cargo.toml", toml);
    assert_eq!(
        found,
        [
            "Cargo.toml:5: tokio = { version = \"1\" }",
            "Cargo.toml:8: [dependencies.redis]",
            "Cargo.toml:11: cc = \"1\"",
        ]
    );
}

// ---- 2. The code map names only paths that exist ----

/// The `## Code map` table rows of ARCHITECTURE.md: (line number, cells).
fn code_map_rows(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut rows = Vec::new();
    let mut inside = false;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("## ") {
            inside = line.trim() == "## Code map";
            continue;
        }
        let line = line.trim();
        if !inside || !line.starts_with('|') {
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        // The separator row.
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
        {
            continue;
        }
        rows.push((n + 1, cells));
    }
    rows
}

/// The backticked tokens of a piece of markdown.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Whether a backticked token is a path the map promises (see the rule in the header).
fn is_path(token: &str) -> bool {
    !token.is_empty()
        && !token.starts_with('/')
        && !token.contains(char::is_whitespace)
        && !token.contains(['<', '>', '{', '}'])
        && (token.contains('/')
            || [".rs", ".sh", ".yaml", ".md", ".toml"]
                .iter()
                .any(|ext| token.ends_with(ext)))
}

/// Whether `path` (relative to `base`, maybe with `*` in its last component) exists.
fn exists(base: &Path, path: &str) -> bool {
    let trimmed = path.trim_end_matches('/');
    let (dir, last) = match trimmed.rsplit_once('/') {
        Some((dir, last)) => (base.join(dir), last),
        None => (base.to_path_buf(), trimmed),
    };
    if !last.contains('*') {
        return dir.join(last).exists();
    }
    let parts: Vec<&str> = last.split('*').collect();
    let matches = |name: &str| {
        let (first, rest) = (parts[0], &parts[1..]);
        let Some(mut tail) = name.strip_prefix(first) else {
            return false;
        };
        for (i, part) in rest.iter().enumerate() {
            if i + 1 == rest.len() {
                return tail.ends_with(part);
            }
            match tail.find(part) {
                Some(at) => tail = &tail[at + part.len()..],
                None => return false,
            }
        }
        true
    };
    fs::read_dir(&dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| matches(&e.file_name().to_string_lossy()))
    })
}

/// The code map's paths that resolve nowhere, as `ARCHITECTURE.md:line: `token``.
fn dead_paths(root: &Path, architecture: &str) -> Vec<String> {
    let mut dead = Vec::new();
    for (line, cells) in code_map_rows(architecture) {
        let Some(first) = cells.first() else { continue };
        let mut bases = vec![root.to_path_buf()];
        for folder in backticked(first).into_iter().filter(|t| t.ends_with('/')) {
            bases.push(root.join(folder));
            bases.push(root.join(folder).join("src"));
        }
        for cell in &cells {
            for token in backticked(cell).into_iter().filter(|t| is_path(t)) {
                if !bases.iter().any(|base| exists(base, token)) {
                    dead.push(format!("ARCHITECTURE.md:{line}: `{token}`"));
                }
            }
        }
    }
    dead
}

#[test]
fn every_path_in_the_code_map_exists() {
    let root = root();
    let text = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let rows = code_map_rows(&text);
    assert!(
        rows.len() >= 5,
        "ARCHITECTURE.md has no `## Code map` table"
    );
    let dead = dead_paths(&root, &text);
    assert!(
        dead.is_empty(),
        "the code map names paths that do not exist (fix the map or the tree; the rule is in \
         tests/tests/layout.rs):\n{}",
        dead.join("\n")
    );
}

#[test]
fn the_code_map_check_resolves_by_the_rule_and_finds_dead_paths() {
    let root = root();
    let map = "# A\n\n## Code map\n\n| path | job |\n| --- | --- |\n\
               | `raft/` | `node.rs` the core, `tests/paper.rs`, `examples/*.rs`, driven by \
               `tests/tests/layout.rs`; `gone.rs`, `ring` (prose), `POST /api/nodes`, \
               `data/<id>/left`, `cargo run -p x` |\n\
               | `tests/` | `src/lib.rs`, `tests/*.rs`, `tests/*.nothing`, `ARCHITECTURE.md` |\n\
               | `rc.sh`, `redis.conf` | `config/cluster.yaml`, `node.rs` |\n\n\
               ## Invariants\n\n| `not/checked.rs` | here |\n";
    assert_eq!(
        dead_paths(&root, map),
        [
            "ARCHITECTURE.md:7: `gone.rs`",
            "ARCHITECTURE.md:8: `tests/*.nothing`",
            // Folders of one row do not serve another.
            "ARCHITECTURE.md:9: `node.rs`",
        ]
    );
}

// ---- 3. Every Rust file says its job first ----

#[test]
fn every_rust_file_starts_with_a_comment() {
    let root = root();
    let files = rust_files(&root);
    assert!(files.len() >= 50, "only {} .rs files found", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|path| {
            let text = fs::read_to_string(path).unwrap_or_default();
            !text.lines().next().unwrap_or("").starts_with("//")
        })
        .map(|path| shown(path))
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not start with a `//!` comment saying their one job:\n{}",
        missing.join("\n")
    );
}
