//! End-to-end: the checkers catch a bug planted in the cluster's configuration.
//!
//! A tombstone grace of zero lets the sweep purge a delete's tombstone (and the clock that
//! covered the deleted value) right away. A replica that missed the delete then brings the value
//! back: the resurrection checker must say so. The same scenario with the default grace passes.

use ringkv_core::{Duration, KeyspaceConfig, NodeConfig};
use ringkv_sim::{FaultConfig, Knob, OpMix, SimConfig, Simulation, WorkloadConfig};

fn scenario(seed: u64, tombstone_grace: Duration) -> SimConfig {
    let mut node = NodeConfig::new(Vec::new());
    node.sweep_interval = Duration::from_millis(50);
    node.keyspace = KeyspaceConfig { tombstone_grace, ..KeyspaceConfig::default() };
    let faults = FaultConfig {
        loss_rate: Knob::Fixed(0.05),
        partitions_per_sec: Knob::Fixed(1.0),
        ..FaultConfig::none()
    };
    let mix =
        OpMix { get: 40, put: 0, set: 10, delete: 25, mget: 0, mset: 0, read_modify_write: 25 };
    let workload = WorkloadConfig { keys_count: 10, mix, ..WorkloadConfig::default() };
    Simulation::builder()
        .seed(seed)
        .node_config(node)
        .faults(faults)
        .workload(workload)
        .phases(Duration::from_secs(4), Duration::from_secs(6))
        .build()
}

#[test]
fn purging_tombstones_at_once_lets_deleted_values_come_back_and_the_checker_sees_it() {
    let caught: Vec<u64> = (0..6)
        .filter(|seed| {
            let report = Simulation::run(&scenario(*seed, Duration::ZERO));
            report.violations.iter().any(|violation| violation.checker == "resurrection")
        })
        .collect();
    assert!(!caught.is_empty(), "no seed of 0..6 caught the resurrection");
}

#[test]
fn the_same_scenario_with_the_default_grace_passes() {
    for seed in 0..3 {
        let grace = KeyspaceConfig::default().tombstone_grace;
        let report = Simulation::run(&scenario(seed, grace));
        assert!(report.is_ok(), "{report}");
    }
}
