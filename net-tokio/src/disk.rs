//! A node's storage on a real disk: the LSM engine over `StdFs`, with the data directory's lock
//! held for as long as the engine is open (it lives inside the node task, so the lock is released
//! exactly when the engine is dropped, however the node stops).

use bytes::Bytes;
use ringkv_core::lsm::LsmStorage;
use ringkv_core::storage::{Space, Storage, WriteSeq};
use ringkv_core::StorageError;
use ringkv_storage::{DirLock, StdFs};

use crate::driver::StorageHealth;

/// The engine and the lock on its directory.
#[derive(Debug)]
pub struct DiskStorage {
    engine: LsmStorage<StdFs>,
    _lock: DirLock,
}

impl DiskStorage {
    /// Pairs an opened engine with the lock taken on its directory.
    pub fn new(engine: LsmStorage<StdFs>, lock: DirLock) -> Self {
        DiskStorage { engine, _lock: lock }
    }
}

impl StorageHealth for DiskStorage {
    fn failure(&self) -> Option<String> {
        self.engine.failure().map(str::to_string)
    }

    fn scrub(&mut self) -> Result<(), StorageError> {
        self.engine.verify()
    }

    fn snapshot(
        &mut self,
        name: &str,
        node_id: ringkv_core::NodeId,
        taken_at: ringkv_core::time::WallTime,
    ) -> Result<crate::backup::SnapshotManifest, String> {
        let data_dir = self.engine.engine().vfs().root().to_path_buf();
        crate::backup::take_snapshot(&self.engine, &data_dir, name, node_id.0, taken_at)
    }
}

impl Storage for DiskStorage {
    type Work = <LsmStorage<StdFs> as Storage>::Work;

    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        self.engine.get(space, key)
    }

    fn write(
        &mut self,
        space: Space,
        key: Bytes,
        value: Option<Bytes>,
    ) -> Result<WriteSeq, StorageError> {
        self.engine.write(space, key, value)
    }

    fn scan(
        &mut self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        self.engine.scan(space, after, limit)
    }

    fn durable_seq(&self) -> WriteSeq {
        self.engine.durable_seq()
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        self.engine.stats()
    }

    fn poll_work(&mut self) -> Option<Self::Work> {
        self.engine.poll_work()
    }

    fn finish_blocks(
        &self,
        done: &<Self::Work as ringkv_core::storage::StorageWork>::Done,
    ) -> bool {
        self.engine.finish_blocks(done)
    }

    fn finish_work(
        &mut self,
        done: <Self::Work as ringkv_core::storage::StorageWork>::Done,
    ) -> Result<WriteSeq, StorageError> {
        self.engine.finish_work(done)
    }
}
