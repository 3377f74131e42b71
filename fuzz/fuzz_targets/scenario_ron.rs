//! Fuzz target `scenario_ron`: the body is `ringkv_scenarios::fuzzing::scenario_ron`, which the stable harness
//! (`tests/tests/fuzz_corpus.rs`) also runs over the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringkv_scenarios::fuzzing::scenario_ron(data));
