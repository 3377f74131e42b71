//! Checker: with faults healed, operations succeed.
//!
//! Bound: of the workload operations invoked after the liveness measurement starts (faults
//! healed, nodes restarted and told every peer is up, plus a warm-up longer than a request
//! timeout), at least `liveness_success_min` (99% by default) succeed; and every operation of
//! the final read pass succeeds.
//!
//! Serial (Paxos) operations are measured apart, against [`SERIAL_SUCCESS_MIN`]: Paxos promises
//! no progress under contention, and a proposal that a rival preempts after a minority accepted
//! it has an unknown outcome (Cassandra's rule, which the proposer follows so that an increment
//! is never applied twice). Ten clients on three serial keys leave some 5-12% of them unknown
//! with every fault healed; the bound still catches a proposer that stops making progress.

use super::{Analysis, CheckInput, Violation};

const NAME: &str = "liveness";

/// Least share of serial operations, invoked after the liveness measurement starts, that must
/// succeed.
pub const SERIAL_SUCCESS_MIN: f64 = 0.75;

/// Runs the check.
pub fn check(input: CheckInput<'_>, _analysis: &Analysis) -> Vec<Violation> {
    let Some(from) = input.params.liveness_from else {
        return Vec::new();
    };
    let mut violations = Vec::new();
    let measured: Vec<_> =
        input.history.iter().filter(|(_, op)| !op.final_pass && op.invoked_at >= from).collect();
    let groups = [
        ("operations", input.params.liveness_success_min, false),
        ("serial operations", SERIAL_SUCCESS_MIN, true),
    ];
    for (what, bound, serial) in groups {
        let (mut total_count, mut ok_count) = (0usize, 0usize);
        let mut first_failure = None;
        for (index, op) in measured.iter().filter(|(_, op)| op.is_serial() == serial) {
            total_count += 1;
            if op.is_ok() {
                ok_count += 1;
            } else if first_failure.is_none() {
                first_failure = Some((*index, op.outcome.clone()));
            }
        }
        if total_count == 0 {
            continue;
        }
        let share = ok_count as f64 / total_count as f64;
        if share < bound {
            violations.push(Violation {
                checker: NAME,
                message: format!(
                    "{ok_count} of {total_count} {what} invoked after {from} succeeded \
                     ({:.2}%, the bound is {:.2}%); first failure: {first_failure:?}",
                    share * 100.0,
                    bound * 100.0
                ),
                ops: first_failure.iter().map(|(index, _)| *index).collect(),
            });
        }
    }
    for (index, op) in input.history.iter().filter(|(_, op)| op.final_pass && !op.is_ok()) {
        violations.push(Violation {
            checker: NAME,
            message: format!("final-pass read op {index} did not succeed: {:?}", op.outcome),
            ops: vec![index],
        });
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::fixtures::*;
    use crate::checkers::{CheckParams, FinalState};
    use crate::history::{History, OpOutcome};

    fn run(history: &History) -> Vec<Violation> {
        let params = CheckParams { liveness_from: Some(at(10)), ..params() };
        let input = CheckInput {
            history,
            final_state: &FinalState::new(),
            views: &[],
            expected_members: &[],
            topology: &crate::checkers::TopologyView::default(),
            params,
        };
        check(input, &Analysis::new(history))
    }

    #[test]
    fn failures_before_the_liveness_phase_do_not_count() {
        let mut history = History::new();
        put(&mut history, "k", "a", None, (0, 1), OpOutcome::Failed("unavailable".into()));
        for step in 0..200 {
            put(&mut history, "k", &format!("v{step}"), None, (10 + step, 11 + step), ok());
        }
        put(&mut history, "k", "late", None, (300, 301), OpOutcome::Unknown("timeout".into()));
        assert_eq!(run(&history), Vec::new(), "1 failure in 201 is within 99%");
    }

    #[test]
    fn too_many_failures_after_healing_are_caught() {
        let mut history = History::new();
        for step in 0..10 {
            let outcome = if step < 2 { OpOutcome::Unknown("timeout".into()) } else { ok() };
            put(&mut history, "k", &format!("v{step}"), None, (20 + step, 21 + step), outcome);
        }
        let violations = run(&history);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("8 of 10"), "{violations:?}");
    }
}
