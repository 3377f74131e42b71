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
    check_all, CheckInput, CheckParams, FinalKey, FinalState, NodeView, Violation,
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
use crate::trace::Trace;
use crate::workload::{ClientState, FollowUp, KeyChooser};

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

    // ---- nodes ----

    fn feed(&mut self, index: usize, input: Option<Input>) {
        let wall = self.clocks[index].wall(self.now);
        let now = self.now;
        let Some(node) = self.slots[index].node.as_mut() else {
            return;
        };
        node.set_wall_clock(wall);
        match input {
            Some(input) => node.handle(now, input),
            None => node.handle_timeout(now),
        }
        self.drain(index);
    }

    fn drain(&mut self, index: usize) {
        let mut drained = 0;
        while let Some(output) = self.slots[index].node.as_mut().and_then(|node| node.poll_output())
        {
            drained += 1;
            if drained > OUTPUTS_PER_DRAIN_MAX {
                self.violations.push(Violation {
                    checker: "runner",
                    message: format!(
                        "n{} produced over {OUTPUTS_PER_DRAIN_MAX} outputs",
                        index + 1
                    ),
                    ops: Vec::new(),
                });
                break;
            }
            match output {
                Output::Send { to, message } => self.send(index, to, message),
                Output::Reply { request, result } => {
                    let op = request as OpIndex;
                    self.client_reply(op, result);
                }
                Output::SyncStorage => {
                    // The work is taken now, so it covers only what was written so far; it
                    // completes after the disk's latency, unless a crash comes first.
                    let work = self.slots[index]
                        .node
                        .as_mut()
                        .and_then(|node| node.storage_mut().poll_work());
                    self.schedule_disk_work(index, work);
                }
                _ => {}
            }
        }
        self.supervise(index);
        let slot = &mut self.slots[index];
        let Some(wake) = slot.node.as_ref().and_then(|node| node.poll_timeout()) else {
            return;
        };
        let wake = wake.max(self.now);
        if slot.timer_at != Some(wake) {
            slot.timer_at = Some(wake);
            let incarnation = slot.incarnation;
            self.schedule_at(wake, Event::Timer { node: index, incarnation });
        }
    }

    fn send(&mut self, from: usize, to: NodeId, message: PeerMessage) {
        self.stats.messages_sent += 1;
        let Some(to) = node_index(to, self.slots.len()) else {
            self.stats.messages_dropped += 1;
            return;
        };
        let [first, second] = self.network.route(self.now, from, to);
        let message = Box::new(message);
        match (first, second) {
            (Some(first), Some(second)) => {
                self.schedule_at(first, Event::Deliver { from, to, message: message.clone() });
                self.schedule_at(second, Event::Deliver { from, to, message });
            }
            (Some(first), None) => self.schedule_at(first, Event::Deliver { from, to, message }),
            _ => {}
        }
        self.stats.messages_dropped = self.network.dropped_count;
        self.stats.messages_duplicated = self.network.duplicated_count;
    }

    fn schedule_disk_work(&mut self, index: usize, work: Option<D::Work>) {
        let disk = self.config.disk;
        let jitter_ns = disk.sync_latency_jitter.as_nanos();
        let jitter = self.disk_rng.random_range(0..=jitter_ns);
        let delay = disk.sync_latency_base + Duration::from_nanos(jitter);
        let incarnation = self.slots[index].incarnation;
        self.schedule(delay, Event::SyncDone { node: index, incarnation, work });
    }

    fn sync_done(&mut self, index: usize, incarnation: u32, work: Option<D::Work>) {
        let slot = &mut self.slots[index];
        if slot.incarnation != incarnation {
            return;
        }
        let Some(node) = slot.node.as_mut() else {
            return;
        };
        self.stats.syncs += 1;
        let storage = node.storage_mut();
        let finished = match work {
            Some(work) => storage.finish_work(work.run()),
            None => Ok(storage.durable_seq()),
        };
        let input = match finished {
            Ok(_) => Input::StorageSynced,
            Err(error) => {
                self.stats.sync_failures += 1;
                Input::StorageFailed { reason: error.0 }
            }
        };
        let failed = matches!(input, Input::StorageFailed { .. });
        self.trace.record(self.now, Some(index), 5, u64::from(failed), || {
            format!("sync {}", if failed { "FAILED" } else { "done" })
        });
        self.feed(index, Some(input));
        // Flushes and compactions follow as their own disk events, one at a time.
        let background =
            self.slots[index].node.as_mut().and_then(|node| node.storage_mut().poll_background());
        if background.is_some() {
            self.schedule_disk_work(index, background);
        }
    }

    /// Builds a node on its disk; with `announce_down`, tells it which peers are down now.
    fn start(&mut self, index: usize, announce_down: bool) {
        let slot = &mut self.slots[index];
        let Some(mut disk) = slot.disk.take() else {
            return;
        };
        if !disk.recover() {
            // Recovery hit an I/O error: the data stays where it is and the start is retried.
            slot.disk = Some(disk);
            return self.retry_start(index, "recovery failed");
        }
        let spare = disk.spare();
        let seed = child_seed(
            self.config.seed,
            "node",
            ((index as u64) << 32) | u64::from(slot.incarnation),
        );
        self.stats.node_starts += 1;
        slot.supervised = false;
        let mut config = self.node_config.clone();
        config.join = slot.join;
        match Node::new(config, node_id(index), seed, self.now, disk) {
            Ok(node) => {
                self.stats.rebuilding_starts += u64::from(node.is_rebuilding());
                if node.is_rebuilding() && self.damaged.is_some_and(|(damaged, _)| damaged == index)
                {
                    self.damaged = Some((index, true));
                }
                slot.node = Some(node);
                self.faults.push(FaultEvent {
                    at: self.now,
                    kind: FaultEventKind::Up { node: node_id(index) },
                });
            }
            Err(error) => match spare {
                Some(spare) => {
                    // A new incarnation, so the retry draws a fresh seed.
                    slot.disk = Some(spare);
                    slot.incarnation += 1;
                    return self.retry_start(index, &error.0);
                }
                None => {
                    self.violations.push(Violation {
                        checker: "runner",
                        message: format!("n{} failed to start: {error}", index + 1),
                        ops: Vec::new(),
                    });
                    return;
                }
            },
        }
        let rebuilding = slot.node.as_mut().filter(|node| node.is_rebuilding()).map(|node| {
            let why =
                node.storage_mut().get(Space::Meta, ringkv_core::storage::META_REBUILDING_KEY);
            why.ok().flatten().map(|why| String::from_utf8_lossy(&why).into_owned())
        });
        self.trace.record(self.now, Some(index), 6, u64::from(slot.incarnation), || {
            match &rebuilding {
                Some(why) => {
                    format!("started, store being rebuilt: {}", why.as_deref().unwrap_or("?"))
                }
                None => "started".into(),
            }
        });
        self.drain(index);
        let down: Vec<usize> = (0..self.slots.len())
            .filter(|other| {
                announce_down
                    && *other != index
                    && self.slots[*other].node.is_none()
                    && self.slots[*other].role != Role::Absent
            })
            .collect();
        for other in down {
            self.feed(index, Some(Input::PeerStatus { node: node_id(other), up: false }));
        }
        self.schedule(self.config.failure_detection_delay, Event::StatusBroadcast { about: index });
    }

    /// Schedules another start of a node whose start failed on an I/O error.
    fn retry_start(&mut self, index: usize, why: &str) {
        self.stats.start_retries += 1;
        self.trace.record(self.now, Some(index), 19, 0, || format!("start failed: {why}"));
        self.schedule(START_RETRY_DELAY, Event::RetryStart { node: index });
    }

    /// The supervisor: a running node whose disk reports a failure is restarted after a delay
    /// (a disk replaced by `ReplaceDisk` is left to that).
    fn supervise(&mut self, index: usize) {
        let refilled = self.slots[index].node.as_ref().is_some_and(|node| !node.is_rebuilding());
        if refilled && self.damaged == Some((index, true)) {
            self.damaged = None;
        }
        let slot = &mut self.slots[index];
        if slot.supervised || slot.disk_failing {
            return;
        }
        let Some(reason) = slot.node.as_ref().and_then(|node| node.storage().failure()) else {
            return;
        };
        slot.supervised = true;
        let incarnation = slot.incarnation;
        let delay_ms = self.supervisor_rng.random_range(SUPERVISOR_DELAY_MS);
        self.trace.record(self.now, Some(index), 20, delay_ms, || {
            format!("disk failure, restart in {delay_ms} ms: {reason}")
        });
        self.schedule(
            Duration::from_millis(delay_ms),
            Event::Supervise { node: index, incarnation },
        );
    }

    /// Stops node `index` as a crash would; `cause` is for the fault log.
    fn crash(&mut self, index: usize, cause: &'static str) {
        let slot = &mut self.slots[index];
        let Some(node) = slot.node.take() else {
            return;
        };
        self.faults.push(FaultEvent {
            at: self.now,
            kind: FaultEventKind::Down { node: node_id(index), cause },
        });
        let mut disk = node.into_storage();
        disk.crash();
        slot.disk = Some(disk);
        slot.incarnation += 1;
        slot.timer_at = None;
        self.stats.crashes += 1;
        self.trace.record(self.now, Some(index), 7, 0, || "CRASH".into());
        self.schedule(self.config.failure_detection_delay, Event::StatusBroadcast { about: index });
    }

    /// Stops a node cleanly: it marks the shutdown, the driver syncs everything, then the node
    /// is dropped. A failed sync makes it an unclean stop, as on a real machine.
    fn clean_stop(&mut self, index: usize) {
        if let Some(node) = self.slots[index].node.as_mut() {
            let clean = node.shutdown().and_then(|()| node.storage_mut().sync());
            self.stats.clean_restarts += u64::from(clean.is_ok());
            self.trace.record(self.now, Some(index), 18, u64::from(clean.is_ok()), || {
                format!("clean shutdown: {clean:?}")
            });
        }
        self.crash(index, "clean stop");
    }

    /// Replaces a failing disk: it stops failing, then the node restarts on it (a failed sync
    /// poisons the storage until it is reopened), whether it was running or had crashed.
    fn replace_disk(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if !slot.disk_failing {
            return;
        }
        slot.disk_failing = false;
        self.faults.push(FaultEvent {
            at: self.now,
            kind: FaultEventKind::DiskReplaced { node: node_id(index) },
        });
        let slot = &mut self.slots[index];
        match (slot.node.as_mut(), slot.disk.as_mut()) {
            (Some(node), _) => node.storage_mut().set_failing(false),
            (None, Some(disk)) => disk.set_failing(false),
            (None, None) => {}
        }
        let restart = !slot.held_down && slot.role.is_active();
        if slot.node.is_some() {
            self.crash(index, "disk replaced");
        }
        if restart {
            self.start(index, true);
        }
    }

    /// Stops node `index` and puts the snapshot its slot holds in place of its disk, prepared
    /// as `ringkv restore` prepares one (a new epoch, refilled before it serves); the node
    /// starts on it after `restart_ms`. Dropped after the safety phase, for a node that left,
    /// or on a failing disk (its replacement restarts it).
    fn restore_snapshot(&mut self, index: usize, restart_ms: u64) {
        let Some((taken_at, mut snapshot)) = self.slots[index].snapshot.take() else {
            return;
        };
        let slot = &self.slots[index];
        if self.phase != Phase::Safety || !slot.role.is_active() || slot.disk_failing {
            return;
        }
        self.crash(index, "restore");
        let prepared = if snapshot.recover() {
            ringkv_core::restore::prepare_restored(&mut snapshot, "sim").map_err(|error| error.0)
        } else {
            Err("the snapshot does not open".to_string())
        };
        if let Err(why) = prepared {
            // The node restarts on its own disk, as an operator's failed restore leaves it.
            self.trace.record(self.now, Some(index), 24, 0, || format!("restore failed: {why}"));
        } else {
            self.stats.restores += 1;
            self.slots[index].disk = Some(snapshot);
            self.trace.record(self.now, Some(index), 24, 1, || {
                format!("store replaced by the snapshot taken at {taken_at}")
            });
            self.note(FaultEventKind::Restored { node: node_id(index), taken_at });
        }
        if !self.slots[index].held_down {
            self.schedule(Duration::from_millis(restart_ms), Event::Restart { node: index });
        }
    }

    /// Tells every running node whether `about` is up, as a failure detector would.
    fn broadcast_status(&mut self, about: usize) {
        let up = self.slots[about].node.is_some();
        self.trace.record(self.now, Some(about), 8, u64::from(up), || {
            format!("detector: {}", if up { "up" } else { "down" })
        });
        for other in (0..self.slots.len()).filter(|other| *other != about) {
            self.feed(other, Some(Input::PeerStatus { node: node_id(about), up }));
        }
    }

    // ---- clients ----

    fn client_turn(&mut self, client: usize) {
        if self.phase == Phase::Final || self.clients[client].in_flight.is_some() {
            return;
        }
        let workload = &self.config.workload;
        let state = &mut self.clients[client];
        let (request, record, follow_up) = match self.owed[client].take() {
            Some(owed) => {
                let (request, record) =
                    state.follow_up_op(workload, owed.kind, owed.key, owed.context, owed.read);
                (request, record, None)
            }
            None => state.next_op(workload, &self.keys),
        };
        state.follow_up = follow_up;
        // Clients spread over the members; a node that left (or is being removed) gets none.
        let coordinators = active_indexes(&self.slots);
        let node = coordinators[state.rng().random_range(0..coordinators.len())];
        let is_batch_write = matches!(request, ringkv_core::ClientRequest::MSet { .. });
        let op = self.history.invoke(client, node_id(node), record, self.now, false);
        if is_batch_write {
            self.batch_writes.insert(op);
        }
        self.clients[client].in_flight = Some(op);
        self.trace.record(self.now, Some(node), 9, op as u64, || {
            format!("client {client} op {op}: {request:?}")
        });
        if self.slots[node].node.is_none() {
            let refused = OpOutcome::Failed("connection refused: the node is down".into());
            return self.complete(op, refused, None);
        }
        self.schedule(self.config.workload.op_timeout, Event::ClientTimeout { op });
        self.feed(node, Some(Input::Client { request: op as u64, op: request }));
    }

    fn client_reply(&mut self, op: OpIndex, result: Result<ClientResponse, ClientError>) {
        let (outcome, context) = match result {
            Ok(ClientResponse::Read(read)) => {
                (OpOutcome::Ok { reads: vec![read.values] }, Some(read.context))
            }
            Ok(ClientResponse::ReadMany(reads)) => {
                (OpOutcome::Ok { reads: reads.into_iter().map(|read| read.values).collect() }, None)
            }
            Ok(ClientResponse::Cas(reply)) => (OpOutcome::Serial(reply), None),
            Ok(_) => (OpOutcome::Ok { reads: Vec::new() }, None),
            Err(error) => (outcome_of_error(&error, self.batch_writes.contains(&op)), None),
        };
        self.complete(op, outcome, context);
    }

    fn complete(&mut self, op: OpIndex, outcome: OpOutcome, context: Option<Context>) {
        let ok = matches!(outcome, OpOutcome::Ok { .. });
        let code = match &outcome {
            OpOutcome::Ok { .. } | OpOutcome::Serial(_) => 0,
            OpOutcome::Failed(_) => 1,
            _ => 2,
        };
        let text = self.trace.is_logging().then(|| format!("op {op} completed: {outcome:?}"));
        if !self.history.complete(op, self.now, outcome) {
            return;
        }
        self.trace
            .record(self.now, None, 10, ((op as u64) << 2) | code, || text.unwrap_or_default());
        let Some(record) = self.history.get(op) else {
            return;
        };
        if record.final_pass {
            self.final_remaining = self.final_remaining.saturating_sub(1);
            if self.final_remaining == 0 {
                self.schedule(Duration::from_millis(500), Event::End);
            }
            return;
        }
        let client = record.client;
        let read_key = match &record.request {
            OpRequest::Read { keys, .. } => keys.first().cloned(),
            OpRequest::Write { .. } | OpRequest::Cas { .. } | OpRequest::Flush { .. } => None,
        };
        let state = &mut self.clients[client];
        state.in_flight = None;
        if let (OpRequest::Cas { key, .. }, OpOutcome::Serial(reply)) =
            (&record.request, &record.outcome)
        {
            state.observe_serial(key, reply.current.clone());
        }
        match (state.follow_up.take(), ok, context, read_key) {
            (Some(kind), true, Some(context), Some(key)) => {
                self.owed[client] = Some(OwedWrite { key, context, read: op, kind });
                self.schedule(Duration::ZERO, Event::ClientTurn { client });
            }
            _ => {
                let think = self.think_time(client);
                self.schedule(think, Event::ClientTurn { client });
            }
        }
    }

    fn think_time(&mut self, client: usize) -> Duration {
        let workload = &self.config.workload;
        let mean_secs = workload.clients_count as f64 / workload.ops_per_sec;
        let secs = exponential(self.clients[client].rng(), mean_secs);
        Duration::from_nanos((secs * 1e9) as u64)
    }

    // ---- faults ----

    fn fault_delay(&mut self, position: usize, rate_per_sec: f64) -> Duration {
        let secs = exponential(&mut self.fault_rngs[position], 1.0 / rate_per_sec);
        Duration::from_nanos((secs * 1e9) as u64)
    }

    fn inject(&mut self, kind: FaultKind) {
        if self.phase != Phase::Safety {
            return;
        }
        let rates = self.plan.event_rates();
        let Some(position) = rates.iter().position(|(candidate, _)| *candidate == kind) else {
            return;
        };
        // Faults strike members only; with no membership change these are 0..nodes_count, so
        // the draws are the same as before membership changes existed.
        let members = active_indexes(&self.slots);
        let n = members.len();
        match kind {
            FaultKind::Partition => self.inject_partition(position),
            FaultKind::Crash => {
                if let Some(victim) = self.victim_keeping_majority(&members, position) {
                    let down_ms = self.fault_rngs[position].random_range(200..=3_000);
                    self.crash(victim, "crash");
                    self.schedule(Duration::from_millis(down_ms), Event::Restart { node: victim });
                }
            }
            FaultKind::Clog => {
                let rng = &mut self.fault_rngs[position];
                let victim = members[rng.random_range(0..n)];
                let until = self.now + Duration::from_millis(rng.random_range(200..=2_000));
                self.stats.clogs += 1;
                self.trace.record(self.now, Some(victim), 11, 0, || "clogged".into());
                self.note(FaultEventKind::Clog { node: node_id(victim), until: Some(until) });
                self.network.clog(victim, until);
            }
            FaultKind::ClockJump => {
                let jump_max = self.plan.clock_jump_ms_max as i64;
                let rng = &mut self.fault_rngs[position];
                let victim = members[rng.random_range(0..n)];
                let delta_ms =
                    if jump_max > 0 { rng.random_range(-jump_max..=jump_max) } else { 0 };
                self.stats.clock_jumps += 1;
                self.trace.record(self.now, Some(victim), 12, delta_ms as u64, || {
                    format!("clock jumps {delta_ms} ms")
                });
                self.note(FaultEventKind::ClockJump { node: node_id(victim), delta_ms });
                self.clocks[victim].jump(delta_ms);
            }
            FaultKind::DiskFailure => {
                let healthy: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|index| {
                        self.slots[*index].node.is_some() && !self.slots[*index].disk_failing
                    })
                    .collect();
                if !healthy.is_empty() {
                    let rng = &mut self.fault_rngs[position];
                    let victim = healthy[rng.random_range(0..healthy.len())];
                    let broken_ms = rng.random_range(500..=3_000);
                    self.stats.disk_failures += 1;
                    self.trace.record(self.now, Some(victim), 13, 0, || "disk failing".into());
                    self.note(FaultEventKind::DiskFailing { node: node_id(victim) });
                    let slot = &mut self.slots[victim];
                    slot.disk_failing = true;
                    if let Some(node) = slot.node.as_mut() {
                        node.storage_mut().set_failing(true);
                    }
                    let replace = Duration::from_millis(broken_ms);
                    self.schedule(replace, Event::ReplaceDisk { node: victim });
                }
            }
            FaultKind::CleanRestart => {
                if let Some(victim) = self.victim_keeping_majority(&members, position) {
                    let down_ms = self.fault_rngs[position].random_range(100..=1_000);
                    self.clean_stop(victim);
                    self.schedule(Duration::from_millis(down_ms), Event::Restart { node: victim });
                }
            }
            FaultKind::PowerLoss => {
                self.stats.power_losses += 1;
                self.trace.record(self.now, None, 21, 0, || "POWER LOSS: every node".into());
                self.note(FaultEventKind::PowerLoss);
                for victim in 0..n {
                    if self.slots[victim].node.is_some() {
                        let down_ms = self.fault_rngs[position].random_range(200..=3_000);
                        self.crash(victim, "power loss");
                        let restart = Duration::from_millis(down_ms);
                        self.schedule(restart, Event::Restart { node: victim });
                    }
                }
            }
            FaultKind::BitFlip => {
                let rng = &mut self.fault_rngs[position];
                let drawn = rng.random_range(0..n);
                let victim = self.damaged.map_or(drawn, |(damaged, _)| damaged);
                let slot = &mut self.slots[victim];
                let disk = match (slot.node.as_mut(), slot.disk.as_mut()) {
                    (Some(node), _) => Some(node.storage_mut()),
                    (None, disk) => disk,
                };
                if let Some(flipped) = disk.and_then(|disk| disk.flip_bit(rng)) {
                    self.stats.bit_flips += 1;
                    // Damage after a rebuild needs another rebuild before the mark moves on.
                    self.damaged = Some((victim, false));
                    self.faults.push(FaultEvent {
                        at: self.now,
                        kind: FaultEventKind::BitFlip { node: node_id(victim) },
                    });
                    self.trace.record(self.now, Some(victim), 22, 0, || {
                        format!("bit flipped at rest: {flipped}")
                    });
                }
            }
            FaultKind::Restore => {
                let victim = self.victim_keeping_majority(&members, position);
                let rng = &mut self.fault_rngs[position];
                let restore_ms = rng.random_range(500..=3_000);
                let restart_ms = rng.random_range(100..=1_000);
                let snapshot_seed: u64 = rng.random();
                // Half the snapshots are cold, as an operator takes them: the node is stopped
                // cleanly, its disk checkpointed, and it starts again (keeping its epoch, so
                // the snapshot carries the epoch and dot counter the live node goes on from).
                let cold = rng.random_bool(0.5);
                // One restore at a time, and none while a store is being refilled: two replicas
                // of the same data behind at once lose what only they held (N = 3, W = 2
                // tolerates one), which is a lost replica, not a bug.
                let busy = self.slots.iter().any(|slot| {
                    slot.snapshot.is_some()
                        || slot.node.as_ref().is_some_and(|node| node.is_rebuilding())
                });
                let healthy = |index: &usize| !self.slots[*index].disk_failing;
                if let Some(victim) = victim.filter(|index| !busy && healthy(index)) {
                    let snapshot = if cold {
                        self.clean_stop(victim);
                        let restart = Duration::from_millis(restart_ms);
                        self.schedule(restart, Event::Restart { node: victim });
                        self.slots[victim].disk.as_mut().and_then(|disk| {
                            if disk.recover() {
                                disk.checkpoint(snapshot_seed)
                            } else {
                                None
                            }
                        })
                    } else {
                        self.slots[victim]
                            .node
                            .as_mut()
                            .and_then(|node| node.storage_mut().checkpoint(snapshot_seed))
                    };
                    if let Some(snapshot) = snapshot {
                        self.slots[victim].snapshot = Some((self.now, snapshot));
                        self.stats.snapshots += 1;
                        let kind = if cold { "cold" } else { "hot" };
                        self.trace.record(self.now, Some(victim), 23, restore_ms, || {
                            format!("{kind} snapshot taken; restored in {restore_ms} ms")
                        });
                        self.note(FaultEventKind::Snapshot { node: node_id(victim) });
                        let event = Event::RestoreSnapshot { node: victim, restart_ms };
                        self.schedule(Duration::from_millis(restore_ms), event);
                    }
                }
            }
            FaultKind::Suspicion => {
                let rng = &mut self.fault_rngs[position];
                let observer = members[rng.random_range(0..n)];
                let suspect = members[rng.random_range(0..n)];
                let wrong_ms = rng.random_range(200..=2_000);
                if observer != suspect {
                    self.trace.record(self.now, Some(observer), 17, suspect as u64, || {
                        format!("detector wrongly suspects n{}", suspect + 1)
                    });
                    let correct = Duration::from_millis(wrong_ms);
                    self.note(FaultEventKind::Suspicion {
                        observer: node_id(observer),
                        suspect: node_id(suspect),
                        until: self.now + correct,
                    });
                    let status = Input::PeerStatus { node: node_id(suspect), up: false };
                    self.feed(observer, Some(status));
                    // The broadcast tells everyone the truth again, correcting the observer.
                    self.schedule(correct, Event::StatusBroadcast { about: suspect });
                }
            }
        }
        let delay = self.fault_delay(position, rates[position].1);
        self.schedule(delay, Event::Fault { kind });
    }

    /// A running member to take down, drawn with the fault's generator, while fewer than
    /// `n / 2` of the `n` members are down (crashes and restarts keep a majority up).
    fn victim_keeping_majority(&mut self, members: &[usize], position: usize) -> Option<usize> {
        let running: Vec<usize> =
            members.iter().copied().filter(|index| self.slots[*index].node.is_some()).collect();
        let n = members.len();
        if running.is_empty() || n - running.len() >= n / 2 {
            return None;
        }
        let rng = &mut self.fault_rngs[position];
        Some(running[rng.random_range(0..running.len())])
    }

    fn inject_partition(&mut self, position: usize) {
        let mut order = active_indexes(&self.slots);
        let n = order.len();
        if n < 2 {
            return;
        }
        let rng = &mut self.fault_rngs[position];
        order.shuffle(rng);
        let shape = match rng.random_range(0..4) {
            2 if n >= 3 => {
                let side_len = ((n - 1) / 2).max(1);
                PartitionShape::Bridge { side: order[1..=side_len].to_vec(), bridge: order[0] }
            }
            3 => PartitionShape::OneWay { from: order[0] },
            _ => {
                let side_len = rng.random_range(1..=(n / 2).max(1));
                PartitionShape::Split { side: order[..side_len].to_vec() }
            }
        };
        let heal_ms = rng.random_range(500..=3_000);
        self.partition_generation += 1;
        self.stats.partitions += 1;
        let generation = self.partition_generation;
        self.trace.record(self.now, None, 14, generation, || format!("partition {shape:?}"));
        self.network.partition(&shape);
        self.note(FaultEventKind::Partition { shape });
        self.schedule(Duration::from_millis(heal_ms), Event::HealPartition { generation });
    }

    // ---- the schedule ----

    fn play(&mut self, position: usize) {
        let event = self.schedule[position].event.clone();
        self.trace.record(self.now, None, 19, position as u64, || format!("SCHEDULE: {event:?}"));
        let index = |node: u32| node as usize - 1;
        match event {
            ScheduledEvent::Join => {
                let Some(slot) = self.slots.iter().position(|slot| slot.role == Role::Absent)
                else {
                    return;
                };
                let disk_seed = child_seed(self.config.seed, "disk", slot as u64);
                let joining = &mut self.slots[slot];
                joining.disk = Some(D::fresh(disk_seed));
                joining.role = Role::Member;
                joining.join = true;
                self.stats.joins += 1;
                self.note(FaultEventKind::Membership { node: node_id(slot), change: "join" });
                self.start(slot, true);
            }
            ScheduledEvent::Decommission { node } => {
                let slot = index(node);
                if self.slots[slot].role == Role::Member {
                    self.slots[slot].role = Role::Leaving;
                    let node = node_id(slot);
                    self.note(FaultEventKind::Membership { node, change: "decommission" });
                    self.feed(slot, Some(Input::Decommission));
                    self.watch();
                }
            }
            ScheduledEvent::Crash { node } => {
                let slot = index(node);
                if self.slots[slot].role.is_active() {
                    self.slots[slot].held_down = true;
                    self.crash(slot, "scheduled crash");
                }
            }
            ScheduledEvent::Restart { node } => {
                let slot = index(node);
                self.slots[slot].held_down = false;
                let restartable =
                    self.slots[slot].role.is_active() && !self.slots[slot].disk_failing;
                if restartable && self.slots[slot].node.is_none() {
                    self.start(slot, true);
                }
            }
            ScheduledEvent::Remove { node } => {
                let slot = index(node);
                if self.slots[slot].role.is_active() && self.slots[slot].node.is_none() {
                    self.slots[slot].role = Role::Removing;
                    let node = node_id(slot);
                    self.note(FaultEventKind::Membership { node, change: "remove" });
                    self.watch();
                    self.watch_departures();
                }
            }
            ScheduledEvent::Partition(forced) => {
                let indexes = |nodes: &[u32]| nodes.iter().map(|node| index(*node)).collect();
                let shape = match &forced {
                    ForcedPartition::Split { side } => {
                        PartitionShape::Split { side: indexes(side) }
                    }
                    ForcedPartition::Bridge { side, bridge } => {
                        PartitionShape::Bridge { side: indexes(side), bridge: index(*bridge) }
                    }
                    ForcedPartition::OneWay { from } => {
                        PartitionShape::OneWay { from: index(*from) }
                    }
                };
                // A new generation, so a pending swarm heal does not end this partition.
                self.partition_generation += 1;
                self.stats.partitions += 1;
                self.network.partition(&shape);
                self.note(FaultEventKind::Partition { shape });
            }
            ScheduledEvent::Heal => {
                self.partition_generation += 1;
                self.network.heal_partition();
                self.note(FaultEventKind::PartitionHealed);
            }
            ScheduledEvent::Clog { node } => {
                self.stats.clogs += 1;
                self.network.clog(index(node), Instant::from_nanos(u64::MAX));
                self.note(FaultEventKind::Clog { node: node_id(index(node)), until: None });
            }
            ScheduledEvent::Unclog { node } => {
                self.network.unclog(index(node));
                self.note(FaultEventKind::Unclog { node: node_id(index(node)) });
            }
        }
    }

    /// Starts the departure watch unless it runs already.
    fn watch(&mut self) {
        if !self.watching {
            self.watching = true;
            self.schedule(DEPARTURE_WATCH_INTERVAL, Event::WatchDepartures);
        }
    }

    /// Moves departures along as an operator would: a leaving node that a restart turned normal
    /// again is asked to leave again; one that every running member sees left is stopped for
    /// good; a removal is repeated to a member that has not heard of it.
    fn watch_departures(&mut self) {
        let mut pending = false;
        for slot in 0..self.slots.len() {
            match self.slots[slot].role {
                Role::Leaving => {
                    pending = true;
                    let Some(status) = self.slots[slot].node.as_ref().map(Node::status) else {
                        continue;
                    };
                    if status == MemberStatus::Normal {
                        self.feed(slot, Some(Input::Decommission));
                    } else if status == MemberStatus::Left && self.all_see_left(slot) {
                        self.trace.record(self.now, Some(slot), 20, 0, || "departed".into());
                        self.clean_stop(slot);
                        self.slots[slot].role = Role::Departed;
                        let node = node_id(slot);
                        self.note(FaultEventKind::Membership { node, change: "departed" });
                        self.stats.decommissions += 1;
                    }
                }
                Role::Removing => {
                    pending = true;
                    if self.all_see_left(slot) {
                        self.trace.record(self.now, Some(slot), 20, 1, || "removed".into());
                        self.slots[slot].role = Role::Departed;
                        self.stats.removals += 1;
                        let node = node_id(slot);
                        self.note(FaultEventKind::Membership { node, change: "removed" });
                        continue;
                    }
                    let id = node_id(slot);
                    let unaware = active_indexes(&self.slots).into_iter().find(|other| {
                        self.slots[*other].node.as_ref().is_some_and(|node| {
                            node.membership()
                                .get(&id)
                                .is_some_and(|state| state.status != MemberStatus::Left)
                        })
                    });
                    if let Some(operator) = unaware {
                        self.feed(operator, Some(Input::RemoveNode { node: id }));
                    }
                }
                _ => {}
            }
        }
        self.watching = false;
        if pending {
            self.watch();
        }
    }

    /// Whether every running member other than `slot` sees `slot`'s node as left (or has never
    /// heard of it).
    fn all_see_left(&self, slot: usize) -> bool {
        let id = node_id(slot);
        active_indexes(&self.slots).into_iter().filter(|other| *other != slot).all(|other| {
            self.slots[other].node.as_ref().is_none_or(|node| {
                node.membership().get(&id).is_none_or(|state| state.status == MemberStatus::Left)
            })
        })
    }

    // ---- phases ----

    fn heal(&mut self) {
        self.trace.record(self.now, None, 15, 0, || "HEAL: faults off, nodes restarted".into());
        self.phase = Phase::Liveness;
        self.note(FaultEventKind::Heal);
        self.network.heal_partition();
        self.network.unclog_all();
        self.network.set_rates(0.0, 0.0, 0.0);
        self.clocks.iter_mut().for_each(NodeClock::fix);
        for (location, stats) in ringkv_core::buggify::disable() {
            self.stats.buggify.insert(
                location.to_string(),
                (stats.enabled, stats.reached_count, stats.fired_count),
            );
        }
        if self.plan.io_error_rate > 0.0 {
            for slot in &mut self.slots {
                match (slot.node.as_mut(), slot.disk.as_mut()) {
                    (Some(node), _) => node.storage_mut().set_io_error_rate(0.0),
                    (None, Some(disk)) => disk.set_io_error_rate(0.0),
                    (None, None) => {}
                }
            }
        }
        for index in active_indexes(&self.slots) {
            // The heal restarts nodes the schedule crashed too; only removed nodes stay down.
            self.slots[index].held_down = false;
            if self.slots[index].disk_failing {
                self.replace_disk(index);
            }
            if self.slots[index].node.is_none() {
                self.start(index, true);
            }
        }
        if self.plan.bit_flips_per_sec > 0.0 {
            for index in 0..self.slots.len() {
                if let Some(node) = self.slots[index].node.as_mut() {
                    node.storage_mut().scrub();
                }
                self.supervise(index);
            }
        }
        for about in 0..self.slots.len() {
            if self.slots[about].role != Role::Absent {
                self.broadcast_status(about);
            }
        }
        self.liveness_from = Some(self.now + self.config.liveness_warmup);
        self.healed_at = Some(self.now);
    }

    fn final_pass(&mut self) {
        self.phase = Phase::Final;
        let keys: BTreeSet<Key> = self
            .history
            .iter()
            .filter_map(|(_, op)| match &op.request {
                OpRequest::Write { writes, .. } => Some(writes.iter().map(|(key, _)| key.clone())),
                // Serial keys are judged by the linearizability checker, not the final pass.
                // A flush writes nothing: the keys it removed were written before or not at all.
                OpRequest::Read { .. } | OpRequest::Cas { .. } | OpRequest::Flush { .. } => None,
            })
            .flatten()
            .collect();
        self.trace.record(self.now, None, 16, keys.len() as u64, || {
            format!("FINAL PASS: reading {} keys at ALL", keys.len())
        });
        let pseudo_client = self.clients.len();
        let coordinators = active_indexes(&self.slots);
        self.final_remaining = keys.len();
        for (position, key) in keys.into_iter().enumerate() {
            let node = coordinators[position % coordinators.len()];
            let consistency = ringkv_core::Consistency::All;
            let record = OpRequest::Read { keys: vec![key.clone()], consistency };
            let op = self.history.invoke(pseudo_client, node_id(node), record, self.now, true);
            self.schedule(self.config.workload.op_timeout, Event::ClientTimeout { op });
            let request = ringkv_core::ClientRequest::Get { key, consistency };
            self.feed(node, Some(Input::Client { request: op as u64, op: request }));
        }
        if self.final_remaining == 0 {
            self.schedule(Duration::ZERO, Event::End);
        }
        self.schedule(self.config.workload.op_timeout * 2, Event::End);
    }

    fn finish(mut self) -> Report {
        for (location, stats) in ringkv_core::buggify::disable() {
            self.stats.buggify.insert(
                location.to_string(),
                (stats.enabled, stats.reached_count, stats.fired_count),
            );
        }
        let final_state = self.collect_final_state();
        let params = CheckParams {
            replicas_n: self.config.node.keyspace.replicas_n,
            conflict_mode: self.config.node.keyspace.conflict_mode,
            liveness_from: self.liveness_from,
            liveness_success_min: self.config.liveness_success_min,
            node_starts_count: self.stats.node_starts as usize,
            sloppy_quorum: self.config.node.keyspace.sloppy_quorum,
            settled: self.liveness_from.is_some_and(|from| self.now >= from),
            recovery: self.healed_at.zip(self.config.recovery_bound),
        };
        let views = self.membership_views();
        let expected_members = self.expected_members();
        self.stats.final_members = expected_members.clone();
        let input = CheckInput {
            history: &self.history,
            final_state: &final_state,
            views: &views,
            expected_members: &expected_members,
            params,
        };
        let mut violations = std::mem::take(&mut self.violations);
        if self.config.run_checkers {
            violations.extend(check_all(input));
        }
        let mut outcomes = OutcomeCounts::default();
        for (_, op) in self.history.iter().filter(|(_, op)| !op.final_pass) {
            match op.outcome {
                OpOutcome::Ok { .. } | OpOutcome::Serial(_) => outcomes.ok += 1,
                OpOutcome::Failed(_) => outcomes.failed += 1,
                OpOutcome::Unknown(_) => outcomes.unknown += 1,
                OpOutcome::Pending => outcomes.pending += 1,
            }
        }
        self.stats.messages_dropped = self.network.dropped_count;
        self.stats.messages_duplicated = self.network.duplicated_count;
        Report {
            seed: self.config.seed,
            plan: self.plan,
            outcomes,
            events_processed: self.events_processed,
            simulated_time: self.now.saturating_since(Instant::ZERO),
            violations,
            trace_hash: self.trace.hash(),
            stats: self.stats,
            history: self.history,
            trace: self.trace.into_lines(),
            faults: self.faults,
        }
    }

    fn membership_views(&mut self) -> Vec<NodeView> {
        let views = self.slots.iter_mut().enumerate().filter_map(|(index, slot)| {
            let node = slot.node.as_mut()?;
            let hints_count = node
                .storage_mut()
                .scan(Space::Hints, None, HINTS_SCANNED_MAX)
                .map_or(HINTS_SCANNED_MAX, |hints| hints.len());
            let members = node
                .membership()
                .iter()
                .map(|(id, state)| (*id, (state.generation, format!("{:?}", state.status))))
                .collect();
            let down =
                node.membership().keys().copied().filter(|peer| node.is_peer_down(*peer)).collect();
            Some(NodeView { node: node_id(index), members, down, hints_count })
        });
        views.collect()
    }

    /// The membership the schedule should end with: founding nodes plus joined ones, minus
    /// the decommissioned and removed.
    fn expected_members(&self) -> Vec<NodeId> {
        (0..self.slots.len())
            .filter(|index| self.slots[*index].role == Role::Member)
            .map(node_id)
            .collect()
    }

    fn collect_final_state(&mut self) -> FinalState {
        // The final owners: the ring of the expected membership (every node weighs 1).
        let ring = Ring::with_members(self.node_config.vnodes_per_node, self.expected_members());
        let replicas_n = self.node_config.keyspace.replicas_n;
        let mode = self.node_config.keyspace.conflict_mode;
        let wall = NodeClock::default().wall(self.now);
        let keys: BTreeSet<Key> = self
            .history
            .iter()
            .filter(|(_, op)| op.final_pass)
            .filter_map(|(_, op)| match &op.request {
                OpRequest::Read { keys, .. } => keys.first().cloned(),
                OpRequest::Write { .. } | OpRequest::Cas { .. } | OpRequest::Flush { .. } => None,
            })
            .collect();
        for (index, slot) in self.slots.iter().enumerate() {
            if slot.role.is_active() && slot.node.is_none() {
                self.violations.push(Violation {
                    checker: "liveness",
                    message: format!("n{} is not running at the end of the run", index + 1),
                    ops: Vec::new(),
                });
            }
        }
        let mut state = FinalState::new();
        for key in keys {
            let owners = ring.preference_list(&key, replicas_n);
            let mut final_key = FinalKey {
                owners: owners.clone(),
                owners_expected: replicas_n.min(ring.members_count()),
                ..FinalKey::default()
            };
            for (index, slot) in self.slots.iter_mut().enumerate() {
                // A node that left keeps its disk, but the cluster no longer reads it.
                let Some(node) = slot.node.as_mut().filter(|_| slot.role.is_active()) else {
                    continue;
                };
                let copy = match node.local_object(&key) {
                    Ok(copy) => copy.unwrap_or_default(),
                    Err(error) => {
                        self.violations.push(Violation {
                            checker: "runner",
                            message: format!("n{} cannot read {key:?}: {error}", index + 1),
                            ops: Vec::new(),
                        });
                        continue;
                    }
                };
                final_key.merged.merge(&copy, mode);
                if owners.contains(&node_id(index)) {
                    if copy != ringkv_core::version::Versioned::default() {
                        *self.stats.final_copies_by_node.entry(node_id(index)).or_default() += 1;
                    }
                    final_key.replicas.push((node_id(index), copy));
                }
            }
            final_key.live = final_key.merged.live_values(wall);
            state.insert(key, final_key);
        }
        state
    }

    /// Adds `kind` to the fault log at the current instant.
    fn note(&mut self, kind: FaultEventKind) {
        self.faults.push(FaultEvent { at: self.now, kind });
    }

    fn schedule(&mut self, delay: Duration, event: Event<D::Work>) {
        let at = self.now + delay;
        self.schedule_at(at, event);
    }

    fn schedule_at(&mut self, at: Instant, event: Event<D::Work>) {
        if !self.queue.schedule(at.max(self.now), event) {
            self.violations.push(Violation {
                checker: "runner",
                message: format!("the event queue is full ({} events)", self.queue.len()),
                ops: Vec::new(),
            });
        }
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
