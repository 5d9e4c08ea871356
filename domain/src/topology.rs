//! The cluster topology a module coordinates with: members and their Redis addresses, the ring
//! settings, quorum defaults and timers. The node process derives it from the config (later from
//! Raft) and pushes it to its module as JSON; the module validates it before using it.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::codes::{Code, CodedError};
use crate::config::{ClusterConfig, NodeConfig, Quorum, MAX_HINT_BYTES_PER_NODE_RANGE};
use crate::rc;
use crate::ring::Ring;
use crate::validate;

/// The Redis user the modules use to reach each other (never the default user).
pub const INTERNAL_USER: &str = "rcluster-internal";

/// The `user` directive (as `redis-server --user ...` arguments) that creates the internal user
/// with `password` and only the commands of [`rc::internal_commands`] (the plain ones it needs and
/// every internal `RC.*` command of the contract's table).
pub fn internal_user_directive(password: &str) -> Vec<String> {
    let mut out = vec![
        INTERNAL_USER.to_string(),
        "reset".into(),
        "on".into(),
        format!(">{password}"),
        "~*".into(),
        "-@all".into(),
    ];
    out.extend(rc::internal_commands().iter().map(|c| format!("+{c}")));
    out
}

/// One member: its id and where its Redis listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: String,
    pub host: String,
    pub redis_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Increases with every change, so a stale push can be recognised.
    pub epoch: u64,
    pub members: Vec<Member>,
    pub vnodes: u32,
    pub quorum: Quorum,
    pub request_timeout_ms: u64,
    pub hint_replay_ms: u64,
    pub tombstone_grace_ms: u64,
    /// Hint bytes a node keeps for one other node (`limits.max_hint_bytes_per_node`). A topology
    /// stored before this field existed gets the default.
    #[serde(default = "default_max_hint_bytes_per_node")]
    pub max_hint_bytes_per_node: u64,
}

fn default_max_hint_bytes_per_node() -> u64 {
    crate::config::DEFAULT_MAX_HINT_BYTES_PER_NODE
}

impl Topology {
    pub fn from_config(config: &ClusterConfig, epoch: u64) -> Topology {
        Topology::new(config, &config.nodes, epoch)
    }

    /// The topology of `members` with the config's other settings.
    pub fn new(config: &ClusterConfig, members: &[NodeConfig], epoch: u64) -> Topology {
        Topology {
            epoch,
            members: members
                .iter()
                .map(|n| Member {
                    id: n.id.clone(),
                    host: n.host.clone(),
                    redis_port: n.redis_port,
                })
                .collect(),
            vnodes: config.vnodes,
            quorum: config.quorum,
            request_timeout_ms: config.intervals.request_timeout_ms,
            hint_replay_ms: config.intervals.hint_replay_ms,
            tombstone_grace_ms: config.intervals.tombstone_grace_ms,
            max_hint_bytes_per_node: config.limits.max_hint_bytes_per_node,
        }
    }

    /// Parses and validates a pushed topology.
    pub fn parse(json: &[u8]) -> Result<Topology, CodedError> {
        let t: Topology = serde_json::from_slice(json).map_err(|e| {
            CodedError::new(
                Code::BadArg,
                format!("topology is not valid JSON of the expected shape: {e}"),
            )
        })?;
        t.validate()?;
        Ok(t)
    }

    pub fn to_json(&self) -> String {
        // A plain struct of strings and numbers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), CodedError> {
        let bad = |m: String| CodedError::new(Code::BadArg, format!("topology: {m}"));
        if self.members.is_empty() {
            return Err(bad("no members".into()));
        }
        let mut ids = HashSet::new();
        for m in &self.members {
            validate::node_id(m.id.as_bytes()).map_err(|e| bad(e.message))?;
            if !ids.insert(m.id.as_str()) {
                return Err(bad(format!("duplicate member '{}'", m.id)));
            }
            if m.host.is_empty() || m.redis_port == 0 {
                return Err(bad(format!("member '{}' has no address", m.id)));
            }
        }
        let Quorum { n, w, r } = self.quorum;
        if n == 0 || usize::from(n) > self.members.len() {
            return Err(bad(format!("n={n} must be 1..={}", self.members.len())));
        }
        if w == 0 || w > n || r == 0 || r > n {
            return Err(bad(format!("w={w} and r={r} must be 1..={n}")));
        }
        let ranges = [
            ("vnodes", u64::from(self.vnodes), 1, 4096),
            ("request_timeout_ms", self.request_timeout_ms, 1, 60_000),
            ("hint_replay_ms", self.hint_replay_ms, 10, 60_000),
            (
                "tombstone_grace_ms",
                self.tombstone_grace_ms,
                1,
                30 * 86_400_000,
            ),
            (
                "max_hint_bytes_per_node",
                self.max_hint_bytes_per_node,
                *MAX_HINT_BYTES_PER_NODE_RANGE.start(),
                *MAX_HINT_BYTES_PER_NODE_RANGE.end(),
            ),
        ];
        for (name, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(bad(format!("{name} {v} is out of range {lo}..={hi}")));
            }
        }
        Ok(())
    }

    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The hash ring of the members.
    pub fn ring(&self) -> Result<Ring, CodedError> {
        let ids: Vec<String> = self.members.iter().map(|m| m.id.clone()).collect();
        Ring::new(&ids, self.vnodes)
            .map_err(|e| CodedError::new(Code::BadArg, format!("topology: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Topology {
        Topology {
            epoch: 1,
            members: ["n1", "n2", "n3"]
                .iter()
                .enumerate()
                .map(|(i, id)| Member {
                    id: id.to_string(),
                    host: "127.0.0.1".into(),
                    redis_port: 6379 + i as u16,
                })
                .collect(),
            vnodes: 16,
            quorum: Quorum { n: 3, w: 2, r: 2 },
            request_timeout_ms: 1000,
            hint_replay_ms: 500,
            tombstone_grace_ms: 60_000,
            max_hint_bytes_per_node: 1 << 20,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let t = sample();
        assert_eq!(Topology::parse(t.to_json().as_bytes()).unwrap(), t);
        assert_eq!(t.ring().unwrap().nodes().len(), 3);
    }

    #[test]
    fn rejects_bad_topologies() {
        let mut t = sample();
        t.quorum.w = 4;
        assert!(t.validate().unwrap_err().message.contains("w=4"));
        let mut t = sample();
        t.members[1].id = "n1".into();
        assert!(t
            .validate()
            .unwrap_err()
            .message
            .contains("duplicate member"));
        let mut t = sample();
        t.request_timeout_ms = 0;
        assert!(t
            .validate()
            .unwrap_err()
            .message
            .contains("request_timeout_ms"));
        let mut t = sample();
        t.max_hint_bytes_per_node = 1023;
        assert!(t
            .validate()
            .unwrap_err()
            .message
            .contains("max_hint_bytes_per_node 1023 is out of range"));
        assert_eq!(Topology::parse(b"{").unwrap_err().code, Code::BadArg);
        assert!(Topology::parse(br#"{"epoch":1}"#).is_err());
    }

    #[test]
    fn a_topology_stored_without_the_hint_cap_gets_the_default() {
        let t = sample();
        let json = t
            .to_json()
            .replace(",\"max_hint_bytes_per_node\":1048576", "");
        assert!(!json.contains("max_hint"), "{json}");
        let parsed = Topology::parse(json.as_bytes()).unwrap();
        assert_eq!(
            parsed.max_hint_bytes_per_node,
            crate::config::DEFAULT_MAX_HINT_BYTES_PER_NODE
        );
    }

    #[test]
    fn the_hint_cap_comes_from_the_config_limits() {
        let mut config = crate::config::parse(
            "cluster_name: t\nquorum: { n: 1, w: 1, r: 1 }\nnodes:\n  - { id: n1, redis_port: 1, http_port: 2, peer_port: 3 }\n",
        )
        .unwrap();
        config.limits.max_hint_bytes_per_node = 4096;
        assert_eq!(
            Topology::from_config(&config, 1).max_hint_bytes_per_node,
            4096
        );
    }
}
