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

/// A loopback port that was free a moment ago. Ports are handed out from a per-process
/// sequence in a block of 100 chosen from the pid, then checked by binding, so parallel tests
/// and parallel test binaries do not collide. The blocks lie in 10000..32000, below Linux's
/// ephemeral range (32768..), so outgoing connections never take them.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 10_000 + (std::process::id() % 220) * 100;
    for _ in 0..1_000 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 100;
        let port = u16::try_from(base + offset).expect("ports stay below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {base}..{}", base + 100);
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
