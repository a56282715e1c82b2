// Tombstone compaction (protocol 7, docs/protocol.md §4 "Tombstone
// compaction") with this package's edges (the browser's code, in Node)
// against a real hub process (target/{debug,release}/outpost-hub or
// $OUTPOST_HUB; token identities, the hub's development mode; retention
// 1 s, no periodic runs: the test compacts with `POST /admin/compact` and
// the admin token):
// - a JS device away past the retention: while it is offline another
//   deletes x and y, which the hub then compacts (the away device is listed
//   as expired). When it comes back the hub resyncs it (its log says so):
//   it drops x and y (no resurrection, at the hub either), keeps its
//   offline edit of z and its new w, and pushes them to the other device;
// - a JS device that stays connected sees the deletions as usual, is not
//   resynced, and replication goes on both ways after the compaction.
// Node before 22 has no global WebSocket: the edges run in a child process
// with --experimental-websocket.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { once } from "node:events";
import { hubBinary, startHub } from "./hub-proc.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const ADMIN_TOKEN = `compaction-admin-${process.pid}`;

// Shared by both clients: bounded polling, the admin routes.
const PRELUDE = `
const { Outpost } = await import(process.env.PKG);
const url = process.env.HUB_URL;
const http = process.env.HUB_HTTP;
const admin = { authorization: "Bearer " + process.env.ADMIN_TOKEN };
const check = (ok, what) => { if (!ok) throw new Error("check failed: " + what); };
const eq = (a, b, what) => check(JSON.stringify(a) === JSON.stringify(b), what + ": " + JSON.stringify(a) + " !== " + JSON.stringify(b));
const wait = async (what, f, ms = 20000) => {
  const t = Date.now();
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() - t > ms) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 50));
  }
};
// Database "main" in GET /status.
const status = async () => {
  const r = await fetch(http + "/status", { headers: admin });
  const body = await r.text();
  check(r.status === 200, "GET /status: " + r.status + " " + body);
  const main = JSON.parse(body).databases.find((d) => d.name === "main");
  check(main, "no database main in " + body);
  return main;
};
// POST /admin/compact: the report.
const compact = async () => {
  const r = await fetch(http + "/admin/compact", {
    method: "POST",
    headers: { ...admin, "content-type": "application/json" },
    body: JSON.stringify({ database: "main" }),
  });
  const body = await r.text();
  check(r.status === 200, "POST /admin/compact: " + r.status + " " + body);
  return JSON.parse(body);
};
// Compacts (every 250 ms, up to 20 s) until at least \`atLeast\` tombstones
// were removed in all and none is left: every run's report.
const compactUntil = async (atLeast) => {
  const runs = [];
  let removed = 0;
  await wait("compaction of " + atLeast + " tombstones", async () => {
    const r = await compact();
    runs.push(r);
    removed += r.removed;
    if (removed >= atLeast && r.tombstones_left === 0) return true;
    await new Promise((res) => setTimeout(res, 250));
    return false;
  }).catch((e) => { throw new Error(e.message + ": " + JSON.stringify(runs)); });
  return { runs, removed };
};
const body = async (db, id) => {
  const d = await db.get(id);
  if (!d) return d;
  const { ["@metadata"]: _, ...rest } = d;
  return rest;
};
const start = (db, identity) => db.sync({ url, identity, credential: identity + "-token" });
`;

// A (alice) is away past the retention; B (bob) deletes meanwhile.
const AWAY = `${PRELUDE}
const a = await Outpost.open("alice");
const b = await Outpost.open("bob");
let sa = start(a, "alice");
const sb = start(b, "bob");
await wait("both live", () => sa.status.state === "live" && sb.status.state === "live");
// B writes first, so A's pull checkpoint is above 0 once it has this
// (a device at checkpoint 0 is sent everything anyway).
await b.put("notes/from-b", { v: "b" }, { collection: "Notes" });
await wait("from-b at a", () => a.get("notes/from-b"));
for (const id of ["x", "y", "z"]) await a.put("notes/" + id, { v: id + " from a" }, { collection: "Notes" });
for (const id of ["x", "y", "z"]) {
  await wait(id + " at b", async () => (await body(b, "notes/" + id))?.v === id + " from a");
}
await wait("the hub holds 4 documents", async () => (await status()).documents === 4);
eq((await compact()).removed, 0, "nothing to compact yet");

// A goes offline (its database stays open).
await sa.stop();
eq(sa.status.state, "offline", "a stopped");
await b.delete("notes/x");
await b.delete("notes/y");
await wait("the hub holds the two tombstones", async () => {
  const s = await status();
  return s.tombstones === 2 && s.documents === 2;
});
// Offline at A: an edit of z, a new w.
await a.put("notes/z", { v: "z edited by a offline" }, { collection: "Notes" });
await a.put("notes/w", { v: "w written by a offline" }, { collection: "Notes" });
check((await a.get("notes/x")) && (await a.get("notes/y")), "a still holds x and y (it missed the deletions)");

// Past the retention (1 s) A no longer holds compaction back.
const seenAt = Date.now();
await wait("the retention to pass", () => Date.now() - seenAt > 1500);
const { runs, removed } = await compactUntil(2);
check(removed >= 2, "removed " + removed + ": " + JSON.stringify(runs));
const removing = runs.filter((r) => r.removed > 0);
check(removing.every((r) => r.expired.some((d) => d.startsWith("alice/"))), "alice is listed as expired by the runs that removed: " + JSON.stringify(runs));
check(runs.every((r) => r.retention_secs === 1), "retention 1 s: " + JSON.stringify(runs));
const after = await status();
eq([after.tombstones, after.documents], [0, 2], "the hub after compaction (tombstones, documents)");
check(after.compaction.horizon > 0 && after.compaction.removed >= 2, "compaction in /status: " + JSON.stringify(after.compaction));
console.log("COMPACTED " + JSON.stringify(runs));

// A comes back: resynced, it drops x and y, keeps z (its edit) and w.
const states = [];
sa = start(a, "alice");
sa.on("status", (s) => states.push(s.state === "error" ? "error:" + s.code + ":" + s.message : s.state));
await wait("a live again", () => sa.status.state === "live").catch((e) => { throw new Error(e.message + ": " + JSON.stringify(states)); });
await wait("a dropped x and y", async () => (await a.get("notes/x")) === null && (await a.get("notes/y")) === null)
  .catch(async (e) => { throw new Error(e.message + ": x " + JSON.stringify(await a.get("notes/x")) + ", y " + JSON.stringify(await a.get("notes/y"))); });
eq(await body(a, "notes/z"), { v: "z edited by a offline" }, "a keeps its offline edit of z");
eq(await body(a, "notes/w"), { v: "w written by a offline" }, "a keeps w");
eq(await body(a, "notes/from-b"), { v: "b" }, "a keeps from-b");
// ... and pushes them.
await wait("w and a's edit of z at b", async () =>
  (await body(b, "notes/w"))?.v === "w written by a offline" && (await body(b, "notes/z"))?.v === "z edited by a offline");
await wait("the hub holds from-b, z and w", async () => {
  const s = await status();
  return s.documents === 3 && s.tombstones === 0;
});
for (const [name, db] of [["a", a], ["b", b]]) {
  eq(await db.get("notes/x"), null, name + ": no x");
  eq(await db.get("notes/y"), null, name + ": no y");
  eq(await db.count(), 3, name + ": from-b, z and w");
  eq((await db.conflicts()).length, 0, name + ": no conflict");
}
// Replication goes on both ways; x and y never come back to the hub.
await b.put("notes/later-b", { v: 1 }, { collection: "Notes" });
await a.put("notes/later-a", { v: 2 }, { collection: "Notes" });
await wait("the later notes cross", async () => (await a.get("notes/later-b")) && (await b.get("notes/later-a")));
await wait("the hub holds 5 documents", async () => (await status()).documents === 5);
const end = await status();
eq([end.documents, end.tombstones], [5, 0], "the hub at the end (documents, tombstones)");
for (const db of [a, b]) {
  eq(await db.get("notes/x"), null, "no x at the end");
  eq(await db.get("notes/y"), null, "no y at the end");
}
check(sb.status.state === "live" && sa.status.state === "live", "both live at the end: " + JSON.stringify([sa.status, sb.status]));
console.log("A_STATES " + JSON.stringify(states));
await a.close();
await b.close();
console.log("ok");
`;

// Both connected throughout.
const CONNECTED = `${PRELUDE}
const a = await Outpost.open("alice");
const b = await Outpost.open("bob");
const sa = start(a, "alice");
const sb = start(b, "bob");
await wait("both live", () => sa.status.state === "live" && sb.status.state === "live");
const states = { a: [], b: [] };
sa.on("status", (s) => states.a.push(s.state));
sb.on("status", (s) => states.b.push(s.state));
for (const id of ["x", "y", "z"]) await a.put("notes/" + id, { v: id }, { collection: "Notes" });
await wait("x, y and z at b", async () => (await b.count()) === 3);
await b.delete("notes/x");
await b.delete("notes/y");
await wait("a sees the deletions", async () => (await a.get("notes/x")) === null && (await a.get("notes/y")) === null);
await wait("the hub holds the two tombstones", async () => (await status()).tombstones === 2);
const { runs, removed } = await compactUntil(2);
check(removed >= 2, "removed " + removed + ": " + JSON.stringify(runs));
const s = await status();
eq([s.documents, s.tombstones], [1, 0], "the hub after compaction (documents, tombstones)");
console.log("COMPACTED " + JSON.stringify(runs));
// Replication goes on both ways, without a reconnection.
await b.put("notes/v", { v: "from b" }, { collection: "Notes" });
await a.put("notes/u", { v: "from a" }, { collection: "Notes" });
await a.put("notes/z", { v: "z edited" }, { collection: "Notes" });
await wait("v at a", async () => (await body(a, "notes/v"))?.v === "from b");
await wait("u and z's edit at b", async () => (await body(b, "notes/u"))?.v === "from a" && (await body(b, "notes/z"))?.v === "z edited");
await wait("the hub holds z, u and v", async () => (await status()).documents === 3);
for (const [name, db] of [["a", a], ["b", b]]) {
  eq(await db.count(), 3, name + ": z, u and v");
  eq(await db.get("notes/x"), null, name + ": no x");
  eq(await db.get("notes/y"), null, name + ": no y");
}
// The same live documents. (Tombstones may differ: a compacts the
// deletions it received once the hub says it compacted them; b keeps its
// own, which edges do not compact yet.)
const live = async (db) => (await db.changes({ since: 0 })).filter((d) => !d["@metadata"]["@deleted"]).map((d) => d["@metadata"]["@id"]).sort();
eq(await live(a), await live(b), "a and b hold the same documents");
eq(states, { a: [], b: [] }, "neither session changed state (no reconnection, no resync)");
eq([sa.status.state, sb.status.state], ["live", "live"], "both live");
await a.close();
await b.close();
console.log("ok");
`;

/** A hub (retention 1 s, no periodic runs, an admin token) and edges alice and bob; runs `client`. */
async function run(t, name, client) {
  const hub = hubBinary();
  // Not skipped when missing: scripts/test.sh builds the hub before this step.
  assert.ok(hub, "no outpost-hub binary: run `cargo build -p outpost-hub` (or set OUTPOST_HUB)");
  const dir = mkdtempSync(join(tmpdir(), `outpost-pkg-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sha = (s) => createHash("sha256").update(s).digest("hex");
  const edge = (who) =>
    `[[edge]]\nname = "${who}"\ntoken_sha256 = "${sha(`${who}-token`)}"\ndatabase = "main"\nread = ["notes/"]\nwrite = ["notes/"]\n`;
  const cfg = join(dir, "hub.toml");
  writeFileSync(
    cfg,
    `data_dir = "./data"\n[dev]\ntokens = true\n[admin]\ntoken_sha256 = "${sha(ADMIN_TOKEN)}"\n[compaction]\nretention_secs = 1\ninterval_secs = 0\n[[database]]\nname = "main"\n${edge("alice")}${edge("bob")}`,
  );
  const { addr, log: hubLog } = await startHub(t, hub, cfg);
  const script = join(dir, "client.mjs");
  writeFileSync(script, client);
  const flags = typeof globalThis.WebSocket === "function" ? [] : ["--experimental-websocket"];
  // Asynchronously: the hub's output pipes must keep draining meanwhile.
  const child = spawn(process.execPath, [...flags, "--no-warnings", script], {
    env: {
      ...process.env,
      PKG: pathToFileURL(join(root, "pkg-js/src/node.js")).href,
      HUB_URL: `ws://${addr}/sync`,
      HUB_HTTP: `http://${addr}`,
      ADMIN_TOKEN,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const killer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  const [code] = await once(child, "exit");
  clearTimeout(killer);
  const log = () => hubLog().replace(/\x1b\[[0-9;]*m/g, "");
  assert.equal(code, 0, `the client failed:\n${out}\nhub log:\n${log().slice(-20000)}`);
  assert.equal(out.trim().split("\n").pop(), "ok", out);
  return { out, log };
}

const resyncs = (log, who) => log.split("\n").filter((l) => l.includes("edge resyncs") && l.includes(`identity=${who}`));

test("a JS device away past the retention resyncs: deleted documents go, its offline writes stay", async (t) => {
  const { out, log } = await run(t, "compaction-away", AWAY);
  assert.equal(resyncs(log(), "alice").length, 1, `the hub resynced alice once:\n${out}\n${log()}`);
  assert.deepEqual(resyncs(log(), "bob"), [], "bob, connected throughout, was not resynced");
  assert.match(log(), /tombstone compaction/);
});

test("a JS device that stays connected is not resynced and sees deletions as usual", async (t) => {
  const { out, log } = await run(t, "compaction-connected", CONNECTED);
  assert.deepEqual(resyncs(log(), "alice"), [], `no resync:\n${out}\n${log()}`);
  assert.deepEqual(resyncs(log(), "bob"), [], `no resync:\n${out}\n${log()}`);
  assert.match(log(), /tombstone compaction/);
});
