//! What the plan screen and the pre-flight checks are given: each disk with its method, health and
//! why it is left out, built from the claimed disks, their firmware plans and the audit.

use lapterop_certificate::model::StepKind;

use super::{is_internal, Disks};
use crate::disk::Refusal;
use crate::preflight::{Code, Finding};
use crate::ui::{Exclusion, Health, Method, PlanDisk};

/// Pre-flight findings that apply: with disks named on the command line (`--only`) the checks for a
/// missing internal disk (`LAP-P01`, `LAP-P02`, `LAP-P08`) do not, as the volunteer chose the disks.
pub fn relevant(findings: Vec<Finding>, named_disks: bool) -> Vec<Finding> {
    findings
        .into_iter()
        .filter(|f| !(named_disks && matches!(f.code, Code::P01 | Code::P02 | Code::P08)))
        .collect()
}

/// The purge's name as the plan shows it.
pub fn purge_name(kind: StepKind) -> &'static str {
    firmware_name(kind).unwrap_or("overwrite")
}

/// The name of a firmware erase step; `None` for the steps that are not one.
pub fn firmware_name(kind: StepKind) -> Option<&'static str> {
    Some(match kind {
        StepKind::NvmeSanitizeCrypto => "NVMe Sanitize crypto",
        StepKind::NvmeSanitizeBlock => "NVMe Sanitize block",
        StepKind::NvmeSanitizeOverwrite => "NVMe Sanitize overwrite",
        StepKind::NvmeFormatCrypto => "NVMe Format crypto",
        StepKind::NvmeFormatUser => "NVMe Format user data",
        StepKind::AtaSanitizeCrypto => "ATA SANITIZE crypto",
        StepKind::AtaSanitizeBlock => "ATA SANITIZE block",
        StepKind::AtaSanitizeOverwrite => "ATA SANITIZE overwrite",
        StepKind::AtaSecurityErase => "ATA SECURITY ERASE",
        StepKind::AtaSecurityEraseEnhanced => "ATA SECURITY ERASE enhanced",
        StepKind::MmcSanitize => "eMMC SANITIZE",
        StepKind::MmcSecureErase => "eMMC secure erase",
        StepKind::Overwrite
        | StepKind::Discard
        | StepKind::HpaExpose
        | StepKind::HpaRestore
        | StepKind::DcoRestore
        | StepKind::TcgPsidRevert
        | StepKind::Unfreeze => return None,
    })
}

/// Disk health in brief from the audit's firmware reports.
pub fn health(audit: &crate::audit::Audit, name: &str) -> Health {
    let Some(d) = audit.disks.iter().flatten().find(|d| d.name == name) else {
        return Health::Unknown;
    };
    if let Some(n) = &d.nvme {
        if n.critical_warning != 0 || n.media_errors > 0 {
            return Health::Failing(format!(
                "critical warning {:#x}, {} media errors",
                n.critical_warning, n.media_errors
            ));
        }
        if n.percentage_used >= 80 {
            return Health::Worn(format!("{}% of rated life used", n.percentage_used));
        }
        return Health::Good;
    }
    if let Some(a) = &d.ata {
        let pending = a.pending_sectors.unwrap_or(0) + a.reported_uncorrectable.unwrap_or(0);
        if pending > 0 {
            return Health::Failing(format!("{pending} pending or uncorrectable sectors"));
        }
        if let Some(n) = a.reallocated_sectors.filter(|n| *n > 0) {
            return Health::Worn(format!("{n} reallocated sectors"));
        }
        return Health::Good;
    }
    Health::Unknown
}

/// The plan screen's disks: the claimed ones with their method, the refused ones and the ones left
/// alone marked as not touched.
pub fn plan_disks(
    disks: &Disks,
    chosen: &[Option<StepKind>],
    audit: &crate::audit::Audit,
    stick_disk: Option<&str>,
) -> Vec<PlanDisk> {
    let row = |d: &crate::disk::Disk, size: u64, method: Option<Method>, excluded: Option<Exclusion>| PlanDisk {
        name: d.name.clone(),
        model: d.model.clone(),
        serial: d.serial.clone(),
        size_bytes: size,
        transport: d.transport,
        rotational: d.rotational,
        removable: d.removable,
        card: d.card,
        health: health(audit, &d.name),
        method,
        excluded,
        frozen: false,
    };
    let mut out: Vec<PlanDisk> = disks
        .claimed
        .iter()
        .zip(chosen)
        .map(|(c, kind)| {
            let method = match kind {
                Some(k) if k.is_purge() => Method::FirmwareThenOverwrite(purge_name(*k).to_string()),
                _ => Method::Overwrite,
            };
            row(&c.disk, c.capacity_bytes, Some(method), None)
        })
        .collect();
    for (d, why) in &disks.refused {
        let exclusion = if why.iter().any(|r| matches!(r, Refusal::BootStick { .. })) {
            Exclusion::BootStick
        } else if why.iter().any(|r| matches!(r, Refusal::ReadOnly)) {
            Exclusion::ReadOnly
        } else {
            Exclusion::InUse
        };
        out.push(row(d, d.capacity_bytes, None, Some(exclusion)));
    }
    for d in disks.left_alone.iter().filter(|d| d.capacity_bytes > 0) {
        let exclusion = if Some(d.name.as_str()) == stick_disk {
            Exclusion::BootStick
        } else if is_internal(d, stick_disk) {
            Exclusion::NotChosen
        } else {
            Exclusion::External
        };
        out.push(row(d, d.capacity_bytes, None, Some(exclusion)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_disks_drop_the_missing_disk_findings_only() {
        let all = vec![
            Finding::new(Code::P01, &[("controller", "x".into())]),
            Finding::new(Code::P06, &[]),
            Finding::new(Code::P08, &[]),
        ];
        let kept: Vec<Code> = relevant(all.clone(), true).iter().map(|f| f.code).collect();
        assert_eq!(kept, [Code::P06]);
        assert_eq!(relevant(all, false).len(), 3);
    }
}
