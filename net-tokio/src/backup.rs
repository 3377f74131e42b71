//! Snapshots, backups and restores of a node's store.
//!
//! - **Snapshot** (`RK.SNAPSHOT name`, `ringkv admin snapshot NAME`): the node writes a
//!   checkpoint of its store (`ringkv_storage::Engine::checkpoint`: hard links of its tables,
//!   copies of the WAL segments that hold its memtables, a fresh manifest) into
//!   `<data_dir>/snapshots/<name>/`, with [`SNAPSHOT_FILE`] describing it. It is point-in-time
//!   and crash-consistent per node; across a cluster, every write acknowledged before the command
//!   reached the first node is in at least W of the snapshots.
//! - **Backup** (`ringkv admin backup NAME --to DIR`): the admin tool reads each node's snapshot
//!   over the client port (`RK.SNAPSHOTINFO`, `RK.SNAPSHOTREAD`, 1 MiB at a time) into
//!   `DIR/node-<id>/`, then writes [`BACKUP_FILE`] there with every file's length and CRC-32C,
//!   last, so a backup cut short has no manifest and is refused.
//! - **Restore** (`ringkv restore`): [`verify_backup`] checks every file against the manifest
//!   (naming the first bad one), then either [`restore_node`] copies one node's files into an
//!   empty data directory and prepares the store with `ringkv_core::restore::prepare_restored`
//!   (a new epoch; refilled by anti-entropy before it serves), or [`load_into`] reads every
//!   node's store of a backup and writes each key's current value into a running cluster of any
//!   size.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ringkv_core::lsm::LsmStorage;
use ringkv_core::storage::{split_data_key, Space, Storage};
use ringkv_core::time::{Duration, WallTime};
use ringkv_core::types::KeyspaceConfig;
use ringkv_core::version::Versioned;
use ringkv_storage::StdFs;
use serde::{Deserialize, Serialize};

use crate::admin::AdminTarget;

/// The file in a snapshot's directory that describes it.
pub const SNAPSHOT_FILE: &str = "SNAPSHOT.ron";
/// The file in a backup's node directory that lists its files with their checksums.
pub const BACKUP_FILE: &str = "BACKUP.ron";
/// The directory under a node's data directory that holds its snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Most bytes one `RK.SNAPSHOTREAD` returns.
pub const READ_CHUNK_BYTES_MAX: u64 = 1 << 20;
/// Most bytes of a snapshot or backup name.
const NAME_BYTES_MAX: usize = 64;

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFile {
    /// The file's name in the snapshot's directory.
    pub name: String,
    /// Its length in bytes.
    pub size_bytes: u64,
}

/// What a snapshot is: written as [`SNAPSHOT_FILE`] in its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotManifest {
    /// The name the operator gave it.
    pub name: String,
    /// The node whose store it is.
    pub node_id: u32,
    /// The node's wall clock when it was taken, milliseconds since the epoch.
    pub taken_at_ms: u64,
    /// The storage sequence number it holds everything up to.
    pub last_seq: u64,
    /// Every file of the checkpoint.
    pub files: Vec<SnapshotFile>,
}

/// One file of a backup, with the checksum it had when it was copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupFile {
    /// The file's name.
    pub name: String,
    /// Its length in bytes.
    pub size_bytes: u64,
    /// CRC-32C of its bytes.
    pub crc32c: u32,
}

/// A backup of one node's snapshot: written as [`BACKUP_FILE`], after every file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    /// The backup format (1).
    pub format: u32,
    /// The snapshot backed up.
    pub snapshot: SnapshotManifest,
    /// Every file copied, with its checksum.
    pub files: Vec<BackupFile>,
}

/// The backup format this build writes and reads.
const BACKUP_FORMAT: u32 = 1;

/// Checks a snapshot name: 1 to 64 bytes of letters, digits, `.`, `_` and `-`, not starting
/// with `.` (it names a directory).
pub fn validate_name(name: &str) -> Result<(), String> {
    let valid_bytes = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if name.is_empty() || name.len() > NAME_BYTES_MAX || !valid_bytes || name.starts_with('.') {
        return Err(format!(
            "invalid snapshot name {name:?}: use 1 to {NAME_BYTES_MAX} letters, digits, '.', '_' \
             or '-', not starting with '.'"
        ));
    }
    Ok(())
}

/// Writes snapshot `name` of `storage` (whose directory is `data_dir`) and returns what it holds.
pub fn take_snapshot(
    storage: &LsmStorage<StdFs>,
    data_dir: &Path,
    name: &str,
    node_id: u32,
    taken_at: WallTime,
) -> Result<SnapshotManifest, String> {
    validate_name(name)?;
    let parent = data_dir.join(SNAPSHOTS_DIR);
    std::fs::create_dir_all(&parent)
        .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
    let dir = parent.join(name);
    if dir.exists() {
        return Err(format!("snapshot {name} exists already ({})", dir.display()));
    }
    let fs =
        StdFs::new(&dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let info = match storage.checkpoint(&fs) {
        Ok(info) => info,
        Err(error) => {
            // A half-written snapshot must not be mistaken for one.
            let _removed = std::fs::remove_dir_all(&dir);
            return Err(format!("snapshot {name} failed: {}", error.0));
        }
    };
    let manifest = SnapshotManifest {
        name: name.to_string(),
        node_id,
        taken_at_ms: taken_at.as_millis(),
        last_seq: info.last_seq,
        files: info
            .files
            .into_iter()
            .map(|(name, size_bytes)| SnapshotFile { name, size_bytes })
            .collect(),
    };
    write_ron_synced(&dir.join(SNAPSHOT_FILE), &manifest)?;
    Ok(manifest)
}

/// The directory of snapshot `name` under `data_dir`, once the name is checked.
pub fn snapshot_dir(data_dir: &Path, name: &str) -> Result<PathBuf, String> {
    validate_name(name)?;
    Ok(data_dir.join(SNAPSHOTS_DIR).join(name))
}

/// The text of snapshot `name`'s [`SNAPSHOT_FILE`].
pub fn snapshot_info(data_dir: &Path, name: &str) -> Result<String, String> {
    let path = snapshot_dir(data_dir, name)?.join(SNAPSHOT_FILE);
    std::fs::read_to_string(&path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => format!("no snapshot {name} on this node"),
        _ => format!("cannot read {}: {error}", path.display()),
    })
}

/// Up to [`READ_CHUNK_BYTES_MAX`] bytes of file `file` of snapshot `name`, from `offset`; empty
/// at the end. Only files the snapshot lists can be read.
pub fn read_chunk(data_dir: &Path, name: &str, file: &str, offset: u64) -> Result<Vec<u8>, String> {
    let info = snapshot_info(data_dir, name)?;
    let manifest: SnapshotManifest =
        ron::from_str(&info).map_err(|error| format!("snapshot {name} is damaged: {error}"))?;
    let Some(listed) = manifest.files.iter().find(|listed| listed.name == file) else {
        return Err(format!("snapshot {name} has no file {file:?}"));
    };
    let length = READ_CHUNK_BYTES_MAX.min(listed.size_bytes.saturating_sub(offset));
    let path = snapshot_dir(data_dir, name)?.join(&listed.name);
    let mut opened = std::fs::File::open(&path)
        .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    let mut bytes = vec![0u8; length as usize];
    opened
        .seek(SeekFrom::Start(offset))
        .and_then(|_| opened.read_exact(&mut bytes))
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    Ok(bytes)
}

/// Asks every node at `addrs` to take snapshot `name`; returns a line per node.
pub async fn snapshot(
    addrs: &[SocketAddr],
    target: &AdminTarget,
    name: &str,
) -> Result<String, String> {
    validate_name(name)?;
    let mut lines = Vec::new();
    for addr in addrs {
        let mut connection = connect_to(target, *addr).await?;
        let line: String = redis::cmd("RK.SNAPSHOT")
            .arg(name)
            .query_async(&mut connection)
            .await
            .map_err(|error| format!("{addr}: {error}"))?;
        lines.push(format!("{addr}: {line}"));
    }
    Ok(lines.join("\n"))
}

/// Copies snapshot `name` of every node at `addrs` into `to/node-<id>/` and writes each one's
/// [`BACKUP_FILE`]; returns a line per node.
pub async fn backup(
    addrs: &[SocketAddr],
    target: &AdminTarget,
    name: &str,
    to: &Path,
) -> Result<String, String> {
    validate_name(name)?;
    let mut lines = Vec::new();
    for addr in addrs {
        let mut connection = connect_to(target, *addr).await?;
        let info: String = redis::cmd("RK.SNAPSHOTINFO")
            .arg(name)
            .query_async(&mut connection)
            .await
            .map_err(|error| format!("{addr}: {error}"))?;
        let snapshot: SnapshotManifest =
            ron::from_str(&info).map_err(|error| format!("{addr}: snapshot {name}: {error}"))?;
        let dir = to.join(format!("node-{}", snapshot.node_id));
        if dir.join(BACKUP_FILE).exists() {
            return Err(format!("{} holds a backup already", dir.display()));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        let mut files = Vec::new();
        let mut total_bytes = 0;
        for listed in &snapshot.files {
            let path = dir.join(&listed.name);
            let mut out = std::fs::File::create(&path)
                .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
            let mut crc = 0u32;
            let mut offset = 0u64;
            while offset < listed.size_bytes {
                let chunk: Vec<u8> = redis::cmd("RK.SNAPSHOTREAD")
                    .arg(name)
                    .arg(&listed.name)
                    .arg(offset)
                    .query_async(&mut connection)
                    .await
                    .map_err(|error| format!("{addr}: reading {}: {error}", listed.name))?;
                if chunk.is_empty() {
                    return Err(format!("{addr}: {} ended at {offset} bytes", listed.name));
                }
                crc = crc32c::crc32c_append(crc, &chunk);
                out.write_all(&chunk)
                    .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
                offset += chunk.len() as u64;
            }
            out.sync_all().map_err(|error| format!("cannot sync {}: {error}", path.display()))?;
            total_bytes += offset;
            files.push(BackupFile { name: listed.name.clone(), size_bytes: offset, crc32c: crc });
        }
        let node_id = snapshot.node_id;
        let count = files.len();
        let manifest = BackupManifest { format: BACKUP_FORMAT, snapshot, files };
        write_ron_synced(&dir.join(BACKUP_FILE), &manifest)?;
        lines.push(format!(
            "node {node_id}: {count} files, {total_bytes} bytes -> {}",
            dir.display()
        ));
    }
    Ok(lines.join("\n"))
}

/// Checks a node's backup directory: its manifest reads, every file it lists is there with its
/// length and checksum. The error names the first bad file.
pub fn verify_backup(dir: &Path) -> Result<BackupManifest, String> {
    let path = dir.join(BACKUP_FILE);
    let text = std::fs::read_to_string(&path).map_err(|error| {
        format!("{}: {error} (a backup cut short has no manifest)", path.display())
    })?;
    let manifest: BackupManifest =
        ron::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    if manifest.format != BACKUP_FORMAT {
        return Err(format!(
            "{}: backup format {} (this build reads {BACKUP_FORMAT})",
            path.display(),
            manifest.format
        ));
    }
    for file in &manifest.files {
        let path = dir.join(&file.name);
        if file.name.contains('/') || file.name.starts_with('.') {
            return Err(format!("{}: bad file name {:?}", dir.display(), file.name));
        }
        let bytes = std::fs::read(&path)
            .map_err(|error| format!("{}: {error} (the backup is partial)", path.display()))?;
        if bytes.len() as u64 != file.size_bytes {
            return Err(format!(
                "{}: {} bytes, the backup recorded {}",
                path.display(),
                bytes.len(),
                file.size_bytes
            ));
        }
        let crc = crc32c::crc32c(&bytes);
        if crc != file.crc32c {
            return Err(format!(
                "{}: checksum {crc:08x}, the backup recorded {:08x} (the file is corrupt)",
                path.display(),
                file.crc32c
            ));
        }
    }
    Ok(manifest)
}

/// How a restored node rejoins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreInto {
    /// Into a cluster that kept running: the snapshot must be younger than half the tombstone
    /// grace (see `ringkv_core::restore::check_snapshot_age`).
    LiveCluster {
        /// The keyspace's tombstone grace.
        tombstone_grace: Duration,
    },
    /// Into a new cluster made of the backup's nodes: no age limit (no replica there holds a
    /// tombstone that could have been purged).
    NewCluster,
}

/// Restores node `node_id` from backup `from` (a directory of `node-<id>/` directories) into
/// `data_dir`, which must be empty or missing. Returns what was restored.
pub fn restore_node(
    from: &Path,
    node_id: u32,
    data_dir: &Path,
    into: RestoreInto,
    now: WallTime,
) -> Result<String, String> {
    let source = from.join(format!("node-{node_id}"));
    let manifest = verify_backup(&source)?;
    if manifest.snapshot.node_id != node_id {
        return Err(format!(
            "{} holds node {}'s snapshot, not node {node_id}'s",
            source.display(),
            manifest.snapshot.node_id
        ));
    }
    if let RestoreInto::LiveCluster { tombstone_grace } = into {
        let taken_at = WallTime::from_millis(manifest.snapshot.taken_at_ms);
        ringkv_core::restore::check_snapshot_age(taken_at, now, tombstone_grace)?;
    }
    let occupied = std::fs::read_dir(data_dir).map(|mut entries| entries.next().is_some());
    if occupied.unwrap_or(false) {
        return Err(format!(
            "{} is not empty: move the node's old data aside first",
            data_dir.display()
        ));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|error| format!("cannot create {}: {error}", data_dir.display()))?;
    for file in &manifest.files {
        let target = data_dir.join(&file.name);
        std::fs::copy(source.join(&file.name), &target)
            .and_then(|_| std::fs::File::open(&target)?.sync_all())
            .map_err(|error| {
                format!("cannot copy {} into {}: {error}", file.name, data_dir.display())
            })?;
    }
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|error| format!("cannot sync {}: {error}", data_dir.display()))?;
    let fs = StdFs::new(data_dir).map_err(|error| format!("{}: {error}", data_dir.display()))?;
    let mut storage = LsmStorage::open(fs)
        .map_err(|error| format!("the restored store does not open: {}", error.0))?;
    ringkv_core::restore::prepare_restored(&mut storage, &manifest.snapshot.name)
        .map_err(|error| format!("preparing the restored store failed: {}", error.0))?;
    Ok(format!(
        "node {node_id}: restored snapshot {} (taken at {} ms, {} files) into {}; it refills \
         from its replicas before it answers reads",
        manifest.snapshot.name,
        manifest.snapshot.taken_at_ms,
        manifest.files.len(),
        data_dir.display()
    ))
}

/// Every key of a backup with its object, merged over every node's copy: opens each node's
/// store (copied into `scratch`, since opening a store writes to it).
pub fn read_backup_objects(
    from: &Path,
    scratch: &Path,
) -> Result<BTreeMap<Bytes, Versioned>, String> {
    let mut objects: BTreeMap<Bytes, Versioned> = BTreeMap::new();
    let mode = KeyspaceConfig::default().conflict_mode;
    let mut nodes = 0;
    let entries =
        std::fs::read_dir(from).map_err(|error| format!("{}: {error}", from.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("node-"))
        })
        .collect();
    dirs.sort();
    for dir in dirs {
        let manifest = verify_backup(&dir)?;
        let copy = scratch.join(format!("node-{}", manifest.snapshot.node_id));
        std::fs::create_dir_all(&copy).map_err(|error| format!("{}: {error}", copy.display()))?;
        for file in &manifest.files {
            std::fs::copy(dir.join(&file.name), copy.join(&file.name))
                .map_err(|error| format!("cannot copy {}: {error}", file.name))?;
        }
        let fs = StdFs::new(&copy).map_err(|error| format!("{}: {error}", copy.display()))?;
        let mut storage = LsmStorage::open(fs)
            .map_err(|error| format!("{}: the store does not open: {}", dir.display(), error.0))?;
        let mut after: Option<Bytes> = None;
        loop {
            let page = storage
                .scan(Space::Data, after.as_deref(), 1_000)
                .map_err(|error| format!("{}: {}", dir.display(), error.0))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (stored_key, bytes) in page {
                let Some((_, key)) = split_data_key(&stored_key) else { continue };
                let object: Versioned = postcard::from_bytes(&bytes).map_err(|error| {
                    format!("{}: a stored object does not decode: {error}", dir.display())
                })?;
                let key = Bytes::copy_from_slice(key);
                match objects.get_mut(&key) {
                    Some(known) => *known = known.merged(&object, mode),
                    None => {
                        objects.insert(key, object);
                    }
                }
            }
        }
        nodes += 1;
    }
    if nodes == 0 {
        return Err(format!("{} holds no node-<id> backup", from.display()));
    }
    Ok(objects)
}

/// Writes every live key of backup `from` into the running cluster at `addr`, each with the
/// value a GET returned when the snapshot was taken (its newest sibling) and its expiry, through
/// plain SETs at the node's default write level, in pipelines of 1,000. Concurrent siblings are
/// collapsed to that newest one; keys expired by now are skipped. Returns a summary.
pub async fn load_into(from: &Path, target: &AdminTarget, now: WallTime) -> Result<String, String> {
    let addr = target.addr.ok_or_else(|| "no node address given".to_string())?;
    let scratch = tempdir_under(&std::env::temp_dir())?;
    let objects = read_backup_objects(from, &scratch);
    let _removed = std::fs::remove_dir_all(&scratch);
    let objects = objects?;
    let mut connection = crate::admin::connect(target).await?;
    let mut written = 0usize;
    let mut pipeline = redis::pipe();
    let mut queued = 0;
    for (key, object) in &objects {
        let Some(sibling) = newest_live(object, now) else { continue };
        let Some(value) = sibling.value.as_ref() else { continue };
        let command = pipeline.cmd("SET").arg(key.as_ref()).arg(value.as_ref());
        if let Some(expire_at) = sibling.expire_at {
            command.arg("PXAT").arg(expire_at.as_millis());
        }
        command.ignore();
        queued += 1;
        if queued == 1_000 {
            send(&mut connection, &mut pipeline).await?;
            written += queued;
            queued = 0;
        }
    }
    if queued > 0 {
        send(&mut connection, &mut pipeline).await?;
        written += queued;
    }
    Ok(format!("{written} keys written to {addr} ({} objects in the backup)", objects.len()))
}

/// A connection to `addr` with `target`'s user, password and TLS settings.
async fn connect_to(
    target: &AdminTarget,
    addr: SocketAddr,
) -> Result<redis::aio::MultiplexedConnection, String> {
    crate::admin::connect(&AdminTarget { addr: Some(addr), ..target.clone() }).await
}

/// The sibling a GET returns at `now`: the newest live one.
fn newest_live(object: &Versioned, now: WallTime) -> Option<&ringkv_core::version::Sibling> {
    object
        .siblings
        .iter()
        .filter(|sibling| sibling.is_live(now))
        .max_by_key(|sibling| sibling.lww_rank())
}

async fn send(
    connection: &mut redis::aio::MultiplexedConnection,
    pipeline: &mut redis::Pipeline,
) -> Result<(), String> {
    let () =
        pipeline.query_async(connection).await.map_err(|error| format!("write failed: {error}"))?;
    pipeline.clear();
    Ok(())
}

fn tempdir_under(parent: &Path) -> Result<PathBuf, String> {
    for attempt in 0..100u32 {
        let dir = parent.join(format!("ringkv-restore-{}-{attempt}", std::process::id()));
        if std::fs::create_dir(&dir).is_ok() {
            return Ok(dir);
        }
    }
    Err(format!("cannot create a scratch directory in {}", parent.display()))
}

fn write_ron_synced<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let text = ron::ser::to_string_pretty(value, ron::ser::PrettyConfig::default())
        .map_err(|error| format!("cannot encode {}: {error}", path.display()))?;
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all())
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_are_plain_words() {
        for good in ["nightly", "2026-12-07", "a.b_c-d"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "..", "x y", &"n".repeat(65)] {
            let error = validate_name(bad).unwrap_err();
            assert!(error.contains("invalid snapshot name"), "{bad}: {error}");
        }
    }
}
