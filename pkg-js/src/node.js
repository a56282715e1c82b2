// Entry point for Node (and other runtimes that match the "node" export
// condition): the nodejs build of the bindings, which loads the .wasm from disk
// synchronously when first imported.
import { createRequire } from "node:module";
import { parentPort } from "node:worker_threads";
import { makeApi } from "./core.js";
import { serve } from "./remote.js";

const wasm = createRequire(import.meta.url)("../dist/nodejs/outpost_wasm.js");

/** Nothing to do in Node (the module is instantiated on import); for symmetry with the browser entry. */
export function initOutpost() {
  return Promise.resolve();
}

export const { Outpost, OutpostError, Transaction, Sync } = makeApi(wasm, initOutpost);

/**
 * In a worker thread: serves its databases to the thread that started it,
 * which opens them with `openInWorker(worker, name, options)` (see remote.js).
 */
export function serveOutpost(options) {
  return serve(Outpost, parentPort, options);
}

export { openInWorker, destroyInWorker, RemoteOutpost } from "./remote.js";
