//! Checker: every written key's replicas are placed as the topology promises.
//!
//! Over the final ring (the expected membership, placed by datacenter and rack), each key's
//! owners must be distinct nodes; with `replicas_per_dc`, each named datacenter must hold at
//! least `min(count, its members)` of them (exactly `count` when no datacenter is short of
//! members, and then none outside the named ones); and the owners in a datacenter must stand on
//! `min(owners there, racks there)` distinct racks (without per-datacenter counts: on
//! `min(owners, racks of the cluster)` distinct racks). A rack then holds at most its share of
//! a key, which is what lets a rack's loss leave a quorum standing.
//!
//! Runs only with a topology (without one every node stands on the default rack).

use std::collections::{BTreeMap, BTreeSet};

use ringkv_core::NodeId;

use super::{Analysis, CheckInput, FinalKey, TopologyView, Violation};

const NAME: &str = "placement";

/// Runs the check.
pub fn check(input: CheckInput<'_>, _analysis: &Analysis) -> Vec<Violation> {
    let topology = input.topology;
    if topology.locations.is_empty() {
        return Vec::new();
    }
    let mut violations = Vec::new();
    for (key, state) in input.final_state {
        if let Some(problem) = misplaced(state, input.expected_members, topology) {
            violations.push(Violation::new(
                NAME,
                format!("{key:?} has owners {:?}: {problem}", state.owners),
            ));
        }
    }
    violations
}

/// What is wrong with one key's owners, if anything.
fn misplaced(state: &FinalKey, members: &[NodeId], topology: &TopologyView) -> Option<String> {
    let owners = &state.owners;
    let distinct: BTreeSet<NodeId> = owners.iter().copied().collect();
    if distinct.len() != owners.len() {
        return Some("a node is named twice".to_string());
    }
    let spot = |node: &NodeId| topology.locations.get(node).cloned().unwrap_or_default();
    // Racks and member counts per datacenter of the final membership.
    let mut racks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
    for member in members {
        let location = spot(member);
        racks.entry(location.datacenter.clone()).or_default().insert(location.rack);
        *sizes.entry(location.datacenter).or_default() += 1;
    }
    let per_dc = &topology.replicas_per_dc;
    if per_dc.is_empty() {
        let cluster_racks: usize = racks.values().map(BTreeSet::len).sum();
        let used: BTreeSet<_> = owners.iter().map(spot).collect();
        let wanted = owners.len().min(cluster_racks);
        if used.len() < wanted {
            return Some(format!("{} racks used of {cluster_racks}, {wanted} wanted", used.len()));
        }
        return None;
    }
    let mut held: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    for owner in owners {
        held.entry(spot(owner).datacenter).or_default().push(*owner);
    }
    let short = per_dc.iter().any(|(dc, count)| sizes.get(dc).copied().unwrap_or(0) < *count);
    for (datacenter, count) in per_dc {
        let there = held.get(datacenter).map(Vec::as_slice).unwrap_or_default();
        let wanted = (*count).min(sizes.get(datacenter).copied().unwrap_or(0));
        if there.len() < wanted || (!short && there.len() != *count) {
            return Some(format!("{} replicas in {datacenter}, {count} declared", there.len()));
        }
        let used: BTreeSet<String> = there.iter().map(|node| spot(node).rack).collect();
        let racks_there = racks.get(datacenter).map_or(0, BTreeSet::len);
        if used.len() < there.len().min(racks_there) {
            return Some(format!(
                "{} racks of {datacenter} used by {} replicas, {racks_there} racks there",
                used.len(),
                there.len()
            ));
        }
    }
    if !short {
        if let Some(stray) = held.keys().find(|dc| !per_dc.contains_key(*dc)) {
            return Some(format!("a replica in {stray}, which declares none"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkers::fixtures::params;
    use crate::checkers::{FinalState, TopologyView};
    use crate::history::History;
    use ringkv_core::placement::Location;

    /// Six nodes: n1..n4 in "east" over racks a, b, a, b; n5, n6 in "west" over racks a, b.
    fn topology() -> TopologyView {
        let spots = [("east", "a"), ("east", "b"), ("east", "a"), ("east", "b"), ("west", "a")];
        let mut locations: BTreeMap<NodeId, Location> = spots
            .iter()
            .enumerate()
            .map(|(index, (dc, rack))| (NodeId(index as u32 + 1), Location::new(*dc, *rack)))
            .collect();
        locations.insert(NodeId(6), Location::new("west", "b"));
        let replicas_per_dc = [("east".to_string(), 2), ("west".to_string(), 1)].into();
        TopologyView { locations, replicas_per_dc }
    }

    fn run(owners: &[u32]) -> Vec<Violation> {
        let history = History::new();
        let mut final_state = FinalState::new();
        let owners: Vec<NodeId> = owners.iter().map(|id| NodeId(*id)).collect();
        let key = FinalKey { owners_expected: owners.len(), owners, ..FinalKey::default() };
        final_state.insert(bytes::Bytes::from_static(b"k"), key);
        let members: Vec<NodeId> = (1..=6).map(NodeId).collect();
        let topology = topology();
        let input = CheckInput {
            history: &history,
            final_state: &final_state,
            views: &[],
            expected_members: &members,
            topology: &topology,
            params: params(),
        };
        check(input, &Analysis::new(&history))
    }

    #[test]
    fn replicas_on_distinct_racks_with_the_declared_counts_pass() {
        assert_eq!(run(&[1, 2, 5]), Vec::new());
        assert_eq!(run(&[4, 6, 3]), Vec::new());
    }

    #[test]
    fn two_replicas_on_one_rack_or_wrong_counts_are_caught() {
        // n1 and n3 share east's rack a while rack b is free: what placement-ignores-racks does.
        let shared = run(&[1, 3, 5]);
        assert_eq!(shared.len(), 1, "{shared:?}");
        assert!(shared[0].message.contains("racks of east"), "{shared:?}");
        let counts = run(&[1, 5, 6]);
        assert!(counts[0].message.contains("1 replicas in east"), "{counts:?}");
        assert_eq!(run(&[1, 1, 5]).len(), 1, "a node named twice");
    }
}
