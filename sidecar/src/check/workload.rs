//! The checker's clients, each a task doing one operation at a time through a random node until
//! the deadline: register clients write increasing integers to their own keys (`RC.SET`) and
//! read any client's keys (`RC.GET`); set clients write each key once; the files client uploads
//! files of random bytes over HTTP. Every operation is recorded as an invoke and its outcome.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcluster_domain::check::history::{Event, Kind, Op, Workload};
use rcluster_domain::rc::kv::{Get, QuorumOptions, Set};
use rcluster_raft::SplitMix64;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::record::{lock, Recorder};
use super::{http_failure, redis_failure, rng, Cluster, Plan};
use crate::api::FileMeta;
use crate::client::percent_encode;
use crate::node::local::rc;

/// Register clients, keys per register client, set clients.
const REGISTER_CLIENTS: u32 = 3;
const REGISTER_KEYS: u64 = 3;
const SET_CLIENTS: u32 = 2;
/// Pauses between one client's operations.
const REGISTER_PAUSE: Duration = Duration::from_millis(30);
const SET_PAUSE: Duration = Duration::from_millis(100);
const FILES_PAUSE: Duration = Duration::from_millis(300);

/// What the run wrote: the keys (acknowledged or not) and the acknowledged files (name, id).
#[derive(Default)]
pub struct Written {
    pub keys: Vec<(Workload, String)>,
    pub files: Vec<(String, String)>,
}

struct Client {
    cluster: Arc<Cluster>,
    rec: Arc<Recorder>,
    id: u32,
    workload: Workload,
    rng: SplitMix64,
    deadline: Instant,
}

fn register_key(run: &str, client: u32, k: u64) -> String {
    format!("check:{run}:r{client}:{k}")
}

type Failure = (Kind, String);

impl Client {
    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// A random node's index.
    fn node(&mut self) -> usize {
        self.rng.index(self.cluster.ids().len())
    }

    /// Records `op` on `key` (with `value`) through node `node` around `work`; on success
    /// `fill` adds what it returned to the event.
    async fn op<T>(
        &self,
        op: Op,
        node: usize,
        key: &str,
        value: Option<String>,
        work: impl std::future::Future<Output = Result<T, Failure>>,
        fill: impl FnOnce(&T, &mut Event),
    ) -> Option<T> {
        let mut e = self.rec.event(Kind::Invoke, self.id, op);
        e.workload = Some(self.workload);
        e.node = Some(self.cluster.nth(node).0.id.clone());
        e.key = Some(key.to_string());
        e.value = value;
        self.rec.record(e.clone());
        let out = work.await;
        e.time = self.rec.now();
        let out = match out {
            Ok(v) => {
                e.kind = Kind::Ok;
                fill(&v, &mut e);
                Some(v)
            }
            Err((kind, why)) => {
                e.kind = kind;
                e.error = Some(why);
                None
            }
        };
        self.rec.record(e);
        out
    }

    async fn write(&mut self, key: &str, value: String) -> bool {
        let node = self.node();
        let local = self.cluster.nth(node).1;
        let cmd = rc(&Set {
            key: key.as_bytes(),
            value: value.as_bytes(),
            options: QuorumOptions::NONE,
        });
        let work = async {
            local
                .query::<()>(&cmd, self.cluster.op_timeout)
                .await
                .map_err(|e| redis_failure(&e))
        };
        self.op(Op::Write, node, key, Some(value.clone()), work, |_, _| {})
            .await
            .is_some()
    }

    async fn read(&mut self, key: &str) {
        let node = self.node();
        let local = self.cluster.nth(node).1;
        let cmd = rc(&Get {
            key: key.as_bytes(),
            options: QuorumOptions::NONE,
        });
        let work = async {
            local
                .query::<Option<Vec<u8>>>(&cmd, self.cluster.op_timeout)
                .await
                .map_err(|e| redis_failure(&e))
        };
        self.op(Op::Read, node, key, None, work, |v, e| {
            e.value = v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        })
        .await;
    }

    /// Writes increasing values to its own keys and reads every register client's keys.
    async fn register(mut self, run: String, clients: Vec<u32>) {
        let mut values = [0u64; REGISTER_KEYS as usize];
        while self.running() {
            if self.rng.chance(500_000) {
                let k = self.rng.range(0, REGISTER_KEYS);
                values[k as usize] += 1;
                let key = register_key(&run, self.id, k);
                self.write(&key, values[k as usize].to_string()).await;
            } else {
                let c = clients[self.rng.index(clients.len())];
                let key = register_key(&run, c, self.rng.range(0, REGISTER_KEYS));
                self.read(&key).await;
            }
            tokio::time::sleep(REGISTER_PAUSE).await;
        }
    }

    /// Writes new keys, each once.
    async fn set(mut self, run: String, written: Arc<Mutex<Written>>) {
        let mut n = 0u64;
        while self.running() {
            n += 1;
            let key = format!("check:{run}:s{}:{n}", self.id);
            lock(&written).keys.push((Workload::Set, key.clone()));
            self.write(&key, n.to_string()).await;
            tokio::time::sleep(SET_PAUSE).await;
        }
    }

    /// Uploads files of random bytes (every fifth one larger than a chunk).
    async fn files(mut self, run: String, written: Arc<Mutex<Written>>) {
        let chunk = self.cluster.config.chunk_size_bytes;
        let mut n = 0u64;
        while self.running() {
            n += 1;
            let size = if n.is_multiple_of(5) {
                chunk + self.rng.range(1, 64 << 10)
            } else {
                self.rng.range(1 << 10, 256 << 10)
            };
            let bytes: Vec<u8> = (0..size).map(|_| self.rng.next_u64() as u8).collect();
            let sha = hex::encode(Sha256::digest(&bytes));
            let name = format!("check-{run}-{}-{n}", self.id);
            let node = self.node();
            let path = format!("/api/files?name={}", percent_encode(&name));
            let target = self.cluster.nth(node).0;
            let timeout = self.cluster.op_timeout * 10;
            let work = async {
                let r = self
                    .cluster
                    .http("POST", target, &path, Some(&bytes), timeout)
                    .await;
                match &r {
                    Ok(ok) if ok.status == 201 => serde_json::from_slice::<FileMeta>(&ok.body)
                        .map_err(|e| (Kind::Info, format!("bad answer: {e}"))),
                    _ => Err(http_failure(&r)),
                }
            };
            let meta = self
                .op(Op::Upload, node, &name, Some(sha), work, |m, e| {
                    e.id = Some(m.id.clone());
                })
                .await;
            if let Some(m) = meta {
                lock(&written).files.push((name, m.id));
            }
            tokio::time::sleep(FILES_PAUSE).await;
        }
    }
}

/// Starts the clients of `plan`'s workloads; each ends at `deadline`.
pub fn start(
    cluster: &Arc<Cluster>,
    rec: &Arc<Recorder>,
    plan: &Plan,
    run: &str,
    deadline: Instant,
    written: &Arc<Mutex<Written>>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let mut next = 0u32;
    let mut client = |workload: Workload| {
        next += 1;
        Client {
            cluster: cluster.clone(),
            rec: rec.clone(),
            id: next,
            workload,
            rng: rng(plan.seed, 100 + u64::from(next)),
            deadline,
        }
    };
    if plan.workloads.contains(&Workload::Register) {
        let clients: Vec<u32> = (1..=REGISTER_CLIENTS).collect();
        for _ in &clients {
            let c = client(Workload::Register);
            for k in 0..REGISTER_KEYS {
                lock(written)
                    .keys
                    .push((Workload::Register, register_key(run, c.id, k)));
            }
            tasks.push(tokio::spawn(c.register(run.to_string(), clients.clone())));
        }
    }
    if plan.workloads.contains(&Workload::Set) {
        for _ in 0..SET_CLIENTS {
            let c = client(Workload::Set);
            tasks.push(tokio::spawn(c.set(run.to_string(), written.clone())));
        }
    }
    if plan.workloads.contains(&Workload::Files) {
        let c = client(Workload::Files);
        tasks.push(tokio::spawn(c.files(run.to_string(), written.clone())));
    }
    tasks
}
