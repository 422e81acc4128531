//! The hardware audit and the refurbishment verdict.
//!
//! Everything is read natively from a root directory (`/` on the laptop, a recorded tree in tests):
//! SMBIOS from `sys/firmware/dmi/tables` ([`smbios`]), CPU and memory size from `proc` ([`cpu`]),
//! batteries and chargers from `sys/class/power_supply` ([`battery`]), screens from the EDID of
//! `sys/class/drm` connectors ([`edid`]), network interfaces ([`net`]), PCI and USB devices with names
//! from databases compiled in, and those no driver took ([`pci`]). Disks come from the disk layer as
//! [`DiskSummary`] values. No external tool runs, nothing waits on hardware, and a file that is missing
//! or garbage becomes a named [`Gap`] in a partial report, never a failure.
//!
//! The result is the full [`Audit`] (stored as JSON beside the certificate), the stable device identity
//! ([`identity`]), and the verdict against the site's [`Policy`]; [`host_section`] maps it to the
//! certificate's `Host`. `docs/audit.md` is the user-facing description.

pub mod battery;
pub mod cpu;
pub mod disks;
pub mod edid;
pub mod identity;
pub mod net;
pub mod pci;
pub mod policy;
pub mod smbios;
mod tree;

use std::fmt;
use std::path::Path;

use lapterop_certificate::hardware::UndrivenDevice;
use lapterop_certificate::model::{AuditSummary, Host, SmbiosBoard, SmbiosChassis, SmbiosSystem, Verdict};
use serde::{Deserialize, Serialize};

pub use disks::{AtaHealth, DiskSummary, NvmeHealth};
pub use policy::Policy;

use battery::{Battery, Charger};
use cpu::Cpu;
use edid::Screen;
use identity::{Identity, Keys};
use net::NetInterface;
use pci::{Features, PciDevice, UsbDevice};
use smbios::{Firmware, MemoryModule, Processor};
use tree::Tree;

/// Schema tag of the full audit document (shared with the server, which reads its `undriven` list).
pub use lapterop_certificate::hardware::AUDIT_SCHEMA;

/// Something the audit could not read, named so a person can check it by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gap {
    /// What part of the audit (`smbios`, `cpu`, `battery BAT0`, `screen card0-eDP-1`).
    pub area: String,
    /// What went wrong, in words.
    pub detail: String,
}

impl Gap {
    /// A gap in `area`.
    pub fn new(area: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            area: area.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.area, self.detail)
    }
}

/// Memory: slots and modules from SMBIOS, usable size from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// Memory slots on the board (type 17 structures of system-memory arrays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    /// Slots holding a module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots_used: Option<u32>,
    /// Sum of the installed module sizes, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_bytes: Option<u64>,
    /// Memory the kernel can use (`MemTotal`), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usable_bytes: Option<u64>,
    /// Maximum the board takes (type 16), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Every slot, populated or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<MemoryModule>,
}

/// The full audit of one laptop: what is stored beside the certificate (its blake3 is in the `Host`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// Always [`AUDIT_SCHEMA`].
    pub schema: String,
    /// SMBIOS version from the entry point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smbios_version: Option<String>,
    /// BIOS / UEFI firmware (type 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<Firmware>,
    /// System (type 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SmbiosSystem>,
    /// Baseboard (type 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub board: Option<SmbiosBoard>,
    /// Chassis (type 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chassis: Option<SmbiosChassis>,
    /// Populated processor sockets (type 4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processors: Vec<Processor>,
    /// The CPU as the kernel sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Memory.
    pub memory: Memory,
    /// Disks from the disk layer; absent when none were given (not examined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<DiskSummary>>,
    /// System batteries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batteries: Vec<Battery>,
    /// AC adapters and USB power sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chargers: Vec<Charger>,
    /// DRM connectors the graphics driver exposes (empty: no driver, screen not checkable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub display_connectors: Vec<String>,
    /// Connected displays with a readable EDID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub screens: Vec<Screen>,
    /// Network interfaces backed by hardware.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<NetInterface>,
    /// PCI functions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pci: Vec<PciDevice>,
    /// USB devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usb: Vec<UsbDevice>,
    /// PCI functions and USB interfaces no driver took when the audit ran (on the stick: drivers the
    /// stick lacks, or hardware nothing drives); the server gathers them over all laptops.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undriven: Vec<UndrivenDevice>,
    /// Graphics, webcam, audio, Bluetooth.
    pub features: Features,
    /// Identity fields that hold a placeholder or nothing (`system.serial`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placeholder_fields: Vec<String>,
    /// The stable device identity and the keys it came from.
    pub identity: Identity,
    /// The policy the verdict was made against.
    pub policy: Policy,
    /// The verdict.
    pub verdict: Verdict,
    /// What could not be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
}

/// Audits the machine whose `sys` and `proc` are under `root`. `disks` is the disk layer's list
/// (`None`: not examined, which the verdict reports as needing inspection).
pub fn run(root: &Path, disks: Option<Vec<DiskSummary>>, policy: &Policy) -> Audit {
    let tree = Tree::new(root);
    let mut gaps = Vec::new();
    let sm = smbios::read(&tree, &mut gaps);
    let cpu = cpu::read_cpu(&tree, &mut gaps);
    let usable = cpu::read_mem_total(&tree, &mut gaps);
    let (batteries, chargers) = battery::read(&tree, &mut gaps);
    let (display_connectors, screens) = edid::read(&tree, &mut gaps);
    let network = net::read(&tree);
    let pci = pci::read_pci(&tree);
    let usb = pci::read_usb(&tree);
    let undriven = pci::undriven(&tree, &pci);
    let features = pci::features(&tree, &pci, &usb);

    let modules = sm.memory;
    let slots = match u32::try_from(modules.len()).unwrap_or(u32::MAX) {
        0 => sm.memory_slots_declared.filter(|n| *n > 0),
        n => {
            if let Some(declared) = sm.memory_slots_declared.filter(|d| *d != n) {
                gaps.push(Gap::new(
                    "smbios",
                    format!("memory arrays declare {declared} slots but {n} memory devices are listed; {n} is used"),
                ));
            }
            Some(n)
        }
    };
    let installed: Vec<_> = modules.iter().filter(|m| m.installed).collect();
    let memory = Memory {
        slots,
        slots_used: (!modules.is_empty()).then(|| u32::try_from(installed.len()).unwrap_or(u32::MAX)),
        installed_bytes: installed
            .iter()
            .map(|m| m.size_bytes)
            .sum::<Option<u64>>()
            .filter(|b| *b > 0),
        usable_bytes: usable,
        max_bytes: sm.memory_max_bytes.filter(|b| *b > 0),
        modules,
    };

    let placeholder_fields = placeholders(sm.system.as_ref(), sm.board.as_ref(), sm.chassis.as_ref());
    let onboard_mac = network
        .iter()
        .find(|n| n.kind == "wired" && n.onboard())
        .and_then(|n| n.mac.as_deref());
    let identity = identity::device_id(&Keys {
        system_serial: sm.system.as_ref().and_then(|s| s.serial.as_deref()),
        system_uuid: sm.system.as_ref().and_then(|s| s.uuid.as_deref()),
        board_serial: sm.board.as_ref().and_then(|b| b.serial.as_deref()),
        onboard_mac,
        disk_serials: disks
            .iter()
            .flatten()
            .filter(|d| d.internal())
            .filter_map(|d| d.serial.as_deref())
            .collect(),
    });
    if identity.keys.is_empty() {
        gaps.push(Gap::new(
            "identity",
            "no serial, UUID, onboard MAC or disk serial is usable: the device id is not unique",
        ));
    }

    let mut audit = Audit {
        schema: AUDIT_SCHEMA.to_string(),
        smbios_version: sm.version,
        firmware: sm.firmware,
        system: sm.system,
        board: sm.board,
        chassis: sm.chassis,
        processors: sm.processors,
        cpu,
        memory,
        disks,
        batteries,
        chargers,
        display_connectors,
        screens,
        network,
        pci,
        usb,
        undriven,
        features,
        placeholder_fields,
        identity,
        policy: policy.clone(),
        verdict: Verdict {
            status: lapterop_certificate::model::VerdictStatus::Ready,
            needs: vec![],
            reasons: vec![],
        },
        gaps,
    };
    audit.verdict = policy::verdict(&audit, policy);
    audit
}

/// Identity fields checked for placeholders, by dotted name.
fn placeholders(
    system: Option<&SmbiosSystem>,
    board: Option<&SmbiosBoard>,
    chassis: Option<&SmbiosChassis>,
) -> Vec<String> {
    let mut fields: Vec<(&str, Option<&str>)> = Vec::new();
    if let Some(s) = system {
        fields.extend([
            ("system.vendor", s.vendor.as_deref()),
            ("system.product", s.product.as_deref()),
            ("system.serial", s.serial.as_deref()),
            ("system.uuid", s.uuid.as_deref()),
        ]);
    }
    if let Some(b) = board {
        fields.push(("board.serial", b.serial.as_deref()));
    }
    if let Some(c) = chassis {
        fields.push(("chassis.serial", c.serial.as_deref()));
    }
    fields
        .into_iter()
        .filter(|(_, v)| identity::is_placeholder(*v))
        .map(|(n, _)| n.to_string())
        .collect()
}

/// The full audit as stored beside the certificate: pretty JSON with a final newline. Its blake3 is
/// the certificate's `audit_blake3`.
pub fn to_json(audit: &Audit) -> Vec<u8> {
    // Serializing plain structs of strings and integers to a Vec cannot fail.
    let mut bytes = serde_json::to_vec_pretty(audit).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The certificate's `Host` section for `audit`, whose stored JSON bytes are `audit_json`.
pub fn host_section(audit: &Audit, audit_json: &[u8]) -> Host {
    Host {
        system: audit.system.clone().unwrap_or_default(),
        board: audit.board.clone(),
        chassis: audit.chassis.clone(),
        placeholder_fields: audit.placeholder_fields.clone(),
        device_id: audit.identity.device_id.clone(),
        audit: summary(audit),
        verdict: audit.verdict.clone(),
        audit_blake3: blake3::hash(audit_json).to_hex().to_string(),
    }
}

/// The audit in brief, for the certificate.
pub fn summary(audit: &Audit) -> AuditSummary {
    let cpu = audit.cpu.as_ref();
    let proc0 = audit.processors.first();
    // With two batteries (ThinkPad Power Bridge) the one with the least capacity left is the one a part
    // swap is about; the verdict names each.
    let battery = audit
        .batteries
        .iter()
        .filter(|b| b.present)
        .min_by_key(|b| b.health_percent.unwrap_or(u32::MAX));
    let screen = audit.screens.iter().find(|s| s.internal);
    AuditSummary {
        cpu_model: cpu
            .and_then(|c| c.model.clone())
            .or_else(|| proc0.and_then(|p| p.version.clone())),
        cpu_cores: cpu.map(|c| c.cores).or_else(|| proc0.and_then(|p| p.cores)),
        cpu_threads: cpu.map(|c| c.threads).or_else(|| proc0.and_then(|p| p.threads)),
        cpu_64bit: cpu.and_then(|c| c.is_64bit),
        memory_bytes: audit.memory.installed_bytes.or(audit.memory.usable_bytes),
        memory_slots: audit.memory.slots,
        memory_slots_used: audit.memory.slots_used,
        battery_health_percent: battery.and_then(|b| b.health_percent),
        battery_cycles: battery.and_then(|b| b.cycle_count),
        screen: screen.map(Screen::describe),
        gpus: audit.features.gpus.clone(),
        network: audit
            .network
            .iter()
            .map(|n| match &n.driver {
                Some(d) => format!("{} {d}", n.kind),
                None => n.kind.clone(),
            })
            .collect(),
        gaps: audit.gaps.iter().map(ToString::to_string).collect(),
    }
}

/// The human summary printed without `--json`.
pub fn render(audit: &Audit) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let sys = audit.system.clone().unwrap_or_default();
    let name = [sys.vendor.as_deref(), sys.product.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let kind = audit
        .chassis
        .as_ref()
        .and_then(|c| c.kind.clone())
        .unwrap_or_else(|| "unknown".into());
    line(format!(
        "Machine:  {} ({kind}), serial {}",
        if name.is_empty() { "unknown" } else { &name },
        sys.serial.as_deref().unwrap_or("none")
    ));
    if let Some(c) = &audit.cpu {
        let bits = match c.is_64bit {
            Some(true) => "64-bit",
            Some(false) => "32-bit",
            None => "word size unknown",
        };
        let virt = c.virtualization.as_deref().unwrap_or("no virtualisation");
        line(format!(
            "CPU:      {}, {} cores, {} threads, {bits}, {virt}",
            c.model.as_deref().unwrap_or("unknown model"),
            c.cores,
            c.threads
        ));
    }
    let m = &audit.memory;
    let size = m
        .installed_bytes
        .or(m.usable_bytes)
        .map_or("unknown".to_string(), |b| format!("{} MiB", b >> 20));
    let slots = match (m.slots_used, m.slots) {
        (Some(u), Some(s)) => format!(", {u} of {s} slots used"),
        _ => String::new(),
    };
    line(format!("Memory:   {size}{slots}"));
    match &audit.disks {
        None => line("Disks:    not examined".to_string()),
        Some(disks) => {
            for d in disks {
                let media = if d.rotational { "HDD" } else { "SSD" };
                line(format!(
                    "Disk:     {} {} {media} {:?} {}",
                    d.name,
                    lapterop_words::size(d.size_bytes),
                    d.transport,
                    d.model.as_deref().unwrap_or("")
                ));
            }
        }
    }
    for b in &audit.batteries {
        if !b.present {
            line(format!("Battery:  {} bay empty", b.name));
            continue;
        }
        let health = b
            .health_percent
            .map_or("health unknown".to_string(), |h| format!("{h}% health"));
        let cycles = b.cycle_count.map_or(String::new(), |c| format!(", {c} cycles"));
        // Tenths of a Wh, rounded down: integer arithmetic like the rest of the audit.
        let design = b.design_uwh().map_or(String::new(), |uwh| {
            format!(", design {}.{} Wh", uwh / 1_000_000, uwh / 100_000 % 10)
        });
        let model = [b.manufacturer.as_deref(), b.model.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let model = if model.is_empty() {
            String::new()
        } else {
            format!(" ({model})")
        };
        line(format!("Battery:  {} {health}{cycles}{design}{model}", b.name));
    }
    for c in &audit.chargers {
        let state = match c.online {
            Some(true) => "power in",
            Some(false) => "no power",
            None => "state unknown",
        };
        let kind = if c.kind == "USB" {
            "USB-C/USB power"
        } else {
            "AC adapter"
        };
        line(format!("Charger:  {} {kind}, {state}", c.name));
    }
    for s in &audit.screens {
        line(format!(
            "Screen:   {} {}",
            s.describe(),
            if s.internal { "(built-in)" } else { "(external)" }
        ));
    }
    for n in &audit.network {
        line(format!(
            "Network:  {} {} {} {}",
            n.name,
            n.kind,
            n.driver.as_deref().unwrap_or("-"),
            n.mac.as_deref().unwrap_or("-")
        ));
    }
    for d in &audit.undriven {
        let ids = format!("{}:{}", d.vendor_id, d.device_id);
        let name = [d.vendor.as_deref(), d.name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let class = d.class_name.as_deref().unwrap_or(&d.class);
        let name = if name.is_empty() {
            String::new()
        } else {
            format!(" {name}")
        };
        line(format!("No driver: {} {ids}{name} ({class})", d.address));
    }
    for g in &audit.features.gpus {
        line(format!("Graphics: {g}"));
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    let f = &audit.features;
    line(format!(
        "Webcam {}, audio {}, Bluetooth {}",
        yes(f.webcam),
        yes(f.audio),
        yes(f.bluetooth)
    ));
    if !audit.placeholder_fields.is_empty() {
        line(format!("Placeholders: {}", audit.placeholder_fields.join(", ")));
    }
    line(format!(
        "Device id: {} (from {})",
        audit.identity.device_id,
        audit.identity.keys.join(", ")
    ));
    let v = &audit.verdict;
    let status = serde_json::to_value(v.status)
        .ok()
        .and_then(|s| s.as_str().map(str::to_uppercase))
        .unwrap_or_default();
    if v.needs.is_empty() {
        line(format!("Verdict:  {status}"));
    } else {
        line(format!("Verdict:  {status}: {}", v.needs.join(", ")));
    }
    for r in &v.reasons {
        line(format!("  - {r}"));
    }
    if !audit.gaps.is_empty() {
        line("Not read:".to_string());
        for g in &audit.gaps {
            line(format!("  - {g}"));
        }
    }
    out
}

/// The internal disks of this machine for the audit, from the disk layer, with health read from
/// their firmware (NVMe SMART / Health log, ATA SMART attributes). Loop devices and removable media
/// (the stick, card readers) are left out.
pub fn live_disk_summaries() -> Vec<DiskSummary> {
    use crate::drive::{ata_smart, nvme_health, open_any, AnyDrive};
    use lapterop_certificate::Transport;
    let disks = crate::disk::Discovery::system().scan().unwrap_or_default();
    disks
        .into_iter()
        .filter(|d| d.transport != Transport::Loop && !d.removable)
        .map(|d| {
            let (mut nvme, mut ata) = (None, None);
            match open_any(&d.name) {
                Ok(Some(AnyDrive::Nvme(mut c, _))) => {
                    nvme = nvme_health(&mut c).ok().map(|h| NvmeHealth {
                        critical_warning: h.critical_warning,
                        percentage_used: u32::from(h.percentage_used),
                        media_errors: h.media_errors.min(lapterop_certificate::validate::MAX_SAFE_INTEGER),
                        power_on_hours: h.power_on_hours.min(lapterop_certificate::validate::MAX_SAFE_INTEGER),
                    });
                }
                Ok(Some(AnyDrive::Ata(mut a))) => {
                    ata = ata_smart(&mut a).ok().map(|attrs| {
                        let raw = |id: u8| attrs.iter().find(|x| x.id == id).map(|x| x.raw);
                        // Wear: the normalised value of the vendor's life attribute counts down from 100.
                        let wear = [177u8, 231, 233, 202]
                            .iter()
                            .find_map(|id| attrs.iter().find(|x| x.id == *id))
                            .map(|x| 100u32.saturating_sub(u32::from(x.value.min(100))));
                        AtaHealth {
                            reallocated_sectors: raw(5),
                            power_on_hours: raw(9).map(|h| h & 0xffff_ffff),
                            reported_uncorrectable: raw(187),
                            command_timeout: raw(188),
                            pending_sectors: raw(197),
                            offline_uncorrectable: raw(198),
                            crc_errors: raw(199),
                            wear_percent_used: wear,
                        }
                    });
                }
                _ => {}
            }
            DiskSummary {
                name: d.name,
                model: d.model,
                serial: d.serial,
                size_bytes: d.capacity_bytes,
                rotational: d.rotational,
                transport: d.transport,
                nvme,
                ata,
            }
        })
        .collect()
}
