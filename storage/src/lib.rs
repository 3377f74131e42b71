//! ringkv-storage: the LSM storage engine behind every ringkv node.
//!
//! The engine never reads a clock, sleeps or spawns a thread: flushes, compactions and WAL syncs
//! are handed to the driver as jobs, so the same engine runs under the simulator and on real files.
//!
//! A driver writes, then drains both pollers; a write is acknowledged once it is durable:
//!
//! ```
//! use ringkv_storage::{CrashMode, Engine, Options, SimFs};
//!
//! let disk = SimFs::new(42);
//! let mut engine = Engine::open(disk.clone(), Options::default())?;
//! let data = engine.create_keyspace("data")?;
//! let seq = engine.put(data, b"key", b"value")?;
//! while let Some(sync) = engine.poll_sync() {
//!     let result = sync.run(&disk); // on any thread
//!     engine.synced(result)?;
//! }
//! while let Some(job) = engine.poll_job() {
//!     let result = job.run(&disk); // flushes and compactions, on any thread
//!     engine.finish(result)?;
//! }
//! assert!(engine.durable_seq() >= seq); // now the write may be acknowledged
//!
//! drop(engine); // the node crashes; the disk survives
//! disk.crash(CrashMode::Torn);
//! let engine = Engine::open(disk.clone(), Options::default())?;
//! assert_eq!(engine.get(data, b"key")?.as_deref(), Some(&b"value"[..]));
//! # Ok::<(), ringkv_storage::Error>(())
//! ```
#![forbid(unsafe_code)]

mod batch;
mod block;
mod bloom;
mod buggify;
mod cache;
mod codec;
mod compression;
mod engine;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod iter;
mod job;
mod manifest;
mod memtable;
mod record;
pub mod simfs;
mod table;
mod version;
pub mod vfs;

pub use batch::{Batch, BatchOp, KeyspaceId};
pub use codec::{Kind, SeqNo};
pub use compression::Compression;
pub use engine::{
    CheckpointInfo, Engine, KeyValue, Options, RecoveryReport, Scan, Snapshot, Stats, SyncJob,
    SyncResult, WalStop,
};
pub use error::{Error, Result};
pub use job::{Job, JobResult};
pub use simfs::{CrashMode, FaultConfig, SimFile, SimFs, SimStats};
pub use table::TableOptions;
pub use version::{CompactionOptions, CompactionStyle};
pub use vfs::{DirLock, StdFile, StdFs, Vfs, VfsFile};
