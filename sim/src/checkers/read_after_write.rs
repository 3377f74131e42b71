//! Checker: read-after-write under strict quorums (R + W > N).
//!
//! A read invoked after a write was acknowledged must return the written value or a value that
//! replaced it (transitively, through context writes that may have applied); when a delete is
//! among its replacements, any result is accepted. Only pairs whose consistency levels overlap
//! (R + W > N) are checked. Each write is checked against the first [`READS_PER_WRITE_MAX`]
//! reads of its key invoked after it completed, which bounds the cost on hot keys.

use std::collections::BTreeMap;

use ringkv_core::Key;

use super::{Analysis, CheckInput, Violation};
use crate::history::{History, OpIndex, OpRequest};

const NAME: &str = "read-after-write";

/// Reads checked per acknowledged write.
pub const READS_PER_WRITE_MAX: usize = 16;

/// Runs the check.
pub fn check(input: CheckInput<'_>, analysis: &Analysis) -> Vec<Violation> {
    let history = input.history;
    let reads = reads_by_key(history);
    let mut violations = Vec::new();
    for (index, op) in history.iter().filter(|(_, op)| op.is_ok()) {
        let (OpRequest::Write { writes, .. }, Some(acked_at)) = (&op.request, op.completed_at)
        else {
            continue;
        };
        for (key, value) in writes {
            let Some(value) = value else {
                continue;
            };
            let (successors, deleted) = analysis.successors(history, value);
            if deleted {
                continue;
            }
            let later_reads = reads
                .get(key)
                .into_iter()
                .flatten()
                .filter_map(|read| history.get(*read).map(|record| (*read, record)))
                .filter(|(_, read)| read.invoked_at > acked_at)
                .filter(|(_, read)| input.params.is_strict(read.consistency(), op.consistency()))
                .take(READS_PER_WRITE_MAX);
            for (read_index, read) in later_reads {
                let seen = read.values_read(key).unwrap_or_default();
                if !seen.iter().any(|seen| seen == value || successors.contains(seen)) {
                    violations.push(Violation {
                        checker: NAME,
                        message: format!(
                            "write op {index} of {value:?} to {key:?} was acknowledged at \
                             {acked_at}; read op {read_index} invoked at {} returned {seen:?}, \
                             neither it nor a successor",
                            read.invoked_at
                        ),
                    });
                }
            }
        }
    }
    violations
}

/// Successful reads of each key, in invocation order.
pub(crate) fn reads_by_key(history: &History) -> BTreeMap<Key, Vec<OpIndex>> {
    let mut reads: BTreeMap<Key, Vec<OpIndex>> = BTreeMap::new();
    for (index, op) in history.iter().filter(|(_, op)| op.is_ok()) {
        if let OpRequest::Read { keys, .. } = &op.request {
            for key in keys {
                reads.entry(key.clone()).or_default().push(index);
            }
        }
    }
    for indexes in reads.values_mut() {
        indexes.sort_by_key(|index| history.get(*index).map(|op| op.invoked_at));
    }
    reads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::fixtures::*;
    use crate::checkers::FinalState;

    fn run(history: &History) -> Vec<Violation> {
        let input = CheckInput { history, final_state: &FinalState::new(), params: params() };
        check(input, &Analysis::new(history))
    }

    #[test]
    fn later_reads_that_see_the_write_or_its_successor_pass() {
        let mut history = History::new();
        put(&mut history, "k", "a", None, (0, 1), ok());
        let seen = read(&mut history, "k", &["a"], (2, 3));
        put(&mut history, "k", "b", Some(seen), (4, 5), ok());
        read(&mut history, "k", &["b"], (6, 7));
        read(&mut history, "k", &[], (0, 9));
        assert_eq!(run(&history), Vec::new(), "a read concurrent with the write may miss it");
        let gone = read(&mut history, "k", &["b"], (10, 11));
        delete(&mut history, "k", gone, (12, 13));
        read(&mut history, "k", &[], (14, 15));
        assert_eq!(run(&history), Vec::new());
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_caught() {
        let mut history = History::new();
        put(&mut history, "k", "a", None, (0, 1), ok());
        put(&mut history, "k", "b", None, (2, 3), ok());
        read(&mut history, "k", &["a"], (4, 5));
        let violations = run(&history);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].message.contains("\"b\""));
    }
}
