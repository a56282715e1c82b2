// The handwritten layer over the wasm-bindgen bindings, shared by the browser
// (web.js) and Node (node.js) entry points. It adds what is nicer in JS than
// in Rust: a real `OutpostError` class, `transaction(async (tx) => ...)`,
// `subscribe`, and safety with several tabs: on IndexedDB, where the Web Locks
// API exists, every operation of a handle runs under the lock
// "outpost:<name>" after `refresh()` picks up what other tabs committed, and a
// BroadcastChannel of the same name tells the other tabs about each commit.
// `db.sync()` runs the wasm replication client (`EdgeSync`, wasm/src/sync.rs)
// with its storage steps under the same lock, in one tab per database at a
// time (the others follow its status). The rest is passed straight to the
// wasm `Outpost` class, whose generated .d.ts documents it.

/**
 * The error every Outpost operation rejects with. Branch on `code`, which is
 * stable: "invalid_id", "invalid_json", "invalid_collection", "too_large",
 * "invalid_argument", "invalid_change_vector", "concurrency_conflict",
 * "corrupt", "closed", "poisoned", "quota_exceeded", "invalid_options",
 * "transaction_finished", "already_syncing", "unsupported", "other", ...
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

/** Calls a listener with one value; a throw or a rejection is reported, never propagated. */
function notify(listener, value, what) {
  try {
    const r = listener(value);
    if (r && typeof r.then === "function") {
      r.then(undefined, (e) => console.error(`Outpost: a ${what} listener failed:`, e));
    }
  } catch (e) {
    console.error(`Outpost: a ${what} listener threw:`, e);
  }
}

const SYNC_OPTIONS = new Set(["url", "identity", "credential", "database", "onStatus", "onRejection", "onGrant"]);
const SYNC_EVENTS = new Set(["status", "rejection", "grant"]);

/** Checks the options of `db.sync` and makes `url` absolute (`ws:`/`wss:`; `http(s):` and relative URLs are mapped). */
function syncOptions(options) {
  if (options == null || typeof options !== "object") {
    throw new OutpostError("sync expects { url, identity, credential, database?, onStatus? }", "invalid_options");
  }
  for (const key of Object.keys(options)) {
    if (!SYNC_OPTIONS.has(key)) throw new OutpostError(`sync: unknown option ${JSON.stringify(key)}`, "invalid_options");
  }
  for (const key of ["url", "identity", "credential"]) {
    if (typeof options[key] !== "string" || options[key] === "") {
      throw new OutpostError(`sync: option ${key} is required (a non-empty string)`, "invalid_options");
    }
  }
  if (options.database !== undefined && (typeof options.database !== "string" || options.database === "")) {
    throw new OutpostError("sync: option database must be a non-empty string", "invalid_options");
  }
  for (const key of ["onStatus", "onRejection", "onGrant"]) {
    if (options[key] !== undefined && typeof options[key] !== "function") {
      throw new OutpostError(`sync: option ${key} must be a function`, "invalid_options");
    }
  }
  let url;
  try {
    url = new URL(options.url, globalThis.location?.href);
  } catch {
    throw new OutpostError(`sync: invalid url ${JSON.stringify(options.url)}`, "invalid_options");
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new OutpostError(`sync: url must be ws://, wss://, http:// or https:// (got ${url.protocol})`, "invalid_options");
  }
  return {
    url: url.href,
    identity: options.identity,
    credential: options.credential,
    database: options.database ?? "main",
  };
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

  /**
   * Replication of a database with a hub (`db.sync(options)`). One tab per
   * database replicates at a time (Web Lock "outpost-sync:<name>"); the
   * others follow: their `status` mirrors the replicating tab's, and what it
   * receives reaches their subscribers. When it stops or closes, another
   * takes over.
   */
  class Sync {
    #host;
    #options;
    /** The wasm client while this tab replicates, else undefined. */
    #edge;
    #status = { state: "connecting" };
    /** What the hub said this edge may read and write, or null (not yet known). */
    #grant = null;
    #listeners = { status: new Set(), rejection: new Set(), grant: new Set() };
    #stopped = false;
    #stopping;
    /** Releases the replication lock (resolves its callback's promise). */
    #release;
    #onOnline = () => this.#edge?.reconnectNow();
    #onOffline = () => this.#edge?.disconnect();

    /** Use `db.sync(options)`. */
    constructor(token, host, options) {
      if (token !== internal) throw new OutpostError("use db.sync(options)", "invalid_argument");
      this.#host = host;
      this.#options = options;
      if (host.locks) {
        host.locks
          .request(`outpost-sync:${host.name}`, { mode: "exclusive" }, () => {
            if (this.#stopped) return undefined;
            const held = new Promise((resolve) => {
              this.#release = resolve;
            });
            this.#lead();
            return held;
          })
          .catch((e) => this.#fail(e));
        // Until this tab gets the lock: the status of the tab that has it.
        host.post({ syncQuery: true });
      } else {
        this.#lead();
      }
    }

    /** This tab replicates: starts the wasm client. */
    #lead() {
      try {
        this.#edge = new wasm.EdgeSync(this.#host.raw, this.#options, {
          exclusive: (fn) => this.#host.exclusive(fn),
          event: (type, value) => this.#event(type, value),
        });
      } catch (e) {
        this.#fail(e);
        return;
      }
      if (typeof globalThis.addEventListener === "function") {
        globalThis.addEventListener("online", this.#onOnline);
        globalThis.addEventListener("offline", this.#onOffline);
      }
    }

    #fail(e) {
      if (this.#stopped) return;
      this.#setStatus({ state: "error", code: e?.code ?? "other", message: String(e?.message ?? e) });
    }

    /** From the wasm client: "status", "rejection" or "grant". */
    #event(type, value) {
      if (type === "status") {
        this.#setStatus(value);
        this.#host.post({ syncStatus: value });
      } else if (type === "rejection") {
        for (const l of [...this.#listeners.rejection]) notify(l, value, "rejection");
      } else if (type === "grant") {
        this.#setGrant(value);
        this.#host.post({ syncGrant: value });
      }
    }

    #setGrant(grant) {
      if (JSON.stringify(this.#grant) === JSON.stringify(grant)) return;
      this.#grant = grant;
      for (const l of [...this.#listeners.grant]) notify(l, grant, "grant");
    }

    #setStatus(status) {
      const prev = this.#status;
      if (prev.state === status.state && JSON.stringify(prev) === JSON.stringify(status)) return;
      this.#status = status;
      for (const l of [...this.#listeners.status]) notify(l, status, "status");
    }

    /** @internal A message of another tab on the database's channel. */
    static message(sync, data) {
      if (!sync || sync.#stopped) return;
      if (sync.#edge) {
        if (data?.syncQuery) sync.#host.post({ syncStatus: sync.#status, syncGrant: sync.#grant });
        else if (data && data.etag > 0 && !data.remote) sync.#edge.localChanged();
      } else {
        if (data?.syncGrant) sync.#setGrant(data.syncGrant);
        if (data?.syncStatus) sync.#setStatus(data.syncStatus);
      }
    }

    /** @internal This handle committed a local write. */
    static localChanged(sync) {
      if (sync && !sync.#stopped) sync.#edge?.localChanged();
    }

    /**
     * Where replication stands: `{ state: "connecting" }`, `{ state:
     * "initial", received, total }` (the hub's backlog), `{ state: "live" }`,
     * `{ state: "offline" }` (retrying) or `{ state: "error", code, message }`
     * (not retrying: e.g. code "unauthorized").
     */
    get status() {
      return this.#status;
    }

    /**
     * What the hub lets this edge do, as it said when the session opened:
     * `{ read: string[], write: string[] }`, normalised prefixes (lowercase,
     * ending in "/"; "*" means every id). `write` empty: read-only. `null`
     * until the hub has said (or from a hub that does not say: protocol
     * version 1). For display (e.g. hide edit controls); the hub enforces it.
     */
    get grant() {
      return this.#grant;
    }

    /** Whether `stop()` was called. */
    get stopped() {
      return this.#stopped;
    }

    /**
     * Listens to `"status"` (the new status), `"rejection"` (a change the
     * hub refused: `{ id, changeVector, code, rule, message }`) or `"grant"`
     * (what the hub lets this edge do, see `grant`). Returns a function that
     * removes the listener.
     */
    on(event, listener) {
      if (!SYNC_EVENTS.has(event)) {
        throw new OutpostError(`sync.on: unknown event ${JSON.stringify(event)} (expected "status", "rejection" or "grant")`, "invalid_argument");
      }
      if (typeof listener !== "function") throw new OutpostError("sync.on expects a listener function", "invalid_argument");
      this.#listeners[event].add(listener);
      return () => this.#listeners[event].delete(listener);
    }

    /** The changes the hub refused, as recorded in the database (all tabs, all sessions). */
    rejections() {
      return this.#host.rejections();
    }

    /**
     * Stops replicating: closes the connection, no more retries; another tab
     * replicating the same database may take over. Resolves once no step of
     * the replication is running. Stopping twice is harmless.
     */
    stop() {
      if (this.#stopping) return this.#stopping;
      this.#stopped = true;
      if (typeof globalThis.removeEventListener === "function") {
        globalThis.removeEventListener("online", this.#onOnline);
        globalThis.removeEventListener("offline", this.#onOffline);
      }
      const edge = this.#edge;
      this.#edge = undefined;
      this.#stopping = (async () => {
        try {
          if (edge) await edge.stop();
        } finally {
          edge?.free?.();
          this.#release?.();
          this.#setStatus({ state: "offline" });
          this.#listeners.status.clear();
          this.#listeners.rejection.clear();
          this.#listeners.grant.clear();
        }
      })();
      return this.#stopping;
    }
  }

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
    /** The replication started by `sync()`, until stopped. */
    #sync;

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
        this.#channel.onmessage = (e) => {
          if (e.data?.etag > 0) this.#schedule();
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

    /**
     * After a commit: tell the other tabs and feed this handle's subscribers;
     * a local write (not `remote`, i.e. not received by replication) also
     * wakes the replication so it pushes the change.
     */
    #written(etag, remote = false) {
      if (!(etag > 0)) return;
      this.#post({ etag, remote });
      if (!remote) Sync.localChanged(this.#sync);
      this.#schedule();
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

    /** Conflicted documents with all their versions (see index.d.ts). */
    conflicts(options) {
      return this.#run((db) => db.conflicts(options));
    }

    /** Ends a conflict by writing the version to keep (`null`: delete). */
    async resolve(id, body, options) {
      const r = await this.#run((db) => db.resolve(id, body, options));
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
      if (this.#closed) throw new OutpostError("the database is closed", "closed");
      if (this.#sync && !this.#sync.stopped) {
        throw new OutpostError("this database is already syncing: stop() that sync first", "already_syncing");
      }
      const opts = syncOptions(options);
      if (typeof globalThis.WebSocket !== "function") {
        throw new OutpostError("sync needs a WebSocket implementation (browsers, web workers, Node 22+)", "unsupported");
      }
      const raw = this.#db;
      const sync = new Sync(
        internal,
        {
          raw,
          name: this.name,
          locks: this.#locks,
          // A storage step of the replication: under the lock after a
          // refresh, like every operation; `fn` resolves to the new last
          // etag when it committed documents.
          exclusive: (fn) =>
            this.#run(() => fn()).then((etag) => {
              if (etag > 0) this.#written(etag, true);
            }),
          post: (message) => this.#post(message),
          rejections: () => this.rejections(),
        },
        opts,
      );
      if (options.onStatus) sync.on("status", options.onStatus);
      if (options.onRejection) sync.on("rejection", options.onRejection);
      if (options.onGrant) sync.on("grant", options.onGrant);
      this.#sync = sync;
      return sync;
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

  return { Outpost, OutpostError, Transaction, Sync };
}
