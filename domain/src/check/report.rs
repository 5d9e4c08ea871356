//! The checker's report: what was attempted, acknowledged and refused, what was lost, which reads
//! were stale, which replicas did not converge, how long each fault left the cluster unable to
//! serve, and the seed that replays the run; as JSON (serde) and as the text the CLI prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// How the run was set up (what replays it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setup {
    pub schedule: String,
    pub seconds: u32,
    pub seed: u64,
    pub workloads: Vec<String>,
    /// The cluster's quorum during the run.
    pub n: u8,
    pub w: u8,
    pub r: u8,
}

/// Operations of one workload (or all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub attempted: u64,
    pub acknowledged: u64,
    /// Refused or of unknown outcome, by reason (an error code such as `NOQUORUM`, `timeout`,
    /// `unreachable`, an HTTP status).
    pub failed: BTreeMap<String, u64>,
}

impl Counts {
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
}

/// An acknowledged write that a read after healing did not return.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    pub workload: String,
    pub key: String,
    /// The acknowledged value (a file's SHA-256).
    pub expected: String,
    /// What the read returned (absent: nothing).
    pub got: Option<String>,
    /// The node the read went through.
    pub node: String,
}

/// A read that returned a value older than a write acknowledged before the read began.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stale {
    pub key: String,
    pub client: u32,
    pub node: String,
    /// When the read was invoked, in seconds since the start.
    pub at_s: f64,
    pub got: Option<String>,
    /// The newest value acknowledged before the read was invoked.
    pub expected_at_least: String,
}

/// A key whose replicas hold different versions after healing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergent {
    pub key: String,
    /// Replica node to the version it holds (`none`, or `error: ...` when unreadable).
    pub replicas: BTreeMap<String, String>,
}

/// One fault's window and how much of it the cluster served nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub id: String,
    pub kind: String,
    pub from_s: f64,
    pub to_s: f64,
    /// Seconds (started) of the window in which no operation of the workload succeeded.
    pub seconds_without_success: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub setup: Setup,
    /// Every workload together.
    pub operations: Counts,
    pub by_workload: BTreeMap<String, Counts>,
    pub faults_injected: u64,
    /// Faults the executor could not inject, by reason.
    pub faults_refused: BTreeMap<String, u64>,
    pub lost: Vec<Lost>,
    /// Whether stale reads were judged: only with R + W > N does a read have to see every write
    /// acknowledged before it.
    pub stale_judged: bool,
    pub stale_reads: Vec<Stale>,
    pub not_converged: Vec<Divergent>,
    /// Acknowledged writes no read after healing could check (every such read failed).
    pub unverified: Vec<String>,
    pub unavailability: Vec<Window>,
    /// Nothing acknowledged was lost and no read was stale.
    pub passed: bool,
}

/// At most this many rows of each list in the text.
const SHOWN: usize = 10;

fn counts_line(c: &Counts) -> String {
    let mut line = format!(
        "{} attempted, {} acknowledged, {} failed",
        c.attempted,
        c.acknowledged,
        c.failed_total()
    );
    if !c.failed.is_empty() {
        let reasons: Vec<String> = c.failed.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = write!(line, " ({})", reasons.join(", "));
    }
    line
}

fn more(out: &mut String, total: usize) {
    if total > SHOWN {
        let _ = writeln!(
            out,
            "    ... and {} more (see the JSON report)",
            total - SHOWN
        );
    }
}

impl Report {
    /// The report as the CLI prints it.
    pub fn text(&self) -> String {
        let s = &self.setup;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "check: schedule {} for {} s, seed {}, workloads {}, quorum N={} W={} R={}",
            s.schedule,
            s.seconds,
            s.seed,
            s.workloads.join(","),
            s.n,
            s.w,
            s.r
        );
        let _ = writeln!(out, "operations: {}", counts_line(&self.operations));
        for (w, c) in &self.by_workload {
            let _ = writeln!(out, "  {w}: {}", counts_line(c));
        }
        let refused: u64 = self.faults_refused.values().sum();
        let _ = write!(out, "faults: {} injected", self.faults_injected);
        if refused > 0 {
            let reasons: Vec<String> = self
                .faults_refused
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            let _ = write!(out, ", {refused} refused ({})", reasons.join(", "));
        }
        out.push('\n');
        for w in &self.unavailability {
            let _ = writeln!(
                out,
                "  {} {} {:.1}s-{:.1}s: {} s without a successful operation",
                w.id, w.kind, w.from_s, w.to_s, w.seconds_without_success
            );
        }
        let _ = writeln!(out, "acknowledged writes lost: {}", self.lost.len());
        for l in self.lost.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "  {} {}: acknowledged {}, read through {} gave {}",
                l.workload,
                l.key,
                l.expected,
                l.node,
                l.got.as_deref().unwrap_or("nothing")
            );
        }
        more(&mut out, self.lost.len());
        if self.stale_judged {
            let _ = writeln!(out, "stale reads: {}", self.stale_reads.len());
        } else {
            let _ = writeln!(
                out,
                "stale reads: {} (not judged: R + W <= N allows them)",
                self.stale_reads.len()
            );
        }
        for r in self.stale_reads.iter().take(SHOWN) {
            let _ = writeln!(
                out,
                "  {} at {:.3}s by client {} through {}: got {}, {} was acknowledged before",
                r.key,
                r.at_s,
                r.client,
                r.node,
                r.got.as_deref().unwrap_or("nothing"),
                r.expected_at_least
            );
        }
        more(&mut out, self.stale_reads.len());
        let _ = writeln!(
            out,
            "replicas not converged: {} key(s)",
            self.not_converged.len()
        );
        for d in self.not_converged.iter().take(SHOWN) {
            let held: Vec<String> = d.replicas.iter().map(|(n, v)| format!("{n}={v}")).collect();
            let _ = writeln!(out, "  {}: {}", d.key, held.join(" "));
        }
        more(&mut out, self.not_converged.len());
        if !self.unverified.is_empty() {
            let _ = writeln!(
                out,
                "unverified (no read after healing answered): {}",
                self.unverified.len()
            );
        }
        let _ = writeln!(
            out,
            "verdict: {} (replay with --seed {})",
            if self.passed { "PASSED" } else { "FAILED" },
            s.seed
        );
        out
    }
}
