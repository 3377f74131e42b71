//! Hinted handoff: writes held for a replica that was unreachable, and their replay.
//!
//! Owns: the encoding of hints in the node's `Hints` storage space and the bookkeeping of
//! replays in flight. A hint's storage key is `owner id (u32 BE) ++ key`, so one owner's hints
//! are contiguous; its value is the time it was stored and the object to deliver (later hints
//! for the same owner and key are merged into it, so a key has at most one hint per owner).
//!
//! Replay (driven by the node's hint timer): the scan walks the space from a cursor, at most
//! `hints_per_tick_max` entries per tick; a hint older than the hint window is dropped
//! (anti-entropy repairs what it carried); a hint whose owner is believed up and is not already
//! in flight is sent; the owner's durable acknowledgement deletes it. A replay with no answer
//! within `replay_timeout` may be sent again.
//!
//! Invariants: every in-flight replay names a distinct hint key.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::time::{Duration, Instant, WallTime};
use crate::types::NodeId;
use crate::version::Versioned;

/// A stored hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hint {
    /// When the hint was first stored (the fallback's wall clock).
    pub stored_at: WallTime,
    /// The object to deliver to the owner.
    pub object: Versioned,
}

/// The storage key of the hint for `owner` and `key`.
pub fn hint_key(owner: NodeId, key: &[u8]) -> Bytes {
    let mut bytes = Vec::with_capacity(4 + key.len());
    bytes.extend_from_slice(&owner.0.to_be_bytes());
    bytes.extend_from_slice(key);
    Bytes::from(bytes)
}

/// Splits a hint's storage key into its owner and key; `None` for a malformed one.
pub fn split_hint_key(stored: &Bytes) -> Option<(NodeId, Bytes)> {
    let owner = u32::from_be_bytes(stored.get(..4)?.try_into().ok()?);
    Some((NodeId(owner), stored.slice(4..)))
}

/// Encodes a hint for storage.
pub fn encode_hint(hint: &Hint) -> Option<Bytes> {
    postcard::to_allocvec(hint).ok().map(Bytes::from)
}

/// Decodes a stored hint; `None` when it is damaged.
pub fn decode_hint(bytes: &[u8]) -> Option<Hint> {
    postcard::from_bytes(bytes).ok()
}

/// Replays in flight.
#[derive(Debug, Default)]
pub struct Replays {
    next_id: u64,
    in_flight: BTreeMap<u64, (Bytes, Instant, Versioned)>,
}

impl Replays {
    /// Replays whose ids start after `first_id` (drawn at random per start, so a late ack to a
    /// previous incarnation's replay cannot delete a hint of this one).
    pub fn starting_at(first_id: u64) -> Self {
        Replays { next_id: first_id, in_flight: BTreeMap::new() }
    }

    /// Whether a replay of `hint_key` is in flight and not yet timed out.
    pub fn is_in_flight(&self, hint_key: &Bytes, now: Instant, replay_timeout: Duration) -> bool {
        self.in_flight
            .values()
            .any(|(key, sent_at, _)| key == hint_key && *sent_at + replay_timeout > now)
    }

    /// Records a replay of `sent` sent at `now`; returns its id.
    pub fn start(&mut self, hint_key: Bytes, sent: Versioned, now: Instant) -> u64 {
        self.in_flight.retain(|_, (key, ..)| *key != hint_key);
        self.next_id += 1;
        self.in_flight.insert(self.next_id, (hint_key, now, sent));
        self.next_id
    }

    /// The owner acknowledged replay `id`: returns the hint key and the object it delivered.
    /// The caller deletes the hint only if it still holds that object (a newer write may have
    /// been merged into it meanwhile).
    pub fn finish(&mut self, id: u64) -> Option<(Bytes, Versioned)> {
        self.in_flight.remove(&id).map(|(key, _, sent)| (key, sent))
    }

    /// Forgets replays older than `replay_timeout`, so their hints may be sent again.
    pub fn expire(&mut self, now: Instant, replay_timeout: Duration) {
        self.in_flight.retain(|_, (_, sent_at, _)| *sent_at + replay_timeout > now);
    }

    /// Replays in flight.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether no replay is in flight.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Asserts the invariants of the module doc.
    pub fn check_invariants(&self) {
        let mut keys: Vec<&Bytes> = self.in_flight.values().map(|(key, ..)| key).collect();
        keys.sort();
        assert!(
            keys.windows(2).all(|pair| pair[0] != pair[1]),
            "two replays of one hint in flight"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_keys_group_by_owner_and_round_trip() {
        let first = hint_key(NodeId(2), b"b");
        let second = hint_key(NodeId(2), b"a");
        let other = hint_key(NodeId(10), b"a");
        assert!(second < first && first < other, "one owner's hints are contiguous");
        assert_eq!(split_hint_key(&first), Some((NodeId(2), Bytes::from_static(b"b"))));
        assert_eq!(split_hint_key(&Bytes::from_static(b"ab")), None);
        let hint = Hint { stored_at: WallTime::from_millis(5), object: Versioned::empty() };
        assert_eq!(decode_hint(&encode_hint(&hint).unwrap()), Some(hint));
        assert_eq!(decode_hint(&[0xff, 0xff]), None);
    }

    #[test]
    fn a_replay_is_in_flight_until_acknowledged_or_timed_out() {
        let mut replays = Replays::default();
        let key = hint_key(NodeId(1), b"k");
        let timeout = Duration::from_secs(1);
        let id = replays.start(key.clone(), Versioned::empty(), Instant::ZERO);
        assert!(replays.is_in_flight(&key, Instant::ZERO, timeout));
        assert!(!replays.is_in_flight(&key, Instant::ZERO + timeout, timeout));
        let again = replays.start(key.clone(), Versioned::empty(), Instant::ZERO + timeout);
        assert_eq!(replays.len(), 1, "a resend replaces the old replay");
        assert_eq!(replays.finish(id), None);
        assert_eq!(replays.finish(again), Some((key, Versioned::empty())));
        replays.check_invariants();
    }
}
