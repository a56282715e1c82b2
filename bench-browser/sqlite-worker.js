// The worker of run.mjs's "sqlite-opfs" engine: the official SQLite build
// for the web (@sqlite.org/sqlite-wasm) on its `opfs-sahpool` VFS (OPFS
// synchronous access handles, a pool of them opened once), one table of id
// and JSON body, one transaction per write call (a batch: BEGIN ... COMMIT;
// a single write: one autocommit INSERT). Durability: synchronous FULL, so
// every commit flushes what it wrote (the VFS's xSync is the access
// handle's flush()); the journal mode is run.mjs's --sqlite-journal (WAL by
// default, with locking_mode EXCLUSIVE, which opfs-sahpool needs for WAL:
// the fastest durable mode measured here). The page (page.js) calls it with
// { id, op, args } messages and gets { id, result } or { id, error }.
import sqlite3InitModule from "@sqlite.org/sqlite-wasm";

let sqlite3;
let pool;
let db;
let stmts;

async function ensure() {
  if (!sqlite3) {
    sqlite3 = await sqlite3InitModule({ locateFile: (f) => new URL(f, self.location.href).href, print: () => {}, printErr: () => {} });
    pool = await sqlite3.installOpfsSAHPoolVfs({ name: "bench-sahpool", directory: "/sqlite-bench" });
  }
}

function prepare() {
  stmts = {
    put: db.prepare("INSERT OR REPLACE INTO docs (id, body) VALUES (?, ?)"),
    get: db.prepare("SELECT body FROM docs WHERE id = ?"),
    scan: db.prepare("SELECT body FROM docs WHERE id >= ? AND id < ? ORDER BY id"),
    keys: db.prepare("SELECT id FROM docs WHERE id >= ? AND id < ? ORDER BY id"),
  };
}

function finalize() {
  for (const s of Object.values(stmts ?? {})) s.finalize();
  stmts = undefined;
}

const ops = {
  async open(name, journal = "WAL") {
    await ensure();
    db = new pool.OpfsSAHPoolDb(`/${name}.db`);
    if (journal === "WAL") db.exec("PRAGMA locking_mode = EXCLUSIVE;");
    db.exec(`PRAGMA journal_mode = ${journal}; PRAGMA synchronous = FULL;`);
    const mode = db.selectValue("PRAGMA journal_mode");
    if (mode.toUpperCase() !== journal) throw new Error(`journal_mode ${journal} refused (got ${mode})`);
    db.exec("CREATE TABLE IF NOT EXISTS docs (id TEXT PRIMARY KEY, body TEXT NOT NULL)");
    prepare();
  },
  bulk(ids, docs) {
    db.exec("BEGIN");
    try {
      for (let k = 0; k < ids.length; k++) {
        stmts.put.bind([ids[k], JSON.stringify(docs[k])]).stepReset();
      }
      db.exec("COMMIT");
    } catch (e) {
      db.exec("ROLLBACK");
      throw e;
    }
  },
  putOne(id, doc) {
    stmts.put.bind([id, JSON.stringify(doc)]).stepReset();
  },
  get(id) {
    const s = stmts.get.bind([id]);
    const body = s.step() ? s.getString(0) : null;
    s.reset();
    return body == null ? null : JSON.parse(body);
  },
  scanPrefix(prefix) {
    const s = stmts.scan.bind([prefix, prefix + "\uffff"]);
    const out = [];
    while (s.step()) out.push(JSON.parse(s.getString(0)));
    s.reset();
    return out;
  },
  scanKeys(prefix) {
    const s = stmts.keys.bind([prefix, prefix + "\uffff"]);
    const out = [];
    while (s.step()) out.push(s.getString(0));
    s.reset();
    return out;
  },
  close() {
    finalize();
    db?.close();
    db = undefined;
  },
  async destroy(name) {
    await ensure();
    pool.unlink(`/${name}.db`);
  },
};

self.onmessage = async (e) => {
  const { id, op, args } = e.data;
  try {
    self.postMessage({ id, result: await ops[op](...args) });
  } catch (err) {
    self.postMessage({ id, error: String(err?.message ?? err) });
  }
};
