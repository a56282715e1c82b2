// Replication from the JS side: `db.sync()`'s controller (`Sync`, over the
// wasm `EdgeSync` client, wasm/src/sync/), the checks of its options, and the
// write safeties "replicated" and "hub" (`db.put(..., { safety })`,
// `db.writeAtHub`). core.js's `Outpost` uses them; docs/design.md, "Several
// tabs", says how one tab replicates for all.

import { OutpostError, addListener, notify } from "./base.js";

/** Default wait of a `safety: "replicated"` write for the hub's acknowledgement. */
const REPLICATED_TIMEOUT_MS = 30_000;
/** Default wait of a `safety: "hub"` write for the hub's answer. */
export const HUB_TIMEOUT_MS = 30_000;
/** Most documents of one write with safety "hub" (the protocol's MAX_WRITE_OPS). */
export const MAX_HUB_OPS = 64;
/**
 * How long a write with safety "hub" forwarded to the tab that replicates
 * may wait to be taken; the asking tab waits a little longer for the
 * "taken" message before it answers "offline" (no tab replicates).
 */
export const HUB_TAKE_MS = 1500;
export const HUB_TAKE_GRACE_MS = 1000;

/**
 * Splits a write's safety (`{ safety, timeoutMs, expect }`) off its
 * options: the options for the engine, and `null` (safety "local", the
 * default) or `{ safety, timeoutMs, expect }` ("replicated" or "hub").
 */
export function splitSafety(options) {
  if (options == null || typeof options !== "object" || !("safety" in options || "timeoutMs" in options || "expect" in options)) {
    return [options, null];
  }
  const { safety = "local", timeoutMs, expect, ...rest } = options;
  if (safety !== "local" && safety !== "replicated" && safety !== "hub") {
    throw new OutpostError(`safety is "local", "replicated" or "hub", not ${JSON.stringify(safety)}`, "invalid_argument");
  }
  const ms = timeoutMs ?? (safety === "hub" ? HUB_TIMEOUT_MS : REPLICATED_TIMEOUT_MS);
  if (typeof ms !== "number" || !(ms >= 0) || !Number.isFinite(ms)) {
    throw new OutpostError(`timeoutMs is a number of milliseconds, not ${JSON.stringify(timeoutMs)}`, "invalid_argument");
  }
  if (expect !== undefined && safety !== "hub") {
    throw new OutpostError('expect is an option of safety "hub" (a local write checks changeVector)', "invalid_argument");
  }
  if (safety === "hub") {
    for (const key of Object.keys(rest)) {
      if (key !== "collection") {
        throw new OutpostError(`safety "hub": unknown option ${JSON.stringify(key)} (known options: safety, expect, timeoutMs, collection)`, "invalid_options");
      }
    }
  }
  return [rest, safety === "local" ? null : { safety, timeoutMs: ms, expect }];
}

/**
 * One document of a write with safety "hub" as the wasm `hubWrite` takes
 * it, from a `writeAtHub` operation (`{ type: "put", id, doc, collection?,
 * expect? }` or `{ type: "delete", id, expect? }`); checked here so that a
 * bad one fails in the asking tab.
 */
export function hubOp(op) {
  if (op == null || typeof op !== "object") {
    throw new OutpostError("writeAtHub: an operation is an object { type, id, doc?, collection?, expect? }", "invalid_argument");
  }
  const { type, id, doc, collection, expect, ...rest } = op;
  for (const key of Object.keys(rest)) {
    throw new OutpostError(`writeAtHub operation: unknown option ${JSON.stringify(key)} (known options: type, id, doc, collection, expect)`, "invalid_options");
  }
  if (typeof id !== "string" || id === "") {
    throw new OutpostError(`writeAtHub: a document id must be a non-empty string, got ${JSON.stringify(id)}`, "invalid_id");
  }
  if (expect !== undefined && expect !== null && typeof expect !== "string") {
    throw new OutpostError(`${id}: expect is "missing", "any" or a change vector (string), not ${JSON.stringify(expect)}`, "invalid_argument");
  }
  if (collection !== undefined && collection !== null && typeof collection !== "string") {
    throw new OutpostError(`${id}: collection is a string`, "invalid_argument");
  }
  if (type === "put") {
    if (doc == null || typeof doc !== "object" || Array.isArray(doc)) {
      throw new OutpostError(`${id}: a document is a plain object`, "invalid_json");
    }
    return { id, body: doc, collection: collection ?? undefined, expect: expect ?? "any" };
  }
  if (type === "delete") {
    if (doc !== undefined || (collection !== undefined && collection !== null)) {
      throw new OutpostError(`${id}: a delete has no doc or collection`, "invalid_argument");
    }
    return { id, deleted: true, expect: expect ?? "any" };
  }
  throw new OutpostError(`writeAtHub: an operation's type is "put" or "delete", not ${JSON.stringify(type)}`, "invalid_argument");
}

/**
 * What a write with safety "hub" resolves to (`[{ id, changeVector }]`, one
 * per document) or the `OutpostError` it rejects with, from the outcome
 * object of the wasm `hubWrite`.
 */
export function hubResult(ops, o) {
  if (o.code === "applied") {
    return ops.map((op, i) => ({ id: op.id, changeVector: o.changeVectors[i] ?? "" }));
  }
  let e;
  if (o.code === "conflict") {
    e = new OutpostError(
      `${o.id}: the hub holds another version (change vector ${JSON.stringify(o.current)}; empty: none): nothing was written`,
      "conflict",
    );
    e.id = o.id;
    e.current = o.current;
  } else if (o.code === "offline") {
    e = new OutpostError(`offline: ${o.reason}; nothing was written`, "offline");
  } else if (o.code === "unknown") {
    e = new OutpostError(
      `unknown outcome: ${o.reason} (the hub may have applied the write: it then replicates here like any write)`,
      "unknown",
    );
  } else if (o.code === "invalid_argument" || o.code === "invalid_id" || o.code === "invalid_json") {
    // Refused by the replicating tab's checks before anything was sent.
    e = new OutpostError(o.message, o.code);
  } else {
    e = new OutpostError(`${o.id}: the hub refused the write (${o.code}): ${o.message}; nothing was written`, o.code);
    e.rejection = { code: o.code, id: o.id, message: o.message };
  }
  throw e;
}

const SYNC_OPTIONS = new Set(["url", "identity", "credential", "database", "onStatus", "onRejection", "onGrant", "onPurge"]);

const ENROLL_OPTIONS = new Set(["url", "identity", "code", "database"]);

/**
 * Checks the options of `db.sync` (`what` "sync") or `db.enroll` ("enroll")
 * and makes `url` absolute (`ws:`/`wss:`; `http(s):` and relative URLs are
 * mapped). `credential` (sync: a development token) is optional; `code`
 * (enroll: the enrollment code) is required.
 */
export function syncOptions(options, what = "sync") {
  const known = what === "sync" ? SYNC_OPTIONS : ENROLL_OPTIONS;
  const required = what === "sync" ? ["url", "identity"] : ["url", "identity", "code"];
  if (options == null || typeof options !== "object") {
    const shape = what === "sync" ? "{ url, identity, database?, credential?, onStatus? }" : "{ url, identity, code, database? }";
    throw new OutpostError(`${what} expects ${shape}`, "invalid_options");
  }
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw new OutpostError(`${what}: unknown option ${JSON.stringify(key)}`, "invalid_options");
  }
  for (const key of required) {
    if (typeof options[key] !== "string" || options[key] === "") {
      throw new OutpostError(`${what}: option ${key} is required (a non-empty string)`, "invalid_options");
    }
  }
  for (const key of ["database", "credential"]) {
    if (options[key] !== undefined && (typeof options[key] !== "string" || options[key] === "")) {
      throw new OutpostError(`${what}: option ${key} must be a non-empty string`, "invalid_options");
    }
  }
  for (const key of ["onStatus", "onRejection", "onGrant", "onPurge"]) {
    if (options[key] !== undefined && typeof options[key] !== "function") {
      throw new OutpostError(`${what}: option ${key} must be a function`, "invalid_options");
    }
  }
  let url;
  try {
    url = new URL(options.url, globalThis.location?.href);
  } catch {
    throw new OutpostError(`${what}: invalid url ${JSON.stringify(options.url)}`, "invalid_options");
  }
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new OutpostError(`${what}: url must be ws://, wss://, http:// or https:// (got ${url.protocol})`, "invalid_options");
  }
  const out = { url: url.href, identity: options.identity, database: options.database ?? "main" };
  // Only what is given: the bindings tell the modes apart by it.
  if (options.credential !== undefined) out.credential = options.credential;
  if (options.code !== undefined) out.code = options.code;
  return out;
}

/**
 * The `Sync` class over a wasm-bindgen module; `internal` is the token
 * `Outpost` passes to its constructor (an application calls `db.sync()`).
 * @param {object} wasm the generated bindings
 * @param {symbol} internal
 */
export function makeSync(wasm, internal) {
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
    #listeners = { status: new Set(), rejection: new Set(), grant: new Set(), purge: new Set() };
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

    /** From the wasm client: "status", "rejection", "grant", "purge" or "pushed" ("enrolled" and "closed" are for `enroll`). */
    #event(type, value) {
      if (type === "pushed") {
        this.#host.pushed(value?.upto);
      } else if (type === "status") {
        this.#setStatus(value);
        this.#host.post({ syncStatus: value });
      } else if (type === "rejection") {
        this.#host.refused();
        for (const l of [...this.#listeners.rejection]) notify(l, value, "rejection");
      } else if (type === "purge") {
        for (const l of [...this.#listeners.purge]) notify(l, value, "purge");
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

    /**
     * @internal A write with safety "hub" through this tab's session: the
     * outcome object of the wasm `hubWrite`, or `undefined` when this tab
     * does not replicate (another tab may).
     */
    static hubWrite(sync, ops) {
      if (!sync || sync.#stopped || !sync.#edge) return undefined;
      return sync.#edge.hubWrite(ops);
    }

    /** @internal A message of another tab on the database's channel. */
    static message(sync, data) {
      if (!sync || sync.#stopped) return;
      if (sync.#edge) {
        if (data?.hubWrite) sync.#takeHubWrite(data.hubWrite);
        if (data?.syncQuery) sync.#host.post({ syncStatus: sync.#status, syncGrant: sync.#grant });
        else if (data && data.etag > 0 && !data.remote) sync.#edge.localChanged();
      } else {
        if (data?.syncGrant) sync.#setGrant(data.syncGrant);
        if (data?.syncStatus) sync.#setStatus(data.syncStatus);
      }
    }

    /**
     * A write with safety "hub" another tab forwarded: taken (said at once)
     * unless it waited too long (the asking tab then answered "offline"),
     * sent through this tab's session, and answered back.
     */
    #takeHubWrite({ req, ops, sent }) {
      if (!(Date.now() - sent <= HUB_TAKE_MS)) return;
      this.#host.post({ hubTaken: req });
      let answer;
      try {
        answer = Promise.resolve(this.#edge.hubWrite(ops));
      } catch (e) {
        answer = Promise.reject(e);
      }
      answer
        .catch((e) => ({ code: e?.code ?? "invalid_argument", message: String(e?.message ?? e) }))
        .then((outcome) => this.#host.post({ hubAnswer: { req, outcome } }));
    }

    /** @internal This handle committed a local write. */
    static localChanged(sync) {
      if (sync && !sync.#stopped) sync.#edge?.localChanged();
    }

    /**
     * Where replication stands: `{ state: "connecting" }`, `{ state:
     * "initial", received, total }` (the hub's backlog), `{ state: "live" }`,
     * `{ state: "offline" }` (retrying) or `{ state: "error", code, message }`
     * (not retrying: e.g. code "unauthorized", "revoked" or "no_key").
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
     * hub refused: `{ id, changeVector, code, rule, message }`), `"grant"`
     * (what the hub lets this edge do, see `grant`) or `"purge"` (documents
     * that left this edge's read scope were erased at the hub's order:
     * `{ order, reason, removed }`). Returns a function that removes the
     * listener.
     */
    on(event, listener) {
      return addListener(this.#listeners, event, listener, "sync.on");
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
          this.#listeners.purge.clear();
        }
      })();
      return this.#stopping;
    }
  }

  return Sync;
}
