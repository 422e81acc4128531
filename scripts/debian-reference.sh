#!/bin/bash
# Builds a small real Debian 12 reference disk as a lead would make one, for the real-system boot test
# (xtask/tests/realos.rs) and the OS image benchmark (scripts/bench-realos.sh); docs/os-image.md walks
# through the same steps. Needs root, mmdebstrap, e2fsprogs, dosfstools, mtools, gdisk and
# deb.debian.org (or the mirror in MIRROR).
#
# The disk: GPT, partition 1 a 300 MiB FAT32 ESP (512-byte sectors, 4 KiB clusters) holding GRUB as
# EFI/BOOT/BOOTX64.EFI (grub-mkstandalone, x86_64-efi), partition 2 the ext4 root (4 KiB blocks) made
# with `sgdisk -n 2:0:0`, so it ends at the disk's last usable sector, its size not a multiple of 4 KiB.
# The system: minbase + linux-image-amd64 + systemd-sysv, an initramfs from initramfs-tools with the
# disk drivers listed (not MODULES=dep, which fits only the machine that built it), root and /boot/efi
# by UUID in GRUB's config and /etc/fstab, console on ttyS0, /etc/machine-id empty, the lead guide's
# hostname unit (lapterop-hostname.service), and a test unit (lapterop-marker.service) that prints
#   LAPTEROP-REALOS-MARKER key=value ...
# on ttyS0 (root device and UUID from /proc/self/mountinfo and blkid, partition, disk and filesystem
# sizes from sysfs and the ext4 superblock, the hostname, machine.json from the ESP in base64) and
# powers off at once.
#
# Usage: scripts/debian-reference.sh OUT.raw ROOT_UUID ESP_VOLUME_ID DISK_MIB
#   (ESP_VOLUME_ID: 8 hex digits, the FAT volume id, shown as XXXX-XXXX). Downloaded packages are kept
#   in $APT_CACHE when it is set. OUT.raw is written through OUT.raw.partial and renamed when complete.
set -euo pipefail
out=$1 uuid=$2 volid=$3 disk_mib=$4
mirror=${MIRROR:-http://deb.debian.org/debian}
esp_uuid="${volid:0:4}-${volid:4:4}"
esp_uuid=${esp_uuid^^}
work=$(mktemp -d "${out}.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$work/hooks"

# Written before the packages are configured, so the first initramfs is already the portable one.
cat > "$work/hooks/initramfs.conf" <<'EOF'
# Lapterop reference image: the initramfs must find the root on any laptop's disk controller.
MODULES=list
COMPRESS=zstd
EOF
cat > "$work/hooks/initramfs-hook" <<'EOF'
#!/bin/sh
# Lapterop reference image: disk controllers and the root filesystem, whatever machine builds it.
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules nvme virtio_pci virtio_blk virtio_scsi ahci ata_piix sd_mod sdhci_pci mmc_block ext4 crc32c_generic
EOF
cat > "$work/hooks/fstab" <<EOF
UUID=$uuid / ext4 errors=remount-ro 0 1
UUID=$esp_uuid /boot/efi vfat umask=0077 0 0
EOF
cat > "$work/hooks/grub.cfg" <<EOF
set timeout=0
search --no-floppy --fs-uuid --set=root $uuid
linux /vmlinuz root=UUID=$uuid ro console=ttyS0 quiet no_timer_check
initrd /initrd.img
boot
EOF
cat > "$work/hooks/lapterop-hostname.service" <<'EOF'
[Unit]
Description=Name this laptop from lapterop/machine.json
ConditionPathExists=/boot/efi/lapterop/machine.json
After=boot-efi.mount
Before=network-pre.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'hostnamectl set-hostname "$(jq -r .hostname /boot/efi/lapterop/machine.json)"'

[Install]
WantedBy=multi-user.target
EOF
cat > "$work/hooks/lapterop-marker.service" <<'EOF'
[Unit]
Description=Lapterop test: print what the installed system sees, then power off
After=lapterop-hostname.service boot-efi.mount
Wants=lapterop-hostname.service
RequiresMountsFor=/boot/efi

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/lapterop-marker

[Install]
WantedBy=multi-user.target
EOF
cat > "$work/hooks/lapterop-marker" <<'EOF'
#!/bin/sh
# Prints one line on ttyS0 with what the booted system sees, then powers off (test image only).
set -u
# The root mount: field 5 is the mount point; after the " - " separator come type and source.
line=$(awk '$5 == "/"' /proc/self/mountinfo | tail -n 1)
source=$(echo "$line" | awk '{ for (i = 7; $i != "-"; i++); print $(i + 2) }')
dev=$(readlink -f "$source")
part=$(basename "$dev")
disk=$(basename "$(readlink -f "/sys/class/block/$part/..")")
uuid=$(blkid -o value -s UUID "$dev")
by_uuid=$(readlink -f "/dev/disk/by-uuid/$uuid")
field() { dumpe2fs -h "$dev" 2>/dev/null | sed -n "s/^$1: *//p"; }
fs_bytes=$(( $(field 'Block count') * $(field 'Block size') ))
esp=$(awk '$5 == "/boot/efi" { for (i = 7; $i != "-"; i++); print $(i + 2) }' /proc/self/mountinfo | tail -n 1)
esp_uuid=$(blkid -o value -s UUID "$(readlink -f "$esp")")
machine=$(base64 -w 0 /boot/efi/lapterop/machine.json 2>/dev/null || echo none)
echo "LAPTEROP-REALOS-MARKER root=$dev uuid=$uuid by-uuid=$by_uuid" \
  "part-bytes=$(( $(cat "/sys/class/block/$part/size") * 512 ))" \
  "disk-bytes=$(( $(cat "/sys/class/block/$disk/size") * 512 ))" \
  "sector=$(cat "/sys/class/block/$disk/queue/logical_block_size")" \
  "fs-bytes=$fs_bytes esp=$(readlink -f "$esp") esp-uuid=$esp_uuid hostname=$(hostname)" \
  "machine-id=$(cat /etc/machine-id) machine=$machine end" > /dev/ttyS0
sync
systemctl poweroff --force --force
EOF

cache_hooks=()
if [ -n "${APT_CACHE:-}" ]; then
  mkdir -p "$APT_CACHE"
  cache_hooks=(--skip=essential/unlink
    --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\"; cp -a \"$APT_CACHE/.\" \"\$1/var/cache/apt/archives/\""
    --customize-hook="cp -a \"\$1/var/cache/apt/archives/.\" \"$APT_CACHE/\"; rm -f \"\$1\"/var/cache/apt/archives/*.deb")
fi

mmdebstrap --variant=minbase --mode=root --format=directory \
  --include=linux-image-amd64,systemd-sysv,udev,initramfs-tools,zstd,e2fsprogs,dbus,jq,grub-efi-amd64-bin \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/info/*' \
  --essential-hook="mkdir -p \"\$1/etc/initramfs-tools/conf.d\" \"\$1/etc/initramfs-tools/hooks\"" \
  --essential-hook="cp '$work/hooks/initramfs.conf' \"\$1/etc/initramfs-tools/conf.d/lapterop\"" \
  --essential-hook="install -m 755 '$work/hooks/initramfs-hook' \"\$1/etc/initramfs-tools/hooks/lapterop-disks\"" \
  "${cache_hooks[@]}" \
  --customize-hook="cp '$work/hooks/fstab' \"\$1/etc/fstab\"; mkdir -p \"\$1/boot/efi\"" \
  --customize-hook="echo reference > \"\$1/etc/hostname\"" \
  --customize-hook="cp '$work/hooks/lapterop-hostname.service' '$work/hooks/lapterop-marker.service' \"\$1/etc/systemd/system/\"" \
  --customize-hook="install -m 755 '$work/hooks/lapterop-marker' \"\$1/usr/local/sbin/lapterop-marker\"" \
  --customize-hook='chroot "$1" systemctl enable lapterop-hostname.service lapterop-marker.service' \
  --customize-hook="cp '$work/hooks/grub.cfg' \"\$1/tmp/grub.cfg\"" \
  --customize-hook='chroot "$1" grub-mkstandalone -O x86_64-efi -o /tmp/BOOTX64.EFI --themes= --locales= --fonts= --install-modules="part_gpt ext2 fat search search_fs_uuid linux normal configfile echo test boot" --modules="part_gpt ext2 search_fs_uuid linux normal" "boot/grub/grub.cfg=/tmp/grub.cfg"' \
  --customize-hook="mv \"\$1/tmp/BOOTX64.EFI\" '$work/BOOTX64.EFI'; rm -f \"\$1/tmp/grub.cfg\"" \
  --customize-hook='truncate -s 0 "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"; rm -rf "$1"/var/lib/apt/lists/*; rm -f "$1"/var/log/*.log' \
  bookworm "$root" "$mirror"

# The reference disk: 1 MiB gap, 300 MiB ESP, the root from there to the last usable sector.
raw=$out.partial
rm -f "$raw"
truncate -s "${disk_mib}M" "$raw"
sgdisk -n 1:1M:+300M -t 1:EF00 -c 1:ESP -n 2:0:0 -t 2:8304 -c 2:root "$raw" >/dev/null
read -r p2_first p2_last < <(sgdisk -i 2 "$raw" | awk '/^First sector/ {f = $3} /^Last sector/ {l = $3} END {print f, l}')
root_bytes=$(( (p2_last - p2_first + 1) * 512 / 4096 * 4096 ))

esp=$work/esp.fs
truncate -s 300M "$esp"
mkfs.vfat -F 32 -S 512 -s 8 -n ESP -i "$volid" "$esp" >/dev/null
MTOOLS_SKIP_CHECK=1 mmd -i "$esp" ::/EFI ::/EFI/BOOT
MTOOLS_SKIP_CHECK=1 mcopy -i "$esp" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
dd if="$esp" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none count=300

rootfs=$work/root.fs
truncate -s "$root_bytes" "$rootfs"
mkfs.ext4 -q -F -b 4096 -U "$uuid" -L root -d "$root" "$rootfs"
dd if="$rootfs" of="$raw" bs=4096 seek=$(( p2_first * 512 / 4096 )) conv=notrunc,sparse status=none \
  count=$(( root_bytes / 4096 ))
sgdisk -v "$raw" | grep -q "No problems found"
mv "$raw" "$out"
echo "debian-reference: $out ($disk_mib MiB, root $(du -sh "$root" | cut -f1) of files)"
