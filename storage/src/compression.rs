//! Compression of SSTable data blocks: the codec option and the stored form of a block.
//!
//! In a format-2 table (`table.rs`) every data block is stored as `codec u8 | body`, and the
//! block's CRC covers these stored bytes, so a flipped bit is caught before anything is
//! decompressed:
//! - `0` raw: the body is the block;
//! - `1` LZ4 (the block format, `lz4_flex`): the body is `raw length varint | compressed bytes`;
//! - `2` Zstd: the body is `raw length varint | one zstd frame`.
//!
//! Each block names its own codec, so changing [`Compression`] affects only tables written
//! afterwards, a table may mix codecs (a block that does not shrink is stored raw), and a reader
//! needs no option to read any table. Index and filter blocks are never compressed: the index is
//! read once when a table opens and the filter is random bits.
//!
//! Decoding trusts nothing in the body: a raw length above [`BLOCK_RAW_BYTES_MAX`] is refused
//! before any allocation, the decompressor may not write past the raw length, and its output
//! must be exactly that long. Every failure is a `Corruption` error.

use crate::codec::{get_varint_usize, put_varint};
use crate::{Error, Result};

/// How new tables compress their data blocks ([`crate::TableOptions::compression`]).
///
/// Reading does not depend on it: every block records the codec it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Blocks are stored as they are.
    None,
    /// LZ4 (`lz4_flex`, pure Rust): fast to compress and to decompress, a moderate ratio.
    #[default]
    Lz4,
    /// Zstandard at `level` ([`Compression::ZSTD_LEVEL_MIN`] to [`Compression::ZSTD_LEVEL_MAX`]):
    /// a better ratio than LZ4 at a higher CPU cost, mostly when writing.
    Zstd {
        /// The compression level; higher compresses more and writes slower.
        level: i32,
    },
}

impl Compression {
    /// The lowest Zstd level accepted.
    pub const ZSTD_LEVEL_MIN: i32 = 1;
    /// The highest Zstd level accepted (zstd's own maximum).
    pub const ZSTD_LEVEL_MAX: i32 = 22;
    /// The Zstd level that zstd itself uses by default.
    pub const ZSTD_LEVEL_DEFAULT: i32 = 3;

    /// `Err` with a reason if the settings cannot be used (a Zstd level out of range).
    pub fn validate(&self) -> std::result::Result<(), String> {
        match *self {
            Compression::Zstd { level }
                if !(Self::ZSTD_LEVEL_MIN..=Self::ZSTD_LEVEL_MAX).contains(&level) =>
            {
                Err(format!(
                    "the zstd level must be from {} to {}, not {level}",
                    Self::ZSTD_LEVEL_MIN,
                    Self::ZSTD_LEVEL_MAX
                ))
            }
            _ => Ok(()),
        }
    }

    /// A short name for reports: `none`, `lz4`, `zstd`.
    pub fn name(&self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd { .. } => "zstd",
        }
    }
}

/// The largest block the writer compresses, and so the largest raw length a reader accepts in a
/// compressed block: a forged length can make a reader allocate no more than this. A larger
/// block (one holding a value of several MiB) is stored raw.
pub(crate) const BLOCK_RAW_BYTES_MAX: usize = 8 << 20;

/// The codec byte of a raw block.
const CODEC_RAW: u8 = 0;
/// The codec byte of an LZ4 block.
const CODEC_LZ4: u8 = 1;
/// The codec byte of a Zstd block.
const CODEC_ZSTD: u8 = 2;

/// Compresses blocks for one table writer, keeping its buffers (and Zstd's context) across
/// blocks.
pub(crate) struct BlockCompressor {
    compression: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
    stored: Vec<u8>,
}

impl std::fmt::Debug for BlockCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCompressor").field("compression", &self.compression).finish()
    }
}

impl BlockCompressor {
    pub fn new(compression: Compression) -> Self {
        BlockCompressor { compression, zstd: None, scratch: Vec::new(), stored: Vec::new() }
    }

    /// The stored form of `raw` (`codec | body`), valid until the next call. The block is stored
    /// raw when compression saves less than an eighth of it: every read of a compressed block
    /// pays for decompression, which a small saving in space does not repay (the same rule as
    /// RocksDB's), and incompressible data (random bytes, already compressed values) often
    /// grows a little when compressed.
    pub fn encode(&mut self, raw: &[u8]) -> &[u8] {
        self.stored.clear();
        let codec = if raw.len() > BLOCK_RAW_BYTES_MAX { None } else { self.compress(raw) };
        match codec {
            Some(codec) if self.scratch.len() + 8 <= raw.len() - raw.len() / 8 => {
                self.stored.push(codec);
                put_varint(&mut self.stored, raw.len() as u64);
                self.stored.extend_from_slice(&self.scratch);
            }
            _ => {
                self.stored.push(CODEC_RAW);
                self.stored.extend_from_slice(raw);
            }
        }
        debug_assert!(self.stored.len() <= raw.len() + 1);
        &self.stored
    }

    /// Compresses `raw` into `scratch`; returns the codec byte, or `None` to store it raw (no
    /// compression configured, or the compressor failed, which only a bug would make it do).
    fn compress(&mut self, raw: &[u8]) -> Option<u8> {
        self.scratch.clear();
        match self.compression {
            Compression::None => None,
            Compression::Lz4 => {
                self.scratch.resize(lz4_flex::block::get_maximum_output_size(raw.len()), 0);
                let n = lz4_flex::block::compress_into(raw, &mut self.scratch).ok()?;
                self.scratch.truncate(n);
                Some(CODEC_LZ4)
            }
            Compression::Zstd { level } => {
                if self.zstd.is_none() {
                    self.zstd = zstd::bulk::Compressor::new(level).ok();
                }
                let compressor = self.zstd.as_mut()?;
                self.scratch.reserve(zstd::zstd_safe::compress_bound(raw.len()));
                compressor.compress_to_buffer(raw, &mut self.scratch).ok()?;
                Some(CODEC_ZSTD)
            }
        }
    }
}

/// The block stored as `stored` (its CRC already verified) at `offset` of table `name`: the
/// body of a raw block, or the decompressed bytes of a compressed one.
pub(crate) fn decode_block(name: &str, offset: u64, stored: bytes::Bytes) -> Result<bytes::Bytes> {
    let corrupt = |detail: String| Error::corruption(name, offset, detail);
    let Some(&codec) = stored.first() else {
        return Err(corrupt("empty block: no codec byte".into()));
    };
    if codec == CODEC_RAW {
        return Ok(stored.slice(1..));
    }
    let mut pos = 1;
    let raw_len = get_varint_usize(&stored, &mut pos)
        .ok_or_else(|| corrupt("compressed block without its raw length".into()))?;
    if raw_len > BLOCK_RAW_BYTES_MAX {
        return Err(corrupt(format!(
            "compressed block claims {raw_len} raw bytes, over the limit of {BLOCK_RAW_BYTES_MAX}"
        )));
    }
    let body = &stored[pos..];
    let raw = match codec {
        CODEC_LZ4 => {
            let mut out = vec![0u8; raw_len];
            let n = lz4_flex::block::decompress_into(body, &mut out)
                .map_err(|e| corrupt(format!("LZ4 block does not decompress: {e}")))?;
            out.truncate(n);
            out
        }
        CODEC_ZSTD => zstd_decompress(body, raw_len)
            .map_err(|e| corrupt(format!("Zstd block does not decompress: {e}")))?,
        other => return Err(corrupt(format!("unknown block codec {other}"))),
    };
    if raw.len() != raw_len {
        return Err(corrupt(format!(
            "compressed block decompressed to {} bytes, its header says {raw_len}",
            raw.len()
        )));
    }
    Ok(bytes::Bytes::from(raw))
}

/// Decompresses one Zstd frame of at most `raw_len` bytes (`decompress` reserves `raw_len` and
/// fails rather than write past it). The decompression context is kept per thread: setting one
/// up allocates and clears over 100 KiB, which cost more than decompressing a 4 KiB block
/// (`ringkv-storage-bench`, text values: readrandom p99 18-23 us with a fresh context per block).
fn zstd_decompress(body: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    DECOMPRESSOR.with_borrow_mut(|slot| {
        // Creating a context fails only when zstd's malloc does, where Rust's own allocations
        // would already have aborted the process; it is not mistaken for damage in practice.
        let decompressor = match slot {
            Some(decompressor) => decompressor,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(body, raw_len)
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// Text that compresses: a repeated record with a changing number.
    fn text(bytes: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while out.len() < bytes {
            out.extend_from_slice(format!("{{\"id\":{i},\"name\":\"user {i}\"}},").as_bytes());
            i += 1;
        }
        out.truncate(bytes);
        out
    }

    /// Bytes that do not compress (xorshift, so the test needs no random source).
    fn noise(bytes: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..bytes)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    const ALL: [Compression; 3] =
        [Compression::None, Compression::Lz4, Compression::Zstd { level: 3 }];

    #[test]
    fn every_codec_round_trips_and_compressible_blocks_shrink() {
        for compression in ALL {
            let mut c = BlockCompressor::new(compression);
            for raw in [text(4096), noise(4096), Vec::new(), vec![7u8; 1]] {
                let stored = Bytes::copy_from_slice(c.encode(&raw));
                let decoded = decode_block("t.sst", 0, stored.clone()).unwrap();
                assert_eq!(decoded, raw, "{compression:?}");
                assert!(stored.len() <= raw.len() + 1, "never more than the codec byte larger");
            }
            let stored_text = c.encode(&text(4096)).len();
            match compression {
                Compression::None => assert_eq!(stored_text, 4097),
                _ => assert!(stored_text < 4096 / 2, "{compression:?}: {stored_text} bytes"),
            }
        }
    }

    #[test]
    fn a_block_that_does_not_shrink_is_stored_raw() {
        for compression in ALL {
            let raw = noise(4096);
            let stored = BlockCompressor::new(compression).encode(&raw).to_vec();
            assert_eq!(stored[0], CODEC_RAW, "{compression:?}");
            assert_eq!(&stored[1..], &raw[..]);
        }
    }

    #[test]
    fn forged_lengths_and_garbage_are_corruption_never_a_panic_or_a_huge_allocation() {
        let mut lz4 = BlockCompressor::new(Compression::Lz4);
        let good = lz4.encode(&text(4096)).to_vec();
        assert_eq!(good[0], CODEC_LZ4);
        let body_at = 1 + 2; // 4096 takes a two-byte varint
        let with_len = |len: u64| {
            let mut v = vec![CODEC_LZ4];
            put_varint(&mut v, len);
            v.extend_from_slice(&good[body_at..]);
            Bytes::from(v)
        };
        let cases = [
            (Bytes::new(), "no codec byte"),
            (Bytes::from_static(&[9, 1, 2]), "unknown block codec 9"),
            (Bytes::from_static(&[CODEC_LZ4, 0x80]), "without its raw length"),
            (with_len(u64::MAX), "over the limit"),
            (with_len(BLOCK_RAW_BYTES_MAX as u64 + 1), "over the limit"),
            (with_len(100), "does not decompress"),
            (with_len(5000), "decompressed to 4096 bytes"),
            (Bytes::from_static(&[CODEC_ZSTD, 10, 1, 2, 3]), "Zstd block does not decompress"),
        ];
        for (stored, want) in cases {
            let error = decode_block("t.sst", 7, stored).unwrap_err();
            assert!(error.is_corruption(), "{error}");
            assert!(error.to_string().contains(want), "{error} lacks {want:?}");
        }
        let mut zstd = BlockCompressor::new(Compression::Zstd { level: 1 });
        let mut stored = zstd.encode(&text(4096)).to_vec();
        assert_eq!(stored[0], CODEC_ZSTD);
        stored[1..3].copy_from_slice(&[0x80, 0x10]); // claims 2048 raw bytes, holds 4096
        let error = decode_block("t.sst", 7, Bytes::from(stored)).unwrap_err();
        assert!(error.is_corruption(), "{error}");
    }

    #[test]
    fn zstd_levels_out_of_range_are_refused_naming_the_range() {
        assert!(Compression::Zstd { level: 1 }.validate().is_ok());
        assert!(Compression::Zstd { level: 22 }.validate().is_ok());
        for level in [0, 23, -5] {
            let reason = Compression::Zstd { level }.validate().unwrap_err();
            assert!(reason.contains("from 1 to 22"), "{reason}");
        }
        assert!(Compression::None.validate().is_ok() && Compression::Lz4.validate().is_ok());
    }
}
