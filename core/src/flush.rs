//! Cluster-wide truncation (Redis `FLUSHALL`/`FLUSHDB`): the coordinator's side.
//!
//! Contract. Owns: the flushes this node coordinates, each in one of two phases with the members
//! that have not answered it yet, and a deadline. Inputs: a flush started (with the members it
//! must reach), clock readings and acknowledgements from members (this node's own included),
//! the passing of time. Outputs: the truncation point once every member's clock is in, and the
//! finished flushes with their reply target and result. It sends nothing itself: the node sends
//! `FlushClock` and `Truncate` and truncates its own store.
//!
//! Why two phases: a write acknowledged before the flush began carries its coordinator's
//! hybrid-clock timestamp, which the flush's coordinator may never have observed (its clock may
//! run behind). Phase one reads every member's clock and takes the latest, so the truncation
//! point is later than every write acknowledged before the flush; phase two sends it, and a
//! member that applied it stamps every later write above it.
//!
//! Why truncation rather than deletes: a delete writes a replicated tombstone per key that must
//! outlive the tombstone grace; a truncation point does not. Every member removes its stored
//! objects, hints and Paxos state, and records the point; from then on it drops any incoming
//! sibling written at or before it (a late hint, a replica that missed the flush, anti-entropy
//! from a slow peer), so nothing older than the flush comes back.
//!
//! Invariants: a flush is reported once; a member is counted once per phase however many
//! answers it sends.

use std::collections::{BTreeMap, BTreeSet};

use crate::coordinator::ReplyTo;
use crate::error::ClientError;
use crate::hlc::HlcTimestamp;
use crate::time::Instant;
use crate::types::NodeId;

#[derive(Debug)]
struct Flush {
    reply_to: ReplyTo,
    members: BTreeSet<NodeId>,
    /// Members yet to answer the current phase.
    waiting: BTreeSet<NodeId>,
    /// `None` while the clocks are read; then the truncation point sent.
    at: Option<HlcTimestamp>,
    /// The latest clock reading so far.
    latest: HlcTimestamp,
    deadline: Instant,
    failure: Option<String>,
}

/// The flushes in progress at their coordinator.
#[derive(Debug, Default)]
pub struct Flushes {
    next_id: u64,
    running: BTreeMap<u64, Flush>,
}

impl Flushes {
    /// Flush ids start at `first_id`, so that a restarted coordinator does not take a late
    /// answer meant for its previous life for one of its new flushes.
    pub fn starting_at(first_id: u64) -> Self {
        Flushes { next_id: first_id, running: BTreeMap::new() }
    }

    /// Starts a flush that `members` must answer by `deadline`; returns its id. The node then
    /// asks each member (itself too) for its clock.
    pub fn start(
        &mut self,
        reply_to: ReplyTo,
        members: BTreeSet<NodeId>,
        deadline: Instant,
    ) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let flush = Flush {
            reply_to,
            waiting: members.clone(),
            members,
            at: None,
            latest: HlcTimestamp::default(),
            deadline,
            failure: None,
        };
        self.running.insert(id, flush);
        id
    }

    /// Records `from`'s clock reading for flush `id`. Once every member's reading is in,
    /// returns the truncation point (the latest reading) and the members to send it to.
    pub fn on_clock(
        &mut self,
        id: u64,
        from: NodeId,
        clock: HlcTimestamp,
    ) -> Option<(HlcTimestamp, BTreeSet<NodeId>)> {
        let flush = self.running.get_mut(&id)?;
        if flush.at.is_some() || !flush.waiting.remove(&from) {
            return None;
        }
        flush.latest = flush.latest.max(clock);
        if !flush.waiting.is_empty() {
            return None;
        }
        flush.at = Some(flush.latest);
        flush.waiting = flush.members.clone();
        Some((flush.latest, flush.members.clone()))
    }

    /// Records `from`'s acknowledgement of flush `id`'s truncation (`Err` with its storage's
    /// reason when it could not truncate). Returns the reply when the flush is finished.
    pub fn on_ack(
        &mut self,
        id: u64,
        from: NodeId,
        result: Result<(), String>,
    ) -> Option<(ReplyTo, Result<(), ClientError>)> {
        let flush = self.running.get_mut(&id)?;
        if flush.at.is_none() || !flush.waiting.remove(&from) {
            return None;
        }
        if let Err(reason) = result {
            flush.failure = Some(format!("node {} could not truncate: {reason}", from.0));
        }
        if !flush.waiting.is_empty() {
            return None;
        }
        let flush = self.running.remove(&id)?;
        let result = match flush.failure {
            Some(reason) => Err(ClientError::Storage { reason }),
            None => Ok(()),
        };
        Some((flush.reply_to, result))
    }

    /// The flushes whose deadline has passed at `now`, failed with the members still missing:
    /// `Unavailable` while clocks were read (nothing was truncated), `FlushIncomplete` after.
    pub fn expire(&mut self, now: Instant) -> Vec<(ReplyTo, ClientError)> {
        let due: Vec<u64> = self
            .running
            .iter()
            .filter(|(_, flush)| flush.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        due.into_iter()
            .filter_map(|id| self.running.remove(&id))
            .map(|flush| {
                let answered = flush.members.len() - flush.waiting.len();
                let error = match flush.at {
                    None => {
                        ClientError::Unavailable { required: flush.members.len(), alive: answered }
                    }
                    Some(_) => ClientError::FlushIncomplete {
                        acked: answered,
                        members: flush.members.len(),
                        missing: flush.waiting.iter().map(|node| node.0).collect(),
                    },
                };
                (flush.reply_to, error)
            })
            .collect()
    }

    /// The earliest deadline among the running flushes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.running.values().map(|flush| flush.deadline).min()
    }

    /// Flushes in progress.
    pub fn in_flight(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    fn members(ids: &[u32]) -> BTreeSet<NodeId> {
        ids.iter().map(|id| NodeId(*id)).collect()
    }

    #[test]
    fn a_flush_finishes_once_every_member_acknowledged_and_counts_each_member_once() {
        let mut flushes = Flushes::starting_at(7);
        let to = ReplyTo::Client(1);
        let id = flushes.start(to, members(&[1, 2, 3]), Instant::ZERO + Duration::from_secs(1));
        assert_eq!(id, 7);
        assert!(flushes.on_ack(id, NodeId(1), Ok(())).is_none(), "no ack before the point");
        assert!(flushes.on_clock(id, NodeId(1), HlcTimestamp(5)).is_none());
        assert!(flushes.on_clock(id, NodeId(3), HlcTimestamp(9)).is_none());
        assert!(flushes.on_clock(id, NodeId(3), HlcTimestamp(50)).is_none(), "counted once");
        let (at, to_truncate) = flushes.on_clock(id, NodeId(2), HlcTimestamp(7)).expect("all in");
        assert_eq!(at, HlcTimestamp(9), "the latest clock of every member");
        assert_eq!(to_truncate, members(&[1, 2, 3]));
        assert!(flushes.on_ack(id, NodeId(1), Ok(())).is_none());
        assert!(flushes.on_ack(id, NodeId(1), Ok(())).is_none(), "a duplicate is not counted");
        assert!(flushes.on_ack(id, NodeId(9), Ok(())).is_none(), "a stranger is not counted");
        assert!(flushes.on_ack(id, NodeId(2), Ok(())).is_none());
        let (reply_to, result) = flushes.on_ack(id, NodeId(3), Ok(())).expect("finished");
        assert_eq!(reply_to, to);
        assert_eq!(result, Ok(()));
        assert_eq!(flushes.in_flight(), 0);
        assert!(flushes.on_ack(id, NodeId(3), Ok(())).is_none(), "reported once");
    }

    #[test]
    fn a_member_that_fails_fails_the_flush_and_a_late_one_is_named_at_the_deadline() {
        let mut flushes = Flushes::starting_at(0);
        let deadline = Instant::ZERO + Duration::from_millis(500);
        let failing = flushes.start(ReplyTo::Client(1), members(&[1, 2]), deadline);
        let late = flushes.start(ReplyTo::Client(2), members(&[1, 2, 3]), deadline);
        let silent = flushes.start(ReplyTo::Client(3), members(&[1, 2]), deadline);
        for node in [1, 2] {
            flushes.on_clock(failing, NodeId(node), HlcTimestamp(1));
        }
        for node in [1, 2, 3] {
            flushes.on_clock(late, NodeId(node), HlcTimestamp(1));
        }
        flushes.on_clock(silent, NodeId(1), HlcTimestamp(1));
        assert!(flushes.on_ack(failing, NodeId(1), Err("disk full".into())).is_none());
        let (_, result) = flushes.on_ack(failing, NodeId(2), Ok(())).expect("finished");
        assert!(
            matches!(result, Err(ClientError::Storage { reason }) if reason.contains("node 1"))
        );
        flushes.on_ack(late, NodeId(2), Ok(()));
        assert_eq!(flushes.next_deadline(), Some(deadline));
        assert!(flushes.expire(Instant::ZERO + Duration::from_millis(499)).is_empty());
        let expired = flushes.expire(deadline);
        assert_eq!(expired.len(), 2);
        assert_eq!(
            expired[0].1,
            ClientError::FlushIncomplete { acked: 1, members: 3, missing: vec![1, 3] }
        );
        // Stuck reading clocks: nothing was truncated.
        assert_eq!(expired[1].1, ClientError::Unavailable { required: 2, alive: 1 });
        assert_eq!(flushes.next_deadline(), None);
    }
}
