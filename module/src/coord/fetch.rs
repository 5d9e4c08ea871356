//! The chunk read behind `RC.CHUNK.FETCH` when this node has no intact copy: asks the chunk's
//! other replicas in parallel, answers with the first copy that passed its replica's SHA-256 check
//! (and matches the caller's digest when one was given; chunks are immutable, so one verified
//! copy is the answer), then, once every replica answered
//! or the deadline passed, writes that copy to each replica found missing or corrupt.

use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use rcluster_domain::checksum::sha256_hex;
use rcluster_domain::codes::Code;
use rcluster_domain::rc::chunk::{chunk_data, ChunkGet, ChunkPut};

use crate::coord::block::{Answer, Blocked};
use crate::coord::deadline_in;
use crate::coord::peers::{count_failure, Failure, Peer};
use crate::coord::wire::{self, V};
use crate::stats::{self, End, Op};

/// What one replica had.
enum Copy {
    Intact(Vec<u8>),
    Missing,
    /// Corrupt or unreadable there: a replica to repair.
    Damaged(String),
}

pub struct FetchJob {
    pub file: String,
    pub index: u32,
    pub sha256: Option<String>,
    /// This node's own state when it is a replica (read on the main thread): missing or damaged.
    pub local: Option<(Arc<Peer>, Option<String>)>,
    pub replicas: Vec<Arc<Peer>>,
    pub timeout_ms: u64,
    pub started: std::time::Instant,
}

impl FetchJob {
    pub async fn run(self, mut blocked: Option<Blocked>) {
        let deadline = deadline_in(self.timeout_ms);
        let mut tasks = FuturesUnordered::new();
        let get = Arc::new(wire::cmd(&ChunkGet {
            file_id: &self.file,
            index: self.index,
        }));
        for peer in &self.replicas {
            let (peer, cmd, expected) = (peer.clone(), get.clone(), self.sha256.clone());
            tasks.push(async move {
                let copy = match peer.call(&cmd, deadline).await {
                    Ok(reply) => match chunk_data(V(&reply)) {
                        Some(Some(data)) => match expected.as_deref() {
                            Some(want) if sha256_hex(data) != want => {
                                stats::checksum_failure();
                                Copy::Damaged(format!("holds other bytes than sha256 {want}"))
                            }
                            _ => Copy::Intact(data.to_vec()),
                        },
                        Some(None) => Copy::Missing,
                        None => Copy::Damaged(format!("unexpected reply {reply:?}")),
                    },
                    Err(Failure::Replied(e))
                        if e.starts_with("CHECKSUM") || e.starts_with("CORRUPT") =>
                    {
                        Copy::Damaged(e)
                    }
                    Err(f) => {
                        count_failure(&f);
                        return (peer, Err(f.to_string()));
                    }
                };
                (peer, Ok(copy))
            });
        }
        let mut to_repair: Vec<Arc<Peer>> = Vec::new();
        let mut problems: Vec<(String, String)> = Vec::new();
        if let Some((peer, damage)) = &self.local {
            to_repair.push(peer.clone());
            problems.push((
                peer.id.clone(),
                damage.clone().unwrap_or_else(|| "missing".into()),
            ));
        }
        let mut good: Option<Vec<u8>> = None;
        while let Some((peer, result)) = tasks.next().await {
            match result {
                Ok(Copy::Intact(data)) => {
                    if good.is_none() {
                        if let Some(b) = blocked.take() {
                            stats::quorum_op(Op::ChunkGet, End::Ok, self.started.elapsed());
                            b.finish(Answer::Value(Some(data.clone())));
                        }
                        good = Some(data);
                    }
                }
                Ok(Copy::Missing) => {
                    problems.push((peer.id.clone(), "missing".into()));
                    to_repair.push(peer);
                }
                Ok(Copy::Damaged(why)) => {
                    problems.push((peer.id.clone(), why));
                    to_repair.push(peer);
                }
                Err(why) => problems.push((peer.id.clone(), why)),
            }
        }
        if let Some(b) = blocked.take() {
            let damaged = problems.iter().any(|(_, why)| why != "missing");
            let answer = if damaged {
                let detail: Vec<String> =
                    problems.iter().map(|(n, w)| format!("{n}: {w}")).collect();
                Answer::Error(format!(
                    "{} chunk:{}:{} has no intact replica ({})",
                    Code::Checksum.as_str(),
                    self.file,
                    self.index,
                    detail.join(", ")
                ))
            } else {
                Answer::Value(None)
            };
            stats::quorum_op(
                Op::ChunkGet,
                if damaged {
                    End::NoQuorum(stats::NoQuorumReason::Damaged)
                } else {
                    End::Ok
                },
                self.started.elapsed(),
            );
            b.finish(answer);
        }
        let Some(data) = good else { return };
        let sha = self.sha256.unwrap_or_else(|| sha256_hex(&data));
        let put = wire::cmd(&ChunkPut {
            file_id: &self.file,
            index: self.index,
            sha256: sha.as_str().into(),
            data: &data,
            crc32c: None,
        });
        let deadline = deadline_in(self.timeout_ms);
        for peer in to_repair {
            match peer.call(&put, deadline).await {
                Ok(_) => stats::chunk_repaired(),
                Err(f) => count_failure(&f),
            }
        }
    }
}
