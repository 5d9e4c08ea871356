//! The node's HTTP endpoint: `GET /api/health` (answers 503 when the node's Redis does not
//! answer PING) and a small status page at `/` that links every
//! node of the cluster. The full API and admin page grow from this router.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use rcluster_domain::config::{ClusterConfig, NodeConfig};
use serde_json::json;

pub struct NodeState {
    pub config: ClusterConfig,
    pub node: NodeConfig,
}

pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/health", get(health))
        .with_state(state)
}

async fn health(State(s): State<Arc<NodeState>>) -> impl IntoResponse {
    let redis_up =
        crate::probe::redis_ping(&s.node.host, s.node.redis_port, Duration::from_millis(500)).await;
    let status = if redis_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "node": s.node.id,
        "cluster": s.config.cluster_name,
        "version": env!("CARGO_PKG_VERSION"),
        "redis_port": s.node.redis_port,
        "http_port": s.node.http_port,
        "redis_up": redis_up,
    });
    (status, Json(body))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn index(State(s): State<Arc<NodeState>>) -> Html<String> {
    let rows: String = s
        .config
        .nodes
        .iter()
        .map(|n| {
            format!(
                "<tr><td>{id}</td><td>{host}:{rp}</td><td><a href=\"http://{host}:{hp}/api/health\">{host}:{hp}</a></td></tr>",
                id = escape(&n.id),
                host = escape(&n.host),
                rp = n.redis_port,
                hp = n.http_port
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>rcluster {name}</title></head>\
         <body><h1>rcluster: cluster {name}</h1><p>This is node {me}.</p>\
         <table><tr><th>node</th><th>Redis</th><th>HTTP</th></tr>{rows}</table></body></html>",
        name = escape(&s.config.cluster_name),
        me = escape(&s.node.id),
    ))
}
