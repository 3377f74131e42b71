//! `Batch`: a group of puts and deletes applied atomically, and its encoding in a WAL record.
//!
//! A batch's operations get consecutive sequence numbers, so a later operation on the same key in
//! the same batch wins. The WAL record payload is `first seq (u64 LE) | op count (varint) | ops`,
//! each op `tag (u8) | keyspace (varint) | key (len-prefixed) | [expire_at_ms u64 LE] | [value]`.

use bytes::Bytes;

use crate::codec::{get_bytes, get_len_bytes, get_u64, get_varint, put_len_bytes, put_varint};
use crate::codec::{Kind, SeqNo};

/// Identifies a keyspace inside one engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyspaceId(pub u32);

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Sets `key` to `value`, optionally expiring at a wall-clock time in milliseconds.
    Put {
        /// The keyspace.
        keyspace: KeyspaceId,
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
        /// When the entry expires (wall clock, ms since the Unix epoch), if ever.
        expire_at_ms: Option<u64>,
    },
    /// Deletes `key`.
    Delete {
        /// The keyspace.
        keyspace: KeyspaceId,
        /// The key.
        key: Bytes,
    },
}

impl BatchOp {
    /// The op's keyspace.
    pub fn keyspace(&self) -> KeyspaceId {
        match self {
            BatchOp::Put { keyspace, .. } | BatchOp::Delete { keyspace, .. } => *keyspace,
        }
    }

    /// The op's key.
    pub fn key(&self) -> &Bytes {
        match self {
            BatchOp::Put { key, .. } | BatchOp::Delete { key, .. } => key,
        }
    }
}

/// Puts and deletes that become visible and durable together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<BatchOp>,
    payload_bytes: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds a put.
    pub fn put(&mut self, keyspace: KeyspaceId, key: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.put_with_expiry(keyspace, key, value, None);
    }

    /// Adds a put that expires at `expire_at_ms` (wall clock); expired entries are dropped by
    /// compactions given a wall-clock time past it.
    pub fn put_with_expiry(
        &mut self,
        keyspace: KeyspaceId,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        expire_at_ms: Option<u64>,
    ) {
        let (key, value) = (key.into(), value.into());
        self.payload_bytes += key.len() + value.len();
        self.ops.push(BatchOp::Put { keyspace, key, value, expire_at_ms });
    }

    /// Adds a delete.
    pub fn delete(&mut self, keyspace: KeyspaceId, key: impl Into<Bytes>) {
        let key = key.into();
        self.payload_bytes += key.len();
        self.ops.push(BatchOp::Delete { keyspace, key });
    }

    /// The operations in order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Sum of key and value lengths.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }
}

const TAG_DELETE: u8 = 0;
const TAG_PUT: u8 = 1;
const TAG_PUT_EXPIRING: u8 = 2;

/// Encodes a batch whose first op gets `first_seq` as a WAL record payload.
pub(crate) fn encode_batch(buf: &mut Vec<u8>, first_seq: SeqNo, batch: &Batch) {
    buf.extend_from_slice(&first_seq.to_le_bytes());
    put_varint(buf, batch.ops.len() as u64);
    for op in &batch.ops {
        match op {
            BatchOp::Put { keyspace, key, value, expire_at_ms } => {
                buf.push(if expire_at_ms.is_some() { TAG_PUT_EXPIRING } else { TAG_PUT });
                put_varint(buf, u64::from(keyspace.0));
                put_len_bytes(buf, key);
                if let Some(at) = expire_at_ms {
                    buf.extend_from_slice(&at.to_le_bytes());
                }
                put_len_bytes(buf, value);
            }
            BatchOp::Delete { keyspace, key } => {
                buf.push(TAG_DELETE);
                put_varint(buf, u64::from(keyspace.0));
                put_len_bytes(buf, key);
            }
        }
    }
}

/// One decoded op of a WAL record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedOp {
    pub keyspace: KeyspaceId,
    pub key: Bytes,
    pub kind: Kind,
    pub expire_at_ms: Option<u64>,
    pub value: Bytes,
}

/// Decodes a WAL record payload: the first sequence number and the ops.
pub(crate) fn decode_batch(payload: &[u8]) -> Option<(SeqNo, Vec<DecodedOp>)> {
    let mut pos = 0;
    let first_seq = get_u64(payload, &mut pos)?;
    let count = get_varint(payload, &mut pos)?;
    // Every op takes at least 3 bytes, so a count beyond that is garbage, not an allocation.
    if count > payload.len() as u64 {
        return None;
    }
    let mut ops = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let tag = *get_bytes(payload, &mut pos, 1)?.first()?;
        let keyspace = KeyspaceId(u32::try_from(get_varint(payload, &mut pos)?).ok()?);
        let key = Bytes::copy_from_slice(get_len_bytes(payload, &mut pos)?);
        let op = match tag {
            TAG_DELETE => DecodedOp {
                keyspace,
                key,
                kind: Kind::Delete,
                expire_at_ms: None,
                value: Bytes::new(),
            },
            TAG_PUT | TAG_PUT_EXPIRING => {
                let expire_at_ms =
                    if tag == TAG_PUT_EXPIRING { Some(get_u64(payload, &mut pos)?) } else { None };
                let value = Bytes::copy_from_slice(get_len_bytes(payload, &mut pos)?);
                DecodedOp { keyspace, key, kind: Kind::Put, expire_at_ms, value }
            }
            _ => return None,
        };
        ops.push(op);
    }
    (pos == payload.len()).then_some((first_seq, ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_encoding_round_trips_every_op_kind() {
        let ks = KeyspaceId(3);
        let mut b = Batch::new();
        b.put(ks, &b"k1"[..], &b"v1"[..]);
        b.delete(ks, &b"k2"[..]);
        b.put_with_expiry(KeyspaceId(0), &b"k3"[..], &b""[..], Some(99));
        let mut buf = Vec::new();
        encode_batch(&mut buf, 17, &b);
        let (seq, ops) = decode_batch(&buf).unwrap();
        assert_eq!(seq, 17);
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[1].kind, Kind::Delete);
        assert_eq!(ops[2].expire_at_ms, Some(99));
        assert_eq!(&ops[0].value[..], b"v1");
        assert_eq!(b.payload_bytes(), 2 + 2 + 2 + 2);
        assert!(decode_batch(&buf[..buf.len() - 1]).is_none());
    }
}
