//! ringkv-storage: the LSM storage engine behind every ringkv node.
//!
//! The engine never reads a clock, sleeps or spawns a thread: flushes, compactions and WAL syncs
//! are handed to the driver as jobs, so the same engine runs under the simulator and on real files.
#![forbid(unsafe_code)]

mod batch;
mod block;
mod bloom;
mod cache;
pub mod codec;
mod engine;
pub mod error;
mod iter;
mod job;
mod manifest;
mod memtable;
pub mod record;
pub mod simfs;
mod table;
mod version;
pub mod vfs;

pub use batch::{Batch, BatchOp, KeyspaceId};
pub use codec::{Kind, SeqNo};
pub use engine::{
    Engine, KeyValue, Options, RecoveryReport, Scan, Snapshot, Stats, SyncJob, SyncResult, WalStop,
};
pub use error::{Error, Result};
pub use job::{Job, JobResult};
pub use simfs::{CrashMode, FaultConfig, SimFile, SimFs, SimStats};
pub use table::TableOptions;
pub use version::{CompactionOptions, CompactionStyle};
pub use vfs::{StdFile, StdFs, Vfs, VfsFile};
