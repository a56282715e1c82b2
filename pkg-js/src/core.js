// The handwritten layer over the wasm-bindgen bindings, shared by the browser
// (web.js) and Node (node.js) entry points. It adds what is nicer in JS than
// in Rust: a real `OutpostError` class, `transaction(async (tx) => ...)`,
// `subscribe`, and safety with several tabs: on IndexedDB, where the Web Locks
// API exists, every operation of a handle runs under the lock
// "outpost:<name>" after `refresh()` picks up what other tabs committed, and a
// BroadcastChannel of the same name tells the other tabs about each commit.
// The rest is passed straight to the wasm `Outpost` class, whose generated
// .d.ts documents it.

/**
 * The error every Outpost operation rejects with. Branch on `code`, which is
 * stable: "invalid_id", "invalid_json", "invalid_collection", "too_large",
 * "invalid_argument", "invalid_change_vector", "concurrency_conflict",
 * "corrupt", "closed", "poisoned", "quota_exceeded", "invalid_options",
 * "transaction_finished", "other", ...
 */
export class OutpostError extends Error {
  /**
   * @param {string} message
   * @param {string} code
   */
  constructor(message, code) {
    super(message);
    this.name = "OutpostError";
    /** @type {string} */
    this.code = code;
  }
}

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

/** Versions read per `changes` call when feeding subscribers. */
const CHANGES_PAGE = 256;

/** Whether `options` make `Outpost.open` use IndexedDB (mirrors the bindings' choice). */
function usesIndexedDb(options) {
  if (options == null || typeof options !== "object") options = {};
  if (options.store != null) return false;
  const hasIdb = globalThis.indexedDB != null;
  return (options.storage ?? (hasIdb ? "indexeddb" : "memory")) === "indexeddb";
}

/** The Web Locks API where this scope has it (browsers, web workers), else undefined. */
function webLocks() {
  const locks = globalThis.navigator?.locks;
  return locks && typeof locks.request === "function" ? locks : undefined;
}

/** Calls a subscriber; a throw or a rejection is reported, never propagated. */
function callSafely(callback, docs) {
  try {
    const r = callback(docs);
    if (r && typeof r.then === "function") {
      r.then(undefined, (e) => console.error("Outpost: a subscribe callback failed:", e));
    }
  } catch (e) {
    console.error("Outpost: a subscribe callback threw:", e);
  }
}

/** The filter of `subscribe(filter, ...)` as a predicate over documents. */
function matcher(filter) {
  if (filter == null) filter = {};
  if (typeof filter !== "object") {
    throw new OutpostError("subscribe expects a filter object: { prefix } or { collection } or {}", "invalid_argument");
  }
  for (const key of Object.keys(filter)) {
    if (key !== "prefix" && key !== "collection") {
      throw new OutpostError(`subscribe: unknown option ${JSON.stringify(key)}`, "invalid_argument");
    }
  }
  const { prefix, collection } = filter;
  for (const [k, v] of [["prefix", prefix], ["collection", collection]]) {
    if (v !== undefined && typeof v !== "string") {
      throw new OutpostError(`subscribe: ${k} must be a string`, "invalid_argument");
    }
  }
  // Ids and collection names are case-insensitive.
  const p = prefix?.toLowerCase();
  const c = collection?.toLowerCase();
  return (doc) => {
    const m = doc["@metadata"];
    if (p !== undefined && !String(m["@id"]).toLowerCase().startsWith(p)) return false;
    if (c !== undefined && String(m["@collection"] ?? "").toLowerCase() !== c) return false;
    return true;
  };
}

/** The highest etag among write results (`null` entries: nothing written). */
function maxEtag(results) {
  let max = 0;
  for (const r of results) if (r && r.etag > max) max = r.etag;
  return max;
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

  class Outpost {
    #db;
    /** Web Locks of this scope when the database is shared with other tabs (IndexedDB), else undefined. */
    #locks;
    #lockName;
    /** BroadcastChannel to the other tabs' handles on the same database, or undefined. */
    #channel;
    /** @type {Set<{match: (doc: object) => boolean, callback: Function}>} */
    #subs = new Set();
    /** Etag up to which subscribers have been fed (null: no subscribers). */
    #seen = null;
    #pumping = false;
    #again = false;
    #closed = false;

    /** Use `Outpost.open`. */
    constructor(raw, shared) {
      if (!(raw instanceof wasm.Outpost) || shared?.[internal] !== true) {
        throw new OutpostError("use Outpost.open(name, options)", "invalid_argument");
      }
      this.#db = raw;
      this.#locks = shared.locks;
      this.#lockName = shared.lockName;
      if (shared.locks && typeof globalThis.BroadcastChannel === "function") {
        this.#channel = new BroadcastChannel(shared.lockName);
        this.#channel.onmessage = () => this.#schedule();
      }
    }

    /**
     * Opens (or creates) a database. On IndexedDB, where the Web Locks API
     * exists, every operation runs under the cross-tab lock "outpost:<name>".
     */
    static async open(name, options) {
      await init();
      const locks = usesIndexedDb(options) ? webLocks() : undefined;
      const lockName = `outpost:${name}`;
      const open = () => wasm.Outpost.open(name, options);
      const raw = locks ? await locks.request(lockName, { mode: "exclusive" }, open) : await open();
      return new Outpost(raw, { [internal]: true, locks, lockName });
    }

    /**
     * Deletes the IndexedDB database `name` (close every handle on it first).
     * Does nothing where there is no IndexedDB.
     */
    static async destroy(name) {
      await init();
      return wasm.Outpost.destroy(name);
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
     * what other tabs committed, when the database is shared; directly otherwise.
     */
    #run(op) {
      if (!this.#locks) return op(this.#db);
      return this.#locks.request(this.#lockName, { mode: "exclusive" }, async () => {
        if (await this.#db.refresh()) this.#schedule();
        return op(this.#db);
      });
    }

    /** After a local write: tell the other tabs and feed this handle's subscribers. */
    #written(etag) {
      if (!(etag > 0)) return;
      if (this.#channel && !this.#closed) {
        try {
          this.#channel.postMessage({ etag });
        } catch {
          // The channel was closed meanwhile: nobody to tell.
        }
      }
      this.#schedule();
    }

    /** Feeds the subscribers what changed since `#seen`, one pass at a time. */
    #schedule() {
      if (this.#closed) return;
      // Nobody listens: nothing to do now (the next operation refreshes anyway).
      if (this.#subs.size === 0) return;
      if (this.#pumping) {
        this.#again = true;
        return;
      }
      this.#pumping = true;
      (async () => {
        try {
          do {
            this.#again = false;
            await this.#deliver();
          } while (this.#again && this.#subs.size > 0 && !this.#closed);
        } catch (e) {
          if (!this.#closed && e?.code !== "closed") console.error("Outpost: reading changes for subscribers failed:", e);
        } finally {
          this.#pumping = false;
        }
      })();
    }

    async #deliver() {
      for (;;) {
        if (this.#seen === null || this.#subs.size === 0 || this.#closed) return;
        const since = this.#seen;
        const docs = await this.#run((db) => db.changes({ since, limit: CHANGES_PAGE }));
        if (this.#seen === null || this.#closed) return;
        if (this.#seen !== since) continue; // unsubscribed and subscribed again meanwhile
        if (docs.length === 0) return;
        this.#seen = docs[docs.length - 1]["@metadata"]["@etag"];
        for (const sub of [...this.#subs]) {
          if (!this.#subs.has(sub)) continue; // unsubscribed by an earlier callback
          const mine = docs.filter(sub.match);
          if (mine.length > 0) callSafely(sub.callback, mine);
        }
        if (docs.length < CHANGES_PAGE) return;
      }
    }

    /**
     * Calls `callback` with the documents (tombstones included, marked with
     * `@metadata["@deleted"]`) changed after this call by this handle or, on
     * IndexedDB, by other tabs, in etag order, filtered by id `prefix` or
     * `collection`. Returns a function that unsubscribes.
     */
    subscribe(filter, callback) {
      if (typeof filter === "function" && callback === undefined) {
        callback = filter;
        filter = {};
      }
      if (typeof callback !== "function") {
        throw new OutpostError("subscribe expects a callback function", "invalid_argument");
      }
      if (this.#closed) throw new OutpostError("the database is closed", "closed");
      const sub = { match: matcher(filter), callback };
      if (this.#seen === null) {
        // This handle's current position; what other tabs committed after it
        // is delivered once this handle picks it up.
        this.#seen = Number(this.#db.stats().last_etag ?? 0);
      }
      this.#subs.add(sub);
      return () => {
        this.#subs.delete(sub);
        if (this.#subs.size === 0) this.#seen = null;
      };
    }

    async put(id, doc, options) {
      const r = await this.#run((db) => db.put(id, doc, options));
      this.#written(r?.etag);
      return r;
    }

    get(id) {
      return this.#run((db) => db.get(id));
    }

    async delete(id, options) {
      const r = await this.#run((db) => db.delete(id, options));
      this.#written(r?.etag);
      return r;
    }

    /**
     * Commits several writes atomically. Takes either an array of operations
     * or an (async) callback that adds them to a `Transaction`; if the callback
     * throws, nothing is written. Resolves to one result per operation.
     */
    async transaction(opsOrCallback) {
      let ops = opsOrCallback;
      if (typeof opsOrCallback === "function") {
        // The callback runs outside the cross-tab lock; only the commit takes it.
        const tx = new Transaction();
        try {
          await opsOrCallback(tx);
        } finally {
          ops = Transaction.finish(tx);
        }
        if (ops.length === 0) return [];
      }
      const results = await this.#run((db) => db.transaction(ops));
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

    /**
     * Counters of the database and its page cache, as this handle last saw
     * them (synchronous: it takes no lock; on a database shared with other
     * tabs, `await db.count()` first to include their latest commits).
     */
    stats() {
      return this.#db.stats();
    }

    /** Waits for pending writes, closes the page store and the channel to other tabs. */
    async close() {
      this.#closed = true;
      this.#subs.clear();
      this.#seen = null;
      if (this.#channel) {
        this.#channel.onmessage = null;
        this.#channel.close();
        this.#channel = undefined;
      }
      if (!this.#locks) return this.#db.close();
      return this.#locks.request(this.#lockName, { mode: "exclusive" }, () => this.#db.close());
    }
  }

  return { Outpost, OutpostError, Transaction };
}
