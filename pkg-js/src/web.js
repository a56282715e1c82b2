// Entry point for browsers, bundlers and web workers (ES modules). The .wasm is
// fetched next to the glue (`new URL(..., import.meta.url)`, which Vite and
// webpack 5 follow) the first time a database is opened, or given explicitly
// with `initOutpost(...)` where fetching it is not possible (e.g. a worker
// runtime that imports .wasm modules).
import init, * as wasm from "../dist/web/outpost_wasm.js";
import { makeApi } from "./core.js";
import { serve } from "./remote.js";

let started;

/**
 * Instantiates the wasm module (done by `Outpost.open` on first use). Pass a
 * `WebAssembly.Module`, a URL, a `Response` or bytes to load it from elsewhere.
 */
export function initOutpost(moduleOrPath) {
  started ??= init(moduleOrPath === undefined ? undefined : { module_or_path: moduleOrPath });
  return started.then(() => undefined);
}

export const { Outpost, OutpostError, Transaction, Sync } = makeApi(wasm, () => initOutpost());

/**
 * In a worker: serves its databases to the page, which opens them with
 * `openInWorker(worker, name, options)` (see remote.js). In a SharedWorker,
 * every tab that connects, sharing one handle per database. Returns the
 * owner: `connect(port)` serves one more port, `close()`.
 */
export function serveOutpost(options) {
  return serve(Outpost, globalThis, options);
}

export { openInWorker, destroyInWorker, RemoteOutpost } from "./remote.js";
