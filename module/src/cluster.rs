//! The cluster view this module coordinates with: the topology pushed by the node process
//! (`RC.CLUSTER.SET <json>`), its hash ring, and its persistence in `cluster:config` and
//! `cluster:quorum` so that a restarted Redis serves before the node process pushes again.
//!
//! The handlers of the commands the node process drives its module with (as
//! `rcluster_domain::rc::cluster` defines them): `RC.CLUSTER.SET` installs a topology (an older
//! epoch is refused), `RC.CLUSTER.GET` returns it, `RC.CLUSTER.NODESTATE` records the failure
//! detector's verdict (a `down` node is not called until the verdict expires or changes),
//! `RC.CLUSTER.SETTLED epoch` ends the transition after a change of placement once every member
//! installed `epoch` (after one request timeout, for requests still in flight under the old
//! placement), and `RC.META` writes the node process's own metadata.
//!
//! `RC.CLUSTER.SET` and `RC.META` are not `deny-oom`: a node whose Redis is full of data must
//! still take topologies and keep its Raft state and status, or the cluster could not grow to
//! make room (the data commands stay `deny-oom`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::rc::cluster::{ClusterGet, ClusterSet, Meta, NodeState, Settled};
use rcluster_domain::ring::Ring;
use rcluster_domain::topology::Topology;
use redis_module::{Context, RedisString, RedisValue};

use crate::guard::Outcome;
use crate::store;

pub const CONFIG_KEY: &str = "cluster:config";
pub const QUORUM_KEY: &str = "cluster:quorum";

/// How long after a change of placement (members, virtual nodes or N) the previous ring still
/// counts for quorums when nobody says every member installed the change (`RC.CLUSTER.SETTLED`,
/// which the node processes send once they all report the new epoch in their heartbeats): a
/// member that never reports (down for good) must not keep the cluster on two rings forever.
const TRANSITION_MAX: Duration = Duration::from_secs(300);

/// An installed topology with its ring.
pub struct View {
    pub topology: Topology,
    pub ring: Ring,
    /// The view before the last change of placement, and when that change was installed here.
    pub previous: Option<Arc<Previous>>,
}

pub struct Previous {
    pub topology: Topology,
    pub ring: Ring,
    pub since: Instant,
    /// When the transition ends, in ms after `since` (`u64::MAX`: not settled yet).
    ends_after_ms: AtomicU64,
}

impl Previous {
    fn new(topology: Topology, ring: Ring) -> Previous {
        Previous {
            topology,
            ring,
            since: Instant::now(),
            ends_after_ms: AtomicU64::new(u64::MAX),
        }
    }

    fn open(&self) -> bool {
        let elapsed = self.since.elapsed();
        match self.ends_after_ms.load(Ordering::Relaxed) {
            u64::MAX => elapsed < TRANSITION_MAX,
            ms => elapsed < Duration::from_millis(ms),
        }
    }

    /// Ends the transition `grace` from now (or earlier, if it was already to end sooner).
    fn settle(&self, grace: Duration) {
        let at = self.since.elapsed().saturating_add(grace).as_millis();
        let at = u64::try_from(at).unwrap_or(u64::MAX - 1);
        self.ends_after_ms.fetch_min(at, Ordering::Relaxed);
    }
}

impl View {
    /// The previous placement while the cluster may still be moving off it: the other nodes
    /// install a new topology a little earlier or later than this one. Meanwhile requests use
    /// both preference lists (see `commands::quorum::placement`), until every member installed
    /// the change (`RC.CLUSTER.SETTLED`) or `TRANSITION_MAX` passed.
    pub fn transition(&self) -> Option<&Previous> {
        self.previous.as_deref().filter(|p| p.open())
    }
}

/// Whether data placed under `old` may belong elsewhere under `new`.
pub fn placement_changed(old: &View, new_topology: &Topology, new_ring: &Ring) -> bool {
    old.ring.nodes() != new_ring.nodes()
        || old.topology.quorum.n != new_topology.quorum.n
        || old.topology.vnodes != new_topology.vnodes
}

static VIEW: RwLock<Option<Arc<View>>> = RwLock::new(None);

/// The installed view, if any.
pub fn current() -> Option<Arc<View>> {
    VIEW.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn install(topology: Topology) -> Result<(), CodedError> {
    let ring = topology.ring()?;
    let previous = current().and_then(|old| {
        if placement_changed(&old, &topology, &ring) {
            Some(Arc::new(Previous::new(
                old.topology.clone(),
                old.ring.clone(),
            )))
        } else {
            // Another setting changed: a transition under way goes on.
            old.previous.clone()
        }
    });
    let new = Arc::new(View {
        topology,
        ring,
        previous,
    });
    let old = VIEW
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .replace(new.clone());
    // Data placed under the old ring moves to its new owners in the background.
    crate::coord::rebalance::topology_changed(old, &new);
    Ok(())
}

/// The installed view, or `NOTREADY` naming what is missing.
pub fn ready() -> Result<Arc<View>, CodedError> {
    current().ok_or_else(|| {
        CodedError::new(
            Code::NotReady,
            format!(
                "no cluster topology loaded yet; the node process pushes it with {}",
                rcluster_domain::rc::Command::ClusterSet.name()
            ),
        )
    })
}

pub fn set(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let topology = ClusterSet::parse(&args)?.topology;
    if let Some(old) = current() {
        if topology.epoch < old.topology.epoch {
            return Err(CodedError::new(
                Code::BadArg,
                format!(
                    "topology epoch {} is older than the installed {}; not applied",
                    topology.epoch, old.topology.epoch
                ),
            ));
        }
    }
    let json = topology.to_json();
    let q = topology.quorum;
    install(topology)?;
    // Hints for nodes that left can never be delivered. On a reload the UNLINKs propagated here
    // drop them again (the backlogs are not known yet while Redis loads).
    if let (false, Some(view)) = (store::loading(ctx), current()) {
        crate::commands::hint::drop_removed(ctx, &view.topology);
    }
    // Stored with plain commands so Redis Insight shows them; RM_Call does not propagate, the
    // verbatim replication of RC.CLUSTER.SET below does.
    let s = |text: &str| store::string(ctx, text);
    store::call(ctx, "SET", &[&s(CONFIG_KEY), &s(&json)])?;
    let (n, w, r) = (
        s(&q.n.to_string()),
        s(&q.w.to_string()),
        s(&q.r.to_string()),
    );
    store::call(
        ctx,
        "HSET",
        &[&s(QUORUM_KEY), &s("n"), &n, &s("w"), &w, &s("r"), &r],
    )?;
    ctx.replicate_verbatim();
    crate::coord::rebalance::topology_pushed();
    Ok(RedisValue::SimpleStringStatic("OK"))
}

pub fn get(_ctx: &Context, args: Vec<RedisString>) -> Outcome {
    ClusterGet::parse(&args)?;
    Ok(current().map_or(RedisValue::Null, |v| {
        RedisValue::BulkString(v.topology.to_json())
    }))
}

/// `RC.META <SET|DEL|RPUSH|HSET> key [args...]`: the command on a metadata key, replicated to the
/// AOF as it was given; its reply.
pub fn meta(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let command = Meta::parse(&args)?.op.as_str();
    let rest: Vec<&RedisString> = args[2..].iter().collect();
    let reply = store::call(ctx, command, &rest)?;
    ctx.replicate_verbatim();
    Ok(match reply {
        store::Raw::Int(i) => RedisValue::Integer(i),
        _ => RedisValue::SimpleStringStatic("OK"),
    })
}

/// Re-installs the topology stored in `cluster:config` (after Redis loaded its data).
pub fn restore(ctx: &Context) {
    let name = store::string(ctx, CONFIG_KEY);
    let key = ctx.open_key(&name);
    let Ok(Some(bytes)) = key.read() else {
        return;
    };
    match Topology::parse(bytes) {
        Ok(t) => {
            let epoch = t.epoch;
            match install(t) {
                Ok(()) => {
                    ctx.log_notice(&format!(
                        "rcluster: restored topology epoch {epoch} from {CONFIG_KEY}"
                    ));
                    // A redistribution cut short by the restart may have left copies here:
                    // swept once the node process pushes the current topology.
                    crate::coord::rebalance::arm_sweep();
                }
                Err(e) => ctx.log_warning(&format!("rcluster: stored topology not usable: {e}")),
            }
        }
        Err(e) => ctx.log_warning(&format!(
            "rcluster: {CONFIG_KEY} is not a valid topology: {e}"
        )),
    }
}

/// `RC.CLUSTER.SETTLED epoch`: `1` when the transition to `epoch` (the installed topology) now
/// ends, after one request timeout; `0` when no transition to that epoch is open here.
pub fn settled(_ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let epoch = Settled::parse(&args)?.epoch;
    let closing = current().is_some_and(|view| match view.previous.as_deref() {
        Some(prev) if view.topology.epoch == epoch && prev.open() => {
            prev.settle(Duration::from_millis(view.topology.request_timeout_ms));
            true
        }
        _ => false,
    });
    Ok(RedisValue::Integer(i64::from(closing)))
}

pub fn nodestate(_ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let request = NodeState::parse(&args)?;
    crate::coord::peers::push_liveness(
        request.node,
        request.state,
        std::time::Duration::from_millis(request.ttl_ms),
    );
    Ok(RedisValue::SimpleStringStatic("OK"))
}
