//! Hinted handoff: storing a hint for a replica believed down and replaying hints to their owners.
//!
//! Part of [`Node`](super::Node): an `impl` block of its own, split out of `node.rs` along
//! its seams; the state stays in `Node`.

use super::*;

impl<S: Storage> Node<S> {
    /// Stores (or merges into) the hint for `owner` and `key`.
    pub(super) fn store_hint(
        &mut self,
        owner: NodeId,
        key: &[u8],
        object: Versioned,
    ) -> Result<WriteSeq, StorageError> {
        let seq = self.replica.store_hint(&mut self.storage, self.wall, owner, key, object)?;
        self.counters.hints_stored += 1;
        Ok(seq)
    }

    /// Sends due hints to owners that are back, drops expired ones; bounded per tick.
    pub(super) fn replay_hints(&mut self, now: Instant) {
        self.replays.expire(now, self.config.request_timeout);
        let limit = self.config.hints_per_tick_max;
        let Ok(entries) = self.storage.scan(Space::Hints, self.hint_cursor.as_deref(), limit)
        else {
            return;
        };
        self.hint_cursor =
            if entries.len() < limit { None } else { entries.last().map(|(key, _)| key.clone()) };
        // A hint older than the tombstone grace may predate a delete that every replica has
        // purged by now: replayed, it would bring the deleted value back (found by the
        // sliced-repair scenario: grace 4 s, a hint replayed 9 s after the write it held). So
        // a hint lives at most the shorter of the window and the grace, as Cassandra caps a
        // hint's life at gc_grace_seconds.
        let window_ms = self
            .config
            .keyspace
            .hint_window
            .as_millis()
            .min(self.config.keyspace.tombstone_grace.as_millis());
        for (stored_key, bytes) in entries {
            let parsed = split_hint_key(&stored_key).zip(decode_hint(&bytes));
            let Some(((owner, key), hint)) = parsed else {
                self.drop_hint(stored_key);
                continue;
            };
            let expired =
                hint.stored_at.as_millis().saturating_add(window_ms) <= self.wall.as_millis();
            if expired || !self.membership.ring().contains(owner) {
                self.drop_hint(stored_key);
                continue;
            }
            if crate::planted!(HintsNeverReplayed)
                || self.is_down(owner)
                || self.replays.is_in_flight(&stored_key, now, self.config.request_timeout)
            {
                continue;
            }
            let replay = self.replays.start(stored_key, hint.object.clone(), now);
            self.send(owner, PeerMessage::HintReplay { replay, key, object: hint.object });
        }
    }

    pub(super) fn drop_hint(&mut self, stored_key: Bytes) {
        if self.replica.drop_hint(&mut self.storage, stored_key) {
            self.counters.hints_dropped += 1;
        }
    }

    /// The owner has the replayed hint: delete it, unless a newer write was merged into it since.
    pub(super) fn hint_delivered(&mut self, replay: u64) {
        let Some((stored_key, sent)) = self.replays.finish(replay) else { return };
        if self.replica.hint_delivered(&mut self.storage, stored_key, &sent) {
            self.counters.hints_replayed += 1;
        }
    }
}
