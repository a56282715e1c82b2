#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer; docs/testing.md,
# "Fuzzing"):
#
#   ./scripts/fuzz.sh                     # every target, 10 s each
#   ./scripts/fuzz.sh --seconds 600 frame record
#   ./scripts/fuzz.sh --list              # the target names
#
# It installs what is missing and skips what is there: the nightly toolchain
# (rustup, minimal profile) and cargo-fuzz at a pinned version. Fuzz builds
# go to target/fuzz (kept between runs); corpora to fuzz/corpus/<target>/
# (seeded by each target from real encodings), crashers to
# fuzz/artifacts/<target>/. On a crash it prints the input's path and the
# commands to reproduce and minimise it, and exits non-zero.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

CARGO_FUZZ_VERSION=0.13.2
# Sanitizer: none. The engine is #![forbid(unsafe_code)]; what libFuzzer
# catches here is panics (overflow checks and debug assertions are on), and
# without ASan the build is lighter and each run faster.
FUZZ_FLAGS=(--sanitizer none)

SECONDS_EACH=10
TARGETS=()
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds)
        SECONDS_EACH=${2:?--seconds needs a number}
        shift 2
        ;;
    --seconds=*)
        SECONDS_EACH=${1#--seconds=}
        shift
        ;;
    --list)
        ls fuzz/fuzz_targets | sed 's/\.rs$//'
        exit 0
        ;;
    -h | --help)
        sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "error: unknown option $1 (try --help)" >&2
        exit 2
        ;;
    *)
        TARGETS+=("$1")
        shift
        ;;
    esac
done
case "$SECONDS_EACH" in
'' | *[!0-9]*)
    echo "error: --seconds takes a whole number of seconds, not $SECONDS_EACH" >&2
    exit 2
    ;;
esac
if [ ${#TARGETS[@]} -eq 0 ]; then
    mapfile -t TARGETS < <(ls fuzz/fuzz_targets | sed 's/\.rs$//')
fi
for t in "${TARGETS[@]}"; do
    if [ ! -f "fuzz/fuzz_targets/$t.rs" ]; then
        echo "error: no fuzz target $t (try --list)" >&2
        exit 2
    fi
done

# ------------------------------------------------------------- install ---
if ! command -v rustup >/dev/null 2>&1; then
    echo "error: rustup is needed to install the nightly toolchain cargo-fuzz uses" >&2
    exit 1
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "nightly toolchain: present ($(rustup run nightly rustc --version))"
else
    echo "nightly toolchain: installing"
    rustup toolchain install nightly --profile minimal
fi
# libFuzzer (libfuzzer-sys) is C++: a C++ compiler, from apt if missing.
bash scripts/ensure-build-tools.sh --cxx
if cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
    echo "cargo-fuzz: present ($CARGO_FUZZ_VERSION)"
else
    echo "cargo-fuzz: installing $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# ----------------------------------------------------------------- run ---
export CARGO_TARGET_DIR="$ROOT/target/fuzz"
cd fuzz
cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"
FAILED=()
for t in "${TARGETS[@]}"; do
    echo
    echo "==> fuzz $t (${SECONDS_EACH} s)"
    mkdir -p "artifacts/$t"
    before=$(ls "artifacts/$t" | wc -l)
    status=0
    log="$CARGO_TARGET_DIR/fuzz-$t.log"
    cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        2>&1 | tee "$log" || status=${PIPESTATUS[0]}
    after=$(ls "artifacts/$t" | wc -l)
    if [ "$status" -ne 0 ] || [ "$after" -gt "$before" ]; then
        FAILED+=("$t")
        echo "FAIL: fuzz target $t (exit status $status)"
        for a in $(ls -t "artifacts/$t" | head -3); do
            echo "  input:     fuzz/artifacts/$t/$a"
            echo "  reproduce: (cd fuzz && cargo +nightly fuzz run ${FUZZ_FLAGS[*]} $t artifacts/$t/$a)"
            echo "  minimise:  (cd fuzz && cargo +nightly fuzz tmin ${FUZZ_FLAGS[*]} $t artifacts/$t/$a)"
            echo "  keep it:   cp fuzz/artifacts/$t/$a crate/tests/fuzz-regressions/$t/  (docs/testing.md, \"Fuzzing\")"
        done
    fi
done
echo
if [ ${#FAILED[@]} -ne 0 ]; then
    # Repeated at the end, where a CI log's tail shows it: what libFuzzer
    # said (its progress lines left out) and the crashing input itself
    # (base64, when small), so a failure seen only in CI can be replayed.
    for t in "${FAILED[@]}"; do
        echo "==> why fuzz target $t failed"
        grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED|RELOAD)' "$CARGO_TARGET_DIR/fuzz-$t.log" | cut -c1-400 | tail -40 || true
        a=$(ls -t "artifacts/$t" 2>/dev/null | head -1)
        if [ -n "$a" ] && [ "$(stat -c %s "artifacts/$t/$a")" -le 65536 ]; then
            echo "  crashing input fuzz/artifacts/$t/$a, base64 (decode with: base64 -d > input):"
            base64 -w 100 "artifacts/$t/$a"
        fi
    done
    echo "fuzzing: ${#FAILED[@]} of ${#TARGETS[@]} targets failed: ${FAILED[*]}"
    exit 1
fi
echo "fuzzing: ${#TARGETS[@]} targets, ${SECONDS_EACH} s each, no crash"
