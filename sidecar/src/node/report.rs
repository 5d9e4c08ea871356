//! Tells the world what this node sees: every interval it writes `node:<id>:status` for every node
//! (its own row read live, as `/api/nodes` shows it) into its own Redis, publishes each state change on `cluster:events`, and pushes each peer's
//! liveness into its module (`RC.CLUSTER.NODESTATE`), so the coordinator routes around a down
//! node at once. Every second it reads the module's `rebalance_*` fields and publishes a
//! `rebalance` event when a redistribution pass starts, while it runs, and when it finishes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rcluster_domain::rc::cluster::{Meta, MetaOp, NodeState};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::api::{PassKind, Redistribution};
use crate::node::gossip::{info_field, Event};
use crate::node::local::rc;
use crate::node::view::{unix_ms, Shared};

/// Pub/Sub channel of state changes.
pub const EVENTS_CHANNEL: &str = "cluster:events";

/// How often the module's rebalance progress is read (and at most how often it is told).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Publishes one event (JSON) on [`EVENTS_CHANNEL`] through this node's Redis.
pub async fn publish(shared: &Shared, json: String, timeout: Duration) {
    let mut publish = redis::cmd("PUBLISH");
    publish.arg(EVENTS_CHANNEL).arg(json);
    if let Err(e) = shared.local.query::<i64>(&publish, timeout).await {
        tracing::warn!(node = %shared.me.id, "could not publish an event: {e}");
    }
}

pub async fn run(
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(shared.config.intervals.heartbeat_ms);
    let timeout = interval.min(Duration::from_secs(1));
    // A pushed verdict outlives a few missed pushes, not a dead node process.
    let ttl_ms = (shared.config.intervals.heartbeat_ms * 5).max(3_000);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rebalance = RebalanceWatch::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            Some(event) = events.recv() => {
                if let Ok(json) = serde_json::to_string(&event) {
                    publish(&shared, json, timeout).await;
                }
            }
            _ = progress.tick() => {
                report_rebalance(&shared, &mut rebalance, timeout).await;
                continue;
            }
            _ = shutdown.changed() => break,
        }
        let mut pipe = redis::pipe();
        {
            // This node's own row as of now, as `/api/nodes` shows it.
            let own = shared.own_live();
            let nodes = shared.nodes();
            for (id, view) in nodes.iter() {
                let (liveness, reason, s) = if *id == shared.me.id {
                    (own.liveness, &own.reason, &own.summary)
                } else {
                    (view.liveness, &view.reason, &view.summary)
                };
                // RC.META: a Redis full of data still takes it.
                let fields = [
                    ("state", liveness.as_str().to_string()),
                    ("reason", reason.clone()),
                    ("observer", shared.me.id.clone()),
                    (
                        "last_heartbeat_ms",
                        view.last_heartbeat_unix_ms.unwrap_or(0).to_string(),
                    ),
                    ("phi", format!("{:.2}", view.phi)),
                    (
                        "rtt_ms",
                        view.rtt_ms.map_or_else(String::new, |r| format!("{r:.1}")),
                    ),
                    ("redis_up", u8::from(s.redis_up).to_string()),
                    ("redis_state", s.redis_state.clone()),
                    ("redis_reason", s.redis_reason.clone()),
                    ("redis_restarts", s.redis_restarts.to_string()),
                    (
                        "redis_next_attempt_ms",
                        s.redis_next_attempt_unix_ms
                            .map_or_else(String::new, |t| t.to_string()),
                    ),
                    (
                        "kv_keys",
                        s.kv_keys.map_or_else(String::new, |k| k.to_string()),
                    ),
                    (
                        "used_memory_bytes",
                        s.used_memory_bytes
                            .map_or_else(String::new, |m| m.to_string()),
                    ),
                    (
                        "drift_ms",
                        s.drift_ms.map_or_else(String::new, |d| d.to_string()),
                    ),
                    ("time_source", s.time_source.clone()),
                ];
                let key = format!("node:{id}:status");
                let status = Meta {
                    op: MetaOp::Hset,
                    key: key.as_bytes(),
                    args: fields
                        .iter()
                        .flat_map(|(name, value)| [name.as_bytes(), value.as_bytes()])
                        .collect(),
                };
                pipe.add_command(rc(&status)).ignore();
                // A peer never heard from is unknown, not down: this node may just have started.
                // The module then finds out by itself whether it answers.
                let heard = view.detector.last_heartbeat_ms().is_some();
                if *id != shared.me.id && heard {
                    let verdict = NodeState {
                        node: id,
                        state: view.liveness,
                        ttl_ms,
                    };
                    pipe.add_command(rc(&verdict)).ignore();
                }
            }
        }
        // While Redis is down this fails; the next tick tries again.
        let _ = shared.local.pipeline(&pipe, timeout).await;
    }
}

/// The module's `rebalance_*` fields from one `INFO rcluster` text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rebalance {
    running: bool,
    /// What the running (or last) pass is for: `redistribution` after a member change, `sweep`
    /// after a restart, `anti-entropy` (absent from older modules: `redistribution`).
    pass_kind: PassKind,
    /// Passes completed since this node's Redis started.
    passes: u64,
    keys_moved: u64,
    bytes_moved: u64,
    keys_dropped: u64,
    /// Items the running (or last) pass goes through, and those done so far (absent from older
    /// modules: 0).
    pass_items: u64,
    pass_done: u64,
    percent: u64,
}

impl Rebalance {
    pub fn parse(info: &str) -> Option<Rebalance> {
        let n = |f: &str| {
            info_field(info, &format!("rcluster_rebalance_{f}")).and_then(|v| v.parse().ok())
        };
        let pass_kind = match info_field(info, "rcluster_rebalance_pass_kind") {
            Some("sweep") => PassKind::Sweep,
            Some("anti-entropy") => PassKind::AntiEntropy,
            _ => PassKind::Redistribution,
        };
        Some(Rebalance {
            running: n("in_progress")? == 1,
            pass_kind,
            passes: n("passes")?,
            keys_moved: n("keys_moved")?,
            bytes_moved: n("bytes_moved")?,
            keys_dropped: n("keys_dropped")?,
            pass_items: n("pass_items").unwrap_or(0),
            pass_done: n("pass_done").unwrap_or(0),
            percent: n("percent")?.min(100),
        })
    }

    /// The progress the API shows for this node.
    pub fn progress(&self) -> Redistribution {
        Redistribution {
            pass_kind: self.pass_kind,
            running: self.running,
            items: self.pass_items,
            done: self.pass_done,
            percent: self.percent,
            passes: self.passes,
            keys_moved: self.keys_moved,
        }
    }

    /// True when a counter went down: the module's Redis restarted.
    fn reset_since(&self, last: &Rebalance) -> bool {
        self.passes < last.passes
            || self.keys_moved < last.keys_moved
            || self.bytes_moved < last.bytes_moved
            || self.keys_dropped < last.keys_dropped
    }
}

/// One `rebalance` event on `cluster:events`: the fields of the other events (`from`/`to` are
/// `idle`/`running`) plus the pass's phase, number and what it did so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct RebalanceEvent {
    #[serde(rename = "type")]
    kind: &'static str,
    observer: String,
    node: String,
    from: &'static str,
    to: &'static str,
    reason: String,
    at_ms: u64,
    /// `started`, `progress` or `finished`.
    phase: &'static str,
    /// `redistribution`, `sweep` or `anti-entropy`.
    pass_kind: PassKind,
    /// The pass's number since this node's Redis started.
    pass: u64,
    /// Copies that changed a new owner, their bytes, and own copies dropped, during this pass.
    keys_moved: u64,
    bytes_moved: u64,
    keys_dropped: u64,
    percent: u64,
}

/// Turns successive readings into the phases of passes: a start, progress at most once per
/// [`PROGRESS_EVERY`], and an end — also for a pass that began and ended between two readings.
#[derive(Default)]
struct RebalanceWatch {
    last: Option<Rebalance>,
    /// The last reading with no pass running: the counters a pass's own work is measured from.
    base: Rebalance,
    told: Option<Instant>,
}

impl RebalanceWatch {
    fn event(&self, me: &str, phase: &'static str, now: &Rebalance) -> RebalanceEvent {
        let (from, to, pass, percent) = match phase {
            "started" => ("idle", "running", now.passes + 1, 0),
            "progress" => ("running", "running", now.passes + 1, now.percent),
            _ => ("running", "idle", now.passes, 100),
        };
        let keys_moved = now.keys_moved.saturating_sub(self.base.keys_moved);
        let bytes_moved = now.bytes_moved.saturating_sub(self.base.bytes_moved);
        let keys_dropped = now.keys_dropped.saturating_sub(self.base.keys_dropped);
        let what = now.pass_kind.as_str();
        let reason = match phase {
            "started" => format!("{what} pass {pass} started"),
            _ => format!(
                "{what} pass {pass} {phase}: {percent}%, {keys_moved} copies ({bytes_moved} bytes) moved, {keys_dropped} dropped"
            ),
        };
        RebalanceEvent {
            kind: "rebalance",
            observer: me.to_string(),
            node: me.to_string(),
            from,
            to,
            reason,
            at_ms: unix_ms(),
            phase,
            pass_kind: now.pass_kind,
            pass,
            keys_moved,
            bytes_moved,
            keys_dropped,
            percent,
        }
    }

    /// The events a new reading calls for.
    fn observe(&mut self, me: &str, now: Rebalance, at: Instant) -> Vec<RebalanceEvent> {
        let mut out = Vec::new();
        let last = match self.last.replace(now) {
            None => {
                // First reading: a pass already running is reported from here on.
                self.base = now;
                if now.running {
                    out.push(self.event(me, "started", &now));
                    self.told = Some(at);
                }
                return out;
            }
            Some(last) if now.reset_since(&last) => {
                // Redis restarted: its counters began again, a running pass was cut short.
                if last.running {
                    let cut = Rebalance {
                        passes: last.passes + 1,
                        ..last
                    };
                    let mut e = self.event(me, "finished", &cut);
                    e.reason.push_str(" (cut short: Redis restarted)");
                    out.push(e);
                }
                self.base = Rebalance::default();
                Rebalance::default()
            }
            Some(last) => last,
        };
        let progress_due = self
            .told
            .is_none_or(|t| at.duration_since(t) >= PROGRESS_EVERY);
        if now.passes > last.passes {
            // A pass ended since the last reading (perhaps started after it, too).
            if !last.running {
                out.push(self.event(me, "started", &last));
            }
            out.push(self.event(me, "finished", &now));
            self.base = now;
            if now.running {
                out.push(self.event(me, "started", &now));
                self.told = Some(at);
            }
        } else if now.running && !last.running {
            out.push(self.event(me, "started", &now));
            self.told = Some(at);
        } else if now.running && progress_due {
            out.push(self.event(me, "progress", &now));
            self.told = Some(at);
        }
        if !now.running {
            self.base = now;
        }
        out
    }
}

/// Reads the module's rebalance fields and publishes the events they call for.
async fn report_rebalance(shared: &Shared, watch: &mut RebalanceWatch, timeout: Duration) {
    // While Redis is down there is nothing to read; the next reading compares with the last.
    let Some(text) = shared.module_info(timeout).await else {
        return;
    };
    let Some(now) = Rebalance::parse(&text) else {
        return;
    };
    for event in watch.observe(&shared.me.id, now, Instant::now()) {
        if event.phase != "progress" {
            tracing::info!(node = %event.node, "{}", event.reason);
        }
        if let Ok(json) = serde_json::to_string(&event) {
            publish(shared, json, timeout).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(running: bool, passes: u64, keys_moved: u64, percent: u64) -> Rebalance {
        Rebalance {
            running,
            pass_kind: PassKind::Redistribution,
            passes,
            keys_moved,
            bytes_moved: keys_moved * 10,
            keys_dropped: 0,
            pass_items: 0,
            pass_done: 0,
            percent,
        }
    }

    fn phases(events: &[RebalanceEvent]) -> Vec<(&'static str, u64, u64, u64)> {
        events
            .iter()
            .map(|e| (e.phase, e.pass, e.keys_moved, e.percent))
            .collect()
    }

    #[test]
    fn parses_the_info_fields() {
        let info = "# rcluster\r\nrcluster_rebalance_pass_kind:anti-entropy\r\nrcluster_rebalance_in_progress:1\r\nrcluster_rebalance_passes:2\r\nrcluster_rebalance_keys_moved:30\r\nrcluster_rebalance_bytes_moved:300\r\nrcluster_rebalance_keys_dropped:4\r\nrcluster_rebalance_pass_items:10\r\nrcluster_rebalance_pass_done:5\r\nrcluster_rebalance_percent:50\r\n";
        let r = Rebalance::parse(info).expect("parsed");
        assert_eq!(
            r,
            Rebalance {
                running: true,
                pass_kind: PassKind::AntiEntropy,
                passes: 2,
                keys_moved: 30,
                bytes_moved: 300,
                keys_dropped: 4,
                pass_items: 10,
                pass_done: 5,
                percent: 50
            }
        );
        assert_eq!(
            r.progress(),
            Redistribution {
                pass_kind: PassKind::AntiEntropy,
                running: true,
                items: 10,
                done: 5,
                percent: 50,
                passes: 2,
                keys_moved: 30,
            }
        );
        let json = serde_json::to_value(r.progress()).expect("json");
        assert_eq!(json["pass_kind"], "anti-entropy");
        assert_eq!(Rebalance::parse("rcluster_kv_keys:1\r\n"), None);
    }

    #[test]
    fn a_pass_starts_progresses_once_a_second_and_finishes() {
        let mut w = RebalanceWatch::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(w.observe("n1", reading(false, 0, 0, 100), at(0)).is_empty());
        let e = w.observe("n1", reading(true, 0, 5, 10), at(1000));
        assert_eq!(phases(&e), [("started", 1, 5, 0)]);
        assert_eq!(
            (e[0].from, e[0].to, e[0].kind),
            ("idle", "running", "rebalance")
        );
        assert!(w
            .observe("n1", reading(true, 0, 8, 20), at(1500))
            .is_empty());
        let e = w.observe("n1", reading(true, 0, 20, 60), at(2000));
        assert_eq!(phases(&e), [("progress", 1, 20, 60)]);
        let e = w.observe("n1", reading(false, 1, 30, 100), at(3000));
        assert_eq!(phases(&e), [("finished", 1, 30, 100)]);
        assert_eq!(e[0].bytes_moved, 300);
        assert!(w
            .observe("n1", reading(false, 1, 30, 100), at(4000))
            .is_empty());
        // A whole pass between two readings: counted from the last idle reading.
        let e = w.observe("n1", reading(false, 2, 32, 100), at(5000));
        assert_eq!(phases(&e), [("started", 2, 0, 0), ("finished", 2, 2, 100)]);
        // One pass ended and the next began between two readings.
        w.observe("n1", reading(true, 2, 33, 50), at(6000));
        let e = w.observe("n1", reading(true, 3, 40, 5), at(7000));
        assert_eq!(phases(&e), [("finished", 3, 8, 100), ("started", 4, 0, 0)]);
        let json = serde_json::to_value(&e[0]).expect("json");
        assert_eq!(json["type"], "rebalance");
        assert_eq!(json["phase"], "finished");
        assert_eq!(json["keys_moved"], 8);
        assert_eq!(json["pass_kind"], "redistribution");
        assert!(
            e[0].reason.starts_with("redistribution pass 3 finished"),
            "{}",
            e[0].reason
        );
    }

    #[test]
    fn a_redis_restart_ends_the_running_pass() {
        let mut w = RebalanceWatch::default();
        let t0 = Instant::now();
        w.observe("n1", reading(false, 3, 10, 100), t0);
        w.observe("n1", reading(true, 3, 12, 40), t0);
        let e = w.observe("n1", reading(false, 0, 0, 100), t0 + PROGRESS_EVERY);
        assert_eq!(phases(&e), [("finished", 4, 2, 100)]);
        assert!(e[0].reason.contains("Redis restarted"), "{}", e[0].reason);
        let e = w.observe("n1", reading(true, 0, 1, 10), t0 + PROGRESS_EVERY * 2);
        assert_eq!(phases(&e), [("started", 1, 1, 0)]);
    }
}
