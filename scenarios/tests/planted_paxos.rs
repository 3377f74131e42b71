//! One test per planted Paxos bug: the bug armed, a serial scenario's seed produces a history
//! the linearizability checker rejects, and the same seed unarmed gives a history it accepts,
//! so the rejection is the bug's doing. Needs the `planted-bugs` feature (CI runs it from
//! `scenarios/ci-hunt.sh`); without it this file compiles to nothing.
#![cfg(feature = "planted-bugs")]
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use ringkv_core::planted::{arm, PlantedBug};
use ringkv_scenarios::library::library_dir;
use ringkv_scenarios::run_seed;
use ringkv_scenarios::scenario::Scenario;
use ringkv_sim::checkers::linearizable::{check_history, Verdict};

/// Runs `scenario_name` at `seed` with `bug` armed and asserts the checker finds a key whose
/// serial history no order explains; then asserts the unarmed run is linearizable.
fn assert_checker_rejects(bug: PlantedBug, scenario_name: &str, seed: u64) {
    let scenario = Scenario::load(&library_dir().join(format!("{scenario_name}.ron"))).unwrap();
    assert!(arm(Some(bug)), "the planted-bugs feature is on, so {bug:?} can be armed");
    let armed = run_seed(&scenario, seed, false);
    arm(None);
    let verdicts = check_history(&armed.history);
    let violations: Vec<_> = verdicts
        .iter()
        .filter_map(|(key, verdict)| match verdict {
            Verdict::Violation(message) => Some((key.clone(), message.clone())),
            Verdict::Linearizable | Verdict::Inconclusive => None,
        })
        .collect();
    assert!(
        !violations.is_empty(),
        "{} armed, {scenario_name} seed {seed}: the checker accepted every key: {verdicts:?}",
        bug.name()
    );
    for (key, message) in &violations {
        eprintln!("{}: key {}: {message}", bug.name(), String::from_utf8_lossy(key));
        assert!(
            message.contains("non-linearizable window"),
            "a violation names the window of operations that fails: {message}"
        );
    }

    let honest = run_seed(&scenario, seed, false);
    for (key, verdict) in check_history(&honest.history) {
        assert!(
            !matches!(verdict, Verdict::Violation(_)),
            "unarmed {scenario_name} seed {seed}, key {key:?}: {verdict:?}"
        );
    }
}

#[test]
fn accepting_without_checking_the_promise_yields_a_non_linearizable_history() {
    assert_checker_rejects(PlantedBug::PaxosAcceptIgnoresPromise, "serial-cas-partition", 0);
}

#[test]
fn granting_a_stale_ballot_yields_a_non_linearizable_history() {
    assert_checker_rejects(PlantedBug::PaxosPromiseStaleBallot, "serial-clock-skew", 0);
}

#[test]
fn ignoring_an_in_progress_proposal_yields_a_non_linearizable_history() {
    assert_checker_rejects(PlantedBug::PaxosInProgressIgnored, "serial-cas-partition", 0);
}

#[test]
fn committing_before_a_quorum_accepted_yields_a_non_linearizable_history() {
    assert_checker_rejects(PlantedBug::PaxosCommitBeforeQuorum, "serial-cas-partition", 0);
}
