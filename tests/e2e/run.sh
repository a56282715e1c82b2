#!/usr/bin/env bash
# Browser end-to-end test of the npm package, from a bare machine with node,
# npm and Debian's Chromium (scripts/install-browser-tools.sh installs it):
#
#   bash tests/e2e/run.sh
#
# 1. builds pkg-js/dist with scripts/build-wasm.sh if it is missing;
# 2. packs pkg-js (npm pack) into a temporary directory;
# 3. npm ci here (playwright-core and vite, pinned in package-lock.json);
# 4. installs the tarball with --no-save (package.json and the lock untouched);
# 5. vite build of app/ (index.html and lab.html) into dist/;
# 6. node --test e2e.test.mjs: serves dist/ on 127.0.0.1 (a free port) and
#    drives /usr/bin/chromium with playwright-core; the screenshot goes to
#    tests/e2e/artifacts/page.png;
# 7. node --test bundlers.test.mjs: the same tiny app built from the tarball
#    with Vite, webpack and esbuild (the inline entry, and initOutpost with
#    the file loader), each loaded in headless Chromium;
# 8. cargo build -p outpost-hub (a no-op when it is up to date), then
#    node --test storage-lost.test.mjs: a database Chromium discarded (a torn
#    LevelDB log, a clean session, a restart) is reported as storage_lost,
#    without and with a hub, and the crash loop (Chromium killed mid-write,
#    OUTPOST_E2E_CRASH_LOOPS times, default 4); then
#    node --test sync.test.mjs: a real hub process on 127.0.0.1 serving the
#    demo site (demo-site/ + the package's web build), two browser contexts
#    syncing through it (offline edits, a conflict and its resolution, a
#    refused write), and a 100,000-document initial sync checked for long
#    main-thread tasks.
# Every step has a time limit. CHROMIUM overrides the browser's path;
# OUTPOST_HUB a hub binary to use instead of target/debug/outpost-hub;
# OUTPOST_E2E_BULK_DOCS the size of the initial sync (0 skips it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
QUIET=(--no-audit --no-fund --loglevel=error)

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is needed for the browser end-to-end test" >&2
        exit 1
    fi
done
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    if [ -f "$ROOT/scripts/install-browser-tools.sh" ]; then
        bash "$ROOT/scripts/install-browser-tools.sh"
    fi
    if [ ! -x "$CHROMIUM" ]; then
        echo "error: $CHROMIUM not found (apt-get install -y chromium)" >&2
        exit 1
    fi
fi

if [ ! -f "$ROOT/pkg-js/dist/web/outpost_wasm_bg.wasm" ] || [ ! -f "$ROOT/pkg-js/dist/nodejs/outpost_wasm_bg.wasm" ]; then
    echo "--> pkg-js/dist missing: scripts/build-wasm.sh"
    bash "$ROOT/scripts/build-wasm.sh"
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/outpost-e2e-XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

echo "--> npm pack pkg-js"
TARBALL_NAME="$(cd "$ROOT/pkg-js" && timeout 120 npm pack --pack-destination "$TMP" "${QUIET[@]}" | tail -n 1)"
TARBALL="$TMP/$TARBALL_NAME"
[ -f "$TARBALL" ] || { echo "error: npm pack did not produce $TARBALL" >&2; exit 1; }
echo "    $TARBALL ($(wc -c <"$TARBALL") bytes)"

cd "$HERE"
if [ -f package-lock.json ]; then
    echo "--> npm ci (tests/e2e)"
    timeout 600 npm ci --prefer-offline "${QUIET[@]}"
else
    echo "--> npm install (tests/e2e; no package-lock.json yet: commit the one it writes)"
    timeout 600 npm install "${QUIET[@]}"
fi

echo "--> npm install --no-save the tarball"
LOCK_BEFORE="$(sha256sum package.json package-lock.json)"
timeout 300 npm install --no-save --offline "${QUIET[@]}" "$TARBALL"
if [ "$LOCK_BEFORE" != "$(sha256sum package.json package-lock.json)" ]; then
    echo "error: installing the tarball changed package.json or package-lock.json" >&2
    exit 1
fi
node -e 'const p = require("@outpost/db/package.json"); console.log(`    ${p.name}@${p.version} installed`)'

echo "--> vite build"
timeout 300 npx --no-install vite build
ls -l dist/assets

echo "--> node --test e2e.test.mjs (Chromium: $CHROMIUM)"
timeout --kill-after=15 600 node --test --test-timeout=180000 --test-reporter=spec e2e.test.mjs

echo "--> node --test bundlers.test.mjs (Vite, webpack, esbuild)"
timeout --kill-after=15 600 node --test --test-timeout=180000 --test-reporter=spec bundlers.test.mjs

if [ -z "${OUTPOST_HUB:-}" ]; then
    echo "--> cargo build -p outpost-hub (for the sync test)"
    timeout 1800 cargo build -p outpost-hub --manifest-path "$ROOT/Cargo.toml"
    TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
    export OUTPOST_HUB="$TARGET_DIR/debug/outpost-hub"
fi
echo "--> node --test storage-lost.test.mjs (hub: $OUTPOST_HUB)"
timeout --kill-after=15 900 node --test --test-timeout=420000 --test-reporter=spec storage-lost.test.mjs
echo "--> node --test sync.test.mjs (hub: $OUTPOST_HUB)"
timeout --kill-after=15 900 node --test --test-timeout=420000 --test-reporter=spec sync.test.mjs
