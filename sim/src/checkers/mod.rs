//! Checkers: each module tests one property of a finished run and reports violations.
//!
//! Input: the run's [`History`], the [`FinalState`] of every key written (each replica's copy
//! after the final all-replica read pass, and their merge over every node), and the run's
//! [`CheckParams`]. Output: [`Violation`]s, at most [`VIOLATIONS_PER_CHECKER_MAX`] per checker.
//!
//! The shared [`Analysis`] indexes the history once: the write that produced each (unique)
//! value, and for each value the context writes that replaced it. A context write replaces
//! exactly the values its read returned for that key: the read's context is the merged clock,
//! which covers every value it returned, and a value it does not cover was never visible to it.

pub mod bounds;
pub mod convergence;
pub mod flushes;
pub mod hints;
mod index;
pub mod linearizable;
pub mod liveness;
pub mod lost_writes;
pub mod membership;
pub mod placement;
pub mod read_after_write;
pub mod recovery;
pub mod resurrection;
pub mod values_written;

use std::collections::BTreeMap;

use ringkv_core::placement::Location;
use ringkv_core::version::Versioned;
use ringkv_core::{ConflictMode, Consistency, Instant, Key, NodeId, Value};

use crate::history::{History, OpIndex, OpRecord, OpRequest};
use index::ByteMap;

/// Most violations one checker reports; the first few tell the story.
pub const VIOLATIONS_PER_CHECKER_MAX: usize = 10;

/// A property that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which checker found it.
    pub checker: &'static str,
    /// What happened, with op indexes, keys and values.
    pub message: String,
    /// The history operations it involves (their [`OpIndex`]es), for tools that show them
    /// beside the history, such as the timeline; empty when it is about the final state or
    /// the cluster alone.
    pub ops: Vec<OpIndex>,
}

impl Violation {
    /// A violation that names no operation.
    pub fn new(checker: &'static str, message: String) -> Self {
        Violation { checker, message, ops: Vec::new() }
    }

    /// The same violation, involving `ops`.
    pub fn with_ops(mut self, ops: impl IntoIterator<Item = OpIndex>) -> Self {
        self.ops = ops.into_iter().collect();
        self
    }
}

/// One key's state after the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalKey {
    /// Each replica of the key (preference list order) and its copy (empty when absent).
    pub replicas: Vec<(NodeId, Versioned)>,
    /// The key's preference list as the ring computes it, which must name
    /// `owners_expected` distinct nodes.
    pub owners: Vec<NodeId>,
    /// N, or the member count when the ring has fewer members.
    pub owners_expected: usize,
    /// The merge of every node's copy.
    pub merged: Versioned,
    /// The live values of `merged`.
    pub live: Vec<Value>,
}

/// Every written key's final state.
pub type FinalState = BTreeMap<Key, FinalKey>;

/// One node's view of the cluster at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node.
    pub node: NodeId,
    /// Each member it knows, with the generation and status (as text) it believes.
    pub members: BTreeMap<NodeId, (u64, String)>,
    /// Peers it believes down (its driver's report or phi over the threshold), left ones too.
    pub down: Vec<NodeId>,
    /// Hints it holds for other replicas.
    pub hints_count: usize,
}

/// What the checkers need to know about the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckParams {
    /// Replicas per key.
    pub replicas_n: usize,
    /// The keyspace's conflict mode.
    pub conflict_mode: ConflictMode,
    /// When the liveness measurement started (faults healed plus warm-up), if the run had one.
    pub liveness_from: Option<Instant>,
    /// Least share of liveness-phase operations that must succeed.
    pub liveness_success_min: f64,
    /// How many times nodes were started (each start may mint a new actor).
    pub node_starts_count: usize,
    /// Whether fallback nodes' hints count toward W: quorums then need not intersect.
    pub sloppy_quorum: bool,
    /// Whether the cluster ran healed for at least the liveness warm-up before the end, so
    /// that gossip and hint replay had time to converge.
    pub settled: bool,
    /// When every fault was healed and how soon after it operations must succeed again, for
    /// scenarios that bound recovery.
    pub recovery: Option<(Instant, ringkv_core::Duration)>,
}

impl CheckParams {
    /// Whether a read at `read` after a write at `write` must see it: R + W > N over strict
    /// quorums.
    pub fn is_strict(&self, read: Consistency, write: Consistency) -> bool {
        if self.sloppy_quorum {
            return false;
        }
        match (read.required(self.replicas_n), write.required(self.replicas_n)) {
            (Ok(r), Ok(w)) => r + w > self.replicas_n,
            _ => false,
        }
    }
}

/// Where the run's nodes stood, for the checkers that depend on datacenters and racks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopologyView {
    /// Every node's location; empty without a topology (every node at the default location,
    /// and the checkers judge as they did before topologies).
    pub locations: BTreeMap<NodeId, Location>,
    /// The keyspace's replicas per datacenter (empty: N over the whole cluster).
    pub replicas_per_dc: BTreeMap<String, usize>,
}

impl TopologyView {
    /// The datacenter of `node` (the default one for a node with no declared location).
    pub fn datacenter_of(&self, node: NodeId) -> &str {
        self.locations
            .get(&node)
            .map_or(ringkv_core::placement::DATACENTER_DEFAULT, |spot| spot.datacenter.as_str())
    }
}

/// What a consistency level demands of the replicas that acknowledge (or answer): at least
/// `per_dc[d]` of datacenter `d`'s replicas and at least `total` over all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    /// Least count per datacenter.
    pub per_dc: BTreeMap<String, usize>,
    /// Least count over every replica.
    pub total: usize,
}

impl Demand {
    /// The demand of `consistency` used from `local` (the coordinator's datacenter) on a key
    /// with `replicas[d]` replicas in datacenter `d`, as `ringkv_core::placement::quorums_for`
    /// counts it. `None` when the level cannot be served there.
    pub fn of(
        consistency: Consistency,
        local: &str,
        replicas: &BTreeMap<String, usize>,
    ) -> Option<Demand> {
        let replicas_n: usize = replicas.values().sum();
        let mut demand = Demand::default();
        match consistency {
            Consistency::LocalOne | Consistency::LocalQuorum => {
                let here = *replicas.get(local).filter(|count| **count > 0)?;
                let required = if consistency == Consistency::LocalOne { 1 } else { here / 2 + 1 };
                demand.per_dc.insert(local.to_string(), required);
            }
            Consistency::EachQuorum => {
                for (datacenter, count) in replicas.iter().filter(|(_, count)| **count > 0) {
                    demand.per_dc.insert(datacenter.clone(), count / 2 + 1);
                }
            }
            _ => demand.total = consistency.required(replicas_n).ok()?,
        }
        Some(demand)
    }

    fn floor(&self) -> usize {
        self.total.max(self.per_dc.values().sum())
    }
}

/// Whether every replica set meeting `write` intersects every set meeting `read`, over a key
/// with `replicas[d]` replicas in datacenter `d`.
///
/// Disjoint sets exist exactly when (a) in every datacenter `w_d + r_d <= n_d`, and (b)
/// `max(W, sum w_d) + max(R, sum r_d) <= N`: choose the write's share `a_d` in `[w_d, n_d -
/// r_d]` per datacenter and give the read all the rest; the sum of the `a_d` sweeps every
/// integer in `[sum w_d, N - sum r_d]`, so one meets both totals iff (b). Strict is the
/// negation. So LOCAL_QUORUM after LOCAL_QUORUM is strict in the same datacenter only;
/// LOCAL_QUORUM after EACH_QUORUM (or ALL) is strict anywhere; QUORUM over two datacenters
/// with a LOCAL_QUORUM read is not (3 + 1 of 3 + 3 written, the read's 2 are the other two);
/// without a topology this is R + W > N.
pub fn quorums_intersect(
    write: &Demand,
    read: &Demand,
    replicas: &BTreeMap<String, usize>,
) -> bool {
    let replicas_n: usize = replicas.values().sum();
    let squeezed = replicas.iter().any(|(datacenter, count)| {
        let w = write.per_dc.get(datacenter).copied().unwrap_or(0);
        let r = read.per_dc.get(datacenter).copied().unwrap_or(0);
        w + r > *count
    });
    squeezed || write.floor() + read.floor() > replicas_n
}

/// Everything a checker reads.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    /// The history.
    pub history: &'a History,
    /// The final state.
    pub final_state: &'a FinalState,
    /// Every running node's view of the membership at the end.
    pub views: &'a [NodeView],
    /// The membership the run should end with: the founding nodes plus those that joined,
    /// minus those decommissioned or removed.
    pub expected_members: &'a [NodeId],
    /// Where the nodes stood.
    pub topology: &'a TopologyView,
    /// The run's parameters.
    pub params: CheckParams,
}

impl CheckInput<'_> {
    /// Whether `read` (of `key`) must see `write`: their levels' quorums intersect (see
    /// [`quorums_intersect`]), counted in the datacenters of the nodes the clients sent them
    /// to (a local write is forwarded only to a replica of its own datacenter). Without a
    /// topology: R + W > N, [`CheckParams::is_strict`].
    pub fn is_strict(&self, key: &Key, read: &OpRecord, write: &OpRecord) -> bool {
        self.is_strict_via(key, (read.consistency(), read.node), (write.consistency(), write.node))
    }

    /// [`CheckInput::is_strict`] from what it reads of the two operations: each one's level
    /// and the node the client sent it to. The checkers that pair reads with writes group
    /// reads by this pair, so that they ask once per group rather than once per read.
    pub(crate) fn is_strict_via(
        &self,
        key: &Key,
        read: (Consistency, NodeId),
        write: (Consistency, NodeId),
    ) -> bool {
        if self.topology.locations.is_empty() {
            return self.params.is_strict(read.0, write.0);
        }
        let read = (read.0, self.topology.datacenter_of(read.1));
        let write = (write.0, self.topology.datacenter_of(write.1));
        self.is_strict_between(key, read, write)
    }

    /// Whether a read at `read` (level, coordinator's datacenter) of `key` must see a write at
    /// `write`; see [`CheckInput::is_strict`].
    pub fn is_strict_between(
        &self,
        key: &Key,
        read: (Consistency, &str),
        write: (Consistency, &str),
    ) -> bool {
        if self.params.sloppy_quorum {
            return false;
        }
        // The key's replicas per datacenter, from the final ring: the ring the run ended with
        // (a key's counts change only while a datacenter is short of its replicas).
        let Some(state) = self.final_state.get(key) else {
            return false;
        };
        let mut replicas: BTreeMap<String, usize> = BTreeMap::new();
        for owner in &state.owners {
            *replicas.entry(self.topology.datacenter_of(*owner).to_string()).or_default() += 1;
        }
        let write = Demand::of(write.0, write.1, &replicas);
        let read = Demand::of(read.0, read.1, &replicas);
        match (write, read) {
            (Some(write), Some(read)) => quorums_intersect(&write, &read, &replicas),
            _ => false,
        }
    }
}

/// Runs every checker.
pub fn check_all(input: CheckInput<'_>) -> Vec<Violation> {
    let analysis = Analysis::new(input.history);
    let checks: [fn(CheckInput<'_>, &Analysis<'_>) -> Vec<Violation>; 13] = [
        values_written::check,
        lost_writes::check,
        read_after_write::check,
        resurrection::check,
        convergence::check,
        liveness::check,
        bounds::check,
        membership::check,
        hints::check,
        linearizable::check,
        flushes::check,
        recovery::check,
        placement::check,
    ];
    checks
        .iter()
        .flat_map(|check| check(input, &analysis).into_iter().take(VIOLATIONS_PER_CHECKER_MAX))
        .collect()
}

/// The history, indexed for the checkers. The indexes borrow keys and values from the history
/// (see [`index`] for why they are not B-trees of owned `Bytes`).
#[derive(Debug, Default)]
pub struct Analysis<'h> {
    /// The write (op, key) that produced each value (the last one, were a value written twice).
    pub(crate) writer_of: ByteMap<'h, (OpIndex, &'h Key)>,
    /// Context writes that may have applied, for each value their read returned.
    pub(crate) replaced_by: ByteMap<'h, Vec<OpIndex>>,
    /// Overwrites (`Set`, mset, flush) that may have applied, per key.
    pub(crate) overwrites: ByteMap<'h, Vec<OpIndex>>,
    /// Successful reads of each key in invocation order (read-after-write and resurrection
    /// both walk them).
    pub(crate) reads: ByteMap<'h, read_after_write::KeyReads>,
}

impl<'h> Analysis<'h> {
    /// Indexes `history`.
    pub fn new(history: &'h History) -> Self {
        // At most one value per write key: sized once, `writer_of` never regrows.
        let values_count = history
            .iter()
            .map(|(_, op)| match &op.request {
                OpRequest::Write { writes, .. } => writes.len(),
                _ => 0,
            })
            .sum();
        let mut analysis =
            Analysis { writer_of: ByteMap::with_capacity(values_count), ..Analysis::default() };
        for (index, op) in history.iter() {
            if let OpRequest::Flush { keys } = &op.request {
                // A flush that may have applied removed every key: an overwrite of each.
                if op.may_have_applied() {
                    for key in keys {
                        analysis.overwrites.get_or_insert_with(key, Vec::new).push(index);
                    }
                }
                continue;
            }
            let OpRequest::Write { writes, context_from, overwrite, .. } = &op.request else {
                continue;
            };
            let may_have_applied = op.may_have_applied();
            let read = context_from.and_then(|read| history.get(read));
            for (key, value) in writes {
                if let Some(value) = value {
                    analysis.writer_of.insert(value, (index, key));
                }
                if *overwrite && may_have_applied {
                    analysis.overwrites.get_or_insert_with(key, Vec::new).push(index);
                }
                let Some(seen) = read.and_then(|read| read.values_read(key)) else {
                    continue;
                };
                if may_have_applied {
                    for value in seen {
                        analysis.replaced_by.get_or_insert_with(value, Vec::new).push(index);
                    }
                }
            }
        }
        analysis.reads = read_after_write::reads_by_key(history, &analysis);
        analysis
    }

    /// The write (op, key) that produced `value`, if any did.
    pub fn writer_of(&self, value: &[u8]) -> Option<(OpIndex, &'h Key)> {
        self.writer_of.get(value).copied()
    }

    /// Values replaced by a context write that succeeded.
    pub fn replaced_by_ok(&self, history: &History, value: &[u8]) -> bool {
        self.replaced_by.get(value).is_some_and(|ops| {
            ops.iter().any(|op| history.get(*op).is_some_and(|record| record.is_ok()))
        })
    }

    /// Whether a write that may have applied can have replaced `value`: a context write whose
    /// read returned it, or an overwrite of its key (other than the value's own write) that had
    /// not certainly finished before the value's write was invoked.
    pub fn may_be_replaced(&self, history: &History, value: &[u8]) -> bool {
        if self.replaced_by.get(value).is_some() {
            return true;
        }
        let Some(&(writer, key)) = self.writer_of.get(value) else {
            return false;
        };
        let Some(written_at) = history.get(writer).map(|op| op.invoked_at) else {
            return false;
        };
        // Latest overwrites first: they are the likeliest to qualify, so the scan stops early.
        self.overwrites.get(key).into_iter().flatten().rev().any(|overwrite| {
            // An unknown write may still be applied long after the client gave up.
            *overwrite != writer
                && history.get(*overwrite).is_some_and(|op| {
                    !op.is_ok() || op.completed_at.is_none_or(|done| done >= written_at)
                })
        })
    }

    /// The latest acknowledgement among the writes of `values`: `None` when one of them was
    /// not acknowledged (it may still be applied at any time) or has no known writer.
    pub fn latest_ack(&self, history: &History, values: &[Value]) -> Option<Instant> {
        let mut latest = Instant::ZERO;
        for value in values {
            let op = self.writer_of.get(value).and_then(|(writer, _)| history.get(*writer))?;
            if !op.is_ok() {
                return None;
            }
            latest = latest.max(op.completed_at?);
        }
        Some(latest)
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Hand-made histories for the checkers' tests.

    use bytes::Bytes;
    use ringkv_core::{ConflictMode, Consistency, Instant, NodeId};

    use super::CheckParams;
    use crate::history::{History, OpIndex, OpOutcome, OpRequest};

    pub fn at(millis: u64) -> Instant {
        Instant::from_nanos(millis * 1_000_000)
    }

    pub fn bytes(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    pub fn params() -> CheckParams {
        CheckParams {
            replicas_n: 3,
            conflict_mode: ConflictMode::DottedVersionVectors,
            liveness_from: None,
            liveness_success_min: 0.99,
            node_starts_count: 3,
            sloppy_quorum: false,
            settled: true,
            recovery: None,
        }
    }

    /// Records a completed put (blind, or with the context of `context_from`).
    pub fn put(
        history: &mut History,
        key: &str,
        value: &str,
        context_from: Option<OpIndex>,
        span: (u64, u64),
        outcome: OpOutcome,
    ) -> OpIndex {
        let request = OpRequest::Write {
            writes: vec![(bytes(key), Some(bytes(value)))],
            context_from,
            overwrite: false,
            consistency: Consistency::Quorum,
        };
        let index = history.invoke(0, NodeId(1), request, at(span.0), false);
        history.complete(index, at(span.1), outcome);
        index
    }

    /// Records a completed context delete.
    pub fn delete(
        history: &mut History,
        key: &str,
        context_from: OpIndex,
        span: (u64, u64),
    ) -> OpIndex {
        let request = OpRequest::Write {
            writes: vec![(bytes(key), None)],
            context_from: Some(context_from),
            overwrite: false,
            consistency: Consistency::Quorum,
        };
        let index = history.invoke(0, NodeId(1), request, at(span.0), false);
        history.complete(index, at(span.1), ok());
        index
    }

    /// Records a successful quorum read of `key` returning `values`.
    pub fn read(history: &mut History, key: &str, values: &[&str], span: (u64, u64)) -> OpIndex {
        let request = OpRequest::Read { keys: vec![bytes(key)], consistency: Consistency::Quorum };
        let index = history.invoke(1, NodeId(2), request, at(span.0), false);
        let reads = vec![values.iter().map(|value| bytes(value)).collect()];
        history.complete(index, at(span.1), OpOutcome::Ok { reads });
        index
    }

    /// Records a completed overwrite (a `Set`).
    pub fn set(history: &mut History, key: &str, value: &str, span: (u64, u64)) -> OpIndex {
        let request = OpRequest::Write {
            writes: vec![(bytes(key), Some(bytes(value)))],
            context_from: None,
            overwrite: true,
            consistency: Consistency::Quorum,
        };
        let index = history.invoke(0, NodeId(1), request, at(span.0), false);
        history.complete(index, at(span.1), ok());
        index
    }

    pub fn ok() -> OpOutcome {
        OpOutcome::Ok { reads: Vec::new() }
    }
}

#[cfg(test)]
mod strictness_tests {
    use super::*;

    fn strict(write: (Consistency, &str), read: (Consistency, &str), n: &[(&str, usize)]) -> bool {
        let replicas: BTreeMap<String, usize> =
            n.iter().map(|(dc, count)| (dc.to_string(), *count)).collect();
        let write = Demand::of(write.0, write.1, &replicas).expect("servable");
        let read = Demand::of(read.0, read.1, &replicas).expect("servable");
        quorums_intersect(&write, &read, &replicas)
    }

    #[test]
    fn local_quorums_intersect_within_one_datacenter_only() {
        use Consistency::*;
        let two = [("east", 3), ("west", 3)];
        assert!(strict((LocalQuorum, "east"), (LocalQuorum, "east"), &two));
        assert!(!strict((LocalQuorum, "east"), (LocalQuorum, "west"), &two));
        assert!(strict((EachQuorum, "east"), (LocalQuorum, "west"), &two));
        assert!(strict((All, "east"), (LocalOne, "west"), &two));
        assert!(!strict((Quorum, "east"), (LocalQuorum, "west"), &two));
        assert!(strict((Quorum, "east"), (Quorum, "west"), &two));
        assert!(!strict((LocalOne, "east"), (EachQuorum, "west"), &two));
        assert!(strict((LocalQuorum, "east"), (EachQuorum, "west"), &two));
        // One datacenter: R + W > N, as before topologies.
        let one = [("dc1", 3)];
        assert!(strict((Quorum, "dc1"), (Quorum, "dc1"), &one));
        assert!(!strict((One, "dc1"), (Quorum, "dc1"), &one));
        assert!(strict((All, "dc1"), (One, "dc1"), &one));
        assert!(strict((LocalQuorum, "dc1"), (Quorum, "dc1"), &one));
    }
}
