//! The engines under test behind one trait: ringkv-storage (with a threaded job driver), fjall,
//! and RocksDB when the `rocksdb` feature is on.

use std::path::Path;
use std::sync::mpsc;
use std::thread;

use ringkv_storage::{
    Batch, Compression, Engine, Error, Job, JobResult, KeyspaceId, Options, StdFs,
};

/// The block compression an engine is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// No compression.
    None,
    /// LZ4 (every engine has it).
    Lz4,
    /// Zstandard at a level (ringkv and RocksDB; fjall 3 has no Zstd).
    Zstd(i32),
}

impl Codec {
    /// Parses a `--compression` entry.
    pub fn parse(name: &str, zstd_level: i32) -> Result<Codec, String> {
        match name {
            "none" => Ok(Codec::None),
            "lz4" => Ok(Codec::Lz4),
            "zstd" => {
                Compression::Zstd { level: zstd_level }.validate()?;
                Ok(Codec::Zstd(zstd_level))
            }
            other => Err(format!("unknown compression {other:?} (none, lz4, zstd)")),
        }
    }

    /// Its name in results.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Lz4 => "lz4",
            Codec::Zstd(_) => "zstd",
        }
    }
}

/// Whether engine `name` can run with `codec`.
pub fn supports(name: &str, codec: Codec) -> bool {
    !(name == "fjall" && matches!(codec, Codec::Zstd(_)))
}

/// What every engine under test offers the workloads.
pub trait BenchEngine {
    /// The engine's name in results.
    fn name(&self) -> &'static str;
    /// Writes a batch of (key, value) pairs atomically, without a sync.
    fn write(&mut self, batch: &[([u8; 16], &[u8])]);
    /// Syncs everything written.
    fn sync(&mut self);
    /// True if `key` has a value.
    fn get(&mut self, key: &[u8]) -> bool;
    /// Reads up to `count` keys from `start` on; returns how many were read.
    fn scan(&mut self, start: &[u8], count: usize) -> usize;
    /// Reads every key in order; returns how many there were.
    fn scan_all(&mut self) -> usize;
    /// Waits until background work (flushes, compactions) is done.
    fn settle(&mut self);
    /// Flushes and compacts everything into the fewest tables.
    fn compact_all(&mut self);
    /// Engine-specific notes for the human-readable report.
    fn notes(&self) -> String {
        String::new()
    }
}

/// Opens engine `name` in `dir` with a block cache of `cache_bytes`, compressing data blocks
/// with `codec` (which [`supports`] must allow).
pub fn open(
    name: &str,
    dir: &Path,
    sync: bool,
    cache_bytes: usize,
    codec: Codec,
) -> Box<dyn BenchEngine> {
    std::fs::create_dir_all(dir).expect("create the engine's directory");
    assert!(supports(name, codec), "{name} cannot run with {codec:?}");
    match name {
        "ringkv" => Box::new(Ringkv::open(dir, cache_bytes, codec)),
        "fjall" => Box::new(Fjall::open(dir, sync, cache_bytes, codec)),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Box::new(rocks::Rocks::open(dir, sync, cache_bytes, codec)),
        other => panic!(
            "unknown engine {other:?} (this build knows ringkv, fjall{})",
            if cfg!(feature = "rocksdb") { ", rocksdb" } else { "" }
        ),
    }
}

/// The name an engine reports in results.
pub fn display_name(name: &str) -> &'static str {
    match name {
        "ringkv" => "ringkv",
        "fjall" => "fjall",
        "rocksdb" => "rocksdb",
        _ => "unknown",
    }
}

/// Counts the items of an iterator of value lengths, making sure every value was read.
fn count_items(lens: impl Iterator<Item = usize>) -> usize {
    let (mut n, mut bytes) = (0, 0);
    for len in lens {
        n += 1;
        bytes += len;
    }
    std::hint::black_box(bytes);
    n
}

/// ringkv-storage on real files, with flushes and compactions run on two worker threads (one
/// per job slot), the way a production driver runs them.
struct Ringkv {
    engine: Engine<StdFs>,
    _lock: ringkv_storage::DirLock,
    ks: KeyspaceId,
    flush_tx: mpsc::Sender<Job>,
    compact_tx: mpsc::Sender<Job>,
    done_rx: mpsc::Receiver<JobResult>,
    in_flight: usize,
    /// Time writes spent waiting for a flush (write stalls).
    stalled: std::time::Duration,
    /// Time the writer spent applying finished jobs.
    finishing: std::time::Duration,
}

impl Ringkv {
    fn open(dir: &Path, cache_bytes: usize, codec: Codec) -> Ringkv {
        let fs = StdFs::new(dir).expect("root directory");
        let lock = fs.lock().expect("lock the directory");
        let mut opts = Options { block_cache_bytes_max: cache_bytes, ..Options::default() };
        opts.table.compression = match codec {
            Codec::None => Compression::None,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd(level) => Compression::Zstd { level },
        };
        let mut engine = Engine::open(fs.clone(), opts).expect("open ringkv");
        let ks = engine.create_keyspace("bench").expect("keyspace");
        let (done_tx, done_rx) = mpsc::channel();
        let spawn_worker = |fs: StdFs, done: mpsc::Sender<JobResult>| {
            let (tx, rx) = mpsc::channel::<Job>();
            thread::spawn(move || {
                for job in rx {
                    if done.send(job.run(&fs)).is_err() {
                        break;
                    }
                }
            });
            tx
        };
        let flush_tx = spawn_worker(fs.clone(), done_tx.clone());
        let compact_tx = spawn_worker(fs, done_tx);
        Ringkv {
            engine,
            _lock: lock,
            ks,
            flush_tx,
            compact_tx,
            done_rx,
            in_flight: 0,
            stalled: std::time::Duration::ZERO,
            finishing: std::time::Duration::ZERO,
        }
    }

    /// Runs jobs until none is due or in flight.
    fn wait_idle(&mut self) {
        self.pump(false);
        while self.in_flight > 0 {
            self.pump(true);
        }
    }

    /// Hands out due jobs and applies finished ones; blocks for one result if `wait`.
    fn pump(&mut self, wait: bool) {
        if wait && self.in_flight > 0 {
            let t = std::time::Instant::now();
            let r = self.done_rx.recv().expect("worker alive");
            self.stalled += t.elapsed();
            self.in_flight -= 1;
            let t = std::time::Instant::now();
            self.engine.finish(r).expect("job applied");
            self.finishing += t.elapsed();
        }
        while let Ok(r) = self.done_rx.try_recv() {
            self.in_flight -= 1;
            let t = std::time::Instant::now();
            self.engine.finish(r).expect("job applied");
            self.finishing += t.elapsed();
        }
        while let Some(job) = self.engine.poll_job() {
            self.in_flight += 1;
            let tx = if job.is_flush() { &self.flush_tx } else { &self.compact_tx };
            tx.send(job).expect("worker alive");
        }
    }
}

impl BenchEngine for Ringkv {
    fn name(&self) -> &'static str {
        "ringkv"
    }

    fn write(&mut self, batch: &[([u8; 16], &[u8])]) {
        let mut b = Batch::new();
        for (k, v) in batch {
            b.put(self.ks, k.to_vec(), v.to_vec());
        }
        loop {
            match self.engine.write(&b) {
                Ok(_) => break,
                Err(Error::WriteStall { .. }) => self.pump(true),
                Err(e) => panic!("ringkv write failed: {e}"),
            }
        }
        self.pump(false);
    }

    fn sync(&mut self) {
        self.engine.sync().expect("ringkv sync");
    }

    fn get(&mut self, key: &[u8]) -> bool {
        self.engine.get(self.ks, key).expect("ringkv get").is_some()
    }

    fn scan(&mut self, start: &[u8], count: usize) -> usize {
        count_items(
            self.engine
                .scan(self.ks, start.., None)
                .expect("ringkv scan")
                .take(count)
                .map(|kv| kv.expect("ringkv scan item").value.len()),
        )
    }

    fn scan_all(&mut self) -> usize {
        count_items(
            self.engine
                .scan::<&[u8]>(self.ks, .., None)
                .expect("ringkv scan")
                .map(|kv| kv.expect("ringkv scan item").value.len()),
        )
    }

    fn settle(&mut self) {
        // Like the peers' settle: write the memtable out, then let the compactions it triggers
        // finish.
        self.wait_idle();
        self.engine.request_flush().expect("ringkv flush");
        self.wait_idle();
    }

    fn notes(&self) -> String {
        let st = self.engine.stats();
        format!(
            "ringkv: waited {:.2}s for jobs (stalls and settling), {:.2}s applying results; {} flushes, {} compactions, files per level {:?}, engine write amp {:.2}, cache hits {} misses {}",
            self.stalled.as_secs_f64(),
            self.finishing.as_secs_f64(),
            st.flushes,
            st.compactions,
            self.engine.files_per_level(),
            st.write_amp(),
            st.cache_hits,
            st.cache_misses
        )
    }

    fn compact_all(&mut self) {
        self.settle();
        self.engine.request_full_compaction();
        self.wait_idle();
        self.engine.sync().expect("sync");
    }
}

/// fjall 3 with its default configuration except the cache size, set to ringkv's, and the
/// data-block compression of every level set to the codec under test (fjall's own default is
/// none on levels 0 and 1 and LZ4 below; index blocks stay uncompressed, as in ringkv). Background
/// threads, journal without a sync per write; `--sync` persists with fdatasync after every batch.
struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path, _sync: bool, cache_bytes: usize, codec: Codec) -> Fjall {
        // The same block cache budget as ringkv (fjall's own default is 32 MiB).
        let db = fjall::Database::builder(dir)
            .cache_size(cache_bytes as u64)
            .open()
            .expect("open fjall");
        let compression = match codec {
            Codec::Lz4 => fjall::CompressionType::Lz4,
            // `supports` keeps Zstd away from fjall.
            Codec::None | Codec::Zstd(_) => fjall::CompressionType::None,
        };
        let options = move || {
            fjall::KeyspaceCreateOptions::default()
                .data_block_compression_policy(fjall::config::CompressionPolicy::all(compression))
        };
        let ks = db.keyspace("bench", options).expect("fjall keyspace");
        Fjall { db, ks }
    }
}

impl BenchEngine for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn write(&mut self, batch: &[([u8; 16], &[u8])]) {
        if let [(k, v)] = batch {
            self.ks.insert(k.to_vec(), v.to_vec()).expect("fjall insert");
            return;
        }
        let mut b = self.db.batch();
        for (k, v) in batch {
            b.insert(&self.ks, k.to_vec(), v.to_vec());
        }
        b.commit().expect("fjall commit");
    }

    fn sync(&mut self) {
        self.db.persist(fjall::PersistMode::SyncData).expect("fjall persist");
    }

    fn get(&mut self, key: &[u8]) -> bool {
        self.ks.get(key).expect("fjall get").is_some()
    }

    fn scan(&mut self, start: &[u8], count: usize) -> usize {
        count_items(
            self.ks
                .range(start..)
                .take(count)
                .map(|g| g.into_inner().expect("fjall scan item").1.len()),
        )
    }

    fn scan_all(&mut self) -> usize {
        count_items(self.ks.iter().map(|g| g.into_inner().expect("fjall scan item").1.len()))
    }

    fn settle(&mut self) {
        // fjall flushes and compacts on its own threads; wait for the memtable to be written.
        self.ks.rotate_memtable_and_wait().expect("fjall flush");
    }

    fn compact_all(&mut self) {
        self.ks.rotate_memtable_and_wait().expect("fjall flush");
        self.ks.major_compact().expect("fjall major compaction");
        self.db.persist(fjall::PersistMode::SyncAll).expect("fjall persist");
    }
}

#[cfg(feature = "rocksdb")]
mod rocks {
    use std::path::Path;

    use super::BenchEngine;

    /// RocksDB with default options, the shared cache budget, a bloom filter of 10 bits per key
    /// (as ringkv-storage and fjall have; RocksDB has none by default) and its WAL; `--sync`
    /// sets sync on every write.
    pub struct Rocks {
        db: rocksdb::DB,
        write_opts: rocksdb::WriteOptions,
    }

    impl Rocks {
        pub fn open(dir: &Path, sync: bool, cache_bytes: usize, codec: super::Codec) -> Rocks {
            let mut opts = rocksdb::Options::default();
            opts.create_if_missing(true);
            opts.set_compression_type(match codec {
                super::Codec::None => rocksdb::DBCompressionType::None,
                super::Codec::Lz4 => rocksdb::DBCompressionType::Lz4,
                super::Codec::Zstd(_) => rocksdb::DBCompressionType::Zstd,
            });
            if let super::Codec::Zstd(level) = codec {
                // window_bits, level, strategy, max_dict_bytes: only the level differs from
                // RocksDB's defaults.
                opts.set_compression_options(-14, level, 0, 0);
            }
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&rocksdb::Cache::new_lru_cache(cache_bytes));
            table.set_bloom_filter(10.0, false);
            opts.set_block_based_table_factory(&table);
            let db = rocksdb::DB::open(&opts, dir).expect("open rocksdb");
            let mut write_opts = rocksdb::WriteOptions::default();
            write_opts.set_sync(sync);
            Rocks { db, write_opts }
        }
    }

    impl BenchEngine for Rocks {
        fn name(&self) -> &'static str {
            "rocksdb"
        }

        fn write(&mut self, batch: &[([u8; 16], &[u8])]) {
            let mut b = rocksdb::WriteBatch::default();
            for (k, v) in batch {
                b.put(k, v);
            }
            self.db.write_opt(b, &self.write_opts).expect("rocksdb write");
        }

        fn sync(&mut self) {
            // Writes already sync when --sync is set (WriteOptions::set_sync).
        }

        fn get(&mut self, key: &[u8]) -> bool {
            self.db.get_pinned(key).expect("rocksdb get").is_some()
        }

        fn scan(&mut self, start: &[u8], count: usize) -> usize {
            let mode = rocksdb::IteratorMode::From(start, rocksdb::Direction::Forward);
            super::count_items(
                self.db.iterator(mode).take(count).map(|r| r.expect("rocksdb scan item").1.len()),
            )
        }

        fn scan_all(&mut self) -> usize {
            super::count_items(
                self.db
                    .iterator(rocksdb::IteratorMode::Start)
                    .map(|r| r.expect("rocksdb scan item").1.len()),
            )
        }

        fn settle(&mut self) {
            self.db.flush().expect("rocksdb flush");
        }

        fn compact_all(&mut self) {
            self.db.flush().expect("rocksdb flush");
            self.db.compact_range::<&[u8], &[u8]>(None, None);
        }
    }
}
