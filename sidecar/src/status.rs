//! `rcluster status`: asks a node (the first of the config that answers) how it sees the cluster
//! and prints one line per node, like `nodetool status`; `--json` for scripts, `--watch` to
//! refresh.

use std::path::PathBuf;
use std::time::Duration;

use rcluster_domain::config::ClusterConfig;
use rcluster_domain::node_config::Role;
use serde_json::Value;

use crate::{client, paths, CliError};

pub struct StatusArgs {
    pub config: PathBuf,
    pub api_key: Option<String>,
    pub json: bool,
    pub watch_s: Option<u64>,
}

/// The key to use: given, `RCLUSTER_API_KEY`, or the config's first read key (then admin key).
fn api_key(given: Option<String>, config: &ClusterConfig) -> Option<String> {
    given
        .or_else(|| std::env::var("RCLUSTER_API_KEY").ok())
        .or_else(|| {
            let keys = &config.api.keys;
            keys.iter()
                .find(|k| k.role == Role::Read)
                .or(keys.first())
                .map(|k| k.key.clone())
        })
}

/// Fetches `/api/nodes` from the first node that answers.
async fn fetch(config: &ClusterConfig, key: Option<&str>) -> Result<Value, CliError> {
    let mut failures = Vec::new();
    for n in &config.nodes {
        match client::request(
            "GET",
            &n.host,
            n.http_port,
            "/api/nodes",
            key,
            None,
            Duration::from_secs(3),
        )
        .await
        {
            Ok(r) if r.status == 200 => {
                return serde_json::from_slice(&r.body).map_err(|e| {
                    CliError::failed(format!("node {} sent invalid JSON: {e}", n.id))
                });
            }
            Ok(r) if r.status == 401 || r.status == 403 => {
                return Err(CliError::input(format!(
                    "node {} refused the API key ({}): {}; pass --api-key or set RCLUSTER_API_KEY",
                    n.id,
                    r.status,
                    r.text()
                )));
            }
            Ok(r) if r.status == 429 => failures.push(format!(
                "{}: rate limited, retry after {} s",
                n.id,
                r.header("retry-after").unwrap_or("?")
            )),
            Ok(r) => failures.push(format!("{}: HTTP {}", n.id, r.status)),
            Err(e) => failures.push(format!("{}: {e}", n.id)),
        }
    }
    Err(CliError::failed(format!(
        "no node answered: {}",
        failures.join("; ")
    )))
}

/// Bytes for people: "1.5 MiB" (`compact`: "1.5M", for table columns).
pub fn human_bytes(b: u64, compact: bool) -> String {
    let (value, unit) = match b {
        b if b >= 1 << 30 => (b as f64 / f64::from(1u32 << 30), "G"),
        b if b >= 1 << 20 => (b as f64 / f64::from(1u32 << 20), "M"),
        b if b >= 1 << 10 => (b as f64 / 1024.0, "K"),
        b => {
            return if compact {
                format!("{b}B")
            } else {
                format!("{b} B")
            }
        }
    };
    if compact {
        format!("{value:.1}{unit}")
    } else {
        format!("{value:.1} {unit}iB")
    }
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
    let loaded = paths::load(&args.config, false)?;
    let key = api_key(args.api_key, &loaded.config);
    loop {
        let view = fetch(&loaded.config, key.as_deref()).await?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&view).unwrap_or_default()
            );
        } else {
            if args.watch_s.is_some() {
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", table(&view));
        }
        match args.watch_s {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => return Ok(()),
        }
    }
}
