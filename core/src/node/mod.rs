//! A ringkv node: the one state machine a driver talks to.
//!
//! Owns: the ring, the quorum [`Coordinator`], the replica role (`Replica`: applying objects,
//! the caches, acknowledgements held until durable) and the [`Storage`] it works on, the hybrid
//! logical clock, the node's actor epoch, the set of peers believed down, and the tombstone
//! sweep.
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
use crate::failure_detector::DetectorConfig;
use crate::flush::Flushes;
use crate::forwards::{ForwardCheck, ForwardLog};
use crate::gossip::{Gossip, GossipConfig, GossipMessage, MemberState, MemberStatus};
use crate::hints::{decode_hint, encode_hint, hint_key, split_hint_key, Hint, Replays};
use crate::hlc::{HlcTimestamp, HybridClock};
use crate::membership::{Membership, Placement, RingChange};
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
use crate::types::{ConflictMode, Consistency, Key, KeyspaceConfig, Limits, NodeId, Value};
use crate::version::{Actor, Context, NewWrite, Versioned};

pub use config::NodeConfig;
pub use io::{Input, NodeCounters, Output, TimerKind};
use replica::{AckTarget, Replica};
use store::*;

// The node's handlers, one file per seam; each is an `impl` block on `Node`.
mod client;
mod config;
mod durability;
mod hints;
mod inspect;
mod io;
mod membership;
mod peer;
mod repair;
mod replica;
mod replies;
mod scan;
mod serial;
mod start;
mod store;
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

/// A ringkv node over storage `S`.
#[derive(Debug)]
pub struct Node<S: Storage> {
    id: NodeId,
    config: NodeConfig,
    storage: S,
    actor: Actor,
    /// The highest dot counter this actor has issued on any key.
    dots_issued_max: u64,
    /// The replica role over `storage`: applying objects, the caches, acknowledgements held
    /// until durable.
    replica: Replica,
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
    /// Gossip, the failure detector and the rings.
    membership: Membership,
    replays: Replays,
    anti_entropy: AntiEntropy,
    next_anti_entropy: Instant,
    streams: Streams,
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
    /// The flushes this node coordinates.
    flushes: Flushes,
    /// Only with the planted bug `PeerUpHeldDown`: peers kept down until then.
    held_down: BTreeMap<NodeId, Instant>,
    forwards: ForwardLog,
    sync_requested: bool,
    outbox: VecDeque<Output>,
    next_sweep: Instant,
    sweep_cursor: Option<Bytes>,
    counters: NodeCounters,
    last_timeout_reason: Option<TimerKind>,
}

impl<S: Storage> Node<S> {
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
                if self.membership.mark(node, MemberStatus::Left) {
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
        if self.membership.on_round(now) {
            self.last_timeout_reason = Some(TimerKind::Gossip);
            self.counters.gossip_rounds = self.membership.rounds();
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
            Some(self.membership.poll_timeout()),
            self.coordinator.next_deadline(),
            self.streams.next_retry(self.stream_retry()),
            self.paxos.poll_timeout(),
            self.flushes.next_deadline(),
        ];
        timers.into_iter().flatten().min()
    }
}

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

/// A child seed for a sub-machine, so its draws never shift another's.
fn child_seed(seed: u64, label: &[u8]) -> u64 {
    let mut bytes = seed.to_le_bytes().to_vec();
    bytes.extend_from_slice(label);
    xxhash_rust::xxh3::xxh3_64(&bytes)
}
