// The engine in a dedicated worker (issue 14 §4), in real headless Chromium
// over real IndexedDB, through the packed npm package, against a real hub:
//
//   1. the lab page starts app/worker.js (`serveOutpost`, the cart example's
//      indexes defined there) and opens a database in it with
//      `openInWorker`; writes, a transaction given as a callback, queries of
//      the chained cart index and a liveQuery, all answered by the worker;
//   2. a second tab opens the same database on its own main thread
//      (`Outpost.open`) and writes: the worker's handle hears of it (the
//      cross-tab lock and channel work from a worker) and the first tab's
//      liveQuery calls back with the new totals;
//   3. the worker replicates with the hub (`db.sync` from the page, run in
//      the worker): the status goes live and a write with safety
//      "replicated" resolves once the hub acknowledged it;
//   4. the page's main thread ran no engine work: while the worker commits
//      2,000 documents, the page's longest task is reported (not asserted:
//      a timing; docs/benchmarks.md has the benchmark);
//   5. the same script as a SharedWorker owns one database for two tabs:
//      one handle (same database id), a write in one tab heard at once by
//      the other's subscription, one replication shared: the first tab stops
//      its share and closes, the other's stays live and gets a "replicated"
//      write acknowledged; the new database also pulled the carts step 3
//      pushed, so the chained index's totals include them.
//
// Run through run.sh (which builds dist/ with lab.html and its worker, and
// sets OUTPOST_HUB).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { launchHub } from "./hub.mjs";
import { executablePath, session, waitUntilSource } from "./profile.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const distDir = join(here, "dist");
const hubBin = process.env.OUTPOST_HUB || "";
const TOKEN = "shop-token-worker-e2e";
const tmpDirs = [];
let hub;

function tmp(prefix) {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}

before(async () => {
  if (!hubBin) return;
  assert.ok(existsSync(join(distDir, "lab.html")), "dist/lab.html is missing: run tests/e2e/run.sh (it runs vite build)");
  assert.ok(existsSync(executablePath), `${executablePath} not found`);
  const dir = tmp("outpost-worker-e2e-");
  const site = join(dir, "site");
  cpSync(distDir, site, { recursive: true });
  const cfg = join(dir, "hub.toml");
  const sha = createHash("sha256").update(TOKEN).digest("hex");
  writeFileSync(
    cfg,
    `listen = "127.0.0.1:0"\ndata_dir = "./data"\ndemo_site = ${JSON.stringify(site)}\n\n[dev]\ntokens = true\n\n[[database]]\nname = "main"\n\n` +
      `[[edge]]\nname = "shop"\ntoken_sha256 = "${sha}"\ndatabase = "main"\nread = ["cart-events/"]\nwrite = ["cart-events/"]\n`,
  );
  hub = await launchHub(hubBin, cfg, { cwd: dir, killAfterMs: 10_000, maxLog: 1_000_000 });
});

after(async () => {
  await hub?.stop();
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

test("the engine in a dedicated worker: same API, other tabs, replication, a free main thread", { skip: hubBin ? false : "OUTPOST_HUB not set (run.sh sets it)" }, async () => {
  const profile = tmp("outpost-worker-e2e-profile-");
  const name = `worker-carts-${process.pid}`;
  const seen = await session(profile, hub.base, async (page) => {
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const first = await page.evaluate(
      async ({ name }) => {
        const { openInWorker, worker } = window.lab;
        const db = await openInWorker(worker(), name);
        window.db = db;
        const ev = (id, doc) => ({ type: "put", id: `cart-events/${id}`, doc, collection: "CartEvents" });
        await db.transaction([
          ev(1, { cart: "c1", type: "add", product: "apple", qty: 3 }),
          ev(2, { cart: "c1", type: "remove", product: "apple", qty: 1 }),
          ev(3, { cart: "c1", type: "add", product: "pear", qty: 1 }),
        ]);
        await db.transaction(async (tx) => {
          tx.put("cart-events/4", { cart: "c1", type: "paid" }, { collection: "CartEvents" });
          tx.put("cart-events/5", { cart: "c2", type: "add", product: "apple", qty: 5 }, { collection: "CartEvents" });
        });
        const totals = async () => Object.fromEntries((await db.query("sales/per-product")).rows.map((r) => [r.key, r.value]));
        window.live = [];
        window.stopLive = db.liveQuery("sales/per-product", {}, (r) => window.live.push(Object.fromEntries(r.rows.map((x) => [x.key, x.value]))));
        let refused = null;
        try {
          await db.defineIndex({ name: "x", collections: ["CartEvents"], map: () => {} });
        } catch (e) {
          refused = e.code;
        }
        // A worker whose script does not load: the open rejects, typed.
        let missing = null;
        try {
          await openInWorker(new Worker("/no-such-worker.js", { type: "module" }), name);
        } catch (e) {
          missing = e.code;
        }
        const cart = await db.get("ShoppingCarts/c1");
        return {
          totals: await totals(),
          cart: { items: cart.items, paid: cart.paid },
          count: await db.count(),
          refused,
          missing,
          isWorkerHandle: !(db instanceof window.lab.Outpost),
        };
      },
      { name },
    );

    // A second tab writes on its own main thread.
    const other = await page.context().newPage();
    other.on("pageerror", (e) => errors.push(e.message));
    await other.goto(new URL("lab.html", hub.base).href);
    await other.waitForFunction(() => window.lab);
    await other.evaluate(async (name) => {
      const db = await window.lab.Outpost.open(name);
      await db.put("cart-events/6", { cart: "c2", type: "paid" }, { collection: "CartEvents" });
      await db.close();
    }, name);
    await other.close();

    const rest = await page.evaluate(
      async ({ token, waitUntil }) => {
        const wait = (0, eval)(`(${waitUntil})`);
        const db = window.db;
        await wait("the other tab's write in the live query", () => JSON.stringify(window.live.at(-1)) === JSON.stringify({ apple: 7, pear: 1 }));
        window.stopLive();
        // Replication, run by the worker.
        const states = [];
        const sync = db.sync({ url: "/sync", identity: "shop", credential: token, onStatus: (s) => states.push(s.state) });
        await wait("live", () => sync.status.state === "live", 30000);
        const acked = await db.put("cart-events/7", { cart: "c3", type: "add", product: "fig", qty: 1 }, { collection: "CartEvents", safety: "replicated", timeoutMs: 20000 });
        // The main thread while the worker commits 2,000 documents.
        let longest = 0;
        const observer = new PerformanceObserver((list) => {
          for (const e of list.getEntries()) longest = Math.max(longest, e.duration);
        });
        observer.observe({ type: "longtask" });
        const docs = Array.from({ length: 2000 }, (_, i) => ({ type: "put", id: `bulk/${i}`, doc: { i, text: "x".repeat(900) } }));
        for (let i = 0; i < docs.length; i += 500) await db.transaction(docs.slice(i, i + 500), { results: false });
        await new Promise((r) => setTimeout(r, 50));
        observer.disconnect();
        const count = await db.count();
        await sync.stop();
        await db.close();
        let closed = null;
        try {
          await db.get("bulk/1");
        } catch (e) {
          closed = e.code;
        }
        return { states, ackedId: acked.id, count, longest, closed };
      },
      { token: TOKEN, waitUntil: waitUntilSource },
    );
    return { ...first, ...rest, errors };
  });

  assert.deepEqual(seen.errors, []);
  assert.equal(seen.isWorkerHandle, true);
  assert.deepEqual(seen.totals, { apple: 2, pear: 1 });
  assert.deepEqual(seen.cart, { items: { apple: 2, pear: 1 }, paid: true });
  assert.equal(seen.refused, "invalid_argument");
  assert.equal(seen.missing, "worker_failed");
  assert.ok(seen.states.includes("live"), JSON.stringify(seen.states));
  assert.equal(seen.ackedId, "cart-events/7");
  assert.equal(seen.count, 7 + 2000 + 3, "events, bulk documents and the three carts (output documents)");
  assert.equal(seen.closed, "closed");
  console.log(`# the page's longest task while the worker committed 2,000 documents: ${seen.longest ? `${seen.longest.toFixed(0)} ms` : "none over 50 ms"}`);
  // The hub has the replicated events (its log names the session).
  assert.match(hub.log(), /shop/);
});

test("one SharedWorker owns the database for two tabs: one handle, shared replication, each tab's listeners", { skip: hubBin ? false : "OUTPOST_HUB not set (run.sh sets it)" }, async () => {
  const profile = tmp("outpost-worker-e2e-shared-");
  const name = `shared-carts-${process.pid}`;
  const seen = await session(profile, hub.base, async (page) => {
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const other = await page.context().newPage();
    other.on("pageerror", (e) => errors.push(e.message));
    await other.goto(new URL("lab.html", hub.base).href);
    await other.waitForFunction(() => window.lab);
    // Both tabs connect to the one SharedWorker and open the same database there.
    const open = (p) =>
      p.evaluate(async ({ name, token }) => {
        const { openInWorker, sharedWorker } = window.lab;
        window.db = await openInWorker(sharedWorker().port, name);
        window.heard = [];
        window.db.subscribe({ collection: "CartEvents" }, (docs) => window.heard.push(...docs.map((d) => d["@metadata"]["@id"])));
        await window.db.count(); // the subscription is in place
        window.sync = window.db.sync({ url: "/sync", identity: "shop", credential: token });
        return window.db.dbId;
      }, { name, token: TOKEN });
    const ids = [await open(page), await open(other)];
    const waitLive = (p) => p.waitForFunction(() => window.sync.status.state === "live", null, { timeout: 30_000 });
    await waitLive(page);
    await waitLive(other);
    // A write in one tab: the other tab's subscription hears it at once (one handle in the worker).
    await page.evaluate(() => window.db.put("cart-events/s1", { cart: "s", type: "add", product: "kiwi", qty: 2 }, { collection: "CartEvents" }));
    await other.waitForFunction(() => window.heard.includes("cart-events/s1"), null, { timeout: 20_000 });
    // The first tab stops its share of the replication and closes: the other's goes on.
    await page.evaluate(async () => {
      await window.sync.stop();
      await window.db.close();
    });
    const rest = await other.evaluate(async () => {
      const acked = await window.db.put("cart-events/s2", { cart: "s", type: "paid" }, { collection: "CartEvents", safety: "replicated", timeoutMs: 20000 });
      const totals = Object.fromEntries((await window.db.query("sales/per-product")).rows.map((r) => [r.key, r.value]));
      const state = window.sync.status.state;
      await window.sync.stop();
      await window.db.close();
      return { acked: acked.id, totals, state };
    });
    return { ids, ...rest, errors };
  });
  assert.deepEqual(seen.errors, []);
  assert.equal(seen.ids[0], seen.ids[1], "both tabs have the same database");
  assert.equal(seen.acked, "cart-events/s2");
  assert.equal(seen.state, "live");
  // kiwi from these tabs; apple and pear from the carts the first test's worker replicated to the hub.
  assert.deepEqual(seen.totals, { apple: 7, pear: 1, kiwi: 2 });
});
