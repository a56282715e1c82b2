// The OPFS page store (issue 14 §5), in real headless Chromium through the
// packed npm package: `storage: "opfs"` in a dedicated worker (app/worker.js,
// `serveOutpost`, reached with `openInWorker`).
//
//   1. open in a worker, write (single puts and a transaction), close,
//      reopen in a new worker, read everything back;
//   2. while one worker has the database open, a second worker's open is
//      refused with code "locked" (OPFS access handles are exclusive);
//   3. a worker terminated without close (the crash of a tab): a new worker
//      recovers every acknowledged write from the write-ahead log;
//   4. `Outpost.open(name, { storage: "opfs" })` on the page's main thread
//      is refused with code "unsupported";
//   5. `Outpost.destroy(name)` (from the page) removes the OPFS files: the
//      next open is empty.
//
// Needs tests/e2e/dist (run.sh builds it with vite); no hub.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { serve } from "./server.mjs";
import { executablePath, session } from "./profile.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const distDir = join(here, "dist");
let server;
let profile;

before(async () => {
  assert.ok(existsSync(join(distDir, "lab.html")), "dist/lab.html is missing: run tests/e2e/run.sh (it runs vite build)");
  assert.ok(existsSync(executablePath), `${executablePath} not found`);
  server = await serve(distDir);
  profile = mkdtempSync(join(tmpdir(), "outpost-opfs-e2e-"));
});

after(async () => {
  await server?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test("OPFS store in a dedicated worker: write, reopen, locked, crash, main thread, destroy", async () => {
  const name = `opfs-e2e/${process.pid}`;
  const r = await session(profile, server.url, async (page) =>
    page.evaluate(
      async ({ name }) => {
        const { openInWorker, worker, Outpost } = window.lab;
        const code = async (p) => {
          try {
            await p;
            return "ok";
          } catch (e) {
            return e?.code ?? String(e);
          }
        };
        const out = {};
        // 1. write, close, reopen in another worker, read back
        let w1 = worker();
        let db = await openInWorker(w1, name, { storage: "opfs" });
        for (let i = 0; i < 50; i++) await db.put(`notes/${i}`, { i, text: "x".repeat(1000) }, { collection: "Notes" });
        await db.transaction([
          { type: "put", id: "notes/t1", doc: { t: 1 }, collection: "Notes" },
          { type: "put", id: "notes/t2", doc: { t: 2 }, collection: "Notes" },
        ]);
        // 2. a second worker is refused while the first has it open
        const w2 = worker();
        out.second = await code(openInWorker(w2, name, { storage: "opfs" }));
        w2.terminate();
        await db.close();
        w1.terminate();
        let w3 = worker();
        db = await openInWorker(w3, name, { storage: "opfs" });
        out.count = await db.count();
        out.doc7 = (await db.get("notes/7"))?.i;
        out.t2 = (await db.get("notes/t2"))?.t;
        // 3. more writes, then the worker dies without close
        for (let i = 50; i < 80; i++) await db.put(`notes/${i}`, { i }, { collection: "Notes" });
        w3.terminate();
        let reopened = null;
        let w4;
        // The browser releases the dead worker's handles soon after: retry a little.
        for (let attempt = 0; attempt < 50 && !reopened; attempt++) {
          w4 = worker();
          try {
            reopened = await openInWorker(w4, name, { storage: "opfs" });
          } catch (e) {
            w4.terminate();
            if (e?.code !== "locked") throw e;
            await new Promise((res) => setTimeout(res, 100));
          }
        }
        out.afterCrash = await reopened.count();
        out.doc79 = (await reopened.get("notes/79"))?.i;
        await reopened.close();
        w4.terminate();
        // 4. the main thread is refused
        out.mainThread = await code(Outpost.open(name, { storage: "opfs" }));
        // 5. destroy removes the files
        await Outpost.destroy(name);
        const w5 = worker();
        const fresh = await openInWorker(w5, name, { storage: "opfs" });
        out.afterDestroy = await fresh.count();
        await fresh.close();
        w5.terminate();
        await Outpost.destroy(name);
        const root = await navigator.storage.getDirectory();
        const dir = await root.getDirectoryHandle("outpost");
        out.left = [];
        for await (const k of dir.keys()) out.left.push(k);
        return out;
      },
      { name },
    ),
  );
  assert.equal(r.second, "locked");
  assert.equal(r.count, 52);
  assert.equal(r.doc7, 7);
  assert.equal(r.t2, 2);
  assert.equal(r.afterCrash, 82);
  assert.equal(r.doc79, 79);
  assert.equal(r.mainThread, "unsupported");
  assert.equal(r.afterDestroy, 0);
  assert.deepEqual(r.left, []);
});
