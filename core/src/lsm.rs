//! The node's [`Storage`] on the LSM engine of `ringkv-storage`.
//!
//! Each node space is an engine keyspace (`data`, `hints`, `meta`). Writes go to the engine's
//! WAL buffer and memtable. [`Storage::poll_work`] hands out the engine's group-commit sync
//! first, then its flushes and compactions, each with a clone of the filesystem handle so it
//! can run on another thread. An engine poisoned by a failed fsync refuses writes with the
//! reason.

use std::ops::Bound;

use bytes::Bytes;
use ringkv_storage::{Engine, Job, JobResult, KeyspaceId, Options, SyncJob, SyncResult, Vfs};

use crate::error::StorageError;
use crate::storage::{Space, Storage, StorageWork, WriteSeq};

/// A WAL sync or a flush/compaction, with the filesystem it runs on.
#[derive(Debug)]
pub enum LsmWork<V: Vfs> {
    /// A group-commit sync.
    Sync(SyncJob, V),
    /// A flush or compaction.
    Job(Job, V),
}

/// What an [`LsmWork`] produced.
#[derive(Debug)]
pub enum LsmDone {
    /// A sync's outcome.
    Sync(SyncResult),
    /// A flush's or compaction's outcome.
    Job(JobResult),
}

impl<V: Vfs> StorageWork for LsmWork<V> {
    type Done = LsmDone;

    fn run(self) -> LsmDone {
        match self {
            LsmWork::Sync(job, vfs) => LsmDone::Sync(job.run(&vfs)),
            LsmWork::Job(job, vfs) => LsmDone::Job(job.run(&vfs)),
        }
    }
}

/// Node storage on the LSM engine over filesystem `V` (`StdFs` or `SimFs`).
#[derive(Debug)]
pub struct LsmStorage<V: Vfs> {
    engine: Engine<V>,
    spaces: [KeyspaceId; 3],
}

impl<V: Vfs + Clone> LsmStorage<V> {
    /// Opens (recovering) or creates the node's storage on `vfs`.
    pub fn open(vfs: V) -> Result<Self, StorageError> {
        // Stored objects carry every sibling and a clock, so the engine's own value limit sits
        // well above the client limit; the node enforces the client limit before writing.
        let options =
            Options { value_bytes_max: 256 << 20, key_bytes_max: 1 << 20, ..Options::default() };
        Self::open_with(vfs, options)
    }

    /// Opens with explicit engine options (tests use small memtables to force flushes).
    pub fn open_with(vfs: V, options: Options) -> Result<Self, StorageError> {
        let mut engine = Engine::open(vfs, options).map_err(storage_error)?;
        let mut spaces = [KeyspaceId(0); 3];
        for (slot, space) in spaces.iter_mut().zip(Space::ALL) {
            let name = space_name(space);
            *slot = match engine.keyspace(name) {
                Some(id) => id,
                None => engine.create_keyspace(name).map_err(storage_error)?,
            };
        }
        Ok(LsmStorage { engine, spaces })
    }

    /// The engine, for statistics and tests.
    pub fn engine(&self) -> &Engine<V> {
        &self.engine
    }

    /// Gives the engine back (a simulated crash drops it and reopens the filesystem).
    pub fn into_engine(self) -> Engine<V> {
        self.engine
    }

    fn id(&self, space: Space) -> KeyspaceId {
        self.spaces[Space::ALL.iter().position(|candidate| *candidate == space).unwrap_or(0)]
    }
}

impl<V: Vfs + Clone> Storage for LsmStorage<V> {
    type Work = LsmWork<V>;

    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        self.engine.get(self.id(space), key).map_err(storage_error)
    }

    fn write(
        &mut self,
        space: Space,
        key: Bytes,
        value: Option<Bytes>,
    ) -> Result<WriteSeq, StorageError> {
        let id = self.id(space);
        match value {
            Some(value) => self.engine.put(id, &key, &value),
            None => self.engine.delete(id, &key),
        }
        .map_err(storage_error)
    }

    fn scan(
        &mut self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let scan = self
            .engine
            .scan::<&[u8]>(self.id(space), (start, Bound::Unbounded), None)
            .map_err(storage_error)?;
        scan.take(limit)
            .map(|entry| entry.map(|entry| (entry.key, entry.value)).map_err(storage_error))
            .collect()
    }

    fn durable_seq(&self) -> WriteSeq {
        self.engine.durable_seq()
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        let stats = self.engine.stats();
        vec![
            ("storage_flushes_total", stats.flushes),
            ("storage_compactions_total", stats.compactions),
            ("storage_user_bytes_written_total", stats.user_bytes_written),
            ("storage_wal_bytes_written_total", stats.wal_bytes_written),
            ("storage_flush_bytes_written_total", stats.flush_bytes_written),
            ("storage_compaction_bytes_written_total", stats.compaction_bytes_written),
            ("storage_compaction_bytes_read_total", stats.compaction_bytes_read),
            ("storage_block_cache_hits_total", stats.cache_hits),
            ("storage_block_cache_misses_total", stats.cache_misses),
        ]
    }

    fn poll_work(&mut self) -> Option<LsmWork<V>> {
        if let Some(job) = self.engine.poll_sync() {
            return Some(LsmWork::Sync(job, self.engine.vfs().clone()));
        }
        self.engine.poll_job().map(|job| LsmWork::Job(job, self.engine.vfs().clone()))
    }

    fn finish_work(&mut self, done: LsmDone) -> Result<WriteSeq, StorageError> {
        match done {
            LsmDone::Sync(result) => self.engine.synced(result).map_err(storage_error),
            LsmDone::Job(result) => {
                self.engine.finish(result).map_err(storage_error)?;
                Ok(self.engine.durable_seq())
            }
        }
    }
}

fn space_name(space: Space) -> &'static str {
    match space {
        Space::Data => "data",
        Space::Hints => "hints",
        Space::Meta => "meta",
    }
}

fn storage_error(error: ringkv_storage::Error) -> StorageError {
    StorageError(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv_storage::SimFs;

    #[test]
    fn synced_writes_survive_a_crash_and_unsynced_ones_may_not() {
        let fs = SimFs::new(7);
        let mut storage = LsmStorage::open(fs.clone()).unwrap();
        storage
            .write(Space::Data, Bytes::from_static(b"a"), Some(Bytes::from_static(b"1")))
            .unwrap();
        storage
            .write(Space::Meta, Bytes::from_static(b"epoch"), Some(Bytes::from_static(b"2")))
            .unwrap();
        let durable = storage.sync().unwrap();
        assert_eq!(storage.durable_seq(), durable);
        storage
            .write(Space::Data, Bytes::from_static(b"b"), Some(Bytes::from_static(b"2")))
            .unwrap();
        drop(storage);
        fs.crash(ringkv_storage::CrashMode::DropUnsynced);
        let mut reopened = LsmStorage::open(fs).unwrap();
        assert_eq!(reopened.get(Space::Data, b"a").unwrap(), Some(Bytes::from_static(b"1")));
        assert_eq!(reopened.get(Space::Meta, b"epoch").unwrap(), Some(Bytes::from_static(b"2")));
        assert_eq!(reopened.get(Space::Data, b"b").unwrap(), None);
        assert_eq!(reopened.scan(Space::Data, None, 10).unwrap().len(), 1);
        assert!(reopened.scan(Space::Hints, None, 10).unwrap().is_empty());
    }
}
