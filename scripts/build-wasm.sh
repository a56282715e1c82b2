#!/usr/bin/env bash
# Builds the WebAssembly package of Outpost into pkg-js/dist/:
#
#   ./scripts/build-wasm.sh
#
# Reads its settings from wasm-pack.toml (profile, features, targets, size
# budget). Compiles the wasm/ crate (outpost-wasm) for wasm32-unknown-unknown
# with the wasm-release profile, runs the local wasm-bindgen CLI once per target
# (web, nodejs) into pkg-js/dist/<target>/, and prints the gzip size of the
# .wasm against the budget (and the sizes of its sections).
#
# Needs wasm-bindgen-cli at exactly the version of wasm-bindgen in Cargo.lock:
# scripts/install-browser-tools.sh installs it; if it is missing or of another
# version, this script installs it (cargo install, a few minutes, once).
# Never uses Debian's binaryen (see ../shared/TOOLCHAIN.md).
#
# Over the budget it fails (the test suite, CI), unless
# OUTPOST_WASM_OVER_BUDGET=warn: ./scripts/run.sh sets it, since the budget
# guards the package's size for its developers and should never stop the demo.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONF=wasm-pack.toml
if [ ! -f "$CONF" ]; then
    echo "error: $CONF not found" >&2
    exit 1
fi

# conf SECTION KEY: the value of KEY in [SECTION] of wasm-pack.toml, without
# quotes and trailing comments (empty if absent).
conf() {
    awk -v sec="[$1]" -v key="$2" '
        /^[[:space:]]*\[/ { in_sec = ($0 ~ "^[[:space:]]*" "\\[" substr(sec, 2, length(sec) - 2) "\\]") ; next }
        in_sec {
            line = $0
            sub(/^[[:space:]]+/, "", line)
            if (index(line, key) != 1) next
            rest = substr(line, length(key) + 1)
            if (rest !~ /^[[:space:]]*=/) next
            sub(/^[[:space:]]*=[[:space:]]*/, "", rest)
            if (rest ~ /^"/) { sub(/^"/, "", rest); sub(/".*$/, "", rest) }
            else { sub(/[[:space:]]*#.*$/, "", rest); sub(/[[:space:]]+$/, "", rest) }
            print rest
            exit
        }
    ' "$CONF"
}

PACKAGE=$(conf build package)
PROFILE=$(conf build profile)
FEATURES=$(conf build features)
NO_DEFAULT=$(conf build no-default-features)
TARGETS=$(conf build targets)
OUT_DIR=$(conf build out-dir)
OUT_NAME=$(conf build out-name)
REMOVE_NAMES=$(conf build remove-name-section)
OPT_ENABLED=$(conf wasm-opt enabled)
OPT_ARGS=$(conf wasm-opt args)
BUDGET_KIB=$(conf size budget-gzip-kib)
FAIL_OVER=$(conf size fail-over-budget)
: "${PACKAGE:?missing build.package in $CONF}" "${PROFILE:?missing build.profile}"
: "${TARGETS:?missing build.targets}" "${OUT_DIR:?missing build.out-dir}" "${OUT_NAME:?missing build.out-name}"
: "${BUDGET_KIB:?missing size.budget-gzip-kib}"

# ------------------------------------------------------------ toolchain ---
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "wasm32-unknown-unknown target: installing"
    rustup target add wasm32-unknown-unknown
fi

bash scripts/ensure-wasm-bindgen.sh

# ---------------------------------------------------------------- build ---
cargo_args=(build -p "$PACKAGE" --target wasm32-unknown-unknown --profile "$PROFILE")
if [ "$NO_DEFAULT" = "true" ]; then
    cargo_args+=(--no-default-features)
fi
if [ -n "$FEATURES" ]; then
    cargo_args+=(--features "$FEATURES")
fi
# The shipped bytes do not depend on where this machine keeps cargo's
# registry: the panic locations of dependencies name their source files
# (about 30 paths under $CARGO_HOME/registry/src/<index>/), so a longer home
# directory made a larger .wasm. Remapped to one short prefix (the size is then
# the same on every machine). Encoded flags: 0x1f-separated, so a path with
# spaces stays one argument; the flags of RUSTFLAGS are kept.
registry_src="${CARGO_HOME:-${HOME:-}/.cargo}/registry/src"
remap="--remap-path-prefix=$registry_src=/cargo-registry"
if [ -n "${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
    export CARGO_ENCODED_RUSTFLAGS="$CARGO_ENCODED_RUSTFLAGS"$'\x1f'"$remap"
else
    encoded=""
    read -r -a user_flags <<<"${RUSTFLAGS:-}"
    for f in "${user_flags[@]}"; do
        encoded+="$f"$'\x1f'
    done
    export CARGO_ENCODED_RUSTFLAGS="$encoded$remap"
fi
echo "==> cargo ${cargo_args[*]} (paths under $registry_src remapped)"
cargo "${cargo_args[@]}"
unset CARGO_ENCODED_RUSTFLAGS

TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
WASM="$TARGET_DIR/wasm32-unknown-unknown/$PROFILE/${PACKAGE//-/_}.wasm"
if [ ! -f "$WASM" ]; then
    echo "error: $WASM was not built" >&2
    exit 1
fi

bindgen_args=()
if [ "$REMOVE_NAMES" = "true" ]; then
    bindgen_args+=(--remove-name-section --remove-producers-section)
fi
for t in $TARGETS; do
    dir="$OUT_DIR/$t"
    rm -rf "$dir"
    echo "==> wasm-bindgen --target $t ${bindgen_args[*]} --out-dir $dir --out-name $OUT_NAME"
    wasm-bindgen --target "$t" "${bindgen_args[@]}" --out-dir "$dir" --out-name "$OUT_NAME" "$WASM"
    if [ "$OPT_ENABLED" = "true" ]; then
        # shellcheck disable=SC2086 # OPT_ARGS is a list of flags
        wasm-opt $OPT_ARGS -o "$dir/${OUT_NAME}_bg.wasm" "$dir/${OUT_NAME}_bg.wasm"
    fi
    # The package is "type": "module"; the nodejs target's glue is CommonJS.
    if [ "$t" = "nodejs" ]; then
        echo '{ "type": "commonjs" }' >"$dir/package.json"
    fi
    rm -f "$dir/.gitignore"
    # The .wasm inlined as base64 for the package's `@outpost/db/inline`
    # entry (bundlers that do not follow new URL(..., import.meta.url)).
    if [ "$t" = "web" ]; then
        {
            echo "// Generated by scripts/build-wasm.sh: ${OUT_NAME}_bg.wasm as base64 (the @outpost/db/inline entry)."
            printf 'export const wasmBase64 = "%s";\n' "$(base64 -w 0 "$dir/${OUT_NAME}_bg.wasm")"
        } >"$dir/${OUT_NAME}_inline.js"
    fi
done

# ----------------------------------------------------------------- size ---
first=$(echo "$TARGETS" | awk '{ print $1 }')
out_wasm="$OUT_DIR/$first/${OUT_NAME}_bg.wasm"
raw=$(wc -c <"$out_wasm")
gz=$(gzip -9 -c "$out_wasm" | wc -c)
budget=$((BUDGET_KIB * 1024))
echo
echo "==> Size of $out_wasm"
if command -v node >/dev/null 2>&1 && [ -f pkg-js/tools/wasm-sections.mjs ]; then
    node pkg-js/tools/wasm-sections.mjs "$out_wasm" --top 0 || true
    # What the code is made of: the same module with its (demangled) names kept.
    named=$(mktemp -d)
    if wasm-bindgen --target web --out-dir "$named" --out-name named "$WASM"; then
        node pkg-js/tools/wasm-sections.mjs "$named/named_bg.wasm" --no-sections --top 12 || true
    fi
    rm -rf "$named"
fi
printf '    raw  %7d bytes (%d KiB)\n' "$raw" $((raw / 1024))
printf '    gzip %7d bytes (%d KiB) of a budget of %d KiB (%d%%)\n' \
    "$gz" $((gz / 1024)) "$BUDGET_KIB" $((gz * 100 / budget))
if [ "$gz" -gt "$budget" ]; then
    echo "    OVER BUDGET by $((gz - budget)) bytes"
    if [ "$FAIL_OVER" = "true" ] && [ "${OUTPOST_WASM_OVER_BUDGET:-fail}" != "warn" ]; then
        exit 1
    fi
fi
