//! The site's refurbishment policy and the verdict (docs/audit.md, "Policy" and "Verdict").
//!
//! Rules that a part swap can fix add that part to `needs` (`ram`, `disk`, `battery`, `charger`,
//! `screen`). Rules no part can fix (a 32-bit CPU, too few CPU threads, a screen smaller than the
//! minimum, too little soldered memory), or more parts than `max_parts`, make it `parts-only`. A fact the
//! policy needs but the audit could not read adds `inspection`: the laptop is never called `ready` on
//! a guess.

use lapterop_certificate::model::{Verdict, VerdictStatus};
use serde::{Deserialize, Serialize};

use super::{battery, edid, Audit};

/// Part name for "a person must check this by hand".
pub const INSPECTION: &str = "inspection";

/// The refurbishment policy: the `[refurbishment]` table of the site config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Minimum installed memory, MiB.
    pub min_ram_mib: u64,
    /// The CPU must run 64-bit code.
    pub require_64bit: bool,
    /// Minimum hardware threads.
    pub min_cpu_threads: u32,
    /// At least one internal SSD (not a spinning disk).
    pub require_ssd: bool,
    /// Minimum size of that disk, GB (10^9 bytes).
    pub min_disk_gb: u64,
    /// Maximum wear: NVMe Percentage Used or the ATA wear attribute, percent.
    pub max_disk_percent_used: u32,
    /// Maximum NVMe media errors and ATA reported uncorrectable errors (187).
    pub max_media_errors: u64,
    /// Maximum ATA reallocated sectors (5).
    pub max_reallocated_sectors: u64,
    /// Maximum ATA pending (197) plus offline uncorrectable (198) sectors.
    pub max_pending_sectors: u64,
    /// A portable machine must have a battery.
    pub require_battery: bool,
    /// Minimum battery health (full-charge / design capacity), percent.
    pub min_battery_health_percent: u32,
    /// A portable machine must get power from its charger.
    pub require_charger: bool,
    /// A portable machine must have a working built-in screen.
    pub require_screen: bool,
    /// Minimum built-in screen diagonal, whole inches.
    pub min_screen_inches: u32,
    /// More parts than this and the laptop is for parts only.
    pub max_parts: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_ram_mib: 4096,
            require_64bit: true,
            min_cpu_threads: 2,
            require_ssd: true,
            min_disk_gb: 120,
            max_disk_percent_used: 90,
            max_media_errors: 0,
            max_reallocated_sectors: 10,
            max_pending_sectors: 0,
            require_battery: true,
            min_battery_health_percent: 60,
            require_charger: true,
            require_screen: true,
            min_screen_inches: 11,
            max_parts: 2,
        }
    }
}

/// Collects the verdict.
#[derive(Default)]
struct Findings {
    needs: Vec<String>,
    reasons: Vec<String>,
    parts_only: bool,
}

impl Findings {
    fn need(&mut self, part: &str, reason: String) {
        if !self.needs.iter().any(|n| n == part) {
            self.needs.push(part.to_string());
        }
        self.reasons.push(reason);
    }

    fn fatal(&mut self, reason: String) {
        self.parts_only = true;
        self.reasons.push(reason);
    }
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

/// Applies `policy` to the facts in `audit`.
pub fn verdict(audit: &Audit, policy: &Policy) -> Verdict {
    let mut f = Findings::default();
    cpu_rules(audit, policy, &mut f);
    ram_rules(audit, policy, &mut f);
    disk_rules(audit, policy, &mut f);
    let portable = audit
        .chassis
        .as_ref()
        .and_then(|c| c.kind.as_deref())
        .is_none_or(super::smbios::is_portable);
    if portable {
        battery_rules(audit, policy, &mut f);
        screen_rules(audit, policy, &mut f);
    }
    let parts = f.needs.iter().filter(|n| *n != INSPECTION).count();
    if u32::try_from(parts).unwrap_or(u32::MAX) > policy.max_parts {
        let list: Vec<&str> = f
            .needs
            .iter()
            .filter(|n| *n != INSPECTION)
            .map(String::as_str)
            .collect();
        f.fatal(format!(
            "parts needed: {} ({parts}); the site allows at most {}",
            list.join(", "),
            policy.max_parts
        ));
    }
    let status = if f.parts_only {
        VerdictStatus::PartsOnly
    } else if f.needs.is_empty() {
        VerdictStatus::Ready
    } else {
        VerdictStatus::NeedsParts
    };
    Verdict {
        status,
        needs: f.needs,
        reasons: f.reasons,
    }
}

fn cpu_rules(audit: &Audit, policy: &Policy, f: &mut Findings) {
    let Some(cpu) = &audit.cpu else {
        f.need(INSPECTION, "not checked: CPU (proc/cpuinfo unreadable)".to_string());
        return;
    };
    match cpu.is_64bit {
        Some(false) if policy.require_64bit => f.fatal("the CPU cannot run 64-bit code".to_string()),
        None if policy.require_64bit => f.need(INSPECTION, "not checked: whether the CPU runs 64-bit code".to_string()),
        _ => {}
    }
    if cpu.threads < policy.min_cpu_threads {
        f.fatal(format!(
            "the CPU has {} hardware threads, the site minimum is {}",
            cpu.threads, policy.min_cpu_threads
        ));
    }
}

fn ram_rules(audit: &Audit, policy: &Policy, f: &mut Findings) {
    let m = &audit.memory;
    let min = policy.min_ram_mib;
    let (have, enough) = match (m.installed_bytes, m.usable_bytes) {
        (Some(installed), _) => (installed, mib(installed) >= min),
        // No module list: MemTotal is below installed memory by firmware and graphics reservations, so
        // accept it within one eighth of the minimum.
        (None, Some(usable)) => (usable, mib(usable) + min / 8 >= min),
        (None, None) => {
            f.need(
                INSPECTION,
                "not checked: installed memory (no SMBIOS modules, no proc/meminfo)".to_string(),
            );
            return;
        }
    };
    if enough {
        return;
    }
    let modules: Vec<_> = m.modules.iter().filter(|s| s.installed).collect();
    let free = match (m.slots, m.slots_used) {
        (Some(slots), Some(used)) => slots.saturating_sub(used),
        _ => 0,
    };
    let slots = match (m.slots, m.slots_used) {
        (Some(slots), Some(used)) => format!(" ({used} of {slots} slots used)"),
        _ => String::new(),
    };
    if !modules.is_empty() && modules.iter().all(|s| s.soldered()) && free == 0 {
        f.fatal(format!(
            "{} MiB of soldered memory and no free slot; the site minimum is {min} MiB",
            mib(have)
        ));
    } else {
        f.need(
            "ram",
            format!("{} MiB of memory{slots}; the site minimum is {min} MiB", mib(have)),
        );
    }
}

fn disk_rules(audit: &Audit, policy: &Policy, f: &mut Findings) {
    let Some(disks) = &audit.disks else {
        f.need(
            INSPECTION,
            "not checked: disks (the disk layer gave no list)".to_string(),
        );
        return;
    };
    let internal: Vec<_> = disks.iter().filter(|d| d.internal()).collect();
    if internal.is_empty() {
        f.need("disk", "no internal disk found".to_string());
        return;
    }
    let mut good = false;
    let mut unfit = Vec::new();
    for d in &internal {
        let mut health = Vec::new();
        if let Some(n) = &d.nvme {
            if n.critical_warning != 0 {
                health.push(format!("NVMe critical warning {:#04x}", n.critical_warning));
            }
            if n.percentage_used > policy.max_disk_percent_used {
                health.push(format!(
                    "{}% of rated life used (max {}%)",
                    n.percentage_used, policy.max_disk_percent_used
                ));
            }
            if n.media_errors > policy.max_media_errors {
                health.push(format!(
                    "{} media errors (max {})",
                    n.media_errors, policy.max_media_errors
                ));
            }
        }
        if let Some(a) = &d.ata {
            let over = |v: Option<u64>, max: u64| v.filter(|v| *v > max);
            if let Some(v) = over(a.reallocated_sectors, policy.max_reallocated_sectors) {
                health.push(format!(
                    "{v} reallocated sectors (max {})",
                    policy.max_reallocated_sectors
                ));
            }
            let pending = a.pending_sectors.unwrap_or(0) + a.offline_uncorrectable.unwrap_or(0);
            if pending > policy.max_pending_sectors {
                health.push(format!(
                    "{pending} pending or uncorrectable sectors (max {})",
                    policy.max_pending_sectors
                ));
            }
            if let Some(v) = over(a.reported_uncorrectable, policy.max_media_errors) {
                health.push(format!(
                    "{v} reported uncorrectable errors (max {})",
                    policy.max_media_errors
                ));
            }
            if let Some(w) = a.wear_percent_used.filter(|w| *w > policy.max_disk_percent_used) {
                health.push(format!(
                    "{w}% of rated life used (max {}%)",
                    policy.max_disk_percent_used
                ));
            }
        }
        if !health.is_empty() {
            f.need(
                "disk",
                format!("disk {} is worn or failing: {}", d.name, health.join(", ")),
            );
            continue;
        }
        if d.nvme.is_none() && d.ata.is_none() && d.health_expected() {
            f.need(
                INSPECTION,
                format!("not checked: health of disk {} (no SMART data)", d.name),
            );
        }
        if policy.require_ssd && d.rotational {
            unfit.push(format!("{} is a hard disk", d.name));
        } else if d.size_bytes < policy.min_disk_gb * 1_000_000_000 {
            unfit.push(format!("{} holds {}", d.name, lapterop_words::size(d.size_bytes)));
        } else {
            good = true;
        }
    }
    if !good && !unfit.is_empty() {
        let what = if policy.require_ssd { "an SSD" } else { "a disk" };
        f.need(
            "disk",
            format!(
                "{}; the site requires {what} of at least {} GB",
                unfit.join(", "),
                policy.min_disk_gb
            ),
        );
    }
}

fn battery_rules(audit: &Audit, policy: &Policy, f: &mut Findings) {
    let batteries: Vec<_> = audit.batteries.iter().filter(|b| b.present).collect();
    if policy.require_battery {
        if batteries.is_empty() {
            f.need("battery", "no battery found".to_string());
        }
        for b in &batteries {
            match b.health_percent {
                Some(h) if h < policy.min_battery_health_percent => f.need(
                    "battery",
                    format!(
                        "battery {} holds {h}% of its design capacity (minimum {}%)",
                        b.name, policy.min_battery_health_percent
                    ),
                ),
                None => f.need(INSPECTION, format!("not checked: health of battery {}", b.name)),
                _ => {}
            }
        }
    }
    if policy.require_charger {
        let mains: Vec<_> = audit.chargers.iter().filter(|c| c.kind == "Mains").collect();
        // Power may come in by USB-C while the AC adapter device says 0; a charging battery shows it too.
        if !mains.is_empty()
            && mains.iter().all(|c| c.online == Some(false))
            && !battery::power_in(&audit.batteries, &audit.chargers)
        {
            f.need(
                "charger",
                "the AC adapter reports no power: connect the charger, or replace it if it is connected".to_string(),
            );
        }
    }
}

fn screen_rules(audit: &Audit, policy: &Policy, f: &mut Findings) {
    if !policy.require_screen {
        return;
    }
    let internal: Vec<_> = audit.screens.iter().filter(|s| s.internal).collect();
    if internal.is_empty() {
        let panels: Vec<&str> = audit
            .display_connectors
            .iter()
            .map(String::as_str)
            .filter(|c| edid::is_internal(c))
            .collect();
        let unreadable = audit
            .gaps
            .iter()
            .any(|g| g.area.starts_with("screen ") && edid::is_internal(&g.area));
        if !panels.is_empty() && !unreadable {
            f.need(
                "screen",
                format!(
                    "the built-in panel connector {} reports no display (empty EDID): the panel or its cable is \
                     broken or unplugged",
                    panels.join(", ")
                ),
            );
        } else {
            f.need(
                INSPECTION,
                "not checked: built-in screen (no panel connector with a readable EDID)".to_string(),
            );
        }
        return;
    }
    for s in internal {
        if let Some(d) = s.diagonal_tenth_inches {
            if d < policy.min_screen_inches * 10 {
                f.fatal(format!(
                    "the built-in screen is {}.{}\", the site minimum is {}\"",
                    d / 10,
                    d % 10,
                    policy.min_screen_inches
                ));
            }
        }
    }
}
