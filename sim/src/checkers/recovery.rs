//! Checker: a healed cluster serves again within a bound.
//!
//! For scenarios that set a recovery bound: every plain (non-serial) workload operation invoked
//! at least the bound after every fault was healed must succeed. What it catches: anything that
//! keeps a healed node failing requests for seconds (a failure detector slow to trust a peer
//! again, a connection left dead, stale suspicions), which the liveness checker's 99% over
//! the whole liveness phase lets through. The real-network counterpart is the nemesis test
//! (tests/tests/nemesis.rs), with the same 1 s bound. Serial operations are left out: Paxos
//! under contention fails some by design (see the liveness checker).

use super::{Analysis, CheckInput, Violation};

const NAME: &str = "recovery";

/// Runs the check.
pub fn check(input: CheckInput<'_>, _analysis: &Analysis) -> Vec<Violation> {
    let Some((healed_at, bound)) = input.params.recovery else {
        return Vec::new();
    };
    let from = healed_at + bound;
    let failed: Vec<_> = input
        .history
        .iter()
        .filter(|(_, op)| !op.final_pass && !op.is_serial() && op.invoked_at >= from)
        .filter(|(_, op)| op.completed_at.is_some() && !op.is_ok())
        .collect();
    let Some((last, last_op)) = failed.last() else {
        return Vec::new();
    };
    let message = format!(
        "{} operations invoked {bound:?} or more after the heal at {healed_at} failed; the last, \
         op {last}, was invoked {:?} after the heal: {:?}",
        failed.len(),
        last_op.invoked_at.saturating_since(healed_at),
        last_op.outcome
    );
    vec![Violation::new(NAME, message).with_ops(failed.iter().map(|(index, _)| *index).take(20))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::fixtures::*;
    use crate::checkers::{CheckParams, FinalState};
    use crate::history::{History, OpOutcome, OpRequest};
    use ringkv_core::{Consistency, Duration, NodeId};

    fn run(history: &History) -> Vec<Violation> {
        let params =
            CheckParams { recovery: Some((at(1_000), Duration::from_secs(1))), ..params() };
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

    fn get(history: &mut History, invoked_ms: u64, outcome: OpOutcome) {
        let request = OpRequest::Read { keys: vec![bytes("k")], consistency: Consistency::Quorum };
        let index = history.invoke(0, NodeId(1), request, at(invoked_ms), false);
        history.complete(index, at(invoked_ms + 5), outcome);
    }

    #[test]
    fn a_failure_past_the_bound_is_caught_and_one_within_it_is_not() {
        let mut history = History::new();
        get(&mut history, 1_500, OpOutcome::Failed("unavailable".into()));
        get(&mut history, 2_100, OpOutcome::Ok { reads: vec![vec![]] });
        assert!(run(&history).is_empty(), "a failure 0.5 s after the heal is within the bound");
        get(&mut history, 2_400, OpOutcome::Unknown("timeout".into()));
        let violations = run(&history);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].message.contains("op 2"), "{violations:?}");
        assert_eq!(violations[0].ops, vec![2]);
    }
}
