// `subscribe` in Node (in-memory store: no Web Locks, no BroadcastChannel):
// callbacks get the documents changed by local puts, deletes and transactions,
// filtered by prefix or collection, in etag order; unsubscribing stops them;
// a throwing callback does not break the handle.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Outpost, OutpostError } from "@outpost/db";

/** Collects what a subscription receives; `until(n)` waits for n documents in all. */
function recorder() {
  const calls = [];
  let waiters = [];
  const docs = () => calls.flat();
  const callback = (batch) => {
    assert.ok(Array.isArray(batch) && batch.length > 0, "callbacks get a non-empty array");
    calls.push(batch);
    waiters = waiters.filter((w) => !w());
  };
  const until = (n, ms = 2000) =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (docs().length >= n) {
          clearTimeout(timer);
          resolve(docs());
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => reject(new Error(`timed out: ${docs().length} of ${n} documents`)), ms);
      if (!check()) waiters.push(check);
    });
  return { calls, docs, callback, until };
}

/** Lets pending notifications run (they are delivered asynchronously after a write). */
const settle = () => new Promise((r) => setTimeout(r, 50));
const ids = (docs) => docs.map((d) => d["@metadata"]["@id"]);

test("subscribe sees puts, deletes and transactions, filtered by prefix and collection", async () => {
  const db = await Outpost.open("sub-filters");
  await db.put("notes/0", { before: true }, { collection: "Notes" }); // before subscribing: not delivered

  const all = recorder();
  const notes = recorder();
  const tasks = recorder();
  const unsubAll = db.subscribe({}, all.callback);
  const unsubNotes = db.subscribe({ prefix: "NOTES/" }, notes.callback); // prefixes are case-insensitive
  const unsubTasks = db.subscribe({ collection: "tasks" }, tasks.callback); // so are collections
  assert.equal(typeof unsubAll, "function");

  await db.put("notes/1", { title: "one" }, { collection: "Notes" });
  await db.put("tasks/1", { title: "task" }, { collection: "Tasks" });
  await db.transaction(async (tx) => {
    tx.put("notes/2", { title: "two" }, { collection: "Notes" });
    tx.put("tasks/2", { title: "task 2" }, { collection: "Tasks" });
    tx.delete("notes/0");
  });
  await db.delete("tasks/1");
  await db.delete("tasks/404"); // nothing to delete: nothing delivered
  await db.transaction([{ type: "put", id: "other/1", doc: { x: 1 } }]);

  const got = await all.until(7);
  assert.deepEqual(ids(got), ["notes/1", "tasks/1", "notes/2", "tasks/2", "notes/0", "tasks/1", "other/1"]);
  const etags = got.map((d) => d["@metadata"]["@etag"]);
  assert.deepEqual(etags, [...etags].sort((a, b) => a - b), "in etag order");
  assert.equal(got[0].title, "one", "documents come with their body");
  assert.equal(got[4]["@metadata"]["@deleted"], true, "deletes are marked");
  assert.equal(got[5]["@metadata"]["@deleted"], true);
  assert.equal(got[0]["@metadata"]["@deleted"], undefined);

  assert.deepEqual(ids(await notes.until(3)), ["notes/1", "notes/2", "notes/0"]);
  assert.deepEqual(ids(await tasks.until(3)), ["tasks/1", "tasks/2", "tasks/1"]);
  await settle();
  assert.equal(all.docs().length, 7, "nothing delivered twice");
  assert.equal(notes.docs().length, 3);
  assert.equal(tasks.docs().length, 3);
  assert.ok(tasks.calls.every((batch) => batch.every((d) => d["@metadata"]["@collection"] === "Tasks")));

  // Unsubscribing stops further calls (and only for that subscription).
  unsubNotes();
  unsubNotes(); // twice is harmless
  await db.put("notes/3", { title: "three" }, { collection: "Notes" });
  await all.until(8);
  await settle();
  assert.equal(notes.docs().length, 3);
  unsubAll();
  unsubTasks();
  await db.put("notes/4", {});
  await db.put("tasks/4", {}, { collection: "Tasks" });
  await settle();
  assert.equal(all.docs().length, 8);
  assert.equal(tasks.docs().length, 3);

  // Subscribing again starts from now.
  const again = recorder();
  const unsub = db.subscribe({ prefix: "notes/" }, again.callback);
  await db.put("notes/5", {});
  assert.deepEqual(ids(await again.until(1)), ["notes/5"]);
  unsub();
  await db.close();
});

test("many writes without awaiting: each change is delivered once, in order", async () => {
  const db = await Outpost.open("sub-many");
  const rec = recorder();
  const unsub = db.subscribe({ prefix: "n/" }, rec.callback);
  await Promise.all(Array.from({ length: 600 }, (_, i) => db.put(`n/${i}`, { i })));
  const got = await rec.until(600, 10_000);
  await settle();
  assert.equal(rec.docs().length, 600);
  assert.deepEqual(new Set(got.map((d) => d.i)).size, 600);
  const etags = got.map((d) => d["@metadata"]["@etag"]);
  assert.deepEqual(etags, [...etags].sort((a, b) => a - b));
  unsub();
  await db.close();
});

test("a large commit reaches subscribers in several tasks: the event loop runs in between", async () => {
  const db = await Outpost.open("sub-large");
  const n = 20_000;
  // Another task ticking all along: at each page the subscriber gets, how
  // many ticks have run. A pass that never let the event loop go on would
  // deliver every page within one task, between the same two ticks.
  let ticks = 0;
  let ticking = true;
  const ch = new MessageChannel();
  ch.port1.onmessage = () => {
    ticks++;
    if (ticking) ch.port2.postMessage(undefined);
  };
  ch.port2.postMessage(undefined);
  const pages = [];
  let got = 0;
  const unsub = db.subscribe({}, (docs) => {
    pages.push(ticks);
    got += docs.length;
  });
  await db.transaction(async (tx) => {
    for (let i = 0; i < n; i++) tx.put(`big/${String(i).padStart(5, "0")}`, { i, text: "x".repeat(200) });
  });
  for (let k = 0; got < n && k < 600; k++) await settle();
  ticking = false;
  ch.port1.close();
  assert.equal(got, n);
  assert.ok(pages.length >= n / 256, `${pages.length} pages`);
  assert.ok(pages[pages.length - 1] > pages[0], `ticks at the first and the last page: ${pages[0]}, ${pages[pages.length - 1]}`);
  unsub();
  await db.close();
});

test("a throwing (or rejecting) callback does not break the handle or other subscribers", async () => {
  const db = await Outpost.open("sub-throws");
  const errors = [];
  const origError = console.error;
  console.error = (...args) => errors.push(args);
  try {
    db.subscribe({}, () => {
      throw new Error("boom");
    });
    db.subscribe({}, async () => {
      throw new Error("async boom");
    });
    const ok = recorder();
    db.subscribe({}, ok.callback);

    await db.put("a/1", { v: 1 });
    await ok.until(1);
    await db.put("a/2", { v: 2 });
    await db.transaction(async (tx) => tx.delete("a/1"));
    assert.deepEqual(ids(await ok.until(3)), ["a/1", "a/2", "a/1"]);
    await settle();

    assert.equal((await db.get("a/2")).v, 2);
    assert.equal(await db.count(), 1);
    assert.equal(errors.length, 6, "each failure is reported with console.error");
    assert.ok(errors.some((args) => args.some((a) => a instanceof Error && a.message === "boom")));
    assert.ok(errors.some((args) => args.some((a) => a instanceof Error && a.message === "async boom")));
  } finally {
    console.error = origError;
  }
  await db.close();
});

test("subscribe checks its arguments; close ends subscriptions", async () => {
  const db = await Outpost.open("sub-args");
  const code = (fn) => {
    try {
      fn();
      return "no error";
    } catch (e) {
      assert.ok(e instanceof OutpostError);
      return e.code;
    }
  };
  assert.equal(code(() => db.subscribe({ prefix: "x/" })), "invalid_argument");
  assert.equal(code(() => db.subscribe({ prefx: "x/" }, () => {})), "invalid_argument");
  assert.equal(code(() => db.subscribe({ prefix: 1 }, () => {})), "invalid_argument");
  assert.equal(code(() => db.subscribe("x/", () => {})), "invalid_argument");

  // The filter may be omitted.
  const rec = recorder();
  db.subscribe(rec.callback);
  await db.put("x/1", {});
  await rec.until(1);

  await db.close();
  assert.equal(code(() => db.subscribe({}, () => {})), "closed");
  await assert.rejects(db.put("x/2", {}), (e) => e.code === "closed");
  await settle();
  assert.equal(rec.docs().length, 1);
});
