#!/usr/bin/env bash
# Wipe benchmark (run by hand, as root; not part of the tests). Prints a Markdown table for
# docs/benchmarks.md. Two targets in the same run:
#   ram:  a loop device on a 2 GiB file in /dev/shm, its pages allocated before timing;
#   disk: a loop device on a 2 GiB file on disk, attached with --direct-io=on.
# Baseline = the device's own speed: dd zero write + dd read, both O_DIRECT, timed together.
# Peers on the same device in the same run: Debian's nwipe (zero and prng, --verify=last --noblank).
# Usage: [SKIP_PEERS=1] scripts/bench-wipe.sh [DISK_DIR]   (DISK_DIR defaults to /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-wipe: run as root (loop devices)" >&2; exit 2; }
DISK_DIR=${1:-/var/tmp}
SIZE_MIB=2048
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p lapterop-agent -p lapterop-certificate
AGENT=$CARGO_TARGET_DIR/release/lapterop-agent
CERT=$CARGO_TARGET_DIR/release/lapterop-cert
NWIPE=$(command -v nwipe || true)
[ "${SKIP_PEERS:-0}" = 1 ] && NWIPE=""  # SKIP_PEERS=1: only the baseline and our runs
[ -n "$NWIPE" ] || [ "${SKIP_PEERS:-0}" = 1 ] || echo "bench-wipe: nwipe not installed (apt-get install nwipe); peer rows skipped" >&2

WORK=$(mktemp -d)
LOOPS=()
cleanup() {
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -f /dev/shm/lapterop-bench.img "$DISK_DIR/lapterop-bench.img"
  rm -rf "$WORK"
}
trap cleanup EXIT
"$CERT" keygen --out "$WORK/station" >/dev/null

# Runs a command under /usr/bin/time -v; prints "seconds peak_rss_kib".
timed() {
  /usr/bin/time -v -o "$WORK/time" "$@" >"$WORK/out" 2>&1 || { echo "FAILED: $*" >&2; tail -5 "$WORK/out" >&2; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/time")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time")
  python3 -c "import sys; p=sys.argv[1].split(':'); s=sum(float(x)*60**i for i,x in enumerate(reversed(p))); print(f'{s:.2f} {sys.argv[2]}')" "$wall" "$rss"
}

baseline() {
  timed sh -c "dd if=/dev/zero of=$1 bs=4M oflag=direct count=$((SIZE_MIB / 4)) status=none && dd if=$1 of=/dev/null bs=4M iflag=direct status=none"
}

ours() { # DEV PATTERN
  rm -f "$WORK/c.json"
  timed "$AGENT" wipe --yes --pattern "$2" --verify full --station-key "$WORK/station.key" --certificate "$WORK/c.json" "$1"
  grep -q '"status": "erased"' "$WORK/c.json" || echo "bench-wipe: our $2 wipe of $1 was not erased" >&2
}

peer() { # DEV METHOD PRNG
  timed "$NWIPE" --autonuke --nogui --nowait --method="$2" --prng="$3" --verify=last --noblank --rounds=1 "$1"
}

row() { # TARGET WHAT "SECONDS RSS" BASE
  local s rss
  read -r s rss <<<"$3"
  python3 -c "import sys; s,b=float(sys.argv[3]),float(sys.argv[4]); print(f'| {sys.argv[1]} | {sys.argv[2]} | {s:.2f} | {s/b:.2f}x | {int(sys.argv[5])/1024:.0f} |')" "$1" "$2" "$s" "$4" "$rss"
}

echo "| target | run | seconds | vs baseline | peak RSS MiB |"
echo "|---|---|---|---|---|"
for target in ram disk; do
  if [ $target = ram ]; then
    img=/dev/shm/lapterop-bench.img
    dd if=/dev/zero of=$img bs=4M count=$((SIZE_MIB / 4)) status=none  # allocate every page now
    dev=$(losetup --find --show "$img")
  else
    img=$DISK_DIR/lapterop-bench.img
    dd if=/dev/zero of="$img" bs=4M count=$((SIZE_MIB / 4)) status=none oflag=direct
    dev=$(losetup --find --show --direct-io=on "$img")
  fi
  LOOPS+=("$dev")
  base=$(baseline "$dev"); read -r b _ <<<"$base"
  row $target "baseline dd write+read (O_DIRECT)" "$base" "$b"
  row $target "lapterop zero + full verify" "$(ours "$dev" zero)" "$b"
  row $target "lapterop random + full verify" "$(ours "$dev" random)" "$b"
  if [ -n "$NWIPE" ]; then
    row $target "nwipe $("$NWIPE" --version | awk '{print $NF}') zero, verify last" "$(peer "$dev" zero twister)" "$b"
    row $target "nwipe prng (isaac64), verify last" "$(peer "$dev" random isaac64)" "$b"
  fi
  losetup -d "$dev"; LOOPS=()
  rm -f "$img"
done
