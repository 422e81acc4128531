//! Engine and outcome tests against an in-memory device with injected faults.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use lapterop_certificate::keys;

use super::*;

/// An in-memory block device that fails reads or writes touching chosen sectors with `EIO`, and can
/// silently corrupt chosen sectors on write (a drive that lies).
struct FaultyDevice {
    data: Mutex<Vec<u8>>,
    sector: u32,
    bad_write: BTreeSet<u64>,
    bad_read: BTreeSet<u64>,
    lying: BTreeSet<u64>,
}

impl FaultyDevice {
    fn new(bytes: usize, sector: u32) -> Self {
        Self {
            data: Mutex::new(vec![0xA5; bytes]),
            sector,
            bad_write: BTreeSet::new(),
            bad_read: BTreeSet::new(),
            lying: BTreeSet::new(),
        }
    }
    fn touches(&self, set: &BTreeSet<u64>, off: u64, len: usize) -> bool {
        let ss = u64::from(self.sector);
        set.range(off / ss..(off + len as u64).div_ceil(ss)).next().is_some()
    }
}

impl BlockDevice for FaultyDevice {
    fn capacity(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn sector_size(&self) -> u32 {
        self.sector
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), u32> {
        assert_eq!(offset % u64::from(self.sector), 0);
        assert_eq!(buf.len() % self.sector as usize, 0);
        if self.touches(&self.bad_write, offset, buf.len()) {
            return Err(5);
        }
        let o = usize::try_from(offset).unwrap();
        let mut d = self.data.lock().unwrap();
        d[o..o + buf.len()].copy_from_slice(buf);
        let ss = u64::from(self.sector);
        for &l in self.lying.range(offset / ss..(offset + buf.len() as u64) / ss) {
            let at = usize::try_from(l).unwrap() * self.sector as usize;
            d[at] ^= 0xFF;
        }
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), u32> {
        if self.touches(&self.bad_read, offset, buf.len()) {
            return Err(5);
        }
        let o = usize::try_from(offset).unwrap();
        buf.copy_from_slice(&self.data.lock().unwrap()[o..o + buf.len()]);
        Ok(())
    }
    fn sync(&self) -> Result<(), u32> {
        Ok(())
    }
}

struct Quiet;
impl Progress for Quiet {
    fn phase(&self, _: &str, _: u64) {}
    fn update(&self, _: u64) {}
    fn finish(&self, _: &lapterop_certificate::DiskOutcome) {}
}

fn ident(transport: Transport) -> crate::disk::Disk {
    crate::disk::Disk {
        model: Some("Fault Injector".into()),
        serial: Some("F1".into()),
        transport,
        ..crate::disk::Disk::for_tests("fake0", std::path::Path::new("/dev/fake0"), SIZE as u64)
    }
}

/// One pass over `dev`; `stopped` simulates a signal that arrived before the start.
fn wipe(dev: &FaultyDevice, t: Transport, pattern: PatternChoice, verify: VerifyChoice, stopped: bool) -> DiskRecord {
    let spec = WipeSpec {
        pattern,
        passes: 1,
        verify,
        discard: DiscardChoice::Never,
        after_purge: AfterPurge::Overwrite,
    };
    wipe_device(dev, &ident(t), &spec, &AtomicBool::new(stopped), &Quiet).unwrap()
}

/// Signs a certificate holding `d`: the certificate crate refuses anything that breaks a rule.
fn signs(d: &DiskRecord) -> cert::Certificate {
    try_sign(d).unwrap()
}

/// [`signs`], with the refusal returned.
fn try_sign(d: &DiskRecord) -> Result<cert::Certificate, cert::SignError> {
    cert::Draft {
        agent: AgentInfo {
            version: "0.1.0".into(),
            binary_blake3: "0".repeat(64),
            live_image_build: None,
        },
        station: cert::StationInfo {
            key_id: String::new(),
            organisation: "o".into(),
            site: "s".into(),
            name: None,
        },
        operator: cert::Person {
            name: "t".into(),
            role: None,
        },
        verifier: None,
        donor: None,
        host: None,
        disks: vec![d.clone()],
        not_touched: Vec::new(),
        install: None,
    }
    .sign(cert::new_id().unwrap(), &keys::fixture_key("wipe-tests"))
}

const SIZE: usize = 9 << 20; // not a multiple of the 4 MiB chunk

#[test]
fn clean_random_wipe_is_erased_and_hash_covers_the_device() {
    let dev = FaultyDevice::new(SIZE, 512);
    let d = wipe(&dev, Transport::Loop, PatternChoice::Random, VerifyChoice::Full, false);
    assert_eq!(d.outcome.status, OutcomeStatus::Erased, "{:?}", d.outcome);
    let v = d.verification.as_ref().unwrap();
    let data = dev.data.lock().unwrap().clone();
    assert_eq!(v.readback_blake3, blake3::hash(&data).to_hex().to_string());
    assert_eq!(v.bytes_read, SIZE as u64);
    assert!(
        data.iter().filter(|&&b| b == 0xA5).count() < SIZE / 100,
        "old content is gone"
    );
    signs(&d);
}

#[test]
fn write_errors_are_bisected_to_exact_sectors_and_not_erased() {
    let mut dev = FaultyDevice::new(SIZE, 512);
    dev.bad_write.extend([100, 101, 102, 9000, 18431]); // 18431 is the last sector
    let d = wipe(&dev, Transport::Loop, PatternChoice::Zero, VerifyChoice::Full, false);
    assert_eq!(d.outcome.status, OutcomeStatus::NotErased);
    assert_eq!(d.nist_category, NistCategory::None);
    let w: Vec<(u64, u64, u32)> = d.steps[0]
        .error_ranges
        .iter()
        .map(|r| (r.lba, r.count, r.errno))
        .collect();
    assert_eq!(w, [(100, 3, 5), (9000, 1, 5), (18431, 1, 5)]);
    assert_eq!(d.steps[0].outcome, StepOutcome::Failed);
    assert_eq!(d.steps[0].bytes, SIZE as u64 - 5 * 512);
    // The unwritten sectors still hold the old bytes, and the verify pass says so.
    let v = d.verification.as_ref().unwrap();
    let m: Vec<(u64, u64)> = v
        .error_ranges
        .iter()
        .filter(|r| r.op == RangeOp::Mismatch)
        .map(|r| (r.lba, r.count))
        .collect();
    assert_eq!(m, [(100, 3), (9000, 1), (18431, 1)]);
    assert_eq!(v.mismatched_blocks, 5);
    // Every other sector was written.
    let data = dev.data.lock().unwrap();
    assert!(data[..100 * 512].iter().all(|&b| b == 0) && data[103 * 512..9000 * 512].iter().all(|&b| b == 0));
    drop(data);
    signs(&d);
}

#[test]
fn read_errors_and_lying_sectors_are_recorded_exactly() {
    let mut dev = FaultyDevice::new(SIZE, 4096);
    dev.bad_read.extend([7, 8, 2000]);
    dev.lying.insert(1024); // the drive flips a byte of sector 1024 on every write
    let d = wipe(&dev, Transport::Nvme, PatternChoice::Random, VerifyChoice::Full, false);
    assert_eq!(d.outcome.status, OutcomeStatus::NotErased);
    let v = d.verification.as_ref().unwrap();
    let got: Vec<(RangeOp, u64, u64, u32)> = v.error_ranges.iter().map(|r| (r.op, r.lba, r.count, r.errno)).collect();
    assert_eq!(
        got,
        [
            (RangeOp::Read, 7, 2, 5),
            (RangeOp::Read, 2000, 1, 5),
            (RangeOp::Mismatch, 1024, 1, 0)
        ]
    );
    assert_eq!(v.bytes_read, SIZE as u64 - 3 * 4096);
    assert!(d
        .outcome
        .reason
        .as_deref()
        .unwrap()
        .contains("3 sectors could not be read"));
    signs(&d);
}

#[test]
fn sata_without_hidden_area_check_is_erased_with_exceptions() {
    let dev = FaultyDevice::new(SIZE, 512);
    let d = wipe(&dev, Transport::Sata, PatternChoice::Zero, VerifyChoice::Full, false);
    assert_eq!(d.outcome.status, OutcomeStatus::ErasedWithExceptions);
    assert_eq!(d.outcome.exceptions[0].kind, ExceptionKind::HiddenAreaUnchecked);
    signs(&d);
}

#[test]
fn unverified_or_interrupted_wipes_are_never_erased() {
    let dev = FaultyDevice::new(SIZE, 512);
    let d = wipe(&dev, Transport::Loop, PatternChoice::Zero, VerifyChoice::None, false);
    assert_eq!(d.outcome.status, OutcomeStatus::NotErased);
    assert!(d.verification.is_none());
    signs(&d);

    let d = wipe(&dev, Transport::Loop, PatternChoice::Random, VerifyChoice::Full, true);
    assert_eq!(d.outcome.status, OutcomeStatus::NotErased);
    assert_eq!(d.steps[0].outcome, StepOutcome::Interrupted);
    assert!(d.outcome.reason.as_deref().unwrap().starts_with("interrupted"));
    signs(&d);
}

#[test]
fn sampled_verify_hashes_the_plan_and_records_the_pre_wipe_digest() {
    let dev = FaultyDevice::new(SIZE, 512);
    let before = dev.data.lock().unwrap().clone();
    let d = wipe(&dev, Transport::Loop, PatternChoice::Zero, VerifyChoice::Sample, false);
    assert_eq!(d.outcome.status, OutcomeStatus::Erased, "{:?}", d.outcome);
    let v = d.verification.as_ref().unwrap();
    let p = v.sample.as_ref().unwrap();
    let seed: [u8; 32] = hex::decode(&p.seed).unwrap().try_into().unwrap();
    let plan = plan::sample_plan(SIZE as u64, 512, seed);
    let digest = |bytes: &[u8]| {
        let mut h = blake3::Hasher::new();
        for (o, l) in plan.byte_regions() {
            h.update(&bytes[usize::try_from(o).unwrap()..usize::try_from(o + l).unwrap()]);
        }
        h.finalize().to_hex().to_string()
    };
    assert_eq!(v.pre_wipe_sample_blake3.as_deref(), Some(digest(&before).as_str()));
    assert_eq!(v.readback_blake3, digest(&dev.data.lock().unwrap()));
    assert_eq!(v.bytes_read, plan.planned_bytes());
    assert!(v.bytes_read * 10 >= SIZE as u64 && v.bytes_read < SIZE as u64);
    signs(&d);
}

#[test]
fn many_bad_sectors_stay_bounded_and_valid() {
    let mut dev = FaultyDevice::new(4 << 20, 512);
    dev.bad_write.extend((0..3000).map(|i| i * 2)); // 3000 separate bad sectors
    let d = wipe(&dev, Transport::Loop, PatternChoice::Zero, VerifyChoice::Full, false);
    assert_eq!(d.steps[0].error_ranges.len(), engine::MAX_RANGES);
    let last = d.steps[0].error_ranges.last().unwrap();
    assert_eq!(last.lba + last.count, 5999, "the folded range covers the rest");
    let c = signs(&d);
    assert!(c.to_pretty_json().unwrap().len() < cert::validate::MAX_DOCUMENT_BYTES);
}

#[test]
fn certificates_are_written_atomically() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("c.json");
    write_atomically(&p, b"{}\n").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"{}\n");
    assert_eq!(
        std::fs::read_dir(t.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
}

/// A SATA drive with a Host Protected Area opened for the wipe through a fake ATA transport that
/// keeps a real maximum address (`crate::hpa::tests::MemDrive`).
mod hidden_area {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::drive::HiddenProbe;
    use crate::hpa::tests::{tail_of, MemDrive};
    use cert::HiddenAreaAction;

    const VISIBLE: u64 = 8192; // 4 MiB seen by the kernel
    const NATIVE: u64 = 10240; // 1 MiB more behind the HPA

    struct Run {
        d: DiskRecord,
        media: Arc<Mutex<Vec<u8>>>,
        max: Arc<Mutex<u64>>,
    }

    fn run(drive: MemDrive, verify: VerifyChoice, stopped: bool) -> Run {
        let head = drive.head(VISIBLE);
        let (media, max) = (Arc::clone(&drive.media), Arc::clone(&drive.max));
        let probe = HiddenProbe {
            visible_sectors: VISIBLE,
            native_sectors: Some(NATIVE),
            dco_sectors: None,
            notes: Vec::new(),
        };
        let left = HiddenAreaAction::LeftInPlace;
        let firmware = FirmwarePrelude {
            hidden: Some(probe.record(left, left)),
            tail: Some(Box::new(tail_of(drive, VISIBLE).unwrap())),
            ..Default::default()
        };
        let spec = WipeSpec {
            pattern: PatternChoice::Random,
            passes: 1,
            verify,
            discard: DiscardChoice::Never,
            after_purge: AfterPurge::Overwrite,
        };
        let stop = AtomicBool::new(stopped);
        let d = wipe_device_with(&head, &ident(Transport::Sata), &spec, &stop, &Quiet, firmware).unwrap();
        Run { d, media, max }
    }

    fn hidden_bytes(r: &Run) -> Vec<u8> {
        r.media.lock().unwrap()[usize::try_from(VISIBLE * 512).unwrap()..].to_vec()
    }

    fn kinds(d: &DiskRecord) -> Vec<(StepKind, StepOutcome)> {
        d.steps.iter().map(|s| (s.kind, s.outcome)).collect()
    }

    #[test]
    fn an_hpa_is_opened_overwritten_read_back_and_closed() {
        let r = run(MemDrive::new(VISIBLE, NATIVE), VerifyChoice::Full, false);
        let d = &r.d;
        assert_eq!(d.outcome.status, OutcomeStatus::Erased, "{:?}", d.outcome);
        assert_eq!(d.capacity_bytes, NATIVE * 512, "the record covers the native capacity");
        assert_eq!(
            kinds(d),
            [
                (StepKind::HpaExpose, StepOutcome::Completed),
                (StepKind::Overwrite, StepOutcome::Completed),
                (StepKind::HpaRestore, StepOutcome::Completed)
            ]
        );
        assert_eq!(d.steps[1].bytes, NATIVE * 512);
        let hpa = d.hidden_areas.hpa.as_ref().unwrap();
        assert_eq!(hpa.action, HiddenAreaAction::ExposedAndRestored);
        assert_eq!((hpa.visible_sectors, hpa.native_sectors), (VISIBLE, NATIVE));
        // The read-back digest is of every native sector, as an outside reader of the drive gets them.
        let v = d.verification.as_ref().unwrap();
        assert_eq!(v.bytes_read, NATIVE * 512);
        assert_eq!(
            v.readback_blake3,
            blake3::hash(&r.media.lock().unwrap()).to_hex().to_string()
        );
        let hidden = hidden_bytes(&r);
        assert!(
            hidden.iter().filter(|&&b| b == 0xA5).count() < hidden.len() / 100,
            "the donor's bytes behind the HPA are gone"
        );
        assert_eq!(*r.max.lock().unwrap(), VISIBLE, "the drive shows its old size again");
        signs(d);
    }

    #[test]
    fn a_sampled_verify_plans_over_the_native_capacity() {
        let r = run(MemDrive::new(VISIBLE, NATIVE), VerifyChoice::Sample, false);
        assert_eq!(r.d.outcome.status, OutcomeStatus::Erased, "{:?}", r.d.outcome);
        let p = r.d.verification.as_ref().unwrap().sample.as_ref().unwrap();
        let seed: [u8; 32] = hex::decode(&p.seed).unwrap().try_into().unwrap();
        let plan = plan::sample_plan(NATIVE * 512, 512, seed);
        assert!(
            plan.byte_regions().iter().any(|(o, _)| *o >= VISIBLE * 512),
            "samples fall behind the HPA too"
        );
        let (o, l) = *plan.byte_regions().last().unwrap();
        assert_eq!(o + l, NATIVE * 512, "the last native LBA is sampled");
        signs(&r.d);
    }

    #[test]
    fn a_drive_that_refuses_set_max_keeps_its_hpa_and_says_so() {
        let mut drive = MemDrive::new(VISIBLE, NATIVE);
        drive.refuse_set_max = true;
        let r = run(drive, VerifyChoice::Full, false);
        let d = &r.d;
        assert_eq!(d.outcome.status, OutcomeStatus::ErasedWithExceptions);
        assert_eq!(d.outcome.exceptions[0].kind, ExceptionKind::HiddenAreaLeft);
        assert!(
            d.outcome.exceptions[0].detail.contains("2048 sectors"),
            "{:?}",
            d.outcome
        );
        assert_eq!(d.capacity_bytes, VISIBLE * 512);
        assert_eq!(kinds(d)[0], (StepKind::HpaExpose, StepOutcome::Failed));
        assert!(!kinds(d).iter().any(|k| k.0 == StepKind::HpaRestore));
        assert!(
            hidden_bytes(&r).iter().all(|&b| b == 0xA5),
            "nothing written past the visible end"
        );
        signs(d);
    }

    #[test]
    fn a_drive_that_will_not_shrink_again_is_erased_with_that_exception() {
        let mut drive = MemDrive::new(VISIBLE, NATIVE);
        drive.refuse_shrink = true;
        let r = run(drive, VerifyChoice::Full, false);
        let d = &r.d;
        assert_eq!(d.outcome.status, OutcomeStatus::ErasedWithExceptions, "{:?}", d.outcome);
        assert_eq!(d.outcome.exceptions[0].kind, ExceptionKind::HiddenAreaNotRestored);
        assert_eq!(
            d.hidden_areas.hpa.as_ref().unwrap().action,
            HiddenAreaAction::ExposedNotRestored
        );
        let restore = d.steps.last().unwrap();
        assert_eq!(
            (restore.kind, restore.outcome),
            (StepKind::HpaRestore, StepOutcome::Failed)
        );
        assert!(
            restore.reason.as_deref().unwrap().contains("powered off"),
            "{restore:?}"
        );
        assert!(hidden_bytes(&r).iter().filter(|&&b| b == 0xA5).count() < 2048 * 512 / 100);
        signs(d);
    }

    #[test]
    fn a_bad_sector_behind_the_hpa_is_recorded_at_its_native_lba() {
        let mut drive = MemDrive::new(VISIBLE, NATIVE);
        drive.bad_read.insert(9000);
        let r = run(drive, VerifyChoice::Full, false);
        let d = &r.d;
        assert_eq!(d.outcome.status, OutcomeStatus::NotErased);
        let v = d.verification.as_ref().unwrap();
        let got: Vec<_> = v.error_ranges.iter().map(|e| (e.op, e.lba, e.count)).collect();
        assert_eq!(got, [(RangeOp::Read, 9000, 1)]);
        assert_eq!(*r.max.lock().unwrap(), VISIBLE, "closed again after the failure");
        assert_eq!(
            kinds(d).last().unwrap(),
            &(StepKind::HpaRestore, StepOutcome::Completed)
        );
        signs(d);
    }

    #[test]
    fn an_interrupted_wipe_still_closes_the_hpa() {
        let r = run(MemDrive::new(VISIBLE, NATIVE), VerifyChoice::Full, true);
        assert_eq!(r.d.outcome.status, OutcomeStatus::NotErased);
        assert_eq!(*r.max.lock().unwrap(), VISIBLE);
        assert_eq!(
            r.d.hidden_areas.hpa.as_ref().unwrap().action,
            HiddenAreaAction::ExposedAndRestored
        );
        signs(&r.d);
    }
}

/// A frozen drive whose suspend-and-wake did not lift the freeze: the purge stays skipped, the
/// overwrite erases, and the failed `unfreeze` step is on record without counting against the outcome.
#[test]
fn an_unfreeze_that_did_not_help_is_recorded_and_the_overwrite_still_erases() {
    let dev = FaultyDevice::new(SIZE, 512);
    for slept in [
        Err(crate::unfreeze::SuspendError::Write {
            value: "mem".into(),
            file: "/sys/power/state".into(),
            source: std::io::Error::from_raw_os_error(16),
        }),
        Ok(std::time::Duration::from_secs(11)),
    ] {
        let frozen = crate::firmware::skipped(
            StepKind::AtaSanitizeCrypto,
            cert::Capability::Frozen,
            "sanitize is frozen (SANITIZE FREEZE LOCK)".into(),
        );
        let firmware = FirmwarePrelude {
            skipped: vec![crate::unfreeze::step(&slept, true, cert::now_utc(), 10), frozen],
            hidden: Some(HiddenAreas {
                check: HiddenAreaCheck::Checked,
                hpa: None,
                dco: None,
            }),
            ..Default::default()
        };
        assert!(crate::unfreeze::is_frozen(&firmware));
        let d = zero_full_with(&dev, Transport::Sata, firmware);
        assert_eq!(d.outcome.status, OutcomeStatus::Erased, "{:?}", d.outcome);
        assert_eq!(d.nist_category, NistCategory::Clear);
        assert_eq!(
            (d.steps[0].kind, d.steps[0].outcome),
            (StepKind::Unfreeze, StepOutcome::Failed)
        );
        assert!(d.steps[0].reason.as_deref().unwrap().contains(if slept.is_ok() {
            "still frozen"
        } else {
            "Device or resource busy"
        }));
        signs(&d);
    }
}

/// A completed NVMe Sanitize crypto erase over the whole test device, as the firmware layer records it.
fn completed_crypto_sanitize() -> Step {
    Step {
        kind: StepKind::NvmeSanitizeCrypto,
        capability: cert::Capability::Supported,
        outcome: StepOutcome::Completed,
        reason: None,
        started_at: Some(cert::now_utc()),
        finished_at: Some(cert::now_utc()),
        pass: None,
        pattern: None,
        bytes: SIZE as u64,
        error_ranges: Vec::new(),
        firmware: Some(cert::FirmwareEvidence {
            command: "nvme admin opc=0x84 nsid=0 cdw10=0x0000000c".into(),
            status: "success".into(),
            polls: 1,
            final_state: Some("sanitize completed".into()),
        }),
    }
}

/// NVMe: no hidden areas to check.
fn nvme_hidden() -> Option<HiddenAreas> {
    Some(HiddenAreas {
        check: HiddenAreaCheck::NotApplicable,
        hpa: None,
        dco: None,
    })
}

/// A drive whose firmware erase answers "success" without changing a byte (a drive that lies, or a
/// bridge that swallows the command) never earns `purge`: the samples read before and after are the
/// same, so the disk is `clear` by the overwrite alone. The same command that did erase earns `purge`.
#[test]
fn a_firmware_erase_that_reports_success_but_changed_nothing_is_not_a_purge() {
    let completed = completed_crypto_sanitize;
    let nvme_hidden = nvme_hidden();
    for erases in [false, true] {
        let dev = std::sync::Arc::new(FaultyDevice::new(SIZE, 512));
        let target = std::sync::Arc::clone(&dev);
        let step = completed();
        let purge: Box<dyn FnOnce() -> Vec<Step> + Send> = Box::new(move || {
            if erases {
                target.data.lock().unwrap().iter_mut().for_each(|b| *b = 0x3C);
            }
            vec![step]
        });
        let firmware = FirmwarePrelude {
            purge: Some(purge),
            hidden: nvme_hidden.clone(),
            ..Default::default()
        };
        let d = zero_full_with(&dev, Transport::Nvme, firmware);
        assert_eq!(d.outcome.status, OutcomeStatus::Erased, "{:?}", d.outcome);
        let v = d.verification.as_ref().unwrap();
        let (before, after) = (v.firmware_before_blake3.as_ref(), v.firmware_after_blake3.as_ref());
        if erases {
            assert_eq!(d.nist_category, NistCategory::Purge, "{d:?}");
            assert_ne!(before, after);
        } else {
            assert_eq!(
                d.nist_category,
                NistCategory::Clear,
                "a firmware status alone gave {:?}",
                d.nist_category
            );
            assert_eq!(before, after, "the samples show nothing changed");
        }
        signs(&d);
    }
}

/// A blank (or fully trimmed) drive reads zeros before and after a crypto erase that makes it read
/// zeros: without more, the erase could never be shown. The sample positions get a fresh random
/// marker just before the erase, so the before/after digests differ exactly when the erase acted,
/// and the marker is gone afterwards.
#[test]
fn a_blank_drive_still_shows_its_firmware_erase_through_the_marker() {
    for erases in [true, false] {
        let dev = std::sync::Arc::new(FaultyDevice::new(SIZE, 512));
        dev.data.lock().unwrap().iter_mut().for_each(|b| *b = 0);
        let target = std::sync::Arc::clone(&dev);
        let step = completed_crypto_sanitize();
        let purge: Box<dyn FnOnce() -> Vec<Step> + Send> = Box::new(move || {
            let mut d = target.data.lock().unwrap();
            assert!(d.iter().any(|b| *b != 0), "the marker is on the media before the erase");
            if erases {
                d.iter_mut().for_each(|b| *b = 0);
            }
            vec![step]
        });
        let firmware = FirmwarePrelude {
            purge: Some(purge),
            hidden: nvme_hidden(),
            ..Default::default()
        };
        let d = zero_full_with(&dev, Transport::Nvme, firmware);
        let want = if erases {
            NistCategory::Purge
        } else {
            NistCategory::Clear
        };
        assert_eq!(d.nist_category, want, "erases: {erases}");
        signs(&d);
    }
}

/// One zero pass with a full read-back over `dev`, after `firmware`'s prelude.
fn zero_full_with(dev: &FaultyDevice, t: Transport, firmware: FirmwarePrelude) -> DiskRecord {
    let spec = WipeSpec {
        pattern: PatternChoice::Zero,
        passes: 1,
        verify: VerifyChoice::Full,
        discard: DiscardChoice::Never,
        after_purge: AfterPurge::Overwrite,
    };
    wipe_device_with(dev, &ident(t), &spec, &AtomicBool::new(false), &Quiet, firmware).unwrap()
}

/// `after_purge = "sampled"`: a purge that completed and changed every sampled block is the whole
/// wipe (no overwrite; the samples after the purge are the verification, NIST purge). A purge that
/// left one sampled block as it was, or changed nothing, is followed by the overwrite and its full
/// read-back as always: sampled never takes the firmware's word alone.
#[test]
fn after_purge_sampled_skips_the_overwrite_only_when_every_sample_changed() {
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Purge {
        Everything,
        AllButTheLastSector,
        Nothing,
    }
    for how in [Purge::Everything, Purge::AllButTheLastSector, Purge::Nothing] {
        let dev = std::sync::Arc::new(FaultyDevice::new(SIZE, 512));
        let target = std::sync::Arc::clone(&dev);
        let step = completed_crypto_sanitize();
        let purge: Box<dyn FnOnce() -> Vec<Step> + Send> = Box::new(move || {
            let mut d = target.data.lock().unwrap();
            let end = match how {
                Purge::Everything => d.len(),
                // The sample plan always holds the last LBA.
                Purge::AllButTheLastSector => d.len() - 512,
                Purge::Nothing => 0,
            };
            d[..end].iter_mut().for_each(|b| *b = 0x3C);
            vec![step]
        });
        let firmware = FirmwarePrelude {
            purge: Some(purge),
            hidden: nvme_hidden(),
            ..Default::default()
        };
        let spec = WipeSpec {
            pattern: PatternChoice::Zero,
            passes: 1,
            verify: VerifyChoice::Full,
            discard: DiscardChoice::Never,
            after_purge: AfterPurge::Sampled,
        };
        let d = wipe_device_with(
            &*dev,
            &ident(Transport::Nvme),
            &spec,
            &AtomicBool::new(false),
            &Quiet,
            firmware,
        )
        .unwrap();
        assert_eq!(d.outcome.status, OutcomeStatus::Erased, "{how:?}: {:?}", d.outcome);
        let v = d.verification.as_ref().unwrap();
        let overwritten = d.steps.iter().any(|s| s.kind == StepKind::Overwrite);
        let media = dev.data.lock().unwrap().clone();
        if how == Purge::Everything {
            assert!(!overwritten, "no overwrite after a purge that changed every sample");
            assert!(media.iter().all(|b| *b == 0x3C), "nothing was written after the purge");
            assert_eq!(
                (v.mode, v.expected.kind),
                (VerifyMode::Sample, cert::PatternKind::ChangedFromMarker)
            );
            assert_eq!(v.firmware_after_blake3.as_ref(), Some(&v.readback_blake3));
            assert_eq!(v.bytes_read, v.sample.as_ref().unwrap().planned_bytes);
            assert_eq!(d.nist_category, NistCategory::Purge);
        } else {
            assert!(overwritten, "{how:?}: the overwrite runs");
            assert!(
                media.iter().all(|b| *b == 0),
                "{how:?}: the zero pass reached the media"
            );
            assert_eq!((v.mode, v.expected.kind), (VerifyMode::Full, cert::PatternKind::Zero));
        }
        signs(&d);
        if how == Purge::Everything {
            // The validator holds the same line: a sampled check against the marker with an overwrite,
            // or without a completed purge, does not sign.
            let mut with_overwrite = d.clone();
            with_overwrite.steps.push(Step {
                kind: StepKind::Overwrite,
                pattern: Some(cert::Pattern {
                    kind: cert::PatternKind::Zero,
                    generator: None,
                    seed_commitment: None,
                }),
                ..completed_crypto_sanitize()
            });
            let mut no_purge = d.clone();
            no_purge.steps.iter_mut().for_each(|s| s.outcome = StepOutcome::Failed);
            for bad in [with_overwrite, no_purge] {
                assert!(try_sign(&bad).is_err(), "{:?}", bad.steps);
            }
        }
    }
}

/// A self-encrypting drive's data area: every read and write fails (EIO) while the drive reports a
/// locked range, as a locked Opal drive answers.
struct LockedDevice {
    inner: FaultyDevice,
    sed: std::sync::Arc<Mutex<crate::opal::tests::FakeSed>>,
}

impl LockedDevice {
    fn locked(&self) -> bool {
        self.sed.lock().unwrap().locked
    }
}

impl BlockDevice for LockedDevice {
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), u32> {
        if self.locked() {
            return Err(5);
        }
        self.inner.write_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), u32> {
        if self.locked() {
            return Err(5);
        }
        self.inner.read_at(buf, offset)
    }
    fn sync(&self) -> Result<(), u32> {
        Ok(())
    }
}

/// The firmware part of a locked Opal drive whose PSID was typed as `typed`, with a crypto sanitize
/// planned after it (which changes every byte when it runs, and records that it ran).
fn locked_opal(
    sed: &std::sync::Arc<Mutex<crate::opal::tests::FakeSed>>,
    dev: &std::sync::Arc<LockedDevice>,
    typed: &str,
    purged: &std::sync::Arc<AtomicBool>,
) -> FirmwarePrelude {
    let drive = std::sync::Arc::clone(sed);
    let mut locked = crate::opal::LockedSed::new(
        "TCG Opal 2 drive with locking on and a range locked".into(),
        Box::new(move |psid| {
            let patience = crate::opal::Patience {
                interval: std::time::Duration::from_millis(1),
                max_polls: 3,
            };
            let mut guard = drive.lock().unwrap();
            crate::opal::psid_revert(
                &mut *guard,
                0x07fe,
                psid,
                SIZE as u64,
                patience,
                &mut crate::opal::tests::Count(0),
            )
        }),
    );
    locked.give_psid(crate::opal::Psid::parse(typed).unwrap());
    let (target, ran) = (std::sync::Arc::clone(dev), std::sync::Arc::clone(purged));
    let purge: Box<dyn FnOnce() -> Vec<Step> + Send> = Box::new(move || {
        ran.store(true, Ordering::Relaxed);
        target.inner.data.lock().unwrap().iter_mut().for_each(|b| *b = 0x3C);
        vec![completed_crypto_sanitize()]
    });
    FirmwarePrelude {
        purge: Some(purge),
        hidden: nvme_hidden(),
        sed: Some(locked),
        ..Default::default()
    }
}

/// The whole flow on a locked Opal drive (a fake drive at the IF-SEND / IF-RECV boundary whose data
/// area fails while it is locked): the right PSID reverts it first, the drive reports unlocked, and
/// then the planned purge, the overwrite and the full read-back run as always; the revert is its own
/// step and the disk is erased by the wipe, not by the revert. A wrong PSID is NOT_AUTHORIZED: the
/// disk record is `not-erased` with the PSID finding, no purge ran and not one byte of the disk
/// changed. Both certificates sign, and neither contains the PSID.
#[test]
fn a_locked_opal_drive_is_reverted_with_its_psid_then_wiped_and_a_wrong_psid_touches_nothing() {
    const RIGHT: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
    for (typed, right) in [(RIGHT, true), ("0123456789ABCDEFGHIJKLMNOPQRSTUW", false)] {
        let sed = std::sync::Arc::new(Mutex::new(crate::opal::tests::FakeSed::new()));
        let dev = std::sync::Arc::new(LockedDevice {
            inner: FaultyDevice::new(SIZE, 512),
            sed: std::sync::Arc::clone(&sed),
        });
        let purged = std::sync::Arc::new(AtomicBool::new(false));
        let firmware = locked_opal(&sed, &dev, typed, &purged);
        let spec = WipeSpec {
            pattern: PatternChoice::Zero,
            passes: 1,
            verify: VerifyChoice::Full,
            discard: DiscardChoice::Never,
            after_purge: AfterPurge::Overwrite,
        };
        let d = wipe_device_with(
            &*dev,
            &ident(Transport::Nvme),
            &spec,
            &AtomicBool::new(false),
            &Quiet,
            firmware,
        )
        .unwrap();
        let revert = &d.steps[0];
        assert_eq!(revert.kind, StepKind::TcgPsidRevert);
        assert!(!revert.kind.is_purge(), "the revert is never the erase");
        let signed = try_sign(&d).unwrap();
        assert!(
            !signed.to_pretty_json().unwrap().contains(RIGHT),
            "the PSID is never in the certificate"
        );
        if right {
            assert_eq!(revert.outcome, StepOutcome::Completed, "{:?}", revert.reason);
            assert!(!sed.lock().unwrap().locked);
            assert!(purged.load(Ordering::Relaxed));
            let kinds: Vec<StepKind> = d.steps.iter().map(|s| s.kind).collect();
            assert_eq!(
                kinds,
                [
                    StepKind::TcgPsidRevert,
                    StepKind::NvmeSanitizeCrypto,
                    StepKind::Overwrite
                ]
            );
            let v = d.verification.as_ref().unwrap();
            assert_eq!((v.bytes_read, v.mismatched_blocks), (SIZE as u64, 0));
            assert_eq!(d.outcome.status, OutcomeStatus::Erased, "{:?}", d.outcome);
            assert_eq!(d.nist_category, NistCategory::Purge);
            assert!(dev.inner.data.lock().unwrap().iter().all(|b| *b == 0));
        } else {
            assert_eq!(revert.outcome, StepOutcome::Failed);
            assert_eq!(d.steps.len(), 1, "nothing after a refused PSID: {:?}", d.steps);
            assert!(!purged.load(Ordering::Relaxed), "no purge after a refused PSID");
            assert!(sed.lock().unwrap().locked);
            assert_eq!(d.outcome.status, OutcomeStatus::NotErased);
            assert_eq!(d.nist_category, NistCategory::None);
            let reason = d.outcome.reason.as_deref().unwrap();
            assert!(
                reason.contains("the PSID was refused: check the 32 characters on the drive label"),
                "{reason}"
            );
            assert!(d.verification.is_none());
            assert!(
                dev.inner.data.lock().unwrap().iter().all(|b| *b == 0xA5),
                "not one byte changed"
            );
        }
    }
}

/// A completed PSID Revert alone never makes a disk erased: a record that claims it is refused.
#[test]
fn a_psid_revert_alone_is_never_erased() {
    let sed = std::sync::Arc::new(Mutex::new(crate::opal::tests::FakeSed::new()));
    let psid = crate::opal::Psid::parse("0123456789ABCDEFGHIJKLMNOPQRSTUV").unwrap();
    let patience = crate::opal::Patience {
        interval: std::time::Duration::from_millis(1),
        max_polls: 3,
    };
    let step = crate::opal::psid_revert(
        &mut *sed.lock().unwrap(),
        0x07fe,
        &psid,
        SIZE as u64,
        patience,
        &mut crate::opal::tests::Count(0),
    );
    assert_eq!(step.outcome, StepOutcome::Completed);
    let disk = ident(Transport::Nvme);
    let claimed = record(
        &disk,
        (SIZE as u64, 512),
        nvme_hidden().unwrap(),
        NistCategory::Purge,
        Done {
            steps: vec![step],
            verification: None,
            outcome: DiskOutcome {
                status: OutcomeStatus::Erased,
                exceptions: Vec::new(),
                reason: None,
            },
        },
    );
    assert!(
        try_sign(&claimed).is_err(),
        "a revert without overwrite or verified purge claimed erased"
    );
}
