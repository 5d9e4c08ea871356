//! The fast path of `RC.SET`, `RC.DEL` and `RC.GET`, all on Redis's main thread: the replica
//! command goes into a buffer per peer connection, the buffers are written once per event-loop
//! turn (before Redis sleeps), the replies are read when Redis's event loop reports the socket
//! readable, and the client is answered at the W-th acknowledgement or R-th answer. No thread is
//! woken and no task spawned for a request, which is what the coordinator runtime cost on every
//! one.
//!
//! Only the plain case takes it: every other preference node has a live connection here and is
//! not judged down. Anything else — a connection that breaks, an error reply, the deadline
//! passing — hands the request, with the acknowledgements or answers so far and the blocked
//! client, to the coordinator runtime's [`WriteJob`] or [`ReadJob`], which retries, picks
//! substitutes, keeps hints, repairs and answers `NOQUORUM` exactly as before; a read whose
//! answers disagree hands its read repair to the runtime. Connections are opened (and
//! authenticated) on the runtime and handed to the main thread; one that made a request time out
//! is closed, so the next requests go the robust way until a new one is up.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rcluster_domain::topology::INTERNAL_USER;
use redis_module::{raw, Context};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use rcluster_domain::rc::replica::{ack_of, Ack, ReplicaGet};
use rcluster_domain::rc::Request;
use rcluster_domain::round::{Asked, ReadAnswer, WriteAnswer};

use crate::coord::block::Blocked;
use crate::coord::peers::{self, Peer, Pushed};
use crate::coord::read::{repair, ReadJob};
use crate::coord::resp::{self, Reply};
use crate::coord::wire::{held_reply, V};
use crate::coord::write::WriteJob;
use crate::settings;
use crate::stats;
use crate::trace::Tracer;
use rcluster_domain::trace::What;

/// Off with `CONFIG SET rcluster.fast-path no` (or `loadmodule ... fast-path no`): every
/// request then takes the runtime's path (as every request does while an injected link fault
/// is held: `crate::faults`).
pub static ENABLED: AtomicBool = AtomicBool::new(true);
/// How often pending writes are checked against their deadlines.
const TICK: Duration = Duration::from_millis(5);
/// Time to connect and authenticate a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed or closed connection before the next attempt.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);
/// Replies read per readable event, at most (then the event loop serves others).
const READ_BUDGET: usize = 4 << 20;

static STARTED: AtomicU64 = AtomicU64::new(0);
static HANDED_OVER: AtomicU64 = AtomicU64::new(0);
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

static READS: AtomicU64 = AtomicU64::new(0);
static READS_HANDED_OVER: AtomicU64 = AtomicU64::new(0);

/// `INFO rcluster` fields: writes and reads that took the fast path, those it handed to the
/// runtime's path, and the fast connections open now.
pub fn info_fields() -> [(&'static str, u64); 5] {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    [
        ("fast_writes", load(&STARTED)),
        ("fast_writes_handed_over", load(&HANDED_OVER)),
        ("fast_reads", load(&READS)),
        ("fast_reads_handed_over", load(&READS_HANDED_OVER)),
        ("fast_connections", load(&CONNECTIONS)),
    ]
}

struct Conn {
    peer: String,
    addr: (String, u16),
    stream: std::net::TcpStream,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    /// Job ids in the order their writes were sent: replies come back in that order.
    waiters: VecDeque<u64>,
    watching_writable: bool,
}

struct Pending {
    kind: Kind,
    blocked: Option<Blocked>,
    /// Peers whose reply has not come yet.
    waiting: Vec<String>,
    deadline: Instant,
}

/// The request, whose quorum round (inside the job) takes the acknowledgements or answers.
enum Kind {
    Write { job: WriteJob },
    Read { job: ReadJob },
}

impl Kind {
    /// The replicas asked.
    fn replicas(&self) -> &[std::sync::Arc<Peer>] {
        match self {
            Kind::Write { job } => &job.replicas,
            Kind::Read { job } => &job.replicas,
        }
    }

    /// The request's trace.
    fn trace(&self) -> &Tracer {
        match self {
            Kind::Write { job } => &job.trace,
            Kind::Read { job } => &job.trace,
        }
    }

    /// When the request began and how long it may take.
    fn started(&self) -> (Instant, u64) {
        match self {
            Kind::Write { job } => (job.started, job.timeout_ms),
            Kind::Read { job } => (job.started, job.timeout_ms),
        }
    }

    /// When the request's time is up.
    fn deadline(&self) -> Instant {
        let (started, ms) = self.started();
        started + Duration::from_millis(ms)
    }
}

#[derive(Default)]
struct State {
    conns: HashMap<String, Conn>,
    by_fd: HashMap<c_int, String>,
    /// Peers with a connection attempt under way or paused: (attempt running, next allowed).
    connecting: HashMap<String, (bool, Instant)>,
    jobs: HashMap<u64, Pending>,
    next_id: u64,
    dirty: Vec<String>,
    ticking: bool,
    subscribed: bool,
}

/// Touched only on Redis's main thread (commands, event-loop, timer and one-shot callbacks); the
/// lock is never contended, it only makes that safe to state.
static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(State::default))
}

/// A write given back for the runtime's path, with its client.
pub type Declined = Box<(WriteJob, Blocked)>;
/// A read given back for the runtime's path, with its client.
pub type DeclinedRead = Box<(ReadJob, Blocked)>;

/// Whether every one of `peers` has a live connection here and is not judged down; asks for the
/// missing connections.
fn ready(st: &mut State, peers: &[std::sync::Arc<Peer>]) -> bool {
    let mut ready = !peers.is_empty();
    for p in peers {
        let (host, port) = p.addr();
        let live = matches!(st.conns.get(&p.id), Some(c) if c.addr.0 == host && c.addr.1 == port);
        let judged = peers::pushed_liveness(&p.id).is_some_and(|s| s != Pushed::Alive);
        if !live {
            connect(st, &p.id, host, port);
        }
        ready &= live && !judged;
    }
    ready
}

/// Queues `packed` for each of `peers` and records the request.
fn enqueue(ctx: &Context, st: &mut State, packed: &[u8], kind: Kind, blocked: Blocked) {
    let id = st.next_id;
    st.next_id += 1;
    let waiting: Vec<String> = kind.replicas().iter().map(|p| p.id.clone()).collect();
    for peer in &waiting {
        kind.trace().note(peer, || What::Asked { hint_for: None });
        if let Some(c) = st.conns.get_mut(peer) {
            if c.out.is_empty() {
                st.dirty.push(peer.clone());
            }
            c.out.extend_from_slice(packed);
            c.waiters.push_back(id);
        }
    }
    let deadline = kind.deadline();
    st.jobs.insert(
        id,
        Pending {
            kind,
            blocked: Some(blocked),
            waiting,
            deadline,
        },
    );
    if !st.subscribed {
        st.subscribed = subscribe(ctx);
    }
    if !st.ticking {
        st.ticking = true;
        ctx.create_timer(TICK, tick, ());
    }
}

/// Starts a write on the fast path, or gives it back (with its client) for the runtime's path.
pub fn try_start(ctx: &Context, job: WriteJob, blocked: Blocked) -> Result<(), Declined> {
    if !ENABLED.load(Ordering::Relaxed) || crate::faults::on_links() {
        return Err(Box::new((job, blocked)));
    }
    with_state(|st| {
        if !ready(st, &job.replicas) {
            return Err(Box::new((job, blocked)));
        }
        let packed = match job.payload.replica_write() {
            Some(write) => {
                let mut packed = Vec::new();
                write.write_resp(&mut packed);
                packed
            }
            None => job.payload.replica_cmd().get_packed_command(),
        };
        enqueue(ctx, st, &packed, Kind::Write { job }, blocked);
        STARTED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
}

/// Starts a read on the fast path, or gives it back (with its client) for the runtime's path.
pub fn try_start_read(ctx: &Context, job: ReadJob, blocked: Blocked) -> Result<(), DeclinedRead> {
    if !ENABLED.load(Ordering::Relaxed) || crate::faults::on_links() {
        return Err(Box::new((job, blocked)));
    }
    with_state(|st| {
        if !ready(st, &job.replicas) {
            return Err(Box::new((job, blocked)));
        }
        let mut packed = Vec::new();
        ReplicaGet { key: &job.key }.write_resp(&mut packed);
        enqueue(ctx, st, &packed, Kind::Read { job }, blocked);
        READS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
}

/// Asks the runtime for a connection to `peer` unless one is being opened or was just lost.
fn connect(st: &mut State, peer: &str, host: &str, port: u16) {
    let now = Instant::now();
    if let Some((running, next)) = st.connecting.get(peer) {
        if *running || now < *next {
            return;
        }
    }
    st.connecting
        .insert(peer.to_string(), (true, now + RECONNECT_AFTER));
    let (peer, host) = (peer.to_string(), host.to_string());
    crate::coord::spawn(async move {
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, open(&host, port)).await;
        let stream = match opened {
            Ok(Ok(s)) => Some(s),
            _ => None,
        };
        let handoff = Box::new(Handoff {
            peer,
            addr: (host, port),
            stream,
        });
        // SAFETY: the API table is filled at load; the one-shot runs `install` on the main
        // thread, which takes the box back.
        if let Some(add) = unsafe { raw::RedisModule_EventLoopAddOneShot } {
            unsafe {
                add(Some(install), Box::into_raw(handoff).cast());
            }
        }
    });
}

/// Opens and authenticates a connection to a peer's Redis (as the internal user).
async fn open(host: &str, port: u16) -> std::io::Result<std::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    let auth = redis::cmd("AUTH")
        .arg(INTERNAL_USER)
        .arg(settings::internal_password())
        .get_packed_command();
    stream.get_mut().write_all(&auth).await?;
    let mut answer = String::new();
    stream.read_line(&mut answer).await?;
    if answer != "+OK\r\n" {
        return Err(std::io::Error::other(format!(
            "AUTH answered {}",
            answer.trim()
        )));
    }
    let std = stream.into_inner().into_std()?;
    std.set_nonblocking(true)?;
    Ok(std)
}

struct Handoff {
    peer: String,
    addr: (String, u16),
    stream: Option<std::net::TcpStream>,
}

unsafe extern "C" fn install(data: *mut c_void) {
    // SAFETY: `data` is the Box<Handoff> leaked in `connect`, handed over exactly once.
    let handoff = unsafe { Box::from_raw(data.cast::<Handoff>()) };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        with_state(|st| {
            st.connecting.insert(
                handoff.peer.clone(),
                (false, Instant::now() + RECONNECT_AFTER),
            );
            let Some(stream) = handoff.stream else { return };
            if st.conns.contains_key(&handoff.peer) {
                return;
            }
            let fd = stream.as_raw_fd();
            // SAFETY: a valid open socket, watched until `close` removes it.
            let added = unsafe {
                raw::RedisModule_EventLoopAdd.map_or(raw::Status::Err as c_int, |add| {
                    add(
                        fd,
                        raw::REDISMODULE_EVENTLOOP_READABLE as c_int,
                        Some(on_event),
                        std::ptr::null_mut(),
                    )
                })
            };
            if added != raw::Status::Ok as c_int {
                return;
            }
            st.by_fd.insert(fd, handoff.peer.clone());
            CONNECTIONS.fetch_add(1, Ordering::Relaxed);
            st.conns.insert(
                handoff.peer.clone(),
                Conn {
                    peer: handoff.peer,
                    addr: handoff.addr,
                    stream,
                    out: Vec::new(),
                    inbuf: Vec::new(),
                    waiters: VecDeque::new(),
                    watching_writable: false,
                },
            );
        });
    }));
}

fn subscribe(ctx: &Context) -> bool {
    let event = raw::RedisModuleEvent {
        id: raw::REDISMODULE_EVENT_EVENTLOOP,
        dataver: 1,
    };
    raw::subscribe_to_server_event(ctx.ctx, event, Some(on_loop)) == raw::Status::Ok
}

/// Before Redis sleeps: write out what this turn's commands queued.
unsafe extern "C" fn on_loop(
    _ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    if subevent != raw::REDISMODULE_SUBEVENT_EVENTLOOP_BEFORE_SLEEP {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        with_state(|st| {
            for peer in std::mem::take(&mut st.dirty) {
                flush(st, &peer);
            }
        })
    }));
}

fn watch_writable(c: &mut Conn, on: bool) {
    if c.watching_writable == on {
        return;
    }
    let fd = c.stream.as_raw_fd();
    let mask = raw::REDISMODULE_EVENTLOOP_WRITABLE as c_int;
    // SAFETY: the fd is open and registered with the event loop.
    unsafe {
        if on {
            if let Some(add) = raw::RedisModule_EventLoopAdd {
                add(fd, mask, Some(on_event), std::ptr::null_mut());
            }
        } else if let Some(del) = raw::RedisModule_EventLoopDel {
            del(fd, mask);
        }
    }
    c.watching_writable = on;
}

/// Writes as much of `peer`'s buffer as the socket takes; the rest waits for writability.
fn flush(st: &mut State, peer: &str) {
    let Some(c) = st.conns.get_mut(peer) else {
        return;
    };
    let mut sent = 0;
    let failure = loop {
        if sent == c.out.len() {
            break None;
        }
        match c.stream.write(&c.out[sent..]) {
            Ok(0) => break Some("connection closed".to_string()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break None,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Some(e.to_string()),
        }
    };
    c.out.drain(..sent);
    let pending = !c.out.is_empty();
    watch_writable(c, pending && failure.is_none());
    if let Some(why) = failure {
        close(st, peer, &why);
    }
}

unsafe extern "C" fn on_event(fd: c_int, _data: *mut c_void, mask: c_int) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        with_state(|st| {
            let Some(peer) = st.by_fd.get(&fd).cloned() else {
                return;
            };
            if mask & raw::REDISMODULE_EVENTLOOP_WRITABLE as c_int != 0 {
                flush(st, &peer);
            }
            if mask & raw::REDISMODULE_EVENTLOOP_READABLE as c_int != 0 {
                read(st, &peer);
            }
        })
    }));
    if outcome.is_err() {
        stats::panic_caught();
    }
}

/// Reads what arrived and settles the writes it answers.
fn read(st: &mut State, peer: &str) {
    let mut replies = Vec::new();
    let failure = {
        let Some(c) = st.conns.get_mut(peer) else {
            return;
        };
        let mut buf = [0u8; 64 << 10];
        let mut taken = 0;
        let failure = loop {
            if taken >= READ_BUDGET {
                break None;
            }
            match c.stream.read(&mut buf) {
                Ok(0) => break Some("connection closed".to_string()),
                Ok(n) => {
                    c.inbuf.extend_from_slice(&buf[..n]);
                    taken += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e.to_string()),
            }
        };
        let mut used = 0;
        let parse_failure = loop {
            match resp::parse(&c.inbuf[used..]) {
                Ok(Some((reply, n))) => {
                    used += n;
                    match c.waiters.pop_front() {
                        Some(id) => replies.push((id, reply)),
                        None => break Some("a reply that no write asked for".to_string()),
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        c.inbuf.drain(..used);
        parse_failure.or(failure)
    };
    for (id, reply) in replies {
        settle(st, id, peer, reply);
    }
    if let Some(why) = failure {
        close(st, peer, &why);
    }
}

/// One replica's reply to request `id`: an acknowledgement or an answer goes to the request's
/// round, anything else hands the request to the runtime's path.
fn settle(st: &mut State, id: u64, peer: &str, reply: Reply) {
    let Some(p) = st.jobs.get_mut(&id) else {
        return; // Already handed over.
    };
    p.waiting.retain(|w| w != peer);
    stats::replica_rtt(peer, p.kind.started().0.elapsed());
    let settled = match (&mut p.kind, reply) {
        (Kind::Write { job }, Reply::Value(v)) if ack_of(V(&v), job.version()) == Ack::Yes => {
            job.trace.note(peer, || What::Ack { hint_for: None });
            let decision = job.round.feed(Asked::replica(peer), WriteAnswer::Ack);
            // Only acknowledgements are fed here, so this is never a re-issue (which follows a
            // newer version, a reply the runtime's path takes): should it be one, it goes there.
            if let Some(held) = job.answer(decision, &mut p.blocked) {
                if let Some(Pending {
                    kind: Kind::Write { job },
                    blocked,
                    ..
                }) = st.jobs.remove(&id)
                {
                    crate::coord::spawn(job.reissue(held, blocked));
                }
                return;
            }
            true
        }
        (Kind::Read { job }, Reply::Value(v)) => match held_reply(&v) {
            Ok(held) => {
                if let Some(from) = job.replicas.iter().find(|r| r.id == peer) {
                    job.trace.note(peer, || crate::trace::answer(&held));
                    let decision = job.round.feed(ReadAnswer::Held(from.clone(), held));
                    job.answer(decision, &mut p.blocked);
                }
                true
            }
            Err(_) => false,
        },
        _ => false,
    };
    if !settled {
        hand_over(st, id, Some(peer));
        return;
    }
    if !p.waiting.is_empty() {
        return;
    }
    if p.blocked.is_some() {
        // Everyone answered and the client still waits (not expected: the round decides at the
        // last answer): the runtime's path gives it its answer.
        hand_over(st, id, None);
        return;
    }
    if let Some(Pending {
        kind: Kind::Read { job },
        ..
    }) = st.jobs.remove(&id)
    {
        // Every replica answered: the stale or missing ones are repaired on the runtime.
        if job.round.repairs().is_some() {
            crate::coord::spawn(async move {
                repair(&job.key, &job.round, job.timeout_ms, &job.trace).await;
            });
        }
    }
}

/// Gives request `id` to the runtime's path for the replicas that have not answered it (and
/// `failed`, which just did not answer well), with what it has so far and the client if it
/// still waits.
fn hand_over(st: &mut State, id: u64, failed: Option<&str>) {
    let Some(mut p) = st.jobs.remove(&id) else {
        return;
    };
    if let Some(f) = failed {
        p.waiting.push(f.to_string());
    }
    p.kind.trace().mine(|| What::Handover);
    if p.blocked.is_some() {
        p.kind.trace().path("runtime");
    }
    let left = p.deadline.saturating_duration_since(Instant::now());
    let left = Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
    match p.kind {
        Kind::Write { mut job } => {
            HANDED_OVER.fetch_add(1, Ordering::Relaxed);
            // The round carries the acknowledgements so far; the calls it still counts as under
            // way are those to the replicas asked again there.
            job.replicas.retain(|r| p.waiting.contains(&r.id));
            job.calls_within_ms = left;
            crate::coord::spawn(job.run(p.blocked));
        }
        Kind::Read { mut job } => {
            READS_HANDED_OVER.fetch_add(1, Ordering::Relaxed);
            job.replicas.retain(|r| p.waiting.contains(&r.id));
            job.calls_within_ms = left;
            crate::coord::spawn(job.run(p.blocked));
        }
    }
}

/// Closes `peer`'s connection; the writes waiting on it go to the runtime's path.
fn close(st: &mut State, peer: &str, why: &str) {
    let Some(mut c) = st.conns.remove(peer) else {
        return;
    };
    eprintln!("rcluster: fast-path connection to {peer} closed ({why}); its requests go the runtime's way");
    let fd = c.stream.as_raw_fd();
    st.by_fd.remove(&fd);
    CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    // SAFETY: the fd is still open (closed when `c` drops below) and was registered.
    unsafe {
        if let Some(del) = raw::RedisModule_EventLoopDel {
            del(
                fd,
                (raw::REDISMODULE_EVENTLOOP_READABLE | raw::REDISMODULE_EVENTLOOP_WRITABLE)
                    as c_int,
            );
        }
    }
    st.connecting
        .insert(c.peer.clone(), (false, Instant::now() + RECONNECT_AFTER));
    st.dirty.retain(|d| d != peer);
    for id in std::mem::take(&mut c.waiters) {
        hand_over(st, id, None);
    }
}

/// Every few ms while writes are pending: writes past their deadline go to the runtime's path
/// (which reports the replicas that did not answer as timed out and keeps hints for them), and
/// the connections they waited on are closed.
fn tick(ctx: &Context, _: ()) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        with_state(|st| {
            let now = Instant::now();
            let late: Vec<u64> = st
                .jobs
                .iter()
                .filter(|(_, p)| p.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            let mut stalled: Vec<String> = Vec::new();
            for id in late {
                if let Some(p) = st.jobs.get(&id) {
                    stalled.extend(p.waiting.iter().cloned());
                    (p.waiting.iter()).for_each(|w| p.kind.trace().note(w, || What::Timeout));
                }
                hand_over(st, id, None);
            }
            stalled.sort();
            stalled.dedup();
            for peer in stalled {
                close(st, &peer, "no reply before a write's deadline");
            }
            st.ticking = !st.jobs.is_empty();
            if st.ticking {
                ctx.create_timer(TICK, tick, ());
            }
        })
    }));
}
