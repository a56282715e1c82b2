// The storage witness (core.js keeps one per IndexedDB database).
//
// A small record per IndexedDB database kept OUTSIDE
// IndexedDB (in the origin's localStorage), so that a database the browser
// threw away and replaced by an empty one is recognised even when the browser
// says nothing (see docs/design.md, "IndexedDB page store", and issue 16).
//
// Chromium deletes an origin's whole IndexedDB when its LevelDB files are
// corrupt; localStorage lives in other files and survives. The witness of the
// database `name` is the localStorage item "outpost:witness:<name>":
//
//   { v: 1,
//     dbId,          // the database id the witness saw last
//     etag,          // the highest etag committed (written after the commit completed)
//     hub,           // { url, identity, database } of the last db.sync(), or null
//     ackedEtag,     // the highest local etag the hub acknowledged (push), or null
//     pending,       // [[id, etag], ...]: local writes not acknowledged by the hub,
//                    // one entry per id (its newest write), oldest first, at most MAX_PENDING
//     unlisted,      // writes beyond MAX_PENDING, not listed (0 if none)
//     unlistedUpto,  // the highest etag among them
//     lost,          // a loss found and reported but not yet recovered (its facts), or absent
//     updated }      // Date.now() of the last update
//
// Everything is written after the IndexedDB commit it describes completed
// (strict durability: on disk), so the witness may lag behind the database,
// never run ahead of it: a database behind its witness lost committed data.
// The credential of db.sync() is never stored.

import { OutpostError } from "./base.js";

/** Most unacknowledged write ids listed by the witness. */
export const MAX_PENDING = 200;
const PREFIX = "outpost:witness:";

/** The origin's localStorage when this scope has it and may use it, else undefined (web workers, Node, sandboxed frames). */
export function witnessStorage() {
  try {
    const ls = globalThis.localStorage;
    if (!ls || typeof ls.getItem !== "function") return undefined;
    ls.getItem(PREFIX); // throws where storage is blocked
    return ls;
  } catch {
    return undefined;
  }
}

export class Witness {
  #ls;
  #key;
  /**
   * The record as this witness last wrote or parsed it: `{ text, w, byId }`
   * (`byId`: `w.pending` by lowercase id, or null). A commit finds its text
   * still stored (no other tab wrote since) and skips the parse and the
   * rebuilding of the pending map: a commit's update cost 110–290 µs in
   * Chromium with 200 pending ids, most of it those two.
   */
  #kept = null;

  constructor(storage, name) {
    this.#ls = storage;
    this.#key = PREFIX + name;
  }

  /** The record, or null (none, or unreadable: then it is replaced). A fresh copy the caller may keep. */
  read() {
    try {
      return parseWitness(this.#ls.getItem(this.#key));
    } catch {
      return null;
    }
  }

  /** The record to update: the kept one while the stored text is what it was made from. */
  #current() {
    let text;
    try {
      text = this.#ls.getItem(this.#key);
    } catch {
      return null;
    }
    if (this.#kept !== null && this.#kept.text === text) return this.#kept.w;
    const w = parseWitness(text);
    this.#kept = w ? { text, w, byId: null } : null;
    return w;
  }

  #write(w, byId = null) {
    w.updated = Date.now();
    const text = JSON.stringify(w);
    try {
      this.#ls.setItem(this.#key, text);
      this.#kept = { text, w, byId };
    } catch (e) {
      this.#kept = null;
      // A full localStorage: the witness lags, the data is unaffected.
      console.warn(`Outpost: the storage witness could not be written: ${e?.message ?? e}`);
    }
  }

  /** Starts a fresh record for the database `dbId` at etag `etag` (keeps `extra`). */
  reset(dbId, etag, extra = {}) {
    this.#write({ v: 1, dbId, etag, hub: null, ackedEtag: null, pending: [], unlisted: 0, unlistedUpto: 0, ...extra });
  }

  /** Removes the record (the database was destroyed on purpose). */
  remove() {
    try {
      this.#ls.removeItem(this.#key);
    } catch {
      // Nothing to do.
    }
  }

  /** Marks a loss found at open and not recovered: later opens repeat its facts. */
  markLost(info) {
    const w = this.#current();
    if (!w) return;
    w.lost = info;
    this.#write(w);
  }

  /**
   * After a commit of this database (`dbId`) completed: the new last etag and,
   * for a local write (`writes`: `[[id, etag], ...]`), what the hub has not
   * acknowledged yet.
   */
  committed(dbId, etag, writes = []) {
    let w = this.#current();
    if (!w || w.dbId !== dbId) {
      this.reset(dbId, etag);
      w = this.#current();
      if (!w) return;
    }
    if (etag > w.etag) w.etag = etag;
    let byId = this.#kept?.w === w ? this.#kept.byId : null;
    if (writes.length > 0) {
      byId ??= new Map(w.pending.map(([id, e]) => [String(id).toLowerCase(), [id, e]]));
      for (const [id, e] of writes) {
        if (!(e > 0)) continue;
        const k = String(id).toLowerCase();
        if (byId.has(k)) {
          byId.delete(k); // re-added below, as the newest
          byId.set(k, [id, e]);
        } else if (byId.size < MAX_PENDING && w.unlisted === 0) {
          byId.set(k, [id, e]);
        } else {
          w.unlisted += 1;
          if (e > w.unlistedUpto) w.unlistedUpto = e;
        }
      }
      w.pending = [...byId.values()];
    }
    this.#write(w, byId);
  }

  /** db.sync() started with this hub (no credential kept). */
  syncing(dbId, hub) {
    const w = this.#current();
    if (!w || w.dbId !== dbId) return;
    w.hub = hub;
    this.#write(w, this.#kept?.byId ?? null);
  }

  /** The hub acknowledged this database's local writes up to etag `upto`. */
  acked(dbId, upto) {
    const w = this.#current();
    if (!w || w.dbId !== dbId || !(upto > 0)) return;
    if (w.ackedEtag == null || upto > w.ackedEtag) w.ackedEtag = upto;
    w.pending = w.pending.filter(([, e]) => e > w.ackedEtag);
    if (w.unlisted > 0 && w.unlistedUpto <= w.ackedEtag) {
      w.unlisted = 0;
      w.unlistedUpto = 0;
    }
    this.#write(w);
  }
}

/** A witness record from its stored text, or null (none, or unreadable). */
function parseWitness(text) {
  if (text == null) return null;
  try {
    const w = JSON.parse(text);
    return w && w.v === 1 && typeof w.dbId === "string" ? w : null;
  } catch {
    return null;
  }
}

/**
 * Compares what the open found with the witness and the browser's report.
 * Returns the facts of a loss, or null when the database is the one the
 * witness knew (or there is nothing to compare with).
 *
 * @param {string} name
 * @param {{created: boolean, dataLoss: string|null, dataLossMessage: string}|null} report
 * @param {object|null} w the witness record before this open
 * @param {{dbId: string, lastEtag: number}} current
 */
export function findLoss(name, report, w, current) {
  const browserSaid = report?.dataLoss != null && report.dataLoss !== "none";
  let reason = null;
  if (browserSaid) reason = "browser_reported";
  else if (w && w.dbId !== current.dbId) reason = "replaced";
  else if (w && current.lastEtag < w.etag) reason = "rolled_back";
  if (!reason) return null;
  const earlier = w?.lost;
  const dataLoss = browserSaid ? report.dataLoss : (earlier?.dataLoss ?? report?.dataLoss ?? null);
  const dataLossMessage = browserSaid ? report.dataLossMessage : (earlier?.dataLossMessage ?? "");
  const hub = w?.hub ?? null;
  const pending = w?.pending ?? [];
  const lost = w
    ? {
        // Local writes the hub never acknowledged (all local writes without a hub).
        count: pending.length,
        ids: pending.map(([id]) => id),
        truncated: (w.unlisted ?? 0) > 0,
        unlisted: w.unlisted ?? 0,
      }
    : null;
  const info = {
    name,
    reason: earlier && reason === "replaced" ? earlier.reason : reason,
    dataLoss,
    dataLossMessage,
    witness: w
      ? { dbId: w.dbId, lastEtag: w.etag, hub: hub && { ...hub }, hubAckedEtag: w.ackedEtag ?? null, updated: w.updated ?? null }
      : null,
    current: { dbId: current.dbId, lastEtag: current.lastEtag },
    synced: hub != null,
    lost,
    detectedAt: earlier?.detectedAt ?? Date.now(),
  };
  info.message = lossMessage(info);
  return info;
}

function lossMessage(info) {
  const what =
    info.reason === "browser_reported"
      ? `the browser discarded the IndexedDB data of database "${info.name}" (dataLoss "${info.dataLoss}"${info.dataLossMessage ? `: ${info.dataLossMessage}` : ""})`
      : info.reason === "rolled_back"
        ? `IndexedDB database "${info.name}" lost committed writes: it is at etag ${info.current.lastEtag}, the witness saw etag ${info.witness?.lastEtag}`
        : `IndexedDB database "${info.name}" was replaced by an empty one (it was database ${info.witness?.dbId}, it is now ${info.current.dbId})${info.dataLossMessage ? `; the browser said: ${info.dataLossMessage}` : ""}`;
  const parts = [what + "."];
  const l = info.lost;
  const n = l ? `${l.truncated ? "at least " : ""}${l.count + (l.unlisted ?? 0)}` : "an unknown number of";
  const list = l && l.count > 0 ? ` (${l.ids.slice(0, 10).join(", ")}${l.count > 10 || l.truncated ? ", ..." : ""})` : "";
  if (!info.witness) {
    parts.push("No witness of this database was found (no localStorage here, or it was cleared): what it held is unknown.");
  } else if (info.synced) {
    parts.push(
      `It synced with ${info.witness.hub.url}; the hub acknowledged its writes up to etag ${info.witness.hubAckedEtag ?? "none"}.`,
      `${n} local write(s) never acknowledged by the hub are lost${list}; everything else can be synced back from the hub.`,
    );
  } else {
    parts.push(`No hub was configured for this database: its data is gone (${n} document write(s) made here${list}).`);
  }
  parts.push(
    'Pass onStorageLost to Outpost.open to open it as a new, empty database (and resync it), or Outpost.destroy(name) to start over.',
  );
  return parts.join(" ");
}

/**
 * At open, under the lock: compares the opened database with its witness
 * and the browser's report. Returns the facts of a recovered loss (or
 * null); throws `storage_lost` when the app did not opt in to recovery
 * (the handle is closed; the witness remembers the loss, so every open
 * keeps reporting it until the app recovers or destroys the database).
 */
export async function checkStorage(name, raw, witness, recover) {
  const report = raw.__openReport ?? null;
  if (!witness && !(report?.dataLoss && report.dataLoss !== "none")) return null;
  const current = { dbId: raw.dbId, lastEtag: Number(raw.stats().last_etag ?? 0) };
  const before = witness?.read() ?? null;
  const info = findLoss(name, report, before, current);
  if (!info) {
    if (witness && (!before || before.etag !== current.lastEtag)) witness.committed(current.dbId, current.lastEtag);
    return null;
  }
  if (!recover) {
    witness?.markLost(info);
    // Nothing was written through this handle: closing it loses nothing.
    await Promise.resolve(raw.close()).catch(() => {});
    const e = new OutpostError(info.message, "storage_lost");
    e.storageLost = info;
    throw e;
  }
  // Recovery: this is a new, empty database (a new device for the hub);
  // the witness now follows it.
  witness?.reset(current.dbId, current.lastEtag, { recoveredFrom: { dbId: before?.dbId ?? null, at: Date.now() } });
  return info;
}
