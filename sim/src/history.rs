//! The history of client operations: invocations and completions, as the checkers read them.
//!
//! Owns: one [`OpRecord`] per client operation, indexed by [`OpIndex`] (which is also the
//! `RequestId` the node sees). Input: the runner records an invocation, then at most one
//! completion. Output: the records, for the checkers.
//!
//! Outcomes: `Ok`; `Failed` when the operation certainly had no effect; `Unknown` when it may
//! have had one (a timeout, a storage failure, a client-side timeout with no reply, a failed
//! non-atomic mset). Checkers treat `Unknown` writes as possibly applied.
//!
//! Invariant: an operation completes at most once, never before it was invoked.

use ringkv_core::cas::{CasOp, CasReply};
use ringkv_core::{ClientError, Consistency, Instant, Key, NodeId, Value};

/// Position of an operation in the history.
pub type OpIndex = usize;

/// What an operation asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpRequest {
    /// A get (one key) or an mget (several).
    Read {
        /// The keys, in request order.
        keys: Vec<Key>,
        /// Read consistency.
        consistency: Consistency,
    },
    /// A put or delete (one key, `None` is a delete), or an mset (several keys).
    Write {
        /// The keys and what was written to each.
        writes: Vec<(Key, Option<Value>)>,
        /// The read whose causal context this write carried (`None`: a blind write).
        context_from: Option<OpIndex>,
        /// Whether the write is a `Set` (or an mset): it replaces every sibling its coordinator
        /// had seen, which the client cannot know.
        overwrite: bool,
        /// Write consistency.
        consistency: Consistency,
    },
    /// A serial (Paxos) operation on one key.
    Cas {
        /// The key.
        key: Key,
        /// What it asked for.
        op: CasOp,
    },
    /// A cluster-wide flush: every key of the workload removed, without tombstones.
    Flush {
        /// The workload's keys (what the flush removes, as far as the checkers care).
        keys: Vec<Key>,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    /// Not completed yet.
    Pending,
    /// Succeeded; for reads, the live values of each key in request order.
    Ok {
        /// Values read per key (empty for writes).
        reads: Vec<Vec<Value>>,
    },
    /// A serial operation succeeded with this reply.
    Serial(CasReply),
    /// Certainly had no effect.
    Failed(String),
    /// May or may not have had an effect.
    Unknown(String),
}

/// One client operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRecord {
    /// The client that issued it.
    pub client: usize,
    /// The node that coordinated it.
    pub node: NodeId,
    /// What it asked for.
    pub request: OpRequest,
    /// When it was sent.
    pub invoked_at: Instant,
    /// When its outcome arrived (or the client gave up).
    pub completed_at: Option<Instant>,
    /// How it ended.
    pub outcome: OpOutcome,
    /// Whether it belongs to the final read pass rather than the workload.
    pub final_pass: bool,
}

impl OpRecord {
    /// Whether the operation succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, OpOutcome::Ok { .. } | OpOutcome::Serial(_))
    }

    /// Whether it is a serial (Paxos) operation.
    pub fn is_serial(&self) -> bool {
        matches!(self.request, OpRequest::Cas { .. })
    }

    /// Whether the operation may have had an effect (succeeded, unknown or still pending).
    pub fn may_have_applied(&self) -> bool {
        !matches!(self.outcome, OpOutcome::Failed(_))
    }

    /// The consistency level it used.
    pub fn consistency(&self) -> Consistency {
        match &self.request {
            OpRequest::Read { consistency, .. } | OpRequest::Write { consistency, .. } => {
                *consistency
            }
            // A serial operation needs a quorum of the replicas at every phase.
            OpRequest::Cas { .. } => Consistency::Quorum,
            // Every member truncates before a flush succeeds.
            OpRequest::Flush { .. } => Consistency::All,
        }
    }

    /// The values this operation read for `key`, when it is a successful read of it.
    pub fn values_read(&self, key: &[u8]) -> Option<&[Value]> {
        let (OpRequest::Read { keys, .. }, OpOutcome::Ok { reads }) =
            (&self.request, &self.outcome)
        else {
            return None;
        };
        let position = keys.iter().position(|read_key| read_key.as_ref() == key)?;
        reads.get(position).map(Vec::as_slice)
    }
}

/// Every operation of a run, in invocation order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<OpRecord>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Records an invocation; returns its index.
    pub fn invoke(
        &mut self,
        client: usize,
        node: NodeId,
        request: OpRequest,
        at: Instant,
        final_pass: bool,
    ) -> OpIndex {
        self.ops.push(OpRecord {
            client,
            node,
            request,
            invoked_at: at,
            completed_at: None,
            outcome: OpOutcome::Pending,
            final_pass,
        });
        self.ops.len() - 1
    }

    /// Records a completion. Returns false when the operation had already completed (a late
    /// reply after a client timeout), in which case nothing changes.
    pub fn complete(&mut self, index: OpIndex, at: Instant, outcome: OpOutcome) -> bool {
        let Some(op) = self.ops.get_mut(index) else {
            return false;
        };
        if op.outcome != OpOutcome::Pending {
            return false;
        }
        assert!(at >= op.invoked_at, "operation {index} completed before it was invoked");
        assert!(outcome != OpOutcome::Pending, "a completion needs an outcome");
        op.completed_at = Some(at);
        op.outcome = outcome;
        true
    }

    /// The operation at `index`.
    pub fn get(&self, index: OpIndex) -> Option<&OpRecord> {
        self.ops.get(index)
    }

    /// Every operation with its index.
    pub fn iter(&self) -> impl Iterator<Item = (OpIndex, &OpRecord)> {
        self.ops.iter().enumerate()
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Classifies a node's error: unknown when the write may have been applied anyway.
pub fn outcome_of_error(error: &ClientError, is_batch_write: bool) -> OpOutcome {
    // An mset is not atomic: whatever its error, some of its keys may have been written.
    if error.outcome_unknown() || is_batch_write {
        OpOutcome::Unknown(error.to_string())
    } else {
        OpOutcome::Failed(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn an_operation_completes_once_and_a_late_reply_is_ignored() {
        let mut history = History::new();
        let read =
            OpRequest::Read { keys: vec![Bytes::from_static(b"k")], consistency: Consistency::One };
        let index = history.invoke(0, NodeId(1), read, Instant::from_nanos(5), false);
        assert!(history.complete(
            index,
            Instant::from_nanos(9),
            OpOutcome::Unknown("timeout".into())
        ));
        let late = OpOutcome::Ok { reads: vec![vec![Bytes::from_static(b"v")]] };
        assert!(!history.complete(index, Instant::from_nanos(12), late));
        let op = history.get(index).unwrap();
        assert_eq!(op.completed_at, Some(Instant::from_nanos(9)));
        assert!(op.may_have_applied() && !op.is_ok());
        assert_eq!(op.values_read(b"k"), None);
    }

    #[test]
    fn errors_are_unknown_only_when_the_write_may_have_landed() {
        let timeout = ClientError::Timeout { required: 2, acked: 1 };
        let unavailable = ClientError::Unavailable { required: 2, alive: 1 };
        assert!(matches!(outcome_of_error(&timeout, false), OpOutcome::Unknown(_)));
        assert!(matches!(outcome_of_error(&unavailable, false), OpOutcome::Failed(_)));
        assert!(matches!(outcome_of_error(&unavailable, true), OpOutcome::Unknown(_)));
    }
}
