//! A fault-injecting in-memory [`Vfs`] for crash tests (test machinery: only
//! built with the `testing` feature, which the tests and benchmarks enable).
//!
//! [`FaultVfs`] keeps files in memory, tracks which bytes are durable and which
//! writes are still unsynced, injects crashes and I/O errors at a chosen
//! operation, and builds the disk images a crash could leave.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::vfs::{DirLock, LOCK_FILE, LockError, LockMode, Vfs, VfsFile};
use crate::rng::SplitMix;

/// Which I/O operation to fault, and how. Operations are numbered from 1 in the
/// order they are issued; `write_at`, `set_len` and `sync_data` count, reads do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Operation `n` and every later operation (reads included) fail: the
    /// machine "crashed" at `n`. Nothing of operation `n` is applied.
    CrashAt(u64),
    /// Operation `n` fails once (nothing of it is applied); later ones succeed.
    FailOnce(u64),
    /// Operation `n` and every later counted operation fail.
    FailFrom(u64),
}

#[derive(Clone, Debug)]
enum PendingOp {
    Write { off: u64, data: Vec<u8> },
    SetLen(u64),
}

impl PendingOp {
    fn apply(&self, buf: &mut Vec<u8>, torn: Option<usize>) {
        match self {
            PendingOp::Write { off, data } => {
                let data = &data[..torn.unwrap_or(data.len()).min(data.len())];
                let off = *off as usize;
                let end = off + data.len();
                if buf.len() < end {
                    grow_zeroed(buf, end);
                }
                buf[off..end].copy_from_slice(data);
            }
            PendingOp::SetLen(len) => {
                let len = *len as usize;
                if len <= buf.len() {
                    buf.truncate(len);
                } else {
                    grow_zeroed(buf, len);
                }
            }
        }
    }
}

/// The sector size torn writes are cut at.
const SECTOR: u64 = 512;

/// Extends `buf` with zeros to `len` bytes (a bulk copy, fast in debug builds too).
fn grow_zeroed(buf: &mut Vec<u8>, len: usize) {
    let zeros = vec![0u8; len - buf.len()];
    buf.extend_from_slice(&zeros);
}

#[derive(Clone, Default)]
struct MemFile {
    durable: Vec<u8>,
    current: Vec<u8>,
}

#[derive(Default)]
struct FaultState {
    files: BTreeMap<PathBuf, MemFile>,
    dirs: BTreeSet<PathBuf>,
    /// Unsynced operations of every file, in issue order.
    pending: Vec<(PathBuf, PendingOp)>,
    ops: u64,
    fault: Option<Fault>,
    crashed: bool,
    /// Total bytes the files may hold (a full disk), if limited.
    capacity: Option<u64>,
    /// Held directory locks: whether a writer holds it, and how many readers.
    locks: HashMap<PathBuf, (bool, usize)>,
}

impl FaultState {
    /// Counts an operation and decides whether it fails.
    fn count(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(crash_error());
        }
        self.ops += 1;
        let n = self.ops;
        match self.fault {
            Some(Fault::CrashAt(at)) if n >= at => {
                self.crashed = true;
                Err(crash_error())
            }
            Some(Fault::FailOnce(at)) if n == at => Err(io::Error::other(format!(
                "injected I/O error at operation {n}"
            ))),
            Some(Fault::FailFrom(at)) if n >= at => Err(io::Error::other(format!(
                "injected I/O error at operation {n} (persistent)"
            ))),
            _ => Ok(()),
        }
    }
}

impl FaultState {
    /// Total length of every file's current contents.
    fn used(&self) -> u64 {
        self.files.values().map(|f| f.current.len() as u64).sum()
    }
}

fn crash_error() -> io::Error {
    io::Error::other("injected crash: the file system is frozen")
}

/// An in-memory file system for crash testing (SQLite's crash VFS, redb's
/// crash-consistency backend in spirit).
///
/// Each file has *durable* bytes and a list of *unsynced* operations since its
/// last `sync_data`; reads see the current state (durable plus unsynced). A
/// [`Fault`] makes an operation fail, or freezes the whole VFS as a crash would.
/// [`FaultVfs::crash_images`] then lists disk states a crash could have left.
///
/// Clones share the same files (hand one clone to the store, keep one to inspect).
/// File creation and `create_dir_all` are durable at once and are not counted.
#[derive(Clone, Default)]
pub struct FaultVfs {
    state: Arc<Mutex<FaultState>>,
}

impl std::fmt::Debug for FaultVfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("FaultVfs")
            .field("files", &s.files.keys().collect::<Vec<_>>())
            .field("ops", &s.ops)
            .field("pending", &s.pending.len())
            .field("fault", &s.fault)
            .field("crashed", &s.crashed)
            .finish()
    }
}

/// Files of a [`FaultVfs`] image: path to contents.
pub type FileImages = BTreeMap<PathBuf, Vec<u8>>;

impl FaultVfs {
    /// An empty file system with no fault configured.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh, un-faulted file system whose files hold `files` (all durable).
    pub fn with_files(files: FileImages) -> Self {
        let vfs = Self::new();
        {
            let mut s = vfs.lock();
            for (path, bytes) in files {
                if let Some(parent) = path.parent() {
                    s.dirs.insert(parent.to_path_buf());
                }
                s.files.insert(
                    path,
                    MemFile {
                        durable: bytes.clone(),
                        current: bytes,
                    },
                );
            }
        }
        vfs
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // Every update of the state is completed before anything can panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Configures (or clears) the fault. Operation numbers are absolute: they
    /// count from the creation of this file system.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.lock().fault = fault;
    }

    /// Limits the total size of all files to `bytes` (`None`: unlimited), as a
    /// full disk does: a write that would go beyond writes the part that fits
    /// and fails with [`io::ErrorKind::StorageFull`]; growing `set_len` fails;
    /// overwrites, truncation and syncs still work.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.lock().capacity = bytes;
    }

    /// How many counted operations (writes, `set_len`, syncs) were issued so far.
    pub fn op_count(&self) -> u64 {
        self.lock().ops
    }

    /// Whether a [`Fault::CrashAt`] fired.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Number of unsynced operations over all files.
    pub fn pending_ops(&self) -> usize {
        self.lock().pending.len()
    }

    /// The durable contents of every file (what survives a crash that keeps none
    /// of the unsynced writes).
    pub fn durable_files(&self) -> FileImages {
        self.lock()
            .files
            .iter()
            .map(|(p, f)| (p.clone(), f.durable.clone()))
            .collect()
    }

    /// The current contents of every file (what a process restart without a
    /// machine crash sees).
    pub fn current_files(&self) -> FileImages {
        self.lock()
            .files
            .iter()
            .map(|(p, f)| (p.clone(), f.current.clone()))
            .collect()
    }

    /// Disk images a crash at this moment could leave: the durable bytes plus a
    /// subset of the unsynced operations applied in some order, the last applied
    /// write possibly torn (only a prefix of it written, cut at a 512-byte sector
    /// boundary of the file -- `off + cut` a multiple of 512 -- or at a random
    /// byte).
    ///
    /// Always included (as far as `max` allows): none applied; all applied in
    /// order; all applied with the last write torn at a sector and at a byte;
    /// every in-order prefix (plain and with its last write torn); then random
    /// subsets in random orders. Deterministic for a given `seed`; duplicates are
    /// removed.
    pub fn crash_image_files(&self, max: usize, seed: u64) -> Vec<FileImages> {
        let s = self.lock();
        let n = s.pending.len();
        let mut rng = SplitMix(seed ^ 0x5DEE_CE66_D1CE_4E5B);
        // A plan: which pending ops, in which order, and whether the last is torn.
        let mut plans: Vec<(Vec<usize>, Option<usize>)> = Vec::new();
        let all: Vec<usize> = (0..n).collect();
        plans.push((Vec::new(), None));
        plans.push((all.clone(), None));
        let tear_points = |rng: &mut SplitMix, idx: usize| -> Vec<usize> {
            match &s.pending[idx].1 {
                PendingOp::Write { off, data } if data.len() > 1 => {
                    let len = data.len() as u64;
                    let mut v = Vec::new();
                    // A device tears at sector boundaries of the file, not of the
                    // write's buffer: cut where `off + cut` is a multiple of 512.
                    let first = SECTOR - off % SECTOR;
                    if first < len {
                        let boundaries = (len - 1 - first) / SECTOR + 1;
                        v.push((first + rng.below(boundaries) * SECTOR) as usize);
                    }
                    v.push(1 + rng.below(len - 1) as usize);
                    v
                }
                _ => Vec::new(),
            }
        };
        if n > 0 {
            for t in tear_points(&mut rng, n - 1) {
                plans.push((all.clone(), Some(t)));
            }
        }
        for k in 1..n {
            let prefix: Vec<usize> = (0..k).collect();
            plans.push((prefix.clone(), None));
            if let Some(&t) = tear_points(&mut rng, k - 1).first() {
                plans.push((prefix, Some(t)));
            }
        }
        let mut images = Vec::new();
        // Two plans that apply the same operations, in the same order within each
        // file, give the same image: keep one of them.
        let mut seen = HashSet::new();
        let mut build = |plan: &(Vec<usize>, Option<usize>), images: &mut Vec<FileImages>| {
            let mut key: Vec<(&PathBuf, usize, Option<usize>)> = plan
                .0
                .iter()
                .enumerate()
                .map(|(i, &op)| {
                    (
                        &s.pending[op].0,
                        op,
                        if i + 1 == plan.0.len() { plan.1 } else { None },
                    )
                })
                .collect();
            key.sort_by(|a, b| a.0.cmp(b.0)); // stable: keeps the order within a file
            let key: Vec<(usize, Option<usize>)> =
                key.into_iter().map(|(_, op, t)| (op, t)).collect();
            if !seen.insert(key) {
                return;
            }
            let mut files: BTreeMap<PathBuf, Vec<u8>> = s
                .files
                .iter()
                .map(|(p, f)| (p.clone(), f.durable.clone()))
                .collect();
            for (i, &op) in plan.0.iter().enumerate() {
                let torn = if i + 1 == plan.0.len() { plan.1 } else { None };
                let (path, op) = &s.pending[op];
                if let Some(buf) = files.get_mut(path) {
                    op.apply(buf, torn);
                }
            }
            images.push(files);
        };
        for plan in &plans {
            if images.len() >= max {
                return images;
            }
            build(plan, &mut images);
        }
        // Random subsets and orders. Bounded attempts: small pending lists have
        // few distinct images.
        let mut attempts = 0;
        while images.len() < max && n > 0 && attempts < max * 4 {
            attempts += 1;
            let mut pick: Vec<usize> = (0..n).filter(|_| rng.below(2) == 0).collect();
            if rng.below(2) == 0 {
                // Shuffle (Fisher-Yates).
                for i in (1..pick.len()).rev() {
                    let j = rng.below(i as u64 + 1) as usize;
                    pick.swap(i, j);
                }
            }
            let torn = match pick.last() {
                Some(&last) if rng.below(2) == 0 => tear_points(&mut rng, last).first().copied(),
                _ => None,
            };
            build(&(pick, torn), &mut images);
        }
        images
    }

    /// Like [`FaultVfs::crash_image_files`], each image wrapped in a fresh,
    /// un-faulted `FaultVfs` ready to be reopened.
    pub fn crash_images(&self, max: usize, seed: u64) -> Vec<FaultVfs> {
        self.crash_image_files(max, seed)
            .into_iter()
            .map(FaultVfs::with_files)
            .collect()
    }
}

impl Vfs for FaultVfs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn VfsFile>> {
        let mut s = self.lock();
        if s.crashed {
            return Err(crash_error());
        }
        if !s.files.contains_key(path) {
            if !create {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} not found", path.display()),
                ));
            }
            s.files.insert(path.to_path_buf(), MemFile::default());
        }
        Ok(Box::new(FaultFile {
            state: self.state.clone(),
            path: path.to_path_buf(),
            read_only: false,
        }))
    }

    fn open_read_only(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let s = self.lock();
        if s.crashed {
            return Err(crash_error());
        }
        if !s.files.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found", path.display()),
            ));
        }
        Ok(Box::new(FaultFile {
            state: self.state.clone(),
            path: path.to_path_buf(),
            read_only: true,
        }))
    }

    fn lock_dir(&self, dir: &Path, mode: LockMode) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let mut s = self.lock();
        let entry = s.locks.entry(path.clone()).or_insert((false, 0));
        let free = match mode {
            LockMode::Exclusive => !entry.0 && entry.1 == 0,
            LockMode::Shared => !entry.0,
        };
        if !free {
            return Err(LockError::Held {
                path,
                holder: entry.0.then(|| "a writer of this FaultVfs".to_string()),
            });
        }
        match mode {
            LockMode::Exclusive => entry.0 = true,
            LockMode::Shared => entry.1 += 1,
        }
        Ok(DirLock::holding(Box::new(FaultLock {
            state: self.state.clone(),
            path,
            mode,
        })))
    }

    fn exists(&self, path: &Path) -> bool {
        let s = self.lock();
        s.files.contains_key(path) || s.dirs.contains(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        if s.crashed {
            return Err(crash_error());
        }
        s.dirs.insert(path.to_path_buf());
        Ok(())
    }
}

/// A lock held on a [`FaultVfs`] directory; released on drop.
struct FaultLock {
    state: Arc<Mutex<FaultState>>,
    path: PathBuf,
    mode: LockMode,
}

impl Drop for FaultLock {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = s.locks.get_mut(&self.path) {
            match self.mode {
                LockMode::Exclusive => e.0 = false,
                LockMode::Shared => e.1 = e.1.saturating_sub(1),
            }
        }
    }
}

struct FaultFile {
    state: Arc<Mutex<FaultState>>,
    path: PathBuf,
    read_only: bool,
}

fn read_only_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "write through a read-only handle",
    )
}

impl FaultFile {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn mutate(&self, op: PendingOp) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        let mut s = self.lock();
        s.count()?;
        let used = s.used();
        let len = s
            .files
            .get(&self.path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file vanished"))?
            .current
            .len() as u64;
        let (op, full) = match (s.capacity, op) {
            (Some(cap), PendingOp::Write { off, data })
                if off + data.len() as u64 > len
                    && used + (off + data.len() as u64 - len) > cap =>
            {
                // A full disk: what fits is written, then the write fails.
                let room = cap.saturating_sub(used);
                let keep = (len + room).saturating_sub(off).min(data.len() as u64) as usize;
                let partial = (keep > 0).then(|| PendingOp::Write {
                    off,
                    data: data[..keep].to_vec(),
                });
                (partial, true)
            }
            (Some(cap), PendingOp::SetLen(new)) if new > len && used + (new - len) > cap => {
                (None, true)
            }
            (_, op) => (Some(op), false),
        };
        if let Some(op) = op {
            if let Some(file) = s.files.get_mut(&self.path) {
                op.apply(&mut file.current, None);
            }
            s.pending.push((self.path.clone(), op));
        }
        if full {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (FaultVfs capacity)",
            ));
        }
        Ok(())
    }
}

impl VfsFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let s = self.lock();
        if s.crashed {
            return Err(crash_error());
        }
        let cur = s
            .files
            .get(&self.path)
            .map(|f| f.current.as_slice())
            .unwrap_or(&[]);
        let off = usize::try_from(off).unwrap_or(usize::MAX);
        if off >= cur.len() {
            return Ok(0);
        }
        let n = buf.len().min(cur.len() - off);
        buf[..n].copy_from_slice(&cur[off..off + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.mutate(PendingOp::Write {
            off,
            data: buf.to_vec(),
        })
    }

    fn len(&self) -> io::Result<u64> {
        let s = self.lock();
        if s.crashed {
            return Err(crash_error());
        }
        Ok(s.files
            .get(&self.path)
            .map(|f| f.current.len() as u64)
            .unwrap_or(0))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.mutate(PendingOp::SetLen(len))
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        let mut s = self.lock();
        s.count()?;
        let pending = std::mem::take(&mut s.pending);
        let mut rest = Vec::with_capacity(pending.len());
        for (path, op) in pending {
            if path == self.path {
                if let Some(f) = s.files.get_mut(&path) {
                    op.apply(&mut f.durable, None);
                }
            } else {
                rest.push((path, op));
            }
        }
        s.pending = rest;
        Ok(())
    }
}
