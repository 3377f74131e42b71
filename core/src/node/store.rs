//! How the node keeps objects in its storage: the decoded-object cache, reading, writing and
//! visiting the data space in token order, and the one-time move to that layout.
//!
//! Part of [`Node`](super::Node), split out of `mod.rs`: free functions over a [`Storage`] and a
//! cache; no other state of the node.

use super::*;

/// Decoded copies of recently read stored objects, so that hot keys are not decoded from
/// storage on every request (decoding was the largest single cost in the simulator).
/// Kept current: every write of the data space goes through `Replica::write`, which updates
/// a cached copy (it does not add one: copying every written object cost about 5% of the CPU
/// under random SETs), or forgets it when the write failed; the tombstone sweep forgets what it
/// may purge.
/// Volatile, like the node: a restart starts empty. `Node::local_object` bypasses it, so the
/// simulator's checkers read what storage really holds.
///
/// A hash map: on a real node under random reads most lookups miss, and a `BTreeMap` of heap
/// keys paid a cache miss per comparison (about 5% of a node's CPU at 100,000 keys). The
/// hasher's keys come from the node's seed, so clients cannot aim keys at one bucket, and the
/// simulator stays deterministic (nothing iterates the map).
///
/// A read that misses caches its key only on its second miss (a doorkeeper, as in TinyLFU): a
/// stream of keys read once each, like random reads over a keyspace larger than the cache, would
/// otherwise pay a copy and an insert per read and evict the keys that are read often.
///
/// Generic over what it holds: the node keeps decoded objects (`ObjectCache`) and, in the same
/// way, the Paxos acceptor state of recently used serial keys (`AcceptorCache`), which every
/// prepare, proposal and commit reads (a memtable lookup and a decode each time cost about 14%
/// of a node's CPU under INCR).
#[derive(Debug)]
pub(super) struct KeyCache<V> {
    objects: hashbrown::HashMap<Bytes, V, ahash::RandomState>,
    /// The hash of the key that last missed in each slot.
    missed: Vec<u64>,
    /// Keys kept before the cache starts over. Clearing everything at once keeps it simple and
    /// deterministic; hot keys come back on their next read.
    keys_max: usize,
}

/// Decoded stored objects of recently read keys.
pub(super) type ObjectCache = KeyCache<Versioned>;

/// The acceptor state of recently used serial keys. Written through: every store of a state
/// replaces the copy (after the write was accepted by storage), and a failed write forgets it.
/// Answers still wait for the state to be durable, and a restart starts empty, so the cache
/// never answers with state storage could lose.
pub(super) type AcceptorCache = KeyCache<AcceptorState>;

impl<V: Clone> KeyCache<V> {
    pub(super) fn new(seed: u64, keys_max: usize) -> Self {
        let hasher = ahash::RandomState::with_seeds(
            child_seed(seed, b"cache-0"),
            child_seed(seed, b"cache-1"),
            child_seed(seed, b"cache-2"),
            child_seed(seed, b"cache-3"),
        );
        KeyCache {
            objects: hashbrown::HashMap::with_hasher(hasher),
            // A cache larger than the simulator's default gets four doorkeeper slots per key, of
            // which a miss marks two (see `admit`): with a fixed 4,096, a key of a working set that
            // fits the cache was pushed out of its slot by others before its second miss, and
            // never got in. The default size keeps the one-slot doorkeeper, so that simulated
            // runs (whose disk faults fire on the reads a cache spares) keep their traces.
            missed: vec![
                0;
                if keys_max <= Self::MISSED_SLOTS_MIN {
                    Self::MISSED_SLOTS_MIN
                } else {
                    4 * keys_max
                }
            ],
            keys_max: keys_max.max(1),
        }
    }

    /// Fewest slots of the doorkeeper.
    const MISSED_SLOTS_MIN: usize = 4096;

    /// Whether a key read from storage is to be cached: yes if it missed recently, else it is
    /// remembered as missed.
    pub(super) fn admit(&mut self, key: &[u8]) -> bool {
        let hash = self.objects.hasher().hash_one(key);
        let slots = self.missed.len() as u64;
        let first = (hash % slots) as usize;
        if self.missed.len() <= Self::MISSED_SLOTS_MIN {
            let slot = &mut self.missed[first];
            if *slot == hash {
                return true;
            }
            *slot = hash;
            return false;
        }
        // Two slots per key: two keys sharing one slot would otherwise overwrite each other's
        // mark on every miss and never get in (about 30% of a working set that fits the cache
        // stayed out with one slot); with two, both must be shared.
        let second = ((hash >> 32) ^ hash.rotate_left(17)) as usize % self.missed.len();
        if self.missed[first] == hash || self.missed[second] == hash {
            return true;
        }
        self.missed[first] = hash;
        self.missed[second] = hash;
        false
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&V> {
        self.objects.get(key)
    }

    pub(super) fn insert(&mut self, key: &[u8], object: V) {
        if let Some(cached) = self.objects.get_mut(key) {
            *cached = object;
            return;
        }
        if self.objects.len() >= self.keys_max {
            self.objects.clear();
        }
        self.objects.insert(Bytes::copy_from_slice(key), object);
    }

    /// Updates the copy of `key` if one is cached.
    pub(super) fn replace(&mut self, key: &[u8], object: &V) {
        if let Some(cached) = self.objects.get_mut(key) {
            cached.clone_from(object);
        }
    }

    pub(super) fn forget(&mut self, key: &[u8]) {
        self.objects.remove(key);
    }

    pub(super) fn clear(&mut self) {
        self.objects.clear();
    }
}

/// What [`Node::slice_entries`] read: the keys with their entry hashes, the last token covered,
/// and whether keys were left out.
pub(super) type SliceRead = (Vec<(Bytes, u64)>, Token, bool);

pub(super) fn read_object<S: Storage>(
    storage: &mut S,
    key: &[u8],
) -> Result<Option<Versioned>, StorageError> {
    storage.get(Space::Data, &data_key(key))?.map(|bytes| decode_object(&bytes)).transpose()
}

/// Reads the stored objects with tokens in `[low, high]` in token order, handing each to
/// `visit` as (token, key, encoded object) until it returns false. Pages start small and grow,
/// so that a short range does not read far past its end.
pub(super) fn visit_data<S: Storage>(
    storage: &mut S,
    low: Token,
    high: Token,
    mut visit: impl FnMut(Token, Bytes, Bytes) -> bool,
) -> Result<(), StorageError> {
    let mut after = data_scan_after(low);
    let mut page_keys = 16;
    loop {
        let page = storage.scan(Space::Data, after.as_deref(), page_keys)?;
        let full = page.len() == page_keys;
        after = page.last().map(|(stored, _)| stored.clone());
        for (stored, bytes) in page {
            // The token is read, not checked against the key: checking hashed every key of a
            // scan once more (the start-up conversion checks them all).
            let Some(token) = data_key_token(&stored) else {
                return Err(StorageError(format!("malformed data key of {} bytes", stored.len())));
            };
            if token > high || !visit(token, stored.slice(DATA_KEY_TOKEN_BYTES..), bytes) {
                return Ok(());
            }
        }
        if !full {
            return Ok(());
        }
        page_keys = (page_keys * 2).min(SCAN_PAGE_KEYS);
    }
}

/// Moves data stored by a build that kept [`Space::Data`] in key order under token-ordered keys
/// ([`data_key`]), then records the layout; nothing to do once it is recorded. Idempotent if
/// interrupted: a key that already carries its own token is left alone, and the layout is
/// recorded after every move in the write order, so it survives a crash only if they do.
pub(super) fn order_data_by_token<S: Storage>(storage: &mut S) -> Result<(), StorageError> {
    match storage.get(Space::Meta, META_DATA_LAYOUT_KEY)? {
        Some(layout) if layout == DATA_LAYOUT_TOKEN_ORDERED => return Ok(()),
        Some(layout) => {
            return Err(StorageError(format!(
                "unknown data layout {:?} (written by a newer ringkv?)",
                String::from_utf8_lossy(&layout)
            )))
        }
        None => {}
    }
    let mut after: Option<Bytes> = None;
    loop {
        let page = storage.scan(Space::Data, after.as_deref(), SCAN_PAGE_KEYS)?;
        let full = page.len() == SCAN_PAGE_KEYS;
        after = page.last().map(|(key, _)| key.clone());
        for (key, value) in page {
            if split_data_key(&key).is_some() {
                continue;
            }
            storage.write(Space::Data, data_key(&key), Some(value))?;
            storage.write(Space::Data, key, None)?;
        }
        if !full {
            break;
        }
    }
    storage.write(
        Space::Meta,
        Bytes::from_static(META_DATA_LAYOUT_KEY),
        Some(Bytes::from_static(DATA_LAYOUT_TOKEN_ORDERED)),
    )?;
    Ok(())
}

pub(super) fn write_object<S: Storage>(
    storage: &mut S,
    key: &[u8],
    object: &Versioned,
) -> Result<WriteSeq, StorageError> {
    // Sized up front (values plus a generous bound per sibling and clock entry) so that the
    // encoding does not grow its buffer several times.
    let values_bytes: usize =
        object.siblings.iter().map(|sibling| sibling.value.as_ref().map_or(0, Bytes::len)).sum();
    let capacity = 8 + values_bytes + 48 * object.siblings.len() + 24 * object.clock.len();
    let bytes = postcard::to_extend(object, Vec::with_capacity(capacity))
        .map_err(|error| StorageError(format!("encode: {error}")))?;
    storage.write(Space::Data, data_key(key), Some(Bytes::from(bytes)))
}

pub(super) fn decode_object(bytes: &[u8]) -> Result<Versioned, StorageError> {
    let object: Versioned = postcard::from_bytes(bytes)
        .map_err(|error| StorageError(format!("corrupt stored object: {error}")))?;
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    /// A working set that fits the cache gets in over its next passes of reads and then hits,
    /// however much larger it is than the smallest doorkeeper (it once had 4,096 slots, which
    /// kept a working set of 100,000 keys out of a cache of any size).
    #[test]
    fn a_working_set_that_fits_the_cache_gets_in_after_a_few_passes() {
        let keys: Vec<Vec<u8>> = (0..50_000).map(|i| format!("key{i:06}").into_bytes()).collect();
        let mut cache: KeyCache<u32> = KeyCache::new(7, 65_536);
        let mut admitted = Vec::new();
        for pass in 0..3 {
            // Each pass reads the keys in another order, as random reads would.
            for i in 0..keys.len() {
                let index = (i * 7_919 + pass * 12_345) % keys.len();
                let key = &keys[index];
                if cache.get(key).is_none() && cache.admit(key) {
                    cache.insert(key, index as u32);
                }
            }
            admitted.push(keys.iter().filter(|key| cache.get(key).is_some()).count());
        }
        // Slots are shared by hash: a key whose slot another key took since its first miss waits
        // a pass more.
        assert_eq!(admitted[0], 0, "a key read once is not cached");
        assert!(admitted[1] > keys.len() * 3 / 4, "{admitted:?} of {}", keys.len());
        assert!(admitted[2] > keys.len() * 19 / 20, "{admitted:?} of {}", keys.len());
        // A small cache starts over when full rather than growing past its bound.
        let mut small: KeyCache<u32> = KeyCache::new(7, 100);
        for key in &keys[..1_000] {
            small.insert(key, 0);
        }
        assert!(small.objects.len() <= 100);
    }

    fn stored_data(storage: &mut MemStorage) -> Vec<(Bytes, Bytes)> {
        storage.scan(Space::Data, None, usize::MAX).expect("memory does not fail")
    }

    #[test]
    fn data_stored_by_key_is_moved_under_token_ordered_keys_once_and_nothing_is_lost() {
        let mut storage = MemStorage::new();
        // 2,500 keys in the old layout (more than a scan page), and one already moved, as after
        // an interrupted move.
        let old: Vec<(Bytes, Bytes)> = (0..2_500)
            .map(|i| (Bytes::from(format!("key{i:05}")), Bytes::from(format!("value{i}"))))
            .collect();
        for (key, value) in &old {
            storage.write(Space::Data, key.clone(), Some(value.clone())).unwrap();
        }
        storage.write(Space::Data, data_key(b"moved"), Some(Bytes::from_static(b"m"))).unwrap();

        order_data_by_token(&mut storage).unwrap();

        let mut expected: Vec<(Bytes, Bytes)> =
            old.iter().map(|(key, value)| (data_key(key), value.clone())).collect();
        expected.push((data_key(b"moved"), Bytes::from_static(b"m")));
        expected.sort();
        let stored = stored_data(&mut storage);
        assert_eq!(stored, expected);
        let tokens: Vec<Token> =
            stored.iter().map(|(key, _)| split_data_key(key).expect("token-ordered").0).collect();
        assert!(tokens.windows(2).all(|pair| pair[0] <= pair[1]), "not in token order");
        assert_eq!(
            storage.get(Space::Meta, META_DATA_LAYOUT_KEY).unwrap().as_deref(),
            Some(DATA_LAYOUT_TOKEN_ORDERED)
        );

        // Once recorded, the layout is trusted: a key that looks old is left as it is.
        storage.write(Space::Data, Bytes::from_static(b"late"), Some(Bytes::new())).unwrap();
        order_data_by_token(&mut storage).unwrap();
        assert_eq!(stored_data(&mut storage).len(), expected.len() + 1);
    }

    #[test]
    fn an_unknown_data_layout_is_refused_and_the_data_left_alone() {
        let mut storage = MemStorage::new();
        storage.write(Space::Data, Bytes::from_static(b"a"), Some(Bytes::new())).unwrap();
        let layout = Some(Bytes::from_static(b"from-the-future"));
        storage.write(Space::Meta, Bytes::from_static(META_DATA_LAYOUT_KEY), layout).unwrap();
        let error = order_data_by_token(&mut storage).unwrap_err();
        assert!(error.0.contains("unknown data layout \"from-the-future\""), "{error}");
        assert_eq!(stored_data(&mut storage), vec![(Bytes::from_static(b"a"), Bytes::new())]);
    }

    #[test]
    fn visiting_a_token_range_reads_its_keys_in_token_order_and_stops_at_its_end() {
        let mut storage = MemStorage::new();
        let mut tokens: Vec<(Token, Bytes)> = (0..200)
            .map(|i| {
                let key = Bytes::from(format!("k{i}"));
                (Ring::key_token(&key), key)
            })
            .collect();
        for (_, key) in &tokens {
            storage.write(Space::Data, data_key(key), Some(key.clone())).unwrap();
        }
        tokens.sort();
        let (low, high) = (tokens[50].0, tokens[149].0);
        let mut visited = Vec::new();
        visit_data(&mut storage, low, high, |token, key, value| {
            assert_eq!(key, value, "the key comes back without its token");
            visited.push((token, key));
            true
        })
        .unwrap();
        assert_eq!(visited, tokens[50..150].to_vec());
        // A wrapping arc is two intervals, in token order.
        let wrapped = token_intervals(tokens[190].0, tokens[9].0);
        assert_eq!(wrapped, vec![(0, tokens[9].0), (tokens[190].0 + 1, Token::MAX)]);
    }
}
