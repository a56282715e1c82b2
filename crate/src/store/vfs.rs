//! The file-system abstraction the file store does all its I/O through.
//!
//! [`Vfs`] / [`VfsFile`] are deliberately small (redb's `StorageBackend`, SQLite's
//! VFS): positioned reads and writes, length, `set_len`, `sync_data`. [`OsVfs`]
//! maps them onto real files; `FaultVfs` (`store::fault`, built with the
//! `testing` feature) keeps files in memory, tracks which bytes are durable and
//! which writes are still unsynced, injects crashes and I/O errors at a chosen
//! operation, and builds the disk images a crash could leave.

#[cfg(not(target_arch = "wasm32"))]
use std::fs::OpenOptions;
use std::io;
#[cfg(not(target_arch = "wasm32"))]
use std::io::{Read, Seek, Write};
#[cfg(not(target_arch = "wasm32"))]
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::platform::{MaybeSend, MaybeSync};

/// A file system: opens files by path.
///
/// `Send + Sync` on native targets (the file store's writer thread uses it);
/// on wasm32, where the Origin Private File System's handles are JS objects,
/// neither (see `store::opfs`).
pub trait Vfs: MaybeSend + MaybeSync + 'static {
    /// Opens `path` for reading and writing; creates it (empty) if `create` is set
    /// and it does not exist.
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn VfsFile>>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Opens an existing file for reading only: nothing can be written through
    /// the handle (writes, `set_len` and `sync_data` fail), and opening it
    /// writes nothing, so it works on a read-only or full file system.
    fn open_read_only(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    /// Takes the lock of the store in directory `dir` (the file `dir/LOCK`),
    /// without waiting: [`LockMode::Exclusive`] for a writer (refused while
    /// anyone else holds the lock in any mode), [`LockMode::Shared`] for a
    /// read-only opener (refused while a writer holds it). The lock is held
    /// until the returned guard is dropped.
    fn lock_dir(&self, dir: &Path, mode: LockMode) -> Result<DirLock, LockError>;
    /// The store that opened files through this file system is closed and
    /// uses none of them again. A file system that holds its files open
    /// itself (the browser's exclusive OPFS access handles, `store::opfs`)
    /// closes them here. The default does nothing.
    fn release(&self) {}
}

/// Name of the lock file inside a store's directory.
pub const LOCK_FILE: &str = "LOCK";

/// How a store directory is locked (see [`Vfs::lock_dir`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// One writer, no one else.
    Exclusive,
    /// Any number of read-only openers, no writer.
    Shared,
}

/// A held lock of a store directory; dropping it releases the lock.
pub struct DirLock {
    _held: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl DirLock {
    /// A guard that holds nothing: a read-only open where no lock file exists
    /// and none can be created (a read-only file system), so no writer of this
    /// engine can be at work there.
    pub fn none() -> DirLock {
        DirLock { _held: None }
    }

    /// A guard that holds `held` until it is dropped (a [`Vfs`]'s own lock).
    #[cfg(all(not(target_arch = "wasm32"), any(test, feature = "testing")))]
    pub(crate) fn holding(held: Box<dyn std::any::Any + Send + Sync>) -> DirLock {
        DirLock { _held: Some(held) }
    }
}

impl std::fmt::Debug for DirLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirLock")
            .field("held", &self._held.is_some())
            .finish()
    }
}

/// Why [`Vfs::lock_dir`] failed.
#[derive(Debug)]
pub enum LockError {
    /// Another opener holds the lock.
    Held {
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote in the lock file (a writer writes its
        /// process id), when readable.
        holder: Option<String>,
    },
    /// The lock file could not be opened or locked.
    Io {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// An open file with positioned I/O.
#[allow(clippy::len_without_is_empty)] // a file's length is an I/O call, not a collection size
pub trait VfsFile: MaybeSend + MaybeSync {
    /// Reads up to `buf.len()` bytes at `off`; returns how many were read (fewer
    /// only at the end of the file).
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `off`, extending the file if needed.
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    /// The current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes every earlier write and `set_len` of this file durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
}

#[cfg(not(target_arch = "wasm32"))]
/// The operating system's file system (`std::fs`, `pread`/`pwrite`, `fdatasync`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsVfs;

#[cfg(not(target_arch = "wasm32"))]
struct OsFile(std::fs::File);

#[cfg(not(target_arch = "wasm32"))]
impl Vfs for OsVfs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn VfsFile>> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .open(path)?;
        if !existed {
            // Make the new directory entry durable, so a synced file cannot vanish.
            if let Some(dir) = path.parent() {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                std::fs::File::open(dir)?.sync_all()?;
            }
        }
        Ok(Box::new(OsFile(file)))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn open_read_only(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(OsFile(std::fs::File::open(path)?)))
    }

    fn lock_dir(&self, dir: &Path, mode: LockMode) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            // A reader on a read-only (or full) file system: lock the existing
            // file through a read-only descriptor (flock needs no write access);
            // with no lock file at all no writer of this engine ever opened the
            // store, and none can while the file system refuses writes.
            Err(e) if mode == LockMode::Shared => match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e2) if e2.kind() == io::ErrorKind::NotFound => return Ok(DirLock::none()),
                Err(_) => return Err(io_err(e)),
            },
            Err(e) => return Err(io_err(e)),
        };
        let r = match mode {
            LockMode::Exclusive => file.try_lock(),
            LockMode::Shared => file.try_lock_shared(),
        };
        match r {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let text = text.trim();
                return Err(LockError::Held {
                    path,
                    holder: (!text.is_empty()).then(|| text.chars().take(200).collect()),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
        }
        if mode == LockMode::Exclusive {
            // The holder's process id, for the message a second opener prints.
            // Best effort: on a full disk the lock still holds without it.
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = writeln!(file, "process {}", std::process::id());
        }
        Ok(DirLock {
            _held: Some(Box::new(OsLock {
                file,
                exclusive: mode == LockMode::Exclusive,
            })),
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// A lock held through an open `LOCK` file; released when the file closes.
struct OsLock {
    file: std::fs::File,
    exclusive: bool,
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for OsLock {
    fn drop(&mut self) {
        if self.exclusive {
            // The process id means "held by" only while it is held.
            let _ = self.file.set_len(0);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl VfsFile for OsFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.0.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.0.write_all_at(buf, off)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}
