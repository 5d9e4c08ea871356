//! The commands the node process drives its module with:
//!
//! `RC.CLUSTER.SET json` validates and installs a topology (an older epoch is refused);
//! `RC.CLUSTER.GET` returns the installed one as JSON, or nil;
//! `RC.CLUSTER.NODESTATE node alive|suspect|down ttl-ms` records the failure detector's verdict;
//! `RC.CLUSTER.SETTLED epoch` ends the transition to `epoch` once every member installed it
//! (1 when it now ends, else 0);
//! `RC.META SET|DEL|RPUSH|HSET key ...` writes the node process's own metadata (`cluster:*`,
//! `node:*`: Raft state, status hashes) and replies as that command does.

use std::ops::Deref;

use crate::codes::{Code, CodedError};
pub use crate::phi::Liveness;
use crate::topology::Topology;
use crate::validate;

use super::{ascii, Command, Decimal, Request};

/// `RC.CLUSTER.SET topology-json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSet {
    pub topology: Topology,
}

impl ClusterSet {
    pub fn parse<A: Deref<Target = [u8]>>(args: &[A]) -> Result<ClusterSet, CodedError> {
        Command::ClusterSet.check_arity(args.len())?;
        Ok(ClusterSet {
            topology: Topology::parse(&args[1])?,
        })
    }
}

impl Request for ClusterSet {
    fn command(&self) -> Command {
        Command::ClusterSet
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.topology.to_json().as_bytes());
    }
}

/// `RC.CLUSTER.GET`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterGet;

impl ClusterGet {
    pub fn parse<A: Deref<Target = [u8]>>(args: &[A]) -> Result<ClusterGet, CodedError> {
        Command::ClusterGet.check_arity(args.len())?;
        Ok(ClusterGet)
    }
}

impl Request for ClusterGet {
    fn command(&self) -> Command {
        Command::ClusterGet
    }
    fn each_arg(&self, _f: &mut dyn FnMut(&[u8])) {}
}

/// Longest a pushed verdict stays valid.
pub const MAX_NODE_STATE_TTL_MS: u64 = 3_600_000;

/// `RC.CLUSTER.NODESTATE node alive|suspect|down ttl-ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeState<'a> {
    pub node: &'a str,
    pub state: Liveness,
    pub ttl_ms: u64,
}

impl<'a> NodeState<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(args: &'a [A]) -> Result<NodeState<'a>, CodedError> {
        Command::ClusterNodeState.check_arity(args.len())?;
        validate::node_id(&args[1])?;
        let state = Liveness::parse(&args[2]).ok_or_else(|| {
            CodedError::new(
                Code::BadArg,
                format!(
                    "state must be alive, suspect or down, got '{}'",
                    validate::show(&args[2])
                ),
            )
        })?;
        let ttl_ms = validate::u64_arg("ttl-ms", &args[3])?;
        if ttl_ms == 0 || ttl_ms > MAX_NODE_STATE_TTL_MS {
            return Err(CodedError::new(
                Code::BadArg,
                format!("ttl-ms must be 1..={MAX_NODE_STATE_TTL_MS}, got {ttl_ms}"),
            ));
        }
        Ok(NodeState {
            node: ascii(&args[1]),
            state,
            ttl_ms,
        })
    }
}

impl Request for NodeState<'_> {
    fn command(&self) -> Command {
        Command::ClusterNodeState
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.node.as_bytes());
        f(self.state.as_str().as_bytes());
        f(Decimal::new(self.ttl_ms).as_bytes());
    }
}

/// `RC.CLUSTER.SETTLED epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    pub epoch: u64,
}

impl Settled {
    pub fn parse<A: Deref<Target = [u8]>>(args: &[A]) -> Result<Settled, CodedError> {
        Command::ClusterSettled.check_arity(args.len())?;
        Ok(Settled {
            epoch: validate::u64_arg("epoch", &args[1])?,
        })
    }
}

impl Request for Settled {
    fn command(&self) -> Command {
        Command::ClusterSettled
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(Decimal::new(self.epoch).as_bytes());
    }
}

/// The writes `RC.META` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaOp {
    Set,
    Del,
    Rpush,
    Hset,
}

impl MetaOp {
    pub const ALL: [MetaOp; 4] = [MetaOp::Set, MetaOp::Del, MetaOp::Rpush, MetaOp::Hset];

    /// The Redis command it runs.
    pub fn as_str(self) -> &'static str {
        match self {
            MetaOp::Set => "SET",
            MetaOp::Del => "DEL",
            MetaOp::Rpush => "RPUSH",
            MetaOp::Hset => "HSET",
        }
    }
}

/// The key prefixes `RC.META` may touch.
pub const META_PREFIXES: [&str; 2] = ["cluster:", "node:"];

/// `RC.META SET|DEL|RPUSH|HSET key [args...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta<'a> {
    pub op: MetaOp,
    pub key: &'a [u8],
    /// The arguments after the key.
    pub args: Vec<&'a [u8]>,
}

impl<'a> Meta<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(args: &'a [A]) -> Result<Meta<'a>, CodedError> {
        Command::Meta.check_arity(args.len())?;
        let op = MetaOp::ALL
            .into_iter()
            .find(|op| args[1].eq_ignore_ascii_case(op.as_str().as_bytes()))
            .ok_or_else(|| {
                let names: Vec<&str> = MetaOp::ALL.iter().map(|op| op.as_str()).collect();
                Command::Meta.usage_error(&format!(
                    "{} runs {}, not '{}'",
                    Command::Meta.name(),
                    names.join(", "),
                    validate::show(&args[1])
                ))
            })?;
        let key: &[u8] = &args[2];
        if !META_PREFIXES.iter().any(|p| key.starts_with(p.as_bytes())) {
            return Err(CodedError::new(
                Code::BadArg,
                format!(
                    "{} writes only {} keys, not '{}'",
                    Command::Meta.name(),
                    META_PREFIXES.map(|p| format!("{p}*")).join(" and "),
                    validate::show(key)
                ),
            ));
        }
        Ok(Meta {
            op,
            key,
            args: args[3..].iter().map(|a| &**a).collect(),
        })
    }
}

impl Request for Meta<'_> {
    fn command(&self) -> Command {
        Command::Meta
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.op.as_str().as_bytes());
        f(self.key);
        self.args.iter().for_each(|a| f(a));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Quorum;
    use crate::rc::testing::{args, error};
    use crate::topology::Member;

    fn topology() -> Topology {
        Topology {
            epoch: 3,
            members: vec![Member {
                id: "n1".into(),
                host: "127.0.0.1".into(),
                redis_port: 7001,
            }],
            vnodes: 8,
            quorum: Quorum { n: 1, w: 1, r: 1 },
            request_timeout_ms: 500,
            hint_replay_ms: 500,
            tombstone_grace_ms: 1000,
            max_hint_bytes_per_node: 1 << 20,
        }
    }

    #[test]
    fn round_trips() {
        let set = ClusterSet {
            topology: topology(),
        };
        assert_eq!(ClusterSet::parse(&set.encode()).unwrap(), set);
        assert_eq!(ClusterGet::parse(&ClusterGet.encode()).unwrap(), ClusterGet);
        for state in [Liveness::Alive, Liveness::Suspect, Liveness::Down] {
            let ns = NodeState {
                node: "n2",
                state,
                ttl_ms: 1500,
            };
            assert_eq!(NodeState::parse(&ns.encode()).unwrap(), ns);
        }
        let s = Settled { epoch: 9 };
        assert_eq!(Settled::parse(&s.encode()).unwrap(), s);
        let m = Meta {
            op: MetaOp::Hset,
            key: b"node:n1:status",
            args: vec![b"state", b"alive"],
        };
        let wire = m.encode();
        assert_eq!(
            wire,
            args(&[b"RC.META", b"HSET", b"node:n1:status", b"state", b"alive"])
        );
        assert_eq!(Meta::parse(&wire).unwrap(), m);
        assert_eq!(
            Meta::parse(&args(&[b"RC.META", b"del", b"cluster:x"]))
                .unwrap()
                .op,
            MetaOp::Del
        );
    }

    #[test]
    fn errors() {
        assert!(error(ClusterSet::parse(&args(&[b"RC.CLUSTER.SET", b"{"])))
            .starts_with("BADARG topology is not valid JSON"));
        assert_eq!(
            error(ClusterGet::parse(&args(&[b"RC.CLUSTER.GET", b"x"]))),
            "ERR wrong number of arguments for 'RC.CLUSTER.GET' command; usage: RC.CLUSTER.GET"
        );
        assert_eq!(
            error(NodeState::parse(&args(&[
                b"RC.CLUSTER.NODESTATE",
                b"n1",
                b"up",
                b"1"
            ]))),
            "BADARG state must be alive, suspect or down, got 'up'"
        );
        assert_eq!(
            error(NodeState::parse(&args(&[
                b"RC.CLUSTER.NODESTATE",
                b"n1",
                b"down",
                b"0"
            ]))),
            "BADARG ttl-ms must be 1..=3600000, got 0"
        );
        assert!(error(Settled::parse(&args(&[b"RC.CLUSTER.SETTLED", b"x"])))
            .starts_with("BADARG epoch must be"));
        assert_eq!(
            error(Meta::parse(&args(&[b"RC.META", b"GET", b"cluster:x"]))),
            "BADARG RC.META runs SET, DEL, RPUSH, HSET, not 'GET'; usage: RC.META SET|DEL|RPUSH|HSET <cluster:*|node:* key> [args...]"
        );
        assert_eq!(
            error(Meta::parse(&args(&[b"RC.META", b"SET", b"kv:x", b"1"]))),
            "BADARG RC.META writes only cluster:* and node:* keys, not 'kv:x'"
        );
    }
}
