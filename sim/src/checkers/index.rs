//! A map from borrowed byte strings (keys, values) to `V`, for the checkers' indexes.
//!
//! Why not a `BTreeMap<Bytes, V>`: the checkers index every written value and look up every
//! value read and every key of every operation. Owned `Bytes` keys cost an atomic refcount to
//! clone and again to drop, and each B-tree level costs a few `memcmp` calls; that was most of
//! `Analysis::new`. Here keys borrow from the history, a lookup hashes once (XXH3, already the
//! trace's hash) and compares bytes only on a full 64-bit hash match.
//!
//! Deterministic: the hash has no seed drawn at run time, and iteration follows insertion
//! order, never the table's layout, so nothing a checker reports depends on the table.

use xxhash_rust::xxh3::xxh3_64;

/// No entry in a table slot.
const EMPTY: u32 = u32::MAX;

/// An insertion-ordered hash map keyed by borrowed byte strings (open addressing, linear
/// probing).
#[derive(Debug, Clone)]
pub struct ByteMap<'a, V> {
    /// The entries in insertion order: (key, its hash, value).
    entries: Vec<(&'a [u8], u64, V)>,
    /// Entry positions by hash slot; a power of two long, at most half full.
    table: Vec<u32>,
}

impl<V> Default for ByteMap<'_, V> {
    fn default() -> Self {
        ByteMap { entries: Vec::new(), table: Vec::new() }
    }
}

impl<'a, V> ByteMap<'a, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `entries` entries, so that filling it never regrows the
    /// table or moves the entries.
    pub fn with_capacity(entries: usize) -> Self {
        let slots = (entries * 2).next_power_of_two().max(16);
        ByteMap { entries: Vec::with_capacity(entries), table: vec![EMPTY; slots] }
    }

    /// The entry position of `key` (`Ok`), or the free slot where it would go (`Err`).
    fn find(&self, key: &[u8], hash: u64) -> Result<usize, usize> {
        let mask = self.table.len().wrapping_sub(1);
        let mut slot = hash as usize & mask;
        loop {
            let position = self.table[slot];
            if position == EMPTY {
                return Err(slot);
            }
            let (entry_key, entry_hash, _) = &self.entries[position as usize];
            if *entry_hash == hash && *entry_key == key {
                return Ok(position as usize);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        if self.entries.is_empty() {
            return None;
        }
        let position = self.find(key, xxh3_64(key)).ok()?;
        Some(&self.entries[position].2)
    }

    /// The value of `key`, inserting `make()` first when it has none.
    pub fn get_or_insert_with(&mut self, key: &'a [u8], make: impl FnOnce() -> V) -> &mut V {
        let hash = xxh3_64(key);
        if (self.entries.len() + 1) * 2 > self.table.len() {
            self.grow();
        }
        let position = match self.find(key, hash) {
            Ok(position) => position,
            Err(slot) => {
                let position = self.entries.len();
                self.table[slot] = u32::try_from(position).expect("under 2^32 entries");
                self.entries.push((key, hash, make()));
                position
            }
        };
        &mut self.entries[position].2
    }

    /// Sets the value of `key` (replacing the old one; the entry keeps its position).
    pub fn insert(&mut self, key: &'a [u8], value: V) {
        let mut value = Some(value);
        let slot = self.get_or_insert_with(key, || value.take().expect("taken once"));
        if let Some(value) = value {
            *slot = value;
        }
    }

    /// Every (key, value) in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &V)> {
        self.entries.iter().map(|(key, _, value)| (*key, value))
    }

    /// Every value, mutably, in insertion order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + use<'_, 'a, V> {
        self.entries.iter_mut().map(|(_, _, value)| value)
    }

    /// Doubles the table (at least 16 slots) and places every entry again.
    fn grow(&mut self) {
        let slots = (self.table.len() * 2).max(16);
        self.table.clear();
        self.table.resize(slots, EMPTY);
        let mask = slots - 1;
        for (position, (_, hash, _)) in self.entries.iter().enumerate() {
            let mut slot = *hash as usize & mask;
            while self.table[slot] != EMPTY {
                slot = (slot + 1) & mask;
            }
            self.table[slot] = position as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_what_was_inserted_and_iteration_keeps_insertion_order() {
        let keys: Vec<Vec<u8>> =
            (0..1000u32).rev().map(|n| format!("key{n}").into_bytes()).collect();
        let mut map = ByteMap::new();
        for (n, key) in keys.iter().enumerate() {
            map.insert(key, n);
        }
        *map.get_or_insert_with(&keys[3], || 0) += 10_000;
        map.insert(&keys[5], 7);
        assert_eq!(map.iter().count(), 1000);
        assert_eq!(map.get(&keys[3]), Some(&10_003));
        assert_eq!(map.get(&keys[5]), Some(&7));
        assert_eq!(map.get(&keys[999]), Some(&999));
        assert_eq!(map.get(b"absent"), None);
        let order: Vec<&[u8]> = map.iter().map(|(key, _)| key).collect();
        assert_eq!(order, keys.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert_eq!(ByteMap::<u8>::new().get(b"k"), None);
    }
}
