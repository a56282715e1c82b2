#!/usr/bin/env bash
# Makes sure wasm-bindgen-cli (wasm-bindgen, wasm-bindgen-test-runner) is
# installed at exactly the version of the wasm-bindgen crate in Cargo.lock, so
# the CLI and the library never drift (a mismatch fails with "schema version"
# errors). Skips the install when the right version is already there.
#
#   ./scripts/ensure-wasm-bindgen.sh
#
# Used by scripts/install-browser-tools.sh and scripts/build-wasm.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The version of the wasm-bindgen crate in Cargo.lock (the line after its name).
want=$(awk '
    $0 == "name = \"wasm-bindgen\"" { found = 1; next }
    found && /^version = / { gsub(/"/, "", $3); print $3; exit }
' Cargo.lock)
if [ -z "$want" ]; then
    echo "error: no wasm-bindgen package in Cargo.lock" >&2
    exit 1
fi
have=
if command -v wasm-bindgen >/dev/null 2>&1; then
    have=$(wasm-bindgen --version | awk '{ print $2 }')
fi
if [ "$have" = "$want" ] && command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
    echo "wasm-bindgen-cli $want: present"
else
    echo "wasm-bindgen-cli: installing $want (found: ${have:-none})"
    t0=$(date +%s)
    # Without --locked: the CLI's own lock file pins crates the registry here lacks.
    cargo install wasm-bindgen-cli --version "$want" --force
    echo "wasm-bindgen-cli $want: installed in $(($(date +%s) - t0)) s"
fi
