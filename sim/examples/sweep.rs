//! Runs a range of seeds of the standard swarm scenario and prints each report.
//!
//! `cargo run --release -p ringkv-sim --example sweep -- FIRST_SEED COUNT [--trace]`
//! replays seeds FIRST_SEED..FIRST_SEED+COUNT; `--trace` prints the event log of each.

use ringkv_sim::Simulation;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let first: u64 = args.first().and_then(|arg| arg.parse().ok()).unwrap_or(0);
    let count: u64 = args.get(1).and_then(|arg| arg.parse().ok()).unwrap_or(10);
    let trace = args.iter().any(|arg| arg == "--trace");
    let mut failed = Vec::new();
    for seed in first..first + count {
        let report = Simulation::builder().seed(seed).trace_log(trace).run();
        if trace {
            for line in &report.trace {
                println!("{line}");
            }
        }
        print!("{report}");
        if !report.is_ok() {
            failed.push(seed);
        }
    }
    println!("{} of {count} seeds failed: {failed:?}", failed.len());
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
