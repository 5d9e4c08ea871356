//! Scenario tests of the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable
//! Consensus Algorithm") and Ongaro's thesis, one per property, named after its section.

mod common;

use common::{append, log_with_terms, state, Cluster};
use rcluster_raft::{
    Command, Entry, Message, MessageBody, ProposeError, RaftNode, Role, SnapshotError,
};
use rcluster_raft::{MembershipChange, Persisted};

fn is_append(m: &Message) -> bool {
    matches!(m.body, MessageBody::AppendEntries { .. })
}

// ----- §5.2 leader election -----

#[test]
fn s5_2_election_single_leader_elected() {
    for n in [3, 5] {
        let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut c = Cluster::new(&refs);
        let leader = c.wait_for_leader(200);
        assert_eq!(c.leaders(), vec![leader.clone()]);
        // It stays the only leader while heartbeats flow.
        c.tick_all(300);
        assert_eq!(c.leaders(), vec![leader.clone()]);
        let term = c.node(&leader).term();
        for id in &refs {
            assert_eq!(c.node(id).term(), term, "{id} is in the leader's term");
            assert_eq!(c.node(id).leader_id(), Some(leader.as_str()));
        }
    }
}

#[test]
fn s5_2_election_split_vote_resolves() {
    // Four voters: n1 and n2 campaign at once in term 1; n3 hears only n1, n4 only n2, so each
    // candidate has 2 of the 3 votes it needs.
    let mut c = Cluster::new(&["n1", "n2", "n3", "n4"]);
    c.cut_link("n1", "n4");
    c.cut_link("n2", "n3");
    c.node_mut("n1").campaign();
    c.process("n1");
    c.node_mut("n2").campaign();
    c.process("n2");
    c.deliver();
    assert!(c.leaders().is_empty(), "a split vote elects nobody");
    assert_eq!(c.node("n1").role(), Role::Candidate);
    assert_eq!(c.node("n2").role(), Role::Candidate);
    assert_eq!(c.node("n1").term(), 1);
    assert_eq!(c.node("n2").term(), 1);
    // Randomized timeouts break the tie.
    c.heal();
    let leader = c.wait_for_leader(300);
    assert!(c.node(&leader).term() >= 2);
}

#[test]
fn s5_2_candidate_steps_down_on_append_entries_from_current_term_leader() {
    let mut c = Cluster::new(&["n1", "n2", "n3"]);
    c.cut_link("n1", "n2");
    c.elect("n1"); // wins term 1 with n3's vote
    assert!(c.node("n1").is_leader());
    assert_eq!(c.node("n2").term(), 0);
    // n2 never heard of it and campaigns in the same term 1; n3 already voted.
    c.node_mut("n2").campaign();
    c.process("n2");
    c.deliver();
    assert_eq!(c.node("n2").role(), Role::Candidate);
    assert_eq!(c.node("n2").term(), 1);
    // The leader's heartbeat of term 1 reaches it: it recognizes the leader.
    c.heal();
    c.tick_all(5);
    assert_eq!(c.node("n2").role(), Role::Follower);
    assert_eq!(c.node("n2").leader_id(), Some("n1"));
    assert_eq!(c.node("n2").term(), 1);
}

#[test]
fn s5_1_stale_term_is_rejected_and_higher_term_demotes() {
    let mut c = Cluster::new(&["n1", "n2", "n3"]);
    c.elect("n1");
    c.tick_all(5);
    // A message from an old term is refused with the current term.
    c.node_mut("n2")
        .step(append("n3", "n2", 0, (0, 0), vec![], 0))
        .expect("a genuine message is taken");
    let out = c.node_mut("n2").ready().messages;
    assert!(matches!(
        &out[..],
        [Message {
            term: 1,
            body: MessageBody::AppendEntriesResponse { success: false, .. },
            ..
        }]
    ));
    // A leader that sees a higher term steps down.
    let vote = Message {
        from: "n3".into(),
        to: "n1".into(),
        term: 9,
        body: MessageBody::RequestVoteResponse { granted: false },
    };
    c.node_mut("n1")
        .step(vote)
        .expect("a genuine message is taken");
    assert_eq!(c.node("n1").role(), Role::Follower);
    assert_eq!(c.node("n1").term(), 9);
}

// ----- §5.3 log replication -----

#[test]
fn s5_3_replication_follower_logs_repaired_after_divergence() {
    // Figure 7: the leader for term 8 and six followers with missing and extra entries.
    let ids = ["n1", "a", "b", "c", "d", "e", "f"];
    let logs: [&[u64]; 7] = [
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6],
        &[1, 1, 1, 4],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        &[1, 1, 1, 4, 4, 4, 4],
        &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ];
    let states = ids
        .iter()
        .zip(logs)
        .map(|(id, terms)| (*id, state(&ids, terms, 7)))
        .collect();
    let mut c = Cluster::with_states(states, false);
    c.elect("n1");
    assert!(c.node("n1").is_leader(), "a, b, e and f vote for n1");
    assert_eq!(c.node("n1").term(), 8);
    c.propose("n1", "x");
    c.tick_all(10);
    let expected = c.node("n1").entries().to_vec();
    assert_eq!(expected.len(), 12); // 10 + no-op + x
    for id in ids {
        assert_eq!(
            c.node(id).entries(),
            &expected[..],
            "{id}'s log was repaired"
        );
        assert_eq!(c.node(id).commit_index(), 12);
        assert_eq!(
            c.applied[id].entries, expected,
            "{id} applied the leader's log"
        );
    }
}

#[test]
fn s5_3_replication_conflicting_entries_overwritten() {
    let mut follower = RaftNode::new(
        common::config("n2", false),
        state(&["n1", "n2"], &[1, 2, 2, 2], 2),
        1,
    )
    .unwrap();
    // Leader of term 3 whose entry 2 is from term 3: entries 2..4 of term 2 must go.
    let new = Entry {
        term: 3,
        index: 2,
        command: Command::App(b"new".to_vec()),
    };
    follower
        .step(append("n1", "n2", 3, (1, 1), vec![new.clone()], 0))
        .expect("a genuine message is taken");
    assert_eq!(follower.entries().len(), 2);
    assert_eq!(follower.entry(2), Some(&new));
    let ready = follower.ready();
    let persist = ready.persist.expect("the overwrite is persisted");
    assert_eq!(persist.entries, vec![new]);
    assert!(matches!(
        &ready.messages[..],
        [Message {
            body: MessageBody::AppendEntriesResponse {
                success: true,
                match_index: 2,
                ..
            },
            ..
        }]
    ));
    // Persisting the update leaves storage equal to memory.
    let mut stored = state(&["n1", "n2"], &[1, 2, 2, 2], 2);
    stored.apply(&persist);
    assert_eq!(stored.entries, follower.entries());
}

#[test]
fn s5_3_follower_commits_only_up_to_last_new_entry() {
    // The follower's entries 3..4 are stale (term 2); the leader's AppendEntries matches up to 2
    // and announces commit 4: only 2 is known to match, so only 2 may commit.
    let mut follower = RaftNode::new(
        common::config("n2", false),
        state(&["n1", "n2"], &[1, 1, 2, 2], 2),
        1,
    )
    .unwrap();
    let leader_log = log_with_terms(&[1, 1, 3, 3]);
    follower
        .step(append(
            "n1",
            "n2",
            3,
            (1, 1),
            vec![leader_log[1].clone()],
            4,
        ))
        .expect("a genuine message is taken");
    assert_eq!(follower.commit_index(), 2);
    assert_eq!(follower.entry(3).map(|e| e.term), Some(2));
}

#[test]
fn s5_3_rejection_carries_a_conflict_hint() {
    let mut follower = RaftNode::new(
        common::config("n2", false),
        state(&["n1", "n2"], &[1, 2, 2, 2], 2),
        1,
    )
    .unwrap();
    follower
        .step(append("n1", "n2", 3, (4, 3), vec![], 0))
        .expect("a genuine message is taken");
    let out = follower.ready().messages;
    let MessageBody::AppendEntriesResponse {
        success: false,
        conflict: Some(hint),
        ..
    } = &out[0].body
    else {
        panic!("expected a rejection, got {out:?}");
    };
    // The whole term-2 run is skipped in one round trip.
    assert_eq!(
        (hint.rejected_index, hint.index, hint.term),
        (4, 2, Some(2))
    );
}

// ----- §5.4.1 election restriction -----

#[test]
fn s5_4_1_node_with_stale_log_cannot_win() {
    let mut c = Cluster::with_states(
        ["n1", "n2", "n3"]
            .iter()
            .map(|id| (*id, Persisted::bootstrap(["n1", "n2", "n3"])))
            .collect(),
        false,
    );
    c.isolate("n3");
    c.elect("n1");
    for i in 0..5 {
        c.propose("n1", &format!("v{i}"));
    }
    c.tick_all(10);
    assert_eq!(c.node("n2").commit_index(), 6);
    assert_eq!(c.node("n3").last_index(), 0);
    // The leader dies; n3 comes back with an empty log and campaigns again and again.
    c.crash("n1");
    c.heal();
    for _ in 0..5 {
        c.elect("n3");
        assert_ne!(
            c.node("n3").role(),
            Role::Leader,
            "a stale log must not win"
        );
    }
    // n2, whose log holds every committed entry, can win.
    c.elect("n2");
    assert!(c.node("n2").is_leader());
    c.tick_all(10);
    assert_eq!(c.node("n3").entries(), c.node("n2").entries());
}

// ----- §5.4.2 / figure 8 -----

/// Figure 8 (c): n1 leads term 4, its term-2 entry 2 is on n1, n2, n3 (a majority); n5 holds a
/// term-3 entry at index 2 from its own short leadership.
fn figure8() -> Cluster {
    let ids = ["n1", "n2", "n3", "n4", "n5"];
    let mut c = Cluster::with_states(
        vec![
            ("n1", state(&ids, &[1, 2], 3)),
            ("n2", state(&ids, &[1, 2], 3)),
            ("n3", state(&ids, &[1, 2], 3)),
            ("n4", state(&ids, &[1], 3)),
            ("n5", state(&ids, &[1, 3], 3)),
        ],
        false,
    );
    // n1 wins term 4 (n5's log is more up-to-date than n1's and refuses); its AppendEntries,
    // which would carry the term-4 no-op, are lost.
    c.node_mut("n1").campaign();
    c.process("n1");
    c.deliver_except(is_append);
    assert!(c.node("n1").is_leader());
    assert_eq!(c.node("n1").term(), 4);
    assert_eq!(c.node("n1").last_index(), 3, "the no-op of term 4");
    // n2 and n3 confirm they store entry 2 (as answers to one-entry AppendEntries would).
    for f in ["n2", "n3"] {
        let m = Message {
            from: f.into(),
            to: "n1".into(),
            term: 4,
            body: MessageBody::AppendEntriesResponse {
                success: true,
                match_index: 2,
                conflict: None,
            },
        };
        c.node_mut(f)
            .step(append("n1", f, 4, (0, 0), vec![], 0))
            .expect("a genuine message is taken");
        c.process(f);
        c.take_messages();
        c.node_mut("n1")
            .step(m)
            .expect("a genuine message is taken");
        c.process("n1");
    }
    c.take_messages(); // the no-op is lost again
    c
}

#[test]
fn s5_4_2_figure8_old_term_entry_not_committed_by_counting_replicas() {
    let mut c = figure8();
    assert_eq!(c.node("n1").progress("n2").unwrap().match_index, 2);
    assert_eq!(c.node("n1").progress("n3").unwrap().match_index, 2);
    assert_eq!(
        c.node("n1").commit_index(),
        0,
        "entry 2 is on a majority but from term 2: not committed"
    );
    // Figure 8 (d): n1 crashes and n5 wins with n2, n3, n4, overwriting entry 2. Had n1
    // committed it, a committed entry would now be lost.
    c.crash("n1");
    c.elect("n5"); // n5 moved to term 4 when it refused n1's vote request
    assert!(c.node("n5").is_leader());
    assert_eq!(c.node("n5").term(), 5);
    c.tick_all(10);
    for id in ["n2", "n3", "n4", "n5"] {
        assert_eq!(c.node(id).entry(2).unwrap().term, 3, "{id}");
        assert_eq!(c.node(id).commit_index(), 3);
    }
}

#[test]
fn s5_4_2_figure8_old_entry_commits_with_current_term_entry() {
    // Figure 8 (e): once n1's term-4 entry reaches a majority, entries 2 and 3 commit together.
    let mut c = figure8();
    c.tick_all(10);
    assert_eq!(c.node("n1").commit_index(), 3);
    for id in ["n2", "n3", "n4", "n5"] {
        assert_eq!(c.terms(id), vec![1, 2, 4], "{id}");
    }
}

// ----- §5.5 follower and candidate crashes -----

#[test]
fn s5_5_follower_crash_and_recovery() {
    let mut c = Cluster::new(&["n1", "n2", "n3"]);
    let leader = c.wait_for_leader(200);
    let follower = ["n1", "n2", "n3"]
        .into_iter()
        .find(|id| *id != leader)
        .unwrap();
    c.propose(&leader, "before");
    c.tick_all(5);
    c.crash(follower);
    for i in 0..20 {
        c.propose(&leader, &format!("while-down-{i}"));
    }
    c.tick_all(10);
    assert_eq!(c.node(&leader).commit_index(), 22, "a majority is still up");
    // Restart from stored state only: it re-applies what it had and catches up on the rest.
    c.restart(follower);
    c.tick_all(20);
    assert_eq!(c.node(follower).entries(), c.node(&leader).entries());
    assert_eq!(c.node(follower).commit_index(), 22);
    assert_eq!(c.applied[follower].data(), c.applied[&leader].data());
    assert_eq!(c.applied[follower].data().len(), 21);
}

#[test]
fn s5_5_vote_survives_a_restart() {
    let mut c = Cluster::with_states(
        ["n1", "n2", "n3"]
            .iter()
            .map(|id| (*id, Persisted::bootstrap(["n1", "n2", "n3"])))
            .collect(),
        false,
    );
    c.isolate("n3");
    c.elect("n1");
    assert_eq!(c.node("n2").voted_for(), Some("n1"));
    c.crash("n2");
    c.restart("n2");
    assert_eq!(c.node("n2").voted_for(), Some("n1"));
    assert_eq!(c.node("n2").term(), 1);
    // n3 campaigning in the same term does not get the restarted node's vote.
    c.heal();
    c.crash("n1");
    let m = Message {
        from: "n3".into(),
        to: "n2".into(),
        term: 1,
        body: MessageBody::RequestVote {
            last_log_index: 1,
            last_log_term: 1,
        },
    };
    c.node_mut("n2")
        .step(m)
        .expect("a genuine message is taken");
    let out = c.node_mut("n2").ready().messages;
    assert!(matches!(
        out[0].body,
        MessageBody::RequestVoteResponse { granted: false }
    ));
}

// ----- §6 / thesis §4.1 membership changes -----

#[test]
fn s6_thesis_4_1_add_node() {
    let mut c = Cluster::new(&["n1", "n2", "n3"]);
    let leader = c.wait_for_leader(200);
    c.propose(&leader, "a");
    c.add_joining("n4");
    c.tick_all(5);
    assert_eq!(c.node("n4").last_index(), 0, "nobody talks to a non-member");
    let index = c
        .node_mut(&leader)
        .propose_membership(MembershipChange::AddNode("n4".into()))
        .unwrap();
    // Takes effect on the leader as soon as appended.
    assert!(c.node(&leader).membership().contains("n4"));
    assert!(c.node(&leader).commit_index() < index);
    c.process(&leader);
    c.tick_all(10);
    assert!(c.node(&leader).commit_index() >= index);
    assert!(c.node("n4").membership().contains("n4"));
    assert_eq!(c.node("n4").entries(), c.node(&leader).entries());
    assert_eq!(c.applied["n4"].data(), vec![b"a".to_vec()]);
    // Four voters: a commit now needs three of them.
    let others: Vec<&str> = ["n1", "n2", "n3"]
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    c.isolate(others[0]);
    c.isolate(others[1]);
    let before = c.node(&leader).commit_index();
    let i = c.propose(&leader, "needs n4");
    c.deliver();
    assert!(c.node(&leader).commit_index() < i, "2 of 4 is no majority");
    c.heal();
    c.tick_all(10);
    assert!(c.node(&leader).commit_index() >= i && i > before);
}

#[test]
fn s6_thesis_4_1_remove_node() {
    let mut c = Cluster::new(&["n1", "n2", "n3"]);
    c.elect("n1");
    c.tick_all(5);
    let index = c
        .node_mut("n1")
        .propose_membership(MembershipChange::RemoveNode("n3".into()))
        .unwrap();
    c.process("n1");
    c.tick_all(10);
    assert!(c.node("n1").commit_index() >= index);
    assert!(!c.node("n1").membership().contains("n3"));
    assert!(!c.node("n2").membership().contains("n3"));
    // n3 gets nothing more; n1 and n2 commit on their own.
    let i = c.propose("n1", "after");
    c.tick_all(10);
    assert_eq!(c.node("n2").commit_index(), i);
    assert!(c.node("n3").last_index() < i);
    assert!(
        c.node("n1").is_leader(),
        "the removed node does not disrupt the cluster"
    );
}

#[test]
fn s6_thesis_4_1_one_change_at_a_time() {
    // Not before the leader committed an entry of its own term: n1 is elected but its no-op
    // is lost.
    let mut c = Cluster::new(&["n1", "n2", "n3"]);
    c.node_mut("n1").campaign();
    c.process("n1");
    c.deliver_except(is_append);
    assert!(c.node("n1").is_leader());
    assert_eq!(
        c.node_mut("n1")
            .propose_membership(MembershipChange::RemoveNode("n3".into())),
        Err(ProposeError::LeaderNotReady)
    );
    c.tick_all(5);
    // Only one uncommitted change at a time.
    c.isolate("n2");
    c.isolate("n3");
    c.node_mut("n1")
        .propose_membership(MembershipChange::RemoveNode("n3".into()))
        .unwrap();
    assert_eq!(
        c.node_mut("n1")
            .propose_membership(MembershipChange::AddNode("n4".into())),
        Err(ProposeError::ConfigChangePending)
    );
    assert_eq!(
        c.node_mut("n2")
            .propose_membership(MembershipChange::AddNode("n4".into())),
        Err(ProposeError::NotLeader {
            leader_hint: Some("n1".into())
        })
    );
}

#[test]
fn s6_thesis_4_1_removed_leader_steps_down_after_commit() {
    let mut c = Cluster::new(&["n1", "n2", "n3"]);
    c.elect("n1");
    c.tick_all(5);
    let index = c
        .node_mut("n1")
        .propose_membership(MembershipChange::RemoveNode("n1".into()))
        .unwrap();
    assert!(c.node("n1").is_leader(), "leads until the removal commits");
    c.process("n1");
    c.deliver();
    assert!(
        c.node("n2").commit_index() >= index,
        "followers learn it committed"
    );
    assert_eq!(c.node("n1").role(), Role::Follower);
    // n2 and n3 elect a leader among themselves; n1 never campaigns again.
    let leader = c.wait_for_leader(300);
    assert_ne!(leader, "n1");
    let term = c.node(&leader).term();
    c.tick_all(200);
    assert_eq!(c.node("n1").role(), Role::Follower);
    assert_eq!(
        c.node(&leader).term(),
        term,
        "the removed node did not disrupt"
    );
    assert_eq!(
        c.node(&leader)
            .membership()
            .voters
            .iter()
            .collect::<Vec<_>>(),
        vec!["n2", "n3"]
    );
}

#[test]
fn s6_thesis_4_2_2_node_outside_its_uncommitted_config_still_campaigns() {
    // n1 appended a configuration removing itself, then lost leadership before it committed;
    // its log is the most up-to-date, so only it can win, and it may.
    let ids = ["n1", "n2", "n3"];
    let mut n1 = state(&ids, &[1, 1], 1);
    n1.entries.push(Entry {
        term: 1,
        index: 3,
        command: Command::Config(rcluster_raft::Membership::new(["n2", "n3"])),
    });
    let mut c = Cluster::with_states(
        vec![
            ("n1", n1),
            ("n2", state(&ids, &[1, 1], 1)),
            ("n3", state(&ids, &[1], 1)),
        ],
        true,
    );
    assert!(!c.node("n1").membership().contains("n1"));
    assert!(c.node("n1").may_campaign());
    c.node_mut("n1").campaign();
    c.process("n1");
    c.deliver_except(is_append);
    assert!(
        c.node("n1").is_leader(),
        "n2 and n3 elect it; its own vote does not count"
    );
    // It commits the configuration (with its no-op), tells the others, and steps down.
    c.tick_all(5);
    assert_eq!(c.node("n1").role(), Role::Follower);
    assert!(!c.node("n1").may_campaign());
    for id in ["n2", "n3"] {
        assert_eq!(c.node(id).commit_index(), 4, "{id}");
        assert!(!c.node(id).membership().contains("n1"));
    }
    let leader = c.wait_for_leader(300);
    assert_ne!(leader, "n1");
}

// ----- §7 log compaction -----

#[test]
fn s7_snapshot_installed_on_lagging_follower() {
    let mut c = Cluster::new(&["n1", "n2", "n3"]);
    c.elect("n1");
    c.isolate("n3");
    for i in 0..30 {
        c.propose("n1", &format!("v{i}"));
    }
    c.tick_all(5);
    let applied = c.node("n1").last_applied();
    assert_eq!(applied, 31);
    // The application's state at 31 (here: the payloads so far) becomes the snapshot.
    let state_bytes = c.applied["n1"].data().concat();
    assert_eq!(
        c.node_mut("n1").snapshot(applied + 1, vec![]),
        Err(SnapshotError::NotApplied {
            index: 32,
            applied: 31
        })
    );
    c.node_mut("n1")
        .snapshot(applied, state_bytes.clone())
        .unwrap();
    c.process("n1");
    assert_eq!(c.node("n1").first_index(), 32);
    assert_eq!(c.storage["n1"].snapshot.index, 31);
    assert!(c.storage["n1"].entries.is_empty());
    c.propose("n1", "after-snapshot");
    c.heal();
    c.tick_all(20);
    let n3 = c.node("n3");
    assert_eq!(n3.snapshot_meta().index, 31);
    assert_eq!(n3.commit_index(), 32);
    assert_eq!(n3.entries(), c.node("n1").entries());
    let restored = c.applied["n3"].snapshot.as_ref().expect("restored");
    assert_eq!(restored.data, state_bytes);
    assert_eq!(c.applied["n3"].data(), vec![b"after-snapshot".to_vec()]);
    // A restart from storage alone starts from the snapshot.
    c.crash("n3");
    c.restart("n3");
    assert_eq!(c.applied["n3"].snapshot.as_ref().map(|s| s.index), Some(31));
    assert_eq!(c.applied["n3"].data(), vec![b"after-snapshot".to_vec()]);
}
