//! Raft consensus for cluster metadata, in the style of etcd raft / raft-rs: a pure state
//! machine (no I/O, no OS time, no global randomness) driven by `tick`, `step` and `propose`,
//! whose work comes out of `ready()`. The deterministic simulator that checks Raft's safety
//! properties under message loss, delay, reordering, duplication, partitions and crashes is the
//! test-only crate `rcluster-raft-sim` (raft-sim/), so it does not ship in this library.
//!
//! Decisions:
//! - Node ids are strings ("n1"). Time is ticks (the cluster's tick is 10 ms): election timeout
//!   randomized in 15..30 ticks, heartbeat every 5, both in `Config`.
//! - Randomness: `RaftNode::new(config, persisted, rng_seed)` seeds a private SplitMix64 used
//!   only for election timeouts; the caller picks the seed (from the OS in production, from the
//!   simulator's seed in tests).
//! - `ready()` hands out work once; `advance(&ready)` confirms it was applied (`snapshot` only
//!   compacts applied entries). Restart = `RaftNode::new` on the stored `Persisted`; the first
//!   `Ready` then restores the snapshot and re-delivers committed entries (the application's
//!   state is treated as volatile).
//! - Membership: single-server changes (thesis §4.1); a configuration is in force as soon as it
//!   is in the log; one uncommitted change at a time, and only after the leader committed an
//!   entry of its term; a leader that removed itself steps down once that commits. A node that
//!   is not a voter in its latest configuration campaigns only while that configuration is
//!   uncommitted, without counting its own vote (thesis §4.2.2); every node may vote.
//! - `check_quorum` (on by default) gives the leader lease of thesis §4.2.3/§6.2: a leader
//!   without a majority for an election timeout steps down, and a node that heard from a leader
//!   within the minimum election timeout ignores RequestVote, so removed or partitioned nodes
//!   cannot disrupt a working cluster.
//! - InstallSnapshot carries the whole snapshot in one message and is resent every heartbeat
//!   until acknowledged.
//!
//! Driving a node:
//! ```
//! use rcluster_raft::{Config, Persisted, RaftNode};
//! let mut node = RaftNode::new(Config::new("n1"), Persisted::bootstrap(["n1"]), 42).unwrap();
//! node.campaign(); // a single voter wins at once
//! let index = node.propose(b"hello".to_vec()).unwrap();
//! let ready = node.ready();
//! // 1. persist `ready.persist`, 2. send `ready.messages`, 3. apply `ready.committed`
//! assert_eq!(ready.committed.last().map(|e| e.index), Some(index));
//! node.advance(&ready);
//! ```

pub mod config;
mod log;
pub mod node;
pub mod rng;
pub mod storage;
pub mod types;

pub use config::{Config, ConfigError};
pub use node::{
    InitError, Progress, ProposeError, RaftNode, Ready, ReplicationState, Role, SnapshotError,
    StepError,
};
pub use rng::SplitMix64;
pub use storage::{PersistUpdate, Persisted};
pub use types::{
    Command, ConflictHint, DecodeError, Entry, HardState, Membership, MembershipChange, Message,
    MessageBody, NodeId, Snapshot,
};
