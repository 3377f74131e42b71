//! The virtual filesystem the engine runs on, and `StdFs`, its implementation on real files.
//!
//! The engine sees one flat directory of append-only files. A file's bytes are durable only after
//! `sync` on it; a file's existence (creation, rename, removal) is durable only after `sync_dir`.
//! The engine relies on nothing else: no overwrites in place, no truncation, no subdirectories.
//! `SimFs` (in `simfs.rs`) models exactly these rules so that crashes can be simulated.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A flat directory of append-only files.
pub trait Vfs {
    /// An open file.
    type File: VfsFile;

    /// Creates a new empty file; fails if `name` exists.
    fn create(&self, name: &str) -> io::Result<Self::File>;
    /// Opens an existing file for reading and appending.
    fn open(&self, name: &str) -> io::Result<Self::File>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Lists the names of all files, sorted.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Makes creations, renames and removals done so far durable.
    fn sync_dir(&self) -> io::Result<()>;

    /// Makes file `name` of this filesystem appear in `dest` under the same name with the same
    /// bytes, durably once `dest.sync_dir()` returns: a hard link where the filesystem has them
    /// (an immutable table then costs no copy), a synced copy otherwise. Fails if `dest` already
    /// has `name`. Only for files nothing appends to any more.
    fn link_into(&self, name: &str, dest: &Self) -> io::Result<()> {
        copy_into(self, name, dest)
    }
}

/// Copies file `name` of `src` into `dest` under the same name and syncs the copy: what
/// [`Vfs::link_into`] does where there are no links.
pub fn copy_into<V: Vfs + ?Sized>(src: &V, name: &str, dest: &V) -> io::Result<()> {
    let data = read_all(&src.open(name)?)?;
    let mut copy = dest.create(name)?;
    copy.append(&data)?;
    copy.sync()
}

/// An open append-only file.
pub trait VfsFile {
    /// Reads exactly `buf.len()` bytes at `offset`; fails if the file is shorter.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Appends `data` at the end of the file.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes every byte appended so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True if the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// Reads a whole file into memory.
pub fn read_all<F: VfsFile>(file: &F) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut buf = vec![0u8; len];
    file.read_at(0, &mut buf)?;
    Ok(buf)
}

/// [`Vfs`] on real files under a root directory.
#[derive(Debug, Clone)]
pub struct StdFs {
    root: PathBuf,
}

impl StdFs {
    /// A filesystem rooted at `root`, which is created if missing.
    pub fn new(root: impl AsRef<Path>) -> io::Result<StdFs> {
        fs::create_dir_all(root.as_ref())?;
        Ok(StdFs { root: root.as_ref().to_path_buf() })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        // Names are flat: a separator would escape the root or need subdirectories.
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid file name {name:?}"),
            ));
        }
        Ok(self.root.join(name))
    }
}

/// An exclusive lock on a [`StdFs`] directory, released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl StdFs {
    /// Locks the directory (through a `LOCK` file) so that no second engine, in this process or
    /// another, opens it; fails at once if the lock is held. The engine does not take it itself
    /// (it only sees the `Vfs`): the driver holds the lock for as long as the engine is open.
    pub fn lock(&self) -> io::Result<DirLock> {
        let path = self.path("LOCK")?;
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked: another engine has this directory open", path.display()),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// A real file opened by [`StdFs`].
#[derive(Debug)]
pub struct StdFile {
    file: File,
}

impl Vfs for StdFs {
    type File = StdFile;

    fn create(&self, name: &str) -> io::Result<StdFile> {
        let file =
            OpenOptions::new().read(true).append(true).create_new(true).open(self.path(name)?)?;
        Ok(StdFile { file })
    }

    fn open(&self, name: &str) -> io::Result<StdFile> {
        let file = OpenOptions::new().read(true).append(true).open(self.path(name)?)?;
        Ok(StdFile { file })
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path(from)?, self.path(to)?)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name)?)
    }

    fn link_into(&self, name: &str, dest: &StdFs) -> io::Result<()> {
        match fs::hard_link(self.path(name)?, dest.path(name)?) {
            Ok(()) => Ok(()),
            // Another filesystem (EXDEV) or one without links: a synced copy instead.
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => copy_into(self, name, dest),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.root)?.sync_all()
    }
}

impl VfsFile for StdFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringkv-vfs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn stdfs_appends_reads_renames_and_lists() {
        let root = temp_root("basic");
        let fs = StdFs::new(&root).unwrap();
        let mut f = fs.create("a.tmp").unwrap();
        f.append(b"hello ").unwrap();
        f.append(b"world").unwrap();
        f.sync().unwrap();
        assert_eq!(f.len().unwrap(), 11);
        let mut buf = [0u8; 5];
        f.read_at(6, &mut buf).unwrap();
        assert_eq!(&buf, b"world");
        assert!(fs.create("a.tmp").is_err(), "create must not truncate an existing file");
        fs.rename("a.tmp", "a").unwrap();
        fs.sync_dir().unwrap();
        assert_eq!(fs.list().unwrap(), vec!["a".to_string()]);
        assert_eq!(read_all(&fs.open("a").unwrap()).unwrap(), b"hello world");
        fs.remove("a").unwrap();
        assert!(fs.list().unwrap().is_empty());
        assert!(fs.open("../escape").is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_locked_directory_refuses_a_second_lock_until_released() {
        let root = temp_root("lock");
        let fs = StdFs::new(&root).unwrap();
        let lock = fs.lock().unwrap();
        let err = StdFs::new(&root).unwrap().lock().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(err.to_string().contains("locked"), "{err}");
        drop(lock);
        let again = fs.lock().unwrap();
        drop(again);
        fs::remove_dir_all(&root).unwrap();
    }
}
