//! In-process tests of the router: requests go through `tower::ServiceExt::oneshot`, no socket.
//! The node's Redis is a port that accepts and never answers, so the routes that need it fail
//! the way they do when Redis hangs.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

use crate::api::{ErrorBody, ErrorCode, Health};
use crate::node::metrics::Metrics;
use crate::node::redis::RedisHandle;
use crate::node::view::Shared;

const ADMIN: &str = "test-admin-key-0123456789";
const READ: &str = "test-read-key-0123456789";

/// A router over a node `n1` whose Redis (at `redis_port`) does not answer; the tests that walk
/// every route without a key may fail to authenticate 100 times from one address.
fn app(redis_port: u16) -> Router {
    app_with(redis_port, "  auth_failure_burst: 100\n")
}

/// [`app`] with more `api:` settings (indented lines).
fn app_with(redis_port: u16, api: &str) -> Router {
    let yaml = format!(
        "cluster_name: inproc\n\
         api:\n{api}  keys:\n    - {{ name: admin, key: {ADMIN}, role: admin }}\n    - {{ name: reader, key: {READ}, role: read }}\n\
         nodes:\n  - {{ id: n1, host: 127.0.0.1, redis_port: {redis_port}, http_port: 18080, peer_port: 17379 }}\n\
         \x20 - {{ id: n2, host: 127.0.0.1, redis_port: 16380, http_port: 18081, peer_port: 17380 }}\n\
         \x20 - {{ id: n3, host: 127.0.0.1, redis_port: 16381, http_port: 18082, peer_port: 17381 }}\n"
    );
    let config = rcluster_domain::config::parse(&yaml).expect("test config");
    let me = config.nodes[0].clone();
    let dir = std::env::temp_dir().join(format!("rcluster-inproc-{}", std::process::id()));
    let shared = Shared::new(
        config,
        me,
        dir,
        RedisHandle::detached(),
        Metrics::new("n1", true),
    );
    super::router(Arc::new(shared))
}

/// A port that takes connections and never answers (kept open for the test's length).
fn silent_redis() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    key: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let (status, _, body) = call_from(app, "127.0.0.1:40000", method, path, key).await;
    (status, body)
}

/// A request from the client at `client`; the answer's status, headers and body.
async fn call_from(
    app: &Router,
    client: &str,
    method: Method,
    path: &str,
    key: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let mut request = request.body(Body::empty()).expect("request");
    let client: SocketAddr = client.parse().expect("addr");
    request.extensions_mut().insert(ConnectInfo(client));
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .expect("body");
    (status, headers, body.to_vec())
}

fn error(body: &[u8]) -> ErrorBody {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not an error body ({e}): {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn health_answers_503_with_its_body_while_redis_does_not_answer() {
    let (_redis, port) = silent_redis();
    let app = app(port);
    let (status, body) = call(&app, Method::GET, "/api/health", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let health: Health = serde_json::from_slice(&body).expect("health body");
    assert_eq!(
        (health.node.as_str(), health.cluster.as_str()),
        ("n1", "inproc")
    );
    assert_eq!(health.redis_port, port);
    assert!(!health.redis_up);
    assert!(health.member);
    assert_eq!(health.kv_keys, None);
}

#[tokio::test]
async fn keys_are_required_and_roles_are_enforced() {
    let (_redis, port) = silent_redis();
    let app = app(port);
    let (status, body) = call(&app, Method::GET, "/api/cluster", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error(&body).error.code, ErrorCode::Unauthorized);
    let (status, body) = call(&app, Method::GET, "/api/cluster", Some("nope")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error(&body).error.message, "unknown API key");
    let (status, body) = call(&app, Method::POST, "/api/nodes/n1/stop", Some(READ)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error(&body).error.code, ErrorCode::Forbidden);
    let (status, body) = call(&app, Method::GET, "/api/nodes", Some(READ)).await;
    assert_eq!(status, StatusCode::OK);
    let nodes: crate::api::Nodes = serde_json::from_slice(&body).expect("nodes");
    assert_eq!(nodes.nodes.len(), 3);
    assert!(nodes.nodes[0].is_self);
}

/// Keys cannot be guessed at speed: an address that keeps failing is refused (429 with
/// Retry-After) before its key is looked at, so even the right key from it waits; another
/// address is not held up.
#[tokio::test]
async fn failed_authentications_are_rate_limited_per_client_address() {
    let (_redis, port) = silent_redis();
    let app = app_with(port, "");
    let guesser = "127.0.0.1:40001";
    let mut first_refusal = None;
    for i in 0..1_000 {
        let guess = format!("guessed-key-{i:08}");
        let (status, headers, body) =
            call_from(&app, guesser, Method::GET, "/api/nodes", Some(&guess)).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(error(&body).error.code, ErrorCode::RateLimited);
            let retry: u64 = headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("Retry-After in seconds");
            assert!(retry >= 1, "{retry}");
            first_refusal.get_or_insert(i);
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {i}");
            assert!(
                first_refusal.is_none(),
                "a guess after the first 429 was looked at"
            );
        }
    }
    // The default api.auth_failure_burst: 10 wrong keys, then 429 for the other 990.
    assert_eq!(first_refusal, Some(10));
    // Missing keys count too.
    let (status, _, _) = call_from(&app, guesser, Method::GET, "/api/nodes", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The right key from the guessing address waits like any other...
    let (status, _, _) = call_from(&app, guesser, Method::GET, "/api/nodes", Some(READ)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // ...while another address is served.
    let (status, _, _) = call_from(
        &app,
        "127.0.0.2:40002",
        Method::GET,
        "/api/nodes",
        Some(READ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call_from(
        &app,
        "127.0.0.2:40002",
        Method::GET,
        "/api/nodes",
        Some("wrong-key-0123456789"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let (_redis, port) = silent_redis();
    let app = app(port);
    let (status, body) = call(&app, Method::GET, "/api/nope", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let e = error(&body);
    assert_eq!(
        (e.error.code, e.error.message.as_str()),
        (ErrorCode::NotFound, "no such endpoint")
    );
    let (status, body) = call(&app, Method::POST, "/api/nodes/n2/explode", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error(&body).error.code, ErrorCode::NotFound);
    let (status, body) = call(&app, Method::PATCH, "/api/cluster", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error(&body).error.code, ErrorCode::MethodNotAllowed);
    let (status, body) = call(&app, Method::POST, "/api/nodes/n9/stop", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error(&body).error.code, ErrorCode::UnknownNode);
}

/// The document lists what the router serves: every documented operation reaches a handler
/// (not the 404 of unknown routes nor a 405), and the routes are registered only together with
/// their documentation.
#[tokio::test]
async fn the_document_lists_every_route_of_the_router() {
    let (_redis, port) = silent_redis();
    let app = app(port);
    let (status, body) = call(&app, Method::GET, "/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&body).expect("document");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let concrete = path.replace("{key}", "some-key").replace("{id}", "n2");
        for method in ["get", "put", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let (status, body) = call(&app, m, &concrete, None).await;
            let fallback =
                status == StatusCode::NOT_FOUND && error(&body).error.message == "no such endpoint";
            assert!(
                !fallback && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed ({status})"
            );
            let open = item[method].get("security").is_none();
            if !open {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} needs a key"
                );
            }
        }
    }
    assert_eq!(operations, 21);
    // No route is registered without its documentation (`routes!` registers both).
    for (file, source) in [
        ("mod.rs", include_str!("mod.rs")),
        ("cluster.rs", include_str!("cluster.rs")),
        ("files.rs", include_str!("files.rs")),
        ("health.rs", include_str!("health.rs")),
        ("kv.rs", include_str!("kv.rs")),
        ("members.rs", include_str!("members.rs")),
        ("metrics.rs", include_str!("metrics.rs")),
        ("nodes.rs", include_str!("nodes.rs")),
        ("openapi.rs", include_str!("openapi.rs")),
        ("page.rs", include_str!("page.rs")),
    ] {
        let plain = [".route(", ".route_service(", ".nest("];
        assert!(
            plain.iter().all(|p| !source.contains(p)),
            "http/{file} registers a route without its documentation"
        );
    }
}
