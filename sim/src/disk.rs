//! The disk under a simulated node: what the simulator needs beyond the core's `Storage`.
//!
//! Owns: the [`SimDisk`] trait, which any storage the simulator drives implements: make a fresh
//! one from a seed, crash it (drop what was not synced) and make its syncs fail. Today
//! [`MemStorage`] implements it; the LSM engine over `SimFs` (torn writes, bit flips) will
//! implement it too and slot in without touching the runner.
//!
//! [`LsmDisk`] is the real LSM engine (`ringkv-storage`) on `SimFs`: a crash tears unsynced
//! data at sector granularity and the engine recovers from what survived; a failing disk fails
//! every file sync. Background flushes and compactions run as disk events too.
//!
//! Also owns the disk's timing: a sync completes after `sync_latency_base + U(0, jitter)`, which
//! is the window in which a crash lands between a sync request and its completion.

use bytes::Bytes;
use ringkv_core::lsm::{LsmStorage, LsmWork};
use ringkv_core::storage::{MemStorage, Space, Storage, StorageWork, WriteSeq};
use ringkv_core::{Duration, StorageError};
use ringkv_storage::{CrashMode, Options, SimFs};

/// A storage the simulator can create, crash and break.
pub trait SimDisk: Storage + Sized {
    /// A new, empty disk. `seed` drives any random fault the disk injects itself.
    fn fresh(seed: u64) -> Self;

    /// Loses whatever was not synced, as a power cut does.
    fn crash(&mut self);

    /// Makes syncs fail (an I/O error) from now on, or stops doing so.
    fn set_failing(&mut self, failing: bool);

    /// Background work (flushes, compactions) to run after a piece of work finished; the
    /// runner schedules it as another disk event. `None` for disks without any.
    fn poll_background(&mut self) -> Option<Self::Work> {
        None
    }
}

impl SimDisk for MemStorage {
    fn fresh(_seed: u64) -> Self {
        MemStorage::new()
    }

    fn crash(&mut self) {
        MemStorage::crash(self);
    }

    fn set_failing(&mut self, failing: bool) {
        self.fail_syncs(failing);
    }
}

/// Memtable size of [`LsmDisk`]: small, so that simulated runs flush and compact.
pub const LSM_MEMTABLE_BYTES: usize = 64 << 10;

/// The LSM engine on a fault-injecting in-memory filesystem.
#[derive(Debug)]
pub struct LsmDisk {
    fs: SimFs,
    storage: Result<LsmStorage<SimFs>, String>,
}

impl LsmDisk {
    fn open(fs: &SimFs) -> Result<LsmStorage<SimFs>, String> {
        let options = Options {
            memtable_bytes_max: LSM_MEMTABLE_BYTES,
            value_bytes_max: 256 << 20,
            key_bytes_max: 1 << 20,
            ..Options::default()
        };
        LsmStorage::open_with(fs.clone(), options).map_err(|error| error.0)
    }

    /// Bytes the engine wrote by flushing memtables (0 when it is not open).
    pub fn flush_bytes_written(&self) -> u64 {
        self.storage.as_ref().map_or(0, |storage| storage.engine().stats().flush_bytes_written)
    }

    fn storage(&mut self) -> Result<&mut LsmStorage<SimFs>, StorageError> {
        self.storage.as_mut().map_err(|reason| StorageError(format!("recovery failed: {reason}")))
    }
}

impl Storage for LsmDisk {
    type Work = LsmWork<SimFs>;

    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        self.storage()?.get(space, key)
    }

    fn write(
        &mut self,
        space: Space,
        key: Bytes,
        value: Option<Bytes>,
    ) -> Result<WriteSeq, StorageError> {
        self.storage()?.write(space, key, value)
    }

    fn scan(
        &mut self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        self.storage()?.scan(space, after, limit)
    }

    fn durable_seq(&self) -> WriteSeq {
        self.storage.as_ref().map_or(0, |storage| storage.durable_seq())
    }

    fn poll_work(&mut self) -> Option<Self::Work> {
        self.storage.as_mut().ok()?.poll_work()
    }

    fn finish_work(
        &mut self,
        done: <Self::Work as StorageWork>::Done,
    ) -> Result<WriteSeq, StorageError> {
        self.storage()?.finish_work(done)
    }
}

impl SimDisk for LsmDisk {
    fn fresh(seed: u64) -> Self {
        let fs = SimFs::new(seed);
        let storage = LsmDisk::open(&fs);
        LsmDisk { fs, storage }
    }

    fn crash(&mut self) {
        // The engine (and its volatile state) is dropped before the disk forgets unsynced data,
        // as on a power cut; the engine then recovers from what the disk kept.
        self.storage = Err("crashed".to_string());
        self.fs.crash(CrashMode::Torn);
        self.storage = LsmDisk::open(&self.fs);
    }

    fn set_failing(&mut self, failing: bool) {
        self.fs.fail_next_syncs(if failing { u32::MAX } else { 0 });
        // A recovery that ran while the disk was failing failed too; a healthy disk retries it.
        if !failing && self.storage.is_err() {
            self.storage = LsmDisk::open(&self.fs);
        }
    }

    fn poll_background(&mut self) -> Option<Self::Work> {
        self.poll_work()
    }
}

/// How long a sync takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskConfig {
    /// Fixed part of a sync's latency.
    pub sync_latency_base: Duration,
    /// Uniform random part.
    pub sync_latency_jitter: Duration,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            sync_latency_base: Duration::from_micros(200),
            sync_latency_jitter: Duration::from_micros(1_800),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lsm_disk_keeps_synced_writes_across_a_torn_crash() {
        let mut disk = LsmDisk::fresh(3);
        disk.write(Space::Data, Bytes::from_static(b"a"), Some(Bytes::from_static(b"1"))).unwrap();
        let work = disk.poll_work().expect("a write needs a sync");
        disk.finish_work(work.run()).unwrap();
        disk.write(Space::Data, Bytes::from_static(b"b"), Some(Bytes::from_static(b"2"))).unwrap();
        SimDisk::crash(&mut disk);
        assert_eq!(disk.get(Space::Data, b"a").unwrap(), Some(Bytes::from_static(b"1")));
        disk.set_failing(true);
        disk.write(Space::Data, Bytes::from_static(b"c"), Some(Bytes::from_static(b"3"))).unwrap();
        let work = disk.poll_work().expect("a write needs a sync");
        assert!(disk.finish_work(work.run()).is_err(), "a failing disk fails the sync");
    }

    #[test]
    fn background_work_flushes_the_small_memtable() {
        let mut disk = LsmDisk::fresh(4);
        let value = Bytes::from(vec![7u8; 200]);
        for index in 0..2_000u32 {
            let key = Bytes::from(format!("key{index:06}"));
            disk.write(Space::Data, key, Some(value.clone())).unwrap();
            // As the runner does: one piece of work per request, then background work.
            if let Some(work) = disk.poll_work() {
                disk.finish_work(work.run()).unwrap();
            }
            for _ in 0..4 {
                let Some(work) = disk.poll_background() else { break };
                disk.finish_work(work.run()).unwrap();
            }
        }
        assert!(disk.flush_bytes_written() > LSM_MEMTABLE_BYTES as u64);
        assert_eq!(disk.get(Space::Data, b"key000000").unwrap(), Some(value));
    }

    #[test]
    fn a_mem_disk_crash_drops_unsynced_writes_and_a_failing_disk_refuses_syncs() {
        let mut disk = <MemStorage as SimDisk>::fresh(1);
        disk.write(Space::Data, Bytes::from_static(b"a"), Some(Bytes::from_static(b"1"))).unwrap();
        disk.sync().unwrap();
        disk.write(Space::Data, Bytes::from_static(b"b"), Some(Bytes::from_static(b"2"))).unwrap();
        SimDisk::crash(&mut disk);
        assert!(disk.get(Space::Data, b"a").unwrap().is_some());
        assert!(disk.get(Space::Data, b"b").unwrap().is_none());
        disk.set_failing(true);
        disk.write(Space::Data, Bytes::from_static(b"c"), Some(Bytes::from_static(b"3"))).unwrap();
        assert!(disk.sync().is_err());
        disk.set_failing(false);
        SimDisk::crash(&mut disk);
        assert!(disk.sync().is_ok(), "a replaced disk syncs again");
    }
}
