//! `/api/faults`: injecting a fault (kind, its parameters, a time to live), the faults held, and
//! clearing them. The request body is `rcluster_domain::fault::Input` (checked by
//! `rcluster_domain::fault::check`); these types document it and the answers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A fault's kind and parameters (which ones a kind takes: see docs/faults.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FaultParams {
    /// crash, pause, partition, cut, latency, loss or skew.
    #[schema(example = "partition")]
    pub kind: String,
    /// crash, pause, latency, loss, skew: the nodes it hits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    /// crash, pause: redis (default), node or both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// partition: groups of nodes; links between groups are cut both ways (nodes not named
    /// form one more group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Vec<String>>>,
    /// cut: what these nodes send to `to` is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<String>>,
    /// latency: added delay in ms (not negative); skew: the clock shift in ms (signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<i64>,
    /// latency: the delay varies by up to this many ms either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<i64>,
    /// loss: share of messages lost, over 0 and at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// latency, loss: only the links between the targets and these nodes (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<String>>,
}

/// `POST /api/faults`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FaultRequest {
    #[serde(flatten)]
    pub params: FaultParams,
    /// Time to live in ms (default `faults.default_ttl_ms`, at most `faults.max_ttl_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// One fault as a node holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FaultView {
    /// `f-` and 16 hex digits.
    pub id: String,
    #[serde(flatten)]
    pub params: FaultParams,
    pub ttl_ms: u64,
    /// What it has left on the node that answered.
    pub expires_in_ms: u64,
    /// Injecting: the nodes that took it. Listing: the nodes it acts on.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Injecting: members that could not be reached (they do not hold it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// `GET /api/faults`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FaultList {
    /// The node that answered.
    pub node: String,
    pub faults: Vec<FaultView>,
}

/// `DELETE /api/faults` and `DELETE /api/faults/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FaultsCleared {
    /// The ids of the faults ended, on any node.
    pub cleared: Vec<String>,
    /// The nodes that were told.
    pub nodes: Vec<String>,
    /// Members that could not be reached (their faults end at their deadlines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
}

/// `?local=true`: the request concerns only the node that gets it (how nodes pass on an
/// injection or a clear; people leave it out).
#[derive(Clone, Copy, Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LocalQuery {
    /// Only this node (nodes use it among themselves).
    #[serde(default)]
    pub local: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcluster_domain::fault::{Fault, Held, Input, Spec};

    /// The documented request is what the handler parses, and a held fault reads as a view.
    #[test]
    fn the_documented_shapes_are_the_domain_ones() {
        let req = FaultRequest {
            params: FaultParams {
                kind: "latency".into(),
                targets: Some(vec!["n2".into()]),
                ms: Some(200),
                jitter_ms: Some(50),
                ..FaultParams::default()
            },
            ttl_ms: Some(30_000),
        };
        let input: Input = serde_json::from_value(serde_json::to_value(&req).unwrap()).unwrap();
        assert_eq!(input.ttl_ms, Some(30_000));
        assert_eq!(input.jitter_ms, Some(50));
        let held = Held {
            fault: Fault {
                id: "f-1".into(),
                spec: Spec::Loss {
                    targets: vec!["n2".into()],
                    percent: 20.0,
                    peers: None,
                },
                ttl_ms: 9,
            },
            expires_in_ms: 5,
        };
        let view: FaultView = serde_json::from_value(serde_json::to_value(&held).unwrap()).unwrap();
        assert_eq!(view.params.kind, "loss");
        assert_eq!(view.params.percent, Some(20.0));
        assert_eq!((view.ttl_ms, view.expires_in_ms), (9, 5));
    }
}
