// The handwritten layer over the wasm-bindgen bindings, shared by the browser
// (web.js) and Node (node.js) entry points. It adds what is nicer in JS than
// in Rust: a real `OutpostError` class and `transaction(async (tx) => ...)`.
// Everything else is passed straight to the wasm `Outpost` class, whose
// generated .d.ts documents it.

/**
 * The error every Outpost operation rejects with. Branch on `code`, which is
 * stable: "invalid_id", "invalid_json", "invalid_collection", "too_large",
 * "invalid_argument", "invalid_change_vector", "concurrency_conflict",
 * "corrupt", "closed", "poisoned", "quota_exceeded", "invalid_options",
 * "transaction_finished", "other", ...
 */
export class OutpostError extends Error {
  /**
   * @param {string} message
   * @param {string} code
   */
  constructor(message, code) {
    super(message);
    this.name = "OutpostError";
    /** @type {string} */
    this.code = code;
  }
}

/**
 * Collects the writes of `db.transaction(async (tx) => ...)`; they are
 * committed together, atomically, when the callback's promise resolves.
 */
export class Transaction {
  #ops = [];
  #finished = false;

  #push(op) {
    if (this.#finished) {
      throw new OutpostError(
        "the transaction is finished: call tx.put/tx.delete before the callback returns",
        "transaction_finished",
      );
    }
    this.#ops.push(op);
    return this;
  }

  /** Adds a put (see `Outpost.put`). */
  put(id, doc, options = {}) {
    return this.#push({ ...options, type: "put", id, doc });
  }

  /** Adds a delete (see `Outpost.delete`). */
  delete(id, options = {}) {
    return this.#push({ ...options, type: "delete", id });
  }

  /** Number of operations collected so far. */
  get size() {
    return this.#ops.length;
  }

  /** @internal Ends collection and hands over the operations. */
  static finish(tx) {
    tx.#finished = true;
    return tx.#ops;
  }
}

/**
 * Builds the public API over a wasm-bindgen module.
 * @param {object} wasm the generated bindings (web or nodejs target)
 * @param {() => Promise<void>} ready resolves once the module is instantiated
 */
export function makeApi(wasm, ready) {
  let registered = false;
  const init = async () => {
    await ready();
    if (!registered) {
      wasm.__setErrorClass(OutpostError);
      registered = true;
    }
  };

  class Outpost {
    #db;

    /** Use `Outpost.open`. */
    constructor(raw) {
      if (!(raw instanceof wasm.Outpost)) {
        throw new OutpostError("use Outpost.open(name, options)", "invalid_argument");
      }
      this.#db = raw;
    }

    /** Opens (or creates) a database. */
    static async open(name, options) {
      await init();
      return new Outpost(await wasm.Outpost.open(name, options));
    }

    /**
     * Deletes the IndexedDB database `name` (close every handle on it first).
     * Does nothing where there is no IndexedDB.
     */
    static async destroy(name) {
      await init();
      return wasm.Outpost.destroy(name);
    }

    /** The name the database was opened with. */
    get name() {
      return this.#db.name;
    }

    /** The id of this database (its identity in change vectors). */
    get dbId() {
      return this.#db.dbId;
    }

    put(id, doc, options) {
      return this.#db.put(id, doc, options);
    }

    get(id) {
      return this.#db.get(id);
    }

    delete(id, options) {
      return this.#db.delete(id, options);
    }

    /**
     * Commits several writes atomically. Takes either an array of operations
     * or an (async) callback that adds them to a `Transaction`; if the callback
     * throws, nothing is written. Resolves to one result per operation.
     */
    async transaction(opsOrCallback) {
      if (typeof opsOrCallback !== "function") {
        return this.#db.transaction(opsOrCallback);
      }
      const tx = new Transaction();
      let ops;
      try {
        await opsOrCallback(tx);
      } finally {
        ops = Transaction.finish(tx);
      }
      return ops.length === 0 ? [] : this.#db.transaction(ops);
    }

    scan(options) {
      return this.#db.scan(options);
    }

    changes(options) {
      return this.#db.changes(options);
    }

    count() {
      return this.#db.count();
    }

    collections() {
      return this.#db.collections();
    }

    stats() {
      return this.#db.stats();
    }

    close() {
      return this.#db.close();
    }
  }

  return { Outpost, OutpostError, Transaction };
}
