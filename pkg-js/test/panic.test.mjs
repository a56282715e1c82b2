// A Rust panic surfaces in JS as an exception or a rejected promise, never as a
// promise that stays pending; the handle it hit refuses further work with code
// "panic", other handles keep working. Runs in a child process: the trap of the
// aborting panic also reaches Node as an uncaughtException, which the child
// handles (an app that wants to survive a panic must do the same).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const pkgDir = dirname(dirname(fileURLToPath(import.meta.url)));

const child = `
import { Outpost, OutpostError } from "@outpost/db";
import * as raw from "@outpost/db/raw/nodejs";
const uncaught = [];
process.on("uncaughtException", (e) => uncaught.push(e.constructor.name));
const out = {};
const settle = (p) => Promise.race([
  p.then(() => "resolved", (e) => (e instanceof OutpostError ? e.code : "other " + e)),
  new Promise((r) => setTimeout(() => r("pending"), 1000)),
]);

try { raw.__panicForTests(); out.sync = "returned"; } catch (e) { out.sync = e.constructor.name; }

const db = await Outpost.open("a");
await db.put("x", { v: 1 });
const inner = await raw.Outpost.open("b");
out.inOperation = await settle(inner.__panicForTests());
out.afterOnSameHandle = await settle(inner.get("x"));
out.otherHandle = (await db.get("x")).v;
const fresh = await Outpost.open("c");
await fresh.put("y", { v: 2 });
out.newHandle = (await fresh.get("y")).v;
out.uncaught = uncaught;
console.log(JSON.stringify(out));
`;

test("a panic rejects with code panic instead of hanging", () => {
  const stdout = execFileSync(process.execPath, ["--input-type=module", "-e", child], {
    cwd: pkgDir,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  const out = JSON.parse(stdout.trim().split("\n").pop());
  assert.deepEqual(out, {
    sync: "RuntimeError",
    inOperation: "panic",
    afterOnSameHandle: "panic",
    otherHandle: 1,
    newHandle: 2,
    uncaught: ["RuntimeError"],
  });
});
