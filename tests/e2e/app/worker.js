// The worker of worker.test.mjs, started as a dedicated worker and as a
// SharedWorker: the engine runs here, the lab page talks to it through
// `openInWorker` (in a SharedWorker, every connecting tab shares the
// databases). Databases whose name contains
// "carts" get the cart example's indexes (the same module file the Node
// tests load); their functions run here.
import { serveOutpost } from "@outpost/db";
import { carts, salesPerProduct } from "../../../examples/indexes/carts.mjs";

serveOutpost({
  async setup(db, name) {
    if (!name.includes("carts")) return;
    await db.defineIndex(carts);
    await db.defineIndex(salesPerProduct);
  },
});
