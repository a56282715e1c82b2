// A page that opens nothing by itself: the storage-lost and crash tests drive
// the package through `window.lab` (the module, plus a few helpers that touch
// IndexedDB directly).
import { Outpost, OutpostError } from "@outpost/db";

/** Writes `n` pages of 4 KiB into the IndexedDB database `name` (not an Outpost database). */
function rawWrite(name, n) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => req.result.createObjectStore("s");
    req.onerror = () => reject(req.error);
    req.onsuccess = () => {
      const db = req.result;
      const tx = db.transaction(["s"], "readwrite", { durability: "strict" });
      for (let i = 0; i < n; i++) tx.objectStore("s").put(new Uint8Array(4096).fill(i % 251), i);
      tx.oncomplete = () => {
        db.close();
        resolve();
      };
      tx.onabort = () => reject(tx.error);
    };
  });
}

/** The storage witness of `name` as the package keeps it (localStorage). */
function witness(name) {
  const text = localStorage.getItem(`outpost:witness:${name}`);
  return text == null ? null : JSON.parse(text);
}

/** Opens `name`; resolves to `{ ok, ... }` or the error's code, message and storageLost facts. */
async function tryOpen(name, options) {
  try {
    const db = await Outpost.open(name, options);
    return { ok: true, db };
  } catch (e) {
    return { ok: false, isOutpostError: e instanceof OutpostError, code: e?.code, message: String(e?.message ?? e), storageLost: e?.storageLost ?? null };
  }
}

window.lab = { Outpost, OutpostError, rawWrite, witness, tryOpen };
document.title = "lab ready";
