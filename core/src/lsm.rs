//! The node's [`Storage`] on the LSM engine of `ringkv-storage`.
//!
//! Each node space is an engine keyspace (`data`, `hints`, `meta`). Writes go to the engine's
//! WAL buffer and memtable. [`Storage::poll_work`] hands out the engine's group-commit sync
//! first, then its flushes and compactions, each with a clone of the filesystem handle so it
//! can run on another thread. An engine poisoned by a failed fsync refuses writes with the
//! reason.
//!
//! Damaged disks: a checksum mismatch found while running (a read, a scan, a compaction's input)
//! fails that operation, is remembered ([`LsmStorage::corruption`]) and is written to the
//! `CORRUPT` marker file. [`LsmStorage::open_or_rebuild`] is the start-up policy: a disk whose
//! recovery finds corruption (manifest, table) or that carries the marker has every file moved
//! aside (renamed `quarantine-<round>-<name>`, which the engine ignores, for the operator to
//! inspect and delete) and starts blank, with [`META_REBUILDING_KEY`] recording why. I/O errors
//! and newer formats are not corruption: they fail the start and the data stays where it is.

use std::ops::Bound;

use bytes::Bytes;
use ringkv_storage::{
    CheckpointInfo, Engine, Job, JobResult, KeyspaceId, Options, SyncJob, SyncResult, Vfs, VfsFile,
};

use crate::error::StorageError;
use crate::storage::{Space, Storage, StorageWork, WriteSeq, META_REBUILDING_KEY};

/// The file recording that corruption was found while running: the next start rebuilds.
pub const CORRUPT_MARKER_FILE: &str = "CORRUPT";

/// Prefix of the files a rebuild moved aside (`quarantine-<round>-<name>`).
pub const QUARANTINE_PREFIX: &str = "quarantine-";

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
    /// The first checksum mismatch found while running.
    corruption: Option<String>,
}

impl<V: Vfs + Clone> LsmStorage<V> {
    /// Opens (recovering) or creates the node's storage on `vfs`.
    pub fn open(vfs: V) -> Result<Self, StorageError> {
        Self::open_with(vfs, Self::node_options())
    }

    /// The engine options a node's storage uses ([`LsmStorage::open`]; a driver passes them to
    /// [`LsmStorage::open_or_rebuild`]).
    pub fn node_options() -> Options {
        // Stored objects carry every sibling and a clock, so the engine's own value limit sits
        // well above the client limit; the node enforces the client limit before writing.
        Options { value_bytes_max: 256 << 20, key_bytes_max: 1 << 20, ..Options::default() }
    }

    /// Opens with explicit engine options (tests use small memtables to force flushes).
    pub fn open_with(vfs: V, options: Options) -> Result<Self, StorageError> {
        Self::open_engine(vfs, options).map_err(storage_error)
    }

    fn open_engine(vfs: V, options: Options) -> Result<Self, ringkv_storage::Error> {
        let mut engine = Engine::open(vfs, options)?;
        let mut spaces = [KeyspaceId(0); 3];
        for (slot, space) in spaces.iter_mut().zip(Space::ALL) {
            let name = space_name(space);
            *slot = match engine.keyspace(name) {
                Some(id) => id,
                None => engine.create_keyspace(name)?,
            };
        }
        Ok(LsmStorage { engine, spaces, corruption: None })
    }

    /// Opens the node's storage, rebuilding a corrupt disk: when recovery finds a checksum
    /// mismatch, or the `CORRUPT` marker says one was found while running, every file is moved
    /// aside and the store starts blank, durably marked [`META_REBUILDING_KEY`] (the node then
    /// draws a new epoch and waits for anti-entropy before it answers reads). Returns the reason
    /// when it rebuilt. Other failures (I/O errors, a newer format) are returned as errors and
    /// touch nothing: a transient error must never cost a disk its data.
    pub fn open_or_rebuild(
        vfs: V,
        options: Options,
    ) -> Result<(Self, Option<String>), StorageError> {
        let io = |what: &str, error: std::io::Error| StorageError(format!("{what}: {error}"));
        let names = vfs.list().map_err(|error| io("list", error))?;
        let reason = if names.iter().any(|name| name == CORRUPT_MARKER_FILE) {
            let file = vfs.open(CORRUPT_MARKER_FILE).map_err(|error| io("open marker", error))?;
            let text =
                ringkv_storage::vfs::read_all(&file).map_err(|error| io("read marker", error))?;
            String::from_utf8_lossy(&text).into_owned()
        } else {
            match Self::open_engine(vfs.clone(), options.clone()) {
                Ok(storage) => return Ok((storage, None)),
                Err(error) if error.is_corruption() => {
                    let reason = format!("recovery failed: {error}");
                    // The marker first: a rebuild cut short by a crash or an I/O error resumes
                    // at the next start instead of finding a half-emptied directory.
                    write_marker(&vfs, &reason).map_err(|error| io("write marker", error))?;
                    reason
                }
                Err(error) => return Err(storage_error(error)),
            }
        };
        let round = quarantine_round(&names);
        let damaged = names.iter().filter(|name| is_engine_file(name));
        for name in damaged {
            vfs.rename(name, &format!("{QUARANTINE_PREFIX}{round}-{name}"))
                .map_err(|error| io("quarantine", error))?;
        }
        vfs.sync_dir().map_err(|error| io("sync_dir", error))?;
        let mut storage = Self::open_engine(vfs.clone(), options).map_err(storage_error)?;
        storage.write(
            Space::Meta,
            Bytes::from_static(META_REBUILDING_KEY),
            Some(Bytes::from(reason.clone())),
        )?;
        // The mark is durable before the marker goes: a crash in between rebuilds again (a
        // blank store, harmless), never starts as a fresh node that answers reads.
        storage.sync()?;
        vfs.rename(
            CORRUPT_MARKER_FILE,
            &format!("{QUARANTINE_PREFIX}{round}-{CORRUPT_MARKER_FILE}"),
        )
        .and_then(|()| vfs.sync_dir())
        .map_err(|error| io("quarantine marker", error))?;
        Ok((storage, Some(reason)))
    }

    /// Reads every block of every table from the disk (past the block cache), so that damage
    /// is found (and remembered as [`LsmStorage::corruption`]) now rather than by a client's
    /// read: an operator's verify, a scrub.
    pub fn verify(&mut self) -> Result<(), StorageError> {
        match self.engine.verify_tables() {
            Ok(_entries) => Ok(()),
            Err(error) => Err(self.note(error)),
        }
    }

    /// The first checksum mismatch found while running, if any: the driver should restart the
    /// node, and [`LsmStorage::open_or_rebuild`] will rebuild it.
    pub fn corruption(&self) -> Option<&str> {
        self.corruption.as_deref()
    }

    /// Why this storage needs its node restarted: corruption found, or a failure that poisoned
    /// the engine (a failed fsync, write or job).
    pub fn failure(&self) -> Option<&str> {
        self.corruption().or_else(|| self.engine.poisoned())
    }

    /// Remembers a checksum mismatch and records it in the marker file (best effort: a disk
    /// that cannot write the marker is found corrupt again by the next read of the damage).
    fn note(&mut self, error: ringkv_storage::Error) -> StorageError {
        if error.is_corruption() && self.corruption.is_none() {
            let reason = format!("corruption found while running: {error}");
            let _marked = write_marker(self.engine.vfs(), &reason);
            self.corruption = Some(reason);
        }
        storage_error(error)
    }

    /// Writes a point-in-time, crash-consistent checkpoint of the store into `dest`, an empty
    /// directory (see `ringkv_storage::Engine::checkpoint`): a snapshot an operator can back
    /// up and later restore with [`crate::restore::prepare_restored`].
    pub fn checkpoint(&self, dest: &V) -> Result<CheckpointInfo, StorageError> {
        self.engine.checkpoint(dest).map_err(storage_error)
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
        let id = self.id(space);
        self.engine.get(id, key).map_err(|error| self.note(error))
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
        let id = self.id(space);
        let scanned: Result<Vec<(Bytes, Bytes)>, ringkv_storage::Error> =
            match self.engine.scan::<&[u8]>(id, (start, Bound::Unbounded), None) {
                Ok(scan) => scan
                    .take(limit)
                    .map(|entry| entry.map(|entry| (entry.key, entry.value)))
                    .collect(),
                Err(error) => Err(error),
            };
        scanned.map_err(|error| self.note(error))
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

    fn finish_blocks(&self, done: &LsmDone) -> bool {
        // Installing a flush or compaction appends to the manifest and syncs it (5-23 ms seen
        // under a write load on a shared disk); a WAL sync's result only moves counters.
        matches!(done, LsmDone::Job(_))
    }

    fn finish_work(&mut self, done: LsmDone) -> Result<WriteSeq, StorageError> {
        match done {
            LsmDone::Sync(result) => self.engine.synced(result).map_err(storage_error),
            LsmDone::Job(result) => {
                if let Some(error) = result.error().filter(|error| error.is_corruption()) {
                    // A compaction read a damaged table: note it before the engine turns the
                    // error into a poisoning reason.
                    let _error = self.note(error.duplicate());
                }
                self.engine.finish(result).map_err(storage_error)?;
                Ok(self.engine.durable_seq())
            }
        }
    }
}

/// Records why the store must be rebuilt, durably, unless a marker is there already.
fn write_marker<V: Vfs>(vfs: &V, reason: &str) -> std::io::Result<()> {
    if vfs.list()?.iter().any(|name| name == CORRUPT_MARKER_FILE) {
        return Ok(());
    }
    let mut file = vfs.create(CORRUPT_MARKER_FILE)?;
    file.append(reason.as_bytes())?;
    file.sync()?;
    vfs.sync_dir()
}

/// Whether the engine wrote `name` (tables, WALs, manifests, `CURRENT`): what a rebuild moves
/// aside. The driver's `LOCK` stays (moving it would let a second process lock the directory),
/// and so do files the engine ignores.
fn is_engine_file(name: &str) -> bool {
    !name.starts_with(QUARANTINE_PREFIX)
        && (name.starts_with("CURRENT")
            || name.starts_with("MANIFEST-")
            || name.ends_with(".sst")
            || name.ends_with(".wal"))
}

/// The next quarantine round: one above any round already in the directory.
fn quarantine_round(names: &[String]) -> u64 {
    names
        .iter()
        .filter_map(|name| name.strip_prefix(QUARANTINE_PREFIX))
        .filter_map(|rest| rest.split_once('-').and_then(|(round, _)| round.parse::<u64>().ok()))
        .max()
        .map_or(1, |round| round + 1)
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

    fn small() -> Options {
        Options { memtable_bytes_max: 4 << 10, ..Options::default() }
    }

    /// A store with 200 synced keys flushed to tables.
    fn filled(fs: &SimFs) -> LsmStorage<SimFs> {
        let (mut storage, rebuilt) = LsmStorage::open_or_rebuild(fs.clone(), small()).unwrap();
        assert_eq!(rebuilt, None, "a fresh disk is not a rebuild");
        for index in 0..200u32 {
            let key = Bytes::from(format!("key{index:04}"));
            storage.write(Space::Data, key, Some(Bytes::from(vec![7u8; 100]))).unwrap();
            storage.sync().unwrap();
        }
        storage.sync().unwrap();
        storage.engine.request_flush().unwrap();
        storage.sync().unwrap();
        assert!(fs.list().unwrap().iter().any(|name| name.ends_with(".sst")));
        storage
    }

    fn manifest(fs: &SimFs) -> String {
        let names = fs.list().unwrap();
        names.into_iter().find(|name| name.starts_with("MANIFEST-")).unwrap()
    }

    #[test]
    fn a_corrupt_manifest_at_start_moves_the_files_aside_and_starts_blank_and_marked() {
        let fs = SimFs::new(11);
        drop(filled(&fs));
        fs.create("LOCK").unwrap();
        fs.sync_dir().unwrap();
        // Byte 10 is inside the first record (the snapshot edit), which is never a torn tail.
        fs.corrupt(&manifest(&fs), 10).unwrap();
        let (mut storage, rebuilt) = LsmStorage::open_or_rebuild(fs.clone(), small()).unwrap();
        let reason = rebuilt.expect("a corrupt manifest rebuilds");
        assert!(reason.contains("corruption"), "{reason}");
        assert_eq!(storage.get(Space::Data, b"key0001").unwrap(), None, "the store is blank");
        let marked = storage.get(Space::Meta, META_REBUILDING_KEY).unwrap();
        assert_eq!(marked.as_deref(), Some(reason.as_bytes()));
        let names = fs.list().unwrap();
        assert!(names.iter().any(|name| name.starts_with("quarantine-1-MANIFEST-")), "{names:?}");
        assert!(names.iter().any(|name| name == "LOCK"), "the driver's lock file stays");
        assert!(names
            .iter()
            .any(|name| name.starts_with("quarantine-1-") && name.ends_with(".sst")));
        // The mark is durable: a power cut right after the rebuild keeps it.
        drop(storage);
        fs.crash(ringkv_storage::CrashMode::DropUnsynced);
        let (mut again, rebuilt) = LsmStorage::open_or_rebuild(fs.clone(), small()).unwrap();
        assert_eq!(rebuilt, None, "a rebuilt store opens normally");
        assert!(again.get(Space::Meta, META_REBUILDING_KEY).unwrap().is_some());
    }

    #[test]
    fn corruption_found_while_running_fails_the_read_and_the_next_start_rebuilds() {
        let fs = SimFs::new(12);
        drop(filled(&fs));
        let (mut storage, _) = LsmStorage::open_or_rebuild(fs.clone(), small()).unwrap();
        let table = fs.list().unwrap().into_iter().find(|name| name.ends_with(".sst")).unwrap();
        // Damage the first data block, which a fresh engine has not cached.
        fs.corrupt(&table, 20).unwrap();
        let failed = (0..200u32)
            .filter(|index| storage.get(Space::Data, format!("key{index:04}").as_bytes()).is_err())
            .count();
        assert!(failed > 0, "no read saw the damaged block");
        assert!(storage.corruption().is_some());
        assert!(storage.failure().is_some());
        assert!(fs.list().unwrap().iter().any(|name| name == CORRUPT_MARKER_FILE));
        drop(storage);
        let (mut storage, rebuilt) = LsmStorage::open_or_rebuild(fs.clone(), small()).unwrap();
        assert!(rebuilt.unwrap().contains("while running"));
        assert!(!fs.list().unwrap().iter().any(|name| name == CORRUPT_MARKER_FILE));
        assert_eq!(storage.scan(Space::Data, None, 10).unwrap().len(), 0);
    }

    #[test]
    fn an_io_error_at_start_is_an_error_and_keeps_the_data() {
        let fs = SimFs::new(13);
        drop(filled(&fs));
        fs.fail_next_syncs(1);
        assert!(LsmStorage::open_or_rebuild(fs.clone(), small()).is_err());
        assert!(!fs.list().unwrap().iter().any(|name| name.starts_with(QUARANTINE_PREFIX)));
        let (mut storage, rebuilt) = LsmStorage::open_or_rebuild(fs, small()).unwrap();
        assert_eq!(rebuilt, None);
        assert!(storage.get(Space::Data, b"key0199").unwrap().is_some());
    }

    #[test]
    fn a_rebuild_cut_short_by_io_errors_resumes_and_always_ends_marked() {
        for seed in 0..20 {
            let fs = SimFs::new(100 + seed);
            drop(filled(&fs));
            fs.corrupt(&manifest(&fs), 10).unwrap();
            let errors = ringkv_storage::FaultConfig {
                append_error_ppm: 200_000,
                sync_error_ppm: 200_000,
                metadata_error_ppm: 200_000,
                ..ringkv_storage::FaultConfig::default()
            };
            fs.set_faults(errors);
            let mut attempts = 0;
            let mut storage = loop {
                attempts += 1;
                if attempts == 50 {
                    fs.set_faults(ringkv_storage::FaultConfig::default());
                }
                // Each failed attempt is a process that died: the next one starts afresh.
                if let Ok((storage, _)) = LsmStorage::open_or_rebuild(fs.clone(), small()) {
                    break storage;
                }
                fs.crash(ringkv_storage::CrashMode::Torn);
            };
            fs.set_faults(ringkv_storage::FaultConfig::default());
            assert!(
                storage.get(Space::Meta, META_REBUILDING_KEY).unwrap().is_some(),
                "seed {seed}: started unmarked after {attempts} attempts"
            );
            assert_eq!(storage.get(Space::Data, b"key0001").unwrap(), None, "seed {seed}");
        }
    }

    #[test]
    fn a_rebuilt_store_survives_a_failing_disk_and_a_torn_crash() {
        for seed in 0..30 {
            let fs = SimFs::new(200 + seed);
            drop(filled(&fs));
            fs.corrupt(&manifest(&fs), 10).unwrap();
            let (mut storage, rebuilt) = LsmStorage::open_or_rebuild(fs.clone(), small()).unwrap();
            assert!(rebuilt.is_some());
            for index in 0..50u32 {
                let key = Bytes::from(format!("new{index:04}"));
                storage.write(Space::Data, key, Some(Bytes::from(vec![1u8; 100]))).unwrap();
                storage.sync().unwrap();
            }
            fs.fail_next_syncs(u32::MAX);
            let _ = storage.write(
                Space::Data,
                Bytes::from_static(b"x"),
                Some(Bytes::from_static(b"y")),
            );
            assert!(storage.sync().is_err());
            drop(storage);
            fs.crash(ringkv_storage::CrashMode::Torn);
            assert!(LsmStorage::open_or_rebuild(fs.clone(), small()).is_err());
            fs.fail_next_syncs(0);
            let (mut storage, rebuilt) = LsmStorage::open_or_rebuild(fs.clone(), small()).unwrap();
            assert_eq!(rebuilt, None, "seed {seed}: {:?}", fs.list().unwrap());
            assert!(storage.get(Space::Data, b"new0049").unwrap().is_some());
        }
    }
}
