//! The receiving side's memory of forwarded writes, so a duplicated `Forward` message is not
//! coordinated twice.
//!
//! Owns: per (sender, forward id), a digest of the request and its state: in progress, or done
//! with the reply sent. Inputs: forwards received, replies delivered, the passing of time.
//! Output: whether a received forward is new, a duplicate to ignore, or a duplicate whose reply
//! must be sent again.
//!
//! Why: a network that duplicates messages would otherwise make a forwarded write run twice,
//! each run minting its own dot. If a context write replaced the first run's value in between,
//! the second run brings that value back (found by the simulator: resurrection and
//! read-after-write violations).
//!
//! Entries live for `remember_for` (several request timeouts: a duplicate later than that finds
//! its coordinator long gone) and at most `entries_max` are kept; the oldest go first. The digest
//! tells a duplicate from a new request that reuses an id after the sender restarted.
//!
//! Invariants: `by_age` and `entries` hold the same keys.

use std::collections::{BTreeMap, BTreeSet};

use xxhash_rust::xxh3::xxh3_64;

use crate::error::ClientError;
use crate::message::{ClientRequest, ClientResponse, OpId};
use crate::time::{Duration, Instant};
use crate::types::NodeId;

/// What to do with a received forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardCheck {
    /// Not seen: coordinate it.
    New,
    /// Seen and still running: drop the duplicate.
    InProgress,
    /// Seen and finished: send this reply again.
    Done(Result<ClientResponse, ClientError>),
}

#[derive(Debug)]
struct Entry {
    digest: u64,
    received_at: Instant,
    reply: Option<Result<ClientResponse, ClientError>>,
}

/// The memory of recent forwards.
#[derive(Debug)]
pub struct ForwardLog {
    entries: BTreeMap<(NodeId, OpId), Entry>,
    by_age: BTreeSet<(Instant, NodeId, OpId)>,
    remember_for: Duration,
    entries_max: usize,
}

impl ForwardLog {
    /// A log remembering forwards for `remember_for`, at most `entries_max` at once.
    pub fn new(remember_for: Duration, entries_max: usize) -> Self {
        assert!(entries_max > 0, "the log must hold at least one forward");
        ForwardLog { entries: BTreeMap::new(), by_age: BTreeSet::new(), remember_for, entries_max }
    }

    /// Records a received forward and says whether it is new.
    pub fn receive(
        &mut self,
        now: Instant,
        from: NodeId,
        forward: OpId,
        request: &ClientRequest,
    ) -> ForwardCheck {
        self.expire(now);
        let digest = digest(request);
        if let Some(entry) = self.entries.get(&(from, forward)) {
            if entry.digest == digest && !crate::planted!(ForwardDedupOff) {
                return match &entry.reply {
                    Some(reply) => ForwardCheck::Done(reply.clone()),
                    None => ForwardCheck::InProgress,
                };
            }
            // Same id, other request: the sender restarted and reused the id.
            self.remove(from, forward);
        }
        while self.entries.len() >= self.entries_max {
            let Some((_, oldest_from, oldest_forward)) = self.by_age.first().copied() else {
                break;
            };
            self.remove(oldest_from, oldest_forward);
        }
        self.entries.insert((from, forward), Entry { digest, received_at: now, reply: None });
        self.by_age.insert((now, from, forward));
        ForwardCheck::New
    }

    /// Records the reply sent for a forward, for duplicates that arrive later.
    pub fn replied(
        &mut self,
        from: NodeId,
        forward: OpId,
        reply: &Result<ClientResponse, ClientError>,
    ) {
        if let Some(entry) = self.entries.get_mut(&(from, forward)) {
            entry.reply = Some(reply.clone());
        }
    }

    /// Number of forwards remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no forward is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Asserts the invariants of the module doc.
    pub fn check_invariants(&self) {
        assert_eq!(self.entries.len(), self.by_age.len());
        assert!(self.entries.len() <= self.entries_max);
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(received_at, from, forward)) = self.by_age.first() {
            if received_at + self.remember_for > now {
                break;
            }
            self.remove(from, forward);
        }
    }

    fn remove(&mut self, from: NodeId, forward: OpId) {
        if let Some(entry) = self.entries.remove(&(from, forward)) {
            self.by_age.remove(&(entry.received_at, from, forward));
        }
    }
}

fn digest(request: &ClientRequest) -> u64 {
    // Encoding a request of bytes and integers cannot fail; an empty encoding would only make
    // every request look alike, which the id still separates.
    xxh3_64(&postcard::to_allocvec(request).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Consistency;
    use crate::version::Context;
    use bytes::Bytes;

    fn put(value: &'static str) -> ClientRequest {
        ClientRequest::Set {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(value.as_bytes()),
            ttl: None,
            consistency: Consistency::Quorum,
        }
    }

    #[test]
    fn a_duplicate_is_dropped_while_running_and_answered_again_once_done() {
        let mut log = ForwardLog::new(Duration::from_secs(4), 100);
        let now = Instant::ZERO;
        assert_eq!(log.receive(now, NodeId(1), 7, &put("a")), ForwardCheck::New);
        assert_eq!(log.receive(now, NodeId(1), 7, &put("a")), ForwardCheck::InProgress);
        assert_eq!(
            log.receive(now, NodeId(2), 7, &put("a")),
            ForwardCheck::New,
            "ids are per sender"
        );
        let reply = Ok(ClientResponse::Written { context: Context::default() });
        log.replied(NodeId(1), 7, &reply);
        assert_eq!(log.receive(now, NodeId(1), 7, &put("a")), ForwardCheck::Done(reply));
        assert_eq!(
            log.receive(now, NodeId(1), 7, &put("b")),
            ForwardCheck::New,
            "a reused id with another request is new"
        );
        log.check_invariants();
    }

    #[test]
    fn entries_expire_and_the_log_stays_bounded() {
        let mut log = ForwardLog::new(Duration::from_secs(4), 3);
        for forward in 0..10 {
            log.receive(Instant::ZERO, NodeId(1), forward, &put("a"));
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.receive(Instant::ZERO, NodeId(1), 9, &put("a")), ForwardCheck::InProgress);
        assert_eq!(
            log.receive(Instant::ZERO + Duration::from_secs(5), NodeId(1), 9, &put("a")),
            ForwardCheck::New
        );
        assert_eq!(log.len(), 1);
        log.check_invariants();
    }
}
