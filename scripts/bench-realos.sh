#!/bin/bash
# Benchmark of the OS image path on a real Debian 12 reference disk (the one the real-system boot test
# builds with scripts/debian-reference.sh), in one run, against the two tools a lead would otherwise use:
#   pack:    lapterop-image-builder os-image pack --level 3 (shrinks a copy of the root, skips free
#            blocks, zstd) against partclone.vfat + partclone.ext4 -c | zstd -3 -T0 (used blocks only)
#            and against bmaptool create + zstd -3 -T0 of the raw disk;
#   install: lapterop-agent install --yes (O_DIRECT, read-back of every data chunk, grow of the root
#            with resize2fs and e2fsck -fn, machine.json on the ESP) against sgdisk --load-backup +
#            zstd -dc | partclone -r onto each partition (no grow, no read-back) and against
#            bmaptool copy (SHA-256 check of the mapped ranges, no grow).
# Every install goes onto the same 3 GiB loop device with 512-byte sectors over a file on /dev/shm whose
# pages are allocated first, so the disk costs nothing and the tools' own work is measured.
# Needs root, mmdebstrap (first run), partclone, bmap-tools, zstd, gdisk, e2fsprogs, dosfstools, mtools.
# Usage: sudo scripts/bench-realos.sh [WORKDIR] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/var/tmp/realos-bench}
runs=${2:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
shm=/dev/shm/realos-bench-target
loops=()
cleanup() {
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -f "$shm"
}
trap cleanup EXIT
mkdir -p "$work"
# BIN: a directory holding lapterop-agent, lapterop-image-builder and lapterop-cert already built
# (the dev profile builds them with opt-level 2 too); otherwise a release build.
if [ -n "${BIN:-}" ]; then bin=$BIN; else
  cargo build --release -q -p lapterop-agent -p lapterop-image-builder -p lapterop-certificate
  bin=$CARGO_TARGET_DIR/release
fi

ref=$work/reference.raw
[ -f "$ref" ] || APT_CACHE=$work/apt scripts/debian-reference.sh "$ref" 3d1c6f0e-5b2a-4e8d-9c41-7a2f0b6d8e11 1a2b3c4d 2048
[ -f "$work/bench.key" ] || "$bin/lapterop-cert" keygen --out "$work/bench" >/dev/null
read -r p1_first p1_last < <(sgdisk -i 1 "$ref" | awk '/^First sector/ {f = $3} /^Last sector/ {l = $3} END {print f, l}')
read -r p2_first p2_last < <(sgdisk -i 2 "$ref" | awk '/^First sector/ {f = $3} /^Last sector/ {l = $3} END {print f, l}')
echo "== reference: $(du -h --apparent-size "$ref" | cut -f1) logical, $(du -h "$ref" | cut -f1) allocated"

t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); printf '   wall %.2f s\n' "$(echo "$e - $s" | bc)"; }

fallocate -l 3G "$shm"
dev=$(losetup --find --show "$shm"); loops+=("$dev")

echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$runs"); do
  echo "== run $run"
  rm -f "$work"/disk.osimg "$work"/*.pcl.zst "$work"/gpt.backup "$work"/reference.bmap "$work"/reference.raw.zst
  echo "-- pack: lapterop-image-builder os-image pack --level 3"
  t "$bin/lapterop-image-builder" os-image pack --input "$ref" --name bench-debian --version 12 \
    --key "$work/bench.key" --out "$work/disk.osimg" --level 3
  echo "-- pack: sgdisk --backup + partclone.vfat -c | zstd -3 + partclone.ext4 -c | zstd -3"
  t sh -c "set -e; sgdisk --backup='$work/gpt.backup' '$ref'
    esp=\$(losetup --find --show --read-only --offset $((p1_first * 512)) --sizelimit $(( (p1_last - p1_first + 1) * 512 )) '$ref')
    root=\$(losetup --find --show --read-only --offset $((p2_first * 512)) --sizelimit $(( (p2_last - p2_first + 1) * 512 )) '$ref')
    partclone.vfat -q -c -s \$esp -o - 2>/dev/null | zstd -q -3 -T0 -o '$work/esp.pcl.zst'
    partclone.ext4 -q -c -s \$root -o - 2>/dev/null | zstd -q -3 -T0 -o '$work/root.pcl.zst'
    losetup -d \$esp \$root"
  echo "-- pack: bmaptool create + zstd -3 -T0 of the raw disk"
  t sh -c "bmaptool -q create '$ref' -o '$work/reference.bmap' && zstd -q -3 -T0 '$ref' -o '$work/reference.raw.zst'"
  ls -l "$work/disk.osimg" "$work/esp.pcl.zst" "$work/root.pcl.zst" "$work/reference.raw.zst" | awk '{print "   " $5, $9}'

  echo "-- install: lapterop-agent install (read-back on, grow, machine.json)"
  t "$bin/lapterop-agent" install --yes --image "$work/disk.osimg" --trust "$work/bench.pub" \
    --hostname 'pupil-{serial}' --serial BENCH "$dev"
  echo "-- install: sgdisk --load-backup + zstd -dc | partclone -r (each partition)"
  t sh -c "set -e; sgdisk --load-backup='$work/gpt.backup' '$dev' >/dev/null; sgdisk -e '$dev' >/dev/null
    esp=\$(losetup --find --show --offset $((p1_first * 512)) --sizelimit $(( (p1_last - p1_first + 1) * 512 )) '$shm')
    root=\$(losetup --find --show --offset $((p2_first * 512)) --sizelimit $(( (p2_last - p2_first + 1) * 512 )) '$shm')
    zstd -q -dc '$work/esp.pcl.zst' | partclone.vfat -q -r -s - -o \$esp 2>/dev/null
    zstd -q -dc '$work/root.pcl.zst' | partclone.ext4 -q -r -s - -o \$root 2>/dev/null
    losetup -d \$esp \$root"
  echo "-- install: bmaptool copy"
  t bmaptool -q copy --bmap "$work/reference.bmap" "$work/reference.raw.zst" "$dev"
done
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
