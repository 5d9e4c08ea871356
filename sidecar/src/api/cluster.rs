//! `GET /api/cluster` and the metadata changes through Raft (`PUT /api/cluster/quorum`,
//! `PUT /api/cluster/settings`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::nodes::NodeRow;

/// The cluster as one node sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cluster {
    /// The cluster's name.
    pub cluster: String,
    /// The node that answered.
    pub observer: String,
    /// The config's default quorum.
    pub quorum: Quorum,
    /// Virtual nodes per node on the ring (replicated by Raft).
    #[schema(minimum = 1)]
    pub vnodes: u32,
    /// Chunk size of new uploads (replicated by Raft).
    pub chunk_size_bytes: u64,
    #[schema(minimum = 1)]
    pub heartbeat_ms: u64,
    pub time: TimeStatus,
    /// Raft on this node (null until it started).
    pub raft: Option<RaftStatus>,
    /// The quorum Raft replicated (null until Raft started).
    pub replicated_quorum: Option<Quorum>,
    pub nodes: Vec<NodeRow>,
}

/// N copies of every key, W acknowledgements per write, R answers per read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quorum {
    #[schema(minimum = 1, maximum = 255)]
    pub n: u8,
    #[schema(minimum = 1, maximum = 255)]
    pub w: u8,
    #[schema(minimum = 1, maximum = 255)]
    pub r: u8,
}

impl Quorum {
    /// Said with a quorum whose reads need not meet its writes (w + r <= n): accepted, but a
    /// read may then miss a write that was acknowledged.
    pub fn warning(&self) -> Option<String> {
        let (n, w, r) = (u16::from(self.n), u16::from(self.w), u16::from(self.r));
        (w + r <= n).then(|| {
            format!(
                "w + r = {} is not above n = {n}: a read may miss a write that was acknowledged \
                 (reads and writes overlap only when w + r > n)",
                w + r
            )
        })
    }
}

impl From<rcluster_domain::config::Quorum> for Quorum {
    fn from(q: rcluster_domain::config::Quorum) -> Quorum {
        Quorum {
            n: q.n,
            w: q.w,
            r: q.r,
        }
    }
}

/// Raft on one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RaftStatus {
    /// `leader`, `follower` or `candidate`.
    pub role: String,
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<String>,
    pub commit_index: u64,
    /// Index of the last applied entry: the topology epoch pushed into the module.
    pub applied: u64,
    pub voters: Vec<String>,
}

/// The node's clock status from NTP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TimeStatus {
    /// `ntp` when a server answered last time, `unavailable` when none did, `not configured`
    /// (empty before the first check).
    pub source: String,
    pub offset_ms: Option<i64>,
    pub round_trip_ms: Option<u64>,
    pub server: Option<String>,
    pub checked_unix_ms: Option<u64>,
    pub error: Option<String>,
}

/// A quorum change committed through Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuorumChanged {
    #[schema(minimum = 1)]
    pub committed_index: u64,
    pub quorum: Quorum,
    /// The leader that committed it.
    pub leader: String,
    /// Present when w + r <= n: reads may then miss acknowledged writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// `PUT /api/cluster/settings`: at least one of the two.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Virtual nodes per node on the hash ring.
    #[schema(minimum = 1, maximum = 4096)]
    pub vnodes: Option<u32>,
    /// Chunk size of new uploads.
    #[schema(minimum = 1048576, maximum = 5242880)]
    pub chunk_size_bytes: Option<u64>,
}

/// The settings after a change committed through Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsChanged {
    pub committed_index: u64,
    pub vnodes: u32,
    pub chunk_size_bytes: u64,
    /// The leader that committed it.
    pub leader: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_whose_reads_miss_writes_is_warned_about() {
        let q = |n, w, r| Quorum { n, w, r }.warning();
        assert_eq!(
            q(3, 1, 1).as_deref(),
            Some(
                "w + r = 2 is not above n = 3: a read may miss a write that was acknowledged \
                 (reads and writes overlap only when w + r > n)"
            )
        );
        assert!(q(3, 2, 1).is_some());
        assert!(q(3, 2, 2).is_none());
        assert!(q(3, 3, 1).is_none());
        assert!(q(255, 255, 255).is_none());
        assert!(q(1, 1, 1).is_none());
    }
}
