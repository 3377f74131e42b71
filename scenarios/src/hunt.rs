//! The planted-bug hunt: arm one deliberate bug of `ringkv_core::planted` at a time and run
//! scenarios until a checker catches it.
//!
//! Owns: [`hunt`] (the chosen bugs of [`PlantedBug::ALL`] on a pool of worker threads; per bug, seeds
//! in order, each seed through every scenario, until the first failing seed, the seed range
//! ends or the time budget is spent) and [`HuntResult`]. A bug is armed only on the worker's
//! thread and only for its own runs. Needs the `planted-bugs` feature; without it
//! [`ringkv_core::planted::COMPILED_IN`] is false and nothing can be armed.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use ringkv_core::planted::{arm, PlantedBug};

use crate::scenario::Scenario;
use crate::sweep::run_outcome;

/// What hunting one bug found.
#[derive(Debug, Clone, PartialEq)]
pub struct HuntResult {
    /// The bug.
    pub bug: PlantedBug,
    /// The first failing run: scenario, seed, checkers.
    pub caught: Option<(String, u64, Vec<String>)>,
    /// Runs made (one seed of one scenario each).
    pub runs: u64,
    /// Wall-clock seconds spent on this bug.
    pub seconds: f64,
    /// LWW lost writes counted along the way (scenarios that count them).
    pub lww_lost_writes: u64,
}

/// Hunts each of `bugs` over `scenarios` and `seeds` on `jobs` threads, spending at most
/// `seconds_max` per bug. Results are in [`PlantedBug::ALL`] order.
pub fn hunt(
    bugs: &[PlantedBug],
    scenarios: &[Scenario],
    seeds: Range<u64>,
    jobs: usize,
    seconds_max: f64,
    on_done: impl Fn(&HuntResult) + Sync,
) -> Vec<HuntResult> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, bugs.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(bug) = bugs.get(index).copied() else { break };
                let result = hunt_one(scenarios, seeds.clone(), bug, seconds_max);
                on_done(&result);
                if let Ok(mut results) = results.lock() {
                    results.push(result);
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|result| result.bug);
    results
}

fn hunt_one(
    scenarios: &[Scenario],
    seeds: Range<u64>,
    bug: PlantedBug,
    seconds_max: f64,
) -> HuntResult {
    let started = Instant::now();
    let mut result = HuntResult { bug, caught: None, runs: 0, seconds: 0.0, lww_lost_writes: 0 };
    'seeds: for seed in seeds {
        for scenario in scenarios {
            if started.elapsed().as_secs_f64() > seconds_max {
                break 'seeds;
            }
            arm(Some(bug));
            let outcome = run_outcome(scenario, seed);
            arm(None);
            result.runs += 1;
            result.lww_lost_writes += outcome.lww_lost_writes;
            if !outcome.is_ok() {
                let mut checkers: Vec<String> =
                    outcome.violations.into_iter().map(|(checker, _)| checker).collect();
                checkers.sort();
                checkers.dedup();
                result.caught = Some((scenario.name.clone(), seed, checkers));
                break 'seeds;
            }
        }
    }
    result.seconds = started.elapsed().as_secs_f64();
    result
}

#[cfg(all(test, feature = "planted-bugs"))]
mod tests {
    use super::*;

    #[test]
    fn a_merge_that_drops_siblings_is_caught_and_disarmed_afterwards() {
        let scenario = Scenario::parse(
            r#"Scenario(name: "q", faults: (partitions_per_sec: Fixed(1.0)),
                phases: (safety_ms: 3000, liveness_ms: 6000))"#,
            "q",
        )
        .unwrap();
        let result = hunt_one(&[scenario], 0..5, PlantedBug::MergeDropsTheirSiblings, 120.0);
        assert!(result.caught.is_some(), "{result:?}");
        assert!(!ringkv_core::planted!(MergeDropsTheirSiblings));
    }
}
