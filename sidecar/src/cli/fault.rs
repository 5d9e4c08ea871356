//! `rcluster fault ...`: inject a fault through a node's HTTP API (`POST /api/faults`, admin
//! key), list the faults a node holds, clear one or all. The node checks the fault; a refusal
//! (unknown node, a node named twice, a TTL over `faults.max_ttl_ms`, a negative latency) comes
//! back as bad input and nothing is injected.

use clap::{Args, Subcommand};
use rcluster_domain::node_config::Role;

use super::conn::{json, Body, Conn, ConnArgs};
use super::{CliError, EXIT_CODES};
use crate::api::faults::{FaultList, FaultParams, FaultRequest, FaultView, FaultsCleared};

/// `rcluster fault`.
#[derive(Args, Debug)]
pub struct FaultArgs {
    #[command(subcommand)]
    pub action: FaultAction,
}

/// How long a fault lasts, and where to send it.
#[derive(Args, Debug)]
pub struct Ttl {
    /// Time to live (`30s`, `500ms`, `2m`, or ms); default: the config's
    /// faults.default_ttl_ms.
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub ttl: Option<u64>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Subcommand, Debug)]
#[command(after_help = EXIT_CODES)]
pub enum FaultAction {
    /// Split the members into groups (`n1,n2 / n3`); links between groups are cut both ways,
    /// members not named form one more group.
    Partition {
        /// The groups, separated by `/`.
        #[arg(required = true, num_args = 1..)]
        groups: Vec<String>,
        #[command(flatten)]
        ttl: Ttl,
    },
    /// One-way cut: what FROM sends to TO is lost (comma-separated lists).
    Cut {
        from: String,
        to: String,
        #[command(flatten)]
        ttl: Ttl,
    },
    /// Add delay on the links from or to the targets.
    Latency {
        /// Comma-separated node ids.
        targets: String,
        #[arg(long, allow_hyphen_values = true)]
        ms: i64,
        /// The delay varies by up to this many ms either way.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        jitter: i64,
        /// Only the links to these nodes (comma-separated; default: all).
        #[arg(long)]
        peers: Option<String>,
        #[command(flatten)]
        ttl: Ttl,
    },
    /// Lose a share of the messages on the links from or to the targets.
    Loss {
        targets: String,
        #[arg(long)]
        percent: f64,
        #[arg(long)]
        peers: Option<String>,
        #[command(flatten)]
        ttl: Ttl,
    },
    /// Shift the physical part of the targets' hybrid clocks by MS (signed).
    Skew {
        targets: String,
        #[arg(long, allow_hyphen_values = true)]
        ms: i64,
        #[command(flatten)]
        ttl: Ttl,
    },
    /// Kill the targets' Redis (or node process, or both) now; started again when the TTL ends.
    Crash {
        targets: String,
        #[arg(long, default_value = "redis", value_parser = ["redis", "node", "both"])]
        process: String,
        #[command(flatten)]
        ttl: Ttl,
    },
    /// Stop (SIGSTOP) the targets' Redis (or node process, or both) until the TTL ends.
    Pause {
        targets: String,
        #[arg(long, default_value = "redis", value_parser = ["redis", "node", "both"])]
        process: String,
        #[command(flatten)]
        ttl: Ttl,
    },
    /// List the faults a node holds, with the time they have left.
    Ls {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// End one fault (by id) or every fault, on every node that can be reached.
    Clear {
        id: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

impl FaultAction {
    fn conn(&self) -> &ConnArgs {
        match self {
            FaultAction::Partition { ttl, .. }
            | FaultAction::Cut { ttl, .. }
            | FaultAction::Latency { ttl, .. }
            | FaultAction::Loss { ttl, .. }
            | FaultAction::Skew { ttl, .. }
            | FaultAction::Crash { ttl, .. }
            | FaultAction::Pause { ttl, .. } => &ttl.conn,
            FaultAction::Ls { conn, .. } | FaultAction::Clear { conn, .. } => conn,
        }
    }
}

/// `30s`, `500ms`, `2m`, `1h` or plain milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (like 30s, 500ms, 2m)"))?;
    let factor = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("unknown unit in '{text}' (ms, s, m, h)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too long"))
}

/// Node ids from comma- or space-separated text.
fn ids(text: &str) -> Vec<String> {
    text.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `n1,n2 / n3` (in one or several arguments) as groups.
fn groups(args: &[String]) -> Vec<Vec<String>> {
    args.join(" ").split('/').map(ids).collect()
}

/// The request an injecting action sends; `None` for ls and clear.
fn request(action: &FaultAction) -> Option<FaultRequest> {
    let (params, ttl) = match action {
        FaultAction::Partition { groups: g, ttl } => (
            FaultParams {
                kind: "partition".into(),
                groups: Some(groups(g)),
                ..FaultParams::default()
            },
            ttl,
        ),
        FaultAction::Cut { from, to, ttl } => (
            FaultParams {
                kind: "cut".into(),
                from: Some(ids(from)),
                to: Some(ids(to)),
                ..FaultParams::default()
            },
            ttl,
        ),
        FaultAction::Latency {
            targets,
            ms,
            jitter,
            peers,
            ttl,
        } => (
            FaultParams {
                kind: "latency".into(),
                targets: Some(ids(targets)),
                ms: Some(*ms),
                jitter_ms: Some(*jitter),
                peers: peers.as_deref().map(ids),
                ..FaultParams::default()
            },
            ttl,
        ),
        FaultAction::Loss {
            targets,
            percent,
            peers,
            ttl,
        } => (
            FaultParams {
                kind: "loss".into(),
                targets: Some(ids(targets)),
                percent: Some(*percent),
                peers: peers.as_deref().map(ids),
                ..FaultParams::default()
            },
            ttl,
        ),
        FaultAction::Skew { targets, ms, ttl } => (
            FaultParams {
                kind: "skew".into(),
                targets: Some(ids(targets)),
                ms: Some(*ms),
                ..FaultParams::default()
            },
            ttl,
        ),
        FaultAction::Crash {
            targets,
            process,
            ttl,
        }
        | FaultAction::Pause {
            targets,
            process,
            ttl,
        } => (
            FaultParams {
                kind: if matches!(action, FaultAction::Crash { .. }) {
                    "crash"
                } else {
                    "pause"
                }
                .into(),
                targets: Some(ids(targets)),
                process: Some(process.clone()),
                ..FaultParams::default()
            },
            ttl,
        ),
        FaultAction::Ls { .. } | FaultAction::Clear { .. } => return None,
    };
    Some(FaultRequest {
        params,
        ttl_ms: ttl.ttl,
    })
}

/// What a fault does, in a few words.
fn describe(p: &FaultParams) -> String {
    let list = |v: &Option<Vec<String>>| v.as_deref().unwrap_or_default().join(",");
    match p.kind.as_str() {
        "partition" => p
            .groups
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|g| g.join(","))
            .collect::<Vec<_>>()
            .join(" / "),
        "cut" => format!("{} -> {}", list(&p.from), list(&p.to)),
        "latency" => format!(
            "{} +{}ms ±{}ms",
            list(&p.targets),
            p.ms.unwrap_or(0),
            p.jitter_ms.unwrap_or(0)
        ),
        "loss" => format!("{} {}%", list(&p.targets), p.percent.unwrap_or(0.0)),
        "skew" => format!("{} {:+}ms", list(&p.targets), p.ms.unwrap_or(0)),
        _ => format!(
            "{} ({})",
            list(&p.targets),
            p.process.as_deref().unwrap_or("redis")
        ),
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// One line per fault.
pub fn table(list: &FaultList) -> String {
    let mut out = format!(
        "held by {}\n{:<20} {:<10} {:>8} {:<32} NODES\n",
        list.node, "ID", "KIND", "LEFT", "WHAT"
    );
    for f in &list.faults {
        out.push_str(&format!(
            "{:<20} {:<10} {:>8} {:<32} {}\n",
            f.id,
            f.params.kind,
            seconds(f.expires_in_ms),
            describe(&f.params),
            f.nodes.join(",")
        ));
    }
    if list.faults.is_empty() {
        out.push_str("(no faults)\n");
    }
    out
}

pub async fn run(args: FaultArgs) -> Result<(), CliError> {
    let conn = Conn::open(args.action.conn(), Role::Admin)?;
    if let Some(req) = request(&args.action) {
        let body = serde_json::to_vec(&req)
            .map_err(|e| CliError::failed(format!("cannot encode the fault: {e}")))?;
        let (node, r) = conn
            .send("POST", "/api/faults", Some(Body::json(&body)))
            .await?;
        let f: FaultView = json(&node, &r)?;
        println!(
            "injected {} ({}: {}) for {} on {}",
            f.id,
            f.params.kind,
            describe(&f.params),
            seconds(f.ttl_ms),
            f.nodes.join(", ")
        );
        if !f.unreachable.is_empty() {
            eprintln!(
                "warning: not reached (they do not hold it): {}",
                f.unreachable.join(", ")
            );
        }
        return Ok(());
    }
    match args.action {
        FaultAction::Ls { json: raw, .. } => {
            let (node, r) = conn.send("GET", "/api/faults", None).await?;
            if raw {
                println!("{}", r.text());
                return Ok(());
            }
            let list: FaultList = json(&node, &r)?;
            print!("{}", table(&list));
        }
        FaultAction::Clear { id, .. } => {
            let path = match &id {
                Some(id) => format!("/api/faults/{}", crate::client::percent_encode(id)),
                None => "/api/faults".into(),
            };
            let (node, r) = conn.send("DELETE", &path, None).await?;
            let done: FaultsCleared = json(&node, &r)?;
            println!(
                "cleared {} fault(s) on {}",
                done.cleared.len(),
                done.nodes.join(", ")
            );
            if !done.unreachable.is_empty() {
                eprintln!(
                    "warning: not reached (their faults end at their deadlines): {}",
                    done.unreachable.join(", ")
                );
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_groups_and_requests() {
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("1500"), Ok(1_500));
        assert!(parse_duration_ms("5 parsecs").is_err());
        assert!(parse_duration_ms("s").is_err());
        assert_eq!(
            groups(&["n1,n2".into(), "/".into(), "n3".into()]),
            vec![vec!["n1", "n2"], vec!["n3"]]
        );
        assert_eq!(groups(&["n1,n2/n3".into()]).len(), 2);
        let req = request(&FaultAction::Skew {
            targets: "n3".into(),
            ms: -5000,
            ttl: Ttl {
                ttl: Some(30_000),
                conn: ConnArgs {
                    config: "c.yaml".into(),
                    api_key: None,
                    node: None,
                },
            },
        })
        .unwrap();
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"kind":"skew","targets":["n3"],"ms":-5000,"ttl_ms":30000})
        );
        let conn = ConnArgs {
            config: "c.yaml".into(),
            api_key: None,
            node: None,
        };
        assert!(request(&FaultAction::Clear { id: None, conn }).is_none());
    }
}
