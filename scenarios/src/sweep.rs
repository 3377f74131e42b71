//! Running scenarios over many seeds: one seed at a time per worker thread, results folded into
//! a summary per scenario.
//!
//! Owns: [`run_seed`] (one deterministic run of one scenario, on the scenario's disk),
//! [`SeedOutcome`] (what one run reports, with expected violations set apart), [`sweep`] (a
//! pool of `jobs` std threads pulling (scenario, seed) pairs from a shared counter, reporting
//! each finished seed to a callback on the calling thread) and [`Summary`] (per scenario: seeds,
//! operations, events, times, violations by checker, failing seeds).
//!
//! Each simulation stays single-threaded and deterministic; threads only run different seeds.
//! BUGGIFY state is per thread in the core, so parallel runs do not see each other.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use ringkv_core::storage::MemStorage;
use ringkv_core::Value;
use ringkv_sim::history::{History, OpRecord, OpRequest};
use ringkv_sim::{LsmDisk, Report, SimBuilder};

use crate::scenario::{DiskKind, Scenario};

/// Runs `scenario` once with `seed`, keeping the readable event log when `trace` is set.
pub fn run_seed(scenario: &Scenario, seed: u64, trace: bool) -> Report {
    let mut config = scenario.sim_config(seed);
    config.trace_log = trace;
    let builder = SimBuilder::from_config(config);
    match scenario.disk {
        DiskKind::Mem => builder.run_with_disk::<MemStorage>(),
        DiskKind::Lsm => builder.run_with_disk::<LsmDisk>(),
    }
}

/// What one seed of one scenario found.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedOutcome {
    /// The seed.
    pub seed: u64,
    /// Workload operations that completed (ok, failed or unknown) or stayed pending.
    pub ops: u64,
    /// Events processed.
    pub events: u64,
    /// Simulated seconds.
    pub sim_seconds: f64,
    /// Wall-clock seconds the run took on its thread.
    pub wall_seconds: f64,
    /// Violations that fail the scenario: (checker, message).
    pub violations: Vec<(String, String)>,
    /// Violations the scenario expects (its `expect.tolerate`): (checker, message).
    pub tolerated: Vec<(String, String)>,
    /// Acknowledged writes a last-write-wins keyspace lost, when the scenario counts them.
    pub lww_lost_writes: u64,
}

impl SeedOutcome {
    /// Sorts `report`'s violations into failures and expected ones.
    pub fn from_report(scenario: &Scenario, report: &Report, wall_seconds: f64) -> SeedOutcome {
        let (tolerated, violations) = report
            .violations
            .iter()
            .map(|violation| (violation.checker.to_string(), violation.message.clone()))
            .partition(|(checker, _)| scenario.expect.tolerate.contains(checker));
        let o = report.outcomes;
        SeedOutcome {
            seed: report.seed,
            ops: o.ok + o.failed + o.unknown + o.pending,
            events: report.events_processed,
            sim_seconds: report.simulated_time.as_nanos() as f64 / 1e9,
            wall_seconds,
            violations,
            tolerated,
            lww_lost_writes: if scenario.expect.count_lww_lost_writes {
                lww_lost_writes(&report.history)
            } else {
                0
            },
        }
    }

    /// Whether the seed passed (expected violations do not count).
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs one seed and times it.
pub fn run_outcome(scenario: &Scenario, seed: u64) -> SeedOutcome {
    let started = Instant::now();
    let report = run_seed(scenario, seed, false);
    SeedOutcome::from_report(scenario, &report, started.elapsed().as_secs_f64())
}

/// Acknowledged writes that a last-write-wins keyspace lost to an older write: the key's final
/// value (from the final all-replica read) was written by a write that was acknowledged before
/// this one was invoked, so in real time this write came later and still lost (its timestamp
/// was behind, as clock skew or a clock jump makes it). Deleted keys are not counted.
pub fn lww_lost_writes(history: &History) -> u64 {
    let mut writer_of: BTreeMap<&Value, &OpRecord> = BTreeMap::new();
    let mut final_values: BTreeMap<&[u8], &[Value]> = BTreeMap::new();
    for (_, op) in history.iter() {
        match &op.request {
            OpRequest::Read { keys, .. } if op.final_pass => {
                for key in keys {
                    if let Some(values) = op.values_read(key) {
                        final_values.insert(key.as_ref(), values);
                    }
                }
            }
            OpRequest::Write { writes, .. } => {
                for value in writes.iter().filter_map(|(_, value)| value.as_ref()) {
                    writer_of.insert(value, op);
                }
            }
            // Serial operations go through Paxos, not last-write-wins; a flush writes nothing.
            OpRequest::Read { .. } | OpRequest::Cas { .. } | OpRequest::Flush { .. } => {}
        }
    }
    let mut lost = 0;
    for (_, op) in history.iter().filter(|(_, op)| op.is_ok() && !op.final_pass) {
        let OpRequest::Write { writes, .. } = &op.request else { continue };
        for (key, value) in writes {
            let (Some(value), Some(live)) = (value, final_values.get(key.as_ref())) else {
                continue;
            };
            let older_won = !live.is_empty()
                && !live.contains(value)
                && live.iter().all(|survivor| {
                    writer_of.get(survivor).is_some_and(|winner| {
                        winner.is_ok()
                            && winner.completed_at.is_some_and(|done| done < op.invoked_at)
                    })
                });
            lost += u64::from(older_won);
        }
    }
    lost
}

/// One scenario's results over a range of seeds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The scenario's name.
    pub name: String,
    /// Seeds run.
    pub seeds: u64,
    /// Workload operations.
    pub ops: u64,
    /// Events processed.
    pub events: u64,
    /// Simulated seconds, summed over seeds.
    pub sim_seconds: f64,
    /// Wall-clock seconds, summed over seeds (thread time, not elapsed time).
    pub wall_seconds: f64,
    /// Failing violations by checker (at most 10 per checker per seed are reported).
    pub violations: BTreeMap<String, u64>,
    /// Expected violations by checker.
    pub tolerated: BTreeMap<String, u64>,
    /// Acknowledged writes lost under last-write-wins, when counted.
    pub lww_lost_writes: u64,
    /// Seeds with failing violations, with their checkers.
    pub failed_seeds: Vec<(u64, Vec<String>)>,
}

impl Summary {
    /// Folds in one seed.
    pub fn add(&mut self, outcome: &SeedOutcome) {
        self.seeds += 1;
        self.ops += outcome.ops;
        self.events += outcome.events;
        self.sim_seconds += outcome.sim_seconds;
        self.wall_seconds += outcome.wall_seconds;
        self.lww_lost_writes += outcome.lww_lost_writes;
        for (checker, _) in &outcome.violations {
            *self.violations.entry(checker.clone()).or_default() += 1;
        }
        for (checker, _) in &outcome.tolerated {
            *self.tolerated.entry(checker.clone()).or_default() += 1;
        }
        if !outcome.is_ok() {
            let mut checkers: Vec<String> =
                outcome.violations.iter().map(|(checker, _)| checker.clone()).collect();
            checkers.dedup();
            self.failed_seeds.push((outcome.seed, checkers));
        }
    }

    /// Events per wall-clock second of one thread.
    pub fn events_per_s(&self) -> f64 {
        if self.wall_seconds > 0.0 {
            self.events as f64 / self.wall_seconds
        } else {
            0.0
        }
    }

    /// Total failing violations.
    pub fn violations_count(&self) -> u64 {
        self.violations.values().sum()
    }
}

/// Runs every scenario for every seed of `seeds` on `jobs` threads. `on_done` is called on the
/// calling thread after each seed with the scenario's index and the seed's outcome. Returns one
/// summary per scenario, in order, with failing seeds sorted.
pub fn sweep(
    scenarios: &[Scenario],
    seeds: Range<u64>,
    jobs: usize,
    mut on_done: impl FnMut(usize, &SeedOutcome),
) -> Vec<Summary> {
    let seeds_count = (seeds.end.saturating_sub(seeds.start)) as usize;
    let total = scenarios.len() * seeds_count;
    let next = AtomicUsize::new(0);
    let mut summaries: Vec<Summary> = scenarios
        .iter()
        .map(|scenario| Summary { name: scenario.name.clone(), ..Summary::default() })
        .collect();
    let (sender, receiver) = mpsc::channel::<(usize, SeedOutcome)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, total.max(1)) {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || loop {
                let work = next.fetch_add(1, Ordering::Relaxed);
                if work >= total {
                    break;
                }
                // Seed-major order: every scenario makes progress from the start, so a failure
                // anywhere shows early.
                let (scenario_index, seed_offset) =
                    (work % scenarios.len(), work / scenarios.len());
                let seed = seeds.start + seed_offset as u64;
                let outcome = run_outcome(&scenarios[scenario_index], seed);
                if sender.send((scenario_index, outcome)).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        for (scenario_index, outcome) in receiver.iter().take(total) {
            on_done(scenario_index, &outcome);
            summaries[scenario_index].add(&outcome);
        }
    });
    for summary in &mut summaries {
        summary.failed_seeds.sort();
    }
    summaries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> Scenario {
        Scenario::parse(
            r#"Scenario(name: "quiet", cluster: (nodes: 3),
                workload: (ops_per_sec: 200.0, clients: 4, keys: 10),
                phases: (safety_ms: 1000, liveness_ms: 6000))"#,
            "quiet",
        )
        .unwrap()
    }

    #[test]
    fn a_sweep_runs_every_seed_of_every_scenario_once_and_sums_them() {
        let scenarios = vec![quiet(), Scenario { name: "again".into(), ..quiet() }];
        let mut seen = Vec::new();
        let summaries = sweep(&scenarios, 3..6, 2, |index, outcome| {
            seen.push((index, outcome.seed));
        });
        seen.sort();
        assert_eq!(seen, vec![(0, 3), (0, 4), (0, 5), (1, 3), (1, 4), (1, 5)]);
        assert_eq!(summaries.len(), 2);
        for summary in &summaries {
            assert_eq!(summary.seeds, 3);
            assert!(summary.ops > 100 && summary.events > summary.ops, "{summary:?}");
            assert_eq!(summary.violations_count(), 0, "{summary:?}");
        }
        assert_eq!(summaries[0].events, summaries[1].events, "same seeds, same runs");
    }

    #[test]
    fn an_lww_write_that_lost_to_an_earlier_acknowledged_write_is_counted() {
        use ringkv_core::{Consistency, Instant, NodeId};
        use ringkv_sim::history::OpOutcome;
        let at = |millis: u64| Instant::from_nanos(millis * 1_000_000);
        let bytes = |text: &str| bytes::Bytes::copy_from_slice(text.as_bytes());
        let mut history = History::new();
        let mut write = |key: &str, value: &str, span: (u64, u64)| {
            let request = OpRequest::Write {
                writes: vec![(bytes(key), Some(bytes(value)))],
                context_from: None,
                overwrite: true,
                consistency: Consistency::Quorum,
            };
            let index = history.invoke(0, NodeId(1), request, at(span.0), false);
            history.complete(index, at(span.1), OpOutcome::Ok { reads: Vec::new() });
        };
        // On "a", the earlier write survived the later one: one lost write. On "b" the later
        // write survived; on "c" the two overlapped, so either may win.
        write("a", "a1", (0, 10));
        write("a", "a2", (20, 30));
        write("b", "b1", (0, 10));
        write("b", "b2", (20, 30));
        write("c", "c1", (0, 25));
        write("c", "c2", (20, 30));
        let finals = [("a", "a1"), ("b", "b2"), ("c", "c1")];
        for (key, value) in finals {
            let request = OpRequest::Read { keys: vec![bytes(key)], consistency: Consistency::All };
            let index = history.invoke(9, NodeId(1), request, at(100), true);
            history.complete(index, at(101), OpOutcome::Ok { reads: vec![vec![bytes(value)]] });
        }
        assert_eq!(lww_lost_writes(&history), 1);
    }

    #[test]
    fn tolerated_checkers_are_counted_apart_from_failures() {
        let scenario = Scenario {
            expect: crate::scenario::ExpectSpec {
                tolerate: vec!["liveness".into()],
                ..Default::default()
            },
            ..quiet()
        };
        let report = run_seed(&scenario, 1, false);
        let mut faked = report.clone();
        faked.violations.push(ringkv_sim::Violation::new("liveness", "x".into()));
        faked.violations.push(ringkv_sim::Violation::new("bounds", "y".into()));
        let outcome = SeedOutcome::from_report(&scenario, &faked, 0.1);
        assert_eq!(outcome.tolerated.len(), 1);
        assert_eq!(outcome.violations, vec![("bounds".to_string(), "y".to_string())]);
        assert!(!outcome.is_ok());
    }
}
