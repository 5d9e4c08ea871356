//! Injected faults, pure: the kinds and their parameters, the checks a request passes before
//! anything is injected, the per-node table of active faults with their deadlines, and the
//! decisions the node process and the module take from it: what happens to a message from one
//! node to another (dropped, or passed after a delay), a node's clock skew, whether a process
//! is crashed or paused. Time (`now`, ms on the holder's monotonic clock) and randomness (a
//! source of u64s) are passed in.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The `faults` section of the cluster config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsConfig {
    /// The longest time to live a fault may have.
    pub max_ttl_ms: u64,
    /// The time to live of a fault injected without one.
    pub default_ttl_ms: u64,
}

impl Default for FaultsConfig {
    fn default() -> Self {
        FaultsConfig {
            max_ttl_ms: 600_000,
            default_ttl_ms: 30_000,
        }
    }
}

/// Which process a crash or pause hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Process {
    #[default]
    Redis,
    Node,
    Both,
}

impl Process {
    pub fn redis(self) -> bool {
        matches!(self, Process::Redis | Process::Both)
    }
    pub fn node(self) -> bool {
        matches!(self, Process::Node | Process::Both)
    }
}

/// A fault's kind and parameters, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Spec {
    /// Killed now, started again when the fault ends.
    Crash {
        targets: Vec<String>,
        #[serde(default)]
        process: Process,
    },
    /// Stopped (SIGSTOP) now, continued when the fault ends.
    Pause {
        targets: Vec<String>,
        #[serde(default)]
        process: Process,
    },
    /// Links between different groups are cut both ways; members not named form one more group.
    Partition { groups: Vec<Vec<String>> },
    /// What a node of `from` sends to a node of `to` is lost.
    Cut { from: Vec<String>, to: Vec<String> },
    /// Delay added on links from or to the targets (`peers`, when given, limits the other ends).
    Latency {
        targets: Vec<String>,
        ms: u64,
        jitter_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peers: Option<Vec<String>>,
    },
    /// Messages lost at random on links from or to the targets.
    Loss {
        targets: Vec<String>,
        percent: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peers: Option<Vec<String>>,
    },
    /// The physical part of the targets' hybrid clocks shifted by `ms`.
    Skew { targets: Vec<String>, ms: i64 },
}

/// The kinds, in the order metrics list them.
pub const KINDS: [&str; 7] = [
    "crash",
    "pause",
    "partition",
    "cut",
    "latency",
    "loss",
    "skew",
];

impl Spec {
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::Crash { .. } => "crash",
            Spec::Pause { .. } => "pause",
            Spec::Partition { .. } => "partition",
            Spec::Cut { .. } => "cut",
            Spec::Latency { .. } => "latency",
            Spec::Loss { .. } => "loss",
            Spec::Skew { .. } => "skew",
        }
    }

    /// Whether this fault acts on links between nodes (partitions, cuts, latency, loss).
    pub fn on_links(&self) -> bool {
        matches!(
            self,
            Spec::Partition { .. } | Spec::Cut { .. } | Spec::Latency { .. } | Spec::Loss { .. }
        )
    }

    /// Whether the link `from` -> `to` (two different nodes) is one this fault acts on.
    fn touches(&self, from: &str, to: &str) -> bool {
        let named = |list: &[String], id: &str| list.iter().any(|n| n == id);
        let ends = |targets: &[String], peers: &Option<Vec<String>>| {
            let other_ok = |other: &str| peers.as_ref().is_none_or(|p| named(p, other));
            (named(targets, from) && other_ok(to)) || (named(targets, to) && other_ok(from))
        };
        match self {
            Spec::Partition { groups } => {
                let group = |id: &str| groups.iter().position(|g| named(g, id));
                group(from) != group(to)
            }
            Spec::Cut { from: f, to: t } => named(f, from) && named(t, to),
            Spec::Latency { targets, peers, .. } | Spec::Loss { targets, peers, .. } => {
                ends(targets, peers)
            }
            _ => false,
        }
    }

    /// Whether `node` holds an effect of this fault (a target, or an end of a link it acts on).
    pub fn concerns(&self, node: &str, members: &[String]) -> bool {
        match self {
            Spec::Crash { targets, .. }
            | Spec::Pause { targets, .. }
            | Spec::Skew { targets, .. } => targets.iter().any(|t| t == node),
            _ => members
                .iter()
                .filter(|m| m.as_str() != node)
                .any(|m| self.touches(node, m) || self.touches(m, node)),
        }
    }
}

/// A fault as the API takes it, before its checks: every parameter optional and signed, so a
/// wrong value gets an error that names it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub kind: String,
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    #[serde(default)]
    pub process: Option<String>,
    #[serde(default)]
    pub groups: Option<Vec<Vec<String>>>,
    #[serde(default)]
    pub from: Option<Vec<String>>,
    #[serde(default)]
    pub to: Option<Vec<String>>,
    #[serde(default)]
    pub ms: Option<i64>,
    #[serde(default)]
    pub jitter_ms: Option<i64>,
    #[serde(default)]
    pub percent: Option<f64>,
    #[serde(default)]
    pub peers: Option<Vec<String>>,
}

/// A checked fault with its id and time to live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub id: String,
    #[serde(flatten)]
    pub spec: Spec,
    pub ttl_ms: u64,
}

/// A fault with the time it has left: what nodes send each other and push into their module,
/// and (with the nodes holding it) what the API lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    #[serde(flatten)]
    pub fault: Fault,
    pub expires_in_ms: u64,
}

/// Checks `input` against the members and the config: every node named is a member and named
/// once, values are in range. `Err` names the problem.
pub fn check(input: &Input, members: &[String], config: &FaultsConfig) -> Result<Spec, String> {
    let ttl = input.ttl_ms.unwrap_or(config.default_ttl_ms);
    if ttl == 0 {
        return Err("ttl_ms must be at least 1".into());
    }
    if ttl > config.max_ttl_ms {
        return Err(format!(
            "ttl_ms {ttl} is over the maximum of {} ms (faults.max_ttl_ms)",
            config.max_ttl_ms
        ));
    }
    let list = |name: &str, v: &Option<Vec<String>>| -> Result<Vec<String>, String> {
        let v = v
            .as_ref()
            .ok_or_else(|| format!("a {} fault needs '{name}'", input.kind))?;
        if v.is_empty() {
            return Err(format!("'{name}' names no node"));
        }
        nodes(name, v, members)?;
        Ok(v.clone())
    };
    let optional = |name: &str, v: &Option<Vec<String>>| match v {
        None => Ok(None),
        Some(_) => list(name, v).map(Some),
    };
    let process = || -> Result<Process, String> {
        match input.process.as_deref() {
            None | Some("redis") => Ok(Process::Redis),
            Some("node") => Ok(Process::Node),
            Some("both") => Ok(Process::Both),
            Some(other) => Err(format!("process '{other}' is not one of redis, node, both")),
        }
    };
    let non_negative = |name: &str, v: Option<i64>| -> Result<u64, String> {
        let v = v.unwrap_or(0);
        u64::try_from(v).map_err(|_| format!("'{name}' must not be negative (got {v})"))
    };
    let spec = match input.kind.as_str() {
        "crash" => Spec::Crash {
            targets: list("targets", &input.targets)?,
            process: process()?,
        },
        "pause" => Spec::Pause {
            targets: list("targets", &input.targets)?,
            process: process()?,
        },
        "partition" => {
            let groups = input
                .groups
                .as_ref()
                .ok_or("a partition fault needs 'groups'")?;
            if groups.is_empty() || groups.iter().any(Vec::is_empty) {
                return Err("'groups' must be non-empty lists of nodes".into());
            }
            let all: Vec<String> = groups.iter().flatten().cloned().collect();
            nodes("groups", &all, members)?;
            let named: BTreeSet<&String> = all.iter().collect();
            if groups.len() == 1 && named.len() == members.len() {
                return Err("a partition needs at least two groups".into());
            }
            Spec::Partition {
                groups: groups.clone(),
            }
        }
        "cut" => {
            let from = list("from", &input.from)?;
            let to = list("to", &input.to)?;
            if let Some(both) = from.iter().find(|f| to.contains(f)) {
                return Err(format!("node '{both}' is named in both 'from' and 'to'"));
            }
            Spec::Cut { from, to }
        }
        "latency" => {
            let ms = non_negative("ms", input.ms)?;
            let jitter_ms = non_negative("jitter_ms", input.jitter_ms)?;
            if ms == 0 && jitter_ms == 0 {
                return Err("a latency fault needs 'ms' or 'jitter_ms' above 0".into());
            }
            if ms > MAX_LATENCY_MS || jitter_ms > MAX_LATENCY_MS {
                return Err(format!("latency over {MAX_LATENCY_MS} ms is not supported"));
            }
            Spec::Latency {
                targets: list("targets", &input.targets)?,
                ms,
                jitter_ms,
                peers: optional("peers", &input.peers)?,
            }
        }
        "loss" => {
            let percent = input.percent.ok_or("a loss fault needs 'percent'")?;
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(format!(
                    "'percent' must be over 0 and at most 100 (got {percent})"
                ));
            }
            Spec::Loss {
                targets: list("targets", &input.targets)?,
                percent,
                peers: optional("peers", &input.peers)?,
            }
        }
        "skew" => {
            let ms = input.ms.ok_or("a skew fault needs 'ms'")?;
            if ms == 0 || ms.unsigned_abs() > MAX_SKEW_MS {
                return Err(format!(
                    "'ms' must be non-zero and at most {MAX_SKEW_MS} either way (got {ms})"
                ));
            }
            Spec::Skew {
                targets: list("targets", &input.targets)?,
                ms,
            }
        }
        other => {
            return Err(format!(
                "unknown fault kind '{other}'; one of {}",
                KINDS.join(", ")
            ))
        }
    };
    let allowed: &[&str] = match &spec {
        Spec::Crash { .. } | Spec::Pause { .. } => &["targets", "process"],
        Spec::Partition { .. } => &["groups"],
        Spec::Cut { .. } => &["from", "to"],
        Spec::Latency { .. } => &["targets", "ms", "jitter_ms", "peers"],
        Spec::Loss { .. } => &["targets", "percent", "peers"],
        Spec::Skew { .. } => &["targets", "ms"],
    };
    let given = [
        ("targets", input.targets.is_some()),
        ("process", input.process.is_some()),
        ("groups", input.groups.is_some()),
        ("from", input.from.is_some()),
        ("to", input.to.is_some()),
        ("ms", input.ms.is_some()),
        ("jitter_ms", input.jitter_ms.is_some()),
        ("percent", input.percent.is_some()),
        ("peers", input.peers.is_some()),
    ];
    if let Some((name, _)) = given.iter().find(|(n, g)| *g && !allowed.contains(n)) {
        return Err(format!("a {} fault takes no '{name}'", spec.kind()));
    }
    Ok(spec)
}

/// Longest latency and skew a fault may add.
pub const MAX_LATENCY_MS: u64 = 60_000;
pub const MAX_SKEW_MS: u64 = 86_400_000;

/// Every id in `list` is a member and appears once.
fn nodes(name: &str, list: &[String], members: &[String]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for id in list {
        if !members.contains(id) {
            return Err(format!(
                "unknown node '{id}' in '{name}'; members: {}",
                members.join(", ")
            ));
        }
        if !seen.insert(id) {
            return Err(format!("node '{id}' is named twice in '{name}'"));
        }
    }
    Ok(())
}

/// What happens to one message on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Delivered after `delay_ms` (0: at once).
    Pass { delay_ms: u64 },
    /// Lost (cut, partitioned, or lost at random).
    Drop,
}

/// A fault held by a node, with its deadline on that node's clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Active {
    pub fault: Fault,
    pub deadline_ms: u64,
}

impl Active {
    pub fn remaining_ms(&self, now: u64) -> u64 {
        self.deadline_ms.saturating_sub(now)
    }
}

/// The faults one node holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    active: Vec<Active>,
}

impl Table {
    /// Adds (or replaces, by id) a fault ending `expires_in_ms` after `now`; true when new.
    pub fn insert(&mut self, fault: Fault, expires_in_ms: u64, now: u64) -> bool {
        let deadline_ms = now.saturating_add(expires_in_ms.min(fault.ttl_ms));
        let new = self.remove(&fault.id).is_none();
        self.active.push(Active { fault, deadline_ms });
        new
    }

    pub fn remove(&mut self, id: &str) -> Option<Fault> {
        let i = self.active.iter().position(|a| a.fault.id == id)?;
        Some(self.active.remove(i).fault)
    }

    pub fn clear(&mut self) -> Vec<Fault> {
        self.active.drain(..).map(|a| a.fault).collect()
    }

    /// Removes and returns the faults whose deadline passed.
    pub fn expire(&mut self, now: u64) -> Vec<Fault> {
        let (gone, kept) = self
            .active
            .drain(..)
            .partition(|a: &Active| a.deadline_ms <= now);
        self.active = kept;
        gone.into_iter().map(|a| a.fault).collect()
    }

    /// The earliest deadline, if any fault is held.
    pub fn next_deadline(&self) -> Option<u64> {
        self.active.iter().map(|a| a.deadline_ms).min()
    }

    /// The faults still active at `now`.
    pub fn live(&self, now: u64) -> impl Iterator<Item = &Active> {
        self.active.iter().filter(move |a| a.deadline_ms > now)
    }

    pub fn get(&self, id: &str) -> Option<&Active> {
        self.active.iter().find(|a| a.fault.id == id)
    }

    /// The faults active at `now`, each with the time it has left.
    pub fn held(&self, now: u64) -> Vec<Held> {
        self.live(now)
            .map(|a| Held {
                fault: a.fault.clone(),
                expires_in_ms: a.remaining_ms(now),
            })
            .collect()
    }

    /// Replaces the whole table with `held` (as another holder sent it), deadlines from `now`.
    pub fn replace(&mut self, held: Vec<Held>, now: u64) {
        self.active.clear();
        for h in held {
            self.insert(h.fault, h.expires_in_ms, now);
        }
    }

    /// Active faults per kind, in [`KINDS`] order.
    pub fn count_by_kind(&self, now: u64) -> [(&'static str, usize); 7] {
        KINDS.map(|k| {
            (
                k,
                self.live(now).filter(|a| a.fault.spec.kind() == k).count(),
            )
        })
    }

    /// What happens to one message `from` -> `to`. `random` gives uniform u64s (loss, jitter).
    pub fn link(&self, from: &str, to: &str, now: u64, random: &mut dyn FnMut() -> u64) -> Link {
        if from == to {
            return Link::Pass { delay_ms: 0 };
        }
        let mut delay_ms = 0u64;
        for a in self.live(now).filter(|a| a.fault.spec.touches(from, to)) {
            match &a.fault.spec {
                Spec::Partition { .. } | Spec::Cut { .. } => return Link::Drop,
                Spec::Loss { percent, .. } => {
                    let draw = (random() % 1_000_000) as f64 / 10_000.0;
                    if draw < *percent {
                        return Link::Drop;
                    }
                }
                Spec::Latency { ms, jitter_ms, .. } => {
                    let spread = jitter_ms.saturating_mul(2).saturating_add(1);
                    let offset = random() % spread;
                    let d = (ms + offset).saturating_sub(*jitter_ms);
                    delay_ms = delay_ms.saturating_add(d);
                }
                _ => {}
            }
        }
        Link::Pass { delay_ms }
    }

    /// A request from `me` to `peer` and its answer: lost when either way is, delayed by both.
    pub fn round_trip(
        &self,
        me: &str,
        peer: &str,
        now: u64,
        random: &mut dyn FnMut() -> u64,
    ) -> Link {
        match (
            self.link(me, peer, now, random),
            self.link(peer, me, now, random),
        ) {
            (Link::Pass { delay_ms: a }, Link::Pass { delay_ms: b }) => Link::Pass {
                delay_ms: a.saturating_add(b),
            },
            _ => Link::Drop,
        }
    }

    /// Whether any active fault acts on links between nodes.
    pub fn any_on_links(&self, now: u64) -> bool {
        self.live(now).any(|a| a.fault.spec.on_links())
    }

    /// The shift of `node`'s clock (the sum of the skews on it).
    pub fn skew_ms(&self, node: &str, now: u64) -> i64 {
        self.live(now)
            .filter_map(|a| match &a.fault.spec {
                Spec::Skew { targets, ms } if targets.iter().any(|t| t == node) => Some(*ms),
                _ => None,
            })
            .fold(0i64, i64::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<String> {
        ["n1", "n2", "n3", "n4", "n5"].map(String::from).to_vec()
    }

    fn ids(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| s.to_string()).collect())
    }

    fn input(kind: &str) -> Input {
        Input {
            kind: kind.into(),
            ..Input::default()
        }
    }

    fn fault(id: &str, spec: Spec) -> Fault {
        Fault {
            id: id.into(),
            spec,
            ttl_ms: 1_000,
        }
    }

    fn no_random() -> impl FnMut() -> u64 {
        || 0
    }

    #[test]
    fn bad_input_names_the_problem() {
        let cfg = FaultsConfig::default();
        let err = |i: &Input| check(i, &members(), &cfg).unwrap_err();
        let mut p = input("partition");
        p.groups = Some(vec![ids(&["n1", "n2"]).unwrap(), ids(&["n2"]).unwrap()]);
        assert_eq!(err(&p), "node 'n2' is named twice in 'groups'");
        p.groups = Some(vec![ids(&["n1", "n9"]).unwrap()]);
        assert!(err(&p).starts_with("unknown node 'n9' in 'groups'"));
        let mut l = input("latency");
        l.targets = ids(&["n2"]);
        l.ms = Some(-5);
        assert_eq!(err(&l), "'ms' must not be negative (got -5)");
        let mut loss = input("loss");
        loss.targets = ids(&["n2"]);
        loss.percent = Some(101.0);
        assert_eq!(
            err(&loss),
            "'percent' must be over 0 and at most 100 (got 101)"
        );
        let mut ttl = l.clone();
        ttl.ms = Some(10);
        ttl.ttl_ms = Some(cfg.max_ttl_ms + 1);
        assert!(err(&ttl).contains("over the maximum"), "{}", err(&ttl));
        assert!(err(&input("flood")).starts_with("unknown fault kind 'flood'"));
        let mut extra = input("skew");
        extra.targets = ids(&["n3"]);
        extra.ms = Some(-5000);
        extra.percent = Some(3.0);
        assert_eq!(err(&extra), "a skew fault takes no 'percent'");
        let mut crash = input("crash");
        crash.targets = ids(&["n1"]);
        crash.process = Some("kernel".into());
        assert!(err(&crash).contains("'kernel'"));
        assert_eq!(err(&input("crash")), "a crash fault needs 'targets'");
    }

    #[test]
    fn good_input_is_checked_into_a_spec() {
        let cfg = FaultsConfig::default();
        let mut s = input("skew");
        s.targets = ids(&["n3"]);
        s.ms = Some(-5000);
        let spec = check(&s, &members(), &cfg).unwrap();
        assert_eq!(
            spec,
            Spec::Skew {
                targets: vec!["n3".into()],
                ms: -5000
            }
        );
        let mut c = input("crash");
        c.targets = ids(&["n2"]);
        assert_eq!(
            check(&c, &members(), &cfg).unwrap(),
            Spec::Crash {
                targets: vec!["n2".into()],
                process: Process::Redis
            }
        );
    }

    #[test]
    fn the_wire_form_is_flat_with_its_kind() {
        let f = fault(
            "f-1",
            Spec::Latency {
                targets: vec!["n2".into()],
                ms: 200,
                jitter_ms: 50,
                peers: None,
            },
        );
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id":"f-1","kind":"latency","targets":["n2"],"ms":200,"jitter_ms":50,"ttl_ms":1000})
        );
        assert_eq!(serde_json::from_value::<Fault>(json).unwrap(), f);
    }

    #[test]
    fn a_partition_cuts_links_between_groups_both_ways() {
        let mut t = Table::default();
        let spec = Spec::Partition {
            groups: vec![vec!["n1".into(), "n2".into()]],
        };
        assert!(spec.concerns("n4", &members()));
        t.insert(fault("p", spec), 1_000, 0);
        let mut r = no_random();
        assert_eq!(t.link("n1", "n3", 10, &mut r), Link::Drop);
        assert_eq!(t.link("n3", "n1", 10, &mut r), Link::Drop);
        assert_eq!(t.link("n1", "n2", 10, &mut r), Link::Pass { delay_ms: 0 });
        // The members not named form one group.
        assert_eq!(t.link("n3", "n5", 10, &mut r), Link::Pass { delay_ms: 0 });
        // Ended at its deadline.
        assert_eq!(
            t.link("n1", "n3", 1_000, &mut r),
            Link::Pass { delay_ms: 0 }
        );
        assert_eq!(t.expire(1_000).len(), 1);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn a_cut_is_one_way_and_a_round_trip_needs_both() {
        let mut t = Table::default();
        t.insert(
            fault(
                "c",
                Spec::Cut {
                    from: vec!["n1".into()],
                    to: vec!["n2".into()],
                },
            ),
            1_000,
            0,
        );
        let mut r = no_random();
        assert_eq!(t.link("n1", "n2", 0, &mut r), Link::Drop);
        assert_eq!(t.link("n2", "n1", 0, &mut r), Link::Pass { delay_ms: 0 });
        assert_eq!(t.round_trip("n2", "n1", 0, &mut r), Link::Drop);
        assert!(t.any_on_links(0));
        assert!(!t.any_on_links(1_000));
        let cut = &t.get("c").unwrap().fault.spec;
        assert!(cut.concerns("n2", &members()) && !cut.concerns("n3", &members()));
    }

    #[test]
    fn latency_adds_up_with_jitter_within_bounds_and_loss_draws() {
        let mut t = Table::default();
        t.insert(
            fault(
                "l",
                Spec::Latency {
                    targets: vec!["n2".into()],
                    ms: 200,
                    jitter_ms: 50,
                    peers: Some(vec!["n1".into()]),
                },
            ),
            1_000,
            0,
        );
        let mut seq = 0u64;
        let mut r = || {
            seq += 37;
            seq
        };
        for _ in 0..200 {
            match t.link("n1", "n2", 0, &mut r) {
                Link::Pass { delay_ms } => assert!((150..=250).contains(&delay_ms)),
                Link::Drop => panic!("latency never drops"),
            }
        }
        // peers limits the other end.
        assert_eq!(t.link("n3", "n2", 0, &mut r), Link::Pass { delay_ms: 0 });
        let mut zero = no_random();
        assert_eq!(
            t.round_trip("n1", "n2", 0, &mut zero),
            Link::Pass { delay_ms: 300 }
        );
        t.insert(
            fault(
                "x",
                Spec::Loss {
                    targets: vec!["n3".into()],
                    percent: 20.0,
                    peers: None,
                },
            ),
            1_000,
            0,
        );
        let mut state = 1u64;
        let mut lcg = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 11
        };
        let lost = (0..10_000)
            .filter(|_| t.link("n3", "n1", 0, &mut lcg) == Link::Drop)
            .count();
        assert!((1_700..2_300).contains(&lost), "{lost}");
    }

    #[test]
    fn skew_sums_per_node_and_counts_per_kind() {
        let mut t = Table::default();
        t.insert(
            fault(
                "s",
                Spec::Skew {
                    targets: vec!["n3".into()],
                    ms: -5000,
                },
            ),
            500,
            0,
        );
        assert_eq!(t.skew_ms("n3", 10), -5000);
        assert_eq!(t.skew_ms("n1", 10), 0);
        assert_eq!(t.skew_ms("n3", 500), 0);
        assert_eq!(t.count_by_kind(10)[6], ("skew", 1));
        assert!(t.remove("s").is_some());
        assert!(t.remove("s").is_none());
    }

    #[test]
    fn an_insert_never_outlives_the_ttl_and_replaces_by_id() {
        let mut t = Table::default();
        assert!(t.insert(
            fault(
                "a",
                Spec::Skew {
                    targets: vec![],
                    ms: 1
                }
            ),
            99_999,
            0
        ));
        assert_eq!(t.get("a").unwrap().deadline_ms, 1_000);
        assert!(!t.insert(
            fault(
                "a",
                Spec::Skew {
                    targets: vec![],
                    ms: 1
                }
            ),
            10,
            5
        ));
        assert_eq!(t.get("a").unwrap().remaining_ms(5), 10);
        assert_eq!(t.clear().len(), 1);
    }
}
