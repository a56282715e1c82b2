// Indexes in real headless Chromium over real IndexedDB, through the packed
// npm package, with the same module files the Node tests load
// (examples/indexes/*.mjs, bundled into the lab page by Vite):
// 1. session 1: the mortgage indexes defined, events written, the loan status
//    queried with its exact figures; a second tab (same origin) writes the
//    late catch-up payment and the first tab's liveQuery sees the past-due
//    flag clear; the browser closes;
// 2. session 2 (a browser restart on the same profile): the indexes are
//    defined again (same source, same version: nothing is rebuilt), their
//    rows are read back from IndexedDB, and a changed reduce builds a new
//    version that the next query uses; then, with no query, a month's
//    events reach both indexes (a chain) in the background.
//
// Run through run.sh (which builds dist/ with lab.html); CHROMIUM overrides
// /usr/bin/chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { executablePath, session } from "./profile.mjs";
import { serve } from "./server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const distDir = join(here, "dist");
let server;
let profile;

before(async () => {
  assert.ok(existsSync(join(distDir, "lab.html")), "dist/lab.html is missing: run tests/e2e/run.sh (it runs vite build)");
  assert.ok(existsSync(executablePath), `${executablePath} not found`);
  server = await serve(distDir);
  profile = mkdtempSync(join(tmpdir(), "outpost-e2e-indexes-"));
});

after(async () => {
  await server?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

const NAME = "indexes-e2e";

test("the mortgage indexes in Chromium: exact figures, a second tab's write, a live query, a restart", async () => {
  const first = await session(profile, server.url, async (page) => {
    const r = await page.evaluate(async (name) => {
      const { Outpost, indexes } = window.lab;
      const { monthlyStatus, loanStatus } = indexes.mortgage;
      const db = await Outpost.open(name);
      await db.defineIndex(monthlyStatus);
      await db.defineIndex(loanStatus);
      const { sampleEvents } = indexes.mortgage;
      await db.transaction(sampleEvents.map(([id, doc]) => ({ type: "put", id: `events/${id}`, doc, collection: "LoanEvents" })));
      const before = (await db.query(loanStatus.name, { eq: "L1" })).rows[0].value;
      // A live query in this tab; the late payment comes from another tab.
      window.__live = [];
      window.__stop = db.liveQuery(loanStatus.name, { eq: "L1" }, (res) => window.__live.push(res.rows[0]?.value ?? null));
      window.__db = db;
      return { before };
    }, NAME);
    assert.deepEqual(r.before, { approved: 12000, interestPaid: 330, principalPaid: 2390, outstanding: 9610, pastDueAmount: 610, pastDue: true });

    const other = await page.context().newPage();
    const errors = [];
    other.on("pageerror", (e) => errors.push(e.message));
    await other.goto(new URL("lab.html", server.url).href);
    await other.waitForFunction(() => window.lab);
    await other.evaluate(async (name) => {
      const db = await window.lab.Outpost.open(name);
      const [id, doc] = window.lab.indexes.mortgage.latePayment;
      await db.put(`events/${id}`, doc, { collection: "LoanEvents" });
      await db.close();
    }, NAME);
    assert.deepEqual(errors, []);
    // The first tab hears of the other's commit; its live query catches the
    // chain up and calls back with the cleared flag.
    await page.waitForFunction(() => window.__live.some((v) => v && v.pastDue === false), null, { timeout: 20_000 });
    return page.evaluate(async () => {
      window.__stop();
      const live = window.__live;
      const infos = await window.__db.indexes();
      await window.__db.close();
      return { live, infos };
    });
  });
  assert.deepEqual(first.live.at(-1), { approved: 12000, interestPaid: 330, principalPaid: 3000, outstanding: 9000, pastDueAmount: 0, pastDue: false });
  assert.deepEqual(first.infos.map((i) => [i.name, i.stale]).sort(), [["mortgage/loan-status", false], ["mortgage/monthly-status", false]]);

  // A browser restart: same profile, same origin.
  const second = await session(profile, server.url, async (page) =>
    page.evaluate(async (name) => {
      const { Outpost, indexes } = window.lab;
      const { monthlyStatus, loanStatus } = indexes.mortgage;
      const db = await Outpost.open(name);
      const versionsBefore = (await db.indexes()).map((i) => i.version).sort();
      await db.defineIndex(monthlyStatus);
      await db.defineIndex(loanStatus);
      const unchanged = (await db.query(loanStatus.name, { eq: "L1", wait: false })).rows[0].value;
      const feb = await db.get('MonthlyStatus/["L1","2026-02"]');
      const versionsAfter = (await db.indexes()).map((i) => i.version).sort();
      // A changed reduce: a new version, built and used by the next query.
      await db.defineIndex({ ...loanStatus, reduce: (loan, values, rereduce) => ({ ...loanStatus.reduce(loan, values, rereduce), checked: true }) });
      const changed = (await db.query(loanStatus.name, { eq: "L1" })).rows[0].value;
      // Nobody queries: a new event reaches both indexes (a chain) in the background.
      await db.transaction([
        { type: "put", id: "events/x4", doc: { type: "expected", loan: "L1", month: "2026-04", interest: 90, principal: 1000 }, collection: "LoanEvents" },
        { type: "put", id: "events/p4", doc: { type: "payment", loan: "L1", month: "2026-04", amount: 100 }, collection: "LoanEvents" },
      ]);
      const end = Date.now() + 15000;
      let background = false;
      while (!background && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 50));
        const april = await db.get('MonthlyStatus/["L1","2026-04"]');
        const infos = await db.indexes();
        background = april?.paid === 100 && infos.every((i) => !i.stale);
      }
      const afterApril = (await db.query(loanStatus.name, { eq: "L1", wait: false })).rows[0].value;
      await db.close();
      return { unchanged, feb: { paid: feb.paid, short: feb.short, fromIndex: feb["@metadata"]["@from-index"] }, versionsBefore, versionsAfter, changed, background, afterApril };
    }, NAME),
  );
  assert.deepEqual(second.unchanged, first.live.at(-1), "the rows were read back from IndexedDB");
  assert.deepEqual(second.feb, { paid: 1110, short: 0, fromIndex: true });
  assert.deepEqual(second.versionsAfter, second.versionsBefore, "the same source defines the same versions: nothing rebuilt");
  assert.equal(second.changed.checked, true);
  assert.equal(second.changed.outstanding, 9000);
  assert.ok(second.background, "a write reached the chained indexes without a query");
  // April: 100 paid of 90 interest + 1,000 principal due.
  assert.deepEqual([second.afterApril.principalPaid, second.afterApril.pastDueAmount, second.afterApril.pastDue], [3010, 990, true], JSON.stringify(second.afterApril));
});
