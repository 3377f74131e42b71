//! An explicit timed schedule: membership changes and forced faults at fixed simulated times,
//! beside (or instead of) the seed's swarm faults.
//!
//! Owns: [`TimedEvent`] and [`ScheduledEvent`] (plain data, node ids as the cluster numbers them,
//! n1 first) and [`validate`], which checks a schedule against the cluster it runs on. The runner
//! carries the events out (see `runner.rs`).
//!
//! Membership: the k-th [`ScheduledEvent::Join`] starts node `nodes_count + k` on a fresh disk
//! with `join: true` (it bootstraps from the founding members as seeds, streams the ranges it
//! gains, then owns them). [`ScheduledEvent::Decommission`] asks a node to leave; the runner
//! stops it for good once every running member sees it left (an operator waiting for
//! `admin status`), and asks again if a restart made it forget. [`ScheduledEvent::Remove`]
//! declares a node that is down for good removed; the runner tells a running member, and tells it
//! again until every running member sees the node left.
//!
//! Invariants (checked by [`validate`]): every event lies in the safety phase, names a node that
//! exists by then and has not left, no node leaves twice, a removed node is down (crashed and
//! not restarted) when it is removed, and N replicas still fit in the final membership.

use std::collections::BTreeSet;

use ringkv_core::Duration;

/// A partition forced by the schedule. Nodes are numbered as ids (n1 is 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForcedPartition {
    /// `side` cannot talk to the other nodes, in either direction. With `side` a minority this
    /// is a minority split; the rest is the majority side.
    Split {
        /// One side; every other node is on the other.
        side: Vec<u32>,
    },
    /// `side` and the rest cannot talk except through `bridge`, which sees both.
    Bridge {
        /// One side (without the bridge).
        side: Vec<u32>,
        /// The node connected to everyone.
        bridge: u32,
    },
    /// Messages from `from` to everyone else are dropped; the other direction works.
    OneWay {
        /// The node whose outgoing messages are lost.
        from: u32,
    },
}

/// One scheduled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduledEvent {
    /// A new node (the next id) joins the cluster.
    Join,
    /// A node is asked to leave; it is stopped once every member sees it left.
    Decommission {
        /// The leaving node's id.
        node: u32,
    },
    /// A node crashes and stays down until a scheduled restart (or the heal, unless removed).
    Crash {
        /// The node's id.
        node: u32,
    },
    /// A node crashed by the schedule starts again on its disk.
    Restart {
        /// The node's id.
        node: u32,
    },
    /// An operator removes a dead node; anti-entropy rebuilds its ranges.
    Remove {
        /// The dead node's id.
        node: u32,
    },
    /// A partition (replacing any partition in place) until a [`ScheduledEvent::Heal`] or the
    /// phase's heal.
    Partition(ForcedPartition),
    /// Ends the partition in place.
    Heal,
    /// Every message to or from the node takes the network's clog delay until it is unclogged.
    Clog {
        /// The node's id.
        node: u32,
    },
    /// Ends a node's clog.
    Unclog {
        /// The node's id.
        node: u32,
    },
}

/// An event and when it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedEvent {
    /// Simulated time since the start of the run.
    pub at: Duration,
    /// What happens.
    pub event: ScheduledEvent,
}

/// How many nodes the schedule adds.
pub fn joins_count(schedule: &[TimedEvent]) -> usize {
    schedule.iter().filter(|timed| timed.event == ScheduledEvent::Join).count()
}

/// The schedule in the order the runner plays it: by time, ties in the written order.
pub fn in_time_order(schedule: &[TimedEvent]) -> Vec<TimedEvent> {
    let mut ordered = schedule.to_vec();
    ordered.sort_by_key(|timed| timed.at);
    ordered
}

/// Checks `schedule` for a cluster of `nodes_count` founding nodes, `replicas_n` replicas and a
/// safety phase of `safety`; the error names the event (0-based, in the written order).
pub fn validate(
    schedule: &[TimedEvent],
    nodes_count: usize,
    replicas_n: usize,
    safety: Duration,
) -> Result<(), String> {
    let mut existing: BTreeSet<u32> = (1..=nodes_count as u32).collect();
    let mut departed: BTreeSet<u32> = BTreeSet::new();
    let mut down: BTreeSet<u32> = BTreeSet::new();
    let mut next_id = nodes_count as u32 + 1;
    let mut order: Vec<(usize, &TimedEvent)> = schedule.iter().enumerate().collect();
    order.sort_by_key(|(_, timed)| timed.at);
    for (index, timed) in order {
        let problem = |text: String| format!("schedule[{index}] ({:?}): {text}", timed.event);
        if timed.at >= safety {
            return Err(problem("must happen before the safety phase ends".to_string()));
        }
        let member = |node: &u32| -> Result<(), String> {
            if !existing.contains(node) {
                return Err(problem(format!("n{node} does not exist at that time")));
            }
            if departed.contains(node) {
                return Err(problem(format!("n{node} has already left")));
            }
            Ok(())
        };
        match &timed.event {
            ScheduledEvent::Join => {
                existing.insert(next_id);
                next_id += 1;
            }
            ScheduledEvent::Decommission { node } => {
                member(node)?;
                departed.insert(*node);
            }
            ScheduledEvent::Remove { node } => {
                member(node)?;
                if !down.contains(node) {
                    return Err(problem(format!(
                        "n{node} must be crashed by the schedule (and not restarted) first"
                    )));
                }
                departed.insert(*node);
            }
            ScheduledEvent::Crash { node } => {
                member(node)?;
                down.insert(*node);
            }
            ScheduledEvent::Restart { node } => {
                member(node)?;
                down.remove(node);
            }
            ScheduledEvent::Clog { node } | ScheduledEvent::Unclog { node } => member(node)?,
            ScheduledEvent::Partition(shape) => {
                let named: Vec<u32> = match shape {
                    ForcedPartition::Split { side } => side.clone(),
                    ForcedPartition::Bridge { side, bridge } => {
                        side.iter().copied().chain([*bridge]).collect()
                    }
                    ForcedPartition::OneWay { from } => vec![*from],
                };
                if let Some(node) = named.iter().find(|node| !existing.contains(node)) {
                    return Err(problem(format!("n{node} does not exist at that time")));
                }
            }
            ScheduledEvent::Heal => {}
        }
    }
    let final_count = existing.len() - departed.len();
    if final_count < replicas_n {
        return Err(format!(
            "the schedule leaves {final_count} members, fewer than the {replicas_n} replicas"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64, event: ScheduledEvent) -> TimedEvent {
        TimedEvent { at: Duration::from_millis(millis), event }
    }

    #[test]
    fn a_sound_schedule_passes_and_joined_ids_can_be_named_later() {
        let schedule = [
            at(1_000, ScheduledEvent::Join),
            at(2_000, ScheduledEvent::Decommission { node: 6 }),
            at(3_000, ScheduledEvent::Crash { node: 2 }),
            at(4_000, ScheduledEvent::Remove { node: 2 }),
        ];
        assert_eq!(validate(&schedule, 5, 3, Duration::from_secs(10)), Ok(()));
        assert_eq!(joins_count(&schedule), 1);
    }

    #[test]
    fn unknown_nodes_late_events_double_departures_and_live_removals_are_refused() {
        let safety = Duration::from_secs(10);
        let unknown = [at(1_000, ScheduledEvent::Decommission { node: 6 })];
        assert!(validate(&unknown, 5, 3, safety).unwrap_err().contains("n6 does not exist"));
        let late = [at(10_000, ScheduledEvent::Join)];
        assert!(validate(&late, 5, 3, safety).unwrap_err().contains("before the safety"));
        let twice = [
            at(1_000, ScheduledEvent::Decommission { node: 1 }),
            at(2_000, ScheduledEvent::Decommission { node: 1 }),
        ];
        assert!(validate(&twice, 5, 3, safety).unwrap_err().contains("already left"));
        let alive = [at(1_000, ScheduledEvent::Remove { node: 1 })];
        assert!(validate(&alive, 5, 3, safety).unwrap_err().contains("must be crashed"));
        let too_few = [at(1_000, ScheduledEvent::Decommission { node: 1 })];
        assert!(validate(&too_few, 3, 3, safety).unwrap_err().contains("fewer than"));
    }
}
