//! The consistent-hash ring: which nodes hold which keys.
//!
//! Owns: the map from 64-bit tokens to physical nodes. Each node places `vnodes_per_weight *
//! weight` virtual nodes on the ring. Inputs: members added or removed. Outputs: preference lists
//! and the set of ranges whose replicas change between two rings. No timers.
//!
//! The hash is XXH3-64 (seed 0) from `xxhash-rust`: specified byte for byte, so it is the same on
//! every platform and in every release. A key sits at `xxh3_64(key)`. Virtual node `i` of node
//! `id` sits at `xxh3_64("ringkv-vnode" ++ id as u32 LE ++ i as u32 LE)`. A token range is the
//! half-open arc `(previous token, token]`, owned by the token's node; the arc wraps past
//! `u64::MAX` to 0.
//!
//! Placement (Cassandra's NetworkTopologyStrategy, in its essentials): a key's replicas are
//! found walking clockwise from its token. With no per-datacenter replication the whole
//! cluster is one group of N; with `replicas_per_dc` each named datacenter holds its own
//! count. Within a group a node is taken when its rack has not yet given a replica; one whose
//! rack already has is set aside, and the set-aside nodes are taken in walk order once every
//! rack of the group has given one. So replicas land on as many racks as exist, and with a
//! single rack the walk is the plain clockwise one. As in Cassandra, racks should hold equal
//! numbers of nodes: a node on a small rack holds more than its share, and the first node of a
//! new rack is a replica of every range while a group has fewer racks than replicas. The order is a prefix order: the first `n`
//! of a longer list are the list for `n`, and a list stays constant over each arc.
//!
//! Invariants: every token maps to a member; every member with weight > 0 has exactly its
//! vnode count of tokens.

use std::collections::{BTreeMap, BTreeSet};

use xxhash_rust::xxh3::xxh3_64;

use crate::placement::Location;
use crate::types::NodeId;

/// Virtual nodes per unit of weight when the operator sets nothing.
pub const VNODES_PER_WEIGHT_DEFAULT: u32 = 16;

/// Where a key or token sits on the ring.
pub type Token = u64;

/// The consistent-hash ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    vnodes_per_weight: u32,
    tokens: BTreeMap<Token, NodeId>,
    weights: BTreeMap<NodeId, u32>,
    /// Each member's location (members added without one stand at the default).
    locations: BTreeMap<NodeId, Location>,
    /// Replicas per datacenter; empty for one group of N over the whole cluster.
    replicas_per_dc: BTreeMap<String, usize>,
    /// Whether every member stands on one rack and no datacenter has its own count, so the
    /// walk is the plain clockwise one (the common case, kept fast).
    plain: bool,
    /// Every arc's preference list for one count of replicas, built at the first lookup
    /// after a change (see [`PreferenceLists`]).
    lists: PreferenceLists,
}

/// The preference list of every arc of a ring for one count of replicas (the first count asked
/// for after a change; lookups for another count walk the ring).
///
/// A list depends only on the first ring token at or after the looked-up token (the end of its
/// arc): both walks start there. A lookup is then a binary search instead of a walk that
/// allocates, and for rack- and datacenter-aware placement builds several maps per call: the
/// walks were about 5% of the simulator's time (`preference_list_for_token`, `ranges`,
/// `placed_list`), over rings that change only when membership does. Shared between clones
/// (the `Arc`), and ignored by equality, since it is derived from the fields that are compared.
#[derive(Debug, Clone, Default)]
struct PreferenceLists(std::sync::OnceLock<std::sync::Arc<ArcLists>>);

/// A count of replicas, and each arc's end token with its preference list, by token.
type ArcLists = (usize, Vec<(Token, Vec<NodeId>)>);

impl PartialEq for PreferenceLists {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for PreferenceLists {}

/// A token range whose preference list differs between two rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeMove {
    /// Exclusive start of the arc.
    pub start_exclusive: Token,
    /// Inclusive end of the arc.
    pub end_inclusive: Token,
    /// Replicas before the change, in preference order.
    pub before: Vec<NodeId>,
    /// Replicas after the change, in preference order.
    pub after: Vec<NodeId>,
}

impl RangeMove {
    /// Nodes that gain the range.
    pub fn gained_by(&self) -> Vec<NodeId> {
        self.after.iter().filter(|node| !self.before.contains(node)).copied().collect()
    }

    /// Nodes that lose the range.
    pub fn lost_by(&self) -> Vec<NodeId> {
        self.before.iter().filter(|node| !self.after.contains(node)).copied().collect()
    }

    /// Whether `token` lies in this range.
    pub fn contains(&self, token: Token) -> bool {
        arc_contains(self.start_exclusive, self.end_inclusive, token)
    }
}

impl Ring {
    /// An empty ring placing `vnodes_per_weight` virtual nodes per unit of member weight.
    pub fn new(vnodes_per_weight: u32) -> Self {
        assert!(vnodes_per_weight > 0, "a ring needs at least one virtual node per member");
        Ring {
            vnodes_per_weight,
            tokens: BTreeMap::new(),
            weights: BTreeMap::new(),
            locations: BTreeMap::new(),
            replicas_per_dc: BTreeMap::new(),
            plain: true,
            lists: PreferenceLists::default(),
        }
    }

    /// Gives each named datacenter its own count of replicas (empty: one group of N).
    pub fn set_replicas_per_dc(&mut self, replicas_per_dc: BTreeMap<String, usize>) {
        self.replicas_per_dc = replicas_per_dc;
        self.refresh_plain();
        self.lists = PreferenceLists::default();
    }

    /// Replicas per datacenter (empty when the whole cluster is one group).
    pub fn replicas_per_dc(&self) -> &BTreeMap<String, usize> {
        &self.replicas_per_dc
    }

    /// Adds a member standing at `location` (or changes its weight and location).
    pub fn add_at(&mut self, node: NodeId, weight: u32, location: Location) {
        self.add(node, weight);
        if self.weights.contains_key(&node) {
            self.locations.insert(node, location);
            self.refresh_plain();
            self.lists = PreferenceLists::default();
        }
    }

    /// Where a member stands (the default location for one added without).
    pub fn location(&self, node: NodeId) -> &Location {
        static DEFAULT: std::sync::OnceLock<Location> = std::sync::OnceLock::new();
        self.locations.get(&node).unwrap_or_else(|| DEFAULT.get_or_init(Location::default))
    }

    /// The members of a datacenter, in id order.
    pub fn datacenter_members(&self, datacenter: &str) -> Vec<NodeId> {
        self.members().filter(|node| self.location(*node).datacenter == datacenter).collect()
    }

    fn refresh_plain(&mut self) {
        let one_rack = {
            let mut spots = self.members().map(|node| self.location(node));
            let first = spots.next();
            spots.all(|spot| Some(spot) == first)
        };
        self.plain = self.replicas_per_dc.is_empty() && one_rack;
    }

    /// A ring of the given members, each of weight 1.
    pub fn with_members(vnodes_per_weight: u32, members: impl IntoIterator<Item = NodeId>) -> Self {
        let mut ring = Ring::new(vnodes_per_weight);
        for member in members {
            ring.add(member, 1);
        }
        ring
    }

    /// The token of a key.
    pub fn key_token(key: &[u8]) -> Token {
        xxh3_64(key)
    }

    /// Adds a member (or changes its weight). A weight of 0 removes it.
    pub fn add(&mut self, node: NodeId, weight: u32) {
        self.remove(node);
        self.lists = PreferenceLists::default();
        if weight == 0 {
            return;
        }
        let vnodes_count = self.vnodes_per_weight.saturating_mul(weight);
        for index in 0..vnodes_count {
            let mut token = vnode_token(node, index);
            // A collision of two 64-bit hashes is astronomically rare; when it happens the later
            // vnode steps forward so that the count of tokens per member stays exact.
            while self.tokens.contains_key(&token) {
                token = token.wrapping_add(1);
            }
            self.tokens.insert(token, node);
        }
        self.weights.insert(node, weight);
        debug_assert_eq!(
            self.tokens.values().filter(|owner| **owner == node).count(),
            vnodes_count as usize
        );
    }

    /// Removes a member and all its tokens.
    pub fn remove(&mut self, node: NodeId) {
        self.lists = PreferenceLists::default();
        if self.weights.remove(&node).is_some() {
            self.tokens.retain(|_, owner| *owner != node);
        }
        if self.locations.remove(&node).is_some() {
            self.refresh_plain();
        }
    }

    /// The members, in id order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.weights.keys().copied()
    }

    /// Number of members.
    pub fn members_count(&self) -> usize {
        self.weights.len()
    }

    /// Whether `node` is a member.
    pub fn contains(&self, node: NodeId) -> bool {
        self.weights.contains_key(&node)
    }

    /// The key's first `replicas_n` replicas from `token`, placed by datacenter and rack
    /// (module docs): fewer when the ring (or, with per-datacenter counts, a datacenter) has
    /// fewer members.
    pub fn preference_list_for_token(&self, token: Token, replicas_n: usize) -> Vec<NodeId> {
        let lists = self.lists.0.get_or_init(|| {
            let lists = self
                .tokens
                .keys()
                .map(|end| (*end, self.walk_preference_list(*end, replicas_n)))
                .collect();
            std::sync::Arc::new((replicas_n, lists))
        });
        if lists.0 == replicas_n && !lists.1.is_empty() {
            let at = lists.1.partition_point(|(end, _)| *end < token);
            return lists.1[if at == lists.1.len() { 0 } else { at }].1.clone();
        }
        self.walk_preference_list(token, replicas_n)
    }

    /// [`Ring::preference_list_for_token`] by walking the ring from `token`.
    fn walk_preference_list(&self, token: Token, replicas_n: usize) -> Vec<NodeId> {
        if !self.plain {
            return self.placed_list(token, replicas_n, false);
        }
        let mut replicas = Vec::with_capacity(replicas_n);
        let clockwise = self.tokens.range(token..).chain(self.tokens.range(..token));
        for (_, node) in clockwise {
            if replicas.len() == replicas_n {
                break;
            }
            if !replicas.contains(node) || crate::planted!(PreferenceListRepeatsNode) {
                replicas.push(*node);
            }
        }
        debug_assert!(replicas.len() == replicas_n.min(self.weights.len()));
        replicas
    }

    /// Every member in preference order from the key: its replicas, then every other member in
    /// walk order (where a write looks for fallbacks).
    pub fn preference_order(&self, key: &[u8]) -> Vec<NodeId> {
        let token = Ring::key_token(key);
        if self.plain {
            return self.preference_list_for_token(token, self.weights.len());
        }
        self.placed_list(token, self.weights.len(), true)
    }

    /// The rack-aware walk: replicas group by group (module docs), then, with `then_rest`, the
    /// other members in walk order.
    fn placed_list(&self, token: Token, replicas_n: usize, then_rest: bool) -> Vec<NodeId> {
        struct Group<'a> {
            wanted: usize,
            taken: usize,
            racks_total: usize,
            racks_seen: BTreeSet<(&'a str, &'a str)>,
            set_aside: Vec<NodeId>,
        }
        let per_dc = !self.replicas_per_dc.is_empty();
        let group_key = |node: NodeId| -> Option<&str> {
            let datacenter = self.location(node).datacenter.as_str();
            if !per_dc {
                Some("")
            } else if self.replicas_per_dc.contains_key(datacenter) {
                Some(datacenter)
            } else {
                None
            }
        };
        let mut groups: BTreeMap<&str, Group<'_>> = BTreeMap::new();
        let mut racks: BTreeMap<&str, BTreeSet<(&str, &str)>> = BTreeMap::new();
        let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
        for node in self.members() {
            if let Some(key) = group_key(node) {
                let location = self.location(node);
                racks
                    .entry(key)
                    .or_default()
                    .insert((location.datacenter.as_str(), location.rack.as_str()));
                *sizes.entry(key).or_default() += 1;
            }
        }
        for (key, size) in &sizes {
            let wanted = if per_dc { self.replicas_per_dc[*key] } else { replicas_n };
            groups.insert(
                key,
                Group {
                    wanted: wanted.min(*size),
                    taken: 0,
                    racks_total: racks[key].len(),
                    racks_seen: BTreeSet::new(),
                    set_aside: Vec::new(),
                },
            );
        }
        let wanted_total: usize = groups.values().map(|group| group.wanted).sum();
        let mut chosen: Vec<NodeId> = Vec::with_capacity(wanted_total.max(replicas_n));
        let mut walked: Vec<NodeId> = Vec::with_capacity(self.weights.len());
        let clockwise = self.tokens.range(token..).chain(self.tokens.range(..token));
        for (_, node) in clockwise {
            // Past the replicas the rest follow in walk order, so stop early only when the
            // replicas alone fill the list or no rest is wanted and every group is full.
            if chosen.len() >= replicas_n || (!then_rest && chosen.len() == wanted_total) {
                break;
            }
            if walked.contains(node) {
                continue;
            }
            walked.push(*node);
            let Some(group) = group_key(*node).and_then(|key| groups.get_mut(key)) else {
                continue;
            };
            if group.taken == group.wanted {
                continue;
            }
            let location = self.location(*node);
            let rack = (location.datacenter.as_str(), location.rack.as_str());
            let all_seen = group.racks_seen.len() == group.racks_total;
            if all_seen || crate::planted!(PlacementIgnoresRacks) {
                group.taken += 1;
                chosen.push(*node);
            } else if group.racks_seen.insert(rack) {
                group.taken += 1;
                chosen.push(*node);
                if group.racks_seen.len() == group.racks_total {
                    for aside in std::mem::take(&mut group.set_aside) {
                        if group.taken < group.wanted {
                            group.taken += 1;
                            chosen.push(aside);
                        }
                    }
                }
            } else {
                group.set_aside.push(*node);
            }
        }
        // Racks never all seen (none can be short, as every member is walked): take the
        // set-aside nodes in walk order.
        for group in groups.values_mut() {
            for aside in std::mem::take(&mut group.set_aside) {
                if group.taken < group.wanted {
                    group.taken += 1;
                    chosen.push(aside);
                }
            }
        }
        for node in walked.into_iter().filter(|_| then_rest) {
            if chosen.len() >= replicas_n {
                break;
            }
            if !chosen.contains(&node) {
                chosen.push(node);
            }
        }
        chosen.truncate(replicas_n);
        chosen
    }

    /// The preference list of a key: its `replicas_n` replicas in order.
    pub fn preference_list(&self, key: &[u8], replicas_n: usize) -> Vec<NodeId> {
        self.preference_list_for_token(Ring::key_token(key), replicas_n)
    }

    /// The end of the arc holding `token` when that arc does not wrap past `u64::MAX` from
    /// `token`: the first ring token at or after it; `None` when `token` lies past the last ring
    /// token (its arc wraps to the first).
    pub fn arc_end_from(&self, token: Token) -> Option<Token> {
        self.tokens.range(token..).next().map(|(end, _)| *end)
    }

    /// The primary replica of a token.
    pub fn primary(&self, token: Token) -> Option<NodeId> {
        self.preference_list_for_token(token, 1).first().copied()
    }

    /// Every arc `(start, end]` of this ring with its preference list, clockwise from the lowest
    /// token. Empty for an empty ring.
    pub fn ranges(&self, replicas_n: usize) -> Vec<RangeMove> {
        let boundaries: Vec<Token> = self.tokens.keys().copied().collect();
        arcs(&boundaries)
            .map(|(start, end)| {
                let replicas = self.preference_list_for_token(end, replicas_n);
                RangeMove {
                    start_exclusive: start,
                    end_inclusive: end,
                    before: replicas.clone(),
                    after: replicas,
                }
            })
            .collect()
    }

    /// The ranges whose preference list differs from `self` to `next`, over the union of both
    /// rings' tokens, so each returned arc has one preference list on either side.
    pub fn moves_to(&self, next: &Ring, replicas_n: usize) -> Vec<RangeMove> {
        let mut boundaries: Vec<Token> =
            self.tokens.keys().chain(next.tokens.keys()).copied().collect();
        boundaries.sort_unstable();
        boundaries.dedup();
        arcs(&boundaries)
            .filter_map(|(start, end)| {
                let before = self.preference_list_for_token(end, replicas_n);
                let after = next.preference_list_for_token(end, replicas_n);
                (before != after).then_some(RangeMove {
                    start_exclusive: start,
                    end_inclusive: end,
                    before,
                    after,
                })
            })
            .collect()
    }

    /// The share of the ring (0.0 to 1.0) each member owns as primary replica.
    pub fn primary_shares(&self) -> BTreeMap<NodeId, f64> {
        let mut shares: BTreeMap<NodeId, f64> = self.members().map(|node| (node, 0.0)).collect();
        for range in self.ranges(1) {
            let width = range.end_inclusive.wrapping_sub(range.start_exclusive);
            // A single-token ring owns the whole circle: its only arc has width 0 mod 2^64.
            let share = if width == 0 { 1.0 } else { width as f64 / 2f64.powi(64) };
            *shares.entry(range.after[0]).or_insert(0.0) += share;
        }
        shares
    }
}

fn vnode_token(node: NodeId, index: u32) -> Token {
    let mut bytes = [0u8; 20];
    bytes[..12].copy_from_slice(b"ringkv-vnode");
    bytes[12..16].copy_from_slice(&node.0.to_le_bytes());
    bytes[16..].copy_from_slice(&index.to_le_bytes());
    xxh3_64(&bytes)
}

/// The arcs `(previous, token]` between sorted distinct boundaries, the first wrapping around
/// from the last boundary.
fn arcs(boundaries: &[Token]) -> impl Iterator<Item = (Token, Token)> + '_ {
    let last = boundaries.last().copied();
    boundaries.iter().enumerate().map(move |(index, end)| {
        let start = if index == 0 { last.unwrap_or(0) } else { boundaries[index - 1] };
        (start, *end)
    })
}

/// The tokens of the arc `(start_exclusive, end_inclusive]` as inclusive intervals in token
/// order: one, or two when the arc wraps past the top of the ring (a start equal to the end is
/// the whole circle).
pub fn token_intervals(start_exclusive: Token, end_inclusive: Token) -> Vec<(Token, Token)> {
    if start_exclusive < end_inclusive {
        return vec![(start_exclusive + 1, end_inclusive)];
    }
    let mut intervals = vec![(0, end_inclusive)];
    if start_exclusive < Token::MAX {
        intervals.push((start_exclusive + 1, Token::MAX));
    }
    intervals
}

fn arc_contains(start_exclusive: Token, end_inclusive: Token, token: Token) -> bool {
    if start_exclusive < end_inclusive {
        token > start_exclusive && token <= end_inclusive
    } else {
        // The arc wraps (or, when start == end, is the whole circle).
        token > start_exclusive || token <= end_inclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn nodes(count: u32) -> Vec<NodeId> {
        (0..count).map(NodeId).collect()
    }

    #[test]
    fn preference_list_has_distinct_nodes_in_ring_order() {
        let ring = Ring::with_members(16, nodes(5));
        for key in 0..1000u32 {
            let list = ring.preference_list(&key.to_le_bytes(), 3);
            assert_eq!(list.len(), 3);
            let mut sorted = list.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 3, "repeated node in {list:?}");
            assert_eq!(list[0], ring.primary(Ring::key_token(&key.to_le_bytes())).unwrap());
        }
        assert_eq!(Ring::with_members(16, nodes(2)).preference_list(b"k", 3).len(), 2);
    }

    #[test]
    fn hash_is_pinned_across_platforms_and_releases() {
        // These values pin XXH3-64 and the vnode layout: a change here reshuffles every cluster.
        assert_eq!(Ring::key_token(b""), 0x2d06800538d394c2);
        assert_eq!(vnode_token(NodeId(0), 0), xxh3_64(b"ringkv-vnode\0\0\0\0\0\0\0\0"));
    }

    #[test]
    fn weight_two_gets_about_twice_the_share() {
        let mut ring = Ring::new(256);
        ring.add(NodeId(0), 1);
        ring.add(NodeId(1), 1);
        ring.add(NodeId(2), 2);
        let shares = ring.primary_shares();
        let ratio = shares[&NodeId(2)] / shares[&NodeId(0)];
        assert!((1.6..2.5).contains(&ratio), "weight-2 share ratio {ratio}");
        let total: f64 = shares.values().sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn arcs_cover_the_circle_and_wrap() {
        assert!(arc_contains(10, 20, 15));
        assert!(!arc_contains(10, 20, 10));
        assert!(arc_contains(10, 20, 20));
        assert!(arc_contains(u64::MAX - 5, 3, 1));
        assert!(arc_contains(u64::MAX - 5, 3, u64::MAX));
        assert!(!arc_contains(u64::MAX - 5, 3, 4));
        let ring = Ring::with_members(4, nodes(3));
        let ranges = ring.ranges(1);
        for token in [0u64, 1, u64::MAX, 12345678901234] {
            assert_eq!(ranges.iter().filter(|range| range.contains(token)).count(), 1);
        }
    }

    /// A random topology: up to 3 datacenters of up to 3 racks, 1..=12 nodes placed at random.
    fn topology() -> impl proptest::strategy::Strategy<Value = Vec<Location>> {
        use proptest::prelude::*;
        proptest::collection::vec((0..3u8, 0..3u8), 1..=12).prop_map(|spots| {
            spots
                .into_iter()
                .map(|(dc, rack)| Location::new(format!("dc{dc}"), format!("r{rack}")))
                .collect()
        })
    }

    fn ring_of(locations: &[Location], per_dc: &BTreeMap<String, usize>) -> Ring {
        let mut ring = Ring::new(16);
        ring.set_replicas_per_dc(per_dc.clone());
        for (index, location) in locations.iter().enumerate() {
            ring.add_at(NodeId(index as u32), 1, location.clone());
        }
        ring
    }

    /// Checks one preference list against its group: distinct nodes, the group's count (capped
    /// by its members) and as many racks as the group has, up to its count.
    fn check_group(ring: &Ring, list: &[NodeId], group: &[NodeId], wanted: usize) {
        let picked: Vec<NodeId> =
            list.iter().copied().filter(|node| group.contains(node)).collect();
        assert_eq!(picked.len(), wanted.min(group.len()), "{list:?} of group {group:?}");
        let racks_total: BTreeSet<&Location> =
            group.iter().map(|node| ring.location(*node)).collect();
        let racks_used: BTreeSet<&Location> =
            picked.iter().map(|node| ring.location(*node)).collect();
        assert_eq!(racks_used.len(), racks_total.len().min(picked.len()), "racks of {list:?}");
    }

    proptest::proptest! {
        #[test]
        fn replicas_are_distinct_and_spread_over_racks(
            locations in topology(),
            replicas_n in 1usize..5,
            counts in proptest::collection::vec(0usize..4, 3),
            per_dc_mode: bool,
        ) {
            let per_dc: BTreeMap<String, usize> = if per_dc_mode {
                counts.iter().enumerate().map(|(dc, count)| (format!("dc{dc}"), *count)).collect()
            } else {
                BTreeMap::new()
            };
            let ring = ring_of(&locations, &per_dc);
            let total = if per_dc_mode { counts.iter().sum() } else { replicas_n };
            for key in 0..200u32 {
                let key = key.to_le_bytes();
                let list = ring.preference_list(&key, total);
                let distinct: BTreeSet<NodeId> = list.iter().copied().collect();
                proptest::prop_assert_eq!(distinct.len(), list.len());
                if per_dc_mode {
                    for (dc, count) in &per_dc {
                        check_group(&ring, &list, &ring.datacenter_members(dc), *count);
                    }
                } else {
                    let everyone: Vec<NodeId> = ring.members().collect();
                    check_group(&ring, &list, &everyone, replicas_n);
                }
                // The order for fallbacks starts with the replicas and names every member once.
                let order = ring.preference_order(&key);
                proptest::prop_assert_eq!(&order[..list.len()], &list[..]);
                proptest::prop_assert_eq!(order.len(), ring.members_count());
                // Prefix order: fewer replicas are a prefix of more.
                if !list.is_empty() {
                    proptest::prop_assert_eq!(&ring.preference_list(&key, 1)[..], &list[..1]);
                }
            }
        }

        #[test]
        fn adding_a_node_moves_only_ranges_it_takes(
            locations in topology(),
            new_spot in (0..3u8, 0..3u8),
            replicas_n in 1usize..4,
        ) {
            let before = ring_of(&locations, &BTreeMap::new());
            let mut after = before.clone();
            let new_node = NodeId(locations.len() as u32);
            after.add_at(new_node, 1, Location::new(format!("dc{}", new_spot.0), format!("r{}", new_spot.1)));
            let mut moved_width = 0f64;
            for range in before.moves_to(&after, replicas_n) {
                // Only ranges the new node takes move.
                proptest::prop_assert_eq!(range.gained_by(), vec![new_node], "{:?}", range);
                moved_width += range.end_inclusive.wrapping_sub(range.start_exclusive) as f64;
            }
            // The new node takes about its share when its rack exists already: its rack's
            // share of the replicas (N of R racks, at least one) split over the rack's nodes,
            // with room for the spread of 16 vnodes per node. (The first node of a new rack is
            // a replica of every range while the racks are fewer than N: see the module docs.)
            let spot = after.location(new_node).clone();
            let same_rack = after.members().filter(|node| *after.location(*node) == spot).count();
            let racks: BTreeSet<&Location> = after.members().map(|node| after.location(node)).collect();
            if same_rack > 1 {
                let share = moved_width / 2f64.powi(64);
                let rack_share = (replicas_n as f64 / racks.len() as f64).max(1.0);
                let bound = (3.0 * rack_share / same_rack as f64).min(1.0);
                proptest::prop_assert!(share <= bound + 1e-9, "moved {share} of the ring, bound {bound}");
            }
        }
    }

    /// The cached lists answer exactly what the walk does: at ring tokens, just past them, at
    /// both ends of the token space, for plain and rack-aware rings, for another count of
    /// replicas, and again after the ring changed.
    #[test]
    fn cached_preference_lists_equal_the_walk_and_follow_changes() {
        let plain = Ring::with_members(8, (0..5).map(NodeId));
        let racks: Vec<Location> = (0..6)
            .map(|index| Location::new("dc1", if index % 3 == 0 { "a" } else { "b" }))
            .collect();
        let mut racked = ring_of(&racks, &BTreeMap::new());
        let mut rings = vec![plain.clone(), racked.clone()];
        racked.add_at(NodeId(9), 2, Location::new("dc1", "c"));
        let mut shrunk = plain.clone();
        shrunk.remove(NodeId(2));
        rings.extend([racked, shrunk]);
        for ring in &rings {
            let mut probes = vec![0, 1, u64::MAX, u64::MAX - 1];
            for end in ring.tokens.keys() {
                probes.extend([*end, end.wrapping_add(1), end.wrapping_sub(1)]);
            }
            for token in probes {
                for replicas_n in [3, 3, 2] {
                    assert_eq!(
                        ring.preference_list_for_token(token, replicas_n),
                        ring.walk_preference_list(token, replicas_n),
                        "token {token}, n {replicas_n}"
                    );
                }
            }
        }
        // A ring whose lists were cached and then changed answers for its new membership.
        let mut changed = plain.clone();
        assert_eq!(changed.preference_list(b"k", 3), plain.preference_list(b"k", 3));
        for node in 0..4 {
            changed.remove(NodeId(node));
        }
        assert_eq!(changed.preference_list(b"k", 3), vec![NodeId(4)]);
        assert_eq!(Ring::new(8).preference_list(b"k", 3), Vec::<NodeId>::new());
    }

    #[test]
    fn the_first_node_of_a_new_rack_replicates_everything_while_racks_are_fewer_than_n() {
        let locations: Vec<Location> = (0..6)
            .map(|index| Location::new("dc1", if index % 2 == 0 { "a" } else { "b" }))
            .collect();
        let before = ring_of(&locations, &BTreeMap::new());
        let mut after = before.clone();
        after.add_at(NodeId(6), 1, Location::new("dc1", "c"));
        for key in 0..200u32 {
            assert!(after.preference_list(&key.to_le_bytes(), 3).contains(&NodeId(6)));
        }
    }

    #[test]
    fn per_datacenter_counts_and_racks_on_a_fixed_topology() {
        let locations: Vec<Location> = [
            ("east", "a"),
            ("east", "a"),
            ("east", "b"),
            ("east", "c"),
            ("west", "a"),
            ("west", "b"),
            ("west", "b"),
        ]
        .iter()
        .map(|(dc, rack)| Location::new(*dc, *rack))
        .collect();
        let per_dc: BTreeMap<String, usize> =
            [("east".to_string(), 3), ("west".to_string(), 2)].into();
        let ring = ring_of(&locations, &per_dc);
        for key in 0..500u32 {
            let list = ring.preference_list(&key.to_le_bytes(), 5);
            assert_eq!(list.len(), 5);
            let east: Vec<&Location> = list
                .iter()
                .map(|node| ring.location(*node))
                .filter(|spot| spot.datacenter == "east")
                .collect();
            let east_racks: BTreeSet<&str> = east.iter().map(|spot| spot.rack.as_str()).collect();
            assert_eq!((east.len(), east_racks.len()), (3, 3), "{list:?}");
            let west_racks: BTreeSet<&str> = list
                .iter()
                .map(|node| ring.location(*node))
                .filter(|spot| spot.datacenter == "west")
                .map(|spot| spot.rack.as_str())
                .collect();
            assert_eq!(west_racks.len(), 2, "{list:?}");
        }
        // One rack everywhere and no per-DC counts: the plain clockwise walk.
        let plain = Ring::with_members(16, nodes(5));
        assert!(plain.plain);
    }
}
