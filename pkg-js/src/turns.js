// Turns on a database shared with other tabs: one Web Lock acquisition serves
// a run of operations instead of one lock request (and one meta read) per
// operation.
//
// Every operation of a handle on IndexedDB must run under the cross-tab lock
// "outpost:<name>", after `refresh()` picked up what other tabs committed
// (docs/design.md, "Several tabs"). Asking for the lock and re-reading the
// meta record costs about as much as a point read from the page cache's misses
// (two round trips), so a handle keeps the lock while it has work:
//
// - operations queue in call order; the first one asks for the lock;
// - once granted, the handle refreshes once and runs the queue;
// - when the queue is empty it keeps the lock for one more macrotask, so that
//   the caller's `await db.put(...); await db.put(...)` (the next operation is
//   queued by a microtask) runs in the same turn;
// - it gives the lock back when idle, and at the latest after `HOLD_MS`, so
//   that other tabs (whose requests Web Locks queue in order) get theirs;
//   operations still queued then ask again (and refresh again).
//
// Between two turns another tab may commit: every turn starts with a refresh.
// Within a turn no other tab can (they wait for the lock). A tab frozen or
// closed mid-turn holds the lock no longer than today's per-operation lock
// did, plus one macrotask.

/** Longest time a handle keeps the lock while other operations keep coming. */
export const HOLD_MS = 50;

const now = () => (globalThis.performance?.now ? globalThis.performance.now() : Date.now());

/** A queue of operations run in turns under one Web Lock. */
export class Turns {
  #locks;
  #name;
  #refresh;
  /** @type {{op: Function, resolve: Function, reject: Function}[]} */
  #queue = [];
  #holding = false;
  /** Wakes a turn waiting idle for more work, or null. */
  #wake = null;
  /** How long an idle turn waits for the next operation (0: one macrotask). */
  #lingerMs;
  /** Turns taken (lock acquisitions), for tests and stats. */
  taken = 0;

  /**
   * @param {LockManager} locks `navigator.locks`
   * @param {string} name the lock name
   * @param {() => Promise<unknown>} refresh run first in every turn
   * @param {{ lingerMs?: number }} options how long an idle turn keeps the
   *   lock for a next operation (default 0: one macrotask)
   */
  constructor(locks, name, refresh = async () => {}, { lingerMs = 0 } = {}) {
    this.#locks = locks;
    this.#name = name;
    this.#refresh = refresh;
    this.#lingerMs = lingerMs;
  }

  /**
   * What every turn runs first from now on (a handle's `refresh()`, once the
   * handle exists: the open runs in the first turn, before it).
   */
  refreshWith(refresh) {
    this.#refresh = refresh;
  }

  /** Runs `op()` in a turn (after those queued before it); resolves to its result. */
  run(op) {
    return new Promise((resolve, reject) => {
      this.#queue.push({ op, resolve, reject });
      if (this.#wake) {
        const wake = this.#wake;
        this.#wake = null;
        wake(true);
      } else if (!this.#holding) {
        this.#take();
      }
    });
  }

  #take() {
    this.#holding = true;
    this.#locks
      .request(this.#name, { mode: "exclusive" }, () => this.#turn())
      .catch((e) => {
        for (const job of this.#queue.splice(0)) job.reject(e);
      })
      .finally(() => {
        this.#holding = false;
        this.#wake = null;
        if (this.#queue.length > 0) this.#take();
      });
  }

  async #turn() {
    this.taken++;
    const since = now();
    try {
      await this.#refresh();
    } catch (e) {
      for (const job of this.#queue.splice(0)) job.reject(e);
      return;
    }
    for (;;) {
      const job = this.#queue.shift();
      if (job) {
        try {
          job.resolve(await job.op());
        } catch (e) {
          job.reject(e);
        }
        if (now() - since > HOLD_MS) return;
        continue;
      }
      // Idle: one more macrotask for the caller's next operation.
      const more = await new Promise((resolve) => {
        this.#wake = resolve;
        setTimeout(() => resolve(false), this.#lingerMs);
      });
      this.#wake = null;
      if (!more && this.#queue.length === 0) return;
    }
  }
}
