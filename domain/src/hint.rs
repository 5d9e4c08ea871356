//! Hinted handoff entries: a write held for a node that was down, stored as one field of the
//! hash `hint:<node>` (field = user key). The value is `<version> <origin> <tombstone> <bytes>`:
//! readable in Redis Insight, binary-safe for the value. Also the backlog of the hints held for
//! one node (count, bytes, age of the oldest), which the cap on hint bytes per node is checked
//! against.

use std::collections::BTreeMap;

use crate::hlc::Timestamp;
use crate::version::Version;

/// One held write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    pub version: Version,
    pub tombstone: bool,
    pub value: Vec<u8>,
}

/// The Redis key holding the hints for `node`.
pub fn hint_key(node: &str) -> String {
    format!("hint:{node}")
}

pub fn encode(version: &Version, tombstone: bool, value: &[u8]) -> Vec<u8> {
    let mut out = format!("{} {} {} ", version.ts, version.node, u8::from(tombstone)).into_bytes();
    out.extend_from_slice(value);
    out
}

/// The parts of an encoded hint, the value borrowed: (timestamp, origin, tombstone, value).
fn parts(bytes: &[u8]) -> Option<(u64, &str, bool, &[u8])> {
    let mut parts = bytes.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let node = std::str::from_utf8(parts.next()?).ok()?;
    let tombstone = match parts.next()? {
        b"0" => false,
        b"1" => true,
        _ => return None,
    };
    Some((ts, node, tombstone, parts.next()?))
}

/// The version timestamp of an encoded hint when it decodes (as [`decode`] would), without
/// copying the value.
pub fn decode_ts(bytes: &[u8]) -> Option<u64> {
    parts(bytes).map(|(ts, ..)| ts)
}

/// The bytes a hint takes in its hash: the field (the user key) and the encoded hint.
pub fn stored_bytes(key: &[u8], encoded_len: usize) -> u64 {
    (key.len() + encoded_len) as u64
}

/// The hints held for one node: how many, their bytes, and how many carry a version from each
/// second (the physical part of the hybrid timestamp: about when the write was made), so the age
/// of the oldest is still known after it was delivered. Counts are signed so that a backlog can
/// also hold a change (what happened while a recount ran) and be added to another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    pub count: i64,
    pub bytes: i64,
    /// Second (physical ms / 1000) -> hints of that second; no zero entries.
    seconds: BTreeMap<u64, i64>,
}

fn second_of(ts: u64) -> u64 {
    Timestamp(ts).physical_ms() / 1000
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Backlog {
    fn shift(&mut self, second: u64, by: i64) {
        let entry = self.seconds.entry(second).or_insert(0);
        *entry += by;
        if *entry == 0 {
            self.seconds.remove(&second);
        }
    }

    /// A hint of version timestamp `ts` taking `bytes` ([`stored_bytes`]) is now held.
    pub fn add(&mut self, ts: u64, bytes: u64) {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(to_i64(bytes));
        self.shift(second_of(ts), 1);
    }

    /// A hint added with these arguments is no longer held.
    pub fn remove(&mut self, ts: u64, bytes: u64) {
        self.count -= 1;
        self.bytes = self.bytes.saturating_sub(to_i64(bytes));
        self.shift(second_of(ts), -1);
    }

    pub fn is_empty(&self) -> bool {
        self.count <= 0 && self.seconds.is_empty()
    }

    /// How old the oldest hint is at `now_ms` (wall-clock ms), to the second: from the start of
    /// the second its version carries. 0 when none is held.
    pub fn oldest_age_ms(&self, now_ms: u64) -> u64 {
        self.seconds
            .iter()
            .find(|(_, n)| **n > 0)
            .map_or(0, |(second, _)| now_ms.saturating_sub(second * 1000))
    }

    /// Whether storing a hint of `new_bytes` in place of one of `replaced_bytes` (0: none) keeps
    /// the backlog within `cap` bytes.
    pub fn admits(&self, new_bytes: u64, replaced_bytes: u64, cap: u64) -> bool {
        let after = i128::from(self.bytes) + i128::from(new_bytes) - i128::from(replaced_bytes);
        after <= i128::from(cap)
    }

    /// `self` plus the change from `before` to `after`; never below zero.
    fn plus_change(mut self, before: &Backlog, after: &Backlog) -> Backlog {
        self.count = (self.count + after.count - before.count).max(0);
        self.bytes = (self.bytes + after.bytes - before.bytes).max(0);
        for (second, n) in &before.seconds {
            self.shift(*second, -n);
        }
        for (second, n) in &after.seconds {
            self.shift(*second, *n);
        }
        self.seconds.retain(|_, n| *n > 0);
        self
    }
}

/// The backlogs per node after a recount: what the recount found (`counted`) plus what the
/// commands changed while it ran (the live backlogs went from `before` to `after`). Exact when
/// nothing changed meanwhile; a hint changed before the recount reached it is counted twice.
/// Nodes left with nothing held are dropped.
pub fn after_recount(
    counted: BTreeMap<String, Backlog>,
    before: &BTreeMap<String, Backlog>,
    after: &BTreeMap<String, Backlog>,
) -> BTreeMap<String, Backlog> {
    let empty = Backlog::default();
    let mut nodes: Vec<&String> = counted.keys().chain(before.keys()).collect();
    nodes.extend(after.keys());
    nodes.sort();
    nodes.dedup();
    let mut out = BTreeMap::new();
    for node in nodes {
        let base = counted.get(node).cloned().unwrap_or_default();
        let merged = base.plus_change(
            before.get(node).unwrap_or(&empty),
            after.get(node).unwrap_or(&empty),
        );
        if !merged.is_empty() {
            out.insert(node.clone(), merged);
        }
    }
    out
}

pub fn decode(bytes: &[u8]) -> Option<Hint> {
    let (ts, node, tombstone, value) = parts(bytes)?;
    Some(Hint {
        version: Version::new(ts, node),
        tombstone,
        value: value.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_binary_value() {
        let v = Version::new(42, "n1");
        let value = b"a b\x00\xff c".to_vec();
        let hint = decode(&encode(&v, false, &value)).unwrap();
        assert_eq!(
            hint,
            Hint {
                version: v.clone(),
                tombstone: false,
                value
            }
        );
        let t = decode(&encode(&v, true, b"")).unwrap();
        assert!(t.tombstone && t.value.is_empty());
        assert!(decode(b"x n1 0 v").is_none());
        assert!(decode(b"1 n1 2 v").is_none());
        assert!(decode(b"1 n1").is_none());
        assert_eq!(decode_ts(&encode(&v, false, b"x y")), Some(42));
        assert_eq!(decode_ts(b"x n1 0 v"), None);
        assert_eq!(decode_ts(b"42"), None);
        // Only what decodes: a bad tombstone flag makes the whole hint unreadable.
        assert_eq!(decode_ts(b"1 n1 2 x"), None);
    }

    /// A timestamp of `ms` wall-clock milliseconds.
    fn ts(ms: u64) -> u64 {
        Timestamp::new(ms, 3).0
    }

    #[test]
    fn backlog_counts_bytes_and_the_oldest_second() {
        let mut b = Backlog::default();
        assert!(b.is_empty());
        assert_eq!(b.oldest_age_ms(5_000), 0);
        b.add(ts(10_500), 100);
        b.add(ts(12_000), 50);
        b.add(ts(10_900), 10);
        assert_eq!((b.count, b.bytes), (3, 160));
        // From the start of second 10.
        assert_eq!(b.oldest_age_ms(20_000), 10_000);
        b.remove(ts(10_500), 100);
        assert_eq!(b.oldest_age_ms(20_000), 10_000);
        b.remove(ts(10_900), 10);
        // Both hints of second 10 delivered: the oldest is now from second 12.
        assert_eq!(b.oldest_age_ms(20_000), 8_000);
        // A clock ahead of ours reads as age 0, not as a huge number.
        assert_eq!(b.oldest_age_ms(1_000), 0);
        b.remove(ts(12_000), 50);
        assert!(b.is_empty());
        assert_eq!((b.count, b.bytes), (0, 0));
    }

    #[test]
    fn the_cap_admits_up_to_and_including_it() {
        let mut b = Backlog::default();
        b.add(ts(1), 600);
        assert!(b.admits(400, 0, 1000));
        assert!(!b.admits(401, 0, 1000));
        // Replacing a held hint counts only the difference.
        assert!(b.admits(900, 500, 1000));
        assert!(!b.admits(901, 500, 1000));
        assert!(Backlog::default().admits(1000, 0, 1000));
        assert!(!Backlog::default().admits(1001, 0, 1000));
    }

    #[test]
    fn a_recount_keeps_what_changed_while_it_ran() {
        let node = |b: Backlog| BTreeMap::from([("n2".to_string(), b)]);
        let mut counted = Backlog::default();
        counted.add(ts(1_000), 10);
        counted.add(ts(2_000), 20);
        // Meanwhile the live backlog gained a hint at second 5 and lost the one of second 1.
        let mut before = Backlog::default();
        before.add(ts(9_000), 7); // stale figures from before the load
        let mut after = before.clone();
        after.add(ts(5_000), 30);
        after.remove(ts(1_000), 10);
        let got = after_recount(node(counted), &node(before), &node(after));
        let mut want = Backlog::default();
        want.add(ts(2_000), 20);
        want.add(ts(5_000), 30);
        assert_eq!(got, node(want));
        // Nothing changed and nothing found: the node is gone.
        let empty = BTreeMap::new();
        assert!(after_recount(BTreeMap::new(), &node(Backlog::default()), &empty).is_empty());
        // A node only the live side knows (hints stored during the recount) is kept.
        let mut fresh = Backlog::default();
        fresh.add(ts(3_000), 5);
        let got = after_recount(BTreeMap::new(), &empty, &node(fresh.clone()));
        assert_eq!(got, node(fresh));
    }
}
