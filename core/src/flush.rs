//! Cluster-wide truncation (Redis `FLUSHALL`/`FLUSHDB`): the coordinator's side.
//!
//! Contract. Owns: the flushes this node coordinates, each with the members that have not yet
//! acknowledged and a deadline. Inputs: a flush started (with the members it must reach),
//! acknowledgements from members (this node's own included), the passing of time. Outputs: the
//! finished flushes, each with its reply target and result. It sends nothing itself: the node
//! sends the `Truncate` messages and truncates its own store.
//!
//! Why truncation rather than deletes: a delete writes a replicated tombstone per key that must
//! outlive the tombstone grace; a truncation point does not. Every member removes its stored
//! objects, hints and Paxos state, and records the flush's hybrid-clock timestamp; from then on
//! it drops any incoming sibling written at or before it (a late hint, a replica that missed
//! the flush, anti-entropy from a slow peer), so nothing older than the flush comes back.
//!
//! Invariants: a flush is reported once; a member is counted once however many acks it sends.

use std::collections::{BTreeMap, BTreeSet};

use crate::coordinator::ReplyTo;
use crate::error::ClientError;
use crate::time::Instant;
use crate::types::NodeId;

#[derive(Debug)]
struct Flush {
    reply_to: ReplyTo,
    waiting: BTreeSet<NodeId>,
    members: usize,
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
    /// acknowledgement of its previous life for one of its new flushes.
    pub fn starting_at(first_id: u64) -> Self {
        Flushes { next_id: first_id, running: BTreeMap::new() }
    }

    /// Starts a flush that `members` must acknowledge by `deadline`; returns its id.
    pub fn start(
        &mut self,
        reply_to: ReplyTo,
        members: BTreeSet<NodeId>,
        deadline: Instant,
    ) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let members_count = members.len();
        self.running.insert(
            id,
            Flush { reply_to, waiting: members, members: members_count, deadline, failure: None },
        );
        id
    }

    /// Records `from`'s acknowledgement of flush `id` (`Err` with its storage's reason when it
    /// could not truncate). Returns the reply when the flush is finished.
    pub fn on_ack(
        &mut self,
        id: u64,
        from: NodeId,
        result: Result<(), String>,
    ) -> Option<(ReplyTo, Result<(), ClientError>)> {
        let flush = self.running.get_mut(&id)?;
        if !flush.waiting.remove(&from) {
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

    /// The flushes whose deadline has passed at `now`, failed with the members still missing.
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
                let error = ClientError::FlushIncomplete {
                    acked: flush.members - flush.waiting.len(),
                    members: flush.members,
                    missing: flush.waiting.iter().map(|node| node.0).collect(),
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
        assert!(flushes.on_ack(failing, NodeId(1), Err("disk full".into())).is_none());
        let (_, result) = flushes.on_ack(failing, NodeId(2), Ok(())).expect("finished");
        assert!(
            matches!(result, Err(ClientError::Storage { reason }) if reason.contains("node 1"))
        );
        flushes.on_ack(late, NodeId(2), Ok(()));
        assert_eq!(flushes.next_deadline(), Some(deadline));
        assert!(flushes.expire(Instant::ZERO + Duration::from_millis(499)).is_empty());
        let expired = flushes.expire(deadline);
        assert_eq!(expired.len(), 1);
        assert_eq!(
            expired[0].1,
            ClientError::FlushIncomplete { acked: 1, members: 3, missing: vec![1, 3] }
        );
        assert_eq!(flushes.next_deadline(), None);
    }
}
