//! What crosses the wire: client requests and responses, and messages between nodes.
//!
//! Every type here is serde-serialisable so a driver can put it in a frame. Peer messages may
//! come from a buggy or hostile peer; the node validates them and drops what does not fit.

use serde::{Deserialize, Serialize};

use crate::cas::{CasOp, CasReply};
use crate::error::ClientError;
use crate::paxos::{Ballot, Promise, Refusal};
use crate::time::{Duration, WallTime};
use crate::types::{Consistency, Key, Value};
use crate::version::{Context, Versioned};

/// A driver-chosen id that correlates a client request with its reply.
pub type RequestId = u64;

/// A node-chosen id of an operation it coordinates, echoed by replicas.
pub type OpId = u64;

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClientRequest {
    /// Reads a key: all live siblings and a causal context.
    Get {
        /// The key.
        key: Key,
        /// Replies needed.
        consistency: Consistency,
    },
    /// Writes a key.
    Put {
        /// The key.
        key: Key,
        /// The value.
        value: Value,
        /// What the client read before writing; the siblings it covers are replaced. `None` is a
        /// blind write, kept beside every existing sibling (or winning by timestamp under LWW).
        context: Option<Context>,
        /// Time to live; the value stops being readable after it.
        ttl: Option<Duration>,
        /// Acknowledgements needed.
        consistency: Consistency,
    },
    /// Overwrites a key: the coordinator's own copy serves as the context, so every sibling the
    /// coordinator has seen is replaced (one round trip, what Redis `SET` means). Siblings that
    /// reached other replicas but not the coordinator are kept.
    Set {
        /// The key.
        key: Key,
        /// The value.
        value: Value,
        /// Time to live.
        ttl: Option<Duration>,
        /// Acknowledgements needed.
        consistency: Consistency,
    },
    /// Deletes a key by writing a tombstone.
    Delete {
        /// The key.
        key: Key,
        /// As for `Put`.
        context: Option<Context>,
        /// Acknowledgements needed.
        consistency: Consistency,
    },
    /// Reads several keys.
    MGet {
        /// The keys.
        keys: Vec<Key>,
        /// Replies needed per key.
        consistency: Consistency,
    },
    /// Lists keys: those whose token is above `cursor` (0 starts), on one arc of the ring per
    /// call, at most `count`. Reads one replica per arc, so a key that replica has not received
    /// yet (before repair) is missed; keys that hold nothing readable are left out.
    Scan {
        /// 0 to start, else the cursor the previous call returned.
        cursor: u64,
        /// Most keys to return.
        count: usize,
    },
    /// Writes several keys, each as a `Set`. Not atomic: on failure some keys may be written.
    MSet {
        /// Keys and values.
        entries: Vec<(Key, Value)>,
        /// Acknowledgements needed per key.
        consistency: Consistency,
    },
    /// A serial (linearizable) read-modify-write of one key, run as a round of Paxos among the
    /// key's replicas: compare-and-set, increments, appends, serial reads.
    Cas {
        /// The key.
        key: Key,
        /// What to do.
        op: CasOp,
    },
    /// Removes every key from the whole cluster without writing tombstones (Redis
    /// `FLUSHALL`): every member truncates its store and from then on drops whatever arrives
    /// that was written before the flush. Needs every member up; a write concurrent with the
    /// flush may or may not survive it.
    Flush,
}

impl ClientRequest {
    /// Whether the request writes.
    pub fn is_write(&self) -> bool {
        match self {
            ClientRequest::Put { .. }
            | ClientRequest::Delete { .. }
            | ClientRequest::MSet { .. }
            | ClientRequest::Flush => true,
            ClientRequest::Cas { op, .. } => op.may_write(),
            _ => false,
        }
    }
}

/// What one key read returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadResult {
    /// Live siblings: empty when the key is absent, deleted or expired; more than one when
    /// concurrent writes have not been resolved.
    pub values: Vec<Value>,
    /// The causal context to send back with the next write of this key.
    pub context: Context,
    /// The earliest expiry among the live siblings.
    pub expire_at: Option<WallTime>,
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClientResponse {
    /// Reply to `Get`.
    Read(ReadResult),
    /// Reply to `MGet`, in request order.
    ReadMany(Vec<ReadResult>),
    /// Reply to `Put` and `Delete`: the context of the object after the write.
    Written {
        /// Context covering the write.
        context: Context,
    },
    /// Reply to `MSet`.
    WrittenMany,
    /// Reply to `Cas`.
    Cas(CasReply),
    /// Reply to `Flush`: every member truncated.
    Flushed,
    /// Reply to `Scan`.
    Scanned {
        /// Keys found, by token.
        keys: Vec<Key>,
        /// The cursor for the next call; 0 when the whole ring was covered.
        cursor: u64,
    },
}

/// A message between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PeerMessage {
    /// A coordinator asks a replica for its copy of a key.
    Read {
        /// Coordinator's operation.
        op: OpId,
        /// The key.
        key: Key,
    },
    /// A replica's copy, `None` when it has none.
    ReadReply {
        /// Coordinator's operation.
        op: OpId,
        /// The replica's object.
        object: Option<Versioned>,
    },
    /// A coordinator sends a replica an object to merge into its copy (a write, or a repair the
    /// coordinator waits for).
    Write {
        /// Coordinator's operation.
        op: OpId,
        /// The key.
        key: Key,
        /// The object to merge.
        object: Versioned,
    },
    /// A replica has durably merged a `Write`, or failed to.
    WriteAck {
        /// Coordinator's operation.
        op: OpId,
        /// `Err` with the storage's reason when the replica could not write.
        result: Result<(), String>,
    },
    /// Fire-and-forget read repair: merge this object, no acknowledgement.
    Repair {
        /// The key.
        key: Key,
        /// The object to merge.
        object: Versioned,
    },
    /// A coordinator hands a fallback node a write for an unreachable replica, to hold as a
    /// hint; acknowledged like a `Write` once durable.
    Hint {
        /// Coordinator's operation.
        op: OpId,
        /// The replica the write is for.
        owner: crate::types::NodeId,
        /// The key.
        key: Key,
        /// The object.
        object: Versioned,
    },
    /// A fallback delivers a hint to its owner.
    HintReplay {
        /// The fallback's id for this replay.
        replay: u64,
        /// The key.
        key: Key,
        /// The object to merge.
        object: Versioned,
    },
    /// The owner has durably merged a replayed hint.
    HintReplayAck {
        /// The fallback's id for the replay.
        replay: u64,
    },
    /// Anti-entropy step 1: the initiator's hash tree of one slice of a replica group.
    AeTree {
        /// The initiator's id for the exchange.
        session: u64,
        /// The replica group (sorted node ids).
        group: Vec<crate::types::NodeId>,
        /// The slice's first token.
        low: crate::ring::Token,
        /// The slice's last token (inclusive).
        high: crate::ring::Token,
        /// Root hash.
        root: u64,
        /// Leaf hashes.
        leaves: Vec<u64>,
    },
    /// Anti-entropy step 2, instead of digests: the responder holds too many keys in the slice
    /// to read at once; the initiator is to send the tree of the slice cut at `high`.
    AeNarrow {
        /// The initiator's id for the exchange.
        session: u64,
        /// The last token the responder read.
        high: crate::ring::Token,
    },
    /// Anti-entropy step 2: per-key hashes of the leaves that differ.
    AeDigests {
        /// The initiator's id for the exchange.
        session: u64,
        /// The leaves that differ.
        leaves: Vec<u32>,
        /// Key and object hash, for the responder's keys in those leaves.
        digests: Vec<(Key, u64)>,
        /// Whether keys were left out to respect the per-exchange limit.
        truncated: bool,
    },
    /// Anti-entropy step 3: objects to merge.
    AeObjects {
        /// Keys and objects.
        objects: Vec<(Key, Versioned)>,
    },
    /// Anti-entropy step 3: the initiator asks for these objects.
    AeFetch {
        /// The keys.
        keys: Vec<Key>,
    },
    /// A joining node asks a current replica for the keys of some arcs.
    StreamRequest {
        /// The stream (opened by the requester).
        stream: crate::streaming::StreamId,
        /// The arcs.
        arcs: Vec<crate::streaming::Arc>,
    },
    /// A chunk of a range stream; acknowledged with `StreamAck` once durable.
    StreamChunk {
        /// The stream.
        stream: crate::streaming::StreamId,
        /// The chunk's sequence number (every transmission has its own).
        seq: crate::streaming::ChunkSeq,
        /// Keys and objects.
        objects: Vec<(Key, Versioned)>,
        /// Whether this is the stream's last chunk.
        last: bool,
    },
    /// A stream chunk is durable at the receiver.
    StreamAck {
        /// The stream.
        stream: crate::streaming::StreamId,
        /// The sequence number of the chunk acknowledged.
        seq: crate::streaming::ChunkSeq,
    },
    /// A coordinator asks a replica for the live keys with tokens in `[low, high]`.
    ScanRequest {
        /// The coordinator's id; the answer comes back as a `ForwardReply`.
        forward: OpId,
        /// Lowest token, inclusive.
        low: u64,
        /// Highest token, inclusive.
        high: u64,
        /// Most keys.
        count: usize,
    },
    /// Paxos phase 1: a proposer asks a replica to promise `ballot` for `key`.
    PaxosPrepare {
        /// The proposer's operation.
        op: OpId,
        /// The key.
        key: Key,
        /// The ballot.
        ballot: Ballot,
    },
    /// A replica's answer to `PaxosPrepare`: its promise (with what it accepted, what it
    /// committed last and its copy of the key), or the higher ballot it has promised.
    PaxosPromise {
        /// The proposer's operation.
        op: OpId,
        /// The ballot prepared.
        ballot: Ballot,
        /// The promise, or the higher ballot that refused it.
        result: Result<Promise, Ballot>,
    },
    /// Paxos phase 2: a proposer asks a replica to accept `object` at `ballot`.
    PaxosPropose {
        /// The proposer's operation.
        op: OpId,
        /// The key.
        key: Key,
        /// The ballot.
        ballot: Ballot,
        /// The proposed object (the key's next version).
        object: Versioned,
    },
    /// A replica's answer to `PaxosPropose`.
    PaxosAccepted {
        /// The proposer's operation.
        op: OpId,
        /// The ballot proposed.
        ballot: Ballot,
        /// `Ok` when accepted, else the refusal.
        result: Result<(), Refusal>,
    },
    /// Paxos commit: the proposal chosen at `ballot` is to be applied to the key.
    PaxosCommit {
        /// The proposer's operation.
        op: OpId,
        /// The key.
        key: Key,
        /// The ballot chosen.
        ballot: Ballot,
        /// The chosen object.
        object: Versioned,
    },
    /// A replica has durably applied a `PaxosCommit`.
    PaxosCommitted {
        /// The proposer's operation.
        op: OpId,
        /// The ballot committed.
        ballot: Ballot,
    },
    /// Membership gossip.
    Gossip(crate::gossip::GossipMessage),
    /// A node that is not a replica of a key hands a client write to one that is.
    Forward {
        /// The forwarding node's id for the request.
        forward: OpId,
        /// The client's request.
        request: ClientRequest,
    },
    /// The outcome of a forwarded request.
    ForwardReply {
        /// The forwarding node's id for the request.
        forward: OpId,
        /// The outcome.
        result: Result<ClientResponse, ClientError>,
    },
    /// A flush's coordinator asks a member for a reading of its hybrid clock (phase one).
    FlushClock {
        /// The coordinator's id for the flush.
        flush: u64,
    },
    /// A member's clock reading for a flush.
    FlushClockReply {
        /// The coordinator's id for the flush.
        flush: u64,
        /// The member's hybrid clock, ticked.
        clock: crate::hlc::HlcTimestamp,
    },
    /// A flush's coordinator asks a member to truncate its store: remove every object, hint
    /// and Paxos state, and from then on drop siblings written at or before `at`.
    Truncate {
        /// The coordinator's id for the flush.
        flush: u64,
        /// The flush's timestamp on the coordinator's hybrid clock.
        at: crate::hlc::HlcTimestamp,
    },
    /// A member has durably truncated, or failed to.
    TruncateAck {
        /// The coordinator's id for the flush.
        flush: u64,
        /// `Err` with the storage's reason when the member could not truncate.
        result: Result<(), String>,
    },
}
