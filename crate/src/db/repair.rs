//! Records that do not decode: finding them and setting them aside.
//!
//! Reads skip a document record that does not decode (see
//! [`UnreadableRecord`]); the operator lists such records with
//! [`Database::find_unreadable`] and moves them aside with
//! [`Database::quarantine_unreadable`]: in one commit, each record's raw
//! bytes go to a local record under `quarantine/` (kept for forensics), and
//! the record leaves the documents tree and every index; the document and
//! collection counters are recounted from what remains, since what the bad
//! record counted for cannot be read from it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures::lock::MutexGuard;

use crate::btree::{self, PageRead};
use crate::codec::get_u64;
use crate::doc;
use crate::error::Error;
use crate::store::{PageNo, PageStore, StoreError};

use super::alloc::{WCtx, Working};
use super::meta::{Meta, Tree};
use super::read::UnreadableRecord;
use super::write::coll_key;
use super::{Database, Snapshot};

/// Key prefix of the local records holding set-aside records.
pub const QUARANTINE_PREFIX: &[u8] = b"quarantine/";

/// What one scan of the documents tree found.
#[derive(Default)]
struct DocScan {
    /// Records that do not decode or whose value does not load (a damaged
    /// overflow chain; no bytes then): (key, raw record, report).
    bad: Vec<(Vec<u8>, Vec<u8>, UnreadableRecord)>,
    /// How many of `bad` have a damaged overflow chain.
    broken_chains: usize,
    /// Live documents among the readable ones.
    live: u64,
    /// Tombstones among the readable ones.
    tombstones: u64,
    /// Live documents per collection key: (a name, count).
    colls: BTreeMap<Vec<u8>, (String, u64)>,
}

/// Why a record that did not load is unreadable: a page holding it (its
/// value's overflow chain, for the scans) is damaged (the reads' notes, the
/// integrity check's and the repair's reports).
pub(super) fn damaged_page(e: &Error) -> String {
    format!("a page holding it is damaged: {e}")
}

/// Scans every document record of `meta`'s trees through `r`; the etags of
/// the bad ones come from the etag index.
async fn scan_docs<R: PageRead>(r: &R, meta: &Meta) -> Result<DocScan, Error> {
    let mut s = DocScan::default();
    btree::scan_values(r, meta.root(Tree::Docs), b"", |k, rec| {
        let (rec, error) = match rec {
            Ok(rec) => match doc::decode_record_checked(&rec) {
                Ok(d) if d.meta.flags.is_tombstone() => {
                    s.tombstones += 1;
                    return true;
                }
                Ok(d) => {
                    s.live += 1;
                    if let Some(c) = d.meta.collection {
                        s.colls.entry(coll_key(&c)).or_insert((c, 0)).1 += 1;
                    }
                    return true;
                }
                Err(e) => (rec, e.to_string()),
            },
            Err(e) => {
                s.broken_chains += 1;
                (Vec::new(), damaged_page(&e))
            }
        };
        let report = UnreadableRecord {
            key: String::from_utf8_lossy(k).into_owned(),
            etag: None,
            bytes: rec.len() as u64,
            error,
        };
        s.bad.push((k.to_vec(), rec, report));
        true
    })
    .await?;
    if !s.bad.is_empty() {
        let keys: BTreeSet<Vec<u8>> = s.bad.iter().map(|b| b.0.clone()).collect();
        let mut etags: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        btree::scan(r, meta.root(Tree::Etags), b"", |k, v| {
            if keys.contains(&v)
                && let Ok(e) = k.try_into()
            {
                etags.insert(v, u64::from_be_bytes(e));
            }
            true
        })
        .await?;
        for b in &mut s.bad {
            b.2.etag = etags.get(&b.0).copied();
        }
    }
    Ok(s)
}

/// The local record key a set-aside record goes to:
/// `quarantine/<etag, 20 digits>/<key>`.
pub fn quarantine_key(key: &[u8], etag: Option<u64>) -> Vec<u8> {
    let mut k = QUARANTINE_PREFIX.to_vec();
    k.extend_from_slice(format!("{:020}/", etag.unwrap_or(0)).as_bytes());
    let room = btree::MAX_KEY - k.len();
    k.extend_from_slice(&key[..key.len().min(room)]);
    k
}

/// A transaction of its own (the writer lock held); rolls the working state
/// back unless finished.
pub(super) struct Txn<'a> {
    pub(super) w: MutexGuard<'a, Working>,
    save: Option<Meta>,
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if let Some(meta) = self.save.take() {
            self.w.rollback(meta);
        }
    }
}

/// Frees, in the transaction of `ctx`, every allocated page that neither a
/// tree of the catalog nor the free list holds (the integrity check's
/// accounting, over the working state): the pages past the damage of an
/// overflow chain set aside. Frees nothing when that accounting meets
/// damage of its own or a page counted twice, since a page it missed could
/// then be one in use. Returns how many pages it freed.
async fn free_unreachable<S: PageStore>(ctx: &mut WCtx<'_, S>) -> Result<u64, Error> {
    let m = ctx.w.meta.clone();
    let mut pages = Vec::new();
    for (_, root) in m.trees() {
        if btree::collect_pages(&*ctx, root, &mut pages).await.is_err() {
            return Ok(0);
        }
    }
    let w = &*ctx.w;
    pages.extend(w.free.iter().copied());
    pages.extend(w.pending.iter().map(|p| p.1));
    pages.extend(w.freelist_pages.iter().copied());
    let mut used = HashSet::with_capacity(pages.len());
    for p in pages {
        if p == 0 || p >= m.next_page || !used.insert(p) {
            return Ok(0);
        }
    }
    let unreachable: Vec<PageNo> = (1..m.next_page).filter(|p| !used.contains(p)).collect();
    for &p in &unreachable {
        btree::PageWrite::free(ctx, p);
    }
    Ok(unreachable.len() as u64)
}

impl<S: PageStore> Database<S> {
    /// Starts a transaction (every write's, [`Database::commit`]'s too):
    /// takes the writer lock, checks that this handle may write, and reads
    /// the free list if no transaction has since the open or the last
    /// refresh. Dropped unfinished, it rolls the working state back.
    pub(super) async fn begin(&self) -> Result<Txn<'_>, Error> {
        let mut w = self.inner.writer.lock().await;
        {
            let sh = self.inner.shared();
            if sh.closed {
                return Err(Error::Closed);
            }
            if self.inner.read_only {
                return Err(StoreError::ReadOnly.into());
            }
            if let Some(f) = &sh.failed {
                return Err(Error::Poisoned(f.clone()));
            }
            let oldest = sh
                .readers
                .keys()
                .next()
                .copied()
                .unwrap_or(sh.visible.generation);
            w.reuse_limit = oldest.min(sh.visible.generation);
        }
        super::alloc::ensure_free_list(&self.inner, &mut w).await?;
        w.keep_changes();
        let save = Some(w.meta.clone());
        Ok(Txn { w, save })
    }

    /// Ends a transaction and waits until it is durable.
    pub(super) async fn finish(&self, mut txn: Txn<'_>) -> Result<(), Error> {
        txn.w.seq += 1;
        let seq = txn.w.seq;
        txn.save = None;
        txn.w.keep_changes();
        drop(txn);
        self.wait_durable(seq).await
    }

    /// [`Database::unreadable_seen`], with the etags a scan did not know
    /// looked up in the etag index (one pass over the index when some are
    /// missing; none otherwise).
    pub async fn unreadable_located(&self) -> Result<Vec<UnreadableRecord>, Error> {
        let seen = self.unreadable_seen();
        let missing: BTreeSet<Vec<u8>> = seen
            .iter()
            .filter(|r| r.etag.is_none())
            .map(|r| r.key.as_bytes().to_vec())
            .collect();
        if missing.is_empty() {
            return Ok(seen);
        }
        let snap = self.snapshot();
        let mut found: Vec<(Vec<u8>, u64)> = Vec::new();
        btree::scan(&snap.reader(), snap.meta.root(Tree::Etags), b"", |k, v| {
            if missing.contains(&v)
                && let Ok(e) = k.try_into()
            {
                found.push((v, u64::from_be_bytes(e)));
            }
            true
        })
        .await?;
        for r in &seen {
            if let Some((k, e)) = found.iter().find(|f| f.0 == r.key.as_bytes()) {
                self.inner.note_unreadable(k, Some(*e), r.bytes, &r.error);
            }
        }
        Ok(self.unreadable_seen())
    }

    /// Lists every document record that does not decode (reads every
    /// record), with its etag when the etag index has one. Read-only.
    pub async fn find_unreadable(&self) -> Result<Vec<UnreadableRecord>, Error> {
        self.snapshot().find_unreadable().await
    }

    /// Sets aside every document record that does not decode, in one commit:
    /// its raw bytes go to the local record [`quarantine_key`], it leaves
    /// the documents tree, the etag, collection and conflict indexes, and the
    /// document and collection counters are recounted. Returns what was set
    /// aside (nothing committed when nothing is found).
    pub async fn quarantine_unreadable(&self) -> Result<Vec<UnreadableRecord>, Error> {
        let mut txn = self.begin().await?;
        let mut ctx = WCtx {
            inner: &self.inner,
            w: &mut txn.w,
        };
        let m = ctx.w.meta.clone();
        let scan = scan_docs(&ctx, &m).await?;
        if scan.bad.is_empty() {
            return Ok(Vec::new());
        }
        let bad: BTreeSet<Vec<u8>> = scan.bad.iter().map(|b| b.0.clone()).collect();
        // Index entries of the bad keys.
        let mut etag_keys = Vec::new();
        btree::scan(&ctx, m.root(Tree::Etags), b"", |k, v| {
            if bad.contains(&v) {
                etag_keys.push(k.to_vec());
            }
            true
        })
        .await?;
        let mut coll_keys = Vec::new();
        btree::scan(&ctx, m.root(Tree::Colls), b"", |k, _| {
            if let Some(z) = k.iter().position(|b| *b == 0)
                && bad.contains(&k[z + 1..])
            {
                coll_keys.push(k.to_vec());
            }
            true
        })
        .await?;
        let mut roots = [
            (Tree::Docs, m.root(Tree::Docs)),
            (Tree::Etags, m.root(Tree::Etags)),
            (Tree::Colls, m.root(Tree::Colls)),
            (Tree::Conflicts, m.root(Tree::Conflicts)),
            (Tree::Locals, m.root(Tree::Locals)),
        ];
        for (key, rec, report) in &scan.bad {
            roots[0].1 = btree::remove(&mut ctx, roots[0].1, key).await?.0;
            roots[3].1 = btree::remove(&mut ctx, roots[3].1, key).await?.0;
            roots[4].1 =
                btree::insert(&mut ctx, roots[4].1, &quarantine_key(key, report.etag), rec)
                    .await?
                    .0;
        }
        for k in &etag_keys {
            roots[1].1 = btree::remove(&mut ctx, roots[1].1, k).await?.0;
        }
        for k in &coll_keys {
            roots[2].1 = btree::remove(&mut ctx, roots[2].1, k).await?.0;
        }
        // Collection counts: what the stats tree and the pending deltas say,
        // brought to what the readable documents say.
        let mut counted: BTreeMap<Vec<u8>, (String, i64)> = BTreeMap::new();
        btree::scan(&ctx, m.root(Tree::Stats), b"", |k, v| {
            if let Some(n) = get_u64(&v, 0) {
                let name = String::from_utf8_lossy(&v[8..]).into_owned();
                counted.insert(k.to_vec(), (name, n as i64));
            }
            true
        })
        .await?;
        for (k, (name, d)) in &ctx.w.coll_deltas {
            counted.entry(k.clone()).or_insert((name.clone(), 0)).1 += d;
        }
        for (k, (name, _)) in &scan.colls {
            counted.entry(k.clone()).or_insert((name.clone(), 0));
        }
        for (k, (name, have)) in counted {
            let want = scan.colls.get(&k).map_or(0, |c| c.1 as i64);
            if want != have {
                ctx.w.add_coll_delta(&name, want - have);
            }
        }
        let mm = &mut ctx.w.meta;
        for (tree, root) in roots {
            mm.set_root(tree, root);
        }
        mm.doc_count = scan.live;
        mm.tombstone_count = scan.tombstones;
        if scan.broken_chains > 0 {
            // Removing a record frees its chain up to the damage; the pages
            // past it are no longer reachable from anything.
            free_unreachable(&mut ctx).await?;
        }
        self.finish(txn).await?;
        let mut seen = self
            .inner
            .unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for k in &bad {
            seen.remove(k);
        }
        Ok(scan.bad.into_iter().map(|b| b.2).collect())
    }

    /// Test hook: replaces the stored record of document `id` with `rec`
    /// (indexes and counters untouched), as a damaged or over-limit record
    /// would be. Only with the `testing` feature.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub async fn testing_overwrite_record(&self, id: &str, rec: &[u8]) -> Result<(), Error> {
        let mut txn = self.begin().await?;
        let mut ctx = WCtx {
            inner: &self.inner,
            w: &mut txn.w,
        };
        let root = ctx.w.meta.root(Tree::Docs);
        let root = btree::insert(&mut ctx, root, &doc::id_key(id), rec)
            .await?
            .0;
        ctx.w.meta.set_root(Tree::Docs, root);
        self.finish(txn).await
    }

    /// Test hook: damages the overflow chain of document `id`'s record, as
    /// a misdirected write could: its second page points back to the first,
    /// or (when `unreadable`) fails to read, as a page with a bad checksum
    /// does. Returns the chain's pages as they were. The record must hold a
    /// body of more than two overflow pages. Only with the `testing`
    /// feature.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub async fn testing_break_overflow_chain(
        &self,
        id: &str,
        unreadable: bool,
    ) -> Result<Vec<PageNo>, Error> {
        let mut txn = self.begin().await?;
        let mut ctx = WCtx {
            inner: &self.inner,
            w: &mut txn.w,
        };
        let root = ctx.w.meta.root(Tree::Docs);
        let key = doc::id_key(id);
        let pages = btree::testing_break_chain(&mut ctx, root, &key, unreadable).await?;
        self.finish(txn).await?;
        Ok(pages)
    }
}

impl<S: PageStore> Snapshot<S> {
    /// See [`Database::find_unreadable`].
    pub async fn find_unreadable(&self) -> Result<Vec<UnreadableRecord>, Error> {
        let scan = scan_docs(&self.reader(), &self.meta).await?;
        Ok(scan
            .bad
            .into_iter()
            .map(|(k, _, r)| {
                self.inner.note_unreadable(&k, r.etag, r.bytes, &r.error);
                r
            })
            .collect())
    }
}
