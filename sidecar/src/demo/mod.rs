//! The guided scenarios (`rcluster demo <name>`, `POST /api/demos`), one runner for the CLI and
//! the HTTP API: a scenario is a list of steps; each step and each line it says is narrated on
//! the terminal (CLI), on `cluster:events` (`{"type":"demo",...}`, on every member) and in the
//! run's state (HTTP). A run can be stopped between steps; it refuses to start while the cluster
//! is not healthy or another scenario runs (this process's runs, and a lock key in the first
//! node's Redis for runs of other processes); at the end, or when stopped, it restores the
//! cluster: its faults cleared, its temporary node removed, the settings it changed put back.
//! The verdict's arithmetic is pure (`rcluster_domain::demo`).

pub mod cluster;
mod failure;
mod normal;
mod resources;
mod scaling;
mod tradeoffs;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcluster_domain::config::NodeConfig;
use serde_json::{json, Value};

pub use cluster::Cluster;

use crate::api::demos::{Demo, DemoLine, DemoStep};
use crate::api::NodeState;

/// The Pub/Sub channel the narration goes to (the node's events channel).
const EVENTS: &str = "cluster:events";
/// The key that says a scenario runs, in the first node's Redis (refreshed at every step).
const LOCK_KEY: &str = "rcluster:demo:running";
const LOCK_TTL_MS: u64 = 10 * 60 * 1000;
/// Runs kept by a node.
const KEPT: usize = 20;

/// The five scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    Normal,
    NodeFailure,
    Scaling,
    Resources,
    TradeOffs,
}

impl Name {
    pub const ALL: [Name; 5] = [
        Name::Normal,
        Name::NodeFailure,
        Name::Scaling,
        Name::Resources,
        Name::TradeOffs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Name::Normal => "normal",
            Name::NodeFailure => "node-failure",
            Name::Scaling => "scaling",
            Name::Resources => "resources",
            Name::TradeOffs => "trade-offs",
        }
    }

    pub fn parse(s: &str) -> Option<Name> {
        Name::ALL.into_iter().find(|n| n.as_str() == s)
    }

    /// The names, for messages.
    pub fn list() -> String {
        Name::ALL.map(Name::as_str).join(", ")
    }

    /// The steps' titles, in order.
    fn steps(self) -> &'static [&'static str] {
        match self {
            Name::Normal => normal::STEPS,
            Name::NodeFailure => failure::STEPS,
            Name::Scaling => scaling::STEPS,
            Name::Resources => resources::STEPS,
            Name::TradeOffs => tradeoffs::STEPS,
        }
    }
}

/// Why a scenario ended before its verdict.
#[derive(Debug)]
pub enum Halt {
    Stopped,
    Error(String),
}

impl From<String> for Halt {
    fn from(e: String) -> Halt {
        Halt::Error(e)
    }
}

/// What a scenario measured at its end: whether it holds, and the figures.
pub struct Verdict {
    pub passed: bool,
    pub figures: Value,
}

/// What a run changed that must be put back.
#[derive(Default)]
struct Restore {
    /// Faults it injected (their ids).
    faults: Vec<String>,
    /// The temporary node it added.
    temp_node: Option<String>,
    /// A node's Redis `maxmemory` before the run changed it.
    maxmemory: Option<(NodeConfig, String)>,
    /// The quorum and chunk size before the run changed them.
    quorum: Option<Value>,
    chunk_size_bytes: Option<u64>,
}

/// One run: its narrated state, its stop flag.
pub struct Run {
    state: Mutex<Demo>,
    stop: AtomicBool,
    started: Instant,
    /// Print each line on standard output (the CLI).
    echo: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Run {
    pub fn new(id: String, name: Name, short: bool, echo: bool) -> Arc<Run> {
        Arc::new(Run {
            state: Mutex::new(Demo {
                id,
                name: name.as_str().to_string(),
                short,
                state: "running".into(),
                step: DemoStep {
                    index: 0,
                    of: name.steps().len() as u32,
                    title: String::new(),
                },
                narration: Vec::new(),
                verdict: None,
                error: None,
            }),
            stop: AtomicBool::new(false),
            started: Instant::now(),
            echo,
        })
    }

    pub fn view(&self) -> Demo {
        lock(&self.state).clone()
    }

    /// Asks the run to stop at its next step (it then restores the cluster).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// What a scenario works with.
pub struct Ctx {
    pub cluster: Arc<Cluster>,
    run: Arc<Run>,
    pub short: bool,
    restore: Mutex<Restore>,
    /// Where the run keeps its lock (the first node that answered).
    lock_node: NodeConfig,
}

impl Ctx {
    /// Milliseconds since the run started.
    pub fn at_ms(&self) -> u64 {
        self.run.started.elapsed().as_millis() as u64
    }

    pub fn t0(&self) -> Instant {
        self.run.started
    }

    /// The run's id (in the keys it writes).
    pub fn id(&self) -> String {
        lock(&self.run.state).id.clone()
    }

    /// Starts step `index` (1-based) unless the run was asked to stop.
    pub async fn step(&self, index: u32) -> Result<(), Halt> {
        if self.run.stopped() {
            return Err(Halt::Stopped);
        }
        let (title, of) = {
            let mut s = lock(&self.run.state);
            let name = Name::parse(&s.name).unwrap_or(Name::Normal);
            let title = name.steps().get(index as usize - 1).copied().unwrap_or("");
            s.step.index = index;
            s.step.title = title.to_string();
            (title, s.step.of)
        };
        let mut refresh = redis::cmd("SET");
        refresh
            .arg(LOCK_KEY)
            .arg(self.id())
            .arg("XX")
            .arg("PX")
            .arg(LOCK_TTL_MS);
        let _ = self
            .cluster
            .redis::<Option<String>>(&self.lock_node, &refresh)
            .await;
        self.say(&format!("[{index}/{of}] {title}")).await;
        Ok(())
    }

    /// Says one line: the terminal, the run's narration, `cluster:events` on every member.
    pub async fn say(&self, text: &str) {
        let at_ms = self.at_ms();
        let (event, echo) = {
            let mut s = lock(&self.run.state);
            s.narration.push(DemoLine {
                at_ms,
                text: text.to_string(),
            });
            let event = json!({
                "type": "demo", "id": s.id, "name": s.name, "step": s.step.index,
                "text": text, "unix_ms": crate::node::view::unix_ms(),
            });
            (event, self.run.echo)
        };
        if echo {
            // The time on a say's first line; its other lines under the text.
            for (i, line) in text.lines().enumerate() {
                if i == 0 {
                    println!("{:>6.1}s  {line}", at_ms as f64 / 1000.0);
                } else {
                    println!("         {line}");
                }
            }
        }
        let targets = self
            .cluster
            .members()
            .await
            .unwrap_or_else(|_| self.cluster.nodes());
        for n in &targets {
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(EVENTS).arg(event.to_string());
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                self.cluster.redis::<i64>(n, &publish),
            )
            .await;
        }
    }

    /// Sleeps `d`, cut short when the run is asked to stop.
    pub async fn pause(&self, d: Duration) -> Result<(), Halt> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.run.stopped() {
                return Err(Halt::Stopped);
            }
            tokio::time::sleep((end - Instant::now()).min(Duration::from_millis(200))).await;
        }
        Ok(())
    }

    /// Remembers a fault the run injected (cleared at the end).
    pub fn injected(&self, id: &str) {
        lock(&self.restore).faults.push(id.to_string());
    }

    /// Remembers the temporary node (`None`: it was removed by the scenario itself).
    pub fn temp_node(&self, id: Option<&str>) {
        lock(&self.restore).temp_node = id.map(str::to_string);
    }

    /// Remembers `node`'s `maxmemory` before the run changes it (`None`: put back already).
    pub fn maxmemory(&self, node: &NodeConfig, before: Option<&str>) {
        lock(&self.restore).maxmemory = before.map(|b| (node.clone(), b.to_string()));
    }

    /// Remembers the quorum before the run changes it.
    pub fn quorum(&self, before: Value) {
        lock(&self.restore).quorum.get_or_insert(before);
    }

    /// Remembers the chunk size before the run changes it.
    pub fn chunk_size(&self, before: u64) {
        lock(&self.restore).chunk_size_bytes.get_or_insert(before);
    }

    /// Puts back what the run changed, saying each thing.
    async fn restore(&self) {
        let r = std::mem::take(&mut *lock(&self.restore));
        let nodes = self.cluster.nodes();
        for id in &r.faults {
            let path = format!("/api/faults/{id}");
            match self.cluster.ask(&nodes, "DELETE", &path, None).await {
                Ok(a) if a.status < 300 || a.status == 404 => {
                    self.say(&format!("restore: fault {id} cleared")).await
                }
                Ok(a) => {
                    self.say(&format!(
                        "restore: fault {id}: {} {}",
                        a.status,
                        a.text.trim()
                    ))
                    .await
                }
                Err(e) => self.say(&format!("restore: fault {id}: {e}")).await,
            }
        }
        if let Some((node, before)) = &r.maxmemory {
            match self.cluster.set_maxmemory(node, before).await {
                Ok(_) => {
                    self.say(&format!(
                        "restore: {}'s maxmemory back to {before}",
                        node.id
                    ))
                    .await
                }
                Err(e) => {
                    self.say(&format!("restore: {}'s maxmemory: {e}", node.id))
                        .await
                }
            }
        }
        if let Some(q) = &r.quorum {
            let said = match self
                .cluster
                .ask(&nodes, "PUT", "/api/cluster/quorum", Some(q))
                .await
            {
                Ok(a) if a.status < 300 => format!("restore: quorum back to {q}"),
                Ok(a) => format!("restore: quorum: {} {}", a.status, a.text.trim()),
                Err(e) => format!("restore: quorum: {e}"),
            };
            self.say(&said).await;
        }
        if let Some(c) = r.chunk_size_bytes {
            let body = json!({ "chunk_size_bytes": c });
            let said = match self
                .cluster
                .ask(&nodes, "PUT", "/api/cluster/settings", Some(&body))
                .await
            {
                Ok(a) if a.status < 300 => format!("restore: chunk size back to {c} bytes"),
                Ok(a) => format!("restore: chunk size: {} {}", a.status, a.text.trim()),
                Err(e) => format!("restore: chunk size: {e}"),
            };
            self.say(&said).await;
        }
        if let Some(id) = &r.temp_node {
            let said = match scaling::remove_node(self, id).await {
                Ok(()) => format!("restore: temporary node {id} removed"),
                Err(e) => format!("restore: temporary node {id}: {e}"),
            };
            self.say(&said).await;
        }
    }
}

/// The runs of this process (the node's, for `/api/demos`), newest last.
static RUNS: Mutex<Vec<Arc<Run>>> = Mutex::new(Vec::new());
static COUNT: Mutex<u64> = Mutex::new(0);

/// A run of this process by id.
pub fn get(id: &str) -> Option<Arc<Run>> {
    lock(&RUNS)
        .iter()
        .find(|r| lock(&r.state).id == id)
        .cloned()
}

/// Every run of this process.
pub fn list() -> Vec<Demo> {
    lock(&RUNS).iter().map(|r| r.view()).collect()
}

/// Why the cluster cannot run a scenario now (`Err` with the reason, said to the user), else
/// the node that keeps the lock, which is then taken for `id`.
pub async fn preflight(cluster: &Cluster, id: &str) -> Result<NodeConfig, String> {
    if let Some(busy) = lock(&RUNS)
        .iter()
        .map(|r| r.view())
        .find(|d| d.state == "running")
    {
        return Err(format!(
            "scenario '{}' ({}) is running; stop it first (DELETE /api/demos/{})",
            busy.name, busy.id, busy.id
        ));
    }
    let view = cluster
        .view()
        .await
        .map_err(|e| format!("the cluster cannot be asked: {e}"))?;
    for n in &view.nodes {
        if n.state != Some(NodeState::Alive) && !n.is_self {
            return Err(format!(
                "the cluster is not healthy: node {} is {} as {} sees it ({})",
                n.id,
                n.state.map_or("unknown", NodeState::as_str),
                view.observer,
                n.reason.clone().unwrap_or_default()
            ));
        }
        if n.redis_up == Some(false) {
            return Err(format!(
                "the cluster is not healthy: node {}'s Redis is not up ({})",
                n.id,
                n.redis_reason.clone().unwrap_or_default()
            ));
        }
        if n.redistribution.is_some_and(|r| r.running) {
            return Err(format!(
                "the cluster is not settled: node {} is moving data; try again when it is done",
                n.id
            ));
        }
    }
    let faults = cluster
        .ask(&cluster.nodes(), "GET", "/api/faults", None)
        .await;
    if let Ok(a) = faults {
        if let Some(list) = a.json["faults"].as_array().filter(|l| !l.is_empty()) {
            let ids: Vec<&str> = list.iter().filter_map(|f| f["id"].as_str()).collect();
            return Err(format!(
                "the cluster is not healthy: injected faults are active ({}); clear them with \
                 DELETE /api/faults",
                ids.join(", ")
            ));
        }
    }
    let members: Vec<NodeConfig> = view.nodes.iter().map(cluster::node_of).collect();
    let lock_node = members
        .first()
        .cloned()
        .ok_or_else(|| "the cluster has no members".to_string())?;
    let mut take = redis::cmd("SET");
    take.arg(LOCK_KEY)
        .arg(id)
        .arg("NX")
        .arg("PX")
        .arg(LOCK_TTL_MS);
    let taken: Option<String> = cluster.redis(&lock_node, &take).await?;
    if taken.is_none() {
        let holder: Option<String> = cluster
            .redis(&lock_node, redis::cmd("GET").arg(LOCK_KEY))
            .await
            .unwrap_or(None);
        return Err(format!(
            "another scenario runs ({}, started by another process; its lock {LOCK_KEY} on {} \
             expires by itself)",
            holder.unwrap_or_default(),
            lock_node.id
        ));
    }
    Ok(lock_node)
}

/// The id of a new run.
pub fn next_id() -> String {
    let mut c = lock(&COUNT);
    *c += 1;
    format!("d-{}-{}", crate::node::view::unix_ms(), *c)
}

/// Registers `run` (for `/api/demos`).
pub fn register(run: Arc<Run>) {
    let mut runs = lock(&RUNS);
    if runs.len() >= KEPT {
        if let Some(i) = runs.iter().position(|r| r.view().state != "running") {
            runs.remove(i);
        }
    }
    runs.push(run);
}

/// Runs scenario `name` to its end, restores the cluster and releases the lock taken by
/// [`preflight`]; the outcome is in `run`'s state.
pub async fn execute(cluster: Arc<Cluster>, run: Arc<Run>, name: Name, lock_node: NodeConfig) {
    let short = run.view().short;
    let ctx = Ctx {
        cluster,
        run: run.clone(),
        short,
        restore: Mutex::new(Restore::default()),
        lock_node,
    };
    ctx.say(&format!(
        "scenario {}{}: {} steps",
        name.as_str(),
        if short { " (short mode)" } else { "" },
        name.steps().len()
    ))
    .await;
    let outcome = match name {
        Name::Normal => normal::run(&ctx).await,
        Name::NodeFailure => failure::run(&ctx).await,
        Name::Scaling => scaling::run(&ctx).await,
        Name::Resources => resources::run(&ctx).await,
        Name::TradeOffs => tradeoffs::run(&ctx).await,
    };
    ctx.restore().await;
    let (state, verdict, error) = match outcome {
        Ok(v) => {
            let state = if v.passed { "passed" } else { "failed" };
            let mut figures = v.figures;
            if let Value::Object(m) = &mut figures {
                m.insert("passed".into(), Value::Bool(v.passed));
            }
            (state, Some(figures), None)
        }
        Err(Halt::Stopped) => ("stopped", None, None),
        Err(Halt::Error(e)) => ("error", None, Some(e)),
    };
    match (&verdict, &error) {
        (Some(v), _) => {
            let mut text = format!("verdict: {}", state.to_uppercase());
            for (k, f) in v.as_object().into_iter().flatten() {
                text.push_str(&format!("\n  {k:<28} {f}"));
            }
            ctx.say(&text).await;
        }
        (None, Some(e)) => ctx.say(&format!("error: {e}")).await,
        (None, None) => ctx.say("stopped; the cluster was restored").await,
    }
    let mut release = redis::cmd("DEL");
    release.arg(LOCK_KEY);
    let _ = ctx.cluster.redis::<i64>(&ctx.lock_node, &release).await;
    let mut s = lock(&run.state);
    s.state = state.to_string();
    s.verdict = verdict;
    s.error = error;
}
