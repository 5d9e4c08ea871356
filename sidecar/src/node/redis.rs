//! Supervision of the node's redis-server: start it (module, settings, data folder), wait until
//! it answers, load the topology into its module, restart it after a crash (bounded per minute),
//! and stop, start or restart it on request. The state is published on a watch channel.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rcluster_domain::config::{ClusterConfig, NodeConfig, CHUNK_SIZE_RANGE};
use rcluster_domain::rc::cluster::ClusterSet;
use rcluster_domain::topology::{internal_user_directive, Topology};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};

use crate::node::local::rc;
use crate::node::redis_error::RedisError;
use crate::{probe, supervise};

/// Why this node's redis-server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Log(#[from] supervise::LogError),
    #[error("cannot start redis-server (is it installed? ./rc.sh installs it): {0}")]
    Spawn(std::io::Error),
    #[error("redis-server of {id} exited during start-up ({status}); last lines of {}:\n{tail}", log.display())]
    Exited {
        id: String,
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error("redis-server of {id} did not answer within {REDIS_START_TIMEOUT:?}; see {}", log.display())]
    NoAnswer { id: String, log: PathBuf },
    #[error("cannot load the topology into the module of {id}: {source}")]
    Topology {
        id: String,
        source: crate::node::redis_error::RedisError,
    },
}

/// Why a stop, start or restart did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Start(StartError),
}

/// How long Redis may take to start answering PING (loading a large AOF takes a while).
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long Redis may take to shut down cleanly before it is killed.
const REDIS_STOP_GRACE: Duration = Duration::from_secs(15);
/// The config file's topology is epoch 1; every metadata change committed through Raft pushes a
/// later one (see `node::raft`).
const TOPOLOGY_EPOCH: u64 = 1;
/// How long loading the topology into a started Redis may take.
const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisState {
    Starting,
    Running {
        pid: u32,
    },
    /// Stopped on request; started again only on request.
    Stopped,
    /// Crashed; restarting after the configured delay.
    Restarting {
        reason: String,
    },
    /// Crashed too often, or could not start; started again only on request.
    Failed {
        reason: String,
    },
}

impl RedisState {
    /// The state without its details, as the API shows it.
    pub fn kind(&self) -> crate::api::RedisState {
        use crate::api::RedisState as Kind;
        match self {
            RedisState::Starting => Kind::Starting,
            RedisState::Running { .. } => Kind::Running,
            RedisState::Stopped => Kind::Stopped,
            RedisState::Restarting { .. } => Kind::Restarting,
            RedisState::Failed { .. } => Kind::Failed,
        }
    }
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }
    pub fn pid(&self) -> Option<u32> {
        match self {
            RedisState::Running { pid } => Some(*pid),
            _ => None,
        }
    }
}

/// What the API may ask of the supervisor (`POST /api/nodes/{id}/stop|start|restart`).
pub use crate::api::NodeAction as Control;

type Request = (Control, oneshot::Sender<Result<String, ControlError>>);

/// The handle other tasks use: the current state and a way to ask for changes.
#[derive(Clone)]
pub struct RedisHandle {
    tx: mpsc::Sender<Request>,
    pub state: watch::Receiver<RedisState>,
}

impl RedisHandle {
    /// A handle with no supervisor behind it, for in-process tests of the API: the state stays
    /// `Stopped` and every request is refused.
    #[cfg(test)]
    pub fn detached() -> RedisHandle {
        let (tx, _) = mpsc::channel(1);
        let (_, state) = watch::channel(RedisState::Stopped);
        RedisHandle { tx, state }
    }

    /// Asks the supervisor to stop, start or restart Redis; returns what happened.
    pub async fn control(&self, c: Control) -> Result<String, ControlError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.tx
            .send((c, reply_tx))
            .await
            .map_err(|_| ControlError::ShuttingDown)?;
        reply_rx.await.map_err(|_| ControlError::ShuttingDown)?
    }
}

/// Everything needed to start this node's Redis.
pub struct Spec {
    pub config: ClusterConfig,
    pub node: NodeConfig,
    pub redis_conf: PathBuf,
    pub module: PathBuf,
    pub dir: PathBuf,
}

/// The Unix socket this node's Redis also listens on (in its data folder), when the path fits
/// in a socket address (`sun_path`, 108 bytes with its terminator); `None` means TCP only.
pub fn unix_socket(dir: &std::path::Path) -> Option<PathBuf> {
    let path = dir.join("redis.sock");
    (path.as_os_str().len() < 100).then_some(path)
}

impl Spec {
    fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    async fn start(&self) -> Result<Child, StartError> {
        let cfg = &self.config;
        let node = &self.node;
        let mut cmd = supervise::command("redis-server", &self.log())?;
        cmd.arg(&self.redis_conf)
            .args(["--port", &node.redis_port.to_string()])
            .args(["--bind", &node.host])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--maxmemory", &format!("{}mb", cfg.redis_maxmemory_mb)])
            .arg("--loadmodule")
            .arg(&self.module)
            .args(["node-id", &node.id])
            .args(["max-key-bytes", &cfg.limits.max_key_bytes.to_string()])
            .args(["max-value-bytes", &cfg.limits.max_value_bytes.to_string()])
            // Any chunk size the cluster may switch to (through Raft), so copies of files cut
            // with an earlier size still move between nodes.
            .args(["max-chunk-bytes", &CHUNK_SIZE_RANGE.end().to_string()])
            .args([
                "anti-entropy-interval-ms",
                &cfg.intervals.anti_entropy_ms.to_string(),
            ])
            .args(["internal-password", &cfg.internal_password])
            .arg("--user")
            .args(internal_user_directive(&cfg.internal_password));
        // The node process reaches its own Redis over this socket: chunks cross it at about
        // twice the speed of loopback TCP, which pays the whole TCP stack twice per transfer.
        if let Some(sock) = unix_socket(&self.dir) {
            cmd.arg("--unixsocket")
                .arg(sock)
                .args(["--unixsocketperm", "700"]);
        }
        let mut child = cmd.spawn().map_err(StartError::Spawn)?;
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(StartError::Exited {
                    id: node.id.clone(),
                    status,
                    log: self.log(),
                    tail: supervise::log_tail(&self.log(), 15),
                });
            }
            // Its own redis-server, not another process that holds the port (this one then exits
            // with "Address already in use", seen above on the next round), done loading.
            let answering =
                probe::redis_ready_pid(&node.host, node.redis_port, Duration::from_millis(500))
                    .await;
            if answering.is_some() && answering == child.id() {
                break;
            }
            if Instant::now() > deadline {
                supervise::stop(&mut child, REDIS_STOP_GRACE).await;
                return Err(StartError::NoAnswer {
                    id: node.id.clone(),
                    log: self.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Err(e) = push_topology(node, &Topology::from_config(cfg, TOPOLOGY_EPOCH)).await {
            supervise::stop(&mut child, REDIS_STOP_GRACE).await;
            return Err(e);
        }
        Ok(child)
    }
}

/// Loads the cluster topology into this node's module, so its quorum commands can route.
async fn push_topology(node: &NodeConfig, topology: &Topology) -> Result<(), StartError> {
    let fail = |source: RedisError| StartError::Topology {
        id: node.id.clone(),
        source,
    };
    let client = redis::Client::open(format!("redis://{}:{}/", node.host, node.redis_port))
        .map_err(|e| fail(e.into()))?;
    let push = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        rc(&ClusterSet {
            topology: topology.clone(),
        })
        .query_async::<()>(&mut conn)
        .await
    };
    match tokio::time::timeout(TOPOLOGY_TIMEOUT, push).await {
        // A restarted Redis may already hold a newer topology that Raft committed (restored
        // from its AOF): keep it; the Raft driver pushes its current one again anyway.
        // (The module answers BADARG for it, like for a malformed one: only its words tell.)
        Ok(Err(e)) if e.to_string().contains("older than the installed") => Ok(()),
        Ok(result) => result.map_err(|e| fail(e.into())),
        Err(_) => Err(fail(RedisError::Timeout(TOPOLOGY_TIMEOUT))),
    }
}

/// Starts Redis and the supervisor task. Fails when the first start fails.
pub async fn spawn(
    spec: Spec,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(RedisHandle, tokio::task::JoinHandle<()>), StartError> {
    let child = spec.start().await?;
    let pid = child.id().unwrap_or(0);
    let (state_tx, state_rx) = watch::channel(RedisState::Running { pid });
    let (tx, mut rx) = mpsc::channel::<Request>(8);
    let task = tokio::spawn(async move {
        let mut child = Some(child);
        let mut crashes: VecDeque<Instant> = VecDeque::new();
        let sup = spec.config.supervision;
        loop {
            enum Event {
                Control(Option<Request>),
                Exited(std::io::Result<std::process::ExitStatus>),
                Shutdown,
            }
            let event = tokio::select! {
                r = rx.recv() => Event::Control(r),
                s = async { match child.as_mut() { Some(c) => c.wait().await, None => std::future::pending().await } } => Event::Exited(s),
                _ = shutdown.changed() => Event::Shutdown,
            };
            match event {
                Event::Shutdown | Event::Control(None) => break,
                Event::Exited(status) => {
                    child = None;
                    let reason = format!(
                        "redis-server exited unexpectedly ({})",
                        status.map_or_else(|e| e.to_string(), |s| s.to_string())
                    );
                    eprintln!(
                        "node {}: {reason}; last lines of its log:\n{}",
                        spec.node.id,
                        supervise::log_tail(&spec.log(), 8)
                    );
                    let now = Instant::now();
                    crashes.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
                    if !sup.restart_on_crash
                        || crashes.len() >= sup.max_restarts_per_minute as usize
                    {
                        let why = if sup.restart_on_crash {
                            format!("{reason}; {} crashes within a minute, not restarting (POST /api/nodes/{}/start)", crashes.len() + 1, spec.node.id)
                        } else {
                            format!("{reason}; restart_on_crash is off")
                        };
                        let _ = state_tx.send(RedisState::Failed { reason: why });
                        continue;
                    }
                    crashes.push_back(now);
                    let _ = state_tx.send(RedisState::Restarting {
                        reason: reason.clone(),
                    });
                    tokio::time::sleep(Duration::from_millis(sup.restart_delay_ms)).await;
                    match spec.start().await {
                        Ok(c) => {
                            let _ = state_tx.send(RedisState::Running {
                                pid: c.id().unwrap_or(0),
                            });
                            child = Some(c);
                        }
                        Err(e) => {
                            let _ = state_tx.send(RedisState::Failed {
                                reason: e.to_string(),
                            });
                        }
                    }
                }
                Event::Control(Some((control, reply))) => {
                    let mut result = Ok(String::new());
                    if matches!(control, Control::Stop | Control::Restart) {
                        match child.take() {
                            Some(mut c) => {
                                let _ = state_tx.send(RedisState::Stopped);
                                let status = supervise::stop(&mut c, REDIS_STOP_GRACE).await;
                                result = Ok(format!("redis-server stopped ({status})"));
                            }
                            None if control == Control::Stop => {
                                result = Ok("redis-server was not running".into())
                            }
                            None => {}
                        }
                    }
                    if matches!(control, Control::Start | Control::Restart) {
                        if child.is_some() {
                            result = Ok("redis-server is already running".into());
                        } else {
                            let _ = state_tx.send(RedisState::Starting);
                            result = match spec.start().await {
                                Ok(c) => {
                                    let pid = c.id().unwrap_or(0);
                                    let _ = state_tx.send(RedisState::Running { pid });
                                    child = Some(c);
                                    crashes.clear();
                                    Ok(format!("redis-server started (pid {pid})"))
                                }
                                Err(e) => {
                                    let _ = state_tx.send(RedisState::Failed {
                                        reason: e.to_string(),
                                    });
                                    Err(ControlError::Start(e))
                                }
                            };
                        }
                    }
                    let _ = reply.send(result);
                }
            }
        }
        if let Some(mut c) = child.take() {
            supervise::stop(&mut c, REDIS_STOP_GRACE).await;
        }
        let _ = state_tx.send(RedisState::Stopped);
    });
    Ok((
        RedisHandle {
            tx,
            state: state_rx,
        },
        task,
    ))
}
