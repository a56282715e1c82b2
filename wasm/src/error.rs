//! The one bridge from Rust errors to JS: every error the bindings raise is a JS
//! `Error` named `OutpostError` with a stable `code` (the engine's
//! [`outpost::Error::code`]), so callers branch on `e.code`, never on messages.
//!
//! The handwritten JS layer of the npm package registers its `OutpostError`
//! class (a subclass of `Error`) with `__setErrorClass`; errors are then real
//! instances of it (`e instanceof OutpostError`). Without it (the raw bindings)
//! they are plain `Error`s with the same `name` and `code`.

use std::cell::RefCell;

use js_sys::{Function, Reflect};
use outpost::{OpenError, StoreError};
use wasm_bindgen::prelude::*;

thread_local! {
    static ERROR_CLASS: RefCell<Option<Function>> = const { RefCell::new(None) };
}

/// Registers the constructor used for errors: `new ctor(message, code)`.
#[wasm_bindgen(js_name = "__setErrorClass", skip_typescript)]
pub fn set_error_class(ctor: Function) {
    ERROR_CLASS.with(|c| *c.borrow_mut() = Some(ctor));
}

/// A JS error with `name` `"OutpostError"` and the given `code`.
pub(crate) fn js_error(code: &str, message: &str) -> JsValue {
    let registered = ERROR_CLASS.with(|c| c.borrow().clone());
    if let Some(ctor) = registered {
        let args = js_sys::Array::of2(&JsValue::from_str(message), &JsValue::from_str(code));
        if let Ok(e) = Reflect::construct(&ctor, &args) {
            return e;
        }
    }
    let e = js_sys::Error::new(message);
    e.set_name("OutpostError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(&e, &"code".into(), &JsValue::from_str(code));
    e.into()
}

/// Converts an engine error into a JS `OutpostError` whose `code` is
/// [`outpost::Error::code`] (`"invalid_id"`, `"invalid_json"`,
/// `"concurrency_conflict"`, `"closed"`, ...).
pub fn to_js(e: outpost::Error) -> JsValue {
    js_error(e.code(), &e.to_string())
}

/// Converts an error of opening a database (codes from `OpenError::code`).
pub(crate) fn open_error_to_js(e: OpenError) -> JsValue {
    js_error(e.code(), &e.to_string())
}

/// An `invalid_argument` error (bad options object, bad limit, ...).
pub(crate) fn invalid_argument(message: impl AsRef<str>) -> JsValue {
    to_js(outpost::InputError::InvalidArgument(message.as_ref().to_string()).into())
}

/// An `invalid_json` error (a document that is not a plain JSON-like object).
pub(crate) fn invalid_json(message: impl AsRef<str>) -> JsValue {
    to_js(outpost::InputError::InvalidJson(message.as_ref().to_string()).into())
}

/// The message of a thrown JS value (an `Error`'s message, or its string form).
pub(crate) fn message_of(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        let name = String::from(e.name());
        let msg = String::from(e.message());
        if name.is_empty() || name == "Error" {
            msg
        } else {
            format!("{name}: {msg}")
        }
    } else if let Some(s) = v.as_string() {
        s
    } else {
        format!("{v:?}")
    }
}

/// Converts what a host page store threw (or rejected with) into a store error:
/// a DOM `QuotaExceededError` (or an error with `code: "quota_exceeded"`)
/// becomes [`StoreError::QuotaExceeded`], anything else [`StoreError::Other`].
pub(crate) fn host_store_error(op: &str, v: &JsValue) -> StoreError {
    let name = Reflect::get(v, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    let code = Reflect::get(v, &"code".into())
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    let msg = format!("host page store {op}: {}", message_of(v));
    if name == "QuotaExceededError" || code == "quota_exceeded" {
        StoreError::QuotaExceeded(msg)
    } else {
        StoreError::Other(msg)
    }
}
