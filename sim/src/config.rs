//! What a simulation run is: the cluster, its options, the network, disk, faults, workload,
//! phase lengths and seed; and the builder that assembles it.
//!
//! Owns: [`SimConfig`] (plain data, every field public, defaults for a 5-node N=3 QUORUM
//! cluster under swarm faults) and [`SimBuilder`] (a fluent way to set it and run it).
//! Invariant (checked by [`SimConfig::validate`]): at least one node, replicas fit in the
//! cluster, phases are nonzero, and every bound is positive.

use ringkv_core::{Duration, KeyspaceConfig, NodeConfig};

use crate::disk::DiskConfig;
use crate::faults::FaultConfig;
use crate::network::NetworkConfig;
use crate::schedule::TimedEvent;
use crate::topology::Topology;
use crate::workload::WorkloadConfig;

/// Everything that defines a run. Same config (and code) = same run.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Number of founding nodes; ids are 1..=nodes_count (nodes that join later follow).
    pub nodes_count: usize,
    /// The nodes' configuration; `members` is filled in by the simulator.
    pub node: NodeConfig,
    /// The healthy network's latency.
    pub network: NetworkConfig,
    /// Datacenters, racks and the WAN (see [`crate::topology`]); `None` for one datacenter of
    /// one rack, as every run before topologies.
    pub topology: Option<Topology>,
    /// The disks' sync latency.
    pub disk: DiskConfig,
    /// Which faults to inject.
    pub faults: FaultConfig,
    /// Membership changes and forced faults at fixed times (see [`crate::schedule`]).
    pub schedule: Vec<TimedEvent>,
    /// What the clients do.
    pub workload: WorkloadConfig,
    /// Length of the phase with faults.
    pub safety_duration: Duration,
    /// Length of the phase with faults healed.
    pub liveness_duration: Duration,
    /// Time after healing before liveness is measured.
    pub liveness_warmup: Duration,
    /// Least share of liveness-phase operations that must succeed.
    pub liveness_success_min: f64,
    /// If set, every plain operation invoked this long after the final heal must succeed
    /// (checker `recovery`): how fast a healed cluster serves again.
    pub recovery_bound: Option<Duration>,
    /// How long before the other nodes learn that a node crashed or came back.
    pub failure_detection_delay: Duration,
    /// Whether to run the checkers at the end (benchmarks of the event loop turn them off).
    pub run_checkers: bool,
    /// Whether to keep a readable event log.
    pub trace_log: bool,
    /// Most lines of the event log.
    pub trace_lines_max: usize,
    /// Most events a run processes before it stops and reports that it did not finish.
    pub events_max: u64,
    /// Most events waiting in the queue.
    pub queue_len_max: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        let node = NodeConfig::new(Vec::new());
        SimConfig {
            seed: 0,
            nodes_count: 5,
            node,
            network: NetworkConfig::default(),
            topology: None,
            disk: DiskConfig::default(),
            faults: FaultConfig::swarm(),
            schedule: Vec::new(),
            workload: WorkloadConfig::default(),
            safety_duration: Duration::from_secs(10),
            liveness_duration: Duration::from_secs(8),
            liveness_warmup: Duration::from_secs(5),
            liveness_success_min: 0.99,
            recovery_bound: None,
            failure_detection_delay: Duration::from_millis(200),
            run_checkers: true,
            trace_log: false,
            trace_lines_max: 100_000,
            events_max: 200_000_000,
            queue_len_max: 10_000_000,
        }
    }
}

impl SimConfig {
    /// Checks the invariants of the module doc; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes_count == 0 || self.slots_count() > 64 {
            return Err(format!(
                "{} founding nodes plus {} joining are outside 1..=64",
                self.nodes_count,
                self.slots_count() - self.nodes_count
            ));
        }
        if let Some(topology) = &self.topology {
            self.validate_topology(topology)?;
        } else if !self.node.keyspace.replicas_per_dc.is_empty() {
            return Err("keyspace replicas_per_dc needs a topology".to_string());
        }
        if self.node.keyspace.replicas_n == 0 || self.node.keyspace.replicas_n > self.nodes_count {
            return Err(format!(
                "replicas_n {} does not fit in {} nodes",
                self.node.keyspace.replicas_n, self.nodes_count
            ));
        }
        if self.workload.mix.flush > 0 && self.workload.mix.has_serial() {
            return Err("a mix with flush cannot have serial operations: the linearizability \
                        checker does not model a flush"
                .to_string());
        }
        if self.safety_duration == Duration::ZERO && self.liveness_duration == Duration::ZERO {
            return Err("both phases are empty".to_string());
        }
        // Written so that NaN (which compares false with everything) is refused too.
        let rate_ok = self.workload.ops_per_sec > 0.0 && self.workload.ops_per_sec.is_finite();
        if self.workload.clients_count == 0 || !rate_ok {
            return Err("the workload needs clients and a positive, finite rate".to_string());
        }
        if self.workload.keys_count == 0 || self.events_max == 0 || self.queue_len_max == 0 {
            return Err("keys_count, events_max and queue_len_max must be positive".to_string());
        }
        crate::schedule::validate(
            &self.schedule,
            self.nodes_count,
            self.node.keyspace.replicas_n,
            self.safety_duration,
        )
    }

    fn validate_topology(&self, topology: &Topology) -> Result<(), String> {
        topology.validate()?;
        if topology.founding_count() != self.nodes_count {
            return Err(format!(
                "the topology founds {} nodes but the cluster has {}",
                topology.founding_count(),
                self.nodes_count
            ));
        }
        let joins = crate::schedule::joins_count(&self.schedule);
        if topology.joining_count() != joins {
            return Err(format!(
                "the topology has {} joining nodes but the schedule {joins} joins",
                topology.joining_count()
            ));
        }
        let per_dc = &self.node.keyspace.replicas_per_dc;
        if let Some(name) =
            per_dc.keys().find(|name| !topology.datacenters.iter().any(|dc| &dc.name == *name))
        {
            return Err(format!("replicas_per_dc names {name:?}, not a datacenter"));
        }
        let sum: usize = per_dc.values().sum();
        if !per_dc.is_empty() && sum != self.node.keyspace.replicas_n {
            return Err(format!(
                "replicas {} must be the sum of replicas_per_dc ({sum})",
                self.node.keyspace.replicas_n
            ));
        }
        Ok(())
    }

    /// Every node the run may start: the founding nodes and one per scheduled join.
    pub fn slots_count(&self) -> usize {
        self.nodes_count + crate::schedule::joins_count(&self.schedule)
    }
}

/// Builds and runs a simulation.
///
/// ```
/// use ringkv_sim::{FaultConfig, Simulation};
/// use ringkv_core::Duration;
///
/// let report = Simulation::builder()
///     .seed(7)
///     .nodes(3)
///     .faults(FaultConfig::none())
///     .phases(Duration::from_secs(1), Duration::from_secs(3))
///     .run();
/// assert!(report.violations.is_empty(), "{report}");
/// ```
#[derive(Debug, Clone, Default)]
pub struct SimBuilder {
    config: SimConfig,
}

impl SimBuilder {
    /// A builder holding [`SimConfig::default`].
    pub fn new() -> Self {
        SimBuilder::default()
    }

    /// Starts from an existing config.
    pub fn from_config(config: SimConfig) -> Self {
        SimBuilder { config }
    }

    /// The run's seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// Number of nodes.
    pub fn nodes(mut self, nodes_count: usize) -> Self {
        self.config.nodes_count = nodes_count;
        self
    }

    /// The nodes' configuration (its `members` are replaced by the simulator's).
    pub fn node_config(mut self, node: NodeConfig) -> Self {
        self.config.node = node;
        self
    }

    /// The keyspace options (replicas, conflict mode, tombstone grace).
    pub fn keyspace(mut self, keyspace: KeyspaceConfig) -> Self {
        self.config.node.keyspace = keyspace;
        self
    }

    /// The network's latency.
    pub fn network(mut self, network: NetworkConfig) -> Self {
        self.config.network = network;
        self
    }

    /// Datacenters, racks and the WAN between them.
    pub fn topology(mut self, topology: Topology) -> Self {
        self.config.topology = Some(topology);
        self
    }

    /// The disks' latency.
    pub fn disk(mut self, disk: DiskConfig) -> Self {
        self.config.disk = disk;
        self
    }

    /// The faults.
    pub fn faults(mut self, faults: FaultConfig) -> Self {
        self.config.faults = faults;
        self
    }

    /// Membership changes and forced faults at fixed times.
    pub fn schedule(mut self, schedule: Vec<TimedEvent>) -> Self {
        self.config.schedule = schedule;
        self
    }

    /// The workload.
    pub fn workload(mut self, workload: WorkloadConfig) -> Self {
        self.config.workload = workload;
        self
    }

    /// The lengths of the safety phase (faults on) and the liveness phase (faults healed).
    pub fn phases(mut self, safety: Duration, liveness: Duration) -> Self {
        self.config.safety_duration = safety;
        self.config.liveness_duration = liveness;
        self
    }

    /// Keeps a readable event log in the report.
    pub fn trace_log(mut self, log: bool) -> Self {
        self.config.trace_log = log;
        self
    }

    /// The assembled config.
    pub fn build(self) -> SimConfig {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid_and_bad_ones_are_refused() {
        assert_eq!(SimConfig::default().validate(), Ok(()));
        let too_few = SimBuilder::new().nodes(2).build();
        assert!(too_few.validate().unwrap_err().contains("replicas_n 3"));
        let empty = SimBuilder::new().phases(Duration::ZERO, Duration::ZERO).build();
        assert!(empty.validate().is_err());
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let mut config = SimConfig::default();
            config.workload.ops_per_sec = rate;
            let refused = config.validate().expect_err("a bad rate is refused");
            assert!(refused.contains("positive, finite rate"), "{rate}: {refused}");
        }
        let mut mixed = SimConfig::default();
        mixed.workload.mix.flush = 1;
        mixed.workload.mix.incr = 1;
        assert!(mixed.validate().expect_err("flush with serial ops").contains("flush"));
    }

    #[test]
    fn a_topology_must_match_the_cluster_schedule_and_keyspace() {
        use crate::topology::{DatacenterConfig, Topology};
        let dc = |name: &str, nodes_count: usize| DatacenterConfig {
            name: name.into(),
            racks_count: 2,
            nodes_count,
            joining_count: 0,
        };
        let mut config = SimConfig {
            nodes_count: 6,
            topology: Some(Topology { datacenters: vec![dc("east", 3), dc("west", 3)] }),
            ..SimConfig::default()
        };
        config.node.keyspace.replicas_per_dc = [("east".into(), 2), ("west".into(), 1)].into();
        assert_eq!(config.validate(), Ok(()));
        config.nodes_count = 5;
        assert!(config.validate().unwrap_err().contains("founds 6"));
        config.nodes_count = 6;
        config.node.keyspace.replicas_per_dc.insert("north".into(), 0);
        assert!(config.validate().unwrap_err().contains("north"));
        config.node.keyspace.replicas_per_dc.remove("north");
        config.node.keyspace.replicas_n = 4;
        assert!(config.validate().unwrap_err().contains("sum"));
        config.topology = None;
        assert!(config.validate().unwrap_err().contains("needs a topology"));
    }
}
