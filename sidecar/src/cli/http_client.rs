//! The CLI's HTTP transport: one streamed request per connection to a node's API, with a bound
//! on connecting and on the whole exchange. Uploads stream a body from a reader (with
//! `Content-Length`) while watching for an early refusal; downloads stream a 2xx body into a
//! writer (or only the one the caller accepts, e.g. the 206 that resumes a cut download). Connection failures and broken exchanges are told apart, so the caller knows when
//! nothing was sent and another node may be tried.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::client::Response;
use crate::client::{parse, parse_head, MAX_RESPONSE_BYTES};

/// Where a streaming request goes and how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct StreamTarget<'a> {
    pub host: &'a str,
    pub port: u16,
    pub api_key: Option<&'a str>,
    /// Bound on making the TCP connection.
    pub connect_timeout: Duration,
    /// Bound on the whole exchange, from connecting to the last byte.
    pub transfer_timeout: Duration,
}

/// Why a streaming request got no (complete) answer.
#[derive(Debug)]
pub enum StreamError {
    /// No connection was made (refused, unreachable, timed out): nothing was sent or read, so
    /// another node may be tried with the same reader.
    Connect(String),
    /// The exchange broke or timed out after connecting.
    Transfer(String),
}

impl StreamError {
    /// A broken exchange's message rewritten by `say` (for the command's wording); a failed
    /// connection stays as it is.
    pub fn when_broken(self, say: impl FnOnce(&str) -> String) -> StreamError {
        match self {
            StreamError::Transfer(e) => StreamError::Transfer(say(&e)),
            connect => connect,
        }
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Connect(m) | StreamError::Transfer(m) => f.write_str(m),
        }
    }
}

/// The answer of a streaming download: status, headers and (for non-2xx answers only) the
/// body in `response.body`; a 2xx body went to the writer.
#[derive(Debug)]
pub struct Download {
    pub response: Response,
    /// Body bytes handed to the writer.
    pub bytes_written: u64,
    /// The declared `Content-Length`, if any.
    pub expected_len: Option<u64>,
    /// Whether the body ended where the framing says (all of `Content-Length`, the last chunk
    /// of a chunked body, or the close of a body without length).
    pub complete: bool,
}

/// Largest response head accepted.
const MAX_HEAD_BYTES: usize = 64 << 10;
/// Buffer for streamed bodies.
const STREAM_BUF: usize = 256 << 10;

async fn connect(t: &StreamTarget<'_>) -> Result<TcpStream, StreamError> {
    let (host, port) = (t.host, t.port);
    match tokio::time::timeout(t.connect_timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(StreamError::Connect(format!(
            "cannot connect to {host}:{port}: {e}"
        ))),
        Err(_) => Err(StreamError::Connect(format!(
            "cannot connect to {host}:{port}: no answer within {:?}",
            t.connect_timeout
        ))),
    }
}

/// Runs one streaming exchange bounded by the target's transfer timeout.
async fn within_transfer_timeout<T>(
    t: &StreamTarget<'_>,
    exchange: impl std::future::Future<Output = Result<T, StreamError>>,
) -> Result<T, StreamError> {
    tokio::time::timeout(t.transfer_timeout, exchange)
        .await
        .map_err(|_| {
            StreamError::Transfer(format!(
                "{}:{}: the transfer did not finish within {:?}",
                t.host, t.port, t.transfer_timeout
            ))
        })?
}

fn request_head(t: &StreamTarget<'_>, method: &str, path: &str) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n",
        t.host, t.port
    );
    if let Some(key) = t.api_key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    head
}

/// Sends a request whose body (`len` bytes of `reader`) is streamed with `Content-Length`,
/// calling `on_progress` with every piece sent (for a progress bar or a running checksum).
/// The response is read while the body is still going out, so an early refusal (401, 413, ...)
/// stops the upload and is returned as the answer. The reply body is buffered (it is small).
pub async fn request_streaming_upload<R>(
    t: &StreamTarget<'_>,
    method: &str,
    path: &str,
    content_type: &str,
    len: u64,
    mut reader: R,
    mut on_progress: impl FnMut(&[u8]),
) -> Result<Response, StreamError>
where
    R: AsyncRead + Unpin,
{
    let (host, port) = (t.host, t.port);
    let stream = connect(t).await?;
    let exchange = async {
        let (mut rd, mut wr) = stream.into_split();
        let mut head = request_head(t, method, path);
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n"
        ));
        let send = async {
            wr.write_all(head.as_bytes())
                .await
                .map_err(|e| format!("sending to {host}:{port}: {e}"))?;
            let mut buf = vec![0u8; STREAM_BUF];
            let mut left = len;
            while left > 0 {
                let want = usize::try_from(left.min(STREAM_BUF as u64)).unwrap_or(STREAM_BUF);
                let n = reader
                    .read(&mut buf[..want])
                    .await
                    .map_err(|e| format!("reading the data to send: {e}"))?;
                if n == 0 {
                    return Err(format!(
                        "the data to send ended {left} bytes early (did the file shrink?)"
                    ));
                }
                wr.write_all(&buf[..n])
                    .await
                    .map_err(|e| format!("sending to {host}:{port}: {e}"))?;
                on_progress(&buf[..n]);
                left -= n as u64;
            }
            wr.flush()
                .await
                .map_err(|e| format!("sending to {host}:{port}: {e}"))?;
            Ok::<(), String>(())
        };
        let receive = async {
            let mut raw = Vec::new();
            let mut buf = vec![0u8; 16 << 10];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) => return Ok(raw),
                    Ok(n) => {
                        raw.extend_from_slice(&buf[..n]);
                        if raw.len() as u64 > MAX_RESPONSE_BYTES {
                            return Err((raw, "the response is too large".to_string()));
                        }
                    }
                    Err(e) => return Err((raw, format!("reading from {host}:{port}: {e}"))),
                }
            }
        };
        tokio::pin!(send, receive);
        let mut send_error: Option<String> = None;
        let mut sent = false;
        let received = loop {
            tokio::select! {
                r = &mut send, if !sent => {
                    sent = true;
                    if let Err(e) = r {
                        // A refusal may still be on its way; `receive` ends when the node closes.
                        send_error = Some(e);
                    }
                }
                r = &mut receive => break r,
            }
        };
        let (raw, read_error) = match received {
            Ok(raw) => (raw, None),
            Err((raw, e)) => (raw, Some(e)),
        };
        // An answer counts even if sending failed (the node refused the rest of the body).
        match parse(&raw) {
            Some(r) => Ok(r),
            None => Err(StreamError::Transfer(
                send_error
                    .or(read_error)
                    .unwrap_or_else(|| format!("malformed HTTP response from {host}:{port}")),
            )),
        }
    };
    within_transfer_timeout(t, exchange).await
}

/// Where the body of a download goes: the writer for 2xx answers, a small buffer otherwise.
struct BodyOut<'w, W> {
    writer: &'w mut W,
    success: bool,
    error_body: Vec<u8>,
    written: u64,
}

impl<W: AsyncWrite + Unpin> BodyOut<'_, W> {
    async fn put(
        &mut self,
        piece: &[u8],
        on_progress: &mut impl FnMut(&[u8]),
    ) -> Result<(), String> {
        if self.success {
            self.writer
                .write_all(piece)
                .await
                .map_err(|e| format!("writing the downloaded data: {e}"))?;
            self.written += piece.len() as u64;
            on_progress(piece);
        } else if (self.error_body.len() as u64) < MAX_RESPONSE_BYTES {
            self.error_body.extend_from_slice(piece);
        }
        Ok(())
    }
}

/// Sends a body-less request and streams a 2xx answer's body into `writer` (calling
/// `on_progress` with every piece written); other answers' bodies are buffered into the
/// returned response. Handles `Content-Length`, chunked, and read-to-close bodies. A body cut
/// short is not an error: `complete` is false and `bytes_written` says how far it got.
pub async fn request_streaming_download<W>(
    t: &StreamTarget<'_>,
    method: &str,
    path: &str,
    writer: W,
    on_progress: impl FnMut(&[u8]),
) -> Result<Download, StreamError>
where
    W: AsyncWrite + Unpin,
{
    let any_success = |r: &Response| (200..300).contains(&r.status);
    request_streaming_download_with(t, method, path, &[], any_success, writer, on_progress).await
}

/// Like [`request_streaming_download`], sending the `headers` too; only a 2xx answer that
/// `accept` takes has its body streamed into `writer`. A 2xx answer it refuses is returned at
/// once, its body unread (`complete` false, nothing written).
pub async fn request_streaming_download_with<W>(
    t: &StreamTarget<'_>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    accept: impl FnOnce(&Response) -> bool,
    mut writer: W,
    mut on_progress: impl FnMut(&[u8]),
) -> Result<Download, StreamError>
where
    W: AsyncWrite + Unpin,
{
    let (host, port) = (t.host, t.port);
    let mut stream = connect(t).await?;
    let exchange = async {
        let transfer = |m: String| StreamError::Transfer(m);
        let mut head = request_head(t, method, path);
        if method != "GET" && method != "HEAD" {
            head.push_str("Content-Length: 0\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| transfer(format!("sending to {host}:{port}: {e}")))?;
        // The head, and whatever part of the body came with it.
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 16 << 10];
        let split = loop {
            if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            if raw.len() > MAX_HEAD_BYTES {
                return Err(transfer(format!(
                    "{host}:{port} sent an oversized response head"
                )));
            }
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| transfer(format!("reading from {host}:{port}: {e}")))?;
            if n == 0 {
                return Err(transfer(format!(
                    "{host}:{port} closed the connection without an answer"
                )));
            }
            raw.extend_from_slice(&buf[..n]);
        };
        let mut response = parse_head(&raw[..split])
            .ok_or_else(|| transfer(format!("malformed HTTP response from {host}:{port}")))?;
        let expected_len: Option<u64> = response
            .header("content-length")
            .and_then(|v| v.trim().parse().ok());
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let success = (200..300).contains(&response.status);
        if success && !accept(&response) {
            return Ok(Download {
                response,
                bytes_written: 0,
                expected_len,
                complete: false,
            });
        }
        let leftover = raw[split + 4..].to_vec();
        let mut body = tokio::io::BufReader::with_capacity(
            STREAM_BUF,
            std::io::Cursor::new(leftover).chain(stream),
        );
        let mut out = BodyOut {
            writer: &mut writer,
            success,
            error_body: Vec::new(),
            written: 0,
        };
        let mut received = 0u64;
        let complete = if method == "HEAD" || response.status == 204 || response.status == 304 {
            true
        } else if chunked {
            read_chunked(&mut body, &mut out, &mut on_progress).await?
        } else {
            let limit = expected_len.unwrap_or(u64::MAX);
            let mut buf = vec![0u8; STREAM_BUF];
            loop {
                if received == limit {
                    break true;
                }
                let want = usize::try_from((limit - received).min(STREAM_BUF as u64))
                    .unwrap_or(STREAM_BUF);
                match body.read(&mut buf[..want]).await {
                    // Without a length, the close ends the body.
                    Ok(0) => break expected_len.is_none(),
                    Ok(n) => {
                        out.put(&buf[..n], &mut on_progress)
                            .await
                            .map_err(transfer)?;
                        received += n as u64;
                    }
                    Err(_) => break false,
                }
            }
        };
        out.writer
            .flush()
            .await
            .map_err(|e| transfer(format!("writing the downloaded data: {e}")))?;
        response.body = out.error_body;
        Ok(Download {
            response,
            bytes_written: out.written,
            expected_len,
            complete,
        })
    };
    within_transfer_timeout(t, exchange).await
}

/// Decodes a chunked body into `out`; true when the last chunk arrived. A read error, a close
/// or a malformed size line ends it early (false).
async fn read_chunked<R, W>(
    body: &mut R,
    out: &mut BodyOut<'_, W>,
    on_progress: &mut impl FnMut(&[u8]),
) -> Result<bool, StreamError>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut line = Vec::new();
    let mut buf = vec![0u8; STREAM_BUF];
    loop {
        line.clear();
        match body.read_until(b'\n', &mut line).await {
            Ok(n) if n > 0 && line.ends_with(b"\n") => {}
            _ => return Ok(false),
        }
        let Some(size) = std::str::from_utf8(&line)
            .ok()
            .and_then(|l| l.split(';').next())
            .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
        else {
            return Ok(false);
        };
        if size == 0 {
            return Ok(true);
        }
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left.min(STREAM_BUF as u64)).unwrap_or(STREAM_BUF);
            match body.read(&mut buf[..want]).await {
                Ok(0) | Err(_) => return Ok(false),
                Ok(n) => {
                    out.put(&buf[..n], on_progress)
                        .await
                        .map_err(StreamError::Transfer)?;
                    left -= n as u64;
                }
            }
        }
        // The CRLF after the chunk's data.
        line.clear();
        match body.read_until(b'\n', &mut line).await {
            Ok(n) if n > 0 => {}
            _ => return Ok(false),
        }
    }
}
