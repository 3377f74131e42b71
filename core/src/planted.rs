//! Planted bugs: small, named, deliberate mistakes that the simulator's checkers must catch.
//!
//! Owns: the list of bugs ([`PlantedBug`]) and the per-thread switch that arms one of them for a
//! run ([`arm`]). Each bug is one line at its site, behind the [`planted!`](crate::planted!) macro. Without the
//! `planted-bugs` cargo feature the macro is the constant `false` and no bug can be armed, so
//! a normal build carries none of them. `ringkv-sim hunt` (scenarios/) arms each bug in turn
//! and reports which checker caught it after how many seeds.
//!
//! Per thread, like BUGGIFY: each simulation runs on one thread, parallel runs do not interfere.

/// One planted bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlantedBug {
    /// A write waits for one acknowledgement fewer than its level requires (node.rs: write
    /// placement; not in `Consistency::required`, which the checkers use too).
    QuorumOffByOne,
    /// A merge keeps only this replica's siblings, dropping the other's new ones (version.rs).
    MergeDropsTheirSiblings,
    /// A context write keeps the siblings its context covers (version.rs).
    UpdateIgnoresContext,
    /// Every object claims to descend from every other, so repair never sends (version.rs).
    DescendsAlways,
    /// Tombstones are purgeable at once, ignoring the grace period (version.rs).
    PurgeIgnoresGrace,
    /// A duplicated forward is executed again instead of answered from the log (forwards.rs).
    ForwardDedupOff,
    /// A read replies with the copy of the replica that completed its quorum instead of the
    /// merge of every reply (coordinator.rs).
    ReadSkipsMerge,
    /// A crash of `MemStorage` loses its synced data keys but keeps its metadata, so the node
    /// restarts with its old epoch and reissues dots (Riak's kv679) (storage.rs).
    CrashLosesSyncedData,
    /// A replica acknowledges a write as soon as it is applied, before the write-ahead log is
    /// synced, so a crash can lose an acknowledged write (node.rs).
    AckBeforeSync,
    /// The ring walk does not skip a node it already picked, so a preference list can name one
    /// node twice and the key has fewer than N replicas (ring.rs).
    PreferenceListRepeatsNode,
    /// The hint replay skips every hint, as if every owner were down (node.rs).
    HintsNeverReplayed,
    /// A write counts every acknowledgement it receives, so a duplicated ack from one replica
    /// counts twice toward W (coordinator.rs).
    QuorumCountsDuplicateReplies,
    /// Read repair sends the merged object without its last sibling while keeping its clock, so
    /// the stale replica (and every replica it later merges with) drops that write
    /// (coordinator.rs).
    ReadRepairDropsSibling,
    /// A merge of concurrent siblings keeps only the first one (version.rs).
    MergeKeepsOneSibling,
    /// A node whose store was rebuilt blank after corruption answers reads before anti-entropy
    /// has refilled it (node.rs).
    RebuildServesReads,
    /// Every completed anti-entropy slice counts as a whole cycle, so a rebuild ends and the
    /// tombstone purge gate opens after one slice (anti_entropy.rs).
    SliceEndsCycle,
    /// A Paxos acceptor accepts a proposal whatever ballot it promised (paxos.rs).
    PaxosAcceptIgnoresPromise,
    /// A Paxos acceptor grants a prepare whose ballot is not above the one it promised, and
    /// lowers its promise to it (paxos.rs).
    PaxosPromiseStaleBallot,
    /// A Paxos proposer ignores an accepted, uncommitted proposal it finds at prepare instead
    /// of completing it first (paxos.rs).
    PaxosInProgressIgnored,
    /// A Paxos proposer commits after the first acceptance instead of a quorum's (paxos.rs).
    PaxosCommitBeforeQuorum,
    /// A flush truncates at its coordinator's own clock instead of the latest of every
    /// member's, so a write acknowledged before the flush by a node whose clock runs ahead
    /// survives it (node.rs).
    FlushSkipsClockRound,
    /// A flushed node merges whatever arrives, so a write from before the flush that was
    /// still in flight (a delayed replica write, a read reply) comes back (node.rs).
    FlushKeepsLateArrivals,
    /// A peer the driver reports up again stays down for 3 s, so a healed cluster keeps
    /// refusing requests (node.rs; the real driver once took seconds to trust a healed link).
    PeerUpHeldDown,
    /// A store restored from a snapshot keeps the snapshot's epoch record, so the node reissues
    /// dots its live self issued after the snapshot (restore.rs).
    RestoreKeepsEpoch,
    /// A store restored from a snapshot is not marked for refilling, so its node answers reads
    /// (and Paxos rounds) from the snapshot's old state at once (restore.rs).
    RestoreServesReads,
    /// Placement ignores racks, so a key's replicas can share one rack and a rack's loss takes
    /// a quorum with it (ring.rs).
    PlacementIgnoresRacks,
    /// `LOCAL_QUORUM` counts acknowledgements from replicas in other datacenters, so a write
    /// completes before the local datacenter holds a quorum of it (placement.rs).
    LocalQuorumCountsRemote,
}

impl PlantedBug {
    /// Every planted bug the hunt arms: each is caught by a checker within its seed bound.
    pub const ALL: [PlantedBug; 27] = [
        PlantedBug::QuorumOffByOne,
        PlantedBug::MergeDropsTheirSiblings,
        PlantedBug::UpdateIgnoresContext,
        PlantedBug::DescendsAlways,
        PlantedBug::PurgeIgnoresGrace,
        PlantedBug::ForwardDedupOff,
        PlantedBug::ReadSkipsMerge,
        PlantedBug::CrashLosesSyncedData,
        PlantedBug::AckBeforeSync,
        PlantedBug::PreferenceListRepeatsNode,
        PlantedBug::HintsNeverReplayed,
        PlantedBug::QuorumCountsDuplicateReplies,
        PlantedBug::ReadRepairDropsSibling,
        PlantedBug::MergeKeepsOneSibling,
        PlantedBug::RebuildServesReads,
        PlantedBug::SliceEndsCycle,
        PlantedBug::PaxosAcceptIgnoresPromise,
        PlantedBug::PaxosPromiseStaleBallot,
        PlantedBug::PaxosInProgressIgnored,
        PlantedBug::PaxosCommitBeforeQuorum,
        PlantedBug::FlushSkipsClockRound,
        PlantedBug::FlushKeepsLateArrivals,
        PlantedBug::PeerUpHeldDown,
        PlantedBug::RestoreKeepsEpoch,
        PlantedBug::RestoreServesReads,
        PlantedBug::PlacementIgnoresRacks,
        PlantedBug::LocalQuorumCountsRemote,
    ];

    /// The bug's name, in kebab case.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::QuorumOffByOne => "quorum-off-by-one",
            PlantedBug::MergeDropsTheirSiblings => "merge-drops-their-siblings",
            PlantedBug::UpdateIgnoresContext => "update-ignores-context",
            PlantedBug::DescendsAlways => "descends-always",
            PlantedBug::PurgeIgnoresGrace => "purge-ignores-grace",
            PlantedBug::ForwardDedupOff => "forward-dedup-off",
            PlantedBug::ReadSkipsMerge => "read-skips-merge",
            PlantedBug::CrashLosesSyncedData => "crash-loses-synced-data",
            PlantedBug::AckBeforeSync => "ack-before-sync",
            PlantedBug::PreferenceListRepeatsNode => "preference-list-repeats-node",
            PlantedBug::HintsNeverReplayed => "hints-never-replayed",
            PlantedBug::QuorumCountsDuplicateReplies => "quorum-counts-duplicate-replies",
            PlantedBug::ReadRepairDropsSibling => "read-repair-drops-sibling",
            PlantedBug::MergeKeepsOneSibling => "merge-keeps-one-sibling",
            PlantedBug::RebuildServesReads => "rebuild-serves-reads",
            PlantedBug::SliceEndsCycle => "slice-ends-cycle",
            PlantedBug::PaxosAcceptIgnoresPromise => "paxos-accept-ignores-promise",
            PlantedBug::PaxosPromiseStaleBallot => "paxos-promise-stale-ballot",
            PlantedBug::PaxosInProgressIgnored => "paxos-in-progress-ignored",
            PlantedBug::PaxosCommitBeforeQuorum => "paxos-commit-before-quorum",
            PlantedBug::FlushSkipsClockRound => "flush-skips-clock-round",
            PlantedBug::FlushKeepsLateArrivals => "flush-keeps-late-arrivals",
            PlantedBug::PeerUpHeldDown => "peer-up-held-down",
            PlantedBug::RestoreKeepsEpoch => "restore-keeps-epoch",
            PlantedBug::RestoreServesReads => "restore-serves-reads",
            PlantedBug::PlacementIgnoresRacks => "placement-ignores-racks",
            PlantedBug::LocalQuorumCountsRemote => "local-quorum-counts-remote",
        }
    }
}

/// Whether this build has the planted bugs compiled in (the `planted-bugs` feature).
pub const COMPILED_IN: bool = cfg!(feature = "planted-bugs");

#[cfg(feature = "planted-bugs")]
thread_local! {
    static ARMED: std::cell::Cell<Option<PlantedBug>> = const { std::cell::Cell::new(None) };
}

/// Arms `bug` on this thread (or none). Returns false when the feature is off and nothing can
/// be armed.
pub fn arm(bug: Option<PlantedBug>) -> bool {
    #[cfg(feature = "planted-bugs")]
    ARMED.with(|armed| armed.set(bug));
    COMPILED_IN || bug.is_none()
}

/// Whether `bug` is armed on this thread; always false without the feature.
pub fn is_armed(bug: PlantedBug) -> bool {
    #[cfg(feature = "planted-bugs")]
    return ARMED.with(|armed| armed.get() == Some(bug));
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}

/// Whether the named planted bug is armed: `planted!(QuorumOffByOne)`. Constant `false`
/// without the `planted-bugs` feature.
#[macro_export]
macro_rules! planted {
    ($bug:ident) => {
        $crate::planted::is_armed($crate::planted::PlantedBug::$bug)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bug_is_armed_only_with_the_feature_and_disarmed_by_none() {
        assert!(arm(Some(PlantedBug::QuorumOffByOne)) == COMPILED_IN);
        assert_eq!(planted!(QuorumOffByOne), COMPILED_IN);
        assert!(!planted!(DescendsAlways));
        assert!(arm(None));
        assert!(!planted!(QuorumOffByOne));
    }
}
