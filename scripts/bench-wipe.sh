#!/usr/bin/env bash
# Wipe benchmark (run by hand, as root; not part of the tests). Prints a Markdown table for
# docs/benchmarks.md. Two targets in the same run:
#   ram:  a loop device on a 2 GiB file in /dev/shm, its pages allocated before timing;
#   disk: a loop device on a 2 GiB file on disk, attached with --direct-io=on.
# Baseline = the device's own speed: dd zero write + dd read, both O_DIRECT, timed together.
# Each round times the baseline and our two runs back to back; a ratio is taken against the
# baseline of its own round. Then the peers run once on the same device: every nwipe binary in
# NWIPE_BINS (default: the one on PATH), zero and prng, --verify=last --noblank, each with an
# explicit --prng so nwipe 0.42 skips its start-up PRNG benchmark. nwipe needs hdparm on PATH.
# Usage: [ROUNDS=3] [NWIPE_BINS="nwipe /path/to/nwipe-0.42"] [NWIPE_TIMEOUT=600] [SKIP_PEERS=1]
#        scripts/bench-wipe.sh [DISK_DIR]   (DISK_DIR defaults to /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-wipe: run as root (loop devices)" >&2; exit 2; }
DISK_DIR=${1:-/var/tmp}
SIZE_MIB=2048
ROUNDS=${ROUNDS:-3}
NWIPE_TIMEOUT=${NWIPE_TIMEOUT:-600}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p lapterop-agent -p lapterop-certificate
AGENT=$CARGO_TARGET_DIR/release/lapterop-agent
CERT=$CARGO_TARGET_DIR/release/lapterop-cert
NWIPE_BINS=${NWIPE_BINS:-$(command -v nwipe || true)}
[ "${SKIP_PEERS:-0}" = 1 ] && NWIPE_BINS=""
[ -n "$NWIPE_BINS" ] || [ "${SKIP_PEERS:-0}" = 1 ] || echo "bench-wipe: nwipe not installed (apt-get install nwipe); peer rows skipped" >&2

WORK=$(mktemp -d)
LOOPS=()
cleanup() {
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -f /dev/shm/lapterop-bench.img "$DISK_DIR/lapterop-bench.img"
  rm -rf "$WORK"
}
trap cleanup EXIT
"$CERT" keygen --out "$WORK/station" >/dev/null
RESULTS=$WORK/results.tsv
: >"$RESULTS"

# Runs a command under /usr/bin/time -v and appends "target<TAB>run<TAB>round<TAB>seconds<TAB>rss_kib<TAB>status".
timed() { # TARGET RUN ROUND COMMAND...
  local target=$1 run=$2 round=$3 status=ok
  shift 3
  /usr/bin/time -v -o "$WORK/time" "$@" >"$WORK/out" 2>&1 || status=failed
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/time")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time")
  [ $status = ok ] || { echo "bench-wipe: $run on $target failed:" >&2; tail -3 "$WORK/out" >&2; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$run" "$round" \
    "$(python3 -c "import sys; print(sum(float(x)*60**i for i,x in enumerate(reversed(sys.argv[1].split(':')))))" "$wall")" \
    "$rss" "$status" >>"$RESULTS"
}

baseline() { # TARGET ROUND DEV
  timed "$1" "baseline dd write+read (O_DIRECT)" "$2" sh -c \
    "dd if=/dev/zero of=$3 bs=4M oflag=direct count=$((SIZE_MIB / 4)) status=none && dd if=$3 of=/dev/null bs=4M iflag=direct status=none"
}

ours() { # TARGET ROUND DEV PATTERN
  rm -f "$WORK/c.json"
  timed "$1" "lapterop $4 + full verify" "$2" \
    "$AGENT" wipe --yes --pattern "$4" --verify full --station-key "$WORK/station.key" --certificate "$WORK/c.json" "$3"
  grep -q '"status": "erased"' "$WORK/c.json" || { echo "bench-wipe: our $4 wipe of $3 was not erased" >&2; exit 1; }
}

peer() { # TARGET DEV NWIPE METHOD PRNG
  local help version extra=()
  help=$("$3" --help 2>&1 || true)
  if grep -q PDFreportpath <<<"$help"; then extra+=(-P noPDF); fi
  timed "$1" "nwipe VERSION --method=$4 --prng=$5 --verify=last --noblank" 1 \
    timeout "$NWIPE_TIMEOUT" "$3" --autonuke --nogui --nowait "${extra[@]}" --method="$4" --prng="$5" \
    --verify=last --noblank --rounds=1 "$2"
  # Its log names the version ("info: nwipe 0.42"); 0.42's --version exits 22 and often prints nothing.
  version=$(grep -m1 -oE 'nwipe (version )?[0-9]+\.[0-9]+' "$WORK/out" | awk '{print $NF}' || true)
  sed -i "\$s/nwipe VERSION/nwipe ${version:-?}/" "$RESULTS"
}

prngs_of() { # NWIPE: its fastest random generator (0.42's aes_ctr_prng fails to initialise here)
  if grep -q xoroshiro256_prng <<<"$("$1" --help 2>&1 || true)"; then echo xoroshiro256_prng; else echo isaac64; fi
}

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
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
  for round in $(seq 1 "$ROUNDS"); do
    baseline $target "$round" "$dev"
    ours $target "$round" "$dev" zero
    ours $target "$round" "$dev" random
  done
  for nwipe in $NWIPE_BINS; do
    peer $target "$dev" "$nwipe" zero "$(prngs_of "$nwipe" | awk '{print $1}')"
    for prng in $(prngs_of "$nwipe"); do peer $target "$dev" "$nwipe" random "$prng"; done
  done
  losetup -d "$dev"
  LOOPS=()
  rm -f "$img"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$RESULTS" "$NWIPE_TIMEOUT" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
timeout = float(sys.argv[2])
base = {}
for t, run, r, s, rss, st in rows:
    if run.startswith("baseline"):
        base[(t, r)] = float(s)
order, by = [], {}
for t, run, r, s, rss, st in rows:
    if (t, run) not in by:
        order.append((t, run))
        by[(t, run)] = []
    by[(t, run)].append((r, float(s), int(rss), st))
print("| target | run | seconds per round | ratio to dd (per round) | median ratio | peak RSS MiB |")
print("|---|---|---|---|---|---|")
for t, run in order:
    runs = by[(t, run)]
    secs, ratios = [], []
    for r, s, rss, st in runs:
        b = base.get((t, r)) or statistics.median(v for (tt, _), v in base.items() if tt == t)
        stopped = st != "ok" and s >= timeout - 1
        secs.append(f"> {s:.0f} (stopped)" if stopped else f"{s:.2f}" + ("" if st == "ok" else " (failed)"))
        ratios.append(s / b)
    rss = max(x[2] for x in runs) / 1024
    ratio_text = " / ".join(f"{x:.2f}x" for x in ratios)
    print(f"| {t} | {run} | {' / '.join(secs)} | {ratio_text} | **{statistics.median(ratios):.2f}x** | {rss:.0f} |")
EOF
