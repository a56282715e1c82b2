//! Tests of the B+tree against a model, on an in-memory page map.

use super::*;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Default)]
struct Mem {
    pages: HashMap<PageNo, PageBuf>,
    dirty: HashSet<PageNo>,
    /// Pages changed in place since their checksum was set.
    changed: HashSet<PageNo>,
    freed: Vec<PageNo>,
    next: PageNo,
}

impl PageRead for Mem {
    async fn read(&self, no: PageNo, kind: u8) -> Result<PageBuf, Error> {
        let b = self
            .pages
            .get(&no)
            .cloned()
            .ok_or_else(|| corrupt(no, "missing".into()))?;
        let mut sealed = (*b).clone();
        if self.changed.contains(&no) {
            set_checksum(&mut sealed);
        }
        check_page(&sealed, no, if kind == 0 { page_kind(&b) } else { kind })?;
        Ok(b)
    }
}
impl PageWrite for Mem {
    fn alloc(&mut self) -> PageNo {
        self.next += 1;
        self.dirty.insert(self.next);
        self.next
    }
    fn is_dirty(&self, no: PageNo) -> bool {
        self.dirty.contains(&no)
    }
    fn free(&mut self, no: PageNo) {
        self.freed.push(no);
        self.pages.remove(&no);
    }
    fn write(&mut self, no: PageNo, mut buf: PageBuf) {
        set_checksum(Arc::make_mut(&mut buf).as_mut_slice());
        self.pages.insert(no, buf);
    }
    fn has_spare(&self, _bound: PageNo, _need: usize) -> bool {
        // Allocates ever higher numbers.
        false
    }
    fn page_mut(&mut self, no: PageNo) -> Option<&mut Vec<u8>> {
        if !self.dirty.contains(&no) {
            return None;
        }
        // Checksummed again when read (the engine does it at its flush).
        self.changed.insert(no);
        self.pages.get_mut(&no).and_then(Arc::get_mut)
    }
}

fn run<F: Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// A tree of `n` keys `key(0)..key(n - 1)`, inserted in that order, each
/// with the value `val`.
async fn filled(m: &mut Mem, n: u32, key: impl Fn(u32) -> String, val: &[u8]) -> PageNo {
    let mut root = 0;
    for i in 0..n {
        root = insert(m, root, key(i).as_bytes(), val).await.unwrap().0;
    }
    root
}

async fn all(m: &Mem, root: PageNo) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v = Vec::new();
    scan(m, root, b"", |k, val| {
        v.push((k.to_vec(), val));
        true
    })
    .await
    .unwrap();
    v
}

#[test]
fn insert_get_remove_against_model() {
    run(async {
        let mut m = Mem::default();
        let mut model = BTreeMap::new();
        let mut root = 0;
        let mut x: u64 = 12345;
        for step in 0..6000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("k{:05}", x % 3000).into_bytes();
            if step % 7 == 3 {
                // New generation: nothing is dirty any more (copy-on-write from here).
                m.dirty.clear();
            }
            if x.is_multiple_of(5) {
                let (r, old) = remove(&mut m, root, &key).await.unwrap();
                root = r;
                assert_eq!(old, model.remove(&key).is_some());
            } else {
                let len = if x.is_multiple_of(97) {
                    9000
                } else {
                    (x % 300) as usize
                };
                let val = vec![(x % 251) as u8; len];
                let (r, old) = insert(&mut m, root, &key, &val).await.unwrap();
                root = r;
                assert_eq!(old, model.insert(key.clone(), val).is_some());
            }
        }
        let got = all(&m, root).await;
        let want: Vec<_> = model.clone().into_iter().collect();
        assert_eq!(got, want);
        for (k, v) in &model {
            assert_eq!(get(&m, root, k).await.unwrap().as_ref(), Some(v));
        }
        let mut pages = Vec::new();
        let n = collect_pages(&m, root, &mut pages).await.unwrap();
        assert_eq!(n as usize, model.len());
        // Every live page is reachable exactly once, and no other page is live.
        let live: HashSet<_> = pages.iter().copied().collect();
        assert_eq!(live.len(), pages.len());
        assert_eq!(live, m.pages.keys().copied().collect::<HashSet<_>>());
        // Remove everything.
        for k in model.keys() {
            let (r, old) = remove(&mut m, root, k).await.unwrap();
            root = r;
            assert!(old);
        }
        assert_eq!(root, 0);
        assert!(m.pages.is_empty());
    });
}

/// A reverse scan visits exactly the keys below its bound, in descending
/// order, whatever the bound (absent, before every key, between keys, equal
/// to a key, after every key), and stops when told.
#[test]
fn a_reverse_scan_is_the_forward_scan_reversed() {
    run(async {
        let mut m = Mem::default();
        let root = filled(&mut m, 2500, |i| format!("k{:05}", i * 2), &[7u8; 1500]).await;
        let forward = all(&m, root).await;
        // Two entries a leaf: three levels of pages.
        let mut pages = Vec::new();
        collect_pages(&m, root, &mut pages).await.unwrap();
        assert!(pages.len() > 1250, "{} pages", pages.len());
        let keys: Vec<Vec<u8>> = forward.iter().map(|(k, _)| k.clone()).collect();
        let rev = |end: Option<Vec<u8>>| {
            let m = &m;
            async move {
                let mut v = Vec::new();
                scan_rev(m, root, end.as_deref(), |k, _| {
                    v.push(k.to_vec());
                    true
                })
                .await
                .unwrap();
                v
            }
        };
        let mut want = keys.clone();
        want.reverse();
        assert_eq!(rev(None).await, want);
        for end in [
            "", "a", "k00000", "k00001", "k01234", "k01235", "k02500", "k04998", "k04999", "z",
        ] {
            let got = rev(Some(end.as_bytes().to_vec())).await;
            let mut want: Vec<Vec<u8>> = keys
                .iter()
                .filter(|k| k.as_slice() < end.as_bytes())
                .cloned()
                .collect();
            want.reverse();
            assert_eq!(got, want, "end {end}");
        }
        // Stops after the rows it needs.
        let mut seen = 0;
        scan_rev(&m, root, Some(b"k03000"), |_, _| {
            seen += 1;
            seen < 3
        })
        .await
        .unwrap();
        assert_eq!(seen, 3);
        assert!(rev(Some(b"x".to_vec())).await.len() == 2500);
        let empty = Mem::default();
        let mut none = 0;
        scan_rev(&empty, 0, None, |_, _| {
            none += 1;
            true
        })
        .await
        .unwrap();
        assert_eq!(none, 0);
    });
}

#[test]
fn sequential_appends_fill_pages() {
    run(async {
        let mut m = Mem::default();
        let root = filled(&mut m, 5000, |i| format!("doc/{i:08}"), &[7u8; 100]).await;
        let mut pages = Vec::new();
        collect_pages(&m, root, &mut pages).await.unwrap();
        // ~114 bytes an entry: ideal is ~36 per page -> ~140 leaves; allow 10%.
        assert!(pages.len() < 160, "{} pages", pages.len());
        let mut seen = Vec::new();
        scan(&m, root, b"doc/00004990", |k, _| {
            seen.push(String::from_utf8(k.to_vec()).unwrap());
            true
        })
        .await
        .unwrap();
        assert_eq!(seen.len(), 10);
        assert_eq!(seen[0], "doc/00004990");
    });
}

#[test]
fn corrupt_pages_are_errors_not_panics() {
    run(async {
        let mut m = Mem::default();
        let root = filled(&mut m, 500, |i| format!("{i:05}"), &[1u8; 50]).await;
        let keys: Vec<PageNo> = m.pages.keys().copied().collect();
        let mut x = 99u64;
        for no in keys {
            for _ in 0..20 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut b = (*m.pages[&no]).clone();
                let at = 4 + (x as usize % (PAGE_SIZE - 4));
                b[at] ^= 1 << (x % 8);
                // Re-seal some so structural checks, not only checksums, are exercised.
                if x.is_multiple_of(2) {
                    set_checksum(&mut b);
                }
                let saved = m.pages.insert(no, Arc::new(b)).unwrap();
                let _ = get(&m, root, b"00250").await;
                let _ = scan(&m, root, b"", |_, _| true).await;
                let _ = collect_pages(&m, root, &mut Vec::new()).await;
                m.pages.insert(no, saved);
            }
        }
    });
}

/// An overflow chain whose damage would loop: a page that claims no bytes
/// and points to itself (what the `page` fuzz target found: the integrity
/// check's scan never ended), and a chain of full pages that comes back
/// to its first page. Reads end with an error or a bounded walk, and
/// replacing the value frees each page of the old chain once at most.
#[test]
fn a_damaged_overflow_chain_never_loops_nor_frees_a_page_twice() {
    let value = vec![7u8; 3 * OVERFLOW_CAP - 100];
    for damage in [
        "chain back to its first page",
        "empty page pointing to itself",
    ] {
        run(async {
            let mut m = Mem::default();
            let root = insert(&mut m, 0, b"big", &value).await.unwrap().0;
            m.dirty.clear();
            let leaf = Leaf::decode(&m.pages[&root], root).unwrap();
            let Val::Overflow { first, len } = leaf.entries[0].1.clone() else {
                panic!("the value is not in an overflow chain");
            };
            let chain = chain_pages(&m, first, len).await.unwrap();
            assert_eq!(chain.len(), 3);
            let (at, count, next) = match damage {
                "empty page pointing to itself" => (chain[0], 0u32, chain[0]),
                _ => (chain[1], OVERFLOW_CAP as u32, chain[0]),
            };
            let mut b = (*m.pages[&at]).clone();
            set_u64(&mut b, HDR, next);
            set_u32(&mut b, HDR + 8, count);
            set_checksum(&mut b);
            m.pages.insert(at, Arc::new(b));

            assert!(get(&m, root, b"big").await.is_err(), "{damage}: read");
            assert!(
                chain_pages(&m, first, len).await.is_err(),
                "{damage}: chain"
            );
            assert!(
                scan(&m, root, b"", |_, _| true).await.is_err(),
                "{damage}: scan"
            );
            // Replacing the value frees the old chain up to its damage.
            insert(&mut m, root, b"big", b"small").await.unwrap();
            let mut freed = m.freed.clone();
            freed.sort_unstable();
            let before = freed.len();
            freed.dedup();
            assert_eq!(
                freed.len(),
                before,
                "{damage}: a page freed twice: {:?}",
                m.freed
            );
            assert!(freed.contains(&chain[0]), "{damage}: first page not freed");
        });
    }
}

#[test]
fn fixed_bytes_for_a_leaf_and_a_branch() {
    // wasm32 and x86_64 must produce these exact bytes (module docs: page format).
    let leaf = Leaf {
        entries: vec![
            (
                Bytes::Own(b"a".to_vec()),
                Val::Inline(Bytes::Own(b"xy".to_vec())),
            ),
            (
                Bytes::Own(b"b".to_vec()),
                Val::Overflow {
                    first: 9,
                    len: 5000,
                },
            ),
        ],
    };
    let page = leaf.encode(3);
    #[rustfmt::skip]
    let want: &[u8] = &[
        0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, KIND_LEAF, 0, 2, 0,
        20, 0, 28, 0,
        1, 0, b'a', 0, 2, 0, b'x', b'y',
        1, 0, b'b', 1, 9, 0, 0, 0, 0, 0, 0, 0, 0x88, 0x13, 0, 0,
    ];
    assert_eq!(&page[..want.len()], want);
    assert!(page[want.len()..].iter().all(|&b| b == 0));
    let branch = Branch {
        keys: vec![Bytes::Own(b"m".to_vec())],
        children: vec![5, 6],
    };
    let page = branch.encode(4);
    #[rustfmt::skip]
    let want: &[u8] = &[
        0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, KIND_BRANCH, 0, 1, 0,
        5, 0, 0, 0, 0, 0, 0, 0,
        26, 0,
        1, 0, b'm', 6, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(&page[..want.len()], want);
    assert!(page[want.len()..].iter().all(|&b| b == 0));
    let decoded = Leaf::decode(&leaf.encode(3), 3).unwrap();
    assert_eq!(decoded.entries, leaf.entries);
}

/// Every separator key of the branches of the tree at `root`.
async fn separators(m: &Mem, root: PageNo) -> Vec<Vec<u8>> {
    let mut pages = Vec::new();
    collect_pages(m, root, &mut pages).await.unwrap();
    let mut out = Vec::new();
    for no in pages {
        let b = m.read(no, 0).await.unwrap();
        if page_kind(&b) == KIND_BRANCH {
            let br = Branch::decode(&b, no).unwrap();
            out.extend(br.keys.iter().map(|k| k.to_vec()));
        }
    }
    out
}

#[test]
fn scrubbed_separators_no_longer_copy_removed_keys() {
    run(async {
        let mut m = Mem::default();
        let key = |i: u32| format!("doc/{i:05}");
        let mut root = filled(&mut m, 3000, key, &[7u8; 100]).await;
        let gone = |i: u32| (1000..2000).contains(&i) || i.is_multiple_of(3);
        let mut removed = HashSet::new();
        for i in (0..3000).filter(|i| gone(*i)) {
            root = remove(&mut m, root, key(i).as_bytes()).await.unwrap().0;
            removed.insert(key(i).into_bytes());
        }
        let stale = separators(&m, root)
            .await
            .into_iter()
            .filter(|s| removed.contains(s))
            .count();
        assert!(stale > 0, "the test needs separators copying removed keys");
        let (root2, n) = scrub_separators(&mut m, root, &|k| removed.contains(k))
            .await
            .unwrap();
        assert_eq!(n as usize, stale);
        root = root2;
        for s in separators(&m, root).await {
            assert!(!removed.contains(&s), "{:?}", String::from_utf8_lossy(&s));
        }
        // The tree is sound and holds exactly the rest.
        let mut pages = Vec::new();
        collect_pages(&m, root, &mut pages).await.unwrap();
        let want: Vec<Vec<u8>> = (0..3000)
            .filter(|i| !gone(*i))
            .map(|i| key(i).into_bytes())
            .collect();
        let got: Vec<Vec<u8>> = all(&m, root).await.into_iter().map(|e| e.0).collect();
        assert_eq!(got, want);
        for k in &want {
            assert!(get(&m, root, k).await.unwrap().is_some());
        }
        // Inserting the removed keys again still works.
        for i in (0..3000).filter(|i| gone(*i)) {
            root = insert(&mut m, root, key(i).as_bytes(), b"v")
                .await
                .unwrap()
                .0;
        }
        assert_eq!(all(&m, root).await.len(), 3000);
        collect_pages(&m, root, &mut Vec::new()).await.unwrap();
    });
}

/// Pages of `m` as a scan reads them, with its read-ahead recorded.
struct Recording<'a> {
    m: &'a Mem,
    /// Leaves read, in order.
    leaves: std::cell::RefCell<Vec<PageNo>>,
    /// Read-ahead batches, in order, each with the number of leaves read
    /// before it was asked for.
    batches: std::cell::RefCell<Vec<(usize, Vec<PageNo>)>>,
}

impl PageRead for Recording<'_> {
    async fn read(&self, no: PageNo, kind: u8) -> Result<PageBuf, Error> {
        let b = self.m.read(no, kind).await?;
        if page_kind(&b) == KIND_LEAF {
            self.leaves.borrow_mut().push(no);
        }
        Ok(b)
    }
    async fn prefetch(&self, nos: &[PageNo]) -> usize {
        let read = self.leaves.borrow().len();
        self.batches.borrow_mut().push((read, nos.to_vec()));
        nos.len()
    }
}

#[test]
fn a_scan_reads_ahead_in_growing_batches_and_only_past_its_first_leaf() {
    run(async {
        let mut m = Mem::default();
        let key = |i: u32| format!("k{i:05}");
        // Four entries per leaf: 750 leaves under several parents.
        let root = filled(&mut m, 3000, key, &[7u8; 1000]).await;
        let rec = Recording {
            m: &m,
            leaves: Default::default(),
            batches: Default::default(),
        };

        // A long scan: the entries are exactly the model's.
        let mut got = Vec::new();
        scan(&rec, root, key(100).as_bytes(), |k, v| {
            assert_eq!(v.len(), 1000);
            got.push(String::from_utf8(k.to_vec()).unwrap());
            got.len() < 2000
        })
        .await
        .unwrap();
        assert_eq!(got, (100..2100).map(key).collect::<Vec<_>>());
        let leaves = rec.leaves.borrow().clone();
        let batches = rec.batches.borrow().clone();
        assert!(leaves.len() >= 400, "{} leaves", leaves.len());
        // Nothing is read ahead before the scan leaves its first leaf.
        assert_eq!(batches[0].0, 1, "first batch after the first leaf");
        assert_eq!(batches[0].1.len(), READ_AHEAD_FIRST);
        // Batches double up to the cap (a batch is cut short at the end of
        // its parent's children).
        let mut window = READ_AHEAD_FIRST;
        for (_, b) in &batches {
            assert!(
                !b.is_empty() && b.len() <= window,
                "batch of {} over {window}",
                b.len()
            );
            window = (window * 2).min(READ_AHEAD_MAX);
        }
        assert!(batches.iter().any(|(_, b)| b.len() == READ_AHEAD_MAX));
        // Every leaf after the first was asked for before it was read.
        for (i, leaf) in leaves.iter().enumerate().skip(1) {
            assert!(
                batches
                    .iter()
                    .any(|(before, b)| *before <= i && b.contains(leaf)),
                "leaf {i} ({leaf}) was not read ahead"
            );
        }
        // What was read ahead and not used is at most the last batch.
        let asked: HashSet<PageNo> = batches.iter().flat_map(|(_, b)| b.clone()).collect();
        let used: HashSet<PageNo> = leaves.iter().copied().collect();
        assert!(asked.difference(&used).count() <= READ_AHEAD_MAX);

        // A scan that ends in its first leaf, and a point lookup, read nothing ahead.
        rec.batches.borrow_mut().clear();
        let mut n = 0;
        scan(&rec, root, key(500).as_bytes(), |_, _| {
            n += 1;
            n < 2
        })
        .await
        .unwrap();
        assert!(
            get(&rec, root, key(1234).as_bytes())
                .await
                .unwrap()
                .is_some()
        );
        assert!(rec.batches.borrow().is_empty());
    });
}

/// The parent's side of a split spliced into the raw branch page is the page
/// a decode, insert and encode builds, byte for byte, at every position, and
/// a branch that cannot take the separator is left to the split.
#[test]
fn a_separator_spliced_into_a_branch_equals_a_rebuilt_branch() {
    use node::Branch;
    let key = |i: usize| Bytes::Own(format!("key-{:05}", 10 + 2 * i).into_bytes());
    for n in [1usize, 2, 7, 40] {
        let b = Branch {
            keys: (0..n).map(key).collect(),
            children: (0..=n as u64).map(|c| 100 + c).collect(),
        };
        let page = b.encode(9);
        for idx in 0..=n {
            let sep = format!("key-{:05}", 10 + 2 * idx - usize::from(idx > 0)).into_bytes();
            let got = node::branch_insert(&page, 9, idx, 555, &sep, 777)
                .unwrap()
                .expect("fits");
            let mut want = Branch {
                keys: b.keys.clone(),
                children: b.children.clone(),
            };
            want.children[idx] = 555;
            want.keys.insert(idx, Bytes::Own(sep.clone()));
            want.children.insert(idx + 1, 777);
            let mut got = got;
            seal(&mut got, 9, KIND_BRANCH, (n + 1) as u16);
            assert_eq!(&got[..], &want.encode(9)[..], "n {n} idx {idx}");
        }
        assert!(node::branch_insert(&page, 9, n + 1, 1, b"x", 2).is_err());
    }
    // A full branch: the splice declines.
    let mut b = Branch {
        keys: Vec::new(),
        children: vec![1],
    };
    while b.size() + node::branch_entry_len(&[0; 100]) <= BODY {
        let i = b.keys.len();
        b.keys.push(Bytes::Own(format!("{i:0100}").into_bytes()));
        b.children.push(2 + i as u64);
    }
    let page = b.encode(3);
    assert!(
        node::branch_insert(&page, 3, 0, 1, &[b'0'; 100], 9)
            .unwrap()
            .is_none()
    );
    assert!(
        node::branch_insert(&page, 3, 0, 1, b"0", 9)
            .unwrap()
            .is_some()
    );
}

/// An insert or replace done in the page itself leaves the page the copying
/// splice builds, byte for byte (zeroed free space included), for random
/// leaves, positions and entry sizes; an entry that does not fit leaves the
/// page as it was.
#[test]
fn a_leaf_spliced_in_place_equals_the_copied_splice() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut fitted = 0;
    let mut declined = 0;
    for round in 0..3000 {
        let n = rnd(40) as usize;
        let mut keys: Vec<Vec<u8>> = (0..n)
            .map(|_| format!("k{:06}", rnd(1_000_000)).into_bytes())
            .collect();
        keys.sort();
        keys.dedup();
        let mut leaf = node::Leaf::default();
        for k in &keys {
            let v = vec![b'v'; rnd(120) as usize];
            leaf.entries
                .push((Bytes::Own(k.clone()), Val::Inline(Bytes::Own(v))));
        }
        if leaf.size() > BODY {
            continue;
        }
        let page = leaf.encode(5);
        let n = keys.len();
        let replace = n > 0 && rnd(2) == 0;
        let pos = if replace {
            rnd(n as u64) as usize
        } else {
            rnd(n as u64 + 1) as usize
        };
        let key = if replace {
            keys[pos].clone()
        } else {
            format!("new-{round}").into_bytes()
        };
        let mut e = Vec::new();
        let big = if rnd(4) == 0 { 3000 } else { 100 };
        encode_leaf_entry(
            &mut e,
            &key,
            &Val::Inline(Bytes::Own(vec![b'e'; rnd(big) as usize])),
        );
        let copied = leaf_splice(&page, 5, pos, replace, Some(&e)).unwrap();
        let mut in_place = page.to_vec();
        let fits = node::leaf_splice_in_place(&mut in_place, 5, pos, replace, &e).unwrap();
        match copied {
            Some(want) => {
                assert!(fits, "round {round}");
                // The copy is sealed (page number, kind, count): the page
                // changed in place keeps its header but for the count.
                assert_eq!(&in_place[4..], &want[4..], "round {round}");
                fitted += 1;
            }
            None => {
                assert!(!fits, "round {round}");
                assert_eq!(&in_place[..], &page[..], "round {round}");
                declined += 1;
            }
        }
    }
    assert!(fitted > 1000 && declined > 50, "{fitted} {declined}");
}

/// A page built in a spare buffer (`store::spare`, the version a finished
/// transaction no longer needs) is the page a fresh buffer gives, byte for
/// byte, whatever the spare buffer held: the leaf splice, the branch
/// splice and the branch's child update each take one.
#[test]
fn pages_built_in_spare_buffers_equal_pages_built_in_fresh_ones() {
    use crate::store::spare;
    use node::Branch;
    let mut leaf = node::Leaf::default();
    for i in 0..20 {
        leaf.entries.push((
            Bytes::Own(format!("doc-{i:03}").into_bytes()),
            Val::Inline(Bytes::Own(vec![b'v'; 60])),
        ));
    }
    let leaf_page = leaf.encode(5);
    let mut e = Vec::new();
    encode_leaf_entry(
        &mut e,
        b"doc-007a",
        &Val::Inline(Bytes::Own(vec![b'e'; 90])),
    );
    let branch = Branch {
        keys: (0..7)
            .map(|i| Bytes::Own(format!("key-{i:03}").into_bytes()))
            .collect(),
        children: (0..8).map(|c| 100 + c).collect(),
    };
    let branch_page = branch.encode(9);
    let build = || {
        (
            leaf_splice(&leaf_page, 5, 8, false, Some(&e))
                .unwrap()
                .unwrap(),
            node::branch_insert(&branch_page, 9, 3, 555, b"key-002a", 777)
                .unwrap()
                .unwrap(),
            node::branch_set_child(&branch_page, 9, 4, 888).unwrap(),
        )
    };
    // This test's thread gave nothing yet: fresh buffers.
    let fresh = build();
    // Spare buffers full of a byte no page holds past its entries; the
    // three pages must take them (the same addresses come back).
    let mut given = HashSet::new();
    for _ in 0..3 {
        let junk = Arc::new(vec![0xA5u8; PAGE_SIZE]);
        given.insert(junk.as_ptr() as usize);
        spare::give(junk);
    }
    let reused = build();
    for (i, (a, b)) in [
        (&fresh.0, &reused.0),
        (&fresh.1, &reused.1),
        (&fresh.2, &reused.2),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(
            given.contains(&(b.as_ptr() as usize)),
            "page {i} was not built in a spare buffer"
        );
        assert_eq!(&a[..], &b[..], "page {i}");
    }
    // A buffer something else still holds is not kept.
    let held = Arc::new(vec![0u8; PAGE_SIZE]);
    let other = Arc::clone(&held);
    spare::give(held);
    let next = spare::take();
    assert_ne!(next.as_ptr(), other.as_ptr());
}
