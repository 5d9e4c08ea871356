//! `RaftNode`: one Raft participant as a pure state machine. Inputs are `tick`, `step`,
//! `propose`, `propose_membership`, `campaign` and `snapshot`; outputs come out of `ready`.

use std::collections::BTreeMap;

use crate::config::{Config, ConfigError};
use crate::log::RaftLog;
use crate::rng::SplitMix64;
use crate::storage::{PersistUpdate, Persisted};
use crate::types::{
    Command, ConflictHint, Entry, HardState, Membership, MembershipChange, Message, MessageBody,
    NodeId, Snapshot,
};

/// What a node currently is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    Candidate,
    Leader,
}

/// How the leader replicates to one follower (as in etcd raft).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationState {
    /// Where the follower's log matches is unknown: one AppendEntries per heartbeat until a
    /// response tells.
    Probe,
    /// The follower matches: entries are sent as soon as they are appended, optimistically
    /// advancing `next_index`.
    Replicate,
}

/// The leader's view of one follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub match_index: u64,
    pub next_index: u64,
    pub state: ReplicationState,
    /// In `Probe`: a request is out; wait for its answer or the next heartbeat.
    pub paused: bool,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
}

/// Work for the caller. Contract: first write `persist` to stable storage, then send
/// `messages`, then restore `apply_snapshot` (if any) and apply `committed` in order; then call
/// `advance` with this value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    pub persist: Option<PersistUpdate>,
    pub messages: Vec<Message>,
    /// Replace the application state with this snapshot's data before applying `committed`
    /// (after a restart, or when the leader sent a snapshot).
    pub apply_snapshot: Option<Snapshot>,
    /// Newly committed entries, in index order, starting right after what was applied.
    pub committed: Vec<Entry>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.persist.is_none()
            && self.messages.is_empty()
            && self.apply_snapshot.is_none()
            && self.committed.is_empty()
    }
}

/// Why a proposal was refused (nothing was appended).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader { leader_hint: Option<NodeId> },
    #[error("a membership change is still uncommitted")]
    ConfigChangePending,
    #[error("the leader has not committed an entry of its own term yet")]
    LeaderNotReady,
    #[error("{0} is already a member")]
    AlreadyMember(NodeId),
    #[error("{0} is not a member")]
    NotMember(NodeId),
    #[error("cannot remove the last member")]
    LastMember,
}

/// Why `snapshot` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("index {index} is not applied yet (applied up to {applied})")]
    NotApplied { index: u64, applied: u64 },
    #[error("index {index} is already compacted (snapshot at {snapshot_index})")]
    AlreadyCompacted { index: u64, snapshot_index: u64 },
}

/// Why `step` refused a message; the node is unchanged. A correct peer never sends one: it comes
/// from a bug or a forgery, and the caller logs and counts it. A node never panics on a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("a message for {to} reached {me}")]
    NotForMe { me: NodeId, to: NodeId },
    /// An AppendEntries or InstallSnapshot of the term this node leads: two leaders in one term
    /// would break election safety (§5.2), so it is not believed.
    #[error("{from} claims to lead term {term}, which this node leads")]
    SecondLeader { from: NodeId, term: u64 },
    #[error("malformed {kind} from {from}: {why}")]
    Malformed {
        from: NodeId,
        kind: &'static str,
        why: String,
    },
}

/// Why a node could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("persisted state is inconsistent: {0}")]
    State(String),
}

enum Poll {
    Won,
    Lost,
    Pending,
}

/// One Raft node. Deterministic: its only randomness is the seeded generator given to `new`.
#[derive(Debug, Clone)]
pub struct RaftNode {
    config: Config,
    term: u64,
    vote: Option<NodeId>,
    log: RaftLog,
    role: Role,
    leader_id: Option<NodeId>,
    /// Latest configuration in the log, committed or not (thesis §4.1).
    membership: Membership,
    /// Index of the entry (or snapshot) that carried `membership`.
    membership_index: u64,
    progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    election_elapsed: u64,
    heartbeat_elapsed: u64,
    randomized_timeout: u64,
    rng: SplitMix64,
    msgs: Vec<Message>,
    last_applied: u64,
    persisted_hard_state: HardState,
    apply_snapshot: Option<Snapshot>,
}

impl RaftNode {
    /// Builds a node from its persisted state alone (a fresh node passes
    /// `Persisted::bootstrap(..)` or `Persisted::joining()`). `rng_seed` drives the election
    /// timeouts; give each node and each restart a different seed (in production, derive it from
    /// an OS random source outside this crate).
    pub fn new(config: Config, persisted: Persisted, rng_seed: u64) -> Result<Self, InitError> {
        config.validate()?;
        check_persisted(&persisted)?;
        let Persisted {
            hard_state,
            snapshot,
            entries,
        } = persisted;
        let log = RaftLog::new(snapshot, entries, hard_state.commit);
        let (membership, membership_index) = log.membership_at(log.last_index());
        let apply_snapshot = (log.snapshot.index > 0).then(|| log.snapshot.clone());
        let mut node = RaftNode {
            term: hard_state.current_term,
            vote: hard_state.voted_for.clone(),
            last_applied: log.snapshot.index,
            log,
            role: Role::Follower,
            leader_id: None,
            membership,
            membership_index,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: config.election_timeout_min,
            rng: SplitMix64::new(rng_seed),
            msgs: Vec::new(),
            persisted_hard_state: hard_state,
            apply_snapshot,
            config,
        };
        node.reset_election_timeout();
        Ok(node)
    }

    // ----- observers -----

    pub fn id(&self) -> &str {
        &self.config.id
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn term(&self) -> u64 {
        self.term
    }
    pub fn voted_for(&self) -> Option<&str> {
        self.vote.as_deref()
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
    /// The leader of the current term, when known.
    pub fn leader_id(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }
    pub fn commit_index(&self) -> u64 {
        self.log.committed
    }
    /// Last index the caller confirmed applied through `advance`.
    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }
    pub fn first_index(&self) -> u64 {
        self.log.first_index()
    }
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }
    pub fn last_term(&self) -> u64 {
        self.log.last_term()
    }
    /// Term of the entry at `index`, when the log (or its snapshot boundary) still knows it.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.log.term(index)
    }
    /// The current snapshot (index 0 before any compaction).
    pub fn snapshot_meta(&self) -> &Snapshot {
        &self.log.snapshot
    }
    /// Entries after the snapshot.
    pub fn entries(&self) -> &[Entry] {
        &self.log.entries
    }
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        self.log.entry(index)
    }
    /// The configuration in force (the newest in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    /// Index of the entry that carried the configuration in force.
    pub fn membership_index(&self) -> u64 {
        self.membership_index
    }
    pub fn hard_state(&self) -> HardState {
        HardState {
            current_term: self.term,
            voted_for: self.vote.clone(),
            commit: self.log.committed,
        }
    }
    /// The leader's view of `peer`.
    pub fn progress(&self, peer: &str) -> Option<&Progress> {
        self.progress.get(peer)
    }

    // ----- inputs -----

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        match self.role {
            Role::Leader => self.tick_leader(),
            Role::Follower | Role::Candidate => {
                self.election_elapsed += 1;
                if self.election_elapsed >= self.randomized_timeout {
                    if self.may_campaign() {
                        self.campaign();
                    } else {
                        // Not a voter: wait to be added (or stay removed). The leader has gone
                        // quiet, so forget it: the lease is over and votes count again.
                        if self.role == Role::Candidate {
                            let term = self.term;
                            self.become_follower(term, None);
                        }
                        self.leader_id = None;
                    }
                }
            }
        }
    }

    /// Starts an election now (§5.2), as an election timeout would. Ignored by leaders and by
    /// nodes that may not campaign (see `may_campaign`).
    pub fn campaign(&mut self) {
        if self.role == Role::Leader || !self.may_campaign() {
            return;
        }
        let term = self.term + 1;
        self.reset(term);
        self.role = Role::Candidate;
        self.vote = Some(self.config.id.clone());
        self.votes.insert(self.config.id.clone(), true);
        match self.poll() {
            Poll::Won => self.become_leader(),
            Poll::Lost | Poll::Pending => {
                let body = MessageBody::RequestVote {
                    last_log_index: self.log.last_index(),
                    last_log_term: self.log.last_term(),
                };
                let peers: Vec<NodeId> = self.peers().collect();
                for peer in peers {
                    self.send(peer, body.clone());
                }
            }
        }
    }

    /// Handles one message from another node. A message no correct peer sends (see
    /// `StepError`) is refused without any change.
    pub fn step(&mut self, m: Message) -> Result<(), StepError> {
        if m.to != self.config.id {
            return Err(StepError::NotForMe {
                me: self.config.id.clone(),
                to: m.to,
            });
        }
        check_shape(&m)?;
        if m.term > self.term {
            if matches!(m.body, MessageBody::RequestVote { .. }) && self.in_lease() {
                // Thesis §4.2.3: a node that hears from a live leader ignores disruptive votes.
                return Ok(());
            }
            let leader = m.is_from_leader().then(|| m.from.clone());
            self.become_follower(m.term, leader);
        } else if m.term < self.term {
            // §5.1: reject stale requests with our term, so the sender learns it is stale.
            match m.body {
                MessageBody::AppendEntries { .. } | MessageBody::InstallSnapshot { .. } => {
                    self.send(
                        m.from,
                        MessageBody::AppendEntriesResponse {
                            success: false,
                            match_index: 0,
                            conflict: None,
                        },
                    );
                }
                MessageBody::RequestVote { .. } => {
                    self.send(m.from, MessageBody::RequestVoteResponse { granted: false });
                }
                _ => {}
            }
            return Ok(());
        } else if self.role == Role::Leader && m.is_from_leader() {
            return Err(StepError::SecondLeader {
                from: m.from,
                term: m.term,
            });
        }
        let from = m.from;
        match m.body {
            MessageBody::RequestVote {
                last_log_index,
                last_log_term,
            } => self.handle_request_vote(from, last_log_index, last_log_term),
            MessageBody::RequestVoteResponse { granted } => {
                if self.role == Role::Candidate {
                    self.votes.entry(from).or_insert(granted);
                    match self.poll() {
                        Poll::Won => self.become_leader(),
                        Poll::Lost => {
                            let term = self.term;
                            self.become_follower(term, None);
                        }
                        Poll::Pending => {}
                    }
                }
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => {
                self.follow(&from);
                self.handle_append(from, prev_log_index, prev_log_term, entries, leader_commit);
            }
            MessageBody::AppendEntriesResponse {
                success,
                match_index,
                conflict,
            } => {
                if self.role == Role::Leader {
                    self.handle_append_response(from, success, match_index, conflict)?;
                }
            }
            MessageBody::InstallSnapshot { snapshot } => {
                self.follow(&from);
                self.handle_snapshot(from, snapshot);
            }
        }
        Ok(())
    }

    /// Appends application data (leader only) and returns its index. The index is committed
    /// once it comes out of `ready().committed`; a proposal can still be lost if leadership
    /// changes first.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64, ProposeError> {
        self.ensure_leader()?;
        Ok(self.append(Command::App(data)))
    }

    /// Proposes adding or removing one voter (thesis §4.1). Refused while another change is
    /// uncommitted, and until the leader committed an entry of its own term (the fix for the
    /// single-server change bug described on raft-dev in 2015).
    pub fn propose_membership(&mut self, change: MembershipChange) -> Result<u64, ProposeError> {
        self.ensure_leader()?;
        if self.membership_index > self.log.committed {
            return Err(ProposeError::ConfigChangePending);
        }
        if self.log.term(self.log.committed) != Some(self.term) {
            return Err(ProposeError::LeaderNotReady);
        }
        let mut next = self.membership.clone();
        match change {
            MembershipChange::AddNode(id) => {
                if !next.voters.insert(id.clone()) {
                    return Err(ProposeError::AlreadyMember(id));
                }
            }
            MembershipChange::RemoveNode(id) => {
                if !next.contains(&id) {
                    return Err(ProposeError::NotMember(id));
                }
                if next.voters.len() == 1 {
                    return Err(ProposeError::LastMember);
                }
                next.voters.remove(&id);
            }
        }
        Ok(self.append(Command::Config(next)))
    }

    /// Log compaction (§7): the caller's state after applying `index` is `data`; entries up to
    /// `index` are dropped and the snapshot is handed out for persisting.
    pub fn snapshot(&mut self, index: u64, data: Vec<u8>) -> Result<(), SnapshotError> {
        if index <= self.log.snapshot.index {
            return Err(SnapshotError::AlreadyCompacted {
                index,
                snapshot_index: self.log.snapshot.index,
            });
        }
        if index > self.last_applied {
            return Err(SnapshotError::NotApplied {
                index,
                applied: self.last_applied,
            });
        }
        let term = self
            .log
            .term(index)
            .expect("an applied, uncompacted index is in the log");
        let (membership, _) = self.log.membership_at(index);
        self.log.install(
            Snapshot {
                index,
                term,
                membership,
                data,
            },
            true,
        );
        Ok(())
    }

    // ----- outputs -----

    /// Whether `ready` would return any work.
    pub fn has_ready(&self) -> bool {
        !self.msgs.is_empty()
            || self.hard_state() != self.persisted_hard_state
            || self.log.unstable_from <= self.log.last_index()
            || self.log.snapshot_unstable
            || self.log.truncate_from.is_some()
            || self.apply_snapshot.is_some()
            || self.log.committed > self.log.handed_for_apply
    }

    /// Hands out everything to persist, send and apply since the last call. See `Ready` for the
    /// order in which the caller must act on it.
    pub fn ready(&mut self) -> Ready {
        let hard_state = self.hard_state();
        let last = self.log.last_index();
        let unstable_from = self.log.unstable_from.max(self.log.first_index());
        let dirty = hard_state != self.persisted_hard_state
            || unstable_from <= last
            || self.log.snapshot_unstable
            || self.log.truncate_from.is_some();
        let persist = dirty.then(|| PersistUpdate {
            hard_state: hard_state.clone(),
            snapshot: self
                .log
                .snapshot_unstable
                .then(|| self.log.snapshot.clone()),
            truncate_from: self.log.truncate_from.take(),
            entries: self.log.slice(unstable_from, last).to_vec(),
        });
        self.persisted_hard_state = hard_state;
        self.log.unstable_from = last + 1;
        self.log.snapshot_unstable = false;
        let committed = if self.log.committed > self.log.handed_for_apply {
            self.log
                .slice(self.log.handed_for_apply + 1, self.log.committed)
                .to_vec()
        } else {
            Vec::new()
        };
        self.log.handed_for_apply = self.log.committed;
        Ready {
            persist,
            messages: std::mem::take(&mut self.msgs),
            apply_snapshot: self.apply_snapshot.take(),
            committed,
        }
    }

    /// Confirms that `ready` was acted on: its entries and snapshot are applied.
    pub fn advance(&mut self, ready: &Ready) {
        if let Some(s) = &ready.apply_snapshot {
            self.last_applied = self.last_applied.max(s.index);
        }
        if let Some(e) = ready.committed.last() {
            self.last_applied = self.last_applied.max(e.index);
        }
    }

    // ----- roles -----

    fn reset(&mut self, term: u64) {
        if term != self.term {
            self.term = term;
            self.vote = None;
        }
        self.leader_id = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_election_timeout();
        self.votes.clear();
        self.progress.clear();
    }

    fn reset_election_timeout(&mut self) {
        self.randomized_timeout = self.rng.range(
            self.config.election_timeout_min,
            self.config.election_timeout_max,
        );
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader_id = leader;
    }

    fn become_leader(&mut self) {
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader_id = Some(self.config.id.clone());
        self.sync_progress();
        // §5.4.2 / §8: a no-op of the new term lets earlier entries commit.
        self.append(Command::Noop);
    }

    /// Accepts `from` as the leader of the current term (a candidate steps down, §5.2). A
    /// leader never gets here: `step` refuses a second leader of its term.
    fn follow(&mut self, from: &str) {
        match self.role {
            Role::Leader => {}
            Role::Candidate => {
                let term = self.term;
                self.become_follower(term, Some(from.to_string()));
            }
            Role::Follower => {
                self.leader_id = Some(from.to_string());
                self.election_elapsed = 0;
            }
        }
    }

    /// Voters campaign. So does a node whose latest configuration removed it while that
    /// configuration is not known committed (thesis §4.2.2: it may still be needed, e.g. when
    /// its log is the only up-to-date one); it does not count its own vote. A node without any
    /// configuration (waiting to be added) never campaigns.
    pub fn may_campaign(&self) -> bool {
        self.membership.contains(&self.config.id)
            || (!self.membership.voters.is_empty() && self.membership_index > self.log.committed)
    }

    fn in_lease(&self) -> bool {
        self.config.check_quorum
            && match self.role {
                Role::Leader => true,
                Role::Follower => {
                    self.leader_id.is_some()
                        && self.election_elapsed < self.config.election_timeout_min
                }
                Role::Candidate => false,
            }
    }

    fn poll(&self) -> Poll {
        let count = |want: bool| {
            self.votes
                .iter()
                .filter(|(id, v)| **v == want && self.membership.contains(id))
                .count()
        };
        let quorum = self.membership.quorum();
        if count(true) >= quorum {
            Poll::Won
        } else if count(false) > self.membership.voters.len() - quorum {
            Poll::Lost
        } else {
            Poll::Pending
        }
    }

    fn ensure_leader(&self) -> Result<(), ProposeError> {
        if self.role == Role::Leader {
            Ok(())
        } else {
            Err(ProposeError::NotLeader {
                leader_hint: self.leader_id.clone(),
            })
        }
    }

    fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.membership
            .voters
            .iter()
            .filter(move |v| **v != self.config.id)
            .cloned()
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.msgs.push(Message {
            from: self.config.id.clone(),
            to,
            term: self.term,
            body,
        });
    }

    // ----- leader -----

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.config.check_quorum && self.election_elapsed >= self.config.election_timeout_min {
            self.election_elapsed = 0;
            if !self.quorum_active() {
                let term = self.term;
                self.become_follower(term, None);
                return;
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_interval {
            self.heartbeat_elapsed = 0;
            for pr in self.progress.values_mut() {
                pr.paused = false;
            }
            self.broadcast_append();
        }
    }

    /// Whether a majority was heard from since the last check; clears the marks.
    fn quorum_active(&mut self) -> bool {
        let mut active = usize::from(self.membership.contains(&self.config.id));
        for (id, pr) in self.progress.iter_mut() {
            if pr.recent_active && self.membership.contains(id) {
                active += 1;
            }
            pr.recent_active = false;
        }
        active >= self.membership.quorum()
    }

    /// Keeps one progress per voter other than self.
    fn sync_progress(&mut self) {
        let next = self.log.last_index() + 1;
        let me = self.config.id.clone();
        let voters = self.membership.voters.clone();
        self.progress.retain(|id, _| voters.contains(id));
        for v in voters {
            if v != me {
                self.progress.entry(v).or_insert(Progress {
                    match_index: 0,
                    next_index: next,
                    state: ReplicationState::Probe,
                    paused: false,
                    recent_active: true,
                });
            }
        }
    }

    fn append(&mut self, command: Command) -> u64 {
        let index = self.log.last_index() + 1;
        if let Command::Config(m) = &command {
            self.membership = m.clone();
            self.membership_index = index;
        }
        self.log.push(Entry {
            term: self.term,
            index,
            command,
        });
        self.sync_progress();
        self.broadcast_append();
        if self.maybe_commit() {
            self.on_commit_advanced();
        }
        index
    }

    fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().cloned().collect();
        for peer in peers {
            self.send_append(&peer);
        }
    }

    fn send_append(&mut self, to: &str) {
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(to) else {
            return;
        };
        if pr.paused {
            return;
        }
        pr.next_index = pr.next_index.min(last + 1);
        let prev = pr.next_index - 1;
        let body = match self.log.term(prev) {
            None => {
                // The follower needs entries we compacted away (§7).
                pr.state = ReplicationState::Probe;
                pr.paused = true;
                MessageBody::InstallSnapshot {
                    snapshot: self.log.snapshot.clone(),
                }
            }
            Some(prev_term) => {
                let hi = last.min(prev + self.config.max_entries_per_message as u64);
                let entries = self.log.slice(prev + 1, hi).to_vec();
                match pr.state {
                    ReplicationState::Replicate => pr.next_index = hi + 1,
                    ReplicationState::Probe => pr.paused = true,
                }
                MessageBody::AppendEntries {
                    prev_log_index: prev,
                    prev_log_term: prev_term,
                    entries,
                    leader_commit: self.log.committed,
                }
            }
        };
        self.send(to.to_string(), body);
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        success: bool,
        match_index: u64,
        conflict: Option<ConflictHint>,
    ) -> Result<(), StepError> {
        let last = self.log.last_index();
        // An answer of this term answers this leader's own AppendEntries, which never reach past
        // its log (the leader's log only grows within its term).
        let beyond = match (success, &conflict) {
            (true, _) => (match_index > last).then_some("match_index"),
            (false, Some(hint)) => (hint.rejected_index > last).then_some("rejected_index"),
            (false, None) => None,
        };
        if let Some(field) = beyond {
            return Err(StepError::Malformed {
                from,
                kind: "AppendEntriesResponse",
                why: format!("{field} beyond the leader's last index {last}"),
            });
        }
        let Some(pr) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        pr.recent_active = true;
        if success {
            let updated = match_index > pr.match_index;
            if updated {
                pr.match_index = match_index;
            }
            if pr.state == ReplicationState::Probe {
                pr.state = ReplicationState::Replicate;
                pr.next_index = pr.match_index + 1;
                pr.paused = false;
            }
            pr.next_index = pr.next_index.max(pr.match_index + 1);
            let more = pr.next_index <= last;
            if updated && self.maybe_commit() {
                self.on_commit_advanced();
            } else if more {
                self.send_append(&from);
            }
            return Ok(());
        }
        let Some(hint) = conflict else {
            return Ok(());
        };
        let stale = match pr.state {
            ReplicationState::Replicate => hint.rejected_index <= pr.match_index,
            ReplicationState::Probe => hint.rejected_index + 1 != pr.next_index,
        };
        if stale {
            return Ok(());
        }
        // Fast backtracking: skip the follower's whole conflicting term.
        let guess = match hint.term {
            Some(t) => match self.log.last_index_of_term(t, hint.rejected_index) {
                Some(i) => i + 1,
                None => hint.index,
            },
            None => hint.index,
        };
        let pr = self.progress.get_mut(&from).expect("checked above");
        pr.next_index = guess.min(hint.rejected_index).max(pr.match_index + 1);
        pr.state = ReplicationState::Probe;
        pr.paused = false;
        self.send_append(&from);
        Ok(())
    }

    /// §5.3/§5.4.2: commit the highest index stored on a majority, but only if it is of the
    /// current term (figure 8). Returns whether the commit index moved.
    fn maybe_commit(&mut self) -> bool {
        if self.role != Role::Leader || self.membership.voters.is_empty() {
            return false;
        }
        let mut matches: Vec<u64> = self
            .membership
            .voters
            .iter()
            .map(|v| {
                if *v == self.config.id {
                    self.log.last_index()
                } else {
                    self.progress.get(v).map_or(0, |p| p.match_index)
                }
            })
            .collect();
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matches[matches.len() / 2];
        if candidate > self.log.committed && self.log.term(candidate) == Some(self.term) {
            self.log.commit_to(candidate);
            return true;
        }
        false
    }

    fn on_commit_advanced(&mut self) {
        self.broadcast_append();
        // Thesis §4.2.2: a leader that is not in the committed configuration steps down.
        if !self.membership.contains(&self.config.id) && self.membership_index <= self.log.committed
        {
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    // ----- follower -----

    fn handle_request_vote(&mut self, from: NodeId, last_index: u64, last_term: u64) {
        let can_vote = self.vote.as_deref() == Some(from.as_str())
            || (self.vote.is_none() && self.leader_id.is_none());
        // §5.4.1: only for a candidate whose log is at least as up-to-date as ours.
        let granted = can_vote && self.log.is_up_to_date(last_index, last_term);
        if granted {
            self.vote = Some(from.clone());
            self.election_elapsed = 0;
        }
        self.send(from, MessageBody::RequestVoteResponse { granted });
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
    ) {
        if prev < self.log.committed {
            // Everything up to our commit matches already; tell the leader where we are.
            let committed = self.log.committed;
            self.send(from, success(committed));
            return;
        }
        if self.log.match_term(prev, prev_term) {
            let last_new = prev + entries.len() as u64;
            let has_config = entries
                .iter()
                .any(|e| matches!(e.command, Command::Config(_)));
            let truncated = self.log.merge(&entries);
            if truncated || has_config {
                self.refresh_membership();
            }
            self.log.commit_to(leader_commit.min(last_new));
            self.send(from, success(last_new));
            return;
        }
        let hint = match self.log.term(prev) {
            None => ConflictHint {
                rejected_index: prev,
                index: self.log.last_index() + 1,
                term: None,
            },
            Some(t) => {
                let mut index = prev;
                while index > self.log.committed + 1 && self.log.term(index - 1) == Some(t) {
                    index -= 1;
                }
                ConflictHint {
                    rejected_index: prev,
                    index,
                    term: Some(t),
                }
            }
        };
        self.send(
            from,
            MessageBody::AppendEntriesResponse {
                success: false,
                match_index: 0,
                conflict: Some(hint),
            },
        );
    }

    fn handle_snapshot(&mut self, from: NodeId, snapshot: Snapshot) {
        if snapshot.index <= self.log.committed {
            let committed = self.log.committed;
            self.send(from, success(committed));
            return;
        }
        let index = snapshot.index;
        let keep_tail = self.log.match_term(snapshot.index, snapshot.term);
        self.log.install(snapshot.clone(), keep_tail);
        self.apply_snapshot = Some(snapshot);
        self.refresh_membership();
        self.send(from, success(index));
    }

    fn refresh_membership(&mut self) {
        let (m, index) = self.log.membership_at(self.log.last_index());
        self.membership = m;
        self.membership_index = index;
        if self.role == Role::Leader {
            self.sync_progress();
        }
    }
}

fn success(match_index: u64) -> MessageBody {
    MessageBody::AppendEntriesResponse {
        success: true,
        match_index,
        conflict: None,
    }
}

/// Refuses a message whose content contradicts itself, before it changes anything: entries
/// that do not follow `prev_log_index` one by one, or terms that go backwards or pass the
/// message's term. A correct leader never sends those; taking them would corrupt the log.
fn check_shape(m: &Message) -> Result<(), StepError> {
    let malformed = |kind, why: String| StepError::Malformed {
        from: m.from.clone(),
        kind,
        why,
    };
    match &m.body {
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            ..
        } => {
            let kind = "AppendEntries";
            if *prev_log_term > m.term {
                return Err(malformed(
                    kind,
                    format!("prev_log_term {prev_log_term} above term {}", m.term),
                ));
            }
            let (mut index, mut term) = (*prev_log_index, *prev_log_term);
            for e in entries {
                let expected = index.checked_add(1);
                if Some(e.index) != expected {
                    return Err(malformed(
                        kind,
                        format!(
                            "entry {} where {} was expected",
                            e.index,
                            index.saturating_add(1)
                        ),
                    ));
                }
                if e.term < term || e.term > m.term {
                    return Err(malformed(
                        kind,
                        format!(
                            "entry {} has term {} outside {term}..={}",
                            e.index, e.term, m.term
                        ),
                    ));
                }
                (index, term) = (e.index, e.term);
            }
        }
        MessageBody::InstallSnapshot { snapshot } if snapshot.term > m.term => {
            return Err(malformed(
                "InstallSnapshot",
                format!("snapshot term {} above term {}", snapshot.term, m.term),
            ));
        }
        _ => {}
    }
    Ok(())
}

fn check_persisted(p: &Persisted) -> Result<(), InitError> {
    let mut term = p.snapshot.term;
    for (expect, e) in (p.snapshot.index + 1..).zip(&p.entries) {
        if e.index != expect {
            return Err(InitError::State(format!(
                "entry index {} where {} was expected",
                e.index, expect
            )));
        }
        if e.term < term {
            return Err(InitError::State(format!(
                "entry {} has term {} below the previous term {}",
                e.index, e.term, term
            )));
        }
        term = e.term;
    }
    if p.hard_state.current_term < term {
        return Err(InitError::State(format!(
            "current term {} is below the last log term {}",
            p.hard_state.current_term, term
        )));
    }
    Ok(())
}
