// The demo the way `./scripts/run.sh --dev-tls` serves it (README: "To open
// the demo from another machine"): a real hub process with `init --demo`'s
// configuration and `serve --dev-tls` (https:// and wss:// with its
// self-signed development certificate), real headless Chromium told to
// accept that certificate, as a user who proceeds past the warning does.
//
// Two laptops (two browser contexts) open the page over https://: each is a
// secure context, enrolls its key with the code `init --demo` wrote to
// enroll-codes.txt (over wss://, the page derives the URL from its own), goes
// live, and a note added with one page's form shows up in the other.
// Then the hub is asked for its status over https with the demo's admin
// token, from this machine (its loopback rule).
//
// Run through run.sh, which sets OUTPOST_HUB (the hub binary) and builds
// pkg-js/dist. CHROMIUM overrides /usr/bin/chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import https from "node:https";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { ARGS, executablePath } from "./profile.mjs";
import { buildDemoSite, launchHub } from "./hub.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const hubBin = process.env.OUTPOST_HUB || join(root, "target/debug/outpost-hub");
const STEP_MS = 20_000;
const run = `${process.pid}-${Date.now()}`;

let dir;
let hub;
let browser;
const contexts = [];
const pageErrors = [];
const codes = {};

before(async () => {
  assert.ok(existsSync(hubBin), `hub binary ${hubBin} missing (run.sh builds it)`);
  assert.ok(existsSync(join(root, "pkg-js/dist/web/outpost_wasm_bg.wasm")), "pkg-js/dist/web missing (run.sh builds it)");
  dir = mkdtempSync(join(tmpdir(), "outpost-e2e-tls-"));
  const site = join(dir, "site");
  mkdirSync(site);
  buildDemoSite(site);
  const cfg = join(dir, "outpost-hub.toml");
  // What scripts/run.sh does: `init --demo`, then point demo_site at the site.
  execFileSync(hubBin, ["--config", cfg, "init", "--demo"], { cwd: dir, timeout: 60_000, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  const text = readFileSync(cfg, "utf8");
  assert.match(text, /^demo_site\s*=/m, "init --demo writes demo_site");
  writeFileSync(cfg, text.replace(/^demo_site\s*=.*$/m, `demo_site = ${JSON.stringify(site)}`));
  for (const line of readFileSync(join(dir, "enroll-codes.txt"), "utf8").trim().split("\n")) {
    const [who, code] = line.trim().split(/\s+/);
    codes[who] = code;
  }
  assert.ok(codes.alice && codes.bob, `enroll-codes.txt names alice and bob: ${JSON.stringify(codes)}`);
  hub = await launchHub(hubBin, cfg, { cwd: dir, args: ["--dev-tls"] });
  assert.match(hub.base, /^https:\/\//, "the hub serves https://");
  browser = await chromium.launch({ executablePath, headless: true, args: [...ARGS, "--ignore-certificate-errors"], timeout: 60_000 });
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  if (browser) await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
  await hub?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (pageErrors.length) console.log(`# page errors:\n${pageErrors.join("\n")}`);
});

/** A laptop (its own browser context) on the demo page over https:// as `who`, enrolled with its code. */
async function laptop(who) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  contexts.push(context);
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(`${who} pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`${who} console.error: ${m.text()}`);
  });
  const q = new URLSearchParams({ as: who, code: codes[who], db: `e2e-tls-${who}-${run}` });
  await page.goto(`${hub.base}?${q}`, { timeout: 30_000 });
  await page.waitForFunction(() => window.demo?.sync, null, { timeout: 30_000 });
  return page;
}

const live = (p) => p.waitForFunction(() => window.demo.sync?.status.state === "live", null, { timeout: STEP_MS, polling: 100 });

test("two laptops enroll and sync over https:// and wss:// with the development certificate", async () => {
  const a = await laptop("alice");
  const b = await laptop("bob");
  await live(a);
  await live(b);
  // Each page is a secure context, made its key (WebCrypto) and enrolled it:
  // the hub's edge list shows that key's fingerprint for the identity.
  const edges = execFileSync(hubBin, ["--config", join(dir, "outpost-hub.toml"), "edge", "list"], { cwd: dir, timeout: 60_000, env: { ...process.env, NO_COLOR: "1" } }).toString();
  for (const [who, p] of [["alice", a], ["bob", b]]) {
    const seen = await p.evaluate(async () => {
      const me = await window.demo.db.identity(window.demo.identity);
      return { secure: window.isSecureContext, protocol: location.protocol, identity: me.identity, enrolled: me.enrolled, key: /^p256:[0-9a-f]{130}$/.test(me.publicKey), fingerprint: me.fingerprint };
    });
    const { fingerprint, ...rest } = seen;
    assert.deepEqual(rest, { secure: true, protocol: "https:", identity: who, enrolled: true, key: true }, `${who}: a secure context with its enrolled key`);
    const row = edges.split("\n").find((l) => l.trim().startsWith(who));
    assert.ok(row?.includes(fingerprint), `the hub holds ${who}'s key ${fingerprint}:\n${edges}`);
  }
  await a.fill("#title", "Over TLS");
  await a.fill("#text", "written on alice's laptop over wss://");
  await a.click("#add button[type=submit]");
  await b.waitForFunction(() => [...document.querySelectorAll("#notes .title")].some((e) => e.textContent === "Over TLS"), null, { timeout: STEP_MS });
  // The hub took both enrollments over wss:// and holds the keys now.
  const log = hub.log();
  assert.match(log, /edge authenticated.*alice|alice.*edge authenticated/, "alice's session at the hub");
  assert.match(log, /edge authenticated.*bob|bob.*edge authenticated/, "bob's session at the hub");
  assert.deepEqual(pageErrors, []);
});

/** GET `path` at the hub over https, trusting only its development certificate `ca`: `[status, body]`. */
function httpsGet(path, ca, token) {
  return new Promise((resolveGet, reject) => {
    const req = https.get(new URL(path, hub.base), { ca, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolveGet([res.statusCode, body]));
    });
    req.on("error", reject);
    req.setTimeout(STEP_MS, () => req.destroy(new Error(`no answer to ${path}`)));
  });
}

test("the hub's status over https: the demo's admin token from this machine, its command line", async () => {
  const ca = readFileSync(join(dir, "hub-data", "dev-tls-cert.pem"));
  const [code, body] = await httpsGet("status", ca, "admin-demo-token");
  assert.equal(code, 200, body);
  assert.equal(JSON.parse(body).edges_connected, 2, body);
  assert.equal((await httpsGet("status", ca))[0], 401);
  // The hub's own command finds the hub (serving.json) and its certificate.
  const out = execFileSync(hubBin, ["--config", join(dir, "outpost-hub.toml"), "status"], { cwd: dir, timeout: 60_000, env: { ...process.env, NO_COLOR: "1" } }).toString();
  assert.match(out, /at https:\/\/127\.0\.0\.1:\d+/, out);
  assert.match(out, /2 connected, 2 configured/, out);
});
