//! Consistent-hash ring: maps a key to the ordered list of nodes that should hold its replicas.

/// Virtual nodes (tokens) per node.
///
/// Chosen from `tests/ring_spread.rs` (100,000 keys, node ids `n1..`, largest deviation of a
/// node's primary share from the mean):
///
/// | vnodes | 3 nodes | 5 nodes | 3 -> 4 nodes, keys moved (ideal 0.25) |
/// |-------:|--------:|--------:|--------------------------------------:|
/// |     32 |    7.4% |   26.0% |                                 0.298 |
/// |     64 |   35.4% |   15.8% |                                 0.274 |
/// |    128 |   10.2% |    3.8% |                                 0.253 |
/// |    256 |    6.3% |    7.3% |                                 0.277 |
///
/// One id set is one sample, so the exact arc shares were also computed for 40 id sets: at 128
/// the largest deviation averaged 8.6% (3 nodes) and 10.8% (5), 90th percentile 16.5% and 18.1%;
/// at 256 it averaged 6.0% and 8.4%, 90th percentile 10.9% and 14.5%, worst 13.1% and 16.6%.
/// Deviation only halves per 4x vnodes (512: 4.2% and 6.1% average), so 256 is where the cost
/// stops buying much. Cost: a token is `(u64, u16)`, 10 bytes padded to 16, so 4 KiB per node
/// (12 KiB for 3 nodes), building hashes 256 short strings per node, and a lookup is a binary
/// search over `256 * nodes` tokens.
pub const DEFAULT_VNODES: u32 = 256;

/// Largest accepted `vnodes`.
pub const MAX_VNODES: u32 = 4096;

/// Most nodes a ring can index (node indexes are `u16`).
pub const MAX_NODES: usize = u16::MAX as usize + 1;

/// Why a ring could not be built; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("ring: no nodes")]
    NoNodes,
    #[error("ring: duplicate node id {0:?}")]
    DuplicateNodeId(String),
    #[error("ring: vnodes {0} is out of range 1..={MAX_VNODES}")]
    VnodesOutOfRange(u32),
    #[error("ring: {0} nodes is more than the {MAX_NODES} a ring can index")]
    TooManyNodes(usize),
}

/// 64-bit hash of `bytes`: FNV-1a 64 followed by the murmur3 `fmix64` finalizer.
///
/// FNV-1a alone avalanches poorly on short, similar inputs: token names such as `"n1#0"` and
/// `"n1#1"` differ only in the last byte, and FNV's last step (xor a byte, multiply by a prime
/// with few set bits) leaves their hashes close together in the high bits, so one node's tokens
/// would cluster on the ring. The finalizer mixes every input bit into every output bit.
pub fn hash64(bytes: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    // murmur3 fmix64.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// A consistent-hash ring over a fixed set of nodes, each owning `vnodes` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    /// (token, index into `nodes`), sorted by token then node index.
    tokens: Vec<(u64, u16)>,
    /// Node ids, sorted. Every node has the same number of tokens.
    nodes: Vec<String>,
}

impl Ring {
    /// Builds the ring. Node `id` owns tokens `hash64("{id}#{v}")` for `v` in `0..vnodes`. The
    /// result does not depend on the order of `node_ids`.
    pub fn new(node_ids: &[String], vnodes: u32) -> Result<Ring, RingError> {
        if node_ids.is_empty() {
            return Err(RingError::NoNodes);
        }
        if vnodes == 0 || vnodes > MAX_VNODES {
            return Err(RingError::VnodesOutOfRange(vnodes));
        }
        let mut nodes = node_ids.to_vec();
        nodes.sort();
        if let Some(pair) = nodes.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(RingError::DuplicateNodeId(pair[0].clone()));
        }
        if nodes.len() > MAX_NODES {
            return Err(RingError::TooManyNodes(nodes.len()));
        }
        let mut tokens = Vec::with_capacity(nodes.len() * vnodes as usize);
        for (index, id) in nodes.iter().enumerate() {
            let index = u16::try_from(index).expect("node count checked against MAX_NODES");
            for v in 0..vnodes {
                tokens.push((hash64(format!("{id}#{v}").as_bytes()), index));
            }
        }
        tokens.sort_unstable();
        Ok(Ring { tokens, nodes })
    }

    /// The first `min(n, node count)` distinct nodes met walking clockwise from the first token
    /// at or after `hash64(key)`, wrapping past the end. The first is the key's primary owner.
    pub fn preference_list(&self, key: &[u8], n: usize) -> Vec<&str> {
        self.preference_at(hash64(key), n)
    }

    /// The preference list of the place `h` on the ring (what a key hashing to `h` gets).
    pub fn preference_at(&self, h: u64, n: usize) -> Vec<&str> {
        let want = n.min(self.nodes.len());
        let start = self.tokens.partition_point(|&(token, _)| token < h);
        self.walk_from(start, want)
    }

    /// The preference list of every key range (the keys hashing up to each token, after the
    /// one before it), one per token: what "a key range lost its quorum" is counted over.
    pub fn range_owners(&self, n: usize) -> Vec<Vec<&str>> {
        let want = n.min(self.nodes.len());
        (0..self.tokens.len())
            .map(|start| self.walk_from(start, want))
            .collect()
    }

    /// The first `want` distinct nodes from token `start` on, wrapping past the end.
    fn walk_from(&self, start: usize, want: usize) -> Vec<&str> {
        let mut out = Vec::with_capacity(want);
        if want == 0 {
            return out;
        }
        let mut seen = vec![false; self.nodes.len()];
        let (after, before) = self.tokens.split_at(start);
        for &(_, index) in before.iter().chain(after) {
            let index = usize::from(index);
            if !seen[index] {
                seen[index] = true;
                out.push(self.nodes[index].as_str());
                if out.len() == want {
                    break;
                }
            }
        }
        out
    }

    /// Every node in clockwise order from `key`: the preference list extended to all nodes, so
    /// the nodes after the first `n` are the sloppy-quorum substitutes in order.
    pub fn successors(&self, key: &[u8]) -> Vec<&str> {
        self.preference_list(key, self.nodes.len())
    }

    /// Node ids, sorted.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Every token in ring order with the node that owns it (for drawing the ring).
    pub fn tokens(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        self.tokens
            .iter()
            .map(|&(token, index)| (token, self.nodes[usize::from(index)].as_str()))
    }

    /// Tokens per node.
    pub fn vnodes(&self) -> u32 {
        u32::try_from(self.tokens.len() / self.nodes.len()).expect("vnodes <= MAX_VNODES")
    }
}

/// The stretches of the hash space whose set of `n` replicas differs between two rings (after
/// a member joins or leaves, or the virtual nodes change): `(after, up_to)` ranges of places
/// `after < h <= up_to`, in ring order, neighbours merged; a range with `after > up_to` wraps
/// past the end of the hash space, and one with `after == up_to` is the whole of it. Within the stretch between two neighbouring tokens of either
/// ring, both rings give every place the same preference list, so one place per stretch decides.
pub fn moved_ranges(a: &Ring, b: &Ring, n: usize) -> Vec<(u64, u64)> {
    let mut bounds: Vec<u64> = a.tokens().chain(b.tokens()).map(|(t, _)| t).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let replicas = |ring: &Ring, h: u64| {
        let mut set = ring.preference_at(h, n);
        set.sort_unstable();
        set.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (i, &end) in bounds.iter().enumerate() {
        // The first stretch wraps: from the last bound past the end, to the first.
        let after = if i == 0 {
            bounds[bounds.len() - 1]
        } else {
            bounds[i - 1]
        };
        if replicas(a, end) == replicas(b, end) {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.1 == after => last.1 = end,
            _ => out.push((after, end)),
        }
    }
    // The wrapping first range and the last one meet at the last bound: one range.
    if out.len() > 1 && out[out.len() - 1].1 == out[0].0 {
        let (after, _) = out.pop().expect("two ranges");
        out[0].0 = after;
    }
    out
}

/// The share of the hash space (0 to 1) that [`moved_ranges`] covers.
pub fn moved_share(ranges: &[(u64, u64)]) -> f64 {
    let total: u128 = ranges
        .iter()
        .map(|&(after, up_to)| match up_to.wrapping_sub(after) {
            0 => 1u128 << 64,
            length => u128::from(length),
        })
        .sum();
    total as f64 / 18_446_744_073_709_551_616.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_range_has_the_preference_list_of_its_keys() {
        let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let ring = Ring::new(&ids, 8).unwrap();
        let ranges = ring.range_owners(3);
        assert_eq!(ranges.len(), 32);
        for i in 0..200u32 {
            let key = format!("k{i}");
            let h = hash64(key.as_bytes());
            let start = ring.tokens.partition_point(|&(t, _)| t < h) % ring.tokens.len();
            assert_eq!(ranges[start], ring.preference_list(key.as_bytes(), 3));
        }
        assert!(ranges.iter().all(|r| r.len() == 3));
    }
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn key(i: usize) -> Vec<u8> {
        format!("key-{i}").into_bytes()
    }

    #[test]
    fn moved_ranges_cover_exactly_the_places_whose_replicas_change() {
        let three: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let four: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let before = Ring::new(&three, 16).unwrap();
        let after = Ring::new(&four, 16).unwrap();
        assert!(moved_ranges(&before, &before, 2).is_empty());
        let ranges = moved_ranges(&before, &after, 2);
        let share = moved_share(&ranges);
        // d takes about a quarter of the primaries and of the second copies: half the space moves.
        assert!(share > 0.2 && share < 0.8, "{share}");
        // Sample keys: a key changes replicas exactly when it falls in a range.
        let inside = |h: u64| {
            ranges.iter().any(|&(a, b)| {
                if a < b {
                    a < h && h <= b
                } else if a == b {
                    true
                } else {
                    h > a || h <= b
                }
            })
        };
        for i in 0..2000u32 {
            let key = format!("k{i}");
            let h = hash64(key.as_bytes());
            let mut x = before.preference_list(key.as_bytes(), 2);
            let mut y = after.preference_list(key.as_bytes(), 2);
            x.sort_unstable();
            y.sort_unstable();
            assert_eq!(x != y, inside(h), "{key}");
        }
        // With n = 4 every place gains d: the whole space, one range.
        let all = moved_ranges(&before, &after, 4);
        assert_eq!(all.len(), 1);
        assert_eq!(moved_share(&all), 1.0);
    }

    #[test]
    fn tokens_are_in_ring_order_with_their_owners() {
        let ids = vec!["b".to_string(), "a".to_string()];
        let ring = Ring::new(&ids, 8).unwrap();
        let tokens: Vec<(u64, &str)> = ring.tokens().collect();
        assert_eq!(tokens.len(), 16);
        assert!(tokens.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(tokens.iter().filter(|t| t.1 == "a").count(), 8);
        // The key's primary owner is the owner of the first token at or after its hash.
        let h = hash64(b"some-key");
        let first = tokens.iter().find(|t| t.0 >= h).unwrap_or(&tokens[0]);
        assert_eq!(ring.preference_list(b"some-key", 1), vec![first.1]);
    }

    #[test]
    fn hash64_is_fnv1a_then_fmix64() {
        // FNV-1a 64 of "" is the offset basis; fmix64 of that is fixed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        assert_eq!(hash64(b""), h);
        assert_ne!(hash64(b"n1#0"), hash64(b"n1#1"));
    }

    #[test]
    fn hash64_avalanches_on_similar_names() {
        // Flipping the last character changes about half the bits, on average.
        let total: u32 = (0..1000)
            .map(|v| {
                (hash64(format!("n1#{v}").as_bytes()) ^ hash64(format!("n1#{}", v + 1).as_bytes()))
                    .count_ones()
            })
            .sum();
        let mean = f64::from(total) / 1000.0;
        assert!((28.0..=36.0).contains(&mean), "mean flipped bits {mean}");
    }

    #[test]
    fn errors() {
        assert_eq!(Ring::new(&[], 8), Err(RingError::NoNodes));
        assert_eq!(Ring::new(&ids(3), 0), Err(RingError::VnodesOutOfRange(0)));
        assert_eq!(
            Ring::new(&ids(3), MAX_VNODES + 1),
            Err(RingError::VnodesOutOfRange(MAX_VNODES + 1))
        );
        assert!(Ring::new(&ids(3), MAX_VNODES).is_ok());
        let dup = vec!["n2".to_owned(), "n1".to_owned(), "n2".to_owned()];
        assert_eq!(
            Ring::new(&dup, 8),
            Err(RingError::DuplicateNodeId("n2".to_owned()))
        );
        assert_eq!(RingError::NoNodes.to_string(), "ring: no nodes");
        assert_eq!(
            RingError::DuplicateNodeId("n2".to_owned()).to_string(),
            "ring: duplicate node id \"n2\""
        );
        assert_eq!(
            RingError::VnodesOutOfRange(0).to_string(),
            "ring: vnodes 0 is out of range 1..=4096"
        );
    }

    #[test]
    fn token_is_sixteen_bytes() {
        // (u64, u16) is 10 bytes of payload padded to the u64 alignment.
        assert_eq!(std::mem::size_of::<(u64, u16)>(), 16);
    }

    #[test]
    fn accessors() {
        let ring = Ring::new(&["b".to_owned(), "a".to_owned()], 5).unwrap();
        assert_eq!(ring.nodes(), ["a".to_owned(), "b".to_owned()]);
        assert_eq!(ring.vnodes(), 5);
        assert_eq!(ring.tokens.len(), 10);
        assert!(ring.tokens.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn vnodes_one_works() {
        let ring = Ring::new(&ids(4), 1).unwrap();
        for i in 0..200 {
            let all = ring.successors(&key(i));
            assert_eq!(all.len(), 4);
            assert_eq!(ring.preference_list(&key(i), 2), all[..2]);
        }
        // With one token per node the successor order is the ring order, a rotation of one cycle.
        let cycle: Vec<&str> = ring
            .tokens
            .iter()
            .map(|&(_, i)| ring.nodes[usize::from(i)].as_str())
            .collect();
        let s = ring.successors(b"x");
        let at = cycle.iter().position(|n| *n == s[0]).unwrap();
        let rotated: Vec<&str> = cycle[at..].iter().chain(&cycle[..at]).copied().collect();
        assert_eq!(s, rotated);
    }

    #[test]
    fn single_node_and_zero_n() {
        let ring = Ring::new(&ids(1), 3).unwrap();
        assert_eq!(ring.preference_list(b"k", 3), ["n1"]);
        assert!(ring.preference_list(b"k", 0).is_empty());
    }

    #[test]
    fn primary_is_owner_of_first_token_at_or_after_hash() {
        let ring = Ring::new(&ids(3), 4).unwrap();
        for i in 0..500 {
            let h = hash64(&key(i));
            let (_, index) = ring
                .tokens
                .iter()
                .copied()
                .find(|&(token, _)| token >= h)
                .unwrap_or(ring.tokens[0]);
            let owner = ring.nodes[usize::from(index)].as_str();
            assert_eq!(ring.preference_list(&key(i), 1), [owner], "key {i}");
        }
    }

    #[test]
    fn wraps_past_the_last_token() {
        let ring = Ring::new(&ids(3), 4).unwrap();
        let (last, _) = *ring.tokens.last().unwrap();
        let first_owner = ring.nodes[usize::from(ring.tokens[0].1)].as_str();
        let k = (0..)
            .map(key)
            .find(|k| hash64(k) > last)
            .expect("some key hashes past the last token");
        assert_eq!(ring.preference_list(&k, 1), [first_owner]);
    }

    /// Adding node n+1 to a ring of n moves about 1/(n+1) of primary owners, all to the new node.
    #[test]
    fn adding_a_node_moves_about_one_share_to_it() {
        const KEYS: usize = 20_000;
        for n in [3usize, 4, 5, 8] {
            let before = Ring::new(&ids(n), DEFAULT_VNODES).unwrap();
            let after = Ring::new(&ids(n + 1), DEFAULT_VNODES).unwrap();
            let new_node = format!("n{}", n + 1);
            let mut moved = 0usize;
            for i in 0..KEYS {
                let k = key(i);
                let old = before.preference_list(&k, 1)[0];
                let new = after.preference_list(&k, 1)[0];
                if old != new {
                    moved += 1;
                    assert_eq!(new, new_node, "key {i} moved from {old} to {new}");
                }
            }
            let fraction = moved as f64 / KEYS as f64;
            let expected = 1.0 / (n + 1) as f64;
            println!(
                "{n} -> {} nodes: moved {fraction:.4} (ideal {expected:.4})",
                n + 1
            );
            assert!(
                (fraction - expected).abs() <= 0.08,
                "n={n}: moved {fraction:.4}, expected {expected:.4} +- 0.08"
            );
        }
    }

    fn node_ids() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set("[a-z0-9_-]{1,8}", 1..12)
            .prop_map(|set| set.into_iter().collect::<Vec<_>>())
    }

    proptest! {
        #[test]
        fn preference_list_has_distinct_nodes(
            ids in node_ids(),
            vnodes in 1u32..64,
            key in proptest::collection::vec(any::<u8>(), 0..32),
            n in 0usize..16,
        ) {
            let ring = Ring::new(&ids, vnodes).unwrap();
            let list = ring.preference_list(&key, n);
            prop_assert_eq!(list.len(), n.min(ids.len()));
            let mut sorted = list.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), list.len());
            prop_assert!(list.iter().all(|node| ids.iter().any(|id| id == node)));
            let all = ring.successors(&key);
            prop_assert_eq!(all.len(), ids.len());
            prop_assert_eq!(&all[..list.len()], &list[..]);
        }

        #[test]
        fn input_order_does_not_matter(
            shuffled in node_ids().prop_flat_map(|ids| (Just(ids.clone()), Just(ids).prop_shuffle())),
            vnodes in 1u32..64,
            key in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let (ids, permuted) = shuffled;
            let a = Ring::new(&ids, vnodes).unwrap();
            let b = Ring::new(&permuted, vnodes).unwrap();
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(a.successors(&key), b.successors(&key));
        }

        #[test]
        fn deterministic_across_calls(
            ids in node_ids(),
            vnodes in 1u32..64,
            key in proptest::collection::vec(any::<u8>(), 0..32),
            n in 0usize..16,
        ) {
            let a = Ring::new(&ids, vnodes).unwrap();
            let b = Ring::new(&ids, vnodes).unwrap();
            prop_assert_eq!(a.preference_list(&key, n), a.preference_list(&key, n));
            prop_assert_eq!(a.preference_list(&key, n), b.preference_list(&key, n));
        }
    }
}
