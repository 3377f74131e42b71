//! ringkv-storage: the LSM storage engine behind every ringkv node.
//!
//! The engine never reads a clock, sleeps or spawns a thread: flushes, compactions and WAL syncs
//! are handed to the driver as jobs, so the same engine runs under the simulator and on real files.
#![forbid(unsafe_code)]

pub mod error;
pub mod simfs;
pub mod vfs;

pub use error::{Error, Result};
pub use simfs::{CrashMode, FaultConfig, SimFile, SimFs, SimStats};
pub use vfs::{StdFile, StdFs, Vfs, VfsFile};
