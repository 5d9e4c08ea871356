//! The quorum commands, callable on any node by any Redis client: the handlers of `RC.SET`,
//! `RC.GET`, `RC.DEL`, `RC.LOCATE` (as `rcluster_domain::rc::kv` defines them), `RC.CHUNK.SET` and
//! `RC.CHUNK.FETCH` (file chunks on W replicas / from the first intact one; `rc::chunk`).
//! A failure is `NOQUORUM needed W got k (ok: ...; failed: node why, ...; no answer yet: ...)`. This node's own replica is read or
//! written here, on the main thread; the other replicas are reached through `coord::fast` (the
//! main thread's event loop) or the coordinator runtime while the client waits blocked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rcluster_domain::codes::{Code, CodedError};
use rcluster_domain::keys::{chunk_key, chunk_ring_key};
use rcluster_domain::quorum::Options;
use rcluster_domain::rc::chunk::{ChunkFetch, ChunkSet};
use rcluster_domain::rc::kv::{Del, Get, Locate, LocateRow, QuorumOptions, Set};
use rcluster_domain::round::{needed, ReadRound, WriteRound};
use rcluster_domain::validate;
use rcluster_domain::version::Version;
use redis_module::{Context, RedisString, RedisValue};

use crate::cluster::{self, View};
use crate::commands::chunk::{self, ChunkArgs};
use crate::commands::{clock, kv};
use crate::coord::block::{can_block, Answer, Blocked};
use crate::coord::fetch::FetchJob;
use crate::coord::peers::{self, Peer};
use crate::coord::read::ReadJob;
use crate::coord::write::{Payload, WriteJob};
use crate::coord::{self, me};
use crate::guard::{Outcome, Reply};
use crate::settings;
use crate::stats::{Cmd, End, Op};
use crate::store::Retained;
use crate::trace::Tracer;
use rcluster_domain::trace::What;
/// Redis's own timeout for a blocked client is the request timeout plus this margin: it only
/// answers if the coordinator itself failed to.
const SAFETY_MARGIN_MS: u64 = 1_000;

fn options(opts: &QuorumOptions, name: &str, view: &View) -> Result<Options, CodedError> {
    opts.check(Some(name), view.topology.quorum.n)
}

/// Where a key lives, seen from this node.
struct Placement {
    me: String,
    /// Whether this node is one of the key's preference nodes.
    is_replica: bool,
    /// The other preference nodes.
    replicas: Vec<Arc<Peer>>,
    /// The rest of the ring in order: sloppy-quorum substitutes.
    substitutes: Vec<Arc<Peer>>,
    /// How many preference nodes the key has: N, or for a while after a change of placement
    /// the nodes of its old and its new preference list together, of which a request needs W
    /// (or R) of each list, whichever one the other coordinators still use
    /// ([`rcluster_domain::round::needed`]).
    nodes: usize,
    /// The sizes of the key's preference lists: the current one, and the previous one while a
    /// change of placement settles (they differ when N changed).
    lists: Vec<usize>,
}

impl Placement {
    /// How many of the key's preference nodes a request needs for `count` (W or R).
    fn needed(&self, count: usize) -> usize {
        needed(count, &self.lists, self.nodes)
    }

    /// The round of a write to the key: this node's own replica acknowledges at once, and the
    /// write goes to the other preference nodes.
    fn write_round(&self, w: usize, reissues: u8) -> WriteRound {
        let local = self.is_replica.then_some(self.me.as_str());
        let asked = self.replicas.iter().map(|p| p.id.as_str());
        WriteRound::new(self.needed(w), local, asked, reissues)
    }
}

fn placement(view: &View, key: &[u8]) -> Result<Placement, CodedError> {
    let me = me(view).map(|(id, _)| id).ok_or_else(|| {
        CodedError::new(
            Code::NotReady,
            format!(
                "this node's id '{}' is not a member of the loaded topology; set rcluster.node-id",
                validate::show(crate::settings::node_id().as_bytes())
            ),
        )
    })?;
    let n = usize::from(view.topology.quorum.n);
    let all = view.ring.successors(key);
    let mut ids: Vec<&str> = all[..n].to_vec();
    let mut lists = vec![n];
    let previous = view.transition();
    if let Some(prev) = previous {
        let old = prev
            .ring
            .preference_list(key, usize::from(prev.topology.quorum.n));
        lists.push(old.len());
        for id in old {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    // A node that left is still found in the previous topology while the change settles.
    let member = |id: &str| {
        view.topology
            .member(id)
            .or_else(|| previous.and_then(|p| p.topology.member(id)))
            .map(peers::peer)
    };
    let others = |ids: &[&str]| -> Vec<Arc<Peer>> {
        ids.iter()
            .filter(|id| **id != me)
            .filter_map(|id| member(id))
            .collect()
    };
    let rest: Vec<&str> = all[n..]
        .iter()
        .filter(|id| !ids.contains(id))
        .copied()
        .collect();
    Ok(Placement {
        is_replica: ids.contains(&me.as_str()),
        replicas: others(&ids),
        substitutes: others(&rest),
        nodes: ids.len(),
        lists,
        me,
    })
}

/// Every preference node of a key: this node (when it is one) and the other replicas.
fn preference(view: &View, me: &str, is_replica: bool, others: &[Arc<Peer>]) -> Vec<Arc<Peer>> {
    let local = is_replica
        .then(|| view.topology.member(me).map(peers::peer))
        .flatten();
    local.into_iter().chain(others.iter().cloned()).collect()
}

fn cannot_block(cmd: Cmd) -> CodedError {
    CodedError::new(
        Code::BadArg,
        format!(
            "{} waits for other replicas and cannot run inside MULTI or a script",
            cmd.name()
        ),
    )
}

/// A write's view, its W and timeout (from its options or the topology), and where `key` lives.
fn write_target(
    opts: &QuorumOptions,
    key: &[u8],
) -> Result<(Arc<View>, usize, u64, Placement), CodedError> {
    let view = cluster::ready()?;
    let opts = options(opts, "W", &view)?;
    let w = usize::from(opts.count.unwrap_or(view.topology.quorum.w));
    let timeout_ms = opts.timeout_ms.unwrap_or(view.topology.request_timeout_ms);
    let place = placement(&view, key)?;
    Ok((view, w, timeout_ms, place))
}

fn write(
    ctx: &Context,
    cmd: Cmd,
    key: &RedisString,
    value: Option<&RedisString>,
    opts: &QuorumOptions,
) -> Outcome {
    let (view, w, timeout_ms, place) = write_target(opts, key.as_slice())?;
    // A write is re-issued twice at most.
    let round = place.write_round(w, 2);
    if !round.reached() && !can_block(ctx) {
        return Err(cannot_block(cmd));
    }
    let Placement {
        me: me_id,
        is_replica,
        replicas,
        substitutes,
        ..
    } = place;
    let trace = Tracer::start(opts.trace(), cmd, key.as_slice(), &me_id);
    trace_preference(&trace, &me_id, is_replica, &replicas);
    let started = Instant::now();
    let version = Version::new(clock::tick(), me_id.clone());
    if is_replica {
        kv::apply(ctx, key, value, version.clone())?;
        trace.mine(|| What::Ack { hint_for: None });
    }
    let job = WriteJob {
        op: if value.is_some() { Op::Set } else { Op::Del },
        payload: Payload::Kv {
            key: key.as_slice().to_vec(),
            value: value.map(|v| v.as_slice().to_vec()),
            version,
        },
        round,
        preference: preference(&view, &me_id, is_replica, &replicas),
        replicas,
        substitutes,
        me: view.topology.member(&me_id).map(peers::peer),
        timeout_ms,
        calls_within_ms: None,
        started,
        reply: None,
        trace,
    };
    if job.round.reached() {
        job.trace
            .decided(job.round.got(), job.round.needed(), &Answer::Ok);
        crate::stats::quorum_op(job.op, End::Ok, started.elapsed());
        coord::spawn(job.run(None));
        return Ok(RedisValue::SimpleStringStatic("OK"));
    }
    let blocked =
        Blocked::new(ctx, timeout_ms + SAFETY_MARGIN_MS).ok_or_else(|| cannot_block(cmd))?;
    if let Err(declined) = coord::fast::try_start(ctx, job, blocked) {
        let (job, blocked) = *declined;
        job.trace.path("runtime");
        coord::spawn(job.run(Some(blocked)));
    }
    Ok(RedisValue::NoReply)
}

pub fn set(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let opts = Set::parse(&args, &settings::limits())?.options;
    write(ctx, Cmd::Set, &args[1], Some(&args[2]), &opts)
}

pub fn del(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let opts = Del::parse(&args, &settings::limits())?.options;
    write(ctx, Cmd::Del, &args[1], None, &opts)
}

pub fn get(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let opts = Get::parse(&args, &settings::limits())?.options;
    let opts_trace = opts.trace();
    let view = cluster::ready()?;
    let opts = options(&opts, "R", &view)?;
    let r = usize::from(opts.count.unwrap_or(view.topology.quorum.r));
    let timeout_ms = opts.timeout_ms.unwrap_or(view.topology.request_timeout_ms);
    let place = placement(&view, args[1].as_slice())?;
    let r = place.needed(r);
    let Placement {
        me: me_id,
        is_replica,
        replicas,
        ..
    } = place;
    let trace = Tracer::start(opts_trace, Cmd::Get, args[1].as_slice(), &me_id);
    trace_preference(&trace, &me_id, is_replica, &replicas);
    let started = Instant::now();
    // This node's own answer; a damaged local record counts as one replica not answering.
    let local = match (is_replica, view.topology.member(&me_id)) {
        (true, Some(m)) => kv::read(ctx, &args[1])
            .ok()
            .map(|held| (peers::peer(m), held)),
        _ => None,
    };
    if let Some((_, held)) = &local {
        trace.mine(|| crate::trace::answer(held));
    }
    let asked = replicas.iter().map(|p| p.id.as_str());
    let round = ReadRound::new(r, local.into_iter().collect(), asked);
    if !round.reached() && !can_block(ctx) {
        return Err(cannot_block(Cmd::Get));
    }
    let immediate = round.reached().then(|| round.value().map(<[u8]>::to_vec));
    let job = ReadJob {
        key: args[1].as_slice().to_vec(),
        round,
        replicas,
        timeout_ms,
        calls_within_ms: None,
        started,
        trace,
    };
    if let Some(value) = immediate {
        if job.trace.on() {
            let answer = Answer::Value(value.clone());
            job.trace
                .decided(job.round.got(), job.round.needed(), &answer);
        }
        crate::stats::quorum_op(Op::Get, End::Ok, started.elapsed());
        coord::spawn(job.run(None)); // Read repair still runs.
        return Ok(value.map_or(RedisValue::Null, RedisValue::StringBuffer));
    }
    let blocked =
        Blocked::new(ctx, timeout_ms + SAFETY_MARGIN_MS).ok_or_else(|| cannot_block(Cmd::Get))?;
    if let Err(declined) = coord::fast::try_start_read(ctx, job, blocked) {
        let (job, blocked) = *declined;
        job.trace.path("runtime");
        coord::spawn(job.run(Some(blocked)));
    }
    Ok(RedisValue::NoReply)
}

pub fn locate(_ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let key = Locate::parse(&args, &settings::limits())?.key;
    let view = cluster::ready()?;
    let me_id = crate::settings::node_id();
    let n = usize::from(view.topology.quorum.n);
    let rows = view
        .ring
        .preference_list(key, n)
        .into_iter()
        .map(|id| {
            let addr = view
                .topology
                .member(id)
                .map_or_else(String::new, |m| format!("{}:{}", m.host, m.redis_port));
            let state = node_state(id, &me_id);
            LocateRow {
                node: id.to_string(),
                address: addr,
                state,
            }
        })
        .collect();
    Ok(LocateRow::encode::<Reply>(rows))
}

/// A preference node's state as this node sees it: `self`, a pushed verdict or the connection's
/// state (what `RC.LOCATE` shows and a trace records).
fn node_state(id: &str, me: &str) -> &'static str {
    if id == me {
        "self"
    } else if let Some(pushed) = peers::pushed_liveness(id) {
        pushed.as_str()
    } else {
        // Before any verdict, this node's connection says what it can: in the words of the
        // failure detector (`LOCATE_STATES`, as `/api/nodes` shows them).
        match peers::state_of(id) {
            peers::State::Up => "alive",
            peers::State::Down => "down",
            peers::State::Unknown => "unknown",
        }
    }
}

/// Records the key's preference nodes and their states in a traced request.
fn trace_preference(trace: &Tracer, me: &str, is_replica: bool, others: &[Arc<Peer>]) {
    if !trace.on() {
        return;
    }
    let mine = is_replica.then_some(me);
    for id in mine.into_iter().chain(others.iter().map(|p| p.id.as_str())) {
        let state = node_state(id, me).to_string();
        trace.note(id, || What::Preference { state });
    }
}

/// The largest chunk `RC.CHUNK.SET` checks (SHA-256 and CRC-32C) on the main thread: about
/// 0.5 ms at the 2 GB/s SHA-256 runs at here. Larger ones are hashed on the blocking pool, so
/// no chunk keeps the main thread for milliseconds (`bench/main_thread_stall.sh`).
const INLINE_CHECK_MAX_BYTES: usize = 1 << 20;

/// Where a chunk write goes, worked out before its data is checked.
struct ChunkPlan {
    round: WriteRound,
    timeout_ms: u64,
    is_replica: bool,
    replicas: Vec<Arc<Peer>>,
    me: Option<Arc<Peer>>,
}

impl ChunkPlan {
    fn new(ctx: &Context, request: &ChunkSet) -> Result<ChunkPlan, CodedError> {
        let ring_key = chunk_ring_key(request.file_id, request.index);
        let (view, w, timeout_ms, place) = write_target(&request.options, &ring_key)?;
        // Chunks are immutable: a write is never re-issued.
        let round = place.write_round(w, 0);
        if !round.reached() && !can_block(ctx) {
            return Err(cannot_block(Cmd::ChunkSet));
        }
        Ok(ChunkPlan {
            round,
            timeout_ms,
            is_replica: place.is_replica,
            replicas: place.replicas,
            me: view.topology.member(&place.me).map(peers::peer),
        })
    }

    /// The fan-out of a checked chunk (this node's copy, if it is a replica, already stored).
    fn job(self, payload: Payload, reply: Option<Vec<u8>>, started: Instant) -> WriteJob {
        WriteJob {
            op: Op::ChunkSet,
            payload,
            round: self.round,
            preference: Vec::new(),
            replicas: self.replicas,
            substitutes: Vec::new(),
            me: self.me,
            timeout_ms: self.timeout_ms,
            calls_within_ms: None,
            started,
            reply,
            trace: Tracer::OFF,
        }
    }
}

/// What `RC.CHUNK.SET` answers on success: the digest it computed for `*`, else `OK`.
fn chunk_reply(request_digest: bool, checked: &ChunkArgs) -> Option<Vec<u8>> {
    (!request_digest).then(|| checked.sha256.clone().into_bytes())
}

/// `RC.CHUNK.SET file-id index sha256 data [W n] [TIMEOUT ms]`: the chunk on W of its N replicas
/// (checked against the digest first; chunks are not hinted, they are repaired when read). With
/// `*` as the digest this node hashes the data (once, instead of the caller and then this node)
/// and answers the digest instead of `OK`; the replicas check the copies against it.
/// A chunk up to [`INLINE_CHECK_MAX_BYTES`] is checked and stored right here, on the main
/// thread (about half a millisecond for 1 MiB), and the fan-out starts at once. Hashing a larger
/// one takes milliseconds, so it runs on the coordinator's blocking pool while the client waits;
/// this node's copy is then stored under Redis's lock (nothing is stored when the check fails).
/// Inside MULTI or a script, where a client cannot wait, it all runs here whatever the size.
pub fn chunk_set(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let request = ChunkSet::parse(&args, &settings::limits())?;
    let has_digest = request.sha256.is_some();
    if request.data.len() <= INLINE_CHECK_MAX_BYTES || !can_block(ctx) {
        let checked = chunk::check(
            request.file_id,
            request.index,
            request.sha256.as_deref(),
            request.data,
        )?;
        let plan = ChunkPlan::new(ctx, &request)?;
        let started = Instant::now();
        if plan.is_replica {
            chunk::store(ctx, &checked, &args[4])?;
        }
        let reply = chunk_reply(has_digest, &checked);
        let payload = chunk_payload(&checked, args[4].as_slice());
        let job = plan.job(payload, reply.clone(), started);
        if job.round.reached() {
            // This node's copy was the quorum (always so inside MULTI: the plan requires it).
            crate::stats::quorum_op(Op::ChunkSet, End::Ok, started.elapsed());
            coord::spawn(job.run(None));
            return Ok(reply.map_or(
                RedisValue::SimpleStringStatic("OK"),
                RedisValue::StringBuffer,
            ));
        }
        let blocked = Blocked::new(ctx, job.timeout_ms + SAFETY_MARGIN_MS)
            .ok_or_else(|| cannot_block(Cmd::ChunkSet))?;
        coord::spawn(job.run(Some(blocked)));
        return Ok(RedisValue::NoReply);
    }
    let plan = ChunkPlan::new(ctx, &request)?;
    let started = Instant::now();
    let deadline = started + Duration::from_millis(plan.timeout_ms);
    let blocked = Blocked::new(ctx, plan.timeout_ms + SAFETY_MARGIN_MS)
        .ok_or_else(|| cannot_block(Cmd::ChunkSet))?;
    // Read off the main thread without a copy here; released under Redis's lock.
    let data = Retained::new(ctx, &args[4]);
    let is_replica = plan.is_replica;
    let (file, index) = (request.file_id.to_string(), request.index);
    let expected = request.sha256.as_deref().map(str::to_string);
    coord::spawn(async move {
        let done = tokio::task::spawn_blocking(move || {
            let checked = chunk::check(&file, index, expected.as_deref(), data.bytes());
            let payload = checked
                .as_ref()
                .ok()
                .map(|c| chunk_payload(c, data.bytes()));
            let outcome = store_locally(&blocked, data, is_replica, checked, deadline);
            (outcome.map(|c| (c, payload)), blocked)
        })
        .await;
        // A panic on the pool: Redis's own timeout answers the client.
        let Ok((outcome, blocked)) = done else {
            crate::stats::panic_caught();
            return;
        };
        match outcome {
            Ok((checked, Some(payload))) => {
                let reply = chunk_reply(has_digest, &checked);
                plan.job(payload, reply, started).run(Some(blocked)).await;
            }
            Ok((_, None)) => blocked.finish(Answer::Error(format!(
                "{} the chunk was checked but not sent",
                Code::Internal.as_str()
            ))),
            Err(e) => blocked.finish(Answer::Error(e.to_string())),
        }
    });
    Ok(RedisValue::NoReply)
}

/// The replica-level write of a checked chunk.
fn chunk_payload(c: &ChunkArgs, data: &[u8]) -> Payload {
    Payload::chunk(&c.file_id, c.index, &c.sha256, &c.crc32c, data)
}

/// Stores this node's copy of a checked chunk (`data`: the command's data argument) when it is
/// a replica, under Redis's lock, unless the check failed or the request's time is up; releases
/// `data` there either way. Runs off the main thread.
fn store_locally(
    blocked: &Blocked,
    data: Retained,
    is_replica: bool,
    checked: Result<ChunkArgs, CodedError>,
    deadline: Instant,
) -> Result<ChunkArgs, CodedError> {
    let stored = blocked.with_redis_locked(|ctx| {
        data.release_locked(ctx, |data| {
            let checked = checked?;
            if !is_replica {
                return Ok(checked);
            }
            if Instant::now() >= deadline {
                return Err(CodedError::new(
                    Code::NoQuorum,
                    "the request timed out while the chunk was checked; nothing was stored",
                ));
            }
            chunk::store(ctx, &checked, data)?;
            Ok(checked)
        })
    });
    stored.unwrap_or_else(|| {
        Err(CodedError::new(
            Code::Internal,
            "Redis gave no thread-safe context to store the chunk; nothing was stored",
        ))
    })
}

/// `RC.CHUNK.FETCH file-id index [SHA256 hex] [TIMEOUT ms]`: the chunk's bytes from this node when
/// its copy is intact, else from the first intact replica (repairing the others); nil when no
/// replica has it, `CHECKSUM` when the only copies left are corrupt. With `SHA256`, a copy counts
/// as intact only if it hashes to that digest (the caller's record), so the caller need not hash
/// the bytes again.
pub fn chunk_fetch(ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let request = ChunkFetch::parse(&args)?;
    let (file_id, index) = (request.file_id.to_string(), request.index);
    let view = cluster::ready()?;
    let (expected, opts) = request.options.check(view.topology.quorum.n)?;
    let timeout_ms = opts.timeout_ms.unwrap_or(view.topology.request_timeout_ms);
    let Placement {
        me: me_id,
        is_replica,
        replicas,
        ..
    } = placement(&view, &chunk_ring_key(&file_id, index))?;
    let started = Instant::now();
    let mut local_problem = None;
    // This node's copy. One with a CRC-32C is checked here and answered at once; an older one
    // (SHA-256 only) is checked off the main thread, unless inside MULTI or a script.
    let mut unchecked = None;
    if is_replica {
        match chunk::read(ctx, &file_id, index) {
            Ok(Some(held)) if held.quick_to_check() || !can_block(ctx) => {
                match held.verify(&chunk_key(&file_id, index), expected.as_deref()) {
                    Ok(()) => {
                        crate::stats::quorum_op(Op::ChunkGet, End::Ok, started.elapsed());
                        return Ok(RedisValue::BulkRedisString(held.data));
                    }
                    Err(e) => local_problem = Some(Some(e.to_string())),
                }
            }
            Ok(Some(held)) => unchecked = Some(held.to_owned()),
            Ok(None) => local_problem = Some(None),
            Err(e) => local_problem = Some(Some(e.to_string())),
        }
    }
    if !can_block(ctx) {
        return Err(cannot_block(Cmd::ChunkFetch));
    }
    let me = view.topology.member(&me_id).map(peers::peer);
    let mut job = FetchJob {
        file: file_id,
        index,
        sha256: expected,
        local: local_problem.and_then(|p| me.clone().map(|m| (m, p))),
        replicas,
        timeout_ms,
        started,
    };
    let blocked = Blocked::new(ctx, timeout_ms + SAFETY_MARGIN_MS)
        .ok_or_else(|| cannot_block(Cmd::ChunkFetch))?;
    coord::spawn(async move {
        if let Some(held) = unchecked {
            let display = chunk_key(&job.file, job.index);
            let expected = job.sha256.clone();
            let checked = tokio::task::spawn_blocking(move || {
                held.verify(&display, expected.as_deref())
                    .map(|()| held.data)
            })
            .await;
            match checked {
                Ok(Ok(data)) => {
                    crate::stats::quorum_op(Op::ChunkGet, End::Ok, job.started.elapsed());
                    blocked.finish(Answer::Value(Some(data)));
                    return;
                }
                // Damaged here: read it from the other replicas and repair this copy.
                Ok(Err(e)) => job.local = me.map(|m| (m, Some(e.to_string()))),
                Err(e) => job.local = me.map(|m| (m, Some(format!("check failed: {e}")))),
            }
        }
        job.run(Some(blocked)).await;
    });
    Ok(RedisValue::NoReply)
}
