//! The node's HTTP API (axum): [`router`] builds it from one file per resource (`health`,
//! `cluster`, `nodes`, `members`, `kv`, `files`, `faults`, `checks`, `metrics`, `openapi`, `page`,
//! `events`, `locate`, `traces`), each handler registered with its OpenAPI documentation. Keys
//! are checked in `auth`, requests another node
//! must answer go through `forward`, and every error is an `error::ApiError`, answered as JSON
//! `{"error":{"code","message"}}` (also for the layers' and extractors' refusals; `input` reads
//! JSON bodies and queries with messages that name the field). Writes need an admin key before
//! anything else (`auth::writes_need_admin`); bodies are bounded in size per group of routes
//! and in the time between their bytes on every route (`body`), control routes in request time.

pub mod auth;
pub mod body;
pub mod checks;
pub mod cluster;
pub mod demos;
pub mod error;
pub mod events;
pub mod faults;
pub mod files;
pub mod forward;
pub mod health;
pub mod input;
pub mod kv;
pub mod locate;
pub mod members;
pub mod metrics;
pub mod nodes;
pub mod openapi;
pub mod page;
#[cfg(test)]
mod tests;
pub mod timing;
pub mod traces;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use rcluster_domain::config::ClusterConfig;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{ErrorBody, ErrorCode};
use crate::http::error::{code_for_status, ApiError};
use crate::node::view::Shared;

/// The bounds the routes' layers enforce.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Body of a control route (api.body_limit_bytes).
    body_bytes: u64,
    /// Time of a control route.
    request: Duration,
    /// Body of a kv write: the value (limits.max_value_bytes, which the module enforces too).
    value_bytes: u64,
    /// Body of an upload (the upload checks the file's own size as it streams; this bounds
    /// the body, a multipart form's framing included).
    file_bytes: u64,
}

impl Limits {
    fn of(config: &ClusterConfig) -> Limits {
        Limits {
            body_bytes: config.api.body_limit_bytes,
            request: Duration::from_millis(config.api.request_timeout_ms),
            value_bytes: config.limits.max_value_bytes,
            file_bytes: config.files.max_file_bytes.saturating_add(64 << 10),
        }
    }
}

/// The body limit of a group of routes: `max` bytes, from `setting` (named in the refusal).
/// Extractors take no limit of their own (`DefaultBodyLimit::disable`): the body stops there.
fn body_limit(
    group: OpenApiRouter<Arc<Shared>>,
    max: u64,
    setting: &'static str,
) -> OpenApiRouter<Arc<Shared>> {
    group
        .route_layer(axum::middleware::from_fn(body::limit(max, setting)))
        .layer(DefaultBodyLimit::disable())
}

/// Every route with its documentation, in groups that share body limits and time limits.
fn routes(limits: Limits) -> OpenApiRouter<Arc<Shared>> {
    let control = OpenApiRouter::new()
        .routes(routes!(page::index))
        .routes(routes!(health::health))
        .routes(routes!(cluster::cluster))
        .routes(routes!(cluster::set_quorum))
        .routes(routes!(cluster::set_settings))
        .routes(routes!(nodes::stop))
        .routes(routes!(nodes::start))
        .routes(routes!(nodes::restart))
        .routes(routes!(checks::start_check, checks::list_checks))
        .routes(routes!(checks::get_check))
        .routes(routes!(metrics::metrics))
        .routes(routes!(faults::inject, faults::list, faults::clear_all))
        .routes(routes!(faults::hold, faults::clear_one))
        .routes(routes!(openapi::document))
        .routes(routes!(traces::list_traces))
        .routes(routes!(traces::get_trace))
        .routes(routes!(page::asset))
        .routes(routes!(page::whoami))
        .routes(routes!(locate::ring))
        .routes(routes!(events::events))
        .routes(routes!(demos::list_demos, demos::start_demo))
        .routes(routes!(demos::get_demo, demos::stop_demo));
    let control = body_limit(control, limits.body_bytes, "api.body_limit_bytes").layer(
        TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, limits.request),
    );
    // Membership changes wait for Raft and for the node that joins or leaves: no request time
    // limit of their own (each step is bounded inside). `GET /api/nodes` shares their path.
    let members = OpenApiRouter::new()
        .routes(routes!(nodes::nodes, members::add_node))
        .routes(routes!(members::remove_node));
    let members = body_limit(members, limits.body_bytes, "api.body_limit_bytes");
    let kv = OpenApiRouter::new()
        .routes(routes!(kv::kv_put, kv::kv_get, kv::kv_delete))
        .routes(routes!(locate::locate))
        .routes(routes!(locate::file_placement));
    let kv = body_limit(kv, limits.value_bytes, "limits.max_value_bytes");
    let files = OpenApiRouter::new()
        .routes(routes!(files::list_files, files::upload))
        .routes(routes!(files::file_meta, files::delete_file))
        .routes(routes!(files::download));
    let files = body_limit(files, limits.file_bytes, "files.max_file_bytes");
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(control)
        .merge(members)
        .merge(kv)
        .merge(files)
}

/// The API of a node: every route, a JSON 404 for the rest, JSON bodies for every error. The
/// role check of writes wraps every route's own layers; the body guard wraps everything.
pub fn router(shared: Arc<Shared>) -> Router {
    let (router, _) = routes(Limits::of(&shared.config)).split_for_parts();
    router
        .fallback(not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            auth::writes_need_admin,
        ))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            body::guard,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            forward::storage_failover,
        ))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            timing::record,
        ))
        .with_state(shared)
}

/// The OpenAPI document of [`router`]'s routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let any = Limits {
        body_bytes: 0,
        request: Duration::ZERO,
        value_bytes: 0,
        file_bytes: 0,
    };
    routes(any).split_for_parts().1
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

/// Turns every error answer that is not already our JSON (extractor rejections, 405, 408, 413
/// from the layers) into `{"error":{"code","message"}}`, so clients parse one format.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    // An extractor's refusal may carry serde's words for Rust types: said plainly.
    let mut message = input::plain_words(String::from_utf8_lossy(&text).trim());
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_string();
    }
    let body = ErrorBody::new(code_for_status(status), message);
    let mut fixed = (status, Json(body)).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fixed
}
