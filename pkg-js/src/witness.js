// The storage witness: a small record per IndexedDB database kept OUTSIDE
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

  constructor(storage, name) {
    this.#ls = storage;
    this.#key = PREFIX + name;
  }

  /** The record, or null (none, or unreadable: then it is replaced). */
  read() {
    try {
      const text = this.#ls.getItem(this.#key);
      if (text == null) return null;
      const w = JSON.parse(text);
      return w && w.v === 1 && typeof w.dbId === "string" ? w : null;
    } catch {
      return null;
    }
  }

  #write(w) {
    w.updated = Date.now();
    try {
      this.#ls.setItem(this.#key, JSON.stringify(w));
    } catch (e) {
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
    const w = this.read();
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
    let w = this.read();
    if (!w || w.dbId !== dbId) {
      this.reset(dbId, etag);
      w = this.read();
      if (!w) return;
    }
    if (etag > w.etag) w.etag = etag;
    if (writes.length > 0) {
      const byId = new Map(w.pending.map(([id, e]) => [String(id).toLowerCase(), [id, e]]));
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
    this.#write(w);
  }

  /** db.sync() started with this hub (no credential kept). */
  syncing(dbId, hub) {
    const w = this.read();
    if (!w || w.dbId !== dbId) return;
    w.hub = hub;
    this.#write(w);
  }

  /** The hub acknowledged this database's local writes up to etag `upto`. */
  acked(dbId, upto) {
    const w = this.read();
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
