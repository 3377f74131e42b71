//! Entry points for fuzzing the on-disk formats (behind the `fuzzing` feature).
//!
//! Each function takes arbitrary bytes and panics only if a property fails: it is the body of
//! one cargo-fuzz target (`fuzz/fuzz_targets/`) and of the stable replay harness
//! (`tests/tests/fuzz_corpus.rs`), so both run the same checks. The properties: reading damaged
//! input never panics, hangs or allocates by a length field; it fails with a clear error; and
//! what it accepts is read back consistently.
//!
//! Every format carries CRCs, which random mutations almost never satisfy. So each function also
//! runs a copy of the input with its checksums recomputed (`reframe`, `fix_table_checksums`),
//! which lets the fuzzer reach the decoders behind the checks.
//!
//! Files go to a [`SimFs`]: no real I/O, and each run starts from the same small database.

use std::cell::RefCell;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::block::{Block, BlockBuilder};
use crate::bloom::bloom_hash;
use crate::codec::{cmp_internal, crc, encode_value, get_u64, internal_key, Kind, SEQ_MAX};
use crate::compression::{decode_block, BlockCompressor, Compression};
use crate::iter::EntrySource;
use crate::manifest::{parse_name, Edit, CURRENT};
use crate::record::{put_record, RecordReader, RECORD_HEADER_BYTES};
use crate::table::{Table, FOOTER_BYTES, TABLE_MAGIC};
use crate::vfs::{read_all, Vfs, VfsFile};
use crate::{Batch, Engine, Error, Options, SimFs, TableOptions};

/// Entries read back per run at most: enough to walk every seed, small enough to stay fast.
const ENTRIES_READ_MAX: usize = 4_096;

/// Point reads checked per run at most.
const GETS_MAX: usize = 64;

/// Engine options for fuzzing: small blocks so that a small table has several.
fn options() -> Options {
    Options {
        table: TableOptions { block_size_bytes: 256, ..TableOptions::default() },
        block_cache_bytes_max: 1 << 20,
        ..Options::default()
    }
}

/// The codecs every decoded block is re-encoded with.
const CODECS: [Compression; 3] = [
    Compression::None,
    Compression::Lz4,
    Compression::Zstd { level: Compression::ZSTD_LEVEL_DEFAULT },
];

/// Takes `data` as one SSTable data block after its CRC was checked, both ways a table may hold
/// it: as a format-1 block (the entries themselves) and as a format-2 stored block (codec byte,
/// raw length, compressed bytes). Decoding a stored block fails only with `Corruption` and
/// never allocates past the raw-length limit; whatever decodes is walked and sought in, and
/// re-encoded with every codec decodes to the same bytes. A block rebuilt from the entries read
/// iterates to the same entries.
pub fn sstable_block(data: &[u8]) {
    check_entries(data);
    match decode_block("fuzz.sst", 0, Bytes::copy_from_slice(data)) {
        Ok(raw) => {
            check_entries(&raw);
            check_codecs_round_trip(&raw);
        }
        Err(error) => assert!(error.is_corruption(), "decoding a block failed with {error}"),
    }
}

/// Every codec's stored form of `raw` decodes back to `raw`, at most one byte longer.
fn check_codecs_round_trip(raw: &[u8]) {
    thread_local! {
        // One compressor per codec, kept across inputs: a Zstd context is costly to set up.
        static COMPRESSORS: RefCell<Vec<BlockCompressor>> =
            RefCell::new(CODECS.iter().map(|c| BlockCompressor::new(*c)).collect());
    }
    COMPRESSORS.with_borrow_mut(|compressors| {
        for (compressor, codec) in compressors.iter_mut().zip(CODECS) {
            let stored = Bytes::copy_from_slice(compressor.encode(raw));
            assert!(stored.len() <= raw.len() + 1, "{codec:?} grew a block past its codec byte");
            let decoded = decode_block("fuzz.sst", 0, stored).expect("an encoded block decodes");
            assert_eq!(&decoded[..], raw, "{codec:?} round trip changed the block");
        }
    });
}

/// Parses `data` as a block's entries, walks it and seeks in it; a block rebuilt from the
/// entries read iterates to the same entries.
fn check_entries(data: &[u8]) {
    let Some(block) = Block::new(Bytes::copy_from_slice(data)) else { return };
    let mut it = block.iter();
    it.seek_to_first();
    let mut entries: Vec<(Vec<u8>, Bytes)> = Vec::new();
    while it.valid() {
        // Every entry takes at least 3 bytes, so a longer walk would mean the cursor stalled.
        assert!(entries.len() <= data.len() / 3, "block iterator did not advance");
        entries.push((it.key().to_vec(), it.value()));
        it.advance();
    }
    for (key, _) in entries.iter().take(GETS_MAX) {
        it.seek(key);
    }
    it.seek(b"");
    it.seek(data);
    let sorted = entries.windows(2).all(|w| cmp_internal(&w[0].0, &w[1].0).is_lt());
    if !sorted || entries.is_empty() {
        return;
    }
    for interval in [1, 16] {
        let mut builder = BlockBuilder::new(interval);
        for (key, value) in &entries {
            builder.add(key, value);
        }
        let rebuilt = Block::new(Bytes::from(builder.finish())).expect("a built block parses");
        let mut it = rebuilt.iter();
        it.seek_to_first();
        for (key, value) in &entries {
            assert!(it.valid() && !it.corrupt(), "rebuilt block lost an entry");
            assert_eq!((it.key(), &it.value()), (&key[..], value), "rebuilt block differs");
            it.advance();
        }
        assert!(!it.valid() && !it.corrupt(), "rebuilt block has extra entries");
        for (key, _) in entries.iter().take(GETS_MAX) {
            it.seek(key);
            assert!(it.valid(), "seek in a rebuilt block found nothing");
            assert_eq!(it.key(), &key[..], "seek in a rebuilt block missed its own key");
        }
    }
}

/// Opens `data` as an SSTable (footer, index, bloom filter) and reads every entry, as given and
/// with its checksums recomputed. A table that opens never panics on reads, and reads fail only
/// with `Corruption`.
pub fn sstable_footer(data: &[u8]) {
    read_table(data);
    if let Some(fixed) = fix_table_checksums(data) {
        read_table(&fixed);
    }
}

fn read_table(data: &[u8]) {
    let fs = SimFs::new(0);
    let name = "000001.sst";
    let mut file = fs.create(name).expect("SimFs create");
    file.append(data).expect("SimFs append");
    let table = match Table::open(fs.open(name).expect("SimFs open"), name, 1) {
        Ok(table) => table,
        Err(error) => {
            assert!(
                error.is_corruption() || matches!(error, Error::UnsupportedVersion { .. }),
                "unexpected error kind opening a table: {error}"
            );
            return;
        }
    };
    let mut users = Vec::new();
    match table.iter(None, None) {
        Ok(mut it) => {
            for _ in 0..ENTRIES_READ_MAX {
                match it.next_entry() {
                    Ok(Some(entry)) => users.push(entry.user),
                    Ok(None) => break,
                    Err(error) => {
                        assert!(error.is_corruption(), "scan failed with {error}");
                        break;
                    }
                }
            }
        }
        Err(error) => assert!(error.is_corruption(), "scan failed with {error}"),
    }
    for user in users.iter().take(GETS_MAX) {
        let target = internal_key(user, SEQ_MAX, Kind::Put);
        if let Err(error) = table.get_hashed(user, bloom_hash(user), &target, None) {
            assert!(error.is_corruption(), "get failed with {error}");
        }
    }
    if let Some(first) = users.first() {
        if let Err(error) = table.iter(Some(first), None).and_then(|mut it| it.next_entry()) {
            assert!(error.is_corruption(), "seek failed with {error}");
        }
    }
}

/// Rewrites the footer's magic and CRC, then the CRCs of the blocks it and the index point at.
/// `None` if the data is shorter than a footer.
fn fix_table_checksums(data: &[u8]) -> Option<Vec<u8>> {
    let mut d = data.to_vec();
    let at = d.len().checked_sub(FOOTER_BYTES)?;
    d[at + 40..at + 48].copy_from_slice(&TABLE_MAGIC.to_le_bytes());
    let footer_crc = crc(&d[at..at + 36]);
    d[at + 36..at + 40].copy_from_slice(&footer_crc.to_le_bytes());
    let mut pos = at;
    let mut field = || get_u64(data, &mut pos).unwrap_or(u64::MAX);
    let handles = [(field(), field()), (field(), field())];
    for (offset, len) in handles {
        fix_block_crc(&mut d, offset, len, at);
    }
    let (index_offset, index_len) = handles[0];
    let index = block_bytes(&d, index_offset, index_len, at)
        .and_then(|bytes| Block::new(Bytes::copy_from_slice(bytes)));
    if let Some(index) = index {
        let mut it = index.iter();
        it.seek_to_first();
        let mut data_blocks = Vec::new();
        while it.valid() && data_blocks.len() < ENTRIES_READ_MAX {
            let value = it.value();
            let mut pos = 0;
            let offset = crate::codec::get_varint(&value, &mut pos);
            let len = crate::codec::get_varint(&value, &mut pos);
            if let (Some(offset), Some(len)) = (offset, len) {
                data_blocks.push((offset, len));
            }
            it.advance();
        }
        for (offset, len) in data_blocks {
            fix_block_crc(&mut d, offset, len, at);
        }
    }
    Some(d)
}

/// The block at `offset` (without its CRC) if it and its CRC end before `end`.
fn block_bytes(d: &[u8], offset: u64, len: u64, end: usize) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let stop = start.checked_add(usize::try_from(len).ok()?)?;
    (stop.checked_add(4)? <= end).then(|| &d[start..stop])
}

fn fix_block_crc(d: &mut [u8], offset: u64, len: u64, end: usize) {
    let Some(block) = block_bytes(d, offset, len, end) else { return };
    let sum = crc(block).to_le_bytes();
    let stop = (offset + len) as usize;
    d[stop..stop + 4].copy_from_slice(&sum);
}

/// Replays `data` as the newest WAL of a small database (as given and reframed with valid
/// CRCs). A damaged WAL never stops the engine from opening (replay stops at the first bad
/// record) unless it claims a newer format; what was recovered reads back the same through
/// scans and point reads, and again after a second recovery.
pub fn wal_replay(data: &[u8]) {
    for wal in [data.to_vec(), reframe(data)] {
        let fs = base_with(FileRole::Wal, &wal);
        check_recovery(&fs, true);
    }
}

/// Decodes `data` as the current manifest of a small database (as given and reframed with valid
/// CRCs): every edit that decodes re-encodes to itself, and opening the database fails with a
/// clear error or recovers a state that survives a second open unchanged.
pub fn manifest(data: &[u8]) {
    for manifest in [data.to_vec(), reframe(data)] {
        for payload in RecordReader::new(&manifest) {
            if let Ok(edit) = Edit::decode(payload) {
                assert_eq!(Edit::decode(&edit.encode()).as_ref(), Ok(&edit), "edit round trip");
            }
        }
        let fs = base_with(FileRole::Manifest, &manifest);
        check_recovery(&fs, false);
    }
}

/// The input's records with their CRCs recomputed: each header's length field is kept (cut to
/// what remains), so mutations of lengths and payloads reach the decoders.
fn reframe(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut pos = 0;
    while pos + RECORD_HEADER_BYTES <= data.len() {
        let len_bytes = [data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]];
        let start = pos + RECORD_HEADER_BYTES;
        let take = (u32::from_le_bytes(len_bytes) as usize).min(data.len() - start);
        if take > 0 {
            put_record(&mut out, &data[start..start + take]);
        }
        pos = start + take;
    }
    // A short remainder stays as a torn tail.
    out.extend_from_slice(&data[pos..]);
    out
}

/// Which file of the base database a fuzz input replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileRole {
    Wal,
    Manifest,
}

/// The files of a small database: two keyspaces, tables on two levels, and writes still in
/// the WAL. Built once; every run copies it into a fresh `SimFs`.
fn base_files() -> &'static [(String, Vec<u8>)] {
    static BASE: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    BASE.get_or_init(|| build_base().expect("building the fuzzing base database"))
}

fn build_base() -> crate::Result<Vec<(String, Vec<u8>)>> {
    let fs = SimFs::new(1);
    let mut engine = Engine::open(fs.clone(), options())?;
    let a = engine.create_keyspace("a")?;
    let b = engine.create_keyspace("b")?;
    let write_round = |engine: &mut Engine<SimFs>, round: u64| -> crate::Result<()> {
        for i in 0..24u64 {
            let mut batch = Batch::new();
            batch.put(a, format!("key{i:03}").into_bytes(), format!("value {i} round {round}"));
            if i % 3 == 0 {
                batch.put_with_expiry(b, format!("ttl{i:03}").into_bytes(), "x", Some(1_000 + i));
            }
            if i % 5 == round % 5 {
                batch.delete(a, format!("key{:03}", i / 2).into_bytes());
            }
            engine.write(&batch)?;
        }
        engine.sync()?;
        Ok(())
    };
    write_round(&mut engine, 0)?;
    engine.request_flush()?;
    engine.run_pending()?;
    engine.request_full_compaction();
    engine.run_pending()?;
    // The next table is written with Zstd, the first with LZ4 (the default): the base holds both.
    drop(engine);
    let mut zstd = options();
    zstd.table.compression = Compression::Zstd { level: Compression::ZSTD_LEVEL_DEFAULT };
    let mut engine = Engine::open(fs.clone(), zstd)?;
    write_round(&mut engine, 1)?;
    engine.request_flush()?;
    engine.run_pending()?;
    write_round(&mut engine, 2)?;
    drop(engine);
    let mut files = Vec::new();
    for name in fs.list().map_err(|e| Error::io("list", "/", e))? {
        let file = fs.open(&name).map_err(|e| Error::io("open", &name, e))?;
        files.push((name.clone(), read_all(&file).map_err(|e| Error::io("read", &name, e))?));
    }
    Ok(files)
}

/// The name of the base file that plays `role`: the newest WAL, or the manifest CURRENT names.
fn role_name(role: FileRole) -> &'static str {
    static NAMES: OnceLock<(String, String)> = OnceLock::new();
    let (wal, manifest) = NAMES.get_or_init(|| {
        let files = base_files();
        let wal = files
            .iter()
            .filter(|(name, _)| matches!(parse_name(name), Some(("wal", _))))
            .map(|(name, _)| name.clone())
            .max()
            .expect("the base database has a WAL");
        let current = files
            .iter()
            .find(|(name, _)| name == CURRENT)
            .map(|(_, bytes)| String::from_utf8_lossy(bytes).trim_end().to_string())
            .expect("the base database has CURRENT");
        (wal, current)
    });
    match role {
        FileRole::Wal => wal,
        FileRole::Manifest => manifest,
    }
}

/// A fresh `SimFs` holding the base database with the file of `role` replaced by `data`.
fn base_with(role: FileRole, data: &[u8]) -> SimFs {
    let fs = SimFs::new(0);
    let replaced = role_name(role);
    for (name, bytes) in base_files() {
        let bytes = if name == replaced { data } else { bytes };
        let mut file = fs.create(name).expect("SimFs create");
        file.append(bytes).expect("SimFs append");
        file.sync().expect("SimFs sync");
    }
    fs.sync_dir().expect("SimFs sync_dir");
    fs
}

/// What a recovered database holds: per keyspace, the scanned entries (or the scan's error).
type Contents = Vec<(String, Result<Vec<(Bytes, Bytes, Option<u64>)>, String>)>;

fn contents(engine: &Engine<SimFs>, strict: bool) -> Contents {
    let mut out = Vec::new();
    for (name, keyspace) in engine.keyspaces() {
        let scanned: Result<Vec<_>, String> = match engine.scan::<&[u8]>(keyspace, .., None) {
            Ok(scan) => scan
                .take(ENTRIES_READ_MAX)
                .map(|kv| kv.map(|kv| (kv.key, kv.value, kv.expire_at_ms)))
                .collect::<crate::Result<Vec<_>>>()
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if strict {
            let entries = scanned.as_ref().expect("scanning a recovered database");
            for (key, value, _) in entries.iter().take(GETS_MAX) {
                let got = engine.get(keyspace, key).expect("point read in a recovered database");
                assert_eq!(got.as_ref(), Some(value), "get and scan disagree on {key:?}");
            }
        }
        out.push((name, scanned));
    }
    out
}

/// Opens the database on `fs`, reads it, and opens it again: the second recovery must find the
/// same contents. `strict`: the tables and manifest are intact, so the open and every read must
/// succeed (only a WAL from a newer format may refuse the open).
fn check_recovery(fs: &SimFs, strict: bool) {
    let first = match Engine::open(fs.clone(), options()) {
        // The engine is dropped (a crash without a clean shutdown) before the second open.
        Ok(engine) => contents(&engine, strict),
        Err(error) => {
            let clear = match &error {
                Error::UnsupportedVersion { .. } => true,
                Error::Corruption { .. } | Error::Io { .. } => !strict,
                _ => false,
            };
            assert!(clear, "recovery failed with an unexpected error: {error}");
            return;
        }
    };
    let second = Engine::open(fs.clone(), options()).expect("reopening a recovered database");
    assert_eq!(contents(&second, strict), first, "a second recovery changed the contents");
}

/// Valid inputs for the seed corpora, as (target, file name, bytes): the base database's WAL,
/// manifest and tables, and blocks built like a table's.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, bytes) in base_files() {
        if name == role_name(FileRole::Wal) {
            out.push(("wal_replay", "base.wal".to_string(), bytes.clone()));
        } else if name == role_name(FileRole::Manifest) {
            out.push(("manifest", "base.manifest".to_string(), bytes.clone()));
        } else if name.ends_with(".sst") {
            out.push(("sstable_footer", format!("base-{name}"), bytes.clone()));
        }
    }
    for (interval, count) in [(1, 3), (4, 20), (16, 40)] {
        let block = seed_block(interval, count, |i| format!("v{i}"));
        out.push(("sstable_block", format!("block-r{interval}-n{count}"), block));
    }
    // Format-2 stored blocks, one per codec, of entries whose values compress.
    let block = seed_block(16, 40, |i| format!("value {i} of a block whose values compress well"));
    for codec in CODECS {
        let stored = BlockCompressor::new(codec).encode(&block).to_vec();
        out.push(("sstable_block", format!("stored-{}-r16-n40", codec.name()), stored));
    }
    out
}

/// A data block of `count` entries, a restart every `interval`, values from `value`.
fn seed_block(interval: usize, count: u64, value: impl Fn(u64) -> String) -> Vec<u8> {
    let mut builder = BlockBuilder::new(interval);
    for i in 0..count {
        let key = internal_key(format!("key{i:04}").as_bytes(), 100 + i, Kind::Put);
        let mut encoded = Vec::new();
        encode_value(&mut encoded, (i % 4 == 0).then_some(i), value(i).as_bytes());
        builder.add(&key, &encoded);
    }
    builder.finish()
}
