//! The network between nodes: latency, loss, duplication, reordering, partitions and clogging.
//!
//! Owns: the per-link state (blocked or not, the last delivery time for FIFO links) and the
//! per-node clog. Input: a message leaving `from` for `to` at `now`, drawn against the network's
//! own generator. Output: zero (lost or partitioned), one, or two (duplicated) delivery times.
//!
//! Model: a message takes `latency_base + U(0, latency_jitter)` within a datacenter and
//! `U(wan_latency_min, wan_latency_max)` between two (every node is in datacenter 0 until
//! [`Network::set_datacenters`] says otherwise, so a run without a topology draws exactly as
//! before: one draw per message either way). Unless it is picked for
//! reordering (probability `reorder_rate`, which adds up to `reorder_delay_max`), a link is FIFO:
//! a message never overtakes an earlier one on the same link. A clogged node's messages, in and
//! out, take `clog_delay` more. Partitions block directed links, so one-way partitions are
//! expressible; a message already in flight when a partition starts is still delivered (it is
//! on the wire), and one sent across a blocked link is dropped.
//!
//! Invariants: a delivery is never before `now`; at most two deliveries per send.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use ringkv_core::{Duration, Instant};

/// Latency of a healthy network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkConfig {
    /// Fixed part of one-way latency.
    pub latency_base: Duration,
    /// Uniform random part added to every message.
    pub latency_jitter: Duration,
    /// Largest extra delay of a reordered message.
    pub reorder_delay_max: Duration,
    /// Extra delay of messages to or from a clogged node.
    pub clog_delay: Duration,
    /// Least one-way latency between nodes of different datacenters.
    pub wan_latency_min: Duration,
    /// Greatest one-way latency between nodes of different datacenters.
    pub wan_latency_max: Duration,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            latency_base: Duration::from_micros(500),
            latency_jitter: Duration::from_micros(1_500),
            reorder_delay_max: Duration::from_millis(50),
            clog_delay: Duration::from_millis(300),
            wan_latency_min: Duration::from_millis(40),
            wan_latency_max: Duration::from_millis(120),
        }
    }
}

/// How the nodes are split by a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionShape {
    /// Two sides that cannot talk, in either direction.
    Split {
        /// One side; every other node is on the other.
        side: Vec<usize>,
    },
    /// Two sides that cannot talk, except through the bridge node that sees both.
    Bridge {
        /// One side (without the bridge).
        side: Vec<usize>,
        /// The node connected to everyone.
        bridge: usize,
    },
    /// Messages from `from` to everyone else are dropped; the other direction works.
    OneWay {
        /// The node whose messages are lost.
        from: usize,
    },
}

/// The live network state.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    nodes_count: usize,
    blocked: Vec<bool>,
    last_delivery: Vec<Instant>,
    clogged_until: Vec<Instant>,
    /// Each node's datacenter (an index); links between different ones cross the WAN.
    datacenter_of: Vec<usize>,
    loss_rate: f64,
    duplicate_rate: f64,
    reorder_rate: f64,
    rng: ChaCha8Rng,
    /// Messages dropped by loss or partitions.
    pub dropped_count: u64,
    /// Extra copies delivered.
    pub duplicated_count: u64,
}

impl Network {
    /// A healthy network of `nodes_count` nodes drawing from `rng`.
    pub fn new(config: NetworkConfig, nodes_count: usize, rng: ChaCha8Rng) -> Self {
        Network {
            config,
            nodes_count,
            blocked: vec![false; nodes_count * nodes_count],
            last_delivery: vec![Instant::ZERO; nodes_count * nodes_count],
            clogged_until: vec![Instant::ZERO; nodes_count],
            datacenter_of: vec![0; nodes_count],
            loss_rate: 0.0,
            duplicate_rate: 0.0,
            reorder_rate: 0.0,
            rng,
            dropped_count: 0,
            duplicated_count: 0,
        }
    }

    /// Sets the per-message fault rates (probabilities in 0..=1).
    pub fn set_rates(&mut self, loss_rate: f64, duplicate_rate: f64, reorder_rate: f64) {
        assert!([loss_rate, duplicate_rate, reorder_rate].iter().all(|r| (0.0..=1.0).contains(r)));
        self.loss_rate = loss_rate;
        self.duplicate_rate = duplicate_rate;
        self.reorder_rate = reorder_rate;
    }

    /// Places node `i` in datacenter `datacenter_of[i]` (an index; nodes beyond the slice stay
    /// in datacenter 0).
    pub fn set_datacenters(&mut self, datacenter_of: &[usize]) {
        for (node, datacenter) in datacenter_of.iter().enumerate().take(self.nodes_count) {
            self.datacenter_of[node] = *datacenter;
        }
    }

    /// Whether a message from `from` to `to` crosses the WAN.
    pub fn crosses_wan(&self, from: usize, to: usize) -> bool {
        self.datacenter_of[from] != self.datacenter_of[to]
    }

    /// Installs a partition, replacing any previous one.
    pub fn partition(&mut self, shape: &PartitionShape) {
        self.heal_partition();
        let n = self.nodes_count;
        match shape {
            PartitionShape::Split { side } => {
                for from in 0..n {
                    for to in 0..n {
                        self.blocked[from * n + to] = side.contains(&from) != side.contains(&to);
                    }
                }
            }
            PartitionShape::Bridge { side, bridge } => {
                for from in 0..n {
                    for to in 0..n {
                        let crosses = side.contains(&from) != side.contains(&to);
                        let bridged = from == *bridge || to == *bridge;
                        self.blocked[from * n + to] = crosses && !bridged;
                    }
                }
            }
            PartitionShape::OneWay { from } => {
                for to in (0..n).filter(|to| to != from) {
                    self.blocked[from * n + to] = true;
                }
            }
        }
    }

    /// Removes every partition.
    pub fn heal_partition(&mut self) {
        self.blocked.iter_mut().for_each(|blocked| *blocked = false);
    }

    /// Whether messages from `from` to `to` are dropped.
    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked[from * self.nodes_count + to]
    }

    /// Delays every message to or from `node` until `until`.
    pub fn clog(&mut self, node: usize, until: Instant) {
        self.clogged_until[node] = self.clogged_until[node].max(until);
    }

    /// Ends `node`'s clog.
    pub fn unclog(&mut self, node: usize) {
        self.clogged_until[node] = Instant::ZERO;
    }

    /// Ends every clog.
    pub fn unclog_all(&mut self) {
        self.clogged_until.iter_mut().for_each(|until| *until = Instant::ZERO);
    }

    /// The delivery times of a message sent now from `from` to `to`: none, one or two.
    pub fn route(&mut self, now: Instant, from: usize, to: usize) -> [Option<Instant>; 2] {
        if self.is_blocked(from, to) || self.draw(self.loss_rate) {
            self.dropped_count += 1;
            return [None, None];
        }
        let first = self.delivery_time(now, from, to);
        let second = if self.draw(self.duplicate_rate) {
            self.duplicated_count += 1;
            Some(self.delivery_time(now, from, to))
        } else {
            None
        };
        [Some(first), second]
    }

    fn delivery_time(&mut self, now: Instant, from: usize, to: usize) -> Instant {
        let (base, jitter_ns) = if self.crosses_wan(from, to) {
            let min = self.config.wan_latency_min;
            (min, self.config.wan_latency_max.as_nanos().saturating_sub(min.as_nanos()))
        } else {
            (self.config.latency_base, self.config.latency_jitter.as_nanos())
        };
        let jitter = if jitter_ns == 0 { 0 } else { self.rng.random_range(0..=jitter_ns) };
        let mut at = now + base + Duration::from_nanos(jitter);
        if self.clogged_until[from] > now || self.clogged_until[to] > now {
            at += self.config.clog_delay;
        }
        let link = from * self.nodes_count + to;
        if self.draw(self.reorder_rate) {
            let extra_max = self.config.reorder_delay_max.as_nanos();
            at += Duration::from_nanos(self.rng.random_range(0..=extra_max));
        } else {
            at = at.max(self.last_delivery[link]);
            self.last_delivery[link] = at;
        }
        debug_assert!(at >= now);
        at
    }

    fn draw(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.random_bool(rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::child_rng;

    fn network(nodes_count: usize) -> Network {
        Network::new(NetworkConfig::default(), nodes_count, child_rng(1, "net", 0))
    }

    #[test]
    fn a_healthy_link_delivers_once_in_fifo_order_within_the_latency_bounds() {
        let mut net = network(2);
        let mut last = Instant::ZERO;
        for step in 0..1_000u64 {
            let now = Instant::from_nanos(step * 1_000);
            let [first, second] = net.route(now, 0, 1);
            let at = first.expect("a healthy link delivers");
            assert!(second.is_none());
            assert!(at >= last, "FIFO link reordered");
            assert!(at <= now + Duration::from_millis(3));
            last = at;
        }
    }

    #[test]
    fn a_split_blocks_both_directions_and_a_bridge_keeps_its_links() {
        let mut net = network(5);
        net.partition(&PartitionShape::Split { side: vec![0, 1] });
        assert!(net.is_blocked(0, 3) && net.is_blocked(3, 0));
        assert!(!net.is_blocked(0, 1) && !net.is_blocked(2, 4));
        net.partition(&PartitionShape::Bridge { side: vec![0, 1], bridge: 2 });
        assert!(net.is_blocked(0, 3) && !net.is_blocked(0, 2) && !net.is_blocked(2, 4));
        net.partition(&PartitionShape::OneWay { from: 4 });
        assert!(net.is_blocked(4, 0) && !net.is_blocked(0, 4));
        assert_eq!(net.route(Instant::ZERO, 4, 1), [None, None]);
        net.heal_partition();
        assert!(net.route(Instant::ZERO, 4, 1)[0].is_some());
    }

    #[test]
    fn loss_and_duplication_rates_show_in_the_counts() {
        let mut net = network(2);
        net.set_rates(0.2, 0.1, 0.0);
        let sends_count = 10_000;
        for _ in 0..sends_count {
            net.route(Instant::ZERO, 0, 1);
        }
        let dropped = net.dropped_count as f64 / f64::from(sends_count);
        let duplicated = net.duplicated_count as f64 / f64::from(sends_count);
        assert!((0.17..0.23).contains(&dropped), "dropped {dropped}");
        assert!((0.06..0.10).contains(&duplicated), "duplicated {duplicated}");
    }

    #[test]
    fn messages_between_datacenters_take_the_wan_latency_and_local_ones_do_not() {
        let mut net = network(3);
        net.set_datacenters(&[0, 0, 1]);
        let config = NetworkConfig::default();
        for _ in 0..200 {
            let local = net.route(Instant::ZERO, 0, 1)[0].expect("delivered");
            assert!(local <= Instant::ZERO + config.latency_base + config.latency_jitter);
            let far = net.route(Instant::ZERO, 0, 2)[0].expect("delivered");
            assert!(far >= Instant::ZERO + config.wan_latency_min, "{far}");
            let back = net.route(Instant::ZERO, 2, 1)[0].expect("delivered");
            assert!(back >= Instant::ZERO + config.wan_latency_min, "{back}");
        }
    }

    #[test]
    fn a_clogged_node_sees_the_clog_delay() {
        let mut net = network(2);
        net.clog(1, Instant::ZERO + Duration::from_secs(1));
        let at = net.route(Instant::ZERO, 0, 1)[0].expect("clogging delays, it does not drop");
        assert!(at >= Instant::ZERO + NetworkConfig::default().clog_delay);
    }
}
