// The hub process of the end-to-end tests that need one (sync.test.mjs,
// storage-lost.test.mjs): one launcher instead of a copy per test file.
import { spawn } from "node:child_process";
import { once } from "node:events";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `bin --config cfg serve --listen 127.0.0.1:0` in `cwd` (RUST_LOG=info,
 * NO_COLOR=1) and waits, at most `startMs`, until it logs `listening on`.
 * Resolves to `{ base, log, stop }`: `base` is `http://127.0.0.1:PORT/`;
 * `log()` what it printed so far (trimmed to its last `maxLog / 2` characters
 * whenever it grows past `maxLog`); `stop()` sends SIGTERM, SIGKILL after
 * `killAfterMs`, and resolves once it exited. Rejects, with the log, if the
 * hub exits first or takes too long.
 */
export async function launchHub(bin, cfg, { cwd, startMs = 30_000, killAfterMs = 15_000, maxLog = 2_000_000 } = {}) {
  const child = spawn(bin, ["--config", cfg, "serve", "--listen", "127.0.0.1:0"], {
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
    const m = /listening on http:\/\/(127\.0\.0\.1:\d+)/.exec(log.replace(/\x1b\[[0-9;]*m/g, ""));
    if (m) return { base: `http://${m[1]}/`, log: () => log, stop };
    if (child.exitCode !== null) throw new Error(`the hub exited (${child.exitCode}):\n${log}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`the hub did not start listening within ${startMs / 1000} s:\n${log}`);
    }
    await sleep(100);
  }
}
