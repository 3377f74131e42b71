//! Dotted version vector sets: causality per key, with concurrent writes kept as siblings.
//!
//! Owns: the stored form of a key, [`Versioned`]: a version vector `clock` that summarises every
//! write the object has seen, plus the surviving [`Sibling`]s, each tagged with the [`Dot`] (actor,
//! counter) of the write that made it. This is the "DVV set" of Almeida, Baquero et al. as Riak
//! uses it.
//!
//! Operations:
//! - [`Versioned::update`] is run by the coordinating replica for a client write: it discards the
//!   siblings the client's context covers, keeps every concurrent one, and adds the new write with
//!   a fresh dot of this replica's actor.
//! - [`Versioned::merge`] is run when a replica receives another replica's copy: it is the least
//!   upper bound of the two, so it is commutative, associative and idempotent, and repeated
//!   anti-entropy exchanges converge.
//!
//! Actors are `(node, epoch)`. A node bumps its epoch whenever it might have lost writes it issued
//! (an unclean restart, a lost disk), so a counter is never issued twice under one actor (Riak's
//! kv679 bug). The new dot's counter is also above the client's context for this actor, which
//! catches a replica that lost a key but sees the key's history in the context.
//!
//! Invariants (checked by [`Versioned::check_invariants`]): every sibling's dot is covered by the
//! clock; no two siblings share a dot; siblings are sorted by dot; no sibling is covered by
//! another sibling's write (they are pairwise concurrent by construction).

use serde::{Deserialize, Serialize};

use crate::error::ClientError;
use crate::hlc::HlcTimestamp;
use crate::time::WallTime;
use crate::types::{ConflictMode, NodeId, Value};

/// Who issued a write: a node in one of its epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// The node.
    pub node: NodeId,
    /// The node's epoch, bumped whenever it may have lost writes it issued.
    pub epoch: u32,
}

/// One write event: the `counter`-th write an actor coordinated for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// The actor.
    pub actor: Actor,
    /// The actor's counter for the key, starting at 1.
    pub counter: u64,
}

/// A version vector: per actor, the highest counter seen. It stands for the set of dots
/// `(actor, 1..=counter)`.
///
/// Stored as a vector sorted by actor: clocks hold a handful of actors, and a flat vector is
/// cheaper to clone, compare, encode and drop than a tree (the simulator spends most of its time
/// on these). It is encoded as a map, exactly as a `BTreeMap<Actor, u64>` would be.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionVector(Vec<(Actor, u64)>);

impl VersionVector {
    /// The empty vector.
    pub fn new() -> Self {
        VersionVector::default()
    }

    /// The highest counter seen from `actor` (0 when none).
    pub fn counter(&self, actor: Actor) -> u64 {
        self.0.binary_search_by_key(&actor, |(seen, _)| *seen).map_or(0, |index| self.0[index].1)
    }

    /// Whether the vector has seen `dot`.
    pub fn covers(&self, dot: Dot) -> bool {
        self.counter(dot.actor) >= dot.counter
    }

    /// Records `dot` as seen.
    pub fn add(&mut self, dot: Dot) {
        match self.0.binary_search_by_key(&dot.actor, |(seen, _)| *seen) {
            Ok(index) => self.0[index].1 = self.0[index].1.max(dot.counter),
            Err(index) => self.0.insert(index, (dot.actor, dot.counter)),
        }
    }

    /// Pointwise maximum with `other`.
    pub fn join(&mut self, other: &VersionVector) {
        if other.0.is_empty() {
            return;
        }
        if self.0.is_empty() {
            self.0.clone_from(&other.0);
            return;
        }
        // Both are sorted by actor: one merge pass.
        let (mine, theirs) = (&self.0, &other.0);
        let mut joined = Vec::with_capacity(mine.len().max(theirs.len()));
        let (mut at_mine, mut at_theirs) = (0, 0);
        while at_mine < mine.len() && at_theirs < theirs.len() {
            let (left, right) = (mine[at_mine], theirs[at_theirs]);
            match left.0.cmp(&right.0) {
                std::cmp::Ordering::Less => {
                    joined.push(left);
                    at_mine += 1;
                }
                std::cmp::Ordering::Greater => {
                    joined.push(right);
                    at_theirs += 1;
                }
                std::cmp::Ordering::Equal => {
                    joined.push((left.0, left.1.max(right.1)));
                    at_mine += 1;
                    at_theirs += 1;
                }
            }
        }
        joined.extend_from_slice(&mine[at_mine..]);
        joined.extend_from_slice(&theirs[at_theirs..]);
        self.0 = joined;
    }

    /// Whether every event of `other` is in `self`.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(actor, counter)| self.counter(*actor) >= *counter)
    }

    /// Number of actors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no event has been seen.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The actors and their counters, in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (Actor, u64)> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<(Actor, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (Actor, u64)>>(entries: I) -> Self {
        let mut vector = VersionVector::new();
        for (actor, counter) in entries {
            vector.add(Dot { actor, counter });
        }
        vector
    }
}

impl Serialize for VersionVector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(actor, counter)| (actor, counter)))
    }
}

impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = VersionVector;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a map of actors to counters")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<VersionVector, A::Error> {
                // Bound the allocation by what the input can hold, not by what it claims.
                let mut entries: Vec<(Actor, u64)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry::<Actor, u64>()? {
                    entries.push(entry);
                }
                // Written in actor order by `serialize`; anything else is sorted, and a repeated
                // actor keeps its highest counter, as a map would have.
                if entries.windows(2).all(|pair| pair[0].0 < pair[1].0) {
                    Ok(VersionVector(entries))
                } else {
                    Ok(entries.into_iter().collect())
                }
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// The opaque causal context a read hands the client, for the client's next write.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Context(pub VersionVector);

impl Context {
    /// Encodes the context as bytes for a client.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a map of integers cannot fail; an empty vector is the safe fallback.
        postcard::to_allocvec(&self.0).unwrap_or_default()
    }

    /// Decodes a context a client sent back.
    pub fn from_bytes(bytes: &[u8]) -> Result<Context, ClientError> {
        postcard::from_bytes(bytes)
            .map(Context)
            .map_err(|error| ClientError::InvalidContext { reason: error.to_string() })
    }
}

/// One surviving write of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    /// The write's event.
    pub dot: Dot,
    /// When the coordinator issued it, on its hybrid logical clock.
    pub timestamp: HlcTimestamp,
    /// The value, or `None` for a delete (a tombstone).
    pub value: Option<Value>,
    /// When the value expires, if it has a TTL.
    pub expire_at: Option<WallTime>,
}

impl Sibling {
    /// Whether the sibling holds a value that is readable at wall time `wall`.
    pub fn is_live(&self, wall: WallTime) -> bool {
        self.value.is_some() && self.expire_at.is_none_or(|expire_at| wall < expire_at)
    }

    /// When the sibling stopped being live: its timestamp for a tombstone, its expiry for an
    /// expired value, `None` while it may still be live.
    pub fn dead_since(&self, wall: WallTime) -> Option<WallTime> {
        match (&self.value, self.expire_at) {
            (None, _) => Some(self.timestamp.wall()),
            (Some(_), Some(expire_at)) if expire_at <= wall => Some(expire_at),
            _ => None,
        }
    }

    /// The total order last-write-wins uses: timestamp, then dot to break ties; the highest
    /// live sibling is the one a plain GET returns.
    pub fn lww_rank(&self) -> (HlcTimestamp, Dot) {
        (self.timestamp, self.dot)
    }
}

/// The stored form of a key: a clock and the concurrent siblings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Versioned {
    /// Every write this object has seen.
    pub clock: VersionVector,
    /// The writes that survive, pairwise concurrent, sorted by dot.
    pub siblings: Vec<Sibling>,
}

/// A write to apply with [`Versioned::update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWrite {
    /// The value, or `None` for a delete.
    pub value: Option<Value>,
    /// The coordinator's timestamp for it.
    pub timestamp: HlcTimestamp,
    /// Expiry, for a write with a TTL.
    pub expire_at: Option<WallTime>,
}

impl Versioned {
    /// The object of a key never written.
    pub fn empty() -> Self {
        Versioned::default()
    }

    /// Applies a client write at its coordinating replica. `context` is what the client read
    /// (empty for a blind write); the siblings it covers are replaced, every other sibling is
    /// kept. Returns the new write's dot.
    pub fn update(
        &mut self,
        context: &VersionVector,
        write: NewWrite,
        actor: Actor,
        mode: ConflictMode,
    ) -> Dot {
        self.update_above(context, write, actor, mode, 0)
    }

    /// [`Versioned::update`] with a dot counter above `issued_max`, the highest counter `actor`
    /// has issued on any key. A key's own clock is not enough: once its tombstone is purged
    /// here, other replicas may still hold a clock naming this actor's old counters, and a
    /// counter counted up from the empty object again would be taken for an old, covered write
    /// and dropped.
    pub fn update_above(
        &mut self,
        context: &VersionVector,
        write: NewWrite,
        actor: Actor,
        mode: ConflictMode,
        issued_max: u64,
    ) -> Dot {
        let counter = self.clock.counter(actor).max(context.counter(actor)).max(issued_max) + 1;
        let dot = Dot { actor, counter };
        self.siblings.retain(|sibling| {
            crate::planted!(UpdateIgnoresContext) || !context.covers(sibling.dot)
        });
        self.clock.join(context);
        self.clock.add(dot);
        self.siblings.push(Sibling {
            dot,
            timestamp: write.timestamp,
            value: write.value,
            expire_at: write.expire_at,
        });
        self.siblings.sort_by_key(|sibling| sibling.dot);
        self.resolve(mode);
        dot
    }

    /// Merges another replica's copy into this one: the least upper bound of the two.
    pub fn merge(&mut self, other: &Versioned, mode: ConflictMode) {
        let mut merged: Vec<Sibling> =
            Vec::with_capacity(self.siblings.len() + other.siblings.len());
        for mine in &self.siblings {
            match other.siblings.iter().find(|theirs| theirs.dot == mine.dot) {
                // The same dot on both sides is the same write. Should two payloads ever differ
                // (a reused counter), pick one by a total order so that merge stays commutative.
                Some(theirs) => merged.push(if sibling_order(theirs, mine).is_gt() {
                    theirs.clone()
                } else {
                    mine.clone()
                }),
                None if !other.clock.covers(mine.dot) => merged.push(mine.clone()),
                None => {}
            }
        }
        for theirs in other.siblings.iter().filter(|_| !crate::planted!(MergeDropsTheirSiblings)) {
            if !self.clock.covers(theirs.dot) {
                merged.push(theirs.clone());
            }
        }
        merged.sort_by_key(|sibling| sibling.dot);
        if crate::planted!(MergeKeepsOneSibling) {
            merged.truncate(1);
        }
        self.siblings = merged;
        self.clock.join(&other.clock);
        self.resolve(mode);
    }

    /// The merge of two objects, as a new object.
    pub fn merged(&self, other: &Versioned, mode: ConflictMode) -> Versioned {
        let mut result = self.clone();
        result.merge(other, mode);
        result
    }

    /// Whether `self` has seen everything `other` has (`other <= self` in the lattice).
    pub fn descends(&self, other: &Versioned, mode: ConflictMode) -> bool {
        crate::planted!(DescendsAlways) || self.absorbs(other, mode)
    }

    /// Whether merging `other` into `self` would change nothing; [`Versioned::descends`] without
    /// its planted bug, for the write path.
    pub fn absorbs(&self, other: &Versioned, mode: ConflictMode) -> bool {
        if self == other {
            return true;
        }
        // A clock that lacks part of the other's history grows in the merge: a quick no. (Read
        // repair and every replica write ask this, and most copies are equal or plainly behind.)
        self.clock.descends(&other.clock) && &self.merged(other, mode) == self
    }

    /// The values readable at wall time `wall`, oldest first by (timestamp, dot): the last is
    /// the newest, which is what a plain Redis GET returns.
    pub fn live_values(&self, wall: WallTime) -> Vec<Value> {
        let mut live: Vec<&Sibling> =
            self.siblings.iter().filter(|sibling| sibling.is_live(wall)).collect();
        live.sort_by_key(|sibling| sibling.lww_rank());
        live.into_iter().filter_map(|sibling| sibling.value.clone()).collect()
    }

    /// The earliest expiry among live siblings, for TTL reporting.
    pub fn expire_at(&self, wall: WallTime) -> Option<WallTime> {
        self.siblings
            .iter()
            .filter(|sibling| sibling.is_live(wall))
            .filter_map(|sibling| sibling.expire_at)
            .min()
    }

    /// Whether the object holds nothing readable and has held nothing for at least `grace`, so
    /// that dropping it cannot let an older value come back (given repair ran within `grace`).
    pub fn is_purgeable(&self, wall: WallTime, grace_ms: u64) -> bool {
        let grace_ms = if crate::planted!(PurgeIgnoresGrace) { 0 } else { grace_ms };
        self.siblings.iter().all(|sibling| {
            sibling
                .dead_since(wall)
                .is_some_and(|since| since.as_millis().saturating_add(grace_ms) <= wall.as_millis())
        })
    }

    /// When the object last stopped holding anything readable (its latest tombstone or expiry),
    /// or `None` while something is live.
    pub fn dead_since(&self, wall: WallTime) -> Option<WallTime> {
        self.siblings
            .iter()
            .map(|sibling| sibling.dead_since(wall))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }

    /// The causal context to hand a client that read this object.
    pub fn context(&self) -> Context {
        Context(self.clock.clone())
    }

    /// Asserts the invariants of the module doc. Cheap enough for every handler in debug builds.
    pub fn check_invariants(&self) {
        for pair in self.siblings.windows(2) {
            assert!(pair[0].dot < pair[1].dot, "siblings out of order or repeated: {pair:?}");
        }
        for sibling in &self.siblings {
            assert!(
                self.clock.covers(sibling.dot),
                "clock {:?} misses sibling dot {:?}",
                self.clock,
                sibling.dot
            );
        }
    }

    fn resolve(&mut self, mode: ConflictMode) {
        if mode == ConflictMode::LastWriteWins && self.siblings.len() > 1 {
            // Everything but the highest timestamp is discarded: this is where LWW loses writes.
            if let Some(winner) =
                self.siblings.iter().max_by_key(|sibling| sibling.lww_rank()).cloned()
            {
                self.siblings = vec![winner];
            }
        }
    }
}

fn sibling_order(left: &Sibling, right: &Sibling) -> std::cmp::Ordering {
    (left.timestamp, &left.value, left.expire_at).cmp(&(
        right.timestamp,
        &right.value,
        right.expire_at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DVV: ConflictMode = ConflictMode::DottedVersionVectors;

    fn actor(node: u32) -> Actor {
        Actor { node: NodeId(node), epoch: 0 }
    }

    #[test]
    fn a_version_vector_encodes_exactly_as_the_map_it_replaced() {
        let entries = [(actor(7), 3u64), (actor(2), 9), (Actor { node: NodeId(2), epoch: 5 }, 1)];
        let map: std::collections::BTreeMap<Actor, u64> = entries.into_iter().collect();
        let vector: VersionVector = entries.into_iter().collect();
        let map_bytes = postcard::to_allocvec(&map).unwrap();
        assert_eq!(postcard::to_allocvec(&vector).unwrap(), map_bytes);
        assert_eq!(postcard::from_bytes::<VersionVector>(&map_bytes).unwrap(), vector);
        assert_eq!(vector.iter().map(|(actor, _)| actor.node.0).collect::<Vec<_>>(), [2, 2, 7]);
    }

    #[test]
    fn an_unsorted_encoded_vector_is_sorted_and_a_repeated_actor_keeps_its_highest_counter() {
        let pairs: Vec<(Actor, u64)> = vec![(actor(3), 1), (actor(1), 4), (actor(3), 6)];
        let mut bytes = postcard::to_allocvec(&pairs).unwrap();
        // A sequence of pairs and a map share postcard's encoding (length, then the pairs).
        let decoded: VersionVector = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded.iter().collect::<Vec<_>>(), vec![(actor(1), 4), (actor(3), 6)]);
        bytes.truncate(bytes.len() - 1);
        assert!(postcard::from_bytes::<VersionVector>(&bytes).is_err(), "a torn vector is refused");
    }

    #[test]
    fn join_is_the_pointwise_maximum_over_both_actor_sets() {
        let mut left: VersionVector = [(actor(1), 5), (actor(3), 1)].into_iter().collect();
        let right: VersionVector =
            [(actor(2), 2), (actor(3), 4), (actor(4), 1)].into_iter().collect();
        left.join(&right);
        let joined: Vec<(Actor, u64)> = left.iter().collect();
        assert_eq!(joined, vec![(actor(1), 5), (actor(2), 2), (actor(3), 4), (actor(4), 1)]);
        assert!(left.descends(&right));
        assert!(!right.descends(&left));
    }

    fn write(value: &'static str, time_ms: u64) -> NewWrite {
        NewWrite {
            value: Some(Value::from_static(value.as_bytes())),
            timestamp: HlcTimestamp::from_wall(WallTime::from_millis(time_ms)),
            expire_at: None,
        }
    }

    #[test]
    fn blind_writes_become_siblings_and_a_context_write_replaces_them() {
        let mut object = Versioned::empty();
        object.update(&VersionVector::new(), write("a", 1), actor(1), DVV);
        object.update(&VersionVector::new(), write("b", 2), actor(1), DVV);
        assert_eq!(object.live_values(WallTime::from_millis(3)), vec!["a", "b"]);
        let context = object.context().0;
        object.update(&context, write("c", 3), actor(2), DVV);
        assert_eq!(object.live_values(WallTime::from_millis(4)), vec!["c"]);
        object.check_invariants();
    }

    #[test]
    fn merge_keeps_concurrent_writes_from_two_replicas() {
        let mut left = Versioned::empty();
        left.update(&VersionVector::new(), write("left", 1), actor(1), DVV);
        let mut right = Versioned::empty();
        right.update(&VersionVector::new(), write("right", 1), actor(2), DVV);
        let merged = left.merged(&right, DVV);
        assert_eq!(merged.siblings.len(), 2);
        assert!(merged.descends(&left, DVV) && merged.descends(&right, DVV));
        assert!(!left.descends(&right, DVV));
    }

    #[test]
    fn last_write_wins_keeps_only_the_highest_timestamp() {
        let mut object = Versioned::empty();
        object.update(
            &VersionVector::new(),
            write("late", 9),
            actor(1),
            ConflictMode::LastWriteWins,
        );
        let mut other = Versioned::empty();
        other.update(
            &VersionVector::new(),
            write("early", 2),
            actor(2),
            ConflictMode::LastWriteWins,
        );
        object.merge(&other, ConflictMode::LastWriteWins);
        assert_eq!(object.live_values(WallTime::from_millis(10)), vec!["late"]);
    }

    #[test]
    fn counter_continues_above_the_context_after_data_loss() {
        let mut lost = Versioned::empty();
        let mut context = VersionVector::new();
        context.add(Dot { actor: actor(1), counter: 7 });
        let dot = lost.update(&context, write("x", 1), actor(1), DVV);
        assert_eq!(dot.counter, 8);
    }

    #[test]
    fn tombstones_and_expired_values_are_purgeable_only_after_grace() {
        let mut object = Versioned::empty();
        object.update(
            &VersionVector::new(),
            NewWrite { value: None, ..write("", 1_000) },
            actor(1),
            DVV,
        );
        assert!(object.live_values(WallTime::from_millis(1_001)).is_empty());
        assert!(!object.is_purgeable(WallTime::from_millis(1_500), 1_000));
        assert!(object.is_purgeable(WallTime::from_millis(2_000), 1_000));
        let mut expiring = Versioned::empty();
        expiring.update(
            &VersionVector::new(),
            NewWrite { expire_at: Some(WallTime::from_millis(5_000)), ..write("v", 1_000) },
            actor(1),
            DVV,
        );
        assert_eq!(expiring.live_values(WallTime::from_millis(4_999)).len(), 1);
        assert!(expiring.live_values(WallTime::from_millis(5_000)).is_empty());
        assert!(!expiring.is_purgeable(WallTime::from_millis(5_500), 1_000));
        assert!(expiring.is_purgeable(WallTime::from_millis(6_000), 1_000));
    }

    #[test]
    fn context_round_trips_and_garbage_is_refused() {
        let mut object = Versioned::empty();
        object.update(&VersionVector::new(), write("a", 1), actor(3), DVV);
        let bytes = object.context().to_bytes();
        assert_eq!(Context::from_bytes(&bytes).unwrap(), object.context());
        assert!(matches!(
            Context::from_bytes(&[0xff, 0xff, 0xff]),
            Err(ClientError::InvalidContext { .. })
        ));
    }
}
