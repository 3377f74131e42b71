//! Gossip membership: every node's view of every node, spread by push-pull exchanges.
//!
//! Owns: per known node, a [`MemberState`] (generation, version, status, weight, address,
//! datacenter, rack) and this node's own state. Inputs: the round timer and gossip messages.
//! Outputs: gossip messages to peers (drained with [`Gossip::poll_message`]) and, per handled
//! message, the nodes whose state advanced (the failure detector takes those as heartbeats).
//! Timer: one round every `interval`.
//!
//! A round: bump our own version (the heartbeat), pick a random peer believed alive (and, with
//! probability 1/(alive+1), one believed down, so a healed partition is noticed; and a seed when
//! neither pick was one, so separated groups find each other), and send it a `Syn` of digests
//! `(node, generation, version)`. The peer answers `Ack` with the states it has that are newer
//! and the ids it wants; the initiator answers `Ack2` with those. A state replaces another when
//! its `(generation, version)` is greater: a restarted node's new generation beats everything its
//! old self said.
//!
//! Messages are bounded: at most `entries_per_message_max` digests or states each; what does not
//! fit goes in a later round.
//!
//! Invariants: our own entry exists and carries our current generation; versions only grow
//! within a generation.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::time::{Duration, Instant};
use crate::types::NodeId;

/// Largest ring weight a member may advertise: each unit places `vnodes_per_weight` tokens, so an
/// unbounded weight from a faulty peer would make every node build an enormous ring.
pub const MEMBER_WEIGHT_MAX: u32 = 256;

/// Longest address, datacenter or rack name accepted from gossip, in bytes.
const MEMBER_LABEL_BYTES_MAX: usize = 256;

/// How far an operator's mark moves another node's version (see [`Gossip::mark`]).
const MARK_VERSION_JUMP: u64 = 1 << 32;

/// Where a node is in its life in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Streaming the ranges it will own; not yet an owner.
    Joining,
    /// Owns its ranges.
    Normal,
    /// Streaming its ranges away; still an owner.
    Leaving,
    /// Gone; kept so that the news spreads.
    Left,
}

impl MemberStatus {
    /// Whether a node in this status owns ranges on the ring.
    pub fn owns_ranges(self) -> bool {
        matches!(self, MemberStatus::Normal | MemberStatus::Leaving)
    }
}

/// What the cluster knows about one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    /// Bumped (and persisted) at every start of the node.
    pub generation: u64,
    /// Bumped at every round and every change, within a generation.
    pub version: u64,
    /// Its status.
    pub status: MemberStatus,
    /// Its ring weight (virtual nodes = weight x vnodes per weight).
    pub weight: u32,
    /// Its peer address, for drivers that dial by gossip.
    pub address: String,
    /// Its datacenter.
    pub datacenter: String,
    /// Its rack.
    pub rack: String,
}

impl MemberState {
    /// Whether an operator removed this node on its behalf (it left without handing its
    /// ranges over): the mark's version jump is above any heartbeat of a generation.
    pub fn removed_by_operator(&self) -> bool {
        self.status == MemberStatus::Left && self.version >= MARK_VERSION_JUMP
    }

    fn newer_than(&self, other: &MemberState) -> bool {
        (self.generation, self.version) > (other.generation, other.version)
    }
}

/// Settings of gossip.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Nodes to contact to find the cluster.
    pub seeds: Vec<NodeId>,
    /// Most digests or states per message.
    pub entries_per_message_max: usize,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            interval: Duration::from_secs(1),
            seeds: Vec::new(),
            entries_per_message_max: 512,
        }
    }
}

/// A gossip message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GossipMessage {
    /// "Here is what I know": `(node, generation, version)` per node, and the sender's own
    /// state, so that a receiver that has never heard of it (a joining node) learns who and
    /// where it is, and can answer.
    Syn {
        /// Digests.
        digests: Vec<(NodeId, u64, u64)>,
        /// The sender's own state.
        sender: MemberState,
    },
    /// "Here is what is newer on my side, and what I want from yours."
    Ack {
        /// States newer than the initiator's.
        states: Vec<(NodeId, MemberState)>,
        /// Nodes whose states the initiator has newer.
        requests: Vec<NodeId>,
        /// The (generation, version) of the initiator's own state that the responder holds
        /// now, so the initiator learns which of its changes the responder has seen.
        yours: (u64, u64),
    },
    /// "Here is what you asked for."
    Ack2 {
        /// The requested states.
        states: Vec<(NodeId, MemberState)>,
    },
}

/// The gossip state machine.
#[derive(Debug)]
pub struct Gossip {
    me: NodeId,
    config: GossipConfig,
    states: BTreeMap<NodeId, MemberState>,
    rng: ChaCha8Rng,
    next_round: Instant,
    rounds: u64,
    outbox: Vec<(NodeId, GossipMessage)>,
    /// Per peer, the highest version of our own state (this generation) it is known to hold.
    confirmed: BTreeMap<NodeId, u64>,
    /// Our version when our status last changed.
    status_version: u64,
}

impl Gossip {
    /// Gossip for node `me` in state `mine`, knowing `known` others (configured members, with
    /// generation 0 so that anything they say replaces it).
    pub fn new(
        me: NodeId,
        mine: MemberState,
        known: impl IntoIterator<Item = (NodeId, MemberState)>,
        config: GossipConfig,
        seed: u64,
        now: Instant,
    ) -> Self {
        let mut states: BTreeMap<NodeId, MemberState> = known.into_iter().collect();
        states.insert(me, mine);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Spread the first rounds of a cluster started at once.
        let jitter_ns = rng.random_range(0..config.interval.as_nanos().max(1));
        Gossip {
            me,
            next_round: now + Duration::from_nanos(jitter_ns),
            config,
            states,
            rng,
            rounds: 0,
            outbox: Vec::new(),
            confirmed: BTreeMap::new(),
            status_version: 0,
        }
    }

    /// Whether `peer` is known to hold our state as of our last status change (it told us so
    /// in a digest or an acknowledgement). A node that joins or leaves waits for this from
    /// every member before it moves data, so that no coordinator is still unaware of the move.
    pub fn knows_my_status(&self, peer: NodeId) -> bool {
        self.confirmed.get(&peer).is_some_and(|version| *version >= self.status_version)
    }

    /// Every known node and its state.
    pub fn members(&self) -> &BTreeMap<NodeId, MemberState> {
        &self.states
    }

    /// This node's own state.
    pub fn mine(&self) -> &MemberState {
        // The constructor inserts our own entry and nothing removes it.
        &self.states[&self.me]
    }

    /// Rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Changes our own status (joining, normal, leaving, left).
    pub fn set_status(&mut self, status: MemberStatus) {
        if let Some(mine) = self.states.get_mut(&self.me) {
            mine.status = status;
            mine.version += 1;
            self.status_version = mine.version;
        }
    }

    /// Marks another node with `status` on its behalf (an operator removing a dead node). Its
    /// version jumps by 2^32, above any heartbeat it can have sent in its generation (one a
    /// round), so the news wins wherever older gossip of the node still circulates. The node
    /// itself, if it comes back with a new generation, overrides it. The mark applies to the
    /// generation this node knows: remove a node only once its latest generation has spread
    /// (a node that was running does so within a few rounds).
    pub fn mark(&mut self, node: NodeId, status: MemberStatus) -> bool {
        if node == self.me {
            return false;
        }
        match self.states.get_mut(&node) {
            Some(state) => {
                state.status = status;
                state.version += MARK_VERSION_JUMP;
                true
            }
            None => false,
        }
    }

    /// When the next round is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_round
    }

    /// Runs a round if one is due. `alive` tells which peers the failure detector trusts.
    pub fn handle_timeout(&mut self, now: Instant, alive: impl Fn(NodeId) -> bool) {
        if now < self.next_round {
            return;
        }
        self.next_round = now + self.config.interval;
        self.rounds += 1;
        if let Some(mine) = self.states.get_mut(&self.me) {
            mine.version += 1;
        }
        let peers: Vec<NodeId> = self
            .states
            .iter()
            .filter(|(id, state)| **id != self.me && state.status != MemberStatus::Left)
            .map(|(id, _)| *id)
            .collect();
        let (live, dead): (Vec<NodeId>, Vec<NodeId>) = peers.iter().partition(|peer| alive(**peer));
        let mut targets = Vec::new();
        if !live.is_empty() {
            targets.push(live[self.rng.random_range(0..live.len())]);
        }
        if !dead.is_empty() && self.rng.random_range(0..=live.len()) == 0 {
            targets.push(dead[self.rng.random_range(0..dead.len())]);
        }
        let seeds: Vec<NodeId> =
            self.config.seeds.iter().copied().filter(|seed| *seed != self.me).collect();
        if !seeds.is_empty()
            && !targets.iter().any(|target| seeds.contains(target))
            && self.rng.random_range(0..(live.len() + 1)) < 2
        {
            targets.push(seeds[self.rng.random_range(0..seeds.len())]);
        }
        for target in targets {
            let digests = self.digests();
            let sender = self.mine().clone();
            self.outbox.push((target, GossipMessage::Syn { digests, sender }));
        }
    }

    /// Handles a gossip message; returns the nodes whose state advanced.
    pub fn handle(&mut self, from: NodeId, message: GossipMessage) -> Vec<NodeId> {
        let limit = self.config.entries_per_message_max;
        match message {
            GossipMessage::Syn { digests, sender } => {
                let advanced = self.apply(vec![(from, sender)]);
                let generation = self.mine().generation;
                if let Some((_, _, version)) =
                    digests.iter().find(|(node, digest_generation, _)| {
                        *node == self.me && *digest_generation == generation
                    })
                {
                    self.confirm(from, *version);
                }
                let yours = self
                    .states
                    .get(&from)
                    .map_or((0, 0), |state| (state.generation, state.version));
                let mut states = Vec::new();
                let mut requests = Vec::new();
                let mentioned: std::collections::BTreeSet<NodeId> =
                    digests.iter().map(|(node, ..)| *node).collect();
                for (node, generation, version) in digests.into_iter().take(limit) {
                    match self.states.get(&node) {
                        Some(local)
                            if (local.generation, local.version) > (generation, version) =>
                        {
                            states.push((node, local.clone()))
                        }
                        Some(local)
                            if (local.generation, local.version) == (generation, version) => {}
                        _ => requests.push(node),
                    }
                }
                // Nodes the initiator did not mention at all are news to it.
                let unmentioned = self.states.iter().filter(|(node, _)| !mentioned.contains(node));
                states.extend(unmentioned.map(|(node, state)| (*node, state.clone())));
                states.truncate(limit);
                requests.truncate(limit);
                self.outbox.push((from, GossipMessage::Ack { states, requests, yours }));
                advanced
            }
            GossipMessage::Ack { states, requests, yours } => {
                if yours.0 == self.mine().generation {
                    self.confirm(from, yours.1);
                }
                let advanced = self.apply(states);
                let reply: Vec<(NodeId, MemberState)> = requests
                    .into_iter()
                    .take(limit)
                    .filter_map(|node| self.states.get(&node).map(|state| (node, state.clone())))
                    .collect();
                if !reply.is_empty() {
                    self.outbox.push((from, GossipMessage::Ack2 { states: reply }));
                }
                advanced
            }
            GossipMessage::Ack2 { states } => self.apply(states),
        }
    }

    /// The next message to send.
    pub fn poll_message(&mut self) -> Option<(NodeId, GossipMessage)> {
        if self.outbox.is_empty() {
            None
        } else {
            Some(self.outbox.remove(0))
        }
    }

    /// Asserts the invariants of the module doc.
    pub fn check_invariants(&self) {
        assert!(self.states.contains_key(&self.me), "our own state is always known");
    }

    /// Sends our digests and state to `peer` now, outside the rounds (a moving node makes sure
    /// every member hears of its new status quickly; the answer confirms it).
    pub fn announce_to(&mut self, peer: NodeId) {
        if peer == self.me {
            return;
        }
        let digests = self.digests();
        let sender = self.mine().clone();
        self.outbox.push((peer, GossipMessage::Syn { digests, sender }));
    }

    fn confirm(&mut self, peer: NodeId, version: u64) {
        let confirmed = self.confirmed.entry(peer).or_default();
        *confirmed = (*confirmed).max(version);
    }

    fn digests(&mut self) -> Vec<(NodeId, u64, u64)> {
        let mut digests: Vec<(NodeId, u64, u64)> = self
            .states
            .iter()
            .map(|(node, state)| (*node, state.generation, state.version))
            .collect();
        if digests.len() > self.config.entries_per_message_max {
            // Rotate which entries make it, so every node is exchanged over a few rounds.
            let start = self.rng.random_range(0..digests.len());
            digests.rotate_left(start);
            digests.truncate(self.config.entries_per_message_max);
        }
        digests
    }

    fn apply(&mut self, states: Vec<(NodeId, MemberState)>) -> Vec<NodeId> {
        let mut advanced = Vec::new();
        for (node, state) in states.into_iter().take(self.config.entries_per_message_max) {
            if node == self.me {
                // Nobody knows us better than we do, except a generation of ours we forgot: a
                // node that lost its disk restarts at generation 1, and peers holding a later
                // one would ignore it forever. It moves past what they know.
                if let Some(mine) = self.states.get_mut(&self.me) {
                    if state.generation >= mine.generation {
                        mine.generation = state.generation + 1;
                        mine.version = 0;
                    }
                }
                continue;
            }
            let labels_fit = [&state.address, &state.datacenter, &state.rack]
                .iter()
                .all(|label| label.len() <= MEMBER_LABEL_BYTES_MAX);
            if state.weight == 0 || state.weight > MEMBER_WEIGHT_MAX || !labels_fit {
                // A malformed state from a faulty peer is dropped, never applied.
                continue;
            }
            let newer = self.states.get(&node).is_none_or(|local| state.newer_than(local));
            if newer {
                self.states.insert(node, state);
                advanced.push(node);
            }
        }
        advanced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(generation: u64) -> MemberState {
        MemberState {
            generation,
            version: 0,
            status: MemberStatus::Normal,
            weight: 1,
            address: String::new(),
            datacenter: "dc1".into(),
            rack: "r1".into(),
        }
    }

    /// `count` gossipers that start knowing only themselves and seed node 0.
    fn cluster(count: u32, config: &GossipConfig) -> Vec<Gossip> {
        (0..count)
            .map(|id| {
                let known = if id == 0 { vec![] } else { vec![(NodeId(0), state(0))] };
                Gossip::new(
                    NodeId(id),
                    state(1),
                    known,
                    config.clone(),
                    u64::from(id),
                    Instant::ZERO,
                )
            })
            .collect()
    }

    /// Runs one synchronous round: every node's timer, then message waves (every Syn, then every
    /// Ack, then every Ack2), as a network whose latency is well below the interval would.
    fn round(nodes: &mut [Gossip], now: Instant) {
        for node in nodes.iter_mut() {
            node.handle_timeout(now, |_| true);
        }
        let mut wave: Vec<(NodeId, NodeId, GossipMessage)> = Vec::new();
        for node in nodes.iter_mut() {
            while let Some((to, message)) = node.poll_message() {
                wave.push((node.me, to, message));
            }
        }
        while !wave.is_empty() {
            let mut next_wave = Vec::new();
            for (from, to, message) in wave.drain(..) {
                let receiver = &mut nodes[to.0 as usize];
                receiver.handle(from, message);
                while let Some((next_to, next)) = receiver.poll_message() {
                    next_wave.push((to, next_to, next));
                }
            }
            wave = next_wave;
        }
    }

    /// Rounds until a cluster of `count` bootstrapped from a seed knows every node, then rounds
    /// until a status change of the last node reaches everyone.
    fn rounds_to_converge(count: u32) -> (u64, u64) {
        let config = GossipConfig { seeds: vec![NodeId(0)], ..GossipConfig::default() };
        let mut nodes = cluster(count, &config);
        let mut now = Instant::ZERO;
        let mut bootstrap = None;
        for rounds in 1..=200 {
            now += config.interval;
            round(&mut nodes, now);
            if nodes.iter().all(|node| {
                node.states.len() == count as usize
                    && node.states.values().all(|state| state.generation == 1)
            }) {
                bootstrap = Some(rounds);
                break;
            }
        }
        let bootstrap = bootstrap.expect("bootstrap converges within 200 rounds");
        let changed = NodeId(count - 1);
        nodes[changed.0 as usize].set_status(MemberStatus::Leaving);
        for rounds in 1..=200 {
            now += config.interval;
            round(&mut nodes, now);
            if nodes.iter().all(|node| node.states[&changed].status == MemberStatus::Leaving) {
                return (bootstrap, rounds);
            }
        }
        panic!("a status change among {count} nodes did not spread in 200 rounds");
    }

    #[test]
    fn membership_converges_in_logarithmic_rounds() {
        println!("{:>6} {:>10} {:>15} {:>6}", "nodes", "bootstrap", "status change", "bound");
        for count in [5u32, 20, 100] {
            let (bootstrap, spread) = rounds_to_converge(count);
            // Push-pull spreads a rumour in about log2(n) + ln(n) rounds.
            let bound = (2.0 * f64::from(count).log2()).ceil() as u64 + 2;
            println!("{count:>6} {bootstrap:>10} {spread:>15} {bound:>6}");
            assert!(
                bootstrap <= bound && spread <= bound,
                "{count} nodes: bootstrap {bootstrap}, spread {spread}, bound {bound}"
            );
        }
    }

    #[test]
    fn a_new_generation_replaces_everything_the_old_one_said() {
        let config = GossipConfig::default();
        let mut gossip = Gossip::new(
            NodeId(1),
            state(1),
            [(NodeId(2), MemberState { version: 500, ..state(3) })],
            config,
            1,
            Instant::ZERO,
        );
        let old = MemberState { version: 900, ..state(2) };
        assert!(gossip
            .handle(NodeId(2), GossipMessage::Ack2 { states: vec![(NodeId(2), old)] })
            .is_empty());
        let restarted = MemberState { version: 1, ..state(4) };
        assert_eq!(
            gossip.handle(
                NodeId(2),
                GossipMessage::Ack2 { states: vec![(NodeId(2), restarted.clone())] }
            ),
            vec![NodeId(2)]
        );
        assert_eq!(gossip.members()[&NodeId(2)], restarted);
        let about_me = MemberState { version: 99, status: MemberStatus::Left, ..state(9) };
        assert!(gossip
            .handle(NodeId(2), GossipMessage::Ack2 { states: vec![(NodeId(1), about_me)] })
            .is_empty());
        assert_eq!(gossip.mine().status, MemberStatus::Normal, "others cannot rewrite our state");
    }

    #[test]
    fn a_node_that_forgot_its_generation_moves_past_the_one_its_peers_know() {
        let config = GossipConfig { seeds: vec![NodeId(0)], ..GossipConfig::default() };
        let mut nodes = cluster(3, &config);
        let mut now = Instant::ZERO;
        let mut rounds = |nodes: &mut Vec<Gossip>| {
            for _ in 0..10 {
                now += config.interval;
                round(nodes, now);
            }
        };
        let restart = |generation: u64, seed: u64| {
            let known = (1..3).map(|id| (NodeId(id), state(0)));
            Gossip::new(NodeId(0), state(generation), known, config.clone(), seed, Instant::ZERO)
        };
        rounds(&mut nodes);
        nodes[0] = restart(5, 7);
        rounds(&mut nodes);
        assert!(nodes[1..].iter().all(|node| node.members()[&NodeId(0)].generation == 5));
        // n0 lost its disk: it restarts at generation 1 while its peers know generation 5.
        nodes[0] = restart(1, 8);
        rounds(&mut nodes);
        let mine = nodes[0].mine().generation;
        assert!(mine > 5, "n0 stayed at generation {mine}");
        for node in &nodes[1..] {
            assert_eq!(node.members()[&NodeId(0)].generation, mine, "a peer ignores n0");
        }
    }

    #[test]
    fn a_state_with_an_absurd_weight_or_label_is_not_applied() {
        let mut gossip =
            Gossip::new(NodeId(1), state(1), [], GossipConfig::default(), 1, Instant::ZERO);
        let heavy = MemberState { weight: MEMBER_WEIGHT_MAX + 1, ..state(1) };
        let long = MemberState { rack: "r".repeat(10_000), ..state(1) };
        assert!(gossip
            .handle(
                NodeId(2),
                GossipMessage::Ack2 { states: vec![(NodeId(2), heavy), (NodeId(3), long)] }
            )
            .is_empty());
        assert_eq!(gossip.members().len(), 1);
    }

    #[test]
    fn messages_stay_within_the_entry_limit() {
        let config = GossipConfig { entries_per_message_max: 4, ..GossipConfig::default() };
        let known = (2..50).map(|id| (NodeId(id), state(1)));
        let mut gossip = Gossip::new(NodeId(1), state(1), known, config.clone(), 3, Instant::ZERO);
        gossip.handle_timeout(Instant::ZERO + config.interval, |_| true);
        while let Some((_, message)) = gossip.poll_message() {
            let GossipMessage::Syn { digests, .. } = message else { panic!("a round sends Syn") };
            assert!(digests.len() <= 4);
        }
        let digests = (2..50).map(|id| (NodeId(id), 5, 5)).collect();
        gossip.handle(NodeId(2), GossipMessage::Syn { digests, sender: state(5) });
        let Some((_, GossipMessage::Ack { states, requests, .. })) = gossip.poll_message() else {
            panic!("Syn gets Ack")
        };
        assert!(states.len() <= 4 && requests.len() <= 4);
    }
}
