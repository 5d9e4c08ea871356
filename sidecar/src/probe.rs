//! Bounded liveness probes: does a Redis answer PING (and which process is it), does a node's
//! HTTP endpoint answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client of the Redis at `host:port` as its default user, with `password` when the cluster
/// sets `redis_password`: the one place the node process and the CLI say how to reach a node's
/// Redis.
pub fn redis_client(
    host: &str,
    port: u16,
    password: Option<&str>,
) -> redis::RedisResult<redis::Client> {
    redis::Client::open(redis::ConnectionInfo {
        addr: redis::ConnectionAddr::Tcp(host.to_string(), port),
        redis: redis::RedisConnectionInfo {
            password: password.map(str::to_string),
            ..Default::default()
        },
    })
}

/// True when the Redis at `host:port` answers PING within `timeout`.
pub async fn redis_ping(host: &str, port: u16, password: Option<&str>, timeout: Duration) -> bool {
    let attempt = async {
        let client = redis_client(host, port, password).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(_)))
}

/// The process id of the Redis answering at `host:port` once it has loaded its data (`INFO
/// server persistence`; INFO answers while loading, PING does not), if one answers within
/// `timeout`: tells a node's own, ready redis-server from another process holding its port.
pub async fn redis_ready_pid(
    host: &str,
    port: u16,
    password: Option<&str>,
    timeout: Duration,
) -> Option<u32> {
    let attempt = async {
        let client = redis_client(host, port, password).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .arg("persistence")
            .query_async(&mut conn)
            .await
            .ok()?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if field("loading") != Some("0") {
            return None;
        }
        field("process_id").and_then(|v| v.parse().ok())
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

/// A plain HTTP/1.1 GET; returns (status, body) or `None` on any failure or timeout.
pub async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let attempt = async {
        let mut stream = TcpStream::connect((host, port)).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.take(1 << 20).read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}
