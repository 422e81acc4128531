#!/bin/sh
# /init of the VM harness (busybox): mount, load the staged modules, wait for the expected disks,
# run /etc/lapterop/vm-command between markers on the serial console, power off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
modprobe -a $(cat /etc/lapterop/modules) || echo "lapterop-vm: some modules failed to load"
# Disk drivers probe asynchronously: wait (at most 20 s) until every disk the harness attached shows.
want=$(cat /etc/lapterop/vm-disks)
i=0
while [ "$(ls /sys/block | grep -c -v -e '^loop' -e '^ram')" -lt "$want" ] && [ "$i" -lt 200 ]; do
  sleep 0.1
  i=$((i + 1))
done
# Keep kernel messages out of the command's output.
echo 1 > /proc/sys/kernel/printk
cd /root
echo "LAPTEROP-VM-UPTIME $(cut -d" " -f1 /proc/uptime)"
echo LAPTEROP-VM-BEGIN
sh /etc/lapterop/vm-command
rc=$?
echo "LAPTEROP-VM-END rc=$rc"
sync
poweroff -f
