//! Messages no correct peer sends (a bug's or a forger's) are refused with a `StepError` and
//! leave the node exactly as it was: no panic, no role or term change, no log change, nothing
//! to send.

mod common;

use common::{append, Cluster};
use rcluster_raft::{
    Command, ConflictHint, Entry, Membership, Message, MessageBody, RaftNode, Role, Snapshot,
    StepError,
};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        command: Command::Noop,
    }
}

/// A three-node cluster whose leader is n1, with every message delivered.
fn cluster() -> Cluster {
    let mut c = Cluster::new(&["n1", "n2", "n3"]);
    c.elect("n1");
    c.tick_all(5);
    c
}

/// Steps `m` into `id`, expects a refusal, and checks that nothing changed.
fn refused(c: &mut Cluster, id: &str, m: Message) -> StepError {
    let before: RaftNode = c.node(id).clone();
    let err = c.node_mut(id).step(m).expect_err("the message is refused");
    let after = c.node_mut(id);
    assert_eq!(after.role(), before.role());
    assert_eq!(after.term(), before.term());
    assert_eq!(after.hard_state(), before.hard_state());
    assert_eq!(after.entries(), before.entries());
    assert_eq!(after.leader_id(), before.leader_id());
    assert!(
        !after.has_ready() || before.has_ready(),
        "nothing new to do"
    );
    err
}

#[test]
fn a_second_leader_of_the_leaders_own_term_is_refused_not_a_panic() {
    let mut c = cluster();
    let term = c.node("n1").term();
    let last = c.node("n1").last_index();
    let forged = append(
        "n2",
        "n1",
        term,
        (last, term),
        vec![entry(last + 1, term)],
        0,
    );
    let err = refused(&mut c, "n1", forged);
    assert_eq!(
        err,
        StepError::SecondLeader {
            from: "n2".into(),
            term
        }
    );
    let snapshot = Message {
        from: "n3".into(),
        to: "n1".into(),
        term,
        body: MessageBody::InstallSnapshot {
            snapshot: Snapshot {
                index: 50,
                term,
                membership: Membership::default(),
                data: Vec::new(),
            },
        },
    };
    assert!(matches!(
        refused(&mut c, "n1", snapshot),
        StepError::SecondLeader { .. }
    ));
    // The leader still leads and commits.
    let index = c.node_mut("n1").propose(b"after".to_vec()).expect("leader");
    c.process("n1");
    c.deliver();
    assert_eq!(c.node("n1").role(), Role::Leader);
    assert!(c.node("n1").commit_index() >= index);
}

#[test]
fn entries_that_do_not_follow_prev_are_refused() {
    let mut c = cluster();
    let term = c.node("n2").term();
    let last = c.node("n2").last_index();
    for (why, m) in [
        (
            "a gap",
            append(
                "n1",
                "n2",
                term,
                (last, term),
                vec![entry(last + 2, term)],
                0,
            ),
        ),
        (
            "an entry below prev (would rewrite committed entries)",
            append("n1", "n2", term, (last, term), vec![entry(1, term)], 0),
        ),
        (
            "an entry term above the message's term",
            append(
                "n1",
                "n2",
                term,
                (last, term),
                vec![entry(last + 1, term + 5)],
                0,
            ),
        ),
        (
            "entry terms going backwards",
            append(
                "n1",
                "n2",
                term,
                (last, term),
                vec![entry(last + 1, term), entry(last + 2, term - 1)],
                0,
            ),
        ),
        (
            "prev_log_term above the message's term",
            append("n1", "n2", term, (last, term + 1), vec![], 0),
        ),
        (
            "an index past u64::MAX",
            append("n1", "n2", term, (u64::MAX, term), vec![entry(0, term)], 0),
        ),
    ] {
        let err = refused(&mut c, "n2", m);
        assert!(matches!(err, StepError::Malformed { .. }), "{why}: {err:?}");
    }
}

#[test]
fn a_malformed_message_of_a_higher_term_does_not_demote_the_leader() {
    let mut c = cluster();
    let term = c.node("n1").term();
    let m = append("n2", "n1", term + 3, (0, 0), vec![entry(7, term + 3)], 0);
    assert!(matches!(
        refused(&mut c, "n1", m),
        StepError::Malformed { .. }
    ));
    assert_eq!(c.node("n1").role(), Role::Leader);
}

#[test]
fn answers_beyond_the_leaders_log_are_refused() {
    let mut c = cluster();
    let term = c.node("n1").term();
    let answer = |success, match_index, conflict| Message {
        from: "n2".into(),
        to: "n1".into(),
        term,
        body: MessageBody::AppendEntriesResponse {
            success,
            match_index,
            conflict,
        },
    };
    let err = refused(&mut c, "n1", answer(true, u64::MAX, None));
    assert!(matches!(err, StepError::Malformed { .. }), "{err:?}");
    let hint = ConflictHint {
        rejected_index: u64::MAX,
        index: 1,
        term: None,
    };
    let err = refused(&mut c, "n1", answer(false, 0, Some(hint)));
    assert!(matches!(err, StepError::Malformed { .. }), "{err:?}");
    assert_eq!(
        c.node("n1").progress("n2").map(|p| p.match_index),
        Some(c.node("n1").last_index())
    );
}

#[test]
fn a_message_for_another_node_is_refused() {
    let mut c = cluster();
    let term = c.node("n2").term();
    let err = refused(&mut c, "n2", append("n1", "n3", term, (0, 0), vec![], 0));
    assert_eq!(
        err,
        StepError::NotForMe {
            me: "n2".into(),
            to: "n3".into()
        }
    );
}
