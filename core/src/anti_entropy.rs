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
//! digests and has pushed.
//!
//! Slices. An exchange covers one slice of its group: the group's keys with tokens in
//! `[low, high]`. The initiator reads from `low` until it has `slice_keys` keys (and every key
//! sharing the last one's token); the slice ends there, or at the top of the ring if the keys run
//! out first. A responder that holds far more keys in the slice (it is ahead, or the initiator is
//! a blank node being refilled) reads at most twice that many and answers `AeNarrow` with the
//! token it reached; the initiator cuts its entries there and sends the tree again. So each step
//! of a node reads a bounded number of keys however large the node is. A cycle is the run of
//! slices from token 0 to the top; it counts for a (group, peer) pair only if every slice of it
//! completed with that peer, from when its first slice was read. That time gates tombstone
//! purging (a tombstone is purged only once every other replica of its group has completed a
//! cycle with this one since the delete) and the end of a refill.

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
#[derive(Debug, Clone)]
pub struct Session {
    /// The replica group.
    pub group: Group,
    /// The other replica.
    pub peer: NodeId,
    /// The slice's first token.
    pub low: Token,
    /// The slice's last token (inclusive).
    pub high: Token,
    /// When this node read the entries its tree was built from.
    pub started: WallTime,
    /// Those entries: step 3 compares against them instead of reading the group again.
    pub entries: GroupEntries,
}

/// A cycle over a (group, peer) pair in progress: when its first slice was read and where the
/// slices completed so far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cycle {
    started: WallTime,
    /// The first token not covered yet.
    next_low: Token,
}

/// The anti-entropy state of a node.
#[derive(Debug, Default)]
pub struct AntiEntropy {
    next_group: usize,
    /// The group whose cycle the timer is going through, and the next slice's first token.
    current: Option<(Group, Token)>,
    next_session: u64,
    sessions: BTreeMap<u64, Session>,
    cycles: BTreeMap<(Group, NodeId), Cycle>,
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

    /// The group and first token of the next slice the timer exchanges: the rest of the cycle
    /// in progress, else token 0 of the next of `groups` (cycling through them).
    pub fn next_slice(&mut self, groups: &[Group]) -> Option<(Group, Token)> {
        if let Some((group, low)) = &self.current {
            if groups.contains(group) {
                return Some((group.clone(), *low));
            }
        }
        if groups.is_empty() {
            return None;
        }
        let group = groups[self.next_group % groups.len()].clone();
        self.next_group = (self.next_group + 1) % groups.len();
        Some((group, 0))
    }

    /// Records that the timer sent the slice of `group` ending at `high`; returns whether that
    /// ended the group's cycle.
    pub fn sent_slice(&mut self, group: &Group, high: Token) -> bool {
        if high == Token::MAX {
            self.current = None;
            return true;
        }
        self.current = Some((group.clone(), high + 1));
        false
    }

    /// Where the next slice of `group` with `peer` starts for a refill: after the slices of the
    /// cycle in progress with that peer, or at token 0.
    pub fn cycle_next_low(&self, group: &Group, peer: NodeId) -> Token {
        self.cycles.get(&(group.clone(), peer)).map_or(0, |cycle| cycle.next_low)
    }

    /// Starts an exchange with `peer` over the slice `[low, high]` of `group`, from `entries`
    /// read at `started`, and returns its session. The oldest exchanges are forgotten first when
    /// too many are in flight, as their peers may never answer, and so is an earlier one with
    /// the same peer over the same group (superseded), so that at most one read of each group is
    /// held per peer.
    pub fn start(
        &mut self,
        group: Group,
        peer: NodeId,
        (low, high): (Token, Token),
        started: WallTime,
        entries: GroupEntries,
    ) -> u64 {
        self.sessions.retain(|_, open| !(open.group == group && open.peer == peer));
        while self.sessions.len() >= self.sessions_max.max(1) {
            let Some(oldest) = self.sessions.keys().next().copied() else { break };
            self.sessions.remove(&oldest);
        }
        self.next_session += 1;
        let session = Session { group, peer, low, high, started, entries };
        self.sessions.insert(self.next_session, session);
        self.next_session
    }

    /// The exchange `session` with `peer`, if this node started it and it is open.
    pub fn session(&self, session: u64, peer: NodeId) -> Option<&Session> {
        self.sessions.get(&session).filter(|open| open.peer == peer)
    }

    /// Cuts the slice of `session` with `peer` at `high` (the peer holds too many keys in it to
    /// read at once) and returns the narrowed exchange to send again. The timer's next slice of
    /// the group then starts after `high`, unless it has moved on already. `None` if there is no
    /// such session or `high` does not narrow it.
    pub fn narrow(&mut self, session: u64, peer: NodeId, high: Token) -> Option<Session> {
        let open = self.sessions.get_mut(&session).filter(|open| open.peer == peer)?;
        if high < open.low || high >= open.high {
            return None;
        }
        let entries: Vec<(bytes::Bytes, u64)> =
            open.entries.iter().filter(|(key, _)| Ring::key_token(key) <= high).cloned().collect();
        let after_old = open.high.checked_add(1);
        open.high = high;
        open.entries = std::sync::Arc::new(entries);
        let narrowed = open.clone();
        if let Some((group, low)) = &mut self.current {
            if *group == narrowed.group && Some(*low) == after_old {
                *low = high + 1;
            }
        }
        Some(narrowed)
    }

    /// Marks an exchange complete and returns its group and peer, with whether it completed a
    /// cycle with that peer. A cycle counts from when its first slice was read, not from now: a
    /// write (a delete) after that read may not have been compared, so it must not open the
    /// tombstone purge gate for it. A slice that starts past the end of what completed (one in
    /// between failed or was never answered) breaks the cycle; the next one begins at token 0.
    pub fn complete(&mut self, session: u64) -> Option<(Group, NodeId, bool)> {
        let open = self.sessions.remove(&session)?;
        let pair = (open.group, open.peer);
        if open.low == 0 {
            self.cycles.insert(pair.clone(), Cycle { started: open.started, next_low: 0 });
        }
        let cycle_done = match self.cycles.get_mut(&pair) {
            Some(cycle) if open.low <= cycle.next_low => match open.high.checked_add(1) {
                Some(_) if crate::planted!(SliceEndsCycle) => {
                    let started = cycle.started;
                    self.completed.insert(pair.clone(), started);
                    true
                }
                Some(next_low) => {
                    cycle.next_low = cycle.next_low.max(next_low);
                    false
                }
                None => {
                    let started = cycle.started;
                    self.cycles.remove(&pair);
                    self.completed.insert(pair.clone(), started);
                    true
                }
            },
            _ => {
                self.cycles.remove(&pair);
                false
            }
        };
        Some((pair.0, pair.1, cycle_done))
    }

    /// Whether every other member of `group` completed an exchange with this node at or after
    /// `since`.
    pub fn repaired_since(&self, group: &Group, me: NodeId, since: WallTime) -> bool {
        group
            .iter()
            .filter(|peer| **peer != me)
            .all(|peer| self.completed.get(&(group.clone(), *peer)).is_some_and(|at| *at >= since))
    }

    /// Forgets every completed exchange and cycle. Called when a rebuilt node's refill ends:
    /// the exchanges that refilled it read its store while it was still blank, so they say
    /// nothing about the tombstones it received afterwards. Counted, they let it purge a
    /// tombstone that a stale replica had never seen, and that replica's old value came back
    /// (found by the sliced-repair scenario, seed 65, in single-slice exchanges).
    pub fn forget_repairs(&mut self) {
        self.completed.clear();
        self.cycles.clear();
    }

    /// Exchanges in flight.
    pub fn in_flight(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole ring as one slice.
    const WHOLE: (Token, Token) = (0, Token::MAX);

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
        let first = state.start(group.clone(), NodeId(2), WHOLE, at(100), entries.clone());
        assert_eq!(state.session(first, NodeId(2)).map(|open| &open.group), Some(&group));
        assert!(state.session(first, NodeId(3)).is_none(), "a session belongs to its peer");
        state.complete(first);
        assert!(!state.repaired_since(&group, NodeId(1), at(50)), "n3 has not exchanged");
        let second = state.start(group.clone(), NodeId(3), WHOLE, at(200), entries.clone());
        state.complete(second);
        assert!(state.repaired_since(&group, NodeId(1), at(100)));
        assert!(!state.repaired_since(&group, NodeId(1), at(150)));
    }

    #[test]
    fn an_exchange_counts_from_when_its_entries_were_read_and_a_new_one_supersedes_the_old() {
        let mut state = AntiEntropy::new(8, 0);
        let group = vec![NodeId(1), NodeId(2)];
        let at = WallTime::from_millis;
        let old = state.start(group.clone(), NodeId(2), WHOLE, at(100), GroupEntries::default());
        let new = state.start(group.clone(), NodeId(2), WHOLE, at(300), GroupEntries::default());
        assert!(state.session(old, NodeId(2)).is_none(), "superseded");
        assert_eq!(state.in_flight(), 1);
        state.complete(new);
        // Completed later than 300 (whenever the answer came), it still counts from 300.
        assert!(state.repaired_since(&group, NodeId(1), at(300)));
        assert!(!state.repaired_since(&group, NodeId(1), at(301)));
    }

    #[test]
    fn a_cycle_counts_once_every_slice_completed_in_order_from_its_first_read() {
        let mut state = AntiEntropy::new(8, 0);
        let group = vec![NodeId(1), NodeId(2)];
        let peer = NodeId(2);
        let at = WallTime::from_millis;
        let none = GroupEntries::default;
        let first = state.start(group.clone(), peer, (0, 99), at(100), none());
        assert_eq!(state.complete(first), Some((group.clone(), peer, false)));
        assert_eq!(state.cycle_next_low(&group, peer), 100);
        let second = state.start(group.clone(), peer, (100, 999), at(200), none());
        assert_eq!(state.complete(second), Some((group.clone(), peer, false)));
        assert!(!state.repaired_since(&group, NodeId(1), at(0)), "the cycle is not over");
        let last = state.start(group.clone(), peer, (1000, Token::MAX), at(300), none());
        assert_eq!(state.complete(last), Some((group.clone(), peer, true)));
        // From the first slice's read, not the last one's.
        assert!(state.repaired_since(&group, NodeId(1), at(100)));
        assert!(!state.repaired_since(&group, NodeId(1), at(101)));
        assert_eq!(state.cycle_next_low(&group, peer), 0, "the next cycle starts over");

        // A slice that never completes leaves a gap: the cycle does not count.
        let first = state.start(group.clone(), peer, (0, 99), at(400), none());
        state.complete(first);
        let _lost = state.start(group.clone(), peer, (100, 999), at(500), none());
        let last = state.start(group.clone(), peer, (1000, Token::MAX), at(600), none());
        assert_eq!(state.complete(last), Some((group.clone(), peer, false)));
        assert!(!state.repaired_since(&group, NodeId(1), at(400)), "a gap breaks the cycle");
        assert!(state.repaired_since(&group, NodeId(1), at(100)), "the earlier cycle stands");
    }

    #[test]
    fn a_narrowed_slice_keeps_its_first_keys_and_moves_the_timer_back() {
        let mut state = AntiEntropy::new(8, 0);
        let group = vec![NodeId(1), NodeId(2), NodeId(3)];
        let mut entries: Vec<(bytes::Bytes, u64)> = (0..50u32)
            .map(|index| (bytes::Bytes::from(index.to_le_bytes().to_vec()), u64::from(index)))
            .collect();
        entries.sort_by_key(|(key, _)| Ring::key_token(key));
        let cut = Ring::key_token(&entries[19].0);
        assert_eq!(state.next_slice(std::slice::from_ref(&group)), Some((group.clone(), 0)));
        assert!(!state.sent_slice(&group, Token::MAX - 5));
        let session = state.start(
            group.clone(),
            NodeId(2),
            (0, Token::MAX - 5),
            WallTime::from_millis(10),
            std::sync::Arc::new(entries.clone()),
        );
        assert!(state.narrow(session, NodeId(3), cut).is_none(), "another peer's session");
        assert!(state.narrow(session, NodeId(2), Token::MAX - 5).is_none(), "not narrower");
        let narrowed = state.narrow(session, NodeId(2), cut).expect("narrowed");
        assert_eq!((narrowed.low, narrowed.high), (0, cut));
        assert_eq!(narrowed.entries.as_slice(), &entries[..20]);
        assert_eq!(state.session(session, NodeId(2)).map(|open| open.high), Some(cut));
        assert_eq!(
            state.next_slice(std::slice::from_ref(&group)),
            Some((group.clone(), cut + 1)),
            "the timer goes on after the cut"
        );
        assert!(state.sent_slice(&group, Token::MAX));
        assert_eq!(state.next_slice(std::slice::from_ref(&group)), Some((group, 0)));
    }
}
