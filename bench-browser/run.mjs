#!/usr/bin/env node
// Benchmark in headless Chromium (not a test): Outpost (@outpost/db over
// IndexedDB) against raw IndexedDB, Dexie and PouchDB, all in ONE page and
// one run. See docs/benchmarks.md, "In Chromium: ...".
//
//   cd bench-browser && npm ci && node run.mjs            # full run (~3-5 min)
//   node run.mjs --quick                                  # small run (~30 s)
//
// Options:
//   --quick              2,000 / 10,000 docs, 500 reads, 100 single writes
//   --relaxed            durability "relaxed" for every engine (default "strict")
//   --engines a,b        subset of outpost,idb,dexie,pouchdb,outpost-mem,
//                        outpost-worker,outpost-opfs,sqlite-opfs
//                        (default: the first five, in that order; outpost-mem
//                        is Outpost over its in-memory page store, a
//                        diagnostic that shows the engine's own CPU cost
//                        without IndexedDB). The OPFS comparison (issue 14
//                        §5, docs/benchmarks.md "OPFS"): --engines
//                        outpost,outpost-worker,outpost-opfs,sqlite-opfs --vs
//                        outpost-opfs. outpost-worker / outpost-opfs: Outpost
//                        in a dedicated worker (openInWorker) over IndexedDB /
//                        OPFS; sqlite-opfs: @sqlite.org/sqlite-wasm on its
//                        opfs-sahpool VFS in a dedicated worker
//   --sqlite-journal M   sqlite-opfs's journal_mode: WAL (default, with
//                        locking_mode EXCLUSIVE, as opfs-sahpool needs for
//                        WAL: its fastest durable mode here), DELETE,
//                        TRUNCATE or PERSIST; synchronous FULL always
//   --vs ENGINE          the engine the ratio columns compare the others with
//                        (default outpost)
//   --rebuild            run ../scripts/build-wasm.sh first (also done when
//                        ../pkg-js/dist/web is missing)
//   --pouch-cap SECONDS  time cap of PouchDB's large bulk insert (default 75)
//   --cap SECONDS        time cap of any other bulk insert (default 120)
//   --json FILE          also write the raw results as JSON
//   --chromium PATH      browser binary (default /usr/bin/chromium)
//
// Chromium runs with a persistent profile in a fresh temporary directory on
// disk (harness.mjs).
import { writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";

import { openBench } from "./harness.mjs";

const argv = process.argv.slice(2);
const flag = (f) => argv.includes(f);
const opt = (f, d) => {
  const i = argv.indexOf(f);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : d;
};

const quick = flag("--quick");
const cfg = {
  durability: flag("--relaxed") ? "relaxed" : "strict",
  small: quick ? 2_000 : 10_000,
  large: quick ? 10_000 : 100_000,
  batch: 1_000,
  reads: quick ? 500 : 2_000,
  singles: quick ? 100 : 500,
  capMs: Number(opt("--cap", 120)) * 1000,
  pouchCapMs: Number(opt("--pouch-cap", 75)) * 1000,
  sqliteJournal: opt("--sqlite-journal", "WAL").toUpperCase(),
};
const ALL = ["outpost", "idb", "dexie", "pouchdb", "outpost-mem", "outpost-worker", "outpost-opfs", "sqlite-opfs"];
const DEFAULT = ["outpost", "idb", "dexie", "pouchdb", "outpost-mem"];
const engines = opt("--engines", DEFAULT.join(",")).split(",").map((s) => s.trim()).filter(Boolean);
for (const e of engines) if (!ALL.includes(e)) throw new Error(`unknown engine ${e} (one of ${ALL})`);
const chromiumPath = opt("--chromium", "/usr/bin/chromium");

// ------------------------------------------------- build, serve, browser ---
const b = await openBench({
  entry: "page.js",
  out: ".build",
  rebuild: flag("--rebuild"),
  chromium: chromiumPath,
  workers: [["sync-worker.js", "outpost-worker.js"], ["sqlite-worker.js", "sqlite-worker.js"]],
  files: [["node_modules/@sqlite.org/sqlite-wasm/dist/sqlite3.wasm", "sqlite3.wasm"]],
});
const results = [];
let info;
try {
  const page = b.page;
  info = await page.evaluate(() => window.bench.init());
  info.browser = b.browserVersion;
  console.log(`Chromium ${info.browser}; ${cfg.large.toLocaleString("en")} docs; engines: ${engines.join(", ")}`);
  for (const e of engines) {
    const t0 = Date.now();
    results.push(await page.evaluate(([e, c]) => window.bench.run(e, c), [e, cfg]));
    console.log(`  (${e}: ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
} finally {
  await b.close();
}

// ---------------------------------------------------------------- table ---
const fmt = (x) => (x >= 100 ? Math.round(x).toLocaleString("en") : x.toFixed(x >= 10 ? 1 : 2));
const ms = (x) => (Number.isNaN(x) ? "n/a" : x >= 100 ? Math.round(x).toString() : x.toFixed(x >= 10 ? 1 : 2));
const rows = [
  [`bulk insert ${cfg.small.toLocaleString("en")} (docs/s)`, (r) => r.bulkSmall.rate, true],
  [`bulk insert ${cfg.large.toLocaleString("en")} (docs/s)`, (r) => r.bulkLarge.rate, true],
  ["serial single writes (docs/s)", (r) => r.singles.rate, true],
  ["single write p50 (ms)", (r) => r.singles.p50, false],
  ["single write p99 (ms)", (r) => r.singles.p99, false],
  [`point reads ${cfg.reads.toLocaleString("en")} random (reads/s)`, (r) => r.reads.rate, true],
  ["prefix scan (docs/s)", (r) => r.scan.rate, true],
  ["keys-only prefix scan (ids/s)", (r) => r.scanKeys?.rate ?? NaN, true],
  ["reopen to first read (ms)", (r) => r.reopen.ms, false],
  [`point reads after reopen, cold (reads/s)`, (r) => r.coldReads?.rate ?? NaN, true],
];
const by = Object.fromEntries(results.map((r) => [r.engine, r]));
const vs = opt("--vs", "outpost");
const others = results.filter((r) => r.engine !== vs && r.engine !== "outpost-mem");
const head = ["case", ...results.map((r) => r.label), ...(by[vs] ? others.map((r) => `${by[vs].label}/${r.label}`) : [])];
const lines = [head, head.map((_, i) => (i === 0 ? "---" : "--:"))];
for (const [label, f, higherBetter] of rows) {
  const line = [label, ...results.map((r) => (higherBetter ? fmt(f(r)) : ms(f(r))))];
  if (by[vs]) {
    // Ratios are "how many times better the --vs engine is": rate ratio, or time ratio inverted.
    for (const r of others) {
      const v = higherBetter ? f(by[vs]) / f(r) : f(r) / f(by[vs]);
      line.push(v.toFixed(2) + "×");
    }
  }
  lines.push(line);
}
console.log();
console.log(`Chromium ${info.browser}, ${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB;` +
  ` batches of ${cfg.batch} docs of ~1 KiB; durability "${cfg.durability}" for every engine`);
console.log();
for (const l of lines) console.log("| " + l.join(" | ") + " |");
console.log();
console.log(`Ratios: ${by[vs]?.label ?? vs}'s advantage (rate ÷ rate, or time ÷ time inverted); > 1× means it is faster.`);
console.log();
for (const r of results.filter((r) => r.statsAfterScan)) {
  const d = (a, b, k) => (b?.cache?.[k] ?? b?.[k] ?? 0) - (a?.cache?.[k] ?? a?.[k] ?? 0);
  console.log(`${r.label}: page cache during point reads: ${d(r.statsBeforeReads, r.statsAfterReads, "hits")} hits,` +
    ` ${d(r.statsBeforeReads, r.statsAfterReads, "misses")} misses; during the scan: ${d(r.statsAfterReads, r.statsAfterScan, "hits")} hits,` +
    ` ${d(r.statsAfterReads, r.statsAfterScan, "misses")} misses; bulk ${r.bulkLarge.docs}: ${(r.bulkLarge.applyMs / 1000).toFixed(1)} s` +
    ` of ${(r.bulkLarge.ms / 1000).toFixed(1)} s inside transaction()`);
}
console.log();
console.log("| engine | large bulk docs | capped | IDB usage after large bulk (MiB) | rw IDB transactions: large bulk | per single write | scan docs | strict / relaxed / forced-strict |");
console.log("|---|--:|---|--:|--:|--:|--:|---|");
for (const r of results) {
  const u = r.bulkLarge.usage == null || r.engine === "outpost-mem" ? "n/a" : (r.bulkLarge.usage / 2 ** 20).toFixed(0);
  console.log(`| ${r.label} | ${r.bulkLarge.docs} | ${r.bulkLarge.capped ? `yes (${(r.bulkLarge.ms / 1000).toFixed(0)} s)` : "no"} | ${u} |` +
    ` ${r.bulkLarge.rwTx} | ${(r.singles.rwTx / r.singles.n).toFixed(2)} | ${r.scan.n} |` +
    ` ${r.durability.strict} / ${r.durability.relaxed} / ${r.durability.forced} |`);
}
if (opt("--json")) writeFileSync(opt("--json"), JSON.stringify({ cfg, info, results }, null, 2));
