//! Anti-entropy: replicas compare hash trees of the keys they share and stream the difference.
//!
//! Owns: the cursor over this node's replica groups, the exchanges it started, and when each
//! (group, peer) pair last completed one. A replica group is the set of arcs of the ring whose
//! preference lists hold the same N nodes: their keys live on exactly those nodes, so one tree
//! per group covers each key once (the "Merkle tree per token range" of the design, with ranges
//! sharing replicas folded together).
//!
//! The tree has `LEAVES` leaves; a key falls in leaf `token % LEAVES`; a leaf's hash is the XOR of
//! `xxh3(key ++ encoded object)` over its keys, so it does not depend on scan order; the root is
//! the hash of the leaves.
//!
//! An exchange, started by the node's anti-entropy timer for the next group and each other
//! replica believed up:
//! 1. initiator → peer `AeTree { session, group, root, leaves }`;
//! 2. peer → initiator `AeDigests { session, leaves, digests }`: per-key object hashes of the leaves
//!    that differ (none when the roots match);
//! 3. the initiator pushes `AeObjects` for keys the peer lacks or holds differently, and asks for
//!    the keys it lacks or holds differently with `AeFetch`; the peer answers `AeObjects`. Every
//!    receiver merges what arrives.
//!
//! At most `keys_per_exchange_max` keys are compared and streamed per exchange; the rest
//! converge in later exchanges. The exchange is complete for the initiator when it has the
//! digests and has pushed; that time gates tombstone purging (a tombstone is purged only once
//! every other replica of its group has exchanged since the delete).

use std::collections::BTreeMap;

use xxhash_rust::xxh3::xxh3_64;

use crate::ring::{Ring, Token};
use crate::time::WallTime;
use crate::types::NodeId;

/// Leaves per tree.
pub const LEAVES: usize = 64;

/// A replica group: its members, sorted.
pub type Group = Vec<NodeId>;

/// The replica group of a token.
pub fn group_of(ring: &Ring, token: Token, replicas_n: usize) -> Group {
    let mut group = ring.preference_list_for_token(token, replicas_n);
    group.sort();
    group
}

/// Every replica group `me` belongs to, in a fixed order.
pub fn groups_of(ring: &Ring, me: NodeId, replicas_n: usize) -> Vec<Group> {
    let mut groups: Vec<Group> = ring
        .ranges(replicas_n)
        .into_iter()
        .map(|range| {
            let mut group = range.after;
            group.sort();
            group
        })
        .filter(|group| group.contains(&me))
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// The leaf of a key.
pub fn leaf_of(key: &[u8]) -> usize {
    (Ring::key_token(key) % LEAVES as u64) as usize
}

/// The hash of one key's object, as leaves and digests use it.
pub fn entry_hash(key: &[u8], encoded_object: &[u8]) -> u64 {
    let mut bytes = Vec::with_capacity(key.len() + encoded_object.len() + 4);
    bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(encoded_object);
    xxh3_64(&bytes)
}

/// A tree under construction or complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// Leaf hashes.
    pub leaves: Vec<u64>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree { leaves: vec![0; LEAVES] }
    }
}

impl Tree {
    /// The tree of `(key, entry hash)` pairs.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a (bytes::Bytes, u64)>) -> Tree {
        let mut tree = Tree::default();
        for (key, hash) in entries {
            tree.add(key, *hash);
        }
        tree
    }

    /// Adds one key's entry hash.
    pub fn add(&mut self, key: &[u8], hash: u64) {
        self.leaves[leaf_of(key)] ^= hash;
    }

    /// The root hash.
    pub fn root(&self) -> u64 {
        let bytes: Vec<u8> = self.leaves.iter().flat_map(|leaf| leaf.to_le_bytes()).collect();
        xxh3_64(&bytes)
    }

    /// Leaves whose hashes differ from `other` (all of them if `other` is malformed).
    pub fn differing_leaves(&self, other: &[u64]) -> Vec<u32> {
        if other.len() != LEAVES {
            return (0..LEAVES as u32).collect();
        }
        (0..LEAVES)
            .filter(|leaf| self.leaves[*leaf] != other[*leaf])
            .map(|leaf| leaf as u32)
            .collect()
    }
}

/// The anti-entropy state of a node.
#[derive(Debug, Default)]
pub struct AntiEntropy {
    next_group: usize,
    next_session: u64,
    sessions: BTreeMap<u64, (Group, NodeId)>,
    completed: BTreeMap<(Group, NodeId), WallTime>,
    sessions_max: usize,
}

impl AntiEntropy {
    /// State with at most `sessions_max` exchanges in flight, numbering sessions after
    /// `first_session` (drawn at random per start, so a late answer to a previous incarnation's
    /// exchange cannot complete one of this incarnation and open the tombstone purge gate).
    pub fn new(sessions_max: usize, first_session: u64) -> Self {
        AntiEntropy { sessions_max, next_session: first_session, ..AntiEntropy::default() }
    }

    /// The group to exchange next, cycling through `groups`.
    pub fn next_group(&mut self, groups: &[Group]) -> Option<Group> {
        if groups.is_empty() {
            return None;
        }
        let group = groups[self.next_group % groups.len()].clone();
        self.next_group = (self.next_group + 1) % groups.len();
        Some(group)
    }

    /// Starts an exchange with `peer` over `group`; `None` when too many are in flight (the
    /// oldest are forgotten first, as their peers may never answer).
    pub fn start(&mut self, group: Group, peer: NodeId) -> u64 {
        while self.sessions.len() >= self.sessions_max.max(1) {
            let Some(oldest) = self.sessions.keys().next().copied() else { break };
            self.sessions.remove(&oldest);
        }
        self.next_session += 1;
        self.sessions.insert(self.next_session, (group, peer));
        self.next_session
    }

    /// The exchange `session` with `peer`, if this node started it.
    pub fn session(&self, session: u64, peer: NodeId) -> Option<&Group> {
        self.sessions.get(&session).filter(|(_, with)| *with == peer).map(|(group, _)| group)
    }

    /// Marks an exchange complete at `wall`.
    pub fn complete(&mut self, session: u64, wall: WallTime) {
        if let Some((group, peer)) = self.sessions.remove(&session) {
            self.completed.insert((group, peer), wall);
        }
    }

    /// Whether every other member of `group` completed an exchange with this node at or after
    /// `since`.
    pub fn repaired_since(&self, group: &Group, me: NodeId, since: WallTime) -> bool {
        group
            .iter()
            .filter(|peer| **peer != me)
            .all(|peer| self.completed.get(&(group.clone(), *peer)).is_some_and(|at| *at >= since))
    }

    /// Exchanges in flight.
    pub fn in_flight(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_contents_give_equal_trees_in_any_order_and_a_difference_shows_in_one_leaf() {
        let entries: Vec<(Vec<u8>, u64)> = (0..100u32)
            .map(|index| (index.to_le_bytes().to_vec(), u64::from(index) * 7919))
            .collect();
        let mut forward = Tree::default();
        let mut backward = Tree::default();
        for (key, hash) in &entries {
            forward.add(key, *hash);
        }
        for (key, hash) in entries.iter().rev() {
            backward.add(key, *hash);
        }
        assert_eq!(forward.root(), backward.root());
        assert!(forward.differing_leaves(&backward.leaves).is_empty());
        backward.add(&entries[5].0, 1);
        assert_eq!(forward.differing_leaves(&backward.leaves), vec![leaf_of(&entries[5].0) as u32]);
        assert_ne!(forward.root(), backward.root());
        assert_eq!(
            forward.differing_leaves(&[1, 2]).len(),
            LEAVES,
            "a malformed tree differs everywhere"
        );
    }

    #[test]
    fn groups_cover_each_key_once_and_include_the_node() {
        let ring = Ring::with_members(16, (1..=5).map(NodeId));
        let groups = groups_of(&ring, NodeId(1), 3);
        assert!(!groups.is_empty() && groups.len() <= 10);
        for key in 0..500u32 {
            let group = group_of(&ring, Ring::key_token(&key.to_le_bytes()), 3);
            assert_eq!(group.contains(&NodeId(1)), groups.contains(&group));
        }
    }

    #[test]
    fn repair_is_recorded_per_group_and_peer() {
        let mut state = AntiEntropy::new(4, 0);
        let group = vec![NodeId(1), NodeId(2), NodeId(3)];
        let first = state.start(group.clone(), NodeId(2));
        assert_eq!(state.session(first, NodeId(2)), Some(&group));
        assert_eq!(state.session(first, NodeId(3)), None, "a session belongs to its peer");
        state.complete(first, WallTime::from_millis(100));
        assert!(
            !state.repaired_since(&group, NodeId(1), WallTime::from_millis(50)),
            "n3 has not exchanged"
        );
        let second = state.start(group.clone(), NodeId(3));
        state.complete(second, WallTime::from_millis(200));
        assert!(state.repaired_since(&group, NodeId(1), WallTime::from_millis(100)));
        assert!(!state.repaired_since(&group, NodeId(1), WallTime::from_millis(150)));
    }
}
