//! The Raft driver of a node process: ticks the pure `rcluster-raft` state machine every 10 ms
//! (`intervals.raft_tick_ms`), carries its messages over TCP on the peer port (length-prefixed
//! frames, each a JSON envelope sealed with the cluster secret: `rcluster_domain::peer_auth`),
//! persists its state in
//! the local Redis before any message goes out (`node:<id>:raft` with the whole state, plus
//! `cluster:term`, `cluster:vote`, `cluster:commit_index` and the list `node:<id>:log` for
//! people), feeds committed entries to the metadata state machine, and answers proposals from
//! the API. It only does I/O: what the entries mean is `rcluster_domain::meta`.
//!
//! Replicated metadata (`Meta`): the members and their addresses (`Members`, the whole list,
//! so a node that joins learns the founding members too), the cluster's N/W/R defaults
//! (`Quorum`), the ring's virtual nodes per node (`Vnodes`) and the chunk size of new uploads
//! (`ChunkSize`). Each applied change is pushed into this node's module
//! as a new topology epoch (the module then redistributes data) and into the node process's own
//! member list (heartbeats, API, file listing). Raft's voters follow the member list: a node is
//! added as a member first (so every node learns its address), then as a voter; it is removed
//! as a member first (its data moves away), then as a voter.
//!
//! Peers are not trusted blindly: a frame's length is checked against `peers.max_frame_bytes`
//! before anything is read, and its bytes are taken as they arrive (nothing allocated ahead); a
//! frame must carry a valid MAC, be addressed here, come from a member or voter (from anyone with
//! the secret while this node is not a member: a joining node knows no member until the leader
//! replicates the list) and be fresh; connections are bounded (strangers' before their first
//! valid frame, then per peer), sender tasks exist only for members, voters and (while joining) a
//! bounded number of senders; a message the Raft core refuses is counted, not fatal. Every
//! refusal is counted in `rcluster_peer_messages_refused_total{reason}`. The driver task is
//! supervised: if it ends or panics it is restarted from the stored state, logged and counted
//! (`rcluster_raft_driver_restarts_total`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcluster_domain::meta::{Change, Meta};
use rcluster_domain::peer_auth::{frame_len, Channel, Inbound, Refusal};
use rcluster_domain::rc::cluster::{self as rc_cluster, ClusterSet, MetaOp};
use rcluster_raft::{
    Command, Config, DecodeError, InitError, MembershipChange, Message, Persisted, ProposeError,
    RaftNode, Role,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

use crate::node::local::rc;
use crate::node::peer_auth::PeerAuth;
use crate::node::redis_error::RedisError;
use crate::node::view::Shared;

/// Entries kept in the log before a snapshot replaces them.
const SNAPSHOT_EVERY: u64 = 200;
/// Connections that have not delivered a valid frame yet (strangers among them), at once.
const MAX_PENDING_CONNECTIONS: usize = 16;
/// A new connection must deliver a valid first frame within this, or it is closed.
const FIRST_FRAME_WITHIN: Duration = Duration::from_secs(5);
/// Once its length is read, a frame's bytes must arrive within this.
const FRAME_WITHIN: Duration = Duration::from_secs(10);
/// Authenticated connections kept per peer: a newer one closes the oldest (a peer that
/// restarted, or whose old connection half-died).
const MAX_CONNECTIONS_PER_PEER: usize = 2;
/// Peers with connections to this node, and sender tasks of this node, at most.
const MAX_PEERS: usize = 64;
/// Pause before a driver that ended is started again.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// What the API shows about Raft on this node.
pub use crate::api::RaftStatus;

/// What the API asks the driver to commit.
pub enum Request {
    Change(Change),
    Voters(MembershipChange),
}

/// Why a proposal did not commit.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("raft is not running")]
    NotRunning,
    #[error("raft stopped")]
    Stopped,
    #[error("not committed within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Refused(#[from] ProposeError),
    #[error("leadership changed before the change committed; retry")]
    LeadershipChanged,
}

/// Why the driver did not start.
#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    #[error("cannot listen on {host}:{port} (peer_port of {id}, TCP): {source}")]
    Listen {
        host: String,
        port: u16,
        id: String,
        source: std::io::Error,
    },
    #[error("the local Redis did not answer to load the Raft state")]
    NoState,
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Init(#[from] InitError),
}

type Proposal = (Request, oneshot::Sender<Result<u64, RaftError>>);

/// The handle the API uses.
#[derive(Clone)]
pub struct RaftHandle {
    pub status: Arc<Mutex<RaftStatus>>,
    pub meta: Arc<Mutex<Meta>>,
    proposals: mpsc::Sender<Proposal>,
}

impl RaftHandle {
    pub fn status(&self) -> RaftStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn meta(&self) -> Meta {
        self.meta.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Proposes a change; resolves once it is committed and applied here, or with why not
    /// (not the leader: names the leader).
    pub async fn propose(&self, change: Change, timeout: Duration) -> Result<u64, RaftError> {
        self.request(Request::Change(change), timeout).await
    }

    /// Adds or removes a Raft voter; resolves once the change is committed.
    pub async fn change_voters(
        &self,
        change: MembershipChange,
        timeout: Duration,
    ) -> Result<u64, RaftError> {
        self.request(Request::Voters(change), timeout).await
    }

    async fn request(&self, request: Request, timeout: Duration) -> Result<u64, RaftError> {
        let (tx, rx) = oneshot::channel();
        self.proposals
            .send((request, tx))
            .await
            .map_err(|_| RaftError::NotRunning)?;
        tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| RaftError::Timeout(timeout))?
            .map_err(|_| RaftError::Stopped)?
    }
}

fn raft_key(id: &str) -> String {
    format!("node:{id}:raft")
}

/// Reads the stored state (or bootstraps from the config), bounded and retried while Redis
/// starts.
async fn load(shared: &Shared) -> Result<Persisted, RaftStartError> {
    let mut get = redis::cmd("GET");
    get.arg(raft_key(&shared.me.id));
    for _ in 0..100 {
        match shared
            .local
            .query::<Option<Vec<u8>>>(&get, Duration::from_secs(1))
            .await
        {
            Ok(Some(bytes)) => return Ok(Persisted::from_bytes(&bytes)?),
            // A founding member starts with the config's nodes as voters; a node that is not
            // in the config joins: it waits for a leader to replicate the configuration.
            Ok(None) if shared.config.node(&shared.me.id).is_some() => {
                return Ok(Persisted::bootstrap(
                    shared.config.nodes.iter().map(|n| n.id.clone()),
                ))
            }
            Ok(None) => return Ok(Persisted::joining()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Err(RaftStartError::NoState)
}

/// Writes the whole state (one blob for restarts, then the readable keys) and waits for it.
/// Through `RC.META`, which a Redis full of data still takes; not in MULTI, which a full Redis
/// refuses to queue anything into. Only the blob is read back, so it goes first and the readable
/// keys may lag it for a moment.
async fn persist(shared: &Shared, state: &Persisted) -> Result<(), RedisError> {
    let id = &shared.me.id;
    let hs = &state.hard_state;
    let meta = |op: MetaOp, key: &str, args: &[&[u8]]| {
        rc(&rc_cluster::Meta {
            op,
            key: key.as_bytes(),
            args: args.to_vec(),
        })
    };
    let set = |key: String, value: Vec<u8>| meta(MetaOp::Set, &key, &[&value]);
    let mut pipe = redis::pipe();
    for cmd in [
        set(raft_key(id), state.to_bytes()),
        set(
            "cluster:term".into(),
            hs.current_term.to_string().into_bytes(),
        ),
        set(
            "cluster:vote".into(),
            hs.voted_for.clone().unwrap_or_default().into_bytes(),
        ),
        set(
            "cluster:commit_index".into(),
            hs.commit.to_string().into_bytes(),
        ),
    ] {
        pipe.add_command(cmd).ignore();
    }
    let log = format!("node:{id}:log");
    pipe.add_command(meta(MetaOp::Del, &log, &[])).ignore();
    if !state.entries.is_empty() {
        let entries: Vec<String> = state
            .entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap_or_default())
            .collect();
        let entries: Vec<&[u8]> = entries.iter().map(|e| e.as_bytes()).collect();
        pipe.add_command(meta(MetaOp::Rpush, &log, &entries))
            .ignore();
    }
    shared.local.pipeline(&pipe, Duration::from_secs(2)).await
}

/// One outgoing connection per peer, fed by a bounded queue; messages are dropped when the peer
/// is unreachable or the queue is full (Raft retries by itself). The peer never writes on this
/// connection, so a read that returns means it closed: the connection is replaced before the
/// next message instead of losing that message into a dead socket (a peer that restarted).
fn spawn_sender(host: String, port: u16) -> mpsc::Sender<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
    tokio::spawn(async move {
        let mut conn: Option<(tokio::net::tcp::OwnedWriteHalf, Arc<AtomicBool>)> = None;
        while let Some(frame) = rx.recv().await {
            if conn
                .as_ref()
                .is_some_and(|(_, closed)| closed.load(Ordering::Relaxed))
            {
                conn = None;
            }
            if conn.is_none() {
                let connect = TcpStream::connect((host.as_str(), port));
                if let Ok(Ok(stream)) =
                    tokio::time::timeout(Duration::from_millis(200), connect).await
                {
                    let _ = stream.set_nodelay(true);
                    let (mut read, write) = stream.into_split();
                    let closed = Arc::new(AtomicBool::new(false));
                    let flag = closed.clone();
                    tokio::spawn(async move {
                        let mut byte = [0u8; 1];
                        let _ = read.read(&mut byte).await;
                        flag.store(true, Ordering::Relaxed);
                    });
                    conn = Some((write, closed));
                }
            }
            let Some((write, _)) = conn.as_mut() else {
                continue;
            };
            let len = u32::try_from(frame.len()).unwrap_or(u32::MAX).to_be_bytes();
            let sent = tokio::time::timeout(Duration::from_millis(500), async {
                write.write_all(&len).await?;
                write.write_all(&frame).await
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                conn = None;
            }
        }
    });
    tx
}

/// What goes on the wire: a Raft message and where its sender listens, so a node that joins
/// (and knows no member yet) can answer the leader.
#[derive(Serialize, Deserialize)]
struct Envelope {
    host: String,
    port: u16,
    message: Message,
}

/// Who may send Raft messages here: members and voters; anyone with the secret while this node
/// is not a member itself (it joins, and knows no member until the leader replicates the list;
/// or it left).
#[derive(Default)]
struct Allowed {
    ids: HashSet<String>,
    anyone: bool,
}

/// One authenticated connection: its number, and the sender whose drop closes it.
type Closer = (u64, oneshot::Sender<()>);

/// What the receiving side shares between connections.
struct Gate {
    shared: Arc<Shared>,
    auth: Arc<PeerAuth>,
    inbound: Mutex<Inbound>,
    allowed: Mutex<Allowed>,
    pending: Arc<Semaphore>,
    /// Authenticated connections per peer, oldest first; dropping the sender closes one.
    conns: Mutex<HashMap<String, Vec<Closer>>>,
    next_conn: AtomicU64,
}

impl Gate {
    fn new(shared: Arc<Shared>, auth: Arc<PeerAuth>) -> Gate {
        Gate {
            inbound: Mutex::new(auth.inbound(Channel::Raft)),
            shared,
            auth,
            allowed: Mutex::new(Allowed::default()),
            pending: Arc::new(Semaphore::new(MAX_PENDING_CONNECTIONS)),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
        }
    }

    fn refuse(&self, reason: Refusal, detail: impl std::fmt::Display) {
        self.auth
            .refused(&self.shared.metrics, Channel::Raft, reason, detail);
    }

    /// Follows the member list and the voters (see `Allowed`).
    fn set_allowed(&self, meta: &Meta, voters: &BTreeSet<String>) {
        let ids: HashSet<String> = meta
            .members
            .iter()
            .map(|m| m.id.clone())
            .chain(voters.iter().cloned())
            .collect();
        let anyone = !meta.is_member(&self.shared.me.id);
        self.inbound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id| anyone || ids.contains(id));
        *self.allowed.lock().unwrap_or_else(|p| p.into_inner()) = Allowed { ids, anyone };
    }

    /// Checks a frame (MAC, recipient, sender, freshness) and decodes its envelope.
    fn open(&self, frame: &[u8]) -> Result<Envelope, Refusal> {
        let now = crate::node::view::unix_ms();
        let allowed = self.allowed.lock().unwrap_or_else(|p| p.into_inner());
        let mut inbound = self.inbound.lock().unwrap_or_else(|p| p.into_inner());
        let opened = inbound.accept(frame, now, |id| allowed.anyone || allowed.ids.contains(id))?;
        let envelope: Envelope =
            serde_json::from_slice(opened.payload).map_err(|_| Refusal::Malformed)?;
        let m = &envelope.message;
        if m.from != opened.header.from || m.to != opened.header.to {
            return Err(Refusal::Malformed);
        }
        Ok(envelope)
    }

    /// Files an authenticated connection under its peer, closing that peer's oldest beyond the
    /// cap; `None` when too many peers have connections already.
    fn register(self: &Arc<Self>, peer: &str, close: oneshot::Sender<()>) -> Option<Registration> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if !conns.contains_key(peer) && conns.len() >= MAX_PEERS {
            return None;
        }
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let list = conns.entry(peer.to_string()).or_default();
        while list.len() >= MAX_CONNECTIONS_PER_PEER {
            // Dropping its sender tells the oldest connection to close.
            list.remove(0);
        }
        list.push((id, close));
        Some(Registration {
            gate: self.clone(),
            peer: peer.to_string(),
            id,
        })
    }
}

/// A connection's place in `Gate::conns`, given up when the connection ends.
struct Registration {
    gate: Arc<Gate>,
    peer: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut conns = self.gate.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = conns.get_mut(&self.peer) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                conns.remove(&self.peer);
            }
        }
    }
}

/// What reading one frame gave.
enum Frame {
    Bytes(Vec<u8>),
    Refused(Refusal),
    /// The connection closed, or the bytes did not come in time.
    Closed,
}

/// Reads one length-prefixed frame. The declared length is checked against the cap before
/// anything is read; the buffer then grows only as bytes arrive, so a length alone allocates
/// nothing.
async fn read_frame(socket: &mut TcpStream, max_bytes: u64) -> Frame {
    let mut len = [0u8; 4];
    if socket.read_exact(&mut len).await.is_err() {
        return Frame::Closed;
    }
    let len = match frame_len(u32::from_be_bytes(len), max_bytes) {
        Ok(len) => len,
        Err(reason) => return Frame::Refused(reason),
    };
    let mut buf = Vec::new();
    let mut body = (&mut *socket).take(len as u64);
    match tokio::time::timeout(FRAME_WITHIN, body.read_to_end(&mut buf)).await {
        Ok(Ok(n)) if n == len => Frame::Bytes(buf),
        _ => Frame::Closed,
    }
}

/// Accepts peers' connections (strangers' bounded by `MAX_PENDING_CONNECTIONS`) and serves each
/// on its own task.
async fn receive(listener: TcpListener, gate: Arc<Gate>, inbox: mpsc::Sender<Envelope>) {
    loop {
        let (socket, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = gate.pending.clone().try_acquire_owned() else {
            gate.refuse(
                Refusal::TooManyConnections,
                format!("{addr}: {MAX_PENDING_CONNECTIONS} connections wait for a first frame"),
            );
            continue;
        };
        tokio::spawn(connection(
            socket,
            addr,
            permit,
            gate.clone(),
            inbox.clone(),
        ));
    }
}

/// Serves one connection: every frame is checked before it reaches the driver; the first refused
/// frame closes the connection. Until its first valid frame the connection holds a pending
/// permit (and has `FIRST_FRAME_WITHIN` to deliver it); then it belongs to its peer.
async fn connection(
    mut socket: TcpStream,
    addr: SocketAddr,
    permit: OwnedSemaphorePermit,
    gate: Arc<Gate>,
    inbox: mpsc::Sender<Envelope>,
) {
    let max_bytes = gate.auth.max_frame_bytes;
    let (close, mut closed) = oneshot::channel::<()>();
    let mut close = Some(close);
    let mut permit = Some(permit);
    let mut registration: Option<(Registration, String)> = None;
    loop {
        let frame = if permit.is_some() {
            match tokio::time::timeout(FIRST_FRAME_WITHIN, read_frame(&mut socket, max_bytes)).await
            {
                Ok(frame) => frame,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                frame = read_frame(&mut socket, max_bytes) => frame,
                _ = &mut closed => return,
            }
        };
        let bytes = match frame {
            Frame::Bytes(bytes) => bytes,
            Frame::Closed => return,
            Frame::Refused(reason) => {
                gate.refuse(reason, format!("from {addr}; connection closed"));
                return;
            }
        };
        let envelope = match gate.open(&bytes) {
            Ok(envelope) => envelope,
            Err(reason) => {
                gate.refuse(reason, format!("from {addr}; connection closed"));
                return;
            }
        };
        let from = &envelope.message.from;
        match &registration {
            None => {
                let Some(reg) = close.take().and_then(|c| gate.register(from, c)) else {
                    gate.refuse(
                        Refusal::TooManyConnections,
                        format!("{addr}: {MAX_PEERS} peers have connections"),
                    );
                    return;
                };
                registration = Some((reg, from.clone()));
                permit = None;
            }
            Some((_, peer)) if peer != from => {
                gate.refuse(
                    Refusal::Malformed,
                    format!("{addr}: a connection of {peer} carried a message of {from}"),
                );
                return;
            }
            Some(_) => {}
        }
        if inbox.send(envelope).await.is_err() {
            return;
        }
    }
}

/// Pushes the applied metadata into the module as a new topology epoch.
async fn push_topology(shared: &Shared, meta: &Meta) {
    let Some(topology) = meta.topology(&shared.config) else {
        return;
    };
    let epoch = topology.epoch;
    let cmd = rc(&ClusterSet { topology });
    if let Err(e) = shared.local.query::<()>(&cmd, Duration::from_secs(2)).await {
        tracing::warn!(node = %shared.me.id, "could not push topology epoch {epoch}: {e}");
    }
}

/// Keeps `<data_dir>/<id>/left` in step with the member list: present while this node is not a
/// member (so `rcluster up` does not start it again), gone once it is (again).
fn mark_membership(shared: &Shared, meta: &Meta) {
    let marker = shared.dir.join("left");
    if meta.is_member(&shared.me.id) {
        let _ = std::fs::remove_file(&marker);
    } else if !marker.exists() {
        let text = format!(
            "{} left the cluster at raft index {}; `rcluster up` does not start it\n",
            shared.me.id, meta.applied
        );
        if let Err(e) = std::fs::write(&marker, text) {
            tracing::error!(node = %shared.me.id, "cannot write {}: {e}", marker.display());
        }
        tracing::info!(node = %shared.me.id, "no longer a member");
    }
}

fn random_seed() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    u64::from_le_bytes(b) ^ u64::from(std::process::id())
}

/// The receiving ends the driver reads; kept here so a restarted driver takes them over.
struct Inputs {
    inbox: mpsc::Receiver<Envelope>,
    proposals: mpsc::Receiver<Proposal>,
}

/// What every run of the driver works with.
struct Driver {
    shared: Arc<Shared>,
    auth: Arc<PeerAuth>,
    gate: Arc<Gate>,
    out: RaftHandle,
    inputs: tokio::sync::Mutex<Inputs>,
    tick: Duration,
}

/// Starts the driver: binds the TCP peer port, loads the state, and runs until shutdown, started
/// again whenever it ends or panics.
pub async fn spawn(
    shared: Arc<Shared>,
    auth: Arc<PeerAuth>,
    shutdown: watch::Receiver<bool>,
) -> Result<RaftHandle, RaftStartError> {
    let me = shared.me.clone();
    let listener = TcpListener::bind((me.listen(), me.peer_port))
        .await
        .map_err(|source| RaftStartError::Listen {
            host: me.listen().to_owned(),
            port: me.peer_port,
            id: me.id.clone(),
            source,
        })?;
    // The first start reports a bad stored state to the caller; restarts log it and retry.
    let first = start_node(&shared).await?;
    // Low-resource mode makes ticks longer (fewer wake-ups), not more of them.
    let tick = Duration::from_millis(shared.config.raft_tick_ms());
    let (inbox_tx, inbox) = mpsc::channel::<Envelope>(4096);
    let (proposals_tx, proposals) = mpsc::channel::<Proposal>(64);
    let handle = RaftHandle {
        status: Arc::new(Mutex::new(RaftStatus::default())),
        meta: Arc::new(Mutex::new(Meta::initial(&shared.config, &me.id))),
        proposals: proposals_tx,
    };
    let gate = Arc::new(Gate::new(shared.clone(), auth.clone()));
    tokio::spawn(receive(listener, gate.clone(), inbox_tx));
    let driver = Arc::new(Driver {
        shared: shared.clone(),
        auth,
        gate,
        out: handle.clone(),
        inputs: tokio::sync::Mutex::new(Inputs { inbox, proposals }),
        tick,
    });
    let mut first = Some(first);
    let stop = shutdown.clone();
    tokio::spawn(supervise(
        shutdown,
        RESTART_DELAY,
        move || drive(driver.clone(), first.take(), stop.clone()),
        move |why| {
            shared.metrics.raft_driver_restarts.inc();
            tracing::error!(
                node = %shared.me.id,
                "the raft driver stopped ({why}); restarting it from the stored state"
            );
        },
    ));
    Ok(handle)
}

/// Loads the stored state and builds the Raft node from it.
async fn start_node(shared: &Shared) -> Result<(Persisted, RaftNode), RaftStartError> {
    let state = load(shared).await?;
    let node = RaftNode::new(
        Config::new(shared.me.id.clone()),
        state.clone(),
        random_seed(),
    )?;
    Ok((state, node))
}

/// Runs a task made by `start` until shutdown; whenever one ends or panics before that,
/// `restarted` is told why and, after `delay`, another is started.
async fn supervise<F, Fut>(
    mut shutdown: watch::Receiver<bool>,
    delay: Duration,
    mut start: F,
    restarted: impl Fn(&str),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    loop {
        let outcome = tokio::spawn(start()).await;
        if *shutdown.borrow() {
            return;
        }
        let why = match outcome {
            Ok(Ok(())) => "it ended".to_string(),
            Ok(Err(e)) => e,
            Err(e) if e.is_panic() => {
                let panic = e.into_panic();
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown".into());
                format!("panic: {text}")
            }
            Err(e) => e.to_string(),
        };
        restarted(&why);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One run of the driver: from `started` (the first run) or from the stored state.
async fn drive(
    ctx: Arc<Driver>,
    started: Option<(Persisted, RaftNode)>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let shared = &ctx.shared;
    let me = shared.me.clone();
    let (mut state, mut node) = match started {
        Some(started) => started,
        None => start_node(shared).await.map_err(|e| e.to_string())?,
    };
    let mut inputs = ctx.inputs.lock().await;
    let Inputs { inbox, proposals } = &mut *inputs;
    // Senders are made on first use from the member list (a joining node learns it from the
    // leader; it answers the leader through the connection made from the leader's address).
    let mut peers: HashMap<String, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut meta = Meta::initial(&shared.config, &me.id);
    ctx.gate.set_allowed(&meta, &node.membership().voters);
    let mut allowed_for = (node.membership_index(), meta.applied);
    let mut waiting: HashMap<u64, oneshot::Sender<Result<u64, RaftError>>> = HashMap::new();
    let mut pushed = false;
    let mut ticker = tokio::time::interval(ctx.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => node.tick(),
            Some(e) = inbox.recv() => {
                let from = e.message.from.clone();
                if !peers.contains_key(&from) && peers.len() < MAX_PEERS {
                    // A member's address comes from the member list; the (authenticated)
                    // envelope's only for a sender the list does not name yet.
                    let (host, port) = meta
                        .members
                        .iter()
                        .find(|n| n.id == from)
                        .map_or((e.host, e.port), |n| (n.host.clone(), n.peer_port));
                    peers.insert(from.clone(), spawn_sender(host, port));
                }
                if let Err(why) = node.step(e.message) {
                    ctx.auth.refused(&shared.metrics, Channel::Raft, Refusal::RaftInvalid, why);
                }
            }
            Some((request, reply)) = proposals.recv() => {
                let proposed = match request {
                    Request::Change(change) => {
                        node.propose(serde_json::to_vec(&change).unwrap_or_default())
                    }
                    Request::Voters(change) => node.propose_membership(change),
                };
                match proposed {
                    Ok(index) => { waiting.insert(index, reply); }
                    Err(e) => { let _ = reply.send(Err(e.into())); }
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
        if !node.has_ready() {
            continue;
        }
        let mut ready = node.ready();
        // 1. Persist, retrying until the local Redis takes it: nothing is sent before.
        if let Some(update) = &ready.persist {
            state.apply(update);
            while let Err(e) = persist(shared, &state).await {
                tracing::warn!(node = %me.id, "raft state not persisted yet ({e}); retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
        // 2. Send.
        for m in std::mem::take(&mut ready.messages) {
            if !peers.contains_key(&m.to) && peers.len() < MAX_PEERS {
                // From the applied member list (a peer that wrote to us first already has
                // a sender, from the address in its envelope).
                if let Some(n) = meta.members.iter().find(|n| n.id == m.to) {
                    peers.insert(m.to.clone(), spawn_sender(n.host.clone(), n.peer_port));
                }
            }
            let to = m.to.clone();
            let envelope = Envelope {
                host: me.host.clone(),
                port: me.peer_port,
                message: m,
            };
            if let (Some(tx), Ok(bytes)) = (peers.get(&to), serde_json::to_vec(&envelope)) {
                let sealed = ctx.auth.seal(Channel::Raft, &to, &bytes);
                // An injected fault may lose or delay it.
                match crate::node::faults::outgoing(&to) {
                    None => {}
                    Some(delay) if delay.is_zero() => {
                        let _ = tx.try_send(sealed);
                    }
                    Some(delay) => {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = tx.try_send(sealed);
                        });
                    }
                }
            }
        }
        // 3. Apply.
        let mut changed = false;
        if let Some(snap) = &ready.apply_snapshot {
            meta.restore(snap.index, &snap.data);
            changed = true;
        }
        for e in &ready.committed {
            if let Command::App(data) = &e.command {
                match meta.apply(data) {
                    Ok(()) => meta.changed_at = e.index,
                    Err(why) => {
                        tracing::warn!(
                            "raft: skipping an entry that is not a metadata change: {why}"
                        )
                    }
                }
                changed = true;
            }
            meta.applied = e.index;
            if let Some(reply) = waiting.remove(&e.index) {
                let _ = reply.send(Ok(e.index));
            }
        }
        node.advance(&ready);
        // The first pass after a start pushes too: the module may hold the config's
        // topology, not the replicated one.
        if changed || !pushed {
            pushed = !meta.members.is_empty();
            *ctx.out.meta.lock().unwrap_or_else(|p| p.into_inner()) = meta.clone();
            if !meta.members.is_empty() {
                mark_membership(shared, &meta);
                shared.set_members(meta.members.clone());
                // A member on its way out stays reachable while it is still a voter.
                let voters = &node.membership().voters;
                peers.retain(|id, _| {
                    voters.contains(id) || meta.members.iter().any(|m| &m.id == id)
                });
            }
            push_topology(shared, &meta).await;
        }
        if allowed_for != (node.membership_index(), meta.applied) {
            allowed_for = (node.membership_index(), meta.applied);
            ctx.gate.set_allowed(&meta, &node.membership().voters);
        }
        if node.last_applied() > node.first_index() + SNAPSHOT_EVERY {
            let _ = node.snapshot(node.last_applied(), meta.snapshot());
        }
        // Proposals whose entries were lost to a new leader never commit here: fail them.
        if !node.is_leader() {
            for (_, reply) in waiting.drain() {
                let _ = reply.send(Err(RaftError::LeadershipChanged));
            }
        }
        let status = RaftStatus {
            role: match node.role() {
                Role::Leader => "leader",
                Role::Candidate => "candidate",
                Role::Follower => "follower",
            }
            .to_string(),
            term: node.term(),
            leader: node.leader_id().map(str::to_string),
            commit_index: node.commit_index(),
            applied: meta.applied,
            voters: node.membership().voters.iter().cloned().collect(),
        };
        shared.metrics.observe_raft(
            &status,
            (node.last_index() + 1).saturating_sub(node.first_index()),
        );
        *ctx.out.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_driver_that_panics_or_ends_is_started_again_until_shutdown() {
        let (stop, shutdown) = watch::channel(false);
        let runs = Arc::new(AtomicU64::new(0));
        let reasons = Arc::new(Mutex::new(Vec::<String>::new()));
        let (r, log) = (runs.clone(), reasons.clone());
        let waiting = shutdown.clone();
        let start = move || {
            let run = r.fetch_add(1, Ordering::SeqCst);
            let mut waiting = waiting.clone();
            async move {
                match run {
                    0 => panic!("a bug"),
                    1 => Err("redis down".to_string()),
                    2 => Ok(()),
                    _ => {
                        let _ = waiting.changed().await;
                        Ok(())
                    }
                }
            }
        };
        let supervisor = tokio::spawn(supervise(
            shutdown,
            Duration::from_millis(5),
            start,
            move |why| log.lock().unwrap().push(why.to_string()),
        ));
        while runs.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), supervisor)
            .await
            .expect("the supervisor stops at shutdown")
            .unwrap();
        assert_eq!(
            *reasons.lock().unwrap(),
            vec!["panic: a bug", "redis down", "it ended"]
        );
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }
}
