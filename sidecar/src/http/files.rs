//! Files: `POST /api/files` (raw body or multipart form, streamed into chunks), `GET
//! /api/files` (paged by id), `GET|DELETE /api/files/{id}`, and `GET|HEAD
//! /api/files/{id}/content` (whole or one byte range, with an `ETag`, `If-Range` and
//! `If-None-Match`). Reads need a read key, writes an admin key. Ids are taken in either case.
//! The transfers themselves are `node::files`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Json;
use futures_util::StreamExt;
use rcluster_domain::node_config::check_file_name;
use rcluster_domain::rc::kv::{Del, QuorumOptions};

use crate::api::{ErrorCode, FileDeleted, FileList, FileMeta, ListQuery, UploadQuery};
use crate::http::auth::Caller;
use crate::http::body::BodyError;
use crate::http::error::ApiError;
use crate::http::kv::timeout;
use crate::http::openapi::{
    AdminKey, BadRequest, Binary, FileId, InternalError, NotFound, RangeNotSatisfiable, ReadKey,
    RequestTimeout, Storage,
};
use crate::node::files::{self, RangeAsk, TransferError, Upload};
use crate::node::local::rc;
use crate::node::view::Shared;

/// A multipart upload (documentation of the form).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file; its part's file name names it unless ?name= does.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Runs an upload to its end. On any failure the upload is dropped, which removes what it wrote
/// in the background (the caller's upload slot is free at once).
async fn drive<S, E>(
    mut up: Upload,
    mut body: S,
    expected_len: Option<u64>,
) -> Result<FileMeta, ApiError>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::error::Error + 'static,
{
    while let Some(piece) = body.next().await {
        let bytes = piece.map_err(|e| body_failed(&e))?;
        up.feed(&bytes).await?;
    }
    Ok(up.finish(expected_len).await?)
}

/// The answer to an upload whose body failed: 408 when it stalled for api.body_idle_timeout_ms,
/// 413 when it ran over the route's limit (both found by `http::body`, whose guard answers the
/// same), else UPLOAD_ABORTED (the client went away).
fn body_failed(e: &(dyn std::error::Error + 'static)) -> ApiError {
    let code = match BodyError::find(e) {
        Some(BodyError::Idle(_)) => ErrorCode::RequestTimeout,
        Some(BodyError::TooLarge { .. }) => ErrorCode::TooLarge,
        None => {
            return ApiError::new(
                ErrorCode::UploadAborted,
                format!("the upload was interrupted: {e}"),
            )
        }
    };
    ApiError::new(code, format!("the upload's body failed: {e}"))
}

/// Refuses a `?w=` outside 1..=N before anything is written (the module's own rule and
/// wording, `domain::quorum`).
fn check_w(s: &Shared, w: Option<u8>) -> Result<(), ApiError> {
    let Some(w) = w else { return Ok(()) };
    let n = s
        .raft
        .get()
        .map_or(s.config.quorum.n, |r| r.meta().quorum.n);
    let value = w.to_string();
    rcluster_domain::quorum::parse_options(&[b"W", value.as_bytes()], Some("W"), n)
        .map(|_| ())
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("?w=: {}", e.message)))
}

fn bad_name(e: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadName, e)
}

fn bad_form(e: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadMultipart, e)
}

/// Upload a file
#[utoipa::path(
    post,
    path = "/api/files",
    operation_id = "uploadFile",
    tag = "files",
    description = "Admin key. Streams the body into chunks stored with quorum, then the metadata. \
        ?w= outside 1..=N is refused (400) before anything is written. A body that breaks off \
        or stalls (api.body_idle_timeout_ms) ends the upload (408 when it stalled), removes \
        its chunks and frees its slot at once; at most files.max_concurrent_uploads run at \
        once (429 TOO_MANY_UPLOADS), each for at most files.transfer_timeout_ms (408 TIMEOUT).",
    params(
        UploadQuery,
        ("X-File-Name" = Option<String>, Header, description = "File name of a raw upload, \
            when ?name= is not given (visible ASCII; use ?name= or a multipart file name for \
            other names).", min_length = 1, max_length = 255,
            pattern = "^[!-~]([ -~]*[!-~])?$"),
    ),
    request_body(
        description = "Raw bytes (the Content-Type is stored as the file's type; none, or \
            application/x-www-form-urlencoded as `curl --data-binary` sends by default, is \
            stored as the type of the name's extension, else application/octet-stream; a name \
            is needed from ?name= or X-File-Name), or a multipart form whose part `file` (or \
            first part with a file name) is the file. At most files.max_file_bytes.",
        content(
            (Binary = "application/octet-stream"),
            (UploadForm = "multipart/form-data"),
        ),
    ),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 201, description = "Stored.", body = FileMeta,
            links(
                ("GetFile" = (operation_id = "getFile", parameters(("id" = "$response.body#/id")))),
                ("DownloadFile" = (operation_id = "downloadFile", parameters(("id" = "$response.body#/id")))),
                ("DownloadFirstByte" = (operation_id = "downloadFile",
                    parameters(("id" = "$response.body#/id"), ("header.Range" = "bytes=0-0")))),
                ("DeleteFile" = (operation_id = "deleteFile", parameters(("id" = "$response.body#/id"))))
            )),
        RequestTimeout,
        InternalError,
        AdminKey,
        Storage,
    )
)]
pub async fn upload(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    request: Request,
) -> Result<(StatusCode, Json<FileMeta>), ApiError> {
    caller.require_admin()?;
    check_w(&s, q.w)?;
    let Ok(_permit) = s.uploads.try_acquire() else {
        return Err(ApiError::new(
            ErrorCode::TooManyUploads,
            format!(
                "{} uploads are already running on this node",
                s.config.files.max_concurrent_uploads
            ),
        )
        .with_retry_after(1));
    };
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let declared: Option<u64> = header_text("content-length").and_then(|v| v.parse().ok());
    let max = s.config.files.max_file_bytes;
    if declared.is_some_and(|n| n > max) {
        return Err(TransferError::TooLarge { max }.into());
    }
    let content_type = header_text("content-type").unwrap_or_default();
    let deadline = Duration::from_millis(s.config.files.transfer_timeout_ms);
    let work = async {
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = Multipart::from_request(request, &())
                .await
                .map_err(|e| bad_form(e.body_text()))?;
            let field = loop {
                match multipart.next_field().await {
                    Ok(Some(f)) if f.file_name().is_some() || f.name() == Some("file") => break f,
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(bad_form("no file part in the form")),
                    Err(e) => return Err(bad_form(e.body_text())),
                }
            };
            let name = q
                .name
                .clone()
                .or_else(|| field.file_name().map(str::to_string))
                .unwrap_or_default();
            check_file_name(&name).map_err(bad_name)?;
            let ctype = files::stored_content_type(field.content_type(), &name);
            let up = Upload::new(s.clone(), name, ctype, q.w)?;
            drive(up, field, None).await
        } else {
            let name = q
                .name
                .clone()
                .or_else(|| header_text("x-file-name"))
                .ok_or_else(|| bad_name("name the file with ?name= or an X-File-Name header"))?;
            check_file_name(&name).map_err(bad_name)?;
            let ctype = files::stored_content_type(Some(&content_type), &name);
            let up = Upload::new(s.clone(), name, ctype, q.w)?;
            drive(up, request.into_body().into_data_stream(), declared).await
        }
    };
    // Running out of time drops the upload, which removes what it wrote.
    let meta = tokio::time::timeout(deadline, work).await.map_err(|_| {
        ApiError::new(
            ErrorCode::Timeout,
            "the upload ran over files.transfer_timeout_ms",
        )
    })??;
    tracing::info!(
        node = %s.me.id,
        "stored file {} ({} bytes, {} chunks)",
        meta.id,
        meta.size,
        meta.chunk_count
    );
    Ok((StatusCode::CREATED, Json(meta)))
}

/// List files, paged by id
#[utoipa::path(
    get,
    path = "/api/files",
    operation_id = "listFiles",
    tag = "files",
    params(ListQuery),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "One page.", body = FileList),
        BadRequest,
        ReadKey,
        crate::http::openapi::BodyLimit,
    )
)]
pub async fn list_files(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<FileList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "limit must be 1..=1000",
        ));
    }
    let after = q
        .after
        .as_deref()
        .map(files::file_id)
        .transpose()
        .map_err(|_| {
            ApiError::new(
                ErrorCode::BadRequest,
                "after must be a file id (32 hex digits), as next_after gives it",
            )
        })?;
    let ids = files::list_ids(&s).await;
    let mut out = Vec::new();
    let mut next = None;
    for id in ids
        .into_iter()
        .filter(|id| after.as_ref().is_none_or(|a| id.as_str() > a.as_str()))
    {
        if out.len() == limit {
            next = out.last().map(|m: &FileMeta| m.id.clone());
            break;
        }
        if let Ok(Some(meta)) = files::read_meta(&s, &id).await {
            out.push(meta);
        }
    }
    Ok(Json(FileList {
        files: out,
        next_after: next,
    }))
}

fn no_file(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no file '{id}'"))
}

/// A file's metadata
#[utoipa::path(
    get,
    path = "/api/files/{id}",
    operation_id = "getFile",
    tag = "files",
    params(FileId),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The metadata.", body = FileMeta),
        NotFound,
        InternalError,
        ReadKey,
        Storage,
    )
)]
pub async fn file_meta(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<FileMeta>, ApiError> {
    let id = files::file_id(&id)?;
    files::read_meta(&s, &id)
        .await?
        .map(Json)
        .ok_or_else(|| no_file(&id))
}

/// Delete a file
#[utoipa::path(
    delete,
    path = "/api/files/{id}",
    operation_id = "deleteFile",
    tag = "files",
    description = "Admin key. The metadata is deleted with quorum, then the chunks on every \
        node that answers.",
    params(FileId),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "Deleted.", body = FileDeleted),
        NotFound,
        InternalError,
        AdminKey,
        Storage,
    )
)]
pub async fn delete_file(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<FileDeleted>, ApiError> {
    caller.require_admin()?;
    let id = files::file_id(&id)?;
    if files::read_meta(&s, &id).await?.is_none() {
        return Err(no_file(&id));
    }
    let key = files::meta_key(&id);
    let cmd = rc(&Del {
        key: key.as_bytes(),
        options: QuorumOptions::NONE,
    });
    s.local.query::<()>(&cmd, timeout(&s)).await?;
    let chunks = files::remove_chunks(&s, &id).await;
    Ok(Json(FileDeleted {
        id,
        deleted: true,
        chunk_copies_removed: chunks,
    }))
}

/// Download a file (whole or one byte range)
#[utoipa::path(
    get,
    path = "/api/files/{id}/content",
    operation_id = "downloadFile",
    tag = "files",
    description = "Each chunk is checked against the SHA-256 recorded at upload; when this \
        node's Redis fails mid-download the rest comes from the other members' Redis, checked \
        the same way; a failure no member can make up for cuts the connection. Ranges follow \
        RFC 9110: one byte range is answered 206; another unit or several ranges get the whole \
        file (200, no multipart); a byte range that is malformed or starts past the end gets \
        416 with `Content-Range: bytes */size`. The ETag is the file's SHA-256 (strong); \
        If-Range with another tag (or a date) gets the whole file; If-None-Match naming it \
        gets 304. HEAD answers the same headers without a body. At most \
        files.max_concurrent_downloads run at once (429 TOO_MANY_DOWNLOADS with Retry-After \
        beyond); a download is cut after files.transfer_timeout_ms, or when its client accepts \
        no byte for files.download_stall_timeout_ms, and its slot is freed.",
    params(
        FileId,
        ("Range" = Option<String>, Header, description = "bytes=a-b, bytes=a- or bytes=-n \
            (one range; others get the whole file).", pattern = "^[!-~]([ -~]*[!-~])?$",
            example = "bytes=0-1"),
        ("If-Range" = Option<String>, Header, description = "The file's ETag: the range is \
            served only while it matches.", pattern = "^[!-~]([ -~]*[!-~])?$"),
        ("If-None-Match" = Option<String>, Header, description = "ETags (or *): 304 when one \
            names the file.", pattern = "^[!-~]([ -~]*[!-~])?$"),
    ),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The whole file.", body = Binary, content_type = "*/*",
            headers(
                ("Content-Length" = u64),
                ("Accept-Ranges" = String, description = "bytes"),
                ("ETag" = String, description = "\"<SHA-256 of the file>\" (strong)."),
                ("X-File-SHA256" = String, description = "SHA-256 of the whole file."),
                ("Content-Disposition" = String),
            )),
        (status = 206, description = "The range.", body = Binary, content_type = "*/*",
            headers(
                ("Content-Range" = String, description = "bytes a-b/size"),
                ("Content-Length" = u64),
                ("Accept-Ranges" = String, description = "bytes"),
                ("ETag" = String, description = "\"<SHA-256 of the file>\" (strong)."),
                ("X-File-SHA256" = String, description = "SHA-256 of the whole file."),
                ("Content-Disposition" = String),
            )),
        (status = 304, description = "Not modified: If-None-Match names the file.",
            headers(("ETag" = String, description = "\"<SHA-256 of the file>\"."))),
        NotFound,
        RangeNotSatisfiable,
        InternalError,
        ReadKey,
        Storage,
    )
)]
pub async fn download(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    method: Method,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = files::file_id(&id)?;
    let started = tokio::time::Instant::now();
    let meta = files::read_meta(&s, &id)
        .await?
        .ok_or_else(|| no_file(&id))?;
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let tag = files::etag(&meta);
    if files::none_match(text(header::IF_NONE_MATCH), &tag) {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, tag.as_str())
            .header(header::ACCEPT_RANGES, "bytes")
            .body(Body::empty())
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()));
    }
    // A range is served only while If-Range (if any) names this file.
    let range_header =
        text(header::RANGE).filter(|_| files::if_range_holds(text(header::IF_RANGE), &tag));
    let range = match files::parse_range(range_header, meta.size) {
        RangeAsk::Whole => None,
        RangeAsk::Part(a, b) => Some((a, b)),
        RangeAsk::Unsatisfiable => {
            return Err(ApiError::new(
                ErrorCode::BadRange,
                format!(
                    "range {:?} does not fit a file of {} bytes (one range: bytes=a-b, \
                     bytes=a- or bytes=-n)",
                    range_header.unwrap_or(""),
                    meta.size
                ),
            )
            .with_content_range(meta.size))
        }
    };
    let (status, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, b - a + 1),
        None => (StatusCode::OK, meta.size),
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, meta.content_type.as_str())
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, tag.as_str())
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
    if method == Method::HEAD {
        return response
            .body(Body::empty())
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()));
    }
    let Ok(permit) = s.downloads.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            ErrorCode::TooManyDownloads,
            format!(
                "{} downloads are already running on this node",
                s.config.files.max_concurrent_downloads
            ),
        )
        .with_retry_after(1));
    };
    let deadline = started + Duration::from_millis(s.config.files.transfer_timeout_ms);
    // A client that stops reading is noticed by its socket: hyper then stops asking for bytes.
    let conn = s.conns.get(&client);
    if let Some(conn) = &conn {
        let (cuts, node, file) = (
            s.metrics.download_cuts.clone(),
            s.me.id.clone(),
            meta.id.clone(),
        );
        let stall = Duration::from_millis(s.config.files.download_stall_timeout_ms);
        conn.limit_stalls(stall, move || {
            cuts.with_label_values(&["stalled"]).inc();
            tracing::warn!(
                node = %node,
                "download of {file} to {client} cut: no byte taken within files.download_stall_timeout_ms"
            );
        });
    }
    let download = files::Download {
        permit,
        conn,
        deadline,
    };
    let body = Body::from_stream(files::stream(s.clone(), meta, range, download));
    response
        .body(body)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_body_is_a_timeout_and_a_broken_one_an_abort() {
        let stalled = axum::Error::new(BodyError::Idle(Duration::from_secs(5)));
        let e = body_failed(&stalled);
        assert_eq!(
            (e.code(), e.status()),
            (ErrorCode::RequestTimeout, StatusCode::REQUEST_TIMEOUT)
        );
        assert!(
            e.message().contains("api.body_idle_timeout_ms"),
            "{}",
            e.message()
        );
        let over = axum::Error::new(BodyError::TooLarge {
            limit: 10,
            setting: "files.max_file_bytes",
        });
        assert_eq!(body_failed(&over).code(), ErrorCode::TooLarge);
        let gone = axum::Error::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        ));
        let e = body_failed(&gone);
        assert_eq!(
            (e.code(), e.status()),
            (ErrorCode::UploadAborted, StatusCode::BAD_REQUEST)
        );
    }
}
