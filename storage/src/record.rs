//! Checksummed, length-prefixed records: the framing of the WAL and of the manifest.
//!
//! A record is `crc32c (u32 LE) | payload length (u32 LE) | payload`, the CRC (masked, see
//! [`crate::codec::crc`]) covering the length and the payload. A reader yields records in order
//! and stops at the first one that is truncated or fails its checksum, telling whether the damage
//! reaches the end of the file (a torn tail, expected after a crash) or not (corruption).

use crate::codec::get_u32;

/// Bytes of framing before each payload.
pub const RECORD_HEADER_BYTES: usize = 8;

/// The largest payload a record may carry.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 1 << 30;

/// Appends one framed record holding `payload`.
pub fn put_record(buf: &mut Vec<u8>, payload: &[u8]) {
    assert!(payload.len() <= RECORD_PAYLOAD_BYTES_MAX, "record over the limit");
    let len = (payload.len() as u32).to_le_bytes();
    let mut c = crc32c::crc32c(&len);
    c = crc32c::crc32c_append(c, payload);
    buf.extend_from_slice(&mask(c).to_le_bytes());
    buf.extend_from_slice(&len);
    buf.extend_from_slice(payload);
}

/// Why a reader stopped before the end of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Offset of the first bad record.
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
    /// True if the bad record reaches the end of the data (nothing valid could follow it).
    pub at_tail: bool,
}

/// Iterates the records of a byte buffer.
#[derive(Debug)]
pub struct RecordReader<'a> {
    data: &'a [u8],
    pos: usize,
    bad: Option<BadRecord>,
}

impl<'a> RecordReader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        RecordReader { data, pos: 0, bad: None }
    }

    /// The offset just past the last good record returned.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Why reading stopped early, once `next` returned `None`.
    pub fn bad(&self) -> Option<&BadRecord> {
        self.bad.as_ref()
    }

    fn fail(&mut self, reason: &str, end: usize) -> Option<&'a [u8]> {
        self.bad = Some(BadRecord {
            offset: self.pos as u64,
            reason: reason.to_string(),
            at_tail: end >= self.data.len(),
        });
        None
    }
}

impl<'a> Iterator for RecordReader<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.bad.is_some() || self.pos >= self.data.len() {
            return None;
        }
        let mut p = self.pos;
        let (Some(stored), Some(len)) = (get_u32(self.data, &mut p), get_u32(self.data, &mut p))
        else {
            return self.fail("truncated record header", self.data.len());
        };
        let len = len as usize;
        let end = p.saturating_add(len);
        if len > RECORD_PAYLOAD_BYTES_MAX || end > self.data.len() {
            return self.fail("record length past the end of the file", self.data.len());
        }
        let payload = &self.data[p..end];
        let mut c = crc32c::crc32c(&(len as u32).to_le_bytes());
        c = crc32c::crc32c_append(c, payload);
        if mask(c) != stored || len == 0 {
            return self.fail("record checksum mismatch", end);
        }
        self.pos = end;
        Some(payload)
    }
}

/// The offset of the first intact record starting after `from`, if any. A torn append leaves
/// nothing intact after it, so finding one proves damage in the middle of the data.
pub fn intact_record_after(data: &[u8], from: usize) -> Option<usize> {
    (from + 1..data.len()).find(|&off| {
        let mut r = RecordReader::new(&data[off..]);
        r.next().is_some()
    })
}

fn mask(c: u32) -> u32 {
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(payloads: &[&[u8]]) -> Vec<u8> {
        let mut b = Vec::new();
        for p in payloads {
            put_record(&mut b, p);
        }
        b
    }

    #[test]
    fn records_round_trip() {
        let b = records(&[b"one", b"two", b"three"]);
        let got: Vec<&[u8]> = RecordReader::new(&b).collect();
        assert_eq!(got, vec![&b"one"[..], b"two", b"three"]);
        assert_eq!(crate::codec::crc(b"x"), mask(crc32c::crc32c(b"x")));
    }

    #[test]
    fn truncated_tail_is_reported_as_torn() {
        let b = records(&[b"one", b"two"]);
        let cut = &b[..b.len() - 1];
        let mut r = RecordReader::new(cut);
        assert_eq!(r.next(), Some(&b"one"[..]));
        assert_eq!(r.next(), None);
        let bad = r.bad().unwrap();
        assert!(bad.at_tail);
        assert_eq!(bad.offset, 11);
    }

    #[test]
    fn flipped_bit_in_the_middle_is_corruption_not_tail() {
        let mut b = records(&[b"one", b"two", b"three"]);
        b[9] ^= 4;
        let mut r = RecordReader::new(&b);
        assert_eq!(r.next(), None);
        let bad = r.bad().unwrap();
        assert!(!bad.at_tail);
        assert_eq!(bad.offset, 0);
    }

    #[test]
    fn intact_record_after_damage_is_found() {
        let mut b = records(&[b"one", b"two", b"three"]);
        b[0..8].fill(0);
        assert_eq!(intact_record_after(&b, 0), Some(11));
        assert_eq!(intact_record_after(&b, 22), None);
    }

    #[test]
    fn zeroed_sector_is_never_a_valid_record() {
        let b = vec![0u8; 64];
        let mut r = RecordReader::new(&b);
        assert_eq!(r.next(), None);
        assert!(r.bad().is_some());
    }
}
