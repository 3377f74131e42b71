//! Peer messages: dispatch, forwarded requests, and merging incoming objects (with the flush filters).
//!
//! Part of [`Node`](super::Node): an `impl` block of its own, split out of `node.rs` along
//! its seams; the state stays in `Node`.

use super::*;

impl<S: Storage> Node<S> {
    pub(super) fn handle_peer(&mut self, now: Instant, from: NodeId, message: PeerMessage) {
        // Gossip is how a stranger (a joining node) introduces itself; everything else must come
        // from a node gossip knows.
        let known = self.membership.members().contains_key(&from);
        if from == self.id || (!known && !matches!(message, PeerMessage::Gossip(_))) {
            self.counters.peer_messages_dropped += 1;
            return;
        }
        match message {
            PeerMessage::Read { .. }
                if self.refill.is_some() && !crate::planted!(RebuildServesReads) =>
            {
                // Silence, as from a failed replica: the coordinator needs R others.
                self.counters.rebuild_reads_refused += 1;
            }
            PeerMessage::Read { op, key } => {
                if self.is_inheriting(&key) {
                    // Silence: the coordinator makes its quorum of complete replicas.
                    return self.counters.removal_reads_refused += 1;
                }
                let object = match self.replica.load(&mut self.storage, &key) {
                    Ok(object) => object,
                    Err(_) => return self.counters.peer_messages_dropped += 1,
                };
                self.send(from, PeerMessage::ReadReply { op, object });
            }
            PeerMessage::ReadReply { op, object } => {
                let object = object.unwrap_or_default();
                let object = if self.replica.predates_flush(&object) {
                    self.replica.without_flushed(object)
                } else {
                    object
                };
                let actions = self.coordinator.on_read_reply(op, from, object);
                self.run_actions(now, actions);
            }
            PeerMessage::Write { op, object, .. } if self.replica.write_predates_flush(&object) => {
                // Refused, not dropped: a coordinator whose clock lags the flush must not
                // count this replica as holding the write (its client sees an error, retries).
                let reason = "refused: the write is stamped before this node's latest flush";
                self.send(from, PeerMessage::WriteAck { op, result: Err(reason.into()) });
            }
            PeerMessage::Write { op, key, object } => {
                match self.replica.merge(&mut self.storage, &mut self.clock, &key, &object) {
                    Ok(seq) => self.replica.hold_ack(seq, AckTarget::Remote { to: from, op }),
                    Err(error) => {
                        self.send(from, PeerMessage::WriteAck { op, result: Err(error.0) })
                    }
                }
            }
            PeerMessage::WriteAck { op, result } => {
                let actions = self.coordinator.on_write_ack(op, from, result);
                self.run_actions(now, actions);
            }
            PeerMessage::Repair { key, object } => {
                if self.replica.merge(&mut self.storage, &mut self.clock, &key, &object).is_err() {
                    self.counters.peer_messages_dropped += 1;
                }
            }
            PeerMessage::Hint { op, owner, key, object } => match self
                .store_hint(owner, &key, object)
            {
                Ok(seq) => self.replica.hold_ack(seq, AckTarget::Remote { to: from, op }),
                Err(error) => self.send(from, PeerMessage::WriteAck { op, result: Err(error.0) }),
            },
            PeerMessage::HintReplay { replay, key, object } => {
                match self.replica.merge(&mut self.storage, &mut self.clock, &key, &object) {
                    Ok(seq) => self.replica.hold_ack(seq, AckTarget::Replayed { to: from, replay }),
                    Err(_) => self.counters.peer_messages_dropped += 1,
                }
            }
            PeerMessage::HintReplayAck { replay } => self.hint_delivered(replay),
            PeerMessage::AeTree { session, group, low, high, root, leaves } => {
                self.answer_tree(from, session, group, (low, high), (root, leaves))
            }
            PeerMessage::AeNarrow { session, high } => self.narrow_tree(from, session, high),
            PeerMessage::AeDigests { session, leaves, digests, truncated } => {
                self.reconcile(from, session, leaves, digests, truncated)
            }
            PeerMessage::AeFetch { keys } => self.send_objects(from, keys),
            PeerMessage::AeObjects { objects } => {
                let mut merged = BTreeSet::new();
                for (key, object) in objects.into_iter().take(self.config.anti_entropy_keys_max) {
                    if self
                        .replica
                        .merge(&mut self.storage, &mut self.clock, &key, &object)
                        .is_err()
                    {
                        self.counters.peer_messages_dropped += 1;
                    } else {
                        merged.insert(key);
                    }
                }
                self.refill_arrived(from, &merged);
            }
            PeerMessage::ScanRequest { forward, low, high, count } => {
                let result =
                    self.scan_tokens(low, high, count.min(self.config.limits.batch_keys_max));
                self.send(from, PeerMessage::ForwardReply { forward, result });
            }
            PeerMessage::StreamRequest { stream, arcs } => {
                if stream.0 == from && arcs.len() <= STREAM_ARCS_MAX {
                    self.streams.send(stream, from, arcs);
                } else {
                    self.counters.peer_messages_dropped += 1;
                }
            }
            PeerMessage::StreamChunk { stream, seq, objects, last } => {
                self.receive_chunk(from, stream, seq, objects, last)
            }
            PeerMessage::StreamAck { stream, seq } => {
                if self.streams.acked(stream, from, seq) {
                    self.counters.streams_completed += 1;
                }
            }
            PeerMessage::Gossip(message) => {
                // An Ack answers our digests with every state newer than ours.
                if matches!(message, GossipMessage::Ack { .. }) {
                    self.membership_synced = true;
                }
                let advanced = self.membership.on_gossip(now, from, message);
                self.store_generation();
                if advanced {
                    self.refresh_ring();
                }
                self.send_gossip();
            }
            message @ (PeerMessage::PaxosPrepare { .. }
            | PeerMessage::PaxosPropose { .. }
            | PeerMessage::PaxosCommit { .. }) => self.answer_paxos(now, from, message),
            message @ (PeerMessage::PaxosPromise { .. }
            | PeerMessage::PaxosAccepted { .. }
            | PeerMessage::PaxosCommitted { .. }) => {
                self.paxos_answered(now, from, message);
                self.pump_paxos(now);
            }
            PeerMessage::Forward { forward, request } => {
                self.handle_forward(now, from, forward, request)
            }
            PeerMessage::ForwardReply { forward, result } => {
                let actions = self.coordinator.on_forward_reply(forward, result);
                self.run_actions(now, actions);
            }
            PeerMessage::FlushClock { flush } => {
                let clock = self.clock.tick(self.wall);
                self.send(from, PeerMessage::FlushClockReply { flush, clock });
            }
            PeerMessage::FlushClockReply { flush, clock } => {
                self.flush_clock_read(flush, from, clock)
            }
            PeerMessage::Truncate { flush, at } => self.apply_truncate(from, flush, at),
            PeerMessage::TruncateAck { flush, result } => {
                if let Some((reply_to, result)) = self.flushes.on_ack(flush, from, result) {
                    self.flush_finished(reply_to, result);
                }
            }
        }
    }

    pub(super) fn handle_forward(
        &mut self,
        now: Instant,
        from: NodeId,
        forward: OpId,
        request: ClientRequest,
    ) {
        let reply_to = ReplyTo::Forward { to: from, forward };
        if !Coordinator::accepts_forward(&request) {
            self.counters.peer_messages_dropped += 1;
            return;
        }
        match self.forwards.receive(now, from, forward, &request) {
            ForwardCheck::New => {}
            ForwardCheck::InProgress => return self.counters.duplicate_forwards += 1,
            ForwardCheck::Done(result) => {
                self.counters.duplicate_forwards += 1;
                return self.send(from, PeerMessage::ForwardReply { forward, result });
            }
        }
        if let Err(error) = self.admit(&request) {
            return self.deliver(now, reply_to, Outcome::Failed(error));
        }
        let (write, consistency) = match request {
            ClientRequest::Put { key, value, context, ttl, consistency } => {
                (KeyWrite { key, value: Some(value), context, ttl, overwrite: false }, consistency)
            }
            ClientRequest::Set { key, value, ttl, consistency } => (
                KeyWrite { key, value: Some(value), context: None, ttl, overwrite: true },
                consistency,
            ),
            ClientRequest::Delete { key, context, consistency } => {
                (KeyWrite { key, value: None, context, ttl: None, overwrite: false }, consistency)
            }
            _ => return,
        };
        // A forwarded write is coordinated here even if this node's ring disagrees, so a request
        // is forwarded at most once and can never loop.
        match self.write_placement(&write.key, consistency) {
            Ok(placement) => self.coordinate_write(now, write, placement, reply_to),
            Err(error) => self.deliver(now, reply_to, Outcome::Failed(error)),
        }
    }
}
