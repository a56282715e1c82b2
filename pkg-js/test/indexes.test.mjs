// Indexes through the npm package (Node, memory store; the same code runs
// in Chromium over IndexedDB in the browser tests): JavaScript map and
// reduce functions, queries by equality, prefix and range with paging and
// counts, reads that include the caller's own writes, the mortgage and
// shopping-cart examples (examples/indexes/*.mjs) with exact figures, live
// queries, a changed function rebuilding its index, and typed errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Outpost, OutpostError } from "@outpost/db";
import { monthlyStatus, loanStatus, sampleEvents, latePayment } from "../../examples/indexes/mortgage.mjs";
import { carts, salesPerProduct } from "../../examples/indexes/carts.mjs";

async function rejectsWith(promise, code, pattern) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof OutpostError, `expected an OutpostError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

const byCity = {
  name: "users/by-city",
  collections: ["Users"],
  map(u, emit) {
    if (u.city) emit(u.city, u.name);
  },
};

test("a map index: equality, prefix, range, descending, pages, counts, own writes", async () => {
  const db = await Outpost.open("idx-map", { storage: "memory" });
  const cities = ["Oslo", "Bergen", "Os", "Rome", "Oslo", "Osaka"];
  await db.transaction(cities.map((city, i) => ({ type: "put", id: `users/${i}`, doc: { name: `u${i}`, city }, collection: "Users" })));
  await db.put("notes/1", { city: "Oslo" });
  await db.defineIndex(byCity);

  let r = await db.query("users/by-city", { eq: "Oslo" });
  assert.deepEqual(r.rows.map((x) => x.id), ["users/0", "users/4"]);
  assert.equal(r.rows[0].value, "u0");
  assert.equal(r.stale, false);
  r = await db.query("users/by-city", { prefix: "Os" });
  assert.deepEqual(r.rows.map((x) => x.key), ["Os", "Osaka", "Oslo", "Oslo"]);
  r = await db.query("users/by-city", { gt: "Bergen", lte: "Oslo", descending: true });
  assert.deepEqual(r.rows.map((x) => x.key), ["Oslo", "Oslo", "Osaka", "Os"]);
  assert.equal(await db.queryCount("users/by-city", { prefix: "Os" }), 4);

  // Pages join up.
  const seen = [];
  let after;
  do {
    r = await db.query("users/by-city", { limit: 2, after });
    seen.push(...r.rows.map((x) => x.id));
    after = r.next ?? undefined;
  } while (after);
  assert.deepEqual(seen.length, 6);

  // A write is in the next query (it waits for the index), not in one that does not wait.
  await db.put("users/9", { name: "u9", city: "Oslo" }, { collection: "Users" });
  r = await db.query("users/by-city", { eq: "Oslo", wait: false });
  assert.equal(r.rows.length, 2);
  assert.equal(r.stale, true);
  r = await db.query("users/by-city", { eq: "Oslo" });
  assert.equal(r.rows.length, 3);
  await db.delete("users/0");
  assert.equal((await db.query("users/by-city", { eq: "Oslo" })).rows.length, 2);
  const [info] = await db.indexes();
  assert.equal(info.name, "users/by-city");
  assert.equal(info.registered, true);
  assert.equal(info.stale, false);
  await db.close();
});

test("the mortgage example: monthly statuses reduce into a loan status with a past-due flag", async () => {
  const db = await Outpost.open("idx-mortgage", { storage: "memory" });
  await db.defineIndex(monthlyStatus);
  await db.defineIndex(loanStatus);
  await db.transaction(sampleEvents.map(([id, doc]) => ({ type: "put", id: `events/${id}`, doc, collection: "LoanEvents" })));
  // One query brings the whole chain up to date (the monthly statuses first).
  let loan = (await db.query(loanStatus.name, { eq: "L1" })).rows[0].value;
  assert.deepEqual(loan, {
    approved: 12000,
    interestPaid: 330,
    principalPaid: 2390,
    outstanding: 9610,
    pastDueAmount: 610,
    pastDue: true,
  });
  // February: a partial payment pays the interest first.
  const feb = await db.get('MonthlyStatus/["L1","2026-02"]');
  assert.equal(feb["@metadata"]["@from-index"], true);
  assert.equal(feb.interestPaid, 110);
  assert.equal(feb.principalPaid, 390);
  assert.equal(feb.short, 610);
  // A late catch-up payment clears the flag.
  await db.put(`events/${latePayment[0]}`, latePayment[1], { collection: "LoanEvents" });
  loan = (await db.query(loanStatus.name, { eq: "L1" })).rows[0].value;
  assert.deepEqual(loan, {
    approved: 12000,
    interestPaid: 330,
    principalPaid: 3000,
    outstanding: 9000,
    pastDueAmount: 0,
    pastDue: false,
  });
  await db.close();
});

test("shopping carts: an output collection and a chained index over paid carts", async () => {
  const db = await Outpost.open("idx-carts", { storage: "memory" });
  await db.defineIndex(carts);
  await db.defineIndex(salesPerProduct);
  const ev = (id, doc) => ({ type: "put", id: `cart-events/${id}`, doc, collection: "CartEvents" });
  await db.transaction([
    ev(1, { cart: "c1", type: "add", product: "apple", qty: 3 }),
    ev(2, { cart: "c1", type: "remove", product: "apple", qty: 1 }),
    ev(3, { cart: "c1", type: "add", product: "pear", qty: 1 }),
    ev(4, { cart: "c1", type: "paid" }),
    ev(5, { cart: "c2", type: "add", product: "apple", qty: 5 }),
  ]);
  await db.query(carts.name);
  const c1 = await db.get("ShoppingCarts/c1");
  assert.deepEqual({ items: c1.items, paid: c1.paid }, { items: { apple: 2, pear: 1 }, paid: true });
  const totals = async () => Object.fromEntries((await db.query(salesPerProduct.name)).rows.map((r) => [r.key, r.value]));
  assert.deepEqual(await totals(), { apple: 2, pear: 1 });
  await db.put("cart-events/6", { cart: "c2", type: "paid" }, { collection: "CartEvents" });
  assert.deepEqual(await totals(), { apple: 7, pear: 1 });
  await db.close();
});

test("liveQuery calls back with new rows, not for unrelated writes", async () => {
  const db = await Outpost.open("idx-live", { storage: "memory" });
  await db.defineIndex(byCity);
  const results = [];
  let wake;
  const stop = db.liveQuery("users/by-city", { eq: "Oslo" }, (r) => {
    results.push(r.rows.map((x) => x.id));
    wake?.();
  });
  const next = () => new Promise((resolve) => (wake = resolve));
  await next();
  assert.deepEqual(results, [[]]);
  let arrived = next();
  await db.put("users/1", { name: "a", city: "Oslo" }, { collection: "Users" });
  await arrived;
  assert.deepEqual(results.at(-1), ["users/1"]);
  await db.put("users/2", { name: "b", city: "Rome" }, { collection: "Users" });
  arrived = next();
  await db.put("users/3", { name: "c", city: "Oslo" }, { collection: "Users" });
  await arrived;
  assert.deepEqual(results.at(-1), ["users/1", "users/3"]);
  assert.equal(results.length, 3, "the write in Rome did not call back");
  stop();
  await db.put("users/4", { name: "d", city: "Oslo" }, { collection: "Users" });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(results.length, 3, "stopped");
  await db.close();
});

test("a changed map function builds a new version; queries move to it once caught up", async () => {
  const db = await Outpost.open("idx-version", { storage: "memory" });
  await db.transaction(Array.from({ length: 50 }, (_, i) => ({ type: "put", id: `users/${i}`, doc: { name: `u${i}`, city: "Oslo" }, collection: "Users" })));
  await db.defineIndex(byCity);
  assert.equal((await db.query("users/by-city")).rows[0].key, "Oslo");
  await db.defineIndex({ ...byCity, map: (u, emit) => emit(u.city.toUpperCase(), u.name) });
  const r = await db.query("users/by-city");
  assert.equal(r.rows.length, 50);
  assert.equal(r.rows[0].key, "OSLO");
  const infos = await db.indexes();
  assert.equal(infos.length, 1);
  await db.close();
});

test("bad definitions, throwing functions and unknown indexes are typed errors", async () => {
  const db = await Outpost.open("idx-errors", { storage: "memory" });
  await rejectsWith(db.defineIndex({ name: "x" }), "invalid_argument", /map must be a function/);
  await rejectsWith(db.defineIndex({ name: "x", map() {}, colections: [] }), "invalid_options", /colections/);
  await rejectsWith(db.defineIndex({ name: "", map() {} }), "invalid_argument");
  await rejectsWith(db.defineIndex({ name: "o", collections: ["A"], map() {}, reduce: (k, v) => v.length, output: "A" }), "invalid_argument", /own output/);
  await db.put("users/1", { name: "a", city: "Oslo" }, { collection: "Users" });
  await db.defineIndex({
    name: "throws",
    collections: ["Users"],
    map(u) {
      throw new Error(`cannot map ${u.name}`);
    },
  });
  await rejectsWith(db.query("throws"), "index_failed", /"throws".*"users\/1".*cannot map a/);
  await db.defineIndex({ name: "objects", map: (d, emit) => emit({ a: 1 }) });
  await rejectsWith(db.query("objects"), "index_failed", /object/);
  await rejectsWith(db.query("nope"), "no_index");
  await rejectsWith(db.query("users/by-city", { where: 1 }), "invalid_options", /query: unknown option "where"/);
  await db.close();
});

test("a hubComputed index is not computed here: its name says where its results are", async () => {
  const { wardCensus } = await import("../../examples/indexes/clinic.mjs");
  const db = await Outpost.open("idx-hub-computed", { storage: "memory" });
  await db.put("visits/1", { patient: "p1", ward: "north", diagnosis: "flu" }, { collection: "Visits" });
  await db.defineIndex(wardCensus);
  assert.deepEqual((await db.indexes()).map((i) => i.name), []);
  await rejectsWith(db.query("clinic/ward-census", {}), "no_index", /computed at the hub.*"WardCensus"/);
  await rejectsWith(db.queryCount("clinic/ward-census", {}), "no_index", /computed at the hub/);
  // Nothing was computed here.
  assert.equal(await db.get("WardCensus/north"), null);
  // A hubComputed index reduces into an output collection.
  const { output, ...noOutput } = wardCensus;
  await rejectsWith(db.defineIndex(noOutput), "invalid_argument", /hubComputed.*output/);
  await rejectsWith(db.defineIndex({ ...wardCensus, hubComputed: "yes" }), "invalid_argument", /hubComputed is true or false/);
  await db.close();
});

test("a query can wait for its index up to an etag (a write's)", async () => {
  const db = await Outpost.open("idx-wait-etag", { storage: "memory" });
  await db.defineIndex(byCity);
  const w = await db.put("users/a", { name: "a", city: "Lima" }, { collection: "Users" });
  const r = await db.query("users/by-city", { eq: "Lima", wait: w.etag });
  assert.ok(r.indexedEtag >= w.etag, JSON.stringify(r));
  assert.deepEqual(r.rows.map((x) => x.id), ["users/a"]);
  await rejectsWith(db.query("users/by-city", { wait: -1 }), "invalid_argument", /wait/);
  await rejectsWith(db.query("users/by-city", { wait: "soon" }), "invalid_argument", /wait/);
  await db.close();
});

test("indexes are kept up to date in the background after commits, between other operations", async () => {
  const db = await Outpost.open("idx-background", { storage: "memory" });
  await db.defineIndex(byCity);
  const users = Array.from({ length: 2500 }, (_, i) => ({ type: "put", id: `users/${i}`, doc: { name: `u${i}`, city: i % 2 ? "Oslo" : "Rome" }, collection: "Users" }));
  await db.transaction(users);
  // A write right after is not held up by the index's steps (one turn each).
  await db.put("notes/1", { text: "between steps" });
  // Nobody queries: the index catches up by itself (2,500 changes, three steps).
  const deadline = Date.now() + 20_000;
  let info;
  do {
    await new Promise((r) => setTimeout(r, 20));
    [info] = await db.indexes();
  } while (info.stale && Date.now() < deadline);
  assert.equal(info.stale, false, "the index caught up in the background");
  const r = await db.query("users/by-city", { eq: "Oslo", wait: false });
  assert.equal(r.stale, false);
  assert.equal(r.rows.length, 1250);
  // A map that throws is reported (console.error), not an unhandled rejection, and queries say index_failed.
  const errors = [];
  const original = console.error;
  console.error = (...args) => errors.push(args.map(String).join(" "));
  try {
    await db.defineIndex({ name: "bad", collections: ["Users"], map: () => { throw new Error("no map today"); } });
    await db.put("users/x", { name: "x", city: "Oslo" }, { collection: "Users" });
    const until = Date.now() + 10_000;
    while (!errors.some((e) => e.includes("no map today")) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  } finally {
    console.error = original;
  }
  assert.ok(errors.some((e) => e.includes("keeping indexes up to date failed") && e.includes("no map today")), errors.join("\n"));
  await rejectsWith(db.query("bad", {}), "index_failed", /no map today/);
  // The other index is not held up by it.
  await db.put("users/y", { name: "y", city: "Oslo" }, { collection: "Users" });
  const until = Date.now() + 10_000;
  let rows;
  do {
    await new Promise((r) => setTimeout(r, 20));
    rows = (await db.query("users/by-city", { eq: "Oslo", wait: false })).rows.length;
  } while (rows < 1252 && Date.now() < until);
  assert.equal(rows, 1252, "users/x and users/y indexed in the background beside the failing index");
  await rejectsWith(db.updateIndexes(), "index_failed", /no map today/);
  await db.close();
});
