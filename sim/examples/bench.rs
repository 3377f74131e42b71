//! Simulator throughput on the standard scenario: 5 nodes, N=3, QUORUM, 1,000 client
//! operations per simulated second, swarm faults, 10 s of safety and 5 s of liveness per seed.
//!
//! `cargo run --release -p ringkv-sim --example bench -- [SEEDS]` prints simulated events per
//! wall second and simulated seconds per wall second (the time compression), over all seeds.
// A benchmark measures wall time by definition; the simulator itself never reads a clock, so
// the determinism ban is lifted for this file only.
#![allow(clippy::disallowed_methods)]

use ringkv_sim::Simulation;

// The simulator allocates and frees small objects on every event (versioned objects, their
// encodings, messages); mimalloc does that in far fewer instructions than glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let seeds_count: u64 = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(20);
    for run_checkers in [true, false] {
        measure(seeds_count, run_checkers);
    }
}

fn measure(seeds_count: u64, run_checkers: bool) {
    let mut events = 0u64;
    let mut simulated_ns = 0u64;
    let mut ops = 0u64;
    let mut stale = 0u64;
    let mut failed_seeds = Vec::new();
    let started = std::time::Instant::now();
    for seed in 0..seeds_count {
        let mut config = Simulation::builder().seed(seed).build();
        config.run_checkers = run_checkers;
        let report = Simulation::run(&config);
        events += report.events_processed;
        stale += report.stats.stale_events;
        simulated_ns += report.simulated_time.as_nanos();
        ops += report.outcomes.ok + report.outcomes.failed + report.outcomes.unknown;
        if !report.is_ok() {
            failed_seeds.push(seed);
        }
    }
    let wall_secs = started.elapsed().as_secs_f64();
    let simulated_secs = simulated_ns as f64 / 1e9;
    let label = if run_checkers { "whole runs, checkers included" } else { "event loop only" };
    println!("== {label}: {seeds_count} seeds, {wall_secs:.2} s wall");
    println!(
        "  events: {events}, {:.0} simulated events per wall second",
        events as f64 / wall_secs
    );
    let live = events - stale;
    println!(
        "  of which {stale} stale (superseded timers, timeouts after replies): {:.0} live events \
         per wall second",
        live as f64 / wall_secs
    );
    println!(
        "  simulated time: {simulated_secs:.1} s, {:.1}x time compression",
        simulated_secs / wall_secs
    );
    println!("  client operations: {ops}, {:.0} per wall second", ops as f64 / wall_secs);
    if run_checkers {
        println!("  seeds with violations: {failed_seeds:?}");
    }
}
