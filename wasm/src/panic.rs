//! Rust panics, seen from JS.
//!
//! The wasm build aborts on panic (`panic = "abort"`: unwinding needs a nightly
//! toolchain on wasm32): the trapping instruction throws a `RuntimeError`
//! (`unreachable`) into the JS that called into the module. For a synchronous
//! call (a getter, `stats()`) that is the caller, who gets an exception. An
//! async operation, though, is polled from a microtask, so its promise would
//! never settle and the caller would wait forever.
//!
//! So every promise of the bindings is driven by [`run`], which records, while
//! its future is polled, how to reject it. The panic hook (installed at start,
//! [`install_hook`]) rejects that promise with an `OutpostError` of code
//! `"panic"` before the trap, and marks the database handle as panicked: its
//! state may be half-changed (a lock held by the abandoned operation is never
//! released), so every later call on that handle rejects with `"panic"` rather
//! than hang. Other handles, and handles opened afterwards, keep working.
//!
//! The trap itself still reaches the microtask queue as an uncaught
//! `RuntimeError` (logged by browsers; in Node an `uncaughtException`, fatal
//! unless the app handles that event).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;

use crate::error::js_error;

/// Set once a panic hit an operation of a database handle.
pub(crate) type Panicked = Rc<Cell<bool>>;

thread_local! {
    /// The promise whose future is being polled: how to reject it, and the
    /// flag of its handle.
    static CURRENT: RefCell<Option<(Function, Panicked)>> = const { RefCell::new(None) };
}

/// Installs the panic hook (once, when the module starts).
pub(crate) fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        // Logs the message and a JS stack to console.error (feature panic-hook).
        #[cfg(feature = "panic-hook")]
        console_error_panic_hook::hook(info);
        if let Some((reject, panicked)) = CURRENT.with(|c| c.borrow_mut().take()) {
            panicked.set(true);
            let e = js_error("panic", &format!("Outpost panicked: {info}"));
            let _ = reject.call1(&JsValue::UNDEFINED, &e);
        }
    }));
}

/// Polls the inner future with [`CURRENT`] set to its promise.
struct Tracked<F> {
    fut: Pin<Box<F>>,
    reject: Function,
    panicked: Panicked,
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let slot = (self.reject.clone(), self.panicked.clone());
        CURRENT.with(|c| *c.borrow_mut() = Some(slot));
        let r = self.fut.as_mut().poll(cx);
        CURRENT.with(|c| *c.borrow_mut() = None);
        r
    }
}

/// Runs `f` as a promise of the handle whose flag is `panicked`: resolved with
/// its value, rejected with its error, or rejected with code `"panic"` if it
/// panics (see the module docs).
pub(crate) fn run<F>(panicked: Panicked, f: F) -> Promise
where
    F: Future<Output = Result<JsValue, JsValue>> + 'static,
{
    if panicked.get() {
        return Promise::reject(&js_error(
            "panic",
            "an earlier operation on this database panicked; open it again",
        ));
    }
    let mut slots = None;
    let promise = Promise::new(&mut |resolve, reject| slots = Some((resolve, reject)));
    // The executor runs synchronously inside `new Promise`, so the slots are set.
    let Some((resolve, reject)) = slots else {
        return promise;
    };
    let tracked = Tracked {
        fut: Box::pin(f),
        reject: reject.clone(),
        panicked,
    };
    wasm_bindgen_futures::spawn_local(async move {
        let (settle, value) = match tracked.await {
            Ok(v) => (resolve, v),
            Err(e) => (reject, e),
        };
        let _ = settle.call1(&JsValue::UNDEFINED, &value);
    });
    promise
}
