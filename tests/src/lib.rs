//! Shared harness for the integration tests: free loopback ports, real `redis-server` processes
//! with the module loaded (killed on drop), the built binaries, and bounded waits.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// `target/<profile>`, found from the running test binary (`target/<profile>/deps/<test>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn built(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace, or ./rc.sh test)",
        path.display()
    );
    path
}

/// The built module (`librcluster_module.so`).
pub fn module_path() -> PathBuf {
    built("librcluster_module.so")
}

/// The built `rcluster` binary.
pub fn rcluster_bin() -> PathBuf {
    built("rcluster")
}

/// A loopback port that was free a moment ago. Ports are handed out from a per-process sequence
/// that starts at an offset chosen from the pid and walks all of 10000..32000 (below Linux's
/// ephemeral range, 32768.., so outgoing connections never take them) before it comes back to a
/// port: a port handed out to one test is never handed out again to another test of the same
/// binary that runs meanwhile (a short cycle did that: a test's port, not yet bound by its
/// owner, passed the bind check again), and test binaries started one after another begin far
/// apart. Each candidate is checked by binding.
pub fn free_port() -> u16 {
    const FIRST: u32 = 10_000;
    const COUNT: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % 22) * 1_000;
    for _ in 0..1_000 {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = u16::try_from(FIRST + offset).expect("ports stay below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT);
}

/// `len` deterministic pseudo-random bytes (xorshift64 from `seed`): test payloads that do not
/// compress and are the same on every run.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A numeric field of `INFO rcluster` (`rcluster_<field>`); fails the test when absent.
pub fn info_number(c: &mut redis::Connection, field: &str) -> i64 {
    let text: String = redis::cmd("INFO")
        .arg("rcluster")
        .query(c)
        .expect("INFO rcluster");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("rcluster_{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {text}"))
}

/// A fresh scratch directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rcluster-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` until it returns `Some`, or fails the test after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// One real `redis-server` with the module loaded, using the repository's `redis.conf`.
pub struct Redis {
    pub port: u16,
    pub dir: TempDir,
    module_args: Vec<String>,
    redis_args: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    /// Starts Redis with the module and the given extra module arguments
    /// (e.g. `["max-key-bytes", "16"]`), and waits until it answers PING.
    pub fn start(module_args: &[&str]) -> Self {
        Redis::start_with(&[], module_args)
    }

    /// Like [`Redis::start`], with extra `redis-server` arguments (e.g. `["--maxmemory", "4mb"]`).
    pub fn start_with(redis_args: &[&str], module_args: &[&str]) -> Self {
        let owned = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        let mut r = Redis {
            port: free_port(),
            dir: TempDir::new("redis"),
            module_args: owned(module_args),
            redis_args: owned(redis_args),
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open redis log");
        let mut loadmodule = vec![module_path().display().to_string()];
        loadmodule.extend(self.module_args.iter().cloned());
        let child = Command::new("redis-server")
            .arg(repo_root().join("redis.conf"))
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.redis_args)
            .arg("--loadmodule")
            .args(&loadmodule)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("redis-server must be installed (./rc.sh test installs it)");
        self.child = Some(child);
        let (port, log_path) = (self.port, self.log_path());
        let child = self.child.as_mut().expect("just spawned");
        wait_for(
            "redis-server to answer PING",
            Duration::from_secs(20),
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("redis-server exited during start-up ({status}); log:\n{log}");
                }
                ping(port).then_some(())
            },
        );
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).expect("client url")
    }

    pub fn conn(&self) -> redis::Connection {
        let c = self.client();
        c.get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to redis")
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the same Redis again on the same port and data folder (loads its AOF).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// True when something on `port` answers PING.
pub fn ping(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(500)) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut conn).is_ok()
}

/// Runs a command and returns its reply as a generic value (errors included, as `Err`).
pub fn call(conn: &mut redis::Connection, args: &[&[u8]]) -> redis::RedisResult<redis::Value> {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("command name is text"));
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(conn)
}

/// The error code (first word) and message of a failed call.
pub fn error_of(result: redis::RedisResult<redis::Value>) -> (String, String) {
    let err = result.expect_err("expected an error reply");
    let code = err.code().unwrap_or("").to_string();
    (code, err.detail().unwrap_or("").to_string())
}

pub mod nodes;

/// Password of the internal user in test clusters.
pub const TEST_PASSWORD: &str = "test-internal-password";

/// Several real Redis servers with the module, wired into one cluster by pushing a topology
/// (`RC.CLUSTER.SET`) the way the node process does, without node processes: the tests drive
/// failures (SIGKILL, SIGSTOP, restart) on the Redis servers directly.
pub struct TestCluster {
    pub nodes: Vec<Redis>,
    pub topology: rcluster_domain::topology::Topology,
}

impl TestCluster {
    /// `count` nodes `n1..`, N/W/R 3/2/2 (or fewer nodes' worth), 1 s timeout, fast hint replay.
    /// `tune` may change the topology before it is pushed.
    pub fn start(
        count: usize,
        tune: impl FnOnce(&mut rcluster_domain::topology::Topology),
    ) -> Self {
        use rcluster_domain::config::Quorum;
        use rcluster_domain::topology::{internal_user_directive, Member, Topology};
        let mut nodes = Vec::new();
        let mut members = Vec::new();
        for i in 1..=count {
            let id = format!("n{i}");
            let mut redis_args = vec!["--user".to_string()];
            redis_args.extend(internal_user_directive(TEST_PASSWORD));
            let redis_args: Vec<&str> = redis_args.iter().map(String::as_str).collect();
            let r = Redis::start_with(
                &redis_args,
                &["node-id", &id, "internal-password", TEST_PASSWORD],
            );
            members.push(Member {
                id,
                host: "127.0.0.1".into(),
                redis_port: r.port,
            });
            nodes.push(r);
        }
        let n = u8::try_from(count.min(3)).expect("small cluster");
        let mut topology = Topology {
            epoch: 1,
            members,
            vnodes: rcluster_domain::ring::DEFAULT_VNODES,
            quorum: Quorum {
                n,
                w: n.min(2),
                r: n.min(2),
            },
            request_timeout_ms: 1_000,
            hint_replay_ms: 100,
            tombstone_grace_ms: 86_400_000,
            max_hint_bytes_per_node: rcluster_domain::config::DEFAULT_MAX_HINT_BYTES_PER_NODE,
        };
        tune(&mut topology);
        let cluster = TestCluster { nodes, topology };
        for i in 0..count {
            cluster.push(i);
        }
        cluster
    }

    /// Loads the topology into node `i`'s module.
    pub fn push(&self, i: usize) {
        let mut c = self.conn(i);
        let _: () = redis::cmd("RC.CLUSTER.SET")
            .arg(self.topology.to_json())
            .query(&mut c)
            .expect("RC.CLUSTER.SET");
    }

    pub fn conn(&self, i: usize) -> redis::Connection {
        self.nodes[i].conn()
    }

    /// Index of the node with this id.
    pub fn index(&self, id: &str) -> usize {
        self.topology
            .members
            .iter()
            .position(|m| m.id == id)
            .expect("known node id")
    }

    /// The ids of the key's preference list, as the module computes them.
    pub fn preference(&self, key: &str) -> Vec<String> {
        let ring = self.topology.ring().expect("valid ring");
        ring.preference_list(key.as_bytes(), usize::from(self.topology.quorum.n))
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Sends a signal to node `i`'s redis-server (SIGSTOP / SIGCONT).
    pub fn signal(&self, i: usize, signal: i32) {
        let pid = self.nodes[i].pid().expect("running");
        // SAFETY: kill(2) on a child process we started.
        unsafe {
            libc::kill(pid as i32, signal);
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // A stopped process cannot die of SIGKILL until continued; wake them all first.
        for r in &self.nodes {
            if let Some(pid) = r.pid() {
                // SAFETY: as above.
                unsafe {
                    libc::kill(pid as i32, libc::SIGCONT);
                }
            }
        }
    }
}
