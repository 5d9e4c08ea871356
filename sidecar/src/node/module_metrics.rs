//! The metric families read from the node's Redis at every scrape: its `INFO rcluster` section
//! (one family per meaning: commands by outcome, request durations and round trips per peer as
//! real histograms, NOQUORUM answers by reason, repairs, hints, redistribution) and its `memory`,
//! `cpu`, `clients` and `persistence` sections (resources). Totals are exported as the module
//! counts them (since its Redis started): Prometheus's `rate()` takes a restart's reset.

use std::collections::BTreeMap;

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use rcluster_domain::histogram::Snapshot;

/// The `INFO` sections a scrape asks for.
pub const INFO_SECTIONS: [&str; 5] = ["rcluster", "memory", "cpu", "clients", "persistence"];

/// Families by name (without the `rcluster_` prefix), built one sample at a time.
#[derive(Default)]
pub struct Families {
    map: BTreeMap<String, MetricFamily>,
}

fn pair(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

impl Families {
    fn push(
        &mut self,
        name: &str,
        help: &str,
        ty: MetricType,
        labels: &[(&str, &str)],
    ) -> &mut Metric {
        let family = self.map.entry(name.to_string()).or_insert_with(|| {
            let mut f = MetricFamily::default();
            f.set_name(name.to_string());
            f.set_help(help.to_string());
            f.set_field_type(ty);
            f
        });
        let mut m = Metric::default();
        m.set_label(labels.iter().map(|(n, v)| pair(n, v)).collect());
        family.mut_metric().push(m);
        family.mut_metric().last_mut().expect("just pushed")
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let mut c = Counter::default();
        c.set_value(value);
        self.push(name, help, MetricType::COUNTER, labels)
            .set_counter(c);
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let mut g = Gauge::default();
        g.set_value(value);
        self.push(name, help, MetricType::GAUGE, labels)
            .set_gauge(g);
    }

    /// A histogram of durations in seconds.
    pub fn histogram(&mut self, name: &str, help: &str, labels: &[(&str, &str)], s: &Snapshot) {
        let mut h = Histogram::default();
        h.set_sample_count(s.count());
        h.set_sample_sum(s.sum_us as f64 / 1e6);
        h.set_bucket(
            s.cumulative()
                .into_iter()
                .filter(|(le, _)| le.is_finite())
                .map(|(le, n)| {
                    let mut b = Bucket::default();
                    b.set_upper_bound(le);
                    b.set_cumulative_count(n);
                    b
                })
                .collect(),
        );
        self.push(name, help, MetricType::HISTOGRAM, labels)
            .set_histogram(h);
    }

    /// The families named `rcluster_<name>`, each sample labelled with the node.
    pub fn finish(self, node: &str) -> Vec<MetricFamily> {
        self.map
            .into_values()
            .map(|mut f| {
                f.set_name(format!("rcluster_{}", f.name()));
                for m in f.mut_metric() {
                    let mut labels = m.take_label();
                    labels.push(pair("node", node));
                    m.set_label(labels);
                }
                f
            })
            .collect()
    }
}

/// `RC.REPLICA.PUT` from the INFO field's `rc_replica_put`.
fn command_name(field: &str) -> String {
    field.to_ascii_uppercase().replace('_', ".")
}

/// `a=1,b=2` as pairs of name and number (malformed pairs left out).
fn pairs(value: &str) -> impl Iterator<Item = (&str, f64)> {
    value.split(',').filter_map(|p| {
        let (k, v) = p.split_once('=')?;
        Some((k, v.parse().ok()?))
    })
}

/// Plain totals of `INFO rcluster`: field, family, help.
const TOTALS: [(&str, &str, &str); 15] = [
    ("read_repairs", "read_repairs_total", "Read repairs a replica acknowledged (a read found it stale and wrote it the newest version)"),
    ("stale_replicas_found", "stale_replicas_found_total", "Replicas a read found holding an older version or nothing (each is sent a repair)"),
    ("writes_reissued", "writes_reissued_total", "Client writes re-issued with a newer version because a replica held a newer one"),
    ("chunk_repairs", "chunk_repairs_total", "Damaged or missing chunk replicas rewritten from an intact copy"),
    ("anti_entropy_repairs", "anti_entropy_repairs_total", "Copies anti-entropy passes gave to owners that lacked them"),
    ("anti_entropy_passes", "anti_entropy_passes_total", "Anti-entropy passes run"),
    ("hints_stored", "hints_stored_total", "Hints stored here for a node that missed a write"),
    ("hints_replayed", "hints_replayed_total", "Hints delivered to their node"),
    ("hints_refused", "hints_refused_total", "Hints refused: their node's backlog would have passed max_hint_bytes_per_node"),
    ("hints_dropped", "hints_dropped_total", "Hints dropped because their node is no longer a member"),
    ("tombstones_purged", "tombstones_purged_total", "Delete tombstones purged after their grace period"),
    ("checksum_failures", "module_checksum_failures_total", "Chunks whose bytes did not match their digest in the module"),
    ("panics_caught", "module_panics_caught_total", "Panics the module caught (the command answered INTERNAL, Redis kept serving)"),
    ("recount_steps", "module_recount_steps_total", "Steps of the recounts after a load or flush (each at most 1 ms of the main thread)"),
    ("rebalance_passes", "rebalance_passes_total", "Redistribution passes run"),
];

/// `rebalance_*` totals (counters) and progress (gauges): field, family, help, is a counter.
const REBALANCE: [(&str, &str, &str, bool); 5] = [
    (
        "rebalance_keys_moved",
        "rebalance_keys_moved_total",
        "Copies of registers and chunks this node's module gave new owners",
        true,
    ),
    (
        "rebalance_bytes_moved",
        "rebalance_bytes_moved_total",
        "Bytes of those copies",
        true,
    ),
    (
        "rebalance_keys_dropped",
        "rebalance_keys_dropped_total",
        "Registers and chunks dropped once their new owners had them",
        true,
    ),
    (
        "rebalance_percent",
        "rebalance_percent",
        "Share of the running redistribution pass done, 0 to 100 (100 when none runs)",
        false,
    ),
    (
        "rebalance_in_progress",
        "rebalance_in_progress",
        "1 while a redistribution pass runs on this node",
        false,
    ),
];

/// The families of one `INFO` answer (the sections of [`INFO_SECTIONS`]). `per_peer: false`
/// leaves out the round trips per peer.
pub fn from_info(info: &str, per_peer: bool) -> Families {
    let mut f = Families::default();
    let mut redis_cpu = 0.0;
    for line in info.lines() {
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        let number = value.parse::<f64>().ok();
        if let Some(field) = name.strip_prefix("rcluster_") {
            module_field(&mut f, field, value, number, per_peer);
            continue;
        }
        let gauge = |f: &mut Families, family: &str, help: &str| {
            if let Some(v) = number {
                f.gauge(family, help, &[], v);
            }
        };
        match name {
            "used_memory" => gauge(
                &mut f,
                "redis_used_memory_bytes",
                "Memory Redis's allocator holds (INFO memory used_memory)",
            ),
            "maxmemory" => gauge(
                &mut f,
                "redis_maxmemory_bytes",
                "Redis's memory limit (0: none); writes fail past it",
            ),
            "used_memory_rss" => gauge(
                &mut f,
                "redis_rss_bytes",
                "Resident memory of the Redis process",
            ),
            "connected_clients" => gauge(
                &mut f,
                "redis_connected_clients",
                "Client connections open to this node's Redis",
            ),
            "blocked_clients" => gauge(
                &mut f,
                "redis_blocked_clients",
                "Clients blocked on a command (quorum requests waiting for replicas)",
            ),
            "aof_enabled" => gauge(
                &mut f,
                "redis_aof_enabled",
                "1 when Redis appends every write to its AOF",
            ),
            "aof_rewrite_in_progress" => gauge(
                &mut f,
                "redis_aof_rewrite_in_progress",
                "1 while Redis rewrites its AOF",
            ),
            "aof_last_write_status" => f.gauge(
                "redis_aof_last_write_ok",
                "1 when Redis's last AOF write succeeded",
                &[],
                f64::from(value == "ok"),
            ),
            "aof_last_bgrewrite_status" => f.gauge(
                "redis_aof_last_rewrite_ok",
                "1 when Redis's last AOF rewrite succeeded",
                &[],
                f64::from(value == "ok"),
            ),
            "used_cpu_sys" | "used_cpu_user" => redis_cpu += number.unwrap_or(0.0),
            _ => {}
        }
    }
    if info.contains("used_cpu_user:") {
        f.counter(
            "redis_cpu_seconds_total",
            "CPU time (user and system) of this node's Redis since it started",
            &[],
            redis_cpu,
        );
    }
    f
}

/// One `rcluster_<field>:<value>` line of `INFO rcluster`.
fn module_field(f: &mut Families, field: &str, value: &str, number: Option<f64>, per_peer: bool) {
    if let Some((_, family, help)) = TOTALS.iter().find(|(n, _, _)| *n == field) {
        f.counter(family, help, &[], number.unwrap_or(0.0));
    } else if let Some((_, family, help, counter)) = REBALANCE.iter().find(|(n, ..)| *n == field) {
        let v = number.unwrap_or(0.0);
        if *counter {
            f.counter(family, help, &[], v);
        } else {
            f.gauge(family, help, &[], v);
        }
    } else if let Some(command) = field.strip_prefix("cmd_") {
        // cmd_rc_set:calls=5,errors=1
        let counts: BTreeMap<&str, f64> = pairs(value).collect();
        let (calls, errors) = (
            counts.get("calls").copied().unwrap_or(0.0),
            counts.get("errors").copied().unwrap_or(0.0),
        );
        let command = command_name(command);
        let help = "RC.* commands this node's Redis ran, by outcome: ok (accepted; a quorum command then answers ok or NOQUORUM) or error (refused)";
        f.counter(
            "rc_commands_total",
            help,
            &[("command", &command), ("outcome", "ok")],
            (calls - errors).max(0.0),
        );
        f.counter(
            "rc_commands_total",
            help,
            &[("command", &command), ("outcome", "error")],
            errors,
        );
    } else if let Some(rest) = field.strip_prefix("duration_") {
        // duration_rc_set_ok:count=..,sum_us=..,b<i>=..
        let (Some((command, outcome)), Some(s)) = (rest.rsplit_once('_'), Snapshot::parse(value))
        else {
            return;
        };
        f.histogram(
            "rc_request_duration_seconds",
            "Time from an RC.* command's arrival to its answer, by command and outcome (ok, error, noquorum)",
            &[("command", &command_name(command)), ("outcome", outcome)],
            &s,
        );
    } else if let Some(peer) = field.strip_prefix("rtt_") {
        if let (true, Some(s)) = (per_peer, Snapshot::parse(value)) {
            f.histogram("replica_rtt_seconds", "Round trip of this node's module's calls to each member's Redis (replica writes and reads, hints, repairs)", &[("peer", peer)], &s);
        }
    } else if let Some(target) = field.strip_prefix("hints_for_") {
        // hints_for_n2:count=3,bytes=120,oldest_ms=4000
        for (what, v) in pairs(value) {
            let (family, help, v) = match what {
                "count" => (
                    "hint_backlog_hints",
                    "Hints this node holds for each target node",
                    v,
                ),
                "bytes" => (
                    "hint_backlog_bytes",
                    "Bytes of the hints this node holds for each target node",
                    v,
                ),
                "oldest_ms" => (
                    "hint_backlog_oldest_seconds",
                    "Age of the oldest hint this node holds for each target node",
                    v / 1000.0,
                ),
                _ => continue,
            };
            f.gauge(family, help, &[("target", target)], v);
        }
    } else {
        match field {
            "kv_keys" | "chunks" | "chunk_bytes" => {
                if let Some(v) = number {
                    f.gauge("module_held", "What this node's Redis holds (INFO rcluster): kv_keys, chunks, chunk_bytes", &[("what", field)], v);
                }
            }
            "topology_epoch" | "transition_open" | "recount_in_progress" => {
                if let Some(v) = number {
                    f.gauge("module_state", "This node's module (INFO rcluster): topology_epoch installed, transition_open (1 while the previous placement still counts), recount_in_progress", &[("what", field)], v);
                }
            }
            "noquorum_reasons" => {
                for (reason, v) in pairs(value) {
                    f.counter("noquorum_total", "NOQUORUM answers, by reason: timeout, unreachable, error_reply, too_few_replicas, damaged, deadline", &[("reason", reason)], v);
                }
            }
            "replica_failures" => {
                for (kind, v) in pairs(value) {
                    f.counter("replica_failures_total", "Calls to a replica that gave no useful answer, by kind: timeout, unreachable, error_reply", &[("kind", kind)], v);
                }
            }
            "fast_writes" | "fast_writes_handed_over" | "fast_reads" | "fast_reads_handed_over" => {
                let (op, result) = match field {
                    "fast_writes" => ("write", "started"),
                    "fast_writes_handed_over" => ("write", "handed_over"),
                    "fast_reads" => ("read", "started"),
                    _ => ("read", "handed_over"),
                };
                f.counter("fast_path_requests_total", "Quorum requests the main thread's fast path started, and those it handed to the runtime's path", &[("op", op), ("result", result)], number.unwrap_or(0.0));
            }
            "fast_connections" => {
                if let Some(v) = number {
                    f.gauge(
                        "fast_path_connections",
                        "Fast-path connections to peers open now",
                        &[],
                        v,
                    );
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: Families, node: &str) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&f.finish(node), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn one_family_per_meaning() {
        let info = "# rcluster\r\nrcluster_kv_keys:5\r\nrcluster_read_repairs:2\r\nrcluster_cmd_rc_replica_put:calls=5,errors=1\r\nrcluster_noquorum_reasons:timeout=3,unreachable=0\r\nrcluster_rebalance_keys_moved:30\r\nrcluster_rebalance_percent:50\r\nrcluster_hints_for_n2:count=3,bytes=120,oldest_ms=4000\r\n";
        let t = text(from_info(info, true), "n1");
        for line in [
            r#"rcluster_module_held{what="kv_keys",node="n1"} 5"#,
            r#"rcluster_read_repairs_total{node="n1"} 2"#,
            r#"rcluster_rc_commands_total{command="RC.REPLICA.PUT",outcome="ok",node="n1"} 4"#,
            r#"rcluster_rc_commands_total{command="RC.REPLICA.PUT",outcome="error",node="n1"} 1"#,
            r#"rcluster_noquorum_total{reason="timeout",node="n1"} 3"#,
            "# TYPE rcluster_rebalance_keys_moved_total counter",
            r#"rcluster_rebalance_keys_moved_total{node="n1"} 30"#,
            "# TYPE rcluster_rebalance_percent gauge",
            r#"rcluster_hint_backlog_hints{target="n2",node="n1"} 3"#,
            r#"rcluster_hint_backlog_bytes{target="n2",node="n1"} 120"#,
            r#"rcluster_hint_backlog_oldest_seconds{target="n2",node="n1"} 4"#,
        ] {
            assert!(t.contains(line), "{line} in {t}");
        }
        assert!(!t.contains("module_events"), "{t}");
    }

    #[test]
    fn durations_and_round_trips_are_real_histograms() {
        let info = "rcluster_duration_rc_set_ok:count=3,sum_us=2600,b3=2,b4=1\r\nrcluster_rtt_n2:count=1,sum_us=50,b0=1\r\nrcluster_duration_rc_get_noquorum:count=1,sum_us=2000000,b13=1\r\n";
        let t = text(from_info(info, true), "n1");
        for line in [
            "# TYPE rcluster_rc_request_duration_seconds histogram",
            r#"rcluster_rc_request_duration_seconds_bucket{command="RC.SET",outcome="ok",node="n1",le="0.0005"} 0"#,
            r#"rcluster_rc_request_duration_seconds_bucket{command="RC.SET",outcome="ok",node="n1",le="0.001"} 2"#,
            r#"rcluster_rc_request_duration_seconds_bucket{command="RC.SET",outcome="ok",node="n1",le="0.0025"} 3"#,
            r#"rcluster_rc_request_duration_seconds_bucket{command="RC.SET",outcome="ok",node="n1",le="+Inf"} 3"#,
            r#"rcluster_rc_request_duration_seconds_sum{command="RC.SET",outcome="ok",node="n1"} 0.0026"#,
            r#"rcluster_rc_request_duration_seconds_count{command="RC.GET",outcome="noquorum",node="n1"} 1"#,
            r#"rcluster_replica_rtt_seconds_count{peer="n2",node="n1"} 1"#,
        ] {
            assert!(t.contains(line), "{line} in {t}");
        }
        let t = text(from_info(info, false), "n1");
        assert!(!t.contains("replica_rtt"), "per-peer series off: {t}");
    }

    #[test]
    fn redis_resources() {
        let info = "# Memory\r\nused_memory:1000\r\nmaxmemory:268435456\r\n# CPU\r\nused_cpu_sys:0.25\r\nused_cpu_user:1.5\r\n# Clients\r\nconnected_clients:7\r\n# Persistence\r\naof_enabled:1\r\naof_last_write_status:ok\r\naof_last_bgrewrite_status:err\r\n";
        let t = text(from_info(info, true), "n1");
        for line in [
            r#"rcluster_redis_used_memory_bytes{node="n1"} 1000"#,
            r#"rcluster_redis_maxmemory_bytes{node="n1"} 268435456"#,
            r#"rcluster_redis_cpu_seconds_total{node="n1"} 1.75"#,
            r#"rcluster_redis_connected_clients{node="n1"} 7"#,
            r#"rcluster_redis_aof_enabled{node="n1"} 1"#,
            r#"rcluster_redis_aof_last_write_ok{node="n1"} 1"#,
            r#"rcluster_redis_aof_last_rewrite_ok{node="n1"} 0"#,
        ] {
            assert!(t.contains(line), "{line} in {t}");
        }
    }
}
