#!/usr/bin/env bash
# The main command of Outpost: the hub serving the demo web app, where notes
# written in one browser window show up in another.
#
#   ./scripts/run.sh                  # build, write the demo config if absent, serve
#   ./scripts/run.sh --port 4100      # another port (default 4000)
#   ./scripts/run.sh --host 0.0.0.0 --dev-tls   # reachable from other machines, over https
#   ./scripts/run.sh --help
#   ./scripts/run.sh cli [ARGS...]    # the `outpost` command-line tool (no ARGS: its demo)
#   ./scripts/run.sh hub [ARGS...]    # `outpost-hub` on the demo config (status, edge list, ...)
#   ./scripts/run.sh --dir DIR hub status   # the same on another demo directory
#
# Needs a Rust toolchain (rustup, cargo); the first run also installs the
# wasm32 target and wasm-bindgen-cli (scripts/build-wasm.sh, a few minutes)
# and fetches the crates. Later runs skip what is already built.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
DEMO_DIR="${OUTPOST_DEMO_DIR:-./outpost-hub-demo}"
PORT=4000
HOST=127.0.0.1
DEV_TLS=0

usage() {
    cat <<EOF
Usage: ./scripts/run.sh [--port N] [--host ADDR] [--dev-tls] [--dir DIR]
       ./scripts/run.sh cli [ARGS...]
       ./scripts/run.sh [--dir DIR] hub [--dir DIR] [ARGS...]

With no command: runs the Outpost hub with the demo web app.
  1. builds the WebAssembly package (scripts/build-wasm.sh; skipped when
     pkg-js/dist is newer than the sources) and the hub (cargo build
     --release -p outpost-hub);
  2. copies the package's web build into demo-site/pkg/ (the page imports it);
  3. writes the demo configuration DIR/outpost-hub.toml if it is absent
     (outpost-hub init --demo: database "main", edges alice and bob, both
     reading and writing notes/, each with a one-time enrollment code kept
     in DIR/enroll-codes.txt and printed below; conflict policy "manual" for
     the collection Notes);
  4. serves it: open http://HOST:PORT/ in two windows, pick alice in one and
     bob in the other; notes, edits and deletes flow between them; "work
     offline" in both, edit the same note, go back online: the conflict shows
     with a "keep this one" button. Ctrl-C stops the hub.

Options:
  --port N      listen on port N (default 4000)
  --host ADDR   listen on ADDR (default 127.0.0.1; 0.0.0.0 for other machines,
                with --dev-tls: browsers give the page's keys (WebCrypto) only
                to https:// pages or to localhost; the demo's admin token
                works only from this machine)
  --dev-tls     serve https:// and wss:// with a self-signed development
                certificate (made once in the hub's data directory under
                DIR; it names localhost and 127.0.0.1, so a browser on
                another machine warns once and may be told to proceed: a
                demo, not production)
  --dir DIR     demo configuration and hub data (default ./outpost-hub-demo,
                or \$OUTPOST_DEMO_DIR)
  -h, --help    this help

Commands:
  cli [ARGS...]  builds and runs the \`outpost\` command-line tool (release) on
                 ./outpost-data (or --db DIR / \$OUTPOST_DB); with no ARGS, a
                 short demo: import scripts/sample.jsonl, get, scan, stats,
                 check. \`./scripts/run.sh cli --help\` lists its commands.
  hub [ARGS...]  runs \`outpost-hub --config DIR/outpost-hub.toml ARGS\`, e.g.
                 \`./scripts/run.sh hub status\` (finds the running hub
                 whatever --port, --host or --dev-tls it was started with),
                 \`./scripts/run.sh hub edge list\`,
                 \`./scripts/run.sh hub --dir /tmp/demo2 status\`.
EOF
}

need_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found; install Rust with rustup first (https://rustup.rs)" >&2
        exit 1
    fi
}

build_hub() {
    bash "$ROOT/scripts/ensure-build-tools.sh" >&2
    echo "==> Building the hub (cargo build --release -p outpost-hub)" >&2
    cargo build --release -p outpost-hub --manifest-path "$ROOT/Cargo.toml" >&2
}

# ------------------------------------------------------------------ cli ---
cli() {
    need_cargo
    echo "==> Building the outpost CLI (release)" >&2
    cargo build --release -p outpost-cli --manifest-path "$ROOT/Cargo.toml" >&2
    local bin="$TARGET/release/outpost"
    if [ "$#" -gt 0 ]; then
        exec "$bin" "$@"
    fi
    local db="${OUTPOST_DB:-./outpost-data}"
    export OUTPOST_DB="$db"
    echo
    echo "==> Demo of the outpost CLI on the database directory $db"
    echo
    echo "\$ outpost import scripts/sample.jsonl"
    "$bin" import "$ROOT/scripts/sample.jsonl"
    echo
    echo "\$ outpost put notes/welcome '{\"text\":\"Hello from Outpost\"}' --collection Notes"
    "$bin" put notes/welcome '{"text":"Hello from Outpost"}' --collection Notes
    echo
    echo "\$ outpost get patients/dr-7/0003"
    "$bin" get patients/dr-7/0003
    echo
    echo "\$ outpost scan --prefix patients/dr-7/ --limit 3"
    "$bin" scan --prefix patients/dr-7/ --limit 3
    echo
    echo "\$ outpost stats"
    "$bin" stats
    echo
    echo "\$ outpost check"
    "$bin" check
    cat <<EOF

==> Done. The database is in $db. Try:

  ./scripts/run.sh cli --help                          every command, with examples
  ./scripts/run.sh cli scan --prefix invoices/         documents by id prefix (JSON lines)
  ./scripts/run.sh cli changes --since 0               the changes feed, deletions included
  ./scripts/run.sh cli export backup.jsonl             every document, as JSON lines

or use the binary directly: $bin (set OUTPOST_DB or --db to choose the directory).
EOF
}

# ----------------------------------------------------------- arguments ---
unknown_argument() {
    local hint
    case "$1" in
        status | edge | init | serve)
            hint="an outpost-hub command: ./scripts/run.sh hub $*" ;;
        import | export)
            hint="the CLI's: ./scripts/run.sh cli $* (on ./outpost-data), or the hub's: ./scripts/run.sh hub $* (on the demo hub's database; export works while the hub runs, import needs it stopped)" ;;
        put | get | delete | scan | changes | stats | check)
            hint="an outpost CLI command: ./scripts/run.sh cli $*" ;;
        *)
            hint="see ./scripts/run.sh --help" ;;
    esac
    echo "error: unknown argument $1 ($hint)" >&2
    exit 2
}

# Options first (--port, --host, --dev-tls, --dir), then an optional command (cli, hub).
COMMAND=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --port)
            PORT="${2:?--port needs a number}"
            shift 2
            ;;
        --host)
            HOST="${2:?--host needs an address}"
            shift 2
            ;;
        --dev-tls)
            DEV_TLS=1
            shift
            ;;
        --dir)
            DEMO_DIR="${2:?--dir needs a directory}"
            shift 2
            ;;
        cli | hub)
            COMMAND="$1"
            shift
            break
            ;;
        *)
            unknown_argument "$@"
            ;;
    esac
done

case "$COMMAND" in
    cli)
        cli "$@"
        exit 0
        ;;
    hub)
        # `hub --dir DIR ARGS...` works too.
        while [ "$#" -gt 0 ] && [ "$1" = "--dir" ]; do
            DEMO_DIR="${2:?--dir needs a directory}"
            shift 2
        done
        CONFIG="$DEMO_DIR/outpost-hub.toml"
        case "${1:-}" in
            init | -h | --help | help | -V | --version) ;;
            *)
                if [ ! -f "$CONFIG" ]; then
                    echo "error: no demo configuration $CONFIG (start the demo once with ./scripts/run.sh --dir $DEMO_DIR, or pass --dir DIR)" >&2
                    exit 1
                fi
                ;;
        esac
        need_cargo
        build_hub
        # What `hub status` suggests when no hub answers: this script.
        if [ "$DEMO_DIR" = "./outpost-hub-demo" ]; then
            export OUTPOST_HUB_START_HINT="./scripts/run.sh"
        else
            export OUTPOST_HUB_START_HINT="./scripts/run.sh --dir $DEMO_DIR"
        fi
        exec "$TARGET/release/outpost-hub" --config "$CONFIG" "$@"
        ;;
esac
case "$PORT" in
    '' | *[!0-9]*)
        echo "error: --port needs a number, not $PORT" >&2
        exit 2
        ;;
esac

need_cargo

# ------------------------------------------------------ wasm package ---
WEB_WASM="$ROOT/pkg-js/dist/web/outpost_wasm_bg.wasm"
stale=1
if [ -f "$WEB_WASM" ] && [ -f "$ROOT/pkg-js/dist/nodejs/outpost_wasm_bg.wasm" ]; then
    newer=$(find "$ROOT/crate/src" "$ROOT/wasm/src" "$ROOT/crate/Cargo.toml" "$ROOT/wasm/Cargo.toml" \
        "$ROOT/Cargo.lock" "$ROOT/wasm-pack.toml" -newer "$WEB_WASM" -print -quit 2>/dev/null || true)
    [ -z "$newer" ] && stale=0
fi
if [ "$stale" = 1 ]; then
    echo "==> Building the WebAssembly package (scripts/build-wasm.sh)" >&2
    # The size budget is the test suite's check, not the demo's.
    OUTPOST_WASM_OVER_BUDGET=warn bash "$ROOT/scripts/build-wasm.sh" >&2
else
    echo "==> WebAssembly package: up to date (pkg-js/dist)" >&2
fi

build_hub
HUB="$TARGET/release/outpost-hub"

# ---------------------------------------------------------- demo site ---
# The page imports ./pkg/src/web.js, which imports ../dist/web/outpost_wasm.js.
SITE="$ROOT/demo-site"
rm -rf "$SITE/pkg"
mkdir -p "$SITE/pkg/src" "$SITE/pkg/dist"
# Every module of the package's source (web.js imports its siblings; node.js
# and inline.js are copied too and never loaded by the page).
cp "$ROOT"/pkg-js/src/*.js "$SITE/pkg/src/"
cp -R "$ROOT/pkg-js/dist/web" "$SITE/pkg/dist/web"

# -------------------------------------------------------- demo config ---
mkdir -p "$DEMO_DIR"
DEMO_DIR="$(cd "$DEMO_DIR" && pwd)"
CONFIG="$DEMO_DIR/outpost-hub.toml"
if [ ! -f "$CONFIG" ]; then
    echo "==> Writing the demo configuration $CONFIG" >&2
    # init's own "start the hub with ..." advice is not for us: we start it.
    if ! out=$("$HUB" --config "$CONFIG" init --demo 2>&1); then
        echo "$out" >&2
        exit 1
    fi
    # The site is this repository's demo-site/; notes keep conflicting
    # versions for the page to show (other collections: latest wins).
    tmp="$CONFIG.tmp"
    awk -v site="$SITE" '
        /^demo_site[[:space:]]*=/ { gsub(/\\/, "\\\\", site); gsub(/"/, "\\\"", site); print "demo_site = \"" site "\""; next }
        { print }
        /^\[database\.conflicts\]/ { print "Notes = \"manual\"" }
    ' "$CONFIG" >"$tmp"
    mv "$tmp" "$CONFIG"
else
    echo "==> Using the demo configuration $CONFIG" >&2
fi

URL_HOST="$HOST"
[ "$HOST" = "0.0.0.0" ] && URL_HOST=127.0.0.1
SCHEME=http
SERVE_TLS=()
if [ "$DEV_TLS" = 1 ]; then
    SCHEME=https
    SERVE_TLS=(--dev-tls)
    # The development certificate names localhost and 127.0.0.1.
    [ "$URL_HOST" = 127.0.0.1 ] && URL_HOST=localhost
fi
OTHER_MACHINES=""
case "$HOST" in
    127.* | localhost | ::1) ;;
    *)
        if [ "$DEV_TLS" = 1 ]; then
            OTHER_MACHINES="
    From another machine: https://<this machine's address>:$PORT/ (the
      hub's certificate names this machine's addresses and host name, listed
      by the hub below as "From other machines"; the browser warns once that it is
      self-signed; proceed).
"
        else
            OTHER_MACHINES="
    From another machine the page cannot make its key: browsers give
      WebCrypto only to https:// pages and localhost. Start with --dev-tls.
"
        fi
        ;;
esac
cat <<EOF

==> Outpost demo: open $SCHEME://$URL_HOST:$PORT/ in two browser windows

    window 1: pick "alice", window 2: pick "bob",
    or open $SCHEME://$URL_HOST:$PORT/?as=alice and $SCHEME://$URL_HOST:$PORT/?as=bob
    The first time, each page asks for its identity's enrollment code (one
    use each; \`./scripts/run.sh hub edge enroll alice\` issues a new one):
$(sed 's/^/      /' "$DEMO_DIR/enroll-codes.txt" 2>/dev/null || echo "      (no $DEMO_DIR/enroll-codes.txt)")
$OTHER_MACHINES
    Both may read and write notes/ in database "main"; a write elsewhere is
    refused by the hub and listed on the page. Config: $CONFIG
    Hub status: ./scripts/run.sh hub status   (or /status, /metrics with
      the demo's public admin token, from this machine: Authorization:
      Bearer admin-demo-token)
    Ctrl-C stops the hub. The CLI: ./scripts/run.sh cli --help

EOF
exec "$HUB" --config "$CONFIG" serve --listen "$HOST:$PORT" "${SERVE_TLS[@]}"
