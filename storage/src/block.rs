//! SSTable blocks: sorted entries with prefix-compressed keys and restart points.
//!
//! Layout: entries, then the restart offsets (u32 LE each), then the restart count (u32 LE).
//! An entry is `shared key bytes (varint) | unshared (varint) | value length (varint) |
//! key suffix | value`. Every `restart_interval`-th entry stores its whole key (shared = 0) and
//! its offset is a restart point, so a seek binary-searches the restarts and then scans at most
//! one interval. On disk every block is followed by its CRC32C (see `table.rs`).

use std::cmp::Ordering;

use bytes::Bytes;

use crate::codec::{cmp_internal, get_varint_usize, put_varint};

/// Builds one block.
#[derive(Debug)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    counter: usize,
    restart_interval: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    pub fn new(restart_interval: usize) -> Self {
        assert!(restart_interval >= 1);
        BlockBuilder {
            buf: Vec::new(),
            restarts: vec![0],
            counter: 0,
            restart_interval,
            last_key: Vec::new(),
        }
    }

    /// Adds an entry; keys must come in increasing internal-key order.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        debug_assert!(self.is_empty() || cmp_internal(&self.last_key, key).is_lt());
        let mut shared = 0;
        if self.counter < self.restart_interval {
            shared = self.last_key.iter().zip(key).take_while(|(a, b)| a == b).count();
        } else {
            self.restarts.push(self.buf.len() as u32);
            self.counter = 0;
        }
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, (key.len() - shared) as u64);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(&key[shared..]);
        self.counter += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    pub fn estimated_size(&self) -> usize {
        self.buf.len() + self.restarts.len() * 4 + 4
    }

    /// Returns the finished block and resets the builder.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts = vec![0];
        self.counter = 0;
        self.last_key.clear();
        out
    }
}

/// A parsed block (its checksum already verified).
#[derive(Debug, Clone)]
pub(crate) struct Block {
    data: Bytes,
    restarts_offset: usize,
    restarts: usize,
}

impl Block {
    /// Parses a block; `None` if the restart array does not fit.
    pub fn new(data: Bytes) -> Option<Block> {
        let n = data.len().checked_sub(4)?;
        let restarts =
            u32::from_le_bytes([data[n], data[n + 1], data[n + 2], data[n + 3]]) as usize;
        let restarts_offset = n.checked_sub(restarts.checked_mul(4)?)?;
        if restarts == 0 {
            return None;
        }
        Some(Block { data, restarts_offset, restarts })
    }

    fn restart(&self, i: usize) -> usize {
        let p = self.restarts_offset + i * 4;
        u32::from_le_bytes([self.data[p], self.data[p + 1], self.data[p + 2], self.data[p + 3]])
            as usize
    }

    pub fn iter(&self) -> BlockIter {
        BlockIter {
            block: self.clone(),
            next_pos: 0,
            key: Vec::new(),
            value: (0, 0),
            valid: false,
            corrupt: false,
        }
    }
}

/// A cursor over a block's entries.
#[derive(Debug)]
pub(crate) struct BlockIter {
    block: Block,
    next_pos: usize,
    key: Vec<u8>,
    value: (usize, usize),
    valid: bool,
    corrupt: bool,
}

impl BlockIter {
    pub fn valid(&self) -> bool {
        self.valid
    }

    /// True if an entry failed to parse (the block was damaged despite its checksum).
    pub fn corrupt(&self) -> bool {
        self.corrupt
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    pub fn value(&self) -> Bytes {
        self.block.data.slice(self.value.0..self.value.1)
    }

    pub fn seek_to_first(&mut self) {
        self.next_pos = 0;
        self.key.clear();
        self.advance();
    }

    /// Moves to the first entry with internal key at or after `target`.
    pub fn seek(&mut self, target: &[u8]) {
        // Find the last restart whose key is before the target, then scan forward.
        let (mut lo, mut hi) = (0, self.block.restarts);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            match self.key_at_restart(mid) {
                Some(k) if cmp_internal(k, target) == Ordering::Less => lo = mid,
                Some(_) => hi = mid,
                None => {
                    self.corrupt = true;
                    self.valid = false;
                    return;
                }
            }
        }
        self.next_pos = self.block.restart(lo);
        self.key.clear();
        self.advance();
        while self.valid && cmp_internal(&self.key, target) == Ordering::Less {
            self.advance();
        }
    }

    fn key_at_restart(&self, i: usize) -> Option<&[u8]> {
        let mut pos = self.block.restart(i);
        let d = &self.block.data[..self.block.restarts_offset];
        let shared = get_varint_usize(d, &mut pos)?;
        let unshared = get_varint_usize(d, &mut pos)?;
        let _vlen = get_varint_usize(d, &mut pos)?;
        if shared != 0 {
            return None;
        }
        d.get(pos..pos.checked_add(unshared)?)
    }

    /// Moves to the next entry.
    pub fn advance(&mut self) {
        let d = &self.block.data[..self.block.restarts_offset];
        let mut pos = self.next_pos;
        if pos >= d.len() {
            self.valid = false;
            return;
        }
        let parsed = (|| {
            let shared = get_varint_usize(d, &mut pos)?;
            let unshared = get_varint_usize(d, &mut pos)?;
            let vlen = get_varint_usize(d, &mut pos)?;
            if shared > self.key.len() {
                return None;
            }
            let suffix = d.get(pos..pos.checked_add(unshared)?)?;
            let vstart = pos + unshared;
            let vend = vstart.checked_add(vlen)?;
            if vend > d.len() {
                return None;
            }
            self.key.truncate(shared);
            self.key.extend_from_slice(suffix);
            Some((vstart, vend))
        })();
        match parsed {
            Some((vs, ve)) => {
                self.value = (vs, ve);
                self.next_pos = ve;
                self.valid = true;
            }
            None => {
                self.valid = false;
                self.corrupt = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{internal_key, Kind};

    fn build(n: usize, interval: usize) -> (Block, Vec<Vec<u8>>) {
        let mut b = BlockBuilder::new(interval);
        let mut keys = Vec::new();
        for i in 0..n {
            let k = internal_key(format!("key{i:05}").as_bytes(), 100, Kind::Put);
            b.add(&k, format!("v{i}").as_bytes());
            keys.push(k);
        }
        (Block::new(Bytes::from(b.finish())).unwrap(), keys)
    }

    #[test]
    fn block_iterates_all_entries_in_order() {
        let (block, keys) = build(100, 16);
        let mut it = block.iter();
        it.seek_to_first();
        for (i, k) in keys.iter().enumerate() {
            assert!(it.valid());
            assert_eq!(it.key(), &k[..]);
            assert_eq!(&it.value()[..], format!("v{i}").as_bytes());
            it.advance();
        }
        assert!(!it.valid());
        assert!(!it.corrupt());
    }

    #[test]
    fn seek_finds_the_first_key_at_or_after_the_target() {
        let (block, keys) = build(100, 4);
        let mut it = block.iter();
        for (i, k) in keys.iter().enumerate() {
            it.seek(k);
            assert_eq!(it.key(), &k[..], "exact seek {i}");
        }
        it.seek(&internal_key(b"key00042x", 5, Kind::Put));
        assert_eq!(it.key(), &keys[43][..]);
        it.seek(&internal_key(b"zzz", 5, Kind::Put));
        assert!(!it.valid());
        it.seek(&internal_key(b"a", 5, Kind::Put));
        assert_eq!(it.key(), &keys[0][..]);
    }

    #[test]
    fn prefix_compression_shrinks_the_block() {
        let (block, _) = build(100, 16);
        let raw: usize = 100 * (8 + 8 + 3);
        assert!(block.data.len() < raw, "{} >= {}", block.data.len(), raw);
    }

    #[test]
    fn garbage_block_is_rejected_or_flagged_never_panics() {
        assert!(Block::new(Bytes::from_static(&[1, 2])).is_none());
        assert!(Block::new(Bytes::from_static(&[0, 0, 0, 0])).is_none());
        let b = Block::new(Bytes::from_static(&[0xff, 0xff, 0, 0, 0, 0, 1, 0, 0, 0])).unwrap();
        let mut it = b.iter();
        it.seek_to_first();
        assert!(!it.valid());
        assert!(it.corrupt());
    }
}
