//! The refill of a rebuilt or restored store: which replicas have refilled it yet.
//!
//! Contract. Owns: per (replica group, peer) pair, whether that peer has refilled this node, and
//! for a pair in progress the keys fetched from it in its current anti-entropy cycle that have
//! not arrived yet. Inputs: a completed exchange slice with a pair ([`Refill::slice_done`]),
//! fetched objects merged ([`Refill::arrived`]). Outputs: what to do next with a pair
//! ([`SliceOutcome`]), which pairs still need an exchange ([`Refill::wanted`]) and whether the
//! refill is complete ([`Refill::is_complete`]). Does no I/O and reads no clock: the node sends
//! the exchanges, merges the objects and removes the durable mark.
//!
//! A pair counts once one whole cycle of exchanges with that peer completed and every object
//! fetched in it was merged; the refill is complete when every other replica of every group
//! this node belongs to has refilled it (between them they hold every acknowledged write,
//! W + R > N).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::anti_entropy::Group;
use crate::types::NodeId;

/// A store waiting to be refilled.
#[derive(Debug, Default)]
pub struct Refill {
    refilled: BTreeSet<(Group, NodeId)>,
    pending: BTreeMap<(Group, NodeId), PairProgress>,
}

/// A pair's refill in progress.
#[derive(Debug, Default)]
struct PairProgress {
    /// Keys fetched in the current cycle that have not arrived.
    waiting: BTreeSet<Bytes>,
    /// Whether every slice of the current cycle completed.
    cycled: bool,
}

/// What a completed slice means for its pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceOutcome {
    /// The pair has refilled this node.
    Refilled,
    /// The cycle goes on: exchange the pair's next slice now, not at the next tick.
    NextSlice,
    /// The cycle is over but fetched objects have not all arrived.
    Waiting,
}

impl Refill {
    /// An exchange slice with `pair` completed; `first_slice` when it began a new cycle (what an
    /// earlier cycle fetched is then asked for again if still missing), `fetched` the keys it
    /// asked the peer for, `cycle_done` when it was the cycle's last slice.
    pub fn slice_done(
        &mut self,
        pair: (Group, NodeId),
        first_slice: bool,
        fetched: Vec<Bytes>,
        cycle_done: bool,
    ) -> SliceOutcome {
        let progress = self.pending.entry(pair.clone()).or_default();
        if first_slice {
            *progress = PairProgress::default();
        }
        progress.waiting.extend(fetched);
        progress.cycled |= cycle_done;
        if progress.cycled && progress.waiting.is_empty() {
            self.pending.remove(&pair);
            self.refilled.insert(pair);
            SliceOutcome::Refilled
        } else if !cycle_done {
            SliceOutcome::NextSlice
        } else {
            SliceOutcome::Waiting
        }
    }

    /// Objects fetched from `from` arrived and were merged: pairs of that peer whose cycle is
    /// over and whose fetched keys have all arrived have refilled this node.
    pub fn arrived(&mut self, from: NodeId, merged: &BTreeSet<Bytes>) {
        let mut done = Vec::new();
        for ((group, peer), progress) in
            self.pending.iter_mut().filter(|((_, peer), _)| *peer == from)
        {
            progress.waiting.retain(|key| !merged.contains(key));
            if progress.cycled && progress.waiting.is_empty() {
                done.push((group.clone(), *peer));
            }
        }
        for pair in done {
            self.pending.remove(&pair);
            self.refilled.insert(pair);
        }
    }

    /// The (group, peer) pairs of `groups` that have not refilled this node (`me`) and whose
    /// peer is up, in group order.
    pub fn wanted(
        &self,
        groups: &[Group],
        me: NodeId,
        is_down: impl Fn(NodeId) -> bool,
    ) -> Vec<(Group, NodeId)> {
        let mut wanted = Vec::new();
        for group in groups {
            for peer in group.iter().copied() {
                if peer != me && !is_down(peer) && !self.refilled.contains(&(group.clone(), peer)) {
                    wanted.push((group.clone(), peer));
                }
            }
        }
        wanted
    }

    /// Whether every other replica of every group in `groups` has refilled this node (`me`).
    pub fn is_complete(&self, groups: &[Group], me: NodeId) -> bool {
        groups.iter().all(|group| {
            group
                .iter()
                .filter(|peer| **peer != me)
                .all(|peer| self.refilled.contains(&(group.clone(), *peer)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: NodeId = NodeId(1);

    fn groups() -> Vec<Group> {
        vec![vec![NodeId(1), NodeId(2), NodeId(3)], vec![NodeId(3), NodeId(1), NodeId(4)]]
    }

    fn keys(names: &[&'static str]) -> Vec<Bytes> {
        names.iter().map(|name| Bytes::from_static(name.as_bytes())).collect()
    }

    #[test]
    fn a_pair_counts_once_its_cycle_is_over_and_every_fetched_key_arrived() {
        let mut refill = Refill::default();
        let pair = (groups()[0].clone(), NodeId(2));
        let first = refill.slice_done(pair.clone(), true, keys(&["a"]), false);
        assert_eq!(first, SliceOutcome::NextSlice);
        let last = refill.slice_done(pair.clone(), false, keys(&["b"]), true);
        assert_eq!(last, SliceOutcome::Waiting, "a and b are still on their way");
        refill.arrived(NodeId(2), &keys(&["a"]).into_iter().collect());
        assert!(refill.wanted(&groups(), ME, |_| false).contains(&pair));
        refill.arrived(NodeId(3), &keys(&["b"]).into_iter().collect());
        assert!(refill.wanted(&groups(), ME, |_| false).contains(&pair), "b came from n3");
        refill.arrived(NodeId(2), &keys(&["b"]).into_iter().collect());
        assert!(!refill.wanted(&groups(), ME, |_| false).contains(&pair));
    }

    #[test]
    fn a_new_cycle_forgets_what_the_last_one_waited_for() {
        let mut refill = Refill::default();
        let pair = (groups()[0].clone(), NodeId(3));
        assert_eq!(
            refill.slice_done(pair.clone(), true, keys(&["lost"]), true),
            SliceOutcome::Waiting
        );
        // The next cycle finds nothing to fetch: the key was merged some other way.
        assert_eq!(refill.slice_done(pair, true, Vec::new(), true), SliceOutcome::Refilled);
    }

    #[test]
    fn complete_needs_every_other_replica_of_every_group_and_down_peers_are_not_wanted() {
        let mut refill = Refill::default();
        let groups = groups();
        let pairs = [
            (groups[0].clone(), NodeId(2)),
            (groups[0].clone(), NodeId(3)),
            (groups[1].clone(), NodeId(3)),
            (groups[1].clone(), NodeId(4)),
        ];
        let down = |peer: NodeId| peer == NodeId(4);
        assert_eq!(refill.wanted(&groups, ME, down).len(), 3, "n4 is down, n1 is me");
        for pair in &pairs[..3] {
            assert_eq!(
                refill.slice_done(pair.clone(), true, Vec::new(), true),
                SliceOutcome::Refilled
            );
            assert!(!refill.is_complete(&groups, ME));
        }
        assert!(refill.wanted(&groups, ME, down).is_empty());
        refill.slice_done(pairs[3].clone(), true, Vec::new(), true);
        assert!(refill.is_complete(&groups, ME));
    }
}
