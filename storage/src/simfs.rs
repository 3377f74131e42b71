//! `SimFs`: an in-memory [`Vfs`] that remembers what is durable and injects faults, from a seed.
//!
//! It owns one directory and its files. Per file it keeps the bytes and how many of them were
//! synced (files are append-only, so the synced part is a prefix). For the directory it keeps the
//! live entries and the entries as of the last `sync_dir`. A [`SimFs::crash`] keeps the durable
//! directory and, per file, the synced prefix plus (in torn mode) a seeded random part of the
//! unsynced tail with some sectors zeroed; everything surviving a crash counts as synced.
//!
//! Faults: per-operation error probabilities, "fail the next N syncs", a power cut after N more
//! operations (every later operation fails until `crash`), and bit flips at rest.
//!
//! Invariants: `synced_len <= data.len()` for every file; inodes are only freed by `crash`, so a
//! handle to a removed file still reads (as on Unix). Clones share one disk: a simulator keeps a
//! clone across a node's restart while the engine that used it is dropped.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::vfs::{Vfs, VfsFile};

/// The granularity at which a torn crash keeps or zeroes unsynced data.
const SECTOR_BYTES: usize = 512;

/// What a crash does to data that was written but not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced byte is lost.
    DropUnsynced,
    /// A seeded random prefix of the unsynced bytes survives, with some sectors in it zeroed.
    Torn,
}

/// Probabilities of injected I/O errors, in parts per million per operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// `read_at` fails.
    pub read_error_ppm: u32,
    /// `append` fails (nothing is written).
    pub append_error_ppm: u32,
    /// `sync` fails (the data stays unsynced).
    pub sync_error_ppm: u32,
    /// `create`, `rename`, `remove` or `sync_dir` fails.
    pub metadata_error_ppm: u32,
}

/// Counters of what the filesystem was asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Operations attempted (all kinds).
    pub ops: u64,
    /// Errors injected.
    pub errors_injected: u64,
    /// Bytes appended.
    pub bytes_appended: u64,
    /// File syncs completed.
    pub syncs: u64,
    /// Crashes simulated.
    pub crashes: u64,
}

/// An in-memory filesystem with seeded crashes and faults; clones share the same disk.
#[derive(Debug, Clone)]
pub struct SimFs {
    state: Rc<RefCell<SimState>>,
}

/// A file opened on a [`SimFs`].
#[derive(Debug)]
pub struct SimFile {
    state: Rc<RefCell<SimState>>,
    inode: u64,
    name: String,
}

#[derive(Debug)]
struct SimState {
    rng: ChaCha8Rng,
    dir: BTreeMap<String, u64>,
    durable_dir: BTreeMap<String, u64>,
    inodes: BTreeMap<u64, Inode>,
    inode_next: u64,
    faults: FaultConfig,
    syncs_to_fail: u32,
    ops_until_power_cut: Option<u64>,
    power_cut: bool,
    stats: SimStats,
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced_len: usize,
}

#[derive(Debug, Clone, Copy)]
enum OpKind {
    Read,
    Append,
    Sync,
    Metadata,
    List,
}

impl SimFs {
    /// An empty filesystem whose faults and crashes are drawn from `seed`.
    pub fn new(seed: u64) -> SimFs {
        SimFs {
            state: Rc::new(RefCell::new(SimState {
                rng: ChaCha8Rng::seed_from_u64(seed),
                dir: BTreeMap::new(),
                durable_dir: BTreeMap::new(),
                inodes: BTreeMap::new(),
                inode_next: 1,
                faults: FaultConfig::default(),
                syncs_to_fail: 0,
                ops_until_power_cut: None,
                power_cut: false,
                stats: SimStats::default(),
            })),
        }
    }

    /// Sets the per-operation error probabilities.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.state.borrow_mut().faults = faults;
    }

    /// Makes the next `count` file syncs fail with an I/O error.
    pub fn fail_next_syncs(&self, count: u32) {
        self.state.borrow_mut().syncs_to_fail = count;
    }

    /// Cuts the power after `ops` more operations: from then on every operation fails until
    /// [`SimFs::crash`]. `None` cancels a pending cut.
    pub fn power_cut_after(&self, ops: Option<u64>) {
        self.state.borrow_mut().ops_until_power_cut = ops;
    }

    /// True once a scheduled power cut has happened (and no crash has been simulated since).
    pub fn is_power_cut(&self) -> bool {
        self.state.borrow().power_cut
    }

    /// Simulates a crash and restart of the machine: unsynced data and undurable directory
    /// changes are lost as `mode` says; faults stay configured, a pending power cut is cleared.
    pub fn crash(&self, mode: CrashMode) {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        st.stats.crashes += 1;
        st.power_cut = false;
        st.ops_until_power_cut = None;
        st.dir = st.durable_dir.clone();
        let live: std::collections::BTreeSet<u64> = st.dir.values().copied().collect();
        st.inodes.retain(|id, _| live.contains(id));
        for inode in st.inodes.values_mut() {
            match mode {
                CrashMode::DropUnsynced => inode.data.truncate(inode.synced_len),
                CrashMode::Torn => tear(&mut st.rng, inode),
            }
            inode.synced_len = inode.data.len();
        }
    }

    /// Flips one bit of the byte at `offset` of file `name`, at rest.
    pub fn corrupt(&self, name: &str, offset: u64) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        let id = *st.dir.get(name).ok_or_else(|| not_found(name))?;
        let bit = st.rng.random_range(0..8u32);
        let inode = st.inodes.get_mut(&id).ok_or_else(|| not_found(name))?;
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let byte = inode.data.get_mut(offset).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "corrupt offset past the end")
        })?;
        *byte ^= 1 << bit;
        Ok(())
    }

    /// Flips one bit at a seeded random offset of file `name`; returns the offset.
    pub fn corrupt_random(&self, name: &str) -> io::Result<u64> {
        let len = {
            let st = self.state.borrow();
            let id = *st.dir.get(name).ok_or_else(|| not_found(name))?;
            st.inodes.get(&id).map_or(0, |i| i.data.len())
        };
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty file"));
        }
        let offset = self.state.borrow_mut().rng.random_range(0..len) as u64;
        self.corrupt(name, offset)?;
        Ok(offset)
    }

    /// The length of `name` and how much of it is synced, for tests and oracles.
    pub fn file_state(&self, name: &str) -> Option<(u64, u64)> {
        let st = self.state.borrow();
        let inode = st.inodes.get(st.dir.get(name)?)?;
        Some((inode.data.len() as u64, inode.synced_len as u64))
    }

    /// Counters of operations so far.
    pub fn stats(&self) -> SimStats {
        self.state.borrow().stats
    }

    /// Total bytes held by files in the live directory.
    pub fn bytes_on_disk(&self) -> u64 {
        let st = self.state.borrow();
        st.dir.values().filter_map(|id| st.inodes.get(id)).map(|i| i.data.len() as u64).sum()
    }
}

impl Vfs for SimFs {
    type File = SimFile;

    fn create(&self, name: &str) -> io::Result<SimFile> {
        let mut st = self.state.borrow_mut();
        st.begin(OpKind::Metadata, "create", name)?;
        if st.dir.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{name} exists")));
        }
        let id = st.inode_next;
        st.inode_next += 1;
        st.inodes.insert(id, Inode::default());
        st.dir.insert(name.to_string(), id);
        Ok(SimFile { state: self.state.clone(), inode: id, name: name.to_string() })
    }

    fn open(&self, name: &str) -> io::Result<SimFile> {
        let mut st = self.state.borrow_mut();
        st.begin(OpKind::Metadata, "open", name)?;
        let id = *st.dir.get(name).ok_or_else(|| not_found(name))?;
        Ok(SimFile { state: self.state.clone(), inode: id, name: name.to_string() })
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        st.begin(OpKind::Metadata, "rename", from)?;
        let id = st.dir.remove(from).ok_or_else(|| not_found(from))?;
        st.dir.insert(to.to_string(), id);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        st.begin(OpKind::Metadata, "remove", name)?;
        st.dir.remove(name).ok_or_else(|| not_found(name))?;
        Ok(())
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut st = self.state.borrow_mut();
        st.begin(OpKind::List, "list", "/")?;
        Ok(st.dir.keys().cloned().collect())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        st.begin(OpKind::Metadata, "sync_dir", "/")?;
        st.durable_dir = st.dir.clone();
        Ok(())
    }
}

impl VfsFile for SimFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        st.begin(OpKind::Read, "read_at", &self.name)?;
        let inode = st.inodes.get(&self.inode).ok_or_else(|| stale(&self.name))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(buf.len());
        if end > inode.data.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read past the end of {}", self.name),
            ));
        }
        buf.copy_from_slice(&inode.data[start..end]);
        Ok(())
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        st.begin(OpKind::Append, "append", &self.name)?;
        st.stats.bytes_appended += data.len() as u64;
        let inode = st.inodes.get_mut(&self.inode).ok_or_else(|| stale(&self.name))?;
        inode.data.extend_from_slice(data);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut st = self.state.borrow_mut();
        st.begin(OpKind::Sync, "sync", &self.name)?;
        if st.syncs_to_fail > 0 {
            st.syncs_to_fail -= 1;
            st.stats.errors_injected += 1;
            return Err(injected("sync", &self.name));
        }
        st.stats.syncs += 1;
        let inode = st.inodes.get_mut(&self.inode).ok_or_else(|| stale(&self.name))?;
        inode.synced_len = inode.data.len();
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let st = self.state.borrow();
        let inode = st.inodes.get(&self.inode).ok_or_else(|| stale(&self.name))?;
        Ok(inode.data.len() as u64)
    }
}

impl SimState {
    /// Counts an operation and decides whether it fails (power cut or injected error).
    fn begin(&mut self, kind: OpKind, op: &str, name: &str) -> io::Result<()> {
        self.stats.ops += 1;
        if let Some(left) = self.ops_until_power_cut {
            if left == 0 {
                self.power_cut = true;
            } else {
                self.ops_until_power_cut = Some(left - 1);
            }
        }
        if self.power_cut {
            return Err(io::Error::other(format!("power cut: {op} {name}")));
        }
        let ppm = match kind {
            OpKind::Read => self.faults.read_error_ppm,
            OpKind::Append => self.faults.append_error_ppm,
            OpKind::Sync => self.faults.sync_error_ppm,
            OpKind::Metadata => self.faults.metadata_error_ppm,
            OpKind::List => 0,
        };
        if ppm > 0 && self.rng.random_range(0..1_000_000u32) < ppm {
            self.stats.errors_injected += 1;
            return Err(injected(op, name));
        }
        Ok(())
    }
}

/// Keeps a random sector-aligned prefix of the unsynced tail and zeroes some sectors in it.
fn tear(rng: &mut ChaCha8Rng, inode: &mut Inode) {
    let unsynced = inode.data.len() - inode.synced_len;
    if unsynced == 0 {
        return;
    }
    let sectors = unsynced.div_ceil(SECTOR_BYTES);
    let kept_sectors = rng.random_range(0..=sectors);
    let kept_len = (kept_sectors * SECTOR_BYTES).min(unsynced);
    inode.data.truncate(inode.synced_len + kept_len);
    for sector in 0..kept_sectors {
        if rng.random_range(0..4u32) == 0 {
            let start = inode.synced_len + sector * SECTOR_BYTES;
            let end = (start + SECTOR_BYTES).min(inode.data.len());
            inode.data[start..end].fill(0);
        }
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name} not found"))
}

fn stale(name: &str) -> io::Error {
    io::Error::other(format!("stale handle: {name} was lost in a crash"))
}

fn injected(op: &str, name: &str) -> io::Error {
    io::Error::other(format!("injected EIO: {op} {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_drops_unsynced_bytes_and_undurable_files() {
        let fs = SimFs::new(1);
        let mut a = fs.create("a").unwrap();
        a.append(b"durable").unwrap();
        a.sync().unwrap();
        fs.sync_dir().unwrap();
        a.append(b" lost").unwrap();
        let mut b = fs.create("b").unwrap();
        b.append(b"never in a synced dir").unwrap();
        b.sync().unwrap();
        fs.crash(CrashMode::DropUnsynced);
        assert_eq!(fs.list().unwrap(), vec!["a".to_string()]);
        let a = fs.open("a").unwrap();
        assert_eq!(crate::vfs::read_all(&a).unwrap(), b"durable");
    }

    #[test]
    fn crash_forgets_renames_and_removes_since_the_last_dir_sync() {
        let fs = SimFs::new(2);
        fs.create("x").unwrap();
        fs.sync_dir().unwrap();
        fs.rename("x", "y").unwrap();
        fs.crash(CrashMode::DropUnsynced);
        assert_eq!(fs.list().unwrap(), vec!["x".to_string()]);
        fs.remove("x").unwrap();
        fs.crash(CrashMode::DropUnsynced);
        assert_eq!(fs.list().unwrap(), vec!["x".to_string()]);
    }

    #[test]
    fn torn_crash_keeps_synced_prefix_and_at_most_the_written_tail() {
        for seed in 0..50 {
            let fs = SimFs::new(seed);
            let mut f = fs.create("f").unwrap();
            fs.sync_dir().unwrap();
            f.append(&[7u8; 1000]).unwrap();
            f.sync().unwrap();
            f.append(&[9u8; 5000]).unwrap();
            fs.crash(CrashMode::Torn);
            let data = crate::vfs::read_all(&fs.open("f").unwrap()).unwrap();
            assert!(data.len() >= 1000 && data.len() <= 6000);
            assert!(data[..1000].iter().all(|&b| b == 7));
            assert!(data[1000..].iter().all(|&b| b == 9 || b == 0));
            assert_eq!(fs.file_state("f"), Some((data.len() as u64, data.len() as u64)));
        }
    }

    #[test]
    fn injected_faults_fail_operations() {
        let fs = SimFs::new(3);
        let mut f = fs.create("f").unwrap();
        fs.fail_next_syncs(1);
        assert!(f.sync().is_err());
        assert!(f.sync().is_ok());
        fs.set_faults(FaultConfig { append_error_ppm: 1_000_000, ..FaultConfig::default() });
        assert!(f.append(b"x").is_err());
        assert_eq!(f.len().unwrap(), 0, "a failed append writes nothing");
        assert_eq!(fs.stats().errors_injected, 2);
    }

    #[test]
    fn power_cut_fails_everything_until_crash() {
        let fs = SimFs::new(4);
        let mut f = fs.create("f").unwrap();
        fs.power_cut_after(Some(1));
        f.append(b"a").unwrap();
        assert!(f.append(b"b").is_err());
        assert!(fs.sync_dir().is_err());
        assert!(fs.is_power_cut());
        fs.crash(CrashMode::DropUnsynced);
        assert!(!fs.is_power_cut());
        assert!(fs.list().unwrap().is_empty(), "f was never in a synced directory");
    }

    #[test]
    fn corrupt_flips_exactly_one_bit() {
        let fs = SimFs::new(5);
        let mut f = fs.create("f").unwrap();
        f.append(&[0u8; 64]).unwrap();
        fs.corrupt("f", 10).unwrap();
        let data = crate::vfs::read_all(&f).unwrap();
        let ones: u32 = data.iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones, 1);
        assert_ne!(data[10], 0);
    }
}
