//! Requests this node hands to another: a node action to the node that supervises that Redis,
//! a metadata change to the Raft leader (the other node's answer comes back typed, or as an
//! error naming that node and what it said), and, while this node's own Redis is down, every
//! data request (`/api/kv`, `/api/files`) to a peer whose Redis is up ([`storage_failover`], a
//! layer in front of those routes): streamed both ways, bounded between bytes by the API's
//! request timeout and in all by the file transfer timeout, the answer marked with the node
//! that served it (`X-RC-Served-By`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use rcluster_domain::config::NodeConfig;
use rcluster_domain::phi::Liveness;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::api::ErrorCode;
use crate::client;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::node::raft::RaftHandle;
use crate::node::view::Shared;

/// The header naming the node that served a data request (this one, or the peer it handed the
/// request to).
pub const SERVED_BY: &str = "x-rc-served-by";

/// The header a handed-on request carries (the node that handed it on): a node never hands such
/// a request on again.
pub const FORWARDED_BY: &str = "x-rc-forwarded-by";

/// How long making a connection to a peer may take before the next peer is tried.
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest status line and headers accepted from a peer.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// Largest piece of a body read from a peer at once.
const PIECE_BYTES: usize = 64 << 10;

/// How long one Raft step may take to commit before the API gives up (the caller may retry:
/// every change is idempotent).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends the caller's request on to `node` (with the caller's key) and returns its answer: the
/// body on 200, else an error naming that node and what it said.
pub async fn forward<T: DeserializeOwned>(
    node: &NodeConfig,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<T, ApiError> {
    // An injected fault between the two nodes loses or delays the request.
    let unreachable = |why: String| {
        ApiError::new(
            ErrorCode::NodeUnreachable,
            format!("node {}: {why}", node.id),
        )
    };
    match crate::node::faults::round_trip(&node.id) {
        None => return Err(unreachable("cut by an injected fault".into())),
        Some(delay) => tokio::time::sleep(delay).await,
    }
    let answer = client::request(
        method,
        &node.host,
        node.http_port,
        path,
        Some(key),
        body,
        timeout,
    )
    .await
    .map_err(unreachable)?;
    if answer.status == 200 {
        return serde_json::from_slice(&answer.body).map_err(|e| {
            ApiError::new(
                ErrorCode::NodeUnreachable,
                format!(
                    "node {} sent an answer that is not the expected JSON: {e}",
                    node.id
                ),
            )
        });
    }
    Err(ApiError::forwarded(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY),
        format!(
            "node {} answered {}: {}",
            node.id,
            answer.status,
            answer.text()
        ),
    ))
}

/// This node's Raft driver, once started.
pub fn raft(s: &Shared) -> Result<&RaftHandle, ApiError> {
    s.raft
        .get()
        .ok_or_else(|| ApiError::new(ErrorCode::RaftNotReady, "raft has not started yet"))
}

/// `None` when this node leads (the caller goes on here); otherwise the leader's answer to the
/// same request, or why there is none.
pub async fn on_leader<T: DeserializeOwned>(
    s: &Shared,
    caller: &Caller,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<Option<T>, ApiError> {
    let status = raft(s)?.status();
    if status.role == "leader" {
        return Ok(None);
    }
    let Some(leader) = status.leader.as_deref().and_then(|l| s.member(l)) else {
        return Err(ApiError::new(
            ErrorCode::NoLeader,
            "no Raft leader is known right now; retry in a moment",
        ));
    };
    forward(&leader, method, path, &caller.key, body, COMMIT_TIMEOUT * 3)
        .await
        .map(Some)
}

/// The layer in front of the data routes (the others pass through): while this node's own Redis is not running, the
/// request goes to the first peer whose Redis is up (as their heartbeats say), and its answer
/// comes back as it streams; with none reachable, this node answers as it can. Every answer
/// says which node served it.
pub async fn storage_failover(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if !is_data_route(req.uri().path()) {
        return next.run(req).await;
    }
    if s.own_redis_up() || req.headers().contains_key(FORWARDED_BY) {
        return served_by(next.run(req).await, &s.me.id);
    }
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    for peer in storage_peers(&s) {
        match proxy(&s, &peer, &parts, &mut body).await {
            Ok(answer) => return served_by(answer, &peer.id),
            Err(Proxy::NotConnected(why)) => {
                tracing::warn!(node = %s.me.id, "could not hand a request to {}: {why}", peer.id);
            }
            Err(Proxy::Broken(why)) => {
                return ApiError::new(
                    ErrorCode::NodeUnreachable,
                    format!(
                        "this node's Redis is down and node {} did not finish serving the \
                         request: {why}",
                        peer.id
                    ),
                )
                .into_response();
            }
        }
    }
    let req = Request::from_parts(parts, body.take().unwrap_or_default());
    served_by(next.run(req).await, &s.me.id)
}

/// The routes a peer may serve instead: keys and files.
fn is_data_route(path: &str) -> bool {
    path.starts_with("/api/kv/") || path == "/api/files" || path.starts_with("/api/files/")
}

/// Marks an answer with the node that served it.
fn served_by(mut answer: Response, node: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(node) {
        answer
            .headers_mut()
            .insert(HeaderName::from_static(SERVED_BY), v);
    }
    answer
}

/// The peers to hand a data request to, in member order after this node: those alive whose
/// Redis is up, as their last heartbeats say.
fn storage_peers(s: &Shared) -> Vec<NodeConfig> {
    let mut members = s.members();
    if let Some(i) = members.iter().position(|m| m.id == s.me.id) {
        members.rotate_left(i);
    }
    let nodes = s.nodes();
    members
        .into_iter()
        .filter(|m| m.id != s.me.id)
        .filter(|m| {
            nodes
                .get(&m.id)
                .is_some_and(|v| v.liveness == Liveness::Alive && v.summary.redis_up)
        })
        .collect()
}

/// Why a peer did not serve a handed-on request.
#[derive(Debug)]
enum Proxy {
    /// No connection was made: nothing was sent, the body is untouched; try the next peer.
    NotConnected(String),
    /// The exchange broke after the request began: the body is spent.
    Broken(String),
}

/// Headers that belong to one connection, never passed on.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "host"
            | "expect"
    )
}

/// The time left before `deadline`, at most `step`.
fn bound(step: Duration, deadline: Instant) -> Duration {
    step.min(deadline.saturating_duration_since(Instant::now()))
}

/// Sends the request to `peer` and returns its answer, whose body streams from the peer.
async fn proxy(
    s: &Shared,
    peer: &NodeConfig,
    parts: &axum::http::request::Parts,
    body: &mut Option<Body>,
) -> Result<Response, Proxy> {
    let step = Duration::from_millis(s.config.api.request_timeout_ms.max(1));
    let deadline = Instant::now() + Duration::from_millis(s.config.files.transfer_timeout_ms);
    // An injected fault between the two nodes loses or delays the request.
    let Some(delay) = crate::node::faults::round_trip(&peer.id) else {
        return Err(Proxy::NotConnected("cut by an injected fault".into()));
    };
    tokio::time::sleep(delay).await;
    let addr = (peer.host.as_str(), peer.http_port);
    let stream = match tokio::time::timeout(PEER_CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Proxy::NotConnected(e.to_string())),
        Err(_) => return Err(Proxy::NotConnected("connecting timed out".into())),
    };
    // One stream for both ways, kept open until the answer's last byte: a peer that sees the
    // request side closed stops its answer.
    let mut reader = BufReader::new(stream);
    let length = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = length.is_none()
        && parts
            .headers
            .contains_key(axum::http::header::TRANSFER_ENCODING);
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.to_string());
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n{FORWARDED_BY}: {}\r\n",
        parts.method, peer.host, peer.http_port, s.me.id
    );
    for (name, value) in &parts.headers {
        if hop_by_hop(name.as_str()) || name.as_str() == FORWARDED_BY {
            continue;
        }
        if let Ok(value) = value.to_str() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    }
    head.push_str("\r\n");
    let sent = tokio::time::timeout(
        bound(step, deadline),
        reader.get_mut().write_all(head.as_bytes()),
    )
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return Err(Proxy::NotConnected("the peer took no request".into()));
    }
    // From here on the body is spent: a failure is final.
    let mut pieces = body.take().unwrap_or_default().into_data_stream();
    let mut send_failed = None;
    if length.is_some_and(|l| l > 0) || chunked {
        loop {
            let piece = match tokio::time::timeout(bound(step, deadline), pieces.next()).await {
                Ok(Some(Ok(piece))) => piece,
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(Proxy::Broken(format!("reading the request: {e}"))),
                Err(_) => return Err(Proxy::Broken("the request's body stalled".into())),
            };
            let framed = if chunked {
                let mut f = format!("{:x}\r\n", piece.len()).into_bytes();
                f.extend_from_slice(&piece);
                f.extend_from_slice(b"\r\n");
                Bytes::from(f)
            } else {
                piece
            };
            if framed.is_empty() {
                continue;
            }
            let sending = reader.get_mut().write_all(&framed);
            match tokio::time::timeout(bound(step, deadline), sending).await {
                Ok(Ok(())) => {}
                // The peer may have answered early (a refusal) and closed: read its answer.
                Ok(Err(e)) => {
                    send_failed = Some(e.to_string());
                    break;
                }
                Err(_) => return Err(Proxy::Broken("the peer stopped taking the body".into())),
            }
        }
        if chunked && send_failed.is_none() {
            let end = reader.get_mut().write_all(b"0\r\n\r\n");
            let _ = tokio::time::timeout(bound(step, deadline), end).await;
        }
    }
    let head = match tokio::time::timeout(bound(step, deadline), read_head(&mut reader)).await {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => {
            let also = send_failed.map_or_else(String::new, |s| format!(" (sending: {s})"));
            return Err(Proxy::Broken(format!("{e}{also}")));
        }
        Err(_) => return Err(Proxy::Broken("the peer did not answer in time".into())),
    };
    let parsed = client::parse_head(&head)
        .ok_or_else(|| Proxy::Broken("the peer's answer is not HTTP".into()))?;
    let status = StatusCode::from_u16(parsed.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let header = |name: &str| parsed.header(name).map(str::to_ascii_lowercase);
    let framing = if parts.method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Length(0)
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        Framing::Chunked(0)
    } else if let Some(n) = header("content-length").and_then(|v| v.parse().ok()) {
        Framing::Length(n)
    } else {
        Framing::Eof
    };
    let mut answer = Response::builder().status(status);
    for (name, value) in &parsed.headers {
        let lower = name.to_ascii_lowercase();
        if hop_by_hop(&lower)
            || (lower == "content-length" && !matches!(framing, Framing::Length(_)))
        {
            continue;
        }
        answer = answer.header(name.as_str(), value.as_str());
    }
    let body = Body::from_stream(body_stream(reader, framing, step, deadline));
    answer
        .body(body)
        .map_err(|e| Proxy::Broken(format!("the peer's answer has a bad header: {e}")))
}

/// The status line and headers of an answer (without the blank line).
async fn read_head<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = (&mut *reader)
            .take((MAX_HEAD_BYTES + 1 - before.min(MAX_HEAD_BYTES)) as u64)
            .read_until(b'\n', &mut head)
            .await?;
        if n == 0 || head.len() > MAX_HEAD_BYTES {
            return Err(std::io::Error::other(
                "the peer's answer ended or is too long",
            ));
        }
        if head[before..] == *b"\r\n" || head[before..] == *b"\n" {
            head.truncate(before.saturating_sub(2));
            return Ok(head);
        }
    }
}

/// How the body of a peer's answer ends.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// After this many bytes more.
    Length(u64),
    /// In chunks; this many bytes left of the current chunk (0: a size line comes next).
    Chunked(u64),
    /// When the peer closes the connection.
    Eof,
    /// It ended.
    Done,
}

/// The body of a peer's answer as it arrives, each read bounded by `step` and the whole by
/// `deadline`.
fn body_stream<R: AsyncRead + Unpin + Send + 'static>(
    reader: BufReader<R>,
    framing: Framing,
    step: Duration,
    deadline: Instant,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::unfold((reader, framing), move |(mut reader, framing)| async move {
        match tokio::time::timeout(bound(step, deadline), next_piece(&mut reader, framing)).await {
            Ok(Ok(Some((piece, next)))) => Some((Ok(piece), (reader, next))),
            Ok(Ok(None)) => None,
            Ok(Err(e)) => Some((Err(e), (reader, Framing::Done))),
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the serving node's answer stalled",
                )),
                (reader, Framing::Done),
            )),
        }
    })
}

/// The next piece of a body and how it goes on, `None` at its end.
async fn next_piece<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    framing: Framing,
) -> std::io::Result<Option<(Bytes, Framing)>> {
    let cut = || {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the answer was cut short",
        )
    };
    match framing {
        Framing::Done | Framing::Length(0) => Ok(None),
        Framing::Length(left) => {
            let piece = read_piece(reader, left).await?;
            if piece.is_empty() {
                return Err(cut());
            }
            let left = left - piece.len() as u64;
            Ok(Some((piece, Framing::Length(left))))
        }
        Framing::Eof => {
            let piece = read_piece(reader, u64::MAX).await?;
            Ok((!piece.is_empty()).then_some((piece, Framing::Eof)))
        }
        Framing::Chunked(0) => {
            let mut line = String::new();
            (&mut *reader).take(1024).read_line(&mut line).await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| std::io::Error::other("a bad chunk size from the peer"))?;
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    line.clear();
                    let n = (&mut *reader).take(8192).read_line(&mut line).await?;
                    if n == 0 || line.trim().is_empty() {
                        return Ok(None);
                    }
                }
            }
            Box::pin(next_piece(reader, Framing::Chunked(size))).await
        }
        Framing::Chunked(left) => {
            let piece = read_piece(reader, left).await?;
            if piece.is_empty() {
                return Err(cut());
            }
            let left = left - piece.len() as u64;
            if left == 0 {
                let mut crlf = [0u8; 2];
                reader.read_exact(&mut crlf).await?;
            }
            Ok(Some((piece, Framing::Chunked(left))))
        }
    }
}

/// Up to `most` bytes (at most [`PIECE_BYTES`]); empty at the end of the stream.
async fn read_piece<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    most: u64,
) -> std::io::Result<Bytes> {
    let want = usize::try_from(most).unwrap_or(usize::MAX).min(PIECE_BYTES);
    let mut buf = vec![0u8; want];
    let n = reader.read(&mut buf).await?;
    buf.truncate(n);
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn whole(raw: &'static [u8], framing: Framing) -> std::io::Result<Vec<u8>> {
        let reader = BufReader::new(raw);
        let far = Instant::now() + Duration::from_secs(5);
        let mut stream = Box::pin(body_stream(reader, framing, Duration::from_secs(1), far));
        let mut out = Vec::new();
        while let Some(piece) = stream.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn bodies_stream_as_the_peer_frames_them() {
        let chunked = b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n";
        assert_eq!(
            whole(chunked, Framing::Chunked(0)).await.unwrap(),
            b"hello world"
        );
        assert_eq!(whole(b"abcdef", Framing::Length(4)).await.unwrap(), b"abcd");
        assert_eq!(
            whole(b"to the end", Framing::Eof).await.unwrap(),
            b"to the end"
        );
        // Shorter than announced: an error, never a quietly short body.
        assert!(whole(b"abc", Framing::Length(10)).await.is_err());
        assert!(whole(b"5\r\nhel", Framing::Chunked(0)).await.is_err());
    }

    #[tokio::test]
    async fn a_head_ends_at_the_blank_line() {
        let mut reader = BufReader::new(&b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody"[..]);
        let head = read_head(&mut reader).await.unwrap();
        assert_eq!(head, b"HTTP/1.1 200 OK\r\nA: b");
        let mut rest = String::new();
        reader.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "body");
        let mut cut = BufReader::new(&b"HTTP/1.1 200 OK\r\n"[..]);
        assert!(read_head(&mut cut).await.is_err());
    }

    #[test]
    fn only_data_routes_are_handed_on() {
        for path in [
            "/api/kv/k",
            "/api/files",
            "/api/files/abc",
            "/api/files/abc/content",
        ] {
            assert!(is_data_route(path), "{path}");
        }
        for path in [
            "/api/health",
            "/api/nodes",
            "/api/filesx",
            "/api/kv",
            "/metrics",
        ] {
            assert!(!is_data_route(path), "{path}");
        }
    }

    #[test]
    fn connection_headers_are_not_passed_on() {
        for name in ["connection", "transfer-encoding", "host", "keep-alive"] {
            assert!(hop_by_hop(name), "{name}");
        }
        for name in ["authorization", "range", "content-type", "content-length"] {
            assert!(!hop_by_hop(name), "{name}");
        }
    }
}
