//! The integrity check: every page reachable from a snapshot is read and
//! verified, the indexes and counters are checked against the documents, and
//! every allocated page must be in use or free exactly once.
//!
//! Reachability and page accounting come from the catalog: every registered
//! tree is walked without naming it here. The cross-checks below are
//! specific to the trees they name (index entries against documents,
//! counters against what was found).

use std::collections::{BTreeMap, HashMap};

use crate::btree::{self, KIND_FREELIST};
use crate::doc;
use crate::error::Error;
use crate::store::{PageNo, PageStore};

use super::alloc::decode_freelist_page;
use super::meta::Tree;
use super::read::read_cached;
use super::types::IntegrityReport;
use super::write::coll_key;
use super::{Database, Snapshot};

impl<S: PageStore> Database<S> {
    /// Reads every page reachable from the last committed state, verifying
    /// checksums, key order, and that the indexes and counters agree; also that
    /// every allocated page is either in use or free exactly once.
    pub async fn integrity_check(&self) -> Result<IntegrityReport, Error> {
        self.snapshot().integrity_check().await
    }
}

impl<S: PageStore> Snapshot<S> {
    /// See [`Database::integrity_check`].
    pub async fn integrity_check(&self) -> Result<IntegrityReport, Error> {
        let m = &self.meta;
        let r = self.reader();
        let mut rep = IntegrityReport::default();
        let mut pages: Vec<PageNo> = Vec::new();
        // Every registered tree: its pages (for the accounting below) and
        // its entry count (for the cross-checks).
        let mut counts = HashMap::new();
        for (tree, root) in m.trees() {
            match btree::collect_pages(&r, root, &mut pages).await {
                Ok(n) => {
                    counts.insert(tree, n);
                }
                Err(e) => rep.problems.push(format!("{} tree: {e}", tree.name())),
            }
        }
        // Documents: decode every record, count, and cross-check the indexes.
        let mut coll_live: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut bad = Vec::new();
        let mut conflicted = 0u64;
        let mut unreadable: Vec<(Vec<u8>, usize, String)> = Vec::new();
        let scan = btree::scan_values(&r, m.root(Tree::Docs), b"", |k, rec| {
            let rec = match rec {
                Ok(rec) => rec,
                Err(e) => {
                    unreadable.push((k.to_vec(), 0, super::repair::damaged_page(&e)));
                    return true;
                }
            };
            // As the reads decode it (bodies parsed too).
            match doc::decode_record_checked(&rec).map(|d| (d.id, d.meta)) {
                Ok((id, dm)) => {
                    if doc::id_key(&id) != k {
                        bad.push(format!("record {id:?} stored under a different key"));
                    }
                    if dm.flags.is_conflicted() {
                        conflicted += 1;
                    }
                    if dm.flags.is_tombstone() {
                        rep.tombstones += 1;
                    } else {
                        rep.documents += 1;
                        if let Some(c) = &dm.collection {
                            *coll_live.entry(coll_key(c)).or_default() += 1;
                        }
                    }
                }
                Err(e) => unreadable.push((k.to_vec(), rec.len(), e.to_string())),
            }
            true
        })
        .await;
        if let Err(e) = scan {
            rep.problems.push(format!("docs scan: {e}"));
        }
        rep.problems.extend(bad);
        // Records that do not decode, named by key and etag (the reads skip
        // them; `outpost repair` sets them aside).
        if !unreadable.is_empty() {
            let keys: BTreeMap<Vec<u8>, usize> = unreadable
                .iter()
                .enumerate()
                .map(|(i, u)| (u.0.clone(), i))
                .collect();
            let mut etags: Vec<Option<u64>> = vec![None; unreadable.len()];
            let _ = btree::scan(&r, m.root(Tree::Etags), b"", |k, v| {
                if let (Some(i), Ok(e)) = (keys.get(&v), k.try_into()) {
                    etags[*i] = Some(u64::from_be_bytes(e));
                }
                true
            })
            .await;
            for ((key, len, why), etag) in unreadable.iter().zip(etags) {
                self.inner.note_unreadable(key, etag, *len as u64, why);
                let etag = etag.map_or_else(|| "unknown".to_string(), |e| e.to_string());
                rep.problems.push(format!(
                    "unreadable record {:?} (etag {etag}, {len} bytes): {why}; \
                     `outpost repair` sets it aside",
                    String::from_utf8_lossy(key)
                ));
            }
        }
        if rep.documents != m.doc_count || rep.tombstones != m.tombstone_count {
            rep.problems.push(format!(
                "counters say {} documents and {} tombstones; found {} and {}",
                m.doc_count, m.tombstone_count, rep.documents, rep.tombstones
            ));
        }
        if let (Some(d), Some(e)) = (counts.get(&Tree::Docs), counts.get(&Tree::Etags))
            && d != e
        {
            rep.problems
                .push(format!("{d} documents but {e} etag index entries"));
        }
        if let Some(c) = counts.get(&Tree::Conflicts)
            && *c != conflicted
        {
            rep.problems.push(format!(
                "{conflicted} conflicted documents but {c} conflict index entries"
            ));
        }
        let live_in_colls: u64 = coll_live.values().sum();
        if let Some(c) = counts.get(&Tree::Colls)
            && *c != live_in_colls
        {
            rep.problems.push(format!(
                "{live_in_colls} documents in collections but {c} collection index entries"
            ));
        }
        let stats = self.collections().await.unwrap_or_default();
        let stats_map: BTreeMap<Vec<u8>, u64> =
            stats.iter().map(|(n, c)| (coll_key(n), *c)).collect();
        if stats_map != coll_live {
            rep.problems
                .push("collection counts disagree with the documents".into());
        }
        // Free list.
        let mut next = m.freelist_head;
        let mut free_listed = 0u64;
        // A damaged chain may loop: each of its pages is walked once.
        let mut chain = std::collections::HashSet::new();
        while next != 0 && next < m.next_page {
            if !chain.insert(next) {
                rep.problems
                    .push(format!("free list: the chain loops back to page {next}"));
                break;
            }
            pages.push(next);
            match read_cached(&self.inner, next, KIND_FREELIST).await {
                Ok(buf) => {
                    let (following, _, entries) = decode_freelist_page(&buf);
                    free_listed += entries.len() as u64;
                    pages.extend(entries);
                    next = following;
                }
                Err(e) => {
                    rep.problems.push(format!("free list: {e}"));
                    break;
                }
            }
        }
        if free_listed != m.freelist_count {
            rep.problems.push(format!(
                "free list holds {free_listed} pages, meta says {}",
                m.freelist_count
            ));
        }
        rep.pages_checked = pages.len() as u64;
        // Every page 1..next_page used or free exactly once (counted per page
        // seen, not in a buffer of next_page entries: the meta record may
        // claim any page count).
        let mut seen: std::collections::BTreeMap<u64, u8> = std::collections::BTreeMap::new();
        for p in pages {
            if p != 0 && p < m.next_page {
                let s = seen.entry(p).or_insert(0);
                *s = s.saturating_add(1);
            } else {
                rep.problems.push(format!(
                    "page {p} is beyond the allocated {} pages",
                    m.next_page
                ));
            }
        }
        let dup: Vec<u64> = seen
            .iter()
            .filter(|(_, c)| **c > 1)
            .map(|(p, _)| *p)
            .take(10)
            .collect();
        if !dup.is_empty() {
            rep.problems
                .push(format!("pages used more than once: {dup:?}"));
        }
        let lost = m.next_page.saturating_sub(1) - seen.len() as u64;
        if lost > 0 && rep.problems.is_empty() {
            rep.problems
                .push(format!("{lost} pages neither used nor free (leaked)"));
        }
        Ok(rep)
    }
}
