//! Boots the pinned Debian kernel with the test initramfs under QEMU (TCG), once, with a virtio disk,
//! a 4Kn NVMe disk, an AHCI disk, an SMBIOS serial and an e1000e NIC with a guestfwd to a loopback
//! server, and checks from the guest's own output that each is seen and that the static agent runs
//! there.
//!
//! Needs qemu-system-x86, kmod, dpkg and apt with Debian reachable (CI installs them through
//! scripts/apt-packages.txt). When they are missing the test fails under
//! `LAPTEROP_REQUIRE_ROOT_TESTS=1` and otherwise says loudly that it was skipped.

// Test helpers outside #[test] functions may panic on any failure, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use xtask::vm::{self, VmSpec};

const SERIAL: &str = "LAPTEROP-TEST-123";

#[test]
fn guest_sees_virtio_nvme_4kn_ahci_smbios_and_runs_the_static_agent() {
    if !xtask::vm_tools_or_skip() {
        return;
    }
    let command = r#"
for d in /sys/block/*; do
  echo "BLK ${d##*/} $(cat $d/queue/logical_block_size) $(cat $d/queue/physical_block_size) vendor=$(cat $d/device/vendor 2>/dev/null | tr -d ' ') model=$(cat $d/device/model 2>/dev/null | tr -d ' ')"
done
echo "NVME-CTRL $(cat /sys/class/nvme/nvme0/model | tr -d ' ') $(cat /sys/class/nvme/nvme0/serial | tr -d ' ')"
echo "DMI-SERIAL $(cat /sys/class/dmi/id/product_serial)"
echo "NET $(ls /sys/class/net | tr '\n' ' ')"
echo "DRIVER-eth0 $(basename $(readlink /sys/class/net/eth0/device/driver))"
/bin/lapterop-agent version
echo "AGENT-RC $?"
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
i=0
while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
# QEMU does not pass the host's close back through guestfwd, so wait for the reply, then stop nc.
echo ping-from-guest > /tmp/ping
nc 10.0.2.100 80 < /tmp/ping > /tmp/fwd &
nc_pid=$!
i=0
while ! grep -q . /tmp/fwd && [ "$i" -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
kill "$nc_pid"
echo "FWD $(cat /tmp/fwd)"
exit 7
"#;
    // A loopback server the guest reaches through guestfwd (the relay connects when the guest does).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(170))).unwrap();
        let mut line = String::new();
        BufReader::new(conn.try_clone().unwrap()).read_line(&mut line).unwrap();
        conn.write_all(b"pong-from-host\n").unwrap();
        line
    });
    let spec = VmSpec {
        disks: ["virtio:64M", "nvme:64M:4096", "ahci:64M"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect(),
        smbios: vec![format!("type=1,serial={SERIAL}")],
        nic: Some("e1000e".to_owned()),
        guestfwd: vec![format!("tcp:10.0.2.100:80-tcp:127.0.0.1:{port}")],
        command: command.to_owned(),
        timeout: Duration::from_secs(180),
        ..VmSpec::default()
    };
    let out = vm::run(&spec).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("guest output:\n{}\ntimings: {}", out.output, out.timings);
    let has = |line: &str| out.output.lines().any(|l| l.trim_end() == line);

    // Exit codes cross the serial console unchanged.
    assert_eq!(out.exit_code, 7, "guest exit code");
    // virtio-blk: 512-byte sectors, Red Hat virtio vendor id.
    assert!(
        has("BLK vda 512 512 vendor=0x1af4 model="),
        "virtio disk missing:\n{}",
        out.output
    );
    // NVMe namespace formatted with 4096-byte logical and physical blocks.
    assert!(
        has("BLK nvme0n1 4096 4096 vendor= model=QEMUNVMeCtrl"),
        "4Kn NVMe disk missing:\n{}",
        out.output
    );
    assert!(
        has("NVME-CTRL QEMUNVMeCtrl LAPTEROP-D1"),
        "NVMe controller identity:\n{}",
        out.output
    );
    // AHCI: libata presents it as vendor "ATA" with the model QEMU was given.
    assert!(
        has("BLK sda 512 512 vendor=ATA model=LAPTEROP-AHCI"),
        "AHCI disk missing:\n{}",
        out.output
    );
    // SMBIOS type 1 serial reaches the guest's DMI.
    assert!(has(&format!("DMI-SERIAL {SERIAL}")), "SMBIOS serial:\n{}", out.output);
    // The e1000e NIC is bound by the e1000e driver from the initramfs.
    assert!(out.output.contains("NET eth0 lo"), "NIC:\n{}", out.output);
    assert!(has("DRIVER-eth0 e1000e"), "NIC driver:\n{}", out.output);
    // The statically linked agent runs in a guest that has no C library at all.
    assert!(
        has(&format!("lapterop-agent {}", env!("CARGO_PKG_VERSION"))),
        "agent:\n{}",
        out.output
    );
    assert!(has("AGENT-RC 0"));
    // restrict=on user networking still carries guestfwd traffic to the loopback server, both ways.
    assert!(has("FWD pong-from-host"), "guestfwd:\n{}", out.output);
    assert_eq!(server.join().unwrap(), "ping-from-guest\n");
    assert!(!out.timings.boot_to_marker.is_zero() && out.timings.boot_to_marker <= out.timings.vm_total);
    assert!(
        out.timings.guest_uptime_at_marker.is_some(),
        "the init script prints the guest uptime before the marker"
    );
}

/// The controllers of real laptops that QEMU can emulate, beside the ones above: SATA set to IDE mode
/// in the setup (PIIX4 IDE, `ata_piix`), an SD card in a PCI reader (`sdhci_pci`), an Intel PRO/1000
/// (`e1000`, ThinkPads and Latitudes of 2008-2012) and a USB Ethernet adapter (`usb-net`: the dongle a
/// volunteer plugs into a laptop without an Ethernet port). The modules come from the stick's own sets
/// (`usb-net` included); the USB adapter must get a DHCP lease by itself.
#[test]
fn guest_drives_ide_mode_sata_an_sd_card_e1000_and_a_usb_ethernet_adapter() {
    if !xtask::vm_tools_or_skip() {
        return;
    }
    let command = r#"
for d in /sys/block/*; do
  n=${d##*/}
  case "$n" in loop*|ram*) continue ;; esac
  echo "BLK $n $(cat $d/size) type=$(cat $d/device/type 2>/dev/null) removable=$(cat $d/removable)"
done
for i in /sys/class/net/*; do
  [ -e "$i/device/driver" ] && echo "NIC ${i##*/} $(basename $(readlink $i/device/driver))"
done
for m in ata_piix sdhci_pci mmc_block e1000 usbnet; do
  echo "MOD $m $(cat /sys/module/$m/initstate 2>/dev/null || echo missing)"
done
/bin/lapterop-agent disks
echo "DISKS-RC $?"
ip link set lo up
# USB devices enumerate after the modules load: wait up to 15 s for the adapter's interface.
usb=""
t=0
while [ -z "$usb" ] && [ "$t" -lt 150 ]; do
  for i in /sys/class/net/*; do
    case "$(basename "$(readlink $i/device/driver 2>/dev/null)" 2>/dev/null)" in
      rndis_host|cdc_ether|cdc_ncm) usb=${i##*/} ;;
    esac
  done
  [ -z "$usb" ] && sleep 0.1
  t=$((t + 1))
done
echo "USB-NIC ${usb:-none} $(basename "$(readlink /sys/class/net/$usb/device/driver 2>/dev/null)" 2>/dev/null)"

if [ -n "$usb" ]; then
  ip link set "$usb" up
  udhcpc -i "$usb" -n -q -t 10 -T 2 -s /bin/true 2>&1 | sed 's/^/DHCP /'
fi
exit 0
"#;
    let mut modules: Vec<String> = lapterop_image_builder::kmod::DEFAULT_REQUEST
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    modules.extend(["nic".to_owned(), "usb-net".to_owned()]);
    let spec = VmSpec {
        disks: ["ide:64M", "sd:64M"].iter().map(|d| d.parse().unwrap()).collect(),
        nic: Some("e1000".to_owned()),
        usb_nic: true,
        modules,
        command: command.to_owned(),
        timeout: Duration::from_secs(180),
        ..VmSpec::default()
    };
    let out = vm::run(&spec).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("guest output:\n{}\ntimings: {}", out.output, out.timings);
    let lines: Vec<&str> = out.output.lines().map(str::trim_end).collect();
    let line = |prefix: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .copied()
            .unwrap_or_else(|| panic!("no line {prefix:?} in the guest output:\n{}", out.output))
    };
    assert_eq!(out.exit_code, 0, "guest exit code");
    // 64 MiB = 131072 sectors: the IDE disk through ata_piix, the SD card through sdhci-pci.
    assert!(line("BLK sda ").starts_with("BLK sda 131072 "), "{}", line("BLK sda "));
    let sd = line("BLK mmcblk0 ");
    assert!(sd.starts_with("BLK mmcblk0 131072 type=SD"), "{sd}");
    for m in ["ata_piix", "sdhci_pci", "mmc_block", "e1000", "usbnet"] {
        assert_eq!(line(&format!("MOD {m} ")), format!("MOD {m} live"));
    }
    assert!(
        lines.iter().any(|l| l.starts_with("NIC ") && l.ends_with(" e1000")),
        "{}",
        out.output
    );
    // The agent's discovery sees both disks.
    assert!(lines.iter().any(|l| l.contains("sda")) && lines.iter().any(|l| l.contains("mmcblk0")));
    assert_eq!(line("DISKS-RC "), "DISKS-RC 0");
    // The USB adapter is driven and leases an address from QEMU's DHCP server by itself.
    let usb = line("USB-NIC ");
    assert!(
        usb.ends_with(" cdc_ether") || usb.ends_with(" rndis_host"),
        "no driver of the stick's usb-net set took the USB Ethernet adapter: {usb}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("DHCP ") && l.contains("lease of 10.0.2.15 obtained")),
        "{}",
        out.output
    );
}
