//! Per-key Paxos: the sub-machine behind compare-and-set, counters and serial reads.
//!
//! Owns: the proposer side of every serial operation this node coordinates ([`Proposer`]), and
//! the acceptor rules a replica applies to its stored per-key state ([`AcceptorState`]). The
//! node composes them: it routes `Paxos*` peer messages here, persists acceptor state in its
//! storage (in the write-ahead log, so it survives a crash) and sends an acceptor's answer only
//! once that state is durable.
//!
//! A round, as Cassandra's lightweight transactions run it:
//! 1. **Prepare**: the proposer picks a ballot above everything it has seen (its hybrid logical
//!    clock, then its node id and generation, so ballots are unique and a node whose clock is
//!    behind catches up as soon as a refusal shows it a higher ballot) and asks every replica of
//!    the key to promise it. Each promise carries the replica's accepted-but-maybe-uncommitted
//!    proposal, the ballot it last committed, and its copy of the key: the read of phase 1.
//! 2. **In-progress repair**: if a quorum's promises show a proposal accepted at a ballot above
//!    every commit they report, it may have been chosen; the proposer re-proposes it under its
//!    own ballot, commits it, and starts over with a fresh ballot.
//! 3. **Evaluate**: the merge of the quorum's copies is the current value; [`crate::cas`]
//!    computes the operation's result. A read or a failed condition needs no write: the quorum
//!    of promises already orders it after every chosen value.
//! 4. **Propose / accept**, then **commit** at a quorum; the commit is a merge of the proposed
//!    object into each replica's copy, and the client's reply waits for a quorum of commits.
//!
//! Operations of this node on one key do not duel: while a round runs on a key, the operations
//! that arrive for it wait, and run together as the key's next round once it has replied. That
//! round evaluates them in arrival order, each over the value the ones before it left, proposes
//! the last value as one object, and replies to each with its own result; all of them are
//! chosen or none, so an unknown outcome is unknown for the whole batch. A round that starts
//! over before it has proposed anything takes the waiting operations into its next attempt.
//!
//! A refused prepare, or a prepare that hears too few promises in time, backs off for a random
//! pause (growing with the attempt) and starts over with a higher ballot. A proposal is retried
//! only when every replica refused it: one that some replica may have accepted can still be
//! chosen later (by another proposer's repair), so re-running the operation could apply it
//! twice. Such an operation starts over only to look for its own proposal among the in-progress
//! ones (and then completes it and replies with its result); if it is not there, the outcome is
//! unknown and the client is told so (Cassandra's rule for partially accepted proposals). A
//! proposal accepted by a quorum is chosen: if its commits are slow, the round replies anyway,
//! since every later prepare quorum sees it and completes it.
//!
//! Inputs: [`Proposer::start`], the `on_*` handlers for replica answers, and
//! [`Proposer::handle_timeout`]. Outputs: [`ProposerOutput`]s from [`Proposer::poll_output`]
//! (messages for replicas, this node included, and replies). Timers: each round's request
//! deadline, its phase deadline, and its back-off; [`Proposer::poll_timeout`] gives the earliest.
//!
//! Invariants: a round's ballot only grows; a round in its propose or commit phase has gathered a
//! quorum of promises for its ballot; a round replies exactly once to each of its operations,
//! then is forgotten; at most one round runs per key.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cas::{evaluate, CasOp, CasReply, CasTtl};
use crate::error::ClientError;
use crate::hlc::{HlcTimestamp, HybridClock};
use crate::message::{OpId, PeerMessage, RequestId};
use crate::time::{Duration, Instant, WallTime};
use crate::types::{ConflictMode, Key, NodeId};
use crate::version::{Actor, NewWrite, Versioned};

/// A Paxos ballot: totally ordered, unique per proposer start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// The proposer's hybrid-logical-clock reading.
    pub timestamp: HlcTimestamp,
    /// The proposer.
    pub node: NodeId,
    /// The proposer's gossip generation, so a restarted node whose clock went back never
    /// repeats a ballot of its earlier life.
    pub generation: u64,
}

impl Ballot {
    /// Below every real ballot.
    pub const ZERO: Ballot = Ballot { timestamp: HlcTimestamp(0), node: NodeId(0), generation: 0 };
}

/// A replica's answer to a prepare it granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    /// The proposal it accepted last and has not seen committed, if any.
    pub accepted: Option<(Ballot, Versioned)>,
    /// The ballot of the last commit it applied.
    pub committed: Ballot,
    /// Its copy of the key (`None`: it has none).
    pub object: Option<Versioned>,
}

/// A replica's refusal of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The ballot it promised or committed, above the proposal's.
    pub higher: Ballot,
    /// Whether it may have accepted this very proposal earlier: the refusal then answers a
    /// re-delivered copy and says nothing of whether the proposal was accepted.
    pub accepted_before: bool,
}

/// What a replica remembers of a key's Paxos: stored beside the data, durable before answering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptorState {
    /// The highest ballot promised.
    pub promised: Ballot,
    /// The last proposal accepted and not yet known committed.
    pub accepted: Option<(Ballot, Versioned)>,
    /// The ballot of the last commit applied.
    pub committed: Ballot,
}

impl Default for AcceptorState {
    fn default() -> Self {
        AcceptorState { promised: Ballot::ZERO, accepted: None, committed: Ballot::ZERO }
    }
}

impl AcceptorState {
    /// Decodes stored state; `None` when damaged.
    pub fn decode(bytes: &[u8]) -> Option<AcceptorState> {
        postcard::from_bytes(bytes).ok()
    }

    /// Encodes for storage.
    pub fn encode(&self) -> Option<Vec<u8>> {
        postcard::to_allocvec(self).ok()
    }

    /// Phase 1: promises `ballot` if it is above every ballot promised; else returns the
    /// promised one.
    pub fn prepare(&mut self, ballot: Ballot) -> Result<(), Ballot> {
        if ballot == self.promised && ballot > Ballot::ZERO {
            // A re-delivered copy of the prepare it granted: granting it again promises nothing
            // new, where a refusal would send its proposer into a needless back-off.
            return Ok(());
        }
        if ballot <= self.promised && !crate::planted!(PaxosPromiseStaleBallot) {
            return Err(self.promised);
        }
        self.promised = ballot;
        Ok(())
    }

    /// Phase 2: accepts `object` at `ballot` unless a higher ballot was promised, or a commit at
    /// or above it was applied (the proposal would be of an older instance).
    pub fn accept(&mut self, ballot: Ballot, object: Versioned) -> Result<(), Refusal> {
        if self.accepted.as_ref().is_some_and(|(accepted, _)| *accepted == ballot) {
            // A re-delivered copy of the proposal it accepted (a ballot carries one proposal).
            return Ok(());
        }
        let refused = ballot < self.promised || ballot <= self.committed;
        if refused && !crate::planted!(PaxosAcceptIgnoresPromise) {
            // The accepted ballot only grows until a commit at or above it clears it, so this
            // replica can have accepted `ballot` before only if it holds a higher accepted
            // ballot now, or committed at or above it.
            let accepted_before = self.committed >= ballot
                || self.accepted.as_ref().is_some_and(|(accepted, _)| *accepted > ballot);
            return Err(Refusal { higher: self.promised.max(self.committed), accepted_before });
        }
        self.promised = self.promised.max(ballot);
        self.accepted = Some((ballot, object));
        Ok(())
    }

    /// Records a commit at `ballot` (the object itself is merged into the data by the node).
    /// The accepted proposal it covers is dropped: its value now lives in the data.
    pub fn commit(&mut self, ballot: Ballot) {
        self.committed = self.committed.max(ballot);
        self.promised = self.promised.max(ballot);
        if self.accepted.as_ref().is_some_and(|(accepted, _)| *accepted <= self.committed) {
            self.accepted = None;
        }
    }

    /// What a granted prepare answers.
    pub fn promise(&self, object: Option<Versioned>) -> Promise {
        Promise { accepted: self.accepted.clone(), committed: self.committed, object }
    }
}

/// Proposer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaxosConfig {
    /// How long a phase waits for a quorum of answers before the round starts over.
    pub phase_timeout: Duration,
    /// The longest first back-off after a refusal; later ones grow up to 8 times this.
    pub backoff_max: Duration,
    /// Most rounds (prepares) one operation runs before it gives up.
    pub attempts_max: u32,
}

impl Default for PaxosConfig {
    fn default() -> Self {
        PaxosConfig {
            phase_timeout: Duration::from_millis(250),
            backoff_max: Duration::from_millis(20),
            attempts_max: 12,
        }
    }
}

/// What the proposer needs from its node to mint ballots and versions.
#[derive(Debug)]
pub struct ProposerEnv<'a> {
    /// This node's actor, for the dots of proposals.
    pub actor: Actor,
    /// The highest dot counter the actor has issued (raised by each proposal).
    pub dots_issued_max: &'a mut u64,
    /// The node's hybrid logical clock.
    pub clock: &'a mut HybridClock,
    /// The node's wall clock.
    pub wall: WallTime,
    /// The keyspace's conflict mode.
    pub mode: ConflictMode,
    /// The largest value a proposal may hold.
    pub value_bytes_max: usize,
}

/// Something the proposer wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposerOutput {
    /// Send a message to a replica (possibly this node).
    Send {
        /// The replica.
        to: NodeId,
        /// The message.
        message: PeerMessage,
    },
    /// Reply to the client.
    Reply {
        /// The driver's id of the request.
        request: RequestId,
        /// The outcome.
        result: Result<CasReply, ClientError>,
    },
}

/// What a round replies once its commit is in: one result per operation of its batch, in order.
type Reply = Vec<Result<CasReply, ClientError>>;

/// An operation waiting for the round running on its key to finish.
#[derive(Debug)]
struct Queued {
    request: RequestId,
    op: CasOp,
    replicas: Vec<NodeId>,
    required: usize,
    deadline: Instant,
}

/// Which phase a round is in.
#[derive(Debug, Clone)]
enum Phase {
    Preparing {
        promises: BTreeMap<NodeId, Promise>,
    },
    /// `reply: None` is the repair of an in-progress proposal; the round starts over after it.
    Proposing {
        object: Versioned,
        accepts: BTreeSet<NodeId>,
        refusals: BTreeSet<NodeId>,
        /// Some refusal came from a replica that may have accepted the proposal before.
        refused_after_accepting: bool,
        reply: Option<Reply>,
    },
    Committing {
        acks: BTreeSet<NodeId>,
        reply: Option<Reply>,
    },
    Waiting {
        retry_at: Instant,
    },
}

/// One round of serial operations on a key in progress: a batch evaluated in turn over the
/// current value, chosen (or not) as one proposal.
#[derive(Debug, Clone)]
struct Round {
    /// The batch, in the order its operations take effect.
    ops: Vec<(RequestId, CasOp)>,
    key: Key,
    replicas: Vec<NodeId>,
    required: usize,
    deadline: Instant,
    ballot: Ballot,
    attempts: u32,
    phase: Phase,
    phase_deadline: Instant,
    /// The ballot of each proposal made for this operation, with the reply it stands for.
    proposals: Vec<(Ballot, Reply)>,
    /// Whether a proposal of this operation may have been accepted somewhere and not seen
    /// chosen: a failure is then unknown.
    uncertain: bool,
    /// Most promises or acceptances gathered in one phase, for the error message.
    answers_max: usize,
}

/// The proposer: every serial operation this node coordinates.
#[derive(Debug)]
pub struct Proposer {
    id: NodeId,
    generation: u64,
    config: PaxosConfig,
    rng: ChaCha8Rng,
    rounds: BTreeMap<OpId, Round>,
    /// Every key with a round running, and the operations that arrived for it since, oldest
    /// first: they run together as the key's next round once this one has replied, instead of
    /// duelling with it for the key (where at most one wins each ballot and a loser that was
    /// accepted somewhere ends unknown).
    key_queues: BTreeMap<Key, Vec<Queued>>,
    /// Operations started and not yet replied to, running or queued: asked at every client
    /// request's admission, so kept as a count rather than summed over rounds and queues.
    ops_in_flight: usize,
    next_op: OpId,
    outbox: VecDeque<ProposerOutput>,
}

impl Proposer {
    /// A proposer for node `id` in its `generation`, drawing back-offs from `seed`; operation
    /// ids start at `op_base` (random per start, so a late answer to a previous life's round
    /// does not match a new one).
    pub fn new(id: NodeId, generation: u64, config: PaxosConfig, seed: u64, op_base: OpId) -> Self {
        Proposer {
            id,
            generation,
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            rounds: BTreeMap::new(),
            key_queues: BTreeMap::new(),
            ops_in_flight: 0,
            next_op: op_base,
            outbox: VecDeque::new(),
        }
    }

    // ---- getters ----

    /// Serial operations in progress.
    pub fn in_flight(&self) -> usize {
        self.ops_in_flight
    }

    /// The earliest instant at which [`Proposer::handle_timeout`] has work.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.rounds
            .values()
            .map(|round| match round.phase {
                Phase::Waiting { retry_at } => retry_at.min(round.deadline),
                _ => round.phase_deadline.min(round.deadline),
            })
            .chain(self.key_queues.values().flatten().map(|queued| queued.deadline))
            .min()
    }

    /// The next output, until `None`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<ProposerOutput> {
        self.outbox.pop_front()
    }

    // ---- inputs ----

    /// Starts a serial operation on `key` among `replicas`, of which `required` must answer each
    /// phase, to reply to `request` by `deadline`. While a round of this node's runs on the key,
    /// the operation waits to run in the key's next round, with the others that arrive meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        now: Instant,
        env: &mut ProposerEnv<'_>,
        request: RequestId,
        key: Key,
        op: CasOp,
        replicas: Vec<NodeId>,
        required: usize,
        deadline: Instant,
    ) {
        assert!(required >= 1 && required <= replicas.len(), "a quorum is part of the replicas");
        self.ops_in_flight += 1;
        if let Some(queue) = self.key_queues.get_mut(&key) {
            queue.push(Queued { request, op, replicas, required, deadline });
            return;
        }
        self.key_queues.insert(key.clone(), Vec::new());
        self.start_round(now, env, key, vec![(request, op)], replicas, required, deadline);
    }

    /// Starts a round of `ops` on `key`, whose running round (if any) has just replied; its
    /// first prepare takes in the operations queued on the key.
    #[allow(clippy::too_many_arguments)]
    fn start_round(
        &mut self,
        now: Instant,
        env: &mut ProposerEnv<'_>,
        key: Key,
        ops: Vec<(RequestId, CasOp)>,
        replicas: Vec<NodeId>,
        required: usize,
        deadline: Instant,
    ) {
        let id = self.next_op;
        self.next_op = self.next_op.wrapping_add(1);
        let round = Round {
            ops,
            key,
            replicas,
            required,
            deadline,
            ballot: Ballot::ZERO,
            attempts: 0,
            phase: Phase::Waiting { retry_at: now },
            phase_deadline: now,
            proposals: Vec::new(),
            uncertain: false,
            answers_max: 0,
        };
        self.rounds.insert(id, round);
        self.prepare(id, now, env);
    }

    /// A replica's answer to a prepare.
    pub fn on_promise(
        &mut self,
        now: Instant,
        env: &mut ProposerEnv<'_>,
        from: NodeId,
        op: OpId,
        ballot: Ballot,
        result: Result<Promise, Ballot>,
    ) {
        let Some(round) = self.rounds.get_mut(&op) else { return };
        if round.ballot != ballot || !round.replicas.contains(&from) {
            return;
        }
        let Phase::Preparing { promises } = &mut round.phase else { return };
        let promise = match result {
            Ok(promise) => promise,
            Err(higher) => {
                env.clock.observe(higher.timestamp);
                return self.back_off(op, now);
            }
        };
        promises.insert(from, promise);
        round.answers_max = round.answers_max.max(promises.len());
        if promises.len() >= round.required {
            self.promised(op, now, env);
        }
    }

    /// A replica's answer to a proposal.
    pub fn on_accepted(
        &mut self,
        now: Instant,
        env: &mut ProposerEnv<'_>,
        from: NodeId,
        op: OpId,
        ballot: Ballot,
        result: Result<(), Refusal>,
    ) {
        let Some(round) = self.rounds.get_mut(&op) else { return };
        if round.ballot != ballot || !round.replicas.contains(&from) {
            return;
        }
        let Phase::Proposing { object, accepts, refusals, refused_after_accepting, reply } =
            &mut round.phase
        else {
            return;
        };
        if let Err(refusal) = result {
            env.clock.observe(refusal.higher.timestamp);
            refusals.insert(from);
            *refused_after_accepting |= refusal.accepted_before;
            let accepted_nowhere = accepts.is_empty() && !*refused_after_accepting;
            if accepted_nowhere && refusals.len() == round.replicas.len() {
                // Accepted nowhere, so it can never be chosen: the operation may run again, but
                // only when this is a fresh proposal. A re-proposal of one of its own in-progress
                // proposals refused everywhere says nothing of the original, which was accepted
                // somewhere and may have been completed by another proposer's repair.
                let fresh = round.proposals.last().is_some_and(|(own, _)| *own == round.ballot);
                if fresh {
                    round.uncertain = false;
                }
                return self.back_off(op, now);
            }
            if round.replicas.len() - refusals.len() < round.required && !accepted_nowhere {
                // Not chosen at this ballot, but accepted somewhere: look for it.
                return self.back_off(op, now);
            }
            // Refused by a majority and accepted nowhere so far: wait for the other answers
            // (until the phase deadline), since a refusal by every replica makes the operation
            // certain again, where backing off now would leave its outcome unknown.
            return;
        }
        accepts.insert(from);
        if round.replicas.len() - refusals.len() < round.required {
            return self.back_off(op, now);
        }
        let required = if crate::planted!(PaxosCommitBeforeQuorum) { 1 } else { round.required };
        if accepts.len() < required {
            return;
        }
        // Chosen: commit at every replica.
        let object = std::mem::take(object);
        let reply = reply.take();
        round.phase = Phase::Committing { acks: BTreeSet::new(), reply };
        round.phase_deadline = now + self.config.phase_timeout;
        for to in round.replicas.clone() {
            let message = PeerMessage::PaxosCommit {
                op,
                key: round.key.clone(),
                ballot,
                object: object.clone(),
            };
            self.outbox.push_back(ProposerOutput::Send { to, message });
        }
    }

    /// A replica durably applied a commit.
    pub fn on_committed(
        &mut self,
        now: Instant,
        env: &mut ProposerEnv<'_>,
        from: NodeId,
        op: OpId,
        ballot: Ballot,
    ) {
        let Some(round) = self.rounds.get_mut(&op) else { return };
        if round.ballot != ballot || !round.replicas.contains(&from) {
            return;
        }
        let Phase::Committing { acks, reply } = &mut round.phase else { return };
        acks.insert(from);
        if acks.len() < round.required {
            return;
        }
        match reply.take() {
            Some(reply) => self.finish(op, now, env, Ok(reply)),
            // The in-progress proposal is committed; now run this operation's own round.
            None => self.prepare(op, now, env),
        }
    }

    /// Fires due deadlines and back-offs. Safe to call early or twice.
    pub fn handle_timeout(&mut self, now: Instant, env: &mut ProposerEnv<'_>) {
        // Out of time before its round: it never ran, so nothing was applied.
        let expired: Vec<Queued> = self
            .key_queues
            .values_mut()
            .flat_map(|queue| queue.extract_if(.., |queued| now >= queued.deadline))
            .collect();
        for queued in expired {
            let error =
                ClientError::NoPaxosQuorum { required: queued.required, promised: 0, attempts: 0 };
            self.reply(queued.request, Err(error));
        }
        let due: Vec<OpId> = self
            .rounds
            .iter()
            .filter(|(_, round)| {
                now >= round.deadline
                    || match round.phase {
                        Phase::Waiting { retry_at } => now >= retry_at,
                        _ => now >= round.phase_deadline,
                    }
            })
            .map(|(op, _)| *op)
            .collect();
        for op in due {
            let Some(round) = self.rounds.get(&op) else { continue };
            if now >= round.deadline {
                let error = round.give_up_error();
                self.finish(op, now, env, Err(error));
            } else if matches!(round.phase, Phase::Waiting { .. }) {
                self.prepare(op, now, env);
            } else if let Phase::Committing { reply: Some(reply), .. } = &round.phase {
                // Chosen at a quorum: every later prepare completes it, so it is decided.
                let reply = reply.clone();
                self.finish(op, now, env, Ok(reply));
            } else {
                self.back_off(op, now);
            }
        }
    }

    // ---- helpers ----

    /// Starts a new round of `op` with a fresh ballot.
    fn prepare(&mut self, op: OpId, now: Instant, env: &mut ProposerEnv<'_>) {
        let Some(round) = self.rounds.get_mut(&op) else { return };
        if round.attempts >= self.config.attempts_max {
            let error = round.give_up_error();
            return self.finish(op, now, env, Err(error));
        }
        round.attempts += 1;
        if round.proposals.is_empty() {
            // Nothing proposed yet (a retry after a refused or silent prepare): the operations
            // waiting on the key join this attempt rather than wait out its back-offs.
            if let Some(queue) = self.key_queues.get_mut(&round.key) {
                for queued in queue.drain(..) {
                    round.ops.push((queued.request, queued.op));
                    round.deadline = round.deadline.min(queued.deadline);
                }
            }
        }
        let ballot = Ballot {
            timestamp: env.clock.tick(env.wall),
            node: self.id,
            generation: self.generation,
        };
        debug_assert!(ballot > round.ballot, "a round's ballot only grows");
        round.ballot = ballot;
        round.phase = Phase::Preparing { promises: BTreeMap::new() };
        round.phase_deadline = now + self.config.phase_timeout;
        for to in round.replicas.clone() {
            let message = PeerMessage::PaxosPrepare { op, key: round.key.clone(), ballot };
            self.outbox.push_back(ProposerOutput::Send { to, message });
        }
    }

    /// A quorum promised: repair an in-progress proposal, or evaluate and propose.
    fn promised(&mut self, op: OpId, now: Instant, env: &mut ProposerEnv<'_>) {
        let Some(round) = self.rounds.get_mut(&op) else { return };
        let Phase::Preparing { promises } = &round.phase else { return };
        let committed_max =
            promises.values().map(|promise| promise.committed).max().unwrap_or(Ballot::ZERO);
        let in_progress = promises
            .values()
            .filter_map(|promise| promise.accepted.as_ref())
            .filter(|(accepted, _)| *accepted > committed_max)
            .max_by_key(|(accepted, _)| *accepted)
            .cloned()
            .filter(|_| !crate::planted!(PaxosInProgressIgnored));
        let mut current = Versioned::empty();
        for object in promises.values().filter_map(|promise| promise.object.as_ref()) {
            current.merge(object, env.mode);
        }
        if let Some((accepted, object)) = in_progress {
            // Complete it first. When it is one of this operation's own proposals, its result is
            // this operation's: reply with it once it is committed.
            let own = round.proposals.iter().find(|(ballot, _)| *ballot == accepted);
            let reply = own.map(|(_, reply)| reply.clone());
            return self.propose(op, now, object, reply);
        }
        if round.uncertain {
            // An earlier proposal may have been accepted, and it is not in progress here: it
            // was either lost or chosen and committed. Running the operation again could apply
            // it twice, so its outcome is unknown.
            let error = round.give_up_error();
            return self.finish(op, now, env, Err(error));
        }
        let live = current.live_values(env.wall);
        // Each operation of the batch sees the value the ones before it left; one that fails
        // (an error, or a condition that does not hold) changes nothing for the next.
        let mut value = live.last().cloned();
        let mut expire_at = current.expire_at(env.wall);
        let mut first_write = None;
        let mut replies = Vec::with_capacity(round.ops.len());
        for (at, (_, operation)) in round.ops.iter().enumerate() {
            match evaluate(operation, value.as_ref(), env.value_bytes_max) {
                Ok(evaluated) => {
                    if let Some(write) = evaluated.write {
                        first_write.get_or_insert(at);
                        value = write.value;
                        expire_at = match write.ttl {
                            CasTtl::Clear => None,
                            CasTtl::Keep => expire_at,
                            CasTtl::Set(ttl) => Some(WallTime::from_millis(
                                env.wall.as_millis().saturating_add(ttl.as_millis()),
                            )),
                        };
                    }
                    replies.push(Ok(evaluated.reply));
                }
                Err(error) => replies.push(Err(error)),
            }
        }
        let Some(first_write) = first_write else {
            // Reads, or conditions that failed: the quorum of promises orders them after every
            // chosen value, and they change nothing.
            return self.finish(op, now, env, Ok(replies));
        };
        // Those before the first write are settled the same way: they answer now, and the
        // round goes on for the rest.
        let settled: Vec<_> =
            round.ops.drain(..first_write).zip(replies.drain(..first_write)).collect();
        for ((request, _), result) in settled {
            self.reply(request, result);
        }
        let Some(round) = self.rounds.get_mut(&op) else { return };
        let mut object = current.clone();
        let timestamp = env.clock.tick(env.wall);
        let dot = object.update_above(
            &current.clock,
            NewWrite { value, timestamp, expire_at },
            env.actor,
            env.mode,
            *env.dots_issued_max,
        );
        *env.dots_issued_max = dot.counter;
        round.proposals.push((round.ballot, replies.clone()));
        round.uncertain = true;
        self.propose(op, now, object, Some(replies));
    }

    fn propose(&mut self, op: OpId, now: Instant, object: Versioned, reply: Option<Reply>) {
        let Some(round) = self.rounds.get_mut(&op) else { return };
        let ballot = round.ballot;
        for to in round.replicas.clone() {
            let message = PeerMessage::PaxosPropose {
                op,
                key: round.key.clone(),
                ballot,
                object: object.clone(),
            };
            self.outbox.push_back(ProposerOutput::Send { to, message });
        }
        round.phase = Phase::Proposing {
            object,
            accepts: BTreeSet::new(),
            refusals: BTreeSet::new(),
            refused_after_accepting: false,
            reply,
        };
        round.phase_deadline = now + self.config.phase_timeout;
    }

    /// Pauses a contended or silent round for a random, growing while, then starts over.
    fn back_off(&mut self, op: OpId, now: Instant) {
        let Some(round) = self.rounds.get_mut(&op) else { return };
        if let Phase::Proposing { accepts, .. } = &round.phase {
            round.answers_max = round.answers_max.max(accepts.len());
        }
        let ceiling_ms = self.config.backoff_max.as_millis().max(1) << round.attempts.min(3);
        let pause_ms = self.rng.random_range(1..=ceiling_ms);
        round.phase = Phase::Waiting { retry_at: now + Duration::from_millis(pause_ms) };
    }

    /// Replies to every operation of the round (`Err`: the same error to each) and starts the
    /// key's next round with the operations queued behind it.
    fn finish(
        &mut self,
        op: OpId,
        now: Instant,
        env: &mut ProposerEnv<'_>,
        result: Result<Reply, ClientError>,
    ) {
        let Some(round) = self.rounds.remove(&op) else { return };
        let replies = match result {
            Ok(replies) => replies,
            Err(error) => vec![Err(error); round.ops.len()],
        };
        debug_assert_eq!(replies.len(), round.ops.len(), "one reply per operation");
        for ((request, _), result) in round.ops.into_iter().zip(replies) {
            self.reply(request, result);
        }
        // The latest arrival's view of the replicas is the freshest; the round's first prepare
        // takes in every queued operation (and the earliest deadline among them).
        let next = self.key_queues.get(&round.key).and_then(|queue| queue.last());
        match next.map(|last| (last.replicas.clone(), last.required, last.deadline)) {
            Some((replicas, required, deadline)) => {
                self.start_round(now, env, round.key, Vec::new(), replicas, required, deadline)
            }
            None => {
                self.key_queues.remove(&round.key);
            }
        }
    }

    /// Hands the client its operation's result.
    fn reply(&mut self, request: RequestId, result: Result<CasReply, ClientError>) {
        self.ops_in_flight -= 1;
        self.outbox.push_back(ProposerOutput::Reply { request, result });
    }

    /// Asserts the invariants of the module doc.
    pub fn check_invariants(&self) {
        let keys: BTreeSet<&Key> = self.rounds.values().map(|round| &round.key).collect();
        assert_eq!(keys.len(), self.rounds.len(), "at most one round runs per key");
        assert!(
            self.key_queues.keys().all(|key| keys.contains(key)),
            "operations wait only behind a running round"
        );
        let running: usize = self.rounds.values().map(|round| round.ops.len()).sum();
        let queued: usize = self.key_queues.values().map(Vec::len).sum();
        assert_eq!(self.ops_in_flight, running + queued, "every operation started is counted");
        for round in self.rounds.values() {
            assert!(!round.ops.is_empty(), "a round carries at least one operation");
            assert!(self.key_queues.contains_key(&round.key), "a running round's key has a queue");
            assert!(round.required >= 1 && round.required <= round.replicas.len());
            assert!(round.attempts <= self.config.attempts_max);
            if !matches!(round.phase, Phase::Waiting { .. }) {
                assert!(round.ballot > Ballot::ZERO, "a round in a phase has a ballot");
            }
        }
    }
}

impl Round {
    /// The error of a round that ran out of time or attempts: unknown once a proposal may have
    /// been accepted, else a clean failure.
    fn give_up_error(&self) -> ClientError {
        if self.uncertain {
            ClientError::Timeout { required: self.required, acked: self.answers_max }
        } else {
            ClientError::NoPaxosQuorum {
                required: self.required,
                promised: self.answers_max,
                attempts: self.attempts,
            }
        }
    }
}
