#!/bin/bash
# Benchmark of the OS image install against bmaptool and zstd | dd, in the same run on the same targets
# (run by hand, as root: it attaches loop devices).
# Builds a ~2.1 GiB GPT disk (300 MiB FAT32 ESP + 1.8 GiB ext4 holding a copy of /usr/share), packs it,
# then writes it onto two 4 GiB loop devices:
#   ram:  over a file on /dev/shm whose pages are allocated first (fallocate),
#   disk: over a file in WORKDIR, attached with --direct-io=on,
# with, in each run:
#   1. lapterop-agent install --yes (release build; O_DIRECT, read-back of every data chunk on),
#      from the file and from http://127.0.0.1 (busybox httpd, which answers range requests),
#   2. bmaptool copy --bmap DISK.bmap DISK.img.zst DEV,
#   3. zstd -dc DISK.img.zst | dd of=DEV bs=4M oflag=direct,
# and once per run the installer core onto the ram target's backing file for per-stage figures.
# Needs: bmap-tools, zstd, gdisk, dosfstools, mtools, busybox, bc.
# Usage: sudo scripts/bench-osimage.sh [WORKDIR] [RUNS]
#   (needs ~8 GiB free in WORKDIR and 4 GiB in /dev/shm; everything it makes is removed on exit
#    except the source disk and images in WORKDIR, which later runs reuse)
set -euo pipefail
work=${1:-/var/tmp/osimage-bench}
runs=${2:-3}
shm=/dev/shm/osimage-bench-target
disk_target=$work/disk-target.img
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
loops=()
httpd=
cleanup() {
  [ -n "$httpd" ] && kill "$httpd" 2>/dev/null
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -f "$shm" "$disk_target"
}
trap cleanup EXIT
mkdir -p "$work"
cargo build --release -p lapterop-osimage --example osimage-bench
cargo build --release -p lapterop-agent
bench=$CARGO_TARGET_DIR/release/examples/osimage-bench
agent=$CARGO_TARGET_DIR/release/lapterop-agent

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

[ -f "$work/bench.pub" ] || "$bench" key "$work/bench"
[ -f "$work/disk.osimg" ] || "$bench" pack "$disk" "$work/disk.osimg" 3
[ -f "$work/disk.img.zst" ] || zstd -q -T0 -3 "$disk" -o "$work/disk.img.zst"
[ -f "$work/disk.bmap" ] || bmaptool -q create "$disk" -o "$work/disk.bmap"
ls -l "$work/disk.osimg" "$work/disk.img.zst" "$work/disk.bmap"

# Targets: 4 GiB each, sizes bounded; the shm file's pages are allocated before timing.
rm -f "$shm" "$disk_target"
fallocate -l 4G "$shm"
fallocate -l 4G "$disk_target"
ram=$(losetup --find --show "$shm"); loops+=("$ram")
ondisk=$(losetup --find --show --direct-io=on "$disk_target"); loops+=("$ondisk")
echo "== targets: ram $ram ($shm), disk $ondisk ($disk_target, direct-io on)"

# The image over HTTP on loopback: busybox httpd in the foreground, stopped by its PID on exit.
port=${BENCH_HTTP_PORT:-18089}
busybox httpd -f -p "127.0.0.1:$port" -h "$work" & httpd=$!
sleep 0.5
url=http://127.0.0.1:$port/disk.osimg

t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); printf '   wall %.2f s\n' "$(echo "$e - $s" | bc)"; }

echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for run in $(seq 1 "$runs"); do
  echo "== run $run"
  for name in ram disk; do
    dev=$ram; [ $name = disk ] && dev=$ondisk
    echo "-- $name: lapterop-agent install (read-back on)"
    t "$agent" install --yes --image "$work/disk.osimg" --trust "$work/bench.pub" "$dev"
    echo "-- $name: lapterop-agent install from $url (read-back on)"
    t "$agent" install --yes --image "$url" --trust "$work/bench.pub" "$dev"
    echo "-- $name: bmaptool copy"
    t bmaptool -q copy --bmap "$work/disk.bmap" "$work/disk.img.zst" "$dev"
    echo "-- $name: zstd -dc | dd oflag=direct"
    t sh -c "zstd -dc '$work/disk.img.zst' | dd of='$dev' bs=4M oflag=direct status=none"
  done
  echo "-- installer core onto the ram target's file (per-stage figures)"
  losetup -d "$ram"
  "$bench" install "$work/disk.osimg" "$shm" 512
  ram=$(losetup --find --show "$shm"); loops+=("$ram")
done
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
