//! Byte encodings shared by every on-disk format: varints, fixed-width integers, checksums, and
//! the internal key (user key plus an 8-byte trailer of sequence number and kind).
//!
//! Internal keys order by user key ascending, then sequence number descending, so the newest
//! version of a key comes first. Decoders never panic on bad input: they return `None`.

use std::cmp::Ordering;

/// The sequence number a write was given; 0 is never assigned.
pub type SeqNo = u64;

/// The largest sequence number (the trailer keeps 56 bits).
pub const SEQ_MAX: SeqNo = (1 << 56) - 1;

/// What an entry does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A deletion marker.
    Delete = 0,
    /// A value.
    Put = 1,
}

impl Kind {
    pub(crate) fn from_u8(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Delete),
            1 => Some(Kind::Put),
            _ => None,
        }
    }
}

/// Appends `v` as a LEB128 varint.
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Reads a varint at `*pos`, advancing it.
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Reads a varint that must fit a `usize`.
pub fn get_varint_usize(buf: &[u8], pos: &mut usize) -> Option<usize> {
    usize::try_from(get_varint(buf, pos)?).ok()
}

/// Reads `len` bytes at `*pos`, advancing it.
pub fn get_bytes<'a>(buf: &'a [u8], pos: &mut usize, len: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(len)?;
    let s = buf.get(*pos..end)?;
    *pos = end;
    Some(s)
}

/// Reads a little-endian u32 at `*pos`.
pub fn get_u32(buf: &[u8], pos: &mut usize) -> Option<u32> {
    let b = get_bytes(buf, pos, 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a little-endian u64 at `*pos`.
pub fn get_u64(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let b = get_bytes(buf, pos, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// Appends a length-prefixed byte string.
pub fn put_len_bytes(buf: &mut Vec<u8>, data: &[u8]) {
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

/// Reads a length-prefixed byte string.
pub fn get_len_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = get_varint_usize(buf, pos)?;
    get_bytes(buf, pos, len)
}

/// The CRC32C of `data`, masked so that a CRC stored inside checksummed data stays checkable
/// (the LevelDB rotation trick).
pub fn crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends the internal key for (`user_key`, `seq`, `kind`).
pub fn put_internal_key(buf: &mut Vec<u8>, user_key: &[u8], seq: SeqNo, kind: Kind) {
    debug_assert!(seq <= SEQ_MAX);
    buf.extend_from_slice(user_key);
    buf.extend_from_slice(&((seq << 8) | kind as u64).to_le_bytes());
}

/// Builds an internal key.
pub fn internal_key(user_key: &[u8], seq: SeqNo, kind: Kind) -> Vec<u8> {
    let mut v = Vec::with_capacity(user_key.len() + 8);
    put_internal_key(&mut v, user_key, seq, kind);
    v
}

/// Splits an internal key into user key, sequence number and kind.
pub fn split_internal_key(ikey: &[u8]) -> Option<(&[u8], SeqNo, Kind)> {
    let split = ikey.len().checked_sub(8)?;
    let mut t = [0u8; 8];
    t.copy_from_slice(&ikey[split..]);
    let trailer = u64::from_le_bytes(t);
    let kind = Kind::from_u8((trailer & 0xff) as u8)?;
    Some((&ikey[..split], trailer >> 8, kind))
}

/// The user-key part of an internal key (all of it if it is too short to have a trailer).
pub fn user_key(ikey: &[u8]) -> &[u8] {
    &ikey[..ikey.len().saturating_sub(8)]
}

/// The sequence number of an internal key (0 if it is malformed).
pub fn key_seq(ikey: &[u8]) -> SeqNo {
    split_internal_key(ikey).map_or(0, |(_, s, _)| s)
}

/// Orders (user key, seq) pairs: user key ascending, then newest first.
pub fn cmp_user_seq(a: &[u8], a_seq: SeqNo, b: &[u8], b_seq: SeqNo) -> Ordering {
    a.cmp(b).then(b_seq.cmp(&a_seq))
}

/// Orders two internal keys.
pub fn cmp_internal(a: &[u8], b: &[u8]) -> Ordering {
    cmp_user_seq(user_key(a), key_seq(a), user_key(b), key_seq(b))
}

/// Encodes an entry's value: a flag byte, the expiry if any, then the bytes.
pub fn encode_value(buf: &mut Vec<u8>, expire_at_ms: Option<u64>, value: &[u8]) {
    match expire_at_ms {
        None => buf.push(0),
        Some(at) => {
            buf.push(1);
            buf.extend_from_slice(&at.to_le_bytes());
        }
    }
    buf.extend_from_slice(value);
}

/// Decodes a value written by [`encode_value`]: (expiry, offset of the bytes).
pub fn decode_value(buf: &[u8]) -> Option<(Option<u64>, usize)> {
    match buf.first()? {
        0 => Some((None, 1)),
        1 => {
            let mut pos = 1;
            let at = get_u64(buf, &mut pos)?;
            Some((Some(at), pos))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_truncation() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos), Some(v));
            assert_eq!(pos, b.len());
            let mut pos = 0;
            assert_eq!(get_varint(&b[..b.len() - 1], &mut pos), None);
        }
    }

    #[test]
    fn internal_keys_order_newest_first_within_a_user_key() {
        let a5 = internal_key(b"a", 5, Kind::Put);
        let a7 = internal_key(b"a", 7, Kind::Delete);
        let ab1 = internal_key(b"ab", 1, Kind::Put);
        assert_eq!(cmp_internal(&a7, &a5), Ordering::Less);
        assert_eq!(cmp_internal(&a5, &ab1), Ordering::Less);
        assert_eq!(split_internal_key(&a7), Some((&b"a"[..], 7, Kind::Delete)));
    }

    #[test]
    fn values_round_trip_with_and_without_expiry() {
        let mut b = Vec::new();
        encode_value(&mut b, Some(42), b"v");
        assert_eq!(decode_value(&b), Some((Some(42), 9)));
        assert_eq!(&b[9..], b"v");
        let mut b = Vec::new();
        encode_value(&mut b, None, b"v");
        assert_eq!(decode_value(&b), Some((None, 1)));
        assert_eq!(decode_value(&[9]), None);
    }
}
