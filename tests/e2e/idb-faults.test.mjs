// Fault injection for the IndexedDB page store (issue 14 §2), in Node: the
// real store of the npm package (crate/src/store/idb: commits as log
// records, folds into page records, the meta record) over fake-indexeddb,
// an in-memory IndexedDB, whose write requests this test counts. For every
// point k of a workload (single writes, transactions, large transactions
// that fold the log into page records and runs, deletes), a run fails the k-th write request: its
// transaction is aborted, as a crash or a full disk would leave it, and
// the "process" is dead from then on (every later transaction fails). A new
// handle, as after a restart, then opens the same database and must hold
// every write acknowledged before, and of the write in flight either all
// or nothing, with count and collection counters agreeing; it must take
// new writes and open again after them.
//
// Runs the packed package installed here (run.sh); no browser.
import "fake-indexeddb/auto";
import { test } from "node:test";
import assert from "node:assert/strict";
import { IDBFactory } from "fake-indexeddb";
import { Outpost } from "@outpost/db";

/** Write requests issued so far, and the one to fail (0: none). */
const fault = { writes: 0, failAt: 0, dead: false };

const proto = globalThis.IDBObjectStore.prototype;
for (const name of ["put", "add", "delete", "clear"]) {
  const original = proto[name];
  proto[name] = function (...args) {
    if (fault.dead) throw new DOMException("the process died", "InvalidStateError");
    fault.writes += 1;
    if (fault.writes === fault.failAt) {
      // The k-th write: its transaction never commits, and nothing after it.
      fault.dead = true;
      const req = original.apply(this, args);
      this.transaction.abort();
      return req;
    }
    return original.apply(this, args);
  };
}
const openTx = globalThis.IDBDatabase.prototype.transaction;
globalThis.IDBDatabase.prototype.transaction = function (...args) {
  if (fault.dead) throw new DOMException("the process died", "InvalidStateError");
  return openTx.apply(this, args);
};

/** The workload: a list of operations, each one transaction. */
function workload() {
  const ops = [];
  // 20 rounds: folds write runs (one value for many pages), so a round
  // issues fewer write requests than before them; 20 keep it above 50.
  for (let r = 0; r < 20; r++) {
    ops.push({ items: [[`s/${r}`, { r }]] });
    ops.push({ items: Array.from({ length: 20 }, (_, i) => [`t/${r}/${i}`, { r, i, pad: "y".repeat(300) }]) });
    if (r % 4 === 3) ops.push({ items: Array.from({ length: 80 }, (_, i) => [`big/${r}/${i}`, { r, pad: "z".repeat(900) }]) });
    if (r % 3 === 2) ops.push({ items: [[`s/${r - 1}`, null]] });
  }
  return ops;
}

const NAME = "faults";

/** Runs the workload until it fails; returns the acknowledged state and the operation in flight. */
async function run() {
  const acked = new Map();
  let inFlight = null;
  try {
    // The first requests create the database: a fault there fails the open.
    const db = await Outpost.open(NAME, { storage: "indexeddb" });
    for (const op of workload()) {
      inFlight = op;
      await db.transaction(
        op.items.map(([id, body]) => (body === null ? { type: "delete", id } : { type: "put", id, doc: body, collection: "Things" })),
      );
      for (const [id, body] of op.items) acked.set(id, body);
      inFlight = null;
    }
    await db.close();
  } catch {
    // The failed write (and the dead process): the handle is abandoned, not closed.
  }
  return { acked, inFlight };
}

/** Opens the database as after a restart and checks it against what was acknowledged. */
async function check(acked, inFlight, k) {
  const db = await Outpost.open(NAME, { storage: "indexeddb" });
  const docs = await db.scan({});
  const held = new Map(docs.map((d) => [d["@metadata"]["@id"], d]));
  for (const [id, body] of acked) {
    if (inFlight?.items.some(([i]) => i === id)) continue;
    if (body === null) assert.ok(!held.has(id), `k=${k}: ${id} was deleted and acknowledged`);
    else assert.equal(held.get(id)?.r, body.r, `k=${k}: acknowledged ${id} is missing`);
  }
  if (inFlight) {
    const applied = inFlight.items.map(([id, body]) => (body === null ? !held.has(id) : held.has(id) && held.get(id).i === body.i && held.get(id).r === body.r));
    const before = inFlight.items.map(([id]) => (acked.has(id) ? acked.get(id) !== null : false));
    // All of the write in flight, or none of it (a delete "not applied" means the document is as before).
    const all = applied.every(Boolean);
    const none = inFlight.items.every(([id, body], i) => (body === null ? held.has(id) === before[i] : !held.has(id) || acked.has(id)));
    assert.ok(all || none, `k=${k}: the write in flight is half there`);
  }
  assert.equal(await db.count(), docs.length, `k=${k}: count() and scan disagree`);
  const things = (await db.collections()).find((c) => c.name === "Things")?.count ?? 0;
  assert.equal(things, docs.length, `k=${k}: the collection counter disagrees`);
  // Writable, and it opens again after.
  await db.transaction([{ type: "put", id: "after/1", doc: { ok: true }, collection: "Things" }]);
  await db.close();
  const again = await Outpost.open(NAME, { storage: "indexeddb" });
  assert.deepEqual((await again.get("after/1"))?.ok, true, `k=${k}: a write after recovery`);
  assert.equal(await again.count(), docs.length + 1);
  await again.close();
}

test("the IndexedDB store, failed at every write request of a workload, reopens with every acknowledged write and none half-applied", { timeout: 600_000 }, async () => {
  // A clean run counts the write requests.
  globalThis.indexedDB = new IDBFactory();
  Object.assign(fault, { writes: 0, failAt: 0, dead: false });
  const clean = await run();
  assert.equal(clean.inFlight, null);
  const total = fault.writes;
  assert.ok(total > 50, `${total} write requests`);
  let failed = 0;
  for (let k = 1; k <= total; k++) {
    globalThis.indexedDB = new IDBFactory();
    Object.assign(fault, { writes: 0, failAt: k, dead: false });
    const { acked, inFlight } = await run();
    if (inFlight) failed += 1;
    fault.dead = false;
    fault.failAt = 0;
    await check(acked, inFlight, k);
  }
  console.log(`# ${total} write requests in the workload; each failed in turn (${failed} runs stopped by it), every reopen checked`);
  assert.ok(failed > total / 2, "the faults stopped the workload");
});
