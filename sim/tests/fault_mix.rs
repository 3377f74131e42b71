//! Property: whatever fixed mix of faults a run gets, the safety and liveness checkers pass.
//! proptest picks the mix (and shrinks it to the smallest failing one if a case fails), the
//! seed picks everything else.

use proptest::prelude::*;
use ringkv_core::Duration;
use ringkv_sim::{FaultConfig, Knob, Simulation, WorkloadConfig};

fn knob(on: bool, value: f64) -> Knob {
    if on {
        Knob::Fixed(value)
    } else {
        Knob::Off
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn any_fixed_fault_mix_passes_every_checker(
        seed in 0u64..1_000_000,
        switches in proptest::collection::vec(any::<bool>(), 8),
        loss_rate in 0.0f64..0.05,
        duplicate_rate in 0.0f64..0.05,
        events_per_sec in 0.1f64..1.0,
    ) {
        let faults = FaultConfig {
            loss_rate: knob(switches[0], loss_rate),
            duplicate_rate: knob(switches[1], duplicate_rate),
            reorder_rate: knob(switches[2], 0.05),
            partitions_per_sec: knob(switches[3], events_per_sec),
            crashes_per_sec: knob(switches[4], events_per_sec),
            clock_jumps_per_sec: knob(switches[5], events_per_sec),
            clock_jump_ms_max: Knob::Fixed(30_000.0),
            disk_failures_per_sec: knob(switches[6], events_per_sec / 4.0),
            clean_restarts_per_sec: knob(switches[7], events_per_sec / 2.0),
            ..FaultConfig::none()
        };
        let workload = WorkloadConfig { clients_count: 4, ops_per_sec: 300.0, ..WorkloadConfig::default() };
        let report = Simulation::builder()
            .seed(seed)
            .faults(faults)
            .workload(workload)
            .phases(Duration::from_secs(3), Duration::from_secs(6))
            .run();
        prop_assert!(report.is_ok(), "{}", report);
    }
}
