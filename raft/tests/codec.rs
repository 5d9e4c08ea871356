//! Property tests of the persisted and wire types: JSON round trips, and storage folding
//! `Ready` updates stays equal to the node's own log.

mod common;

use proptest::prelude::*;
use rcluster_raft::{Command, Entry, Membership, Message, MessageBody, Persisted, Snapshot};

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Noop),
        proptest::collection::btree_set("n[0-9]", 0..4)
            .prop_map(|voters| Command::Config(Membership { voters })),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Command::App),
    ]
}

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    proptest::collection::vec((1u64..4, command()), 0..8).prop_map(|v| {
        let mut term = 0;
        v.into_iter()
            .enumerate()
            .map(|(i, (step, command))| {
                term += step / 3;
                Entry {
                    term: term.max(1),
                    index: i as u64 + 1,
                    command,
                }
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn messages_round_trip(entries in entries(), commit in 0u64..10, data in proptest::collection::vec(any::<u8>(), 0..32)) {
        let bodies = vec![
            MessageBody::AppendEntries { prev_log_index: 3, prev_log_term: 2, entries, leader_commit: commit },
            MessageBody::InstallSnapshot { snapshot: Snapshot { index: 4, term: 2, membership: Membership::new(["n1"]), data } },
            MessageBody::RequestVote { last_log_index: commit, last_log_term: 1 },
        ];
        for body in bodies {
            let m = Message { from: "n1".into(), to: "n2".into(), term: 5, body };
            prop_assert_eq!(Message::from_bytes(&m.to_bytes()).unwrap(), m);
        }
    }

    #[test]
    fn persisted_round_trips(entries in entries()) {
        let mut p = Persisted::bootstrap(["n1", "n2"]);
        p.entries = entries;
        prop_assert_eq!(Persisted::from_bytes(&p.to_bytes()).unwrap(), p);
    }

    /// A follower fed random AppendEntries (matching or not, overlapping or not) keeps storage
    /// and memory identical when storage folds every Ready.
    #[test]
    fn storage_follows_memory(ops in proptest::collection::vec((0u64..8, 1u64..4, 0usize..4, 1u64..4), 1..30)) {
        let mut node = rcluster_raft::RaftNode::new(common::config("n2", false), Persisted::bootstrap(["n1", "n2"]), 1).unwrap();
        let mut stored = Persisted::bootstrap(["n1", "n2"]);
        let mut term = 1;
        for (prev, prev_term, count, bump) in ops {
            term += bump / 3;
            let entries = (0..count as u64).map(|k| Entry { term, index: prev + 1 + k, command: Command::Noop }).collect();
            let m = Message { from: "n1".into(), to: "n2".into(), term, body: MessageBody::AppendEntries { prev_log_index: prev, prev_log_term: prev_term.min(term), entries, leader_commit: 0 } };
            node.step(m).expect("a well-formed AppendEntries is taken");
            let ready = node.ready();
            if let Some(u) = &ready.persist { stored.apply(u); }
            node.advance(&ready);
            prop_assert_eq!(&stored.entries[..], node.entries());
            prop_assert_eq!(&stored.hard_state, &node.hard_state());
        }
    }
}

#[test]
fn corrupt_bytes_are_refused() {
    assert!(Message::from_bytes(b"{not json").is_err());
    assert!(Persisted::from_bytes(b"[]").is_err());
}
