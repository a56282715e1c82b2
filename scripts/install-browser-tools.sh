#!/usr/bin/env bash
# Installs what the browser tests need, skipping what is already present:
#
#   - Debian's chromium and chromium-driver (headless Chromium + ChromeDriver);
#   - wasm-bindgen-cli (wasm-bindgen-test-runner) at exactly the wasm-bindgen
#     version Cargo.lock pins, so the CLI and the library never drift (a
#     mismatch fails with "schema version" errors).
#
#   ./scripts/install-browser-tools.sh
#
# Idempotent: a second run only checks. See ../shared/TOOLCHAIN.md for why
# wasm-bindgen-cli is installed without --locked and why Debian's binaryen is
# not installed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# ------------------------------------------------------------ chromium ---
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "chromium and chromedriver: present"
else
    echo "chromium and chromedriver: installing (apt-get)"
    bash scripts/apt-install.sh chromium chromium-driver
fi
# Debian's launcher script may print "[: ...: unexpected operator": harmless.
/usr/bin/chromium --version 2>/dev/null || true
/usr/bin/chromedriver --version

# ---------------------------------------------------- wasm-bindgen-cli ---
bash scripts/ensure-wasm-bindgen.sh
wasm-bindgen --version
