//! Connections from this module to every member's Redis (itself included), as the internal
//! user: one multiplexed connection per member (concurrent requests pipeline on it), opened on
//! first use, reopened after it broke. Every call is bounded by a deadline and ends in a value
//! or a [`Failure`] that says what happened; each member's last outcome is its state for
//! `RC.LOCATE`. Injected faults (`crate::faults`) act here on every call to another member:
//! a lost call fails at once as unreachable, a delayed one waits first (within its deadline).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use rcluster_domain::fault::Link;
use rcluster_domain::topology::{Member, INTERNAL_USER};
use redis::aio::MultiplexedConnection;
use tokio::time::{timeout_at, Instant};

use crate::settings;

/// Why a call to a member did not produce a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    /// Could not connect or the connection broke.
    Unreachable(String),
    /// The member answered with an error reply.
    Replied(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timeout"),
            Failure::Unreachable(why) => f.write_str(why),
            Failure::Replied(e) => write!(f, "replied {e}"),
        }
    }
}

/// Counts a replica failure by kind.
pub fn count_failure(f: &Failure) {
    crate::stats::replica_failure(match f {
        Failure::Timeout => crate::stats::ReplicaFailure::Timeout,
        Failure::Unreachable(_) => crate::stats::ReplicaFailure::Unreachable,
        Failure::Replied(_) => crate::stats::ReplicaFailure::ErrorReply,
    });
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Unknown = 0,
    Up = 1,
    Down = 2,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

pub struct Peer {
    pub id: String,
    host: String,
    port: u16,
    /// The open connection, cloned out under a short std lock on every call (the fast path).
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Held while opening a connection, so concurrent calls do not all connect at once.
    connecting: tokio::sync::Mutex<()>,
    state: AtomicU8,
}

/// A quorum round names a replica by its id (`NOQUORUM ... ok: n1, n3 ...`).
impl rcluster_domain::round::Named for Peer {
    fn name(&self) -> &str {
        &self.id
    }
}

static PEERS: Mutex<Option<HashMap<String, Arc<Peer>>>> = Mutex::new(None);

/// Liveness pushed by the node process's failure detector: (state, valid until). A node marked
/// down is not called at all (the coordinator routes around it at once) until the mark expires
/// or the detector says it is back.
static PUSHED: Mutex<Option<HashMap<String, (Pushed, std::time::Instant)>>> = Mutex::new(None);

/// A failure-detector verdict, as `RC.CLUSTER.NODESTATE` carries it.
pub use rcluster_domain::phi::Liveness as Pushed;

/// Records the detector's verdict on `id` for `ttl`.
pub fn push_liveness(id: &str, state: Pushed, ttl: std::time::Duration) {
    let mut guard = PUSHED.lock().unwrap_or_else(|p| p.into_inner());
    guard
        .get_or_insert_with(HashMap::new)
        .insert(id.to_string(), (state, std::time::Instant::now() + ttl));
}

/// The detector's current verdict on `id`, if one is pushed and not expired.
pub fn pushed_liveness(id: &str) -> Option<Pushed> {
    let guard = PUSHED.lock().unwrap_or_else(|p| p.into_inner());
    let (state, until) = guard.as_ref()?.get(id)?;
    (std::time::Instant::now() < *until).then_some(*state)
}

/// The connection handle for `member` (created on first use; replaced when its address changed).
pub fn peer(member: &Member) -> Arc<Peer> {
    let mut guard = PEERS.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(p) = map.get(&member.id) {
        if p.host == member.host && p.port == member.redis_port {
            return p.clone();
        }
    }
    let p = Arc::new(Peer {
        id: member.id.clone(),
        host: member.host.clone(),
        port: member.redis_port,
        conn: Mutex::new(None),
        connecting: tokio::sync::Mutex::new(()),
        state: AtomicU8::new(State::Unknown as u8),
    });
    map.insert(member.id.clone(), p.clone());
    p
}

/// The last known state of member `id` as seen by this module.
pub fn state_of(id: &str) -> State {
    let guard = PEERS.lock().unwrap_or_else(|p| p.into_inner());
    match guard
        .as_ref()
        .and_then(|m| m.get(id))
        .map(|p| p.state.load(Ordering::Relaxed))
    {
        Some(1) => State::Up,
        Some(2) => State::Down,
        _ => State::Unknown,
    }
}

fn describe(e: &redis::RedisError) -> String {
    if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_timeout() {
        "timeout".into()
    } else if e.is_connection_dropped() {
        "connection lost".into()
    } else {
        e.to_string()
    }
}

impl Peer {
    /// Where this member's Redis listens.
    pub fn addr(&self) -> (&str, u16) {
        (&self.host, self.port)
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_cached(&self, conn: Option<MultiplexedConnection>) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = conn;
    }

    /// The cached connection (and `true`), or a new one (and `false`).
    async fn connection(
        &self,
        deadline: Instant,
    ) -> Result<(MultiplexedConnection, bool), Failure> {
        if let Some(c) = self.cached() {
            return Ok((c, true));
        }
        let _connecting = timeout_at(deadline, self.connecting.lock())
            .await
            .map_err(|_| Failure::Timeout)?;
        // Another call may have connected while this one waited.
        if let Some(c) = self.cached() {
            return Ok((c, false));
        }
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp(self.host.clone(), self.port),
            redis: redis::RedisConnectionInfo {
                db: 0,
                username: Some(INTERNAL_USER.to_string()),
                password: Some(settings::internal_password()),
                protocol: redis::ProtocolVersion::RESP2,
            },
        };
        let client = redis::Client::open(info).map_err(|e| Failure::Unreachable(describe(&e)))?;
        let conn = timeout_at(deadline, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(|e| Failure::Unreachable(describe(&e)))?;
        self.set_cached(Some(conn.clone()));
        Ok((conn, false))
    }

    /// One attempt; a broken connection is dropped so the next attempt opens a new one.
    async fn attempt(
        &self,
        cmd: &redis::Cmd,
        deadline: Instant,
    ) -> (Result<redis::Value, Failure>, bool) {
        let (mut conn, cached) = match self.connection(deadline).await {
            Ok(c) => c,
            Err(f) => return (Err(f), false),
        };
        let result = match timeout_at(deadline, cmd.query_async::<redis::Value>(&mut conn)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.kind() == redis::ErrorKind::IoError || e.is_connection_dropped() => {
                self.set_cached(None);
                Err(Failure::Unreachable(describe(&e)))
            }
            Ok(Err(e)) => Err(Failure::Replied(
                [e.code().unwrap_or(""), e.detail().unwrap_or("")]
                    .join(" ")
                    .trim()
                    .to_string(),
            )),
        };
        (result, cached)
    }

    fn mark(&self, state: State) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Runs `cmd` on this member, bounded by `deadline`. A cached connection found broken (the
    /// member restarted or died) is replaced once, so the failure reported is the current one
    /// ("connection refused"), not the stale connection's.
    pub async fn call(&self, cmd: &redis::Cmd, deadline: Instant) -> Result<redis::Value, Failure> {
        if pushed_liveness(&self.id) == Some(Pushed::Down) {
            return Err(Failure::Unreachable("down (failure detector)".into()));
        }
        self.try_call(cmd, deadline).await
    }

    /// Like [`Peer::call`] but tried even when the failure detector says the member is down:
    /// for background work that must not trust a verdict that may be this node's own (a node
    /// that left the cluster hears no heartbeats any more, yet must hand its data over).
    pub async fn try_call(
        &self,
        cmd: &redis::Cmd,
        deadline: Instant,
    ) -> Result<redis::Value, Failure> {
        let started = std::time::Instant::now();
        // An injected fault's delay counts in the measured round trip.
        match crate::faults::call(&self.id) {
            Link::Drop => {
                self.mark(State::Down);
                return Err(Failure::Unreachable("cut by an injected fault".into()));
            }
            Link::Pass { delay_ms: 0 } => {}
            Link::Pass { delay_ms } => {
                let until = Instant::now() + std::time::Duration::from_millis(delay_ms);
                if until > deadline {
                    tokio::time::sleep_until(deadline).await;
                    return Err(Failure::Timeout);
                }
                tokio::time::sleep_until(until).await;
            }
        }
        let mut result = self.attempt(cmd, deadline).await;
        if let (Err(Failure::Unreachable(_)), true) = &result {
            result = self.attempt(cmd, deadline).await;
        }
        let result = result.0;
        crate::stats::replica_rtt(&self.id, started.elapsed());
        self.mark(match &result {
            Ok(_) | Err(Failure::Replied(_)) => State::Up,
            Err(_) => State::Down,
        });
        result
    }
}
