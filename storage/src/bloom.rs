//! Bloom filters over user keys, one per SSTable, so point reads skip tables without the key.
//!
//! Encoding: the bit array, then one byte with the number of probes. Probes use double hashing
//! of one xxh3 hash. With 10 bits per key and 7 probes the false positive rate is about 1%.

use xxhash_rust::xxh3::xxh3_64;

/// The hash a filter is built from and probed with.
pub(crate) fn bloom_hash(user_key: &[u8]) -> u64 {
    xxh3_64(user_key)
}

/// Builds an encoded filter for `hashes` with `bits_per_key` bits each.
pub(crate) fn build(hashes: &[u64], bits_per_key: usize) -> Vec<u8> {
    let bits = (hashes.len() * bits_per_key).max(64);
    let bytes = bits.div_ceil(8);
    let bits = bytes * 8;
    // ln(2) * bits per key minimises the false positive rate.
    let probes = ((bits_per_key as f64) * 0.69).round().clamp(1.0, 30.0) as u8;
    let mut out = vec![0u8; bytes + 1];
    for &h in hashes {
        let (mut x, delta) = (h, (h >> 33) | 1);
        for _ in 0..probes {
            let bit = (x % bits as u64) as usize;
            out[bit / 8] |= 1 << (bit % 8);
            x = x.wrapping_add(delta);
        }
    }
    out[bytes] = probes;
    out
}

/// A filter read from a table.
#[derive(Debug, Clone)]
pub(crate) struct Bloom {
    data: Vec<u8>,
}

impl Bloom {
    /// Wraps an encoded filter; `None` if it is malformed.
    pub fn new(data: Vec<u8>) -> Option<Bloom> {
        let probes = *data.last()?;
        (data.len() >= 2 && (1..=30).contains(&probes)).then_some(Bloom { data })
    }

    /// False only if the key is certainly absent.
    pub fn may_contain(&self, h: u64) -> bool {
        let bytes = self.data.len() - 1;
        let bits = (bytes * 8) as u64;
        let probes = self.data[bytes];
        let (mut x, delta) = (h, (h >> 33) | 1);
        for _ in 0..probes {
            let bit = (x % bits) as usize;
            if self.data[bit / 8] & (1 << (bit % 8)) == 0 {
                return false;
            }
            x = x.wrapping_add(delta);
        }
        true
    }

    #[cfg(test)]
    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_has_no_false_negatives_and_about_one_percent_false_positives() {
        let hashes: Vec<u64> = (0..10_000u32).map(|i| bloom_hash(&i.to_le_bytes())).collect();
        let f = Bloom::new(build(&hashes, 10)).unwrap();
        assert!(hashes.iter().all(|&h| f.may_contain(h)));
        let fp =
            (10_000..110_000u32).filter(|i| f.may_contain(bloom_hash(&i.to_le_bytes()))).count();
        assert!(fp < 2_000, "false positive rate {fp}/100000");
        assert!(f.size_bytes() <= 10_000 * 10 / 8 + 2);
    }

    #[test]
    fn malformed_filter_is_rejected() {
        assert!(Bloom::new(vec![]).is_none());
        assert!(Bloom::new(vec![0, 0, 99]).is_none());
    }
}
