// The npm package in Node with the default in-memory page store.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Outpost, OutpostError } from "@outpost/db";

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof OutpostError, `expected an OutpostError, got ${e}`);
    assert.ok(e instanceof Error);
    assert.equal(e.name, "OutpostError");
    assert.equal(e.code, code, e.message);
    return true;
  });
}

test("put, get with @metadata, count, collections", async () => {
  const db = await Outpost.open("mem-basic");
  assert.equal(db.name, "mem-basic");
  assert.match(db.dbId, /\S+/);
  const r = await db.put("patients/1", { name: "Ada", tags: ["a", "b"], n: 1.5, nested: { ok: true } }, { collection: "Patients" });
  assert.equal(r.id, "patients/1");
  assert.equal(typeof r.etag, "number");
  assert.equal(typeof r.changeVector, "string");
  assert.equal(r.deleted, false);

  const doc = await db.get("patients/1");
  assert.equal(doc.name, "Ada");
  assert.deepEqual(doc.tags, ["a", "b"]);
  assert.equal(doc.n, 1.5);
  assert.deepEqual(doc.nested, { ok: true });
  const m = doc["@metadata"];
  assert.equal(m["@id"], "patients/1");
  assert.equal(m["@collection"], "Patients");
  assert.equal(m["@change-vector"], r.changeVector);
  assert.equal(m["@etag"], r.etag);
  assert.ok(!Number.isNaN(Date.parse(m["@last-modified"])), m["@last-modified"]);
  assert.equal(Object.getPrototypeOf(doc), Object.prototype, "a plain object, not a Map");

  // Ids are case-insensitive; the original case is kept.
  assert.equal((await db.get("PATIENTS/1"))["@metadata"]["@id"], "patients/1");
  assert.equal(await db.get("patients/2"), null);

  // get → modify → put round-trips; @metadata is not stored, its collection is used.
  doc.name = "Ada L.";
  await db.put("patients/1", doc);
  const again = await db.get("patients/1");
  assert.equal(again.name, "Ada L.");
  assert.equal(again["@metadata"]["@collection"], "Patients");
  assert.ok(again["@metadata"]["@etag"] > r.etag);

  await db.put("visits/1", { patient: "patients/1" }, { collection: "Visits" });
  assert.equal(await db.count(), 2);
  assert.deepEqual(await db.collections(), [
    { name: "Patients", count: 1 },
    { name: "Visits", count: 1 },
  ]);
  assert.equal(db.stats().documents, 2);
  await db.close();
});

test("scan by prefix with paging", async () => {
  const db = await Outpost.open("mem-scan");
  for (let i = 0; i < 25; i++) {
    await db.put(`items/${String(i).padStart(3, "0")}`, { i });
  }
  await db.put("other/1", { i: -1 });
  const all = await db.scan({ prefix: "items/" });
  assert.equal(all.length, 25);
  assert.deepEqual(all.map((d) => d.i), [...Array(25).keys()]);

  const seen = [];
  let page = await db.scan({ prefix: "items/", limit: 10 });
  while (page.length) {
    seen.push(...page.map((d) => d.i));
    const last = page[page.length - 1]["@metadata"]["@id"];
    page = await db.scan({ prefix: "items/", after: last, limit: 10 });
  }
  assert.deepEqual(seen, [...Array(25).keys()]);
  assert.equal((await db.scan()).length, 26);
  assert.equal((await db.scan({ prefix: "nothing/" })).length, 0);
  await rejectsWith(db.scan({ limit: -1 }), "invalid_argument");
  await rejectsWith(db.scan({ prefix: 5 }), "invalid_argument");
  await db.close();
});

test("changes feed includes tombstones, in etag order", async () => {
  const db = await Outpost.open("mem-changes");
  const a = await db.put("a", { v: 1 });
  const b = await db.put("b", { v: 2 });
  const d = await db.delete("a");
  assert.equal(d.deleted, true);
  assert.equal(await db.get("a"), null);
  assert.equal(await db.delete("never-existed"), null);

  const feed = await db.changes({ since: 0 });
  // "a" was rewritten by its delete, so it appears once, as a tombstone, after "b".
  assert.deepEqual(feed.map((x) => x["@metadata"]["@id"]), ["b", "a"]);
  assert.equal(feed[1]["@metadata"]["@deleted"], true);
  const etags = feed.map((x) => x["@metadata"]["@etag"]);
  assert.deepEqual(etags, [...etags].sort((x, y) => x - y));
  assert.ok(etags[0] > a.etag - 1 && etags[0] === b.etag);

  const later = await db.changes({ since: b.etag });
  assert.deepEqual(later.map((x) => x["@metadata"]["@id"]), ["a"]);
  assert.equal((await db.changes({ since: 0, limit: 1 })).length, 1);
  assert.equal(await db.count(), 1);
  await db.close();
});

test("transactions are atomic (array and callback forms)", async () => {
  const db = await Outpost.open("mem-tx");
  await db.put("accounts/a", { balance: 100 });
  const results = await db.transaction([
    { type: "put", id: "accounts/a", doc: { balance: 50 } },
    { type: "put", id: "accounts/b", doc: { balance: 50 }, collection: "Accounts" },
    { type: "delete", id: "nothing/here" },
  ]);
  assert.equal(results.length, 3);
  assert.equal(results[0].id, "accounts/a");
  assert.equal(results[2], null);
  assert.equal((await db.get("accounts/a")).balance, 50);

  // One bad operation: nothing of the batch is written.
  const before = await db.changes();
  await rejectsWith(
    db.transaction([
      { type: "put", id: "accounts/a", doc: { balance: 0 } },
      { type: "put", id: "", doc: { balance: 0 } },
    ]),
    "invalid_id",
  );
  await rejectsWith(
    db.transaction([
      { type: "put", id: "accounts/c", doc: { balance: 1 } },
      { type: "put", id: "accounts/b", doc: { balance: 1 }, changeVector: null },
    ]),
    "concurrency_conflict",
  );
  assert.equal((await db.get("accounts/a")).balance, 50);
  assert.equal(await db.get("accounts/c"), null);
  assert.deepEqual(await db.changes(), before);

  // Callback form: collected, then committed together.
  const r = await db.transaction(async (tx) => {
    const a = await db.get("accounts/a");
    tx.put("accounts/a", { balance: a.balance - 10 });
    tx.put("accounts/c", { balance: 10 });
    tx.delete("accounts/b");
    assert.equal(tx.size, 3);
  });
  assert.equal(r.length, 3);
  assert.equal((await db.get("accounts/a")).balance, 40);
  assert.equal((await db.get("accounts/c")).balance, 10);
  assert.equal(await db.get("accounts/b"), null);

  // A callback that throws writes nothing.
  await assert.rejects(
    db.transaction(async (tx) => {
      tx.put("accounts/a", { balance: 0 });
      throw new Error("changed my mind");
    }),
    /changed my mind/,
  );
  assert.equal((await db.get("accounts/a")).balance, 40);

  // A transaction object cannot be used after its callback.
  let leaked;
  await db.transaction((tx) => {
    leaked = tx;
  });
  assert.throws(() => leaked.put("x", {}), (e) => e.code === "transaction_finished");

  await rejectsWith(db.transaction("nope"), "invalid_argument");
  await rejectsWith(db.transaction([{ type: "upsert", id: "x" }]), "invalid_argument");
  await db.close();
});

test("optimistic concurrency with change vectors", async () => {
  const db = await Outpost.open("mem-cv");
  const first = await db.put("doc", { v: 1 }, { changeVector: null });
  await rejectsWith(db.put("doc", { v: 2 }, { changeVector: null }), "concurrency_conflict");
  const second = await db.put("doc", { v: 2 }, { changeVector: first.changeVector });
  await rejectsWith(db.put("doc", { v: 3 }, { changeVector: first.changeVector }), "concurrency_conflict");
  await rejectsWith(db.delete("doc", { changeVector: first.changeVector }), "concurrency_conflict");
  await rejectsWith(db.put("doc", { v: 3 }, { changeVector: "not a change vector" }), "invalid_change_vector");
  assert.equal((await db.delete("doc", { changeVector: second.changeVector })).deleted, true);
  await db.close();
});

test("errors carry stable codes", async () => {
  const db = await Outpost.open("mem-errors");
  await rejectsWith(db.put("", { a: 1 }), "invalid_id");
  await rejectsWith(db.put("bad\u0000id", { a: 1 }), "invalid_id");
  await rejectsWith(db.put(42, { a: 1 }), "invalid_id");
  await rejectsWith(db.get(""), "invalid_id");
  await rejectsWith(db.put("a", "not an object"), "invalid_json");
  await rejectsWith(db.put("a", [1, 2, 3]), "invalid_json");
  await rejectsWith(db.put("a", null), "invalid_json");
  await rejectsWith(db.put("a", { big: 10n }), "invalid_json");
  const cyclic = { name: "loop" };
  cyclic.self = cyclic;
  await rejectsWith(db.put("a", cyclic), "invalid_json");
  await rejectsWith(db.put("a", { x: 1 }, { collection: "" }), "invalid_collection");
  await rejectsWith(db.put("a", { x: 1 }, "options"), "invalid_argument");
  await rejectsWith(Outpost.open("x", { storage: "floppy" }), "invalid_options");
  await rejectsWith(Outpost.open("x", { store: { readPage() {} } }), "invalid_options");
  await rejectsWith(Outpost.open("x", { cacheBytes: 10 }), "invalid_options");
  assert.equal(await db.count(), 0);

  await db.close();
  await db.close(); // harmless
  await rejectsWith(db.put("a", { x: 1 }), "closed");
});

test("documents follow JSON semantics", async () => {
  const db = await Outpost.open("mem-json");
  const when = new Date("2026-01-02T03:04:05.000Z");
  await db.put("j", {
    when,
    f: () => 1,
    gone: undefined,
    nan: NaN,
    list: [1, undefined, "x"],
    unicode: "Grüße, 東京 🚀",
    deep: { a: { b: { c: [{ d: null }] } } },
  });
  const d = await db.get("j");
  assert.equal(d.when, "2026-01-02T03:04:05.000Z");
  assert.ok(!("f" in d) && !("gone" in d));
  assert.equal(d.nan, null);
  assert.deepEqual(d.list, [1, null, "x"]);
  assert.equal(d.unicode, "Grüße, 東京 🚀");
  assert.deepEqual(d.deep, { a: { b: { c: [{ d: null }] } } });
  // "__proto__" from stored JSON is an own property, never a prototype.
  await db.put("p", JSON.parse('{"__proto__": {"polluted": true}}'));
  const p = await db.get("p");
  assert.equal({}.polluted, undefined);
  assert.equal(Object.getPrototypeOf(p), Object.prototype);
  await db.close();
});

test("a body is stored as JSON.stringify wrote it; only a top-level @metadata is taken out", async () => {
  const db = await Outpost.open("mem-text");
  const body = { zeta: 1, alpha: { y: 2, b: 3 }, mid: [1, { z: 0, a: 1 }], s: "q\"uote\\ \u0000 é" };
  await db.put("k", body);
  const { "@metadata": _, ...k } = await db.get("k");
  assert.deepEqual(k, body);
  // The string "@metadata" as a value, or inside a longer key, is data.
  await db.put("v", { note: "@metadata", "x@metadata": 1, "@metadatax": 2 }, { collection: "Notes" });
  const v = await db.get("v");
  assert.deepEqual([v.note, v["x@metadata"], v["@metadatax"]], ["@metadata", 1, 2]);
  assert.equal(v["@metadata"]["@collection"], "Notes");
  // A top-level @metadata is not stored (its @collection names the collection);
  // a nested one is the application's data.
  await db.put("m", { a: 1, "@metadata": { "@collection": "Things", "@etag": 99 }, inner: { "@metadata": { keep: true } } });
  const m = await db.get("m");
  assert.equal(m["@metadata"]["@collection"], "Things");
  assert.notEqual(m["@metadata"]["@etag"], 99);
  assert.deepEqual(m.inner, { "@metadata": { keep: true } });
  // Not stored, so not counted: 17 MiB in @metadata, over the 16 MiB a body may have.
  const big = { a: 2, "@metadata": { "@collection": "Things", pad: "x".repeat(17 << 20) } };
  await db.put("m", big);
  assert.equal((await db.get("m")).a, 2);
  await rejectsWith(db.put("m", { a: 3, pad: big["@metadata"].pad }), "too_large");
  // toJSON at the top level is honoured as JSON.stringify honours it.
  await db.put("t", { toJSON: () => ({ b: 1, a: 2 }) });
  assert.deepEqual([(await db.get("t")).b, (await db.get("t")).a], [1, 2]);
  await rejectsWith(db.put("s", { toJSON: () => "a string" }), "invalid_json");
  await rejectsWith(db.transaction([{ type: "put", id: "s", doc: { toJSON: () => [1] } }]), "invalid_json");
  assert.equal(await db.get("s"), null);
  await db.close();
});

test("reads give a body back as it was written: its keys in their order, its values (get, scan, changes)", async () => {
  const db = await Outpost.open("mem-order");
  const one = { zeta: 1, alpha: { y: 2, b: 3 }, mid: [1, { z: 0, a: 1 }] };
  const two = {
    b: "}]{[\"\\ \u2028\u2029 \ud83d\ude00 é",
    a: [12345678901234567890123, 1e21, 5e-324, -1.5e-7, 0.1, true, false, null],
    inner: { z: 1, a: 0 },
    "": { "": [] },
  };
  await db.put("o/1", one);
  await db.put("o/2", two, { collection: "Things" });
  await db.put("o/3", {});
  const keys = (o) => Object.keys(o);
  const body = ({ "@metadata": _, ...rest }) => rest;
  const check = (docs, what) => {
    assert.deepEqual(docs.map((d) => d["@metadata"]["@id"]), ["o/1", "o/2", "o/3"], what);
    assert.deepEqual(docs.map(keys), [["zeta", "alpha", "mid", "@metadata"], ["b", "a", "inner", "", "@metadata"], ["@metadata"]], what);
    assert.deepEqual(keys(docs[0].alpha), ["y", "b"], what);
    assert.deepEqual(keys(docs[0].mid[1]), ["z", "a"], what);
    assert.deepEqual(keys(docs[1].inner), ["z", "a"], what);
    assert.deepEqual(docs.map(body), [one, two, {}], what);
    assert.equal(docs[1]["@metadata"]["@collection"], "Things", what);
    for (const d of docs) assert.deepEqual(keys(d["@metadata"]), ["@change-vector", "@etag", "@id", "@last-modified"].concat(d === docs[1] ? ["@collection"] : []).sort(), what);
  };
  check([await db.get("o/1"), await db.get("o/2"), await db.get("o/3")], "get");
  check(await db.scan({ prefix: "o/" }), "scan");
  check(await db.changes({ since: 0 }), "changes");
  // (A body whose text holds "@metadata" anywhere is stored through a parse
  // that takes a top-level one out, and its keys come back sorted: the
  // test above checks its values.)
  // A tombstone in the feed: its @metadata alone.
  await db.delete("o/3");
  const feed = await db.changes({ since: 0 });
  assert.deepEqual(keys(feed[2]), ["@metadata"]);
  assert.equal(feed[2]["@metadata"]["@deleted"], true);
  await db.close();
});

test("concurrent writes all land (group commit)", async () => {
  const db = await Outpost.open("mem-concurrent");
  const n = 500;
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => db.put(`c/${i}`, { i })),
  );
  assert.equal(new Set(results.map((r) => r.etag)).size, n);
  assert.equal(await db.count(), n);
  assert.equal((await db.scan({ prefix: "c/" })).length, n);
  await db.close();
});
