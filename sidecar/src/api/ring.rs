//! `GET /api/ring` and `GET /api/locate/{key}`: the hash ring's tokens and one key's preference
//! list with what each replica holds.

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
