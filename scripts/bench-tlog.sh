#!/usr/bin/env bash
# Ingest throughput with the Merkle tree log against the linear chain before it (commit d9d8cee), in
# the same run (run by hand; numbers go to docs/benchmarks.md).
#
# Release builds of both servers; then ROUNDS rounds, each running the old and the new server in turn
# on a fresh data directory with one enrolled station, the load generator of today's tree posting
# distinct signed certificates from CLIENTS clients for SECONDS (scripts/bench-server.sh's setup).
# Prints each run's ingest line and the medians.
#
# Usage: scripts/bench-tlog.sh [CLIENTS] [SECONDS] [ROUNDS]      (default 32 clients, 15 s, 3 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-32}
SECONDS_RUN=${2:-15}
ROUNDS=${3:-3}
OLD=d9d8cee
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  git worktree remove --force "$WORK/old" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

git worktree add -q --detach "$WORK/old" "$OLD"
(cd "$WORK/old" && cargo build -q --release -p lapterop-server --bin lapterop-server)
cp "$CARGO_TARGET_DIR/release/lapterop-server" "$WORK/server-chain"
touch server-stub/src/main.rs # the old binary landed where today's does: relink today's
cargo build -q --release -p lapterop-server --bin lapterop-server --example loadgen
cp "$CARGO_TARGET_DIR/release/lapterop-server" "$WORK/server-tree"
LOADGEN=$CARGO_TARGET_DIR/release/examples/loadgen

one_run() { # BINARY -> prints the loadgen ingest line
  local bin=$1 data port
  data=$(mktemp -d -p "$WORK")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$LOADGEN" pubkey "$data/bench.pub"
  "$bin" stations add --data "$data" --name bench --key "$data/bench.pub" >/dev/null
  "$bin" serve --data "$data" --listen "127.0.0.1:$port" 2>/dev/null &
  SERVER_PID=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  "$LOADGEN" run "http://127.0.0.1:$port" "$CLIENTS" "$SECONDS_RUN" 2>/dev/null | grep '^ingest'
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
  "$bin" verify-log --data "$data" >&2
  rm -rf "$data"
}

echo "== machine: $(nproc) cores, $(uname -r), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$WORK/chain.txt"; : >"$WORK/tree.txt"
for r in $(seq "$ROUNDS"); do
  for kind in chain tree; do
    line=$(one_run "$WORK/server-$kind")
    echo "round $r $kind: $line"
    echo "$line" | awk '{print $8}' | tr -d '/s' >>"$WORK/$kind.txt"
  done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
c=$(median "$WORK/chain.txt"); t=$(median "$WORK/tree.txt")
echo "== median ingest: chain $c/s, tree $t/s, tree/chain $(awk -v c="$c" -v t="$t" 'BEGIN {printf "%.3f", t/c}')"
