//! `GET /api/traces` and `GET /api/traces/{id}`: a node's request traces as the API shows them
//! (the JSON of `rcluster_domain::trace`, described here for the OpenAPI document), and the
//! `?trace=1` query of the kv routes.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `?n=`: how many traces to list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TraceListQuery {
    /// How many of the newest traces (1..=10000; default 10).
    #[param(minimum = 1, maximum = 10000)]
    pub n: Option<u32>,
}

/// What a trace is about, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TraceHead {
    pub id: String,
    /// `RC.SET`, `RC.GET` or `RC.DEL`.
    pub command: String,
    pub key: String,
    /// The node that coordinated the request.
    pub coordinator: String,
    /// `fast` (Redis's main thread) or `runtime`: which path answered the client.
    pub path: String,
    /// The reply, in short (`OK`, `nil`, `value (5 bytes)`, `NOQUORUM ...`).
    pub outcome: String,
    pub started_unix_ms: u64,
    /// From the start to the last event (follow-ups included).
    pub duration_us: u64,
}

/// One trace in a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TraceSummary {
    #[serde(flatten)]
    pub head: TraceHead,
    /// How many events it holds.
    pub events: u64,
}

/// The newest traces of this node, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TraceList {
    pub traces: Vec<TraceSummary>,
}

/// One event of a trace: when (µs after the start), which node, what, and the fields of that
/// kind of event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TraceEvent {
    pub at_us: u64,
    pub node: String,
    /// `preference`, `asked`, `ack`, `newer`, `answer`, `stale`, `error`, `timeout`,
    /// `handover`, `quorum`, `noquorum`, `reply`, `reissue`, `hint`, `hint_failed`, `repair`,
    /// `repair_ack` or `repair_error`.
    pub what: String,
    /// `preference`: the node's state (`self`, `alive`, `suspect`, `down`, `up`, `unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `newer`, `answer`, `stale`, `reissue`, `repair`: a version, `<timestamp>@<node>`
    /// (`answer`/`stale` without one: the replica held nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `answer`: whether the version held is a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstone: Option<bool>,
    /// `asked`, `ack`, `hint`, `hint_failed`: the node a hint is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint_for: Option<String>,
    /// `error`, `noquorum`, `hint_failed`, `repair_error`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// `quorum`: answers or acknowledgements counted, and needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub got: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed: Option<u64>,
    /// `reply`: what the client got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// A whole trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TraceDoc {
    #[serde(flatten)]
    pub head: TraceHead,
    pub events: Vec<TraceEvent>,
}

impl TraceDoc {
    /// The API's form of a trace (the same JSON, typed for the document).
    pub fn of(trace: &rcluster_domain::trace::Trace) -> Option<TraceDoc> {
        serde_json::to_value(trace)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
    }
}

impl TraceSummary {
    pub fn of(s: &rcluster_domain::trace::Summary) -> Option<TraceSummary> {
        serde_json::to_value(s)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcluster_domain::trace::{Trace, What};

    #[test]
    fn every_event_kind_fits_the_documented_shape() {
        let mut t = Trace::new("t".into(), "RC.GET", "k", "n1", 1);
        let whats = [
            What::Preference {
                state: "self".into(),
            },
            What::Asked {
                hint_for: Some("n2".into()),
            },
            What::Ack { hint_for: None },
            What::Newer {
                version: "1@n1".into(),
            },
            What::Answer {
                version: None,
                tombstone: true,
            },
            What::Stale {
                version: Some("1@n2".into()),
            },
            What::Error { why: "x".into() },
            What::Timeout,
            What::Handover,
            What::Quorum { got: 2, needed: 2 },
            What::Noquorum { why: "y".into() },
            What::Reply {
                outcome: "OK".into(),
            },
            What::Reissue {
                version: "2@n1".into(),
            },
            What::Hint {
                hint_for: "n3".into(),
            },
            What::HintFailed {
                hint_for: "n3".into(),
                why: "z".into(),
            },
            What::Repair {
                version: "3@n1".into(),
            },
            What::RepairAck,
            What::RepairError { why: "w".into() },
        ];
        for (i, w) in whats.into_iter().enumerate() {
            t.push(i as u64, "n1", w);
        }
        let doc = TraceDoc::of(&t).expect("every event fits");
        assert_eq!(doc.events.len(), 18);
        assert_eq!(doc.events[5].what, "stale");
        assert_eq!(doc.events[9].got, Some(2));
        assert_eq!(doc.events[14].what, "hint_failed");
        // Nothing is lost between the two forms.
        let back: Trace = serde_json::from_value(serde_json::to_value(&doc).unwrap()).unwrap();
        assert_eq!(back, t);
        let s = TraceSummary::of(&t.summary()).unwrap();
        assert_eq!(s.events, 18);
    }
}
