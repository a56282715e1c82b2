// Builds the tiny app in app/ into dist/ (run.sh serves dist/ on 127.0.0.1):
// index.html (the page of e2e.test.mjs) and lab.html (a page that opens
// nothing by itself, driven by storage-lost.test.mjs).
// `@outpost/db` resolves to the packed tarball that run.sh installs into
// node_modules with `npm install --no-save`; Vite follows the package's
// `new URL("…_bg.wasm", import.meta.url)` and emits the .wasm as an asset.
import { defineConfig } from "vite";
import { fileURLToPath } from "node:url";

const app = (f) => fileURLToPath(new URL(`app/${f}`, import.meta.url));

export default defineConfig({
  root: fileURLToPath(new URL("app", import.meta.url)),
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("dist", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    rollupOptions: { input: { index: app("index.html"), lab: app("lab.html") } },
  },
  // lab.js starts app/worker.js as a module worker (worker.test.mjs).
  worker: { format: "es" },
});
