//! What goes in and out of a node: its inputs, its outputs, the timer that woke it and the
//! counters operators watch.
//!
//! Part of [`Node`](super::Node), split out of `mod.rs`: the types of its interface; no state.

use super::*;

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
