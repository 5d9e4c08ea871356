//! Per-node settings: identity, election and heartbeat timing in ticks, batching and the
//! check-quorum lease.

use crate::types::NodeId;

/// Settings of one node. Timing is in ticks: the caller decides how long a tick is (the cluster
/// uses 10 ms, so the defaults are a 150-300 ms election timeout and a 50 ms heartbeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub id: NodeId,
    /// Lower bound (inclusive) of the randomized election timeout.
    pub election_timeout_min: u64,
    /// Upper bound (exclusive) of the randomized election timeout.
    pub election_timeout_max: u64,
    /// A leader sends AppendEntries to every follower this often, entries or not.
    pub heartbeat_interval: u64,
    /// Most entries in one AppendEntries.
    pub max_entries_per_message: usize,
    /// Leader lease (thesis §4.2.3 and §6.2): a leader that has not heard from a majority within
    /// `election_timeout_min` ticks steps down, and a node that heard from a leader within that
    /// time ignores RequestVote, so removed or partitioned nodes cannot disrupt a working cluster.
    pub check_quorum: bool,
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("node id must not be empty")]
    EmptyId,
    #[error("heartbeat interval must be at least 1 tick")]
    ZeroHeartbeat,
    #[error(
        "election timeout range {min}..{max} must be non-empty and above the heartbeat interval {heartbeat}"
    )]
    ElectionTimeout { min: u64, max: u64, heartbeat: u64 },
    #[error("max entries per message must be at least 1")]
    ZeroBatch,
}

impl Config {
    /// Defaults: election timeout 15..30 ticks, heartbeat every 5 ticks, 64 entries per message,
    /// check quorum on.
    pub fn new(id: impl Into<NodeId>) -> Self {
        Config {
            id: id.into(),
            election_timeout_min: 15,
            election_timeout_max: 30,
            heartbeat_interval: 5,
            max_entries_per_message: 64,
            check_quorum: true,
        }
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.is_empty() {
            return Err(ConfigError::EmptyId);
        }
        if self.heartbeat_interval == 0 {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.election_timeout_min >= self.election_timeout_max
            || self.election_timeout_min <= self.heartbeat_interval
        {
            return Err(ConfigError::ElectionTimeout {
                min: self.election_timeout_min,
                max: self.election_timeout_max,
                heartbeat: self.heartbeat_interval,
            });
        }
        if self.max_entries_per_message == 0 {
            return Err(ConfigError::ZeroBatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::new("n1").validate(), Ok(()));
    }

    #[test]
    fn bad_timing_is_refused() {
        let mut c = Config::new("n1");
        c.election_timeout_max = c.election_timeout_min;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ElectionTimeout { .. })
        ));
        let mut c = Config::new("n1");
        c.heartbeat_interval = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroHeartbeat));
        assert_eq!(Config::new("").validate(), Err(ConfigError::EmptyId));
    }
}
