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

/// How long an index step may map documents in one task of the page, in
/// milliseconds, before it waits for the next task (up to
/// [`STEP_TASKS`](crate::db::STEP_TASKS) of them, then it commits). In the
/// browser a step runs on the page's thread (a task over 50 ms is a long
/// task) and a map function may be slow; the budget leaves room for the
/// step's commit. Natively a step is bounded by its documents alone (each
/// step is a durable commit).
#[cfg(target_arch = "wasm32")]
pub const TASK_BUDGET_MS: Option<i64> = Some(16);
/// How long work that runs in steps may run before it ends its step (see
/// the wasm32 build): natively, no limit.
#[cfg(not(target_arch = "wasm32"))]
pub const TASK_BUDGET_MS: Option<i64> = None;

/// Work on the page's thread one task budget ([`TASK_BUDGET_MS`]) at a
/// time: [`TaskBudget::spent`] says when this task's budget is used up,
/// [`TaskBudget::next_task`] waits for the next task and starts a new
/// budget. Natively nothing is ever spent.
pub struct TaskBudget {
    started: i64,
}

impl TaskBudget {
    /// A budget starting now.
    pub fn start() -> TaskBudget {
        TaskBudget {
            started: wall_clock_ms(),
        }
    }

    /// Whether this task has used its budget (never, natively).
    pub fn spent(&self) -> bool {
        TASK_BUDGET_MS.is_some_and(|ms| wall_clock_ms() - self.started >= ms)
    }

    /// Waits for the next task ([`next_task`]) and starts a new budget.
    pub async fn next_task(&mut self) {
        next_task().await;
        self.started = wall_clock_ms();
    }

    /// [`TaskBudget::next_task`] if the budget is spent.
    pub async fn pause_if_spent(&mut self) {
        if self.spent() {
            self.next_task().await;
        }
    }
}

/// Resolves in a new task of the event loop, so the page can paint, take
/// input and run what waits (IndexedDB events of other operations) in
/// between: a `MessageChannel` message, not `setTimeout(0)`, which browsers
/// clamp to 4 ms when nested (nor `scheduler.yield()`, whose continuation
/// goes before the page's other tasks). The port is closed afterwards (an
/// open port would keep a Node process alive). Where there is no
/// `MessageChannel`, it resolves at once.
#[cfg(target_arch = "wasm32")]
pub async fn next_task() {
    use wasm_bindgen::{JsCast, JsValue, closure::Closure};
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let Ok(ch) = web_sys::MessageChannel::new() else {
            let _ = resolve.call0(&JsValue::UNDEFINED);
            return;
        };
        let port = ch.port1();
        let port2 = port.clone();
        let done = resolve.clone();
        let cb = Closure::once_into_js(move || {
            port2.close();
            let _ = done.call0(&JsValue::UNDEFINED);
        });
        port.set_onmessage(Some(cb.unchecked_ref()));
        if ch.port2().post_message(&JsValue::UNDEFINED).is_err() {
            port.close();
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(p).await;
}

/// Resolves in a new task of the event loop in the browser (see the wasm32
/// build); natively at once: native work in steps is not in an event loop
/// that paints.
#[cfg(not(target_arch = "wasm32"))]
pub async fn next_task() {}

/// Pending once (waking itself), then ready: every other task ready on the
/// same executor runs before the caller goes on (on any platform; unlike
/// [`next_task`], which on wasm32 waits for the browser's next task).
pub async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// Whether the engine may start threads of its own: natively yes, on wasm32
/// no (a page's wasm runs on the thread that called it).
pub const THREADS: bool = cfg!(not(target_arch = "wasm32"));

/// What a thread started by [`make_ahead`] hands over, in order.
#[cfg(not(target_arch = "wasm32"))]
pub struct Ahead<R>(futures::channel::mpsc::UnboundedReceiver<R>);

/// What a thread started by [`make_ahead`] hands over: on wasm32 there is
/// never one (the type has no values, so code that waits for it is gone
/// from the build).
#[cfg(target_arch = "wasm32")]
pub struct Ahead<R>(std::convert::Infallible, std::marker::PhantomData<R>);

impl<R> Ahead<R> {
    /// The next thing made, or `None` once the thread has ended.
    pub async fn next(&mut self) -> Option<R> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            futures::StreamExt::next(&mut self.0).await
        }
        #[cfg(target_arch = "wasm32")]
        match self.0 {}
    }
}

/// Hands `items` to `make` on a new thread named `name`; `make` passes
/// each thing it makes to its `send`, which is `false` once the [`Ahead`]
/// is dropped (then `make` should stop). Gives `items` back if no thread
/// could be started (always on wasm32): the caller does the work itself.
#[cfg(not(target_arch = "wasm32"))]
pub fn make_ahead<T: Send + 'static, R: Send + 'static>(
    name: &str,
    items: Vec<T>,
    make: impl FnOnce(Vec<T>, &dyn Fn(R) -> bool) + Send + 'static,
) -> Result<Ahead<R>, Vec<T>> {
    let (give, take) = std::sync::mpsc::sync_channel::<Vec<T>>(1);
    let (send, made) = futures::channel::mpsc::unbounded();
    let started = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Ok(items) = take.recv() {
                make(items, &|r| send.unbounded_send(r).is_ok());
            }
        });
    if started.is_err() {
        return Err(items);
    }
    give.send(items).map(|()| Ahead(made)).map_err(|e| e.0)
}

/// Hands `items` to `make` on a new thread (see the native build): on
/// wasm32 never, `items` come back.
#[cfg(target_arch = "wasm32")]
pub fn make_ahead<T, R>(
    _name: &str,
    items: Vec<T>,
    _make: impl FnOnce(Vec<T>, &dyn Fn(R) -> bool),
) -> Result<Ahead<R>, Vec<T>> {
    Err(items)
}

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
