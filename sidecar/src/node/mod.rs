//! `rcluster node`: one node process. Supervises its redis-server, exchanges heartbeats with
//! the other nodes and judges them, checks its clock against NTP, reports what it sees into its
//! Redis, and serves the HTTP API it is given (`crate::http::router`) and metrics, until SIGTERM
//! or Ctrl-C stops it (Redis first, which flushes its AOF).

pub mod bulk;
pub mod conn;
pub mod faults;
pub mod files;
pub mod gossip;
pub mod local;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod module_metrics;
pub mod ntp;
pub mod peer_auth;
pub mod raft;
pub mod redis;
pub mod redis_error;
pub mod report;
pub mod view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::node::gossip::Event;
use crate::node::metrics::Metrics;
use crate::node::redis::{RedisState, Spec};
use crate::node::view::{unix_ms, Shared};
use crate::paths;
use rcluster_domain::config::{ConfigError, NodeConfig};

/// Why a node did not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Paths(#[from] paths::PathsError),
    /// The command line does not fit the config or what the node saved.
    #[error("{0}")]
    Address(String),
    #[error("node '{id}': {source}")]
    BadNode { id: String, source: ConfigError },
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Redis(#[from] redis::StartError),
    #[error(transparent)]
    Raft(#[from] raft::RaftStartError),
    #[error(transparent)]
    Secret(#[from] peer_auth::SecretLoadError),
    /// A port listens beyond loopback while a development default is in use.
    #[error(
        "node '{id}' listens on {host}, beyond loopback, so it refuses to start with development \
         defaults (set host: 127.0.0.1 to keep it on this machine):\n  - {}",
        problems.join("\n  - ")
    )]
    Exposed {
        id: String,
        host: String,
        problems: Vec<String>,
    },
}

impl NodeError {
    /// True when the user can fix it on the command line or in the config.
    pub fn is_bad_input(&self) -> bool {
        match self {
            NodeError::Paths(e) => e.is_bad_input(),
            NodeError::Secret(e) => e.is_bad_input(),
            NodeError::Address(_) | NodeError::BadNode { .. } | NodeError::Exposed { .. } => true,
            NodeError::Io { .. } | NodeError::Redis(_) | NodeError::Raft(_) => false,
        }
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> NodeError {
    move |source| NodeError::Io { what, source }
}

/// Where a node listens when it is not in the config (a node joining later): from the command
/// line the first time, then from `member.json` in its data folder.
#[derive(Clone, Debug, Default)]
pub struct Address {
    pub host: Option<String>,
    /// The address to bind instead of the advertised one (any node, also one in the config).
    pub listen_host: Option<String>,
    pub redis_port: Option<u16>,
    pub http_port: Option<u16>,
    pub peer_port: Option<u16>,
}

impl Address {
    fn is_empty(&self) -> bool {
        self.host.is_none()
            && self.redis_port.is_none()
            && self.http_port.is_none()
            && self.peer_port.is_none()
    }
}

/// This node's id and ports: from the config for a founding member; otherwise from `address`
/// (saved for the next start) or from what was saved.
fn resolve(loaded: &paths::Loaded, id: &str, address: &Address) -> Result<NodeConfig, NodeError> {
    if let Some(node) = loaded.config.node(id) {
        if !address.is_empty() {
            return Err(NodeError::Address(format!(
                "node '{id}' is in {}: its ports come from there; drop --host/--*-port",
                loaded.config_path.display()
            )));
        }
        return Ok(node.clone());
    }
    let saved_path = paths::member_file(&loaded.data_dir, id);
    let saved: Option<NodeConfig> = std::fs::read(&saved_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let ids: Vec<&str> = loaded.config.nodes.iter().map(|n| n.id.as_str()).collect();
    let node = match (saved, address.is_empty()) {
        (Some(saved), true) => return Ok(saved),
        (None, true) => {
            return Err(NodeError::Address(format!(
                "node '{id}' is not in {} (nodes: {}); to start a new node that joins the \
                 cluster pass --redis-port, --http-port and --peer-port (and --host), or use \
                 `rcluster node add {id}`",
                loaded.config_path.display(),
                ids.join(", ")
            )))
        }
        (saved, false) => {
            let port = |p: Option<u16>, name: &str| {
                p.ok_or_else(|| NodeError::Address(format!("a joining node needs --{name}")))
            };
            let node = NodeConfig {
                id: id.to_string(),
                host: address.host.clone().unwrap_or_else(|| "127.0.0.1".into()),
                listen_host: None,
                redis_port: port(address.redis_port, "redis-port")?,
                http_port: port(address.http_port, "http-port")?,
                peer_port: port(address.peer_port, "peer-port")?,
            };
            if let Some(saved) = saved.filter(|s| *s != node) {
                return Err(NodeError::Address(format!(
                    "node '{id}' was started before on {}:{} (redis {}, peer {}), as saved in \
                     {}; start it without --host/--*-port, or remove that folder to make a new \
                     node",
                    saved.host,
                    saved.http_port,
                    saved.redis_port,
                    saved.peer_port,
                    saved_path.display()
                )));
            }
            node
        }
    };
    rcluster_domain::config::check_nodes(std::slice::from_ref(&node)).map_err(|source| {
        NodeError::BadNode {
            id: id.to_string(),
            source,
        }
    })?;
    let dir = loaded.data_dir.join(id);
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&saved_path, serde_json::to_vec(&node).unwrap_or_default()))
        .map_err(io(format!("write {}", saved_path.display())))?;
    Ok(node)
}

/// What `rcluster node --id ..` was given.
pub struct NodeArgs {
    pub config: PathBuf,
    pub id: String,
    pub address: Address,
    pub low_resource: bool,
    pub module: Option<PathBuf>,
}

/// Runs the node until SIGTERM or Ctrl-C, serving `app(shared)` on its HTTP port.
pub async fn run(args: NodeArgs, app: fn(Arc<Shared>) -> axum::Router) -> Result<(), NodeError> {
    let NodeArgs {
        config: config_path,
        id,
        address,
        low_resource,
        module,
    } = args;
    let mut loaded = paths::load(&config_path, low_resource)?;
    logging::init(&loaded.config.log_level);
    // In a container (or any cgroup with a memory limit): Redis and the transfer buffers fit.
    if let Some(limit) = memory::cgroup_limit() {
        let (fitted, changes) = rcluster_domain::memory_fit::fit(&loaded.config, limit);
        for change in &changes {
            tracing::info!(node = %id, "memory limit {} MiB: {change}", limit >> 20);
        }
        loaded.config = fitted;
    }
    let mut node = resolve(&loaded, &id, &address)?;
    if let Some(listen) = &address.listen_host {
        node.listen_host = Some(listen.clone());
    }
    // Before anything listens: beyond loopback, development defaults are refused.
    let problems = loaded.config.exposure_problems(&node);
    if !problems.is_empty() {
        return Err(NodeError::Exposed {
            id: node.id.clone(),
            host: node.host.clone(),
            problems,
        });
    }
    let dev_keys = loaded.config.api.dev_keys_in_use();
    if !dev_keys.is_empty() {
        tracing::warn!(
            node = %node.id,
            "the HTTP API accepts the development key(s) {} (the default when api.keys is not \
             set): fine on this machine, refused beyond loopback; set api.keys in {}",
            dev_keys.join(", "),
            loaded.config_path.display()
        );
    }
    memory::tune();
    let module = paths::module(module)?;
    let dir = loaded.data_dir.join(&node.id);
    std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;

    let auth = Arc::new(peer_auth::PeerAuth::load(&loaded, &node.id)?);
    let internal_password = match &loaded.config.internal_password {
        Some(configured) => configured.clone(),
        None => auth.internal_password(),
    };
    let insight_password =
        redis::insight_password(&loaded).map_err(io("read insight.password_file".to_string()))?;

    // Take both ports first, so a clash is reported before anything starts.
    let listen = node.listen();
    let http = tokio::net::TcpListener::bind((listen, node.http_port))
        .await
        .map_err(io(format!(
            "listen on {listen}:{} (http_port of {})",
            node.http_port, node.id
        )))?;
    let peer_socket = tokio::net::UdpSocket::bind((listen, node.peer_port))
        .await
        .map_err(io(format!(
            "listen on {listen}:{} (peer_port of {})",
            node.peer_port, node.id
        )))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let spec = Spec {
        config: loaded.config.clone(),
        node: node.clone(),
        redis_conf: loaded.redis_conf.clone(),
        module,
        dir: dir.clone(),
        internal_password,
        insight_password,
    };
    let (redis, redis_task) = redis::spawn(spec, shutdown_rx.clone()).await?;
    tracing::info!(
        node = %node.id,
        "redis-server pid {} on {}:{}",
        redis.state.borrow().pid().unwrap_or(0),
        node.host,
        node.redis_port
    );
    faults::init(&node.id, &dir);
    let shared = Arc::new(Shared::new(
        loaded.config.clone(),
        node.clone(),
        dir,
        redis,
        Metrics::new(&node.id, loaded.config.metrics.per_peer),
    ));
    let raft = raft::spawn(shared.clone(), auth.clone(), shutdown_rx.clone()).await?;
    let _ = shared.raft.set(raft);
    let (events_tx, events_rx) = mpsc::channel::<Event>(256);
    let tasks = vec![
        tokio::spawn(gossip::run(
            shared.clone(),
            auth,
            peer_socket,
            events_tx.clone(),
            shutdown_rx.clone(),
        )),
        tokio::spawn(report::run(shared.clone(), events_rx, shutdown_rx.clone())),
        tokio::spawn(ntp::run(shared.clone(), shutdown_rx.clone())),
        tokio::spawn(faults::run(shared.clone(), shutdown_rx.clone())),
        tokio::spawn(watch_redis(shared.clone(), events_tx, shutdown_rx.clone())),
    ];

    let mut server_shutdown = shutdown_rx.clone();
    let app = app(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
    // Each connection is registered so a download can cut it when its client stalls; the
    // (empty) tap gives handlers the client's address as `ConnectInfo<SocketAddr>`.
    let listener = conn::Listener::new(http, shared.conns.clone()).tap_io(|_| {});
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_shutdown.changed().await;
            })
            .await
    });
    tracing::info!(
        node = %node.id,
        "http on {}:{} (reached as {}:{})",
        node.listen(),
        node.http_port,
        node.host,
        node.http_port
    );

    let mut term = signal(SignalKind::terminate()).map_err(io("watch SIGTERM".into()))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = shutdown_tx.send(true);
    // Redis stops first (bounded inside the supervisor), then the rest.
    let _ = redis_task.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    for t in tasks {
        t.abort();
    }
    tracing::info!(node = %node.id, "stopped");
    Ok(())
}

/// Publishes the changes of this node's Redis state (log, `cluster:events`, metrics) and counts
/// crashes and the restarts after them.
async fn watch_redis(
    shared: Arc<Shared>,
    events: mpsc::Sender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut state = shared.redis.state.clone();
    let mut last = state.borrow().clone();
    shared
        .metrics
        .observe_redis_state(last.name(), last.restarts());
    // A restart after a crash is counted once Redis runs again.
    let mut after_crash = false;
    loop {
        tokio::select! {
            r = state.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let now = state.borrow().clone();
        let m = &shared.metrics;
        match &now {
            RedisState::Restarting(_) => {
                after_crash = true;
                m.redis_crashes.inc();
            }
            RedisState::CannotStart { .. } => {
                after_crash = false;
                if matches!(last, RedisState::Starting { .. }) {
                    m.redis_crashes.inc();
                }
            }
            RedisState::Stopped { .. } => after_crash = false,
            RedisState::Running { .. } if after_crash => {
                after_crash = false;
                m.redis_restarts.inc();
            }
            _ => {}
        }
        m.observe_redis_state(now.name(), now.restarts());
        let reason = now.reason();
        if matches!(
            now,
            RedisState::Restarting(_) | RedisState::CannotStart { .. }
        ) {
            tracing::warn!(node = %shared.me.id, "redis {} -> {}: {reason}", last.name(), now.name());
        } else {
            tracing::info!(node = %shared.me.id, "redis {} -> {} {reason}", last.name(), now.name());
        }
        let _ = events.try_send(Event {
            kind: "redis_state",
            observer: shared.me.id.clone(),
            node: shared.me.id.clone(),
            from: last.name().to_string(),
            to: now.name().to_string(),
            reason,
            at_ms: unix_ms(),
            restarts: Some(now.restarts()),
            next_attempt_unix_ms: now.next_attempt_unix_ms(),
        });
        last = now;
    }
}
