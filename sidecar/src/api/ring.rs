//! `GET /api/ring` (also a previewed ring and what would move), `GET /api/ring/files/{id}` and
//! `GET /api/locate/{key}`: the hash ring's tokens, where a file's chunks live, and one key's
//! preference list with what each replica holds.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The hash ring as this node places keys: every node's virtual nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RingView {
    /// The node that answered.
    pub observer: String,
    /// Virtual nodes (tokens) per node.
    pub vnodes: u32,
    /// Replicas of each key (quorum n of the replicated metadata).
    pub n: u8,
    /// Node ids, sorted.
    pub nodes: Vec<String>,
    /// Every token in ring order.
    pub tokens: Vec<RingToken>,
    /// For a previewed ring (`?with=`, `?without=`, `?vnodes=`): what moves compared with the
    /// current one.
    pub change: Option<RingChange>,
}

/// One virtual node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RingToken {
    pub node: String,
    /// The token's place on the ring as a fraction of the hash space (0 <= at < 1).
    pub at: f64,
}

/// A key's preference list, and what each of its replicas holds right now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Located {
    pub key: String,
    /// The node that answered.
    pub observer: String,
    /// The key's place on the ring as a fraction of the hash space (0 <= at < 1).
    pub at: f64,
    /// `RC.LOCATE`'s rows in preference order (the first is the primary owner).
    pub replicas: Vec<ReplicaCopy>,
}

/// One preference node and its copy of the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaCopy {
    pub node: String,
    /// Its Redis address (`host:port`; empty when unknown).
    pub address: String,
    /// Its state as the answering node sees it (`self`, `alive`, `suspect`, `down`, `up`,
    /// `unknown`).
    pub state: String,
    /// What it holds (`null`: nothing, or it could not be asked: see `error`).
    pub held: Option<HeldCopy>,
    /// Why it could not be asked.
    pub error: Option<String>,
}

/// A replica's copy: its version and whether it is a delete's tombstone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeldCopy {
    /// The version's hybrid-clock timestamp (`physical_ms << 16 | logical`; above 2^53, so
    /// JavaScript clients compare `physical_ms` and `logical`).
    pub version: u64,
    /// The timestamp's wall-clock part (Unix ms).
    pub physical_ms: u64,
    /// The timestamp's logical counter.
    pub logical: u16,
    /// The node that stamped the version.
    pub origin: String,
    pub tombstone: bool,
    /// The value's length.
    pub bytes: u64,
}

/// `?with=`, `?without=`, `?vnodes=`: a ring to preview (a member joining or leaving, another
/// number of virtual nodes), compared with the current one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RingQuery {
    /// A node id to add to the members.
    #[param(pattern = "^[a-z0-9_-]{1,32}$")]
    pub with: Option<String>,
    /// A member to leave out.
    #[param(pattern = "^[a-z0-9_-]{1,32}$")]
    pub without: Option<String>,
    /// Virtual nodes per node.
    #[param(minimum = 1, maximum = 4096)]
    pub vnodes: Option<u32>,
}

/// How a previewed ring differs from the current one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RingChange {
    /// Share of the hash space (0 to 1) whose set of N replicas changes: about the share of
    /// keys whose copies move.
    pub moving_share: f64,
    /// The stretches that move, as fractions of the hash space: places `after < h <= up_to`
    /// (`after > up_to` wraps past the end; `after == up_to` is the whole space).
    pub moving: Vec<MovedRange>,
}

/// One stretch of the hash space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovedRange {
    pub after: f64,
    pub up_to: f64,
}

/// Where a file's chunks live: each chunk's preference list and the nodes that hold it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePlacement {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub chunk_count: u64,
    /// The first chunks (at most 4096), in order.
    pub chunks: Vec<ChunkPlacement>,
    /// Nodes that could not be asked what they hold.
    pub unreachable: Vec<String>,
}

/// One chunk: its place on the ring, its preference list, and where it is held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChunkPlacement {
    pub index: u32,
    /// Its place on the ring as a fraction of the hash space.
    pub at: f64,
    /// Its preference list (RC.LOCATE of `<file-id>:<index>`).
    pub preference: Vec<String>,
    /// The nodes whose Redis holds it (RC.CHUNK.LIST), in node order.
    pub held_on: Vec<String>,
}
