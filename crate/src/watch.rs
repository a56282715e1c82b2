//! The engine's one commit observer: every subscriber (the hub's sessions,
//! the edge clients, indexes and live queries to come) learns of a commit
//! from here, after it is durable and visible to new snapshots.
//!
//! Runtime-agnostic (a mutex and wakers, no executor), so the same code runs
//! under tokio on the hub and on the browser's event loop.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
struct State {
    last_etag: u64,
    /// Set once the database is closed or has failed: no commit will follow.
    ended: bool,
    /// The waker of each waiting subscriber, by subscriber id: registering
    /// again replaces the entry in O(1), however many subscribers wait (the
    /// hub has one per edge session).
    wakers: HashMap<u64, Waker>,
    next_id: u64,
}

impl State {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// The publishing side, owned by the database.
#[derive(Debug, Default)]
pub(crate) struct Publisher {
    state: Arc<Mutex<State>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Updated field by field with no await inside: a poisoned lock is intact.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Publisher {
    /// A publisher whose last committed etag is `last_etag`.
    pub(crate) fn new(last_etag: u64) -> Publisher {
        Publisher {
            state: Arc::new(Mutex::new(State {
                last_etag,
                ..State::default()
            })),
        }
    }

    /// Publishes a durable commit whose last etag is `etag` (a commit that
    /// wrote no document leaves the etag as it was and wakes no one).
    pub(crate) fn committed(&self, etag: u64) {
        let wakers = {
            let mut s = lock(&self.state);
            if etag <= s.last_etag {
                return;
            }
            s.last_etag = etag;
            std::mem::take(&mut s.wakers)
        };
        wakers.into_values().for_each(Waker::wake);
    }

    /// No commit will follow (closed, or failed): wakes every subscriber.
    pub(crate) fn end(&self) {
        let wakers = {
            let mut s = lock(&self.state);
            s.ended = true;
            std::mem::take(&mut s.wakers)
        };
        wakers.into_values().for_each(Waker::wake);
    }

    /// A new subscriber that has seen everything committed so far.
    pub(crate) fn subscribe(&self) -> CommitWatch {
        let mut s = lock(&self.state);
        CommitWatch {
            state: self.state.clone(),
            seen: s.last_etag,
            id: s.new_id(),
        }
    }
}

/// A subscription to a database's commits (from [`crate::Database::watch_commits`]).
///
/// It remembers the last etag it reported; [`CommitWatch::changed`] resolves
/// once a later commit is durable. Commits in between are coalesced: a slow
/// subscriber wakes once with the newest etag and reads the changes feed from
/// where it was.
#[derive(Debug)]
pub struct CommitWatch {
    state: Arc<Mutex<State>>,
    seen: u64,
    id: u64,
}

impl Clone for CommitWatch {
    /// Another subscriber that has seen what this one has.
    fn clone(&self) -> CommitWatch {
        CommitWatch {
            state: self.state.clone(),
            seen: self.seen,
            id: lock(&self.state).new_id(),
        }
    }
}

impl Drop for CommitWatch {
    fn drop(&mut self) {
        lock(&self.state).wakers.remove(&self.id);
    }
}

impl CommitWatch {
    /// The last etag of the newest durable commit.
    pub fn last_etag(&self) -> u64 {
        lock(&self.state).last_etag
    }

    /// The last etag this subscriber was told of.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Resolves to the new last etag once a commit after [`CommitWatch::seen`]
    /// is durable, or to `None` once the database is closed or has failed
    /// (commits made before that are still reported first).
    pub fn changed(&mut self) -> Changed<'_> {
        Changed { watch: self }
    }
}

/// The future of [`CommitWatch::changed`].
#[derive(Debug)]
pub struct Changed<'a> {
    watch: &'a mut CommitWatch,
}

impl Future for Changed<'_> {
    type Output = Option<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u64>> {
        let this = self.get_mut();
        let mut s = lock(&this.watch.state);
        if s.last_etag > this.watch.seen {
            this.watch.seen = s.last_etag;
            return Poll::Ready(Some(s.last_etag));
        }
        if s.ended {
            return Poll::Ready(None);
        }
        let id = this.watch.id;
        match s.wakers.get_mut(&id) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => w.clone_from(cx.waker()),
            None => {
                s.wakers.insert(id, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Changed<'_> {
    /// A wait given up (say, the other branch of a `select!` won) leaves no
    /// waker behind, so the next commit does not wake a task that is busy
    /// elsewhere (an edge applying its own batch, for one).
    fn drop(&mut self) {
        lock(&self.watch.state).wakers.remove(&self.watch.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn coalesces_and_ends() {
        let p = Publisher::new(5);
        let mut w = p.subscribe();
        assert_eq!(w.seen(), 5);
        assert!(w.changed().now_or_never().is_none());
        p.committed(6);
        p.committed(9);
        p.committed(7);
        assert_eq!(w.changed().now_or_never(), Some(Some(9)));
        assert!(w.changed().now_or_never().is_none());
        p.committed(10);
        p.end();
        assert_eq!(w.changed().now_or_never(), Some(Some(10)));
        assert_eq!(w.changed().now_or_never(), Some(None));
        assert_eq!(p.subscribe().changed().now_or_never(), Some(None));
    }

    #[test]
    fn one_waker_per_subscriber_and_dropped_ones_leave() {
        let p = Publisher::new(0);
        let mut a = p.subscribe();
        let mut b = a.clone();
        for _ in 0..3 {
            assert!(a.changed().now_or_never().is_none());
            assert!(b.changed().now_or_never().is_none());
        }
        assert!(lock(&p.state).wakers.is_empty(), "dropped waits leave");
        let mut wa = a.changed();
        let mut wb = b.changed();
        for _ in 0..3 {
            assert!((&mut wa).now_or_never().is_none());
            assert!((&mut wb).now_or_never().is_none());
        }
        assert_eq!(lock(&p.state).wakers.len(), 2, "re-polling replaces");
        drop((wa, wb));
        assert!(lock(&p.state).wakers.is_empty());
        drop(b);
        let mut wa = a.changed();
        assert!((&mut wa).now_or_never().is_none());
        assert_eq!(lock(&p.state).wakers.len(), 1);
        p.committed(1);
        assert!(lock(&p.state).wakers.is_empty());
        assert_eq!(wa.now_or_never(), Some(Some(1)));
    }

    #[test]
    fn wakes_a_waiting_task() {
        let p = Arc::new(Publisher::new(0));
        let mut w = p.subscribe();
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            p2.committed(3);
        });
        assert_eq!(futures::executor::block_on(w.changed()), Some(3));
        t.join().unwrap();
    }
}
