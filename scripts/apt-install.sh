#!/usr/bin/env bash
# Installs Debian packages with apt-get, for the scripts that find a tool
# missing (ensure-build-tools.sh, install-browser-tools.sh): as root
# directly, otherwise through sudo; non-interactive either way.
#
#   ./scripts/apt-install.sh PACKAGE...
#
# Says what to do instead, and fails, on a machine without apt-get or, not
# being root, without sudo.
set -euo pipefail

if [ $# -eq 0 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [ $# -eq 0 ] && exit 2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: apt-get not found; install these packages (or their equivalents) yourself and run again: $*" >&2
    exit 1
fi
AS_ROOT=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "error: not root and no sudo; as root, run: apt-get install -y $*" >&2
        exit 1
    fi
    AS_ROOT=(sudo)
fi
t0=$(date +%s)
"${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
echo "installed $* in $(($(date +%s) - t0)) s"
