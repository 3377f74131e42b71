//! Exhaustive crash points: the power fails after every possible number of filesystem
//! operations inside a flush, a compaction, a manifest rotation and recovery itself; after the
//! crash the oracle checks every synced write survived and the survivors are a prefix.

mod common;

use common::{key, small_options, value, Harness};
use ringkv_storage::{CompactionStyle, Compression, CrashMode};

/// Writes `count` single-key batches, syncing every fifth.
fn fill(h: &mut Harness, from: u32, count: u32) {
    for i in from..from + count {
        h.write(vec![(key(i % 64), Some(value(u64::from(i), 120)))]);
        if i % 5 == 4 {
            h.sync(false);
        }
    }
}

/// Runs `step` with the power cut after `cut` operations, then crashes if the cut happened;
/// returns how many operations `step` took when it was not cut.
fn with_cut(h: &mut Harness, cut: u64, step: impl FnOnce(&mut Harness)) -> u64 {
    let before = h.fs.stats().ops;
    h.fs.power_cut_after(Some(cut));
    h.faults_armed = true;
    step(h);
    let used = h.fs.stats().ops - before;
    if h.fs.is_power_cut() {
        h.crash_and_recover(CrashMode::Torn, None);
    } else {
        h.fs.power_cut_after(None);
        h.faults_armed = false;
    }
    used
}

fn finish_and_check(mut h: Harness) {
    fill(&mut h, 1000, 12);
    h.check_scan();
    h.crash_and_recover(CrashMode::Torn, None);
    h.check_scan();
}

#[test]
fn power_cut_at_every_point_of_a_flush_loses_no_synced_write() {
    // The flushed table is compressed, so a torn write cuts through compressed blocks.
    for compression in [Compression::Lz4, Compression::Zstd { level: 3 }] {
        power_cut_at_every_point_of_a_flush(compression);
    }
}

fn power_cut_at_every_point_of_a_flush(compression: Compression) {
    let mut cut = 0;
    loop {
        let mut opts = small_options(CompactionStyle::Leveled);
        opts.table.compression = compression;
        let mut h = Harness::new(cut, opts);
        fill(&mut h, 0, 23);
        let used = with_cut(&mut h, cut, |h| {
            h.request_flush();
            if h.engine.is_some() {
                h.run_jobs(1);
            }
        });
        finish_and_check(h);
        if cut > used {
            assert!(cut > 5, "a flush takes several operations");
            break;
        }
        cut += 1;
    }
}

#[test]
fn power_cut_at_every_point_of_a_compaction_loses_no_synced_write() {
    for style in [CompactionStyle::Leveled, CompactionStyle::SizeTiered] {
        let mut cut = 0;
        loop {
            let mut h = Harness::new(cut, small_options(style));
            // Two flushed tables; the third flush triggers a compaction.
            for round in 0..2 {
                fill(&mut h, round * 30, 30);
                h.request_flush();
                h.run_jobs(1);
            }
            fill(&mut h, 60, 30);
            h.request_flush();
            h.run_jobs(1);
            let used = with_cut(&mut h, cut, |h| h.run_jobs(usize::MAX));
            finish_and_check(h);
            if cut > used {
                assert!(cut > 5, "{style:?}: a compaction takes several operations");
                break;
            }
            cut += 1;
        }
    }
}

#[test]
fn power_cut_at_every_point_of_a_manifest_rotation_loses_no_synced_write() {
    let mut cut = 0;
    loop {
        let mut opts = small_options(CompactionStyle::Leveled);
        // Every edit is followed by a rotation.
        opts.manifest_bytes_max = 1;
        let mut h = Harness::new(cut, opts);
        fill(&mut h, 0, 20);
        let used = with_cut(&mut h, cut, |h| {
            h.request_flush();
            if h.engine.is_some() {
                h.run_jobs(1);
            }
        });
        finish_and_check(h);
        if cut > used {
            assert!(cut > 10, "a flush with a rotation takes many operations");
            break;
        }
        cut += 1;
    }
}

#[test]
fn power_cut_at_every_point_of_recovery_loses_no_synced_write() {
    let mut cut = 0;
    loop {
        let mut h = Harness::new(cut, small_options(CompactionStyle::Leveled));
        fill(&mut h, 0, 40);
        h.request_flush();
        h.run_jobs(usize::MAX);
        fill(&mut h, 40, 17);
        let before = h.recoveries;
        let ops_before = h.fs.stats().ops;
        h.crash_and_recover(CrashMode::Torn, Some(cut));
        let used = h.fs.stats().ops - ops_before;
        assert_eq!(h.recoveries, before + 1);
        let completed_first_try = h.probes.recovery_cut == 0;
        finish_and_check(h);
        if completed_first_try {
            assert!(used > 5 && cut > 5, "recovery takes several operations");
            break;
        }
        cut += 1;
    }
}
