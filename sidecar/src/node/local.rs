//! The node process's own connection to its Redis (default user, with `redis_password` when the
//! cluster sets one; over the Redis's Unix socket
//! when it has one, else loopback TCP): one multiplexed connection, reopened after it broke,
//! every command bounded by a timeout. Failures come back as a typed [`RedisError`].

use std::future::Future;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::node::redis_error::RedisError;

/// An `RC.*` command built with the contract, as the `redis` crate sends it.
pub fn rc(req: &impl rcluster_domain::rc::Request) -> redis::Cmd {
    let mut cmd = redis::Cmd::new();
    cmd.arg(req.encode());
    cmd
}

/// A reply of the `redis` crate as the contract's decoders (`domain::rc`) read it.
pub fn contract_value(v: redis::Value) -> rcluster_domain::rc::reply::Value {
    use rcluster_domain::rc::reply::Value;
    match v {
        redis::Value::Nil => Value::Nil,
        redis::Value::Int(i) => Value::Int(i),
        redis::Value::BulkString(b) => Value::Bulk(b),
        redis::Value::SimpleString(s) => Value::Status(s),
        redis::Value::Okay => Value::Status("OK".into()),
        redis::Value::Array(items) => Value::Array(items.into_iter().map(contract_value).collect()),
        other => Value::Status(format!("{other:?}")),
    }
}

pub struct Local {
    tcp: redis::ConnectionAddr,
    socket: Option<std::path::PathBuf>,
    conn: Mutex<Option<MultiplexedConnection>>,
    /// File chunks: large replies on their own connections.
    bulk: crate::node::bulk::Bulk,
    /// The default user's password (`redis_password`), if any.
    password: Option<String>,
}

impl Local {
    pub fn new(
        host: &str,
        port: u16,
        socket: Option<std::path::PathBuf>,
        password: Option<String>,
    ) -> Local {
        Local {
            tcp: redis::ConnectionAddr::Tcp(host.to_string(), port),
            bulk: crate::node::bulk::Bulk::default(),
            socket,
            conn: Mutex::new(None),
            password,
        }
    }

    /// The Unix socket once the Redis created it (a Redis started by an older build, or still
    /// starting, has none yet), else TCP.
    fn addr(&self) -> redis::ConnectionAddr {
        match &self.socket {
            Some(path) if path.exists() => redis::ConnectionAddr::Unix(path.clone()),
            _ => self.tcp.clone(),
        }
    }

    /// Runs a command whose reply is a file chunk (or nil) on the chunk connections; see
    /// [`crate::node::bulk::Bulk::get`].
    pub async fn bulk(
        &self,
        args: &[&[u8]],
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, RedisError> {
        self.bulk
            .get(&self.addr(), self.password.as_deref(), args, timeout)
            .await
    }

    fn client(&self) -> Result<redis::Client, RedisError> {
        let info = redis::ConnectionInfo {
            addr: self.addr(),
            redis: redis::RedisConnectionInfo {
                password: self.password.clone(),
                ..Default::default()
            },
        };
        Ok(redis::Client::open(info)?)
    }

    /// A Pub/Sub connection of its own (the events stream of `GET /api/events`), opened within
    /// `timeout`.
    pub async fn pubsub(&self, timeout: Duration) -> Result<redis::aio::PubSub, RedisError> {
        let client = self.client()?;
        tokio::time::timeout(timeout, client.get_async_pubsub())
            .await
            .map_err(|_| RedisError::Timeout(timeout))?
            .map_err(|e| RedisError::Unreachable(e.to_string()))
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            let client = self.client()?;
            let conn = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| RedisError::Unreachable(e.to_string()))?;
            *slot = Some(conn);
        }
        slot.clone()
            .ok_or_else(|| RedisError::Unreachable("no connection".into()))
    }

    /// Runs `work` on the connection within `timeout`; a connection that broke is dropped so the
    /// next call opens a new one.
    async fn run<T, F, Fut>(&self, timeout: Duration, work: F) -> Result<T, RedisError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let conn = self.connection().await?;
            match work(conn).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                        *self.conn.lock().await = None;
                    }
                    Err(RedisError::from(e))
                }
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(Err(RedisError::Timeout(timeout)))
    }

    /// Runs `cmd`; `Err` names what went wrong (connect, timeout, error reply).
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        timeout: Duration,
    ) -> Result<T, RedisError> {
        self.run(timeout, |mut c| async move {
            cmd.query_async::<T>(&mut c).await
        })
        .await
    }

    /// Runs a pipeline, replies ignored.
    pub async fn pipeline(
        &self,
        pipe: &redis::Pipeline,
        timeout: Duration,
    ) -> Result<(), RedisError> {
        self.run(timeout, |mut c| async move {
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }
}
