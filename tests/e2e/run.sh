#!/usr/bin/env bash
# Browser end-to-end tests of the npm package (step 8 of ./scripts/test.sh),
# from a bare machine with node, npm and Debian's Chromium
# (scripts/install-browser-tools.sh installs it):
#
#   bash tests/e2e/run.sh
#
# Builds pkg-js/dist if missing, packs pkg-js, installs the tarball here, runs
# idb-faults.test.mjs (Node), builds the app with Vite, then runs
# e2e.test.mjs, indexes.test.mjs,
# bundlers.test.mjs, opfs.test.mjs, owner.test.mjs, storage-lost.test.mjs, purge.test.mjs,
# hub-indexes.test.mjs, worker.test.mjs, tls.test.mjs and sync.test.mjs (the
# last six with a real hub).
# What each covers, and the environment variables (CHROMIUM, OUTPOST_HUB,
# OUTPOST_E2E_BULK_DOCS, OUTPOST_E2E_CRASH_LOOPS): docs/testing.md, "Browser
# end-to-end". Every step has a time limit.
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

echo "--> node --test idb-faults.test.mjs (the IndexedDB store over fake-indexeddb, a fault at every write)"
timeout --kill-after=15 600 node --test --test-timeout=600000 --test-reporter=spec idb-faults.test.mjs

echo "--> vite build"
timeout 300 npx --no-install vite build
ls -l dist/assets

echo "--> node --test e2e.test.mjs (Chromium: $CHROMIUM)"
timeout --kill-after=15 600 node --test --test-timeout=180000 --test-reporter=spec e2e.test.mjs

echo "--> node --test indexes.test.mjs (Chromium: $CHROMIUM)"
timeout --kill-after=15 300 node --test --test-timeout=180000 --test-reporter=spec indexes.test.mjs

echo "--> node --test bundlers.test.mjs (Vite, webpack, esbuild)"
timeout --kill-after=15 600 node --test --test-timeout=180000 --test-reporter=spec bundlers.test.mjs

echo "--> node --test opfs.test.mjs (Chromium: the OPFS store in dedicated workers)"
timeout --kill-after=15 300 node --test --test-timeout=180000 --test-reporter=spec opfs.test.mjs

echo "--> node --test owner.test.mjs (Chromium: a tab paused holding the lock, a tab closed mid-write)"
timeout --kill-after=15 300 node --test --test-timeout=180000 --test-reporter=spec owner.test.mjs

if [ -z "${OUTPOST_HUB:-}" ]; then
    echo "--> cargo build -p outpost-hub (for the sync test)"
    timeout 1800 cargo build -p outpost-hub --manifest-path "$ROOT/Cargo.toml"
    TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
    export OUTPOST_HUB="$TARGET_DIR/debug/outpost-hub"
fi
echo "--> node --test storage-lost.test.mjs (hub: $OUTPOST_HUB)"
timeout --kill-after=15 1200 node --test --test-timeout=900000 --test-reporter=spec storage-lost.test.mjs
echo "--> node --test purge.test.mjs (hub: $OUTPOST_HUB)"
timeout --kill-after=15 600 node --test --test-timeout=300000 --test-reporter=spec purge.test.mjs
echo "--> node --test hub-indexes.test.mjs (hub: $OUTPOST_HUB)"
timeout --kill-after=15 300 node --test --test-timeout=180000 --test-reporter=spec hub-indexes.test.mjs
echo "--> node --test worker.test.mjs (hub: $OUTPOST_HUB)"
timeout --kill-after=15 300 node --test --test-timeout=180000 --test-reporter=spec worker.test.mjs
echo "--> node --test tls.test.mjs (hub: $OUTPOST_HUB, serve --dev-tls)"
timeout --kill-after=15 300 node --test --test-timeout=180000 --test-reporter=spec tls.test.mjs
echo "--> node --test sync.test.mjs (hub: $OUTPOST_HUB)"
timeout --kill-after=15 900 node --test --test-timeout=420000 --test-reporter=spec sync.test.mjs
