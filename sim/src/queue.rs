//! The event queue: a min-heap of events ordered by (time, sequence number).
//!
//! Owns: every scheduled event and the sequence counter. Input: `schedule(at, event)`. Output:
//! `pop()` returns the earliest event; events at the same instant come out in the order they were
//! scheduled, so a run never depends on heap internals.
//!
//! The heap holds only the 24-byte keys (time, sequence, slot); events wait in a slab and move
//! once in and once out, where a heap of whole events moved each one (a peer message with its
//! object is hundreds of bytes) at every sift: `pop` was 4.9% of the simulator's samples.
//!
//! Invariants: time never goes backwards (`pop` asserts it); the queue never holds more than
//! `len_max` events (scheduling beyond it is refused and counted, so a runaway feedback loop
//! shows up in the report instead of exhausting memory).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use ringkv_core::Instant;

/// A queue of `E`s ordered by (time, sequence number).
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<Entry>>,
    /// The events, by slot; `None` for a free slot.
    slots: Vec<Option<E>>,
    /// Free slots, reused before the slab grows.
    free: Vec<u32>,
    next_seq: u64,
    last_popped: Instant,
    len_max: usize,
    refused_count: u64,
}

/// One popped event with its time and sequence number.
#[derive(Debug)]
pub struct Scheduled<E> {
    /// When it happens.
    pub at: Instant,
    /// Its position among events scheduled for the same instant.
    pub seq: u64,
    /// The event.
    pub event: E,
}

impl<E> EventQueue<E> {
    /// An empty queue holding at most `len_max` events.
    pub fn new(len_max: usize) -> Self {
        assert!(len_max > 0, "a queue must hold at least one event");
        EventQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
            last_popped: Instant::ZERO,
            len_max,
            refused_count: 0,
        }
    }

    /// Schedules `event` at `at`. Returns false (and counts it) when the queue is full.
    pub fn schedule(&mut self, at: Instant, event: E) -> bool {
        assert!(at >= self.last_popped, "an event was scheduled in the past");
        if self.heap.len() >= self.len_max {
            self.refused_count += 1;
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                u32::try_from(self.slots.len() - 1).expect("the queue holds under 2^32 events")
            }
        };
        self.heap.push(Reverse(Entry { at, seq, slot }));
        true
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<Scheduled<E>> {
        let Reverse(Entry { at, seq, slot }) = self.heap.pop()?;
        let event = self.slots[slot as usize].take().expect("a scheduled slot holds its event");
        self.free.push(slot);
        assert!(at >= self.last_popped, "time went backwards in the event queue");
        self.last_popped = at;
        Some(Scheduled { at, seq, event })
    }

    /// The time of the earliest event.
    pub fn peek_time(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(entry)| entry.at)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Events refused because the queue was full.
    pub fn refused_count(&self) -> u64 {
        self.refused_count
    }
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    seq: u64,
    slot: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_pop_by_time_then_by_scheduling_order() {
        let mut queue = EventQueue::new(10);
        queue.schedule(Instant::from_nanos(5), "late");
        queue.schedule(Instant::from_nanos(1), "first");
        queue.schedule(Instant::from_nanos(1), "second");
        queue.schedule(Instant::from_nanos(3), "middle");
        let order: Vec<&str> = std::iter::from_fn(|| queue.pop().map(|s| s.event)).collect();
        assert_eq!(order, vec!["first", "second", "middle", "late"]);
    }

    #[test]
    fn a_full_queue_refuses_and_counts() {
        let mut queue = EventQueue::new(2);
        assert!(queue.schedule(Instant::ZERO, 1));
        assert!(queue.schedule(Instant::ZERO, 2));
        assert!(!queue.schedule(Instant::ZERO, 3));
        assert_eq!((queue.len(), queue.refused_count()), (2, 1));
    }

    #[test]
    #[should_panic(expected = "scheduled in the past")]
    fn scheduling_in_the_past_is_a_bug() {
        let mut queue = EventQueue::new(4);
        queue.schedule(Instant::from_nanos(10), ());
        queue.pop();
        queue.schedule(Instant::from_nanos(9), ());
    }
}
