//! `rcluster demo <name> [--short]`: runs one guided scenario against the cluster of the config
//! in this process, narrated step by step on standard output (and on `cluster:events`), ending
//! with the verdict measured on the spot. Ctrl-C stops it at the next step; the cluster is
//! restored either way. The runner is `crate::demo`, shared with `POST /api/demos`.

use std::sync::Arc;

use clap::Args;
use rcluster_domain::node_config::Role;

use super::conn::api_key;
use super::CliError;
use crate::demo::{self, Cluster, Name, Run};
use crate::paths;

const EXIT_CODES: &str = "Exit status: 0 the verdict holds; 1 it does not, the run was \
    stopped, it could not run to the end, or it refused to start (the cluster is not healthy, \
    or another scenario runs); 2 bad input.";

/// `rcluster demo`.
#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct DemoArgs {
    /// normal, node-failure, scaling, resources or trade-offs (see docs/scenarios.md).
    #[arg(value_parser = ["normal", "node-failure", "scaling", "resources", "trade-offs"])]
    pub name: String,
    /// The short mode: fewer keys, shorter loads.
    #[arg(long)]
    pub short: bool,
    /// Cluster configuration file (the nodes, the admin key).
    #[arg(long, default_value = "config/cluster.yaml")]
    pub config: std::path::PathBuf,
    /// Admin API key (default: $RCLUSTER_API_KEY, else the config's first admin key).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
}

pub async fn run(args: DemoArgs) -> Result<(), CliError> {
    let name = Name::parse(&args.name)
        .ok_or_else(|| CliError::input(format!("unknown scenario (one of {})", Name::list())))?;
    let config = paths::read_config(&args.config)?;
    let key = api_key(&config, args.api_key.clone(), Role::Admin);
    let path = std::path::absolute(&args.config).unwrap_or(args.config.clone());
    let cluster = Arc::new(Cluster::new(config, path, key));
    let id = demo::next_id();
    let lock_node = demo::preflight(&cluster, &id)
        .await
        .map_err(|why| CliError::failed(format!("scenario {} not started: {why}", args.name)))?;
    let run = Run::new(id, name, args.short, true);
    let stopper = run.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping at the next step; the cluster will be restored ...");
            stopper.stop();
        }
    });
    demo::execute(cluster, run.clone(), name, lock_node).await;
    ctrl_c.abort();
    let view = run.view();
    match view.state.as_str() {
        "passed" => Ok(()),
        "failed" => Err(CliError::failed(format!(
            "scenario {}: the verdict does not hold",
            view.name
        ))),
        "stopped" => Err(CliError::failed(format!("scenario {} stopped", view.name))),
        _ => Err(CliError::failed(format!(
            "scenario {}: {}",
            view.name,
            view.error.unwrap_or_default()
        ))),
    }
}
