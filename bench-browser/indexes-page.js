// The index benchmark's page (indexes.mjs bundles it): Outpost's map index,
// Dexie's compound index and PouchDB's `find` with an index, over the same
// 100,000 documents in one page, one engine after the other; then
// Outpost's incremental reduce at 1,000, 10,000 and 100,000 entries under
// one key. Queries return document ids (Outpost's rows, Dexie's
// `primaryKeys()`, PouchDB `find` with `fields: ["_id"]`).
import Dexie from "dexie";
import PouchDB from "pouchdb-browser";
import PouchFind from "pouchdb-find";
import { Outpost, initOutpost } from "../pkg-js/src/web.js";
import { idOf, makeDoc, rng } from "./docs.js";

PouchDB.plugin(PouchFind);
const now = () => performance.now();
const CITIES = ["Lagos", "Nairobi", "Accra", "Kampala", "Dakar", "Lusaka", "Harare", "Maputo"];

const byCityAge = {
  name: "by-city-age",
  map(d, emit) {
    emit([d.city, d.age], null);
  },
};

const engines = {
  outpost: () => {
    let db;
    return {
      label: "Outpost",
      async open(name) { db = await Outpost.open(name); },
      bulk(ids, docs) { return db.transaction(ids.map((id, k) => ({ type: "put", id, doc: docs[k] }))); },
      async build() {
        await db.defineIndex(byCityAge);
        await db.query(byCityAge.name, { limit: 1 }); // waits until built
      },
      async eq(c, a) { return (await db.query(byCityAge.name, { eq: [c, a] })).rows.map((r) => r.id); },
      async range(c, lo, hi) { return (await db.query(byCityAge.name, { gte: [c, lo], lte: [c, hi] })).rows.map((r) => r.id); },
      async close() { await db.close(); },
      destroy(name) { return Outpost.destroy(name); },
    };
  },
  dexie: () => {
    let db;
    return {
      label: "Dexie",
      async open(name) {
        db = new Dexie(name, { chromeTransactionDurability: "strict" });
        db.version(1).stores({ docs: "" });
        await db.open();
        this.name = name;
      },
      bulk(ids, docs) { return db.docs.bulkPut(docs, ids); },
      async build() {
        // A compound index added to a populated table: a version upgrade.
        db.close();
        db = new Dexie(this.name, { chromeTransactionDurability: "strict" });
        db.version(1).stores({ docs: "" });
        db.version(2).stores({ docs: ",[city+age]" });
        await db.open();
      },
      eq(c, a) { return db.docs.where("[city+age]").equals([c, a]).primaryKeys(); },
      range(c, lo, hi) { return db.docs.where("[city+age]").between([c, lo], [c, hi], true, true).primaryKeys(); },
      async close() { db.close(); },
      destroy(name) { return Dexie.delete(name); },
    };
  },
  pouchdb: () => {
    let db;
    return {
      label: "PouchDB",
      async open(name) { db = new PouchDB(name, { adapter: "idb", auto_compaction: false }); await db.info(); },
      bulk(ids, docs) { return db.bulkDocs(ids.map((id, k) => ({ _id: id, ...docs[k] }))); },
      async build() {
        await db.createIndex({ index: { fields: ["city", "age"] } });
        await db.find({ selector: { city: "Lagos", age: 1 }, fields: ["_id"], limit: 1 }); // builds it
      },
      async eq(c, a) { return (await db.find({ selector: { city: c, age: a }, fields: ["_id"], limit: 1e9 })).docs.map((d) => d._id); },
      async range(c, lo, hi) {
        return (await db.find({ selector: { city: c, age: { $gte: lo, $lte: hi } }, fields: ["_id"], limit: 1e9 })).docs.map((d) => d._id);
      },
      async close() { await db.close(); },
      async destroy(name) { await new PouchDB(name, { adapter: "idb" }).destroy(); },
    };
  },
};

async function load(e, n, batch) {
  for (let i = 0; i < n; i += batch) {
    const m = Math.min(batch, n - i);
    const ids = [];
    const docs = [];
    for (let k = 0; k < m; k++) { ids.push(idOf(i + k)); docs.push(makeDoc(i + k, 2)); }
    await e.bulk(ids, docs);
  }
}

/** Build an index over `cfg.docs` documents, then equality and range queries. */
async function run(engineName, cfg) {
  const e = engines[engineName]();
  const name = `idx-bench-${engineName}`;
  await e.destroy(name).catch(() => {});
  await e.open(name);
  const t0 = now();
  await load(e, cfg.docs, 1000);
  const loadMs = now() - t0;
  // Main-thread tasks over 50 ms while the index builds (issue 14 §4).
  const longTasks = [];
  const observer = new PerformanceObserver((list) => {
    for (const t of list.getEntries()) longTasks.push(t.duration);
  });
  observer.observe({ type: "longtask" });
  await window.__profileStart?.();
  const t1 = now();
  await e.build();
  const buildMs = now() - t1;
  await window.__profileStop?.(`${e.label}'s index build`);
  await new Promise((r) => setTimeout(r, 0));
  observer.disconnect();
  const longest = Math.max(0, ...longTasks);
  console.log(`[${e.label}] loaded ${cfg.docs} in ${loadMs.toFixed(0)} ms; index built in ${buildMs.toFixed(0)} ms; ${longTasks.length} tasks over 50 ms, longest ${longest.toFixed(0)} ms`);
  // Warm-up (not timed).
  for (let k = 0; k < 20; k++) await e.eq(CITIES[k % 8], k);
  const r = rng(7);
  let rows = 0;
  const t2 = now();
  for (let k = 0; k < cfg.queries; k++) {
    rows += (await e.eq(CITIES[(r() * 8) | 0], (r() * 90) | 0)).length;
  }
  const eqMs = now() - t2;
  // The same city every time (the median is of one query's times).
  const ranges = [];
  let rangeRows = 0;
  for (let k = 0; k < cfg.ranges; k++) {
    const t = now();
    const ids = await e.range("Accra", 30, 37);
    ranges.push(now() - t);
    rangeRows = ids.length;
  }
  ranges.sort((a, b) => a - b);
  console.log(`[${e.label}] ${cfg.queries} equality queries in ${eqMs.toFixed(0)} ms (${rows} rows); range median ${ranges[ranges.length >> 1].toFixed(1)} ms (${rangeRows} rows)`);
  await e.close();
  await e.destroy(name);
  return {
    engine: engineName,
    label: e.label,
    buildMs,
    buildLongTasks: { count: longTasks.length, longestMs: longest },
    eq: { n: cfg.queries, ms: eqMs, rate: (cfg.queries * 1000) / eqMs, rows },
    range: { median: ranges[ranges.length >> 1], rows: rangeRows },
  };
}

/**
 * Outpost's incremental reduce: `n` documents under one key (a sum), then
 * `updates` single-document updates, each followed by a query that waits
 * for the index. Returns the median time of write + query, and the values
 * the reduce function was given per update.
 */
async function reduceCost(n, updates) {
  const name = `idx-reduce-${n}`;
  await Outpost.destroy(name).catch(() => {});
  const db = await Outpost.open(name);
  let values = 0;
  let calls = 0;
  // The documents first, then the index (its build is the query's wait; the
  // background maintenance of the npm package would otherwise build it
  // during the load). Only collection R is mapped: the plain writes below
  // are not.
  for (let i = 0; i < n; i += 1000) {
    const m = Math.min(1000, n - i);
    await db.transaction(Array.from({ length: m }, (_, k) => ({ type: "put", id: `r/${i + k}`, doc: { v: 1 }, collection: "R" })));
  }
  const t0 = now();
  await db.defineIndex({
    name: "sum",
    collections: ["R"],
    map(d, emit) { emit("one", d.v); },
    reduce(key, vs) { calls++; values += vs.length; return vs.reduce((a, b) => a + b, 0); },
  });
  await db.query("sum");
  const buildMs = now() - t0;
  const times = [];
  const perUpdate = [];
  for (let k = 0; k < updates; k++) {
    values = 0;
    calls = 0;
    const t = now();
    await db.put(`r/${(k * 7919) % n}`, { v: 2 }, { collection: "R" });
    const r = await db.query("sum");
    times.push(now() - t);
    perUpdate.push({ calls, values });
    if (k === updates - 1 && r.rows[0].value !== n + updates) throw new Error(`sum ${r.rows[0].value}`);
  }
  times.sort((a, b) => a - b);
  // The same write without an index, for the index's share.
  const plain = [];
  for (let k = 0; k < updates; k++) {
    const t = now();
    await db.put(`plain/${k}`, { w: 1 });
    plain.push(now() - t);
  }
  plain.sort((a, b) => a - b);
  await db.close();
  await Outpost.destroy(name);
  const maxValues = Math.max(...perUpdate.map((p) => p.values));
  console.log(`[reduce] ${n} entries: build ${buildMs.toFixed(0)} ms; update+query median ${times[times.length >> 1].toFixed(2)} ms; reduce values per update max ${maxValues}`);
  return { n, buildMs, median: times[times.length >> 1], plainMedian: plain[plain.length >> 1], maxValues, calls: perUpdate[0].calls };
}

/**
 * Outpost only: single writes while the package's background maintenance
 * builds an index over `cfg.docs` documents (no query waits for it). A put
 * 20 ms after the last one answered; the time of each, until the index
 * holds every loaded document. Shows how long a write waits behind the
 * build's steps.
 */
async function writesDuringBuild(cfg) {
  const name = "idx-bench-writes";
  await Outpost.destroy(name).catch(() => {});
  const db = await Outpost.open(name);
  const e = { bulk: (ids, docs) => db.transaction(ids.map((id, k) => ({ type: "put", id, doc: docs[k] }))) };
  await load(e, cfg.docs, 1000);
  const t0 = now();
  await db.defineIndex(byCityAge);
  // Built once it holds every loaded document (each put below makes it
  // stale again for a moment: that is not the build).
  const loaded = (await db.indexes())[0].dbEtag;
  const times = [];
  let buildMs;
  for (let k = 0; now() - t0 < 120_000; k++) {
    await new Promise((r) => setTimeout(r, 20));
    const t = now();
    await db.put(`w/${k}`, { city: "Accra", age: k % 90, n: k });
    times.push(now() - t);
    const [info] = await db.indexes();
    if (info.indexedEtag >= loaded) {
      buildMs = now() - t0;
      break;
    }
  }
  await db.close();
  await Outpost.destroy(name);
  times.sort((a, b) => a - b);
  const q = (f) => times[Math.min(times.length - 1, Math.floor(times.length * f))];
  const out = { puts: times.length, p50: q(0.5), p95: q(0.95), max: times[times.length - 1], buildMs };
  console.log(`[writes during a background build] ${out.puts} puts, p50 ${out.p50.toFixed(1)} ms, p95 ${out.p95.toFixed(1)} ms, max ${out.max.toFixed(1)} ms; built in ${buildMs?.toFixed(0) ?? "(not within 120 s)"} ms`);
  return out;
}

async function init() {
  await initOutpost(new URL("./outpost_wasm_bg.wasm", location.href));
  return { userAgent: navigator.userAgent };
}

window.bench = { init, run, reduceCost, writesDuringBuild };
