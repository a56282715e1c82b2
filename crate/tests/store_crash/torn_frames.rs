//! Torn frames written over older frames of the WAL.

use super::*;

/// Regression (found by the engine crash test): a write torn at the sector
/// boundary between a frame's header and its payload leaves the new header in
/// front of the payload of the frame an earlier WAL generation kept in that slot.
/// Here the commit frames of both generations start at 7 * 4160 = 29120, so
/// their payloads start at 29184 = 57 * 512 (in format 2 every eighth frame
/// did; in format 3 frames have different lengths, and the pages are chosen
/// to put the commit frames there). When both payloads are meta records carrying their own CRC-32 (the
/// engine's do), a CRC-32 over header and payload cannot tell them apart: the
/// appended CRC makes the difference of the two payloads a multiple of the CRC
/// polynomial. The old frame store accepted the mixed frame and recovered the
/// stale meta record of the older generation, older than an acknowledged durable
/// commit. Every 512-byte tear of the last write must recover the durable commit.
#[test]
fn torn_frame_over_an_older_generation_is_not_replayed() {
    let vfs = FaultVfs::new();
    let mut o = opts(&vfs);
    o.checkpoint_wal_bytes = 1 << 30;
    // Page 14 stores 3968 bytes (a 4032-byte frame), so that commit 3's
    // commit frame lands where commit 1's did.
    let content = |id: u64, p: u64| {
        let mut b = page_content(id, p);
        if p == 14 {
            b[3968..].fill(0);
        }
        b
    };
    let page = |id: u64, p: u64| Arc::new(content(id, p));
    let commit = |store: &FileStore, id: u64, pages: std::ops::RangeInclusive<u64>, durability| {
        block_on(store.commit(Commit {
            pages: pages.map(|p| (p, page(id, p))).collect(),
            meta: self_checked_meta(id),
            durability,
        }))
        .unwrap();
    };
    // Generation A: commit 1 = pages 1..=7 (frames of 4160 bytes), its
    // commit frame at 29120.
    let store = FileStore::open(DIR, o.clone()).unwrap();
    commit(&store, 1, 1..=7, Durability::Durable);
    drop(store); // checkpoints; the WAL keeps generation A's frames
    // Generation B (open checkpoints again: a fresh salt, WAL restarts at slot 0).
    let store = FileStore::open(DIR, o.clone()).unwrap();
    commit(&store, 2, 8..=8, Durability::Durable); // frames 0, 1: acknowledged durable
    commit(&store, 3, 9..=14, Durability::Relaxed); // frames 2..=8: written, never fsynced
    let durable = vfs.durable_files();
    let current = vfs.current_files();
    std::mem::forget(store); // crash: no close
    let f = frames(&current[&wal_path()], 9);
    let (start, end) = (f[2].0, f[8].0 + f[8].1);
    assert_eq!(
        f[8].0,
        7 * FRAME_SIZE,
        "commit 3's commit frame over commit 1's"
    );
    assert_eq!((f[8].0 + FRAME_HEADER) % 512, 0);
    assert!(current[&wal_path()][..start] == durable[&wal_path()][..start]);
    assert!(current[&wal_path()][start..end] != durable[&wal_path()][start..end]);
    let mut checked = 0;
    // Commit 3's write torn at every sector boundary inside it, then intact.
    let mut recovered = [0u64; 4];
    for cut in (start.next_multiple_of(512)..end).step_by(512).chain([end]) {
        let mut img = durable.clone();
        let wal = img.get_mut(&wal_path()).unwrap();
        wal[..cut].copy_from_slice(&current[&wal_path()][..cut]);
        // Commit 3 is complete once the rest of its write equals what is there
        // already (the zero padding after the meta record in slot 7).
        let want = if wal[..end] == current[&wal_path()][..end] {
            3
        } else {
            2
        };
        let store = FileStore::open(DIR, opts(&FaultVfs::with_files(img)))
            .unwrap_or_else(|e| panic!("torn at {cut}: open failed: {e}"));
        let meta = block_on(store.read_meta()).unwrap().unwrap();
        let got = u64::from_le_bytes(meta[..8].try_into().unwrap());
        assert_eq!(
            meta,
            self_checked_meta(want),
            "torn at {cut}: recovered commit {got}, want commit {want} (commit 2 was acknowledged durable)"
        );
        for p in 1..=14u64 {
            let by = match p {
                1..=7 => 1,
                8 => 2,
                _ => 3,
            };
            match block_on(store.read_page(p)) {
                Ok(buf) if by <= want => {
                    assert!(buf[..] == content(by, p)[..], "torn at {cut}: page {p}")
                }
                Err(StoreError::PageNotFound(_)) if by > want => {}
                other => panic!(
                    "torn at {cut}: page {p} (commit {by}, recovered commit {want}): {:?}",
                    other.map(|b| u64::from_le_bytes(b[..8].try_into().unwrap()))
                ),
            }
        }
        recovered[want as usize] += 1;
        checked += 1;
    }
    assert!(recovered[2] > 40 && recovered[3] >= 1, "{recovered:?}");
    println!("store crash images checked: {checked} (torn over an older generation)");
}
