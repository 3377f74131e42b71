//! Checkpoints: a point-in-time, crash-consistent copy of the database in another directory.
//!
//! A checkpoint holds every live table (hard links where the filesystem has them: tables are
//! immutable), a copy of every WAL segment the live manifest still needs (the memtables'
//! contents, with every write made so far, synced or not), and a fresh manifest that names
//! exactly those tables, made current. [`Engine::open`] on the checkpoint's directory recovers
//! the engine's state as of the call: the tables, then the WAL replayed over them.
//!
//! Why WAL copies rather than flushing the memtable first: a flush is a background job whose
//! timing belongs to the driver; a checkpoint that waited for one would stall writes and need
//! the driver's cooperation, while the WAL already holds the memtable byte for byte (at most a
//! memtable's worth of bytes, a few MiB, is copied). Opening the checkpoint replays it into a
//! memtable, so the restored engine's first flush writes it as a table.

use std::io;

use super::Engine;
use crate::error::{Error, Result};
use crate::manifest::{self, table_name, wal_name};
use crate::vfs::{Vfs, VfsFile};
use crate::SeqNo;

/// What a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Every write up to this sequence number is in the checkpoint; none after it.
    pub last_seq: SeqNo,
    /// Tables linked (or copied).
    pub tables: usize,
    /// Bytes of those tables.
    pub table_bytes: u64,
    /// WAL segments copied.
    pub wal_segments: usize,
    /// Bytes of those WAL copies.
    pub wal_bytes: u64,
    /// Every file of the checkpoint with its length in bytes, sorted by name.
    pub files: Vec<(String, u64)>,
}

impl<V: Vfs> Engine<V> {
    /// Writes a checkpoint of the database as it is now into `dest`, which must be empty (a
    /// fresh directory). Safe while a sync job is in flight (its bytes are copied from the job)
    /// and while flushes and compactions run (the manifest names only installed tables, and a
    /// compaction that later removes one of them removes this directory's name, not the link).
    /// Everything written to `dest` is synced before this returns.
    pub fn checkpoint(&self, dest: &V) -> Result<CheckpointInfo> {
        self.check_writable()?;
        let existing = dest.list().map_err(|e| Error::io("list", "checkpoint /", e))?;
        if !existing.is_empty() {
            return Err(Error::Protocol(format!(
                "a checkpoint needs an empty directory; it holds {} files (first {:?})",
                existing.len(),
                existing[0]
            )));
        }
        let mut info = CheckpointInfo {
            last_seq: self.last_seq,
            tables: 0,
            table_bytes: 0,
            wal_segments: 0,
            wal_bytes: 0,
            files: Vec::new(),
        };
        for files in &self.state.levels {
            for meta in files.values() {
                let name = table_name(meta.number);
                self.vfs.link_into(&name, dest).map_err(|e| Error::io("link", &name, e))?;
                info.tables += 1;
                info.table_bytes += meta.size_bytes;
                info.files.push((name, meta.size_bytes));
            }
        }
        for number in self.wal_files.range(self.state.log_number..) {
            let name = wal_name(*number);
            let bytes = self.wal_bytes(&name).map_err(|e| Error::io("read_at", &name, e))?;
            let mut copy = dest.create(&name).map_err(|e| Error::io("create", &name, e))?;
            copy.append(&bytes).map_err(|e| Error::io("append", &name, e))?;
            copy.sync().map_err(|e| Error::io("sync", &name, e))?;
            info.wal_segments += 1;
            info.wal_bytes += bytes.len() as u64;
            info.files.push((name, bytes.len() as u64));
        }
        // A manifest numbered past every file the checkpoint holds; the engine's own numbering
        // is untouched (the checkpoint is another directory).
        let mut state = self.state.clone();
        let number = state.next_file;
        state.next_file += 1;
        let log = manifest::install_new(dest, number, &state)?;
        info.files.push((manifest::manifest_name(number), log.size_bytes));
        let current = dest
            .open(manifest::CURRENT)
            .and_then(|file| file.len())
            .map_err(|e| Error::io("open", manifest::CURRENT, e))?;
        info.files.push((manifest::CURRENT.to_string(), current));
        info.files.sort();
        Ok(info)
    }

    /// The bytes of WAL segment `name` as the engine has written it so far: the file for a
    /// finished segment; for the live one, the bytes handed to the file, then an in-flight sync
    /// job's bytes (read from the job, which may not have appended them yet), then the buffer.
    fn wal_bytes(&self, name: &str) -> io::Result<Vec<u8>> {
        let file = self.vfs.open(name)?;
        if name != self.wal.name {
            return crate::vfs::read_all(&file);
        }
        let (appended, in_flight) = match &self.sync_in_flight_data {
            Some((offset, data)) => (*offset, Some(data)),
            None => (self.wal.appended_bytes, None),
        };
        let len = usize::try_from(appended)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "WAL too large"))?;
        let mut bytes = vec![0u8; len];
        file.read_at(0, &mut bytes)?;
        if let Some(data) = in_flight {
            bytes.extend_from_slice(data);
        }
        bytes.extend_from_slice(&self.wal.buf);
        Ok(bytes)
    }
}
