//! SSTables: immutable sorted files of checksummed blocks, with a block index, a bloom filter
//! and a footer.
//!
//! File layout: data blocks, the bloom filter block, the index block, the footer. Every block is
//! followed by its masked CRC32C (u32 LE) of the bytes as stored. Data block entries map internal
//! keys to encoded values (see `codec::encode_value`). In format 2 a data block is stored as
//! `codec u8 | body` (raw, LZ4 or Zstd; `compression.rs`), so its CRC covers the compressed bytes
//! and is checked before decompression; format 1 (before compression) stored data blocks raw,
//! without the codec byte, and is still read. The index block maps each data block's last
//! internal key to `offset (varint) | length (varint)` of the stored block. The 48-byte footer is `index offset | index length |
//! bloom offset | bloom length` (u64 LE each), `format version (u32 LE)`, `CRC of the preceding 36
//! bytes (u32 LE)`, `magic (u64 LE)`. Reading checks the magic, then the version (a newer one is
//! refused), then the CRC; a damaged block is a `Corruption` error, never wrong data.

use std::cell::RefCell;

use bytes::Bytes;

use crate::block::{Block, BlockBuilder};
use crate::bloom::{self, Bloom};
use crate::cache::BlockCache;
use crate::codec::{
    cmp_internal, crc, decode_value, encode_value, get_u32, get_u64, get_varint, internal_key,
    put_internal_key, put_varint, split_internal_key, Kind, SeqNo, SEQ_MAX,
};
use crate::compression::{decode_block, BlockCompressor, Compression};
use crate::iter::{Entry, EntrySource, Found};
use crate::vfs::VfsFile;
use crate::{Error, Result};

/// Identifies an SSTable file.
pub const TABLE_MAGIC: u64 = 0x7269_6e67_6b76_5354; // "ringkvST"
/// The SSTable format version this build writes and the newest it reads. Version 2 added the
/// codec byte in front of every data block; version 1 tables (raw data blocks) are still read.
pub const TABLE_FORMAT_VERSION: u32 = 2;
/// The last format whose data blocks carry no codec byte.
const TABLE_FORMAT_RAW_BLOCKS: u32 = 1;
/// The footer's size in bytes.
pub const FOOTER_BYTES: usize = 48;
/// Bytes buffered by the writer before they are appended to the file.
const WRITE_BUFFER_BYTES_MAX: usize = 256 * 1024;

/// Knobs of the table format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// Target size of a data block before its trailer.
    pub block_size_bytes: usize,
    /// Entries between restart points.
    pub restart_interval: usize,
    /// Bloom filter bits per key (0 disables the filter's effect by making it tiny).
    pub bloom_bits_per_key: usize,
    /// How data blocks of new tables are compressed (default LZ4). Tables already written keep
    /// their blocks as they are: every block records its codec, so any mix reads back.
    pub compression: Compression,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            block_size_bytes: 4096,
            restart_interval: 16,
            bloom_bits_per_key: 10,
            compression: Compression::default(),
        }
    }
}

/// Where a data block is and the last key in it.
#[derive(Debug, Clone)]
pub(crate) struct IndexEntry {
    pub last_key: Bytes,
    pub offset: u64,
    pub len: u32,
}

/// What a finished table holds, known without reading it back.
#[derive(Debug, Clone)]
pub(crate) struct TableInfo {
    pub size_bytes: u64,
    pub smallest: Bytes,
    pub largest: Bytes,
    pub entries: u64,
    pub min_seq: SeqNo,
    pub max_seq: SeqNo,
    pub index: Vec<IndexEntry>,
    pub bloom: Bloom,
}

/// Writes one table.
pub(crate) struct TableWriter<F: VfsFile> {
    file: F,
    name: String,
    opts: TableOptions,
    pending: Vec<u8>,
    offset: u64,
    block: BlockBuilder,
    compressor: BlockCompressor,
    index: Vec<IndexEntry>,
    hashes: Vec<u64>,
    last_user: Option<Bytes>,
    smallest: Option<Bytes>,
    entries: u64,
    min_seq: SeqNo,
    max_seq: SeqNo,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl<F: VfsFile> TableWriter<F> {
    pub fn new(file: F, name: &str, opts: TableOptions) -> Self {
        TableWriter {
            file,
            name: name.to_string(),
            opts,
            pending: Vec::with_capacity(WRITE_BUFFER_BYTES_MAX + opts.block_size_bytes * 2),
            offset: 0,
            block: BlockBuilder::new(opts.restart_interval),
            compressor: BlockCompressor::new(opts.compression),
            index: Vec::new(),
            hashes: Vec::new(),
            last_user: None,
            smallest: None,
            entries: 0,
            min_seq: SEQ_MAX,
            max_seq: 0,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        }
    }

    /// Adds an entry; entries must come in internal-key order.
    pub fn add(&mut self, e: &Entry) -> Result<()> {
        self.key_buf.clear();
        put_internal_key(&mut self.key_buf, &e.user, e.seq, e.kind);
        self.value_buf.clear();
        encode_value(&mut self.value_buf, e.expire_at_ms, &e.value);
        if !self.block.is_empty()
            && self.block.estimated_size() + self.key_buf.len() + self.value_buf.len()
                > self.opts.block_size_bytes
        {
            self.finish_block()?;
        }
        if self.last_user.as_ref() != Some(&e.user) {
            self.hashes.push(bloom::bloom_hash(&e.user));
            self.last_user = Some(e.user.clone());
        }
        if self.smallest.is_none() {
            self.smallest = Some(Bytes::copy_from_slice(&self.key_buf));
        }
        self.block.add(&self.key_buf, &self.value_buf);
        self.entries += 1;
        self.min_seq = self.min_seq.min(e.seq);
        self.max_seq = self.max_seq.max(e.seq);
        Ok(())
    }

    /// Bytes written or buffered so far.
    pub fn size_estimate(&self) -> u64 {
        self.offset + self.pending.len() as u64 + self.block.estimated_size() as u64
    }

    /// Writes the filter, index and footer, and syncs the file.
    pub fn finish(mut self) -> Result<TableInfo> {
        if !self.block.is_empty() {
            self.finish_block()?;
        }
        let bloom_data = bloom::build(&self.hashes, self.opts.bloom_bits_per_key);
        let (bloom_off, bloom_len) = buffer_block(&mut self.pending, &mut self.offset, &bloom_data);
        let mut ib = BlockBuilder::new(1);
        let mut handle = Vec::new();
        for e in &self.index {
            handle.clear();
            put_varint(&mut handle, e.offset);
            put_varint(&mut handle, u64::from(e.len));
            ib.add(&e.last_key, &handle);
        }
        let index_data = ib.finish();
        let (index_off, index_len) = buffer_block(&mut self.pending, &mut self.offset, &index_data);
        let mut footer = Vec::with_capacity(FOOTER_BYTES);
        for v in [index_off, index_len, bloom_off, bloom_len] {
            footer.extend_from_slice(&v.to_le_bytes());
        }
        footer.extend_from_slice(&TABLE_FORMAT_VERSION.to_le_bytes());
        let c = crc(&footer);
        footer.extend_from_slice(&c.to_le_bytes());
        footer.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
        debug_assert_eq!(footer.len(), FOOTER_BYTES);
        self.pending.extend_from_slice(&footer);
        self.offset += FOOTER_BYTES as u64;
        self.write_pending()?;
        self.file.sync().map_err(|e| Error::io("sync", &self.name, e))?;
        let bloom = Bloom::new(bloom_data)
            .ok_or_else(|| Error::corruption(&self.name, bloom_off, "built a malformed filter"))?;
        let largest = self.index.last().map(|e| e.last_key.clone()).unwrap_or_default();
        Ok(TableInfo {
            size_bytes: self.offset,
            smallest: self.smallest.unwrap_or_default(),
            largest,
            entries: self.entries,
            min_seq: self.min_seq,
            max_seq: self.max_seq,
            index: compact_index(self.index),
            bloom,
        })
    }

    fn finish_block(&mut self) -> Result<()> {
        let last_key = Bytes::copy_from_slice(self.block.last_key());
        let raw = self.block.finish();
        let stored = self.compressor.encode(&raw);
        let (offset, len) = buffer_block(&mut self.pending, &mut self.offset, stored);
        // A block is at most a few entries over the block size, and an entry is at most a key
        // and a value within the engine's limits, so its length fits the index's u32.
        let len = u32::try_from(len).map_err(|_| Error::TooLarge {
            what: "table block",
            len: len as usize,
            max: u32::MAX as usize,
        })?;
        self.index.push(IndexEntry { last_key, offset, len });
        if self.pending.len() >= WRITE_BUFFER_BYTES_MAX {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.file.append(&self.pending).map_err(|e| Error::io("append", &self.name, e))?;
            self.pending.clear();
        }
        Ok(())
    }
}

/// Buffers a block as stored and its CRC at `*offset` of the file; returns its (offset, length
/// without the CRC).
fn buffer_block(pending: &mut Vec<u8>, offset: &mut u64, stored: &[u8]) -> (u64, u64) {
    let at = *offset;
    pending.extend_from_slice(stored);
    pending.extend_from_slice(&crc(stored).to_le_bytes());
    *offset += stored.len() as u64 + 4;
    (at, stored.len() as u64)
}

/// An open table.
#[derive(Debug)]
pub(crate) struct Table<F: VfsFile> {
    file: F,
    name: String,
    number: u64,
    /// The footer's format version: whether data blocks carry a codec byte.
    format_version: u32,
    size_bytes: u64,
    index: Vec<IndexEntry>,
    bloom: Bloom,
}

impl<F: VfsFile> Table<F> {
    /// Opens a table, checking its footer, index and filter.
    pub fn open(file: F, name: &str, number: u64) -> Result<Table<F>> {
        let size = file.len().map_err(|e| Error::io("len", name, e))?;
        if size < FOOTER_BYTES as u64 {
            return Err(Error::corruption(name, 0, "file shorter than a footer"));
        }
        let mut footer = [0u8; FOOTER_BYTES];
        file.read_at(size - FOOTER_BYTES as u64, &mut footer)
            .map_err(|e| Error::io("read_at", name, e))?;
        let mut pos = 40;
        let magic = get_u64(&footer, &mut pos).unwrap_or(0);
        let foot_at = size - FOOTER_BYTES as u64;
        if magic != TABLE_MAGIC {
            return Err(Error::corruption(name, foot_at, "bad magic: not an SSTable"));
        }
        let mut pos = 32;
        let version = get_u32(&footer, &mut pos).unwrap_or(0);
        let stored = get_u32(&footer, &mut pos).unwrap_or(0);
        // The checksum comes first so that a flipped bit in the version field reads as damage;
        // a genuine newer file has a valid footer checksum.
        if crc(&footer[..36]) != stored {
            return Err(Error::corruption(name, foot_at, "footer checksum mismatch"));
        }
        if version > TABLE_FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: name.to_string(),
                found: version,
                supported: TABLE_FORMAT_VERSION,
            });
        }
        let mut pos = 0;
        let mut field = || get_u64(&footer, &mut pos).unwrap_or(u64::MAX);
        let (index_off, index_len, bloom_off, bloom_len) = (field(), field(), field(), field());
        let index_data = read_checked(&file, name, index_off, index_len, size)?;
        let index = parse_index(name, index_off, index_data)?;
        let bloom_data = read_checked(&file, name, bloom_off, bloom_len, size)?;
        let bloom = Bloom::new(bloom_data.to_vec())
            .ok_or_else(|| Error::corruption(name, bloom_off, "malformed bloom filter"))?;
        Ok(Table {
            file,
            name: name.to_string(),
            number,
            format_version: version,
            size_bytes: size,
            index,
            bloom,
        })
    }

    /// Wraps a table just written, whose index and filter are already in memory.
    pub fn from_info(file: F, name: &str, number: u64, info: &TableInfo) -> Table<F> {
        Table {
            file,
            name: name.to_string(),
            number,
            format_version: TABLE_FORMAT_VERSION,
            size_bytes: info.size_bytes,
            index: info.index.clone(),
            bloom: info.bloom.clone(),
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Reads block `i`, through the cache if given; `fill` says whether a block read from the
    /// file is added to the cache (not for the inner blocks of a long scan, which would only
    /// push out the blocks point reads need).
    fn block(&self, i: usize, cache: Option<&RefCell<BlockCache>>, fill: bool) -> Result<Block> {
        let h = &self.index[i];
        if let Some(c) = cache {
            if let Some(data) = c.borrow_mut().get(self.number, h.offset) {
                return Block::new(data)
                    .ok_or_else(|| Error::corruption(&self.name, h.offset, "malformed block"));
            }
        }
        let stored =
            read_checked(&self.file, &self.name, h.offset, u64::from(h.len), self.size_bytes)?;
        let data = self.decode_data_block(h.offset, stored)?;
        // The cache holds blocks decompressed, so a hit costs no decompression.
        if let Some(c) = cache.filter(|_| fill) {
            c.borrow_mut().insert(self.number, h.offset, data.clone());
        }
        Block::new(data).ok_or_else(|| Error::corruption(&self.name, h.offset, "malformed block"))
    }

    /// A data block as the block parser reads it, from its stored bytes (CRC already checked):
    /// a format-1 block as it is, a format-2 block decoded by its codec byte.
    fn decode_data_block(&self, offset: u64, stored: Bytes) -> Result<Bytes> {
        if self.format_version <= TABLE_FORMAT_RAW_BLOCKS {
            return Ok(stored);
        }
        decode_block(&self.name, offset, stored)
    }

    /// The newest version of `user` visible at `snapshot`, if this table has one.
    #[cfg(test)]
    pub fn get(
        &self,
        user: &[u8],
        snapshot: SeqNo,
        cache: Option<&RefCell<BlockCache>>,
    ) -> Result<Option<Entry>> {
        let target = internal_key(user, snapshot, Kind::Put);
        let found = self.get_hashed(user, bloom::bloom_hash(user), &target, cache)?;
        Ok(found.map(|f| Entry {
            user: Bytes::copy_from_slice(user),
            seq: f.seq,
            kind: f.kind,
            expire_at_ms: f.expire_at_ms,
            value: f.value,
        }))
    }

    /// The newest version of `user` at or below the sequence number in `target` (the internal
    /// key of `user` at the snapshot), with the key's filter hash computed once by the caller.
    pub fn get_hashed(
        &self,
        user: &[u8],
        hash: u64,
        target: &[u8],
        cache: Option<&RefCell<BlockCache>>,
    ) -> Result<Option<Found>> {
        debug_assert_eq!(crate::codec::user_key(target), user);
        if !self.bloom.may_contain(hash) {
            return Ok(None);
        }
        let mut i = self.index.partition_point(|e| cmp_internal(&e.last_key, target).is_lt());
        while i < self.index.len() {
            let offset = self.index[i].offset;
            let block = self.block(i, cache, true)?;
            let mut it = block.iter();
            it.seek(target);
            if it.corrupt() {
                return Err(Error::corruption(&self.name, offset, "bad entry"));
            }
            if it.valid() {
                let (found_user, seq, kind) = split_internal_key(it.key()).ok_or_else(|| {
                    Error::corruption(&self.name, offset, "malformed internal key")
                })?;
                if found_user != user {
                    return Ok(None);
                }
                let value = it.value();
                let (expire_at_ms, skip) = decode_value(&value)
                    .ok_or_else(|| Error::corruption(&self.name, offset, "malformed value"))?;
                return Ok(Some(Found { seq, kind, expire_at_ms, value: value.slice(skip..) }));
            }
            i += 1;
        }
        Ok(None)
    }

    /// Iterates entries from the first version of `start` (or from the beginning).
    pub fn iter<'a>(
        &'a self,
        start: Option<&[u8]>,
        cache: Option<&'a RefCell<BlockCache>>,
    ) -> Result<TableIter<'a, F>> {
        let mut it = TableIter {
            table: self,
            cache,
            block_idx: 0,
            block: None,
            cur: None,
            readahead: None,
            blocks_read: 0,
        };
        match start {
            Some(user) => {
                let target = internal_key(user, SEQ_MAX, Kind::Put);
                it.block_idx =
                    self.index.partition_point(|e| cmp_internal(&e.last_key, &target).is_lt());
                if it.block_idx < self.index.len() {
                    let mut bi = self.block(it.block_idx, cache, true)?.iter();
                    bi.seek(&target);
                    it.block = Some(bi);
                }
            }
            None => {
                if !self.index.is_empty() {
                    let mut bi = self.block(0, cache, true)?.iter();
                    bi.seek_to_first();
                    it.block = Some(bi);
                }
            }
        }
        it.fill()?;
        Ok(it)
    }
}

/// Iterates a table's entries in order.
pub(crate) struct TableIter<'a, F: VfsFile> {
    table: &'a Table<F>,
    cache: Option<&'a RefCell<BlockCache>>,
    block_idx: usize,
    block: Option<crate::block::BlockIter>,
    cur: Option<Entry>,
    /// Blocks read ahead in one I/O: (file offset, bytes including each block's CRC).
    readahead: Option<(u64, Bytes)>,
    /// Blocks this iterator has moved on to; readahead starts after the second.
    blocks_read: u32,
}

/// Readahead grows from this size, doubling per read, up to the maximum.
const READAHEAD_BYTES_MIN: u64 = 16 << 10;
const READAHEAD_BYTES_MAX: u64 = 256 << 10;

impl<F: VfsFile> TableIter<'_, F> {
    fn fill(&mut self) -> Result<()> {
        loop {
            let Some(bi) = self.block.as_mut() else {
                self.cur = None;
                return Ok(());
            };
            let offset = self.table.index[self.block_idx].offset;
            if bi.corrupt() {
                return Err(Error::corruption(&self.table.name, offset, "bad entry"));
            }
            if bi.valid() {
                self.cur = Some(decode_entry(&self.table.name, offset, bi.key(), bi.value())?);
                bi.advance();
                return Ok(());
            }
            self.block_idx += 1;
            if self.block_idx >= self.table.index.len() {
                self.block = None;
                continue;
            }
            let mut next = self.next_block(self.block_idx)?.iter();
            next.seek_to_first();
            self.block = Some(next);
        }
    }

    /// The next block of a sequential walk: from the cache if it is there, else from the
    /// readahead buffer, refilled (growing) once the walk has moved past two blocks.
    fn next_block(&mut self, i: usize) -> Result<Block> {
        self.blocks_read += 1;
        let table = self.table;
        let h = &table.index[i];
        if self.blocks_read < 2 {
            return table.block(i, self.cache, false);
        }
        if let Some(c) = self.cache {
            if let Some(data) = c.borrow_mut().get(table.number, h.offset) {
                return Block::new(data)
                    .ok_or_else(|| Error::corruption(&table.name, h.offset, "malformed block"));
            }
        }
        // Handles come from the file: checked arithmetic, so a damaged index is an error.
        let Some(end) = block_end(h).filter(|end| *end <= table.size_bytes) else {
            return Err(Error::corruption(&table.name, h.offset, "block handle past the end"));
        };
        let covered = self
            .readahead
            .as_ref()
            .is_some_and(|(off, buf)| h.offset >= *off && end <= off + buf.len() as u64);
        if !covered {
            let want =
                (READAHEAD_BYTES_MIN << (self.blocks_read - 2).min(8)).min(READAHEAD_BYTES_MAX);
            // Whole blocks from i on, each after the one before in the file, as many as fit in
            // `want` (at least one). A damaged index whose blocks go backwards ends the run
            // there; it used to make the buffer shorter than block i (found by fuzzing
            // sstable_footer: regressions/sstable_footer/readahead-blocks-out-of-order).
            let (mut last, mut last_end) = (i, end);
            while last + 1 < table.index.len() {
                let n = &table.index[last + 1];
                let Some(n_end) = block_end(n) else { break };
                if n.offset < last_end || n_end > table.size_bytes || n_end - h.offset > want {
                    break;
                }
                (last, last_end) = (last + 1, n_end);
            }
            let len = last_end - h.offset;
            let mut buf = vec![0u8; len as usize];
            table
                .file
                .read_at(h.offset, &mut buf)
                .map_err(|e| Error::io("read_at", &table.name, e))?;
            self.readahead = Some((h.offset, Bytes::from(buf)));
        }
        let Some((off, buf)) = &self.readahead else {
            return Err(Error::Protocol("readahead buffer missing".into()));
        };
        let start = (h.offset - off) as usize;
        let stored =
            verify_block(&table.name, h.offset, buf.slice(start..start + h.len as usize + 4))?;
        let data = table.decode_data_block(h.offset, stored)?;
        Block::new(data).ok_or_else(|| Error::corruption(&table.name, h.offset, "malformed block"))
    }
}

impl<F: VfsFile> EntrySource for TableIter<'_, F> {
    fn peek(&self) -> Option<&Entry> {
        self.cur.as_ref()
    }

    fn next_entry(&mut self) -> Result<Option<Entry>> {
        let e = self.cur.take();
        if e.is_some() {
            self.fill()?;
        }
        Ok(e)
    }
}

/// Iterates the tables of a sorted level (disjoint key ranges, ascending) as one source,
/// opening each table only when the previous one is exhausted.
pub(crate) struct LevelIter<'a, F: VfsFile> {
    tables: Vec<&'a Table<F>>,
    next_table: usize,
    cache: Option<&'a RefCell<BlockCache>>,
    cur: Option<TableIter<'a, F>>,
}

impl<'a, F: VfsFile> LevelIter<'a, F> {
    pub fn new(
        tables: Vec<&'a Table<F>>,
        start: Option<&[u8]>,
        cache: Option<&'a RefCell<BlockCache>>,
    ) -> Result<Self> {
        let mut it = LevelIter { tables, next_table: 0, cache, cur: None };
        if let Some(first) = it.tables.first() {
            it.cur = Some(first.iter(start, cache)?);
            it.next_table = 1;
        }
        it.skip_empty()?;
        Ok(it)
    }

    fn skip_empty(&mut self) -> Result<()> {
        while self.cur.as_ref().is_some_and(|c| c.peek().is_none()) {
            self.cur = match self.tables.get(self.next_table) {
                Some(t) => Some(t.iter(None, self.cache)?),
                None => None,
            };
            self.next_table += 1;
        }
        Ok(())
    }
}

impl<F: VfsFile> EntrySource for LevelIter<'_, F> {
    fn peek(&self) -> Option<&Entry> {
        self.cur.as_ref().and_then(|c| c.peek())
    }

    fn next_entry(&mut self) -> Result<Option<Entry>> {
        let Some(cur) = self.cur.as_mut() else {
            return Ok(None);
        };
        let e = cur.next_entry()?;
        self.skip_empty()?;
        Ok(e)
    }
}

fn decode_entry(name: &str, offset: u64, ikey: &[u8], value: Bytes) -> Result<Entry> {
    let (user, seq, kind) = split_internal_key(ikey)
        .ok_or_else(|| Error::corruption(name, offset, "malformed internal key"))?;
    let (expire_at_ms, skip) =
        decode_value(&value).ok_or_else(|| Error::corruption(name, offset, "malformed value"))?;
    Ok(Entry {
        user: Bytes::copy_from_slice(user),
        seq,
        kind,
        expire_at_ms,
        value: value.slice(skip..),
    })
}

/// Where a block and its CRC end in the file; `None` past `u64::MAX`.
fn block_end(h: &IndexEntry) -> Option<u64> {
    h.offset.checked_add(u64::from(h.len) + 4)
}

/// Reads a block and verifies its trailing CRC.
fn read_checked<F: VfsFile>(file: &F, name: &str, off: u64, len: u64, size: u64) -> Result<Bytes> {
    let end = off.checked_add(len).and_then(|e| e.checked_add(4));
    if end.is_none_or(|e| e > size) {
        return Err(Error::corruption(name, off, "block handle past the end of the file"));
    }
    let mut buf = vec![0u8; len as usize + 4];
    file.read_at(off, &mut buf).map_err(|e| Error::io("read_at", name, e))?;
    verify_block(name, off, Bytes::from(buf))
}

/// Checks a block's trailing CRC; returns the block without it.
fn verify_block(name: &str, off: u64, with_crc: Bytes) -> Result<Bytes> {
    let n =
        with_crc.len().checked_sub(4).ok_or_else(|| Error::corruption(name, off, "short block"))?;
    let stored =
        u32::from_le_bytes([with_crc[n], with_crc[n + 1], with_crc[n + 2], with_crc[n + 3]]);
    if crc(&with_crc[..n]) != stored {
        return Err(Error::corruption(name, off, "block checksum mismatch"));
    }
    Ok(with_crc.slice(..n))
}

fn parse_index(name: &str, off: u64, data: Bytes) -> Result<Vec<IndexEntry>> {
    let block = Block::new(data).ok_or_else(|| Error::corruption(name, off, "malformed index"))?;
    let mut it = block.iter();
    it.seek_to_first();
    let mut out = Vec::new();
    while it.valid() {
        let v = it.value();
        let mut pos = 0;
        let (Some(offset), Some(len)) = (get_varint(&v, &mut pos), get_varint(&v, &mut pos)) else {
            return Err(Error::corruption(name, off, "malformed index entry"));
        };
        out.push(IndexEntry {
            last_key: Bytes::copy_from_slice(it.key()),
            offset,
            len: u32::try_from(len)
                .map_err(|_| Error::corruption(name, off, "index entry length too large"))?,
        });
        it.advance();
    }
    if it.corrupt() {
        return Err(Error::corruption(name, off, "malformed index entry"));
    }
    Ok(compact_index(out))
}

/// Moves every index key into one buffer, so that a binary search over the index walks
/// neighbouring memory instead of chasing one allocation per block.
fn compact_index(entries: Vec<IndexEntry>) -> Vec<IndexEntry> {
    let total: usize = entries.iter().map(|e| e.last_key.len()).sum();
    let mut buf = Vec::with_capacity(total);
    for e in &entries {
        buf.extend_from_slice(&e.last_key);
    }
    let buf = Bytes::from(buf);
    let mut at = 0;
    entries
        .into_iter()
        .map(|e| {
            let len = e.last_key.len();
            let last_key = buf.slice(at..at + len);
            at += len;
            IndexEntry { last_key, ..e }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simfs::SimFs;
    use crate::vfs::Vfs;

    fn entry(i: u32, seq: SeqNo, kind: Kind) -> Entry {
        Entry {
            user: Bytes::from(format!("user{i:06}").into_bytes()),
            seq,
            kind,
            expire_at_ms: i.is_multiple_of(7).then_some(u64::from(i)),
            value: Bytes::from(vec![(i % 251) as u8; 100]),
        }
    }

    fn write_table(fs: &SimFs, name: &str, n: u32) -> TableInfo {
        write_table_with(fs, name, n, Compression::default())
    }

    fn write_table_with(fs: &SimFs, name: &str, n: u32, compression: Compression) -> TableInfo {
        let opts = TableOptions { compression, ..TableOptions::default() };
        let mut w = TableWriter::new(fs.create(name).unwrap(), name, opts);
        for i in 0..n {
            w.add(&entry(i, 1000 + u64::from(i), Kind::Put)).unwrap();
            if i % 10 == 0 {
                w.add(&entry(i, 10, Kind::Delete)).unwrap();
            }
        }
        w.finish().unwrap()
    }

    #[test]
    fn table_round_trips_point_reads_and_scans() {
        let fs = SimFs::new(1);
        let info = write_table(&fs, "1.sst", 2000);
        assert!(info.index.len() > 10, "many 4 KiB blocks");
        let t = Table::open(fs.open("1.sst").unwrap(), "1.sst", 1).unwrap();
        assert_eq!(t.size_bytes(), info.size_bytes);
        let cache = RefCell::new(BlockCache::new(1 << 20));
        for i in (0..2000).step_by(37) {
            let e = t.get(&entry(i, 0, Kind::Put).user, SEQ_MAX, Some(&cache)).unwrap().unwrap();
            assert_eq!(e, entry(i, 1000 + u64::from(i), Kind::Put));
            // Below the put's sequence number, only the old tombstone (every 10th key) is seen.
            let old = t.get(&e.user, 500, None).unwrap();
            assert_eq!(old.map(|o| o.kind), (i % 10 == 0).then_some(Kind::Delete));
        }
        assert!(t.get(b"user999999", SEQ_MAX, None).unwrap().is_none());
        let mut it = t.iter(Some(b"user001000"), Some(&cache)).unwrap();
        let first = it.next_entry().unwrap().unwrap();
        assert_eq!(first.user, entry(1000, 0, Kind::Put).user);
        let mut n = 1;
        while it.next_entry().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 1000 + 100);
    }

    const CODECS: [Compression; 3] =
        [Compression::None, Compression::Lz4, Compression::Zstd { level: 3 }];

    /// The codec byte of every data block of table `name`, read from the file.
    fn codec_bytes(fs: &SimFs, name: &str, info: &TableInfo) -> Vec<u8> {
        let file = fs.open(name).unwrap();
        let mut byte = [0u8; 1];
        let mut out = Vec::new();
        for h in &info.index {
            file.read_at(h.offset, &mut byte).unwrap();
            out.push(byte[0]);
        }
        out
    }

    #[test]
    fn tables_round_trip_with_every_codec_and_compressed_ones_are_smaller() {
        let mut sizes = Vec::new();
        for (c, compression) in CODECS.into_iter().enumerate() {
            let fs = SimFs::new(5);
            let info = write_table_with(&fs, "t.sst", 2000, compression);
            let codecs = codec_bytes(&fs, "t.sst", &info);
            assert!(codecs.iter().all(|b| usize::from(*b) == c), "{compression:?}: {codecs:?}");
            let t = Table::open(fs.open("t.sst").unwrap(), "t.sst", 1).unwrap();
            let cache = RefCell::new(BlockCache::new(1 << 20));
            for i in (0..2000).step_by(13) {
                let got = t.get(&entry(i, 0, Kind::Put).user, SEQ_MAX, Some(&cache)).unwrap();
                assert_eq!(got, Some(entry(i, 1000 + u64::from(i), Kind::Put)), "{compression:?}");
            }
            let mut it = t.iter(None, None).unwrap();
            let mut n = 0;
            while it.next_entry().unwrap().is_some() {
                n += 1;
            }
            assert_eq!(n, 2000 + 200, "{compression:?}: every entry once");
            sizes.push(info.size_bytes);
        }
        // Each 100-byte value repeats one byte: both codecs should take a block to a fraction.
        assert!(sizes[1] * 3 < sizes[0] && sizes[2] * 3 < sizes[0], "sizes {sizes:?}");
    }

    #[test]
    fn a_table_mixes_raw_and_compressed_blocks_when_some_do_not_shrink() {
        let fs = SimFs::new(6);
        let mut w = TableWriter::new(fs.create("m.sst").unwrap(), "m.sst", TableOptions::default());
        let mut noise = 0x2545_f491_4f6c_dd1du64;
        let mut entries = Vec::new();
        for i in 0..600u32 {
            let mut e = entry(i, 100 + u64::from(i), Kind::Put);
            // Runs of 100 keys alternate between values that compress and values that do not.
            if (i / 100) % 2 == 1 {
                let random: Vec<u8> = (0..100)
                    .map(|_| {
                        noise ^= noise << 13;
                        noise ^= noise >> 7;
                        noise ^= noise << 17;
                        (noise >> 32) as u8
                    })
                    .collect();
                e.value = Bytes::from(random);
            }
            w.add(&e).unwrap();
            entries.push(e);
        }
        let info = w.finish().unwrap();
        let codecs = codec_bytes(&fs, "m.sst", &info);
        assert!(codecs.contains(&0) && codecs.contains(&1), "both raw and LZ4: {codecs:?}");
        let t = Table::open(fs.open("m.sst").unwrap(), "m.sst", 1).unwrap();
        for e in &entries {
            assert_eq!(t.get(&e.user, SEQ_MAX, None).unwrap().as_ref(), Some(e));
        }
    }

    #[test]
    fn a_flipped_bit_in_a_compressed_block_is_caught_by_its_checksum_and_spares_the_others() {
        for compression in [Compression::Lz4, Compression::Zstd { level: 3 }] {
            for seed in 0..24u64 {
                let fs = SimFs::new(seed);
                let info = write_table_with(&fs, "t.sst", 1500, compression);
                let blocks = info.index.len();
                assert!(blocks > 4, "{blocks} blocks");
                // A seeded block and a seeded byte in it or in its CRC.
                let damaged = (seed as usize * 7) % blocks;
                let h = &info.index[damaged];
                let at = h.offset + (seed * 131) % (u64::from(h.len) + 4);
                fs.corrupt("t.sst", at).unwrap();
                let t = Table::open(fs.open("t.sst").unwrap(), "t.sst", 1).unwrap();
                let mut errors = 0;
                for i in 0..1500 {
                    let want = entry(i, 1000 + u64::from(i), Kind::Put);
                    match t.get(&want.user, SEQ_MAX, None) {
                        Ok(got) => assert_eq!(got, Some(want), "{compression:?} seed {seed}"),
                        Err(Error::Corruption { offset, detail, .. }) => {
                            assert_eq!(offset, h.offset, "{compression:?} seed {seed}: {detail}");
                            assert_eq!(detail, "block checksum mismatch");
                            errors += 1;
                        }
                        Err(other) => panic!("{compression:?} seed {seed}: {other}"),
                    }
                }
                assert!(errors > 0, "{compression:?} seed {seed}: the damaged block was read");
                let scanned = t.iter(None, None).and_then(|mut it| {
                    while it.next_entry()?.is_some() {}
                    Ok(())
                });
                assert!(
                    scanned.is_err_and(|e| e.is_corruption()),
                    "{compression:?} seed {seed}: a full scan reports the damage"
                );
            }
        }
    }

    #[test]
    fn any_flipped_bit_is_an_error_or_the_right_answer_never_wrong_data() {
        for seed in 0..40 {
            let fs = SimFs::new(seed);
            write_table(&fs, "t.sst", 300);
            let offset = fs.corrupt_random("t.sst").unwrap();
            let opened = Table::open(fs.open("t.sst").unwrap(), "t.sst", 1);
            let Ok(t) = opened else { continue };
            for i in 0..300 {
                match t.get(&entry(i, 0, Kind::Put).user, SEQ_MAX, None) {
                    Ok(Some(e)) => assert_eq!(e, entry(i, 1000 + u64::from(i), Kind::Put)),
                    Ok(None) => panic!("seed {seed}: flip at {offset} hid key {i}"),
                    Err(e) => assert!(e.is_corruption(), "seed {seed}: {e}"),
                }
            }
        }
    }

    #[test]
    fn readahead_scans_verify_every_block() {
        let fs = SimFs::new(3);
        let info = write_table(&fs, "t.sst", 3000);
        let t = Table::open(fs.open("t.sst").unwrap(), "t.sst", 1).unwrap();
        let count = |t: &Table<crate::SimFile>| -> Result<usize> {
            let mut it = t.iter(None, None)?;
            let mut n = 0;
            while it.next_entry()?.is_some() {
                n += 1;
            }
            Ok(n)
        };
        assert_eq!(count(&t).unwrap(), 3000 + 300, "readahead returns every entry once");
        // Damage a block deep in the file, where reads come from the readahead buffer.
        fs.corrupt("t.sst", info.index[40].offset + 100).unwrap();
        let err = count(&t).unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }

    #[test]
    fn newer_format_version_is_refused_with_a_clear_error() {
        let fs = SimFs::new(2);
        write_table(&fs, "t.sst", 10);
        let mut data = crate::vfs::read_all(&fs.open("t.sst").unwrap()).unwrap();
        let at = data.len() - FOOTER_BYTES;
        data[at + 32..at + 36].copy_from_slice(&(TABLE_FORMAT_VERSION + 1).to_le_bytes());
        let c = crc(&data[at..at + 36]);
        data[at + 36..at + 40].copy_from_slice(&c.to_le_bytes());
        fs.create("new.sst").unwrap().append(&data).unwrap();
        let err = Table::open(fs.open("new.sst").unwrap(), "new.sst", 1).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { found: 3, supported: 2, .. }));
        assert!(err.to_string().contains("upgrade"), "{err}");
    }
}
