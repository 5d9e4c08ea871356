//! Prometheus metrics of a node, all named `rcluster_*` and labelled with the node id:
//! heartbeats, round trips, peer states, refused peer messages, Raft (term, indexes, leader,
//! leader changes, log length), key ranges out of quorum, time drift, Redis up, its supervision
//! (state, crashes, restarts), API authentication failures and request durations, downloads
//! (running, cut), file transfer throughput, injected faults held, process memory and CPU, and
//! the families read from its Redis at every scrape (`module_metrics`). Series per peer can be
//! left out (`metrics.per_peer`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use rcluster_domain::peer_auth::Refusal;

use crate::api::RaftStatus;
use crate::node::module_metrics::{self, Families};

/// Families with a series per peer, left out when `metrics.per_peer` is off (the module's
/// `replica_rtt_seconds` is left out where it is read).
const PER_PEER: [&str; 4] = [
    "rcluster_heartbeat_rtt_seconds",
    "rcluster_peer_phi",
    "rcluster_heartbeats_sent_total",
    "rcluster_heartbeats_received_total",
];

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
    /// The config's `time.max_drift_ms` in seconds, for the drift alert.
    pub time_max_drift: Gauge,
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
    /// Injected faults this node holds, by kind.
    pub faults_active: IntGaugeVec,
    pub raft_commit_index: IntGauge,
    raft_applied_index: IntGauge,
    raft_log_entries: IntGauge,
    pub raft_is_leader: IntGauge,
    raft_has_leader: IntGauge,
    raft_leader_changes: IntCounter,
    /// The leader last seen, to count changes.
    last_leader: Mutex<Option<String>>,
    /// Key ranges of the ring (one per token) and those whose live preference nodes are fewer
    /// than W (`op="write"`) or R (`op="read"`), as this node's failure detector sees them.
    key_ranges: IntGauge,
    ranges_without_quorum: IntGaugeVec,
    /// HTTP requests by route template, method and status.
    http_duration: HistogramVec,
    /// Completed uploads and downloads: bytes per second, by direction.
    transfer_throughput: HistogramVec,
    /// What the last scrape read from this node's Redis (`module_metrics`); empty when it could
    /// not be read, so its series go stale rather than repeat old values.
    from_redis: Mutex<Vec<MetricFamily>>,
    node_id: String,
    per_peer: bool,
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
    /// The metrics of node `node_id`; `per_peer: false` leaves out the series per peer.
    pub fn new(node_id: &str, per_peer: bool) -> Metrics {
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
        let scrape_up = must(Gauge::new(
            "module_info_up",
            "1 when INFO rcluster could be read for this scrape",
        ));
        must(registry.register(Box::new(scrape_up.clone())));
        must(registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )));
        Metrics {
            heartbeats_sent: counter_vec(
                "heartbeats_sent_total",
                "Heartbeats sent to each peer",
                &["peer"],
            ),
            heartbeats_received: counter_vec(
                "heartbeats_received_total",
                "Heartbeats received from each peer",
                &["peer"],
            ),
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
            time_max_drift: {
                let g = must(Gauge::new(
                    "time_max_drift_seconds",
                    "The drift this node warns above (time.max_drift_ms), in seconds",
                ));
                must(registry.register(Box::new(g.clone())));
                g
            },
            ntp_available: gauge(
                "ntp_available",
                "1 when an NTP server answered the last query",
            ),
            redis_up: gauge("redis_up", "1 when this node's Redis answers"),
            raft_term: gauge("raft_term", "This node's current Raft term"),
            raft_commit_index: gauge(
                "raft_commit_index",
                "Highest Raft log index this node knows committed",
            ),
            raft_applied_index: gauge(
                "raft_applied_index",
                "Highest Raft log index applied to this node's metadata",
            ),
            raft_log_entries: gauge(
                "raft_log_entries",
                "Entries in this node's Raft log since its last snapshot",
            ),
            faults_active: {
                let g = must(IntGaugeVec::new(
                    Opts::new("faults_active", "Injected faults this node holds, by kind"),
                    &["kind"],
                ));
                must(registry.register(Box::new(g.clone())));
                for kind in rcluster_domain::fault::KINDS {
                    g.with_label_values(&[kind]);
                }
                g
            },
            raft_is_leader: gauge("raft_is_leader", "1 while this node is the Raft leader"),
            raft_has_leader: gauge("raft_has_leader", "1 while this node knows a Raft leader"),
            raft_leader_changes: {
                let c = must(IntCounter::new("raft_leader_changes_total", "Leaders this node saw take over (a leader known after none or after another one)"));
                must(registry.register(Box::new(c.clone())));
                c
            },
            last_leader: Mutex::new(None),
            key_ranges: gauge(
                "key_ranges",
                "Key ranges of the ring (one per virtual node)",
            ),
            ranges_without_quorum: {
                let g = must(IntGaugeVec::new(
                    Opts::new("key_ranges_without_quorum", "Key ranges whose live preference nodes (as this node's failure detector sees them) are fewer than W (op=write) or R (op=read)"),
                    &["op"],
                ));
                must(registry.register(Box::new(g.clone())));
                g
            },
            http_duration: {
                let h = must(HistogramVec::new(
                    HistogramOpts::new("http_request_duration_seconds", "HTTP API requests until the response head, by route template, method and status")
                        .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                    &["route", "method", "status"],
                ));
                must(registry.register(Box::new(h.clone())));
                h
            },
            transfer_throughput: {
                let h = must(HistogramVec::new(
                    HistogramOpts::new("file_transfer_throughput_bytes_per_second", "Completed file uploads and downloads through this node: bytes per second of each, by direction")
                        .buckets(prometheus::exponential_buckets(65_536.0, 4.0, 10).unwrap_or_default()),
                    &["direction"],
                ));
                must(registry.register(Box::new(h.clone())));
                h
            },
            from_redis: Mutex::new(Vec::new()),
            node_id: node_id.to_string(),
            per_peer,
            redis_restarts: {
                let c = must(IntCounter::new(
                    "redis_restarts_total",
                    "Restarts of this node's Redis after a crash",
                ));
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
            scrape_up,
            bytes: counter_vec(
                "file_bytes_total",
                "File bytes uploaded and downloaded through this node",
                &["direction"],
            ),
            chunk_ops: counter_vec(
                "chunk_operations_total",
                "Chunk writes and reads made by this node's file API",
                &["op"],
            ),
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

    /// Keeps the families of an `INFO` answer of this node's Redis (or none: unreadable).
    pub fn observe_redis_info(&self, info: Option<&str>) {
        self.scrape_up.set(f64::from(u8::from(info.is_some())));
        let families = info.map_or_else(Families::default, |i| {
            module_metrics::from_info(i, self.per_peer)
        });
        *self.from_redis.lock().unwrap_or_else(|p| p.into_inner()) = families.finish(&self.node_id);
    }

    /// Shows the Raft driver's status and the length of its log; counts leader changes.
    pub fn observe_raft(&self, st: &RaftStatus, log_entries: u64) {
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.raft_term.set(int(st.term));
        self.raft_commit_index.set(int(st.commit_index));
        self.raft_applied_index.set(int(st.applied));
        self.raft_log_entries.set(int(log_entries));
        self.raft_is_leader.set(i64::from(st.role == "leader"));
        self.raft_has_leader.set(i64::from(st.leader.is_some()));
        let mut last = self.last_leader.lock().unwrap_or_else(|p| p.into_inner());
        if *last != st.leader {
            if st.leader.is_some() {
                self.raft_leader_changes.inc();
            }
            last.clone_from(&st.leader);
        }
    }

    /// Shows how many key ranges there are and how many lack a write or read quorum.
    pub fn observe_ranges(&self, total: usize, without_write: usize, without_read: usize) {
        let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.key_ranges.set(int(total));
        self.ranges_without_quorum
            .with_label_values(&["write"])
            .set(int(without_write));
        self.ranges_without_quorum
            .with_label_values(&["read"])
            .set(int(without_read));
    }

    /// One HTTP request answered: its route template (never the raw path), method, status.
    pub fn http_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_duration
            .with_label_values(&[route, method, &status.to_string()])
            .observe(elapsed.as_secs_f64());
    }

    /// One upload or download completed: `bytes` in `elapsed`.
    pub fn transfer_done(&self, direction: &str, bytes: u64, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(1e-6);
        self.transfer_throughput
            .with_label_values(&[direction])
            .observe(bytes as f64 / secs);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut families: Vec<MetricFamily> = self
            .registry
            .gather()
            .into_iter()
            .filter(|f| self.per_peer || !PER_PEER.contains(&f.name()))
            .map(|f| match f.name() {
                "rcluster_process_cpu_seconds_total" => process_cpu(f),
                _ => f,
            })
            .collect();
        families.extend(
            self.from_redis
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            return format!("# encoding metrics failed: {e}\n");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The process's CPU time in seconds with its fraction: the process collector's counter holds
/// whole seconds only (so `rate()` over a minute read 0 on an idle node).
fn process_cpu(mut family: MetricFamily) -> MetricFamily {
    let Some(seconds) = cpu_seconds() else {
        return family;
    };
    for m in family.mut_metric() {
        let mut c = prometheus::proto::Counter::default();
        c.set_value(seconds);
        m.set_counter(c);
    }
    family
}

/// User and system CPU time of this process from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds_of(&stat, clock_ticks()?)
}

/// Fields 14 and 15 (utime, stime) of a `/proc/<pid>/stat` line, in seconds.
fn cpu_seconds_of(stat: &str, ticks_per_second: f64) -> Option<f64> {
    // The command name (field 2) may hold spaces: count from the closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second)
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_peer_messages_are_counted_by_reason_only() {
        let m = Metrics::new("n1", true);
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
        let m = Metrics::new("n1", true);
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
    fn redis_info_families_are_rendered_and_go_when_unreadable() {
        let m = Metrics::new("n1", true);
        m.observe_redis_info(Some("rcluster_kv_keys:7\r\nrcluster_cmd_rc_set:calls=5,errors=0\r\nrcluster_rebalance_keys_moved:30\r\nrcluster_hints_for_n2:count=3,bytes=120,oldest_ms=4000\r\n"));
        let text = m.render();
        for line in [
            r#"rcluster_module_held{what="kv_keys",node="n1"} 7"#,
            r#"rcluster_rc_commands_total{command="RC.SET",outcome="ok",node="n1"} 5"#,
            r#"rcluster_rebalance_keys_moved_total{node="n1"} 30"#,
            r#"rcluster_hint_backlog_oldest_seconds{target="n2",node="n1"} 4"#,
            r#"rcluster_module_info_up{node="n1"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // Families are sorted by name, the registry's among the module's.
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        // n2's hints delivered: its series goes away.
        m.observe_redis_info(Some("rcluster_kv_keys:7\r\n"));
        assert!(!m.render().contains(r#"target="n2""#));
        m.observe_redis_info(None);
        let text = m.render();
        assert!(!text.contains("rcluster_module_held"), "{text}");
        assert!(
            text.contains(r#"rcluster_module_info_up{node="n1"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn per_peer_series_can_be_left_out() {
        for per_peer in [true, false] {
            let m = Metrics::new("n1", per_peer);
            m.heartbeat_rtt.with_label_values(&["n2"]).observe(0.001);
            m.peer_phi.with_label_values(&["n2"]).set(0.5);
            m.peer_state.with_label_values(&["n2"]).set(0);
            m.observe_redis_info(Some("rcluster_rtt_n2:count=1,sum_us=50,b0=1\r\n"));
            let text = m.render();
            assert_eq!(
                text.contains("rcluster_heartbeat_rtt_seconds_bucket"),
                per_peer,
                "{text}"
            );
            assert_eq!(text.contains("rcluster_peer_phi"), per_peer, "{text}");
            assert_eq!(
                text.contains("rcluster_replica_rtt_seconds_bucket"),
                per_peer,
                "{text}"
            );
            // The failure detector's verdict per peer stays: alerts need it.
            assert!(
                text.contains(r#"rcluster_peer_state{peer="n2",node="n1"} 0"#),
                "{text}"
            );
        }
    }

    #[test]
    fn raft_status_and_leader_changes() {
        let m = Metrics::new("n1", true);
        let mut st = RaftStatus {
            role: "follower".into(),
            term: 3,
            leader: Some("n2".into()),
            commit_index: 9,
            applied: 8,
            voters: vec![],
        };
        m.observe_raft(&st, 4);
        m.observe_raft(&st, 4);
        st.leader = None;
        m.observe_raft(&st, 4);
        st.leader = Some("n1".into());
        st.role = "leader".into();
        m.observe_raft(&st, 5);
        let text = m.render();
        for line in [
            r#"rcluster_raft_term{node="n1"} 3"#,
            r#"rcluster_raft_commit_index{node="n1"} 9"#,
            r#"rcluster_raft_applied_index{node="n1"} 8"#,
            r#"rcluster_raft_log_entries{node="n1"} 5"#,
            r#"rcluster_raft_is_leader{node="n1"} 1"#,
            r#"rcluster_raft_has_leader{node="n1"} 1"#,
            r#"rcluster_raft_leader_changes_total{node="n1"} 2"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn process_cpu_keeps_its_fraction() {
        let stat = "4242 (rcluster node) S 1 2 3 4 5 6 7 8 9 10 123 45 0 0 20 0 9 0 100 1000 200";
        assert_eq!(cpu_seconds_of(stat, 100.0), Some(1.68));
        assert_eq!(cpu_seconds_of("garbage", 100.0), None);
        // Work until this process's CPU time is past a whole second by a clear fraction, which a
        // counter of whole seconds would lose.
        let mut x = 0u64;
        let before = loop {
            let t = cpu_seconds().unwrap();
            if (0.05..0.9).contains(&t.fract()) {
                break t;
            }
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        };
        let text = Metrics::new("n1", true).render();
        let after = cpu_seconds().unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("rcluster_process_cpu_seconds_total"))
            .expect("the process CPU counter");
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(before <= v && v <= after, "{before} <= {line} <= {after}");
    }

    #[test]
    fn http_durations_and_throughput_are_histograms() {
        let m = Metrics::new("n1", true);
        m.http_request("/api/kv/{key}", "GET", 200, Duration::from_millis(3));
        m.transfer_done("download", 8 << 20, Duration::from_secs(2));
        m.observe_ranges(768, 0, 2);
        let text = m.render();
        for line in [
            r#"rcluster_http_request_duration_seconds_bucket{method="GET",route="/api/kv/{key}",status="200",node="n1",le="0.005"} 1"#,
            r#"rcluster_file_transfer_throughput_bytes_per_second_bucket{direction="download",node="n1",le="4194304"} 1"#,
            r#"rcluster_file_transfer_throughput_bytes_per_second_bucket{direction="download",node="n1",le="1048576"} 0"#,
            r#"rcluster_key_ranges{node="n1"} 768"#,
            r#"rcluster_key_ranges_without_quorum{op="read",node="n1"} 2"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
