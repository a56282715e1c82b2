//! Per-identity rate limits (`[limits]`), shared by every session of an
//! identity.
//!
//! Four token buckets per authenticated identity:
//! - **pushes** (`pushes_per_second`, `push_burst`): a `Push` frame costs 1
//!   (each commit has a fixed cost, whatever it holds);
//! - **pushed documents** (`push_docs_per_second`, `push_docs_burst`): a
//!   `Push` of N documents costs N (an empty one costs 1, so a flood of empty
//!   pushes is paced too). What a push costs the hub is its commit, and a
//!   commit costs per document: counting frames let a session's 500-document
//!   batches through at the price of one-document ones.
//! - **pushed bytes** (`push_bytes_per_second`, `push_bytes_burst`): the
//!   frame's size, for batches of few but large documents.
//! - **new sessions** (`sessions_per_second`, `session_burst`): each
//!   authenticated `Hello` costs 1 (a flood of short sessions, one per
//!   pushed version, is paced).
//!
//! And one push of an identity in the engine at a time
//! ([`RateLimits::engine_turn`]).
//!
//! The buckets *reserve*: a cost larger than what is left is still taken,
//! the bucket goes into debt, and the caller is told when the debt will be
//! paid; it waits until then before it goes on (the session holds the push
//! it read, one frame, and reads no further push: nothing is dropped nor
//! refused). Concurrent sessions of one identity therefore queue
//! one after the other, and the identity as a whole gets the configured rate,
//! however many sessions it opens. Buckets exist only for identities that
//! authenticated (a configured, bounded set): an unauthenticated client never
//! spends an identity's budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::Limits;

/// The `reason` label (`outpost_connections_refused_total`) of a session
/// refused for `[limits] sessions_per_second`.
pub const SESSION_RATE_REASON: &str = "sessions_per_second";

/// The first byte of a `Push` frame (docs/protocol.md).
pub const PUSH_TYPE_BYTE: u8 = 6;
/// The type byte of a `Write` frame (write safety `hub`, protocol 6):
/// charged like a push.
pub const WRITE_TYPE_BYTE: u8 = 16;

/// Whether a frame is charged to its identity's push budget (a `Push` or a
/// `Write`).
pub fn is_charged(frame: &[u8]) -> bool {
    matches!(frame.first(), Some(&PUSH_TYPE_BYTE | &WRITE_TYPE_BYTE))
}

/// A token bucket that may go into debt: `rate` tokens a second, at most
/// `burst` held.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(burst: u64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst as f64,
            at: now,
        }
    }

    /// Takes `cost` tokens at `now`; returns how long the caller must wait
    /// for the bucket to be out of debt (zero when it is not in debt).
    /// `rate == 0`: no limit.
    fn reserve(&mut self, cost: u64, rate: u64, burst: u64, now: Instant) -> Duration {
        if rate == 0 {
            return Duration::ZERO;
        }
        let rate = rate as f64;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst as f64);
        self.at = now;
        self.tokens -= cost as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }

    /// How long a reservation of `cost` would have to wait, without taking
    /// anything.
    fn wait_for(&self, cost: u64, rate: u64, burst: u64, now: Instant) -> Duration {
        self.clone().reserve(cost, rate, burst, now)
    }
}

/// The buckets of one identity.
#[derive(Debug)]
struct Budget {
    frames: Bucket,
    docs: Bucket,
    bytes: Bucket,
    sessions: Bucket,
    /// One push of the identity in the engine at a time.
    engine: Arc<Semaphore>,
}

/// The per-identity buckets of a hub.
#[derive(Debug, Default)]
pub struct RateLimits {
    identities: Mutex<HashMap<String, Budget>>,
}

/// The number of documents a `Push` frame announces (its header, read by
/// `outpost::sync::frame::push_header`), at most what its size can hold (a
/// document takes at least `MIN_DOC_BYTES`: a forged count cannot put an
/// identity in debt for days); 1 when the frame is too short to say (the
/// machine refuses it anyway).
pub fn push_doc_count(frame: &[u8]) -> u64 {
    outpost::sync::frame::push_header(frame).map_or(1, |(n, rest)| {
        u64::from(n).min((rest / MIN_DOC_BYTES) as u64)
    })
}

/// The fewest bytes a document takes in a `Push` (see `Frame::decode`).
const MIN_DOC_BYTES: usize = 21;

impl RateLimits {
    /// Runs `f` on `identity`'s budget (created full).
    fn with<T>(&self, identity: &str, limits: &Limits, f: impl FnOnce(&mut Budget) -> T) -> T {
        let mut map = self
            .identities
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let budget = map.entry(identity.to_string()).or_insert_with(|| Budget {
            frames: Bucket::new(u64::from(limits.push_burst), now),
            docs: Bucket::new(u64::from(limits.push_docs_burst), now),
            bytes: Bucket::new(limits.push_bytes_burst, now),
            sessions: Bucket::new(u64::from(limits.session_burst), now),
            engine: Arc::new(Semaphore::new(1)),
        });
        f(budget)
    }

    /// Charges a `Push` frame of `identity` (its documents and its bytes);
    /// returns when the session may hand it on (`None`: now).
    pub fn push(&self, identity: &str, frame: &[u8], limits: &Limits) -> Option<Instant> {
        let docs = push_doc_count(frame).max(1);
        let bytes = frame.len() as u64;
        let now = Instant::now();
        let wait = self.with(identity, limits, |b| {
            let d = b.docs.reserve(
                docs,
                u64::from(limits.push_docs_per_second),
                u64::from(limits.push_docs_burst),
                now,
            );
            let y = b.bytes.reserve(
                bytes,
                limits.push_bytes_per_second,
                limits.push_bytes_burst,
                now,
            );
            let f = b.frames.reserve(
                1,
                u64::from(limits.pushes_per_second),
                u64::from(limits.push_burst),
                now,
            );
            d.max(y).max(f)
        });
        (!wait.is_zero()).then(|| now + wait)
    }

    /// Waits for `identity`'s turn in the engine: one push of an identity is
    /// applied at a time, whatever its number of sessions, so a small push
    /// of another edge waits behind at most one of its commits (not one per
    /// session) even when it spends a whole burst at once. Held until the
    /// permit is dropped.
    pub async fn engine_turn(
        &self,
        identity: &str,
        limits: &Limits,
    ) -> Option<OwnedSemaphorePermit> {
        let turn = self.with(identity, limits, |b| b.engine.clone());
        turn.acquire_owned().await.ok()
    }

    /// Charges a new authenticated session of `identity`: `Ok(wait)` (zero:
    /// go on now), or `Err(wait)` without charging anything when the wait
    /// would exceed `max_wait` (the session is then refused as over the
    /// limit: only a client opening sessions far faster than
    /// `sessions_per_second` gets there).
    pub fn session(
        &self,
        identity: &str,
        limits: &Limits,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        let now = Instant::now();
        let (rate, burst) = (
            u64::from(limits.sessions_per_second),
            u64::from(limits.session_burst),
        );
        self.with(identity, limits, |b| {
            let wait = b.sessions.wait_for(1, rate, burst, now);
            if wait > max_wait {
                Err(wait)
            } else {
                Ok(b.sessions.reserve(1, rate, burst, now))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_reserves_into_debt_and_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000, t0);
        assert_eq!(b.reserve(600, 1000, 1000, t0), Duration::ZERO);
        // 400 left: 500 more means a debt of 100 = 0.1 s.
        let w = b.reserve(500, 1000, 1000, t0);
        assert!((w.as_secs_f64() - 0.1).abs() < 1e-6, "{w:?}");
        // A second session queues behind the first: 0.6 s.
        let w = b.reserve(500, 1000, 1000, t0);
        assert!((w.as_secs_f64() - 0.6).abs() < 1e-6, "{w:?}");
        // Two seconds later the debt is paid and the bucket is full again,
        // not fuller.
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(b.reserve(1000, 1000, 1000, t2), Duration::ZERO);
        assert!(!b.reserve(1, 1000, 1000, t2).is_zero());
        // Rate 0: no limit.
        assert_eq!(b.reserve(u64::MAX, 0, 1, t2), Duration::ZERO);
    }

    /// The bytes of a signed `Push` header announcing `n` documents,
    /// followed by room for them.
    fn push_of(n: u32) -> Vec<u8> {
        let mut f = outpost::sync::Frame::Push {
            upto: 7,
            seq: 1,
            prev: [0; 32],
            signature: vec![0; 64],
            docs: vec![],
        }
        .encode();
        let at = f.len() - 4;
        f[at..].copy_from_slice(&n.to_le_bytes());
        f.resize(f.len() + n as usize * MIN_DOC_BYTES, 0);
        f
    }

    #[test]
    fn the_push_cost_is_the_announced_document_count() {
        let mut f = push_of(0);
        // The count is believed only as far as the frame can hold it.
        let at = f.len() - 4;
        f[at..].copy_from_slice(&500u32.to_le_bytes());
        assert_eq!(push_doc_count(&f), 0);
        f.resize(f.len() + 500 * MIN_DOC_BYTES, 0);
        assert_eq!(push_doc_count(&f), 500);
        assert_eq!(push_doc_count(&[PUSH_TYPE_BYTE, 1, 2]), 1);
    }

    #[test]
    fn the_budget_is_shared_by_the_sessions_of_an_identity_not_by_identities() {
        let limits = Limits {
            push_docs_per_second: 100,
            push_docs_burst: 100,
            push_bytes_per_second: 0,
            ..Limits::default()
        };
        let r = RateLimits::default();
        let f = push_of(100);
        assert_eq!(push_doc_count(&f), 100);
        assert!(r.push("mallory", &f, &limits).is_none());
        // The same identity from another session: in debt, waits ~1 s.
        let at = r.push("mallory", &f, &limits).expect("a wait");
        let wait = at.saturating_duration_since(Instant::now());
        assert!(wait > Duration::from_millis(900), "{wait:?}");
        // Another identity has its own budget.
        assert!(r.push("writer", &f, &limits).is_none());
    }

    #[tokio::test]
    async fn one_push_of_an_identity_in_the_engine_at_a_time() {
        let r = RateLimits::default();
        let limits = Limits::default();
        let first = r.engine_turn("mallory", &limits).await.unwrap();
        // Another identity is not held.
        let other = r.engine_turn("writer", &limits).await;
        assert!(other.is_some());
        let second =
            tokio::time::timeout(Duration::from_millis(50), r.engine_turn("mallory", &limits))
                .await;
        assert!(second.is_err(), "a second push of mallory went in");
        drop(first);
        assert!(r.engine_turn("mallory", &limits).await.is_some());
    }

    #[test]
    fn sessions_beyond_the_longest_wait_are_refused_without_being_charged() {
        let limits = Limits {
            sessions_per_second: 1,
            session_burst: 2,
            ..Limits::default()
        };
        let r = RateLimits::default();
        let max = Duration::from_millis(1500);
        assert_eq!(r.session("a", &limits, max), Ok(Duration::ZERO));
        assert_eq!(r.session("a", &limits, max), Ok(Duration::ZERO));
        let w = r.session("a", &limits, max).expect("paced");
        assert!(w > Duration::from_millis(900), "{w:?}");
        // The next would wait ~2 s > max: refused, and not charged.
        assert!(r.session("a", &limits, max).is_err());
        assert!(r.session("a", &limits, max).is_err());
        assert!(r.session("b", &limits, max).is_ok());
    }
}
