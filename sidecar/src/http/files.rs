//! Files: `POST /api/files` (raw body or multipart form, streamed into chunks), `GET
//! /api/files` (paged by id), `GET|DELETE /api/files/{id}`, and `GET /api/files/{id}/content`
//! (whole or one byte range). Reads need a read key, writes an admin key. The transfers
//! themselves are `node::files`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use futures_util::StreamExt;
use rcluster_domain::node_config::check_file_name;
use rcluster_domain::rc::kv::{Del, QuorumOptions};

use crate::api::{ErrorCode, FileDeleted, FileList, FileMeta, ListQuery, UploadQuery};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::kv::timeout;
use crate::http::openapi::{
    AdminKey, BadRequest, Binary, FileId, InternalError, NotFound, RangeNotSatisfiable, ReadKey,
    RequestTimeout, Storage,
};
use crate::node::files::{self, TransferError, Upload};
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
            Ok(bytes) => up.feed(&bytes).await.map_err(ApiError::from),
            Err(e) => Err(ApiError::new(
                ErrorCode::UploadAborted,
                format!("the upload was interrupted: {e}"),
            )),
        };
        if let Err(e) = result {
            up.abort().await;
            return Err(e);
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
    description = "Admin key. Streams the body into chunks stored with quorum, then the metadata.",
    params(
        UploadQuery,
        ("X-File-Name" = Option<String>, Header, description = "File name of a raw upload, \
            when ?name= is not given (visible ASCII; use ?name= or a multipart file name for \
            other names).", min_length = 1, max_length = 255,
            pattern = "^[!-~]([ -~]*[!-~])?$"),
    ),
    request_body(
        description = "Raw bytes (the Content-Type is stored as the file's type; a name is \
            needed from ?name= or X-File-Name), or a multipart form whose part `file` (or first \
            part with a file name) is the file. At most files.max_file_bytes.",
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
    let content_type =
        header_text("content-type").unwrap_or_else(|| "application/octet-stream".into());
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
                .ok_or_else(|| bad_name("name the file with ?name= or an X-File-Name header"))?;
            check_file_name(&name).map_err(bad_name)?;
            let up = Upload::new(&s, name, content_type.clone(), q.w)?;
            drive(up, request.into_body().into_data_stream(), declared).await
        }
    };
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
    description = "Each chunk is checked against the SHA-256 recorded at upload; a failure \
        mid-stream cuts the connection. At most files.max_concurrent_downloads run at once \
        (429 TOO_MANY_DOWNLOADS with Retry-After beyond); a download is cut after \
        files.transfer_timeout_ms, or when its client accepts no byte for \
        files.download_stall_timeout_ms.",
    params(
        FileId,
        ("Range" = Option<String>, Header, description = "One byte range: bytes=a-b, bytes=a- \
            or bytes=-n.", pattern = "^[!-~]([ -~]*[!-~])?$", example = "bytes=0-1"),
    ),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The whole file.", body = Binary, content_type = "*/*",
            headers(
                ("Content-Length" = u64),
                ("Accept-Ranges" = String, description = "bytes"),
                ("X-File-SHA256" = String, description = "SHA-256 of the whole file."),
                ("Content-Disposition" = String),
            )),
        (status = 206, description = "The range.", body = Binary, content_type = "*/*",
            headers(
                ("Content-Range" = String, description = "bytes a-b/size"),
                ("Content-Length" = u64),
                ("Accept-Ranges" = String, description = "bytes"),
                ("X-File-SHA256" = String, description = "SHA-256 of the whole file."),
                ("Content-Disposition" = String),
            )),
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
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(s.config.files.transfer_timeout_ms);
    let meta = files::read_meta(&s, &id)
        .await?
        .ok_or_else(|| no_file(&id))?;
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = files::parse_range(range_header, meta.size).map_err(|files::BadRange| {
        ApiError::new(
            ErrorCode::BadRange,
            format!(
                "range {:?} does not fit a file of {} bytes (one range, bytes=a-b)",
                range_header.unwrap_or(""),
                meta.size
            ),
        )
        .with_content_range(meta.size)
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
