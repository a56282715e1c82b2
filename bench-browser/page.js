// The benchmark page (bundled by run.mjs with esbuild). Every engine runs in
// this one page, against IndexedDB, one after the other; run.mjs drives it
// with `window.bench.run(engine, config)` and prints the table.
import Dexie from "dexie";
import PouchDB from "pouchdb-browser";
import { Outpost, initOutpost, openInWorker, destroyInWorker } from "../pkg-js/src/web.js";
import { makeDoc, rng } from "./docs.js";

// ------------------------------------------------------------ durability ---
// Every engine gets the same durability, "strict" unless run.mjs --relaxed:
// Outpost through its `durability` open option (its IndexedDB store then asks
// for it on every commit, crate/src/store/idb/mod.rs), raw IndexedDB and
// Dexie explicitly below. PouchDB has no durability option, so readwrite
// transactions opened without one are given it here. The wrapper also
// counts readwrite transactions per durability, which the table reports.
let DURABILITY = "strict";
/** SQLite's journal mode (run.mjs --sqlite-journal). */
let SQLITE_JOURNAL = "WAL";
const counts = { strict: 0, relaxed: 0, forced: 0 };
const origTransaction = IDBDatabase.prototype.transaction;
IDBDatabase.prototype.transaction = function (stores, mode, options) {
  if (mode === "readwrite") {
    let d = options && options.durability;
    if (!d || d === "default") {
      counts.forced++;
      options = { ...(options || {}), durability: DURABILITY };
      d = DURABILITY;
    }
    counts[d] = (counts[d] || 0) + 1;
  }
  return options === undefined
    ? origTransaction.call(this, stores, mode)
    : origTransaction.call(this, stores, mode, options);
};

// ----------------------------------------------------------------- data ---
/** The id of document `i`: `docs/00000` … (5 digits, so `docs/0` is 10,000 ids). */
export const idOf = (i) => "docs/" + String(i).padStart(5, "0");


// -------------------------------------------------------------- engines ---
// Each adapter: open(name), bulk(ids, docs) (one batch, atomically where the
// engine can), putOne(id, doc), get(id), scanPrefix(prefix) → array,
// scanKeys(prefix) → array of ids,
// close(), destroy(name).
// Outpost's bulk writes ask for no result per document (`results: false`:
// the count and the last etag), as Dexie's `bulkPut` resolves to the last
// key only and the raw IndexedDB code keeps no result either.
const BULK_OPTIONS = { results: false };

const engines = {
  outpost: () => {
    let db;
    return {
      label: "Outpost",
      // (No option for "strict", the default: a build from before the option runs too.)
      async open(name) { db = await Outpost.open(name, DURABILITY === "strict" ? undefined : { durability: DURABILITY }); },
      bulk(ids, docs) {
        return db.transaction(ids.map((id, k) => ({ type: "put", id, doc: docs[k] })), BULK_OPTIONS);
      },
      putOne(id, doc) { return db.put(id, doc); },
      get(id) { return db.get(id); },
      scanPrefix(prefix) { return db.scan({ prefix }); },
      scanKeys(prefix) { return db.scan({ prefix, keysOnly: true }); },
      async close() { await db.close(); db = undefined; },
      destroy(name) { return Outpost.destroy(name); },
      stats() { return db.stats(); },
    };
  },

  // Diagnostic, not a competitor: the same engine over its in-memory page
  // store, to split Outpost's own CPU cost from the cost of IndexedDB.
  "outpost-mem": () => {
    let db;
    return {
      label: "Outpost, memory store",
      memory: true,
      async open(name) { db = await Outpost.open(name, { storage: "memory" }); },
      bulk(ids, docs) {
        return db.transaction(ids.map((id, k) => ({ type: "put", id, doc: docs[k] })), BULK_OPTIONS);
      },
      putOne(id, doc) { return db.put(id, doc); },
      get(id) { return db.get(id); },
      scanPrefix(prefix) { return db.scan({ prefix }); },
      scanKeys(prefix) { return db.scan({ prefix, keysOnly: true }); },
      async close() { await db.close(); db = undefined; },
      async destroy() {},
      stats() { return db.stats(); },
    };
  },

  // Outpost in a dedicated worker (openInWorker; outpost-worker.js, the
  // same script as sync-worker.js): over IndexedDB, as "outpost" but with
  // the worker's message round trip, and over OPFS (issue 14 §5), which
  // exists only in a dedicated worker.
  "outpost-worker": () => outpostInWorker("Outpost in a worker (IndexedDB)", "indexeddb"),
  "outpost-opfs": () => outpostInWorker("Outpost in a worker (OPFS)", "opfs"),

  // SQLite-WASM (@sqlite.org/sqlite-wasm) on its opfs-sahpool VFS in a
  // dedicated worker (sqlite-worker.js): one table (id TEXT PRIMARY KEY,
  // body TEXT), one transaction per batch or single write.
  "sqlite-opfs": () => {
    const w = new Worker(new URL("./sqlite-worker.js", location.href), { type: "module" });
    let next = 0;
    const waiting = new Map();
    w.onmessage = (e) => {
      const { id, result, error } = e.data;
      const p = waiting.get(id);
      waiting.delete(id);
      if (error !== undefined) p.reject(new Error(error));
      else p.resolve(result);
    };
    const call = (op, ...args) => new Promise((resolve, reject) => {
      const id = ++next;
      waiting.set(id, { resolve, reject });
      w.postMessage({ id, op, args });
    });
    return {
      label: "SQLite-WASM (OPFS sahpool)",
      open: (name) => call("open", name, SQLITE_JOURNAL),
      bulk: (ids, docs) => call("bulk", ids, docs),
      putOne: (id, doc) => call("putOne", id, doc),
      get: (id) => call("get", id),
      scanPrefix: (prefix) => call("scanPrefix", prefix),
      scanKeys: (prefix) => call("scanKeys", prefix),
      close: () => call("close"),
      destroy: (name) => call("destroy", name),
      dispose() { w.terminate(); },
    };
  },

  idb: () => {
    // One record per document (key = id), one readwrite transaction per batch.
    let db;
    const rw = () => db.transaction("docs", "readwrite", { durability: DURABILITY });
    const done = (tx) => new Promise((res, rej) => {
      tx.oncomplete = () => res();
      tx.onabort = tx.onerror = () => rej(tx.error);
    });
    const req = (r) => new Promise((res, rej) => {
      r.onsuccess = () => res(r.result);
      r.onerror = () => rej(r.error);
    });
    return {
      label: "raw IndexedDB",
      async open(name) {
        const r = indexedDB.open(name, 1);
        r.onupgradeneeded = () => r.result.createObjectStore("docs");
        db = await req(r);
      },
      bulk(ids, docs) {
        const tx = rw();
        const s = tx.objectStore("docs");
        for (let k = 0; k < ids.length; k++) s.put(docs[k], ids[k]);
        return done(tx);
      },
      putOne(id, doc) {
        const tx = rw();
        tx.objectStore("docs").put(doc, id);
        return done(tx);
      },
      get(id) { return req(db.transaction("docs", "readonly").objectStore("docs").get(id)); },
      scanPrefix(prefix) {
        const range = IDBKeyRange.bound(prefix, prefix + "\uffff");
        return req(db.transaction("docs", "readonly").objectStore("docs").getAll(range));
      },
      scanKeys(prefix) {
        const range = IDBKeyRange.bound(prefix, prefix + "\uffff");
        return req(db.transaction("docs", "readonly").objectStore("docs").getAllKeys(range));
      },
      async close() { db.close(); db = undefined; },
      destroy(name) { return req(indexedDB.deleteDatabase(name)); },
    };
  },

  dexie: () => {
    let db;
    return {
      label: "Dexie",
      async open(name) {
        db = new Dexie(name, { chromeTransactionDurability: DURABILITY });
        db.version(1).stores({ docs: "" }); // out-of-line primary key = the id
        await db.open();
      },
      bulk(ids, docs) { return db.docs.bulkPut(docs, ids); },
      putOne(id, doc) { return db.docs.put(doc, id); },
      get(id) { return db.docs.get(id); },
      scanPrefix(prefix) { return db.docs.where(":id").startsWith(prefix).toArray(); },
      scanKeys(prefix) { return db.docs.where(":id").startsWith(prefix).primaryKeys(); },
      async close() { db.close(); db = undefined; },
      destroy(name) { return Dexie.delete(name); },
    };
  },

  pouchdb: () => {
    let db;
    return {
      label: "PouchDB",
      async open(name) { db = new PouchDB(name, { adapter: "idb", auto_compaction: false }); await db.info(); },
      bulk(ids, docs) {
        return db.bulkDocs(ids.map((id, k) => ({ _id: id, ...docs[k] }))).then((res) => {
          for (const r of res) if (r.error) throw new Error(`bulkDocs: ${r.id}: ${r.message}`);
        });
      },
      putOne(id, doc) { return db.put({ _id: id, ...doc }); },
      get(id) { return db.get(id); },
      async scanPrefix(prefix) {
        const r = await db.allDocs({ startkey: prefix, endkey: prefix + "\uffff", include_docs: true });
        return r.rows.map((row) => row.doc);
      },
      async scanKeys(prefix) {
        const r = await db.allDocs({ startkey: prefix, endkey: prefix + "\uffff" });
        return r.rows.map((row) => row.id);
      },
      async close() { await db.close(); db = undefined; },
      async destroy(name) { await new PouchDB(name, { adapter: "idb" }).destroy(); },
    };
  },
};

/** Outpost in a dedicated worker over `storage` (see "outpost-worker"). */
function outpostInWorker(label, storage) {
  const w = new Worker(new URL("./outpost-worker.js", location.href), { type: "module" });
  let db;
  return {
    label,
    async open(name) {
      db = await openInWorker(w, name, DURABILITY === "strict" ? { storage } : { storage, durability: DURABILITY });
    },
    bulk(ids, docs) {
      return db.transaction(ids.map((id, k) => ({ type: "put", id, doc: docs[k] })), BULK_OPTIONS);
    },
    putOne(id, doc) { return db.put(id, doc); },
    get(id) { return db.get(id); },
    scanPrefix(prefix) { return db.scan({ prefix }); },
    scanKeys(prefix) { return db.scan({ prefix, keysOnly: true }); },
    async close() { await db.close(); db = undefined; },
    destroy(name) { return destroyInWorker(w, name); },
    stats() { return db.stats(); },
    // The worker (and its wasm memory) goes with the engine's run, so the
    // next engine does not run beside it.
    dispose() { w.terminate(); },
  };
}

// ---------------------------------------------------------------- phases ---
const now = () => performance.now();
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];

async function usageBytes() {
  try { return (await navigator.storage.estimate()).usage ?? null; } catch { return null; }
}

/**
 * Inserts documents 0..n-1 in batches of `batch`; stops early (and says so)
 * when `capMs` is exceeded. Returns { docs, ms, rate, capped, rwTx }.
 */
async function bulkInsert(e, n, batch, capMs, seed) {
  const before = { ...counts };
  const t0 = now();
  let i = 0;
  let applyMs = 0; // time inside e.bulk (excludes building the documents)
  let capped = false;
  while (i < n) {
    const m = Math.min(batch, n - i);
    const ids = new Array(m);
    const docs = new Array(m);
    for (let k = 0; k < m; k++) { ids[k] = idOf(i + k); docs[k] = makeDoc(i + k, seed); }
    const s = now();
    await e.bulk(ids, docs);
    applyMs += now() - s;
    i += m;
    if (i < n && now() - t0 > capMs) { capped = true; break; }
  }
  const ms = now() - t0;
  return { docs: i, ms, applyMs, rate: (i * 1000) / ms, capped, rwTx: counts.strict + counts.relaxed - before.strict - before.relaxed };
}

async function run(engineName, cfg) {
  DURABILITY = cfg.durability ?? "strict";
  SQLITE_JOURNAL = cfg.sqliteJournal ?? "WAL";
  const e = engines[engineName]();
  const name = `bench-${engineName}`;
  const stats = async () => (e.stats ? e.stats() : null);
  const out = { engine: engineName, label: e.label };
  const log = (msg) => console.log(`[${e.label}] ${msg}`);
  const startCounts = { ...counts };
  await e.destroy(name).catch(() => {});

  // 0. Warm-up (not timed): one batch, a few reads and writes in a scratch
  // database, so that JIT tier-up of the JS and wasm code is not billed to
  // the first timed phase.
  {
    const w = `${name}-warmup`;
    await e.destroy(w).catch(() => {});
    await e.open(w);
    await bulkInsert(e, cfg.batch, cfg.batch, cfg.capMs, 9);
    for (let k = 0; k < 50; k++) await e.get(idOf(k * 7));
    for (let k = 0; k < 20; k++) await e.putOne("warm/" + k, makeDoc(k, 9));
    await e.scanPrefix("docs/0");
    await e.scanKeys("docs/0");
    await e.close();
    await e.destroy(w);
  }

  // 1. Bulk insert of the small set into a fresh database.
  await e.open(name);
  out.bulkSmall = await bulkInsert(e, cfg.small, cfg.batch, cfg.capMs, 1);
  log(`bulk ${cfg.small}: ${out.bulkSmall.rate.toFixed(0)} docs/s`);
  await e.close();
  await e.destroy(name);

  // 2. Bulk insert of the large set into a fresh database (kept for the rest).
  await e.open(name);
  const cap = engineName === "pouchdb" ? cfg.pouchCapMs : cfg.capMs;
  out.bulkLarge = await bulkInsert(e, cfg.large, cfg.batch, cap, 2);
  out.bulkLarge.usage = await usageBytes();
  log(`bulk ${cfg.large}: ${out.bulkLarge.rate.toFixed(0)} docs/s over ${out.bulkLarge.docs}` +
    (out.bulkLarge.capped ? " (time cap reached)" : ""));
  const have = out.bulkLarge.docs;

  // 3. Point reads of random ids, each awaited.
  {
    const r = rng(42);
    const ids = Array.from({ length: cfg.reads }, () => idOf((r() * have) | 0));
    const lat = new Array(ids.length);
    out.statsBeforeReads = await stats();
    const t0 = now();
    for (let k = 0; k < ids.length; k++) {
      const s = now();
      const d = await e.get(ids[k]);
      lat[k] = now() - s;
      if (!d) throw new Error(`${e.label}: ${ids[k]} not found`);
    }
    const ms = now() - t0;
    lat.sort((a, b) => a - b);
    out.statsAfterReads = await stats();
    out.reads = { n: ids.length, ms, rate: (ids.length * 1000) / ms, p50: pct(lat, 50), p99: pct(lat, 99) };
    log(`point reads: ${out.reads.rate.toFixed(0)} reads/s`);
  }

  // 4. Prefix scan (`docs/0`: 10,000 documents when ≥ 10,000 were inserted).
  {
    const t0 = now();
    const docs = await e.scanPrefix("docs/0");
    const ms = now() - t0;
    out.statsAfterScan = await stats();
    out.scan = { n: docs.length, ms, rate: (docs.length * 1000) / ms };
    log(`scan: ${docs.length} docs in ${ms.toFixed(0)} ms`);
  }

  // 4b. The same prefix, ids only (Outpost `keysOnly`, raw `getAllKeys`,
  // Dexie `primaryKeys()`, PouchDB `allDocs` without docs).
  {
    const t0 = now();
    const keys = await e.scanKeys("docs/0");
    const ms = now() - t0;
    out.scanKeys = { n: keys.length, ms, rate: (keys.length * 1000) / ms };
    log(`keys-only scan: ${keys.length} ids in ${ms.toFixed(0)} ms`);
  }

  // 5. Serial single-document writes, each awaited (new ids).
  {
    const before = { ...counts };
    const lat = new Array(cfg.singles);
    const t0 = now();
    for (let k = 0; k < cfg.singles; k++) {
      const doc = makeDoc(1_000_000 + k, 3);
      const s = now();
      await e.putOne("single/" + String(k).padStart(5, "0"), doc);
      lat[k] = now() - s;
    }
    const ms = now() - t0;
    lat.sort((a, b) => a - b);
    out.singles = {
      n: cfg.singles, ms, rate: (cfg.singles * 1000) / ms,
      mean: ms / cfg.singles, p50: pct(lat, 50), p99: pct(lat, 99),
      rwTx: counts.strict + counts.relaxed - before.strict - before.relaxed,
    };
    log(`single writes: ${out.singles.rate.toFixed(0)} docs/s, p50 ${out.singles.p50.toFixed(2)} ms`);
  }

  // 6. Reopen to first read: close, open, get one document (not for a
  // memory store, which reopens empty).
  if (e.memory) {
    out.reopen = { ms: NaN };
  } else {
    await e.close();
    const t0 = now();
    await e.open(name);
    const d = await e.get(idOf((have / 2) | 0));
    out.reopen = { ms: now() - t0 };
    if (!d) throw new Error(`${e.label}: nothing after reopen`);
    log(`reopen to first read: ${out.reopen.ms.toFixed(1)} ms`);

    // 7. Point reads right after the reopen (the engine's cache cold; the
    // browser's own caches as they are), other random ids than case 3's.
    const r = rng(7);
    const ids = Array.from({ length: cfg.reads }, () => idOf((r() * have) | 0));
    const lat = new Array(ids.length);
    const t1 = now();
    for (let k = 0; k < ids.length; k++) {
      const s = now();
      const got = await e.get(ids[k]);
      lat[k] = now() - s;
      if (!got) throw new Error(`${e.label}: ${ids[k]} not found after reopen`);
    }
    const ms = now() - t1;
    lat.sort((a, b) => a - b);
    out.coldReads = { n: ids.length, ms, rate: (ids.length * 1000) / ms, p50: pct(lat, 50), p99: pct(lat, 99) };
    log(`point reads after reopen: ${out.coldReads.rate.toFixed(0)} reads/s`);
  }

  await e.close();
  await e.destroy(name);
  e.dispose?.();
  out.durability = {
    strict: counts.strict - startCounts.strict,
    relaxed: counts.relaxed - startCounts.relaxed,
    forced: counts.forced - startCounts.forced,
  };
  return out;
}

async function init() {
  await initOutpost(new URL("./outpost_wasm_bg.wasm", location.href));
  return { userAgent: navigator.userAgent, cores: navigator.hardwareConcurrency };
}

window.bench = { init, run };
