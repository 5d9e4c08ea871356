//! Tells the world what this node sees: every interval it writes `node:<id>:status` for every node
//! into its own Redis, publishes each state change on `cluster:events`, and pushes each peer's
//! liveness into its module (`RC.CLUSTER.NODESTATE`), so the coordinator routes around a down
//! node at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::node::gossip::Event;
use crate::node::view::Shared;

/// Pub/Sub channel of state changes.
pub const EVENTS_CHANNEL: &str = "cluster:events";

pub async fn run(
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(shared.config.intervals.heartbeat_ms);
    let timeout = interval.min(Duration::from_secs(1));
    // A pushed verdict outlives a few missed pushes, not a dead node process.
    let ttl_ms = (shared.config.intervals.heartbeat_ms * 5).max(3_000);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            Some(event) = events.recv() => {
                if let Ok(json) = serde_json::to_string(&event) {
                    let mut publish = redis::cmd("PUBLISH");
                    publish.arg(EVENTS_CHANNEL).arg(json);
                    if let Err(e) = shared.local.query::<i64>(&publish, timeout).await {
                        eprintln!("node {}: could not publish an event: {e}", shared.me.id);
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
        let mut pipe = redis::pipe();
        {
            let nodes = shared.nodes();
            for (id, view) in nodes.iter() {
                let s = &view.summary;
                pipe.cmd("HSET")
                    .arg(format!("node:{id}:status"))
                    .arg("state")
                    .arg(view.liveness.as_str())
                    .arg("reason")
                    .arg(&view.reason)
                    .arg("observer")
                    .arg(&shared.me.id)
                    .arg("last_heartbeat_ms")
                    .arg(view.last_heartbeat_unix_ms.unwrap_or(0))
                    .arg("phi")
                    .arg(format!("{:.2}", view.phi))
                    .arg("rtt_ms")
                    .arg(view.rtt_ms.map_or_else(String::new, |r| format!("{r:.1}")))
                    .arg("redis_up")
                    .arg(u8::from(s.redis_up))
                    .arg("redis_state")
                    .arg(&s.redis_state)
                    .arg("kv_keys")
                    .arg(s.kv_keys.map_or_else(String::new, |k| k.to_string()))
                    .arg("used_memory_bytes")
                    .arg(
                        s.used_memory_bytes
                            .map_or_else(String::new, |m| m.to_string()),
                    )
                    .arg("drift_ms")
                    .arg(s.drift_ms.map_or_else(String::new, |d| d.to_string()))
                    .arg("time_source")
                    .arg(&s.time_source)
                    .ignore();
                // A peer never heard from is unknown, not down: this node may just have started.
                // The module then finds out by itself whether it answers.
                let heard = view.detector.last_heartbeat_ms().is_some();
                if *id != shared.me.id && heard {
                    pipe.cmd("RC.CLUSTER.NODESTATE")
                        .arg(id)
                        .arg(view.liveness.as_str())
                        .arg(ttl_ms)
                        .ignore();
                }
            }
        }
        // While Redis is down this fails; the next tick tries again.
        let _ = shared.local.pipeline(&pipe, timeout).await;
    }
}
