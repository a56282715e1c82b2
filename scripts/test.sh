#!/usr/bin/env bash
# The whole test suite of Outpost, from a bare machine with a Rust toolchain
# (what CI runs: .ci/run):
#
#   ./scripts/test.sh                 # stops at the first failing step
#   ./scripts/test.sh --keep-going    # runs every step even after a failure
#
# It installs what is missing (wasm32 target, rustfmt, clippy; Chromium,
# ChromeDriver and wasm-bindgen-cli for the browser steps), then runs: format,
# clippy (native and wasm32), the wasm32 build of the engine, the native
# tests, the browser tests, the npm package's Node tests and the browser
# end-to-end tests, and prints a summary. What each step covers, and how to
# run one part: docs/testing.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

KEEP_GOING=0
for arg in "$@"; do
    case "$arg" in
    --keep-going | -k) KEEP_GOING=1 ;;
    -h | --help)
        sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "error: unknown argument $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

STEPS=()
FAILED=0
START=$(date +%s)

header() {
    echo
    echo "==> $*"
}

summary() {
    local status=$1
    echo
    echo "==> Summary ($(($(date +%s) - START)) s in all)"
    local s
    for s in "${STEPS[@]}"; do
        echo "    $s"
    done
    if [ "$status" -eq 0 ]; then
        echo "    all steps passed"
    else
        echo "    FAILED (exit status $status)"
    fi
}

# step NAME COMMAND...: runs one step with a header, records its time and result.
step() {
    local name=$1
    shift
    header "$name: $*"
    local t0 status=0
    t0=$(date +%s)
    "$@" || status=$?
    local took=$(($(date +%s) - t0))
    if [ "$status" -ne 0 ]; then
        STEPS+=("FAIL  $name (${took} s)")
        FAILED=$status
        if [ "$KEEP_GOING" -eq 0 ]; then
            summary "$status"
            exit "$status"
        fi
        return 0
    fi
    STEPS+=("ok    $name (${took} s)")
}

# ---------------------------------------------------------------- set-up ---
header "Toolchain"
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust with rustup first (https://rustup.rs)" >&2
    exit 1
fi
cargo --version
rustc --version
if command -v rustup >/dev/null 2>&1; then
    if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        echo "wasm32-unknown-unknown target: present"
    else
        echo "wasm32-unknown-unknown target: installing"
        rustup target add wasm32-unknown-unknown
    fi
    for c in rustfmt clippy; do
        if rustup component list --installed | grep -q "^$c"; then
            echo "$c: present"
        else
            echo "$c: installing"
            rustup component add "$c"
        fi
    done
else
    echo "rustup not found: assuming the wasm32 target, rustfmt and clippy are installed"
fi
# A C compiler and make, for the crates that build C (jemalloc, ring, SQLite).
bash scripts/ensure-build-tools.sh

# ----------------------------------------------------------------- steps ---
# Steps 1-5 of docs/testing.md.
step "format" cargo fmt --all --check
step "clippy (native)" cargo clippy --workspace --all-targets -- -D warnings
step "clippy (wasm32)" cargo clippy -p outpost --target wasm32-unknown-unknown --all-targets -- -D warnings
step "build (wasm32)" cargo build -p outpost --target wasm32-unknown-unknown
step "tests (native)" cargo test --workspace -- --show-output
# Every fuzz target for 10 s (nightly + cargo-fuzz, installed if missing; docs/testing.md, "Fuzzing").
step "fuzz (short)" bash scripts/fuzz.sh --seconds 10

# --------------------------------------------------------- browser tests ---
# Step 6 of docs/testing.md: crate/tests/browser/ and browser_log.rs in
# headless Chromium.
browser_tests() {
    ./scripts/install-browser-tools.sh || return $?
    CHROMEDRIVER=/usr/bin/chromedriver \
        CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
        WASM_BINDGEN_TEST_WEBDRIVER_JSON="$PWD/webdriver.json" \
        WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-600}" \
        cargo test -p outpost --target wasm32-unknown-unknown --test browser --test browser_log
}
step "browser tests (wasm32, headless Chromium)" browser_tests

# ---------------------------------------------------- npm package (Node) ---
# Step 7 of docs/testing.md: the bindings built into pkg-js, its Node tests.
npm_package_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "error: node and npm are needed for the npm package tests" >&2
        return 1
    fi
    if [ -f scripts/install-browser-tools.sh ]; then
        bash scripts/install-browser-tools.sh || return $?
    fi
    cargo clippy -p outpost-wasm --target wasm32-unknown-unknown -- -D warnings || return $?
    bash scripts/build-wasm.sh || return $?
    # pkg-js/test/sync.test.mjs replicates through a real hub process;
    # hub-safety.test.mjs races native edges (the hub_claim example) too.
    cargo build -p outpost-hub || return $?
    cargo build -p outpost-client --example hub_claim || return $?
    local hub
    hub="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/outpost-hub"
    (cd pkg-js && OUTPOST_HUB="$hub" node --test test/*.test.mjs) || return $?
}
step "npm package (Node)" npm_package_node

# ------------------------------------- browser end-to-end (npm package) ---
# Step 8 of docs/testing.md: tests/e2e/run.sh.
step "browser end-to-end (Playwright + Vite)" bash tests/e2e/run.sh

summary "$FAILED"
exit "$FAILED"
