// A page that opens nothing by itself: the storage-lost and crash tests drive
// the package through `window.lab` (the module, plus a few helpers that touch
// IndexedDB directly; the index examples for indexes.test.mjs and
// hub-indexes.test.mjs).
import { Outpost, OutpostError, openInWorker } from "@outpost/db";
// The index examples, the same module files the Node tests load.
import * as mortgage from "../../../examples/indexes/mortgage.mjs";
import * as carts from "../../../examples/indexes/carts.mjs";
import * as clinic from "../../../examples/indexes/clinic.mjs";

/**
 * The storage bucket generation `g` of the Outpost database `name` lives in,
 * where the browser has storage buckets (the naming of
 * crate/src/store/idb/place.rs: "outpost-" + the first 16 bytes of
 * SHA-256(name) in hex + "-" + g), else null.
 */
async function bucketOf(name, g = 1) {
  if (!navigator.storageBuckets) return null;
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(name)));
  const hex = [...h.slice(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `outpost-${hex}-${g}`;
}

/** The storage buckets of this origin. */
async function buckets() {
  return navigator.storageBuckets ? navigator.storageBuckets.keys() : [];
}

/**
 * Writes `n` pages of 4 KiB into the IndexedDB database `name` (not an Outpost
 * database), in the storage bucket `bucket` if given (else the default storage).
 */
async function rawWrite(name, n, bucket) {
  const factory = bucket ? (await navigator.storageBuckets.open(bucket, { durability: "strict" })).indexedDB : indexedDB;
  return new Promise((resolve, reject) => {
    const req = factory.open(name, 1);
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

/** A dedicated worker running the engine (app/worker.js), for worker.test.mjs. */
function worker() {
  return new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
}

/** The same script as a SharedWorker: one engine for every tab that connects (worker.test.mjs). */
function sharedWorker() {
  return new SharedWorker(new URL("./worker.js", import.meta.url), { type: "module", name: "outpost" });
}

window.lab = { Outpost, OutpostError, openInWorker, worker, sharedWorker, rawWrite, witness, tryOpen, bucketOf, buckets, indexes: { mortgage, carts, clinic } };
document.title = "lab ready";
