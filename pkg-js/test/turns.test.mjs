// Turns (src/turns.js): operations of a handle on a shared database run in
// turns under one Web Lock. Pure scheduling logic, tested over a minimal
// exclusive lock manager with the Web Locks semantics it relies on (requests
// granted one at a time, in request order; the lock is released when the
// callback's promise settles). The real lock in Chromium is covered by the
// two-tab tests of tests/e2e/e2e.test.mjs. Also: the default page cache on
// IndexedDB (core.js, defaultCacheBytes).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Turns } from "../src/turns.js";

/** One exclusive lock, FIFO, like `navigator.locks` for a single name. */
class FifoLocks {
  #held = false;
  #waiting = [];
  grants = [];
  request(name, options, callback) {
    return new Promise((resolve, reject) => {
      const grant = async () => {
        this.#held = true;
        this.grants.push(name);
        try {
          resolve(await callback());
        } catch (e) {
          reject(e);
        } finally {
          this.#held = false;
          const next = this.#waiting.shift();
          if (next) next();
        }
      };
      if (this.#held) this.#waiting.push(grant);
      else grant();
    });
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("back-to-back operations share one turn and one refresh, in call order", async () => {
  const locks = new FifoLocks();
  let refreshes = 0;
  const turns = new Turns(locks, "outpost:t", async () => {
    refreshes++;
  });
  const order = [];
  // Awaited one after the other, as `await db.put(); await db.put()` does.
  for (let i = 0; i < 20; i++) {
    order.push(await turns.run(async () => i));
  }
  // Queued at once.
  const all = await Promise.all(Array.from({ length: 10 }, (_, i) => turns.run(() => 100 + i)));
  assert.deepEqual(order, Array.from({ length: 20 }, (_, i) => i));
  assert.deepEqual(all, Array.from({ length: 10 }, (_, i) => 100 + i));
  assert.ok(turns.taken <= 2, `${turns.taken} lock acquisitions for 30 operations`);
  assert.equal(refreshes, turns.taken, "one refresh per turn");
  // Idle: the lock is given back, and the next operation takes a new turn (and refreshes).
  await sleep(10);
  const taken = turns.taken;
  assert.equal(await turns.run(() => "later"), "later");
  assert.equal(turns.taken, taken + 1);
  assert.equal(refreshes, turns.taken);
});

test("a busy handle gives the lock to another waiting (HOLD_MS bounds a turn)", { timeout: 5000 }, async () => {
  const locks = new FifoLocks();
  const a = new Turns(locks, "outpost:t", async () => {});
  const b = new Turns(locks, "outpost:t", async () => {});
  let stop = false;
  let aOps = 0;
  const busy = (async () => {
    while (!stop) {
      await a.run(() => sleep(2));
      aOps++;
    }
  })();
  await sleep(5);
  // Without the HOLD_MS bound the busy handle never lets go and this waits
  // until the test's time limit.
  const busyWhenBGotIn = await b.run(() => !stop);
  stop = true;
  await busy;
  assert.ok(busyWhenBGotIn, "the other handle got in while the busy one kept asking");
  assert.ok(a.taken >= 2, "the busy handle took the lock again after giving it back");
  assert.ok(aOps > 0);
});

test("a failing operation rejects alone; a failing refresh rejects the turn's queue and the next one tries again", async () => {
  const locks = new FifoLocks();
  let failRefresh = false;
  const turns = new Turns(locks, "outpost:t", async () => {
    if (failRefresh) throw new Error("refresh failed");
  });
  const [ok1, bad, ok2] = await Promise.allSettled([
    turns.run(() => 1),
    turns.run(() => {
      throw new Error("op failed");
    }),
    turns.run(() => 2),
  ]);
  assert.equal(ok1.value, 1);
  assert.equal(bad.reason.message, "op failed");
  assert.equal(ok2.value, 2);

  await sleep(10);
  failRefresh = true;
  const r = await Promise.allSettled([turns.run(() => 3), turns.run(() => 4)]);
  assert.deepEqual(
    r.map((x) => x.reason?.message),
    ["refresh failed", "refresh failed"],
  );
  failRefresh = false;
  assert.equal(await turns.run(() => 5), 5);
});

test("a lock request that fails rejects what is queued", async () => {
  const locks = {
    request: () => Promise.reject(new Error("no locks here")),
  };
  const turns = new Turns(locks, "outpost:t", async () => {});
  await assert.rejects(turns.run(() => 1), /no locks here/);
});

test("the default page cache on IndexedDB follows the device memory the browser reports", async () => {
  const { defaultCacheBytes } = await import("../src/core.js");
  const MiB = 1024 * 1024;
  assert.equal(defaultCacheBytes(8), 256 * MiB);
  assert.equal(defaultCacheBytes(4), 128 * MiB);
  assert.equal(defaultCacheBytes(2), 64 * MiB);
  assert.equal(defaultCacheBytes(0.5), 32 * MiB);
  assert.equal(defaultCacheBytes(64), 256 * MiB);
  assert.equal(defaultCacheBytes(undefined), 64 * MiB);
  assert.equal(defaultCacheBytes("garbage"), 64 * MiB);
});

test("an open run as the first turn shares it with the operation that follows; later turns refresh", async () => {
  const locks = new FifoLocks();
  const turns = new Turns(locks, "outpost:t");
  let refreshes = 0;
  const handle = await turns.run(async () => ({ opened: true }));
  turns.refreshWith(async () => {
    refreshes++;
  });
  assert.ok(handle.opened);
  assert.equal(await turns.run(() => "first read"), "first read");
  assert.equal(turns.taken, 1, "the open and the first read in one turn");
  assert.equal(refreshes, 0);
  await sleep(10);
  await turns.run(() => "later");
  assert.equal(turns.taken, 2);
  assert.equal(refreshes, 1);
});

test("lingerMs: an idle turn waits that long for the next operation (a worker's calls arrive as messages)", async () => {
  const locks = new FifoLocks();
  let refreshes = 0;
  const refresh = async () => {
    refreshes++;
  };
  // Calls 2 ms apart: with the default (one macrotask) every call is a turn of its own...
  const eager = new Turns(locks, "outpost:t", refresh);
  for (let i = 0; i < 3; i++) {
    await eager.run(() => i);
    await sleep(2);
  }
  assert.equal(eager.taken, 3);
  // ...with a linger of 50 ms they share one turn and one refresh.
  refreshes = 0;
  const lingering = new Turns(locks, "outpost:t", refresh, { lingerMs: 50 });
  for (let i = 0; i < 2; i++) {
    await lingering.run(() => i);
    await sleep(2);
  }
  assert.equal(lingering.taken, 1);
  assert.equal(refreshes, 1);
  // Idle longer than the linger: the lock is given back, another handle gets it.
  await sleep(80);
  const other = new Turns(locks, "outpost:t", refresh);
  await other.run(() => "other");
  assert.equal(other.taken, 1);
  await lingering.run(() => "again");
  assert.equal(lingering.taken, 2, "a new turn (and a refresh) after the other handle's");
  assert.equal(refreshes, 3);
});

/**
 * One exclusive lock with the parts of Web Locks a frozen holder needs:
 * `signal` (a waiting request is dropped and rejects when aborted) and
 * `steal` (granted at once; the previous holder's request rejects with an
 * AbortError while its callback runs on).
 */
class StealLocks {
  #holder = null;
  #waiting = [];
  request(name, options, callback) {
    return new Promise((resolve, reject) => {
      const entry = { reject, stolen: false };
      entry.grant = () => {
        this.#holder = entry;
        Promise.resolve()
          .then(callback)
          .then(
            (v) => {
              if (!entry.stolen) resolve(v);
            },
            (e) => {
              if (!entry.stolen) reject(e);
            },
          )
          .finally(() => {
            if (this.#holder !== entry) return;
            this.#holder = null;
            this.#waiting.shift()?.grant();
          });
      };
      if (options.steal) {
        const old = this.#holder;
        if (old) {
          old.stolen = true;
          old.reject(new DOMException("the lock was stolen", "AbortError"));
        }
        entry.grant();
        return;
      }
      options.signal?.addEventListener("abort", () => {
        const i = this.#waiting.indexOf(entry);
        if (i < 0) return;
        this.#waiting.splice(i, 1);
        reject(new DOMException("aborted", "AbortError"));
      });
      if (this.#holder) this.#waiting.push(entry);
      else entry.grant();
    });
  }
}

const fast = { staleMs: 40, answerMs: 60 };

test("a holder that never answers (a frozen tab) loses the lock: the waiting handle takes it by force and takes the store over first", async () => {
  const locks = new StealLocks();
  // A holder that is not a handle of this process: it never answers a ping.
  let granted;
  const frozen = new Promise((r) => (granted = r));
  locks
    .request("outpost:f", { mode: "exclusive" }, () => {
      granted();
      return new Promise(() => {});
    })
    .catch(() => {}); // rejects when the lock is taken from it
  await frozen;
  const refreshes = [];
  const turns = new Turns(locks, "outpost:f", async (stolen) => refreshes.push(stolen), fast);
  assert.equal(await turns.run(async () => "written"), "written");
  assert.equal(turns.steals, 1);
  assert.equal(turns.pings, 1, "the holder was asked once before its lock was taken");
  assert.deepEqual(refreshes, [true], "the stolen turn's refresh is told to take the store over");
  // Later turns are ordinary ones.
  await sleep(10);
  await turns.run(async () => "again");
  assert.deepEqual(refreshes, [true, false]);
  turns.close();
});

test("a live holder answers and keeps its lock however long its turn takes", async () => {
  const locks = new StealLocks();
  const a = new Turns(locks, "outpost:l", async () => {}, fast);
  const b = new Turns(locks, "outpost:l", async () => {}, fast);
  const order = [];
  const slow = a.run(async () => {
    await sleep(400); // ten times what b waits before it asks
    order.push("a");
  });
  await sleep(5);
  await b.run(async () => order.push("b"));
  await slow;
  assert.deepEqual(order, ["a", "b"]);
  assert.equal(b.steals, 0, "the lock of a handle that answered was taken");
  a.close();
  b.close();
});

test("a handle whose lock was taken from it: the fenced operation runs again in its next turn, after the other's", async () => {
  const locks = new StealLocks();
  const aRefreshes = [];
  const a = new Turns(locks, "outpost:s", async (stolen) => aRefreshes.push(stolen), fast);
  const b = new Turns(locks, "outpost:s", async () => {}, fast);
  const log = [];
  let wake;
  const gate = new Promise((r) => (wake = r));
  let tries = 0;
  const aWrite = a.run(async () => {
    tries++;
    if (tries === 1) {
      await gate; // "frozen" mid-operation
      // Its commit meets the new fence token.
      throw Object.assign(new Error("fenced"), { code: "locked" });
    }
    log.push("a");
    return "a done";
  });
  const aNext = a.run(async () => {
    log.push("a2");
  });
  await sleep(5);
  a.close(); // stops answering pings, as a frozen tab does
  await b.run(async () => log.push("b"));
  assert.equal(b.steals, 1);
  wake();
  assert.equal(await aWrite, "a done");
  await aNext;
  assert.deepEqual(log, ["b", "a", "a2"]);
  assert.equal(tries, 2, "run again once");
  assert.deepEqual(aRefreshes, [false, false], "the retry starts a new turn with a refresh");
  // An error other than the fence is not retried, and a second fence error is reported.
  await assert.rejects(
    a.run(async () => {
      throw Object.assign(new Error("quota"), { code: "quota_exceeded" });
    }),
    /quota/,
  );
  b.close();
});

test("keep: a lone handle keeps the lock while idle (one lock request and one refresh for operations spread over time), and gives it back at once when another asks", async () => {
  const locks = new StealLocks();
  let refreshes = 0;
  const a = new Turns(locks, "outpost:k", async () => refreshes++, { keep: true, ...fast });
  for (let i = 0; i < 5; i++) {
    await a.run(async () => i);
    await sleep(30); // idle between operations, far longer than a macrotask
  }
  assert.equal(a.taken, 1, "one lock acquisition for five operations with idle time between");
  assert.equal(refreshes, 1, "one refresh");
  // Another handle asks: the idle holder gives the lock back on its "want",
  // before it would need a ping.
  const b = new Turns(locks, "outpost:k", async () => {}, { keep: true, staleMs: 10_000, answerMs: 60 });
  await b.run(async () => "b");
  assert.equal(b.pings, 0, "the idle holder needed a ping");
  assert.equal(b.steals, 0);
  // And back: a's next operation asks b, which now keeps the lock.
  await a.run(async () => "a again");
  assert.equal(a.taken, 2);
  a.close();
  b.close();
});

test("keep: a busy holder gives the lock to a handle that asks once its turn is HOLD_MS old; close() gives it back", async () => {
  const locks = new StealLocks();
  const a = new Turns(locks, "outpost:kb", async () => {}, { keep: true, ...fast });
  let stop = false;
  let done = 0;
  const loop = (async () => {
    while (!stop) {
      await a.run(async () => {
        await sleep(2);
        done++;
      });
    }
  })();
  await sleep(20);
  const b = new Turns(locks, "outpost:kb", async () => {}, { keep: true, ...fast });
  await b.run(async () => "b");
  assert.equal(b.steals, 0, "a live holder's lock was taken by force");
  stop = true;
  await loop;
  assert.ok(done > 5);
  // Whichever of them holds the lock keeps it while idle; close() gives it
  // back, so a handle that does not even ask (no BroadcastChannel message)
  // gets it at once.
  a.close();
  b.close();
  // (c never pings nor takes the lock by force: if nobody gave it back, this
  // would wait until the test's timeout.)
  const c = new Turns(locks, "outpost:kb", async () => {}, { staleMs: 0 });
  assert.equal(await c.run(async () => "c"), "c");
});

test("waiting: true while operations are queued behind the running one, or another handle asked for the lock", async () => {
  const locks = new StealLocks();
  const a = new Turns(locks, "outpost:w", async () => {}, { keep: true, ...fast });
  const seen = [];
  // Alone: nothing waits.
  await a.run(async () => seen.push(a.waiting));
  // An operation queued while one runs: the running one sees it.
  let release;
  const running = a.run(async () => {
    await new Promise((r) => (release = r));
    seen.push(a.waiting);
  });
  await sleep(5);
  const queued = a.run(async () => seen.push(a.waiting));
  release();
  await Promise.all([running, queued]);
  assert.deepEqual(seen, [false, true, false]);
  // Another handle asks for the lock while a's operation runs.
  const b = new Turns(locks, "outpost:w", async () => {}, { keep: true, staleMs: 10_000, answerMs: 60 });
  let sawWant = false;
  const long = a.run(async () => {
    for (let i = 0; i < 100 && !a.waiting; i++) await sleep(5);
    sawWant = a.waiting;
  });
  await sleep(5);
  const other = b.run(async () => "b");
  await long;
  assert.equal(sawWant, true, "a running operation sees that another handle wants the lock");
  assert.equal(await other, "b");
  a.close();
  b.close();
});

test("a take-over that fails is owed: the next turn takes the store over again before any operation", async () => {
  const locks = new StealLocks();
  locks
    .request("outpost:o", { mode: "exclusive" }, () => new Promise(() => {}))
    .catch(() => {});
  const refreshes = [];
  let fail = true;
  const turns = new Turns(
    locks,
    "outpost:o",
    async (stolen) => {
      refreshes.push(stolen);
      if (stolen && fail) {
        fail = false;
        throw Object.assign(new Error("quota"), { code: "quota_exceeded" });
      }
    },
    fast,
  );
  await assert.rejects(turns.run(async () => "first"), /quota/);
  assert.equal(await turns.run(async () => "second"), "second");
  assert.deepEqual(refreshes, [true, true], "the second turn (not stolen itself) took the store over again");
  await sleep(10);
  await turns.run(async () => "third");
  assert.deepEqual(refreshes, [true, true, false]);
  turns.close();
});

test("a failed take-over is owed to the next handle of the same database too (an open that failed and is tried again)", async () => {
  const locks = new StealLocks();
  locks
    .request("outpost:p", { mode: "exclusive" }, () => new Promise(() => {}))
    .catch(() => {});
  const refreshes = [];
  let fail = true;
  const refresh = async (stolen) => {
    refreshes.push(stolen);
    if (stolen && fail) {
      fail = false;
      throw Object.assign(new Error("quota"), { code: "quota_exceeded" });
    }
  };
  // The open: its first turn takes the lock by force, and the take-over fails.
  const first = new Turns(locks, "outpost:p", refresh, fast);
  await assert.rejects(first.run(async () => "open"), /quota/);
  first.close();
  // The application opens again: a new handle, which gets the lock without
  // force, still takes the store over first.
  const second = new Turns(locks, "outpost:p", refresh, fast);
  assert.equal(await second.run(async () => "opened"), "opened");
  assert.deepEqual(refreshes, [true, true]);
  second.close();
  // Paid: a third handle owes nothing, and neither does another database.
  const third = new Turns(locks, "outpost:p", refresh, fast);
  await third.run(async () => "x");
  assert.deepEqual(refreshes, [true, true, false]);
  third.close();
  const other = [];
  const elsewhere = new Turns(locks, "outpost:q", async (stolen) => other.push(stolen), fast);
  await elsewhere.run(async () => "y");
  assert.deepEqual(other, [false]);
  elsewhere.close();
});
