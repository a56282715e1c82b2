// The page under test. On load it opens the database named by `?db=` (default
// "outpost-e2e") with `storage` from `?storage=` (default: IndexedDB, the
// package's default in a browser) and shows what is stored. The buttons write
// sample data and provoke an `invalid_id` error. A subscription shows the
// changes this tab sees (its own and other tabs' writes) in #live. The test
// drives the buttons and reads the DOM; `window.outpostE2E` gives it the open
// database and `changes`, the documents the subscription received.
import { Outpost, OutpostError } from "@outpost/db";

const params = new URLSearchParams(location.search);
const name = params.get("db") || "outpost-e2e";
const storage = params.get("storage") || undefined;
const $ = (id) => document.getElementById(id);

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

async function render(db) {
  $("count").textContent = String(await db.count());
  const cols = await db.collections();
  $("collections").textContent = JSON.stringify(cols);
  const rows = await db.scan({ prefix: "notes/" });
  $("notes").replaceChildren(
    ...rows.map((doc) => {
      const tr = document.createElement("tr");
      const m = doc["@metadata"];
      for (const v of [m["@id"], m["@collection"] ?? "", doc.title, m["@etag"]]) {
        const td = document.createElement("td");
        td.textContent = String(v);
        tr.append(td);
      }
      return tr;
    }),
  );
}

// The sample data: 20 notes in one transaction, one task by a single put.
async function writeSample(db) {
  await db.transaction(async (tx) => {
    for (let i = 1; i <= 20; i++) {
      const n = String(i).padStart(2, "0");
      tx.put(`notes/${n}`, { title: `Note ${n}`, n: i, tags: ["e2e", i % 2 ? "odd" : "even"] }, { collection: "Notes" });
    }
  });
  await db.put("tasks/1", { title: "Reload the page", done: false, at: new Date(0) }, { collection: "Tasks" });
}

async function main() {
  let db;
  try {
    db = await Outpost.open(name, storage ? { storage } : undefined);
  } catch (e) {
    setStatus("error", `open failed: ${e?.code ?? ""} ${e?.message ?? e}`);
    throw e;
  }
  const changes = [];
  window.outpostE2E = { db, Outpost, OutpostError, changes };
  db.subscribe({}, (docs) => {
    changes.push(...docs);
    const last = docs[docs.length - 1]["@metadata"];
    $("live").textContent = `${changes.length} (last: ${last["@id"]}${last["@deleted"] ? ", deleted" : ""})`;
  });
  $("db-name").textContent = name;
  $("storage").textContent = storage ?? "default (IndexedDB)";

  $("write").addEventListener("click", async () => {
    setStatus("busy", "writing…");
    try {
      await writeSample(db);
      await render(db);
      setStatus("ready", "written");
    } catch (e) {
      setStatus("error", `write failed: ${e?.code ?? ""} ${e?.message ?? e}`);
    }
  });
  $("bad").addEventListener("click", async () => {
    setStatus("busy", "putting an invalid id…");
    try {
      await db.put("", { nope: true });
      $("error-code").textContent = "(no error)";
    } catch (e) {
      const isOutpostError = e instanceof OutpostError && e instanceof Error;
      $("error-code").textContent = isOutpostError ? e.code : `not an OutpostError: ${e}`;
    }
    await render(db);
    setStatus("ready", "error shown");
  });

  await render(db);
  setStatus("ready", "ready");
}

main();
