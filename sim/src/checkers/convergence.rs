//! Checker: after faults heal and a final all-replica read pass, replicas converge.
//!
//! Every written key must have N distinct replicas (its preference list may not name a node
//! twice), and every replica must hold the same object (clock and siblings; a missing copy
//! counts as the empty object). The runner reads every key at ALL after the liveness phase,
//! which repairs every stale replica before replying, and then lets the cluster go quiet.

use super::{Analysis, CheckInput, Violation};

const NAME: &str = "convergence";

/// Runs the check.
pub fn check(input: CheckInput<'_>, _analysis: &Analysis) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (key, state) in input.final_state {
        let mut distinct = state.owners.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != state.owners_expected {
            violations.push(Violation {
                checker: NAME,
                message: format!(
                    "{key:?} has {} distinct replicas {:?}, expected {}",
                    distinct.len(),
                    state.owners,
                    state.owners_expected
                ),
                ops: Vec::new(),
            });
        }
        let Some((first_node, first)) = state.replicas.first() else {
            continue;
        };
        for (node, copy) in &state.replicas[1..] {
            if copy != first {
                violations.push(Violation {
                    checker: NAME,
                    message: format!(
                        "replicas of {key:?} differ: {first_node} holds clock {:?} with {} \
                         siblings, {node} holds clock {:?} with {} siblings",
                        first.clock,
                        first.siblings.len(),
                        copy.clock,
                        copy.siblings.len()
                    ),
                    ops: Vec::new(),
                });
                break;
            }
        }
    }
    violations
}

#[cfg(test)]
pub(crate) mod tests {
    use ringkv_core::hlc::HlcTimestamp;
    use ringkv_core::version::{Actor, NewWrite, VersionVector, Versioned};
    use ringkv_core::{ConflictMode, NodeId};

    use super::*;
    use crate::checkers::fixtures::*;
    use crate::checkers::{FinalKey, FinalState};
    use crate::history::History;

    /// An object holding blind writes of `values`, each by node 1.
    pub(crate) fn object(values: &[&str]) -> Versioned {
        let mut object = Versioned::empty();
        for value in values {
            object.update(
                &VersionVector::new(),
                NewWrite { value: Some(bytes(value)), timestamp: HlcTimestamp(1), expire_at: None },
                Actor { node: NodeId(1), epoch: 0 },
                ConflictMode::DottedVersionVectors,
            );
        }
        object
    }

    fn run(copies: [Versioned; 3]) -> Vec<Violation> {
        run_with_owners(copies, vec![NodeId(0), NodeId(1), NodeId(2)])
    }

    fn run_with_owners(copies: [Versioned; 3], owners: Vec<NodeId>) -> Vec<Violation> {
        let replicas = copies.into_iter().enumerate().map(|(i, c)| (NodeId(i as u32), c)).collect();
        let state = FinalKey { replicas, owners, owners_expected: 3, ..FinalKey::default() };
        let final_state = FinalState::from([(bytes("k"), state)]);
        let history = History::new();
        let input = CheckInput {
            history: &history,
            final_state: &final_state,
            views: &[],
            expected_members: &[],
            topology: &crate::checkers::TopologyView::default(),
            params: params(),
        };
        check(input, &Analysis::new(&history))
    }

    #[test]
    fn equal_replicas_pass() {
        assert_eq!(run([object(&["a"]), object(&["a"]), object(&["a"])]), Vec::new());
    }

    #[test]
    fn a_replica_missing_a_sibling_is_caught() {
        let violations = run([object(&["a", "b"]), object(&["a", "b"]), object(&["a"])]);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("n2"), "{violations:?}");
    }

    #[test]
    fn a_preference_list_naming_a_node_twice_is_caught() {
        let copies = [object(&["a"]), object(&["a"]), object(&["a"])];
        let violations = run_with_owners(copies, vec![NodeId(0), NodeId(0), NodeId(1)]);
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("2 distinct replicas"), "{violations:?}");
    }
}
