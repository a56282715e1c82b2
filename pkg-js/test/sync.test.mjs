// Replication API in Node: `db.sync()` checks its options; `conflicts`,
// `resolve` and `rejections` work on a database that never synced; and, when
// a hub binary is built (target/{debug,release}/outpost-hub or $OUTPOST_HUB),
// two in-memory databases enroll their keys with one-time codes (a wrong
// code and a used one are refused with "unauthorized"; the hub records the
// keys in its configuration) and replicate through a real hub process,
// every session proving the key: both ways, a refused write, a conflict
// kept by the "manual" policy and resolved in one of them; revoked by the
// operator (`outpost-hub edge revoke`), bob's database is ordered to erase
// what it was sent (a "purge" event; nothing left) and his live session
// ends with the status code "revoked". Write safety "replicated" waits for
// the hub's acknowledgement (or says why not). A third syncs with a token (the hub's development
// mode). Node before 22 has no global WebSocket: there the replication
// part runs in a child process with --experimental-websocket.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { once } from "node:events";
import { Outpost, OutpostError, Sync } from "@outpost/db";
import { hubBinary, startHub } from "./hub-proc.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");

const rejects = async (promiseOrFn, code) => {
  try {
    await (typeof promiseOrFn === "function" ? promiseOrFn() : promiseOrFn);
  } catch (e) {
    assert.ok(e instanceof OutpostError, `an OutpostError, got ${e}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected an error with code ${code}`);
};

test("sync checks its options", async () => {
  const db = await Outpost.open("sync-options");
  const ok = { url: "ws://127.0.0.1:9/sync", identity: "alice", credential: "t" };
  for (const bad of [
    undefined,
    "ws://x",
    {},
    { ...ok, url: undefined },
    { ...ok, url: 7 },
    { ...ok, url: "ftp://x/sync" },
    { ...ok, url: "not a url" },
    { ...ok, identity: "" },
    { ...ok, credential: "" },
    { ...ok, credential: 7 },
    { ...ok, code: "enroll with db.enroll" },
    { ...ok, database: "" },
    { ...ok, onStatus: "yes" },
    { ...ok, colour: "blue" },
  ]) {
    await rejects(() => db.sync(bad), "invalid_options");
  }
  if (typeof globalThis.WebSocket !== "function") {
    await rejects(() => db.sync(ok), "unsupported");
  } else {
    const seen = [];
    const sync = db.sync({ ...ok, onStatus: (s) => seen.push(s.state) });
    assert.ok(sync instanceof Sync);
    assert.ok(["connecting", "offline"].includes(sync.status.state));
    await rejects(() => db.sync(ok), "already_syncing");
    await rejects(() => sync.on("bogus", () => {}), "invalid_argument");
    await rejects(() => sync.on("status", 1), "invalid_argument");
    await sync.stop();
    await sync.stop(); // twice is harmless
    assert.equal(sync.status.state, "offline");
    assert.equal(sync.stopped, true);
    db.sync(ok); // allowed again after stop; close() stops it
  }
  await db.close();
  await rejects(() => db.sync(ok), "closed");
});

test("conflicts, resolve and rejections on a database that never synced", async () => {
  const db = await Outpost.open("sync-local");
  assert.deepEqual(await db.conflicts(), []);
  assert.deepEqual(await db.rejections(), []);
  await db.put("notes/1", { text: "a" }, { collection: "Notes" });
  // On a document that is not conflicted, resolve is a put (keeping the collection)...
  const r = await db.resolve("notes/1", { text: "b" });
  assert.equal(r.id, "notes/1");
  assert.equal(r.deleted, false);
  const doc = await db.get("notes/1");
  assert.equal(doc.text, "b");
  assert.equal(doc["@metadata"]["@collection"], "Notes");
  // ... or, with null, a delete.
  assert.equal((await db.resolve("notes/1", null)).deleted, true);
  assert.equal(await db.get("notes/1"), null);
  await rejects(db.resolve("notes/1"), "invalid_argument");
  await rejects(db.resolve("notes/1", [1]), "invalid_json");
  await rejects(db.conflicts({ limit: -1 }), "invalid_argument");
  await rejects(db.conflicts(7), "invalid_argument");
  assert.deepEqual(await db.conflicts({ after: "notes/", limit: 10 }), []);
  await db.close();
});

// Runs in a child process (so Node 20 can enable its WebSocket); prints "ok".
const CLIENT = `
const { Outpost } = await import(process.env.PKG);
const url = process.env.HUB_URL;
const wait = async (what, f, ms = 15000) => {
  const t = Date.now();
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() - t > ms) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 50));
  }
};
const codes = JSON.parse(process.env.CODES);
const refusedWith = async (what, p, code) => {
  try {
    await p;
  } catch (e) {
    if (e.code !== code) throw new Error(what + ": " + e.code + " " + e.message);
    return;
  }
  throw new Error(what + ": not refused");
};
const a = await Outpost.open("a");
const b = await Outpost.open("b");
// No key for the identity yet: a key session ends at once with "no_key".
const sn = a.sync({ url, identity: "alice" });
await wait("no_key", () => sn.status.state === "error");
if (sn.status.code !== "no_key") throw new Error(JSON.stringify(sn.status));
await sn.stop();
await refusedWith("a wrong code", a.enroll({ url, identity: "alice", code: "not-the-code" }), "unauthorized");
if ((await a.identity("alice")).enrolled) throw new Error("enrolled after a wrong code");
const ia = await a.enroll({ url, identity: "alice", code: codes.alice });
if (!ia.enrolled || ia.identity !== "alice" || !/^p256:04[0-9a-f]{128}$/.test(ia.publicKey)) throw new Error(JSON.stringify(ia));
if (JSON.stringify(await a.identity("alice")) !== JSON.stringify(ia)) throw new Error("identity after enroll");
// The code was good once: another database (another key) cannot use it again.
const other = await Outpost.open("other");
await refusedWith("a used code", other.enroll({ url, identity: "alice", code: codes.alice }), "unauthorized");
await other.close();
const ib = await b.enroll({ url, identity: "bob", code: codes.bob });
console.log("KEYS " + JSON.stringify({ alice: ia.publicKey, bob: ib.publicKey }));
// Every later session proves the enrolled key (no credential).
const start = (db, identity) => db.sync({ url, identity });
let sa = start(a, "alice");
let sb = start(b, "bob");
const statuses = [];
sa.on("status", (s) => statuses.push(s.state));
await wait("both live", () => sa.status.state === "live" && sb.status.state === "live").catch((e) => { console.error(JSON.stringify([sa.status, sb.status, url])); throw e; });
await a.put("notes/1", { text: "from a" }, { collection: "Notes" });
await wait("notes/1 at b", () => b.get("notes/1"));
// The hub's deletion guards (never_delete = ["Invoices"]) came with the
// session: a delete of an invoice is refused at once, a transaction too.
await a.put("notes/inv-1", { total: 10 }, { collection: "Invoices" });
await refusedWith("a guarded delete", a.delete("notes/inv-1"), "delete_forbidden");
await refusedWith("a transaction with a guarded delete", a.transaction(async (tx) => { tx.put("notes/x", {}); tx.delete("notes/inv-1"); }), "delete_forbidden");
if (await a.get("notes/x")) throw new Error("a refused transaction wrote notes/x");
await b.put("notes/2", { text: "from b" }, { collection: "Notes" });
await wait("notes/2 at a", () => a.get("notes/2"));
const refused = [];
sa.on("rejection", (r) => refused.push(r));
await a.put("secrets/1", { text: "no" });
const [rej] = await wait("a rejection", async () => { const r = await sa.rejections(); return r.length && r; });
if (rej.id !== "secrets/1" || rej.code !== "write_denied" || !rej.changeVector) throw new Error(JSON.stringify(rej));
await wait("the rejection event", () => refused.length === 1);
// A conflict: both edit notes/1 while stopped, then sync again.
await sa.stop();
await sb.stop();
await a.put("notes/1", { text: "a's edit" });
await b.put("notes/1", { text: "b's edit" });
sa = start(a, "alice");
sb = start(b, "bob");
const [ca] = await wait("conflict at a", async () => { const c = await a.conflicts(); return c.length && c; });
await wait("conflict at b", async () => (await b.conflicts()).length === 1);
const texts = ca.versions.map((v) => v.body.text).sort().join("|");
if (ca.id !== "notes/1" || texts !== "a's edit|b's edit") throw new Error(JSON.stringify(ca));
await b.resolve("notes/1", { text: "merged" });
await wait("resolution at a", async () => (await a.conflicts()).length === 0 && (await a.get("notes/1")).text === "merged");
if ((await b.conflicts()).length !== 0) throw new Error("b still conflicted");
if (!statuses.includes("offline")) throw new Error("statuses: " + statuses);
// The operator revokes bob: his live session ends with the status code
// "revoked"; an enrollment as bob with his spent code is refused as
// "unauthorized" (the hub tells only the holder of bob's key that bob is
// revoked, so nobody can probe which identities are); alice goes on.
// Before the refusal, bob's database is ordered to erase everything it was
// sent: a "purge" event, and nothing left.
const purges = [];
sb.on("purge", (p) => purges.push(p));
if ((await b.count()) === 0) throw new Error("bob holds nothing before the revocation");
const { execFileSync } = await import("node:child_process");
execFileSync(process.env.HUB, ["--config", process.env.CFG, "edge", "revoke", "bob"], { stdio: "ignore" });
await wait("bob revoked", () => sb.status.state === "error");
if (sb.status.code !== "revoked") throw new Error("bob: " + JSON.stringify(sb.status));
if (!purges.some((p) => p.reason === "revoked" && p.removed > 0)) throw new Error("purges: " + JSON.stringify(purges));
if ((await b.count()) !== 0) throw new Error("bob still holds " + (await b.count()) + " documents");
await sb.stop();
const b2 = await Outpost.open("b2");
await refusedWith("an enrollment of a revoked identity", b2.enroll({ url, identity: "bob", code: codes.bob }), "unauthorized");
await b2.close();
await a.put("notes/3", { text: "after bob" });
// Write safety "replicated": resolves once the hub has the write; a write the
// hub refuses rejects with "rejected" (and why); with no replication to
// acknowledge it, "not_replicated" after the timeout, the write kept.
const r4 = await a.put("notes/4", { text: "safe" }, { safety: "replicated", timeoutMs: 20000 });
if (!r4 || r4.id !== "notes/4") throw new Error("replicated put: " + JSON.stringify(r4));
try {
  await a.put("secrets/2", { text: "no" }, { safety: "replicated", timeoutMs: 20000 });
  throw new Error("a refused replicated write resolved");
} catch (e) {
  if (e.code !== "rejected" || e.rejection?.code !== "write_denied" || !/stored locally/.test(e.message)) throw e;
}
if (!(await a.get("secrets/2"))) throw new Error("the refused write is not kept locally");
const lone = await Outpost.open("lone");
await refusedWith("no hub to acknowledge", lone.put("notes/l", { n: 1 }, { safety: "replicated", timeoutMs: 200 }), "not_replicated");
if (!(await lone.get("notes/l"))) throw new Error("the unreplicated write is not kept");
await refusedWith("a bad safety", lone.put("notes/l", {}, { safety: "sure" }), "invalid_argument");
await refusedWith("safety hub with no replication", lone.put("notes/h", {}, { safety: "hub" }), "offline");
if (await lone.get("notes/h")) throw new Error("a hub write wrote locally");
await lone.close();
// Development mode: a token identity.
const c = await Outpost.open("c");
const sc = c.sync({ url, identity: "carol", credential: "carol-token" });
await wait("carol live", () => sc.status.state === "live");
await wait("notes at carol", async () => (await c.get("notes/1"))?.text === "merged" && (await c.get("notes/3")));
await a.close();
await b.close();
await c.close();
console.log("ok");
`;

test("two databases replicate through a real hub", async (t) => {
  const hub = hubBinary();
  // Not skipped when missing: scripts/test.sh builds the hub before this step.
  assert.ok(hub, "no outpost-hub binary: run `cargo build -p outpost-hub` (or set OUTPOST_HUB)");
  const dir = mkdtempSync(join(tmpdir(), "outpost-pkg-sync-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sha = (s) => createHash("sha256").update(s).digest("hex");
  const codes = { alice: `alice-code-${process.pid}`, bob: `bob-code-${process.pid}` };
  const expires = Math.floor(Date.now() / 1000) + 3600;
  const enrolling = (name) =>
    `[[edge]]\nname = "${name}"\nenroll_code_sha256 = "${sha(codes[name])}"\nenroll_expires = ${expires}\ndatabase = "main"\nread = ["notes/"]\nwrite = ["notes/"]\n`;
  const token = (name) =>
    `[[edge]]\nname = "${name}"\ntoken_sha256 = "${sha(`${name}-token`)}"\ndatabase = "main"\nread = ["notes/"]\nwrite = ["notes/"]\n`;
  const cfg = join(dir, "hub.toml");
  writeFileSync(
    cfg,
    `data_dir = "./data"\n[dev]\ntokens = true\n[[database]]\nname = "main"\nnever_delete = ["Invoices"]\n[database.conflicts]\n"*" = "manual"\n${enrolling("alice")}${enrolling("bob")}${token("carol")}`,
  );
  const { addr, log: hubLog } = await startHub(t, hub, cfg);
  const script = join(dir, "client.mjs");
  writeFileSync(script, CLIENT);
  const flags = typeof globalThis.WebSocket === "function" ? [] : ["--experimental-websocket"];
  // Asynchronously: the hub's output pipes must keep draining meanwhile.
  const child = spawn(process.execPath, [...flags, "--no-warnings", script], {
    env: { ...process.env, PKG: pathToFileURL(join(root, "pkg-js/src/node.js")).href, HUB_URL: `ws://${addr}/sync`, CODES: JSON.stringify(codes), HUB: hub, CFG: cfg },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const killer = setTimeout(() => child.kill("SIGKILL"), 90_000);
  const [code] = await once(child, "exit");
  clearTimeout(killer);
  assert.equal(code, 0, `the client failed:\n${out}\nhub log:\n${hubLog()}`);
  assert.equal(out.trim().split("\n").pop(), "ok");
  // The hub redeemed each code for the key the edge made: its configuration
  // now holds the keys, and no code.
  const keys = JSON.parse(/^KEYS (.*)$/m.exec(out)[1]);
  const text = readFileSync(cfg, "utf8");
  for (const who of ["alice", "bob"]) assert.ok(text.includes(`pubkey = "${keys[who]}"`), `${who}'s key in the config:\n${text}`);
  assert.doesNotMatch(text, /enroll_code_sha256/);
});
