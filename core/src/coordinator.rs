//! The quorum coordinator: the bookkeeping of every request this node coordinates.
//!
//! Owns: in-flight reads, writes, forwarded writes and mget/mset batches, and their deadlines.
//! Inputs: replies from replicas (including this node's own, fed in like any other), write
//! acknowledgements, and the passing of time. Outputs: [`Action`]s the node carries out: deliver
//! an outcome, push a repair and wait for it, or push a repair and forget it. It does no I/O and
//! holds no storage; the node does both.
//!
//! Timer: one deadline per operation; [`Coordinator::next_deadline`] is the earliest.
//!
//! Invariants: every operation has exactly one deadline entry; replies and acknowledgements are
//! counted once per replica (a duplicated message never counts twice) and only from the
//! operation's replicas; a batch's remaining count equals its unfilled slots.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::ClientError;
use crate::message::{ClientRequest, ClientResponse, OpId, ReadResult, RequestId};
use crate::placement::{quorums_reached, Quorum};
use crate::time::Instant;
use crate::types::{ConflictMode, Key, NodeId};
use crate::version::{Context, Versioned};

/// Where an outcome goes when an operation completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyTo {
    /// A client of this node.
    Client(RequestId),
    /// A node that forwarded a client's write here.
    Forward {
        /// The forwarding node.
        to: NodeId,
        /// Its id for the request.
        forward: OpId,
    },
    /// One slot of an mget or mset batch.
    Batch {
        /// The batch.
        batch: u64,
        /// The slot.
        index: usize,
    },
}

/// The result of one operation, before the node shapes it for its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A read completed with this merged object.
    Read(Versioned),
    /// A write completed; the context covers it.
    Written(Context),
    /// A forwarded request came back with this result.
    Forwarded(Result<ClientResponse, ClientError>),
    /// The operation failed.
    Failed(ClientError),
}

/// What the node must do after feeding the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver an outcome.
    Deliver {
        /// Destination.
        reply_to: ReplyTo,
        /// The outcome.
        outcome: Outcome,
    },
    /// Write `object` to `targets` and report their acknowledgements to operation `op`; the read
    /// replies only when all have acknowledged (read repair at QUORUM and above).
    RepairAndWait {
        /// The read operation waiting.
        op: OpId,
        /// The key.
        key: Key,
        /// Stale replicas.
        targets: Vec<NodeId>,
        /// The merged object.
        object: Versioned,
    },
    /// Write `object` to `targets`, nobody waits (read repair below QUORUM, or late replies).
    RepairAsync {
        /// The key.
        key: Key,
        /// Stale replicas.
        targets: Vec<NodeId>,
        /// The merged object.
        object: Versioned,
    },
}

/// The coordinator's state.
#[derive(Debug, Default)]
pub struct Coordinator {
    next_op: OpId,
    ops: BTreeMap<OpId, Op>,
    deadlines: BTreeSet<(Instant, OpId)>,
    next_batch: u64,
    batches: BTreeMap<u64, Batch>,
    mode: Option<ConflictMode>,
    /// How many of `ops` are reads that already replied (kept so that `in_flight`, asked for
    /// every admitted request, is not a walk over every operation: it was 21% of a node's CPU
    /// with 800 requests in flight).
    replied_reads: usize,
}

#[derive(Debug)]
struct Op {
    deadline: Instant,
    reply_to: ReplyTo,
    kind: OpKind,
}

impl Op {
    /// A read that replied and only waits for stragglers to repair.
    fn is_replied_read(&self) -> bool {
        matches!(&self.kind, OpKind::Read(read) if matches!(read.phase, ReadPhase::Replied { .. }))
    }
}

#[derive(Debug)]
enum OpKind {
    Read(ReadOp),
    Write(WriteOp),
    Forward,
}

#[derive(Debug)]
struct ReadOp {
    key: Key,
    replicas: Vec<NodeId>,
    /// Replies needed in total (the sum over `quorums`), for errors.
    required: usize,
    quorums: Vec<Quorum>,
    repair_before_reply: bool,
    replies: BTreeMap<NodeId, Versioned>,
    phase: ReadPhase,
}

#[derive(Debug)]
enum ReadPhase {
    Collecting,
    Repairing { merged: Versioned, waiting: BTreeSet<NodeId> },
    Replied { merged: Versioned },
}

#[derive(Debug)]
struct WriteOp {
    /// Every node whose acknowledgement counts toward some quorum.
    replicas: Vec<NodeId>,
    required: usize,
    /// Each quorum the write needs: W of the replicas (one per datacenter at `EACH_QUORUM`),
    /// and while ranges move, W of the owners-to-be as well.
    quorums: Vec<Quorum>,
    acks: BTreeSet<NodeId>,
    /// Always 0 unless the planted bug `QuorumCountsDuplicateReplies` is armed.
    duplicate_acks: usize,
    failures: BTreeMap<NodeId, String>,
    context: Context,
}

#[derive(Debug)]
struct Batch {
    request: RequestId,
    slots: Vec<Option<Outcome>>,
    remaining: usize,
}

/// Parameters of a read to start.
#[derive(Debug, Clone)]
pub struct ReadSpec {
    /// The key.
    pub key: Key,
    /// Its preference list.
    pub replicas: Vec<NodeId>,
    /// The quorums the replies must reach (one over `replicas` for levels that ignore
    /// topology).
    pub quorums: Vec<Quorum>,
    /// Whether stale responders are repaired before the reply.
    pub repair_before_reply: bool,
}

impl Coordinator {
    /// A coordinator with no requests, reconciling objects by `mode`.
    pub fn new(mode: ConflictMode) -> Self {
        Coordinator::starting_at(mode, 1)
    }

    /// A coordinator whose operation ids start at `first_op`. A node draws it at random at every
    /// start, so a reply to an operation of its previous incarnation, delayed in the network,
    /// cannot match a new operation (found by the scenario runner: a read at ONE returned
    /// another key's value after a restart).
    pub fn starting_at(mode: ConflictMode, first_op: OpId) -> Self {
        Coordinator {
            next_op: first_op.max(1),
            next_batch: 1,
            mode: Some(mode),
            ..Coordinator::default()
        }
    }

    /// Requests in flight (reads that already replied and only wait to repair do not count).
    pub fn in_flight(&self) -> usize {
        self.ops.len() - self.replied_reads + self.batches.len()
    }

    /// The earliest deadline, if any operation is in flight.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Starts a read; the node then sends `Read` to each replica (and feeds its own copy in).
    pub fn start_read(&mut self, spec: ReadSpec, reply_to: ReplyTo, deadline: Instant) -> OpId {
        assert!(
            spec.quorums.iter().all(|quorum| quorum.required >= 1
                && quorum.required <= quorum.nodes.len()
                && quorum.nodes.iter().all(|node| spec.replicas.contains(node))),
            "read needs 1..=N replies of its replicas"
        );
        let read = ReadOp {
            key: spec.key,
            replicas: spec.replicas,
            required: spec.quorums.iter().map(|quorum| quorum.required).sum(),
            quorums: spec.quorums,
            repair_before_reply: spec.repair_before_reply,
            replies: BTreeMap::new(),
            phase: ReadPhase::Collecting,
        };
        self.insert(OpKind::Read(read), reply_to, deadline)
    }

    /// Starts a write of an object already updated by this node; `context` covers the write.
    /// Acknowledgements count from `replicas` (every node sent the write that may count); it
    /// succeeds once every quorum of `quorums` is reached. `required` is the count errors
    /// report (the level's W, not the owners-to-be's).
    pub fn start_write(
        &mut self,
        replicas: Vec<NodeId>,
        quorums: Vec<Quorum>,
        required: usize,
        context: Context,
        reply_to: ReplyTo,
        deadline: Instant,
    ) -> OpId {
        assert!(!quorums.is_empty(), "a write needs a quorum");
        for quorum in &quorums {
            assert!(
                quorum.required >= 1 && quorum.required <= quorum.nodes.len(),
                "a quorum needs 1..=its nodes"
            );
        }
        let mut accepted = replicas;
        for quorum in &quorums {
            let extra: Vec<NodeId> =
                quorum.nodes.iter().copied().filter(|node| !accepted.contains(node)).collect();
            accepted.extend(extra);
        }
        let write = WriteOp {
            replicas: accepted,
            required,
            quorums,
            acks: BTreeSet::new(),
            duplicate_acks: 0,
            failures: BTreeMap::new(),
            context,
        };
        self.insert(OpKind::Write(write), reply_to, deadline)
    }

    /// Starts waiting for the reply to a write forwarded to another node.
    pub fn start_forward(&mut self, reply_to: ReplyTo, deadline: Instant) -> OpId {
        self.insert(OpKind::Forward, reply_to, deadline)
    }

    /// Starts an mget or mset batch of `slots_count` slots answering `request`.
    pub fn start_batch(&mut self, request: RequestId, slots_count: usize) -> u64 {
        assert!(slots_count > 0, "a batch has at least one key");
        let batch = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(
            batch,
            Batch { request, slots: vec![None; slots_count], remaining: slots_count },
        );
        batch
    }

    /// Records one slot of a batch. When the batch is complete, returns its request and the
    /// per-slot outcomes in order.
    pub fn fill_batch(
        &mut self,
        batch: u64,
        index: usize,
        outcome: Outcome,
    ) -> Option<(RequestId, Vec<Outcome>)> {
        let entry = self.batches.get_mut(&batch)?;
        let slot = entry.slots.get_mut(index)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(outcome);
        entry.remaining -= 1;
        if entry.remaining > 0 {
            return None;
        }
        let done = self.batches.remove(&batch)?;
        Some((done.request, done.slots.into_iter().flatten().collect()))
    }

    /// A replica's copy arrived (or this node's own). Duplicates and strangers are ignored.
    pub fn on_read_reply(&mut self, op_id: OpId, from: NodeId, object: Versioned) -> Vec<Action> {
        let mode = self.conflict_mode();
        let Some(op) = self.ops.get_mut(&op_id) else {
            return Vec::new();
        };
        let reply_to = op.reply_to;
        let OpKind::Read(read) = &mut op.kind else {
            return Vec::new();
        };
        if !read.replicas.contains(&from) || read.replies.contains_key(&from) {
            return Vec::new();
        }
        // Kept by value; read back through the map below (a clone per reply was a measurable
        // share of the read path).
        read.replies.insert(from, object);
        let object = &read.replies[&from];
        let mut actions = Vec::new();
        match &mut read.phase {
            ReadPhase::Collecting
                if quorums_reached(&read.quorums, |node| read.replies.contains_key(&node)) =>
            {
                let merged = if crate::planted!(ReadSkipsMerge) {
                    object.clone()
                } else {
                    read.replies.values().fold(Versioned::empty(), |mut acc, reply| {
                        acc.merge(reply, mode);
                        acc
                    })
                };
                let stale: Vec<NodeId> = read
                    .replies
                    .iter()
                    .filter(|(_, reply)| !reply.descends(&merged, mode))
                    .map(|(node, _)| *node)
                    .collect();
                if read.repair_before_reply && !stale.is_empty() {
                    actions.push(Action::RepairAndWait {
                        op: op_id,
                        key: read.key.clone(),
                        targets: stale.clone(),
                        object: repair_copy(&merged),
                    });
                    read.phase =
                        ReadPhase::Repairing { merged, waiting: stale.into_iter().collect() };
                } else {
                    if !stale.is_empty() {
                        actions.push(Action::RepairAsync {
                            key: read.key.clone(),
                            targets: stale,
                            object: repair_copy(&merged),
                        });
                    }
                    actions
                        .push(Action::Deliver { reply_to, outcome: Outcome::Read(merged.clone()) });
                    read.phase = ReadPhase::Replied { merged };
                    self.replied_reads += 1;
                }
            }
            ReadPhase::Collecting => {}
            ReadPhase::Repairing { merged, .. } | ReadPhase::Replied { merged } => {
                // A straggler: bring it up to date, nobody waits for it. BUGGIFY: the repair
                // is best effort and may be skipped, leaving the replica stale.
                if !object.descends(merged, mode) && !crate::buggify!() {
                    actions.push(Action::RepairAsync {
                        key: read.key.clone(),
                        targets: vec![from],
                        object: repair_copy(merged),
                    });
                }
            }
        }
        let finished = read.replies.len() == read.replicas.len()
            && matches!(read.phase, ReadPhase::Replied { .. });
        if finished {
            self.remove(op_id);
        }
        actions
    }

    /// A replica acknowledged a write (or a repair this read waits for), or reported failure.
    pub fn on_write_ack(
        &mut self,
        op_id: OpId,
        from: NodeId,
        result: Result<(), String>,
    ) -> Vec<Action> {
        let Some(op) = self.ops.get_mut(&op_id) else {
            return Vec::new();
        };
        let reply_to = op.reply_to;
        let was_replied = op.is_replied_read();
        let outcome = match &mut op.kind {
            OpKind::Write(write) => write_progress(write, from, result),
            OpKind::Read(read) => read_repair_progress(read, from, result),
            OpKind::Forward => None,
        };
        if !was_replied && op.is_replied_read() {
            self.replied_reads += 1;
        }
        let Some(outcome) = outcome else {
            return Vec::new();
        };
        let finished = match &op.kind {
            OpKind::Read(read) => read.replies.len() == read.replicas.len(),
            _ => true,
        };
        if finished {
            self.remove(op_id);
        }
        vec![Action::Deliver { reply_to, outcome }]
    }

    /// A forwarded write came back.
    pub fn on_forward_reply(
        &mut self,
        op_id: OpId,
        result: Result<ClientResponse, ClientError>,
    ) -> Vec<Action> {
        match self.ops.get(&op_id) {
            Some(Op { kind: OpKind::Forward, reply_to, .. }) => {
                let reply_to = *reply_to;
                self.remove(op_id);
                vec![Action::Deliver { reply_to, outcome: Outcome::Forwarded(result) }]
            }
            _ => Vec::new(),
        }
    }

    /// Fails every operation whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        while let Some(&(deadline, op_id)) = self.deadlines.first() {
            // BUGGIFY: a request may time out early, to drive the unknown-outcome paths.
            if deadline > now && !crate::buggify!() {
                break;
            }
            let Some(op) = self.remove(op_id) else {
                continue;
            };
            let error = match &op.kind {
                OpKind::Read(read) => match &read.phase {
                    ReadPhase::Collecting => Some(ClientError::Timeout {
                        required: read.required,
                        acked: read.replies.len(),
                    }),
                    ReadPhase::Repairing { waiting, .. } => Some(ClientError::Timeout {
                        required: read.required,
                        acked: read.replies.len() - waiting.len(),
                    }),
                    ReadPhase::Replied { .. } => None,
                },
                OpKind::Write(write) => {
                    Some(ClientError::Timeout { required: write.required, acked: write.acks.len() })
                }
                OpKind::Forward => Some(ClientError::Timeout { required: 1, acked: 0 }),
            };
            if let Some(error) = error {
                actions.push(Action::Deliver {
                    reply_to: op.reply_to,
                    outcome: Outcome::Failed(error),
                });
            }
        }
        actions
    }

    /// Asserts the invariants of the module doc.
    pub fn check_invariants(&self) {
        assert_eq!(self.ops.len(), self.deadlines.len(), "one deadline per operation");
        let replied = self.ops.values().filter(|op| op.is_replied_read()).count();
        assert_eq!(self.replied_reads, replied, "replied reads are counted");
        for (deadline, op_id) in &self.deadlines {
            let op = self.ops.get(op_id).expect("every deadline belongs to an operation");
            assert_eq!(op.deadline, *deadline);
            match &op.kind {
                OpKind::Read(read) => {
                    assert!(read.replies.keys().all(|node| read.replicas.contains(node)))
                }
                OpKind::Write(write) => {
                    assert!(write.acks.iter().all(|node| write.replicas.contains(node)));
                    assert!(
                        !write.reached_quorums(),
                        "a write that reached its quorums is delivered and removed"
                    );
                }
                OpKind::Forward => {}
            }
        }
        for batch in self.batches.values() {
            assert_eq!(batch.remaining, batch.slots.iter().filter(|slot| slot.is_none()).count());
        }
    }

    /// Whether a request may be forwarded here: only single-key writes are.
    pub fn accepts_forward(request: &ClientRequest) -> bool {
        matches!(
            request,
            ClientRequest::Put { .. } | ClientRequest::Set { .. } | ClientRequest::Delete { .. }
        )
    }

    fn conflict_mode(&self) -> ConflictMode {
        self.mode.unwrap_or(ConflictMode::DottedVersionVectors)
    }

    fn insert(&mut self, kind: OpKind, reply_to: ReplyTo, deadline: Instant) -> OpId {
        let op_id = self.next_op;
        self.next_op += 1;
        self.ops.insert(op_id, Op { deadline, reply_to, kind });
        self.deadlines.insert((deadline, op_id));
        op_id
    }

    fn remove(&mut self, op_id: OpId) -> Option<Op> {
        let op = self.ops.remove(&op_id)?;
        self.deadlines.remove(&(op.deadline, op_id));
        if op.is_replied_read() {
            self.replied_reads -= 1;
        }
        Some(op)
    }
}

/// The object a read repair sends to stale replicas: the merge of every reply.
fn repair_copy(merged: &Versioned) -> Versioned {
    let mut copy = merged.clone();
    if crate::planted!(ReadRepairDropsSibling) && copy.siblings.len() > 1 {
        copy.siblings.pop();
    }
    copy
}

fn write_progress(
    write: &mut WriteOp,
    from: NodeId,
    result: Result<(), String>,
) -> Option<Outcome> {
    if !write.replicas.contains(&from) {
        return None;
    }
    match result {
        Ok(()) => {
            if !write.acks.insert(from) && crate::planted!(QuorumCountsDuplicateReplies) {
                write.duplicate_acks += 1;
            }
            write.reached_quorums().then(|| Outcome::Written(write.context.clone()))
        }
        Err(reason) => {
            write.failures.insert(from, reason.clone());
            let impossible = write.quorums.iter().any(|quorum| {
                let possible =
                    quorum.nodes.iter().filter(|node| !write.failures.contains_key(node));
                possible.count() < quorum.required
            });
            impossible.then_some(Outcome::Failed(ClientError::Storage { reason }))
        }
    }
}

impl WriteOp {
    fn reached_quorums(&self) -> bool {
        self.quorums.iter().all(|quorum| {
            quorum.nodes.iter().filter(|node| self.acks.contains(node)).count()
                + self.duplicate_acks
                >= quorum.required
        })
    }
}

fn read_repair_progress(
    read: &mut ReadOp,
    from: NodeId,
    result: Result<(), String>,
) -> Option<Outcome> {
    let ReadPhase::Repairing { merged, waiting } = &mut read.phase else {
        return None;
    };
    if let Err(reason) = result {
        return Some(Outcome::Failed(ClientError::Storage { reason }));
    }
    if !waiting.remove(&from) || !waiting.is_empty() {
        return None;
    }
    let merged = std::mem::take(merged);
    read.phase = ReadPhase::Replied { merged: merged.clone() };
    Some(Outcome::Read(merged))
}

/// Shapes one read's merged object into what a client sees at wall time `wall`.
pub fn read_result(object: &Versioned, wall: crate::time::WallTime) -> ReadResult {
    ReadResult {
        values: object.live_values(wall),
        context: object.context(),
        expire_at: object.expire_at(wall),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    fn spec(required: usize, repair_before_reply: bool) -> ReadSpec {
        let replicas = vec![NodeId(1), NodeId(2), NodeId(3)];
        ReadSpec {
            key: Key::from_static(b"k"),
            quorums: vec![Quorum { nodes: replicas.clone(), required }],
            replicas,
            repair_before_reply,
        }
    }

    fn quorum(nodes: &[NodeId], required: usize) -> Quorum {
        Quorum { nodes: nodes.to_vec(), required }
    }

    #[test]
    fn a_write_during_a_move_needs_a_quorum_of_the_owners_before_and_after() {
        let mut coordinator = Coordinator::new(ConflictMode::DottedVersionVectors);
        let before = vec![NodeId(1), NodeId(2), NodeId(3)];
        let after = vec![NodeId(4), NodeId(1), NodeId(2)];
        let op = coordinator.start_write(
            before.clone(),
            vec![quorum(&before, 2), quorum(&after, 2)],
            2,
            Context::default(),
            ReplyTo::Client(7),
            Instant::ZERO + Duration::from_secs(1),
        );
        assert!(coordinator.on_write_ack(op, NodeId(3), Ok(())).is_empty());
        assert!(coordinator.on_write_ack(op, NodeId(4), Ok(())).is_empty());
        assert!(
            coordinator.on_write_ack(op, NodeId(5), Ok(())).is_empty(),
            "a stranger never counts"
        );
        // n3 and n4 make W of neither set alone; n1 is in both.
        let done = coordinator.on_write_ack(op, NodeId(1), Ok(()));
        assert!(matches!(&done[..], [Action::Deliver { outcome: Outcome::Written(_), .. }]));
    }

    #[test]
    fn duplicate_acks_from_one_replica_count_once() {
        let mut coordinator = Coordinator::new(ConflictMode::DottedVersionVectors);
        let replicas = vec![NodeId(1), NodeId(2), NodeId(3)];
        let op = coordinator.start_write(
            replicas.clone(),
            vec![quorum(&replicas, 2)],
            2,
            Context::default(),
            ReplyTo::Client(7),
            Instant::ZERO + Duration::from_secs(1),
        );
        assert!(coordinator.on_write_ack(op, NodeId(2), Ok(())).is_empty());
        assert!(
            coordinator.on_write_ack(op, NodeId(2), Ok(())).is_empty(),
            "a duplicate reached W"
        );
        assert!(coordinator.on_write_ack(op, NodeId(9), Ok(())).is_empty(), "a stranger counted");
        let actions = coordinator.on_write_ack(op, NodeId(3), Ok(()));
        assert!(matches!(
            actions.as_slice(),
            [Action::Deliver { reply_to: ReplyTo::Client(7), outcome: Outcome::Written(_) }]
        ));
        coordinator.check_invariants();
    }

    #[test]
    fn a_read_short_of_r_replies_times_out_at_its_deadline() {
        let mut coordinator = Coordinator::new(ConflictMode::DottedVersionVectors);
        let deadline = Instant::ZERO + Duration::from_secs(1);
        let op = coordinator.start_read(spec(2, true), ReplyTo::Client(1), deadline);
        assert!(coordinator.on_read_reply(op, NodeId(1), Versioned::empty()).is_empty());
        assert!(coordinator.expire(Instant::ZERO).is_empty());
        let actions = coordinator.expire(deadline);
        assert_eq!(
            actions,
            vec![Action::Deliver {
                reply_to: ReplyTo::Client(1),
                outcome: Outcome::Failed(ClientError::Timeout { required: 2, acked: 1 })
            }]
        );
        assert_eq!(coordinator.next_deadline(), None);
    }

    #[test]
    fn a_batch_completes_when_every_slot_is_filled_once() {
        let mut coordinator = Coordinator::new(ConflictMode::DottedVersionVectors);
        let batch = coordinator.start_batch(5, 2);
        assert!(coordinator.fill_batch(batch, 1, Outcome::Written(Context::default())).is_none());
        assert!(coordinator.fill_batch(batch, 1, Outcome::Written(Context::default())).is_none());
        let (request, outcomes) =
            coordinator.fill_batch(batch, 0, Outcome::Written(Context::default())).unwrap();
        assert_eq!((request, outcomes.len()), (5, 2));
        coordinator.check_invariants();
    }
}
