//! The verified overwrite wipe: `lapterop-agent wipe`.
//!
//! For each disk: claim it exclusively ([`crate::disk::claim`]), read the sample positions before
//! anything is written (sampled mode), overwrite it `passes` times with the pattern ([`engine`]), read
//! it back with `O_DIRECT` and compare every byte (`full`) or the NIST sample ([`plan`]), and record
//! every step, error range and digest in a [`DiskRecord`]. Disks run in parallel, one thread each. The
//! run ends with one certificate for all disks, signed with the station key and written atomically.
//!
//! Outcome rules (`docs/wiping.md`): a disk is `erased` only when every pass completed without error,
//! the read-back covered what it planned with no unreadable or mismatched sector, and hidden areas are
//! known not to exist (NVMe, virtio, MMC, loop) or were checked through ATA pass-through, with a Host
//! Protected Area opened for the wipe and closed again ([`tail`], [`crate::hpa`]). A disk whose hidden
//! areas could not be checked (USB bridges, SCSI) or were left in place is at best
//! `erased-with-exceptions`. Any write, sync or read error, any mismatch, `--verify none` or an
//! interruption makes it `not-erased`, with the exact ranges.

pub mod boot_areas;
pub mod engine;
pub mod pattern;
pub mod plan;

pub use crate::drive::FirmwarePrelude;
pub mod tail;

pub use crate::outbox::write_atomically;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use lapterop_certificate::{
    self as cert, AgentInfo, DiskOutcome, DiskRecord, ErrorRange, Exception, ExceptionKind, HiddenAreaCheck,
    HiddenAreas, NistCategory, OutcomeStatus, PassInfo, RangeOp, Step, StepKind, StepOutcome, Transport, Verification,
    VerifyMode,
};

use crate::disk::{self};
use engine::BlockDevice;
use pattern::Fill;

/// Exit code: a disk was not fully erased (the certificate says why).
pub const EXIT_NOT_ERASED: u8 = 1;
/// Exit code: nothing was written (usage, refused disk, missing key, cancelled).
pub const EXIT_NOTHING_DONE: u8 = 2;
/// Exit code: stopped by SIGINT/SIGTERM (a `not-erased` certificate was written).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Overwrite pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PatternChoice {
    /// All zero bytes.
    Zero,
    /// A seeded AES-256-CTR stream, different at every offset (catches drives that drop writes).
    Random,
}

/// Read-back verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyChoice {
    /// Read every byte back and compare.
    Full,
    /// NIST SP 800-88 sample: 1000 sections, 2 samples each plus first and last sector, >= 10 %.
    Sample,
    /// Do not read back (the disk can then never be reported erased).
    None,
}

/// What to do to each disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WipeSpec {
    /// Pattern of every pass.
    pub pattern: PatternChoice,
    /// Number of passes (the last one is verified).
    pub passes: u32,
    /// Verification of the last pass.
    pub verify: VerifyChoice,
    /// Discard after the verified overwrite.
    pub discard: DiscardChoice,
    /// What follows a firmware purge whose effect was verified.
    pub after_purge: AfterPurge,
}

/// `[wipe] after_purge` / `--after-purge`: what follows a firmware purge that completed and visibly
/// changed the sampled blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AfterPurge {
    /// The overwrite and its read-back run as after any other method (the default: the strongest
    /// evidence, and it takes the longest).
    #[default]
    Overwrite,
    /// NIST SP 800-88 Purge with sampled verification: no overwrite; the purge is accepted when every
    /// sampled block differs from the marker written there just before it. Where the purge failed or
    /// left a sampled block unchanged, the overwrite runs as always.
    Sampled,
}

/// `[wipe] discard` / `--discard`: free every block again once the overwrite is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiscardChoice {
    /// Non-rotational disks (SSDs, eMMC): a drive handed on fully mapped is slower and wears faster.
    Ssd,
    /// Never.
    Never,
}

/// The certificate record of `disk` with what was (or was not) done to it. `geometry` is the
/// capacity and logical sector size the wipe saw (an opened HPA makes it larger than discovery's).
pub fn record(
    disk: &disk::Disk,
    geometry: (u64, u32),
    hidden_areas: HiddenAreas,
    nist: NistCategory,
    done: Done,
) -> DiskRecord {
    let (capacity_bytes, logical_sector_size) = geometry;
    DiskRecord {
        device: disk.name.clone(),
        model: disk.model.clone(),
        serial: disk.serial.clone(),
        firmware: disk.firmware.clone(),
        wwn: disk.wwn.clone(),
        transport: disk.transport,
        rotational: disk.rotational,
        capacity_bytes,
        logical_sector_size,
        physical_sector_size: disk.physical_sector_size.max(logical_sector_size),
        hidden_areas,
        nist_category: nist,
        steps: done.steps,
        verification: done.verification,
        outcome: done.outcome,
        boot_areas: Vec::new(),
        rpmb_bytes: disk.rpmb_bytes,
    }
}

/// The record of a disk (or boot area) that was not written at all: not erased, with `why`.
pub fn not_wiped(disk: &disk::Disk, why: &str) -> DiskRecord {
    let unchecked = HiddenAreas {
        check: HiddenAreaCheck::Unavailable,
        hpa: None,
        dco: None,
    };
    let done = Done {
        steps: Vec::new(),
        verification: None,
        outcome: DiskOutcome {
            status: OutcomeStatus::NotErased,
            exceptions: Vec::new(),
            reason: Some(format!("not wiped: {why}")),
        },
    };
    record(
        disk,
        (disk.capacity_bytes, disk.logical_sector_size),
        unchecked,
        NistCategory::None,
        done,
    )
}

/// What a disk's record says was done: the steps, the read-back and the outcome.
#[derive(Debug, Clone)]
pub struct Done {
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The read-back.
    pub verification: Option<Verification>,
    /// The outcome.
    pub outcome: DiskOutcome,
}

/// Progress callbacks for one disk.
pub trait Progress: Sync {
    /// A new phase starts (`pass 1/2 random`, `verify full`) over `total` bytes.
    fn phase(&self, label: &str, total: u64);
    /// `done` bytes of the current phase are finished.
    fn update(&self, done: u64);
    /// The disk is finished with this outcome (the screens say it in their own language).
    fn finish(&self, outcome: &DiskOutcome);
}

/// Wipes one device and returns its certificate record. Never panics on I/O errors: they become
/// error ranges. `stop` is checked between chunks.
pub fn wipe_device(
    dev: &dyn BlockDevice,
    disk: &disk::Disk,
    spec: &WipeSpec,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> anyhow::Result<DiskRecord> {
    wipe_device_with(dev, disk, spec, stop, progress, FirmwarePrelude::default())
}

/// [`wipe_device`] with a firmware purge first: the same pseudorandom positions are read just before
/// and just after the purge (NIST SP 800-88 Rev. 1 §4.7), then the overwrite and read-back run as
/// always. `purge` is reached only when the command completed *and* the content changed.
pub fn wipe_device_with(
    dev: &dyn BlockDevice,
    disk: &disk::Disk,
    spec: &WipeSpec,
    stop: &AtomicBool,
    progress: &dyn Progress,
    firmware: FirmwarePrelude,
) -> anyhow::Result<DiskRecord> {
    let mut steps = firmware.skipped;
    // A locked self-encrypting drive whose PSID was typed: the revert runs before anything else. Only
    // when it completed (the drive itself reports no locked range) does the wipe go on; it never
    // counts as the erase. A refused or failed revert leaves the disk untouched and not erased.
    if let Some(revert) = firmware.sed.and_then(crate::opal::LockedSed::run) {
        let completed = revert.outcome == StepOutcome::Completed;
        let why = revert.reason.clone();
        steps.push(revert);
        if !completed {
            let outcome = DiskOutcome {
                status: OutcomeStatus::NotErased,
                exceptions: Vec::new(),
                reason: Some(format!(
                    "not wiped: {}",
                    why.unwrap_or_else(|| "the PSID Revert did not complete".into())
                )),
            };
            progress.finish(&outcome);
            let hidden_areas = firmware.hidden.unwrap_or_else(|| no_hidden_area_probe(disk.transport));
            return Ok(record(
                disk,
                (dev.capacity(), dev.sector_size()),
                hidden_areas,
                NistCategory::None,
                Done {
                    steps,
                    verification: None,
                    outcome,
                },
            ));
        }
    }
    // An HPA opened for the wipe: from here on the device is the whole native capacity.
    let with_tail = firmware.tail.and_then(|mut t| {
        let step = t.expose();
        let opened = step.outcome == StepOutcome::Completed;
        steps.push(step);
        opened.then(|| tail::WithTail::new(dev, t))
    });
    let dev: &dyn BlockDevice = match &with_tail {
        Some(t) => t,
        None => dev,
    };
    let (cap, ss) = (dev.capacity(), dev.sector_size());
    let purge = match firmware.purge {
        Some(run) => {
            let p = purge_checked(dev, run, stop, progress)?;
            steps.extend(p.attempts.iter().cloned());
            steps.push(p.step.clone());
            Some(p)
        }
        None => None,
    };
    let mut interrupted = purge.as_ref().is_some_and(|p| p.interrupted);
    // `after_purge = "sampled"`: a purge that completed and changed every sampled block stands on its
    // own; anything less and the overwrite runs as always.
    let purge_sampled = match (&purge, spec.after_purge) {
        (Some(p), AfterPurge::Sampled) if !interrupted => p.sampled.clone(),
        _ => None,
    };
    let sample = match spec.verify {
        _ if purge_sampled.is_some() => None,
        VerifyChoice::Sample => {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed).context("getting a random seed for the sample plan")?;
            let p = plan::sample_plan(cap, ss, seed);
            progress.phase("reading samples before wipe", p.planned_bytes());
            let pre = engine::read_back(dev, &p.byte_regions(), None, stop, &|d| progress.update(d));
            interrupted |= pre.interrupted;
            Some((p, pre.blake3))
        }
        _ => None,
    };
    let passes = if interrupted {
        Passes::none()
    } else if purge_sampled.is_some() {
        Passes {
            interrupted: false,
            ..Passes::none()
        }
    } else {
        overwrite(dev, spec, stop, progress)?
    };
    interrupted |= passes.interrupted;
    steps.extend(passes.steps.iter().cloned());
    let verification = if purge_sampled.is_some() {
        purge_sampled
    } else if !interrupted && spec.verify != VerifyChoice::None {
        let firmware_digests = purge.as_ref().map(|p| (p.before.clone(), p.after.clone()));
        let v = read_back(
            dev,
            &passes.last_fill,
            sample.as_ref(),
            firmware_digests,
            stop,
            progress,
        );
        interrupted |= v.is_none();
        v
    } else {
        None
    };
    let mut hidden_areas = firmware.hidden.unwrap_or_else(|| no_hidden_area_probe(disk.transport));
    let mut not_restored = None;
    if let Some(t) = &with_tail {
        let step = t.restore();
        let restored = step.outcome == StepOutcome::Completed;
        if !restored {
            not_restored = step.reason.clone();
        }
        if let Some(hpa) = hidden_areas.hpa.as_mut() {
            hpa.action = if restored {
                cert::HiddenAreaAction::ExposedAndRestored
            } else {
                cert::HiddenAreaAction::ExposedNotRestored
            };
        }
        steps.push(step);
    }
    // A verified overwrite of an SSD: free every block again, and record what the drive reads then.
    if spec.discard == DiscardChoice::Ssd
        && !disk.rotational
        && !interrupted
        && verification
            .as_ref()
            .is_some_and(|v| v.mismatched_blocks == 0 && v.error_ranges.is_empty())
        && passes.failed_writes == 0
        && with_tail.is_none()
    {
        steps.push(discard_step(dev, stop, progress)?);
    }
    let mut outcome = decide(
        interrupted,
        passes.failed_writes,
        passes.sync_failed,
        verification.as_ref(),
        hidden_areas.check,
    );
    if outcome.status != OutcomeStatus::NotErased {
        let purge_failed = purge.as_ref().and_then(|p| p.failed.clone());
        let extra = exceptions(&hidden_areas, not_restored, purge_failed);
        if !extra.is_empty() {
            outcome.status = OutcomeStatus::ErasedWithExceptions;
            outcome.exceptions.extend(extra);
        }
    }
    progress.finish(&outcome);
    let nist = if outcome.status == OutcomeStatus::NotErased {
        NistCategory::None
    } else if purge.is_some_and(|p| p.verified && p.step.kind.is_purge()) {
        NistCategory::Purge
    } else {
        NistCategory::Clear
    };
    Ok(record(
        disk,
        (cap, ss),
        hidden_areas,
        nist,
        Done {
            steps,
            verification,
            outcome,
        },
    ))
}

/// Sectors read after a discard to see what the drive returns for discarded blocks.
const DISCARD_CHECK_SECTORS: usize = 256;

/// `count` distinct sectors at positions drawn from `seed`, sorted, as byte regions.
fn scattered_sectors(capacity: u64, sector_size: u32, seed: &[u8; 32], count: usize) -> Vec<(u64, u64)> {
    let ss = u64::from(sector_size.max(1));
    let sectors = capacity / ss;
    if sectors == 0 {
        return Vec::new();
    }
    let mut picks: Vec<u64> = (0..count as u64)
        .map(|i| {
            let h = blake3::keyed_hash(seed, &i.to_le_bytes());
            let mut b = [0u8; 8];
            b.copy_from_slice(&h.as_bytes()[..8]);
            u64::from_le_bytes(b) % sectors
        })
        .collect();
    picks.sort_unstable();
    picks.dedup();
    picks.into_iter().map(|s| (s * ss, ss)).collect()
}

/// `BLKDISCARD` of the whole device, then a read of a fresh pseudorandom sample to record what the
/// drive returns for discarded blocks (zeros, or old content some drives keep until a block is reused).
fn discard_step(dev: &dyn BlockDevice, stop: &AtomicBool, progress: &dyn Progress) -> anyhow::Result<Step> {
    let started = cert::now_utc();
    let cap = dev.capacity();
    let command = format!("BLKDISCARD 0+{cap}");
    progress.phase("discarding every block (the SSD is handed on empty)", 0);
    let mut step = Step {
        kind: StepKind::Discard,
        capability: cert::Capability::Supported,
        outcome: StepOutcome::Completed,
        reason: None,
        started_at: Some(started),
        finished_at: None,
        pass: None,
        pattern: None,
        bytes: cap,
        error_ranges: Vec::new(),
        firmware: None,
    };
    match dev.discard_all() {
        Ok(()) => {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed).context("getting a random seed for the discard check")?;
            let regions = scattered_sectors(cap, dev.sector_size(), &seed, DISCARD_CHECK_SECTORS);
            let sectors = regions.len();
            progress.phase("reading samples after the discard", 0);
            let after = engine::read_back(dev, &regions, Some(&Fill::Zero), stop, &|d| progress.update(d));
            let seen = if after.errors.is_empty() {
                format!("a sample of {sectors} sectors read afterwards: all zeros")
            } else {
                format!(
                    "a sample of {sectors} sectors read afterwards: {} not zero (the drive does not zero discarded blocks;                      they hold the verified pattern or nothing readable)",
                    after.mismatched_sectors
                )
            };
            step.firmware = Some(cert::FirmwareEvidence {
                command,
                status: "ok".into(),
                polls: 0,
                final_state: Some(seen),
            });
        }
        Err(95) => {
            step.outcome = StepOutcome::Skipped;
            step.capability = cert::Capability::NotSupported;
            step.bytes = 0;
            step.started_at = None;
            step.reason = Some("the device takes no discard (BLKDISCARD: operation not supported)".into());
        }
        Err(errno) => {
            step.outcome = StepOutcome::Failed;
            step.bytes = 0;
            step.reason = Some(format!(
                "BLKDISCARD failed (errno {errno}); the verified overwrite stands, the blocks stay mapped"
            ));
            step.firmware = Some(cert::FirmwareEvidence {
                command,
                status: format!("errno {errno}"),
                polls: 0,
                final_state: None,
            });
        }
    }
    if step.started_at.is_some() {
        step.finished_at = Some(cert::now_utc());
    }
    Ok(step)
}

/// A firmware purge and the samples read around it.
struct Purged {
    /// Earlier methods that failed before `step` was tried.
    attempts: Vec<Step>,
    /// The samples after the purge as a verification of their own (`[wipe] after_purge =
    /// "sampled"`), when the purge completed and every sampled block now differs from its marker.
    sampled: Option<Verification>,
    /// The last method tried: the one whose result counts.
    step: Step,
    /// The samples before and after, digested.
    before: String,
    after: String,
    /// The command completed and the content changed.
    verified: bool,
    /// Why the command failed, if it did.
    failed: Option<String>,
    interrupted: bool,
}

/// Runs the firmware purge between two reads of the same pseudorandom sample positions. A fresh
/// random marker is written to those positions first, so that a blank or fully trimmed drive, which
/// reads zeros before and after any erase, still shows whether the erase changed them.
fn purge_checked(
    dev: &dyn BlockDevice,
    purge: Box<dyn FnOnce() -> Vec<Step> + Send + '_>,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> anyhow::Result<Purged> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).context("getting a random seed for the firmware check")?;
    let p = plan::sample_plan(dev.capacity(), dev.sector_size(), seed);
    let marker = Fill::fresh_random().context("getting a random seed for the firmware check's marker")?;
    progress.phase(
        "marking the sample positions before the firmware erase",
        p.planned_bytes(),
    );
    // A position that cannot be written keeps what it had; the read below records what is there.
    let _ = engine::write_regions(dev, &p.byte_regions(), &marker);
    progress.phase("reading samples before the firmware erase", p.planned_bytes());
    let before = engine::read_back(dev, &p.byte_regions(), None, stop, &|d| progress.update(d));
    progress.phase("firmware erase (the drive reports its own progress)", 0);
    let mut attempts = purge();
    let step = attempts.pop().context("the firmware purge ran no command")?;
    progress.phase("reading samples after the firmware erase", p.planned_bytes());
    let after_started = cert::now_utc();
    // Against the marker: a sector that differs from it is one the purge changed.
    let after = engine::read_back(dev, &p.byte_regions(), Some(&marker), stop, &|d| progress.update(d));
    let changed = crate::firmware::content_changed(&before.blake3, &after.blake3)
        && before.errors.is_empty()
        // (Read against the marker, so the sectors the erase changed are listed as mismatches.)
        && after.errors.iter().all(|e| e.op == RangeOp::Mismatch);
    let completed = step.outcome == StepOutcome::Completed;
    let reason = |s: &Step| s.reason.clone().unwrap_or_else(|| "the firmware erase failed".into());
    // A method that failed before the one that worked is an exception all the same.
    let failed = attempts
        .iter()
        .chain((!completed).then_some(&step))
        .map(reason)
        .reduce(|a, b| format!("{a}; then {b}"));
    let sample_sectors = p.planned_bytes() / u64::from(dev.sector_size());
    let every_sample_changed = after.mismatched_sectors == sample_sectors && !after.interrupted;
    let sampled = (completed && changed && every_sample_changed && step.kind.is_purge()).then(|| Verification {
        mode: VerifyMode::Sample,
        expected: cert::Pattern {
            kind: cert::PatternKind::ChangedFromMarker,
            generator: None,
            seed_commitment: None,
        },
        sample: Some(p.describe()),
        bytes_read: after.bytes_read,
        mismatched_blocks: 0,
        error_ranges: Vec::new(),
        readback_blake3: after.blake3.clone(),
        pre_wipe_sample_blake3: None,
        firmware_before_blake3: Some(before.blake3.clone()),
        firmware_after_blake3: Some(after.blake3.clone()),
        started_at: after_started,
        finished_at: cert::now_utc(),
    });
    Ok(Purged {
        attempts,
        sampled,
        verified: completed && changed,
        failed,
        interrupted: before.interrupted || after.interrupted,
        before: before.blake3,
        after: after.blake3,
        step,
    })
}

/// The overwrite passes.
struct Passes {
    steps: Vec<Step>,
    /// What the last pass wrote (what the read-back expects).
    last_fill: Fill,
    failed_writes: u64,
    sync_failed: bool,
    interrupted: bool,
}

impl Passes {
    fn none() -> Self {
        Passes {
            steps: Vec::new(),
            last_fill: Fill::Zero,
            failed_writes: 0,
            sync_failed: false,
            interrupted: true,
        }
    }
}

/// Runs `spec.passes` overwrite passes, stopping after one that was interrupted.
fn overwrite(
    dev: &dyn BlockDevice,
    spec: &WipeSpec,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> anyhow::Result<Passes> {
    let mut passes = Passes {
        interrupted: false,
        ..Passes::none()
    };
    for number in 1..=spec.passes {
        if passes.interrupted {
            break;
        }
        let fill = match spec.pattern {
            PatternChoice::Zero => Fill::Zero,
            PatternChoice::Random => Fill::fresh_random().context("getting a random seed for the pattern")?,
        };
        let label = format!("pass {number}/{} {}", spec.passes, kind_name(spec.pattern));
        progress.phase(&label, dev.capacity());
        let started = cert::now_utc();
        let r = engine::write_pass(dev, &fill, stop, &|d| progress.update(d));
        let bad: u64 = r.errors.iter().map(|e| e.count).sum();
        passes.failed_writes += bad;
        passes.interrupted |= r.interrupted;
        passes.sync_failed |= r.sync_errno.is_some();
        let (outcome, reason) = if r.interrupted {
            (
                StepOutcome::Interrupted,
                Some("interrupted by a signal before the pass finished".to_string()),
            )
        } else if bad > 0 {
            (
                StepOutcome::Failed,
                Some(format!("{bad} sectors could not be written (see error ranges)")),
            )
        } else if let Some(e) = r.sync_errno {
            (
                StepOutcome::Failed,
                Some(format!(
                    "fdatasync failed with errno {e}: the device may not have stored the data"
                )),
            )
        } else {
            (StepOutcome::Completed, None)
        };
        passes.steps.push(Step {
            kind: StepKind::Overwrite,
            capability: cert::Capability::Supported,
            outcome,
            reason,
            started_at: Some(started),
            finished_at: Some(cert::now_utc()),
            pass: Some(PassInfo {
                number,
                of: spec.passes,
            }),
            pattern: Some(fill.describe()),
            bytes: r.bytes_written,
            error_ranges: r.errors,
            firmware: None,
        });
        passes.last_fill = fill;
    }
    Ok(passes)
}

/// Reads back the whole device, or the sample when `sample` is given, against what the last pass
/// wrote. `None` when the read-back was interrupted.
fn read_back(
    dev: &dyn BlockDevice,
    last_fill: &Fill,
    sample: Option<&(plan::Plan, String)>,
    firmware_digests: Option<(String, String)>,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> Option<Verification> {
    let (mode, regions, plan_rec, pre) = match sample {
        Some((p, pre)) => (
            VerifyMode::Sample,
            p.byte_regions(),
            Some(p.describe()),
            Some(pre.clone()),
        ),
        None => (VerifyMode::Full, vec![(0, dev.capacity())], None, None),
    };
    let total = regions.iter().map(|r| r.1).sum();
    progress.phase(
        &format!("verify {}", if mode == VerifyMode::Full { "full" } else { "sample" }),
        total,
    );
    let started = cert::now_utc();
    let r = engine::read_back(dev, &regions, Some(last_fill), stop, &|d| progress.update(d));
    if r.interrupted {
        return None;
    }
    let mismatched_blocks = r
        .errors
        .iter()
        .filter(|e| e.op == RangeOp::Mismatch)
        .map(|e| e.count)
        .sum();
    let (firmware_before_blake3, firmware_after_blake3) = firmware_digests.unzip();
    Some(Verification {
        mode,
        expected: last_fill.describe(),
        sample: plan_rec,
        bytes_read: r.bytes_read,
        mismatched_blocks,
        error_ranges: r.errors,
        readback_blake3: r.blake3,
        pre_wipe_sample_blake3: pre,
        firmware_before_blake3,
        firmware_after_blake3,
        started_at: started,
        finished_at: cert::now_utc(),
    })
}

/// The hidden-area record of a disk whose firmware was not probed: nothing to hide on transports
/// without HPA/DCO, unknown on the others.
fn no_hidden_area_probe(transport: Transport) -> HiddenAreas {
    HiddenAreas {
        check: match transport {
            Transport::Nvme | Transport::Virtio | Transport::Mmc | Transport::Loop => HiddenAreaCheck::NotApplicable,
            _ => HiddenAreaCheck::Unavailable,
        },
        hpa: None,
        dco: None,
    }
}

/// What keeps an otherwise erased disk from a clean "erased": hidden areas left in place, an HPA not
/// closed again, a firmware erase that failed before the overwrite succeeded.
fn exceptions(hidden: &HiddenAreas, not_restored: Option<String>, purge_failed: Option<String>) -> Vec<Exception> {
    let mut extra = Vec::new();
    for (name, area) in [
        ("Host Protected Area", &hidden.hpa),
        ("Device Configuration Overlay", &hidden.dco),
    ] {
        if let Some(a) = area
            .as_ref()
            .filter(|a| a.action == cert::HiddenAreaAction::LeftInPlace)
        {
            extra.push(Exception {
                kind: ExceptionKind::HiddenAreaLeft,
                detail: format!(
                    "a {name} of {} sectors was left in place; its content was not erased",
                    a.native_sectors - a.visible_sectors
                ),
                range: None,
            });
        }
    }
    if let Some(why) = not_restored {
        extra.push(Exception {
            kind: ExceptionKind::HiddenAreaNotRestored,
            detail: format!("the Host Protected Area was opened and erased, but closing it again failed ({why})"),
            range: None,
        });
    }
    if let Some(why) = purge_failed {
        extra.push(Exception {
            kind: ExceptionKind::FirmwarePurgeFailed,
            detail: format!("the firmware erase failed ({why}); the overwrite and read-back still succeeded"),
            range: None,
        });
    }
    extra
}

fn kind_name(p: PatternChoice) -> &'static str {
    match p {
        PatternChoice::Zero => "zero",
        PatternChoice::Random => "random",
    }
}

/// The outcome rules of the module docs, as one pure function.
fn decide(
    interrupted: bool,
    failed_writes: u64,
    sync_failed: bool,
    v: Option<&Verification>,
    hidden: HiddenAreaCheck,
) -> DiskOutcome {
    let not = |reason: String| DiskOutcome {
        status: OutcomeStatus::NotErased,
        exceptions: Vec::new(),
        reason: Some(reason),
    };
    if interrupted {
        return not("interrupted: the wipe was stopped before it finished; the disk may still hold data".into());
    }
    let mut problems = Vec::new();
    if failed_writes > 0 {
        problems.push(format!("{failed_writes} sectors could not be written"));
    }
    if sync_failed {
        problems.push("the final flush (fdatasync) failed".to_string());
    }
    let Some(v) = v else {
        problems.push("the overwrite was not read back (--verify none)".to_string());
        return not(problems.join("; "));
    };
    let count = |op: RangeOp| {
        v.error_ranges
            .iter()
            .filter(|r| r.op == op)
            .map(|r| r.count)
            .sum::<u64>()
    };
    let (unreadable, mismatched) = (count(RangeOp::Read), count(RangeOp::Mismatch));
    if unreadable > 0 {
        problems.push(format!("{unreadable} sectors could not be read back"));
    }
    if mismatched > 0 {
        problems.push(format!("{mismatched} sectors read back with other content"));
    }
    if !problems.is_empty() {
        return not(problems.join("; ") + " (see error ranges)");
    }
    if hidden == HiddenAreaCheck::Unavailable {
        return DiskOutcome {
            status: OutcomeStatus::ErasedWithExceptions,
            exceptions: vec![Exception {
                kind: ExceptionKind::HiddenAreaUnchecked,
                detail: "hidden areas (HPA/DCO) were not checked on this transport; their content, if any, \
                         was not overwritten"
                    .into(),
                range: None,
            }],
            reason: None,
        };
    }
    DiskOutcome {
        status: OutcomeStatus::Erased,
        exceptions: Vec::new(),
        reason: None,
    }
}

/// The outcome as the volunteer reads it (`ERASED`, `NOT ERASED: reason`).
pub fn outcome_words(o: &DiskOutcome) -> String {
    match o.status {
        OutcomeStatus::Erased => "ERASED".into(),
        OutcomeStatus::ErasedWithExceptions => format!(
            "ERASED WITH EXCEPTIONS: {}",
            o.exceptions
                .iter()
                .map(|e| e.detail.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        OutcomeStatus::NotErased => format!("NOT ERASED: {}", o.reason.as_deref().unwrap_or("")),
    }
}

/// Why [`wipe_planned`] did not produce records.
#[derive(Debug, thiserror::Error)]
pub enum WipeError {
    /// The firmware plan failed before anything was written (a named method the drive lacks).
    #[error(transparent)]
    Plan(#[from] crate::drive::PreludeError),
    /// The caller passed a different number of plans or reporters than disks (a bug of the caller).
    #[error("{what}: {got} for {disks} disks")]
    Mismatch {
        /// Plans or progress reporters.
        what: &'static str,
        /// How many came.
        got: usize,
        /// How many disks.
        disks: usize,
    },
    /// A wipe thread failed outright.
    #[error(transparent)]
    Failed(anyhow::Error),
}

/// Makes the firmware plan of every claimed disk for `method` (probing only: nothing is written).
/// A named method a drive lacks is a [`WipeError::Plan`].
pub fn plan_claimed(
    claimed: &[disk::Claimed],
    method: crate::firmware::Method,
    policy: &crate::firmware::Policy,
) -> Result<Vec<FirmwarePrelude>, WipeError> {
    claimed
        .iter()
        .map(|c| {
            crate::drive::prelude_for(&c.disk.name, c.disk.rotational, c.capacity(), method, policy)
                .map_err(WipeError::Plan)
        })
        .collect()
}

/// Wipes claimed disks in parallel, one thread each, with the plans made already by [`plan_claimed`]
/// (one per disk, in order): the firmware purge the plan picked, then the overwrite and read-back of
/// `spec`. The firmware plan for every disk is made before anything is written. Afterwards the kernel
/// is asked to forget the old partitions. Progress is reported through `progress` (one per disk, in
/// order).
pub fn wipe_planned(
    claimed: &[disk::Claimed],
    preludes: Vec<FirmwarePrelude>,
    spec: &WipeSpec,
    stop: &AtomicBool,
    progress: Vec<Box<dyn Progress + Send>>,
) -> Result<Vec<DiskRecord>, WipeError> {
    if preludes.len() != claimed.len() {
        return Err(WipeError::Mismatch {
            what: "firmware plans",
            got: preludes.len(),
            disks: claimed.len(),
        });
    }
    if progress.len() != claimed.len() {
        return Err(WipeError::Mismatch {
            what: "progress reporters",
            got: progress.len(),
            disks: claimed.len(),
        });
    }
    let records: Vec<anyhow::Result<DiskRecord>> = std::thread::scope(|s| {
        let handles: Vec<_> = claimed
            .iter()
            .zip(preludes)
            .zip(progress)
            .map(|((c, fw), p)| {
                // The claimed handle's sector size is the one the kernel reports for the open device.
                let disk = disk::Disk {
                    physical_sector_size: c.physical_sector_size,
                    ..c.disk.clone()
                };
                s.spawn(move || {
                    // The disk's end is said once, after its boot areas (an eMMC's) are done too.
                    let whole = boot_areas::Part {
                        inner: p.as_ref(),
                        prefix: String::new(),
                    };
                    let mut r = wipe_device_with(c, &disk, spec, stop, &whole, fw)?;
                    if !disk.boot_areas.is_empty() {
                        let areas = boot_areas::wipe(&disk, Path::new("/sys/block"), spec, stop, p.as_ref());
                        boot_areas::attach(&mut r, areas);
                    }
                    p.finish(&r.outcome);
                    Ok(r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the wipe thread panicked")))
            })
            .collect()
    });
    let disks = records
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(WipeError::Failed)?;
    for c in claimed {
        // The old partition table is gone: let the kernel forget the old partitions. Devices without
        // partition scanning answer EINVAL, which changes nothing here.
        let _ = crate::sys::reread_partitions(&c.file);
    }
    Ok(disks)
}

/// The certificate's agent section for this binary (`binary_blake3` from [`self_blake3`]).
pub fn agent_info(binary_blake3: String) -> AgentInfo {
    AgentInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        binary_blake3,
        live_image_build: std::env::var("LAPTEROP_IMAGE_BUILD").ok().filter(|s| !s.is_empty()),
    }
}

/// blake3 of the running agent binary (`/proc/self/exe`), lower-case hex.
pub fn self_blake3() -> std::io::Result<String> {
    let mut f = std::fs::File::open("/proc/self/exe")?;
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().to_hex().to_string())
}

/// Error ranges of a record, all lists together (for summaries and tests).
pub fn all_ranges(d: &DiskRecord) -> Vec<ErrorRange> {
    let mut v: Vec<ErrorRange> = d.steps.iter().flat_map(|s| s.error_ranges.clone()).collect();
    if let Some(ver) = &d.verification {
        v.extend(ver.error_ranges.clone());
    }
    v
}

#[cfg(test)]
mod tests;
