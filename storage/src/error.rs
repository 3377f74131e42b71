//! The engine's error type.
//!
//! Every failure the engine reports carries enough context to say what happened and where: the
//! operation and file for I/O errors, the file and offset for checksum mismatches, and the reason
//! the engine stopped accepting writes once it has been poisoned.

use std::io;

/// A result with the engine's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The filesystem reported an error.
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        /// The operation that failed (`append`, `sync`, `read_at`, ...).
        op: &'static str,
        /// The file (or directory) the operation was on.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A checksum did not match or a structure did not parse: the file is damaged.
    #[error("corruption in {path} at offset {offset}: {detail}")]
    Corruption {
        /// The damaged file.
        path: String,
        /// Where in the file the damage was found.
        offset: u64,
        /// What did not match.
        detail: String,
    },
    /// A file was written by a newer version of the engine.
    #[error("{path} has format version {found}, but this build reads only up to version {supported}: upgrade ringkv-storage")]
    UnsupportedVersion {
        /// The file.
        path: String,
        /// The version found in the file.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// The engine stopped accepting writes after an unrecoverable failure.
    #[error("the engine refuses writes since an earlier failure: {reason}")]
    Poisoned {
        /// What failed first.
        reason: String,
    },
    /// Background work is behind (frozen memtables or level-0 tables piled up): the driver must
    /// run the jobs from `poll_job` first.
    #[error("write stalled: {waiting} {what} wait for background jobs (limit {limit}); run the jobs from poll_job")]
    WriteStall {
        /// What piled up: `frozen memtables` or `level-0 tables`.
        what: &'static str,
        /// How many wait.
        waiting: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Too many WAL bytes wait behind the sync in flight: the driver must finish it first.
    #[error("write stalled: {pending} WAL bytes wait behind the sync in flight (limit {limit}); pass its result to synced")]
    SyncStall {
        /// Bytes buffered.
        pending: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A key, value or batch is over a configured limit.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// What was too large (`key`, `value`, `batch`).
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The keyspace id is not known to this engine.
    #[error("unknown keyspace {0}")]
    UnknownKeyspace(u32),
    /// Misuse of the job or sync protocol by the driver.
    #[error("protocol misuse: {0}")]
    Protocol(String),
}

impl Error {
    /// Wraps an I/O error with the operation and path it came from.
    pub fn io(op: &'static str, path: &str, source: io::Error) -> Self {
        Error::Io { op, path: path.to_string(), source }
    }

    /// A corruption error in `path` at `offset`.
    pub fn corruption(path: &str, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corruption { path: path.to_string(), offset, detail: detail.into() }
    }

    /// True if this error reports damaged data (a checksum or parse failure).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }

    /// A copy of this error for reporting twice (I/O errors keep their kind and message).
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Corruption { path, offset, detail } => {
                Error::Corruption { path: path.clone(), offset: *offset, detail: detail.clone() }
            }
            Error::UnsupportedVersion { path, found, supported } => Error::UnsupportedVersion {
                path: path.clone(),
                found: *found,
                supported: *supported,
            },
            Error::Poisoned { reason } => Error::Poisoned { reason: reason.clone() },
            Error::WriteStall { what, waiting, limit } => {
                Error::WriteStall { what, waiting: *waiting, limit: *limit }
            }
            Error::TooLarge { what, len, max } => Error::TooLarge { what, len: *len, max: *max },
            Error::SyncStall { pending, limit } => {
                Error::SyncStall { pending: *pending, limit: *limit }
            }
            Error::UnknownKeyspace(id) => Error::UnknownKeyspace(*id),
            Error::Protocol(s) => Error::Protocol(s.clone()),
        }
    }
}
