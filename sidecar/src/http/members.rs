//! Membership over HTTP: `POST /api/nodes` admits a running node into the cluster and
//! `DELETE /api/nodes/{id}` makes a member leave, both committed through Raft on the leader
//! (a follower forwards the request). A member is added to the replicated member list first,
//! so every node learns its address and the modules start moving data to it, then made a Raft
//! voter; removal runs the other way round.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use rcluster_domain::config::NodeConfig;
use rcluster_domain::meta::{add_member, remove_member, Change, MemberError};
use rcluster_raft::MembershipChange;

use crate::api::{Cluster, ErrorCode, Health, NewNode, NodeAdded, NodeRemoved};
use crate::client;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::forward::{on_leader, raft, COMMIT_TIMEOUT};
use crate::http::input::JsonIn;
use crate::http::openapi::{
    AdminKey, BadRequest, BodyLimit, Conflict, JsonBody, NodeId, NotFound, ThroughLeader,
};
use crate::node::raft::RaftError;
use crate::node::view::Shared;

/// One membership change at a time on this node: each proposes a whole member list computed
/// from the current one.
static CHANGING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The answer to a membership request that the member-list rules refuse.
fn refused(e: MemberError) -> ApiError {
    let code = match &e {
        MemberError::BadHost(_) | MemberError::Invalid(_) => ErrorCode::BadNode,
        MemberError::AlreadyMember(_) => ErrorCode::AlreadyMember,
        MemberError::NotAMember { .. } => ErrorCode::NotAMember,
        MemberError::TooFewNodes { .. } => ErrorCode::TooFewNodes,
    };
    ApiError::new(code, e.to_string())
}

fn not_committed(what: &str) -> impl FnOnce(RaftError) -> ApiError + '_ {
    move |e| ApiError::from(e).context(&format!("{what} did not commit"))
}

/// Checks that the node answers on its HTTP port as the node it claims to be, of this cluster.
async fn check_running(s: &Shared, node: &NodeConfig) -> Result<(), ApiError> {
    let answer = client::health(&node.host, node.http_port, Duration::from_secs(3))
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorCode::NodeNotRunning,
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
    let health: Option<Health> = serde_json::from_slice(&answer.body).ok();
    let (id, cluster, redis_port) = health.as_ref().map_or(("", "", 0), |h| {
        (h.node.as_str(), h.cluster.as_str(), h.redis_port)
    });
    if id != node.id || cluster != s.config.cluster_name || redis_port != node.redis_port {
        return Err(ApiError::new(
            ErrorCode::NodeMismatch,
            format!(
                "{}:{} answers as node '{id}' of cluster '{cluster}' with Redis on port \
                 {redis_port}, not as '{}' of '{}' on {}",
                node.host, node.http_port, node.id, s.config.cluster_name, node.redis_port
            ),
        ));
    }
    if answer.status != 200 {
        return Err(ApiError::new(
            ErrorCode::NodeNotReady,
            format!("node {}'s Redis is not up yet; retry in a moment", node.id),
        ));
    }
    Ok(())
}

/// Admit a running node into the cluster through Raft (forwarded to the leader)
#[utoipa::path(
    post,
    path = "/api/nodes",
    operation_id = "nodeAdd",
    tag = "control",
    description = "Admin key. The node must already run (`rcluster node --id <id> --redis-port .. \
        --http-port .. --peer-port ..`, or use `rcluster node add`) and answer /api/health as \
        that id of this cluster. It becomes a member (every node learns its address and data \
        starts moving to it), then a Raft voter; the answer comes once both are committed. \
        Repeating the request for a node that is already a member with the same address \
        changes nothing (already_member: true).",
    request_body = NewNode,
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "A member and a voter.", body = NodeAdded),
        JsonBody,
        Conflict,
        AdminKey,
        ThroughLeader,
    )
)]
pub async fn add_node(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    JsonIn(body): JsonIn<NewNode>,
) -> Result<Json<NodeAdded>, ApiError> {
    caller.require_admin()?;
    let _one_at_a_time = CHANGING.lock().await;
    let node = NodeConfig {
        id: body.id,
        host: body.host,
        listen_host: None,
        redis_port: body.redis_port,
        http_port: body.http_port,
        peer_port: body.peer_port,
    };
    let joined = add_member(&s.members(), &node).map_err(refused)?;
    let new = NewNode {
        id: node.id.clone(),
        host: node.host.clone(),
        redis_port: node.redis_port,
        http_port: node.http_port,
        peer_port: node.peer_port,
    };
    let bytes = serde_json::to_vec(&new).unwrap_or_default();
    if let Some(answer) = on_leader(&s, &caller, "POST", "/api/nodes", Some(&bytes)).await? {
        return Ok(Json(answer));
    }
    let raft = raft(&s)?;
    let mut index = None;
    if let Some(members) = joined {
        check_running(&s, &node).await?;
        let i = raft
            .propose(Change::Members(members), COMMIT_TIMEOUT)
            .await
            .map_err(not_committed(&format!("adding member {}", node.id)))?;
        index = Some(i);
    }
    if !raft.status().voters.contains(&node.id) {
        let i = raft
            .change_voters(MembershipChange::AddNode(node.id.clone()), COMMIT_TIMEOUT)
            .await
            .map_err(not_committed(&format!("making {} a Raft voter", node.id)))?;
        index = Some(i);
    }
    Ok(Json(NodeAdded {
        added: node.id,
        already_member: index.is_none(),
        committed_index: index,
        leader: s.me.id.clone(),
        members: s.members().iter().map(|m| m.id.clone()).collect(),
    }))
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
        let view: Option<Cluster> = serde_json::from_slice(&answer.body).ok();
        if view
            .and_then(|v| v.raft)
            .is_some_and(|r| r.applied >= index)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Make a member leave the cluster through Raft (forwarded to the leader)
///
/// Its data moves to the remaining members in the background (progress in GET /api/nodes,
/// `cluster:events` and `/metrics`).
#[utoipa::path(
    delete,
    path = "/api/nodes/{id}",
    operation_id = "nodeRemove",
    tag = "control",
    description = "Admin key. The member leaves the member list (its data moves to the \
        remaining members, the leaving node hands over its copies and drops them), then the \
        Raft voters. Refused with 409 TOO_FEW_NODES when fewer nodes than n would remain.",
    params(NodeId),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "No longer a member nor a voter.", body = NodeRemoved),
        BadRequest,
        NotFound,
        Conflict,
        AdminKey,
        ThroughLeader,
        BodyLimit,
    )
)]
pub async fn remove_node(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<NodeRemoved>, ApiError> {
    caller.require_admin()?;
    let _one_at_a_time = CHANGING.lock().await;
    let members = s.members();
    let raft = raft(&s)?;
    let is_voter = raft.status().voters.contains(&id);
    let remaining =
        remove_member(&members, &id, is_voter, raft.meta().quorum.n).map_err(refused)?;
    let path = format!("/api/nodes/{id}");
    if let Some(answer) = on_leader(&s, &caller, "DELETE", &path, None).await? {
        return Ok(Json(answer));
    }
    let mut index = None;
    if let Some(remaining) = remaining {
        let i = raft
            .propose(Change::Members(remaining), COMMIT_TIMEOUT)
            .await
            .map_err(not_committed(&format!("removing member {id}")))?;
        index = Some(i);
        if let Some(leaving) = members.iter().find(|m| m.id == id) {
            await_applied(leaving, &caller.key, i).await;
        }
    }
    if raft.status().voters.contains(&id) {
        let i = raft
            .change_voters(MembershipChange::RemoveNode(id.clone()), COMMIT_TIMEOUT)
            .await
            .map_err(not_committed(&format!("removing Raft voter {id}")))?;
        index = Some(i);
    }
    Ok(Json(NodeRemoved {
        removed: id,
        committed_index: index,
        leader: s.me.id.clone(),
        members: s.members().iter().map(|m| m.id.clone()).collect(),
    }))
}
