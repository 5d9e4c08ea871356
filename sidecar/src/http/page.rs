//! `GET /` and `GET /assets/{file}`: the admin page (the built `admin-ui/dist`, found at run
//! time, so the binary builds without npm and a rebuilt page needs no restart). Without a built
//! page, `/` is a small status table that says how to build it. No key: the page signs in with
//! an API key itself, checked with `GET /api/whoami`.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::api::{ErrorCode, NodeState, Whoami};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::nodes::node_rows;
use crate::http::openapi::{ControlLayers, NotFound, ReadKey};
use crate::node::view::Shared;

/// Environment variable naming the built page's folder (default: found beside the binary).
pub const UI_DIR_ENV: &str = "RCLUSTER_UI_DIR";

/// How to build the page, as the fallback page says it.
const BUILD_HINT: &str = "cd admin-ui && npm ci && npm run build";

/// The built page's folder: `$RCLUSTER_UI_DIR`, else `admin-ui/dist` of the checkout the binary
/// sits in (`target/<profile>/rcluster`), else of the checkout it was built from; the first that
/// holds an `index.html`.
pub fn ui_dir() -> Option<PathBuf> {
    let from_env = std::env::var_os(UI_DIR_ENV).map(PathBuf::from);
    let beside_binary = std::env::current_exe().ok().and_then(|exe| {
        exe.parent()
            .and_then(FsPath::parent)
            .and_then(FsPath::parent)
            .map(|root| root.join("admin-ui/dist"))
    });
    let built_from = Some(FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../admin-ui/dist"));
    [from_env, beside_binary, built_from]
        .into_iter()
        .flatten()
        .find(|dir| dir.join("index.html").is_file())
}

/// The content type of a built file, by its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" | "map" => "application/json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// A built file name: letters, digits, `.`, `-`, `_`, not starting with a dot (no folders, no
/// way out of the assets folder).
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Answers `path` (or its `.gz` twin when the client takes gzip and the build wrote one).
fn serve_file(path: &FsPath, headers: &HeaderMap, cache: &'static str) -> Option<Response> {
    let name = path.file_name()?.to_str()?;
    let gzip_ok = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let gz = path.with_file_name(format!("{name}.gz"));
    let (bytes, gzipped) = match gzip_ok.then(|| std::fs::read(&gz).ok()).flatten() {
        Some(bytes) => (bytes, true),
        None => (std::fs::read(path).ok()?, false),
    };
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Some(response)
}

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

/// The page without the built admin page: every node in a table, and how to build the page.
fn fallback(s: &Shared) -> Html<String> {
    let rows: String = node_rows(s)
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
         <body><h1>rcluster: cluster {name}</h1>\
         <p id=\"not-built\"><strong>The admin page is not built.</strong> Build it with \
         <code>{BUILD_HINT}</code> (or start the cluster with <code>./rc.sh up</code>, which \
         does), then reload this page. Set {UI_DIR_ENV} to serve it from another folder.</p>\
         <p>Seen from node {me}.</p>\
         <table><tr><th>node</th><th>Redis</th><th>state</th><th>Redis up</th><th>keys</th></tr>{rows}</table></body></html>",
        name = escape(&s.config.cluster_name),
        me = escape(&s.me.id),
    ))
}

/// The admin page (HTML)
#[utoipa::path(
    get,
    path = "/",
    operation_id = "index",
    tag = "meta",
    description = "The admin page when admin-ui is built (admin-ui/dist), else a status table \
        that says how to build it.",
    responses(
        (status = 200, description = "The page.", body = String, content_type = "text/html"),
        ControlLayers,
    )
)]
pub async fn index(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    ui_dir()
        .and_then(|dir| serve_file(&dir.join("index.html"), &headers, "no-cache"))
        .unwrap_or_else(|| fallback(&s).into_response())
}

/// A file of the admin page
#[utoipa::path(
    get,
    path = "/assets/{file}",
    operation_id = "asset",
    tag = "meta",
    description = "A built file of the admin page (its name carries its content hash: cached \
        for good).",
    params(("file" = String, Path, description = "The file's name.")),
    responses(
        (status = 200, description = "The file.", body = String, content_type = "text/javascript"),
        NotFound,
        ControlLayers,
    )
)]
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let missing = || {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no asset '{file}' (is the admin page built? {BUILD_HINT})"),
        )
    };
    if !safe_name(&file) {
        return Err(missing());
    }
    let dir = ui_dir().ok_or_else(missing)?;
    let response = serve_file(
        &dir.join("assets").join(&file),
        &headers,
        "public, max-age=31536000, immutable",
    );
    match response {
        Some(r) if r.status() == StatusCode::OK => Ok(r),
        _ => Err(missing()),
    }
}

/// The key this request came with
#[utoipa::path(
    get,
    path = "/api/whoami",
    operation_id = "whoami",
    tag = "meta",
    description = "Any key: its name and role (the admin page signs in with it).",
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The key's name and role.", body = Whoami),
        ReadKey,
        ControlLayers,
    )
)]
pub async fn whoami(State(s): State<Arc<Shared>>, caller: Caller) -> axum::Json<Whoami> {
    axum::Json(Whoami {
        name: caller.name,
        role: caller.role.as_str().to_string(),
        observer: s.me.id.clone(),
        cluster: s.config.cluster_name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_are_served() {
        assert!(safe_name("app-3F2A.js"));
        assert!(safe_name("app.css.map"));
        for bad in [
            "", "..", ".env", "../x.js", "a/b.js", "a\\b", "x%2F..", "a b",
        ] {
            assert!(!safe_name(bad), "{bad}");
        }
        assert!(!safe_name(&"a".repeat(129)));
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("app-1.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("app-1.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }

    #[test]
    fn a_gzip_twin_is_served_to_clients_that_take_it() {
        let dir = std::env::temp_dir().join(format!("rc-page-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.js"), b"plain").unwrap();
        std::fs::write(dir.join("a.js.gz"), b"zipped").unwrap();
        let mut headers = HeaderMap::new();
        let plain = serve_file(&dir.join("a.js"), &headers, "no-cache").unwrap();
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip"),
        );
        let zipped = serve_file(&dir.join("a.js"), &headers, "no-cache").unwrap();
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        assert!(serve_file(&dir.join("missing.js"), &headers, "no-cache").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
