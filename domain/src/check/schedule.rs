//! Fault schedules for the checker: the named ones (`partition-halves`, `kill-leader`,
//! `pause-one`, `skew`, `mixed`) and `random`, generated from a random source the caller seeds
//! (the same seed gives the same schedule), as steps the executor sends to the faults API.

use serde_json::{json, Value};

/// A schedule's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// No faults: the workload alone.
    None,
    PartitionHalves,
    KillLeader,
    PauseOne,
    Skew,
    Mixed,
    Random,
}

impl Schedule {
    pub const ALL: [Schedule; 7] = [
        Schedule::None,
        Schedule::PartitionHalves,
        Schedule::KillLeader,
        Schedule::PauseOne,
        Schedule::Skew,
        Schedule::Mixed,
        Schedule::Random,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::None => "none",
            Schedule::PartitionHalves => "partition-halves",
            Schedule::KillLeader => "kill-leader",
            Schedule::PauseOne => "pause-one",
            Schedule::Skew => "skew",
            Schedule::Mixed => "mixed",
            Schedule::Random => "random",
        }
    }

    /// The schedule of a name, or an error listing the names.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        Schedule::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Schedule::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown schedule '{text}' (one of: {})", names.join(", "))
            })
    }
}

/// Which node a fault hits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Node(String),
    /// The Raft leader when the fault is injected.
    Leader,
}

/// One fault, as the faults API takes it (without its time to live).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `process`: `redis`, `node` or `both`.
    Crash {
        targets: Vec<Target>,
        process: &'static str,
    },
    Pause {
        targets: Vec<Target>,
        process: &'static str,
    },
    Partition {
        groups: Vec<Vec<String>>,
    },
    Cut {
        from: Vec<String>,
        to: Vec<String>,
    },
    Latency {
        targets: Vec<String>,
        ms: u64,
        jitter_ms: u64,
    },
    Loss {
        targets: Vec<String>,
        percent: u8,
    },
    Skew {
        targets: Vec<String>,
        ms: i64,
    },
}

/// A fault and when: `at_ms` after the start, for `ttl_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub at_ms: u64,
    pub ttl_ms: u64,
    pub fault: Fault,
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::Pause { .. } => "pause",
            Fault::Partition { .. } => "partition",
            Fault::Cut { .. } => "cut",
            Fault::Latency { .. } => "latency",
            Fault::Loss { .. } => "loss",
            Fault::Skew { .. } => "skew",
        }
    }

    /// The nodes a crash or pause stops (the leader resolved to `leader`).
    pub fn stopped(&self, leader: Option<&str>) -> Vec<String> {
        match self {
            Fault::Crash { targets, .. } | Fault::Pause { targets, .. } => {
                resolve(targets, leader).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// The same fault, but a crash or pause of `node` stops only its Redis, never its node
    /// process (the process that runs the check must keep running).
    pub fn sparing(self, node: &str, leader: Option<&str>) -> Fault {
        let hits = self.stopped(leader).iter().any(|n| n == node);
        match self {
            Fault::Crash { targets, .. } if hits => Fault::Crash {
                targets,
                process: "redis",
            },
            Fault::Pause { targets, .. } if hits => Fault::Pause {
                targets,
                process: "redis",
            },
            other => other,
        }
    }

    /// The body of `POST /api/faults`; an error when it names the leader and none is known.
    pub fn body(&self, ttl_ms: u64, leader: Option<&str>) -> Result<Value, String> {
        let mut body = match self {
            Fault::Crash { targets, process } | Fault::Pause { targets, process } => {
                json!({"targets": resolve(targets, leader)?, "process": process})
            }
            Fault::Partition { groups } => json!({ "groups": groups }),
            Fault::Cut { from, to } => json!({"from": from, "to": to}),
            Fault::Latency {
                targets,
                ms,
                jitter_ms,
            } => json!({"targets": targets, "ms": ms, "jitter_ms": jitter_ms}),
            Fault::Loss { targets, percent } => json!({"targets": targets, "percent": percent}),
            Fault::Skew { targets, ms } => json!({"targets": targets, "ms": ms}),
        };
        body["kind"] = json!(self.kind());
        body["ttl_ms"] = json!(ttl_ms);
        Ok(body)
    }
}

fn resolve(targets: &[Target], leader: Option<&str>) -> Result<Vec<String>, String> {
    targets
        .iter()
        .map(|t| match t {
            Target::Node(n) => Ok(n.clone()),
            Target::Leader => leader
                .map(str::to_string)
                .ok_or_else(|| "no Raft leader is known".to_string()),
        })
        .collect()
}

/// A random source: `draw(n)` is a number in `0..n` (`n` > 0). The caller seeds it.
pub type Draw<'a> = &'a mut dyn FnMut(u64) -> u64;

fn between(draw: &mut dyn FnMut(u64) -> u64, lo: u64, hi: u64) -> u64 {
    if hi <= lo {
        lo
    } else {
        lo + draw(hi - lo + 1)
    }
}

fn pick(draw: &mut dyn FnMut(u64) -> u64, nodes: &[String]) -> String {
    nodes[draw(nodes.len() as u64) as usize].clone()
}

fn shuffled(draw: &mut dyn FnMut(u64) -> u64, nodes: &[String]) -> Vec<String> {
    let mut out = nodes.to_vec();
    for i in (1..out.len()).rev() {
        let j = draw(i as u64 + 1) as usize;
        out.swap(i, j);
    }
    out
}

/// The members split into two halves (the first the smaller), at random.
fn halves(draw: &mut dyn FnMut(u64) -> u64, nodes: &[String]) -> Fault {
    let all = shuffled(draw, nodes);
    let cut = all.len() / 2;
    Fault::Partition {
        groups: vec![all[..cut.max(1)].to_vec(), all[cut.max(1)..].to_vec()],
    }
}

fn one(draw: &mut dyn FnMut(u64) -> u64, kind: u64, nodes: &[String]) -> Fault {
    match kind {
        0 => halves(draw, nodes),
        1 => Fault::Crash {
            targets: vec![Target::Leader],
            process: "both",
        },
        2 => Fault::Pause {
            targets: vec![Target::Node(pick(draw, nodes))],
            process: "both",
        },
        3 => {
            let ms = between(draw, 2_000, 10_000) as i64;
            Fault::Skew {
                targets: vec![pick(draw, nodes)],
                ms: if draw(2) == 0 { ms } else { -ms },
            }
        }
        4 => Fault::Latency {
            targets: vec![pick(draw, nodes)],
            ms: between(draw, 50, 300),
            jitter_ms: between(draw, 0, 100),
        },
        5 => Fault::Loss {
            targets: vec![pick(draw, nodes)],
            percent: between(draw, 10, 40) as u8,
        },
        _ => {
            let all = shuffled(draw, nodes);
            Fault::Cut {
                from: vec![all[0].clone()],
                to: all[1..].to_vec(),
            }
        }
    }
}

/// The steps of `schedule` for a run of `seconds` over `nodes`: faults start after the first
/// tenth of the run (at most 1 s) and end before its last tenth, with a pause between them
/// (except in `random`, where they may overlap). A cluster of one node gets no partition.
pub fn generate(schedule: Schedule, nodes: &[String], seconds: u32, draw: Draw<'_>) -> Vec<Step> {
    let total = u64::from(seconds) * 1000;
    let margin = (total / 10).min(1_000);
    let end = total.saturating_sub(margin);
    let mut at = margin;
    let mut steps = Vec::new();
    if schedule == Schedule::None || nodes.is_empty() {
        return steps;
    }
    // A step lasts a quarter of the run at most (2 to 8 s in long runs).
    let longest = (total / 4).clamp(500, 8_000);
    let shortest = (longest / 4).max(300);
    while at + shortest <= end {
        let ttl = between(draw, shortest, longest).min(end - at);
        let kind = match schedule {
            Schedule::PartitionHalves => 0,
            Schedule::KillLeader => 1,
            Schedule::PauseOne => 2,
            Schedule::Skew => 3,
            Schedule::Mixed | Schedule::Random => draw(7),
            Schedule::None => unreachable!("returned above"),
        };
        let fault = if nodes.len() < 2 && matches!(kind, 0 | 6) {
            one(draw, 3, nodes)
        } else {
            one(draw, kind, nodes)
        };
        steps.push(Step {
            at_ms: at,
            ttl_ms: ttl,
            fault,
        });
        at += if schedule == Schedule::Random {
            between(draw, shortest / 2, ttl + shortest)
        } else {
            ttl + between(draw, shortest / 2, shortest)
        };
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded source for the tests (a linear congruential generator).
    fn source(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut state = seed;
        move |n| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % n
        }
    }

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn steps(s: Schedule, seed: u64, seconds: u32) -> Vec<Step> {
        generate(s, &nodes(3), seconds, &mut source(seed))
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        for s in Schedule::ALL {
            assert_eq!(steps(s, 7, 60), steps(s, 7, 60), "{}", s.as_str());
        }
        assert_ne!(
            steps(Schedule::Random, 7, 60),
            steps(Schedule::Random, 8, 60)
        );
        assert!(steps(Schedule::None, 7, 60).is_empty());
    }

    #[test]
    fn named_schedules_hold_their_kind_and_stay_inside_the_run() {
        let kinds = [
            (Schedule::PartitionHalves, "partition"),
            (Schedule::KillLeader, "crash"),
            (Schedule::PauseOne, "pause"),
            (Schedule::Skew, "skew"),
        ];
        for (s, kind) in kinds {
            for seconds in [3, 10, 60] {
                let all = steps(s, 3, seconds);
                assert!(!all.is_empty(), "{} {seconds}", s.as_str());
                let mut last_end = 0;
                for step in &all {
                    assert_eq!(step.fault.kind(), kind);
                    assert!(step.at_ms >= last_end, "named steps do not overlap");
                    last_end = step.at_ms + step.ttl_ms;
                    assert!(last_end <= u64::from(seconds) * 1000);
                    assert!(step.ttl_ms > 0);
                }
            }
        }
        let mixed: std::collections::BTreeSet<&str> = (0..5)
            .flat_map(|seed| steps(Schedule::Mixed, seed, 60))
            .map(|s| s.fault.kind())
            .collect();
        assert!(mixed.len() >= 5, "mixed uses many kinds: {mixed:?}");
    }

    #[test]
    fn partitions_split_every_member_into_two_disjoint_groups() {
        for seed in 0..20 {
            for step in steps(Schedule::PartitionHalves, seed, 30) {
                let Fault::Partition { groups } = &step.fault else {
                    panic!("not a partition");
                };
                let mut all: Vec<String> = groups.concat();
                all.sort();
                assert_eq!(all, nodes(3));
                assert_eq!(groups.len(), 2);
                assert!(groups.iter().all(|g| !g.is_empty()));
            }
        }
        // One node: nothing to split, so no partition.
        let lone = generate(Schedule::PartitionHalves, &nodes(1), 20, &mut source(1));
        assert!(lone.iter().all(|s| s.fault.kind() == "skew"));
    }

    #[test]
    fn bodies_follow_the_faults_api() {
        let crash = Fault::Crash {
            targets: vec![Target::Leader],
            process: "both",
        };
        assert_eq!(
            crash.body(3000, Some("n2")).unwrap(),
            json!({"kind": "crash", "targets": ["n2"], "process": "both", "ttl_ms": 3000})
        );
        assert!(crash.body(3000, None).is_err());
        let spared = crash.clone().sparing("n2", Some("n2"));
        assert_eq!(spared.body(1, Some("n2")).unwrap()["process"], "redis");
        assert_eq!(crash.clone().sparing("n1", Some("n2")), crash);
        let skew = Fault::Skew {
            targets: vec!["n3".into()],
            ms: -5000,
        };
        assert_eq!(
            skew.body(10, None).unwrap(),
            json!({"kind": "skew", "targets": ["n3"], "ms": -5000, "ttl_ms": 10})
        );
        let part = Fault::Partition {
            groups: vec![vec!["n1".into()], vec!["n2".into(), "n3".into()]],
        };
        assert_eq!(part.body(5, None).unwrap()["groups"][1][1], "n3");
        assert_eq!(Schedule::parse("mixed"), Ok(Schedule::Mixed));
        assert!(Schedule::parse("chaos")
            .unwrap_err()
            .contains("partition-halves"));
    }
}
