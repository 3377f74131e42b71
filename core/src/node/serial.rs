//! Serial operations: driving the Paxos proposer (`crate::paxos`), answering as an acceptor, and the acceptor state kept in the meta space behind a write-through cache.
//!
//! Part of [`Node`](super::Node): an `impl` block of its own, split out of `node.rs` along
//! its seams; the state stays in `Node`.

use super::*;

impl<S: Storage> Node<S> {
    /// Starts a serial operation: a Paxos round among the key's replicas, a quorum per phase.
    pub(super) fn start_cas(&mut self, now: Instant, request: RequestId, key: Key, op: CasOp) {
        // SERIAL is a majority of every replica (all datacenters): one quorum over them.
        let (replicas, required) = match self.read_quorums(&key, Consistency::Quorum) {
            Ok((replicas, quorums)) => (replicas, quorums[0].required),
            Err(error) => return self.reply(request, Err(error)),
        };
        let deadline = now + self.config.request_timeout;
        let mut env = proposer_env(
            self.actor,
            &mut self.dots_issued_max,
            &mut self.clock,
            self.wall,
            &self.config,
        );
        self.paxos.start(now, &mut env, request, key, op, replicas, required, deadline);
        self.pump_paxos(now);
    }

    /// Carries out what the proposer asked for: messages (to this node's own acceptor too) and
    /// replies.
    pub(super) fn pump_paxos(&mut self, now: Instant) {
        while let Some(output) = self.paxos.poll_output() {
            match output {
                ProposerOutput::Send { to, message } if to == self.id => {
                    self.answer_paxos(now, to, message)
                }
                ProposerOutput::Send { to, message } => self.send(to, message),
                ProposerOutput::Reply { request, result } => {
                    self.reply(request, result.map(ClientResponse::Cas))
                }
            }
        }
    }

    /// The acceptor: applies a prepare, proposal or commit to the key's stored Paxos state and
    /// answers once that state is durable (a refusal changes nothing and is answered at once).
    pub(super) fn answer_paxos(&mut self, now: Instant, from: NodeId, message: PeerMessage) {
        let key = match &message {
            PeerMessage::PaxosPrepare { key, .. }
            | PeerMessage::PaxosPropose { key, .. }
            | PeerMessage::PaxosCommit { key, .. } => key.clone(),
            _ => return,
        };
        if key.is_empty() || key.len() > self.config.limits.key_bytes_max {
            return self.counters.peer_messages_dropped += 1;
        }
        // A blank store being refilled, or a range inherited from a removed node, holds neither
        // the data nor the promises of the replica it replaces: silence, as from a failed one.
        if self.refill.is_some() || self.is_inheriting(&key) {
            return self.counters.rebuild_reads_refused += 1;
        }
        let Ok(mut state) = self.replica.load_acceptor(&mut self.storage, &key) else {
            return self.counters.storage_errors += 1;
        };
        self.counters.paxos_messages_answered += 1;
        match message {
            PeerMessage::PaxosPrepare { op, ballot, .. } => {
                self.clock.observe(ballot.timestamp);
                if let Err(promised) = state.prepare(ballot) {
                    self.counters.paxos_refusals += 1;
                    let result = Err(promised);
                    return self.paxos_answer(
                        now,
                        from,
                        PeerMessage::PaxosPromise { op, ballot, result },
                    );
                }
                let Ok(object) = self.replica.load_for_round(&mut self.storage, &key) else {
                    return self.counters.storage_errors += 1;
                };
                let result = Ok(state.promise(object));
                self.store_acceptor(
                    &key,
                    &state,
                    from,
                    PeerMessage::PaxosPromise { op, ballot, result },
                );
            }
            PeerMessage::PaxosPropose { op, ballot, object, .. } => {
                if is_malformed(&object) {
                    return self.counters.peer_messages_dropped += 1;
                }
                if let Err(refusal) = state.accept(ballot, object) {
                    self.counters.paxos_refusals += 1;
                    let result = Err(refusal);
                    return self.paxos_answer(
                        now,
                        from,
                        PeerMessage::PaxosAccepted { op, ballot, result },
                    );
                }
                let answer = PeerMessage::PaxosAccepted { op, ballot, result: Ok(()) };
                self.store_acceptor(&key, &state, from, answer);
            }
            PeerMessage::PaxosCommit { op, ballot, object, .. } => {
                if self.replica.merge(&mut self.storage, &mut self.clock, &key, &object).is_err() {
                    return self.counters.peer_messages_dropped += 1;
                }
                state.commit(ballot);
                self.store_acceptor(&key, &state, from, PeerMessage::PaxosCommitted { op, ballot });
            }
            _ => {}
        }
    }

    /// Hands an acceptor's answer to its proposer: this node's, or a peer's.
    pub(super) fn paxos_answer(&mut self, now: Instant, to: NodeId, message: PeerMessage) {
        if to == self.id {
            self.paxos_answered(now, to, message);
        } else {
            self.send(to, message);
        }
    }

    /// The proposer takes an acceptor's answer.
    pub(super) fn paxos_answered(&mut self, now: Instant, from: NodeId, message: PeerMessage) {
        let mut env = proposer_env(
            self.actor,
            &mut self.dots_issued_max,
            &mut self.clock,
            self.wall,
            &self.config,
        );
        match message {
            PeerMessage::PaxosPromise { op, ballot, result } => {
                self.paxos.on_promise(now, &mut env, from, op, ballot, result)
            }
            PeerMessage::PaxosAccepted { op, ballot, result } => {
                self.paxos.on_accepted(now, &mut env, from, op, ballot, result)
            }
            PeerMessage::PaxosCommitted { op, ballot } => {
                self.paxos.on_committed(now, &mut env, from, op, ballot)
            }
            _ => {}
        }
    }

    /// Writes the key's acceptor state through the replica, which holds `answer` until it is
    /// durable.
    pub(super) fn store_acceptor(
        &mut self,
        key: &[u8],
        state: &AcceptorState,
        to: NodeId,
        answer: PeerMessage,
    ) {
        if self.replica.store_acceptor(&mut self.storage, key, state, to, answer).is_err() {
            self.counters.storage_errors += 1;
        }
    }

    /// Sends (or takes) the acceptor answers whose state is durable; returns whether any was for
    /// this node's own proposer (which may then have written more).
    pub(super) fn release_paxos_replies(&mut self) -> bool {
        if self.storage_failure.is_some() {
            return false;
        }
        let acknowledgeable =
            if self.config.acknowledge_before_sync || crate::planted!(AckBeforeSync) {
                WriteSeq::MAX
            } else {
                self.storage.durable_seq()
            };
        let mut local = false;
        while let Some((to, answer)) = self.replica.next_answer(acknowledgeable) {
            local |= to == self.id;
            self.paxos_answer(self.now, to, answer);
        }
        if local {
            self.pump_paxos(self.now);
        }
        local
    }
}
