//! Browser tests: the IndexedDB page store and the engine over it, in real
//! headless Chromium with real IndexedDB (wasm-bindgen-test).
//!
//! Run (scripts/test.sh does it, after scripts/install-browser-tools.sh):
//!
//! ```text
//! CHROMEDRIVER=/usr/bin/chromedriver \
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//! cargo test -p outpost --target wasm32-unknown-unknown --test browser
//! ```
//!
//! Every test uses its own database name and deletes the database at the end.
//! The page store's tests are in `page_store.rs`, the engine's over it in
//! `engine.rs`, the storage buckets' in `buckets.rs`.
#![cfg(target_arch = "wasm32")]

use std::sync::Arc;

use outpost::store::idb::{IdbStore, error_from_js};
use outpost::store::{Commit, Durability, PAGE_SIZE, PageBuf, PageNo, PageStore};
use outpost::{Batch, Error, StoreError};
use outpost_testkit::put_first_patient;
use serde_json::json;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

#[path = "../browser_common/mod.rs"]
mod browser_common;
use browser_common::{
    assert_layout, count, delete_raw, every_record, layout, layout_recorded, open_db, put_raw,
    records, unique_name,
};

wasm_bindgen_test_configure!(run_in_browser);

mod buckets;
mod engine;
mod page_store;

/// A page of `fill` bytes whose first eight bytes are its number.
fn page(fill: u8, no: PageNo) -> PageBuf {
    let mut v = vec![fill; PAGE_SIZE];
    v[..8].copy_from_slice(&no.to_le_bytes());
    Arc::new(v)
}

/// A durable commit of these pages (number, fill byte) and meta record.
fn commit(pages: &[(PageNo, u8)], meta: &[u8]) -> Commit {
    Commit {
        pages: pages.iter().map(|&(no, f)| (no, page(f, no))).collect(),
        meta: meta.to_vec(),
        durability: Durability::Durable,
    }
}

/// Writes to the browser's console (the test runner shows it).
fn web_sys_log(msg: &str) {
    wasm_bindgen_test::console_log!("{msg}");
}
