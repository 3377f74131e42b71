//! Checker: after faults heal, all nodes agree on membership.
//!
//! At the end of the run every node's gossip view must list every member, all views must agree
//! on each member's generation and status, and no node may believe a member down (by its
//! driver's report or its phi-accrual detector). The final pass and the liveness phase give
//! gossip many rounds (one per second per node) to converge; a run that ends sooner after the
//! heal than the liveness warm-up is not checked.

use super::{Analysis, CheckInput, Violation};

const NAME: &str = "membership";

/// Runs the check.
pub fn check(input: CheckInput<'_>, _analysis: &Analysis) -> Vec<Violation> {
    if !input.params.settled {
        return Vec::new();
    }
    let mut violations = Vec::new();
    let Some(first) = input.views.first() else {
        return violations;
    };
    let members_count = input.views.len();
    for view in input.views {
        if view.members.len() != members_count {
            violations.push(Violation {
                checker: NAME,
                message: format!(
                    "{} knows {} members, the cluster has {members_count}",
                    view.node,
                    view.members.len()
                ),
            });
        }
        if view.down_count > 0 {
            violations.push(Violation {
                checker: NAME,
                message: format!("{} believes {} live peers down", view.node, view.down_count),
            });
        }
        if view.members != first.members {
            violations.push(Violation {
                checker: NAME,
                message: format!(
                    "{} and {} disagree on membership: {:?} vs {:?}",
                    first.node, view.node, first.members, view.members
                ),
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ringkv_core::NodeId;

    use super::*;
    use crate::checkers::fixtures::params;
    use crate::checkers::{CheckParams, FinalState, NodeView};
    use crate::history::History;

    fn view(node: u32, generations: &[u64], down_count: usize) -> NodeView {
        let members = generations
            .iter()
            .enumerate()
            .map(|(index, generation)| {
                (NodeId(index as u32 + 1), (*generation, "Normal".to_string()))
            })
            .collect::<BTreeMap<_, _>>();
        NodeView { node: NodeId(node), members, down_count, hints_count: 0 }
    }

    fn run(views: &[NodeView]) -> Vec<Violation> {
        run_settled(views, true)
    }

    fn run_settled(views: &[NodeView], settled: bool) -> Vec<Violation> {
        let history = History::new();
        let final_state = FinalState::new();
        let params = CheckParams { settled, ..params() };
        let input = CheckInput { history: &history, final_state: &final_state, views, params };
        check(input, &Analysis::new(&history))
    }

    #[test]
    fn a_run_that_ended_before_gossip_could_settle_is_not_judged() {
        assert_eq!(run_settled(&[view(1, &[1, 2], 0), view(2, &[1, 1], 1)], false), Vec::new());
    }

    #[test]
    fn agreeing_views_with_everyone_up_pass() {
        assert_eq!(run(&[view(1, &[1, 2], 0), view(2, &[1, 2], 0)]), Vec::new());
    }

    #[test]
    fn a_stale_generation_a_missing_member_and_a_suspected_peer_are_caught() {
        let violations = run(&[view(1, &[1, 2], 0), view(2, &[1, 1], 1), view(3, &[1, 2, 1], 0)]);
        let messages: Vec<&str> = violations.iter().map(|v| v.message.as_str()).collect();
        assert!(
            messages.iter().any(|m| m.contains("n2 believes 1 live peers down")),
            "{messages:?}"
        );
        assert!(messages.iter().any(|m| m.contains("n1 and n2 disagree")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("n1 knows 2 members")), "{messages:?}");
    }
}
