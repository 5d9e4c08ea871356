//! `GET /metrics`: the node's Prometheus metrics, with no key (rate limited per client address).
//! Every scrape reads its Redis's `INFO` (the module's section and the resources) and counts the
//! key ranges whose live preference nodes no longer make a quorum.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::header;
use axum::response::IntoResponse;
use rcluster_domain::meta::Meta;
use rcluster_domain::phi::Liveness;
use rcluster_domain::ring::Ring;

use crate::http::auth::by_address;
use crate::http::error::ApiError;
use crate::http::openapi::{ControlLayers, PerAddress};
use crate::node::module_metrics::INFO_SECTIONS;
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
    let mut cmd = redis::cmd("INFO");
    for section in INFO_SECTIONS {
        cmd.arg(section);
    }
    let info = s
        .local
        .query::<String>(&cmd, Duration::from_millis(500))
        .await
        .ok();
    s.metrics.redis_up.set(i64::from(info.is_some()));
    (s.metrics.time_max_drift).set(s.config.time.max_drift_ms as f64 / 1000.0);
    s.metrics.observe_redis_info(info.as_deref());
    if let Some(r) = s.raft.get() {
        let down: Vec<String> = s
            .nodes()
            .iter()
            .filter(|(_, v)| v.liveness == Liveness::Down)
            .map(|(id, _)| id.clone())
            .collect();
        let me_down = info.is_none().then(|| s.me.id.clone());
        let is_down = |id: &str| down.iter().chain(&me_down).any(|d| d == id);
        let (total, write, read) = ranges_without_quorum(&r.meta(), is_down);
        s.metrics.observe_ranges(total, write, read);
    }
    let text = s.metrics.render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}

/// Key ranges of the ring, and those with fewer live preference nodes than W and than R.
fn ranges_without_quorum(meta: &Meta, is_down: impl Fn(&str) -> bool) -> (usize, usize, usize) {
    let ids: Vec<String> = meta.members.iter().map(|m| m.id.clone()).collect();
    let Ok(ring) = Ring::new(&ids, meta.vnodes) else {
        return (0, 0, 0);
    };
    let ranges = ring.range_owners(usize::from(meta.quorum.n));
    let live = |owners: &Vec<&str>| owners.iter().filter(|id| !is_down(id)).count();
    let short = |needed: u8| {
        ranges
            .iter()
            .filter(|owners| live(owners) < usize::from(needed))
            .count()
    };
    (ranges.len(), short(meta.quorum.w), short(meta.quorum.r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcluster_domain::config::{parse, Quorum};

    fn meta(nodes: usize, n: u8, w: u8, r: u8) -> Meta {
        let mut config = parse(include_str!("../../../config/cluster.yaml")).unwrap();
        let first = config.nodes[0].clone();
        config.nodes = (0..nodes)
            .map(|i| {
                let mut node = first.clone();
                node.id = format!("n{}", i + 1);
                node
            })
            .collect();
        config.quorum = Quorum { n, w, r };
        config.vnodes = 16;
        Meta::initial(&config, "n1")
    }

    #[test]
    fn ranges_lose_their_quorum_with_their_nodes() {
        let m = meta(3, 3, 2, 2);
        assert_eq!(ranges_without_quorum(&m, |_| false), (48, 0, 0));
        // One of three down: W=2 and R=2 still reachable everywhere.
        assert_eq!(ranges_without_quorum(&m, |id| id == "n2"), (48, 0, 0));
        // Two down: every range lost both.
        assert_eq!(ranges_without_quorum(&m, |id| id != "n1"), (48, 48, 48));
        // Five nodes, N=3 W=3 R=1: one node down breaks writes only for the ranges it holds.
        let m = meta(5, 3, 3, 1);
        let (total, write, read) = ranges_without_quorum(&m, |id| id == "n4");
        assert_eq!(total, 80);
        assert!(write > 0 && write < total, "{write}");
        assert_eq!(read, 0);
    }
}
