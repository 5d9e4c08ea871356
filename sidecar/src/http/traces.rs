//! Request traces: `GET /api/traces` (this node's newest, through `RC.TRACE LIST`) and
//! `GET /api/traces/{id}` (one, through `RC.TRACE GET`), read key; and the pieces the kv routes
//! use for `?trace=1`: a fresh trace id, the traced command, and the `X-RC-Trace` header that
//! names the id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rcluster_domain::rc::trace::{TraceArg, TraceCmd, Traced};
use rcluster_domain::rc::Request;
use rcluster_domain::trace::{check_id, Summary, Trace};
use utoipa::IntoParams;

use crate::api::traces::{TraceDoc, TraceList, TraceListQuery, TraceSummary};
use crate::api::ErrorCode;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::openapi::{BadRequest, NotFound, ReadKey, Storage};
use crate::node::local::rc;
use crate::node::view::Shared;

/// The header a traced kv request's answer names its trace in.
pub const HEADER: &str = "x-rc-trace";

/// `{id}` of a trace.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TraceId {
    /// A trace id (as `X-RC-Trace` or `RC.TRACE LIST` give it).
    #[param(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    pub id: String,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The trace id of a kv request with `?trace=1` (`None` without): made here, so the answer can
/// name it before the trace is kept.
pub fn requested(s: &Shared, trace: Option<u8>) -> Option<String> {
    (trace.unwrap_or(0) != 0).then(|| {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("{}-http-{}-{n}", s.me.id, crate::node::view::unix_ms())
    })
}

/// The command for `request`, traced under `id` when given.
pub fn command(request: &impl Request, id: Option<&str>) -> redis::Cmd {
    match id {
        Some(id) => rc(&Traced {
            request,
            trace: TraceArg { id: Some(id) },
        }),
        None => rc(request),
    }
}

/// `body`, with the `X-RC-Trace` header when the request was traced.
pub fn answer(id: Option<String>, body: impl IntoResponse) -> Response {
    match id {
        Some(id) => ([(HEADER, id)], body).into_response(),
        None => body.into_response(),
    }
}

/// This node's newest traces
#[utoipa::path(
    get,
    path = "/api/traces",
    operation_id = "listTraces",
    tag = "kv",
    description = "The newest request traces this node coordinated, newest first (`RC.TRACE LIST`). \
        A trace is listed once its request and follow-ups (hints, read repairs) ended.",
    params(TraceListQuery),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The traces.", body = TraceList),
        ReadKey,
        Storage,
    )
)]
pub async fn list_traces(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    Query(q): Query<TraceListQuery>,
) -> Result<Json<TraceList>, ApiError> {
    let n =
        q.n.map_or(rcluster_domain::rc::trace::DEFAULT_LIST, |n| n as usize);
    if n == 0 || n > rcluster_domain::rc::trace::MAX_LIST {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "n must be between 1 and 10000",
        ));
    }
    let reply: Vec<Vec<u8>> = s
        .local
        .query(&rc(&TraceCmd::List { n }), crate::http::kv::timeout(&s))
        .await?;
    let traces = reply
        .iter()
        .filter_map(|json| TraceSummary::of(&Summary::from_json(json)?))
        .collect();
    Ok(Json(TraceList { traces }))
}

/// One trace
#[utoipa::path(
    get,
    path = "/api/traces/{id}",
    operation_id = "getTrace",
    tag = "kv",
    description = "A request trace this node coordinated (`RC.TRACE GET`): the preference list, \
        every replica asked and its answer, the quorum, the reply, hints, read repairs, with \
        microsecond offsets from the start.",
    params(TraceId),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The trace.", body = TraceDoc),
        BadRequest,
        NotFound,
        ReadKey,
        Storage,
    )
)]
pub async fn get_trace(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TraceDoc>, ApiError> {
    let id =
        check_id(id.as_bytes()).map_err(|e| ApiError::new(ErrorCode::BadRequest, e.message))?;
    let reply: Option<Vec<u8>> = s
        .local
        .query(&rc(&TraceCmd::Get { id }), crate::http::kv::timeout(&s))
        .await?;
    let json = reply.ok_or_else(|| {
        ApiError::new(ErrorCode::NotFound, format!("no trace '{id}' on this node"))
    })?;
    let trace = Trace::from_json(&json)
        .ok_or_else(|| ApiError::new(ErrorCode::StorageFailed, "RC.TRACE GET: unexpected reply"))?;
    TraceDoc::of(&trace)
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::StorageFailed, "RC.TRACE GET: unexpected trace"))
}
