//! Membership changes as the node sees them: the ring, joins and decommissions with their streams, removals of dead nodes.
//!
//! Part of [`Node`](super::Node): an `impl` block of its own, split out of `node.rs` along
//! its seams; the state stays in `Node`.

use super::*;

impl<S: Storage> Node<S> {
    /// This node's membership status.
    pub fn status(&self) -> MemberStatus {
        self.membership.status()
    }

    /// Rebuilds the rings from gossip (the membership sub-machine does) and acts on a change
    /// of the current ring: counts it, and pulls the ranges inherited from removed nodes.
    pub(super) fn refresh_ring(&mut self) {
        if let RingChange::Changed { before, removed } = self.membership.refresh() {
            self.counters.ring_changes += 1;
            if !removed.is_empty() {
                self.rebuild_after_removal(&before, &removed);
            }
        }
    }

    /// Pulls the ranges this node inherits from removed nodes from every surviving replica of
    /// each (found by the simulator: a replica that inherited a dead node's range answered
    /// quorum reads with an empty copy until anti-entropy came round, so a read could miss a
    /// write acknowledged by the dead node and one survivor). Until every stream is in, the
    /// node answers no reads on those ranges; the union of the survivors' copies holds every
    /// write a quorum acknowledged.
    pub(super) fn rebuild_after_removal(&mut self, before: &Ring, removed: &[NodeId]) {
        let moves = before.moves_to(self.membership.ring(), self.config.keyspace.replicas_n);
        let mut by_source: BTreeMap<NodeId, Vec<Arc>> = BTreeMap::new();
        for range in &moves {
            let inherited = range.gained_by().contains(&self.id)
                && range.lost_by().iter().any(|node| removed.contains(node));
            if !inherited {
                continue;
            }
            let arc =
                Arc { start_exclusive: range.start_exclusive, end_inclusive: range.end_inclusive };
            for source in range.before.iter().filter(|node| !removed.contains(node)) {
                by_source.entry(*source).or_default().push(arc);
            }
        }
        for (source, arcs) in by_source {
            let stream = self.streams.next_id(self.id);
            self.streams.expect(stream, source, arcs.clone(), self.now);
            self.rebuilds.insert(stream, arcs.clone());
            self.counters.removal_rebuilds += 1;
            self.send(source, PeerMessage::StreamRequest { stream, arcs });
        }
    }

    /// Whether `key` lies on a range this node is still rebuilding after a removal.
    pub(super) fn is_inheriting(&self, key: &[u8]) -> bool {
        if self.rebuilds.is_empty() {
            return false;
        }
        let token = Ring::key_token(key);
        self.rebuilds.values().flatten().any(|arc| arc.contains(token))
    }

    /// Whether every other member (all but those left) has confirmed (through gossip) that it
    /// knows this node's current status. A moving node waits for this before it moves data:
    /// from then on every coordinator sends each write to the owners-to-be as well and waits
    /// for a quorum of them too, so the data moved plus the writes that follow are complete
    /// when ownership changes (found by the simulator: a node that streamed and flipped its
    /// status before the others had heard of the move left quorum reads missing acknowledged
    /// writes). A member believed down is waited for too: a wrongly suspected one still
    /// coordinates (found by the simulator with false suspicions), and a crashed one learns of
    /// the move before it coordinates again (a restarted node waits for gossip). As with
    /// Cassandra's consistent range movement, a member that is down for good must be removed
    /// before another node can join or leave.
    pub(super) fn move_is_known(&self) -> bool {
        self.membership.members().iter().all(|(peer, state)| {
            *peer == self.id
                || state.status == MemberStatus::Left
                || self.membership.knows_my_status(*peer)
        })
    }

    /// Moves a joining node along: once it has learned the ring and every member knows it is
    /// joining, it asks the replicas that give up each range for it; once every stream is
    /// durable, it becomes normal. Moves a leaving node along: once every member knows it is
    /// leaving, it streams its ranges to their next owners.
    pub(super) fn advance_membership(&mut self) {
        let waiting = match self.status() {
            MemberStatus::Joining => !self.join_planned,
            MemberStatus::Leaving => !self.leave_planned,
            _ => false,
        };
        if waiting {
            // Tell every member that has not confirmed the move yet, once a round, rather than
            // waiting for random gossip to reach each of them.
            let unaware: Vec<NodeId> = self
                .membership
                .members()
                .iter()
                .filter(|(peer, state)| {
                    **peer != self.id
                        && state.status != MemberStatus::Left
                        && !self.membership.knows_my_status(**peer)
                })
                .map(|(peer, _)| *peer)
                .collect();
            for peer in unaware {
                self.membership.announce_to(peer);
            }
            self.send_gossip();
        }
        if self.status() == MemberStatus::Leaving && !self.leave_planned && self.move_is_known() {
            self.plan_leave();
        }
        if self.status() != MemberStatus::Joining {
            return;
        }
        if !self.join_planned {
            if self.membership.rounds() < self.config.join_settle_rounds
                || self.membership.ring().members_count() == 0
                || !self.move_is_known()
            {
                return;
            }
            self.plan_join();
            return;
        }
        let durable = self.replica.acks_released()
            && self.storage.durable_seq() >= self.replica.last_write_seq();
        if self.streams.incoming_count() == 0 && durable {
            self.record_status(b"joined");
            self.membership.set_status(MemberStatus::Normal);
            self.refresh_ring();
        }
    }

    pub(super) fn plan_join(&mut self) {
        let mut future = self.membership.ring().clone();
        future.add(self.id, self.config.weight);
        let moves = self.membership.ring().moves_to(&future, self.config.keyspace.replicas_n);
        let mut by_source: BTreeMap<NodeId, Vec<Arc>> = BTreeMap::new();
        for range in moves.iter().filter(|range| range.gained_by().contains(&self.id)) {
            // The replica that gives the range up holds exactly the copy this node replaces, so
            // the owners after the move hold what the owners before held; another replica's
            // copy may lack writes that replica did not acknowledge.
            // When that replica is believed down the plan waits (found by the simulator: a
            // falsely suspected loser made the joiner stream from another replica); only a range
            // that nobody gives up (a cluster smaller than N) comes from any replica up.
            let losers = range.lost_by();
            let candidates = if losers.is_empty() { range.before.clone() } else { losers };
            let Some(source) = candidates.into_iter().find(|node| !self.is_down(*node)) else {
                return;
            };
            let arc =
                Arc { start_exclusive: range.start_exclusive, end_inclusive: range.end_inclusive };
            by_source.entry(source).or_default().push(arc);
        }
        for (source, arcs) in by_source {
            let stream = self.streams.next_id(self.id);
            self.streams.expect(stream, source, arcs.clone(), self.now);
            self.send(source, PeerMessage::StreamRequest { stream, arcs });
        }
        self.join_planned = true;
    }

    /// How long a stream chunk waits for its ack, and a requested stream for a chunk, before it
    /// is sent or asked for again.
    pub(super) fn stream_retry(&self) -> Duration {
        self.config.request_timeout * 2
    }

    /// Asks again for every incoming stream that has been silent for the retry interval: the
    /// request or a chunk was lost, the source had not heard of this node yet and dropped the
    /// request, or the source restarted and forgot the stream.
    pub(super) fn ask_again_for_stalled_streams(&mut self, now: Instant) {
        for stalled in self.streams.stalled(now, self.stream_retry()) {
            let source_left = self
                .membership
                .members()
                .get(&stalled.from)
                .is_none_or(|state| state.status == MemberStatus::Left);
            if source_left {
                // The source left (another move completed meanwhile; found by the simulator:
                // a joiner waited forever for a node that had been decommissioned). A joiner
                // plans again from the current ring; a rebuild drops the departed source, whose
                // ranges it handed to their next owners.
                self.streams.abandon(stalled.from);
                self.rebuilds.remove(&stalled.stream);
                if self.status() == MemberStatus::Joining {
                    self.join_planned = false;
                }
                continue;
            }
            self.counters.stream_requests_repeated += 1;
            let request = PeerMessage::StreamRequest { stream: stalled.stream, arcs: stalled.arcs };
            self.send(stalled.from, request);
        }
    }

    /// Starts leaving: marks the node leaving; once every member knows, `plan_leave` streams
    /// every range it loses to its next owners, and `pump_streams` marks it left when all are
    /// acknowledged.
    pub(super) fn decommission(&mut self) {
        if self.status() != MemberStatus::Normal {
            return;
        }
        self.membership.set_status(MemberStatus::Leaving);
        self.leave_planned = false;
        self.refresh_ring();
    }

    pub(super) fn plan_leave(&mut self) {
        self.leave_planned = true;
        let mut future = self.membership.ring().clone();
        future.remove(self.id);
        let mut by_target: BTreeMap<NodeId, Vec<Arc>> = BTreeMap::new();
        for range in self.membership.ring().moves_to(&future, self.config.keyspace.replicas_n) {
            if !range.lost_by().contains(&self.id) {
                continue;
            }
            let arc =
                Arc { start_exclusive: range.start_exclusive, end_inclusive: range.end_inclusive };
            for target in range.gained_by() {
                by_target.entry(target).or_default().push(arc);
            }
        }
        for (target, arcs) in by_target {
            let stream = self.streams.next_id(self.id);
            self.streams.send(stream, target, arcs);
        }
    }

    /// Sends the next chunk of every outgoing stream that may send; a leaving node whose streams
    /// are all acknowledged marks itself left.
    pub(super) fn pump_streams(&mut self) {
        // Runs after every input; nearly always nothing is streaming.
        if self.streams.outgoing_count() == 0 && self.status() != MemberStatus::Leaving {
            return;
        }
        for due in self.streams.due(self.now, self.stream_retry()) {
            let Ok((objects, next_cursor)) = self.stream_chunk(&due.arcs, due.cursor.as_deref())
            else {
                self.counters.storage_errors += 1;
                continue;
            };
            self.counters.stream_keys_sent += objects.len() as u64;
            let last = next_cursor.is_none();
            let seq = self.streams.sent(due.stream, due.cursor, next_cursor, self.now);
            self.send(due.to, PeerMessage::StreamChunk { stream: due.stream, seq, objects, last });
        }
        if self.status() == MemberStatus::Leaving
            && self.leave_planned
            && self.streams.outgoing_count() == 0
        {
            self.record_status(b"left");
            self.membership.set_status(MemberStatus::Left);
            self.refresh_ring();
        }
    }

    pub(super) fn record_status(&mut self, status: &'static [u8]) {
        match self.storage.write(
            Space::Meta,
            Bytes::from_static(META_STATUS_KEY),
            Some(Bytes::from_static(status)),
        ) {
            Ok(seq) => self.replica.wrote(seq),
            Err(_) => self.counters.storage_errors += 1,
        }
    }

    /// The next chunk of keys on `arcs` after `cursor`, and where to go on (`None`: done).
    pub(super) fn stream_chunk(
        &mut self,
        arcs: &[Arc],
        cursor: Option<&[u8]>,
    ) -> Result<StreamChunk, StorageError> {
        let page = self.storage.scan(Space::Data, cursor, SCAN_PAGE_KEYS)?;
        let exhausted = page.len() < SCAN_PAGE_KEYS;
        let mut objects = Vec::new();
        let mut last_seen = None;
        for (stored, bytes) in page {
            last_seen = Some(stored.clone());
            let Some((token, _)) = split_data_key(&stored) else { continue };
            if arcs.iter().any(|arc| arc.contains(token)) {
                objects.push((stored.slice(DATA_KEY_TOKEN_BYTES..), decode_object(&bytes)?));
                if objects.len() == self.config.stream_chunk_keys_max {
                    return Ok((objects, last_seen));
                }
            }
        }
        Ok((objects, if exhausted { None } else { last_seen }))
    }

    pub(super) fn receive_chunk(
        &mut self,
        from: NodeId,
        stream: StreamId,
        seq: ChunkSeq,
        objects: Vec<(Bytes, Versioned)>,
        last: bool,
    ) {
        self.streams.progressed(stream, self.now);
        for (key, object) in objects.into_iter().take(self.config.stream_chunk_keys_max) {
            if self.replica.merge(&mut self.storage, &mut self.clock, &key, &object).is_err() {
                self.counters.storage_errors += 1;
            }
        }
        let durable_at = self.replica.written_so_far(&self.storage);
        self.replica.hold_ack(durable_at, AckTarget::Stream { to: from, stream, seq, last });
    }
}
