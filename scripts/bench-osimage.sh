#!/bin/bash
# Benchmark of the OS image installer core against bmaptool and zstd | dd (run by hand, as root or not).
# Builds a ~2.1 GiB GPT disk (300 MiB FAT32 ESP + 1.8 GiB ext4 holding a copy of /usr/share), packs it,
# then writes it onto a 4 GiB file on /dev/shm (pages allocated first) with:
#   1. the installer core (osimage-bench install, read-back on, then off),
#   2. bmaptool copy DISK.img.zst (with DISK.bmap),
#   3. zstd -dc DISK.img.zst | dd of=TARGET bs=4M conv=notrunc.
# Usage: scripts/bench-osimage.sh [WORKDIR]   (needs ~7 GiB free in WORKDIR and 4 GiB in /dev/shm)
set -euo pipefail
work=${1:-/tmp/osimage-bench}
target=/dev/shm/osimage-bench-target
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cleanup() { rm -f "$target"; }
trap cleanup EXIT
mkdir -p "$work"
cargo build --release -p lapterop-osimage --example osimage-bench
bench=$CARGO_TARGET_DIR/release/examples/osimage-bench

disk=$work/disk.raw
if [ ! -f "$disk" ]; then
  rm -rf "$work/esp-src" && mkdir -p "$work/esp-src/EFI/BOOT"
  head -c 20000000 /dev/urandom > "$work/esp-src/EFI/BOOT/BOOTX64.EFI"
  truncate -s 300M "$work/esp.fs" && mkfs.vfat -F 32 -s 8 -S 512 "$work/esp.fs" >/dev/null
  MTOOLS_SKIP_CHECK=1 mcopy -s -i "$work/esp.fs" "$work/esp-src/EFI" ::/
  truncate -s 1800M "$work/root.fs" && mkfs.ext4 -q -F -b 4096 -d /usr/share "$work/root.fs"
  truncate -s 2150M "$disk"
  sgdisk -n 1:1M:+300M -t 1:EF00 -c 1:ESP -n 2:0:+1800M -t 2:8300 -c 2:root "$disk" >/dev/null
  dd if="$work/esp.fs" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$work/root.fs" of="$disk" bs=1M seek=301 conv=notrunc,sparse status=none
fi
echo "== source: $(du -h --apparent-size "$disk" | cut -f1) logical, $(du -h "$disk" | cut -f1) allocated"

[ -f "$work/disk.osimg" ] || "$bench" pack "$disk" "$work/disk.osimg" 3
[ -f "$work/disk.img.zst" ] || zstd -q -T0 -3 "$disk" -o "$work/disk.img.zst"
[ -f "$work/disk.bmap" ] || bmaptool -q create "$disk" -o "$work/disk.bmap"
ls -l "$work/disk.osimg" "$work/disk.img.zst" "$work/disk.bmap"

fresh_target() { rm -f "$target"; fallocate -l 4G "$target"; sync; }
t() { local s e; s=$(date +%s.%N); "$@"; e=$(date +%s.%N); echo "   wall $(echo "$e - $s" | bc) s"; }

for run in 1 2 3; do
  echo "== run $run"
  fresh_target; echo "-- installer core, read-back on";  t "$bench" install "$work/disk.osimg" "$target" 512
  fresh_target; echo "-- installer core, read-back off"; t "$bench" install "$work/disk.osimg" "$target" 512 --no-read-back
  fresh_target; echo "-- bmaptool copy";                 t bmaptool -q copy --bmap "$work/disk.bmap" "$work/disk.img.zst" "$target"
  fresh_target; echo "-- zstd -dc | dd";                 t sh -c "zstd -dc '$work/disk.img.zst' | dd of='$target' bs=4M conv=notrunc status=none"
done
