//! Merging iterators: many sorted sources of entries become one sorted stream, and that stream
//! becomes the user's view at a snapshot (newest visible version per key, no tombstones).
//!
//! Sources are memtables and SSTables. Each yields entries in internal-key order (user key
//! ascending, newest first). The merger picks the smallest head among a handful of sources by a
//! linear scan: there are rarely more than a dozen, so a heap would not pay for itself.

use bytes::Bytes;

use crate::codec::{cmp_user_seq, Kind, SeqNo};
use crate::Result;

/// One version of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The internal user key (keyspace prefix plus key).
    pub user: Bytes,
    /// The sequence number of the write.
    pub seq: SeqNo,
    /// Put or delete.
    pub kind: Kind,
    /// Expiry of a put, wall clock ms.
    pub expire_at_ms: Option<u64>,
    /// The value of a put (empty for a delete).
    pub value: Bytes,
}

/// The version a point lookup found (the key is the one looked up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub seq: SeqNo,
    pub kind: Kind,
    pub expire_at_ms: Option<u64>,
    pub value: Bytes,
}

/// A sorted source of entries.
pub(crate) trait EntrySource {
    /// The next entry, without consuming it.
    fn peek(&self) -> Option<&Entry>;
    /// Consumes and returns the next entry.
    fn next_entry(&mut self) -> Result<Option<Entry>>;
}

/// Merges sources into one stream in internal-key order.
pub(crate) struct Merger<'a> {
    sources: Vec<Box<dyn EntrySource + 'a>>,
}

impl<'a> Merger<'a> {
    pub fn new(sources: Vec<Box<dyn EntrySource + 'a>>) -> Self {
        Merger { sources }
    }

    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        let mut best: Option<usize> = None;
        for (i, s) in self.sources.iter().enumerate() {
            let Some(e) = s.peek() else { continue };
            best = match best {
                None => Some(i),
                Some(b) => {
                    // The invariant that `b` has a head was checked when it was chosen.
                    let be = self.sources[b].peek();
                    match be {
                        Some(be) if cmp_user_seq(&e.user, e.seq, &be.user, be.seq).is_lt() => {
                            Some(i)
                        }
                        _ => Some(b),
                    }
                }
            };
        }
        match best {
            Some(i) => self.sources[i].next_entry(),
            None => Ok(None),
        }
    }
}

/// The user's view: newest version per key at or below `snapshot`, tombstones hidden, keys
/// below `end` (exclusive) when given.
pub(crate) struct VisibleIter<'a> {
    merger: Merger<'a>,
    snapshot: SeqNo,
    end: Option<Bytes>,
    last_user: Option<Bytes>,
    done: bool,
}

impl<'a> VisibleIter<'a> {
    pub fn new(merger: Merger<'a>, snapshot: SeqNo, end: Option<Bytes>) -> Self {
        VisibleIter { merger, snapshot, end, last_user: None, done: false }
    }

    pub fn next_visible(&mut self) -> Result<Option<Entry>> {
        while !self.done {
            let Some(e) = self.merger.next_entry()? else {
                self.done = true;
                break;
            };
            if let Some(end) = &self.end {
                if e.user >= *end {
                    self.done = true;
                    break;
                }
            }
            if e.seq > self.snapshot {
                continue;
            }
            if self.last_user.as_ref() == Some(&e.user) {
                continue;
            }
            self.last_user = Some(e.user.clone());
            if e.kind == Kind::Put {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct VecSource {
        entries: std::collections::VecDeque<Entry>,
    }

    impl EntrySource for VecSource {
        fn peek(&self) -> Option<&Entry> {
            self.entries.front()
        }
        fn next_entry(&mut self) -> Result<Option<Entry>> {
            Ok(self.entries.pop_front())
        }
    }

    fn e(k: &str, seq: SeqNo, kind: Kind) -> Entry {
        Entry {
            user: Bytes::copy_from_slice(k.as_bytes()),
            seq,
            kind,
            expire_at_ms: None,
            value: Bytes::copy_from_slice(format!("{k}{seq}").as_bytes()),
        }
    }

    fn src(v: Vec<Entry>) -> Box<dyn EntrySource> {
        Box::new(VecSource { entries: v.into() })
    }

    #[test]
    fn merger_yields_internal_key_order_across_sources() {
        let mut m = Merger::new(vec![
            src(vec![e("a", 1, Kind::Put), e("c", 5, Kind::Put)]),
            src(vec![e("a", 4, Kind::Put), e("b", 2, Kind::Delete)]),
        ]);
        let mut got = Vec::new();
        while let Some(x) = m.next_entry().unwrap() {
            got.push((String::from_utf8(x.user.to_vec()).unwrap(), x.seq));
        }
        let want = [("a", 4), ("a", 1), ("b", 2), ("c", 5)];
        assert_eq!(got, want.iter().map(|(k, s)| (k.to_string(), *s)).collect::<Vec<_>>());
    }

    #[test]
    fn visible_view_hides_tombstones_newer_writes_and_old_versions() {
        let m = Merger::new(vec![
            src(vec![e("a", 9, Kind::Put), e("a", 3, Kind::Put), e("d", 2, Kind::Put)]),
            src(vec![e("b", 4, Kind::Delete), e("b", 1, Kind::Put), e("c", 2, Kind::Put)]),
        ]);
        let mut v = VisibleIter::new(m, 5, Some(Bytes::from_static(b"d")));
        let mut got = Vec::new();
        while let Some(x) = v.next_visible().unwrap() {
            got.push(String::from_utf8(x.value.to_vec()).unwrap());
        }
        assert_eq!(got, vec!["a3".to_string(), "c2".to_string()]);
    }
}
