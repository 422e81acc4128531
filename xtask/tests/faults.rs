//! The fault battery: real I/O errors from the real kernel. One guest with five disks, four of them
//! failing at chosen sectors through QEMU's `blkdebug` driver (a virtio and an NVMe disk that cannot
//! write one sector, a virtio and a 4Kn NVMe disk that cannot read one back), runs `lapterop-agent
//! wipe` over all five. The certificate must name exactly the failing sectors, no faulty disk may be
//! `erased`, and the clean disk must be: the job goes on past the others' errors.
//!
//! Needs what `xtask/tests/vm.rs` needs; without it the test fails under
//! `LAPTEROP_REQUIRE_ROOT_TESTS=1` and otherwise says loudly that it was skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use lapterop_certificate::{Certificate, OutcomeStatus, RangeOp};
use xtask::vm::{self, DiskFault, FaultIo, VmSpec};

/// A fixed station key for the guest (the certificate's signature is not what this test checks).
const KEY: &str = "d0945041589500f5e4cc65e687f8297b0ff59f90317a2134f1124af9cd018a44";

/// One injected fault and where the certificate must report it.
struct Expect {
    disk: usize,
    sector_512: u64,
    io: FaultIo,
    logical: u64,
}

#[test]
fn injected_io_errors_are_reported_exactly_and_never_end_erased() {
    if !xtask::vm_tools_or_skip() {
        return;
    }
    // Disks 5 and 6 sit under dm-flakey in the guest: one drops every write without an error, one
    // stores every write with its first byte changed (`Documentation/admin-guide/device-mapper/
    // dm-flakey.rst`: `drop_writes`, `corrupt_bio_byte 1 w 255 0`), silent faults no error code shows.
    // (Corrupting reads, `... 1 r ...`, does nothing on the guest's 6.1 kernel: dm-flakey changes the
    // bio after its data iterator has run out. The pattern is random: a zero pass may go out as
    // WRITE ZEROES, which carries no data to corrupt.)
    let disks = [
        "virtio:16M",
        "virtio:16M",
        "nvme:16M",
        "nvme:16M:4096",
        "virtio:16M",
        "virtio:16M",
        "virtio:16M",
    ];
    let expect = [
        Expect {
            disk: 0,
            sector_512: 12_345,
            io: FaultIo::Write,
            logical: 512,
        },
        Expect {
            disk: 1,
            sector_512: 20_000,
            io: FaultIo::Read,
            logical: 512,
        },
        Expect {
            disk: 2,
            sector_512: 30_001,
            io: FaultIo::Write,
            logical: 512,
        },
        // A 4Kn disk: sector 8·2500 + 3 (512-byte units) is inside logical block 2500.
        Expect {
            disk: 3,
            sector_512: 8 * 2_500 + 3,
            io: FaultIo::Read,
            logical: 4096,
        },
    ];
    let command = format!(
        r#"
dmesg -n 1
printf '%s\n' {KEY} > /tmp/station.key
chmod 600 /tmp/station.key
devs=""
for d in /sys/block/vd* /sys/block/nvme*n1; do
  case "$(cat $d/serial 2>/dev/null)" in
    LAPTEROP-D5) drop=/dev/${{d##*/}} ;;
    LAPTEROP-D6) corrupt=/dev/${{d##*/}} ;;
    *) devs="$devs /dev/${{d##*/}}" ;;
  esac
done
# The donor's data on the disk whose writes will be dropped.
dd if=/dev/urandom of=$drop bs=1M count=16 2>/dev/null
sync
n=$(cat /sys/block/${{drop##*/}}/size)
dmdrop=$(lapterop-dmctl create drops "0 $n flakey $drop 0 0 1 1 drop_writes") || exit 3
dmcorrupt=$(lapterop-dmctl create corrupts "0 $n flakey $corrupt 0 0 1 5 corrupt_bio_byte 1 w 255 0") || exit 3
echo "DM-FLAKEY $dmdrop $dmcorrupt"
devs="$devs /dev/$dmdrop /dev/$dmcorrupt"
/bin/lapterop-agent wipe --yes --operator battery --method overwrite --pattern random --verify full \
  --station-key /tmp/station.key --certificate /tmp/cert.json $devs > /tmp/wipe.log 2>&1
echo "WIPE-RC $?"
echo CERT-BEGIN
cat /tmp/cert.json
echo
echo CERT-END
exit 0
"#
    );
    let spec = VmSpec {
        disks: disks.iter().map(|d| d.parse().unwrap()).collect(),
        nic: None,
        command,
        memory_mib: 512,
        timeout: Duration::from_secs(600),
        modules: VmSpec::default()
            .modules
            .into_iter()
            .chain(["dm_flakey".to_owned()])
            .collect(),
        tools: vec!["lapterop-dmctl".to_owned()],
        faults: expect
            .iter()
            .map(|e| DiskFault {
                disk: e.disk,
                sector: e.sector_512,
                io: e.io,
            })
            .collect(),
        ..VmSpec::default()
    };
    let out = vm::run(&spec).unwrap_or_else(|e| panic!("{e}"));
    let text = &out.output;
    assert!(text.contains("WIPE-RC 1"), "a disk not fully erased: exit 1\n{text}");
    let json = text
        .split("CERT-BEGIN")
        .nth(1)
        .and_then(|t| t.split("CERT-END").next())
        .unwrap_or_else(|| panic!("no certificate in the guest's output:\n{text}"));
    let cert: Certificate = serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}:\n{json}"));
    let by_serial = |i: usize| {
        let serial = format!("LAPTEROP-D{i}");
        cert.disks
            .iter()
            .find(|d| d.serial.as_deref() == Some(serial.as_str()))
            .unwrap_or_else(|| panic!("{serial} not in the certificate: {:?}", cert.disks))
    };
    let mut exact = 0;
    for e in &expect {
        let d = by_serial(e.disk);
        assert_ne!(d.outcome.status, OutcomeStatus::Erased, "disk {} had a fault", e.disk);
        let lba = e.sector_512 * 512 / e.logical;
        let (op, ranges) = match e.io {
            FaultIo::Write => (
                RangeOp::Write,
                d.steps.iter().flat_map(|s| s.error_ranges.clone()).collect::<Vec<_>>(),
            ),
            FaultIo::Read => (
                RangeOp::Read,
                d.verification
                    .as_ref()
                    .map(|v| v.error_ranges.clone())
                    .unwrap_or_default(),
            ),
        };
        let listed: Vec<(RangeOp, u64, u64)> = ranges.iter().map(|r| (r.op, r.lba, r.count)).collect();
        assert_eq!(listed, [(op, lba, 1)], "disk {}: exactly the failing sector", e.disk);
        exact += 1;
    }
    let clean = by_serial(4);
    assert_eq!(
        clean.outcome.status,
        OutcomeStatus::Erased,
        "the job went on with the clean disk"
    );
    let erased_faulty = expect
        .iter()
        .filter(|e| by_serial(e.disk).outcome.status == OutcomeStatus::Erased)
        .count();
    // The silent faults: no error code, only the read-back can see them.
    let dm: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("DM-FLAKEY "))
        .unwrap_or_else(|| panic!("the guest made no dm-flakey devices:\n{text}"))
        .split_whitespace()
        .collect();
    let by_device = |name: &str| {
        cert.disks
            .iter()
            .find(|d| d.device.trim_start_matches("/dev/") == name)
            .unwrap_or_else(|| panic!("{name} not in the certificate: {:?}", cert.disks))
    };
    let mut silent = Vec::new();
    for (name, what) in dm
        .iter()
        .zip(["every write dropped", "every write's first byte changed"])
    {
        let d = by_device(name);
        assert_eq!(
            d.outcome.status,
            OutcomeStatus::NotErased,
            "{name} ({what}): {:?}",
            d.outcome
        );
        let v = d
            .verification
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no read-back"));
        assert!(v.mismatched_blocks > 0, "{name} ({what}): the read-back saw nothing");
        assert!(
            v.error_ranges.iter().any(|r| r.op == RangeOp::Mismatch),
            "{name} ({what}): no mismatched range listed: {:?}",
            v.error_ranges
        );
        silent.push(format!(
            "{what}: {} of {} blocks mismatched, {:?}",
            v.mismatched_blocks,
            d.capacity_bytes / u64::from(d.logical_sector_size),
            d.outcome.status
        ));
    }
    let drop = by_device(dm[0]);
    assert_eq!(
        drop.verification.as_ref().map(|v| v.mismatched_blocks),
        Some(drop.capacity_bytes / u64::from(drop.logical_sector_size)),
        "a disk that dropped every write reads back the donor's data in every block"
    );
    lapterop_testkit::report(&format!("fault battery, dm-flakey: {}", silent.join("; ")));
    lapterop_testkit::report(&format!(
        "fault battery: {} faults injected (virtio and NVMe, write and read-back, 512 and 4096-byte sectors), \
         {erased_faulty} faulty disks ended erased, {exact} bad ranges reported exactly; the clean disk: {:?}",
        expect.len(),
        clean.outcome.status
    ));
}
