// Edge keys in Node (no IndexedDB: kept in memory for the process):
// `db.identity()` makes one ECDSA P-256 key per (database, identity) and
// gives the same one back; `enroll` checks its options; a key session
// without a key ends with the status code "no_key"; an enrollment with a
// hub that cannot be reached rejects with "unreachable". Enrollment with a
// real hub: sync.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { Outpost, OutpostError } from "@outpost/db";

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

/** A TCP port nothing listens on (bound, then closed). */
async function deadPort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

test("identity makes one P-256 key per database and identity, and keeps it", async () => {
  const db = await Outpost.open("keys-identity");
  const a = await db.identity("alice");
  assert.equal(a.identity, "alice");
  assert.match(a.publicKey, /^p256:04[0-9a-f]{128}$/);
  assert.match(a.fingerprint, /^[0-9a-f]{16}$/);
  assert.equal(a.enrolled, false);
  assert.deepEqual(await db.identity("alice"), a, "the same key again");
  const b = await db.identity("bob");
  assert.notEqual(b.publicKey, a.publicKey);
  const other = await Outpost.open("keys-identity-2");
  assert.notEqual((await other.identity("alice")).publicKey, a.publicKey, "another database, another key");
  await rejects(db.identity(""), "invalid_argument");
  await rejects(db.identity(7), "invalid_argument");
  await other.close();
  await db.close();
});

test("enroll checks its options", async () => {
  const db = await Outpost.open("keys-enroll-options");
  const ok = { url: "ws://127.0.0.1:9/sync", identity: "alice", code: "c0de" };
  for (const bad of [
    undefined,
    "ws://x",
    {},
    { ...ok, code: undefined },
    { ...ok, code: "" },
    { ...ok, identity: 1 },
    { ...ok, url: "ftp://x" },
    { ...ok, credential: "t" },
    { ...ok, database: "" },
  ]) {
    await rejects(db.enroll(bad), "invalid_options");
  }
  await db.close();
  await rejects(db.enroll(ok), "closed");
});

test("a key session without a key: no_key; an enrollment with no hub: unreachable", { skip: typeof globalThis.WebSocket !== "function" && "no WebSocket in this Node" }, async () => {
  const db = await Outpost.open("keys-no-key");
  const port = await deadPort();
  const url = `ws://127.0.0.1:${port}/sync`;
  const sync = db.sync({ url, identity: "nobody" });
  const deadline = Date.now() + 10_000;
  while (sync.status.state !== "error") {
    assert.ok(Date.now() < deadline, JSON.stringify(sync.status));
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(sync.status.code, "no_key");
  assert.match(sync.status.message, /enroll/);
  await sync.stop();

  const e = await rejects(db.enroll({ url, identity: "nobody", code: "abc" }), "unreachable");
  assert.match(e.message, new RegExp(`127.0.0.1:${port}`));
  // The key was made for the enrollment, not enrolled.
  const id = await db.identity("nobody");
  assert.equal(id.enrolled, false);
  // Another sync may start once the enrollment is over.
  await db.sync({ url, identity: "nobody" }).stop();
  await db.close();
});
