//! ringkv-sim: the deterministic discrete-event simulator that drives ringkv nodes.
//!
//! One thread, one event queue ordered by (time, sequence number), one seed. The simulator runs
//! real [`ringkv_core::Node`]s over simulated disks ([`disk`]), a faulty network ([`network`])
//! and skewed clocks ([`clock`]); injects the faults the seed picks ([`faults`]); drives
//! workload clients ([`workload`]) that record a [`history`]; and at the end runs the
//! [`checkers`]. A run is a safety phase with faults, then a liveness phase with faults healed.
//!
//! Same config + seed + code = the same [`Report::trace_hash`]; [`check_determinism`] runs a
//! seed twice and compares. Start with [`Simulation::builder`].
#![forbid(unsafe_code)]

pub mod checkers;
pub mod clock;
pub mod config;
pub mod disk;
pub mod faults;
pub mod history;
pub mod network;
pub mod queue;
pub mod report;
mod runner;
pub mod schedule;
pub mod seed;
pub mod topology;
pub mod trace;
pub mod workload;

pub use checkers::Violation;
pub use config::{SimBuilder, SimConfig};
pub use disk::{DiskConfig, LsmDisk, SimDisk};
pub use faults::{FaultConfig, FaultPlan, Knob};
pub use network::NetworkConfig;
pub use report::{FaultEvent, FaultEventKind, Report};
pub use runner::node_id;
pub use schedule::{ForcedPartition, ScheduledEvent, TimedEvent};
pub use topology::{DatacenterConfig, Topology};
pub use workload::{KeyDistribution, OpMix, WorkloadConfig};

/// Entry points.
#[derive(Debug, Clone, Copy)]
pub struct Simulation;

impl Simulation {
    /// A builder with the default config: 5 nodes, N=3, QUORUM, swarm faults, seed 0.
    pub fn builder() -> SimBuilder {
        SimBuilder::new()
    }

    /// Runs `config` on in-memory disks.
    pub fn run(config: &SimConfig) -> Report {
        runner::run::<ringkv_core::storage::MemStorage>(config)
    }
}

/// Runs `config` twice and compares the trace hashes; returns the hash, or both when they
/// differ.
pub fn check_determinism(config: &SimConfig) -> Result<u64, (u64, u64)> {
    let first = Simulation::run(config).trace_hash;
    let second = Simulation::run(config).trace_hash;
    if first == second {
        Ok(first)
    } else {
        Err((first, second))
    }
}
