//! After every handler: acknowledgements released once durable, the tombstone sweep, and the invariants checked under debug assertions.
//!
//! Part of [`Node`](super::Node): an `impl` block of its own, split out of `node.rs` along
//! its seams; the state stays in `Node`.

use super::*;

impl<S: Storage> Node<S> {
    pub(super) fn after_handler(&mut self) {
        self.pump_streams();
        self.release_durable_acks();
        while self.release_paxos_replies() {}
        let waiting = self.replica.is_waiting()
            || self.ready_at_seq.is_some()
            || self.rebuilt_at_seq.is_some();
        if waiting && !self.sync_requested && self.storage_failure.is_none() {
            self.sync_requested = true;
            self.outbox.push_back(Output::SyncStorage);
        }
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
    }

    pub(super) fn release_durable_acks(&mut self) {
        let durable = self.storage.durable_seq();
        if self.ready_at_seq.is_some_and(|seq| seq <= durable) {
            self.ready_at_seq = None;
        }
        if self.rebuilt_at_seq.is_some_and(|seq| seq <= durable) {
            self.rebuilt_at_seq = None;
        }
        if self.storage_failure.is_some() {
            return;
        }
        let acknowledgeable =
            if self.config.acknowledge_before_sync || crate::planted!(AckBeforeSync) {
                WriteSeq::MAX
            } else {
                durable
            };
        while let Some(target) = self.replica.next_ack(acknowledgeable) {
            match target {
                AckTarget::Local(op) => {
                    let actions = self.coordinator.on_write_ack(op, self.id, Ok(()));
                    self.run_actions(Instant::ZERO, actions);
                }
                AckTarget::Remote { to, op } => {
                    self.send(to, PeerMessage::WriteAck { op, result: Ok(()) })
                }
                AckTarget::Replayed { to, replay } => {
                    self.send(to, PeerMessage::HintReplayAck { replay })
                }
                AckTarget::Truncated { to, flush } => self.truncate_acked(to, flush, Ok(())),
                AckTarget::Stream { to, stream, seq, last } => {
                    if last && self.streams.expects(stream, to) {
                        self.streams.received_all(stream);
                        self.rebuilds.remove(&stream);
                    }
                    self.send(to, PeerMessage::StreamAck { stream, seq });
                }
            }
        }
    }

    /// Drops objects that hold nothing readable and have held nothing for the grace period.
    pub(super) fn sweep_tombstones(&mut self) {
        let grace_ms = self.config.keyspace.tombstone_grace.as_millis();
        let Ok(entries) = self.storage.scan(
            Space::Data,
            self.sweep_cursor.as_deref(),
            self.config.sweep_keys_max,
        ) else {
            return;
        };
        self.sweep_cursor = if entries.len() < self.config.sweep_keys_max {
            None
        } else {
            entries.last().map(|(key, _)| key.clone())
        };
        for (stored, bytes) in entries {
            let Some((_, key)) = split_data_key(&stored) else { continue };
            let purgeable = decode_object(&bytes).is_ok_and(|object| {
                object.is_purgeable(self.wall, grace_ms) && self.repaired_since_death(key, &object)
            });
            self.replica.forget(key);
            if purgeable && self.storage.write(Space::Data, stored, None).is_ok() {
                self.counters.tombstones_purged += 1;
            }
        }
    }

    /// Whether every other replica of the key exchanged with this node since the object died, so
    /// that each holds its tombstone and purging it cannot let an older value back. Without
    /// anti-entropy only the grace period guards.
    pub(super) fn repaired_since_death(&self, key: &[u8], object: &Versioned) -> bool {
        if self.config.anti_entropy_interval == Duration::ZERO {
            return true;
        }
        if self.refill.is_some() {
            // A store being refilled may not hold every tombstone yet, and the exchanges that
            // refill it read it blank: they prove nothing about what its peers hold. Found by
            // the sliced-repair scenario (seed 65): a rebuilt node purged a tombstone while
            // still refilling, and a replica that had missed the delete served the old value.
            return false;
        }
        let Some(died) = object.dead_since(self.wall) else { return false };
        let group =
            group_of(self.membership.ring(), Ring::key_token(key), self.config.keyspace.replicas_n);
        self.anti_entropy.repaired_since(&group, self.id, died)
    }

    pub(super) fn check_invariants(&self) {
        self.coordinator.check_invariants();
        self.forwards.check_invariants();
        self.membership.check_invariants();
        self.streams.check_invariants();
        self.replays.check_invariants();
        self.paxos.check_invariants();
        self.replica.check_invariants();
        assert_eq!(self.actor.node, self.id);
    }
}
