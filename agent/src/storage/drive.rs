//! Real drives behind the firmware traits, and what we read from them besides the purge itself:
//! health (NVMe SMART / Health log, ATA SMART attributes) and hidden areas (HPA via READ NATIVE MAX
//! ADDRESS EXT or GET NATIVE MAX ADDRESS EXT, DCO via DEVICE CONFIGURATION IDENTIFY), with the
//! volatile SET MAX that exposes an HPA for the wipe.
//!
//! NVMe admin commands go to the controller's character device (`/dev/nvme0`), found through sysfs
//! from the namespace (`/sys/class/block/nvme0n1/device` → `nvme0`), never guessed from the name.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use lapterop_certificate::{HiddenArea, HiddenAreaAction, HiddenAreaCheck, HiddenAreas};

use crate::command::ata::{self, AtaCommand, Identify, SmartAttribute};
use crate::command::nvme::{self, Health, PassthruCmd, Status};
use crate::command::{sys, AtaOutcome};
use crate::firmware::{AtaDrive, NvmeDrive};

/// An ATA (or SAT) drive reached through SG_IO on its block device.
#[derive(Debug)]
pub struct SgDrive(File);

impl SgDrive {
    /// Opens `/dev/sdX` for pass-through (read-write, non-blocking, not exclusive: commands only).
    pub fn open(dev: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(dev)?;
        Ok(Self(file))
    }
}

impl AtaDrive for SgDrive {
    fn run(&mut self, cmd: &AtaCommand, data: &mut [u8]) -> io::Result<AtaOutcome> {
        sys::ata_passthrough(self.0.as_fd(), cmd, data)
    }
}

/// An NVMe controller reached through its character device.
#[derive(Debug)]
pub struct NvmeController(File);

impl NvmeController {
    /// Opens the controller of namespace block device `block` (e.g. `nvme0n1`), resolved through
    /// `sysfs` (`SYSFS/class/block/BLOCK/device`). Returns the controller path too.
    pub fn open_for(sysfs: &Path, dev_dir: &Path, block: &str) -> io::Result<(Self, PathBuf)> {
        let link = std::fs::read_link(sysfs.join("class/block").join(block).join("device"))?;
        let name = link
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.starts_with("nvme"))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{block} has no NVMe controller in sysfs"),
                )
            })?;
        let path = dev_dir.join(name);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        Ok((Self(file), path))
    }
}

impl NvmeDrive for NvmeController {
    fn admin(&mut self, cmd: PassthruCmd, data: &mut [u8]) -> io::Result<(Status, u32)> {
        sys::nvme_admin(self.0.as_fd(), cmd, data)
    }
}

/// The other namespaces of the NVMe controller behind block device `name`: the entries of `sys_block`
/// (`/sys/block`) whose `device` link leads to the same controller, sorted.
pub fn other_namespaces(sys_block: &Path, name: &str) -> Vec<String> {
    let controller = |n: &str| std::fs::canonicalize(sys_block.join(n).join("device")).ok();
    let Some(mine) = controller(name) else {
        return Vec::new();
    };
    let mut out: Vec<String> = std::fs::read_dir(sys_block)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != name && n.starts_with("nvme") && controller(n).as_ref() == Some(&mine))
        .collect();
    out.sort();
    out
}

/// The namespace id of `nvme0n1` style names (`n1` → 1).
pub fn nsid_of(block: &str) -> Option<u32> {
    let rest = block.strip_prefix("nvme")?;
    let n = rest.find('n')?;
    let id = &rest[n + 1..];
    let id = id.split('p').next()?;
    id.parse().ok()
}

/// NVMe SMART / Health log of a controller.
pub fn nvme_health(drive: &mut dyn NvmeDrive) -> Result<Health, String> {
    let mut d = [0u8; 512];
    match drive.admin(nvme::smart_log(), &mut d) {
        Ok((s, _)) if s.ok() => Ok(nvme::parse_health(&d)),
        Ok((s, _)) => Err(format!("SMART / Health log: {}", s.describe())),
        Err(e) => Err(format!("SMART / Health log: {e}")),
    }
}

/// ATA SMART attributes with thresholds (thresholds are optional: many drives still answer).
pub fn ata_smart(drive: &mut dyn AtaDrive) -> Result<Vec<SmartAttribute>, String> {
    let mut data = [0u8; 512];
    match drive.run(&ata::smart_read_data(), &mut data) {
        Ok(AtaOutcome::Ok(_)) => {}
        Ok(other) => return Err(format!("SMART READ DATA: {other:?}")),
        Err(e) => return Err(format!("SMART READ DATA: {e}")),
    }
    let mut thresholds = [0u8; 512];
    let t = matches!(
        drive.run(&ata::smart_read_thresholds(), &mut thresholds),
        Ok(AtaOutcome::Ok(_))
    );
    ata::parse_smart(&data, t.then_some(&thresholds)).ok_or_else(|| "SMART data has a bad checksum".to_owned())
}

/// TCG Level 0 Discovery through NVMe Security Receive; `None` when the drive has no TCG subsystem or
/// does not answer.
pub fn tcg_nvme(drive: &mut dyn NvmeDrive) -> Option<crate::command::tcg::Discovery> {
    let mut d = vec![0u8; crate::command::tcg::DISCOVERY_LEN as usize];
    match drive.admin(nvme::tcg_level0_discovery(), &mut d) {
        Ok((s, _)) if s.ok() => crate::command::tcg::parse_discovery(&d).ok(),
        _ => None,
    }
}

/// TCG Level 0 Discovery through ATA TRUSTED RECEIVE; `None` as for [`tcg_nvme`].
pub fn tcg_ata(drive: &mut dyn AtaDrive) -> Option<crate::command::tcg::Discovery> {
    let mut d = vec![0u8; crate::command::tcg::DISCOVERY_LEN as usize];
    match drive.run(&ata::tcg_level0_discovery(), &mut d) {
        Ok(AtaOutcome::Ok(_)) => crate::command::tcg::parse_discovery(&d).ok(),
        _ => None,
    }
}

/// The plan note for a self-encrypting drive that is locked, with what to do.
fn sed_note(name: &str, tcg: Option<&crate::command::tcg::Discovery>) -> Option<String> {
    let why = tcg?.blocker()?;
    Some(format!(
        "{name}: {why}. Reset it with the PSID printed on its label: where the site allows it \
         ([wipe] opal_psid_revert = true, or wipe --psid {name}=PSID) Lapterop asks for the PSID and does it; \
         otherwise `sedutil-cli --PSIDrevert PSID /dev/{name}` (which erases it), then run Lapterop again"
    ))
}

/// A locked self-encrypting drive the site allows to revert: its [`crate::opal::LockedSed`], whose
/// revert opens the drive's firmware path again when it runs (after the plan was confirmed).
fn locked_sed(
    name: &str,
    tcg: Option<&crate::command::tcg::Discovery>,
    policy: &crate::firmware::Policy,
    capacity: u64,
) -> Option<crate::opal::LockedSed> {
    use crate::opal::{psid_revert, AtaTcg, NvmeTcg, Patience};
    if !policy.psid_revert {
        return None;
    }
    let tcg = tcg?;
    let comid = crate::opal::revertible(tcg)?;
    let why = tcg.blocker()?;
    let name = name.to_owned();
    Some(crate::opal::LockedSed::new(
        why,
        Box::new(move |psid| {
            let mut wait = crate::firmware::Sleep;
            match open_any(&name) {
                Ok(Some(AnyDrive::Nvme(mut c, _))) => psid_revert(
                    &mut NvmeTcg(&mut c),
                    comid,
                    psid,
                    capacity,
                    Patience::default(),
                    &mut wait,
                ),
                Ok(Some(AnyDrive::Ata(mut d))) => psid_revert(
                    &mut AtaTcg(&mut d),
                    comid,
                    psid,
                    capacity,
                    Patience::default(),
                    &mut wait,
                ),
                other => crate::firmware::skipped(
                    lapterop_certificate::StepKind::TcgPsidRevert,
                    lapterop_certificate::Capability::Locked,
                    format!(
                        "PSID Revert: the drive's firmware path could not be opened again ({}); nothing was changed on \
                         the disk",
                        match other {
                            Err(e) => e.to_string(),
                            _ => "no NVMe or ATA path".into(),
                        }
                    ),
                ),
            }
        }),
    ))
}

/// Hidden areas found on an ATA drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenProbe {
    /// Sectors the host sees (IDENTIFY).
    pub visible_sectors: u64,
    /// Native sectors (READ/GET NATIVE MAX + 1), if the drive answered.
    pub native_sectors: Option<u64>,
    /// Sectors the DCO allows at most (DCO IDENTIFY words 3-6 + 1), if the drive answered.
    pub dco_sectors: Option<u64>,
    /// What went wrong while asking, in words.
    pub notes: Vec<String>,
}

impl HiddenProbe {
    /// An HPA is present.
    pub fn hpa(&self) -> bool {
        self.native_sectors.is_some_and(|n| n > self.visible_sectors)
    }

    /// A DCO hides sectors beyond the native maximum.
    pub fn dco(&self) -> bool {
        match (self.dco_sectors, self.native_sectors) {
            (Some(d), Some(n)) => d > n,
            _ => false,
        }
    }

    /// The certificate's record, given what was done about each area.
    pub fn record(&self, hpa_action: HiddenAreaAction, dco_action: HiddenAreaAction) -> HiddenAreas {
        let checked = self.native_sectors.is_some();
        HiddenAreas {
            check: if checked {
                HiddenAreaCheck::Checked
            } else {
                HiddenAreaCheck::Unavailable
            },
            hpa: self.hpa().then(|| HiddenArea {
                visible_sectors: self.visible_sectors,
                native_sectors: self.native_sectors.unwrap_or(self.visible_sectors),
                action: hpa_action,
            }),
            dco: self.dco().then(|| HiddenArea {
                visible_sectors: self.native_sectors.unwrap_or(self.visible_sectors),
                native_sectors: self.dco_sectors.unwrap_or(self.visible_sectors),
                action: dco_action,
            }),
        }
    }
}

/// Reads the native maximum (GET NATIVE MAX with AMAC, else READ NATIVE MAX EXT) and DCO IDENTIFY.
pub fn probe_hidden(drive: &mut dyn AtaDrive, id: &Identify) -> HiddenProbe {
    let mut notes = Vec::new();
    let cmd = if id.amac_supported {
        ata::get_native_max_ext()
    } else {
        ata::read_native_max_ext()
    };
    let native_sectors = match drive.run(&cmd, &mut []) {
        Ok(AtaOutcome::Ok(Some(r))) => Some(r.lba + 1),
        Ok(other) => {
            notes.push(format!("{}: {other:?}", cmd.name));
            None
        }
        Err(e) => {
            notes.push(format!("{}: {e}", cmd.name));
            None
        }
    };
    let dco_sectors = if id.dco_supported {
        let mut d = [0u8; 512];
        match drive.run(&ata::dco_identify(), &mut d) {
            Ok(AtaOutcome::Ok(_)) => {
                // DCO IDENTIFY data: words 3-6 hold the maximum LBA (ACS-2 table 33).
                let max = (0..4).fold(0u64, |acc, i| {
                    acc | u64::from(u16::from_le_bytes([d[6 + 2 * i], d[7 + 2 * i]])) << (16 * i)
                });
                (max > 0).then_some(max + 1)
            }
            Ok(other) => {
                notes.push(format!("DCO IDENTIFY: {other:?}"));
                None
            }
            Err(e) => {
                notes.push(format!("DCO IDENTIFY: {e}"));
                None
            }
        }
    } else {
        None
    };
    HiddenProbe {
        visible_sectors: id.user_sectors,
        native_sectors,
        dco_sectors,
        notes,
    }
}

/// Sets the accessible maximum to `sectors` until the next power cycle (volatile SET MAX ADDRESS EXT,
/// preceded by READ NATIVE MAX ADDRESS EXT as ACS requires). With AMAC drives the setting is always
/// non-volatile, so this refuses them: the caller records the HPA as left in place.
pub fn set_max_volatile(drive: &mut dyn AtaDrive, id: &Identify, sectors: u64) -> Result<(), String> {
    if id.amac_supported {
        return Err("the drive uses Accessible Max Address (ACS-3): changing it is permanent; left as is".into());
    }
    if sectors == 0 {
        return Err("refusing to set the maximum address to zero sectors".into());
    }
    match drive.run(&ata::read_native_max_ext(), &mut []) {
        Ok(AtaOutcome::Ok(_)) => {}
        other => return Err(format!("READ NATIVE MAX ADDRESS EXT: {other:?}")),
    }
    match drive.run(&ata::set_max_address_ext(sectors - 1, true), &mut []) {
        Ok(AtaOutcome::Ok(_)) => Ok(()),
        other => Err(format!("SET MAX ADDRESS EXT: {other:?}")),
    }
}

/// Opens whatever firmware path a block device has: NVMe controller, SG_IO for `sd*`, MMC_IOC_CMD
/// for an eMMC.
pub enum AnyDrive {
    /// An NVMe namespace's controller and the namespace id.
    Nvme(NvmeController, u32),
    /// A SCSI/ATA disk.
    Ata(SgDrive),
    /// An eMMC (never an SD card: CMD8 means something else to those).
    Mmc(crate::emmc::MmcCard),
}

impl std::fmt::Debug for AnyDrive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nvme(_, ns) => write!(f, "Nvme(nsid {ns})"),
            Self::Ata(_) => write!(f, "Ata"),
            Self::Mmc(_) => write!(f, "Mmc"),
        }
    }
}

/// Opens the firmware path of block device `name` (`nvme0n1`, `sda`); `None` for devices with none
/// (virtio, loop, mmc).
pub fn open_any(name: &str) -> io::Result<Option<AnyDrive>> {
    if let Some(ns) = nsid_of(name) {
        let (c, _) = NvmeController::open_for(Path::new("/sys"), Path::new("/dev"), name)?;
        return Ok(Some(AnyDrive::Nvme(c, ns)));
    }
    if name.starts_with("sd") {
        return Ok(Some(AnyDrive::Ata(SgDrive::open(&Path::new("/dev").join(name))?)));
    }
    if crate::emmc::is_emmc(Path::new("/sys/block"), name) {
        return Ok(Some(AnyDrive::Mmc(crate::emmc::MmcCard::open(
            &Path::new("/dev").join(name),
        )?)));
    }
    Ok(None)
}

/// Everything the firmware layer can learn about one drive, as JSON (for `disks --json`, `probe`).
pub fn probe_json(name: &str, rotational: bool, policy: &crate::firmware::Policy) -> serde_json::Value {
    use crate::firmware::{plan, probe_ata, probe_nvme, Caps, Method};
    use serde_json::json;
    let drive = match open_any(name) {
        Ok(Some(d)) => d,
        Ok(None) => return json!({"device": name, "firmware": "none: this kind of device takes no firmware commands"}),
        Err(e) => return json!({"device": name, "error": format!("opening the firmware path: {e}")}),
    };
    let (caps, extra) = match drive {
        AnyDrive::Mmc(mut m) => (crate::emmc::probe(&mut m), json!({"hidden_areas": "not-applicable"})),
        AnyDrive::Nvme(mut c, ns) => {
            let caps = probe_nvme(&mut c, ns);
            let health = match nvme_health(&mut c) {
                Ok(h) => json!({
                    "critical_warning": h.critical_warning, "temperature_kelvin": h.temperature_kelvin,
                    "available_spare": h.available_spare, "percentage_used": h.percentage_used,
                    "power_on_hours": h.power_on_hours, "power_cycles": h.power_cycles,
                    "unsafe_shutdowns": h.unsafe_shutdowns, "media_errors": h.media_errors,
                }),
                Err(e) => json!({"error": e}),
            };
            let tcg = tcg_json(tcg_nvme(&mut c).as_ref());
            (
                caps,
                json!({"health": health, "hidden_areas": "not-applicable", "tcg": tcg}),
            )
        }
        AnyDrive::Ata(mut d) => {
            let caps = probe_ata(&mut d);
            let smart = match ata_smart(&mut d) {
                Ok(attrs) => json!(attrs
                    .iter()
                    .map(|a| json!({"id": a.id, "value": a.value, "worst": a.worst, "raw": a.raw, "threshold": a.threshold}))
                    .collect::<Vec<_>>()),
                Err(e) => json!({"error": e}),
            };
            let hidden = match &caps {
                Caps::Ata(id) => {
                    let p = probe_hidden(&mut d, id);
                    json!({"visible_sectors": p.visible_sectors, "native_sectors": p.native_sectors,
                           "dco_sectors": p.dco_sectors, "hpa": p.hpa(), "dco": p.dco(), "notes": p.notes,
                           "passthrough_read": passthrough_read_check(name, &mut d, id)})
                }
                _ => json!("unavailable"),
            };
            let tcg = tcg_json(tcg_ata(&mut d).as_ref());
            (caps, json!({"smart": smart, "hidden_areas": hidden, "tcg": tcg}))
        }
    };
    let capabilities = match &caps {
        Caps::Nvme {
            controller: c,
            namespace: n,
            nsid,
            ..
        } => json!({
            "transport": "nvme", "model": c.model, "serial": c.serial, "firmware": c.firmware, "nsid": nsid,
            "format": c.format_supported, "format_crypto": c.format_crypto,
            "sanitize_crypto": c.sanitize_crypto, "sanitize_block": c.sanitize_block, "sanitize_overwrite": c.sanitize_overwrite,
            "block_size": n.block_size(), "size_blocks": n.size_blocks,
        }),
        Caps::Ata(id) => json!({
            "transport": "ata", "model": id.model, "serial": id.serial, "firmware": id.firmware,
            "user_sectors": id.user_sectors, "sanitize": id.sanitize, "sanitize_crypto": id.sanitize_crypto,
            "sanitize_block": id.sanitize_block, "sanitize_overwrite": id.sanitize_overwrite,
            "security": {"supported": id.security.supported, "enabled": id.security.enabled, "locked": id.security.locked,
                         "frozen": id.security.frozen, "enhanced_erase": id.security.enhanced_erase},
            "hpa_supported": id.hpa_supported, "dco_supported": id.dco_supported, "rotation_rate": id.rotation_rate,
        }),
        Caps::Mmc(e) => json!({
            "transport": "mmc", "ext_csd_rev": e.revision, "sanitize": e.sanitize, "secure_erase": e.secure_erase,
            "trim": e.trim, "sectors": e.sectors, "boot_area_bytes": e.boot_area_bytes, "rpmb_bytes": e.rpmb_bytes,
            "boot_wp_status": e.boot_wp_status, "erased_reads_ones": e.erased_reads_ones,
        }),
        Caps::Unavailable(why) => json!({"unavailable": why}),
    };
    let chosen = match plan(Method::Auto, &caps, rotational, policy) {
        Ok(p) => json!({
            "chosen": p.chosen.map(|k| format!("{k:?}")),
            "considered": p.candidates.iter().map(|c| json!({"kind": format!("{:?}", c.kind), "capability": format!("{:?}", c.capability), "reason": c.reason})).collect::<Vec<_>>(),
        }),
        Err(e) => json!({"error": e.to_string()}),
    };
    json!({"device": name, "capabilities": capabilities, "details": extra, "plan": chosen})
}

fn tcg_json(t: Option<&crate::command::tcg::Discovery>) -> serde_json::Value {
    match t {
        None => serde_json::json!("none"),
        Some(t) => serde_json::json!({
            "ssc": t.ssc.map(crate::command::tcg::Ssc::name), "locking_supported": t.locking_supported,
            "locking_enabled": t.locking_enabled, "locked": t.locked, "media_encryption": t.media_encryption,
            "shadow_mbr_shown": t.shadow_mbr_shown, "blocker": t.blocker(),
        }),
    }
}

/// Capacity of block device `name` from sysfs (`size` is in 512-byte units whatever the sector size).
pub fn capacity_bytes(name: &str) -> io::Result<u64> {
    let text = std::fs::read_to_string(Path::new("/sys/class/block").join(name).join("size"))?;
    text.trim()
        .parse::<u64>()
        .map(|s| s * 512)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// True when `name` or one of its partitions is mounted or used as swap.
pub fn in_use(name: &str) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    let dev = format!("/dev/{name}");
    mounts
        .lines()
        .chain(swaps.lines())
        .any(|l| l.split_whitespace().any(|w| w.starts_with(&dev)))
}

/// What the firmware layer prepared for one disk: the primitives not chosen (recorded as skipped with
/// their capability), the purge to run before the overwrite, and the hidden areas it found.
#[derive(Default)]
pub struct FirmwarePrelude {
    /// Skipped primitives, with capability and reason.
    pub skipped: Vec<lapterop_certificate::Step>,
    /// The purge chosen by the plan; runs after the "before" samples are read. Returns every attempt
    /// in order: the last is the one that counts, earlier ones failed and were followed by the next
    /// method the drive supports.
    pub purge: Option<Box<dyn FnOnce() -> Vec<lapterop_certificate::Step> + Send>>,
    /// Hidden areas as probed (ATA); `None` where the transport decides.
    pub hidden: Option<lapterop_certificate::HiddenAreas>,
    /// The purge `purge` runs, for the plan shown before anything is written.
    pub chosen: Option<lapterop_certificate::StepKind>,
    /// A hidden area (ATA HPA) to open for the wipe and close afterwards; `hidden` lists it.
    pub tail: Option<Box<dyn crate::hpa::HiddenTail>>,
    /// What planning did or found that a person should read (a password cleared, no firmware path).
    pub notes: Vec<String>,
    /// A locked self-encrypting drive the site allows to reset with its PSID; the revert runs first in
    /// the wipe when a PSID was given ([`crate::opal::LockedSed::give_psid`]).
    pub sed: Option<crate::opal::LockedSed>,
}

impl std::fmt::Debug for FirmwarePrelude {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirmwarePrelude")
            .field("skipped", &self.skipped.len())
            .field("purge", &self.purge.is_some())
            .field("hidden", &self.hidden)
            .field("chosen", &self.chosen)
            .field("tail", &self.tail.is_some())
            .field("notes", &self.notes)
            .field("sed", &self.sed)
            .finish()
    }
}

/// Why a disk's firmware part could not be prepared for the method asked for. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum PreludeError {
    /// A firmware method was named but the disk has no firmware command path (a USB bridge, a VM).
    #[error("{name} takes no firmware commands; use --method auto or overwrite")]
    NoFirmwarePath {
        /// The kernel name.
        name: String,
    },
    /// The pass-through device would not open.
    #[error("opening the firmware path of {name}: {source}")]
    Open {
        /// The kernel name.
        name: String,
        /// What the kernel said.
        source: io::Error,
    },
    /// The drive lacks the named method (or the site forbids it).
    #[error(transparent)]
    Plan(#[from] crate::firmware::PlanError),
}

/// Probes a disk about to be wiped and prepares its firmware part: the purge `method` chooses (run
/// later, between the before and after samples), the primitives not chosen, and its hidden areas.
/// A forced method the drive cannot run is an error; `auto` on a drive without firmware commands is
/// simply no purge.
pub fn prelude_for(
    name: &str,
    rotational: bool,
    capacity: u64,
    method: crate::firmware::Method,
    policy: &crate::firmware::Policy,
) -> Result<FirmwarePrelude, PreludeError> {
    use crate::firmware::{
        plan, probe_ata, probe_nvme, run_ata_sanitize, run_ata_security_erase, run_nvme_chain, Caps, Method, Sleep,
    };
    use lapterop_certificate::StepKind;
    let mut prelude = FirmwarePrelude::default();
    if method == Method::Overwrite {
        return Ok(prelude);
    }
    let drive = match open_any(name) {
        Ok(Some(d)) => d,
        Ok(None) if method == Method::Auto => return Ok(prelude),
        Ok(None) => return Err(PreludeError::NoFirmwarePath { name: name.to_owned() }),
        Err(e) if method == Method::Auto => {
            prelude
                .notes
                .push(format!("firmware commands unavailable ({e}); overwrite only"));
            return Ok(prelude);
        }
        Err(source) => {
            return Err(PreludeError::Open {
                name: name.to_owned(),
                source,
            })
        }
    };
    let policy = policy.clone();
    match drive {
        AnyDrive::Mmc(mut m) => {
            let caps = crate::emmc::probe(&mut m);
            let p = plan(method, &caps, rotational, &policy)?;
            prelude.skipped = p.skipped_steps();
            prelude.chosen = p.chosen;
            if let Some(kind) = p.chosen {
                prelude.purge = Some(Box::new(move || {
                    vec![crate::emmc::run_purge(&mut m, kind, capacity, &policy)]
                }));
            }
        }
        AnyDrive::Nvme(mut c, ns) => {
            let tcg = tcg_nvme(&mut c);
            prelude.sed = locked_sed(name, tcg.as_ref(), &policy, capacity);
            if prelude.sed.is_none() {
                prelude.notes.extend(sed_note(name, tcg.as_ref()));
            }
            let caps = probe_nvme(&mut c, ns).sharing_controller_with(other_namespaces(Path::new("/sys/block"), name));
            let p = plan(method, &caps, rotational, &policy)?;
            prelude.skipped = p.skipped_steps();
            prelude.chosen = p.chosen;
            if p.chosen.is_some() {
                let fall_back = method == Method::Auto;
                prelude.purge = Some(Box::new(move || {
                    run_nvme_chain(&mut c, &p, fall_back, &caps, capacity, &policy, &mut Sleep, &mut |_| {})
                }));
            }
        }
        AnyDrive::Ata(mut d) => {
            let probed = probe_ata(&mut d);
            let mut policy = policy;
            if is_usb(name) {
                let confirmed = match &probed {
                    Caps::Ata(id) => usb_passthrough_confirmed(name, capacity, &mut d, id),
                    Caps::Unavailable(why) => Err(why.clone()),
                    _ => Err("not an ATA drive".into()),
                };
                if let Err(why) = confirmed {
                    if method != Method::Auto {
                        return Err(PreludeError::NoFirmwarePath { name: name.to_owned() });
                    }
                    prelude.notes.push(format!(
                        "USB bridge: its ATA pass-through is not confirmed ({why}); no firmware command is sent, \
                         overwrite only"
                    ));
                    return Ok(prelude);
                }
                policy.behind_usb_bridge = true;
            }
            let tcg = tcg_ata(&mut d);
            prelude.sed = locked_sed(name, tcg.as_ref(), &policy, capacity);
            if prelude.sed.is_none() {
                prelude.notes.extend(sed_note(name, tcg.as_ref()));
            }
            let (caps, cleared) = crate::firmware::clear_our_password(&mut d, probed);
            prelude.notes.extend(cleared);
            let p = plan(method, &caps, rotational, &policy)?;
            prelude.skipped = p.skipped_steps();
            prelude.chosen = p.chosen;
            if let Caps::Ata(id) = &caps {
                let h = probe_hidden(&mut d, id);
                let left = lapterop_certificate::HiddenAreaAction::LeftInPlace;
                prelude.hidden = Some(h.record(left, left));
                if h.hpa() {
                    let tail =
                        if policy.expose_hpa {
                            open_hpa(name, id, &h, capacity)
                        } else {
                            Err("the site leaves hidden areas in place ([wipe] hidden_areas = \"leave\", or --keep-hpa)"
                            .into())
                        };
                    match tail {
                        Ok(t) => prelude.tail = Some(Box::new(t)),
                        Err(why) => prelude.skipped.push(hpa_not_opened(why, policy.expose_hpa)),
                    }
                }
            }
            if let Some(kind) = p.chosen {
                prelude.purge = Some(Box::new(move || {
                    vec![match (&caps, kind) {
                        (Caps::Ata(id), StepKind::AtaSecurityErase | StepKind::AtaSecurityEraseEnhanced) => {
                            run_ata_security_erase(&mut d, kind, id, capacity)
                        }
                        _ => run_ata_sanitize(&mut d, kind, capacity, &policy, &mut Sleep, &mut |_| {}),
                    }]
                }));
            }
        }
    }
    Ok(prelude)
}

/// Prepares the HPA of ATA disk `name` for the wipe: its own pass-through handle, the block device's
/// copy of the last visible sectors for the path check, and the transfer size its queue allows.
fn open_hpa(
    name: &str,
    id: &Identify,
    probe: &HiddenProbe,
    capacity: u64,
) -> Result<crate::hpa::AtaTail<SgDrive>, String> {
    let native = probe.native_sectors.ok_or("the native size is unknown")?;
    if capacity != id.user_sectors * 512 {
        return Err(format!(
            "the kernel sees {capacity} bytes but the drive reports {} visible sectors of 512 bytes",
            id.user_sectors
        ));
    }
    let dev = Path::new("/dev").join(name);
    let last = last_visible_sectors(name, capacity)?;
    let kib = std::fs::read_to_string(format!("/sys/class/block/{name}/queue/max_hw_sectors_kb"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(128);
    let chunk = u16::try_from((kib * 2).min(2048)).unwrap_or(256);
    let drive = SgDrive::open(&dev).map_err(|e| format!("opening {name} for pass-through: {e}"))?;
    crate::hpa::AtaTail::prepare(drive, id.clone(), native, &last, chunk)
}

/// The last [`crate::hpa::CHECK_SECTORS`] sectors of 512 bytes the kernel shows of `name` (`capacity`
/// bytes), through the block device: what a pass-through READ DMA EXT of the same sectors must return.
fn last_visible_sectors(name: &str, capacity: u64) -> Result<Vec<u8>, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut last = vec![0u8; usize::from(crate::hpa::CHECK_SECTORS) * 512];
    File::open(Path::new("/dev").join(name))
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(capacity.saturating_sub(last.len() as u64)))?;
            f.read_exact(&mut last)
        })
        .map_err(|e| format!("reading the last visible sectors of {name}: {e}"))?;
    Ok(last)
}

/// Whether READ DMA EXT through pass-through returns what the block device returns for the last
/// visible sectors (the check made before an HPA is opened), in words for `probe`.
fn passthrough_read_check(name: &str, drive: &mut dyn AtaDrive, id: &Identify) -> serde_json::Value {
    let visible = id.user_sectors;
    if id.logical_sector_size != 512 {
        return serde_json::json!({"matches_block_device": null, "error": "not checked: not 512-byte sectors"});
    }
    match passthrough_reads_match(name, drive, id) {
        Ok(()) => serde_json::json!({
            "sectors": [visible - u64::from(crate::hpa::CHECK_SECTORS), visible - 1],
            "matches_block_device": true,
        }),
        Err(e) => serde_json::json!({"matches_block_device": false, "error": e}),
    }
}

/// Whether ATA commands through this path reach the drive the block device shows: the last visible
/// sectors read with READ DMA EXT through pass-through equal the block device's.
fn passthrough_reads_match(name: &str, drive: &mut dyn AtaDrive, id: &Identify) -> Result<(), String> {
    if id.logical_sector_size != 512 {
        return Err("not checked: the drive does not have 512-byte sectors".into());
    }
    let visible = id.user_sectors;
    last_visible_sectors(name, visible * 512).and_then(|want| crate::hpa::check_path(drive, visible, &want))
}

/// Whether `/sys/block/<name>` hangs below a USB device.
fn is_usb(name: &str) -> bool {
    std::fs::canonicalize(Path::new("/sys/block").join(name)).is_ok_and(|p| p.to_string_lossy().contains("/usb"))
}

/// A USB bridge is trusted with ATA commands only when it really passes them to the drive (SAT): the
/// drive's IDENTIFY (checksum already checked) gives the block device's size, and sectors read through
/// pass-through are the block device's.
fn usb_passthrough_confirmed(name: &str, capacity: u64, drive: &mut dyn AtaDrive, id: &Identify) -> Result<(), String> {
    let identified = id
        .user_sectors
        .saturating_mul(u64::from(id.logical_sector_size.max(512)));
    if identified != capacity {
        return Err(format!(
            "IDENTIFY through the bridge says {identified} bytes, the block device has {capacity}"
        ));
    }
    passthrough_reads_match(name, drive, id)
}

/// The certificate's step for an HPA that stays closed, with why.
fn hpa_not_opened(reason: String, wanted: bool) -> lapterop_certificate::Step {
    use lapterop_certificate::{Capability, StepKind};
    let capability = if wanted {
        Capability::Refused
    } else {
        Capability::Supported
    };
    crate::firmware::skipped(StepKind::HpaExpose, capability, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ata::Returned;

    /// A drive with 1000 visible sectors, 1200 native, and a DCO allowing 1500.
    struct Hpa {
        amac: bool,
        max: u64,
        sent: Vec<&'static str>,
    }

    impl AtaDrive for Hpa {
        fn run(&mut self, cmd: &AtaCommand, data: &mut [u8]) -> io::Result<AtaOutcome> {
            self.sent.push(cmd.name);
            let ok = |lba| {
                Ok(AtaOutcome::Ok(Some(Returned {
                    status: 0x50,
                    lba,
                    ..Default::default()
                })))
            };
            match (cmd.cdb[14], cmd.cdb[4]) {
                (0x27, _) | (0x78, 0) => ok(1199),
                (0xb1, 0xc2) => {
                    data[6..8].copy_from_slice(&1499u16.to_le_bytes());
                    ok(0)
                }
                (0x37, _) => {
                    let lba = u64::from(cmd.cdb[8]) | u64::from(cmd.cdb[10]) << 8;
                    self.max = lba + 1;
                    ok(lba)
                }
                _ => Ok(AtaOutcome::Aborted(Returned {
                    error: 4,
                    status: 0x51,
                    ..Default::default()
                })),
            }
        }
    }

    fn identify(amac: bool) -> Identify {
        let mut d = [0u8; 512];
        let mut put = |n: usize, v: u16| d[2 * n..2 * n + 2].copy_from_slice(&v.to_le_bytes());
        put(83, 1 << 10 | 1 << 11);
        put(86, 1 << 10);
        put(100, 1000);
        put(119, u16::from(amac) << 8);
        ata::parse_identify(&d)
    }

    #[test]
    fn hpa_and_dco_are_found_and_recorded() {
        let mut d = Hpa {
            amac: false,
            max: 1000,
            sent: Vec::new(),
        };
        let p = probe_hidden(&mut d, &identify(false));
        assert_eq!(
            (p.visible_sectors, p.native_sectors, p.dco_sectors),
            (1000, Some(1200), Some(1500))
        );
        assert!(p.hpa() && p.dco());
        let r = p.record(HiddenAreaAction::ExposedAndRestored, HiddenAreaAction::LeftInPlace);
        assert_eq!(r.check, HiddenAreaCheck::Checked);
        assert_eq!(r.hpa.unwrap().native_sectors, 1200);
        assert_eq!(r.dco.unwrap().action, HiddenAreaAction::LeftInPlace);
        assert!(!d.amac);
    }

    #[test]
    fn set_max_is_volatile_and_preceded_by_read_native_max() {
        let mut d = Hpa {
            amac: false,
            max: 1000,
            sent: Vec::new(),
        };
        set_max_volatile(&mut d, &identify(false), 1200).unwrap();
        assert_eq!(d.max, 1200);
        assert_eq!(d.sent, ["READ NATIVE MAX ADDRESS EXT", "SET MAX ADDRESS EXT"]);
        assert!(set_max_volatile(&mut d, &identify(true), 1200)
            .unwrap_err()
            .contains("permanent"));
    }

    #[test]
    fn a_drive_that_refuses_native_max_is_unchecked() {
        struct Refuses;
        impl AtaDrive for Refuses {
            fn run(&mut self, _: &AtaCommand, _: &mut [u8]) -> io::Result<AtaOutcome> {
                Ok(AtaOutcome::NoPassthrough("USB bridge".into()))
            }
        }
        let p = probe_hidden(&mut Refuses, &identify(false));
        assert_eq!(p.native_sectors, None);
        assert_eq!(
            p.record(HiddenAreaAction::LeftInPlace, HiddenAreaAction::LeftInPlace)
                .check,
            HiddenAreaCheck::Unavailable
        );
        assert_eq!(p.notes.len(), 2);
    }

    #[test]
    fn other_namespaces_are_the_siblings_behind_the_same_controller() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for (ctrl, ns) in [("nvme0", "nvme0n1"), ("nvme0", "nvme0n2"), ("nvme1", "nvme1n1")] {
            let ctrl_dir = root.join("devices").join(ctrl);
            std::fs::create_dir_all(&ctrl_dir).unwrap();
            std::fs::create_dir_all(root.join("block").join(ns)).unwrap();
            std::os::unix::fs::symlink(&ctrl_dir, root.join("block").join(ns).join("device")).unwrap();
        }
        std::fs::create_dir_all(root.join("block/sda")).unwrap();
        let block = root.join("block");
        assert_eq!(other_namespaces(&block, "nvme0n1"), ["nvme0n2"]);
        assert_eq!(other_namespaces(&block, "nvme0n2"), ["nvme0n1"]);
        assert!(other_namespaces(&block, "nvme1n1").is_empty());
        assert!(other_namespaces(&block, "sda").is_empty());
    }

    #[test]
    fn namespace_ids_come_from_the_name() {
        assert_eq!(nsid_of("nvme0n1"), Some(1));
        assert_eq!(nsid_of("nvme12n3"), Some(3));
        assert_eq!(nsid_of("nvme0n1p2"), Some(1));
        assert_eq!(nsid_of("sda"), None);
    }
}
