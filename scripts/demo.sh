#!/usr/bin/env bash
# The main job, as far as it exists today: a collection server on 127.0.0.1 with an enrolled station,
# a simulated donated disk (a loop device holding "personal files"), a verified wipe by the agent, the
# signed certificate uploaded from the outbox, and the donor page. The live USB image booted in QEMU
# comes next (README, Status); this runs the same programs on this machine instead.
#
# Needs root (loop devices). Stops with Ctrl-C; cleans up what it made.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (it attaches a loop device for the simulated disk)" >&2
  exit 2
fi
ensure_apt_packages
PORT=${LAPTEROP_DEMO_PORT:-8080}
echo "== building (release)"
cargo build --release --locked -q -p lapterop-agent -p lapterop-server -p lapterop-certificate
bin=target/release
work=$(mktemp -d /tmp/lapterop-demo.XXXXXX)
loop=""
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "== the collection server, with an enrolled station key and a reviewer"
$bin/lapterop-cert keygen --out "$work/station" >/dev/null
$bin/lapterop-server stations add --data "$work/server" --name demo-stick --key "$work/station.pub"
printf 'demo-reviewer-password\n' | $bin/lapterop-server users add --data "$work/server" lead
$bin/lapterop-server serve --data "$work/server" --listen "127.0.0.1:$PORT" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

echo "== a simulated donated disk with personal files (256 MiB loop device)"
truncate -s 256M "$work/donated-disk.img"
mkdir -p "$work/files/Documents"
for i in $(seq 20); do echo "Bankafschrift $i van Jan Peeters, IBAN BE68 5390 0754 7034" > "$work/files/Documents/bank-$i.txt"; done
mkfs.ext4 -q -d "$work/files" "$work/donated-disk.img"
loop=$(losetup --find --show "$work/donated-disk.img")
echo "   $loop holds: $(grep -c 'Jan Peeters' "$work/donated-disk.img" || true) blocks with the donor's name"

echo "== wipe: overwrite with a random pattern, full read-back, signed certificate into the outbox"
mkdir -p "$work/outbox"
$bin/lapterop-agent wipe --yes --method auto --pattern random --verify full \
  --station-key "$work/station.key" --operator "Demo volunteer" --organisation "Iedereendigitaal@Leuven" \
  --site "Demo workbench" --certificate "$work/outbox/demo-certificate.json" "$loop"
echo "   after the wipe: $(grep -c 'Jan Peeters' "$work/donated-disk.img" || true) blocks with the donor's name"
$bin/lapterop-cert verify "$work/outbox/demo-certificate.json" --key "$work/station.pub"

echo "== upload from the outbox; the server countersigns a receipt"
$bin/lapterop-agent upload --server "http://127.0.0.1:$PORT" --outbox "$work/outbox" \
  --server-key "$work/server/server.pub"
donor=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["donor_url"])' "$work/outbox/demo-certificate.receipt.json")

cat <<EOF

Donor page (Dutch and English, with the PDF and the files to verify offline):
  $donor
Review UI for workshop leads: http://127.0.0.1:$PORT/review  (user: lead, password: demo-reviewer-password)

The server keeps running until Ctrl-C.
EOF
wait "$server_pid"
