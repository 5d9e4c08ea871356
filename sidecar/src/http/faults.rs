//! `/api/faults` (admin key): inject a fault (checked, then handed to every member, each of
//! which holds its own copy with its own deadline), list the faults this node holds, and clear
//! one or all on every member that can be reached. Nodes pass injections and clears on to each
//! other through the same API (`PUT /api/faults/{id}`, `?local=true`) with the caller's key;
//! this control traffic is never subject to the faults themselves.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use rcluster_domain::config::NodeConfig;
use rcluster_domain::fault::{check, Fault, Held, Input};

use crate::api::faults::{FaultList, FaultRequest, FaultView, FaultsCleared, LocalQuery};
use crate::api::ErrorCode;
use crate::client;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::input::JsonIn;
use crate::http::openapi::{AdminKey, BadRequest, ControlLayers, JsonBody, NotFound};
use crate::node::faults;
use crate::node::view::Shared;

/// How long one member may take to take or clear a fault (at most a third of the request's own
/// time limit, so a member that hangs is reported, not the whole request timed out).
const PASS_ON_TIMEOUT: Duration = Duration::from_secs(3);

/// `{id}` of a fault.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FaultId {
    /// A fault id (`f-` and 16 hex digits).
    pub id: String,
}

/// A held fault as the API shows it.
fn view(held: &Held, nodes: Vec<String>, unreachable: Vec<String>) -> Result<FaultView, ApiError> {
    let mut v: FaultView = serde_json::to_value(held)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot show a fault: {e}")))?;
    v.nodes = nodes;
    v.unreachable = unreachable;
    Ok(v)
}

fn member_ids(s: &Shared) -> Vec<String> {
    s.members().into_iter().map(|m| m.id).collect()
}

/// Sends one request to every other member at once; splits them into those that answered 2xx
/// and those that did not (each with why, logged).
async fn pass_on(
    s: &Shared,
    caller: &Caller,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let others: Vec<NodeConfig> = s
        .members()
        .into_iter()
        .filter(|m| m.id != s.me.id)
        .collect();
    let timeout = PASS_ON_TIMEOUT.min(Duration::from_millis(s.config.api.request_timeout_ms / 3));
    let calls = others.iter().map(|m| async move {
        let answer = client::request(
            method,
            &m.host,
            m.http_port,
            path,
            Some(&caller.key),
            body,
            timeout,
        )
        .await;
        (m.id.clone(), answer)
    });
    let mut took = Vec::new();
    let mut missed = Vec::new();
    for (id, answer) in futures_util::future::join_all(calls).await {
        match answer {
            Ok(r) if (200..300).contains(&r.status) => took.push((id, r.body)),
            Ok(r) => {
                tracing::warn!(node = %s.me.id, "{method} {path} on {id}: {} {}", r.status, r.text());
                missed.push(id);
            }
            Err(e) => {
                tracing::warn!(node = %s.me.id, "{method} {path} on {id}: {e}");
                missed.push(id);
            }
        }
    }
    (took, missed)
}

fn new_id() -> String {
    use std::hash::BuildHasher;
    let n = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    format!("f-{n:016x}")
}

/// Inject a fault
#[utoipa::path(
    post,
    path = "/api/faults",
    operation_id = "faultInject",
    tag = "faults",
    description = "Admin key. Checks the fault against the members and `faults.max_ttl_ms` \
        (nothing is injected when a check fails), then hands it to every member: each holds \
        its own copy and ends it at its own deadline, also when this node is gone. Members that \
        cannot be reached are listed in `unreachable`.",
    request_body = FaultRequest,
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 201, description = "The fault, and the nodes that took it.", body = FaultView),
        JsonBody,
        AdminKey,
        ControlLayers,
    )
)]
pub async fn inject(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    JsonIn(req): JsonIn<FaultRequest>,
) -> Result<(StatusCode, Json<FaultView>), ApiError> {
    caller.require_admin()?;
    // The documented request and the checked input are the same fields (a test in
    // `api::faults` keeps them so).
    let input: Input = serde_json::to_value(&req)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
    let members = member_ids(&s);
    let spec = check(&input, &members, &s.config.faults)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e))?;
    let ttl_ms = input.ttl_ms.unwrap_or(s.config.faults.default_ttl_ms);
    let held = Held {
        fault: Fault {
            id: new_id(),
            spec,
            ttl_ms,
        },
        expires_in_ms: ttl_ms,
    };
    let body =
        serde_json::to_vec(&held).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    // The others first: a crash aimed at this node must not stop it passing the fault on.
    let path = format!("/api/faults/{}", held.fault.id);
    let (took, unreachable) = pass_on(&s, &caller, "PUT", &path, Some(&body)).await;
    faults::apply(&s, held.clone()).await;
    let mut nodes: Vec<String> = took.into_iter().map(|(id, _)| id).collect();
    nodes.push(s.me.id.clone());
    nodes.sort();
    tracing::info!(
        node = %s.me.id,
        "fault {} ({}) injected by key '{}' on {}",
        held.fault.id,
        held.fault.spec.kind(),
        caller.name,
        nodes.join(", ")
    );
    Ok((StatusCode::CREATED, Json(view(&held, nodes, unreachable)?)))
}

/// Hold a fault on this node
#[utoipa::path(
    put,
    path = "/api/faults/{id}",
    operation_id = "faultHold",
    tag = "faults",
    description = "Admin key. How a node passes an injected fault on to the others: this node \
        holds it (replacing one with the same id) until `expires_in_ms` has passed. People use \
        `POST /api/faults`.",
    params(FaultId),
    request_body = FaultView,
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The fault as this node holds it.", body = FaultView),
        JsonBody,
        AdminKey,
        ControlLayers,
    )
)]
pub async fn hold(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
    Json(held): Json<Held>,
) -> Result<Json<FaultView>, ApiError> {
    caller.require_admin()?;
    if held.fault.id != id {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "the body is fault '{}', the path names '{id}'",
                held.fault.id
            ),
        ));
    }
    if held.fault.ttl_ms > s.config.faults.max_ttl_ms {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "ttl_ms {} is over the maximum of {} ms (faults.max_ttl_ms)",
                held.fault.ttl_ms, s.config.faults.max_ttl_ms
            ),
        ));
    }
    faults::apply(&s, held.clone()).await;
    Ok(Json(view(&held, vec![s.me.id.clone()], Vec::new())?))
}

/// The faults this node holds
#[utoipa::path(
    get,
    path = "/api/faults",
    operation_id = "faults",
    tag = "faults",
    description = "Admin key. Every fault this node holds, with the time it has left here and \
        the nodes it acts on.",
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The faults held here.", body = FaultList),
        AdminKey,
        ControlLayers,
    )
)]
pub async fn list(
    State(s): State<Arc<Shared>>,
    caller: Caller,
) -> Result<Json<FaultList>, ApiError> {
    caller.require_admin()?;
    let members = member_ids(&s);
    let faults = faults::list()
        .iter()
        .map(|h| {
            let on: Vec<String> = members
                .iter()
                .filter(|m| h.fault.spec.concerns(m, &members))
                .cloned()
                .collect();
            view(h, on, Vec::new())
        })
        .collect::<Result<_, _>>()?;
    Ok(Json(FaultList {
        node: s.me.id.clone(),
        faults,
    }))
}

/// Ends fault `id` (all when `None`) here and, unless `local`, on every other member.
async fn clear(
    s: &Arc<Shared>,
    caller: &Caller,
    id: Option<&str>,
    local: bool,
) -> Result<FaultsCleared, ApiError> {
    caller.require_admin()?;
    let mut cleared: Vec<String> = faults::clear(s, id)
        .await
        .into_iter()
        .map(|f| f.id)
        .collect();
    let mut nodes = vec![s.me.id.clone()];
    let mut unreachable = Vec::new();
    if !local {
        let path = match id {
            Some(id) => format!("/api/faults/{id}?local=true"),
            None => "/api/faults?local=true".to_string(),
        };
        let (took, missed) = pass_on(s, caller, "DELETE", &path, None).await;
        for (node, body) in took {
            nodes.push(node);
            if let Ok(answer) = serde_json::from_slice::<FaultsCleared>(&body) {
                cleared.extend(answer.cleared);
            }
        }
        unreachable = missed;
    }
    cleared.sort();
    cleared.dedup();
    nodes.sort();
    Ok(FaultsCleared {
        cleared,
        nodes,
        unreachable,
    })
}

/// Clear every fault
#[utoipa::path(
    delete,
    path = "/api/faults",
    operation_id = "faultsClear",
    tag = "faults",
    description = "Admin key. Ends every fault on every member that can be reached (with \
        `local=true`: on this node only). Faults on members that cannot be reached end at \
        their deadlines.",
    params(LocalQuery),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "What was cleared, where.", body = FaultsCleared),
        BadRequest,
        AdminKey,
        ControlLayers,
    )
)]
pub async fn clear_all(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Query(q): Query<LocalQuery>,
) -> Result<Json<FaultsCleared>, ApiError> {
    clear(&s, &caller, None, q.local).await.map(Json)
}

/// Clear one fault
#[utoipa::path(
    delete,
    path = "/api/faults/{id}",
    operation_id = "faultClear",
    tag = "faults",
    description = "Admin key. Ends the fault on every member that can be reached (with \
        `local=true`: on this node only).",
    params(FaultId, LocalQuery),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "What was cleared, where.", body = FaultsCleared),
        BadRequest,
        NotFound,
        AdminKey,
        ControlLayers,
    )
)]
pub async fn clear_one(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<LocalQuery>,
) -> Result<Json<FaultsCleared>, ApiError> {
    let answer = clear(&s, &caller, Some(&id), q.local).await?;
    if answer.cleared.is_empty() && !q.local {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no node holds fault '{id}'"),
        ));
    }
    Ok(Json(answer))
}
