//! The disk under a simulated node: what the simulator needs beyond the core's `Storage`.
//!
//! Owns: the [`SimDisk`] trait, which any storage the simulator drives implements: make a fresh
//! one from a seed, crash it (drop what was not synced) and make its syncs fail. Today
//! [`MemStorage`] implements it; the LSM engine over `SimFs` (torn writes, bit flips) will
//! implement it too and slot in without touching the runner.
//!
//! Also owns the disk's timing: a sync completes after `sync_latency_base + U(0, jitter)`, which
//! is the window in which a crash lands between a sync request and its completion.

use ringkv_core::storage::{MemStorage, Storage};
use ringkv_core::Duration;

/// A storage the simulator can create, crash and break.
pub trait SimDisk: Storage + Sized {
    /// A new, empty disk. `seed` drives any random fault the disk injects itself.
    fn fresh(seed: u64) -> Self;

    /// Loses whatever was not synced, as a power cut does.
    fn crash(&mut self);

    /// Makes syncs fail (an I/O error) from now on, or stops doing so.
    fn set_failing(&mut self, failing: bool);
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
    use bytes::Bytes;
    use ringkv_core::storage::Space;

    use super::*;

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
