//! `rcluster check`: runs the consistency checker (`crate::check`) against the cluster of the
//! config: the workloads through every node while a schedule of faults is injected, then
//! healing and judging; prints progress and the report, writes the history (JSON lines) and
//! exits 0 only when nothing acknowledged was lost and no read was stale.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use rcluster_domain::node_config::Role;

use super::conn::{api_key, ConnArgs};
use super::CliError;
use crate::api::CheckProgress;
use crate::check::{self, lock, Cluster, Plan};
use crate::paths;

/// `rcluster check`.
#[derive(Args, Debug)]
#[command(
    after_help = "Exit status: 0 when nothing acknowledged was lost and no read was \
    stale; 1 when the check failed (or could not run); 2 bad input. Faults go through the \
    faults API (POST /api/faults) of the nodes; see docs/checker.md."
)]
pub struct CheckArgs {
    /// Fault schedule: none, partition-halves, kill-leader, pause-one, skew, mixed, random.
    #[arg(long, default_value = "mixed")]
    pub schedule: String,
    /// How long the workload runs, in seconds (then it heals and judges).
    #[arg(long, default_value_t = 60)]
    pub seconds: u32,
    /// Seed of the schedule and the workload's choices (default: drawn; the report shows it,
    /// to replay the run).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the history here, one JSON event per line (default: check-<seed>.jsonl in the
    /// current folder).
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Workloads, comma-separated: register, set, files.
    #[arg(long, value_name = "LIST", default_value = "register,set,files")]
    pub workload: String,
    /// How long replicas may take to agree after healing, in seconds.
    #[arg(long, default_value_t = 30)]
    pub converge_seconds: u32,
    /// Also print the report as JSON on standard output, after the text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub async fn run(args: CheckArgs) -> Result<(), CliError> {
    let config = paths::read_config(&args.conn.config)?;
    let workloads = [args.workload.clone()];
    let mut plan = Plan::parse(&args.schedule, args.seconds, args.seed, Some(&workloads))
        .map_err(CliError::input)?;
    plan.converge_seconds = args.converge_seconds;
    plan.history = Some(
        args.history
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("check-{}.jsonl", plan.seed))),
    );
    let key = api_key(&config, args.conn.api_key.clone(), Role::Admin);
    let cluster = Arc::new(Cluster::new(config, key));
    let progress = Arc::new(Mutex::new(CheckProgress::default()));
    let log: check::Log = Arc::new(|line: &str| eprintln!("{line}"));
    let ticker = tokio::spawn({
        let progress = progress.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let p = lock(&progress).clone();
                eprintln!(
                    "[{:>4}/{} s] {}: {} attempted, {} acknowledged, {} failed, {} fault(s)",
                    p.elapsed_s,
                    p.seconds,
                    p.phase,
                    p.attempted,
                    p.acknowledged,
                    p.failed,
                    p.faults_injected
                );
            }
        }
    });
    let history = plan.history.clone();
    let outcome = check::run(cluster, plan, progress, log).await;
    ticker.abort();
    let report = outcome.map_err(CliError::failed)?;
    print!("{}", report.text());
    if let Some(h) = history {
        println!("history: {}", h.display());
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    }
    if report.passed {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "check failed: {} acknowledged write(s) lost, {} stale read(s)",
            report.lost.len(),
            report.stale_reads.len()
        )))
    }
}
