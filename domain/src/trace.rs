//! Request traces, pure: what a traced quorum request (`RC.SET|GET|DEL ... TRACE`) records, with
//! microsecond offsets from its start (the preference list, every replica asked and its answer,
//! the quorum, the reply, re-issues, hints, read repairs and the path that served it), its JSON
//! encoding (what `RC.TRACE`, `GET /api/traces/{id}` and `rcluster trace` show), the check of a
//! client-chosen trace id, and the bounded ring a node keeps its last traces in (capped in count
//! and in encoded bytes). The module records and times; this decides nothing about I/O.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::codes::{Code, CodedError};
use crate::version::Version;

/// Longest trace id (a client-chosen one, or one the coordinator made).
pub const MAX_ID_BYTES: usize = 64;

/// Default number of traces a node keeps.
pub const DEFAULT_MAX_TRACES: u64 = 1000;
/// Default encoded bytes of the traces a node keeps (1 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 20;
/// Sampling is expressed per million requests.
pub const PER_MILLION: u64 = 1_000_000;

/// How `RC.TRACE` and the API name the two coordinator paths.
pub const PATHS: [&str; 2] = ["fast", "runtime"];

/// A version as a trace shows it: `<timestamp>@<origin node>`.
pub fn show_version(v: &Version) -> String {
    format!("{}@{}", v.ts, v.node)
}

/// Checks a client-chosen trace id: 1 to [`MAX_ID_BYTES`] of `A-Z a-z 0-9 . _ : -`.
pub fn check_id(arg: &[u8]) -> Result<&str, CodedError> {
    let ok = !arg.is_empty()
        && arg.len() <= MAX_ID_BYTES
        && arg
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b));
    if !ok {
        return Err(CodedError::new(
            Code::BadArg,
            format!(
                "trace id must be 1 to {MAX_ID_BYTES} characters from A-Z, a-z, 0-9, '.', '_', ':' and '-', got '{}'",
                crate::validate::show(arg)
            ),
        ));
    }
    Ok(std::str::from_utf8(arg).unwrap_or_default())
}

/// Whether request number `seq` is sampled at `per_million` (0: none, [`PER_MILLION`]: all):
/// the sequence is spread by a multiplicative hash, so a rate of 1% picks about one request in a
/// hundred without a random source.
pub fn sampled(seq: u64, per_million: u64) -> bool {
    if per_million == 0 {
        return false;
    }
    let spread = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    spread % PER_MILLION < per_million
}

/// What happened, as one event of a trace (the `what` field of its JSON, with its own fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum What {
    /// A node of the key's preference list, and its state as the coordinator saw it (`self`,
    /// `alive`, `suspect`, `down`, `up`, `unknown`).
    Preference { state: String },
    /// The replica command was sent to this node (for a substitute: holding a hint for
    /// `hint_for`).
    Asked {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint_for: Option<String>,
    },
    /// The node took the write (a substitute: kept it as a hint for `hint_for`).
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint_for: Option<String>,
    },
    /// The node holds a newer version than the write's (the write is then re-issued).
    Newer { version: String },
    /// A read's answer: the version held (`None`: nothing).
    Answer {
        version: Option<String>,
        tombstone: bool,
    },
    /// A read's answer older than the newest answer (or nothing, where another replica held
    /// something): the node gets a read repair.
    Stale { version: Option<String> },
    /// The node answered with an error, or the connection failed.
    Error { why: String },
    /// No answer before the deadline.
    Timeout,
    /// The request was handed from the main thread's fast path to the runtime.
    Handover,
    /// W (writes) or R (reads) was reached.
    Quorum { got: usize, needed: usize },
    /// The quorum was out of reach.
    Noquorum { why: String },
    /// The reply sent to the client.
    Reply { outcome: String },
    /// The write was sent again with a newer version.
    Reissue { version: String },
    /// A hint for `hint_for` was stored on this node.
    Hint { hint_for: String },
    /// A hint for `hint_for` could not be stored on this node.
    HintFailed { hint_for: String, why: String },
    /// A read repair (the newest version) was sent to this node.
    Repair { version: String },
    /// The node acknowledged the read repair.
    RepairAck,
    /// The read repair failed.
    RepairError { why: String },
}

/// One event: when (microseconds since the request started), on or about which node, what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at_us: u64,
    pub node: String,
    #[serde(flatten)]
    pub what: What,
}

/// What a trace is about, and how it ended: the fields a trace and its summary share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub id: String,
    /// `RC.SET`, `RC.GET` or `RC.DEL`.
    pub command: String,
    pub key: String,
    /// The node that coordinated the request.
    pub coordinator: String,
    /// Which path answered the client: `fast` (Redis's main thread) or `runtime`.
    pub path: String,
    /// The reply, in short (`OK`, `nil`, `value (5 bytes)`, `NOQUORUM ...`); empty while none.
    pub outcome: String,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// From the start to the last event (follow-ups included: hints, repairs).
    pub duration_us: u64,
}

/// A whole trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    #[serde(flatten)]
    pub head: Head,
    pub events: Vec<Event>,
}

/// The line a list shows of a trace: its head and how many events it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(flatten)]
    pub head: Head,
    pub events: usize,
}

impl Trace {
    /// A trace of `command` on `key` coordinated by `coordinator`, started at `started_unix_ms`.
    pub fn new(id: String, command: &str, key: &str, coordinator: &str, started: u64) -> Trace {
        Trace {
            head: Head {
                id,
                command: command.to_string(),
                key: key.to_string(),
                coordinator: coordinator.to_string(),
                path: PATHS[0].to_string(),
                outcome: String::new(),
                started_unix_ms: started,
                duration_us: 0,
            },
            events: Vec::new(),
        }
    }

    /// Adds an event; the reply's outcome is also kept as the trace's.
    pub fn push(&mut self, at_us: u64, node: &str, what: What) {
        if let What::Reply { outcome } = &what {
            self.head.outcome = outcome.clone();
        }
        self.head.duration_us = self.head.duration_us.max(at_us);
        self.events.push(Event {
            at_us,
            node: node.to_string(),
            what,
        });
    }

    /// Once every follow-up ended: a read's answers older than the newest one (or empty where
    /// another held something) become `stale`, and events are put in time order.
    pub fn finish(&mut self) {
        let held = |e: &Event| match &e.what {
            What::Answer {
                version: Some(v), ..
            } => parse_version(v),
            _ => None,
        };
        let newest = self.events.iter().filter_map(held).max();
        if let Some(newest) = newest {
            for e in &mut self.events {
                if let What::Answer { version, .. } = &e.what {
                    let older = version
                        .as_deref()
                        .and_then(parse_version)
                        .is_none_or(|v| v < newest);
                    if older {
                        e.what = What::Stale {
                            version: version.clone(),
                        };
                    }
                }
            }
        }
        self.events.sort_by_key(|e| e.at_us);
    }

    pub fn summary(&self) -> Summary {
        Summary {
            head: self.head.clone(),
            events: self.events.len(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &[u8]) -> Option<Trace> {
        serde_json::from_slice(text).ok()
    }
}

impl Summary {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &[u8]) -> Option<Summary> {
        serde_json::from_slice(text).ok()
    }
}

/// `<ts>@<node>` back into a version.
fn parse_version(text: &str) -> Option<Version> {
    let (ts, node) = text.split_once('@')?;
    Some(Version::new(ts.parse().ok()?, node))
}

struct Stored {
    summary: Summary,
    json: String,
}

/// A node's last traces, oldest first, at most `max_count` of them and `max_bytes` of JSON
/// together; a trace bigger than `max_bytes` alone is not kept.
pub struct Ring {
    entries: VecDeque<Stored>,
    bytes: u64,
    /// Traces pushed out by the caps, or too big to keep.
    dropped: u64,
}

/// The caps a ring is held to (read from the settings at each push, so a change applies at
/// once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub max_count: u64,
    pub max_bytes: u64,
}

impl Ring {
    pub const fn new() -> Ring {
        Ring {
            entries: VecDeque::new(),
            bytes: 0,
            dropped: 0,
        }
    }

    /// Keeps a finished trace, dropping the oldest ones past the caps; whether it was kept.
    pub fn push(&mut self, trace: &Trace, caps: Caps) -> bool {
        let json = trace.to_json();
        let size = json.len() as u64;
        let kept = size <= caps.max_bytes && caps.max_count > 0;
        if kept {
            // A trace id given twice: the newer one replaces the older.
            if let Some(i) = self
                .entries
                .iter()
                .position(|s| s.summary.head.id == trace.head.id)
            {
                self.remove(i);
                self.dropped += 1;
            }
            self.entries.push_back(Stored {
                summary: trace.summary(),
                json,
            });
            self.bytes += size;
        } else {
            self.dropped += 1;
        }
        while self.entries.len() as u64 > caps.max_count || self.bytes > caps.max_bytes {
            self.remove(0);
            self.dropped += 1;
        }
        kept
    }

    fn remove(&mut self, i: usize) {
        if let Some(s) = self.entries.remove(i) {
            self.bytes -= s.json.len() as u64;
        }
    }

    /// The JSON of the trace with this id.
    pub fn get(&self, id: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|s| s.summary.head.id == id)
            .map(|s| s.json.as_str())
    }

    /// The `n` newest traces' summaries, newest first.
    pub fn list(&self, n: usize) -> Vec<&Summary> {
        self.entries
            .iter()
            .rev()
            .take(n)
            .map(|s| &s.summary)
            .collect()
    }

    /// Traces held, their encoded bytes, and traces dropped so far.
    pub fn usage(&self) -> (u64, u64, u64) {
        (self.entries.len() as u64, self.bytes, self.dropped)
    }
}

impl Default for Ring {
    fn default() -> Ring {
        Ring::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(id: &str) -> Trace {
        let mut t = Trace::new(id.into(), "RC.SET", "k", "n1", 1_000);
        t.push(
            0,
            "n1",
            What::Preference {
                state: "self".into(),
            },
        );
        t.push(5, "n2", What::Asked { hint_for: None });
        t.push(90, "n2", What::Ack { hint_for: None });
        t.push(95, "n1", What::Quorum { got: 2, needed: 2 });
        t.push(
            97,
            "n1",
            What::Reply {
                outcome: "OK".into(),
            },
        );
        t
    }

    #[test]
    fn ids_are_checked() {
        assert_eq!(check_id(b"abc-1.2_x:y").unwrap(), "abc-1.2_x:y");
        assert!(check_id(b"").is_err());
        assert!(check_id(&[b'a'; 65]).is_err());
        assert!(check_id(&[b'a'; 64]).is_ok());
        let e = check_id(b"a b").unwrap_err();
        assert_eq!(e.code, Code::BadArg);
        assert!(e.message.contains("'a b'"), "{}", e.message);
    }

    #[test]
    fn sampling_follows_the_rate() {
        assert!(!(0..10_000).any(|i| sampled(i, 0)));
        assert!((0..10_000).all(|i| sampled(i, PER_MILLION)));
        let one_percent = (0..100_000).filter(|i| sampled(*i, 10_000)).count();
        assert!((700..1300).contains(&one_percent), "{one_percent}");
    }

    #[test]
    fn json_round_trips_with_the_contract_field_names() {
        let mut t = trace("t1");
        t.push(
            120,
            "n3",
            What::Hint {
                hint_for: "n2".into(),
            },
        );
        t.push(130, "n3", What::Timeout);
        let json = t.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["id"], "t1");
        assert_eq!(v["path"], "fast");
        assert_eq!(v["outcome"], "OK");
        assert_eq!(v["duration_us"], 130);
        assert_eq!(v["events"][1]["what"], "asked");
        assert!(v["events"][1].get("hint_for").is_none());
        assert_eq!(v["events"][5]["what"], "hint");
        assert_eq!(v["events"][5]["hint_for"], "n2");
        assert_eq!(v["events"][6]["what"], "timeout");
        assert_eq!(v["events"][6]["at_us"], 130);
        assert_eq!(Trace::from_json(json.as_bytes()), Some(t.clone()));
        let s = t.summary();
        assert_eq!(s.events, 7);
        assert_eq!(Summary::from_json(s.to_json().as_bytes()), Some(s));
    }

    #[test]
    fn finishing_marks_older_answers_stale_and_orders_events() {
        let mut t = Trace::new("r".into(), "RC.GET", "k", "n1", 0);
        let answer = |v: Option<&str>| What::Answer {
            version: v.map(String::from),
            tombstone: false,
        };
        t.push(10, "n1", answer(Some("20@n1")));
        t.push(30, "n3", answer(None));
        t.push(20, "n2", answer(Some("9@n2")));
        t.push(25, "n4", answer(Some("20@n1")));
        t.finish();
        let whats: Vec<(&str, &What)> = t
            .events
            .iter()
            .map(|e| (e.node.as_str(), &e.what))
            .collect();
        assert_eq!(whats[0], ("n1", &answer(Some("20@n1"))));
        assert_eq!(
            whats[1],
            (
                "n2",
                &What::Stale {
                    version: Some("9@n2".into())
                }
            )
        );
        assert_eq!(whats[2], ("n4", &answer(Some("20@n1"))));
        assert_eq!(whats[3], ("n3", &What::Stale { version: None }));
        // Nobody held anything: nothing is stale.
        let mut empty = Trace::new("e".into(), "RC.GET", "k", "n1", 0);
        empty.push(1, "n1", answer(None));
        empty.finish();
        assert_eq!(empty.events[0].what, answer(None));
    }

    #[test]
    fn the_ring_holds_its_caps() {
        let mut ring = Ring::new();
        let one = trace("a").to_json().len() as u64;
        let caps = Caps {
            max_count: 3,
            max_bytes: 10 * one,
        };
        for id in ["a", "b", "c", "d"] {
            assert!(ring.push(&trace(id), caps));
        }
        assert_eq!(ring.usage(), (3, 3 * one, 1));
        assert_eq!(ring.get("a"), None);
        assert!(ring.get("b").is_some());
        let ids: Vec<&str> = ring.list(10).iter().map(|s| s.head.id.as_str()).collect();
        assert_eq!(ids, ["d", "c", "b"]);
        assert_eq!(ring.list(1)[0].head.id, "d");
        // The byte cap: two fit.
        let tight = Caps {
            max_count: 100,
            max_bytes: 2 * one + 1,
        };
        assert!(ring.push(&trace("e"), tight));
        assert_eq!(ring.usage().0, 2);
        assert!(ring.usage().1 <= tight.max_bytes);
        // Too big alone: not kept, counted.
        let tiny = Caps {
            max_count: 100,
            max_bytes: one - 1,
        };
        assert!(!ring.push(&trace("f"), tiny));
        assert_eq!(ring.usage().0, 0);
        assert_eq!(ring.get("f"), None);
        // The same id again replaces the older trace.
        ring.push(&trace("g"), caps);
        let mut again = trace("g");
        again.push(200, "n1", What::Timeout);
        ring.push(&again, caps);
        assert_eq!(ring.usage().0, 1);
        assert!(ring.get("g").unwrap().contains("timeout"));
    }
}
