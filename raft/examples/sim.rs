//! Command-line driver for the deterministic Raft simulator: runs one seed or a range of seeds
//! and prints how to reproduce the first failure.
//!
//! cargo run --release -p rcluster-raft --example sim -- [--seed S] [--seeds N] [--steps K]
//!     [--threads T] [--trace]

use std::process::ExitCode;
use std::time::Instant;

use rcluster_raft_sim::{self as sim, SimOptions};

struct Args {
    seed: u64,
    seeds: u64,
    opts: SimOptions,
    threads: usize,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seed: 0,
        seeds: 1,
        opts: SimOptions::default(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        match flag.as_str() {
            "--seed" => args.seed = value("--seed")?,
            "--seeds" => args.seeds = value("--seeds")?,
            "--steps" => args.opts.steps = value("--steps")?,
            "--threads" => args.threads = value("--threads")?.max(1) as usize,
            "--trace" => args.opts.trace = true,
            "-h" | "--help" => {
                return Err(
                    "usage: sim [--seed S] [--seeds N] [--steps K] [--threads T] [--trace]".into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    if args.seeds == 1 {
        return match sim::run(args.seed, args.opts) {
            Ok(r) => {
                println!(
                    "seed {} passed in {:.2?}: {r:?}",
                    args.seed,
                    started.elapsed()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        };
    }
    match sim::run_many(args.seed, args.seeds, args.opts, args.threads) {
        Ok(s) => {
            println!(
                "{} seeds ({}..{}, {} steps each, {} threads) passed in {:.2?}",
                s.seeds,
                args.seed,
                args.seed + args.seeds,
                args.opts.steps,
                args.threads,
                started.elapsed()
            );
            println!("{s:?}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &sim::SimError) -> ExitCode {
    for line in &e.trace {
        eprintln!("{line}");
    }
    eprintln!("{e}");
    ExitCode::FAILURE
}
