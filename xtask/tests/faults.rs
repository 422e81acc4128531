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
    let disks = ["virtio:16M", "virtio:16M", "nvme:16M", "nvme:16M:4096", "virtio:16M"];
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
for d in /sys/block/vd* /sys/block/nvme*n1; do devs="$devs /dev/${{d##*/}}"; done
/bin/lapterop-agent wipe --yes --operator battery --method overwrite --pattern zero --verify full \
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
    lapterop_testkit::report(&format!(
        "fault battery: {} faults injected (virtio and NVMe, write and read-back, 512 and 4096-byte sectors), \
         {erased_faulty} faulty disks ended erased, {exact} bad ranges reported exactly; the clean disk: {:?}",
        expect.len(),
        clean.outcome.status
    ));
}
