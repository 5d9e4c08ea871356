//! `GET /metrics`: the node's Prometheus metrics, with no key (rate limited per client address);
//! the module's counters are read from `INFO rcluster` at every scrape.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::IntoResponse;

use crate::http::auth::by_address;
use crate::http::error::ApiError;
use crate::http::openapi::{ControlLayers, PerAddress};
use crate::node::view::Shared;

/// Prometheus metrics
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "meta",
    responses(
        (status = 200, description = "The text exposition format.", body = String,
            content_type = "text/plain; version=0.0.4"),
        PerAddress,
        ControlLayers,
    )
)]
pub async fn metrics(
    State(s): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
) -> Result<impl IntoResponse, ApiError> {
    by_address(&s, &addr)?;
    let info = s.module_info(Duration::from_millis(500)).await;
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
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
