//! Checker: every value read was written by someone, to that key, before the read completed,
//! by a write that did not certainly fail.
//!
//! Values are unique per write, so a value identifies its write. A violation is a value nobody
//! wrote (corruption, a mixed-up sibling), one written to another key, one whose write was
//! invoked only after the read had completed (a read from the future), or one whose write the
//! node reported as certainly failed (a wrong `outcome_unknown`).

use super::{Analysis, CheckInput, Violation};
use crate::history::OpRequest;

const NAME: &str = "values-written";

/// Runs the check.
pub fn check(input: CheckInput<'_>, analysis: &Analysis) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (index, op) in input.history.iter() {
        let (OpRequest::Read { keys, .. }, Some(completed_at)) = (&op.request, op.completed_at)
        else {
            continue;
        };
        for key in keys {
            for value in op.values_read(key).unwrap_or_default() {
                let writer = analysis.writer_of(value);
                let problem = match writer {
                    None => Some("no operation wrote it".to_string()),
                    Some((_, written_key)) if written_key != key => {
                        Some(format!("it was written to key {written_key:?}"))
                    }
                    Some((writer, _)) => match input.history.get(writer) {
                        Some(write) if write.invoked_at > completed_at => Some(format!(
                            "its write op {writer} was invoked at {}, after the read completed",
                            write.invoked_at
                        )),
                        Some(write) if !write.may_have_applied() => {
                            Some(format!("its write op {writer} was reported as certainly failed"))
                        }
                        _ => None,
                    },
                };
                if let Some(problem) = problem {
                    violations.push(Violation {
                        checker: NAME,
                        message: format!(
                            "read op {index} of {key:?} returned {value:?}, but {problem}"
                        ),
                        // The read, and the write of the value when there is one.
                        ops: std::iter::once(index).chain(writer.map(|(op, _)| op)).collect(),
                    });
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::fixtures::*;
    use crate::checkers::FinalState;
    use crate::history::{History, OpOutcome};

    fn run(history: &History) -> Vec<Violation> {
        let input = CheckInput {
            history,
            final_state: &FinalState::new(),
            views: &[],
            expected_members: &[],
            topology: &crate::checkers::TopologyView::default(),
            params: params(),
        };
        check(input, &Analysis::new(history))
    }

    #[test]
    fn reads_of_written_values_pass() {
        let mut history = History::new();
        put(&mut history, "k", "v1", None, (0, 5), ok());
        put(&mut history, "k", "v2", None, (6, 20), OpOutcome::Unknown("timeout".into()));
        read(&mut history, "k", &["v1", "v2"], (10, 12));
        assert_eq!(run(&history), Vec::new());
    }

    #[test]
    fn a_value_never_written_from_the_future_or_from_a_failed_write_is_caught() {
        let mut history = History::new();
        put(&mut history, "k", "failed", None, (0, 1), OpOutcome::Failed("unavailable".into()));
        read(&mut history, "k", &["ghost"], (2, 3));
        read(&mut history, "k", &["failed"], (4, 5));
        read(&mut history, "other", &["late"], (6, 7));
        put(&mut history, "k", "late", None, (8, 9), ok());
        let violations = run(&history);
        assert_eq!(violations.len(), 3, "{violations:?}");
        assert!(violations[0].message.contains("no operation wrote it"));
        assert!(violations[1].message.contains("certainly failed"));
        assert!(violations[2].message.contains("written to key"));
    }

    #[test]
    fn a_read_completing_before_the_write_was_invoked_is_caught() {
        let mut history = History::new();
        read(&mut history, "k", &["v"], (0, 1));
        put(&mut history, "k", "v", None, (2, 3), ok());
        let violations = run(&history);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("after the read completed"));
    }
}
