//! The data endpoints of the HTTP API: keys (`PUT|GET|DELETE /api/kv/{key}`, optional `w`/`r`)
//! through the module's quorum commands, and files (`POST /api/files` raw or multipart,
//! `GET /api/files` paged, `GET|DELETE /api/files/{id}`, `GET /api/files/{id}/content` with
//! Range). Reads need a read key, writes an admin key. Each route has its own body limit.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use futures_util::StreamExt;
use rcluster_domain::node_config::check_file_name;
use rcluster_domain::quorum::Options;
use rcluster_domain::rc::kv::{Del, Get, QuorumOptions, Set};
use serde::Deserialize;
use serde_json::{json, Value};
use tower_http::limit::RequestBodyLimitLayer;

use crate::files::{self, FileMeta, TransferError, Upload};
use crate::node::local::rc;
use crate::node::view::Shared;
use crate::web::{ApiError, Caller};

impl From<TransferError> for ApiError {
    fn from(e: TransferError) -> Self {
        ApiError::new(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.code,
            e.message,
        )
    }
}

/// Maps a module error reply (code first) to an API error.
fn module_error(e: String) -> ApiError {
    let code = e.split_whitespace().next().unwrap_or("");
    let (status, code) = match code {
        c if c.contains("BADARG") || c.starts_with("ERR") => {
            (StatusCode::BAD_REQUEST, "BAD_REQUEST")
        }
        c if c.contains("TOOLARGE") => (StatusCode::PAYLOAD_TOO_LARGE, "TOO_LARGE"),
        c if c.contains("NOQUORUM") => (StatusCode::SERVICE_UNAVAILABLE, "NO_QUORUM"),
        c if c.contains("NOTREADY") || c.contains("OOM") => {
            (StatusCode::SERVICE_UNAVAILABLE, "NOT_READY")
        }
        c if c.contains("WRONGTYPE") || c.contains("CORRUPT") => (StatusCode::CONFLICT, "CONFLICT"),
        _ if e.contains("no answer within") || e.contains("Connection refused") => {
            (StatusCode::SERVICE_UNAVAILABLE, "REDIS_UNAVAILABLE")
        }
        _ => (StatusCode::BAD_GATEWAY, "STORAGE_FAILED"),
    };
    ApiError::new(status, code, e)
}

pub fn router(shared: &Shared) -> Router<Arc<Shared>> {
    let value_limit = usize::try_from(shared.config.limits.max_value_bytes).unwrap_or(usize::MAX);
    // Uploads check their own size as they stream; the layer refuses a declared length above it.
    let file_limit = usize::try_from(shared.config.files.max_file_bytes.saturating_add(64 << 10))
        .unwrap_or(usize::MAX);
    let kv = Router::new()
        .route("/api/kv/{key}", put(kv_put).get(kv_get).delete(kv_delete))
        .layer(DefaultBodyLimit::max(value_limit))
        .layer(RequestBodyLimitLayer::new(value_limit));
    let files = Router::new()
        .route("/api/files", get(list_files).post(upload))
        .route("/api/files/{id}", get(file_meta).delete(delete_file))
        .route("/api/files/{id}/content", get(download))
        .layer(DefaultBodyLimit::max(file_limit))
        .layer(RequestBodyLimitLayer::new(file_limit));
    kv.merge(files)
}

fn timeout(s: &Shared) -> Duration {
    Duration::from_millis(s.config.intervals.request_timeout_ms + 2_000)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuorumQuery {
    w: Option<u8>,
    r: Option<u8>,
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "key must not be empty",
        ));
    }
    Ok(())
}

async fn kv_put(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Path(key): Path<String>,
    Query(q): Query<QuorumQuery>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    check_key(&key)?;
    let cmd = rc(&Set {
        key: key.as_bytes(),
        value: body.as_ref(),
        options: QuorumOptions::Typed(Options {
            count: q.w,
            timeout_ms: None,
        }),
    });
    s.local
        .query::<()>(&cmd, timeout(&s))
        .await
        .map_err(module_error)?;
    Ok(Json(json!({"key": key, "bytes": body.len()})))
}

async fn kv_get(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    Path(key): Path<String>,
    Query(q): Query<QuorumQuery>,
) -> Result<Response, ApiError> {
    check_key(&key)?;
    let cmd = rc(&Get {
        key: key.as_bytes(),
        options: QuorumOptions::Typed(Options {
            count: q.r,
            timeout_ms: None,
        }),
    });
    let value: Option<Vec<u8>> = s
        .local
        .query(&cmd, timeout(&s))
        .await
        .map_err(module_error)?;
    match value {
        Some(v) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], v).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no key '{key}'"),
        )),
    }
}

async fn kv_delete(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Path(key): Path<String>,
    Query(q): Query<QuorumQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    check_key(&key)?;
    let cmd = rc(&Del {
        key: key.as_bytes(),
        options: QuorumOptions::Typed(Options {
            count: q.w,
            timeout_ms: None,
        }),
    });
    s.local
        .query::<()>(&cmd, timeout(&s))
        .await
        .map_err(module_error)?;
    Ok(Json(json!({"key": key, "deleted": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    name: Option<String>,
    w: Option<u8>,
}

/// Runs an upload to its end; on any failure removes what was written.
async fn drive<S, E>(
    mut up: Upload<'_>,
    mut body: S,
    expected_len: Option<u64>,
) -> Result<FileMeta, ApiError>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    while let Some(piece) = body.next().await {
        let result = match piece {
            Ok(bytes) => up.feed(&bytes).await,
            Err(e) => Err(TransferError::new(
                400,
                "UPLOAD_ABORTED",
                format!("the upload was interrupted: {e}"),
            )),
        };
        if let Err(e) = result {
            up.abort().await;
            return Err(e.into());
        }
    }
    match up.finish(expected_len).await {
        Ok(meta) => Ok(meta),
        Err((e, up)) => {
            up.abort().await;
            Err(e.into())
        }
    }
}

async fn upload(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let Ok(_permit) = s.uploads.try_acquire() else {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_UPLOADS",
            format!(
                "{} uploads are already running on this node",
                s.config.files.max_concurrent_uploads
            ),
        );
        e.set_retry_after(1);
        return Err(e);
    };
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let declared: Option<u64> = header_text("content-length").and_then(|v| v.parse().ok());
    if declared.is_some_and(|n| n > s.config.files.max_file_bytes) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "TOO_LARGE",
            format!(
                "the file is larger than files.max_file_bytes ({} bytes)",
                s.config.files.max_file_bytes
            ),
        ));
    }
    let content_type =
        header_text("content-type").unwrap_or_else(|| "application/octet-stream".into());
    let deadline = Duration::from_millis(s.config.files.transfer_timeout_ms);
    let work = async {
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "BAD_MULTIPART", e.body_text())
            })?;
            let field = loop {
                match multipart.next_field().await {
                    Ok(Some(f)) if f.file_name().is_some() || f.name() == Some("file") => break f,
                    Ok(Some(_)) => continue,
                    Ok(None) => {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "BAD_MULTIPART",
                            "no file part in the form",
                        ))
                    }
                    Err(e) => {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "BAD_MULTIPART",
                            e.body_text(),
                        ))
                    }
                }
            };
            let name = q
                .name
                .clone()
                .or_else(|| field.file_name().map(str::to_string))
                .unwrap_or_default();
            check_file_name(&name)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BAD_NAME", e))?;
            let ctype = field
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_string();
            let up = Upload::new(&s, name, ctype, q.w)?;
            drive(up, field, None).await
        } else {
            let name = q
                .name
                .clone()
                .or_else(|| header_text("x-file-name"))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "BAD_NAME",
                        "name the file with ?name= or an X-File-Name header",
                    )
                })?;
            check_file_name(&name)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BAD_NAME", e))?;
            let up = Upload::new(&s, name, content_type.clone(), q.w)?;
            drive(up, request.into_body().into_data_stream(), declared).await
        }
    };
    let meta = tokio::time::timeout(deadline, work).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "TIMEOUT",
            "the upload ran over files.transfer_timeout_ms",
        )
    })??;
    println!(
        "node {}: stored file {} ({} bytes, {} chunks)",
        s.me.id, meta.id, meta.size, meta.chunk_count
    );
    Ok((StatusCode::CREATED, Json(meta)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
}

async fn list_files(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "limit must be 1..=1000",
        ));
    }
    let ids = files::list_ids(&s).await;
    let mut out = Vec::new();
    let mut next = None;
    for id in ids
        .into_iter()
        .filter(|id| q.after.as_ref().is_none_or(|a| id.as_str() > a.as_str()))
    {
        if out.len() == limit {
            next = out.last().map(|m: &FileMeta| m.id.clone());
            break;
        }
        if let Ok(Some(meta)) = files::read_meta(&s, &id).await {
            out.push(meta);
        }
    }
    Ok(Json(json!({"files": out, "next_after": next})))
}

async fn file_meta(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<FileMeta>, ApiError> {
    files::read_meta(&s, &id).await?.map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no file '{id}'"),
        )
    })
}

async fn delete_file(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    if files::read_meta(&s, &id).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no file '{id}'"),
        ));
    }
    let key = files::meta_key(&id);
    let cmd = rc(&Del {
        key: key.as_bytes(),
        options: QuorumOptions::NONE,
    });
    s.local
        .query::<()>(&cmd, timeout(&s))
        .await
        .map_err(module_error)?;
    let chunks = files::remove_chunks(&s, &id).await;
    Ok(Json(
        json!({"id": id, "deleted": true, "chunk_copies_removed": chunks}),
    ))
}

async fn download(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let meta = files::read_meta(&s, &id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no file '{id}'"),
        )
    })?;
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = files::parse_range(range_header, meta.size).map_err(|()| {
        let mut e = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BAD_RANGE",
            format!(
                "range {:?} does not fit a file of {} bytes (one range, bytes=a-b)",
                range_header.unwrap_or(""),
                meta.size
            ),
        );
        e.set_content_range(meta.size);
        e
    })?;
    let (status, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, b - a + 1),
        None => (StatusCode::OK, meta.size),
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, meta.content_type.as_str())
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header("x-file-sha256", meta.sha256.as_str())
        .header(
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename*=UTF-8''{}",
                crate::client::percent_encode(&meta.name)
            ),
        );
    if let Some((a, b)) = range {
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {a}-{b}/{}", meta.size),
        );
    }
    let body = Body::from_stream(files::stream(s.clone(), meta, range));
    response
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))
}
