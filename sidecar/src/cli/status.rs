//! `rcluster status`: asks a node (the first of the config that answers) how it sees the cluster
//! and prints one line per node, like `nodetool status` (that node's own row, marked `*`, as of
//! the request; the others as of their last heartbeat); `--json` for scripts, `--watch` to
//! refresh.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rcluster_domain::node_config::Role;

use super::conn::Conn;
use super::text::human_bytes;
use super::CliError;
use crate::api::Nodes;
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

/// One line per node under a header naming the observer.
pub fn table(view: &Nodes) -> String {
    let mut out = format!(
        "seen from {}\n{:<8} {:<22} {:<8} {:>10} {:<6} {:>8} {:>8} {:>8} {:<10} {:>5} {:>6}\n",
        view.observer,
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
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for n in &view.nodes {
        let heartbeat = n
            .last_heartbeat_age_ms
            .map(|a| format!("{:.1}s ago", a as f64 / 1000.0));
        let redis = n
            .redis_up
            .map(|up| if up { "up" } else { "down" }.to_string());
        let me = if n.is_self { "*" } else { "" };
        let role = n.raft_role.clone().filter(|r| !r.is_empty());
        // The topology epoch its module installed; "+" while it still uses the previous
        // placement beside it (a member change not yet installed everywhere).
        let epoch = n.topology_epoch.map(|e| match n.transition_open {
            Some(true) => format!("{e}+"),
            _ => e.to_string(),
        });
        out.push_str(&format!(
            "{:<8} {:<22} {:<8} {:>10} {:<6} {:>8} {:>8} {:>8} {:<10} {:>5} {:>6}\n",
            format!("{}{me}", n.id),
            format!("{}:{}", n.host, n.redis_port),
            or_dash(n.state.map(|s| s.as_str().to_string())),
            or_dash(heartbeat),
            or_dash(redis),
            or_dash(n.kv_keys.map(|k| k.to_string())),
            or_dash(n.used_memory_bytes.map(|b| human_bytes(b, true))),
            or_dash(n.drift_ms.map(|d| format!("{d}ms"))),
            or_dash(role),
            or_dash(n.raft_term.map(|t| t.to_string())),
            or_dash(epoch),
        ));
    }
    out
}

pub async fn run(args: StatusArgs) -> Result<(), CliError> {
    let config = paths::read_config(&args.config)?;
    let conn = Conn::new(config, args.api_key, Role::Read).with_timeout(ASK_TIMEOUT);
    loop {
        let (_, view): (_, Nodes) = conn.get_json("/api/nodes").await?;
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::{NodeRow, NodeState};

    /// A row of node `id` that knows nothing but the address.
    pub(crate) fn row(id: &str, is_self: bool) -> NodeRow {
        NodeRow {
            id: id.into(),
            host: "127.0.0.1".into(),
            redis_port: 7001,
            http_port: 8001,
            peer_port: 9001,
            is_self,
            state: None,
            reason: None,
            phi: None,
            last_heartbeat_age_ms: None,
            rtt_ms: None,
            redis_up: None,
            redis_state: None,
            redis_reason: None,
            redis_restarts: None,
            redis_next_attempt_unix_ms: None,
            kv_keys: None,
            used_memory_bytes: None,
            drift_ms: None,
            time_source: None,
            raft_role: None,
            raft_term: None,
            raft_commit_index: None,
            topology_epoch: None,
            transition_open: None,
            redistribution: None,
        }
    }

    #[test]
    fn a_row_per_node_with_dashes_for_what_is_unknown() {
        let known = NodeRow {
            state: Some(NodeState::Alive),
            last_heartbeat_age_ms: Some(1_250),
            redis_up: Some(true),
            kv_keys: Some(42),
            used_memory_bytes: Some(3 << 19),
            drift_ms: Some(-3),
            raft_role: Some("leader".into()),
            raft_term: Some(7),
            topology_epoch: Some(2),
            transition_open: Some(true),
            ..row("n1", true)
        };
        let view = Nodes {
            observer: "n1".into(),
            nodes: vec![known, row("n2", false)],
        };
        let out = table(&view);
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["seen", "from", "n1"]);
        assert_eq!(lines[1].last(), Some(&"EPOCH"));
        assert_eq!(
            lines[2],
            [
                "n1*",
                "127.0.0.1:7001",
                "alive",
                "1.2s",
                "ago",
                "up",
                "42",
                "1.5M",
                "-3ms",
                "leader",
                "7",
                "2+"
            ]
        );
        assert_eq!(lines[3][0], "n2");
        assert!(lines[3][2..].iter().all(|c| *c == "-"), "{out}");
    }
}
