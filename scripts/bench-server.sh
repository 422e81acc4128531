#!/usr/bin/env bash
# Benchmark of the collection server (run by hand; numbers go to docs/benchmarks.md).
#
# Release build; a fresh data directory; one enrolled station; the server on 127.0.0.1. Then, in the
# same run: CLIENTS concurrent clients hit GET /healthz, then CLIENTS concurrent clients post distinct
# signed certificates (two disks, realistic size) for SECONDS; rate and p50/p99 latency for both.
# If wrk is installed, it measures /healthz as well, as an outside reference.
#
# Usage: scripts/bench-server.sh [CLIENTS] [SECONDS]      (default 32 clients, 15 s)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-32}
SECONDS_RUN=${2:-15}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -p lapterop-server --bin lapterop-server --example loadgen
BIN=$CARGO_TARGET_DIR/release/lapterop-server
LOADGEN=$CARGO_TARGET_DIR/release/examples/loadgen

DATA=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
"$LOADGEN" pubkey "$DATA/bench.pub"
"$BIN" stations add --data "$DATA" --name bench --key "$DATA/bench.pub" >/dev/null
"$BIN" serve --data "$DATA" --listen "127.0.0.1:$PORT" 2>/dev/null &
SERVER_PID=$!
for _ in $(seq 100); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== machine: $(nproc) cores, $(uname -r), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$LOADGEN" run "$URL" "$CLIENTS" "$SECONDS_RUN"
echo "== stored: $("$BIN" export-csv --data "$DATA" | tail -n +2 | wc -l) certificates; $("$BIN" verify-log --data "$DATA")"
echo "== database: $(du -sh "$DATA" | cut -f1)"
if command -v wrk >/dev/null; then
  echo "== wrk, GET /healthz, $CLIENTS connections, 10 s"
  wrk -t2 -c"$CLIENTS" -d10s --latency "$URL/healthz" | grep -E "Requests/sec|50%|99%"
fi
