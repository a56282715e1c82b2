// `npm pack` produces a tarball with the .wasm, the JS glue and the types, and
// that tarball installs into a fresh project and works there (no registry
// access needed: the package has no dependencies).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const pkgDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const quiet = ["--no-audit", "--no-fund", "--loglevel=error"];

test("npm pack contains the wasm, JS and d.ts files, installs and runs", async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), "outpost-pack-"));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));

  const out = execFileSync(npm, ["pack", "--json", "--pack-destination", tmp, ...quiet], {
    cwd: pkgDir,
    encoding: "utf8",
  });
  const [info] = JSON.parse(out);
  const tarball = join(tmp, info.filename);
  const files = execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" })
    .split("\n")
    .filter(Boolean)
    .map((f) => f.replace(/^package\//, ""));
  for (const f of [
    "package.json",
    "README.md",
    "src/core.js",
    "src/turns.js",
    "src/indexes.js",
    "src/remote.js",
    "src/base.js",
    "src/sync.js",
    "src/subscribe.js",
    "src/witness.js",
    "src/web.js",
    "src/node.js",
    "src/index.d.ts",
    "src/inline.js",
    "dist/web/outpost_wasm_inline.js",
    "dist/web/outpost_wasm.js",
    "dist/web/outpost_wasm.d.ts",
    "dist/web/outpost_wasm_bg.wasm",
    "dist/nodejs/outpost_wasm.js",
    "dist/nodejs/outpost_wasm.d.ts",
    "dist/nodejs/outpost_wasm_bg.wasm",
    "dist/nodejs/package.json",
  ]) {
    assert.ok(files.includes(f), `${f} missing from the tarball: ${files.join(", ")}`);
  }
  assert.ok(!files.some((f) => f.startsWith("test/") || f.startsWith("tools/")), files.join(", "));

  // The generated types carry the Rust doc comments (with JS examples).
  const dts = execFileSync("tar", ["-xzOf", tarball, "package/dist/web/outpost_wasm.d.ts"], {
    encoding: "utf8",
  });
  assert.match(dts, /export class Outpost/);
  assert.match(dts, /static open\(name: string, options\?: OpenOptions\): Promise<Outpost>/);
  assert.match(dts, /put\(id: string, doc: Record<string, unknown>, opts\?: PutOptions\): Promise<WriteResult>/);
  assert.match(dts, /Optimistic concurrency/);
  assert.match(dts, /await db\.put\("patients\/1"/);

  // Install the tarball into an empty project and use it from there.
  const app = join(tmp, "app");
  execFileSync("mkdir", ["-p", app]);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  execFileSync(npm, ["install", "--offline", ...quiet, tarball], { cwd: app, encoding: "utf8" });
  writeFileSync(
    join(app, "main.js"),
    `import { Outpost, OutpostError } from "@outpost/db";
const db = await Outpost.open("app");
await db.put("hello/1", { greeting: "hi" });
const doc = await db.get("hello/1");
let code;
try { await db.put("", {}); } catch (e) { code = e instanceof OutpostError && e.code; }
console.log(JSON.stringify({ greeting: doc.greeting, id: doc["@metadata"]["@id"], code }));
await db.close();
`,
  );
  const result = JSON.parse(execFileSync(process.execPath, ["main.js"], { cwd: app, encoding: "utf8" }));
  assert.deepEqual(result, { greeting: "hi", id: "hello/1", code: "invalid_id" });
});
