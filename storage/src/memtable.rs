//! The memtable: recent writes, sorted by internal key, in memory.
//!
//! Keys are internal user keys (keyspace prefix plus key) with the sequence number; the newest
//! version of a key sorts first. A memtable is frozen into an `Arc` when it is full and handed to
//! a flush job; after that it is never changed.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::codec::{cmp_user_seq, Kind, SeqNo};
use crate::iter::{Entry, EntrySource, Found};
use crate::Result;

/// Per-entry bookkeeping cost counted in the memtable's size, beyond keys and values.
const ENTRY_OVERHEAD_BYTES: usize = 48;

/// Sorted in-memory writes.
#[derive(Debug, Default)]
pub(crate) struct Memtable {
    map: BTreeMap<MemKey, MemValue>,
    size_bytes: usize,
    max_seq: SeqNo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemKey {
    pub user: Bytes,
    pub seq: SeqNo,
}

impl Ord for MemKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp_user_seq(&self.user, self.seq, &other.user, other.seq)
    }
}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A (user key, seq) pair seen through a trait object, so that a lookup can probe the map with
/// a borrowed key instead of allocating a `MemKey`.
pub(crate) trait KeyView {
    fn user(&self) -> &[u8];
    fn seq(&self) -> SeqNo;
}

impl KeyView for MemKey {
    fn user(&self) -> &[u8] {
        &self.user
    }
    fn seq(&self) -> SeqNo {
        self.seq
    }
}

struct Probe<'a> {
    user: &'a [u8],
    seq: SeqNo,
}

impl KeyView for Probe<'_> {
    fn user(&self) -> &[u8] {
        self.user
    }
    fn seq(&self) -> SeqNo {
        self.seq
    }
}

impl<'a> Borrow<dyn KeyView + 'a> for MemKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

// Must agree with `Ord for MemKey`, as `Borrow` requires.
impl Ord for dyn KeyView + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp_user_seq(self.user(), self.seq(), other.user(), other.seq())
    }
}

impl PartialOrd for dyn KeyView + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for dyn KeyView + '_ {}

#[derive(Debug, Clone)]
pub(crate) struct MemValue {
    pub kind: Kind,
    pub expire_at_ms: Option<u64>,
    pub value: Bytes,
}

impl Memtable {
    pub fn insert(&mut self, user: Bytes, seq: SeqNo, value: MemValue) {
        debug_assert!(seq > self.max_seq, "sequence numbers only grow");
        self.size_bytes += user.len() + value.value.len() + ENTRY_OVERHEAD_BYTES;
        self.max_seq = self.max_seq.max(seq);
        self.map.insert(MemKey { user, seq }, value);
    }

    /// The newest version of `user` visible at `snapshot`.
    pub fn get(&self, user: &[u8], snapshot: SeqNo) -> Option<Found> {
        let probe = Probe { user, seq: snapshot };
        let from: &dyn KeyView = &probe;
        let (k, v) =
            self.map.range::<dyn KeyView, _>((Bound::Included(from), Bound::Unbounded)).next()?;
        (k.user[..] == *user).then(|| Found {
            seq: k.seq,
            kind: v.kind,
            expire_at_ms: v.expire_at_ms,
            value: v.value.clone(),
        })
    }

    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn max_seq(&self) -> SeqNo {
        self.max_seq
    }

    /// All entries from the first version of `start` on (or from the beginning).
    pub fn iter_from(&self, start: Option<&Bytes>) -> MemIter<'_> {
        let range = match start {
            Some(user) => self.map.range((
                Bound::Included(MemKey { user: user.clone(), seq: crate::codec::SEQ_MAX }),
                Bound::Unbounded,
            )),
            None => self.map.range::<MemKey, _>(..),
        };
        let mut it = MemIter { range, cur: None };
        it.fill();
        it
    }
}

fn to_entry(k: &MemKey, v: &MemValue) -> Entry {
    Entry {
        user: k.user.clone(),
        seq: k.seq,
        kind: v.kind,
        expire_at_ms: v.expire_at_ms,
        value: v.value.clone(),
    }
}

/// Iterates a memtable in internal-key order.
pub(crate) struct MemIter<'a> {
    range: std::collections::btree_map::Range<'a, MemKey, MemValue>,
    cur: Option<Entry>,
}

impl MemIter<'_> {
    fn fill(&mut self) {
        self.cur = self.range.next().map(|(k, v)| to_entry(k, v));
    }
}

impl EntrySource for MemIter<'_> {
    fn peek(&self) -> Option<&Entry> {
        self.cur.as_ref()
    }

    fn next_entry(&mut self) -> Result<Option<Entry>> {
        let e = self.cur.take();
        self.fill();
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &str) -> MemValue {
        MemValue {
            kind: Kind::Put,
            expire_at_ms: None,
            value: Bytes::copy_from_slice(v.as_bytes()),
        }
    }

    #[test]
    fn get_returns_newest_version_visible_at_the_snapshot() {
        let mut m = Memtable::default();
        let k = Bytes::from_static(b"k");
        m.insert(k.clone(), 1, put("a"));
        m.insert(k.clone(), 5, put("b"));
        m.insert(Bytes::from_static(b"j"), 6, put("x"));
        assert_eq!(&m.get(&k, 10).unwrap().value[..], b"b");
        assert_eq!(&m.get(&k, 4).unwrap().value[..], b"a");
        assert!(m.get(&k, 0).is_none());
        assert!(m.get(b"z", 10).is_none());
        assert_eq!(m.max_seq(), 6);
    }

    #[test]
    fn iteration_is_in_internal_key_order() {
        let mut m = Memtable::default();
        m.insert(Bytes::from_static(b"b"), 1, put("1"));
        m.insert(Bytes::from_static(b"a"), 2, put("2"));
        m.insert(Bytes::from_static(b"b"), 3, put("3"));
        let mut it = m.iter_from(None);
        let mut got = Vec::new();
        while let Some(e) = it.next_entry().unwrap() {
            got.push((e.user, e.seq));
        }
        let want: Vec<(Bytes, u64)> = vec![
            (Bytes::from_static(b"a"), 2),
            (Bytes::from_static(b"b"), 3),
            (Bytes::from_static(b"b"), 1),
        ];
        assert_eq!(got, want);
        let mut it = m.iter_from(Some(&Bytes::from_static(b"b")));
        assert_eq!(it.next_entry().unwrap().unwrap().seq, 3);
    }
}
