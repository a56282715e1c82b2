// End-to-end test of replication: a real hub process (outpost-hub) and real
// headless Chromium (playwright-core). The hub serves the demo web app
// (demo-site/ with the package's web build copied into pkg/, as
// scripts/run.sh does) and its WebSocket at /sync, on 127.0.0.1 with a
// temporary configuration: database "main", edges alice and bob reading and
// writing notes/ (conflict policy "manual" for the collection Notes, the
// demo's), and an edge "bulk" reading bulk/, where N documents (default
// 100,000; OUTPOST_E2E_BULK_DOCS) are imported before the hub starts.
// alice, bob and eve are added with `outpost-hub edge add` (which prints a
// one-time enrollment code): each laptop enrolls in the page (a
// non-extractable WebCrypto key kept in IndexedDB) and every session proves
// that key, every push signed. carol, dave and bulk use tokens (the hub's
// `[dev] tokens = true`).
//
// Two browser contexts are two laptops (separate profiles). The test checks:
// each enrolls with its code in the page (the key cannot be exported, the
// hub's configuration now holds it, the used code is refused to another
// browser); both sync both ways; a laptop that goes offline (context.setOffline: it
// does not cut an open WebSocket in Chromium, but fires the page's "offline"
// event, on which the package drops the connection; new connections then
// fail) keeps working locally and its edit reaches the other once it is back;
// a conflict made while both were offline shows up in both
// (db.conflicts() and the page), is resolved in one with the page's "keep
// this one" button, and the resolution reaches the other; a write outside
// the write prefix is refused by the hub and listed by rejections() and the
// page. Two tabs of one laptop share its database: one replicates (one
// session at the hub), the other follows and takes over when the first
// closes. Devices of one (token) identity: a new device of dave gets dave's
// notes, each gets the other's writes, and a device whose storage was wiped
// gets everything back, its own notes included; a key laptop whose database
// was wiped (its key kept) too. A revoked identity (eve, erasing what it was
// sent before it is refused; `outpost-hub edge
// revoke`) sees its live session end with the status code "revoked", and
// again after a reload. A
// read-only identity (carol) sees what the hub's grant says it may do and no
// edit controls, and gets no rejection for a conflict two writers made. A
// half-typed edit survives remote changes arriving. Last, a third laptop's initial sync of the N bulk documents: the
// page keeps answering while it runs (the status shows progress many times
// over), and its long tasks and the longest renderer main-thread task from a
// Chromium trace are printed. The 50 ms figure is a benchmark's
// (bench-browser/sync.mjs, docs/benchmarks.md), not asserted here.
//
// Run through run.sh, which sets OUTPOST_HUB (the hub binary) and builds
// pkg-js/dist. CHROMIUM overrides /usr/bin/chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { once } from "node:events";
import { chromium } from "playwright-core";
import { ARGS, executablePath } from "./profile.mjs";
import { buildDemoSite, launchHub } from "./hub.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const hubBin = process.env.OUTPOST_HUB || join(root, "target/debug/outpost-hub");
const BULK = Number(process.env.OUTPOST_E2E_BULK_DOCS ?? 100_000);
const STEP_MS = 15_000; // any single wait
const SYNC_MS = 20_000; // a change crossing hub and network
const BULK_MS = 300_000; // the bulk initial sync
const TOKENS = { carol: "carol-token-e2e", dave: "dave-token-e2e", bulk: "bulk-token-e2e" };
/** Enrollment codes, as `outpost-hub edge add` printed them. */
const CODES = {};
/** The hub's admin token: /status and /metrics need it. */
const ADMIN_TOKEN = "admin-token-e2e";

const run = `${process.pid}-${Date.now()}`;
let dir;
let cfg; // the hub's configuration file
let hub; // the hub process: launchHub's { base, log, stop }
let base; // http://127.0.0.1:PORT/
let browser;
const laptops = {}; // name -> { context, page }
const pageErrors = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha256 = (s) => createHash("sha256").update(s).digest("hex");

function config(site) {
  const edge = (name, prefix, write = [prefix]) => `
[[edge]]
name = "${name}"
token_sha256 = "${sha256(TOKENS[name])}"
database = "main"
read = ["${prefix}"]
write = ${JSON.stringify(write)}
`;
  return `listen = "127.0.0.1:0"
data_dir = "./data"
demo_site = ${JSON.stringify(site)}

# carol, dave and bulk use tokens; alice, bob and eve are enrolled keys.
[dev]
tokens = true

[admin]
token_sha256 = "${sha256(ADMIN_TOKEN)}"

[[database]]
name = "main"

[database.conflicts]
"*" = "latest"
Notes = "manual"
${edge("carol", "notes/", [])}${edge("dave", "notes/")}${edge("bulk", "bulk/")}`;
}

/** Runs `outpost-hub --config cfg ARGS`; its standard output. */
const hubCli = (...args) => execFileSync(hubBin, ["--config", cfg, ...args], { cwd: dir, timeout: 60_000, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] }).toString();

async function writeBulk(file, n) {
  const out = createWriteStream(file);
  const pad = "x".repeat(120);
  for (let i = 0; i < n; i++) {
    const line = JSON.stringify({ id: `bulk/${String(i).padStart(6, "0")}`, title: `Bulk ${i}`, text: pad, n: i, "@metadata": { "@collection": "Bulk" } });
    if (!out.write(line + "\n")) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
}

function watch(p, label) {
  p.on("pageerror", (e) => pageErrors.push(`${label} pageerror: ${e.message}`));
  p.on("console", (m) => {
    // Expected while a laptop is offline: its reconnection attempts fail.
    if (m.type() === "error" && !/ERR_INTERNET_DISCONNECTED|WebSocket connection to/.test(m.text())) {
      pageErrors.push(`${label} console.error: ${m.text()}`);
    }
  });
}

/** Opens a laptop (its own browser context, i.e. profile) on the demo page as `who`. */
async function laptop(name, who, beforeGoto, dbName = `e2e-sync-${name}-${run}`) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  context.setDefaultTimeout(STEP_MS);
  await context.addInitScript(() => {
    window.__longTasks = [];
    try {
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) window.__longTasks.push({ start: e.startTime, duration: e.duration });
      }).observe({ type: "longtask", buffered: true });
    } catch {
      window.__longTasks = null; // not supported
    }
    // Long animation frames with the scripts that ran in them (what a long
    // task was spent on: printed by the initial sync's test).
    window.__longFrames = [];
    try {
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          window.__longFrames.push({
            start: e.startTime,
            duration: e.duration,
            renderStart: e.renderStart,
            styleAndLayoutStart: e.styleAndLayoutStart,
            scripts: e.scripts.map((x) => ({
              invoker: x.invoker,
              fn: x.sourceFunctionName,
              url: x.sourceURL,
              duration: x.duration,
              layout: x.forcedStyleAndLayoutDuration,
            })),
          });
        }
      }).observe({ type: "long-animation-frame", buffered: true });
    } catch {
      window.__longFrames = null; // not supported
    }
  });
  const page = await context.newPage();
  watch(page, name);
  if (beforeGoto) await beforeGoto(page);
  // Enrolled identities redeem their code on the first visit (the page keeps the key).
  const q = new URLSearchParams({ as: who, db: dbName, ...(CODES[who] ? { code: CODES[who] } : { token: TOKENS[who] }) });
  await page.goto(`${base}?${q}`, { timeout: 30_000 });
  await page.waitForFunction(() => window.demo?.sync, null, { timeout: 30_000 });
  laptops[name] = { context, page };
  return laptops[name];
}

const state = (p) => p.evaluate(() => window.demo.sync?.status.state ?? "stopped");

async function waitState(p, want, timeout = SYNC_MS) {
  await p.waitForFunction((w) => window.demo.sync?.status.state === w, want, { timeout, polling: 100 });
}

/** Waits until `fn` (evaluated in the page, async allowed) returns a truthy value; returns it. */
async function waitFor(p, fn, arg, timeout = SYNC_MS, what = "condition") {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await p.evaluate(fn, arg);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(100);
  }
}

const getDoc = (p, id) => p.evaluate((i) => window.demo.db.get(i), id);
const put = (p, id, body) => p.evaluate(([i, b]) => window.demo.db.put(i, b, { collection: "Notes" }).then(() => true), [id, body]);

before(async () => {
  assert.ok(existsSync(hubBin), `hub binary ${hubBin} missing (run.sh builds it)`);
  assert.ok(existsSync(join(root, "pkg-js/dist/web/outpost_wasm_bg.wasm")), "pkg-js/dist/web missing (run.sh builds it)");
  dir = mkdtempSync(join(tmpdir(), "outpost-e2e-sync-"));
  const site = join(dir, "site");
  mkdirSync(site);
  buildDemoSite(site);
  cfg = join(dir, "hub.toml");
  writeFileSync(cfg, config(site));
  // The real CLI issues the enrollment codes (printed on standard output).
  for (const who of ["alice", "bob", "eve"]) {
    const code = hubCli("edge", "add", who, "--read", "notes/", "--write", "notes/").trim().split("\n").pop();
    assert.match(code, /^\S{8,}$/, `the code printed for ${who}`);
    CODES[who] = code;
  }
  if (BULK > 0) {
    const t0 = Date.now();
    const file = join(dir, "bulk.jsonl");
    await writeBulk(file, BULK);
    const out = execFileSync(hubBin, ["--config", cfg, "import", "--batch", "5000", file], { cwd: dir, timeout: 300_000, env: { ...process.env, NO_COLOR: "1" } });
    rmSync(file);
    console.log(`# imported ${BULK} bulk documents into the hub in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${out.toString().trim().split("\n").pop()}`);
  }
  hub = await launchHub(hubBin, cfg, { cwd: dir });
  base = hub.base;
  browser = await chromium.launch({ executablePath, headless: true, args: ARGS, timeout: 60_000 });
});

after(async () => {
  if (browser) await Promise.race([browser.close().catch(() => {}), sleep(10_000)]);
  await hub?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (pageErrors.length) console.log(`# page errors:\n${pageErrors.join("\n")}`);
});

test("two laptops sync both ways through the hub", async () => {
  const a = (await laptop("A", "alice")).page;
  const b = (await laptop("B", "bob")).page;
  await waitState(a, "live");
  await waitState(b, "live");

  // A adds a note with the page's form; B's page shows it.
  await a.fill("#title", "From A");
  await a.fill("#text", "written in laptop A");
  await a.click("#add button[type=submit]");
  await b.waitForFunction(() => [...document.querySelectorAll("#notes .title")].some((e) => e.textContent === "From A"), null, { timeout: SYNC_MS });

  // B writes through the API; A sees it.
  await put(b, "notes/shared", { title: "Shared note", text: "v1", by: "bob" });
  const got = await waitFor(a, () => window.demo.db.get("notes/shared"), undefined, SYNC_MS, "notes/shared at A");
  assert.equal(got.text, "v1");
  assert.equal(got["@metadata"]["@collection"], "Notes");
  assert.deepEqual(pageErrors, []);
});

test("enrollment in the browser: a key that cannot be exported, held by the hub; the used code is refused elsewhere", async () => {
  const a = laptops.A.page;
  const me = await a.evaluate(() => window.demo.db.identity("alice"));
  assert.equal(me.identity, "alice");
  assert.equal(me.enrolled, true);
  assert.match(me.publicKey, /^p256:04[0-9a-f]{128}$/);
  assert.match(me.fingerprint, /^[0-9a-f]{16}$/);
  assert.match(await a.textContent("#me"), new RegExp(`key ${me.fingerprint}`));
  // The hub redeemed the code for this key: its configuration holds the key, not the code.
  const text = readFileSync(cfg, "utf8");
  const alice = text.slice(text.indexOf('name = "alice"'));
  assert.ok(alice.slice(0, alice.indexOf("[[edge]]") >>> 0).includes(`pubkey = "${me.publicKey}"`), text);
  // The private key, as the page keeps it in IndexedDB: a CryptoKey that
  // signs but that WebCrypto refuses to export.
  const key = await a.evaluate(async () => {
    const req = (r) => new Promise((res, rej) => { r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    const idb = await req(indexedDB.open("outpost-keys"));
    const rec = await req(idb.transaction("keys").objectStore("keys").get([window.demo.db.name, "alice"]));
    idb.close();
    const k = rec.privateKey;
    const exports = [];
    for (const f of ["pkcs8", "jwk"]) exports.push(await crypto.subtle.exportKey(f, k).then(() => "exported", (e) => e.name));
    const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, k, new Uint8Array([1, 2, 3]));
    return { isKey: k instanceof CryptoKey, type: k.type, extractable: k.extractable, curve: k.algorithm.namedCurve, exports, sig: sig.byteLength, enrolled: rec.enrolled };
  });
  assert.deepEqual(key, { isKey: true, type: "private", extractable: false, curve: "P-256", exports: ["InvalidAccessError", "InvalidAccessError"], sig: 64, enrolled: true });

  // Another browser presenting alice's used code: refused, shown in the page, no sync.
  const context = await browser.newContext();
  const x = await context.newPage();
  watch(x, "X");
  await x.goto(`${base}?${new URLSearchParams({ as: "alice", code: CODES.alice, db: `e2e-sync-X-${run}` })}`, { timeout: 30_000 });
  await x.waitForFunction(() => !document.querySelector("#enroll-error").hidden, null, { timeout: SYNC_MS });
  assert.match(await x.textContent("#enroll-error"), /\[unauthorized\]/);
  assert.equal(await x.evaluate(() => window.demo.sync === undefined), true);
  const code = await x.evaluate((c) => window.demo.db.enroll({ url: "/sync", identity: "alice", code: c }).then(() => "enrolled", (e) => e.code), CODES.alice);
  assert.equal(code, "unauthorized");
  assert.equal((await x.evaluate(() => window.demo.db.identity("alice"))).enrolled, false);
  await context.close();
  assert.equal(await state(a), "live", "alice's own sessions are unaffected");
  assert.deepEqual(pageErrors, []);
});

test("an edit made offline reaches the other laptop once back online", async () => {
  const { context: ca, page: a } = laptops.A;
  const b = laptops.B.page;
  const logBefore = hub.log().length;
  await ca.setOffline(true);
  await waitState(a, "offline", STEP_MS);
  // The connection is really gone: the hub logs the disconnect of alice.
  const deadline = Date.now() + STEP_MS;
  while (!/edge disconnected[^\n]*identity="?alice/.test(hub.log().slice(logBefore))) {
    assert.ok(Date.now() < deadline, "the hub did not see alice disconnect");
    await sleep(100);
  }
  await put(a, "notes/offline-edit", { title: "Offline edit", text: "made while offline", by: "alice" });
  assert.equal((await getDoc(a, "notes/offline-edit")).text, "made while offline", "local writes work offline");
  await sleep(2000);
  assert.equal(await getDoc(b, "notes/offline-edit"), null, "nothing travels while A is offline");
  assert.equal(await state(a), "offline");

  await ca.setOffline(false);
  await waitState(a, "live", SYNC_MS);
  const got = await waitFor(b, () => window.demo.db.get("notes/offline-edit"), undefined, SYNC_MS, "the offline edit at B");
  assert.equal(got.text, "made while offline");
});

test("a conflict made offline shows in both, is resolved in one, and the resolution reaches the other", async () => {
  const { context: ca, page: a } = laptops.A;
  const { context: cb, page: b } = laptops.B;
  await ca.setOffline(true);
  await cb.setOffline(true);
  await waitState(a, "offline", STEP_MS);
  await waitState(b, "offline", STEP_MS);
  await put(a, "notes/shared", { title: "Shared note", text: "A's version", by: "alice" });
  await put(b, "notes/shared", { title: "Shared note", text: "B's version", by: "bob" });
  await ca.setOffline(false);
  await waitState(a, "live");
  await cb.setOffline(false);
  await waitState(b, "live");

  const conflictsOf = (p) =>
    waitFor(
      p,
      async () => {
        const c = await window.demo.db.conflicts();
        return c.length > 0 && c[0].versions.length === 2 ? c : null;
      },
      undefined,
      SYNC_MS,
      "the conflict",
    );
  const [conflictA] = await conflictsOf(a);
  const [conflictB] = await conflictsOf(b);
  for (const c of [conflictA, conflictB]) {
    assert.equal(c.id, "notes/shared");
    assert.equal(c.collection, "Notes");
    assert.deepEqual(c.versions.map((v) => v.body.text).sort(), ["A's version", "B's version"]);
  }
  // Both pages list it, with a "keep this one" button per version.
  for (const p of [a, b]) {
    await p.waitForFunction(() => document.querySelectorAll('#conflicts li[data-id="notes/shared"] button.keep').length === 2, null, { timeout: STEP_MS });
  }

  // A keeps B's version with the page's button.
  const keep = conflictA.versions.findIndex((v) => v.body.text === "B's version");
  await a.click(`#conflicts li[data-id="notes/shared"] button.keep[data-index="${keep}"]`);
  for (const p of [a, b]) {
    await waitFor(p, async () => (await window.demo.db.conflicts()).length === 0, undefined, SYNC_MS, "no conflicts left");
  }
  const [da, db] = [await getDoc(a, "notes/shared"), await getDoc(b, "notes/shared")];
  assert.equal(da.text, "B's version");
  assert.equal(db.text, "B's version");
  assert.equal(da["@metadata"]["@change-vector"], db["@metadata"]["@change-vector"]);
  assert.equal(da["@metadata"]["@conflicted"], undefined);
  await b.waitForFunction(() => document.querySelector("#conflicts li")?.textContent === "None.", null, { timeout: STEP_MS });
});

test("a write outside the write prefixes is refused by the hub and listed", async () => {
  const a = laptops.A.page;
  const b = laptops.B.page;
  await a.click("#forbidden"); // writes secrets/<time>
  const rejections = await waitFor(a, async () => {
    const r = await window.demo.sync.rejections();
    return r.length > 0 ? r : null;
  }, undefined, SYNC_MS, "a rejection");
  assert.equal(rejections.length, 1);
  const [r] = rejections;
  assert.match(r.id, /^secrets\//);
  assert.equal(r.code, "write_denied");
  assert.match(r.rule, /notes\//);
  assert.ok(r.changeVector.length > 0 && r.message.length > 0);
  await a.waitForFunction(() => document.querySelectorAll("#rejections li").length === 1, null, { timeout: STEP_MS });
  // The document stays local; other notes still flow after the refusal.
  await put(a, "notes/after-refusal", { title: "After the refusal", by: "alice" });
  await waitFor(b, () => window.demo.db.get("notes/after-refusal"), undefined, SYNC_MS, "a note after the refusal");
  assert.equal(await getDoc(b, r.id), null);
  assert.deepEqual(pageErrors, []);
});

test("write safety hub in the demo: a name claimed by one laptop is refused to the other, which writes nothing", async () => {
  const a = laptops.A.page;
  const b = laptops.B.page;
  const claim = async (p, name) => {
    await p.fill("#claim-name", name);
    await p.click("#claim button[type=submit]");
    await p.waitForFunction(() => document.querySelector("#claim-result").dataset.code, null, { timeout: SYNC_MS });
    return p.evaluate(() => ({ code: document.querySelector("#claim-result").dataset.code, text: document.querySelector("#claim-result").textContent }));
  };
  const won = await claim(a, "Ada");
  assert.equal(won.code, "applied", won.text);
  // A holds its claim when the claim resolves (it pulled the hub's version).
  const mine = await getDoc(a, "notes/claims/ada");
  assert.equal(mine?.owner, "alice");
  const lost = await claim(b, "ADA");
  assert.equal(lost.code, "conflict", lost.text);
  assert.match(lost.text, /ADA is taken .*nothing was written/);
  assert.ok(lost.text.includes(mine["@metadata"]["@change-vector"]), lost.text);
  // B converges on A's claim, listed on its page.
  const got = await waitFor(b, () => window.demo.db.get("notes/claims/ada"), undefined, SYNC_MS, "A's claim at B");
  assert.equal(got.owner, "alice");
  assert.equal(got["@metadata"]["@change-vector"], mine["@metadata"]["@change-vector"]);
  await b.waitForFunction(() => [...document.querySelectorAll("#claims li")].some((li) => li.textContent.includes("claimed by alice")), null, { timeout: STEP_MS });
  assert.deepEqual(pageErrors, []);
});

test("two tabs of one laptop: one replicates, the other follows and takes over", async () => {
  const { context: ca, page: a1 } = laptops.A;
  const b = laptops.B.page;
  const a2 = await ca.newPage();
  watch(a2, "A2");
  await a2.goto(a1.url(), { timeout: 30_000 });
  await a2.waitForFunction(() => window.demo?.sync, null, { timeout: 30_000 });
  // The second tab mirrors the first one's status; the hub sees one session per laptop.
  await waitState(a2, "live", STEP_MS);
  const status = await (await fetch(`${base}status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
  assert.equal(status.edges_connected, 2, JSON.stringify(status));
  // A write in the following tab is pushed by the replicating one.
  await put(a2, "notes/from-tab-2", { title: "From A's second tab", by: "alice" });
  await waitFor(b, () => window.demo.db.get("notes/from-tab-2"), undefined, SYNC_MS, "the second tab's write at B");
  // Write safety "replicated" in the following tab: it resolves once the hub
  // acknowledged the write, which the replicating tab tells it.
  const safe = await a2.evaluate(async () => {
    const r = await window.demo.db.put("notes/safe-tab-2", { title: "Replicated from tab 2", by: "alice" }, { safety: "replicated", timeoutMs: 20_000 });
    return r.id;
  });
  assert.equal(safe, "notes/safe-tab-2");
  await waitFor(b, () => window.demo.db.get("notes/safe-tab-2"), undefined, SYNC_MS, "the replicated write at B");
  // Write safety "hub" in the following tab: forwarded to the replicating
  // tab, sent through its session, answered back; the following tab holds
  // the hub's version when the write resolves; a second claim conflicts.
  const hubbed = await a2.evaluate(async () => {
    const opts = { safety: "hub", expect: "missing", collection: "Claims", timeoutMs: 20_000 };
    const r = await window.demo.db.put("notes/claims/tab-2", { name: "tab-2", owner: "alice" }, opts);
    const held = await window.demo.db.get("notes/claims/tab-2");
    // A second claim conflicts (a signed write right after the pull of the
    // first, while the replicating tab may be pushing: see Task::HubWrite).
    const again = await window.demo.db.put("notes/claims/tab-2", { name: "tab-2", owner: "alice" }, opts).then(
      () => "applied",
      (e) => (e.code === "conflict" ? `conflict ${e.current}` : `${e.code}: ${e.message}`),
    );
    return { r, held: held?.["@metadata"]["@change-vector"], again };
  });
  assert.equal(hubbed.r.id, "notes/claims/tab-2");
  assert.ok(hubbed.r.changeVector.length > 0);
  assert.equal(hubbed.held, hubbed.r.changeVector, "the following tab holds the hub's version when the write resolves");
  assert.equal(hubbed.again, `conflict ${hubbed.r.changeVector}`, hub.log().split("\n").filter((l) => /WARN|closing/.test(l)).slice(-10).join("\n"));
  await waitFor(b, () => window.demo.db.get("notes/claims/tab-2"), undefined, SYNC_MS, "the second tab's claim at B");
  // When the replicating tab closes, the other takes over.
  await a1.close();
  laptops.A.page = a2;
  await put(b, "notes/after-takeover", { title: "After the takeover", by: "bob" });
  await waitFor(a2, () => window.demo.db.get("notes/after-takeover"), undefined, SYNC_MS, "B's write at A's second tab");
  await waitState(a2, "live", STEP_MS);
  assert.deepEqual(pageErrors, []);
});

const noteIds = (p) => p.evaluate(async () => (await window.demo.db.scan({ prefix: "notes/" })).map((d) => d["@metadata"]["@id"]));

const hasAll = async (want) => {
  const ids = (await window.demo.db.scan({ prefix: "notes/" })).map((d) => d["@metadata"]["@id"]);
  return want.every((id) => ids.includes(id));
};

/** Destroys the page's database (its storage wiped), reloads the page and waits until it syncs again. */
async function wipeAndReload(p) {
  await p.evaluate(async () => {
    const name = window.demo.db.name;
    await window.demo.db.close();
    const { Outpost } = await import(new URL("pkg/src/web.js", location.href).href);
    await Outpost.destroy(name);
  });
  await p.reload({ timeout: 30_000 });
  await p.waitForFunction(() => window.demo?.sync, null, { timeout: 30_000 });
  await waitState(p, "live");
}

test("devices of one (token) identity: a new device gets the identity's notes, each gets the other's writes, a wiped one gets all back", async () => {
  const a = laptops.A.page;
  // The notes so far (written on laptop A, and some by bob).
  const before = await noteIds(a);
  assert.ok(before.includes("notes/offline-edit") && before.includes("notes/from-tab-2"), before.join(", "));
  // Two browser profiles, their own databases, one identity (a key is one
  // browser's: devices sharing an identity use the development tokens).
  const d = (await laptop("D", "dave")).page;
  const t = (await laptop("T", "dave", undefined, `e2e-sync-tablet-${run}`)).page;
  for (const p of [d, t]) {
    await waitState(p, "live");
    await waitFor(p, hasAll, before, SYNC_MS, "the notes on dave's devices");
  }
  // What each device of dave writes reaches the other.
  await put(t, "notes/from-tablet", { title: "From dave's tablet", by: "dave" });
  await waitFor(d, () => window.demo.db.get("notes/from-tablet"), undefined, SYNC_MS, "the tablet's note on the laptop");
  await put(d, "notes/from-laptop", { title: "From dave's laptop", by: "dave" });
  await waitFor(t, () => window.demo.db.get("notes/from-laptop"), undefined, SYNC_MS, "the laptop's note on the tablet");
  await t.waitForFunction(() => [...document.querySelectorAll("#notes .title")].some((e) => e.textContent === "From dave's laptop"), null, { timeout: SYNC_MS });

  // The tablet's storage is wiped (its database destroyed), then the page reloads:
  // a new, empty database (a new db id) that gets everything back, its own note included.
  const all = await noteIds(d);
  await wipeAndReload(t);
  await waitFor(t, hasAll, all, SYNC_MS, "every note back on the wiped tablet");
  assert.equal((await getDoc(t, "notes/from-tablet")).title, "From dave's tablet");
  assert.deepEqual(await t.evaluate(() => window.demo.sync.rejections()), []);
  for (const n of ["D", "T"]) {
    await laptops[n].context.close();
    delete laptops[n];
  }
  assert.deepEqual(pageErrors, []);
});

test("an enrolled laptop whose database was wiped (its key kept) gets all back and its signed writes still go through", async () => {
  const a = laptops.A.page;
  const b = laptops.B.page;
  const all = await noteIds(a);
  await wipeAndReload(b);
  assert.equal((await b.evaluate(() => window.demo.db.identity("bob"))).enrolled, true);
  await waitFor(b, hasAll, all, SYNC_MS, "every note back on bob's wiped laptop");
  // The new database continues bob's chain of signed batches.
  await put(b, "notes/after-wipe", { title: "After the wipe", by: "bob" });
  await waitFor(a, () => window.demo.db.get("notes/after-wipe"), undefined, SYNC_MS, "bob's write after the wipe at A");
  assert.deepEqual(await b.evaluate(() => window.demo.sync.rejections()), []);
  assert.deepEqual(pageErrors, []);
});

test("a read-only identity: no edit controls, its grant as the hub states it, no rejection for a conflict it did not make", async () => {
  const { context: ca, page: a } = laptops.A;
  const { context: cb, page: b } = laptops.B;
  // Writers see what the hub lets them do.
  assert.deepEqual(await a.evaluate(() => window.demo.sync.grant), { read: ["notes/"], write: ["notes/"], neverDelete: [], hubOutputs: [] });
  assert.match(await a.textContent("#grant"), /may read notes\/ and write notes\//);

  const r = (await laptop("R", "carol")).page;
  await waitState(r, "live");
  assert.deepEqual(await r.evaluate(() => window.demo.sync.grant), { read: ["notes/"], write: [], neverDelete: [], hubOutputs: [] });
  await r.waitForFunction(() => /may read notes\/ and write nothing \(read-only\)/.test(document.querySelector("#grant").textContent), null, { timeout: STEP_MS });
  await r.waitForFunction(() => document.querySelectorAll("#notes li[data-id]").length > 0, null, { timeout: SYNC_MS });
  const controls = () =>
    r.evaluate(() => ({
      add: !document.querySelector("#add").hidden && document.querySelector("#add").offsetParent !== null,
      forbidden: document.querySelector("#forbidden").offsetParent !== null,
      edit: document.querySelectorAll("#notes button.edit, #notes button.delete").length,
      keep: document.querySelectorAll("#conflicts button.keep").length,
    }));
  assert.deepEqual(await controls(), { add: false, forbidden: false, edit: 0, keep: 0 });

  // Two writers make a conflict the hub keeps (Notes: manual) on a note carol holds.
  await put(a, "notes/ro-conflict", { title: "Agenda", text: "v0", by: "alice" });
  await waitFor(r, () => window.demo.db.get("notes/ro-conflict"), undefined, SYNC_MS, "the note at carol");
  await waitFor(b, () => window.demo.db.get("notes/ro-conflict"), undefined, SYNC_MS, "the note at bob");
  await ca.setOffline(true);
  await cb.setOffline(true);
  await waitState(a, "offline", STEP_MS);
  await waitState(b, "offline", STEP_MS);
  await put(a, "notes/ro-conflict", { title: "Agenda", text: "alice's", by: "alice" });
  await put(b, "notes/ro-conflict", { title: "Agenda", text: "bob's", by: "bob" });
  await ca.setOffline(false);
  await waitState(a, "live");
  await cb.setOffline(false);
  await waitState(b, "live");
  await waitFor(r, async () => (await window.demo.db.conflicts()).some((c) => c.id === "notes/ro-conflict" && c.versions.length === 2), undefined, SYNC_MS, "the conflict at carol");
  await r.waitForFunction(() => document.querySelector('#conflicts li[data-id="notes/ro-conflict"]'), null, { timeout: STEP_MS });
  assert.deepEqual(await controls(), { add: false, forbidden: false, edit: 0, keep: 0 });
  // Carol's edge reads its changes for pushing when it reconnects: nothing of
  // what it received goes back, so the hub refuses nothing.
  await r.reload({ timeout: 30_000 });
  await r.waitForFunction(() => window.demo?.sync, null, { timeout: 30_000 });
  await waitState(r, "live");
  await sleep(3000);
  assert.deepEqual(await r.evaluate(() => window.demo.sync.rejections()), []);
  assert.equal(await r.evaluate(() => document.querySelectorAll("#rejections li").length), 0);
  assert.doesNotMatch(hub.log(), /write_denied[^\n]*carol|carol[^\n]*write_denied/);

  // Alice settles it; the resolution reaches carol.
  await a.evaluate(() => window.demo.db.resolve("notes/ro-conflict", { title: "Agenda", text: "settled", by: "alice" }));
  await waitFor(r, async () => (await window.demo.db.conflicts()).length === 0, undefined, SYNC_MS, "no conflict left at carol");
  await laptops.R.context.close();
  delete laptops.R;
  assert.deepEqual(pageErrors, []);
});

test("a half-typed edit survives remote changes", async () => {
  const a = laptops.A.page;
  const b = laptops.B.page;
  await put(a, "notes/draft", { title: "Draft", text: "first", by: "alice" });
  await a.waitForFunction(() => document.querySelector('#notes li[data-id="notes/draft"] button.edit'), null, { timeout: STEP_MS });
  await a.click('#notes li[data-id="notes/draft"] button.edit');
  await a.fill('#notes li[data-id="notes/draft"] input.edit-title', "Draft, half typ");
  await a.focus('#notes li[data-id="notes/draft"] input.edit-title');
  // Remote changes arrive: a new note, and a change of the note being edited.
  await put(b, "notes/while-typing", { title: "While alice types", by: "bob" });
  await a.waitForFunction(() => [...document.querySelectorAll("#notes .title")].some((e) => e.textContent === "While alice types"), null, { timeout: SYNC_MS });
  await waitFor(b, () => window.demo.db.get("notes/draft"), undefined, SYNC_MS, "the draft note at bob");
  await put(b, "notes/draft", { title: "Draft", text: "bob's change", by: "bob" });
  await waitFor(a, async () => (await window.demo.db.get("notes/draft"))?.text === "bob's change", undefined, SYNC_MS, "bob's change at alice");
  await sleep(300); // a render after the change
  const form = await a.evaluate(() => {
    const input = document.querySelector('#notes li[data-id="notes/draft"] input.edit-title');
    return { present: Boolean(input), value: input?.value, focused: document.activeElement === input };
  });
  assert.deepEqual(form, { present: true, value: "Draft, half typ", focused: true });
  // Saving it writes what was typed.
  await a.click('#notes li[data-id="notes/draft"] button[type=submit]');
  await waitFor(b, async () => (await window.demo.db.get("notes/draft"))?.title === "Draft, half typ", undefined, SYNC_MS, "the saved edit at bob");
  await a.waitForFunction(() => !document.querySelector('#notes li[data-id="notes/draft"] input.edit-title'), null, { timeout: STEP_MS });
  assert.deepEqual(pageErrors, []);
});

test("a revoked identity: its live session ends with the status code revoked, and it stays refused", async () => {
  const e = (await laptop("E", "eve")).page;
  const b = laptops.B.page;
  await waitState(e, "live");
  await put(e, "notes/from-eve", { title: "From eve", by: "eve" });
  await waitFor(b, () => window.demo.db.get("notes/from-eve"), undefined, SYNC_MS, "eve's note at bob");
  hubCli("edge", "revoke", "eve");
  const revoked = (p) => p.evaluate(() => {
    const s = window.demo.sync?.status;
    return s?.state === "error" && s.code === "revoked";
  });
  await waitFor(e, () => window.demo.sync.status.state === "error", undefined, SYNC_MS, "the end of eve's session");
  assert.deepEqual(await e.evaluate(() => window.demo.sync.status.code), "revoked");
  assert.match(await e.textContent("#sync-status"), /error: revoked/);
  // Before the refusal, eve's browser erased everything it was sent (a purge
  // order; a signed receipt went back): the page says so, the database is empty.
  assert.match(await e.textContent("#purged"), /erased from this browser \(access revoked\)/);
  assert.equal(await e.evaluate(() => window.demo.db.get("notes/from-eve")), null);
  assert.equal(await e.evaluate(() => window.demo.db.count()), 0);
  // Nothing eve writes now travels; a new page load is refused the same way.
  await put(e, "notes/after-revocation", { title: "After the revocation", by: "eve" });
  await e.reload({ timeout: 30_000 });
  await e.waitForFunction(() => window.demo?.sync, null, { timeout: 30_000 });
  await waitFor(e, () => window.demo.sync.status.state === "error", undefined, SYNC_MS, "eve refused again");
  assert.equal(await revoked(e), true);
  await sleep(1000);
  assert.equal(await getDoc(b, "notes/after-revocation"), null);
  // The others are unaffected.
  await put(laptops.A.page, "notes/after-eve", { title: "After eve", by: "alice" });
  await waitFor(b, () => window.demo.db.get("notes/after-eve"), undefined, SYNC_MS, "alice's note after the revocation");
  await laptops.E.context.close();
  delete laptops.E;
  assert.deepEqual(pageErrors, []);
});

test(`initial sync of ${BULK.toLocaleString("en")} documents: the page stays responsive`, { skip: BULK === 0 }, async () => {
  const t0 = Date.now();
  const { page: c } = await laptop("C", "bulk", (p) => browser.startTracing(p, { categories: ["toplevel", "blink.user_timing", "__metadata"] }));
  // The page marks when it starts syncing (after loading the module and opening the database).
  const syncStart = await c.evaluate(() => performance.getEntriesByName("outpost-sync-start")[0]?.startTime);
  assert.equal(typeof syncStart, "number");
  let sawProgress = null;
  const progress = new Set();
  for (;;) {
    const s = await c.evaluate(() => window.demo.sync.status);
    if (s.state === "initial") progress.add(s.received);
    if (s.state === "initial" && s.received > 0 && !sawProgress) sawProgress = { ...s, text: await c.textContent("#sync-status") };
    if (s.state === "live") break;
    assert.notEqual(s.state, "error", JSON.stringify(s));
    assert.ok(Date.now() - t0 < BULK_MS, `not live after ${BULK_MS} ms: ${JSON.stringify(s)}`);
    await sleep(250);
  }
  const secs = (Date.now() - t0) / 1000;
  const trace = JSON.parse((await browser.stopTracing()).toString());
  assert.equal(await c.evaluate(() => window.demo.db.count()), BULK);
  assert.ok(sawProgress, "the status showed initial-sync progress");
  assert.equal(sawProgress.total, BULK);
  assert.match(sawProgress.text, /receiving [\d,]+ of [\d,]+/);

  const longTasks = await c.evaluate(() => window.__longTasks);
  assert.ok(Array.isArray(longTasks), "PerformanceObserver longtask is supported");
  const during = longTasks.filter((t) => t.start + t.duration >= syncStart);

  // The longest task on the page's main thread, from the trace.
  const events = trace.traceEvents ?? trace;
  const mainThreads = new Set(events.filter((e) => e.name === "thread_name" && e.args?.name === "CrRendererMain").map((e) => `${e.pid}:${e.tid}`));
  // The page's mark, in the trace's clock (microseconds); without it, the whole trace.
  const mark = events.find((e) => e.name === "outpost-sync-start");
  const traceSyncStart = mark ? mark.ts / 1000 : 0;
  // Tasks are the RunTask events with no RunTask inside (a task that spans
  // others is a nested run loop, e.g. around module evaluation, not one task).
  const tasks = events
    .filter((e) => e.ph === "X" && /RunTask$/.test(e.name) && mainThreads.has(`${e.pid}:${e.tid}`) && e.ts / 1000 >= traceSyncStart)
    .sort((x, y) => x.ts - y.ts);
  let longest = 0;
  for (let i = 0; i < tasks.length; i++) {
    const t = tasks[i];
    const next = tasks[i + 1];
    const nested = next && next.pid === t.pid && next.tid === t.tid && next.ts < t.ts + t.dur;
    if (!nested) longest = Math.max(longest, t.dur / 1000);
  }
  console.log(
    `# initial sync of ${BULK} documents: ${secs.toFixed(1)} s (${Math.round(BULK / secs)} docs/s); ` +
      `long tasks (>50 ms) during it: ${during.length}; longest main-thread task in the trace: ${longest.toFixed(1)} ms`,
  );
  // What the long frames were spent on (Long Animation Frames: the scripts
  // that ran in each, and the part after them: style, layout, paint).
  const frames = ((await c.evaluate(() => window.__longFrames)) ?? []).filter((f) => f.start + f.duration >= syncStart && f.duration > 50);
  for (const f of frames.sort((x, y) => y.duration - x.duration).slice(0, 5)) {
    const scripts = f.scripts
      .sort((x, y) => y.duration - x.duration)
      .slice(0, 3)
      .map((x) => `${x.invoker || "?"} ${x.fn || ""} ${(x.url || "").split("/").pop()} ${x.duration.toFixed(0)} ms (forced layout ${x.layout.toFixed(0)})`);
    const render = f.renderStart ? (f.start + f.duration - f.renderStart).toFixed(0) : "0";
    console.log(`# long frame ${f.duration.toFixed(0)} ms at +${(f.start - syncStart).toFixed(0)} ms: rendering ${render} ms; scripts: ${scripts.join("; ") || "none"}`);
  }
  // The page answered the status polls between batches: it reported several
  // distinct progress values during the sync (a page frozen for the whole
  // sync would report one or two). No millisecond threshold is asserted here.
  assert.ok(progress.size >= 5, `progress seen only at ${[...progress].join(", ")}`);
  assert.deepEqual(pageErrors, []);
});

test("the hub's audit trail: every batch the browsers signed verifies, and names the key that signed it", async () => {
  // The audit commands read the hub's database: the hub stops first (the
  // last test of this file).
  const bob = await laptops.B.page.evaluate(() => window.demo.db.identity("bob"));
  await hub.stop();
  const verify = hubCli("audit", "verify");
  const m = /(\d+) signatures of batches, purge receipts and hub writes/.exec(verify);
  assert.ok(m && Number(m[1]) > 0, verify);
  // eve's browser, revoked, erased what it was sent and signed a receipt.
  const receipts = hubCli("audit", "export", "--edge", "eve")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((e) => e.kind === "purge_receipt");
  assert.equal(receipts.length, 1, JSON.stringify(receipts));
  assert.equal(receipts[0].record.reason, "revoked");
  assert.ok(receipts[0].record.removed > 0 && receipts[0].record.signature.length === 128, JSON.stringify(receipts[0]));
  // bob's note written after his database was wiped: pushed by bob, signed with his browser's key.
  const who = hubCli("audit", "who", "notes/after-wipe");
  assert.match(who, /bob/, who);
  assert.ok(who.includes(bob.fingerprint), `bob's key ${bob.fingerprint} in:\n${who}`);
});
