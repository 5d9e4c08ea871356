//! Measures how evenly the consistent-hash ring spreads primary ownership across nodes for a range
//! of vnodes values, and how many keys move when a 4th node joins 3; run with `--nocapture` to see
//! the table behind `DEFAULT_VNODES`.

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

/// Fraction of `KEYS` keys whose primary owner changes when `n{nodes+1}` joins `nodes` nodes.
fn moved_fraction(nodes: usize, vnodes: u32) -> f64 {
    let before = Ring::new(&ids(nodes), vnodes).unwrap();
    let after = Ring::new(&ids(nodes + 1), vnodes).unwrap();
    let moved = (0..KEYS)
        .filter(|&i| before.preference_list(&key(i), 1) != after.preference_list(&key(i), 1))
        .count();
    moved as f64 / KEYS as f64
}

#[test]
fn load_spread_table() {
    println!("primary ownership over {KEYS} keys (DEFAULT_VNODES = {DEFAULT_VNODES})");
    println!(
        "{:>6} {:>5} {:>7} {:>7} {:>7} {:>8}",
        "vnodes", "nodes", "max", "min", "mean", "maxdev%"
    );
    let mut default_dev_3 = None;
    for nodes in [3usize, 5] {
        for vnodes in VNODES {
            let s = spread(nodes, vnodes);
            println!(
                "{vnodes:>6} {nodes:>5} {:>7.4} {:>7.4} {:>7.4} {:>8.2}",
                s.max, s.min, s.mean, s.max_dev_pct
            );
            if nodes == 3 && vnodes == DEFAULT_VNODES {
                default_dev_3 = Some(s.max_dev_pct);
            }
        }
    }
    println!("moved fraction adding a 4th node to 3 (ideal 0.25)");
    for vnodes in VNODES {
        println!("{vnodes:>6} {:>7.4}", moved_fraction(3, vnodes));
    }
    let dev = default_dev_3.unwrap_or_else(|| spread(3, DEFAULT_VNODES).max_dev_pct);
    assert!(
        dev < 15.0,
        "DEFAULT_VNODES={DEFAULT_VNODES}: 3-node max deviation {dev:.2}% >= 15%"
    );
}
