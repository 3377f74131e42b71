//! The manifest: the log of version edits that says which SSTables make up the tree, which WAL
//! files are still needed, the last sequence number in SSTables, the next file number and the
//! keyspaces.
//!
//! A manifest file `MANIFEST-<n>` is a sequence of framed records (see `record.rs`), each one
//! encoded [`Edit`]; the first edit carries the format version and a full snapshot of the state.
//! `CURRENT` names the live manifest. A new manifest is made current by writing it, syncing it,
//! writing `CURRENT.tmp`, syncing it, renaming it over `CURRENT` and syncing the directory; the
//! old manifest is removed only after that. Each later edit is appended and synced before it takes
//! effect. On reading, a bad record at the tail of the file (a torn append that was never
//! acknowledged) ends the log; a bad record followed by more data is corruption.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::SeqNo;
use crate::codec::{get_len_bytes, get_u32, get_varint, put_len_bytes, put_varint, user_key};
use crate::record::{put_record, RecordReader};
use crate::vfs::{read_all, Vfs, VfsFile};
use crate::{Error, Result};

/// The manifest format version this build writes and the newest it reads.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// The file naming the live manifest.
pub const CURRENT: &str = "CURRENT";
const CURRENT_TMP: &str = "CURRENT.tmp";

const TAG_FORMAT: u64 = 1;
const TAG_LOG_NUMBER: u64 = 2;
const TAG_LAST_SEQ: u64 = 3;
const TAG_NEXT_FILE: u64 = 4;
const TAG_KEYSPACE: u64 = 5;
const TAG_ADD_FILE: u64 = 6;
const TAG_REMOVE_FILE: u64 = 7;

/// Describes one SSTable in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileMeta {
    pub number: u64,
    pub size_bytes: u64,
    /// Smallest and largest internal keys.
    pub smallest: Bytes,
    pub largest: Bytes,
    pub entries: u64,
    pub min_seq: SeqNo,
    pub max_seq: SeqNo,
}

impl FileMeta {
    pub fn smallest_user(&self) -> &[u8] {
        user_key(&self.smallest)
    }

    pub fn largest_user(&self) -> &[u8] {
        user_key(&self.largest)
    }

    /// True if the file's user-key range meets [lo, hi].
    pub fn overlaps(&self, lo: &[u8], hi: &[u8]) -> bool {
        self.smallest_user() <= hi && self.largest_user() >= lo
    }
}

/// The name of table `number`.
pub fn table_name(number: u64) -> String {
    format!("{number:06}.sst")
}

/// The name of WAL `number`.
pub fn wal_name(number: u64) -> String {
    format!("{number:06}.wal")
}

/// The name of manifest `number`.
pub fn manifest_name(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

/// Parses a file name into (kind, number) for `.sst`, `.wal` and `MANIFEST-` files.
pub fn parse_name(name: &str) -> Option<(&'static str, u64)> {
    if let Some(n) = name.strip_suffix(".sst") {
        return n.parse().ok().map(|n| ("sst", n));
    }
    if let Some(n) = name.strip_suffix(".wal") {
        return n.parse().ok().map(|n| ("wal", n));
    }
    if let Some(n) = name.strip_prefix("MANIFEST-") {
        return n.parse().ok().map(|n| ("manifest", n));
    }
    None
}

/// A change to the tree's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Edit {
    pub format_version: Option<u32>,
    pub log_number: Option<u64>,
    pub last_seq: Option<SeqNo>,
    pub next_file: Option<u64>,
    pub keyspaces: Vec<(u32, String)>,
    pub added: Vec<(usize, FileMeta)>,
    pub removed: Vec<(usize, u64)>,
}

impl Edit {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        if let Some(v) = self.format_version {
            put_varint(&mut b, TAG_FORMAT);
            b.extend_from_slice(&v.to_le_bytes());
        }
        for (tag, v) in [
            (TAG_LOG_NUMBER, self.log_number),
            (TAG_LAST_SEQ, self.last_seq),
            (TAG_NEXT_FILE, self.next_file),
        ] {
            if let Some(v) = v {
                put_varint(&mut b, tag);
                put_varint(&mut b, v);
            }
        }
        for (id, name) in &self.keyspaces {
            put_varint(&mut b, TAG_KEYSPACE);
            put_varint(&mut b, u64::from(*id));
            put_len_bytes(&mut b, name.as_bytes());
        }
        for (level, f) in &self.added {
            put_varint(&mut b, TAG_ADD_FILE);
            put_varint(&mut b, *level as u64);
            put_varint(&mut b, f.number);
            put_varint(&mut b, f.size_bytes);
            put_len_bytes(&mut b, &f.smallest);
            put_len_bytes(&mut b, &f.largest);
            put_varint(&mut b, f.entries);
            put_varint(&mut b, f.min_seq);
            put_varint(&mut b, f.max_seq);
        }
        for (level, number) in &self.removed {
            put_varint(&mut b, TAG_REMOVE_FILE);
            put_varint(&mut b, *level as u64);
            put_varint(&mut b, *number);
        }
        b
    }

    /// Decodes an edit; the error says what did not parse.
    pub fn decode(data: &[u8]) -> std::result::Result<Edit, String> {
        let mut e = Edit::default();
        let mut pos = 0;
        let bad = |what: &str| format!("malformed {what}");
        while pos < data.len() {
            let tag = get_varint(data, &mut pos).ok_or_else(|| bad("tag"))?;
            match tag {
                TAG_FORMAT => {
                    e.format_version = Some(get_u32(data, &mut pos).ok_or_else(|| bad("version"))?)
                }
                TAG_LOG_NUMBER | TAG_LAST_SEQ | TAG_NEXT_FILE => {
                    let v = get_varint(data, &mut pos).ok_or_else(|| bad("number"))?;
                    match tag {
                        TAG_LOG_NUMBER => e.log_number = Some(v),
                        TAG_LAST_SEQ => e.last_seq = Some(v),
                        _ => e.next_file = Some(v),
                    }
                }
                TAG_KEYSPACE => {
                    let id = get_varint(data, &mut pos).ok_or_else(|| bad("keyspace id"))?;
                    let id = u32::try_from(id).map_err(|_| bad("keyspace id"))?;
                    let name = get_len_bytes(data, &mut pos).ok_or_else(|| bad("keyspace"))?;
                    let name = String::from_utf8(name.to_vec()).map_err(|_| bad("keyspace"))?;
                    e.keyspaces.push((id, name));
                }
                TAG_ADD_FILE => {
                    let mut num = || get_varint(data, &mut pos).ok_or_else(|| bad("file"));
                    let (level, number, size_bytes) = (num()?, num()?, num()?);
                    let smallest = get_len_bytes(data, &mut pos).ok_or_else(|| bad("file key"))?;
                    let smallest = Bytes::copy_from_slice(smallest);
                    let largest = get_len_bytes(data, &mut pos).ok_or_else(|| bad("file key"))?;
                    let largest = Bytes::copy_from_slice(largest);
                    let mut num = || get_varint(data, &mut pos).ok_or_else(|| bad("file"));
                    let (entries, min_seq, max_seq) = (num()?, num()?, num()?);
                    let level = usize::try_from(level).map_err(|_| bad("level"))?;
                    e.added.push((
                        level,
                        FileMeta {
                            number,
                            size_bytes,
                            smallest,
                            largest,
                            entries,
                            min_seq,
                            max_seq,
                        },
                    ));
                }
                TAG_REMOVE_FILE => {
                    let level = get_varint(data, &mut pos).ok_or_else(|| bad("level"))?;
                    let number = get_varint(data, &mut pos).ok_or_else(|| bad("file"))?;
                    let level = usize::try_from(level).map_err(|_| bad("level"))?;
                    e.removed.push((level, number));
                }
                other => return Err(format!("unknown manifest tag {other}")),
            }
        }
        Ok(e)
    }
}

/// The state a manifest describes.
#[derive(Debug, Clone, Default)]
pub(crate) struct ManifestState {
    pub log_number: u64,
    pub last_seq: SeqNo,
    pub next_file: u64,
    pub keyspaces: BTreeMap<u32, String>,
    /// Per level, files by number.
    pub levels: Vec<BTreeMap<u64, Arc<FileMeta>>>,
}

impl ManifestState {
    pub fn new(levels_count: usize) -> Self {
        ManifestState {
            next_file: 1,
            levels: vec![BTreeMap::new(); levels_count],
            ..ManifestState::default()
        }
    }

    pub fn apply(&mut self, e: &Edit) -> std::result::Result<(), String> {
        if let Some(v) = e.log_number {
            self.log_number = v;
        }
        if let Some(v) = e.last_seq {
            self.last_seq = v;
        }
        if let Some(v) = e.next_file {
            self.next_file = v;
        }
        for (id, name) in &e.keyspaces {
            self.keyspaces.insert(*id, name.clone());
        }
        for (level, number) in &e.removed {
            let l =
                self.levels.get_mut(*level).ok_or_else(|| format!("level {level} out of range"))?;
            l.remove(number);
        }
        for (level, f) in &e.added {
            let l =
                self.levels.get_mut(*level).ok_or_else(|| format!("level {level} out of range"))?;
            l.insert(f.number, Arc::new(f.clone()));
        }
        Ok(())
    }

    /// Checks what edits cannot express but a damaged manifest can: each table on one level
    /// only (the engine keeps tables by number; found by fuzzing the manifest:
    /// regressions/manifest/table-on-two-levels).
    pub fn check(&self) -> std::result::Result<(), String> {
        let mut seen = BTreeMap::new();
        for (level, files) in self.levels.iter().enumerate() {
            for number in files.keys() {
                if let Some(other) = seen.insert(*number, level) {
                    return Err(format!("table {number} is on levels {other} and {level}"));
                }
            }
        }
        Ok(())
    }

    /// An edit that recreates this whole state.
    pub fn snapshot_edit(&self) -> Edit {
        Edit {
            format_version: Some(MANIFEST_FORMAT_VERSION),
            log_number: Some(self.log_number),
            last_seq: Some(self.last_seq),
            next_file: Some(self.next_file),
            keyspaces: self.keyspaces.iter().map(|(id, n)| (*id, n.clone())).collect(),
            added: self
                .levels
                .iter()
                .enumerate()
                .flat_map(|(l, files)| files.values().map(move |f| (l, (**f).clone())))
                .collect(),
            removed: Vec::new(),
        }
    }
}

/// The live manifest file, open for appending edits.
#[derive(Debug)]
pub(crate) struct ManifestLog<F: VfsFile> {
    file: F,
    name: String,
    pub number: u64,
    pub size_bytes: u64,
}

impl<F: VfsFile> ManifestLog<F> {
    /// Appends an edit and syncs it: when this returns Ok the edit is durable.
    pub fn append(&mut self, edit: &Edit) -> Result<()> {
        let mut rec = Vec::new();
        put_record(&mut rec, &edit.encode());
        self.file.append(&rec).map_err(|e| Error::io("append", &self.name, e))?;
        self.file.sync().map_err(|e| Error::io("sync", &self.name, e))?;
        self.size_bytes += rec.len() as u64;
        Ok(())
    }
}

/// Writes manifest `number` holding `state` and makes it current. The previous manifest is left
/// for the caller to remove.
pub(crate) fn install_new<V: Vfs>(
    vfs: &V,
    number: u64,
    state: &ManifestState,
) -> Result<ManifestLog<V::File>> {
    let name = manifest_name(number);
    let mut file = vfs.create(&name).map_err(|e| Error::io("create", &name, e))?;
    let mut log = ManifestLog {
        file: {
            // A fresh file: nothing to lose if the next steps fail.
            file.sync().map_err(|e| Error::io("sync", &name, e))?;
            file
        },
        name: name.clone(),
        number,
        size_bytes: 0,
    };
    log.append(&state.snapshot_edit())?;
    if vfs.list().map_err(|e| Error::io("list", "/", e))?.iter().any(|n| n == CURRENT_TMP) {
        vfs.remove(CURRENT_TMP).map_err(|e| Error::io("remove", CURRENT_TMP, e))?;
    }
    let mut tmp = vfs.create(CURRENT_TMP).map_err(|e| Error::io("create", CURRENT_TMP, e))?;
    tmp.append(format!("{name}\n").as_bytes()).map_err(|e| Error::io("append", CURRENT_TMP, e))?;
    tmp.sync().map_err(|e| Error::io("sync", CURRENT_TMP, e))?;
    vfs.rename(CURRENT_TMP, CURRENT).map_err(|e| Error::io("rename", CURRENT, e))?;
    vfs.sync_dir().map_err(|e| Error::io("sync_dir", "/", e))?;
    Ok(log)
}

/// Reads the current manifest: `None` if there is no `CURRENT` (a new database).
pub(crate) fn read_current<V: Vfs>(
    vfs: &V,
    levels_count: usize,
) -> Result<Option<(u64, ManifestState)>> {
    let names = vfs.list().map_err(|e| Error::io("list", "/", e))?;
    if !names.iter().any(|n| n == CURRENT) {
        return Ok(None);
    }
    let cur = vfs.open(CURRENT).map_err(|e| Error::io("open", CURRENT, e))?;
    let content = read_all(&cur).map_err(|e| Error::io("read_at", CURRENT, e))?;
    let name = std::str::from_utf8(&content)
        .ok()
        .and_then(|s| s.strip_suffix('\n'))
        .filter(|s| matches!(parse_name(s), Some(("manifest", _))))
        .ok_or_else(|| Error::corruption(CURRENT, 0, "CURRENT does not name a manifest"))?
        .to_string();
    let Some((_, number)) = parse_name(&name) else {
        return Err(Error::corruption(CURRENT, 0, "CURRENT does not name a manifest"));
    };
    let file = vfs.open(&name).map_err(|e| Error::io("open", &name, e))?;
    let data = read_all(&file).map_err(|e| Error::io("read_at", &name, e))?;
    let mut state = ManifestState::new(levels_count);
    let mut reader = RecordReader::new(&data);
    let mut first = true;
    for payload in reader.by_ref() {
        let edit = Edit::decode(payload)
            .map_err(|d| Error::corruption(&name, 0, format!("bad edit: {d}")))?;
        if first {
            let v = edit
                .format_version
                .ok_or_else(|| Error::corruption(&name, 0, "first edit has no format version"))?;
            if v > MANIFEST_FORMAT_VERSION {
                return Err(Error::UnsupportedVersion {
                    path: name,
                    found: v,
                    supported: MANIFEST_FORMAT_VERSION,
                });
            }
            first = false;
        }
        state.apply(&edit).map_err(|d| Error::corruption(&name, 0, format!("bad edit: {d}")))?;
    }
    if let Some(bad) = reader.bad() {
        // Every edit is synced before the next is written and a reopened manifest is replaced
        // by a new one, so only the last record can be torn: anything intact after a bad
        // record means the damage is in the middle.
        let damaged_mid_file = !bad.at_tail
            && crate::record::intact_record_after(&data, bad.offset as usize).is_some();
        if damaged_mid_file {
            return Err(Error::corruption(&name, bad.offset, bad.reason.clone()));
        }
    }
    if first {
        return Err(Error::corruption(&name, 0, "manifest has no complete edit"));
    }
    state.check().map_err(|d| Error::corruption(&name, 0, d))?;
    Ok(Some((number, state)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{internal_key, Kind};
    use crate::simfs::{CrashMode, SimFs};

    fn meta(number: u64) -> FileMeta {
        FileMeta {
            number,
            size_bytes: 1000 + number,
            smallest: Bytes::from(internal_key(b"a", 5, Kind::Put)),
            largest: Bytes::from(internal_key(b"z", 1, Kind::Delete)),
            entries: 10,
            min_seq: 1,
            max_seq: 5,
        }
    }

    #[test]
    fn edits_round_trip() {
        let e = Edit {
            format_version: Some(1),
            log_number: Some(3),
            last_seq: Some(99),
            next_file: Some(12),
            keyspaces: vec![(0, "data".into())],
            added: vec![(2, meta(7))],
            removed: vec![(0, 4)],
        };
        assert_eq!(Edit::decode(&e.encode()).unwrap(), e);
        assert!(Edit::decode(&[99]).is_err());
    }

    #[test]
    fn installed_manifest_survives_a_crash_and_later_edits_apply() {
        let fs = SimFs::new(1);
        let mut st = ManifestState::new(7);
        st.keyspaces.insert(0, "data".into());
        let mut log = install_new(&fs, 1, &st).unwrap();
        log.append(&Edit { added: vec![(0, meta(5))], next_file: Some(6), ..Edit::default() })
            .unwrap();
        fs.crash(CrashMode::Torn);
        let (n, got) = read_current(&fs, 7).unwrap().unwrap();
        assert_eq!(n, 1);
        assert_eq!(got.next_file, 6);
        assert_eq!(got.levels[0].len(), 1);
        assert_eq!(got.keyspaces.get(&0).map(String::as_str), Some("data"));
    }

    #[test]
    fn crash_before_the_directory_sync_keeps_the_old_manifest() {
        let fs = SimFs::new(2);
        let st = ManifestState::new(7);
        install_new(&fs, 1, &st).unwrap();
        let mut st2 = st.clone();
        st2.next_file = 50;
        // The directory sync is the 10th operation of install_new; cut power just before it.
        fs.power_cut_after(Some(9));
        assert!(install_new(&fs, 2, &st2).is_err());
        fs.crash(CrashMode::DropUnsynced);
        let (n, got) = read_current(&fs, 7).unwrap().unwrap();
        assert_eq!((n, got.next_file), (1, 1));
    }

    #[test]
    fn corrupt_record_in_the_middle_is_an_error() {
        let fs = SimFs::new(3);
        let mut log = install_new(&fs, 1, &ManifestState::new(7)).unwrap();
        log.append(&Edit { next_file: Some(9), ..Edit::default() }).unwrap();
        fs.corrupt("MANIFEST-000001", 10).unwrap();
        let err = read_current(&fs, 7).unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }
}
