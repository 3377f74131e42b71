//! What a run reports: outcomes, events, simulated time, violations, the trace hash.
//!
//! Owns: [`Report`] and its parts. A report is plain data; `Display` prints the summary a
//! failing test shows, beginning with the seed so it can be replayed.

use std::collections::BTreeMap;

use ringkv_core::{Duration, Instant, NodeId};

use crate::checkers::Violation;
use crate::faults::FaultPlan;
use crate::history::History;
use crate::network::PartitionShape;

/// A fault, or its end, at the simulated instant the run applied it: the fault schedule as it
/// happened (the seed's draws and the scenario's schedule), for tools that draw a run such as
/// the timeline. Recording it reads no generator and feeds nothing into the trace, so runs are
/// unchanged by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultEvent {
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub kind: FaultEventKind,
}

/// What a [`FaultEvent`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultEventKind {
    /// A partition was installed; it replaces the previous one, if any. The shape names nodes
    /// by slot index (node `n` is slot `n - 1`).
    Partition {
        /// Who is cut off from whom.
        shape: PartitionShape,
    },
    /// The partition was healed.
    PartitionHealed,
    /// A node stopped: a crash, a clean stop, a power loss, a disk replacement or a restart by
    /// the supervisor.
    Down {
        /// The node.
        node: NodeId,
        /// Why, in a word or two ("crash", "clean stop", ...).
        cause: &'static str,
    },
    /// A node started (after a stop, or for the first time).
    Up {
        /// The node.
        node: NodeId,
    },
    /// A node's links were clogged (messages held) until `until`, or until an unclog.
    Clog {
        /// The node.
        node: NodeId,
        /// When the clog ends by itself (`None`: at an unclog or the heal).
        until: Option<Instant>,
    },
    /// A node's clog was ended by the schedule.
    Unclog {
        /// The node.
        node: NodeId,
    },
    /// A node's wall clock jumped.
    ClockJump {
        /// The node.
        node: NodeId,
        /// By how much (negative: backwards).
        delta_ms: i64,
    },
    /// A node's disk started failing every sync.
    DiskFailing {
        /// The node.
        node: NodeId,
    },
    /// A failing disk was replaced (it works again).
    DiskReplaced {
        /// The node.
        node: NodeId,
    },
    /// A snapshot of a node's store was taken (a checkpoint, for a later restore).
    Snapshot {
        /// The node.
        node: NodeId,
    },
    /// A node's store was replaced by the snapshot taken at `taken_at`; the node restarts on it.
    Restored {
        /// The node.
        node: NodeId,
        /// When the snapshot was taken.
        taken_at: Instant,
    },
    /// A bit flipped at rest on a node's disk.
    BitFlip {
        /// The node.
        node: NodeId,
    },
    /// A node's failure detector wrongly suspected a peer until `until`.
    Suspicion {
        /// The node misled.
        observer: NodeId,
        /// The peer it suspected.
        suspect: NodeId,
        /// When the truth is broadcast again.
        until: Instant,
    },
    /// Every running node lost power at once (each also has its own `Down`).
    PowerLoss,
    /// A membership change of the schedule: "join", "decommission", "departed", "remove",
    /// "removed".
    Membership {
        /// The node.
        node: NodeId,
        /// Which change.
        change: &'static str,
    },
    /// The safety phase ended: every fault was healed.
    Heal,
}

/// Client operations by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// Succeeded.
    pub ok: u64,
    /// Certainly had no effect.
    pub failed: u64,
    /// May or may not have had an effect.
    pub unknown: u64,
    /// Never completed (only when a run is cut short).
    pub pending: u64,
}

/// What the fault injector and the cluster did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Peer messages sent.
    pub messages_sent: u64,
    /// Peer messages lost or blocked.
    pub messages_dropped: u64,
    /// Extra copies delivered.
    pub messages_duplicated: u64,
    /// Node crashes (including disk replacements).
    pub crashes: u64,
    /// Node starts, including the first.
    pub node_starts: u64,
    /// Clean shutdowns (counted among the crashes too, with nothing unsynced to lose).
    pub clean_restarts: u64,
    /// Partitions installed.
    pub partitions: u64,
    /// Clogs.
    pub clogs: u64,
    /// Wall-clock jumps.
    pub clock_jumps: u64,
    /// Disks that started failing.
    pub disk_failures: u64,
    /// Events that found nothing to do (a timer superseded by a later one, a client timeout
    /// after the reply); they are counted in `events_processed`.
    pub stale_events: u64,
    /// Syncs completed (successfully or not).
    pub syncs: u64,
    /// Syncs that failed.
    pub sync_failures: u64,
    /// Power losses (every running node crashed at once).
    pub power_losses: u64,
    /// Datacenter power losses (every running node of one datacenter crashed at once).
    pub dc_power_losses: u64,
    /// Rack losses (every node of one rack crashed at once).
    pub rack_losses: u64,
    /// Bits flipped at rest.
    pub bit_flips: u64,
    /// Snapshots taken of a node's store (for a later restore).
    pub snapshots: u64,
    /// Nodes restarted on a snapshot of their store.
    pub restores: u64,
    /// Nodes restarted because their disk reported a failure (a poisoned engine after an I/O
    /// error, corruption found while running).
    pub disk_restarts: u64,
    /// Starts that found the store being rebuilt (blank after corruption, not yet refilled).
    pub rebuilding_starts: u64,
    /// Starts that failed on an I/O error and were tried again.
    pub start_retries: u64,
    /// BUGGIFY sites reached, enabled and fired, by location.
    pub buggify: BTreeMap<String, (bool, u64, u64)>,
    /// Nodes that joined (scheduled joins started).
    pub joins: u64,
    /// Decommissioned nodes that every member saw leave and that were then stopped.
    pub decommissions: u64,
    /// Removed dead nodes that every member saw removed.
    pub removals: u64,
    /// The membership the run ended with (founding + joined - decommissioned - removed).
    pub final_members: Vec<NodeId>,
    /// Per node, the written keys it owns in the final ring and holds a copy of at the end.
    pub final_copies_by_node: BTreeMap<NodeId, usize>,
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed (replay it to get the same run).
    pub seed: u64,
    /// The faults the seed chose.
    pub plan: FaultPlan,
    /// Workload operations by outcome.
    pub outcomes: OutcomeCounts,
    /// Events processed.
    pub events_processed: u64,
    /// Simulated time at the end.
    pub simulated_time: Duration,
    /// Every property that did not hold.
    pub violations: Vec<Violation>,
    /// Hash of every event; equal for two runs of one seed.
    pub trace_hash: u64,
    /// The readable event log, when asked for.
    pub trace: Vec<String>,
    /// Fault and cluster counters.
    pub stats: RunStats,
    /// The operations, for inspection.
    pub history: History,
    /// The faults as they were applied, in time order.
    pub faults: Vec<FaultEvent>,
}

impl Report {
    /// Whether every checker passed.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.simulated_time.as_nanos() as f64 / 1e9;
        writeln!(
            f,
            "seed {} ({}): {} events, {seconds:.3} simulated s, trace {:016x}",
            self.seed,
            if self.is_ok() { "ok" } else { "VIOLATIONS" },
            self.events_processed,
            self.trace_hash
        )?;
        let o = self.outcomes;
        writeln!(
            f,
            "  ops: {} ok, {} failed, {} unknown, {} pending",
            o.ok, o.failed, o.unknown, o.pending
        )?;
        let s = &self.stats;
        writeln!(
            f,
            "  faults: {} msgs sent, {} dropped, {} duplicated; {} crashes ({} clean), {} \
             partitions, {} clogs, {} clock jumps, {} disk failures, {} power losses, {} dc power \
             losses, {} rack losses, {} bit flips, {} disk restarts, {} rebuilding starts, {} start retries; buggify sites \
             fired: {}",
            s.messages_sent,
            s.messages_dropped,
            s.messages_duplicated,
            s.crashes,
            s.clean_restarts,
            s.partitions,
            s.clogs,
            s.clock_jumps,
            s.disk_failures,
            s.power_losses,
            s.dc_power_losses,
            s.rack_losses,
            s.bit_flips,
            s.disk_restarts,
            s.rebuilding_starts,
            s.start_retries,
            s.buggify.values().filter(|(_, _, fired)| *fired > 0).count()
        )?;
        writeln!(f, "  plan: {:?}", self.plan)?;
        for violation in &self.violations {
            writeln!(f, "  VIOLATION [{}] {}", violation.checker, violation.message)?;
        }
        Ok(())
    }
}
