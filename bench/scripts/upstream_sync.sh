#!/usr/bin/env bash
# What a clinic hub's initial sync from its cloud hub costs: DOCS documents
# of ~1 KiB imported into a cloud hub, then a fresh clinic hub whose
# [[upstream]] is that cloud; prints the time until the clinic holds them all,
# the clinic's CPU time, its data directory's size and its audit entries.
# Run it with two builds alternating to compare them (docs/benchmarks.md,
# "What recording an upstream's batches costs").
#
# Usage: bench/scripts/upstream_sync.sh [HUB_BINARY] [DOCS]
#   HUB_BINARY  default target/release/outpost-hub (cargo build --release -p outpost-hub)
#   DOCS        default 100000
set -euo pipefail
HUB=$(realpath "${1:-target/release/outpost-hub}")
N=${2:-100000}
TOKEN=bench-admin-token
SHA=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
W=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLOUD_PORT=$(port)
CLINIC_PORT=$(port)

mkdir -p "$W/cloud" "$W/clinic"
python3 - "$N" > "$W/cloud/docs.jsonl" <<'PY'
import json, sys
n = int(sys.argv[1])
pad = "x" * 900
for i in range(n):
    print(json.dumps({"id": f"shared/{i:07d}", "@metadata": {"@collection": "Shared"}, "n": i, "text": pad}))
PY

cd "$W/clinic"
"$HUB" init >/dev/null 2>&1
KEY=$("$HUB" keygen clinic.key 2>/dev/null)
sed -i "s/^listen = .*/listen = \"127.0.0.1:$CLINIC_PORT\"/" outpost-hub.toml
cat >> outpost-hub.toml <<EOF

[admin]
token_sha256 = "$SHA"

[[upstream]]
database = "main"
url = "ws://127.0.0.1:$CLOUD_PORT/sync"
identity = "clinic"
key_file = "clinic.key"
EOF

cd "$W/cloud"
"$HUB" init >/dev/null 2>&1
sed -i "s/^listen = .*/listen = \"127.0.0.1:$CLOUD_PORT\"/" outpost-hub.toml
printf '\n[admin]\ntoken_sha256 = "%s"\n' "$SHA" >> outpost-hub.toml
"$HUB" edge add clinic --pubkey "$KEY" --read '*' --write 'clinic/' >/dev/null 2>&1
"$HUB" import docs.jsonl >/dev/null 2>&1
"$HUB" serve >cloud.log 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$CLOUD_PORT/healthz" >/dev/null && break; sleep 0.1; done

documents() {
  curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$CLINIC_PORT/status" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(next(x["documents"] for x in d["databases"] if x["name"]=="main"))' 2>/dev/null || echo 0
}

cd "$W/clinic"
start=$(date +%s.%N)
"$HUB" serve >clinic.log 2>&1 &
CLINIC=$!
PIDS+=("$CLINIC")
while [ "$(documents)" -lt "$N" ]; do
  sleep 0.05
  if (( $(echo "$(date +%s.%N) - $start > 600" | bc) )); then echo "timed out" >&2; exit 1; fi
done
end=$(date +%s.%N)
read -r ut st < <(awk '{print $14, $15}' "/proc/$CLINIC/stat")
tck=$(getconf CLK_TCK)
kill "$CLINIC"
wait "$CLINIC" 2>/dev/null || true
bytes=$(du -sb hub-data | cut -f1)
entries=$("$HUB" audit export 2>/dev/null | wc -l)
printf 'docs %s: all at the clinic in %.2f s, clinic CPU %.2f s, hub-data %.1f MiB, %s audit entries (%s)\n' \
  "$N" "$(echo "$end - $start" | bc)" "$(echo "($ut + $st) / $tck" | bc -l)" \
  "$(echo "$bytes / 1048576" | bc -l)" "$entries" "$HUB"
