//! Property tests over generated scenarios: for small clusters and random fault schedules, every
//! checker of the simulator passes. A failure shrinks (proptest) toward fewer faults, weaker
//! ones and shorter phases, and the message prints the minimal scenario as RON with its seed,
//! ready to save as a file and replay with `ringkv-sim replay FILE --seed N`.
//!
//! Cost: 300 generated cases of 0.5..2.5 s of faults and 6 s of healed cluster at 100..300
//! ops/s, plus one short seed of every library scenario; well under two minutes at opt-level 1.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use ringkv_scenarios::library::{library_dir, load};
use ringkv_scenarios::scenario::{
    ClusterSpec, ConflictSpec, ConsistencySpec, FaultPreset, FaultSpec, KeyspaceSpec, KnobSpec,
    PhaseSpec, Scenario, WorkloadSpec,
};
use ringkv_scenarios::{run_seed, SeedOutcome};

fn knob(max: f64) -> impl Strategy<Value = KnobSpec> {
    // Off first, so shrinking turns faults off before it weakens them.
    prop_oneof![Just(KnobSpec::Off), (max / 10.0..=max).prop_map(KnobSpec::Fixed)]
}

fn faults() -> impl Strategy<Value = FaultSpec> {
    (
        (knob(0.05), knob(0.05), knob(0.1)),
        (knob(1.0), knob(1.0), knob(1.0)),
        (knob(1.0), knob(1.0), knob(0.5), knob(1.0), knob(0.5)),
    )
        .prop_map(|((loss, duplicate, reorder), (partitions, crashes, clogs), more)| {
            let (jumps, suspicions, restarts, buggify, power_losses) = more;
            FaultSpec {
                preset: FaultPreset::None,
                loss_rate: loss,
                duplicate_rate: duplicate,
                reorder_rate: reorder,
                partitions_per_sec: partitions,
                crashes_per_sec: crashes,
                clogs_per_sec: clogs,
                clock_jumps_per_sec: jumps,
                clock_jump_ms_max: KnobSpec::Fixed(30_000.0),
                suspicions_per_sec: suspicions,
                clean_restarts_per_sec: restarts,
                buggify,
                power_losses_per_sec: power_losses,
                ..FaultSpec::default()
            }
        })
}

fn consistency() -> impl Strategy<Value = ConsistencySpec> {
    prop_oneof![
        Just(ConsistencySpec::Quorum),
        Just(ConsistencySpec::One),
        Just(ConsistencySpec::All)
    ]
}

prop_compose! {
    fn scenarios()(
        nodes in 3usize..=5,
        replicas in 1usize..=3,
        lww in any::<bool>(),
        sloppy in any::<bool>(),
        read in consistency(),
        write in consistency(),
        clients in 1usize..=6,
        ops_per_sec in 100.0f64..=300.0,
        keys in 3usize..=30,
        faults in faults(),
        safety_ms in 500u64..=2_500,
    ) -> Scenario {
        Scenario {
            name: "generated".to_string(),
            description: "a proptest case".to_string(),
            cluster: ClusterSpec { nodes, vnodes: 16, ..ClusterSpec::default() },
            keyspace: KeyspaceSpec {
                replicas,
                conflict: if lww { ConflictSpec::Lww } else { ConflictSpec::Dvv },
                sloppy_quorum: sloppy,
                ..KeyspaceSpec::default()
            },
            workload: WorkloadSpec { ops_per_sec, clients, keys, read, write, ..WorkloadSpec::default() },
            faults,
            phases: PhaseSpec { safety_ms, liveness_ms: 6_000 },
            ..Scenario::parse("Scenario(name: \"x\")", "x").unwrap()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        // The suite keeps no failure file: a failure prints its seed and minimal scenario.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_checker_passes_on_small_clusters_under_generated_fault_schedules(
        scenario in scenarios(),
        seed in 0u64..1_000_000,
    ) {
        let report = run_seed(&scenario, seed, false);
        let outcome = SeedOutcome::from_report(&scenario, &report, 0.0);
        prop_assert!(report.outcomes.ok > 0, "no operation succeeded:\n{report}");
        prop_assert!(
            outcome.is_ok(),
            "seed {seed} fails:\n{report}\nminimal scenario:\n{}",
            scenario.to_ron("a failing proptest case")
        );
    }
}

#[test]
fn every_library_scenario_passes_one_short_seed() {
    let scenarios = load(&library_dir()).unwrap();
    assert!(scenarios.len() >= 15);
    for (path, mut scenario) in scenarios {
        // The timed schedule shrinks with the safety phase, keeping its events inside it.
        let safety_ms = 2_000;
        for timed in &mut scenario.schedule {
            timed.at_ms = timed.at_ms * safety_ms / scenario.phases.safety_ms.max(1);
        }
        scenario.phases = PhaseSpec { safety_ms, liveness_ms: 6_000 };
        let report = run_seed(&scenario, 1, false);
        let outcome = SeedOutcome::from_report(&scenario, &report, 0.0);
        assert!(outcome.is_ok(), "{}:\n{report}", path.display());
        assert!(report.outcomes.ok > 100, "{}: too few operations:\n{report}", path.display());
    }
}
