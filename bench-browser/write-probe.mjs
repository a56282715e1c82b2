// Where the time of one durable Outpost write on IndexedDB goes (issue 14
// §2), against one raw put of the same size. A probe, not a benchmark:
//
//   cd bench-browser && npm ci && node write-probe.mjs [--writes 300] [--docs 50] [--profile]
//   node write-probe.mjs --reopen-only 100000 [--profile]   (only the reopen, over the benchmark's
//   database shape; --profile: a CPU profile of the first reopen; --profile-cold: of the point
//   reads after a reopen, whose IndexedDB transactions are also timed)
//   node write-probe.mjs --bulk 100000 [--storage memory] [--profile]   (only the benchmark's bulk
//   insert: its documents, batches of 1,000, no result per document; --profile: its CPU profile;
//   with CALLERS=<regex> in the environment also who calls the functions it matches)
//
// Environment: TIMELINE=<file> with --profile writes every sample of the
// profile in order (time, stack); JS_FLAGS=<flags> passes V8 flags to
// Chromium (e.g. --no-wasm-lazy-compilation); WARM_OTHER=1 makes --reopen-only
// first reopen and read another database, so the reopens measured run code
// already compiled (docs/benchmarks.md, "What a first reopen compiles").
//
// --docs: documents in the probed database before the timed writes (100000:
// the browser benchmark's database, where a commit writes more pages).
//
// Also: a raw put committed by itself and with commit(), each also with the fence check
// Outpost commits make first; puts and gets 5 ms
// apart (after the turn went idle); serial puts and point gets with the engine on the page, in a dedicated
// worker and in a SharedWorker (issue 14 §1, §4: what a call through
// postMessage costs).
//
// Needs pkg-js/dist/web (scripts/build-wasm.sh). Prints medians in ms; with
// --profile also the main thread's CPU profile of the serial Outpost writes
// (CDP Profiler, 100 µs samples, self time by function; wasm functions are
// named when target/wasm32-unknown-unknown/wasm-release/outpost_wasm.wasm is
// the build of pkg-js/dist, harness.mjs `namedWasm`). The page is cross-origin
// isolated, so its times are to 5 µs.
import { existsSync, mkdirSync, rmSync, copyFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { launchChromium, namedWasm, serveDir } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const i = process.argv.indexOf("--writes");
const writes = i > 0 ? Number(process.argv[i + 1]) : 300;
const profiling = process.argv.includes("--profile") || process.argv.includes("--profile-cold");
const d = process.argv.indexOf("--docs");
/** Documents in the probed database before the timed writes (the browser benchmark's database holds 100,000). */
const docs = d > 0 ? Number(process.argv[d + 1]) : 50;
const r = process.argv.indexOf("--reopen-only");
/** Only the reopen timeline, over a database of this many documents and 500 single writes (the browser benchmark's). */
const reopenOnly = r > 0 ? { docs: Number(process.argv[r + 1]), singles: Number(process.env.SINGLES ?? 500) } : null;
const b = process.argv.indexOf("--bulk");
/** Only a bulk insert of this many benchmark documents (batches of 1,000, no result per document), profiled with --profile. */
const bulkOnly = b > 0 ? { docs: Number(process.argv[b + 1]), storage: process.argv[process.argv.indexOf("--storage") + 1] ?? "indexeddb" } : null;
if (bulkOnly && !process.argv.includes("--storage")) bulkOnly.storage = "indexeddb";
const distWasm = join(root, "pkg-js/dist/web/outpost_wasm_bg.wasm");
if (!existsSync(distWasm)) throw new Error("pkg-js/dist/web is missing: run scripts/build-wasm.sh first");
const out = join(here, ".build-probe");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await esbuild.build({ entryPoints: [join(here, "write-probe-page.js")], bundle: true, format: "esm", outfile: join(out, "probe.js"), logLevel: "warning" });
// The engine in a worker, for the page's comparison of call paths (the sync benchmark's worker script).
await esbuild.build({ entryPoints: [join(here, "sync-worker.js")], bundle: true, format: "esm", outfile: join(out, "worker.js"), logLevel: "warning" });
// With --profile, the same module with its function names when that build matches pkg-js/dist.
const named = profiling ? namedWasm(out) : null;
if (profiling && typeof named !== "string") console.log(`(--profile: wasm function names unavailable: ${named.why})`);
copyFileSync(typeof named === "string" ? named : distWasm, join(out, "outpost_wasm_bg.wasm"));
writeFileSync(join(out, "index.html"), '<!doctype html><meta charset="utf-8"><script type="module" src="./probe.js"></script>');
// Cross-origin isolated: performance.now() to 5 µs instead of 100 µs.
const server = await serveDir(out, { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" });
const browser = await launchChromium({ prefix: "outpost-probe-", args: process.env.JS_FLAGS ? [`--js-flags=${process.env.JS_FLAGS}`] : [] });
const context = browser.context;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  if (process.env.MARK_TX) await page.addInitScript(() => { globalThis.__markTx = true; });
  if (process.env.RAW_LIKE) await page.addInitScript(() => { globalThis.__rawLike = true; });
  if (process.env.RAW_FILL) await page.addInitScript((f) => { globalThis.__rawFill = f; }, process.env.RAW_FILL);
  if (process.env.INTERLEAVE) await page.addInitScript(() => { globalThis.__interleave = true; });
  if (process.env.NO_WITNESS) await page.addInitScript(() => { globalThis.__noWitness = true; });
  if (process.env.WARM_OTHER) await page.addInitScript(() => { globalThis.__warmOther = true; });
  if (process.env.NO_POST) await page.addInitScript(() => { globalThis.__noPost = true; });
  if (process.env.RAW_BUCKET) await page.addInitScript(() => { globalThis.__rawBucket = true; });
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForFunction(() => window.probe);
  const cdp = profiling ? await context.newCDPSession(page) : null;
  /** Stops the CDP profiler and prints the `top` functions by self time. */
  const printProfile = async (title, top) => {
    const { profile } = await cdp.send("Profiler.stop");
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
    const self = new Map();
    for (const id of profile.samples) {
      const f = nodes.get(id).callFrame;
      const k = `${f.functionName || "(anonymous)"} ${f.url.split("/").pop()}${f.lineNumber >= 0 ? `:${f.lineNumber + 1}` : ""}`;
      self.set(k, (self.get(k) || 0) + 1);
    }
    // TIMELINE=<file>: every sample in order, its time from the profile's
    // start (ms) and its stack, leaf first (six frames).
    if (process.env.TIMELINE) {
      const parent = new Map();
      for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
      let t = 0;
      const lines = profile.samples.map((id, i) => {
        t += profile.timeDeltas[i] / 1000;
        const stack = [];
        for (let p = id; p !== undefined && stack.length < 6; p = parent.get(p)) {
          const f = nodes.get(p).callFrame;
          stack.push((f.functionName || "(anonymous)").replace(/::h[0-9a-f]{16}$/, "").slice(0, 90));
        }
        return `${t.toFixed(2).padStart(8)}  ${stack.join(" < ")}`;
      });
      writeFileSync(process.env.TIMELINE, lines.join("\n") + "\n");
    }
    console.log(`CPU profile (${title}), ${profile.samples.length} samples:`);
    for (const [k, c] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`${((100 * c) / profile.samples.length).toFixed(1).padStart(6)} %  ${k}`);
    }
    // INCLUSIVE=1: the functions by the samples they are on the stack of
    // (themselves and what they call), each counted once per sample.
    if (process.env.INCLUSIVE) {
      const parent = new Map();
      for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
      const incl = new Map();
      for (const id of profile.samples) {
        const seen = new Set();
        for (let p = id; p !== undefined; p = parent.get(p)) {
          const f = nodes.get(p).callFrame;
          const k = `${f.functionName || "(anonymous)"} ${f.url.split("/").pop()}`;
          if (!seen.has(k)) { seen.add(k); incl.set(k, (incl.get(k) || 0) + 1); }
        }
      }
      console.log("inclusive:");
      for (const [k, c] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, 60)) {
        console.log(`${((100 * c) / profile.samples.length).toFixed(1).padStart(6)} %  ${k}`);
      }
    }
    // MARK_TX=1: what the thread runs from a readwrite transaction's
    // creation (the page's __txMarker) to its next idle sample, by
    // function, self and inclusive.
    if (process.env.MARK_TX) {
      const parent = new Map();
      for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
      const stackOf = (id) => { const out = []; for (let p = id; p !== undefined; p = parent.get(p)) out.push(nodes.get(p).callFrame.functionName || "(anonymous)"); return out; };
      const selfW = new Map(), inclW = new Map();
      let inWindow = false, windows = 0, windowSamples = 0;
      for (const id of profile.samples) {
        const st = stackOf(id);
        if (st.includes("__txMarker")) { if (!inWindow) windows++; inWindow = true; continue; }
        if (!inWindow) continue;
        if (st[0] === "(idle)") { inWindow = false; continue; }
        windowSamples++;
        selfW.set(st[0], (selfW.get(st[0]) || 0) + 1);
        for (const f of new Set(st)) inclW.set(f, (inclW.get(f) || 0) + 1);
      }
      // And from the bindings' put (__putMarker) to the transaction's creation.
      {
        // A window that reaches an idle sample first (the transaction's
        // marker was not sampled) is dropped.
        const selfP = new Map(), inclP = new Map();
        let cur = null, pw = 0, ps = 0;
        for (const id of profile.samples) {
          const st = stackOf(id);
          if (st.includes("__putMarker")) { cur ??= []; continue; }
          if (!cur) continue;
          if (st.includes("__txMarker")) {
            pw++;
            for (const w of cur) {
              ps++;
              selfP.set(w[0], (selfP.get(w[0]) || 0) + 1);
              for (const f of new Set(w)) inclP.set(f, (inclP.get(f) || 0) + 1);
            }
            cur = null;
            continue;
          }
          if (st[0] === "(idle)") { cur = null; continue; }
          cur.push(st);
        }
        console.log(`from the bindings' put to the transaction: ${pw} windows, ${ps} samples (${(ps / Math.max(1, pw)).toFixed(1)} a window)`);
        for (const [k, c] of [...inclP].sort((a, b) => b[1] - a[1]).slice(0, 60)) console.log(`  incl ${((100 * c) / ps).toFixed(1).padStart(6)} %  ${k.slice(0, 140)}`);
        for (const [k, c] of [...selfP].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`  self ${((100 * c) / ps).toFixed(1).padStart(6)} %  ${k.slice(0, 140)}`);
      }
      console.log(`after a transaction's creation until idle: ${windows} windows, ${windowSamples} samples (${(windowSamples / Math.max(1, windows)).toFixed(1)} a window)`);
      for (const [k, c] of [...inclW].sort((a, b) => b[1] - a[1]).slice(0, 45)) console.log(`  incl ${((100 * c) / windowSamples).toFixed(1).padStart(6)} %  ${k.slice(0, 140)}`);
      for (const [k, c] of [...selfW].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`  self ${((100 * c) / windowSamples).toFixed(1).padStart(6)} %  ${k.slice(0, 140)}`);
    }
    // CALLERS=<regex>: who calls the functions it matches (samples by the nearest caller of another name).
    if (process.env.CALLERS) {
      const re = new RegExp(process.env.CALLERS);
      const parent = new Map();
      for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
      const by = new Map();
      for (const id of profile.samples) {
        const f = nodes.get(id).callFrame.functionName;
        if (!re.test(f)) continue;
        let p = parent.get(id);
        while (p !== undefined && re.test(nodes.get(p).callFrame.functionName)) p = parent.get(p);
        const k = p === undefined ? "(root)" : nodes.get(p).callFrame.functionName || "(anonymous)";
        by.set(k, (by.get(k) || 0) + 1);
      }
      console.log(`callers of /${process.env.CALLERS}/:`);
      for (const [k, c] of [...by].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
        console.log(`${((100 * c) / profile.samples.length).toFixed(1).padStart(6)} %  ${k}`);
      }
    }
  };
  if (cdp) {
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: Number(process.env.SAMPLE_US) || (reopenOnly ? 50 : 100) });
  }
  // With --reopen-only, the profile covers the first reopen only, otherwise
  // the serial Outpost writes (the page calls the hooks around them).
  if (bulkOnly) {
    if (cdp) await cdp.send("Profiler.start");
    console.log(JSON.stringify(await page.evaluate((o) => window.bulk(o), bulkOnly), null, 2));
    if (cdp) await printProfile(`a bulk insert of ${bulkOnly.docs} documents, ${bulkOnly.storage}`, 40);
  } else if (cdp && reopenOnly && process.argv.includes("--profile-cold")) {
    await page.exposeFunction("__coldProfileStart", () => cdp.send("Profiler.start"));
    await page.exposeFunction("__coldProfileStop", () => printProfile("2,000 point reads after a reopen, 50 µs samples", 30));
  } else if (cdp && reopenOnly) {
    await page.exposeFunction("__reopenProfileStart", () => cdp.send("Profiler.start"));
    await page.exposeFunction("__reopenProfileStop", () => printProfile("the first reopen, 50 µs samples", 25));
  } else if (cdp) {
    // The serial Outpost writes only.
    await page.exposeFunction("__profileStart", () => cdp.send("Profiler.start"));
    await page.exposeFunction("__profileStop", () => printProfile(`${writes} serial Outpost writes`, 30));
  }
  if (!bulkOnly) {
    console.log(JSON.stringify(await page.evaluate(([n, docs, ro]) => window.probe(n, docs, ro), [writes, docs, reopenOnly]), null, 2));
  }
} finally {
  await browser.close();
  server.close();
  rmSync(out, { recursive: true, force: true });
}
