// A hubComputed index seen from the browser (issue 13, §3): a real hub loads
// examples/indexes/clinic.mjs (a census per ward reduced from visits, the
// index declared `hubComputed`) and keeps it up to date; the browser page
// imports the very same module file.
//
//   1. the nurse's browser (visits/ only) writes four visits and syncs them;
//   2. the ward manager's browser, granted only wardcensus/, defines the same
//      index (which computes nothing there), syncs, and receives the census
//      documents with the hub's exact figures, and no visit;
//   3. there, the census is read-only: put, delete and a new ward's document
//      are refused with `index_output` (over IndexedDB, by the engine), and
//      `query` on the index's name is `no_index`;
//   4. the nurse discharges the only south patient: the manager's open page
//      hears the census of south go (a subscription on the collection).
//
// Run through run.sh (which builds dist/ with lab.html and sets OUTPOST_HUB).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { launchHub } from "./hub.mjs";
import { executablePath, session, waitUntilSource } from "./profile.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const distDir = join(here, "dist");
const clinic = resolve(here, "../../examples/indexes/clinic.mjs");
const hubBin = process.env.OUTPOST_HUB || "";
const run = `${process.pid}-${Date.now()}`;
const TOKENS = { nurse: "nurse-token-hub-indexes", manager: "manager-token-hub-indexes" };
const tmpDirs = [];

function tmp(prefix) {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}

let hub;

before(async () => {
  if (!hubBin) return;
  assert.ok(existsSync(join(distDir, "lab.html")), "dist/lab.html is missing: run tests/e2e/run.sh (it runs vite build)");
  assert.ok(existsSync(executablePath), `${executablePath} not found`);
  const dir = tmp("outpost-hub-indexes-");
  const site = join(dir, "site");
  cpSync(distDir, site, { recursive: true });
  const cfg = join(dir, "hub.toml");
  const sha = (t) => createHash("sha256").update(t).digest("hex");
  const edge = (name, prefix) =>
    `\n[[edge]]\nname = "${name}"\ntoken_sha256 = "${sha(TOKENS[name])}"\ndatabase = "main"\nread = ["${prefix}"]\nwrite = ["${prefix}"]\n`;
  writeFileSync(
    cfg,
    `listen = "127.0.0.1:0"\ndata_dir = "./data"\ndemo_site = ${JSON.stringify(site)}\n\n[dev]\ntokens = true\n\n[[database]]\nname = "main"\nindexes = [${JSON.stringify(clinic)}]\n` +
      edge("nurse", "visits/") +
      edge("manager", "wardcensus/"),
  );
  hub = await launchHub(hubBin, cfg, { cwd: dir, killAfterMs: 10_000, maxLog: 1_000_000 });
});

after(async () => {
  await hub?.stop();
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

/** In the nurse's page: writes (or rewrites) visits and waits until the hub acknowledged them. */
const nurseWrites = (base, profile, visits) =>
  session(profile, base, (page) =>
    page.evaluate(
      async ({ name, token, visits, waitUntil }) => {
        const wait = (0, eval)(`(${waitUntil})`);
        const { Outpost, witness } = window.lab;
        const db = await Outpost.open(name);
        const sync = db.sync({ url: "/sync", identity: "nurse", credential: token });
        for (const [id, body] of visits) await db.put(`visits/${id}`, body, { collection: "Visits" });
        await wait("the nurse's writes acknowledged", () => witness(name)?.pending.length === 0);
        await sync.stop();
        await db.close();
      },
      { name: `hub-indexes-nurse-${run}`, token: TOKENS.nurse, visits, waitUntil: waitUntilSource },
    ),
  );

test("a hubComputed index's outputs reach the browser that may read them, read-only", { skip: hubBin ? false : "OUTPOST_HUB not set (run.sh sets it)" }, async () => {
  const nurse = tmp("outpost-hub-indexes-nurse-");
  const visit = (ward, diagnosis) => ({ patient: `p-${ward}-${diagnosis}`, ward, diagnosis });
  await nurseWrites(hub.base, nurse, [
    ["v1", visit("north", "flu")],
    ["v2", { ...visit("north", "flu"), patient: "p-2" }],
    ["v3", visit("north", "fracture")],
    ["v4", visit("south", "flu")],
  ]);

  const manager = tmp("outpost-hub-indexes-manager-");
  const seen = await session(manager, hub.base, async (page) => {
    const first = await page.evaluate(
      async ({ name, token, waitUntil }) => {
        const wait = (0, eval)(`(${waitUntil})`);
        const { Outpost, indexes } = window.lab;
        const db = await Outpost.open(name);
        await db.defineIndex(indexes.clinic.wardCensus);
        window.db = db;
        window.census = [];
        db.subscribe({ collection: "WardCensus" }, (docs) => {
          for (const d of docs) window.census.push([d["@metadata"]["@id"], d["@metadata"]["@deleted"] === true]);
        });
        window.sync = db.sync({ url: "/sync", identity: "manager", credential: token });
        await wait("the census arrives", async () => (await db.get("WardCensus/north")) && (await db.get("WardCensus/south")));
        const body = async (id) => {
          const d = await db.get(id);
          if (d === null) return null;
          const { "@metadata": _, ...rest } = d;
          return rest;
        };
        const code = async (p) => {
          try {
            await p;
            return "accepted";
          } catch (e) {
            return e.code;
          }
        };
        return {
          north: await body("WardCensus/north"),
          south: await body("WardCensus/south"),
          visit: await db.get("visits/v1"),
          put: await code(db.put("WardCensus/north", { inpatients: 0 }, { collection: "WardCensus" })),
          create: await code(db.put("WardCensus/east", { inpatients: 9 })),
          remove: await code(db.delete("WardCensus/south")),
          query: await code(db.query("clinic/ward-census", {})),
          after: await body("WardCensus/north"),
        };
      },
      { name: `hub-indexes-manager-${run}`, token: TOKENS.manager, waitUntil: waitUntilSource },
    );
    // The nurse discharges the south patient while the manager's page is open.
    await nurseWrites(hub.base, nurse, [["v4", { ...visit("south", "flu"), discharged: true }]]);
    const gone = await page.evaluate(
      async ({ waitUntil }) => {
        const wait = (0, eval)(`(${waitUntil})`);
        await wait("the south census goes", async () => (await window.db.get("WardCensus/south")) === null, 30000);
        const heard = window.census.some(([id, deleted]) => id === "WardCensus/south" && deleted);
        await window.sync.stop();
        await window.db.close();
        return { heard };
      },
      { waitUntil: waitUntilSource },
    );
    return { ...first, ...gone };
  });

  assert.deepEqual(seen.north, { inpatients: 3, byDiagnosis: { flu: 2, fracture: 1 } });
  assert.deepEqual(seen.south, { inpatients: 1, byDiagnosis: { flu: 1 } });
  assert.equal(seen.visit, null, "a visit reached the manager");
  assert.equal(seen.put, "index_output");
  assert.equal(seen.create, "index_output");
  assert.equal(seen.remove, "index_output");
  assert.equal(seen.query, "no_index");
  assert.deepEqual(seen.after, seen.north, "the refused write changed nothing");
  assert.ok(seen.heard, "the manager's subscription heard the south census go");
});
