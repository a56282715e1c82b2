// The engine in a worker (issue 14 §4): `serveOutpost()` runs in a dedicated
// worker (or a Node worker thread, or behind any MessagePort) and owns the
// databases it opens there; `openInWorker(worker, name, options)` on the page
// returns a handle with the same methods as `Outpost`, each a message to the
// worker and its answer back. The page's main thread then runs no engine
// work at all: no wasm, no IndexedDB, no JSON parsing of pages.
//
// Messages (structured clones, one protocol version, "outpost-rpc/1"):
//   page → worker  { rpc: 1, id, h, m, a }      call method m of handle h (h 0: open)
//                  { rpc: 1, unsub: s }           stop the listener s
//   worker → page  { rpc: 1, ready: true }        serveOutpost listens
//                  { rpc: 1, id, ok: value, stats } | { rpc: 1, id, err: { message, code, extra } }
//                  { rpc: 1, ev: s, v }           an event for listener s
// A listener id `s` names a subscription, a live query or a sync controller's
// events; the worker ends it when the page says so or the handle closes.
// Functions do not cross: indexes are defined in the worker (`setup`).

import { addListener, OutpostError, Transaction } from "./core.js";

const RPC = 1;

/** Methods of a handle the page may call, with plain (cloneable) arguments and results. */
const CALLS = new Set([
  "put",
  "get",
  "delete",
  "transaction",
  "writeAtHub",
  "scan",
  "changes",
  "count",
  "collections",
  "query",
  "queryCount",
  "updateIndexes",
  "dropIndex",
  "indexes",
  "conflicts",
  "resolve",
  "rejections",
  "enroll",
  "identity",
  "close",
]);

/** The sending and receiving ends of `endpoint` (a Worker, a worker scope, a MessagePort, a Node worker). */
function wire(endpoint, onMessage) {
  if (endpoint == null || typeof endpoint.postMessage !== "function") {
    throw new OutpostError("expected a Worker, a worker scope or a MessagePort (something with postMessage)", "invalid_argument");
  }
  // A Worker, a worker scope or a browser MessagePort: MessageEvents.
  const handler = (e) => onMessage(e.data);
  if (typeof endpoint.addEventListener === "function" && typeof endpoint.on !== "function") {
    endpoint.addEventListener("message", handler);
    endpoint.start?.();
    return { send: (m) => endpoint.postMessage(m), stop: () => endpoint.removeEventListener("message", handler) };
  }
  // Node's worker_threads (EventEmitter): the message itself is the payload.
  const direct = (m) => onMessage(m);
  endpoint.on("message", direct);
  return { send: (m) => endpoint.postMessage(m), stop: () => endpoint.off("message", direct) };
}

/** An error as it crosses (message, code, and the typed facts some errors carry). */
function errorOut(e) {
  const extra = {};
  for (const k of ["rejection", "storageLost", "outcomes"]) if (e?.[k] !== undefined) extra[k] = e[k];
  return { message: String(e?.message ?? e), code: e?.code ?? "internal", extra };
}

function errorIn(err) {
  const e = new OutpostError(err.message, err.code);
  Object.assign(e, err.extra ?? {});
  return e;
}

/** Whether `v` holds a function anywhere a structured clone would meet it (shallowly: options objects). */
function hasFunction(v) {
  if (typeof v === "function") return true;
  if (v && typeof v === "object" && !Array.isArray(v)) return Object.values(v).some((x) => typeof x === "function");
  return false;
}

/**
 * The databases a worker holds open, shared by every port it serves (in a
 * SharedWorker, every tab): one `Outpost` per name, opened (and `setup` run)
 * by the first open, closed when the last handle on it closes; and one
 * replication per database, started by the first `sync` and shared by the
 * handles that ask for it (the first one's options), stopped when the last
 * of them stops.
 */
class Owner {
  #Outpost;
  #setup;
  /** name → { db: Promise<Outpost>, refs, sync?: { sync, users } } */
  #open = new Map();
  /** Every `serve` of this owner (one per port). */
  #served = new Set();

  constructor(Outpost, setup) {
    this.#Outpost = Outpost;
    this.#setup = setup;
  }

  /** The shared entry of `name`, opened if needed; counts one more handle. */
  async acquire(name, opts, wantsLoss) {
    let e = this.#open.get(name);
    if (!e) {
      const open = async () => {
        const db = await this.#Outpost.open(name, wantsLoss ? { ...(opts ?? {}), onStorageLost: () => {} } : opts);
        try {
          await this.#setup?.(db, name);
        } catch (err) {
          await db.close().catch(() => {});
          throw err;
        }
        return db;
      };
      e = { db: open(), refs: 0 };
      this.#open.set(name, e);
      // A failed open is not kept: the next open tries again.
      e.db.catch(() => this.#open.get(name) === e && this.#open.delete(name));
    }
    e.refs += 1;
    try {
      await e.db;
    } catch (err) {
      e.refs -= 1;
      throw err;
    }
    return e;
  }

  /** One handle on `e` fewer; the last closes the database. */
  async release(name, e) {
    e.refs -= 1;
    if (e.refs > 0) return;
    if (this.#open.get(name) === e) this.#open.delete(name);
    await (await e.db).close();
  }

  destroy(name) {
    return this.#Outpost.destroy(name);
  }

  /** Serves `endpoint` (a port, a worker scope, Node's `parentPort`) with this owner's databases. */
  connect(endpoint) {
    const served = servePort(this, endpoint);
    this.#served.add(served);
    return served;
  }

  /** Stops serving every port and closes every database. */
  async close() {
    for (const served of [...this.#served]) await served.close();
    this.#served.clear();
  }
}

/**
 * Serves the databases of this worker to the page (see the top of this
 * file). `Outpost`: the class of the entry point the worker imported;
 * `scope`: the worker's global scope (or Node's `parentPort`). Options:
 * `setup(db, name)` runs after a database is opened, before any page gets a
 * handle on it (define indexes there: their functions live in the worker);
 * `endpoint`, where the page's messages arrive, instead of `scope`. In a
 * SharedWorker (no endpoint given), every tab that connects is served, all
 * sharing the databases. Returns the owner: `connect(port)` serves one more
 * port with the same databases (e.g. a `MessageChannel` port another tab
 * sent), `close()` closes everything.
 */
export function serve(Outpost, scope, options = {}) {
  const { setup, endpoint, ...unknown } = options ?? {};
  for (const key of Object.keys(unknown)) {
    throw new OutpostError(`serveOutpost: unknown option ${JSON.stringify(key)} (known options: setup, endpoint)`, "invalid_options");
  }
  if (setup !== undefined && typeof setup !== "function") {
    throw new OutpostError("serveOutpost: option setup must be a function", "invalid_options");
  }
  const owner = new Owner(Outpost, setup);
  const Shared = globalThis.SharedWorkerGlobalScope;
  if (endpoint === undefined && typeof Shared === "function" && scope instanceof Shared) {
    scope.addEventListener("connect", (e) => owner.connect(e.ports[0]));
  } else {
    owner.connect(endpoint ?? scope);
  }
  return { connect: (port) => void owner.connect(port), close: () => owner.close() };
}

/** Serves one port for `owner` (the message protocol at the top of this file). */
function servePort(owner, endpoint) {
  /** handle id → { db, name, shared (the owner's entry), listeners: Map<s, stop function>, syncing } */
  const handles = new Map();
  /** listener id → handle id */
  const handleOf = new Map();
  let next = 1;

  const reply = (m) => {
    try {
      link.send(m);
    } catch (e) {
      // A reply that does not clone (a value the engine should not produce): the page still gets an answer.
      if (m.id !== undefined) link.send({ rpc: RPC, id: m.id, err: errorOut(e) });
    }
  };
  const event = (s, v) => reply({ rpc: RPC, ev: s, v });
  const listen = (h, s, stop) => {
    handles.get(h).listeners.set(s, stop);
    handleOf.set(s, h);
  };
  /** Ends listener `s`; resolves once it has stopped (a sync: its last step ran). */
  const unlisten = (s) => {
    const h = handleOf.get(s);
    handleOf.delete(s);
    const entry = handles.get(h);
    const stop = entry?.listeners.get(s);
    entry?.listeners.delete(s);
    return stop ? Promise.resolve(stop()).catch(() => {}) : Promise.resolve();
  };
  /** Ends a handle: its listeners, then its share of the database. */
  const closeHandle = async (h) => {
    const entry = handles.get(h);
    if (!entry) return;
    handles.delete(h);
    for (const s of [...entry.listeners.keys()]) await unlisten(s);
    await owner.release(entry.name, entry.shared);
  };

  /** `db.sync` for handle `entry`: the database's replication, started once and shared. */
  const startSync = (h, entry, options, s) => {
    if (entry.syncing) throw new OutpostError("this handle already replicates: call stop() on its sync first", "already_syncing");
    const shared = entry.shared;
    if (!shared.sync || shared.sync.sync.stopped) shared.sync = { sync: entry.db.sync(options), users: 0 };
    const run = shared.sync;
    run.users += 1;
    entry.syncing = true;
    const offs = ["status", "rejection", "grant", "purge"].map((ev) => run.sync.on(ev, (v) => event(s, { ev, v, status: run.sync.status, grant: run.sync.grant })));
    listen(h, s, () => {
      for (const off of offs) off();
      entry.syncing = false;
      run.users -= 1;
      if (run.users > 0) return undefined;
      if (shared.sync === run) shared.sync = undefined;
      return run.sync.stop();
    });
    return { status: run.sync.status, grant: run.sync.grant };
  };

  async function call(m) {
    if (m.h === 0) {
      if (m.m === "destroy") return owner.destroy(m.a[0]);
      if (m.m !== "open") throw new OutpostError(`unknown call ${JSON.stringify(m.m)}`, "invalid_argument");
      const [name, opts, wantsLoss] = m.a;
      const shared = await owner.acquire(name, opts, wantsLoss);
      const db = await shared.db;
      const h = next++;
      handles.set(h, { db, name, shared, listeners: new Map(), syncing: false });
      return { h, name: db.name, dbId: db.dbId, storageLost: db.storageLost };
    }
    const entry = handles.get(m.h);
    if (!entry) throw new OutpostError("the database is closed", "closed");
    const { db } = entry;
    const a = m.a ?? [];
    switch (m.m) {
      case "subscribe":
        listen(m.h, a[1], db.subscribe(a[0] ?? {}, (docs) => event(a[1], docs)));
        return undefined;
      case "liveQuery":
        listen(m.h, a[2], db.liveQuery(a[0], a[1], (r) => event(a[2], r)));
        return undefined;
      case "defineIndex":
        // A definition without functions (hubComputed) crosses as is.
        return db.defineIndex(a[0]);
      case "sync":
        return startSync(m.h, entry, a[0], a[1]);
      case "unlisten":
        return unlisten(a[0]);
      case "close":
        return closeHandle(m.h);
      default:
        if (!CALLS.has(m.m)) throw new OutpostError(`unknown method ${JSON.stringify(m.m)}`, "invalid_argument");
        return db[m.m](...a);
    }
  }

  const link = wire(endpoint, (m) => {
    if (m?.rpc !== RPC) return;
    if (m.unsub !== undefined) {
      unlisten(m.unsub).catch(() => {});
      return;
    }
    call(m).then(
      (ok) => {
        const db = handles.get(m.h === 0 ? ok?.h : m.h)?.db;
        reply({ rpc: RPC, id: m.id, ok, stats: db?.stats() });
      },
      (e) => reply({ rpc: RPC, id: m.id, err: errorOut(e) }),
    );
  });
  // Tells the page it listens (an error event before this is a worker that did not start).
  link.send({ rpc: RPC, ready: true });
  return {
    /** Stops serving this port and closes its handles. */
    async close() {
      link.stop();
      for (const h of [...handles.keys()]) await closeHandle(h).catch(() => {});
    },
  };
}

/** The page's end of one worker: calls by id, events by listener id. */
class Client {
  #link;
  #next = 1;
  #pending = new Map();
  #listeners = new Map();

  /** Whether `serveOutpost` in the worker said it listens. */
  #ready = false;
  /** Set once the worker is gone (or never started): every call rejects with it. */
  #dead;

  constructor(endpoint) {
    this.#link = wire(endpoint, (m) => this.#receive(m));
    const fail = (why) => {
      this.#dead = new OutpostError(`the worker failed: ${why}`, "worker_failed");
      for (const p of this.#pending.values()) p.reject(this.#dead);
      this.#pending.clear();
    };
    if (typeof endpoint.on === "function") {
      // Node: a worker thread that ends (an uncaught error ends it too) answers nothing more.
      endpoint.on("exit", (code) => fail(`it exited (code ${code})`));
    } else {
      // Browser: an error before serveOutpost listened is a worker that did not start
      // (a script that does not load or throws); later ones are the app's, logged there.
      endpoint.addEventListener?.("error", (e) => {
        if (!this.#ready) fail(e?.message || "its script did not load or threw before serveOutpost()");
      });
    }
  }

  #receive(m) {
    if (m?.rpc !== RPC) return;
    // Any message says so (the hello is lost if the page listened late).
    this.#ready = true;
    if (m.ready) return;
    if (m.ev !== undefined) {
      this.#listeners.get(m.ev)?.(m.v);
      return;
    }
    const p = this.#pending.get(m.id);
    if (!p) return;
    this.#pending.delete(m.id);
    if (m.err) p.reject(errorIn(m.err));
    else p.resolve(m);
  }

  /** Calls `m` on handle `h`; resolves to the whole answer ({ ok, stats }). */
  call(h, m, a) {
    return new Promise((resolve, reject) => {
      if (this.#dead) {
        reject(this.#dead);
        return;
      }
      const id = this.#next++;
      this.#pending.set(id, { resolve, reject });
      try {
        this.#link.send({ rpc: RPC, id, h, m, a });
      } catch (e) {
        this.#pending.delete(id);
        reject(new OutpostError(`${m}: arguments that cannot be sent to the worker (${e?.message ?? e})`, "invalid_argument"));
      }
    });
  }

  /** A new listener id, fed by `callback`. */
  listener(callback) {
    const s = this.#next++;
    this.#listeners.set(s, callback);
    return s;
  }

  /** Stops listener `s` here only (the worker is told by a call). */
  forget(s) {
    this.#listeners.delete(s);
  }

  /** Stops listener `s` here and in the worker. */
  unlisten(s) {
    if (!this.#listeners.delete(s)) return;
    try {
      this.#link.send({ rpc: RPC, unsub: s });
    } catch {
      // The worker is gone: nothing listens there either.
    }
  }
}

/** One `Client` per endpoint, so several databases share a worker. */
const clients = new WeakMap();

/**
 * A sync controller on the page mirroring the worker's (`db.sync` of a
 * handle from `openInWorker`): `status`, `grant`, `stopped`, `on`,
 * `rejections`, `stop`.
 */
class RemoteSync {
  #db;
  #client;
  #s;
  #status;
  #grant;
  #stopped = false;
  #stopping;
  #listeners = { status: new Set(), rejection: new Set(), grant: new Set(), purge: new Set() };

  constructor(db, client, s) {
    this.#db = db;
    this.#client = client;
    this.#s = s;
    this.#status = { state: "connecting" };
    this.#grant = null;
  }

  /** @internal The worker's answer to the start: its status then, or why it refused. */
  static started(sync, answer, error) {
    if (sync.#stopped) return;
    if (error) {
      RemoteSync.deliver(sync, { ev: "status", v: { state: "error", code: error.code, message: error.message }, grant: null });
      sync.#stopped = true;
      return;
    }
    sync.#status = answer.status;
    sync.#grant = answer.grant;
  }

  /** @internal An event from the worker. */
  static deliver(sync, { ev, v, status, grant }) {
    if (sync.#stopped) return;
    sync.#status = status ?? v;
    sync.#grant = grant;
    for (const l of [...sync.#listeners[ev]]) {
      try {
        l(v);
      } catch (e) {
        console.error(`Outpost: a sync "${ev}" listener threw:`, e);
      }
    }
  }

  get status() {
    return this.#status;
  }
  get grant() {
    return this.#grant;
  }
  get stopped() {
    return this.#stopped;
  }
  on(event, listener) {
    return addListener(this.#listeners, event, listener, "sync.on");
  }
  rejections() {
    return this.#db.rejections();
  }
  /** Stops replicating in the worker; resolves once no step of it runs there. */
  stop() {
    if (this.#stopping) return this.#stopping;
    this.#stopped = true;
    this.#status = { state: "offline" };
    for (const set of Object.values(this.#listeners)) set.clear();
    this.#stopping = this.#db.__unlisten(this.#s);
    return this.#stopping;
  }
}

/**
 * A database served by a worker (see `openInWorker`): the methods of
 * `Outpost`, each answered by the worker. Differences, all typed errors:
 * `transaction` with a callback collects its writes on the page and sends
 * them as one array; `defineIndex` with functions belongs in the worker's
 * `setup`; `stats()` is what the last answer carried.
 */
export class RemoteOutpost {
  #client;
  #h;
  #info;
  #stats;
  #closed = false;
  #listeners = { "storage-lost": new Set() };
  #own = new Set();

  /** Use `openInWorker`. */
  constructor(client, answer) {
    if (!(client instanceof Client)) throw new OutpostError("use openInWorker(worker, name, options)", "invalid_argument");
    this.#client = client;
    this.#h = answer.ok.h;
    this.#info = answer.ok;
    this.#stats = answer.stats;
  }

  async #call(m, ...a) {
    if (this.#closed) throw new OutpostError("the database is closed", "closed");
    const r = await this.#client.call(this.#h, m, a);
    if (r.stats) this.#stats = r.stats;
    return r.ok;
  }

  get name() {
    return this.#info.name;
  }
  get dbId() {
    return this.#info.dbId;
  }
  get storageLost() {
    return this.#info.storageLost ?? null;
  }
  /** Counters as of the last answer from the worker (`await db.count()` first for the latest). */
  stats() {
    return this.#stats;
  }
  on(event, listener) {
    const remove = addListener(this.#listeners, event, listener, "on");
    const info = this.#info.storageLost;
    if (info) queueMicrotask(() => this.#listeners[event].has(listener) && listener(info));
    return remove;
  }

  put(id, doc, options) {
    return this.#call("put", id, doc, options);
  }
  get(id) {
    return this.#call("get", id);
  }
  delete(id, options) {
    return this.#call("delete", id, options);
  }
  async transaction(opsOrCallback, options) {
    let ops = opsOrCallback;
    if (typeof opsOrCallback === "function") {
      const tx = new Transaction();
      try {
        await opsOrCallback(tx);
      } finally {
        ops = Transaction.finish(tx);
      }
      if (ops.length === 0) return options?.results === false ? { written: 0, etag: 0 } : [];
    }
    return this.#call("transaction", ops, options);
  }
  writeAtHub(ops, options) {
    return this.#call("writeAtHub", ops, options);
  }
  scan(options) {
    return this.#call("scan", options);
  }
  changes(options) {
    return this.#call("changes", options);
  }
  count() {
    return this.#call("count");
  }
  collections() {
    return this.#call("collections");
  }
  defineIndex(def) {
    if (hasFunction(def)) {
      return Promise.reject(
        new OutpostError(
          "defineIndex: functions cannot be sent to the worker; define the index in the worker (serveOutpost({ setup(db) { return db.defineIndex(def) } }))",
          "invalid_argument",
        ),
      );
    }
    return this.#call("defineIndex", def);
  }
  query(name, options) {
    return this.#call("query", name, options);
  }
  queryCount(name, options) {
    return this.#call("queryCount", name, options);
  }
  updateIndexes() {
    return this.#call("updateIndexes");
  }
  dropIndex(name) {
    return this.#call("dropIndex", name);
  }
  indexes() {
    return this.#call("indexes");
  }
  conflicts(options) {
    return this.#call("conflicts", options);
  }
  resolve(id, body, options) {
    return this.#call("resolve", id, body, options);
  }
  rejections() {
    return this.#call("rejections");
  }
  enroll(options) {
    return this.#call("enroll", options);
  }
  identity(identity) {
    return this.#call("identity", identity);
  }

  /** Like `Outpost.subscribe`: returns a function that unsubscribes (here and in the worker). */
  subscribe(filter, callback) {
    if (typeof filter === "function" && callback === undefined) {
      callback = filter;
      filter = {};
    }
    if (typeof callback !== "function") throw new OutpostError("subscribe expects a callback function", "invalid_argument");
    return this.#listen("subscribe", [filter ?? {}], callback);
  }

  /** Like `Outpost.liveQuery`: calls back with the result now and whenever its rows change. */
  liveQuery(name, options, callback) {
    if (typeof callback !== "function") throw new OutpostError("liveQuery expects a callback function", "invalid_argument");
    return this.#listen("liveQuery", [name, options ?? {}], callback);
  }

  #listen(m, args, callback) {
    if (this.#closed) throw new OutpostError("the database is closed", "closed");
    const s = this.#client.listener((v) => {
      try {
        callback(v);
      } catch (e) {
        console.error(`Outpost: a ${m} callback threw:`, e);
      }
    });
    this.#own.add(s);
    this.#client.call(this.#h, m, [...args, s]).catch((e) => {
      this.#own.delete(s);
      this.#client.unlisten(s);
      if (e?.code !== "closed") console.error(`Outpost: ${m} in the worker failed:`, e);
    });
    return () => {
      this.#own.delete(s);
      this.#client.unlisten(s);
    };
  }

  /**
   * Starts replication in the worker; returns at once a controller
   * mirroring its status (`{ state: "connecting" }` until the worker
   * answers; a start the worker refuses, e.g. "already_syncing", becomes
   * the status `{ state: "error", code, message }`). `onStatus`,
   * `onRejection`, `onGrant` and `onPurge` stay on the page.
   */
  sync(options) {
    const { onStatus, onRejection, onGrant, onPurge, ...rest } = options ?? {};
    if (hasFunction(rest)) throw new OutpostError("sync: options with functions cannot be sent to the worker", "invalid_options");
    if (this.#closed) throw new OutpostError("the database is closed", "closed");
    for (const [key, f] of Object.entries({ onStatus, onRejection, onGrant, onPurge })) {
      if (f !== undefined && typeof f !== "function") throw new OutpostError(`sync: option ${key} must be a function`, "invalid_options");
    }
    let sync;
    const s = this.#client.listener((v) => RemoteSync.deliver(sync, v));
    this.#own.add(s);
    sync = new RemoteSync(this, this.#client, s);
    for (const [event, listener] of [
      ["status", onStatus],
      ["rejection", onRejection],
      ["grant", onGrant],
      ["purge", onPurge],
    ]) {
      if (listener !== undefined) sync.on(event, listener);
    }
    this.#call("sync", rest, s).then(
      (first) => RemoteSync.started(sync, first),
      (e) => {
        this.#own.delete(s);
        this.#client.unlisten(s);
        RemoteSync.started(sync, undefined, e);
      },
    );
    return sync;
  }

  /** @internal Ends listener `s` here and in the worker; resolves once it stopped there. */
  async __unlisten(s) {
    this.#own.delete(s);
    this.#client.forget(s);
    if (!this.#closed) await this.#client.call(this.#h, "unlisten", [s]).catch(() => {});
  }

  /** Closes the database in the worker (its listeners and replication too). */
  async close() {
    if (this.#closed) return;
    const r = this.#call("close");
    this.#closed = true;
    for (const s of this.#own) this.#client.unlisten(s);
    this.#own.clear();
    await r;
  }
}

/** The page's `Client` of `worker` (one per worker). */
function clientOf(worker) {
  let client = clients.get(worker);
  if (!client) {
    client = new Client(worker);
    clients.set(worker, client);
  }
  return client;
}

/** `Outpost.destroy(name)` run in `worker` (close every handle on it first). */
export async function destroyInWorker(worker, name) {
  await clientOf(worker).call(0, "destroy", [name]);
}

/**
 * Opens `name` in the worker `worker` (which called `serveOutpost()`):
 * the options of `Outpost.open`; `onStorageLost` stays on the page.
 */
export async function openInWorker(worker, name, options) {
  const client = clientOf(worker);
  const { onStorageLost, ...rest } = options ?? {};
  if (onStorageLost !== undefined && typeof onStorageLost !== "function") {
    throw new OutpostError("open: option onStorageLost must be a function", "invalid_options");
  }
  if (hasFunction(rest)) throw new OutpostError("open: options with functions cannot be sent to the worker (store: open in the worker)", "invalid_options");
  const answer = await client.call(0, "open", [name, rest, onStorageLost !== undefined]);
  const db = new RemoteOutpost(client, answer);
  if (db.storageLost) onStorageLost(db.storageLost);
  return db;
}
