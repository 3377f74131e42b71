//! Block compression at the engine level: a database written before compression existed
//! (table format 1) still opens and mixes with compressed tables, and damage to a compressed
//! table (a flipped bit, a torn or zeroed sector) is a corruption error that costs no data stored
//! anywhere else.

use std::path::Path;

use bytes::Bytes;
use ringkv_storage::{
    vfs::read_all, Compression, Engine, Error, KeyspaceId, Options, SimFs, Vfs, VfsFile,
};

/// The files of one database, by name.
type Files = Vec<(String, Vec<u8>)>;

/// A fresh `SimFs` holding `files`, all synced.
fn disk_with(seed: u64, files: &Files) -> SimFs {
    let fs = SimFs::new(seed);
    for (name, bytes) in files {
        let mut file = fs.create(name).expect("the fixture and SimFs are well-formed");
        file.append(bytes).expect("the fixture and SimFs are well-formed");
        file.sync().expect("the fixture and SimFs are well-formed");
    }
    fs.sync_dir().expect("the fixture and SimFs are well-formed");
    fs
}

fn files_of(fs: &SimFs) -> Files {
    let mut names = fs.list().expect("the fixture and SimFs are well-formed");
    names.sort();
    names
        .into_iter()
        .map(|name| {
            (
                name.clone(),
                read_all(&fs.open(&name).expect("the fixture and SimFs are well-formed"))
                    .expect("the fixture and SimFs are well-formed"),
            )
        })
        .collect()
}

/// The footer's format version of a table file (`table.rs`: the u32 at 32 bytes into the
/// 48-byte footer).
fn table_format_version(bytes: &[u8]) -> u32 {
    let at = bytes.len() - 48 + 32;
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("the fixture and SimFs are well-formed"))
}

fn sst_bytes(files: &Files) -> u64 {
    files.iter().filter(|(n, _)| n.ends_with(".sst")).map(|(_, b)| b.len() as u64).sum()
}

// ---- A database in table format 1 -------------------------------------------------------------

/// `tests/fixtures/format1/` was written by ringkv-storage before block compression (table
/// format 1, commit e1e3fb8) on a `SimFs` with default options: keyspace "data"; keys
/// key0000..key0399 put with `fixture_value(i, 0)`, flushed and fully compacted (table 000005 on
/// the last level); then every 7th key deleted and every other 3rd key overwritten with
/// `fixture_value(i, 1)`, flushed (table 000009 on level 0); then key0400..key0419 put with
/// `fixture_value(i, 2)` and synced, left in the WAL.
fn format1_files() -> Files {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1");
    let mut files: Files = std::fs::read_dir(&dir)
        .expect("the fixture and SimFs are well-formed")
        .map(|entry| {
            let path = entry.expect("the fixture and SimFs are well-formed").path();
            let name = path
                .file_name()
                .expect("the fixture and SimFs are well-formed")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("the fixture and SimFs are well-formed"))
        })
        .collect();
    files.sort();
    files
}

fn fixture_value(i: u32, round: u32) -> String {
    format!("fixture value {i} round {round}: the quick brown fox jumps over the lazy dog")
}

/// What the fixture holds: key -> value (deleted keys absent).
fn format1_contents() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..420u32 {
        let value = match i {
            400.. => fixture_value(i, 2),
            _ if i % 7 == 0 => continue,
            _ if i % 3 == 0 => fixture_value(i, 1),
            _ => fixture_value(i, 0),
        };
        out.push((format!("key{i:04}"), value));
    }
    out
}

/// Every key of `want` reads back through point reads and a scan, and nothing else is there.
fn assert_holds(engine: &Engine<SimFs>, ks: KeyspaceId, want: &[(String, String)]) {
    for (key, value) in want {
        let got = engine.get(ks, key.as_bytes()).expect("the fixture and SimFs are well-formed");
        assert_eq!(got.as_deref(), Some(value.as_bytes()), "{key}");
    }
    let scanned: Vec<(Bytes, Bytes)> = engine
        .scan::<&[u8]>(ks, .., None)
        .expect("the fixture and SimFs are well-formed")
        .map(|kv| kv.map(|kv| (kv.key, kv.value)))
        .collect::<Result<_, _>>()
        .expect("the fixture and SimFs are well-formed");
    let want: Vec<(Bytes, Bytes)> = want
        .iter()
        .map(|(k, v)| (Bytes::from(k.clone().into_bytes()), Bytes::from(v.clone().into_bytes())))
        .collect();
    assert_eq!(scanned, want);
}

#[test]
fn a_database_written_before_compression_opens_and_reads_back() {
    let files = format1_files();
    let tables: Vec<&(String, Vec<u8>)> =
        files.iter().filter(|(n, _)| n.ends_with(".sst")).collect();
    assert_eq!(tables.len(), 2, "the fixture has two tables");
    for (name, bytes) in &tables {
        assert_eq!(table_format_version(bytes), 1, "{name} is a format-1 table");
    }
    let engine = Engine::open(disk_with(1, &files), Options::default()).unwrap();
    assert_eq!(engine.files_per_level().iter().sum::<usize>(), 2);
    let ks = engine.keyspace("data").expect("the fixture's keyspace");
    assert_holds(&engine, ks, &format1_contents());
    let entries = engine.verify_tables().unwrap();
    assert!(entries >= 400, "the scrub read both tables: {entries} entries");
}

#[test]
fn format1_and_compressed_tables_live_side_by_side_and_compact_into_compressed_ones() {
    for compression in [Compression::Lz4, Compression::Zstd { level: 3 }] {
        let fs = disk_with(2, &format1_files());
        let mut opts = Options::default();
        opts.table.compression = compression;
        let mut engine = Engine::open(fs.clone(), opts.clone()).unwrap();
        let ks = engine.keyspace("data").unwrap();
        let mut want = format1_contents();
        for i in 420..1200u32 {
            let value = fixture_value(i, 3);
            engine.put(ks, format!("key{i:04}").as_bytes(), value.as_bytes()).unwrap();
            want.push((format!("key{i:04}"), value));
        }
        engine.sync().unwrap();
        engine.request_flush().unwrap();
        engine.run_pending().unwrap();
        let versions: Vec<u32> = files_of(&fs)
            .iter()
            .filter(|(n, _)| n.ends_with(".sst"))
            .map(|(_, b)| table_format_version(b))
            .collect();
        assert!(versions.contains(&1) && versions.contains(&2), "{compression:?}: {versions:?}");
        assert_holds(&engine, ks, &want);
        drop(engine);

        // Both formats open again from the disk, then merge into format-2 tables.
        let mut engine = Engine::open(fs.clone(), opts.clone()).unwrap();
        assert_holds(&engine, ks, &want);
        let before = sst_bytes(&files_of(&fs));
        engine.request_full_compaction();
        engine.run_pending().unwrap();
        assert_holds(&engine, ks, &want);
        engine.verify_tables().unwrap();
        let after = files_of(&fs);
        for (name, bytes) in after.iter().filter(|(n, _)| n.ends_with(".sst")) {
            assert_eq!(table_format_version(bytes), 2, "{compression:?}: {name}");
        }
        // The raw values alone take about 80 bytes per key; compressed tables take far less.
        let raw_bytes: u64 = want.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        assert!(
            sst_bytes(&after) * 2 < raw_bytes,
            "{compression:?}: {} table bytes for {raw_bytes} bytes of keys and values \
             ({before} before the compaction)",
            sst_bytes(&after)
        );
    }
}

// ---- Damage to compressed tables --------------------------------------------------------------

/// A database with two compressed tables (keys a…, then keys b…) and writes still in the WAL
/// (keys c…); returns its files, the name of the b table and the expected contents.
fn damaged_base(compression: Compression) -> (Files, String, Vec<(String, String)>) {
    let fs = SimFs::new(3);
    let mut opts = Options::default();
    opts.table.compression = compression;
    let mut engine = Engine::open(fs.clone(), opts).expect("the fixture and SimFs are well-formed");
    let ks = engine.create_keyspace("data").expect("the fixture and SimFs are well-formed");
    let mut want = Vec::new();
    for prefix in ["a", "b", "c"] {
        for i in 0..600u32 {
            let key = format!("{prefix}{i:04}");
            let value =
                format!("{{\"user\":{i},\"group\":\"{prefix}\",\"tags\":[\"red\",\"blue\"]}}");
            engine
                .put(ks, key.as_bytes(), value.as_bytes())
                .expect("the fixture and SimFs are well-formed");
            want.push((key, value));
        }
        engine.sync().expect("the fixture and SimFs are well-formed");
        if prefix != "c" {
            engine.request_flush().expect("the fixture and SimFs are well-formed");
            engine.run_pending().expect("the fixture and SimFs are well-formed");
        }
    }
    assert_eq!(engine.files_per_level()[0], 2, "two tables on level 0, no compaction yet");
    drop(engine);
    let files = files_of(&fs);
    let b_table = files.iter().filter(|(n, _)| n.ends_with(".sst")).map(|(n, _)| n.clone()).max();
    (files, b_table.expect("the fixture and SimFs are well-formed"), want)
}

/// Opens the damaged database on `fs`: `None` if the open itself found the damage (it must be
/// corruption); otherwise checks that every key outside the b table reads back exactly, that
/// each b key reads back exactly or fails with corruption, and returns whether any read or the
/// scrub found the damage.
fn open_damaged(fs: &SimFs, want: &[(String, String)], label: &str) -> Option<bool> {
    let engine = match Engine::open(fs.clone(), Options::default()) {
        Ok(engine) => engine,
        Err(error) => {
            assert!(error.is_corruption(), "{label}: open failed with {error}");
            return None;
        }
    };
    let ks = engine.keyspace("data").expect("the fixture and SimFs are well-formed");
    let mut found = false;
    for (key, value) in want {
        match engine.get(ks, key.as_bytes()) {
            Ok(got) => assert_eq!(got.as_deref(), Some(value.as_bytes()), "{label}: {key}"),
            Err(Error::Corruption { .. }) if key.starts_with('b') => found = true,
            Err(error) => panic!("{label}: {key}: {error}"),
        }
    }
    match engine.verify_tables() {
        Ok(_) => assert!(!found, "{label}: a read found damage the scrub missed"),
        Err(error) => {
            assert!(error.is_corruption(), "{label}: the scrub failed with {error}");
            found = true;
        }
    }
    Some(found)
}

#[test]
fn a_flipped_bit_in_a_compressed_table_is_corruption_and_spares_other_data() {
    for compression in [Compression::Lz4, Compression::Zstd { level: 3 }] {
        let (files, b_table, want) = damaged_base(compression);
        let raw_bytes: u64 = want.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        assert!(sst_bytes(&files) * 3 < raw_bytes, "{compression:?}: the tables are compressed");
        let (mut at_open, mut at_read) = (0, 0);
        for seed in 0..40 {
            let fs = disk_with(seed, &files);
            let offset = fs.corrupt_random(&b_table).unwrap();
            let label = format!("{compression:?} seed {seed}, bit flip at {offset} of {b_table}");
            // CRC32C catches every single-bit error, so a flip is always found somewhere.
            match open_damaged(&fs, &want, &label) {
                None => at_open += 1,
                Some(true) => at_read += 1,
                Some(false) => panic!("{label}: the damage went unnoticed"),
            }
        }
        assert!(at_read > 0 && at_open + at_read == 40, "{at_open} at open, {at_read} at read");
    }
}

#[test]
fn a_torn_or_zeroed_compressed_table_is_corruption_and_spares_other_data() {
    const SECTOR_BYTES: usize = 512;
    for compression in [Compression::Lz4, Compression::Zstd { level: 3 }] {
        let (files, b_table, want) = damaged_base(compression);
        let b_bytes = files.iter().find(|(n, _)| *n == b_table).map(|(_, b)| b.clone()).unwrap();
        let replaced = |bytes: Vec<u8>| -> Files {
            files
                .iter()
                .map(|(n, b)| (n.clone(), if *n == b_table { bytes.clone() } else { b.clone() }))
                .collect()
        };
        // A tail lost at a sector boundary: the footer is gone, so the open must refuse it.
        for cut in (0..b_bytes.len()).step_by(SECTOR_BYTES) {
            let fs = disk_with(4, &replaced(b_bytes[..cut].to_vec()));
            let label = format!("{compression:?}: {b_table} cut to {cut} bytes");
            assert_eq!(open_damaged(&fs, &want, &label), None, "{label}");
        }
        // A sector zeroed in place, as a torn write leaves one: found at open or when read.
        let mut at_read = 0;
        for start in (0..b_bytes.len()).step_by(SECTOR_BYTES) {
            let mut bytes = b_bytes.clone();
            let end = (start + SECTOR_BYTES).min(bytes.len());
            if bytes[start..end].iter().all(|b| *b == 0) {
                continue;
            }
            bytes[start..end].fill(0);
            let fs = disk_with(5, &replaced(bytes));
            let label = format!("{compression:?}: {b_table} with bytes {start}..{end} zeroed");
            match open_damaged(&fs, &want, &label) {
                None => {}
                Some(true) => at_read += 1,
                Some(false) => panic!("{label}: the damage went unnoticed"),
            }
        }
        assert!(at_read > 0, "{compression:?}: some zeroed sector hit only data blocks");
    }
}

#[test]
fn an_out_of_range_zstd_level_is_refused_when_the_engine_opens() {
    let mut opts = Options::default();
    opts.table.compression = Compression::Zstd { level: 40 };
    let error = Engine::open(SimFs::new(6), opts).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("table.compression") && message.contains("from 1 to 22"), "{message}");
}
