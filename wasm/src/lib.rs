//! # outpost-wasm
//!
//! WebAssembly bindings of the Outpost document database: the engine
//! of the npm package in `pkg-js/`. `scripts/build-wasm.sh` compiles this crate
//! for `wasm32-unknown-unknown` and runs the wasm-bindgen CLI on it; the
//! rustdoc on the exported items below becomes the JSDoc of the generated
//! `.d.ts`.
//!
//! ```js
//! import { Outpost } from "@outpost/db";
//!
//! const db = await Outpost.open("notes"); // IndexedDB in a browser, memory in Node
//! await db.put("notes/1", { title: "Hello" }, { collection: "Notes" });
//! const note = await db.get("notes/1"); // { title, "@metadata": {...} }
//! await db.close();
//! ```
//!
//! Layout:
//! - `api`: the `Outpost` class (open, destroy, put, get, delete,
//!   transaction, scan, changes, count, collections, conflicts, resolve,
//!   rejections, stats, close);
//! - `index`: indexes with JavaScript map and reduce functions, queries;
//! - `host_store`: `JsPageStore`, a page store supplied by the host as a JS
//!   object (edge workers, Node, tests);
//! - `store`: the stores `Outpost.open` chooses from (IndexedDB where the
//!   global scope has it, memory, or the host's);
//! - `convert`: documents, options and rejections between JS values and the
//!   engine;
//! - `error`: the one bridge from engine errors to JS (`OutpostError` with a
//!   stable `code`);
//! - `panic`: a Rust panic rejects the promise of the operation it hit (code
//!   `"panic"`) instead of leaving it pending forever;
//! - `sync`: `EdgeSync`, replication with a hub over a WebSocket (the shell
//!   around the engine's edge state machine; the package's `db.sync()` and
//!   `db.enroll()`);
//! - `keys`: the edge's key pair (non-extractable WebCrypto ECDSA P-256,
//!   kept in the IndexedDB database `outpost-keys`), signing, and the
//!   package's `db.identity()`.
//!
//! Dependencies between the modules run one way: `sync` uses `api` (an
//! `EdgeSync` is made from an `Outpost`) and `keys`, never the reverse.
//!
//! On native targets the crate is empty: everything here needs a JS host.
//! The one `cfg(target_arch = "wasm32")` of the crate is the crate-level one
//! below (its dependencies are wasm32-only too, in Cargo.toml), so
//! `cargo build --workspace` and `cargo clippy --workspace` stay native-only.
#![cfg(target_arch = "wasm32")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod convert;
mod error;
mod host_store;
mod index;
mod keys;
mod panic;
mod store;
mod sync;
mod ts_types;

pub use api::Outpost;
pub use error::to_js;
pub use host_store::JsPageStore;
pub use sync::EdgeSync;

/// Runs when the module is instantiated: installs the panic hook, which
/// rejects the promise of the operation that panicked (code `"panic"`) and,
/// with the feature `panic-hook` (on by default), logs the panic's message to
/// `console.error`.
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    panic::install_hook();
}
