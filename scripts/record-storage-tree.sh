#!/usr/bin/env bash
# Records the part of /sys that Lapterop's disk discovery reads, on the laptop this runs on, into a
# folder that `lapterop-agent disks --root FOLDER` reads back (see agent/tests/fixtures/storage).
# Reads only; serial numbers and WWNs are written as "redacted". Usage: record-storage-tree.sh OUT
set -euo pipefail
out=${1:?usage: record-storage-tree.sh OUT}
[ -e "$out" ] && { echo "record-storage-tree: $out exists; give a new folder" >&2; exit 2; }
mkdir -p "$out/sys/block" "$out/proc/self" "$out/dev"
copy() { # copy FILE: one attribute, the same path under $out
  [ -r "$1" ] || return 0
  mkdir -p "$out$(dirname "$1")"
  case "$(basename "$1")" in
    serial | wwid | cid) echo redacted > "$out$1" ;;
    *) head -c 4096 "$1" > "$out$1" 2>/dev/null || rm -f "$out$1" ;;
  esac
}
for link in /sys/block/*; do
  name=$(basename "$link")
  real=$(readlink -f "$link")
  ln -s "$(readlink "$link")" "$out/sys/block/$name"
  for a in size dev removable ro force_ro queue/logical_block_size queue/physical_block_size \
    queue/rotational loop/backing_file; do
    copy "$real/$a"
  done
  holders() { # holders DIR: who holds the device (dm, md), as empty entries
    [ -d "$1/holders" ] || return 0
    mkdir -p "$out$1/holders"
    for h in "$1"/holders/*; do [ -e "$h" ] && : > "$out$1/holders/$(basename "$h")"; done
    return 0
  }
  holders "$real"
  for p in "$real"/"$name"*; do
    if [ -e "$p/partition" ]; then copy "$p/partition"; copy "$p/dev"; copy "$p/uevent"; holders "$p"; fi
  done
  if [ -L "$real/device" ]; then
    dev=$(readlink -f "$real/device")
    ln -s "$(readlink "$real/device")" "$out$real/device"
    for a in type name model vendor rev fwrev firmware_rev serial wwid raw_rpmb_size_mult; do
      copy "$dev/$a"
    done
    [ -d "$dev/scsi_device" ] && mkdir -p "$out$dev/scsi_device"
  fi
done
# What the stick had mounted (device numbers only matter) and no swap of the laptop's.
cp /proc/self/mountinfo "$out/proc/self/mountinfo"
cp /proc/swaps "$out/proc/swaps"
echo "recorded $(find "$out" -type f | wc -l) attributes in $out"
