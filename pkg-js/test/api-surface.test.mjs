// Issue 8 point 6 (JS API): unknown options are refused with a typed error
// instead of being ignored; a wrong argument type is described in JS terms
// (not "JsValue(42)"); the change vector has one spelling per surface:
// `changeVector` in the JS API's own objects (options, write results,
// conflicts, rejections), `@change-vector` inside a document's `@metadata`
// (the document format every surface shares), never `change_vector`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Outpost, OutpostError } from "@outpost/db";

async function rejectsWith(promise, code, pattern) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof OutpostError, `expected an OutpostError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

test("unknown options are refused with invalid_options, naming the known ones", async () => {
  const db = await Outpost.open("surface-options");
  await db.put("notes/1", { a: 1 });
  await db.put("tasks/1", { a: 2 });

  // The report of issue 8: scan({ where }) returned everything.
  await rejectsWith(db.scan({ where: { a: 1 } }), "invalid_options", /scan: unknown option "where" \(known options: prefix, after, limit, keysOnly\)/);
  await rejectsWith(db.scan({ prefx: "notes/" }), "invalid_options", /"prefx"/);
  await rejectsWith(db.changes({ from: 3 }), "invalid_options", /changes: unknown option "from"/);
  await rejectsWith(db.conflicts({ limt: 3 }), "invalid_options", /conflicts/);
  await rejectsWith(db.put("notes/2", { a: 1 }, { colection: "Notes" }), "invalid_options", /put: unknown option "colection"/);
  await rejectsWith(db.delete("notes/1", { force: true }), "invalid_options", /delete: unknown option "force"/);
  await rejectsWith(db.resolve("notes/1", { a: 3 }, { id: "x" }), "invalid_options", /resolve/);
  await rejectsWith(db.transaction([{ type: "put", id: "notes/3", doc: {}, colection: "Notes" }]), "invalid_options", /transaction operation: unknown option "colection"/);
  // An operation's keys are compared with the known ones as JS strings; an array is still no operation.
  await rejectsWith(db.transaction([{ type: "put", id: "notes/3", doc: {}, extra: undefined }]), "invalid_options", /unknown option "extra"/);
  await rejectsWith(db.transaction([[]]), "invalid_argument", /transaction operation options must be an object, got an array/);
  await rejectsWith(
    db.transaction(async (tx) => {
      tx.put("notes/4", {}, { colection: "Notes" });
    }),
    "invalid_options",
    /colection/,
  );
  await rejectsWith(Outpost.open("surface-options-2", { cache: 1 << 20 }), "invalid_options", /open: unknown option "cache" \(known options: store, storage, persist, cacheBytes, durability, onStorageLost\)/);
  await rejectsWith(Outpost.open("surface-options-2", { durability: "fast" }), "invalid_options", /durability "fast": expected "strict" or "relaxed"/);
  // OPFS only in a browser's dedicated worker (tests/e2e/opfs.test.mjs): typed, nothing opened.
  await rejectsWith(Outpost.open("surface-options-2", { storage: "opfs" }), "unsupported", /storage "opfs": needs a dedicated worker/);
  await rejectsWith(Outpost.open("surface-options-2", { storage: "disk" }), "invalid_options", /expected "indexeddb", "opfs" or "memory"/);
  await rejectsWith(Outpost.open("surface-options-2", { store: "opfs" }), "invalid_options", /for a built-in store use storage: "opfs"/);
  // keysOnly: the ids scan would return, as written.
  assert.deepEqual(await db.scan({ prefix: "NOTES/", keysOnly: true }), (await db.scan({ prefix: "notes/" })).map((d) => d["@metadata"]["@id"]));
  assert.deepEqual(await db.scan({ keysOnly: true, limit: 1, after: "notes/1" }), ["tasks/1"]);
  const relaxed = await Outpost.open("surface-options-3", { durability: "relaxed" });
  await relaxed.put("r/1", { r: 1 });
  assert.equal((await relaxed.get("r/1")).r, 1);
  await relaxed.close();
  await rejectsWith(Outpost.open("surface-options-2", { onStorageLost: true }), "invalid_options", /onStorageLost must be a function/);
  // Nothing of the refused writes was written.
  assert.equal(await db.count(), 2);
  assert.equal(await db.get("notes/2"), null);
  // Known options still work, and so do undefined and null.
  assert.equal((await db.scan({ prefix: "notes/" })).length, 1);
  assert.equal((await db.scan(undefined)).length, 2);
  assert.equal((await db.scan(null)).length, 2);
  assert.equal((await db.changes({ since: 0, limit: 1 })).length, 1);
  await rejectsWith(db.scan("notes/"), "invalid_argument", /scan options must be an object, got string "notes\/"/);
  await db.close();
});

test("a wrong argument type says what was expected and what was given", async () => {
  const db = await Outpost.open("surface-types");
  for (const [arg, shown] of [
    [42, "number 42"],
    [undefined, "undefined"],
    [null, "null"],
    [{ id: "x" }, "an object"],
    [["a"], "an array"],
    [true, "boolean true"],
  ]) {
    await assert.rejects(db.get(arg), (e) => {
      assert.equal(e.code, "invalid_id");
      assert.doesNotMatch(e.message, /JsValue/, e.message);
      assert.equal(e.message, `a document id must be a string, got ${shown}`);
      return true;
    });
  }
  await rejectsWith(db.put(7, {}), "invalid_id", /must be a string, got number 7/);
  await rejectsWith(db.delete(7), "invalid_id", /got number 7/);
  await db.close();
});

/** Every key (nested) of a value, with its path. */
function keys(v, path = "$", out = []) {
  if (Array.isArray(v)) v.forEach((x, i) => keys(x, `${path}[${i}]`, out));
  else if (v && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      out.push([`${path}.${k}`, k]);
      keys(x, `${path}.${k}`, out);
    }
  }
  return out;
}

test("the change vector: changeVector in API objects, @change-vector in @metadata, nothing else", async () => {
  const db = await Outpost.open("surface-cv");
  const put = await db.put("notes/1", { a: 1 }, { collection: "Notes" });
  const tx = await db.transaction([{ type: "put", id: "notes/2", doc: { a: 2 } }, { type: "delete", id: "notes/2" }]);
  const del = await db.delete("notes/1");
  const doc = (await db.changes({ since: 0 }))[0];
  const outputs = { put, tx, del, changes: await db.changes(), scan: await db.scan(), conflicts: await db.conflicts(), stats: db.stats() };
  for (const [path, k] of keys(outputs)) {
    assert.ok(!/change[_-]?vector/i.test(k) || k === "changeVector" || k === "@change-vector", `${path}: ${k}`);
    if (k === "@change-vector") assert.match(path, /\["?@metadata"?\]|\.@metadata\.@change-vector$/, path);
    if (k === "changeVector") assert.doesNotMatch(path, /@metadata/, path);
  }
  assert.equal(typeof put.changeVector, "string");
  assert.equal(typeof doc["@metadata"]["@change-vector"], "string");

  // As input, only `changeVector` is an option: the other spellings used to be
  // ignored silently (a write without its concurrency check); now refused.
  const cur = await db.put("notes/3", { v: 1 });
  for (const spelling of ["change_vector", "@change-vector", "ChangeVector"]) {
    await rejectsWith(db.put("notes/3", { v: 2 }, { [spelling]: "A:1-zzzz" }), "invalid_options", /Did you mean changeVector\?/);
    await rejectsWith(db.delete("notes/3", { [spelling]: cur.changeVector }), "invalid_options", /Did you mean changeVector\?/);
  }
  assert.equal((await db.get("notes/3")).v, 1, "nothing was written");
  await rejectsWith(db.put("notes/3", { v: 2 }, { changeVector: put.changeVector }), "concurrency_conflict");
  assert.equal((await db.put("notes/3", { v: 2 }, { changeVector: cur.changeVector })).id, "notes/3");
  await db.close();
});

test("write safety hub: its options are checked, and with no replication it fails offline, writing nothing", async () => {
  const db = await Outpost.open("surface-hub");
  await rejectsWith(db.put("users/a", {}, { safety: "sure" }), "invalid_argument", /safety is "local", "replicated" or "hub"/);
  await rejectsWith(db.put("users/a", {}, { safety: "hub", expect: 5 }), "invalid_argument", /expect is "missing", "any" or a change vector/);
  await rejectsWith(db.put("users/a", {}, { safety: "hub", changeVector: null }), "invalid_options", /unknown option "changeVector"/);
  await rejectsWith(db.put("users/a", {}, { expect: "missing" }), "invalid_argument", /expect is an option of safety "hub"/);
  await rejectsWith(db.put("users/a", {}, { safety: "hub", timeoutMs: -1 }), "invalid_argument", /timeoutMs/);
  await rejectsWith(db.delete("users/a", { safety: "hub", collection: "X" }), "invalid_options", /collection/);
  await rejectsWith(db.writeAtHub([]), "invalid_argument", /1 to 64 operations/);
  await rejectsWith(db.writeAtHub([{ type: "put", id: "users/a", doc: {} }], { timeout: 5 }), "invalid_options", /known options: timeoutMs/);
  await rejectsWith(db.writeAtHub([{ type: "upsert", id: "users/a", doc: {} }]), "invalid_argument", /"put" or "delete"/);
  await rejectsWith(db.writeAtHub([{ type: "put", id: "users/a", doc: {}, colection: "X" }]), "invalid_options", /unknown option "colection"/);
  await rejectsWith(db.writeAtHub([{ type: "put", id: "", doc: {} }]), "invalid_id");
  await rejectsWith(db.writeAtHub([{ type: "put", id: "users/a", doc: [1] }]), "invalid_json");
  const t0 = Date.now();
  await rejectsWith(db.put("users/a", { a: 1 }, { safety: "hub", expect: "missing" }), "offline", /nothing was written/);
  await rejectsWith(db.writeAtHub([{ type: "delete", id: "users/a" }]), "offline");
  assert.ok(Date.now() - t0 < 1000, "offline at once");
  assert.equal(await db.get("users/a"), null);
  assert.equal(await db.count(), 0);
  await db.close();
});
