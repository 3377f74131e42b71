//! A ringkv node: the one state machine a driver talks to.
//!
//! Owns: the ring, the quorum [`Coordinator`], the replica role over its [`Storage`], the hybrid
//! logical clock, the node's actor epoch, the set of peers believed down, the acknowledgements
//! waiting for durability, and the tombstone sweep.
//!
//! Inputs ([`Input`]): client requests, peer messages, "storage synced", peer status changes;
//! plus [`Node::set_wall_clock`] before each call with the node's wall-clock reading.
//! Outputs ([`Output`]): messages to peers, replies to clients, and a request to sync storage.
//! Timers: per-request deadlines (in the coordinator) and the tombstone sweep.
//!
//! Call order, for every event: `set_wall_clock`, then `handle` or `handle_timeout`, then drain
//! `poll_output` until `None`, then read `poll_timeout`.
//!
//! Invariants, checked after every handler in debug builds: the coordinator's own; pending
//! acknowledgements are in write order; a node that is not ready has its epoch write pending.
//!
//! Durability: a replica acknowledges a write only after its storage reports it durable. At
//! start the node bumps its actor epoch unless it shut down cleanly, persists the epoch, and
//! coordinates no write until that record is durable, so no dot is ever issued twice.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::anti_entropy::{
    entry_hash, group_of, groups_of, leaf_of, AntiEntropy, Group, GroupEntries, Tree,
};
use crate::cas::CasOp;
use crate::coordinator::{read_result, Action, Coordinator, Outcome, ReadSpec, ReplyTo};
use crate::error::{ClientError, StorageError};
use crate::failure_detector::{DetectorConfig, FailureDetector};
use crate::flush::Flushes;
use crate::forwards::{ForwardCheck, ForwardLog};
use crate::gossip::{Gossip, GossipConfig, GossipMessage, MemberState, MemberStatus};
use crate::hints::{decode_hint, encode_hint, hint_key, split_hint_key, Hint, Replays};
use crate::hlc::{HlcTimestamp, HybridClock};
use crate::message::{ClientRequest, ClientResponse, OpId, PeerMessage, RequestId};
use crate::paxos::{AcceptorState, PaxosConfig, Proposer, ProposerEnv, ProposerOutput};
use crate::placement::{quorums_for, Location, Quorum};
use crate::refill::{Refill, SliceOutcome};
use crate::ring::{token_intervals, Ring, Token, VNODES_PER_WEIGHT_DEFAULT};
use crate::storage::{
    data_key, data_key_token, data_scan_after, split_data_key, Space, Storage, WriteSeq,
    DATA_KEY_TOKEN_BYTES, DATA_LAYOUT_TOKEN_ORDERED, META_CLEAN_KEY, META_DATA_LAYOUT_KEY,
    META_DOTS_ISSUED_KEY, META_EPOCH_KEY, META_REBUILDING_KEY,
};
use crate::streaming::{Arc, ChunkSeq, StreamId, Streams};
use crate::time::{Duration, Instant, WallTime};
use crate::types::{Consistency, Key, KeyspaceConfig, Limits, NodeId, Value};
use crate::version::{Actor, Context, NewWrite, Versioned};

// The node's handlers, one file per seam; each is an `impl` block on `Node`.
mod client;
mod durability;
mod hints;
mod membership;
mod peer;
mod repair;
mod replies;
mod scan;
mod serial;
mod truncation;

/// How often a rebuilding node runs its refill exchanges (or the anti-entropy interval, if
/// shorter): a blank replica should not stay out of read quorums for long.
const REFILL_INTERVAL: Duration = Duration::from_secs(1);
/// Most anti-entropy exchanges this node keeps in flight.
const ANTI_ENTROPY_SESSIONS_MAX: usize = 64;
/// Most arcs one stream request may name.
const STREAM_ARCS_MAX: usize = 65_536;
/// Keys read per storage scan page.
const SCAN_PAGE_KEYS: usize = 1_000;
/// Stored objects a client SCAN step reads at most (live or not).
const SCAN_EXAMINED_MAX: usize = 10_000;
/// Most forwarded writes remembered for duplicate detection.
const FORWARDS_REMEMBERED_MAX: usize = 100_000;
const META_GENERATION_KEY: &[u8] = b"generation";
/// The membership status the node reached (`joined`, `left`), so a restart resumes from it.
const META_STATUS_KEY: &[u8] = b"status";
/// Meta key holding the latest flush's hybrid-clock timestamp (8 bytes, little-endian): siblings
/// written at or before it are dropped on arrival, so a flush stays done after a restart.
const META_TRUNCATED_AT_KEY: &[u8] = b"truncated-at";
/// Stored entries removed per storage scan while truncating.
const TRUNCATE_PAGE_KEYS: usize = 1024;
/// In front of each key's Paxos acceptor state in the meta space.
const PAXOS_KEY_PREFIX: &[u8] = b"paxos/";

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
            members,
        }
    }
}

impl NodeConfig {
    /// Where `member` stands: its static location, else what gossip says (`gossiped`, when
    /// its labels are not empty), else the default; this node always where it says it is.
    pub fn static_location(&self, member: NodeId, gossiped: Option<&MemberState>) -> Location {
        if let Some(location) = self.locations.get(&member) {
            return location.clone();
        }
        if let Some(state) = gossiped.filter(|state| !state.datacenter.is_empty()) {
            let rack =
                if state.rack.is_empty() { crate::placement::RACK_DEFAULT } else { &state.rack };
            return Location::new(state.datacenter.clone(), rack);
        }
        Location::default()
    }
}

/// An event for the node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// A client request, with the driver's id for the reply.
    Client {
        /// Driver's id.
        request: RequestId,
        /// The request.
        op: ClientRequest,
    },
    /// A message from a peer.
    Peer {
        /// Sender.
        from: NodeId,
        /// The message.
        message: PeerMessage,
    },
    /// The driver synced storage; durable writes may now be acknowledged.
    StorageSynced,
    /// The storage reported a failed sync: the node stops acknowledging writes.
    StorageFailed {
        /// What failed.
        reason: String,
    },
    /// The driver's view of a peer changed (connection lost or regained).
    PeerStatus {
        /// The peer.
        node: NodeId,
        /// Whether it is reachable.
        up: bool,
    },
    /// An operator asks this node to leave the cluster: it streams its ranges to their next
    /// owners, then marks itself left.
    Decommission,
    /// An operator declares a dead node removed; anti-entropy rebuilds its ranges on the
    /// replicas that inherit them.
    RemoveNode {
        /// The dead node.
        node: NodeId,
    },
}

/// Something the node wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Send a message to a peer.
    Send {
        /// Recipient.
        to: NodeId,
        /// The message.
        message: PeerMessage,
    },
    /// Reply to a client request.
    Reply {
        /// Driver's id of the request.
        request: RequestId,
        /// The outcome.
        result: Result<ClientResponse, ClientError>,
    },
    /// Writes wait for durability: sync storage, then feed `Input::StorageSynced`.
    SyncStorage,
}

/// Which timer woke the node last, for traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// A request deadline.
    RequestDeadline,
    /// The tombstone sweep.
    Sweep,
    /// A gossip round.
    Gossip,
    /// A hint replay tick.
    HintReplay,
    /// An anti-entropy exchange.
    AntiEntropy,
    /// A Paxos phase deadline or back-off.
    Paxos,
}

/// Counters operators watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Peer messages dropped as malformed or unexpected.
    pub peer_messages_dropped: u64,
    /// Read repairs sent.
    pub read_repairs_sent: u64,
    /// Objects purged by the tombstone sweep.
    pub tombstones_purged: u64,
    /// Client requests refused or failed.
    pub client_errors: u64,
    /// Local storage reads or writes that failed.
    pub storage_errors: u64,
    /// Duplicated forwarded writes recognised and not run again.
    pub duplicate_forwards: u64,
    /// Gossip rounds run.
    pub gossip_rounds: u64,
    /// Hints stored for unreachable replicas.
    pub hints_stored: u64,
    /// Hints delivered to their owners and deleted.
    pub hints_replayed: u64,
    /// Hints dropped: older than the hint window, or damaged.
    pub hints_dropped: u64,
    /// Anti-entropy exchanges started.
    pub repair_exchanges: u64,
    /// Keys compared by anti-entropy.
    pub repair_keys_compared: u64,
    /// Objects sent by anti-entropy.
    pub repair_keys_streamed: u64,
    /// Anti-entropy slices this node cut short because a peer held too many keys in them.
    pub repair_slices_narrowed: u64,
    /// Objects sent in range streams (join, decommission).
    pub stream_keys_sent: u64,
    /// Stream requests repeated because the stream was silent (lost messages, a restarted or
    /// not yet informed source).
    pub stream_requests_repeated: u64,
    /// Streams requested to rebuild ranges inherited from a removed node.
    pub removal_rebuilds: u64,
    /// Reads left unanswered because their key's range is being rebuilt after a removal.
    pub removal_reads_refused: u64,
    /// Range streams completed (sent and fully acknowledged).
    pub streams_completed: u64,
    /// Times the ring changed after a membership change.
    pub ring_changes: u64,
    /// Peer reads left unanswered because this node's store is being refilled after a rebuild.
    pub rebuild_reads_refused: u64,
    /// Rebuilds completed (every other replica of every group refilled this node).
    pub rebuilds_completed: u64,
    /// Flushes (cluster-wide truncations) this node has applied to its store.
    pub flushes_applied: u64,
    /// Paxos prepares, proposals and commits this node answered as a replica.
    pub paxos_messages_answered: u64,
    /// Paxos prepares and proposals this node refused for a higher ballot.
    pub paxos_refusals: u64,
}

/// One key write on its way to a coordinator: a put (`value: Some`) or a delete.
#[derive(Debug, Clone)]
struct KeyWrite {
    key: Key,
    value: Option<Value>,
    context: Option<Context>,
    ttl: Option<Duration>,
    /// Use the coordinator's own copy as the context (a `Set`).
    overwrite: bool,
}

/// One range-stream chunk: keys with their objects, and where the scan goes on (`None`: done).
type StreamChunk = (Vec<(Bytes, Versioned)>, Option<Bytes>);

/// Where one write goes; see `Node::write_placement`.
#[derive(Debug, Clone)]
struct WritePlacement {
    replicas: Vec<NodeId>,
    counted: Vec<NodeId>,
    /// The level's quorums and, while ranges move, those of the key's owners-to-be.
    quorums: Vec<Quorum>,
    /// The level's W (summed over datacenters at `EACH_QUORUM`), for errors.
    required: usize,
    fallbacks: Vec<(NodeId, NodeId)>,
}

#[derive(Debug, Clone, Copy)]
enum AckTarget {
    Local(OpId),
    Remote {
        to: NodeId,
        op: OpId,
    },
    /// A truncation this node made for flush `flush`, coordinated by `to` (maybe itself).
    Truncated {
        to: NodeId,
        flush: u64,
    },
    Replayed {
        to: NodeId,
        replay: u64,
    },
    Stream {
        to: NodeId,
        stream: StreamId,
        seq: ChunkSeq,
        last: bool,
    },
}

/// A ringkv node over storage `S`.
#[derive(Debug)]
pub struct Node<S: Storage> {
    id: NodeId,
    config: NodeConfig,
    ring: Ring,
    storage: S,
    actor: Actor,
    /// The highest dot counter this actor has issued on any key.
    dots_issued_max: u64,
    /// Decoded copies of recently used stored objects (see [`ObjectCache`]).
    objects: ObjectCache,
    acceptors: AcceptorCache,
    ready_at_seq: Option<WriteSeq>,
    storage_failure: Option<String>,
    /// `Some` while the store is a rebuild that anti-entropy has not refilled yet: the node
    /// answers no reads then (its blank copy would break the read/write quorum overlap).
    refill: Option<Refill>,
    /// Where the removal of the rebuild mark was written, until it is durable.
    rebuilt_at_seq: Option<WriteSeq>,
    /// The gossip generation last persisted.
    generation_stored: u64,
    clock: HybridClock,
    wall: WallTime,
    now: Instant,
    down: BTreeSet<NodeId>,
    gossip: Gossip,
    detector: FailureDetector,
    replays: Replays,
    anti_entropy: AntiEntropy,
    next_anti_entropy: Instant,
    streams: Streams,
    /// The owners once the joins and departures in progress complete; `None` when nothing moves.
    future_ring: Option<Ring>,
    join_planned: bool,
    /// Whether a leaving node has started streaming its ranges out.
    leave_planned: bool,
    /// Whether this node's view of the membership is current enough to route requests: always
    /// for a founding member's first start; after a restart or for a joining node, only once a
    /// peer has answered its gossip with every state newer than what it knew (found by the
    /// simulator: a restarted node routed by the configured founding members, missing a node
    /// that had joined and counting one that had left, so its quorums missed acknowledged
    /// writes).
    membership_synced: bool,
    /// Ranges this node inherited from a removed node and is rebuilding, per incoming stream
    /// (one from each surviving replica): until all are in, its copies there may lack
    /// acknowledged writes, so it answers no reads for them.
    rebuilds: BTreeMap<StreamId, Vec<Arc>>,
    next_hint_tick: Instant,
    hint_cursor: Option<Bytes>,
    coordinator: Coordinator,
    /// The proposer of the serial operations this node coordinates.
    paxos: Proposer,
    /// Acceptor answers waiting for the state they report to be durable: (write, to, answer);
    /// `to` may be this node, whose proposer then takes the answer.
    paxos_replies: VecDeque<(WriteSeq, NodeId, PeerMessage)>,
    pending_acks: VecDeque<(WriteSeq, AckTarget)>,
    /// The flushes this node coordinates.
    flushes: Flushes,
    /// Only with the planted bug `PeerUpHeldDown`: peers kept down until then.
    held_down: BTreeMap<NodeId, Instant>,
    /// The latest flush this node has applied: siblings written at or before it are dropped.
    truncated_at: Option<HlcTimestamp>,
    forwards: ForwardLog,
    last_write_seq: WriteSeq,
    sync_requested: bool,
    outbox: VecDeque<Output>,
    next_sweep: Instant,
    sweep_cursor: Option<Bytes>,
    counters: NodeCounters,
    last_timeout_reason: Option<TimerKind>,
}

impl<S: Storage> Node<S> {
    /// Starts a node on `storage`, recovering its epoch from it. `seed` drives every random
    /// choice the node makes, and must differ at every start of the node: a node whose disk was
    /// lost draws its new epoch from it, and a repeated seed would repeat an old epoch and reuse
    /// its dots. (The simulator derives it from the run's seed and the start count; the real
    /// driver draws it from the operating system.)
    pub fn new(
        config: NodeConfig,
        id: NodeId,
        seed: u64,
        now: Instant,
        mut storage: S,
    ) -> Result<Self, StorageError> {
        assert!(config.keyspace.replicas_n >= 1, "a keyspace needs at least one replica");
        assert!(
            config.keyspace.replicas_per_dc.is_empty()
                || config.keyspace.replicas_per_dc.values().sum::<usize>()
                    == config.keyspace.replicas_n,
            "replicas_n must be the sum of replicas_per_dc"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        order_data_by_token(&mut storage)?;
        let (epoch, epoch_kept) = recover_epoch(&mut storage, &mut rng)?;
        let dots_issued_max = if epoch_kept {
            storage
                .get(Space::Meta, META_DOTS_ISSUED_KEY)?
                .as_deref()
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map_or(0, u64::from_le_bytes)
        } else {
            0
        };
        let generation = next_generation(&mut storage)?;
        let truncated_at = storage
            .get(Space::Meta, META_TRUNCATED_AT_KEY)?
            .as_deref()
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(|bytes| HlcTimestamp(u64::from_le_bytes(bytes)));
        let recorded_status = storage.get(Space::Meta, META_STATUS_KEY)?;
        // Without anti-entropy nothing would refill a rebuilt store; it then serves as it is.
        let rebuilding = storage.get(Space::Meta, META_REBUILDING_KEY)?.is_some()
            && config.anti_entropy_interval > Duration::ZERO;
        storage.write(
            Space::Meta,
            Bytes::from_static(META_EPOCH_KEY),
            Some(Bytes::copy_from_slice(&epoch.to_le_bytes())),
        )?;
        let ready_seq = storage.write(Space::Meta, Bytes::from_static(META_CLEAN_KEY), None)?;
        let mut ring = Ring::new(config.vnodes_per_node);
        ring.set_replicas_per_dc(config.keyspace.replicas_per_dc.clone());
        for member in &config.members {
            let location = if *member == id {
                Location::new(config.datacenter.clone(), config.rack.clone())
            } else {
                config.static_location(*member, None)
            };
            ring.add_at(*member, 1, location);
        }
        let request_timeout = config.request_timeout;
        let hint_replay_interval = config.hint_replay_interval;
        let anti_entropy_interval = config.anti_entropy_interval;
        let mut gossip = start_gossip(&config, id, generation, child_seed(seed, b"gossip"), now);
        match recorded_status.as_deref() {
            Some(b"joined") => gossip.set_status(MemberStatus::Normal),
            Some(b"left") => gossip.set_status(MemberStatus::Left),
            _ => {}
        }
        let membership_synced = !config.join && generation == 1;
        let detector = FailureDetector::new(config.detector);
        let id_bases = [id_base(&mut rng), id_base(&mut rng), id_base(&mut rng), id_base(&mut rng)];
        let mut node = Node {
            id,
            coordinator: Coordinator::starting_at(config.keyspace.conflict_mode, id_bases[0]),
            // Seeds of their own (not draws from `rng`), so that nodes which never see a
            // serial operation make exactly the random choices they made before Paxos existed.
            paxos: Proposer::new(
                id,
                generation,
                config.paxos,
                child_seed(seed, b"paxos"),
                child_seed(seed, b"paxos-ops"),
            ),
            paxos_replies: VecDeque::new(),
            next_sweep: now + config.sweep_interval,
            config,
            ring,
            storage,
            actor: Actor { node: id, epoch },
            dots_issued_max,
            objects: ObjectCache::new(child_seed(seed, b"objects")),
            acceptors: AcceptorCache::new(child_seed(seed, b"acceptors")),
            ready_at_seq: Some(ready_seq),
            storage_failure: None,
            refill: rebuilding.then(Refill::default),
            rebuilt_at_seq: None,
            generation_stored: generation,
            // A restarted node stamps its writes after the last flush it applied, whatever its
            // wall clock says, or the flushed replicas would take them for older.
            clock: truncated_at.map_or_else(HybridClock::new, |at| {
                let mut clock = HybridClock::new();
                clock.observe(at);
                clock
            }),
            wall: WallTime::default(),
            now,
            down: BTreeSet::new(),
            gossip,
            detector,
            replays: Replays::starting_at(id_bases[1]),
            anti_entropy: AntiEntropy::new(ANTI_ENTROPY_SESSIONS_MAX, id_bases[2]),
            streams: Streams::starting_at(id_bases[3]),
            future_ring: None,
            join_planned: false,
            leave_planned: false,
            membership_synced,
            rebuilds: BTreeMap::new(),
            next_anti_entropy: now
                + if rebuilding {
                    anti_entropy_interval.min(REFILL_INTERVAL)
                } else {
                    anti_entropy_interval
                },
            next_hint_tick: now + hint_replay_interval,
            hint_cursor: None,
            pending_acks: VecDeque::new(),
            // A seed of its own, so that the draws from `rng` stay what they were.
            flushes: Flushes::starting_at(child_seed(seed, b"flushes") >> 2),
            held_down: BTreeMap::new(),
            truncated_at,
            // A duplicate arriving after a few request timeouts finds its forwarder long done.
            forwards: ForwardLog::new(request_timeout * 4, FORWARDS_REMEMBERED_MAX),
            last_write_seq: ready_seq,
            sync_requested: false,
            outbox: VecDeque::new(),
            sweep_cursor: None,
            counters: NodeCounters::default(),
            last_timeout_reason: None,
        };
        if !node.membership_synced {
            // Ask every known peer at once rather than at the first round, so a restarted node
            // is back to coordinating one round trip after it started.
            let peers: Vec<NodeId> = node.gossip.members().keys().copied().collect();
            for peer in peers {
                node.gossip.announce_to(peer);
            }
            node.send_gossip();
        }
        node.after_handler();
        Ok(node)
    }

    // ---- getters ----

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
        &self.ring
    }

    /// The node's counters.
    pub fn counters(&self) -> NodeCounters {
        self.counters
    }

    /// Every node gossip knows, with its state.
    pub fn membership(&self) -> &std::collections::BTreeMap<NodeId, MemberState> {
        self.gossip.members()
    }

    /// The peers believed up and down now.
    pub fn peers_up_and_down(&self) -> (usize, usize) {
        let peers = self.gossip.members().keys().filter(|node| **node != self.id);
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
        self.detector.phi(peer, self.now)
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

    // ---- inputs ----

    /// Sets the node's wall-clock reading; call before every `handle*`.
    pub fn set_wall_clock(&mut self, wall: WallTime) {
        self.wall = wall;
    }

    /// Handles one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::Client { request, op } => self.handle_client(now, request, op),
            Input::Peer { from, message } => self.handle_peer(now, from, message),
            Input::StorageSynced => self.sync_requested = false,
            Input::StorageFailed { reason } => self.storage_failure = Some(reason),
            Input::PeerStatus { node, up } => {
                if up && crate::planted!(PeerUpHeldDown) {
                    self.held_down.insert(node, now + Duration::from_secs(3));
                }
                if up {
                    self.down.remove(&node);
                } else if node != self.id {
                    self.down.insert(node);
                }
            }
            Input::Decommission => self.decommission(),
            Input::RemoveNode { node } => {
                if self.gossip.mark(node, MemberStatus::Left) {
                    self.refresh_ring();
                }
            }
        }
        self.after_handler();
    }

    /// Fires every timer due at `now`. Safe to call early or twice.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let actions = self.coordinator.expire(now);
        if !actions.is_empty() {
            self.last_timeout_reason = Some(TimerKind::RequestDeadline);
        }
        self.run_actions(now, actions);
        for (reply_to, error) in self.flushes.expire(now) {
            self.flush_finished(reply_to, Err(error));
        }
        if now >= self.next_sweep {
            self.last_timeout_reason = Some(TimerKind::Sweep);
            self.next_sweep = now + self.config.sweep_interval;
            self.sweep_tombstones();
        }
        if self.config.anti_entropy_interval > Duration::ZERO && now >= self.next_anti_entropy {
            self.last_timeout_reason = Some(TimerKind::AntiEntropy);
            if self.refill.is_some() {
                self.next_anti_entropy =
                    now + self.config.anti_entropy_interval.min(REFILL_INTERVAL);
                self.start_refill();
            } else {
                let cycle_ended = self.start_anti_entropy();
                self.next_anti_entropy = now
                    + if cycle_ended {
                        self.config.anti_entropy_interval
                    } else {
                        self.config.anti_entropy_slice_pause
                    };
            }
        }
        if now >= self.next_hint_tick {
            self.last_timeout_reason = Some(TimerKind::HintReplay);
            self.next_hint_tick = now + self.config.hint_replay_interval;
            self.replay_hints(now);
        }
        self.ask_again_for_stalled_streams(now);
        if self.paxos.poll_timeout().is_some_and(|due| now >= due) {
            self.last_timeout_reason = Some(TimerKind::Paxos);
            let mut env = proposer_env(
                self.actor,
                &mut self.dots_issued_max,
                &mut self.clock,
                self.wall,
                &self.config,
            );
            self.paxos.handle_timeout(now, &mut env);
            self.pump_paxos(now);
        }
        if now >= self.gossip.poll_timeout() {
            self.last_timeout_reason = Some(TimerKind::Gossip);
            let detector = &self.detector;
            self.gossip.handle_timeout(now, |peer| detector.is_alive(peer, now));
            self.counters.gossip_rounds = self.gossip.rounds();
            self.send_gossip();
            self.advance_membership();
        }
        self.after_handler();
    }

    /// Marks the shutdown as clean, so the next start keeps the epoch. The driver syncs storage
    /// afterwards and stops feeding inputs.
    pub fn shutdown(&mut self) -> Result<(), StorageError> {
        self.storage.write(
            Space::Meta,
            Bytes::from_static(META_DOTS_ISSUED_KEY),
            Some(Bytes::copy_from_slice(&self.dots_issued_max.to_le_bytes())),
        )?;
        self.storage.write(
            Space::Meta,
            Bytes::from_static(META_CLEAN_KEY),
            Some(Bytes::from_static(b"1")),
        )?;
        Ok(())
    }

    // ---- outputs ----

    /// The next output, until `None`. Drain after every `handle*`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop_front()
    }

    /// The earliest instant at which `handle_timeout` has work.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = [
            Some(self.next_sweep),
            Some(self.gossip.poll_timeout()),
            self.coordinator.next_deadline(),
            self.streams.next_retry(self.stream_retry()),
            self.paxos.poll_timeout(),
            self.flushes.next_deadline(),
        ];
        timers.into_iter().flatten().min()
    }

    // ---- client requests ----

    fn handle_client(&mut self, now: Instant, request: RequestId, op: ClientRequest) {
        if let Err(error) = self.admit(&op) {
            self.reply(request, Err(error));
            return;
        }
        let reply_to = ReplyTo::Client(request);
        match op {
            ClientRequest::Get { key, consistency } => {
                self.start_get(now, key, consistency, reply_to)
            }
            ClientRequest::Put { key, value, context, ttl, consistency } => {
                let write = KeyWrite { key, value: Some(value), context, ttl, overwrite: false };
                self.start_put(now, write, consistency, reply_to)
            }
            ClientRequest::Set { key, value, ttl, consistency } => {
                let write =
                    KeyWrite { key, value: Some(value), context: None, ttl, overwrite: true };
                self.start_put(now, write, consistency, reply_to)
            }
            ClientRequest::Delete { key, context, consistency } => {
                let write = KeyWrite { key, value: None, context, ttl: None, overwrite: false };
                self.start_put(now, write, consistency, reply_to)
            }
            ClientRequest::Scan { cursor, count } => self.start_scan(now, cursor, count, reply_to),
            ClientRequest::MGet { keys, consistency } => {
                let batch = self.coordinator.start_batch(request, keys.len());
                for (index, key) in keys.into_iter().enumerate() {
                    self.start_get(now, key, consistency, ReplyTo::Batch { batch, index });
                }
            }
            ClientRequest::MSet { entries, consistency } => {
                let batch = self.coordinator.start_batch(request, entries.len());
                for (index, (key, value)) in entries.into_iter().enumerate() {
                    let write = KeyWrite {
                        key,
                        value: Some(value),
                        context: None,
                        ttl: None,
                        overwrite: true,
                    };
                    self.start_put(now, write, consistency, ReplyTo::Batch { batch, index });
                }
            }
            ClientRequest::Cas { key, op } => self.start_cas(now, request, key, op),
            ClientRequest::Flush => self.start_flush(now, reply_to),
        }
    }
}

/// Reads the gossip generation, bumps it and writes it back (durable before the node is ready,
/// with the epoch record): every start is a new generation, so peers tell it from its old self.
fn next_generation<S: Storage>(storage: &mut S) -> Result<u64, StorageError> {
    let stored = storage.get(Space::Meta, META_GENERATION_KEY)?;
    let previous = stored
        .as_deref()
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map_or(0, u64::from_le_bytes);
    let generation = previous + 1;
    storage.write(
        Space::Meta,
        Bytes::from_static(META_GENERATION_KEY),
        Some(Bytes::copy_from_slice(&generation.to_le_bytes())),
    )?;
    Ok(generation)
}

/// Gossip for a node starting with `generation`, knowing the configured members.
fn start_gossip(
    config: &NodeConfig,
    id: NodeId,
    generation: u64,
    seed: u64,
    now: Instant,
) -> Gossip {
    let state = |generation, weight| MemberState {
        generation,
        version: 0,
        status: MemberStatus::Normal,
        weight,
        address: String::new(),
        datacenter: String::new(),
        rack: String::new(),
    };
    let status = if config.join { MemberStatus::Joining } else { MemberStatus::Normal };
    let mine = MemberState {
        status,
        address: config.address.clone(),
        datacenter: config.datacenter.clone(),
        rack: config.rack.clone(),
        ..state(generation, config.weight)
    };
    // Configured members start at generation 0, so anything they gossip replaces it.
    let known =
        config.members.iter().filter(|member| **member != id).map(|member| (*member, state(0, 1)));
    Gossip::new(id, mine, known, config.gossip.clone(), seed, now)
}

/// A random starting point for one of the id spaces a node issues (operations, replays, sessions,
/// streams). The seed differs at every start, so ids of two incarnations do not meet; the top
/// bits stay clear so an id space never wraps.
fn id_base(rng: &mut ChaCha8Rng) -> u64 {
    rng.random::<u64>() >> 2
}

/// A child seed for a sub-machine, so its draws never shift another's.
/// Where a key's Paxos acceptor state is stored, in [`Space::Meta`].
fn paxos_key(key: &[u8]) -> Bytes {
    let mut stored = Vec::with_capacity(PAXOS_KEY_PREFIX.len() + key.len());
    stored.extend_from_slice(PAXOS_KEY_PREFIX);
    stored.extend_from_slice(key);
    Bytes::from(stored)
}

/// Whether a peer's object names a sibling outside its own clock (it would break the merge).
fn is_malformed(object: &Versioned) -> bool {
    object.siblings.iter().any(|sibling| !object.clock.covers(sibling.dot))
}

/// The proposer's view of the node, from disjoint fields so that the proposer can be called
/// while the node is borrowed elsewhere.
fn proposer_env<'a>(
    actor: Actor,
    dots_issued_max: &'a mut u64,
    clock: &'a mut HybridClock,
    wall: WallTime,
    config: &NodeConfig,
) -> ProposerEnv<'a> {
    ProposerEnv {
        actor,
        dots_issued_max,
        clock,
        wall,
        mode: config.keyspace.conflict_mode,
        value_bytes_max: config.limits.value_bytes_max,
    }
}

fn child_seed(seed: u64, label: &[u8]) -> u64 {
    let mut bytes = seed.to_le_bytes().to_vec();
    bytes.extend_from_slice(label);
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// Reads the epoch from storage and picks the next one: the same after a clean shutdown, one
/// higher after a crash, a random one when the metadata is gone (the disk was lost, so the node
/// cannot know which epochs it used).
/// Also says whether the epoch was kept.
fn recover_epoch<S: Storage>(
    storage: &mut S,
    rng: &mut ChaCha8Rng,
) -> Result<(u32, bool), StorageError> {
    let stored = storage.get(Space::Meta, META_EPOCH_KEY)?;
    let clean = storage.get(Space::Meta, META_CLEAN_KEY)?.is_some();
    Ok(match stored.as_deref().map(<[u8; 4]>::try_from) {
        Some(Ok(bytes)) if clean => (u32::from_le_bytes(bytes), true),
        Some(Ok(bytes)) => (u32::from_le_bytes(bytes).wrapping_add(1), false),
        _ => (rng.random(), false),
    })
}

/// Decoded copies of recently read stored objects, so that hot keys are not decoded from
/// storage on every request (decoding was the largest single cost in the simulator).
/// Kept current: every write of the data space goes through `Node::write_local`, which updates
/// a cached copy (it does not add one: copying every written object cost about 5% of the CPU
/// under random SETs), or forgets it when the write failed; the tombstone sweep forgets what it
/// may purge.
/// Volatile, like the node: a restart starts empty. `Node::local_object` bypasses it, so the
/// simulator's checkers read what storage really holds.
///
/// A hash map: on a real node under random reads most lookups miss, and a `BTreeMap` of heap
/// keys paid a cache miss per comparison (about 5% of a node's CPU at 100,000 keys). The
/// hasher's keys come from the node's seed, so clients cannot aim keys at one bucket, and the
/// simulator stays deterministic (nothing iterates the map).
///
/// A read that misses caches its key only on its second miss (a doorkeeper, as in TinyLFU): a
/// stream of keys read once each, like random reads over a keyspace larger than the cache, would
/// otherwise pay a copy and an insert per read and evict the keys that are read often.
///
/// Generic over what it holds: the node keeps decoded objects (`ObjectCache`) and, in the same
/// way, the Paxos acceptor state of recently used serial keys (`AcceptorCache`), which every
/// prepare, proposal and commit reads (a memtable lookup and a decode each time cost about 14%
/// of a node's CPU under INCR).
#[derive(Debug)]
struct KeyCache<V> {
    objects: hashbrown::HashMap<Bytes, V, ahash::RandomState>,
    /// The hash of the key that last missed in each slot.
    missed: Vec<u64>,
}

/// Decoded stored objects of recently read keys.
type ObjectCache = KeyCache<Versioned>;

/// The acceptor state of recently used serial keys. Written through: every store of a state
/// replaces the copy (after the write was accepted by storage), and a failed write forgets it.
/// Answers still wait for the state to be durable, and a restart starts empty, so the cache
/// never answers with state storage could lose.
type AcceptorCache = KeyCache<AcceptorState>;

impl<V: Clone> KeyCache<V> {
    fn new(seed: u64) -> Self {
        let hasher = ahash::RandomState::with_seeds(
            child_seed(seed, b"cache-0"),
            child_seed(seed, b"cache-1"),
            child_seed(seed, b"cache-2"),
            child_seed(seed, b"cache-3"),
        );
        KeyCache {
            objects: hashbrown::HashMap::with_hasher(hasher),
            missed: vec![0; Self::MISSED_SLOTS],
        }
    }

    /// Slots of the doorkeeper.
    const MISSED_SLOTS: usize = 4096;

    /// Whether a key read from storage is to be cached: yes if it missed recently, else it is
    /// remembered as missed.
    fn admit(&mut self, key: &[u8]) -> bool {
        let hash = self.objects.hasher().hash_one(key);
        let slot = &mut self.missed[(hash % Self::MISSED_SLOTS as u64) as usize];
        if *slot == hash {
            return true;
        }
        *slot = hash;
        false
    }

    /// Keys kept before the cache starts over. Clearing everything at once keeps it simple and
    /// deterministic; hot keys come back on their next read.
    const KEYS_MAX: usize = 4096;

    fn get(&self, key: &[u8]) -> Option<&V> {
        self.objects.get(key)
    }

    fn insert(&mut self, key: &[u8], object: V) {
        if let Some(cached) = self.objects.get_mut(key) {
            *cached = object;
            return;
        }
        if self.objects.len() >= Self::KEYS_MAX {
            self.objects.clear();
        }
        self.objects.insert(Bytes::copy_from_slice(key), object);
    }

    /// Updates the copy of `key` if one is cached.
    fn replace(&mut self, key: &[u8], object: &V) {
        if let Some(cached) = self.objects.get_mut(key) {
            cached.clone_from(object);
        }
    }

    fn forget(&mut self, key: &[u8]) {
        self.objects.remove(key);
    }

    fn clear(&mut self) {
        self.objects.clear();
    }
}

/// What [`Node::slice_entries`] read: the keys with their entry hashes, the last token covered,
/// and whether keys were left out.
type SliceRead = (Vec<(Bytes, u64)>, Token, bool);

fn read_object<S: Storage>(storage: &mut S, key: &[u8]) -> Result<Option<Versioned>, StorageError> {
    storage.get(Space::Data, &data_key(key))?.map(|bytes| decode_object(&bytes)).transpose()
}

/// Reads the stored objects with tokens in `[low, high]` in token order, handing each to
/// `visit` as (token, key, encoded object) until it returns false. Pages start small and grow,
/// so that a short range does not read far past its end.
fn visit_data<S: Storage>(
    storage: &mut S,
    low: Token,
    high: Token,
    mut visit: impl FnMut(Token, Bytes, Bytes) -> bool,
) -> Result<(), StorageError> {
    let mut after = data_scan_after(low);
    let mut page_keys = 16;
    loop {
        let page = storage.scan(Space::Data, after.as_deref(), page_keys)?;
        let full = page.len() == page_keys;
        after = page.last().map(|(stored, _)| stored.clone());
        for (stored, bytes) in page {
            // The token is read, not checked against the key: checking hashed every key of a
            // scan once more (the start-up conversion checks them all).
            let Some(token) = data_key_token(&stored) else {
                return Err(StorageError(format!("malformed data key of {} bytes", stored.len())));
            };
            if token > high || !visit(token, stored.slice(DATA_KEY_TOKEN_BYTES..), bytes) {
                return Ok(());
            }
        }
        if !full {
            return Ok(());
        }
        page_keys = (page_keys * 2).min(SCAN_PAGE_KEYS);
    }
}

/// Moves data stored by a build that kept [`Space::Data`] in key order under token-ordered keys
/// ([`data_key`]), then records the layout; nothing to do once it is recorded. Idempotent if
/// interrupted: a key that already carries its own token is left alone, and the layout is
/// recorded after every move in the write order, so it survives a crash only if they do.
fn order_data_by_token<S: Storage>(storage: &mut S) -> Result<(), StorageError> {
    match storage.get(Space::Meta, META_DATA_LAYOUT_KEY)? {
        Some(layout) if layout == DATA_LAYOUT_TOKEN_ORDERED => return Ok(()),
        Some(layout) => {
            return Err(StorageError(format!(
                "unknown data layout {:?} (written by a newer ringkv?)",
                String::from_utf8_lossy(&layout)
            )))
        }
        None => {}
    }
    let mut after: Option<Bytes> = None;
    loop {
        let page = storage.scan(Space::Data, after.as_deref(), SCAN_PAGE_KEYS)?;
        let full = page.len() == SCAN_PAGE_KEYS;
        after = page.last().map(|(key, _)| key.clone());
        for (key, value) in page {
            if split_data_key(&key).is_some() {
                continue;
            }
            storage.write(Space::Data, data_key(&key), Some(value))?;
            storage.write(Space::Data, key, None)?;
        }
        if !full {
            break;
        }
    }
    storage.write(
        Space::Meta,
        Bytes::from_static(META_DATA_LAYOUT_KEY),
        Some(Bytes::from_static(DATA_LAYOUT_TOKEN_ORDERED)),
    )?;
    Ok(())
}

fn write_object<S: Storage>(
    storage: &mut S,
    key: &[u8],
    object: &Versioned,
) -> Result<WriteSeq, StorageError> {
    // Sized up front (values plus a generous bound per sibling and clock entry) so that the
    // encoding does not grow its buffer several times.
    let values_bytes: usize =
        object.siblings.iter().map(|sibling| sibling.value.as_ref().map_or(0, Bytes::len)).sum();
    let capacity = 8 + values_bytes + 48 * object.siblings.len() + 24 * object.clock.len();
    let bytes = postcard::to_extend(object, Vec::with_capacity(capacity))
        .map_err(|error| StorageError(format!("encode: {error}")))?;
    storage.write(Space::Data, data_key(key), Some(Bytes::from(bytes)))
}

fn decode_object(bytes: &[u8]) -> Result<Versioned, StorageError> {
    let object: Versioned = postcard::from_bytes(bytes)
        .map_err(|error| StorageError(format!("corrupt stored object: {error}")))?;
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn stored_data(storage: &mut MemStorage) -> Vec<(Bytes, Bytes)> {
        storage.scan(Space::Data, None, usize::MAX).expect("memory does not fail")
    }

    #[test]
    fn data_stored_by_key_is_moved_under_token_ordered_keys_once_and_nothing_is_lost() {
        let mut storage = MemStorage::new();
        // 2,500 keys in the old layout (more than a scan page), and one already moved, as after
        // an interrupted move.
        let old: Vec<(Bytes, Bytes)> = (0..2_500)
            .map(|i| (Bytes::from(format!("key{i:05}")), Bytes::from(format!("value{i}"))))
            .collect();
        for (key, value) in &old {
            storage.write(Space::Data, key.clone(), Some(value.clone())).unwrap();
        }
        storage.write(Space::Data, data_key(b"moved"), Some(Bytes::from_static(b"m"))).unwrap();

        order_data_by_token(&mut storage).unwrap();

        let mut expected: Vec<(Bytes, Bytes)> =
            old.iter().map(|(key, value)| (data_key(key), value.clone())).collect();
        expected.push((data_key(b"moved"), Bytes::from_static(b"m")));
        expected.sort();
        let stored = stored_data(&mut storage);
        assert_eq!(stored, expected);
        let tokens: Vec<Token> =
            stored.iter().map(|(key, _)| split_data_key(key).expect("token-ordered").0).collect();
        assert!(tokens.windows(2).all(|pair| pair[0] <= pair[1]), "not in token order");
        assert_eq!(
            storage.get(Space::Meta, META_DATA_LAYOUT_KEY).unwrap().as_deref(),
            Some(DATA_LAYOUT_TOKEN_ORDERED)
        );

        // Once recorded, the layout is trusted: a key that looks old is left as it is.
        storage.write(Space::Data, Bytes::from_static(b"late"), Some(Bytes::new())).unwrap();
        order_data_by_token(&mut storage).unwrap();
        assert_eq!(stored_data(&mut storage).len(), expected.len() + 1);
    }

    #[test]
    fn an_unknown_data_layout_is_refused_and_the_data_left_alone() {
        let mut storage = MemStorage::new();
        storage.write(Space::Data, Bytes::from_static(b"a"), Some(Bytes::new())).unwrap();
        let layout = Some(Bytes::from_static(b"from-the-future"));
        storage.write(Space::Meta, Bytes::from_static(META_DATA_LAYOUT_KEY), layout).unwrap();
        let error = order_data_by_token(&mut storage).unwrap_err();
        assert!(error.0.contains("unknown data layout \"from-the-future\""), "{error}");
        assert_eq!(stored_data(&mut storage), vec![(Bytes::from_static(b"a"), Bytes::new())]);
    }

    #[test]
    fn visiting_a_token_range_reads_its_keys_in_token_order_and_stops_at_its_end() {
        let mut storage = MemStorage::new();
        let mut tokens: Vec<(Token, Bytes)> = (0..200)
            .map(|i| {
                let key = Bytes::from(format!("k{i}"));
                (Ring::key_token(&key), key)
            })
            .collect();
        for (_, key) in &tokens {
            storage.write(Space::Data, data_key(key), Some(key.clone())).unwrap();
        }
        tokens.sort();
        let (low, high) = (tokens[50].0, tokens[149].0);
        let mut visited = Vec::new();
        visit_data(&mut storage, low, high, |token, key, value| {
            assert_eq!(key, value, "the key comes back without its token");
            visited.push((token, key));
            true
        })
        .unwrap();
        assert_eq!(visited, tokens[50..150].to_vec());
        // A wrapping arc is two intervals, in token order.
        let wrapped = token_intervals(tokens[190].0, tokens[9].0);
        assert_eq!(wrapped, vec![(0, tokens[9].0), (tokens[190].0 + 1, Token::MAX)]);
    }
}
