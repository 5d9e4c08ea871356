//! What this node knows about the cluster: for every node its failure-detector state, last
//! heartbeat, round trip and the summary it last sent (Redis up, keys, memory, drift), plus this
//! node's own time status. Shared by the heartbeat, report, API and metrics tasks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rcluster_domain::config::{ClusterConfig, NodeConfig};
use rcluster_domain::phi::{
    classify, Liveness, PhiDetector, DEFAULT_WINDOW, PHI_DOWN, PHI_SUSPECT,
};
use rcluster_domain::ratelimit::Limiter;
use serde::{Deserialize, Serialize};

use crate::node::local::Local;
use crate::node::metrics::Metrics;
use crate::node::redis::RedisHandle;

/// What a node tells the others about itself in every heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub redis_up: bool,
    pub redis_state: String,
    /// Why its Redis is in that state (a crash, the next restart), empty while it runs.
    #[serde(default)]
    pub redis_reason: String,
    /// Failures of its Redis in a row (crashes and failed starts) behind the state.
    #[serde(default)]
    pub redis_restarts: u32,
    /// When its supervisor starts its Redis again (wall clock, Unix ms), while it waits to.
    #[serde(default)]
    pub redis_next_attempt_unix_ms: Option<u64>,
    pub kv_keys: Option<i64>,
    pub used_memory_bytes: Option<u64>,
    pub drift_ms: Option<i64>,
    pub time_source: String,
    #[serde(default)]
    pub raft_role: String,
    #[serde(default)]
    pub raft_term: u64,
    #[serde(default)]
    pub raft_commit_index: u64,
    /// The topology epoch this node's module has installed (0: none yet).
    #[serde(default)]
    pub topology_epoch: u64,
    /// Whether this node's module still uses the previous placement beside the current one.
    #[serde(default)]
    pub transition_open: bool,
    /// This node's redistribution progress, as its module reports it.
    #[serde(default)]
    pub redistribution: Option<crate::api::Redistribution>,
}

/// One node as seen from here.
#[derive(Debug)]
pub struct NodeView {
    pub liveness: Liveness,
    pub phi: f64,
    pub detector: PhiDetector,
    pub last_heartbeat_unix_ms: Option<u64>,
    pub rtt_ms: Option<f64>,
    pub summary: Summary,
    /// Why the state is what it is (for people).
    pub reason: String,
    /// The Redis state of this peer last told on `cluster:events` (empty: none yet).
    pub told_redis_state: String,
}

/// The clock status from NTP.
pub use crate::api::TimeStatus;

pub struct Shared {
    pub config: ClusterConfig,
    pub me: NodeConfig,
    /// This node's data folder (`<data_dir>/<id>`).
    pub dir: std::path::PathBuf,
    pub redis: RedisHandle,
    pub nodes: Mutex<BTreeMap<String, NodeView>>,
    /// The members, in the order of the replicated list: the config's nodes until Raft applies
    /// a member list (a joining node knows only itself until then).
    members: Mutex<Vec<NodeConfig>>,
    pub time: Mutex<TimeStatus>,
    pub metrics: Metrics,
    pub limiter: Mutex<Limiter>,
    /// Failed authentications per client address (`api.auth_failure_*`).
    pub auth_failures: Mutex<Limiter>,
    /// The node process's connection to its own Redis.
    pub local: Arc<Local>,
    /// Permits for uploads running at once.
    pub uploads: tokio::sync::Semaphore,
    /// Permits for downloads running at once (held by each download's sender task).
    pub downloads: Arc<tokio::sync::Semaphore>,
    /// The HTTP connections being served, to cut one whose download stalled.
    pub conns: crate::node::conn::Conns,
    /// The Raft driver, once started.
    pub raft: std::sync::OnceLock<crate::node::raft::RaftHandle>,
    started: Instant,
}

/// The node state a failure-detector phi and the node's own Redis report give.
pub fn judge(phi: f64, heard: bool, redis_up: bool) -> (Liveness, String) {
    if !heard {
        return (Liveness::Down, "no heartbeat received yet".into());
    }
    match classify(phi, PHI_SUSPECT, PHI_DOWN) {
        Liveness::Down => (Liveness::Down, format!("heartbeats missing (phi {phi:.1})")),
        _ if !redis_up => (Liveness::Down, "its Redis does not answer".into()),
        Liveness::Suspect => (Liveness::Suspect, format!("heartbeats late (phi {phi:.1})")),
        Liveness::Alive => (Liveness::Alive, "ok".into()),
    }
}

impl Shared {
    pub fn new(
        config: ClusterConfig,
        me: NodeConfig,
        dir: std::path::PathBuf,
        redis: RedisHandle,
        metrics: Metrics,
    ) -> Shared {
        let members = if config.node(&me.id).is_some() {
            config.nodes.clone()
        } else {
            vec![me.clone()]
        };
        let nodes = members
            .iter()
            .map(|n| (n.id.clone(), new_view(&config, &me.id, &n.id)))
            .collect();
        let (me_host, me_port) = (me.local_host().to_owned(), me.redis_port);
        let socket = crate::node::redis::unix_socket(&dir);
        let uploads = usize::try_from(config.files.max_concurrent_uploads).unwrap_or(1);
        let downloads = usize::try_from(config.files.max_concurrent_downloads).unwrap_or(1);
        let api = &config.api;
        let limiter = Limiter::new(api.rate_per_s, api.burst, 10_000);
        let auth_failures =
            Limiter::new(api.auth_failure_rate_per_s, api.auth_failure_burst, 10_000);
        let password = config.redis_password.clone();
        Shared {
            config,
            me,
            dir,
            redis,
            nodes: Mutex::new(nodes),
            members: Mutex::new(members),
            time: Mutex::new(TimeStatus::default()),
            metrics,
            limiter: Mutex::new(limiter),
            auth_failures: Mutex::new(auth_failures),
            local: Arc::new(Local::new(&me_host, me_port, socket, password)),
            uploads: tokio::sync::Semaphore::new(uploads),
            downloads: Arc::new(tokio::sync::Semaphore::new(downloads)),
            conns: crate::node::conn::Conns::default(),
            raft: std::sync::OnceLock::new(),
            started: Instant::now(),
        }
    }

    /// The connection to this node's Redis, for tasks that outlive a borrow.
    pub fn local_handle(&self) -> Arc<Local> {
        self.local.clone()
    }

    /// This node's module's `INFO rcluster` text, `None` when its Redis does not answer within
    /// `timeout`.
    pub async fn module_info(&self, timeout: std::time::Duration) -> Option<String> {
        let mut info = redis::cmd("INFO");
        info.arg("rcluster");
        self.local.query::<String>(&info, timeout).await.ok()
    }

    /// Milliseconds since this process started (monotonic; for the detector and round trips).
    pub fn mono_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Microseconds since this process started (for round trips).
    pub fn mono_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn nodes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, NodeView>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The chunk size of new uploads: as Raft replicated it, else the config's.
    pub fn chunk_size_bytes(&self) -> u64 {
        self.raft
            .get()
            .map_or(self.config.chunk_size_bytes, |r| r.meta().chunk_size_bytes)
    }

    /// The current members.
    pub fn members(&self) -> Vec<NodeConfig> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The member with this id, if it is one.
    pub fn member(&self, id: &str) -> Option<NodeConfig> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|n| n.id == id)
            .cloned()
    }

    /// Replaces the member list (from Raft); nodes that joined get a fresh view, nodes that left
    /// lose theirs.
    pub fn set_members(&self, members: Vec<NodeConfig>) {
        {
            let mut nodes = self.nodes();
            nodes.retain(|id, _| members.iter().any(|m| &m.id == id));
            for m in &members {
                nodes
                    .entry(m.id.clone())
                    .or_insert_with(|| new_view(&self.config, &self.me.id, &m.id));
            }
        }
        *self.members.lock().unwrap_or_else(|p| p.into_inner()) = members;
    }

    pub fn time(&self) -> TimeStatus {
        self.time.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_time(&self, t: TimeStatus) {
        *self.time.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }
}

/// A node's view before any heartbeat: this node is alive, the others are not heard yet.
fn new_view(config: &ClusterConfig, me: &str, id: &str) -> NodeView {
    let (liveness, reason) = if id == me {
        (Liveness::Alive, "this node".to_string())
    } else {
        judge(0.0, false, false)
    };
    NodeView {
        liveness,
        phi: 0.0,
        detector: PhiDetector::new(config.intervals.heartbeat_ms, DEFAULT_WINDOW),
        last_heartbeat_unix_ms: None,
        rtt_ms: None,
        summary: Summary::default(),
        reason,
        told_redis_state: String::new(),
    }
}

/// Wall-clock ms since the Unix epoch (for timestamps people read, never for timing).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
