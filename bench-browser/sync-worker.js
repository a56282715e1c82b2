// The dedicated worker of the initial-sync benchmark's "outpost-worker"
// engine (bundled by sync.mjs with esbuild next to sync.js): the engine runs
// here and sync-page.js drives it with openInWorker, so the page's main
// thread does no engine work during the sync.
import { initOutpost, serveOutpost } from "../pkg-js/src/web.js";

// Listen first (messages the page sends meanwhile are not lost); the wasm
// loads on the first open.
serveOutpost();
initOutpost(new URL("./outpost_wasm_bg.wasm", self.location.href));
