//! The write fan-out behind `RC.SET` and `RC.DEL`: the local replica is written on Redis's main
//! thread before this starts; this sends the write to the other preference nodes in parallel,
//! answers the client at the W-th acknowledgement (or `NOQUORUM` once W cannot be reached or the
//! deadline passes), and lets the remaining writes finish on their own. A replica that fails gets
//! its write as a hint: on the next node of the ring outside the preference list (which then
//! counts toward W: sloppy quorum), or, when there is none, on this node.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use rcluster_domain::codes::Code;
use rcluster_domain::quorum::shortfall;
use rcluster_domain::rc::chunk::ChunkPut;
use rcluster_domain::rc::hint::HintPut;
use rcluster_domain::rc::replica::{ack_of, Ack, ReplicaWrite};
use rcluster_domain::version::Version;
use redis::Value;

use crate::coord::block::{Answer, Blocked};
use crate::coord::deadline_in;
use crate::coord::peers::{Failure, Peer};
use crate::coord::read::count_failure;
use crate::coord::wire::{self, V};
use crate::stats::{self, End, Op};

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
    pub w: usize,
    /// 1 when this node is a preference node and already holds the write.
    pub local_acks: usize,
    /// The replicas still to write.
    pub replicas: Vec<Arc<Peer>>,
    /// Every preference node of the key (this node included when it is one): whom a write
    /// re-issued with a newer version goes to.
    pub preference: Vec<Arc<Peer>>,
    /// How many times the write may still be re-issued with a newer version.
    pub reissues: u8,
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
}

struct Outcome {
    /// The node the write was meant for.
    intended: String,
    /// Who was asked: the node itself, or a substitute holding a hint for it.
    via: Option<String>,
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

    pub async fn run(self, mut blocked: Option<Blocked>) {
        let deadline = deadline_in(self.calls_within_ms.unwrap_or(self.timeout_ms));
        let mut acks = self.local_acks;
        let mut failures: Vec<(String, String)> = Vec::new();
        let mut local_hints: Vec<String> = Vec::new();
        let mut substitutes: VecDeque<Arc<Peer>> = self.substitutes.iter().cloned().collect();
        // The calls run concurrently inside this one task (no task per replica).
        let mut tasks = FuturesUnordered::new();
        let replica = self.payload.replica_cmd();
        let ours = self.version().cloned();
        let mut newer: Option<Version> = None;
        for peer in &self.replicas {
            let (peer, cmd) = (peer.clone(), replica.clone());
            tasks.push(
                async move {
                    let result = peer.call(&cmd, deadline).await;
                    Outcome {
                        intended: peer.id.clone(),
                        via: None,
                        result,
                    }
                }
                .boxed(),
            );
        }
        let ok = || match &self.reply {
            Some(v) => Answer::Value(Some(v.clone())),
            None => Answer::Ok,
        };
        let finish = |blocked: &mut Option<Blocked>, answer: Answer, end: End| {
            if let Some(b) = blocked.take() {
                // Counted before the reply, so a client that saw it also sees it in INFO.
                stats::quorum_op(self.op, end, self.started.elapsed());
                b.finish(answer);
            }
        };
        if acks >= self.w {
            finish(&mut blocked, ok(), End::Ok);
        }
        while let Some(out) = tasks.next().await {
            let ack = match &out.result {
                Ok(reply) => ack_of(V(reply), ours.as_ref()),
                Err(_) => Ack::No,
            };
            match (ack, out.result) {
                (Ack::Yes, _) => acks += 1,
                (Ack::Newer(held), _) => {
                    newer = newer.max(Some(held));
                }
                (Ack::No, other) => {
                    let why = match other {
                        Err(f) => {
                            count_failure(&f);
                            f.to_string()
                        }
                        Ok(v) => format!("unexpected reply {v:?}"),
                    };
                    let who = match &out.via {
                        Some(sub) => format!("{sub} (hint for {})", out.intended),
                        None => out.intended.clone(),
                    };
                    failures.push((who, why));
                    // Hand the write to the next substitute, or keep the hint here. Payloads
                    // without hints (chunks) just count the failure.
                    let hint = self.payload.hint_cmd(&out.intended);
                    if let (Some(cmd), Some(sub)) = (hint.as_ref(), substitutes.front()) {
                        let (cmd, sub) = (cmd.clone(), sub.clone());
                        substitutes.pop_front();
                        let intended = out.intended.clone();
                        tasks.push(
                            async move {
                                let result = sub.call(&cmd, deadline).await;
                                Outcome {
                                    intended,
                                    via: Some(sub.id.clone()),
                                    result,
                                }
                            }
                            .boxed(),
                        );
                    } else if hint.is_some() {
                        local_hints.push(out.intended);
                    }
                }
            }
            if acks >= self.w {
                finish(&mut blocked, ok(), End::Ok);
            } else if acks + tasks.len() < self.w && blocked.is_some() && newer.is_none() {
                // Every pending call can add at most one ack: W is out of reach.
                let msg = format!(
                    "{} {}",
                    Code::NoQuorum.as_str(),
                    shortfall(self.w as u8, acks, &failures)
                );
                finish(&mut blocked, Answer::Error(msg), End::NoQuorum);
            }
        }
        // Only while the client still waits: once W replicas took this write, a replica that
        // answers "newer" later holds a write made after it (the client's next one, say), which
        // a re-issued copy of this one would wrongly overwrite.
        if let (Some(held), true, true) = (newer, self.reissues > 0, blocked.is_some()) {
            self.store_local_hints(local_hints).await;
            return Box::pin(self.reissue(held, blocked)).await;
        }
        if blocked.is_some() {
            let msg = format!(
                "{} {}",
                Code::NoQuorum.as_str(),
                shortfall(self.w as u8, acks, &failures)
            );
            finish(&mut blocked, Answer::Error(msg), End::NoQuorum);
        }
        self.store_local_hints(local_hints).await;
    }

    /// Writes the same value again, to every preference node, with a version past `held` (the
    /// newer version a replica reported): the write that was really later wins.
    async fn reissue(self, held: Version, blocked: Option<Blocked>) {
        let Payload::Kv { key, value, .. } = self.payload else {
            return;
        };
        crate::commands::clock::observe(held.ts);
        stats::write_reissued();
        let version = Version::new(crate::commands::clock::tick(), crate::settings::node_id());
        let job = WriteJob {
            payload: Payload::Kv {
                key,
                value,
                version,
            },
            local_acks: 0,
            replicas: self.preference.clone(),
            reissues: self.reissues - 1,
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
            if let Err(f) = me.call(&cmd, deadline_in(self.timeout_ms)).await {
                eprintln!("rcluster: could not keep a hint for {node}: {f}");
            }
        }
    }
}
