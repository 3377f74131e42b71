//! The crash oracle shared by the crash-safety tests: an engine on a `SimFs` plus a model of
//! what was written, kept outside the faulty filesystem.
//!
//! The model is the write history: every batch the engine accepted, with the sequence number of
//! its last op. After a crash and recovery the engine's `last_seq` says which prefix survived;
//! the oracle checks it is a batch boundary at or past the durable sequence number the engine
//! claimed before the crash, truncates the history to it and compares the whole state.
//!
//! Two keyspaces: model keys starting with [`OTHER`] live in keyspace "other" (without that
//! byte), all others in "data"; one batch may span both.

#![allow(dead_code)]

use std::collections::BTreeMap;

use bytes::Bytes;
use ringkv_storage::{
    Batch, CompactionOptions, CompactionStyle, CrashMode, Engine, Error, Job, KeyspaceId, Options,
    SeqNo, SimFs, Snapshot, SyncJob, TableOptions,
};

/// Small sizes so that a few hundred writes flush, compact and rotate the manifest many times.
pub fn small_options(style: CompactionStyle) -> Options {
    Options {
        memtable_bytes_max: 4 << 10,
        frozen_memtables_max: 2,
        wal_buffer_bytes_max: 1 << 10,
        // LZ4 (the default codec): the values are runs of dots, so most blocks are compressed.
        table: TableOptions {
            block_size_bytes: 256,
            restart_interval: 4,
            bloom_bits_per_key: 10,
            ..TableOptions::default()
        },
        compaction: CompactionOptions {
            style,
            level0_files_trigger: 3,
            level0_files_stall: 6,
            level1_bytes_max: 12 << 10,
            level_bytes_multiplier: 4,
            table_file_bytes_max: 4 << 10,
            tiered_runs_trigger: 3,
            ..CompactionOptions::default()
        },
        block_cache_bytes_max: 8 << 10,
        manifest_bytes_max: 2 << 10,
        ..Options::default()
    }
}

pub type Model = BTreeMap<Vec<u8>, Bytes>;

/// The first byte of model keys that belong to the second keyspace.
pub const OTHER: u8 = 0xff;

/// One op of a batch: a key and a value, or `None` for a delete.
pub type ModelOp = (Vec<u8>, Option<Bytes>);

pub struct Harness {
    pub fs: SimFs,
    pub opts: Options,
    pub engine: Option<Engine<SimFs>>,
    pub ks: KeyspaceId,
    /// The second keyspace (model keys prefixed with [`OTHER`]).
    pub other: KeyspaceId,
    /// Accepted batches: (sequence number of the last op, ops).
    pub history: Vec<(SeqNo, Vec<ModelOp>)>,
    /// The sequence number the history starts after.
    pub base_seq: SeqNo,
    pub model: Model,
    pub snapshots: Vec<(Snapshot, Model)>,
    /// An I/O fault or power cut is armed: engine errors are expected.
    pub faults_armed: bool,
    /// A table was damaged: reads may fail with a corruption error, never return wrong data.
    pub corrupted: bool,
    /// The run cannot go on (recovery refused a damaged database, as it must).
    pub dead: bool,
    pub recoveries: u64,
    pub probes: Probes,
    /// A sync handed out by the engine and not yet completed (the driver's work in flight).
    pub pending_sync: Option<SyncJob>,
    /// Jobs handed out and not yet finished.
    pub pending_jobs: Vec<Job>,
}

/// Rare paths a batch of runs must reach, so that a passing suite means they were exercised.
#[derive(Debug, Default, Clone, Copy)]
pub struct Probes {
    pub flushes: u64,
    pub compactions: u64,
    pub crashes: u64,
    pub power_cuts: u64,
    pub torn_wal_stops: u64,
    pub recovery_cut: u64,
    pub lost_unsynced: u64,
    pub corruption_detected: u64,
    pub io_errors_reported: u64,
}

impl Probes {
    pub fn add(&mut self, o: &Probes) {
        self.flushes += o.flushes;
        self.compactions += o.compactions;
        self.crashes += o.crashes;
        self.power_cuts += o.power_cuts;
        self.torn_wal_stops += o.torn_wal_stops;
        self.recovery_cut += o.recovery_cut;
        self.lost_unsynced += o.lost_unsynced;
        self.corruption_detected += o.corruption_detected;
        self.io_errors_reported += o.io_errors_reported;
    }
}

impl Harness {
    pub fn new(seed: u64, opts: Options) -> Harness {
        let fs = SimFs::new(seed);
        let mut engine = Engine::open(fs.clone(), opts.clone()).expect("open a new database");
        let ks = engine.create_keyspace("data").expect("create keyspace");
        let other = engine.create_keyspace("other").expect("create keyspace");
        Harness {
            fs,
            opts,
            engine: Some(engine),
            ks,
            other,
            history: Vec::new(),
            base_seq: 0,
            model: Model::new(),
            snapshots: Vec::new(),
            faults_armed: false,
            corrupted: false,
            dead: false,
            recoveries: 0,
            probes: Probes::default(),
            pending_sync: None,
            pending_jobs: Vec::new(),
        }
    }

    pub fn engine(&mut self) -> &mut Engine<SimFs> {
        self.engine.as_mut().expect("engine is open")
    }

    /// Writes a batch and records it in the model if the engine took it.
    pub fn write(&mut self, ops: Vec<ModelOp>) {
        let mut batch = Batch::new();
        for (k, v) in &ops {
            let (ks, k) = self.route(k);
            let k = k.to_vec();
            match v {
                Some(v) => batch.put(ks, k, v.clone()),
                None => batch.delete(ks, k),
            }
        }
        let before = self.engine().last_seq();
        let result = self.engine().write(&batch);
        let after = self.engine().last_seq();
        if after > before {
            assert_eq!(after - before, ops.len() as u64, "one sequence number per op");
            self.history.push((after, ops.clone()));
            apply(&mut self.model, &ops);
        }
        match result {
            Ok(seq) => assert_eq!(seq, after),
            Err(Error::WriteStall { .. }) => {
                assert_eq!(after, before, "a stalled write is not applied");
                self.finish_pending();
                self.run_jobs(usize::MAX);
            }
            Err(Error::SyncStall { .. }) => {
                assert_eq!(after, before, "a stalled write is not applied");
                self.finish_pending();
            }
            Err(e) => self.failed(e),
        }
    }

    /// Starts a sync the way an asynchronous driver does: the job is held, writes go on.
    pub fn begin_sync(&mut self) {
        if let (None, Some(engine)) = (&self.pending_sync, self.engine.as_mut()) {
            self.pending_sync = engine.poll_sync();
        }
    }

    /// Starts a job and holds it.
    pub fn begin_job(&mut self) {
        if let Some(job) = self.engine.as_mut().and_then(|e| e.poll_job()) {
            self.pending_jobs.push(job);
        }
    }

    /// Runs and completes the held sync and jobs.
    pub fn finish_pending(&mut self) {
        if self.engine.is_none() {
            return;
        }
        if let Some(job) = self.pending_sync.take() {
            let result = job.run(&self.fs);
            let upto = job.upto();
            match self.engine().synced(result) {
                Ok(durable) => assert!(durable >= upto),
                Err(e) => return self.failed(e),
            }
        }
        for job in std::mem::take(&mut self.pending_jobs) {
            let result = job.run(&self.fs);
            if let Err(e) = self.engine().finish(result) {
                return self.failed(e);
            }
        }
    }

    /// Does the held sync's I/O but crashes before the engine hears of it.
    pub fn run_sync_then_crash(&mut self, mode: CrashMode) {
        if let Some(job) = self.pending_sync.take() {
            let _ = job.run(&self.fs);
        }
        self.crash_and_recover(mode, None);
    }

    /// Syncs the WAL; a sync failure armed just before must be reported.
    pub fn sync(&mut self, expect_failure: bool) {
        let injected_before = self.fs.stats().errors_injected;
        self.finish_pending();
        if expect_failure && self.fs.stats().errors_injected > injected_before {
            // The held sync met the failure first, and it was reported there.
            self.fs.fail_next_syncs(0);
            return;
        }
        if self.engine.is_none() {
            return;
        }
        let had_unsynced = self.engine().last_seq() > self.engine().durable_seq();
        match self.engine().sync() {
            Ok(durable) => {
                assert!(!(expect_failure && had_unsynced), "an injected sync failure was hidden");
                assert_eq!(durable, self.engine().last_seq());
            }
            Err(e) => self.failed(e),
        }
        if expect_failure {
            self.fs.fail_next_syncs(0);
        }
    }

    /// Runs up to `count` jobs inline.
    pub fn run_jobs(&mut self, count: usize) {
        for _ in 0..count {
            let Some(engine) = self.engine.as_mut() else {
                return; // the run ended: recovery refused damaged data
            };
            let Some(job) = engine.poll_job() else {
                return;
            };
            let result = job.run(&self.fs);
            if let Err(e) = self.engine().finish(result) {
                self.failed(e);
                return;
            }
        }
    }

    pub fn request_flush(&mut self) {
        self.finish_pending();
        if self.engine.is_none() {
            return;
        }
        if let Err(e) = self.engine().request_flush() {
            self.failed(e);
        }
    }

    /// An engine call failed: that must be explained by an armed fault, a power cut or damage.
    /// The node then restarts: after a power cut the machine crashes first.
    pub fn failed(&mut self, e: Error) {
        let explained = self.faults_armed || self.corrupted || self.fs.is_power_cut();
        assert!(explained, "unexpected engine error: {e}");
        if e.is_corruption() {
            self.probes.corruption_detected += 1;
        } else {
            self.probes.io_errors_reported += 1;
        }
        if self.fs.is_power_cut() {
            self.probes.power_cuts += 1;
            self.crash_and_recover(CrashMode::Torn, None);
        } else {
            self.restart();
        }
    }

    /// The process restarts without a machine crash: the filesystem keeps everything.
    pub fn restart(&mut self) {
        let durable = self.close();
        self.recover(durable, None);
    }

    /// The machine crashes; recovery itself may be cut after `cut_ops` filesystem operations,
    /// in which case the machine crashes again and recovery runs once more.
    pub fn crash_and_recover(&mut self, mode: CrashMode, cut_ops: Option<u64>) {
        let durable = self.close();
        self.fs.crash(mode);
        self.probes.crashes += 1;
        self.recover(durable, cut_ops);
    }

    fn close(&mut self) -> SeqNo {
        let durable = self.engine.as_ref().map_or(self.base_seq, Engine::durable_seq);
        if let Some(e) = &self.engine {
            self.probes.flushes += e.stats().flushes;
            self.probes.compactions += e.stats().compactions;
        }
        self.snapshots.clear();
        self.pending_sync = None;
        self.pending_jobs.clear();
        self.engine = None;
        self.fs.set_faults(ringkv_storage::FaultConfig::default());
        self.fs.fail_next_syncs(0);
        self.fs.power_cut_after(None);
        self.faults_armed = false;
        durable
    }

    fn recover(&mut self, durable: SeqNo, cut_ops: Option<u64>) {
        self.recoveries += 1;
        if let Some(n) = cut_ops {
            self.fs.power_cut_after(Some(n));
            match Engine::open(self.fs.clone(), self.opts.clone()) {
                Ok(e) if !self.fs.is_power_cut() => {
                    self.fs.power_cut_after(None);
                    self.engine = Some(e);
                    return self.check_recovered(durable);
                }
                Ok(e) => drop(e),
                Err(e) => {
                    self.probes.recovery_cut += 1;
                    assert!(
                        self.fs.is_power_cut() || (self.corrupted && e.is_corruption()),
                        "recovery failed without a cause: {e}"
                    )
                }
            }
            self.fs.crash(CrashMode::Torn);
        }
        match Engine::open(self.fs.clone(), self.opts.clone()) {
            Ok(e) => {
                self.engine = Some(e);
                self.check_recovered(durable);
            }
            Err(e) => {
                assert!(self.corrupted && e.is_corruption(), "recovery failed: {e}");
                self.dead = true;
            }
        }
    }

    /// The oracle: every write up to `durable` survived and the survivors are a prefix.
    fn check_recovered(&mut self, durable: SeqNo) {
        let rec = self.engine().last_seq();
        if self.engine().recovery_report().wal_stop.is_some() {
            self.probes.torn_wal_stops += 1;
        }
        if self.history.last().is_some_and(|(s, _)| *s > rec) {
            self.probes.lost_unsynced += 1;
        }
        assert!(
            rec >= durable,
            "lost durable writes: recovered up to {rec}, durable was {durable}"
        );
        let boundary = rec == self.base_seq || self.history.iter().any(|(s, _)| *s == rec);
        assert!(boundary, "recovered to {rec}, inside a batch: batches are atomic");
        self.history.retain(|(s, _)| *s <= rec);
        let last = self.history.last().map_or(self.base_seq, |(s, _)| *s);
        assert_eq!(last, rec, "recovered past the last write");
        self.model = Model::new();
        for (_, ops) in &self.history {
            apply(&mut self.model, ops);
        }
        assert_eq!(self.engine().durable_seq(), rec, "what recovery read is durable");
        self.check_scan();
    }

    /// A point read agrees with the model (or reports damage).
    pub fn check_get(&mut self, key: &[u8]) {
        let want = self.model.get(key).cloned();
        let (ks, key) = self.route(key);
        match self.engine.as_ref().expect("engine is open").get(ks, key) {
            Ok(got) => assert_eq!(got, want, "get {:?}", String::from_utf8_lossy(key)),
            Err(e) => self.read_failed(e),
        }
    }

    /// A full scan now and at every snapshot agrees with the model (or reports damage).
    pub fn check_scan(&mut self) {
        let ks = self.ks;
        let engine = self.engine.as_ref().expect("engine is open");
        let mut views: Vec<(Option<&Snapshot>, &Model)> = vec![(None, &self.model)];
        views.extend(self.snapshots.iter().map(|(s, m)| (Some(s), m)));
        let mut failure = None;
        let other = self.other;
        for (snap, model) in views {
            // Both keyspaces, the second with its model prefix: together in model order.
            let scan = |ks, prefix: &'static [u8]| -> Result<Vec<(Vec<u8>, Bytes)>, Error> {
                engine.scan::<&[u8]>(ks, .., snap).and_then(|s| {
                    s.map(|kv| kv.map(|kv| ([prefix, &kv.key[..]].concat(), kv.value))).collect()
                })
            };
            let got = scan(ks, b"").and_then(|mut a| {
                a.extend(scan(other, &[OTHER])?);
                Ok(a)
            });
            match got {
                Ok(got) => {
                    let want: Vec<(Vec<u8>, Bytes)> =
                        model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    assert_eq!(got, want, "scan at {:?}", snap.map(Snapshot::seq));
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            self.read_failed(e);
        }
    }

    /// A range scan agrees with the model.
    pub fn check_range(&mut self, lo: &[u8], hi: &[u8]) {
        let ks = self.ks;
        let engine = self.engine.as_ref().expect("engine is open");
        let got: Result<Vec<Vec<u8>>, Error> = engine
            .scan(ks, lo..hi, None)
            .and_then(|s| s.map(|kv| kv.map(|kv| kv.key.to_vec())).collect());
        match got {
            Ok(got) => {
                let want: Vec<Vec<u8>> =
                    self.model.range(lo.to_vec()..hi.to_vec()).map(|(k, _)| k.clone()).collect();
                assert_eq!(got, want);
            }
            Err(e) => self.read_failed(e),
        }
    }

    /// The keyspace and engine key of a model key.
    pub fn route<'k>(&self, model_key: &'k [u8]) -> (KeyspaceId, &'k [u8]) {
        match model_key.split_first() {
            Some((&OTHER, rest)) => (self.other, rest),
            _ => (self.ks, model_key),
        }
    }

    fn read_failed(&mut self, e: Error) {
        assert!(
            (self.corrupted && e.is_corruption()) || self.faults_armed,
            "read failed without damage: {e}"
        );
    }

    pub fn take_snapshot(&mut self) {
        let s = self.engine().snapshot();
        self.snapshots.push((s, self.model.clone()));
    }

    pub fn release_snapshot(&mut self) {
        if let Some((s, _)) = self.snapshots.pop() {
            self.engine().release(s);
        }
    }
}

pub fn apply(model: &mut Model, ops: &[ModelOp]) {
    for (k, v) in ops {
        match v {
            Some(v) => {
                model.insert(k.clone(), v.clone());
            }
            None => {
                model.remove(k);
            }
        }
    }
}

pub fn key(i: u32) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

/// A model key in the second keyspace.
pub fn other_key(i: u32) -> Vec<u8> {
    [&[OTHER][..], &key(i)].concat()
}

/// A value that is unique per write, so a stale or invented read cannot pass for the right one.
pub fn value(writes: u64, len: usize) -> Bytes {
    let mut v = format!("v{writes}-").into_bytes();
    v.resize(len.max(v.len()), b'.');
    Bytes::from(v)
}
