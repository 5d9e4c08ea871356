//! The write fan-out behind `RC.SET` and `RC.DEL`: the local replica is written on Redis's main
//! thread before this starts; this sends the write to the other preference nodes in parallel,
//! feeds their answers to the write's quorum round, answers the client as the round decides (at
//! the W-th acknowledgement, or `NOQUORUM` once W cannot be reached or the deadline passes, or
//! re-issues the write past a newer version a replica holds), and lets the remaining writes
//! finish on their own. A replica that fails gets
//! its write as a hint: on the next node of the ring outside the preference list (which then
//! counts toward W: sloppy quorum), or, when there is none, on this node.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use rcluster_domain::rc::chunk::ChunkPut;
use rcluster_domain::rc::hint::HintPut;
use rcluster_domain::rc::replica::{ack_of, Ack, ReplicaWrite};
use rcluster_domain::round::{Asked, Decision, WriteAnswer, WriteRound};
use rcluster_domain::version::Version;
use redis::Value;

use crate::coord::block::{Answer, Blocked};
use crate::coord::deadline_in;
use crate::coord::peers::{count_failure, Failure, Peer};
use crate::coord::wire::{self, V};
use crate::stats::{self, End, Op};
use crate::trace::{self, Tracer};
use rcluster_domain::trace::{show_version, What};

/// What is written: a versioned register (hinted when a replica fails) or a file chunk
/// (immutable and checksummed: not hinted, repaired when read).
pub enum Payload {
    Kv {
        key: Vec<u8>,
        /// `None` writes a tombstone.
        value: Option<Vec<u8>>,
        version: Version,
    },
    /// The replica-level `RC.CHUNK.PUT`, built once from the command's argument (the chunk's
    /// bytes are copied into it on the main thread and then only into each peer's socket).
    Chunk(Arc<redis::Cmd>),
}

impl Payload {
    /// A chunk write: `RC.CHUNK.PUT` with the CRC-32C computed from the bytes checked here, so
    /// each replica checks the transfer at CRC speed instead of hashing the chunk again.
    pub fn chunk(file: &str, index: u32, sha256: &str, crc32c: &str, data: &[u8]) -> Payload {
        Payload::Chunk(Arc::new(wire::cmd(&ChunkPut {
            file_id: file,
            index,
            sha256: sha256.into(),
            data,
            crc32c: Some(crc32c.into()),
        })))
    }

    /// The replica-level write of a register, when the payload is one.
    pub fn replica_write(&self) -> Option<ReplicaWrite<'_>> {
        match self {
            Payload::Kv {
                key,
                value,
                version,
            } => Some(ReplicaWrite {
                key,
                value: value.as_deref(),
                version: Cow::Borrowed(version),
            }),
            Payload::Chunk(_) => None,
        }
    }

    /// The replica-level write command.
    pub fn replica_cmd(&self) -> Arc<redis::Cmd> {
        match self {
            Payload::Chunk(cmd) => cmd.clone(),
            Payload::Kv { .. } => Arc::new(
                self.replica_write()
                    .map_or_else(redis::Cmd::new, |w| wire::cmd(&w)),
            ),
        }
    }

    /// The command holding this write for `intended` as a hint, when the payload is hinted.
    pub fn hint_cmd(&self, intended: &str) -> Option<redis::Cmd> {
        match self {
            Payload::Kv {
                key,
                value,
                version,
            } => Some(wire::cmd(&HintPut {
                node: intended,
                key,
                version: Cow::Borrowed(version),
                tombstone: value.is_none(),
                value: value.as_deref().unwrap_or_default(),
            })),
            Payload::Chunk(_) => None,
        }
    }
}

pub struct WriteJob {
    pub op: Op,
    pub payload: Payload,
    /// The write's quorum round: W (joint during a change of placement), this node's own
    /// acknowledgement, the calls to `replicas` under way and the re-issues left.
    pub round: WriteRound,
    /// The replicas still to write.
    pub replicas: Vec<Arc<Peer>>,
    /// Every preference node of the key (this node included when it is one): whom a write
    /// re-issued with a newer version goes to.
    pub preference: Vec<Arc<Peer>>,
    pub substitutes: Vec<Arc<Peer>>,
    pub me: Option<Arc<Peer>>,
    pub timeout_ms: u64,
    /// When set, the calls to the replicas end this many ms from the start of `run` instead of
    /// `timeout_ms` (a write taken over from the main-thread fast path keeps what was left of its
    /// time; keeping a hint still gets the full timeout).
    pub calls_within_ms: Option<u64>,
    pub started: Instant,
    /// What a success answers instead of `OK` (the digest `RC.CHUNK.SET ... *` computed).
    pub reply: Option<Vec<u8>>,
    /// The request's trace, when traced (kept in the ring when the job ends).
    pub trace: Tracer,
}

struct Outcome {
    /// The node the write was meant for.
    intended: Arc<Peer>,
    /// A substitute asked to hold a hint for it, or `None` when the node itself was asked.
    via: Option<Arc<Peer>>,
    result: Result<Value, Failure>,
}

impl WriteJob {
    /// The version written, for a register (chunks have none).
    pub fn version(&self) -> Option<&Version> {
        match &self.payload {
            Payload::Kv { version, .. } => Some(version),
            Payload::Chunk(_) => None,
        }
    }

    /// Answers the client, if it still waits, as the round decided; on a re-issue, the version
    /// the new write must pass (the caller re-issues it with [`WriteJob::reissue`]).
    pub fn answer(&self, decision: Decision, blocked: &mut Option<Blocked>) -> Option<Version> {
        let (answer, end) = match decision {
            Decision::Pending => return None,
            Decision::Reissue(held) => return blocked.is_some().then_some(held),
            Decision::Done => match &self.reply {
                Some(v) => (Answer::Value(Some(v.clone())), End::Ok),
                None => (Answer::Ok, End::Ok),
            },
            Decision::OutOfReach(e) => (Answer::Error(e.to_string()), End::out_of_reach(&e)),
        };
        if let Some(b) = blocked.take() {
            // Counted before the reply, so a client that saw it also sees it in INFO.
            stats::quorum_op(self.op, end, self.started.elapsed());
            let (got, needed) = (self.round.got(), self.round.needed());
            self.trace.decided(got, needed, &answer);
            b.finish(answer);
        }
        None
    }

    pub async fn run(mut self, mut blocked: Option<Blocked>) {
        let deadline = deadline_in(self.calls_within_ms.unwrap_or(self.timeout_ms));
        let mut local_hints: Vec<String> = Vec::new();
        let mut substitutes: VecDeque<Arc<Peer>> = self.substitutes.iter().cloned().collect();
        // The calls run concurrently inside this one task (no task per replica).
        let mut tasks = FuturesUnordered::new();
        let replica = self.payload.replica_cmd();
        for peer in &self.replicas {
            self.trace.note(&peer.id, || What::Asked { hint_for: None });
            let (peer, cmd) = (peer.clone(), replica.clone());
            tasks.push(
                async move {
                    let result = peer.call(&cmd, deadline).await;
                    Outcome {
                        intended: peer,
                        via: None,
                        result,
                    }
                }
                .boxed(),
            );
        }
        let decision = self.round.start();
        let mut reissue = self.answer(decision, &mut blocked);
        while let Some(out) = tasks.next().await {
            let ack = match &out.result {
                Ok(reply) => ack_of(V(reply), self.version()),
                Err(_) => Ack::No,
            };
            let hint_for = out.via.as_ref().map(|_| out.intended.id.as_str());
            let node = out.via.as_ref().unwrap_or(&out.intended).id.as_str();
            self.trace
                .note(node, || trace::write_answer(&out.result, &ack, hint_for));
            let answer = match (ack, out.result) {
                (Ack::Yes, _) => WriteAnswer::Ack,
                (Ack::Newer(held), _) => WriteAnswer::Newer(held),
                (Ack::No, other) => {
                    let why = match other {
                        Err(f) => {
                            count_failure(&f);
                            f.to_string()
                        }
                        Ok(v) => format!("unexpected reply {v:?}"),
                    };
                    // Hand the write to the next substitute, or keep the hint here. Payloads
                    // without hints (chunks) just count the failure.
                    let hint = self.payload.hint_cmd(&out.intended.id);
                    let sub = hint.as_ref().and_then(|_| substitutes.pop_front());
                    let handed_on = match (hint, sub) {
                        (Some(cmd), Some(sub)) => {
                            let intended = out.intended.clone();
                            let hint_for = Some(intended.id.clone());
                            self.trace.note(&sub.id, || What::Asked { hint_for });
                            tasks.push(
                                async move {
                                    let result = sub.call(&cmd, deadline).await;
                                    Outcome {
                                        intended,
                                        via: Some(sub),
                                        result,
                                    }
                                }
                                .boxed(),
                            );
                            true
                        }
                        (Some(_), None) => {
                            local_hints.push(out.intended.id.clone());
                            false
                        }
                        (None, _) => false,
                    };
                    WriteAnswer::Failed { why, handed_on }
                }
            };
            let from = match &out.via {
                Some(sub) => Asked::substitute(&sub.id, &out.intended.id),
                None => Asked::replica(&out.intended.id),
            };
            let decision = self.round.feed(from, answer);
            reissue = reissue.or(self.answer(decision, &mut blocked));
        }
        // Every call ended: the round has decided (this only guards against a miscount).
        let decision = self.round.finish();
        reissue = reissue.or(self.answer(decision, &mut blocked));
        self.store_local_hints(local_hints).await;
        if let Some(held) = reissue {
            Box::pin(self.reissue(held, blocked)).await;
        }
    }

    /// Writes the same value again, to every preference node, with a version past `held` (the
    /// newer version a replica reported): the write that was really later wins.
    pub async fn reissue(self, held: Version, blocked: Option<Blocked>) {
        let Payload::Kv { key, value, .. } = self.payload else {
            return;
        };
        crate::commands::clock::observe(held.ts);
        stats::write_reissued();
        let version = Version::new(crate::commands::clock::tick(), crate::settings::node_id());
        self.trace.mine(|| What::Reissue {
            version: show_version(&version),
        });
        let job = WriteJob {
            payload: Payload::Kv {
                key,
                value,
                version,
            },
            round: self.round.reissued(self.preference.len()),
            replicas: self.preference.clone(),
            // Within what is left of the request's time.
            calls_within_ms: Some(self.timeout_ms.saturating_sub(
                u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            )),
            ..self
        };
        job.run(blocked).await;
    }

    async fn store_local_hints(&self, intended: Vec<String>) {
        let Some(me) = &self.me else { return };
        for node in intended {
            let Some(cmd) = self.payload.hint_cmd(&node) else {
                return;
            };
            let stored = me.call(&cmd, deadline_in(self.timeout_ms)).await;
            self.trace
                .note(&me.id, || trace::local_hint(&node, &stored));
            match stored {
                // Refused at the cap on hint bytes per node: counted there (`hints_refused`).
                Err(Failure::Replied(e))
                    if e.starts_with(rcluster_domain::codes::Code::TooLarge.as_str()) => {}
                Err(f) => eprintln!("rcluster: could not keep a hint for {node}: {f}"),
                Ok(_) => {}
            }
        }
    }
}
