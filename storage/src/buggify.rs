//! BUGGIFY for the storage engine: seeded, rarely-taken but legal actions that a simulator turns
//! on to drive the engine through paths a quiet workload seldom reaches.
//!
//! FoundationDB's rule: each site is enabled with probability 1/4 for the whole run (decided
//! when the engine opens), and an enabled site fires on 1/4 of the times it is reached. Every
//! action a site takes is one the engine could take anyway (rotate a memtable early, append the
//! WAL buffer early, compact everything): correctness never depends on a site firing or not.
//! Off (the default) in production: `Options::buggify_seed` is `None`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A place in the engine that may act early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// Freeze the memtable and start a new WAL although the memtable is not full.
    EarlyRotate = 0,
    /// Append the WAL buffer to the file although it is not full.
    EarlyWalAppend = 1,
    /// Ask for a full compaction although none is due.
    FullCompaction = 2,
}

const SITES_COUNT: usize = 3;

/// The per-run switchboard.
#[derive(Debug)]
pub(crate) struct Buggify {
    rng: ChaCha8Rng,
    enabled: [bool; SITES_COUNT],
}

impl Buggify {
    pub fn new(seed: u64) -> Buggify {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut enabled = [false; SITES_COUNT];
        for e in &mut enabled {
            *e = rng.random_range(0..4u32) == 0;
        }
        Buggify { rng, enabled }
    }

    /// True if `site` acts this time.
    pub fn fires(&mut self, site: Site) -> bool {
        self.enabled[site as usize] && self.rng.random_range(0..4u32) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_enabled_per_run_and_fire_a_quarter_of_the_time() {
        let mut enabled_runs = 0;
        let mut fired = 0;
        for seed in 0..400 {
            let mut b = Buggify::new(seed);
            if b.enabled[Site::EarlyRotate as usize] {
                enabled_runs += 1;
                fired += (0..100).filter(|_| b.fires(Site::EarlyRotate)).count();
            } else {
                assert!(
                    !(0..100).any(|_| b.fires(Site::EarlyRotate)),
                    "a disabled site never fires"
                );
            }
        }
        assert!((60..140).contains(&enabled_runs), "about 1/4 of 400 runs: {enabled_runs}");
        let per_run = fired as f64 / f64::from(enabled_runs) / 100.0;
        assert!((0.18..0.32).contains(&per_run), "about 1/4 of calls: {per_run}");
    }

    #[test]
    fn same_seed_same_decisions() {
        let draws = |seed| {
            let mut b = Buggify::new(seed);
            (0..64)
                .map(|i| {
                    b.fires([Site::EarlyRotate, Site::EarlyWalAppend, Site::FullCompaction][i % 3])
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(9), draws(9));
    }
}
