//! Judging a history: counts, acknowledged writes lost after healing, stale register reads,
//! replicas that did not converge and unavailability per fault window, all from the events
//! alone (so a history file can be judged again, by this code or another tool).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::history::{Event, Kind, Op, Workload};
use super::report::{Divergent, Lost, Report, Setup, Stale, Window};

/// Seconds from microseconds.
fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// An operation with its invocation and its completion.
struct Done<'a> {
    invoked: u64,
    end: &'a Event,
}

/// Pairs each completion with its client's invocation (a client has one operation in flight).
fn completed(events: &[Event]) -> Vec<Done<'_>> {
    let mut open: HashMap<u32, u64> = HashMap::new();
    let mut out = Vec::new();
    for e in events {
        match e.kind {
            Kind::Invoke => {
                open.insert(e.client, e.time);
            }
            _ => {
                if let Some(invoked) = open.remove(&e.client) {
                    out.push(Done { invoked, end: e });
                }
            }
        }
    }
    out
}

fn count(events: &[Event], report: &mut Report) {
    for e in events.iter().filter(|e| e.op.is_workload()) {
        let workload = e.workload.map_or("unknown", Workload::as_str);
        for c in [
            &mut report.operations,
            report.by_workload.entry(workload.to_string()).or_default(),
        ] {
            match e.kind {
                Kind::Invoke => c.attempted += 1,
                Kind::Ok => c.acknowledged += 1,
                Kind::Fail | Kind::Info => {
                    let reason = e.error.clone().unwrap_or_else(|| "unknown".to_string());
                    *c.failed.entry(reason).or_default() += 1;
                }
            }
        }
    }
}

fn number(v: Option<&String>) -> Option<u64> {
    v.and_then(|s| s.parse().ok())
}

/// Register reads: a read must return at least the newest value acknowledged (for its key)
/// before the read was invoked. Values of a key only grow (one client writes each key, in
/// order), so "older" is "smaller"; a write still in flight may or may not be seen.
fn stale_reads(done: &[Done<'_>]) -> Vec<Stale> {
    // Per key: (acknowledged at, value), in completion order.
    let mut acks: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for d in done {
        let e = d.end;
        if e.kind == Kind::Ok && e.op == Op::Write && e.workload == Some(Workload::Register) {
            if let (Some(k), Some(v)) = (e.key.as_deref(), number(e.value.as_ref())) {
                acks.entry(k).or_default().push((e.time, v));
            }
        }
    }
    let mut out = Vec::new();
    for d in done {
        let e = d.end;
        if e.kind != Kind::Ok || e.op != Op::Read || e.workload != Some(Workload::Register) {
            continue;
        }
        let Some(key) = e.key.as_deref() else {
            continue;
        };
        let needed = acks
            .get(key)
            .into_iter()
            .flatten()
            .filter(|(at, _)| *at < d.invoked)
            .map(|(_, v)| *v)
            .max();
        let Some(needed) = needed else {
            continue;
        };
        let got = number(e.value.as_ref());
        if got.is_none_or(|g| g < needed) {
            out.push(Stale {
                key: key.to_string(),
                client: e.client,
                node: e.node.clone().unwrap_or_default(),
                at_s: secs(d.invoked),
                got: e.value.clone(),
                expected_at_least: needed.to_string(),
            });
        }
    }
    out
}

/// What each acknowledged write left: per (workload, key) the value a later read must return
/// (registers: at least it).
fn acknowledged(done: &[Done<'_>]) -> BTreeMap<(Workload, String), String> {
    let mut out: BTreeMap<(Workload, String), String> = BTreeMap::new();
    for d in done {
        let e = d.end;
        if e.kind != Kind::Ok || !matches!(e.op, Op::Write | Op::Upload) {
            continue;
        }
        let (Some(w), Some(k), Some(v)) = (e.workload, e.key.clone(), e.value.clone()) else {
            continue;
        };
        let slot = out.entry((w, k)).or_insert_with(|| v.clone());
        if w == Workload::Register && number(Some(&v)) > number(Some(slot)) {
            *slot = v;
        }
    }
    out
}

/// Whether a read after healing returned what the acknowledged write requires.
fn holds(w: Workload, expected: &str, got: Option<&String>) -> bool {
    match w {
        Workload::Register => number(got) >= number(Some(&expected.to_string())),
        Workload::Set | Workload::Files => got.map(String::as_str) == Some(expected),
    }
}

/// Acknowledged writes that a read after healing did not return; and those no read could check.
fn lost(events: &[Event], done: &[Done<'_>]) -> (Vec<Lost>, Vec<String>) {
    let acked = acknowledged(done);
    let mut checked: BTreeSet<(Workload, String)> = BTreeSet::new();
    let mut lost: BTreeMap<(Workload, String), Lost> = BTreeMap::new();
    for e in events {
        let final_op = matches!(e.op, Op::FinalRead | Op::FinalDownload);
        // A file that is no more (404) is lost; other failures leave it unchecked.
        let gone = e.kind == Kind::Fail && e.error.as_deref() == Some("404");
        if !final_op || !(e.kind == Kind::Ok || gone) {
            continue;
        }
        let (Some(w), Some(k)) = (e.workload, e.key.clone()) else {
            continue;
        };
        let Some(expected) = acked.get(&(w, k.clone())) else {
            continue;
        };
        checked.insert((w, k.clone()));
        let got = if gone { None } else { e.value.as_ref() };
        if !holds(w, expected, got) && !lost.contains_key(&(w, k.clone())) {
            lost.insert(
                (w, k.clone()),
                Lost {
                    workload: w.as_str().to_string(),
                    key: k,
                    expected: expected.clone(),
                    got: got.cloned(),
                    node: e.node.clone().unwrap_or_default(),
                },
            );
        }
    }
    let unverified = acked
        .keys()
        .filter(|k| !checked.contains(*k))
        .map(|(w, k)| format!("{} {k}", w.as_str()))
        .collect();
    (lost.into_values().collect(), unverified)
}

/// Keys whose replicas, read one by one after healing, hold different versions.
fn not_converged(events: &[Event]) -> Vec<Divergent> {
    let mut keys: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.op == Op::ReplicaRead) {
        let (Some(key), Some(node)) = (e.key.as_deref(), e.node.clone()) else {
            continue;
        };
        let held = match e.kind {
            Kind::Ok => e.version.clone().unwrap_or_else(|| "none".to_string()),
            _ => format!("error: {}", e.error.as_deref().unwrap_or("unknown")),
        };
        keys.entry(key).or_default().insert(node, held);
    }
    keys.into_iter()
        .filter(|(_, replicas)| replicas.values().collect::<BTreeSet<_>>().len() > 1)
        .map(|(key, replicas)| Divergent {
            key: key.to_string(),
            replicas,
        })
        .collect()
}

/// Each fault's window, and the seconds of it in which no workload operation succeeded.
fn unavailability(events: &[Event]) -> Vec<Window> {
    let last = events.iter().map(|e| e.time).max().unwrap_or(0);
    let heal = events
        .iter()
        .find(|e| e.op == Op::Heal)
        .map_or(last, |e| e.time);
    let successes: Vec<u64> = events
        .iter()
        .filter(|e| e.kind == Kind::Ok && e.op.is_workload())
        .map(|e| e.time)
        .collect();
    let mut out = Vec::new();
    for start in events
        .iter()
        .filter(|e| e.op == Op::FaultStart && e.kind == Kind::Info)
    {
        let Some(id) = start.key.clone() else {
            continue;
        };
        let end = events
            .iter()
            .find(|e| e.op == Op::FaultEnd && e.key.as_deref() == Some(&id))
            .map_or(heal, |e| e.time)
            .max(start.time);
        let kind = start
            .fault
            .as_ref()
            .and_then(|f| f.get("kind"))
            .and_then(|k| k.as_str())
            .unwrap_or("unknown")
            .to_string();
        let seconds = (end - start.time).div_ceil(1_000_000);
        let without = (0..seconds)
            .filter(|i| {
                let from = start.time + i * 1_000_000;
                let to = (from + 1_000_000).min(end);
                !successes.iter().any(|t| (from..to).contains(t))
            })
            .count() as u64;
        out.push(Window {
            id,
            kind,
            from_s: secs(start.time),
            to_s: secs(end),
            seconds_without_success: without,
        });
    }
    out
}

/// Judges a history (events in the order they happened).
pub fn judge(events: &[Event], setup: Setup) -> Report {
    let mut sorted: Vec<Event> = events.to_vec();
    sorted.sort_by_key(|e| e.time);
    let done = completed(&sorted);
    let mut report = Report {
        stale_judged: u16::from(setup.r) + u16::from(setup.w) > u16::from(setup.n),
        setup,
        ..Report::default()
    };
    count(&sorted, &mut report);
    for e in sorted.iter().filter(|e| e.op == Op::FaultStart) {
        match e.kind {
            Kind::Info => report.faults_injected += 1,
            _ => {
                let reason = e.error.clone().unwrap_or_else(|| "unknown".to_string());
                *report.faults_refused.entry(reason).or_default() += 1;
            }
        }
    }
    report.stale_reads = stale_reads(&done);
    (report.lost, report.unverified) = lost(&sorted, &done);
    report.not_converged = not_converged(&sorted);
    report.unavailability = unavailability(&sorted);
    report.passed =
        report.lost.is_empty() && (!report.stale_judged || report.stale_reads.is_empty());
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One hand-written event: type, time in ms, client, op, key, value.
    type Row<'a> = (Kind, u64, u32, Op, &'a str, Option<&'a str>);

    /// A history written by hand; the key's first letter names the workload (`s`, `f`, else
    /// register).
    fn history(rows: &[Row<'_>]) -> Vec<Event> {
        rows.iter()
            .map(|(kind, ms, client, op, key, value)| {
                let mut e = Event::new(*kind, ms * 1000, *client, *op);
                e.workload = Some(if key.starts_with('s') {
                    Workload::Set
                } else if key.starts_with('f') {
                    Workload::Files
                } else {
                    Workload::Register
                });
                e.node = Some("n1".into());
                e.key = Some(key.to_string());
                e.value = value.map(str::to_string);
                e
            })
            .collect()
    }

    fn setup() -> Setup {
        Setup {
            n: 3,
            w: 2,
            r: 2,
            ..Setup::default()
        }
    }

    use Kind::{Fail, Info, Invoke, Ok};
    use Op::{FinalRead, Read, Write};

    #[test]
    fn a_read_after_an_acknowledged_write_that_returns_an_older_value_is_stale() {
        let h = history(&[
            (Invoke, 0, 1, Write, "r1", Some("1")),
            (Ok, 10, 1, Write, "r1", Some("1")),
            (Invoke, 20, 1, Write, "r1", Some("2")),
            (Ok, 30, 1, Write, "r1", Some("2")),
            (Invoke, 40, 2, Read, "r1", None),
            (Ok, 50, 2, Read, "r1", Some("1")),
        ]);
        let report = judge(&h, setup());
        assert_eq!(report.stale_reads.len(), 1, "{report:?}");
        let s = &report.stale_reads[0];
        assert_eq!((s.key.as_str(), s.got.as_deref()), ("r1", Some("1")));
        assert_eq!(s.expected_at_least, "2");
        assert!(!report.passed);
        assert!(report.text().contains("stale reads: 1"));
        assert!(report.text().contains("verdict: FAILED"));
        // Reading nothing at all after an acknowledged write is stale too.
        let h = history(&[
            (Invoke, 0, 1, Write, "r1", Some("1")),
            (Ok, 10, 1, Write, "r1", Some("1")),
            (Invoke, 40, 2, Read, "r1", None),
            (Ok, 50, 2, Read, "r1", None),
        ]);
        assert_eq!(judge(&h, setup()).stale_reads.len(), 1);
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_return_either_value() {
        let h = history(&[
            (Invoke, 0, 1, Write, "r1", Some("1")),
            (Ok, 10, 1, Write, "r1", Some("1")),
            (Invoke, 20, 1, Write, "r1", Some("2")),
            (Invoke, 25, 2, Read, "r1", None),
            (Ok, 28, 2, Read, "r1", Some("1")),
            (Invoke, 29, 3, Read, "r1", None),
            (Ok, 29, 3, Read, "r1", Some("2")),
            (Ok, 30, 1, Write, "r1", Some("2")),
            // Invoked before the write's ack: still concurrent.
            (Invoke, 30, 2, Read, "r1", None),
            (Ok, 45, 2, Read, "r1", Some("2")),
            // A failed write's value may show up: it is newer, not stale.
            (Invoke, 50, 1, Write, "r1", Some("3")),
            (Fail, 55, 1, Write, "r1", Some("3")),
            (Invoke, 60, 3, Read, "r1", None),
            (Ok, 65, 3, Read, "r1", Some("3")),
        ]);
        let report = judge(&h, setup());
        assert!(report.stale_reads.is_empty(), "{:?}", report.stale_reads);
        assert!(report.passed);
        // Without R + W > N the same stale history is reported but does not fail the run.
        let stale = history(&[
            (Invoke, 0, 1, Write, "r1", Some("1")),
            (Ok, 10, 1, Write, "r1", Some("1")),
            (Invoke, 40, 2, Read, "r1", None),
            (Ok, 50, 2, Read, "r1", None),
        ]);
        let weak = judge(
            &stale,
            Setup {
                w: 1,
                r: 1,
                ..setup()
            },
        );
        assert!(!weak.stale_judged && weak.passed && weak.stale_reads.len() == 1);
    }

    #[test]
    fn an_acknowledged_write_missing_after_healing_is_lost_and_a_failed_one_is_not() {
        let h = history(&[
            (Invoke, 0, 1, Write, "s1", Some("a")),
            (Ok, 10, 1, Write, "s1", Some("a")),
            (Invoke, 20, 1, Write, "s2", Some("b")),
            (Info, 30, 1, Write, "s2", Some("b")),
            (Invoke, 40, 1, Write, "s3", Some("c")),
            (Ok, 50, 1, Write, "s3", Some("c")),
            (Invoke, 60, 2, Write, "r1", Some("4")),
            (Ok, 70, 2, Write, "r1", Some("4")),
            (Ok, 100, 0, FinalRead, "s1", Some("a")),
            (Ok, 101, 0, FinalRead, "s2", None),
            (Ok, 102, 0, FinalRead, "s3", None),
            (Ok, 103, 0, FinalRead, "r1", Some("3")),
        ]);
        let report = judge(&h, setup());
        let lost: Vec<(&str, Option<&str>)> = report
            .lost
            .iter()
            .map(|l| (l.key.as_str(), l.got.as_deref()))
            .collect();
        assert_eq!(lost, vec![("r1", Some("3")), ("s3", None)]);
        assert!(!report.passed);
        assert_eq!(report.operations.attempted, 4);
        assert_eq!(report.operations.acknowledged, 3);
        assert_eq!(report.operations.failed.get("unknown"), Some(&1));
        assert!(report.text().contains("acknowledged writes lost: 2"));
    }

    #[test]
    fn files_must_come_back_identical_and_unread_writes_are_unverified() {
        let mut h = history(&[
            (Invoke, 0, 4, Op::Upload, "f1", Some("aa")),
            (Ok, 10, 4, Op::Upload, "f1", Some("aa")),
            (Invoke, 20, 4, Op::Upload, "f2", Some("bb")),
            (Ok, 30, 4, Op::Upload, "f2", Some("bb")),
            (Invoke, 40, 4, Op::Upload, "f3", Some("cc")),
            (Ok, 50, 4, Op::Upload, "f3", Some("cc")),
            (Ok, 100, 0, Op::FinalDownload, "f1", Some("aa")),
            (Fail, 101, 0, Op::FinalDownload, "f2", None),
            (Fail, 102, 0, Op::FinalDownload, "f3", None),
        ]);
        h[7].error = Some("404".into());
        h[8].error = Some("timeout".into());
        let report = judge(&h, setup());
        assert_eq!(report.lost.len(), 1);
        assert_eq!(report.lost[0].key, "f2");
        assert_eq!(report.unverified, vec!["files f3".to_string()]);
    }

    #[test]
    fn replicas_that_disagree_are_not_converged() {
        let read = |key: &str, node: &str, version: Option<&str>, kind: Kind| {
            let mut e = Event::new(kind, 1, 0, Op::ReplicaRead);
            e.key = Some(key.into());
            e.node = Some(node.into());
            e.version = version.map(str::to_string);
            e
        };
        let h = vec![
            read("a", "n1", Some("5-n1"), Ok),
            read("a", "n2", Some("5-n1"), Ok),
            read("b", "n1", Some("5-n1"), Ok),
            read("b", "n2", None, Ok),
            read("c", "n1", None, Ok),
            read("c", "n2", None, Ok),
            read("d", "n1", Some("5-n1"), Ok),
            read("d", "n2", None, Fail),
        ];
        let report = judge(&h, setup());
        let keys: Vec<&str> = report
            .not_converged
            .iter()
            .map(|d| d.key.as_str())
            .collect();
        assert_eq!(keys, vec!["b", "d"]);
        assert_eq!(report.not_converged[0].replicas["n2"], "none");
        assert!(report.passed, "convergence alone does not fail the verdict");
    }

    #[test]
    fn unavailability_counts_the_seconds_of_a_fault_without_any_success() {
        let mut h = history(&[
            (Invoke, 0, 1, Write, "r1", Some("1")),
            (Ok, 500, 1, Write, "r1", Some("1")),
            (Invoke, 600, 1, Write, "r1", Some("2")),
            (Ok, 3_500, 1, Write, "r1", Some("2")),
        ]);
        let mut start = Event::new(Info, 1_000_000, 0, Op::FaultStart);
        start.key = Some("f-1".into());
        start.fault = Some(serde_json::json!({"id": "f-1", "kind": "partition"}));
        let mut end = Event::new(Info, 5_000_000, 0, Op::FaultEnd);
        end.key = Some("f-1".into());
        let mut refused = Event::new(Fail, 1_000_000, 0, Op::FaultStart);
        refused.error = Some("400".into());
        h.extend([start, end, refused]);
        let report = judge(&h, setup());
        assert_eq!(report.faults_injected, 1);
        assert_eq!(report.faults_refused.get("400"), Some(&1));
        let w = &report.unavailability[0];
        assert_eq!((w.id.as_str(), w.kind.as_str()), ("f-1", "partition"));
        // 1-2, 2-3 and 4-5 saw no success; 3-4 saw the ack at 3.5 s.
        assert_eq!(w.seconds_without_success, 3);
        assert_eq!((w.from_s, w.to_s), (1.0, 5.0));
    }
}
