//! What a node shows of itself: its identity, readiness, ring and membership, counters, and
//! (for drivers and checkers) its storage.
//!
//! Part of [`Node`](super::Node): an `impl` block of its own, split out of `node/mod.rs` so that
//! the module keeps only the composer (state, `handle`, `handle_timeout`, outputs, timers).

use super::*;

impl<S: Storage> Node<S> {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The actor this node issues dots as.
    pub fn actor(&self) -> Actor {
        self.actor
    }

    /// Whether the node coordinates writes (its epoch is durable and its storage healthy).
    pub fn is_ready(&self) -> bool {
        self.ready_at_seq.is_none() && self.storage_failure.is_none()
    }

    /// Whether the node's store is a rebuild not yet refilled for good: anti-entropy has not
    /// refilled it (it answers no reads meanwhile), or the refill is not durable yet (it answers
    /// reads, but a crash now would leave it rebuilding again).
    pub fn is_rebuilding(&self) -> bool {
        self.refill.is_some() || self.rebuilt_at_seq.is_some()
    }

    /// The ring this node routes by.
    pub fn ring(&self) -> &Ring {
        self.membership.ring()
    }

    /// The node's counters.
    pub fn counters(&self) -> NodeCounters {
        self.counters
    }

    /// Every node gossip knows, with its state.
    pub fn membership(&self) -> &std::collections::BTreeMap<NodeId, MemberState> {
        self.membership.members()
    }

    /// The peers believed up and down now.
    pub fn peers_up_and_down(&self) -> (usize, usize) {
        let peers = self.membership.members().keys().filter(|node| **node != self.id);
        peers.fold(
            (0, 0),
            |(up, down), node| if self.is_down(*node) { (up, down + 1) } else { (up + 1, down) },
        )
    }

    /// Whether this node believes `peer` down now (its driver said so, or phi is over the
    /// threshold).
    pub fn is_peer_down(&self, peer: NodeId) -> bool {
        self.is_down(peer)
    }

    /// The failure detector's suspicion of `peer` now.
    pub fn phi(&self, peer: NodeId) -> f64 {
        self.membership.detector().phi(peer, self.now)
    }

    /// Which timer fired at the last `handle_timeout` that did something.
    pub fn last_timeout_reason(&self) -> Option<TimerKind> {
        self.last_timeout_reason
    }

    /// The node's storage, for drivers (to sync) and checkers (to inspect).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The node's storage, read-only (statistics).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Gives the storage back, for a simulated crash and restart.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// This node's stored copy of `key`, for checkers.
    pub fn local_object(&mut self, key: &[u8]) -> Result<Option<Versioned>, StorageError> {
        read_object(&mut self.storage, key)
    }
}
