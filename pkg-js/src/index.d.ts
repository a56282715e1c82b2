// Types of the npm package. The shapes of documents, options and results are
// generated from the Rust bindings (dist/web/outpost_wasm.d.ts); this file
// declares the handwritten layer over them (src/core.js).

import type {
  ChangesOptions,
  CollectionInfo,
  ConflictedDocument,
  ConflictsOptions,
  DeleteOptions,
  OpenOptions,
  OutpostDocument,
  PageStoreHost,
  PutOptions,
  Rejection,
  ScanOptions,
  TransactionOp,
  TransactionOptions,
  WriteResult,
} from "../dist/web/outpost_wasm.js";

export type {
  ChangesOptions,
  CollectionInfo,
  ConflictedDocument,
  ConflictsOptions,
  ConflictVersion,
  DeleteOptions,
  DocumentMetadata,
  OpenOptions,
  OutpostDocument,
  PageStoreHost,
  PutOptions,
  Rejection,
  ScanOptions,
  TransactionOp,
  TransactionOptions,
  WriteResult,
} from "../dist/web/outpost_wasm.js";

/**
 * Every `code` an `OutpostError` can carry. Stable: branch on these, never on
 * messages. wasm/tests/error_codes.rs checks that this union lists every code
 * the engine (`Error::code`, `OpenError::code`, `StoreError::code`), the
 * bindings (wasm/src) and src/core.js emit, and nothing else.
 *
 * - input: `"invalid_id"`, `"invalid_json"`, `"invalid_collection"`,
 *   `"invalid_change_vector"`, `"too_large"`, `"invalid_argument"`,
 *   `"invalid_options"` (an unknown or bad option);
 * - writes: `"concurrency_conflict"` (an `expectedChangeVector` that did not
 *   match), `"transaction_finished"` (a `tx.put` after the callback returned);
 * - the database: `"closed"`, `"poisoned"` (a failed write; open it again),
 *   `"panic"` (an operation panicked; open it again), `"corrupt"`,
 *   `"unsupported"` (an unknown format, or no WebSocket for `sync`),
 *   `"not_found"` (nothing to open read-only), `"storage_lost"` (the browser
 *   threw the database away: `storageLost` holds the facts);
 * - storage: `"quota_exceeded"`, `"io"`, `"locked"`, `"read_only"`,
 *   `"page_not_found"`, `"invalid_commit"`, `"other"`;
 * - sync: `"already_syncing"` (`db.sync` or `db.enroll` while a sync or an
 *   enrollment runs), `"no_key"` (`db.sync` without a credential in a
 *   browser that holds no key for the identity: enroll first; a sync status
 *   code), `"unreachable"` (`db.enroll` could not open a session with the
 *   hub); `db.enroll` also rejects with the hub's refusal (`SyncErrorCode`);
 * - storage caps and the hub's causality rules (a write that would store a
 *   document no reader could take back): `"too_many_versions"`,
 *   `"document_too_large"`, `"change_vector_too_large"`,
 *   `"forged_change_vector"`, `"unseen_version"`, `"batch_sequence"` (a
 *   signed batch whose place in its edge's chain was taken: a hub's);
 * - `"purged"`: a change of a document the hub purged (a subject purge,
 *   the right to be forgotten): its id is never taken back; this edge is
 *   ordered to erase it (a `purge` event follows);
 * - `"delete_forbidden"`: a delete (or a change of collection) of a document
 *   of a collection the hub guards (`never_delete`: invoices are cancelled,
 *   payments refunded); kept by the edge from its first session on, so it
 *   is refused offline too, and nothing of the transaction is written.
 */
/**
 * How safe a write must be before `put` / `delete` resolve:
 * - `"local"` (default): committed in this database; always succeeds
 *   offline; replicates when a `db.sync()` session can push it;
 * - `"replicated"`: committed here first (it stays, whatever happens), then
 *   resolves once the hub acknowledged it through this handle's `db.sync()`;
 *   rejects with code `"not_replicated"` after `timeoutMs` (default 30,000;
 *   offline, or no sync running: the write replicates later) or with
 *   `"rejected"` when the hub refused it (`error.rejection` says why; it is
 *   not retried).
 * - `"hub"`: a compare-and-set applied at the hub alone (through the
 *   session of `db.sync()`, in whichever tab replicates); nothing is written
 *   here by the call: the new version arrives by the pull, before the call
 *   resolves with `{ id, changeVector }` (see `HubWriteResult`). `expect`
 *   says what the hub must hold. Rejects with `"conflict"` (`error.current`:
 *   the hub's change vector, `""` if the document does not exist there),
 *   the hub's refusal code (`"write_denied"`, `"delete_forbidden"`,
 *   `"purged"`, ...; `error.rejection` says why), `"offline"` (no session:
 *   nothing was written anywhere), `"unknown"` (the session ended before the
 *   answer) or `"timeout"` (after `timeoutMs`, default 30,000); with the
 *   last two the hub may have applied the write (it then replicates here).
 */
export interface WriteSafety {
  safety?: "local" | "replicated" | "hub";
  /** For `"replicated"` and `"hub"`: how long to wait for the hub, in milliseconds. */
  timeoutMs?: number;
  /**
   * For `"hub"` only: `"missing"` (the document must not exist at the hub,
   * or be deleted), a change vector (its current version there, as
   * `changeVector` shows it), or `"any"` (default: no condition).
   */
  expect?: "missing" | "any" | (string & {});
}

/** What a write with safety `"hub"` resolves to, per document. */
export interface HubWriteResult {
  /** The document id as given. */
  id: string;
  /** The new version's change vector at the hub (this database holds it). */
  changeVector: string;
}

/** One document of `writeAtHub`; `expect` as in `WriteSafety`. */
export type HubWriteOp =
  | { type: "put"; id: string; doc: Record<string, unknown>; collection?: string; expect?: WriteSafety["expect"] }
  | { type: "delete"; id: string; expect?: WriteSafety["expect"] };

export type OutpostErrorCode =
  | "invalid_id"
  | "not_replicated"
  | "conflict"
  | "offline"
  | "unknown"
  | "timeout"
  | "write_denied"
  | "duplicate_id"
  | "invalid_document"
  | "batch_too_large"
  | "rejected"
  | "delete_forbidden"
  | "purged"
  | "too_many_versions"
  | "document_too_large"
  | "change_vector_too_large"
  | "forged_change_vector"
  | "unseen_version"
  | "batch_sequence"
  | "invalid_json"
  | "invalid_collection"
  | "invalid_change_vector"
  | "too_large"
  | "invalid_argument"
  | "invalid_options"
  | "concurrency_conflict"
  | "transaction_finished"
  | "closed"
  | "poisoned"
  | "panic"
  | "corrupt"
  | "unsupported"
  | "not_found"
  | "storage_lost"
  | "quota_exceeded"
  | "io"
  | "locked"
  | "read_only"
  | "page_not_found"
  | "invalid_commit"
  | "other"
  | "already_syncing"
  | "no_key"
  | "unreachable"
  | "index_failed"
  | "no_index"
  | "index_output"
  | "worker_failed";

/** A JSON value that can be an index key (objects cannot). */
export type IndexKey = null | boolean | number | string | IndexKey[];

/**
 * An index: a map function over documents (and optionally a reduce
 * function), written in JavaScript and run in this context (no `eval`).
 *
 * ```js
 * await db.defineIndex({
 *   name: "sales/by-product",
 *   collections: ["Orders"],
 *   map(order, emit) { for (const l of order.lines) emit(l.product, l.qty); },
 *   reduce(product, qtys) { return qtys.reduce((a, b) => a + b, 0); },
 * });
 * const { rows } = await db.query("sales/by-product", { eq: "apples" });
 * ```
 *
 * `map` must be pure (same entries for the same document, no I/O). `reduce`
 * receives entries' values (`rereduce` false) or its own earlier results
 * (`rereduce` true) and must be commutative and associative: the engine
 * combines results in groups (one update re-reduces O(log n) values, not
 * all of a key's). The version is a hash of the functions' source: a
 * changed function builds a new version beside the old one (in the
 * background), which queries with `wait: false` read until the new one has
 * caught up; a query that waits (the default) waits for the new one, whose
 * functions alone this handle has.
 */
export interface IndexDefinition<Doc = Record<string, unknown>, K extends IndexKey = IndexKey, V = unknown, R = V> {
  /** 1 to 128 bytes, no control characters. */
  name: string;
  /** Collections whose documents are mapped. Default: every document. */
  collections?: string[];
  /** Calls `emit(key, value)` for each entry of `doc` (none: not in the index). */
  map: (doc: OutpostDocument<Doc>, emit: (key: K, value?: V) => void) => void;
  /** One result for the values (or results) under one key. */
  reduce?: (key: K, values: Array<V | R>, rereduce: boolean) => R;
  /**
   * For a reducing index: the collection its results are written to, as
   * documents `<output>/<key>` (flagged `@from-index`; a result that is not
   * an object is `{ value }`), which other indexes may map in turn. Output
   * documents stay on this device: they are not replicated (but see
   * `hubComputed`).
   */
  output?: string;
  /**
   * Computed at the hub only (which loads the same module): its output
   * documents replicate to the edges whose read prefixes cover them, so a
   * device may see a summary of documents it may not read. On an edge,
   * `defineIndex` of such a definition computes nothing: the results are
   * the documents of `output`, read-only there (a local write to them is
   * refused with `index_output`), and `query` on its name throws `no_index`.
   * Requires `output`.
   */
  hubComputed?: boolean;
  /** Overrides the version (default: a hash of map, reduce, collections and output). */
  version?: string;
}

/** Which rows a query reads, and how. */
export interface QueryOptions<K extends IndexKey = IndexKey> {
  /** Rows whose key equals this. */
  eq?: K;
  /** Rows whose key starts with this: a string's prefix, or an array's first elements. */
  prefix?: IndexKey;
  /** Lower bound (exclusive / inclusive). */
  gt?: IndexKey;
  gte?: IndexKey;
  /** Upper bound (exclusive / inclusive). */
  lt?: IndexKey;
  lte?: IndexKey;
  /** Descending key order. */
  descending?: boolean;
  /** At most this many rows; `next` then says where to continue. */
  limit?: number;
  /** Continue after this cursor (a previous result's `next`). */
  after?: string;
  /**
   * Default true: the index, if defined on this handle, first catches up
   * with every write (so the rows include the caller's own), and before it
   * the indexes defined here whose output collections it reads (a chain).
   * An etag (a write result's `etag`, say): catches up at least to it.
   * False: read as it is (see `stale` and `indexedEtag`).
   */
  wait?: boolean | number;
}

/** One row: an entry of a map index, or one key's result of a reducing index. */
export interface IndexRow<K extends IndexKey = IndexKey, V = unknown> {
  key: K;
  value: V;
  /** The document that emitted the entry (map indexes only). */
  id?: string;
}

/** The rows of a query, and how fresh the index is. */
export interface QueryResult<K extends IndexKey = IndexKey, V = unknown> {
  rows: Array<IndexRow<K, V>>;
  /** A cursor for the next page, or null when the rows are all there is. */
  next: string | null;
  /** Whether writes after `indexedEtag` may be missing from the rows. */
  stale: boolean;
  /** The changes-feed position the index reflects. */
  indexedEtag: number;
  /** The database's position when the query ran. */
  dbEtag: number;
}

/** A defined index and how far it is. */
export interface IndexInfo {
  name: string;
  version: string;
  collections: string[];
  reduce: boolean;
  output: string | null;
  indexedEtag: number;
  dbEtag: number;
  stale: boolean;
  /** Whether this handle has its functions (can bring it up to date). */
  registered: boolean;
}

/**
 * Codes of the hub's refusals: the `code` of a `{ state: "error" }` sync
 * status, and of the `OutpostError` `db.enroll` rejects with.
 *
 * - `"unauthorized"`: unknown identity, a key the hub does not hold for it,
 *   or an enrollment code that is wrong, used or expired (the hub does not
 *   say which);
 * - `"revoked"`: the operator revoked this identity (`outpost-hub edge
 *   revoke`); its sessions end at once and are refused from then on;
 * - `"bad_signature"`: this edge's signatures do not verify under the key
 *   the hub holds;
 * - `"unsupported_version"`, `"protocol"`: a client and hub of different
 *   builds; `"db_id_taken"`: this database's id belongs to another identity.
 */
export type SyncErrorCode =
  | "unauthorized"
  | "revoked"
  | "bad_signature"
  | "unsupported_version"
  | "protocol"
  | "db_id_taken";

/**
 * The error every Outpost operation rejects with. Branch on `code` (see
 * `OutpostErrorCode`); with `"storage_lost"`, `storageLost` holds the facts
 * (see `StorageLost`).
 *
 * ```js
 * try { await db.put("", {}); } catch (e) {
 *   if (e instanceof OutpostError && e.code === "invalid_id") { ... }
 * }
 * ```
 */
export class OutpostError extends Error {
  constructor(message: string, code: OutpostErrorCode | SyncErrorCode);
  readonly name: "OutpostError";
  /** `SyncErrorCode`s only from `db.enroll`. */
  readonly code: OutpostErrorCode | SyncErrorCode;
  /** With code `"storage_lost"`: what was lost, as far as the browser and the witness know. */
  readonly storageLost?: StorageLost;
  /** With code `"conflict"` (write safety `"hub"`): the hub's change vector of the document (`""`: it does not exist there). */
  readonly current?: string;
  /** With code `"conflict"`: the document whose expectation failed. */
  readonly id?: string;
  /** With code `"rejected"`, or a hub's refusal of a write with safety `"hub"`: why (`{ code, id, message }`, plus more for `"rejected"`). */
  readonly rejection?: { code: string; id: string; message: string };
}

/**
 * The facts of an IndexedDB database the browser threw away (or replaced by
 * an empty one): the `storage_lost` error's `storageLost`, and what
 * `onStorageLost` / `db.on("storage-lost")` receive.
 */
export interface StorageLost {
  /** The database name. */
  name: string;
  /**
   * `"browser_reported"`: the browser said so (`dataLoss` on the open);
   * `"replaced"`: the database is not the one the witness knew (another id);
   * `"rolled_back"`: it lacks commits the witness saw completed.
   */
  reason: "browser_reported" | "replaced" | "rolled_back";
  /** The browser's `dataLoss` (`"total"`), as reported when the loss was found, or null. */
  dataLoss: string | null;
  /** The browser's `dataLossMessage` (e.g. "IndexedDB (database was corrupt): checksum mismatch"). */
  dataLossMessage: string;
  /** What the witness (localStorage) knew of the lost database; null where there is none (web workers). */
  witness: {
    dbId: string;
    lastEtag: number;
    /** The hub of the last `db.sync()` (no credential), or null if it never synced. */
    hub: { url: string; identity: string; database: string } | null;
    /** The last local etag the hub acknowledged, or null. */
    hubAckedEtag: number | null;
    /** When the witness was last written (ms since the epoch). */
    updated: number | null;
  } | null;
  /** The database opened now (new and empty after a browser loss). */
  current: { dbId: string; lastEtag: number };
  /** Whether the lost database synced with a hub (what the hub acknowledged can be synced back). */
  synced: boolean;
  /**
   * Local writes that are gone for good: never acknowledged by the hub (with
   * `synced`), or every write made here (without). `ids`: at most 200
   * distinct ids; `truncated`: there were more (`unlisted` more writes), so
   * `count` is a lower bound. Null without a witness.
   */
  lost: { count: number; ids: string[]; truncated: boolean; unlisted: number } | null;
  /** When the loss was first found (ms since the epoch). */
  detectedAt: number;
  /** A sentence for people: what happened and what is gone. */
  message: string;
}

/** Options of `Outpost.open` in the npm package: those of the bindings plus `onStorageLost`. */
export interface OpenOptionsWithRecovery extends OpenOptions {
  /**
   * Opt in to recovery from a lost IndexedDB database: instead of rejecting
   * with `storage_lost`, the open resolves to a new, empty database (a new
   * database id: for the hub, a new device of the same identity; start
   * `db.sync()` to get back what the hub holds) and this function is called
   * with the facts before `open` resolves.
   */
  onStorageLost?: (info: StorageLost) => void;
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

/** Options of `db.sync`. */
export interface SyncOptions {
  /**
   * The hub's WebSocket endpoint: `"wss://hub.example.org/sync"`. `http(s)://`
   * URLs are mapped to `ws(s)://`; in a page, a relative URL (`"/sync"`) is
   * resolved against the page's address.
   */
  url: string;
  /** The edge's identity at the hub (an `[[edge]]` name of its configuration). */
  identity: string;
  /**
   * Development mode only: the edge's shared-secret token (a hub accepts
   * tokens only with `[dev] tokens = true`). Without it, the session proves
   * the identity's key, enrolled with `db.enroll` (or registered by the
   * operator with `outpost-hub edge add NAME --pubkey` and the
   * `publicKey` of `db.identity`); a browser without a key for the identity
   * gets the status `{ state: "error", code: "no_key" }`.
   */
  credential?: string;
  /** The database at the hub. Default `"main"`. */
  database?: string;
  /** Same as `sync.on("status", listener)` right after the start. */
  onStatus?: (status: SyncStatus) => void;
  /** Same as `sync.on("rejection", listener)` right after the start. */
  onRejection?: (rejection: Rejection) => void;
  /** Same as `sync.on("purge", listener)` right after the start. */
  onPurge?: (purge: PurgeEvent) => void;
  /** Same as `sync.on("grant", listener)` right after the start. */
  onGrant?: (grant: SyncGrant) => void;
}

/** Options of `db.enroll`. */
export interface EnrollOptions {
  /** The hub's WebSocket endpoint (as `SyncOptions.url`). */
  url: string;
  /** The identity to enroll (an `[[edge]]` name of the hub's configuration). */
  identity: string;
  /**
   * The one-time enrollment code the hub's operator gave (`outpost-hub edge
   * add NAME` or `outpost-hub edge enroll NAME` print it).
   */
  code: string;
  /** The database at the hub. Default `"main"`. */
  database?: string;
}

/**
 * This browser's key of an identity (`db.identity`, `db.enroll`). The
 * private key is a non-extractable WebCrypto ECDSA P-256 key kept in
 * IndexedDB (database `"outpost-keys"`): page script can sign with it but
 * never read it. Not encrypted at rest: whoever reads the browser
 * profile's files has it. In Node (no IndexedDB) keys live in memory for
 * the life of the process.
 */
export interface EdgeIdentity {
  /** The identity's name. */
  identity: string;
  /** The public key, `"p256:"` and 130 hex digits (what the hub holds). */
  publicKey: string;
  /** Its short name: 16 hex digits (what `outpost-hub edge list` shows). */
  fingerprint: string;
  /** Whether a hub accepted the key (an enrollment or a key session succeeded). */
  enrolled: boolean;
}

/**
 * What the hub lets this edge do, as the hub states it when a session opens:
 * id prefixes, normalised (lowercase, ending in `"/"`; `"*"` means every id).
 * An empty `write` list means read-only. Informational (for example, to hide
 * edit controls): the hub enforces its rules whatever the edge shows.
 */
export interface SyncGrant {
  /** Prefixes of the documents this edge receives. */
  read: string[];
  /** Prefixes of the documents this edge may change (empty: read-only). */
  write: string[];
  /** Collections whose documents are never deleted (the hub's deletion guards). */
  neverDelete: string[];
  /**
   * Output collections of indexes the hub computes and shares (protocol 9):
   * their documents arrive here where `read` covers them, read-only.
   */
  hubOutputs: string[];
}

/**
 * A purge this edge carried out at the hub's order (`sync.on("purge")`):
 * documents that left its read scope were erased from the database, bytes
 * included, and a receipt signed by this edge's key went to the hub.
 */
export interface PurgeEvent {
  /** The order's number (per identity, increasing). */
  order: number;
  /** `"narrowed"` (the read scope shrank), `"revoked"` (the identity was revoked; an `error` status with code `"revoked"` follows) or `"purged"` (the operator purged a subject's documents at the hub: `outpost-hub purge`). */
  reason: "narrowed" | "revoked" | "purged";
  /** Documents erased. */
  removed: number;
}

/**
 * Where replication stands:
 * - `connecting`: opening the WebSocket, handshake under way;
 * - `initial`: receiving the hub's backlog, `received` of `total` documents
 *   (counted from the start of this connection);
 * - `live`: caught up; changes flow both ways as they are committed;
 * - `offline`: not connected; retrying with exponential backoff (at once when
 *   the browser comes back online), or stopped;
 * - `error`: the hub refused this edge (`code`: a `SyncErrorCode`, e.g.
 *   `"unauthorized"` or `"revoked"`: the operator revoked it, live sessions
 *   end at once), the browser holds no key for the identity (`"no_key"`),
 *   or the database was closed: no retries.
 */
export type SyncStatus =
  | { state: "connecting" }
  | { state: "initial"; received: number; total: number }
  | { state: "live" }
  | { state: "offline" }
  | { state: "error"; code: SyncErrorCode | OutpostErrorCode | (string & {}); message: string };

/**
 * Replication of a database with a hub, returned by `db.sync(options)`.
 *
 * Within one browser, one tab per database replicates at a time (Web Lock
 * `"outpost-sync:" + name`); in the other tabs `sync()` waits for its turn,
 * their `status` mirrors the replicating tab's, and what it receives reaches
 * their subscribers like any other tab's write. Local writes of any tab are
 * pushed. Each storage step of the replication runs under the database's
 * cross-tab lock, in short commits (at most 100 documents each), so a large
 * initial sync never blocks the page for long.
 */
export class Sync {
  private constructor();
  /** The current status (see `SyncStatus`). */
  readonly status: SyncStatus;
  /**
   * What the hub lets this edge read and write, from the last session's
   * handshake (mirrored in every tab); `null` until a hub has said (or with
   * a hub that does not: protocol version 1).
   */
  readonly grant: SyncGrant | null;
  /** Whether `stop()` was called. */
  readonly stopped: boolean;
  /**
   * Listens to status changes, or to changes the hub refused (each is also
   * recorded: see `rejections()`). Returns a function that removes the
   * listener. A listener that throws is reported with `console.error`.
   */
  on(event: "status", listener: (status: SyncStatus) => void): () => void;
  on(event: "rejection", listener: (rejection: Rejection) => void): () => void;
  /** Listens to the grant the hub states (see `grant`), on each session that changes it. */
  on(event: "grant", listener: (grant: SyncGrant) => void): () => void;
  /**
   * Listens to purges: the hub narrowed this edge's read scope, revoked
   * its identity, or purged a subject's documents, and those documents were
   * erased from this database (bytes too); a signed receipt went to the hub.
   */
  on(event: "purge", listener: (purge: PurgeEvent) => void): () => void;
  /** The changes the hub refused (never retried; a new edit of the document is). */
  rejections(): Promise<Rejection[]>;
  /**
   * Closes the connection and stops retrying; resolves once no replication
   * step is running (then `db.sync()` may be called again).
   */
  stop(): Promise<void>;
}

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
   * memory (Node). `options.storage` picks explicitly. An unknown option is
   * refused (`invalid_options`).
   *
   * On IndexedDB, a database the browser threw away is never opened silently
   * as empty: the open rejects with code `"storage_lost"` (the facts in
   * `error.storageLost`) unless `options.onStorageLost` opts in to recovery.
   */
  static open(name: string, options?: OpenOptionsWithRecovery): Promise<Outpost>;
  /**
   * Deletes the IndexedDB database `name` and everything in it (close every
   * handle on it first, in every tab). Does nothing where there is no IndexedDB.
   */
  static destroy(name: string): Promise<void>;
  /** The name the database was opened with. */
  readonly name: string;
  /** The id of this database (its identity in change vectors). */
  readonly dbId: string;
  /** The facts of a storage loss this open recovered from, or null. */
  readonly storageLost: StorageLost | null;
  /** Listens to `"storage-lost"` (called at once if this open recovered from a loss). Returns a function that removes the listener. */
  on(event: "storage-lost", listener: (info: StorageLost) => void): () => void;
  /**
   * Writes a document (creating or replacing it). With `safety:
   * "replicated"` it resolves once the hub acknowledged the write (see
   * `WriteSafety`).
   */
  put(id: string, doc: Record<string, unknown>, options?: PutOptions & WriteSafety & { safety?: "local" | "replicated" }): Promise<WriteResult>;
  /** A write with safety `"hub"` (see `WriteSafety`): nothing is written here by the call. */
  put(
    id: string,
    doc: Record<string, unknown>,
    options: { safety: "hub"; expect?: WriteSafety["expect"]; timeoutMs?: number; collection?: string },
  ): Promise<HubWriteResult>;
  /** Reads a document with its `@metadata`, or `null`. */
  get<T = Record<string, unknown>>(id: string): Promise<OutpostDocument<T> | null>;
  /** Deletes a document; `null` if it did not exist. `safety` as for `put`. */
  delete(id: string, options?: DeleteOptions & WriteSafety & { safety?: "local" | "replicated" }): Promise<WriteResult | null>;
  /** A delete with safety `"hub"` (see `WriteSafety`). */
  delete(id: string, options: { safety: "hub"; expect?: WriteSafety["expect"]; timeoutMs?: number }): Promise<HubWriteResult>;
  /**
   * Write safety `"hub"` for 1 to 64 documents (a small transaction): the
   * hub applies them alone, all or nothing, if every expectation holds
   * there; resolves with one `HubWriteResult` per operation once this
   * database holds the new versions. Rejects as `WriteSafety` says.
   */
  writeAtHub(ops: HubWriteOp[], options?: { timeoutMs?: number }): Promise<HubWriteResult[]>;
  /**
   * Applies several writes atomically (all or none), given as an array or
   * collected by a callback (if it throws, nothing is written). Resolves to
   * one result per operation (`null` for a delete of a missing document).
   */
  transaction(ops: TransactionOp[], options: TransactionOptions & { results: false }): Promise<{ written: number; etag: number }>;
  transaction(callback: (tx: Transaction) => void | Promise<void>, options: TransactionOptions & { results: false }): Promise<{ written: number; etag: number }>;
  transaction(ops: TransactionOp[], options?: TransactionOptions): Promise<Array<WriteResult | null>>;
  transaction(callback: (tx: Transaction) => void | Promise<void>, options?: TransactionOptions): Promise<Array<WriteResult | null>>;
  /** Live documents by id prefix, in id order, paged with `after` and `limit`. */
  scan(options?: ScanOptions & { keysOnly?: false }): Promise<OutpostDocument[]>;
  /** Their ids only (as written): no body is parsed or converted. */
  scan(options: ScanOptions & { keysOnly: true }): Promise<string[]>;
  /** Versions written after etag `since` (tombstones included), in etag order. */
  changes(options?: ChangesOptions): Promise<OutpostDocument[]>;
  /** Number of live documents. */
  count(): Promise<number>;
  /** Collections and their numbers of live documents. */
  collections(): Promise<CollectionInfo[]>;
  /**
   * Defines an index (stored) and registers its functions on this handle
   * (each handle, tab or worker that queries with `wait` registers them).
   * From then on the handle keeps its indexes up to date in the background
   * after every commit (its own or another tab's), one step at a time
   * between other operations; queries with `wait` still catch up first.
   * Rejects with `"invalid_argument"` / `"invalid_options"` for a bad
   * definition.
   */
  defineIndex<Doc = Record<string, unknown>, K extends IndexKey = IndexKey, V = unknown, R = V>(
    definition: IndexDefinition<Doc, K, V, R>,
  ): Promise<void>;
  /**
   * Rows of an index by equality, prefix or range, sorted, in pages.
   * Rejects with `"no_index"` for an unknown index and `"index_failed"`
   * (naming the index and document) when a function throws while catching up.
   */
  query<K extends IndexKey = IndexKey, V = unknown>(name: string, options?: QueryOptions<K>): Promise<QueryResult<K, V>>;
  /** Number of rows in a key range (`eq`, `prefix`, bounds). */
  queryCount(name: string, options?: QueryOptions): Promise<number>;
  /**
   * Calls `callback` with the query's result now and again whenever a change
   * (in this tab or another) alters its rows. Returns a function that stops it.
   */
  liveQuery<K extends IndexKey = IndexKey, V = unknown>(
    name: string,
    options: QueryOptions<K> | undefined,
    callback: (result: QueryResult<K, V>) => void,
  ): () => void;
  /**
   * Brings every index registered on this handle up to date (one turn per
   * step); resolves to the documents mapped. An index whose function throws
   * does not hold up the others: they catch up, then this rejects with
   * `"index_failed"`.
   */
  updateIndexes(): Promise<number>;
  /** Removes an index and its entries (its output documents stay). */
  dropIndex(name: string): Promise<void>;
  /** Every defined index and how far it is. */
  indexes(): Promise<IndexInfo[]>;
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
   * Conflicted documents — concurrent versions that replication kept (the
   * hub's conflict policy for the collection is `manual`) — in id order,
   * each with all its versions.
   */
  conflicts(options?: ConflictsOptions): Promise<ConflictedDocument[]>;
  /**
   * Ends a conflict: writes `body` (`null`: a deletion) as a version that
   * supersedes all the concurrent ones; it replicates like any write, so the
   * conflict ends everywhere. On a document that is not conflicted it is a
   * plain put (or delete). Keeps the collection unless `options.collection`.
   *
   * ```js
   * for (const c of await db.conflicts()) {
   *   await db.resolve(c.id, c.versions[0].body); // keep the shown version
   * }
   * ```
   */
  resolve(id: string, body: Record<string, unknown> | null, options?: { collection?: string }): Promise<WriteResult | null>;
  /** The changes the hub refused during replication, as recorded in this database. */
  rejections(): Promise<Rejection[]>;
  /**
   * Starts replicating with a hub over a WebSocket (`docs/protocol.md`):
   * the hub's changes within this edge's read prefixes come in, local
   * writes go out, both ways live, reconnecting after network failures.
   *
   * ```js
   * // Once per browser: redeem the code the hub's operator gave.
   * await db.enroll({ url: "wss://hub.example.org/sync", identity: "alice", code });
   * // Then, on every visit: sessions prove the enrolled key.
   * const sync = db.sync({ url: "wss://hub.example.org/sync", identity: "alice",
   *   onStatus: (s) => show(s.state) });
   * sync.on("status", (s) => { if (s.state === "error" && s.code === "revoked") signOut(); });
   * sync.on("rejection", (r) => alert(`${r.id}: ${r.message}`));
   * await sync.stop();
   * ```
   *
   * Throws `OutpostError` `"invalid_options"`, `"already_syncing"` (one
   * sync per handle: stop it first), `"unsupported"` (no WebSocket, e.g.
   * Node before 22), `"closed"`. `close()` stops it.
   */
  sync(options: SyncOptions): Sync;
  /**
   * Enrolls this browser's key of `options.identity` with the hub: makes
   * the key if there is none, redeems the one-time `code` for it in a
   * session (which ends once the hub accepted the key), and resolves with
   * the identity (`enrolled: true`). Later `sync({ url, identity })`
   * sessions prove the key. Rejects with `OutpostError` `"invalid_options"`,
   * `"already_syncing"`, `"unsupported"` (no WebSocket or no WebCrypto:
   * pages must be served over https or from localhost), `"unreachable"`, or
   * the hub's refusal (`SyncErrorCode`: `"unauthorized"` for an unknown
   * identity or a wrong, used or expired code, `"revoked"`).
   */
  enroll(options: EnrollOptions): Promise<EdgeIdentity>;
  /**
   * This browser's key of `identity`, made if there is none:
   * `{ identity, publicKey, fingerprint, enrolled }`. Show `publicKey` to
   * the hub's operator to register it without a code (`outpost-hub edge
   * add NAME --pubkey p256:...`).
   */
  identity(identity: string): Promise<EdgeIdentity>;
  /**
   * Counters of the database and its page cache, as this handle last saw
   * them (synchronous, no cross-tab lock: with several tabs, `await
   * db.count()` first to include the other tabs' latest commits).
   */
  stats(): Record<string, unknown>;
  /** Stops replication, waits for pending writes, closes the page store and ends subscriptions. */
  close(): Promise<void>;
}

/**
 * What `serveOutpost` and `openInWorker` need of a worker: a browser
 * `Worker`, a worker's global scope, a `MessagePort`, or Node's
 * `worker_threads` `Worker` / `parentPort`.
 */
export interface MessageEndpoint {
  postMessage(message: unknown): void;
}

/** Options of `serveOutpost`. */
export interface ServeOptions {
  /**
   * Runs in the worker after each open, before the page gets the handle:
   * define the indexes there (`db.defineIndex(def)`); their functions stay
   * in the worker. An error it throws fails the page's `openInWorker`.
   */
  setup?: (db: Outpost, name: string) => void | Promise<void>;
  /** Where the page's messages arrive (default: the worker's global scope; in Node, `parentPort`). */
  endpoint?: MessageEndpoint;
}

/**
 * In a dedicated worker (or a Node worker thread): serves the databases the
 * page opens there with `openInWorker`. The engine, IndexedDB and every
 * index function then run in the worker; the page's main thread only sends
 * messages and receives results and events. In a SharedWorker, every tab
 * that connects is served, sharing one handle per database and one
 * replication per database.
 */
export function serveOutpost(options?: ServeOptions): {
  /** Serves one more port (e.g. a `MessageChannel` port another tab sent) with the same databases. */
  connect(port: MessageEndpoint): void;
  /** Stops serving and closes every database this worker holds. */
  close(): Promise<void>;
};

/**
 * Opens `name` in `worker` (which called `serveOutpost()`), with the options
 * of `Outpost.open` (`onStorageLost` runs on the page). Several databases
 * may share a worker.
 */
export function openInWorker(
  worker: MessageEndpoint,
  name: string,
  options?: OpenOptionsWithRecovery,
): Promise<RemoteOutpost>;

/** `Outpost.destroy(name)` run in `worker` (close every handle on it first). */
export function destroyInWorker(worker: MessageEndpoint, name: string): Promise<void>;

/**
 * A database served by a worker: the methods of `Outpost`, each answered
 * by the worker. Where it differs, with typed errors: arguments and
 * results cross as structured clones (a function in a document or an
 * option is `invalid_argument`); `defineIndex` accepts only definitions
 * without functions (`hubComputed`), the others belong in `ServeOptions.setup`;
 * `transaction(callback)` runs the callback on the page and sends its writes
 * as one array; `stats()` is as of the worker's last answer; `sync()`
 * returns at once, and a start the worker refuses becomes the status
 * `{ state: "error", code, message }`. A worker that fails rejects the
 * pending calls with `worker_failed`.
 */
export class RemoteOutpost {
  private constructor();
  readonly name: string;
  readonly dbId: string;
  readonly storageLost: StorageLost | null;
  on: Outpost["on"];
  put: Outpost["put"];
  get: Outpost["get"];
  delete: Outpost["delete"];
  transaction: Outpost["transaction"];
  writeAtHub: Outpost["writeAtHub"];
  scan: Outpost["scan"];
  changes: Outpost["changes"];
  count: Outpost["count"];
  collections: Outpost["collections"];
  defineIndex: Outpost["defineIndex"];
  query: Outpost["query"];
  queryCount: Outpost["queryCount"];
  liveQuery: Outpost["liveQuery"];
  updateIndexes: Outpost["updateIndexes"];
  dropIndex: Outpost["dropIndex"];
  indexes: Outpost["indexes"];
  conflicts: Outpost["conflicts"];
  resolve: Outpost["resolve"];
  rejections: Outpost["rejections"];
  subscribe: Outpost["subscribe"];
  sync: Outpost["sync"];
  enroll: Outpost["enroll"];
  identity: Outpost["identity"];
  stats: Outpost["stats"];
  close: Outpost["close"];
}

/**
 * Instantiates the wasm module. `Outpost.open` does it on first use; call it
 * yourself only to load the `.wasm` from somewhere else (browser entry) — a
 * `WebAssembly.Module`, a URL, a `Response` or bytes. With esbuild, which does
 * not follow `new URL(..., import.meta.url)`: `import wasmUrl from
 * "@outpost/db/outpost_wasm_bg.wasm"` with `--loader:.wasm=file`, then
 * `await initOutpost(wasmUrl)`; or import `@outpost/db/inline` instead (the
 * `.wasm` inlined, nothing to configure).
 */
export function initOutpost(
  moduleOrPath?: WebAssembly.Module | URL | string | Response | BufferSource,
): Promise<void>;
