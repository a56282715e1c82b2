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
//   operations still queued then ask again (and refresh again);
// - or (`keep`, on a visible page) it keeps the lock while idle until
//   another handle asks for it: a handle that requests the lock says so
//   ("want" on the BroadcastChannel below), and the holder gives it back when
//   idle, or after its current operation once its turn is `HOLD_MS` old. A
//   lone tab then takes the lock and reads the meta record once, not once
//   per burst of operations. A hidden page (the kind browsers freeze) keeps
//   nothing.
//
// Between two turns another tab may commit: every turn starts with a refresh.
// Within a turn no other tab can (they wait for the lock).
//
// A holder that stops answering. A tab closed mid-turn gives the lock back
// (the browser releases a closed context's locks; its unfinished IndexedDB
// transaction is aborted, so nothing half-written stays). A tab frozen, hung
// or paused mid-turn does not, and would block every other tab for as long
// as it stays so. So a handle that has waited `staleMs` for the lock asks
// the holder whether it is alive (a ping on the BroadcastChannel
// "<lock name>:turns", which every handle in a turn answers); with no answer
// within `answerMs` it takes the lock by force (`steal: true`) and starts
// its turn with `takeOver` (the store writes a new fence token) before the
// refresh. When the old holder wakes, its commits fail with "locked" and
// write nothing (the store checks the token inside each commit's
// transaction), its turn ends after the operation under way, and that
// operation runs once more in its next turn, which reads the state first.

/** Longest time a handle keeps the lock while other operations keep coming. */
export const HOLD_MS = 50;
/** How long a handle waits for the lock before it asks whether the holder is alive. */
export const STALE_MS = 1000;
/** How long the holder has to answer before its lock is taken by force. */
export const ANSWER_MS = 2000;

const now = () => (globalThis.performance?.now ? globalThis.performance.now() : Date.now());

/** A queue of operations run in turns under one Web Lock. */
/**
 * Lock names whose take-over is owed in this context (see `#owed`): a new
 * handle of the same database (an open that failed and is tried again)
 * inherits the debt, so its first turn takes the store over although it
 * got the lock normally. Lost with the context (a reload), like the lock.
 */
const owedTakeOvers = new Set();

export class Turns {
  #locks;
  #name;
  #refresh;
  /** @type {{op: Function, resolve: Function, reject: Function, retried?: boolean}[]} */
  #queue = [];
  #holding = false;
  /** Wakes a turn waiting idle for more work, or null. */
  #wake = null;
  /** How long an idle turn waits for the next operation (0: one macrotask). */
  #lingerMs;
  #staleMs;
  #answerMs;
  /** The BroadcastChannel of pings and answers (created on first use), or null. */
  #channel = null;
  /** Pings of this handle waiting for an answer: nonce -> resolve. */
  #pings = new Map();
  /** The turn running now (`{ stolen, lost }`), or null. */
  #current = null;
  /** Whether an idle turn keeps the lock until another handle asks for it. */
  #keep;
  /** Another handle asked for the lock during the current turn. */
  #wanted = false;
  /** A lock taken by force whose take-over (the refresh told `stolen`) has not succeeded yet. */
  #owed = false;
  #closed = false;
  /** The visibilitychange listener (when `keep`), or null. */
  #onHidden = null;
  /** Turns taken (lock acquisitions), for tests and stats. */
  taken = 0;
  /** Pings sent while waiting for the lock (asking the holder whether it is alive), for tests and stats. */
  pings = 0;
  /** Locks taken by force from a holder that did not answer, for tests and stats. */
  steals = 0;
  /** Operations refused by the fence of a handle that took the lock by force, and run again. */
  fenced = 0;

  /**
   * @param {LockManager} locks `navigator.locks`
   * @param {string} name the lock name
   * @param {(stolen: boolean) => Promise<unknown>} refresh run first in every
   *   turn; `stolen`: the lock was taken by force (take the store over first)
   * @param {{ lingerMs?: number, staleMs?: number, answerMs?: number, keep?: boolean }} options
   *   how long an idle turn keeps the lock for a next operation (default 0:
   *   one macrotask); how long to wait for the lock before asking whether
   *   the holder is alive, and how long it has to answer (0: never take it
   *   by force); `keep`: an idle turn keeps the lock until another handle
   *   asks for it (needs BroadcastChannel; given up while the page is hidden)
   */
  constructor(locks, name, refresh = async () => {}, { lingerMs = 0, staleMs = STALE_MS, answerMs = ANSWER_MS, keep = false } = {}) {
    this.#locks = locks;
    this.#name = name;
    this.#owed = owedTakeOvers.has(name);
    this.#refresh = refresh;
    this.#lingerMs = lingerMs;
    const channels = typeof globalThis.BroadcastChannel === "function";
    this.#staleMs = channels && typeof globalThis.AbortController === "function" ? staleMs : 0;
    this.#answerMs = answerMs;
    this.#keep = keep && channels;
    const doc = globalThis.document;
    if (this.#keep && typeof doc?.addEventListener === "function") {
      this.#onHidden = () => {
        if (doc.visibilityState === "hidden") this.#yield();
      };
      doc.addEventListener("visibilitychange", this.#onHidden);
    }
  }

  /** Whether an idle turn keeps the lock now. */
  #keeping() {
    return this.#keep && !this.#closed && globalThis.document?.visibilityState !== "hidden";
  }

  /** Ends the current turn at the next operation boundary (now, if idle). */
  #yield() {
    if (!this.#current) return;
    this.#wanted = true;
    if (this.#wake) {
      const wake = this.#wake;
      this.#wake = null;
      wake(false);
    }
  }

  /**
   * What every turn runs first from now on (a handle's `refresh()`, once the
   * handle exists: the open runs in the first turn, before it).
   */
  refreshWith(refresh) {
    this.#refresh = refresh;
  }

  /**
   * Whether the turn running now took the lock by force (the open, which
   * runs before a refresh exists, takes the store over itself then).
   */
  get stolen() {
    return this.#current?.stolen === true;
  }

  /** Gives the lock back when idle and stops answering pings (the handle is closing). */
  close() {
    this.#closed = true;
    this.#yield();
    if (this.#onHidden) {
      globalThis.document?.removeEventListener?.("visibilitychange", this.#onHidden);
      this.#onHidden = null;
    }
    if (this.#channel) {
      this.#channel.onmessage = null;
      this.#channel.close();
      this.#channel = null;
    }
  }

  /**
   * Whether something waits for the operation running now: operations
   * queued behind it, or another tab that asked for the lock. A long
   * operation that can stop early (an index step) asks this.
   */
  get waiting() {
    return this.#queue.length > 0 || this.#wanted;
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

  #chan() {
    if (!this.#channel) {
      const ch = new BroadcastChannel(`${this.#name}:turns`);
      ch.onmessage = (e) => {
        const d = e.data;
        if ((d?.ping || d?.want) && this.#current && !this.#current.lost) {
          // Another handle waits for the lock.
          this.#yield();
          if (d.ping) ch.postMessage({ pong: d.ping });
        } else if (d?.pong) this.#pings.get(d.pong)?.();
      };
      // A Node process does not stay alive for it.
      ch.unref?.();
      this.#channel = ch;
    }
    return this.#channel;
  }

  /** Resolves to whether a handle holding the lock answers within `answerMs`. */
  #ping() {
    this.pings++;
    return new Promise((resolve) => {
      const nonce = `${Math.random()}`.slice(2) + Date.now();
      const timer = setTimeout(() => {
        this.#pings.delete(nonce);
        resolve(false);
      }, this.#answerMs);
      this.#pings.set(nonce, () => {
        clearTimeout(timer);
        this.#pings.delete(nonce);
        resolve(true);
      });
      this.#chan().postMessage({ ping: nonce });
    });
  }

  /**
   * While the lock is awaited: every `staleMs`, asks the holder whether it is
   * alive; aborts the request (reason "stale") when it does not answer.
   * Returns the function that stops watching.
   */
  #watch(ac) {
    let done = false;
    let timer;
    const check = async () => {
      if (done) return;
      const alive = await this.#ping();
      if (done) return;
      if (alive) timer = setTimeout(check, this.#staleMs);
      else ac.abort("stale");
    };
    timer = setTimeout(check, this.#staleMs);
    return () => {
      done = true;
      clearTimeout(timer);
    };
  }

  async #take() {
    this.#holding = true;
    try {
      let steal = false;
      for (;;) {
        const ac = !steal && this.#staleMs > 0 ? new AbortController() : undefined;
        const stop = ac ? this.#watch(ac) : () => {};
        const options = steal ? { mode: "exclusive", steal: true } : ac ? { mode: "exclusive", signal: ac.signal } : { mode: "exclusive" };
        const ctx = { stolen: steal, lost: false };
        // A holder that keeps the lock while idle gives it back when asked.
        if (!steal && this.#staleMs > 0) this.#chan().postMessage({ want: true });
        let turn;
        try {
          await this.#locks.request(this.#name, options, () => {
            stop();
            turn = this.#turn(ctx);
            return turn;
          });
        } catch (e) {
          stop();
          if (turn) {
            // Taken from this handle by force mid-turn: the turn ends after
            // the operation under way (whose commit, if any, now fails).
            ctx.lost = true;
            await turn;
          } else if (ac?.signal.aborted && ac.signal.reason === "stale") {
            this.steals++;
            steal = true;
            continue;
          } else {
            for (const job of this.#queue.splice(0)) job.reject(e);
          }
        }
        return;
      }
    } finally {
      this.#holding = false;
      this.#wake = null;
      if (this.#queue.length > 0) this.#take();
    }
  }

  async #turn(ctx) {
    this.taken++;
    this.#current = ctx;
    this.#wanted = false;
    // Listen for pings while holding the lock: a handle waiting for it asks.
    if (typeof globalThis.BroadcastChannel === "function") this.#chan();
    const since = now();
    try {
      // A take-over that failed (a full quota refusing the fence token) is
      // owed until one succeeds: until then a woken old holder could still
      // commit.
      const stolen = ctx.stolen || this.#owed;
      try {
        await this.#refresh(stolen);
        this.#owed = false;
        owedTakeOvers.delete(this.#name);
      } catch (e) {
        if (stolen) {
          this.#owed = true;
          owedTakeOvers.add(this.#name);
        }
        for (const job of this.#queue.splice(0)) job.reject(e);
        return;
      }
      for (;;) {
        if (ctx.lost) return;
        const job = this.#queue.shift();
        if (job) {
          try {
            job.resolve(await job.op());
          } catch (e) {
            if (e?.code === "locked" && !job.retried) {
              // Fenced out by a handle that took the lock by force (this
              // turn is lost, whether or not the lock's rejection arrived
              // yet): nothing of it was written; run it again in the next
              // turn, after a refresh.
              job.retried = true;
              this.fenced++;
              this.#queue.unshift(job);
              return;
            }
            job.reject(e);
          }
          if (now() - since > HOLD_MS && (this.#wanted || !this.#keeping())) return;
          continue;
        }
        // Idle: one more macrotask for the caller's next operation.
        const more = await new Promise((resolve) => {
          this.#wake = resolve;
          if (this.#wanted || !this.#keeping()) setTimeout(() => resolve(false), this.#lingerMs);
        });
        this.#wake = null;
        if (!more && this.#queue.length === 0) return;
      }
    } finally {
      if (this.#current === ctx) this.#current = null;
    }
  }
}
