//! `rcluster up`: the local launcher. Checks that no cluster already runs here, starts one
//! `rcluster node` per configured node, waits until every Redis and HTTP endpoint answers,
//! prints where they are, starts a node again when the time of an injected crash of its process
//! is over (`paths::crash_marker`), and stops them all on Ctrl-C or SIGTERM.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::process::Child;
use tokio::signal::unix::{signal, SignalKind};

use super::CliError;
use crate::{paths, probe, supervise};

/// How long a node process may take to stop (it stops its Redis first, itself bounded).
const NODE_STOP_GRACE: Duration = Duration::from_secs(25);

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Cluster configuration file.
    #[arg(long, default_value = "config/cluster.yaml")]
    pub config: PathBuf,
    /// Halve memory caps and lengthen intervals (for 1 core / 512 MB machines).
    #[arg(long)]
    pub low_resource: bool,
    /// The module to load (default: librcluster_module.so next to this binary).
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// How long to wait for every node to answer, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub start_timeout_s: u64,
}

struct Started {
    id: String,
    host: String,
    redis_port: u16,
    http_port: u16,
    log: PathBuf,
    child: Child,
}

/// An exclusive lock on `<data_dir>/up.lock`, held while this launcher runs.
struct LockFile {
    _file: std::fs::File,
}

fn lock(data_dir: &std::path::Path) -> Result<LockFile, CliError> {
    let path = data_dir.join("up.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| CliError::failed(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(CliError::input(format!(
            "a cluster is already running from {} (launcher pid {}); stop it with Ctrl-C in its terminal or `kill {}` first",
            data_dir.display(),
            holder.trim(),
            holder.trim()
        )));
    }
    let _ = std::fs::write(&path, std::process::id().to_string());
    Ok(LockFile { _file: file })
}

/// Refuses to start when any configured port is taken, naming the port and its owner.
fn check_ports(nodes: &[rcluster_domain::config::NodeConfig]) -> Result<(), CliError> {
    for n in nodes {
        for (what, port) in [
            ("redis_port", n.redis_port),
            ("http_port", n.http_port),
            ("peer_port", n.peer_port),
        ] {
            if let Err(e) = std::net::TcpListener::bind((n.host.as_str(), port)) {
                return Err(CliError::input(format!(
                    "port {port} ({} {what}) on {} is not available ({e}): is a cluster already running? Stop it, or change the ports in the config",
                    n.id, n.host
                )));
            }
        }
    }
    Ok(())
}

pub async fn run(args: UpArgs) -> Result<(), CliError> {
    let start_timeout = Duration::from_secs(args.start_timeout_s);
    let loaded = paths::load(&args.config, args.low_resource)?;
    let module = paths::module(args.module)?;
    std::fs::create_dir_all(&loaded.data_dir).map_err(|e| {
        CliError::failed(format!("cannot create {}: {e}", loaded.data_dir.display()))
    })?;
    let data_dir = loaded
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| loaded.data_dir.clone());
    let _lock = lock(&data_dir)?;
    // The config's nodes, plus those that joined later on this machine (`rcluster node add`).
    let mut all = loaded.config.nodes.clone();
    all.extend(paths::joined_nodes(&loaded));
    // Nodes that left the cluster stay stopped (their data folder says so).
    all.retain(|n| {
        let left = paths::left_file(&loaded.data_dir, &n.id);
        if left.exists() {
            println!(
                "node {} left the cluster; not starting it ({} says so; delete that file and \
                 add it again with `rcluster node add` to bring it back)",
                n.id,
                left.display()
            );
        }
        !left.exists()
    });
    if all.is_empty() {
        return Err(CliError::input(format!(
            "every node of {} left the cluster",
            loaded.config_path.display()
        )));
    }
    check_ports(&all)?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failed(format!("cannot find this executable: {e}")))?;

    let mode = if args.low_resource {
        " (low-resource)"
    } else {
        ""
    };
    println!(
        "starting cluster '{}' with {} nodes{mode}",
        loaded.config.cluster_name,
        all.len()
    );
    let mut nodes = Vec::new();
    let launch = Launch {
        exe: exe.clone(),
        config: loaded.config_path.clone(),
        module,
        low_resource: args.low_resource,
    };
    for n in &all {
        let dir = loaded.data_dir.join(&n.id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
        let log = dir.join("node.log");
        // A marker left by a crash before this launcher ran is stale.
        let _ = std::fs::remove_file(paths::crash_marker(&dir));
        let child = launch.spawn(&n.id, &log)?;
        nodes.push(Started {
            id: n.id.clone(),
            host: n.host.clone(),
            redis_port: n.redis_port,
            http_port: n.http_port,
            log,
            child,
        });
    }

    let password = loaded.config.redis_password.as_deref();
    if let Err(e) = wait_ready(&mut nodes, password, start_timeout).await {
        stop_all(&mut nodes).await;
        return Err(e);
    }
    if let Err(e) = wait_connected(&nodes, password, start_timeout).await {
        stop_all(&mut nodes).await;
        return Err(e);
    }
    print_table(&nodes);

    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError::failed(format!("cannot watch SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| CliError::failed(format!("cannot watch SIGINT: {e}")))?;
    // A node that exits (killed on purpose, or crashed) leaves the others running: this is a
    // cluster to break things in. The launcher stops everything on Ctrl-C or SIGTERM, or when
    // no node is left.
    let config_path = loaded.config_path.display().to_string();
    let mut running: Vec<usize> = (0..nodes.len()).collect();
    // Nodes killed by an injected crash, and when to start each again.
    let mut crashed: Vec<(usize, tokio::time::Instant)> = Vec::new();
    let stopped_by_signal = loop {
        if running.is_empty() && crashed.is_empty() {
            break false;
        }
        let next_restart = crashed.iter().map(|(_, at)| *at).min();
        tokio::select! {
            _ = term.recv() => break true,
            _ = int.recv() => break true,
            _ = sleep_until_some(next_restart) => {
                let now = tokio::time::Instant::now();
                let (due, later): (Vec<_>, Vec<_>) = crashed.iter().partition(|(_, at)| *at <= now);
                crashed = later;
                for (i, _) in due {
                    let n = &mut nodes[i];
                    match launch.spawn(&n.id, &n.log) {
                        Ok(child) => {
                            println!("node {} started again after its injected crash", n.id);
                            n.child = child;
                            running.push(i);
                        }
                        Err(e) => eprintln!("node {} could not be started again: {e}", n.id),
                    }
                }
            }
            (i, status) = first_exit(&mut nodes, &running) => {
                running.retain(|r| *r != i);
                let n = &nodes[i];
                let marker = paths::crash_marker(&loaded.data_dir.join(&n.id));
                if let Some(until) = crash_until(&marker) {
                    let _ = std::fs::remove_file(&marker);
                    let wait = Duration::from_millis(until.saturating_sub(crate::node::view::unix_ms()));
                    println!("node {} was crashed by an injected fault ({status}); starting it again in {} ms", n.id, wait.as_millis());
                    crashed.push((i, tokio::time::Instant::now() + wait));
                    continue;
                }
                eprintln!(
                    "node {} exited ({status}); the other nodes keep running. Restart it with\n  {} node --config {config_path} --id {}\nLast lines of {}:\n{}",
                    n.id,
                    exe.display(),
                    n.id,
                    n.log.display(),
                    supervise::log_tail(&n.log, 10)
                );
            }
        }
    };
    println!("stopping {} nodes...", running.len());
    stop_all(&mut nodes).await;
    stop_added(&loaded.data_dir).await;
    println!("cluster stopped");
    if stopped_by_signal {
        Ok(())
    } else {
        Err(CliError::failed("every node exited"))
    }
}

/// How `rcluster up` runs a node process.
struct Launch {
    exe: PathBuf,
    config: PathBuf,
    module: PathBuf,
    low_resource: bool,
}

impl Launch {
    fn spawn(&self, id: &str, log: &std::path::Path) -> Result<Child, CliError> {
        let mut cmd = supervise::command(&self.exe, log)?;
        cmd.arg("node")
            .arg("--config")
            .arg(&self.config)
            .args(["--id", id])
            .arg("--module")
            .arg(&self.module);
        if self.low_resource {
            cmd.arg("--low-resource");
        }
        cmd.spawn()
            .map_err(|e| CliError::failed(format!("cannot start node {id}: {e}")))
    }
}

/// When a node killed by an injected crash is due to start again (Unix ms), from its marker.
fn crash_until(marker: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(marker).ok()?.trim().parse().ok()
}

/// Sleeps until `at`; never resolves for `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits until every node's Redis answers PING and its HTTP health answers 200.
async fn wait_ready(
    nodes: &mut [Started],
    password: Option<&str>,
    timeout: Duration,
) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    let probe_timeout = Duration::from_millis(500);
    let mut ready = vec![false; nodes.len()];
    while ready.iter().any(|r| !r) {
        for (i, n) in nodes.iter_mut().enumerate() {
            if ready[i] {
                continue;
            }
            if let Ok(Some(status)) = n.child.try_wait() {
                return Err(CliError::failed(format!(
                    "node {} exited during start-up ({status}); last lines of {}:\n{}",
                    n.id,
                    n.log.display(),
                    supervise::log_tail(&n.log, 15)
                )));
            }
            ready[i] = probe::redis_ping(&n.host, n.redis_port, password, probe_timeout).await
                && matches!(
                    probe::http_get(&n.host, n.http_port, "/api/health", probe_timeout).await,
                    Some((200, _))
                );
        }
        if ready.iter().all(|r| *r) {
            break;
        }
        if Instant::now() > deadline {
            let waiting: Vec<&str> = nodes
                .iter()
                .zip(&ready)
                .filter(|(_, r)| !**r)
                .map(|(n, _)| n.id.as_str())
                .collect();
            return Err(CliError::failed(format!(
                "nodes {} did not answer within {timeout:?}; see their node.log and redis.log",
                waiting.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Waits until every node sees every other node alive (heartbeats flowing), so "cluster ready"
/// means quorum operations work at once. Reads the `node:<id>:status` hashes each node writes
/// into its own Redis (not the API, whose rate limits belong to the users' keys).
async fn wait_connected(
    nodes: &[Started],
    password: Option<&str>,
    timeout: Duration,
) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    loop {
        let mut lagging = Vec::new();
        for n in nodes {
            let check = async {
                let client = probe::redis_client(&n.host, n.redis_port, password).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.cmd("HGET")
                        .arg(format!("node:{id}:status"))
                        .arg("state");
                }
                let states: Vec<Option<String>> = pipe.query_async(&mut conn).await.ok()?;
                Some(states.iter().all(|s| s.as_deref() == Some("alive")))
            };
            let all_alive = tokio::time::timeout(Duration::from_millis(500), check)
                .await
                .ok()
                .flatten()
                .unwrap_or(false);
            if !all_alive {
                lagging.push(n.id.as_str());
            }
        }
        if lagging.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CliError::failed(format!(
                "nodes {} did not see every other node alive within {timeout:?}; check that the peer ports are reachable",
                lagging.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print_table(nodes: &[Started]) {
    println!(
        "{:<8} {:<16} {:>10} {:>10} {:>8}",
        "NODE", "HOST", "REDIS", "HTTP", "PID"
    );
    for n in nodes {
        println!(
            "{:<8} {:<16} {:>10} {:>10} {:>8}",
            n.id,
            n.host,
            n.redis_port,
            n.http_port,
            n.child.id().unwrap_or(0)
        );
    }
    if let Some(first) = nodes.first() {
        println!("admin: http://{}:{}/", first.host, first.http_port);
    }
    println!(
        "try:   redis-cli -p {} RC.SET greeting hello",
        nodes.first().map_or(6379, |n| n.redis_port)
    );
    println!("cluster ready; press Ctrl-C to stop it");
}

/// Resolves when the first of the `running` node processes exits: its index and status.
async fn first_exit(nodes: &mut [Started], running: &[usize]) -> (usize, std::process::ExitStatus) {
    let mut waits: Vec<_> = nodes
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| running.contains(i))
        .map(|(i, n)| Box::pin(async move { (i, n.child.wait().await) }))
        .collect();
    let (i, status) = std::future::poll_fn(|cx| {
        for w in waits.iter_mut() {
            if let std::task::Poll::Ready(out) = w.as_mut().poll(cx) {
                return std::task::Poll::Ready(out);
            }
        }
        std::task::Poll::Pending
    })
    .await;
    let status = status.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(1));
    (i, status)
}

/// Stops every node in parallel (each stops its own Redis) and reaps them.
/// Stops the nodes `rcluster node add` started while this launcher ran (their pid files).
async fn stop_added(data_dir: &std::path::Path) {
    for entry in std::fs::read_dir(data_dir).into_iter().flatten().flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = paths::read_pid(data_dir, &id) else {
            continue;
        };
        if supervise::stop_pid(pid, NODE_STOP_GRACE).await {
            println!("node {id} stopped");
        }
        let _ = std::fs::remove_file(paths::pid_file(data_dir, &id));
    }
}

async fn stop_all(nodes: &mut [Started]) {
    for n in nodes.iter() {
        supervise::signal(&n.child, libc::SIGTERM);
    }
    for n in nodes.iter_mut() {
        let status = supervise::stop(&mut n.child, NODE_STOP_GRACE).await;
        println!("node {} stopped ({status})", n.id);
    }
}
