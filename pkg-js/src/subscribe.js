// What `subscribe` delivers: the callbacks of one handle, fed the documents
// changed after they subscribed, in etag order, a page of changes at a time
// and in slices of the event loop (core.js calls `schedule` after each
// commit it learns of: its own, another tab's, a batch from the hub).

import { OutpostError } from "./base.js";

/** Versions read per `changes` call when feeding subscribers. */
const CHANGES_PAGE = 256;

/**
 * How long one pass feeding subscribers runs before it lets the event loop
 * go on (ms). Pages it reads from the engine's cache need no I/O, so
 * without a break a pass over a large commit (an initial sync's batch) was
 * one task of 100-190 ms on the page's main thread.
 */
const DELIVER_SLICE_MS = 8;

/**
 * Resolves in a new task of the event loop, so a page can paint and take
 * input in between: a `MessageChannel` message, not `setTimeout(0)`, which
 * browsers clamp to 4 ms when nested (as the sync client's `next_task`).
 */
function nextTask() {
  if (typeof MessageChannel !== "function") return new Promise((r) => setTimeout(r, 0));
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      ch.port1.close(); // an open port would keep a Node process alive
      resolve();
    };
    ch.port2.postMessage(undefined);
  });
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

/** The subscribers of one handle. */
export class Subscribers {
  /** @type {Set<{match: (doc: object) => boolean, callback: Function}>} */
  #subs = new Set();
  /** Etag up to which subscribers have been fed (null: no subscribers). */
  #seen = null;
  #pumping = false;
  #again = false;
  #closed = false;
  #changes;
  #lastEtag;

  /**
   * @param {(since: number, limit: number) => Promise<object[]>} changes the handle's changes after `since`
   * @param {() => number} lastEtag the handle's last etag now
   */
  constructor(changes, lastEtag) {
    this.#changes = changes;
    this.#lastEtag = lastEtag;
  }

  /**
   * Adds a subscriber (`db.subscribe(filter, callback)`, or
   * `db.subscribe(callback)`); returns the function that removes it.
   */
  add(filter, callback) {
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
      this.#seen = this.#lastEtag();
    }
    this.#subs.add(sub);
    return () => {
      this.#subs.delete(sub);
      if (this.#subs.size === 0) this.#seen = null;
    };
  }

  /** Feeds the subscribers what changed since `#seen`, one pass at a time. */
  schedule() {
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
    let slice = performance.now();
    for (;;) {
      if (performance.now() - slice > DELIVER_SLICE_MS) {
        await nextTask();
        slice = performance.now();
      }
      if (this.#seen === null || this.#subs.size === 0 || this.#closed) return;
      const since = this.#seen;
      const docs = await this.#changes(since, CHANGES_PAGE);
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

  /** The handle closed: no more deliveries, every subscriber dropped. */
  close() {
    this.#closed = true;
    this.#subs.clear();
    this.#seen = null;
  }
}
