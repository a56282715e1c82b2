#!/usr/bin/env node
// Benchmark in headless Chromium (not a test): initial sync of N documents of
// ~1 KiB from an Outpost hub into Outpost (IndexedDB), against pouchdb-server
// into PouchDB (IndexedDB), in the same run on 127.0.0.1. See
// docs/benchmarks.md, "Initial sync in Chromium: ...".
//
//   cd bench-browser && npm ci && node sync.mjs     # 10,000 and 100,000 docs
//   node sync.mjs --quick                           # 2,000 docs only
//
// Options:
//   --quick              2,000 documents only
//   --sizes a,b          document counts (default 10000,100000)
//   --engines a,b        subset of outpost,pouchdb,outpost-worker,outpost-mem,
//                        outpost-local (default outpost,pouchdb, in that order);
//                        outpost-worker: the same sync with the engine in a
//                        dedicated worker (openInWorker; sync-worker.js)
//   --diagnostics        all five: also outpost-mem (the same sync into
//                        Outpost's in-memory page store: the ceiling without
//                        IndexedDB) and outpost-local (the page writes the same
//                        documents itself with db.transaction() of 100 and of
//                        500 documents: the cost of commits of that size,
//                        no network)
//   --local-batches a,b  batch sizes of outpost-local (default 100,500)
//   --repeat K           run each engine K times per size (default 1; the
//                        table shows every run)
//   --pouch-cap SECONDS  time cap of a PouchDB replication (default 300)
//   --cap SECONDS        time cap of an Outpost sync (default 600)
//   --pouch-durability strict|default
//                        "strict" (default): PouchDB's readwrite IndexedDB
//                        transactions are given durability "strict", as
//                        Outpost's are (and as bench-browser/run.mjs does);
//                        "default": left as PouchDB opens them
//   --hub PATH           outpost-hub binary (default ../target/release/outpost-hub;
//                        built with `cargo build --release -p outpost-hub` if missing)
//   --rebuild            run ../scripts/build-wasm.sh first (also done when
//                        ../pkg-js/dist/web is missing)
//   --profile            record a CPU profile of the page (Chrome DevTools
//                        protocol, sampling every 0.5 ms) during each timed sync
//                        and print where the main thread's time went; uses
//                        the wasm with its function names (wasm-bindgen run
//                        again on target/wasm32-unknown-unknown/wasm-release/
//                        outpost_wasm.wasm when it matches pkg-js/dist).
//                        Profiling slows the page: use it for the split,
//                        not for the rates
//   --subscribe          the page also listens to every change while it syncs,
//                        as an app that shows its data does (Outpost:
//                        db.subscribe({}); PouchDB: db.changes({ live: true }));
//                        the figures then include feeding that listener
//   --keep               keep the temporary directory (hub data and logs)
//   --json FILE          also write the raw results as JSON
//   --chromium PATH      browser binary (default /usr/bin/chromium)
//
// What it does:
//   1. generates N documents (ids docs/000000 ..., bodies of ~1 KiB of JSON,
//      the generator of bench-browser/page.js, in docs.js);
//   2. starts pouchdb-server (npm, --in-memory, CORS on by default) on a free
//      port of 127.0.0.1 and loads database bench-N with _bulk_docs in
//      batches of 1,000;
//   3. per size: writes a temporary hub configuration (database main, edge
//      "bench" reading every id), imports the same documents with
//      `outpost-hub import` (hub stopped), then `outpost-hub serve` on a free
//      port of 127.0.0.1;
//   4. per engine: a fresh persistent Chromium profile on disk, one page
//      (bench-browser/sync-page.js), the timed sync, the page's probes, the
//      servers' CPU time (/proc) and the hub's /metrics around it;
//   5. prints the tables; stops the hub and pouchdb-server (also on failure).
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { copyFileSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { namedWasm, startProfile } from "./harness.mjs";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

import { idOf, makeDoc } from "./docs.js";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const argv = process.argv.slice(2);
const flag = (f) => argv.includes(f);
const opt = (f, d) => {
  const i = argv.indexOf(f);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : d;
};

const quick = flag("--quick");
const sizes = (opt("--sizes", quick ? "2000" : "10000,100000")).split(",").map((s) => Number(s.trim())).filter((x) => x > 0);
const ENGINES = ["outpost", "pouchdb", "outpost-worker", "outpost-mem", "outpost-local"];
const engines = opt("--engines", flag("--diagnostics") ? ENGINES.join(",") : "outpost,pouchdb")
  .split(",").map((s) => s.trim()).filter(Boolean);
for (const e of engines) if (!ENGINES.includes(e)) throw new Error(`unknown engine ${e} (one of ${ENGINES})`);
const localBatches = opt("--local-batches", "100,500").split(",").map(Number).filter((x) => x > 0);
const needHub = engines.some((e) => ["outpost", "outpost-worker", "outpost-mem"].includes(e));
const repeat = Math.max(1, Number(opt("--repeat", 1)));
const pouchCapMs = Number(opt("--pouch-cap", 300)) * 1000;
const capMs = Number(opt("--cap", 600)) * 1000;
const pouchDurability = opt("--pouch-durability", "strict");
const subscribe = flag("--subscribe");
if (!["strict", "default"].includes(pouchDurability)) throw new Error("--pouch-durability: strict or default");
const chromiumPath = opt("--chromium", "/usr/bin/chromium");
const hubBin = opt("--hub", join(root, "target/release/outpost-hub"));
const IDENTITY = "bench";
const TOKEN = "bench-token-" + createHash("sha256").update(String(process.pid) + Date.now()).digest("hex").slice(0, 24);
/** The admin token of the benchmark's hub (`/metrics` needs it). */
const ADMIN_TOKEN = "bench-browser-admin-token";
const CLK_TCK = 100; // Linux USER_HZ
const log = (msg) => console.log(msg);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --------------------------------------------------------- child processes ---
// Every server this script starts is recorded here and stopped at the end,
// also on an error or Ctrl-C.
const children = new Set();
function track(child, label) {
  children.add(child);
  child.label = label;
  child.on("exit", () => children.delete(child));
  return child;
}
async function stopChild(child, graceMs = 5000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  try { child.kill("SIGTERM"); } catch {}
  const t = setTimeout(() => { try { child.kill("SIGKILL"); } catch {} }, graceMs);
  await exited;
  clearTimeout(t);
}
function killAllSync() {
  for (const c of children) { try { c.kill("SIGKILL"); } catch {} }
}
process.on("exit", killAllSync);
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => { killAllSync(); process.exit(130); });
}

async function freePort() {
  const s = createNetServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

/** utime + stime of a process, in seconds (null if it is gone). */
function cpuSeconds(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

/** Chromium's processes for the profile `dir`: pid → kind (browser, renderer, utility:…, gpu, zygote). */
function chromiumProcesses(dir) {
  const procs = new Map();
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      // Zygote-forked processes rewrite their title: arguments joined by spaces.
      const cmd = readFileSync(`/proc/${p}/cmdline`, "utf8").split(/[\0 ]/);
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      procs.set(Number(p), { cmd, ppid });
    } catch {}
  }
  const rootPid = [...procs].find(([, v]) => v.cmd.some((a) => a === `--user-data-dir=${dir}`) && !v.cmd.some((a) => a.startsWith("--type=")))?.[0];
  const out = new Map();
  if (rootPid === undefined) return out;
  const kind = (cmd) => {
    const t = cmd.find((a) => a.startsWith("--type="))?.slice(7);
    if (!t) return "browser";
    if (t === "utility") {
      const sub = cmd.find((a) => a.startsWith("--utility-sub-type="))?.slice(19) ?? "";
      return "utility:" + sub.replace(/^.*\./, "");
    }
    return t;
  };
  const stack = [rootPid];
  while (stack.length) {
    const pid = stack.pop();
    out.set(pid, kind(procs.get(pid).cmd));
    for (const [c, v] of procs) if (v.ppid === pid) stack.push(c);
  }
  return out;
}
function chromiumCpu(dir) {
  const r = {};
  for (const [pid, kind] of chromiumProcesses(dir)) r[pid] = { kind, cpu: cpuSeconds(pid) ?? 0 };
  return r;
}
/** Busy CPU seconds of the whole machine (all cores) from /proc/stat. */
function systemBusy() {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / CLK_TCK;
}
function cpuDelta(before, after) {
  const byKind = {};
  for (const [pid, a] of Object.entries(after)) {
    const d = a.cpu - (before[pid]?.cpu ?? 0);
    byKind[a.kind] = (byKind[a.kind] ?? 0) + d;
  }
  return byKind;
}

// ------------------------------------------------------------------- build ---
const distWeb = join(root, "pkg-js/dist/web");
if (flag("--rebuild") || !existsSync(join(distWeb, "outpost_wasm_bg.wasm"))) {
  log("==> bash scripts/build-wasm.sh");
  const r = spawnSync("bash", [join(root, "scripts/build-wasm.sh")], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
if (needHub && !existsSync(hubBin)) {
  log("==> cargo build --release -p outpost-hub");
  const r = spawnSync("cargo", ["build", "--release", "-p", "outpost-hub"], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
const out = join(here, ".build/sync");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const [entry, file] of [["sync-page.js", "sync.js"], ["sync-worker.js", "sync-worker.js"]]) {
  await esbuild.build({
    entryPoints: [join(here, entry)],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "chrome120",
    minify: false,
    outfile: join(out, file),
    define: { global: "globalThis", "process.env.NODE_ENV": '"production"' },
    logLevel: "warning",
  });
}
copyFileSync(join(distWeb, "outpost_wasm_bg.wasm"), join(out, "outpost_wasm_bg.wasm"));
const profiling = flag("--profile");
let wasmNames = false;
if (profiling) {
  const named = namedWasm(out);
  if (typeof named === "string") {
    copyFileSync(named, join(out, "outpost_wasm_bg.wasm"));
    wasmNames = true;
  } else {
    log(`(--profile: wasm function names unavailable: ${named.why})`);
  }
}
writeFileSync(
  join(out, "index.html"),
  '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><title>Outpost sync bench</title>' +
    '<script type="module" src="./sync.js"></script><body>sync bench</body>\n',
);
const wasmBytes = readFileSync(join(out, "outpost_wasm_bg.wasm")).length;

// ------------------------------------------------------------ page server ---
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
const pageServer = createServer((req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  const file = join(out, path === "/" ? "index.html" : path.slice(1));
  if (!file.startsWith(out) || !existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
  res.end(readFileSync(file));
});
await new Promise((r) => pageServer.listen(0, "127.0.0.1", r));
const pageUrl = `http://127.0.0.1:${pageServer.address().port}/`;

const work = mkdtempSync(join(tmpdir(), "outpost-sync-bench-"));
const results = [];
const loads = {};
let browserVersion = "";
let userAgent = "";

// ---------------------------------------------------------- pouchdb-server ---
async function startPouchServer() {
  const dir = join(work, "pouchdb-server");
  mkdirSync(dir, { recursive: true });
  // Log only warnings, to a file in the temporary directory.
  writeFileSync(join(dir, "config.json"), JSON.stringify({ log: { level: "warning", file: join(dir, "log.txt") } }, null, 2));
  const port = await freePort();
  const bin = join(here, "node_modules/pouchdb-server/bin/pouchdb-server");
  const child = track(spawn(process.execPath, [bin, "--in-memory", "--host", "127.0.0.1", "--port", String(port),
    "--no-stdout-logs", "--config", join(dir, "config.json")], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] }), "pouchdb-server");
  const logFile = createWriteStream(join(dir, "stdout.txt"));
  child.stdout.pipe(logFile);
  child.stderr.pipe(logFile);
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`pouchdb-server exited (${child.exitCode}); see ${dir}/stdout.txt`);
    try {
      const r = await fetch(base + "/");
      if (r.ok) { const j = await r.json(); return { child, base, version: j.version, adapters: j["pouchdb-adapters"] }; }
    } catch {}
    if (Date.now() > deadline) throw new Error("pouchdb-server did not answer within 60 s");
    await sleep(200);
  }
}

async function loadPouch(base, n) {
  const db = `${base}/bench-${n}`;
  let r = await fetch(db, { method: "PUT" });
  if (!r.ok) throw new Error(`PUT ${db}: ${r.status} ${await r.text()}`);
  const t0 = Date.now();
  for (let i = 0; i < n; i += 1000) {
    const docs = [];
    for (let k = i; k < Math.min(n, i + 1000); k++) docs.push({ _id: idOf(k), ...makeDoc(k) });
    r = await fetch(`${db}/_bulk_docs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ docs }) });
    const res = await r.json();
    if (!r.ok || !Array.isArray(res)) throw new Error(`_bulk_docs: ${r.status} ${JSON.stringify(res).slice(0, 200)}`);
    const bad = res.find((x) => x.error);
    if (bad) throw new Error(`_bulk_docs: ${bad.id}: ${bad.error} ${bad.reason}`);
  }
  const info = await (await fetch(db)).json();
  if (info.doc_count !== n) throw new Error(`pouchdb-server bench-${n} holds ${info.doc_count} docs, expected ${n}`);
  return { url: db, ms: Date.now() - t0 };
}

// ---------------------------------------------------------------- the hub ---
function hubConfig(dir) {
  const digest = createHash("sha256").update(TOKEN).digest("hex");
  return [
    `# Temporary configuration of bench-browser/sync.mjs.`,
    `listen = "127.0.0.1:0"`,
    `data_dir = "data"`,
    `# A token (development mode): the benchmark measures sync, not identities.`,
    `[dev]`,
    `tokens = true`,
    `[admin]`,
    `token_sha256 = "${createHash("sha256").update(ADMIN_TOKEN).digest("hex")}"`,
    `[[database]]`,
    `name = "main"`,
    `[[edge]]`,
    `name = "${IDENTITY}"`,
    `token_sha256 = "${digest}"`,
    `database = "main"`,
    `read = ["*"]`,
    `write = ["*"]`,
    ``,
  ].join("\n");
}

/** Creates the hub of size `n`: configuration, documents imported (hub stopped). */
function prepareHub(n) {
  const dir = join(work, `hub-${n}`);
  mkdirSync(dir, { recursive: true });
  const config = join(dir, "outpost-hub.toml");
  writeFileSync(config, hubConfig(dir));
  const jsonl = join(dir, "docs.jsonl");
  const lines = [];
  for (let i = 0; i < n; i++) lines.push(JSON.stringify({ "@metadata": { "@id": idOf(i) }, ...makeDoc(i) }));
  writeFileSync(jsonl, lines.join("\n") + "\n");
  const t0 = Date.now();
  const r = spawnSync(hubBin, ["--config", config, "import", "--strict", jsonl], { cwd: dir, encoding: "utf8", env: { ...process.env, RUST_LOG: "warn" } });
  if (r.status !== 0) throw new Error(`outpost-hub import failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  rmSync(jsonl);
  return { dir, config, importMs: Date.now() - t0, importOutput: (r.stdout + r.stderr).trim().split("\n").slice(-2).join(" / ") };
}

async function startHub(hub) {
  const child = track(spawn(hubBin, ["--config", hub.config, "serve", "--listen", "127.0.0.1:0"], {
    cwd: hub.dir, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: "info" },
  }), "outpost-hub");
  const logFile = createWriteStream(join(hub.dir, "hub.log"));
  let text = "";
  const addr = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`outpost-hub did not say where it listens within 30 s:\n${text}`)), 30_000);
    let found = false;
    const onData = (b) => {
      logFile.write(b);
      if (found) return;
      text += b.toString();
      const m = /listening on \w+:\/\/([0-9.]+:\d+)/.exec(text.replace(/\x1b\[[0-9;]*m/g, ""));
      if (m) { found = true; clearTimeout(t); resolve(m[1]); }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (c) => { clearTimeout(t); if (!found) reject(new Error(`outpost-hub exited (${c}):\n${text}`)); });
  });
  return { child, dir: hub.dir, ws: `ws://${addr}/sync`, http: `http://${addr}` };
}

async function hubMetrics(http) {
  const headers = { authorization: `Bearer ${ADMIN_TOKEN}` };
  const text = await (await fetch(`${http}/metrics`, { headers })).text();
  const m = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    m[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return m;
}
const metricDelta = (a, b, k) => (b[k] ?? 0) - (a[k] ?? 0);

// ------------------------------------------------------------------ browser ---
async function inFreshBrowser(label, fn) {
  const profile = mkdtempSync(join(work, `profile-${label}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
    ],
  });
  try {
    browserVersion = context.browser()?.version() ?? browserVersion;
    const page = context.pages()[0] ?? (await context.newPage());
    page.on("console", (m) => {
      // PouchDB's replication asks for checkpoint documents that do not exist
      // yet: the browser logs those expected 404s.
      if (/Failed to load resource: .* 404/.test(m.text())) return;
      if (m.type() === "error" || m.type() === "warning") log(`    [page ${m.type()}] ${m.text()}`);
    });
    page.on("pageerror", (e) => log(`    [page error] ${e.message}`));
    await page.goto(pageUrl);
    await page.waitForFunction(() => window.syncBench !== undefined, null, { timeout: 30_000 });
    if (!userAgent) userAgent = (await page.evaluate(() => window.syncBench.info())).userAgent;
    return await fn(page, profile);
  } finally {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

/**
 * Runs `call(page)` (a page.evaluate) in a fresh browser and adds CPU seconds
 * over it: the server's (`serverPid`), Chromium's by process kind, and the
 * rest of the machine's ("other": processes not part of the run).
 */
async function measured(label, serverPid, call) {
  return inFreshBrowser(label, async (page, profile) => {
    const sys0 = systemBusy();
    const me0 = process.cpuUsage();
    const srv0 = serverPid ? cpuSeconds(serverPid) : 0;
    const cr0 = chromiumCpu(profile);
    const prof = profiling ? await startProfile(page) : { stop: async () => null };
    // Bounded: the page enforces the caps itself; this is the last resort.
    const limit = Math.max(capMs, pouchCapMs) + 120_000;
    let timer;
    const r = await Promise.race([
      call(page),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${label}: no result within ${limit / 1000} s`)), limit); }),
    ]).finally(() => clearTimeout(timer));
    const cr1 = chromiumCpu(profile);
    const srv1 = serverPid ? cpuSeconds(serverPid) : 0;
    const me1 = process.cpuUsage(me0);
    const sys1 = systemBusy();
    r.profile = await prof.stop();
    r.serverCpuS = srv1 - srv0;
    r.chromiumCpuS = cpuDelta(cr0, cr1);
    const chromiumTotal = Object.values(r.chromiumCpuS).reduce((x, y) => x + y, 0);
    r.otherCpuS = Math.max(0, sys1 - sys0 - r.serverCpuS - chromiumTotal - (me1.user + me1.system) / 1e6);
    return r;
  });
}

async function runOutpost(n, hubConn, round, storage = "indexeddb", inWorker = false) {
  const m0 = await hubMetrics(hubConn.http);
  const r = await measured(`${inWorker ? "worker" : storage}-${n}`, hubConn.child.pid, (page) => page.evaluate((a) => window.syncBench.outpost(a), {
    url: hubConn.ws, identity: IDENTITY, credential: TOKEN, n, capMs, storage, inWorker, subscribe,
  }));
  const m1 = await hubMetrics(hubConn.http);
  r.round = round;
  r.hub = {
    docsSent: metricDelta(m0, m1, "outpost_documents_sent_total"),
    framesOut: metricDelta(m0, m1, 'outpost_frames_total{direction="out"}'),
    framesIn: metricDelta(m0, m1, 'outpost_frames_total{direction="in"}'),
    bytesOut: metricDelta(m0, m1, 'outpost_bytes_total{direction="out"}'),
    bytesIn: metricDelta(m0, m1, 'outpost_bytes_total{direction="in"}'),
  };
  return r;
}

async function runPouch(n, pouch, remoteUrl, round) {
  const r = await measured(`pouchdb-${n}`, pouch.child.pid, (page) => page.evaluate((a) => window.syncBench.pouchdb(a), {
    remote: remoteUrl, n, capMs: pouchCapMs, durability: pouchDurability, subscribe,
  }));
  r.round = round;
  return r;
}

async function runLocal(n, batch, round) {
  const r = await measured(`local-${batch}-${n}`, null, (page) => page.evaluate((a) => window.syncBench.outpostLocal(a), { n, batch, capMs }));
  r.round = round;
  return r;
}

// --------------------------------------------------------------------- run ---
const fmtS = (ms) => (ms / 1000).toFixed(ms >= 100_000 ? 0 : ms >= 10_000 ? 1 : 2);
const fmtRate = (x) => Math.round(x).toLocaleString("en");
const describe = (r) => `${r.label} ${r.n}: ${r.docs} docs in ${fmtS(r.ms)} s = ${fmtRate(r.rate)} docs/s` +
  (r.capped ? " (TIME CAP)" : "") + (r.error ? ` ERROR ${r.error}` : "") +
  `; longest task ${r.main.longestTaskMs === null ? "< 50" : r.main.longestTaskMs.toFixed(0)} ms, ${r.main.longTasks} tasks > 50 ms` +
  (r.heard == null ? "" : `; the listener heard ${r.heard} changes${r.tHeard != null ? ` (by ${fmtS(r.tHeard)} s; live at ${fmtS(r.tLive ?? NaN)} s)` : ""}`);

let pouch;
const hubs = [];
let failed = null;
try {
  log(`sizes ${sizes.join(", ")}; engines ${engines.join(", ")}; temp dir ${work}`);
  if (engines.includes("pouchdb")) {
    pouch = await startPouchServer();
    log(`pouchdb-server ${pouch.version} (${pouch.adapters.join(", ")}) at ${pouch.base}`);
    for (const n of sizes) {
      loads[`pouchdb-${n}`] = await loadPouch(pouch.base, n);
      log(`  loaded bench-${n}: ${n} docs with _bulk_docs in ${fmtS(loads[`pouchdb-${n}`].ms)} s`);
    }
  }
  for (const n of sizes) {
    let hubConn;
    if (needHub) {
      const hub = prepareHub(n);
      loads[`outpost-${n}`] = { ms: hub.importMs, output: hub.importOutput };
      log(`outpost-hub import ${n} docs: ${fmtS(hub.importMs)} s (${hub.importOutput})`);
      hubConn = await startHub(hub);
      hubs.push(hubConn);
      log(`outpost-hub serving ${hubConn.ws}`);
    }
    for (let round = 1; round <= repeat; round++) {
      for (const e of engines) {
        const runs = e === "outpost" ? [() => runOutpost(n, hubConn, round)]
          : e === "outpost-mem" ? [() => runOutpost(n, hubConn, round, "memory")]
          : e === "outpost-worker" ? [() => runOutpost(n, hubConn, round, "indexeddb", true)]
          : e === "pouchdb" ? [() => runPouch(n, pouch, loads[`pouchdb-${n}`].url, round)]
          : localBatches.map((b) => () => runLocal(n, b, round));
        for (const run of runs) {
          const t0 = Date.now();
          const r = await run();
          results.push(r);
          log(`  ${describe(r)}  (${((Date.now() - t0) / 1000).toFixed(0)} s with browser start; other processes ${r.otherCpuS.toFixed(1)} CPU s)`);
          if (r.error && e.startsWith("outpost") && hubConn) {
            const tail = readFileSync(join(hubConn.dir, "hub.log"), "utf8").replace(/\x1b\[[0-9;]*m/g, "").trim().split("\n").slice(-4);
            log(`    hub log: ${tail.join("\n    hub log: ")}`);
          }
        }
      }
    }
    if (hubConn) await stopChild(hubConn.child);
  }
} catch (e) {
  failed = e;
} finally {
  for (const h of hubs) await stopChild(h.child);
  if (pouch) await stopChild(pouch.child);
  pageServer.close();
  if (!flag("--keep")) rmSync(work, { recursive: true, force: true });
}
if (failed) {
  console.error(failed);
  process.exit(1);
}

// ------------------------------------------------------------------- tables ---
const ms = (x) => (x === null || x === undefined ? "< 50" : x.toFixed(0));
log("");
log(`Chromium ${browserVersion}, ${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB; ` +
  `documents of ~1 KiB; Outpost wasm ${Math.round(wasmBytes / 1024)} KiB; pouchdb-server ${pouch?.version ?? "-"} --in-memory; ` +
  `PouchDB durability ${pouchDurability === "strict" ? '"strict" (forced, as Outpost\'s)' : "as PouchDB opens it"}` +
  (subscribe ? "; a listener to every change on each page (--subscribe)" : ""));
log("");
log("| engine | N | seconds | docs/s | Outpost/PouchDB | longest task (ms) | tasks > 50 ms |");
log("| --- | --: | --: | --: | --: | --: | --: |");
const MAIN = ["outpost", "outpost-worker", "pouchdb"];
for (const r of results.filter((r) => MAIN.includes(r.engine))) {
  const peer = results.find((x) => x.n === r.n && x.round === r.round && x.engine === "pouchdb");
  const ratio = r.engine !== "pouchdb" && peer ? (r.rate / peer.rate).toFixed(1) + "×" : "";
  const note = r.capped ? ` (capped at ${Math.round(r.ms / 1000)} s: ${r.docs.toLocaleString("en")} docs)` : r.error ? " (error)" : !r.complete ? " (incomplete)" : "";
  log(`| ${r.label}${repeat > 1 ? ` #${r.round}` : ""} | ${r.n.toLocaleString("en")} | ${fmtS(r.ms)}${note} | ${fmtRate(r.rate)} | ${ratio} | ${ms(r.main.longestTaskMs)} | ${r.main.longTasks} |`);
}
log("");
const diag = results.filter((r) => !MAIN.includes(r.engine));
if (diag.length) {
  log("Diagnostics (not competitors):");
  log("");
  log("| case | N | seconds | docs/s | longest task (ms) | tasks > 50 ms | max timer lateness (ms) |");
  log("| --- | --: | --: | --: | --: | --: | --: |");
  for (const r of diag) {
    log(`| ${r.label}${repeat > 1 ? ` #${r.round}` : ""} | ${r.n.toLocaleString("en")} | ${fmtS(r.ms)}${r.error ? " (error)" : r.capped ? " (capped)" : ""} | ${fmtRate(r.rate)} |` +
      ` ${ms(r.main.longestTaskMs)} | ${r.main.longTasks} | ${r.main.maxTimerLateMs.toFixed(0)} |`);
  }
  log("");
}
log("Where the time goes (wall seconds in the page unless said; CPU seconds from /proc over the timed interval;");
log("\"other processes\": CPU the rest of the machine used meanwhile, i.e. load that was not part of the run):");
log("");
log("| engine | N | wall | IDB rw tx (n / open s) | IDB ro tx (n / open s) | values put (MiB) | WS msgs (MiB) | WS handler s | lock held s (n) / waited s | long tasks s | max timer lateness ms | server CPU s | Chromium CPU s (renderer / browser / other) | other processes CPU s |");
log("| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --- | --: |");
for (const r of results) {
  const c = r.chromiumCpuS ?? {};
  const other = Object.entries(c).filter(([k]) => k !== "renderer" && k !== "browser").reduce((a, [, v]) => a + v, 0);
  log(`| ${r.label} | ${r.n.toLocaleString("en")} | ${fmtS(r.ms)} | ${r.idb.rw} / ${(r.idb.rwMs / 1000).toFixed(1)} | ${r.idb.ro} / ${(r.idb.roMs / 1000).toFixed(1)} |` +
    ` ${r.idb.putBytes ? (r.idb.putBytes / 2 ** 20).toFixed(0) : `${r.idb.puts} puts`} |` +
    ` ${r.ws.msgs ? `${r.ws.msgs} (${(r.ws.bytes / 2 ** 20).toFixed(0)})` : "-"} | ${r.ws.msgs ? (r.ws.handlerMs / 1000).toFixed(2) : "-"} |` +
    ` ${r.locks.n ? `${(r.locks.heldMs / 1000).toFixed(2)} (${r.locks.n}) / ${(r.locks.waitMs / 1000).toFixed(2)}` : "-"} | ${(r.main.longTaskMsTotal / 1000).toFixed(1)} |` +
    ` ${r.main.maxTimerLateMs.toFixed(0)} | ${r.serverCpuS?.toFixed(1)} |` +
    ` ${(c.renderer ?? 0).toFixed(1)} / ${(c.browser ?? 0).toFixed(1)} / ${other.toFixed(1)} | ${r.otherCpuS.toFixed(1)} |`);
}
log("");
for (const r of results.filter((r) => r.engine === "outpost" || r.engine === "outpost-worker" || r.engine === "outpost-mem")) {
  const tl = r.statuses.map((s) => `${(s.t / 1000).toFixed(2)}s ${s.state}${s.state === "initial" ? ` ${s.received}/${s.total}` : ""}`).join(", ");
  log(`${r.label} ${r.n}: hub sent ${r.hub.docsSent} docs in ${r.hub.framesOut} frames (${(r.hub.bytesOut / 2 ** 20).toFixed(1)} MiB), ` +
    `received ${r.hub.framesIn} frames; live at ${r.tLive === null ? "-" : (r.tLive / 1000).toFixed(2) + " s"}, count() at ${(r.tCount / 1000).toFixed(2)} s; ` +
    `IDB usage ${r.usage === null ? "?" : (r.usage / 2 ** 20).toFixed(0) + " MiB"}; longest tasks ${r.main.top.map((x) => x.toFixed(0)).join(", ") || "-"} ms`);
  log(`  status: ${tl}`);
}
for (const r of results.filter((r) => r.engine === "pouchdb")) {
  log(`PouchDB ${r.n}: status ${r.status}, docs_read ${r.docsRead}, docs_written ${r.docsWritten}; IDB rw tx ${r.idb.rw} (forced strict ${r.idb.forced}); ` +
    `IDB usage ${r.usage === null ? "?" : (r.usage / 2 ** 20).toFixed(0) + " MiB"}; longest tasks ${r.main.top.map((x) => x.toFixed(0)).join(", ") || "-"} ms`);
  log(`  progress: ${r.progress.map((p) => `${(p.t / 1000).toFixed(1)}s ${p.written}`).join(", ")}`);
}
for (const r of results.filter((r) => r.profile)) {
  const p = r.profile;
  const cats = Object.entries(p.categories).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${(v / 1000).toFixed(2)} s`).join(", ");
  log("");
  log(`CPU profile of the page, ${r.label} ${r.n} (${(p.totalMs / 1000).toFixed(2)} s profiled${r.engine.startsWith("outpost") && !wasmNames ? "; wasm names unavailable" : ""}): ${cats}`);
  for (const [k, v] of p.top) log(`    ${(v).toFixed(0).padStart(6)} ms  ${k}`);
}
log("");
for (const [k, v] of Object.entries(loads)) log(`load ${k}: ${fmtS(v.ms)} s`);
if (opt("--json")) writeFileSync(opt("--json"), JSON.stringify({ sizes, engines, browserVersion, userAgent, loads, results }, null, 2));
