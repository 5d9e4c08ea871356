//! `rcluster trace <id>` and `rcluster trace --last [n]`: request traces as a terminal
//! timeline, one lane per node (the coordinator first), one row per event with its offset in
//! microseconds from the start. A trace is kept by the node that coordinated the request, so an
//! id is looked for on each node in turn (or only on `--node`).

use clap::Args;
use rcluster_domain::node_config::Role;

use super::conn::{check, json, Conn, ConnArgs};
use super::{CliError, EXIT_CODES};
use crate::api::traces::{TraceDoc, TraceEvent, TraceList};
use crate::client::percent_encode;

/// `rcluster trace`.
#[derive(Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct TraceArgs {
    /// The trace id (as `X-RC-Trace`, `RC.TRACE LIST` or `--last` show it).
    #[arg(required_unless_present = "last", conflicts_with = "last")]
    pub id: Option<String>,
    /// Show the newest N traces of the node (the first reachable one, or --node) instead.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1",
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub last: Option<u32>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub async fn run(args: TraceArgs) -> Result<(), CliError> {
    let conn = Conn::open(&args.conn, Role::Read)?;
    let docs = match (&args.id, args.last) {
        (Some(id), _) => vec![find(&conn, id).await?],
        (None, n) => {
            let path = format!("/api/traces?n={}", n.unwrap_or(1));
            let (node, list): (String, TraceList) = conn.get_json(&path).await?;
            let mut docs = Vec::new();
            for s in list.traces {
                let path = format!("/api/traces/{}", percent_encode(&s.head.id));
                let (_, r) = conn
                    .send_to(&nodes_named(&conn, &node), "GET", &path, None)
                    .await?;
                docs.push(json::<TraceDoc>(&node, &r)?);
            }
            if docs.is_empty() {
                println!("node {node} holds no trace yet (trace a request: RC.SET k v TRACE, or ?trace=1)");
            }
            docs
        }
    };
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            println!();
        }
        print!("{}", timeline(d));
    }
    Ok(())
}

fn nodes_named(conn: &Conn, id: &str) -> Vec<rcluster_domain::config::NodeConfig> {
    conn.nodes()
        .iter()
        .filter(|n| n.id == id)
        .cloned()
        .collect()
}

/// The trace with this id from the first node that holds it.
async fn find(conn: &Conn, id: &str) -> Result<TraceDoc, CliError> {
    let path = format!("/api/traces/{}", percent_encode(id));
    let mut failure = None;
    for node in conn.nodes() {
        match conn
            .exchange(std::slice::from_ref(node), "GET", &path, None)
            .await
        {
            Ok((name, r)) if r.status == 404 => failure = failure.or(Some(format!("{name}: 404"))),
            Ok((name, r)) => return json(&name, &check(&name, r)?),
            Err(e) => failure = Some(e.to_string()),
        }
    }
    Err(CliError::input(format!(
        "no node holds trace '{id}' (traces are kept by the node that coordinated the request, \
         in a bounded ring; last answer: {})",
        failure.unwrap_or_else(|| "none".into())
    )))
}

/// Width of one lane.
const LANE: usize = 26;

/// An event's label in its lane.
fn label(e: &TraceEvent) -> String {
    let mut out = e.what.clone();
    let mut add = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            out.push_str(&format!(" {k}{v}"));
        }
    };
    add("", &e.state);
    add("v", &e.version);
    add("for ", &e.hint_for);
    add("", &e.why);
    add("", &e.outcome);
    if let (Some(g), Some(n)) = (e.got, e.needed) {
        out.push_str(&format!(" {g}/{n}"));
    }
    if e.what == "answer" && e.version.is_none() {
        out.push_str(" (none)");
    }
    out
}

fn cell(text: &str) -> String {
    let mut t: String = text.chars().take(LANE - 1).collect();
    if text.chars().count() > LANE - 1 {
        t.pop();
        t.push('…');
    }
    format!("{t:<LANE$}")
}

/// The terminal timeline of a trace.
pub fn timeline(d: &TraceDoc) -> String {
    let h = &d.head;
    let mut lanes: Vec<&str> = vec![h.coordinator.as_str()];
    for e in &d.events {
        if !lanes.contains(&e.node.as_str()) {
            lanes.push(&e.node);
        }
    }
    let mut out = format!(
        "trace {}  {} {}  coordinator {}  path {}  {:.3} ms\n  reply: {}\n",
        h.id,
        h.command,
        h.key,
        h.coordinator,
        h.path,
        h.duration_us as f64 / 1000.0,
        if h.outcome.is_empty() {
            "(none)"
        } else {
            &h.outcome
        }
    );
    out.push_str(&format!("{:>10} ", "µs"));
    for l in &lanes {
        let name = if *l == h.coordinator {
            format!("{l} (coordinator)")
        } else {
            l.to_string()
        };
        out.push_str(&format!("│ {}", cell(&name)));
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out.push_str(&format!("{:>10} ", ""));
    for _ in &lanes {
        out.push_str(&format!("┼{}", "─".repeat(LANE + 1)));
    }
    out.push('\n');
    for e in &d.events {
        out.push_str(&format!("{:>10} ", e.at_us));
        // The lanes up to the event's own (nothing after it on the row).
        for _ in lanes.iter().take_while(|l| **l != e.node) {
            out.push_str(&format!("│ {}", cell("")));
        }
        out.push_str(&format!("│ {}", label(e)));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcluster_domain::trace::{Trace, What};

    #[test]
    fn one_lane_per_node_and_one_row_per_event() {
        let mut t = Trace::new("n1-1".into(), "RC.SET", "k", "n1", 0);
        t.push(
            0,
            "n1",
            What::Preference {
                state: "self".into(),
            },
        );
        t.push(3, "n2", What::Asked { hint_for: None });
        t.push(40, "n2", What::Ack { hint_for: None });
        t.push(41, "n1", What::Quorum { got: 2, needed: 2 });
        t.push(
            42,
            "n1",
            What::Reply {
                outcome: "OK".into(),
            },
        );
        t.push(2_000_100, "n3", What::Timeout);
        t.push(
            2_000_300,
            "n4",
            What::Hint {
                hint_for: "n3".into(),
            },
        );
        let doc = TraceDoc::of(&t).unwrap();
        let text = timeline(&doc);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("trace n1-1  RC.SET k  coordinator n1  path fast"));
        assert_eq!(lines[1], "  reply: OK");
        // Header: the coordinator first, then the nodes as they appear.
        let header = lines[2];
        let (p1, p2, p3, p4) = (
            header.find("n1 (coordinator)").unwrap(),
            header.find("n2").unwrap(),
            header.find("n3").unwrap(),
            header.find("n4").unwrap(),
        );
        assert!(p1 < p2 && p2 < p3 && p3 < p4);
        assert_eq!(lines.len(), 4 + 7);
        let row = |at: &str| {
            lines
                .iter()
                .find(|l| l.trim_start().starts_with(at))
                .unwrap()
        };
        // Each event sits in its node's lane.
        let timeout = row("2000100");
        assert_eq!(timeout.matches('│').count(), 3, "{timeout}");
        assert!(timeout.ends_with("timeout"));
        assert!(row("2000300").ends_with("hint for n3"));
        assert!(row("41").contains("quorum 2/2"));
        assert!(row("42 ").contains("reply OK"));
    }
}
