// The handwritten layer over the wasm-bindgen bindings, shared by the browser
// (web.js) and Node (node.js) entry points. It adds what is nicer in JS than
// in Rust: a real `OutpostError` class, `transaction(async (tx) => ...)`,
// `subscribe`, and safety with several tabs: on IndexedDB, where the Web Locks
// API exists, every operation of a handle runs under the lock
// "outpost:<name>" after `refresh()` picks up what other tabs committed (in
// turns, turns.js: one lock and one refresh for a run of operations), and a
// BroadcastChannel of the same name tells the other tabs about each commit.
// `db.sync()` runs the wasm replication client (`EdgeSync`, wasm/src/sync.rs)
// with its storage steps under the same lock, in one tab per database at a
// time (the others follow its status). On IndexedDB it keeps the storage
// witness (witness.js) and refuses to pass off a database the browser
// threw away as the old one (`storage_lost`). The rest is passed straight to
// the wasm `Outpost` class, whose generated .d.ts documents it. (scripts/run.sh
// and the sync e2e test serve every module of this directory as it is.)
// `subscribe`'s deliveries: subscribe.js. Indexes: the wrappers of the
// application's functions and live queries are in indexes.js; the engine
// steps them (wasm/src/index.rs). The engine in a worker, and one owner for
// several tabs: remote.js.

import { Turns } from "./turns.js";
import { IndexKeeper, liveQuery, prepareDefinition } from "./indexes.js";
import { OutpostError, addListener, notify } from "./base.js";
import { HUB_TAKE_GRACE_MS, HUB_TAKE_MS, HUB_TIMEOUT_MS, MAX_HUB_OPS, hubOp, hubResult, makeSync, splitSafety, syncOptions } from "./sync.js";
import { Subscribers } from "./subscribe.js";
import { Witness, checkStorage, witnessStorage } from "./witness.js";

export { OutpostError, addListener };

/**
 * Collects the writes of `db.transaction(async (tx) => ...)`; they are
 * committed together, atomically, when the callback's promise resolves.
 */
export class Transaction {
  #ops = [];
  #finished = false;

  #push(op) {
    if (this.#finished) {
      throw new OutpostError(
        "the transaction is finished: call tx.put/tx.delete before the callback returns",
        "transaction_finished",
      );
    }
    this.#ops.push(op);
    return this;
  }

  /** Adds a put (see `Outpost.put`). */
  put(id, doc, options = {}) {
    return this.#push({ ...options, type: "put", id, doc });
  }

  /** Adds a delete (see `Outpost.delete`). */
  delete(id, options = {}) {
    return this.#push({ ...options, type: "delete", id });
  }

  /** Number of operations collected so far. */
  get size() {
    return this.#ops.length;
  }

  /** @internal Ends collection and hands over the operations. */
  static finish(tx) {
    tx.#finished = true;
    return tx.#ops;
  }
}

/**
 * How long an idle turn keeps the cross-tab lock for the next operation
 * (turns.js). On a page the caller's next `await db.put()` comes within a
 * macrotask; in a worker it usually comes as a message from the page
 * (`serveOutpost`), after the answer's round trip, so the turn waits a few
 * milliseconds instead of giving the lock back (and refreshing) for every
 * call. Measured with bench-browser/write-probe.mjs (docs/benchmarks.md).
 */
const TURN_LINGER_MS = typeof globalThis.WorkerGlobalScope === "function" && globalThis instanceof globalThis.WorkerGlobalScope ? 3 : 0;

/**
 * Whether an idle turn keeps the cross-tab lock until another handle asks
 * for it (turns.js, `keep`): on a page, whose visibility says when the
 * browser may freeze it (a hidden page keeps nothing). A lone tab then takes
 * the lock and re-reads the meta record once, not once per burst of
 * operations. Not in a worker, which cannot see its page's visibility.
 */
const TURN_KEEP = typeof globalThis.document?.addEventListener === "function" && typeof globalThis.document.visibilityState === "string";

/** Whether `options` make `Outpost.open` use IndexedDB (mirrors the bindings' choice). */
function usesIndexedDb(options) {
  if (options == null || typeof options !== "object") options = {};
  if (options.store != null) return false;
  const hasIdb = globalThis.indexedDB != null;
  return (options.storage ?? (hasIdb ? "indexeddb" : "memory")) === "indexeddb";
}

/**
 * The page cache of a database on IndexedDB or OPFS when the app sets no
 * `cacheBytes`: 32 MiB per GiB of device memory the browser reports
 * (`navigator.deviceMemory`, which Chromium rounds and caps at 8), between
 * 32 and 256 MiB; 64 MiB where the browser does not say. Every page a read
 * misses is an IndexedDB round trip, and 100,000 documents of 1 KiB take
 * about 130 MiB of pages.
 */
export function defaultCacheBytes(deviceMemory = globalThis.navigator?.deviceMemory) {
  const gib = Number(deviceMemory);
  const mib = Number.isFinite(gib) && gib > 0 ? Math.min(256, Math.max(32, Math.round(gib * 32))) : 64;
  return mib * 1024 * 1024;
}

/** The Web Locks API where this scope has it (browsers, web workers), else undefined. */
function webLocks() {
  const locks = globalThis.navigator?.locks;
  return locks && typeof locks.request === "function" ? locks : undefined;
}

/** The highest etag among write results (`null` entries: nothing written). */
function maxEtag(results) {
  let max = 0;
  for (const r of results) if (r && r.etag > max) max = r.etag;
  return max;
}

/** What write results (or one) committed: `[last etag, [[id, etag], ...]]` (etag 0: nothing). */
function writtenByResults(r) {
  const list = (Array.isArray(r) ? r : [r]).filter((x) => x && x.etag > 0);
  return [maxEtag(list), list.map((x) => [x.id, x.etag])];
}


/**
 * Builds the public API over a wasm-bindgen module.
 * @param {object} wasm the generated bindings (web or nodejs target)
 * @param {() => Promise<void>} ready resolves once the module is instantiated
 */
export function makeApi(wasm, ready) {
  let registered = false;
  const init = async () => {
    await ready();
    if (!registered) {
      wasm.__setErrorClass(OutpostError);
      registered = true;
    }
  };
  const internal = Symbol("outpost internal");

  const Sync = makeSync(wasm, internal);


  /** Options of `Outpost.open` handled here, not by the bindings. */
  const JS_OPEN_OPTIONS = new Set(["onStorageLost"]);
  /** Every option of `Outpost.open` (the bindings' and this layer's). */
  const OPEN_OPTIONS = ["store", "storage", "persist", "cacheBytes", "durability", ...JS_OPEN_OPTIONS];

  class Outpost {
    #db;
    /** The storage witness (IndexedDB with localStorage), else undefined. */
    #witness;
    /** The facts of a storage loss found (and recovered from) by this open, else null. */
    #storageLost = null;
    #listeners = { "storage-lost": new Set() };
    /** Web Locks of this scope when the database is shared with other tabs (IndexedDB), else undefined. */
    #locks;
    #lockName;
    /** Operations in turns under the lock (turns.js), when `#locks`. */
    #turns;
    /** BroadcastChannel to the other tabs' handles on the same database, or undefined. */
    #channel;
    /** Indexes computed at the hub (`hubComputed`): name → output collection. */
    #hubComputed = new Map();
    /** Background maintenance of the indexes defined on this handle (from the first `defineIndex`). */
    #keeper;
    /** The callbacks of `subscribe` and what they have been fed (subscribe.js). */
    #subscribers = new Subscribers(
      (since, limit) => this.#run((db) => db.changes({ since, limit })),
      () => Number(this.#db.stats().last_etag ?? 0),
    );
    #closed = false;
    /** The replication started by `sync()`, until stopped. */
    #sync;
    /** Whether an `enroll()` session runs. */
    #enrolling = false;
    /** The last local etag the hub acknowledged (this handle's replication). */
    #acked = 0;
    /** Writers waiting for the hub (write safety "replicated"). */
    #ackWaiters = new Set();
    /** Writes with safety "hub" forwarded to the tab that replicates, by request id. */
    #hubCalls = new Map();

    /** Use `Outpost.open`. */
    constructor(raw, shared) {
      if (!(raw instanceof wasm.Outpost) || shared?.[internal] !== true) {
        throw new OutpostError("use Outpost.open(name, options)", "invalid_argument");
      }
      this.#db = raw;
      this.#witness = shared.witness;
      this.#storageLost = shared.storageLost ?? null;
      this.#locks = shared.locks;
      this.#lockName = shared.lockName;
      this.#turns = shared.turns;
      this.#turns?.refreshWith(async (stolen) => {
        // The lock was taken by force from a holder that did not answer:
        // fence its commits out before reading the state (turns.js).
        if (stolen) await this.#db.takeOver();
        if (await this.#db.refresh()) this.#subscribers.schedule();
      });
      if (shared.locks && typeof globalThis.BroadcastChannel === "function") {
        this.#channel = new BroadcastChannel(shared.lockName);
        this.#channel.onmessage = (e) => {
          if (e.data?.etag > 0) {
            this.#subscribers.schedule();
            this.#keeper?.poke();
          }
          // The tab that replicates tells the others what the hub
          // acknowledged (and refused): their "replicated" writes wait on it.
          if (e.data?.acked > this.#acked) {
            this.#acked = e.data.acked;
            this.#ackWake();
          } else if (e.data?.refused) {
            this.#ackWake();
          }
          if (e.data?.hubTaken || e.data?.hubAnswer) this.#hubForwarded(e.data);
          Sync.message(this.#sync, e.data);
        };
      }
    }

    /**
     * Opens (or creates) a database. On IndexedDB, where the Web Locks API
     * exists, every operation runs under the cross-tab lock "outpost:<name>".
     */
    static async open(name, options) {
      await init();
      let onStorageLost;
      let rawOptions = options;
      if (options != null && typeof options === "object") {
        for (const key of Object.keys(options)) {
          if (!OPEN_OPTIONS.includes(key)) {
            throw new OutpostError(`open: unknown option ${JSON.stringify(key)} (known options: ${OPEN_OPTIONS.join(", ")})`, "invalid_options");
          }
        }
      }
      if (options != null && typeof options === "object" && Object.keys(options).some((k) => JS_OPEN_OPTIONS.has(k))) {
        ({ onStorageLost, ...rawOptions } = options);
        if (onStorageLost !== undefined && typeof onStorageLost !== "function") {
          throw new OutpostError("open: option onStorageLost must be a function", "invalid_options");
        }
      }
      const idb = usesIndexedDb(options);
      // OPFS (a dedicated worker) gets the same default page cache: a miss
      // is a synchronous read there, but still a read (bench-browser, OPFS).
      const opfs = options != null && typeof options === "object" && options.store == null && options.storage === "opfs";
      if ((idb || opfs) && (rawOptions == null || (typeof rawOptions === "object" && rawOptions.cacheBytes === undefined))) {
        rawOptions = { ...(rawOptions ?? {}), cacheBytes: defaultCacheBytes() };
      }
      const locks = idb ? webLocks() : undefined;
      const lockName = `outpost:${name}`;
      const storage = idb ? witnessStorage() : undefined;
      const witness = storage ? new Witness(storage, name) : undefined;
      const open = async () => {
        const raw = await wasm.Outpost.open(name, rawOptions);
        if (turns?.stolen) await raw.takeOver();
        // Inside the lock: no other tab writes between the check and the witness update.
        const storageLost = await checkStorage(name, raw, witness, onStorageLost !== undefined);
        return { raw, storageLost };
      };
      // The open is the first turn of the handle's queue: an operation the
      // app calls as soon as the open resolves runs in the same turn (no
      // second lock request, no refresh right after the open read the meta
      // record).
      const turns = locks ? new Turns(locks, lockName, undefined, { lingerMs: TURN_LINGER_MS, keep: TURN_KEEP }) : undefined;
      const { raw, storageLost } = turns ? await turns.run(open) : await open();
      const db = new Outpost(raw, { [internal]: true, locks, lockName, turns, witness, storageLost });
      if (storageLost) notify(onStorageLost, storageLost, "storage-lost");
      return db;
    }

    /**
     * Deletes the IndexedDB database `name` (close every handle on it first).
     * Does nothing where there is no IndexedDB.
     */
    static async destroy(name) {
      await init();
      await wasm.Outpost.destroy(name);
      // Deleted on purpose: the next open of `name` is a new database, not a loss.
      const storage = witnessStorage();
      if (storage) new Witness(storage, name).remove();
    }

    /**
     * The facts of a storage loss this open found and recovered from (the
     * same object `onStorageLost` received), or null. See `storage_lost`.
     */
    get storageLost() {
      return this.#storageLost;
    }

    /**
     * Listens to `"storage-lost"`: called at once (in a microtask) if this
     * open recovered from a loss. Returns a function that removes the listener.
     */
    on(event, listener) {
      const remove = addListener(this.#listeners, event, listener, "on");
      if (event === "storage-lost" && this.#storageLost) {
        const info = this.#storageLost;
        queueMicrotask(() => {
          if (this.#listeners[event].has(listener)) notify(listener, info, "storage-lost");
        });
      }
      return remove;
    }

    /**
     * Counters of the cross-tab lock (turns.js), for tests and diagnostics:
     * turns taken, pings sent to a holder while waiting for the lock, locks
     * taken by force from a tab that did not answer, and
     * operations refused by such a take-over and run again. Null when the
     * database is not shared through Web Locks.
     */
    __turnStats() {
      const t = this.#turns;
      return t ? { taken: t.taken, pings: t.pings, steals: t.steals, fenced: t.fenced } : null;
    }

    /** The name the database was opened with. */
    get name() {
      return this.#db.name;
    }

    /** The id of this database (its identity in change vectors). */
    get dbId() {
      return this.#db.dbId;
    }

    /**
     * Runs `op` on the raw handle: under the cross-tab lock, after picking up
     * what other tabs committed, when the database is shared (in turns: one
     * lock acquisition and one refresh serve a run of operations, turns.js);
     * directly otherwise.
     */
    #run(op) {
      if (!this.#turns) return op(this.#db);
      return this.#turns.run(() => op(this.#db));
    }

    /**
     * Runs a write under the lock and records it in the storage witness before
     * releasing the lock: the new last etag and, for local writes, the ids the
     * hub has not acknowledged yet. `written(r)`: `[etag, [[id, etag], ...]]`
     * of the write's answer `r` (default: from its write results, or one).
     */
    #runWrite(op, written = writtenByResults) {
      return this.#run(async (db) => {
        const r = await op(db);
        if (this.#witness) {
          const [etag, ids] = written(r);
          if (etag > 0) this.#witness.committed(db.dbId, etag, ids);
        }
        return r;
      });
    }

    /**
     * After a commit: tell the other tabs and feed this handle's subscribers;
     * a local write (not `remote`, i.e. not received by replication) also
     * wakes the replication so it pushes the change.
     */
    #written(etag, remote = false) {
      if (!(etag > 0)) return;
      this.#notify(etag, remote);
      if (!remote) Sync.localChanged(this.#sync);
      this.#subscribers.schedule();
      this.#keeper?.poke();
    }

    /** The commit notice not yet posted: `{ etag, remote }`, or null. */
    #notice = null;

    /**
     * Tells the other tabs of a commit, in a task of its own after the write
     * resolved: a BroadcastChannel post cost a serial write 0.18 ms in
     * Chromium, and the writer's next write usually runs while the post
     * waits for IndexedDB. Commits before the post share it: the newest
     * etag, `remote` only if every one was received from the hub (their
     * receivers refresh, and push local changes, either way).
     */
    #notify(etag, remote) {
      if (this.#notice) {
        this.#notice.etag = Math.max(this.#notice.etag, etag);
        this.#notice.remote &&= remote;
        return;
      }
      this.#notice = { etag, remote };
      setTimeout(() => this.#postNotice(), 0);
    }

    /** Posts the commit notice, if one waits. */
    #postNotice() {
      const notice = this.#notice;
      this.#notice = null;
      if (notice) this.#post(notice);
    }

    /** Posts a message to the other tabs' handles on this database. */
    #post(message) {
      if (this.#channel && !this.#closed) {
        try {
          this.#channel.postMessage(message);
        } catch {
          // The channel was closed meanwhile: nobody to tell.
        }
      }
    }

    /**
     * Calls `callback` with the documents (tombstones included, marked with
     * `@metadata["@deleted"]`) changed after this call by this handle or, on
     * IndexedDB, by other tabs, in etag order, filtered by id `prefix` or
     * `collection`. Returns a function that unsubscribes.
     */
    subscribe(filter, callback) {
      return this.#subscribers.add(filter, callback);
    }

    async put(id, doc, options) {
      const [opts, safety] = splitSafety(options);
      if (safety?.safety === "hub") {
        const op = { type: "put", id, doc, expect: safety.expect };
        if (opts.collection !== undefined) op.collection = opts.collection;
        return (await this.#atHub([op], safety.timeoutMs))[0];
      }
      const r = await this.#runWrite((db) => db.put(id, doc, opts));
      this.#written(r?.etag);
      return safety ? this.#replicated(r, safety.timeoutMs) : r;
    }

    /**
     * Write safety "hub" for several documents (see index.d.ts): the hub
     * applies them alone, all or nothing, if every expectation holds there.
     */
    async writeAtHub(ops, options) {
      const { timeoutMs = HUB_TIMEOUT_MS, ...rest } = options ?? {};
      for (const key of Object.keys(rest)) {
        throw new OutpostError(`writeAtHub: unknown option ${JSON.stringify(key)} (known options: timeoutMs)`, "invalid_options");
      }
      if (typeof timeoutMs !== "number" || !(timeoutMs >= 0) || !Number.isFinite(timeoutMs)) {
        throw new OutpostError(`timeoutMs is a number of milliseconds, not ${JSON.stringify(timeoutMs)}`, "invalid_argument");
      }
      return this.#atHub(ops, timeoutMs);
    }

    /**
     * Sends a write with safety "hub" through the session of the tab that
     * replicates (this one, or another one over the channel); nothing is
     * written locally (the new versions arrive by the pull, before an
     * applied write resolves).
     */
    async #atHub(ops, timeoutMs) {
      if (this.#closed) throw new OutpostError("the database is closed", "closed");
      if (!Array.isArray(ops) || ops.length === 0 || ops.length > MAX_HUB_OPS) {
        throw new OutpostError(`writeAtHub expects an array of 1 to ${MAX_HUB_OPS} operations`, "invalid_argument");
      }
      const wire = ops.map(hubOp);
      const late = () =>
        new OutpostError(
          `no answer from the hub within ${timeoutMs} ms: it may have applied the write (it then replicates here like any write)`,
          "timeout",
        );
      const sent = this.#hubSend(wire);
      if (timeoutMs === 0) {
        // Only an outcome known already (offline, refused here) counts: an
        // answer from the hub never comes within 0 ms (a timer of 0 ms could
        // lose a race against a fast loopback answer).
        const none = Symbol("no answer");
        const outcome = await Promise.race([sent, Promise.resolve(none)]);
        if (outcome === none) {
          sent.catch(() => {});
          throw late();
        }
        return hubResult(wire, outcome);
      }
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(late()), timeoutMs);
      });
      try {
        const outcome = await Promise.race([sent, timeout]);
        return hubResult(wire, outcome);
      } finally {
        clearTimeout(timer);
      }
    }

    /** The outcome object of a write with safety "hub" (see `#atHub`). */
    #hubSend(wire) {
      const mine = Sync.hubWrite(this.#sync, wire);
      if (mine) return mine;
      if (!this.#channel) {
        return Promise.resolve({ code: "offline", reason: "no replication runs (db.sync())" });
      }
      const req = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
      return new Promise((resolve) => {
        const call = { resolve, taken: false };
        call.timer = setTimeout(() => {
          if (call.taken) return;
          this.#hubCalls.delete(req);
          resolve({ code: "offline", reason: "no tab replicates this database (db.sync())" });
        }, HUB_TAKE_MS + HUB_TAKE_GRACE_MS);
        this.#hubCalls.set(req, call);
        this.#post({ hubWrite: { req, ops: wire, sent: Date.now() } });
      });
    }

    /** The tab that replicates took, or answered, a write this tab forwarded. */
    #hubForwarded(data) {
      if (data.hubTaken) {
        const call = this.#hubCalls.get(data.hubTaken);
        if (call) call.taken = true;
        return;
      }
      const { req, outcome } = data.hubAnswer;
      const call = this.#hubCalls.get(req);
      if (!call) return;
      this.#hubCalls.delete(req);
      clearTimeout(call.timer);
      call.resolve(outcome);
    }

    /**
     * Write safety "replicated": resolves to `r` once the hub acknowledged
     * the write (a push of this handle's replication acknowledged up to its
     * etag); rejects with "rejected" when the hub refused it and with
     * "not_replicated" after `timeoutMs`. Either way the write is stored
     * here and (unless refused) replicates later.
     */
    async #replicated(r, timeoutMs) {
      if (!r) return r;
      const deadline = Date.now() + timeoutMs;
      const refusal = async () =>
        (await this.rejections()).find((x) => x.id.toLowerCase() === r.id.toLowerCase() && x.changeVector === r.changeVector);
      for (;;) {
        const rej = await refusal();
        if (rej) {
          const e = new OutpostError(`${r.id}: stored locally, but the hub refused it (${rej.code}): ${rej.message}`, "rejected");
          e.rejection = rej;
          throw e;
        }
        if (this.#acked >= r.etag) return r;
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new OutpostError(
            `${r.id}: stored locally; the hub has not acknowledged it within ${timeoutMs} ms (it will replicate when the hub is reachable)`,
            "not_replicated",
          );
        }
        await new Promise((resolve) => {
          const done = () => {
            clearTimeout(timer);
            this.#ackWaiters.delete(done);
            resolve();
          };
          const timer = setTimeout(done, left);
          this.#ackWaiters.add(done);
        });
      }
    }

    /** Wakes the writers waiting for the hub (an acknowledgement or a refusal came). */
    #ackWake() {
      for (const w of [...this.#ackWaiters]) w();
    }

    get(id) {
      return this.#run((db) => db.get(id));
    }

    async delete(id, options) {
      const [opts, safety] = splitSafety(options);
      if (safety?.safety === "hub") {
        if (opts.collection !== undefined) {
          throw new OutpostError('delete: unknown option "collection"', "invalid_options");
        }
        return (await this.#atHub([{ type: "delete", id, expect: safety.expect }], safety.timeoutMs))[0];
      }
      const r = await this.#runWrite((db) => db.delete(id, opts));
      this.#written(r?.etag);
      return safety ? this.#replicated(r, safety.timeoutMs) : r;
    }

    /**
     * Commits several writes atomically. Takes either an array of operations
     * or an (async) callback that adds them to a `Transaction`; if the callback
     * throws, nothing is written. Resolves to one result per operation.
     */
    async transaction(opsOrCallback, options) {
      let ops = opsOrCallback;
      if (typeof opsOrCallback === "function") {
        // The callback runs outside the cross-tab lock; only the commit takes it.
        const tx = new Transaction();
        try {
          await opsOrCallback(tx);
        } finally {
          ops = Transaction.finish(tx);
        }
        if (ops.length === 0) return options?.results === false ? { written: 0, etag: 0 } : [];
      }
      if (options?.results === false) {
        // No result per document: the storage witness lists the ids with the commit's etag (one commit: all or none).
        const r = await this.#runWrite((db) => db.transaction(ops, options), (r) => [r.etag, ops.map((op) => [op?.id, r.etag])]);
        this.#written(r.etag);
        return r;
      }
      const results = await this.#runWrite((db) => db.transaction(ops, options));
      if (Array.isArray(results)) this.#written(maxEtag(results));
      return results;
    }

    scan(options) {
      return this.#run((db) => db.scan(options));
    }

    changes(options) {
      return this.#run((db) => db.changes(options));
    }

    count() {
      return this.#run((db) => db.count());
    }

    collections() {
      return this.#run((db) => db.collections());
    }

    /** Registers an index's functions on this handle and stores its definition (see index.d.ts). */
    async defineIndex(def) {
      const [stored, map, reduce] = prepareDefinition(def, (m, c) => new OutpostError(m, c));
      if (stored.hubComputed) {
        // Computed at the hub: its results arrive as documents of the output collection.
        this.#hubComputed.set(stored.name, stored.output);
        return;
      }
      await this.#run((db) => db.__defineIndex(stored, map, reduce));
      this.#keeper ??= new IndexKeeper(() => this.updateIndexes(), { locks: this.#locks, lockName: this.#lockName && `${this.#lockName}:indexes` });
      this.#keeper.poke();
    }

    /** Throws `no_index` for an index computed at the hub (its results are documents here). */
    #notHubComputed(name) {
      const output = this.#hubComputed.get(name);
      if (output !== undefined) {
        throw new OutpostError(
          `index ${JSON.stringify(name)} is computed at the hub: its results are the documents of collection ${JSON.stringify(output)}, replicated here read-only (read them with get or scan)`,
          "no_index",
        );
      }
    }

    /**
     * Rows of an index (see index.d.ts). Catching up may write output
     * documents: other tabs and subscribers hear of them like of any commit.
     */
    async query(name, options) {
      this.#notHubComputed(name);
      return this.#indexRun((db) => db.query(name, options ?? {}));
    }

    /** Number of rows of an index in a key range. */
    async queryCount(name, options) {
      this.#notHubComputed(name);
      return this.#indexRun((db) => db.queryCount(name, options ?? {}));
    }

    /** Calls `callback` with the query's result now and whenever its rows change. */
    liveQuery(name, options, callback) {
      if (typeof callback !== "function") throw new OutpostError("liveQuery expects a callback function", "invalid_argument");
      return liveQuery((onChange) => this.subscribe({}, onChange), () => this.query(name, options), callback);
    }

    /**
     * Steps every index registered on this handle until it reflects every
     * write, one turn per step (other operations run between steps; a step
     * ends early when operations queue behind it, or another tab wants the
     * database).
     */
    async updateIndexes() {
      let mapped = 0;
      let error;
      const othersWait = () => this.#turns?.waiting ?? false;
      for (;;) {
        const r = await this.#indexRun((db) => db.__stepIndexes(othersWait));
        mapped += r.mapped;
        // An index whose function throws stops itself only: the others catch up, then this rejects.
        error ??= r.error;
        if (r.done) break;
      }
      if (error) throw error;
      return mapped;
    }

    /** Removes an index and its entries (output documents stay). */
    dropIndex(name) {
      return this.#run((db) => db.dropIndex(name));
    }

    /** Every defined index with how far it is. */
    indexes() {
      return this.#run((db) => db.indexes());
    }

    /** Runs an index operation; if its steps committed, tells the other tabs and the subscribers. */
    #indexRun(op) {
      return this.#run(async (db) => {
        const before = Number(db.stats().last_etag ?? 0);
        const r = await op(db);
        const after = Number(db.stats().last_etag ?? 0);
        if (after > before) this.#written(after, true);
        return r;
      });
    }

    /** Conflicted documents with all their versions (see index.d.ts). */
    conflicts(options) {
      return this.#run((db) => db.conflicts(options));
    }

    /** Ends a conflict by writing the version to keep (`null`: delete). */
    async resolve(id, body, options) {
      const r = await this.#runWrite((db) => db.resolve(id, body, options));
      this.#written(r?.etag);
      return r;
    }

    /** The changes the hub refused during replication, as recorded here. */
    rejections() {
      return this.#run((db) => db.rejections());
    }

    /**
     * Starts replicating with a hub; returns the `Sync` controller. Throws
     * `OutpostError` "invalid_options", "already_syncing" (call `stop()` on
     * the running one first), "unsupported" (no WebSocket here), "closed".
     */
    sync(options) {
      const opts = this.#startSync(options, "sync");
      const sync = new Sync(internal, this.#syncHost(), opts);
      if (options.onStatus) sync.on("status", options.onStatus);
      if (options.onRejection) sync.on("rejection", options.onRejection);
      if (options.onGrant) sync.on("grant", options.onGrant);
      if (options.onPurge) sync.on("purge", options.onPurge);
      this.#sync = sync;
      return sync;
    }

    /** The checks and the witness record common to `sync` and `enroll`; the checked options. */
    #startSync(options, what) {
      if (this.#closed) throw new OutpostError("the database is closed", "closed");
      if ((this.#sync && !this.#sync.stopped) || this.#enrolling) {
        throw new OutpostError("this database is already syncing or enrolling: stop() that sync (or await enroll) first", "already_syncing");
      }
      const opts = syncOptions(options, what);
      if (typeof globalThis.WebSocket !== "function") {
        throw new OutpostError(`${what} needs a WebSocket implementation (browsers, web workers, Node 22+)`, "unsupported");
      }
      this.#witness?.syncing(this.#db.dbId, { url: opts.url, identity: opts.identity, database: opts.database });
      return opts;
    }

    /**
     * Enrolls this browser's key for `identity` with the hub: makes the
     * key if there is none (ECDSA P-256, non-extractable, kept in
     * IndexedDB), opens a session that redeems the one-time enrollment
     * `code` for it, and resolves with the identity (`enrolled: true`)
     * once the hub accepted it; then `sync({ url, identity })` uses the key.
     * Rejects with an `OutpostError` whose code is the hub's
     * (`"unauthorized"`: unknown identity, wrong, used or expired code;
     * `"revoked"`; ...) or `"unreachable"` (no session could be opened).
     */
    enroll(options) {
      let opts;
      try {
        opts = this.#startSync(options, "enroll");
      } catch (e) {
        return Promise.reject(e);
      }
      const host = this.#syncHost();
      this.#enrolling = true;
      return new Promise((resolve, reject) => {
        let edge;
        let settled = false;
        let offline;
        const finish = (error, info) => {
          if (settled) return;
          settled = true;
          clearTimeout(offline);
          const e = edge;
          edge = undefined;
          Promise.resolve(e?.stop())
            .catch(() => {})
            .finally(() => {
              e?.free?.();
              this.#enrolling = false;
              if (error) reject(error);
              else resolve(info);
            });
        };
        const event = (type, value) => {
          if (type === "enrolled") finish(null, value);
          else if (type === "pushed") host.pushed(value?.upto);
          else if (type === "closed") finish(new OutpostError(`enroll: the session ended: ${value.message}`, value.code));
          else if (type === "status" && value.state === "error") finish(new OutpostError(`enroll: ${value.message}`, value.code));
          else if (type === "status" && value.state === "offline") {
            // A "closed" event with the hub's reason may follow at once.
            offline ??= setTimeout(() => finish(new OutpostError(`enroll: could not reach the hub at ${opts.url}`, "unreachable")), 0);
          }
        };
        try {
          edge = new wasm.EdgeSync(host.raw, opts, { exclusive: host.exclusive, event });
        } catch (e) {
          settled = true;
          this.#enrolling = false;
          reject(e);
        }
      });
    }

    /**
     * This browser's key of `identity` (made if there is none yet):
     * `{ identity, publicKey, fingerprint, enrolled }`. `publicKey` is what
     * the hub's operator registers (`outpost-hub edge add NAME --pubkey
     * ...`) when not using an enrollment code.
     */
    async identity(identity) {
      if (typeof identity !== "string" || identity === "") {
        throw new OutpostError("identity expects an identity name (a non-empty string)", "invalid_argument");
      }
      return wasm.__edgeIdentity(this.name, identity, true);
    }

    /** What a replication of this handle needs of it (`Sync`'s host). */
    #syncHost() {
      const raw = this.#db;
      return {
        raw,
        name: this.name,
        locks: this.#locks,
        // A storage step of the replication: under the lock after a
        // refresh, like every operation; `fn` resolves to the new last
        // etag when it committed documents.
        exclusive: (fn) =>
          this.#run(async (db) => {
            const etag = await fn();
            // Received from the hub: the witness only moves its last etag.
            if (etag > 0) this.#witness?.committed(db.dbId, etag);
            return etag;
          }).then((etag) => {
            if (etag > 0) this.#written(etag, true);
          }),
        // The hub acknowledged local writes up to `upto` (under the lock, like every witness update).
        pushed: (upto) => {
          if (upto > this.#acked) {
            this.#acked = upto;
            this.#ackWake();
            this.#post({ acked: upto });
          }
          if (!this.#witness || !(upto > 0)) return;
          const dbId = raw.dbId;
          const record = () => this.#witness.acked(dbId, upto);
          Promise.resolve(this.#run(record)).catch(() => {});
        },
        post: (message) => this.#post(message),
        rejections: () => this.rejections(),
        refused: () => {
          this.#ackWake();
          this.#post({ refused: true });
        },
      };
    }

    /**
     * Counters of the database and its page cache, as this handle last saw
     * them (synchronous: it takes no lock; on a database shared with other
     * tabs, `await db.count()` first to include their latest commits).
     */
    stats() {
      return this.#db.stats();
    }

    /** Stops replication, waits for pending writes, closes the page store and the channel to other tabs. */
    async close() {
      if (this.#sync) {
        const sync = this.#sync;
        this.#sync = undefined;
        await sync.stop().catch(() => {});
      }
      this.#postNotice();
      this.#closed = true;
      // A background step under way ends with its turn; no other starts.
      this.#keeper?.stop();
      this.#subscribers.close();
      if (this.#channel) {
        this.#channel.onmessage = null;
        this.#channel.close();
        this.#channel = undefined;
      }
      try {
        return await this.#run(() => this.#db.close());
      } finally {
        this.#turns?.close();
      }
    }
  }

  return { Outpost, OutpostError, Transaction, Sync };
}
