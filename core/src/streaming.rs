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
//! Invariants: an outgoing stream is either waiting for an ack or ready to send, never both;
//! completed streams are removed.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::ring::Token;
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
    cursor: Option<Bytes>,
    awaiting_ack: bool,
    finished_scan: bool,
}

/// The streaming state of a node.
#[derive(Debug, Default)]
pub struct Streams {
    next_id: u64,
    outgoing: BTreeMap<StreamId, Outgoing>,
    incoming: BTreeMap<StreamId, NodeId>,
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

    /// Starts sending `arcs` to `to` under `stream`.
    pub fn send(&mut self, stream: StreamId, to: NodeId, arcs: Vec<Arc>) {
        self.outgoing.insert(
            stream,
            Outgoing { to, arcs, cursor: None, awaiting_ack: false, finished_scan: false },
        );
    }

    /// Records that this node expects `stream` from `from`.
    pub fn expect(&mut self, stream: StreamId, from: NodeId) {
        self.incoming.insert(stream, from);
    }

    /// Chunks ready to be sent (each stream waits for the ack of its previous chunk).
    pub fn due(&self) -> Vec<ChunkDue> {
        self.outgoing
            .iter()
            .filter(|(_, out)| !out.awaiting_ack && !out.finished_scan)
            .map(|(stream, out)| ChunkDue {
                stream: *stream,
                to: out.to,
                arcs: out.arcs.clone(),
                cursor: out.cursor.clone(),
            })
            .collect()
    }

    /// A chunk of `stream` was sent; `next_cursor` is where the scan goes on, `None` if it was
    /// the last.
    pub fn sent(&mut self, stream: StreamId, next_cursor: Option<Bytes>) {
        if let Some(out) = self.outgoing.get_mut(&stream) {
            out.awaiting_ack = true;
            out.finished_scan = next_cursor.is_none();
            out.cursor = next_cursor;
        }
    }

    /// The receiver acknowledged the last chunk of `stream`. Returns true when the stream is
    /// complete (that was its last chunk).
    pub fn acked(&mut self, stream: StreamId, from: NodeId) -> bool {
        let Some(out) = self.outgoing.get_mut(&stream) else { return false };
        if out.to != from {
            return false;
        }
        out.awaiting_ack = false;
        if out.finished_scan {
            self.outgoing.remove(&stream);
            return true;
        }
        false
    }

    /// The last chunk of an incoming stream arrived and is durable.
    pub fn received_all(&mut self, stream: StreamId) {
        self.incoming.remove(&stream);
    }

    /// Whether `stream` is an incoming stream from `from`.
    pub fn expects(&self, stream: StreamId, from: NodeId) -> bool {
        self.incoming.get(&stream) == Some(&from)
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
            .filter(|(_, from)| **from == peer)
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
        let stream = streams.next_id(NodeId(1));
        streams.send(stream, NodeId(2), vec![Arc { start_exclusive: 10, end_inclusive: 20 }]);
        assert_eq!(streams.due().len(), 1);
        streams.sent(stream, Some(Bytes::from_static(b"k5")));
        assert!(streams.due().is_empty(), "one chunk in flight");
        assert!(!streams.acked(stream, NodeId(3)), "an ack from a stranger is ignored");
        assert!(!streams.acked(stream, NodeId(2)));
        assert_eq!(streams.due()[0].cursor, Some(Bytes::from_static(b"k5")));
        streams.sent(stream, None);
        assert!(streams.acked(stream, NodeId(2)));
        assert_eq!(streams.outgoing_count(), 0);
        streams.check_invariants();
    }

    #[test]
    fn arcs_wrap_around_the_ring() {
        let arc = Arc { start_exclusive: u64::MAX - 1, end_inclusive: 5 };
        assert!(arc.contains(u64::MAX) && arc.contains(0) && arc.contains(5));
        assert!(!arc.contains(6) && !arc.contains(u64::MAX - 1));
    }
}
