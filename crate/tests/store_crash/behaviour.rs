//! Plain behaviour of the file store over the fault-injecting VFS.

use super::*;

use std::path::Path;
use std::time::Duration;

use outpost::store::file::DATA_START;
use outpost::store::vfs::{DirLock, LockError, LockMode, Vfs, VfsFile};

#[test]
fn group_commit_on_real_files() {
    let dir = std::env::temp_dir().join(format!("outpost-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let w = Workload::new(7, 60);
    {
        let store = FileStore::open(&dir, FileStoreOptions::default()).unwrap();
        assert_eq!(block_on(store.read_meta()).unwrap(), None);
        assert!(matches!(
            block_on(store.read_page(1)),
            Err(StoreError::PageNotFound(1))
        ));
        let specs: Vec<Spec> = w.steps.iter().flat_map(step_specs).collect();
        // All 60 commits issued at once: the writer merges them into few groups.
        let futs: Vec<_> = specs.iter().map(|s| store.commit(w.commit_of(s))).collect();
        for r in block_on(join_all(futs)) {
            r.unwrap();
        }
        block_on(store.sync()).unwrap();
        assert_eq!(check_state(&w, &store, &|| "live".into()), 60);
        let st = store.stats();
        assert_eq!(st.commits, 60);
        assert!(st.groups < 60, "no grouping happened: {st:?}");
        assert!(st.fsyncs <= st.groups + 4, "{st:?}");
        block_on(store.close()).unwrap();
        assert!(matches!(
            block_on(store.commit(w.commit_of(&specs[0]))),
            Err(StoreError::Closed)
        ));
    }
    let store = FileStore::open(&dir, FileStoreOptions::default()).unwrap();
    assert_eq!(check_state(&w, &store, &|| "reopened".into()), 60);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Where a lone commit (`PageStore::commit_alone`) is written: in the
/// caller's thread when the writer thread is idle and the commit small;
/// otherwise by the writer thread, after every request sent before it.
#[test]
fn lone_commits_are_written_in_the_callers_thread_when_the_writer_is_idle() {
    let vfs = FaultVfs::new();
    let store = FileStore::open(DIR, opts(&vfs)).unwrap();
    let page = |id: u64, no: u64| (no, Arc::new(page_content(id, no)));
    let commit = |id: u64, pages: Vec<u64>| Commit {
        pages: pages.into_iter().map(|no| page(id, no)).collect(),
        meta: self_checked_meta(id),
        durability: Durability::Durable,
    };
    assert!(store.commits_alone());
    block_on(store.commit_alone(commit(1, vec![1, 2]))).unwrap();
    assert_eq!(store.stats().inline_commits, 1);
    assert_eq!(
        block_on(store.read_page(2)).unwrap()[..],
        page_content(1, 2)[..]
    );
    // Pages staged for it: the writer thread has a request in flight, or
    // staged frames, so the commit goes to it and finds them in order.
    let c = commit(2, vec![3, 4]);
    store.stage(vec![c.pages[0].clone()]);
    block_on(store.commit_alone(c)).unwrap();
    let st = store.stats();
    assert_eq!(
        (st.inline_commits, st.commits, st.staged_kept),
        (1, 2, 1),
        "{st:?}"
    );
    // More pages than a lone commit writes in the caller's thread.
    block_on(store.commit_alone(commit(3, (1..=17).collect()))).unwrap();
    assert_eq!(store.stats().inline_commits, 1);
    // The writer thread may still be busy with it (a checkpoint after it):
    // lone commits go to the thread until it is idle again.
    let mut id = 4;
    while store.stats().inline_commits < 2 {
        assert!(id < 400, "no lone commit in this thread after a busy spell");
        std::thread::sleep(std::time::Duration::from_millis(5));
        block_on(store.commit_alone(commit(id, vec![5]))).unwrap();
        id += 1;
    }
    let last = id - 1;
    assert_eq!(
        block_on(store.read_meta()).unwrap(),
        Some(self_checked_meta(last))
    );
    let durable = vfs.durable_files();
    block_on(store.close()).unwrap();
    assert!(matches!(
        block_on(store.commit_alone(commit(id, vec![1]))),
        Err(StoreError::Closed)
    ));
    // Everything acknowledged survives a crash that keeps only synced bytes.
    let store = FileStore::open(DIR, opts(&FaultVfs::with_files(durable))).unwrap();
    assert_eq!(
        block_on(store.read_meta()).unwrap(),
        Some(self_checked_meta(last))
    );
    assert_eq!(
        block_on(store.read_page(3)).unwrap()[..],
        page_content(3, 3)[..]
    );
    assert_eq!(
        block_on(store.read_page(5)).unwrap()[..],
        page_content(last, 5)[..]
    );
    drop(store);
    // Turned off: every commit goes to the writer thread.
    let vfs = FaultVfs::new();
    let off = FileStoreOptions {
        inline_commit: false,
        ..opts(&vfs)
    };
    let store = FileStore::open(DIR, off).unwrap();
    assert!(!store.commits_alone());
    block_on(store.commit_alone(commit(1, vec![1]))).unwrap();
    let st = store.stats();
    assert_eq!((st.inline_commits, st.commits), (0, 1), "{st:?}");
}

#[test]
fn invalid_commits_are_refused() {
    let vfs = FaultVfs::new();
    let store = FileStore::open(DIR, opts(&vfs)).unwrap();
    let bad = Commit {
        pages: vec![(0, Arc::new(vec![0; PAGE_SIZE]))],
        meta: vec![],
        durability: Durability::Durable,
    };
    assert!(matches!(
        block_on(store.commit(bad)),
        Err(StoreError::InvalidCommit(_))
    ));
    let bad = Commit {
        pages: vec![(1, Arc::new(vec![0; 10]))],
        meta: vec![],
        durability: Durability::Durable,
    };
    assert!(matches!(
        block_on(store.commit(bad)),
        Err(StoreError::InvalidCommit(_))
    ));
}

/// A file system that holds back the checkpoint's page writes into the data
/// file while its gate is shut, to see what readers can do meanwhile.
struct GateVfs {
    inner: FaultVfs,
    gate: Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    /// (shut, a write is waiting at it)
    state: std::sync::Mutex<(bool, bool)>,
    changed: std::sync::Condvar,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn shut(&self) {
        self.lock().0 = true;
    }
    /// Opens the gate (also when a test fails, so no writer waits forever).
    fn open(&self) {
        self.lock().0 = false;
        self.changed.notify_all();
    }
    fn pass(&self) {
        let mut s = self.lock();
        if s.0 {
            s.1 = true;
            self.changed.notify_all();
            while s.0 {
                s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
    /// Whether a write reached the shut gate within `limit`.
    fn reached_within(&self, limit: std::time::Duration) -> bool {
        let s = self.lock();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, limit, |s| !s.1)
            .unwrap_or_else(|e| e.into_inner());
        s.1
    }
}

struct GateFile {
    inner: Box<dyn VfsFile>,
    gate: Option<Arc<Gate>>,
}

impl VfsFile for GateFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> std::io::Result<()> {
        // Pages only (the header slots lie before `DATA_START`).
        if let Some(g) = &self.gate
            && off >= DATA_START
        {
            g.pass();
        }
        self.inner.write_at(buf, off)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
}

impl Vfs for GateVfs {
    fn open(&self, path: &Path, create: bool) -> std::io::Result<Box<dyn VfsFile>> {
        let data = path.file_name().is_some_and(|n| n == DATA_FILE);
        Ok(Box::new(GateFile {
            inner: self.inner.open(path, create)?,
            gate: data.then(|| self.gate.clone()),
        }))
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn open_read_only(&self, path: &Path) -> std::io::Result<Box<dyn VfsFile>> {
        self.inner.open_read_only(path)
    }
    fn lock_dir(&self, dir: &Path, mode: LockMode) -> Result<DirLock, LockError> {
        self.inner.lock_dir(dir, mode)
    }
}

/// A checkpoint copying the WAL's pages into the data file does not hold up
/// readers: while its page writes are held back, a page of the data file
/// and a page of the WAL both read (a page the checkpoint is writing is read
/// from the WAL's copy in memory). Before, the copy held the WAL index's
/// write lock and every read waited for it.
#[test]
fn reads_go_on_while_a_checkpoint_copies_pages() {
    let gate = Arc::new(Gate::default());
    // Whatever happens below, no writer is left waiting at the gate.
    struct Opens(Arc<Gate>);
    impl Drop for Opens {
        fn drop(&mut self) {
            self.0.open();
        }
    }
    let _opens = Opens(gate.clone());
    let vfs = GateVfs {
        inner: FaultVfs::new(),
        gate: gate.clone(),
    };
    let mut o = opts(&FaultVfs::new());
    o.vfs = Arc::new(vfs);
    let commit = |id: u64, pages: std::ops::RangeInclusive<u64>| Commit {
        pages: pages
            .map(|no| (no, Arc::new(page_content(id, no))))
            .collect(),
        meta: self_checked_meta(id),
        durability: Durability::Durable,
    };
    // Pages 1..=4 in the data file (the close checkpoints), the WAL empty.
    {
        let store = FileStore::open(DIR, o.clone()).unwrap();
        block_on(store.commit(commit(1, 1..=4))).unwrap();
        block_on(store.close()).unwrap();
    }
    let store = Arc::new(FileStore::open(DIR, o).unwrap());
    let before = store.stats().checkpoints;
    gate.shut();
    // Twelve pages fill the WAL to its threshold: the writer thread
    // checkpoints after the commit, and its first page write waits.
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || block_on(store.commit(commit(2, 20..=31))))
    };
    assert!(
        gate.reached_within(Duration::from_secs(20)),
        "no checkpoint wrote a page"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || {
            let _ = tx.send((block_on(store.read_page(2)), block_on(store.read_page(25))));
        })
    };
    let (data, wal) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("reads waited for the checkpoint's page writes");
    assert_eq!(*data.unwrap(), page_content(1, 2));
    assert_eq!(*wal.unwrap(), page_content(2, 25));
    assert_eq!(
        store.stats().checkpoints,
        before,
        "the checkpoint is still held back"
    );
    gate.open();
    writer.join().unwrap().unwrap();
    reader.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.stats().checkpoints == before {
        assert!(Instant::now() < deadline, "the checkpoint did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
    // After the checkpoint both come from the data file.
    assert_eq!(*block_on(store.read_page(2)).unwrap(), page_content(1, 2));
    assert_eq!(*block_on(store.read_page(25)).unwrap(), page_content(2, 25));
    block_on(store.close()).unwrap();
}
