//! The certificate and receipt types, field by field as `docs/certificate.md` describes them.
//!
//! Every struct denies unknown fields: a document with a field this version does not know is not a
//! `lapterop.certificate/v1` document. Optional fields are omitted when absent (never `null` in what we
//! write); the signature covers the document exactly as written, so adding a `null` breaks it.
//!
//! Integers are unsigned and at most 2^53 - 1, so that every JSON implementation reads them exactly
//! (RFC 8785 numbers are IEEE 754 doubles). There are no floating-point numbers anywhere.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The schema tag of this version.
pub const SCHEMA_V1: &str = "lapterop.certificate/v1";
/// The schema tag of a server receipt.
pub const RECEIPT_SCHEMA_V1: &str = "lapterop.receipt/v1";

/// One erasure certificate: one laptop session (host and all its disks), or a disk-only run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// Always `lapterop.certificate/v1` for this version.
    pub schema: String,
    /// Certificate id: a UUIDv7 in its hyphenated lower-case form.
    pub id: String,
    /// When the certificate was issued, RFC 3339 in UTC (`Z`).
    pub issued_at: String,
    /// The program that produced the result.
    pub agent: AgentInfo,
    /// The station (stick or site) whose key signs this certificate.
    pub station: StationInfo,
    /// The person who ran the job.
    pub operator: Person,
    /// A second person who checked the result (four-eyes), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<Person>,
    /// Donor reference, lot and asset tag, if the site records them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub donor: Option<DonorInfo>,
    /// The laptop itself; absent for a disk-only run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Host>,
    /// Every disk that was considered, with what was done and the outcome.
    pub disks: Vec<DiskRecord>,
    /// Disks the agent saw and left alone on purpose (the boot stick, USB and removable disks, internal
    /// disks not chosen for this run), with the reason; nothing was written to them. Their data is
    /// not covered by this certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_touched: Vec<UntouchedDisk>,
    /// The standard OS image installed after the wipe, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<InstallRecord>,
    /// The station's signature over the canonical bytes of everything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureBlock>,
}

/// The agent that ran the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentInfo {
    /// Agent version (semantic version).
    pub version: String,
    /// blake3 of the agent binary that ran, lower-case hex.
    pub binary_blake3: String,
    /// Build id of the live image the agent ran from; absent when run outside the live image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_image_build: Option<String>,
}

/// The signing station and the organisation it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StationInfo {
    /// Key id of the station key: first 16 bytes of blake3 of the public key, lower-case hex.
    pub key_id: String,
    /// Organisation that runs the workshop.
    pub organisation: String,
    /// Site (workshop location).
    pub site: String,
    /// Station name as enrolled on the server, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A person: operator or verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Name or volunteer code as typed at the station.
    pub name: String,
    /// Role or title, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Donor-side references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DonorInfo {
    /// The donor's own reference (contract, letter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Lot or batch the laptop came in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<String>,
    /// Asset tag stuck on the laptop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_tag: Option<String>,
}

/// The laptop: identity, audit summary and verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// SMBIOS system (type 1).
    pub system: SmbiosSystem,
    /// SMBIOS baseboard (type 2), if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<SmbiosBoard>,
    /// SMBIOS chassis (type 3), if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chassis: Option<SmbiosChassis>,
    /// Dotted names of identity fields that hold a placeholder ("To Be Filled By O.E.M.", all zeros, ...),
    /// e.g. `system.serial`.
    pub placeholder_fields: Vec<String>,
    /// Stable device identity derived from several keys (see docs/audit.md), lower-case hex.
    pub device_id: String,
    /// The audit in brief.
    pub audit: AuditSummary,
    /// The refurbishment verdict against the site's policy.
    pub verdict: Verdict,
    /// blake3 of the full audit JSON stored beside the certificate.
    pub audit_blake3: String,
}

/// SMBIOS type 1 fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmbiosSystem {
    /// Manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Product name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Serial number as the firmware reports it (placeholders included, and flagged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// System UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// SKU number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

/// SMBIOS type 2 fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmbiosBoard {
    /// Manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// SMBIOS type 3 fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmbiosChassis {
    /// Chassis type in words (`notebook`, `laptop`, `desktop`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Manufacturer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Asset tag as stored in the firmware.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_tag: Option<String>,
}

/// The audit in brief; the full audit is stored beside the certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSummary {
    /// CPU model string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// Physical cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<u32>,
    /// Hardware threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_threads: Option<u32>,
    /// Whether the CPU runs 64-bit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_64bit: Option<bool>,
    /// Installed memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Memory slots on the board.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_slots: Option<u32>,
    /// Memory slots holding a module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_slots_used: Option<u32>,
    /// Battery full-charge capacity as a percentage of design capacity; of the most worn battery when
    /// the laptop has two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_health_percent: Option<u32>,
    /// Charge cycles of that battery (absent when it does not count them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_cycles: Option<u32>,
    /// Internal screen, in words (size and native resolution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<String>,
    /// Graphics adapters by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
    /// Network interfaces in words (`wired e1000e`, `wireless iwlwifi`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<String>,
    /// What the audit could not read, in words (partial audit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
}

/// The refurbishment verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// Ready to hand out, needs parts, or only good for parts.
    pub status: VerdictStatus,
    /// Parts needed (`ram`, `battery`, `disk`, `charger`, ...); empty when ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// Reasons in words, one per failed policy rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// Verdict status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictStatus {
    /// Meets the site policy as it is.
    Ready,
    /// Can go out once the listed parts are replaced.
    NeedsParts,
    /// Not worth refurbishing; use for parts.
    PartsOnly,
}

/// One disk: identity, what was done, how it was checked, and the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskRecord {
    /// Kernel name at the time of the job (`nvme0n1`, `sda`).
    pub device: String,
    /// Model as the drive reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Serial number as the drive reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Firmware revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    /// World-wide name (WWN / EUI-64 / NGUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    /// How the disk is attached.
    pub transport: Transport,
    /// True for spinning media.
    pub rotational: bool,
    /// Capacity in bytes that was addressed by the job (native capacity when a hidden area was exposed).
    pub capacity_bytes: u64,
    /// Logical sector size in bytes.
    pub logical_sector_size: u32,
    /// Physical sector size in bytes.
    pub physical_sector_size: u32,
    /// Hidden areas (HPA, DCO): what was found and done.
    pub hidden_areas: HiddenAreas,
    /// The NIST SP 800-88 category actually reached.
    pub nist_category: NistCategory,
    /// Every step, in the order it ran.
    pub steps: Vec<Step>,
    /// How the result was read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// The outcome for this disk.
    pub outcome: DiskOutcome,
    /// An eMMC's boot areas (`mmcblk0boot0`, `mmcblk0boot1`): separate address spaces of the same
    /// chip, each overwritten and read back like a disk and recorded here with its own steps,
    /// verification and outcome. The disk is `erased` only when each of them is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot_areas: Vec<DiskRecord>,
    /// Bytes of an eMMC's replay-protected memory block (RPMB), left alone: it is reachable only with
    /// the device's authentication key, holds keys and counters rather than files, and no host
    /// command erases it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpmb_bytes: Option<u64>,
}

/// A disk that was seen and deliberately not written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UntouchedDisk {
    /// Kernel name at the time of the job.
    pub device: String,
    /// Model as the drive reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Serial number as the drive reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// How the disk is attached.
    pub transport: Transport,
    /// Capacity in bytes.
    pub capacity_bytes: u64,
    /// Why it was left alone.
    pub reason: UntouchedReason,
}

/// Why a disk was left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UntouchedReason {
    /// The Lapterop stick the laptop booted from.
    BootStick,
    /// A USB or removable disk: not part of the laptop.
    External,
    /// An internal disk that this run was not asked to wipe (`--only`).
    NotChosen,
}

/// Disk transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// SATA / ATA (AHCI, IDE).
    Sata,
    /// NVMe.
    Nvme,
    /// USB mass storage or UAS.
    Usb,
    /// eMMC / SD.
    Mmc,
    /// virtio-blk (virtual machines).
    Virtio,
    /// SCSI / SAS.
    Scsi,
    /// Linux loop device (tests, images).
    Loop,
    /// Anything else.
    Other,
}

/// Hidden areas on the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HiddenAreas {
    /// Whether hidden areas could be checked.
    pub check: HiddenAreaCheck,
    /// Host Protected Area, when one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hpa: Option<HiddenArea>,
    /// Device Configuration Overlay, when one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dco: Option<HiddenArea>,
}

/// Whether hidden areas were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HiddenAreaCheck {
    /// Checked with READ NATIVE MAX / DCO IDENTIFY.
    Checked,
    /// The transport has no hidden areas (NVMe, virtio, loop).
    NotApplicable,
    /// Could not be checked (for example a USB bridge without ATA pass-through).
    Unavailable,
}

/// One hidden area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HiddenArea {
    /// Sectors visible to the host before the job.
    pub visible_sectors: u64,
    /// Native sectors of the drive.
    pub native_sectors: u64,
    /// What was done.
    pub action: HiddenAreaAction,
}

/// What was done about a hidden area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HiddenAreaAction {
    /// Exposed (volatile SET MAX) for the wipe, then restored.
    ExposedAndRestored,
    /// Exposed (volatile SET MAX) for the wipe; putting the old size back failed, so the whole native
    /// capacity stays visible until the drive is next powered off.
    ExposedNotRestored,
    /// Removed permanently.
    Removed,
    /// Left in place: its content was not erased.
    LeftInPlace,
}

/// NIST SP 800-88 sanitization category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NistCategory {
    /// Nothing reached.
    None,
    /// Clear: every user-addressable location overwritten and verified.
    Clear,
    /// Purge: a firmware sanitize verifiably completed.
    Purge,
}

/// One step of the job on one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What kind of step.
    pub kind: StepKind,
    /// What the drive's probed capability for this step was.
    pub capability: Capability,
    /// How the step ended.
    pub outcome: StepOutcome,
    /// Why, in words (required unless the step completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Start, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// End, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Pass number and count, for overwrite passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<PassInfo>,
    /// Pattern written, for overwrite passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Pattern>,
    /// Bytes processed (written for overwrite; addressed for firmware commands).
    pub bytes: u64,
    /// Ranges that failed, exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_ranges: Vec<ErrorRange>,
    /// Evidence for firmware commands: the command and the drive's answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<FirmwareEvidence>,
}

/// Step kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Host overwrite through standard writes.
    Overwrite,
    /// NVMe Sanitize, crypto erase.
    NvmeSanitizeCrypto,
    /// NVMe Sanitize, block erase.
    NvmeSanitizeBlock,
    /// NVMe Sanitize, overwrite.
    NvmeSanitizeOverwrite,
    /// NVMe Format NVM, SES=2 (crypto erase).
    NvmeFormatCrypto,
    /// NVMe Format NVM, SES=1 (user data erase).
    NvmeFormatUser,
    /// ATA SANITIZE CRYPTO SCRAMBLE EXT.
    AtaSanitizeCrypto,
    /// ATA SANITIZE BLOCK ERASE EXT.
    AtaSanitizeBlock,
    /// ATA SANITIZE OVERWRITE EXT.
    AtaSanitizeOverwrite,
    /// ATA SECURITY ERASE UNIT, normal.
    AtaSecurityErase,
    /// ATA SECURITY ERASE UNIT, enhanced.
    AtaSecurityEraseEnhanced,
    /// Hidden area exposed (volatile SET MAX ADDRESS).
    HpaExpose,
    /// Hidden area restored after the wipe.
    HpaRestore,
    /// Suspend to RAM with an RTC wake alarm, to lift a BIOS freeze lock before a firmware purge.
    Unfreeze,
    /// DCO restored to factory settings.
    DcoRestore,
    /// eMMC SANITIZE (CMD6 SANITIZE_START, JESD84-B51 §6.6.24) after a discard of the whole user
    /// area: the device purges every unmapped block, including old copies.
    MmcSanitize,
    /// The whole device discarded (`BLKDISCARD`) after the verified overwrite, so an SSD is handed on
    /// with every block free; its evidence says what a sample read afterwards.
    Discard,
    /// eMMC secure erase / secure trim through the kernel (`BLKSECDISCARD`): eMMC 4.41's erase of the
    /// blocks and their old copies; a Clear-level step before the overwrite.
    MmcSecureErase,
    /// TCG PSID Revert of a locked self-encrypting drive (StartSession with the PSID authority, then
    /// Revert of the Admin SP): the drive is reset to its factory state, its locking ranges opened.
    /// It unlocks the drive for the wipe that follows and never counts as the erase itself.
    TcgPsidRevert,
}

impl StepKind {
    /// True for firmware commands that reach NIST Purge when they complete and are verified.
    pub fn is_purge(self) -> bool {
        matches!(
            self,
            Self::NvmeSanitizeCrypto
                | Self::NvmeSanitizeBlock
                | Self::NvmeSanitizeOverwrite
                | Self::NvmeFormatCrypto
                | Self::NvmeFormatUser
                | Self::AtaSanitizeCrypto
                | Self::AtaSanitizeBlock
                | Self::AtaSanitizeOverwrite
                | Self::AtaSecurityEraseEnhanced
                | Self::MmcSanitize
        )
    }
}

/// Probed capability for a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// The drive says it supports the command (or the step needs no drive support).
    Supported,
    /// The drive does not support it.
    NotSupported,
    /// ATA security is frozen.
    Frozen,
    /// The drive is locked by a password.
    Locked,
    /// The drive or the transport refused the command.
    Refused,
    /// Could not be determined.
    Unknown,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StepOutcome {
    /// Ran to the end without error.
    Completed,
    /// Ran and finished with errors (see `error_ranges` and `reason`).
    Failed,
    /// Not run (see `reason`).
    Skipped,
    /// Stopped before the end (signal, power, operator).
    Interrupted,
}

/// Pass number of an overwrite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PassInfo {
    /// 1-based pass number.
    pub number: u32,
    /// Total passes planned.
    pub of: u32,
}

/// Overwrite pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// Pattern kind.
    pub kind: PatternKind,
    /// Stream generator for `random` (see docs/certificate.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// blake3 of the secret seed, lower-case hex, for `random`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_commitment: Option<String>,
}

/// Pattern kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PatternKind {
    /// All zero bytes.
    Zero,
    /// Seeded pseudorandom stream, unique per offset.
    Random,
    /// Only in a sampled verification after a firmware purge with no overwrite (`[wipe] after_purge =
    /// "sampled"`): every sampled block must differ from the random marker written to it just before
    /// the purge. What the purge leaves there (zeros, ones or the ciphertext of a discarded key) is the
    /// drive's own choice, so no byte pattern is expected; a block that still holds the marker is a
    /// mismatch.
    ChangedFromMarker,
}

/// A range of logical blocks that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorRange {
    /// What failed on this range.
    pub op: RangeOp,
    /// First logical block.
    pub lba: u64,
    /// Number of logical blocks.
    pub count: u64,
    /// errno from the kernel (0 for a content mismatch).
    pub errno: u32,
}

/// The operation that failed on a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RangeOp {
    /// Write failed.
    Write,
    /// Read failed.
    Read,
    /// Read back, but not the expected content.
    Mismatch,
}

/// Evidence that a firmware command was issued and how the drive answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirmwareEvidence {
    /// The command as sent (opcode and fields, hex), e.g. `nvme admin opc=0x84 nsid=0 cdw10=0x0000000c cdw11=0x00000000`.
    pub command: String,
    /// Completion status as the drive reported it.
    pub status: String,
    /// How many times progress was polled.
    pub polls: u32,
    /// Final sanitize/progress status, if the drive reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_state: Option<String>,
}

/// How the disk was read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// Full or sampled.
    pub mode: VerifyMode,
    /// The pattern expected on the media.
    pub expected: Pattern,
    /// Sampling parameters (mode `sample`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<SamplePlan>,
    /// Bytes read back.
    pub bytes_read: u64,
    /// Logical blocks whose content was not as expected.
    pub mismatched_blocks: u64,
    /// Ranges that could not be read or did not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_ranges: Vec<ErrorRange>,
    /// blake3 of the bytes read back (docs/certificate.md defines the order).
    pub readback_blake3: String,
    /// blake3 over the same sample positions read before the wipe started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_wipe_sample_blake3: Option<String>,
    /// blake3 over sample positions read just before a firmware erase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_before_blake3: Option<String>,
    /// blake3 over the same positions read just after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_after_blake3: Option<String>,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// End, RFC 3339 UTC.
    pub finished_at: String,
}

/// Verification mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMode {
    /// Every byte read back and compared.
    Full,
    /// NIST SP 800-88 Rev. 1 §4.7 sampling.
    Sample,
}

/// Parameters of a sampled verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamplePlan {
    /// Equal sections the device is divided into.
    pub sections: u64,
    /// Pseudorandom non-overlapping samples per section (first and last LBA come on top).
    pub samples_per_section: u32,
    /// Bytes per sample.
    pub sample_bytes: u64,
    /// Seed of the position generator, lower-case hex (recorded so anyone can redo the plan).
    pub seed: String,
    /// Total bytes the plan reads.
    pub planned_bytes: u64,
}

/// Outcome for one disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskOutcome {
    /// Erased, erased with exceptions, or not erased.
    pub status: OutcomeStatus,
    /// Every exception, itemised (status `erased-with-exceptions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<Exception>,
    /// Why the disk was not erased (status `not-erased`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Disk outcome status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeStatus {
    /// Every addressable byte was sanitized and verified, with no error.
    Erased,
    /// Sanitized and verified except for the itemised exceptions.
    ErasedWithExceptions,
    /// Not erased: do not hand this disk out with its data.
    NotErased,
}

/// One exception to an erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// What kind of exception.
    pub kind: ExceptionKind,
    /// In words.
    pub detail: String,
    /// The range concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<ErrorRange>,
}

/// Kinds of exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ExceptionKind {
    /// A range could not be written.
    UnwritableRange,
    /// A range could not be read back.
    UnreadableRange,
    /// A range read back with other content.
    MismatchedRange,
    /// A hidden area was left in place.
    HiddenAreaLeft,
    /// Hidden areas could not be checked.
    HiddenAreaUnchecked,
    /// A firmware purge was attempted and failed; the overwrite still succeeded.
    FirmwarePurgeFailed,
    /// A hidden area was opened and erased, but closing it again failed (it stays open until the
    /// drive is next powered off).
    HiddenAreaNotRestored,
    /// An eMMC boot area was not erased (write-protected, or its overwrite or read-back failed); the
    /// user data area was.
    BootAreaNotErased,
}

/// The OS image install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallRecord {
    /// Installed or failed.
    pub status: InstallStatus,
    /// Image name; absent only for a failed install whose image could not be opened or checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// Image version; absent as `image_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_version: Option<String>,
    /// Manifest root hash, lower-case hex; absent as `image_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_hash: Option<String>,
    /// Key id of the image signer; absent as `image_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_key_id: Option<String>,
    /// Kernel name of the target disk.
    pub target_device: String,
    /// Serial of the target disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_serial: Option<String>,
    /// Bytes written to the target.
    pub bytes_written: u64,
    /// Data chunks read back and checked against their blake3.
    pub chunks_verified: u64,
    /// Chunks that did not match on read-back.
    pub chunk_mismatches: u64,
    /// Bytes discarded (TRIM) after the read-back: the space the image does not use, so an SSD is not
    /// handed on with every block mapped; absent when the disk does not discard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded_bytes: Option<u64>,
    /// Why it failed (status `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last partition grown to the end of the target and its filesystem grown to fill it (images
    /// packed resizable); absent when the image has no growing partition or the install failed before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grow: Option<GrowRecord>,
    /// The hostname written into `lapterop/machine.json` on the installed ESP; absent when none was
    /// written (no ESP in the image, or the install failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// End, RFC 3339 UTC.
    pub finished_at: String,
}

/// What became of the image's growing partition on this target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrowRecord {
    /// Partition number on the target, from 1.
    pub partition: u32,
    /// The filesystem: `ext4` or `ntfs`.
    pub filesystem: String,
    /// The partition's size on the target, bytes.
    pub partition_bytes: u64,
    /// The filesystem's size after the install, bytes, as its own superblock or boot sector says.
    pub filesystem_bytes: u64,
    /// True when the filesystem was grown to fill the partition and then found consistent by its own
    /// checker; false when the grow tool was not available (the filesystem keeps the image's size).
    pub grown: bool,
}

/// Install status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InstallStatus {
    /// Written and read back.
    Installed,
    /// Not installed; the partition table was wiped again.
    Failed,
}

/// A signature block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignatureBlock {
    /// Always `ed25519`.
    pub algorithm: String,
    /// Key id of the signing key.
    pub key_id: String,
    /// The 64-byte signature, lower-case hex.
    pub value: String,
}

/// The server's receipt for an accepted certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Always `lapterop.receipt/v1`.
    pub schema: String,
    /// The certificate's id.
    pub certificate_id: String,
    /// blake3 of the certificate's canonical bytes including its signature.
    pub certificate_blake3: String,
    /// When the server accepted it, RFC 3339 UTC.
    pub received_at: String,
    /// 1-based position in the server's append-only log.
    pub position: u64,
    /// Entry hash of the previous position (64 zeros for position 1).
    pub previous_hash: String,
    /// This entry's hash (docs/certificate.md: the log).
    pub entry_hash: String,
    /// The donor page for this certificate.
    pub donor_url: String,
    /// The server's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureBlock>,
}
