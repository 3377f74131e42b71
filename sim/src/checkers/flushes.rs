//! Checker: nothing written before a flush comes back after it.
//!
//! A flush that succeeded removed every value whose write was acknowledged before the flush was
//! invoked (its coordinator's clock was read by the flush's first phase, so the truncation point
//! is later). Such a value must be returned by no read invoked after the flush was acknowledged,
//! at any consistency level, and must not be live in the final state. Writes that completed
//! after the flush was invoked, or whose outcome is unknown, are concurrent with it and may land
//! on either side.

use std::collections::BTreeMap;

use ringkv_core::{Instant, Key, Value};

use super::{Analysis, CheckInput, Violation};
use crate::history::{OpIndex, OpRequest};

const NAME: &str = "flush";

/// Runs the check.
pub fn check(input: CheckInput<'_>, _analysis: &Analysis) -> Vec<Violation> {
    let history = input.history;
    // (invoked, acknowledged, op) of every successful flush, in invocation order.
    let flushes: Vec<(Instant, Instant, OpIndex)> = history
        .iter()
        .filter(|(_, op)| op.is_ok() && matches!(op.request, OpRequest::Flush { .. }))
        .filter_map(|(index, op)| op.completed_at.map(|done| (op.invoked_at, done, index)))
        .collect();
    if flushes.is_empty() {
        return Vec::new();
    }
    // Each acknowledged value, with its key and acknowledgement time.
    let mut acked: BTreeMap<&Value, (&Key, Instant, OpIndex)> = BTreeMap::new();
    for (index, op) in history.iter().filter(|(_, op)| op.is_ok()) {
        let (OpRequest::Write { writes, .. }, Some(done)) = (&op.request, op.completed_at) else {
            continue;
        };
        for (key, value) in writes {
            if let Some(value) = value {
                acked.insert(value, (key, done, index));
            }
        }
    }
    // The flush that removed `value`: the first one invoked after its write was acknowledged.
    let flushed_by = |value: &Value| {
        let (_, done, _) = acked.get(value)?;
        flushes.iter().find(|(invoked, _, _)| invoked > done).copied()
    };
    let mut violations = Vec::new();
    for (index, op) in history.iter().filter(|(_, op)| op.is_ok()) {
        let OpRequest::Read { keys, .. } = &op.request else { continue };
        for key in keys {
            for value in op.values_read(key).unwrap_or_default() {
                let Some((_, flushed_at, flush)) = flushed_by(value) else { continue };
                if op.invoked_at > flushed_at {
                    let writer = acked.get(value).map(|(_, _, writer)| *writer).unwrap_or(0);
                    let message = format!(
                        "write op {writer} of {value:?} to {key:?} was acknowledged before flush \
                         op {flush} (acked at {flushed_at}); read op {index} invoked at {} \
                         returned it",
                        op.invoked_at
                    );
                    violations.push(Violation::new(NAME, message).with_ops([writer, flush, index]));
                }
            }
        }
    }
    for (key, state) in input.final_state {
        for value in &state.live {
            if let Some((_, _, flush)) = flushed_by(value) {
                let message = format!(
                    "{value:?} of {key:?} was written before flush op {flush}, but the final \
                     state holds it"
                );
                let writer = acked.get(value).map(|(_, _, writer)| *writer);
                violations.push(
                    Violation::new(NAME, message).with_ops(writer.into_iter().chain([flush])),
                );
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
    use crate::history::{History, OpOutcome};
    use ringkv_core::{Consistency, NodeId};

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

    fn op(history: &mut History, request: OpRequest, from_ms: u64, to_ms: u64, reads: Vec<&str>) {
        let index = history.invoke(0, NodeId(1), request, at(from_ms), false);
        let reads = vec![reads.into_iter().map(bytes).collect()];
        history.complete(index, at(to_ms), OpOutcome::Ok { reads });
    }

    fn write(key: &str, value: &str) -> OpRequest {
        OpRequest::Write {
            writes: vec![(bytes(key), Some(bytes(value)))],
            context_from: None,
            overwrite: true,
            consistency: Consistency::Quorum,
        }
    }

    fn read(key: &str) -> OpRequest {
        OpRequest::Read { keys: vec![bytes(key)], consistency: Consistency::One }
    }

    fn flush() -> OpRequest {
        OpRequest::Flush { keys: vec![bytes("k")] }
    }

    #[test]
    fn a_value_written_before_a_flush_and_read_after_it_is_caught() {
        let mut history = History::new();
        op(&mut history, write("k", "old"), 0, 10, vec![]);
        op(&mut history, flush(), 20, 30, vec![]);
        op(&mut history, read("k"), 40, 50, vec!["old"]);
        let violations = run(&history, &FinalState::new());
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].message.contains("flush op 1"), "{violations:?}");
        // The final state holding it is caught too.
        let mut final_state = FinalState::new();
        final_state
            .insert(bytes("k"), FinalKey { live: vec![bytes("old")], ..FinalKey::default() });
        assert_eq!(run(&history, &final_state).len(), 2);
    }

    #[test]
    fn reads_during_the_flush_and_writes_concurrent_with_it_are_allowed() {
        let mut history = History::new();
        op(&mut history, write("k", "old"), 0, 10, vec![]);
        // Concurrent with the flush: it may land on either side.
        op(&mut history, write("k", "racing"), 15, 25, vec![]);
        op(&mut history, flush(), 20, 30, vec![]);
        // Invoked before the flush was acknowledged: may still see the old value.
        op(&mut history, read("k"), 28, 35, vec!["old"]);
        op(&mut history, read("k"), 40, 50, vec!["racing"]);
        let mut final_state = FinalState::new();
        final_state
            .insert(bytes("k"), FinalKey { live: vec![bytes("racing")], ..FinalKey::default() });
        assert!(run(&history, &final_state).is_empty());
    }
}
