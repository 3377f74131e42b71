//! Runs a range of seeds of the standard swarm scenario and prints each report.
//!
//! `cargo run --release -p ringkv-sim --example sweep -- FIRST_SEED COUNT [--trace] [--no-dup]
//! [--lww] [--one]` replays seeds FIRST_SEED..FIRST_SEED+COUNT; `--trace` prints each event
//! log, `--no-dup` turns message duplication off, `--lww` uses a last-write-wins keyspace,
//! `--one` reads and writes at consistency ONE, `--lsm` runs on the LSM engine over `SimFs`,
//! `--sloppy` turns on sloppy quorums, `--buggify` arms BUGGIFY in every run.

use ringkv_core::{ConflictMode, Consistency, KeyspaceConfig};
use ringkv_sim::{FaultConfig, Knob, LsmDisk, Simulation, WorkloadConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let first: u64 = args.first().and_then(|arg| arg.parse().ok()).unwrap_or(0);
    let count: u64 = args.get(1).and_then(|arg| arg.parse().ok()).unwrap_or(10);
    let flag = |name: &str| args.iter().any(|arg| arg == name);
    let mut faults = FaultConfig::swarm();
    if flag("--buggify") {
        faults.buggify = Knob::Fixed(1.0);
    }
    if flag("--no-dup") {
        faults.duplicate_rate = Knob::Off;
    }
    let mut keyspace = KeyspaceConfig::default();
    if flag("--lww") {
        keyspace.conflict_mode = ConflictMode::LastWriteWins;
    }
    if flag("--sloppy") {
        keyspace.sloppy_quorum = true;
    }
    let mut workload = WorkloadConfig::default();
    if flag("--one") {
        workload.read_consistency = Consistency::One;
        workload.write_consistency = Consistency::One;
    }
    let mut failed = Vec::new();
    for seed in first..first + count {
        let builder = Simulation::builder()
            .seed(seed)
            .faults(faults)
            .keyspace(keyspace)
            .workload(workload.clone())
            .trace_log(flag("--trace"));
        let report = if flag("--lsm") { builder.run_with_disk::<LsmDisk>() } else { builder.run() };
        for line in &report.trace {
            println!("{line}");
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
