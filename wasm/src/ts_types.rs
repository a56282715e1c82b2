//! The TypeScript declarations of the `Outpost` class's option and result
//! objects (wasm-bindgen adds them to the generated `.d.ts`; the class's
//! methods are in `api.rs`).

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Metadata the database adds to every document it returns. */
export interface DocumentMetadata {
  /** The id, with its original case. */
  "@id": string;
  /** The collection, if the document has one. */
  "@collection"?: string;
  /** The change vector of this version (replication and concurrency checks). */
  "@change-vector": string;
  /** Position of this version in the changes feed of this database. */
  "@etag": number;
  /** When this version was written (ISO 8601). */
  "@last-modified": string;
  /** Set on tombstones (deleted documents, seen in the changes feed). */
  "@deleted"?: true;
  /** Set when concurrent versions of the document are in conflict. */
  "@conflicted"?: true;
  /** Set on documents produced by an index. */
  "@from-index"?: true;
}

/** A document as returned by reads: its body plus `@metadata`. */
export type OutpostDocument<T = Record<string, unknown>> = T & {
  "@metadata": DocumentMetadata;
};

/** The outcome of one write. */
export interface WriteResult {
  /** The document id as given. */
  id: string;
  /** The etag of the new version. */
  etag: number;
  /** The change vector of the new version. */
  changeVector: string;
  /** Whether the write was a delete (a tombstone was written). */
  deleted: boolean;
}

/** Options of `put`. */
export interface PutOptions {
  /** Collection of the document (default: `doc["@metadata"]["@collection"]`). */
  collection?: string;
  /**
   * Optimistic concurrency: a change vector the document must currently have,
   * or `null` for "must not exist". Omitted: no check. A failed check rejects
   * with code `"concurrency_conflict"` and writes nothing.
   */
  changeVector?: string | null;
  /**
   * This write's durability, instead of the database's (`open`'s
   * `durability`): `"relaxed"` resolves without waiting for the disk
   * (unless a strict write shares its commit), `"strict"` waits for it.
   */
  durability?: "strict" | "relaxed";
}

/** Options of `delete`. */
export interface DeleteOptions {
  /** As in `PutOptions`. */
  changeVector?: string | null;
  /** As in `PutOptions`. */
  durability?: "strict" | "relaxed";
}

/** Options of `transaction`. */
export interface TransactionOptions {
  /** The transaction's durability, as in `PutOptions`. */
  durability?: "strict" | "relaxed";
  /**
   * `false`: resolve to `{ written, etag }` (documents written, the last
   * etag) instead of one result per operation: a bulk load that does not
   * need them builds none.
   */
  results?: boolean;
}

/** One operation of `transaction`. */
export type TransactionOp =
  | { type: "put"; id: string; doc: Record<string, unknown>; collection?: string; changeVector?: string | null }
  | { type: "delete"; id: string; changeVector?: string | null };

/** Options of `scan`. */
export interface ScanOptions {
  /** Only ids starting with this prefix (case-insensitive). Default: all. */
  prefix?: string;
  /** Only ids after this one (paging: pass the last id of the previous page). */
  after?: string;
  /** At most this many documents. Default: no limit. */
  limit?: number;
  /**
   * Resolve to the ids (as written) instead of the documents: no body is
   * parsed or converted, much cheaper for listings.
   */
  keysOnly?: boolean;
}

/** Options of `changes`. */
export interface ChangesOptions {
  /** Only versions with an etag greater than this. Default: 0 (everything). */
  since?: number;
  /** At most this many versions. Default: no limit. */
  limit?: number;
}

/**
 * A page store supplied by the host (edge workers, Node, tests). Methods may
 * return promises. `commit` must apply all pages and the meta record or none;
 * commits arrive one at a time, in order; only the newest version of each page
 * needs to be kept. Buffers passed to `commit` are fresh copies.
 */
export interface PageStoreHost {
  /** The newest committed bytes of page `no` (4096 bytes), or undefined. */
  readPage(no: number): Promise<Uint8Array | undefined | null> | Uint8Array | undefined | null;
  /** The meta record of the newest commit, or undefined for a new database. */
  readMeta(): Promise<Uint8Array | undefined | null> | Uint8Array | undefined | null;
  /** Applies `pages` and the new meta record atomically. */
  commit(pages: Array<[number, Uint8Array]>, meta: Uint8Array, options: { durable: boolean }): Promise<void> | void;
  /** Resolves once every commit so far is durable. */
  sync?(): Promise<void> | void;
  /** Releases the store (the database was closed). */
  close?(): Promise<void> | void;
}

/** Options of `Outpost.open`. */
export interface OpenOptions {
  /** A page store supplied by the host (edge workers, Node); overrides `storage`. */
  store?: PageStoreHost;
  /**
   * Where pages live without `store`: `"indexeddb"` (the IndexedDB database
   * named like the Outpost database; the default where `indexedDB` exists),
   * `"opfs"` (the Origin Private File System: only in a dedicated worker,
   * e.g. through `openInWorker`; one opener at a time, a second gets
   * `"locked"`; elsewhere `"unsupported"`) or `"memory"` (the default
   * elsewhere, e.g. in Node).
   */
  storage?: "indexeddb" | "opfs" | "memory";
  /**
   * With IndexedDB: ask the browser to keep this origin's data under storage
   * pressure (`navigator.storage.persist()`). The browser may refuse.
   */
  persist?: boolean;
  /**
   * What a write waits for. `"strict"` (the default): its commit is on disk
   * before the write resolves (IndexedDB `durability: "strict"`).
   * `"relaxed"`: it resolves once committed and visible; the browser writes
   * it to disk soon after, and `close()` makes sure of it. A crash of the
   * machine (not of the tab or the browser) may lose the last relaxed writes,
   * never tear one; the next open may then report them lost (`storage_lost`
   * with reason `"rolled_back"`, when the storage witness saw them).
   */
  durability?: "strict" | "relaxed";
  /**
   * Page cache limit in bytes (at least 64 KiB). Default: on IndexedDB and OPFS, 32 MiB
   * per GiB of `navigator.deviceMemory`, between 32 and 256 MiB (64 MiB where
   * the browser does not report it); in memory or over a host store, 64 MiB.
   */
  cacheBytes?: number;
}

/** A collection and its number of live documents. */
export interface CollectionInfo {
  name: string;
  count: number;
}

/** Options of `conflicts`. */
export interface ConflictsOptions {
  /** Only ids after this one (paging: pass the last id of the previous page). */
  after?: string;
  /** At most this many documents. Default: no limit. */
  limit?: number;
}

/** One of the concurrent versions of a conflicted document. */
export interface ConflictVersion {
  /** Its change vector. */
  changeVector: string;
  /** When it was written (ISO 8601, the writer's clock). */
  lastModified: string;
  /** Whether this version is a deletion. */
  deleted: boolean;
  /** Its body; `null` for a deletion. */
  body: Record<string, unknown> | null;
}

/** A conflicted document: its concurrent versions, the one reads show first. */
export interface ConflictedDocument {
  id: string;
  collection?: string;
  /** At least two; `versions[0]` is the one `get` returns. */
  versions: ConflictVersion[];
}

/** A change the hub refused (replication), as recorded by this database. */
export interface Rejection {
  /** Document id. */
  id: string;
  /** Change vector of the refused version. */
  changeVector: string;
  /** Stable reason: `"write_denied"`, `"invalid_id"`, `"invalid_document"`, ... */
  code: string;
  /** The rule broken (for example the write prefixes). */
  rule: string;
  /** Explanation. */
  message: string;
}
"#;
