#!/usr/bin/env bash
# The main command of Outpost: builds the `outpost` command-line tool (release)
# and runs it.
#
#   ./scripts/run.sh                       # a short demo on ./outpost-data
#   ./scripts/run.sh --help                # every command, with examples
#   ./scripts/run.sh put notes/1 '{"text":"hello"}'
#   ./scripts/run.sh scan --prefix patients/dr-7/
#
# Needs only a Rust toolchain (cargo); the first build fetches the crates.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust with rustup first (https://rustup.rs)" >&2
    exit 1
fi

echo "==> Building the outpost CLI (release)" >&2
cargo build --release -p outpost-cli --manifest-path "$ROOT/Cargo.toml" >&2
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/outpost"

if [ "$#" -gt 0 ]; then
    exec "$BIN" "$@"
fi

# No arguments: a short demo.
DB="${OUTPOST_DB:-./outpost-data}"
export OUTPOST_DB="$DB"
echo
echo "==> Demo on the database directory $DB"
echo
echo "\$ outpost import scripts/sample.jsonl"
"$BIN" import "$ROOT/scripts/sample.jsonl"
echo
echo "\$ outpost put notes/welcome '{\"text\":\"Hello from Outpost\"}' --collection Notes"
"$BIN" put notes/welcome '{"text":"Hello from Outpost"}' --collection Notes
echo
echo "\$ outpost get patients/dr-7/0003"
"$BIN" get patients/dr-7/0003
echo
echo "\$ outpost scan --prefix patients/dr-7/ --limit 3"
"$BIN" scan --prefix patients/dr-7/ --limit 3
echo
echo "\$ outpost stats"
"$BIN" stats
echo
echo "\$ outpost check"
"$BIN" check
cat <<EOF

==> Done. The database is in $DB. Try:

  ./scripts/run.sh --help                          every command, with examples
  ./scripts/run.sh scan --prefix invoices/         documents by id prefix (JSON lines)
  ./scripts/run.sh changes --since 0               the changes feed, deletions included
  ./scripts/run.sh delete notes/welcome
  ./scripts/run.sh export backup.jsonl             every document, as JSON lines

or use the binary directly: $BIN (set OUTPOST_DB or --db to choose the directory).
EOF
