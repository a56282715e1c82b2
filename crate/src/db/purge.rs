//! Physical purge: documents removed so that no plaintext of them remains in
//! the store's files ([`Database::purge`]).
//!
//! A purge runs in three steps:
//! 1. one durable transaction removes every matching record from the
//!    documents tree, the etag, collection and conflict indexes, and the
//!    counters (no tombstone: the documents are gone, not deleted); the
//!    separators of the branch pages that still copy a removed id are
//!    replaced (`btree::scrub_separators`). The `origins`, `locals` and
//!    `audit` trees are left alone (but separators of `locals` that are
//!    no live key, copies of local records deleted before, are replaced
//!    too: a caller deletes local records naming purged ids, such as sync
//!    rejections, before the purge). Pages the copy-on-write frees go to the
//!    free list as usual;
//! 2. a second commit overwrites with zeros every free page no reader can
//!    reach (the old versions of the rewritten pages, and every older free
//!    page, which may hold earlier versions of the purged documents). The
//!    pages stay on the free list. Pages an open [`super::Snapshot`] still
//!    pins cannot be overwritten yet: they are counted in
//!    [`PurgeReport::pages_deferred`] and overwritten by the first flush
//!    after they become reusable (the snapshot is dropped; a later write, or
//!    the close, flushes), which then also erases the store's residue;
//!    A local record ([`PURGE_PENDING_KEY`]) set by step 1's commit and
//!    cleared by this one tells the next purge (even of nothing) to redo
//!    this step if a crash came in between;
//! 3. the store erases its residue ([`PageStore::erase_residue`]: the file
//!    store checkpoints and zero-fills its WAL).
//!
//! The B+tree codec builds every page it writes in a fresh zeroed buffer
//! (leaf and branch encoding, leaf splicing, overflow pages) or copies a page
//! it built so (a branch whose child pointer changes), so the live pages a
//! purge rewrites keep no bytes of removed entries.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::btree::{self, PageWrite};
use crate::doc::{self, DocumentMeta};
use crate::error::{Error, InputError};
use crate::store::{PAGE_SIZE, PageNo, PageStore};

use super::alloc::WCtx;
use super::meta::Tree;
use super::types::Op;
use super::write::coll_index_key;
use super::{Batch, Database};

/// Which documents a purge removes: every document whose id key starts with one of
/// `prefixes` ("" = all) and with none of `keep`, plus the exact ids in `ids`.
/// Ids and prefixes compare as id keys (`crate::doc::id_key`, lowercase).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeScope {
    /// Id prefixes whose documents are removed ("" matches every id).
    pub prefixes: Vec<String>,
    /// Id prefixes exempt from `prefixes` (not from `ids`).
    pub keep: Vec<String>,
    /// Exact ids removed whatever `keep` says.
    pub ids: Vec<String>,
    /// Ids removed whatever `keep` says, named by their [`purged_id_hash`]
    /// (a subject purge the hub ordered: the order names no plaintext id).
    /// Non-empty, the purge reads every document's id.
    pub id_hashes: Vec<[u8; 32]>,
}

/// Domain of [`purged_id_hash`].
const PURGED_ID_DOMAIN: &[u8] = b"outpost/purged-id/v1\0";

/// The hash by which a subject purge names a removed id: SHA-256 over a
/// domain string and the id key (`crate::doc::id_key`, lowercase). The
/// hub's purge markers, its audit trail and its purge orders carry these,
/// never the ids. (Unsalted: it hides nothing from whoever can guess an
/// id; it keeps the ids themselves out of records kept for ever.)
pub fn purged_id_hash(id_key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(PURGED_ID_DOMAIN);
    h.update(id_key);
    h.finalize().into()
}

/// Prefix of the local records that retire purged ids: `purge/id/` then
/// the 32 bytes of [`purged_id_hash`]; the value names the hub's purge
/// marker (`u64`, little-endian). A pushed version of a retired id refuses its
/// batch ([`super::Refusal::Purged`]).
pub const PURGED_ID_PREFIX: &[u8] = b"purge/id/";

/// The local record key that retires the id whose hash is `hash`.
pub fn purged_id_key(hash: &[u8; 32]) -> Vec<u8> {
    let mut k = PURGED_ID_PREFIX.to_vec();
    k.extend_from_slice(hash);
    k
}

/// One document a purge removed, as [`Database::purge_recorded`] shows it
/// to its caller: never its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgedDoc {
    /// Its id key (lowercase).
    pub key: Vec<u8>,
    /// SHA-256 of its stored record (every version, bodies included).
    pub record_sha256: [u8; 32],
    /// Whether it is not one of the documents the scope matched but an
    /// index's output document the purge emptied (its key's entries all
    /// came from purged documents): outside [`PurgeReport`], shown so that a
    /// hub can name it to the edges it shared it with.
    pub index_output: bool,
}

/// What a purge did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeReport {
    /// Documents removed (live, deleted/tombstone and conflicted records all count).
    pub removed: u64,
    /// SHA-256 (sha2 crate, already a dependency) over the removed id keys in ascending
    /// order, each as u32 LE length then bytes: a canonical digest a receipt can carry.
    pub ids_hash: [u8; 32],
    /// Free pages overwritten with zeros by this purge.
    pub pages_erased: u64,
    /// Free pages an open snapshot still pinned, so not overwritten yet:
    /// the first flush after they become reusable overwrites them (and
    /// erases the store's residue). If the database is closed while a
    /// snapshot still pins them, the next purge overwrites them (it
    /// overwrites every free page).
    pub pages_deferred: u64,
}

/// The local record a purge sets in the commit that removes its documents
/// and clears in the commit that overwrites the freed pages (when no
/// snapshot pinned any): found set, a purge was interrupted between the two
/// (a crash), and the next purge, even of nothing, does the erasure.
pub const PURGE_PENDING_KEY: &[u8] = b"purge/erasing";

impl PurgeScope {
    /// Whether the scope removes the document `id` (any case).
    pub fn matches(&self, id: &str) -> bool {
        Matcher::new(self).matches(&doc::id_key(id))
    }
}

/// A [`PurgeScope`] in id-key form.
pub(super) struct Matcher {
    prefixes: Vec<Vec<u8>>,
    keep: Vec<Vec<u8>>,
    ids: Vec<Vec<u8>>,
    hashes: HashSet<[u8; 32]>,
}

impl Matcher {
    pub(super) fn new(scope: &PurgeScope) -> Matcher {
        let keys = |v: &[String]| {
            let mut k: Vec<Vec<u8>> = v.iter().map(|s| doc::id_key(s)).collect();
            k.sort();
            k.dedup();
            k
        };
        Matcher {
            prefixes: keys(&scope.prefixes),
            keep: keys(&scope.keep),
            ids: keys(&scope.ids),
            hashes: scope.id_hashes.iter().copied().collect(),
        }
    }

    /// Whether the scope matches nothing at all.
    fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && self.ids.is_empty() && self.hashes.is_empty()
    }

    /// Whether the document with id key `key` is purged.
    pub(super) fn matches(&self, key: &[u8]) -> bool {
        self.ids.binary_search_by(|i| i[..].cmp(key)).is_ok()
            || (self.prefixes.iter().any(|p| key.starts_with(p))
                && !self.keep.iter().any(|k| key.starts_with(k)))
            || (!self.hashes.is_empty() && self.hashes.contains(&purged_id_hash(key)))
    }

    /// The prefixes to scan: none that another one covers (every id when
    /// the scope names hashes).
    fn scan_prefixes(&self) -> Vec<&[u8]> {
        if !self.hashes.is_empty() {
            return vec![&[]];
        }
        let mut out: Vec<&[u8]> = Vec::new();
        for p in &self.prefixes {
            // Sorted: a covering prefix sorts before what it covers.
            if !out.iter().any(|q| p.starts_with(q)) {
                out.push(p);
            }
        }
        out
    }
}

/// The digest of [`PurgeReport::ids_hash`] over `keys` (ascending).
pub fn ids_hash<'a>(keys: impl Iterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    for k in keys {
        h.update((k.len() as u32).to_le_bytes());
        h.update(k);
    }
    h.finalize().into()
}

impl<S: PageStore> Database<S> {
    /// Removes the documents of `scope` (no tombstone: they are gone, not deleted), then
    /// erases their bytes physically; resolves once that is durable.
    ///
    /// See the module documentation of `db::purge` (and `docs/design.md`,
    /// "Purge: physical erasure") for what is erased where. Pages an open
    /// [`super::Snapshot`] pins are overwritten later
    /// ([`PurgeReport::pages_deferred`]). A scope that matches nothing, with
    /// no erasure left over from an earlier purge, commits nothing.
    pub async fn purge(&self, scope: &PurgeScope) -> Result<PurgeReport, Error> {
        self.purge_recorded(scope, |_| Ok(Batch::new())).await
    }

    /// [`Database::purge`], with local records and audit entries written in
    /// the same transaction that removes the documents: `record` is shown
    /// what is removed (ids and record hashes, never contents; the output
    /// documents of index keys only purged documents fed are among them,
    /// flagged [`PurgedDoc::index_output`]) and returns
    /// a batch of [`Batch::set_local`], [`Batch::expect_local`] and
    /// [`Batch::audit`] operations (any other operation fails the purge with
    /// [`crate::InputError::InvalidArgument`], as does an error `record`
    /// returns; nothing is removed then). `record` is not called when nothing
    /// matches. The hub records a subject purge this way: its marker, the
    /// retired ids and the audit entry exist if and only if the documents
    /// are gone.
    pub async fn purge_recorded(
        &self,
        scope: &PurgeScope,
        record: impl FnOnce(&[PurgedDoc]) -> Result<Batch, Error>,
    ) -> Result<PurgeReport, Error> {
        let m = Matcher::new(scope);
        let (removed, ids_hash) = self.purge_records(&m, record).await?;
        let deferred = !self.inner.writer.lock().await.to_erase.is_empty();
        let interrupted = || async {
            let snap = self.snapshot();
            snap.get_local(PURGE_PENDING_KEY).await.map(|v| v.is_some())
        };
        if removed.is_empty() && !deferred && !interrupted().await? {
            return Ok(PurgeReport {
                removed: 0,
                ids_hash,
                pages_erased: 0,
                pages_deferred: 0,
            });
        }
        let (pages_erased, pages_deferred) = self.erase_free_pages().await?;
        self.inner.store.erase_residue().await?;
        Ok(PurgeReport {
            removed: removed.len() as u64,
            ids_hash,
            pages_erased,
            pages_deferred,
        })
    }

    /// Test hook: only the first step of [`Database::purge`] (the records
    /// removed, nothing erased), as a purge interrupted by a crash leaves
    /// it. Only with the `testing` feature.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub async fn testing_purge_records_only(&self, scope: &PurgeScope) -> Result<u64, Error> {
        let none = |_: &[PurgedDoc]| Ok(Batch::new());
        Ok(self
            .purge_records(&Matcher::new(scope), none)
            .await?
            .0
            .len() as u64)
    }

    /// Step 1: removes the matching records in one durable transaction
    /// (with what `record` adds). Returns the removed id keys and their
    /// digest.
    async fn purge_records(
        &self,
        m: &Matcher,
        record: impl FnOnce(&[PurgedDoc]) -> Result<Batch, Error>,
    ) -> Result<(Vec<Vec<u8>>, [u8; 32]), Error> {
        let mut txn = self.begin().await?;
        let mut ctx = WCtx {
            inner: &self.inner,
            w: &mut txn.w,
        };
        let meta = ctx.w.meta.clone();
        // The matching records, with their metadata (`None`: the record
        // does not decode; its index entries are found by scanning).
        let mut found: BTreeMap<Vec<u8>, Option<DocumentMeta>> = BTreeMap::new();
        let mut record_hashes: BTreeMap<Vec<u8>, [u8; 32]> = BTreeMap::new();
        if !m.is_empty() {
            for p in m.scan_prefixes() {
                btree::scan(&ctx, meta.root(Tree::Docs), p, |k, rec| {
                    if !k.starts_with(p) {
                        return false;
                    }
                    if m.matches(k) {
                        let dm = doc::decode_record_meta(&rec).ok().map(|(_, dm)| dm);
                        found.insert(k.to_vec(), dm);
                        record_hashes.insert(k.to_vec(), Sha256::digest(&rec).into());
                    }
                    true
                })
                .await?;
            }
            for id in &m.ids {
                if found.contains_key(id) {
                    continue;
                }
                if let Some(rec) = btree::get(&ctx, meta.root(Tree::Docs), id).await? {
                    let dm = doc::decode_record_meta(&rec).ok().map(|(_, dm)| dm);
                    found.insert(id.clone(), dm);
                    record_hashes.insert(id.clone(), Sha256::digest(&rec).into());
                }
            }
        }
        let hash = ids_hash(found.keys().map(Vec::as_slice));
        if found.is_empty() {
            return Ok((Vec::new(), hash));
        }
        // Out of every index; the output documents of the reduce keys they
        // touched go with them (not in the report: they are this peer's
        // own derived documents, rebuilt by the index's next step).
        let keys: Vec<&[u8]> = found.keys().map(Vec::as_slice).collect();
        let from_indexes = {
            // Boxed: compiled once, not inlined into this state machine.
            let f: crate::platform::BoxFuture<'_, _> =
                Box::pin(super::index::purge_docs(&mut ctx, &keys));
            f.await?
        };
        let mut outputs = Vec::new();
        let mut emptied: BTreeMap<Vec<u8>, [u8; 32]> = BTreeMap::new();
        for k in &from_indexes.outputs {
            if found.contains_key(k) {
                continue;
            }
            if let Some(rec) = btree::get(&ctx, meta.root(Tree::Docs), k).await? {
                let dm = doc::decode_record_meta(&rec).ok().map(|(_, dm)| dm);
                found.insert(k.clone(), dm);
                outputs.push(k.clone());
                if from_indexes.emptied.contains(k) {
                    emptied.insert(k.clone(), Sha256::digest(&rec).into());
                }
            }
        }
        // What the caller records with the purge, checked before anything
        // is removed (the transaction commits only if it is accepted).
        let shown: Vec<PurgedDoc> = record_hashes
            .into_iter()
            .map(|(key, record_sha256)| PurgedDoc {
                key,
                record_sha256,
                index_output: false,
            })
            .chain(emptied.into_iter().map(|(key, record_sha256)| PurgedDoc {
                key,
                record_sha256,
                index_output: true,
            }))
            .collect();
        let mut recorded = Vec::new();
        for op in record(&shown)?.ops {
            if !matches!(
                op,
                Op::SetLocal { .. } | Op::ExpectLocal { .. } | Op::Audit { .. }
            ) {
                return Err(InputError::InvalidArgument(
                    "a purge records only local records and audit entries".into(),
                )
                .into());
            }
            recorded.push(super::write::prepare(op)?);
        }
        let now = (self.inner.clock)();
        for p in &recorded {
            super::write::apply(&mut ctx, p, self.inner.db_id, now).await?;
        }
        let mut docs = meta.root(Tree::Docs);
        let mut etags = meta.root(Tree::Etags);
        let mut colls = meta.root(Tree::Colls);
        let mut conflicts = meta.root(Tree::Conflicts);
        let (mut live, mut tombs) = (0u64, 0u64);
        let mut unknown = false;
        for (key, dm) in &found {
            docs = btree::remove(&mut ctx, docs, key).await?.0;
            conflicts = btree::remove(&mut ctx, conflicts, key).await?.0;
            let Some(dm) = dm else {
                unknown = true;
                continue;
            };
            etags = btree::remove(&mut ctx, etags, &dm.etag.to_be_bytes())
                .await?
                .0;
            if dm.flags.is_tombstone() {
                tombs += 1;
            } else {
                live += 1;
                if let Some(c) = &dm.collection {
                    colls = btree::remove(&mut ctx, colls, &coll_index_key(c, key))
                        .await?
                        .0;
                    ctx.w.add_coll_delta(c, -1);
                }
            }
        }
        let mut recount = None;
        if unknown {
            // A record that does not decode says nothing of its etag,
            // collection or state: its index entries are found by scanning
            // the indexes, and the document counters are recounted from the
            // readable records left (as `quarantine_unreadable` does).
            (etags, colls) = purge_index_scan(&mut ctx, &found, etags, colls).await?;
            let (mut l, mut t) = (0u64, 0u64);
            btree::scan(&ctx, docs, b"", |_, rec| {
                match doc::decode_record_meta(&rec) {
                    Ok((_, dm)) if dm.flags.is_tombstone() => t += 1,
                    Ok(_) => l += 1,
                    Err(_) => {}
                }
                true
            })
            .await?;
            recount = Some((l, t));
        }
        // Separators that still copy a removed id (or any id the scope
        // matches: one removed before, by an earlier write).
        let stale_doc = |k: &[u8]| m.matches(k) || found.contains_key(k);
        docs = btree::scrub_separators(&mut ctx, docs, &stale_doc).await?.0;
        conflicts = btree::scrub_separators(&mut ctx, conflicts, &stale_doc)
            .await?
            .0;
        let stale_coll = |k: &[u8]| {
            k.iter()
                .position(|b| *b == 0)
                .is_some_and(|z| stale_doc(&k[z + 1..]))
        };
        colls = btree::scrub_separators(&mut ctx, colls, &stale_coll)
            .await?
            .0;
        super::index::scrub_purged(&mut ctx, &from_indexes, &stale_doc).await?;
        // Local records are not the purge's to remove, but a caller may have
        // deleted some that name purged ids (a sync rejection, say): their
        // keys may live on as separators too. Any separator that is not a
        // live key is such a copy.
        let mut locals = ctx.w.meta.root(Tree::Locals);
        let mut live_locals = HashSet::new();
        btree::scan(&ctx, locals, b"", |k, _| {
            live_locals.insert(k.to_vec());
            true
        })
        .await?;
        locals = btree::scrub_separators(&mut ctx, locals, &|k| !live_locals.contains(k))
            .await?
            .0;
        let locals = btree::insert(&mut ctx, locals, PURGE_PENDING_KEY, &[])
            .await?
            .0;
        let mm = &mut ctx.w.meta;
        mm.set_root(Tree::Locals, locals);
        mm.set_root(Tree::Docs, docs);
        mm.set_root(Tree::Etags, etags);
        mm.set_root(Tree::Colls, colls);
        mm.set_root(Tree::Conflicts, conflicts);
        (mm.doc_count, mm.tombstone_count) = recount.unwrap_or((
            mm.doc_count.saturating_sub(live),
            mm.tombstone_count.saturating_sub(tombs),
        ));
        self.finish(txn).await?;
        for k in &outputs {
            found.remove(k);
        }
        let removed: Vec<Vec<u8>> = found.into_keys().collect();
        let mut seen = self
            .inner
            .unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for k in &removed {
            seen.remove(k);
        }
        Ok((removed, hash))
    }

    /// Step 2: overwrites with zeros, in one durable commit, every free page
    /// no reader can reach and that is not all zeros already; the pages a
    /// snapshot pins are left to a later flush. Returns (erased, deferred).
    async fn erase_free_pages(&self) -> Result<(u64, u64), Error> {
        let mut txn = self.begin().await?;
        let limit = txn.w.reuse_limit;
        let (now, pinned) = txn.w.free_pages(limit);
        let mut erased = 0;
        let zero = Arc::new(vec![0u8; PAGE_SIZE]);
        for no in now {
            // A page already all zeros (erased by an earlier purge) is not
            // written again; one that cannot be read is overwritten anyway.
            if let Ok(b) = self.inner.store.read_page(no).await
                && b.iter().all(|x| *x == 0)
            {
                continue;
            }
            let mut ctx = WCtx {
                inner: &self.inner,
                w: &mut txn.w,
            };
            ctx.write(no, zero.clone());
            erased += 1;
        }
        let deferred = pinned.len() as u64;
        for p in pinned {
            if !txn.w.to_erase.contains(&p) {
                txn.w.to_erase.push(p);
            }
        }
        if txn.w.to_erase.is_empty() {
            let mut ctx = WCtx {
                inner: &self.inner,
                w: &mut txn.w,
            };
            let locals = ctx.w.meta.root(Tree::Locals);
            let locals = btree::remove(&mut ctx, locals, PURGE_PENDING_KEY).await?.0;
            ctx.w.meta.set_root(Tree::Locals, locals);
        }
        self.finish(txn).await?;
        Ok((erased, deferred))
    }
}

/// The index entries of removed records that do not decode: every etag
/// entry pointing at one, every collection entry naming one (its
/// collection's count goes down by one). Returns the new roots of the etag
/// and collection indexes.
async fn purge_index_scan<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    found: &BTreeMap<Vec<u8>, Option<DocumentMeta>>,
    mut etags: PageNo,
    mut colls: PageNo,
) -> Result<(PageNo, PageNo), Error> {
    let mut etag_keys = Vec::new();
    btree::scan(&*ctx, etags, b"", |k, v| {
        if found.get(&v).is_some_and(Option::is_none) {
            etag_keys.push(k.to_vec());
        }
        true
    })
    .await?;
    let mut coll_keys = Vec::new();
    btree::scan(&*ctx, colls, b"", |k, _| {
        if let Some(z) = k.iter().position(|b| *b == 0)
            && found.get(&k[z + 1..]).is_some_and(Option::is_none)
        {
            coll_keys.push((k.to_vec(), z));
        }
        true
    })
    .await?;
    for k in &etag_keys {
        etags = btree::remove(ctx, etags, k).await?.0;
    }
    for (k, z) in &coll_keys {
        colls = btree::remove(ctx, colls, k).await?.0;
        // The display name the stats tree holds for this collection.
        let stats = ctx.w.meta.root(Tree::Stats);
        let name = match btree::get(&*ctx, stats, &k[..*z]).await? {
            Some(v) if v.len() > 8 => String::from_utf8_lossy(&v[8..]).into_owned(),
            _ => String::from_utf8_lossy(&k[..*z]).into_owned(),
        };
        ctx.w.add_coll_delta(&name, -1);
    }
    Ok((etags, colls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(prefixes: &[&str], keep: &[&str], ids: &[&str]) -> Matcher {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Matcher::new(&PurgeScope {
            prefixes: v(prefixes),
            keep: v(keep),
            ids: v(ids),
            id_hashes: vec![],
        })
    }

    #[test]
    fn prefixes_keep_and_ids() {
        let m = scope(&["Users/Ann/"], &["users/ann/public/"], &["Orders/7"]);
        assert!(m.matches(b"users/ann/notes/1"));
        assert!(!m.matches(b"users/ann/public/x"));
        assert!(!m.matches(b"users/anna/1"));
        assert!(!m.matches(b"users/ann"));
        assert!(m.matches(b"orders/7"));
        assert!(!m.matches(b"orders/70"));
        // An exact id is removed even under a kept prefix.
        let m = scope(&[], &["a/"], &["A/1"]);
        assert!(m.matches(b"a/1") && !m.matches(b"a/2"));
    }

    #[test]
    fn empty_and_everything() {
        let m = scope(&[], &[], &[]);
        assert!(m.is_empty() && !m.matches(b"") && !m.matches(b"x"));
        let m = scope(&[""], &["keep/"], &[]);
        assert!(m.matches(b"x") && m.matches(b"") && !m.matches(b"keep/1"));
        assert_eq!(m.scan_prefixes(), vec![&b""[..]]);
        let m = scope(&["a/b/", "a/", "c"], &[], &[]);
        assert_eq!(m.scan_prefixes(), vec![&b"a/"[..], &b"c"[..]]);
    }

    #[test]
    fn ids_hash_is_length_prefixed() {
        let mut h = Sha256::new();
        h.update(2u32.to_le_bytes());
        h.update(b"ab");
        h.update(1u32.to_le_bytes());
        h.update(b"c");
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(ids_hash([&b"ab"[..], b"c"].into_iter()), want);
        assert_ne!(ids_hash([&b"a"[..], b"bc"].into_iter()), want);
    }
}
