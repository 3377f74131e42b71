//! The engine: keyspaces, the write path (WAL + memtable), reads and scans at snapshots, and the
//! bookkeeping of flushes and compactions that a driver runs as jobs.
//!
//! Inputs: `write`/`put`/`delete`, `get`/`scan`, `create_keyspace`, `synced` (a finished
//! [`SyncJob`]) and `finish` (a finished [`Job`]). Outputs, to be drained after every input:
//! `poll_sync` (one WAL sync covering everything buffered) and `poll_job` (flushes, compactions).
//! The engine never reads a clock, sleeps or spawns a thread.
//!
//! Invariants:
//! - `durable_seq <= last_seq`; every write with a sequence number at or below `durable_seq`
//!   survives any crash, and after a crash the surviving writes are a prefix of the write order
//!   (WAL files are synced oldest first, and recovery stops at the first torn record or gap).
//! - At most one sync, one flush and one compaction are in flight; WAL bytes are appended by one
//!   party at a time (the engine inline, or the sync job in flight), so they stay in order.
//! - A table is named by the manifest only after it and the directory are synced; an obsolete
//!   file is removed only after the manifest edit that dropped it is synced.
//! - After any failed write, sync, flush, compaction or manifest update the engine is poisoned:
//!   it refuses writes with the first failure's reason, and never retries an fsync.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use bytes::Bytes;

mod checkpoint;
pub use checkpoint::CheckpointInfo;

use crate::batch::{decode_batch, encode_batch, Batch, BatchOp, KeyspaceId};
use crate::buggify::{Buggify, Site};
use crate::cache::BlockCache;
use crate::codec::{Kind, SeqNo, SEQ_MAX};
use crate::iter::{EntrySource, Found, Merger, VisibleIter};
use crate::job::{Job, JobResult, Work};
use crate::manifest::ManifestState;
use crate::manifest::{self, parse_name, table_name, wal_name, Edit, FileMeta, ManifestLog};
use crate::memtable::{MemValue, Memtable};
use crate::record::{put_record, RecordReader};
use crate::table::{LevelIter, Table, TableInfo, TableOptions};
use crate::version::{self, CompactionOptions, Version};
use crate::vfs::{read_all, Vfs, VfsFile};
use crate::{Error, Result};

/// Bytes of the keyspace prefix on every internal user key.
const KEYSPACE_PREFIX_BYTES: usize = 4;
/// Lookup keys up to this size are built on the stack.
const LOOKUP_STACK_BYTES: usize = 256;
/// Longest keyspace name.
const KEYSPACE_NAME_BYTES_MAX: usize = 255;

/// A memtable is frozen once the write-ahead log behind it holds this many times
/// `memtable_bytes_max`, however little it holds itself (overwrites replace versions).
const WAL_BYTES_PER_MEMTABLE_MAX: usize = 4;

/// Engine configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// A memtable is frozen and flushed once it holds about this many bytes.
    pub memtable_bytes_max: usize,
    /// Frozen memtables waiting for a flush before writes stall.
    pub frozen_memtables_max: usize,
    /// WAL bytes buffered in memory before they are appended to the file (without a sync).
    pub wal_buffer_bytes_max: usize,
    /// Table format knobs.
    pub table: TableOptions,
    /// Compaction knobs.
    pub compaction: CompactionOptions,
    /// Byte budget of the block cache.
    pub block_cache_bytes_max: usize,
    /// The manifest is rewritten from a snapshot once it grows past this.
    pub manifest_bytes_max: u64,
    /// Longest key.
    pub key_bytes_max: usize,
    /// Longest value.
    pub value_bytes_max: usize,
    /// Most operations in one batch.
    pub batch_ops_max: usize,
    /// Most key and value bytes in one batch (a batch is one WAL record).
    pub batch_bytes_max: usize,
    /// Turns on BUGGIFY (see `buggify.rs`) with this seed: the simulator sets it to drive rare
    /// paths; `None` (the default) in production.
    pub buggify_seed: Option<u64>,
    /// WAL bytes that may wait in memory while a sync is in flight before writes fail with
    /// `Error::SyncStall` (the driver must finish the sync).
    pub wal_pending_bytes_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memtable_bytes_max: 16 << 20,
            frozen_memtables_max: 4,
            wal_buffer_bytes_max: 256 << 10,
            table: TableOptions::default(),
            compaction: CompactionOptions::default(),
            block_cache_bytes_max: 64 << 20,
            manifest_bytes_max: 4 << 20,
            key_bytes_max: 64 << 10,
            value_bytes_max: 10 << 20,
            batch_ops_max: 100_000,
            batch_bytes_max: 256 << 20,
            wal_pending_bytes_max: 64 << 20,
            buggify_seed: None,
        }
    }
}

/// A consistent read view: reads at a snapshot see exactly the writes up to its sequence
/// number. Hand it back with [`Engine::release`] so compactions may drop old versions again.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub struct Snapshot {
    seq: SeqNo,
}

impl Snapshot {
    /// The last sequence number visible at this snapshot.
    pub fn seq(&self) -> SeqNo {
        self.seq
    }
}

/// A key and its current value, as returned by reads and scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key (without keyspace).
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// When the value expires (wall clock ms), if ever. Reads do not hide expired values: the
    /// caller has the clock.
    pub expire_at_ms: Option<u64>,
    /// The sequence number of the write.
    pub seq: SeqNo,
}

/// One WAL sync handed out by [`Engine::poll_sync`]: appends what was buffered, syncs older WAL
/// files first, then the current one, then the directory if a WAL file was created.
#[derive(Debug)]
#[must_use]
pub struct SyncJob {
    upto: SeqNo,
    older: Vec<String>,
    wal: String,
    data: Bytes,
    sync_dir: bool,
}

/// The outcome of a [`SyncJob`], for [`Engine::synced`].
#[derive(Debug)]
pub struct SyncResult {
    upto: SeqNo,
    outcome: Result<()>,
}

impl SyncJob {
    /// Every write up to this sequence number is durable once the job succeeds.
    pub fn upto(&self) -> SeqNo {
        self.upto
    }

    /// Does the I/O.
    pub fn run<V: Vfs>(&self, vfs: &V) -> SyncResult {
        let outcome = (|| {
            for name in &self.older {
                let mut f = vfs.open(name).map_err(|e| Error::io("open", name, e))?;
                f.sync().map_err(|e| Error::io("sync", name, e))?;
            }
            let mut f = vfs.open(&self.wal).map_err(|e| Error::io("open", &self.wal, e))?;
            if !self.data.is_empty() {
                f.append(&self.data).map_err(|e| Error::io("append", &self.wal, e))?;
            }
            f.sync().map_err(|e| Error::io("sync", &self.wal, e))?;
            if self.sync_dir {
                vfs.sync_dir().map_err(|e| Error::io("sync_dir", "/", e))?;
            }
            Ok(())
        })();
        SyncResult { upto: self.upto, outcome }
    }
}

/// Counters for write amplification and cache behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Key and value bytes the user wrote.
    pub user_bytes_written: u64,
    /// Bytes appended to WAL files.
    pub wal_bytes_written: u64,
    /// Bytes of tables written by flushes.
    pub flush_bytes_written: u64,
    /// Bytes of tables written by compactions.
    pub compaction_bytes_written: u64,
    /// Bytes of tables read by compactions.
    pub compaction_bytes_read: u64,
    /// Flushes finished.
    pub flushes: u64,
    /// Compactions (including moves) finished.
    pub compactions: u64,
    /// Block cache hits.
    pub cache_hits: u64,
    /// Block cache misses.
    pub cache_misses: u64,
}

impl Stats {
    /// Bytes written to disk per byte the user wrote.
    pub fn write_amp(&self) -> f64 {
        let disk =
            self.wal_bytes_written + self.flush_bytes_written + self.compaction_bytes_written;
        disk as f64 / self.user_bytes_written.max(1) as f64
    }
}

/// Where WAL replay stopped early during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalStop {
    /// The WAL file.
    pub file: String,
    /// Offset of the first record not replayed.
    pub offset: u64,
    /// Why: a torn or corrupt record, or a gap in sequence numbers.
    pub reason: String,
}

/// What recovery found when the engine was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// WAL files replayed.
    pub wal_files_replayed: usize,
    /// WAL records (batches) replayed.
    pub records_replayed: u64,
    /// The last sequence number recovered.
    pub last_seq: SeqNo,
    /// Where replay stopped before the end of the WAL, if it did.
    pub wal_stop: Option<WalStop>,
}

struct Frozen {
    mem: Arc<Memtable>,
    /// The WAL that took over when this memtable was frozen: older ones are obsolete once it
    /// is flushed.
    next_log: u64,
}

struct Wal<F: VfsFile> {
    name: String,
    file: F,
    buf: Vec<u8>,
    /// Bytes of this WAL handed to the file so far (by the engine or a sync job), so that a
    /// checkpoint reads exactly them while a sync job may still be appending.
    appended_bytes: u64,
}

enum InFlight {
    Compaction { full: bool, pick: version::Pick },
}

/// The LSM storage engine over a [`Vfs`].
///
/// Dropping it is a process crash: writes not yet synced (see [`Engine::sync`] and
/// [`Engine::poll_sync`]) are lost, everything else is recovered by the next [`Engine::open`].
pub struct Engine<V: Vfs> {
    vfs: V,
    opts: Options,
    state: ManifestState,
    version: Version,
    tables: BTreeMap<u64, Table<V::File>>,
    cache: RefCell<BlockCache>,
    manifest: ManifestLog<V::File>,
    mem: Memtable,
    frozen: VecDeque<Frozen>,
    /// Flushed memtables waiting to be handed to a job for freeing (at most
    /// `frozen_memtables_max`: one per flush since the last job was handed out).
    retired: Vec<Arc<Memtable>>,
    wal: Wal<V::File>,
    wal_files: BTreeSet<u64>,
    wal_older_unsynced: Vec<String>,
    wal_dir_sync_needed: bool,
    last_seq: SeqNo,
    durable_seq: SeqNo,
    sync_in_flight: Option<SeqNo>,
    /// The in-flight sync job's WAL bytes and the offset they go to (a checkpoint copies them
    /// whether or not the job has appended them yet).
    sync_in_flight_data: Option<(u64, Bytes)>,
    job_id_next: u64,
    flush_in_flight: Option<u64>,
    cleanup_in_flight: Option<u64>,
    /// Obsolete files waiting to be handed to a job for removal.
    garbage: Vec<String>,
    compaction_in_flight: Option<(u64, InFlight)>,
    compact_cursor: Vec<Vec<u8>>,
    full_compaction_requested: bool,
    snapshots: BTreeMap<SeqNo, usize>,
    poisoned: Option<String>,
    stats: Stats,
    recovery: RecoveryReport,
    scratch: Vec<u8>,
    buggify: Option<Buggify>,
}

impl<V: Vfs> std::fmt::Debug for Engine<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("last_seq", &self.last_seq)
            .field("durable_seq", &self.durable_seq)
            .field("files", &self.files_per_level())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl<V: Vfs> Engine<V> {
    /// Opens (or creates) the database on `vfs`: reads the manifest, opens the tables, replays
    /// the WAL up to the first torn or corrupt record, and writes a fresh manifest.
    pub fn open(vfs: V, opts: Options) -> Result<Engine<V>> {
        validate_options(&opts)?;
        let levels_count = opts.compaction.levels_count;
        let names = vfs.list().map_err(|e| Error::io("list", "/", e))?;
        let mut state = match manifest::read_current(&vfs, levels_count)? {
            Some((_, st)) => st,
            None => ManifestState::new(levels_count),
        };
        let max_seen =
            names.iter().filter_map(|n| parse_name(n).map(|(_, num)| num)).max().unwrap_or(0);
        state.next_file = state.next_file.max(max_seen + 1);
        let mut tables = BTreeMap::new();
        for files in &state.levels {
            for f in files.values() {
                let name = table_name(f.number);
                let file = vfs.open(&name).map_err(|e| Error::io("open", &name, e))?;
                tables.insert(f.number, Table::open(file, &name, f.number)?);
            }
        }
        let wal_numbers: Vec<u64> = names
            .iter()
            .filter_map(|n| match parse_name(n) {
                Some(("wal", num)) if num >= state.log_number => Some(num),
                _ => None,
            })
            .collect();
        let mut mem = Memtable::default();
        let (recovery, replay) = replay_wals(&vfs, &wal_numbers, &state, &mut mem)?;
        let Replay { replayed, stale, unused } = replay;
        for n in &replayed {
            // Recovery may have read bytes that are only in the page cache; make them durable
            // before new writes, synced later, depend on them.
            let name = wal_name(*n);
            let mut f = vfs.open(&name).map_err(|e| Error::io("open", &name, e))?;
            f.sync().map_err(|e| Error::io("sync", &name, e))?;
        }
        for n in &stale {
            let name = wal_name(*n);
            vfs.remove(&name).map_err(|e| Error::io("remove", &name, e))?;
        }
        if !stale.is_empty() {
            // The stale files must be gone for good before a new WAL, whose first record will
            // reuse their sequence numbers, can exist.
            vfs.sync_dir().map_err(|e| Error::io("sync_dir", "/", e))?;
        }
        let wal_number = state.next_file;
        let manifest_number = wal_number + 1;
        state.next_file += 2;
        let name = wal_name(wal_number);
        let file = vfs.create(&name).map_err(|e| Error::io("create", &name, e))?;
        // Installing the manifest syncs the directory, which also makes the new WAL's creation
        // and the stale WALs' removal durable.
        let manifest = manifest::install_new(&vfs, manifest_number, &state)?;
        remove_garbage(&vfs, &names, &state, manifest_number)?;
        for n in &unused {
            let name = wal_name(*n);
            vfs.remove(&name).map_err(|e| Error::io("remove", &name, e))?;
        }
        let mut wal_files: BTreeSet<u64> = replayed.into_iter().collect();
        wal_files.insert(wal_number);
        let last_seq = recovery.last_seq;
        let engine = Engine {
            version: Version::from_state(&state),
            state,
            tables,
            cache: RefCell::new(BlockCache::new(opts.block_cache_bytes_max)),
            manifest,
            mem,
            frozen: VecDeque::new(),
            retired: Vec::new(),
            wal: Wal { name, file, buf: wal_header(), appended_bytes: 0 },
            wal_files,
            wal_older_unsynced: Vec::new(),
            wal_dir_sync_needed: false,
            last_seq,
            durable_seq: last_seq,
            sync_in_flight: None,
            sync_in_flight_data: None,
            job_id_next: 1,
            flush_in_flight: None,
            cleanup_in_flight: None,
            garbage: Vec::new(),
            compaction_in_flight: None,
            compact_cursor: vec![Vec::new(); levels_count],
            full_compaction_requested: false,
            snapshots: BTreeMap::new(),
            poisoned: None,
            stats: Stats::default(),
            recovery,
            scratch: Vec::new(),
            buggify: opts.buggify_seed.map(Buggify::new),
            vfs,
            opts,
        };
        engine.check_invariants();
        Ok(engine)
    }

    // ----- getters -----

    /// The options the engine was opened with.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The filesystem the engine runs on.
    pub fn vfs(&self) -> &V {
        &self.vfs
    }

    /// The sequence number of the last write accepted.
    pub fn last_seq(&self) -> SeqNo {
        self.last_seq
    }

    /// Every write at or below this sequence number is durable.
    pub fn durable_seq(&self) -> SeqNo {
        self.durable_seq
    }

    /// Why the engine refuses writes, if it does.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// What recovery found when the engine was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let (hits, misses) = self.cache.borrow().stats();
        Stats { cache_hits: hits, cache_misses: misses, ..self.stats }
    }

    /// Number of tables in each level.
    pub fn files_per_level(&self) -> Vec<usize> {
        self.version.levels.iter().map(Vec::len).collect()
    }

    /// Total bytes of live tables.
    pub fn table_bytes(&self) -> u64 {
        self.tables.values().map(Table::size_bytes).sum()
    }

    /// The id of keyspace `name`, if it exists.
    pub fn keyspace(&self, name: &str) -> Option<KeyspaceId> {
        self.state.keyspaces.iter().find(|(_, n)| n.as_str() == name).map(|(id, _)| KeyspaceId(*id))
    }

    /// All keyspaces, by id.
    pub fn keyspaces(&self) -> Vec<(String, KeyspaceId)> {
        self.state.keyspaces.iter().map(|(id, n)| (n.clone(), KeyspaceId(*id))).collect()
    }

    // ----- reads -----

    /// The current value of `key`, if any.
    pub fn get(&self, keyspace: KeyspaceId, key: &[u8]) -> Result<Option<Bytes>> {
        self.check_keyspace(keyspace)?;
        Ok(self
            .lookup(keyspace, key, self.last_seq)?
            .and_then(|f| (f.kind == Kind::Put).then_some(f.value)))
    }

    /// The value of `key` with its expiry and sequence number, at `snapshot` (or now).
    pub fn get_at(
        &self,
        keyspace: KeyspaceId,
        key: &[u8],
        snapshot: Option<&Snapshot>,
    ) -> Result<Option<KeyValue>> {
        self.check_keyspace(keyspace)?;
        let seq = snapshot.map_or(self.last_seq, |s| s.seq);
        Ok(self.lookup(keyspace, key, seq)?.and_then(|f| match f.kind {
            Kind::Put => Some(KeyValue {
                key: Bytes::copy_from_slice(key),
                value: f.value,
                expire_at_ms: f.expire_at_ms,
                seq: f.seq,
            }),
            Kind::Delete => None,
        }))
    }

    /// The keys in `range` of `keyspace` in order, as of `snapshot` (or now).
    pub fn scan<B: AsRef<[u8]>>(
        &self,
        keyspace: KeyspaceId,
        range: impl RangeBounds<B>,
        snapshot: Option<&Snapshot>,
    ) -> Result<Scan<'_>> {
        self.check_keyspace(keyspace)?;
        let start = match range.start_bound() {
            Bound::Included(k) | Bound::Excluded(k) => internal_user_key(keyspace, k.as_ref()),
            Bound::Unbounded => internal_user_key(keyspace, b""),
        };
        let skip = match range.start_bound() {
            Bound::Excluded(_) => Some(start.clone()),
            _ => None,
        };
        let end = match range.end_bound() {
            Bound::Excluded(k) => Some(internal_user_key(keyspace, k.as_ref())),
            Bound::Included(k) => {
                let mut v = internal_user_key(keyspace, k.as_ref()).to_vec();
                v.push(0);
                Some(Bytes::from(v))
            }
            Bound::Unbounded => {
                keyspace.0.checked_add(1).map(|next| internal_user_key(KeyspaceId(next), b""))
            }
        };
        let seq = snapshot.map_or(self.last_seq, |s| s.seq);
        let merger = Merger::new(self.sources(&start, end.as_deref())?);
        Ok(Scan { inner: VisibleIter::new(merger, seq, end), skip, failed: false })
    }

    /// A snapshot of the current state; release it when done.
    pub fn snapshot(&mut self) -> Snapshot {
        *self.snapshots.entry(self.last_seq).or_default() += 1;
        Snapshot { seq: self.last_seq }
    }

    /// Gives a snapshot back.
    pub fn release(&mut self, snapshot: Snapshot) {
        if let Some(n) = self.snapshots.get_mut(&snapshot.seq) {
            *n -= 1;
            if *n == 0 {
                self.snapshots.remove(&snapshot.seq);
            }
        }
    }

    // ----- writes -----

    /// Creates keyspace `name` (durably) or returns its id if it exists.
    pub fn create_keyspace(&mut self, name: &str) -> Result<KeyspaceId> {
        if let Some(id) = self.keyspace(name) {
            return Ok(id);
        }
        self.check_writable()?;
        if name.is_empty() || name.len() > KEYSPACE_NAME_BYTES_MAX {
            return Err(Error::TooLarge {
                what: "keyspace name",
                len: name.len(),
                max: KEYSPACE_NAME_BYTES_MAX,
            });
        }
        let id = self.state.keyspaces.keys().next_back().map_or(0, |k| k + 1);
        let edit = Edit { keyspaces: vec![(id, name.to_string())], ..Edit::default() };
        self.apply_edit(edit, Vec::new(), &[])?;
        Ok(KeyspaceId(id))
    }

    /// Writes `value` at `key`; see [`Engine::write`].
    pub fn put(&mut self, keyspace: KeyspaceId, key: &[u8], value: &[u8]) -> Result<SeqNo> {
        let mut b = Batch::new();
        b.put(keyspace, Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
        self.write(&b)
    }

    /// Deletes `key`; see [`Engine::write`].
    pub fn delete(&mut self, keyspace: KeyspaceId, key: &[u8]) -> Result<SeqNo> {
        let mut b = Batch::new();
        b.delete(keyspace, Bytes::copy_from_slice(key));
        self.write(&b)
    }

    /// Applies a batch atomically and returns the sequence number of its last operation. The
    /// batch is visible at once and durable once `durable_seq()` reaches that number (after a
    /// sync). If this returns an error, the batch may or may not survive a crash.
    pub fn write(&mut self, batch: &Batch) -> Result<SeqNo> {
        self.check_writable()?;
        self.validate(batch)?;
        if batch.is_empty() {
            return Ok(self.last_seq);
        }
        if self.frozen.len() >= self.opts.frozen_memtables_max {
            return Err(Error::WriteStall {
                what: "frozen memtables",
                waiting: self.frozen.len(),
                limit: self.opts.frozen_memtables_max,
            });
        }
        // Every level-0 table (every run, size-tiered) is read by point lookups: stop writes
        // rather than let read amplification grow without bound when compaction falls behind.
        let level0 = self.version.levels[0].len();
        if level0 >= self.opts.compaction.level0_files_stall && self.compaction_pending() {
            return Err(Error::WriteStall {
                what: "level-0 tables",
                waiting: level0,
                limit: self.opts.compaction.level0_files_stall,
            });
        }
        if self.sync_in_flight.is_some() && self.wal.buf.len() >= self.opts.wal_pending_bytes_max {
            return Err(Error::SyncStall {
                pending: self.wal.buf.len(),
                limit: self.opts.wal_pending_bytes_max,
            });
        }
        let first = self.last_seq + 1;
        let last = self.last_seq + batch.len() as u64;
        self.scratch.clear();
        encode_batch(&mut self.scratch, first, batch);
        put_record(&mut self.wal.buf, &self.scratch);
        if self.wal.buf.len() >= self.opts.wal_buffer_bytes_max && self.sync_in_flight.is_none() {
            self.append_wal_buffer()?;
        }
        // Older versions in the memtable are kept only for a snapshot that may read them.
        let keep_older = !self.snapshots.is_empty();
        for (i, op) in batch.ops().iter().enumerate() {
            let seq = first + i as u64;
            let (ks, key, value) = match op {
                BatchOp::Put { keyspace, key, value, expire_at_ms } => (
                    *keyspace,
                    key,
                    MemValue { kind: Kind::Put, expire_at_ms: *expire_at_ms, value: value.clone() },
                ),
                BatchOp::Delete { keyspace, key } => (
                    *keyspace,
                    key,
                    MemValue { kind: Kind::Delete, expire_at_ms: None, value: Bytes::new() },
                ),
            };
            self.mem.insert(internal_user_key(ks, key), seq, value, keep_older);
        }
        self.last_seq = last;
        self.stats.user_bytes_written += batch.payload_bytes() as u64;
        if self.sync_in_flight.is_none() && self.buggify_fires(Site::EarlyWalAppend) {
            self.append_wal_buffer()?;
        }
        let full = self.memtable_full();
        let early = self.frozen.len() < self.opts.frozen_memtables_max
            && self.buggify_fires(Site::EarlyRotate);
        if (full || early) && self.sync_in_flight.is_none() {
            self.rotate()?;
        }
        self.check_invariants();
        Ok(last)
    }

    /// Freezes the memtable so that the next `poll_job` flushes it (no-op if it is empty).
    pub fn request_flush(&mut self) -> Result<()> {
        self.check_writable()?;
        if self.mem.is_empty() {
            return Ok(());
        }
        if self.sync_in_flight.is_some() {
            return Err(Error::Protocol("finish the sync in flight before a flush".into()));
        }
        self.rotate()
    }

    /// Asks for a compaction of every table into one sorted run (the bottom level), dropping
    /// every tombstone and shadowed version no snapshot needs.
    pub fn request_full_compaction(&mut self) {
        self.full_compaction_requested = true;
    }

    // ----- group commit -----

    /// Hands out one sync covering every write so far, unless one is in flight, nothing is
    /// unsynced, or the engine is poisoned. Run it, then pass the result to [`Engine::synced`].
    #[must_use]
    pub fn poll_sync(&mut self) -> Option<SyncJob> {
        if self.poisoned.is_some() || self.sync_in_flight.is_some() {
            return None;
        }
        if self.last_seq <= self.durable_seq {
            return None;
        }
        let data = Bytes::from(std::mem::take(&mut self.wal.buf));
        self.stats.wal_bytes_written += data.len() as u64;
        self.sync_in_flight_data = Some((self.wal.appended_bytes, data.clone()));
        self.wal.appended_bytes += data.len() as u64;
        let job = SyncJob {
            upto: self.last_seq,
            older: std::mem::take(&mut self.wal_older_unsynced),
            wal: self.wal.name.clone(),
            data,
            sync_dir: std::mem::take(&mut self.wal_dir_sync_needed),
        };
        self.sync_in_flight = Some(job.upto);
        Some(job)
    }

    /// Takes the result of a [`SyncJob`]: on success everything up to its `upto` is durable and
    /// the new `durable_seq` is returned; a failure poisons the engine (fsync is not retried).
    pub fn synced(&mut self, result: SyncResult) -> Result<SeqNo> {
        if self.sync_in_flight != Some(result.upto) {
            return Err(Error::Protocol(format!(
                "synced({}) does not match the sync in flight {:?}",
                result.upto, self.sync_in_flight
            )));
        }
        self.sync_in_flight = None;
        self.sync_in_flight_data = None;
        if let Err(e) = result.outcome {
            self.poison(format!("WAL sync failed: {e}"));
            return Err(e);
        }
        self.durable_seq = self.durable_seq.max(result.upto);
        self.remove_obsolete_wals()?;
        if self.poisoned.is_none() && self.memtable_full() {
            self.rotate()?;
        }
        self.check_invariants();
        Ok(self.durable_seq)
    }

    /// Syncs everything written so far, inline, and returns the durable sequence number.
    pub fn sync(&mut self) -> Result<SeqNo> {
        self.check_writable()?;
        if self.sync_in_flight.is_some() {
            return Err(Error::Protocol("a sync job is in flight".into()));
        }
        if let Some(job) = self.poll_sync() {
            let r = job.run(&self.vfs);
            self.synced(r)?;
        }
        Ok(self.durable_seq)
    }

    // ----- jobs -----

    /// The next flush or compaction to run, if any is due and its slot is free (one flush and
    /// one compaction at a time), or else a cleanup that removes obsolete files. Run it with
    /// [`Job::run`] and pass the result to `finish`.
    #[must_use]
    pub fn poll_job(&mut self) -> Option<Job> {
        if self.poisoned.is_some() {
            return None;
        }
        if let Some(job) = self.poll_work() {
            return Some(job);
        }
        let idle = self.garbage.is_empty() && self.retired.is_empty();
        if idle || self.cleanup_in_flight.is_some() {
            return None;
        }
        let id = self.next_job_id();
        self.cleanup_in_flight = Some(id);
        Some(Job {
            id,
            work: Work::Cleanup,
            now_wall_ms: None,
            retired: std::mem::take(&mut self.retired),
            remove: std::mem::take(&mut self.garbage),
        })
    }

    /// The next flush or compaction, if one is due and its slot is free.
    fn poll_work(&mut self) -> Option<Job> {
        if self.compaction_in_flight.is_none() && self.buggify_fires(Site::FullCompaction) {
            self.full_compaction_requested = true;
        }
        if self.flush_in_flight.is_none() {
            if let Some(f) = self.frozen.front() {
                let mem = f.mem.clone();
                let number = self.alloc_numbers(1);
                let id = self.next_job_id();
                self.flush_in_flight = Some(id);
                return Some(Job {
                    id,
                    work: Work::Flush {
                        mem,
                        number,
                        table: self.opts.table,
                        smallest_snapshot: self.smallest_snapshot(),
                    },
                    now_wall_ms: None,
                    retired: std::mem::take(&mut self.retired),
                    remove: std::mem::take(&mut self.garbage),
                });
            }
        }
        if self.compaction_in_flight.is_some() {
            return None;
        }
        let copts = self.opts.compaction;
        let (pick, full) = if self.full_compaction_requested {
            match version::pick_full(&self.version, &copts) {
                Some(p) => (p, true),
                None => {
                    self.full_compaction_requested = false;
                    return None;
                }
            }
        } else {
            (version::pick(&self.version, &copts, &mut self.compact_cursor)?, false)
        };
        let id = self.next_job_id();
        let work = if pick.trivial_move {
            let (from_level, file) = pick.inputs[0].clone();
            Work::Move { file, from_level, to_level: pick.output_level }
        } else {
            let bytes: u64 = pick.inputs.iter().map(|(_, f)| f.size_bytes).sum();
            let count = bytes / copts.table_file_bytes_max.max(1) + pick.inputs.len() as u64 + 2;
            Work::Compact {
                inputs: pick.inputs.clone(),
                output_level: pick.output_level,
                numbers: (self.alloc_numbers(count), count),
                bottommost: pick.bottommost,
                split_bytes: pick.split_outputs.then_some(copts.table_file_bytes_max),
                smallest_snapshot: self.smallest_snapshot(),
                table: self.opts.table,
            }
        };
        self.compaction_in_flight = Some((id, InFlight::Compaction { full, pick }));
        Some(Job {
            id,
            work,
            now_wall_ms: None,
            retired: std::mem::take(&mut self.retired),
            remove: std::mem::take(&mut self.garbage),
        })
    }

    /// Applies a finished job: records its outputs in the manifest, then removes the files it
    /// made obsolete. A failed job poisons the engine.
    pub fn finish(&mut self, result: JobResult) -> Result<()> {
        let r = if self.flush_in_flight == Some(result.id) {
            self.flush_in_flight = None;
            self.finish_flush(result)
        } else if self.compaction_in_flight.as_ref().is_some_and(|(id, _)| *id == result.id) {
            self.finish_compaction(result)
        } else if self.cleanup_in_flight == Some(result.id) {
            self.cleanup_in_flight = None;
            Ok(())
        } else {
            Err(Error::Protocol(format!("job {} is not in flight", result.id)))
        };
        self.check_invariants();
        r
    }

    /// Runs every pending sync and job inline until there is nothing left to do.
    pub fn run_pending(&mut self) -> Result<()> {
        // Each round finishes at least one job; the bound only guards against a logic error.
        for _ in 0..100_000 {
            let Some(job) = self.poll_job() else {
                self.check_writable()?;
                return Ok(());
            };
            let r = job.run(&self.vfs);
            self.finish(r)?;
        }
        Err(Error::Protocol("run_pending did not quiesce".into()))
    }

    // ----- helpers -----

    fn finish_flush(&mut self, result: JobResult) -> Result<()> {
        let outputs = match result.outcome {
            Ok(o) => o,
            Err(e) => {
                self.poison(format!("flush failed: {e}"));
                return Err(e);
            }
        };
        let Some(front) = self.frozen.front() else {
            return Err(Error::Protocol("flush finished with no frozen memtable".into()));
        };
        let (next_log, max_seq) = (front.next_log, front.mem.max_seq());
        let bytes: u64 = outputs.iter().map(|(m, _)| m.size_bytes).sum();
        let edit = Edit {
            log_number: Some(next_log),
            last_seq: Some(max_seq),
            next_file: Some(self.state.next_file),
            added: outputs.iter().map(|(m, _)| (0, m.clone())).collect(),
            ..Edit::default()
        };
        self.apply_edit(edit, outputs, &[])?;
        if let Some(done) = self.frozen.pop_front() {
            // Freed with the next job, off the writer's path (see `Job::retired`).
            self.retired.push(done.mem);
        }
        self.stats.flushes += 1;
        self.stats.flush_bytes_written += bytes;
        // The table holds every write up to max_seq (older ones are in older tables).
        self.durable_seq = self.durable_seq.max(max_seq);
        let log_number = self.state.log_number;
        self.wal_older_unsynced.retain(|n| parse_name(n).is_none_or(|(_, num)| num >= log_number));
        self.remove_obsolete_wals()
    }

    fn finish_compaction(&mut self, result: JobResult) -> Result<()> {
        let Some((_, InFlight::Compaction { full, pick })) = self.compaction_in_flight.take()
        else {
            return Err(Error::Protocol("no compaction in flight".into()));
        };
        let outputs = match result.outcome {
            Ok(o) => o,
            Err(e) => {
                self.poison(format!("compaction failed: {e}"));
                return Err(e);
            }
        };
        let bytes: u64 = outputs.iter().map(|(m, _)| m.size_bytes).sum();
        let mut edit = Edit {
            next_file: Some(self.state.next_file),
            removed: pick.inputs.iter().map(|(l, f)| (*l, f.number)).collect(),
            added: outputs.iter().map(|(m, _)| (pick.output_level, m.clone())).collect(),
            ..Edit::default()
        };
        let obsolete: Vec<u64> = if pick.trivial_move {
            let (_, f) = &pick.inputs[0];
            edit.added.push((pick.output_level, (**f).clone()));
            Vec::new()
        } else {
            pick.inputs.iter().map(|(_, f)| f.number).collect()
        };
        self.apply_edit(edit, outputs, &obsolete)?;
        if full {
            self.full_compaction_requested = false;
        }
        self.stats.compactions += 1;
        self.stats.compaction_bytes_written += bytes;
        self.stats.compaction_bytes_read += result.bytes_read;
        Ok(())
    }

    /// Makes `edit` durable in the manifest, then applies it in memory: opens the output
    /// tables and removes the obsolete ones.
    fn apply_edit(
        &mut self,
        edit: Edit,
        outputs: Vec<(FileMeta, TableInfo)>,
        obsolete: &[u64],
    ) -> Result<()> {
        // Everything that can fail before the edit is durable: nothing changes in memory
        // unless the manifest has the edit.
        let mut next = self.state.clone();
        if let Err(d) = next.apply(&edit) {
            let e = Error::Protocol(format!("bad edit: {d}"));
            self.poison(e.to_string());
            return Err(e);
        }
        let mut opened = Vec::with_capacity(outputs.len());
        for (meta, info) in &outputs {
            let name = table_name(meta.number);
            match self.vfs.open(&name) {
                Ok(file) => opened.push(Table::from_info(file, &name, meta.number, info)),
                Err(e) => {
                    let e = Error::io("open", &name, e);
                    self.poison(format!("opening a new table failed: {e}"));
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.manifest.append(&edit) {
            self.poison(format!("manifest update failed: {e}"));
            return Err(e);
        }
        // File numbers may have been allocated meanwhile; keep the larger counter.
        next.next_file = next.next_file.max(self.state.next_file);
        self.state = next;
        for ((meta, _), table) in outputs.iter().zip(opened) {
            self.tables.insert(meta.number, table);
        }
        self.version = Version::from_state(&self.state);
        for number in obsolete {
            self.tables.remove(number);
            self.garbage.push(table_name(*number));
        }
        if self.manifest.size_bytes > self.opts.manifest_bytes_max {
            self.rotate_manifest()?;
        }
        Ok(())
    }

    fn rotate_manifest(&mut self) -> Result<()> {
        let number = self.alloc_numbers(1);
        match manifest::install_new(&self.vfs, number, &self.state) {
            Ok(log) => {
                let old = std::mem::replace(&mut self.manifest, log);
                self.garbage.push(manifest::manifest_name(old.number));
                Ok(())
            }
            Err(e) => {
                self.poison(format!("manifest rotation failed: {e}"));
                Err(e)
            }
        }
    }

    /// Freezes the memtable and starts a new WAL file.
    fn rotate(&mut self) -> Result<()> {
        debug_assert!(self.sync_in_flight.is_none(), "WAL appends must stay in order");
        if self.mem.is_empty() {
            return Ok(());
        }
        self.append_wal_buffer()?;
        let number = self.alloc_numbers(1);
        let name = wal_name(number);
        let file = match self.vfs.create(&name) {
            Ok(f) => f,
            Err(e) => {
                let e = Error::io("create", &name, e);
                self.poison(format!("creating a WAL failed: {e}"));
                return Err(e);
            }
        };
        let old = std::mem::replace(
            &mut self.wal,
            Wal { name, file, buf: wal_header(), appended_bytes: 0 },
        );
        if self.durable_seq < self.last_seq {
            self.wal_older_unsynced.push(old.name);
        }
        self.wal_files.insert(number);
        self.wal_dir_sync_needed = true;
        // The next memtable will likely hold about as many keys: sized for them up front, its
        // index does not rehash (and fault in fresh pages) while it fills.
        let keys = self.mem.keys_len();
        let mem = std::mem::replace(&mut self.mem, Memtable::with_key_capacity(keys));
        self.frozen.push_back(Frozen { mem: Arc::new(mem), next_log: number });
        Ok(())
    }

    fn append_wal_buffer(&mut self) -> Result<()> {
        if self.wal.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.wal.file.append(&self.wal.buf) {
            let e = Error::io("append", &self.wal.name, e);
            self.poison(format!("WAL append failed: {e}"));
            return Err(e);
        }
        self.stats.wal_bytes_written += self.wal.buf.len() as u64;
        self.wal.appended_bytes += self.wal.buf.len() as u64;
        self.wal.buf.clear();
        Ok(())
    }

    fn remove_obsolete_wals(&mut self) -> Result<()> {
        // A sync job in flight may still open an older WAL by name.
        if self.sync_in_flight.is_some() {
            return Ok(());
        }
        let obsolete: Vec<u64> = self.wal_files.range(..self.state.log_number).copied().collect();
        for n in obsolete {
            self.wal_files.remove(&n);
            self.garbage.push(wal_name(n));
        }
        Ok(())
    }

    fn lookup(&self, ks: KeyspaceId, key: &[u8], seq: SeqNo) -> Result<Option<Found>> {
        // The internal key at the snapshot, built once (on the stack for short keys); the user
        // key is the target without its trailer.
        let len = KEYSPACE_PREFIX_BYTES + key.len() + 8;
        if len <= LOOKUP_STACK_BYTES {
            let mut stack = [0u8; LOOKUP_STACK_BYTES];
            self.lookup_in(&mut stack[..len], ks, key, seq)
        } else {
            self.lookup_in(&mut vec![0u8; len], ks, key, seq)
        }
    }

    fn lookup_in(
        &self,
        target: &mut [u8],
        ks: KeyspaceId,
        key: &[u8],
        seq: SeqNo,
    ) -> Result<Option<Found>> {
        let user_len = KEYSPACE_PREFIX_BYTES + key.len();
        target[..KEYSPACE_PREFIX_BYTES].copy_from_slice(&ks.0.to_be_bytes());
        target[KEYSPACE_PREFIX_BYTES..user_len].copy_from_slice(key);
        target[user_len..].copy_from_slice(&((seq << 8) | Kind::Put as u64).to_le_bytes());
        let (user, target) = (&target[..user_len], &target[..]);
        if let Some(f) = self.mem.get(user, seq) {
            return Ok(Some(f));
        }
        for f in self.frozen.iter().rev() {
            if let Some(f) = f.mem.get(user, seq) {
                return Ok(Some(f));
            }
        }
        let cache = Some(&self.cache);
        let hash = crate::bloom::bloom_hash(user);
        for f in &self.version.levels[0] {
            if f.overlaps(user, user) {
                if let Some(e) = self.table(f.number)?.get_hashed(user, hash, target, cache)? {
                    return Ok(Some(e));
                }
            }
        }
        for level in 1..self.version.levels.len() {
            if let Some(f) = self.version.find_in_level(level, user) {
                if let Some(e) = self.table(f.number)?.get_hashed(user, hash, target, cache)? {
                    return Ok(Some(e));
                }
            }
        }
        Ok(None)
    }

    fn sources(&self, start: &Bytes, end: Option<&[u8]>) -> Result<Vec<Box<dyn EntrySource + '_>>> {
        let mut out: Vec<Box<dyn EntrySource + '_>> = Vec::new();
        out.push(Box::new(self.mem.iter_from(Some(start))));
        for f in self.frozen.iter().rev() {
            out.push(Box::new(f.mem.iter_from(Some(start))));
        }
        let hi_ok = |f: &FileMeta| end.is_none_or(|e| f.smallest_user() < e);
        let cache = Some(&self.cache);
        for f in &self.version.levels[0] {
            if f.largest_user() >= &start[..] && hi_ok(f) {
                out.push(Box::new(self.table(f.number)?.iter(Some(start), cache)?));
            }
        }
        for level in 1..self.version.levels.len() {
            let mut tables = Vec::new();
            for f in &self.version.levels[level] {
                if f.largest_user() >= &start[..] && hi_ok(f) {
                    tables.push(self.table(f.number)?);
                }
            }
            if !tables.is_empty() {
                out.push(Box::new(LevelIter::new(tables, Some(start), cache)?));
            }
        }
        Ok(out)
    }

    /// Reads every block of every live table from the disk, bypassing the block cache, and
    /// returns the number of entries read: the first damaged block is an
    /// [`Error::Corruption`]. An operator's verify (a scrub); it changes nothing.
    pub fn verify_tables(&self) -> Result<u64> {
        let mut entries = 0u64;
        for level in &self.version.levels {
            for f in level {
                let mut iter = self.table(f.number)?.iter(None, None)?;
                while iter.next_entry()?.is_some() {
                    entries += 1;
                }
            }
        }
        Ok(entries)
    }

    fn table(&self, number: u64) -> Result<&Table<V::File>> {
        self.tables.get(&number).ok_or_else(|| {
            Error::Protocol(format!("table {number} is in the version but not open"))
        })
    }

    fn validate(&self, batch: &Batch) -> Result<()> {
        if batch.len() > self.opts.batch_ops_max {
            return Err(Error::TooLarge {
                what: "batch (operations)",
                len: batch.len(),
                max: self.opts.batch_ops_max,
            });
        }
        if batch.payload_bytes() > self.opts.batch_bytes_max {
            return Err(Error::TooLarge {
                what: "batch (bytes)",
                len: batch.payload_bytes(),
                max: self.opts.batch_bytes_max,
            });
        }
        for op in batch.ops() {
            self.check_keyspace(op.keyspace())?;
            if op.key().len() > self.opts.key_bytes_max {
                return Err(Error::TooLarge {
                    what: "key",
                    len: op.key().len(),
                    max: self.opts.key_bytes_max,
                });
            }
            if let BatchOp::Put { value, .. } = op {
                if value.len() > self.opts.value_bytes_max {
                    return Err(Error::TooLarge {
                        what: "value",
                        len: value.len(),
                        max: self.opts.value_bytes_max,
                    });
                }
            }
        }
        Ok(())
    }

    fn check_keyspace(&self, ks: KeyspaceId) -> Result<()> {
        if self.state.keyspaces.contains_key(&ks.0) {
            Ok(())
        } else {
            Err(Error::UnknownKeyspace(ks.0))
        }
    }

    fn check_writable(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, reason: String) {
        if self.poisoned.is_none() {
            self.poisoned = Some(reason);
        }
    }

    fn alloc_numbers(&mut self, count: u64) -> u64 {
        let first = self.state.next_file;
        self.state.next_file += count;
        first
    }

    fn next_job_id(&mut self) -> u64 {
        let id = self.job_id_next;
        self.job_id_next += 1;
        id
    }

    fn buggify_fires(&mut self, site: Site) -> bool {
        self.buggify.as_mut().is_some_and(|b| b.fires(site))
    }

    /// True if a compaction is running or could start: a stall must be able to end.
    fn compaction_pending(&self) -> bool {
        let mut cursor = self.compact_cursor.clone();
        self.compaction_in_flight.is_some()
            || version::pick(&self.version, &self.opts.compaction, &mut cursor).is_some()
    }

    /// Whether the memtable is to be frozen: it holds `memtable_bytes_max`, or its write-ahead
    /// log has grown to `WAL_BYTES_PER_MEMTABLE_MAX` times that (a few hot keys overwritten
    /// again and again keep the memtable small, and the log must not grow without bound: it is
    /// replayed at every start).
    fn memtable_full(&self) -> bool {
        let max = self.opts.memtable_bytes_max;
        self.mem.size_bytes() >= max
            || self.mem.written_bytes() >= max.saturating_mul(WAL_BYTES_PER_MEMTABLE_MAX)
    }

    fn smallest_snapshot(&self) -> SeqNo {
        self.snapshots.keys().next().copied().unwrap_or(self.last_seq)
    }

    fn check_invariants(&self) {
        if cfg!(debug_assertions) {
            assert!(self.durable_seq <= self.last_seq);
            assert!(self.frozen.len() <= self.opts.frozen_memtables_max);
            assert!(self.retired.len() <= self.opts.frozen_memtables_max);
            assert!(self.sync_in_flight.is_none_or(|s| s <= self.last_seq));
            assert_eq!(self.tables.len(), self.version.files_count());
        }
    }
}

/// A range scan: yields the visible keys in order.
pub struct Scan<'a> {
    inner: VisibleIter<'a>,
    skip: Option<Bytes>,
    failed: bool,
}

impl Iterator for Scan<'_> {
    type Item = Result<KeyValue>;

    fn next(&mut self) -> Option<Result<KeyValue>> {
        if self.failed {
            return None;
        }
        loop {
            match self.inner.next_visible() {
                Ok(Some(e)) => {
                    if self.skip.as_ref() == Some(&e.user) {
                        continue;
                    }
                    return Some(Ok(KeyValue {
                        key: e.user.slice(KEYSPACE_PREFIX_BYTES..),
                        value: e.value,
                        expire_at_ms: e.expire_at_ms,
                        seq: e.seq,
                    }));
                }
                Ok(None) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

fn internal_user_key(ks: KeyspaceId, key: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(KEYSPACE_PREFIX_BYTES + key.len());
    v.extend_from_slice(&ks.0.to_be_bytes());
    v.extend_from_slice(key);
    Bytes::from(v)
}

/// Marks the first record of every WAL file.
const WAL_MAGIC: &[u8; 8] = b"ringkvWL";
/// The WAL format version this build writes and the newest it reads.
pub const WAL_FORMAT_VERSION: u32 = 1;

/// The framed header record that starts every WAL file: magic and format version.
fn wal_header() -> Vec<u8> {
    let mut payload = WAL_MAGIC.to_vec();
    payload.extend_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    let mut buf = Vec::new();
    put_record(&mut buf, &payload);
    buf
}

enum HeaderError {
    Bad,
    Newer(u32),
}

fn check_wal_header(payload: &[u8]) -> std::result::Result<(), HeaderError> {
    if payload.len() != WAL_MAGIC.len() + 4 || &payload[..WAL_MAGIC.len()] != WAL_MAGIC {
        return Err(HeaderError::Bad);
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&payload[WAL_MAGIC.len()..]);
    match u32::from_le_bytes(v) {
        WAL_FORMAT_VERSION => Ok(()),
        newer if newer > WAL_FORMAT_VERSION => Err(HeaderError::Newer(newer)),
        _ => Err(HeaderError::Bad),
    }
}

fn validate_options(o: &Options) -> Result<()> {
    let bad = |what: &str| Err(Error::Protocol(format!("invalid options: {what}")));
    let c = &o.compaction;
    let level0_trigger = match c.style {
        crate::version::CompactionStyle::Leveled => c.level0_files_trigger,
        crate::version::CompactionStyle::SizeTiered => c.tiered_runs_trigger,
    };
    if c.level0_files_stall <= level0_trigger.max(1) {
        return bad("level0_files_stall must be above the level-0 compaction trigger");
    }
    if o.compaction.levels_count < 2 {
        return bad("levels_count must be at least 2");
    }
    if o.frozen_memtables_max == 0 || o.batch_ops_max == 0 {
        return bad("frozen_memtables_max and batch_ops_max must be positive");
    }
    // A batch is one WAL record; its encoding adds a few bytes per op to the payload.
    let record_bytes_max = crate::record::RECORD_PAYLOAD_BYTES_MAX / 2;
    if o.batch_bytes_max > record_bytes_max || o.batch_ops_max > record_bytes_max / 64 {
        return bad("batch_bytes_max or batch_ops_max too large for one WAL record");
    }
    if o.table.block_size_bytes < 64 || o.table.restart_interval == 0 {
        return bad("block_size_bytes must be at least 64 and restart_interval positive");
    }
    if let Err(reason) = o.table.compression.validate() {
        return bad(&format!("table.compression: {reason}"));
    }
    Ok(())
}

/// Replays WAL files in order into `mem`. Returns the report, the files replayed (fully or up to
/// where replay stopped) and the later files that must be removed because replay stopped.
fn replay_wals<V: Vfs>(
    vfs: &V,
    numbers: &[u64],
    state: &ManifestState,
    mem: &mut Memtable,
) -> Result<(RecoveryReport, Replay)> {
    let mut report = RecoveryReport { last_seq: state.last_seq, ..RecoveryReport::default() };
    let (mut replayed, mut stale, mut unused) = (Vec::new(), Vec::new(), Vec::new());
    for &n in numbers {
        if !stale.is_empty() {
            stale.push(n);
            continue;
        }
        let name = wal_name(n);
        let file = vfs.open(&name).map_err(|e| Error::io("open", &name, e))?;
        let data = read_all(&file).map_err(|e| Error::io("read_at", &name, e))?;
        let records_before = report.records_replayed;
        let mut reader = RecordReader::new(&data);
        let mut stop: Option<(u64, String)> = None;
        if let Some(header) = reader.next() {
            match check_wal_header(header) {
                Ok(()) => {}
                Err(HeaderError::Newer(found)) => {
                    return Err(Error::UnsupportedVersion {
                        path: name,
                        found,
                        supported: WAL_FORMAT_VERSION,
                    })
                }
                Err(HeaderError::Bad) => stop = Some((0, "bad WAL header".into())),
            }
        }
        let mut gap_at_start = false;
        let mut first_record = true;
        while let Some(payload) = reader.next().filter(|_| stop.is_none()) {
            let record_at =
                (reader.offset() - payload.len() - crate::record::RECORD_HEADER_BYTES) as u64;
            let Some((first, ops)) = decode_batch(payload) else {
                stop = Some((record_at, "undecodable batch".into()));
                break;
            };
            if ops.is_empty() {
                first_record = false;
                continue;
            }
            // Sequence numbers come from the file: one past the trailer's 56 bits (or past
            // u64) is damage, not a write (an overflow here was found by fuzzing wal_replay:
            // regressions/wal_replay/sequence-number-overflow).
            let Some(last) = first.checked_add(ops.len() as u64 - 1).filter(|l| *l <= SEQ_MAX)
            else {
                stop = Some((record_at, format!("sequence number {first} out of range")));
                break;
            };
            if last <= report.last_seq {
                first_record = false;
                continue; // already in a table
            }
            if report.last_seq.checked_add(1) != Some(first) {
                // A file that starts past a gap holds writes after ones that were lost: neither
                // it nor any later file may be replayed.
                gap_at_start = first_record;
                stop = Some((
                    record_at,
                    format!("sequence gap: expected {}, found {first}", report.last_seq + 1),
                ));
                break;
            }
            if let Some(op) = ops.iter().find(|op| !state.keyspaces.contains_key(&op.keyspace.0)) {
                stop = Some((record_at, format!("unknown keyspace {}", op.keyspace.0)));
                break;
            }
            for (i, op) in ops.into_iter().enumerate() {
                let value =
                    MemValue { kind: op.kind, expire_at_ms: op.expire_at_ms, value: op.value };
                let key = internal_user_key(op.keyspace, &op.key);
                mem.insert(key, first + i as u64, value, false);
            }
            report.last_seq = last;
            report.records_replayed += 1;
            first_record = false;
        }
        if stop.is_none() {
            if let Some(bad) = reader.bad() {
                stop = Some((bad.offset, bad.reason.clone()));
            }
        }
        if gap_at_start {
            stale.push(n);
        } else if report.records_replayed == records_before {
            // Nothing in it is needed (empty, already in tables, or torn from the start).
            unused.push(n);
        } else {
            replayed.push(n);
            report.wal_files_replayed += 1;
        }
        // A torn tail ends this file only: the next file goes on if its first record follows
        // the last one replayed (it was written after an earlier recovery stopped here).
        if let Some((offset, reason)) = stop {
            report.wal_stop.get_or_insert(WalStop { file: name, offset, reason });
        }
    }
    Ok((report, Replay { replayed, stale, unused }))
}

/// Which WAL files recovery used.
struct Replay {
    /// Files that contributed records, in order.
    replayed: Vec<u64>,
    /// Files past a sequence gap: they must be removed before new writes.
    stale: Vec<u64>,
    /// Files that contributed nothing and can simply be removed.
    unused: Vec<u64>,
}

/// Removes files no manifest names: tables left by interrupted jobs, WALs already flushed,
/// and manifests other than the current one.
fn remove_garbage<V: Vfs>(
    vfs: &V,
    names: &[String],
    state: &ManifestState,
    manifest_number: u64,
) -> Result<()> {
    let live: BTreeSet<u64> = state.levels.iter().flat_map(|l| l.keys().copied()).collect();
    for name in names {
        let garbage = match parse_name(name) {
            Some(("sst", n)) => !live.contains(&n),
            Some(("wal", n)) => n < state.log_number,
            Some(("manifest", n)) => n != manifest_number,
            _ => false,
        };
        if garbage {
            vfs.remove(name).map_err(|e| Error::io("remove", name, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simfs::{CrashMode, SimFs};
    use crate::version::CompactionStyle;

    fn small_opts() -> Options {
        Options {
            memtable_bytes_max: 8 << 10,
            table: TableOptions { block_size_bytes: 512, ..TableOptions::default() },
            compaction: CompactionOptions {
                level1_bytes_max: 32 << 10,
                table_file_bytes_max: 8 << 10,
                ..CompactionOptions::default()
            },
            block_cache_bytes_max: 16 << 10,
            manifest_bytes_max: 4 << 10,
            batch_bytes_max: 1 << 20,
            ..Options::default()
        }
    }

    fn open(fs: &SimFs) -> (Engine<SimFs>, KeyspaceId) {
        let mut e = Engine::open(fs.clone(), small_opts()).unwrap();
        let ks = e.create_keyspace("data").unwrap();
        (e, ks)
    }

    fn key(i: u32) -> Vec<u8> {
        format!("key{i:06}").into_bytes()
    }

    fn val(i: u32, round: u32) -> Vec<u8> {
        format!("value-{i}-{round}-{}", "x".repeat((i % 50) as usize)).into_bytes()
    }

    #[test]
    fn put_get_delete_round_trip_through_flushes_and_compactions() {
        let fs = SimFs::new(1);
        let (mut e, ks) = open(&fs);
        for round in 0..3 {
            for i in 0..2000 {
                e.put(ks, &key(i), &val(i, round)).unwrap();
                e.run_pending().unwrap();
            }
        }
        for i in (0..2000).step_by(3) {
            e.delete(ks, &key(i)).unwrap();
            e.run_pending().unwrap();
        }
        assert!(e.stats().flushes > 5, "{:?}", e.stats());
        assert!(e.stats().compactions > 0, "{:?}", e.stats());
        assert!(e.files_per_level().iter().skip(1).any(|&n| n > 0));
        for i in 0..2000 {
            let want = (i % 3 != 0).then(|| Bytes::from(val(i, 2)));
            assert_eq!(e.get(ks, &key(i)).unwrap(), want, "key {i}");
        }
    }

    #[test]
    fn scan_respects_bounds_keyspaces_and_tombstones() {
        let fs = SimFs::new(2);
        let (mut e, ks) = open(&fs);
        let other = e.create_keyspace("other").unwrap();
        for i in 0..500 {
            e.put(ks, &key(i), &val(i, 0)).unwrap();
            e.put(other, &key(i), b"o").unwrap();
            e.run_pending().unwrap();
        }
        e.delete(ks, &key(101)).unwrap();
        let got: Vec<Bytes> =
            e.scan(ks, key(100)..key(105), None).unwrap().map(|kv| kv.unwrap().key).collect();
        let want: Vec<Bytes> = [100, 102, 103, 104].iter().map(|&i| Bytes::from(key(i))).collect();
        assert_eq!(got, want);
        let excl: Vec<Bytes> = e
            .scan(ks, (Bound::Excluded(key(498)), Bound::Unbounded), None)
            .unwrap()
            .map(|kv| kv.unwrap().key)
            .collect();
        assert_eq!(excl, vec![Bytes::from(key(499))]);
        let n = e.scan::<&[u8]>(ks, .., None).unwrap().count();
        assert_eq!(n, 499);
        let incl = e.scan(ks, key(0)..=key(2), None).unwrap().count();
        assert_eq!(incl, 3);
    }

    #[test]
    fn snapshot_reads_ignore_later_writes_even_after_compaction() {
        let fs = SimFs::new(3);
        let (mut e, ks) = open(&fs);
        for i in 0..300 {
            e.put(ks, &key(i), &val(i, 0)).unwrap();
        }
        let snap = e.snapshot();
        for i in 0..300 {
            e.put(ks, &key(i), &val(i, 1)).unwrap();
            if i % 2 == 0 {
                e.delete(ks, &key(i)).unwrap();
            }
            e.run_pending().unwrap();
        }
        e.request_flush().unwrap();
        e.request_full_compaction();
        e.run_pending().unwrap();
        for i in 0..300 {
            let old = e.get_at(ks, &key(i), Some(&snap)).unwrap().unwrap();
            assert_eq!(old.value, Bytes::from(val(i, 0)));
        }
        let at_snap = e.scan::<&[u8]>(ks, .., Some(&snap)).unwrap().count();
        assert_eq!(at_snap, 300);
        assert_eq!(e.scan::<&[u8]>(ks, .., None).unwrap().count(), 150);
        e.release(snap);
        e.request_full_compaction();
        e.run_pending().unwrap();
        assert_eq!(e.scan::<&[u8]>(ks, .., None).unwrap().count(), 150);
    }

    #[test]
    fn overwrites_hold_one_version_per_key_and_the_log_still_freezes_the_memtable() {
        let fs = SimFs::new(5);
        let (mut e, ks) = open(&fs);
        let value = |i: u32, round: u32| format!("{i}-{round}-{}", "x".repeat(80)).into_bytes();
        // 20 keys of about 150 accounted bytes each: 3 KB held, against a memtable of 8 KiB.
        for round in 0..6 {
            for i in 0..20 {
                e.put(ks, &key(i), &value(i, round)).unwrap();
                e.run_pending().unwrap();
            }
        }
        // 18 KB written: with every version kept this froze two memtables.
        assert_eq!(e.stats().flushes, 0, "overwrites replaced their older versions");
        assert_eq!(e.mem.len(), 20);
        // The log is bounded all the same: at four times the memtable's size it freezes.
        for round in 6..40 {
            for i in 0..20 {
                e.put(ks, &key(i), &value(i, round)).unwrap();
                e.run_pending().unwrap();
            }
        }
        let flushes = e.stats().flushes;
        assert!((2..=6).contains(&flushes), "{flushes} flushes for 120 KB of log");
        for i in 0..20 {
            assert_eq!(e.get(ks, &key(i)).unwrap(), Some(Bytes::from(value(i, 39))));
        }
        drop(e);
        fs.crash(CrashMode::DropUnsynced);
        let (e, ks) = open(&fs);
        for i in 0..20 {
            let read = e.get(ks, &key(i)).unwrap().expect("synced by the flushes or the WAL");
            assert!(read.starts_with(format!("{i}-").as_bytes()));
        }
    }

    #[test]
    fn synced_writes_survive_a_crash_and_unsynced_ones_may_not() {
        let fs = SimFs::new(4);
        let (mut e, ks) = open(&fs);
        e.put(ks, b"a", b"1").unwrap();
        let durable = e.sync().unwrap();
        e.put(ks, b"b", b"2").unwrap();
        assert_eq!(e.durable_seq(), durable);
        drop(e);
        fs.crash(CrashMode::DropUnsynced);
        let (e, ks) = open(&fs);
        assert_eq!(e.get(ks, b"a").unwrap(), Some(Bytes::from_static(b"1")));
        assert_eq!(e.get(ks, b"b").unwrap(), None);
        assert_eq!(e.last_seq(), durable);
    }

    #[test]
    fn group_commit_hands_out_one_sync_at_a_time() {
        let fs = SimFs::new(5);
        let (mut e, ks) = open(&fs);
        e.put(ks, b"a", b"1").unwrap();
        let job = e.poll_sync().unwrap();
        assert!(e.poll_sync().is_none(), "one sync in flight");
        let s2 = e.put(ks, b"b", b"2").unwrap();
        let r = job.run(e.vfs());
        assert_eq!(e.synced(r).unwrap(), s2 - 1);
        let job = e.poll_sync().unwrap();
        assert_eq!(job.upto(), s2);
        let r = job.run(e.vfs());
        assert_eq!(e.synced(r).unwrap(), s2);
        assert!(e.poll_sync().is_none());
    }

    #[test]
    fn writes_stall_when_too_much_waits_behind_a_sync_in_flight() {
        let fs = SimFs::new(13);
        let mut opts = small_opts();
        opts.wal_pending_bytes_max = 1 << 10;
        let mut e = Engine::open(fs.clone(), opts).unwrap();
        let ks = e.create_keyspace("data").unwrap();
        e.put(ks, b"a", b"1").unwrap();
        let job = e.poll_sync().unwrap();
        let mut stalled = None;
        for i in 0..100 {
            if let Err(err) = e.put(ks, &key(i), &[7u8; 100]) {
                stalled = Some(err);
                break;
            }
        }
        assert!(matches!(stalled, Some(Error::SyncStall { limit: 1024, .. })), "{stalled:?}");
        let r = job.run(&fs);
        e.synced(r).unwrap();
        e.put(ks, b"b", b"2").unwrap();
        assert_eq!(e.sync().unwrap(), e.last_seq());
    }

    #[test]
    fn verify_tables_reads_past_the_cache_and_finds_a_flipped_bit() {
        let fs = SimFs::new(77);
        let mut e = Engine::open(fs.clone(), Options::default()).unwrap();
        let ks = e.create_keyspace("d").unwrap();
        for i in 0..500u32 {
            e.put(ks, format!("k{i:05}").as_bytes(), &[3u8; 64]).unwrap();
        }
        e.request_flush().unwrap();
        e.run_pending().unwrap();
        assert_eq!(e.verify_tables().unwrap(), 500);
        // Every block is in the cache now; a read would not see the damage, the verify does.
        for i in 0..500u32 {
            assert!(e.get(ks, format!("k{i:05}").as_bytes()).unwrap().is_some());
        }
        let table = fs.list().unwrap().into_iter().find(|n| n.ends_with(".sst")).unwrap();
        fs.corrupt(&table, 100).unwrap();
        assert!(e.get(ks, b"k00000").unwrap().is_some(), "served from the cache");
        let error = e.verify_tables().unwrap_err();
        assert!(error.is_corruption(), "{error}");
    }

    #[test]
    fn failed_sync_poisons_the_engine_with_the_reason() {
        let fs = SimFs::new(6);
        let (mut e, ks) = open(&fs);
        e.put(ks, b"a", b"1").unwrap();
        fs.fail_next_syncs(1);
        let err = e.sync().unwrap_err();
        assert!(matches!(err, Error::Io { op: "sync", .. }), "{err}");
        let err = e.put(ks, b"b", b"2").unwrap_err();
        assert!(err.to_string().contains("WAL sync failed"), "{err}");
        assert!(e.poll_sync().is_none(), "no retry of a failed fsync");
        assert_eq!(e.get(ks, b"a").unwrap(), Some(Bytes::from_static(b"1")));
    }

    #[test]
    fn corrupt_table_is_an_error_not_wrong_data() {
        let fs = SimFs::new(7);
        let (mut e, ks) = open(&fs);
        for i in 0..400 {
            e.put(ks, &key(i), &val(i, 0)).unwrap();
            e.run_pending().unwrap();
        }
        e.request_flush().unwrap();
        e.request_full_compaction();
        e.run_pending().unwrap();
        let table = fs.list().unwrap().into_iter().find(|n| n.ends_with(".sst")).unwrap();
        drop(e);
        let (len, _) = fs.file_state(&table).unwrap();
        fs.corrupt(&table, len / 3).unwrap();
        let (e, ks) = match Engine::open(fs.clone(), small_opts()) {
            Ok(e) => {
                let ks = e.keyspace("data").unwrap();
                (e, ks)
            }
            Err(err) => {
                assert!(err.is_corruption(), "{err}");
                return;
            }
        };
        let mut errors = 0;
        for i in 0..400 {
            match e.get(ks, &key(i)) {
                Ok(v) => assert_eq!(v, Some(Bytes::from(val(i, 0)))),
                Err(err) => {
                    assert!(err.is_corruption(), "{err}");
                    errors += 1;
                }
            }
        }
        assert!(errors > 0, "the flipped bit was in a data block");
        let scanned: Vec<Result<KeyValue>> = e.scan::<&[u8]>(ks, .., None).unwrap().collect();
        assert!(scanned.iter().any(|r| r.as_ref().is_err_and(Error::is_corruption)));
    }

    #[test]
    fn recovery_stops_at_a_torn_record_and_new_writes_follow_it() {
        let fs = SimFs::new(8);
        let (mut e, ks) = open(&fs);
        for i in 0..50 {
            e.put(ks, &key(i), &val(i, 0)).unwrap();
        }
        e.sync().unwrap();
        for i in 50..100 {
            e.put(ks, &key(i), &val(i, 0)).unwrap();
        }
        let _ = e.poll_sync().map(|j| j.run(&fs));
        drop(e);
        // The second sync's bytes were appended but the sync result never arrived: the crash
        // keeps a torn part of them.
        fs.crash(CrashMode::Torn);
        let (mut e, ks) = open(&fs);
        let recovered = e.last_seq();
        assert!(recovered >= 50);
        for i in 100..120 {
            e.put(ks, &key(i), &val(i, 1)).unwrap();
        }
        e.sync().unwrap();
        drop(e);
        fs.crash(CrashMode::Torn);
        let (e, ks) = open(&fs);
        for i in 100..120 {
            assert_eq!(e.get(ks, &key(i)).unwrap(), Some(Bytes::from(val(i, 1))), "key {i}");
        }
        assert_eq!(e.last_seq(), recovered + 20);
    }

    #[test]
    fn expired_entries_are_dropped_only_when_the_compaction_gets_a_clock() {
        let fs = SimFs::new(9);
        let (mut e, ks) = open(&fs);
        let mut b = Batch::new();
        b.put_with_expiry(ks, &b"ttl"[..], &b"v"[..], Some(1_000));
        b.put(ks, &b"keep"[..], &b"v"[..]);
        e.write(&b).unwrap();
        e.request_flush().unwrap();
        e.request_full_compaction();
        e.run_pending().unwrap();
        let got = e.get_at(ks, b"ttl", None).unwrap().unwrap();
        assert_eq!(got.expire_at_ms, Some(1_000));
        e.put(ks, b"more", b"v").unwrap();
        e.request_flush().unwrap();
        e.request_full_compaction();
        while let Some(job) = e.poll_job() {
            let r = job.with_now_wall_ms(1_000).run(&fs);
            e.finish(r).unwrap();
        }
        assert_eq!(e.get(ks, b"ttl").unwrap(), None);
        assert_eq!(e.get(ks, b"keep").unwrap(), Some(Bytes::from_static(b"v")));
    }

    #[test]
    fn size_tiered_style_keeps_reads_correct() {
        let fs = SimFs::new(10);
        let mut opts = small_opts();
        opts.compaction.style = CompactionStyle::SizeTiered;
        let mut e = Engine::open(fs.clone(), opts.clone()).unwrap();
        let ks = e.create_keyspace("data").unwrap();
        for round in 0..4 {
            for i in 0..1000 {
                e.put(ks, &key(i), &val(i, round)).unwrap();
                e.run_pending().unwrap();
            }
        }
        assert!(e.stats().compactions > 0);
        assert!(e.files_per_level().iter().skip(1).all(|&n| n == 0));
        for i in 0..1000 {
            assert_eq!(e.get(ks, &key(i)).unwrap(), Some(Bytes::from(val(i, 3))));
        }
        e.sync().unwrap();
        drop(e);
        let e = Engine::open(fs.clone(), opts).unwrap();
        assert_eq!(e.scan::<&[u8]>(ks, .., None).unwrap().count(), 1000);
    }

    #[test]
    fn wal_from_a_newer_format_is_refused_with_a_clear_message() {
        let fs = SimFs::new(12);
        let (mut e, ks) = open(&fs);
        e.put(ks, b"a", b"1").unwrap();
        e.sync().unwrap();
        let wal = e.wal.name.clone();
        drop(e);
        let mut data = read_all(&fs.open(&wal).unwrap()).unwrap();
        let mut payload = WAL_MAGIC.to_vec();
        payload.extend_from_slice(&7u32.to_le_bytes());
        let mut header = Vec::new();
        put_record(&mut header, &payload);
        data[..header.len()].copy_from_slice(&header);
        fs.remove(&wal).unwrap();
        fs.create(&wal).unwrap().append(&data).unwrap();
        let err = Engine::open(fs.clone(), small_opts()).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { found: 7, .. }), "{err}");
        assert!(err.to_string().contains(&wal), "{err}");
    }

    #[test]
    fn long_keys_are_looked_up_in_memory_and_in_tables() {
        let fs = SimFs::new(14);
        let (mut e, ks) = open(&fs);
        let long = vec![b'k'; 1000];
        e.put(ks, &long, b"in memtable").unwrap();
        assert_eq!(e.get(ks, &long).unwrap(), Some(Bytes::from_static(b"in memtable")));
        e.request_flush().unwrap();
        e.run_pending().unwrap();
        assert_eq!(e.get(ks, &long).unwrap(), Some(Bytes::from_static(b"in memtable")));
        assert_eq!(e.get(ks, &long[..999]).unwrap(), None);
        let kv = e.get_at(ks, &long, None).unwrap().unwrap();
        assert_eq!(kv.key, Bytes::from(long));
    }

    #[test]
    fn jobs_and_results_can_cross_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Job>();
        assert_send::<JobResult>();
        assert_send::<SyncJob>();
        assert_send::<SyncResult>();
        assert_send::<Engine<crate::StdFs>>();
        // A job runs on another thread against its own handle to the same files.
        let dir = std::env::temp_dir().join(format!("ringkv-threads-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let fs = crate::StdFs::new(&dir).unwrap();
        let mut e = Engine::open(fs.clone(), small_opts()).unwrap();
        let ks = e.create_keyspace("data").unwrap();
        for i in 0..100 {
            e.put(ks, &key(i), &val(i, 0)).unwrap();
        }
        e.request_flush().unwrap();
        let job = e.poll_job().unwrap();
        let worker_fs = fs.clone();
        let result = std::thread::scope(|s| s.spawn(move || job.run(&worker_fs)).join().unwrap());
        e.finish(result).unwrap();
        assert_eq!(e.files_per_level()[0], 1);
        assert_eq!(e.get(ks, &key(7)).unwrap(), Some(Bytes::from(val(7, 0))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn restarts_without_writes_do_not_pile_up_wal_files() {
        let fs = SimFs::new(15);
        let (mut e, ks) = open(&fs);
        e.put(ks, b"a", b"1").unwrap();
        e.sync().unwrap();
        drop(e);
        for _ in 0..10 {
            let e = Engine::open(fs.clone(), small_opts()).unwrap();
            assert_eq!(e.get(ks, b"a").unwrap(), Some(Bytes::from_static(b"1")));
        }
        let wals = fs.list().unwrap().iter().filter(|n| n.ends_with(".wal")).count();
        assert!(wals <= 2, "{wals} WAL files: the one with data and the current one");
    }

    #[test]
    fn writes_stall_while_level0_waits_for_a_compaction() {
        let fs = SimFs::new(16);
        let mut opts = small_opts();
        opts.compaction.level0_files_trigger = 2;
        opts.compaction.level0_files_stall = 3;
        let mut e = Engine::open(fs.clone(), opts).unwrap();
        let ks = e.create_keyspace("data").unwrap();
        let mut held = Vec::new();
        let mut stall = None;
        for i in 0..5000 {
            if let Err(err) = e.put(ks, &key(i), &val(i, 0)) {
                stall = Some(err);
                break;
            }
            // A driver whose compaction worker is slow: flushes finish, compactions do not.
            while let Some(job) = e.poll_job() {
                if job.is_flush() {
                    let r = job.run(&fs);
                    e.finish(r).unwrap();
                } else {
                    held.push(job);
                }
            }
        }
        let err = stall.expect("writes stalled");
        assert!(matches!(err, Error::WriteStall { what: "level-0 tables", limit: 3, .. }), "{err}");
        for job in held {
            let r = job.run(&fs);
            e.finish(r).unwrap();
        }
        e.run_pending().unwrap();
        assert!(e.files_per_level()[0] < 3);
        e.put(ks, b"after", b"stall").unwrap();
    }

    #[test]
    fn obsolete_files_are_removed_by_a_job_not_by_finish() {
        let fs = SimFs::new(17);
        let (mut e, ks) = open(&fs);
        for i in 0..1500 {
            e.put(ks, &key(i), &val(i, 0)).unwrap();
            e.run_pending().unwrap();
        }
        e.request_flush().unwrap();
        e.request_full_compaction();
        // Run only the flush and the compaction; their inputs become garbage.
        while let Some(job) = e.poll_job() {
            if job.describe().starts_with("cleanup") {
                let tables =
                    |fs: &SimFs| fs.list().unwrap().iter().filter(|n| n.ends_with(".sst")).count();
                let live: usize = e.files_per_level().iter().sum();
                assert!(tables(&fs) > live, "finish left the obsolete tables for the job");
                let r = job.run(&fs);
                e.finish(r).unwrap();
                assert_eq!(tables(&fs), live, "the cleanup job removed them");
                assert!(e.poll_job().is_none());
                return;
            }
            let r = job.run(&fs);
            e.finish(r).unwrap();
        }
        panic!("no cleanup job was handed out");
    }

    #[test]
    fn limits_give_clear_errors() {
        let fs = SimFs::new(11);
        let (mut e, ks) = open(&fs);
        let big = vec![0u8; e.options().key_bytes_max + 1];
        let err = e.put(ks, &big, b"v").unwrap_err();
        assert!(matches!(err, Error::TooLarge { what: "key", .. }), "{err}");
        let mut b = Batch::new();
        for i in 0..3 {
            b.put(ks, key(i), vec![0u8; e.options().batch_bytes_max / 2]);
        }
        let err = e.write(&b).unwrap_err();
        assert!(matches!(err, Error::TooLarge { what: "batch (bytes)", .. }), "{err}");
        let err = e.put(KeyspaceId(77), b"k", b"v").unwrap_err();
        assert!(matches!(err, Error::UnknownKeyspace(77)));
        assert_eq!(e.create_keyspace("data").unwrap(), ks);
    }

    #[test]
    fn stdfs_engine_reopens_with_its_data() {
        let dir = std::env::temp_dir().join(format!("ringkv-engine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let mut e = Engine::open(crate::StdFs::new(&dir).unwrap(), small_opts()).unwrap();
            let ks = e.create_keyspace("data").unwrap();
            for i in 0..3000 {
                e.put(ks, &key(i), &val(i, 0)).unwrap();
                e.run_pending().unwrap();
            }
            e.sync().unwrap();
        }
        let e = Engine::open(crate::StdFs::new(&dir).unwrap(), small_opts()).unwrap();
        let ks = e.keyspace("data").unwrap();
        for i in (0..3000).step_by(7) {
            assert_eq!(e.get(ks, &key(i)).unwrap(), Some(Bytes::from(val(i, 0))));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
