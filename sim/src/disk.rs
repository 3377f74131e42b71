//! The disk under a simulated node: what the simulator needs beyond the core's `Storage`.
//!
//! Owns: the [`SimDisk`] trait, which any storage the simulator drives implements: make a fresh
//! one from a seed, crash it (drop what was not synced), make its syncs fail, and (for disks
//! with files) flip bits at rest and fail filesystem operations with EIO. [`MemStorage`] and
//! [`LsmDisk`] implement it.
//!
//! [`LsmDisk`] is the real LSM engine (`ringkv-storage`) on `SimFs`: a crash tears unsynced
//! data at sector granularity and the engine recovers from what survived; a failing disk fails
//! every file sync. Background flushes and compactions run as disk events too. It opens with
//! the core's start-up policy (`LsmStorage::open_or_rebuild`): a disk whose recovery finds
//! corruption, or on which corruption was found while running, is moved aside and rebuilt
//! blank. A recovery that hits an injected I/O error leaves the disk as it is and is retried
//! ([`SimDisk::recover`]).
//!
//! Also owns the disk's timing: a sync completes after `sync_latency_base + U(0, jitter)`, which
//! is the window in which a crash lands between a sync request and its completion.

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use ringkv_core::lsm::{LsmStorage, LsmWork};
use ringkv_core::storage::{MemStorage, Space, Storage, StorageWork, WriteSeq};
use ringkv_core::{Duration, StorageError};
use ringkv_storage::{CrashMode, Options, SimFs, Vfs, VfsFile};

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

    /// Flips one bit at rest in one of the disk's files, picked with `rng`; says where, or
    /// `None` when the disk has no file to damage.
    fn flip_bit(&mut self, _rng: &mut ChaCha8Rng) -> Option<String> {
        None
    }

    /// Makes this fraction of filesystem operations fail with EIO (0 stops it).
    fn set_io_error_rate(&mut self, _rate: f64) {}

    /// Reads everything on the disk so that damage no read has found yet is found now (then
    /// reported by [`SimDisk::failure`]).
    fn scrub(&mut self) {}

    /// Why the node on this disk must be restarted (its engine was poisoned by an I/O error,
    /// or corruption was found while running), if it must.
    fn failure(&self) -> Option<String> {
        None
    }

    /// Called before a start: retries a recovery that failed on an I/O error. False when the
    /// disk still cannot be opened (the runner tries again later).
    fn recover(&mut self) -> bool {
        true
    }

    /// A checkpoint of the disk's store as it is now, on a new disk (not yet opened; `seed`
    /// drives that disk's own faults), for a later restore. `None` for disks without files, or
    /// when the checkpoint failed (an injected I/O error).
    fn checkpoint(&mut self, _seed: u64) -> Option<Self> {
        None
    }

    /// Another handle on the same disk, not yet opened, to retry a start that failed
    /// (`Node::new` consumes the disk it fails on, as a real process exits). `None` for disks
    /// on which a start cannot fail.
    fn spare(&self) -> Option<Self> {
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

/// Memtable size of [`LsmDisk`]: small, so that simulated runs flush and compact. A simulated
/// workload overwrites a small set of keys, which the memtable holds one version each of, so
/// it is mostly frozen by its write-ahead log, at four times this (every 64 KiB written).
pub const LSM_MEMTABLE_BYTES: usize = 16 << 10;

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
        // A rebuild is recorded in the store itself (the meta mark the node reads).
        LsmStorage::open_or_rebuild(fs.clone(), options)
            .map(|(storage, _rebuilt)| storage)
            .map_err(|error| error.0)
    }

    /// The filesystem under the engine, for tests.
    pub fn fs(&self) -> &SimFs {
        &self.fs
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
        // as on a power cut. Recovery runs when the node starts again (`recover`), not now, so
        // damage done to the disk while the machine is down is found by that recovery.
        self.storage = Err("crashed: not recovered yet".to_string());
        self.fs.crash(CrashMode::Torn);
    }

    fn set_failing(&mut self, failing: bool) {
        self.fs.fail_next_syncs(if failing { u32::MAX } else { 0 });
    }

    fn poll_background(&mut self) -> Option<Self::Work> {
        self.poll_work()
    }

    fn flip_bit(&mut self, rng: &mut ChaCha8Rng) -> Option<String> {
        // Tables, and the first record of manifests (the snapshot edit): damage there is always
        // detectable. A flip in the WAL or in a manifest's last edit looks exactly like a torn
        // append in these formats (recovery would stop there without an error), so those are
        // not damaged here; see storage/README.md.
        let names = self.fs.list().ok()?;
        let targets: Vec<&String> = names
            .iter()
            .filter(|name| name.ends_with(".sst") || name.starts_with("MANIFEST-"))
            .filter(|name| !name.starts_with(ringkv_core::lsm::QUARANTINE_PREFIX))
            .collect();
        if targets.is_empty() {
            return None;
        }
        let name = targets[rng.random_range(0..targets.len())].clone();
        let (len, _) = self.fs.file_state(&name)?;
        let span = if name.starts_with("MANIFEST-") {
            // crc u32 | len u32 | payload: the first record's bytes.
            let mut header = [0u8; 8];
            self.fs.open(&name).ok()?.read_at(0, &mut header).ok()?;
            let payload =
                u64::from(u32::from_le_bytes([header[4], header[5], header[6], header[7]]));
            (8 + payload).min(len)
        } else {
            len
        };
        if span == 0 {
            return None;
        }
        let offset = rng.random_range(0..span);
        self.fs.corrupt(&name, offset).ok()?;
        Some(format!("{name} at {offset}"))
    }

    fn set_io_error_rate(&mut self, rate: f64) {
        let ppm = (rate.clamp(0.0, 1.0) * 1e6) as u32;
        self.fs.set_faults(ringkv_storage::FaultConfig {
            read_error_ppm: ppm,
            append_error_ppm: ppm,
            sync_error_ppm: ppm,
            metadata_error_ppm: ppm,
        });
    }

    fn scrub(&mut self) {
        if let Ok(storage) = self.storage.as_mut() {
            // The result is in `failure()`: a damaged table is remembered as corruption.
            let _verified = storage.verify();
        }
    }

    fn failure(&self) -> Option<String> {
        match &self.storage {
            Ok(storage) => storage.failure().map(str::to_string),
            Err(reason) => Some(reason.clone()),
        }
    }

    fn recover(&mut self) -> bool {
        if self.storage.is_err() {
            self.storage = LsmDisk::open(&self.fs);
        }
        self.storage.is_ok()
    }

    fn checkpoint(&mut self, seed: u64) -> Option<Self> {
        let storage = self.storage.as_ref().ok()?;
        let fs = SimFs::new(seed);
        storage.checkpoint(&fs).ok()?;
        Some(LsmDisk { fs, storage: Err("not opened yet".to_string()) })
    }

    fn spare(&self) -> Option<Self> {
        Some(LsmDisk { fs: self.fs.clone(), storage: Err("not opened yet".to_string()) })
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
    use ringkv_core::storage::META_REBUILDING_KEY;

    #[test]
    fn an_lsm_disk_keeps_synced_writes_across_a_torn_crash() {
        let mut disk = LsmDisk::fresh(3);
        disk.write(Space::Data, Bytes::from_static(b"a"), Some(Bytes::from_static(b"1"))).unwrap();
        let work = disk.poll_work().expect("a write needs a sync");
        disk.finish_work(work.run()).unwrap();
        disk.write(Space::Data, Bytes::from_static(b"b"), Some(Bytes::from_static(b"2"))).unwrap();
        SimDisk::crash(&mut disk);
        assert!(disk.recover(), "recovery runs when the node starts");
        assert_eq!(disk.get(Space::Data, b"a").unwrap(), Some(Bytes::from_static(b"1")));
        disk.set_failing(true);
        disk.write(Space::Data, Bytes::from_static(b"c"), Some(Bytes::from_static(b"3"))).unwrap();
        let work = disk.poll_work().expect("a write needs a sync");
        assert!(disk.finish_work(work.run()).is_err(), "a failing disk fails the sync");
    }

    /// An LSM disk with `count` synced keys, work run as the runner does. The values do not
    /// compress, so data blocks fill most of each table, as with the simulator's values: a
    /// flip then mostly lands where a scrub reads (repeated bytes shrank the data blocks under
    /// LZ4 until flips landed mostly in the index and filter, which recovery checks instead).
    fn filled(seed: u64, count: u32) -> LsmDisk {
        let mut disk = LsmDisk::fresh(seed);
        let mut rng = crate::seed::child_rng(seed, "values", 0);
        for index in 0..count {
            let key = Bytes::from(format!("key{index:06}"));
            let value: Vec<u8> = (0..200).map(|_| rng.random()).collect();
            disk.write(Space::Data, key, Some(Bytes::from(value))).unwrap();
            while let Some(work) = disk.poll_work() {
                disk.finish_work(work.run()).unwrap();
            }
        }
        disk
    }

    #[test]
    fn bit_flips_are_found_by_a_scrub_and_the_restart_rebuilds_the_store_blank_and_marked() {
        let mut found = 0;
        for seed in 0..10 {
            let mut disk = filled(20 + seed, 1_000);
            assert!(disk.fs().list().unwrap().iter().any(|name| name.ends_with(".sst")));
            let mut rng = crate::seed::child_rng(seed, "test", 0);
            let flipped = disk.flip_bit(&mut rng).expect("tables to damage");
            assert!(flipped.contains(".sst") || flipped.contains("MANIFEST-"), "{flipped}");
            disk.scrub();
            // A manifest flip is found by the next recovery, a table flip by the scrub.
            let scrubbed = disk.failure().is_some();
            SimDisk::crash(&mut disk);
            assert!(disk.recover());
            let marked = disk.get(Space::Meta, META_REBUILDING_KEY).unwrap().is_some();
            if scrubbed || flipped.contains("MANIFEST-") {
                found += 1;
                assert!(marked, "seed {seed}: {flipped} found but not rebuilt");
                assert_eq!(disk.scan(Space::Data, None, 10).unwrap().len(), 0, "not blank");
            } else {
                assert!(!marked, "seed {seed}: rebuilt without damage found");
            }
        }
        assert!(found >= 8, "only {found} of 10 flips found");
    }

    #[test]
    fn io_errors_poison_the_engine_and_a_failed_recovery_is_retried_on_the_same_data() {
        let mut disk = filled(30, 300);
        disk.set_io_error_rate(1.0);
        disk.write(Space::Data, Bytes::from_static(b"z"), Some(Bytes::from_static(b"1"))).unwrap();
        let work = disk.poll_work().expect("a sync");
        assert!(disk.finish_work(work.run()).is_err());
        let reason = disk.failure().expect("a poisoned engine is a failure");
        assert!(reason.contains("EIO"), "{reason}");
        SimDisk::crash(&mut disk);
        assert!(!disk.recover(), "recovery fails while every operation does");
        let spare = disk.spare().expect("a second handle");
        disk.set_io_error_rate(0.0);
        let mut spare = spare;
        assert!(spare.recover());
        assert!(spare.get(Space::Data, b"key000299").unwrap().is_some(), "the data stayed");
        assert!(spare.get(Space::Meta, META_REBUILDING_KEY).unwrap().is_none());
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
