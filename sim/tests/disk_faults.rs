//! Disk faults on the LSM engine over `SimFs`: bit flips at rest (corrupt disks rebuilt blank
//! with a new epoch and refilled), I/O errors (poisoned engines restarted), and power losses of
//! every node at once. Every checker must pass.

use ringkv_core::Duration;
use ringkv_sim::history::OpOutcome;
use ringkv_sim::WorkloadConfig;
use ringkv_sim::{FaultConfig, Knob, LsmDisk, Report, SimBuilder, Simulation};

fn run(seed: u64, faults: FaultConfig) -> Report {
    let workload = WorkloadConfig {
        clients_count: 6,
        ops_per_sec: 400.0,
        keys_count: 200,
        value_bytes: 128,
        ..WorkloadConfig::default()
    };
    let config = Simulation::builder()
        .seed(seed)
        .faults(faults)
        .workload(workload)
        .phases(Duration::from_secs(6), Duration::from_secs(8))
        .build();
    SimBuilder::from_config(config).run_with_disk::<LsmDisk>()
}

#[test]
fn corrupted_disks_rejoin_blank_with_a_new_epoch_and_are_refilled() {
    let faults = FaultConfig {
        bit_flips_per_sec: Knob::Fixed(1.5),
        crashes_per_sec: Knob::Fixed(0.5),
        ..FaultConfig::none()
    };
    let (mut flips, mut rebuilds) = (0, 0);
    for seed in 0..6 {
        let report = run(seed, faults);
        // lost-writes and bounds catch a reused dot; convergence catches a replica not refilled;
        // values-written catches wrong data read from a damaged block.
        assert!(report.is_ok(), "{report}");
        flips += report.stats.bit_flips;
        rebuilds += report.stats.rebuilding_starts;
    }
    assert!(flips >= 20, "only {flips} bit flips");
    assert!(rebuilds >= 3, "only {rebuilds} starts on a rebuilt store");
}

#[test]
fn io_errors_poison_nodes_that_report_why_and_restart_without_losing_writes() {
    let faults = FaultConfig { io_error_rate: Knob::Fixed(0.0005), ..FaultConfig::none() };
    let (mut restarts, mut refused_with_reason) = (0, 0);
    for seed in 0..6 {
        let report = run(seed, faults);
        assert!(report.is_ok(), "{report}");
        restarts += report.stats.disk_restarts;
        refused_with_reason += report
            .history
            .iter()
            .filter(|(_, op)| match &op.outcome {
                OpOutcome::Failed(why) | OpOutcome::Unknown(why) => why.contains("injected EIO"),
                _ => false,
            })
            .count();
    }
    assert!(restarts >= 3, "only {restarts} supervisor restarts");
    assert!(refused_with_reason > 0, "no client was told the storage's reason");
}

#[test]
fn power_losses_of_every_node_at_once_lose_no_acknowledged_write() {
    let faults = FaultConfig { power_losses_per_sec: Knob::Fixed(0.5), ..FaultConfig::none() };
    let mut losses = 0;
    for seed in 0..6 {
        let report = run(seed, faults);
        assert!(report.is_ok(), "{report}");
        // The first loss finds all five nodes up; later ones may find some still down.
        let expected = if report.stats.power_losses > 0 { 5 } else { 0 };
        assert!(report.stats.crashes >= expected, "{report}");
        losses += report.stats.power_losses;
    }
    assert!(losses >= 6, "only {losses} power losses");
}

#[test]
fn disk_faults_replay_to_the_same_trace() {
    let faults = FaultConfig {
        bit_flips_per_sec: Knob::Fixed(1.0),
        io_error_rate: Knob::Fixed(0.0003),
        power_losses_per_sec: Knob::Fixed(0.3),
        ..FaultConfig::none()
    };
    assert_eq!(run(5, faults).trace_hash, run(5, faults).trace_hash);
}
