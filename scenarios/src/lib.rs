//! ringkv-scenarios: the scenario library and the runner over many seeds.
#![forbid(unsafe_code)]
