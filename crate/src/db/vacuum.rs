//! Vacuum: giving the space of free pages back to the file system.
//!
//! Deleting documents frees pages, and later writes reuse them, but the
//! store keeps its high-water mark: after a tombstone compaction the hub's
//! file would stay as large as it ever was. [`Database::vacuum`] moves
//! every page in use that lies above the number the pages in use need
//! (the bound) to a free page below it (`btree::relocate`: a copy under a
//! new number, the branches above it rewritten by the usual copy-on-write
//! path), in one durable transaction of at most [`MAX_MOVES`] pages (the
//! pages to move are found beforehand on a snapshot, outside the writer
//! lock, so writers wait only for the moves); a flush then drops the free pages at
//! the end of the file from the free list and lowers the page count
//! ([`Working::trim_tail`]), and the store cuts its files
//! ([`PageStore::shrink`]). Pages a snapshot still pins, and pages freed by
//! the move itself, become reusable only after a flush: a vacuum runs
//! rounds until one gains nothing.
//!
//! Crash safety is the engine's usual: the move is one transaction (all of
//! it or none after a crash), the lower page count is part of a meta record
//! committed like any other, and the store cuts its files only once that
//! meta record is durable.

use std::collections::{HashSet, VecDeque};

use crate::btree;
use crate::error::Error;
use crate::store::{PageNo, PageStore};

use super::Database;
use super::alloc::{WCtx, Working};

/// At most this many rounds per [`Database::vacuum`].
const MAX_ROUNDS: u32 = 64;

/// At most this many pages moved per round (one transaction: writers wait
/// for it).
const MAX_MOVES: u64 = 2048;

/// Free pages a vacuum leaves below its bound, besides 1/32 of the pages in
/// use (see [`Working::prepare_vacuum`]).
const ROOM: u64 = 16;

/// What [`Database::vacuum`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VacuumReport {
    /// Pages the store held before (its high-water mark).
    pub pages_before: u64,
    /// Pages it holds after.
    pub pages_after: u64,
    /// Pages copied to a lower number.
    pub moved: u64,
    /// Rounds run (each a durable transaction and a flush).
    pub rounds: u32,
}

impl Working {
    /// The bound of a vacuum round: the pages in use fit below it with some
    /// room (a move also copies the branches above the page moved, and the
    /// pages those free are reusable only after a flush).
    pub(super) fn vacuum_bound(&self) -> PageNo {
        let free = (self.free.len() + self.pending.len()) as u64;
        let fit = self.meta.next_page.saturating_sub(free).max(1);
        (fit + ROOM + fit / 32).min(self.meta.next_page)
    }

    /// Before a vacuum's move (a transaction that has journaled nothing
    /// yet): every pending page reusable now joins `free`, lowest allocated
    /// first. Neither change needs undoing: the pages are reusable either
    /// way, and the journal's later entries do not depend on the order.
    pub(super) fn prepare_vacuum(&mut self) {
        let limit = self.reuse_limit;
        let mut pinned = VecDeque::new();
        for (g, no) in self.pending.drain(..) {
            if g <= limit {
                self.free.push(no);
            } else {
                pinned.push_back((g, no));
            }
        }
        self.pending = pinned;
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// Drops the free pages at the end of the file (reusable now: freed at
    /// or before generation `limit`) from the free list and lowers the page
    /// count past them. Called by the flush, outside any transaction.
    /// Returns how many pages it dropped.
    pub(super) fn trim_tail(&mut self, limit: u64) -> u64 {
        let (free, _) = self.free_pages(limit);
        let free: HashSet<PageNo> = free.into_iter().collect();
        let mut cut = self.meta.next_page;
        while cut > 1 && free.contains(&(cut - 1)) {
            cut -= 1;
        }
        let dropped = self.meta.next_page - cut;
        if dropped > 0 {
            // Every page at or above `cut` is free and reusable: none is
            // pinned, dirty, or in the free-list chain.
            self.free.retain(|&p| p < cut);
            self.pending.retain(|&(_, p)| p < cut);
            self.to_erase.retain(|&(_, p)| p < cut);
            self.meta.next_page = cut;
        }
        // The chain written next takes the lowest pages.
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        dropped
    }
}

impl<S: PageStore> Database<S> {
    /// Moves the pages in use to the lowest page numbers and gives the space
    /// above them back to the file system (see the module documentation).
    /// Documents, etags and every reader's view are unchanged; a snapshot
    /// held meanwhile only keeps its pages (and so some space) until it is
    /// dropped.
    pub async fn vacuum(&self) -> Result<VacuumReport, Error> {
        let pages = || self.inner.shared().visible.next_page.saturating_sub(1);
        let mut report = VacuumReport {
            pages_before: pages(),
            ..VacuumReport::default()
        };
        while report.rounds < MAX_ROUNDS {
            let start = pages();
            // The pages to move, found on a snapshot (a walk of every tree
            // page) without holding the writer lock; dropped before the
            // move, so it pins none of the pages the move frees.
            let bound = {
                let mut w = self.inner.writer.lock().await;
                super::alloc::ensure_free_list(&self.inner, &mut w).await?;
                w.vacuum_bound()
            };
            let mut found = Vec::new();
            {
                let snap = self.snapshot();
                let r = snap.reader();
                for (tree, root) in snap.meta.trees() {
                    found.push((tree, btree::targets(&r, root, bound).await?));
                }
            }
            let mut txn = self.begin().await?;
            txn.w.prepare_vacuum();
            let mut moved = 0;
            {
                let mut ctx = WCtx {
                    inner: &self.inner,
                    w: &mut txn.w,
                };
                for (tree, targets) in found {
                    let root = ctx.w.meta.root(tree);
                    let budget = MAX_MOVES - moved;
                    let (root, r) = btree::relocate(&mut ctx, root, bound, targets, budget).await?;
                    ctx.w.meta.set_root(tree, root);
                    moved += r.moved;
                    if r.left {
                        break;
                    }
                }
            }
            if moved > 0 {
                self.finish(txn).await?;
            } else {
                drop(txn);
            }
            // A flush of its own drops the free tail (pages the move freed
            // are reusable once the move is flushed).
            let seq = {
                let mut w = self.inner.writer.lock().await;
                w.trim = true;
                w.seq += 1;
                w.seq
            };
            self.wait_durable(seq).await?;
            report.moved += moved;
            report.rounds += 1;
            // Nothing moved (none to move, or short of low pages) and
            // nothing gained: done for this run.
            if moved == 0 && pages() >= start {
                break;
            }
        }
        report.pages_after = pages();
        Ok(report)
    }
}
