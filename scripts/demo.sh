#!/usr/bin/env bash
# The main job, end to end: builds the agent (static), the collection server, a signed standard OS image
# and the live USB stick image; starts the server on 127.0.0.1 with the stick's station key enrolled;
# boots the stick in QEMU (SeaBIOS, TCG) on a simulated donated laptop (SMBIOS identity, a virtio disk
# and an NVMe disk full of personal files, an e1000e NIC that reaches only the server); the agent wipes
# both disks, installs the OS image, signs the certificate and uploads it; the host then checks the disks,
# the stick and the server, and prints the donor page's address. The server runs until Ctrl-C.
#
# Port: LAPTEROP_DEMO_PORT (default 8080). Cleans up what it made when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_apt_packages
exec cargo run --locked -q -p xtask -- demo --port "${LAPTEROP_DEMO_PORT:-8080}"
