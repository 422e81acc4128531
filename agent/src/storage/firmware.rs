//! Firmware purge: probe what a drive really supports, choose the strongest purge (NIST SP 800-88,
//! IEEE 2883), run it to completion with polling, and record every primitive as a certificate step
//! with its capability, outcome and evidence.
//!
//! The drive is reached through the [`AtaDrive`] / [`NvmeDrive`] traits: the real implementations send
//! the bytes of [`crate::command`] through [`crate::command::sys`]; tests use fakes that behave like
//! drives (frozen, locked, sanitize in progress, failing). A step is `completed` only when the drive
//! itself reports completion afterwards (sanitize log or status, a successful Format, IDENTIFY after
//! an erase); the wipe engine then reads the media back before any `purge` is claimed.
//!
//! Never leave a drive locked: every path after SECURITY SET PASSWORD ends by checking IDENTIFY and
//! disabling the password again.

use std::io;
use std::time::Duration;

use lapterop_certificate::{Capability, FirmwareEvidence, Step, StepKind, StepOutcome};

use crate::command::ata::{self, AtaCommand, Identify, SanitizeFailure};
use crate::command::nvme::{
    self, Controller, Namespace, PassthruCmd, SanitizeAction, SanitizeState, SecureErase, Status,
};
use crate::command::AtaOutcome;

/// The user password Lapterop sets for ATA Security Erase; a drive found locked with it (by an
/// interrupted earlier run) is unlocked with it.
pub const ATA_PASSWORD: &[u8] = b"lapterop";

/// Sends ATA commands to one drive.
pub trait AtaDrive {
    /// Runs one command; `data` is its data phase.
    fn run(&mut self, cmd: &AtaCommand, data: &mut [u8]) -> io::Result<AtaOutcome>;
}

/// Sends NVMe admin commands to one controller.
pub trait NvmeDrive {
    /// Runs one admin command; returns the completion status and dword 0.
    fn admin(&mut self, cmd: PassthruCmd, data: &mut [u8]) -> io::Result<(Status, u32)>;
}

/// Waits between polls; tests use a waiter that only counts.
pub trait Waiter {
    /// Waits `d`.
    fn wait(&mut self, d: Duration);
}

/// Real time.
#[derive(Debug, Default)]
pub struct Sleep;

impl Waiter for Sleep {
    fn wait(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Firmware method requested on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// The strongest purge the drive really supports, then overwrite and verify.
    Auto,
    /// Host overwrite only.
    Overwrite,
    /// NVMe Sanitize, crypto erase.
    NvmeSanitizeCrypto,
    /// NVMe Sanitize, block erase.
    NvmeSanitizeBlock,
    /// NVMe Format NVM, SES=2.
    NvmeFormatCrypto,
    /// NVMe Format NVM, SES=1.
    NvmeFormatUser,
    /// ATA SANITIZE CRYPTO SCRAMBLE EXT.
    AtaSanitizeCrypto,
    /// ATA SANITIZE BLOCK ERASE EXT.
    AtaSanitizeBlock,
    /// ATA SECURITY ERASE UNIT (enhanced when supported).
    AtaSecurityErase,
    /// eMMC SANITIZE after a discard of the user area.
    MmcSanitize,
    /// eMMC secure erase (the kernel's BLKSECDISCARD).
    MmcSecureErase,
}

impl Method {
    /// The step kind a specific method runs (None for auto and overwrite).
    pub fn step_kind(self) -> Option<StepKind> {
        Some(match self {
            Self::Auto | Self::Overwrite => return None,
            Self::NvmeSanitizeCrypto => StepKind::NvmeSanitizeCrypto,
            Self::NvmeSanitizeBlock => StepKind::NvmeSanitizeBlock,
            Self::NvmeFormatCrypto => StepKind::NvmeFormatCrypto,
            Self::NvmeFormatUser => StepKind::NvmeFormatUser,
            Self::AtaSanitizeCrypto => StepKind::AtaSanitizeCrypto,
            Self::AtaSanitizeBlock => StepKind::AtaSanitizeBlock,
            Self::AtaSecurityErase => StepKind::AtaSecurityEraseEnhanced,
            Self::MmcSanitize => StepKind::MmcSanitize,
            Self::MmcSecureErase => StepKind::MmcSecureErase,
        })
    }
}

/// Site choices that change what the planner may do.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Allow ATA Security Erase (only a Clear for flash, and risky behind bridges): off by default.
    pub allow_security_erase: bool,
    /// Poll interval for long operations.
    pub poll_interval: Duration,
    /// Give up waiting after this long.
    pub max_wait: Duration,
    /// Open an ATA Host Protected Area for the wipe (volatile SET MAX, restored afterwards); when
    /// off, it is left in place and recorded so.
    pub expose_hpa: bool,
    /// The drive sits behind a USB bridge whose ATA pass-through was confirmed (not a site choice:
    /// set per disk). SANITIZE may run; Security Erase never does.
    pub behind_usb_bridge: bool,
    /// A locked self-encrypting drive may be reset with the PSID from its label (TCG PSID Revert,
    /// [`crate::storage::opal`]); off by default: it destroys everything and resets the drive.
    pub psid_revert: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allow_security_erase: false,
            poll_interval: Duration::from_secs(5),
            max_wait: Duration::from_secs(12 * 3600),
            expose_hpa: true,
            behind_usb_bridge: false,
            psid_revert: false,
        }
    }
}

/// What a drive supports, as probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caps {
    /// An NVMe namespace and its controller.
    Nvme {
        /// Identify Controller.
        controller: Controller,
        /// Identify Namespace.
        namespace: Namespace,
        /// The namespace id.
        nsid: u32,
        /// The controller's other namespaces (kernel names). A controller-wide command (Sanitize, or
        /// a Format that covers every namespace) would erase them too, outside this disk's claim and
        /// its read-back, so it is planned only when this list is empty.
        others: Vec<String>,
    },
    /// An ATA drive.
    Ata(Identify),
    /// An eMMC, from its Extended CSD.
    Mmc(crate::command::mmc::ExtCsd),
    /// No firmware commands reach the drive (USB bridge, virtio, loop), with the reason.
    Unavailable(String),
}

/// Probes an NVMe namespace.
pub fn probe_nvme(drive: &mut dyn NvmeDrive, nsid: u32) -> Caps {
    let mut c = [0u8; 4096];
    let mut n = [0u8; 4096];
    match (
        drive.admin(nvme::identify_controller(), &mut c),
        drive.admin(nvme::identify_namespace(nsid), &mut n),
    ) {
        (Ok((s1, _)), Ok((s2, _))) if s1.ok() && s2.ok() => Caps::Nvme {
            controller: nvme::parse_controller(&c),
            namespace: nvme::parse_namespace(&n),
            nsid,
            others: Vec::new(),
        },
        (Ok((s, _)), _) | (_, Ok((s, _))) if !s.ok() => {
            Caps::Unavailable(format!("NVMe Identify failed: {}", s.describe()))
        }
        (Err(e), _) | (_, Err(e)) => Caps::Unavailable(format!("NVMe Identify could not be sent: {e}")),
        _ => Caps::Unavailable("NVMe Identify failed".into()),
    }
}

impl Caps {
    /// The same capabilities, for a namespace whose controller also has the namespaces `others`.
    pub fn sharing_controller_with(self, names: Vec<String>) -> Caps {
        match self {
            Caps::Nvme {
                controller,
                namespace,
                nsid,
                ..
            } => Caps::Nvme {
                controller,
                namespace,
                nsid,
                others: names,
            },
            other => other,
        }
    }
}

/// Probes an ATA drive with IDENTIFY DEVICE.
pub fn probe_ata(drive: &mut dyn AtaDrive) -> Caps {
    let mut d = [0u8; 512];
    match drive.run(&ata::identify(), &mut d) {
        Ok(AtaOutcome::Ok(_)) => match ata::parse_identify(&d) {
            id if id.checksum_ok == Some(false) => Caps::Unavailable("IDENTIFY data has a bad checksum".into()),
            id => Caps::Ata(id),
        },
        Ok(AtaOutcome::NoPassthrough(why)) => Caps::Unavailable(why),
        Ok(other) => Caps::Unavailable(format!("IDENTIFY DEVICE failed: {other:?}")),
        Err(e) => Caps::Unavailable(format!("IDENTIFY DEVICE could not be sent: {e}")),
    }
}

/// One purge primitive considered for a drive, with its probed capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The primitive.
    pub kind: StepKind,
    /// Whether the drive supports it.
    pub capability: Capability,
    /// Why not, when not supported.
    pub reason: Option<String>,
}

/// The firmware part of a disk's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every primitive considered, strongest first, as probed.
    pub candidates: Vec<Candidate>,
    /// The one to run, if any.
    pub chosen: Option<StepKind>,
}

impl Plan {
    /// The steps of the primitives not chosen, recorded as skipped with their capability (Free Geek
    /// style: the certificate shows what was possible and why it was not used).
    pub fn skipped_steps(&self) -> Vec<Step> {
        self.candidates
            .iter()
            .filter(|c| Some(c.kind) != self.chosen && c.capability != Capability::Supported)
            .map(|c| {
                skipped(
                    c.kind,
                    c.capability,
                    c.reason.clone().unwrap_or_else(|| "not chosen".into()),
                )
            })
            .collect()
    }
}

fn candidate(kind: StepKind, supported: bool, why_not: &str) -> Candidate {
    if supported {
        Candidate {
            kind,
            capability: Capability::Supported,
            reason: None,
        }
    } else {
        Candidate {
            kind,
            capability: Capability::NotSupported,
            reason: Some(why_not.to_owned()),
        }
    }
}

/// Why a requested method cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method:?} cannot run on this drive: {reason}; use --method auto to let Lapterop choose")]
pub struct PlanError {
    /// The method asked for.
    pub method: Method,
    /// Why.
    pub reason: String,
}

/// Chooses the firmware purge for a drive: NVMe Sanitize (crypto, then block) > NVMe Format (SES=2,
/// then SES=1); ATA SANITIZE (crypto, then block for flash or overwrite for spinning media) >
/// enhanced Security Erase (only where the site allows it). `method` other than auto forces one.
pub fn plan(method: Method, caps: &Caps, rotational: bool, policy: &Policy) -> Result<Plan, PlanError> {
    let candidates = match caps {
        Caps::Nvme {
            controller: c, others, ..
        } => {
            let mut v = vec![
                candidate(
                    StepKind::NvmeSanitizeCrypto,
                    c.sanitize_crypto,
                    "SANICAP: crypto erase not supported",
                ),
                candidate(
                    StepKind::NvmeSanitizeBlock,
                    c.sanitize_block,
                    "SANICAP: block erase not supported",
                ),
                candidate(
                    StepKind::NvmeFormatCrypto,
                    c.format_supported && c.format_crypto,
                    "FNA: no crypto erase in Format NVM",
                ),
                candidate(
                    StepKind::NvmeFormatUser,
                    c.format_supported,
                    "OACS: Format NVM not supported",
                ),
            ];
            if !others.is_empty() {
                // Sanitize always acts on the whole NVM subsystem; Format does when FNA says so.
                let format_all = c.format_all_namespaces || c.secure_erase_all_namespaces;
                for cand in &mut v {
                    let controller_wide = match cand.kind {
                        StepKind::NvmeSanitizeCrypto | StepKind::NvmeSanitizeBlock => true,
                        _ => format_all,
                    };
                    if controller_wide && cand.capability == Capability::Supported {
                        cand.capability = Capability::Refused;
                        cand.reason = Some(format!(
                            "it erases every namespace of the controller, and {} is not part of this disk's \
                             erase and check",
                            others.join(", ")
                        ));
                    }
                }
            }
            v
        }
        Caps::Ata(id) => {
            let s = &id.security;
            let locked = |mut c: Candidate| {
                if s.locked && c.capability == Capability::Supported {
                    c.capability = Capability::Locked;
                    c.reason = Some(
                        "the drive is locked with a user password Lapterop does not know; SANITIZE would be aborted"
                            .into(),
                    );
                }
                c
            };
            let mut v = vec![
                candidate(
                    StepKind::AtaSanitizeCrypto,
                    id.sanitize && id.sanitize_crypto,
                    "no CRYPTO SCRAMBLE EXT (IDENTIFY word 59)",
                ),
                if rotational {
                    candidate(
                        StepKind::AtaSanitizeOverwrite,
                        id.sanitize && id.sanitize_overwrite,
                        "no OVERWRITE EXT (word 59)",
                    )
                } else {
                    candidate(
                        StepKind::AtaSanitizeBlock,
                        id.sanitize && id.sanitize_block,
                        "no BLOCK ERASE EXT (word 59)",
                    )
                },
            ];
            let mut v: Vec<Candidate> = v.drain(..).map(locked).collect();
            // Enhanced erase where the drive has it; SSDs of 2012-2017 often only have the normal one,
            // which still reaches the drive's own erase (a Clear for flash, NIST SP 800-88 Table A-8).
            let se_kind = if s.supported && !s.enhanced_erase {
                StepKind::AtaSecurityErase
            } else {
                StepKind::AtaSecurityEraseEnhanced
            };
            let se = if !s.supported {
                candidate(se_kind, false, "security feature set not supported (word 128)")
            } else if policy.behind_usb_bridge {
                Candidate {
                    kind: se_kind,
                    capability: Capability::Refused,
                    reason: Some(
                        "never through a USB bridge: an erase that the bridge cuts off can leave the drive locked"
                            .into(),
                    ),
                }
            } else if !policy.allow_security_erase && method != Method::AtaSecurityErase {
                Candidate {
                    kind: se_kind,
                    capability: Capability::Supported,
                    reason: Some("allowed only when the site config enables ATA Security Erase".into()),
                }
            } else if s.frozen {
                Candidate {
                    kind: se_kind,
                    capability: Capability::Frozen,
                    reason: Some("security is frozen by the BIOS (suspend/resume or hot-plug unfreezes it)".into()),
                }
            } else if s.locked {
                Candidate {
                    kind: se_kind,
                    capability: Capability::Locked,
                    reason: None,
                }
            } else {
                candidate(se_kind, true, "")
            };
            v.push(se);
            v
        }
        Caps::Mmc(e) => vec![
            candidate(
                StepKind::MmcSanitize,
                e.sanitize,
                "no SANITIZE (EXT_CSD SEC_FEATURE_SUPPORT bit 6; eMMC before 4.5)",
            ),
            candidate(
                StepKind::MmcSecureErase,
                e.secure_erase,
                "no secure erase (EXT_CSD SEC_FEATURE_SUPPORT bit 0)",
            ),
        ],
        Caps::Unavailable(why) => {
            if method.step_kind().is_some() {
                return Err(PlanError {
                    method,
                    reason: why.clone(),
                });
            }
            return Ok(Plan {
                candidates: Vec::new(),
                chosen: None,
            });
        }
    };
    // Supported without a reservation, or a Security Erase of a locked drive (that path unlocks first
    // when the password is ours); a locked drive's SANITIZE is never runnable.
    let unlocks_first = |c: &Candidate| {
        c.capability == Capability::Locked
            && matches!(c.kind, StepKind::AtaSecurityErase | StepKind::AtaSecurityEraseEnhanced)
    };
    let runnable = |c: &&Candidate| (c.capability == Capability::Supported && c.reason.is_none()) || unlocks_first(c);
    let chosen = match method {
        Method::Overwrite => None,
        Method::Auto => candidates.iter().find(runnable).map(|c| c.kind),
        m => {
            let want = m.step_kind();
            // `ata-security-erase` runs the enhanced erase, or the normal one on a drive without it.
            let wanted = |c: &&Candidate| {
                Some(c.kind) == want || (m == Method::AtaSecurityErase && c.kind == StepKind::AtaSecurityErase)
            };
            match candidates.iter().find(wanted) {
                Some(c) if c.capability == Capability::Supported || unlocks_first(c) => Some(c.kind),
                Some(c) => {
                    return Err(PlanError {
                        method,
                        reason: c.reason.clone().unwrap_or_else(|| format!("{:?}", c.capability)),
                    })
                }
                None => {
                    return Err(PlanError {
                        method,
                        reason: "not a command of this kind of drive".into(),
                    })
                }
            }
        }
    };
    Ok(Plan { candidates, chosen })
}

/// A step that did not run, with the capability found and why.
pub fn skipped(kind: StepKind, capability: Capability, reason: String) -> Step {
    Step {
        kind,
        capability,
        outcome: StepOutcome::Skipped,
        reason: Some(reason),
        started_at: None,
        finished_at: None,
        pass: None,
        pattern: None,
        bytes: 0,
        error_ranges: Vec::new(),
        firmware: None,
    }
}

/// Builds a step that ran (`bytes` counts only when it completed).
pub fn ran(
    kind: StepKind,
    capability: Capability,
    outcome: StepOutcome,
    reason: Option<String>,
    bytes: u64,
    ev: FirmwareEvidence,
    started: String,
) -> Step {
    Step {
        kind,
        capability,
        outcome,
        reason,
        started_at: Some(started),
        finished_at: Some(lapterop_certificate::now_utc()),
        pass: None,
        pattern: None,
        bytes: if outcome == StepOutcome::Completed { bytes } else { 0 },
        error_ranges: Vec::new(),
        firmware: Some(ev),
    }
}

/// Records steps of one firmware command.
struct Recorder {
    kind: StepKind,
    capacity_bytes: u64,
    started: String,
}

impl Recorder {
    fn failed(&self, ev: FirmwareEvidence, capability: Capability, reason: String) -> Step {
        ran(
            self.kind,
            capability,
            StepOutcome::Failed,
            Some(reason),
            self.capacity_bytes,
            ev,
            self.started.clone(),
        )
    }

    fn completed(&self, ev: FirmwareEvidence) -> Step {
        ran(
            self.kind,
            Capability::Supported,
            StepOutcome::Completed,
            None,
            self.capacity_bytes,
            ev,
            self.started.clone(),
        )
    }
}

/// Progress callback: fraction done (0.0-1.0) when the drive reports it, `None` when it does not.
pub type Progress<'a> = &'a mut dyn FnMut(Option<f64>);

/// Runs the NVMe purge the plan chose and, when it fails and `fall_back` allows (the automatic plan),
/// each weaker method the drive supports after it, until one completes. Returns every attempt.
#[allow(clippy::too_many_arguments)]
pub fn run_nvme_chain(
    drive: &mut dyn NvmeDrive,
    plan: &Plan,
    fall_back: bool,
    caps: &Caps,
    capacity_bytes: u64,
    policy: &Policy,
    waiter: &mut dyn Waiter,
    progress: Progress<'_>,
) -> Vec<Step> {
    let Some(first) = plan.chosen else {
        return Vec::new();
    };
    let start = plan.candidates.iter().position(|c| c.kind == first).unwrap_or(0);
    let order = plan.candidates[start..]
        .iter()
        .filter(|c| c.kind == first || (fall_back && c.capability == Capability::Supported && c.reason.is_none()))
        .map(|c| c.kind);
    let mut steps = Vec::new();
    for kind in order {
        let step = run_nvme(drive, kind, caps, capacity_bytes, policy, waiter, progress);
        let done = step.outcome == StepOutcome::Completed;
        steps.push(step);
        if done {
            break;
        }
    }
    steps
}

/// Runs an NVMe purge (`kind` from [`plan`]) on a whole namespace of `capacity_bytes`.
pub fn run_nvme(
    drive: &mut dyn NvmeDrive,
    kind: StepKind,
    caps: &Caps,
    capacity_bytes: u64,
    policy: &Policy,
    waiter: &mut dyn Waiter,
    progress: Progress<'_>,
) -> Step {
    let started = lapterop_certificate::now_utc();
    let Caps::Nvme {
        controller,
        namespace,
        nsid,
        others,
    } = caps
    else {
        return skipped(kind, Capability::NotSupported, "not an NVMe drive".into());
    };
    let controller_wide = matches!(kind, StepKind::NvmeSanitizeCrypto | StepKind::NvmeSanitizeBlock)
        || controller.secure_erase_all_namespaces
        || controller.format_all_namespaces;
    if controller_wide && !others.is_empty() {
        // The plan never picks this; a caller that forces it must not erase namespaces it did not claim.
        return skipped(
            kind,
            Capability::Refused,
            format!(
                "it would erase {} too, which this disk's claim does not cover",
                others.join(", ")
            ),
        );
    }
    let (cmd, sanitize) = match kind {
        StepKind::NvmeSanitizeCrypto => (nvme::sanitize(SanitizeAction::CryptoErase, 0, 0), true),
        StepKind::NvmeSanitizeBlock => (nvme::sanitize(SanitizeAction::BlockErase, 0, 0), true),
        StepKind::NvmeFormatCrypto | StepKind::NvmeFormatUser => {
            let ses = if kind == StepKind::NvmeFormatCrypto {
                SecureErase::Crypto
            } else {
                SecureErase::UserData
            };
            // FNA bit 1: a secure erase covers every namespace; send it to all so the drive does not refuse.
            let target = if controller.secure_erase_all_namespaces || controller.format_all_namespaces {
                nvme::NSID_ALL
            } else {
                *nsid
            };
            (nvme::format_nvm(target, namespace.current_format, ses), false)
        }
        other => return skipped(other, Capability::NotSupported, "not an NVMe command".into()),
    };
    let mut ev = FirmwareEvidence {
        command: cmd.describe(),
        status: String::new(),
        polls: 0,
        final_state: None,
    };
    let rec = Recorder {
        kind,
        capacity_bytes,
        started,
    };
    let fail = |ev, capability, reason| rec.failed(ev, capability, reason);
    match drive.admin(cmd, &mut []) {
        Err(e) => {
            ev.status = format!("not sent: {e}");
            return fail(ev, Capability::Refused, format!("the kernel refused the command: {e}"));
        }
        Ok((status, _)) => {
            ev.status = status.describe();
            if !status.ok() {
                let capability = if (status.sct, status.sc) == (0, 0x01) {
                    Capability::Refused
                } else {
                    Capability::Supported
                };
                return fail(ev, capability, format!("the drive answered {}", status.describe()));
            }
        }
    }
    if !sanitize {
        // Format NVM completes before the command returns; check the namespace is usable again.
        let mut n = [0u8; 4096];
        return match drive.admin(nvme::identify_namespace(*nsid), &mut n) {
            Ok((s, _)) if s.ok() && nvme::parse_namespace(&n).size_blocks > 0 => {
                progress(Some(1.0));
                ev.final_state = Some("namespace identifies again after Format NVM".into());
                rec.completed(ev)
            }
            other => fail(
                ev,
                Capability::Supported,
                format!("the namespace did not come back after Format NVM: {other:?}"),
            ),
        };
    }
    // Sanitize runs in the background: poll the Sanitize Status log until it says how it ended.
    let mut waited = Duration::ZERO;
    loop {
        let mut log = [0u8; 512];
        ev.polls += 1;
        let state = match drive.admin(nvme::sanitize_status_log(), &mut log) {
            Ok((s, _)) if s.ok() => nvme::parse_sanitize_log(&log),
            Ok((s, _)) => {
                return fail(
                    ev,
                    Capability::Supported,
                    format!("reading the sanitize log failed: {}", s.describe()),
                )
            }
            Err(e) => {
                return fail(
                    ev,
                    Capability::Supported,
                    format!("reading the sanitize log failed: {e}"),
                )
            }
        };
        match state.state {
            SanitizeState::InProgress => {
                progress(Some(f64::from(state.progress) / 65536.0));
            }
            SanitizeState::Succeeded | SanitizeState::SucceededDeallocated => {
                progress(Some(1.0));
                ev.final_state = Some(format!(
                    "sanitize log: most recent sanitize completed successfully (SSTAT state {:?}, global data erased: {})",
                    state.state, state.global_data_erased
                ));
                return rec.completed(ev);
            }
            SanitizeState::Failed => {
                // Sent with AUSE = 1: leave the failure state so the drive serves I/O again and the
                // overwrite (or the next method) can run.
                let exit = match drive.admin(nvme::sanitize(SanitizeAction::ExitFailureMode, 0, 0), &mut []) {
                    Ok((s, _)) => s.describe(),
                    Err(e) => format!("not sent: {e}"),
                };
                ev.final_state = Some(format!(
                    "sanitize log: most recent sanitize failed; Exit Failure Mode: {exit}"
                ));
                return fail(
                    ev,
                    Capability::Supported,
                    "the drive reports that the sanitize failed".into(),
                );
            }
            SanitizeState::Never | SanitizeState::Other(_) => {
                ev.final_state = Some(format!("sanitize log: {:?}", state.state));
                return fail(
                    ev,
                    Capability::Supported,
                    "the drive accepted Sanitize but its log shows no sanitize".into(),
                );
            }
        }
        if waited >= policy.max_wait {
            return fail(
                ev,
                Capability::Supported,
                format!(
                    "still in progress after {} s; the drive will finish on its own, wipe again afterwards",
                    waited.as_secs()
                ),
            );
        }
        waiter.wait(policy.poll_interval);
        waited += policy.poll_interval;
    }
}

fn evidence(cmd: &AtaCommand) -> FirmwareEvidence {
    FirmwareEvidence {
        command: format!("ata {} cdb {}", cmd.name, cmd.cdb_hex()),
        status: String::new(),
        polls: 0,
        final_state: None,
    }
}

fn describe(o: &AtaOutcome) -> String {
    match o {
        AtaOutcome::Ok(Some(r)) => format!("ok (status {:#04x})", r.status),
        AtaOutcome::Ok(None) => "ok".into(),
        AtaOutcome::Aborted(r) => format!("aborted (status {:#04x}, error {:#04x})", r.status, r.error),
        AtaOutcome::Failed(r) => format!("failed (status {:#04x}, error {:#04x})", r.status, r.error),
        AtaOutcome::NoPassthrough(m) | AtaOutcome::Error(m) => m.clone(),
    }
}

/// Runs an ATA SANITIZE purge and polls SANITIZE STATUS EXT to the end.
pub fn run_ata_sanitize(
    drive: &mut dyn AtaDrive,
    kind: StepKind,
    capacity_bytes: u64,
    policy: &Policy,
    waiter: &mut dyn Waiter,
    progress: Progress<'_>,
) -> Step {
    let started = lapterop_certificate::now_utc();
    let cmd = match kind {
        StepKind::AtaSanitizeCrypto => ata::crypto_scramble_ext(),
        StepKind::AtaSanitizeBlock => ata::block_erase_ext(),
        StepKind::AtaSanitizeOverwrite => ata::overwrite_ext(0, 1),
        other => return skipped(other, Capability::NotSupported, "not an ATA SANITIZE command".into()),
    };
    let mut ev = evidence(&cmd);
    let rec = Recorder {
        kind,
        capacity_bytes,
        started,
    };
    let fail = |ev, capability, reason| rec.failed(ev, capability, reason);
    match drive.run(&cmd, &mut []) {
        Err(e) => return fail(ev, Capability::Refused, format!("the kernel refused the command: {e}")),
        Ok(o) => {
            ev.status = describe(&o);
            match o {
                AtaOutcome::Ok(_) => {}
                AtaOutcome::Aborted(r) => {
                    let s = ata::sanitize_status(&r);
                    let (cap, why) = match s.reason {
                        Some(SanitizeFailure::Frozen) => {
                            (Capability::Frozen, "sanitize is frozen (SANITIZE FREEZE LOCK)")
                        }
                        Some(SanitizeFailure::Unsupported) => {
                            (Capability::NotSupported, "the drive does not support this sanitize")
                        }
                        Some(SanitizeFailure::Antifreeze) => (Capability::Refused, "ANTIFREEZE LOCK is set"),
                        _ => (Capability::Refused, "the drive aborted the command"),
                    };
                    return fail(ev, cap, why.into());
                }
                AtaOutcome::NoPassthrough(m) => return fail(ev, Capability::Refused, m),
                other => {
                    return fail(
                        ev,
                        Capability::Supported,
                        format!("the drive reported an error: {}", describe(&other)),
                    )
                }
            }
        }
    }
    let mut waited = Duration::ZERO;
    loop {
        ev.polls += 1;
        let status = match drive.run(&ata::sanitize_status_ext(false), &mut []) {
            Ok(AtaOutcome::Ok(Some(r))) => ata::sanitize_status(&r),
            Ok(AtaOutcome::Aborted(r)) | Ok(AtaOutcome::Failed(r)) => {
                let s = ata::sanitize_status(&r);
                ev.final_state = Some(format!("SANITIZE STATUS EXT: {:?}", s.reason));
                return fail(
                    ev,
                    Capability::Supported,
                    "the drive reports that the sanitize failed".into(),
                );
            }
            other => {
                return fail(
                    ev,
                    Capability::Supported,
                    format!("SANITIZE STATUS EXT gave no status: {other:?}"),
                )
            }
        };
        if status.in_progress {
            progress(Some(f64::from(status.progress) / 65536.0));
        } else if status.succeeded {
            progress(Some(1.0));
            ev.final_state = Some("SANITIZE STATUS EXT: operation completed without error".into());
            return rec.completed(ev);
        } else {
            ev.final_state = Some("SANITIZE STATUS EXT: not in progress and not succeeded".into());
            return fail(ev, Capability::Supported, "the sanitize ended without success".into());
        }
        if waited >= policy.max_wait {
            return fail(
                ev,
                Capability::Supported,
                format!("still in progress after {} s", waited.as_secs()),
            );
        }
        waiter.wait(policy.poll_interval);
        waited += policy.poll_interval;
    }
}

fn identify(drive: &mut dyn AtaDrive) -> Option<Identify> {
    let mut d = [0u8; 512];
    match drive.run(&ata::identify(), &mut d) {
        Ok(AtaOutcome::Ok(_)) => Some(ata::parse_identify(&d)),
        _ => None,
    }
}

fn send_password(drive: &mut dyn AtaDrive, cmd: &AtaCommand, enhanced: bool) -> io::Result<AtaOutcome> {
    let mut block = ata::security_block(ATA_PASSWORD, false, enhanced, false);
    drive.run(cmd, &mut block)
}

/// Before planning: a drive that an earlier, interrupted run left locked or with Lapterop's password
/// (a power cut during ERASE UNIT) is unlocked and its password disabled, and probed again, so the plan
/// sees the drive as it really is (a locked drive aborts SANITIZE and refuses every read and write).
/// Returns the capabilities to plan with and, when something was done or could not be done, a line
/// saying what.
pub fn clear_our_password(drive: &mut dyn AtaDrive, caps: Caps) -> (Caps, Option<String>) {
    let Caps::Ata(id) = &caps else {
        return (caps, None);
    };
    if !id.security.locked && !id.security.enabled {
        return (caps, None);
    }
    let was_locked = id.security.locked;
    match ensure_unlocked(drive) {
        Ok(()) => (
            probe_ata(drive),
            Some(if was_locked {
                "the drive was locked with Lapterop's password (an interrupted earlier run): unlocked and the password removed".into()
            } else {
                "the drive had Lapterop's password set (an interrupted earlier run): the password was removed".into()
            }),
        ),
        Err(why) => (caps, Some(why)),
    }
}

/// Makes sure the drive is neither locked nor protected by our password. Returns a description of
/// what is left when it cannot.
pub fn ensure_unlocked(drive: &mut dyn AtaDrive) -> Result<(), String> {
    for _ in 0..2 {
        let Some(id) = identify(drive) else {
            return Err("IDENTIFY DEVICE failed; the security state is unknown".into());
        };
        if !id.security.enabled && !id.security.locked {
            return Ok(());
        }
        if id.security.locked {
            let _ = send_password(drive, &ata::security_unlock(), false);
        }
        let _ = send_password(drive, &ata::security_disable_password(), false);
    }
    match identify(drive) {
        Some(id) if !id.security.enabled && !id.security.locked => Ok(()),
        Some(id) if id.security.locked => {
            Err("the drive is LOCKED with a password Lapterop does not know; it cannot be used until unlocked".into())
        }
        Some(_) => Err("a user password Lapterop does not know is set on the drive".into()),
        None => Err("IDENTIFY DEVICE failed; the security state is unknown".into()),
    }
}

/// Runs ATA SECURITY ERASE UNIT (enhanced when `kind` says so): SET PASSWORD, ERASE PREPARE, ERASE
/// UNIT, and always ends with the drive unlocked and without a password.
pub fn run_ata_security_erase(drive: &mut dyn AtaDrive, kind: StepKind, caps: &Identify, capacity_bytes: u64) -> Step {
    let rec = Recorder {
        kind,
        capacity_bytes,
        started: lapterop_certificate::now_utc(),
    };
    let enhanced = kind == StepKind::AtaSecurityEraseEnhanced;
    let estimate = if enhanced {
        caps.enhanced_erase_minutes
    } else {
        caps.erase_minutes
    };
    let erase = ata::security_erase_unit(ata::erase_timeout_secs(estimate, capacity_bytes));
    let mut ev = evidence(&erase);
    // A drive left locked or with a password by an earlier interrupted run: clear it first.
    if caps.security.locked || caps.security.enabled {
        if let Err(why) = ensure_unlocked(drive) {
            ev.status = "not sent".into();
            return rec.failed(ev, Capability::Locked, why);
        }
    }
    if caps.security.frozen {
        return skipped(kind, Capability::Frozen, "security is frozen by the BIOS".into());
    }
    let result = (|| -> Result<(), String> {
        let o = send_password(drive, &ata::security_set_password(), false).map_err(|e| format!("SET PASSWORD: {e}"))?;
        if !matches!(o, AtaOutcome::Ok(_)) {
            return Err(format!("SET PASSWORD {}", describe(&o)));
        }
        let o = drive
            .run(&ata::security_erase_prepare(), &mut [])
            .map_err(|e| format!("ERASE PREPARE: {e}"))?;
        if !matches!(o, AtaOutcome::Ok(_)) {
            return Err(format!("ERASE PREPARE {}", describe(&o)));
        }
        let o = send_password(drive, &erase, enhanced).map_err(|e| format!("ERASE UNIT: {e}"))?;
        if !matches!(o, AtaOutcome::Ok(_)) {
            return Err(format!("ERASE UNIT {}", describe(&o)));
        }
        Ok(())
    })();
    // Whatever happened: no password, not locked.
    let unlocked = ensure_unlocked(drive);
    match (result, unlocked) {
        (Ok(()), Ok(())) => {
            ev.status = "ok".into();
            ev.final_state = Some("IDENTIFY after erase: security disabled, not locked".into());
            rec.completed(ev)
        }
        (Err(why), Ok(())) => {
            ev.status = why.clone();
            ev.final_state = Some("password removed again; drive not locked".into());
            rec.failed(ev, Capability::Supported, why)
        }
        (r, Err(left)) => {
            ev.status = r.err().unwrap_or_else(|| "ok".into());
            ev.final_state = Some(left.clone());
            rec.failed(ev, Capability::Supported, left)
        }
    }
}

/// What the before/after sample digests say about a firmware erase (NIST SP 800-88 Rev. 1 §4.7:
/// read pseudorandom locations before and after and compare). Unchanged content means the command
/// did not do what it claimed, whatever its status said.
pub fn content_changed(before: &str, after: &str) -> bool {
    before != after
}

#[cfg(test)]
#[path = "firmware_tests.rs"]
mod tests;
