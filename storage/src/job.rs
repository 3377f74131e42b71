//! Background work as jobs: a flush writes a frozen memtable to a table; a compaction merges
//! tables into new ones; a move changes a table's level without rewriting it; a cleanup removes
//! files the manifest no longer names (every job also removes those it carries).
//!
//! A [`Job`] holds only immutable inputs (a frozen memtable, table descriptions, file numbers
//! reserved for its outputs), so a driver may run it on any thread. [`Job::run`] writes and syncs
//! the outputs and syncs the directory; it never changes the tree. The engine applies the result
//! in `Engine::finish`, which records it in the manifest and only then removes obsolete files.

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{Kind, SeqNo};
use crate::iter::{Entry, EntrySource, Merger};
use crate::manifest::{table_name, FileMeta};
use crate::memtable::Memtable;
use crate::table::{Table, TableInfo, TableOptions, TableWriter};
use crate::vfs::Vfs;
use crate::{Error, Result};

/// A unit of background work handed out by `Engine::poll_job`.
pub struct Job {
    pub(crate) id: u64,
    pub(crate) work: Work,
    pub(crate) now_wall_ms: Option<u64>,
    /// Flushed memtables the engine no longer needs: freeing a large one takes milliseconds,
    /// so they ride along and are freed wherever the driver drops the job (its worker thread).
    pub(crate) retired: Vec<Arc<Memtable>>,
    /// Files no manifest names any more: unlinking a large file takes milliseconds, so the job
    /// removes them, off the writer's path. A file left behind by a crash is removed at open.
    pub(crate) remove: Vec<String>,
}

impl std::fmt::Debug for Job {
    // By hand: a derived Debug would print a whole memtable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("work", &self.describe())
            .field("now_wall_ms", &self.now_wall_ms)
            .field("retired", &self.retired.len())
            .field("remove", &self.remove)
            .finish()
    }
}

pub(crate) enum Work {
    Flush {
        mem: Arc<Memtable>,
        number: u64,
        table: TableOptions,
        smallest_snapshot: SeqNo,
    },
    Compact {
        inputs: Vec<(usize, Arc<FileMeta>)>,
        output_level: usize,
        /// First reserved output number and how many were reserved.
        numbers: (u64, u64),
        bottommost: bool,
        split_bytes: Option<u64>,
        smallest_snapshot: SeqNo,
        table: TableOptions,
    },
    Move {
        file: Arc<FileMeta>,
        from_level: usize,
        to_level: usize,
    },
    /// Only removes obsolete files and frees retired memtables.
    Cleanup,
}

/// What a job produced, for `Engine::finish`.
#[derive(Debug)]
pub struct JobResult {
    pub(crate) id: u64,
    pub(crate) outcome: Result<Vec<(FileMeta, TableInfo)>>,
    pub(crate) bytes_read: u64,
}

impl JobResult {
    /// True if the job failed (the engine will refuse further writes once it is finished).
    pub fn is_err(&self) -> bool {
        self.outcome.is_err()
    }

    /// The job's error, if it failed: a driver tells damaged input tables
    /// ([`crate::Error::is_corruption`]) from I/O errors before passing the result to `finish`.
    pub fn error(&self) -> Option<&Error> {
        self.outcome.as_ref().err()
    }
}

impl Job {
    /// Lets a compaction drop entries whose expiry is at or before `now_wall_ms`. Without it,
    /// expired entries are kept: the engine never reads a clock.
    #[must_use]
    pub fn with_now_wall_ms(mut self, now_wall_ms: u64) -> Job {
        self.now_wall_ms = Some(now_wall_ms);
        self
    }

    /// A short description for logs: `flush`, `compact L0->L1 (5 tables)`, `move L1->L2`.
    pub fn describe(&self) -> String {
        match &self.work {
            Work::Flush { mem, .. } => format!("flush ({} entries)", mem.len()),
            Work::Compact { inputs, output_level, .. } => {
                let from = inputs.iter().map(|(l, _)| *l).min().unwrap_or(0);
                format!("compact L{from}->L{output_level} ({} tables)", inputs.len())
            }
            Work::Move { file, from_level, to_level } => {
                format!("move table {} L{from_level}->L{to_level}", file.number)
            }
            Work::Cleanup => format!("cleanup ({} files)", self.remove.len()),
        }
    }

    /// True for a flush (which unblocks writes), false for compactions, moves and cleanups.
    pub fn is_flush(&self) -> bool {
        matches!(self.work, Work::Flush { .. })
    }

    /// Does the work on `vfs`: writes and syncs output tables and syncs the directory.
    pub fn run<V: Vfs>(&self, vfs: &V) -> JobResult {
        for name in &self.remove {
            // Already gone is fine: a crash between the unlink and the engine hearing of it.
            let _ = vfs.remove(name);
        }
        let mut bytes_read = 0;
        let outcome = match &self.work {
            Work::Flush { mem, number, table, smallest_snapshot } => {
                let mut src = mem.iter_from(None);
                let mut filter = Filter::new(*smallest_snapshot, false, None);
                let mut out = Outputs::new(vfs, (*number, 1), *table, None);
                write_all(&mut src, &mut filter, &mut out).and_then(|()| out.finish())
            }
            Work::Compact {
                inputs,
                numbers,
                bottommost,
                split_bytes,
                smallest_snapshot,
                table,
                ..
            } => {
                bytes_read = inputs.iter().map(|(_, f)| f.size_bytes).sum();
                self.compact(
                    vfs,
                    inputs,
                    *numbers,
                    *bottommost,
                    *split_bytes,
                    *smallest_snapshot,
                    *table,
                )
            }
            Work::Move { .. } | Work::Cleanup => Ok(Vec::new()),
        };
        JobResult { id: self.id, outcome, bytes_read }
    }

    #[allow(clippy::too_many_arguments)]
    fn compact<V: Vfs>(
        &self,
        vfs: &V,
        inputs: &[(usize, Arc<FileMeta>)],
        numbers: (u64, u64),
        bottommost: bool,
        split_bytes: Option<u64>,
        smallest_snapshot: SeqNo,
        table: TableOptions,
    ) -> Result<Vec<(FileMeta, TableInfo)>> {
        let mut tables = Vec::with_capacity(inputs.len());
        for (_, f) in inputs {
            let name = table_name(f.number);
            let file = vfs.open(&name).map_err(|e| Error::io("open", &name, e))?;
            tables.push(Table::open(file, &name, f.number)?);
        }
        let mut sources: Vec<Box<dyn EntrySource + '_>> = Vec::with_capacity(tables.len());
        for t in &tables {
            sources.push(Box::new(t.iter(None, None)?));
        }
        let mut merger = Merger::new(sources);
        let mut filter = Filter::new(smallest_snapshot, bottommost, self.now_wall_ms);
        let mut out = Outputs::new(vfs, numbers, table, split_bytes);
        write_all(&mut merger, &mut filter, &mut out)?;
        out.finish()
    }
}

/// Something that yields entries in internal-key order.
trait Source {
    fn next_one(&mut self) -> Result<Option<Entry>>;
}

impl<T: EntrySource> Source for T {
    fn next_one(&mut self) -> Result<Option<Entry>> {
        self.next_entry()
    }
}

impl Source for Merger<'_> {
    fn next_one(&mut self) -> Result<Option<Entry>> {
        self.next_entry()
    }
}

fn write_all<V: Vfs>(
    src: &mut dyn Source,
    filter: &mut Filter,
    out: &mut Outputs<'_, V>,
) -> Result<()> {
    while let Some(e) = src.next_one()? {
        if let Some(e) = filter.keep(e) {
            out.add(&e)?;
        }
    }
    Ok(())
}

/// LevelDB's rule for what a merge may drop: a version hidden by a newer version that every
/// snapshot sees, and, where nothing older can lie below, a tombstone every snapshot sees.
/// Expired puts count as tombstones when a wall-clock time is given.
struct Filter {
    smallest_snapshot: SeqNo,
    bottommost: bool,
    now_wall_ms: Option<u64>,
    last_user: Option<Bytes>,
    last_seq_for_key: u64,
}

impl Filter {
    fn new(smallest_snapshot: SeqNo, bottommost: bool, now_wall_ms: Option<u64>) -> Self {
        Filter {
            smallest_snapshot,
            bottommost,
            now_wall_ms,
            last_user: None,
            last_seq_for_key: u64::MAX,
        }
    }

    fn keep(&mut self, mut e: Entry) -> Option<Entry> {
        if self.last_user.as_ref() != Some(&e.user) {
            self.last_user = Some(e.user.clone());
            self.last_seq_for_key = u64::MAX;
        }
        let expired =
            matches!((e.expire_at_ms, self.now_wall_ms), (Some(at), Some(now)) if at <= now);
        let dead = e.kind == Kind::Delete || expired;
        let hidden = self.last_seq_for_key <= self.smallest_snapshot;
        self.last_seq_for_key = e.seq;
        if hidden || (dead && self.bottommost && e.seq <= self.smallest_snapshot) {
            return None;
        }
        if expired {
            // Keep shadowing older versions below, but without the value.
            e.kind = Kind::Delete;
            e.expire_at_ms = None;
            e.value = Bytes::new();
        }
        Some(e)
    }
}

/// Writes output tables, cutting a new one past `split_bytes` at a user-key boundary.
struct Outputs<'a, V: Vfs> {
    vfs: &'a V,
    next: u64,
    end: u64,
    table: TableOptions,
    split_bytes: Option<u64>,
    cur: Option<(u64, TableWriter<V::File>)>,
    last_user: Option<Bytes>,
    done: Vec<(FileMeta, TableInfo)>,
}

impl<'a, V: Vfs> Outputs<'a, V> {
    fn new(vfs: &'a V, numbers: (u64, u64), table: TableOptions, split_bytes: Option<u64>) -> Self {
        Outputs {
            vfs,
            next: numbers.0,
            end: numbers.0 + numbers.1,
            table,
            split_bytes,
            cur: None,
            last_user: None,
            done: Vec::new(),
        }
    }

    fn add(&mut self, e: &Entry) -> Result<()> {
        let new_key = self.last_user.as_ref() != Some(&e.user);
        if new_key {
            let full = match (&self.cur, self.split_bytes) {
                (Some((_, w)), Some(max)) => w.size_estimate() >= max,
                _ => false,
            };
            if full {
                self.close()?;
            }
            self.last_user = Some(e.user.clone());
        }
        if self.cur.is_none() {
            if self.next >= self.end {
                return Err(Error::Protocol("compaction ran out of reserved file numbers".into()));
            }
            let name = table_name(self.next);
            let file = self.vfs.create(&name).map_err(|err| Error::io("create", &name, err))?;
            self.cur = Some((self.next, TableWriter::new(file, &name, self.table)));
            self.next += 1;
        }
        if let Some((_, w)) = self.cur.as_mut() {
            w.add(e)?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((number, w)) = self.cur.take() {
            let info = w.finish()?;
            let meta = FileMeta {
                number,
                size_bytes: info.size_bytes,
                smallest: info.smallest.clone(),
                largest: info.largest.clone(),
                entries: info.entries,
                min_seq: info.min_seq,
                max_seq: info.max_seq,
            };
            self.done.push((meta, info));
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<(FileMeta, TableInfo)>> {
        self.close()?;
        if !self.done.is_empty() {
            // New tables must be in the durable directory before the manifest names them.
            self.vfs.sync_dir().map_err(|e| Error::io("sync_dir", "/", e))?;
        }
        Ok(self.done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(k: &str, seq: SeqNo, kind: Kind, expire: Option<u64>) -> Entry {
        Entry {
            user: Bytes::copy_from_slice(k.as_bytes()),
            seq,
            kind,
            expire_at_ms: expire,
            value: Bytes::from_static(b"v"),
        }
    }

    fn kept(f: &mut Filter, entries: Vec<Entry>) -> Vec<(String, SeqNo, Kind)> {
        entries
            .into_iter()
            .filter_map(|x| f.keep(x))
            .map(|x| (String::from_utf8(x.user.to_vec()).unwrap(), x.seq, x.kind))
            .collect()
    }

    #[test]
    fn filter_drops_shadowed_versions_but_keeps_what_a_snapshot_sees() {
        let mut f = Filter::new(5, false, None);
        let got = kept(
            &mut f,
            vec![
                e("a", 9, Kind::Put, None),
                e("a", 7, Kind::Put, None),
                e("a", 4, Kind::Put, None),
                e("a", 2, Kind::Put, None),
            ],
        );
        // 9 and 7 are newer than the snapshot; 4 is what snapshot 5 sees; 2 is hidden by 4.
        assert_eq!(got.iter().map(|x| x.1).collect::<Vec<_>>(), vec![9, 7, 4]);
    }

    #[test]
    fn tombstones_drop_only_at_the_bottom() {
        let entries = || vec![e("a", 3, Kind::Delete, None), e("a", 1, Kind::Put, None)];
        let mut f = Filter::new(10, false, None);
        assert_eq!(kept(&mut f, entries()), vec![("a".to_string(), 3, Kind::Delete)]);
        let mut f = Filter::new(10, true, None);
        assert!(kept(&mut f, entries()).is_empty());
    }

    #[test]
    fn expired_entries_become_tombstones_or_vanish_at_the_bottom() {
        let entries = || vec![e("a", 3, Kind::Put, Some(100)), e("a", 1, Kind::Put, None)];
        let mut f = Filter::new(10, false, Some(100));
        assert_eq!(kept(&mut f, entries()), vec![("a".to_string(), 3, Kind::Delete)]);
        let mut f = Filter::new(10, true, Some(100));
        assert!(kept(&mut f, entries()).is_empty());
        let mut f = Filter::new(10, true, Some(99));
        assert_eq!(kept(&mut f, entries()), vec![("a".to_string(), 3, Kind::Put)]);
    }
}
