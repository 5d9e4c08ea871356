//! In-process tests of the router: requests go through `tower::ServiceExt::oneshot`, no socket.
//! The node's Redis is a port that accepts and never answers, so the routes that need it fail
//! the way they do when Redis hangs.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use futures_util::StreamExt;
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
    app_config(redis_port, api, "")
}

/// [`app_with`] with more top-level settings (whole lines).
fn app_config(redis_port: u16, api: &str, top: &str) -> Router {
    let yaml = format!(
        "cluster_name: inproc\n{top}\
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
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    send_from(app, client, method, path, &headers, Body::empty()).await
}

/// A request with a body (and `headers`) from the client at `client`; the answer's status,
/// headers and body.
async fn send_from(
    app: &Router,
    client: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(body).expect("request");
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
        let concrete = path
            .replace("{key}", "some-key")
            .replace("{id}", "n2")
            .replace("{file}", "some.js");
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
    assert_eq!(operations, 41);
    // No route is registered without its documentation (`routes!` registers both).
    for (file, source) in [
        ("mod.rs", include_str!("mod.rs")),
        ("checks.rs", include_str!("checks.rs")),
        ("cluster.rs", include_str!("cluster.rs")),
        ("faults.rs", include_str!("faults.rs")),
        ("files.rs", include_str!("files.rs")),
        ("health.rs", include_str!("health.rs")),
        ("kv.rs", include_str!("kv.rs")),
        ("members.rs", include_str!("members.rs")),
        ("metrics.rs", include_str!("metrics.rs")),
        ("nodes.rs", include_str!("nodes.rs")),
        ("openapi.rs", include_str!("openapi.rs")),
        ("page.rs", include_str!("page.rs")),
        ("traces.rs", include_str!("traces.rs")),
        ("events.rs", include_str!("events.rs")),
        ("locate.rs", include_str!("locate.rs")),
    ] {
        let plain = [".route(", ".route_service(", ".nest("];
        assert!(
            plain.iter().all(|p| !source.contains(p)),
            "http/{file} registers a route without its documentation"
        );
    }
}

/// A request with a body (and `headers`); the answer's status, headers and body.
async fn send(
    app: &Router,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    send_from(app, "127.0.0.1:40003", method, path, headers, body).await
}

/// A body that sends `first` and then nothing, never ending.
fn stalled(first: &'static [u8]) -> Body {
    let head = futures_util::stream::once(async move {
        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(first))
    });
    Body::from_stream(head.chain(futures_util::stream::pending()))
}

/// A read key is refused with 403 on every write route before anything it sent is read: the
/// wrong content type, a body that is not JSON, a declared length far over every limit.
#[tokio::test]
async fn a_read_key_gets_403_on_every_write_whatever_it_sent() {
    let (_redis, port) = silent_redis();
    let app = app(port);
    let (_, body) = call(&app, Method::GET, "/api/openapi.json", None).await;
    let doc: Value = serde_json::from_slice(&body).expect("document");
    let auth = format!("Bearer {READ}");
    let mut writes = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let concrete = path.replace("{key}", "some-key").replace("{id}", "n2");
        for method in ["put", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            writes += 1;
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            for (ctype, length) in [
                ("text/plain", None),
                ("application/json", None),
                ("multipart/form-data; boundary=x", Some("99999999999")),
            ] {
                let mut headers = vec![("authorization", auth.as_str()), ("content-type", ctype)];
                headers.extend(length.map(|l| ("content-length", l)));
                let (status, _, body) = send(
                    &app,
                    m.clone(),
                    &concrete,
                    &headers,
                    Body::from("{not json"),
                )
                .await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} ({ctype})");
                assert_eq!(error(&body).error.code, ErrorCode::Forbidden);
            }
        }
    }
    assert!(writes >= 11, "{writes} write operations");
}

/// A body that stops coming is refused with 408 after api.body_idle_timeout_ms, on a kv write
/// (whose handler buffers the body) as on a control route's JSON body.
#[tokio::test]
async fn a_stalled_body_gets_408_after_the_idle_bound() {
    let (_redis, port) = silent_redis();
    let app = app_with(
        port,
        "  auth_failure_burst: 100\n  body_idle_timeout_ms: 300\n",
    );
    let auth = format!("Bearer {ADMIN}");
    for (method, path, ctype) in [
        (Method::PUT, "/api/kv/k", "application/octet-stream"),
        (Method::PUT, "/api/cluster/quorum", "application/json"),
        (Method::POST, "/api/nodes", "application/json"),
    ] {
        let headers = [("authorization", auth.as_str()), ("content-type", ctype)];
        let started = std::time::Instant::now();
        let (status, headers, body) = send(&app, method, path, &headers, stalled(b"{\"")).await;
        let took = started.elapsed();
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{path}");
        let e = error(&body);
        assert_eq!(e.error.code, ErrorCode::RequestTimeout);
        assert!(
            e.error.message.contains("api.body_idle_timeout_ms"),
            "{}",
            e.error.message
        );
        assert_eq!(
            headers.get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..])
        );
        assert!(
            took >= std::time::Duration::from_millis(300)
                && took < std::time::Duration::from_secs(3),
            "{path}: {took:?}"
        );
    }
}

/// "Too large" is one code, TOO_LARGE, whose message names the setting and its value: for a
/// declared length and for a body that only turns out too long as it streams.
#[tokio::test]
async fn too_large_bodies_name_their_limit() {
    let (_redis, port) = silent_redis();
    let app = app_config(port, "", "limits: {max_value_bytes: 1024}\n");
    let refusal = |path: &'static str, headers: Vec<(&'static str, String)>, body: Body| {
        let app = app.clone();
        async move {
            let mut all = vec![("authorization", format!("Bearer {ADMIN}"))];
            all.extend(headers);
            let all: Vec<(&str, &str)> = all.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let (status, _, answer) = send(&app, Method::PUT, path, &all, body).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
            let e = error(&answer);
            assert_eq!(e.error.code, ErrorCode::TooLarge, "{path}");
            e.error.message
        }
    };
    let declared = vec![("content-length", "1025".to_string())];
    assert_eq!(
        refusal("/api/kv/k", declared, Body::from(vec![b'x'; 1025])).await,
        "the request body is larger than limits.max_value_bytes (1024 bytes): it declares 1025 bytes"
    );
    let chunks = futures_util::stream::iter(
        (0..3).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 512]))),
    );
    assert_eq!(
        refusal("/api/kv/k", Vec::new(), Body::from_stream(chunks)).await,
        "the request body is larger than limits.max_value_bytes (1024 bytes)"
    );
    // A control route's JSON body is bounded by api.body_limit_bytes.
    let big = format!("{{\"n\":3,\"pad\":\"{}\"}}", "x".repeat(2 << 20));
    let json = vec![("content-type", "application/json".to_string())];
    let message = refusal("/api/cluster/quorum", json, Body::from(big)).await;
    assert!(
        message.contains("api.body_limit_bytes (1048576 bytes)"),
        "{message}"
    );
    // No answer of any route carries the other spelling.
    assert!(!include_str!("../../../docs/http-api.md").contains("PAYLOAD_TOO_LARGE"));
}

/// Refusals of a JSON body name the field and what it must be, never a Rust type.
#[tokio::test]
async fn json_refusals_say_what_each_field_must_be() {
    let (_redis, port) = silent_redis();
    let app = app(port);
    let auth = format!("Bearer {ADMIN}");
    let json = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    for (body, status, message) in [
        (
            "[3,2,2]",
            422,
            r#"the body must be a JSON object with the fields "n", "w", "r""#,
        ),
        (
            r#"{"n":3,"w":"x","r":2}"#,
            422,
            r#""w" must be an integer from 1 to 255, not string "x""#,
        ),
        (
            r#"{"vnodes":1}"#,
            422,
            r#"unknown field "vnodes"; the fields are "n", "w", "r""#,
        ),
    ] {
        let (got, _, answer) = send(
            &app,
            Method::PUT,
            "/api/cluster/quorum",
            &json,
            Body::from(body),
        )
        .await;
        assert_eq!(got.as_u16(), status, "{body}");
        assert_eq!(error(&answer).error.message, message, "{body}");
    }
    let plain = [
        ("authorization", auth.as_str()),
        ("content-type", "text/plain"),
    ];
    let (got, _, answer) = send(
        &app,
        Method::PUT,
        "/api/cluster/quorum",
        &plain,
        Body::from("{}"),
    )
    .await;
    assert_eq!(got, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error(&answer).error.code, ErrorCode::UnsupportedMediaType);
    let (got, _, answer) = call_from(
        &app,
        "127.0.0.1:40004",
        Method::GET,
        "/api/kv/k?r=many",
        Some(READ),
    )
    .await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    assert_eq!(
        error(&answer).error.message,
        r#""r" must be an integer from 1 to 255, not "many""#
    );
}
