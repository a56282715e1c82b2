// The storage witness (src/witness.js) over a fake localStorage: what it
// records per write and per hub acknowledgement, its bound, and how a loss is
// recognised from it (the browser end of it: tests/e2e/storage-lost.test.mjs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_PENDING, Witness, findLoss } from "../src/witness.js";

function fakeStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
    map: m,
  };
}

test("records the last etag and the unacknowledged write ids; a hub ack drops them", () => {
  const w = new Witness(fakeStorage(), "db");
  assert.equal(w.read(), null);
  w.committed("A", 3, [["notes/1", 1], ["notes/2", 2], ["Notes/1", 3]]);
  let r = w.read();
  assert.equal(r.dbId, "A");
  assert.equal(r.etag, 3);
  // One entry per id (case-insensitive), its newest write last.
  assert.deepEqual(r.pending, [["notes/2", 2], ["Notes/1", 3]]);
  w.committed("A", 2); // an older etag never moves it back
  assert.equal(w.read().etag, 3);
  w.committed("A", 9); // received from the hub: only the etag moves
  assert.equal(w.read().etag, 9);
  w.syncing("A", { url: "ws://h/sync", identity: "alice", database: "main" });
  w.acked("A", 2);
  r = w.read();
  assert.equal(r.ackedEtag, 2);
  assert.deepEqual(r.pending, [["Notes/1", 3]]);
  w.acked("A", 1); // never backwards
  assert.equal(w.read().ackedEtag, 2);
  w.acked("B", 50); // another database's ack is ignored
  assert.equal(w.read().ackedEtag, 2);
  w.acked("A", 3);
  assert.deepEqual(w.read().pending, []);
});

test("bounded: beyond MAX_PENDING ids the writes are counted, not listed", () => {
  const w = new Witness(fakeStorage(), "db");
  const writes = Array.from({ length: MAX_PENDING + 50 }, (_, i) => [`d/${i}`, i + 1]);
  w.committed("A", writes.length, writes);
  let r = w.read();
  assert.equal(r.pending.length, MAX_PENDING);
  assert.equal(r.unlisted, 50);
  assert.equal(r.unlistedUpto, MAX_PENDING + 50);
  const loss = findLoss("db", { created: true, dataLoss: "total", dataLossMessage: "x" }, r, { dbId: "B", lastEtag: 0 });
  assert.equal(loss.lost.count, MAX_PENDING);
  assert.equal(loss.lost.truncated, true);
  assert.match(loss.message, new RegExp(`at least ${MAX_PENDING + 50}`));
  // Once the hub acknowledged past every unlisted write, the count is exact again.
  w.acked("A", MAX_PENDING + 50);
  r = w.read();
  assert.deepEqual([r.pending.length, r.unlisted], [0, 0]);
});

test("findLoss: browser report, another database id, a rolled-back etag; nothing for an intact database", () => {
  const w = new Witness(fakeStorage(), "db");
  w.committed("A", 10, [["a", 10]]);
  const rec = w.read();
  assert.equal(findLoss("db", null, rec, { dbId: "A", lastEtag: 10 }), null);
  assert.equal(findLoss("db", { created: false, dataLoss: null, dataLossMessage: "" }, rec, { dbId: "A", lastEtag: 12 }), null);
  assert.equal(findLoss("db", { created: true, dataLoss: "none", dataLossMessage: "" }, null, { dbId: "A", lastEtag: 0 }), null);

  const b = findLoss("db", { created: true, dataLoss: "total", dataLossMessage: "checksum mismatch" }, rec, { dbId: "B", lastEtag: 0 });
  assert.equal(b.reason, "browser_reported");
  assert.equal(b.witness.dbId, "A");
  assert.equal(b.synced, false);
  assert.deepEqual(b.lost, { count: 1, ids: ["a"], truncated: false, unlisted: 0 });
  assert.match(b.message, /No hub was configured for this database: its data is gone/);

  const r = findLoss("db", null, rec, { dbId: "B", lastEtag: 1 });
  assert.equal(r.reason, "replaced");
  const rb = findLoss("db", null, rec, { dbId: "A", lastEtag: 4 });
  assert.equal(rb.reason, "rolled_back");

  // A loss reported once is remembered with the browser's words.
  w.markLost(b);
  const again = findLoss("db", { created: false, dataLoss: null, dataLossMessage: "" }, w.read(), { dbId: "B", lastEtag: 0 });
  assert.equal(again.reason, "browser_reported");
  assert.equal(again.dataLossMessage, "checksum mismatch");
  assert.equal(again.detectedAt, b.detectedAt);

  // Without a witness, the browser's word alone.
  const bare = findLoss("db", { created: true, dataLoss: "total", dataLossMessage: "m" }, null, { dbId: "B", lastEtag: 0 });
  assert.equal(bare.witness, null);
  assert.equal(bare.lost, null);
  assert.match(bare.message, /No witness/);
});

test("with a hub: only the writes it never acknowledged are lost", () => {
  const w = new Witness(fakeStorage(), "db");
  w.committed("A", 5, [["a", 1], ["b", 2], ["c", 5]]);
  w.syncing("A", { url: "ws://h/sync", identity: "alice", database: "main" });
  w.acked("A", 2);
  const f = findLoss("db", { created: true, dataLoss: "total", dataLossMessage: "m" }, w.read(), { dbId: "B", lastEtag: 0 });
  assert.equal(f.synced, true);
  assert.equal(f.witness.hubAckedEtag, 2);
  assert.deepEqual(f.lost.ids, ["c"]);
  assert.match(f.message, /1 local write\(s\) never acknowledged by the hub are lost \(c\)/);
  assert.ok(!JSON.stringify(f).includes("credential"));
});

test("an unreadable witness is ignored and replaced", () => {
  const s = fakeStorage();
  s.setItem("outpost:witness:db", "{not json");
  const w = new Witness(s, "db");
  assert.equal(w.read(), null);
  w.committed("A", 1, [["x", 1]]);
  assert.equal(w.read().dbId, "A");
  w.remove();
  assert.equal(w.read(), null);
});

test("two handles on one storage (two tabs) see each other's writes; read() hands out a copy", () => {
  const s = fakeStorage();
  const a = new Witness(s, "db");
  const b = new Witness(s, "db");
  a.committed("A", 1, [["x", 1]]);
  b.committed("A", 2, [["y", 2]]); // b parses what a wrote
  a.committed("A", 3, [["z", 3]]); // a must not reuse its kept record: b wrote since
  assert.deepEqual(a.read().pending, [["x", 1], ["y", 2], ["z", 3]]);
  b.acked("A", 2);
  a.committed("A", 4, [["X", 4]]); // its pending map rebuilt from b's acknowledgement
  assert.deepEqual(b.read().pending, [["z", 3], ["X", 4]]);
  // A record read is the caller's: later updates do not change it.
  const before = a.read();
  a.committed("A", 5, [["w", 5]]);
  assert.equal(before.etag, 4);
  assert.equal(before.pending.length, 2);
  // Storage written behind the witness's back (another tab's reset) is read again.
  s.setItem("outpost:witness:db", JSON.stringify({ v: 1, dbId: "B", etag: 7, pending: [], unlisted: 0, unlistedUpto: 0 }));
  a.committed("B", 8, [["q", 8]]);
  assert.deepEqual([a.read().dbId, a.read().etag, a.read().pending], ["B", 8, [["q", 8]]]);
  // A write that fails (a full localStorage) leaves nothing kept: the next update reads the stored record.
  const full = { ...s, setItem: () => { throw new Error("QuotaExceededError"); } };
  const c = new Witness(full, "db");
  const warn = console.warn;
  console.warn = () => {};
  try {
    c.committed("B", 9, [["r", 9]]);
  } finally {
    console.warn = warn;
  }
  assert.deepEqual(c.read().pending, [["q", 8]]);
});
