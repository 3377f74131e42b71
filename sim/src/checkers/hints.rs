//! Checker: after faults heal, hints drain.
//!
//! A node that accepted a write for an unreachable replica keeps a hint and replays it once the
//! replica is back. At the end of the run (after the liveness phase and the final pass, many
//! replay intervals after the heal) no node may still hold a hint.

use super::{Analysis, CheckInput, Violation};

const NAME: &str = "hints";

/// Runs the check.
pub fn check(input: CheckInput<'_>, _analysis: &Analysis) -> Vec<Violation> {
    if !input.params.settled {
        return Vec::new();
    }
    input
        .views
        .iter()
        .filter(|view| view.hints_count > 0)
        .map(|view| Violation {
            checker: NAME,
            message: format!(
                "{} still holds {} hints at the end of the run",
                view.node, view.hints_count
            ),
            ops: Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ringkv_core::NodeId;

    use super::*;
    use crate::checkers::fixtures::params;
    use crate::checkers::{FinalState, NodeView};
    use crate::history::History;

    fn run(hints: &[usize]) -> Vec<Violation> {
        let views: Vec<NodeView> = hints
            .iter()
            .enumerate()
            .map(|(index, hints_count)| NodeView {
                node: NodeId(index as u32 + 1),
                members: Default::default(),
                down: Vec::new(),
                hints_count: *hints_count,
            })
            .collect();
        let history = History::new();
        let final_state = FinalState::new();
        let input = CheckInput {
            history: &history,
            final_state: &final_state,
            views: &views,
            expected_members: &[],
            topology: &crate::checkers::TopologyView::default(),
            params: params(),
        };
        check(input, &Analysis::new(&history))
    }

    #[test]
    fn drained_hints_pass_and_a_leftover_hint_is_caught() {
        assert_eq!(run(&[0, 0, 0]), Vec::new());
        let violations = run(&[0, 2, 0]);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("n2 still holds 2 hints"));
    }
}
