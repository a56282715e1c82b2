// What every module of the package shares: the error class every operation
// rejects with, and the listener sets of `on(event, listener)` (core.js,
// sync.js, remote.js).

/**
 * The error every Outpost operation rejects with. Branch on `code`, which is
 * stable: every code is listed, with its meaning, by the `OutpostErrorCode`
 * union of src/index.d.ts (with "storage_lost", `storageLost` holds the facts).
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
 * Adds `listener` to `listeners[event]` (one Set per known event) for the
 * method `method` (`on`, `sync.on`); returns the function that removes it.
 * An unknown event or a listener that is not a function is `invalid_argument`.
 */
export function addListener(listeners, event, listener, method) {
  if (typeof event !== "string" || !Object.hasOwn(listeners, event)) {
    const known = Object.keys(listeners).map((k) => JSON.stringify(k));
    const expected = known.length > 1 ? `${known.slice(0, -1).join(", ")} or ${known.at(-1)}` : known[0];
    throw new OutpostError(`${method}: unknown event ${JSON.stringify(event)} (expected ${expected})`, "invalid_argument");
  }
  if (typeof listener !== "function") throw new OutpostError(`${method} expects a listener function`, "invalid_argument");
  listeners[event].add(listener);
  return () => listeners[event].delete(listener);
}

/** Calls a listener with one value; a throw or a rejection is reported, never propagated. */
export function notify(listener, value, what) {
  try {
    const r = listener(value);
    if (r && typeof r.then === "function") {
      r.then(undefined, (e) => console.error(`Outpost: a ${what} listener failed:`, e));
    }
  } catch (e) {
    console.error(`Outpost: a ${what} listener threw:`, e);
  }
}
