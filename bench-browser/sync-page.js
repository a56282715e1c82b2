// The page of the initial-sync benchmark (bundled by sync.mjs with esbuild).
// sync.mjs opens it in a fresh Chromium profile per engine and size and calls
// one of:
//
//   window.syncBench.outpost({ url, identity, credential, n, capMs, name, storage })
//     Outpost.open(name) on IndexedDB, then db.sync({ url, identity,
//     credential }); timed from the call until the status is "live" and
//     db.count() === n.
//     With storage: "memory", the same into Outpost's in-memory page store
//     (a diagnostic: the sync without IndexedDB).
//     With inWorker: true, the same with the engine in a dedicated worker
//     (sync-worker.js, openInWorker): the page only sends calls and receives
//     the status events (its IndexedDB and WebSocket probes see nothing; the
//     main-thread figures are the point).
//   window.syncBench.outpostLocal({ n, batch, capMs })
//     Diagnostic: the page writes the same documents itself with
//     db.transaction() of `batch` documents (no network).
//   window.syncBench.pouchdb({ remote, n, capMs, name, durability })
//     new PouchDB(name) (adapter idb), then PouchDB.replicate(remote, db) with
//     PouchDB's default options (batch_size 100, batches_limit 10); timed from
//     the call until "complete", then db.info().doc_count === n.
//
// Both record, over the timed interval only: main-thread long tasks
// (PerformanceObserver "longtask", buffered), the worst lateness of a 20 ms
// timer (a probe for the longest main-thread stall when no task reaches 50 ms),
// readwrite IndexedDB transactions (count, summed duration from creation to
// "complete", values put), WebSocket messages (count, bytes, time in the
// onmessage handler), and for Outpost the time spent holding the database's
// Web Lock (every storage step of the replication runs under it).
import PouchDB from "pouchdb-browser";
import { Outpost, initOutpost, openInWorker, destroyInWorker } from "../pkg-js/src/web.js";
import { idOf, makeDoc } from "./docs.js";

const now = () => performance.now();

// ------------------------------------------------------- IndexedDB probe ---
// Counts readwrite transactions and the time each one is open (created →
// complete). With `durability = "strict"`, a readwrite transaction opened
// without a durability (PouchDB has no option for it) is given "strict", like
// bench-browser/page.js does; Outpost always asks for "strict" itself.
const idb = { forceStrict: true, rw: 0, strict: 0, relaxed: 0, forced: 0, rwMs: 0, ro: 0, roMs: 0, puts: 0, putBytes: 0, on: false };
const origTransaction = IDBDatabase.prototype.transaction;
IDBDatabase.prototype.transaction = function (stores, mode, options) {
  if (mode === "readwrite" && idb.on) {
    let d = options && options.durability;
    if ((!d || d === "default") && idb.forceStrict) {
      idb.forced++;
      options = { ...(options || {}), durability: "strict" };
      d = "strict";
    }
    if (d === "strict") idb.strict++;
    else idb.relaxed++;
    idb.rw++;
    const t0 = now();
    const tx = options === undefined ? origTransaction.call(this, stores, mode) : origTransaction.call(this, stores, mode, options);
    const end = () => { idb.rwMs += now() - t0; };
    tx.addEventListener("complete", end);
    tx.addEventListener("abort", end);
    return tx;
  }
  if (idb.on) {
    // Read-only transactions (Outpost: the meta read of refresh() before
    // every step, page reads on cache misses; PouchDB: its reads).
    idb.ro++;
    const t0 = now();
    const tx = options === undefined ? origTransaction.call(this, stores, mode) : origTransaction.call(this, stores, mode, options);
    const end = () => { idb.roMs += now() - t0; };
    tx.addEventListener("complete", end);
    tx.addEventListener("abort", end);
    return tx;
  }
  return options === undefined ? origTransaction.call(this, stores, mode) : origTransaction.call(this, stores, mode, options);
};
const origPut = IDBObjectStore.prototype.put;
IDBObjectStore.prototype.put = function (value, key) {
  if (idb.on) {
    idb.puts++;
    if (value && typeof value.byteLength === "number") idb.putBytes += value.byteLength;
  }
  return arguments.length > 1 ? origPut.call(this, value, key) : origPut.call(this, value);
};

// ------------------------------------------------------- WebSocket probe ---
// Wraps the `onmessage` handler that the wasm client installs: counts the
// messages and bytes and times the handler (copy + frame decode + queueing;
// the storage step itself runs later, under the lock).
const ws = { on: false, msgs: 0, bytes: 0, handlerMs: 0, maxHandlerMs: 0, first: null, last: null };
{
  const desc = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage");
  Object.defineProperty(WebSocket.prototype, "onmessage", {
    configurable: true,
    enumerable: desc.enumerable,
    get() { return desc.get.call(this); },
    set(fn) {
      if (typeof fn !== "function") return desc.set.call(this, fn);
      desc.set.call(this, function (ev) {
        if (!ws.on) return fn.call(this, ev);
        const t = now();
        ws.msgs++;
        ws.bytes += ev.data?.byteLength ?? 0;
        if (ws.first === null) ws.first = t;
        ws.last = t;
        try {
          return fn.call(this, ev);
        } finally {
          const dt = now() - t;
          ws.handlerMs += dt;
          if (dt > ws.maxHandlerMs) ws.maxHandlerMs = dt;
        }
      });
    },
  });
}

// ------------------------------------------------------- Web Lock probe ---
// Outpost runs every operation (and every storage step of the replication)
// under navigator.locks.request("outpost:<name>", ...): the time from the
// grant to the callback's settlement is the time spent in storage steps
// (refresh, apply, commit to IndexedDB).
const locks = { on: false, n: 0, heldMs: 0, maxHeldMs: 0, waitMs: 0 };
if (globalThis.LockManager && navigator.locks) {
  const origRequest = LockManager.prototype.request;
  LockManager.prototype.request = function (name, ...rest) {
    const cb = rest[rest.length - 1];
    if (!locks.on || typeof cb !== "function" || !String(name).startsWith("outpost:")) {
      return origRequest.call(this, name, ...rest);
    }
    const asked = now();
    rest[rest.length - 1] = async (lock) => {
      const t = now();
      locks.waitMs += t - asked;
      try {
        return await cb(lock);
      } finally {
        const dt = now() - t;
        locks.n++;
        locks.heldMs += dt;
        if (dt > locks.maxHeldMs) locks.maxHeldMs = dt;
      }
    };
    return origRequest.call(this, name, ...rest);
  };
}

// ------------------------------------------------- main-thread probes ---
/** Starts the long-task observer and the timer probe; `stop()` returns what they saw in [t0, stop]. */
function mainThreadProbe() {
  const t0 = now();
  const tasks = [];
  const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) tasks.push(e); });
  obs.observe({ type: "longtask", buffered: true });
  const PERIOD = 20;
  let expected = now() + PERIOD;
  let maxLate = 0;
  const timer = setInterval(() => {
    const t = now();
    const late = t - expected;
    if (late > maxLate) maxLate = late;
    expected = t + PERIOD;
  }, PERIOD);
  return {
    async stop() {
      const t1 = now();
      clearInterval(timer);
      // Long-task entries are delivered asynchronously: let them arrive.
      await new Promise((r) => setTimeout(r, 200));
      for (const e of obs.takeRecords()) tasks.push(e);
      obs.disconnect();
      const mine = tasks.filter((e) => e.startTime >= t0 - 1 && e.startTime <= t1);
      const durations = mine.map((e) => e.duration).sort((a, b) => b - a);
      return {
        longTasks: durations.length,
        longestTaskMs: durations.length ? durations[0] : null,
        longTaskMsTotal: durations.reduce((a, b) => a + b, 0),
        top: durations.slice(0, 5),
        maxTimerLateMs: maxLate,
      };
    },
  };
}

function resetProbes() {
  Object.assign(idb, { rw: 0, strict: 0, relaxed: 0, forced: 0, rwMs: 0, ro: 0, roMs: 0, puts: 0, putBytes: 0, on: true });
  Object.assign(ws, { on: true, msgs: 0, bytes: 0, handlerMs: 0, maxHandlerMs: 0, first: null, last: null });
  Object.assign(locks, { on: true, n: 0, heldMs: 0, maxHeldMs: 0, waitMs: 0 });
}
function snapshotProbes(t0) {
  idb.on = ws.on = locks.on = false;
  return {
    idb: { ...idb },
    ws: { ...ws, first: ws.first === null ? null : ws.first - t0, last: ws.last === null ? null : ws.last - t0 },
    locks: { ...locks },
  };
}

async function usageBytes() {
  try { return (await navigator.storage.estimate()).usage ?? null; } catch { return null; }
}

// --------------------------------------------------------------- Outpost ---
async function outpost({ url, identity, credential, n, capMs, name = "sync-outpost", storage = "indexeddb", inWorker = false, subscribe = false }) {
  let db;
  if (inWorker) {
    // The engine in a dedicated worker (sync-worker.js): the same calls, answered there.
    const worker = new Worker(new URL("./sync-worker.js", location.href), { type: "module" });
    await destroyInWorker(worker, name).catch(() => {});
    db = await openInWorker(worker, name, { storage });
  } else {
    await initOutpost(new URL("./outpost_wasm_bg.wasm", location.href));
    await Outpost.destroy(name).catch(() => {});
    db = await Outpost.open(name, { storage });
  }
  const memory = storage === "memory";
  // With subscribe: a listener to every change, as an app showing the data has.
  let heard = 0;
  const unsubscribe = subscribe ? db.subscribe({}, (docs) => { heard += docs.length; }) : null;
  const statuses = [];
  let last = { state: "connecting" };
  let sync;
  resetProbes();
  const probe = mainThreadProbe();
  const t0 = now();
  let tLive = null;
  let capped = false;
  let error = null;
  await new Promise((resolve) => {
    const cap = setTimeout(() => { capped = true; resolve(); }, capMs);
    sync = db.sync({
      url, identity, credential,
      onStatus: (s) => {
        const t = now() - t0;
        last = s;
        // Keep the status timeline small: every state change, and "initial"
        // progress at most once per 10% (plus the first with documents).
        const prev = statuses[statuses.length - 1];
        if (!prev || prev.state !== s.state ||
            (s.state === "initial" && (prev.received === 0 || Math.floor((10 * s.received) / n) !== Math.floor((10 * prev.received) / n)))) {
          statuses.push({ t, ...s });
        }
        if (s.state === "live") { tLive = t; clearTimeout(cap); resolve(); }
        if (s.state === "error") { error = `${s.code}: ${s.message}`; clearTimeout(cap); resolve(); }
        // On 127.0.0.1 a disconnect is a failure of the run, not something to wait out.
        if (s.state === "offline" && tLive === null && !capped) { error = "went offline (the connection closed; see the hub's log)"; clearTimeout(cap); resolve(); }
      },
    });
  });
  // Live means the backlog is applied; count() confirms it (under the same lock).
  const count = await db.count();
  const tCount = now() - t0;
  // The listener may still be catching up: the timed interval ends when it
  // has heard every document (or at the cap).
  while (subscribe && heard < n && !capped && !error && now() - t0 < capMs) await new Promise((r) => setTimeout(r, 10));
  const tHeard = subscribe ? now() - t0 : null;
  const probes = snapshotProbes(t0);
  const main = await probe.stop();
  const received = last.state === "initial" ? last.received : count;
  await sync.stop();
  unsubscribe?.();
  const usage = await usageBytes();
  const stats = db.stats();
  await db.close();
  const ms = Math.max(tLive ?? 0, tCount, tHeard ?? 0);
  const docs = tLive !== null ? count : Math.min(received, count);
  return {
    engine: inWorker ? "outpost-worker" : memory ? "outpost-mem" : "outpost",
    label: inWorker ? "Outpost, engine in a worker" : memory ? "Outpost, memory store" : "Outpost",
    n, docs, ms, rate: (docs * 1000) / ms, capped, error,
    tLive, tCount, statuses, main, ...probes, usage, cache: stats.cache ?? null, heard: subscribe ? heard : null, tHeard,
    complete: !capped && !error && count === n,
  };
}

// ----------------------------------------------- Outpost local writes ---
// Diagnostic: the same documents written by the page itself with
// db.transaction(ops) of `batch` documents each (no network, no replication
// metadata): what one commit of that size costs on IndexedDB, and the longest
// main-thread task it makes. Document generation is not timed and runs in its
// own task.
async function outpostLocal({ n, batch, capMs, name = "local-outpost" }) {
  await initOutpost(new URL("./outpost_wasm_bg.wasm", location.href));
  await Outpost.destroy(name).catch(() => {});
  const db = await Outpost.open(name);
  resetProbes();
  const probe = mainThreadProbe();
  const t0 = now();
  let applyMs = 0;
  let i = 0;
  let capped = false;
  while (i < n) {
    const m = Math.min(batch, n - i);
    const ops = new Array(m);
    for (let k = 0; k < m; k++) ops[k] = { type: "put", id: idOf(i + k), doc: makeDoc(i + k) };
    await new Promise((r) => setTimeout(r, 0));
    const s = now();
    await db.transaction(ops);
    applyMs += now() - s;
    i += m;
    if (i < n && now() - t0 > capMs) { capped = true; break; }
  }
  const probes = snapshotProbes(t0);
  const main = await probe.stop();
  const count = await db.count();
  const usage = await usageBytes();
  await db.close();
  return {
    engine: "outpost-local", label: `Outpost, local transaction() of ${batch}`, batch, n, docs: i, ms: applyMs,
    rate: (i * 1000) / applyMs, capped, error: count === i ? null : `count ${count} != ${i}`, main, ...probes, usage,
    complete: !capped && count === n,
  };
}

// --------------------------------------------------------------- PouchDB ---
async function pouchdb({ remote, n, capMs, name = "sync-pouchdb", durability = "strict", subscribe = false }) {
  idb.forceStrict = durability === "strict";
  const db = new PouchDB(name, { adapter: "idb" });
  await db.info();
  // With subscribe: a live changes feed from now on (PouchDB's listener).
  let heard = 0;
  const feed = subscribe ? db.changes({ since: "now", live: true }).on("change", () => { heard++; }) : null;
  const progress = [];
  let written = 0;
  resetProbes();
  const probe = mainThreadProbe();
  const t0 = now();
  let capped = false;
  let error = null;
  let result = null;
  await new Promise((resolve) => {
    // PouchDB's defaults: batch_size 100, batches_limit 10, no live, no retry.
    const rep = PouchDB.replicate(remote, db);
    const cap = setTimeout(() => {
      capped = true;
      rep.cancel(); // "complete" follows; resolve anyway if it does not
      setTimeout(resolve, 30_000);
    }, capMs);
    rep.on("change", (info) => {
      const before = written;
      written = info.docs_written;
      if (Math.floor((10 * written) / n) !== Math.floor((10 * before) / n) || before === 0) {
        progress.push({ t: now() - t0, written });
      }
    });
    rep.on("complete", (info) => { result = info; clearTimeout(cap); resolve(); });
    rep.on("error", (e) => { error = String(e?.message ?? e); clearTimeout(cap); resolve(); });
  });
  const ms = now() - t0;
  const probes = snapshotProbes(t0);
  const main = await probe.stop();
  feed?.cancel();
  const info = await db.info();
  const usage = await usageBytes();
  await db.close();
  const docs = info.doc_count;
  return {
    engine: "pouchdb", label: "PouchDB", n, docs, ms, rate: (docs * 1000) / ms, capped, error,
    status: result?.status ?? null, docsRead: result?.docs_read ?? null, docsWritten: result?.docs_written ?? written,
    progress, main, ...probes, usage, heard: subscribe ? heard : null, complete: !capped && !error && docs === n,
  };
}

window.syncBench = {
  outpost,
  pouchdb,
  outpostLocal,
  info: () => ({ userAgent: navigator.userAgent, cores: navigator.hardwareConcurrency }),
};
