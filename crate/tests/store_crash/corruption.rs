//! Corruption of synced WAL frames (reported with file and offset) and torn tails (dropped).

use super::*;

fn data_path() -> PathBuf {
    PathBuf::from(DIR).join(DATA_FILE)
}

fn six_fsynced_groups(w: &Workload) -> FileImages {
    let vfs = FaultVfs::new();
    let mut o = opts(&vfs);
    o.checkpoint_wal_bytes = 1 << 30;
    let store = FileStore::open(DIR, o).unwrap();
    for s in w.steps.iter().flat_map(step_specs).take(6) {
        let mut c = w.commit_of(&s);
        c.pages.truncate(1);
        c.durability = Durability::Durable;
        block_on(store.commit(c)).unwrap();
    }
    assert_eq!(store.stats().groups, 6);
    let files = vfs.durable_files();
    std::mem::forget(store); // no close: keep the WAL as it is on disk
    files
}

fn single_page_workload() -> Workload {
    // States for commits that write only their first page.
    let mut w = Workload::new(0xC0DE, 6);
    let specs: Vec<Spec> = w.steps.iter().flat_map(step_specs).collect();
    let mut states = vec![vec![0u64; PAGES as usize + 1]];
    for s in specs.iter().take(6) {
        let mut st = states.last().unwrap().clone();
        st[s.pages[0] as usize] = s.id;
        states.push(st);
    }
    w.states = states;
    w.steps = specs
        .into_iter()
        .take(6)
        .map(|mut s| {
            s.pages.truncate(1);
            Step::One(s)
        })
        .collect();
    w
}

#[test]
fn flipped_byte_in_fsynced_group_is_reported() {
    let w = single_page_workload();
    let files = six_fsynced_groups(&w);
    let frames = frames(&files[&wal_path()], 12);
    let mut checked = 0;
    // Frames 0..10 belong to groups 1..5, each followed by later fsynced groups.
    for (slot, &(at, _, stored)) in frames.iter().enumerate().take(10) {
        // Its length field, a header field, the checksum, the first and
        // the last stored byte of its payload.
        for within in [3usize, 6, 50, FRAME_HEADER + 9, FRAME_HEADER + stored - 1] {
            let mut img = files.clone();
            let wal = img.get_mut(&wal_path()).unwrap();
            wal[at + within] ^= 0x40;
            let vfs = FaultVfs::with_files(img);
            match FileStore::open(DIR, opts(&vfs)) {
                Err(StoreError::Corrupt { file, offset, .. }) => {
                    assert!(file.ends_with(WAL_FILE), "frame {slot}: wrong file {file}");
                    assert_eq!(offset, at as u64, "frame {slot} byte {within}");
                }
                Err(e) => panic!("frame {slot}: expected Corrupt, got {e}"),
                Ok(_) => panic!("frame {slot} byte {within}: damaged fsynced frame accepted"),
            }
            checked += 1;
        }
    }
    // The last group (frames 10, 11) has nothing after it: indistinguishable
    // from a torn tail, so it is dropped and commit 5 is recovered.
    for (slot, &(at, _, _)) in frames.iter().enumerate().skip(10) {
        let mut img = files.clone();
        img.get_mut(&wal_path()).unwrap()[at + FRAME_HEADER + 1] ^= 1;
        assert_eq!(
            check_image(&w, img, 5, 5, &|| format!("last group slot {slot}")),
            5
        );
        checked += 1;
    }
    println!("store crash images checked: {checked} (flipped bytes)");
}

#[test]
fn torn_last_group_is_dropped() {
    let w = single_page_workload();
    let files = six_fsynced_groups(&w);
    let f = frames(&files[&wal_path()], 12);
    let mut checked = 0;
    let (last, second) = (f[10].0, f[11].0);
    let end = second + f[11].1;
    // Cut the WAL inside the last group, or overwrite its end with garbage.
    for cut in [
        last,
        last + 512,
        last + f[10].1 - 1,
        second,
        second + FRAME_HEADER + 1,
        // Its last stored byte (the padding after it is no data).
        second + FRAME_HEADER + f[11].2 - 1,
    ] {
        let mut img = files.clone();
        img.get_mut(&wal_path()).unwrap().truncate(cut);
        assert_eq!(check_image(&w, img, 5, 5, &|| format!("cut at {cut}")), 5);
        let mut img = files.clone();
        img.get_mut(&wal_path()).unwrap()[cut..end].fill(0xA5);
        assert_eq!(
            check_image(&w, img, 5, 5, &|| format!("garbage from {cut}")),
            5
        );
        checked += 2;
    }
    // Intact: all six commits.
    assert_eq!(check_image(&w, files, 6, 6, &|| "intact".into()), 6);
    println!("store crash images checked: {} (torn tails)", checked + 1);
}

#[test]
fn damaged_header_after_wal_restart_is_reported() {
    let w = single_page_workload();
    let vfs = FaultVfs::new();
    let store = FileStore::open(DIR, opts(&vfs)).unwrap();
    for s in w.steps.iter().flat_map(step_specs) {
        let mut c = w.commit_of(&s);
        c.durability = Durability::Durable;
        block_on(store.commit(c)).unwrap();
    }
    drop(store); // checkpoints: header slot flips, WAL restarts under a new salt
    let store = FileStore::open(DIR, opts(&vfs)).unwrap();
    block_on(store.sync()).unwrap();
    let files = vfs.durable_files();
    drop(store);
    // Which slot is active: the one with the higher sequence number; damaging
    // it while the WAL already uses its salt must be reported.
    let data = &files[&data_path()];
    let active = if seq_of(data, 1) > seq_of(data, 0) {
        1
    } else {
        0
    };
    // Before the damage: opens.
    assert_eq!(
        check_image(&w, files.clone(), 6, 6, &|| "header intact".into()),
        6
    );
    // Damage the active header slot of a store whose WAL is empty: the older slot
    // and its (durable) WAL generation still describe the same state.
    let mut img = files.clone();
    img.get_mut(&data_path()).unwrap()[active * HEADER_BLOCK as usize + 30] ^= 0xFF;
    let vfs2 = FaultVfs::with_files(img);
    let store = FileStore::open(DIR, opts(&vfs2)).unwrap();
    assert_eq!(check_state(&w, &store, &|| "older header".into()), 6);
    // Now write under the new salt, then damage the active header: Corrupt.
    block_on(store.commit(w.commit_of(&Spec {
        id: 6,
        pages: vec![1],
        durable: true,
    })))
    .unwrap();
    let files = vfs2.durable_files();
    std::mem::forget(store);
    let data = &files[&data_path()];
    let active = if seq_of(data, 1) > seq_of(data, 0) {
        1
    } else {
        0
    };
    let mut img = files;
    img.get_mut(&data_path()).unwrap()[active * HEADER_BLOCK as usize + 30] ^= 0xFF;
    match FileStore::open(DIR, opts(&FaultVfs::with_files(img))) {
        Err(StoreError::Corrupt { file, offset, .. }) => {
            assert!(file.ends_with(DATA_FILE));
            assert_eq!(offset, active as u64 * HEADER_BLOCK);
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("damaged header accepted"),
    }
    // Both header slots damaged: Corrupt naming the data file.
    let mut img = vfs2.durable_files();
    let d = img.get_mut(&data_path()).unwrap();
    d[30] ^= 1;
    d[HEADER_BLOCK as usize + 30] ^= 1;
    assert!(matches!(
        FileStore::open(DIR, opts(&FaultVfs::with_files(img))),
        Err(StoreError::Corrupt { offset: 0, .. })
    ));
}

fn seq_of(data: &[u8], slot: usize) -> u64 {
    u64::from_le_bytes(data[slot * 4096 + 16..slot * 4096 + 24].try_into().unwrap())
}
