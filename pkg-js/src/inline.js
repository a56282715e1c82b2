// Entry point with the .wasm inlined (base64, in dist/web/outpost_wasm_inline.js,
// written by scripts/build-wasm.sh): for bundlers that do not follow
// `new URL("…wasm", import.meta.url)` (esbuild, Rollup without a plugin,
// Bun), single-file builds and pages without a server for the .wasm.
// `import { Outpost } from "@outpost/db/inline"`: nothing to copy, nothing to
// configure; the price is a bundle about a third larger than the .wasm and no
// streaming compilation. Same API as the default browser entry.
import init, * as wasm from "../dist/web/outpost_wasm.js";
import { wasmBase64 } from "../dist/web/outpost_wasm_inline.js";
import { makeApi } from "./core.js";
import { serve } from "./remote.js";

let started;

/** The inlined .wasm as bytes. */
function wasmBytes() {
  if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(wasmBase64);
  const bin = atob(wasmBase64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Instantiates the wasm module (done by `Outpost.open` on first use) from the
 * inlined bytes, or from `moduleOrPath` if given.
 */
export function initOutpost(moduleOrPath) {
  started ??= init({ module_or_path: moduleOrPath === undefined ? wasmBytes() : moduleOrPath });
  return started.then(() => undefined);
}

export const { Outpost, OutpostError, Transaction, Sync } = makeApi(wasm, () => initOutpost());

/** In a worker: serves its databases to the page (see remote.js). */
export function serveOutpost(options) {
  return serve(Outpost, globalThis, options);
}

export { openInWorker, destroyInWorker, RemoteOutpost } from "./remote.js";
