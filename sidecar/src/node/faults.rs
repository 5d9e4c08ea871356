//! The faults this node holds (its own copy of each, with its own deadline, kept in
//! `<data>/<id>/faults.json` so a restarted node process holds them on), what they do here, and
//! their end: every message this node process sends another node (heartbeats, Raft, forwarded
//! API requests) asks [`outgoing`] or [`round_trip`] whether it is lost or delayed; the faults
//! that touch this node are pushed into its module (`RC.FAULT SET`), which enforces them on its
//! own peer traffic and clock; a crash or pause aimed at this node kills or stops its Redis or
//! itself. Each fault ends by itself at its deadline (`expired`) or on request (`cleared`); each
//! change goes out on `cluster:events` and in `rcluster_faults_active{kind}`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rcluster_domain::fault::{Fault, Held, Link, Process, Spec, Table};
use rcluster_domain::rc::fault::FaultCmd;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use crate::node::local::rc;
use crate::node::view::{unix_ms, Shared};

/// The process's fault state (one node per process).
struct State {
    me: String,
    table: Table,
    /// Where the table is saved (set once the node starts).
    file: Option<PathBuf>,
    /// Redis pids this node stopped for a pause fault, by fault id.
    paused: Vec<(String, i32)>,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| {
    Mutex::new(State {
        me: String::new(),
        table: Table::default(),
        file: None,
        paused: Vec::new(),
    })
});
static CHANGED: LazyLock<Notify> = LazyLock::new(Notify::new);
static START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Ms on this process's monotonic clock.
fn now_ms() -> u64 {
    u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// What happens to a message this node sends `to`: `None` lost, else sent after the delay.
pub fn outgoing(to: &str) -> Option<Duration> {
    let st = state();
    delay_of(st.table.link(&st.me, to, now_ms(), &mut random))
}

/// What happens to a request this node sends `to` and its answer.
pub fn round_trip(to: &str) -> Option<Duration> {
    let st = state();
    delay_of(st.table.round_trip(&st.me, to, now_ms(), &mut random))
}

fn delay_of(link: Link) -> Option<Duration> {
    match link {
        Link::Drop => None,
        Link::Pass { delay_ms } => Some(Duration::from_millis(delay_ms)),
    }
}

/// The faults held now, each with the time it has left.
pub fn list() -> Vec<Held> {
    state().table.held(now_ms())
}

/// One fault as saved: its deadline on the wall clock (a restarted process has a new
/// monotonic clock).
#[derive(Serialize, Deserialize)]
struct Saved {
    #[serde(flatten)]
    fault: Fault,
    deadline_unix_ms: u64,
}

fn save(st: &State) {
    let Some(file) = &st.file else { return };
    let (now, wall) = (now_ms(), unix_ms());
    let saved: Vec<Saved> = st
        .table
        .held(now)
        .into_iter()
        .map(|h| Saved {
            deadline_unix_ms: wall.saturating_add(h.expires_in_ms),
            fault: h.fault,
        })
        .collect();
    let text = serde_json::to_vec(&saved).unwrap_or_default();
    if let Err(e) = std::fs::write(file, text) {
        tracing::warn!("cannot save the faults to {}: {e}", file.display());
    }
}

/// The table file of a node's data folder.
fn table_file(dir: &std::path::Path) -> PathBuf {
    dir.join("faults.json")
}

/// Takes this node's id and loads the faults it held before a restart (those not yet over).
pub fn init(me: &str, dir: &std::path::Path) {
    let file = table_file(dir);
    let saved: Vec<Saved> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let (now, wall) = (now_ms(), unix_ms());
    let mut st = state();
    st.me = me.to_string();
    for s in saved {
        if s.deadline_unix_ms > wall {
            st.table.insert(s.fault, s.deadline_unix_ms - wall, now);
        }
    }
    st.file = Some(file);
    save(&st);
}

/// A `fault` event on `cluster:events`.
#[derive(Serialize)]
struct FaultEvent<'a> {
    #[serde(rename = "type")]
    event: &'static str,
    action: &'static str,
    id: &'a str,
    kind: &'static str,
    node: &'a str,
    at_ms: u64,
}

async fn tell(shared: &Shared, action: &'static str, fault: &Fault) {
    tracing::info!(
        node = %shared.me.id,
        "fault {} ({}) {action}",
        fault.id,
        fault.spec.kind()
    );
    let event = FaultEvent {
        event: "fault",
        action,
        id: &fault.id,
        kind: fault.spec.kind(),
        node: &shared.me.id,
        at_ms: unix_ms(),
    };
    if let Ok(json) = serde_json::to_string(&event) {
        crate::node::report::publish(shared, json, Duration::from_secs(1)).await;
    }
}

/// Holds `held` here (replacing a fault with its id); starts what it does to this node.
/// False when this node already held it.
pub async fn apply(shared: &Arc<Shared>, held: Held) -> bool {
    let fault = held.fault.clone();
    let new = {
        let mut st = state();
        let new = st.table.insert(held.fault, held.expires_in_ms, now_ms());
        save(&st);
        new
    };
    // The module enforces it before the request that injected it is answered.
    push(shared).await;
    if new {
        tell(shared, "injected", &fault).await;
        begin(shared, &fault, Duration::from_millis(held.expires_in_ms)).await;
    }
    CHANGED.notify_one();
    new
}

/// Ends the fault `id` (every fault when `None`) here; returns those it ended.
pub async fn clear(shared: &Arc<Shared>, id: Option<&str>) -> Vec<Fault> {
    let gone = {
        let mut st = state();
        let gone = match id {
            Some(id) => st.table.remove(id).into_iter().collect(),
            None => st.table.clear(),
        };
        save(&st);
        gone
    };
    push(shared).await;
    for f in &gone {
        // Ended first: the event then goes out through a Redis the fault crashed or paused.
        end(shared, f).await;
        tell(shared, "cleared", f).await;
    }
    CHANGED.notify_one();
    gone
}

/// Whether this node is a target of a crash or pause, and on which process.
fn aimed_here(spec: &Spec, me: &str) -> Option<(bool, Process)> {
    match spec {
        Spec::Crash { targets, process } if targets.iter().any(|t| t == me) => {
            Some((true, *process))
        }
        Spec::Pause { targets, process } if targets.iter().any(|t| t == me) => {
            Some((false, *process))
        }
        _ => None,
    }
}

/// How long a crashed or paused node process still answers the request that told it (so its
/// answer goes out first).
const GRACE: Duration = Duration::from_millis(300);

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) on our Redis or ourselves with a valid signal.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Starts a crash or pause aimed at this node.
async fn begin(shared: &Arc<Shared>, fault: &Fault, left: Duration) {
    let Some((crash, process)) = aimed_here(&fault.spec, &shared.me.id) else {
        return;
    };
    let redis_pid = shared
        .redis
        .state
        .borrow()
        .pid()
        .and_then(|p| i32::try_from(p).ok());
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    if crash {
        if process.redis() {
            match shared.redis.crash(left).await {
                Ok(what) => tracing::warn!(node = %shared.me.id, "fault {}: {what}", fault.id),
                Err(e) => tracing::warn!(node = %shared.me.id, "fault {}: {e}", fault.id),
            }
        }
        if process.node() {
            // `rcluster up` starts this node again once the marker's time has come.
            let until = unix_ms().saturating_add(u64::try_from(left.as_millis()).unwrap_or(0));
            let marker = crate::paths::crash_marker(&shared.dir);
            if let Err(e) = std::fs::write(&marker, until.to_string()) {
                tracing::warn!("cannot write {}: {e}", marker.display());
            }
            tracing::warn!(node = %shared.me.id, "fault {}: killing this node process", fault.id);
            tokio::spawn(async move {
                tokio::time::sleep(GRACE).await;
                signal(me, libc::SIGKILL);
            });
        }
        return;
    }
    if process.redis() {
        if let Some(pid) = redis_pid {
            signal(pid, libc::SIGSTOP);
            state().paused.push((fault.id.clone(), pid));
        }
    }
    if process.node() {
        // Nothing in a stopped process runs: a small helper continues it (and its Redis).
        let mut pids = vec![me.to_string()];
        if process.redis() {
            pids.extend(redis_pid.map(|p| p.to_string()));
        }
        let script = format!(
            "sleep {:.3}; kill -CONT {}",
            left.as_secs_f64(),
            pids.join(" ")
        );
        let mut helper = tokio::process::Command::new("sh");
        helper.args(["-c", &script]);
        // SAFETY: only prctl, async-signal-safe, runs in the child: the helper dies with this
        // process (not when this process is merely stopped).
        unsafe {
            helper.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match helper.spawn() {
            Ok(mut child) => {
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
                tracing::warn!(node = %shared.me.id, "fault {}: pausing this node process", fault.id);
                tokio::spawn(async move {
                    tokio::time::sleep(GRACE).await;
                    signal(me, libc::SIGSTOP);
                });
            }
            Err(e) => tracing::warn!(
                "fault {}: cannot start the helper that ends the pause, so no pause: {e}",
                fault.id
            ),
        }
    }
}

/// Ends what a crash or pause did to this node.
async fn end(shared: &Arc<Shared>, fault: &Fault) {
    let Some((crash, process)) = aimed_here(&fault.spec, &shared.me.id) else {
        return;
    };
    if crash && process.redis() {
        if let Err(e) = shared.redis.control(crate::api::NodeAction::Start).await {
            tracing::warn!(node = %shared.me.id, "fault {} over, but Redis did not start: {e}", fault.id);
        }
    }
    if !crash {
        let pids: Vec<i32> = {
            let mut st = state();
            let (mine, rest) = st.paused.drain(..).partition(|(id, _)| *id == fault.id);
            st.paused = rest;
            mine.into_iter().map(|(_, pid)| pid).collect::<Vec<_>>()
        };
        for pid in pids {
            signal(pid, libc::SIGCONT);
        }
    }
}

/// Pushes the faults that touch this node into its module (also after its Redis restarted).
async fn push(shared: &Shared) {
    let members: Vec<String> = shared.members().into_iter().map(|m| m.id).collect();
    let held: Vec<Held> = list()
        .into_iter()
        .filter(|h| h.fault.spec.concerns(&shared.me.id, &members))
        .collect();
    let cmd = rc(&FaultCmd::Set(held));
    let _ = shared
        .local
        .query::<i64>(&cmd, Duration::from_secs(1))
        .await;
}

/// How often the module's copy is refreshed at the latest (a restarted Redis gets it again).
const PUSH_EVERY: Duration = Duration::from_secs(1);

/// Ends faults at their deadlines, keeps the module's copy and the metric current.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let expired = {
            let mut st = state();
            let gone = st.table.expire(now_ms());
            if !gone.is_empty() {
                save(&st);
            }
            gone
        };
        for f in &expired {
            end(&shared, f).await;
            tell(&shared, "expired", f).await;
        }
        push(&shared).await;
        let (counts, next) = {
            let st = state();
            (st.table.count_by_kind(now_ms()), st.table.next_deadline())
        };
        for (kind, n) in counts {
            shared
                .metrics
                .faults_active
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let wait = next.map_or(PUSH_EVERY, |d| {
            Duration::from_millis(d.saturating_sub(now_ms())).min(PUSH_EVERY)
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = CHANGED.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crashes_and_pauses_are_aimed_at_their_targets_only() {
        let crash = Spec::Crash {
            targets: vec!["n2".into()],
            process: Process::Both,
        };
        assert_eq!(aimed_here(&crash, "n2"), Some((true, Process::Both)));
        assert_eq!(aimed_here(&crash, "n1"), None);
        let pause = Spec::Pause {
            targets: vec!["n1".into(), "n3".into()],
            process: Process::Redis,
        };
        assert_eq!(aimed_here(&pause, "n3"), Some((false, Process::Redis)));
        let skew = Spec::Skew {
            targets: vec!["n1".into()],
            ms: 5,
        };
        assert_eq!(aimed_here(&skew, "n1"), None);
    }

    #[test]
    fn a_saved_fault_keeps_its_kind_and_deadline() {
        let saved = Saved {
            fault: Fault {
                id: "f-1".into(),
                spec: Spec::Cut {
                    from: vec!["n1".into()],
                    to: vec!["n2".into()],
                },
                ttl_ms: 10,
            },
            deadline_unix_ms: 42,
        };
        let back: Saved = serde_json::from_slice(&serde_json::to_vec(&saved).unwrap()).unwrap();
        assert_eq!(back.fault, saved.fault);
        assert_eq!(back.deadline_unix_ms, 42);
    }
}
