//! `GET /api/health`: one node's own health, with no key.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The state of a node's redis-server as its node process supervises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RedisState {
    Starting,
    Running,
    /// Stopped on request; started again only on request.
    Stopped,
    /// Crashed; restarting after the configured delay.
    Restarting,
    /// Crashed too often, or could not start; started again only on request.
    Failed,
}

impl RedisState {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisState::Starting => "starting",
            RedisState::Running => "running",
            RedisState::Stopped => "stopped",
            RedisState::Restarting => "restarting",
            RedisState::Failed => "failed",
        }
    }
}

/// A node's health (status 200 when its Redis answers, else 503 with the same body).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// The node's id.
    pub node: String,
    /// The cluster's name.
    pub cluster: String,
    /// The node process's version.
    pub version: String,
    #[schema(minimum = 1, maximum = 65535)]
    pub redis_port: u16,
    #[schema(minimum = 1, maximum = 65535)]
    pub http_port: u16,
    /// The node's Redis answered INFO within 500 ms.
    pub redis_up: bool,
    pub redis_state: RedisState,
    /// Set while redis_state is running.
    pub redis_pid: Option<u32>,
    /// This node is in the replicated member list.
    pub member: bool,
    /// Registers this node's Redis holds (null when Redis does not answer).
    pub kv_keys: Option<i64>,
    /// File chunks this node's Redis holds (null when Redis does not answer).
    pub chunks: Option<i64>,
}
