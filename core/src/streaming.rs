//! Range streaming: moving the keys of token ranges between nodes when one joins or leaves.
//!
//! Owns: outgoing streams (this node sends a range to a peer, chunk by chunk) and incoming
//! streams (this node asked a peer for a range). Inputs: stream starts, chunk acknowledgements,
//! chunks received. Outputs: which chunk to send next, and whether every incoming stream is
//! complete. The node does the scanning, merging and sending.
//!
//! Flow control: one chunk in flight per stream; the receiver acknowledges a chunk once it is
//! durable, then the sender scans on from its cursor. A stream is identified by the node that
//! asked for it (the joining node, or the leaving node for a push) and its id there.
//!
//! Loss (found by the simulator: a lost chunk, ack or request, or a request from a joiner the
//! source had not yet heard of, left a join or a decommission stuck forever): every chunk
//! carries a sequence number, and only the ack of the chunk in flight counts (a duplicated or
//! late ack of an earlier chunk must not move the cursor past a chunk that was lost); a chunk
//! not acknowledged within the retry interval is sent again, rescanned from where it started;
//! and the receiver of a requested stream that makes no progress for the retry interval asks
//! again (the source restarts the stream; merging is idempotent).
//!
//! Invariants: an outgoing stream is either waiting for an ack or ready to send, never both;
//! completed streams are removed.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::ring::Token;
use crate::time::{Duration, Instant};
use crate::types::NodeId;

/// A token arc `(start, end]`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Arc {
    /// Exclusive start.
    pub start_exclusive: Token,
    /// Inclusive end.
    pub end_inclusive: Token,
}

impl Arc {
    /// Whether `token` lies on the arc.
    pub fn contains(&self, token: Token) -> bool {
        if self.start_exclusive < self.end_inclusive {
            token > self.start_exclusive && token <= self.end_inclusive
        } else {
            token > self.start_exclusive || token <= self.end_inclusive
        }
    }
}

/// Identifies a stream: the node that opened it and its id there.
pub type StreamId = (NodeId, u64);

#[derive(Debug, Clone)]
struct Outgoing {
    to: NodeId,
    arcs: Vec<Arc>,
    /// Where the next chunk's scan starts.
    cursor: Option<Bytes>,
    /// Where the chunk in flight started (a retransmission rescans from here).
    chunk_cursor: Option<Bytes>,
    awaiting_ack: bool,
    finished_scan: bool,
    /// The sequence number of the chunk in flight (every transmission gets a new one).
    seq: u64,
    sent_at: Instant,
}

#[derive(Debug, Clone)]
struct Incoming {
    from: NodeId,
    arcs: Vec<Arc>,
    progress_at: Instant,
}

/// The streaming state of a node.
#[derive(Debug, Default)]
pub struct Streams {
    next_id: u64,
    outgoing: BTreeMap<StreamId, Outgoing>,
    incoming: BTreeMap<StreamId, Incoming>,
}

/// An incoming stream that made no progress for the retry interval: ask for it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled {
    /// The stream.
    pub stream: StreamId,
    /// The node it was asked of.
    pub from: NodeId,
    /// The arcs it covers.
    pub arcs: Vec<Arc>,
}

/// What to send next on an outgoing stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkDue {
    /// The stream.
    pub stream: StreamId,
    /// Where it goes.
    pub to: NodeId,
    /// The arcs it covers.
    pub arcs: Vec<Arc>,
    /// Scan from after this key.
    pub cursor: Option<Bytes>,
}

/// A chunk sent on an outgoing stream: its sequence number goes into the message.
pub type ChunkSeq = u64;

impl Streams {
    /// Streams numbered after `first_id` (drawn at random per start, like every id a node
    /// issues, so a late message of a previous incarnation's stream matches nothing).
    pub fn starting_at(first_id: u64) -> Self {
        Streams { next_id: first_id, ..Streams::default() }
    }

    /// A new stream id opened by this node (`me`).
    pub fn next_id(&mut self, me: NodeId) -> StreamId {
        self.next_id += 1;
        (me, self.next_id)
    }

    /// Starts sending `arcs` to `to` under `stream` (from the beginning, also when the stream
    /// was running: its receiver asked again).
    pub fn send(&mut self, stream: StreamId, to: NodeId, arcs: Vec<Arc>) {
        let seq = self.outgoing.get(&stream).map_or(0, |out| out.seq);
        self.outgoing.insert(
            stream,
            Outgoing {
                to,
                arcs,
                cursor: None,
                chunk_cursor: None,
                awaiting_ack: false,
                finished_scan: false,
                seq,
                sent_at: Instant::ZERO,
            },
        );
    }

    /// Records that this node asked `from` for `arcs` under `stream`, at `now`.
    pub fn expect(&mut self, stream: StreamId, from: NodeId, arcs: Vec<Arc>, now: Instant) {
        self.incoming.insert(stream, Incoming { from, arcs, progress_at: now });
    }

    /// Chunks to send at `now`: the next chunk of each stream whose previous one was
    /// acknowledged, and again the chunk in flight of each stream that has waited `retry` for
    /// its ack.
    pub fn due(&self, now: Instant, retry: Duration) -> Vec<ChunkDue> {
        self.outgoing
            .iter()
            .filter_map(|(stream, out)| {
                let cursor = if !out.awaiting_ack && !out.finished_scan {
                    out.cursor.clone()
                } else if out.awaiting_ack && out.sent_at + retry <= now {
                    out.chunk_cursor.clone()
                } else {
                    return None;
                };
                Some(ChunkDue { stream: *stream, to: out.to, arcs: out.arcs.clone(), cursor })
            })
            .collect()
    }

    /// When the earliest chunk in flight is due to be sent again.
    pub fn next_retry(&self, retry: Duration) -> Option<Instant> {
        let outgoing = self.outgoing.values().filter(|out| out.awaiting_ack);
        let resend = outgoing.map(|out| out.sent_at + retry).min();
        let ask_again = self.incoming.values().map(|incoming| incoming.progress_at + retry).min();
        [resend, ask_again].into_iter().flatten().min()
    }

    /// The chunk of `stream` that starts at `cursor` was sent at `now`; `next_cursor` is where
    /// the scan goes on, `None` if it was the last. Returns the chunk's sequence number.
    pub fn sent(
        &mut self,
        stream: StreamId,
        cursor: Option<Bytes>,
        next_cursor: Option<Bytes>,
        now: Instant,
    ) -> ChunkSeq {
        let Some(out) = self.outgoing.get_mut(&stream) else { return 0 };
        out.seq += 1;
        out.sent_at = now;
        out.awaiting_ack = true;
        out.finished_scan = next_cursor.is_none();
        out.chunk_cursor = cursor;
        out.cursor = next_cursor;
        out.seq
    }

    /// The receiver acknowledged chunk `seq` of `stream`. Returns true when the stream is
    /// complete (that was its last chunk). Acks of any other chunk are ignored.
    pub fn acked(&mut self, stream: StreamId, from: NodeId, seq: ChunkSeq) -> bool {
        let Some(out) = self.outgoing.get_mut(&stream) else { return false };
        if out.to != from || !out.awaiting_ack || out.seq != seq {
            return false;
        }
        out.awaiting_ack = false;
        if out.finished_scan {
            self.outgoing.remove(&stream);
            return true;
        }
        false
    }

    /// A chunk of an incoming stream arrived at `now`.
    pub fn progressed(&mut self, stream: StreamId, now: Instant) {
        if let Some(incoming) = self.incoming.get_mut(&stream) {
            incoming.progress_at = incoming.progress_at.max(now);
        }
    }

    /// Incoming streams with no chunk for `retry` by `now`; each is reset to wait again.
    pub fn stalled(&mut self, now: Instant, retry: Duration) -> Vec<Stalled> {
        let mut stalled = Vec::new();
        for (stream, incoming) in &mut self.incoming {
            if incoming.progress_at + retry <= now {
                incoming.progress_at = now;
                stalled.push(Stalled {
                    stream: *stream,
                    from: incoming.from,
                    arcs: incoming.arcs.clone(),
                });
            }
        }
        stalled
    }

    /// The last chunk of an incoming stream arrived and is durable.
    pub fn received_all(&mut self, stream: StreamId) {
        self.incoming.remove(&stream);
    }

    /// Whether `stream` is an incoming stream from `from`.
    pub fn expects(&self, stream: StreamId, from: NodeId) -> bool {
        self.incoming.get(&stream).is_some_and(|incoming| incoming.from == from)
    }

    /// Incoming streams not yet complete.
    pub fn incoming_count(&self) -> usize {
        self.incoming.len()
    }

    /// Outgoing streams not yet complete.
    pub fn outgoing_count(&self) -> usize {
        self.outgoing.len()
    }

    /// Drops every stream to or from `peer` (it failed); returns the incoming ones dropped.
    pub fn abandon(&mut self, peer: NodeId) -> Vec<StreamId> {
        self.outgoing.retain(|_, out| out.to != peer);
        let dropped: Vec<StreamId> = self
            .incoming
            .iter()
            .filter(|(_, incoming)| incoming.from == peer)
            .map(|(stream, _)| *stream)
            .collect();
        for stream in &dropped {
            self.incoming.remove(stream);
        }
        dropped
    }

    /// Asserts the invariants of the module doc.
    pub fn check_invariants(&self) {
        for out in self.outgoing.values() {
            assert!(
                !out.finished_scan || out.awaiting_ack,
                "a finished stream waits for its last ack"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_sends_one_chunk_at_a_time_and_completes_on_the_last_ack() {
        let mut streams = Streams::default();
        let now = Instant::ZERO;
        let retry = Duration::from_secs(1);
        let stream = streams.next_id(NodeId(1));
        streams.send(stream, NodeId(2), vec![Arc { start_exclusive: 10, end_inclusive: 20 }]);
        assert_eq!(streams.due(now, retry).len(), 1);
        let first = streams.sent(stream, None, Some(Bytes::from_static(b"k5")), now);
        assert!(streams.due(now, retry).is_empty(), "one chunk in flight");
        assert!(!streams.acked(stream, NodeId(3), first), "an ack from a stranger is ignored");
        assert!(!streams.acked(stream, NodeId(2), first));
        assert_eq!(streams.due(now, retry)[0].cursor, Some(Bytes::from_static(b"k5")));
        let last = streams.sent(stream, Some(Bytes::from_static(b"k5")), None, now);
        assert!(!streams.acked(stream, NodeId(2), first), "a duplicated earlier ack is ignored");
        assert!(streams.acked(stream, NodeId(2), last));
        assert_eq!(streams.outgoing_count(), 0);
        streams.check_invariants();
    }

    #[test]
    fn an_unacknowledged_chunk_is_sent_again_and_a_silent_incoming_stream_is_asked_again() {
        let mut streams = Streams::default();
        let start = Instant::ZERO;
        let retry = Duration::from_secs(1);
        let stream = streams.next_id(NodeId(1));
        let arcs = vec![Arc { start_exclusive: 10, end_inclusive: 20 }];
        streams.send(stream, NodeId(2), arcs.clone());
        let lost = streams.sent(stream, Some(Bytes::from_static(b"k1")), None, start);
        assert_eq!(streams.next_retry(retry), Some(start + retry));
        assert!(streams.due(start + Duration::from_millis(999), retry).is_empty());
        let again = streams.due(start + retry, retry);
        assert_eq!(again[0].cursor, Some(Bytes::from_static(b"k1")), "rescanned from its start");
        let resent = streams.sent(stream, Some(Bytes::from_static(b"k1")), None, start + retry);
        assert!(!streams.acked(stream, NodeId(2), lost), "the lost chunk's late ack is ignored");
        assert!(streams.acked(stream, NodeId(2), resent));

        let mut joiner = Streams::default();
        let asked = joiner.next_id(NodeId(5));
        joiner.expect(asked, NodeId(2), arcs.clone(), start);
        joiner.progressed(asked, start + Duration::from_millis(500));
        assert!(joiner.stalled(start + retry, retry).is_empty(), "a chunk came 0.5 s ago");
        let stalled = joiner.stalled(start + Duration::from_millis(1_500), retry);
        assert_eq!(stalled, vec![Stalled { stream: asked, from: NodeId(2), arcs }]);
        assert!(joiner.stalled(start + Duration::from_millis(1_600), retry).is_empty());
    }

    #[test]
    fn arcs_wrap_around_the_ring() {
        let arc = Arc { start_exclusive: u64::MAX - 1, end_inclusive: 5 };
        assert!(arc.contains(u64::MAX) && arc.contains(0) && arc.contains(5));
        assert!(!arc.contains(6) && !arc.contains(u64::MAX - 1));
    }
}
