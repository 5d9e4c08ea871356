//! Request bodies on every route: the time between their bytes is bounded
//! (`api.body_idle_timeout_ms`: a stalled body ends in 408, an upload's body stream fails with a
//! [`BodyError`] so the upload is refused and its slot freed), their size is bounded per route
//! group with a refusal that names the setting ([`limit`]), and a body the handler did not read
//! (a refusal sent before it: 401, 403, 413, 429) is read and thrown away, up to
//! [`DRAIN_MAX_BYTES`] and [`DRAIN_MAX_TIME`], before the answer goes out, so clients read the
//! answer instead of a broken pipe; what does not fit is answered with `Connection: close`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http_body::{Body as _, Frame, SizeHint};
use tokio::time::Sleep;

use crate::api::ErrorCode;
use crate::http::error::ApiError;
use crate::node::view::Shared;

/// The most of an unread body read and thrown away before an answer; a longer body is answered
/// with `Connection: close` without reading it.
pub const DRAIN_MAX_BYTES: u64 = 4 << 20;

/// The longest an unread body is read for (besides `api.body_idle_timeout_ms` for each piece);
/// a body still coming then is answered with `Connection: close`.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(30);

/// Why a request body stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("no byte of the request body arrived for {} ms (api.body_idle_timeout_ms)", .0.as_millis())]
    Idle(Duration),
    #[error("the request body is larger than {setting} ({limit} bytes)")]
    TooLarge { limit: u64, setting: &'static str },
}

impl BodyError {
    /// The error a body stream failed with, when it was one of ours (looked for along the
    /// chain of sources, e.g. inside `axum::Error`).
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
        let mut next = Some(e);
        while let Some(e) = next {
            if let Some(ours) = e.downcast_ref::<BodyError>() {
                return Some(ours);
            }
            next = e.source();
        }
        None
    }

    fn answer(&self) -> ApiError {
        let code = match self {
            BodyError::Idle(_) => ErrorCode::RequestTimeout,
            BodyError::TooLarge { .. } => ErrorCode::TooLarge,
        };
        ApiError::new(code, self.to_string())
    }
}

/// What the middleware and a request's body share.
#[derive(Default)]
pub struct BodyState {
    /// The route's limit and the setting it comes from (set by [`limit`]).
    limit: OnceLock<(u64, &'static str)>,
    /// The body failed with this error.
    failed: Mutex<Option<BodyError>>,
    /// The handler asked for bytes at least once.
    polled: AtomicBool,
    /// Bytes read so far.
    seen: AtomicU64,
    /// The rest of a body dropped before its end.
    unread: Mutex<Option<Body>>,
}

impl BodyState {
    fn failed(&self) -> Option<BodyError> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn fail(&self, e: BodyError) -> axum::Error {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        axum::Error::new(e)
    }
}

/// A request body whose reader waits at most `idle` for the next bytes, and which stops at the
/// route's limit.
struct Guarded {
    inner: Body,
    state: Arc<BodyState>,
    idle: Duration,
    /// Armed while the reader waits for the client, from the first wait after the last bytes
    /// (time the handler spends elsewhere does not count).
    wait: Option<Pin<Box<Sleep>>>,
    /// No more frames are given out (the body ended, stalled or went over the limit).
    done: bool,
    /// Nothing is left to read (the body ended or stalled).
    spent: bool,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        self.state.polled.store(true, Ordering::Relaxed);
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.wait = None;
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                let seen = self.state.seen.fetch_add(len, Ordering::Relaxed) + len;
                if let Some(&(limit, setting)) = self.state.limit.get() {
                    if seen > limit {
                        self.done = true;
                        self.spent = self.inner.is_end_stream();
                        let e = BodyError::TooLarge { limit, setting };
                        return Poll::Ready(Some(Err(self.state.fail(e))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                self.done = true;
                self.spent = true;
                Poll::Ready(other)
            }
            Poll::Pending => {
                let idle = self.idle;
                let wait = self
                    .wait
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.done = true;
                self.spent = true;
                Poll::Ready(Some(Err(self.state.fail(BodyError::Idle(idle)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Guarded {
    /// Hands a body dropped before its end back to [`guard`], which reads the rest.
    fn drop(&mut self) {
        if !self.spent && !self.inner.is_end_stream() {
            let rest = std::mem::take(&mut self.inner);
            *self.state.unread.lock().unwrap_or_else(|p| p.into_inner()) = Some(rest);
        }
    }
}

/// Reads and throws away up to `max` bytes of `body`, waiting at most `idle` for each piece
/// and [`DRAIN_MAX_TIME`] in all: true when the body ended.
async fn drain(body: Body, max: u64, idle: Duration) -> bool {
    let mut stream = body.into_data_stream();
    let mut read = 0u64;
    let all = async {
        loop {
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(None) => return true,
                Ok(Some(Ok(bytes))) => {
                    read += bytes.len() as u64;
                    if read > max {
                        return false;
                    }
                }
                Ok(Some(Err(_))) | Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(DRAIN_MAX_TIME, all)
        .await
        .unwrap_or(false)
}

fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The middleware on every route: wraps the body, answers 408 or 413 when the body failed
/// (whatever the handler made of it), and reads the rest of an unread body before answering.
pub async fn guard(State(s): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let idle = Duration::from_millis(s.config.api.body_idle_timeout_ms);
    let state = Arc::new(BodyState::default());
    let declared = declared_length(&request);
    let waits_for_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(state.clone());
    let body = Body::new(Guarded {
        inner: body,
        state: state.clone(),
        idle,
        wait: None,
        done: false,
        spent: false,
    });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    let failed = state.failed();
    if let Some(e) = &failed {
        response = e.answer().into_response();
    }
    let unread = state
        .unread
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let keep_open = match (unread, &failed) {
        // Nothing left to read: the connection can serve the next request.
        (None, None) => true,
        // A client waiting for `100 Continue` has sent nothing: close rather than ask for it.
        (Some(_), None) if waits_for_continue && !state.polled.load(Ordering::Relaxed) => false,
        (Some(rest), Some(BodyError::TooLarge { .. }) | None) => {
            let seen = state.seen.load(Ordering::Relaxed);
            let left = DRAIN_MAX_BYTES.saturating_sub(seen);
            // A body declared longer than what may be read is not read at all.
            let fits = declared.is_none_or(|n| n.saturating_sub(seen) <= left);
            fits && drain(rest, left, idle).await
        }
        // A stalled body, or one that failed after our answer's cause: nothing more to read.
        _ => false,
    };
    if !keep_open {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The route-level middleware that bounds a group's bodies to `max` bytes (from `setting`): a
/// declared length above it is refused at once, a longer body when it gets there.
pub fn limit(
    max: u64,
    setting: &'static str,
) -> impl Fn(Request, Next) -> Pin<Box<dyn Future<Output = Response> + Send>> + Clone {
    move |request: Request, next: Next| {
        Box::pin(async move {
            if let Some(state) = request.extensions().get::<Arc<BodyState>>() {
                let _ = state.limit.set((max, setting));
            }
            match declared_length(&request) {
                Some(n) if n > max => {
                    let e = BodyError::TooLarge {
                        limit: max,
                        setting,
                    };
                    ApiError::new(ErrorCode::TooLarge, format!("{e}: it declares {n} bytes"))
                        .into_response()
                }
                _ => next.run(request).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded(body: Body, idle_ms: u64) -> (Guarded, Arc<BodyState>) {
        let state = Arc::new(BodyState::default());
        let g = Guarded {
            inner: body,
            state: state.clone(),
            idle: Duration::from_millis(idle_ms),
            wait: None,
            done: false,
            spent: false,
        };
        (g, state)
    }

    fn pieces(n: usize, len: usize) -> Body {
        let all = (0..n).map(move |_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; len])));
        Body::from_stream(futures_util::stream::iter(all))
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_is_handed_back_and_drained() {
        let (g, state) = guarded(pieces(3, 100), 1_000);
        let mut stream = Body::new(g).into_data_stream();
        assert_eq!(stream.next().await.unwrap().unwrap().len(), 100);
        drop(stream);
        let rest = state.unread.lock().unwrap().take().expect("handed back");
        assert!(drain(rest, 200, Duration::from_secs(1)).await);
        // More than the allowance: not all read.
        let (g, state) = guarded(pieces(3, 100), 1_000);
        drop(Body::new(g));
        let rest = state.unread.lock().unwrap().take().expect("handed back");
        assert!(!drain(rest, 250, Duration::from_secs(1)).await);
        // A body read to its end leaves nothing.
        let (g, state) = guarded(pieces(2, 10), 1_000);
        let bytes = axum::body::to_bytes(Body::new(g), 1 << 20).await.unwrap();
        assert_eq!(bytes.len(), 20);
        assert!(state.unread.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_stalled_body_fails_with_its_idle_time_and_is_not_handed_back() {
        let first =
            futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("ab")) });
        let body = Body::from_stream(first.chain(futures_util::stream::pending()));
        let (g, state) = guarded(body, 100);
        let started = tokio::time::Instant::now();
        let e = axum::body::to_bytes(Body::new(g), 1 << 20)
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(100));
        let source = std::error::Error::source(&e).expect("the body's error");
        assert_eq!(
            BodyError::find(source),
            Some(&BodyError::Idle(Duration::from_millis(100)))
        );
        assert_eq!(
            state.failed(),
            Some(BodyError::Idle(Duration::from_millis(100)))
        );
        assert!(state.unread.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_fails_naming_the_setting() {
        let (g, state) = guarded(pieces(3, 100), 1_000);
        state.limit.set((250, "limits.max_value_bytes")).unwrap();
        let e = axum::body::to_bytes(Body::new(g), 1 << 20)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("limits.max_value_bytes (250 bytes)"),
            "{e}"
        );
        assert_eq!(
            state.failed(),
            Some(BodyError::TooLarge {
                limit: 250,
                setting: "limits.max_value_bytes"
            })
        );
    }
}
