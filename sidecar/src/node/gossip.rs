//! Heartbeats between node processes over UDP on the peer port, and failure detection. Every
//! interval this node checks its own Redis (PING, a bounded wait), sends a ping carrying its
//! summary to every peer, and re-judges every peer with its phi-accrual detector; a peer that
//! pings is answered with a pong, which gives the round trip. State changes go out as events.
//! The summary carries the topology epoch this node's module installed: once every member
//! reports the epoch of an open transition (see the module's `cluster::View::transition`), this
//! node tells its module (`RC.CLUSTER.SETTLED`), which then stops using the previous placement.
//!
//! Every datagram is sealed with the cluster secret for its one recipient
//! (`rcluster_domain::peer_auth`); one that is forged, replayed, stale, for another node or from a
//! non-member is counted (`rcluster_peer_messages_refused_total{reason}`) and dropped before it
//! can touch a detector, a summary or a per-peer metric. Injected faults (`node::faults`) lose or
//! delay the pings and pongs this node sends.

use std::sync::Arc;
use std::time::Duration;

use rcluster_domain::peer_auth::{Channel, Refusal};
use rcluster_domain::rc::cluster::Settled;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::node::faults;
use crate::node::local::rc;
use crate::node::peer_auth::PeerAuth;
use crate::node::view::{judge, own_verdict, unix_ms, Shared, Summary};

/// Largest heartbeat datagram read (a sealed ping is about 1 KB); a longer one is cut, which
/// breaks its MAC.
const MAX_DATAGRAM: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Ping,
    Pong,
}

#[derive(Debug, Serialize, Deserialize)]
struct Beat {
    kind: Kind,
    cluster: String,
    from: String,
    seq: u64,
    /// The pinger's monotonic microseconds, echoed in the pong.
    sent_us: u64,
    summary: Option<Summary>,
}

/// A change worth telling people about.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub observer: String,
    pub node: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub at_ms: u64,
    /// `redis_state` events: failures in a row behind the new state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    /// `redis_state` events: when the supervisor starts Redis again (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_unix_ms: Option<u64>,
}

/// The value of `name:` in an INFO text.
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

/// Reads this node's own summary from its Redis, bounded by `timeout`.
async fn own_summary(shared: &Shared, timeout: Duration) -> Summary {
    let state = shared.redis.state.borrow().clone();
    let info: Option<String> = match state.pid() {
        Some(_) => {
            let mut cmd = redis::cmd("INFO");
            cmd.arg("rcluster").arg("memory");
            shared.local.query(&cmd, timeout).await.ok()
        }
        None => None,
    };
    let up = info.is_some();
    let field = |name: &str| info.as_deref().and_then(|i| info_field(i, name));
    let kv_keys = field("rcluster_kv_keys").and_then(|v| v.parse().ok());
    let topology_epoch = field("rcluster_topology_epoch")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let transition_open = field("rcluster_transition_open") == Some("1");
    let redistribution = info
        .as_deref()
        .and_then(crate::node::report::Rebalance::parse)
        .map(|r| r.progress());
    let used_memory_bytes = field("used_memory").and_then(|v| v.parse().ok());
    let time = shared.time();
    let found = Summary {
        redis_up: up,
        kv_keys,
        used_memory_bytes,
        drift_ms: time.offset_ms,
        time_source: time.source,
        topology_epoch,
        transition_open,
        redistribution,
        ..Summary::default()
    };
    shared.with_own_state(&state, found)
}

/// The epoch whose transition may end: this node's module has one open and every other member
/// (`reported`: the epochs their last heartbeats carried, `None` when never heard) installed it.
fn settle_due(own: &Summary, others: &[Option<u64>]) -> Option<u64> {
    let epoch = own.topology_epoch;
    (own.transition_open && others.iter().all(|e| e.is_some_and(|e| e >= epoch))).then_some(epoch)
}

/// Tells this node's module when every member installed the topology of its open transition.
/// `told`: the last epoch it told (said once in the log, though repeated each heartbeat while the
/// transition winds down).
async fn settle_transition(shared: &Shared, own: &Summary, told: &mut u64, timeout: Duration) {
    let reported: Vec<Option<u64>> = {
        let nodes = shared.nodes();
        shared
            .members()
            .iter()
            .filter(|m| m.id != shared.me.id)
            .map(|m| {
                nodes
                    .get(&m.id)
                    .filter(|v| v.last_heartbeat_unix_ms.is_some())
                    .map(|v| v.summary.topology_epoch)
            })
            .collect()
    };
    let Some(epoch) = settle_due(own, &reported) else {
        return;
    };
    let cmd = rc(&Settled { epoch });
    match shared.local.query::<i64>(&cmd, timeout).await {
        Ok(1) if *told != epoch => {
            *told = epoch;
            tracing::info!(
                node = %shared.me.id,
                "every member installed topology epoch {epoch}; the previous placement is \
                 dropped after one request timeout"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(
            node = %shared.me.id,
            "could not end the transition to epoch {epoch}: {e}"
        ),
    }
}

pub async fn run(
    shared: Arc<Shared>,
    auth: Arc<PeerAuth>,
    socket: UdpSocket,
    events: mpsc::Sender<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let socket = Arc::new(socket);
    let interval = Duration::from_millis(shared.config.intervals.heartbeat_ms);
    // What one look at this node's Redis may take (reading its summary, ending a transition).
    let timeout = interval.min(Duration::from_secs(1));
    let receiver = tokio::spawn(receive(shared.clone(), auth.clone(), socket.clone()));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    let mut last_epoch = 0u64;
    let mut told = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        seq += 1;
        let mut summary = own_summary(&shared, timeout).await;
        // While its Redis is down (or restarting) this node still reports the epoch its module
        // last had: the module restores it from its own data, and a node that coordinates
        // nothing must not hold its peers' transitions open.
        last_epoch = last_epoch.max(summary.topology_epoch);
        summary.topology_epoch = last_epoch;
        let me = shared.me.id.clone();
        let beat = Beat {
            kind: Kind::Ping,
            cluster: shared.config.cluster_name.clone(),
            from: me.clone(),
            seq,
            sent_us: shared.mono_us(),
            summary: Some(summary.clone()),
        };
        let bytes = serde_json::to_vec(&beat).unwrap_or_default();
        for peer in shared.members().iter().filter(|n| n.id != me) {
            let sealed = auth.seal(Channel::Heartbeat, &peer.id, &bytes);
            // An injected fault may lose or delay it.
            let Some(delay) = faults::outgoing(&peer.id) else {
                continue;
            };
            let addr = (peer.host.clone(), peer.peer_port);
            if !delay.is_zero() {
                let socket = socket.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = socket.send_to(&sealed, addr).await;
                });
                continue;
            }
            if socket.send_to(&sealed, addr).await.is_ok() {
                shared
                    .metrics
                    .heartbeats_sent
                    .with_label_values(&[&peer.id])
                    .inc();
            }
        }
        settle_transition(&shared, &summary, &mut told, timeout).await;
        for event in judge_all(&shared, summary) {
            if event.kind == "node_state" {
                tracing::info!(
                    node = %event.observer,
                    "{} is now {} ({})",
                    event.node,
                    event.to,
                    event.reason
                );
            } else {
                tracing::info!(
                    node = %event.observer,
                    "the Redis of {} is now {} ({})",
                    event.node,
                    event.to,
                    event.reason
                );
            }
            let _ = events.try_send(event);
        }
    }
    receiver.abort();
}

/// Re-judges every node; returns the transitions.
fn judge_all(shared: &Shared, own: Summary) -> Vec<Event> {
    let now = shared.mono_ms();
    let me = shared.me.id.clone();
    let mut out = Vec::new();
    let mut nodes = shared.nodes();
    for (id, view) in nodes.iter_mut() {
        let (liveness, reason) = if *id == me {
            view.last_heartbeat_unix_ms = Some(unix_ms());
            view.summary = own.clone();
            own_verdict(own.redis_up, &own.redis_state)
        } else {
            view.phi = view.detector.phi(now);
            judge(
                view.phi,
                view.detector.last_heartbeat_ms().is_some(),
                view.summary.redis_up,
            )
        };
        shared
            .metrics
            .peer_state
            .with_label_values(&[id])
            .set(liveness as i64);
        shared
            .metrics
            .peer_phi
            .with_label_values(&[id])
            .set(view.phi);
        if liveness != view.liveness {
            out.push(Event {
                kind: "node_state",
                observer: me.clone(),
                node: id.clone(),
                from: view.liveness.as_str().to_string(),
                to: liveness.as_str().to_string(),
                reason: reason.clone(),
                at_ms: unix_ms(),
                restarts: None,
                next_attempt_unix_ms: None,
            });
        }
        view.liveness = liveness;
        view.reason = reason;
        // A peer's Redis changed state (its own events go out on its own Redis, which may be the
        // one that is down): tell this node's subscribers too.
        if *id != me && view.summary.redis_state != view.told_redis_state {
            let s = &view.summary;
            if !view.told_redis_state.is_empty() && !s.redis_state.is_empty() {
                out.push(Event {
                    kind: "redis_state",
                    observer: me.clone(),
                    node: id.clone(),
                    from: view.told_redis_state.clone(),
                    to: s.redis_state.clone(),
                    reason: s.redis_reason.clone(),
                    at_ms: unix_ms(),
                    restarts: Some(s.redis_restarts),
                    next_attempt_unix_ms: s.redis_next_attempt_unix_ms,
                });
            }
            view.told_redis_state = s.redis_state.clone();
        }
    }
    out
}

/// Checks a datagram (MAC, recipient, membership, freshness) and decodes its heartbeat.
fn open(
    shared: &Shared,
    inbound: &mut rcluster_domain::peer_auth::Inbound,
    datagram: &[u8],
) -> Result<Beat, Refusal> {
    let opened = inbound.accept(datagram, unix_ms(), |id| shared.member(id).is_some())?;
    let beat: Beat = serde_json::from_slice(opened.payload).map_err(|_| Refusal::Malformed)?;
    if beat.from != opened.header.from || beat.cluster != shared.config.cluster_name {
        return Err(Refusal::Malformed);
    }
    Ok(beat)
}

async fn receive(shared: Arc<Shared>, auth: Arc<PeerAuth>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut inbound = auth.inbound(Channel::Heartbeat);
    loop {
        let Ok((len, from_addr)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let beat = match open(&shared, &mut inbound, &buf[..len]) {
            Ok(beat) => beat,
            Err(reason) => {
                auth.refused(
                    &shared.metrics,
                    Channel::Heartbeat,
                    reason,
                    format!("from {from_addr}"),
                );
                continue;
            }
        };
        let now = shared.mono_ms();
        match beat.kind {
            Kind::Ping => {
                {
                    let mut nodes = shared.nodes();
                    let Some(view) = nodes.get_mut(&beat.from) else {
                        continue;
                    };
                    view.detector.heartbeat(now);
                    view.last_heartbeat_unix_ms = Some(unix_ms());
                    if let Some(s) = beat.summary {
                        view.summary = s;
                    }
                }
                shared
                    .metrics
                    .heartbeats_received
                    .with_label_values(&[&beat.from])
                    .inc();
                let pong = Beat {
                    kind: Kind::Pong,
                    cluster: beat.cluster,
                    from: shared.me.id.clone(),
                    seq: beat.seq,
                    sent_us: beat.sent_us,
                    summary: None,
                };
                let Some(delay) = faults::outgoing(&beat.from) else {
                    continue;
                };
                if let Ok(bytes) = serde_json::to_vec(&pong) {
                    let sealed = auth.seal(Channel::Heartbeat, &beat.from, &bytes);
                    if delay.is_zero() {
                        let _ = socket.send_to(&sealed, from_addr).await;
                    } else {
                        let socket = socket.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = socket.send_to(&sealed, from_addr).await;
                        });
                    }
                }
            }
            Kind::Pong => {
                let rtt_ms = shared.mono_us().saturating_sub(beat.sent_us) as f64 / 1000.0;
                if let Some(view) = shared.nodes().get_mut(&beat.from) {
                    view.rtt_ms = Some(rtt_ms);
                }
                shared
                    .metrics
                    .heartbeat_rtt
                    .with_label_values(&[&beat.from])
                    .observe(rtt_ms / 1000.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary grew the redistribution progress: a beat with every field at its widest
    /// still fits one datagram.
    #[test]
    fn a_full_heartbeat_fits_one_datagram() {
        let progress = crate::api::Redistribution {
            pass_kind: crate::api::PassKind::Redistribution,
            running: true,
            items: u64::MAX,
            done: u64::MAX,
            percent: 100,
            passes: u64::MAX,
            keys_moved: u64::MAX,
        };
        let summary = Summary {
            redis_up: true,
            redis_state: "crash_looping".into(),
            redis_reason: crate::node::view::short_reason(&"é".repeat(1000)),
            redis_restarts: u32::MAX,
            redis_next_attempt_unix_ms: Some(u64::MAX),
            redis_pid: Some(u32::MAX),
            kv_keys: Some(i64::MIN),
            used_memory_bytes: Some(u64::MAX),
            drift_ms: Some(i64::MIN),
            time_source: "not configured".into(),
            raft_role: "candidate".into(),
            raft_term: u64::MAX,
            raft_commit_index: u64::MAX,
            topology_epoch: u64::MAX,
            transition_open: true,
            redistribution: Some(progress),
        };
        let beat = Beat {
            kind: Kind::Pong,
            cluster: "c".repeat(128),
            from: "n".repeat(32),
            seq: u64::MAX,
            sent_us: u64::MAX,
            summary: Some(summary),
        };
        let bytes = serde_json::to_vec(&beat).unwrap();
        assert!(bytes.len() <= MAX_DATAGRAM / 2, "{} bytes", bytes.len());
        let back: Beat = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.summary.and_then(|s| s.redistribution), Some(progress));
    }

    #[test]
    fn a_transition_settles_once_every_other_member_reports_its_epoch() {
        let own = |epoch, open| Summary {
            topology_epoch: epoch,
            transition_open: open,
            ..Summary::default()
        };
        assert_eq!(settle_due(&own(5, true), &[Some(5), Some(6)]), Some(5));
        assert_eq!(settle_due(&own(5, true), &[]), Some(5));
        // One member still on the previous epoch, or never heard from: not yet.
        assert_eq!(settle_due(&own(5, true), &[Some(5), Some(4)]), None);
        assert_eq!(settle_due(&own(5, true), &[Some(5), None]), None);
        // No transition open here: nothing to say.
        assert_eq!(settle_due(&own(5, false), &[Some(5)]), None);
    }
}
