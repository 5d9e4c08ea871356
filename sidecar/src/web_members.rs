//! Membership over HTTP: `POST /api/nodes` admits a running node into the cluster and
//! `DELETE /api/nodes/{id}` makes a member leave, both committed through Raft on the leader
//! (a follower forwards the request). A member is added to the replicated member list first,
//! so every node learns its address and the modules start moving data to it, then made a Raft
//! voter; removal runs the other way round.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use rcluster_domain::config::NodeConfig;
use rcluster_domain::meta::{add_member, remove_member, Change, MemberError};
use rcluster_raft::MembershipChange;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client;
use crate::node::raft::RaftHandle;
use crate::node::view::Shared;
use crate::web::{forward, ApiError, Caller};

/// How long one Raft step may take to commit before the API gives up (the caller may retry:
/// both steps are idempotent).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// One membership change at a time on this node: each proposes a whole member list computed
/// from the current one.
static CHANGING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/nodes", post(add_node))
        .route("/api/nodes/{id}", delete(remove_node))
}

/// The node to admit, as it listens (host defaults to 127.0.0.1).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBody {
    id: String,
    #[serde(default = "default_host")]
    host: String,
    redis_port: u16,
    http_port: u16,
    peer_port: u16,
}

fn default_host() -> String {
    "127.0.0.1".into()
}

pub fn raft(s: &Shared) -> Result<&RaftHandle, ApiError> {
    s.raft.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "RAFT_NOT_READY",
            "raft has not started yet",
        )
    })
}

/// `None` when this node leads (the caller goes on here); otherwise the leader's answer to the
/// same request, or why there is none.
pub async fn on_leader(
    s: &Shared,
    caller: &Caller,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<Option<Json<Value>>, ApiError> {
    let status = raft(s)?.status();
    if status.role == "leader" {
        return Ok(None);
    }
    let Some(leader) = status.leader.as_deref().and_then(|l| s.member(l)) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NO_LEADER",
            "no Raft leader is known right now; retry in a moment",
        ));
    };
    forward(&leader, method, path, &caller.key, body, COMMIT_TIMEOUT * 3)
        .await
        .map(Some)
}

/// The answer to a membership request that the member-list rules refuse.
fn refused(e: MemberError) -> ApiError {
    let (status, code) = match &e {
        MemberError::BadHost(_) | MemberError::Invalid(_) => (StatusCode::BAD_REQUEST, "BAD_NODE"),
        MemberError::AlreadyMember(_) => (StatusCode::CONFLICT, "ALREADY_MEMBER"),
        MemberError::NotAMember { .. } => (StatusCode::NOT_FOUND, "NOT_A_MEMBER"),
        MemberError::TooFewNodes { .. } => (StatusCode::CONFLICT, "TOO_FEW_NODES"),
    };
    ApiError::new(status, code, e.to_string())
}

fn not_committed(what: &str, e: String) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "NOT_COMMITTED",
        format!("{what} did not commit: {e}; the request can be repeated"),
    )
}

/// Checks that the node answers on its HTTP port as the node it claims to be, of this cluster.
async fn check_running(s: &Shared, node: &NodeConfig) -> Result<(), ApiError> {
    let answer = client::health(&node.host, node.http_port, Duration::from_secs(3))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::CONFLICT,
                "NODE_NOT_RUNNING",
                format!(
                "node {} does not answer on {}:{} ({e}); start it first: rcluster node --id {} \
                 --host {} --redis-port {} --http-port {} --peer-port {}",
                node.id,
                node.host,
                node.http_port,
                node.id,
                node.host,
                node.redis_port,
                node.http_port,
                node.peer_port
            ),
            )
        })?;
    let health: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let (id, cluster, redis_port) = (
        health["node"].as_str().unwrap_or_default(),
        health["cluster"].as_str().unwrap_or_default(),
        health["redis_port"].as_u64().unwrap_or_default(),
    );
    if id != node.id || cluster != s.config.cluster_name || redis_port != u64::from(node.redis_port)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "NODE_MISMATCH",
            format!(
                "{}:{} answers as node '{id}' of cluster '{cluster}' with Redis on port \
                 {redis_port}, not as '{}' of '{}' on {}",
                node.host, node.http_port, node.id, s.config.cluster_name, node.redis_port
            ),
        ));
    }
    if answer.status != 200 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "NODE_NOT_READY",
            format!("node {}'s Redis is not up yet; retry in a moment", node.id),
        ));
    }
    Ok(())
}

/// `POST /api/nodes`: admits a running node (member, then voter); answers once both committed.
async fn add_node(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Json(body): Json<NodeBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let _one_at_a_time = CHANGING.lock().await;
    let node = NodeConfig {
        id: body.id,
        host: body.host,
        redis_port: body.redis_port,
        http_port: body.http_port,
        peer_port: body.peer_port,
    };
    let joined = add_member(&s.members(), &node).map_err(refused)?;
    let json = json!({
        "id": node.id, "host": node.host, "redis_port": node.redis_port,
        "http_port": node.http_port, "peer_port": node.peer_port,
    });
    let bytes = serde_json::to_vec(&json).unwrap_or_default();
    if let Some(answer) = on_leader(&s, &caller, "POST", "/api/nodes", Some(&bytes)).await? {
        return Ok(answer);
    }
    let raft = raft(&s)?;
    let mut index = None;
    if let Some(members) = joined {
        check_running(&s, &node).await?;
        let i = raft
            .propose(Change::Members(members), COMMIT_TIMEOUT)
            .await
            .map_err(|e| not_committed(&format!("adding member {}", node.id), e))?;
        index = Some(i);
    }
    if !raft.status().voters.contains(&node.id) {
        let i = raft
            .change_voters(MembershipChange::AddNode(node.id.clone()), COMMIT_TIMEOUT)
            .await
            .map_err(|e| not_committed(&format!("making {} a Raft voter", node.id), e))?;
        index = Some(i);
    }
    Ok(Json(json!({
        "added": node.id,
        "already_member": index.is_none(),
        "committed_index": index,
        "leader": s.me.id,
        "members": s.members().iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
    })))
}

/// Waits (bounded) until `node` applied entry `index`. A leaving node must learn that it left
/// while it is still a voter: once it is not, the leader stops replicating to it, and it would
/// keep its data instead of handing it over. A node that does not answer is not waited for.
async fn await_applied(node: &NodeConfig, key: &str, index: u64) {
    let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        let answer = client::request(
            "GET",
            &node.host,
            node.http_port,
            "/api/cluster",
            Some(key),
            None,
            Duration::from_secs(1),
        )
        .await;
        let Ok(answer) = answer else { return };
        let view: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        if view["raft"]["applied"].as_u64().unwrap_or(0) >= index {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `DELETE /api/nodes/{id}`: makes a member leave (member list, then voters). Its data moves to
/// the remaining members in the background (progress in `cluster:events` and `/metrics`).
async fn remove_node(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let _one_at_a_time = CHANGING.lock().await;
    let members = s.members();
    let raft = raft(&s)?;
    let is_voter = raft.status().voters.contains(&id);
    let remaining =
        remove_member(&members, &id, is_voter, raft.meta().quorum.n).map_err(refused)?;
    let path = format!("/api/nodes/{id}");
    if let Some(answer) = on_leader(&s, &caller, "DELETE", &path, None).await? {
        return Ok(answer);
    }
    let mut index = None;
    if let Some(remaining) = remaining {
        let i = raft
            .propose(Change::Members(remaining), COMMIT_TIMEOUT)
            .await
            .map_err(|e| not_committed(&format!("removing member {id}"), e))?;
        index = Some(i);
        if let Some(leaving) = members.iter().find(|m| m.id == id) {
            await_applied(leaving, &caller.key, i).await;
        }
    }
    if raft.status().voters.contains(&id) {
        let i = raft
            .change_voters(MembershipChange::RemoveNode(id.clone()), COMMIT_TIMEOUT)
            .await
            .map_err(|e| not_committed(&format!("removing Raft voter {id}"), e))?;
        index = Some(i);
    }
    Ok(Json(json!({
        "removed": id,
        "committed_index": index,
        "leader": s.me.id,
        "members": s.members().iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
    })))
}
