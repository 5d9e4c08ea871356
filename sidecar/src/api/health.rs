//! `GET /api/health`: one node's own health, with no key.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The state of a node's redis-server as its node process supervises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RedisState {
    /// Starting: loading its data.
    Starting,
    Running,
    /// Stopped on request (or after a crash with supervision.restart_on_crash off); started
    /// again only on request.
    Stopped,
    /// Crashed once; started again after supervision.restart_delay_ms.
    Restarting,
    /// Crashed or failed to start several times in a row; started again after a pause that
    /// doubles each time, up to supervision.max_restart_delay_ms. The supervisor never gives up.
    CrashLooping,
    /// Cannot start as configured (a port held by another process, a configuration Redis
    /// refuses); started again only on request.
    CannotStart,
}

impl RedisState {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisState::Starting => "starting",
            RedisState::Running => "running",
            RedisState::Stopped => "stopped",
            RedisState::Restarting => "restarting",
            RedisState::CrashLooping => "crash_looping",
            RedisState::CannotStart => "cannot_start",
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
    /// Why Redis is in that state (the last crash, why it cannot start), null while it runs.
    pub redis_reason: Option<String>,
    /// Failures of its Redis in a row (crashes and failed starts) behind the state.
    #[serde(default)]
    pub redis_restarts: u32,
    /// When the supervisor starts Redis again (Unix ms), while it waits to.
    pub redis_next_attempt_unix_ms: Option<u64>,
    /// Set while redis_state is running.
    pub redis_pid: Option<u32>,
    /// This node is in the replicated member list.
    pub member: bool,
    /// Registers this node's Redis holds (null when Redis does not answer).
    pub kv_keys: Option<i64>,
    /// File chunks this node's Redis holds (null when Redis does not answer).
    pub chunks: Option<i64>,
}
