//! Membership changes under load (issue 5, item 7): a node joins, a node is decommissioned, a
//! dead node is removed, each while clients write, read and delete under network faults; every
//! checker must pass over the changed membership, and the new owners must hold the data.

use ringkv_core::{Consistency, Duration, NodeId};
use ringkv_sim::history::OpRequest;
use ringkv_sim::{
    check_determinism, FaultConfig, Knob, OpMix, Report, ScheduledEvent, SimConfig, Simulation,
    TimedEvent, WorkloadConfig,
};

fn at(millis: u64, event: ScheduledEvent) -> TimedEvent {
    TimedEvent { at: Duration::from_millis(millis), event }
}

/// 5 nodes, N=3, QUORUM reads and writes (strict), a steady load with deletes, network faults
/// drawn by the seed (loss, duplication, reordering, partitions, clogs), 10 s with faults and
/// 10 s healed.
fn under_load(seed: u64, schedule: Vec<TimedEvent>) -> SimConfig {
    let faults = FaultConfig {
        loss_rate: Knob::Swarm(0.03),
        duplicate_rate: Knob::Swarm(0.03),
        reorder_rate: Knob::Swarm(0.1),
        partitions_per_sec: Knob::Swarm(0.3),
        clogs_per_sec: Knob::Swarm(0.3),
        ..FaultConfig::none()
    };
    let workload = WorkloadConfig {
        clients_count: 6,
        ops_per_sec: 400.0,
        keys_count: 60,
        mix: OpMix { delete: 10, ..OpMix::default() },
        read_consistency: Consistency::Quorum,
        write_consistency: Consistency::Quorum,
        ..WorkloadConfig::default()
    };
    Simulation::builder()
        .seed(seed)
        .faults(faults)
        .workload(workload)
        .schedule(schedule)
        .phases(Duration::from_secs(10), Duration::from_secs(10))
        .build()
}

/// Runs `seeds` and returns the reports, failing with every bad report at once.
fn run_all(seeds: std::ops::Range<u64>, schedule: &[TimedEvent]) -> Vec<Report> {
    let reports: Vec<Report> =
        seeds.map(|seed| Simulation::run(&under_load(seed, schedule.to_vec()))).collect();
    let failures: Vec<String> =
        reports.iter().filter(|report| !report.is_ok()).map(|report| report.to_string()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    reports
}

fn assert_did_work(report: &Report) {
    assert!(report.outcomes.ok > 3_000, "seed {} did little work:\n{report}", report.seed);
    let deletes = report
        .history
        .iter()
        .filter(|(_, op)| {
            op.is_ok()
                && matches!(&op.request, OpRequest::Write { writes, .. }
                    if writes.iter().any(|(_, value)| value.is_none()))
        })
        .count();
    assert!(deletes > 20, "seed {} acknowledged only {deletes} deletes", report.seed);
}

#[test]
fn a_node_joining_under_load_loses_no_write_and_owns_its_share_of_the_keys() {
    let schedule = [at(2_000, ScheduledEvent::Join)];
    for report in run_all(0..6, &schedule) {
        assert_did_work(&report);
        assert_eq!(report.stats.joins, 1);
        let expected: Vec<NodeId> = (1..=6).map(NodeId).collect();
        assert_eq!(report.stats.final_members, expected);
        // The convergence checker compared the newcomer's copies with the other owners'.
        let held = report.stats.final_copies_by_node.get(&NodeId(6)).copied().unwrap_or(0);
        assert!(held > 10, "seed {}: n6 holds only {held} owned keys", report.seed);
    }
}

#[test]
fn a_node_decommissioned_under_load_hands_over_everything_and_is_stopped() {
    let schedule = [at(2_000, ScheduledEvent::Decommission { node: 2 })];
    for report in run_all(10..16, &schedule) {
        assert_did_work(&report);
        assert_eq!(report.stats.decommissions, 1, "seed {}: n2 never left", report.seed);
        let expected = vec![NodeId(1), NodeId(3), NodeId(4), NodeId(5)];
        assert_eq!(report.stats.final_members, expected);
        assert!(!report.stats.final_copies_by_node.contains_key(&NodeId(2)));
        let owners = report.stats.final_copies_by_node.len();
        assert_eq!(owners, 4, "seed {}: {:?}", report.seed, report.stats.final_copies_by_node);
    }
}

#[test]
fn a_removed_dead_node_has_its_ranges_rebuilt_and_deleted_keys_stay_deleted() {
    let schedule = [
        at(2_000, ScheduledEvent::Crash { node: 3 }),
        at(4_000, ScheduledEvent::Remove { node: 3 }),
    ];
    for report in run_all(20..26, &schedule) {
        assert_did_work(&report);
        assert_eq!(report.stats.removals, 1, "seed {}: n3 was never removed", report.seed);
        assert_eq!(report.stats.final_members, vec![NodeId(1), NodeId(2), NodeId(4), NodeId(5)]);
        // Every surviving node inherited part of n3's ranges and holds its copies; the
        // convergence and resurrection checkers passed over them.
        for node in [1, 2, 4, 5] {
            let held = report.stats.final_copies_by_node.get(&NodeId(node)).copied().unwrap_or(0);
            assert!(held > 10, "seed {}: n{node} holds only {held} keys", report.seed);
        }
    }
}

#[test]
fn a_join_and_a_decommission_in_one_run_replay_to_the_same_trace_hash() {
    let schedule =
        vec![at(1_000, ScheduledEvent::Join), at(3_000, ScheduledEvent::Decommission { node: 1 })];
    let config = under_load(7, schedule);
    assert!(check_determinism(&config).is_ok());
    let report = Simulation::run(&config);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.stats.final_members, (2..=6).map(NodeId).collect::<Vec<_>>());
}
