//! A hybrid logical clock: wall-clock milliseconds plus a logical counter.
//!
//! Owns: the latest timestamp this node issued or saw. Inputs: the node's wall-clock reading and
//! timestamps seen on messages. Output: timestamps that never go backwards on this node, even
//! when its wall clock jumps back, and that order a causally later event after an earlier one
//! across nodes. Used for last-write-wins, tombstone ages and TTL bookkeeping.
//!
//! Layout: the high 48 bits hold milliseconds since the Unix epoch (good until the year 10889),
//! the low 16 bits a logical counter. When the counter would overflow, the clock borrows one
//! millisecond from the future rather than wrap.

use serde::{Deserialize, Serialize};

use crate::time::WallTime;

const LOGICAL_BITS: u32 = 16;
const LOGICAL_MAX: u64 = (1 << LOGICAL_BITS) - 1;

/// A hybrid-logical-clock timestamp; totally ordered.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct HlcTimestamp(pub u64);

impl HlcTimestamp {
    /// The timestamp of wall time `wall` with logical counter 0.
    pub fn from_wall(wall: WallTime) -> Self {
        HlcTimestamp(wall.as_millis() << LOGICAL_BITS)
    }

    /// The wall-clock part, in milliseconds since the Unix epoch.
    pub fn wall(self) -> WallTime {
        WallTime::from_millis(self.0 >> LOGICAL_BITS)
    }

    /// The logical counter.
    pub fn logical(self) -> u64 {
        self.0 & LOGICAL_MAX
    }
}

/// The clock itself.
#[derive(Debug, Clone, Default)]
pub struct HybridClock {
    last: HlcTimestamp,
}

impl HybridClock {
    /// A clock that has issued nothing yet.
    pub fn new() -> Self {
        HybridClock::default()
    }

    /// A timestamp for a local event at wall time `wall`: above everything issued or seen so far.
    pub fn tick(&mut self, wall: WallTime) -> HlcTimestamp {
        let physical = HlcTimestamp::from_wall(wall);
        let next = if physical > self.last { physical } else { HlcTimestamp(self.last.0 + 1) };
        debug_assert!(next > self.last);
        self.last = next;
        next
    }

    /// Takes in a timestamp seen on a message, so later local events order after it.
    pub fn observe(&mut self, seen: HlcTimestamp) {
        if seen > self.last {
            self.last = seen;
        }
    }

    /// The latest timestamp issued or seen.
    pub fn last(&self) -> HlcTimestamp {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_never_go_backwards_when_the_wall_clock_jumps_back() {
        let mut clock = HybridClock::new();
        let first = clock.tick(WallTime::from_millis(10_000));
        let after_jump = clock.tick(WallTime::from_millis(5_000));
        assert!(after_jump > first);
        assert_eq!(after_jump.wall(), WallTime::from_millis(10_000));
        assert_eq!(after_jump.logical(), 1);
        let later = clock.tick(WallTime::from_millis(20_000));
        assert_eq!(later, HlcTimestamp::from_wall(WallTime::from_millis(20_000)));
    }

    #[test]
    fn observing_a_remote_timestamp_orders_later_events_after_it() {
        let mut clock = HybridClock::new();
        let remote = HlcTimestamp::from_wall(WallTime::from_millis(99_000));
        clock.observe(remote);
        assert!(clock.tick(WallTime::from_millis(1_000)) > remote);
    }
}
