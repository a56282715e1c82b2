// A host page store over a JS Map: the smallest adapter an edge worker would
// write over its own key/value storage. `commit` applies all pages and the meta
// record together (nothing is awaited in between), which is what makes it atomic.
export function mapStore(pages = new Map(), state = { meta: undefined }) {
  // failNextCommit: true (a generic error) or an Error to throw from the next commit.
  const stats = { commits: 0, relaxed: 0, reads: 0, syncs: 0, closes: 0, failNextCommit: false };
  return {
    pages,
    state,
    stats,
    async readPage(no) {
      stats.reads++;
      return pages.get(no);
    },
    async readMeta() {
      return state.meta;
    },
    async commit(batch, meta, { durable }) {
      if (stats.failNextCommit) {
        const e = stats.failNextCommit === true ? new Error("disk on fire") : stats.failNextCommit;
        stats.failNextCommit = false;
        throw e;
      }
      if (typeof durable !== "boolean") throw new Error("commit options lack durable");
      for (const [no, bytes] of batch) pages.set(no, bytes);
      state.meta = meta;
      stats.commits++;
      if (!durable) stats.relaxed++;
    },
    async sync() {
      stats.syncs++;
    },
    async close() {
      stats.closes++;
    },
  };
}
