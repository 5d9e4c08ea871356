//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the HTTP API, generated (utoipa) from
//! the `api` types and the `#[utoipa::path]` annotation on every handler; the router registers
//! each handler together with its documentation (`utoipa_axum::routes!`), so a route cannot go
//! undocumented. Here: the document's frame (info, tags, security schemes), the shared error
//! answers and the sets of them the routes list, and the path parameters.
//! `tests/schemathesis/run.sh` checks a running cluster's answers against the document.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type,
};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi};

use crate::api::{ErrorBody, ErrorCode};
use crate::http::error::status_of;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rcluster node HTTP API",
        description = "The HTTP API every rcluster node serves. Send a key as `Authorization: \
            Bearer <key>` (or `X-API-Key: <key>`): a read key may GET, an admin key may also \
            write and control nodes. Every error is JSON `{\"error\":{\"code\",\"message\"}}`. \
            Requests are rate limited per key (per client address for /api/health and \
            /metrics), and failed authentications per client address (beyond \
            api.auth_failure_burst every keyed request from that address is refused until the \
            bucket refills): 429 with Retry-After."
    ),
    tags(
        (name = "control", description = "The cluster, its nodes and its metadata."),
        (name = "kv", description = "Keys, replicated with quorum."),
        (name = "files", description = "Files, cut into chunks replicated with quorum."),
        (name = "faults", description = "Injected faults: crashes, pauses, partitions, latency, loss, clock skew."),
        (name = "meta", description = "Health, metrics, this document and the status page."),
    ),
    components(schemas(ErrorBody)),
    modifiers(&Frame)
)]
pub struct ApiDoc;

/// The shared error answers (`components.responses`): status, name, when.
const ERRORS: &[(u16, &str, &str)] = &[
    (400, "BadRequest", "The request is malformed, or the module refused an argument."),
    (401, "Unauthorized", "No API key, or an unknown one."),
    (403, "Forbidden", "The key is read-only; this needs an admin key."),
    (404, "NotFound", "No such endpoint, node, key or file."),
    (405, "MethodNotAllowed", "The route exists, not with this method."),
    (408, "RequestTimeout", "The request ran over its time limit, or its body stalled (api.body_idle_timeout_ms)."),
    (409, "Conflict", "The request conflicts with the state of the cluster or the data."),
    (413, "ContentTooLarge", "The body is larger than the route's limit, or the value or file larger than the configured one (the message names the setting)."),
    (415, "UnsupportedMediaType", "A JSON body without `Content-Type: application/json`."),
    (416, "RangeNotSatisfiable", "The range does not fit the file."),
    (422, "UnprocessableEntity", "A JSON body of the wrong shape."),
    (429, "TooManyRequests", "Rate limited (per key, or per client address without one, or after too many failed authentications from the address), or too many uploads or downloads at once."),
    (500, "InternalError", "Something failed on this node."),
    (502, "BadGateway", "The storage or another node answered with an error."),
    (503, "ServiceUnavailable", "The storage, the quorum or Raft cannot serve right now; retry."),
    (507, "InsufficientStorage", "The node's Redis is out of memory."),
];

/// Adds the security schemes and the shared error answers.
struct Frame;

impl Modify for Frame {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key of the config (api.keys)."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKeyHeader",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The same key, in X-API-Key.",
            ))),
        );
        for (status, name, when) in ERRORS {
            components
                .responses
                .insert(name.to_string(), RefOr::T(error_response(*status, when)));
        }
    }
}

/// One shared error answer: the error body, the codes it may carry, and its headers.
fn error_response(status: u16, when: &str) -> Response {
    let codes: Vec<&str> = ErrorCode::ALL
        .iter()
        .filter(|c| status_of(**c).as_u16() == status)
        .map(|c| c.as_str())
        .collect();
    let mut description = when.to_string();
    if !codes.is_empty() {
        description.push_str(&format!(" Codes: {}.", codes.join(", ")));
    }
    description.push_str(
        " A request forwarded to another node may carry that node's answer as FORWARDED_ERROR.",
    );
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    let integer = |minimum: f64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(minimum))
    };
    if status == StatusCode::TOO_MANY_REQUESTS.as_u16() {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(integer(1.0))
                .description(Some("Seconds to wait before retrying."))
                .build(),
        );
    }
    if status == StatusCode::RANGE_NOT_SATISFIABLE.as_u16() {
        response = response.header(
            "Content-Range",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some("bytes */<size of the file>"))
                .build(),
        );
    }
    response.build()
}

/// References to shared error answers, by status.
fn error_refs(statuses: &[u16]) -> BTreeMap<String, RefOr<Response>> {
    statuses
        .iter()
        .filter_map(|s| {
            let (_, name, _) = ERRORS.iter().find(|(status, _, _)| status == s)?;
            Some((s.to_string(), RefOr::Ref(Ref::from_response_name(*name))))
        })
        .collect()
}

/// Declares sets of error answers a route lists in its `responses(..)`.
macro_rules! error_sets {
    ($($(#[$doc:meta])* $name:ident = [$($status:literal),*];)*) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl $name {
                /// The statuses of the set.
                #[allow(dead_code)]
                pub const STATUSES: &'static [u16] = &[$($status),*];
            }

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    error_refs(&[$($status),*])
                }
            }
        )*
    };
}

error_sets! {
    /// The layers of the control routes: a request time limit and a body limit.
    ControlLayers = [408, 413];
    /// The body limit of the kv and file routes.
    BodyLimit = [413];
    /// A route without a key: rate limited per client address.
    PerAddress = [429];
    /// A route that needs a read key.
    ReadKey = [401, 429];
    /// A route that needs an admin key.
    AdminKey = [401, 403, 429];
    /// A JSON request body: malformed, too large, not JSON, or of the wrong shape.
    JsonBody = [400, 413, 415, 422];
    /// A command to this node's Redis and module (`http::error::redis_code`), with the
    /// request's query and the route's body limit.
    Storage = [400, 409, 413, 502, 503, 507];
    /// A change through Raft: the leader unreachable, no leader, not committed.
    ThroughLeader = [502, 503];
    BadRequest = [400];
    NotFound = [404];
    Conflict = [409];
    RequestTimeout = [408];
    RangeNotSatisfiable = [416];
    InternalError = [500];
    BadGateway = [502];
}

/// `{id}` of a node.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodeId {
    /// A node id of the cluster; another node's id is forwarded to that node.
    #[param(pattern = "^[a-z0-9_-]{1,32}$")]
    pub id: String,
}

/// `{id}` of a file.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct FileId {
    /// A file id: 32 hex characters.
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    pub id: String,
}

/// `{key}` of a register.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct Key {
    /// The key (percent-encode '/', '?', '#', '%').
    #[param(min_length = 1)]
    pub key: String,
}

/// Any bytes (a raw body).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Binary(Vec<u8>);

/// utoipa 5 writes a link's fields in snake case (`operation_id`; fixed in utoipa 6, which
/// needs Rust 1.88): renames them as OpenAPI spells them.
fn fix_links(doc: &mut serde_json::Value) {
    let responses = doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|r| r.values_mut());
    for response in responses {
        let links = response.get_mut("links").and_then(|l| l.as_object_mut());
        for link in links.into_iter().flat_map(|l| l.values_mut()) {
            let Some(link) = link.as_object_mut() else {
                continue;
            };
            for (from, to) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(from) {
                    link.insert(to.to_string(), v);
                }
            }
        }
    }
}

/// The document as served (built once).
pub fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(crate::http::openapi()).unwrap_or_default();
        fix_links(&mut doc);
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    })
}

/// This document
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", body = serde_json::Value),
        ControlLayers,
    )
)]
pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

    /// The operations that need no API key.
    const OPEN: &[&str] = &["index", "asset", "health", "metrics", "openapi"];

    fn doc() -> Value {
        serde_json::from_str(document_json()).expect("the document is not valid JSON")
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("no paths") {
            for m in METHODS {
                if let Some(op) = item.get(*m) {
                    out.push((path.clone(), m.to_string(), op.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_operation_has_a_unique_id() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        let mut ids = BTreeSet::new();
        for (path, m, op) in operations(&doc) {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{m} {path}: no id"));
            assert!(
                ids.insert(id.to_string()),
                "{m} {path}: operationId {id} twice"
            );
        }
        // The schemathesis run leaves these out by id: they must exist.
        for id in ["nodeStop", "nodeStart", "nodeRestart", "nodeRemove"] {
            assert!(ids.contains(id), "{id}");
        }
    }

    #[test]
    fn security_and_error_answers() {
        let doc = doc();
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
        assert_eq!(schemes["apiKeyHeader"]["name"], "X-API-Key");
        let retry = &doc["components"]["responses"]["TooManyRequests"]["headers"];
        assert!(retry["Retry-After"].is_object());
        for (path, m, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap();
            let responses = op["responses"].as_object().unwrap();
            if OPEN.contains(&id) {
                assert!(op.get("security").is_none(), "{m} {path} needs no key");
                assert!(!responses.contains_key("401"), "{m} {path}");
            } else {
                let security = op["security"].as_array().expect("security is explicit");
                assert!(
                    security.iter().any(|s| s.get("bearerAuth").is_some()),
                    "{m} {path} needs the bearer scheme"
                );
                for status in ["401", "429"] {
                    assert!(responses.contains_key(status), "{m} {path}: no {status}");
                }
            }
            for (status, r) in responses {
                let code: u16 = status.parse().expect("numeric status, no default");
                // /api/health answers 503 with the health body when its Redis is down.
                if code >= 400 && !(path == "/api/health" && code == 503) {
                    assert_eq!(
                        r["$ref"]
                            .as_str()
                            .map(|s| s.starts_with("#/components/responses/")),
                        Some(true),
                        "{m} {path} {status}: errors use the shared error responses"
                    );
                }
            }
        }
        for (name, r) in doc["components"]["responses"].as_object().unwrap() {
            assert_eq!(
                r["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{name}"
            );
        }
    }

    /// The document's enums list exactly the names the answers carry.
    #[test]
    fn enums_are_documented_as_serialized() {
        use crate::api::{NodeAction, NodeState, PassKind, RedisState};
        fn names<T: serde::Serialize>(values: &[T]) -> Vec<Value> {
            values
                .iter()
                .map(|v| serde_json::to_value(v).unwrap())
                .collect()
        }
        let doc = doc();
        let documented = |schema: &str| {
            doc["components"]["schemas"][schema]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{schema} is no enum"))
                .clone()
        };
        assert_eq!(documented("ErrorCode"), names(ErrorCode::ALL));
        let states = [
            RedisState::Starting,
            RedisState::Running,
            RedisState::Stopped,
            RedisState::Restarting,
            RedisState::CrashLooping,
            RedisState::CannotStart,
        ];
        assert_eq!(documented("RedisState"), names(&states));
        let liveness = [NodeState::Alive, NodeState::Suspect, NodeState::Down];
        assert_eq!(documented("NodeState"), names(&liveness));
        let kinds = [
            PassKind::Redistribution,
            PassKind::Sweep,
            PassKind::AntiEntropy,
        ];
        assert_eq!(documented("PassKind"), names(&kinds));
        let actions = [NodeAction::Stop, NodeAction::Start, NodeAction::Restart];
        assert_eq!(documented("NodeAction"), names(&actions));
    }

    /// Every status an error code has is a shared error answer.
    #[test]
    fn every_error_status_is_documented() {
        for code in ErrorCode::ALL {
            let status = status_of(*code).as_u16();
            assert!(
                ERRORS.iter().any(|(s, _, _)| *s == status),
                "{code} answers {status}, which has no shared error answer"
            );
        }
    }

    /// The `Storage` set is what the one mapping of Redis and module errors can answer.
    #[test]
    fn the_storage_set_is_what_the_mapping_answers() {
        use crate::http::error::redis_code;
        use crate::node::redis_error::{RedisError, ReplyCode};
        use rcluster_domain::codes::{Code, CodedError};
        let mut errors: Vec<RedisError> = Code::ALL
            .into_iter()
            .map(|c| RedisError::Module(CodedError::new(c, "m")))
            .collect();
        for code in [
            ReplyCode::Oom,
            ReplyCode::Loading,
            ReplyCode::Busy,
            ReplyCode::ReadOnly,
            ReplyCode::Other("X".into()),
        ] {
            errors.push(RedisError::Reply {
                code,
                message: String::new(),
            });
        }
        errors.push(RedisError::Unreachable(String::new()));
        errors.push(RedisError::Timeout(std::time::Duration::ZERO));
        errors.push(RedisError::Protocol(String::new()));
        let answered: BTreeSet<u16> = errors
            .iter()
            .map(|e| status_of(redis_code(e)).as_u16())
            .collect();
        let listed: BTreeSet<u16> = Storage::STATUSES.iter().copied().collect();
        assert_eq!(answered, listed);
    }

    /// Every `$ref` points at something in the document.
    #[test]
    fn refs_resolve() {
        fn walk(v: &Value, doc: &Value) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        let pointer = r.strip_prefix('#').expect("local refs only");
                        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
                    }
                    map.values().for_each(|x| walk(x, doc));
                }
                Value::Array(items) => items.iter().for_each(|x| walk(x, doc)),
                _ => {}
            }
        }
        let doc = doc();
        walk(&doc, &doc);
    }

    /// Links name operations that exist, with parameters they take.
    #[test]
    fn links_resolve() {
        let doc = doc();
        let ops = operations(&doc);
        let mut links = 0;
        for (_, _, op) in &ops {
            for r in op["responses"].as_object().unwrap().values() {
                for (name, link) in r["links"].as_object().into_iter().flatten() {
                    links += 1;
                    let target = link["operationId"].as_str().unwrap();
                    let (_, _, t) = ops
                        .iter()
                        .find(|(_, _, o)| o["operationId"] == target)
                        .unwrap_or_else(|| panic!("link {name}: no operation {target}"));
                    let names: Vec<&str> = t["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p["name"].as_str())
                        .collect();
                    for p in link["parameters"].as_object().unwrap().keys() {
                        let p = p.strip_prefix("header.").unwrap_or(p);
                        assert!(names.contains(&p), "link {name}: {target} has no {p}");
                    }
                }
            }
        }
        assert_eq!(links, 8);
    }
}
