//! The discrete-event loop: nodes, network, disks, clocks, clients and faults, driven by one
//! event queue on one thread.
//!
//! Owns: every node (or, while crashed, its disk), the network, the clocks, the clients, the
//! history and the trace. Input: a [`SimConfig`]. Output: a [`Report`].
//!
//! Events, all in one queue ordered by (time, sequence): peer message deliveries, node timers,
//! sync completions, client turns and client timeouts, fault injections and their undoing,
//! failure-detector broadcasts, and the phase changes (heal, final read pass, end).
//!
//! A run: the safety phase with the seed's faults; at `safety_duration` everything heals
//! (partitions, clogs, loss, clocks, failing disks, crashed nodes, BUGGIFY) and every node is
//! told every peer is up; the liveness phase runs the same workload; then the final pass reads
//! every written key at ALL (repairing every replica), the cluster goes quiet, the final state
//! is collected and the checkers run.
//!
//! Crashes: the `Node` is dropped with all its volatile state, its disk loses unsynced writes,
//! and a new `Node` is later built on the same disk (the core bumps its epoch). A sync is an
//! event after a disk latency, so a crash can land between `SyncStorage` and its completion;
//! events meant for a previous incarnation of a node are ignored.
//!
//! Disk faults (LSM disks): bit flips at rest and EIO on filesystem operations. A node whose
//! disk reports a failure (an engine poisoned by an I/O error, corruption found while running)
//! is restarted by a supervisor after `SUPERVISOR_DELAY_MS`, with power-loss semantics; its
//! disk's start-up policy rebuilds a corrupt store. A start that fails on an I/O error is tried
//! again after `START_RETRY_DELAY`. At the heal, I/O errors stop and every running LSM disk is
//! scrubbed (every table read), as an operator's periodic verify would, so damage that no read
//! found is rebuilt before the final pass.
//!
//! Membership: the runner has a slot for every node the run may start (founding nodes and one per
//! scheduled join). A slot's [`Role`] says whether its node is a member yet, is leaving, is being
//! removed or has departed; faults, clients and the final checks draw only from the members.
//! Scheduled events (joins, decommissions, removals, forced partitions and clogs, crashes held
//! until a scheduled restart) come from [`SimConfig::schedule`]; a departure watch stops a
//! decommissioned node once every running member sees it left, and repeats an operator's
//! request that a restart or a lost gossip message undid.
//!
//! Invariants: one node per slot at most; a node is fed only while running; at most
//! `OUTPUTS_PER_DRAIN_MAX` outputs are drained per input (more is reported as a violation).

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use ringkv_core::gossip::MemberStatus;
use ringkv_core::ring::Ring;
use ringkv_core::storage::{Space, StorageWork};
use ringkv_core::{
    ClientError, ClientResponse, Context, Duration, Input, Instant, Key, Node, NodeConfig, NodeId,
    Output, PeerMessage,
};

use crate::checkers::{
    check_all, CheckInput, CheckParams, FinalKey, FinalState, NodeView, TopologyView, Violation,
};
use crate::clock::NodeClock;
use crate::config::SimConfig;
use crate::disk::SimDisk;
use crate::faults::{FaultKind, FaultPlan};
use crate::history::{outcome_of_error, History, OpIndex, OpOutcome, OpRequest};
use crate::network::{Network, PartitionShape};
use crate::queue::{EventQueue, Scheduled};
use crate::report::{FaultEvent, FaultEventKind, OutcomeCounts, Report, RunStats};
use crate::schedule::{ForcedPartition, ScheduledEvent, TimedEvent};
use crate::seed::{child_rng, child_seed, exponential};
use crate::topology::SlotLocation;
use crate::trace::Trace;
use crate::workload::{ClientState, FollowUp, KeyChooser};

// The runner's handlers, one file per seam; each is an `impl` block on `Runner`.
mod clients;
mod faults;
mod nodes;
mod phases;
mod schedule;

/// Most hints counted per node at the end (a count at the bound means "at least").
pub const HINTS_SCANNED_MAX: usize = 100_000;

/// How often the departure watch looks at nodes that are leaving or being removed.
pub const DEPARTURE_WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Most outputs drained from a node after one input.
pub const OUTPUTS_PER_DRAIN_MAX: usize = 1_000_000;

/// How long the supervisor takes to restart a node whose disk reported a failure (drawn).
const SUPERVISOR_DELAY_MS: std::ops::RangeInclusive<u64> = 200..=1_000;

/// How long before a start that failed on an I/O error is tried again.
const START_RETRY_DELAY: Duration = Duration::from_millis(200);

// The builder's `run` lives here, not in config.rs, so that the configuration does not depend
// on the runner (config -> runner -> config was a module cycle).
impl crate::config::SimBuilder {
    /// Runs on in-memory disks.
    pub fn run(self) -> Report {
        run::<ringkv_core::storage::MemStorage>(&self.build())
    }

    /// Runs on disks of type `D`.
    pub fn run_with_disk<D: SimDisk>(self) -> Report {
        run::<D>(&self.build())
    }
}

/// Runs `config` on disks of type `D`. A panic inside a node becomes a violation.
pub fn run<D: SimDisk>(config: &SimConfig) -> Report {
    if let Err(problem) = config.validate() {
        return failed_report(config.seed, "config", problem);
    }
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| Runner::<D>::new(config).run()));
    // A panicking run leaves BUGGIFY armed on this thread; the next run must start clean.
    ringkv_core::buggify::disable();
    match outcome {
        Ok(report) => report,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_else(|| "a panic without a message".to_string());
            failed_report(config.seed, "panic", message)
        }
    }
}

fn failed_report(seed: u64, checker: &'static str, message: String) -> Report {
    Report {
        seed,
        plan: FaultPlan::default(),
        outcomes: OutcomeCounts::default(),
        events_processed: 0,
        simulated_time: Duration::ZERO,
        violations: vec![Violation { checker, message, ops: Vec::new() }],
        trace_hash: 0,
        trace: Vec::new(),
        stats: RunStats::default(),
        history: History::new(),
        faults: Vec::new(),
    }
}

/// One event; `W` is the disk's unit of work (a sync in flight carries it).
#[derive(Debug)]
enum Event<W> {
    // Boxed so that events stay small: the heap moves them on every push and pop.
    Deliver { from: usize, to: usize, message: Box<PeerMessage> },
    Timer { node: usize, incarnation: u32 },
    // `None` when the disk had nothing to do when the node asked: the node is still told.
    SyncDone { node: usize, incarnation: u32, work: Option<W> },
    ClientTurn { client: usize },
    ClientTimeout { op: OpIndex },
    Fault { kind: FaultKind },
    Scheduled { position: usize },
    WatchDepartures,
    Restart { node: usize },
    ReplaceDisk { node: usize },
    // The node restarts on the snapshot its slot holds, `restart_ms` after it stops.
    RestoreSnapshot { node: usize, restart_ms: u64 },
    // The supervisor restarts a node whose disk reported a failure.
    Supervise { node: usize, incarnation: u32 },
    RetryStart { node: usize },
    HealPartition { generation: u64 },
    StatusBroadcast { about: usize },
    Heal,
    FinalPass,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Safety,
    Liveness,
    Final,
}

/// Where a slot's node stands in the cluster's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A node that joins later; nothing runs here yet.
    Absent,
    /// A member (founding, or joining/joined).
    Member,
    /// Asked to decommission; stopped once every running member sees it left.
    Leaving,
    /// Down for good and removed by the operator; the removal is repeated until every running
    /// member sees it.
    Removing,
    /// Gone: decommissioned and stopped, or removed and seen removed by every member.
    Departed,
}

impl Role {
    /// Whether the node is (still) part of the cluster: faults and clients may pick it.
    fn is_active(self) -> bool {
        matches!(self, Role::Member | Role::Leaving)
    }
}

#[derive(Debug)]
struct Slot<D: SimDisk> {
    node: Option<Node<D>>,
    disk: Option<D>,
    incarnation: u32,
    timer_at: Option<Instant>,
    disk_failing: bool,
    /// The supervisor has a restart scheduled for this incarnation.
    supervised: bool,
    role: Role,
    /// Started with `join: true` (it keeps that configuration across restarts).
    join: bool,
    /// Crashed by the schedule: no automatic restart until the schedule (or the heal) says so.
    held_down: bool,
    /// A snapshot of the store waiting to be restored, and when it was taken.
    snapshot: Option<(Instant, D)>,
}

/// A context write owed by a client after a successful read.
#[derive(Debug)]
struct OwedWrite {
    key: Key,
    context: Context,
    read: OpIndex,
    kind: FollowUp,
}

struct Runner<D: SimDisk> {
    config: SimConfig,
    node_config: NodeConfig,
    plan: FaultPlan,
    now: Instant,
    queue: EventQueue<Event<D::Work>>,
    slots: Vec<Slot<D>>,
    network: Network,
    clocks: Vec<NodeClock>,
    clients: Vec<ClientState>,
    owed: Vec<Option<OwedWrite>>,
    batch_writes: BTreeSet<OpIndex>,
    keys: KeyChooser,
    history: History,
    trace: Trace,
    disk_rng: ChaCha8Rng,
    fault_rngs: Vec<ChaCha8Rng>,
    supervisor_rng: ChaCha8Rng,
    /// The node whose disk bit flips damage, and whether it has restarted rebuilding since.
    /// Flips hit only this node until it is rebuilt and refilled: a lost replica is what N = 3
    /// tolerates, as the crash fault keeps a majority up.
    damaged: Option<(usize, bool)>,
    phase: Phase,
    partition_generation: u64,
    schedule: Vec<TimedEvent>,
    watching: bool,
    final_remaining: usize,
    liveness_from: Option<Instant>,
    /// When every fault was healed (the liveness phase began).
    healed_at: Option<Instant>,
    stats: RunStats,
    events_processed: u64,
    violations: Vec<Violation>,
    /// The faults as applied, for the report (never read by the run itself).
    faults: Vec<FaultEvent>,
    /// Each slot's datacenter and rack; empty without a topology (every node at the core's
    /// default location).
    locations: Vec<SlotLocation>,
}

impl<D: SimDisk> Runner<D> {
    fn new(config: &SimConfig) -> Self {
        let seed = config.seed;
        let n = config.nodes_count;
        let slots_count = config.slots_count();
        let plan = FaultPlan::draw(&config.faults, &mut child_rng(seed, "faults", 0));
        let mut network = Network::new(config.network, slots_count, child_rng(seed, "network", 0));
        network.set_rates(plan.loss_rate, plan.duplicate_rate, plan.reorder_rate);
        let mut clock_rng = child_rng(seed, "clocks", 0);
        // Founding nodes draw first, so a schedule with joins leaves their clocks unchanged.
        let clocks = (0..slots_count).map(|_| initial_clock(&plan, &mut clock_rng)).collect();
        let clients = (0..config.workload.clients_count)
            .map(|id| ClientState::new(id, child_rng(seed, "client", id as u64)))
            .collect();
        let mut node_config = config.node.clone();
        node_config.members = (0..n).map(node_id).collect();
        let locations = config.topology.as_ref().map(|t| t.slot_locations()).unwrap_or_default();
        if !locations.is_empty() {
            // Every node knows every slot's location from the start, the joiners' too, so all
            // place replicas alike before gossip has spoken.
            node_config.locations = locations
                .iter()
                .enumerate()
                .map(|(index, slot)| (node_id(index), slot.location.clone()))
                .collect();
            let datacenters: Vec<usize> = locations.iter().map(|s| s.datacenter_index).collect();
            network.set_datacenters(&datacenters);
        }
        let mut slots: Vec<Slot<D>> = (0..slots_count)
            .map(|index| Slot {
                node: None,
                disk: (index < n).then(|| D::fresh(child_seed(seed, "disk", index as u64))),
                incarnation: 0,
                timer_at: None,
                disk_failing: false,
                supervised: false,
                role: if index < n { Role::Member } else { Role::Absent },
                join: false,
                held_down: false,
                snapshot: None,
            })
            .collect();
        if plan.io_error_rate > 0.0 {
            for disk in slots.iter_mut().filter_map(|slot| slot.disk.as_mut()) {
                disk.set_io_error_rate(plan.io_error_rate);
            }
        }
        let fault_kinds = plan.event_rates();
        Runner {
            node_config,
            plan,
            now: Instant::ZERO,
            queue: EventQueue::new(config.queue_len_max),
            slots,
            network,
            clocks,
            clients,
            owed: (0..config.workload.clients_count).map(|_| None).collect(),
            batch_writes: BTreeSet::new(),
            keys: KeyChooser::new(config.workload.keys_count, config.workload.key_distribution),
            history: History::new(),
            trace: Trace::new(config.trace_log, config.trace_lines_max),
            disk_rng: child_rng(seed, "disk-latency", 0),
            fault_rngs: fault_kinds
                .iter()
                .map(|(kind, _)| child_rng(seed, kind.label(), 0))
                .collect(),
            supervisor_rng: child_rng(seed, "supervisor", 0),
            damaged: None,
            phase: Phase::Safety,
            partition_generation: 0,
            schedule: crate::schedule::in_time_order(&config.schedule),
            watching: false,
            final_remaining: 0,
            liveness_from: None,
            healed_at: None,
            stats: RunStats::default(),
            events_processed: 0,
            violations: Vec::new(),
            faults: Vec::new(),
            locations,
            config: config.clone(),
        }
    }

    fn run(mut self) -> Report {
        if self.plan.buggify {
            ringkv_core::buggify::enable(child_seed(self.config.seed, "buggify", 0));
        } else {
            ringkv_core::buggify::disable();
        }
        // Every node boots at once: none is told that a peer not yet built is down.
        for index in 0..self.config.nodes_count {
            self.start(index, false);
        }
        for client in 0..self.clients.len() {
            let think = self.think_time(client);
            self.schedule(think, Event::ClientTurn { client });
        }
        for (position, (kind, rate)) in self.plan.event_rates().into_iter().enumerate() {
            if rate > 0.0 {
                let delay = self.fault_delay(position, rate);
                self.schedule(delay, Event::Fault { kind });
            }
        }
        for position in 0..self.schedule.len() {
            let at = Instant::ZERO + self.schedule[position].at;
            self.schedule_at(at, Event::Scheduled { position });
        }
        self.schedule(self.config.safety_duration, Event::Heal);
        let final_at = self.config.safety_duration + self.config.liveness_duration;
        self.schedule(final_at, Event::FinalPass);
        while let Some(scheduled) = self.queue.pop() {
            self.events_processed += 1;
            if self.events_processed > self.config.events_max {
                self.violations.push(Violation {
                    checker: "runner",
                    message: format!("the run did not finish in {} events", self.config.events_max),
                    ops: Vec::new(),
                });
                break;
            }
            if !self.step(scheduled) {
                break;
            }
        }
        self.finish()
    }

    fn step(&mut self, Scheduled { at, seq: _, event }: Scheduled<Event<D::Work>>) -> bool {
        self.now = at;
        match event {
            Event::Deliver { from, to, message } => {
                let (code, op) = message_code(&message);
                let detail =
                    ((from as u64) << 56) | (u64::from(code) << 48) | (op & 0xffff_ffff_ffff);
                self.trace
                    .record(at, Some(to), 1, detail, || format!("<- n{}: {message:?}", from + 1));
                self.feed(to, Some(Input::Peer { from: node_id(from), message: *message }));
            }
            Event::Timer { node, incarnation } => {
                let slot = &mut self.slots[node];
                if slot.incarnation == incarnation && slot.timer_at == Some(at) {
                    slot.timer_at = None;
                    self.trace.record(at, Some(node), 2, 0, || "timer".to_string());
                    self.feed(node, None);
                } else {
                    self.stats.stale_events += 1;
                }
            }
            Event::SyncDone { node, incarnation, work } => self.sync_done(node, incarnation, work),
            Event::ClientTurn { client } => self.client_turn(client),
            Event::ClientTimeout { op } => {
                if self.history.get(op).is_some_and(|record| record.completed_at.is_some()) {
                    self.stats.stale_events += 1;
                } else {
                    self.complete(op, OpOutcome::Unknown("client timeout: no reply".into()), None)
                }
            }
            Event::Fault { kind } => self.inject(kind),
            Event::Scheduled { position } => self.play(position),
            Event::WatchDepartures => self.watch_departures(),
            Event::Restart { node } => {
                // A node on a failing disk cannot recover; the disk's replacement restarts it.
                // A node the schedule holds down stays down.
                let slot = &self.slots[node];
                if self.phase == Phase::Safety
                    && slot.node.is_none()
                    && !slot.disk_failing
                    && !slot.held_down
                    && slot.role.is_active()
                {
                    self.start(node, true);
                }
            }
            Event::ReplaceDisk { node } => self.replace_disk(node),
            Event::RestoreSnapshot { node, restart_ms } => self.restore_snapshot(node, restart_ms),
            Event::Supervise { node, incarnation } => {
                let slot = &self.slots[node];
                if slot.incarnation == incarnation && slot.node.is_some() && !slot.disk_failing {
                    self.stats.disk_restarts += 1;
                    self.crash(node, "disk restart");
                    self.start(node, true);
                }
            }
            Event::RetryStart { node } => {
                let slot = &self.slots[node];
                if self.phase != Phase::Final && slot.node.is_none() && !slot.disk_failing {
                    self.start(node, true);
                }
            }
            Event::HealPartition { generation } => {
                if generation == self.partition_generation {
                    self.trace.record(at, None, 3, generation, || "partition healed".into());
                    self.note(FaultEventKind::PartitionHealed);
                    self.network.heal_partition();
                }
            }
            Event::StatusBroadcast { about } => self.broadcast_status(about),
            Event::Heal => self.heal(),
            Event::FinalPass => self.final_pass(),
            Event::End => {
                self.trace.record(at, None, 4, 0, || "end".into());
                return false;
            }
        }
        true
    }
}

fn initial_clock(plan: &FaultPlan, rng: &mut ChaCha8Rng) -> NodeClock {
    let offset_max = plan.clock_offset_ms_max as i64;
    let drift_max = plan.clock_drift_ppm_max as i64;
    // Both draws always happen, so a knob switched off does not shift the next node's clock.
    let offset: i64 = rng.random_range(-offset_max..=offset_max);
    let drift: i64 = rng.random_range(-drift_max..=drift_max);
    NodeClock::new(offset, drift)
}

/// The slots whose nodes are members (or leaving): faults, clients and the final pass pick
/// among these, in slot order.
fn active_indexes<D: SimDisk>(slots: &[Slot<D>]) -> Vec<usize> {
    (0..slots.len()).filter(|index| slots[*index].role.is_active()).collect()
}

impl<D: SimDisk> Runner<D> {
    /// The location of slot `index` (the core's default without a topology).
    fn location(&self, index: usize) -> ringkv_core::placement::Location {
        self.locations.get(index).map(|slot| slot.location.clone()).unwrap_or_default()
    }

    /// The datacenter index of slot `index` (0 without a topology).
    fn datacenter_index(&self, index: usize) -> usize {
        self.locations.get(index).map_or(0, |slot| slot.datacenter_index)
    }
}

/// The id of node `index` (ids start at 1).
pub fn node_id(index: usize) -> NodeId {
    NodeId(index as u32 + 1)
}

fn node_index(id: NodeId, nodes_count: usize) -> Option<usize> {
    let index = (id.0 as usize).checked_sub(1)?;
    (index < nodes_count).then_some(index)
}

fn message_code(message: &PeerMessage) -> (u8, u64) {
    match message {
        PeerMessage::Read { op, .. } => (0, *op),
        PeerMessage::ReadReply { op, .. } => (1, *op),
        PeerMessage::Write { op, .. } => (2, *op),
        PeerMessage::WriteAck { op, result } => (3, (*op << 1) | u64::from(result.is_ok())),
        PeerMessage::Repair { .. } => (4, 0),
        PeerMessage::Forward { forward, .. } => (5, *forward),
        PeerMessage::ForwardReply { forward, .. } => (6, *forward),
        _ => (7, 0),
    }
}
