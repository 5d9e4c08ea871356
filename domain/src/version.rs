//! Versions of a stored value (hybrid timestamp + origin node id) and the put-if-newer rule that
//! every replica applies the same way.

use std::cmp::Ordering;

/// A version: the hybrid timestamp of the write and the node that made it. Equal timestamps are
/// ordered by node id (bytewise), so every replica picks the same winner.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    pub ts: u64,
    pub node: String,
}

impl Version {
    pub fn new(ts: u64, node: impl Into<String>) -> Self {
        Version {
            ts,
            node: node.into(),
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.ts
            .cmp(&other.ts)
            .then_with(|| self.node.as_bytes().cmp(other.node.as_bytes()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What a replica does with an incoming versioned write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The incoming version is newer (or nothing was stored): it is written.
    Applied,
    /// Exactly this version is already stored: nothing to do, and the write counts as held.
    Duplicate,
    /// A newer version is stored: the incoming write is dropped.
    Stale,
}

impl PutOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PutOutcome::Applied => "applied",
            PutOutcome::Duplicate => "duplicate",
            PutOutcome::Stale => "stale",
        }
    }
}

/// Put-if-newer: last writer wins, ties broken by node id.
pub fn decide(stored: Option<&Version>, incoming: &Version) -> PutOutcome {
    match stored.map(|s| incoming.cmp(s)) {
        None | Some(Ordering::Greater) => PutOutcome::Applied,
        Some(Ordering::Equal) => PutOutcome::Duplicate,
        Some(Ordering::Less) => PutOutcome::Stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn newer_applies_older_is_stale() {
        let stored = Version::new(10, "n1");
        assert_eq!(
            decide(Some(&stored), &Version::new(11, "n1")),
            PutOutcome::Applied
        );
        assert_eq!(
            decide(Some(&stored), &Version::new(9, "n9")),
            PutOutcome::Stale
        );
        assert_eq!(decide(None, &Version::new(0, "n1")), PutOutcome::Applied);
    }

    #[test]
    fn equal_time_broken_by_node_id() {
        let stored = Version::new(10, "n2");
        assert_eq!(
            decide(Some(&stored), &Version::new(10, "n3")),
            PutOutcome::Applied
        );
        assert_eq!(
            decide(Some(&stored), &Version::new(10, "n1")),
            PutOutcome::Stale
        );
        assert_eq!(
            decide(Some(&stored), &Version::new(10, "n2")),
            PutOutcome::Duplicate
        );
    }

    proptest! {
        /// Whatever order replicas receive a set of writes in, they end on the same version.
        #[test]
        fn replicas_converge_in_any_order(
            writes in proptest::collection::vec((0u64..50, 0u8..4), 1..20),
            seed in any::<u64>(),
        ) {
            let versions: Vec<Version> =
                writes.iter().map(|(t, n)| Version::new(*t, format!("n{n}"))).collect();
            let mut shuffled = versions.clone();
            // Deterministic shuffle from the seed.
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let apply = |order: &[Version]| {
                let mut stored: Option<Version> = None;
                for v in order {
                    if decide(stored.as_ref(), v) == PutOutcome::Applied {
                        stored = Some(v.clone());
                    }
                }
                stored
            };
            prop_assert_eq!(apply(&versions), apply(&shuffled));
            prop_assert_eq!(apply(&versions), versions.iter().max().cloned());
        }
    }
}
