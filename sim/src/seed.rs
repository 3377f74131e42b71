//! Child seeds: one run seed fans out into independent generators, one per sub-system.
//!
//! Owns: the rule that derives a child seed from the run's seed and a label. Input: the run
//! seed, a label naming the consumer ("network", "client", "fault/crash") and an index (a node
//! or client number). Output: a `u64` seed or a seeded `ChaCha8Rng`.
//!
//! Invariant: children are independent of each other's draws, so adding a draw to one
//! sub-system (a new fault kind, a longer workload) never shifts what another one sees.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The child seed of `seed` for the consumer named `label`, instance `index`.
pub fn child_seed(seed: u64, label: &str, index: u64) -> u64 {
    let mut bytes = Vec::with_capacity(label.len() + 8);
    bytes.extend_from_slice(label.as_bytes());
    bytes.extend_from_slice(&index.to_le_bytes());
    xxh3_64_with_seed(&bytes, seed)
}

/// A generator seeded with [`child_seed`].
pub fn child_rng(seed: u64, label: &str, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(child_seed(seed, label, index))
}

/// An exponentially distributed draw with the given mean, for Poisson arrivals.
pub fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    use rand::Rng;
    let uniform: f64 = rng.random();
    -(1.0 - uniform).ln() * mean
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn child_seeds_differ_by_label_and_index_and_repeat_exactly() {
        assert_eq!(child_seed(7, "network", 0), child_seed(7, "network", 0));
        assert_ne!(child_seed(7, "network", 0), child_seed(7, "network", 1));
        assert_ne!(child_seed(7, "network", 0), child_seed(7, "clock", 0));
        assert_ne!(child_seed(7, "network", 0), child_seed(8, "network", 0));
        let mut first = child_rng(1, "a", 0);
        let mut second = child_rng(1, "a", 0);
        assert_eq!(first.random::<u64>(), second.random::<u64>());
    }

    #[test]
    fn exponential_draws_have_roughly_the_asked_mean() {
        let mut rng = child_rng(3, "exp", 0);
        let draws_count = 20_000;
        let sum: f64 = (0..draws_count).map(|_| exponential(&mut rng, 5.0)).sum();
        let mean = sum / f64::from(draws_count);
        assert!((4.7..5.3).contains(&mean), "mean {mean}");
    }
}
