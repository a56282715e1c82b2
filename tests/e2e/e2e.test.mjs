// End-to-end test of @outpost/db in real headless Chromium (Debian's, driven by
// playwright-core) with real IndexedDB: the Vite-built app in dist/ (built by
// run.sh against the packed npm tarball) is served on 127.0.0.1. The page
// writes through the package; the test reloads the page (same context, same
// origin and profile) and reads the same data back, then restarts the whole
// browser on the same profile and reads it again. It also checks that error
// codes reach the page and saves a screenshot to artifacts/page.png.
//
// Run through run.sh (which builds dist/); CHROMIUM overrides /usr/bin/chromium.
import { test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const distDir = join(here, "dist");
const artifacts = join(here, "artifacts");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
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
const pageErrors = [];

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
  page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`console.error: ${m.text()} (${m.location()?.url ?? ""})`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) pageErrors.push(`HTTP ${r.status()} ${r.url()}`);
  });
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
async function ready(expectedStatus = "ready") {
  const status = page.locator("#status");
  await page.waitForFunction(
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

  // A real reload: a new JS realm, a new wasm instance, the database opened again.
  await page.evaluate(() => (window.__beforeReload = true));
  await page.reload();
  await ready();
  assert.equal(await page.evaluate(() => window.__beforeReload), undefined, "the page was not reloaded");

  assert.deepEqual(await shown(), { db: dbName, count: String(TOTAL), rows: NOTES, firstRow: "notes/01NotesNote 011" });
  assertData(await readBack(), "after the reload");

  // The data is in IndexedDB under the database's name.
  const idbNames = await page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name));
  assert.ok(idbNames.includes(dbName), `IndexedDB databases: ${JSON.stringify(idbNames)}`);
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
