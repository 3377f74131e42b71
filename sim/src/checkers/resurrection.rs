//! Checker: nothing deleted or replaced comes back.
//!
//! A context write (a put or a delete carrying a read's context) replaces exactly the values its
//! read returned. Once it is acknowledged, (1) no strict-quorum read invoked later returns a
//! replaced value (the first
//! [`READS_PER_WRITE_MAX`](super::read_after_write::READS_PER_WRITE_MAX) later reads are checked), and (2) the final
//! merged state holds none of them, whatever the consistency levels: a stale replica must never
//! win back what a newer clock covers, and a delete is never undone.

use super::read_after_write::strict_reads_after;
use super::{Analysis, CheckInput, Violation};
use crate::history::OpRequest;

const NAME: &str = "resurrection";

/// Runs the check.
pub fn check(input: CheckInput<'_>, analysis: &Analysis) -> Vec<Violation> {
    let history = input.history;
    let reads = &analysis.reads;
    let mut violations = Vec::new();
    for (index, op) in history.iter().filter(|(_, op)| op.is_ok()) {
        let (OpRequest::Write { writes, context_from: Some(read), .. }, Some(acked_at)) =
            (&op.request, op.completed_at)
        else {
            continue;
        };
        for (key, _) in writes {
            let Some(replaced) = history.get(*read).and_then(|read| read.values_read(key)) else {
                continue;
            };
            if replaced.is_empty() {
                continue;
            }
            let later_reads = strict_reads_after(input, reads.get(key), key, op, acked_at);
            for (read_index, later, _) in later_reads {
                let seen = later.values_read(key).unwrap_or_default();
                if let Some(back) = seen.iter().find(|value| replaced.contains(value)) {
                    violations.push(Violation {
                        checker: NAME,
                        message: format!(
                            "context write op {index} to {key:?} replaced {replaced:?} (acked at \
                             {acked_at}); read op {read_index} invoked at {} returned {back:?}",
                            later.invoked_at
                        ),
                        ops: vec![index, read_index],
                    });
                }
            }
            let final_live = input.final_state.get(key).map(|state| &state.live);
            if let Some(back) =
                final_live.and_then(|live| live.iter().find(|v| replaced.contains(v)))
            {
                violations.push(Violation {
                    checker: NAME,
                    message: format!(
                        "context write op {index} to {key:?} replaced {back:?} (acked at \
                         {acked_at}), but the final state holds it again"
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

    fn run(history: &History, live: &[&str]) -> Vec<Violation> {
        let state =
            FinalKey { live: live.iter().map(|v| bytes(v)).collect(), ..FinalKey::default() };
        let final_state = FinalState::from([(bytes("k"), state)]);
        let input = CheckInput {
            history,
            final_state: &final_state,
            views: &[],
            expected_members: &[],
            topology: &crate::checkers::TopologyView::default(),
            params: params(),
        };
        check(input, &Analysis::new(history))
    }

    fn deleted_history() -> History {
        let mut history = History::new();
        put(&mut history, "k", "a", None, (0, 1), ok());
        let seen = read(&mut history, "k", &["a"], (2, 3));
        delete(&mut history, "k", seen, (4, 5));
        history
    }

    #[test]
    fn a_deleted_value_that_stays_deleted_passes() {
        let mut history = deleted_history();
        read(&mut history, "k", &[], (6, 7));
        put(&mut history, "k", "b", None, (8, 9), ok());
        read(&mut history, "k", &["b"], (10, 11));
        assert_eq!(run(&history, &["b"]), Vec::new());
    }

    #[test]
    fn a_deleted_value_read_again_or_back_in_the_final_state_is_caught() {
        let mut history = deleted_history();
        read(&mut history, "k", &["a"], (6, 7));
        let violations = run(&history, &["a"]);
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(violations[0].message.contains("read op"));
        assert!(violations[1].message.contains("final state"));
    }
}
