//! A phi-accrual failure detector (Hayashibara et al.), one window per peer.
//!
//! Owns: per peer, the arrival time of its last heartbeat and a bounded window of the intervals
//! between heartbeats. Inputs: heartbeats (a peer's gossip state advanced) and `now`. Output:
//! `phi(peer, now)`, the suspicion level, and `is_alive` against a threshold.
//!
//! As Cassandra does, the intervals are modelled as exponentially distributed, so
//! `phi = elapsed / mean_interval * log10(e)`: phi 1 means about a 10% chance that the peer is
//! still alive and merely late, phi 8 about 1e-8. Intervals longer than `interval_max` (a peer
//! that was down, or a long partition) are left out of the mean so one outage does not make the
//! detector sluggish afterwards. Until a peer has sent two heartbeats the mean is the expected
//! gossip interval, and the mean never drops below `mean_interval_min`: gossip can deliver
//! several versions of a peer's heartbeat milliseconds apart (learned from different nodes), and
//! those tiny intervals must not make ordinary silence look like a failure (found by the
//! simulator: a node restarted at a heal suspected live peers for seconds).
//!
//! Invariants: each window holds at most `window_len_max` intervals; the running sum equals the
//! sum of the window.

use std::collections::{BTreeMap, VecDeque};

use crate::time::{Duration, Instant};
use crate::types::NodeId;

/// Settings of the detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// Suspicion above which a peer is considered down.
    pub phi_threshold: f64,
    /// Intervals kept per peer.
    pub window_len_max: usize,
    /// The interval assumed before any is measured (the gossip interval).
    pub expected_interval: Duration,
    /// Intervals longer than this are not learned.
    pub interval_max: Duration,
    /// The mean interval is taken to be at least this.
    pub mean_interval_min: Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            phi_threshold: 8.0,
            window_len_max: 1_000,
            expected_interval: Duration::from_secs(1),
            interval_max: Duration::from_secs(10),
            mean_interval_min: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone)]
struct Window {
    last_heartbeat: Instant,
    intervals_ns: VecDeque<u64>,
    sum_ns: u64,
}

/// The detector.
#[derive(Debug, Clone)]
pub struct FailureDetector {
    config: DetectorConfig,
    windows: BTreeMap<NodeId, Window>,
}

impl FailureDetector {
    /// A detector that has heard from nobody.
    pub fn new(config: DetectorConfig) -> Self {
        assert!(config.window_len_max > 0 && config.phi_threshold > 0.0);
        FailureDetector { config, windows: BTreeMap::new() }
    }

    /// Records a heartbeat from `peer` at `now`.
    pub fn heartbeat(&mut self, peer: NodeId, now: Instant) {
        let config = self.config;
        let window = self.windows.entry(peer).or_insert_with(|| Window {
            last_heartbeat: now,
            intervals_ns: VecDeque::new(),
            sum_ns: 0,
        });
        let interval = now.saturating_since(window.last_heartbeat);
        window.last_heartbeat = now;
        if interval == Duration::ZERO || interval > config.interval_max {
            return;
        }
        if window.intervals_ns.len() == config.window_len_max {
            let oldest = window.intervals_ns.pop_front().unwrap_or(0);
            window.sum_ns -= oldest;
        }
        window.intervals_ns.push_back(interval.as_nanos());
        window.sum_ns += interval.as_nanos();
    }

    /// The suspicion that `peer` has failed, at `now`. A peer never heard from is not suspected
    /// (phi 0): the node starts out trusting its configured members.
    pub fn phi(&self, peer: NodeId, now: Instant) -> f64 {
        let Some(window) = self.windows.get(&peer) else { return 0.0 };
        let mean_ns = if window.intervals_ns.is_empty() {
            self.config.expected_interval.as_nanos() as f64
        } else {
            window.sum_ns as f64 / window.intervals_ns.len() as f64
        };
        let mean_ns = mean_ns.max(self.config.mean_interval_min.as_nanos() as f64).max(1.0);
        let elapsed_ns = now.saturating_since(window.last_heartbeat).as_nanos() as f64;
        elapsed_ns / mean_ns * std::f64::consts::LOG10_E
    }

    /// Whether `peer` is believed alive at `now`.
    pub fn is_alive(&self, peer: NodeId, now: Instant) -> bool {
        self.phi(peer, now) <= self.config.phi_threshold
    }

    /// Forgets a peer (it left the cluster).
    pub fn forget(&mut self, peer: NodeId) {
        self.windows.remove(&peer);
    }

    /// Asserts the invariants of the module doc.
    pub fn check_invariants(&self) {
        for window in self.windows.values() {
            assert!(window.intervals_ns.len() <= self.config.window_len_max);
            assert_eq!(window.sum_ns, window.intervals_ns.iter().sum::<u64>());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn a_regular_peer_is_alive_and_becomes_suspected_when_it_goes_silent() {
        let mut detector = FailureDetector::new(DetectorConfig::default());
        for beat in 0..20 {
            detector.heartbeat(NodeId(2), at_ms(beat * 1_000));
        }
        assert!(detector.is_alive(NodeId(2), at_ms(19_500)));
        assert!(detector.phi(NodeId(2), at_ms(20_000)) < 1.0);
        // phi 8 with a 1 s mean is about 18.4 s of silence.
        assert!(detector.is_alive(NodeId(2), at_ms(19_000 + 18_000)));
        assert!(!detector.is_alive(NodeId(2), at_ms(19_000 + 19_000)));
        assert!(detector.is_alive(NodeId(9), at_ms(100_000)), "never heard from: trusted");
        detector.check_invariants();
    }

    #[test]
    fn a_burst_of_heartbeats_learned_at_once_does_not_make_silence_look_like_failure() {
        let mut detector = FailureDetector::new(DetectorConfig::default());
        for beat in 0..5 {
            detector.heartbeat(NodeId(4), at_ms(1_000 + beat * 5));
        }
        assert!(
            detector.is_alive(NodeId(4), at_ms(1_020 + 3_000)),
            "3 s of silence after a burst is not a failure"
        );
        assert!(!detector.is_alive(NodeId(4), at_ms(1_020 + 20_000)));
    }

    #[test]
    fn a_faster_peer_is_suspected_sooner_and_an_outage_is_not_learned() {
        let config = DetectorConfig {
            window_len_max: 8,
            mean_interval_min: Duration::from_millis(50),
            ..DetectorConfig::default()
        };
        let mut detector = FailureDetector::new(config);
        for beat in 0..50 {
            detector.heartbeat(NodeId(3), at_ms(beat * 100));
        }
        assert!(!detector.is_alive(NodeId(3), at_ms(4_900 + 2_000)), "20 missed beats of 100 ms");
        detector.heartbeat(NodeId(3), at_ms(60_000));
        detector.heartbeat(NodeId(3), at_ms(60_100));
        assert!(detector.phi(NodeId(3), at_ms(60_200)) < 1.0, "the 55 s outage skewed the mean");
        detector.check_invariants();
    }
}
