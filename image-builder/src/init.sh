#!/bin/sh
# Default /init of a Lapterop initramfs (busybox): mount, load the staged modules, rescue shell.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
modprobe -a -q $(cat /etc/lapterop/modules)
echo "lapterop: kernel $(uname -r), modules loaded; rescue shell (exit powers off)"
setsid cttyhack sh
poweroff -f
