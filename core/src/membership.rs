//! Membership: who is in the cluster, who looks alive, and the rings that follow from it.
//!
//! Owns: the node's [`Gossip`] (member states, rounds), its phi-accrual [`FailureDetector`], the
//! current [`Ring`] (owners: normal and leaving members), the future ring (owners once every
//! join and departure in progress completes) and what both were last built from. The node
//! composes it: it routes gossip messages and the round timer here, reads the rings for
//! placement, and acts on a [`RingChange`] (counting it, pulling ranges inherited from removed
//! nodes); it never builds a ring itself.
//!
//! Inputs: [`Membership::on_gossip`], [`Membership::on_round`], status changes of this node
//! ([`Membership::set_status`] and friends). Outputs: gossip messages from
//! [`Membership::poll_message`], and the [`RingChange`] of [`Membership::refresh`], which the
//! node calls after an input that may have changed a member. Timer: the gossip
//! round, [`Membership::poll_timeout`]. No I/O, no storage.
//!
//! Where members stand: this node where its config says; another at its static location
//! (`locations`), else where its gossip says, else the default (see [`crate::placement`]).
//!
//! Invariants: the rings are a function of each member's status class, weight and location
//! (rebuilt only when one of those changes, since gossip advances on every heartbeat and a
//! rebuild hashes 16 vnodes per member twice); the ring is never empty once built.

use std::collections::BTreeMap;

use crate::failure_detector::{DetectorConfig, FailureDetector};
use crate::gossip::{Gossip, GossipMessage, MemberState, MemberStatus};
use crate::placement::{Location, DATACENTER_DEFAULT, RACK_DEFAULT};
use crate::ring::Ring;
use crate::time::Instant;
use crate::types::NodeId;

/// What a membership input did to the rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingChange {
    /// The current ring is as it was (the future ring may have changed).
    Unchanged,
    /// The current ring changed; `before` is the old one and `removed` the members an operator
    /// removed that owned ranges in it.
    Changed {
        /// The ring before the change.
        before: Ring,
        /// Members removed by an operator that were in `before`.
        removed: Vec<NodeId>,
    },
}

/// How the rings are placed: the parts of the node's configuration membership reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Virtual nodes per unit of weight.
    pub vnodes_per_node: u32,
    /// Replicas per datacenter (empty: N over the whole cluster).
    pub replicas_per_dc: BTreeMap<String, usize>,
    /// Static locations of the configured members.
    pub locations: BTreeMap<NodeId, Location>,
    /// This node's own location.
    pub own: Location,
}

/// One member as the rings saw it when they were last built.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RingInput {
    node: NodeId,
    owns: bool,
    future: bool,
    weight: u32,
    location: Location,
}

/// The membership sub-machine (module docs).
#[derive(Debug)]
pub struct Membership {
    id: NodeId,
    placement: Placement,
    gossip: Gossip,
    detector: FailureDetector,
    ring: Ring,
    future_ring: Option<Ring>,
    ring_inputs: Vec<RingInput>,
}

impl Membership {
    /// Membership of node `id` over `gossip`, starting from a ring of `members` (each of weight
    /// 1, placed by `placement`) until gossip says more.
    pub fn new(
        id: NodeId,
        placement: Placement,
        gossip: Gossip,
        detector: DetectorConfig,
        members: &[NodeId],
    ) -> Self {
        let mut ring = Ring::new(placement.vnodes_per_node);
        ring.set_replicas_per_dc(placement.replicas_per_dc.clone());
        for member in members {
            let location = if *member == id {
                placement.own.clone()
            } else {
                placement.locations.get(member).cloned().unwrap_or_default()
            };
            ring.add_at(*member, 1, location);
        }
        Membership {
            id,
            placement,
            gossip,
            detector: FailureDetector::new(detector),
            ring,
            future_ring: None,
            ring_inputs: Vec::new(),
        }
    }

    /// The current ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The ring once the moves in progress complete; `None` when nothing moves.
    pub fn future_ring(&self) -> Option<&Ring> {
        self.future_ring.as_ref()
    }

    /// The gossip state, for reading.
    pub fn gossip(&self) -> &Gossip {
        &self.gossip
    }

    /// The failure detector, for reading.
    pub fn detector(&self) -> &FailureDetector {
        &self.detector
    }

    /// Every member gossip knows, with its state.
    pub fn members(&self) -> &BTreeMap<NodeId, MemberState> {
        self.gossip.members()
    }

    /// This node's status.
    pub fn status(&self) -> MemberStatus {
        self.gossip.mine().status
    }

    /// Whether the failure detector believes `peer` alive at `now`.
    pub fn is_alive(&self, peer: NodeId, now: Instant) -> bool {
        self.detector.is_alive(peer, now)
    }

    /// The datacenter of `node`, as the ring (or, for a node still joining, the future ring)
    /// places it.
    pub fn datacenter_of(&self, node: NodeId) -> &str {
        match &self.future_ring {
            Some(future) if !self.ring.contains(node) => &future.location(node).datacenter,
            _ => &self.ring.location(node).datacenter,
        }
    }

    /// A gossip message from `from`: merged, and a heartbeat noted for every member it
    /// advanced. Returns whether any advanced; the caller then calls [`Membership::refresh`]
    /// (after persisting what it must, so its own writes keep their order).
    pub fn on_gossip(&mut self, now: Instant, from: NodeId, message: GossipMessage) -> bool {
        let advanced = self.gossip.handle(from, message);
        for node in &advanced {
            self.detector.heartbeat(*node, now);
        }
        !advanced.is_empty()
    }

    /// The gossip round timer fired (or not yet: then nothing happens). Returns whether a
    /// round ran.
    pub fn on_round(&mut self, now: Instant) -> bool {
        if now < self.gossip.poll_timeout() {
            return false;
        }
        let detector = &self.detector;
        self.gossip.handle_timeout(now, |peer| detector.is_alive(peer, now));
        true
    }

    /// When the next gossip round is due.
    pub fn poll_timeout(&self) -> Instant {
        self.gossip.poll_timeout()
    }

    /// The next gossip message to send, if any.
    pub fn poll_message(&mut self) -> Option<(NodeId, GossipMessage)> {
        self.gossip.poll_message()
    }

    /// Gossip rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.gossip.rounds()
    }

    /// Sets this node's status (the rings follow at the next [`Membership::refresh`]).
    pub fn set_status(&mut self, status: MemberStatus) {
        self.gossip.set_status(status);
    }

    /// Marks another member's status (an operator's removal); true when it changed.
    pub fn mark(&mut self, node: NodeId, status: MemberStatus) -> bool {
        self.gossip.mark(node, status)
    }

    /// Makes the next round tell `peer` this node's state.
    pub fn announce_to(&mut self, peer: NodeId) {
        self.gossip.announce_to(peer);
    }

    /// Whether `peer` has acknowledged this node's current status.
    pub fn knows_my_status(&self, peer: NodeId) -> bool {
        self.gossip.knows_my_status(peer)
    }

    /// Rebuilds the rings from gossip when a member's status class, weight or location changed.
    pub fn refresh(&mut self) -> RingChange {
        if self.ring_inputs_unchanged() {
            return RingChange::Unchanged;
        }
        let members = self.gossip.members();
        let mut ring = Ring::new(self.placement.vnodes_per_node);
        let mut future = Ring::new(self.placement.vnodes_per_node);
        ring.set_replicas_per_dc(self.placement.replicas_per_dc.clone());
        future.set_replicas_per_dc(self.placement.replicas_per_dc.clone());
        let mut inputs = Vec::with_capacity(members.len());
        for (node, state) in members {
            let (datacenter, rack) = self.member_labels(*node, state);
            let location = Location::new(datacenter, rack);
            let owns = state.status.owns_ranges();
            let future_owner = matches!(state.status, MemberStatus::Normal | MemberStatus::Joining);
            if owns {
                ring.add_at(*node, state.weight, location.clone());
            }
            if future_owner {
                future.add_at(*node, state.weight, location.clone());
            }
            inputs.push(RingInput {
                node: *node,
                owns,
                future: future_owner,
                weight: state.weight,
                location,
            });
        }
        self.ring_inputs = inputs;
        if ring.members_count() == 0 {
            return RingChange::Unchanged;
        }
        let mut change = RingChange::Unchanged;
        if ring != self.ring {
            let removed: Vec<NodeId> = members
                .iter()
                .filter(|(node, state)| state.removed_by_operator() && self.ring.contains(**node))
                .map(|(node, _)| *node)
                .collect();
            let before = std::mem::replace(&mut self.ring, ring);
            change = RingChange::Changed { before, removed };
        }
        self.future_ring = (future != self.ring).then_some(future);
        change
    }

    /// Checks the invariants of gossip and the detector.
    pub fn check_invariants(&self) {
        self.gossip.check_invariants();
        self.detector.check_invariants();
    }

    fn member_labels<'a>(&'a self, node: NodeId, state: &'a MemberState) -> (&'a str, &'a str) {
        if node == self.id {
            return (&self.placement.own.datacenter, &self.placement.own.rack);
        }
        if let Some(location) = self.placement.locations.get(&node) {
            return (&location.datacenter, &location.rack);
        }
        if !state.datacenter.is_empty() {
            let rack = if state.rack.is_empty() { RACK_DEFAULT } else { &state.rack };
            return (&state.datacenter, rack);
        }
        (DATACENTER_DEFAULT, RACK_DEFAULT)
    }

    fn ring_inputs_unchanged(&self) -> bool {
        let members = self.gossip.members();
        members.len() == self.ring_inputs.len()
            && members.iter().zip(&self.ring_inputs).all(|((node, state), input)| {
                let (datacenter, rack) = self.member_labels(*node, state);
                input.node == *node
                    && input.owns == state.status.owns_ranges()
                    && input.future
                        == matches!(state.status, MemberStatus::Normal | MemberStatus::Joining)
                    && input.weight == state.weight
                    && input.location.datacenter == datacenter
                    && input.location.rack == rack
            })
    }
}

#[cfg(test)]
mod tests {
    //! Membership instances wired by hand, message by message, with no node and no simulator
    //! (quinn-proto's `Pair` style): a little router moves gossip between them.

    use super::*;
    use crate::gossip::GossipConfig;
    use crate::time::Duration;

    fn state(status: MemberStatus, datacenter: &str, rack: &str) -> MemberState {
        MemberState {
            generation: 1,
            version: 0,
            status,
            weight: 1,
            address: String::new(),
            datacenter: datacenter.into(),
            rack: rack.into(),
        }
    }

    /// Node `id` of the founding `members` (all in dc1 on their own racks), or a joiner.
    fn member(id: u32, members: &[NodeId], own: Location, status: MemberStatus) -> Membership {
        let id = NodeId(id);
        let locations: BTreeMap<NodeId, Location> = members
            .iter()
            .map(|node| (*node, Location::new("dc1", format!("r{}", node.0))))
            .collect();
        let placement = Placement {
            vnodes_per_node: 8,
            replicas_per_dc: BTreeMap::new(),
            locations,
            own: own.clone(),
        };
        let known = members.iter().filter(|node| **node != id).map(|node| {
            (*node, MemberState { generation: 0, ..state(MemberStatus::Normal, "", "") })
        });
        let config = GossipConfig { seeds: members.to_vec(), ..GossipConfig::default() };
        let mine = state(status, &own.datacenter, &own.rack);
        let gossip = Gossip::new(id, mine, known, config, u64::from(id.0), Instant::ZERO);
        Membership::new(id, placement, gossip, DetectorConfig::default(), members)
    }

    /// Runs gossip rounds from second `from_s` for `seconds`, delivering every message at once,
    /// and collects the ring changes each member saw.
    fn run(members: &mut [Membership], from_s: u64, seconds: u64) -> Vec<Vec<RingChange>> {
        let mut changes = vec![Vec::new(); members.len()];
        let index_of = |members: &[Membership], id: NodeId| members.iter().position(|m| m.id == id);
        for tick in from_s * 10..(from_s + seconds) * 10 {
            let now = Instant::ZERO + Duration::from_millis(tick * 100);
            for membership in members.iter_mut() {
                membership.on_round(now);
            }
            let mut moved = true;
            while moved {
                moved = false;
                for index in 0..members.len() {
                    while let Some((to, message)) = members[index].poll_message() {
                        moved = true;
                        let from = members[index].id;
                        if let Some(target) = index_of(members, to) {
                            if members[target].on_gossip(now, from, message) {
                                let change = members[target].refresh();
                                if change != RingChange::Unchanged {
                                    changes[target].push(change);
                                }
                            }
                        }
                    }
                }
            }
        }
        changes
    }

    /// Three founding members in dc1, each on a rack of its own.
    fn three_founders() -> ([NodeId; 3], Vec<Membership>) {
        let founders = [NodeId(1), NodeId(2), NodeId(3)];
        let members = founders
            .iter()
            .map(|id| {
                let own = Location::new("dc1", format!("r{}", id.0));
                member(id.0, &founders, own, MemberStatus::Normal)
            })
            .collect();
        (founders, members)
    }

    #[test]
    fn heartbeats_alone_never_rebuild_the_ring() {
        let (_, mut members) = three_founders();
        let changes = run(&mut members, 0, 10);
        assert!(changes.iter().all(Vec::is_empty), "{changes:?}");
        for membership in &members {
            assert_eq!(membership.ring().members_count(), 3);
            assert!(membership.future_ring().is_none());
            assert!(membership.rounds() >= 9, "rounds ran");
        }
    }

    #[test]
    fn a_joiner_is_placed_where_its_gossip_says_and_only_in_the_future_ring() {
        let (founders, mut members) = three_founders();
        members.push(member(4, &founders, Location::new("dc2", "east-a"), MemberStatus::Joining));
        run(&mut members, 0, 5);
        for membership in &members {
            let future = membership.future_ring().expect("a join is in progress");
            assert!(future.contains(NodeId(4)) && !membership.ring().contains(NodeId(4)));
            assert_eq!(future.location(NodeId(4)), &Location::new("dc2", "east-a"));
            assert_eq!(membership.datacenter_of(NodeId(4)), "dc2");
            assert_eq!(membership.datacenter_of(NodeId(2)), "dc1");
        }
        // The joiner finishes: every member's current ring changes once to include it.
        members[3].set_status(MemberStatus::Normal);
        assert!(matches!(members[3].refresh(), RingChange::Changed { .. }));
        let changes = run(&mut members, 5, 5);
        for (index, seen) in changes.iter().enumerate().take(3) {
            assert_eq!(seen.len(), 1, "member {index} saw {seen:?}");
            assert!(matches!(&seen[0], RingChange::Changed { removed, .. } if removed.is_empty()));
            assert!(members[index].ring().contains(NodeId(4)));
            assert!(members[index].future_ring().is_none());
        }
    }

    #[test]
    fn an_operators_removal_reports_the_removed_member() {
        let (_, mut members) = three_founders();
        run(&mut members, 0, 3);
        assert!(members[0].mark(NodeId(3), MemberStatus::Left));
        match members[0].refresh() {
            RingChange::Changed { before, removed } => {
                assert_eq!(removed, vec![NodeId(3)]);
                assert!(before.contains(NodeId(3)));
            }
            other => panic!("expected a change, got {other:?}"),
        }
        assert!(!members[0].ring().contains(NodeId(3)));
        let changes = run(&mut members[..2], 3, 3);
        assert!(
            matches!(&changes[1][..], [RingChange::Changed { removed, .. }] if removed == &[NodeId(3)])
        );
    }
}
