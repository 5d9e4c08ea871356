//! How a scenario reaches the cluster: the members' HTTP APIs (with the admin key, through the
//! small client of `crate::client`) and their Redis servers (RESP, one multiplexed connection
//! per node), every call bounded; the `INFO` fields a scenario shows; and the steady load that
//! several scenarios run under (clients writing through every node in turn, each request timed).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcluster_domain::config::{ClusterConfig, NodeConfig};
use rcluster_domain::demo::Attempt;
use rcluster_domain::node_config::Role;
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use tokio::sync::watch;

use crate::api::{NodeRow, Nodes};
use crate::client;

/// Bound on one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster a scenario runs against.
pub struct Cluster {
    pub config: ClusterConfig,
    /// The config file, for the temporary node of `scaling` (`rcluster node add`).
    pub config_path: PathBuf,
    key: Option<String>,
    conns: Mutex<HashMap<String, MultiplexedConnection>>,
    /// The node whose process runs the scenario (HTTP runs): never the one killed.
    pub protect: Option<String>,
}

/// A plain answer from a node's API: its status and JSON body (`Null` when not JSON).
pub struct Answer {
    pub node: String,
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub body: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// `key` is the admin key to present (`None`: the config's first admin key).
    pub fn new(config: ClusterConfig, config_path: PathBuf, key: Option<String>) -> Cluster {
        let key = key.or_else(|| {
            config
                .api
                .keys
                .iter()
                .find(|k| k.role == Role::Admin)
                .map(|k| k.key.clone())
        });
        Cluster {
            config,
            config_path,
            key,
            conns: Mutex::new(HashMap::new()),
            protect: None,
        }
    }

    /// The admin key presented.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// One request to `node`'s API.
    pub async fn call(
        &self,
        node: &NodeConfig,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        self.call_raw(node, method, path, bytes.as_deref()).await
    }

    /// One request to `node`'s API with a raw body (an upload).
    pub async fn call_raw(
        &self,
        node: &NodeConfig,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, String> {
        let r = client::request(
            method,
            &node.host,
            node.http_port,
            path,
            self.key.as_deref(),
            body,
            CALL_TIMEOUT.max(Duration::from_millis(
                self.config.api.request_timeout_ms + 5000,
            )),
        )
        .await
        .map_err(|e| format!("{}: {e}", node.id))?;
        Ok(Answer {
            node: node.id.clone(),
            status: r.status,
            json: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            text: r.text(),
            body: r.body,
        })
    }

    /// The request answered by the first of `nodes` that answers at all.
    pub async fn ask(
        &self,
        nodes: &[NodeConfig],
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let mut last = "no node to ask".to_string();
        for n in nodes {
            match self.call(n, method, path, body).await {
                Ok(a) if a.status < 500 => return Ok(a),
                Ok(a) => last = format!("{}: {} {}", n.id, a.status, a.text.trim()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The config's nodes: the ones asked first.
    pub fn nodes(&self) -> Vec<NodeConfig> {
        self.config.nodes.clone()
    }

    /// Every member as the first answering node sees it.
    pub async fn view(&self) -> Result<Nodes, String> {
        let a = self.ask(&self.nodes(), "GET", "/api/nodes", None).await?;
        serde_json::from_value(a.json).map_err(|e| format!("{}: /api/nodes: {e}", a.node))
    }

    /// The members, as `view` reports them.
    pub async fn members(&self) -> Result<Vec<NodeConfig>, String> {
        Ok(self.view().await?.nodes.iter().map(node_of).collect())
    }

    /// The Raft leader's id, as the first answering node knows it.
    pub async fn leader(&self, nodes: &[NodeConfig]) -> Option<String> {
        let a = self.ask(nodes, "GET", "/api/cluster", None).await.ok()?;
        a.json["raft"]["leader"].as_str().map(str::to_string)
    }

    async fn conn(&self, node: &NodeConfig) -> Result<MultiplexedConnection, String> {
        let addr = format!("{}:{}", node.host, node.redis_port);
        if let Some(c) = lock(&self.conns).get(&addr) {
            return Ok(c.clone());
        }
        let client = crate::probe::redis_client(
            &node.host,
            node.redis_port,
            self.config.redis_password.as_deref(),
        )
        .map_err(|e| format!("{}: {e}", node.id))?;
        let c = tokio::time::timeout(CALL_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| format!("{}: no Redis connection within 10 s", node.id))?
            .map_err(|e| format!("{}: {e}", node.id))?;
        lock(&self.conns).insert(addr, c.clone());
        Ok(c)
    }

    /// One command on `node`'s Redis; a failed connection is dropped so the next call opens a
    /// new one.
    pub async fn redis<T: redis::FromRedisValue>(
        &self,
        node: &NodeConfig,
        cmd: &redis::Cmd,
    ) -> Result<T, String> {
        let mut c = self.conn(node).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, cmd.query_async::<T>(&mut c)).await;
        match answer {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() {
                    lock(&self.conns).remove(&format!("{}:{}", node.host, node.redis_port));
                }
                Err(e.to_string())
            }
            Err(_) => {
                lock(&self.conns).remove(&format!("{}:{}", node.host, node.redis_port));
                Err(format!("{}: no answer within 10 s", node.id))
            }
        }
    }

    /// Sets `node`'s Redis `maxmemory` (bytes, or as Redis said it before).
    pub async fn set_maxmemory(&self, node: &NodeConfig, value: &str) -> Result<(), String> {
        let mut set = redis::cmd("CONFIG");
        set.arg("SET").arg("maxmemory").arg(value);
        self.redis::<String>(node, &set).await.map(|_| ())
    }

    /// `INFO` of `node`'s Redis (its default sections and the module's, `rcluster_*`) as
    /// `field -> value`.
    pub async fn info(&self, node: &NodeConfig) -> Result<HashMap<String, String>, String> {
        let mut info = redis::cmd("INFO");
        info.arg("default").arg("rcluster");
        let text: String = self.redis(node, &info).await?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect())
    }
}

/// A member's addresses from its `/api/nodes` row.
pub fn node_of(row: &NodeRow) -> NodeConfig {
    NodeConfig {
        id: row.id.clone(),
        host: row.host.clone(),
        redis_port: row.redis_port,
        http_port: row.http_port,
        peer_port: row.peer_port,
        listen_host: None,
    }
}

/// A number from `INFO` (0 when missing).
pub fn num(info: &HashMap<String, String>, field: &str) -> f64 {
    info.get(field).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// CPU seconds a Redis used so far (user + system).
pub fn cpu_s(info: &HashMap<String, String>) -> f64 {
    num(info, "used_cpu_user") + num(info, "used_cpu_sys")
}

/// One write the load made.
#[derive(Clone, Debug)]
pub struct Op {
    pub attempt: Attempt,
    pub took_us: u64,
    pub node: String,
    pub key: String,
    pub value: String,
    pub error: Option<String>,
}

impl Op {
    /// A write acknowledged outside the load (to read back with the load's).
    pub fn written(key: String, value: String) -> Op {
        Op {
            attempt: Attempt {
                client: u32::MAX,
                at_ms: 0,
                took_ms: 0,
                ok: true,
            },
            took_us: 0,
            node: String::new(),
            key,
            value,
            error: None,
        }
    }
}

/// Clients writing `RC.SET` through the given nodes in turn until stopped.
pub struct Load {
    stop: watch::Sender<bool>,
    clients: Vec<tokio::task::JoinHandle<Vec<Op>>>,
}

impl Load {
    /// `clients` writers, keys `<prefix>:<client>:<n>`, through `nodes` in turn (a client
    /// moves on to the next node after each request, so a dead node costs it one failure per
    /// turn), each with a pause of `pause` between requests; times relative to `t0`.
    pub fn start(
        cluster: Arc<Cluster>,
        nodes: Vec<NodeConfig>,
        clients: usize,
        prefix: &str,
        pause: Duration,
        t0: Instant,
    ) -> Load {
        let (stop, rx) = watch::channel(false);
        let clients = (0..clients)
            .map(|c| {
                let cluster = cluster.clone();
                let nodes = nodes.clone();
                let rx = rx.clone();
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    let mut ops = Vec::new();
                    let mut i = 0usize;
                    // A node that failed is left alone for a second, as a client that fails
                    // over would; the next request goes to the next node at once.
                    let mut avoid: HashMap<String, Instant> = HashMap::new();
                    while !*rx.borrow() && !nodes.is_empty() {
                        let now = Instant::now();
                        let node = (0..nodes.len())
                            .map(|k| &nodes[(c + i + k) % nodes.len()])
                            .find(|n| avoid.get(&n.id).is_none_or(|until| *until <= now))
                            .unwrap_or(&nodes[(c + i) % nodes.len()]);
                        let key = format!("{prefix}:{c}:{i}");
                        let value = format!("v{i}-{}", node.id);
                        let start = Instant::now();
                        let mut cmd = redis::cmd("RC.SET");
                        cmd.arg(&key).arg(&value);
                        let r: Result<String, String> = cluster.redis(node, &cmd).await;
                        let took = start.elapsed();
                        ops.push(Op {
                            attempt: Attempt {
                                client: c as u32,
                                at_ms: start.duration_since(t0).as_millis() as u64,
                                took_ms: took.as_millis() as u64,
                                ok: r.is_ok(),
                            },
                            took_us: took.as_micros() as u64,
                            node: node.id.clone(),
                            key,
                            value,
                            error: r.err(),
                        });
                        i += 1;
                        if ops.last().is_some_and(|o: &Op| o.error.is_some()) {
                            avoid.insert(node.id.clone(), Instant::now() + Duration::from_secs(1));
                        } else {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    ops
                })
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops the clients and returns every request they made.
    pub async fn finish(mut self) -> Vec<Op> {
        let _ = self.stop.send(true);
        let mut all = Vec::new();
        for c in std::mem::take(&mut self.clients) {
            if let Ok(ops) = c.await {
                all.extend(ops);
            }
        }
        all
    }
}

/// A load dropped without `finish` (a stopped run) stops its clients too.
impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The acknowledged writes of `ops` read back through `nodes` (the first that answers each):
/// how many were lost (not found, or another value), by `rcluster_domain::demo::lost`.
pub async fn lost(cluster: &Cluster, nodes: &[NodeConfig], ops: &[Op]) -> Result<u64, String> {
    let mut read = Vec::new();
    for op in ops.iter().filter(|o| o.error.is_none()) {
        let mut got = Err(String::new());
        for n in nodes {
            got = cluster
                .redis::<Option<String>>(n, redis::cmd("RC.GET").arg(&op.key))
                .await;
            if got.is_ok() {
                break;
            }
        }
        read.push((op.value.clone(), got?));
    }
    Ok(rcluster_domain::demo::lost(read.iter().map(|(a, r)| {
        (a.as_bytes(), r.as_deref().map(str::as_bytes))
    })))
}
