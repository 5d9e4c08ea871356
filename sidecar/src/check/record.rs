//! The history as it is recorded: every event in the order it happened, kept for judging,
//! written as one JSON line each to the history file (if any) as it comes, and counted into
//! the run's progress.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rcluster_domain::check::history::{Event, Kind, Op};

use crate::api::CheckProgress;

pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
    file: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
    pub progress: Arc<Mutex<CheckProgress>>,
}

/// Locks a mutex, also after a panic elsewhere (the data is plain counters and events).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recorder {
    /// A recorder writing to `history` (created or truncated) when given.
    pub fn new(
        history: Option<&Path>,
        progress: Arc<Mutex<CheckProgress>>,
    ) -> Result<Recorder, String> {
        let file = match history {
            Some(path) => {
                let f = std::fs::File::create(path)
                    .map_err(|e| format!("cannot write the history {}: {e}", path.display()))?;
                Some(Mutex::new(std::io::BufWriter::new(f)))
            }
            None => None,
        };
        Ok(Recorder {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
            file,
            progress,
        })
    }

    /// Microseconds since the run started.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// A new event stamped now.
    pub fn event(&self, kind: Kind, client: u32, op: Op) -> Event {
        Event::new(kind, self.now(), client, op)
    }

    pub fn record(&self, e: Event) {
        {
            let mut p = lock(&self.progress);
            match (e.kind, e.op) {
                (Kind::Invoke, op) if op.is_workload() => p.attempted += 1,
                (Kind::Ok, op) if op.is_workload() => p.acknowledged += 1,
                (Kind::Fail | Kind::Info, op) if op.is_workload() => p.failed += 1,
                (Kind::Info, Op::FaultStart) => p.faults_injected += 1,
                _ => {}
            }
        }
        if let Some(f) = &self.file {
            let _ = writeln!(lock(f), "{}", e.to_line());
        }
        lock(&self.events).push(e);
    }

    pub fn phase(&self, phase: &str) {
        lock(&self.progress).phase = phase.to_string();
    }

    /// Every event so far; the file flushed.
    pub fn events(&self) -> Vec<Event> {
        if let Some(f) = &self.file {
            let _ = lock(f).flush();
        }
        lock(&self.events).clone()
    }
}
