//! Plain behaviour of the file store over the fault-injecting VFS.

use super::*;

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
