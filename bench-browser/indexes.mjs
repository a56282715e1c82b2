#!/usr/bin/env node
// Index benchmark in headless Chromium (not a test; issue 13 §6): Outpost's
// map index against Dexie's compound index and PouchDB's `find` with an
// index, over the same ~1 KiB documents in one page and one run (IndexedDB,
// strict durability): building the index over the documents, 2,000 equality
// queries on [city, age] (about 140 rows each), a range query returning
// about 1,000 rows (and the main thread's long tasks during the build);
// then Outpost's incremental reduce with 1,000, 10,000
// and 100,000 entries under one key, and Outpost's single writes while its
// background maintenance builds the index. Figures: docs/benchmarks.md, "Indexes".
//
//   cd bench-browser && npm ci && node indexes.mjs          # 100,000 documents
//   node indexes.mjs --quick                                # 10,000
//   node indexes.mjs --engines outpost,dexie --json out.json
//   node indexes.mjs --engines outpost --profile            # CPU profile of Outpost's index build
import { writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";

import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { namedWasm, openBench, startProfile } from "./harness.mjs";

const argv = process.argv.slice(2);
const opt = (f, d) => {
  const i = argv.indexOf(f);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : d;
};
const quick = argv.includes("--quick");
const cfg = { docs: quick ? 10_000 : 100_000, queries: quick ? 500 : 2_000, ranges: 9 };
const ALL = ["outpost", "dexie", "pouchdb"];
const engines = opt("--engines", ALL.join(",")).split(",").filter(Boolean);
for (const e of engines) if (!ALL.includes(e)) throw new Error(`unknown engine ${e} (one of ${ALL})`);
const reduceSizes = quick ? [1_000, 10_000] : [1_000, 10_000, 100_000];

// --profile: the page's CPU profile over each engine's index build (with the
// wasm functions' names when the named build matches pkg-js/dist).
const profiling = argv.includes("--profile");
let wasm;
if (profiling) {
  const dir = join(dirname(fileURLToPath(import.meta.url)), ".build-indexes-named");
  mkdirSync(dir, { recursive: true });
  const named = namedWasm(dir);
  if (typeof named === "string") wasm = named;
  else console.log(`(--profile: wasm function names unavailable: ${named.why})`);
}
const b = await openBench({ entry: "indexes-page.js", out: ".build-indexes", rebuild: argv.includes("--rebuild"), chromium: opt("--chromium"), wasm });
if (profiling) {
  let prof = null;
  await b.page.exposeFunction("__profileStart", async () => {
    prof = await startProfile(b.page, 200);
  });
  await b.page.exposeFunction("__profileStop", async (label) => {
    const p = await prof.stop();
    console.log(`CPU profile of ${label} (${(p.totalMs / 1000).toFixed(2)} s): ` + Object.entries(p.categories).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(", "));
    for (const [name, ms] of p.top) console.log(`  ${ms.toFixed(1).padStart(8)} ms  ${name}`);
  });
}
const results = [];
const reduces = [];
let during;
try {
  await b.page.evaluate(() => window.bench.init());
  console.log(`Chromium ${b.browserVersion}; ${cfg.docs.toLocaleString("en")} docs; engines: ${engines.join(", ")}`);
  for (const e of engines) results.push(await b.page.evaluate(([e, c]) => window.bench.run(e, c), [e, cfg]));
  for (const n of reduceSizes) reduces.push(await b.page.evaluate(([n]) => window.bench.reduceCost(n, 30), [n]));
  if (engines.includes("outpost")) during = await b.page.evaluate(([c]) => window.bench.writesDuringBuild(c), [cfg]);
} finally {
  await b.close();
}

const by = Object.fromEntries(results.map((r) => [r.engine, r]));
const others = results.filter((r) => r.engine !== "outpost");
const fmt = (x) => (x >= 100 ? Math.round(x).toLocaleString("en") : x.toFixed(x >= 10 ? 1 : 2));
const rows = [
  [`build the index over ${cfg.docs.toLocaleString("en")} docs (ms)`, (r) => r.buildMs, false],
  [`${cfg.queries.toLocaleString("en")} equality queries (queries/s)`, (r) => r.eq.rate, true],
  ["range query, ~1,000 rows (ms, median of 9)", (r) => r.range.median, false],
];
const head = ["case", ...results.map((r) => r.label), ...(by.outpost ? others.map((r) => `Outpost/${r.label}`) : [])];
console.log();
console.log(`Chromium ${b.browserVersion}, ${cpus().length} × ${cpus()[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB; strict durability`);
console.log();
console.log("| " + head.join(" | ") + " |");
console.log("| " + head.map((_, i) => (i === 0 ? "---" : "--:")).join(" | ") + " |");
for (const [label, f, higher] of rows) {
  const line = [label, ...results.map((r) => fmt(f(r)))];
  if (by.outpost) for (const r of others) line.push((higher ? f(by.outpost) / f(r) : f(r) / f(by.outpost)).toFixed(2) + "×");
  console.log("| " + line.join(" | ") + " |");
}
console.log();
console.log(`Rows per equality query: ${results.map((r) => `${r.label} ${(r.eq.rows / r.eq.n).toFixed(0)}`).join(", ")};` +
  ` range rows: ${results.map((r) => `${r.label} ${r.range.rows}`).join(", ")}`);
console.log("Ratios: Outpost's advantage; > 1× means Outpost is faster.");
console.log(`Main-thread tasks over 50 ms during the build: ${results.map((r) => `${r.label} ${r.buildLongTasks.count} (longest ${r.buildLongTasks.longestMs.toFixed(0)} ms)`).join(", ")}`);
console.log();
console.log("| entries under one key | build (ms) | one update + query that waits, median of 30 (ms) | the same put without index work (ms) | reduce calls per update | values reduced per update (max) |");
console.log("|--:|--:|--:|--:|--:|--:|");
for (const r of reduces) {
  console.log(`| ${r.n.toLocaleString("en")} | ${fmt(r.buildMs)} | ${r.median.toFixed(2)} | ${r.plainMedian.toFixed(2)} | ${r.calls} | ${r.maxValues} |`);
}
if (during) {
  console.log();
  console.log(`Outpost, a put every 20 ms while the background maintenance builds the index over ${cfg.docs.toLocaleString("en")} docs: ` +
    `${during.puts} puts, p50 ${during.p50.toFixed(1)} ms, p95 ${during.p95.toFixed(1)} ms, max ${during.max.toFixed(1)} ms; ` +
    `built in ${during.buildMs === undefined ? "(not within 120 s)" : `${fmt(during.buildMs)} ms`}`);
}
if (opt("--json")) writeFileSync(opt("--json"), JSON.stringify({ cfg, results, reduces, during }, null, 2));
