//! Consistency checks run by this node: `POST /api/checks` starts one (admin key; one at a
//! time per node, else 409), `GET /api/checks/{id}` shows its progress and, once judged, its
//! report, `GET /api/checks` lists them. The runner is `crate::check`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use crate::api::{Check, CheckList, CheckStarted, ErrorCode, NewCheck};
use crate::check::{registry, Cluster, Plan};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::input::JsonIn;
use crate::http::openapi::{AdminKey, Conflict, JsonBody, NotFound, ReadKey};
use crate::node::view::Shared;

/// `{id}` of a check.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CheckId {
    /// A check id, `c-<n>`.
    #[param(pattern = "^c-[0-9]{1,19}$")]
    pub id: String,
}

/// Start a consistency check
#[utoipa::path(
    post,
    path = "/api/checks",
    operation_id = "startCheck",
    tag = "control",
    description = "Admin key. Runs the register, set and files workloads through every node \
        while injecting the schedule's faults through /api/faults, then heals, reads everything \
        back and judges (see docs/checker.md). One check at a time per node: 409 while one runs. \
        Follow it with GET /api/checks/{id}.",
    request_body = NewCheck,
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 202, description = "Started.", body = CheckStarted,
            links(("GetCheck" = (operation_id = "getCheck", parameters(("id" = "$response.body#/id")))))),
        JsonBody,
        Conflict,
        AdminKey,
    )
)]
pub async fn start_check(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    JsonIn(body): JsonIn<NewCheck>,
) -> Result<(StatusCode, Json<CheckStarted>), ApiError> {
    caller.require_admin()?;
    let mut plan = Plan::parse(
        &body.schedule,
        body.seconds,
        body.seed,
        body.workloads.as_deref(),
    )
    .map_err(|e| ApiError::new(ErrorCode::BadRequest, e))?;
    let id = registry::next_id();
    plan.protect = Some(s.me.id.clone());
    plan.history = Some(s.dir.join(format!("check-{id}.jsonl")));
    let cluster = Arc::new(Cluster::new(s.config.clone(), Some(caller.key.clone())));
    let log: crate::check::Log = Arc::new(|line: &str| tracing::info!("{line}"));
    match registry::start(cluster, id, plan, log) {
        Ok(id) => Ok((StatusCode::ACCEPTED, Json(CheckStarted { id }))),
        Err(running) => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("check {running} is running on this node; one check at a time"),
        )),
    }
}

/// List the checks this node ran
#[utoipa::path(
    get,
    path = "/api/checks",
    operation_id = "listChecks",
    tag = "control",
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "Every check since the node started (the last 20), \
            oldest first.", body = CheckList),
        ReadKey,
    )
)]
pub async fn list_checks(_caller: Caller) -> Json<CheckList> {
    Json(CheckList {
        checks: registry::list(),
    })
}

/// One check: its state, progress and report
#[utoipa::path(
    get,
    path = "/api/checks/{id}",
    operation_id = "getCheck",
    tag = "control",
    params(CheckId),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The check; report is set once it was judged.", body = Check),
        NotFound,
        ReadKey,
    )
)]
pub async fn get_check(_caller: Caller, Path(id): Path<String>) -> Result<Json<Check>, ApiError> {
    registry::get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no check '{id}'")))
}
