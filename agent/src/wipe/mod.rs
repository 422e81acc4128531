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

pub mod engine;
pub mod pattern;
pub mod plan;
mod progress;
pub mod tail;

pub use crate::outbox::write_atomically;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use lapterop_certificate::{
    self as cert, AgentInfo, Certificate, DiskOutcome, DiskRecord, ErrorRange, Exception, ExceptionKind,
    HiddenAreaCheck, HiddenAreas, NistCategory, OutcomeStatus, PassInfo, Person, RangeOp, StationInfo, Step, StepKind,
    StepOutcome, Transport, Verification, VerifyMode,
};

use crate::disk::{self, Discovery, SafetyConfig};
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
}

/// Identity of a disk for its certificate record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskIdentity {
    /// Kernel name.
    pub device: String,
    /// Model.
    pub model: Option<String>,
    /// Serial.
    pub serial: Option<String>,
    /// Firmware.
    pub firmware: Option<String>,
    /// WWN.
    pub wwn: Option<String>,
    /// Transport.
    pub transport: Transport,
    /// Rotational.
    pub rotational: bool,
    /// Physical sector size.
    pub physical_sector_size: u32,
}

impl DiskIdentity {
    fn of(c: &disk::Claimed) -> Self {
        let d = &c.disk;
        Self {
            device: d.name.clone(),
            model: d.model.clone(),
            serial: d.serial.clone(),
            firmware: d.firmware.clone(),
            wwn: d.wwn.clone(),
            transport: d.transport,
            rotational: d.rotational,
            physical_sector_size: c.physical_sector_size,
        }
    }
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
    id: &DiskIdentity,
    spec: &WipeSpec,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> anyhow::Result<DiskRecord> {
    wipe_device_with(dev, id, spec, stop, progress, FirmwarePrelude::default())
}

/// What the firmware layer prepared for one disk: the primitives not chosen (recorded as skipped with
/// their capability), the purge to run before the overwrite, and the hidden areas it found.
#[derive(Default)]
pub struct FirmwarePrelude {
    /// Skipped primitives, with capability and reason.
    pub skipped: Vec<Step>,
    /// The purge chosen by the plan; runs after the "before" samples are read.
    pub purge: Option<Box<dyn FnOnce() -> Step + Send>>,
    /// Hidden areas as probed (ATA); `None` where the transport decides.
    pub hidden: Option<HiddenAreas>,
    /// The purge `purge` runs, for the plan shown before anything is written.
    pub chosen: Option<StepKind>,
    /// A hidden area (ATA HPA) to open for the wipe and close afterwards; `hidden` lists it.
    pub tail: Option<Box<dyn tail::HiddenTail>>,
}

impl std::fmt::Debug for FirmwarePrelude {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirmwarePrelude")
            .field("skipped", &self.skipped.len())
            .field("purge", &self.purge.is_some())
            .field("hidden", &self.hidden)
            .field("chosen", &self.chosen)
            .field("tail", &self.tail.is_some())
            .finish()
    }
}

/// [`wipe_device`] with a firmware purge first: the same pseudorandom positions are read just before
/// and just after the purge (NIST SP 800-88 Rev. 1 §4.7), then the overwrite and read-back run as
/// always. `purge` is reached only when the command completed *and* the content changed.
pub fn wipe_device_with(
    dev: &dyn BlockDevice,
    id: &DiskIdentity,
    spec: &WipeSpec,
    stop: &AtomicBool,
    progress: &dyn Progress,
    firmware: FirmwarePrelude,
) -> anyhow::Result<DiskRecord> {
    let mut steps = firmware.skipped;
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
    let cap = dev.capacity();
    let ss = dev.sector_size();
    let mut interrupted = false;
    let mut firmware_digests = None;
    let mut purge_verified = false;
    let mut purge_failed = None;
    if let Some(purge) = firmware.purge {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).context("getting a random seed for the firmware check")?;
        let p = plan::sample_plan(cap, ss, seed);
        progress.phase("reading samples before the firmware erase", p.planned_bytes());
        let before = engine::read_back(dev, &p.byte_regions(), None, stop, &|d| progress.update(d));
        progress.phase("firmware erase (the drive reports its own progress)", 0);
        let step = purge();
        progress.phase("reading samples after the firmware erase", p.planned_bytes());
        let after = engine::read_back(dev, &p.byte_regions(), None, stop, &|d| progress.update(d));
        interrupted |= before.interrupted || after.interrupted;
        let changed = crate::firmware::content_changed(&before.blake3, &after.blake3)
            && before.errors.is_empty()
            && after.errors.is_empty();
        match step.outcome {
            StepOutcome::Completed if changed => purge_verified = true,
            StepOutcome::Completed => {}
            _ => {
                purge_failed = Some(
                    step.reason
                        .clone()
                        .unwrap_or_else(|| "the firmware erase failed".into()),
                )
            }
        }
        firmware_digests = Some((before.blake3, after.blake3));
        steps.push(step);
    }
    let mut failed_writes = 0u64;
    let mut sync_failed = false;

    let sample = match spec.verify {
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

    let mut last_fill = Fill::Zero;
    for number in 1..=spec.passes {
        if interrupted {
            break;
        }
        let fill = match spec.pattern {
            PatternChoice::Zero => Fill::Zero,
            PatternChoice::Random => Fill::fresh_random().context("getting a random seed for the pattern")?,
        };
        let label = format!("pass {number}/{} {}", spec.passes, kind_name(spec.pattern));
        progress.phase(&label, cap);
        let started = cert::now_utc();
        let r = engine::write_pass(dev, &fill, stop, &|d| progress.update(d));
        let bad: u64 = r.errors.iter().map(|e| e.count).sum();
        failed_writes += bad;
        interrupted |= r.interrupted;
        sync_failed |= r.sync_errno.is_some();
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
        steps.push(Step {
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
        last_fill = fill;
    }

    let mut verification = None;
    if !interrupted && spec.verify != VerifyChoice::None {
        let (mode, regions, plan_rec, pre) = match &sample {
            Some((p, pre)) => (
                VerifyMode::Sample,
                p.byte_regions(),
                Some(p.describe()),
                Some(pre.clone()),
            ),
            None => (VerifyMode::Full, vec![(0, cap)], None, None),
        };
        let total = regions.iter().map(|r| r.1).sum();
        progress.phase(
            &format!("verify {}", if mode == VerifyMode::Full { "full" } else { "sample" }),
            total,
        );
        let started = cert::now_utc();
        let r = engine::read_back(dev, &regions, Some(&last_fill), stop, &|d| progress.update(d));
        interrupted |= r.interrupted;
        if !r.interrupted {
            let mismatched_blocks = r
                .errors
                .iter()
                .filter(|e| e.op == RangeOp::Mismatch)
                .map(|e| e.count)
                .sum();
            verification = Some(Verification {
                mode,
                expected: last_fill.describe(),
                sample: plan_rec,
                bytes_read: r.bytes_read,
                mismatched_blocks,
                error_ranges: r.errors,
                readback_blake3: r.blake3,
                pre_wipe_sample_blake3: pre,
                firmware_before_blake3: firmware_digests.as_ref().map(|d| d.0.clone()),
                firmware_after_blake3: firmware_digests.as_ref().map(|d| d.1.clone()),
                started_at: started,
                finished_at: cert::now_utc(),
            });
        }
    }

    let mut hidden_areas = firmware.hidden.unwrap_or(HiddenAreas {
        check: match id.transport {
            Transport::Nvme | Transport::Virtio | Transport::Mmc | Transport::Loop => HiddenAreaCheck::NotApplicable,
            _ => HiddenAreaCheck::Unavailable,
        },
        hpa: None,
        dco: None,
    });
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
    let hidden = hidden_areas.check;
    let mut outcome = decide(interrupted, failed_writes, sync_failed, verification.as_ref(), hidden);
    if outcome.status != OutcomeStatus::NotErased {
        let mut extra = Vec::new();
        for (name, area) in [
            ("Host Protected Area", &hidden_areas.hpa),
            ("Device Configuration Overlay", &hidden_areas.dco),
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
        if !extra.is_empty() {
            outcome.status = OutcomeStatus::ErasedWithExceptions;
            outcome.exceptions.extend(extra);
        }
    }
    progress.finish(&outcome);
    Ok(DiskRecord {
        device: id.device.clone(),
        model: id.model.clone(),
        serial: id.serial.clone(),
        firmware: id.firmware.clone(),
        wwn: id.wwn.clone(),
        transport: id.transport,
        rotational: id.rotational,
        capacity_bytes: cap,
        logical_sector_size: ss,
        physical_sector_size: id.physical_sector_size.max(ss),
        hidden_areas,
        nist_category: if outcome.status == OutcomeStatus::NotErased {
            NistCategory::None
        } else if purge_verified {
            NistCategory::Purge
        } else {
            NistCategory::Clear
        },
        steps,
        verification,
        outcome,
    })
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

/// Arguments of `lapterop-agent wipe`.
#[derive(Debug, clap::Args)]
pub struct WipeArgs {
    /// Overwrite pattern.
    #[arg(long, value_enum, default_value_t = PatternChoice::Random)]
    pub pattern: PatternChoice,
    /// Number of overwrite passes (the last one is verified).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub passes: u32,
    /// How the last pass is read back.
    #[arg(long, value_enum, default_value_t = VerifyChoice::Full)]
    pub verify: VerifyChoice,
    /// Firmware erase before the overwrite: auto = the strongest purge the drive really supports
    /// (docs/firmware-erase.md); overwrite = none; or one named method (an error if unsupported).
    #[arg(long, value_enum, default_value = "auto")]
    pub method: crate::firmware::Method,
    /// Allow ATA Security Erase (off by default: only a Clear for flash, risky behind USB bridges).
    #[arg(long)]
    pub allow_security_erase: bool,
    /// Leave an ATA Host Protected Area in place instead of opening it for the wipe (the disk is then
    /// at best erased with exceptions).
    #[arg(long)]
    pub keep_hpa: bool,
    /// Do not ask for a typed confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Station secret key that signs the certificate (PREFIX.key from `lapterop-cert keygen`).
    #[arg(long, value_name = "FILE")]
    pub station_key: Option<PathBuf>,
    /// Name or volunteer code of the person running the wipe.
    #[arg(long, default_value = "unnamed operator")]
    pub operator: String,
    /// Organisation running the workshop.
    #[arg(long, default_value = "Lapterop workshop")]
    pub organisation: String,
    /// Workshop site.
    #[arg(long, default_value = "unspecified site")]
    pub site: String,
    /// Where to write the signed certificate (must not exist yet) [default: lapterop-certificate-ID.json].
    #[arg(long, value_name = "FILE")]
    pub certificate: Option<PathBuf>,
    /// Partition UUID of the boot stick, never wiped (repeatable; also read from LAPTEROP_STICK_PARTUUIDS).
    #[arg(long, value_name = "UUID")]
    pub stick_partuuid: Vec<String>,
    /// Whole disks to wipe (/dev/sdb, /dev/nvme0n1, /dev/disk/by-id/...).
    #[arg(required = true, value_name = "DEVICE")]
    pub devices: Vec<String>,
}

/// Runs `lapterop-agent wipe`; see the exit codes above and in `docs/wiping.md`.
pub fn run(args: WipeArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lapterop-agent wipe: {e:#}");
            ExitCode::from(EXIT_NOTHING_DONE)
        }
    }
}

fn run_inner(args: WipeArgs) -> anyhow::Result<ExitCode> {
    let key_path = args
        .station_key
        .as_ref()
        .context("no station key: pass --station-key FILE (made by `lapterop-cert keygen`)")?;
    let key = cert::keys::read_signing_key(key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let id = cert::new_id().context("drawing a certificate id from the kernel's random numbers")?;
    let cert_path = args
        .certificate
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("lapterop-certificate-{id}.json")));
    if cert_path.exists() {
        bail!("{} already exists; choose another --certificate", cert_path.display());
    }
    let binary_blake3 = self_blake3().context("hashing the agent binary (/proc/self/exe)")?;

    let discovery = Discovery::system();
    let cfg = SafetyConfig::from_env(&args.stick_partuuid);
    let mut claimed = Vec::new();
    let mut refused = false;
    for dev in &args.devices {
        let d = discovery.find(dev)?;
        if claimed.iter().any(|c: &disk::Claimed| c.disk.name == d.name) {
            bail!("{dev} is listed twice");
        }
        match disk::claim(&d, &cfg) {
            Ok(c) => claimed.push(c),
            Err(reasons) => {
                refused = true;
                for r in reasons {
                    eprintln!("refusing {}: {r}", d.path.display());
                }
            }
        }
    }
    if refused {
        eprintln!("lapterop-agent wipe: nothing was written; fix the reasons above and try again");
        return Ok(ExitCode::from(EXIT_NOTHING_DONE));
    }
    if !args.yes && !confirm(&claimed)? {
        eprintln!("lapterop-agent wipe: cancelled; nothing was written");
        return Ok(ExitCode::from(EXIT_NOTHING_DONE));
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing the signal handler")?;
    }
    let spec = WipeSpec {
        pattern: args.pattern,
        passes: args.passes,
        verify: args.verify,
    };
    let policy = crate::firmware::Policy {
        allow_security_erase: args.allow_security_erase || args.method == crate::firmware::Method::AtaSecurityErase,
        expose_hpa: !args.keep_hpa,
        ..Default::default()
    };
    let disks = match wipe_claimed(&claimed, &spec, args.method, &policy, &stop) {
        Ok(d) => d,
        Err(WipeError::Plan(e)) => {
            eprintln!("lapterop-agent wipe: {e}; nothing was written");
            return Ok(ExitCode::from(EXIT_NOTHING_DONE));
        }
        Err(WipeError::Failed(e)) => return Err(e),
    };
    let interrupted = stop.load(Ordering::Relaxed);

    let mut certificate = Certificate {
        schema: cert::SCHEMA_V1.to_string(),
        id,
        issued_at: cert::now_utc(),
        agent: agent_info(binary_blake3),
        station: StationInfo {
            key_id: String::new(),
            organisation: args.organisation.clone(),
            site: args.site.clone(),
            name: None,
        },
        operator: Person {
            name: args.operator.clone(),
            role: None,
        },
        verifier: None,
        donor: None,
        host: None,
        disks,
        not_touched: Vec::new(),
        install: None,
        signature: None,
    };
    certificate.sign(&key).context("signing the certificate")?;
    write_atomically(&cert_path, certificate.to_pretty_json()?.as_bytes())
        .with_context(|| format!("writing the certificate {}", cert_path.display()))?;
    for d in &certificate.disks {
        println!("{}: {}", d.device, outcome_words(&d.outcome));
    }
    println!("certificate: {}", cert_path.display());
    Ok(if interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if certificate.overall_outcome() == OutcomeStatus::Erased {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_ERASED)
    })
}

/// Why [`wipe_claimed`] did not produce records.
#[derive(Debug, thiserror::Error)]
pub enum WipeError {
    /// The firmware plan failed before anything was written (a named method the drive lacks).
    #[error("{0}")]
    Plan(String),
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

/// Makes one disk's progress reporter (by kernel name); `None` in [`wipe_planned`] uses the built-in
/// bars or plain lines on standard error.
pub type ProgressFactory<'a> = &'a (dyn Fn(&str) -> Box<dyn Progress + Send> + Sync);

/// Wipes claimed disks in parallel, one thread each: the firmware purge the plan picks for `method`,
/// then the overwrite and read-back of `spec`. Returns one record per disk, in order. The firmware plan
/// for every disk is made before anything is written, so a [`WipeError::Plan`] leaves all disks as they
/// were. Afterwards the kernel is asked to forget the old partitions.
pub fn wipe_claimed(
    claimed: &[disk::Claimed],
    spec: &WipeSpec,
    method: crate::firmware::Method,
    policy: &crate::firmware::Policy,
    stop: &AtomicBool,
) -> Result<Vec<DiskRecord>, WipeError> {
    let preludes = plan_claimed(claimed, method, policy)?;
    wipe_planned(claimed, preludes, spec, stop, None)
}

/// [`wipe_claimed`] with the plans made already by [`plan_claimed`] (one per disk, in order) and the
/// progress reported through `progress`.
pub fn wipe_planned(
    claimed: &[disk::Claimed],
    preludes: Vec<FirmwarePrelude>,
    spec: &WipeSpec,
    stop: &AtomicBool,
    progress: Option<ProgressFactory<'_>>,
) -> Result<Vec<DiskRecord>, WipeError> {
    if preludes.len() != claimed.len() {
        return Err(WipeError::Plan(format!(
            "{} firmware plans for {} disks",
            preludes.len(),
            claimed.len()
        )));
    }
    let ui = progress::Ui::new();
    let records: Vec<anyhow::Result<DiskRecord>> = std::thread::scope(|s| {
        let handles: Vec<_> = claimed
            .iter()
            .zip(preludes)
            .map(|(c, fw)| {
                let p: Box<dyn Progress + Send> = match progress {
                    Some(make) => make(&c.disk.name),
                    None => Box::new(ui.disk(&c.disk.name)),
                };
                s.spawn(move || wipe_device_with(c, &DiskIdentity::of(c), spec, stop, p.as_ref(), fw))
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

/// Shows what will be destroyed and asks for the word ERASE.
fn confirm(claimed: &[disk::Claimed]) -> anyhow::Result<bool> {
    eprintln!("These disks will be overwritten; everything on them will be lost:");
    for c in claimed {
        let d = &c.disk;
        eprintln!(
            "  {}  {}  {:?}  model {}  serial {}",
            d.path.display(),
            lapterop_words::size(c.capacity_bytes),
            d.transport,
            d.model.as_deref().unwrap_or("?"),
            d.serial.as_deref().unwrap_or("?"),
        );
    }
    eprint!("Type ERASE to continue: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim() == "ERASE")
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
