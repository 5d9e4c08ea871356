//! What a node keeps on stable storage (`Persisted`), the incremental updates `Ready` hands out
//! (`PersistUpdate`), and how an update is folded into the stored state.

use serde::{Deserialize, Serialize};

use crate::types::{DecodeError, Entry, HardState, Membership, NodeId, Snapshot};

/// Everything a node needs to restart: a node rebuilt from this alone is correct.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Persisted {
    pub hard_state: HardState,
    /// Always present; index 0 holds the bootstrap configuration.
    pub snapshot: Snapshot,
    /// Log entries after the snapshot, contiguous from `snapshot.index + 1`.
    pub entries: Vec<Entry>,
}

/// Changes to write, in this order: the hard state, the snapshot, the truncation, the entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistUpdate {
    /// The complete hard state to store.
    pub hard_state: HardState,
    /// A new snapshot: store it and drop every stored entry at or below its index.
    pub snapshot: Option<Snapshot>,
    /// Drop every stored entry at or above this index.
    pub truncate_from: Option<u64>,
    /// Append these, first dropping any stored entry at or above `entries[0].index`.
    pub entries: Vec<Entry>,
}

impl Persisted {
    /// The state of a founding member: an empty log and `voters` as the configuration.
    pub fn bootstrap<I, S>(voters: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<NodeId>,
    {
        Persisted {
            snapshot: Snapshot {
                membership: Membership::new(voters),
                ..Snapshot::default()
            },
            ..Persisted::default()
        }
    }

    /// The state of a node that will be added later: it knows no configuration and waits for a
    /// leader to replicate one to it.
    pub fn joining() -> Self {
        Persisted::default()
    }

    /// Index of the last stored entry (the snapshot's index when there are no entries).
    pub fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.index, |e| e.index)
    }

    /// Term of the stored entry at `index`, if it is stored or is the snapshot's last entry.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        if index < self.snapshot.index {
            return None;
        }
        let offset = (index - self.snapshot.index - 1) as usize;
        self.entries.get(offset).map(|e| e.term)
    }

    /// Folds an update into the stored state, as a storage engine would.
    pub fn apply(&mut self, update: &PersistUpdate) {
        self.hard_state = update.hard_state.clone();
        if let Some(snapshot) = &update.snapshot {
            self.entries.retain(|e| e.index > snapshot.index);
            self.snapshot = snapshot.clone();
            // Whatever is left must continue the snapshot; anything else is unusable.
            if self
                .entries
                .first()
                .is_some_and(|e| e.index != snapshot.index + 1)
            {
                self.entries.clear();
            }
        }
        if let Some(from) = update.truncate_from {
            self.entries.retain(|e| e.index < from);
        }
        if let Some(first) = update.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(update.entries.iter().cloned());
        }
    }

    /// The JSON form, for a storage engine that keeps one blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("persisted raft state always serializes")
    }

    /// Parses the JSON form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| DecodeError {
            what: "persisted state",
            reason: e.to_string(),
        })
    }
}
