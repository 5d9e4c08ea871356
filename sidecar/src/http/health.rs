//! `GET /api/health`: this node's own health, with no key (rate limited per client address);
//! 503 with the same body while its Redis does not answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;

use crate::api::Health;
use crate::http::auth::by_address;
use crate::http::error::ApiError;
use crate::http::openapi::{ControlLayers, PerAddress};
use crate::node::gossip::info_field;
use crate::node::view::Shared;

/// Node health
#[utoipa::path(
    get,
    path = "/api/health",
    operation_id = "health",
    tag = "meta",
    responses(
        (status = 200, description = "The node and its Redis are up.", body = Health),
        (status = 503, description = "The node's Redis does not answer.", body = Health),
        PerAddress,
        ControlLayers,
    )
)]
pub async fn health(
    State(s): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
) -> Result<(StatusCode, Json<Health>), ApiError> {
    by_address(&s, &addr)?;
    let redis = s.redis.state.borrow().clone();
    let info = s.module_info(Duration::from_millis(500)).await;
    // What this node's Redis holds: (registers, chunks); 0 once a leaving node handed over.
    let held = info.as_deref().map(|i| {
        let field = |name: &str| {
            info_field(i, name)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        (field("rcluster_kv_keys"), field("rcluster_chunks"))
    });
    let status = if info.is_some() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        node: s.me.id.clone(),
        cluster: s.config.cluster_name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        redis_port: s.me.redis_port,
        http_port: s.me.http_port,
        redis_up: info.is_some(),
        redis_state: redis.kind(),
        redis_reason: Some(redis.reason()).filter(|r| redis.pid().is_none() && !r.is_empty()),
        redis_restarts: redis.restarts(),
        redis_next_attempt_unix_ms: redis.next_attempt_unix_ms(),
        redis_pid: redis.pid(),
        member: s.member(&s.me.id).is_some(),
        kv_keys: held.map(|h| h.0),
        chunks: held.map(|h| h.1),
    };
    Ok((status, Json(body)))
}
