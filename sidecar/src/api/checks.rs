//! `POST /api/checks`, `GET /api/checks`, `GET /api/checks/{id}`: a consistency check run by a
//! node (the request, its state and progress; the report is `domain::check::report::Report`
//! as JSON).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Start a check: a workload through a schedule of faults, then healing and judging.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCheck {
    /// none, partition-halves, kill-leader, pause-one, skew, mixed or random.
    #[schema(example = "mixed")]
    pub schedule: String,
    /// How long the workload runs (1..=3600), before healing and judging.
    #[schema(minimum = 1, maximum = 3600, example = 60)]
    pub seconds: u32,
    /// Seed of the schedule and the workload's choices (default: drawn; the report shows it).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Any of register, set, files (default: all three).
    #[serde(default)]
    pub workloads: Option<Vec<String>>,
}

/// A check was started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckStarted {
    pub id: String,
}

/// Where a check is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckProgress {
    /// workload, healing, final-reads, converging, judging, done.
    pub phase: String,
    /// Seconds of the workload done, of `seconds`.
    pub elapsed_s: u64,
    pub seconds: u32,
    pub attempted: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub faults_injected: u64,
}

/// A check: running, passed (nothing acknowledged lost, no stale read), failed, or error (it
/// could not run to the end).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    pub id: String,
    /// running, passed, failed or error.
    pub state: String,
    pub schedule: String,
    pub seconds: u32,
    pub seed: u64,
    pub workloads: Vec<String>,
    pub progress: CheckProgress,
    /// The report once judged: counts, lost writes, stale reads, replicas not converged,
    /// unavailability per fault (see docs/checker.md).
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
    /// Why the check could not run to the end.
    pub error: Option<String>,
    /// The history file (JSON lines) on the node that runs the check.
    pub history: Option<String>,
}

/// Every check this node ran since it started, newest last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckList {
    pub checks: Vec<Check>,
}
