//! Who is calling: the API key (`Authorization: Bearer <key>` or `X-API-Key`), compared in
//! constant time by the config, and its role; and the rate limits: per key or, for the routes
//! that need no key, per client address; and failed authentications per client address, so keys
//! cannot be guessed at speed: once an address used up `api.auth_failure_burst`, every request
//! from it that needs a key is answered 429 (with Retry-After) before its key is even looked at,
//! so a right guess cannot be told from a wrong one until the bucket refills. Every write
//! (any method but GET, HEAD and OPTIONS) needs an admin key, checked by [`writes_need_admin`]
//! before the body is read, so what a read key sent never matters.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rcluster_domain::node_config::Role;

use crate::api::ErrorCode;
use crate::http::error::ApiError;
use crate::node::view::Shared;

/// Applies the rate limit to `key` (a key name or a client address).
fn rate_limit(shared: &Shared, key: &str) -> Result<(), ApiError> {
    let now = shared.mono_ms();
    let verdict = shared
        .limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .check(key, now);
    verdict.map_err(|retry_ms| refused(format!("too many requests for {key}"), retry_ms))
}

/// A 429 saying `what` and when to come back (Retry-After, in whole seconds, at least 1).
fn refused(what: String, retry_ms: u64) -> ApiError {
    ApiError::new(
        ErrorCode::RateLimited,
        format!("{what}; retry in {retry_ms} ms"),
    )
    .with_retry_after(retry_ms.div_ceil(1000).max(1))
}

/// Refuses a client address that failed to authenticate too often, taking nothing.
fn failures_allow(shared: &Shared, client: &str) -> Result<(), ApiError> {
    let now = shared.mono_ms();
    let verdict = shared
        .auth_failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .peek(client, now);
    verdict.map_err(|retry_ms| {
        refused(
            format!("too many failed authentications from {client}"),
            retry_ms,
        )
    })
}

/// Counts a failed authentication against `client` and answers `error` (401).
fn failed(shared: &Shared, client: &str, error: ApiError) -> ApiError {
    shared.metrics.auth_failures.inc();
    let now = shared.mono_ms();
    let _ = shared
        .auth_failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .check(client, now);
    error
}

/// Rate limits a caller without a key by its address.
pub fn by_address(shared: &Shared, addr: &SocketAddr) -> Result<(), ApiError> {
    rate_limit(shared, &format!("addr:{}", addr.ip()))
}

/// The caller, authenticated by API key.
#[derive(Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub key: String,
}

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        // Already authenticated (and counted) by `writes_need_admin`.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(
                || "an unknown address".to_string(),
                |c| c.0.ip().to_string(),
            );
        failures_allow(shared, &client)?;
        let header_text =
            |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let presented = header_text(header::AUTHORIZATION)
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::trim);
        let Some(presented) = presented else {
            let error = ApiError::new(
                ErrorCode::Unauthorized,
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            );
            return Err(failed(shared, &client, error));
        };
        let Some(found) = shared.config.api.authenticate(presented) else {
            let error = ApiError::new(ErrorCode::Unauthorized, "unknown API key");
            return Err(failed(shared, &client, error));
        };
        rate_limit(shared, &format!("key:{}", found.name))?;
        Ok(Caller {
            name: found.name.clone(),
            role: found.role,
            key: presented.to_string(),
        })
    }
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Read => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("key '{}' is read-only; this needs an admin key", self.name),
            )),
        }
    }
}

/// The route-level middleware that checks, before the handler and its extractors run, that a
/// write comes with an admin key; the caller is kept for the handler's own [`Caller`].
pub async fn writes_need_admin(
    State(s): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &s).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = caller.require_admin() {
        return e.into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}
