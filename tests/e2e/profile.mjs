// Chromium for the end-to-end tests: its path and command line (every test
// file), and browser sessions on a persistent profile (a directory whose files
// the tests then read or tamper with: storage-lost.test.mjs, purge.test.mjs).
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

/**
 * The source of `async (what, f, ms = 20000) => …`, a poll of `f` until it
 * is truthy (at most `ms`), for `page.evaluate` (rebuilt there with
 * `(0, eval)`: functions do not cross into the page).
 */
export const waitUntilSource = `async (what, f, ms = 20000) => {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}`;

export const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
export const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/**
 * A browser session on `profile`: runs `fn(page)` on the lab page of `base`
 * (no page error allowed), then closes the browser cleanly. Every wait is
 * bounded by `stepMs`; `extraArgs` go to Chromium's command line.
 */
export async function session(profile, base, fn, stepMs = 20_000, extraArgs = []) {
  const context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: [...ARGS, ...extraArgs], timeout: 60_000 });
  try {
    context.setDefaultTimeout(stepMs);
    const page = context.pages()[0] ?? (await context.newPage());
    const errors = [];
    page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
    await page.goto(new URL("lab.html", base).href, { timeout: 30_000 });
    await page.waitForFunction(() => window.lab, null, { timeout: 30_000 });
    const r = await fn(page);
    assert.deepEqual(errors, []);
    return r;
  } finally {
    await context.close();
  }
}
