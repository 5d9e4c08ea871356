//! The Raft driver of a node process: ticks the pure `rcluster-raft` state machine every 10 ms,
//! carries its messages over TCP on the peer port (length-prefixed JSON), persists its state in
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcluster_domain::meta::{Change, Meta};
use rcluster_domain::rc::cluster::{self as rc_cluster, ClusterSet, MetaOp};
use rcluster_raft::{
    Command, Config, DecodeError, InitError, MembershipChange, Message, Persisted, ProposeError,
    RaftNode, Role,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::node::local::rc;
use crate::node::redis_error::RedisError;
use crate::node::view::Shared;

/// Length of one Raft tick (times `raft_tick_scale` in low-resource mode).
pub const TICK: Duration = Duration::from_millis(10);
/// Largest message accepted on the wire.
const MAX_FRAME: u32 = 16 << 20;
/// Entries kept in the log before a snapshot replaces them.
const SNAPSHOT_EVERY: u64 = 200;

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

/// Accepts peers' connections and forwards their messages to the driver.
async fn receive(listener: TcpListener, inbox: mpsc::Sender<Envelope>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let inbox = inbox.clone();
        tokio::spawn(async move {
            loop {
                let mut len = [0u8; 4];
                if socket.read_exact(&mut len).await.is_err() {
                    return;
                }
                let len = u32::from_be_bytes(len);
                if len > MAX_FRAME {
                    return;
                }
                let mut buf = vec![0u8; len as usize];
                if socket.read_exact(&mut buf).await.is_err() {
                    return;
                }
                if let Ok(m) = serde_json::from_slice::<Envelope>(&buf) {
                    if inbox.send(m).await.is_err() {
                        return;
                    }
                }
            }
        });
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
        eprintln!(
            "node {}: could not push topology epoch {}: {e}",
            shared.me.id, epoch
        );
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
            eprintln!(
                "node {}: cannot write {}: {e}",
                shared.me.id,
                marker.display()
            );
        }
        println!("node {}: no longer a member", shared.me.id);
    }
}

fn random_seed() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    u64::from_le_bytes(b) ^ u64::from(std::process::id())
}

/// Starts the driver: binds the TCP peer port, loads the state, and runs until shutdown.
pub async fn spawn(
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<RaftHandle, RaftStartError> {
    let me = shared.me.clone();
    let listener = TcpListener::bind((me.host.as_str(), me.peer_port))
        .await
        .map_err(|source| RaftStartError::Listen {
            host: me.host.clone(),
            port: me.peer_port,
            id: me.id.clone(),
            source,
        })?;
    let mut state = load(&shared).await?;
    // Low-resource mode makes ticks longer (fewer wake-ups), not more of them.
    let tick = TICK * u32::try_from(shared.config.raft_tick_scale()).unwrap_or(1);
    let config = Config::new(me.id.clone());
    let mut node = RaftNode::new(config, state.clone(), random_seed())?;
    let (inbox_tx, mut inbox) = mpsc::channel::<Envelope>(4096);
    tokio::spawn(receive(listener, inbox_tx));
    // Senders are made on first use from the member list (a joining node learns it from the
    // leader; it answers the leader through the connection made from the leader's address).
    let mut peers: HashMap<String, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let (proposals_tx, mut proposals) = mpsc::channel::<Proposal>(64);
    let initial = Meta::initial(&shared.config, &me.id);
    let handle = RaftHandle {
        status: Arc::new(Mutex::new(RaftStatus::default())),
        meta: Arc::new(Mutex::new(initial.clone())),
        proposals: proposals_tx,
    };
    let out = handle.clone();
    tokio::spawn(async move {
        let mut meta = initial;
        let mut waiting: HashMap<u64, oneshot::Sender<Result<u64, RaftError>>> = HashMap::new();
        let mut pushed = false;
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => node.tick(),
                Some(e) = inbox.recv() => {
                    if !peers.contains_key(&e.message.from) {
                        let sender = spawn_sender(e.host, e.port);
                        peers.insert(e.message.from.clone(), sender);
                    }
                    node.step(e.message);
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
                _ = shutdown.changed() => return,
            }
            if !node.has_ready() {
                continue;
            }
            let mut ready = node.ready();
            // 1. Persist, retrying until the local Redis takes it: nothing is sent before.
            if let Some(update) = &ready.persist {
                state.apply(update);
                while let Err(e) = persist(&shared, &state).await {
                    eprintln!(
                        "node {}: raft state not persisted yet ({e}); retrying",
                        shared.me.id
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
            // 2. Send.
            for m in std::mem::take(&mut ready.messages) {
                if !peers.contains_key(&m.to) {
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
                    let _ = tx.try_send(bytes);
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
                    if let Err(why) = meta.apply(data) {
                        eprintln!("raft: skipping an entry that is not a metadata change: {why}");
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
                *out.meta.lock().unwrap_or_else(|p| p.into_inner()) = meta.clone();
                if !meta.members.is_empty() {
                    mark_membership(&shared, &meta);
                    shared.set_members(meta.members.clone());
                    // A member on its way out stays reachable while it is still a voter.
                    let voters = &node.membership().voters;
                    peers.retain(|id, _| {
                        voters.contains(id) || meta.members.iter().any(|m| &m.id == id)
                    });
                }
                push_topology(&shared, &meta).await;
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
            *out.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
        }
    });
    Ok(handle)
}
