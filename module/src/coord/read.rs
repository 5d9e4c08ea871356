//! The read fan-out behind `RC.GET`: asks the preference nodes in parallel (this node's own
//! answer was read on the main thread), feeds their answers to the read's quorum round, answers
//! the client as the round decides (the newest value once R replicas answered, or `NOQUORUM`),
//! then waits for the rest within the deadline and writes the newest version to every replica
//! found stale or missing (read repair).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};
use rcluster_domain::rc::replica::{is_ack, ReplicaGet, ReplicaWrite};
use rcluster_domain::round::{Decision, ReadAnswer, ReadRound};

use crate::coord::block::{Answer, Blocked};
use crate::coord::deadline_in;
use crate::coord::peers::{count_failure, Peer};
use crate::coord::wire::{self, held_reply, V};
use crate::stats::{self, End, Op};
use crate::trace::{self, Tracer};
use rcluster_domain::trace::{show_version, What};

pub struct ReadJob {
    pub key: Vec<u8>,
    /// The read's quorum round: R (joint during a change of placement), the answers already
    /// known (this node's own when it is a preference node, and those the main-thread fast path
    /// collected before handing the read over) and the calls to `replicas` under way.
    pub round: ReadRound<Arc<Peer>>,
    /// The preference nodes still to ask.
    pub replicas: Vec<Arc<Peer>>,
    pub timeout_ms: u64,
    /// When set, the calls end this many ms from the start of `run` (what a read taken over
    /// from the fast path had left of its time).
    pub calls_within_ms: Option<u64>,
    pub started: Instant,
    /// The request's trace, when traced (kept in the ring when the job ends).
    pub trace: Tracer,
}

impl ReadJob {
    /// Answers the client, if it still waits, as the round decided.
    pub fn answer(&self, decision: Decision, blocked: &mut Option<Blocked>) {
        let (answer, end) = match decision {
            Decision::Done => (
                Answer::Value(self.round.value().map(<[u8]>::to_vec)),
                End::Ok,
            ),
            Decision::OutOfReach(e) => (Answer::Error(e.to_string()), End::out_of_reach(&e)),
            Decision::Pending | Decision::Reissue(_) => return,
        };
        if let Some(b) = blocked.take() {
            // Counted before the reply, so a client that saw it also sees it in INFO.
            stats::quorum_op(Op::Get, end, self.started.elapsed());
            let (got, needed) = (self.round.got(), self.round.needed());
            self.trace.decided(got, needed, &answer);
            b.finish(answer);
        }
    }

    pub async fn run(mut self, mut blocked: Option<Blocked>) {
        let deadline = deadline_in(self.calls_within_ms.unwrap_or(self.timeout_ms));
        // The calls run concurrently inside this one task (no task per replica).
        let mut tasks = FuturesUnordered::new();
        let cmd = Arc::new(wire::cmd(&ReplicaGet { key: &self.key }));
        for peer in &self.replicas {
            self.trace.note(&peer.id, || What::Asked { hint_for: None });
            let (peer, cmd) = (peer.clone(), cmd.clone());
            tasks.push(async move {
                let result = peer.call(&cmd, deadline).await.and_then(|v| held_reply(&v));
                (peer, result)
            });
        }
        let decision = self.round.start();
        self.answer(decision, &mut blocked);
        while let Some((peer, result)) = tasks.next().await {
            let answer = match result {
                Ok(held) => {
                    self.trace.note(&peer.id, || trace::answer(&held));
                    ReadAnswer::Held(peer, held)
                }
                Err(f) => {
                    count_failure(&f);
                    self.trace.note(&peer.id, || trace::failure(&f));
                    ReadAnswer::Failed {
                        node: peer.id.clone(),
                        why: f.to_string(),
                    }
                }
            };
            let decision = self.round.feed(answer);
            self.answer(decision, &mut blocked);
        }
        // Every call ended: the round has decided (this only guards against a miscount).
        let decision = self.round.finish();
        self.answer(decision, &mut blocked);
        repair(&self.key, &self.round, self.timeout_ms, &self.trace).await;
    }
}

/// Writes the newest answer to every replica that answered with something older or nothing.
pub async fn repair(key: &[u8], round: &ReadRound<Arc<Peer>>, timeout_ms: u64, trace: &Tracer) {
    let Some((best, stale)) = round.repairs() else {
        return;
    };
    let cmd = wire::cmd(&ReplicaWrite {
        key,
        value: (!best.tombstone).then_some(best.value.as_slice()),
        version: Cow::Borrowed(&best.version),
    });
    let deadline = deadline_in(timeout_ms);
    for peer in stale {
        stats::stale_replica_found();
        trace.note(&peer.id, || What::Repair {
            version: show_version(&best.version),
        });
        let done = peer.call(&cmd, deadline).await;
        trace.note(&peer.id, || trace::repair_answer(&done));
        match done {
            Ok(reply) if is_ack(V(&reply)) => stats::read_repaired(),
            Ok(_) => {}
            Err(f) => count_failure(&f),
        }
    }
}
