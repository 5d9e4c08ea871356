//! Runs the deterministic Raft simulator over many seeds; a failure names the seed and the
//! command that replays it.

use std::time::Instant;

use rcluster_raft_sim::{self as sim, SimOptions};

/// Seeds run by `many_seeds_keep_raft_safe_and_live`.
const SEEDS: u64 = 1000;
/// Steps per seed: 1,000 seeds of 3,000 steps take about 10 s in a debug build on 2 cores.
const STEPS: u64 = 3000;

#[test]
fn many_seeds_keep_raft_safe_and_live() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = SimOptions {
        steps: STEPS,
        trace: false,
    };
    let started = Instant::now();
    match sim::run_many(0, SEEDS, opts, threads) {
        Ok(summary) => {
            assert_eq!(summary.seeds, SEEDS);
            // The faults really happened.
            assert!(summary.crashes > SEEDS, "{summary:?}");
            assert!(summary.partitions > SEEDS, "{summary:?}");
            assert!(summary.snapshots_installed > SEEDS, "{summary:?}");
            assert!(summary.membership_changes > SEEDS, "{summary:?}");
            assert!(summary.committed > SEEDS * 50, "{summary:?}");
            eprintln!(
                "{SEEDS} seeds x {STEPS} steps in {:.2?}: {summary:?}",
                started.elapsed()
            );
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_seed_replays_identically() {
    let opts = SimOptions {
        steps: 1500,
        trace: true,
    };
    let a = sim::run(42, opts).expect("seed 42 passes");
    let b = sim::run(42, opts).expect("seed 42 passes");
    assert_eq!(a, b);
}

#[test]
fn failure_names_the_reproduce_command() {
    let e = sim::SimError {
        seed: 1234,
        steps: sim::DEFAULT_STEPS,
        at: 7,
        what: "election safety: n1 and n2 are both leaders of term 3".into(),
        trace: vec![],
    };
    let text = e.to_string();
    assert!(text.contains("seed 1234"), "{text}");
    assert!(
        text.contains("cargo run -p rcluster-raft --example sim -- --seed 1234"),
        "{text}"
    );
    assert_eq!(
        sim::reproduce_command(5, 100),
        "cargo run -p rcluster-raft --example sim -- --seed 5 --steps 100"
    );
}
