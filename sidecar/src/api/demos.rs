//! `POST /api/demos`, `GET /api/demos`, `GET /api/demos/{id}`, `DELETE /api/demos/{id}`: the
//! guided scenarios a node runs (the request, the run's step, narration and verdict).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Start a guided scenario.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDemo {
    /// normal, node-failure, scaling, resources or trade-offs.
    #[schema(example = "normal")]
    pub name: String,
    /// The short mode: fewer keys, shorter loads (what the tests run).
    #[serde(default)]
    pub short: bool,
}

/// A scenario was started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DemoStarted {
    pub id: String,
}

/// The step a run is at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DemoStep {
    /// 1-based; 0 before the first step.
    pub index: u32,
    pub of: u32,
    pub title: String,
}

/// One line the scenario said, `at_ms` after it started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DemoLine {
    pub at_ms: u64,
    pub text: String,
}

/// A run of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Demo {
    pub id: String,
    pub name: String,
    pub short: bool,
    /// running, passed, failed, stopped or error.
    pub state: String,
    pub step: DemoStep,
    pub narration: Vec<DemoLine>,
    /// What was measured at the end and whether it holds (`passed`), per scenario (see
    /// docs/scenarios.md); null until the end.
    #[schema(value_type = Option<Object>)]
    pub verdict: Option<serde_json::Value>,
    /// Why the run ended in error.
    pub error: Option<String>,
}

/// Every run this node started since it started, newest last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DemoList {
    pub demos: Vec<Demo>,
}
