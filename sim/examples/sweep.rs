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
        let run = |trace: bool| {
            let builder = Simulation::builder()
                .seed(seed)
                .faults(faults)
                .keyspace(keyspace.clone())
                .workload(workload.clone())
                .trace_log(trace);
            if flag("--lsm") {
                builder.run_with_disk::<LsmDisk>()
            } else {
                builder.run()
            }
        };
        let report = run(flag("--trace"));
        for line in &report.trace {
            println!("{line}");
        }
        print!("{report}");
        if !report.is_ok() {
            failed.push(seed);
            if !flag("--trace") {
                print_excerpt(&run(true), EXCERPT_LINES_MAX);
            }
        }
    }
    println!("{} of {count} seeds failed: {failed:?}", failed.len());
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

/// Most lines of the excerpt printed for a failing seed.
const EXCERPT_LINES_MAX: usize = 40;

/// Replays a failing seed's log and prints the lines that mention the values and operations
/// named in its first violation.
fn print_excerpt(report: &ringkv_sim::Report, lines_max: usize) {
    let Some(violation) = report.violations.first() else {
        return;
    };
    let words: Vec<&str> = violation.message.split([' ', ',']).collect();
    let mut needles: Vec<String> = Vec::new();
    for pair in words.windows(2) {
        if pair[0] == "op" && pair[1].chars().all(|c| c.is_ascii_digit()) {
            needles.push(format!("op {}:", pair[1]));
            needles.push(format!("op {} completed", pair[1]));
        }
    }
    let values = violation.message.split('"').skip(1).step_by(2);
    needles.extend(values.filter(|value| value.starts_with('c')).map(|value| value.to_string()));
    println!("  excerpt of the event log (replayed) for: {}", violation.message);
    let matching = report.trace.iter().filter(|line| needles.iter().any(|n| line.contains(n)));
    for line in matching.take(lines_max) {
        println!("    {}", line.chars().take(220).collect::<String>());
    }
}
