//! Fuzz target `sstable_footer`: the body is `ringkv_storage::fuzzing::sstable_footer`, which the stable harness
//! (`tests/tests/fuzz_corpus.rs`) also runs over the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringkv_storage::fuzzing::sstable_footer(data));
