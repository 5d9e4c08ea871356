//! The read fan-out behind `RC.GET`: asks the preference nodes in parallel (this node's own
//! answer was read on the main thread), answers the client with the newest version once R
//! replicas answered (or `NOQUORUM`), then waits for the rest within the deadline and writes the
//! newest version to every replica found stale or missing (read repair).

use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};
use rcluster_domain::codes::Code;
use rcluster_domain::quorum::{needs_repair, newest, shortfall, Held};
use rcluster_domain::version::Version;
use redis::Value;

use crate::coord::block::{Answer, Blocked};
use crate::coord::deadline_in;
use crate::coord::peers::{Failure, Peer};
use crate::coord::write::{is_ack, replica_cmd};
use crate::stats::{self, End, Op, ReplicaFailure};

pub struct ReadJob {
    pub key: Vec<u8>,
    pub r: usize,
    /// The answers already known: this node's own when it is a preference node, and those the
    /// main-thread fast path collected before handing the read over.
    pub answers: Vec<(Arc<Peer>, Option<Held>)>,
    /// The preference nodes still to ask.
    pub replicas: Vec<Arc<Peer>>,
    pub timeout_ms: u64,
    /// When set, the calls end this many ms from the start of `run` (what a read taken over
    /// from the fast path had left of its time).
    pub calls_within_ms: Option<u64>,
    pub started: Instant,
}

/// Counts a replica failure by kind.
pub fn count_failure(f: &Failure) {
    stats::replica_failure(match f {
        Failure::Timeout => ReplicaFailure::Timeout,
        Failure::Unreachable(_) => ReplicaFailure::Unreachable,
        Failure::Replied(_) => ReplicaFailure::ErrorReply,
    });
}

/// A reply item as text (bulk, status or integer).
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The version two reply items carry (timestamp, origin node), as an `RC.REPLICA.GET` reply, a
/// replica's `stale` answer and `HMGET key version origin` give them.
pub fn version_of(ts: &Value, origin: &Value) -> Option<Version> {
    Some(Version::new(text(ts)?.parse().ok()?, text(origin)?))
}

/// Parses an `RC.REPLICA.GET` reply.
pub fn parse_held(reply: &Value) -> Result<Option<Held>, Failure> {
    let bad = || Failure::Replied(format!("unexpected RC.REPLICA.GET reply {reply:?}"));
    match reply {
        Value::Nil => Ok(None),
        Value::Array(items) if items.len() == 4 => {
            let version = version_of(&items[1], &items[2]).ok_or_else(bad)?;
            let tombstone = matches!(items[3], Value::Int(1));
            let value = match &items[0] {
                Value::BulkString(b) => b.clone(),
                _ => Vec::new(),
            };
            Ok(Some(Held {
                version,
                tombstone,
                value,
            }))
        }
        _ => Err(bad()),
    }
}

/// The client's answer for the newest record: the value, or nil for a tombstone or nothing.
pub fn answer_for(best: Option<&Held>) -> Answer {
    Answer::Value(best.filter(|h| !h.tombstone).map(|h| h.value.clone()))
}

impl ReadJob {
    pub async fn run(self, mut blocked: Option<Blocked>) {
        let deadline = deadline_in(self.calls_within_ms.unwrap_or(self.timeout_ms));
        let mut answers = self.answers;
        let mut failures: Vec<(String, String)> = Vec::new();
        // The calls run concurrently inside this one task (no task per replica).
        let mut tasks = FuturesUnordered::new();
        let cmd = Arc::new({
            let mut c = redis::cmd("RC.REPLICA.GET");
            c.arg(&self.key);
            c
        });
        for peer in &self.replicas {
            let (peer, cmd) = (peer.clone(), cmd.clone());
            tasks.push(async move {
                let result = peer.call(&cmd, deadline).await.and_then(|v| parse_held(&v));
                (peer, result)
            });
        }
        let r = self.r;
        let started = self.started;
        let finish = |blocked: &mut Option<Blocked>,
                      answers: &[(Arc<Peer>, Option<Held>)],
                      failures: &[(String, String)],
                      force: bool,
                      pending: usize| {
            if blocked.is_none() {
                return;
            }
            if answers.len() >= r {
                let best = newest(answers.iter().map(|(_, h)| h));
                if let Some(b) = blocked.take() {
                    // Counted before the reply, so a client that saw it also sees it in INFO.
                    stats::quorum_op(Op::Get, End::Ok, started.elapsed());
                    b.finish(answer_for(best));
                }
            } else if force || answers.len() + pending < r {
                let msg = format!(
                    "{} {}",
                    Code::NoQuorum.as_str(),
                    shortfall(r as u8, answers.len(), failures)
                );
                if let Some(b) = blocked.take() {
                    stats::quorum_op(Op::Get, End::NoQuorum, started.elapsed());
                    b.finish(Answer::Error(msg));
                }
            }
        };
        finish(&mut blocked, &answers, &failures, false, tasks.len());
        while let Some((peer, result)) = tasks.next().await {
            match result {
                Ok(held) => answers.push((peer, held)),
                Err(f) => {
                    count_failure(&f);
                    failures.push((peer.id.clone(), f.to_string()));
                }
            }
            finish(&mut blocked, &answers, &failures, false, tasks.len());
        }
        finish(&mut blocked, &answers, &failures, true, 0);
        repair(&self.key, &answers, self.timeout_ms).await;
    }
}

/// Writes the newest answer to every replica that answered with something older or nothing.
pub async fn repair(key: &[u8], answers: &[(Arc<Peer>, Option<Held>)], timeout_ms: u64) {
    let Some(best) = newest(answers.iter().map(|(_, h)| h)).cloned() else {
        return;
    };
    let value = (!best.tombstone).then_some(best.value.as_slice());
    let cmd = replica_cmd(key, value, &best.version);
    let deadline = deadline_in(timeout_ms);
    for (peer, held) in answers {
        if needs_repair(held, &best) {
            match peer.call(&cmd, deadline).await {
                Ok(reply) if is_ack(&reply) => stats::read_repaired(),
                Ok(_) => {}
                Err(f) => count_failure(&f),
            }
        }
    }
}
