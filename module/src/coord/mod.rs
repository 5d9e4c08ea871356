//! The quorum coordinator's machinery: a tokio runtime on its own thread inside Redis,
//! connections to the members, blocked clients with timeouts, the write and read fan-out (on
//! Redis's main thread's event loop when it can: `fast`), hint replay and tombstone purging.
//! Redis's main thread never waits on the network.

pub mod block;
pub mod fast;
pub mod fetch;
pub mod gc;
pub mod hints;
pub mod peers;
pub mod read;
pub mod rebalance;
pub mod resp;
pub mod wire;
pub mod write;

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use rcluster_domain::topology::Member;
use tokio::runtime::Runtime;

use crate::cluster::View;
use crate::settings;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Starts the runtime and the background loops (hint replay, tombstone purge).
pub fn start() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .thread_name("rcluster-coord")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the coordinator runtime: {e}"))?;
    rt.spawn(supervise("hint replay", hints::replay_round));
    rt.spawn(supervise("tombstone purge", gc::purge_round));
    rt.spawn(supervise("rebalance", rebalance::round));
    RUNTIME
        .set(rt)
        .map_err(|_| "the coordinator runtime was already started".to_string())
}

/// Runs `f` on the coordinator runtime.
pub fn spawn(f: impl Future<Output = ()> + Send + 'static) {
    if let Some(rt) = RUNTIME.get() {
        rt.spawn(f);
    }
}

/// Repeats `round` forever; a round that panics is logged through its join error and the next
/// one starts, so one bug cannot stop a background duty for good.
async fn supervise<F, Fut>(name: &'static str, round: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Duration> + Send + 'static,
{
    loop {
        let pause = match tokio::spawn(round()).await {
            Ok(pause) => pause,
            Err(e) => {
                crate::stats::panic_caught();
                eprintln!("rcluster: background {name} round failed: {e}");
                Duration::from_secs(1)
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// The bytes of a string reply (bulk or status), for the background duties that read their own
/// Redis.
pub fn reply_bytes(v: &redis::Value) -> Option<&[u8]> {
    match v {
        redis::Value::BulkString(b) => Some(b),
        redis::Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A deadline `ms` from now.
pub fn deadline_in(ms: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_millis(ms)
}

/// This node's member entry in the view (for calls to its own Redis), if it is a member.
pub fn me(view: &View) -> Option<(String, &Member)> {
    let id = settings::node_id();
    let member = view.topology.member(&id)?;
    Some((id, member))
}
