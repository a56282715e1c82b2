// The worker of the initial-sync benchmark's "outpost-worker" engine
// (bundled by sync.mjs with esbuild next to sync.js) and of write-probe.mjs's
// call paths (also started as a SharedWorker there): the engine runs here and
// the page drives it with openInWorker.
import { initOutpost, serveOutpost } from "../pkg-js/src/web.js";

// Listen first (messages the page sends meanwhile are not lost); the wasm
// loads on the first open.
serveOutpost();
initOutpost(new URL("./outpost_wasm_bg.wasm", self.location.href));
