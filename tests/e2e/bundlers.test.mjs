// The packed npm package through the bundlers people use (issue 8 point 6):
// the same tiny app (bundle-app/app.js) is built from the tarball installed in
// node_modules by run.sh with
//
//   - Vite (default entry: it follows `new URL("…wasm", import.meta.url)`);
//   - webpack 5 (default entry: it follows it too, as an asset module);
//   - esbuild with `@outpost/db/inline` (the .wasm inlined: no configuration);
//   - esbuild with the default entry, the .wasm imported with the `file`
//     loader and handed to `initOutpost(url)`;
//   - and, as a control, esbuild with the default entry and nothing else,
//     which cannot work (esbuild does not follow `new URL(...)`): the page
//     must fail to load the .wasm, not pass by accident.
//
// Each build is served on 127.0.0.1 (a free port) and loaded in headless
// Chromium, which writes to IndexedDB and reads back through the package.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync, cpSync, readdirSync, statSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"];

let work;
let browser;

before(async () => {
  assert.ok(existsSync(join(here, "node_modules/@outpost/db/package.json")), "@outpost/db is not installed: run tests/e2e/run.sh");
  work = mkdtempSync(join(tmpdir(), "outpost-bundlers-"));
  browser = await chromium.launch({ executablePath, headless: true, args: ARGS, timeout: 60_000 });
});

after(async () => {
  await browser?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A project directory for one bundler: app.js, the entry, index.html; node_modules resolved from tests/e2e. */
function project(name, entry, html) {
  const dir = join(here, `.bundle-${name}-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  cpSync(join(here, "bundle-app"), dir, { recursive: true });
  writeFileSync(join(dir, "entry.js"), entry);
  writeFileSync(join(dir, "index.html"), html);
  return dir;
}

const ENTRY = (from) => `import { Outpost, OutpostError } from "${from}";
import { run } from "./app.js";
run(Outpost, OutpostError);
`;
const ENTRY_INIT = `import wasmUrl from "@outpost/db/outpost_wasm_bg.wasm";
import { Outpost, OutpostError, initOutpost } from "@outpost/db";
import { run } from "./app.js";
await initOutpost(new URL(wasmUrl, import.meta.url));
run(Outpost, OutpostError);
`;
const HTML = (script, module = true) =>
  `<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>bundled</title></head><body>loading<script ${module ? 'type="module" ' : ""}src="${script}"></script></body></html>\n`;

/** Loads `dir` (a built site) in Chromium; resolves to window.__outpost and the files' sizes. */
async function load(dir) {
  const server = await serve(dir);
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const failed = [];
    page.on("response", (r) => r.status() >= 400 && failed.push(`${r.status()} ${new URL(r.url()).pathname}`));
    page.on("pageerror", (e) => failed.push(`pageerror: ${e.message}`));
    await page.goto(server.url, { timeout: 30_000 });
    await page.waitForFunction(() => window.__outpost, null, { timeout: 30_000 });
    return { result: await page.evaluate(() => window.__outpost), failed };
  } finally {
    await context.close();
    await server.close();
  }
}

function sizes(dir) {
  const out = {};
  const walk = (d, p = "") => {
    for (const f of readdirSync(d)) {
      const full = join(d, f);
      if (statSync(full).isDirectory()) walk(full, `${p}${f}/`);
      else out[`${p}${f}`] = statSync(full).size;
    }
  };
  walk(dir);
  return out;
}

const EXPECTED = { ok: true, title: "bundled", id: "notes/1", unknownOption: "invalid_options" };

async function esbuildApp(name, entry) {
  const esbuild = require("esbuild");
  const dir = project(name, entry, HTML("entry.js"));
  const out = join(work, name);
  await esbuild.build({
    entryPoints: [join(dir, "entry.js")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outdir: out,
    loader: { ".wasm": "file" },
    nodePaths: [join(here, "node_modules")],
    logLevel: "silent",
  });
  cpSync(join(dir, "index.html"), join(out, "index.html"));
  rmSync(dir, { recursive: true, force: true });
  return out;
}

test("Vite builds the default entry (the .wasm emitted as an asset)", async () => {
  const { build } = await import("vite");
  const dir = project("vite", ENTRY("@outpost/db"), HTML("./entry.js"));
  const out = join(work, "vite");
  try {
    await build({ root: dir, logLevel: "silent", configFile: false, build: { outDir: out, emptyOutDir: true, target: "es2022" } });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const s = sizes(out);
  assert.ok(Object.keys(s).some((f) => f.endsWith(".wasm")), `no .wasm emitted: ${JSON.stringify(s)}`);
  const { result, failed } = await load(out);
  assert.deepEqual(failed, []);
  assert.deepEqual(result, EXPECTED);
});

test("webpack 5 builds the default entry (the .wasm emitted as an asset module)", async () => {
  const webpack = require("webpack");
  const dir = project("webpack", ENTRY("@outpost/db"), HTML("main.js", false));
  const out = join(work, "webpack");
  try {
    const stats = await new Promise((resolve, reject) =>
      webpack(
        {
          mode: "production",
          context: dir,
          entry: "./entry.js",
          target: "web",
          output: { path: out, filename: "main.js", publicPath: "auto" },
          resolve: { modules: [join(here, "node_modules"), "node_modules"] },
          performance: { hints: false },
        },
        (err, st) => (err ? reject(err) : resolve(st)),
      ),
    );
    assert.ok(!stats.hasErrors(), stats.toString({ all: false, errors: true }));
  } finally {
    cpSync(join(dir, "index.html"), join(out, "index.html"));
    rmSync(dir, { recursive: true, force: true });
  }
  const s = sizes(out);
  assert.ok(Object.keys(s).some((f) => f.endsWith(".wasm")), `no .wasm emitted: ${JSON.stringify(s)}`);
  const { result, failed } = await load(out);
  assert.deepEqual(failed, []);
  assert.deepEqual(result, EXPECTED);
});

test("esbuild builds @outpost/db/inline with no configuration (the .wasm inlined)", async () => {
  const out = await esbuildApp("esbuild-inline", ENTRY("@outpost/db/inline"));
  const s = sizes(out);
  assert.deepEqual(Object.keys(s).filter((f) => f.endsWith(".wasm")), [], "nothing to copy: no .wasm file");
  const { result, failed } = await load(out);
  assert.deepEqual(failed, []);
  assert.deepEqual(result, EXPECTED);
});

test("esbuild with the default entry: the .wasm through the file loader and initOutpost(url)", async () => {
  const out = await esbuildApp("esbuild-init", ENTRY_INIT);
  const s = sizes(out);
  assert.equal(Object.keys(s).filter((f) => f.endsWith(".wasm")).length, 1, `esbuild copies the .wasm: ${JSON.stringify(s)}`);
  const { result, failed } = await load(out);
  assert.deepEqual(failed, []);
  assert.deepEqual(result, EXPECTED);
});

test("control: esbuild with the default entry and no set-up does not find the .wasm (why the two ways above exist)", async () => {
  const out = await esbuildApp("esbuild-plain", ENTRY("@outpost/db"));
  const { result, failed } = await load(out);
  assert.equal(result.ok, false, JSON.stringify(result));
  assert.ok(failed.some((f) => /^404 .*\.wasm$/.test(f)), `expected a 404 for the .wasm: ${JSON.stringify(failed)}`);
});
