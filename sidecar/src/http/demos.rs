//! The guided scenarios run by this node: `POST /api/demos` starts one (admin key; 409 while
//! one runs or when the cluster is not healthy, with the reason), `GET /api/demos/{id}` shows
//! its step, narration and verdict, `DELETE /api/demos/{id}` stops it (the cluster is
//! restored), `GET /api/demos` lists them. The runner is `crate::demo`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use crate::api::demos::{Demo, DemoList, DemoStarted, NewDemo};
use crate::api::ErrorCode;
use crate::demo::{self, Cluster, Name, Run};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::openapi::{AdminKey, Conflict, JsonBody, NotFound, ReadKey};
use crate::node::view::Shared;

/// `{id}` of a run.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DemoId {
    /// A run id, `d-<unix ms>-<n>`.
    #[param(pattern = "^d-[0-9]{1,20}-[0-9]{1,19}$")]
    pub id: String,
}

/// The config file this node process was started with (`--config`, default
/// `config/cluster.yaml`), for the temporary node of `scaling` (`rcluster node add`).
fn config_path() -> PathBuf {
    let args: Vec<String> = std::env::args().collect();
    let given = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_string))
        })
        .unwrap_or_else(|| "config/cluster.yaml".into());
    std::path::absolute(&given).unwrap_or_else(|_| PathBuf::from(given))
}

/// Start a guided scenario
#[utoipa::path(
    post,
    path = "/api/demos",
    operation_id = "startDemo",
    tag = "control",
    description = "Admin key. Runs one of the guided scenarios (normal, node-failure, scaling, \
        resources, trade-offs; see docs/scenarios.md) on this cluster, narrated step by step \
        in GET /api/demos/{id} and on cluster:events as {\"type\":\"demo\",...}. 409 while one \
        runs or when the cluster is not healthy (the message says why). The cluster is restored \
        at the end or when stopped.",
    request_body = NewDemo,
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 202, description = "Started.", body = DemoStarted,
            links(("GetDemo" = (operation_id = "getDemo", parameters(("id" = "$response.body#/id")))))),
        JsonBody,
        Conflict,
        AdminKey,
    )
)]
pub async fn start_demo(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Json(body): Json<NewDemo>,
) -> Result<(StatusCode, Json<DemoStarted>), ApiError> {
    caller.require_admin()?;
    let name = Name::parse(&body.name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "name: unknown scenario '{}' (one of {})",
                body.name,
                Name::list()
            ),
        )
    })?;
    let mut cluster = Cluster::new(s.config.clone(), config_path(), Some(caller.key.clone()));
    cluster.protect = Some(s.me.id.clone());
    let cluster = Arc::new(cluster);
    let id = demo::next_id();
    let lock_node = demo::preflight(&cluster, &id)
        .await
        .map_err(|why| ApiError::new(ErrorCode::Conflict, why))?;
    let run = Run::new(id.clone(), name, body.short, false);
    demo::register(run.clone());
    tokio::spawn(demo::execute(cluster, run, name, lock_node));
    Ok((StatusCode::ACCEPTED, Json(DemoStarted { id })))
}

/// List the scenarios this node ran
#[utoipa::path(
    get,
    path = "/api/demos",
    operation_id = "listDemos",
    tag = "control",
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "Every run since the node started (the last 20), oldest \
            first.", body = DemoList),
        ReadKey,
    )
)]
pub async fn list_demos(_caller: Caller) -> Json<DemoList> {
    Json(DemoList {
        demos: demo::list(),
    })
}

/// One run: its step, narration and verdict
#[utoipa::path(
    get,
    path = "/api/demos/{id}",
    operation_id = "getDemo",
    tag = "control",
    params(DemoId),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The run; verdict is set once it ended.", body = Demo),
        NotFound,
        ReadKey,
    )
)]
pub async fn get_demo(_caller: Caller, Path(id): Path<String>) -> Result<Json<Demo>, ApiError> {
    demo::get(&id)
        .map(|r| Json(r.view()))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no scenario run '{id}'")))
}

/// Stop a run
#[utoipa::path(
    delete,
    path = "/api/demos/{id}",
    operation_id = "stopDemo",
    tag = "control",
    description = "Admin key. Stops the run at its next step; it then restores the cluster \
        (its faults cleared, its temporary node removed, settings put back) and ends as \
        `stopped`. A run that already ended is answered as it is.",
    params(DemoId),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 202, description = "Asked to stop; follow GET /api/demos/{id}.", body = Demo),
        NotFound,
        AdminKey,
    )
)]
pub async fn stop_demo(
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Demo>), ApiError> {
    caller.require_admin()?;
    let run = demo::get(&id)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no scenario run '{id}'")))?;
    run.stop();
    Ok((StatusCode::ACCEPTED, Json(run.view())))
}
