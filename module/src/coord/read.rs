//! The read fan-out behind `RC.GET`: asks the preference nodes in parallel (this node's own
//! answer was read on the main thread), answers the client with the newest version once R
//! replicas answered (or `NOQUORUM`), then waits for the rest within the deadline and writes the
//! newest version to every replica found stale or missing (read repair).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};
use rcluster_domain::codes::Code;
use rcluster_domain::quorum::{needs_repair, newest, shortfall, Held};
use rcluster_domain::rc::replica::{is_ack, ReplicaGet, ReplicaWrite};

use crate::coord::block::{Answer, Blocked};
use crate::coord::deadline_in;
use crate::coord::peers::{Failure, Peer};
use crate::coord::wire::{self, held_reply, V};
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
        let cmd = Arc::new(wire::cmd(&ReplicaGet { key: &self.key }));
        for peer in &self.replicas {
            let (peer, cmd) = (peer.clone(), cmd.clone());
            tasks.push(async move {
                let result = peer.call(&cmd, deadline).await.and_then(|v| held_reply(&v));
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
    let cmd = wire::cmd(&ReplicaWrite {
        key,
        value: (!best.tombstone).then_some(best.value.as_slice()),
        version: Cow::Borrowed(&best.version),
    });
    let deadline = deadline_in(timeout_ms);
    for (peer, held) in answers {
        if needs_repair(held, &best) {
            match peer.call(&cmd, deadline).await {
                Ok(reply) if is_ack(V(&reply)) => stats::read_repaired(),
                Ok(_) => {}
                Err(f) => count_failure(&f),
            }
        }
    }
}
