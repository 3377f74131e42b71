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

/// The hash of one key's object, as leaves and digests use it. `buffer` is scratch the caller
/// reuses across keys: a tree build hashes every key of a group, and a fresh buffer per key was
/// a tenth of that time.
pub fn entry_hash(buffer: &mut Vec<u8>, key: &[u8], encoded_object: &[u8]) -> u64 {
    buffer.clear();
    buffer.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buffer.extend_from_slice(key);
    buffer.extend_from_slice(encoded_object);
    xxh3_64(buffer)
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

/// A group's keys with their entry hashes, as one tree build read them; shared by the exchanges
/// that build opened with each peer.
pub type GroupEntries = std::sync::Arc<Vec<(bytes::Bytes, u64)>>;

/// An exchange this node opened.
#[derive(Debug)]
struct Session {
    group: Group,
    peer: NodeId,
    /// When this node read the entries its tree was built from.
    started: WallTime,
    /// Those entries: step 3 compares against them instead of reading the group again.
    entries: GroupEntries,
}

/// The anti-entropy state of a node.
#[derive(Debug, Default)]
pub struct AntiEntropy {
    next_group: usize,
    next_session: u64,
    sessions: BTreeMap<u64, Session>,
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

    /// Starts an exchange with `peer` over `group`, from `entries` read at `started`, and
    /// returns its session. The oldest exchanges are forgotten first when too many are in
    /// flight, as their peers may never answer, and so is an earlier one with the same peer over
    /// the same group (superseded), so that at most one read of each group is held per peer.
    pub fn start(
        &mut self,
        group: Group,
        peer: NodeId,
        started: WallTime,
        entries: GroupEntries,
    ) -> u64 {
        self.sessions.retain(|_, open| !(open.group == group && open.peer == peer));
        while self.sessions.len() >= self.sessions_max.max(1) {
            let Some(oldest) = self.sessions.keys().next().copied() else { break };
            self.sessions.remove(&oldest);
        }
        self.next_session += 1;
        self.sessions.insert(self.next_session, Session { group, peer, started, entries });
        self.next_session
    }

    /// The group and entries of the exchange `session` with `peer`, if this node started it.
    pub fn session(&self, session: u64, peer: NodeId) -> Option<(&Group, &GroupEntries)> {
        self.sessions
            .get(&session)
            .filter(|open| open.peer == peer)
            .map(|open| (&open.group, &open.entries))
    }

    /// Marks an exchange complete. It counts from when its entries were read, not from now: a
    /// write (a delete) after that read may not have been compared, so the exchange must not
    /// open the tombstone purge gate for it.
    pub fn complete(&mut self, session: u64) {
        if let Some(open) = self.sessions.remove(&session) {
            self.completed.insert((open.group, open.peer), open.started);
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
        let entries = GroupEntries::default();
        let at = WallTime::from_millis;
        let first = state.start(group.clone(), NodeId(2), at(100), entries.clone());
        assert_eq!(state.session(first, NodeId(2)).map(|(group, _)| group), Some(&group));
        assert!(state.session(first, NodeId(3)).is_none(), "a session belongs to its peer");
        state.complete(first);
        assert!(!state.repaired_since(&group, NodeId(1), at(50)), "n3 has not exchanged");
        let second = state.start(group.clone(), NodeId(3), at(200), entries.clone());
        state.complete(second);
        assert!(state.repaired_since(&group, NodeId(1), at(100)));
        assert!(!state.repaired_since(&group, NodeId(1), at(150)));
    }

    #[test]
    fn an_exchange_counts_from_when_its_entries_were_read_and_a_new_one_supersedes_the_old() {
        let mut state = AntiEntropy::new(8, 0);
        let group = vec![NodeId(1), NodeId(2)];
        let at = WallTime::from_millis;
        let old = state.start(group.clone(), NodeId(2), at(100), GroupEntries::default());
        let new = state.start(group.clone(), NodeId(2), at(300), GroupEntries::default());
        assert!(state.session(old, NodeId(2)).is_none(), "superseded");
        assert_eq!(state.in_flight(), 1);
        state.complete(new);
        // Completed later than 300 (whenever the answer came), it still counts from 300.
        assert!(state.repaired_since(&group, NodeId(1), at(300)));
        assert!(!state.repaired_since(&group, NodeId(1), at(301)));
    }
}
