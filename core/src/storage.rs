//! The storage a node writes through, as the core sees it.
//!
//! The node never waits on storage. A write returns its sequence number at once; it becomes
//! durable when a sync has run (group commit: one sync covers everything written so far) and the
//! driver tells the node with `Input::StorageSynced`. The node acknowledges a replica write only
//! once [`Storage::durable_seq`] covers it.
//!
//! Syncs, flushes and compactions are [`StorageWork`]: the driver takes them with
//! [`Storage::poll_work`], runs them where it likes (the tokio driver on its blocking pool, so
//! the node keeps serving while the disk works; the simulator inline, as a scheduled event) and
//! hands the result back with [`Storage::finish_work`]. [`Storage::sync`] does all of it inline.
//!
//! [`MemStorage`] keeps everything in memory and models durability exactly: a simulated crash
//! ([`MemStorage::crash`]) keeps what was synced and drops the rest. The LSM engine of
//! `ringkv-storage` implements the same trait for real and simulated disks.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::error::StorageError;
use crate::ring::{Ring, Token};

/// The keyspaces a node keeps apart in its storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// Client data: [`data_key`] (the key's ring token, then the key) to encoded
    /// [`crate::version::Versioned`]. Data is kept in token order so that a token range (a
    /// client SCAN page, an anti-entropy group, a stream) is read by seeking to its start
    /// instead of filtering every key the node holds.
    Data,
    /// Hints held for unreachable replicas.
    Hints,
    /// The node's own metadata (epoch, shutdown marker).
    Meta,
}

impl Space {
    /// Every space, in a fixed order.
    pub const ALL: [Space; 3] = [Space::Data, Space::Hints, Space::Meta];
}

/// Meta key holding the node's epoch (the actor counter prefix of its dots).
pub const META_EPOCH_KEY: &[u8] = b"epoch";

/// Meta key holding the highest dot counter issued under the current epoch, written at a clean
/// shutdown (which keeps the epoch) so that the next start goes on above it.
pub const META_DOTS_ISSUED_KEY: &[u8] = b"dots-issued";

/// Meta key present while the node is stopped after a clean shutdown; a start removes it.
pub const META_CLEAN_KEY: &[u8] = b"clean-shutdown";

/// Meta key that a rebuilt store carries (its value says why the old data was set aside) until
/// anti-entropy has refilled it: while it is present the node answers no reads, so a blank
/// replica never breaks the overlap of read and write quorums.
pub const META_REBUILDING_KEY: &[u8] = b"rebuilding";

/// Meta key recording how [`Space::Data`] keys are laid out; its value is
/// [`DATA_LAYOUT_TOKEN_ORDERED`] once every key is stored under its [`data_key`].
pub const META_DATA_LAYOUT_KEY: &[u8] = b"data-layout";

/// The value of [`META_DATA_LAYOUT_KEY`] for token-ordered data keys.
pub const DATA_LAYOUT_TOKEN_ORDERED: &[u8] = b"token-ordered";

/// Bytes of the token in front of every stored data key.
pub const DATA_KEY_TOKEN_BYTES: usize = 8;

/// The key a client key is stored under in [`Space::Data`]: its ring token, big-endian so that
/// byte order is token order, then the key itself.
pub fn data_key(key: &[u8]) -> Bytes {
    let mut stored = Vec::with_capacity(DATA_KEY_TOKEN_BYTES + key.len());
    stored.extend_from_slice(&Ring::key_token(key).to_be_bytes());
    stored.extend_from_slice(key);
    Bytes::from(stored)
}

/// The token and client key of a stored data key; `None` if it is not one (too short, or the
/// token is not the key's).
pub fn split_data_key(stored: &[u8]) -> Option<(Token, &[u8])> {
    if stored.len() <= DATA_KEY_TOKEN_BYTES {
        return None;
    }
    let (token, key) = stored.split_at(DATA_KEY_TOKEN_BYTES);
    let token = Token::from_be_bytes(token.try_into().ok()?);
    (Ring::key_token(key) == token).then_some((token, key))
}

/// The token in front of a stored data key, unchecked; `None` if the key is too short.
pub fn data_key_token(stored: &[u8]) -> Option<Token> {
    if stored.len() <= DATA_KEY_TOKEN_BYTES {
        return None;
    }
    Some(Token::from_be_bytes(stored[..DATA_KEY_TOKEN_BYTES].try_into().ok()?))
}

/// The `after` position for [`Storage::scan`] of [`Space::Data`] that starts at the first key
/// with a token of at least `token`: stored keys are longer than their token, and client keys
/// are never empty, so the bare token sorts before every key that carries it.
pub fn data_scan_after(token: Token) -> Option<Bytes> {
    (token > 0).then(|| Bytes::copy_from_slice(&token.to_be_bytes()))
}

/// Position of a write in the storage's write order; higher is later.
pub type WriteSeq = u64;

/// Most pieces of work [`Storage::sync`] runs before giving up; a guard against a storage that
/// never quiesces.
const WORK_ROUNDS_MAX: usize = 10_000;

/// A sync, flush or compaction that needs no access to the storage while it runs.
pub trait StorageWork {
    /// What the work produced, for [`Storage::finish_work`].
    type Done;

    /// Does the I/O.
    fn run(self) -> Self::Done;
}

/// What a node needs from its storage.
pub trait Storage {
    /// The storage's unit of background work.
    type Work: StorageWork;

    /// Reads a key, seeing every write made so far, synced or not.
    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StorageError>;

    /// Writes (`Some`) or removes (`None`) a key. Returns the write's sequence number.
    fn write(
        &mut self,
        space: Space,
        key: Bytes,
        value: Option<Bytes>,
    ) -> Result<WriteSeq, StorageError>;

    /// Up to `limit` entries of a space in key order, starting after `after` (from the first key
    /// when `None`).
    fn scan(
        &mut self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError>;

    /// The highest sequence number known durable.
    fn durable_seq(&self) -> WriteSeq;

    /// The next piece of work due: a sync of everything written so far (one at a time), or a
    /// flush or compaction. Called by drivers, never by the node.
    fn poll_work(&mut self) -> Option<Self::Work>;

    /// Applies finished work and returns the durable sequence number. A failed sync is fatal:
    /// the storage refuses writes from then on.
    fn finish_work(
        &mut self,
        done: <Self::Work as StorageWork>::Done,
    ) -> Result<WriteSeq, StorageError>;

    /// Whether [`Storage::finish_work`] on `done` itself blocks on the disk (installing a flush
    /// or compaction syncs the manifest), so that a driver on a thread pool can move its other
    /// work off the thread first. None does by default.
    fn finish_blocks(&self, _done: &<Self::Work as StorageWork>::Done) -> bool {
        false
    }

    /// Counters for operators (flushes, compactions, bytes written), by name; none by default.
    fn stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Runs every piece of work due, inline, and returns the durable sequence number.
    fn sync(&mut self) -> Result<WriteSeq, StorageError> {
        for _ in 0..WORK_ROUNDS_MAX {
            let Some(work) = self.poll_work() else { break };
            let done = work.run();
            self.finish_work(done)?;
        }
        Ok(self.durable_seq())
    }
}

/// [`MemStorage`]'s work: a sync up to a sequence number (nothing to do but bookkeeping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemSync {
    upto: WriteSeq,
    fails: bool,
}

impl StorageWork for MemSync {
    type Done = MemSync;

    fn run(self) -> MemSync {
        self
    }
}

/// In-memory storage with exact durability bookkeeping, for tests and early simulation.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    // One map per space, keyed by the key bytes, so a lookup borrows the caller's key instead
    // of copying it.
    durable: BTreeMap<Space, BTreeMap<Bytes, Bytes>>,
    live: BTreeMap<Space, BTreeMap<Bytes, Bytes>>,
    unsynced: Vec<(WriteSeq, Space, Bytes, Option<Bytes>)>,
    next_seq: WriteSeq,
    durable_seq: WriteSeq,
    fail_syncs: bool,
    failed: Option<String>,
    sync_in_flight: bool,
}

impl MemStorage {
    /// Empty storage.
    pub fn new() -> Self {
        MemStorage { next_seq: 1, ..MemStorage::default() }
    }

    /// Loses every unsynced write, as a power cut would, and keeps what was synced.
    pub fn crash(&mut self) {
        if crate::planted!(CrashLosesSyncedData) {
            self.durable.remove(&Space::Data);
        }
        self.live = self.durable.clone();
        self.unsynced.clear();
        self.next_seq = self.durable_seq + 1;
        self.failed = None;
        self.sync_in_flight = false;
    }

    /// Makes every later sync fail, as a dying disk would. A failed sync is fatal: the storage
    /// refuses writes until it is reopened after a crash.
    pub fn fail_syncs(&mut self, fail: bool) {
        self.fail_syncs = fail;
    }

    /// Number of keys in a space.
    pub fn len(&self, space: Space) -> usize {
        self.live.get(&space).map_or(0, BTreeMap::len)
    }

    /// Whether a space holds no keys.
    pub fn is_empty(&self, space: Space) -> bool {
        self.len(space) == 0
    }
}

impl Storage for MemStorage {
    type Work = MemSync;

    fn get(&mut self, space: Space, key: &[u8]) -> Result<Option<Bytes>, StorageError> {
        Ok(self.live.get(&space).and_then(|keys| keys.get(key)).cloned())
    }

    fn write(
        &mut self,
        space: Space,
        key: Bytes,
        value: Option<Bytes>,
    ) -> Result<WriteSeq, StorageError> {
        if let Some(reason) = &self.failed {
            return Err(StorageError(format!(
                "storage refuses writes after a failed sync: {reason}"
            )));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let keys = self.live.entry(space).or_default();
        match &value {
            Some(bytes) => keys.insert(key.clone(), bytes.clone()),
            None => keys.remove(&key),
        };
        self.unsynced.push((seq, space, key, value));
        Ok(seq)
    }

    fn scan(
        &mut self,
        space: Space,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, StorageError> {
        use std::ops::Bound;
        let Some(keys) = self.live.get(&space) else { return Ok(Vec::new()) };
        let start: Bound<&[u8]> = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(keys
            .range::<[u8], _>((start, Bound::Unbounded))
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn durable_seq(&self) -> WriteSeq {
        self.durable_seq
    }

    fn poll_work(&mut self) -> Option<MemSync> {
        if self.failed.is_some() || self.sync_in_flight {
            return None;
        }
        let upto = self.unsynced.last()?.0;
        self.sync_in_flight = true;
        Some(MemSync { upto, fails: self.fail_syncs })
    }

    fn finish_work(&mut self, done: MemSync) -> Result<WriteSeq, StorageError> {
        self.sync_in_flight = false;
        if let Some(reason) = &self.failed {
            return Err(StorageError(reason.clone()));
        }
        if done.fails {
            let reason = "fsync failed: I/O error".to_string();
            self.failed = Some(reason.clone());
            return Err(StorageError(reason));
        }
        let synced = self.unsynced.iter().take_while(|(seq, ..)| *seq <= done.upto).count();
        for (seq, space, key, value) in self.unsynced.drain(..synced) {
            let keys = self.durable.entry(space).or_default();
            match value {
                Some(bytes) => keys.insert(key, bytes),
                None => keys.remove(&key),
            };
            self.durable_seq = seq;
        }
        Ok(self.durable_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_synced_writes_and_drops_unsynced_ones() {
        let mut storage = MemStorage::new();
        storage
            .write(Space::Data, Bytes::from_static(b"a"), Some(Bytes::from_static(b"1")))
            .unwrap();
        assert_eq!(storage.sync().unwrap(), 1);
        storage
            .write(Space::Data, Bytes::from_static(b"b"), Some(Bytes::from_static(b"2")))
            .unwrap();
        storage.write(Space::Data, Bytes::from_static(b"a"), None).unwrap();
        assert_eq!(storage.durable_seq(), 1);
        storage.crash();
        assert_eq!(storage.get(Space::Data, b"a").unwrap(), Some(Bytes::from_static(b"1")));
        assert_eq!(storage.get(Space::Data, b"b").unwrap(), None);
        assert_eq!(storage.write(Space::Meta, Bytes::from_static(b"m"), None).unwrap(), 2);
    }

    #[test]
    fn a_sync_covers_only_what_was_written_before_it_was_handed_out() {
        let mut storage = MemStorage::new();
        storage.write(Space::Data, Bytes::from_static(b"a"), Some(Bytes::new())).unwrap();
        let work = storage.poll_work().unwrap();
        assert!(storage.poll_work().is_none(), "one sync at a time");
        storage.write(Space::Data, Bytes::from_static(b"b"), Some(Bytes::new())).unwrap();
        assert_eq!(storage.finish_work(work.run()).unwrap(), 1);
        storage.crash();
        assert!(storage.get(Space::Data, b"a").unwrap().is_some());
        assert!(storage.get(Space::Data, b"b").unwrap().is_none());
    }

    #[test]
    fn a_failed_sync_stops_writes() {
        let mut storage = MemStorage::new();
        storage.fail_syncs(true);
        storage.write(Space::Data, Bytes::from_static(b"a"), Some(Bytes::new())).unwrap();
        assert!(storage.sync().is_err());
        assert!(storage.write(Space::Data, Bytes::from_static(b"b"), Some(Bytes::new())).is_err());
        assert_eq!(storage.durable_seq(), 0);
    }

    #[test]
    fn scan_stays_inside_its_space_and_resumes_after_a_key() {
        let mut storage = MemStorage::new();
        for key in [&b"a"[..], b"b", b"c"] {
            storage.write(Space::Data, Bytes::copy_from_slice(key), Some(Bytes::new())).unwrap();
        }
        storage.write(Space::Hints, Bytes::from_static(b"a"), Some(Bytes::new())).unwrap();
        let first = storage.scan(Space::Data, None, 2).unwrap();
        assert_eq!(first.iter().map(|(key, _)| key.as_ref()).collect::<Vec<_>>(), vec![b"a", b"b"]);
        let rest = storage.scan(Space::Data, Some(b"b"), 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(storage.scan(Space::Hints, None, 10).unwrap().len(), 1);
    }
}
