//! Checker: after faults heal, all nodes agree on membership, and it is the membership the run
//! asked for.
//!
//! The expected membership is the founding nodes plus those that joined, minus those
//! decommissioned or removed. At the end every running node's gossip view must list every
//! expected member as normal, with the same generation in every view; any other node it lists
//! must be left (a node that left stays in gossip as left); and no node may believe an expected
//! member down (by its driver's report or its phi-accrual detector; a left node may be down).
//! The final pass and the liveness phase give gossip many rounds (one per second per node) to
//! converge; a run that ends sooner after the heal than the liveness warm-up is not checked.

use std::collections::BTreeMap;

use ringkv_core::NodeId;

use super::{Analysis, CheckInput, Violation};

const NAME: &str = "membership";

const NORMAL: &str = "Normal";
const LEFT: &str = "Left";

/// Runs the check.
pub fn check(input: CheckInput<'_>, _analysis: &Analysis) -> Vec<Violation> {
    if !input.params.settled {
        return Vec::new();
    }
    let mut violations = Vec::new();
    let expected = input.expected_members;
    let mut violation = |message: String| violations.push(Violation::new(NAME, message));
    // Each expected member's generation as the first view that lists it sees it.
    let mut generations: BTreeMap<NodeId, (NodeId, u64)> = BTreeMap::new();
    for view in input.views {
        if !expected.contains(&view.node) {
            violation(format!("{} is running but should not be a member", view.node));
        }
        for member in expected {
            match view.members.get(member) {
                None => violation(format!("{} does not know member {member}", view.node)),
                Some((_, status)) if status != NORMAL => {
                    violation(format!("{} sees member {member} as {status}", view.node))
                }
                Some((generation, _)) => {
                    let (first, seen) =
                        *generations.entry(*member).or_insert((view.node, *generation));
                    if seen != *generation {
                        violation(format!(
                            "{first} and {} disagree on {member}'s generation: {seen} vs {generation}",
                            view.node
                        ));
                    }
                }
            }
        }
        for (other, (_, status)) in &view.members {
            if !expected.contains(other) && status != LEFT {
                violation(format!(
                    "{} sees {other} as {status}, but it should have left the cluster",
                    view.node
                ));
            }
        }
        let down: Vec<&NodeId> = view.down.iter().filter(|peer| expected.contains(peer)).collect();
        if !down.is_empty() {
            violation(format!("{} believes live members {down:?} down", view.node));
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

    /// A view by `node` of members 1, 2, ... with these generations and statuses.
    fn view_of(node: u32, members: &[(u64, &str)], down: &[u32]) -> NodeView {
        let members = members
            .iter()
            .enumerate()
            .map(|(index, (generation, status))| {
                (NodeId(index as u32 + 1), (*generation, status.to_string()))
            })
            .collect::<BTreeMap<_, _>>();
        let down = down.iter().map(|id| NodeId(*id)).collect();
        NodeView { node: NodeId(node), members, down, hints_count: 0 }
    }

    fn view(node: u32, generations: &[u64], down_count: usize) -> NodeView {
        let members: Vec<(u64, &str)> = generations.iter().map(|g| (*g, NORMAL)).collect();
        // Suspects the first `down_count` peers other than itself.
        let down: Vec<u32> =
            (1..=generations.len() as u32).filter(|id| *id != node).take(down_count).collect();
        view_of(node, &members, &down)
    }

    fn run(views: &[NodeView]) -> Vec<Violation> {
        run_settled(views, true)
    }

    fn expected_of(views: &[NodeView]) -> Vec<NodeId> {
        views.iter().map(|view| view.node).collect()
    }

    fn run_settled(views: &[NodeView], settled: bool) -> Vec<Violation> {
        run_expecting(views, &expected_of(views), settled)
    }

    fn run_expecting(views: &[NodeView], expected: &[NodeId], settled: bool) -> Vec<Violation> {
        let history = History::new();
        let final_state = FinalState::new();
        let params = CheckParams { settled, ..params() };
        let input = CheckInput {
            history: &history,
            final_state: &final_state,
            views,
            expected_members: expected,
            topology: &crate::checkers::TopologyView::default(),
            params,
        };
        check(input, &Analysis::new(&history))
    }

    fn texts(violations: &[Violation]) -> Vec<&str> {
        violations.iter().map(|v| v.message.as_str()).collect()
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
        let views = [view(1, &[1, 2, 1], 0), view(2, &[1, 1, 1], 1), view(3, &[1, 2], 0)];
        let violations = run(&views);
        let messages = texts(&violations);
        assert!(messages.iter().any(|m| m.contains("n2 believes live members")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("n1 and n2 disagree")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("n3 does not know member n3")), "{messages:?}");
    }

    #[test]
    fn a_changed_membership_passes_when_departed_nodes_are_left_and_down() {
        // n1, n2 and n4 (joined) are members; n3 left and is down.
        let members = [(1, NORMAL), (1, NORMAL), (1, LEFT), (1, NORMAL)];
        let views =
            [view_of(1, &members, &[3]), view_of(2, &members, &[3]), view_of(4, &members, &[3])];
        let expected = [NodeId(1), NodeId(2), NodeId(4)];
        assert_eq!(run_expecting(&views, &expected, true), Vec::new());
    }

    #[test]
    fn a_departed_node_still_seen_normal_a_joiner_not_normal_or_a_leaver_running_are_caught() {
        let expected = [NodeId(1), NodeId(2), NodeId(4)];
        // n2 still counts the decommissioned n3 as an owner; n1 sees the joined n4 joining.
        let stale = [(1, NORMAL), (1, NORMAL), (1, "Leaving"), (1, NORMAL)];
        let joining = [(1, NORMAL), (1, NORMAL), (1, LEFT), (1, "Joining")];
        let good = [(1, NORMAL), (1, NORMAL), (1, LEFT), (1, NORMAL)];
        let views = [view_of(1, &joining, &[]), view_of(2, &stale, &[]), view_of(3, &good, &[])];
        let violations = run_expecting(&views, &expected, true);
        let messages = texts(&violations);
        assert!(
            messages.iter().any(|m| m.contains("n1 sees member n4 as Joining")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("n2 sees n3 as Leaving, but it should have left")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("n3 is running but should not")),
            "{messages:?}"
        );
        // The same views expecting the old membership catch the join and the departure.
        let old = [NodeId(1), NodeId(2), NodeId(3)];
        let violations = run_expecting(&[view_of(1, &good, &[])], &old, true);
        let messages = texts(&violations);
        assert!(messages.iter().any(|m| m.contains("sees member n3 as Left")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("sees n4 as Normal")), "{messages:?}");
    }
}
