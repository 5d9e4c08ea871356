//! `rcluster status`: asks a node (the first of the config that answers) how it sees the cluster
//! and prints one line per node, like `nodetool status`; `--json` for scripts, `--watch` to
//! refresh.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rcluster_domain::node_config::Role;
use serde_json::Value;

use super::conn::Conn;
use super::text::human_bytes;
use super::CliError;
use crate::paths;

/// How long one node may take to answer before the next is asked.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Cluster configuration file (where to find the nodes).
    #[arg(long, default_value = "config/cluster.yaml")]
    pub config: PathBuf,
    /// API key (default: $RCLUSTER_API_KEY, else the config's first read key).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Print the raw JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh every N seconds until interrupted.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub watch: Option<u64>,
}

pub fn table(view: &Value) -> String {
    let mut out = format!(
        "seen from {}\n{:<8} {:<22} {:<8} {:>10} {:<6} {:>8} {:>8} {:>8} {:<10} {:>5} {:>6}\n",
        view["observer"].as_str().unwrap_or("?"),
        "NODE",
        "ADDRESS",
        "STATE",
        "HEARTBEAT",
        "REDIS",
        "KEYS",
        "MEMORY",
        "DRIFT",
        "RAFT",
        "TERM",
        "EPOCH"
    );
    for n in view["nodes"].as_array().map_or(&[][..], Vec::as_slice) {
        let text = |k: &str| n[k].as_str().unwrap_or("-").to_string();
        let heartbeat = n["last_heartbeat_age_ms"]
            .as_u64()
            .map_or("-".into(), |a| format!("{:.1}s ago", a as f64 / 1000.0));
        let redis = match n["redis_up"].as_bool() {
            Some(true) => "up",
            Some(false) => "down",
            None => "-",
        };
        let keys = n["kv_keys"].as_i64().map_or("-".into(), |k| k.to_string());
        let memory = n["used_memory_bytes"]
            .as_u64()
            .map_or("-".into(), |b| human_bytes(b, true));
        let drift = n["drift_ms"]
            .as_i64()
            .map_or_else(|| "-".into(), |d| format!("{d}ms"));
        let addr = format!("{}:{}", text("host"), n["redis_port"]);
        let me = if n["self"].as_bool() == Some(true) {
            "*"
        } else {
            ""
        };
        let role = n["raft_role"]
            .as_str()
            .filter(|r| !r.is_empty())
            .unwrap_or("-")
            .to_string();
        let term = n["raft_term"]
            .as_u64()
            .map_or("-".into(), |t| t.to_string());
        // The topology epoch its module installed; "+" while it still uses the previous
        // placement beside it (a member change not yet installed everywhere).
        let epoch = match (n["topology_epoch"].as_u64(), n["transition_open"].as_bool()) {
            (Some(e), Some(true)) => format!("{e}+"),
            (Some(e), _) => e.to_string(),
            (None, _) => "-".into(),
        };
        out.push_str(&format!(
            "{:<8} {:<22} {:<8} {:>10} {:<6} {:>8} {:>8} {:>8} {:<10} {:>5} {:>6}\n",
            format!("{}{me}", text("id")),
            addr,
            text("state"),
            heartbeat,
            redis,
            keys,
            memory,
            drift,
            role,
            term,
            epoch
        ));
    }
    out
}

pub async fn run(args: StatusArgs) -> Result<(), CliError> {
    let config = paths::read_config(&args.config)?;
    let conn = Conn::new(config, args.api_key, Role::Read).with_timeout(ASK_TIMEOUT);
    loop {
        let (_, view): (_, Value) = conn.get_json("/api/nodes").await?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&view).unwrap_or_default()
            );
        } else {
            if args.watch.is_some() {
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", table(&view));
        }
        match args.watch {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => return Ok(()),
        }
    }
}
