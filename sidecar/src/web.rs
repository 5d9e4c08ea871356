//! The node's HTTP API (axum): `GET /api/health` and `GET /metrics` (no key), `GET /api/cluster`
//! and `GET /api/nodes` (read key), `POST /api/nodes/{id}/stop|start|restart` (admin key; another
//! node's id is forwarded to that node), and a small status page at `/`. API keys are compared in
//! constant time; each key (or client address without one) is rate limited (429 + Retry-After);
//! bodies and request time are bounded. Every error is JSON `{"error":{"code","message"}}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rcluster_domain::meta::Change;
use rcluster_domain::node_config::Role;
use serde_json::{json, Value};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::client;
use crate::node::redis::Control;
use crate::node::view::Shared;

/// An error answer: status, stable code, message naming the problem.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_s: Option<u64>,
    /// For 416: the size to name in `Content-Range: bytes */<size>`.
    content_range_size: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
            content_range_size: None,
        }
    }

    pub fn set_retry_after(&mut self, seconds: u64) {
        self.retry_after_s = Some(seconds);
    }

    pub fn set_content_range(&mut self, size: u64) {
        self.content_range_size = Some(size);
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if let Some(size) = self.content_range_size {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        response
    }
}

/// Applies the rate limit to `key` (a key name or a client address).
fn rate_limit(shared: &Shared, key: &str) -> Result<(), ApiError> {
    let now = shared.mono_ms();
    let verdict = shared
        .limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .check(key, now);
    verdict.map_err(|retry_ms| {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("too many requests for {key}; retry in {retry_ms} ms"),
        );
        e.set_retry_after(retry_ms.div_ceil(1000).max(1));
        e
    })
}

/// The caller, authenticated by API key (`Authorization: Bearer <key>` or `X-API-Key`).
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub key: String,
}

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        let header_text =
            |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let presented = header_text(header::AUTHORIZATION)
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::trim);
        let Some(presented) = presented else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            ));
        };
        let Some(found) = shared.config.api.authenticate(presented) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "unknown API key",
            ));
        };
        rate_limit(shared, &format!("key:{}", found.name))?;
        Ok(Caller {
            name: found.name.clone(),
            role: found.role,
            key: presented.to_string(),
        })
    }
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Read => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                format!("key '{}' is read-only; this needs an admin key", self.name),
            )),
        }
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let api = &shared.config.api;
    let body_limit = usize::try_from(api.body_limit_bytes).unwrap_or(usize::MAX);
    let timeout = Duration::from_millis(api.request_timeout_ms);
    let control = Router::new()
        .route("/", get(index))
        .route("/api/health", get(health))
        .route("/api/cluster", get(cluster))
        .route("/api/cluster/quorum", axum::routing::put(set_quorum))
        .route("/api/cluster/settings", axum::routing::put(set_settings))
        .route("/api/nodes", get(nodes))
        .route("/api/nodes/{id}/{action}", post(node_action))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(crate::openapi::document))
        .layer(DefaultBodyLimit::max(body_limit))
        // Refuses any body over the limit with 413, also for handlers that never read it.
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    // The data routes carry their own body limits and transfer timeouts.
    control
        .merge(crate::web_data::router(&shared))
        .merge(crate::web_members::router())
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(shared)
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
    let mut message = String::from_utf8_lossy(&text).trim().to_string();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_string();
    }
    let code = status
        .canonical_reason()
        .unwrap_or("ERROR")
        .to_ascii_uppercase()
        .replace([' ', '-'], "_");
    let mut fixed = (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fixed
}

/// Sends the caller's request on to `node` (with the caller's key) and returns its answer: the
/// JSON body on 200, else an error naming that node and what it said.
pub async fn forward(
    node: &rcluster_domain::config::NodeConfig,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Json<Value>, ApiError> {
    let answer = client::request(
        method,
        &node.host,
        node.http_port,
        path,
        Some(key),
        body,
        timeout,
    )
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "NODE_UNREACHABLE",
            format!("node {}: {e}", node.id),
        )
    })?;
    if answer.status == 200 {
        let body =
            serde_json::from_slice(&answer.body).unwrap_or_else(|_| json!({"raw": answer.text()}));
        return Ok(Json(body));
    }
    Err(ApiError::new(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY),
        "FORWARDED_ERROR",
        format!(
            "node {} answered {}: {}",
            node.id,
            answer.status,
            answer.text()
        ),
    ))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
}

fn by_address(shared: &Shared, addr: &SocketAddr) -> Result<(), ApiError> {
    rate_limit(shared, &format!("addr:{}", addr.ip()))
}

async fn health(
    State(s): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    by_address(&s, &addr)?;
    let redis = s.redis.state.borrow().clone();
    let mut info = redis::cmd("INFO");
    info.arg("rcluster");
    let info = s
        .local
        .query::<String>(&info, Duration::from_millis(500))
        .await
        .ok();
    let redis_up = info.is_some();
    // What this node's Redis holds: (registers, chunks); 0 once a leaving node handed over.
    let held = info.map(|i| {
        let field = |name: &str| {
            crate::node::gossip::info_field(&i, name)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        (field("rcluster_kv_keys"), field("rcluster_chunks"))
    });
    let status = if redis_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "node": s.me.id,
        "cluster": s.config.cluster_name,
        "version": env!("CARGO_PKG_VERSION"),
        "redis_port": s.me.redis_port,
        "http_port": s.me.http_port,
        "redis_up": redis_up,
        "redis_state": redis.name(),
        "redis_pid": redis.pid(),
        "member": s.member(&s.me.id).is_some(),
        "kv_keys": held.as_ref().map(|h| h.0),
        "chunks": held.as_ref().map(|h| h.1),
    });
    Ok((status, Json(body)).into_response())
}

/// Every node as this node sees it.
fn node_rows(s: &Shared) -> Vec<Value> {
    let members = s.members();
    let nodes = s.nodes();
    members
        .iter()
        .map(|n| {
            let v = nodes.get(&n.id);
            let age = v
                .and_then(|v| v.last_heartbeat_unix_ms)
                .map(|t| crate::node::view::unix_ms().saturating_sub(t));
            json!({
                "id": n.id,
                "host": n.host,
                "redis_port": n.redis_port,
                "http_port": n.http_port,
                "peer_port": n.peer_port,
                "self": n.id == s.me.id,
                "state": v.map(|v| v.liveness.as_str()),
                "reason": v.map(|v| v.reason.clone()),
                "phi": v.map(|v| (v.phi * 100.0).round() / 100.0),
                "last_heartbeat_age_ms": age,
                "rtt_ms": v.and_then(|v| v.rtt_ms),
                "redis_up": v.map(|v| v.summary.redis_up),
                "redis_state": v.map(|v| v.summary.redis_state.clone()),
                "kv_keys": v.and_then(|v| v.summary.kv_keys),
                "used_memory_bytes": v.and_then(|v| v.summary.used_memory_bytes),
                "drift_ms": v.and_then(|v| v.summary.drift_ms),
                "raft_role": v.map(|v| v.summary.raft_role.clone()),
                "raft_term": v.map(|v| v.summary.raft_term),
                "raft_commit_index": v.map(|v| v.summary.raft_commit_index),
                "topology_epoch": v.map(|v| v.summary.topology_epoch),
                "transition_open": v.map(|v| v.summary.transition_open),
                "time_source": v.map(|v| v.summary.time_source.clone()),
            })
        })
        .collect()
}

async fn nodes(State(s): State<Arc<Shared>>, _caller: Caller) -> Json<Value> {
    Json(json!({ "observer": s.me.id, "nodes": node_rows(&s) }))
}

async fn cluster(State(s): State<Arc<Shared>>, _caller: Caller) -> Json<Value> {
    let q = s.config.quorum;
    Json(json!({
        "cluster": s.config.cluster_name,
        "observer": s.me.id,
        "quorum": {"n": q.n, "w": q.w, "r": q.r},
        "vnodes": s.raft.get().map_or(s.config.vnodes, |r| r.meta().vnodes),
        "chunk_size_bytes": s.chunk_size_bytes(),
        "heartbeat_ms": s.config.intervals.heartbeat_ms,
        "time": s.time(),
        "raft": s.raft.get().map(|r| r.status()),
        "replicated_quorum": s.raft.get().map(|r| r.meta().quorum),
        "nodes": node_rows(&s),
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuorumBody {
    n: u8,
    w: u8,
    r: u8,
}

/// `PUT /api/cluster/quorum {"n","w","r"}`: changes the cluster's default quorum through Raft
/// (forwarded to the leader); answers once committed and applied on the node that took it.
async fn set_quorum(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Json(body): Json<QuorumBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let QuorumBody { n, w, r } = body;
    let change = Change::Quorum { n, w, r };
    change
        .check(s.members().len())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BAD_QUORUM", e.to_string()))?;
    let json = serde_json::to_vec(&json!({"n": n, "w": w, "r": r})).unwrap_or_default();
    let raft = match leader_raft(&s, &caller, "/api/cluster/quorum", &json).await? {
        Ok(raft) => raft,
        Err(answer) => return Ok(answer),
    };
    let index = raft
        .propose(change, Duration::from_secs(5))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NOT_COMMITTED", e))?;
    Ok(Json(
        json!({"committed_index": index, "quorum": {"n": n, "w": w, "r": r}, "leader": s.me.id}),
    ))
}

/// For a `PUT` of cluster metadata: this node's Raft when it leads, else the leader's answer to
/// the same request (`Err`).
async fn leader_raft<'a>(
    s: &'a Shared,
    caller: &Caller,
    path: &str,
    body: &[u8],
) -> Result<Result<&'a crate::node::raft::RaftHandle, Json<Value>>, ApiError> {
    match crate::web_members::on_leader(s, caller, "PUT", path, Some(body)).await? {
        Some(answer) => Ok(Err(answer)),
        None => crate::web_members::raft(s).map(Ok),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    vnodes: Option<u32>,
    chunk_size_bytes: Option<u64>,
}

/// `PUT /api/cluster/settings {"vnodes"?, "chunk_size_bytes"?}`: changes the ring's virtual nodes
/// per node (every module then moves the data whose placement changed) and the chunk size of new
/// uploads, through Raft (forwarded to the leader); answers once committed here.
async fn set_settings(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Json(body): Json<SettingsBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "BAD_SETTINGS", m);
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
    let json = json!({"vnodes": body.vnodes, "chunk_size_bytes": body.chunk_size_bytes});
    let bytes = serde_json::to_vec(&json).unwrap_or_default();
    let raft = match leader_raft(&s, &caller, "/api/cluster/settings", &bytes).await? {
        Ok(raft) => raft,
        Err(answer) => return Ok(answer),
    };
    let mut index = 0;
    for change in changes {
        index = raft
            .propose(change, Duration::from_secs(5))
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NOT_COMMITTED", e))?;
    }
    let meta = raft.meta();
    Ok(Json(json!({
        "committed_index": index,
        "vnodes": meta.vnodes,
        "chunk_size_bytes": meta.chunk_size_bytes,
        "leader": s.me.id,
    })))
}

async fn node_action(
    State(s): State<Arc<Shared>>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin()?;
    let control = Control::parse(&action).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("unknown action '{action}': use stop, start or restart"),
        )
    })?;
    let Some(target) = s.member(&id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "UNKNOWN_NODE",
            format!("no node '{id}' in the cluster"),
        ));
    };
    if target.id != s.me.id {
        // Another node's Redis is supervised by that node: forward the request to it.
        let path = format!("/api/nodes/{id}/{action}");
        return forward(
            &target,
            "POST",
            &path,
            &caller.key,
            None,
            Duration::from_secs(60),
        )
        .await;
    }
    let result = s
        .redis
        .control(control)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "ACTION_FAILED", e))?;
    println!(
        "node {}: {action} by key '{}': {result}",
        s.me.id, caller.name
    );
    Ok(Json(
        json!({"node": id, "action": action, "result": result, "redis_state": s.redis.state.borrow().name()}),
    ))
}

async fn metrics(
    State(s): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    by_address(&s, &addr)?;
    let mut info_cmd = redis::cmd("INFO");
    info_cmd.arg("rcluster");
    let info = s
        .local
        .query::<String>(&info_cmd, Duration::from_millis(500))
        .await
        .ok();
    s.metrics.redis_up.set(i64::from(info.is_some()));
    if let Some(r) = s.raft.get() {
        let st = r.status();
        s.metrics
            .raft_term
            .set(i64::try_from(st.term).unwrap_or(i64::MAX));
        s.metrics
            .raft_commit_index
            .set(i64::try_from(st.commit_index).unwrap_or(i64::MAX));
        s.metrics.raft_is_leader.set(i64::from(st.role == "leader"));
    }
    s.metrics.observe_module_info(info.as_deref());
    let text = s.metrics.render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn index(State(s): State<Arc<Shared>>) -> Html<String> {
    let rows: String = node_rows(&s)
        .iter()
        .map(|n| {
            let f = |k: &str| escape(n[k].to_string().trim_matches('"'));
            format!(
                "<tr><td>{}</td><td>{}:{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                f("id"),
                f("host"),
                f("redis_port"),
                f("state"),
                f("redis_up"),
                f("kv_keys")
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>rcluster {name}</title></head>\
         <body><h1>rcluster: cluster {name}</h1><p>Seen from node {me}.</p>\
         <table><tr><th>node</th><th>Redis</th><th>state</th><th>Redis up</th><th>keys</th></tr>{rows}</table></body></html>",
        name = escape(&s.config.cluster_name),
        me = escape(&s.me.id),
    ))
}
