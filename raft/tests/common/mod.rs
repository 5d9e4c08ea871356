//! Test harness for scenario tests: a few `RaftNode`s, their stored state and applied entries,
//! and a FIFO network whose links can be cut, driven message by message.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rcluster_raft::{
    Command, Config, Entry, HardState, Message, MessageBody, Persisted, RaftNode, Snapshot,
};

/// What one node's state machine saw: the snapshot it restored last, then entries in order.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

impl Applied {
    /// Application payloads applied since the last snapshot restore.
    pub fn data(&self) -> Vec<Vec<u8>> {
        self.entries
            .iter()
            .filter_map(|e| match &e.command {
                Command::App(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }
}

pub struct Cluster {
    pub nodes: BTreeMap<String, RaftNode>,
    pub storage: BTreeMap<String, Persisted>,
    pub applied: BTreeMap<String, Applied>,
    pub queue: VecDeque<Message>,
    /// Unordered pairs whose messages are dropped.
    pub cut: BTreeSet<(String, String)>,
    pub check_quorum: bool,
    seed: u64,
}

pub fn config(id: &str, check_quorum: bool) -> Config {
    let mut c = Config::new(id);
    c.check_quorum = check_quorum;
    c
}

/// An AppendEntries from `from` to `to` in `term`, after `prev` = (index, term).
pub fn append(
    from: &str,
    to: &str,
    term: u64,
    prev: (u64, u64),
    entries: Vec<Entry>,
    commit: u64,
) -> Message {
    Message {
        from: from.into(),
        to: to.into(),
        term,
        body: MessageBody::AppendEntries {
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries,
            leader_commit: commit,
        },
    }
}

/// A log of application entries with the given terms, indexes from 1.
pub fn log_with_terms(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, t)| Entry {
            term: *t,
            index: i as u64 + 1,
            command: Command::App(format!("i{}t{}", i + 1, t).into_bytes()),
        })
        .collect()
}

/// Stored state with `voters`, a log with `terms` and `current_term`.
pub fn state(voters: &[&str], terms: &[u64], current_term: u64) -> Persisted {
    let mut p = Persisted::bootstrap(voters.iter().copied());
    p.entries = log_with_terms(terms);
    p.hard_state = HardState {
        current_term,
        voted_for: None,
        commit: 0,
    };
    p
}

fn key(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl Cluster {
    /// Fresh founding members.
    pub fn new(ids: &[&str]) -> Cluster {
        let states = ids
            .iter()
            .map(|id| (*id, Persisted::bootstrap(ids.iter().copied())))
            .collect();
        Cluster::with_states(states, true)
    }

    /// Nodes built from the given stored states.
    pub fn with_states(states: Vec<(&str, Persisted)>, check_quorum: bool) -> Cluster {
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            storage: BTreeMap::new(),
            applied: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            check_quorum,
            seed: 1,
        };
        for (id, p) in states {
            c.storage.insert(id.to_string(), p);
            c.restart(id);
        }
        c
    }

    /// Adds a node that knows no configuration yet.
    pub fn add_joining(&mut self, id: &str) {
        self.storage.insert(id.to_string(), Persisted::joining());
        self.restart(id);
    }

    pub fn node(&self, id: &str) -> &RaftNode {
        &self.nodes[id]
    }

    pub fn node_mut(&mut self, id: &str) -> &mut RaftNode {
        self.nodes.get_mut(id).expect("node is up")
    }

    pub fn is_up(&self, id: &str) -> bool {
        self.nodes.contains_key(id)
    }

    /// Loses the node's memory; its stored state stays.
    pub fn crash(&mut self, id: &str) {
        self.nodes.remove(id);
        self.queue.retain(|m| m.to != id);
    }

    /// Rebuilds the node from its stored state only.
    pub fn restart(&mut self, id: &str) {
        self.seed += 1;
        let node = RaftNode::new(
            config(id, self.check_quorum),
            self.storage[id].clone(),
            self.seed,
        )
        .expect("valid state");
        self.nodes.insert(id.to_string(), node);
        self.applied.insert(id.to_string(), Applied::default());
        self.process(id);
    }

    pub fn cut_link(&mut self, a: &str, b: &str) {
        self.cut.insert(key(a, b));
    }

    /// Cuts every link of `id`.
    pub fn isolate(&mut self, id: &str) {
        let others: Vec<String> = self.storage.keys().filter(|o| *o != id).cloned().collect();
        for o in others {
            self.cut_link(id, &o);
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Persist, send, apply, advance: the Ready contract.
    pub fn process(&mut self, id: &str) {
        let Some(node) = self.nodes.get_mut(id) else {
            return;
        };
        let ready = node.ready();
        if let Some(update) = &ready.persist {
            self.storage.get_mut(id).expect("stored").apply(update);
        }
        self.queue.extend(ready.messages.iter().cloned());
        let applied = self.applied.get_mut(id).expect("up");
        if let Some(s) = &ready.apply_snapshot {
            applied.snapshot = Some(s.clone());
            applied.entries.clear();
        }
        applied.entries.extend(ready.committed.iter().cloned());
        node.advance(&ready);
    }

    /// Hands one message to its destination (unless the link is cut or it is down).
    pub fn deliver_one(&mut self, m: Message) {
        if self.cut.contains(&key(&m.from, &m.to)) {
            return;
        }
        let to = m.to.clone();
        if let Some(node) = self.nodes.get_mut(&to) {
            node.step(m).expect("a genuine message is taken");
            self.process(&to);
        }
    }

    /// Delivers until no message is in flight.
    pub fn deliver(&mut self) {
        let mut budget = 100_000;
        while let Some(m) = self.queue.pop_front() {
            self.deliver_one(m);
            budget -= 1;
            assert!(budget > 0, "message storm");
        }
    }

    /// Delivers messages, dropping those `drop` matches.
    pub fn deliver_except(&mut self, drop: impl Fn(&Message) -> bool) {
        while let Some(m) = self.queue.pop_front() {
            if !drop(&m) {
                self.deliver_one(m);
            }
        }
    }

    /// Takes the messages in flight without delivering them.
    pub fn take_messages(&mut self) -> Vec<Message> {
        self.queue.drain(..).collect()
    }

    /// Ticks every up node once and delivers everything, `n` times.
    pub fn tick_all(&mut self, n: usize) {
        for _ in 0..n {
            let ids: Vec<String> = self.nodes.keys().cloned().collect();
            for id in ids {
                self.node_mut(&id).tick();
                self.process(&id);
            }
            self.deliver();
        }
    }

    /// Makes `id` campaign and delivers everything.
    pub fn elect(&mut self, id: &str) {
        self.node_mut(id).campaign();
        self.process(id);
        self.deliver();
    }

    /// Up nodes that believe they are leader.
    pub fn leaders(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_leader())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Ticks until exactly one up node leads and every other up voter follows it.
    pub fn wait_for_leader(&mut self, max_ticks: usize) -> String {
        for _ in 0..max_ticks {
            self.tick_all(1);
            let leaders = self.leaders();
            if leaders.len() == 1 {
                let l = leaders[0].clone();
                let term = self.node(&l).term();
                if self
                    .nodes
                    .values()
                    .filter(|n| n.membership().contains(n.id()))
                    .all(|n| n.term() == term && n.leader_id() == Some(l.as_str()))
                {
                    return l;
                }
            }
        }
        panic!("no single leader within {max_ticks} ticks");
    }

    pub fn propose(&mut self, id: &str, data: &str) -> u64 {
        let index = self
            .node_mut(id)
            .propose(data.as_bytes().to_vec())
            .expect("leader accepts");
        self.process(id);
        index
    }

    /// Terms of the node's log entries after its snapshot.
    pub fn terms(&self, id: &str) -> Vec<u64> {
        self.node(id).entries().iter().map(|e| e.term).collect()
    }

    pub fn is_vote(m: &Message) -> bool {
        matches!(m.body, MessageBody::RequestVote { .. })
    }
}
