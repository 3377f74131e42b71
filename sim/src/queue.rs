//! The event queue: a min-queue of events ordered by (time, sequence number).
//!
//! Owns: every scheduled event and the sequence counter. Input: `schedule(at, event)`. Output:
//! `pop()` returns the earliest event; events at the same instant come out in the order they were
//! scheduled, so a run never depends on the queue's internals.
//!
//! Each event is named by one 128-bit key, (time, sequence, slot) packed so that comparing keys
//! compares (time, sequence): keys are unique, and the slot (where the event waits in a slab,
//! moved once in and once out) never decides an order. The keys sit in a radix heap, which
//! needs only that no key pushed is below the last one popped, true here because time never
//! goes backwards and sequence numbers only grow. A binary heap of (time, sequence, slot)
//! entries spent about 6% of the simulator's samples in `pop`, sifting through cache misses;
//! the radix heap touches a key only when it moves to a lower bucket (at most 128 times over
//! its life, a few times in practice) and finds each minimum in a small bucket.
//!
//! Invariants: time never goes backwards (`pop` asserts it); the queue never holds more than
//! `len_max` events (scheduling beyond it is refused and counted, so a runaway feedback loop
//! shows up in the report instead of exhausting memory).

use ringkv_core::Instant;

/// Buckets of the radix heap: bucket 0 holds the key equal to the last one popped (the next to
/// pop, once found), bucket `b` the keys whose highest bit differing from it is bit `b - 1`.
const BUCKETS_COUNT: usize = 129;

/// A queue of `E`s ordered by (time, sequence number).
#[derive(Debug)]
pub struct EventQueue<E> {
    /// The radix heap's buckets of keys (see [`BUCKETS_COUNT`]).
    buckets: Vec<Vec<u128>>,
    /// Bit `b - 1` is set when bucket `b` (1 to 128) holds a key.
    occupied: u128,
    /// The key the buckets are relative to: the last one popped (or found as the next).
    last_key: u128,
    /// Keys in the buckets.
    len: usize,
    /// The events, by slot; `None` for a free slot.
    slots: Vec<Option<E>>,
    /// Free slots, reused before the slab grows.
    free: Vec<u32>,
    /// Low bits of a key's lower half that hold its slot (enough for `len_max` slots).
    slot_bits: u32,
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
        // Slots never outnumber `len_max`: the slab grows only when every slot is taken.
        let slot_bits = usize::BITS - (len_max - 1).leading_zeros();
        assert!(slot_bits <= 32, "the queue holds under 2^32 events");
        EventQueue {
            buckets: (0..BUCKETS_COUNT).map(|_| Vec::new()).collect(),
            occupied: 0,
            last_key: 0,
            len: 0,
            slots: Vec::new(),
            free: Vec::new(),
            slot_bits,
            next_seq: 0,
            last_popped: Instant::ZERO,
            len_max,
            refused_count: 0,
        }
    }

    /// Schedules `event` at `at`. Returns false (and counts it) when the queue is full.
    pub fn schedule(&mut self, at: Instant, event: E) -> bool {
        assert!(at >= self.last_popped, "an event was scheduled in the past");
        if self.len >= self.len_max {
            self.refused_count += 1;
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        assert!(
            seq < 1 << (64 - self.slot_bits),
            "more events scheduled than a key's sequence field counts"
        );
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
        let low = seq << self.slot_bits | u64::from(slot);
        // Above `last_key`: a later time, or the same time and a later sequence number.
        self.push_key(u128::from(at.as_nanos()) << 64 | u128::from(low));
        self.len += 1;
        true
    }

    fn push_key(&mut self, key: u128) {
        let bucket = (128 - (key ^ self.last_key).leading_zeros()) as usize;
        if bucket > 0 {
            self.occupied |= 1 << (bucket - 1);
        }
        self.buckets[bucket].push(key);
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<Scheduled<E>> {
        if self.len == 0 {
            return None;
        }
        if self.buckets[0].is_empty() {
            // The lowest occupied bucket holds the minimum: it becomes `last_key`, and every
            // other key of that bucket moves to a lower one (it now agrees with `last_key` on
            // more high bits).
            let bucket = self.occupied.trailing_zeros() as usize + 1;
            self.occupied &= !(1 << (bucket - 1));
            let mut keys = std::mem::take(&mut self.buckets[bucket]);
            self.last_key = *keys.iter().min().expect("an occupied bucket holds a key");
            for key in keys.drain(..) {
                self.push_key(key);
            }
            // Keep the bucket's allocation for the keys that will land in it again.
            self.buckets[bucket] = keys;
        }
        let key = self.buckets[0].pop().expect("bucket 0 holds the minimum");
        self.len -= 1;
        let at = Instant::from_nanos((key >> 64) as u64);
        let low = key as u64;
        let slot = (low & ((1 << self.slot_bits) - 1)) as u32;
        let seq = low >> self.slot_bits;
        let event = self.slots[slot as usize].take().expect("a scheduled slot holds its event");
        self.free.push(slot);
        assert!(at >= self.last_popped, "time went backwards in the event queue");
        self.last_popped = at;
        Some(Scheduled { at, seq, event })
    }

    /// The time of the earliest event (a scan of one bucket: `pop` is the fast path).
    pub fn peek_time(&self) -> Option<Instant> {
        let bucket = if self.buckets[0].is_empty() {
            if self.occupied == 0 {
                return None;
            }
            self.occupied.trailing_zeros() as usize + 1
        } else {
            0
        };
        let key = self.buckets[bucket].iter().min()?;
        Some(Instant::from_nanos((key >> 64) as u64))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Events refused because the queue was full.
    pub fn refused_count(&self) -> u64 {
        self.refused_count
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
    fn pops_follow_time_then_sequence_under_interleaved_schedules() {
        // Against a sorted reference, with many ties and pops between schedules.
        let mut queue = EventQueue::new(1 << 20);
        let mut reference: Vec<(u64, u64)> = Vec::new();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut now = 0u64;
        let mut popped = Vec::new();
        let mut expected = Vec::new();
        for step in 0..20_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let schedules = state % 3;
            for extra in 0..schedules {
                let delay = match (state >> 8) % 4 {
                    0 => 0,
                    1 => (state >> 16) % 8,
                    2 => (state >> 16) % 1_000_000,
                    _ => (state >> 16) % (1 << 40),
                };
                let id = step * 4 + extra;
                queue.schedule(Instant::from_nanos(now + delay), id);
                reference.push((now + delay, id));
            }
            if state % 5 < 3 {
                if let Some(event) = queue.pop() {
                    now = event.at.as_nanos();
                    popped.push((now, event.event));
                    reference.sort_unstable_by(|a, b| b.cmp(a));
                    expected.push(reference.pop().expect("the reference holds it too"));
                }
            }
            assert_eq!(queue.len(), reference.len());
        }
        while let Some(event) = queue.pop() {
            popped.push((event.at.as_nanos(), event.event));
        }
        reference.sort_unstable();
        expected.extend(reference);
        assert_eq!(popped, expected);
        assert!(queue.is_empty() && queue.peek_time().is_none());
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
