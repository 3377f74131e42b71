//! Property: the engine on a faulty `SimFs` agrees with a `BTreeMap` model across random writes,
//! deletes, batches, syncs, flushes, compactions, snapshots, crashes (torn or clean, including
//! crashes in the middle of flushes, compactions, manifest rotations and recovery itself),
//! injected I/O errors and bit flips. Seeded and shrinking: a failure prints the op list.

mod common;

use common::{key, other_key, small_options, value, Harness, ModelOp, Probes};
use proptest::prelude::*;
use ringkv_storage::{CompactionStyle, Compression, CrashMode, FaultConfig};

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u32,
        len: usize,
    },
    Delete {
        key: u32,
    },
    Batch {
        ops: Vec<(u32, Option<usize>)>,
    },
    Sync,
    RunJobs {
        count: usize,
    },
    Flush,
    FullCompaction,
    Get {
        key: u32,
    },
    Scan,
    Range {
        lo: u32,
        width: u32,
    },
    Snapshot,
    Release,
    Crash {
        torn: bool,
    },
    /// The power fails after this many more filesystem operations, while a flush and the
    /// compactions it triggers run.
    CutDuringJobs {
        ops: u64,
    },
    /// The machine crashes and recovery itself is cut after this many operations.
    CutDuringRecovery {
        ops: u64,
    },
    FailNextSync,
    IoErrors {
        ppm: u32,
    },
    Restart,
    FlipTableBit,
    /// An asynchronous driver: a sync or a job is handed out and held while writes go on.
    BeginSync,
    BeginJob,
    FinishPending,
    /// The held sync's I/O completes but the machine crashes before the engine hears of it.
    SyncThenCrash,
}

fn op() -> impl Strategy<Value = Op> {
    let keys = 0u32..48;
    prop_oneof![
        30 => (keys.clone(), 1usize..300).prop_map(|(key, len)| Op::Put { key, len }),
        8 => keys.clone().prop_map(|key| Op::Delete { key }),
        8 => prop::collection::vec((keys.clone(), prop::option::weighted(0.8, 1usize..200)), 1..6)
            .prop_map(|ops| Op::Batch { ops }),
        8 => Just(Op::Sync),
        8 => (1usize..4).prop_map(|count| Op::RunJobs { count }),
        3 => Just(Op::Flush),
        2 => Just(Op::FullCompaction),
        6 => keys.clone().prop_map(|key| Op::Get { key }),
        2 => Just(Op::Scan),
        2 => (keys.clone(), 1u32..20).prop_map(|(lo, width)| Op::Range { lo, width }),
        2 => Just(Op::Snapshot),
        1 => Just(Op::Release),
        2 => any::<bool>().prop_map(|torn| Op::Crash { torn }),
        2 => (0u64..40).prop_map(|ops| Op::CutDuringJobs { ops }),
        1 => (0u64..30).prop_map(|ops| Op::CutDuringRecovery { ops }),
        1 => Just(Op::FailNextSync),
        1 => (1u32..200_000).prop_map(|ppm| Op::IoErrors { ppm }),
        1 => Just(Op::Restart),
        1 => Just(Op::FlipTableBit),
        4 => Just(Op::BeginSync),
        3 => Just(Op::BeginJob),
        4 => Just(Op::FinishPending),
        1 => Just(Op::SyncThenCrash),
    ]
}

/// Every fifth key lives in the second keyspace.
fn model_key(k: u32) -> Vec<u8> {
    if k % 5 == 4 {
        other_key(k)
    } else {
        key(k)
    }
}

fn run(seed: u64, tiered: bool, ops: &[Op]) -> Probes {
    let style = if tiered { CompactionStyle::SizeTiered } else { CompactionStyle::Leveled };
    let mut opts = small_options(style);
    // Half the runs also let the engine act early at its BUGGIFY sites.
    if seed.is_multiple_of(2) {
        opts.buggify_seed = Some(seed.rotate_left(17));
    }
    // Every codec meets every fault: a third of the runs each write raw, LZ4 and Zstd blocks.
    opts.table.compression = match seed % 3 {
        0 => Compression::None,
        1 => Compression::Lz4,
        _ => Compression::Zstd { level: 1 },
    };
    let mut h = Harness::new(seed, opts);
    let mut writes = 0u64;
    for op in ops {
        if h.dead {
            break;
        }
        match op {
            Op::Put { key: k, len } => {
                writes += 1;
                h.write(vec![(model_key(*k), Some(value(writes, *len)))]);
            }
            Op::Delete { key: k } => h.write(vec![(model_key(*k), None)]),
            Op::Batch { ops } => {
                let batch: Vec<ModelOp> = ops
                    .iter()
                    .map(|(k, len)| {
                        writes += 1;
                        (model_key(*k), len.map(|l| value(writes, l)))
                    })
                    .collect();
                h.write(batch);
            }
            Op::Sync => h.sync(false),
            Op::RunJobs { count } => {
                h.finish_pending();
                if h.engine.is_some() {
                    h.run_jobs(*count);
                }
            }
            Op::Flush => {
                h.request_flush();
                if h.engine.is_some() {
                    h.run_jobs(1);
                }
            }
            Op::FullCompaction => {
                h.finish_pending();
                if h.engine.is_some() {
                    h.engine().request_full_compaction();
                    h.run_jobs(usize::MAX);
                }
            }
            Op::Get { key: k } => h.check_get(&model_key(*k)),
            Op::Scan => h.check_scan(),
            Op::Range { lo, width } => h.check_range(&key(*lo), &key(lo + width)),
            Op::Snapshot => {
                if h.snapshots.len() < 3 {
                    h.take_snapshot();
                }
            }
            Op::Release => h.release_snapshot(),
            Op::Crash { torn } => {
                let mode = if *torn { CrashMode::Torn } else { CrashMode::DropUnsynced };
                h.crash_and_recover(mode, None);
            }
            Op::CutDuringJobs { ops } => {
                let armed = h.faults_armed;
                h.fs.power_cut_after(Some(*ops));
                h.faults_armed = true;
                h.request_flush();
                if h.engine.is_some() && !h.fs.is_power_cut() {
                    h.run_jobs(usize::MAX);
                }
                if h.fs.is_power_cut() {
                    // The power is gone whether or not the engine noticed.
                    h.crash_and_recover(CrashMode::Torn, None);
                } else {
                    h.fs.power_cut_after(None);
                    h.faults_armed = armed;
                }
            }
            Op::CutDuringRecovery { ops } => h.crash_and_recover(CrashMode::Torn, Some(*ops)),
            Op::FailNextSync => {
                let armed = h.faults_armed;
                h.fs.fail_next_syncs(1);
                h.faults_armed = true;
                h.sync(true);
                if h.engine.as_ref().is_some_and(|e| e.poisoned().is_none()) {
                    h.faults_armed = armed;
                }
            }
            Op::IoErrors { ppm } => {
                h.fs.set_faults(FaultConfig {
                    read_error_ppm: *ppm,
                    append_error_ppm: *ppm,
                    sync_error_ppm: *ppm,
                    metadata_error_ppm: *ppm,
                });
                h.faults_armed = true;
            }
            Op::Restart => h.restart(),
            Op::BeginSync => h.begin_sync(),
            Op::BeginJob => h.begin_job(),
            Op::FinishPending => h.finish_pending(),
            Op::SyncThenCrash => h.run_sync_then_crash(CrashMode::Torn),
            // Damage ends most runs at the next recovery, so only one run in four has any.
            Op::FlipTableBit if !seed.is_multiple_of(4) => {}
            Op::FlipTableBit => {
                let tables: Vec<String> =
                    h.fs.list()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|n| n.ends_with(".sst"))
                        .collect();
                if let Some(t) = tables.first() {
                    h.fs.corrupt_random(t).expect("flip a bit");
                    h.corrupted = true;
                }
            }
        }
    }
    if !h.dead {
        // Settle: with faults cleared, a final crash must still keep every synced write.
        h.crash_and_recover(CrashMode::Torn, None);
        if !h.dead {
            h.check_scan();
        }
    }
    h.probes
}

/// Code probes: a fixed batch of generated runs must reach every rare path at least once.
#[test]
fn a_batch_of_runs_reaches_every_rare_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (any::<u64>(), prop::collection::vec(op(), 150..300));
    let mut total = Probes::default();
    for case in 0..40 {
        let (seed, ops) = strategy.new_tree(&mut runner).expect("generate").current();
        total.add(&run(seed, case % 2 == 1, &ops));
    }
    println!("{total:?}");
    assert!(total.flushes > 0 && total.compactions > 0, "{total:?}");
    assert!(total.crashes > 0 && total.power_cuts > 0, "{total:?}");
    assert!(total.torn_wal_stops > 0 && total.recovery_cut > 0, "{total:?}");
    assert!(total.lost_unsynced > 0, "{total:?}");
    assert!(total.corruption_detected > 0 && total.io_errors_reported > 0, "{total:?}");
}

use ringkv_storage::Vfs;

proptest! {
    #![proptest_config(ProptestConfig {
        // RINGKV_CRASH_CASES raises the count for a long local hunt.
        cases: std::env::var("RINGKV_CRASH_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        max_shrink_iters: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn leveled_engine_agrees_with_the_model_across_crashes_and_faults(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..300),
    ) {
        run(seed, false, &ops);
    }

    #[test]
    fn tiered_engine_agrees_with_the_model_across_crashes_and_faults(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..300),
    ) {
        run(seed, true, &ops);
    }
}
