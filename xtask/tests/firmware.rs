//! Real firmware commands inside a QEMU guest (issue 4) and the audit of a QEMU machine (issue 5):
//! the static agent sends NVMe Identify, SMART / Health and Format NVM to QEMU's emulated NVMe
//! controller (a 4096-byte-sector namespace), and ATA IDENTIFY, SMART and READ NATIVE MAX ADDRESS
//! through SG_IO to QEMU's AHCI disk. QEMU implements neither NVMe Sanitize nor ATA SANITIZE or
//! security: the plan must say so and fall back, and forcing them must fail. After Format NVM with
//! SES=1 the namespace must read back as zeros.
//!
//! Same tool requirements as `vm.rs` (QEMU, Debian packages); one boot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use xtask::vm::{self, VmSpec};

const SERIAL: &str = "LAPTEROP-FW-42";

fn section<'a>(out: &'a str, name: &str) -> &'a str {
    let begin = format!("{name}-BEGIN\n");
    let start = out
        .find(&begin)
        .unwrap_or_else(|| panic!("no {name} in the guest output"))
        + begin.len();
    let end = out[start..]
        .find(&format!("{name}-END"))
        .unwrap_or_else(|| panic!("{name} did not finish"));
    &out[start..start + end]
}

fn json(out: &str, name: &str) -> Value {
    let text = section(out, name);
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} is not JSON ({e}):\n{text}"))
}

fn hex_key(key: &lapterop_certificate::SigningKey) -> String {
    key.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn line_value<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} line"))
}

#[test]
fn firmware_commands_reach_qemu_nvme_and_ahci_and_format_erases() {
    if !xtask::vm_tools_or_skip() {
        return;
    }
    let command = r#"
A=/bin/lapterop-agent
echo PROBE-NVME-BEGIN; $A probe /dev/nvme0n1; echo PROBE-NVME-END
echo PROBE-ATA-BEGIN; $A probe /dev/sda; echo PROBE-ATA-END
echo DISKS-BEGIN; $A disks --json; echo DISKS-END
# Suspend to RAM with an RTC wake alarm (how a BIOS freeze lock is lifted), then the disks still answer.
echo "SUSPEND-OUT $($A suspend --wake-after 5 2>&1 | tr '\n' ' ')"
echo "AFTER-RESUME $(dd if=/dev/sda bs=65536 count=16 2>/dev/null | wc -c) $($A probe /dev/nvme0n1 | grep -c '"model": "QEMU NVMe Ctrl"')"
# Personal data on the NVMe namespace, then Format NVM with user-data erase.
dd if=/dev/urandom of=/dev/nvme0n1 bs=65536 count=256 2>/dev/null
sync
echo "NVME-NONZERO-BEFORE $(dd if=/dev/nvme0n1 bs=65536 count=256 2>/dev/null | tr -d '\000' | wc -c)"
echo FORMAT-BEGIN; $A firmware-erase /dev/nvme0n1 --method nvme-format-user --yes; echo "FORMAT-RC $?"; echo FORMAT-END
blockdev --flushbufs /dev/nvme0n1
echo 3 > /proc/sys/vm/drop_caches
echo "NVME-NONZERO-AFTER $(tr -d '\000' < /dev/nvme0n1 | wc -c)"
echo "NVME-BYTES $(blockdev --getsize64 /dev/nvme0n1)"
# QEMU implements no sanitize: auto finds nothing, forcing it is refused.
$A firmware-erase /dev/nvme0n1 --method nvme-sanitize-crypto --yes 2> /tmp/e1; echo "FORCED-NVME-RC $?"
$A firmware-erase /dev/sda --method auto --yes 2> /tmp/e2; echo "AUTO-ATA-RC $?"
$A firmware-erase /dev/sda --method ata-sanitize-crypto --yes 2> /tmp/e3; echo "FORCED-ATA-RC $?"
echo "FORCED-ATA-ERR $(cat /tmp/e3)"
# Never without --yes.
$A firmware-erase /dev/nvme0n1 2>/dev/null; echo "NO-YES-RC $?"
echo AUDIT-BEGIN; $A audit --json; echo AUDIT-END
# The whole wipe: personal data on both disks, firmware purge where QEMU has one, random overwrite,
# full read-back, a signed certificate.
dd if=/dev/urandom of=/dev/nvme0n1 bs=65536 count=1024 2>/dev/null
dd if=/dev/urandom of=/dev/sda bs=65536 count=1024 2>/dev/null
sync
echo STATION_KEY_HEX > /tmp/station.key
$A wipe --yes --method auto --pattern random --station-key /tmp/station.key --operator "VM test" --certificate /tmp/cert.json /dev/nvme0n1 /dev/sda > /tmp/wipe.out 2>&1
echo "WIPE-RC $?"
echo "NVME-NONZERO-WIPED $(tr -d '\000' < /dev/nvme0n1 | wc -c)"
echo CERT-BEGIN; cat /tmp/cert.json; echo CERT-END
# Time per laptop: the same NVMe disk, Format NVM then overwrite + full read-back, against Format NVM
# with its sampled check alone (after_purge = sampled).
for mode in overwrite sampled; do
  dd if=/dev/urandom of=/dev/nvme0n1 bs=65536 count=1024 2>/dev/null; sync
  t0=$(cut -d' ' -f1 /proc/uptime)
  $A wipe --yes --method auto --pattern random --after-purge $mode --station-key /tmp/station.key --operator "VM test" --certificate /tmp/cert-$mode.json /dev/nvme0n1 > /tmp/wipe-$mode.out 2>&1
  echo "AFTER-PURGE-$mode-RC $? $t0 $(cut -d' ' -f1 /proc/uptime)"
  echo "AFTER-PURGE-$mode-NONZERO $(tr -d '\000' < /dev/nvme0n1 | wc -c)"
done
echo SAMPLED-CERT-BEGIN; cat /tmp/cert-sampled.json; echo SAMPLED-CERT-END
"#;
    let spec = VmSpec {
        disks: ["nvme:64M:4096", "ahci:64M"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect(),
        smbios: vec![
            format!("type=1,manufacturer=LENOVO,product=20L5CTO1WW,serial={SERIAL}"),
            "type=2,serial=BOARD-77".to_owned(),
        ],
        nic: Some("e1000e".to_owned()),
        command: command.replace(
            "STATION_KEY_HEX",
            &hex_key(&lapterop_certificate::keys::fixture_key("vm station")),
        ),
        timeout: Duration::from_secs(600),
        ..VmSpec::default()
    };
    let out = vm::run(&spec).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("guest output:\n{}\ntimings: {}", out.output, out.timings);
    let o = &out.output;

    // NVMe Identify and SMART / Health through NVME_IOCTL_ADMIN_CMD.
    let nvme = json(o, "PROBE-NVME");
    let caps = &nvme["capabilities"];
    assert_eq!(caps["transport"], "nvme");
    assert_eq!(caps["model"], "QEMU NVMe Ctrl");
    assert_eq!(caps["block_size"], 4096, "the 4Kn namespace is seen as 4Kn");
    assert_eq!(caps["size_blocks"], 64 * 1024 * 1024 / 4096);
    assert_eq!(caps["format"], true);
    assert_eq!(caps["sanitize_crypto"], false);
    assert_eq!(caps["sanitize_block"], false);
    assert!(
        nvme["details"]["health"]["available_spare"].as_u64().is_some(),
        "{nvme}"
    );
    assert!(nvme["details"]["health"]["temperature_kelvin"].as_u64().unwrap() > 200);
    let chosen = nvme["plan"]["chosen"].as_str().unwrap();
    assert!(
        chosen.starts_with("NvmeFormat"),
        "QEMU offers Format, not Sanitize: {chosen}"
    );

    // ATA IDENTIFY, SMART and READ NATIVE MAX through SG_IO to the AHCI disk.
    let ata = json(o, "PROBE-ATA");
    let caps = &ata["capabilities"];
    assert_eq!(caps["transport"], "ata");
    assert_eq!(caps["model"], "LAPTEROP-AHCI");
    assert_eq!(caps["user_sectors"], 64 * 1024 * 1024 / 512);
    assert_eq!(caps["sanitize"], false);
    assert_eq!(caps["security"]["supported"], false);
    let hidden = &ata["details"]["hidden_areas"];
    assert_eq!(
        hidden["native_sectors"],
        64 * 1024 * 1024 / 512,
        "READ NATIVE MAX answered: {hidden}"
    );
    assert_eq!(hidden["hpa"], false);
    // READ DMA EXT through SG_IO returns what the block device returns (the check before an HPA opens).
    assert_eq!(hidden["passthrough_read"]["matches_block_device"], true, "{hidden}");
    assert_eq!(hidden["passthrough_read"]["sectors"][1], 64 * 1024 * 1024 / 512 - 1);

    // `disks --json` carries the same firmware view per disk: capabilities, security state, hidden areas.
    let disks = json(o, "DISKS");
    let row = |name: &str| {
        disks
            .as_array()
            .and_then(|a| a.iter().find(|d| d["name"] == name))
            .unwrap_or_else(|| panic!("no {name} in {disks}"))
            .clone()
    };
    let sda = row("sda");
    assert_eq!(sda["firmware"]["capabilities"]["security"]["frozen"], false, "{sda}");
    assert_eq!(sda["firmware"]["details"]["hidden_areas"]["hpa"], false, "{sda}");
    assert_eq!(row("nvme0n1")["firmware"]["capabilities"]["format"], true);

    // The laptop slept (ACPI S3) and the RTC alarm woke it: the time away includes the sleep, and both
    // disks answer afterwards.
    let suspend = line_value(o, "SUSPEND-OUT");
    assert!(suspend.contains("deep, ACPI S3"), "{suspend}");
    let away: f64 = suspend
        .split("resumed after ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no resume time: {suspend}"));
    assert!(away >= 1.5, "it slept until the RTC alarm (5 s ahead): {suspend}");
    assert_eq!(line_value(o, "AFTER-RESUME"), "1048576 1");
    assert!(
        ata["details"]["smart"].as_array().is_some_and(|a| !a.is_empty()),
        "SMART attributes: {}",
        ata["details"]
    );
    assert_eq!(
        ata["plan"]["chosen"],
        Value::Null,
        "no purge on QEMU's AHCI disk: {}",
        ata["plan"]
    );

    // Format NVM with SES=1 completed, and the namespace reads back as zeros.
    assert_ne!(line_value(o, "NVME-NONZERO-BEFORE"), "0", "the test data was written");
    let format = section(o, "FORMAT");
    assert!(format.contains("FORMAT-RC 0"), "{format}");
    assert!(
        format.contains("\"kind\": \"nvme-format-user\"") && format.contains("\"outcome\": \"completed\""),
        "{format}"
    );
    assert!(format.contains("opc=0x80"), "{format}");
    assert_eq!(
        line_value(o, "NVME-NONZERO-AFTER"),
        "0",
        "after Format NVM the namespace reads as zeros"
    );
    assert_eq!(line_value(o, "NVME-BYTES"), (64u64 << 20).to_string());

    // Refused commands are reported and nothing pretends to have run.
    assert_eq!(line_value(o, "FORCED-NVME-RC"), "1");
    assert_eq!(line_value(o, "AUTO-ATA-RC"), "1");
    assert_eq!(line_value(o, "FORCED-ATA-RC"), "1");
    assert!(line_value(o, "FORCED-ATA-ERR").contains("CRYPTO SCRAMBLE"));
    assert_eq!(line_value(o, "NO-YES-RC"), "2");

    // The audit reads QEMU's SMBIOS tables.
    let audit = json(o, "AUDIT");
    let text = audit.to_string();
    assert!(text.contains(SERIAL), "the -smbios serial is in the audit");
    assert!(text.contains("BOARD-77"));
    assert!(text.contains("LENOVO"));
    // ... and the QEMU disks, with health from their own firmware.
    let disks = audit["disks"]
        .as_array()
        .unwrap_or_else(|| panic!("no disks in the audit: {audit}"));
    let names: Vec<_> = disks.iter().filter_map(|d| d["name"].as_str()).collect();
    assert!(names.contains(&"nvme0n1") && names.contains(&"sda"), "{names:?}");
    let nvme_disk = disks.iter().find(|d| d["name"] == "nvme0n1").unwrap();
    assert!(nvme_disk["nvme"]["power_on_hours"].is_u64(), "{nvme_disk}");

    // The wipe: signed, verifiable, NVMe purged by Format (content changed) then overwritten, the AHCI
    // disk cleared by overwrite with its hidden areas checked through READ NATIVE MAX.
    assert_eq!(line_value(o, "WIPE-RC"), "0", "wipe output in the guest output above");
    assert_ne!(
        line_value(o, "NVME-NONZERO-WIPED"),
        "0",
        "the random pattern is on the disk"
    );
    let key = lapterop_certificate::keys::fixture_key("vm station").verifying_key();
    let cert = lapterop_certificate::verify(section(o, "CERT").as_bytes(), &key).unwrap();
    let nvme = cert.disks.iter().find(|d| d.device == "nvme0n1").unwrap();
    assert_eq!(nvme.outcome.status, lapterop_certificate::OutcomeStatus::Erased);
    assert_eq!(nvme.nist_category, lapterop_certificate::NistCategory::Purge);
    assert_eq!(nvme.logical_sector_size, 4096);
    let kinds: Vec<_> = nvme.steps.iter().map(|s| (s.kind, s.outcome)).collect();
    use lapterop_certificate::{StepKind as K, StepOutcome as O};
    assert!(kinds.contains(&(K::NvmeSanitizeCrypto, O::Skipped)), "{kinds:?}");
    assert!(
        kinds.contains(&(K::NvmeFormatUser, O::Completed)) || kinds.contains(&(K::NvmeFormatCrypto, O::Completed)),
        "{kinds:?}"
    );
    assert!(kinds.contains(&(K::Overwrite, O::Completed)), "{kinds:?}");
    let v = nvme.verification.as_ref().unwrap();
    assert_ne!(
        v.firmware_before_blake3, v.firmware_after_blake3,
        "the purge changed the sampled content"
    );
    assert!(v.firmware_before_blake3.is_some());
    let sata = cert.disks.iter().find(|d| d.device == "sda").unwrap();
    assert_eq!(
        sata.outcome.status,
        lapterop_certificate::OutcomeStatus::Erased,
        "{:?}",
        sata.outcome
    );
    assert_eq!(sata.nist_category, lapterop_certificate::NistCategory::Clear);
    assert_eq!(sata.hidden_areas.check, lapterop_certificate::HiddenAreaCheck::Checked);
    assert_eq!(sata.model.as_deref(), Some("LAPTEROP-AHCI"));

    // after_purge = sampled: Format NVM changed every sampled block, so no overwrite ran (the disk
    // reads as Format left it, all zeros) and the sampled check is the verification; the disk is a
    // NIST purge, erased.
    let seconds = |mode: &str| {
        let f: Vec<&str> = line_value(o, &format!("AFTER-PURGE-{mode}-RC")).split(' ').collect();
        assert_eq!(f[0], "0", "wipe --after-purge {mode}");
        f[2].parse::<f64>().unwrap() - f[1].parse::<f64>().unwrap()
    };
    let (full, sampled) = (seconds("overwrite"), seconds("sampled"));
    assert_ne!(
        line_value(o, "AFTER-PURGE-overwrite-NONZERO"),
        "0",
        "the random pass is on the disk"
    );
    assert_eq!(
        line_value(o, "AFTER-PURGE-sampled-NONZERO"),
        "0",
        "nothing was written after Format"
    );
    let cert = lapterop_certificate::verify(section(o, "SAMPLED-CERT").as_bytes(), &key).unwrap();
    let nvme = &cert.disks[0];
    assert_eq!(nvme.outcome.status, lapterop_certificate::OutcomeStatus::Erased);
    assert_eq!(nvme.nist_category, lapterop_certificate::NistCategory::Purge);
    assert!(!nvme.steps.iter().any(|s| s.kind == K::Overwrite), "{:?}", nvme.steps);
    let v = nvme.verification.as_ref().unwrap();
    assert_eq!(v.mode, lapterop_certificate::VerifyMode::Sample);
    assert_eq!(v.expected.kind, lapterop_certificate::PatternKind::ChangedFromMarker);
    lapterop_testkit::report(&format!(
        "time per disk (64 MiB 4Kn QEMU NVMe, TCG): Format NVM + overwrite + full read-back {full:.1} s, \
         Format NVM + sampled check {sampled:.1} s ({:.1}x)",
        full / sampled
    ));
}
