//! The library half of `ringkv-storage-bench`: the plotting shared by the benchmark binary
//! (`--plot`) and `ringkv-bench-plot`, which draws bench/cluster.sh's JSON lines.

pub mod plot;
