//! Keys: `PUT|GET|DELETE /api/kv/{key}` through the module's quorum commands (`RC.SET`,
//! `RC.GET`, `RC.DEL`), with an optional per-request quorum (`?w=`, `?r=`). Reads need a read
//! key, writes an admin key.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rcluster_domain::quorum::Options;
use rcluster_domain::rc::kv::{Del, Get, QuorumOptions, Set};

use crate::api::{ErrorCode, KvDeleted, KvWritten, ReadQuorum, WriteQuorum};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::input::QueryIn;
use crate::http::openapi::{AdminKey, Binary, Key, NotFound, ReadKey, Storage};
use crate::http::traces;
use crate::node::view::Shared;

/// The per-request quorum (`W` or `R`) of a command.
fn quorum(count: Option<u8>) -> QuorumOptions<'static> {
    QuorumOptions::Typed(Options {
        count,
        timeout_ms: None,
    })
}

/// How long a quorum command may take: the module's own bound plus a margin.
pub fn timeout(s: &Shared) -> Duration {
    Duration::from_millis(s.config.intervals.request_timeout_ms + 2_000)
}

pub fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "key must not be empty",
        ));
    }
    Ok(())
}

/// Write a key with quorum
#[utoipa::path(
    put,
    path = "/api/kv/{key}",
    operation_id = "kvPut",
    tag = "kv",
    description = "Admin key.",
    params(Key, WriteQuorum),
    request_body(content = Binary, content_type = "application/octet-stream",
        description = "The value (any bytes, at most limits.max_value_bytes: 8 MiB by default; \
            a longer body gets 413 TOO_LARGE naming that setting)."),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "Written on at least w replicas.", body = KvWritten,
            links(
                ("GetKey" = (operation_id = "kvGet", parameters(("key" = "$request.path.key")))),
                ("DeleteKey" = (operation_id = "kvDelete", parameters(("key" = "$request.path.key"))))
            )),
        AdminKey,
        Storage,
    )
)]
pub async fn kv_put(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Path(key): Path<String>,
    QueryIn(q): QueryIn<WriteQuorum>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    check_key(&key)?;
    let trace = traces::requested(&s, q.trace);
    let set = Set {
        key: key.as_bytes(),
        value: body.as_ref(),
        options: quorum(q.w),
    };
    s.local
        .query::<()>(&traces::command(&set, trace.as_deref()), timeout(&s))
        .await?;
    let bytes = body.len() as u64;
    Ok(traces::answer(trace, Json(KvWritten { key, bytes })))
}

/// Read a key with quorum
#[utoipa::path(
    get,
    path = "/api/kv/{key}",
    operation_id = "kvGet",
    tag = "kv",
    params(Key, ReadQuorum),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The value, as stored.", body = Binary,
            content_type = "application/octet-stream"),
        NotFound,
        ReadKey,
        Storage,
    )
)]
pub async fn kv_get(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    Path(key): Path<String>,
    QueryIn(q): QueryIn<ReadQuorum>,
) -> Result<impl IntoResponse, ApiError> {
    check_key(&key)?;
    let trace = traces::requested(&s, q.trace);
    let get = Get {
        key: key.as_bytes(),
        options: quorum(q.r),
    };
    let cmd = traces::command(&get, trace.as_deref());
    let value: Option<Vec<u8>> = s.local.query(&cmd, timeout(&s)).await?;
    match value {
        Some(v) => Ok(traces::answer(
            trace,
            ([(header::CONTENT_TYPE, "application/octet-stream")], v),
        )),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no key '{key}'"),
        )),
    }
}

/// Delete a key with quorum
#[utoipa::path(
    delete,
    path = "/api/kv/{key}",
    operation_id = "kvDelete",
    tag = "kv",
    description = "Admin key. Writes a tombstone on at least w replicas.",
    params(Key, WriteQuorum),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "Deleted.", body = KvDeleted),
        AdminKey,
        Storage,
    )
)]
pub async fn kv_delete(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Path(key): Path<String>,
    QueryIn(q): QueryIn<WriteQuorum>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    check_key(&key)?;
    let trace = traces::requested(&s, q.trace);
    let del = Del {
        key: key.as_bytes(),
        options: quorum(q.w),
    };
    s.local
        .query::<()>(&traces::command(&del, trace.as_deref()), timeout(&s))
        .await?;
    Ok(traces::answer(
        trace,
        Json(KvDeleted { key, deleted: true }),
    ))
}
