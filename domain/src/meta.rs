//! The cluster metadata that Raft replicates, as a pure state machine: the `Change`s carried
//! in the log, the `Meta` they build when applied in order, and the decisions the leader takes
//! before proposing one (is a quorum or a setting valid, what member list follows from adding
//! or removing a node). The node process's Raft driver (sidecar/src/node/raft.rs) only does
//! the I/O around it: it feeds committed entries in, and persists, pushes and logs the result.
//!
//! The JSON of `Change` and `Meta` is a stored format: Raft logs and snapshots persisted by
//! older nodes hold it, and a restarted node applies them again. Names of variants and fields
//! never change (the tests below pin the exact bytes).

use serde::{Deserialize, Serialize};

use crate::config::{
    check_nodes, check_range, ClusterConfig, ConfigError, NodeConfig, Quorum, CHUNK_SIZE_RANGE,
    VNODES_RANGE,
};
use crate::topology::Topology;

/// A metadata change, replicated through the log as JSON (`{"Quorum":{"n":3,"w":2,"r":2}}`,
/// `{"Members":[...]}`, `{"Vnodes":{"vnodes":64}}`, `{"ChunkSize":{"bytes":1048576}}`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Change {
    /// The cluster's default N/W/R.
    Quorum { n: u8, w: u8, r: u8 },
    /// The whole member list, in the order the members joined (so a node that joins learns the
    /// founding members too).
    Members(Vec<NodeConfig>),
    /// Virtual nodes per node on the ring.
    Vnodes { vnodes: u32 },
    /// Chunk size of new uploads.
    ChunkSize { bytes: u64 },
}

/// Why the leader refuses to propose a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error(
        "need 1 <= w, r <= n <= {nodes} (the node count), got n={} w={} r={}",
        quorum.n,
        quorum.w,
        quorum.r
    )]
    Quorum { quorum: Quorum, nodes: usize },
    /// A setting out of its range, or a member list that is not valid.
    #[error("{0}")]
    Invalid(ConfigError),
}

impl Change {
    /// Checks the change against the rules before it is proposed (`nodes`: how many members
    /// the cluster has). Entries in the log were checked by the leader that proposed them;
    /// `Meta::apply` does not check again.
    pub fn check(&self, nodes: usize) -> Result<(), ChangeError> {
        match self {
            Change::Quorum { n, w, r } => {
                let quorum = Quorum {
                    n: *n,
                    w: *w,
                    r: *r,
                };
                quorum
                    .check(nodes)
                    .map_err(|_| ChangeError::Quorum { quorum, nodes })
            }
            Change::Members(members) => check_nodes(members).map_err(ChangeError::Invalid),
            Change::Vnodes { vnodes } => check_range("vnodes", u64::from(*vnodes), VNODES_RANGE)
                .map_err(ChangeError::Invalid),
            Change::ChunkSize { bytes } => {
                check_range("chunk_size_bytes", *bytes, CHUNK_SIZE_RANGE)
                    .map_err(ChangeError::Invalid)
            }
        }
    }
}

/// The replicated metadata (the state machine).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub quorum: Quorum,
    /// The members in the order they joined (empty on a joining node until it catches up).
    #[serde(default)]
    pub members: Vec<NodeConfig>,
    /// Virtual nodes per node on the ring.
    pub vnodes: u32,
    /// Chunk size of new uploads (a file keeps the size it was cut with).
    pub chunk_size_bytes: u64,
    /// Index of the last applied entry.
    pub applied: u64,
    /// Index of the last entry that changed the metadata: the topology epoch is `1 +` it, so
    /// every node that applied the same changes pushes the same epoch, whatever entries without
    /// a change (a new leader's empty entry, a membership entry of Raft's own) followed and
    /// however the entries were batched. (0 in snapshots written before it existed: `restore`
    /// then takes the snapshot's index.)
    #[serde(default)]
    pub changed_at: u64,
}

impl Meta {
    /// The metadata before any entry is applied, from the cluster config: a founding member
    /// (one in the config's `nodes`) starts with those nodes as members; a node that joins
    /// starts with none and learns them from the leader.
    pub fn initial(config: &ClusterConfig, me: &str) -> Meta {
        Meta {
            quorum: config.quorum,
            members: if config.node(me).is_some() {
                config.nodes.clone()
            } else {
                Vec::new()
            },
            vnodes: config.vnodes,
            chunk_size_bytes: config.chunk_size_bytes,
            applied: 0,
            changed_at: 0,
        }
    }

    /// Applies one committed entry's payload (a `Change` as JSON). A payload that is not a
    /// change leaves the metadata as it was and says why: the caller logs it and goes on, so
    /// one bad entry never stops a node from applying the rest of its log. `applied` is the
    /// caller's to advance (every entry counts, bad ones and Raft's own included).
    pub fn apply(&mut self, data: &[u8]) -> Result<(), serde_json::Error> {
        match serde_json::from_slice::<Change>(data)? {
            Change::Quorum { n, w, r } => self.quorum = Quorum { n, w, r },
            // Validated by the leader before proposing.
            Change::Members(members) => self.members = members,
            Change::Vnodes { vnodes } => self.vnodes = vnodes,
            Change::ChunkSize { bytes } => self.chunk_size_bytes = bytes,
        }
        Ok(())
    }

    /// The state to store in a Raft snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Takes over a Raft snapshot's state, applied up to `index`. A snapshot whose data is not
    /// readable keeps the current metadata (only `applied` moves).
    pub fn restore(&mut self, index: u64, data: &[u8]) {
        if let Ok(meta) = serde_json::from_slice::<Meta>(data) {
            *self = meta;
            if self.changed_at == 0 {
                self.changed_at = index;
            }
        }
        self.applied = index;
    }

    /// The topology this metadata puts into the module: its members, quorum and virtual nodes
    /// with the config's other settings, as epoch `1 + changed_at` (epoch 1 is the config's own,
    /// before any entry). `None` while there are no members (a joining node that has not caught
    /// up has nothing to push).
    pub fn topology(&self, config: &ClusterConfig) -> Option<Topology> {
        if self.members.is_empty() {
            return None;
        }
        let mut topology = Topology::new(config, &self.members, 1 + self.changed_at);
        topology.quorum = self.quorum;
        topology.vnodes = self.vnodes;
        Some(topology)
    }

    /// Whether `id` is in the member list.
    pub fn is_member(&self, id: &str) -> bool {
        self.members.iter().any(|m| m.id == id)
    }
}

/// Why a membership request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    #[error("host '{}' is not an IP address or host name", crate::validate::show(.0.as_bytes()))]
    BadHost(String),
    /// The node would make the member list invalid (bad id, port 0, a port used twice).
    #[error("{0}")]
    Invalid(ConfigError),
    #[error(
        "'{}' is already a member at {}:{} (redis {}); remove it first",
        .0.id,
        .0.host,
        .0.http_port,
        .0.redis_port
    )]
    AlreadyMember(NodeConfig),
    #[error(
        "'{}' is not a member (members: {})",
        crate::validate::show(id.as_bytes()),
        members.join(", ")
    )]
    NotAMember { id: String, members: Vec<String> },
    #[error(
        "removing {id} would leave {left} nodes, fewer than the n={n} copies of every key; add a \
         node or lower n first (PUT /api/cluster/quorum)"
    )]
    TooFewNodes { id: String, left: usize, n: u8 },
}

/// Whether `host` can be an IP address or a host name (letters, digits, `.`, `:` and `-`).
fn is_valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:-".contains(&b))
}

/// The member list after `node` joins `members`: `Ok(None)` when it is already a member at the
/// same address (nothing to change: adding is idempotent), `Ok(Some(list))` with the node
/// appended, or why it may not join.
pub fn add_member(
    members: &[NodeConfig],
    node: &NodeConfig,
) -> Result<Option<Vec<NodeConfig>>, MemberError> {
    if !is_valid_host(&node.host) {
        return Err(MemberError::BadHost(node.host.clone()));
    }
    match members.iter().find(|m| m.id == node.id) {
        Some(m) if m != node => Err(MemberError::AlreadyMember(m.clone())),
        Some(_) => Ok(None),
        None => {
            let mut next = members.to_vec();
            next.push(node.clone());
            check_nodes(&next).map_err(MemberError::Invalid)?;
            Ok(Some(next))
        }
    }
}

/// The member list after `id` leaves `members`, with the cluster's replication factor `n`:
/// `Ok(Some(list))` without it, `Ok(None)` when it is no member but still a Raft voter (only
/// the voter is left to remove), or why it may not leave: no such member or voter, or fewer
/// than `n` nodes would remain.
pub fn remove_member(
    members: &[NodeConfig],
    id: &str,
    is_voter: bool,
    n: u8,
) -> Result<Option<Vec<NodeConfig>>, MemberError> {
    let is_member = members.iter().any(|m| m.id == id);
    if !is_member && !is_voter {
        return Err(MemberError::NotAMember {
            id: id.to_string(),
            members: members.iter().map(|m| m.id.clone()).collect(),
        });
    }
    if !is_member {
        return Ok(None);
    }
    let next: Vec<NodeConfig> = members.iter().filter(|m| m.id != id).cloned().collect();
    if next.len() < usize::from(n) {
        return Err(MemberError::TooFewNodes {
            id: id.to_string(),
            left: next.len(),
            n,
        });
    }
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, port: u16) -> NodeConfig {
        NodeConfig {
            id: id.to_string(),
            host: "127.0.0.1".to_string(),
            listen_host: None,
            redis_port: port,
            http_port: port + 1000,
            peer_port: port + 2000,
        }
    }

    fn three() -> Vec<NodeConfig> {
        vec![node("n1", 6379), node("n2", 6380), node("n3", 6381)]
    }

    fn meta() -> Meta {
        Meta {
            quorum: Quorum { n: 3, w: 2, r: 2 },
            members: three(),
            vnodes: 64,
            chunk_size_bytes: 1 << 20,
            applied: 9,
            changed_at: 7,
        }
    }

    fn json(change: &Change) -> Vec<u8> {
        serde_json::to_vec(change).unwrap()
    }

    #[test]
    fn each_change_kind_sets_its_field_and_nothing_else() {
        let before = meta();
        let cases = [
            (
                Change::Quorum { n: 3, w: 3, r: 1 },
                Meta {
                    quorum: Quorum { n: 3, w: 3, r: 1 },
                    ..meta()
                },
            ),
            (
                Change::Members(vec![node("n1", 6379), node("n4", 6390)]),
                Meta {
                    members: vec![node("n1", 6379), node("n4", 6390)],
                    ..meta()
                },
            ),
            (
                Change::Vnodes { vnodes: 1 },
                Meta {
                    vnodes: 1,
                    ..meta()
                },
            ),
            (
                Change::ChunkSize { bytes: 2 << 20 },
                Meta {
                    chunk_size_bytes: 2 << 20,
                    ..meta()
                },
            ),
        ];
        for (change, after) in cases {
            let mut m = before.clone();
            m.apply(&json(&change)).unwrap();
            assert_eq!(m, after, "{change:?}");
        }
    }

    #[test]
    fn a_bad_entry_changes_nothing_and_says_why() {
        let bad_entries = [
            "",
            "not json",
            r#"{"Quorum":{"n":3}}"#,
            r#"{"Replicas":{"n":3}}"#,
            r#"{"Vnodes":{"vnodes":-1}}"#,
            r#""Quorum""#,
            "[1,2,3]",
        ];
        for bad in bad_entries {
            let mut m = meta();
            assert!(m.apply(bad.as_bytes()).is_err(), "{bad}");
            assert_eq!(m, meta());
        }
    }

    #[test]
    fn entries_apply_in_log_order_the_last_one_wins() {
        let log = [
            Change::Vnodes { vnodes: 8 },
            Change::Quorum { n: 1, w: 1, r: 1 },
            Change::Members(vec![node("n1", 6379)]),
            Change::Vnodes { vnodes: 16 },
            Change::Members(vec![node("n1", 6379), node("n2", 6380)]),
        ];
        let mut m = meta();
        for change in &log {
            m.apply(&json(change)).unwrap();
        }
        assert_eq!(m.vnodes, 16);
        assert_eq!(m.quorum, Quorum { n: 1, w: 1, r: 1 });
        assert_eq!(m.members, vec![node("n1", 6379), node("n2", 6380)]);
        // The same changes in another order end elsewhere: order matters.
        let mut reversed = meta();
        for change in log.iter().rev() {
            reversed.apply(&json(change)).unwrap();
        }
        assert_eq!(reversed.vnodes, 8);
        assert_eq!(reversed.members, vec![node("n1", 6379)]);
    }

    /// The exact bytes that Raft logs written by earlier versions hold: a node restarted on an
    /// old log must still read them.
    #[test]
    fn the_wire_format_of_changes_is_unchanged() {
        let n1 =
            r#"{"id":"n1","host":"127.0.0.1","redis_port":6379,"http_port":7379,"peer_port":8379}"#;
        let cases = [
            (
                Change::Quorum { n: 3, w: 2, r: 2 },
                r#"{"Quorum":{"n":3,"w":2,"r":2}}"#.to_string(),
            ),
            (
                Change::Members(vec![node("n1", 6379)]),
                format!(r#"{{"Members":[{n1}]}}"#),
            ),
            (
                Change::Vnodes { vnodes: 64 },
                r#"{"Vnodes":{"vnodes":64}}"#.to_string(),
            ),
            (
                Change::ChunkSize { bytes: 1048576 },
                r#"{"ChunkSize":{"bytes":1048576}}"#.to_string(),
            ),
        ];
        for (change, wire) in cases {
            assert_eq!(String::from_utf8(json(&change)).unwrap(), wire);
            assert_eq!(serde_json::from_str::<Change>(&wire).unwrap(), change);
        }
        // A member stored without a host (the config's default) still reads.
        let mut m = meta();
        m.apply(br#"{"Members":[{"id":"n9","redis_port":1,"http_port":2,"peer_port":3}]}"#)
            .unwrap();
        assert_eq!(m.members[0].host, "127.0.0.1");
    }

    /// The exact bytes of a snapshot written by earlier versions still restore.
    #[test]
    fn the_snapshot_format_is_unchanged_and_restores() {
        let wire = concat!(
            r#"{"quorum":{"n":3,"w":2,"r":2},"members":["#,
            r#"{"id":"n1","host":"127.0.0.1","redis_port":6379,"http_port":7379,"peer_port":8379},"#,
            r#"{"id":"n2","host":"127.0.0.1","redis_port":6380,"http_port":7380,"peer_port":8380},"#,
            r#"{"id":"n3","host":"127.0.0.1","redis_port":6381,"http_port":7381,"peer_port":8381}],"#,
            r#""vnodes":64,"chunk_size_bytes":1048576,"applied":7}"#
        );
        // Today's format adds `changed_at` at the end.
        let today = wire.replace(r#""applied":7}"#, r#""applied":9,"changed_at":7}"#);
        assert_eq!(String::from_utf8(meta().snapshot()).unwrap(), today);
        let mut m = Meta {
            members: Vec::new(),
            ..meta()
        };
        m.restore(250, wire.as_bytes());
        // A snapshot written before `changed_at` existed: the epoch is the snapshot's index.
        assert_eq!(
            m,
            Meta {
                applied: 250,
                changed_at: 250,
                ..meta()
            }
        );
        // Without members (a snapshot taken on a node that had not caught up yet).
        m.restore(
            3,
            br#"{"quorum":{"n":1,"w":1,"r":1},"vnodes":1,"chunk_size_bytes":1048576,"applied":2}"#,
        );
        assert!(m.members.is_empty());
        assert_eq!((m.applied, m.vnodes), (3, 1));
        // Unreadable: the metadata stays, `applied` moves.
        let mut m = meta();
        m.restore(300, b"garbage");
        assert_eq!(
            m,
            Meta {
                applied: 300,
                ..meta()
            }
        );
    }

    #[test]
    fn a_founding_member_starts_with_the_config_nodes_a_joiner_with_none() {
        let config = crate::config::parse(
            "cluster_name: t\nvnodes: 8\nchunk_size_bytes: 2097152\nquorum: {n: 1, w: 1, r: 1}\n\
             nodes:\n  - {id: n1, redis_port: 6379, http_port: 7379, peer_port: 8379}\n",
        )
        .unwrap();
        let founder = Meta::initial(&config, "n1");
        assert_eq!(founder.members, config.nodes);
        assert_eq!(
            (founder.vnodes, founder.chunk_size_bytes, founder.applied),
            (8, 2 << 20, 0)
        );
        assert_eq!(founder.quorum, config.quorum);
        assert!(founder.is_member("n1") && !founder.is_member("n2"));
        let joiner = Meta::initial(&config, "n2");
        assert!(joiner.members.is_empty());
        assert!(!joiner.is_member("n2"));
    }

    #[test]
    fn the_topology_carries_the_replicated_settings_as_epoch_changed_at_plus_one() {
        let config = crate::config::parse(
            "cluster_name: t\nvnodes: 8\nnodes:\n  \
             - {id: n1, redis_port: 6379, http_port: 7379, peer_port: 8379}\n  \
             - {id: n2, redis_port: 6380, http_port: 7380, peer_port: 8380}\n  \
             - {id: n3, redis_port: 6381, http_port: 7381, peer_port: 8381}\n",
        )
        .unwrap();
        let m = Meta {
            quorum: Quorum { n: 2, w: 1, r: 1 },
            members: vec![node("n1", 6379), node("n4", 6390)],
            ..meta()
        };
        let t = m.topology(&config).unwrap();
        assert_eq!(t.epoch, 8);
        assert_eq!(t.quorum, Quorum { n: 2, w: 1, r: 1 });
        assert_eq!(t.vnodes, 64);
        let ids: Vec<&str> = t.members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["n1", "n4"]);
        assert_eq!(t.members[1].redis_port, 6390);
        assert_eq!(t.request_timeout_ms, config.intervals.request_timeout_ms);
        assert!(t.validate().is_ok());
        let joining = Meta::initial(&config, "n9");
        assert!(joining.topology(&config).is_none());
    }

    #[test]
    fn quorum_changes_are_checked_against_the_node_count() {
        for (n, w, r) in [(3, 2, 2), (3, 3, 1), (1, 1, 1), (2, 1, 2)] {
            assert_eq!(Change::Quorum { n, w, r }.check(3), Ok(()), "{n} {w} {r}");
        }
        for (n, w, r) in [
            (0, 1, 1),
            (4, 2, 2),
            (3, 4, 1),
            (3, 0, 2),
            (3, 2, 0),
            (2, 1, 3),
        ] {
            let e = Change::Quorum { n, w, r }.check(3).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("need 1 <= w, r <= n <= 3 (the node count), got n={n} w={w} r={r}")
            );
        }
    }

    #[test]
    fn settings_and_member_lists_are_checked() {
        assert_eq!(Change::Vnodes { vnodes: 1 }.check(3), Ok(()));
        let e = Change::Vnodes { vnodes: 0 }.check(3).unwrap_err();
        assert_eq!(e.to_string(), "vnodes 0 is out of range 1..=4096");
        assert_eq!(Change::ChunkSize { bytes: 1 << 20 }.check(3), Ok(()));
        let e = Change::ChunkSize { bytes: 100 }.check(3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "chunk_size_bytes 100 is out of range 1048576..=5242880"
        );
        assert_eq!(Change::Members(three()).check(3), Ok(()));
        let e = Change::Members(vec![node("n1", 1), node("n1", 2)])
            .check(2)
            .unwrap_err();
        assert_eq!(e.to_string(), "duplicate node id \"n1\"");
    }

    #[test]
    fn adding_a_member_appends_it_once() {
        let next = add_member(&three(), &node("n4", 6382)).unwrap().unwrap();
        assert_eq!(next.len(), 4);
        assert_eq!(next[..3], three()[..]);
        assert_eq!(next[3], node("n4", 6382));
        // Again with the same address: nothing to change.
        assert_eq!(add_member(&next, &node("n4", 6382)), Ok(None));
    }

    #[test]
    fn adding_a_member_is_refused_with_the_reason() {
        let mut bad_host = node("n4", 6382);
        bad_host.host = "no spaces".into();
        let e = add_member(&three(), &bad_host).unwrap_err();
        assert_eq!(e, MemberError::BadHost("no spaces".into()));
        assert_eq!(
            e.to_string(),
            "host 'no spaces' is not an IP address or host name"
        );
        for host in ["", &"a".repeat(254)] {
            let mut n = node("n4", 6382);
            n.host = host.to_string();
            assert!(matches!(
                add_member(&three(), &n),
                Err(MemberError::BadHost(_))
            ));
        }
        // The same id at another address.
        let e = add_member(&three(), &node("n2", 6390)).unwrap_err();
        assert_eq!(e, MemberError::AlreadyMember(node("n2", 6380)));
        assert_eq!(
            e.to_string(),
            "'n2' is already a member at 127.0.0.1:7380 (redis 6380); remove it first"
        );
        // A port another member uses, a bad id, port 0.
        let mut port_zero = node("n4", 6382);
        port_zero.peer_port = 0;
        for n in [node("n4", 6379), node("N 4!", 6382), port_zero] {
            assert!(
                matches!(add_member(&three(), &n), Err(MemberError::Invalid(_))),
                "{n:?}"
            );
        }
    }

    #[test]
    fn removing_a_member_keeps_the_others_in_order() {
        let mut four = three();
        four.push(node("n4", 6382));
        let next = remove_member(&four, "n2", true, 3).unwrap().unwrap();
        assert_eq!(
            next,
            vec![node("n1", 6379), node("n3", 6381), node("n4", 6382)]
        );
        // Already gone from the list, still a voter: only the voter step is left.
        assert_eq!(remove_member(&next, "n2", true, 3), Ok(None));
    }

    #[test]
    fn removing_a_member_is_refused_with_the_reason() {
        let e = remove_member(&three(), "n7", false, 3).unwrap_err();
        assert_eq!(e.to_string(), "'n7' is not a member (members: n1, n2, n3)");
        let e = remove_member(&three(), "n2", true, 3).unwrap_err();
        assert_eq!(
            e,
            MemberError::TooFewNodes {
                id: "n2".into(),
                left: 2,
                n: 3
            }
        );
        assert_eq!(
            e.to_string(),
            "removing n2 would leave 2 nodes, fewer than the n=3 copies of every key; add a node \
             or lower n first (PUT /api/cluster/quorum)"
        );
        assert!(remove_member(&three(), "n2", true, 2).is_ok());
    }
}
