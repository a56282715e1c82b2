//! Group commit: a transaction applied to the working state waits until it
//! is durable; the first waiter with no flush under way becomes the flusher
//! and hands every page the working generation wrote, plus the new meta
//! record, to the page store as one atomic commit. Also closing, and the
//! commit observer ([`Database::watch_commits`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::channel::oneshot;

use crate::btree;
use crate::error::Error;
use crate::store::{Commit, Durability, PAGE_SIZE, PageBuf, PageNo, PageStore};
use crate::watch::CommitWatch;

use super::alloc::WCtx;
use super::meta::Tree;
use super::write::bump_stat;
use super::{Database, Inner};

impl<S: PageStore> Database<S> {
    /// Waits until transaction `seq` is durable, flushing (as the group-commit
    /// leader) when no flush is under way.
    pub(super) async fn wait_durable(&self, seq: u64) -> Result<(), Error> {
        loop {
            let rx = {
                let mut sh = self.inner.shared();
                if sh.durable_seq >= seq {
                    return Ok(());
                }
                if let Some(f) = &sh.failed {
                    return Err(Error::Poisoned(f.clone()));
                }
                if sh.flushing {
                    let (tx, rx) = oneshot::channel();
                    sh.waiters.push(tx);
                    Some(rx)
                } else {
                    sh.flushing = true;
                    None
                }
            };
            match rx {
                Some(rx) => {
                    let _ = rx.await;
                }
                None => {
                    let guard = FlushGuard { inner: &self.inner };
                    if self.gathers() {
                        // Before flushing, let every task that is ready run
                        // once: writers that arrived together, or that the
                        // last flush released (tasks on this executor thread,
                        // which a commit in this thread would block, or whose
                        // apply would otherwise start the next group), join
                        // this group and share its WAL write and fsync.
                        crate::platform::yield_once().await;
                    }
                    let r = self.flush().await;
                    drop(guard);
                    r?;
                }
            }
        }
    }

    /// Whether a flush now would be a lone commit: the store does something
    /// for those, and no other transaction is under way.
    fn alone(&self) -> bool {
        self.inner.store.commits_alone() && self.inner.txns.load(Ordering::Acquire) <= 1
    }

    /// Whether the flusher lets ready tasks run before it takes the
    /// generation: natively while at most [`GATHER_TXNS`] transactions are
    /// under way (a lone commit included), on wasm32 (one thread) before a
    /// lone commit. Then the writers a flush releases apply and join the
    /// next flush together, one group instead of two alternating halves:
    /// half the fsyncs and WAL writes per document (nine alternating pairs:
    /// 8 writers +63 % documents per second and −40 % CPU per document, 64
    /// writers −20 % CPU and −9 % documents per second; docs/benchmarks.md,
    /// "One group of writers per flush"). With more under way their applies,
    /// one after another, outlast a flush, and two groups that overlap the
    /// apply of one with the flush of the other go faster, so the flusher
    /// does not wait.
    fn gathers(&self) -> bool {
        if crate::platform::THREADS {
            self.inner.txns.load(Ordering::Acquire) <= GATHER_TXNS
        } else {
            self.alone()
        }
    }

    /// Takes the working generation's pages and commits them as one store commit.
    async fn flush(&self) -> Result<(), Error> {
        let (fut, meta, seq, erased_late, trimmed) = {
            let mut w = self.inner.writer.lock().await;
            let seq = w.seq;
            if seq <= self.inner.shared().durable_seq {
                return Ok(());
            }
            let w = &mut *w;
            // Every path that moves `seq` read the free list first
            // (`ensure_free_list`); a flush without it would lose the list.
            if !w.free_loaded {
                return Err(self.poison(Error::CorruptRecord {
                    record: "free list".into(),
                    reason: "a flush before the free list was read".into(),
                }));
            }
            // Collection counts of this generation, one tree update per collection.
            // Each delta is removed right after it is applied (no await in
            // between), so a dropped flush never applies one twice.
            let keys: Vec<Vec<u8>> = w.coll_deltas.keys().cloned().collect();
            for k in keys {
                let Some((name, delta)) = w.coll_deltas.get(&k).cloned() else {
                    continue;
                };
                let root = w.meta.root(Tree::Stats);
                let mut ctx = WCtx {
                    inner: &self.inner,
                    w: &mut *w,
                };
                let r = bump_stat(&mut ctx, root, &k, &name, delta).await;
                match r {
                    Ok(root) => {
                        w.meta.set_root(Tree::Stats, root);
                        w.coll_deltas.remove(&k);
                    }
                    Err(e) => {
                        return Err(self.poison(e));
                    }
                }
            }
            {
                let mut ctx = WCtx {
                    inner: &self.inner,
                    w: &mut *w,
                };
                if let Err(e) = super::origins::flush(&mut ctx).await {
                    return Err(self.poison(e));
                }
            }
            w.keep_changes();
            // Free pages a purge had to leave (a snapshot could read them)
            // are overwritten once reusable (see `super::purge`).
            let limit = {
                let sh = self.inner.shared();
                let oldest = sh.readers.keys().next().copied();
                oldest
                    .unwrap_or(sh.visible.generation)
                    .min(sh.visible.generation)
            };
            let erased_late = w.erase_deferred(limit) > 0;
            // A vacuum's flush: the free tail leaves the file.
            let trimmed = std::mem::take(&mut w.trim) && w.trim_tail(limit) > 0;
            w.write_free_list();
            let meta = w.meta.clone();
            let mut dirty = std::mem::take(&mut w.dirty);
            let staged = std::mem::take(&mut w.staged);
            // A staged page this generation freed again (or a rolled-back
            // transaction wrote) belongs to no tree; listing it zeroed makes
            // the commit, not the staged frame, its newest version.
            for no in staged.keys() {
                dirty
                    .entry(*no)
                    .or_insert_with(|| Arc::new(vec![0u8; PAGE_SIZE]));
            }
            for (no, buf) in dirty.iter_mut() {
                // Checksummed when staged, and unchanged since.
                if staged.get(no).is_some_and(|s| Arc::ptr_eq(s, buf)) {
                    continue;
                }
                // A page a purge overwrote stays all zeros (kind 0).
                if btree::page_kind(buf) != 0 {
                    btree::set_checksum(Arc::make_mut(buf).as_mut_slice());
                }
            }
            let pages: Vec<(PageNo, PageBuf)> =
                dirty.iter().map(|(k, v)| (*k, v.clone())).collect();
            w.inflight = Arc::new(dirty);
            w.meta.generation += 1;
            // Submit while still holding the writer lock and without an await in
            // between: the commit is queued even if this future is dropped.
            // The cache gets the new versions now, not after the commit: a page
            // reused by this generation may still be cached with its old content,
            // and no snapshot can reach it (see the reuse rule), so replacing it
            // early is safe while replacing it late could be skipped if this
            // future is dropped.
            for (no, buf) in &pages {
                self.inner.cache.put(*no, buf.clone());
            }
            // Durable if one transaction of the group asked so; relaxed
            // if every one asked so; else the database's default.
            let durability = if w.asked_durable {
                Durability::Durable
            } else if w.asked_relaxed > 0 && w.asked_relaxed >= seq - w.flushed_seq {
                Durability::Relaxed
            } else {
                self.inner.durability
            };
            w.asked_durable = false;
            w.asked_relaxed = 0;
            w.flushed_seq = seq;
            let commit = Commit {
                pages,
                meta: meta.encode(),
                durability,
            };
            let fut = if self.alone() {
                self.inner.store.commit_alone(commit)
            } else {
                self.inner.store.commit(commit)
            };
            (fut, meta, seq, erased_late, trimmed)
        };
        match fut.await {
            Ok(()) => {
                let etag = meta.last_etag;
                let pages = meta.next_page;
                {
                    let mut sh = self.inner.shared();
                    sh.make_visible(meta);
                    sh.durable_seq = sh.durable_seq.max(seq);
                }
                self.inner.commits.committed(etag);
                if erased_late && let Err(e) = self.inner.store.erase_residue().await {
                    return Err(self.poison(e.into()));
                }
                // Still the flusher: no later commit has reached the store.
                if trimmed && let Err(e) = self.inner.store.shrink(pages).await {
                    return Err(self.poison(e.into()));
                }
                Ok(())
            }
            Err(e) => Err(self.poison(e.into())),
        }
    }

    /// A flush failed: the database is poisoned (every later write fails
    /// until it is reopened) and no commit will follow. Returns `e`.
    fn poison(&self, e: Error) -> Error {
        self.inner.shared().failed = Some(e.to_string());
        self.inner.commits.end();
        e
    }

    /// A subscription to this database's commits: the engine's one commit
    /// observer, which every live reader (hub sessions, edge clients, indexes)
    /// uses. See [`CommitWatch`].
    pub fn watch_commits(&self) -> CommitWatch {
        self.inner.commits.subscribe()
    }

    /// Flushes anything pending and closes the store.
    ///
    /// A database poisoned by a failed commit still closes (its failed writes
    /// were already reported to their callers); a flush that fails here is
    /// returned after the store is closed.
    pub async fn close(&self) -> Result<(), Error> {
        let poisoned = self.inner.shared().failed.is_some();
        let seq = {
            let mut w = self.inner.writer.lock().await;
            // Pages a purge left to erase: one more flush overwrites those
            // no snapshot pins any more.
            let closed = self.inner.shared().closed;
            if !w.to_erase.is_empty() && !poisoned && !closed && !self.inner.read_only {
                w.seq += 1;
            }
            w.seq
        };
        let flushed = if poisoned {
            Ok(())
        } else {
            self.wait_durable(seq).await
        };
        {
            let mut sh = self.inner.shared();
            if sh.closed {
                return flushed;
            }
            sh.closed = true;
        }
        self.inner.commits.end();
        let synced = if flushed.is_ok() && !poisoned && !self.inner.read_only {
            self.inner.store.sync().await.map_err(Error::from)
        } else {
            Ok(())
        };
        self.inner.store.close().await?;
        flushed.and(synced)
    }
}

/// Counts a transaction in `Inner::txns` while it lives (see
/// [`Database::alone`]).
pub(super) struct TxnCount<'a, S> {
    inner: &'a Inner<S>,
}

impl<'a, S> TxnCount<'a, S> {
    pub(super) fn enter(inner: &'a Inner<S>) -> TxnCount<'a, S> {
        inner.txns.fetch_add(1, Ordering::AcqRel);
        TxnCount { inner }
    }
}

impl<S> Drop for TxnCount<'_, S> {
    fn drop(&mut self) {
        self.inner.txns.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Most transactions under way for which a flusher lets ready writers join
/// its group first ([`Database::gathers`]).
const GATHER_TXNS: usize = 64;

/// Resets the flushing flag and wakes waiters even if the flush future is dropped.
struct FlushGuard<'a, S> {
    inner: &'a Inner<S>,
}

impl<S> Drop for FlushGuard<'_, S> {
    fn drop(&mut self) {
        let mut sh = self.inner.shared();
        sh.flushing = false;
        for tx in sh.waiters.drain(..) {
            let _ = tx.send(());
        }
    }
}
