//! Fuzz target `peer_frame`: the body is `ringkv_net::fuzzing::peer_frame`, which the stable harness
//! (`tests/tests/fuzz_corpus.rs`) also runs over the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringkv_net::fuzzing::peer_frame(data));
