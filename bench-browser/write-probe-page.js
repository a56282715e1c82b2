// The page of write-probe.mjs: where the time of one Outpost write on
// IndexedDB goes. Wraps IDBDatabase.transaction to time each readwrite
// transaction from its creation to its `complete` event, counts the
// requests, and compares with one raw `put` of the same size into a
// database of the same shape (three object stores, strict).
import { Outpost, initOutpost, openInWorker } from "../pkg-js/src/web.js";

const marks = [];
const calls = {};
const origTx = IDBDatabase.prototype.transaction;
IDBDatabase.prototype.transaction = function (...a) {
  const tx = origTx.apply(this, a);
  const k = `${a[1] ?? "readonly"} ${a[2]?.durability ?? ""}`.trim();
  calls[k] = (calls[k] || 0) + 1;
  if (a[1] === "readwrite") {
    const m = { created: performance.now() };
    marks.push(m);
    tx.addEventListener("complete", () => { m.complete = performance.now(); });
  }
  return tx;
};
const origPut = IDBObjectStore.prototype.put;
IDBObjectStore.prototype.put = function (...a) {
  calls.puts = (calls.puts || 0) + 1;
  calls.putBytes = (calls.putBytes || 0) + (a[0]?.byteLength ?? 0);
  return origPut.apply(this, a);
};

const median = (v) => v.slice().sort((a, b) => a - b)[v.length >> 1];

window.probe = async (n) => {
  await initOutpost(new URL("./outpost_wasm_bg.wasm", location.href));
  const doc = { pad: "x".repeat(1000), n: 1 };
  const out = {};
  const db = await Outpost.open("probe");
  for (let i = 0; i < 50; i++) await db.put(`warm/${i}`, doc);
  for (const k of Object.keys(calls)) delete calls[k];
  const split = [];
  const total = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const before = marks.length;
    await db.put(`p/${i}`, doc);
    const t1 = performance.now();
    total.push(t1 - t0);
    const m = marks[before];
    if (m?.complete) split.push([m.created - t0, m.complete - m.created, t1 - m.complete]);
  }
  await db.close();
  out.outpost = {
    p50: median(total),
    callToTx: median(split.map((x) => x[0])),
    txToComplete: median(split.map((x) => x[1])),
    completeToResolved: median(split.map((x) => x[2])),
    perWrite: Object.fromEntries(Object.entries(calls).map(([k, v]) => [k, +(v / n).toFixed(2)])),
  };
  const bytes = Math.round((calls.putBytes || 0) / Math.max(1, calls.puts || 1));
  // Raw: one put of the same mean size, same three object stores, strict.
  const raw = await new Promise((res, rej) => {
    const o = indexedDB.open("probe-raw", 1);
    o.onupgradeneeded = () => { for (const s of ["pages", "meta", "log"]) o.result.createObjectStore(s); };
    o.onsuccess = () => res(o.result);
    o.onerror = () => rej(o.error);
  });
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const tx = origTx.call(raw, ["pages", "meta", "log"], "readwrite", { durability: "strict" });
    origPut.call(tx.objectStore("log"), new Uint8Array(bytes), i);
    await new Promise((res, rej) => { tx.oncomplete = res; tx.onabort = () => rej(tx.error); });
    times.push(performance.now() - t0);
  }
  raw.close();
  out.raw = { bytes, p50: median(times) };
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
  const workerUrl = new URL("./worker.js", location.href);
  out.paths = {
    page: await serial(await Outpost.open("probe-page")),
    worker: await serial(await openInWorker(new Worker(workerUrl, { type: "module" }), "probe-worker")),
    sharedWorker: await serial(await openInWorker(new SharedWorker(workerUrl, { type: "module" }).port, "probe-shared")),
  };
  return out;
};
