//! The consistency checker's runner (`rcluster check`, `POST /api/checks`): clients write and
//! read through random nodes' Redis with the `RC.*` commands and upload files over HTTP
//! (`workload`), while the fault executor follows a schedule through the faults API
//! (`nemesis`); then it heals, reads every acknowledged write back and every replica's version
//! (`verify`), and judges the recorded history with `domain::check` (`record` keeps it).
//! `registry` holds the runs started over HTTP. Uses `node::local` for Redis and `client` for
//! HTTP; never a CLI type.

mod nemesis;
mod record;
pub mod registry;
mod verify;
mod workload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcluster_domain::check::history::{Kind, Workload};
use rcluster_domain::check::judge::judge;
use rcluster_domain::check::report::{Report, Setup};
use rcluster_domain::check::schedule::{generate, Schedule};
use rcluster_domain::config::{ClusterConfig, NodeConfig};
use rcluster_raft::SplitMix64;

use crate::api::CheckProgress;
use crate::client::{self, Response};
use crate::node::local::Local;
use crate::node::redis_error::RedisError;

pub use record::lock;

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub schedule: Schedule,
    pub seconds: u32,
    pub seed: u64,
    pub workloads: Vec<Workload>,
    /// How long replicas may take to converge after healing.
    pub converge_seconds: u32,
    /// Where to write the history (JSON lines).
    pub history: Option<PathBuf>,
    /// The node running the check: a crash or pause of it stops only its Redis.
    pub protect: Option<String>,
}

/// Longest run accepted.
pub const MAX_SECONDS: u32 = 3600;

impl Plan {
    /// A plan from names as the CLI and the API take them; an error names the bad part.
    pub fn parse(
        schedule: &str,
        seconds: u32,
        seed: Option<u64>,
        workloads: Option<&[String]>,
    ) -> Result<Plan, String> {
        let schedule = Schedule::parse(schedule)?;
        if !(1..=MAX_SECONDS).contains(&seconds) {
            return Err(format!("seconds must be 1..={MAX_SECONDS}, not {seconds}"));
        }
        let workloads = match workloads {
            None => Workload::ALL.to_vec(),
            Some(names) => {
                let mut out = Vec::new();
                for n in names.iter().flat_map(|n| n.split(',')).map(str::trim) {
                    let w = Workload::parse(n).ok_or_else(|| {
                        format!("unknown workload '{n}' (one of: register, set, files)")
                    })?;
                    if !out.contains(&w) {
                        out.push(w);
                    }
                }
                if out.is_empty() {
                    return Err("no workload given (register, set, files)".into());
                }
                out
            }
        };
        let seed = seed.unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            SplitMix64::new(now.as_nanos() as u64).next_u64() % 1_000_000_000
        });
        Ok(Plan {
            schedule,
            seconds,
            seed,
            workloads,
            converge_seconds: 30,
            history: None,
            protect: None,
        })
    }

    pub fn workload_names(&self) -> Vec<String> {
        self.workloads
            .iter()
            .map(|w| w.as_str().to_string())
            .collect()
    }
}

/// Lines about the run as it goes (the CLI prints them, a node logs them).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// The cluster under test: its config, the admin key, a Redis connection per node.
pub struct Cluster {
    pub config: ClusterConfig,
    key: Option<String>,
    redis: Vec<(NodeConfig, Local)>,
    /// Bound on one operation.
    pub op_timeout: Duration,
}

impl Cluster {
    pub fn new(config: ClusterConfig, admin_key: Option<String>) -> Cluster {
        let redis = config
            .nodes
            .iter()
            .map(|n| {
                let local = Local::new(&n.host, n.redis_port, None, config.redis_password.clone());
                (n.clone(), local)
            })
            .collect();
        let op_timeout = Duration::from_millis(config.intervals.request_timeout_ms + 1_000);
        Cluster {
            config,
            key: admin_key,
            redis,
            op_timeout,
        }
    }

    pub fn ids(&self) -> Vec<String> {
        self.redis.iter().map(|(n, _)| n.id.clone()).collect()
    }

    /// The `i`-th node (modulo their count).
    fn nth(&self, i: usize) -> (&NodeConfig, &Local) {
        let (n, l) = &self.redis[i % self.redis.len()];
        (n, l)
    }

    fn redis_of(&self, id: &str) -> Option<&Local> {
        self.redis.iter().find(|(n, _)| n.id == id).map(|(_, l)| l)
    }

    /// One HTTP request to node `node` with the admin key.
    async fn http(
        &self,
        method: &str,
        node: &NodeConfig,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Response, String> {
        client::request(
            method,
            &node.host,
            node.http_port,
            path,
            self.key.as_deref(),
            body,
            timeout,
        )
        .await
    }

    /// The first node's answer to a small request (trying the nodes in turn from `from`) that
    /// is not a connection failure.
    async fn ask(&self, method: &str, path: &str, from: usize) -> Option<(String, Response)> {
        for i in 0..self.redis.len() {
            let (node, _) = self.nth(from + i);
            if let Ok(r) = self
                .http(method, node, path, None, Duration::from_secs(5))
                .await
            {
                return Some((node.id.clone(), r));
            }
        }
        None
    }

    /// The quorum the cluster runs with: the one Raft applied (`replicated_quorum` of
    /// `GET /api/cluster`), else the node's default, else the config's.
    async fn quorum(&self) -> (u8, u8, u8) {
        let q = self.config.quorum;
        let Some((_, r)) = self.ask("GET", "/api/cluster", 0).await else {
            return (q.n, q.w, q.r);
        };
        match serde_json::from_slice::<crate::api::Cluster>(&r.body) {
            Ok(c) if r.status == 200 => {
                let q = c.replicated_quorum.unwrap_or(c.quorum);
                (q.n, q.w, q.r)
            }
            _ => (q.n, q.w, q.r),
        }
    }
}

/// How a failed Redis command is recorded: refused (`fail`) or unknown (`info`), and why.
fn redis_failure(e: &RedisError) -> (Kind, String) {
    match e {
        RedisError::Unreachable(_) => (Kind::Info, "unreachable".into()),
        RedisError::Timeout(_) => (Kind::Info, "timeout".into()),
        RedisError::Module(c) => (Kind::Fail, c.code.as_str().to_string()),
        RedisError::Reply { code, .. } => (Kind::Fail, code.to_string()),
        RedisError::Protocol(_) => (Kind::Info, "protocol".into()),
    }
}

/// How a failed HTTP exchange is recorded: no answer (`info`), or the status (`fail`).
fn http_failure(r: &Result<Response, String>) -> (Kind, String) {
    match r {
        Err(e) if e.contains("did not answer") => (Kind::Info, "timeout".into()),
        Err(_) => (Kind::Info, "unreachable".into()),
        Ok(r) => (Kind::Fail, r.status.to_string()),
    }
}

/// A generator for one part of the run, derived from the seed.
fn rng(seed: u64, part: u64) -> SplitMix64 {
    let mut mix = SplitMix64::new(seed ^ part.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    SplitMix64::new(mix.next_u64())
}

/// Runs the whole check: workload and faults for `plan.seconds`, healing, reads after healing,
/// convergence, judging. `Err` only when the run could not be done (the history file).
pub async fn run(
    cluster: Arc<Cluster>,
    plan: Plan,
    progress: Arc<Mutex<CheckProgress>>,
    log: Log,
) -> Result<Report, String> {
    {
        let mut p = lock(&progress);
        p.seconds = plan.seconds;
        p.phase = "workload".into();
    }
    let rec = Arc::new(record::Recorder::new(plan.history.as_deref(), progress)?);
    let (n, w, r) = cluster.quorum().await;
    let mut draw = rng(plan.seed, 0);
    let steps = generate(plan.schedule, &cluster.ids(), plan.seconds, &mut |k| {
        draw.range(0, k)
    });
    log(&format!(
        "check: schedule {} ({} fault(s)) for {} s, seed {}, workloads {}, quorum N={n} W={w} R={r}",
        plan.schedule.as_str(),
        steps.len(),
        plan.seconds,
        plan.seed,
        plan.workload_names().join(",")
    ));
    let run_id = format!("{:x}", rng(plan.seed, 1).next_u64() ^ rec.now());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(plan.seconds));
    let written = Arc::new(Mutex::new(workload::Written::default()));
    let clients = workload::start(&cluster, &rec, &plan, &run_id, deadline, &written);
    let faults = tokio::spawn(nemesis::execute(
        cluster.clone(),
        rec.clone(),
        steps,
        plan.protect.clone(),
        log.clone(),
    ));
    let ticker = tokio::spawn({
        let rec = rec.clone();
        let seconds = plan.seconds;
        async move {
            for s in 1..=u64::from(seconds) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                lock(&rec.progress).elapsed_s = s;
            }
        }
    });
    for c in clients {
        let _ = c.await;
    }
    let _ = faults.await;
    ticker.abort();
    rec.phase("healing");
    nemesis::heal(&cluster, &rec, &log).await;
    let written = std::mem::take(&mut *lock(&written));
    rec.phase("final-reads");
    verify::final_reads(&cluster, &rec, &written).await;
    rec.phase("converging");
    verify::converge(&cluster, &rec, &written, plan.converge_seconds, &log).await;
    rec.phase("judging");
    let setup = Setup {
        schedule: plan.schedule.as_str().to_string(),
        seconds: plan.seconds,
        seed: plan.seed,
        workloads: plan.workload_names(),
        n,
        w,
        r,
    };
    let report = judge(&rec.events(), setup);
    rec.phase("done");
    Ok(report)
}
