//! The checker's history: one event per line of JSON (what a client invoked, and whether it
//! came back `ok`, `fail` or `info`), the shape `docs/checker.md` documents for other tools.

use serde::{Deserialize, Serialize};

/// What an event says about its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The client sent it.
    Invoke,
    /// It was acknowledged (a write) or answered (a read).
    Ok,
    /// It was refused with an error reply: not acknowledged (a write may still have reached
    /// some replicas: nothing is rolled back).
    Fail,
    /// Its outcome is unknown (no answer in time, the connection broke), or, for the fault
    /// executor, something happened (a fault started or ended).
    Info,
}

/// Which workload an operation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Each client writes increasing integers to its own keys and reads keys through any node.
    Register,
    /// Each key is written once; every acknowledged key must be readable after healing.
    Set,
    /// Uploads; every acknowledged file must download byte-identical after healing.
    Files,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::Register, Workload::Set, Workload::Files];

    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Set => "set",
            Workload::Files => "files",
        }
    }

    /// `register`, `set` or `files`.
    pub fn parse(text: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.as_str() == text)
    }
}

/// The operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// A quorum write (`RC.SET`) of `value` to `key`.
    Write,
    /// A quorum read (`RC.GET`) of `key`; its `ok` carries the `value` read (absent: none).
    Read,
    /// A file upload (`key` the file's name, `value` its SHA-256); its `ok` carries the `id`.
    Upload,
    /// After healing: a quorum read of a written key through one node.
    FinalRead,
    /// After healing: a download of an acknowledged file (`value` the SHA-256 of the bytes).
    FinalDownload,
    /// After healing: one replica's copy of a key (`node` the replica, `version` what it holds,
    /// absent when nothing). The last round of readings is what the history keeps.
    ReplicaRead,
    /// The fault executor injected a fault (`key` its id, `fault` its description) or failed to.
    FaultStart,
    /// A fault ended (`key` its id).
    FaultEnd,
    /// Every fault was cleared: the run heals from here.
    Heal,
}

impl Op {
    /// Whether this is one of the workload's operations during the run (what the report counts
    /// as attempted).
    pub fn is_workload(self) -> bool {
        matches!(self, Op::Write | Op::Read | Op::Upload)
    }
}

/// Client number of the fault executor and of the checks after healing.
pub const NEMESIS: u32 = 0;

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Microseconds since the run started.
    pub time: u64,
    /// The client (1 and up), or [`NEMESIS`].
    pub client: u32,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// The node the operation went through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A replica's version, `<timestamp>-<origin node>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// A file's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why it failed: the error code (`NOQUORUM`, `TIMEOUT`, `unreachable`, an HTTP status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A fault as the faults API answered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<serde_json::Value>,
}

impl Event {
    /// An event with only its kind, time, client and operation set.
    pub fn new(kind: Kind, time: u64, client: u32, op: Op) -> Event {
        Event {
            kind,
            time,
            client,
            op,
            workload: None,
            node: None,
            key: None,
            value: None,
            version: None,
            id: None,
            error: None,
            fault: None,
        }
    }

    /// The same event as one JSON line (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads one line of a history.
    pub fn from_line(line: &str) -> Result<Event, String> {
        serde_json::from_str(line).map_err(|e| format!("not a history event ({e}): {line}"))
    }
}

/// Reads a whole history (blank lines skipped), naming the first bad line.
pub fn parse(text: &str) -> Result<Vec<Event>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| Event::from_line(l).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_leave_out_what_is_unset() {
        let mut e = Event::new(Kind::Ok, 1500, 3, Op::Read);
        e.workload = Some(Workload::Register);
        e.node = Some("n2".into());
        e.key = Some("r1".into());
        e.value = Some("7".into());
        let line = e.to_line();
        assert_eq!(
            line,
            r#"{"type":"ok","time":1500,"client":3,"op":"read","workload":"register","node":"n2","key":"r1","value":"7"}"#
        );
        assert_eq!(Event::from_line(&line).unwrap(), e);
        let both = format!(
            "{line}\n\n{}\n",
            Event::new(Kind::Info, 9, 0, Op::Heal).to_line()
        );
        assert_eq!(parse(&both).unwrap().len(), 2);
        assert!(parse("{\"type\":\"maybe\"}")
            .unwrap_err()
            .starts_with("line 1:"));
        assert_eq!(Workload::parse("files"), Some(Workload::Files));
        assert_eq!(Workload::parse("bank"), None);
    }
}
