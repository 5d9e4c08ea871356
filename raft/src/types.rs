//! The data Raft persists and sends: log entries, hard state, snapshots, membership and the
//! messages between nodes, with their JSON encoding.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A node's identity, as the cluster names it ("n1", "n2", ...).
pub type NodeId = String;

/// The voting members of the cluster. A configuration takes effect on a node as soon as the entry
/// carrying it is in that node's log (thesis §4.1), committed or not.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
}

impl Membership {
    /// A configuration with exactly these voters.
    pub fn new<I, S>(voters: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<NodeId>,
    {
        Membership {
            voters: voters.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether `id` votes in this configuration.
    pub fn contains(&self, id: &str) -> bool {
        self.voters.contains(id)
    }

    /// How many votes make a majority (0 for an empty configuration).
    pub fn quorum(&self) -> usize {
        if self.voters.is_empty() {
            0
        } else {
            self.voters.len() / 2 + 1
        }
    }
}

/// A single-server membership change (thesis §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    AddNode(NodeId),
    RemoveNode(NodeId),
}

/// What a log entry carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Appended by every new leader so it can commit entries of earlier terms (§5.4.2).
    Noop,
    /// The complete new configuration.
    Config(Membership),
    /// Opaque application data.
    App(Vec<u8>),
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub command: Command,
}

/// State that must be on stable storage before any message that depends on it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HardState {
    pub current_term: u64,
    pub voted_for: Option<NodeId>,
    /// Highest index known committed (an optimisation: lets a restarted node re-apply at once).
    pub commit: u64,
}

/// A compacted prefix of the log: the application state after applying entry `index`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Last entry covered.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// The configuration in force at `index`.
    pub membership: Membership,
    /// The application's serialized state.
    pub data: Vec<u8>,
}

/// Where a follower's log diverges, sent with a rejected AppendEntries so the leader can skip a
/// whole term at a time instead of one entry per round trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictHint {
    /// `prev_log_index` of the rejected request (lets the leader drop stale rejections).
    pub rejected_index: u64,
    /// First index of `term` in the follower's log, or the follower's last index + 1 when its log
    /// is too short.
    pub index: u64,
    /// Term of the follower's entry at `rejected_index`, `None` when it has no such entry.
    pub term: Option<u64>,
}

/// A message between two nodes. Every message carries the sender's current term (§5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub body: MessageBody,
}

/// The message kinds of the paper, plus InstallSnapshot (§7) in one piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    RequestVote {
        last_log_index: u64,
        last_log_term: u64,
    },
    RequestVoteResponse {
        granted: bool,
    },
    AppendEntries {
        prev_log_index: u64,
        prev_log_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
    },
    /// Also answers InstallSnapshot (success with `match_index` = the snapshot's index).
    AppendEntriesResponse {
        success: bool,
        /// On success: the follower's log matches the leader's up to here.
        match_index: u64,
        /// On rejection because of a log mismatch: where to retry.
        conflict: Option<ConflictHint>,
    },
    InstallSnapshot {
        snapshot: Snapshot,
    },
}

/// A message or persisted record that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode raft {what}: {reason}")]
pub struct DecodeError {
    pub what: &'static str,
    pub reason: String,
}

impl Message {
    /// The JSON wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a raft message always serializes")
    }

    /// Parses the JSON wire form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| DecodeError {
            what: "message",
            reason: e.to_string(),
        })
    }

    /// Whether this message comes from a leader (AppendEntries or InstallSnapshot).
    pub fn is_from_leader(&self) -> bool {
        matches!(
            self.body,
            MessageBody::AppendEntries { .. } | MessageBody::InstallSnapshot { .. }
        )
    }
}
