//! End-to-end: the checkers catch a bug planted under the cluster.
//!
//! `AmnesiacDisk` loses every data key on a crash but keeps the node's metadata and marks the
//! shutdown as clean, so the node restarts with an empty data space and its old epoch: it then
//! reissues dots it already used (Riak's kv679): replicas whose clocks already cover a reissued
//! dot drop the new write, and a wiped replica answers reads with nothing. The safety checkers
//! must see it (seeds 2 and 4 of 0..6 report read-after-write: acknowledged writes missing from
//! later quorum reads); the same scenario on an honest disk passes.

use bytes::Bytes;
use ringkv_core::storage::{MemStorage, Space, Storage, StorageWork, WriteSeq};
use ringkv_core::{Duration, StorageError};
use ringkv_sim::{
    FaultConfig, Knob, OpMix, SimBuilder, SimConfig, SimDisk, Simulation, WorkloadConfig,
};

/// The key under which the node records a clean shutdown (`core/src/node.rs`).
const CLEAN_SHUTDOWN_KEY: &[u8] = b"clean-shutdown";

#[derive(Debug)]
struct AmnesiacDisk(MemStorage);

impl Storage for AmnesiacDisk {
    type Work = <MemStorage as Storage>::Work;

    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        self.0.get(space, key)
    }

    fn write(
        &mut self,
        space: Space,
        key: Bytes,
        value: Option<Bytes>,
    ) -> Result<WriteSeq, StorageError> {
        self.0.write(space, key, value)
    }

    fn scan(
        &mut self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        self.0.scan(space, after, limit)
    }

    fn durable_seq(&self) -> WriteSeq {
        self.0.durable_seq()
    }

    fn poll_work(&mut self) -> Option<Self::Work> {
        self.0.poll_work()
    }

    fn finish_work(
        &mut self,
        done: <Self::Work as StorageWork>::Done,
    ) -> Result<WriteSeq, StorageError> {
        self.0.finish_work(done)
    }
}

impl SimDisk for AmnesiacDisk {
    fn fresh(_seed: u64) -> Self {
        AmnesiacDisk(MemStorage::new())
    }

    fn crash(&mut self) {
        self.0.crash();
        let keys = self.0.scan(Space::Data, None, usize::MAX).expect("memory does not fail");
        for (key, _) in keys {
            self.0.write(Space::Data, key, None).expect("memory does not fail");
        }
        let clean = Some(Bytes::from_static(b"1"));
        self.0.write(Space::Meta, Bytes::from_static(CLEAN_SHUTDOWN_KEY), clean).expect("memory");
        self.0.sync().expect("memory does not fail");
    }

    fn set_failing(&mut self, failing: bool) {
        self.0.fail_syncs(failing);
    }
}

fn scenario(seed: u64) -> SimConfig {
    let faults = FaultConfig { crashes_per_sec: Knob::Fixed(1.0), ..FaultConfig::none() };
    let mix = OpMix {
        get: 30,
        put: 20,
        set: 30,
        delete: 0,
        mget: 0,
        mset: 0,
        read_modify_write: 20,
        ..OpMix::default()
    };
    let workload = WorkloadConfig { keys_count: 5, mix, ..WorkloadConfig::default() };
    Simulation::builder()
        .seed(seed)
        .faults(faults)
        .workload(workload)
        .phases(Duration::from_secs(4), Duration::from_secs(6))
        .build()
}

#[test]
fn a_disk_that_forgets_data_but_keeps_the_epoch_is_caught_by_the_safety_checkers() {
    let caught: Vec<u64> = (0..6)
        .filter(|seed| {
            let report = SimBuilder::from_config(scenario(*seed)).run_with_disk::<AmnesiacDisk>();
            let safety = ["lost-writes", "read-after-write", "resurrection", "values-written"];
            report.violations.iter().any(|violation| safety.contains(&violation.checker))
        })
        .collect();
    assert!(caught.len() >= 2, "only seeds {caught:?} of 0..6 caught the amnesiac disk");
}

#[test]
fn the_same_scenario_on_an_honest_disk_passes() {
    for seed in 0..3 {
        let report = Simulation::run(&scenario(seed));
        assert!(report.stats.crashes > 0);
        assert!(report.is_ok(), "{report}");
    }
}
