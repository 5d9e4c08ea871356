//! Measures how evenly the consistent-hash ring spreads primary ownership across nodes for a range
//! of vnodes values, and how many keys move when a 4th node joins 3, and asserts what the docs say
//! of the default: every share within 15% of the mean for 3 to 5 nodes, a fourth node takes about
//! a quarter, every moved key goes to the new node. `--nocapture` shows the table behind
//! `DEFAULT_VNODES`.

use rcluster_domain::ring::{Ring, DEFAULT_VNODES};

const KEYS: usize = 100_000;
const VNODES: [u32; 7] = [1, 8, 16, 32, 64, 128, 256];

fn ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

struct Spread {
    max: f64,
    min: f64,
    mean: f64,
    /// Largest |share - mean| / mean, in percent.
    max_dev_pct: f64,
}

/// Share of `KEYS` keys whose primary owner is each node.
fn spread(nodes: usize, vnodes: u32) -> Spread {
    let ring = Ring::new(&ids(nodes), vnodes).unwrap();
    let mut counts = vec![0usize; nodes];
    for i in 0..KEYS {
        let primary = ring.preference_list(&key(i), 1)[0];
        let index = ring.nodes().iter().position(|n| n == primary).unwrap();
        counts[index] += 1;
    }
    let shares: Vec<f64> = counts.iter().map(|&c| c as f64 / KEYS as f64).collect();
    let mean = 1.0 / nodes as f64;
    let max = shares.iter().copied().fold(f64::MIN, f64::max);
    let min = shares.iter().copied().fold(f64::MAX, f64::min);
    let max_dev_pct = shares
        .iter()
        .map(|s| (s - mean).abs() / mean * 100.0)
        .fold(0.0, f64::max);
    Spread {
        max,
        min,
        mean,
        max_dev_pct,
    }
}

/// Fraction of `KEYS` keys whose primary owner changes when `n{nodes+1}` joins `nodes` nodes,
/// and how many of those went anywhere but to the new node (consistent hashing: none).
fn moved_fraction(nodes: usize, vnodes: u32) -> (f64, usize) {
    let before = Ring::new(&ids(nodes), vnodes).unwrap();
    let after = Ring::new(&ids(nodes + 1), vnodes).unwrap();
    let newcomer = format!("n{}", nodes + 1);
    let mut moved = 0;
    let mut elsewhere = 0;
    for i in 0..KEYS {
        let now = after.preference_list(&key(i), 1)[0];
        if before.preference_list(&key(i), 1)[0] != now {
            moved += 1;
            if now != newcomer.as_str() {
                elsewhere += 1;
            }
        }
    }
    (moved as f64 / KEYS as f64, elsewhere)
}

#[test]
fn load_spread_table() {
    println!("primary ownership over {KEYS} keys (DEFAULT_VNODES = {DEFAULT_VNODES})");
    println!(
        "{:>6} {:>5} {:>7} {:>7} {:>7} {:>8}",
        "vnodes", "nodes", "max", "min", "mean", "maxdev%"
    );
    let mut default_devs = Vec::new();
    for nodes in [3usize, 4, 5] {
        for vnodes in VNODES {
            let s = spread(nodes, vnodes);
            println!(
                "{vnodes:>6} {nodes:>5} {:>7.4} {:>7.4} {:>7.4} {:>8.2}",
                s.max, s.min, s.mean, s.max_dev_pct
            );
            if vnodes == DEFAULT_VNODES {
                default_devs.push((nodes, s.max_dev_pct));
            }
        }
    }
    println!("moved fraction adding a 4th node to 3 (ideal 0.25)");
    let mut default_moved = None;
    for vnodes in VNODES {
        let (fraction, elsewhere) = moved_fraction(3, vnodes);
        println!("{vnodes:>6} {fraction:>7.4}");
        assert_eq!(
            elsewhere, 0,
            "vnodes={vnodes}: {elsewhere} keys moved between old nodes"
        );
        if vnodes == DEFAULT_VNODES {
            default_moved = Some(fraction);
        }
    }
    // What the docs say of the default: every node's share within 15% of the mean for 3 to 5
    // nodes, and a fourth node takes about a quarter of the keys.
    for (nodes, dev) in default_devs {
        assert!(
            dev < 15.0,
            "DEFAULT_VNODES={DEFAULT_VNODES}: {nodes}-node max deviation {dev:.2}% >= 15%"
        );
    }
    let moved = default_moved.expect("DEFAULT_VNODES is among the measured values");
    assert!(
        (0.18..=0.32).contains(&moved),
        "DEFAULT_VNODES={DEFAULT_VNODES}: a 4th node took {moved:.4} of the keys, not about 0.25"
    );
}
