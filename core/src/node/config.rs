//! The node's configuration: what a driver sets before it starts a node.
//!
//! Part of [`Node`](super::Node), split out of `mod.rs`: plain data and its defaults; no state.

use super::*;

/// A node's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The cluster's members (static membership; gossip replaces this).
    pub members: Vec<NodeId>,
    /// Virtual nodes per member.
    pub vnodes_per_node: u32,
    /// The keyspace's options.
    pub keyspace: KeyspaceConfig,
    /// Client limits.
    pub limits: Limits,
    /// How long a request may take before it fails with "timeout".
    pub request_timeout: Duration,
    /// How often the tombstone sweep runs.
    pub sweep_interval: Duration,
    /// Most keys the sweep examines per run.
    pub sweep_keys_max: usize,
    /// How often anti-entropy goes through one replica group with its other replicas (a cycle
    /// of slices); zero turns anti-entropy off (and tombstones are then purged on grace alone).
    pub anti_entropy_interval: Duration,
    /// Most keys compared or streamed per anti-entropy exchange.
    pub anti_entropy_keys_max: usize,
    /// Keys an anti-entropy slice holds: what one step of the node reads to build a tree (a
    /// responder reads at most twice this before it asks for a narrower slice).
    pub anti_entropy_slice_keys: usize,
    /// The pause between two slices of a cycle.
    pub anti_entropy_slice_pause: Duration,
    /// Acknowledge replica writes as soon as they are written, before storage syncs them (the
    /// driver then syncs on a timer). A crash can lose the writes of the last interval.
    pub acknowledge_before_sync: bool,
    /// Whether this node joins a running cluster (streams the ranges it will own before owning
    /// them) rather than being one of its founding members.
    pub join: bool,
    /// Gossip rounds a joining node waits to learn the ring before planning its streams.
    pub join_settle_rounds: u64,
    /// Most keys per range-stream chunk.
    pub stream_chunk_keys_max: usize,
    /// How often stored hints are scanned for replay.
    pub hint_replay_interval: Duration,
    /// Most hints examined per replay tick (the replay rate limit).
    pub hints_per_tick_max: usize,
    /// Gossip settings (seeds default to every configured member).
    pub gossip: GossipConfig,
    /// Failure detector settings.
    pub detector: DetectorConfig,
    /// This node's ring weight.
    pub weight: u32,
    /// This node's peer address, as gossip advertises it.
    pub address: String,
    /// Where the configured members stand; a member missing here (or every member, when this
    /// is empty) stands where gossip says, else at the default location. Static so that every
    /// node places replicas alike from its first moment, before gossip has spoken.
    pub locations: BTreeMap<NodeId, Location>,
    /// This node's datacenter.
    pub datacenter: String,
    /// This node's rack.
    pub rack: String,
    /// Settings of the Paxos proposer behind serial operations.
    pub paxos: PaxosConfig,
    /// Keys each of the node's caches (decoded objects, Paxos acceptor states) holds before it
    /// starts over. Small by default (the simulator's nodes hold little); a real node sizes it
    /// to its hot keys, since a read that hits skips the storage lookup and the decode.
    pub cache_keys_max: usize,
}

impl NodeConfig {
    /// A configuration with defaults for a cluster of `members`.
    pub fn new(members: Vec<NodeId>) -> Self {
        NodeConfig {
            vnodes_per_node: VNODES_PER_WEIGHT_DEFAULT,
            keyspace: KeyspaceConfig::default(),
            limits: Limits::default(),
            request_timeout: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(60),
            sweep_keys_max: 1_000,
            anti_entropy_interval: Duration::from_secs(10),
            anti_entropy_keys_max: 1_000,
            anti_entropy_slice_keys: 10_000,
            anti_entropy_slice_pause: Duration::from_millis(100),
            acknowledge_before_sync: false,
            join: false,
            join_settle_rounds: 3,
            stream_chunk_keys_max: 200,
            hint_replay_interval: Duration::from_secs(1),
            hints_per_tick_max: 100,
            gossip: GossipConfig { seeds: members.clone(), ..GossipConfig::default() },
            detector: DetectorConfig::default(),
            weight: 1,
            address: String::new(),
            locations: BTreeMap::new(),
            datacenter: crate::placement::DATACENTER_DEFAULT.into(),
            rack: crate::placement::RACK_DEFAULT.into(),
            paxos: PaxosConfig::default(),
            cache_keys_max: 4_096,
            members,
        }
    }
}
