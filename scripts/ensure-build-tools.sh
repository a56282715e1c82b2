#!/usr/bin/env bash
# Installs the native build tools the crates need, from apt, skipping what is
# already present:
#
#   - a C compiler (`cc`): ring (rustls), bundled SQLite, QuickJS;
#   - `make`: jemalloc, the hub's allocator (tikv-jemalloc-sys runs its
#     configure script and make);
#   - with --cxx, a C++ compiler (`c++`): libFuzzer, for scripts/fuzz.sh.
#
#   ./scripts/ensure-build-tools.sh [--cxx]
#
# Idempotent: a second run only checks.
set -euo pipefail

CXX_TOO=0
for arg in "$@"; do
    case "$arg" in
    --cxx) CXX_TOO=1 ;;
    -h | --help)
        sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "error: unknown argument $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

# tool (command) and the Debian package that provides it.
WANT=("cc gcc" "make make")
if [ "$CXX_TOO" -eq 1 ]; then
    WANT+=("c++ g++")
fi

MISSING=()
for w in "${WANT[@]}"; do
    read -r tool pkg <<<"$w"
    if command -v "$tool" >/dev/null 2>&1; then
        echo "$tool: present ($(command -v "$tool"))"
    else
        echo "$tool: missing, installing $pkg (apt-get)"
        MISSING+=("$pkg")
    fi
done
if [ ${#MISSING[@]} -gt 0 ]; then
    bash "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" "${MISSING[@]}"
fi
