//! BUGGIFY: code sites that misbehave on purpose, in simulation only, to drive rare paths.
//!
//! Owns: the per-thread switch and the per-run state. Input: the simulator calls [`enable`] with
//! the run's seed at the start of a run and [`disable`] at its end. Output: [`buggify!`](crate::buggify!) returns
//! whether the site it marks fires now.
//!
//! FoundationDB's rule: in a run, each site is enabled with probability 1/4 (decided by a hash of
//! the run seed and the site's location, so the decision does not depend on which other sites
//! ran first), and an enabled site fires 1/4 of the times it is reached (drawn from the run's
//! own generator, so a replay of the seed fires the same sites at the same moments).
//!
//! Off by default: a thread that never called [`enable`] (every real driver) sees `false` at
//! every site and pays one thread-local read. The state is per thread because each simulation
//! runs on one thread; parallel runs on other threads do not see each other.

use std::cell::RefCell;
use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Probability that a site is enabled for a run.
pub const SITE_ENABLED_PROBABILITY: f64 = 0.25;

/// Probability that an enabled site fires when reached.
pub const FIRE_PROBABILITY: f64 = 0.25;

/// Whether the marked site fires now. Always `false` unless a simulator enabled BUGGIFY on this
/// thread.
#[macro_export]
macro_rules! buggify {
    () => {
        $crate::buggify::fires(concat!(file!(), ":", line!(), ":", column!()))
    };
}

/// Per-site counts of one run, for reports and code-probe style coverage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// Whether the site is enabled this run.
    pub enabled: bool,
    /// Times it was reached.
    pub reached_count: u64,
    /// Times it fired.
    pub fired_count: u64,
}

struct RunState {
    seed: u64,
    rng: ChaCha8Rng,
    sites: BTreeMap<&'static str, SiteStats>,
}

thread_local! {
    static STATE: RefCell<Option<RunState>> = const { RefCell::new(None) };
}

/// Arms BUGGIFY on this thread for a run with `seed`, forgetting any previous run's state.
pub fn enable(seed: u64) {
    let state = RunState {
        seed,
        rng: ChaCha8Rng::seed_from_u64(xxh3_64_with_seed(b"buggify/fire", seed)),
        sites: BTreeMap::new(),
    };
    STATE.with(|cell| *cell.borrow_mut() = Some(state));
}

/// Disarms BUGGIFY on this thread and returns the finished run's per-site counts.
pub fn disable() -> BTreeMap<&'static str, SiteStats> {
    STATE.with(|cell| cell.borrow_mut().take()).map(|state| state.sites).unwrap_or_default()
}

/// Whether BUGGIFY is armed on this thread.
pub fn is_enabled() -> bool {
    STATE.with(|cell| cell.borrow().is_some())
}

/// Whether the site at `location` fires now; use the [`buggify!`](crate::buggify!) macro rather than this.
pub fn fires(location: &'static str) -> bool {
    STATE.with(|cell| {
        let mut guard = cell.borrow_mut();
        let Some(state) = guard.as_mut() else {
            return false;
        };
        let seed = state.seed;
        let site = state.sites.entry(location).or_insert_with(|| {
            let draw = xxh3_64_with_seed(location.as_bytes(), seed);
            let enabled = (draw as f64 / u64::MAX as f64) < SITE_ENABLED_PROBABILITY;
            SiteStats { enabled, ..SiteStats::default() }
        });
        site.reached_count += 1;
        if !site.enabled {
            return false;
        }
        let fired = state.rng.random_bool(FIRE_PROBABILITY);
        if let Some(site) = state.sites.get_mut(location) {
            site.fired_count += u64::from(fired);
        }
        fired
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(site: &'static str, times: usize) -> usize {
        (0..times).filter(|_| fires(site)).count()
    }

    #[test]
    fn buggify_is_off_unless_enabled_and_off_again_after_disable() {
        assert!(!is_enabled());
        assert_eq!(reach("site-a", 100), 0);
        enable(1);
        assert!(is_enabled());
        let stats = disable();
        assert!(!is_enabled());
        assert!(stats.is_empty());
        assert_eq!(reach("site-a", 100), 0);
    }

    #[test]
    fn about_a_quarter_of_sites_are_enabled_and_fire_about_a_quarter_of_the_time() {
        let sites: Vec<&'static str> =
            (0..400).map(|index| &*Box::leak(format!("site-{index}").into_boxed_str())).collect();
        enable(7);
        for site in &sites {
            reach(site, 100);
        }
        let stats = disable();
        let enabled: Vec<&SiteStats> = stats.values().filter(|site| site.enabled).collect();
        assert!((70..130).contains(&enabled.len()), "{} sites enabled", enabled.len());
        let fired: u64 = enabled.iter().map(|site| site.fired_count).sum();
        let reached: u64 = enabled.iter().map(|site| site.reached_count).sum();
        let share = fired as f64 / reached as f64;
        assert!((0.22..0.28).contains(&share), "fired share {share}");
        assert!(stats.values().filter(|site| !site.enabled).all(|site| site.fired_count == 0));
    }

    #[test]
    fn the_same_seed_fires_the_same_sites_at_the_same_moments() {
        let run = |seed| {
            enable(seed);
            let pattern: Vec<bool> =
                (0..200).map(|index| fires(if index % 2 == 0 { "x" } else { "y" })).collect();
            disable();
            pattern
        };
        assert_eq!(run(3), run(3));
        let differs = (0..20).any(|seed| run(seed) != run(seed + 100));
        assert!(differs, "different seeds never differed");
    }
}
