//! Deterministic cluster simulator: drives 3- or 5-node clusters (plus a spare node to add)
//! through a seeded faulty network (loss, delay, reordering, duplication, partitions), crashes
//! and restarts, client proposals, membership changes and snapshots, checking Raft's safety
//! properties after every step and liveness once the network heals.
//!
//! A crate of its own, outside the production library: it runs seeds on threads and catches
//! panics, which the pure `rcluster-raft` may not do, and only `rcluster-raft`'s own tests and
//! its `sim` example (`cargo run -p rcluster-raft --example sim`) use it, through a
//! dev-dependency. It drives nodes through `rcluster-raft`'s public API only.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rcluster_raft::config::Config;
use rcluster_raft::node::{ProposeError, RaftNode, Ready};
use rcluster_raft::rng::SplitMix64;
use rcluster_raft::storage::{PersistUpdate, Persisted};
use rcluster_raft::types::{Command, Entry, MembershipChange, Message, NodeId, Snapshot};

/// Steps per seed when none are given.
pub const DEFAULT_STEPS: u64 = 2000;
/// Ticks a healed cluster gets to elect a leader and commit a proposal on every member.
pub const LIVENESS_BOUND: u64 = 1500;
const TRACE_LINES: usize = 400;

/// How long to run and whether to keep a trace for debugging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOptions {
    /// Chaos steps (one tick of simulated time each) before the network heals.
    pub steps: u64,
    /// Keep the last events, returned with an error.
    pub trace: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            steps: DEFAULT_STEPS,
            trace: false,
        }
    }
}

/// A violated property (or a panic) in one seeded run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub seed: u64,
    pub steps: u64,
    /// Simulated tick at which the check failed.
    pub at: u64,
    pub what: String,
    /// The last events, when tracing was on.
    pub trace: Vec<String>,
}

impl SimError {
    /// The command that replays this run.
    pub fn reproduce(&self) -> String {
        reproduce_command(self.seed, self.steps)
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "raft simulation seed {} failed at tick {}: {}\nreproduce with: {}",
            self.seed,
            self.at,
            self.what,
            self.reproduce()
        )
    }
}

impl std::error::Error for SimError {}

/// The command that replays `seed` (add `--trace` to see the events before a failure).
pub fn reproduce_command(seed: u64, steps: u64) -> String {
    let mut cmd = format!("cargo run -p rcluster-raft --example sim -- --seed {seed}");
    if steps != DEFAULT_STEPS {
        cmd.push_str(&format!(" --steps {steps}"));
    }
    cmd
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    pub seed: u64,
    pub nodes: usize,
    pub leaders_elected: u64,
    pub committed: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    pub membership_changes: u64,
    /// Ticks the healed cluster needed to commit a proposal on every member.
    pub heal_ticks: u64,
}

/// Totals over many runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimSummary {
    pub seeds: u64,
    pub leaders_elected: u64,
    pub committed: u64,
    pub delivered: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub snapshots_installed: u64,
    pub membership_changes: u64,
    pub max_heal_ticks: u64,
}

impl SimSummary {
    /// Counts one run.
    fn add(&mut self, r: &SimReport) {
        self.merge(&SimSummary {
            seeds: 1,
            leaders_elected: r.leaders_elected,
            committed: r.committed,
            delivered: r.delivered,
            crashes: r.crashes,
            partitions: r.partitions,
            snapshots_installed: r.snapshots_installed,
            membership_changes: r.membership_changes,
            max_heal_ticks: r.heal_ticks,
        });
    }

    /// Adds another summary's totals (one thread's share) to these.
    fn merge(&mut self, other: &SimSummary) {
        self.seeds += other.seeds;
        self.leaders_elected += other.leaders_elected;
        self.committed += other.committed;
        self.delivered += other.delivered;
        self.crashes += other.crashes;
        self.partitions += other.partitions;
        self.snapshots_installed += other.snapshots_installed;
        self.membership_changes += other.membership_changes;
        self.max_heal_ticks = self.max_heal_ticks.max(other.max_heal_ticks);
    }
}

/// Runs one seed. Panics inside the nodes are caught and reported like violations.
pub fn run(seed: u64, opts: SimOptions) -> Result<SimReport, SimError> {
    let mut sim = Sim::new(seed, opts);
    let outcome = catch_unwind(AssertUnwindSafe(|| sim.run()));
    let what = match outcome {
        Ok(Ok(())) => return Ok(sim.report.clone()),
        Ok(Err(what)) => what,
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            format!("panic: {text}")
        }
    };
    Err(SimError {
        seed,
        steps: opts.steps,
        at: sim.now,
        what,
        trace: sim.trace.map(Vec::from).unwrap_or_default(),
    })
}

/// Runs seeds `first..first + count` on `threads` threads; stops at the first failure and
/// returns the failing run with the lowest seed among those seen.
pub fn run_many(
    first: u64,
    count: u64,
    opts: SimOptions,
    threads: usize,
) -> Result<SimSummary, SimError> {
    let next = AtomicU64::new(first);
    let end = first.saturating_add(count);
    let stop = AtomicBool::new(false);
    let summary = Mutex::new(SimSummary::default());
    let failures = Mutex::new(Vec::<SimError>::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut local = SimSummary::default();
                while !stop.load(Ordering::Relaxed) {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    match run(seed, opts) {
                        Ok(report) => local.add(&report),
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            failures.lock().expect("no panics hold it").push(e);
                        }
                    }
                }
                summary.lock().expect("no panics hold it").merge(&local);
            });
        }
    });
    let mut failures = failures.into_inner().expect("threads finished");
    failures.sort_by_key(|e| e.seed);
    match failures.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(summary.into_inner().expect("threads finished")),
    }
}

// ----- the simulated application -----

/// The state machine each node applies entries to: a digest of everything applied so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct App {
    applied: u64,
    digest: u64,
}

impl App {
    fn to_bytes(self) -> Vec<u8> {
        let mut v = self.applied.to_le_bytes().to_vec();
        v.extend_from_slice(&self.digest.to_le_bytes());
        v
    }

    fn from_bytes(b: &[u8]) -> Option<App> {
        if b.len() != 16 {
            return None;
        }
        Some(App {
            applied: u64::from_le_bytes(b[..8].try_into().ok()?),
            digest: u64::from_le_bytes(b[8..].try_into().ok()?),
        })
    }
}

fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn command_hash(c: &Command) -> u64 {
    let h = 0xcbf2_9ce4_8422_2325;
    match c {
        Command::Noop => fnv(&[0], h),
        Command::Config(m) => {
            let mut h = fnv(&[1], h);
            for v in &m.voters {
                h = fnv(v.as_bytes(), h);
                h = fnv(&[0xff], h);
            }
            h
        }
        Command::App(d) => fnv(d, fnv(&[2], h)),
    }
}

fn mix(digest: u64, index: u64, term: u64, hash: u64) -> u64 {
    let mut r = SplitMix64::new(digest ^ index.rotate_left(17) ^ term.rotate_left(41) ^ hash);
    r.next_u64()
}

// ----- the simulator -----

struct SimNode {
    node: Option<RaftNode>,
    storage: Persisted,
    app: App,
    /// Commit index up to which this incarnation's committed entries were checked.
    checked_commit: u64,
}

struct InFlight {
    at: u64,
    msg: Message,
}

struct Net {
    loss: u32,
    dup: u32,
    max_delay: u64,
    /// Directed links (from, to) that drop everything.
    blocked: BTreeSet<(usize, usize)>,
    heal_at: Option<u64>,
}

struct Sim {
    seed: u64,
    opts: SimOptions,
    rng: SplitMix64,
    now: u64,
    ids: Vec<NodeId>,
    index_of: BTreeMap<NodeId, usize>,
    nodes: Vec<SimNode>,
    config: Config,
    membership_changes: bool,
    inflight: Vec<InFlight>,
    net: Net,
    next_command: u64,
    // --- checker state ---
    /// Election safety: the leader of every term ever seen.
    leaders: BTreeMap<u64, NodeId>,
    /// Log matching: for each (index, term) seen in any persisted log, the command's hash and
    /// the term of the entry before it.
    pairs: HashMap<(u64, u64), (u64, u64)>,
    /// Committed entries, (term, hash) at position index - 1.
    committed: Vec<(u64, u64)>,
    /// For each committed entry, the term of the node that first reported it committed (the
    /// committing leader): leaders of later terms must hold it.
    commit_terms: Vec<u64>,
    /// Application digest after index i at position i.
    digests: Vec<u64>,
    trace: Option<VecDeque<String>>,
    report: SimReport,
}

type Check = Result<(), String>;

impl Sim {
    fn new(seed: u64, opts: SimOptions) -> Sim {
        let mut rng = SplitMix64::new(seed);
        let voters = if rng.chance(500_000) { 3 } else { 5 };
        let pool = voters + 1;
        let ids: Vec<NodeId> = (1..=pool).map(|i| format!("n{i}")).collect();
        let members: Vec<NodeId> = ids[..voters].to_vec();
        let check_quorum = !rng.chance(250_000);
        let mut config = Config::new("n0");
        config.check_quorum = check_quorum;
        // Small batches split a new leader's no-op from the older entries before it, which is
        // what figure 8 of the paper needs.
        config.max_entries_per_message = if rng.chance(500_000) {
            rng.range(1, 4) as usize
        } else {
            rng.range(4, 65) as usize
        };
        let loss = if rng.chance(200_000) {
            0
        } else {
            rng.range(0, 200_000) as u32
        };
        let net = Net {
            loss,
            dup: rng.range(0, 100_000) as u32,
            max_delay: rng.range(1, 9),
            blocked: BTreeSet::new(),
            heal_at: None,
        };
        let nodes = ids
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let storage = if i < voters {
                    Persisted::bootstrap(members.iter().cloned())
                } else {
                    Persisted::joining()
                };
                SimNode {
                    node: None,
                    storage,
                    app: App::default(),
                    checked_commit: 0,
                }
            })
            .collect();
        let index_of = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let mut sim = Sim {
            seed,
            opts,
            rng,
            now: 0,
            ids,
            index_of,
            nodes,
            config,
            membership_changes: check_quorum,
            inflight: Vec::new(),
            net,
            next_command: 0,
            leaders: BTreeMap::new(),
            pairs: HashMap::new(),
            committed: Vec::new(),
            commit_terms: Vec::new(),
            digests: vec![0],
            trace: opts.trace.then(VecDeque::new),
            report: SimReport {
                seed,
                nodes: voters,
                ..SimReport::default()
            },
        };
        for i in 0..pool {
            sim.start(i);
        }
        sim
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if let Some(t) = &mut self.trace {
            if t.len() == TRACE_LINES {
                t.pop_front();
            }
            t.push_back(format!("[{}] {}", self.now, line()));
        }
    }

    fn start(&mut self, i: usize) {
        let mut config = self.config.clone();
        config.id = self.ids[i].clone();
        let seed = self.rng.next_u64();
        let node = RaftNode::new(config, self.nodes[i].storage.clone(), seed)
            .expect("simulated persisted state is valid");
        let sn = &mut self.nodes[i];
        sn.node = Some(node);
        sn.app = App::default();
        sn.checked_commit = 0;
    }

    fn run(&mut self) -> Check {
        for i in 0..self.nodes.len() {
            self.process(i)?;
        }
        while self.now < self.opts.steps {
            self.now += 1;
            self.chaos_step()?;
            if self.now % 64 == 0 {
                self.check_all_logs()?;
            }
        }
        self.check_all_logs()?;
        self.heal()?;
        self.check_all_logs()
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].node.is_some())
            .collect()
    }

    fn chaos_step(&mut self) -> Check {
        // Partitions start and heal.
        if self.net.heal_at.is_some_and(|at| self.now >= at) {
            self.net.blocked.clear();
            self.net.heal_at = None;
            self.log(|| "partition healed".into());
        } else if self.net.heal_at.is_none() && self.rng.chance(6_000) {
            self.partition();
        }
        // Crashes and restarts.
        let live = self.live();
        if live.len() > 1 && self.rng.chance(5_000) {
            // Half the time the leader: leader changes are where Raft gets subtle.
            let leader = live
                .iter()
                .copied()
                .find(|i| self.nodes[*i].node.as_ref().is_some_and(|n| n.is_leader()));
            let i = match leader {
                Some(l) if self.rng.chance(500_000) => l,
                _ => live[self.rng.index(live.len())],
            };
            self.nodes[i].node = None;
            self.report.crashes += 1;
            let id = self.ids[i].clone();
            self.log(|| format!("{id} crashed"));
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_none() && self.rng.chance(20_000) {
                self.start(i);
                let id = self.ids[i].clone();
                self.log(|| format!("{id} restarted"));
                self.process(i)?;
            }
        }
        self.tick_and_deliver(true)?;
        // Clients.
        if self.rng.chance(150_000) {
            self.client_propose()?;
        }
        if self.membership_changes && self.rng.chance(4_000) {
            self.change_membership()?;
        }
        if self.rng.chance(20_000) {
            self.take_snapshot()?;
        }
        Ok(())
    }

    fn tick_and_deliver(&mut self, skew: bool) -> Check {
        for i in self.live() {
            // Clock skew: a node occasionally misses a tick.
            if skew && self.rng.chance(30_000) {
                continue;
            }
            self.nodes[i].node.as_mut().expect("live").tick();
            self.process(i)?;
        }
        let now = self.now;
        let mut due = Vec::new();
        let mut k = 0;
        while k < self.inflight.len() {
            if self.inflight[k].at <= now {
                due.push(self.inflight.swap_remove(k).msg);
            } else {
                k += 1;
            }
        }
        self.rng.shuffle(&mut due);
        for msg in due {
            let (Some(&from), Some(&to)) =
                (self.index_of.get(&msg.from), self.index_of.get(&msg.to))
            else {
                return Err(format!("message to or from an unknown node: {msg:?}"));
            };
            if self.net.blocked.contains(&(from, to)) || self.nodes[to].node.is_none() {
                self.report.dropped += 1;
                continue;
            }
            self.report.delivered += 1;
            if self.trace.is_some() {
                let line = describe(&msg);
                self.log(|| line);
            }
            // Every message here is genuine: one the node refuses shows a broken invariant
            // (two leaders in a term, a malformed AppendEntries).
            if let Err(e) = self.nodes[to].node.as_mut().expect("live").step(msg) {
                return Err(format!("a genuine message was refused: {e}"));
            }
            self.process(to)?;
        }
        Ok(())
    }

    fn partition(&mut self) {
        let n = self.nodes.len();
        self.net.blocked.clear();
        match self.rng.range(0, 3) {
            0 => {
                // Two sides.
                let side: Vec<bool> = (0..n).map(|_| self.rng.chance(500_000)).collect();
                for a in 0..n {
                    for b in 0..n {
                        if side[a] != side[b] {
                            self.net.blocked.insert((a, b));
                        }
                    }
                }
            }
            1 => {
                // One node alone.
                let x = self.rng.index(n);
                for o in 0..n {
                    if o != x {
                        self.net.blocked.insert((x, o));
                        self.net.blocked.insert((o, x));
                    }
                }
            }
            _ => {
                // Some one-way links.
                for a in 0..n {
                    for b in 0..n {
                        if a != b && self.rng.chance(250_000) {
                            self.net.blocked.insert((a, b));
                        }
                    }
                }
            }
        }
        self.net.heal_at = Some(self.now + self.rng.range(20, 400));
        self.report.partitions += 1;
        let blocked = format!("{:?}", self.net.blocked);
        self.log(|| format!("partition, blocked links {blocked}"));
    }

    fn client_propose(&mut self) -> Check {
        let live = self.live();
        let mut i = live[self.rng.index(live.len())];
        self.next_command += 1;
        let data = format!("cmd-{}", self.next_command).into_bytes();
        for _ in 0..2 {
            let node = self.nodes[i].node.as_mut().expect("live");
            match node.propose(data.clone()) {
                Ok(index) => {
                    let id = self.ids[i].clone();
                    self.log(|| format!("{id} accepted proposal at {index}"));
                    return self.process(i);
                }
                Err(ProposeError::NotLeader {
                    leader_hint: Some(hint),
                }) => match self.index_of.get(&hint) {
                    Some(&h) if self.nodes[h].node.is_some() => i = h,
                    _ => return Ok(()),
                },
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    fn change_membership(&mut self) -> Check {
        let Some(i) = self
            .live()
            .into_iter()
            .find(|i| self.nodes[*i].node.as_ref().is_some_and(|n| n.is_leader()))
        else {
            return Ok(());
        };
        let members = self.nodes[i]
            .node
            .as_ref()
            .expect("live")
            .membership()
            .clone();
        let outside: Vec<NodeId> = self
            .ids
            .iter()
            .filter(|id| !members.contains(id))
            .cloned()
            .collect();
        let change =
            if !outside.is_empty() && (members.voters.len() < 3 || self.rng.chance(500_000)) {
                MembershipChange::AddNode(outside[self.rng.index(outside.len())].clone())
            } else {
                let list: Vec<&NodeId> = members.voters.iter().collect();
                MembershipChange::RemoveNode(list[self.rng.index(list.len())].clone())
            };
        let node = self.nodes[i].node.as_mut().expect("live");
        if let Ok(index) = node.propose_membership(change.clone()) {
            self.report.membership_changes += 1;
            let id = self.ids[i].clone();
            self.log(|| format!("{id} proposed {change:?} at {index}"));
            self.process(i)?;
        }
        Ok(())
    }

    fn take_snapshot(&mut self) -> Check {
        let live = self.live();
        let i = live[self.rng.index(live.len())];
        let sn = &mut self.nodes[i];
        let node = sn.node.as_mut().expect("live");
        let applied = node.last_applied();
        if applied < node.snapshot_meta().index + 8 || sn.app.applied != applied {
            return Ok(());
        }
        node.snapshot(applied, sn.app.to_bytes())
            .map_err(|e| format!("snapshot refused: {e}"))?;
        self.report.snapshots_taken += 1;
        let id = self.ids[i].clone();
        self.log(|| format!("{id} took a snapshot at {applied}"));
        self.process(i)
    }

    /// Heals everything, then requires a leader and a committed proposal on every member.
    fn heal(&mut self) -> Check {
        self.net.blocked.clear();
        self.net.heal_at = None;
        self.net.loss = 0;
        self.net.dup = 0;
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.is_none() {
                self.start(i);
                self.process(i)?;
            }
        }
        self.log(|| "network healed, all nodes up".into());
        let start = self.now;
        let marker = format!("marker-{}", self.seed).into_bytes();
        let marker_hash = command_hash(&Command::App(marker.clone()));
        // (leader, term, index) of the pending marker proposal.
        let mut pending: Option<(usize, u64, u64)> = None;
        while self.now < start + LIVENESS_BOUND {
            self.now += 1;
            self.tick_and_deliver(false)?;
            let leader = self.live().into_iter().find(|i| {
                let n = self.nodes[*i].node.as_ref().expect("live");
                n.is_leader() && n.membership().contains(n.id())
            });
            let Some(l) = leader else { continue };
            let node = self.nodes[l].node.as_ref().expect("live");
            let term = node.term();
            if !pending.is_some_and(|(pl, pt, _)| pl == l && pt == term) {
                let node = self.nodes[l].node.as_mut().expect("live");
                if let Ok(index) = node.propose(marker.clone()) {
                    pending = Some((l, term, index));
                    self.process(l)?;
                }
                continue;
            }
            let (_, _, index) = pending.expect("set above");
            let done = self.committed.get(index as usize - 1) == Some(&(term, marker_hash))
                && node
                    .membership()
                    .voters
                    .iter()
                    .all(|m| self.nodes[self.index_of[m]].app.applied >= index);
            if done {
                self.report.heal_ticks = self.now - start;
                self.report.committed = self.committed.len() as u64;
                return Ok(());
            }
        }
        let states: Vec<String> = self
            .live()
            .into_iter()
            .map(|i| {
                let n = self.nodes[i].node.as_ref().expect("live");
                format!(
                    "{}: {:?} term {} leader {:?} last {} commit {} applied {} members {:?}",
                    n.id(),
                    n.role(),
                    n.term(),
                    n.leader_id(),
                    n.last_index(),
                    n.commit_index(),
                    self.nodes[i].app.applied,
                    n.membership().voters
                )
            })
            .collect();
        Err(format!(
            "liveness: no proposal committed on every member within {LIVENESS_BOUND} ticks of \
             healing the network; nodes: {}",
            states.join("; ")
        ))
    }

    fn send(&mut self, msg: Message) {
        if self.rng.chance(self.net.loss) {
            self.report.dropped += 1;
            return;
        }
        let copies = if self.rng.chance(self.net.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let mut delay = self.rng.range(1, self.net.max_delay + 1);
            if self.rng.chance(20_000) {
                delay += self.rng.range(0, 40);
            }
            self.inflight.push(InFlight {
                at: self.now + delay,
                msg: msg.clone(),
            });
        }
    }

    /// Acts on a node's Ready as the cluster would, checking each part.
    fn process(&mut self, i: usize) -> Check {
        let Some(node) = self.nodes[i].node.as_mut() else {
            return Ok(());
        };
        if !node.has_ready() {
            return self.check_node(i);
        }
        let ready: Ready = node.ready();
        // 1. persist
        if let Some(update) = &ready.persist {
            self.nodes[i].storage.apply(update);
            self.check_persist(i, update)?;
        }
        // 2. send
        for m in &ready.messages {
            if m.from != self.ids[i] {
                return Err(format!("{} sent a message as {}", self.ids[i], m.from));
            }
            self.send(m.clone());
        }
        // Record what is newly committed before checking what gets applied.
        self.check_node(i)?;
        // 3. apply
        if let Some(s) = &ready.apply_snapshot {
            self.restore(i, s)?;
        }
        for e in &ready.committed {
            self.apply(i, e)?;
        }
        self.nodes[i]
            .node
            .as_mut()
            .expect("still there")
            .advance(&ready);
        self.check_node(i)
    }

    // ----- checks -----

    fn check_persist(&mut self, i: usize, update: &PersistUpdate) -> Check {
        let id = &self.ids[i];
        let storage = &self.nodes[i].storage;
        if let Some(s) = &update.snapshot {
            if s.index as usize > self.committed.len() {
                return Err(format!(
                    "{id} persisted a snapshot at {} beyond the committed index {}",
                    s.index,
                    self.committed.len()
                ));
            }
            if s.index > 0 && self.committed[s.index as usize - 1].0 != s.term {
                return Err(format!(
                    "{id} persisted a snapshot at {} with term {}, committed term is {}",
                    s.index,
                    s.term,
                    self.committed[s.index as usize - 1].0
                ));
            }
        }
        for e in &update.entries {
            let Some(prev_term) = storage.term(e.index - 1) else {
                return Err(format!("{id} persisted entry {} after a gap", e.index));
            };
            let value = (command_hash(&e.command), prev_term);
            match self.pairs.get(&(e.index, e.term)) {
                Some(seen) if *seen != value => {
                    return Err(format!(
                        "log matching: {id} has entry index {} term {} ({:?}, previous term {}) \
                         but another log had (hash {:x}, previous term {}) there",
                        e.index, e.term, e.command, prev_term, seen.0, seen.1
                    ));
                }
                Some(_) => {}
                None => {
                    self.pairs.insert((e.index, e.term), value);
                }
            }
        }
        // The node's memory and its storage agree.
        let node = self.nodes[i].node.as_ref().expect("live");
        if node.hard_state() != storage.hard_state
            || node.last_index() != storage.last_index()
            || node.term_at(node.last_index()) != storage.term(storage.last_index())
            || node.snapshot_meta().index != storage.snapshot.index
        {
            return Err(format!(
                "{id}: persisted state differs from memory (hard state {:?} vs {:?}, last {} vs {}, snapshot {} vs {})",
                node.hard_state(),
                storage.hard_state,
                node.last_index(),
                storage.last_index(),
                node.snapshot_meta().index,
                storage.snapshot.index
            ));
        }
        if self.now % 32 == 0 && node.entries() != storage.entries.as_slice() {
            return Err(format!("{id}: persisted entries differ from memory"));
        }
        Ok(())
    }

    fn restore(&mut self, i: usize, s: &Snapshot) -> Check {
        let id = &self.ids[i];
        let Some(app) = App::from_bytes(&s.data) else {
            return Err(format!("{id}: snapshot at {} has unreadable data", s.index));
        };
        if app.applied != s.index {
            return Err(format!(
                "{id}: snapshot at {} holds the state after {}",
                s.index, app.applied
            ));
        }
        match self.digests.get(s.index as usize) {
            Some(d) if *d == app.digest => {}
            _ => {
                return Err(format!(
                    "state machine safety: {id} restored a snapshot at {} that differs from the \
                     committed state",
                    s.index
                ))
            }
        }
        if self.nodes[i].app.applied > s.index {
            return Err(format!(
                "{id}: snapshot at {} would roll back applied {}",
                s.index, self.nodes[i].app.applied
            ));
        }
        self.nodes[i].app = app;
        self.report.snapshots_installed += 1;
        Ok(())
    }

    fn apply(&mut self, i: usize, e: &Entry) -> Check {
        let id = &self.ids[i];
        let app = self.nodes[i].app;
        if e.index != app.applied + 1 {
            return Err(format!(
                "{id} applied index {} right after {}",
                e.index, app.applied
            ));
        }
        let hash = command_hash(&e.command);
        if self.committed.get(e.index as usize - 1) != Some(&(e.term, hash)) {
            return Err(format!(
                "state machine safety: {id} applied index {} term {} {:?}, committed there: {:?}",
                e.index,
                e.term,
                e.command,
                self.committed.get(e.index as usize - 1)
            ));
        }
        let digest = mix(app.digest, e.index, e.term, hash);
        debug_assert_eq!(Some(&digest), self.digests.get(e.index as usize));
        self.nodes[i].app = App {
            applied: e.index,
            digest,
        };
        Ok(())
    }

    fn check_node(&mut self, i: usize) -> Check {
        let Some(node) = self.nodes[i].node.as_ref() else {
            return Ok(());
        };
        let id = &self.ids[i];
        let mut checked = self.nodes[i].checked_commit;
        let known = self.committed.len();
        // Commit record: every committed entry agrees with what was committed before.
        let commit = node.commit_index();
        let from = self.nodes[i].checked_commit + 1;
        for index in from..=commit {
            let Some(e) = node.entry(index) else {
                continue; // compacted: checked when it was committed or restored
            };
            let value = (e.term, command_hash(&e.command));
            let pos = index as usize - 1;
            if pos < self.committed.len() {
                if self.committed[pos] != value {
                    return Err(format!(
                        "state machine safety: {id} committed index {index} term {} but term {} \
                         was committed there",
                        e.term, self.committed[pos].0
                    ));
                }
            } else if pos == self.committed.len() {
                let digest = mix(self.digests[pos], index, value.0, value.1);
                self.committed.push(value);
                self.commit_terms.push(node.term());
                self.digests.push(digest);
            } else {
                return Err(format!(
                    "{id} committed index {index} but index {} was never seen committed",
                    self.committed.len() + 1
                ));
            }
        }
        if commit >= from {
            checked = commit;
        }
        // Election safety and leader completeness.
        let mut new_leader = None;
        if node.is_leader() {
            let term = node.term();
            match self.leaders.get(&term) {
                Some(other) if other != id => {
                    return Err(format!(
                        "election safety: {id} and {other} are both leaders of term {term}"
                    ));
                }
                Some(_) => {}
                None => {
                    self.check_leader_completeness(id, node, 0)?;
                    new_leader = Some((term, id.clone()));
                }
            }
        }
        self.nodes[i].checked_commit = checked;
        if self.committed.len() > known {
            // Newly committed entries must be in every current leader of a later term too.
            for n in self.nodes.iter().filter_map(|n| n.node.as_ref()) {
                if n.is_leader() {
                    self.check_leader_completeness(n.id(), n, known)?;
                }
            }
        }
        if let Some((term, id)) = new_leader {
            self.report.leaders_elected += 1;
            self.log(|| format!("{id} became leader of term {term}"));
            self.leaders.insert(term, id);
        }
        Ok(())
    }

    /// Leader completeness (§5.4): `node`, a leader, holds every entry from position `from` on
    /// that was committed in an earlier term.
    fn check_leader_completeness(&self, id: &str, node: &RaftNode, from: usize) -> Check {
        let snap = node.snapshot_meta();
        if snap.index as usize > self.committed.len() {
            return Err(format!("{id} holds a snapshot beyond the committed index"));
        }
        for (pos, (term, hash)) in self.committed.iter().enumerate().skip(from) {
            let index = pos as u64 + 1;
            if index < snap.index || self.commit_terms[pos] >= node.term() {
                continue;
            }
            let ok = if index == snap.index {
                snap.term == *term
            } else {
                node.entry(index)
                    .is_some_and(|e| e.term == *term && command_hash(&e.command) == *hash)
            };
            if !ok {
                return Err(format!(
                    "leader completeness: {id}, leader of term {}, lacks entry {index} (term \
                     {term}) committed in term {}",
                    node.term(),
                    self.commit_terms[pos]
                ));
            }
        }
        Ok(())
    }

    /// Full pairwise log matching over every node's persisted log.
    fn check_all_logs(&self) -> Check {
        for a in 0..self.nodes.len() {
            for b in a + 1..self.nodes.len() {
                let (la, lb) = (&self.nodes[a].storage, &self.nodes[b].storage);
                let low = la.snapshot.index.max(lb.snapshot.index);
                let mut top = la.last_index().min(lb.last_index());
                while top > low && la.term(top) != lb.term(top) {
                    top -= 1;
                }
                // From `top` down both logs must be identical.
                let mut index = top;
                while index > low {
                    let ea = &la.entries[(index - la.snapshot.index - 1) as usize];
                    let eb = &lb.entries[(index - lb.snapshot.index - 1) as usize];
                    if ea != eb {
                        return Err(format!(
                            "log matching: {} and {} share index {top} term {:?} but differ at \
                             {index}: {ea:?} vs {eb:?}",
                            self.ids[a],
                            self.ids[b],
                            la.term(top)
                        ));
                    }
                    index -= 1;
                }
            }
        }
        Ok(())
    }
}

fn describe(m: &Message) -> String {
    use rcluster_raft::types::MessageBody as B;
    let body = match &m.body {
        B::RequestVote {
            last_log_index,
            last_log_term,
        } => format!("RequestVote last {last_log_index}/{last_log_term}"),
        B::RequestVoteResponse { granted } => format!("Vote granted={granted}"),
        B::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        } => format!(
            "Append prev {prev_log_index}/{prev_log_term} n={} commit {leader_commit}",
            entries.len()
        ),
        B::AppendEntriesResponse {
            success,
            match_index,
            conflict,
        } => format!("AppendResp ok={success} match {match_index} conflict {conflict:?}"),
        B::InstallSnapshot { snapshot } => {
            format!("InstallSnapshot {}/{}", snapshot.index, snapshot.term)
        }
    };
    format!("{} -> {} t{} {}", m.from, m.to, m.term, body)
}
