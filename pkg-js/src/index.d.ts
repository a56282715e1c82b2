// Types of the npm package. The shapes of documents, options and results are
// generated from the Rust bindings (dist/web/outpost_wasm.d.ts); this file
// declares the handwritten layer over them (src/core.js).

import type {
  ChangesOptions,
  CollectionInfo,
  DeleteOptions,
  OpenOptions,
  OutpostDocument,
  PageStoreHost,
  PutOptions,
  ScanOptions,
  TransactionOp,
  WriteResult,
} from "../dist/web/outpost_wasm.js";

export type {
  ChangesOptions,
  CollectionInfo,
  DeleteOptions,
  DocumentMetadata,
  OpenOptions,
  OutpostDocument,
  PageStoreHost,
  PutOptions,
  ScanOptions,
  TransactionOp,
  WriteResult,
} from "../dist/web/outpost_wasm.js";

/**
 * The error every Outpost operation rejects with. Branch on `code`, which is
 * stable: `"invalid_id"`, `"invalid_json"`, `"invalid_collection"`,
 * `"too_large"`, `"invalid_argument"`, `"invalid_change_vector"`,
 * `"concurrency_conflict"`, `"corrupt"`, `"closed"`, `"poisoned"`,
 * `"quota_exceeded"`, `"invalid_options"`, `"transaction_finished"`, `"other"`.
 *
 * ```js
 * try { await db.put("", {}); } catch (e) {
 *   if (e instanceof OutpostError && e.code === "invalid_id") { ... }
 * }
 * ```
 */
export class OutpostError extends Error {
  constructor(message: string, code: string);
  readonly name: "OutpostError";
  readonly code: string;
}

/**
 * What `subscribe` listens to: documents whose id starts with `prefix`, or
 * of collection `collection` (both case-insensitive), or everything (`{}`).
 */
export interface SubscribeFilter {
  prefix?: string;
  collection?: string;
}

/**
 * Receives changed documents in etag order: their bodies with `@metadata`;
 * deletes come as tombstones with `@metadata["@deleted"] === true`. A throw
 * or a rejected promise is reported with `console.error` and ignored.
 */
export type SubscribeCallback = (docs: OutpostDocument[]) => void | Promise<void>;

/** Collects the writes of `db.transaction(async (tx) => ...)`. */
export class Transaction {
  /** Adds a put; committed with the others when the callback resolves. */
  put(id: string, doc: Record<string, unknown>, options?: PutOptions): this;
  /** Adds a delete; committed with the others when the callback resolves. */
  delete(id: string, options?: DeleteOptions): this;
  /** Number of operations collected so far. */
  readonly size: number;
}

/**
 * An Outpost database.
 *
 * ```js
 * import { Outpost } from "@outpost/db";
 *
 * const db = await Outpost.open("clinic");
 * await db.put("patients/1", { name: "Ada" }, { collection: "Patients" });
 * const ada = await db.get("patients/1");
 * await db.transaction(async (tx) => {
 *   tx.put("visits/1", { patient: "patients/1" });
 *   tx.delete("drafts/1");
 * });
 * for (const p of await db.scan({ prefix: "patients/" })) console.log(p.name);
 * await db.close();
 * ```
 *
 * On IndexedDB in a browser, several tabs may open the same database: each
 * operation runs under the Web Lock `"outpost:" + name` after picking up what
 * other tabs committed, and writes are announced to the other tabs on the
 * BroadcastChannel `"outpost:" + name` (their subscriptions fire).
 */
export class Outpost {
  private constructor();
  /**
   * Opens (or creates) a database. Its pages are kept in the host's page store
   * if `options.store` is given (see `PageStoreHost`); else in the IndexedDB
   * database `name` where `indexedDB` exists (browsers, web workers); else in
   * memory (Node). `options.storage` picks explicitly.
   */
  static open(name: string, options?: OpenOptions): Promise<Outpost>;
  /**
   * Deletes the IndexedDB database `name` and everything in it (close every
   * handle on it first, in every tab). Does nothing where there is no IndexedDB.
   */
  static destroy(name: string): Promise<void>;
  /** The name the database was opened with. */
  readonly name: string;
  /** The id of this database (its identity in change vectors). */
  readonly dbId: string;
  /** Writes a document (creating or replacing it). */
  put(id: string, doc: Record<string, unknown>, options?: PutOptions): Promise<WriteResult>;
  /** Reads a document with its `@metadata`, or `null`. */
  get<T = Record<string, unknown>>(id: string): Promise<OutpostDocument<T> | null>;
  /** Deletes a document; `null` if it did not exist. */
  delete(id: string, options?: DeleteOptions): Promise<WriteResult | null>;
  /**
   * Applies several writes atomically (all or none), given as an array or
   * collected by a callback (if it throws, nothing is written). Resolves to
   * one result per operation (`null` for a delete of a missing document).
   */
  transaction(ops: TransactionOp[]): Promise<Array<WriteResult | null>>;
  transaction(callback: (tx: Transaction) => void | Promise<void>): Promise<Array<WriteResult | null>>;
  /** Live documents by id prefix, in id order, paged with `after` and `limit`. */
  scan(options?: ScanOptions): Promise<OutpostDocument[]>;
  /** Versions written after etag `since` (tombstones included), in etag order. */
  changes(options?: ChangesOptions): Promise<OutpostDocument[]>;
  /** Number of live documents. */
  count(): Promise<number>;
  /** Collections and their numbers of live documents. */
  collections(): Promise<CollectionInfo[]>;
  /**
   * Live change notifications: calls `callback` with the documents changed
   * after this call — by this handle or, on IndexedDB, by other tabs — that
   * match `filter`, in etag order (after the write has committed; never
   * synchronously). Returns a function that unsubscribes.
   *
   * ```js
   * const unsubscribe = db.subscribe({ prefix: "patients/" }, (docs) => {
   *   for (const d of docs) {
   *     if (d["@metadata"]["@deleted"]) remove(d["@metadata"]["@id"]);
   *     else show(d);
   *   }
   * });
   * // later
   * unsubscribe();
   * ```
   *
   * Throws an `OutpostError` with code `"invalid_argument"` for a bad filter
   * or callback, `"closed"` on a closed handle.
   */
  subscribe(filter: SubscribeFilter, callback: SubscribeCallback): () => void;
  subscribe(callback: SubscribeCallback): () => void;
  /**
   * Counters of the database and its page cache, as this handle last saw
   * them (synchronous, no cross-tab lock: with several tabs, `await
   * db.count()` first to include the other tabs' latest commits).
   */
  stats(): Record<string, unknown>;
  /** Waits for pending writes, closes the page store and ends subscriptions. */
  close(): Promise<void>;
}

/**
 * Instantiates the wasm module. `Outpost.open` does it on first use; call it
 * yourself only to load the `.wasm` from somewhere else (browser entry) — a
 * `WebAssembly.Module`, a URL, a `Response` or bytes.
 */
export function initOutpost(
  moduleOrPath?: WebAssembly.Module | URL | string | Response | BufferSource,
): Promise<void>;
