//! `GET /api/cluster`: the cluster as this node sees it (read key); `PUT /api/cluster/quorum`
//! and `PUT /api/cluster/settings`: change the replicated metadata through Raft (admin key;
//! forwarded to the leader, answered once committed there).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use rcluster_domain::meta::Change;

use crate::api::{Cluster, ErrorCode, Quorum, QuorumChanged, Settings, SettingsChanged};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::forward::{on_leader, raft, COMMIT_TIMEOUT};
use crate::http::input::JsonIn;
use crate::http::nodes::node_rows;
use crate::http::openapi::{AdminKey, ControlLayers, JsonBody, ReadKey, ThroughLeader};
use crate::node::raft::RaftHandle;
use crate::node::view::Shared;

/// The cluster as this node sees it
#[utoipa::path(
    get,
    path = "/api/cluster",
    operation_id = "cluster",
    tag = "control",
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "Settings, Raft, clock and every node.", body = Cluster),
        ReadKey,
        ControlLayers,
    )
)]
pub async fn cluster(State(s): State<Arc<Shared>>, _caller: Caller) -> Json<Cluster> {
    let raft = s.raft.get();
    Json(Cluster {
        cluster: s.config.cluster_name.clone(),
        observer: s.me.id.clone(),
        quorum: s.config.quorum.into(),
        vnodes: raft.map_or(s.config.vnodes, |r| r.meta().vnodes),
        chunk_size_bytes: s.chunk_size_bytes(),
        heartbeat_ms: s.config.intervals.heartbeat_ms,
        time: s.time(),
        raft: raft.map(|r| r.status()),
        replicated_quorum: raft.map(|r| r.meta().quorum.into()),
        nodes: node_rows(&s),
    })
}

/// For a change of cluster metadata: this node's Raft when it leads, else the leader's answer
/// to the same request (`Err`).
async fn leader_raft<'a, T: serde::de::DeserializeOwned>(
    s: &'a Shared,
    caller: &Caller,
    path: &str,
    body: &impl serde::Serialize,
) -> Result<Result<&'a RaftHandle, T>, ApiError> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    match on_leader(s, caller, "PUT", path, Some(&bytes)).await? {
        Some(answer) => Ok(Err(answer)),
        None => raft(s).map(Ok),
    }
}

/// Change the cluster's default N/W/R through Raft (forwarded to the leader)
#[utoipa::path(
    put,
    path = "/api/cluster/quorum",
    operation_id = "setQuorum",
    tag = "control",
    description = "Admin key. Needs 1 <= w, r <= n <= the node count. Answers once committed \
        and applied on the node that took it. A quorum with w + r <= n is accepted with a \
        `warning`: a read may then miss a write that was acknowledged.",
    request_body = Quorum,
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "Committed.", body = QuorumChanged),
        JsonBody,
        AdminKey,
        ThroughLeader,
        ControlLayers,
    )
)]
pub async fn set_quorum(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    JsonIn(body): JsonIn<Quorum>,
) -> Result<Json<QuorumChanged>, ApiError> {
    caller.require_admin()?;
    let Quorum { n, w, r } = body;
    let change = Change::Quorum { n, w, r };
    change
        .check(s.members().len())
        .map_err(|e| ApiError::new(ErrorCode::BadQuorum, e.to_string()))?;
    let raft = match leader_raft(&s, &caller, "/api/cluster/quorum", &body).await? {
        Ok(raft) => raft,
        Err(answer) => return Ok(Json(answer)),
    };
    let index = raft.propose(change, COMMIT_TIMEOUT).await?;
    Ok(Json(QuorumChanged {
        committed_index: index,
        quorum: body,
        leader: s.me.id.clone(),
        warning: body.warning(),
    }))
}

/// Change the ring's virtual nodes per node and the chunk size of new uploads through Raft (forwarded to the leader)
#[utoipa::path(
    put,
    path = "/api/cluster/settings",
    operation_id = "setSettings",
    tag = "control",
    description = "Admin key. A vnodes change moves the data whose placement changed (progress \
        in GET /api/nodes, on cluster:events and in /metrics). A file keeps the chunk size it \
        was cut with.",
    request_body = Settings,
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "Committed.", body = SettingsChanged),
        JsonBody,
        AdminKey,
        ThroughLeader,
        ControlLayers,
    )
)]
pub async fn set_settings(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    JsonIn(body): JsonIn<Settings>,
) -> Result<Json<SettingsChanged>, ApiError> {
    caller.require_admin()?;
    let bad = |m: String| ApiError::new(ErrorCode::BadSettings, m);
    if body.vnodes.is_none() && body.chunk_size_bytes.is_none() {
        return Err(bad("give vnodes and/or chunk_size_bytes".into()));
    }
    let mut changes = Vec::new();
    if let Some(vnodes) = body.vnodes {
        changes.push(Change::Vnodes { vnodes });
    }
    if let Some(bytes) = body.chunk_size_bytes {
        changes.push(Change::ChunkSize { bytes });
    }
    let nodes = s.members().len();
    for change in &changes {
        change.check(nodes).map_err(|e| bad(e.to_string()))?;
    }
    let raft = match leader_raft(&s, &caller, "/api/cluster/settings", &body).await? {
        Ok(raft) => raft,
        Err(answer) => return Ok(Json(answer)),
    };
    let mut index = 0;
    for change in changes {
        index = raft.propose(change, COMMIT_TIMEOUT).await?;
    }
    let meta = raft.meta();
    Ok(Json(SettingsChanged {
        committed_index: index,
        vnodes: meta.vnodes,
        chunk_size_bytes: meta.chunk_size_bytes,
        leader: s.me.id.clone(),
    }))
}
