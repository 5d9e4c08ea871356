//! Supervision of the node's redis-server: start it (module, settings, data folder), wait until
//! it answers, load the topology into its module, and keep it running: after a crash, or a
//! start that failed (killed while loading its AOF, say), it is started again after a pause
//! that doubles with every failure in a row (`supervision` in the config), for as long as it
//! takes. It stays down only when an operator stopped it or when it can never start as
//! configured (a port held by another process, a configuration Redis refuses: read from its
//! log). Stop, start and restart requests are served at any time, also while it starts or
//! waits; so is an injected crash (SIGKILL, started again when the fault ends). The state, with the reason and the next attempt, is published on a watch channel.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcluster_domain::config::{ClusterConfig, NodeConfig, CHUNK_SIZE_RANGE};
use rcluster_domain::node_config::insight_user_rules;
use rcluster_domain::rc::cluster::ClusterSet;
use rcluster_domain::topology::{internal_user_directive, Topology};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};

use crate::node::local::rc;
use crate::node::redis_error::RedisError;
use crate::node::view::unix_ms;
use crate::{probe, supervise};

/// Why this node's redis-server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Log(#[from] supervise::LogError),
    #[error("cannot start redis-server (is it installed? ./rc.sh installs it): {0}")]
    Spawn(std::io::Error),
    #[error("redis-server of {id} exited during start-up ({status}){}; last lines of {}:\n{tail}", cause.map(|c| format!(": {c}")).unwrap_or_default(), log.display())]
    Exited {
        id: String,
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
        /// What its log says makes it fail every time (see [`never_starts`]).
        cause: Option<&'static str>,
    },
    #[error("redis-server of {id} did not answer within {REDIS_START_TIMEOUT:?}; see {}", log.display())]
    NoAnswer { id: String, log: PathBuf },
    #[error("cannot load the topology into the module of {id}: {source}")]
    Topology {
        id: String,
        source: crate::node::redis_error::RedisError,
    },
    /// A stop request ended the start.
    #[error("the start was cancelled by a stop request")]
    Cancelled,
}

impl StartError {
    /// Why trying again cannot help (the configuration, not the moment, is at fault).
    pub fn permanent(&self) -> Option<&'static str> {
        match self {
            StartError::Spawn(_) => Some("redis-server cannot be run"),
            StartError::Exited { cause, .. } => *cause,
            _ => None,
        }
    }
}

/// What a redis-server's log lines from one start say makes it fail at every start; `None`
/// when nothing does (it was killed, say, and may well start next time).
pub fn never_starts(log: &str) -> Option<&'static str> {
    const CAUSES: &[(&str, &str)] = &[
        (
            "Address already in use",
            "its port is held by another process",
        ),
        ("FATAL CONFIG FILE ERROR", "Redis refuses its configuration"),
        ("Bad directive", "Redis refuses its configuration"),
        ("Module ", "its module does not load"),
        (
            "Bad file format reading the append only file",
            "its AOF is damaged (redis-check-aof --fix)",
        ),
        (
            "Permission denied",
            "it may not use its data folder or files",
        ),
    ];
    CAUSES.iter().find_map(|(needle, cause)| {
        log.lines()
            .any(|l| {
                l.contains(needle)
                    && (!needle.starts_with("Module ") || l.contains("failed to load"))
            })
            .then_some(*cause)
    })
}

/// Why a stop, start or restart did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Start(StartError),
}

/// How long Redis may take to start answering PING (loading a large AOF takes a while).
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long Redis may take to shut down cleanly before it is killed.
const REDIS_STOP_GRACE: Duration = Duration::from_secs(15);
/// The config file's topology is epoch 1; every metadata change committed through Raft pushes a
/// later one (see `node::raft`).
const TOPOLOGY_EPOCH: u64 = 1;
/// How long loading the topology into a started Redis may take.
const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(10);
/// Restart times remembered for `supervision.max_restarts_per_minute`.
const RESTARTS_KEPT: usize = 1_000;

/// The supervisor's next restart after failures in a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Failures in a row so far (crashes and failed starts; 1 after the first crash).
    pub restarts: u32,
    /// The pause before the next attempt.
    pub delay_ms: u64,
    /// When the next attempt begins (wall clock, Unix ms).
    pub next_attempt_unix_ms: u64,
    /// The last failure.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisState {
    /// Starting (loading its data); `attempt` counts the failures in a row before it (0: a
    /// first start, or one asked for).
    Starting {
        attempt: u32,
    },
    Running {
        pid: u32,
    },
    /// Stopped on request (or after a crash with `restart_on_crash` off); started again only
    /// on request.
    Stopped {
        reason: String,
    },
    /// Crashed or failed to start; started again at `next_attempt_unix_ms`. Shown as
    /// `restarting` after one failure, `crash_looping` after more in a row.
    Restarting(Retry),
    /// Cannot start as configured (a port held by another process, a configuration Redis
    /// refuses); started again only on request, once that is fixed.
    CannotStart {
        reason: String,
    },
}

impl RedisState {
    /// The state without its details, as the API shows it.
    pub fn kind(&self) -> crate::api::RedisState {
        use crate::api::RedisState as Kind;
        match self {
            RedisState::Starting { .. } => Kind::Starting,
            RedisState::Running { .. } => Kind::Running,
            RedisState::Stopped { .. } => Kind::Stopped,
            RedisState::Restarting(r) if r.restarts <= 1 => Kind::Restarting,
            RedisState::Restarting(_) => Kind::CrashLooping,
            RedisState::CannotStart { .. } => Kind::CannotStart,
        }
    }
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }
    pub fn pid(&self) -> Option<u32> {
        match self {
            RedisState::Running { pid } => Some(*pid),
            _ => None,
        }
    }
    /// Why the state is what it is (empty while running or starting afresh).
    pub fn reason(&self) -> String {
        match self {
            RedisState::Starting { attempt: 0 } => String::new(),
            RedisState::Starting { attempt } => {
                format!("restart after {attempt} failure(s) in a row")
            }
            RedisState::Running { pid } => format!("pid {pid}"),
            RedisState::Stopped { reason } | RedisState::CannotStart { reason } => reason.clone(),
            RedisState::Restarting(r) => r.reason.clone(),
        }
    }
    /// Failures in a row behind this state (0 when none).
    pub fn restarts(&self) -> u32 {
        match self {
            RedisState::Starting { attempt } => *attempt,
            RedisState::Restarting(r) => r.restarts,
            _ => 0,
        }
    }
    /// When the supervisor starts Redis again, while it waits to.
    pub fn next_attempt_unix_ms(&self) -> Option<u64> {
        match self {
            RedisState::Restarting(r) => Some(r.next_attempt_unix_ms),
            _ => None,
        }
    }
}

/// What the API may ask of the supervisor (`POST /api/nodes/{id}/stop|start|restart`).
pub use crate::api::NodeAction as Control;

/// What other tasks may ask of the supervisor: an API action, or an injected crash (SIGKILL now,
/// started again after the given time, or earlier on a start request).
enum Ask {
    Control(Control),
    Crash(Duration),
}

type Request = (Ask, oneshot::Sender<Result<String, ControlError>>);

/// The handle other tasks use: the current state and a way to ask for changes.
#[derive(Clone)]
pub struct RedisHandle {
    tx: mpsc::Sender<Request>,
    pub state: watch::Receiver<RedisState>,
}

impl RedisHandle {
    /// A handle with no supervisor behind it, for in-process tests of the API: the state stays
    /// `Stopped` and every request is refused.
    #[cfg(test)]
    pub fn detached() -> RedisHandle {
        let (tx, _) = mpsc::channel(1);
        let (_, state) = watch::channel(RedisState::Stopped {
            reason: "no supervisor".into(),
        });
        RedisHandle { tx, state }
    }

    /// Asks the supervisor to stop, start or restart Redis; returns what happened.
    pub async fn control(&self, c: Control) -> Result<String, ControlError> {
        self.ask(Ask::Control(c)).await
    }

    /// Kills Redis at once (SIGKILL, an injected crash) and starts it again after `down_for`.
    pub async fn crash(&self, down_for: Duration) -> Result<String, ControlError> {
        self.ask(Ask::Crash(down_for)).await
    }

    async fn ask(&self, ask: Ask) -> Result<String, ControlError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.tx
            .send((ask, reply_tx))
            .await
            .map_err(|_| ControlError::ShuttingDown)?;
        reply_rx.await.map_err(|_| ControlError::ShuttingDown)?
    }
}

/// Everything needed to start this node's Redis.
pub struct Spec {
    pub config: ClusterConfig,
    pub node: NodeConfig,
    pub redis_conf: PathBuf,
    pub module: PathBuf,
    pub dir: PathBuf,
    /// The internal user's password (configured, or derived from the cluster secret).
    pub internal_password: String,
    /// The Redis Insight user's password; `None`: no such user ([`insight_password`]).
    pub insight_password: Option<String>,
}

/// The Redis Insight user's password: `insight.password`, or the first line of
/// `insight.password_file` (relative to the config file's folder), checked like the other
/// passwords; `None` when neither is set (there is no default password).
pub fn insight_password(loaded: &crate::paths::Loaded) -> std::io::Result<Option<String>> {
    let insight = &loaded.config.insight;
    let Some(file) = &insight.password_file else {
        return Ok(insight.password.clone());
    };
    let path = loaded
        .config_path
        .parent()
        .unwrap_or(std::path::Path::new("/"))
        .join(file);
    let text = std::fs::read_to_string(&path)?;
    let pw = text.trim().to_string();
    rcluster_domain::config::check_password(
        "insight.password_file",
        "insight.password_file length",
        &pw,
    )
    .map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    Ok(Some(pw))
}

/// The Unix socket this node's Redis also listens on (in its data folder), when the path fits
/// in a socket address (`sun_path`, 108 bytes with its terminator); `None` means TCP only.
pub fn unix_socket(dir: &std::path::Path) -> Option<PathBuf> {
    let path = dir.join("redis.sock");
    (path.as_os_str().len() < 100).then_some(path)
}

impl Spec {
    fn log(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Starts redis-server and waits until it has loaded its data and taken the topology. A
    /// message on `cancel` (or its sender dropped) stops it and ends the start with
    /// [`StartError::Cancelled`].
    async fn start(&self, mut cancel: oneshot::Receiver<()>) -> Result<Child, StartError> {
        let cfg = &self.config;
        let node = &self.node;
        // This start's own log lines tell why it failed (the file keeps earlier starts' lines).
        let log_from = std::fs::metadata(self.log()).map_or(0, |m| m.len());
        let mut cmd = supervise::command("redis-server", &self.log())?;
        cmd.arg(&self.redis_conf)
            .args(["--port", &node.redis_port.to_string()])
            .args(["--bind", node.listen()])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--maxmemory", &format!("{}mb", cfg.redis_maxmemory_mb)]);
        if let Some(password) = &cfg.redis_password {
            cmd.args(["--requirepass", password]);
        }
        cmd.arg("--loadmodule")
            .arg(&self.module)
            .args(["node-id", &node.id])
            .args(["max-key-bytes", &cfg.limits.max_key_bytes.to_string()])
            .args(["max-value-bytes", &cfg.limits.max_value_bytes.to_string()])
            // Any chunk size the cluster may switch to (through Raft), so copies of files cut
            // with an earlier size still move between nodes.
            .args(["max-chunk-bytes", &CHUNK_SIZE_RANGE.end().to_string()])
            .args([
                "anti-entropy-interval-ms",
                &cfg.intervals.anti_entropy_ms.to_string(),
            ])
            .args(["internal-password", &self.internal_password])
            .args([
                "trace-sample-per-million",
                &cfg.trace.sample_per_million.to_string(),
            ])
            .args(["trace-max-count", &cfg.trace.max_traces.to_string()])
            .args(["trace-max-bytes", &cfg.trace.max_bytes.to_string()])
            .args([
                "enable-debug-command",
                if cfg.debug_commands { "yes" } else { "no" },
            ])
            .arg("--user")
            .args(internal_user_directive(&self.internal_password));
        if let Some(pw) = &self.insight_password {
            cmd.arg("--user")
                .arg(&cfg.insight.user)
                .args(insight_user_rules(pw));
        }
        // The node process reaches its own Redis over this socket: chunks cross it at about
        // twice the speed of loopback TCP, which pays the whole TCP stack twice per transfer.
        if let Some(sock) = unix_socket(&self.dir) {
            cmd.arg("--unixsocket")
                .arg(sock)
                .args(["--unixsocketperm", "700"]);
        }
        let mut child = cmd.spawn().map_err(StartError::Spawn)?;
        let ready = tokio::select! {
            r = self.until_ready(&mut child, log_from) => Some(r),
            _ = &mut cancel => None,
        };
        match ready {
            Some(Ok(())) => Ok(child),
            Some(Err(e)) => {
                supervise::stop(&mut child, REDIS_STOP_GRACE).await;
                Err(e)
            }
            None => {
                supervise::stop(&mut child, REDIS_STOP_GRACE).await;
                Err(StartError::Cancelled)
            }
        }
    }

    /// Waits until `child` answers, done loading, then loads the topology into its module.
    async fn until_ready(&self, child: &mut Child, log_from: u64) -> Result<(), StartError> {
        let node = &self.node;
        let password = self.config.redis_password.as_deref();
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let own_lines = supervise::log_since(&self.log(), log_from);
                return Err(StartError::Exited {
                    id: node.id.clone(),
                    status,
                    log: self.log(),
                    tail: supervise::log_tail(&self.log(), 15),
                    cause: never_starts(&own_lines),
                });
            }
            // Its own redis-server, not another process that holds the port (this one then exits
            // with "Address already in use", seen above on the next round), done loading.
            let answering = probe::redis_ready_pid(
                node.local_host(),
                node.redis_port,
                password,
                Duration::from_millis(500),
            )
            .await;
            if answering.is_some() && answering == child.id() {
                break;
            }
            if Instant::now() > deadline {
                return Err(StartError::NoAnswer {
                    id: node.id.clone(),
                    log: self.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        push_topology(
            node,
            password,
            &Topology::from_config(&self.config, TOPOLOGY_EPOCH),
        )
        .await
    }
}

/// Loads the cluster topology into this node's module, so its quorum commands can route.
async fn push_topology(
    node: &NodeConfig,
    password: Option<&str>,
    topology: &Topology,
) -> Result<(), StartError> {
    let fail = |source: RedisError| StartError::Topology {
        id: node.id.clone(),
        source,
    };
    let client = probe::redis_client(node.local_host(), node.redis_port, password)
        .map_err(|e| fail(e.into()))?;
    let push = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        rc(&ClusterSet {
            topology: topology.clone(),
        })
        .query_async::<()>(&mut conn)
        .await
    };
    match tokio::time::timeout(TOPOLOGY_TIMEOUT, push).await {
        // A restarted Redis may already hold a newer topology that Raft committed (restored
        // from its AOF): keep it; the Raft driver pushes its current one again anyway.
        // (The module answers BADARG for it, like for a malformed one: only its words tell.)
        Ok(Err(e)) if e.to_string().contains("older than the installed") => Ok(()),
        Ok(result) => result.map_err(|e| fail(e.into())),
        Err(_) => Err(fail(RedisError::Timeout(TOPOLOGY_TIMEOUT))),
    }
}

type Starting = Pin<Box<dyn Future<Output = Result<Child, StartError>> + Send>>;
type Reply = oneshot::Sender<Result<String, ControlError>>;

/// Where the supervisor is.
enum Phase {
    Running {
        child: Child,
        since: Instant,
    },
    Starting {
        start: Starting,
        cancel: oneshot::Sender<()>,
        /// Requests answered when the start ends.
        waiters: Vec<Reply>,
    },
    /// Waiting to restart after a failure.
    Waiting {
        until: tokio::time::Instant,
    },
    /// Stopped on request, or cannot start: only a request starts it.
    Down,
}

/// What happened to the current phase.
enum PhaseEvent {
    Exited(std::io::Result<std::process::ExitStatus>),
    Started(Result<Child, StartError>),
    RetryDue,
}

impl Phase {
    /// The next thing that happens in this phase (never, while down). Cancel-safe.
    async fn next(&mut self) -> PhaseEvent {
        match self {
            Phase::Running { child, .. } => PhaseEvent::Exited(child.wait().await),
            Phase::Starting { start, .. } => PhaseEvent::Started(start.as_mut().await),
            Phase::Waiting { until } => {
                tokio::time::sleep_until(*until).await;
                PhaseEvent::RetryDue
            }
            Phase::Down => std::future::pending().await,
        }
    }
}

struct Supervisor {
    spec: Arc<Spec>,
    state: watch::Sender<RedisState>,
    phase: Phase,
    /// Failures in a row since Redis last ran stably.
    failures: u32,
    /// When recent restarts began (for `max_restarts_per_minute`).
    restarts: VecDeque<Instant>,
}

impl Supervisor {
    fn set(&self, state: RedisState) {
        let _ = self.state.send(state);
    }

    /// Begins a start; `attempt` counts the failures before it.
    fn begin_start(&mut self, attempt: u32, waiters: Vec<Reply>) {
        let (cancel, cancelled) = oneshot::channel();
        let spec = self.spec.clone();
        let start: Starting = Box::pin(async move { spec.start(cancelled).await });
        self.set(RedisState::Starting { attempt });
        self.phase = Phase::Starting {
            start,
            cancel,
            waiters,
        };
    }

    /// The last lines of Redis's log, one log line each (a log line never spans lines).
    fn log_tail(&self) {
        for line in supervise::log_tail(&self.spec.log(), 8).lines() {
            tracing::warn!(node = %self.spec.node.id, "redis.log: {line}");
        }
    }

    /// After a crash or a failed start: wait and try again, or stay down when trying cannot
    /// help or restarts are off.
    fn failed(&mut self, reason: String, permanent: Option<&'static str>, crash: bool) {
        if let Some(cause) = permanent {
            tracing::error!(
                node = %self.spec.node.id,
                "redis-server cannot start as configured ({cause}): {reason}; fix it, then POST /api/nodes/{}/start",
                self.spec.node.id
            );
            self.phase = Phase::Down;
            let reason = if reason.contains(cause) {
                reason
            } else {
                format!("{cause}: {reason}")
            };
            self.set(RedisState::CannotStart { reason });
            return;
        }
        let sup = self.spec.config.supervision;
        if crash && !sup.restart_on_crash {
            self.phase = Phase::Down;
            self.set(RedisState::Stopped {
                reason: format!(
                    "{reason}; restart_on_crash is off (POST /api/nodes/{}/start)",
                    self.spec.node.id
                ),
            });
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let now = Instant::now();
        let ages: Vec<u64> = self
            .restarts
            .iter()
            .map(|t| u64::try_from(now.duration_since(*t).as_millis()).unwrap_or(u64::MAX))
            .collect();
        let delay_ms = sup.restart_delay(self.failures, &ages);
        tracing::warn!(
            node = %self.spec.node.id,
            "{reason}; restarting it in {delay_ms} ms (failure {} in a row)",
            self.failures
        );
        self.phase = Phase::Waiting {
            until: tokio::time::Instant::now() + Duration::from_millis(delay_ms),
        };
        self.set(RedisState::Restarting(Retry {
            restarts: self.failures,
            delay_ms,
            next_attempt_unix_ms: unix_ms().saturating_add(delay_ms),
            reason,
        }));
    }

    fn on_phase_event(&mut self, event: PhaseEvent) {
        match event {
            PhaseEvent::Exited(status) => {
                let since = match &self.phase {
                    Phase::Running { since, .. } => *since,
                    _ => Instant::now(),
                };
                let stable = Duration::from_millis(self.spec.config.supervision.stable_after_ms);
                if since.elapsed() >= stable {
                    self.failures = 0;
                }
                let reason = format!(
                    "redis-server exited unexpectedly ({})",
                    status.map_or_else(|e| e.to_string(), |s| s.to_string())
                );
                self.log_tail();
                self.phase = Phase::Down;
                self.failed(reason, None, true);
            }
            PhaseEvent::Started(result) => {
                let waiters = match std::mem::replace(&mut self.phase, Phase::Down) {
                    Phase::Starting { waiters, .. } => waiters,
                    _ => Vec::new(),
                };
                match result {
                    Ok(child) => {
                        let pid = child.id().unwrap_or(0);
                        self.phase = Phase::Running {
                            child,
                            since: Instant::now(),
                        };
                        self.set(RedisState::Running { pid });
                        for w in waiters {
                            let _ = w.send(Ok(format!("redis-server started (pid {pid})")));
                        }
                    }
                    Err(e) => {
                        // The first line: the log tail a start error carries is logged apart.
                        let text = e.to_string();
                        let reason = text.lines().next().unwrap_or_default().to_string();
                        if matches!(e, StartError::Exited { .. }) {
                            self.log_tail();
                        }
                        let permanent = e.permanent();
                        self.failed(reason, permanent, false);
                        let mut waiters = waiters.into_iter();
                        if let Some(first) = waiters.next() {
                            let _ = first.send(Err(ControlError::Start(e)));
                        }
                        for w in waiters {
                            let _ = w.send(Ok(format!(
                                "the start failed; redis-server is {}",
                                self.state.borrow().name()
                            )));
                        }
                    }
                }
            }
            PhaseEvent::RetryDue => {
                self.restarts.push_back(Instant::now());
                while self.restarts.len() > RESTARTS_KEPT {
                    self.restarts.pop_front();
                }
                self.begin_start(self.failures, Vec::new());
            }
        }
    }

    /// Stops Redis, or the start under way; returns what there was to stop.
    async fn halt(&mut self, why: &str) -> Option<String> {
        let stopped = match std::mem::replace(&mut self.phase, Phase::Down) {
            Phase::Running { mut child, .. } => {
                self.set(RedisState::Stopped { reason: why.into() });
                let status = supervise::stop(&mut child, REDIS_STOP_GRACE).await;
                Some(format!("redis-server stopped ({status})"))
            }
            Phase::Starting {
                start,
                cancel,
                waiters,
            } => {
                let _ = cancel.send(());
                let _ = start.await;
                for w in waiters {
                    let _ = w.send(Err(ControlError::Start(StartError::Cancelled)));
                }
                Some("the start under way was cancelled".into())
            }
            Phase::Waiting { .. } => Some("the restart it waited for was cancelled".into()),
            Phase::Down => None,
        };
        self.set(RedisState::Stopped { reason: why.into() });
        stopped
    }

    /// An injected crash: SIGKILL now, and a restart once `down_for` has passed.
    async fn crash(&mut self, down_for: Duration, reply: Reply) {
        let Phase::Running { child, .. } = &mut self.phase else {
            let _ = reply.send(Ok(format!(
                "redis-server is {}; nothing to crash",
                self.state.borrow().name()
            )));
            return;
        };
        let status = match child.kill().await {
            Ok(()) => "killed (SIGKILL)".to_string(),
            Err(e) => format!("could not be killed: {e}"),
        };
        let delay_ms = u64::try_from(down_for.as_millis()).unwrap_or(u64::MAX);
        self.phase = Phase::Waiting {
            until: tokio::time::Instant::now() + down_for,
        };
        self.set(RedisState::Restarting(Retry {
            restarts: 1,
            delay_ms,
            next_attempt_unix_ms: unix_ms().saturating_add(delay_ms),
            reason: "crashed by an injected fault".into(),
        }));
        let _ = reply.send(Ok(format!(
            "redis-server {status}; started again in {delay_ms} ms"
        )));
    }

    async fn on_control(&mut self, control: Control, reply: Reply) {
        match control {
            Control::Stop => {
                let what = self.halt("stopped on request").await;
                let _ = reply.send(Ok(
                    what.unwrap_or_else(|| "redis-server was not running".into())
                ));
            }
            Control::Start => match &mut self.phase {
                Phase::Running { .. } => {
                    let _ = reply.send(Ok("redis-server is already running".into()));
                }
                Phase::Starting { waiters, .. } => waiters.push(reply),
                Phase::Waiting { .. } | Phase::Down => {
                    self.failures = 0;
                    self.begin_start(0, vec![reply]);
                }
            },
            Control::Restart => {
                self.halt("restarting on request").await;
                self.failures = 0;
                self.begin_start(0, vec![reply]);
            }
        }
    }
}

/// Starts Redis and the supervisor task. Fails when the first start fails.
pub async fn spawn(
    spec: Spec,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(RedisHandle, tokio::task::JoinHandle<()>), StartError> {
    let spec = Arc::new(spec);
    // Never cancelled: the sender lives until the start ends.
    let (keep, never) = oneshot::channel();
    let child = spec.start(never).await?;
    drop(keep);
    let pid = child.id().unwrap_or(0);
    let (state_tx, state_rx) = watch::channel(RedisState::Running { pid });
    let (tx, mut rx) = mpsc::channel::<Request>(8);
    let mut sup = Supervisor {
        spec,
        state: state_tx,
        phase: Phase::Running {
            child,
            since: Instant::now(),
        },
        failures: 0,
        restarts: VecDeque::new(),
    };
    let task = tokio::spawn(async move {
        loop {
            enum Event {
                Control(Option<Request>),
                Phase(PhaseEvent),
                Shutdown,
            }
            let event = tokio::select! {
                r = rx.recv() => Event::Control(r),
                e = sup.phase.next() => Event::Phase(e),
                _ = shutdown.changed() => Event::Shutdown,
            };
            match event {
                Event::Shutdown | Event::Control(None) => break,
                Event::Phase(e) => sup.on_phase_event(e),
                Event::Control(Some((Ask::Control(control), reply))) => {
                    sup.on_control(control, reply).await
                }
                Event::Control(Some((Ask::Crash(down_for), reply))) => {
                    sup.crash(down_for, reply).await
                }
            }
        }
        sup.halt("the node is shutting down").await;
    });
    Ok((
        RedisHandle {
            tx,
            state: state_rx,
        },
        task,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_that_mean_it_never_starts() {
        let clash = "1:M 01 Jan 2026 00:00:00.000 # Warning: Could not create server TCP listening socket 127.0.0.1:6379: bind: Address already in use\n1:M # Failed listening on port 6379 (tcp), aborting.";
        assert_eq!(
            never_starts(clash),
            Some("its port is held by another process")
        );
        let config = "*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\n>>> 'maxmemory \"lots\"'\nargument must be a memory value";
        assert_eq!(
            never_starts(config),
            Some("Redis refuses its configuration")
        );
        let module = "# Module /x/librcluster_module.so failed to load: It does not have the right permissions.";
        assert_eq!(never_starts(module), Some("its module does not load"));
        // Killed while loading: nothing in its log says it cannot start.
        let loading = "* DB loaded from base file appendonly.aof.1.base.rdb: 0.001 seconds\n* Module 'rcluster' loaded from /x/librcluster_module.so\n* Loading AOF...";
        assert_eq!(never_starts(loading), None);
        assert_eq!(never_starts(""), None);
    }

    #[test]
    fn states_name_the_loop_and_the_reason() {
        let retry = |restarts| {
            RedisState::Restarting(Retry {
                restarts,
                delay_ms: 1_000,
                next_attempt_unix_ms: 42,
                reason: "redis-server exited unexpectedly (signal: 9 (SIGKILL))".into(),
            })
        };
        assert_eq!(retry(1).name(), "restarting");
        assert_eq!(retry(2).name(), "crash_looping");
        assert_eq!(retry(3).restarts(), 3);
        assert_eq!(retry(3).next_attempt_unix_ms(), Some(42));
        assert!(retry(3).reason().contains("SIGKILL"));
        let down = RedisState::CannotStart {
            reason: "its port is held by another process: ...".into(),
        };
        assert_eq!(down.name(), "cannot_start");
        assert_eq!(RedisState::Starting { attempt: 2 }.restarts(), 2);
        assert_eq!(RedisState::Running { pid: 7 }.pid(), Some(7));
    }
}
