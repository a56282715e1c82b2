// End-to-end test of @outpost/db in real headless Chromium (Debian's, driven by
// playwright-core) with real IndexedDB: the Vite-built app in dist/ (built by
// run.sh against the packed npm tarball) is served on 127.0.0.1. The page
// writes through the package; the test reloads the page (same context, same
// origin and profile) and reads the same data back, then restarts the whole
// browser on the same profile and reads it again. It also checks that error
// codes reach the page and saves a screenshot to artifacts/page.png. Then two
// tabs (two pages of one context, same origin) open one database: a write in
// one fires the other's subscription; both write concurrently and lose
// nothing; after reloads both agree on count() and stats(). Last, a real full
// quota: the DevTools protocol (Storage.overrideQuotaForOrigin) gives a fresh
// origin 2 MiB; batches are written until a commit rejects with
// quota_exceeded, and the committed batches survive, also after a reload.
//
// Run through run.sh (which builds dist/); CHROMIUM overrides /usr/bin/chromium.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { ARGS, executablePath } from "./profile.mjs";
import { serve } from "./server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const distDir = join(here, "dist");
const artifacts = join(here, "artifacts");
const STEP_MS = 15_000; // any single wait on the page
const NAV_MS = 30_000; // a navigation or reload (includes fetching and compiling the .wasm)
const LAUNCH_MS = 60_000;

// A database name of its own per run, so an old profile can never pass for this run's data.
const dbName = `e2e-${process.pid}-${Date.now()}`;
const NOTES = 20;
const TOTAL = NOTES + 1;

let server;
let profile;
let context;
let page;
/** The edge key made in the first test (`db.identity("me")`), checked after a reload and a browser restart. */
let edgeKey;
const pageErrors = [];

/** Records a page's errors (uncaught exceptions, console.error, HTTP errors) in pageErrors. */
function watch(p, label = "") {
  p.on("pageerror", (e) => pageErrors.push(`${label}pageerror: ${e.message}`));
  p.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`${label}console.error: ${m.text()} (${m.location()?.url ?? ""})`);
  });
  p.on("response", (r) => {
    if (r.status() >= 400) pageErrors.push(`${label}HTTP ${r.status()} ${r.url()}`);
  });
}

async function launch() {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: ARGS,
    timeout: LAUNCH_MS,
    viewport: { width: 900, height: 900 },
  });
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(NAV_MS);
  page = context.pages()[0] ?? (await context.newPage());
  watch(page);
}

async function closeBrowser() {
  if (!context) return;
  const c = context;
  context = undefined;
  page = undefined;
  // Bounded: if the browser does not close in time, Playwright's exit handler
  // kills it when this process ends.
  await Promise.race([c.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000).unref())]);
}

const url = (params) => `${server.url}?${new URLSearchParams(params)}`;

/** Waits until the page has opened the database and rendered (data-state="ready"). */
async function ready(expectedStatus = "ready", p = page) {
  const status = p.locator("#status");
  await p.waitForFunction(
    () => {
      const s = document.getElementById("status");
      return s && (s.dataset.state === "ready" || s.dataset.state === "error");
    },
    null,
    { timeout: NAV_MS },
  );
  assert.equal(await status.getAttribute("data-state"), "ready", `page status: ${await status.textContent()}`);
  assert.equal(await status.textContent(), expectedStatus);
}

/** What the page reads back through the package (count, a get, prefix scans). */
function readBack() {
  return page.evaluate(async () => {
    const { db } = window.outpostE2E;
    const note07 = await db.get("notes/07");
    const NOTE07 = await db.get("NOTES/07"); // ids are case-insensitive
    const task = await db.get("tasks/1");
    const notes = await db.scan({ prefix: "notes/" });
    const page2 = await db.scan({ prefix: "notes/", after: "notes/05", limit: 3 });
    return {
      count: await db.count(),
      note07,
      same07: JSON.stringify(NOTE07) === JSON.stringify(note07),
      task,
      missing: await db.get("notes/99"),
      notesIds: notes.map((d) => d["@metadata"]["@id"]),
      notesTitles: notes.map((d) => d.title),
      page2: page2.map((d) => d["@metadata"]["@id"]),
      collections: await db.collections(),
    };
  });
}

function assertData(got, where) {
  const ids = Array.from({ length: NOTES }, (_, i) => `notes/${String(i + 1).padStart(2, "0")}`);
  assert.equal(got.count, TOTAL, `${where}: count`);
  assert.ok(got.note07, `${where}: notes/07 is missing`);
  assert.equal(got.note07.title, "Note 07", where);
  assert.equal(got.note07.n, 7, where);
  assert.deepEqual(got.note07.tags, ["e2e", "odd"], where);
  assert.equal(got.note07["@metadata"]["@id"], "notes/07", where);
  assert.equal(got.note07["@metadata"]["@collection"], "Notes", where);
  assert.ok(got.same07, `${where}: get is not case-insensitive`);
  assert.equal(got.task.title, "Reload the page", where);
  assert.equal(got.task.at, "1970-01-01T00:00:00.000Z", where);
  assert.equal(got.task["@metadata"]["@collection"], "Tasks", where);
  assert.equal(got.missing, null, where);
  assert.deepEqual(got.notesIds, ids, `${where}: scan({ prefix: "notes/" })`);
  assert.deepEqual(got.notesTitles, ids.map((id) => `Note ${id.slice(6)}`), where);
  assert.deepEqual(got.page2, ["notes/06", "notes/07", "notes/08"], `${where}: scan with after and limit`);
}

/** What the page shows in its DOM. */
async function shown() {
  const rows = await page.locator("#notes tr").count();
  return {
    db: await page.locator("#db-name").textContent(),
    count: await page.locator("#count").textContent(),
    rows,
    firstRow: rows > 0 ? await page.locator("#notes tr").first().textContent() : null,
  };
}

before(async () => {
  assert.ok(existsSync(join(distDir, "index.html")), "dist/ is missing: run tests/e2e/run.sh (it runs vite build)");
  assert.ok(existsSync(executablePath), `${executablePath} not found`);
  server = await serve(distDir);
  profile = mkdtempSync(join(tmpdir(), "outpost-e2e-profile-"));
  await launch();
  console.log(`# serving ${distDir} at ${server.url}; Chromium ${context.browser()?.version() ?? ""} (${executablePath}); profile ${profile}`);
});

beforeEach(() => {
  pageErrors.length = 0;
});

after(async () => {
  await closeBrowser();
  await server?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test("the page writes through @outpost/db; the data survives a page reload (IndexedDB)", async () => {
  await page.goto(url({ db: dbName }));
  await ready();
  assert.equal((await shown()).count, "0", "a fresh database should be empty");

  await page.click("#write");
  await ready("written");
  assert.deepEqual(await shown(), { db: dbName, count: String(TOTAL), rows: NOTES, firstRow: "notes/01NotesNote 011" });
  assertData(await readBack(), "before the reload");
  // An edge key of this database (made now; kept in IndexedDB, outside the database).
  edgeKey = await page.evaluate(() => window.outpostE2E.db.identity("me"));
  assert.match(edgeKey.publicKey, /^p256:04[0-9a-f]{128}$/);

  // A real reload: a new JS realm, a new wasm instance, the database opened again.
  await page.evaluate(() => (window.__beforeReload = true));
  await page.reload();
  await ready();
  assert.equal(await page.evaluate(() => window.__beforeReload), undefined, "the page was not reloaded");

  assert.deepEqual(await shown(), { db: dbName, count: String(TOTAL), rows: NOTES, firstRow: "notes/01NotesNote 011" });
  assertData(await readBack(), "after the reload");
  assert.deepEqual(await page.evaluate(() => window.outpostE2E.db.identity("me")), edgeKey, "the same key after the reload");

  // The data is in IndexedDB under the database's name, in a storage bucket
  // of its own (generation 1: crate/src/store/idb/place.rs); the keys in
  // outpost-keys, in the origin's default storage.
  const where = await page.evaluate(async () => {
    const names = async (factory) => (await factory.databases()).map((d) => d.name);
    const buckets = {};
    for (const b of await navigator.storageBuckets.keys()) buckets[b] = await names((await navigator.storageBuckets.open(b)).indexedDB);
    return { default: await names(indexedDB), buckets };
  });
  const holding = Object.entries(where.buckets).filter(([, dbs]) => dbs.includes(dbName));
  assert.equal(holding.length, 1, `one bucket holds ${dbName}: ${JSON.stringify(where)}`);
  assert.match(holding[0][0], /^outpost-[0-9a-f]{32}-1$/, JSON.stringify(where));
  assert.ok(!where.default.includes(dbName), `not in the default storage: ${JSON.stringify(where)}`);
  assert.ok(where.default.includes("outpost-keys"), `IndexedDB databases: ${JSON.stringify(where)}`);
  assert.deepEqual(pageErrors, []);
});

test("after a reopen, a cold read caches the rest of the IndexedDB run it read (pages read along)", async () => {
  const got = await page.evaluate(async () => {
    const { Outpost } = window.outpostE2E;
    const name = `along-${Date.now()}`;
    let db = await Outpost.open(name);
    const pad = "r".repeat(900);
    await db.transaction(
      Array.from({ length: 2000 }, (_, i) => ({ type: "put", id: `a/${String(i).padStart(5, "0")}`, doc: { i, pad } })),
      { results: false },
    );
    await db.close();
    db = await Outpost.open(name);
    const s0 = (await db.stats()).cache;
    const first = await db.get("a/01000");
    const s1 = (await db.stats()).cache;
    const near = [];
    for (let i = 990; i < 1010; i++) near.push((await db.get(`a/${String(i).padStart(5, "0")}`))?.i);
    const s2 = (await db.stats()).cache;
    await db.close();
    await Outpost.destroy(name);
    return { first: first?.i, near, s0, s1, s2 };
  });
  assert.equal(got.first, 1000);
  assert.deepEqual(got.near, Array.from({ length: 20 }, (_, k) => 990 + k));
  const misses = got.s1.misses - got.s0.misses;
  assert.ok(got.s1.pages > 3 * misses, `whole runs cached by the first get: ${JSON.stringify(got)}`);
  assert.equal(got.s2.misses, got.s1.misses, `the neighbours came from the cache: ${JSON.stringify(got)}`);
  assert.deepEqual(pageErrors, []);
});

test("error codes surface in the page (invalid_id), and nothing is written", async () => {
  await page.click("#bad");
  await ready("error shown");
  assert.equal(await page.locator("#error-code").textContent(), "invalid_id");
  assert.equal((await shown()).count, String(TOTAL));

  // The same from page script: an Error subclass with a stable code.
  const errors = await page.evaluate(async () => {
    const { db, OutpostError } = window.outpostE2E;
    const out = {};
    for (const [what, op] of [
      ["empty id", () => db.put("", {})],
      ["get empty id", () => db.get("")],
    ]) {
      try {
        await op();
        out[what] = "no error";
      } catch (e) {
        out[what] = { code: e.code, isOutpostError: e instanceof OutpostError, isError: e instanceof Error, hasMessage: !!e.message };
      }
    }
    return out;
  });
  const expected = { code: "invalid_id", isOutpostError: true, isError: true, hasMessage: true };
  assert.deepEqual(errors, { "empty id": expected, "get empty id": expected });
  assert.deepEqual(pageErrors, []);
});

test("screenshot of the page (artifacts/page.png)", async () => {
  mkdirSync(artifacts, { recursive: true });
  const file = join(artifacts, "page.png");
  await page.screenshot({ path: file, fullPage: true, timeout: STEP_MS });
  assert.ok(existsSync(file));
  console.log(`# screenshot: ${file}`);
});

test("the data survives closing and relaunching the browser on the same profile", async () => {
  await closeBrowser();
  await launch();
  await page.goto(url({ db: dbName }));
  await ready();
  assert.equal((await shown()).count, String(TOTAL));
  assertData(await readBack(), "after the browser restart");
  // The edge key too: the same public key, its private half still non-extractable and signing.
  assert.deepEqual(await page.evaluate(() => window.outpostE2E.db.identity("me")), edgeKey, "the same key after the restart");
  const priv = await page.evaluate(async () => {
    const req = (r) => new Promise((res, rej) => { r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    const idb = await req(indexedDB.open("outpost-keys"));
    const rec = await req(idb.transaction("keys").objectStore("keys").get([window.outpostE2E.db.name, "me"]));
    idb.close();
    const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, rec.privateKey, new Uint8Array([7]));
    return { extractable: rec.privateKey.extractable, sig: sig.byteLength };
  });
  assert.deepEqual(priv, { extractable: false, sig: 64 });
  assert.deepEqual(pageErrors, []);
});

test("control: with storage \"memory\" the same steps lose the data on reload", async () => {
  // Shows that the reload checks above would catch data that did not persist.
  const name = `${dbName}-memory`;
  await page.goto(url({ db: name, storage: "memory" }));
  await ready();
  await page.click("#write");
  await ready("written");
  assert.equal((await shown()).count, String(TOTAL));
  await page.reload();
  await ready();
  assert.equal((await shown()).count, "0");
  assert.equal((await readBack()).count, 0);
  assert.deepEqual(pageErrors, []);
});

// ---- Several tabs: two pages of the same context (same origin, same profile) ----

const tabsDb = `${dbName}-tabs`;
let tabA;
let tabB;

/** Opens `tabsDb` in a new page of the context (a second tab). */
async function openTab(label) {
  const p = await context.newPage();
  watch(p, `[${label}] `);
  await p.goto(url({ db: tabsDb }));
  await ready("ready", p);
  return p;
}

/** What a tab's handle reports: count(), stats(), the ids and bodies under `conc/`, a changes() census. */
function census(p) {
  return p.evaluate(async () => {
    const { db } = window.outpostE2E;
    const count = await db.count(); // takes the lock and refreshes first
    const stats = db.stats();
    const conc = await db.scan({ prefix: "conc/" });
    const feed = await db.changes({ since: 0 });
    const etags = feed.map((d) => d["@metadata"]["@etag"]);
    return {
      count,
      documents: stats.documents,
      lastEtag: stats.last_etag,
      collections: await db.collections(),
      concIds: conc.map((d) => d["@metadata"]["@id"]),
      concOk: conc.every((d) => d.writer === d["@metadata"]["@id"].split("/")[1] && typeof d.i === "number"),
      feedLive: feed.filter((d) => !d["@metadata"]["@deleted"]).length,
      feedSorted: etags.every((e, i) => i === 0 || etags[i - 1] < e),
      feedUnique: new Set(feed.map((d) => d["@metadata"]["@id"].toLowerCase())).size === feed.length,
    };
  });
}

test("two tabs: a write in tab A fires tab B's subscription, and tab B reads it", async () => {
  tabA = await openTab("A");
  tabB = await openTab("B");
  await tabB.evaluate(() => {
    window.__tabsDocs = [];
    window.outpostE2E.db.subscribe({ prefix: "tabs/" }, (docs) => window.__tabsDocs.push(...docs));
  });

  const written = await tabA.evaluate(() =>
    window.outpostE2E.db.put("tabs/hello", { from: "A", n: 1 }, { collection: "Greetings" }),
  );
  await tabB.waitForFunction(() => window.__tabsDocs.length >= 1);
  const seen = await tabB.evaluate(() => window.__tabsDocs);
  assert.equal(seen.length, 1);
  assert.equal(seen[0].from, "A");
  assert.equal(seen[0]["@metadata"]["@id"], "tabs/hello");
  assert.equal(seen[0]["@metadata"]["@collection"], "Greetings");
  assert.equal(seen[0]["@metadata"]["@etag"], written.etag);
  assert.equal(seen[0]["@metadata"]["@change-vector"], written.changeVector);
  // The page's own subscription (all documents) shows it too.
  await tabB.waitForFunction(() => document.getElementById("live").textContent.includes("tabs/hello"));

  const read = await tabB.evaluate(() => window.outpostE2E.db.get("tabs/hello"));
  assert.equal(read.from, "A");
  assert.equal(read["@metadata"]["@change-vector"], written.changeVector);
  assert.equal(await tabB.evaluate(() => window.outpostE2E.db.count()), 1);

  // And back: B deletes, A's subscription sees the tombstone and A reads null.
  await tabB.evaluate(() => window.outpostE2E.db.delete("tabs/hello"));
  await tabA.waitForFunction(() =>
    window.outpostE2E.changes.some((d) => d["@metadata"]["@id"] === "tabs/hello" && d["@metadata"]["@deleted"]),
  );
  assert.equal(await tabA.evaluate(() => window.outpostE2E.db.get("tabs/hello")), null);
  assert.equal(await tabA.evaluate(() => window.outpostE2E.db.count()), 0);
  await tabB.waitForFunction(() => window.__tabsDocs.length >= 2);
  assert.equal((await tabB.evaluate(() => window.__tabsDocs))[1]["@metadata"]["@deleted"], true);
  assert.deepEqual(pageErrors, []);
});

test("two tabs writing concurrently (50 puts each, interleaved) lose nothing", async () => {
  const N = 50;
  const writeFrom = (p, writer) =>
    p.evaluate(
      async ({ writer, N }) => {
        const { db } = window.outpostE2E;
        const ops = [];
        for (let i = 0; i < N; i++) {
          ops.push(db.put(`conc/${writer}/${String(i).padStart(3, "0")}`, { writer, i, pad: "x".repeat(300) }, { collection: "Conc" }));
          // A transaction now and then: one commit with a put and a delete.
          if (i % 10 === 9) {
            ops.push(
              db.transaction(async (tx) => {
                tx.put(`tmp/${writer}/${i}`, { writer, i });
                tx.delete(`tmp/${writer}/${i - 10}`);
              }),
            );
          }
        }
        const results = await Promise.all(ops);
        return results.length;
      },
      { writer, N },
    );
  const [a, b] = await Promise.all([writeFrom(tabA, "a"), writeFrom(tabB, "b")]);
  assert.equal(a, N + N / 10);
  assert.equal(b, N + N / 10);

  const expectedIds = ["a", "b"].flatMap((w) => Array.from({ length: N }, (_, i) => `conc/${w}/${String(i).padStart(3, "0")}`));
  // 100 conc/ documents plus the last tmp/ document of each writer (the others were deleted).
  const total = 2 * N + 2;
  for (const [label, p] of [["A", tabA], ["B", tabB]]) {
    const c = await census(p);
    assert.equal(c.count, total, `tab ${label}: count`);
    assert.equal(c.documents, total, `tab ${label}: stats().documents`);
    assert.deepEqual(c.concIds, expectedIds, `tab ${label}: scan({ prefix: "conc/" })`);
    assert.ok(c.concOk, `tab ${label}: document bodies`);
    assert.equal(c.feedLive, total, `tab ${label}: live versions in changes()`);
    assert.ok(c.feedSorted, `tab ${label}: changes() in etag order`);
    assert.ok(c.feedUnique, `tab ${label}: one version per id in changes()`);
    assert.deepEqual(c.collections, [{ name: "Conc", count: 2 * N }], `tab ${label}: collections()`);
  }
  assert.equal((await census(tabA)).lastEtag, (await census(tabB)).lastEtag);

  // Each tab's subscription saw every conc/ document of both tabs, in etag order.
  for (const [label, p] of [["A", tabA], ["B", tabB]]) {
    await p.waitForFunction(
      (n) => new Set(window.outpostE2E.changes.filter((d) => d["@metadata"]["@id"].startsWith("conc/")).map((d) => d["@metadata"]["@id"])).size === n,
      2 * N,
    );
    const seen = await p.evaluate(() => window.outpostE2E.changes.map((d) => d["@metadata"]["@etag"]));
    assert.ok(seen.every((e, i) => i === 0 || seen[i - 1] < e), `tab ${label}: subscription in etag order, no repeats`);
  }
  assert.deepEqual(pageErrors, []);
});

test("two tabs: after reloading both, count() and stats() agree (nothing corrupt)", async () => {
  const before = await census(tabA);
  await Promise.all([tabA.reload(), tabB.reload()]);
  await ready("ready", tabA);
  await ready("ready", tabB);
  const [a, b] = [await census(tabA), await census(tabB)];
  for (const [label, c] of [["A", a], ["B", b]]) {
    assert.equal(c.count, before.count, `tab ${label}: count after reload`);
    assert.equal(c.documents, c.count, `tab ${label}: stats().documents = count()`);
    assert.equal(c.lastEtag, before.lastEtag, `tab ${label}: last etag after reload`);
    assert.deepEqual(c.concIds, before.concIds, `tab ${label}: conc/ ids after reload`);
    assert.ok(c.concOk && c.feedSorted && c.feedUnique, `tab ${label}: bodies and changes() after reload`);
  }
  // The pages show the count too.
  for (const p of [tabA, tabB]) assert.equal(await p.locator("#count").textContent(), String(before.count));

  // Writing after the reload still works from both tabs and each sees the other's write.
  await tabA.evaluate(() => window.outpostE2E.db.put("after/a", { ok: true }));
  await tabB.evaluate(() => window.outpostE2E.db.put("after/b", { ok: true }));
  assert.equal(await tabA.evaluate(() => window.outpostE2E.db.count()), before.count + 2);
  assert.equal((await tabA.evaluate(() => window.outpostE2E.db.get("after/b"))).ok, true);
  assert.equal((await tabB.evaluate(() => window.outpostE2E.db.get("after/a"))).ok, true);
  await tabA.waitForFunction(() => window.outpostE2E.changes.some((d) => d["@metadata"]["@id"] === "after/b"));
  assert.deepEqual(pageErrors, []);

  await Promise.race([Promise.all([tabA.close(), tabB.close()]), new Promise((r) => setTimeout(r, 10_000).unref())]);
});

// ---- A real quota failure: Chromium's quota lowered through the DevTools protocol ----

test("a full storage quota (CDP Storage.overrideQuotaForOrigin) rejects a transaction with quota_exceeded; earlier batches survive", async () => {
  // Its own origin (a second server: another port of 127.0.0.1). Chromium's
  // IndexedDB caches the space left of an origin whose databases it already
  // has open and may not see a later override for a while, so the override is
  // set before this origin first touches IndexedDB.
  const quotaServer = await serve(distDir);
  const origin = new URL(quotaServer.url).origin;
  const name = `${dbName}-quota`;
  const quotaUrl = `${quotaServer.url}?${new URLSearchParams({ db: name })}`;
  const QUOTA = 2 * 1024 * 1024; // enough to open the database and commit some batches
  const BATCH = 50; // documents per transaction, ~1 KiB each
  const MAX_BATCHES = 400; // ~20 MiB: far beyond the quota, the loop's bound
  const FILL_MS = 60_000;
  const p = await context.newPage();
  watch(p, "[quota] ");
  const cdp = await context.newCDPSession(p);
  try {
    await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: QUOTA });
    const q = await cdp.send("Storage.getUsageAndQuota", { origin });
    assert.equal(q.overrideActive, true, `Storage.getUsageAndQuota: ${JSON.stringify(q)}`);
    assert.equal(q.quota, QUOTA);

    await p.goto(quotaUrl);
    await ready("ready", p);

    // Batches of BATCH documents with incompressible ~1 KiB bodies, one
    // transaction each, until one rejects (bounded by count and time).
    const fill = await p.evaluate(
      async ({ BATCH, MAX_BATCHES, FILL_MS }) => {
        const { db, OutpostError } = window.outpostE2E;
        const id = (b, i) => `quota/${String(b).padStart(4, "0")}/${String(i).padStart(2, "0")}`;
        const pad = () => btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(768)))); // 1024 chars
        const t0 = performance.now();
        for (let b = 0; b < MAX_BATCHES; b++) {
          if (performance.now() - t0 > FILL_MS) return { ok: b, error: null, timedOut: true };
          try {
            await db.transaction(async (tx) => {
              for (let i = 0; i < BATCH; i++) tx.put(id(b, i), { b, i, pad: pad() }, { collection: "Quota" });
            });
          } catch (e) {
            return {
              ok: b,
              error: {
                code: e?.code,
                isOutpostError: e instanceof OutpostError,
                isError: e instanceof Error,
                message: String(e?.message ?? e),
              },
            };
          }
        }
        return { ok: MAX_BATCHES, error: null };
      },
      { BATCH, MAX_BATCHES, FILL_MS },
    );
    const usage = await cdp.send("Storage.getUsageAndQuota", { origin });
    console.log(
      `# quota ${QUOTA} bytes: ${fill.ok} batches of ${BATCH} committed, then ${JSON.stringify(fill.error)}; usage ${usage.usage} bytes`,
    );
    assert.ok(fill.error, `no write was refused after ${fill.ok} batches${fill.timedOut ? ` (stopped after ${FILL_MS} ms)` : ""}`);
    assert.equal(fill.error.code, "quota_exceeded", fill.error.message);
    assert.ok(fill.error.isOutpostError && fill.error.isError, "not an OutpostError");
    assert.ok(fill.ok >= 1, "the quota did not allow a single batch");

    /**
     * The documents of the committed batches, and nothing of the refused one,
     * read through the page's handle, or (`fresh`) through a second handle
     * opened on the same database in the page and closed afterwards.
     */
    const state = (fresh) =>
      p.evaluate(
        async ({ ok, BATCH, fresh, name }) => {
          const { Outpost } = window.outpostE2E;
          const db = fresh ? await Outpost.open(name) : window.outpostE2E.db;
          const id = (b, i) => `quota/${String(b).padStart(4, "0")}/${String(i).padStart(2, "0")}`;
          const brief = (d) => d && { id: d["@metadata"]["@id"], b: d.b, i: d.i, padLength: d.pad.length };
          const got = {
            count: await db.count(),
            collections: await db.collections(),
            first: brief(await db.get(id(0, 0))),
            last: brief(await db.get(id(ok - 1, BATCH - 1))),
            lastBatch: (await db.scan({ prefix: `quota/${String(ok - 1).padStart(4, "0")}/` })).length,
            refusedGet: await db.get(id(ok, 0)),
            refusedBatch: (await db.scan({ prefix: `quota/${String(ok).padStart(4, "0")}/` })).length,
          };
          // close() ends with a durability barrier that rewrites the meta record:
          // a write, which a full quota may refuse. Reported, not part of the state.
          let closed = null;
          if (fresh) closed = await db.close().then(() => "ok", (e) => `${e?.code}: ${e?.message}`);
          return { got, closed };
        },
        { ok: fill.ok, BATCH, fresh, name },
      );
    const lastId = `quota/${String(fill.ok - 1).padStart(4, "0")}/${String(BATCH - 1).padStart(2, "0")}`;
    const expected = {
      count: fill.ok * BATCH,
      collections: [{ name: "Quota", count: fill.ok * BATCH }],
      first: { id: "quota/0000/00", b: 0, i: 0, padLength: 1024 },
      last: { id: lastId, b: fill.ok - 1, i: BATCH - 1, padLength: 1024 },
      lastBatch: BATCH,
      refusedGet: null,
      refusedBatch: 0,
    };
    // Right away (the quota still full): what IndexedDB holds, through a new handle.
    const rightAway = await state(true);
    assert.deepEqual(rightAway.got, expected, "right after the refused commit (a new handle)");
    console.log(`# close() of that new handle with the quota still full: ${rightAway.closed}`);
    assert.equal(rightAway.closed, "ok", "close() writes nothing, so it works with the quota full");

    // The handle that saw the refused commit keeps working: reads succeed
    // (its refresh() rebuilds it from what IndexedDB holds) and a write is
    // refused again with quota_exceeded while the quota is still full.
    const sameHandle = await p.evaluate(async () => {
      const { db } = window.outpostE2E;
      const code = async (op) => {
        try {
          await op();
          return "ok";
        } catch (e) {
          return `${e?.code}: ${e?.message}`;
        }
      };
      return { count: await code(() => db.count()), put: await code(() => db.put("quota/again", { n: 1 })) };
    });
    console.log(`# the same handle after the refused commit: ${JSON.stringify(sameHandle)}`);
    assert.equal(sameHandle.count, "ok", "reads on the handle that saw the refused commit");
    assert.match(sameHandle.put, /^quota_exceeded/, "a write while the quota is still full");

    // Raise the quota, reload (a new handle), and check again.
    await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: 1024 * 1024 * 1024 });
    await p.reload();
    await ready("ready", p);
    assert.equal(await p.locator("#count").textContent(), String(fill.ok * BATCH));
    assert.deepEqual((await state(false)).got, expected, "after raising the quota and reloading");

    // Writing works again: one more batch, read back.
    const more = await p.evaluate(
      async ({ b, BATCH }) => {
        const { db } = window.outpostE2E;
        const id = (i) => `quota/${String(b).padStart(4, "0")}/${String(i).padStart(2, "0")}`;
        await db.transaction(async (tx) => {
          for (let i = 0; i < BATCH; i++) tx.put(id(i), { b, i, pad: "y".repeat(1024) }, { collection: "Quota" });
        });
        const last = await db.get(id(BATCH - 1));
        return { count: await db.count(), last: last && { b: last.b, i: last.i } };
      },
      { b: fill.ok, BATCH },
    );
    assert.deepEqual(more, { count: (fill.ok + 1) * BATCH, last: { b: fill.ok, i: BATCH - 1 } });
    assert.deepEqual(pageErrors, []);
  } finally {
    // Without quotaSize the origin's quota is back to the default.
    await cdp.send("Storage.overrideQuotaForOrigin", { origin }).catch(() => {});
    await cdp.detach().catch(() => {});
    await Promise.race([p.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000).unref())]);
    await quotaServer.close();
  }
});
