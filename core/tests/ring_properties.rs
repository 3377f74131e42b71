//! Properties of the consistent-hash ring: a membership change moves only the ranges of the node
//! that changed, about 1/k of the ring, and vnodes keep the load balanced within a stated bound.

use proptest::prelude::*;
use ringkv_core::ring::Ring;
use ringkv_core::NodeId;

/// Share of the ring (0.0 to 1.0) covered by the moved ranges.
fn moved_share(before: &Ring, after: &Ring, replicas_n: usize) -> f64 {
    before
        .moves_to(after, replicas_n)
        .iter()
        .map(|range| range.end_inclusive.wrapping_sub(range.start_exclusive) as f64 / 2f64.powi(64))
        .sum()
}

fn ring_of(ids: &[u32], vnodes: u32) -> Ring {
    Ring::with_members(vnodes, ids.iter().copied().map(NodeId))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Tolerance: with 16 vnodes a node's share is a sum of 16 arcs (coefficient of variation
    /// 1/4), so the moved share must lie within [0.2, 2.5] times 1/k; far outside 4 sigma.
    #[test]
    fn a_join_moves_only_ranges_to_the_new_node_and_about_one_kth(
        ids in proptest::collection::btree_set(0u32..10_000, 3..30),
        newcomer in 10_000u32..20_000,
    ) {
        let ids: Vec<u32> = ids.into_iter().collect();
        let before = ring_of(&ids, 16);
        let mut after = before.clone();
        after.add(NodeId(newcomer), 1);
        for range in before.moves_to(&after, 3) {
            prop_assert_eq!(range.gained_by(), vec![NodeId(newcomer)], "{:?}", range);
            prop_assert_eq!(range.lost_by().len(), 1);
        }
        let k = ids.len() as f64 + 1.0;
        let share = moved_share(&before, &after, 1);
        prop_assert!(share >= 0.2 / k && share <= 2.5 / k, "primary share moved {} for k={}", share, k);
    }

    #[test]
    fn a_departure_moves_only_ranges_from_the_leaving_node_and_about_one_kth(
        ids in proptest::collection::btree_set(0u32..10_000, 4..30),
        leaver_index in 0usize..1000,
    ) {
        let ids: Vec<u32> = ids.into_iter().collect();
        let leaver = NodeId(ids[leaver_index % ids.len()]);
        let before = ring_of(&ids, 16);
        let mut after = before.clone();
        after.remove(leaver);
        for range in before.moves_to(&after, 3) {
            prop_assert_eq!(range.lost_by(), vec![leaver], "{:?}", range);
            prop_assert!(!range.after.contains(&leaver));
        }
        let k = ids.len() as f64;
        let share = moved_share(&before, &after, 1);
        prop_assert!(share >= 0.2 / k && share <= 2.5 / k, "primary share moved {} for k={}", share, k);
    }

    #[test]
    fn moved_keys_match_the_moved_ranges(ids in proptest::collection::btree_set(0u32..1_000, 3..12), keys in proptest::collection::vec(any::<u64>(), 200)) {
        let ids: Vec<u32> = ids.into_iter().collect();
        let before = ring_of(&ids, 16);
        let mut after = before.clone();
        after.add(NodeId(5_000), 1);
        let moves = before.moves_to(&after, 3);
        for key in keys {
            let token = Ring::key_token(&key.to_le_bytes());
            let changed = before.preference_list_for_token(token, 3) != after.preference_list_for_token(token, 3);
            prop_assert_eq!(changed, moves.iter().any(|range| range.contains(token)));
        }
    }
}

/// The documented balance bounds (ARCHITECTURE.md): the most loaded node owns at most 2.0x the
/// mean with 16 vnodes and at most 1.35x with 256, for 5, 10 and 50 nodes of ids 0..k.
#[test]
fn load_balance_stays_within_the_documented_bound() {
    println!("{:>6} {:>7} {:>9}", "nodes", "vnodes", "max/mean");
    for vnodes in [16u32, 256] {
        for nodes in [5u32, 10, 50] {
            let ids: Vec<u32> = (0..nodes).collect();
            let shares = ring_of(&ids, vnodes).primary_shares();
            let max = shares.values().copied().fold(0.0, f64::max);
            let ratio = max * f64::from(nodes);
            println!("{nodes:>6} {vnodes:>7} {ratio:>9.3}");
            let bound = if vnodes == 16 { 2.0 } else { 1.35 };
            assert!(
                ratio <= bound,
                "{nodes} nodes x {vnodes} vnodes: max/mean {ratio:.3} > {bound}"
            );
        }
    }
}
