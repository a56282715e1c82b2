// The engine in a worker (issue 14 §4): a Node worker thread runs
// `serveOutpost()` (worker-serve.mjs); this thread opens databases there with
// `openInWorker` and uses the same methods as `Outpost`: writes, reads,
// transactions (an array, or a callback collected here), errors as typed
// `OutpostError`s, `subscribe` and `liveQuery` over indexes defined in the
// worker, `sync` status mirrored, `close`. The browser runs the same file
// (remote.js) in a dedicated worker: tests/e2e/worker.test.mjs.
import { after, before, test } from "node:test";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";
import { MessageChannel, Worker } from "node:worker_threads";
import { destroyInWorker, openInWorker, OutpostError, RemoteOutpost } from "@outpost/db";
import { hubBinary, startHub } from "./hub-proc.mjs";

// Node 20 has WebSocket behind a flag: the worker gets it, so its replication runs.
const worker = new Worker(new URL("./worker-serve.mjs", import.meta.url), {
  execArgv: typeof globalThis.WebSocket === "function" ? [] : ["--experimental-websocket"],
});
after(() => worker.terminate());

/** A real hub (development tokens) for the replication run in the worker: its ws:// URL. */
let hubUrl;
const stops = [];
after(async () => {
  for (const stop of stops.reverse()) await stop();
});
before(async () => {
  const bin = hubBinary();
  // Not skipped when missing: scripts/test.sh builds the hub before this step.
  assert.ok(bin, "no outpost-hub binary: run `cargo build -p outpost-hub` (or set OUTPOST_HUB)");
  const dir = mkdtempSync(join(tmpdir(), "outpost-pkg-worker-"));
  stops.push(() => rmSync(dir, { recursive: true, force: true }));
  const sha = createHash("sha256").update("shop-token").digest("hex");
  const cfg = join(dir, "hub.toml");
  writeFileSync(cfg, `data_dir = "./data"\n[dev]\ntokens = true\n[[database]]\nname = "main"\n[[edge]]\nname = "shop"\ntoken_sha256 = "${sha}"\ndatabase = "main"\nread = ["s/"]\nwrite = ["s/"]\n`);
  // Stopped by the module's after hook (startHub registers its stop with what it is given).
  const { addr } = await startHub({ after: (stop) => stops.push(stop) }, bin, cfg);
  hubUrl = `ws://${addr}/sync`;
});
const SHOP = () => ({ url: hubUrl, identity: "shop", credential: "shop-token" });

const rejects = async (promise, code, pattern) => {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof OutpostError, `expected an OutpostError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
};

/** Resolves once `f()` is true (bounded). */
async function until(what, f, ms = 5000) {
  const t = Date.now();
  while (!(await f())) {
    if (Date.now() - t > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test("writes, reads, transactions and typed errors through the worker", async () => {
  const db = await openInWorker(worker, "w-basic", { storage: "memory" });
  assert.ok(db instanceof RemoteOutpost);
  assert.equal(db.name, "w-basic");
  assert.equal(typeof db.dbId, "string");
  assert.ok(db.dbId.length > 0);
  const r = await db.put("notes/1", { text: "a" }, { collection: "Notes" });
  assert.equal(r.id, "notes/1");
  assert.ok(r.etag > 0);
  assert.equal(Number(db.stats().last_etag), r.etag, "stats() carries the last answer's counters");
  assert.equal((await db.get("notes/1")).text, "a");
  assert.equal(await db.get("notes/none"), null);
  const tx = await db.transaction(async (t) => {
    t.put("notes/2", { text: "b" });
    t.put("notes/3", { text: "c" }, { collection: "Notes" });
    t.delete("notes/1");
  });
  assert.deepEqual(
    tx.map((x) => [x.id, x.deleted]),
    [
      ["notes/2", false],
      ["notes/3", false],
      ["notes/1", true],
    ],
  );
  assert.deepEqual(await db.transaction([{ type: "put", id: "notes/4", doc: { n: 4 } }], { results: false }), { written: 1, etag: tx[2].etag + 1 });
  assert.deepEqual(await db.scan({ prefix: "notes/", keysOnly: true }), ["notes/2", "notes/3", "notes/4"]);
  assert.equal(await db.count(), 3);
  assert.equal((await db.changes({ since: 0 })).length, 4);
  // Errors cross as OutpostErrors with their codes; nothing is written.
  await rejects(db.put("notes/5", { a: 1 }, { colection: "Notes" }), "invalid_options", /colection/);
  await rejects(db.transaction(async (t) => t.put("notes/6", {}, { colection: "X" })), "invalid_options");
  await rejects(db.put("", { a: 1 }), "invalid_id", /the id is empty/);
  await rejects(db.put("notes/7", [1]), "invalid_json");
  await rejects(db.query("no-such-index"), "no_index");
  // Functions do not cross: the index belongs in the worker's setup.
  await rejects(db.defineIndex({ name: "x", collections: ["Notes"], map: () => {} }), "invalid_argument", /define the index in the worker/);
  await rejects(db.put("notes/8", { f: () => 1 }), "invalid_argument", /cannot be sent to the worker/);
  assert.equal(await db.count(), 3);
  await db.close();
  await db.close(); // twice is harmless
  await rejects(db.get("notes/2"), "closed");
  assert.throws(() => db.subscribe(() => {}), (e) => e.code === "closed");
});

test("indexes defined in the worker: queries, the cart chain, liveQuery and subscribe", async () => {
  const db = await openInWorker(worker, "w-carts", { storage: "memory" });
  const seen = [];
  const unsubscribe = db.subscribe({ collection: "CartEvents" }, (docs) => seen.push(...docs.map((d) => d["@metadata"]["@id"])));
  const live = [];
  const stopLive = db.liveQuery("sales/per-product", {}, (r) => live.push(Object.fromEntries(r.rows.map((x) => [x.key, x.value]))));
  const ev = (id, doc) => ({ type: "put", id: `cart-events/${id}`, doc, collection: "CartEvents" });
  await db.transaction([
    ev(1, { cart: "c1", type: "add", product: "apple", qty: 3 }),
    ev(2, { cart: "c1", type: "remove", product: "apple", qty: 1 }),
    ev(3, { cart: "c1", type: "add", product: "pear", qty: 1 }),
    ev(4, { cart: "c1", type: "paid" }),
    ev(5, { cart: "c2", type: "add", product: "apple", qty: 5 }),
  ]);
  const totals = async () => Object.fromEntries((await db.query("sales/per-product")).rows.map((r) => [r.key, r.value]));
  assert.deepEqual(await totals(), { apple: 2, pear: 1 });
  const c1 = await db.get("ShoppingCarts/c1");
  assert.deepEqual({ items: c1.items, paid: c1.paid }, { items: { apple: 2, pear: 1 }, paid: true });
  await db.put("cart-events/6", { cart: "c2", type: "paid" }, { collection: "CartEvents" });
  assert.deepEqual(await totals(), { apple: 7, pear: 1 });
  await until("the live query's latest rows", () => JSON.stringify(live.at(-1)) === JSON.stringify({ apple: 7, pear: 1 }));
  await until("six events", () => seen.length === 6);
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6].map((i) => `cart-events/${i}`));
  // Stopped listeners hear nothing more.
  unsubscribe();
  stopLive();
  const calls = live.length;
  await db.put("cart-events/7", { cart: "c3", type: "add", product: "fig", qty: 1 }, { collection: "CartEvents" });
  await db.put("cart-events/8", { cart: "c3", type: "paid" }, { collection: "CartEvents" });
  assert.deepEqual(await totals(), { apple: 7, pear: 1, fig: 1 });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(seen.length, 6);
  assert.equal(live.length, calls);
  assert.deepEqual(
    (await db.indexes()).map((i) => i.name).sort(),
    ["carts", "sales/per-product"],
  );
  await db.close();
});

test("several databases in one worker; a setup that throws fails the open", async () => {
  const a = await openInWorker(worker, "no-setup-a", { storage: "memory" });
  const b = await openInWorker(worker, "no-setup-b", { storage: "memory" });
  await a.put("x/1", { from: "a" });
  await b.put("x/1", { from: "b" });
  assert.equal((await a.get("x/1")).from, "a");
  assert.equal((await b.get("x/1")).from, "b");
  await a.close();
  assert.equal((await b.get("x/1")).from, "b", "closing one leaves the other open");
  await b.close();
  await destroyInWorker(worker, "no-setup-b"); // nothing to delete without IndexedDB: resolves
  await assert.rejects(openInWorker(worker, "bad-setup", { storage: "memory" }), /this setup refuses/);
  await rejects(openInWorker(worker, "no-setup-c", { storage: "memory", cache: 1 }), "invalid_options", /unknown option "cache"/);
  await rejects(openInWorker(worker, "no-setup-c", { onStorageLost: 1 }), "invalid_options");
  await rejects(openInWorker({}, "x"), "invalid_argument");
  // A worker that ends: pending and later calls reject with worker_failed.
  const gone = new Worker("setTimeout(() => process.exit(3), 50)", { eval: true });
  await rejects(openInWorker(gone, "never"), "worker_failed", /exited \(code 3\)/);
  await rejects(openInWorker(gone, "never"), "worker_failed");
});

test("sync in the worker with a real hub: the page's controller mirrors its status; a refused start is an error status", async () => {
  const db = await openInWorker(worker, "no-setup-sync", { storage: "memory" });
  const states = [];
  // Nobody listens on port 9: the replication in the worker goes offline and retries.
  const sync = db.sync({ ...SHOP(), onStatus: (s) => states.push(s.state), onGrant: () => {}, onPurge: () => {} });
  assert.equal(sync.status.state, "connecting");
  await rejects(Promise.resolve().then(() => sync.on("bogus", () => {})), "invalid_argument");
  await until("live, from the worker", () => sync.status.state === "live", 20000);
  assert.deepEqual(sync.grant.read, ["s/"], "the grant, mirrored");
  // A write the hub acknowledges (the worker's replication pushes it).
  assert.equal((await db.put("s/1", { n: 1 }, { safety: "replicated", timeoutMs: 20000 })).id, "s/1");
  // A second start is refused in the worker: its controller says so.
  const second = db.sync(SHOP());
  await until("the refusal", () => second.status.state === "error");
  assert.equal(second.status.code, "already_syncing");
  await sync.stop();
  assert.equal(sync.stopped, true);
  assert.equal(sync.status.state, "offline");
  assert.throws(() => db.sync({ url: "ws://x/sync", identity: "a", credential: "t", token: () => "t" }), (e) => e.code === "invalid_options");
  assert.throws(() => db.sync({ url: "ws://x/sync", identity: "a", credential: "t", onGrant: 1 }), (e) => e.code === "invalid_options");
  await db.close();
});

test("one owner for several ports: one handle per database, one shared replication, closed with the last", async () => {
  // A second port to the same worker, as a second tab of a SharedWorker.
  const { port1, port2 } = new MessageChannel();
  worker.postMessage({ connect: port2 }, [port2]);
  after(() => port1.close());
  const a = await openInWorker(worker, "no-setup-shared", { storage: "memory" });
  const b = await openInWorker(port1, "no-setup-shared", { storage: "memory" });
  assert.equal(a.dbId, b.dbId, "the same database (a memory store opened twice would be two)");
  const heard = [];
  b.subscribe((docs) => heard.push(...docs.map((d) => d["@metadata"]["@id"])));
  await b.count(); // the subscription is in place (calls on one port are handled in order)
  await a.put("s/1", { by: "a" });
  assert.equal((await b.get("s/1")).by, "a");
  await until("b hears a's write", () => heard.includes("s/1"));
  {
    // Both ask to replicate: one replication, both see its status; stopping one leaves the other's.
    const sa = a.sync(SHOP());
    const sb = b.sync(SHOP());
    await until("both see the one replication live", () => sa.status.state === "live" && sb.status.state === "live", 20000);
    const again = a.sync(SHOP());
    await until("a second sync of one handle is refused", () => again.status.state === "error");
    assert.equal(again.status.code, "already_syncing");
    await sa.stop();
    // b's share of the replication goes on: a write through b is acknowledged by the hub.
    assert.equal(sb.stopped, false);
    assert.equal((await b.put("s/2", { by: "b" }, { safety: "replicated", timeoutMs: 20000 })).id, "s/2");
    assert.equal(sb.status.state, "live");
    await sb.stop();
  }
  await a.close();
  assert.equal((await b.get("s/1")).by, "a", "closing one handle leaves the database open for the other");
  await b.close();
  const c = await openInWorker(worker, "no-setup-shared", { storage: "memory" });
  assert.notEqual(c.dbId, a.dbId, "closed with the last handle: a new open is a new (memory) database");
  assert.equal(await c.count(), 0);
  await c.close();
});
