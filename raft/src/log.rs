//! The in-memory Raft log: a snapshot followed by entries, the commit point, and which parts
//! still have to be handed out for persisting and applying.

use crate::types::{Command, Entry, Membership, Snapshot};

#[derive(Debug, Clone)]
pub(crate) struct RaftLog {
    /// The compacted prefix (always present; index 0 at bootstrap).
    pub snapshot: Snapshot,
    /// Entries from `snapshot.index + 1`, contiguous.
    pub entries: Vec<Entry>,
    pub committed: u64,
    /// Committed entries up to here were handed out by `ready()` for applying.
    pub handed_for_apply: u64,
    /// Entries from here on have not been handed out for persisting yet.
    pub unstable_from: u64,
    /// Stored entries at or above this must be dropped (set when a snapshot replaced the log).
    pub truncate_from: Option<u64>,
    /// The snapshot changed and has not been handed out for persisting.
    pub snapshot_unstable: bool,
}

impl RaftLog {
    pub fn new(snapshot: Snapshot, entries: Vec<Entry>, commit: u64) -> Self {
        let last = entries.last().map_or(snapshot.index, |e| e.index);
        let committed = commit.max(snapshot.index).min(last);
        RaftLog {
            handed_for_apply: snapshot.index,
            unstable_from: last + 1,
            snapshot,
            entries,
            committed,
            truncate_from: None,
            snapshot_unstable: false,
        }
    }

    pub fn first_index(&self) -> u64 {
        self.snapshot.index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.index, |e| e.index)
    }

    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.term, |e| e.term)
    }

    /// Term at `index`: known for the snapshot's last entry and every entry after it.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        self.entries.get((index - self.snapshot.index - 1) as usize)
    }

    /// Entries `lo..=hi` (both must be in the log).
    pub fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        if hi < lo {
            return &[];
        }
        let base = self.snapshot.index + 1;
        &self.entries[(lo - base) as usize..=(hi - base) as usize]
    }

    pub fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index) == Some(term)
    }

    /// §5.4.1: a candidate's log is at least as up-to-date as ours.
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Appends one entry at the end (leader).
    pub fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.entries.push(entry);
    }

    /// Merges entries received after a matching `prev`: skips those already present, and at the
    /// first entry whose term differs drops it and everything after (§5.3). Returns whether any
    /// existing entry was dropped.
    pub fn merge(&mut self, entries: &[Entry]) -> bool {
        let mut truncated = false;
        for (i, e) in entries.iter().enumerate() {
            match self.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    assert!(
                        e.index > self.committed,
                        "raft invariant: conflicting entry at {} at or below commit {}",
                        e.index,
                        self.committed
                    );
                    let keep = (e.index - self.snapshot.index - 1) as usize;
                    self.entries.truncate(keep);
                    truncated = true;
                }
                None => {
                    if e.index <= self.snapshot.index {
                        // Already compacted into the snapshot: committed, hence identical.
                        continue;
                    }
                }
            }
            self.unstable_from = self.unstable_from.min(e.index);
            self.entries.extend(entries[i..].iter().cloned());
            break;
        }
        truncated
    }

    pub fn commit_to(&mut self, index: u64) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "raft invariant: commit {} beyond last index {}",
                index,
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Replaces the prefix up to `snapshot.index` by the snapshot. With `keep_tail` the entries
    /// after it stay (they are known to follow it); otherwise the whole log is dropped.
    pub fn install(&mut self, snapshot: Snapshot, keep_tail: bool) {
        let index = snapshot.index;
        if keep_tail {
            let drop = (index.saturating_sub(self.snapshot.index) as usize).min(self.entries.len());
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
            self.truncate_from = Some(self.truncate_from.map_or(index + 1, |t| t.min(index + 1)));
            self.unstable_from = index + 1;
        }
        self.snapshot = snapshot;
        self.snapshot_unstable = true;
        self.unstable_from = self.unstable_from.max(index + 1);
        self.committed = self.committed.max(index);
        self.handed_for_apply = self.handed_for_apply.max(index);
    }

    /// Configuration in force at `index` (the newest config entry at or before it, else the
    /// snapshot's), with the index it came from.
    pub fn membership_at(&self, index: u64) -> (Membership, u64) {
        let upto = index.min(self.last_index());
        if upto > self.snapshot.index {
            for e in self.slice(self.first_index(), upto).iter().rev() {
                if let Command::Config(m) = &e.command {
                    return (m.clone(), e.index);
                }
            }
        }
        (self.snapshot.membership.clone(), self.snapshot.index)
    }

    /// Index of the last entry with `term` at or below `upto`, if the log still holds one.
    pub fn last_index_of_term(&self, term: u64, upto: u64) -> Option<u64> {
        let mut i = upto.min(self.last_index());
        while i >= self.first_index() {
            match self.term(i) {
                Some(t) if t == term => return Some(i),
                Some(t) if t < term => return None,
                _ => {}
            }
            i -= 1;
        }
        None
    }
}
