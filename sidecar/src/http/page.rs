//! `GET /`: a small status page (HTML, no key): every node with its Redis address, state and
//! keys, as this node sees them.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use crate::api::NodeState;
use crate::http::nodes::node_rows;
use crate::http::openapi::ControlLayers;
use crate::node::view::Shared;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A cell: the value, or `null` when unknown.
fn cell<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "null".into(), |v| escape(&v.to_string()))
}

/// Status page (HTML)
#[utoipa::path(
    get,
    path = "/",
    operation_id = "index",
    tag = "meta",
    responses(
        (status = 200, description = "The page.", body = String, content_type = "text/html"),
        ControlLayers,
    )
)]
pub async fn index(State(s): State<Arc<Shared>>) -> Html<String> {
    let rows: String = node_rows(&s)
        .iter()
        .map(|n| {
            format!(
                "<tr><td>{}</td><td>{}:{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&n.id),
                escape(&n.host),
                n.redis_port,
                cell(n.state.map(NodeState::as_str)),
                cell(n.redis_up),
                cell(n.kv_keys)
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
