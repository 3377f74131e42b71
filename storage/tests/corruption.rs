//! Damage at rest: a flipped bit in any file is reported as an error (or, in the WAL, ends
//! replay at the damaged record), never read back as wrong data; a newer format is refused.

mod common;

use bytes::Bytes;
use common::{key, small_options, value, Harness};
use ringkv_storage::{CompactionStyle, Engine, Error, Vfs, VfsFile};

fn names(h: &Harness, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> =
        h.fs.list()
            .expect("list files")
            .into_iter()
            .filter(|n| n.ends_with(suffix) || n.starts_with(suffix))
            .collect();
    v.sort();
    v
}

#[test]
fn flipped_bit_in_the_wal_ends_replay_there_and_keeps_a_prefix() {
    for seed in 0..30 {
        let mut h = Harness::new(seed, small_options(CompactionStyle::Leveled));
        for i in 0..15 {
            h.write(vec![(key(i), Some(value(u64::from(i), 50)))]);
            h.sync(false);
        }
        let wal = names(&h, ".wal").pop().unwrap();
        let offset = h.fs.corrupt_random(&wal).unwrap();
        // The oracle cannot demand the synced writes after the flip survive, so forget them:
        // recovery must still land on a batch boundary and read back exactly that prefix.
        h.engine = None;
        let e = Engine::open(h.fs.clone(), h.opts.clone()).unwrap();
        let stop = e.recovery_report().wal_stop.clone().expect("replay stopped early");
        assert_eq!(stop.file, wal);
        assert!(
            stop.offset <= offset,
            "seed {seed}: stopped at {} after the flip at {offset}",
            stop.offset
        );
        let rec = e.last_seq();
        h.history.retain(|(s, _)| *s <= rec);
        assert_eq!(h.history.last().map_or(0, |(s, _)| *s), rec);
        h.model.clear();
        for (_, ops) in &h.history {
            common::apply(&mut h.model, ops);
        }
        h.engine = Some(e);
        h.check_scan();
    }
}

#[test]
fn flipped_bit_in_the_middle_of_the_manifest_is_an_error() {
    let mut h = Harness::new(1, small_options(CompactionStyle::Leveled));
    for round in 0..3 {
        for i in 0..20 {
            h.write(vec![(key(i), Some(value(u64::from(round * 20 + i), 100)))]);
        }
        h.request_flush();
        h.run_jobs(1);
    }
    let manifest = names(&h, "MANIFEST-").pop().unwrap();
    h.engine = None;
    // Flip a bit in the first record (the snapshot), which is followed by later edits.
    h.fs.corrupt(&manifest, 12).unwrap();
    let err = Engine::open(h.fs.clone(), h.opts.clone()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains(&manifest), "{err}");
}

#[test]
fn flipped_bits_in_tables_are_errors_never_wrong_values() {
    let mut detected = 0;
    for seed in 0..30 {
        let mut h = Harness::new(seed, small_options(CompactionStyle::Leveled));
        for i in 0..60 {
            h.write(vec![(key(i), Some(value(u64::from(i), 100)))]);
        }
        h.request_flush();
        h.run_jobs(usize::MAX);
        let table = names(&h, ".sst").pop().unwrap();
        h.fs.corrupt_random(&table).unwrap();
        h.corrupted = true;
        h.engine = None;
        match Engine::open(h.fs.clone(), h.opts.clone()) {
            Err(e) => {
                assert!(e.is_corruption(), "seed {seed}: {e}");
                detected += 1;
            }
            Ok(e) => {
                let ks = h.ks;
                let mut errors = 0;
                for i in 0..60 {
                    match e.get(ks, &key(i)) {
                        Ok(v) => assert_eq!(v, h.model.get(&key(i)).cloned(), "seed {seed}"),
                        Err(err) => {
                            assert!(err.is_corruption(), "seed {seed}: {err}");
                            errors += 1;
                        }
                    }
                }
                detected += usize::from(errors > 0);
                h.engine = Some(e);
                h.check_scan();
            }
        }
    }
    assert!(detected >= 25, "most flips are found by a full read: {detected}/30");
}

#[test]
fn manifest_from_a_newer_format_is_refused_with_a_clear_message() {
    let mut h = Harness::new(2, small_options(CompactionStyle::Leveled));
    h.write(vec![(key(1), Some(Bytes::from_static(b"v")))]);
    h.sync(false);
    let manifest = names(&h, "MANIFEST-").pop().unwrap();
    h.engine = None;
    let f = h.fs.open(&manifest).unwrap();
    let mut data = vec![0u8; f.len().unwrap() as usize];
    f.read_at(0, &mut data).unwrap();
    // The first edit starts with the format tag (1) and a u32 version: make it version 9 and
    // fix the record checksum so that only the version is "wrong".
    assert_eq!(data[8], 1);
    data[9..13].copy_from_slice(&9u32.to_le_bytes());
    let len = u32::from_le_bytes(data[4..8].try_into().unwrap()) as usize;
    let mut c = crc32c::crc32c(&data[4..8]);
    c = crc32c::crc32c_append(c, &data[8..8 + len]);
    let masked = c.rotate_right(15).wrapping_add(0xa282_ead8);
    data[0..4].copy_from_slice(&masked.to_le_bytes());
    h.fs.remove(&manifest).unwrap();
    h.fs.create(&manifest).unwrap().append(&data).unwrap();
    let err = Engine::open(h.fs.clone(), h.opts.clone()).unwrap_err();
    assert!(matches!(err, Error::UnsupportedVersion { found: 9, supported: 1, .. }), "{err}");
    assert!(err.to_string().contains("upgrade"), "{err}");
}
