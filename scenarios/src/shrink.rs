//! Shrinking a failing seed: cut a scenario down while the same seed still fails.
//!
//! Owns: [`shrink`], which first pins the seed's fault plan (every knob becomes the `Fixed`
//! strength, or `Off`, that the seed drew, which replays the identical run because each fault
//! process has its own generator), then tries, in bounded passes, to switch each fault off,
//! halve the phases, the rate, the clients and the keys. A candidate is kept when the seed
//! still fails on one of the checkers of the original failure. Output: the smallest scenario
//! found and the steps that were kept.
//!
//! Bounds: at most [`SHRINK_PASSES_MAX`] passes and [`SHRINK_RUNS_MAX`] runs.

use ringkv_sim::FaultPlan;

use crate::scenario::{FaultPreset, KnobSpec, Scenario};
use crate::sweep::run_outcome;

/// Most passes over the shrinking steps.
pub const SHRINK_PASSES_MAX: usize = 4;
/// Most candidate runs.
pub const SHRINK_RUNS_MAX: usize = 120;

/// The result of shrinking.
#[derive(Debug, Clone, PartialEq)]
pub struct Shrunk {
    /// The smallest failing scenario found.
    pub scenario: Scenario,
    /// The checkers it still fails.
    pub checkers: Vec<String>,
    /// What was cut, in order.
    pub steps: Vec<String>,
    /// Candidate runs made.
    pub runs: usize,
}

/// Shrinks `scenario` at `seed`; `None` when the seed does not fail to begin with.
/// `on_step` hears about each kept step (for progress output).
pub fn shrink(scenario: &Scenario, seed: u64, on_step: impl FnMut(&str)) -> Option<Shrunk> {
    let report = crate::sweep::run_seed(scenario, seed, false);
    let mut start = pinned(scenario, &report.plan);
    start.name = format!("{}-seed{seed}-min", scenario.name);
    let mut shrunk = shrink_with(&start, on_step, |candidate| {
        run_outcome(candidate, seed).violations.into_iter().map(|(checker, _)| checker).collect()
    })?;
    shrunk.steps.insert(0, "pinned the seed's fault plan".to_string());
    Some(shrunk)
}

/// The shrinking loop over any failure test: `failing` returns the checkers a candidate fails
/// (empty: it passes). `None` when `scenario` itself passes.
pub fn shrink_with(
    scenario: &Scenario,
    mut on_step: impl FnMut(&str),
    mut failing: impl FnMut(&Scenario) -> Vec<String>,
) -> Option<Shrunk> {
    let target = failing(scenario);
    if target.is_empty() {
        return None;
    }
    let mut best = scenario.clone();
    let mut steps = Vec::new();
    let mut runs = 1;
    let mut checkers = target.clone();
    for _ in 0..SHRINK_PASSES_MAX {
        let mut changed = false;
        // Each candidate is built from the best scenario so far, so kept steps accumulate.
        for step in 0..CANDIDATES_COUNT {
            let Some((label, candidate)) = candidate(&best, step) else { continue };
            if runs >= SHRINK_RUNS_MAX {
                break;
            }
            runs += 1;
            let still: Vec<String> = failing(&candidate)
                .into_iter()
                .filter(|checker| target.contains(checker))
                .collect();
            if !still.is_empty() {
                on_step(&label);
                steps.push(label);
                best = candidate;
                checkers = still;
                changed = true;
            }
        }
        if !changed || runs >= SHRINK_RUNS_MAX {
            break;
        }
    }
    checkers.sort();
    checkers.dedup();
    Some(Shrunk { scenario: best, checkers, steps, runs })
}

/// `scenario` with every fault knob fixed to what `plan` drew.
pub fn pinned(scenario: &Scenario, plan: &FaultPlan) -> Scenario {
    let mut pinned = scenario.clone();
    let fixed = |value: f64| if value > 0.0 { KnobSpec::Fixed(value) } else { KnobSpec::Off };
    let values = [
        plan.loss_rate,
        plan.duplicate_rate,
        plan.reorder_rate,
        plan.partitions_per_sec,
        plan.crashes_per_sec,
        plan.clogs_per_sec,
        plan.clock_jumps_per_sec,
        plan.clock_jump_ms_max,
        plan.clock_offset_ms_max,
        plan.clock_drift_ppm_max,
        plan.disk_failures_per_sec,
        plan.suspicions_per_sec,
        plan.clean_restarts_per_sec,
        if plan.buggify { 1.0 } else { 0.0 },
        plan.power_losses_per_sec,
        plan.bit_flips_per_sec,
        plan.io_error_rate,
        plan.restores_per_sec,
        plan.dc_partitions_per_sec,
        plan.dc_power_losses_per_sec,
        plan.rack_losses_per_sec,
    ];
    pinned.faults.preset = FaultPreset::None;
    for ((_, knob), value) in pinned.faults.knobs_mut().into_iter().zip(values) {
        *knob = fixed(value);
    }
    pinned
}

/// Knobs (14) plus the halvings of `candidate`.
const CANDIDATES_COUNT: usize = 19;

/// Candidate number `step` (0..CANDIDATES_COUNT), smaller than `best`, with a label; `None`
/// when that step cannot shrink `best` any further.
fn candidate(best: &Scenario, step: usize) -> Option<(String, Scenario)> {
    let mut candidate = best.clone();
    let label = match step {
        0..14 => {
            let (name, knob) = candidate.faults.knobs_mut().into_iter().nth(step)?;
            if *knob == KnobSpec::Off {
                return None;
            }
            *knob = KnobSpec::Off;
            format!("faults.{name} off")
        }
        14 => {
            halve_u64(&mut candidate.phases.safety_ms, 250).then_some(())?;
            // Scheduled events happen in the safety phase: those past its new end go.
            let end_ms = candidate.phases.safety_ms;
            candidate.schedule.retain(|timed| timed.at_ms < end_ms);
            "phases.safety_ms".to_string()
        }
        15 => halve_u64(&mut candidate.phases.liveness_ms, 1_000)
            .then(|| "phases.liveness_ms".to_string())?,
        16 => {
            if candidate.workload.ops_per_sec < 20.0 {
                return None;
            }
            candidate.workload.ops_per_sec /= 2.0;
            "workload.ops_per_sec".to_string()
        }
        17 => halve_usize(&mut candidate.workload.clients, 1)
            .then(|| "workload.clients".to_string())?,
        18 => halve_usize(&mut candidate.workload.keys, 1).then(|| "workload.keys".to_string())?,
        _ => return None,
    };
    let label = if step >= 14 { format!("{label} halved") } else { label };
    Some((label, candidate))
}

fn halve_u64(value: &mut u64, min: u64) -> bool {
    let half = *value / 2;
    if half < min {
        return false;
    }
    *value = half;
    true
}

fn halve_usize(value: &mut usize, min: usize) -> bool {
    let half = *value / 2;
    if half < min {
        return false;
    }
    *value = half;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::run_seed;

    #[test]
    fn a_pinned_plan_replays_the_same_run_as_the_swarm_it_came_from() {
        let scenario = Scenario::parse(
            r#"Scenario(name: "s", faults: (preset: Swarm),
                workload: (ops_per_sec: 300.0), phases: (safety_ms: 2000, liveness_ms: 6000))"#,
            "s",
        )
        .unwrap();
        for seed in 0..3 {
            let original = run_seed(&scenario, seed, false);
            let again = run_seed(&pinned(&scenario, &original.plan), seed, false);
            assert_eq!(original.plan, again.plan);
            assert_eq!(original.trace_hash, again.trace_hash, "seed {seed}");
        }
    }

    #[test]
    fn a_passing_seed_does_not_shrink() {
        let scenario = Scenario::parse(
            r#"Scenario(name: "q", cluster: (nodes: 3), workload: (ops_per_sec: 100.0),
                phases: (safety_ms: 500, liveness_ms: 6000))"#,
            "q",
        )
        .unwrap();
        assert!(shrink(&scenario, 0, |_| {}).is_none());
    }

    #[test]
    fn shrinking_keeps_only_what_the_failure_needs() {
        let scenario = Scenario::parse(
            r#"Scenario(name: "f", faults: (crashes_per_sec: Fixed(0.5), loss_rate: Fixed(0.1),
                clogs_per_sec: Fixed(0.2)), phases: (safety_ms: 8000, liveness_ms: 8000))"#,
            "f",
        )
        .unwrap();
        // A failure that needs crashes and at least 2 s of faults, and nothing else.
        let shrunk = shrink_with(
            &scenario,
            |_| {},
            |candidate| {
                let needs = candidate.faults.crashes_per_sec != KnobSpec::Off
                    && candidate.phases.safety_ms >= 2_000;
                if needs {
                    vec!["lost-writes".to_string()]
                } else {
                    Vec::new()
                }
            },
        )
        .unwrap();
        let faults = shrunk.scenario.faults;
        assert_eq!(faults.crashes_per_sec, KnobSpec::Fixed(0.5));
        assert_eq!((faults.loss_rate, faults.clogs_per_sec), (KnobSpec::Off, KnobSpec::Off));
        assert_eq!(shrunk.scenario.phases.safety_ms, 2_000);
        assert_eq!(shrunk.scenario.phases.liveness_ms, 1_000);
        assert_eq!(shrunk.scenario.workload.clients, 1);
        assert_eq!(shrunk.checkers, vec!["lost-writes".to_string()]);
        assert!(shrunk.runs <= SHRINK_RUNS_MAX);
    }

    #[test]
    fn halving_stops_at_the_minimum() {
        let mut value = 600;
        assert!(halve_u64(&mut value, 250));
        assert_eq!(value, 300);
        assert!(!halve_u64(&mut value, 250));
        assert_eq!(value, 300);
    }
}
