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
            datacenter: "dc1".into(),
            rack: "rack1".into(),
            paxos: PaxosConfig::default(),
            members,
        }
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
    required: usize,
    fallbacks: Vec<(NodeId, NodeId)>,
    /// While ranges move: the key's owners-to-be and how many of them must acknowledge.
    future: Option<(Vec<NodeId>, usize)>,
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

/// A rebuilt (blank) store waiting to be refilled: which (replica group, peer) pairs have
/// refilled it, and per pair the keys fetched from that peer that have not arrived yet.
#[derive(Debug, Default)]
struct Refill {
    refilled: BTreeSet<(Group, NodeId)>,
    pending: BTreeMap<(Group, NodeId), RefillPair>,
}

/// A (group, peer) pair's refill in progress: the keys fetched in its current cycle that have
/// not arrived, and whether every slice of the cycle completed.
#[derive(Debug, Default)]
struct RefillPair {
    waiting: BTreeSet<Bytes>,
    cycled: bool,
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
        let ring = Ring::with_members(config.vnodes_per_node, config.members.iter().copied());
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

    /// Starts a flush: every member of the ring truncates, this node included. Refused at once
    /// when a member is believed down, since it would keep (and later serve) the old data.
    fn start_flush(&mut self, now: Instant, reply_to: ReplyTo) {
        // Joining members hold streamed data too; only those gone for good are left out.
        let members: BTreeSet<NodeId> = self
            .gossip
            .members()
            .iter()
            .filter(|(_, state)| state.status != MemberStatus::Left)
            .map(|(node, _)| *node)
            .chain([self.id])
            .collect();
        let alive = members.iter().filter(|node| !self.is_down(**node)).count();
        if alive < members.len() {
            let error = ClientError::Unavailable { required: members.len(), alive };
            return self.deliver(now, reply_to, Outcome::Failed(error));
        }
        let deadline = now + self.config.request_timeout;
        let flush = self.flushes.start(reply_to, members.clone(), deadline);
        let own = self.id;
        let clock = self.clock.tick(self.wall);
        if crate::planted!(FlushSkipsClockRound) {
            // Every other member "answers" with the coordinator's own reading.
            for member in members.iter().copied() {
                self.flush_clock_read(flush, member, clock);
            }
            return;
        }
        for member in members.iter().copied().filter(|member| *member != own) {
            self.send(member, PeerMessage::FlushClock { flush });
        }
        self.flush_clock_read(flush, own, clock);
    }

    /// Records a member's clock reading; once all are in, sends the truncation point to every
    /// member and applies it here.
    fn flush_clock_read(&mut self, flush: u64, from: NodeId, clock: HlcTimestamp) {
        let Some((at, members)) = self.flushes.on_clock(flush, from, clock) else { return };
        let own = self.id;
        for member in members.into_iter().filter(|member| *member != own) {
            self.send(member, PeerMessage::Truncate { flush, at });
        }
        self.apply_truncate(own, flush, at);
    }

    /// Truncates this node's store for flush `flush` at `at`, and queues the acknowledgement
    /// to `coordinator` for when the removals are durable.
    fn apply_truncate(&mut self, coordinator: NodeId, flush: u64, at: HlcTimestamp) {
        self.clock.observe(at);
        match self.truncate_store(at) {
            Ok(seq) => {
                self.pending_acks.push_back((seq, AckTarget::Truncated { to: coordinator, flush }))
            }
            Err(error) => self.truncate_acked(coordinator, flush, Err(error.0)),
        }
    }

    /// Sends (or, when this node coordinates, records) a truncation's acknowledgement.
    fn truncate_acked(&mut self, coordinator: NodeId, flush: u64, result: Result<(), String>) {
        if coordinator != self.id {
            return self.send(coordinator, PeerMessage::TruncateAck { flush, result });
        }
        if let Some((reply_to, result)) = self.flushes.on_ack(flush, self.id, result) {
            self.flush_finished(reply_to, result);
        }
    }

    fn flush_finished(&mut self, reply_to: ReplyTo, result: Result<(), ClientError>) {
        let outcome = match result {
            Ok(()) => Outcome::Forwarded(Ok(ClientResponse::Flushed)),
            Err(error) => Outcome::Failed(error),
        };
        self.deliver(self.now, reply_to, outcome);
    }

    /// Records the truncation point, then removes from every stored object the siblings written
    /// at or before it. Hints stay (their owner filters them on replay: one may hold a write
    /// that raced the flush), and so does Paxos state, since an acceptor that forgot a promise
    /// could let two values be chosen.
    /// A repeated or older flush only waits for what is already written. Returns the sequence
    /// number to wait for before acknowledging.
    fn truncate_store(&mut self, at: HlcTimestamp) -> Result<WriteSeq, StorageError> {
        if self.truncated_at.is_some_and(|done| done >= at) {
            return Ok(self.last_write_seq.max(self.storage.durable_seq()));
        }
        let mut seq = self.storage.write(
            Space::Meta,
            Bytes::from_static(META_TRUNCATED_AT_KEY),
            Some(Bytes::copy_from_slice(&at.0.to_le_bytes())),
        )?;
        self.truncated_at = Some(at);
        self.objects.clear();
        let mut after: Option<Bytes> = None;
        loop {
            let page = self.storage.scan(Space::Data, after.as_deref(), TRUNCATE_PAGE_KEYS)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let full = page.len() == TRUNCATE_PAGE_KEYS;
            for (stored, bytes) in page {
                let Some((_, key)) = split_data_key(&stored) else { continue };
                let Ok(object) = decode_object(&bytes) else { continue };
                if self.predates_flush(&object) {
                    // Only what the flush covers goes: a write that reached this node before
                    // the flush but was stamped after it (it raced the flush) stays, and so
                    // does the clock, which keeps covering the writes the object replaced.
                    let kept = self.without_flushed(object);
                    seq = write_object(&mut self.storage, key, &kept)?;
                }
            }
            if !full {
                break;
            }
        }
        self.last_write_seq = seq;
        self.counters.flushes_applied += 1;
        Ok(seq)
    }

    /// Starts a serial operation: a Paxos round among the key's replicas, a quorum per phase.
    fn start_cas(&mut self, now: Instant, request: RequestId, key: Key, op: CasOp) {
        let (replicas, required) = match self.replicas_and_required(&key, Consistency::Quorum) {
            Ok(found) => found,
            Err(error) => return self.reply(request, Err(error)),
        };
        let deadline = now + self.config.request_timeout;
        let mut env = proposer_env(
            self.actor,
            &mut self.dots_issued_max,
            &mut self.clock,
            self.wall,
            &self.config,
        );
        self.paxos.start(now, &mut env, request, key, op, replicas, required, deadline);
        self.pump_paxos(now);
    }

    /// Carries out what the proposer asked for: messages (to this node's own acceptor too) and
    /// replies.
    fn pump_paxos(&mut self, now: Instant) {
        while let Some(output) = self.paxos.poll_output() {
            match output {
                ProposerOutput::Send { to, message } if to == self.id => {
                    self.answer_paxos(now, to, message)
                }
                ProposerOutput::Send { to, message } => self.send(to, message),
                ProposerOutput::Reply { request, result } => {
                    self.reply(request, result.map(ClientResponse::Cas))
                }
            }
        }
    }

    /// The acceptor: applies a prepare, proposal or commit to the key's stored Paxos state and
    /// answers once that state is durable (a refusal changes nothing and is answered at once).
    fn answer_paxos(&mut self, now: Instant, from: NodeId, message: PeerMessage) {
        let key = match &message {
            PeerMessage::PaxosPrepare { key, .. }
            | PeerMessage::PaxosPropose { key, .. }
            | PeerMessage::PaxosCommit { key, .. } => key.clone(),
            _ => return,
        };
        if key.is_empty() || key.len() > self.config.limits.key_bytes_max {
            return self.counters.peer_messages_dropped += 1;
        }
        // A blank store being refilled, or a range inherited from a removed node, holds neither
        // the data nor the promises of the replica it replaces: silence, as from a failed one.
        if self.refill.is_some() || self.is_inheriting(&key) {
            return self.counters.rebuild_reads_refused += 1;
        }
        let Ok(mut state) = self.load_acceptor(&key) else {
            return self.counters.storage_errors += 1;
        };
        self.counters.paxos_messages_answered += 1;
        match message {
            PeerMessage::PaxosPrepare { op, ballot, .. } => {
                self.clock.observe(ballot.timestamp);
                if let Err(promised) = state.prepare(ballot) {
                    self.counters.paxos_refusals += 1;
                    let result = Err(promised);
                    return self.paxos_answer(
                        now,
                        from,
                        PeerMessage::PaxosPromise { op, ballot, result },
                    );
                }
                let Ok(object) = self.load_object_for_round(&key) else {
                    return self.counters.storage_errors += 1;
                };
                let result = Ok(state.promise(object));
                self.store_acceptor(
                    &key,
                    &state,
                    from,
                    PeerMessage::PaxosPromise { op, ballot, result },
                );
            }
            PeerMessage::PaxosPropose { op, ballot, object, .. } => {
                if is_malformed(&object) {
                    return self.counters.peer_messages_dropped += 1;
                }
                if let Err(refusal) = state.accept(ballot, object) {
                    self.counters.paxos_refusals += 1;
                    let result = Err(refusal);
                    return self.paxos_answer(
                        now,
                        from,
                        PeerMessage::PaxosAccepted { op, ballot, result },
                    );
                }
                let answer = PeerMessage::PaxosAccepted { op, ballot, result: Ok(()) };
                self.store_acceptor(&key, &state, from, answer);
            }
            PeerMessage::PaxosCommit { op, ballot, object, .. } => {
                if self.merge_local(&key, &object).is_err() {
                    return self.counters.peer_messages_dropped += 1;
                }
                state.commit(ballot);
                self.store_acceptor(&key, &state, from, PeerMessage::PaxosCommitted { op, ballot });
            }
            _ => {}
        }
    }

    /// Hands an acceptor's answer to its proposer: this node's, or a peer's.
    fn paxos_answer(&mut self, now: Instant, to: NodeId, message: PeerMessage) {
        if to == self.id {
            self.paxos_answered(now, to, message);
        } else {
            self.send(to, message);
        }
    }

    /// The proposer takes an acceptor's answer.
    fn paxos_answered(&mut self, now: Instant, from: NodeId, message: PeerMessage) {
        let mut env = proposer_env(
            self.actor,
            &mut self.dots_issued_max,
            &mut self.clock,
            self.wall,
            &self.config,
        );
        match message {
            PeerMessage::PaxosPromise { op, ballot, result } => {
                self.paxos.on_promise(now, &mut env, from, op, ballot, result)
            }
            PeerMessage::PaxosAccepted { op, ballot, result } => {
                self.paxos.on_accepted(now, &mut env, from, op, ballot, result)
            }
            PeerMessage::PaxosCommitted { op, ballot } => {
                self.paxos.on_committed(now, &mut env, from, op, ballot)
            }
            _ => {}
        }
    }

    /// The key's acceptor state (a fresh one when none is stored).
    fn load_acceptor(&mut self, key: &[u8]) -> Result<AcceptorState, StorageError> {
        if let Some(state) = self.acceptors.get(key) {
            return Ok(state.clone());
        }
        let state = match self.storage.get(Space::Meta, &paxos_key(key))? {
            None => AcceptorState::default(),
            Some(bytes) => AcceptorState::decode(&bytes)
                .ok_or_else(|| StorageError("damaged paxos state".into()))?,
        };
        // A serial key is read again by the rest of its round: cached at the first miss.
        self.acceptors.insert(key, state.clone());
        Ok(state)
    }

    /// Writes the key's acceptor state and queues `answer` for when it is durable.
    fn store_acceptor(
        &mut self,
        key: &[u8],
        state: &AcceptorState,
        to: NodeId,
        answer: PeerMessage,
    ) {
        let Some(bytes) = state.encode() else {
            self.acceptors.forget(key);
            return self.counters.storage_errors += 1;
        };
        match self.storage.write(Space::Meta, paxos_key(key), Some(Bytes::from(bytes))) {
            Ok(seq) => {
                self.last_write_seq = seq;
                self.acceptors.insert(key, state.clone());
                self.paxos_replies.push_back((seq, to, answer));
            }
            Err(_) => {
                self.acceptors.forget(key);
                self.counters.storage_errors += 1;
            }
        }
    }

    /// Sends (or takes) the acceptor answers whose state is durable; returns whether any was for
    /// this node's own proposer (which may then have written more).
    fn release_paxos_replies(&mut self) -> bool {
        if self.storage_failure.is_some() {
            return false;
        }
        let acknowledgeable =
            if self.config.acknowledge_before_sync || crate::planted!(AckBeforeSync) {
                WriteSeq::MAX
            } else {
                self.storage.durable_seq()
            };
        let mut local = false;
        while self.paxos_replies.front().is_some_and(|(seq, _, _)| *seq <= acknowledgeable) {
            let Some((_, to, answer)) = self.paxos_replies.pop_front() else { break };
            local |= to == self.id;
            self.paxos_answer(self.now, to, answer);
        }
        if local {
            self.pump_paxos(self.now);
        }
        local
    }

    /// Checks limits before anything happens, so a refused request changes nothing.
    fn admit(&self, op: &ClientRequest) -> Result<(), ClientError> {
        let limits = &self.config.limits;
        let in_flight = self.coordinator.in_flight() + self.paxos.in_flight();
        if in_flight >= limits.requests_in_flight_max {
            return Err(ClientError::Overloaded { in_flight, max: limits.requests_in_flight_max });
        }
        if !self.membership_synced {
            return Err(ClientError::NotReady);
        }
        let replicas_n = self.config.keyspace.replicas_n.min(self.ring.members_count());
        match op {
            ClientRequest::Get { key, consistency }
            | ClientRequest::Delete { key, consistency, .. } => {
                limits.check_key(key)?;
                consistency.required(replicas_n)?;
            }
            ClientRequest::Put { key, value, consistency, .. }
            | ClientRequest::Set { key, value, consistency, .. } => {
                limits.check_key(key)?;
                limits.check_value(value)?;
                consistency.required(replicas_n)?;
            }
            ClientRequest::MGet { keys, consistency } => {
                limits.check_batch(keys.len())?;
                keys.iter().try_for_each(|key| limits.check_key(key))?;
                consistency.required(replicas_n)?;
            }
            // COUNT is a hint, as in Redis: a larger one is served at the batch limit.
            ClientRequest::Scan { .. } => {}
            ClientRequest::MSet { entries, consistency } => {
                limits.check_batch(entries.len())?;
                for (key, value) in entries {
                    limits.check_key(key)?;
                    limits.check_value(value)?;
                }
                consistency.required(replicas_n)?;
            }
            ClientRequest::Flush => {}
            ClientRequest::Cas { key, op } => {
                limits.check_key(key)?;
                let len_bytes = op.carried_value_bytes();
                if len_bytes > limits.value_bytes_max {
                    let max_bytes = limits.value_bytes_max;
                    return Err(ClientError::ValueTooLarge { len_bytes, max_bytes });
                }
            }
        }
        // A serial read writes too: its promises are acceptor state.
        let writes = op.is_write() || matches!(op, ClientRequest::Cas { .. });
        if writes && !self.is_ready() {
            return Err(match &self.storage_failure {
                Some(reason) => ClientError::Storage { reason: reason.clone() },
                None => ClientError::NotReady,
            });
        }
        Ok(())
    }

    fn replicas_and_required(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<(Vec<NodeId>, usize), ClientError> {
        let mut replicas = self.ring.preference_list(key, self.config.keyspace.replicas_n);
        let mut required = consistency.required(replicas.len())?;
        if let Some(future) = &self.future_ring {
            // While ranges move, a quorum of the replicas that own the key both before and
            // after the move meets every write quorum: writes of coordinators that know of the
            // move (a quorum of both sets), of those that do not yet (a quorum of the owners
            // before) and of those that already saw it complete (a quorum after). A node that
            // is gaining the range is left out: its copy may be incomplete until it joined.
            let after = future.preference_list(key, self.config.keyspace.replicas_n);
            let stable: Vec<NodeId> =
                replicas.iter().copied().filter(|node| after.contains(node)).collect();
            if stable.len() >= required {
                replicas = stable;
            } else {
                // Too few stay (a read at ALL): read every owner before and after.
                let extra: Vec<NodeId> =
                    after.into_iter().filter(|node| !replicas.contains(node)).collect();
                replicas.extend(extra);
                required = replicas.len();
            }
        }
        let alive = replicas.iter().filter(|node| !self.is_down(**node)).count();
        if alive < required {
            return Err(ClientError::Unavailable { required, alive });
        }
        Ok((replicas, required))
    }

    fn start_get(&mut self, now: Instant, key: Key, consistency: Consistency, reply_to: ReplyTo) {
        let (replicas, required) = match self.replicas_and_required(&key, consistency) {
            Ok(found) => found,
            Err(error) => return self.deliver(now, reply_to, Outcome::Failed(error)),
        };
        let spec = ReadSpec {
            key: key.clone(),
            repair_before_reply: consistency.repairs_before_reply(replicas.len()),
            replicas: replicas.clone(),
            required,
        };
        let op = self.coordinator.start_read(spec, reply_to, now + self.config.request_timeout);
        for replica in &replicas {
            if *replica != self.id {
                self.send(*replica, PeerMessage::Read { op, key: key.clone() });
            }
        }
        // A store being refilled does not count toward R: it may lack acknowledged writes; nor
        // does a range inherited from a removed node before it has been pulled in.
        let serves = self.refill.is_none() || crate::planted!(RebuildServesReads);
        if replicas.contains(&self.id) && serves && !self.is_inheriting(&key) {
            match self.load_object(&key) {
                Ok(object) => {
                    let actions =
                        self.coordinator.on_read_reply(op, self.id, object.unwrap_or_default());
                    self.run_actions(now, actions);
                }
                // The remote replicas may still make up R; the deadline fails the read otherwise.
                Err(_) => self.counters.storage_errors += 1,
            }
        }
    }

    fn start_put(
        &mut self,
        now: Instant,
        write: KeyWrite,
        consistency: Consistency,
        reply_to: ReplyTo,
    ) {
        let placement = match self.write_placement(&write.key, consistency) {
            Ok(placement) => placement,
            Err(error) => return self.deliver(now, reply_to, Outcome::Failed(error)),
        };
        // BUGGIFY: a replica may hand the write to another replica, to drive the forward path.
        let hand_off = crate::buggify!()
            && placement.replicas.iter().any(|node| *node != self.id && !self.is_down(*node));
        if placement.replicas.contains(&self.id) && !hand_off {
            return self.coordinate_write(now, write, placement, reply_to);
        }
        let (replicas, required) = (placement.replicas, placement.required);
        // Dots are minted from the coordinator's own copy of the key, so a write is handed to a
        // replica: the first one believed up.
        let is_target = |node: &NodeId| *node != self.id && !self.is_down(*node);
        let Some(target) = replicas.iter().copied().find(is_target) else {
            let error = ClientError::Unavailable { required, alive: 0 };
            return self.deliver(now, reply_to, Outcome::Failed(error));
        };
        let forward = self.coordinator.start_forward(reply_to, now + self.config.request_timeout);
        let KeyWrite { key, value, context, ttl, overwrite } = write;
        let request = match value {
            Some(value) if overwrite => ClientRequest::Set { key, value, ttl, consistency },
            Some(value) => ClientRequest::Put { key, value, context, ttl, consistency },
            None => ClientRequest::Delete { key, context, consistency },
        };
        self.send(target, PeerMessage::Forward { forward, request });
    }

    fn coordinate_write(
        &mut self,
        now: Instant,
        write: KeyWrite,
        placement: WritePlacement,
        reply_to: ReplyTo,
    ) {
        let WritePlacement { replicas, counted, required, fallbacks, future } = placement;
        let KeyWrite { key, value, context, ttl, overwrite } = write;
        let timestamp = self.clock.tick(self.wall);
        let expire_at = ttl.map(|ttl| {
            WallTime::from_millis(self.wall.as_millis().saturating_add(ttl.as_millis()))
        });
        let context = context.map(|context| context.0).unwrap_or_default();
        let stored = self.load_object(&key).map(Option::unwrap_or_default);
        let written = stored.and_then(|mut object| {
            let context = if overwrite { object.clock.clone() } else { context };
            let dot = object.update_above(
                &context,
                NewWrite { value, timestamp, expire_at },
                self.actor,
                self.config.keyspace.conflict_mode,
                self.dots_issued_max,
            );
            self.dots_issued_max = dot.counter;
            let seq = self.write_local(&key, &object)?;
            Ok((object, seq))
        });
        let (object, seq) = match written {
            Ok(written) => written,
            Err(error) => return self.deliver(now, reply_to, Outcome::Failed(error.into())),
        };
        let deadline = now + self.config.request_timeout;
        let op = self.coordinator.start_write(
            counted,
            required,
            future,
            object.context(),
            reply_to,
            deadline,
        );
        if replicas.contains(&self.id) {
            self.pending_acks.push_back((seq, AckTarget::Local(op)));
        }
        let me = self.id;
        for replica in replicas.into_iter().filter(|node| *node != me) {
            self.send(replica, PeerMessage::Write { op, key: key.clone(), object: object.clone() });
        }
        // While a node joins or leaves, the owners-to-be receive every write too, and (with a
        // strict quorum) W of them must acknowledge it, so nothing written during the move is
        // missing from a quorum of the owners once ownership changes.
        let pending: Vec<NodeId> = match &self.future_ring {
            Some(future) => {
                let current = self.ring.preference_list(&key, self.config.keyspace.replicas_n);
                future
                    .preference_list(&key, self.config.keyspace.replicas_n)
                    .into_iter()
                    .filter(|node| *node != me && !current.contains(node))
                    .collect()
            }
            None => Vec::new(),
        };
        for node in pending {
            self.send(node, PeerMessage::Write { op, key: key.clone(), object: object.clone() });
        }
        for (fallback, owner) in fallbacks {
            if fallback == me {
                if let Ok(seq) = self.store_hint(owner, &key, object.clone()) {
                    self.pending_acks.push_back((seq, AckTarget::Local(op)));
                }
            } else {
                self.send(
                    fallback,
                    PeerMessage::Hint { op, owner, key: key.clone(), object: object.clone() },
                );
            }
        }
    }

    /// Where a write goes: its replicas, a fallback for each replica believed down, and whose
    /// acknowledgements count toward W (fallbacks too under sloppy quorum).
    fn write_placement(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<WritePlacement, ClientError> {
        let replicas = self.ring.preference_list(key, self.config.keyspace.replicas_n);
        let mut required = consistency.required(replicas.len())?;
        if crate::planted!(QuorumOffByOne) && required > 1 {
            required -= 1;
        }
        let down_owners: Vec<NodeId> =
            replicas.iter().copied().filter(|node| self.is_down(*node)).collect();
        let fallbacks: Vec<(NodeId, NodeId)> = if down_owners.is_empty() {
            Vec::new()
        } else {
            let beyond = self
                .ring
                .preference_list(key, self.ring.members_count())
                .into_iter()
                .skip(replicas.len());
            beyond.filter(|node| !self.is_down(*node)).zip(down_owners.iter().copied()).collect()
        };
        let up = replicas.len() - down_owners.len();
        let (counted, alive) = if self.config.keyspace.sloppy_quorum {
            let counted = replicas
                .iter()
                .copied()
                .chain(fallbacks.iter().map(|(fallback, _)| *fallback))
                .collect();
            (counted, up + fallbacks.len())
        } else {
            (replicas.clone(), up)
        };
        if alive < required {
            return Err(ClientError::Unavailable { required, alive });
        }
        let future = match (&self.future_ring, self.config.keyspace.sloppy_quorum) {
            (Some(ring), false) => {
                let owners = ring.preference_list(key, self.config.keyspace.replicas_n);
                let count = consistency.required(owners.len())?;
                let alive = owners.iter().filter(|node| !self.is_down(**node)).count();
                if alive < count {
                    return Err(ClientError::Unavailable { required: count, alive });
                }
                Some((owners, count))
            }
            _ => None,
        };
        Ok(WritePlacement { replicas, counted, required, fallbacks, future })
    }

    /// Stores (or merges into) the hint for `owner` and `key`.
    fn store_hint(
        &mut self,
        owner: NodeId,
        key: &[u8],
        object: Versioned,
    ) -> Result<WriteSeq, StorageError> {
        if key.is_empty() || key.len() > self.config.limits.key_bytes_max {
            return Err(StorageError(format!("refused hint key of {} bytes", key.len())));
        }
        let stored_key = hint_key(owner, key);
        let existing =
            self.storage.get(Space::Hints, &stored_key)?.as_deref().and_then(decode_hint);
        let hint = match existing {
            Some(mut hint) => {
                hint.object.merge(&object, self.config.keyspace.conflict_mode);
                hint
            }
            None => Hint { stored_at: self.wall, object },
        };
        let bytes =
            encode_hint(&hint).ok_or_else(|| StorageError("cannot encode a hint".into()))?;
        let seq = self.storage.write(Space::Hints, stored_key, Some(bytes))?;
        self.last_write_seq = seq;
        self.counters.hints_stored += 1;
        Ok(seq)
    }

    /// Sends due hints to owners that are back, drops expired ones; bounded per tick.
    fn replay_hints(&mut self, now: Instant) {
        self.replays.expire(now, self.config.request_timeout);
        let limit = self.config.hints_per_tick_max;
        let Ok(entries) = self.storage.scan(Space::Hints, self.hint_cursor.as_deref(), limit)
        else {
            return;
        };
        self.hint_cursor =
            if entries.len() < limit { None } else { entries.last().map(|(key, _)| key.clone()) };
        // A hint older than the tombstone grace may predate a delete that every replica has
        // purged by now: replayed, it would bring the deleted value back (found by the
        // sliced-repair scenario: grace 4 s, a hint replayed 9 s after the write it held). So
        // a hint lives at most the shorter of the window and the grace, as Cassandra caps a
        // hint's life at gc_grace_seconds.
        let window_ms = self
            .config
            .keyspace
            .hint_window
            .as_millis()
            .min(self.config.keyspace.tombstone_grace.as_millis());
        for (stored_key, bytes) in entries {
            let parsed = split_hint_key(&stored_key).zip(decode_hint(&bytes));
            let Some(((owner, key), hint)) = parsed else {
                self.drop_hint(stored_key);
                continue;
            };
            let expired =
                hint.stored_at.as_millis().saturating_add(window_ms) <= self.wall.as_millis();
            if expired || !self.ring.contains(owner) {
                self.drop_hint(stored_key);
                continue;
            }
            if crate::planted!(HintsNeverReplayed)
                || self.is_down(owner)
                || self.replays.is_in_flight(&stored_key, now, self.config.request_timeout)
            {
                continue;
            }
            let replay = self.replays.start(stored_key, hint.object.clone(), now);
            self.send(owner, PeerMessage::HintReplay { replay, key, object: hint.object });
        }
    }

    /// Starts exchanges of the next slice of a replica group with each of its other replicas
    /// that is up; returns whether that ended the group's cycle (the timer then waits a whole
    /// interval, else only the pause between slices).
    fn start_anti_entropy(&mut self) -> bool {
        let groups = groups_of(&self.ring, self.id, self.config.keyspace.replicas_n);
        let Some((group, low)) = self.anti_entropy.next_slice(&groups) else { return true };
        let peers: Vec<NodeId> =
            group.iter().copied().filter(|peer| *peer != self.id && !self.is_down(*peer)).collect();
        let high = if peers.is_empty() {
            // Nobody to compare with: the group's cycle is skipped.
            Token::MAX
        } else {
            // A failed read ends the cycle; the next one starts over.
            self.send_trees(&group, low, peers).unwrap_or(Token::MAX)
        };
        self.anti_entropy.sent_slice(&group, high)
    }

    /// Step 1: opens an exchange of the slice of `group` from `low` with each of `peers` by
    /// sending it this node's tree, and returns the slice's last token. `None` (and a storage
    /// error counted) when the group's entries cannot be read.
    fn send_trees(&mut self, group: &Group, low: Token, peers: Vec<NodeId>) -> Option<Token> {
        let budget = self.config.anti_entropy_slice_keys.max(1);
        let Ok((entries, high, _)) = self.slice_entries(group, low, Token::MAX, budget) else {
            self.counters.storage_errors += 1;
            return None;
        };
        let tree = Tree::from_entries(&entries);
        let entries = GroupEntries::new(entries);
        for peer in peers {
            let session = self.anti_entropy.start(
                group.clone(),
                peer,
                (low, high),
                self.wall,
                entries.clone(),
            );
            self.counters.repair_exchanges += 1;
            self.send(
                peer,
                PeerMessage::AeTree {
                    session,
                    group: group.clone(),
                    low,
                    high,
                    root: tree.root(),
                    leaves: tree.leaves.clone(),
                },
            );
        }
        Some(high)
    }

    /// Step 2: answer a tree with the digests of the leaves that differ, or with a narrower
    /// slice when this node holds too many keys in this one to read at once.
    fn answer_tree(
        &mut self,
        from: NodeId,
        session: u64,
        group: Group,
        slice: (Token, Token),
        tree: (u64, Vec<u64>),
    ) {
        let ((low, high), (root, leaves)) = (slice, tree);
        if !group.contains(&self.id)
            || !group.contains(&from)
            || group.len() > self.ring.members_count()
            || low > high
        {
            self.counters.peer_messages_dropped += 1;
            return;
        }
        let budget = self.config.anti_entropy_slice_keys.max(1).saturating_mul(2);
        let Ok((entries, read_to, cut)) = self.slice_entries(&group, low, high, budget) else {
            return self.counters.storage_errors += 1;
        };
        if cut {
            self.send(from, PeerMessage::AeNarrow { session, high: read_to });
            return;
        }
        let tree = Tree::from_entries(&entries);
        let differing =
            if tree.root() == root { Vec::new() } else { tree.differing_leaves(&leaves) };
        let wanted: std::collections::BTreeSet<u32> = differing.iter().copied().collect();
        let mut digests: Vec<(Bytes, u64)> = entries
            .into_iter()
            .filter(|(key, _)| wanted.contains(&(leaf_of(key) as u32)))
            .collect();
        let truncated = digests.len() > self.config.anti_entropy_keys_max;
        digests.truncate(self.config.anti_entropy_keys_max);
        self.counters.repair_keys_compared += digests.len() as u64;
        self.send(from, PeerMessage::AeDigests { session, leaves: differing, digests, truncated });
    }

    /// Step 2 answered with a narrower slice: send the tree of the slice cut there.
    fn narrow_tree(&mut self, from: NodeId, session: u64, high: Token) {
        let Some(narrowed) = self.anti_entropy.narrow(session, from, high) else {
            return self.counters.peer_messages_dropped += 1;
        };
        self.counters.repair_slices_narrowed += 1;
        let tree = Tree::from_entries(narrowed.entries.iter());
        self.send(
            from,
            PeerMessage::AeTree {
                session,
                group: narrowed.group,
                low: narrowed.low,
                high: narrowed.high,
                root: tree.root(),
                leaves: tree.leaves,
            },
        );
    }

    /// Step 3: push what the peer lacks, fetch what this node lacks.
    fn reconcile(
        &mut self,
        from: NodeId,
        session: u64,
        leaves: Vec<u32>,
        digests: Vec<(Bytes, u64)>,
        truncated: bool,
    ) {
        // Against the entries the tree was built from: reading the group again cost as much as
        // building it, in the same step of the node.
        let Some(open) = self.anti_entropy.session(session, from) else { return };
        let (entries, first_slice) = (open.entries.clone(), open.low == 0);
        let leaves: std::collections::BTreeSet<u32> = leaves.into_iter().collect();
        let mine: BTreeMap<Bytes, u64> = entries
            .iter()
            .filter(|(key, _)| leaves.contains(&(leaf_of(key) as u32)))
            .cloned()
            .collect();
        let theirs: BTreeMap<Bytes, u64> =
            digests.into_iter().take(self.config.anti_entropy_keys_max).collect();
        let limit = self.config.anti_entropy_keys_max;
        let push: Vec<Bytes> = mine
            .iter()
            .filter(|(key, hash)| theirs.get(*key) != Some(hash))
            .map(|(key, _)| key.clone())
            .take(limit)
            .collect();
        let fetch: Vec<Bytes> = theirs
            .iter()
            .filter(|(key, hash)| mine.get(*key) != Some(hash))
            .map(|(key, _)| key.clone())
            .take(limit)
            .collect();
        self.counters.repair_keys_compared += (mine.len() + theirs.len()) as u64;
        let complete =
            !truncated && mine.len() <= limit && push.len() < limit && fetch.len() < limit;
        if !push.is_empty() {
            self.send_objects(from, push);
        }
        let fetch_keys = if self.refill.is_some() { fetch.clone() } else { Vec::new() };
        if !fetch.is_empty() {
            self.send(from, PeerMessage::AeFetch { keys: fetch });
        }
        if !complete {
            return;
        }
        let Some((group, _, cycle_done)) = self.anti_entropy.complete(session) else { return };
        if let Some(refill) = self.refill.as_mut() {
            let pair = (group, from);
            let progress = refill.pending.entry(pair.clone()).or_default();
            if first_slice {
                // A new cycle: what an earlier one fetched is asked for again if still missing.
                *progress = RefillPair::default();
            }
            progress.waiting.extend(fetch_keys);
            progress.cycled |= cycle_done;
            if progress.cycled && progress.waiting.is_empty() {
                refill.pending.remove(&pair);
                refill.refilled.insert(pair);
            } else if !cycle_done {
                // The refill goes on with the pair's next slice at once, not at the next tick.
                let (group, peer) = pair;
                let low = self.anti_entropy.cycle_next_low(&group, peer);
                if low != 0 {
                    let _ = self.send_trees(&group, low, vec![peer]);
                }
            }
            self.finish_refill();
        }
    }

    /// While rebuilding: starts an exchange of the next slice for every (group, peer) pair that
    /// has not refilled this node yet and is up; finishes the rebuild when none is left.
    fn start_refill(&mut self) {
        let Some(refill) = self.refill.as_ref() else { return };
        let groups = groups_of(&self.ring, self.id, self.config.keyspace.replicas_n);
        let mut wanted: Vec<(Group, NodeId)> = Vec::new();
        for group in groups {
            for peer in group.iter().copied() {
                if peer != self.id
                    && !self.is_down(peer)
                    && !refill.refilled.contains(&(group.clone(), peer))
                {
                    wanted.push((group.clone(), peer));
                }
            }
        }
        self.finish_refill();
        for (group, peer) in wanted {
            // Each pair goes on from its own cycle: a blank node's slices are cheap to read.
            let low = self.anti_entropy.cycle_next_low(&group, peer);
            if self.send_trees(&group, low, vec![peer]).is_none() {
                return;
            }
        }
    }

    /// While rebuilding: objects fetched from `from` arrived and were merged.
    fn refill_arrived(&mut self, from: NodeId, merged: &BTreeSet<Bytes>) {
        let Some(refill) = self.refill.as_mut() else { return };
        let mut done = Vec::new();
        for ((group, peer), progress) in
            refill.pending.iter_mut().filter(|((_, peer), _)| *peer == from)
        {
            progress.waiting.retain(|key| !merged.contains(key));
            if progress.cycled && progress.waiting.is_empty() {
                done.push((group.clone(), *peer));
            }
        }
        for pair in done {
            refill.pending.remove(&pair);
            refill.refilled.insert(pair);
        }
        self.finish_refill();
    }

    /// Ends the rebuild once every other replica of every group this node belongs to has
    /// refilled it: between them they hold every acknowledged write (W + R > N), so the node
    /// may answer reads again. The mark is removed after the refilled objects in write order, so
    /// a crash that loses them keeps the node rebuilding.
    fn finish_refill(&mut self) {
        let Some(refill) = self.refill.as_ref() else { return };
        let groups = groups_of(&self.ring, self.id, self.config.keyspace.replicas_n);
        let all = groups.iter().all(|group| {
            group
                .iter()
                .filter(|peer| **peer != self.id)
                .all(|peer| refill.refilled.contains(&(group.clone(), *peer)))
        });
        if !all {
            return;
        }
        let unmarked =
            self.storage.write(Space::Meta, Bytes::from_static(META_REBUILDING_KEY), None);
        if let Ok(seq) = unmarked {
            self.refill = None;
            self.anti_entropy.forget_repairs();
            // Synced soon (after_handler asks for it), with every refilled object before it.
            self.rebuilt_at_seq = Some(seq);
            self.counters.rebuilds_completed += 1;
            self.next_anti_entropy = self.now + self.config.anti_entropy_interval;
        }
    }

    /// Persists our gossip generation when gossip moved it (a peer knew a later one of ours).
    fn store_generation(&mut self) {
        let generation = self.gossip.mine().generation;
        if generation > self.generation_stored {
            let written = self.storage.write(
                Space::Meta,
                Bytes::from_static(META_GENERATION_KEY),
                Some(Bytes::copy_from_slice(&generation.to_le_bytes())),
            );
            if written.is_ok() {
                self.generation_stored = generation;
            }
        }
    }

    fn send_objects(&mut self, to: NodeId, keys: Vec<Bytes>) {
        let mut objects = Vec::new();
        for key in keys.into_iter().take(self.config.anti_entropy_keys_max) {
            if let Ok(Some(object)) = self.load_object(&key) {
                objects.push((key, object));
            }
        }
        self.counters.repair_keys_streamed += objects.len() as u64;
        if !objects.is_empty() {
            self.send(to, PeerMessage::AeObjects { objects });
        }
    }

    /// The keys of a replica group on this node with tokens from `low` to at most `high`, with
    /// their entry hashes, in token order: up to `budget` keys and every key sharing the last
    /// one's token. Returns them with the last token covered (`high` when the keys ran out
    /// first) and whether keys were left out. Only the group's arcs are read.
    fn slice_entries(
        &mut self,
        group: &Group,
        low: Token,
        high: Token,
        budget: usize,
    ) -> Result<SliceRead, StorageError> {
        let mut intervals: Vec<(Token, Token)> = self
            .ring
            .ranges(self.config.keyspace.replicas_n)
            .into_iter()
            .filter(|range| {
                let mut replicas = range.after.clone();
                replicas.sort();
                replicas == *group
            })
            .flat_map(|range| token_intervals(range.start_exclusive, range.end_inclusive))
            .filter(|&(start, end)| start <= high && end >= low)
            .map(|(start, end)| (start.max(low), end.min(high)))
            .collect();
        intervals.sort_unstable();
        let mut entries = Vec::new();
        let mut buffer = Vec::new();
        // Once the budget is reached: the token to finish, and whether a later key was seen.
        let mut last_token: Option<Token> = None;
        let mut cut = false;
        for (start, end) in intervals {
            visit_data(&mut self.storage, start, end, |token, key, bytes| {
                if last_token.is_some_and(|last| token != last) {
                    cut = true;
                    return false;
                }
                entries.push((key.clone(), entry_hash(&mut buffer, &key, &bytes)));
                if entries.len() >= budget && last_token.is_none() {
                    last_token = Some(token);
                }
                true
            })?;
            if cut {
                break;
            }
        }
        let covered = match last_token {
            Some(last) if cut => last,
            _ => high,
        };
        Ok((entries, covered, cut))
    }

    /// Starts a scan step from the cursor over the run of arcs that one replica holds: this node
    /// when it holds the cursor's arc and serves reads (no hop), else the first other replica
    /// believed up.
    fn start_scan(&mut self, now: Instant, cursor: u64, count: usize, reply_to: ReplyTo) {
        let count = count.clamp(1, self.config.limits.batch_keys_max);
        let replicas_n = self.config.keyspace.replicas_n;
        let low = if cursor == 0 { 0 } else { cursor.saturating_add(1) };
        let replicas = self.ring.preference_list_for_token(low, replicas_n);
        let replica = if replicas.contains(&self.id) && self.refill.is_none() {
            Some(self.id)
        } else {
            replicas.iter().copied().find(|node| *node != self.id && !self.is_down(*node))
        };
        let Some(replica) = replica else {
            let error = ClientError::Unavailable { required: 1, alive: 0 };
            return self.deliver(now, reply_to, Outcome::Failed(error));
        };
        // Extend the step over the following arcs the same replica holds, so that a page fills up
        // to `count` keys instead of ending at every arc boundary.
        let mut high = self.ring.arc_end_from(low).unwrap_or(u64::MAX);
        while high < u64::MAX
            && self.ring.preference_list_for_token(high + 1, replicas_n).contains(&replica)
        {
            high = self.ring.arc_end_from(high + 1).unwrap_or(u64::MAX);
        }
        if replica == self.id {
            let result = self.scan_tokens(low, high, count);
            return self.deliver(now, reply_to, Outcome::Forwarded(result));
        }
        let forward = self.coordinator.start_forward(reply_to, now + self.config.request_timeout);
        self.send(replica, PeerMessage::ScanRequest { forward, low, high, count });
    }

    /// This node's live keys with tokens in `[low, high]`, in token order, at most `count`, and
    /// the cursor that continues after them (0 when the ring is done). At most
    /// [`SCAN_EXAMINED_MAX`] stored objects are read per step, so that a stretch of tombstones
    /// cannot hold the node for long: the page then comes back short with a cursor to go on from.
    fn scan_tokens(
        &mut self,
        low: u64,
        high: u64,
        count: usize,
    ) -> Result<ClientResponse, ClientError> {
        let count = count.max(1);
        let wall = self.wall;
        let mut keys: Vec<Bytes> = Vec::new();
        let mut examined = 0usize;
        let mut last_token = None;
        let mut stopped = false;
        visit_data(&mut self.storage, low, high, |token, key, bytes| {
            if keys.len() == count || examined == SCAN_EXAMINED_MAX {
                stopped = true;
                return false;
            }
            examined += 1;
            last_token = Some(token);
            if decode_object(&bytes).is_ok_and(|object| !object.live_values(wall).is_empty()) {
                keys.push(key);
            }
            true
        })?;
        let cursor = match last_token {
            Some(token) if stopped => token,
            _ if high == u64::MAX => 0,
            _ => high,
        };
        Ok(ClientResponse::Scanned { keys, cursor })
    }

    /// This node's membership status.
    pub fn status(&self) -> MemberStatus {
        self.gossip.mine().status
    }

    /// Rebuilds the ring (owners: normal and leaving members) and the future ring (owners once
    /// every join and departure in progress completes) from gossip.
    fn refresh_ring(&mut self) {
        let members = self.gossip.members();
        let mut ring = Ring::new(self.config.vnodes_per_node);
        let mut future = Ring::new(self.config.vnodes_per_node);
        for (node, state) in members {
            if state.status.owns_ranges() {
                ring.add(*node, state.weight);
            }
            if matches!(state.status, MemberStatus::Normal | MemberStatus::Joining) {
                future.add(*node, state.weight);
            }
        }
        if ring.members_count() == 0 {
            return;
        }
        if ring != self.ring {
            let removed: Vec<NodeId> = members
                .iter()
                .filter(|(node, state)| state.removed_by_operator() && self.ring.contains(**node))
                .map(|(node, _)| *node)
                .collect();
            let before = std::mem::replace(&mut self.ring, ring);
            self.counters.ring_changes += 1;
            if !removed.is_empty() {
                self.rebuild_after_removal(&before, &removed);
            }
        }
        self.future_ring = (future != self.ring).then_some(future);
    }

    /// Pulls the ranges this node inherits from removed nodes from every surviving replica of
    /// each (found by the simulator: a replica that inherited a dead node's range answered
    /// quorum reads with an empty copy until anti-entropy came round, so a read could miss a
    /// write acknowledged by the dead node and one survivor). Until every stream is in, the
    /// node answers no reads on those ranges; the union of the survivors' copies holds every
    /// write a quorum acknowledged.
    fn rebuild_after_removal(&mut self, before: &Ring, removed: &[NodeId]) {
        let moves = before.moves_to(&self.ring, self.config.keyspace.replicas_n);
        let mut by_source: BTreeMap<NodeId, Vec<Arc>> = BTreeMap::new();
        for range in &moves {
            let inherited = range.gained_by().contains(&self.id)
                && range.lost_by().iter().any(|node| removed.contains(node));
            if !inherited {
                continue;
            }
            let arc =
                Arc { start_exclusive: range.start_exclusive, end_inclusive: range.end_inclusive };
            for source in range.before.iter().filter(|node| !removed.contains(node)) {
                by_source.entry(*source).or_default().push(arc);
            }
        }
        for (source, arcs) in by_source {
            let stream = self.streams.next_id(self.id);
            self.streams.expect(stream, source, arcs.clone(), self.now);
            self.rebuilds.insert(stream, arcs.clone());
            self.counters.removal_rebuilds += 1;
            self.send(source, PeerMessage::StreamRequest { stream, arcs });
        }
    }

    /// Whether `key` lies on a range this node is still rebuilding after a removal.
    fn is_inheriting(&self, key: &[u8]) -> bool {
        if self.rebuilds.is_empty() {
            return false;
        }
        let token = Ring::key_token(key);
        self.rebuilds.values().flatten().any(|arc| arc.contains(token))
    }

    /// Whether every other member (all but those left) has confirmed (through gossip) that it
    /// knows this node's current status. A moving node waits for this before it moves data:
    /// from then on every coordinator sends each write to the owners-to-be as well and waits
    /// for a quorum of them too, so the data moved plus the writes that follow are complete
    /// when ownership changes (found by the simulator: a node that streamed and flipped its
    /// status before the others had heard of the move left quorum reads missing acknowledged
    /// writes). A member believed down is waited for too: a wrongly suspected one still
    /// coordinates (found by the simulator with false suspicions), and a crashed one learns of
    /// the move before it coordinates again (a restarted node waits for gossip). As with
    /// Cassandra's consistent range movement, a member that is down for good must be removed
    /// before another node can join or leave.
    fn move_is_known(&self) -> bool {
        self.gossip.members().iter().all(|(peer, state)| {
            *peer == self.id
                || state.status == MemberStatus::Left
                || self.gossip.knows_my_status(*peer)
        })
    }

    /// Moves a joining node along: once it has learned the ring and every member knows it is
    /// joining, it asks the replicas that give up each range for it; once every stream is
    /// durable, it becomes normal. Moves a leaving node along: once every member knows it is
    /// leaving, it streams its ranges to their next owners.
    fn advance_membership(&mut self) {
        let waiting = match self.status() {
            MemberStatus::Joining => !self.join_planned,
            MemberStatus::Leaving => !self.leave_planned,
            _ => false,
        };
        if waiting {
            // Tell every member that has not confirmed the move yet, once a round, rather than
            // waiting for random gossip to reach each of them.
            let unaware: Vec<NodeId> = self
                .gossip
                .members()
                .iter()
                .filter(|(peer, state)| {
                    **peer != self.id
                        && state.status != MemberStatus::Left
                        && !self.gossip.knows_my_status(**peer)
                })
                .map(|(peer, _)| *peer)
                .collect();
            for peer in unaware {
                self.gossip.announce_to(peer);
            }
            self.send_gossip();
        }
        if self.status() == MemberStatus::Leaving && !self.leave_planned && self.move_is_known() {
            self.plan_leave();
        }
        if self.status() != MemberStatus::Joining {
            return;
        }
        if !self.join_planned {
            if self.gossip.rounds() < self.config.join_settle_rounds
                || self.ring.members_count() == 0
                || !self.move_is_known()
            {
                return;
            }
            self.plan_join();
            return;
        }
        let durable =
            self.pending_acks.is_empty() && self.storage.durable_seq() >= self.last_write_seq;
        if self.streams.incoming_count() == 0 && durable {
            self.record_status(b"joined");
            self.gossip.set_status(MemberStatus::Normal);
            self.refresh_ring();
        }
    }

    fn plan_join(&mut self) {
        let mut future = self.ring.clone();
        future.add(self.id, self.config.weight);
        let moves = self.ring.moves_to(&future, self.config.keyspace.replicas_n);
        let mut by_source: BTreeMap<NodeId, Vec<Arc>> = BTreeMap::new();
        for range in moves.iter().filter(|range| range.gained_by().contains(&self.id)) {
            // The replica that gives the range up holds exactly the copy this node replaces, so
            // the owners after the move hold what the owners before held; another replica's
            // copy may lack writes that replica did not acknowledge.
            // When that replica is believed down the plan waits (found by the simulator: a
            // falsely suspected loser made the joiner stream from another replica); only a range
            // that nobody gives up (a cluster smaller than N) comes from any replica up.
            let losers = range.lost_by();
            let candidates = if losers.is_empty() { range.before.clone() } else { losers };
            let Some(source) = candidates.into_iter().find(|node| !self.is_down(*node)) else {
                return;
            };
            let arc =
                Arc { start_exclusive: range.start_exclusive, end_inclusive: range.end_inclusive };
            by_source.entry(source).or_default().push(arc);
        }
        for (source, arcs) in by_source {
            let stream = self.streams.next_id(self.id);
            self.streams.expect(stream, source, arcs.clone(), self.now);
            self.send(source, PeerMessage::StreamRequest { stream, arcs });
        }
        self.join_planned = true;
    }

    /// How long a stream chunk waits for its ack, and a requested stream for a chunk, before it
    /// is sent or asked for again.
    fn stream_retry(&self) -> Duration {
        self.config.request_timeout * 2
    }

    /// Asks again for every incoming stream that has been silent for the retry interval: the
    /// request or a chunk was lost, the source had not heard of this node yet and dropped the
    /// request, or the source restarted and forgot the stream.
    fn ask_again_for_stalled_streams(&mut self, now: Instant) {
        for stalled in self.streams.stalled(now, self.stream_retry()) {
            let source_left = self
                .gossip
                .members()
                .get(&stalled.from)
                .is_none_or(|state| state.status == MemberStatus::Left);
            if source_left {
                // The source left (another move completed meanwhile; found by the simulator:
                // a joiner waited forever for a node that had been decommissioned). A joiner
                // plans again from the current ring; a rebuild drops the departed source, whose
                // ranges it handed to their next owners.
                self.streams.abandon(stalled.from);
                self.rebuilds.remove(&stalled.stream);
                if self.status() == MemberStatus::Joining {
                    self.join_planned = false;
                }
                continue;
            }
            self.counters.stream_requests_repeated += 1;
            let request = PeerMessage::StreamRequest { stream: stalled.stream, arcs: stalled.arcs };
            self.send(stalled.from, request);
        }
    }

    /// Starts leaving: marks the node leaving; once every member knows, `plan_leave` streams
    /// every range it loses to its next owners, and `pump_streams` marks it left when all are
    /// acknowledged.
    fn decommission(&mut self) {
        if self.status() != MemberStatus::Normal {
            return;
        }
        self.gossip.set_status(MemberStatus::Leaving);
        self.leave_planned = false;
        self.refresh_ring();
    }

    fn plan_leave(&mut self) {
        self.leave_planned = true;
        let mut future = self.ring.clone();
        future.remove(self.id);
        let mut by_target: BTreeMap<NodeId, Vec<Arc>> = BTreeMap::new();
        for range in self.ring.moves_to(&future, self.config.keyspace.replicas_n) {
            if !range.lost_by().contains(&self.id) {
                continue;
            }
            let arc =
                Arc { start_exclusive: range.start_exclusive, end_inclusive: range.end_inclusive };
            for target in range.gained_by() {
                by_target.entry(target).or_default().push(arc);
            }
        }
        for (target, arcs) in by_target {
            let stream = self.streams.next_id(self.id);
            self.streams.send(stream, target, arcs);
        }
    }

    /// Sends the next chunk of every outgoing stream that may send; a leaving node whose streams
    /// are all acknowledged marks itself left.
    fn pump_streams(&mut self) {
        // Runs after every input; nearly always nothing is streaming.
        if self.streams.outgoing_count() == 0 && self.status() != MemberStatus::Leaving {
            return;
        }
        for due in self.streams.due(self.now, self.stream_retry()) {
            let Ok((objects, next_cursor)) = self.stream_chunk(&due.arcs, due.cursor.as_deref())
            else {
                self.counters.storage_errors += 1;
                continue;
            };
            self.counters.stream_keys_sent += objects.len() as u64;
            let last = next_cursor.is_none();
            let seq = self.streams.sent(due.stream, due.cursor, next_cursor, self.now);
            self.send(due.to, PeerMessage::StreamChunk { stream: due.stream, seq, objects, last });
        }
        if self.status() == MemberStatus::Leaving
            && self.leave_planned
            && self.streams.outgoing_count() == 0
        {
            self.record_status(b"left");
            self.gossip.set_status(MemberStatus::Left);
            self.refresh_ring();
        }
    }

    fn record_status(&mut self, status: &'static [u8]) {
        match self.storage.write(
            Space::Meta,
            Bytes::from_static(META_STATUS_KEY),
            Some(Bytes::from_static(status)),
        ) {
            Ok(seq) => self.last_write_seq = seq,
            Err(_) => self.counters.storage_errors += 1,
        }
    }

    /// The next chunk of keys on `arcs` after `cursor`, and where to go on (`None`: done).
    fn stream_chunk(
        &mut self,
        arcs: &[Arc],
        cursor: Option<&[u8]>,
    ) -> Result<StreamChunk, StorageError> {
        let page = self.storage.scan(Space::Data, cursor, SCAN_PAGE_KEYS)?;
        let exhausted = page.len() < SCAN_PAGE_KEYS;
        let mut objects = Vec::new();
        let mut last_seen = None;
        for (stored, bytes) in page {
            last_seen = Some(stored.clone());
            let Some((token, _)) = split_data_key(&stored) else { continue };
            if arcs.iter().any(|arc| arc.contains(token)) {
                objects.push((stored.slice(DATA_KEY_TOKEN_BYTES..), decode_object(&bytes)?));
                if objects.len() == self.config.stream_chunk_keys_max {
                    return Ok((objects, last_seen));
                }
            }
        }
        Ok((objects, if exhausted { None } else { last_seen }))
    }

    fn receive_chunk(
        &mut self,
        from: NodeId,
        stream: StreamId,
        seq: ChunkSeq,
        objects: Vec<(Bytes, Versioned)>,
        last: bool,
    ) {
        self.streams.progressed(stream, self.now);
        for (key, object) in objects.into_iter().take(self.config.stream_chunk_keys_max) {
            if self.merge_local(&key, &object).is_err() {
                self.counters.storage_errors += 1;
            }
        }
        let durable_at = self.last_write_seq.max(self.storage.durable_seq());
        self.pending_acks
            .push_back((durable_at, AckTarget::Stream { to: from, stream, seq, last }));
    }

    fn drop_hint(&mut self, stored_key: Bytes) {
        if self.storage.write(Space::Hints, stored_key, None).is_ok() {
            self.counters.hints_dropped += 1;
        }
    }

    /// The owner has the replayed hint: delete it, unless a newer write was merged into it since.
    fn hint_delivered(&mut self, replay: u64) {
        let Some((stored_key, sent)) = self.replays.finish(replay) else { return };
        let current = self.storage.get(Space::Hints, &stored_key).ok().flatten();
        let unchanged =
            current.as_deref().and_then(decode_hint).is_some_and(|hint| hint.object == sent);
        if unchanged && self.storage.write(Space::Hints, stored_key, None).is_ok() {
            self.counters.hints_replayed += 1;
        }
    }

    // ---- peer messages ----

    fn handle_peer(&mut self, now: Instant, from: NodeId, message: PeerMessage) {
        // Gossip is how a stranger (a joining node) introduces itself; everything else must come
        // from a node gossip knows.
        let known = self.gossip.members().contains_key(&from);
        if from == self.id || (!known && !matches!(message, PeerMessage::Gossip(_))) {
            self.counters.peer_messages_dropped += 1;
            return;
        }
        match message {
            PeerMessage::Read { .. }
                if self.refill.is_some() && !crate::planted!(RebuildServesReads) =>
            {
                // Silence, as from a failed replica: the coordinator needs R others.
                self.counters.rebuild_reads_refused += 1;
            }
            PeerMessage::Read { op, key } => {
                if self.is_inheriting(&key) {
                    // Silence: the coordinator makes its quorum of complete replicas.
                    return self.counters.removal_reads_refused += 1;
                }
                let object = match self.load_object(&key) {
                    Ok(object) => object,
                    Err(_) => return self.counters.peer_messages_dropped += 1,
                };
                self.send(from, PeerMessage::ReadReply { op, object });
            }
            PeerMessage::ReadReply { op, object } => {
                let object = object.unwrap_or_default();
                let object = if self.predates_flush(&object) {
                    self.without_flushed(object)
                } else {
                    object
                };
                let actions = self.coordinator.on_read_reply(op, from, object);
                self.run_actions(now, actions);
            }
            PeerMessage::Write { op, object, .. } if self.write_predates_flush(&object) => {
                // Refused, not dropped: a coordinator whose clock lags the flush must not
                // count this replica as holding the write (its client sees an error, retries).
                let reason = "refused: the write is stamped before this node's latest flush";
                self.send(from, PeerMessage::WriteAck { op, result: Err(reason.into()) });
            }
            PeerMessage::Write { op, key, object } => match self.merge_local(&key, &object) {
                Ok(seq) => self.pending_acks.push_back((seq, AckTarget::Remote { to: from, op })),
                Err(error) => self.send(from, PeerMessage::WriteAck { op, result: Err(error.0) }),
            },
            PeerMessage::WriteAck { op, result } => {
                let actions = self.coordinator.on_write_ack(op, from, result);
                self.run_actions(now, actions);
            }
            PeerMessage::Repair { key, object } => {
                if self.merge_local(&key, &object).is_err() {
                    self.counters.peer_messages_dropped += 1;
                }
            }
            PeerMessage::Hint { op, owner, key, object } => match self
                .store_hint(owner, &key, object)
            {
                Ok(seq) => self.pending_acks.push_back((seq, AckTarget::Remote { to: from, op })),
                Err(error) => self.send(from, PeerMessage::WriteAck { op, result: Err(error.0) }),
            },
            PeerMessage::HintReplay { replay, key, object } => {
                match self.merge_local(&key, &object) {
                    Ok(seq) => {
                        self.pending_acks.push_back((seq, AckTarget::Replayed { to: from, replay }))
                    }
                    Err(_) => self.counters.peer_messages_dropped += 1,
                }
            }
            PeerMessage::HintReplayAck { replay } => self.hint_delivered(replay),
            PeerMessage::AeTree { session, group, low, high, root, leaves } => {
                self.answer_tree(from, session, group, (low, high), (root, leaves))
            }
            PeerMessage::AeNarrow { session, high } => self.narrow_tree(from, session, high),
            PeerMessage::AeDigests { session, leaves, digests, truncated } => {
                self.reconcile(from, session, leaves, digests, truncated)
            }
            PeerMessage::AeFetch { keys } => self.send_objects(from, keys),
            PeerMessage::AeObjects { objects } => {
                let mut merged = BTreeSet::new();
                for (key, object) in objects.into_iter().take(self.config.anti_entropy_keys_max) {
                    if self.merge_local(&key, &object).is_err() {
                        self.counters.peer_messages_dropped += 1;
                    } else {
                        merged.insert(key);
                    }
                }
                self.refill_arrived(from, &merged);
            }
            PeerMessage::ScanRequest { forward, low, high, count } => {
                let result =
                    self.scan_tokens(low, high, count.min(self.config.limits.batch_keys_max));
                self.send(from, PeerMessage::ForwardReply { forward, result });
            }
            PeerMessage::StreamRequest { stream, arcs } => {
                if stream.0 == from && arcs.len() <= STREAM_ARCS_MAX {
                    self.streams.send(stream, from, arcs);
                } else {
                    self.counters.peer_messages_dropped += 1;
                }
            }
            PeerMessage::StreamChunk { stream, seq, objects, last } => {
                self.receive_chunk(from, stream, seq, objects, last)
            }
            PeerMessage::StreamAck { stream, seq } => {
                if self.streams.acked(stream, from, seq) {
                    self.counters.streams_completed += 1;
                }
            }
            PeerMessage::Gossip(message) => {
                // An Ack answers our digests with every state newer than ours.
                if matches!(message, GossipMessage::Ack { .. }) {
                    self.membership_synced = true;
                }
                let advanced = self.gossip.handle(from, message);
                self.store_generation();
                for node in &advanced {
                    self.detector.heartbeat(*node, now);
                }
                if !advanced.is_empty() {
                    self.refresh_ring();
                }
                self.send_gossip();
            }
            message @ (PeerMessage::PaxosPrepare { .. }
            | PeerMessage::PaxosPropose { .. }
            | PeerMessage::PaxosCommit { .. }) => self.answer_paxos(now, from, message),
            message @ (PeerMessage::PaxosPromise { .. }
            | PeerMessage::PaxosAccepted { .. }
            | PeerMessage::PaxosCommitted { .. }) => {
                self.paxos_answered(now, from, message);
                self.pump_paxos(now);
            }
            PeerMessage::Forward { forward, request } => {
                self.handle_forward(now, from, forward, request)
            }
            PeerMessage::ForwardReply { forward, result } => {
                let actions = self.coordinator.on_forward_reply(forward, result);
                self.run_actions(now, actions);
            }
            PeerMessage::FlushClock { flush } => {
                let clock = self.clock.tick(self.wall);
                self.send(from, PeerMessage::FlushClockReply { flush, clock });
            }
            PeerMessage::FlushClockReply { flush, clock } => {
                self.flush_clock_read(flush, from, clock)
            }
            PeerMessage::Truncate { flush, at } => self.apply_truncate(from, flush, at),
            PeerMessage::TruncateAck { flush, result } => {
                if let Some((reply_to, result)) = self.flushes.on_ack(flush, from, result) {
                    self.flush_finished(reply_to, result);
                }
            }
        }
    }

    fn handle_forward(
        &mut self,
        now: Instant,
        from: NodeId,
        forward: OpId,
        request: ClientRequest,
    ) {
        let reply_to = ReplyTo::Forward { to: from, forward };
        if !Coordinator::accepts_forward(&request) {
            self.counters.peer_messages_dropped += 1;
            return;
        }
        match self.forwards.receive(now, from, forward, &request) {
            ForwardCheck::New => {}
            ForwardCheck::InProgress => return self.counters.duplicate_forwards += 1,
            ForwardCheck::Done(result) => {
                self.counters.duplicate_forwards += 1;
                return self.send(from, PeerMessage::ForwardReply { forward, result });
            }
        }
        if let Err(error) = self.admit(&request) {
            return self.deliver(now, reply_to, Outcome::Failed(error));
        }
        let (write, consistency) = match request {
            ClientRequest::Put { key, value, context, ttl, consistency } => {
                (KeyWrite { key, value: Some(value), context, ttl, overwrite: false }, consistency)
            }
            ClientRequest::Set { key, value, ttl, consistency } => (
                KeyWrite { key, value: Some(value), context: None, ttl, overwrite: true },
                consistency,
            ),
            ClientRequest::Delete { key, context, consistency } => {
                (KeyWrite { key, value: None, context, ttl: None, overwrite: false }, consistency)
            }
            _ => return,
        };
        // A forwarded write is coordinated here even if this node's ring disagrees, so a request
        // is forwarded at most once and can never loop.
        match self.write_placement(&write.key, consistency) {
            Ok(placement) => self.coordinate_write(now, write, placement, reply_to),
            Err(error) => self.deliver(now, reply_to, Outcome::Failed(error)),
        }
    }

    /// Merges a replica's object into the local copy and writes it if anything changed.
    fn merge_local(&mut self, key: &[u8], incoming: &Versioned) -> Result<WriteSeq, StorageError> {
        if key.is_empty() || key.len() > self.config.limits.key_bytes_max {
            return Err(StorageError(format!("refused key of {} bytes", key.len())));
        }
        if let Some(sibling) =
            incoming.siblings.iter().find(|sibling| !incoming.clock.covers(sibling.dot))
        {
            return Err(StorageError(format!(
                "malformed object: sibling {:?} outside its clock",
                sibling.dot
            )));
        }
        if let Some(timestamp) = incoming.siblings.iter().map(|sibling| sibling.timestamp).max() {
            self.clock.observe(timestamp);
        }
        let flushed;
        let incoming = if self.predates_flush(incoming) {
            flushed = self.without_flushed(incoming.clone());
            if flushed.siblings.is_empty() {
                return Ok(self.last_write_seq.max(self.storage.durable_seq()));
            }
            &flushed
        } else {
            incoming
        };
        let mut local = self.load_object(key)?.unwrap_or_default();
        let mode = self.config.keyspace.conflict_mode;
        if local.absorbs(incoming, mode) {
            // Nothing new, but the local copy may itself be unsynced: the acknowledgement waits
            // for everything written so far.
            return Ok(self.last_write_seq.max(self.storage.durable_seq()));
        }
        local.merge(incoming, mode);
        self.write_local(key, &local)
    }

    /// Whether `object` holds a sibling written at or before the latest flush.
    fn predates_flush(&self, object: &Versioned) -> bool {
        if crate::planted!(FlushKeepsLateArrivals) {
            return false;
        }
        self.truncated_at
            .is_some_and(|at| object.siblings.iter().any(|sibling| sibling.timestamp <= at))
    }

    /// Whether a coordinated write's newest sibling (the new write: its coordinator stamps it
    /// after everything it holds) was stamped at or before the latest flush.
    fn write_predates_flush(&self, object: &Versioned) -> bool {
        let newest = object.siblings.iter().map(|sibling| sibling.timestamp).max();
        !crate::planted!(FlushKeepsLateArrivals)
            && self.truncated_at.zip(newest).is_some_and(|(at, newest)| newest <= at)
    }

    /// `object` without the siblings written at or before the latest flush, which must not
    /// come back from a replica that missed it. The clock stays, so the object still covers
    /// the dropped writes and a merge at that replica removes them there too.
    fn without_flushed(&self, mut object: Versioned) -> Versioned {
        if let Some(at) = self.truncated_at {
            object.siblings.retain(|sibling| sibling.timestamp > at);
        }
        object
    }

    // ---- actions and replies ----

    fn send_gossip(&mut self) {
        while let Some((to, message)) = self.gossip.poll_message() {
            self.send(to, PeerMessage::Gossip(message));
        }
    }

    /// Whether `node` is believed down: its connection is lost (driver) or the failure detector
    /// suspects it.
    fn is_down(&self, node: NodeId) -> bool {
        node != self.id
            && (self.down.contains(&node)
                || !self.detector.is_alive(node, self.now)
                || self.held_down.get(&node).is_some_and(|until| self.now < *until))
    }

    fn write_local(&mut self, key: &[u8], object: &Versioned) -> Result<WriteSeq, StorageError> {
        let written = write_object(&mut self.storage, key, object);
        match &written {
            Ok(seq) => {
                self.last_write_seq = *seq;
                // Only a cached copy needs the new version; reads decide what gets cached.
                self.objects.replace(key, object);
            }
            // The store may or may not hold the new copy: read it back next time.
            Err(_) => self.objects.forget(key),
        }
        written
    }

    /// The stored object of `key`, from the cache when it is there.
    fn load_object(&mut self, key: &[u8]) -> Result<Option<Versioned>, StorageError> {
        self.load_object_caching(key, false)
    }

    /// [`Self::load_object`] for a Paxos prepare: the commit that usually follows reads the
    /// key again, so a stored object is cached at its first miss, not its second.
    fn load_object_for_round(&mut self, key: &[u8]) -> Result<Option<Versioned>, StorageError> {
        self.load_object_caching(key, true)
    }

    /// Reads `key` through the object cache; a stored object read from storage is cached at
    /// once when `at_first_miss`, else when the doorkeeper has seen it miss before.
    fn load_object_caching(
        &mut self,
        key: &[u8],
        at_first_miss: bool,
    ) -> Result<Option<Versioned>, StorageError> {
        if let Some(object) = self.objects.get(key) {
            return Ok(Some(object.clone()));
        }
        let object = read_object(&mut self.storage, key)?;
        if let Some(object) = &object {
            if at_first_miss || self.objects.admit(key) {
                self.objects.insert(key, object.clone());
            }
        }
        Ok(object)
    }

    fn run_actions(&mut self, now: Instant, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Deliver { reply_to, outcome } => self.deliver(now, reply_to, outcome),
                Action::RepairAndWait { op, key, targets, object } => {
                    for target in targets {
                        self.counters.read_repairs_sent += 1;
                        if target == self.id {
                            match self.merge_local(&key, &object) {
                                Ok(seq) => self.pending_acks.push_back((seq, AckTarget::Local(op))),
                                Err(error) => {
                                    let actions =
                                        self.coordinator.on_write_ack(op, self.id, Err(error.0));
                                    self.run_actions(now, actions);
                                }
                            }
                        } else {
                            self.send(
                                target,
                                PeerMessage::Write { op, key: key.clone(), object: object.clone() },
                            );
                        }
                    }
                }
                Action::RepairAsync { key, targets, object } => {
                    for target in targets {
                        self.counters.read_repairs_sent += 1;
                        if target == self.id {
                            // Best effort: a failed local repair is retried by the next read.
                            let _ = self.merge_local(&key, &object);
                        } else {
                            self.send(
                                target,
                                PeerMessage::Repair { key: key.clone(), object: object.clone() },
                            );
                        }
                    }
                }
            }
        }
    }

    fn deliver(&mut self, now: Instant, reply_to: ReplyTo, outcome: Outcome) {
        match reply_to {
            ReplyTo::Client(request) => {
                let result = self.client_result(outcome);
                self.reply(request, result);
            }
            ReplyTo::Forward { to, forward } => {
                let result = self.client_result(outcome);
                self.forwards.replied(to, forward, &result);
                self.send(to, PeerMessage::ForwardReply { forward, result });
            }
            ReplyTo::Batch { batch, index } => {
                if let Some((request, outcomes)) =
                    self.coordinator.fill_batch(batch, index, outcome)
                {
                    let result = self.batch_result(outcomes);
                    self.reply(request, result);
                }
            }
        }
        let _ = now;
    }

    fn client_result(&self, outcome: Outcome) -> Result<ClientResponse, ClientError> {
        match outcome {
            Outcome::Read(object) => Ok(ClientResponse::Read(read_result(&object, self.wall))),
            Outcome::Written(context) => Ok(ClientResponse::Written { context }),
            Outcome::Forwarded(result) => result,
            Outcome::Failed(error) => Err(error),
        }
    }

    fn batch_result(&self, outcomes: Vec<Outcome>) -> Result<ClientResponse, ClientError> {
        let mut reads = Vec::with_capacity(outcomes.len());
        let mut writes_only = true;
        for outcome in outcomes {
            match self.client_result(outcome)? {
                ClientResponse::Read(read) => {
                    writes_only = false;
                    reads.push(read);
                }
                ClientResponse::Written { .. } => {}
                other => return Ok(other),
            }
        }
        Ok(if writes_only { ClientResponse::WrittenMany } else { ClientResponse::ReadMany(reads) })
    }

    fn reply(&mut self, request: RequestId, result: Result<ClientResponse, ClientError>) {
        if result.is_err() {
            self.counters.client_errors += 1;
        }
        self.outbox.push_back(Output::Reply { request, result });
    }

    fn send(&mut self, to: NodeId, message: PeerMessage) {
        debug_assert_ne!(to, self.id, "a node never sends to itself");
        self.outbox.push_back(Output::Send { to, message });
    }

    // ---- durability ----

    fn after_handler(&mut self) {
        self.pump_streams();
        self.release_durable_acks();
        while self.release_paxos_replies() {}
        let waiting = !self.pending_acks.is_empty()
            || !self.paxos_replies.is_empty()
            || self.ready_at_seq.is_some()
            || self.rebuilt_at_seq.is_some();
        if waiting && !self.sync_requested && self.storage_failure.is_none() {
            self.sync_requested = true;
            self.outbox.push_back(Output::SyncStorage);
        }
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
    }

    fn release_durable_acks(&mut self) {
        let durable = self.storage.durable_seq();
        if self.ready_at_seq.is_some_and(|seq| seq <= durable) {
            self.ready_at_seq = None;
        }
        if self.rebuilt_at_seq.is_some_and(|seq| seq <= durable) {
            self.rebuilt_at_seq = None;
        }
        if self.storage_failure.is_some() {
            return;
        }
        let acknowledgeable =
            if self.config.acknowledge_before_sync || crate::planted!(AckBeforeSync) {
                WriteSeq::MAX
            } else {
                durable
            };
        while let Some(&(seq, target)) = self.pending_acks.front() {
            if seq > acknowledgeable {
                break;
            }
            self.pending_acks.pop_front();
            match target {
                AckTarget::Local(op) => {
                    let actions = self.coordinator.on_write_ack(op, self.id, Ok(()));
                    self.run_actions(Instant::ZERO, actions);
                }
                AckTarget::Remote { to, op } => {
                    self.send(to, PeerMessage::WriteAck { op, result: Ok(()) })
                }
                AckTarget::Replayed { to, replay } => {
                    self.send(to, PeerMessage::HintReplayAck { replay })
                }
                AckTarget::Truncated { to, flush } => self.truncate_acked(to, flush, Ok(())),
                AckTarget::Stream { to, stream, seq, last } => {
                    if last && self.streams.expects(stream, to) {
                        self.streams.received_all(stream);
                        self.rebuilds.remove(&stream);
                    }
                    self.send(to, PeerMessage::StreamAck { stream, seq });
                }
            }
        }
    }

    /// Drops objects that hold nothing readable and have held nothing for the grace period.
    fn sweep_tombstones(&mut self) {
        let grace_ms = self.config.keyspace.tombstone_grace.as_millis();
        let Ok(entries) = self.storage.scan(
            Space::Data,
            self.sweep_cursor.as_deref(),
            self.config.sweep_keys_max,
        ) else {
            return;
        };
        self.sweep_cursor = if entries.len() < self.config.sweep_keys_max {
            None
        } else {
            entries.last().map(|(key, _)| key.clone())
        };
        for (stored, bytes) in entries {
            let Some((_, key)) = split_data_key(&stored) else { continue };
            let purgeable = decode_object(&bytes).is_ok_and(|object| {
                object.is_purgeable(self.wall, grace_ms) && self.repaired_since_death(key, &object)
            });
            self.objects.forget(key);
            if purgeable && self.storage.write(Space::Data, stored, None).is_ok() {
                self.counters.tombstones_purged += 1;
            }
        }
    }

    /// Whether every other replica of the key exchanged with this node since the object died, so
    /// that each holds its tombstone and purging it cannot let an older value back. Without
    /// anti-entropy only the grace period guards.
    fn repaired_since_death(&self, key: &[u8], object: &Versioned) -> bool {
        if self.config.anti_entropy_interval == Duration::ZERO {
            return true;
        }
        if self.refill.is_some() {
            // A store being refilled may not hold every tombstone yet, and the exchanges that
            // refill it read it blank: they prove nothing about what its peers hold. Found by
            // the sliced-repair scenario (seed 65): a rebuilt node purged a tombstone while
            // still refilling, and a replica that had missed the delete served the old value.
            return false;
        }
        let Some(died) = object.dead_since(self.wall) else { return false };
        let group = group_of(&self.ring, Ring::key_token(key), self.config.keyspace.replicas_n);
        self.anti_entropy.repaired_since(&group, self.id, died)
    }

    fn check_invariants(&self) {
        self.coordinator.check_invariants();
        self.forwards.check_invariants();
        self.gossip.check_invariants();
        self.detector.check_invariants();
        self.streams.check_invariants();
        self.replays.check_invariants();
        self.paxos.check_invariants();
        let paxos_seqs: Vec<WriteSeq> = self.paxos_replies.iter().map(|(seq, _, _)| *seq).collect();
        assert!(
            paxos_seqs.windows(2).all(|pair| pair[0] <= pair[1]),
            "paxos answers out of write order: {paxos_seqs:?}"
        );
        let seqs: Vec<WriteSeq> = self.pending_acks.iter().map(|(seq, _)| *seq).collect();
        assert!(
            seqs.windows(2).all(|pair| pair[0] <= pair[1]),
            "pending acks out of write order: {seqs:?}"
        );
        assert_eq!(self.actor.node, self.id);
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
