//! `GET /api/openapi.json`: the OpenAPI 3.0 document of the node's HTTP API (`openapi.json` beside
//! this file, embedded at build time), served as `application/json` with no key. The tests check
//! that the document is valid JSON and names every route that `web.rs`, `web_data.rs` and
//! `web_members.rs` register (and nothing else), so a new route without its documentation fails
//! `cargo test`.
//! `tests/schemathesis/run.sh` checks a running cluster's answers against it.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// Every route registered in web.rs, web_data.rs and web_members.rs: (path as registered, methods).
    const ROUTES: &[(&str, &[&str])] = &[
        ("/", &["get"]),
        ("/api/health", &["get"]),
        ("/api/cluster", &["get"]),
        ("/api/cluster/quorum", &["put"]),
        ("/api/cluster/settings", &["put"]),
        ("/api/nodes", &["get", "post"]),
        ("/api/nodes/{id}", &["delete"]),
        ("/api/nodes/{id}/{action}", &["post"]),
        ("/metrics", &["get"]),
        ("/api/openapi.json", &["get"]),
        ("/api/kv/{key}", &["put", "get", "delete"]),
        ("/api/files", &["get", "post"]),
        ("/api/files/{id}", &["get", "delete"]),
        ("/api/files/{id}/content", &["get"]),
    ];

    /// The routes that need no API key.
    const OPEN: &[&str] = &["/", "/api/health", "/metrics", "/api/openapi.json"];

    const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

    fn doc() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is not valid JSON")
    }

    /// The documented paths of a registered route: `{action}` is one path per action.
    fn documented_paths(path: &str) -> Vec<String> {
        if path.contains("{action}") {
            ["stop", "start", "restart"]
                .iter()
                .map(|a| path.replace("{action}", a))
                .collect()
        } else {
            vec![path.to_string()]
        }
    }

    /// `.route("<path>", get(..).post(..))` calls found in a source file.
    fn routes_in(source: &str) -> BTreeSet<(String, String)> {
        let mut found = BTreeSet::new();
        let mut rest = source;
        while let Some(at) = rest.find(".route(\"") {
            rest = &rest[at + ".route(\"".len()..];
            let end = rest.find('"').expect("unterminated route path");
            let path = rest[..end].to_string();
            // The arguments up to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let mut close = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            close = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let args = &rest[end..close];
            for m in METHODS {
                let needle = format!("{m}(");
                let hit = args.match_indices(&needle).any(|(i, _)| {
                    i == 0 || !args[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if hit {
                    found.insert((path.clone(), m.to_string()));
                }
            }
        }
        found
    }

    #[test]
    fn the_list_is_every_registered_route() {
        let mut registered = routes_in(include_str!("web.rs"));
        registered.extend(routes_in(include_str!("web_data.rs")));
        registered.extend(routes_in(include_str!("web_members.rs")));
        let listed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .flat_map(|(p, ms)| ms.iter().map(|m| (p.to_string(), m.to_string())))
            .collect();
        assert_eq!(
            registered, listed,
            "ROUTES must list exactly the routes web.rs, web_data.rs and web_members.rs register"
        );
    }

    #[test]
    fn documents_every_route_and_nothing_else() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.0."));
        let paths = doc["paths"].as_object().expect("no paths");
        let mut expected = BTreeSet::new();
        for (path, methods) in ROUTES {
            for p in documented_paths(path) {
                for m in *methods {
                    let op = &paths
                        .get(&p)
                        .unwrap_or_else(|| panic!("path {p} is not documented"))[*m];
                    assert!(op.is_object(), "{} {p} is not documented", m.to_uppercase());
                    assert!(op["operationId"].is_string(), "{m} {p}: no operationId");
                    expected.insert((p.clone(), m.to_string()));
                }
            }
        }
        let mut documented = BTreeSet::new();
        for (p, item) in paths {
            for m in METHODS {
                if item.get(*m).is_some() {
                    documented.insert((p.clone(), m.to_string()));
                }
            }
        }
        assert_eq!(
            documented, expected,
            "documented operations that are no route"
        );
    }

    #[test]
    fn security_and_error_answers() {
        let doc = doc();
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in METHODS {
                let Some(op) = item.get(*m) else { continue };
                let security = op["security"].as_array().expect("security is explicit");
                let responses = op["responses"].as_object().unwrap();
                if OPEN.contains(&path.as_str()) {
                    assert!(security.is_empty(), "{m} {path} needs no key");
                    assert!(!responses.contains_key("401"), "{m} {path}");
                } else {
                    assert!(
                        security.iter().any(|s| s.get("bearerAuth").is_some()),
                        "{m} {path} needs the bearer scheme"
                    );
                    for status in ["401", "429"] {
                        assert!(responses.contains_key(status), "{m} {path}: no {status}");
                    }
                }
                let retry = &doc["components"]["responses"]["TooManyRequests"]["headers"];
                assert!(retry["Retry-After"].is_object());
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
        }
        for (name, r) in doc["components"]["responses"].as_object().unwrap() {
            assert_eq!(
                r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                "{name}"
            );
        }
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
}
