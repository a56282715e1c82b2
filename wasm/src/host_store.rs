//! A page store supplied by the host as a JS object: how Outpost keeps its pages
//! where there is no IndexedDB (edge workers, Node) or where the app wants its
//! own storage (a KV binding, a file, a `Map` in tests).
//!
//! The object's methods may be synchronous or return promises:
//!
//! ```js
//! const pages = new Map();
//! let meta;
//! const store = {
//!   readPage: async (no) => pages.get(no),            // Uint8Array | undefined
//!   readMeta: async () => meta,                         // Uint8Array | undefined
//!   commit: async (batch, newMeta) => {                 // atomic: all or nothing
//!     for (const [no, bytes] of batch) pages.set(no, bytes);
//!     meta = newMeta;
//!   },
//!   sync: async () => {},                               // optional
//!   close: async () => {},                              // optional
//! };
//! const db = await Outpost.open("notes", { store });
//! ```
//!
//! The contract is the engine's [`outpost::PageStore`]: `commit` must apply all
//! its pages and the meta record or none of them, commits arrive one at a time
//! in order, and the store needs to keep only the newest version of each page.
//! The buffers handed to `commit` are fresh copies the store may keep.

use std::fmt;

use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use outpost::PageStore;
use outpost::platform::BoxFuture;
use outpost::store::{Commit, Durability, PAGE_SIZE, PageBuf, PageNo, StoreError};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::error::host_store_error;

/// A [`PageStore`] over a host-supplied JS object with the methods
/// `readPage(no)`, `readMeta()`, `commit(pages, meta, { durable })` and,
/// optionally, `sync()` and `close()` (see the module docs).
pub struct JsPageStore {
    obj: JsValue,
    read_page: Function,
    read_meta: Function,
    commit: Function,
    sync: Option<Function>,
    close: Option<Function>,
}

impl fmt::Debug for JsPageStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsPageStore").finish_non_exhaustive()
    }
}

/// The optional method `name` of `obj` (`None` when absent).
fn optional(obj: &JsValue, name: &str) -> Result<Option<Function>, String> {
    let v = Reflect::get(obj, &name.into()).map_err(|e| crate::error::message_of(&e))?;
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.dyn_into::<Function>()
        .map(Some)
        .map_err(|_| format!("the page store's {name} is not a function"))
}

/// The required method `name` of `obj`.
fn required(obj: &JsValue, name: &str) -> Result<Function, String> {
    optional(obj, name)?.ok_or_else(|| format!("the page store has no {name}() method"))
}

/// Calls `f` on `obj` and awaits the result if it is a promise (or thenable).
async fn call(obj: &JsValue, f: &Function, op: &str, args: &Array) -> Result<JsValue, StoreError> {
    let v = f.apply(obj, args).map_err(|e| host_store_error(op, &e))?;
    JsFuture::from(Promise::resolve(&v))
        .await
        .map_err(|e| host_store_error(op, &e))
}

/// The bytes of a `Uint8Array` or `ArrayBuffer` (copied out of JS memory).
fn bytes_of(v: &JsValue) -> Option<Vec<u8>> {
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        Some(a.to_vec())
    } else if v.is_instance_of::<js_sys::ArrayBuffer>() {
        Some(Uint8Array::new(v).to_vec())
    } else {
        None
    }
}

fn corrupt(page: Option<PageNo>, reason: String) -> StoreError {
    StoreError::Corrupt {
        file: "host page store".into(),
        page,
        offset: 0,
        reason,
    }
}

impl JsPageStore {
    /// Wraps a JS object; fails (with the reason) if a required method is missing.
    pub fn new(obj: JsValue) -> Result<JsPageStore, String> {
        if !obj.is_object() {
            return Err("the page store must be an object".into());
        }
        Ok(JsPageStore {
            read_page: required(&obj, "readPage")?,
            read_meta: required(&obj, "readMeta")?,
            commit: required(&obj, "commit")?,
            sync: optional(&obj, "sync")?,
            close: optional(&obj, "close")?,
            obj,
        })
    }
}

impl PageStore for JsPageStore {
    fn read_page(&self, no: PageNo) -> BoxFuture<'_, Result<PageBuf, StoreError>> {
        Box::pin(async move {
            let args = Array::of1(&JsValue::from_f64(no as f64));
            let v = call(&self.obj, &self.read_page, "readPage", &args).await?;
            if v.is_undefined() || v.is_null() {
                return Err(StoreError::PageNotFound(no));
            }
            let bytes = bytes_of(&v).ok_or_else(|| {
                corrupt(
                    Some(no),
                    "readPage returned neither a Uint8Array nor undefined".into(),
                )
            })?;
            if bytes.len() != PAGE_SIZE {
                return Err(corrupt(
                    Some(no),
                    format!("page has {} bytes, expected {PAGE_SIZE}", bytes.len()),
                ));
            }
            Ok(PageBuf::new(bytes))
        })
    }

    fn read_meta(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let v = call(&self.obj, &self.read_meta, "readMeta", &Array::new()).await?;
            if v.is_undefined() || v.is_null() {
                return Ok(None);
            }
            bytes_of(&v).map(Some).ok_or_else(|| {
                corrupt(
                    None,
                    "readMeta returned neither a Uint8Array nor undefined".into(),
                )
            })
        })
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            outpost::store::validate_commit(&commit)?;
            let pages = Array::new_with_length(commit.pages.len() as u32);
            for (i, (no, buf)) in commit.pages.iter().enumerate() {
                let entry = Array::of2(&JsValue::from_f64(*no as f64), &Uint8Array::from(&buf[..]));
                pages.set(i as u32, entry.into());
            }
            let opts = js_sys::Object::new();
            // Setting a property on a fresh object cannot fail.
            let _ = Reflect::set(
                &opts,
                &"durable".into(),
                &JsValue::from_bool(commit.durability == Durability::Durable),
            );
            let args = Array::of3(&pages, &Uint8Array::from(&commit.meta[..]), &opts);
            call(&self.obj, &self.commit, "commit", &args).await?;
            Ok(())
        })
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(f) = &self.sync {
                call(&self.obj, f, "sync", &Array::new()).await?;
            }
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(f) = &self.close {
                call(&self.obj, f, "close", &Array::new()).await?;
            }
            Ok(())
        })
    }
}
