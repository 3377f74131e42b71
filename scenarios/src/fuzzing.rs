//! The entry point for fuzzing scenario files (behind the `fuzzing` feature).
//!
//! [`scenario_ron`] is the body of the `scenario_ron` cargo-fuzz target (`fuzz/fuzz_targets/`)
//! and of the stable replay harness (`tests/tests/fuzz_corpus.rs`), so both run the same checks.

use crate::scenario::Scenario;

/// Parses `data` (as lossy UTF-8) as a scenario file. Properties: a bad file is an error with a
/// message; a good one builds simulator configs, and its own RON (what `shrink` writes as a
/// regression file) parses back to the same scenario.
pub fn scenario_ron(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Scenario::parse(&text, "fuzz.ron") {
        Ok(scenario) => {
            for seed in [0, 1, u64::MAX] {
                scenario.sim_config(seed).validate().expect("a valid scenario's config validates");
            }
            let again = scenario.to_ron("fuzz");
            let reparsed = Scenario::parse(&again, "again.ron")
                .unwrap_or_else(|error| panic!("a scenario's own RON is refused: {error}"));
            assert_eq!(reparsed, scenario, "a scenario did not round-trip through RON");
        }
        Err(error) => assert!(!error.to_string().is_empty(), "a scenario error without a message"),
    }
}
