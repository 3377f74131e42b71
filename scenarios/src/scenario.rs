//! The RON scenario format: what one named scenario asks the simulator for, and how it becomes a
//! [`SimConfig`] for one seed.
//!
//! Owns: [`Scenario`] and its parts (cluster, keyspace, workload, faults, phases, disk and
//! expectations), parsing with errors that name the line, column and field
//! ([`Scenario::parse`]), and the mapping onto the simulator ([`Scenario::sim_config`]).
//! Every struct refuses unknown fields, so a typo is an error rather than a silent default.
//!
//! Invariant: a scenario that parses and passes [`Scenario::validate`] builds a `SimConfig` that
//! passes `SimConfig::validate` for every seed.

use std::path::Path;

use ringkv_core::{ConflictMode, Consistency, Duration, KeyspaceConfig};
use ringkv_sim::{
    DatacenterConfig, FaultConfig, ForcedPartition, KeyDistribution, Knob, OpMix, ScheduledEvent,
    SimConfig, TimedEvent, Topology, WorkloadConfig,
};
use serde::{Deserialize, Serialize};

/// One named scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The scenario's name (the file name without `.ron`, by convention).
    pub name: String,
    /// What the scenario exercises, in a sentence or two.
    #[serde(default)]
    pub description: String,
    /// Cluster size and ring.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// Datacenters and racks; absent for one datacenter of one rack (`cluster.nodes` is then
    /// the node count, else the topology's founding nodes are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<TopologySpec>,
    /// Keyspace options.
    #[serde(default)]
    pub keyspace: KeyspaceSpec,
    /// What the clients do.
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// Which faults to inject.
    #[serde(default)]
    pub faults: FaultSpec,
    /// Membership changes and forced faults at fixed simulated times (beside the swarm).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<TimedEventSpec>,
    /// Phase lengths.
    #[serde(default)]
    pub phases: PhaseSpec,
    /// Which storage the nodes run on.
    #[serde(default)]
    pub disk: DiskKind,
    /// What the checks are expected to find.
    #[serde(default)]
    pub expect: ExpectSpec,
}

/// Cluster size and ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSpec {
    /// Number of nodes.
    pub nodes: usize,
    /// Virtual nodes per node on the ring.
    pub vnodes: u32,
    /// How often each node starts an anti-entropy exchange, in milliseconds.
    pub anti_entropy_ms: u64,
    /// How often each node sweeps its store for purgeable tombstones, in milliseconds.
    pub tombstone_sweep_ms: u64,
    /// Keys per anti-entropy slice (small: every exchange runs in many slices).
    pub anti_entropy_slice_keys: usize,
    /// The pause between two anti-entropy slices, in milliseconds.
    pub anti_entropy_slice_pause_ms: u64,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        let node = ringkv_core::NodeConfig::new(Vec::new());
        ClusterSpec {
            nodes: 5,
            vnodes: 64,
            anti_entropy_ms: node.anti_entropy_interval.as_millis(),
            tombstone_sweep_ms: node.sweep_interval.as_millis(),
            anti_entropy_slice_keys: node.anti_entropy_slice_keys,
            anti_entropy_slice_pause_ms: node.anti_entropy_slice_pause.as_millis(),
        }
    }
}

/// Datacenters, their racks and nodes, and the WAN between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// The datacenters; founding nodes are numbered datacenter by datacenter, then the
    /// joining ones (the k-th scheduled `Join` is the k-th joining node).
    pub datacenters: Vec<DatacenterSpec>,
    /// Least one-way latency between two datacenters, in milliseconds.
    #[serde(default = "wan_latency_min_ms_default")]
    pub wan_latency_min_ms: u64,
    /// Greatest one-way latency between two datacenters, in milliseconds.
    #[serde(default = "wan_latency_max_ms_default")]
    pub wan_latency_max_ms: u64,
}

fn wan_latency_min_ms_default() -> u64 {
    ringkv_sim::NetworkConfig::default().wan_latency_min.as_millis()
}

fn wan_latency_max_ms_default() -> u64 {
    ringkv_sim::NetworkConfig::default().wan_latency_max.as_millis()
}

/// One datacenter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatacenterSpec {
    /// Its name (what `keyspace.replicas_per_dc` names).
    pub name: String,
    /// Racks its nodes spread over, round robin.
    #[serde(default = "one")]
    pub racks: usize,
    /// Founding nodes (0 for a datacenter added by the schedule).
    #[serde(default)]
    pub nodes: usize,
    /// Nodes that join it later, one per scheduled `Join`.
    #[serde(default)]
    pub joining: usize,
}

fn one() -> usize {
    1
}

/// How concurrent writes are reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ConflictSpec {
    /// Dotted version vectors: siblings.
    #[default]
    Dvv,
    /// Last write wins on hybrid-logical-clock timestamps.
    Lww,
}

/// Keyspace options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyspaceSpec {
    /// Replicas per key (N); with `replicas_per_dc`, their sum.
    pub replicas: usize,
    /// Replicas per datacenter (needs a topology); empty for N over the whole cluster.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub replicas_per_dc: std::collections::BTreeMap<String, usize>,
    /// Conflict mode.
    pub conflict: ConflictSpec,
    /// Whether hinted writes count toward W.
    pub sloppy_quorum: bool,
    /// How long a hint is kept, in milliseconds.
    pub hint_window_ms: u64,
    /// How long a tombstone is kept before it may be purged, in milliseconds (and only after
    /// every replica has exchanged since the delete).
    pub tombstone_grace_ms: u64,
}

impl Default for KeyspaceSpec {
    fn default() -> Self {
        KeyspaceSpec {
            replicas: 3,
            replicas_per_dc: Default::default(),
            conflict: ConflictSpec::Dvv,
            sloppy_quorum: false,
            hint_window_ms: 3 * 3_600_000,
            tombstone_grace_ms: KeyspaceConfig::default().tombstone_grace.as_millis(),
        }
    }
}

/// A consistency level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsistencySpec {
    /// One replica.
    One,
    /// Two replicas.
    Two,
    /// Three replicas.
    Three,
    /// A majority of N.
    Quorum,
    /// All N.
    All,
    /// One replica in the coordinator's datacenter.
    LocalOne,
    /// A majority of the replicas in the coordinator's datacenter.
    LocalQuorum,
    /// A majority of the replicas in every datacenter.
    EachQuorum,
}

/// How keys are picked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum DistributionSpec {
    /// Every key equally likely.
    Uniform,
    /// Key i has weight 1 / (i + 1)^exponent.
    Zipfian {
        /// The skew.
        exponent: f64,
    },
    /// Key 0 takes `hot_share` of the operations.
    HotKey {
        /// Share of operations on the hot key.
        hot_share: f64,
    },
}

/// Relative weights of the operation kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixSpec {
    /// Single-key reads.
    pub get: u32,
    /// Blind writes.
    pub put: u32,
    /// Overwrites.
    pub set: u32,
    /// Read then context delete.
    pub delete: u32,
    /// Multi-key reads.
    pub mget: u32,
    /// Multi-key overwrites.
    pub mset: u32,
    /// Read then context write.
    pub read_modify_write: u32,
    /// Serial compare-and-set on the serial keys.
    pub cas: u32,
    /// Serial increments on the serial keys.
    pub incr: u32,
    /// Serial reads of the serial keys.
    pub serial_get: u32,
    /// Serial deletes of the serial keys.
    pub serial_delete: u32,
    /// Cluster-wide flushes (`FLUSHALL`); not together with serial operations.
    pub flush: u32,
}

impl Default for MixSpec {
    fn default() -> Self {
        let mix = OpMix::default();
        MixSpec {
            get: mix.get,
            put: mix.put,
            set: mix.set,
            delete: mix.delete,
            mget: mix.mget,
            mset: mix.mset,
            read_modify_write: mix.read_modify_write,
            cas: mix.cas,
            incr: mix.incr,
            serial_get: mix.serial_get,
            serial_delete: mix.serial_delete,
            flush: mix.flush,
        }
    }
}

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSpec {
    /// Operations per simulated second over all clients.
    pub ops_per_sec: f64,
    /// Number of clients (one operation in flight each).
    pub clients: usize,
    /// Operation mix.
    pub mix: MixSpec,
    /// Number of distinct keys.
    pub keys: usize,
    /// Number of serial keys, used only by the serial operations of the mix.
    pub serial_keys: usize,
    /// How keys are picked.
    pub distribution: DistributionSpec,
    /// Size of every written value, in bytes.
    pub value_bytes: usize,
    /// Read consistency.
    pub read: ConsistencySpec,
    /// Write consistency.
    pub write: ConsistencySpec,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            ops_per_sec: 1_000.0,
            clients: 10,
            mix: MixSpec::default(),
            keys: 100,
            serial_keys: WorkloadConfig::default().serial_keys_count,
            distribution: DistributionSpec::Zipfian { exponent: 1.0 },
            value_bytes: 16,
            read: ConsistencySpec::Quorum,
            write: ConsistencySpec::Quorum,
        }
    }
}

/// One fault knob, as the simulator's [`Knob`], or left to the preset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum KnobSpec {
    /// Whatever the preset says (the default of every knob).
    #[default]
    Preset,
    /// Never.
    Off,
    /// Always this strength.
    Fixed(f64),
    /// Drawn by the seed: off half the time, else uniform in [max / 10, max].
    Swarm(f64),
}

impl KnobSpec {
    /// The simulator's knob: this one, or `preset` when it is left to the preset.
    pub fn knob(self, preset: Knob) -> Knob {
        match self {
            KnobSpec::Preset => preset,
            KnobSpec::Off => Knob::Off,
            KnobSpec::Fixed(value) => Knob::Fixed(value),
            KnobSpec::Swarm(max) => Knob::Swarm(max),
        }
    }
}

/// A simulator knob written as a scenario knob.
pub fn knob_spec(knob: Knob) -> KnobSpec {
    match knob {
        Knob::Off => KnobSpec::Off,
        Knob::Fixed(value) => KnobSpec::Fixed(value),
        Knob::Swarm(max) => KnobSpec::Swarm(max),
    }
}

/// Where unset fault knobs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FaultPreset {
    /// Every knob off.
    #[default]
    None,
    /// The simulator's swarm defaults (`FaultConfig::swarm()`).
    Swarm,
}

/// Which faults to inject: a preset, then per-knob overrides (rates are per simulated second).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSpec {
    /// Where unset knobs come from.
    pub preset: FaultPreset,
    /// Probability that a message is lost.
    pub loss_rate: KnobSpec,
    /// Probability that a message is delivered twice.
    pub duplicate_rate: KnobSpec,
    /// Probability that a message is reordered.
    pub reorder_rate: KnobSpec,
    /// Partitions (split, bridge or one-way, picked by the seed) per second.
    pub partitions_per_sec: KnobSpec,
    /// Crashes per second.
    pub crashes_per_sec: KnobSpec,
    /// Clogs per second.
    pub clogs_per_sec: KnobSpec,
    /// Wall-clock jumps per second.
    pub clock_jumps_per_sec: KnobSpec,
    /// Largest clock jump, milliseconds.
    pub clock_jump_ms_max: KnobSpec,
    /// Largest initial clock offset, milliseconds.
    pub clock_offset_ms_max: KnobSpec,
    /// Largest clock drift, parts per million.
    pub clock_drift_ppm_max: KnobSpec,
    /// Disk failures (syncs fail until the disk is replaced) per second.
    pub disk_failures_per_sec: KnobSpec,
    /// False suspicions per second.
    pub suspicions_per_sec: KnobSpec,
    /// Clean restarts per second.
    pub clean_restarts_per_sec: KnobSpec,
    /// Whether BUGGIFY is armed (nonzero: on).
    pub buggify: KnobSpec,
    /// Power losses per second: every running node crashes at once (LSM disks tear unsynced
    /// data), each restarts after 0.2..3 s.
    pub power_losses_per_sec: KnobSpec,
    /// Bits flipped at rest per second, in a random node's tables or manifest (LSM disks only).
    pub bit_flips_per_sec: KnobSpec,
    /// Probability that a filesystem operation fails with EIO during the safety phase (LSM
    /// disks only).
    pub io_error_rate: KnobSpec,
    /// Snapshot restores per second: a node's store is checkpointed, and 0.5..3 s later the
    /// node restarts on that snapshot, prepared as `ringkv restore` prepares one (LSM disks
    /// only).
    pub restores_per_sec: KnobSpec,
    /// Datacenter partitions per second: one datacenter cut from the others for 1..4 s
    /// (needs a topology of two datacenters or more).
    pub dc_partitions_per_sec: KnobSpec,
    /// Datacenter power losses per second: every running node of one datacenter crashes at
    /// once, each restarts after 0.2..3 s.
    pub dc_power_losses_per_sec: KnobSpec,
    /// Rack losses per second: every node of one rack crashes at once and comes back after
    /// 0.5..3 s; one rack at a time, only while every member runs.
    pub rack_losses_per_sec: KnobSpec,
}

impl FaultSpec {
    /// The simulator's fault config: the preset with every given knob replaced.
    pub fn fault_config(&self) -> FaultConfig {
        let mut config = match self.preset {
            FaultPreset::None => FaultConfig::none(),
            FaultPreset::Swarm => FaultConfig::swarm(),
        };
        let set = |slot: &mut Knob, knob: KnobSpec| *slot = knob.knob(*slot);
        set(&mut config.loss_rate, self.loss_rate);
        set(&mut config.duplicate_rate, self.duplicate_rate);
        set(&mut config.reorder_rate, self.reorder_rate);
        set(&mut config.partitions_per_sec, self.partitions_per_sec);
        set(&mut config.crashes_per_sec, self.crashes_per_sec);
        set(&mut config.clogs_per_sec, self.clogs_per_sec);
        set(&mut config.clock_jumps_per_sec, self.clock_jumps_per_sec);
        set(&mut config.clock_jump_ms_max, self.clock_jump_ms_max);
        set(&mut config.clock_offset_ms_max, self.clock_offset_ms_max);
        set(&mut config.clock_drift_ppm_max, self.clock_drift_ppm_max);
        set(&mut config.disk_failures_per_sec, self.disk_failures_per_sec);
        set(&mut config.suspicions_per_sec, self.suspicions_per_sec);
        set(&mut config.clean_restarts_per_sec, self.clean_restarts_per_sec);
        set(&mut config.buggify, self.buggify);
        set(&mut config.power_losses_per_sec, self.power_losses_per_sec);
        set(&mut config.bit_flips_per_sec, self.bit_flips_per_sec);
        set(&mut config.io_error_rate, self.io_error_rate);
        set(&mut config.restores_per_sec, self.restores_per_sec);
        set(&mut config.dc_partitions_per_sec, self.dc_partitions_per_sec);
        set(&mut config.dc_power_losses_per_sec, self.dc_power_losses_per_sec);
        set(&mut config.rack_losses_per_sec, self.rack_losses_per_sec);
        config
    }

    /// Every knob with its name, in the simulator's drawing order.
    pub fn knobs_mut(&mut self) -> [(&'static str, &mut KnobSpec); 21] {
        [
            ("loss_rate", &mut self.loss_rate),
            ("duplicate_rate", &mut self.duplicate_rate),
            ("reorder_rate", &mut self.reorder_rate),
            ("partitions_per_sec", &mut self.partitions_per_sec),
            ("crashes_per_sec", &mut self.crashes_per_sec),
            ("clogs_per_sec", &mut self.clogs_per_sec),
            ("clock_jumps_per_sec", &mut self.clock_jumps_per_sec),
            ("clock_jump_ms_max", &mut self.clock_jump_ms_max),
            ("clock_offset_ms_max", &mut self.clock_offset_ms_max),
            ("clock_drift_ppm_max", &mut self.clock_drift_ppm_max),
            ("disk_failures_per_sec", &mut self.disk_failures_per_sec),
            ("suspicions_per_sec", &mut self.suspicions_per_sec),
            ("clean_restarts_per_sec", &mut self.clean_restarts_per_sec),
            ("buggify", &mut self.buggify),
            ("power_losses_per_sec", &mut self.power_losses_per_sec),
            ("bit_flips_per_sec", &mut self.bit_flips_per_sec),
            ("io_error_rate", &mut self.io_error_rate),
            ("restores_per_sec", &mut self.restores_per_sec),
            ("dc_partitions_per_sec", &mut self.dc_partitions_per_sec),
            ("dc_power_losses_per_sec", &mut self.dc_power_losses_per_sec),
            ("rack_losses_per_sec", &mut self.rack_losses_per_sec),
        ]
    }
}

/// One event of the timed schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedEventSpec {
    /// Simulated milliseconds since the start (within the safety phase).
    pub at_ms: u64,
    /// What happens.
    pub event: EventSpec,
}

/// A scheduled event. Nodes are named by id (n1 is 1); the k-th `Join` adds node
/// `cluster.nodes + k`, which later events may name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum EventSpec {
    /// A new node joins: it streams the ranges it gains, then owns them.
    Join,
    /// A node streams its ranges out and leaves; it is stopped once every member sees it left.
    Decommission {
        /// The node.
        node: u32,
    },
    /// A node crashes and stays down until `Restart` (or the heal, unless it is removed).
    Crash {
        /// The node.
        node: u32,
    },
    /// A node crashed by the schedule starts again.
    Restart {
        /// The node.
        node: u32,
    },
    /// The operator removes a crashed node; its ranges are rebuilt by anti-entropy.
    Remove {
        /// The node.
        node: u32,
    },
    /// A forced partition, until `Heal` or the phase's heal.
    Partition(PartitionSpec),
    /// Ends the partition in place.
    Heal,
    /// A node's messages take the clog delay until `Unclog` or the phase's heal.
    Clog {
        /// The node.
        node: u32,
    },
    /// Ends a node's clog.
    Unclog {
        /// The node.
        node: u32,
    },
}

/// A forced partition shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum PartitionSpec {
    /// `side` against the rest, both directions (a minority side is a minority/majority split).
    Split {
        /// One side.
        side: Vec<u32>,
    },
    /// `side` against the rest, except through `bridge`, which sees both.
    Bridge {
        /// One side, without the bridge.
        side: Vec<u32>,
        /// The node on both sides.
        bridge: u32,
    },
    /// Messages from `from` to everyone are lost; the other direction works.
    OneWay {
        /// The node whose messages are lost.
        from: u32,
    },
}

impl TimedEventSpec {
    /// The simulator's event.
    pub fn timed_event(&self) -> TimedEvent {
        let event = match &self.event {
            EventSpec::Join => ScheduledEvent::Join,
            EventSpec::Decommission { node } => ScheduledEvent::Decommission { node: *node },
            EventSpec::Crash { node } => ScheduledEvent::Crash { node: *node },
            EventSpec::Restart { node } => ScheduledEvent::Restart { node: *node },
            EventSpec::Remove { node } => ScheduledEvent::Remove { node: *node },
            EventSpec::Partition(shape) => ScheduledEvent::Partition(match shape {
                PartitionSpec::Split { side } => ForcedPartition::Split { side: side.clone() },
                PartitionSpec::Bridge { side, bridge } => {
                    ForcedPartition::Bridge { side: side.clone(), bridge: *bridge }
                }
                PartitionSpec::OneWay { from } => ForcedPartition::OneWay { from: *from },
            }),
            EventSpec::Heal => ScheduledEvent::Heal,
            EventSpec::Clog { node } => ScheduledEvent::Clog { node: *node },
            EventSpec::Unclog { node } => ScheduledEvent::Unclog { node: *node },
        };
        TimedEvent { at: Duration::from_millis(self.at_ms), event }
    }
}

/// Phase lengths, in simulated milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhaseSpec {
    /// The phase with faults.
    pub safety_ms: u64,
    /// The phase with faults healed.
    pub liveness_ms: u64,
}

impl Default for PhaseSpec {
    fn default() -> Self {
        PhaseSpec { safety_ms: 10_000, liveness_ms: 8_000 }
    }
}

/// Which storage the nodes run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DiskKind {
    /// The core's in-memory storage (a crash drops unsynced writes).
    #[default]
    Mem,
    /// The real LSM engine on `SimFs` (torn crashes, flushes and compactions).
    Lsm,
}

/// What the checks are expected to find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ExpectSpec {
    /// Checkers whose violations this scenario expects: they are counted and reported, not
    /// failures (say, `read-after-write` at consistency ONE).
    pub tolerate: Vec<String>,
    /// Count acknowledged writes that a last-write-wins keyspace lost to a write that finished
    /// before they started (a clock-skew artefact, expected under LWW) and report the count.
    pub count_lww_lost_writes: bool,
    /// Every plain operation invoked this many milliseconds after the final heal must succeed
    /// (checker `recovery`); none when absent.
    pub recovery_ms: Option<u64>,
}

/// A scenario that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not a valid scenario; `line` and `column` point at the problem.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// ron's message, which names the field.
        message: String,
    },
    /// The scenario parses but cannot run.
    #[error("{path}: invalid scenario: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Scenario {
    /// Parses RON text; `path` only labels errors.
    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = ron::from_str(text).map_err(|error| ScenarioError::Parse {
            path: path.to_string(),
            line: error.span.start.line,
            column: error.span.start.col,
            message: error.code.to_string(),
        })?;
        scenario
            .validate()
            .map_err(|message| ScenarioError::Invalid { path: path.to_string(), message })?;
        Ok(scenario)
    }

    /// Reads and parses one file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Io { path: label.clone(), source })?;
        Scenario::parse(&text, &label)
    }

    /// The scenario as RON text (with a header comment), as a regression file stores it.
    pub fn to_ron(&self, header: &str) -> String {
        let pretty = ron::ser::PrettyConfig::new().struct_names(true);
        let body = ron::ser::to_string_pretty(self, pretty)
            .unwrap_or_else(|error| format!("// serialization failed: {error}"));
        let comment: String = header.lines().map(|line| format!("// {line}\n")).collect();
        format!("{comment}{body}\n")
    }

    /// Checks what the simulator would refuse, plus names in `expect`.
    pub fn validate(&self) -> Result<(), String> {
        let config = self.sim_config(0);
        config.validate()?;
        if let Some(topology) = &self.topology {
            if topology.wan_latency_min_ms > topology.wan_latency_max_ms {
                return Err("topology.wan_latency_min_ms exceeds wan_latency_max_ms".to_string());
            }
        }
        if self.cluster.vnodes == 0 {
            return Err("cluster.vnodes must be positive".to_string());
        }
        if self.cluster.tombstone_sweep_ms == 0 {
            return Err("cluster.tombstone_sweep_ms must be positive".to_string());
        }
        let mut faults = self.faults;
        for (name, knob) in faults.knobs_mut() {
            if let KnobSpec::Fixed(value) | KnobSpec::Swarm(value) = *knob {
                // NaN compares false with everything, so it is tested for by name.
                if !value.is_finite() || value < 0.0 {
                    return Err(format!("faults.{name} must be a finite number >= 0, got {value}"));
                }
            }
        }
        for name in &self.expect.tolerate {
            if !CHECKER_NAMES.contains(&name.as_str()) {
                return Err(format!(
                    "expect.tolerate names an unknown checker {name:?} (known: {})",
                    CHECKER_NAMES.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The simulator's config for `seed`.
    pub fn sim_config(&self, seed: u64) -> SimConfig {
        let mut config = SimConfig { seed, ..SimConfig::default() };
        config.nodes_count = self.cluster.nodes;
        config.node.vnodes_per_node = self.cluster.vnodes;
        config.node.keyspace = KeyspaceConfig {
            replicas_n: self.keyspace.replicas,
            conflict_mode: match self.keyspace.conflict {
                ConflictSpec::Dvv => ConflictMode::DottedVersionVectors,
                ConflictSpec::Lww => ConflictMode::LastWriteWins,
            },
            sloppy_quorum: self.keyspace.sloppy_quorum,
            hint_window: Duration::from_millis(self.keyspace.hint_window_ms),
            tombstone_grace: Duration::from_millis(self.keyspace.tombstone_grace_ms),
            replicas_per_dc: self.keyspace.replicas_per_dc.clone(),
        };
        if let Some(topology) = &self.topology {
            let datacenters = topology
                .datacenters
                .iter()
                .map(|dc| DatacenterConfig {
                    name: dc.name.clone(),
                    racks_count: dc.racks,
                    nodes_count: dc.nodes,
                    joining_count: dc.joining,
                })
                .collect();
            let topology_config = Topology { datacenters };
            config.nodes_count = topology_config.founding_count();
            config.topology = Some(topology_config);
            config.network.wan_latency_min = Duration::from_millis(topology.wan_latency_min_ms);
            config.network.wan_latency_max = Duration::from_millis(topology.wan_latency_max_ms);
        }
        config.node.anti_entropy_interval = Duration::from_millis(self.cluster.anti_entropy_ms);
        config.node.sweep_interval = Duration::from_millis(self.cluster.tombstone_sweep_ms);
        config.node.anti_entropy_slice_keys = self.cluster.anti_entropy_slice_keys;
        config.node.anti_entropy_slice_pause =
            Duration::from_millis(self.cluster.anti_entropy_slice_pause_ms);
        config.faults = self.faults.fault_config();
        config.schedule = self.schedule.iter().map(TimedEventSpec::timed_event).collect();
        config.workload = self.workload_config();
        config.safety_duration = Duration::from_millis(self.phases.safety_ms);
        config.liveness_duration = Duration::from_millis(self.phases.liveness_ms);
        config.recovery_bound = self.expect.recovery_ms.map(Duration::from_millis);
        config
    }

    fn workload_config(&self) -> WorkloadConfig {
        let spec = &self.workload;
        let mix = spec.mix;
        WorkloadConfig {
            clients_count: spec.clients,
            ops_per_sec: spec.ops_per_sec,
            mix: OpMix {
                get: mix.get,
                put: mix.put,
                set: mix.set,
                delete: mix.delete,
                mget: mix.mget,
                mset: mix.mset,
                read_modify_write: mix.read_modify_write,
                cas: mix.cas,
                incr: mix.incr,
                serial_get: mix.serial_get,
                serial_delete: mix.serial_delete,
                flush: mix.flush,
            },
            keys_count: spec.keys,
            key_distribution: match spec.distribution {
                DistributionSpec::Uniform => KeyDistribution::Uniform,
                DistributionSpec::Zipfian { exponent } => KeyDistribution::Zipfian { exponent },
                DistributionSpec::HotKey { hot_share } => KeyDistribution::HotKey { hot_share },
            },
            value_bytes: spec.value_bytes,
            serial_keys_count: spec.serial_keys,
            read_consistency: consistency(spec.read),
            write_consistency: consistency(spec.write),
            ..WorkloadConfig::default()
        }
    }
}

/// The simulator's checker names (and the runner's own `runner` and `panic`).
pub const CHECKER_NAMES: [&str; 14] = [
    "values-written",
    "lost-writes",
    "read-after-write",
    "resurrection",
    "convergence",
    "liveness",
    "bounds",
    "membership",
    "hints",
    "flush",
    "recovery",
    "placement",
    "runner",
    "panic",
];

fn consistency(spec: ConsistencySpec) -> Consistency {
    match spec {
        ConsistencySpec::One => Consistency::One,
        ConsistencySpec::Two => Consistency::Two,
        ConsistencySpec::Three => Consistency::Three,
        ConsistencySpec::Quorum => Consistency::Quorum,
        ConsistencySpec::All => Consistency::All,
        ConsistencySpec::LocalOne => Consistency::LocalOne,
        ConsistencySpec::LocalQuorum => Consistency::LocalQuorum,
        ConsistencySpec::EachQuorum => Consistency::EachQuorum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_scenario_takes_the_documented_defaults() {
        let scenario = Scenario::parse(r#"Scenario(name: "tiny")"#, "tiny.ron").unwrap();
        assert_eq!(scenario.cluster, ClusterSpec::default());
        assert_eq!((scenario.cluster.nodes, scenario.cluster.vnodes), (5, 64));
        assert_eq!(scenario.faults.fault_config(), FaultConfig::none());
        let config = scenario.sim_config(9);
        assert_eq!(config.seed, 9);
        assert_eq!(config.node.keyspace.replicas_n, 3);
        assert_eq!(config.safety_duration, Duration::from_secs(10));
    }

    #[test]
    fn an_unknown_field_is_an_error_naming_the_line_and_the_field() {
        let text = "Scenario(\n  name: \"x\",\n  workload: (clients: 3, opz_per_sec: 5.0),\n)";
        let error = Scenario::parse(text, "bad.ron").unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("bad.ron:3:"), "{message}");
        assert!(message.contains("opz_per_sec"), "{message}");
    }

    #[test]
    fn overrides_replace_only_their_knob_of_the_preset() {
        let text = r#"Scenario(name: "x", faults: (preset: Swarm, loss_rate: Fixed(0.2)))"#;
        let config = Scenario::parse(text, "x.ron").unwrap().faults.fault_config();
        assert_eq!(config.loss_rate, Knob::Fixed(0.2));
        assert_eq!(config.crashes_per_sec, FaultConfig::swarm().crashes_per_sec);
    }

    #[test]
    fn an_impossible_cluster_or_unknown_checker_is_invalid() {
        let text = r#"Scenario(name: "x", cluster: (nodes: 2), keyspace: (replicas: 3))"#;
        assert!(matches!(Scenario::parse(text, "x"), Err(ScenarioError::Invalid { .. })));
        let text = r#"Scenario(name: "x", expect: (tolerate: ["lost-write"]))"#;
        let message = Scenario::parse(text, "x").unwrap_err().to_string();
        assert!(message.contains("lost-write"), "{message}");
    }

    #[test]
    fn a_timed_schedule_parses_into_the_simulator_events_and_bad_ones_name_line_or_event() {
        let text = r#"Scenario(name: "s", schedule: [
            (at_ms: 1000, event: Join),
            (at_ms: 2000, event: Decommission(node: 6)),
            (at_ms: 3000, event: Crash(node: 2)),
            (at_ms: 3500, event: Partition(Split(side: [1, 3]))),
            (at_ms: 3600, event: Partition(Bridge(side: [1], bridge: 3))),
            (at_ms: 3700, event: Partition(OneWay(from: 4))),
            (at_ms: 3800, event: Heal),
            (at_ms: 3900, event: Clog(node: 5)),
            (at_ms: 4000, event: Unclog(node: 5)),
            (at_ms: 5000, event: Remove(node: 2)),
        ])"#;
        let scenario = Scenario::parse(text, "s.ron").unwrap();
        let config = scenario.sim_config(0);
        assert_eq!(config.slots_count(), 6);
        assert_eq!(config.schedule[1].event, ScheduledEvent::Decommission { node: 6 });
        assert_eq!(config.schedule[1].at, Duration::from_millis(2_000));
        let again = Scenario::parse(&scenario.to_ron("round trip"), "again").unwrap();
        assert_eq!(scenario, again);

        let typo = "Scenario(\n  name: \"s\",\n  schedule: [(at_ms: 5, event: Crash(nod: 1))],\n)";
        let message = Scenario::parse(typo, "t.ron").unwrap_err().to_string();
        assert!(message.starts_with("t.ron:3:"), "{message}");
        assert!(message.contains("nod"), "{message}");
        let unknown = r#"Scenario(name: "s", schedule: [(at_ms: 5, event: Remove(node: 9))])"#;
        let message = Scenario::parse(unknown, "u.ron").unwrap_err().to_string();
        assert!(message.contains("schedule[0]") && message.contains("n9"), "{message}");
    }

    #[test]
    fn the_commented_example_in_the_readme_parses_and_runs_its_schedule() {
        let readme = std::fs::read_to_string(crate::library::library_dir().join("README.md"));
        let readme = readme.expect("scenarios/README.md");
        let start = readme.find("```ron\n").expect("a ron block") + "```ron\n".len();
        let end = start + readme[start..].find("```").expect("the block ends");
        let scenario = Scenario::parse(&readme[start..end], "README.md").unwrap();
        let config = scenario.sim_config(0);
        assert_eq!(config.schedule.len(), 12);
        assert_eq!(config.slots_count(), 6);
    }

    #[test]
    fn a_scenario_round_trips_through_its_ron_text() {
        let text = r#"Scenario(name: "x", disk: Lsm, faults: (crashes_per_sec: Swarm(0.5)),
            workload: (distribution: HotKey(hot_share: 0.5), read: One))"#;
        let scenario = Scenario::parse(text, "x").unwrap();
        let again = Scenario::parse(&scenario.to_ron("header\nline two"), "again").unwrap();
        assert_eq!(scenario, again);
    }
}
