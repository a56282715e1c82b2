// Shopping carts (issue 13): cart events reduce into the output collection
// "ShoppingCarts"; a chained index over the paid carts gives the quantity
// sold per product.
//
// Events (collection "CartEvents"):
//   { cart, type: "add" | "remove", product, qty }   (remove: qty removed)
//   { cart, type: "paid" }

export const carts = {
  name: "carts",
  collections: ["CartEvents"],
  output: "ShoppingCarts",
  map(e, emit) {
    const items = {};
    if (e.type === "add") items[e.product] = e.qty;
    if (e.type === "remove") items[e.product] = -e.qty;
    emit(e.cart, { items, paid: e.type === "paid" });
  },
  reduce(cart, values) {
    const items = {};
    let paid = false;
    for (const v of values) {
      for (const [p, q] of Object.entries(v.items)) items[p] = (items[p] ?? 0) + q;
      paid ||= v.paid;
    }
    for (const p of Object.keys(items)) if (items[p] === 0) delete items[p];
    return { items, paid };
  },
};

export const salesPerProduct = {
  name: "sales/per-product",
  collections: ["ShoppingCarts"],
  map(cart, emit) {
    if (!cart.paid) return;
    for (const [product, qty] of Object.entries(cart.items)) emit(product, qty);
  },
  reduce(product, qtys) {
    return qtys.reduce((a, b) => a + b, 0);
  },
};

export default [carts, salesPerProduct];
