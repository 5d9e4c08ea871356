//! Request traces in the module: the recorder a traced quorum request carries through both
//! coordinator paths ([`Tracer`]: off, it is a `None` and every recording point is one branch),
//! the choice of which requests are traced (`TRACE` asked, or the sampling rate
//! `rcluster.trace-sample-per-million`), and this node's ring of finished traces (capped by
//! `rcluster.trace-max-count` and `rcluster.trace-max-bytes`), which `RC.TRACE` reads. A trace
//! is kept when its request and every follow-up (hints, read repairs) ended: when the job that
//! carries it is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rcluster_domain::quorum::Held;
use rcluster_domain::rc::trace::{encode_get, encode_list, TraceArg, TraceCmd};
use rcluster_domain::trace::{sampled, show_version, Caps, Ring, Trace, What};

use crate::commands::clock;
use crate::coord::peers::Failure;
use rcluster_domain::rc::replica::{is_ack, Ack};
use redis::Value;
use redis_module::{Context, RedisString};

use crate::coord::block::Answer;
use crate::coord::wire::V;

use crate::guard::{Outcome, Reply};
use crate::settings;
use crate::stats::Cmd;

static RING: Mutex<Ring> = Mutex::new(Ring::new());
/// Requests considered for sampling (only counted while sampling is on).
static SAMPLE_SEQ: AtomicU64 = AtomicU64::new(0);
/// Traces started on this node, for the ids made here.
static STARTED: AtomicU64 = AtomicU64::new(0);

fn ring() -> std::sync::MutexGuard<'static, Ring> {
    RING.lock().unwrap_or_else(|p| p.into_inner())
}

/// The recorder of one traced request, or nothing.
pub struct Tracer(Option<Box<Recorder>>);

struct Recorder {
    started: Instant,
    trace: Mutex<Trace>,
}

impl Tracer {
    /// Not traced.
    pub const OFF: Tracer = Tracer(None);

    /// A recorder when the request asked for one (`TRACE [id]`) or the sampling rate picks it.
    pub fn start(asked: Option<TraceArg>, cmd: Cmd, key: &[u8], me: &str) -> Tracer {
        let rate = settings::trace_sample_per_million();
        if asked.is_none()
            && (rate == 0 || !sampled(SAMPLE_SEQ.fetch_add(1, Ordering::Relaxed), rate))
        {
            return Tracer::OFF;
        }
        let now = clock::wall_ms();
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let id = match asked.and_then(|a| a.id) {
            Some(id) => id.to_string(),
            None => format!("{me}-{now}-{n}"),
        };
        // Keys are UTF-8 (checked before this).
        let key = String::from_utf8_lossy(key);
        let trace = Trace::new(id, cmd.name(), &key, me, now);
        Tracer(Some(Box::new(Recorder {
            started: Instant::now(),
            trace: Mutex::new(trace),
        })))
    }

    /// Whether this request is traced.
    #[inline]
    pub fn on(&self) -> bool {
        self.0.is_some()
    }

    /// Records what `node` did now (`what` is only built when traced).
    #[inline]
    pub fn note(&self, node: &str, what: impl FnOnce() -> What) {
        if let Some(r) = &self.0 {
            r.push(Some(node), what());
        }
    }

    /// Records what the coordinator (this node) did now.
    #[inline]
    pub fn mine(&self, what: impl FnOnce() -> What) {
        if let Some(r) = &self.0 {
            r.push(None, what());
        }
    }

    /// The client is answered: the quorum reached (`got` of `needed`) or out of reach, then
    /// the reply.
    pub fn decided(&self, got: usize, needed: usize, answer: &Answer) {
        let Some(r) = &self.0 else { return };
        r.push(
            None,
            match answer {
                Answer::Error(e) => What::Noquorum { why: e.clone() },
                _ => What::Quorum { got, needed },
            },
        );
        r.push(
            None,
            What::Reply {
                outcome: reply_outcome(answer),
            },
        );
    }

    /// The path that answers the client from now on (`fast` or `runtime`).
    pub fn path(&self, path: &'static str) {
        if let Some(r) = &self.0 {
            r.with(|t| t.head.path = path.to_string());
        }
    }

    /// The trace's id, when traced.
    pub fn id(&self) -> Option<String> {
        self.0.as_ref().map(|r| r.with(|t| t.head.id.clone()))
    }
}

impl Recorder {
    fn with<T>(&self, f: impl FnOnce(&mut Trace) -> T) -> T {
        f(&mut self.trace.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn push(&self, node: Option<&str>, what: What) {
        let at = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.with(|t| {
            let node = node.map_or_else(|| t.head.coordinator.clone(), str::to_string);
            t.push(at, &node, what);
        });
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let trace = self.trace.get_mut().unwrap_or_else(|p| p.into_inner());
        trace.finish();
        let caps = Caps {
            max_count: settings::trace_max_count(),
            max_bytes: settings::trace_max_bytes(),
        };
        ring().push(trace, caps);
    }
}

/// A read's answer as a trace shows it (what the replica holds; `None`: nothing).
pub fn answer(held: &Option<Held>) -> What {
    What::Answer {
        version: held.as_ref().map(|h| show_version(&h.version)),
        tombstone: held.as_ref().is_some_and(|h| h.tombstone),
    }
}

/// A read's reply as a trace shows it.
pub fn read_outcome(value: Option<&[u8]>) -> String {
    value.map_or_else(|| "nil".into(), |v| format!("value ({} bytes)", v.len()))
}

/// The reply sent to the client, as a trace shows it.
pub fn reply_outcome(answer: &Answer) -> String {
    match answer {
        Answer::Ok => "OK".into(),
        Answer::Value(v) => read_outcome(v.as_deref()),
        Answer::Error(e) => e.clone(),
    }
}

/// One replica's answer to a write (`hint_for`: the node a substitute was asked to hold it for).
pub fn write_answer(result: &Result<Value, Failure>, ack: &Ack, hint_for: Option<&str>) -> What {
    match (ack, result) {
        (Ack::Yes, _) => match hint_for {
            Some(n) => What::Hint {
                hint_for: n.to_string(),
            },
            None => What::Ack { hint_for: None },
        },
        (Ack::Newer(v), _) => What::Newer {
            version: show_version(v),
        },
        (Ack::No, Err(f)) => failure(f),
        (Ack::No, Ok(v)) => What::Error {
            why: format!("unexpected reply {v:?}"),
        },
    }
}

/// A hint this node tried to keep for `node`.
pub fn local_hint(node: &str, stored: &Result<Value, Failure>) -> What {
    match stored {
        Ok(_) => What::Hint {
            hint_for: node.to_string(),
        },
        Err(f) => What::HintFailed {
            hint_for: node.to_string(),
            why: f.to_string(),
        },
    }
}

/// A replica's answer to a read repair.
pub fn repair_answer(done: &Result<Value, Failure>) -> What {
    match done {
        Ok(reply) if is_ack(V(reply)) => What::RepairAck,
        Ok(other) => What::RepairError {
            why: format!("unexpected reply {other:?}"),
        },
        Err(f) => What::RepairError { why: f.to_string() },
    }
}

/// How a failed call shows in a trace: a timeout, or an error with its reason.
pub fn failure(f: &Failure) -> What {
    match f {
        Failure::Timeout => What::Timeout,
        other => What::Error {
            why: other.to_string(),
        },
    }
}

/// `RC.TRACE GET id` (the trace's JSON, or nil) and `RC.TRACE LIST [n]` (the newest
/// summaries, newest first).
pub fn command(_ctx: &Context, args: Vec<RedisString>) -> Outcome {
    let ring = ring();
    Ok(match TraceCmd::parse(&args)? {
        TraceCmd::Get { id } => encode_get::<Reply>(ring.get(id)),
        TraceCmd::List { n } => encode_list::<Reply>(&ring.list(n)),
    })
}

/// `INFO rcluster` fields: traces held, their bytes, traces dropped by the caps, traces started.
pub fn info_fields() -> [(&'static str, u64); 4] {
    let (held, bytes, dropped) = ring().usage();
    [
        ("traces_held", held),
        ("traces_bytes", bytes),
        ("traces_dropped", dropped),
        ("traces_started", STARTED.load(Ordering::Relaxed)),
    ]
}
