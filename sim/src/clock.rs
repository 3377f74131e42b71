//! Per-node wall clocks: the simulator's monotonic time seen through an offset and a drift.
//!
//! Owns: each node's offset (milliseconds, may be negative) and drift (parts per million).
//! Input: the simulated monotonic `now`; faults that jump a clock forward or backward. Output:
//! the `WallTime` the driver hands the node with `set_wall_clock` before every event.
//!
//! Invariant: a reading never goes below the Unix epoch (offsets saturate at zero); between
//! jumps, a node's readings never decrease (drift is bounded well below one second per second).

use ringkv_core::{Instant, WallTime};

/// The wall time at simulated time zero: 2023-11-14, an arbitrary fixed date.
pub const WALL_BASE_MS: u64 = 1_700_000_000_000;

/// Drift above this many parts per million is refused: a clock running backwards is a jump,
/// not drift.
pub const DRIFT_PPM_MAX: i64 = 100_000;

/// One node's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeClock {
    /// Offset from true time, in milliseconds.
    pub offset_ms: i64,
    /// Rate error, in parts per million (positive runs fast).
    pub drift_ppm: i64,
}

impl NodeClock {
    /// A clock with the given offset and drift.
    pub fn new(offset_ms: i64, drift_ppm: i64) -> Self {
        assert!(drift_ppm.abs() <= DRIFT_PPM_MAX, "drift of {drift_ppm} ppm is a jump, not drift");
        NodeClock { offset_ms, drift_ppm }
    }

    /// What the node's wall clock reads at simulated time `now`.
    pub fn wall(&self, now: Instant) -> WallTime {
        let elapsed_ms = (now.as_nanos() / 1_000_000) as i64;
        let drift_ms = elapsed_ms.saturating_mul(self.drift_ppm) / 1_000_000;
        let reading = (WALL_BASE_MS as i64)
            .saturating_add(elapsed_ms)
            .saturating_add(drift_ms)
            .saturating_add(self.offset_ms);
        WallTime::from_millis(reading.max(0) as u64)
    }

    /// Jumps the clock by `delta_ms` (negative goes back in time).
    pub fn jump(&mut self, delta_ms: i64) {
        self.offset_ms = self.offset_ms.saturating_add(delta_ms);
    }

    /// Resets the clock to true time (an operator fixed NTP).
    pub fn fix(&mut self) {
        *self = NodeClock::default();
    }
}

#[cfg(test)]
mod tests {
    use ringkv_core::Duration;

    use super::*;

    #[test]
    fn offset_and_drift_shift_the_reading_and_a_jump_moves_it() {
        let at_ten_seconds = Instant::ZERO + Duration::from_secs(10);
        assert_eq!(NodeClock::default().wall(at_ten_seconds).as_millis(), WALL_BASE_MS + 10_000);
        let fast = NodeClock::new(250, 1_000);
        assert_eq!(fast.wall(at_ten_seconds).as_millis(), WALL_BASE_MS + 10_000 + 10 + 250);
        let mut clock = NodeClock::default();
        clock.jump(-5_000);
        assert_eq!(clock.wall(at_ten_seconds).as_millis(), WALL_BASE_MS + 5_000);
        clock.fix();
        assert_eq!(clock, NodeClock::default());
    }

    #[test]
    fn a_drifting_clock_never_decreases_between_jumps() {
        let slow = NodeClock::new(-3, -DRIFT_PPM_MAX);
        let mut last = slow.wall(Instant::ZERO);
        for step in 1..2_000u64 {
            let reading = slow.wall(Instant::ZERO + Duration::from_micros(step * 700));
            assert!(reading >= last);
            last = reading;
        }
    }
}
