//! Prometheus metrics of a node, all named `rcluster_*` and labelled with the node id:
//! heartbeats, round trips, peer states, refused peer messages, Raft driver restarts, time drift,
//! Redis up, its supervision (state, crashes, restarts), API authentication failures, downloads
//! (running, cut), process memory and CPU, and the module's counters, hint backlog per target
//! and data redistribution progress read from `INFO rcluster` at
//! every scrape.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use rcluster_domain::peer_auth::Refusal;

pub struct Metrics {
    registry: Registry,
    pub heartbeats_sent: IntCounterVec,
    pub heartbeats_received: IntCounterVec,
    pub heartbeat_rtt: HistogramVec,
    /// 0 alive, 1 suspect, 2 down.
    pub peer_state: IntGaugeVec,
    pub peer_phi: GaugeVec,
    /// Offset from NTP time in seconds (base unit: promtool rejects `_ms` names).
    pub time_drift: Gauge,
    pub ntp_available: IntGauge,
    pub redis_up: IntGauge,
    pub redis_restarts: IntCounter,
    /// Exits of this node's Redis nobody asked for, and starts that failed.
    pub redis_crashes: IntCounter,
    /// 1 for the supervisor's current state of this node's Redis, 0 for the others.
    redis_state: IntGaugeVec,
    /// Failures of this node's Redis in a row behind its state.
    redis_failures_in_a_row: IntGauge,
    /// Failed authentications on the HTTP API (missing or unknown key).
    pub auth_failures: IntCounter,
    /// Downloads running now.
    pub downloads_active: IntGauge,
    /// Downloads cut by the server, by reason (stalled, timeout).
    pub download_cuts: IntCounterVec,
    pub raft_term: IntGauge,
    pub raft_commit_index: IntGauge,
    pub raft_is_leader: IntGauge,
    module_gauges: IntGaugeVec,
    module_state: IntGaugeVec,
    /// Hints this node holds for each target node (`hints_for_<node>` in INFO rcluster): count,
    /// bytes, and the age of the oldest in seconds. Reset at every scrape, so a target whose
    /// hints were all delivered or dropped leaves no series.
    hint_backlog: GaugeVec,
    module_counters: IntCounterVec,
    /// The module's `rebalance_*` fields, by field name (without the `rebalance_` prefix).
    rebalance: Vec<(&'static str, IntGauge)>,
    /// Last value seen per module counter, to turn INFO totals into increments.
    seen: Mutex<HashMap<Vec<String>, u64>>,
    pub scrape_up: Gauge,
    /// File bytes by direction (uploaded, downloaded).
    pub bytes: IntCounterVec,
    /// Chunk operations by kind (write, read).
    pub chunk_ops: IntCounterVec,
    /// Downloaded chunks that did not match the digest recorded at upload.
    pub checksum_failures: IntCounter,
    /// Peer messages refused, by reason (the closed set `peer_auth::Refusal`; never by sender,
    /// which a forger would choose).
    pub peer_refused: IntCounterVec,
    /// Restarts of the Raft driver after it ended or panicked.
    pub raft_driver_restarts: IntCounter,
}

/// Every state the `rcluster_redis_state` gauge shows.
const REDIS_STATES: [crate::api::RedisState; 6] = {
    use crate::api::RedisState as S;
    [
        S::Starting,
        S::Running,
        S::Stopped,
        S::Restarting,
        S::CrashLooping,
        S::CannotStart,
    ]
};

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are constants: a failure here is a programming error caught by tests.
    r.unwrap_or_else(|e| panic!("metric definition: {e}"))
}

impl Metrics {
    pub fn new(node_id: &str) -> Metrics {
        let labels = HashMap::from([("node".to_string(), node_id.to_string())]);
        let registry = must(Registry::new_custom(Some("rcluster".into()), Some(labels)));
        let counter_vec = |name: &str, help: &str, l: &[&str]| {
            let c = must(IntCounterVec::new(Opts::new(name, help), l));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = must(IntGauge::new(name, help));
            must(registry.register(Box::new(g.clone())));
            g
        };
        let heartbeat_rtt = must(HistogramVec::new(
            HistogramOpts::new("heartbeat_rtt_seconds", "Heartbeat round trip to each peer")
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            &["peer"],
        ));
        must(registry.register(Box::new(heartbeat_rtt.clone())));
        let peer_state = must(IntGaugeVec::new(
            Opts::new(
                "peer_state",
                "Failure detector state of each node: 0 alive, 1 suspect, 2 down",
            ),
            &["peer"],
        ));
        must(registry.register(Box::new(peer_state.clone())));
        let peer_phi = must(GaugeVec::new(
            Opts::new("peer_phi", "Phi accrual suspicion level of each peer"),
            &["peer"],
        ));
        must(registry.register(Box::new(peer_phi.clone())));
        let module_gauges = must(IntGaugeVec::new(
            Opts::new(
                "module_held",
                "What this node's Redis holds (INFO rcluster): kv_keys, chunks, chunk_bytes",
            ),
            &["what"],
        ));
        must(registry.register(Box::new(module_gauges.clone())));
        let module_state = must(IntGaugeVec::new(
            Opts::new(
                "module_state",
                "This node's module (INFO rcluster): topology_epoch installed, transition_open (1 while the previous placement still counts)",
            ),
            &["what"],
        ));
        must(registry.register(Box::new(module_state.clone())));
        let hint_backlog = must(GaugeVec::new(
            Opts::new(
                "hint_backlog",
                "Hints this node holds for each target node (INFO rcluster hints_for_<node>): count, bytes, oldest_seconds (age of the oldest)",
            ),
            &["target", "what"],
        ));
        must(registry.register(Box::new(hint_backlog.clone())));
        let scrape_up = must(Gauge::new(
            "module_info_up",
            "1 when INFO rcluster could be read for this scrape",
        ));
        must(registry.register(Box::new(scrape_up.clone())));
        must(registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )));
        Metrics {
            heartbeats_sent: counter_vec("heartbeats_sent_total", "Heartbeats sent to each peer", &["peer"]),
            heartbeats_received: counter_vec("heartbeats_received_total", "Heartbeats received from each peer", &["peer"]),
            heartbeat_rtt,
            peer_state,
            peer_phi,
            time_drift: {
                let g = must(Gauge::new(
                    "time_drift_seconds",
                    "Offset of this node's clock from NTP time in seconds (0 without NTP)",
                ));
                must(registry.register(Box::new(g.clone())));
                g
            },
            ntp_available: gauge("ntp_available", "1 when an NTP server answered the last query"),
            redis_up: gauge("redis_up", "1 when this node's Redis answers"),
            raft_term: gauge("raft_term", "This node's current Raft term"),
            raft_commit_index: gauge("raft_commit_index", "Highest Raft log index this node knows committed"),
            raft_is_leader: gauge("raft_is_leader", "1 while this node is the Raft leader"),
            redis_restarts: {
                let c = must(IntCounter::new("redis_restarts_total", "Restarts of this node's Redis after a crash"));
                must(registry.register(Box::new(c.clone())));
                c
            },
            redis_crashes: {
                let c = must(IntCounter::new(
                    "redis_crashes_total",
                    "Exits of this node's Redis that nobody asked for, and starts of it that failed",
                ));
                must(registry.register(Box::new(c.clone())));
                c
            },
            redis_state: {
                let g = must(IntGaugeVec::new(
                    Opts::new(
                        "redis_state",
                        "1 for the supervisor's current state of this node's Redis (starting, running, stopped, restarting, crash_looping, cannot_start), 0 for the others",
                    ),
                    &["state"],
                ));
                must(registry.register(Box::new(g.clone())));
                g
            },
            redis_failures_in_a_row: gauge(
                "redis_failures_in_a_row",
                "Crashes and failed starts of this node's Redis in a row (0 once it ran stably)",
            ),
            auth_failures: {
                let c = must(IntCounter::new(
                    "api_auth_failures_total",
                    "HTTP API requests with a missing or unknown key",
                ));
                must(registry.register(Box::new(c.clone())));
                c
            },
            downloads_active: gauge("downloads_active", "File downloads this node serves now"),
            download_cuts: {
                let c = counter_vec(
                    "download_cuts_total",
                    "Downloads the server cut: stalled (the client accepted no byte within files.download_stall_timeout_ms), timeout (over files.transfer_timeout_ms)",
                    &["reason"],
                );
                for reason in ["stalled", "timeout"] {
                    c.with_label_values(&[reason]);
                }
                c
            },
            module_gauges,
            module_state,
            hint_backlog,
            rebalance: [
                ("keys_moved", "Copies of registers and chunks that this node's module gave new owners (since its Redis started)"),
                ("bytes_moved", "Bytes of those copies (since this node's Redis started)"),
                ("keys_dropped", "Registers and chunks this node dropped once their new owners had them (since its Redis started)"),
                ("percent", "Share of the running redistribution pass done, 0 to 100 (100 when none runs)"),
                ("in_progress", "1 while a redistribution pass runs on this node"),
            ]
            .into_iter()
            .map(|(field, help)| (field, gauge(&format!("rebalance_{field}"), help)))
            .collect(),
            module_counters: counter_vec(
                "module_events_total",
                "The module's counters from INFO rcluster (calls, errors, quorum outcomes, repairs, hints)",
                &["counter", "kind"],
            ),
            seen: Mutex::new(HashMap::new()),
            scrape_up,
            bytes: counter_vec("file_bytes_total", "File bytes uploaded and downloaded through this node", &["direction"]),
            chunk_ops: counter_vec("chunk_operations_total", "Chunk writes and reads made by this node's file API", &["op"]),
            checksum_failures: {
                let c = must(IntCounter::new(
                    "download_checksum_failures_total",
                    "Downloaded chunks whose bytes did not match the digest recorded at upload",
                ));
                must(registry.register(Box::new(c.clone())));
                c
            },
            peer_refused: {
                let c = counter_vec(
                    "peer_messages_refused_total",
                    "Messages from peers (Raft frames, heartbeats) refused, by reason: too_large, malformed, bad_mac, wrong_recipient, not_member, stale, future, replayed, too_many_connections, raft_invalid",
                    &["reason"],
                );
                for reason in Refusal::ALL {
                    c.with_label_values(&[reason.as_str()]);
                }
                c
            },
            raft_driver_restarts: {
                let c = must(IntCounter::new(
                    "raft_driver_restarts_total",
                    "Restarts of this node's Raft driver after it ended or panicked",
                ));
                must(registry.register(Box::new(c.clone())));
                c
            },
            registry,
        }
    }

    /// Shows the supervisor's state of this node's Redis and its failures in a row.
    pub fn observe_redis_state(&self, state: &str, failures_in_a_row: u32) {
        for kind in REDIS_STATES {
            self.redis_state
                .with_label_values(&[kind.as_str()])
                .set(i64::from(kind.as_str() == state));
        }
        self.redis_failures_in_a_row
            .set(i64::from(failures_in_a_row));
    }

    /// Counts one refused peer message.
    pub fn refuse(&self, reason: Refusal) {
        self.peer_refused
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Updates the module metrics from an `INFO rcluster` text (or marks it unreadable).
    pub fn observe_module_info(&self, info: Option<&str>) {
        let Some(info) = info else {
            self.scrape_up.set(0.0);
            return;
        };
        self.scrape_up.set(1.0);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        self.hint_backlog.reset();
        for line in info.lines() {
            let Some((name, value)) = line
                .strip_prefix("rcluster_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let value = value.trim();
            match name {
                "kv_keys" | "chunks" | "chunk_bytes" => {
                    if let Ok(v) = value.parse::<i64>() {
                        self.module_gauges.with_label_values(&[name]).set(v);
                    }
                }
                "topology_epoch" | "transition_open" | "recount_in_progress" => {
                    if let Ok(v) = value.parse::<i64>() {
                        self.module_state.with_label_values(&[name]).set(v);
                    }
                }
                // hints_for_n2:count=3,bytes=120,oldest_ms=4000
                n if n.starts_with("hints_for_") => {
                    let target = n.strip_prefix("hints_for_").unwrap_or(n);
                    for pair in value.split(',') {
                        let Some((what, v)) = pair.split_once('=') else {
                            continue;
                        };
                        let Ok(v) = v.parse::<f64>() else { continue };
                        let (what, v) = match what {
                            "oldest_ms" => ("oldest_seconds", v / 1000.0),
                            "count" | "bytes" => (what, v),
                            _ => continue,
                        };
                        self.hint_backlog.with_label_values(&[target, what]).set(v);
                    }
                }
                n if n.starts_with("rebalance_") => {
                    let field = n.strip_prefix("rebalance_").unwrap_or(n);
                    let gauge = self.rebalance.iter().find(|(f, _)| *f == field);
                    if let (Some((_, g)), Ok(v)) = (gauge, value.parse::<i64>()) {
                        g.set(v);
                    }
                }
                "checksum_failures"
                | "panics_caught"
                | "read_repairs"
                | "hints_stored"
                | "hints_replayed"
                | "hints_refused"
                | "hints_dropped"
                | "recount_steps"
                | "tombstones_purged"
                | "chunk_repairs"
                | "writes_reissued"
                | "anti_entropy_passes"
                | "anti_entropy_repairs" => {
                    if let Ok(v) = value.parse::<u64>() {
                        self.add(&mut seen, name, "total", v);
                    }
                }
                // key=value lists: quorum_set:ok=1,noquorum=0; replica_failures:timeout=..;
                // cmd_rc_set:calls=..,errors=..
                n if (n.starts_with("quorum_") && n != "quorum_latency_ms")
                    || n == "replica_failures"
                    || n.starts_with("cmd_") =>
                {
                    for pair in value.split(',') {
                        if let Some((kind, v)) = pair.split_once('=') {
                            if let Ok(v) = v.parse::<u64>() {
                                self.add(&mut seen, n, kind, v);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn add(&self, seen: &mut HashMap<Vec<String>, u64>, counter: &str, kind: &str, total: u64) {
        let key = vec![counter.to_string(), kind.to_string()];
        let last = seen.insert(key, total).unwrap_or(0);
        // A smaller total means Redis restarted: its counters began again from zero.
        let delta = if total >= last { total - last } else { total };
        self.module_counters
            .with_label_values(&[counter, kind])
            .inc_by(delta);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            return format!("# encoding metrics failed: {e}\n");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_counters_become_increments() {
        let m = Metrics::new("n1");
        m.observe_module_info(Some("rcluster_kv_keys:5\r\nrcluster_quorum_set:ok=3,noquorum=1\r\nrcluster_read_repairs:2\r\n"));
        m.observe_module_info(Some("rcluster_kv_keys:7\r\nrcluster_quorum_set:ok=5,noquorum=1\r\nrcluster_read_repairs:2\r\nrcluster_anti_entropy_repairs:9\r\nrcluster_topology_epoch:4\r\nrcluster_transition_open:1\r\n"));
        let text = m.render();
        assert!(
            text.contains(r#"rcluster_module_held{what="kv_keys",node="n1"} 7"#),
            "{text}"
        );
        for line in [
            r#"rcluster_module_state{what="topology_epoch",node="n1"} 4"#,
            r#"rcluster_module_state{what="transition_open",node="n1"} 1"#,
            r#"rcluster_module_events_total{counter="anti_entropy_repairs",kind="total",node="n1"} 9"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(
            text.contains(
                r#"rcluster_module_events_total{counter="quorum_set",kind="ok",node="n1"} 5"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"rcluster_module_events_total{counter="read_repairs",kind="total",node="n1"} 2"#
            ),
            "{text}"
        );
    }

    #[test]
    fn refused_peer_messages_are_counted_by_reason_only() {
        let m = Metrics::new("n1");
        let text = m.render();
        // Every reason is there from the start, at zero.
        for reason in Refusal::ALL {
            let line = format!(
                r#"rcluster_peer_messages_refused_total{{reason="{}",node="n1"}} 0"#,
                reason.as_str()
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        m.refuse(Refusal::BadMac);
        m.refuse(Refusal::BadMac);
        let text = m.render();
        assert!(
            text.contains(r#"rcluster_peer_messages_refused_total{reason="bad_mac",node="n1"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"rcluster_raft_driver_restarts_total{node="n1"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn the_redis_state_is_one_gauge_per_state() {
        let m = Metrics::new("n1");
        m.observe_redis_state("crash_looping", 3);
        m.redis_crashes.inc();
        let text = m.render();
        for line in [
            r#"rcluster_redis_state{state="crash_looping",node="n1"} 1"#,
            r#"rcluster_redis_state{state="running",node="n1"} 0"#,
            r#"rcluster_redis_state{state="cannot_start",node="n1"} 0"#,
            r#"rcluster_redis_failures_in_a_row{node="n1"} 3"#,
            r#"rcluster_redis_crashes_total{node="n1"} 1"#,
            r#"rcluster_download_cuts_total{reason="stalled",node="n1"} 0"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        m.observe_redis_state("running", 0);
        let text = m.render();
        assert!(text.contains(r#"rcluster_redis_state{state="crash_looping",node="n1"} 0"#));
        assert!(text.contains(r#"rcluster_redis_state{state="running",node="n1"} 1"#));
    }

    #[test]
    fn rebalance_fields_become_gauges() {
        let m = Metrics::new("n1");
        m.observe_module_info(Some("rcluster_rebalance_in_progress:1\r\nrcluster_rebalance_passes:2\r\nrcluster_rebalance_keys_moved:30\r\nrcluster_rebalance_bytes_moved:3000\r\nrcluster_rebalance_keys_dropped:4\r\nrcluster_rebalance_pass_items:10\r\nrcluster_rebalance_pass_done:5\r\nrcluster_rebalance_percent:50\r\n"));
        let text = m.render();
        for line in [
            r#"rcluster_rebalance_keys_moved{node="n1"} 30"#,
            r#"rcluster_rebalance_bytes_moved{node="n1"} 3000"#,
            r#"rcluster_rebalance_keys_dropped{node="n1"} 4"#,
            r#"rcluster_rebalance_percent{node="n1"} 50"#,
            r#"rcluster_rebalance_in_progress{node="n1"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn hint_backlog_per_target_follows_info() {
        let m = Metrics::new("n1");
        m.observe_module_info(Some("rcluster_hints_refused:2\r\nrcluster_hints_for_n2:count=3,bytes=120,oldest_ms=4000\r\nrcluster_hints_for_n3:count=1,bytes=10,oldest_ms=0\r\n"));
        let text = m.render();
        for line in [
            r#"rcluster_hint_backlog{target="n2",what="count",node="n1"} 3"#,
            r#"rcluster_hint_backlog{target="n2",what="bytes",node="n1"} 120"#,
            r#"rcluster_hint_backlog{target="n2",what="oldest_seconds",node="n1"} 4"#,
            r#"rcluster_hint_backlog{target="n3",what="count",node="n1"} 1"#,
            r#"rcluster_module_events_total{counter="hints_refused",kind="total",node="n1"} 2"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // n2's hints delivered: its series goes away.
        m.observe_module_info(Some(
            "rcluster_hints_for_n3:count=1,bytes=10,oldest_ms=1000\r\n",
        ));
        let text = m.render();
        assert!(!text.contains(r#"target="n2""#), "{text}");
        assert!(
            text.contains(
                r#"rcluster_hint_backlog{target="n3",what="oldest_seconds",node="n1"} 1"#
            ),
            "{text}"
        );
    }
}
