// The page of write-probe.mjs: where the time of one Outpost write on
// IndexedDB goes. Wraps IDBDatabase.transaction to time each readwrite
// transaction from its creation to its `complete` event, counts the
// requests, and compares with one raw `put` of the same size into a
// database of the same shape (three object stores, strict).
import { Outpost, initOutpost, openInWorker } from "../pkg-js/src/web.js";
import { MAX_PENDING, Witness } from "../pkg-js/src/witness.js";
import { idOf, makeDoc } from "./docs.js";
import * as bindings from "../pkg-js/dist/web/outpost_wasm.js";

// Time spent in the storage witness's update and in BroadcastChannel posts
// (both run in the JS layer after a commit).
const inside = { witness: 0, post: 0 };
const timeIn = (proto, method, key) => {
  const orig = proto[method];
  proto[method] = function (...a) {
    const t = performance.now();
    try {
      return orig.apply(this, a);
    } finally {
      inside[key] += performance.now() - t;
    }
  };
};
timeIn(Witness.prototype, "committed", "witness");
timeIn(BroadcastChannel.prototype, "postMessage", "post");
// NO_WITNESS=1 / NO_POST=1 (write-probe.mjs; experiments only, the data is
// unaffected): the witness's localStorage update, the BroadcastChannel
// posts, skipped, to see what they cost the writes around them.
if (globalThis.__noWitness) Witness.prototype.committed = function () {};
if (globalThis.__noPost) BroadcastChannel.prototype.postMessage = function () {};

// When the bindings' own put (under the JS layer) is called and resolves.
const rawPut = bindings.Outpost.prototype.put;
const rawMarks = [];
bindings.Outpost.prototype.put = function (...a) {
  if (globalThis.__markTx) __putMarker();
  const m = { enter: performance.now() };
  rawMarks.push(m);
  const p = rawPut.apply(this, a);
  m.returned = performance.now();
  p.then(() => { m.done = performance.now(); }, () => {});
  return p;
};

const marks = [];
// The mark of each readwrite transaction: when its first read (the fence
// check) and its puts succeeded, when commit() was called, what it put.
const txMark = new WeakMap();
let lastRecord = null;
// MARK_TX=1 (write-probe.mjs): a function the profiler sees at each
// readwrite transaction's creation (it spins 60 µs), so that the samples
// after it, up to the thread's next idle sample, can be told apart.
function __txMarker() {
  const t = performance.now();
  while (performance.now() - t < 0.06);
}
// The same at each call of the bindings' put: the samples from it to the
// transaction's marker are the write's work before its transaction.
function __putMarker() {
  const t = performance.now();
  while (performance.now() - t < 0.06);
}
const idleChannel = new MessageChannel();
const idleProbe = idleChannel.port1;
idleChannel.port2.onmessage = (e) => idleChannel.port2.postMessage(e.data);
idleChannel.port1.start?.();
const calls = {};
const origTx = IDBDatabase.prototype.transaction;
IDBDatabase.prototype.transaction = function (...a) {
  const tx = origTx.apply(this, a);
  if (timeline) {
    const done = span(`${a[1] ?? "readonly"} transaction [${[].concat(a[0]).join(",")}]`);
    tx.addEventListener("complete", done);
    tx.addEventListener("abort", done);
  }
  const k = `${a[1] ?? "readonly"} ${a[2]?.durability ?? ""}`.trim();
  calls[k] = (calls[k] || 0) + 1;
  if (a[1] === "readwrite") {
    const m = { created: performance.now(), bytes: 0 };
    marks.push(m);
    txMark.set(tx, m);
    if (globalThis.__markTx) __txMarker();
    // When this thread first runs a task after the one that created the
    // transaction (a message to itself): until then no answer of the
    // transaction's requests can be handled.
    idleProbe.onmessage = () => { m.free ??= performance.now(); };
    idleProbe.postMessage(0);
    tx.addEventListener("complete", () => { m.complete = performance.now(); });
  }
  return tx;
};
const origPut = IDBObjectStore.prototype.put;
IDBObjectStore.prototype.put = function (...a) {
  calls.puts = (calls.puts || 0) + 1;
  calls.putBytes = (calls.putBytes || 0) + (a[0]?.byteLength ?? 0);
  const r = origPut.apply(this, a);
  const m = txMark.get(this.transaction);
  if (m && this.name === "log") lastRecord = a[0];
  if (m) {
    m.putIssued ??= performance.now();
    m.bytes += a[0]?.byteLength ?? 0;
    r.addEventListener("success", () => { m.putDone = performance.now(); });
  }
  return r;
};
{
  const orig = IDBTransaction.prototype.commit;
  IDBTransaction.prototype.commit = function () {
    const m = txMark.get(this);
    if (m) m.commit = performance.now();
    return orig.call(this);
  };
  const origGet = IDBObjectStore.prototype.get;
  IDBObjectStore.prototype.get = function (...a) {
    const r = origGet.apply(this, a);
    const m = txMark.get(this.transaction);
    if (m && m.getDone === undefined) r.addEventListener("success", () => { m.getDone ??= performance.now(); });
    return r;
  };
}

const median = (v) => v.slice().sort((a, b) => a - b)[v.length >> 1];

// A timeline of the browser calls a reopen makes (when `timeline` is set):
// storage buckets, IndexedDB opens and transactions, the Web Lock.
let timeline = null;
const span = (name) => {
  if (!timeline) return () => {};
  const e = { name, start: performance.now() };
  timeline.push(e);
  return () => { e.end = performance.now(); };
};
const wrapAsync = (proto, method, label) => {
  const orig = proto?.[method];
  if (typeof orig !== "function") return;
  proto[method] = function (...a) {
    const done = span(label);
    const r = orig.apply(this, a);
    Promise.resolve(r).then(done, done);
    return r;
  };
};
if (globalThis.StorageBucketManager) {
  wrapAsync(StorageBucketManager.prototype, "keys", "storageBuckets.keys");
  wrapAsync(StorageBucketManager.prototype, "open", "storageBuckets.open");
}
wrapAsync(globalThis.StorageBucket?.prototype, "persist", "bucket.persist");
wrapAsync(globalThis.StorageBucket?.prototype, "persisted", "bucket.persisted");
wrapAsync(globalThis.StorageManager?.prototype, "persisted", "storage.persisted");
wrapAsync(globalThis.StorageManager?.prototype, "estimate", "storage.estimate");
wrapAsync(IDBFactory.prototype, "databases", "indexedDB.databases");
{
  const orig = IDBFactory.prototype.open;
  IDBFactory.prototype.open = function (...a) {
    const done = span(`indexedDB.open ${a[0]}`);
    const r = orig.apply(this, a);
    r.addEventListener("success", done);
    r.addEventListener("error", done);
    return r;
  };
}
// Each read request of a timed reopen, to its success, with the size of what it read.
for (const m of ["get", "getAll", "getAllKeys", "count"]) {
  const orig = IDBObjectStore.prototype[m];
  IDBObjectStore.prototype[m] = function (...a) {
    const r = orig.apply(this, a);
    if (timeline) {
      const e = { name: `  ${m} ${this.name}`, start: performance.now() };
      timeline.push(e);
      r.addEventListener("success", () => {
        e.end = performance.now();
        const v = r.result;
        if (v?.byteLength !== undefined) e.name += ` (${v.byteLength} bytes)`;
        else if (Array.isArray(v)) e.name += ` (${v.length} items)`;
      });
    }
    return r;
  };
}
if (globalThis.LockManager) {
  const orig = LockManager.prototype.request;
  LockManager.prototype.request = function (name, ...rest) {
    const done = span(`lock ${name} (to grant)`);
    const cb = rest.pop();
    return orig.call(this, name, ...rest, (...x) => {
      done();
      return cb(...x);
    });
  };
}

// Reopen to first read (the browser benchmark's case 6), with a timeline of
// the browser calls it makes: `docs` documents written in batches of 1,000
// and `singles` single writes after them (the benchmark's database: 100,000
// and 500), then nine times close, open, one get.
const reopen = async (doc, docs, singles) => {
  let db = await Outpost.open("probe-reopen");
  for (let b = 0; b < docs; b += 1000) {
    const ops = [];
    for (let i = b; i < Math.min(docs, b + 1000); i++) ops.push({ type: "put", id: `r/${String(i).padStart(6, "0")}`, doc: { ...doc, n: i } });
    await db.transaction(ops, { results: false });
  }
  for (let i = 0; i < singles; i++) await db.put(`single/${String(i).padStart(5, "0")}`, doc);
  await db.close();
  if (globalThis.__warmOther) {
    // A reopen and a cold read of another database first.
    let w = await Outpost.open("probe-warm");
    const ops = [];
    for (let i = 0; i < 3000; i++) ops.push({ type: "put", id: `w/${String(i).padStart(6, "0")}`, doc: { ...doc, n: i } });
    await w.transaction(ops, { results: false });
    await w.close();
    w = await Outpost.open("probe-warm");
    await w.get("w/001500");
    await w.close();
  }
  const totals = [];
  let last = null;
  const id = `r/${String(docs >> 1).padStart(6, "0")}`;
  let first = null;
  for (let k = 0; k < 9; k++) {
    timeline = [];
    if (k === 0) await window.__reopenProfileStart?.();
    const t0 = performance.now();
    db = await Outpost.open("probe-reopen");
    const tOpen = performance.now();
    span("open resolved")();
    const d = await db.get(id);
    const t1 = performance.now();
    if (k === 0) await window.__reopenProfileStop?.();
    if (!d) throw new Error("reopen: the document is missing");
    totals.push(t1 - t0);
    last = {
      total: t1 - t0,
      open: tOpen - t0,
      calls: timeline.map((e) => `${(e.start - t0).toFixed(1)}–${e.end === undefined ? "?" : (e.end - t0).toFixed(1)} ms ${e.name}`),
    };
    if (k === 0) first = last;
    timeline = null;
    await db.close();
  }
  // Point reads right after a reopen (the benchmark's case 7), with the
  // engine's cache counters.
  db = await Outpost.open("probe-reopen");
  const t2 = performance.now();
  let seed = 7;
  for (let i = 0; i < 2000; i++) {
    seed = (seed * 48271) % 2147483647;
    const got = await db.get(`r/${String(seed % docs).padStart(6, "0")}`);
    if (!got) throw new Error("cold read: missing");
  }
  const coldMs = performance.now() - t2;
  const cache = (await db.stats()).cache;
  await db.close();
  // The same again (another reopen, other ids) with each IndexedDB request
  // timed: how much of a cold read is the browser's read transaction
  // (issue to its last request's success) and how much the page's own work.
  // With --profile-cold, the main thread's CPU profile of these reads.
  db = await Outpost.open("probe-reopen");
  timeline = [];
  await window.__coldProfileStart?.();
  const t3 = performance.now();
  for (let i = 0; i < 2000; i++) {
    seed = (seed * 48271) % 2147483647;
    const got = await db.get(`r/${String(seed % docs).padStart(6, "0")}`);
    if (!got) throw new Error("cold read: missing");
  }
  const timedMs = performance.now() - t3;
  await window.__coldProfileStop?.();
  const txs = [];
  for (const e of timeline) {
    if (e.name.startsWith("readonly transaction")) txs.push({ start: e.start, done: e.start });
    else if (txs.length && e.end !== undefined) txs[txs.length - 1].done = Math.max(txs[txs.length - 1].done, e.end);
  }
  timeline = null;
  await db.close();
  const inTx = txs.reduce((a, t) => a + (t.done - t.start), 0);
  const timed = {
    rate: (2000 * 1000) / timedMs,
    readTransactions: txs.length,
    msPerTransaction: inTx / Math.max(1, txs.length),
    msOutsideTransactions: timedMs - inTx,
  };
  return { cold: { rate: (2000 * 1000) / coldMs, cache, timed }, firstCalls: first.calls, docs, singles, p50: median(totals), min: Math.min(...totals), first: totals[0], last };
};

// What the storage witness's update costs a commit (localStorage, in the
// page's thread), with its list of unacknowledged ids full: a database
// written and not synced. µs per update, 1,000 updates.
const witnessCost = () => {
  const w = new Witness(localStorage, "probe-witness");
  w.reset("db", 0);
  for (let i = 1; i <= MAX_PENDING; i++) w.committed("db", i, [[`p/${i}`, i]]);
  const t0 = performance.now();
  for (let i = 1; i <= 1000; i++) w.committed("db", MAX_PENDING + i, [[`q/${i}`, MAX_PENDING + i]]);
  const us = performance.now() - t0;
  w.remove();
  return { updateUs: us, pending: MAX_PENDING };
};

// The browser benchmark's bulk insert alone (page.js: the same documents,
// batches of 1,000, `results: false`), for a profile of where its time goes.
window.bulk = async ({ docs, storage }) => {
  await initOutpost(new URL("./outpost_wasm_bg.wasm", location.href));
  const name = `probe-bulk-${storage}`;
  const db = await Outpost.open(name, { storage });
  for (const k of Object.keys(calls)) delete calls[k];
  const t0 = performance.now();
  let inTx = 0;
  for (let b0 = 0; b0 < docs; b0 += 1000) {
    const ops = [];
    for (let i = b0; i < Math.min(docs, b0 + 1000); i++) ops.push({ type: "put", id: idOf(i), doc: makeDoc(i) });
    const t = performance.now();
    await db.transaction(ops, { results: false });
    inTx += performance.now() - t;
  }
  const ms = performance.now() - t0;
  await db.close();
  if (storage !== "memory") await Outpost.destroy(name);
  const perBatch = Object.fromEntries(Object.entries(calls).map(([k, v]) => [k, Math.round((v * 1000) / docs)]));
  return { docs, storage, docsPerSec: Math.round((docs * 1000) / ms), msInTransaction: Math.round(inTx), ms: Math.round(ms), perBatch };
};

/** A database shaped like Outpost's (four object stores), opened. */
const openRawLike = (name) =>
  new Promise((res, rej) => {
    const o = indexedDB.open(name, 1);
    o.onupgradeneeded = () => { for (const s of ["pages", "meta", "log", "runs"]) o.result.createObjectStore(s); };
    o.onsuccess = () => res(o.result);
    o.onerror = () => rej(o.error);
  });

window.probe = async (n, docs = 50, reopenOnly = null) => {
  await initOutpost(new URL("./outpost_wasm_bg.wasm", location.href));
  const doc = { pad: "x".repeat(1000), n: 1 };
  if (reopenOnly) return { reopen: await reopen(doc, reopenOnly.docs, reopenOnly.singles) };
  const out = {};
  const db = await Outpost.open("probe");
  for (let b = 0; b < docs; b += 1000) {
    const ops = [];
    for (let i = b; i < Math.min(docs, b + 1000); i++) ops.push({ type: "put", id: `warm/${String(i).padStart(6, "0")}`, doc: { ...doc, n: i } });
    await db.transaction(ops, { results: false });
  }
  for (const k of Object.keys(calls)) delete calls[k];
  inside.witness = inside.post = 0;
  const split = [];
  const inTx = [];
  const total = [];
  // INTERLEAVE=1: after each Outpost write, one raw write (fence check,
  // then commit() from its handler, 8,331 bytes) into a database of its
  // own, timed alike: both under the same conditions.
  const inter = globalThis.__interleave ? { db: await openRawLike("probe-inter"), t: [], answered: [], key: 0 } : null;
  await window.__profileStart?.();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const before = marks.length;
    const rawBefore = rawMarks.length;
    await db.put(`p/${String(i).padStart(5, "0")}`, doc);
    const t1 = performance.now();
    total.push(t1 - t0);
    if (inter) {
      const s0 = performance.now();
      const tx = origTx.call(inter.db, ["pages", "meta", "log", "runs"], "readwrite", { durability: "strict" });
      origPut.call(tx.objectStore("log"), new Uint8Array(8331), inter.key++);
      const check = tx.objectStore("meta").get(2);
      check.onsuccess = () => {
        inter.answered.push(performance.now() - s0);
        if (check.result !== undefined) tx.abort();
        else tx.commit();
      };
      await new Promise((res, rej) => { tx.oncomplete = res; tx.onabort = () => rej(tx.error); });
      inter.t.push(performance.now() - s0);
    }
    const m = marks[before];
    const r = rawMarks[rawBefore];
    if (m?.complete && r?.done) {
      split.push([m.created - t0, m.complete - m.created, t1 - m.complete, r.enter - t0, m.created - r.enter, r.done - m.complete, t1 - r.done]);
      if (m.commit !== undefined && m.getDone !== undefined) inTx.push([m.getDone - m.created, m.commit - m.created, (m.putDone ?? m.commit) - m.created, m.complete - m.commit, m.bytes, m.putIssued - m.created, r.returned - m.created, (m.free ?? NaN) - m.created]);
    }
  }
  await window.__profileStop?.();
  await db.close();
  if (inter) {
    inter.db.close();
    out.interleaved = { rawP50: median(inter.t), rawFenceAnswered: median(inter.answered) };
  }
  out.outpost = {
    p50: median(total),
    callToTx: median(split.map((x) => x[0])),
    txToComplete: median(split.map((x) => x[1])),
    completeToResolved: median(split.map((x) => x[2])),
    // The same split finer: the JS layer before the bindings' put, the bindings and engine to the
    // transaction, the engine after `complete` to the bindings' promise, the JS layer after it.
    jsBefore: median(split.map((x) => x[3])),
    wasmToTx: median(split.map((x) => x[4])),
    completeToWasmDone: median(split.map((x) => x[5])),
    jsAfter: median(split.map((x) => x[6])),
    // Inside the log records' transactions (those that called commit()), from
    // their creation: the fence check's answer, commit(), the put's answer;
    // then commit() to complete; the bytes put.
    logRecords: inTx.length,
    fenceAnswered: median(inTx.map((x) => x[0])),
    commitCalled: median(inTx.map((x) => x[1])),
    putAnswered: median(inTx.map((x) => x[2])),
    commitToComplete: median(inTx.map((x) => x[3])),
    logRecordBytes: median(inTx.map((x) => x[4])),
    putIssued: median(inTx.map((x) => x[5])),
    bindingsReturned: median(inTx.map((x) => x[6])),
    // A message posted at the transaction's creation and echoed back by a
    // port of a MessageChannel: when the thread was free again (roughly).
    threadFree: median(inTx.map((x) => x[7])),
    crossOriginIsolated: self.crossOriginIsolated, // true: times to 5 µs, else to 100 µs
    // Means per write, ms: the witness's update, BroadcastChannel posts.
    witnessMean: inside.witness / n,
    postMean: inside.post / n,
    perWrite: Object.fromEntries(Object.entries(calls).map(([k, v]) => [k, +(v / n).toFixed(2)])),
  };
  const bytes = Math.round((calls.putBytes || 0) / Math.max(1, calls.puts || 1));
  // Raw: one put of the same mean size, same three object stores, strict.
  // RAW_BUCKET=1 (write-probe.mjs): in a storage bucket of its own, opened
  // with strict durability, as Outpost's database is (the bucket object is
  // kept: see crate/src/store/idb/place.rs).
  const rawBucket = globalThis.__rawBucket ? await navigator.storageBuckets.open("probe-raw", { durability: "strict" }) : null;
  const raw = await new Promise((res, rej) => {
    const o = (rawBucket?.indexedDB ?? indexedDB).open("probe-raw", 2);
    o.onupgradeneeded = () => { for (const s of ["pages", "meta", "log", "runs"]) o.result.createObjectStore(s); };
    o.onsuccess = () => res(o.result);
    o.onerror = () => rej(o.error);
  });
  // RAW_LIKE=1: the raw database's meta store holds what Outpost's holds
  // (a meta record, the folded sequence number, a 20 KB layout record) and
  // its transactions span the four object stores Outpost's do.
  // RAW_FILL=random|copy: the raw put's value filled with random bytes, or
  // a copy of the last log record Outpost put (default: zeros).
  const rawValue = () => {
    const v = new Uint8Array(bytes);
    if (globalThis.__rawFill === "random") for (let i = 0; i < v.length; i += 65536) crypto.getRandomValues(v.subarray(i, i + 65536));
    if (globalThis.__rawFill === "copy" && lastRecord) v.set(lastRecord.subarray(0, v.length));
    return v;
  };
  const rawScope = globalThis.__rawLike ? ["pages", "meta", "log", "runs"] : ["pages", "meta", "log"];
  if (globalThis.__rawLike) {
    const tx = origTx.call(raw, ["meta"], "readwrite");
    const ms = tx.objectStore("meta");
    ms.put(new Uint8Array(300), 0);
    ms.put(12345, 1);
    ms.put(new Uint8Array(20075), 3);
    await new Promise((r) => { tx.oncomplete = r; });
  }
  // Four ways of writing it, interleaved (one of each per round): committed
  // by itself (auto-commit) or told to with commit() right after the put;
  // with the fence check every Outpost commit makes first (a get of one
  // meta key, compared in its success handler), committing by itself, or
  // with commit() called from that handler once the check passed (what an
  // Outpost log record does since commit 0e260f2).
  const ways = {
    auto: { fence: false, commit: false, t: [] },
    explicitCommit: { fence: false, commit: true, t: [] },
    fenceAuto: { fence: true, commit: false, t: [] },
    fenceThenCommit: { fence: true, commit: true, t: [] },
    // The fence as a key that must not exist: add() then delete() of it
    // (a take-over writes it; the add then fails and aborts the
    // transaction), commit() right after the put.
    markerThenCommit: { marker: true, commit: true, t: [] },
  };
  let key = 0;
  for (let i = 0; i < n; i++) {
    for (const w of Object.values(ways)) {
      const t0 = performance.now();
      const tx = origTx.call(raw, rawScope, "readwrite", { durability: "strict" });
      let answered = 0;
      let free = 0;
      idleProbe.onmessage = () => { free ||= performance.now(); };
      idleProbe.postMessage(0);
      if (w.fence) {
        const check = tx.objectStore("meta").get(2);
        check.onsuccess = () => {
          answered = performance.now();
          if (check.result !== undefined) tx.abort();
          else if (w.commit) tx.commit();
        };
      }
      if (w.marker) {
        const meta = tx.objectStore("meta");
        meta.add(true, [2, 7]);
        meta.delete([2, 7]);
      }
      origPut.call(tx.objectStore("log"), rawValue(), key++);
      if (w.commit && !w.fence) tx.commit();
      await new Promise((res, rej) => { tx.oncomplete = res; tx.onabort = () => rej(tx.error); });
      const t1 = performance.now();
      w.t.push(t1 - t0);
      if (answered) (w.d ??= []).push([answered - t0, t1 - answered, free - t0]);
    }
  }
  raw.close();
  out.raw = {
    bytes,
    inBucket: rawBucket !== null,
    likeOutpost: !!globalThis.__rawLike,
    fill: globalThis.__rawFill ?? "zeros",
    p50: median(ways.auto.t),
    explicitCommitP50: median(ways.explicitCommit.t),
    withFenceCheckP50: median(ways.fenceAuto.t),
    fenceThenCommitP50: median(ways.fenceThenCommit.t),
    markerThenCommitP50: median(ways.markerThenCommit.t),
    // fence then commit(): from the transaction's creation to the check's
    // answer (commit() is called there), and from there to complete.
    fenceAnswered: median(ways.fenceThenCommit.d.map((x) => x[0])),
    commitToComplete: median(ways.fenceThenCommit.d.map((x) => x[1])),
    threadFree: median(ways.fenceThenCommit.d.map((x) => x[2])),
  };
  // The same serial writes and point reads with the engine on the page, in a
  // dedicated worker and in a SharedWorker (openInWorker; sync-worker.js):
  // what a call through postMessage adds. Each on its own database.
  const serial = async (db) => {
    for (let i = 0; i < 50; i++) await db.put(`warm/${i}`, doc);
    const put = [];
    const get = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await db.put(`q/${i}`, doc);
      const t1 = performance.now();
      await db.get(`q/${(i * 7) % (i + 1)}`);
      get.push(performance.now() - t1);
      put.push(t1 - t0);
    }
    await db.close();
    return { putP50: median(put), getP50: median(get) };
  };
  // Writes with idle time between them (an app's writes as a user clicks,
  // here 5 ms apart): each comes after the previous turn went idle.
  {
    const db = await Outpost.open("probe-spaced");
    for (let i = 0; i < 50; i++) await db.put(`warm/${i}`, doc);
    const put = [];
    const get = [];
    for (let i = 0; i < n; i++) {
      await new Promise((r) => setTimeout(r, 5));
      const t0 = performance.now();
      await db.put(`s/${i}`, doc);
      put.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 5));
      const t1 = performance.now();
      await db.get(`s/${(i * 7) % (i + 1)}`);
      get.push(performance.now() - t1);
    }
    const stats = db.__turnStats?.();
    await db.close();
    out.spaced = { putP50: median(put), getP50: median(get), turns: stats?.taken };
  }
  out.witness = witnessCost();
  out.reopen = await reopen(doc, 2000, 0);
  const workerUrl = new URL("./worker.js", location.href);
  out.paths = {
    page: await serial(await Outpost.open("probe-page")),
    worker: await serial(await openInWorker(new Worker(workerUrl, { type: "module" }), "probe-worker")),
    sharedWorker: await serial(await openInWorker(new SharedWorker(workerUrl, { type: "module" }).port, "probe-shared")),
  };
  return out;
};
