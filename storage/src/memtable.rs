//! The memtable: recent writes, sorted by internal key, in memory.
//!
//! Keys are internal user keys (keyspace prefix plus key) with the sequence number; the newest
//! version of a key sorts first. A memtable is frozen into an `Arc` when it is full and handed to
//! a flush job; after that it is never changed.
//!
//! Layout: each user key's versions sit in a slab (`Vec<Versions>`), found by a hash index for
//! point lookups and overwrites, and by a `BTreeMap` from user key to slab slot for ordered
//! iteration (flushes, scans). A lookup is one hash probe and a short walk of one key's
//! versions; an overwrite of a key already held touches no tree at all. The tree alone made
//! lookups a search of five or so nodes, each comparing the probe with up to eleven keys: under
//! INCR (three acceptor and data writes per replica and round, and as many reads) the tree's
//! searches were 14.5% of a dev cluster's CPU. A key written once (the common case) keeps its
//! only version inline in its slot.
//!
//! Short user keys (the common case: an 8-byte keyspace prefix plus a key of up to 22 bytes) are
//! stored inline in the tree's key type, [`MemKey`]. A tree search compares the probe with up to
//! eleven keys per node; with heap keys each of those comparisons was a pointer chase and usually
//! a cache miss, while inline keys sit contiguously in the node being searched.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::btree_map;
use std::collections::BTreeMap;
use std::fmt;
use std::iter::Rev;
use std::ops::Bound;
use std::slice;

use bytes::Bytes;
use std::hash::{Hash, Hasher};

use crate::codec::{Kind, SeqNo};
use crate::iter::{Entry, EntrySource, Found};
use crate::Result;

/// Per-entry bookkeeping cost counted in the memtable's size, beyond keys and values.
///
/// Counted per version, with the user key's length, as when every version had its own map entry.
const ENTRY_OVERHEAD_BYTES: usize = 48;

/// The bytes one version of a key accounts for.
fn version_bytes(user_len: usize, value: &MemValue) -> usize {
    user_len + value.value.len() + ENTRY_OVERHEAD_BYTES
}

/// Sorted in-memory writes.
#[derive(Debug)]
pub(crate) struct Memtable {
    /// Every user key written to this memtable, in order, with its slot in `slots`.
    map: BTreeMap<MemKey, u32>,
    /// The same keys by hash, for point lookups and overwrites.
    index: hashbrown::HashMap<MemKey, u32, ahash::RandomState>,
    /// Each key's versions.
    slots: Vec<Versions>,
    /// Number of versions over all keys (not of keys): what a flush will write.
    len: usize,
    /// The bytes of the versions held.
    size_bytes: usize,
    /// The bytes of every version ever inserted, replaced ones included: what this memtable's
    /// write-ahead log holds.
    written_bytes: usize,
    max_seq: SeqNo,
}

/// The longest user key [`MemKey`] stores inline: with its length byte and the enum's tag this
/// fills the 32 bytes a `Bytes` took as the tree's key before.
const INLINE_KEY_MAX: usize = 30;

/// A user key as the memtable's tree holds it: short keys inline, longer ones on the heap.
///
/// Compared, ordered and looked up (through `Borrow<[u8]>`) by its bytes alone, so `map.get`
/// takes a `&[u8]` without building a key. Which form holds a key depends only on its length, so
/// equal keys always have the same form; the comparisons do not rely on that.
///
/// The heap form is a `Box<[u8]>` rather than a `Bytes`: a `Bytes` beside the inline form would
/// make the key 40 bytes (more node memory for every search to walk), and a boxed `Bytes` would be
/// two pointer chases per comparison instead of one. Converting the engine's `Bytes` into a box
/// reuses its allocation when it is the only owner (it is on the write path), and a long key is
/// copied back into a `Bytes` only when iterated, once per key.
#[derive(Clone)]
enum MemKey {
    /// `bytes[..len]` is the key; `len <= INLINE_KEY_MAX`.
    Inline { len: u8, bytes: [u8; INLINE_KEY_MAX] },
    /// A key longer than `INLINE_KEY_MAX`.
    Heap(Box<[u8]>),
}

// The point of the inline form is keeping the tree's nodes as compact as with `Bytes` keys.
const _: () = assert!(size_of::<MemKey>() <= size_of::<Bytes>());

impl MemKey {
    /// The key's bytes.
    fn as_slice(&self) -> &[u8] {
        match self {
            MemKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            MemKey::Heap(b) => b,
        }
    }

    /// The key as a `Bytes`, for entries handed out by iteration (a copy: the tree keeps its own).
    fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.as_slice())
    }
}

impl From<Bytes> for MemKey {
    fn from(user: Bytes) -> Self {
        match u8::try_from(user.len()) {
            Ok(len) if usize::from(len) <= INLINE_KEY_MAX => {
                let mut bytes = [0; INLINE_KEY_MAX];
                bytes[..user.len()].copy_from_slice(&user);
                MemKey::Inline { len, bytes }
            }
            // `Vec::from(Bytes)` takes over a uniquely owned buffer without copying, and a buffer
            // built to size (as the engine's internal keys are) boxes without reallocating.
            _ => MemKey::Heap(Vec::from(user).into_boxed_slice()),
        }
    }
}

impl Borrow<[u8]> for MemKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Hash for MemKey {
    /// As `[u8]` hashes: `Borrow<[u8]>` requires they agree, so the index is probed by a slice.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for MemKey {}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MemKey {
    /// Byte order, as `[u8]` (and so `Bytes`) orders: `Borrow<[u8]>` requires they agree.
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl fmt::Debug for MemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As `Bytes` prints: escaped bytes in a byte-string literal.
        fmt::Debug::fmt(&Bytes::copy_from_slice(self.as_slice()), f)
    }
}

/// One version of a key: its sequence number and what was written.
type Version = (SeqNo, MemValue);

/// The versions of one user key, never empty, stored oldest first (ascending `seq`) so that a
/// write, which always carries the highest sequence number so far, is a push at the end. Readers
/// walk the slice backwards to see them newest first, the internal-key order.
#[derive(Debug)]
enum Versions {
    /// The only version: no heap allocation for a key written once.
    One(Version),
    /// Two or more versions, ascending by `seq`.
    Many(Vec<Version>),
}

impl Versions {
    /// All versions, oldest first.
    fn as_slice(&self) -> &[Version] {
        match self {
            Versions::One(v) => slice::from_ref(v),
            Versions::Many(vs) => vs,
        }
    }

    /// All versions, newest first.
    fn newest_first(&self) -> Rev<slice::Iter<'_, Version>> {
        self.as_slice().iter().rev()
    }

    /// Adds a version; returns false if it replaced one with the same `seq` instead.
    fn add(&mut self, seq: SeqNo, value: MemValue) -> bool {
        match self {
            Versions::Many(vs) => add_ordered(vs, (seq, value)),
            Versions::One(only) if only.0 == seq => {
                // Same (user, seq) twice: the later write wins, as a map entry would be replaced.
                only.1 = value;
                false
            }
            Versions::One(_) => {
                // A second version moves the key's versions to the heap. `Vec::new` does not
                // allocate, so the placeholder costs nothing before it is overwritten.
                let Versions::One(only) = std::mem::replace(self, Versions::Many(Vec::new()))
                else {
                    unreachable!("matched Versions::One above");
                };
                let new = (seq, value);
                let pair = if new.0 > only.0 { vec![only, new] } else { vec![new, only] };
                *self = Versions::Many(pair);
                true
            }
        }
    }
}

/// Adds `v` to versions sorted ascending by `seq`; returns false if it replaced one with the same
/// `seq`. New writes carry the highest sequence number so far, so this is a push at the end; the
/// ordered insert only runs if sequence numbers went backwards, which `Memtable::insert` asserts
/// against in debug builds but which must not break the order in release builds.
fn add_ordered(vs: &mut Vec<Version>, v: Version) -> bool {
    if vs.last().is_none_or(|last| last.0 < v.0) {
        vs.push(v);
        return true;
    }
    match vs.binary_search_by_key(&v.0, |x| x.0) {
        Ok(i) => {
            vs[i] = v;
            false
        }
        Err(i) => {
            vs.insert(i, v);
            true
        }
    }
}

/// What one write stored for a key.
#[derive(Debug, Clone)]
pub(crate) struct MemValue {
    pub kind: Kind,
    pub expire_at_ms: Option<u64>,
    pub value: Bytes,
}

impl Default for Memtable {
    fn default() -> Self {
        Memtable::with_key_capacity(0)
    }
}

impl Memtable {
    /// An empty memtable with room for `keys` distinct keys before its index grows.
    pub fn with_key_capacity(keys: usize) -> Self {
        // Fixed seeds: the index is only probed, never iterated, so its hash decides no order;
        // fixed keys keep the engine free of unseeded randomness all the same.
        let hasher = ahash::RandomState::with_seeds(
            0x5d58_8b65_6c07_8965,
            0x2545_f491_4f6c_dd1d,
            0x9e37_79b9_7f4a_7c15,
            0xbf58_476d_1ce4_e5b9,
        );
        Memtable {
            map: BTreeMap::new(),
            index: hashbrown::HashMap::with_capacity_and_hasher(keys, hasher),
            slots: Vec::with_capacity(keys),
            len: 0,
            size_bytes: 0,
            written_bytes: 0,
            max_seq: 0,
        }
    }
}

impl Memtable {
    /// Adds version `seq` of `user`. Sequence numbers only grow, so the new version is the key's
    /// newest. Unless `keep_older` (a snapshot may still read them), the key's older versions are
    /// dropped: no read can see them any more, and an overwritten key then costs the memtable
    /// one version instead of one per write, so it holds more keys before it fills.
    pub fn insert(&mut self, user: Bytes, seq: SeqNo, value: MemValue, keep_older: bool) {
        debug_assert!(seq > self.max_seq, "sequence numbers only grow");
        let user_len = user.len();
        let new_bytes = version_bytes(user_len, &value);
        self.size_bytes += new_bytes;
        self.written_bytes += new_bytes;
        self.max_seq = self.max_seq.max(seq);
        if let Some(&slot) = self.index.get(&user[..]) {
            let versions = &mut self.slots[slot as usize];
            let newest = versions.as_slice().last().map_or(0, |(newest, _)| *newest);
            // Only a version newer than every one held replaces them; sequence numbers that
            // went backwards (asserted against above) keep the ordered insert.
            if keep_older || seq <= newest {
                let added = versions.add(seq, value);
                self.len += usize::from(added);
            } else {
                let replaced = std::mem::replace(versions, Versions::One((seq, value)));
                let replaced = replaced.as_slice();
                let replaced_bytes: usize =
                    replaced.iter().map(|(_, old)| version_bytes(user_len, old)).sum();
                self.size_bytes -= replaced_bytes;
                self.len = self.len + 1 - replaced.len();
            }
            return;
        }
        let slot = u32::try_from(self.slots.len()).expect("a memtable holds under 2^32 keys");
        self.slots.push(Versions::One((seq, value)));
        let key = MemKey::from(user);
        self.index.insert(key.clone(), slot);
        self.map.insert(key, slot);
        self.len += 1;
    }

    /// The newest version of `user` visible at `snapshot`.
    pub fn get(&self, user: &[u8], snapshot: SeqNo) -> Option<Found> {
        // `MemKey: Borrow<[u8]>`, so the tree is searched with the slice itself, no key built.
        let slot = *self.index.get(user)?;
        let (seq, v) =
            self.slots[slot as usize].newest_first().find(|(seq, _)| *seq <= snapshot)?;
        Some(Found {
            seq: *seq,
            kind: v.kind,
            expire_at_ms: v.expire_at_ms,
            value: v.value.clone(),
        })
    }

    /// The bytes this memtable accounts for (keys, values and a fixed overhead per version held).
    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// The bytes of every version inserted, dropped ones included, counted as `size_bytes`
    /// counts them: a measure of this memtable's write-ahead log.
    pub fn written_bytes(&self) -> usize {
        self.written_bytes
    }

    /// The number of versions held (over all keys), i.e. the entries a flush writes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The number of distinct keys held.
    pub fn keys_len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The highest sequence number written (0 when empty).
    pub fn max_seq(&self) -> SeqNo {
        self.max_seq
    }

    /// All entries from the first version of `start` on (or from the beginning), in internal-key
    /// order: user key ascending, then newest version first.
    pub fn iter_from(&self, start: Option<&Bytes>) -> MemIter<'_> {
        let keys = match start {
            Some(user) => self.map.range::<[u8], _>((Bound::Included(&user[..]), Bound::Unbounded)),
            None => self.map.range::<[u8], _>(..),
        };
        let mut it = MemIter { keys, slots: &self.slots, key: None, cur: None };
        it.fill();
        it
    }
}

/// Iterates a memtable in internal-key order.
pub(crate) struct MemIter<'a> {
    /// The keys not yet started.
    keys: btree_map::Range<'a, MemKey, u32>,
    /// The memtable's versions, by slot.
    slots: &'a [Versions],
    /// The key being walked, as a `Bytes` made once for all its versions, with its versions not
    /// yet yielded (newest first).
    key: Option<(Bytes, Rev<slice::Iter<'a, Version>>)>,
    /// The next entry, as `peek` shows it.
    cur: Option<Entry>,
}

impl MemIter<'_> {
    fn fill(&mut self) {
        self.cur = loop {
            if let Some((user, versions)) = &mut self.key {
                if let Some((seq, v)) = versions.next() {
                    // The key's last version takes the `Bytes` itself: most keys have one
                    // version, and this spares them a refcount (and a shared header on the first
                    // clone of a freshly copied `Bytes`).
                    let user =
                        if versions.len() == 0 { std::mem::take(user) } else { user.clone() };
                    break Some(Entry {
                        user,
                        seq: *seq,
                        kind: v.kind,
                        expire_at_ms: v.expire_at_ms,
                        value: v.value.clone(),
                    });
                }
            }
            // The current key is done (or none was started): move to the next one.
            match self.keys.next() {
                Some((user, &slot)) => {
                    let versions = &self.slots[slot as usize];
                    self.key = Some((user.to_bytes(), versions.newest_first()));
                }
                None => {
                    self.key = None;
                    break None;
                }
            }
        };
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
    fn an_overwrite_without_snapshots_replaces_the_older_versions() {
        let mut m = Memtable::default();
        let k = Bytes::from_static(b"k");
        m.insert(k.clone(), 1, put("a"), true);
        m.insert(k.clone(), 2, put("b"), true);
        assert_eq!((m.len(), m.size_bytes()), (2, 2 * (1 + 1 + ENTRY_OVERHEAD_BYTES)));
        // No snapshot needs "a" or "b" any more: both go, and so do their bytes.
        m.insert(k.clone(), 3, put("ccc"), false);
        assert_eq!(m.len(), 1);
        assert_eq!(m.size_bytes(), 1 + 3 + ENTRY_OVERHEAD_BYTES);
        assert_eq!(
            m.written_bytes(),
            2 * (1 + 1 + ENTRY_OVERHEAD_BYTES) + 1 + 3 + ENTRY_OVERHEAD_BYTES
        );
        assert_eq!(
            m.get(&k, crate::codec::SEQ_MAX).map(|f| (f.seq, f.value)),
            Some((3, Bytes::from_static(b"ccc")))
        );
        assert_eq!(m.get(&k, 2), None, "the replaced versions are gone");
        let all: Vec<_> = collect(&m, None);
        assert_eq!(all, vec![(k.clone(), 3, Bytes::from_static(b"ccc"))]);
    }

    #[test]
    fn get_returns_newest_version_visible_at_the_snapshot() {
        let mut m = Memtable::default();
        let k = Bytes::from_static(b"k");
        m.insert(k.clone(), 1, put("a"), true);
        m.insert(k.clone(), 5, put("b"), true);
        m.insert(Bytes::from_static(b"j"), 6, put("x"), true);
        assert_eq!(&m.get(&k, 10).unwrap().value[..], b"b");
        assert_eq!(&m.get(&k, 4).unwrap().value[..], b"a");
        assert!(m.get(&k, 0).is_none());
        assert!(m.get(b"z", 10).is_none());
        assert_eq!(m.max_seq(), 6);
    }

    #[test]
    fn iteration_is_in_internal_key_order() {
        let mut m = Memtable::default();
        m.insert(Bytes::from_static(b"b"), 1, put("1"), true);
        m.insert(Bytes::from_static(b"a"), 2, put("2"), true);
        m.insert(Bytes::from_static(b"b"), 3, put("3"), true);
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

    /// Every entry from `start` on, as (user, seq, value).
    fn collect(m: &Memtable, start: Option<&Bytes>) -> Vec<(Bytes, u64, Bytes)> {
        let mut it = m.iter_from(start);
        let mut got = Vec::new();
        while let Some(e) = it.next_entry().unwrap() {
            got.push((e.user, e.seq, e.value));
        }
        got
    }

    #[test]
    fn several_versions_per_key_at_snapshots_and_in_iteration() {
        let mut m = Memtable::default();
        let (a, b, c) =
            (Bytes::from_static(b"a"), Bytes::from_static(b"b"), Bytes::from_static(b"c"));
        // Interleaved writes: b gets three versions, a two, c one.
        m.insert(b.clone(), 1, put("b1"), true);
        m.insert(a.clone(), 2, put("a2"), true);
        m.insert(b.clone(), 3, put("b3"), true);
        m.insert(c.clone(), 4, put("c4"), true);
        m.insert(a.clone(), 5, put("a5"), true);
        m.insert(
            b.clone(),
            6,
            MemValue { kind: Kind::Delete, expire_at_ms: None, value: Bytes::new() },
            true,
        );
        assert_eq!(m.len(), 6, "len counts versions, not keys");
        assert_eq!(m.max_seq(), 6);
        assert_eq!(m.size_bytes(), 6 * (1 + 2 + ENTRY_OVERHEAD_BYTES) - 2);

        // Each snapshot sees the newest version at or below it.
        let at = |k: &Bytes, snap| m.get(k, snap).map(|f| (f.seq, f.kind, f.value));
        assert_eq!(at(&b, 0), None);
        assert_eq!(at(&b, 1), Some((1, Kind::Put, Bytes::from_static(b"b1"))));
        assert_eq!(at(&b, 2), Some((1, Kind::Put, Bytes::from_static(b"b1"))));
        assert_eq!(at(&b, 5), Some((3, Kind::Put, Bytes::from_static(b"b3"))));
        assert_eq!(at(&b, 6), Some((6, Kind::Delete, Bytes::new())));
        assert_eq!(at(&a, 1), None);
        assert_eq!(at(&a, 4), Some((2, Kind::Put, Bytes::from_static(b"a2"))));
        assert_eq!(at(&a, crate::codec::SEQ_MAX), Some((5, Kind::Put, Bytes::from_static(b"a5"))));
        assert_eq!(at(&c, 3), None);
        assert_eq!(at(&c, 4).map(|f| f.0), Some(4));
        assert_eq!(m.get(b"ab", 10), None);
        assert_eq!(m.get(b"", 10), None);

        // Internal-key order: user ascending, newest first within a user.
        let s = |v: &'static str| Bytes::from_static(v.as_bytes());
        let all = vec![
            (a.clone(), 5, s("a5")),
            (a.clone(), 2, s("a2")),
            (b.clone(), 6, Bytes::new()),
            (b.clone(), 3, s("b3")),
            (b.clone(), 1, s("b1")),
            (c.clone(), 4, s("c4")),
        ];
        assert_eq!(collect(&m, None), all);
        assert_eq!(collect(&m, Some(&a)), all);
        assert_eq!(collect(&m, Some(&b)), all[2..]);
        // A start between keys begins at the next key; past the last key, nothing.
        assert_eq!(collect(&m, Some(&s("ab"))), all[2..]);
        assert_eq!(collect(&m, Some(&s("bb"))), all[5..]);
        assert_eq!(collect(&m, Some(&s("d"))), vec![]);
        assert!(collect(&Memtable::default(), None).is_empty());
    }

    #[test]
    fn versions_stay_ordered_if_sequence_numbers_go_backwards() {
        // `Memtable::insert` asserts this away in debug builds; `Versions` itself must still keep
        // its order (and replace an equal seq) so that a release build stays correct.
        let mut v = Versions::One((5, put("5")));
        assert!(!v.add(5, put("5b")));
        assert!(v.add(3, put("3")));
        assert!(v.add(9, put("9")));
        assert!(v.add(4, put("4")));
        assert!(!v.add(9, put("9b")));
        let seqs: Vec<_> = v.newest_first().map(|(s, v)| (*s, v.value.clone())).collect();
        let want: Vec<_> = [(9, "9b"), (5, "5b"), (4, "4"), (3, "3")]
            .into_iter()
            .map(|(s, v)| (s, Bytes::from_static(v.as_bytes())))
            .collect();
        assert_eq!(seqs, want);
    }

    #[test]
    fn keys_at_the_inline_limit_are_stored_read_and_iterated() {
        // The form follows the length: up to the limit inline, past it on the heap.
        let key = |len: usize| Bytes::from(vec![b'x'; len]);
        for len in [0, 1, INLINE_KEY_MAX - 1, INLINE_KEY_MAX] {
            assert!(matches!(MemKey::from(key(len)), MemKey::Inline { .. }), "len {len}");
        }
        for len in [INLINE_KEY_MAX + 1, INLINE_KEY_MAX + 2, 255, 256, 1000] {
            assert!(matches!(MemKey::from(key(len)), MemKey::Heap(_)), "len {len}");
        }
        let mut m = Memtable::default();
        let lens = [INLINE_KEY_MAX - 1, INLINE_KEY_MAX, INLINE_KEY_MAX + 1, 256];
        // Two versions each: seqs 1..=4 ("one"), then 11..=14 ("two").
        for (seq, value) in [(1, "one"), (11, "two")] {
            for (i, len) in lens.into_iter().enumerate() {
                m.insert(key(len), seq + i as SeqNo, put(value), true);
            }
        }
        assert_eq!(m.len(), 8);
        let size = lens.iter().map(|len| 2 * (len + 3 + ENTRY_OVERHEAD_BYTES)).sum::<usize>();
        assert_eq!(m.size_bytes(), size, "accounting does not depend on the key's form");
        for (i, len) in lens.into_iter().enumerate() {
            let seq = i as SeqNo + 1;
            assert_eq!(m.get(&key(len), seq).map(|f| f.value), Some(Bytes::from_static(b"one")));
            assert_eq!(
                m.get(&key(len), 99).map(|f| (f.seq, f.value)),
                Some((seq + 10, put("two").value))
            );
        }
        assert!(m.get(&key(INLINE_KEY_MAX + 2), 99).is_none());
        assert!(m.get(&key(INLINE_KEY_MAX - 2), 99).is_none());
        // Iteration hands out each key's exact bytes, newest version first.
        let got: Vec<_> = collect(&m, None).into_iter().map(|(u, s, _)| (u.len(), s)).collect();
        let want: Vec<_> = lens
            .into_iter()
            .enumerate()
            .flat_map(|(i, l)| [(l, i as u64 + 11), (l, i as u64 + 1)])
            .collect();
        assert_eq!(got, want);
        assert_eq!(collect(&m, Some(&key(INLINE_KEY_MAX + 1)))[0].0, key(INLINE_KEY_MAX + 1));
    }

    #[test]
    fn inline_and_heap_keys_order_by_their_bytes() {
        // A key at the limit (inline) and its one-byte extension (heap) sort as their bytes do,
        // as do a short inline key and a long heap key it precedes or follows.
        let at_limit = Bytes::from(vec![b'm'; INLINE_KEY_MAX]);
        let mut ext = at_limit.to_vec();
        ext.push(0);
        let extended = Bytes::from(ext);
        let (short_lo, short_hi) = (Bytes::from_static(b"a"), Bytes::from_static(b"z"));
        let long_lo = Bytes::from(vec![b'b'; INLINE_KEY_MAX + 10]);

        let (a, b) = (MemKey::from(at_limit.clone()), MemKey::from(extended.clone()));
        assert!(matches!(a, MemKey::Inline { .. }) && matches!(b, MemKey::Heap(_)));
        assert_eq!((a.cmp(&b), b.cmp(&a)), (Ordering::Less, Ordering::Greater));
        assert_ne!(a, b);
        assert_eq!(MemKey::from(short_hi.clone()).cmp(&b), Ordering::Greater);
        assert_eq!(
            MemKey::from(short_lo.clone()).cmp(&MemKey::from(long_lo.clone())),
            Ordering::Less
        );
        // The same bytes in either form are equal (the form is never chosen otherwise, but the
        // order must not depend on it).
        let forced = MemKey::Heap(at_limit.to_vec().into_boxed_slice());
        assert_eq!(forced.cmp(&a), Ordering::Equal);
        assert_eq!(forced, a);

        let mut m = Memtable::default();
        for (seq, k) in
            [&extended, &short_hi, &long_lo, &at_limit, &short_lo].into_iter().enumerate()
        {
            m.insert(k.clone(), seq as SeqNo + 1, put("v"), true);
        }
        let users: Vec<_> = collect(&m, None).into_iter().map(|(u, _, _)| u).collect();
        assert_eq!(users, vec![short_lo, long_lo, at_limit.clone(), extended.clone(), short_hi]);
        // A scan from the shorter key includes its extension; from the extension, not the key.
        assert_eq!(collect(&m, Some(&at_limit))[1].0, extended);
        assert_eq!(collect(&m, Some(&extended))[0].0, extended);
        assert_eq!(format!("{a:?}"), format!("{at_limit:?}"));
    }

    proptest::proptest! {
        /// Against the previous layout (one map entry per (user, seq), newest first): the same
        /// point reads at every snapshot and the same iteration from every start.
        #[test]
        fn matches_a_map_of_internal_keys(
            writes in proptest::collection::vec((0u8..12, 0usize..3), 0..80),
            probes in proptest::collection::vec((0u8..13, 0u64..90), 0..40),
        ) {
            use std::cmp::Reverse;
            // Keys of different lengths sharing prefixes, so that byte order is exercised, short
            // ones and ones on either side of the inline limit (`MemKey`'s two forms).
            let key = |k: u8| {
                let pad = [0, 1, 2, 3, INLINE_KEY_MAX - 2, INLINE_KEY_MAX - 1, INLINE_KEY_MAX, 40];
                let mut v = vec![b'k'; pad[usize::from(k % 8)]];
                v.push(k);
                Bytes::from(v)
            };
            let mut m = Memtable::default();
            let mut model: BTreeMap<(Bytes, Reverse<SeqNo>), Bytes> = BTreeMap::new();
            for (i, (k, vlen)) in writes.iter().enumerate() {
                let seq = i as SeqNo + 1;
                let value = Bytes::from(vec![*k; *vlen]);
                m.insert(key(*k), seq, MemValue { kind: Kind::Put, expire_at_ms: None, value: value.clone() }, true);
                model.insert((key(*k), Reverse(seq)), value);
            }
            proptest::prop_assert_eq!(m.len(), model.len());
            for (k, snap) in probes {
                let k = key(k);
                let want = model
                    .range((k.clone(), Reverse(snap))..)
                    .next()
                    .filter(|((u, _), _)| *u == k)
                    .map(|((_, Reverse(s)), v)| (*s, v.clone()));
                let got = m.get(&k, snap).map(|f| (f.seq, f.value));
                proptest::prop_assert_eq!(got, want);
                let want: Vec<_> = model
                    .range((k.clone(), Reverse(crate::codec::SEQ_MAX))..)
                    .map(|((u, Reverse(s)), v)| (u.clone(), *s, v.clone()))
                    .collect();
                proptest::prop_assert_eq!(collect(&m, Some(&k)), want);
            }
            let want: Vec<_> =
                model.iter().map(|((u, Reverse(s)), v)| (u.clone(), *s, v.clone())).collect();
            proptest::prop_assert_eq!(collect(&m, None), want);
        }
    }
}
