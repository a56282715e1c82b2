// What the Chromium benchmarks share (openBench: indexes.mjs and run.mjs;
// serveDir and launchChromium also write-probe.mjs and idb-read-shapes.mjs): bundle a page script with esbuild next to the wasm, serve it on
// 127.0.0.1, and open it in headless Chromium on a persistent profile in a
// fresh temporary directory (a Playwright `newContext()` would keep IndexedDB
// in memory, which would make every durability setting meaningless).
import { spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");

/**
 * Builds `entry` (a page script of this directory) and opens it. Resolves to
 * `{ page, browserVersion, close }`; the page's console is echoed.
 * `workers`: [entry, output file] pairs bundled alongside; `files`:
 * [path relative to this directory, output file] pairs copied alongside.
 * @param {{ entry: string, out: string, rebuild?: boolean, chromium?: string, workers?: [string, string][], files?: [string, string][], wasm?: string }} o
 */
export async function openBench(o) {
  const distWeb = join(root, "pkg-js/dist/web");
  if (o.rebuild || !existsSync(join(distWeb, "outpost_wasm_bg.wasm"))) {
    console.log("==> bash scripts/build-wasm.sh");
    const r = spawnSync("bash", [join(root, "scripts/build-wasm.sh")], { cwd: root, stdio: "inherit" });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
  const out = join(here, o.out);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  await esbuild.build({
    entryPoints: [join(here, o.entry)],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "chrome120",
    outfile: join(out, "bench.js"),
    define: { global: "globalThis", "process.env.NODE_ENV": '"production"' },
    logLevel: "warning",
  });
  // Worker scripts, bundled the same way next to bench.js (run.mjs: the
  // Outpost and SQLite workers of the OPFS engines).
  for (const [entry, file] of o.workers ?? []) {
    await esbuild.build({
      entryPoints: [join(here, entry)],
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "chrome120",
      outfile: join(out, file),
      define: { global: "globalThis", "process.env.NODE_ENV": '"production"' },
      logLevel: "warning",
    });
  }
  // Other files served next to it (SQLite's .wasm).
  for (const [from, file] of o.files ?? []) copyFileSync(join(here, from), join(out, file));
  // `o.wasm`: another build of the same module (one with its function names, for profiles).
  copyFileSync(o.wasm ?? join(distWeb, "outpost_wasm_bg.wasm"), join(out, "outpost_wasm_bg.wasm"));
  writeFileSync(
    join(out, "index.html"),
    '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><title>Outpost bench</title>' +
      '<script type="module" src="./bench.js"></script><body>bench</body>\n',
  );
  const server = await serveDir(out);
  const browser = await launchChromium({
    prefix: "outpost-bench-",
    executablePath: o.chromium,
    args: ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  const context = browser.context;
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => console.log("  " + m.text()));
  page.on("pageerror", (e) => console.log("  page error: " + e.message));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForFunction(() => window.bench !== undefined);
  return {
    page,
    browserVersion: context.browser()?.version() ?? "",
    async close() {
      await browser.close();
      server.close();
    },
  };
}

/**
 * Serves the files of the directory `dir` on 127.0.0.1 (an ephemeral port),
 * `/` as its index.html, with `headers` on every answer. Resolves to the
 * listening server.
 * @param {string} dir
 * @param {Record<string, string>} [headers]
 */
export async function serveDir(dir, headers = {}) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const file = join(dir, path === "/" ? "index.html" : path.slice(1));
    if (!file.startsWith(dir) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      "content-type": types[extname(file)] ?? "application/octet-stream",
      "cache-control": "no-store",
      ...headers,
    });
    res.end(readFileSync(file));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return server;
}

/**
 * Headless Chromium (`executablePath`, else $CHROMIUM, else
 * /usr/bin/chromium) on a persistent profile in a fresh temporary directory
 * named from `prefix`: a Playwright `newContext()` would keep IndexedDB in
 * memory. Resolves to `{ context, close }`; `close` also deletes the profile.
 * @param {{ prefix?: string, executablePath?: string, args?: string[] }} [o]
 */
export async function launchChromium(o = {}) {
  const profile = mkdtempSync(join(tmpdir(), o.prefix ?? "outpost-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: o.executablePath ?? process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", ...(o.args ?? [])],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * The package's wasm module with its function names, for readable CPU
 * profiles: `target/.../wasm-release/outpost_wasm.wasm` run through
 * wasm-bindgen into `outDir`, used only if wasm-bindgen's glue for it is
 * identical to the package's (the same build). Resolves to its path, or
 * `{ why }` when it cannot be had.
 * @param {string} outDir
 */
export function namedWasm(outDir) {
  const distWeb = join(root, "pkg-js/dist/web");
  const src = join(root, "target/wasm32-unknown-unknown/wasm-release/outpost_wasm.wasm");
  const named = join(outDir, "named");
  const r = existsSync(src)
    ? spawnSync("wasm-bindgen", ["--target", "web", "--out-dir", named, "--out-name", "outpost_wasm", src], { encoding: "utf8" })
    : { status: 1, stderr: `${src} not found` };
  if (r.status === 0 && readFileSync(join(named, "outpost_wasm.js"), "utf8") === readFileSync(join(distWeb, "outpost_wasm.js"), "utf8")) {
    return join(named, "outpost_wasm_bg.wasm");
  }
  return { why: r.status === 0 ? "target wasm differs from pkg-js/dist" : r.stderr?.trim() };
}

/**
 * Starts the CDP sampling profiler on `page` (`intervalUs` between samples);
 * `stop()` resolves to its summary (`summariseProfile`).
 */
export async function startProfile(page, intervalUs = 500) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: intervalUs });
  await cdp.send("Profiler.start");
  return {
    async stop() {
      const { profile } = await cdp.send("Profiler.stop");
      await cdp.detach().catch(() => {});
      return summariseProfile(profile);
    },
  };
}

/** Self time per function and per category (ms) of a CDP CPU profile: `{ totalMs, categories, top }`. */
export function summariseProfile(p) {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map();
  // Each sample's duration is the next time delta.
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + dt);
  }
  const fns = new Map();
  const cats = {};
  for (const [id, ms] of self) {
    const cf = byId.get(id).callFrame;
    const name = cf.functionName || "(anonymous)";
    const isWasm = cf.url.includes(".wasm") || /^\$|^wasm-function/.test(name) || cf.url.startsWith("wasm://");
    const cat = name.startsWith("(") && name !== "(anonymous)" ? name : isWasm ? "wasm" : "JavaScript";
    cats[cat] = (cats[cat] ?? 0) + ms;
    const key = isWasm ? `wasm ${name}` : name.startsWith("(") && name !== "(anonymous)" ? name : `${name} ${cf.url.replace(/^.*\//, "")}:${cf.lineNumber + 1}`;
    fns.set(key, (fns.get(key) ?? 0) + ms);
  }
  const top = [...fns].sort((a, b) => b[1] - a[1]).slice(0, 25);
  return { totalMs: (p.endTime - p.startTime) / 1000, categories: cats, top };
}
