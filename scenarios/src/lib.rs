//! ringkv-scenarios: the scenario library and the runner over many seeds.
//!
//! A scenario is a RON file ([`scenario`]) naming a cluster, keyspace, workload, faults, phases,
//! disk and expectations; it becomes a `ringkv_sim::SimConfig` per seed. [`library`] loads a
//! file or a folder of them; [`sweep`] runs many seeds on worker threads and folds the results
//! into per-scenario summaries; [`output`] prints them as a table or JSON; [`shrink`] cuts a
//! failing seed's scenario down to a minimal regression file; [`hunt`] arms the core's planted
//! bugs one at a time and reports which checker catches each; [`timeline`] draws one run as a
//! self-contained HTML page. The `ringkv-sim` binary drives all of it.
#![forbid(unsafe_code)]

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod hunt;
pub mod library;
pub mod output;
pub mod scenario;
pub mod shrink;
pub mod sweep;
pub mod timeline;

pub use scenario::{Scenario, ScenarioError};
pub use sweep::{run_seed, sweep, SeedOutcome, Summary};
