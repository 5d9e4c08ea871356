//! `GET /api/nodes`: every node as this node sees it, with each node's redistribution progress
//! (read key); `POST /api/nodes/{id}/stop|start|restart`: stop, start or restart a node's Redis
//! (admin key; another node's id is forwarded to that node, which supervises that Redis).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;

use crate::api::{ActionResult, ErrorCode, NodeAction, NodeRow, NodeState, Nodes};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::forward::forward;
use crate::http::openapi::{AdminKey, BodyLimit, ControlLayers, NodeId, ReadKey};
use crate::node::view::{raft_seen, unix_ms, Shared};

/// How long a forwarded action may take (a restart waits for Redis to load its data).
const ACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Every member as this node sees it; its own row, and the Raft leader it knows, as of now.
pub fn node_rows(s: &Shared) -> Vec<NodeRow> {
    let own = s.own_live();
    let raft = s.raft.get().map(|r| r.status());
    let members = s.members();
    let nodes = s.nodes();
    members
        .iter()
        .map(|n| {
            let v = nodes.get(&n.id);
            let mine = n.id == s.me.id;
            let summary = if mine {
                Some(&own.summary)
            } else {
                v.map(|v| &v.summary)
            };
            let (state, reason) = match (mine, v) {
                (true, _) => (Some(own.liveness), Some(own.reason.clone())),
                (false, v) => (v.map(|v| v.liveness), v.map(|v| v.reason.clone())),
            };
            let raft_seen =
                summary.map(|s| raft_seen(&n.id, (&s.raft_role, s.raft_term), raft.as_ref()));
            NodeRow {
                id: n.id.clone(),
                host: n.host.clone(),
                redis_port: n.redis_port,
                http_port: n.http_port,
                peer_port: n.peer_port,
                is_self: n.id == s.me.id,
                state: state.map(NodeState::from),
                reason,
                phi: v.map(|v| (v.phi * 100.0).round() / 100.0),
                last_heartbeat_age_ms: v
                    .and_then(|v| v.last_heartbeat_unix_ms)
                    .map(|t| unix_ms().saturating_sub(t)),
                rtt_ms: v.and_then(|v| v.rtt_ms),
                redis_up: summary.map(|s| s.redis_up),
                redis_state: summary.map(|s| s.redis_state.clone()),
                redis_reason: summary.map(|s| s.redis_reason.clone()),
                redis_restarts: summary.map(|s| s.redis_restarts),
                redis_next_attempt_unix_ms: summary.and_then(|s| s.redis_next_attempt_unix_ms),
                kv_keys: summary.and_then(|s| s.kv_keys),
                used_memory_bytes: summary.and_then(|s| s.used_memory_bytes),
                drift_ms: summary.and_then(|s| s.drift_ms),
                time_source: summary.map(|s| s.time_source.clone()),
                raft_role: raft_seen.as_ref().map(|r| r.0.clone()),
                raft_term: raft_seen.map(|r| r.1),
                raft_commit_index: summary.map(|s| s.raft_commit_index),
                topology_epoch: summary.map(|s| s.topology_epoch),
                transition_open: summary.map(|s| s.transition_open),
                redistribution: summary.and_then(|s| s.redistribution),
            }
        })
        .collect()
}

/// Every node as this node sees it
#[utoipa::path(
    get,
    path = "/api/nodes",
    operation_id = "nodes",
    tag = "control",
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "Every member, with its redistribution progress.", body = Nodes),
        ReadKey,
        BodyLimit,
    )
)]
pub async fn nodes(State(s): State<Arc<Shared>>, _caller: Caller) -> Json<Nodes> {
    Json(Nodes {
        observer: s.me.id.clone(),
        nodes: node_rows(&s),
    })
}

/// Stops, starts or restarts node `id`'s Redis: here when it is this node, else on that node.
async fn act(
    s: &Shared,
    caller: Caller,
    id: String,
    action: NodeAction,
) -> Result<Json<ActionResult>, ApiError> {
    caller.require_admin()?;
    let Some(target) = s.member(&id) else {
        return Err(ApiError::new(
            ErrorCode::UnknownNode,
            format!("no node '{id}' in the cluster"),
        ));
    };
    if target.id != s.me.id {
        // Another node's Redis is supervised by that node: forward the request to it.
        let path = format!("/api/nodes/{id}/{}", action.as_str());
        let answer = forward(&target, "POST", &path, &caller.key, None, ACTION_TIMEOUT).await?;
        return Ok(Json(answer));
    }
    let result = s
        .redis
        .control(action)
        .await
        .map_err(|e| ApiError::new(ErrorCode::ActionFailed, e.to_string()))?;
    tracing::info!(
        node = %s.me.id,
        "{} by key '{}': {result}",
        action.as_str(),
        caller.name
    );
    Ok(Json(ActionResult {
        node: id,
        action,
        result,
        redis_state: s.redis.state.borrow().kind(),
    }))
}

/// Declares the handler of one action, documented as its own operation.
macro_rules! action_route {
    ($name:ident, $action:expr, $path:literal, $op:literal, $summary:literal) => {
        #[doc = $summary]
        #[utoipa::path(
            post,
            path = $path,
            operation_id = $op,
            tag = "control",
            description = "Admin key. For another node's id the request is forwarded to that \
                node; an error answer of that node comes back with its status and code \
                FORWARDED_ERROR.",
            params(NodeId),
            security(("bearerAuth" = []), ("apiKeyHeader" = [])),
            responses(
                (status = 200, description = "What happened.", body = ActionResult),
                crate::http::openapi::NotFound,
                crate::http::openapi::InternalError,
                crate::http::openapi::BadGateway,
                crate::http::openapi::BadRequest,
                AdminKey,
                ControlLayers,
            )
        )]
        pub async fn $name(
            State(s): State<Arc<Shared>>,
            caller: Caller,
            Path(id): Path<String>,
        ) -> Result<Json<ActionResult>, ApiError> {
            act(&s, caller, id, $action).await
        }
    };
}

action_route!(
    stop,
    NodeAction::Stop,
    "/api/nodes/{id}/stop",
    "nodeStop",
    "Stop a node's Redis"
);
action_route!(
    start,
    NodeAction::Start,
    "/api/nodes/{id}/start",
    "nodeStart",
    "Start a node's Redis"
);
action_route!(
    restart,
    NodeAction::Restart,
    "/api/nodes/{id}/restart",
    "nodeRestart",
    "Restart a node's Redis"
);
