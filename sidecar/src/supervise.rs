//! Child processes that cannot outlive us: each child gets its own process group (so a terminal's
//! Ctrl-C reaches only the parent, which then stops children in order) and a parent-death signal
//! (so even a SIGKILLed parent leaves no orphan). Stopping is SIGTERM, a bounded wait, then SIGKILL.
//! Nodes that `rcluster node add` started detached are stopped by the pid it recorded.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The child's log file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open log {}: {source}", path.display())]
pub struct LogError {
    pub path: std::path::PathBuf,
    pub source: std::io::Error,
}

/// A command whose process is placed in its own group and gets SIGTERM when this process dies.
/// Must be spawned from a thread that lives as long as the process (the main thread): the
/// parent-death signal fires when the spawning thread exits.
pub fn command(program: impl AsRef<std::ffi::OsStr>, log: &Path) -> Result<Command, LogError> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| LogError {
                path: log.to_path_buf(),
                source,
            })
    };
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(open()?))
        .stderr(Stdio::from(open()?))
        .kill_on_drop(true);
    let parent = std::process::id();
    // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid, _exit) run in the child.
    unsafe {
        cmd.pre_exec(move || {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            // The parent may have died before prctl took effect.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Sends `signal` to a running child (no-op when it already exited).
pub fn signal(child: &Child, signal: libc::c_int) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps the child.
pub async fn stop(child: &mut Child, grace: Duration) -> std::process::ExitStatus {
    signal(child, libc::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => status,
        _ => {
            let _ = child.start_kill();
            child
                .wait()
                .await
                .unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(9))
        }
    }
}

/// Stops a process this tool started earlier but does not hold as a child (its pid from a pid
/// file): SIGTERM, then waits up to `grace` for it to go. False when no such process ran.
pub async fn stop_pid(pid: i32, grace: Duration) -> bool {
    // SAFETY: kill(2) on a node process recorded in a pid file by `rcluster node add`.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return false;
    }
    let deadline = std::time::Instant::now() + grace;
    // SAFETY: signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a log file got after its first `offset` bytes (at most its last 64 KiB): the lines one
/// run of a child wrote to a file that keeps every run's lines.
pub fn log_since(path: &Path, offset: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let from = offset.max(len.saturating_sub(64 << 10));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
