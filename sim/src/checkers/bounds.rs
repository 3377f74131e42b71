//! Checker: sibling counts and clock sizes stay bounded.
//!
//! Bounds, per written key and for every replica's copy and the merge:
//! - the clock has at most one entry per node start in the run (an actor is a node in one
//!   epoch, and a start mints at most one epoch);
//! - the live siblings are at most the writes of that key that may have applied and that no
//!   acknowledged context write replaced (each sibling is a distinct surviving write; a merge
//!   that forgets to drop covered siblings exceeds it).

use ringkv_core::version::Versioned;

use super::index::ByteMap;
use super::{Analysis, CheckInput, Violation};

const NAME: &str = "bounds";

/// Runs the check.
pub fn check(input: CheckInput<'_>, analysis: &Analysis) -> Vec<Violation> {
    let history = input.history;
    let mut surviving_writes: ByteMap<'_, usize> = ByteMap::new();
    for (value, &(writer, key)) in analysis.writer_of.iter() {
        let applied = history.get(writer).is_some_and(|op| op.may_have_applied());
        if applied && !analysis.replaced_by_ok(history, value) {
            *surviving_writes.get_or_insert_with(key, || 0) += 1;
        }
    }
    let actors_max = input.params.node_starts_count;
    let mut violations = Vec::new();
    for (key, state) in input.final_state {
        let siblings_max = surviving_writes.get(key).copied().unwrap_or(0);
        let copies = state.replicas.iter().map(|(node, copy)| (node.to_string(), copy));
        for (holder, copy) in copies.chain([("the merge".to_string(), &state.merged)]) {
            let live_count = live_siblings(copy);
            if copy.clock.len() > actors_max {
                violations.push(Violation {
                    checker: NAME,
                    message: format!(
                        "{holder}'s copy of {key:?} has a clock of {} actors, above the {} node \
                         starts of the run",
                        copy.clock.len(),
                        actors_max
                    ),
                    ops: Vec::new(),
                });
            }
            if live_count > siblings_max {
                violations.push(Violation {
                    checker: NAME,
                    message: format!(
                        "{holder}'s copy of {key:?} has {live_count} live siblings, above the \
                         {siblings_max} writes that may survive"
                    ),
                    ops: Vec::new(),
                });
            }
        }
    }
    violations
}

fn live_siblings(object: &Versioned) -> usize {
    object.siblings.iter().filter(|sibling| sibling.value.is_some()).count()
}

#[cfg(test)]
mod tests {
    use ringkv_core::NodeId;

    use super::*;
    use crate::checkers::convergence::tests::object;
    use crate::checkers::fixtures::*;
    use crate::checkers::{FinalKey, FinalState};
    use crate::history::History;

    fn run(history: &History, copy: Versioned) -> Vec<Violation> {
        let state = FinalKey {
            replicas: vec![(NodeId(1), copy.clone())],
            merged: copy,
            ..FinalKey::default()
        };
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

    #[test]
    fn siblings_within_the_surviving_writes_pass() {
        let mut history = History::new();
        put(&mut history, "k", "a", None, (0, 1), ok());
        put(&mut history, "k", "b", None, (0, 1), ok());
        assert_eq!(run(&history, object(&["a", "b"])), Vec::new());
    }

    #[test]
    fn a_sibling_that_a_context_write_replaced_is_over_the_bound() {
        let mut history = History::new();
        put(&mut history, "k", "a", None, (0, 1), ok());
        let seen = read(&mut history, "k", &["a"], (2, 3));
        put(&mut history, "k", "b", Some(seen), (4, 5), ok());
        let violations = run(&history, object(&["a", "b"]));
        assert_eq!(violations.len(), 2, "the replica and the merge: {violations:?}");
        assert!(violations[0].message.contains("2 live siblings"));
    }
}
