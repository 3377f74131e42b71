//! Checker: read-after-write under strict quorums (R + W > N).
//!
//! A read invoked after a write of value `v` was acknowledged must return `v` or something that
//! may have replaced it. Successors are not enumerated (overwrites make that quadratic);
//! instead the read fails the check when every value it returned certainly precedes `v` (its
//! write was acknowledged before `v`'s write was invoked, so it can neither be `v` nor replace
//! it), or when it returned nothing although no delete of the key may have applied after `v`'s
//! write was invoked. Only pairs whose levels overlap (R + W > N) are checked, each write
//! against the first [`READS_PER_WRITE_MAX`] reads of its key invoked after it was acknowledged.
//!
//! Dotted-version-vector keyspaces only: under last write wins, a later blind write from a node
//! whose clock runs behind loses to an earlier one, by design (swarm seeds with clock skew show
//! it within seconds).

use std::collections::BTreeMap;

use ringkv_core::{ConflictMode, Consistency, Instant, Key, NodeId};

use super::index::ByteMap;
use super::{Analysis, CheckInput, Violation};
use crate::history::{History, OpIndex, OpOutcome, OpRecord, OpRequest};

const NAME: &str = "read-after-write";

/// Reads checked per acknowledged write.
pub const READS_PER_WRITE_MAX: usize = 16;

/// Runs the check.
pub fn check(input: CheckInput<'_>, analysis: &Analysis) -> Vec<Violation> {
    if input.params.conflict_mode != ConflictMode::DottedVersionVectors {
        return Vec::new();
    }
    let history = input.history;
    let reads = &analysis.reads;
    let deletes = deletes_by_key(history);
    let flushes = flush_spans(history);
    let every_pair_strict = every_pair_strict(input);
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
            let later_reads = strict_reads_after(input, reads.get(key), key, op, acked_at);
            for (read_index, read, summary) in later_reads {
                let stale = if summary.empty {
                    // A delete invoked before the read completed that may have applied after
                    // the write explains an empty result.
                    let read_done = read.completed_at.unwrap_or(read.invoked_at);
                    !deletes.get(key).into_iter().flatten().any(|(invoked, done)| {
                        *invoked < read_done && done.is_none_or(|done| done >= op.invoked_at)
                    })
                } else if !every_pair_strict.get(key).copied().unwrap_or(true) {
                    // An older value may legitimately come back (see `every_pair_strict`).
                    false
                } else {
                    // Every value seen was acknowledged before this write was invoked, so none
                    // is this write or a write that replaced it.
                    let read_done = read.completed_at.unwrap_or(read.invoked_at);
                    summary.latest_ack.is_some_and(|latest| latest < op.invoked_at)
                        && !flushes.iter().any(|(invoked, done)| {
                            *invoked < read_done && done.is_none_or(|done| done > op.invoked_at)
                        })
                };
                if stale {
                    let seen = read.values_read(key).unwrap_or_default();
                    violations.push(Violation {
                        checker: NAME,
                        message: format!(
                            "write op {index} of {value:?} to {key:?} was acknowledged at \
                             {acked_at}; read op {read_index} invoked at {} returned {seen:?}, \
                             all older than it",
                            read.invoked_at
                        ),
                        ops: vec![index, read_index],
                    });
                }
            }
        }
    }
    violations
}

/// Per key (with a topology only): whether every read of it must see every write of it that
/// was acknowledged before the read began, whichever datacenters they ran in.
///
/// The check that a read's values are "all older" than an acknowledged write `v` rests on
/// that: an older value `u` cannot come back after `v` was replaced, because every read that
/// supplied the replacing write's context saw `u` too (its quorum met `u`'s), so the context
/// covered it. Under LOCAL_QUORUM in two datacenters that fails legitimately: `u` written in
/// dc1, `v` written and then deleted from dc2 by a context that never saw `u`, and `u`
/// surfaces in dc2 once replication brings it (the first run of dc-partition-local-quorum
/// reported exactly that on every seed). For such keys only the empty-read half of the check
/// runs; it needs no such assumption.
fn every_pair_strict(input: CheckInput<'_>) -> BTreeMap<Key, bool> {
    let mut verdicts = BTreeMap::new();
    if input.topology.locations.is_empty() {
        return verdicts;
    }
    type Levels = Vec<(ringkv_core::Consistency, String)>;
    let mut levels: BTreeMap<Key, (Levels, Levels)> = BTreeMap::new();
    let add = |list: &mut Levels, op: &OpRecord| {
        let level = (op.consistency(), input.topology.datacenter_of(op.node).to_string());
        if !list.contains(&level) {
            list.push(level);
        }
    };
    for (_, op) in input.history.iter().filter(|(_, op)| !op.final_pass) {
        match &op.request {
            OpRequest::Write { writes, .. } if op.may_have_applied() => {
                for (key, _) in writes {
                    add(&mut levels.entry(key.clone()).or_default().0, op);
                }
            }
            OpRequest::Read { keys, .. } if op.is_ok() => {
                for key in keys {
                    add(&mut levels.entry(key.clone()).or_default().1, op);
                }
            }
            _ => {}
        }
    }
    for (key, (writes, reads)) in levels {
        let strict = writes.iter().all(|(write, write_dc)| {
            reads.iter().all(|(read, read_dc)| {
                input.is_strict_between(&key, (*read, read_dc), (*write, write_dc))
            })
        });
        verdicts.insert(key, strict);
    }
    verdicts
}

/// One successful read of one key, summarised for the checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyRead {
    op: OpIndex,
    invoked_at: Instant,
    /// Its (level, coordinator) pair: a position in its key's [`KeyReads::kinds`].
    kind: usize,
    /// Whether it returned no value.
    pub empty: bool,
    /// The latest acknowledgement among the writes of the values it returned.
    pub latest_ack: Option<Instant>,
}

/// A key's successful reads, in invocation order.
#[derive(Debug, Default)]
pub(crate) struct KeyReads {
    reads: Vec<KeyRead>,
    /// Each (level, coordinator) pair its reads used, in first-use order. Whether a read must
    /// see a write depends on nothing else of the read (see [`CheckInput::is_strict_via`]),
    /// so the pairing checkers ask once per pair and write instead of once per read; a key
    /// read only at levels that need not see the write (ONE, or a sloppy quorum) is then
    /// skipped at once, where every later read of it used to be asked about.
    kinds: Vec<(Consistency, NodeId)>,
}

/// The first [`READS_PER_WRITE_MAX`] reads of `reads` (sorted by invocation) invoked after
/// `after` that must see `write`, a write of `key` ([`CheckInput::is_strict`]).
pub(crate) fn strict_reads_after<'h>(
    input: CheckInput<'h>,
    reads: Option<&'h KeyReads>,
    key: &'h Key,
    write: &OpRecord,
    after: Instant,
) -> impl Iterator<Item = (OpIndex, &'h OpRecord, KeyRead)> + 'h {
    let (reads, kinds) =
        reads.map_or((&[][..], &[][..]), |reads| (&reads.reads[..], &reads.kinds[..]));
    let first = reads.partition_point(|read| read.invoked_at <= after);
    let later = &reads[first..];
    let write_kind = (write.consistency(), write.node);
    // Bit `k` set: reads of kind `k` must see the write. Asked once per kind; a key with more
    // than 128 kinds (never so far) is asked per read.
    let strict_kinds = (kinds.len() <= 128 && !later.is_empty()).then(|| {
        kinds.iter().enumerate().fold(0u128, |mask, (position, kind)| {
            mask | u128::from(input.is_strict_via(key, *kind, write_kind)) << position
        })
    });
    // None strict: nothing to walk (the common case under ONE or a sloppy quorum).
    let later = if strict_kinds == Some(0) { &[] } else { later };
    let history = input.history;
    later
        .iter()
        .filter(move |read| match strict_kinds {
            Some(mask) => (mask >> read.kind) & 1 == 1,
            None => input.is_strict_via(key, kinds[read.kind], write_kind),
        })
        .filter_map(move |read| history.get(read.op).map(|op| (read.op, op, *read)))
        .take(READS_PER_WRITE_MAX)
}

/// Successful reads of each key, in invocation order.
pub(crate) fn reads_by_key<'h>(
    history: &'h History,
    analysis: &Analysis<'h>,
) -> ByteMap<'h, KeyReads> {
    let mut reads: ByteMap<'h, KeyReads> = ByteMap::new();
    for (index, op) in history.iter().filter(|(_, op)| op.is_ok()) {
        let (OpRequest::Read { keys, .. }, OpOutcome::Ok { reads: values }) =
            (&op.request, &op.outcome)
        else {
            continue;
        };
        let kind = (op.consistency(), op.node);
        for (key, seen) in keys.iter().zip(values) {
            let key_reads = reads.get_or_insert_with(key, KeyReads::default);
            let kind = match key_reads.kinds.iter().position(|known| *known == kind) {
                Some(position) => position,
                None => {
                    key_reads.kinds.push(kind);
                    key_reads.kinds.len() - 1
                }
            };
            key_reads.reads.push(KeyRead {
                op: index,
                invoked_at: op.invoked_at,
                kind,
                empty: seen.is_empty(),
                latest_ack: analysis.latest_ack(history, seen),
            });
        }
    }
    for key_reads in reads.values_mut() {
        key_reads.reads.sort_by_key(|read| (read.invoked_at, read.op));
    }
    reads
}

/// For each key, the invocation and completion time of every delete that may have applied
/// (completion `None`: unknown, it may apply at any time).
type Deletes = BTreeMap<Key, Vec<(Instant, Option<Instant>)>>;

/// (invoked, acknowledged) of every flush that may have applied (`None`: outcome unknown).
/// A write concurrent with a flush may land on either side of it, and a flush of unknown
/// outcome may have truncated some replicas and not others (run it again, README says), so
/// while one is under way a read may meet an older value where a newer one was removed.
pub(crate) fn flush_spans(history: &History) -> Vec<(Instant, Option<Instant>)> {
    history
        .iter()
        .filter(|(_, op)| op.may_have_applied() && matches!(op.request, OpRequest::Flush { .. }))
        .map(|(_, op)| (op.invoked_at, if op.is_ok() { op.completed_at } else { None }))
        .collect()
}

fn deletes_by_key(history: &History) -> Deletes {
    let mut deletes = Deletes::new();
    for (_, op) in history.iter().filter(|(_, op)| op.may_have_applied()) {
        let done = if op.is_ok() { op.completed_at } else { None };
        match &op.request {
            OpRequest::Write { writes, .. } => {
                for (key, _) in writes.iter().filter(|(_, value)| value.is_none()) {
                    deletes.entry(key.clone()).or_default().push((op.invoked_at, done));
                }
            }
            // A flush deletes every key.
            OpRequest::Flush { keys } => {
                for key in keys {
                    deletes.entry(key.clone()).or_default().push((op.invoked_at, done));
                }
            }
            OpRequest::Read { .. } | OpRequest::Cas { .. } => {}
        }
    }
    deletes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::fixtures::*;
    use crate::checkers::FinalState;

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

    #[test]
    fn an_empty_read_after_an_acknowledged_write_is_caught_unless_a_delete_followed() {
        let mut history = History::new();
        put(&mut history, "k", "a", None, (0, 1), ok());
        read(&mut history, "k", &[], (2, 3));
        assert_eq!(run(&history).len(), 1);
        let seen = read(&mut history, "k", &["a"], (4, 5));
        delete(&mut history, "k", seen, (6, 7));
        read(&mut history, "k", &[], (8, 9));
        assert_eq!(run(&history).len(), 1, "only the read before the delete is stale");
    }
}
