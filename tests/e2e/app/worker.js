// The dedicated worker of worker.test.mjs: the engine runs here, the lab
// page talks to it through `openInWorker`. Databases whose name contains
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
