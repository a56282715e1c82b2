// Write safety "hub" in Node, against a real hub process over a real
// WebSocket (target/{debug,release}/outpost-hub or $OUTPOST_HUB; token
// identities, the hub's development mode):
// - a lottery: 12 edges race to put "lottery/winner" expecting "missing";
//   exactly one resolves, every other rejects with "conflict" naming the
//   winner's change vector, every edge converges on the same winner, and the
//   losers wrote nothing (their database holds the pulled winner alone);
// - a username reservation through `writeAtHub` (name and profile in one
//   write): a second claim conflicts and writes nothing, a stale change
//   vector conflicts, a delete frees the name for another claim;
// - a refusal (outside the edge's write prefixes: "write_denied", with
//   `error.rejection`), bad arguments ("invalid_argument"), a timeout that
//   says the hub may have applied the write (it did: it arrives);
// - no replication, or the hub down: "offline" at once, nothing written.
// Node before 22 has no global WebSocket: the edges run in a child process
// with --experimental-websocket.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { once } from "node:events";
import { hubBinary, startHub } from "./hub-proc.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const N = 12;

// Runs in a child process; prints "ok" at the end, "KILL_HUB" when the
// parent must stop the hub (then waits for "killed" on stdin).
const CLIENT = `
const { Outpost, OutpostError } = await import(process.env.PKG);
const url = process.env.HUB_URL;
const N = ${N};
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
const rejectsWith = async (what, p, code) => {
  try {
    await p;
  } catch (e) {
    check(e instanceof OutpostError, what + ": an OutpostError, got " + e);
    if (e.code !== code) throw new Error(what + ": expected " + code + ", got " + e.code + " " + e.message);
    return e;
  }
  throw new Error(what + ": not rejected");
};
const hub = { safety: "hub", timeoutMs: 60000 };

const dbs = [];
const syncs = [];
for (let i = 0; i < N; i++) {
  const db = await Outpost.open("p" + i);
  dbs.push(db);
  syncs.push(db.sync({ url, identity: "p" + i, credential: "p" + i + "-token" }));
}
for (let i = 0; i < N; i++) await wait("p" + i + " live", () => syncs[i].status.state === "live");

// ------------------------------------------------------------- lottery ---
const race = await Promise.allSettled(
  dbs.map((db, i) => db.put("lottery/winner", { winner: "p" + i }, { ...hub, expect: "missing" })),
);
const won = race.map((r, i) => [r, i]).filter(([r]) => r.status === "fulfilled");
eq(won.length, 1, "exactly one winner");
const [[{ value: result }, w]] = won;
eq(result.id, "lottery/winner", "the winner's result names the document");
check(typeof result.changeVector === "string" && result.changeVector.length > 0, "the winner's change vector");
for (const [r, i] of race.map((r, i) => [r, i])) {
  if (i === w) continue;
  const e = r.reason;
  check(e instanceof OutpostError, "p" + i + ": an OutpostError, got " + e);
  eq(e.code, "conflict", "p" + i + " lost with a conflict (" + e.message + ")");
  eq(e.id, "lottery/winner", "p" + i + ": the conflict names the document");
  eq(e.current, result.changeVector, "p" + i + ": the conflict names the winner's version");
  check(/nothing was written/.test(e.message), e.message);
}
// The winner holds it when its put resolves (it pulled it).
const mine = await dbs[w].get("lottery/winner");
eq(mine?.winner, "p" + w, "the winner holds its document");
eq(mine["@metadata"]["@change-vector"], result.changeVector, "the winner holds the hub's version");
for (let i = 0; i < N; i++) {
  await wait("p" + i + " sees the winner", async () => (await dbs[i].get("lottery/winner"))?.["@metadata"]["@change-vector"] === result.changeVector);
  eq((await dbs[i].get("lottery/winner")).winner, "p" + w, "p" + i + " converged on the winner");
  // Nothing written by the losers: one version in the database, as pulled.
  eq((await dbs[i].changes({ since: 0 })).length, 1, "p" + i + ": one document");
  eq(Number(dbs[i].stats().last_etag), 1, "p" + i + ": only the winner, as pulled");
  eq((await dbs[i].conflicts()).length, 0, "p" + i + ": no conflict");
}

// ------------------------------------------------- username reservation ---
const [alice, bob] = [dbs[0], dbs[1]];
const claim = (name, who) => [
  { type: "put", id: "users/" + name, doc: { owner: who }, expect: "missing" },
  { type: "put", id: "profiles/" + who, doc: { name }, expect: "missing" },
];
const claimed = await alice.writeAtHub(claim("ada", "alice"), { timeoutMs: 60000 });
eq(claimed.map((r) => r.id), ["users/ada", "profiles/alice"], "one result per document");
const cv1 = claimed[0].changeVector;
eq((await alice.get("users/ada"))?.["@metadata"]["@change-vector"], cv1, "alice holds her claim when it resolves");
eq((await alice.get("profiles/alice"))?.name, "ada", "and her profile");
// bob's claim of the same name (another case) conflicts: nothing written.
const taken = await rejectsWith("bob claims ADA", bob.writeAtHub(claim("ADA", "bob"), { timeoutMs: 60000 }), "conflict");
eq(taken.current, cv1, "the conflict names alice's version");
check(/nothing was written/.test(taken.message), taken.message);
await wait("bob sees alice's claim", async () => (await bob.get("users/ada"))?.owner === "alice");
eq(await bob.get("profiles/bob"), null, "nothing of bob's claim was written");
await bob.writeAtHub(claim("bob", "bob"), { timeoutMs: 60000 });
eq((await bob.get("users/bob"))?.owner, "bob", "bob claimed another name");
// A stale change vector conflicts.
const v2 = await alice.put("users/ada", { owner: "alice", note: "v2" }, { ...hub, expect: cv1 });
check(v2.changeVector !== cv1 && v2.changeVector.length > 0, "a new version");
await wait("bob sees v2", async () => (await bob.get("users/ada"))?.note === "v2");
const stale = await rejectsWith("a stale change vector", bob.put("users/ada", { owner: "bob" }, { ...hub, expect: cv1 }), "conflict");
eq(stale.current, v2.changeVector, "the conflict names the current version");
eq((await bob.get("users/ada")).owner, "alice", "nothing written by the stale claim");
// A delete (expecting the current version) frees the name; bob claims it.
const del = await alice.delete("users/ada", { ...hub, expect: v2.changeVector });
eq(del.id, "users/ada", "the delete's result");
eq(await alice.get("users/ada"), null, "alice holds the deletion when it resolves");
await wait("bob sees the deletion", async () => (await bob.get("users/ada")) === null);
await bob.put("users/ada", { owner: "bob" }, { ...hub, expect: "missing" });
await wait("alice sees bob's claim", async () => (await alice.get("users/ada"))?.owner === "bob");

// ------------------------------------------- refusals and bad arguments ---
const before = Number(dbs[2].stats().last_etag);
const denied = await rejectsWith("outside the write prefixes", dbs[2].put("secrets/x", { a: 1 }, hub), "write_denied");
eq(denied.rejection?.code, "write_denied", "error.rejection.code");
eq(denied.rejection?.id, "secrets/x", "error.rejection.id");
check(typeof denied.rejection?.message === "string" && denied.rejection.message.length > 0, "error.rejection.message");
eq(await dbs[2].get("secrets/x"), null, "nothing written locally");
await rejectsWith("expect of the wrong type", dbs[2].put("lottery/x", {}, { ...hub, expect: 5 }), "invalid_argument");
await rejectsWith("expect not a change vector", dbs[2].put("lottery/x", {}, { ...hub, expect: "nonsense" }), "invalid_argument");
await rejectsWith("no operations", dbs[2].writeAtHub([]), "invalid_argument");
await rejectsWith("too many operations", dbs[2].writeAtHub(Array.from({ length: 65 }, (_, i) => ({ type: "put", id: "lottery/" + i, doc: {} }))), "invalid_argument");
await rejectsWith("an unknown option", dbs[2].put("lottery/x", {}, { ...hub, changeVector: null }), "invalid_options");
await rejectsWith("expect with safety local", dbs[2].put("lottery/x", {}, { expect: "missing" }), "invalid_argument");
eq(await dbs[2].get("lottery/x"), null, "nothing written by the refused writes");
eq((await dbs[2].changes({ since: before })).filter((d) => !["users/", "profiles/"].some((p) => d["@metadata"]["@id"].startsWith(p))).length, 0, "no local commit but what was pulled");
// No answer in time: "timeout" says the hub may have applied it (it did).
const late = await rejectsWith("timeout", dbs[3].put("lottery/late", { n: 1 }, { safety: "hub", timeoutMs: 0 }), "timeout");
check(/may have applied/.test(late.message), late.message);
await wait("the late write arrives", async () => (await dbs[3].get("lottery/late"))?.n === 1);

// ---------------------------------------- a key session (signed writes) ---
const k = await Outpost.open("k");
await k.enroll({ url, identity: "k", code: process.env.K_CODE });
const sk = k.sync({ url, identity: "k" });
await wait("k live", () => sk.status.state === "live");
const k1 = await k.put("users/k", { owner: "k" }, { ...hub, expect: "missing" });
const k2 = await rejectsWith("k claims again", k.put("users/k", { owner: "k" }, { ...hub, expect: "missing" }), "conflict");
eq(k2.current, k1.changeVector, "the signed write's conflict names its version");
const k3 = await k.put("users/k", { owner: "k", v: 3 }, { ...hub, expect: k1.changeVector });
eq((await k.get("users/k"))?.["@metadata"]["@change-vector"], k3.changeVector, "k holds its third write");
await rejectsWith("k claims once more", k.put("users/k", { owner: "k" }, { ...hub, expect: "missing" }), "conflict");
// Signed writes between pushes of local writes (signed batches).
for (let i = 0; i < 3; i++) {
  await k.put("users/local-" + i, { i }, { safety: "replicated", timeoutMs: 20000 });
  const w = await k.put("users/kk-" + i, { i }, { ...hub, expect: "missing" });
  await rejectsWith("k again " + i, k.put("users/kk-" + i, { i }, { ...hub, expect: "missing" }), "conflict");
  eq((await k.get("users/kk-" + i))?.["@metadata"]["@change-vector"], w.changeVector, "k holds kk-" + i);
}
eq(sk.status.state, "live", "the session stays up across signed writes");
await sk.stop();

// ------------------------------------------------------------ offline ---
const lone = await Outpost.open("lone");
// "offline", not "timeout": it did not wait for an answer.
await rejectsWith("no replication", lone.put("lottery/l", {}, hub), "offline");
eq(Number(lone.stats().last_etag), 0, "nothing written without replication");
// The hub goes down: "offline" fast, nothing written.
console.log("KILL_HUB");
await new Promise((r) => process.stdin.once("data", r));
process.stdin.destroy();
await wait("p4 offline", () => syncs[4].status.state !== "live");
const etag4 = Number(dbs[4].stats().last_etag);
const off = await rejectsWith("hub down", dbs[4].put("lottery/down", { a: 1 }, { ...hub, expect: "missing" }), "offline");
check(/nothing was written/.test(off.message), off.message);
eq(await dbs[4].get("lottery/down"), null, "nothing written while the hub is down");
eq(Number(dbs[4].stats().last_etag), etag4, "no local commit while the hub is down");
for (const db of [...dbs, lone, k]) await db.close();
console.log("ok");
`;

test("write safety hub: a lottery, a username reservation, refusals and offline against a real hub", async (t) => {
  const hub = hubBinary();
  assert.ok(hub, "no outpost-hub binary: run `cargo build -p outpost-hub` (or set OUTPOST_HUB)");
  const dir = mkdtempSync(join(tmpdir(), "outpost-pkg-hub-safety-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sha = (s) => createHash("sha256").update(s).digest("hex");
  let edges = "";
  for (let i = 0; i < N; i++) {
    edges += `[[edge]]\nname = "p${i}"\ntoken_sha256 = "${sha(`p${i}-token`)}"\ndatabase = "main"\nread = ["lottery/", "users/", "profiles/"]\nwrite = ["lottery/", "users/", "profiles/"]\n`;
  }
  const kCode = `k-code-${process.pid}`;
  edges += `[[edge]]\nname = "k"\nenroll_code_sha256 = "${sha(kCode)}"\nenroll_expires = ${Math.floor(Date.now() / 1000) + 3600}\ndatabase = "main"\nread = ["users/"]\nwrite = ["users/"]\n`;
  const cfg = join(dir, "hub.toml");
  writeFileSync(cfg, `data_dir = "./data"\n[dev]\ntokens = true\n[[database]]\nname = "main"\n${edges}`);
  const { addr, log: hubLog, stop: stopHub } = await startHub(t, hub, cfg);
  const script = join(dir, "client.mjs");
  writeFileSync(script, CLIENT);
  const flags = typeof globalThis.WebSocket === "function" ? [] : ["--experimental-websocket"];
  const child = spawn(process.execPath, [...flags, "--no-warnings", script], {
    env: { ...process.env, PKG: pathToFileURL(join(root, "pkg-js/src/node.js")).href, HUB_URL: `ws://${addr}/sync`, K_CODE: kCode },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let killed = false;
  child.stdout.on("data", (d) => {
    out += d;
    if (!killed && /^KILL_HUB$/m.test(out)) {
      killed = true;
      stopHub().then(() => child.stdin.end("killed\n"));
    }
  });
  child.stderr.on("data", (d) => (out += d));
  const killer = setTimeout(() => child.kill("SIGKILL"), 180_000);
  const [code] = await once(child, "exit");
  clearTimeout(killer);
  assert.equal(code, 0, `the client failed:\n${out}\nhub log:\n${hubLog().slice(-20000)}`);
  assert.ok(killed, "the hub was stopped for the offline check");
  assert.equal(out.trim().split("\n").pop(), "ok");
});

// A mixed lottery: 10 edges of this package (the browser's code, in Node)
// and 10 native edges (`client/examples/hub_claim`, the Rust client) race
// for one winner document with safety "hub". Exactly one of the 20 wins,
// every other gets "conflict", and all 20 converge on the same version.
const MIXED_JS = `
const { Outpost, OutpostError } = await import(process.env.PKG);
const url = process.env.HUB_URL;
const wait = async (what, f, ms = 30000) => {
  const t = Date.now();
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() - t > ms) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 50));
  }
};
const dbs = [], syncs = [];
for (let i = 0; i < 10; i++) {
  const db = await Outpost.open("j" + i);
  dbs.push(db);
  syncs.push(db.sync({ url, identity: "j" + i, credential: "j" + i + "-token" }));
}
for (let i = 0; i < 10; i++) await wait("j" + i + " live", () => syncs[i].status.state === "live");
console.log(JSON.stringify({ state: "live" }));
await new Promise((r) => process.stdin.once("data", r));
const race = await Promise.allSettled(
  dbs.map((db, i) => db.put("lottery/winner", { winner: "j" + i }, { safety: "hub", expect: "missing", timeoutMs: 60000 })),
);
for (const r of race) {
  if (r.status === "fulfilled") console.log(JSON.stringify({ state: "done", code: "applied", current: r.value.changeVector }));
  else console.log(JSON.stringify({ state: "done", code: r.reason?.code ?? String(r.reason), current: r.reason?.current ?? "" }));
}
for (let i = 0; i < 10; i++) {
  const d = await wait("j" + i + " holds the winner", () => dbs[i].get("lottery/winner"));
  console.log(JSON.stringify({ state: "converged", body: { winner: d.winner }, changeVector: d["@metadata"]["@change-vector"] }));
}
for (const db of dbs) await db.close();
process.stdin.destroy();
`;

test("write safety hub: 10 JS edges and 10 native edges race for one winner", async (t) => {
  const hub = hubBinary();
  assert.ok(hub, "no outpost-hub binary: run `cargo build -p outpost-hub` (or set OUTPOST_HUB)");
  const claimer = join(dirname(hub), "examples", "hub_claim");
  assert.ok(
    existsSync(claimer),
    `no native racer at ${claimer}: run \`cargo build -p outpost-client --example hub_claim\` (cargo test --workspace builds it)`,
  );
  const dir = mkdtempSync(join(tmpdir(), "outpost-pkg-mixed-lottery-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sha = (s) => createHash("sha256").update(s).digest("hex");
  const run = (args) =>
    new Promise((res, rej) => {
      const p = spawn(claimer, args, { stdio: ["ignore", "pipe", "pipe"] });
      let o = "";
      p.stdout.on("data", (d) => (o += d));
      p.stderr.on("data", (d) => (o += d));
      p.on("exit", (c) => (c === 0 ? res(o.trim()) : rej(new Error(o))));
    });
  let edges = "";
  for (let i = 0; i < 10; i++) {
    const pub = await run(["--pubkey", join(dir, `n${i}.key`)]);
    edges += `[[edge]]\nname = "n${i}"\npubkey = "${pub}"\ndatabase = "main"\nread = ["lottery/"]\nwrite = ["lottery/"]\n`;
    edges += `[[edge]]\nname = "j${i}"\ntoken_sha256 = "${sha(`j${i}-token`)}"\ndatabase = "main"\nread = ["lottery/"]\nwrite = ["lottery/"]\n`;
  }
  const cfg = join(dir, "hub.toml");
  writeFileSync(cfg, `data_dir = "./data"\n[dev]\ntokens = true\n[[database]]\nname = "main"\n${edges}`);
  const { addr } = await startHub(t, hub, cfg);
  const url = `ws://${addr}/sync`;
  // Every racer prints JSON lines: live, then done (its outcome), then
  // converged (the version it holds).
  const racers = [];
  const racer = (p, who) => {
    const r = { p, who, lines: [], text: "" };
    p.stdout.on("data", (d) => {
      r.text += d;
      const parts = r.text.split("\n");
      r.text = parts.pop();
      for (const l of parts) if (l.trim()) r.lines.push(JSON.parse(l));
    });
    p.stderr.on("data", (d) => (r.err = (r.err ?? "") + d));
    t.after(() => p.kill("SIGKILL"));
    racers.push(r);
    return r;
  };
  for (let i = 0; i < 10; i++) {
    racer(
      spawn(claimer, [url, `n${i}`, join(dir, `n${i}.key`), "lottery/winner", JSON.stringify({ winner: `n${i}` })], {
        stdio: ["pipe", "pipe", "pipe"],
      }),
      `n${i}`,
    );
  }
  const script = join(dir, "mixed.mjs");
  writeFileSync(script, MIXED_JS);
  const flags = typeof globalThis.WebSocket === "function" ? [] : ["--experimental-websocket"];
  const js = racer(
    spawn(process.execPath, [...flags, "--no-warnings", script], {
      env: { ...process.env, PKG: pathToFileURL(join(root, "pkg-js/src/node.js")).href, HUB_URL: url },
      stdio: ["pipe", "pipe", "pipe"],
    }),
    "js",
  );
  const waitAll = async (what, pred, ms = 90_000) => {
    const t0 = Date.now();
    while (!racers.every(pred)) {
      const dead = racers.find((r) => r.p.exitCode !== null && r.p.exitCode !== 0);
      assert.ok(!dead, `${dead?.who} failed: ${dead?.err}`);
      assert.ok(Date.now() - t0 < ms, `${what}: ${JSON.stringify(racers.map((r) => [r.who, r.lines, r.err]))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await waitAll("every racer live", (r) => r.lines.some((l) => l.state === "live"));
  // Go: all at once.
  for (const r of racers) r.p.stdin.write("go\n");
  const count = (r, state) => r.lines.filter((l) => l.state === state).length;
  await waitAll("every racer converged", (r) => count(r, "converged") === (r === js ? 10 : 1));
  const done = racers.flatMap((r) => r.lines.filter((l) => l.state === "done").map((l) => ({ ...l, who: r.who })));
  assert.equal(done.length, 20, JSON.stringify(done));
  const won = done.filter((d) => d.code === "applied");
  assert.equal(won.length, 1, `exactly one winner of 20: ${JSON.stringify(done)}`);
  const lost = done.filter((d) => d.code !== "applied");
  assert.ok(lost.every((d) => d.code === "conflict"), `every other lost with a conflict: ${JSON.stringify(lost)}`);
  const converged = racers.flatMap((r) => r.lines.filter((l) => l.state === "converged"));
  assert.equal(converged.length, 20);
  const cvs = new Set(converged.map((c) => c.changeVector));
  const winners = new Set(converged.map((c) => c.body.winner));
  assert.equal(cvs.size, 1, `one version everywhere: ${[...cvs]}`);
  assert.equal(winners.size, 1, `one winner everywhere: ${[...winners]}`);
  assert.ok(lost.every((d) => d.current === [...cvs][0]), "each conflict names the winning version");
  // The winner (native or JS) is the one whose claim applied.
  const w = [...winners][0];
  assert.ok(w.startsWith("n") || w.startsWith("j"), w);
});
