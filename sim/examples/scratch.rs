use ringkv_core::{Consistency, Duration};
use ringkv_sim::{
    FaultConfig, Knob, OpMix, ScheduledEvent, Simulation, TimedEvent, WorkloadConfig,
};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args[1].parse().unwrap();
    let kind = &args[2];
    let filter = args.get(3).cloned().unwrap_or_default();
    let schedule = match kind.as_str() {
        "join" => vec![TimedEvent { at: Duration::from_millis(2000), event: ScheduledEvent::Join }],
        _ => vec![TimedEvent {
            at: Duration::from_millis(2000),
            event: ScheduledEvent::Decommission { node: 2 },
        }],
    };
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
    let report = Simulation::builder()
        .seed(seed)
        .faults(faults)
        .workload(workload)
        .schedule(schedule)
        .phases(Duration::from_secs(10), Duration::from_secs(10))
        .trace_log(true)
        .build();
    let mut config = report;
    config.trace_lines_max = 2_000_000;
    let report = Simulation::run(&config);
    for line in &report.trace {
        if line.contains(&filter) {
            println!("{line}");
        }
    }
    println!("{}", report);
}
