// The npm package in Node with a page store supplied by the host: a small
// adapter over a JS Map (test/map-store.mjs), as an edge worker would write.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Outpost, OutpostError } from "@outpost/db";
import { mapStore } from "./map-store.mjs";

test("data survives close and reopen over the same Map", async () => {
  const store = mapStore();
  const db = await Outpost.open("map-reopen", { store });
  const dbId = db.dbId;
  for (let i = 0; i < 300; i++) {
    await db.put(`notes/${i}`, { i, text: "x".repeat(200) }, { collection: "Notes" });
  }
  await db.transaction([
    { type: "delete", id: "notes/0" },
    { type: "put", id: "notes/extra", doc: { i: -1 } },
  ]);
  await db.close();
  assert.ok(store.stats.commits > 0);
  assert.ok(store.stats.closes >= 1);
  assert.ok(store.pages.size > 1, "documents are packed into pages");
  assert.ok(store.pages.size < 300, `300 documents in ${store.pages.size} pages`);
  for (const [no, bytes] of store.pages) {
    assert.equal(typeof no, "number");
    assert.ok(bytes instanceof Uint8Array);
    assert.equal(bytes.length, 4096);
  }

  // A new handle over the same storage (a new adapter object, the same Map).
  const reopened = mapStore(store.pages, store.state);
  const db2 = await Outpost.open("map-reopen", { store: reopened });
  assert.equal(db2.dbId, dbId);
  assert.equal(await db2.count(), 300);
  assert.equal(await db2.get("notes/0"), null);
  assert.equal((await db2.get("notes/299")).i, 299);
  assert.equal((await db2.get("notes/extra")).i, -1);
  assert.equal((await db2.scan({ prefix: "notes/" })).length, 300);
  assert.deepEqual(await db2.collections(), [{ name: "Notes", count: 299 }]);
  assert.ok(reopened.stats.reads > 0, "pages are read from the host store");
  const changes = await db2.changes({ since: 0 });
  assert.equal(changes.length, 301);
  await db2.put("notes/after", { ok: true });
  await db2.close();

  const db3 = await Outpost.open("map-reopen", { store: mapStore(store.pages, store.state) });
  assert.equal((await db3.get("notes/after")).ok, true);
  assert.equal(await db3.count(), 301);
  await db3.close();
});

test("synchronous adapter methods work too", async () => {
  const pages = new Map();
  let meta;
  const store = {
    readPage: (no) => pages.get(no),
    readMeta: () => meta,
    commit: (batch, m) => {
      for (const [no, b] of batch) pages.set(no, b);
      meta = m;
    },
  };
  const db = await Outpost.open("map-sync", { store });
  await db.put("a", { x: 1 });
  await db.close();
  const db2 = await Outpost.open("map-sync", { store });
  assert.equal((await db2.get("a")).x, 1);
  await db2.close();
});

test("a failing commit writes nothing and rejects with a code", async () => {
  const store = mapStore();
  const db = await Outpost.open("map-fail", { store });
  await db.put("kept", { v: 1 });
  const pagesBefore = new Map(store.pages);
  const metaBefore = store.state.meta;

  store.stats.failNextCommit = true;
  await assert.rejects(db.put("lost", { v: 2 }), (e) => {
    assert.ok(e instanceof OutpostError);
    assert.equal(e.code, "other");
    assert.match(e.message, /disk on fire/);
    return true;
  });
  assert.deepEqual(store.pages, pagesBefore);
  assert.equal(store.state.meta, metaBefore);

  // The handle refuses further writes until reopened; the storage is intact.
  await assert.rejects(db.put("x", { v: 3 }), (e) => e instanceof OutpostError);
  const db2 = await Outpost.open("map-fail", { store: mapStore(store.pages, store.state) });
  assert.equal((await db2.get("kept")).v, 1);
  assert.equal(await db2.get("lost"), null);
  await db2.put("new", { v: 4 });
  await db2.close();
});

test("a host store that reports a full quota gives quota_exceeded", async () => {
  const store = mapStore();
  const db = await Outpost.open("map-quota", { store });
  const full = new Error("The quota has been exceeded.");
  full.name = "QuotaExceededError";
  store.stats.failNextCommit = full;
  await assert.rejects(db.put("a", { x: 1 }), (e) => e.code === "quota_exceeded");
  assert.equal(store.stats.commits, 1, "only the commit that created the database");
});

test("damaged pages are reported, not served", async () => {
  const store = mapStore();
  const db = await Outpost.open("map-corrupt", { store });
  await db.put("a", { x: 1 });
  await db.close();
  for (const [no, bytes] of store.pages) {
    const bad = new Uint8Array(bytes);
    bad[100] ^= 0xff;
    store.pages.set(no, bad);
  }
  const db2 = await Outpost.open("map-corrupt", { store: mapStore(store.pages, store.state) }).catch((e) => e);
  if (db2 instanceof Error) {
    assert.equal(db2.code, "corrupt");
    return;
  }
  await assert.rejects(db2.get("a"), (e) => e.code === "corrupt");
});

test("a write may ask its own durability; the database's is the default", async () => {
  const store = mapStore();
  const db = await Outpost.open("durability-per-write", { store });
  await db.put("a", { n: 1 });
  assert.equal(store.stats.relaxed, 0, "strict by default");
  await db.put("b", { n: 2 }, { durability: "relaxed" });
  assert.equal(store.stats.relaxed, 1);
  await db.delete("b", { durability: "relaxed" });
  assert.equal(store.stats.relaxed, 2);
  await db.transaction([{ type: "put", id: "c", doc: { n: 3 } }], { durability: "relaxed" });
  assert.equal(store.stats.relaxed, 3);
  await db.transaction(async (tx) => tx.put("d", { n: 4 }), { durability: "strict" });
  assert.equal(store.stats.relaxed, 3);
  for (const bad of [() => db.put("e", {}, { durability: "eventually" }), () => db.transaction([], { durability: 1 }), () => db.transaction([], { durable: true })]) {
    await assert.rejects(bad(), (e) => e.code === "invalid_options" || e.code === "invalid_argument");
  }
  await db.close();
  const relaxedDb = await Outpost.open("durability-per-write", { store, durability: "relaxed" });
  const before = store.stats.relaxed;
  await relaxedDb.put("f", { n: 5 });
  assert.equal(store.stats.relaxed, before + 1, "a relaxed database");
  await relaxedDb.put("g", { n: 6 }, { durability: "strict" });
  assert.equal(store.stats.relaxed, before + 1, "a strict write on a relaxed database");
  assert.deepEqual((await relaxedDb.scan()).map((d) => d["@metadata"]["@id"]), ["a", "c", "d", "f", "g"]);
  await relaxedDb.close();
});

test("a bulk transaction without results resolves to how many were written and the last etag", async () => {
  const store = mapStore();
  const db = await Outpost.open("bulk-no-results", { store });
  const ops = Array.from({ length: 250 }, (_, i) => ({ type: "put", id: `bulk/${i}`, doc: { i } }));
  ops.push({ type: "delete", id: "bulk/missing" });
  const r = await db.transaction(ops, { results: false });
  assert.deepEqual(r, { written: 250, etag: 250 });
  assert.equal(await db.count(), 250);
  assert.deepEqual(await db.transaction(async () => {}, { results: false }), { written: 0, etag: 0 });
  const one = await db.transaction(async (tx) => tx.put("bulk/x", { x: 1 }), { results: false });
  assert.deepEqual(one, { written: 1, etag: 251 });
  assert.ok(Array.isArray(await db.transaction([{ type: "put", id: "bulk/y", doc: {} }], { results: true })));
  await db.close();
});
