// Indexes for the package (core.js calls these): an application's map and
// reduce functions wrapped so that only JSON text crosses into the engine
// (wasm/src/index.rs), the version of a definition (a hash of the
// functions' source, so a changed function rebuilds its index), the
// checks of a definition, and live queries (a query re-run on every change
// a subscription reports, calling back when its rows change).
//
// The functions run in this JS context: no `eval`, so a strict
// Content-Security-Policy is fine. They must be pure (no I/O, same output
// for the same document), and a reduce must be commutative and associative
// and accept its own results (`rereduce` true): results are combined in
// groups whose make-up the application cannot see.

/** The options a definition may have. */
const DEFINITION_KEYS = ["name", "collections", "map", "reduce", "output", "version", "hubComputed"];

/**
 * A 64-bit FNV-1a hash of `text` as 16 hex digits (two 32-bit halves with
 * different offsets; not cryptographic: it names a version).
 */
export function hashText(text) {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x9e3779b9;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c, 0x01000193 ^ 0x5bd1e995) >>> 0;
  }
  return a.toString(16).padStart(8, "0") + b.toString(16).padStart(8, "0");
}

/**
 * Checks a definition and returns what the engine is given:
 * `[definition, mapWrapper, reduceWrapper | null]`.
 * @param {object} def
 * @param {(message: string, code: string) => Error} fail
 */
export function prepareDefinition(def, fail) {
  if (def == null || typeof def !== "object") {
    throw fail("defineIndex expects { name, collections?, map, reduce?, output?, version? }", "invalid_argument");
  }
  for (const key of Object.keys(def)) {
    if (!DEFINITION_KEYS.includes(key)) {
      throw fail(`defineIndex: unknown option ${JSON.stringify(key)} (known: ${DEFINITION_KEYS.join(", ")})`, "invalid_options");
    }
  }
  const { name, collections = [], map, reduce, output, version, hubComputed = false } = def;
  if (typeof name !== "string" || name === "") throw fail("an index needs a name (a non-empty string)", "invalid_argument");
  if (typeof map !== "function") throw fail(`index ${JSON.stringify(name)}: map must be a function (doc, emit) => void`, "invalid_argument");
  if (reduce !== undefined && typeof reduce !== "function") {
    throw fail(`index ${JSON.stringify(name)}: reduce must be a function (key, values, rereduce) => result`, "invalid_argument");
  }
  if (!Array.isArray(collections) || collections.some((c) => typeof c !== "string")) {
    throw fail(`index ${JSON.stringify(name)}: collections is an array of collection names`, "invalid_argument");
  }
  if (output !== undefined && typeof output !== "string") {
    throw fail(`index ${JSON.stringify(name)}: output is a collection name`, "invalid_argument");
  }
  if (typeof hubComputed !== "boolean") throw fail(`index ${JSON.stringify(name)}: hubComputed is true or false`, "invalid_argument");
  if (hubComputed && (reduce === undefined || output === undefined)) {
    throw fail(`index ${JSON.stringify(name)}: a hubComputed index reduces into an output collection (reduce and output)`, "invalid_argument");
  }
  const source = [String(map), reduce ? String(reduce) : "", collections.join("\u0000"), output ?? ""].join("\u0001");
  const stored = {
    name,
    version: version === undefined ? hashText(source) : String(version),
    collections,
    reduce: reduce !== undefined,
  };
  if (output !== undefined) stored.output = output;
  if (hubComputed) stored.hubComputed = true;
  return [stored, wrapMap(map), reduce ? wrapReduce(reduce) : null];
}

/**
 * The map wrapper: the body's JSON text, the id and the collection in; the
 * JSON text of `[key, value, key, value, ...]` out. The document the
 * application's map sees has `@metadata` with `@id` and `@collection`.
 */
function wrapMap(map) {
  return (json, id, collection) => {
    const doc = JSON.parse(json);
    const meta = { "@id": id };
    if (collection != null) meta["@collection"] = collection;
    doc["@metadata"] = meta;
    const out = [];
    map(doc, (key, value) => {
      out.push(key === undefined ? null : key, value === undefined ? null : value);
    });
    return JSON.stringify(out);
  };
}

/** The reduce wrapper: the JSON text of `[key, values, rereduce]` in, the result's JSON text out. */
function wrapReduce(reduce) {
  return (json) => {
    const [key, values, rereduce] = JSON.parse(json);
    const r = reduce(key, values, rereduce);
    if (r !== null && typeof r === "object" && typeof r.then === "function") {
      throw new TypeError("reduce returned a promise: it must be synchronous");
    }
    return JSON.stringify(r === undefined ? null : r);
  };
}

/**
 * Re-runs `query()` whenever `subscribe` reports a change (one run at a
 * time; changes during a run cause one more run) and calls `callback` with
 * the result when its rows differ from the last ones delivered (the first
 * result is always delivered). Returns a function that stops it.
 * @param {(onChange: () => void) => () => void} subscribe
 * @param {() => Promise<{ rows: unknown[] }>} query
 * @param {(result: object) => void} callback
 */
export function liveQuery(subscribe, query, callback) {
  let stopped = false;
  let running = false;
  let again = false;
  let last;
  const run = async () => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        const r = await query();
        if (stopped) return;
        const rows = JSON.stringify(r.rows);
        if (rows !== last) {
          last = rows;
          try {
            callback(r);
          } catch (e) {
            console.error("Outpost: a liveQuery callback threw:", e);
          }
        }
      } while (again && !stopped);
    } catch (e) {
      if (!stopped && e?.code !== "closed") console.error("Outpost: a live query failed:", e);
    } finally {
      running = false;
    }
  };
  const unsubscribe = subscribe(() => {
    run();
  });
  run();
  return () => {
    stopped = true;
    unsubscribe();
  };
}

/**
 * Keeps a handle's indexes up to date in the background. `poke()` (after a
 * commit, here or in another tab) schedules a run once no commit came for
 * `delayMs`, or `maxWaitMs` after the first poke of a burst (a stream of
 * writes gets a step now and then, not one per write); a run
 * calls `update()` (which steps every index registered on the handle, one
 * turn per step, so writes go on between steps), again while commits
 * arrived meanwhile. With Web Locks a run holds the lock `lockName`, so
 * the tabs of a database take turns: a tab whose indexes another tab has
 * just brought up to date maps nothing. A failure (a map function that
 * throws) is reported once per distinct message with `console.error` and
 * tried again after the next commit; queries report it as `index_failed`.
 */
export class IndexKeeper {
  #update;
  #locks;
  #lockName;
  #delayMs;
  #maxWaitMs;
  #first = 0;
  #last = 0;
  #timer = null;
  #running = null;
  #again = false;
  #stopped = false;
  #lastError = null;

  /**
   * @param {() => Promise<unknown>} update
   * @param {{ locks?: { request: Function }, lockName?: string, delayMs?: number }} options
   */
  constructor(update, { locks, lockName, delayMs = 20, maxWaitMs = 250 } = {}) {
    this.#update = update;
    this.#locks = locks;
    this.#lockName = lockName;
    this.#delayMs = delayMs;
    this.#maxWaitMs = maxWaitMs;
  }

  /** Something was committed: bring the indexes up to date soon. */
  poke() {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#last = Date.now();
    if (this.#timer === null) {
      this.#first = this.#last;
      this.#arm(this.#delayMs);
    }
  }

  #arm(ms) {
    this.#timer = setTimeout(() => {
      this.#timer = null;
      const now = Date.now();
      const quiet = now - this.#last;
      const waited = now - this.#first;
      if (quiet < this.#delayMs && waited < this.#maxWaitMs) {
        // Commits keep coming: wait for a pause, at most maxWaitMs in all.
        this.#arm(Math.min(this.#delayMs - quiet, this.#maxWaitMs - waited));
        return;
      }
      this.#running = this.#run().finally(() => {
        this.#running = null;
      });
    }, ms);
  }

  async #run() {
    try {
      do {
        this.#again = false;
        if (this.#locks && this.#lockName) await this.#locks.request(this.#lockName, () => this.#update());
        else await this.#update();
        this.#lastError = null;
      } while (this.#again && !this.#stopped);
    } catch (e) {
      const message = String(e?.message ?? e);
      if (!this.#stopped && e?.code !== "closed" && message !== this.#lastError) {
        this.#lastError = message;
        console.error("Outpost: keeping indexes up to date failed (tried again after the next commit):", e);
      }
    }
  }

  /** Resolves once no run is scheduled or under way (tests, close). */
  async idle() {
    while (this.#timer !== null || this.#running) {
      if (this.#running) await this.#running;
      else await new Promise((r) => setTimeout(r, this.#delayMs));
    }
  }

  /** No more runs (the handle closes); resolves once the current one ended. */
  async stop() {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#running) await this.#running;
  }
}
