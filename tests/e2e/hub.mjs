// The hub process of the end-to-end tests that need one (sync.test.mjs,
// storage-lost.test.mjs, tls.test.mjs, ...) and the demo site it serves: one
// launcher instead of a copy per test file.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { cpSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * Fills `site` with what the hub serves for the demo: demo-site/ plus the
 * package's web build in pkg/ (what scripts/run.sh does).
 */
export function buildDemoSite(site) {
  for (const f of ["index.html", "app.js", "style.css"]) cpSync(join(root, "demo-site", f), join(site, f));
  mkdirSync(join(site, "pkg/src"), { recursive: true });
  // Every module of the package's source, as scripts/run.sh copies them (web.js imports its siblings).
  for (const f of readdirSync(join(root, "pkg-js/src")).filter((f) => f.endsWith(".js"))) cpSync(join(root, "pkg-js/src", f), join(site, "pkg/src", f));
  cpSync(join(root, "pkg-js/dist/web"), join(site, "pkg/dist/web"), { recursive: true });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `bin --config cfg serve --listen 127.0.0.1:0 ARGS` in `cwd`
 * (RUST_LOG=info, NO_COLOR=1; `args`, e.g. `["--dev-tls"]`) and waits, at
 * most `startMs`, until it logs `listening on`.
 * Resolves to `{ base, log, stop }`: `base` is `http://127.0.0.1:PORT/`
 * (`https://` when the hub serves TLS);
 * `log()` what it printed so far (trimmed to its last `maxLog / 2` characters
 * whenever it grows past `maxLog`); `stop()` sends SIGTERM, SIGKILL after
 * `killAfterMs`, and resolves once it exited. Rejects, with the log, if the
 * hub exits first or takes too long.
 */
export async function launchHub(bin, cfg, { cwd, args = [], startMs = 30_000, killAfterMs = 15_000, maxLog = 2_000_000 } = {}) {
  const child = spawn(bin, ["--config", cfg, "serve", "--listen", "127.0.0.1:0", ...args], {
    cwd,
    env: { ...process.env, RUST_LOG: "info", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const onData = (d) => {
    log += d.toString();
    if (log.length > maxLog) log = log.slice(-maxLog / 2);
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    await exited;
    clearTimeout(t);
  };
  const deadline = Date.now() + startMs;
  for (;;) {
    const m = /listening on (https?):\/\/(127\.0\.0\.1:\d+)/.exec(log.replace(/\x1b\[[0-9;]*m/g, ""));
    if (m) return { base: `${m[1]}://${m[2]}/`, log: () => log, stop };
    if (child.exitCode !== null) throw new Error(`the hub exited (${child.exitCode}):\n${log}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`the hub did not start listening within ${startMs / 1000} s:\n${log}`);
    }
    await sleep(100);
  }
}
