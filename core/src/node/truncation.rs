//! FLUSHALL's two phases as the node carries them out: asking members for their clocks, truncating the local store, and answering the coordinator (the bookkeeping is `crate::flush::Flushes`).
//!
//! Part of [`Node`](super::Node): an `impl` block of its own, split out of `node.rs` along
//! its seams; the state stays in `Node`.

use super::*;

impl<S: Storage> Node<S> {
    /// Starts a flush: every member of the ring truncates, this node included. Refused at once
    /// when a member is believed down, since it would keep (and later serve) the old data.
    pub(super) fn start_flush(&mut self, now: Instant, reply_to: ReplyTo) {
        // Joining members hold streamed data too; only those gone for good are left out.
        let members: BTreeSet<NodeId> = self
            .membership
            .members()
            .iter()
            .filter(|(_, state)| state.status != MemberStatus::Left)
            .map(|(node, _)| *node)
            .chain([self.id])
            .collect();
        let alive = members.iter().filter(|node| !self.is_down(**node)).count();
        if alive < members.len() {
            let error = ClientError::Unavailable { required: members.len(), alive };
            return self.deliver(now, reply_to, Outcome::Failed(error));
        }
        let deadline = now + self.config.request_timeout;
        let flush = self.flushes.start(reply_to, members.clone(), deadline);
        let own = self.id;
        let clock = self.clock.tick(self.wall);
        if crate::planted!(FlushSkipsClockRound) {
            // Every other member "answers" with the coordinator's own reading.
            for member in members.iter().copied() {
                self.flush_clock_read(flush, member, clock);
            }
            return;
        }
        for member in members.iter().copied().filter(|member| *member != own) {
            self.send(member, PeerMessage::FlushClock { flush });
        }
        self.flush_clock_read(flush, own, clock);
    }

    /// Records a member's clock reading; once all are in, sends the truncation point to every
    /// member and applies it here.
    pub(super) fn flush_clock_read(&mut self, flush: u64, from: NodeId, clock: HlcTimestamp) {
        let Some((at, members)) = self.flushes.on_clock(flush, from, clock) else { return };
        let own = self.id;
        for member in members.into_iter().filter(|member| *member != own) {
            self.send(member, PeerMessage::Truncate { flush, at });
        }
        self.apply_truncate(own, flush, at);
    }

    /// Truncates this node's store for flush `flush` at `at`, and queues the acknowledgement
    /// to `coordinator` for when the removals are durable.
    pub(super) fn apply_truncate(&mut self, coordinator: NodeId, flush: u64, at: HlcTimestamp) {
        self.clock.observe(at);
        match self.truncate_store(at) {
            Ok(seq) => self.replica.hold_ack(seq, AckTarget::Truncated { to: coordinator, flush }),
            Err(error) => self.truncate_acked(coordinator, flush, Err(error.0)),
        }
    }

    /// Sends (or, when this node coordinates, records) a truncation's acknowledgement.
    pub(super) fn truncate_acked(
        &mut self,
        coordinator: NodeId,
        flush: u64,
        result: Result<(), String>,
    ) {
        if coordinator != self.id {
            return self.send(coordinator, PeerMessage::TruncateAck { flush, result });
        }
        if let Some((reply_to, result)) = self.flushes.on_ack(flush, self.id, result) {
            self.flush_finished(reply_to, result);
        }
    }

    pub(super) fn flush_finished(&mut self, reply_to: ReplyTo, result: Result<(), ClientError>) {
        let outcome = match result {
            Ok(()) => Outcome::Forwarded(Ok(ClientResponse::Flushed)),
            Err(error) => Outcome::Failed(error),
        };
        self.deliver(self.now, reply_to, outcome);
    }

    /// Truncates the local store at `at` (see `Replica::truncate`); returns the write to wait
    /// for before acknowledging.
    pub(super) fn truncate_store(&mut self, at: HlcTimestamp) -> Result<WriteSeq, StorageError> {
        let (seq, applied) = self.replica.truncate(&mut self.storage, at)?;
        if applied {
            self.counters.flushes_applied += 1;
        }
        Ok(seq)
    }
}
