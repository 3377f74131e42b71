//! The fault model: which faults a run injects and how strongly, fixed or drawn from the seed.
//!
//! Owns: [`FaultConfig`] (what a scenario asks for, each knob off, fixed, or left to the seed)
//! and [`FaultPlan`] (what this run actually does, after the seed resolved every knob). Input:
//! the config and the run's "faults" generator. Output: a plan the runner follows.
//!
//! Swarm testing: a [`Knob::Swarm`] is switched off with probability 1/2, and otherwise drawn
//! uniformly in `[max / 10, max]`. So one seed picks a mix of faults (say, loss and crashes but
//! no partitions) and their strengths, and many seeds explore many mixes; a bug that needs one
//! fault and is masked by another is found by the seeds that switch the second off.
//!
//! Fault kinds that are events (partitions, crashes, clogs, clock jumps, disk failures) are given
//! as rates in events per simulated second; each runs as its own Poisson process with its own
//! child generator, so turning one on never shifts the others.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One fault knob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Knob {
    /// Never.
    Off,
    /// Always this strength.
    Fixed(f64),
    /// Drawn by the seed: off half the time, else uniform in `[max / 10, max]`.
    Swarm(f64),
}

impl Knob {
    /// The strength this run uses.
    pub fn resolve(self, rng: &mut ChaCha8Rng) -> f64 {
        match self {
            Knob::Off => 0.0,
            Knob::Fixed(value) => value,
            Knob::Swarm(max) => {
                // Both draws happen whatever the outcome, so each knob consumes a fixed number
                // of draws and later knobs do not shift when this one flips.
                let on = rng.random_bool(0.5);
                let strength: f64 = rng.random_range(0.1..=1.0);
                if on {
                    max * strength
                } else {
                    0.0
                }
            }
        }
    }
}

/// What faults a run asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultConfig {
    /// Probability that a message is lost.
    pub loss_rate: Knob,
    /// Probability that a message is delivered twice.
    pub duplicate_rate: Knob,
    /// Probability that a message skips FIFO and takes an extra random delay.
    pub reorder_rate: Knob,
    /// Partitions started per simulated second.
    pub partitions_per_sec: Knob,
    /// Node crashes per simulated second.
    pub crashes_per_sec: Knob,
    /// Clogs per simulated second.
    pub clogs_per_sec: Knob,
    /// Wall-clock jumps per simulated second.
    pub clock_jumps_per_sec: Knob,
    /// Largest wall-clock jump, forward or backward, in milliseconds.
    pub clock_jump_ms_max: Knob,
    /// Largest initial wall-clock offset, in milliseconds.
    pub clock_offset_ms_max: Knob,
    /// Largest clock drift, in parts per million.
    pub clock_drift_ppm_max: Knob,
    /// Disk failures (syncs start failing) per simulated second.
    pub disk_failures_per_sec: Knob,
    /// False suspicions (a node's failure detector wrongly reports a live peer down) per
    /// simulated second.
    pub suspicions_per_sec: Knob,
    /// Clean restarts (shutdown, sync, stop, start: the node keeps its epoch) per simulated
    /// second.
    pub clean_restarts_per_sec: Knob,
    /// Probability that BUGGIFY is on for the run (nonzero means "draw it").
    pub buggify: Knob,
    /// Power losses per simulated second: every running node crashes at the same instant
    /// (unsynced data lost or torn) and restarts after a while.
    pub power_losses_per_sec: Knob,
    /// Bit flips at rest per simulated second: one bit of one table or manifest of a random
    /// node's disk (disks without files, such as `MemStorage`, ignore them).
    pub bit_flips_per_sec: Knob,
    /// Probability that a filesystem operation (read, append, sync, create, rename, remove,
    /// directory sync) fails with EIO, on every disk during the safety phase.
    pub io_error_rate: Knob,
    /// Restores per simulated second: a running node's store is checkpointed, and after
    /// 0.5..3 s the node is stopped and restarted on that snapshot (prepared as
    /// `ringkv_core::restore::prepare_restored` prepares one); LSM disks only.
    pub restores_per_sec: Knob,
    /// Datacenter partitions per simulated second: one datacenter (drawn) is cut from every
    /// other, both directions, healed after 1..4 s. Needs a topology of two datacenters or
    /// more; otherwise nothing happens.
    pub dc_partitions_per_sec: Knob,
    /// Datacenter power losses per simulated second: every running node of one datacenter
    /// crashes at the same instant (unsynced data lost or torn), each restarts after 0.2..3 s.
    pub dc_power_losses_per_sec: Knob,
    /// Rack losses per simulated second: every running node of one rack crashes at once and
    /// the rack comes back whole 0.5..3 s later; one rack down at a time.
    pub rack_losses_per_sec: Knob,
}

impl FaultConfig {
    /// No faults at all.
    pub fn none() -> Self {
        FaultConfig {
            loss_rate: Knob::Off,
            duplicate_rate: Knob::Off,
            reorder_rate: Knob::Off,
            partitions_per_sec: Knob::Off,
            crashes_per_sec: Knob::Off,
            clogs_per_sec: Knob::Off,
            clock_jumps_per_sec: Knob::Off,
            clock_jump_ms_max: Knob::Off,
            clock_offset_ms_max: Knob::Off,
            clock_drift_ppm_max: Knob::Off,
            disk_failures_per_sec: Knob::Off,
            suspicions_per_sec: Knob::Off,
            clean_restarts_per_sec: Knob::Off,
            buggify: Knob::Off,
            power_losses_per_sec: Knob::Off,
            bit_flips_per_sec: Knob::Off,
            io_error_rate: Knob::Off,
            restores_per_sec: Knob::Off,
            dc_partitions_per_sec: Knob::Off,
            dc_power_losses_per_sec: Knob::Off,
            rack_losses_per_sec: Knob::Off,
        }
    }

    /// Every fault left to the seed, with maxima that keep a 5-node cluster mostly available.
    pub fn swarm() -> Self {
        FaultConfig {
            loss_rate: Knob::Swarm(0.05),
            duplicate_rate: Knob::Swarm(0.05),
            reorder_rate: Knob::Swarm(0.1),
            partitions_per_sec: Knob::Swarm(0.5),
            crashes_per_sec: Knob::Swarm(0.5),
            clogs_per_sec: Knob::Swarm(0.5),
            clock_jumps_per_sec: Knob::Swarm(0.5),
            clock_jump_ms_max: Knob::Fixed(30_000.0),
            clock_offset_ms_max: Knob::Swarm(5_000.0),
            clock_drift_ppm_max: Knob::Swarm(1_000.0),
            disk_failures_per_sec: Knob::Swarm(0.1),
            suspicions_per_sec: Knob::Swarm(0.5),
            clean_restarts_per_sec: Knob::Swarm(0.3),
            buggify: Knob::Swarm(1.0),
            // Off in the swarm (existing seeds keep their runs); scenarios switch them on.
            power_losses_per_sec: Knob::Off,
            bit_flips_per_sec: Knob::Off,
            io_error_rate: Knob::Off,
            restores_per_sec: Knob::Off,
            dc_partitions_per_sec: Knob::Off,
            dc_power_losses_per_sec: Knob::Off,
            rack_losses_per_sec: Knob::Off,
        }
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig::swarm()
    }
}

/// The faults one run injects, every knob resolved.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultPlan {
    /// Probability that a message is lost.
    pub loss_rate: f64,
    /// Probability that a message is delivered twice.
    pub duplicate_rate: f64,
    /// Probability that a message is reordered.
    pub reorder_rate: f64,
    /// Partitions per simulated second.
    pub partitions_per_sec: f64,
    /// Crashes per simulated second.
    pub crashes_per_sec: f64,
    /// Clogs per simulated second.
    pub clogs_per_sec: f64,
    /// Clock jumps per simulated second.
    pub clock_jumps_per_sec: f64,
    /// Largest clock jump, milliseconds.
    pub clock_jump_ms_max: f64,
    /// Largest initial clock offset, milliseconds.
    pub clock_offset_ms_max: f64,
    /// Largest drift, parts per million.
    pub clock_drift_ppm_max: f64,
    /// Disk failures per simulated second.
    pub disk_failures_per_sec: f64,
    /// False suspicions per simulated second.
    pub suspicions_per_sec: f64,
    /// Clean restarts per simulated second.
    pub clean_restarts_per_sec: f64,
    /// Whether BUGGIFY sites are armed.
    pub buggify: bool,
    /// Power losses (every node at once) per simulated second.
    pub power_losses_per_sec: f64,
    /// Bit flips at rest per simulated second.
    pub bit_flips_per_sec: f64,
    /// Probability that a filesystem operation fails with EIO.
    pub io_error_rate: f64,
    /// Snapshot restores per simulated second.
    pub restores_per_sec: f64,
    /// Datacenter partitions per simulated second.
    pub dc_partitions_per_sec: f64,
    /// Datacenter power losses per simulated second.
    pub dc_power_losses_per_sec: f64,
    /// Rack losses per simulated second.
    pub rack_losses_per_sec: f64,
}

impl FaultPlan {
    /// Resolves every knob of `config` with `rng`, in a fixed order.
    pub fn draw(config: &FaultConfig, rng: &mut ChaCha8Rng) -> Self {
        FaultPlan {
            loss_rate: config.loss_rate.resolve(rng).clamp(0.0, 1.0),
            duplicate_rate: config.duplicate_rate.resolve(rng).clamp(0.0, 1.0),
            reorder_rate: config.reorder_rate.resolve(rng).clamp(0.0, 1.0),
            partitions_per_sec: config.partitions_per_sec.resolve(rng).max(0.0),
            crashes_per_sec: config.crashes_per_sec.resolve(rng).max(0.0),
            clogs_per_sec: config.clogs_per_sec.resolve(rng).max(0.0),
            clock_jumps_per_sec: config.clock_jumps_per_sec.resolve(rng).max(0.0),
            clock_jump_ms_max: config.clock_jump_ms_max.resolve(rng).max(0.0),
            clock_offset_ms_max: config.clock_offset_ms_max.resolve(rng).max(0.0),
            clock_drift_ppm_max: config
                .clock_drift_ppm_max
                .resolve(rng)
                .clamp(0.0, crate::clock::DRIFT_PPM_MAX as f64),
            disk_failures_per_sec: config.disk_failures_per_sec.resolve(rng).max(0.0),
            buggify: config.buggify.resolve(rng) > 0.0,
            // Drawn last so that adding it did not shift the knobs above.
            suspicions_per_sec: config.suspicions_per_sec.resolve(rng).max(0.0),
            clean_restarts_per_sec: config.clean_restarts_per_sec.resolve(rng).max(0.0),
            power_losses_per_sec: config.power_losses_per_sec.resolve(rng).max(0.0),
            bit_flips_per_sec: config.bit_flips_per_sec.resolve(rng).max(0.0),
            io_error_rate: config.io_error_rate.resolve(rng).clamp(0.0, 1.0),
            restores_per_sec: config.restores_per_sec.resolve(rng).max(0.0),
            // The topology faults last, so that every older knob draws as before.
            dc_partitions_per_sec: config.dc_partitions_per_sec.resolve(rng).max(0.0),
            dc_power_losses_per_sec: config.dc_power_losses_per_sec.resolve(rng).max(0.0),
            rack_losses_per_sec: config.rack_losses_per_sec.resolve(rng).max(0.0),
        }
    }

    /// The event-driven fault kinds that are on, with their rates per simulated second.
    pub fn event_rates(&self) -> [(FaultKind, f64); 13] {
        [
            (FaultKind::Partition, self.partitions_per_sec),
            (FaultKind::Crash, self.crashes_per_sec),
            (FaultKind::Clog, self.clogs_per_sec),
            (FaultKind::ClockJump, self.clock_jumps_per_sec),
            (FaultKind::DiskFailure, self.disk_failures_per_sec),
            (FaultKind::Suspicion, self.suspicions_per_sec),
            (FaultKind::CleanRestart, self.clean_restarts_per_sec),
            (FaultKind::PowerLoss, self.power_losses_per_sec),
            (FaultKind::BitFlip, self.bit_flips_per_sec),
            (FaultKind::Restore, self.restores_per_sec),
            (FaultKind::DcPartition, self.dc_partitions_per_sec),
            (FaultKind::DcPowerLoss, self.dc_power_losses_per_sec),
            (FaultKind::RackLoss, self.rack_losses_per_sec),
        ]
    }
}

/// A fault that happens as an event during the safety phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Split the cluster (symmetric, bridged or one-way), healed after a while.
    Partition,
    /// Crash a node, restarted after a while.
    Crash,
    /// Slow every link of a node for a while.
    Clog,
    /// Jump a node's wall clock forward or backward.
    ClockJump,
    /// Make a node's syncs fail; the disk is replaced (crash and restart) after a while.
    DiskFailure,
    /// Tell one node that a live peer is down; the detector corrects itself after a while.
    Suspicion,
    /// Shut a node down cleanly and start it again: it keeps its epoch.
    CleanRestart,
    /// Every running node loses power at once; each restarts after a while.
    PowerLoss,
    /// Flip one bit at rest in one of a node's files.
    BitFlip,
    /// Snapshot a node's store, then restart the node on that snapshot a while later.
    Restore,
    /// Cut one datacenter from the others, healed after a while.
    DcPartition,
    /// Every running node of one datacenter loses power at once; each restarts after a while.
    DcPowerLoss,
    /// Every running node of one rack crashes at once; the rack comes back after a while.
    RackLoss,
}

impl FaultKind {
    /// The label of the kind's child generator.
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Partition => "fault/partition",
            FaultKind::Crash => "fault/crash",
            FaultKind::Clog => "fault/clog",
            FaultKind::ClockJump => "fault/clock-jump",
            FaultKind::DiskFailure => "fault/disk",
            FaultKind::Suspicion => "fault/suspicion",
            FaultKind::CleanRestart => "fault/clean-restart",
            FaultKind::PowerLoss => "fault/power-loss",
            FaultKind::BitFlip => "fault/bit-flip",
            FaultKind::Restore => "fault/restore",
            FaultKind::DcPartition => "fault/dc-partition",
            FaultKind::DcPowerLoss => "fault/dc-power-loss",
            FaultKind::RackLoss => "fault/rack-loss",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::child_rng;

    #[test]
    fn swarm_knobs_are_off_for_some_seeds_and_within_bounds_for_others() {
        let mut off_count = 0;
        let mut on_count = 0;
        for seed in 0..200 {
            let plan = FaultPlan::draw(&FaultConfig::swarm(), &mut child_rng(seed, "faults", 0));
            if plan.loss_rate == 0.0 {
                off_count += 1;
            } else {
                on_count += 1;
                assert!((0.005..=0.05).contains(&plan.loss_rate), "{}", plan.loss_rate);
            }
            assert_eq!(plan.clock_jump_ms_max, 30_000.0, "a fixed knob is not drawn");
        }
        assert!(off_count > 50 && on_count > 50, "off {off_count}, on {on_count}");
    }

    #[test]
    fn the_same_seed_draws_the_same_plan_and_none_draws_nothing() {
        let config = FaultConfig::swarm();
        let first = FaultPlan::draw(&config, &mut child_rng(9, "faults", 0));
        let again = FaultPlan::draw(&config, &mut child_rng(9, "faults", 0));
        assert_eq!(first, again);
        let quiet = FaultPlan::draw(&FaultConfig::none(), &mut child_rng(9, "faults", 0));
        assert_eq!(quiet, FaultPlan::default());
    }
}
