//! Requests this node hands to another: a node action to the node that supervises that Redis,
//! and a metadata change to the Raft leader. The other node's answer comes back typed, or as an
//! error naming that node and what it said.

use std::time::Duration;

use axum::http::StatusCode;
use rcluster_domain::config::NodeConfig;
use serde::de::DeserializeOwned;

use crate::api::ErrorCode;
use crate::client;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::node::raft::RaftHandle;
use crate::node::view::Shared;

/// How long one Raft step may take to commit before the API gives up (the caller may retry:
/// every change is idempotent).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends the caller's request on to `node` (with the caller's key) and returns its answer: the
/// body on 200, else an error naming that node and what it said.
pub async fn forward<T: DeserializeOwned>(
    node: &NodeConfig,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<T, ApiError> {
    let answer = client::request(
        method,
        &node.host,
        node.http_port,
        path,
        Some(key),
        body,
        timeout,
    )
    .await
    .map_err(|e| ApiError::new(ErrorCode::NodeUnreachable, format!("node {}: {e}", node.id)))?;
    if answer.status == 200 {
        return serde_json::from_slice(&answer.body).map_err(|e| {
            ApiError::new(
                ErrorCode::NodeUnreachable,
                format!(
                    "node {} sent an answer that is not the expected JSON: {e}",
                    node.id
                ),
            )
        });
    }
    Err(ApiError::forwarded(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY),
        format!(
            "node {} answered {}: {}",
            node.id,
            answer.status,
            answer.text()
        ),
    ))
}

/// This node's Raft driver, once started.
pub fn raft(s: &Shared) -> Result<&RaftHandle, ApiError> {
    s.raft
        .get()
        .ok_or_else(|| ApiError::new(ErrorCode::RaftNotReady, "raft has not started yet"))
}

/// `None` when this node leads (the caller goes on here); otherwise the leader's answer to the
/// same request, or why there is none.
pub async fn on_leader<T: DeserializeOwned>(
    s: &Shared,
    caller: &Caller,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<Option<T>, ApiError> {
    let status = raft(s)?.status();
    if status.role == "leader" {
        return Ok(None);
    }
    let Some(leader) = status.leader.as_deref().and_then(|l| s.member(l)) else {
        return Err(ApiError::new(
            ErrorCode::NoLeader,
            "no Raft leader is known right now; retry in a moment",
        ));
    };
    forward(&leader, method, path, &caller.key, body, COMMIT_TIMEOUT * 3)
        .await
        .map(Some)
}
