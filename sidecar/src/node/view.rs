//! What this node knows about the cluster: for every node its failure-detector state, last
//! heartbeat, round trip and the summary it last sent (Redis up, keys, memory, drift), plus this
//! node's own time status, and its own row read live (its supervisor's and Raft driver's word at
//! the time of asking). Shared by the heartbeat, report, API and metrics tasks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rcluster_domain::config::{ClusterConfig, NodeConfig};
use rcluster_domain::phi::{
    classify, Liveness, PhiDetector, DEFAULT_WINDOW, PHI_DOWN, PHI_SUSPECT,
};
use rcluster_domain::ratelimit::Limiter;
use serde::{Deserialize, Serialize};

use crate::api::RaftStatus;
use crate::node::local::Local;
use crate::node::metrics::Metrics;
use crate::node::redis::{RedisHandle, RedisState};

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
    /// The process id of its Redis while it runs (which process `redis_up` was found about).
    #[serde(default)]
    pub redis_pid: Option<u32>,
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

/// Longest reason a heartbeat carries (the whole beat must fit one datagram).
const MAX_REASON_BYTES: usize = 300;

/// The first line of `reason`, cut to [`MAX_REASON_BYTES`] on a character boundary.
pub fn short_reason(reason: &str) -> String {
    let line = reason.lines().next().unwrap_or_default();
    let mut end = line.len().min(MAX_REASON_BYTES);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}

/// This node's verdict on itself: alive while its Redis answers, else down, saying the state its
/// supervisor reports.
pub fn own_verdict(redis_up: bool, redis_state: &str) -> (Liveness, String) {
    if redis_up {
        (Liveness::Alive, "this node".to_string())
    } else {
        (
            Liveness::Down,
            format!("this node's Redis does not answer ({redis_state})"),
        )
    }
}

/// This node's own row, read when asked.
#[derive(Clone, Debug)]
pub struct Own {
    pub liveness: Liveness,
    pub reason: String,
    pub summary: Summary,
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

    /// `summary` (what the last look at this node's Redis found) with what this node's
    /// supervisor says of its Redis (`state`) and what its Raft driver says now.
    pub fn with_own_state(&self, state: &RedisState, summary: Summary) -> Summary {
        let raft = self.raft.get().map(|r| r.status()).unwrap_or_default();
        Summary {
            redis_state: state.name().to_string(),
            redis_reason: short_reason(&state.reason()),
            redis_restarts: state.restarts(),
            redis_next_attempt_unix_ms: state.next_attempt_unix_ms(),
            redis_pid: state.pid(),
            raft_role: raft.role,
            raft_term: raft.term,
            raft_commit_index: raft.commit_index,
            ..summary
        }
    }

    /// Whether this node's Redis is up now: its supervisor runs it, and the last look at it did
    /// not find that same process hung.
    pub fn own_redis_up(&self) -> bool {
        let pid = self.redis.state.borrow().pid();
        let nodes = self.nodes();
        let heard = nodes.get(&self.me.id).map(|v| &v.summary);
        own_redis_up(heard.unwrap_or(&Summary::default()), pid)
    }

    /// This node's own row as of now, not as of its last heartbeat: its Redis's state from its
    /// supervisor and its Raft role, term and commit index from its Raft driver; the keys,
    /// memory and epoch from the last look at its Redis. Its Redis is up while the supervisor
    /// runs it, unless that last look found this same process not answering (a hung Redis).
    pub fn own_live(&self) -> Own {
        let heard = self
            .nodes()
            .get(&self.me.id)
            .map(|v| v.summary.clone())
            .unwrap_or_default();
        let state = self.redis.state.borrow().clone();
        let mut summary = self.with_own_state(&state, heard.clone());
        summary.redis_up = own_redis_up(&heard, summary.redis_pid);
        let (liveness, reason) = own_verdict(summary.redis_up, &summary.redis_state);
        Own {
            liveness,
            reason,
            summary,
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

/// A node's Raft role and term as this node knows them (`heard`: its last heartbeat's): the
/// leader this node's Raft driver knows (`known`) is `leader` of its term as soon as this node
/// learns of it, not a heartbeat later; every other node is as it last said.
pub fn raft_seen(id: &str, heard: (&str, u64), known: Option<&RaftStatus>) -> (String, u64) {
    match known {
        Some(k) if k.leader.as_deref() == Some(id) && k.term >= heard.1 => {
            ("leader".to_string(), k.term)
        }
        _ => (heard.0.to_string(), heard.1),
    }
}

/// Whether this node's Redis is up, its supervisor running process `pid` (`None`: none runs),
/// given what the last look at it found (`heard`).
fn own_redis_up(heard: &Summary, pid: Option<u32>) -> bool {
    pid.is_some() && (heard.redis_up || heard.redis_pid != pid)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_redis_is_up_while_its_process_runs_unless_found_hung() {
        let heard = |up, pid| Summary {
            redis_up: up,
            redis_pid: pid,
            ..Summary::default()
        };
        // Killed since the last look: down at once.
        assert!(!own_redis_up(&heard(true, Some(7)), None));
        // Started again since: up at once.
        assert!(own_redis_up(&heard(false, None), Some(8)));
        assert!(own_redis_up(&heard(false, Some(7)), Some(8)));
        // The process the last look found not answering: still down.
        assert!(!own_redis_up(&heard(false, Some(8)), Some(8)));
        assert!(own_redis_up(&heard(true, Some(8)), Some(8)));
    }

    #[test]
    fn the_leader_raft_knows_shows_at_once() {
        let known = RaftStatus {
            role: "follower".into(),
            term: 5,
            leader: Some("n2".into()),
            ..RaftStatus::default()
        };
        // n2's last heartbeat was from before it won term 5.
        assert_eq!(
            raft_seen("n2", ("candidate", 4), Some(&known)),
            ("leader".to_string(), 5)
        );
        assert_eq!(
            raft_seen("n3", ("follower", 5), Some(&known)),
            ("follower".to_string(), 5)
        );
        // A heartbeat from a later term than this node knows is newer news.
        assert_eq!(
            raft_seen("n2", ("follower", 6), Some(&known)),
            ("follower".to_string(), 6)
        );
        assert_eq!(raft_seen("n2", ("", 0), None), (String::new(), 0));
    }

    #[test]
    fn own_verdict_names_the_supervisor_state() {
        assert_eq!(
            own_verdict(true, "running"),
            (Liveness::Alive, "this node".into())
        );
        assert_eq!(
            own_verdict(false, "restarting"),
            (
                Liveness::Down,
                "this node's Redis does not answer (restarting)".into()
            )
        );
        assert_eq!(short_reason("first\nsecond"), "first");
        assert_eq!(short_reason(&"é".repeat(400)).len(), 300);
    }
}
