//! Every platform difference of the engine lives here (and in the store
//! modules: the file store's writer thread and `OsVfs` are native-only,
//! `store::idb` and `store::opfs` wasm32-only). The engine is single-source
//! for `wasm32-unknown-unknown` and native targets; only these few items
//! change between them.

use std::future::Future;
use std::pin::Pin;

/// A boxed future. `Send` on native targets, so the hub's tokio tasks can hold it;
/// not `Send` on wasm32, where browser futures (IndexedDB, `JsFuture`) are not.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A boxed future. `Send` on native targets, so the hub's tokio tasks can hold it;
/// not `Send` on wasm32, where browser futures (IndexedDB, `JsFuture`) are not.
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// `Send` on native targets, nothing on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
/// `Send` on native targets, nothing on wasm32.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` on native targets, nothing on wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> MaybeSync for T {}
/// `Sync` on native targets, nothing on wasm32.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSync for T {}

/// Milliseconds since the Unix epoch from the platform's wall clock.
#[cfg(not(target_arch = "wasm32"))]
pub fn wall_clock_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch from the platform's wall clock.
#[cfg(target_arch = "wasm32")]
pub fn wall_clock_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// How long an index step may spend reading and mapping documents before it
/// ends early and commits what it mapped, in milliseconds. In the browser a step
/// runs in the page's task (a task over 50 ms is a long task), and a map
/// function may be slow; the budget leaves room for the step's commit.
/// Natively a step is bounded by its documents alone (each step is a
/// durable commit).
#[cfg(target_arch = "wasm32")]
pub const TASK_BUDGET_MS: Option<i64> = Some(16);
/// How long work that runs in steps may run before it ends its step (see
/// the wasm32 build): natively, no limit.
#[cfg(not(target_arch = "wasm32"))]
pub const TASK_BUDGET_MS: Option<i64> = None;

/// Fills `buf` with random bytes from the platform's secure source
/// (the OS on native targets, `crypto.getRandomValues` in the browser).
pub fn random_bytes(buf: &mut [u8]) {
    // A failing OS random source is unrecoverable and very rare; fall back to a
    // clock-derived value rather than panic (ids only need uniqueness, not secrecy).
    if getrandom::fill(buf).is_err() {
        let mut x = wall_clock_ms() as u64 ^ 0x9E37_79B9_7F4A_7C15;
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
}
