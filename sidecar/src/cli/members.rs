//! `rcluster node add` and `rcluster node remove`: grow or shrink a running cluster. `add` starts
//! the new node on this machine (unless `--no-start`), has the cluster admit it through
//! `POST /api/nodes` and follows the data moving onto it; `remove` has a member leave through
//! `DELETE /api/nodes/{id}`, waits until it handed its data over and stops it if `add` started
//! it here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rcluster_domain::config::NodeConfig;
use rcluster_domain::node_config::Role;

use super::conn::{self, Body, Conn};
use super::CliError;
use crate::api::{Health, NewNode, NodeAdded, NodeRemoved, NodeState, Nodes};
use crate::client::percent_encode;
use crate::{paths, probe, supervise};

const EXIT_CODES: &str = "Exit status: 0 done; 2 bad input (bad arguments, or the cluster \
    refused with a 4xx answer); 1 failure (no node reachable, a node that would not start, or \
    the wait timed out).";

#[derive(Subcommand, Debug)]
pub enum NodeAction {
    /// Add a node: start it here (ports picked after the members' unless given), have the
    /// cluster admit it, and follow the data moving onto it.
    Add(AddArgs),
    /// Remove a node: the cluster moves its data to the other members; then stop it if
    /// `rcluster node add` started it on this machine.
    Remove(RemoveArgs),
}

/// Where the cluster is and with which key.
#[derive(Args, Debug)]
pub struct Target {
    /// Cluster configuration file (the nodes to ask, the admin key, the data folder).
    #[arg(long, default_value = "config/cluster.yaml")]
    pub config: PathBuf,
    /// Admin API key (default: $RCLUSTER_API_KEY, else the config's first admin key).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Give up waiting for the data to move after this many seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub timeout_s: u64,
}

#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct AddArgs {
    /// The new node's id ([a-z0-9_-]{1,32}).
    pub id: String,
    #[command(flatten)]
    pub target: Target,
    /// Address the new node listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Its Redis port (default: the first free one above the members').
    #[arg(long)]
    pub redis_port: Option<u16>,
    /// Its HTTP port (default: the first free one above the members').
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Its peer port (default: the first free one above the members').
    #[arg(long)]
    pub peer_port: Option<u16>,
    /// Only admit the node (it runs elsewhere, started with `rcluster node --id ...`).
    #[arg(long)]
    pub no_start: bool,
    /// Do not wait for the data to move.
    #[arg(long)]
    pub no_wait: bool,
    /// The module the new node loads (default: librcluster_module.so next to this binary).
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// Start the new node in low-resource mode.
    #[arg(long)]
    pub low_resource: bool,
}

#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct RemoveArgs {
    /// The id of the member to remove.
    pub id: String,
    #[command(flatten)]
    pub target: Target,
    /// Leave the node's process running after it handed its data over.
    #[arg(long)]
    pub keep_running: bool,
}

pub async fn run(action: NodeAction) -> Result<(), CliError> {
    match action {
        NodeAction::Add(args) => add(args).await,
        NodeAction::Remove(args) => remove(args).await,
    }
}

const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// The loaded config (for the data folder) and the connection to its nodes with the admin key.
struct Cluster {
    loaded: paths::Loaded,
    conn: Conn,
}

impl Cluster {
    fn open(target: &Target) -> Result<Cluster, CliError> {
        let loaded = paths::load(&target.config, false)?;
        let conn = Conn::new(loaded.config.clone(), target.api_key.clone(), Role::Admin)
            .with_timeout(ASK_TIMEOUT);
        Ok(Cluster { loaded, conn })
    }

    /// The current members, as the first node of the config that answers reports them.
    async fn members(&self) -> Result<Vec<NodeConfig>, CliError> {
        let (_, view): (_, Nodes) = self.conn.get_json("/api/nodes").await?;
        Ok(view
            .nodes
            .into_iter()
            .map(|n| NodeConfig {
                id: n.id,
                host: n.host,
                listen_host: None,
                redis_port: n.redis_port,
                http_port: n.http_port,
                peer_port: n.peer_port,
            })
            .collect())
    }
}

/// The first port above every member's ports (and `floor`) that is free on `host` for TCP and
/// UDP and not `taken`.
fn free_port_above(host: &str, floor: u16, taken: &[u16]) -> Result<u16, CliError> {
    let mut port = floor.saturating_add(1);
    while port < u16::MAX {
        let free = !taken.contains(&port)
            && std::net::TcpListener::bind((host, port)).is_ok()
            && std::net::UdpSocket::bind((host, port)).is_ok();
        if free {
            return Ok(port);
        }
        port += 1;
    }
    Err(CliError::failed(format!(
        "no free port above {floor} on {host}"
    )))
}

fn pid_file(loaded: &paths::Loaded, id: &str) -> PathBuf {
    paths::pid_file(&loaded.data_dir, id)
}

/// Starts `rcluster node` for the new node in its own session (it outlives this command), with
/// its output in `<data_dir>/<id>/node.log`; waits until its API answers.
async fn start_node(cluster: &Cluster, args: &AddArgs, node: &NodeConfig) -> Result<(), CliError> {
    let dir = cluster.loaded.data_dir.join(&node.id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
    let log_path = dir.join("node.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| CliError::failed(format!("cannot open {}: {e}", log_path.display())))?;
    let err_log = log
        .try_clone()
        .map_err(|e| CliError::failed(format!("{}: {e}", log_path.display())))?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failed(format!("cannot find this executable: {e}")))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("node")
        .arg("--config")
        .arg(&cluster.loaded.config_path)
        .args(["--id", &node.id, "--host", &node.host])
        .args(["--redis-port", &node.redis_port.to_string()])
        .args(["--http-port", &node.http_port.to_string()])
        .args(["--peer-port", &node.peer_port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err_log);
    if let Some(m) = &args.module {
        cmd.arg("--module").arg(m);
    }
    if args.low_resource {
        cmd.arg("--low-resource");
    }
    // SAFETY: setsid(2) in the child before exec only detaches it from this terminal's session.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::failed(format!("cannot start node {}: {e}", node.id)))?;
    let pid_path = pid_file(&cluster.loaded, &node.id);
    std::fs::write(&pid_path, child.id().to_string())
        .map_err(|e| CliError::failed(format!("cannot write {}: {e}", pid_path.display())))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = std::fs::remove_file(&pid_path);
            return Err(CliError::failed(format!(
                "node {} exited ({status}) while starting; its output:\n{}",
                node.id,
                supervise::log_tail(&log_path, 20)
            )));
        }
        let health = probe::http_get(
            &node.host,
            node.http_port,
            "/api/health",
            Duration::from_secs(2),
        );
        if matches!(health.await, Some((200, _))) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CliError::failed(format!(
                "node {} did not answer within 60 s; see {}",
                node.id,
                log_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A progress bar in percent on a terminal; elsewhere a line per change of at least 10%.
struct Progress {
    bar: ProgressBar,
    terminal: bool,
    last: Option<u64>,
}

impl Progress {
    fn new(what: &str) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = if terminal {
            let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}% {wide_msg}") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what.to_string());
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress {
            bar,
            terminal,
            last: None,
        }
    }

    fn set(&mut self, percent: u64, detail: &str) {
        self.bar.set_position(percent);
        if !self.terminal
            && self
                .last
                .is_none_or(|l| percent >= l + 10 || percent == 100)
        {
            eprintln!("{percent}% {detail}");
            self.last = Some(percent);
        }
    }
}

/// The redistribution of the nodes in `view` that are not down: the least percent done (100
/// when none is known), whether a pass runs on any, and the copies they moved in all.
fn moving(view: &Nodes) -> (u64, bool, u64) {
    view.nodes
        .iter()
        .filter(|n| n.state != Some(NodeState::Down))
        .filter_map(|n| n.redistribution)
        .fold((100, false, 0), |(percent, running, moved), r| {
            (
                percent.min(r.percent.min(100)),
                running || r.running,
                moved + r.keys_moved,
            )
        })
}

/// Waits until no member that is up runs a redistribution pass, for long enough that a pass
/// just started shows (the progress travels in heartbeats: two intervals, and at least three
/// polls). Asks `nodes` in order: the node that joined first, as it knows the new member list.
async fn follow_redistribution(
    cluster: &Cluster,
    nodes: &[NodeConfig],
    timeout: Duration,
) -> Result<(), CliError> {
    const POLL: Duration = Duration::from_millis(500);
    let heartbeat_ms = cluster.conn.config.intervals.heartbeat_ms;
    let quiet_needed = (2 * heartbeat_ms).div_ceil(POLL.as_millis() as u64).max(3);
    let mut progress = Progress::new("moving data");
    let deadline = Instant::now() + timeout;
    let mut quiet_polls = 0;
    while quiet_polls < quiet_needed {
        // A poll no node answers is not quiet: ask again until the deadline.
        let asked = match cluster.conn.send_to(nodes, "GET", "/api/nodes", None).await {
            Ok((from, r)) => conn::json::<Nodes>(&from, &r).map(|view| moving(&view)),
            Err(e) => Err(e),
        };
        quiet_polls = match &asked {
            Ok((percent, running, moved)) => {
                progress.set(*percent, &format!("({moved} copies moved so far)"));
                if *running || *percent < 100 {
                    0
                } else {
                    quiet_polls + 1
                }
            }
            Err(_) => 0,
        };
        if Instant::now() > deadline {
            let why = asked.err().map_or_else(String::new, |e| format!(" ({e})"));
            return Err(CliError::failed(format!(
                "data is still moving after {timeout:?}{why}; follow it with `rcluster status`"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    progress.bar.finish_and_clear();
    Ok(())
}

async fn add(args: AddArgs) -> Result<(), CliError> {
    let cluster = Cluster::open(&args.target)?;
    let members = cluster.members().await?;
    if let Some(m) = members.iter().find(|m| m.id == args.id) {
        return Err(CliError::input(format!(
            "'{}' is already a member (http {}:{})",
            m.id, m.host, m.http_port
        )));
    }
    let on_host: Vec<&NodeConfig> = members.iter().filter(|m| m.host == args.host).collect();
    let mut taken: Vec<u16> = on_host
        .iter()
        .flat_map(|m| [m.redis_port, m.http_port, m.peer_port])
        .collect();
    let mut pick = |given: Option<u16>, of: fn(&NodeConfig) -> u16| -> Result<u16, CliError> {
        let port = match given {
            Some(p) => p,
            None => {
                let floor = on_host.iter().map(|m| of(m)).max().unwrap_or(10_000);
                free_port_above(&args.host, floor, &taken)?
            }
        };
        taken.push(port);
        Ok(port)
    };
    let node = NodeConfig {
        id: args.id.clone(),
        host: args.host.clone(),
        listen_host: None,
        redis_port: pick(args.redis_port, |m| m.redis_port)?,
        http_port: pick(args.http_port, |m| m.http_port)?,
        peer_port: pick(args.peer_port, |m| m.peer_port)?,
    };
    if !args.no_start {
        eprintln!(
            "starting {} (redis {}, http {}, peer {}) ...",
            node.id, node.redis_port, node.http_port, node.peer_port
        );
        start_node(&cluster, &args, &node).await?;
    }
    let body = NewNode {
        id: node.id.clone(),
        host: node.host.clone(),
        redis_port: node.redis_port,
        http_port: node.http_port,
        peer_port: node.peer_port,
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let admitted = match cluster
        .conn
        .send_to(&members, "POST", "/api/nodes", Some(Body::json(&body)))
        .await
    {
        Ok((from, r)) => conn::json::<NodeAdded>(&from, &r),
        Err(e) => Err(e),
    };
    let answer = match admitted {
        Ok(answer) => answer,
        Err(e) => {
            if !args.no_start {
                // Not admitted: stop the node started above and forget its ports, so the next
                // attempt may choose others.
                retire(&cluster.loaded, &node.id).await;
                eprintln!("{} was not admitted; stopped it again", node.id);
            }
            return Err(e);
        }
    };
    eprintln!(
        "{} admitted by leader {} (committed index {}); members: {}",
        node.id,
        answer.leader,
        index_text(answer.committed_index),
        answer.members.join(", ")
    );
    if !args.no_wait {
        let mut ask = vec![node.clone()];
        ask.extend(members);
        follow_redistribution(&cluster, &ask, Duration::from_secs(args.target.timeout_s)).await?;
    }
    println!("{}", node.id);
    Ok(())
}

async fn remove(args: RemoveArgs) -> Result<(), CliError> {
    let cluster = Cluster::open(&args.target)?;
    let members = cluster.members().await?;
    let leaving = members.iter().find(|m| m.id == args.id).cloned();
    // Ask the others first: the leaving node may be down.
    let mut order: Vec<NodeConfig> = members
        .iter()
        .filter(|m| m.id != args.id)
        .cloned()
        .collect();
    order.extend(leaving.clone());
    let path = format!("/api/nodes/{}", percent_encode(&args.id));
    let (from, r) = cluster.conn.send_to(&order, "DELETE", &path, None).await?;
    let answer: NodeRemoved = conn::json(&from, &r)?;
    eprintln!(
        "{} left the member list (committed index {}); members: {}",
        args.id,
        index_text(answer.committed_index),
        answer.members.join(", ")
    );
    let timeout = Duration::from_secs(args.target.timeout_s);
    if let Some(node) = &leaving {
        wait_handed_over(&cluster, node, timeout).await?;
    }
    let started_here = pid_file(&cluster.loaded, &args.id).exists();
    if started_here && !args.keep_running {
        retire(&cluster.loaded, &args.id).await;
        eprintln!("{} stopped", args.id);
    } else {
        eprintln!("{} holds no data any more; stop its process", args.id);
    }
    Ok(())
}

/// A committed Raft index, or "none" when nothing had to change.
fn index_text(index: Option<u64>) -> String {
    index.map_or_else(|| "none".into(), |i| i.to_string())
}

/// Stops a node `rcluster node add` started here (its pid file) and sets its saved ports aside,
/// so `rcluster up` does not start it again.
async fn retire(loaded: &paths::Loaded, id: &str) {
    if let Some(pid) = paths::read_pid(&loaded.data_dir, id) {
        supervise::stop_pid(pid, Duration::from_secs(30)).await;
    }
    let _ = std::fs::remove_file(pid_file(loaded, id));
    let saved = paths::member_file(&loaded.data_dir, id);
    let _ = std::fs::rename(&saved, saved.with_extension("json.left"));
}

/// Waits until the leaving node holds no registers or chunks (it hands them to their new
/// owners before dropping them). A node that does not answer is not waited for: the other
/// replicas re-create its copies.
async fn wait_handed_over(
    cluster: &Cluster,
    node: &NodeConfig,
    timeout: Duration,
) -> Result<(), CliError> {
    let mut progress = Progress::new("handing data over");
    let deadline = Instant::now() + timeout;
    let mut first: Option<i64> = None;
    loop {
        let health = cluster
            .conn
            .exchange(std::slice::from_ref(node), "GET", "/api/health", None)
            .await;
        let Ok((_, r)) = health else {
            eprintln!(
                "{} does not answer; the other replicas re-create its copies",
                node.id
            );
            return Ok(());
        };
        // 503 (its Redis is down) carries the same body.
        let h: Health = conn::json(&node.id, &r)?;
        let held = h.kv_keys.unwrap_or(0) + h.chunks.unwrap_or(0);
        let start = *first.get_or_insert(held.max(1));
        let done = u64::try_from((start - held).max(0) * 100 / start).unwrap_or(0);
        progress.set(done, &format!("({held} items left on {})", node.id));
        if held == 0 && !h.member {
            progress.bar.finish_and_clear();
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CliError::failed(format!(
                "{} still holds {held} items after {timeout:?}",
                node.id
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PassKind, Redistribution};
    use crate::cli::status::tests::row;

    fn at(id: &str, state: NodeState, percent: u64, running: bool) -> crate::api::NodeRow {
        crate::api::NodeRow {
            state: Some(state),
            redistribution: Some(Redistribution {
                pass_kind: PassKind::Redistribution,
                running,
                items: 100,
                done: percent,
                percent,
                passes: 1,
                keys_moved: 10,
            }),
            ..row(id, false)
        }
    }

    #[test]
    fn moving_takes_the_slowest_node_that_is_up() {
        let view = |nodes| Nodes {
            observer: "n1".into(),
            nodes,
        };
        let quiet = view(vec![
            at("n1", NodeState::Alive, 100, false),
            row("n4", false),
            // A down node's last report says nothing about now.
            at("n2", NodeState::Down, 20, true),
        ]);
        assert_eq!(moving(&quiet), (100, false, 10));
        let busy = view(vec![
            at("n1", NodeState::Alive, 100, false),
            at("n4", NodeState::Suspect, 40, true),
            at("n3", NodeState::Alive, 70, true),
        ]);
        assert_eq!(moving(&busy), (40, true, 30));
        assert_eq!(moving(&view(vec![])), (100, false, 0));
    }
}
