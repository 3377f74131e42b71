//! Checker: no acknowledged write is lost (dotted-version-vector keyspaces).
//!
//! Every value whose write succeeded must be live in the final merged state of its key, unless
//! a write that may have applied replaced it: a context write whose read returned the value, or
//! an overwrite (`Set`, mset) of the key not finished before the value was written. Last write
//! wins loses concurrent writes by design, so the check is off in that mode.

use ringkv_core::ConflictMode;

use super::{Analysis, CheckInput, Violation};
use crate::history::OpRequest;

const NAME: &str = "lost-writes";

/// Runs the check.
pub fn check(input: CheckInput<'_>, analysis: &Analysis) -> Vec<Violation> {
    if input.params.conflict_mode != ConflictMode::DottedVersionVectors {
        return Vec::new();
    }
    let mut violations = Vec::new();
    for (index, op) in input.history.iter().filter(|(_, op)| op.is_ok()) {
        let OpRequest::Write { writes, .. } = &op.request else {
            continue;
        };
        for (key, value) in writes {
            let Some(value) = value else {
                continue;
            };
            if analysis.may_be_replaced(input.history, value) {
                continue;
            }
            let live = input.final_state.get(key).is_some_and(|state| state.live.contains(value));
            if !live {
                violations.push(Violation {
                    checker: NAME,
                    message: format!(
                        "write op {index} of {value:?} to {key:?} was acknowledged at {} and no \
                         context write replaced it, but the final state does not hold it",
                        op.completed_at.map(|at| at.to_string()).unwrap_or_default()
                    ),
                    ops: vec![index],
                });
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::fixtures::*;
    use crate::checkers::{FinalKey, FinalState};
    use crate::history::History;

    fn final_state(key: &str, live: &[&str]) -> FinalState {
        let state =
            FinalKey { live: live.iter().map(|v| bytes(v)).collect(), ..FinalKey::default() };
        FinalState::from([(bytes(key), state)])
    }

    fn run(history: &History, final_state: &FinalState) -> Vec<Violation> {
        let input = CheckInput {
            history,
            final_state,
            views: &[],
            expected_members: &[],
            topology: &crate::checkers::TopologyView::default(),
            params: params(),
        };
        check(input, &Analysis::new(history))
    }

    #[test]
    fn acknowledged_writes_kept_or_replaced_by_context_pass() {
        let mut history = History::new();
        put(&mut history, "k", "a", None, (0, 1), ok());
        let seen = read(&mut history, "k", &["a"], (2, 3));
        put(&mut history, "k", "b", Some(seen), (4, 5), ok());
        put(&mut history, "k", "c", None, (6, 7), ok());
        assert_eq!(run(&history, &final_state("k", &["b", "c"])), Vec::new());
        set(&mut history, "k", "d", (8, 9));
        assert_eq!(run(&history, &final_state("k", &["d"])), Vec::new(), "a set replaces all");
    }

    #[test]
    fn an_acknowledged_write_missing_from_the_final_state_is_caught_even_after_an_older_set() {
        let mut history = History::new();
        set(&mut history, "k", "b", (0, 1));
        put(&mut history, "k", "a", None, (2, 3), ok());
        put(&mut history, "k", "c", None, (4, 5), ok());
        let violations = run(&history, &final_state("k", &["b", "c"]));
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("\"a\""), "{violations:?}");
    }
}
