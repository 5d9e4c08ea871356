//! `/api/nodes`: every node as one node sees it (with each node's redistribution progress), the
//! stop/start/restart actions, and admitting and removing members.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::health::RedisState;

/// Every node as one node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Nodes {
    /// The node that answered.
    pub observer: String,
    pub nodes: Vec<NodeRow>,
}

/// A node's liveness as the observer's failure detector judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Alive,
    Suspect,
    Down,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Alive => "alive",
            NodeState::Suspect => "suspect",
            NodeState::Down => "down",
        }
    }
}

impl From<rcluster_domain::phi::Liveness> for NodeState {
    fn from(l: rcluster_domain::phi::Liveness) -> NodeState {
        use rcluster_domain::phi::Liveness;
        match l {
            Liveness::Alive => NodeState::Alive,
            Liveness::Suspect => NodeState::Suspect,
            Liveness::Down => NodeState::Down,
        }
    }
}

/// One node: its address, and what the observer knows of it (null where it knows nothing yet).
/// The observer's own row is read when asked (its Redis's state from its supervisor, its Raft
/// role and term from its Raft driver), the others' from their last heartbeat, except that the
/// Raft leader the observer knows shows as `leader` as soon as it knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeRow {
    pub id: String,
    pub host: String,
    #[schema(minimum = 1, maximum = 65535)]
    pub redis_port: u16,
    #[schema(minimum = 1, maximum = 65535)]
    pub http_port: u16,
    #[schema(minimum = 1, maximum = 65535)]
    pub peer_port: u16,
    /// This row is the observing node.
    #[serde(rename = "self")]
    pub is_self: bool,
    pub state: Option<NodeState>,
    /// Why the state is what it is.
    pub reason: Option<String>,
    /// Failure-detector phi, 2 decimals.
    pub phi: Option<f64>,
    pub last_heartbeat_age_ms: Option<u64>,
    pub rtt_ms: Option<f64>,
    pub redis_up: Option<bool>,
    /// starting, running, stopped, restarting, crash_looping or cannot_start.
    pub redis_state: Option<String>,
    /// Why its Redis is in that state (the last crash, why it cannot start); empty while it
    /// runs.
    #[serde(default)]
    pub redis_reason: Option<String>,
    /// Failures of its Redis in a row (crashes and failed starts) behind the state.
    #[serde(default)]
    pub redis_restarts: Option<u32>,
    /// When its supervisor starts its Redis again (Unix ms), while it waits to.
    #[serde(default)]
    pub redis_next_attempt_unix_ms: Option<u64>,
    pub kv_keys: Option<i64>,
    pub used_memory_bytes: Option<u64>,
    pub drift_ms: Option<i64>,
    pub time_source: Option<String>,
    /// leader, follower or candidate (empty before Raft started).
    pub raft_role: Option<String>,
    pub raft_term: Option<u64>,
    pub raft_commit_index: Option<u64>,
    /// The topology epoch the node's module has installed (0: none yet).
    pub topology_epoch: Option<u64>,
    /// Whether the node still uses the previous placement beside the current one, until every
    /// member installed the change.
    pub transition_open: Option<bool>,
    /// The node's redistribution progress as its module reports it (null until known).
    #[serde(default)]
    pub redistribution: Option<Redistribution>,
}

/// What a redistribution pass is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PassKind {
    /// After a member or ring change: copies move to their new owners.
    #[default]
    Redistribution,
    /// After a restart: the node checks what it holds.
    Sweep,
    /// The periodic comparison with the other replicas.
    AntiEntropy,
}

impl PassKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PassKind::Redistribution => "redistribution",
            PassKind::Sweep => "sweep",
            PassKind::AntiEntropy => "anti-entropy",
        }
    }
}

/// A node's redistribution progress (its module's `rebalance_*` fields in `INFO rcluster`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Redistribution {
    /// What the running (or last) pass is for.
    pub pass_kind: PassKind,
    /// A pass is running.
    pub running: bool,
    /// Items the running (or last) pass goes through.
    pub items: u64,
    /// Items it went through so far.
    pub done: u64,
    /// `done` of `items`, 0 to 100 (100 when no pass runs).
    #[schema(maximum = 100)]
    pub percent: u64,
    /// Passes completed since the node's Redis started.
    pub passes: u64,
    /// Copies moved to their new owners since the node's Redis started.
    pub keys_moved: u64,
}

/// What `POST /api/nodes/{id}/stop|start|restart` does to the node's Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeAction {
    Stop,
    Start,
    Restart,
}

impl NodeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeAction::Stop => "stop",
            NodeAction::Start => "start",
            NodeAction::Restart => "restart",
        }
    }
}

/// The result of a stop, start or restart (for another node's id: that node's answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionResult {
    pub node: String,
    pub action: NodeAction,
    /// What happened, for people.
    pub result: String,
    pub redis_state: RedisState,
}

/// `POST /api/nodes`: the running node to admit, as it listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    #[schema(pattern = "^[a-z0-9_-]{1,32}$")]
    pub id: String,
    /// Address the node listens on; default 127.0.0.1.
    #[serde(default = "default_host")]
    #[schema(
        min_length = 1,
        max_length = 253,
        pattern = "^[A-Za-z0-9.:-]+$",
        default = "127.0.0.1"
    )]
    pub host: String,
    #[schema(minimum = 1, maximum = 65535)]
    pub redis_port: u16,
    #[schema(minimum = 1, maximum = 65535)]
    pub http_port: u16,
    #[schema(minimum = 1, maximum = 65535)]
    pub peer_port: u16,
}

fn default_host() -> String {
    "127.0.0.1".into()
}

/// A node admitted (member, then Raft voter).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeAdded {
    pub added: String,
    /// Nothing had to change.
    pub already_member: bool,
    pub committed_index: Option<u64>,
    /// The leader that committed it.
    pub leader: String,
    /// The members after the change.
    pub members: Vec<String>,
}

/// A member removed (member list, then Raft voters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeRemoved {
    pub removed: String,
    pub committed_index: Option<u64>,
    /// The leader that committed it.
    pub leader: String,
    /// The members after the change.
    pub members: Vec<String>,
}
