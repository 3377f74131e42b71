//! The block cache: decoded-and-verified SSTable blocks kept in memory within a byte budget.
//!
//! Keyed by (table number, block offset). Eviction is CLOCK: a hit sets a reference bit; the
//! evictor walks a ring, clearing set bits and evicting the first unset one. Invariant:
//! `bytes <= bytes_max` after every insert, and every ring key is in the map and vice versa.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

/// A byte-budgeted cache of blocks.
#[derive(Debug)]
pub(crate) struct BlockCache {
    map: BTreeMap<(u64, u64), Slot>,
    ring: VecDeque<(u64, u64)>,
    bytes: usize,
    bytes_max: usize,
    hits: u64,
    misses: u64,
}

#[derive(Debug)]
struct Slot {
    data: Bytes,
    referenced: bool,
}

impl BlockCache {
    pub fn new(bytes_max: usize) -> Self {
        BlockCache {
            map: BTreeMap::new(),
            ring: VecDeque::new(),
            bytes: 0,
            bytes_max,
            hits: 0,
            misses: 0,
        }
    }

    pub fn get(&mut self, table: u64, offset: u64) -> Option<Bytes> {
        match self.map.get_mut(&(table, offset)) {
            Some(slot) => {
                slot.referenced = true;
                self.hits += 1;
                Some(slot.data.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    pub fn insert(&mut self, table: u64, offset: u64, data: Bytes) {
        let len = data.len();
        if len > self.bytes_max || self.map.contains_key(&(table, offset)) {
            return;
        }
        // Each slot is passed at most twice (once to clear its bit, once to evict), so this
        // loop is bounded by twice the ring's length.
        let mut steps_max = self.ring.len() * 2 + 1;
        while self.bytes + len > self.bytes_max && steps_max > 0 {
            steps_max -= 1;
            let Some(key) = self.ring.pop_front() else {
                break;
            };
            match self.map.get_mut(&key) {
                Some(slot) if slot.referenced => {
                    slot.referenced = false;
                    self.ring.push_back(key);
                }
                Some(_) => {
                    if let Some(slot) = self.map.remove(&key) {
                        self.bytes -= slot.data.len();
                    }
                }
                None => {}
            }
        }
        if self.bytes + len > self.bytes_max {
            return;
        }
        self.bytes += len;
        self.ring.push_back((table, offset));
        self.map.insert((table, offset), Slot { data, referenced: false });
        debug_assert!(self.bytes <= self.bytes_max);
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_stays_within_its_budget_and_keeps_referenced_blocks() {
        let mut c = BlockCache::new(1000);
        for i in 0..5 {
            c.insert(1, i * 100, Bytes::from(vec![0u8; 200]));
        }
        assert_eq!(c.bytes(), 1000);
        assert!(c.get(1, 0).is_some());
        c.insert(2, 0, Bytes::from(vec![1u8; 200]));
        assert!(c.bytes() <= 1000);
        assert!(c.get(1, 0).is_some(), "a referenced block survives one sweep");
        assert!(c.get(1, 100).is_none(), "the first unreferenced block was evicted");
        assert!(c.get(2, 0).is_some());
        c.insert(3, 0, Bytes::from(vec![0u8; 2000]));
        assert!(c.get(3, 0).is_none(), "a block over the budget is not cached");
        assert_eq!(c.stats().0, 3);
    }
}
