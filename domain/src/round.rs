//! Quorum rounds as state machines, free of I/O and clock: a write round counts the replicas'
//! acknowledgements, a read round collects their answers, and each says after every answer what
//! the coordinator does now: wait, reply, answer `NOQUORUM`, or (writes) re-issue the write with
//! a newer version. Both coordinator paths (the main-thread fast path and the runtime's fan-out,
//! including the hand-over from one to the other) drive these, so acknowledgements are counted
//! and quorum decisions made here only.

use crate::codes::{Code, CodedError};
use crate::quorum::{needs_repair, newest, Held};
use crate::version::Version;

/// A replica a read round keeps answers from, by the node id the `NOQUORUM` wording names.
pub trait Named {
    fn name(&self) -> &str;
}

impl Named for str {
    fn name(&self) -> &str {
        self
    }
}

impl Named for String {
    fn name(&self) -> &str {
        self
    }
}

impl<T: Named + ?Sized> Named for &T {
    fn name(&self) -> &str {
        (**self).name()
    }
}

impl<T: Named + ?Sized> Named for std::sync::Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
}

/// How many of a key's preference nodes a request needs: `count` (W or R) of each of the key's
/// preference lists, whose sizes are `lists` (one list; or, for a while after a change of
/// placement, the old and the new one, which differ in size when N changed), out of the `nodes`
/// nodes of their union. Whichever `needed` nodes of the union answer, a list misses at most the
/// `nodes - len` nodes outside it, so each list then holds at least `count` of them (all of a
/// list shorter than `count`): the request meets the coordinators that still use the old list
/// and those already on the new one.
pub fn needed(count: usize, lists: &[usize], nodes: usize) -> usize {
    lists
        .iter()
        .map(|&len| count.min(len) + nodes.saturating_sub(len))
        .max()
        .unwrap_or(count)
}

/// What the coordinator does now, after a round's latest answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Wait for more answers; also every answer after the round was decided (the remaining
    /// calls finish on their own).
    Pending,
    /// Enough replicas answered: reply to the client now.
    Done,
    /// The quorum cannot be reached any more: answer this `NOQUORUM` error, which names the
    /// replicas that failed and why.
    OutOfReach(CodedError),
    /// (Writes only.) A replica holds a newer version than the write's, no quorum was reached,
    /// and every call has ended: write the same value again, to every preference node, with a
    /// version past this one, in a new round ([`WriteRound::reissued`]).
    Reissue(Version),
}

/// Who answered a write: a preference node, or a substitute holding a hint for one (sloppy
/// quorum: its acknowledgement counts toward W like the replica's own).
#[derive(Clone, Copy, Debug)]
pub struct Asked<'a> {
    pub node: &'a str,
    pub hint_for: Option<&'a str>,
}

impl<'a> Asked<'a> {
    /// A preference node itself.
    pub fn replica(node: &'a str) -> Self {
        Asked {
            node,
            hint_for: None,
        }
    }

    /// `node` holding a hint for `intended`.
    pub fn substitute(node: &'a str, intended: &'a str) -> Self {
        Asked {
            node,
            hint_for: Some(intended),
        }
    }

    /// How the wording names it: `n4 (hint for n2)`.
    fn name(&self) -> String {
        match self.hint_for {
            Some(intended) => format!("{} (hint for {intended})", self.node),
            None => self.node.to_string(),
        }
    }
}

/// One replica's answer to a client's write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteAnswer {
    /// It holds the write: applied, a duplicate of it, or (stale) a version that is not past
    /// it; or, from a substitute, it keeps the write as a hint.
    Ack,
    /// It holds a newer version than the write's, which therefore does not count there: with W
    /// over N/2 any quorum after a finished write meets a replica that holds it, so a write
    /// that is really later gets re-issued with a version past it instead of being lost.
    Newer(Version),
    /// No acknowledgement: `why` (a timeout, a connection failure, an error or unexpected
    /// reply). `handed_on`: the write went on to a substitute, whose answer is still to come.
    Failed { why: String, handed_on: bool },
}

/// One quorum round: the count of acknowledgements (writes) or answers (reads) against what
/// is needed, the calls still under way, and who failed; `K` holds what a write or a read keeps
/// beyond that ([`WriteRound`], [`ReadRound`]).
#[derive(Debug)]
pub struct Round<K> {
    needed: usize,
    /// Acknowledgements or answers so far.
    got: usize,
    /// Calls under way (each can add one acknowledgement or answer at most).
    pending: usize,
    /// The client was answered (or the write re-issued): later answers decide nothing.
    decided: bool,
    /// Who counted (this node's own replica first), for the `NOQUORUM` wording.
    ok: Vec<String>,
    /// Who failed and why, for the `NOQUORUM` wording (allocated only on a failure).
    failures: Vec<(String, String)>,
    /// Whose answer is still to come: the nodes asked, and substitutes asked for a node that
    /// failed (`n4 (hint for n2)` once it answers; named `a substitute for n2` until then).
    waiting: Vec<String>,
    kind: K,
}

/// What a kind of round adds to the decision.
pub trait Kind {
    /// With every call ended short of the quorum: the version to re-issue the write past,
    /// instead of answering `NOQUORUM`.
    fn reissue(&mut self) -> Option<Version> {
        None
    }

    /// Whether the round waits for every call even once the quorum is out of reach.
    fn waits_for_every_call(&self) -> bool {
        false
    }
}

/// How the wording names a substitute whose answer is still to come.
fn substitute_for(intended: &str) -> String {
    format!("a substitute for {intended}")
}

impl<K: Kind> Round<K> {
    /// A round needing `needed`, the nodes in `ok` already counted, calls under way to `asked`.
    fn with(needed: usize, ok: Vec<String>, asked: Vec<String>, kind: K) -> Self {
        Round {
            needed,
            got: ok.len(),
            pending: asked.len(),
            decided: false,
            ok,
            failures: Vec::new(),
            waiting: asked,
            kind,
        }
    }

    /// The decision before any answer: `Done` when what is already known is enough.
    pub fn start(&mut self) -> Decision {
        self.decide()
    }

    /// Every call has ended (an answer not fed by now never will be): the final decision, if
    /// the round had not decided yet.
    pub fn finish(&mut self) -> Decision {
        self.pending = 0;
        self.decide()
    }

    /// Whether what is already known makes the quorum (a request this node's own replica is
    /// enough for is answered at once).
    pub fn reached(&self) -> bool {
        self.got >= self.needed
    }

    /// Acknowledgements (writes) or answers (reads) the quorum needs.
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// Acknowledgements (writes) or answers (reads) so far.
    pub fn got(&self) -> usize {
        self.got
    }

    /// Calls whose answer has not been fed yet.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether the round has decided (the client was answered, or the write re-issued).
    pub fn decided(&self) -> bool {
        self.decided
    }

    /// One call answered, by `who` (as [`Round::waiting`] lists it until then, and as the
    /// wording names it): counted, or failed with `why`.
    fn answered(&mut self, waiting_as: &str, who: String, failed: Option<String>) {
        self.pending = self.pending.saturating_sub(1);
        if let Some(at) = self.waiting.iter().position(|w| w == waiting_as) {
            self.waiting.swap_remove(at);
        }
        match failed {
            None => {
                self.got += 1;
                self.ok.push(who);
            }
            Some(why) => self.failures.push((who, why)),
        }
    }

    fn decide(&mut self) -> Decision {
        if self.decided {
            return Decision::Pending;
        }
        let decision = if self.got >= self.needed {
            Decision::Done
        } else if self.pending == 0 {
            match self.kind.reissue() {
                Some(held) => Decision::Reissue(held),
                None => self.out_of_reach(),
            }
        } else if !self.kind.waits_for_every_call() && self.got + self.pending < self.needed {
            // Every call under way adds one at most.
            self.out_of_reach()
        } else {
            return Decision::Pending;
        };
        self.decided = true;
        decision
    }

    fn out_of_reach(&self) -> Decision {
        Decision::OutOfReach(CodedError::new(Code::NoQuorum, self.shortfall()))
    }

    /// `needed 3 got 1 (ok: n1; failed: n2 connection refused; no answer yet: n3)`: the count,
    /// then who counted, who failed and why, and whose answer is still to come (each part only
    /// when it names someone).
    fn shortfall(&self) -> String {
        let failed: Vec<String> = self
            .failures
            .iter()
            .map(|(node, why)| format!("{node} {why}"))
            .collect();
        let parts: Vec<String> = [
            ("ok", self.ok.join(", ")),
            ("failed", failed.join(", ")),
            ("no answer yet", self.waiting.join(", ")),
        ]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(label, names)| format!("{label}: {names}"))
        .collect();
        let (needed, got) = (self.needed, self.got);
        if parts.is_empty() {
            format!("needed {needed} got {got}")
        } else {
            format!("needed {needed} got {got} ({})", parts.join("; "))
        }
    }
}

/// Node names as the round keeps them.
fn names<I>(nodes: I) -> Vec<String>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    nodes.into_iter().map(|n| n.as_ref().to_string()).collect()
}

/// What a write round keeps: the newest version a replica reported holding, how many times the
/// write may still be re-issued, and every node the write went to (this node first when it
/// holds a replica), whom a re-issued write goes to again.
#[derive(Debug)]
pub struct Writes {
    reissues: u8,
    newer: Option<Version>,
    preference: Vec<String>,
}

impl Kind for Writes {
    fn reissue(&mut self) -> Option<Version> {
        // Only while the client still waits (the round has not decided): once W replicas took
        // this write, a replica that answers "newer" holds a write made after it (the client's
        // next one, say), which a re-issued copy of this one would wrongly overwrite.
        self.newer.take().filter(|_| self.reissues > 0)
    }

    /// With a newer version reported, the round waits for every call, then re-issues past the
    /// newest of them.
    fn waits_for_every_call(&self) -> bool {
        self.newer.is_some()
    }
}

/// The acknowledgements of one client write (`RC.SET`, `RC.DEL`, a chunk).
pub type WriteRound = Round<Writes>;

impl WriteRound {
    /// A round needing `needed` acknowledgements, one already held when `local` (this node,
    /// holding a replica) is given, with calls under way to the nodes `asked` and up to
    /// `reissues` re-issues.
    pub fn new<I>(needed: usize, local: Option<&str>, asked: I, reissues: u8) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let ok = names(local);
        let asked = names(asked);
        let preference = ok.iter().chain(&asked).cloned().collect();
        Round::with(
            needed,
            ok,
            asked,
            Writes {
                reissues,
                newer: None,
                preference,
            },
        )
    }

    /// The round of the same write re-issued (after [`Decision::Reissue`]) to every node the
    /// write went to (the preference nodes, this node included): no acknowledgement yet, one
    /// re-issue less. `asked`: how many calls the re-issue makes (the same nodes).
    pub fn reissued(&self, asked: usize) -> Self {
        let mut to = self.kind.preference.clone();
        // Named as the first round named them; a count that differs only loses names.
        to.truncate(asked);
        let mut round =
            WriteRound::new(self.needed, None, &to, self.kind.reissues.saturating_sub(1));
        round.pending = asked;
        round
    }

    /// Takes one call's answer.
    pub fn feed(&mut self, from: Asked<'_>, answer: WriteAnswer) -> Decision {
        // Until it answers, a substitute is listed by the node it stands in for.
        let waiting_as = match from.hint_for {
            Some(intended) => substitute_for(intended),
            None => from.node.to_string(),
        };
        match answer {
            WriteAnswer::Ack => self.answered(&waiting_as, from.name(), None),
            WriteAnswer::Newer(held) => {
                self.kind.newer = self.kind.newer.take().max(Some(held));
                let why = Some("holds a newer version".to_string());
                self.answered(&waiting_as, from.name(), why);
            }
            WriteAnswer::Failed { why, handed_on } => {
                self.answered(&waiting_as, from.name(), Some(why));
                // The substitute's answer is still to come.
                if handed_on {
                    self.pending += 1;
                    self.waiting
                        .push(substitute_for(from.hint_for.unwrap_or(from.node)));
                }
            }
        }
        self.decide()
    }
}

/// One replica's answer to a read, from replica `P`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadAnswer<P> {
    /// What it holds (`None`: nothing, not even a tombstone).
    Held(P, Option<Held>),
    /// No answer from `node`: why (a timeout, a connection failure, an unreadable reply).
    Failed { node: String, why: String },
}

/// What a read round keeps: the answers, per replica `P`, for the reply and read repair.
#[derive(Debug)]
pub struct Reads<P> {
    answers: Vec<(P, Option<Held>)>,
}

impl<P> Kind for Reads<P> {}

/// The answers to one client read (`RC.GET`).
pub type ReadRound<P> = Round<Reads<P>>;

impl<P: Named> ReadRound<P> {
    /// A round needing `needed` answers, with `answers` already known (this node's own) and
    /// calls under way to the nodes `asked`.
    pub fn new<I>(needed: usize, answers: Vec<(P, Option<Held>)>, asked: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let ok = names(answers.iter().map(|(p, _)| p.name()));
        Round::with(needed, ok, names(asked), Reads { answers })
    }

    /// Takes the answer of one call.
    pub fn feed(&mut self, answer: ReadAnswer<P>) -> Decision {
        match answer {
            ReadAnswer::Held(from, held) => {
                self.answered(from.name(), from.name().to_string(), None);
                self.kind.answers.push((from, held));
            }
            ReadAnswer::Failed { node, why } => {
                let waiting_as = node.clone();
                self.answered(&waiting_as, node, Some(why));
            }
        }
        self.decide()
    }
}

impl<P> ReadRound<P> {
    /// The newest answer (tombstones included).
    pub fn newest(&self) -> Option<&Held> {
        newest(self.kind.answers.iter().map(|(_, h)| h))
    }

    /// What the client gets: the newest value, or `None` for a tombstone or nothing.
    pub fn value(&self) -> Option<&[u8]> {
        self.newest()
            .filter(|h| !h.tombstone)
            .map(|h| h.value.as_slice())
    }

    /// Read repair: the newest answer and the replicas that answered something older or
    /// nothing; `None` when every answer is the newest (or there is none).
    pub fn repairs(&self) -> Option<(&Held, impl Iterator<Item = &P>)> {
        let best = self.newest()?;
        let mut stale = self
            .kind
            .answers
            .iter()
            .filter(move |(_, h)| needs_repair(h, best))
            .map(|(p, _)| p)
            .peekable();
        stale.peek()?;
        Some((best, stale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// No call under way.
    const NOBODY: [&str; 0] = [];

    fn v(ts: u64, node: &str) -> Version {
        Version::new(ts, node)
    }

    fn ack(r: &mut WriteRound, node: &str) -> Decision {
        r.feed(Asked::replica(node), WriteAnswer::Ack)
    }

    fn newer(r: &mut WriteRound, node: &str, held: Version) -> Decision {
        r.feed(Asked::replica(node), WriteAnswer::Newer(held))
    }

    fn failed(why: &str) -> WriteAnswer {
        WriteAnswer::Failed {
            why: why.into(),
            handed_on: false,
        }
    }

    fn failed_read(node: &str) -> ReadAnswer<&'static str> {
        ReadAnswer::Failed {
            node: node.into(),
            why: "timeout".into(),
        }
    }

    fn noquorum(d: Decision) -> String {
        match d {
            Decision::OutOfReach(e) => e.to_string(),
            other => panic!("expected NOQUORUM, got {other:?}"),
        }
    }

    #[test]
    fn a_write_is_done_at_the_w_th_acknowledgement_and_only_once() {
        // N=3, W=2, the local replica holds it.
        let mut r = WriteRound::new(2, Some("n1"), ["n2", "n3"], 2);
        assert_eq!(r.start(), Decision::Pending);
        assert_eq!(ack(&mut r, "n2"), Decision::Done);
        assert!(r.decided());
        // The last write finishes on its own: nothing more to decide, whatever it answers.
        assert_eq!(
            r.feed(Asked::replica("n3"), failed("timeout")),
            Decision::Pending
        );
        assert_eq!(r.got(), 2);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn w_of_one_is_done_before_any_answer() {
        let mut r = WriteRound::new(1, Some("n1"), ["n2", "n3"], 2);
        assert_eq!(r.start(), Decision::Done);
        assert_eq!(ack(&mut r, "n2"), Decision::Pending);
    }

    #[test]
    fn w_equal_to_n_needs_every_replica() {
        let mut r = WriteRound::new(3, Some("n1"), ["n2", "n3"], 2);
        assert_eq!(ack(&mut r, "n2"), Decision::Pending);
        assert_eq!(ack(&mut r, "n3"), Decision::Done);
        // One failure is enough to make it unreachable.
        let mut r = WriteRound::new(3, Some("n1"), ["n2", "n3"], 2);
        assert_eq!(
            noquorum(r.feed(Asked::replica("n3"), failed("timeout"))),
            "NOQUORUM needed 3 got 1 (ok: n1; failed: n3 timeout; no answer yet: n2)"
        );
    }

    #[test]
    fn a_write_is_out_of_reach_as_soon_as_too_many_failed() {
        // N=5, W=3, this node not a replica: five calls.
        let mut r = WriteRound::new(3, None, ["n1", "n2", "n3", "n4", "n5"], 2);
        assert_eq!(ack(&mut r, "n1"), Decision::Pending);
        assert_eq!(
            r.feed(Asked::replica("n2"), failed("timeout")),
            Decision::Pending
        );
        assert_eq!(
            r.feed(Asked::replica("n3"), failed("timeout")),
            Decision::Pending
        );
        // 1 ack + 1 pending < 3: no need to wait for the last one.
        assert_eq!(
            noquorum(r.feed(Asked::replica("n4"), failed("connection refused"))),
            "NOQUORUM needed 3 got 1 (ok: n1; failed: n2 timeout, n3 timeout, n4 connection refused; \
             no answer yet: n5)"
        );
        assert_eq!(ack(&mut r, "n5"), Decision::Pending);
    }

    #[test]
    fn a_write_to_nobody_that_needs_more_is_out_of_reach_at_once() {
        let mut r = WriteRound::new(2, Some("n1"), NOBODY, 2);
        assert_eq!(noquorum(r.start()), "NOQUORUM needed 2 got 1 (ok: n1)");
    }

    #[test]
    fn a_substitute_holding_a_hint_counts_and_is_named_when_it_fails() {
        // n2 fails, its write goes to substitute n4 (still pending), which acknowledges.
        let mut r = WriteRound::new(2, Some("n1"), ["n2", "n3"], 2);
        let handed_on = WriteAnswer::Failed {
            why: "timeout".into(),
            handed_on: true,
        };
        assert_eq!(r.feed(Asked::replica("n2"), handed_on), Decision::Pending);
        assert_eq!(r.pending(), 2);
        assert_eq!(
            r.feed(Asked::substitute("n4", "n2"), WriteAnswer::Ack),
            Decision::Done
        );
        // Both the replica and its substitute fail: both named.
        let mut r = WriteRound::new(3, Some("n1"), ["n2", "n3"], 2);
        r.feed(
            Asked::replica("n2"),
            WriteAnswer::Failed {
                why: "timeout".into(),
                handed_on: true,
            },
        );
        assert_eq!(
            noquorum(r.feed(Asked::substitute("n4", "n2"), failed("connection refused"))),
            "NOQUORUM needed 3 got 1 (ok: n1; failed: n2 timeout, n4 (hint for n2) connection refused; \
             no answer yet: n3)"
        );
    }

    #[test]
    fn noquorum_names_who_counted_who_failed_and_whose_answer_is_still_to_come() {
        // W=3: n1 holds it, n2 fails and its write goes to a substitute, n3 fails too.
        let mut r = WriteRound::new(3, Some("n1"), ["n2", "n3"], 2);
        let handed_on = WriteAnswer::Failed {
            why: "connection refused".into(),
            handed_on: true,
        };
        assert_eq!(r.feed(Asked::replica("n2"), handed_on), Decision::Pending);
        assert_eq!(
            noquorum(r.feed(Asked::replica("n3"), failed("timeout"))),
            "NOQUORUM needed 3 got 1 (ok: n1; failed: n2 connection refused, n3 timeout; \
             no answer yet: a substitute for n2)"
        );
        // A substitute that fails in turn hands the write to the next one, still for n2.
        let mut r = WriteRound::new(3, Some("n1"), ["n2", "n3"], 2);
        let on = |why: &str| WriteAnswer::Failed {
            why: why.into(),
            handed_on: true,
        };
        assert_eq!(
            r.feed(Asked::replica("n2"), on("timeout")),
            Decision::Pending
        );
        assert_eq!(
            r.feed(Asked::substitute("n4", "n2"), on("timeout")),
            Decision::Pending
        );
        assert_eq!(
            noquorum(r.feed(Asked::replica("n3"), failed("timeout"))),
            "NOQUORUM needed 3 got 1 (ok: n1; failed: n2 timeout, n4 (hint for n2) timeout, \
             n3 timeout; no answer yet: a substitute for n2)"
        );
        // A read: who answered is named by the replica its answer came from.
        let mut r = ReadRound::new(4, vec![("n1", None)], ["n2", "n3", "n4"]);
        assert_eq!(r.feed(ReadAnswer::Held("n3", None)), Decision::Pending);
        assert_eq!(
            noquorum(r.feed(failed_read("n2"))),
            "NOQUORUM needed 4 got 2 (ok: n1, n3; failed: n2 timeout; no answer yet: n4)"
        );
    }

    #[test]
    fn a_newer_version_does_not_count_and_re_issues_past_the_newest_once_all_ended() {
        let mut r = WriteRound::new(2, Some("n1"), ["n2", "n3"], 2);
        assert_eq!(newer(&mut r, "n2", v(250, "n1")), Decision::Pending);
        // Re-issued past the newest version reported, once both answered.
        assert_eq!(
            newer(&mut r, "n3", v(300, "n2")),
            Decision::Reissue(v(300, "n2"))
        );
        assert!(r.decided());
        // The re-issued round starts from nothing, with one re-issue less.
        let mut again = r.reissued(3);
        assert_eq!(again.got(), 0);
        assert_eq!(again.pending(), 3);
        assert_eq!(ack(&mut again, "n1"), Decision::Pending);
        assert_eq!(ack(&mut again, "n2"), Decision::Done);
    }

    #[test]
    fn a_newer_version_waits_for_the_other_calls_even_when_w_is_out_of_reach() {
        let mut r = WriteRound::new(3, Some("n1"), ["n2", "n3"], 2);
        assert_eq!(newer(&mut r, "n2", v(9, "n2")), Decision::Pending);
        assert_eq!(
            r.feed(Asked::replica("n3"), failed("timeout")),
            Decision::Reissue(v(9, "n2"))
        );
    }

    #[test]
    fn a_write_is_re_issued_twice_at_most() {
        // This node holds no replica: the write and its re-issues go to n2 and n3.
        let mut r = WriteRound::new(2, None, ["n2", "n3"], 2);
        let mut reissues = 0;
        let mut last = Decision::Pending;
        // Bounded, so a round that re-issues for ever fails here instead of hanging.
        for _ in 0..5 {
            newer(&mut r, "n2", v(10, "n2"));
            last = newer(&mut r, "n3", v(11, "n3"));
            let Decision::Reissue(held) = &last else {
                break;
            };
            assert_eq!(*held, v(11, "n3"));
            reissues += 1;
            r = r.reissued(2);
        }
        assert_eq!(
            noquorum(last),
            "NOQUORUM needed 2 got 0 (failed: n2 holds a newer version, n3 holds a newer version)"
        );
        assert_eq!(reissues, 2);
    }

    #[test]
    fn a_newer_version_after_the_quorum_changes_nothing() {
        let mut r = WriteRound::new(2, Some("n1"), ["n2", "n3"], 2);
        assert_eq!(ack(&mut r, "n2"), Decision::Done);
        assert_eq!(newer(&mut r, "n3", v(99, "n3")), Decision::Pending);
    }

    #[test]
    fn joint_quorum_needs_count_of_each_list() {
        // Old list n1 n2 n3, new list n1 n2 n4: union of 4, W=2 -> 3 of the union.
        assert_eq!(needed(2, &[3, 3], 4), 3);
        assert_eq!(needed(2, &[3], 3), 2);
        // Acks from n1 and n4 alone: only one of the old list, not enough.
        let mut r = WriteRound::new(needed(2, &[3, 3], 4), Some("n1"), ["n2", "n3", "n4"], 2);
        assert_eq!(ack(&mut r, "n4"), Decision::Pending);
        assert_eq!(ack(&mut r, "n3"), Decision::Done);
    }

    #[test]
    fn joint_quorum_when_n_grows_needs_count_of_the_shorter_list_too() {
        // N 2 -> 3: old list a b, new list a b c, W=2. Acks from b and c would hold one node
        // of the old list only: all three are needed.
        assert_eq!(needed(2, &[2, 3], 3), 3);
        // W=3 of the new list, all of the old one (shorter than W).
        assert_eq!(needed(3, &[2, 3], 3), 3);
        // N 3 -> 2 is the same union seen from the other side.
        assert_eq!(needed(2, &[3, 2], 3), 3);
        assert_eq!(needed(1, &[3, 2], 3), 2);
    }

    proptest! {
        /// Whatever `needed` nodes of the union answered, at least `count` (or all) of each
        /// list are among them, also when the lists differ in size (N changed).
        #[test]
        fn joint_needed_meets_count_of_each_list(
            universe in 3usize..9,
            n_old in 1usize..5,
            n_new in 1usize..5,
            count in 1usize..5,
            shift in 0usize..4,
            picks in proptest::collection::vec(any::<bool>(), 9),
        ) {
            let n_old = n_old.min(universe);
            let n_new = n_new.min(universe);
            let count = count.min(n_new);
            let old: Vec<usize> = (0..n_old).collect();
            let new: Vec<usize> = (shift..shift + n_new).map(|i| i % universe).collect();
            let mut union = old.clone();
            union.extend(new.iter().filter(|i| !old.contains(i)));
            let need = needed(count, &[n_new, n_old], union.len());
            prop_assert!(need <= union.len());
            // The acknowledging nodes: the first `need` of the union in a picked order.
            let mut order = union.clone();
            order.sort_by_key(|i| (!picks[*i], *i));
            let acked = &order[..need];
            for list in [&old, &new] {
                let held = list.iter().filter(|i| acked.contains(i)).count();
                prop_assert!(held >= count.min(list.len()));
            }
        }

        /// A write round never reports `Done` with fewer acknowledgements than needed, decides
        /// at most once, re-issues only past a reported newer version and only while allowed,
        /// and has decided once every call ended.
        #[test]
        fn a_write_round_is_never_done_short_of_its_quorum(
            needed in 1usize..6,
            local in 0usize..2,
            reissues in 0u8..3,
            answers in proptest::collection::vec((0u8..4, any::<bool>(), 0u64..5), 0..8),
        ) {
            let asked = answers.len();
            let mut r = WriteRound::new(needed, (local == 1).then_some("me"), vec!["n"; asked], reissues);
            let mut decisions = vec![r.start()];
            let mut acks = local;
            let mut newest: Option<Version> = None;
            let mut extra = 0;
            for (i, (kind, handed_on, ts)) in answers.iter().enumerate() {
                // A substitute's answer only when one was handed on.
                let handed_on = *handed_on && extra < 3;
                let answer = match kind {
                    0 | 1 => { acks += 1; WriteAnswer::Ack }
                    2 => {
                        let held = v(*ts, "n9");
                        newest = newest.max(Some(held.clone()));
                        WriteAnswer::Newer(held)
                    }
                    _ => {
                        extra += usize::from(handed_on);
                        WriteAnswer::Failed { why: format!("e{i}"), handed_on }
                    }
                };
                let d = r.feed(Asked::replica("n"), answer);
                if d == Decision::Done {
                    prop_assert!(acks >= needed, "done with {} of {}", acks, needed);
                }
                if let Decision::Reissue(held) = &d {
                    prop_assert!(reissues > 0);
                    prop_assert!(acks < needed);
                    prop_assert_eq!(Some(held), newest.as_ref());
                    prop_assert_eq!(r.pending(), 0);
                }
                if let Decision::OutOfReach(e) = &d {
                    prop_assert_eq!(e.code, Code::NoQuorum);
                    prop_assert!(acks < needed);
                }
                decisions.push(d);
            }
            // The substitutes answer last: failures.
            for i in 0..extra {
                let d = r.feed(Asked::substitute("s", "n"), failed(&format!("s{i}")));
                prop_assert_ne!(&d, &Decision::Done);
                decisions.push(d);
            }
            let decided = decisions.iter().filter(|d| **d != Decision::Pending).count();
            prop_assert!(decided <= 1);
            prop_assert_eq!(decided, 1, "undecided after every call ended: {:?}", decisions);
            prop_assert_eq!(r.got(), acks);
        }

        /// A read round is `Done` exactly when `needed` replicas answered (never short of it),
        /// answers the newest value, and lists for repair exactly those behind it.
        #[test]
        fn a_read_round_answers_the_newest_of_its_quorum(
            needed in 1usize..5,
            answers in proptest::collection::vec(proptest::option::of((0u64..4, any::<bool>())), 0..6),
        ) {
            let held = |i: usize, a: &Option<(u64, bool)>| a.map(|(ts, tombstone)| Held {
                version: v(ts, "n"),
                tombstone,
                value: vec![u8::try_from(i).unwrap_or(0)],
            });
            let name = |i: usize| i.to_string();
            let mut r: ReadRound<String> =
                ReadRound::new(needed, Vec::new(), (0..answers.len()).map(name));
            let mut done_at = None;
            if r.start() == Decision::Done { done_at = Some(0); }
            for (i, a) in answers.iter().enumerate() {
                let d = r.feed(ReadAnswer::Held(name(i), held(i, a)));
                if d == Decision::Done {
                    prop_assert_eq!(r.got(), needed);
                    done_at = Some(i + 1);
                }
            }
            prop_assert_eq!(done_at.is_some(), answers.len() >= needed);
            let all: Vec<Option<Held>> = answers.iter().enumerate().map(|(i, a)| held(i, a)).collect();
            let best = newest(&all);
            prop_assert_eq!(r.newest(), best);
            prop_assert_eq!(r.value(), best.filter(|h| !h.tombstone).map(|h| h.value.as_slice()));
            let stale: Vec<usize> = match best {
                Some(b) => (0..all.len()).filter(|i| needs_repair(&all[*i], b)).collect(),
                None => Vec::new(),
            };
            let listed: Vec<usize> = r
                .repairs()
                .map(|(_, s)| s.map(|p| p.parse().unwrap_or(usize::MAX)).collect())
                .unwrap_or_default();
            prop_assert_eq!(listed, stale);
        }
    }

    fn held(ts: u64, node: &str, tombstone: bool, value: &str) -> Option<Held> {
        Some(Held {
            version: v(ts, node),
            tombstone,
            value: value.as_bytes().to_vec(),
        })
    }

    #[test]
    fn a_read_picks_the_newest_and_lists_the_replicas_to_repair() {
        // R=2, the local answer known: one more needed.
        let mut r = ReadRound::new(2, vec![("n1", held(5, "n1", false, "old"))], ["n2", "n3"]);
        assert_eq!(r.start(), Decision::Pending);
        assert_eq!(
            r.feed(ReadAnswer::Held("n2", held(7, "n2", false, "new"))),
            Decision::Done
        );
        assert_eq!(r.value(), Some(&b"new"[..]));
        assert_eq!(r.feed(ReadAnswer::Held("n3", None)), Decision::Pending);
        let (best, stale) = r.repairs().unwrap();
        assert_eq!(best.version, v(7, "n2"));
        assert_eq!(stale.copied().collect::<Vec<_>>(), ["n1", "n3"]);
    }

    #[test]
    fn a_tombstone_is_the_newest_answer_and_reads_as_nothing() {
        let mut r = ReadRound::new(2, vec![("n1", held(5, "n1", false, "old"))], ["n2"]);
        assert_eq!(
            r.feed(ReadAnswer::Held("n2", held(9, "n2", true, ""))),
            Decision::Done
        );
        assert_eq!(r.value(), None);
        assert!(r.newest().unwrap().tombstone);
        // The tombstone is repaired onto n1.
        let (best, stale) = r.repairs().unwrap();
        assert!(best.tombstone);
        assert_eq!(stale.copied().collect::<Vec<_>>(), ["n1"]);
    }

    #[test]
    fn agreeing_answers_need_no_repair() {
        let mut r = ReadRound::new(2, vec![("n1", held(5, "n1", false, "x"))], ["n2"]);
        r.feed(ReadAnswer::Held("n2", held(5, "n1", false, "x")));
        assert!(r.repairs().is_none());
        let nothing: ReadRound<&str> = ReadRound::new(1, vec![("n1", None)], NOBODY);
        assert!(nothing.repairs().is_none());
    }

    #[test]
    fn r_of_one_is_done_with_the_local_answer() {
        let mut r = ReadRound::new(1, vec![("n1", held(5, "n1", false, "x"))], ["n2", "n3"]);
        assert_eq!(r.start(), Decision::Done);
        assert_eq!(r.feed(failed_read("n2")), Decision::Pending);
    }

    #[test]
    fn a_read_is_out_of_reach_as_soon_as_too_many_failed() {
        // R=3: the local answer and two calls; one fails.
        let mut r = ReadRound::new(3, vec![("n1", None)], ["n2", "n3"]);
        assert_eq!(
            noquorum(r.feed(failed_read("n2"))),
            "NOQUORUM needed 3 got 1 (ok: n1; failed: n2 timeout; no answer yet: n3)"
        );
        assert_eq!(r.feed(ReadAnswer::Held("n3", None)), Decision::Pending);
        // Too few asked in the first place: out of reach before any answer.
        let mut r: ReadRound<&str> = ReadRound::new(2, Vec::new(), ["n2"]);
        assert_eq!(
            noquorum(r.start()),
            "NOQUORUM needed 2 got 0 (no answer yet: n2)"
        );
    }

    #[test]
    fn a_joint_read_needs_r_of_each_list() {
        // R=2, old list n1 n2 n3, new n1 n2 n4: 3 answers of the union.
        let mut r = ReadRound::new(
            needed(2, &[3, 3], 4),
            vec![("n1", None)],
            ["n2", "n3", "n4"],
        );
        assert_eq!(r.feed(ReadAnswer::Held("n4", None)), Decision::Pending);
        assert_eq!(r.feed(ReadAnswer::Held("n2", None)), Decision::Done);
    }
}
