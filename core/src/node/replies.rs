//! Local reads and writes of objects, carrying out the coordinator's actions, and replies to clients and peers.
//!
//! Part of [`Node`](super::Node): an `impl` block of its own, split out of `node.rs` along
//! its seams; the state stays in `Node`.

use super::*;

impl<S: Storage> Node<S> {
    pub(super) fn send_gossip(&mut self) {
        while let Some((to, message)) = self.membership.poll_message() {
            self.send(to, PeerMessage::Gossip(message));
        }
    }

    /// Whether `node` is believed down: its connection is lost (driver) or the failure detector
    /// suspects it.
    pub(super) fn is_down(&self, node: NodeId) -> bool {
        node != self.id
            && (self.down.contains(&node)
                || !self.membership.is_alive(node, self.now)
                || self.held_down.get(&node).is_some_and(|until| self.now < *until))
    }

    pub(super) fn run_actions(&mut self, now: Instant, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Deliver { reply_to, outcome } => self.deliver(now, reply_to, outcome),
                Action::RepairAndWait { op, key, targets, object } => {
                    for target in targets {
                        self.counters.read_repairs_sent += 1;
                        if target == self.id {
                            match self.replica.merge(
                                &mut self.storage,
                                &mut self.clock,
                                &key,
                                &object,
                            ) {
                                Ok(seq) => self.replica.hold_ack(seq, AckTarget::Local(op)),
                                Err(error) => {
                                    let actions =
                                        self.coordinator.on_write_ack(op, self.id, Err(error.0));
                                    self.run_actions(now, actions);
                                }
                            }
                        } else {
                            self.send(
                                target,
                                PeerMessage::Write { op, key: key.clone(), object: object.clone() },
                            );
                        }
                    }
                }
                Action::RepairAsync { key, targets, object } => {
                    for target in targets {
                        self.counters.read_repairs_sent += 1;
                        if target == self.id {
                            // Best effort: a failed local repair is retried by the next read.
                            let _ = self.replica.merge(
                                &mut self.storage,
                                &mut self.clock,
                                &key,
                                &object,
                            );
                        } else {
                            self.send(
                                target,
                                PeerMessage::Repair { key: key.clone(), object: object.clone() },
                            );
                        }
                    }
                }
            }
        }
    }

    pub(super) fn deliver(&mut self, now: Instant, reply_to: ReplyTo, outcome: Outcome) {
        match reply_to {
            ReplyTo::Client(request) => {
                let result = self.client_result(outcome);
                self.reply(request, result);
            }
            ReplyTo::Forward { to, forward } => {
                let result = self.client_result(outcome);
                self.forwards.replied(to, forward, &result);
                self.send(to, PeerMessage::ForwardReply { forward, result });
            }
            ReplyTo::Batch { batch, index } => {
                if let Some((request, outcomes)) =
                    self.coordinator.fill_batch(batch, index, outcome)
                {
                    let result = self.batch_result(outcomes);
                    self.reply(request, result);
                }
            }
        }
        let _ = now;
    }

    pub(super) fn client_result(&self, outcome: Outcome) -> Result<ClientResponse, ClientError> {
        match outcome {
            Outcome::Read(object) => Ok(ClientResponse::Read(read_result(&object, self.wall))),
            Outcome::Written(context) => Ok(ClientResponse::Written { context }),
            Outcome::Forwarded(result) => result,
            Outcome::Failed(error) => Err(error),
        }
    }

    pub(super) fn batch_result(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Result<ClientResponse, ClientError> {
        let mut reads = Vec::with_capacity(outcomes.len());
        let mut writes_only = true;
        for outcome in outcomes {
            match self.client_result(outcome)? {
                ClientResponse::Read(read) => {
                    writes_only = false;
                    reads.push(read);
                }
                ClientResponse::Written { .. } => {}
                other => return Ok(other),
            }
        }
        Ok(if writes_only { ClientResponse::WrittenMany } else { ClientResponse::ReadMany(reads) })
    }

    pub(super) fn reply(
        &mut self,
        request: RequestId,
        result: Result<ClientResponse, ClientError>,
    ) {
        if result.is_err() {
            self.counters.client_errors += 1;
        }
        self.outbox.push_back(Output::Reply { request, result });
    }

    pub(super) fn send(&mut self, to: NodeId, message: PeerMessage) {
        debug_assert_ne!(to, self.id, "a node never sends to itself");
        self.outbox.push_back(Output::Send { to, message });
    }
}
