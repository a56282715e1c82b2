//! The engine's one commit observer: every subscriber (the hub's sessions,
//! the edge clients, indexes and live queries to come) learns of a commit
//! from here, after it is durable and visible to new snapshots.
//!
//! Runtime-agnostic (atomics, a mutex and wakers, no executor), so the same code runs
//! under tokio on the hub and on the browser's event loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;

/// What the publisher and every subscriber share. A subscriber's wait reads
/// the atomics and registers its own waker, without a lock: the hub has one
/// subscriber per edge session, each of which waits again after every
/// frame it handles. Only a commit takes the lock, to wake them all.
#[derive(Debug, Default)]
struct Shared {
    last_etag: AtomicU64,
    /// Set once the database is closed or has failed: no commit will follow.
    ended: AtomicBool,
    /// The waker slot of every subscriber; the dropped ones go at the next
    /// wake.
    subs: Mutex<Vec<Weak<AtomicWaker>>>,
}

impl Shared {
    fn subs(&self) -> MutexGuard<'_, Vec<Weak<AtomicWaker>>> {
        // Pushed to and pruned with no await inside: a poisoned lock is intact.
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every waiting subscriber and forgets the dropped ones.
    fn wake_all(&self) {
        self.subs().retain(|w| match w.upgrade() {
            Some(slot) => {
                slot.wake();
                true
            }
            None => false,
        });
    }

    fn subscriber(self: &Arc<Self>, seen: u64) -> CommitWatch {
        let slot = Arc::new(AtomicWaker::new());
        let mut subs = self.subs();
        // Subscribers that come and go with no commit in between: prune
        // the dropped ones each time the list doubles.
        if subs.len() >= 64 && subs.len().is_power_of_two() {
            subs.retain(|w| w.strong_count() > 0);
        }
        subs.push(Arc::downgrade(&slot));
        drop(subs);
        CommitWatch {
            shared: self.clone(),
            seen,
            slot,
        }
    }
}

/// The publishing side, owned by the database.
#[derive(Debug, Default)]
pub(crate) struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    /// A publisher whose last committed etag is `last_etag`.
    pub(crate) fn new(last_etag: u64) -> Publisher {
        let shared = Shared::default();
        shared.last_etag.store(last_etag, Ordering::SeqCst);
        Publisher {
            shared: Arc::new(shared),
        }
    }

    /// Publishes a durable commit whose last etag is `etag` (a commit that
    /// wrote no document leaves the etag as it was and wakes no one).
    pub(crate) fn committed(&self, etag: u64) {
        if self.shared.last_etag.fetch_max(etag, Ordering::SeqCst) < etag {
            self.shared.wake_all();
        }
    }

    /// No commit will follow (closed, or failed): wakes every subscriber.
    pub(crate) fn end(&self) {
        self.shared.ended.store(true, Ordering::SeqCst);
        self.shared.wake_all();
    }

    /// A new subscriber that has seen everything committed so far.
    pub(crate) fn subscribe(&self) -> CommitWatch {
        let seen = self.shared.last_etag.load(Ordering::SeqCst);
        self.shared.subscriber(seen)
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
    shared: Arc<Shared>,
    seen: u64,
    /// Where this subscriber's waker waits (the publisher holds it weakly).
    slot: Arc<AtomicWaker>,
}

impl Clone for CommitWatch {
    /// Another subscriber that has seen what this one has.
    fn clone(&self) -> CommitWatch {
        self.shared.subscriber(self.seen)
    }
}

impl CommitWatch {
    /// The last etag of the newest durable commit.
    pub fn last_etag(&self) -> u64 {
        self.shared.last_etag.load(Ordering::SeqCst)
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

    /// A commit not reported yet, or the end.
    fn ready(&mut self) -> Option<Option<u64>> {
        let last = self.shared.last_etag.load(Ordering::SeqCst);
        if last > self.seen {
            self.seen = last;
            return Some(Some(last));
        }
        self.shared.ended.load(Ordering::SeqCst).then_some(None)
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
        if let Some(r) = this.watch.ready() {
            return Poll::Ready(r);
        }
        this.watch.slot.register(cx.waker());
        // A commit published between the first look and the registration
        // woke the slot before it held this waker: look again.
        match this.watch.ready() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl Drop for Changed<'_> {
    /// A wait given up (say, the other branch of a `select!` won) leaves no
    /// waker behind, so the next commit does not wake a task that is busy
    /// elsewhere (an edge applying its own batch, for one).
    fn drop(&mut self) {
        drop(self.watch.slot.take());
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

    /// Counts the wakes of the waker it makes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_given_up_wait_is_not_woken_and_dropped_subscribers_leave() {
        let p = Publisher::new(0);
        let mut a = p.subscribe();
        let b = a.clone();
        assert_eq!(p.shared.subs().len(), 2);
        let count = Arc::new(Count(Default::default()));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        // A wait polled, then given up: the commit wakes nobody.
        {
            let mut wa = a.changed();
            assert!(Pin::new(&mut wa).poll(&mut cx).is_pending());
        }
        p.committed(1);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        assert_eq!(a.changed().now_or_never(), Some(Some(1)));
        // A wait still pending is woken once per commit.
        let mut wa = a.changed();
        assert!(Pin::new(&mut wa).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut wa).poll(&mut cx).is_pending());
        p.committed(2);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(Pin::new(&mut wa).poll(&mut cx), Poll::Ready(Some(2)));
        drop(wa);
        // A dropped subscriber leaves at the next wake.
        drop(b);
        p.committed(3);
        assert_eq!(p.shared.subs().len(), 1);
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
