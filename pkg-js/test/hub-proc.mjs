// A real hub process for the Node tests: the newest built `outpost-hub`
// (or $OUTPOST_HUB), started on a free port with a given configuration.
import { spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { once } from "node:events";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** The newest built hub binary, or undefined. */
export function hubBinary() {
  if (process.env.OUTPOST_HUB) return process.env.OUTPOST_HUB;
  const target = process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, "target");
  const found = ["debug", "release"]
    .map((p) => join(target, p, "outpost-hub"))
    .filter((f) => existsSync(f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return found[0];
}

/**
 * Starts `hub --config cfg serve` on a free port of 127.0.0.1 (stopped when
 * the test `t` ends); resolves once it listens, with its address, its log
 * so far (`log()`) and `stop()` (SIGTERM, then SIGKILL after 10 s).
 */
export async function startHub(t, hub, cfg) {
  const proc = spawn(hub, ["--config", cfg, "serve", "--listen", "127.0.0.1:0"], {
    env: { ...process.env, NO_COLOR: "1", RUST_LOG: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  proc.stdout.on("data", (d) => (log += d));
  proc.stderr.on("data", (d) => (log += d));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = once(proc, "exit");
      proc.kill("SIGTERM");
      const k = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(k);
    }
  };
  t.after(stop);
  const deadline = Date.now() + 30_000;
  let addr;
  while (!(addr = /listening on http:\/\/(\S+)/.exec(log.replace(/\x1b\[[0-9;]*m/g, ""))?.[1])) {
    assert.ok(proc.exitCode === null, `the hub exited:\n${log}`);
    assert.ok(Date.now() < deadline, `the hub did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { addr, log: () => log, stop };
}
