// Issue 10, point 5: a revoked edge removes what it was sent *physically*: no
// plaintext of it left in the browser's files (a raw dump of the profile).
//
// Chromium's IndexedDB sits on LevelDB, which appends: bytes overwritten or
// deleted stay in its log and table files until LevelDB compacts them. The
// store therefore keeps each database in a storage bucket of its own and, on a
// purge, copies the live pages into the next generation's bucket and deletes
// the old one (crate/src/store/idb/place.rs; docs/design.md, "Purge: physical
// erasure"). This test, with a real hub and a persistent Chromium profile:
//
//   1. alice (another profile) writes notes carrying a marker, in their ids
//      and bodies (one body spans several pages), and syncs them to the hub;
//   2. eve (an enrolled key) pulls them; the browser closes; the marker is in
//      eve's profile files (the test can fail);
//   3. the operator revokes eve (`outpost-hub edge revoke eve`);
//   4. eve's next session: the hub orders the purge, the page hears the
//      `purge` event, the database is empty and the session is refused
//      (`revoked`); the browser closes;
//   5. no file of eve's profile holds the marker, in any encoding LevelDB
//      would keep it (UTF-8 bytes of the JSON bodies and ids);
//   6. the edge's database still opens, holds nothing, and the hub's audit
//      trail has eve's signed purge receipt.
//
// Run through run.sh (which builds dist/ with lab.html and sets OUTPOST_HUB).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { launchHub } from "./hub.mjs";
import { filesHolding } from "./leveldb.mjs";
import { executablePath, session, waitUntilSource } from "./profile.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const distDir = join(here, "dist");
const hubBin = process.env.OUTPOST_HUB || "";
const run = `${process.pid}-${Date.now()}`;
const MARKER = "PURGE-MARK-5e1c";
const ALICE_TOKEN = "alice-token-purge-e2e";
const ADMIN_TOKEN = "admin-token-purge-e2e";
const N = 30;
const tmpDirs = [];

function tmp(prefix) {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}

let dir;
let cfg;
let hub;

const hubCli = (...args) =>
  execFileSync(hubBin, ["--config", cfg, ...args], { cwd: dir, timeout: 60_000, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] }).toString();

/** The purge receipts of `edge` in the audit trail (the hub stopped). */
const purgeReceipts = (edge) =>
  hubCli("audit", "export", "--edge", edge)
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((e) => e.kind === "purge_receipt");

before(async () => {
  if (!hubBin) return;
  assert.ok(existsSync(join(distDir, "lab.html")), "dist/lab.html is missing: run tests/e2e/run.sh (it runs vite build)");
  assert.ok(existsSync(executablePath), `${executablePath} not found`);
  dir = tmp("outpost-purge-hub-");
  const site = join(dir, "site");
  cpSync(distDir, site, { recursive: true });
  cfg = join(dir, "hub.toml");
  const sha = createHash("sha256").update(ALICE_TOKEN).digest("hex");
  const adminSha = createHash("sha256").update(ADMIN_TOKEN).digest("hex");
  writeFileSync(
    cfg,
    `listen = "127.0.0.1:0"\ndata_dir = "./data"\ndemo_site = ${JSON.stringify(site)}\n\n# alice writes with a development token; eve is an enrolled key.\n[dev]\ntokens = true\n\n[admin]\ntoken_sha256 = "${adminSha}"\n\n[[database]]\nname = "main"\n\n[[edge]]\nname = "alice"\ntoken_sha256 = "${sha}"\ndatabase = "main"\nread = ["notes/"]\nwrite = ["notes/"]\n`,
  );
  hub = await launchHub(hubBin, cfg, { cwd: dir, killAfterMs: 10_000, maxLog: 1_000_000 });
});

after(async () => {
  await hub?.stop();
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

test("a revoked browser edge erases what it was sent: no byte of it left in the profile's files", { skip: hubBin ? false : "OUTPOST_HUB not set (run.sh sets it)" }, async () => {
  const code = hubCli("edge", "add", "eve", "--read", "notes/", "--write", "notes/").trim().split("\n").pop();
  assert.match(code, /^\S{8,}$/, "the enrollment code printed for eve");

  // 1. alice writes the notes and the hub acknowledges them.
  const aliceProfile = tmp("outpost-purge-alice-");
  await session(aliceProfile, hub.base, (page) =>
    page.evaluate(
      async ({ name, token, marker, n, waitUntil }) => {
        const wait = (0, eval)(`(${waitUntil})`);
        const { Outpost, witness } = window.lab;
        const db = await Outpost.open(name);
        const sync = db.sync({ url: "/sync", identity: "alice", credential: token });
        for (let i = 0; i < n; i++) await db.put(`notes/${marker}-${i}`, { text: `${marker} secret ${i}` }, { collection: "Notes" });
        await db.put("notes/big", { text: Array.from({ length: 2000 }, (_, i) => `${marker}${i}`).join(" ") }, { collection: "Notes" });
        await wait("alice's writes acknowledged", () => witness(name)?.pending.length === 0);
        await sync.stop();
        await db.close();
      },
      { name: `purge-alice-${run}`, token: ALICE_TOKEN, marker: MARKER, n: N, waitUntil: waitUntilSource },
    ),
  );

  // 2. eve enrolls and pulls them.
  const eve = tmp("outpost-purge-eve-");
  const name = `purge-eve-${run}`;
  const pulled = await session(eve, hub.base, (page) =>
    page.evaluate(
      async ({ name, code, n, waitUntil }) => {
        const wait = (0, eval)(`(${waitUntil})`);
        const db = await window.lab.Outpost.open(name);
        await db.enroll({ url: "/sync", identity: "eve", code });
        const sync = db.sync({ url: "/sync", identity: "eve" });
        await wait("eve pulled the notes", async () => (await db.count()) === n + 1);
        // Garbage collections (Chromium drops the StorageBucket object the
        // page holds no reference to; a connection opened through it then
        // stalls every request: the store keeps it, see place.rs).
        for (let i = 0; i < 5; i++) {
          globalThis.gc();
          await new Promise((r) => setTimeout(r, 50));
        }
        const count = await Promise.race([db.count(), new Promise((r) => setTimeout(() => r("stalled after a garbage collection"), 10_000))]);
        if (typeof count !== "number") return { count }; // a stalled handle would not close either
        await sync.stop();
        await db.close();
        return { count, buckets: await window.lab.buckets(), bucket: await window.lab.bucketOf(name) };
      },
      { name, code, n: N, waitUntil: waitUntilSource },
    ),
    20_000,
    ["--js-flags=--expose-gc"],
  );
  assert.equal(pulled.count, N + 1);
  assert.ok(pulled.buckets.includes(pulled.bucket), `eve's database lives in its bucket: ${JSON.stringify(pulled)}`);
  const before = filesHolding(eve, MARKER);
  console.log(`# before the purge, the marker is in ${before.length} files of eve's profile: ${before.join(", ")}`);
  assert.ok(before.length > 0, "the marker is in eve's profile before the purge (else this test could not fail)");

  // 3. The operator revokes eve.
  hubCli("edge", "revoke", "eve");

  // 4. eve's next session: the purge order, then the refusal.
  const purged = await session(eve, hub.base, (page) =>
    page.evaluate(
      async ({ name, waitUntil }) => {
        const wait = (0, eval)(`(${waitUntil})`);
        const db = await window.lab.Outpost.open(name);
        const events = [];
        const sync = db.sync({ url: "/sync", identity: "eve", onPurge: (e) => events.push(e) });
        await wait("the refusal", () => sync.status.state === "error", 30000);
        const out = { code: sync.status.code, events, count: await db.count(), buckets: await window.lab.buckets(), gen2: await window.lab.bucketOf(name, 2) };
        await sync.stop();
        await db.close();
        return out;
      },
      { name, waitUntil: waitUntilSource },
    ),
  );
  console.log(`# after the revocation: ${JSON.stringify(purged)}`);
  assert.equal(purged.code, "revoked", JSON.stringify(purged));
  assert.equal(purged.count, 0, "the purge left nothing in eve's database");
  assert.ok(purged.events.length >= 1, `the page heard the purge: ${JSON.stringify(purged.events)}`);
  assert.ok(!purged.buckets.includes(pulled.bucket), `the first generation's bucket is deleted: ${JSON.stringify(purged.buckets)}`);
  assert.ok(purged.buckets.includes(purged.gen2), `the database lives in the next generation: ${JSON.stringify(purged.buckets)}`);

  // 5. The raw dump: no file of the profile holds the marker.
  const after = filesHolding(eve, MARKER);
  assert.deepEqual(after, [], "no plaintext of the purged documents in eve's profile");

  // 6. The database still opens, empty; the receipt is in the audit trail.
  const reopened = await session(eve, hub.base, (page) =>
    page.evaluate(async (name) => {
      const db = await window.lab.Outpost.open(name);
      const count = await db.count();
      await db.close();
      return count;
    }, name),
  );
  assert.equal(reopened, 0);
  // The audit commands read the hub's database: the hub stops first.
  await hub.stop();
  const receipts = purgeReceipts("eve");
  assert.equal(receipts.length, 1, `eve's signed purge receipt is in the audit trail: ${JSON.stringify(receipts)}`);
  assert.equal(receipts[0].record.removed, N + 1, JSON.stringify(receipts[0]));
  assert.deepEqual(filesHolding(eve, MARKER), []);
});

// The README's demo step: `outpost-hub purge` while the hub runs reaches a
// browser that is connected and holds the document (here the device that
// wrote it): the hub ends its session, the page reconnects, hears the purge,
// erases the document and keeps the others, without the hub stopping.
test("a subject purge on the running hub reaches a connected browser at once", { skip: hubBin ? false : "OUTPOST_HUB not set (run.sh sets it)" }, async () => {
  // The test before stops the hub to read its audit trail.
  hub = await launchHub(hubBin, cfg, { cwd: dir, killAfterMs: 10_000, maxLog: 1_000_000 });
  const profile = tmp("outpost-purge-live-");
  const name = `purge-live-${run}`;
  const heard = await session(profile, hub.base, async (page) => {
    await page.evaluate(
      async ({ name, token, waitUntil }) => {
        const wait = (0, eval)(`(${waitUntil})`);
        const { Outpost, witness } = window.lab;
        const db = await Outpost.open(name);
        const events = [];
        const sync = db.sync({ url: "/sync", identity: "alice", credential: token, onPurge: (e) => events.push(e) });
        await db.put("notes/forget-me", { text: "a subject's data" }, { collection: "Notes" });
        await db.put("notes/keep-me", { text: "someone else's" }, { collection: "Notes" });
        await wait("the writes acknowledged", () => witness(name)?.pending.length === 0);
        await wait("the session live", () => sync.status.state === "live");
        window.live = { db, sync, events };
      },
      { name, token: ALICE_TOKEN, waitUntil: waitUntilSource },
    );
    // The operator, in another terminal, while the page stays connected.
    const out = execFileSync(hubBin, ["--config", cfg, "purge", "--id", "notes/forget-me", "--by", "dpo", "--admin-token", ADMIN_TOKEN], {
      cwd: dir,
      timeout: 60_000,
      env: { ...process.env, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    }).toString();
    assert.match(out, /purged 1 document of database main/, out);
    return page.evaluate(
      async ({ waitUntil }) => {
        const wait = (0, eval)(`(${waitUntil})`);
        const { db, sync, events } = window.live;
        const t0 = performance.now();
        await wait("the purge erased the document", async () => events.length > 0 && (await db.get("notes/forget-me")) == null, 30000);
        const ms = performance.now() - t0;
        await wait("the session live again", () => sync.status.state === "live", 30000);
        const out = { events: events.length, ms, kept: (await db.get("notes/keep-me")) != null, state: sync.status.state };
        await sync.stop();
        await db.close();
        return out;
      },
      { waitUntil: waitUntilSource },
    );
  });
  console.log(`# the connected page after the live purge: ${JSON.stringify(heard)}`);
  assert.ok(heard.events >= 1, JSON.stringify(heard));
  assert.equal(heard.kept, true, "the purge took only the subject's document");
  assert.equal(heard.state, "live");
  // The hub went on serving throughout, and has the page's receipt.
  const status = execFileSync(hubBin, ["--config", cfg, "status", "--admin-token", ADMIN_TOKEN], { cwd: dir, timeout: 30_000 }).toString();
  assert.match(status, /Outpost hub/, status);
  await hub.stop();
  const receipts = purgeReceipts("alice");
  assert.ok(receipts.length >= 1, `the page's purge receipt is in the audit trail: ${JSON.stringify(receipts)}`);
});
