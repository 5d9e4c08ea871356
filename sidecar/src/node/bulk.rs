//! File chunks to and from this node's own Redis on a few dedicated connections: a chunk is
//! written to the socket from the buffer that holds it (no command packed around a copy of it),
//! and a chunk that comes back is read straight into the buffer that is then sent on (no general
//! parser, no read buffer that grows and copies as a 1 MiB reply trickles in). A connection that
//! fails or overruns is dropped and a fresh one is opened next time.

use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::node::redis_error::RedisError;

/// Idle connections kept for the next reads.
const MAX_IDLE: usize = 8;
/// The largest reply accepted (the largest chunk is 5 MiB).
const MAX_REPLY_BYTES: usize = 64 << 20;
/// Arguments from this size on are written from their own buffer instead of being copied.
const LARGE_ARG: usize = 64 << 10;

trait Io: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> Io for T {}
type Conn = BufReader<Pin<Box<dyn Io>>>;

/// The idle connections; where to connect is the caller's (`node::local` decides between the
/// Unix socket and TCP for every connection to this node's Redis).
#[derive(Default)]
pub struct Bulk {
    idle: Mutex<Vec<Conn>>,
}

impl Bulk {
    /// A new connection, authenticated with `password` when there is one.
    async fn connect(
        addr: &redis::ConnectionAddr,
        password: Option<&str>,
    ) -> Result<Conn, RedisError> {
        let mut conn = Self::open(addr).await?;
        if let Some(password) = password {
            exchange(&mut conn, &[b"AUTH", password.as_bytes()]).await??;
        }
        Ok(conn)
    }

    async fn open(addr: &redis::ConnectionAddr) -> Result<Conn, RedisError> {
        let io: std::io::Result<Pin<Box<dyn Io>>> = match addr {
            redis::ConnectionAddr::Unix(path) => tokio::net::UnixStream::connect(path)
                .await
                .map(|s| Box::pin(s) as Pin<Box<dyn Io>>),
            redis::ConnectionAddr::Tcp(host, port) => {
                match tokio::net::TcpStream::connect((host.as_str(), *port)).await {
                    Ok(tcp) => tcp
                        .set_nodelay(true)
                        .map(|()| Box::pin(tcp) as Pin<Box<dyn Io>>),
                    Err(e) => Err(e),
                }
            }
            other => Err(std::io::Error::other(format!(
                "unsupported address {other}"
            ))),
        };
        io.map(|io| BufReader::with_capacity(64 << 10, io))
            .map_err(|e| RedisError::Unreachable(format!("cannot connect: {e}")))
    }

    /// Runs the command `args`, whose reply is a bulk or status string or nil: `Ok(Some(bytes))`,
    /// `Ok(None)` for nil, `Err` with the error reply or what went wrong. A kept
    /// connection found broken (this Redis restarted since) is replaced once: the commands sent
    /// here (chunk reads and writes of fixed content) may safely run twice.
    pub async fn get(
        &self,
        addr: &redis::ConnectionAddr,
        password: Option<&str>,
        args: &[&[u8]],
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, RedisError> {
        let attempt = async {
            let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let was_pooled = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => Self::connect(addr, password).await?,
            };
            let mut reply = exchange(&mut conn, args).await;
            if reply.is_err() && was_pooled {
                conn = Self::connect(addr, password).await?;
                reply = exchange(&mut conn, args).await;
            }
            Ok::<_, RedisError>((conn, reply?))
        };
        let (conn, reply) = tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| RedisError::Timeout(timeout))??;
        // An error reply leaves the connection in step: keep it either way.
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        reply
    }
}

/// Sends one command and reads its reply. The outer `Err` means the connection is unusable; the
/// inner one is an error reply.
async fn exchange(
    conn: &mut Conn,
    args: &[&[u8]],
) -> Result<Result<Option<Vec<u8>>, RedisError>, RedisError> {
    let broken = |e: std::io::Error| RedisError::Unreachable(format!("the connection broke: {e}"));
    let cut = || RedisError::Unreachable("the connection closed mid-reply".into());
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        if a.len() >= LARGE_ARG {
            conn.get_mut().write_all(&out).await.map_err(broken)?;
            conn.get_mut().write_all(a).await.map_err(broken)?;
            out.clear();
        } else {
            out.extend_from_slice(a);
        }
        out.extend_from_slice(b"\r\n");
    }
    conn.get_mut().write_all(&out).await.map_err(broken)?;
    let mut line = Vec::with_capacity(128);
    conn.read_until(b'\n', &mut line).await.map_err(broken)?;
    let Some(text) = line.strip_suffix(b"\r\n") else {
        return Err(cut());
    };
    let text = String::from_utf8_lossy(text);
    match text.split_at_checked(1) {
        Some(("-", error)) => Ok(Err(RedisError::reply_line(error))),
        Some(("+", status)) => Ok(Ok(Some(status.as_bytes().to_vec()))),
        Some(("$", "-1")) => Ok(Ok(None)),
        Some(("$", len)) => {
            let len: usize = len
                .parse()
                .ok()
                .filter(|n| *n <= MAX_REPLY_BYTES)
                .ok_or_else(|| RedisError::Protocol(format!("unexpected bulk length '{len}'")))?;
            let mut data = Vec::with_capacity(len + 2);
            let got = (&mut *conn)
                .take(len as u64 + 2)
                .read_to_end(&mut data)
                .await
                .map_err(broken)?;
            if got != len + 2 || !data.ends_with(b"\r\n") {
                return Err(cut());
            }
            data.truncate(len);
            Ok(Ok(Some(data)))
        }
        _ => Err(RedisError::Protocol(format!("unexpected reply '{text}'"))),
    }
}
