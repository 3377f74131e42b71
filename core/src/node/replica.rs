//! The replica role: applying objects to this node's copy, and answering only once durable.
//!
//! Owns: the decoded-object and acceptor-state caches over the node's storage, the latest
//! flush's truncation point (the filter every arriving object passes), the sequence number of
//! the node's latest write, and the acknowledgements and Paxos answers waiting for the writes
//! they report to be durable.
//!
//! Inputs: objects to merge into the local copy or write over it ([`Replica::merge`],
//! [`Replica::write`]), reads ([`Replica::load`], [`Replica::load_for_round`]), acceptor states
//! ([`Replica::load_acceptor`], [`Replica::store_acceptor`]), hints for replicas believed down
//! ([`Replica::store_hint`], [`Replica::drop_hint`], [`Replica::hint_delivered`]), a flush's
//! truncation ([`Replica::truncate`]), acknowledgements to hold ([`Replica::hold_ack`]), and the
//! node's other writes ([`Replica::wrote`]). The storage is the node's (streaming, anti-entropy
//! and scans read it too) and is passed into each call; the replica keeps no other node state.
//!
//! Outputs: the sequence number each write must reach before it is acknowledged, and the
//! acknowledgements and answers that [`Replica::next_ack`] and [`Replica::next_answer`] release,
//! in write order, once storage is durable up to them. The node carries them out (a peer
//! message, or its own coordinator's or proposer's input), one at a time, since carrying one
//! out may hold another.
//!
//! Invariants ([`Replica::check_invariants`]): held acknowledgements and answers are each in
//! write order, so releasing a prefix releases exactly the durable ones.

use super::*;

/// Where an acknowledgement goes once the write it covers is durable.
#[derive(Debug, Clone, Copy)]
pub(super) enum AckTarget {
    /// This node's coordinator, for its own replica's write of operation `op`.
    Local(OpId),
    /// A peer coordinating operation `op`.
    Remote { to: NodeId, op: OpId },
    /// A truncation this node made for flush `flush`, coordinated by `to` (maybe itself).
    Truncated { to: NodeId, flush: u64 },
    /// The node that replayed hint `replay` to this one.
    Replayed { to: NodeId, replay: u64 },
    /// The sender of stream chunk `seq` (`last`: the stream's final one).
    Stream { to: NodeId, stream: StreamId, seq: ChunkSeq, last: bool },
}

/// This node's replica role over its storage (see the module's documentation).
#[derive(Debug)]
pub(super) struct Replica {
    key_bytes_max: usize,
    conflict_mode: ConflictMode,
    /// Decoded copies of recently used stored objects (see [`ObjectCache`]).
    objects: ObjectCache,
    acceptors: AcceptorCache,
    /// The latest flush this node has applied: siblings written at or before it are dropped.
    truncated_at: Option<HlcTimestamp>,
    last_write_seq: WriteSeq,
    acks: VecDeque<(WriteSeq, AckTarget)>,
    /// Acceptor answers waiting for the state they report to be durable: (write, to, answer);
    /// `to` may be this node, whose proposer then takes the answer.
    answers: VecDeque<(WriteSeq, NodeId, PeerMessage)>,
}

impl Replica {
    /// A replica whose storage holds writes up to `last_write_seq` and last applied a flush at
    /// `truncated_at`; its caches hold at most `cache_keys_max` keys each, hashed from `seed`.
    pub(super) fn new(
        config: &NodeConfig,
        seed: u64,
        truncated_at: Option<HlcTimestamp>,
        last_write_seq: WriteSeq,
    ) -> Self {
        Replica {
            key_bytes_max: config.limits.key_bytes_max,
            conflict_mode: config.keyspace.conflict_mode,
            objects: ObjectCache::new(child_seed(seed, b"objects"), config.cache_keys_max),
            acceptors: AcceptorCache::new(child_seed(seed, b"acceptors"), config.cache_keys_max),
            truncated_at,
            last_write_seq,
            acks: VecDeque::new(),
            answers: VecDeque::new(),
        }
    }

    // ---- writes and reads of objects ----

    /// Records a write the node made itself (membership status, epoch): acknowledgements that
    /// cover "everything so far" wait for it too.
    pub(super) fn wrote(&mut self, seq: WriteSeq) {
        self.last_write_seq = seq;
    }

    /// The sequence number of the latest write.
    pub(super) fn last_write_seq(&self) -> WriteSeq {
        self.last_write_seq
    }

    /// What an acknowledgement of "nothing new" waits for: everything written so far (the
    /// local copy may itself be unsynced).
    pub(super) fn written_so_far<S: Storage>(&self, storage: &S) -> WriteSeq {
        self.last_write_seq.max(storage.durable_seq())
    }

    /// Merges a replica's object into the local copy and writes it if anything changed;
    /// returns the write to wait for before acknowledging. The object's timestamps move
    /// `clock` forward. A malformed object (a sibling outside its clock) or an oversized key is
    /// refused.
    pub(super) fn merge<S: Storage>(
        &mut self,
        storage: &mut S,
        clock: &mut HybridClock,
        key: &[u8],
        incoming: &Versioned,
    ) -> Result<WriteSeq, StorageError> {
        if key.is_empty() || key.len() > self.key_bytes_max {
            return Err(StorageError(format!("refused key of {} bytes", key.len())));
        }
        if let Some(sibling) =
            incoming.siblings.iter().find(|sibling| !incoming.clock.covers(sibling.dot))
        {
            return Err(StorageError(format!(
                "malformed object: sibling {:?} outside its clock",
                sibling.dot
            )));
        }
        if let Some(timestamp) = incoming.siblings.iter().map(|sibling| sibling.timestamp).max() {
            clock.observe(timestamp);
        }
        let flushed;
        let incoming = if self.predates_flush(incoming) {
            flushed = self.without_flushed(incoming.clone());
            if flushed.siblings.is_empty() {
                return Ok(self.written_so_far(storage));
            }
            &flushed
        } else {
            incoming
        };
        let mut local = self.load(storage, key)?.unwrap_or_default();
        if local.absorbs(incoming, self.conflict_mode) {
            return Ok(self.written_so_far(storage));
        }
        local.merge(incoming, self.conflict_mode);
        self.write(storage, key, &local)
    }

    /// Writes `object` as the local copy of `key`.
    pub(super) fn write<S: Storage>(
        &mut self,
        storage: &mut S,
        key: &[u8],
        object: &Versioned,
    ) -> Result<WriteSeq, StorageError> {
        let written = write_object(storage, key, object);
        match &written {
            Ok(seq) => {
                self.last_write_seq = *seq;
                // Only a cached copy needs the new version; reads decide what gets cached.
                self.objects.replace(key, object);
            }
            // The store may or may not hold the new copy: read it back next time.
            Err(_) => self.objects.forget(key),
        }
        written
    }

    /// The stored object of `key`, from the cache when it is there.
    pub(super) fn load<S: Storage>(
        &mut self,
        storage: &mut S,
        key: &[u8],
    ) -> Result<Option<Versioned>, StorageError> {
        self.load_caching(storage, key, false)
    }

    /// [`Self::load`] for a Paxos prepare: the commit that usually follows reads the key again,
    /// so a stored object is cached at its first miss, not its second.
    pub(super) fn load_for_round<S: Storage>(
        &mut self,
        storage: &mut S,
        key: &[u8],
    ) -> Result<Option<Versioned>, StorageError> {
        self.load_caching(storage, key, true)
    }

    /// Reads `key` through the object cache; a stored object read from storage is cached at
    /// once when `at_first_miss`, else when the doorkeeper has seen it miss before.
    fn load_caching<S: Storage>(
        &mut self,
        storage: &mut S,
        key: &[u8],
        at_first_miss: bool,
    ) -> Result<Option<Versioned>, StorageError> {
        if let Some(object) = self.objects.get(key) {
            return Ok(Some(object.clone()));
        }
        let object = read_object(storage, key)?;
        if let Some(object) = &object {
            if at_first_miss || self.objects.admit(key) {
                self.objects.insert(key, object.clone());
            }
        }
        Ok(object)
    }

    /// Drops the cached copy of `key` (the tombstone sweep may purge it).
    pub(super) fn forget(&mut self, key: &[u8]) {
        self.objects.forget(key);
    }

    // ---- flushes ----

    /// Whether `object` holds a sibling written at or before the latest flush.
    pub(super) fn predates_flush(&self, object: &Versioned) -> bool {
        if crate::planted!(FlushKeepsLateArrivals) {
            return false;
        }
        self.truncated_at
            .is_some_and(|at| object.siblings.iter().any(|sibling| sibling.timestamp <= at))
    }

    /// Whether a coordinated write's newest sibling (the new write: its coordinator stamps it
    /// after everything it holds) was stamped at or before the latest flush.
    pub(super) fn write_predates_flush(&self, object: &Versioned) -> bool {
        let newest = object.siblings.iter().map(|sibling| sibling.timestamp).max();
        !crate::planted!(FlushKeepsLateArrivals)
            && self.truncated_at.zip(newest).is_some_and(|(at, newest)| newest <= at)
    }

    /// `object` without the siblings written at or before the latest flush, which must not
    /// come back from a replica that missed it. The clock stays, so the object still covers
    /// the dropped writes and a merge at that replica removes them there too.
    pub(super) fn without_flushed(&self, mut object: Versioned) -> Versioned {
        if let Some(at) = self.truncated_at {
            object.siblings.retain(|sibling| sibling.timestamp > at);
        }
        object
    }

    /// Records the truncation point `at`, then removes from every stored object the siblings
    /// written at or before it. Hints stay (their owner filters them on replay: one may hold a
    /// write that raced the flush), and so does Paxos state, since an acceptor that forgot a
    /// promise could let two values be chosen. Returns the write to wait for before
    /// acknowledging, and whether this flush was new (a repeated or older one only waits for
    /// what is already written).
    pub(super) fn truncate<S: Storage>(
        &mut self,
        storage: &mut S,
        at: HlcTimestamp,
    ) -> Result<(WriteSeq, bool), StorageError> {
        if self.truncated_at.is_some_and(|done| done >= at) {
            return Ok((self.written_so_far(storage), false));
        }
        let mut seq = storage.write(
            Space::Meta,
            Bytes::from_static(META_TRUNCATED_AT_KEY),
            Some(Bytes::copy_from_slice(&at.0.to_le_bytes())),
        )?;
        self.truncated_at = Some(at);
        self.objects.clear();
        let mut after: Option<Bytes> = None;
        loop {
            let page = storage.scan(Space::Data, after.as_deref(), TRUNCATE_PAGE_KEYS)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let full = page.len() == TRUNCATE_PAGE_KEYS;
            for (stored, bytes) in page {
                let Some((_, key)) = split_data_key(&stored) else { continue };
                let Ok(object) = decode_object(&bytes) else { continue };
                if self.predates_flush(&object) {
                    // Only what the flush covers goes: a write that reached this node before
                    // the flush but was stamped after it (it raced the flush) stays, and so
                    // does the clock, which keeps covering the writes the object replaced.
                    let kept = self.without_flushed(object);
                    seq = write_object(storage, key, &kept)?;
                }
            }
            if !full {
                break;
            }
        }
        self.last_write_seq = seq;
        Ok((seq, true))
    }

    // ---- Paxos acceptor state ----

    /// The key's acceptor state (a fresh one when none is stored).
    pub(super) fn load_acceptor<S: Storage>(
        &mut self,
        storage: &mut S,
        key: &[u8],
    ) -> Result<AcceptorState, StorageError> {
        if let Some(state) = self.acceptors.get(key) {
            return Ok(state.clone());
        }
        let state = match storage.get(Space::Meta, &paxos_key(key))? {
            None => AcceptorState::default(),
            Some(bytes) => AcceptorState::decode(&bytes)
                .ok_or_else(|| StorageError("damaged paxos state".into()))?,
        };
        // A serial key is read again by the rest of its round: cached at the first miss.
        self.acceptors.insert(key, state.clone());
        Ok(state)
    }

    /// Writes the key's acceptor state and holds `answer` to `to` until it is durable.
    pub(super) fn store_acceptor<S: Storage>(
        &mut self,
        storage: &mut S,
        key: &[u8],
        state: &AcceptorState,
        to: NodeId,
        answer: PeerMessage,
    ) -> Result<(), StorageError> {
        let Some(bytes) = state.encode() else {
            self.acceptors.forget(key);
            return Err(StorageError("cannot encode a paxos state".into()));
        };
        match storage.write(Space::Meta, paxos_key(key), Some(Bytes::from(bytes))) {
            Ok(seq) => {
                self.last_write_seq = seq;
                self.acceptors.insert(key, state.clone());
                self.answers.push_back((seq, to, answer));
                Ok(())
            }
            Err(error) => {
                self.acceptors.forget(key);
                Err(error)
            }
        }
    }

    // ---- hints ----

    /// Stores (or merges into) the hint for `owner` and `key`, stamped `wall` when new.
    pub(super) fn store_hint<S: Storage>(
        &mut self,
        storage: &mut S,
        wall: WallTime,
        owner: NodeId,
        key: &[u8],
        object: Versioned,
    ) -> Result<WriteSeq, StorageError> {
        if key.is_empty() || key.len() > self.key_bytes_max {
            return Err(StorageError(format!("refused hint key of {} bytes", key.len())));
        }
        let stored_key = hint_key(owner, key);
        let existing = storage.get(Space::Hints, &stored_key)?.as_deref().and_then(decode_hint);
        let hint = match existing {
            Some(mut hint) => {
                hint.object.merge(&object, self.conflict_mode);
                hint
            }
            None => Hint { stored_at: wall, object },
        };
        let bytes =
            encode_hint(&hint).ok_or_else(|| StorageError("cannot encode a hint".into()))?;
        let seq = storage.write(Space::Hints, stored_key, Some(bytes))?;
        self.last_write_seq = seq;
        Ok(seq)
    }

    /// Deletes a stored hint; returns whether storage took the delete.
    pub(super) fn drop_hint<S: Storage>(&mut self, storage: &mut S, stored_key: Bytes) -> bool {
        storage.write(Space::Hints, stored_key, None).is_ok()
    }

    /// The owner has the hint replayed as `sent`: deletes it, unless a newer write was merged
    /// into it since; returns whether it was deleted.
    pub(super) fn hint_delivered<S: Storage>(
        &mut self,
        storage: &mut S,
        stored_key: Bytes,
        sent: &Versioned,
    ) -> bool {
        let current = storage.get(Space::Hints, &stored_key).ok().flatten();
        let unchanged =
            current.as_deref().and_then(decode_hint).is_some_and(|hint| hint.object == *sent);
        unchanged && storage.write(Space::Hints, stored_key, None).is_ok()
    }

    // ---- acknowledgements ----

    /// Holds an acknowledgement until storage is durable up to `seq`.
    pub(super) fn hold_ack(&mut self, seq: WriteSeq, target: AckTarget) {
        self.acks.push_back((seq, target));
    }

    /// The next held acknowledgement whose write is at or below `acknowledgeable`.
    pub(super) fn next_ack(&mut self, acknowledgeable: WriteSeq) -> Option<AckTarget> {
        if self.acks.front().is_some_and(|(seq, _)| *seq <= acknowledgeable) {
            self.acks.pop_front().map(|(_, target)| target)
        } else {
            None
        }
    }

    /// The next held acceptor answer whose state is at or below `acknowledgeable`.
    pub(super) fn next_answer(
        &mut self,
        acknowledgeable: WriteSeq,
    ) -> Option<(NodeId, PeerMessage)> {
        if self.answers.front().is_some_and(|(seq, _, _)| *seq <= acknowledgeable) {
            self.answers.pop_front().map(|(_, to, answer)| (to, answer))
        } else {
            None
        }
    }

    /// Whether no acknowledgement is held (acceptor answers aside).
    pub(super) fn acks_released(&self) -> bool {
        self.acks.is_empty()
    }

    /// Whether anything held waits for a sync.
    pub(super) fn is_waiting(&self) -> bool {
        !self.acks.is_empty() || !self.answers.is_empty()
    }

    /// Asserts the invariants of the module's documentation.
    pub(super) fn check_invariants(&self) {
        let answer_seqs: Vec<WriteSeq> = self.answers.iter().map(|(seq, _, _)| *seq).collect();
        assert!(
            answer_seqs.windows(2).all(|pair| pair[0] <= pair[1]),
            "paxos answers out of write order: {answer_seqs:?}"
        );
        let seqs: Vec<WriteSeq> = self.acks.iter().map(|(seq, _)| *seq).collect();
        assert!(
            seqs.windows(2).all(|pair| pair[0] <= pair[1]),
            "pending acks out of write order: {seqs:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use crate::version::VersionVector;

    fn replica() -> Replica {
        Replica::new(&NodeConfig::new(vec![NodeId(1), NodeId(2), NodeId(3)]), 7, None, 0)
    }

    /// An object holding one write of `value` by node 2, stamped `timestamp`.
    fn written(value: &'static [u8], timestamp: u64) -> Versioned {
        let mut object = Versioned::empty();
        let write = NewWrite {
            value: Some(Bytes::from_static(value)),
            timestamp: HlcTimestamp(timestamp),
            expire_at: None,
        };
        let actor = Actor { node: NodeId(2), epoch: 1 };
        object.update(&VersionVector::new(), write, actor, ConflictMode::DottedVersionVectors);
        object
    }

    fn stored(storage: &mut MemStorage, key: &[u8]) -> Option<Versioned> {
        read_object(storage, key).expect("memory does not fail")
    }

    #[test]
    fn a_merge_writes_only_what_is_new_and_moves_the_clock() {
        let (mut replica, mut storage, mut clock) =
            (replica(), MemStorage::new(), HybridClock::new());
        let object = written(b"v1", 500);
        let first = replica.merge(&mut storage, &mut clock, b"k", &object).unwrap();
        assert!(first > 0);
        assert_eq!(stored(&mut storage, b"k"), Some(object.clone()));
        assert!(clock.tick(WallTime::default()) > HlcTimestamp(500), "the clock saw the write");
        // The same object again changes nothing: no new write, and the acknowledgement waits
        // for what is already written.
        let again = replica.merge(&mut storage, &mut clock, b"k", &object).unwrap();
        assert_eq!(again, first);
        assert_eq!(replica.last_write_seq(), first);
    }

    #[test]
    fn a_malformed_object_or_oversized_key_is_refused_and_nothing_is_stored() {
        let (mut replica, mut storage, mut clock) =
            (replica(), MemStorage::new(), HybridClock::new());
        let mut malformed = written(b"v", 1);
        malformed.clock = VersionVector::new();
        assert!(replica.merge(&mut storage, &mut clock, b"k", &malformed).is_err());
        let huge_key = vec![b'k'; replica.key_bytes_max + 1];
        assert!(replica.merge(&mut storage, &mut clock, &huge_key, &written(b"v", 1)).is_err());
        assert!(replica
            .store_hint(&mut storage, WallTime::default(), NodeId(3), b"", written(b"v", 1))
            .is_err());
        assert!(storage.is_empty(Space::Data) && storage.is_empty(Space::Hints));
    }

    #[test]
    fn after_a_flush_older_siblings_are_dropped_on_arrival_and_from_the_store() {
        let (mut replica, mut storage, mut clock) =
            (replica(), MemStorage::new(), HybridClock::new());
        replica.merge(&mut storage, &mut clock, b"old", &written(b"before", 100)).unwrap();
        let (_, applied) = replica.truncate(&mut storage, HlcTimestamp(200)).unwrap();
        assert!(applied);
        assert_eq!(stored(&mut storage, b"old").map(|object| object.siblings.len()), Some(0));
        // A late copy of a write from before the flush (a replica that missed it) stays gone.
        let late = written(b"late", 150);
        assert!(replica.write_predates_flush(&late));
        replica.merge(&mut storage, &mut clock, b"late", &late).unwrap();
        assert_eq!(stored(&mut storage, b"late"), None);
        // A write stamped after the flush is kept; the same flush again changes nothing.
        replica.merge(&mut storage, &mut clock, b"new", &written(b"after", 300)).unwrap();
        assert_eq!(stored(&mut storage, b"new").map(|object| object.siblings.len()), Some(1));
        let (_, again) = replica.truncate(&mut storage, HlcTimestamp(200)).unwrap();
        assert!(!again);
        assert_eq!(stored(&mut storage, b"new").map(|object| object.siblings.len()), Some(1));
    }

    #[test]
    fn acknowledgements_and_answers_are_released_in_write_order_once_durable() {
        let (mut replica, mut storage, mut clock) =
            (replica(), MemStorage::new(), HybridClock::new());
        let a = replica.merge(&mut storage, &mut clock, b"a", &written(b"1", 1)).unwrap();
        replica.hold_ack(a, AckTarget::Remote { to: NodeId(2), op: 10 });
        let state = AcceptorState::default();
        let answer = PeerMessage::HintReplayAck { replay: 5 };
        replica.store_acceptor(&mut storage, b"a", &state, NodeId(3), answer).unwrap();
        let b = replica.merge(&mut storage, &mut clock, b"b", &written(b"2", 2)).unwrap();
        replica.hold_ack(b, AckTarget::Local(11));
        replica.check_invariants();
        assert!(replica.is_waiting());
        // Nothing is durable yet: nothing is released.
        assert!(replica.next_ack(storage.durable_seq()).is_none());
        assert!(replica.next_answer(storage.durable_seq()).is_none());
        let durable = storage.sync().unwrap();
        assert!(durable >= b);
        assert!(matches!(replica.next_ack(durable), Some(AckTarget::Remote { op: 10, .. })));
        assert!(matches!(replica.next_ack(durable), Some(AckTarget::Local(11))));
        assert!(replica.acks_released());
        assert!(matches!(replica.next_answer(durable), Some((NodeId(3), _))));
        assert!(!replica.is_waiting());
        // The acceptor state is stored and read back (from the cache, then from storage).
        assert_eq!(replica.load_acceptor(&mut storage, b"a").unwrap(), state);
        let mut cold = super::tests::replica();
        assert_eq!(cold.load_acceptor(&mut storage, b"a").unwrap(), state);
    }

    #[test]
    fn a_delivered_hint_is_deleted_unless_a_newer_write_joined_it() {
        let (mut replica, mut storage) = (replica(), MemStorage::new());
        let first = written(b"1", 1);
        replica
            .store_hint(&mut storage, WallTime::default(), NodeId(3), b"k", first.clone())
            .unwrap();
        let stored_key = hint_key(NodeId(3), b"k");
        // Replayed as `first`, but a second write was merged into the hint meanwhile: kept.
        let mut second = written(b"2", 2);
        second.clock = VersionVector::new();
        second.siblings[0].dot.counter = 2;
        second.clock.add(second.siblings[0].dot);
        replica.store_hint(&mut storage, WallTime::default(), NodeId(3), b"k", second).unwrap();
        assert!(!replica.hint_delivered(&mut storage, stored_key.clone(), &first));
        assert_eq!(storage.len(Space::Hints), 1);
        // Replayed as it stands now: deleted.
        let now_stored = storage
            .get(Space::Hints, &stored_key)
            .unwrap()
            .as_deref()
            .and_then(decode_hint)
            .unwrap();
        assert!(replica.hint_delivered(&mut storage, stored_key, &now_stored.object));
        assert!(storage.is_empty(Space::Hints));
    }
}
