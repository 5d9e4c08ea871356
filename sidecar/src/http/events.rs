//! `GET /api/events`: a WebSocket that streams what this node sees, live. Every message
//! published on its Redis's `cluster:events` channel goes out as one text frame, as published;
//! a `{"type":"snapshot",...}` frame with the rows of `GET /api/nodes` goes out on connect and
//! every heartbeat; a `{"type":"stream",...}` frame says when the node's Redis subscription is
//! lost or back (events published meanwhile are missed). Read key, in `?key=` (a browser cannot
//! set headers on a WebSocket) or the usual headers. Each connection has a bounded buffer: a
//! client that does not keep up is disconnected (close code 1013) rather than slowing the node.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::IntoParams;

use crate::api::{ErrorCode, Nodes};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::nodes::node_rows;
use crate::http::openapi::{BadRequest, ReadKey};
use crate::node::report::EVENTS_CHANNEL;
use crate::node::view::{unix_ms, Shared};

/// Frames one connection may have waiting; past it the client is too slow and is dropped.
pub const BUFFER_FRAMES: usize = 512;

/// A frame the client has not taken in this long ends the connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause before subscribing again after the node's Redis went away.
const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(1);

/// Close code: the client did not keep up ("try again later").
const CLOSE_TOO_SLOW: u16 = 1013;

/// `?key=`: the API key, for clients that cannot send headers (browsers' WebSocket).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// An API key (read or admin); the `Authorization` or `X-API-Key` header works too.
    pub key: Option<String>,
}

/// The caller of the stream: `?key=` counts as the `X-API-Key` header when no key header came.
pub struct StreamCaller(pub Caller);

impl FromRequestParts<Arc<Shared>> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        let has_header = parts.headers.contains_key(header::AUTHORIZATION)
            || parts.headers.contains_key("x-api-key");
        if !has_header {
            let key = Query::<StreamQuery>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|q| q.0.key);
            if let Some(value) = key.and_then(|k| HeaderValue::from_str(&k).ok()) {
                parts.headers.insert("x-api-key", value);
            }
        }
        Caller::from_request_parts(parts, shared)
            .await
            .map(StreamCaller)
    }
}

/// The snapshot frame: the node rows of `GET /api/nodes`, stamped.
#[derive(Serialize)]
struct Snapshot {
    #[serde(rename = "type")]
    kind: &'static str,
    at_ms: u64,
    heartbeat_ms: u64,
    #[serde(flatten)]
    nodes: Nodes,
}

fn snapshot(s: &Shared) -> String {
    let frame = Snapshot {
        kind: "snapshot",
        at_ms: unix_ms(),
        heartbeat_ms: s.config.intervals.heartbeat_ms,
        nodes: Nodes {
            observer: s.me.id.clone(),
            nodes: node_rows(s),
        },
    };
    serde_json::to_string(&frame).unwrap_or_default()
}

/// A `stream` frame: the state of this node's subscription to `cluster:events`.
fn stream_frame(s: &Shared, state: &str, reason: &str) -> String {
    serde_json::json!({
        "type": "stream",
        "node": s.me.id,
        "state": state,
        "reason": reason,
        "at_ms": unix_ms(),
    })
    .to_string()
}

/// The live events of this node (WebSocket)
#[utoipa::path(
    get,
    path = "/api/events",
    operation_id = "events",
    tag = "control",
    description = "Read key (`?key=` or a key header). A WebSocket: every message published on \
        this node's `cluster:events` as one text frame, plus `{\"type\":\"snapshot\", \
        \"observer\", \"at_ms\", \"heartbeat_ms\", \"nodes\"}` (the rows of GET /api/nodes) on \
        connect and every heartbeat, and `{\"type\":\"stream\",\"state\":\"subscribed\"|\"lost\"}` \
        when the subscription to this node's Redis changes. A client that does not keep up is \
        closed with code 1013.",
    params(StreamQuery),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol."),
        BadRequest,
        ReadKey,
    )
)]
pub async fn events(
    State(s): State<Arc<Shared>>,
    StreamCaller(caller): StreamCaller,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("GET /api/events is a WebSocket (send Upgrade: websocket): {e}"),
        )
    })?;
    tracing::debug!(node = %s.me.id, "events stream opened by key '{}'", caller.name);
    Ok(upgrade
        .max_message_size(64 << 10)
        .on_upgrade(move |socket| stream(s, socket)))
}

/// Why the feed of a connection stopped.
#[derive(Debug, PartialEq, Eq)]
enum FeedEnd {
    /// The connection's buffer was full: the client does not keep up.
    TooSlow,
    /// The connection is gone.
    Closed,
}

/// Hands a frame to the connection without waiting.
fn offer(tx: &mpsc::Sender<String>, frame: String) -> Result<(), FeedEnd> {
    tx.try_send(frame).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => FeedEnd::TooSlow,
        mpsc::error::TrySendError::Closed(_) => FeedEnd::Closed,
    })
}

/// Subscribes to `cluster:events` on this node's Redis and offers every message to `tx`,
/// subscribing again whenever the Redis goes away.
async fn feed(s: Arc<Shared>, tx: mpsc::Sender<String>) -> FeedEnd {
    let timeout = Duration::from_secs(2);
    let mut told_lost = false;
    loop {
        let subscribed = async {
            let mut pubsub = s.local.pubsub(timeout).await?;
            pubsub.subscribe(EVENTS_CHANNEL).await?;
            Ok::<_, crate::node::redis_error::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(pubsub) => {
                if let Err(end) = offer(&tx, stream_frame(&s, "subscribed", "")) {
                    return end;
                }
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(text) = msg.get_payload::<String>() else {
                        continue;
                    };
                    if let Err(end) = offer(&tx, text) {
                        return end;
                    }
                }
                let lost = stream_frame(&s, "lost", "the subscription to this node's Redis ended");
                if let Err(end) = offer(&tx, lost) {
                    return end;
                }
                told_lost = true;
            }
            Err(e) if !told_lost => {
                let reason = format!("cannot subscribe on this node's Redis: {e}");
                if let Err(end) = offer(&tx, stream_frame(&s, "lost", &reason)) {
                    return end;
                }
                told_lost = true;
            }
            Err(_) => {}
        }
        if tx.is_closed() {
            return FeedEnd::Closed;
        }
        tokio::time::sleep(RESUBSCRIBE_EVERY).await;
    }
}

/// Sends one frame, giving up when the client takes too long.
async fn send(socket: &mut WebSocket, frame: String) -> bool {
    let sent = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(frame.into()))).await;
    matches!(sent, Ok(Ok(())))
}

/// One connection: snapshots on a timer, the feed's frames as they come, until either side ends.
async fn stream(s: Arc<Shared>, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::channel(BUFFER_FRAMES);
    let mut feeder = tokio::spawn(feed(s.clone(), tx));
    let mut ticker = tokio::time::interval(Duration::from_millis(
        s.config.intervals.heartbeat_ms.max(100),
    ));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ok = tokio::select! {
            _ = ticker.tick() => send(&mut socket, snapshot(&s)).await,
            frame = rx.recv() => match frame {
                Some(frame) => send(&mut socket, frame).await,
                None => false,
            },
            end = &mut feeder => {
                if end.ok() == Some(FeedEnd::TooSlow) {
                    tracing::info!(node = %s.me.id, "events stream closed: the client did not keep up");
                    let close = CloseFrame {
                        code: CLOSE_TOO_SLOW,
                        reason: "too slow: the events buffer is full; reconnect".into(),
                    };
                    let _ = tokio::time::timeout(
                        SEND_TIMEOUT,
                        socket.send(Message::Close(Some(close))),
                    )
                    .await;
                }
                false
            }
            incoming = socket.recv() => !matches!(
                incoming,
                None | Some(Err(_)) | Some(Ok(Message::Close(_)))
            ),
        };
        if !ok {
            break;
        }
    }
    feeder.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_means_too_slow_and_a_dropped_receiver_closed() {
        let (tx, rx) = mpsc::channel(1);
        assert_eq!(offer(&tx, "a".into()), Ok(()));
        assert_eq!(offer(&tx, "b".into()), Err(FeedEnd::TooSlow));
        drop(rx);
        assert_eq!(offer(&tx, "c".into()), Err(FeedEnd::Closed));
    }
}
