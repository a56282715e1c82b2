// The worker of worker.test.mjs: serves its databases to the test's thread,
// with the cart example's indexes defined in each (their functions stay here).
import { parentPort } from "node:worker_threads";
import { serveOutpost } from "@outpost/db";
import { carts, salesPerProduct } from "../../examples/indexes/carts.mjs";

const owner = serveOutpost({
  async setup(db, name) {
    if (name.startsWith("no-setup")) return;
    if (name === "bad-setup") throw new Error("this setup refuses");
    await db.defineIndex(carts);
    await db.defineIndex(salesPerProduct);
  },
});

// Another "tab": a MessageChannel port served by the same owner (what a
// SharedWorker does for every tab that connects).
parentPort.on("message", (m) => {
  if (m?.connect) owner.connect(m.connect);
});
