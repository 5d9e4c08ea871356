//! The checks a node runs for `POST /api/checks`: one at a time, kept by id (the last
//! [`KEPT`]) with their progress, and their report once judged.

use std::sync::{Arc, Mutex};

use rcluster_domain::check::report::Report;

use super::record::lock;
use super::{run, Cluster, Log, Plan};
use crate::api::{Check, CheckProgress};

/// Finished checks kept.
pub const KEPT: usize = 20;

struct Entry {
    id: String,
    plan: Plan,
    progress: Arc<Mutex<CheckProgress>>,
    outcome: Option<Result<Report, String>>,
}

static RUNS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static COUNT: Mutex<u64> = Mutex::new(0);

fn view(e: &Entry) -> Check {
    let (state, report, error) = match &e.outcome {
        None => ("running", None, None),
        Some(Ok(r)) => (
            if r.passed { "passed" } else { "failed" },
            serde_json::to_value(r).ok(),
            None,
        ),
        Some(Err(why)) => ("error", None, Some(why.clone())),
    };
    Check {
        id: e.id.clone(),
        state: state.to_string(),
        schedule: e.plan.schedule.as_str().to_string(),
        seconds: e.plan.seconds,
        seed: e.plan.seed,
        workloads: e.plan.workload_names(),
        progress: lock(&e.progress).clone(),
        report,
        error,
        history: e.plan.history.as_ref().map(|p| p.display().to_string()),
    }
}

/// The id a new check will get.
pub fn next_id() -> String {
    format!("c-{}", *lock(&COUNT) + 1)
}

/// Starts `plan` as check `id` (from [`next_id`]) unless one is running: then `Err` with the
/// running check's id.
pub fn start(cluster: Arc<Cluster>, id: String, plan: Plan, log: Log) -> Result<String, String> {
    let mut runs = lock(&RUNS);
    if let Some(busy) = runs.iter().find(|e| e.outcome.is_none()) {
        return Err(busy.id.clone());
    }
    *lock(&COUNT) += 1;
    if runs.len() >= KEPT {
        runs.remove(0);
    }
    let progress = Arc::new(Mutex::new(CheckProgress {
        phase: "starting".into(),
        seconds: plan.seconds,
        ..CheckProgress::default()
    }));
    runs.push(Entry {
        id: id.clone(),
        plan: plan.clone(),
        progress: progress.clone(),
        outcome: None,
    });
    let ours = id.clone();
    tokio::spawn(async move {
        let outcome = run(cluster, plan, progress, log).await;
        if let Some(e) = lock(&RUNS).iter_mut().find(|e| e.id == ours) {
            e.outcome = Some(outcome);
        }
    });
    Ok(id)
}

pub fn get(id: &str) -> Option<Check> {
    lock(&RUNS).iter().find(|e| e.id == id).map(view)
}

pub fn list() -> Vec<Check> {
    lock(&RUNS).iter().map(view).collect()
}
