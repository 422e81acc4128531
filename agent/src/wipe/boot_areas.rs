//! An eMMC's boot areas, wiped with their eMMC: each is overwritten and read back like a disk of its
//! own (after checking that the chip lets it be written, and with the kernel's `force_ro` lifted only
//! for that time) and recorded inside the eMMC's disk record. The eMMC is `erased` only when each of
//! its boot areas is; a boot area that could not be erased (write-protected by the chip, a bad range)
//! is an exception of the eMMC's record, never a silent gap.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use lapterop_certificate::{DiskOutcome, DiskRecord, Exception, ExceptionKind, OutcomeStatus};

use super::{not_wiped, outcome_words, wipe_device, Progress, WipeSpec};
use crate::disk::{self, BootArea, Disk, SafetyConfig};
use crate::emmc::{Switches, WriteProtect};

/// A reporter for one part of a disk: phases carry the part's name, and the disk's end is said once,
/// by the caller, when every part is done.
pub(super) struct Part<'a> {
    /// The disk's reporter.
    pub inner: &'a dyn Progress,
    /// Prefix of each phase (`mmcblk0boot0: `), empty for the disk itself.
    pub prefix: String,
}

impl Progress for Part<'_> {
    fn phase(&self, label: &str, total: u64) {
        self.inner.phase(&format!("{}{label}", self.prefix), total);
    }

    fn update(&self, done: u64) {
        self.inner.update(done);
    }

    fn finish(&self, _outcome: &DiskOutcome) {}
}

/// Wipes every boot area of `emmc` (switches under `sys_block`, `/sys/block` on the machine) with
/// `spec` and returns their records, in order.
pub fn wipe(
    emmc: &Disk,
    sys_block: &Path,
    spec: &WipeSpec,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> Vec<DiskRecord> {
    emmc.boot_areas
        .iter()
        .map(|area| wipe_one(emmc, area, &Switches::of(sys_block, area), spec, stop, progress))
        .collect()
}

/// The boot area as a disk of the same chip.
fn as_disk(emmc: &Disk, area: &BootArea) -> Disk {
    Disk {
        name: area.name.clone(),
        path: area.path.clone(),
        capacity_bytes: area.capacity_bytes,
        read_only: false,
        mounts: Vec::new(),
        swap: false,
        holders: Vec::new(),
        partitions: Vec::new(),
        boot_areas: Vec::new(),
        rpmb_bytes: None,
        backing_file: None,
        ..emmc.clone()
    }
}

fn wipe_one(
    emmc: &Disk,
    area: &BootArea,
    switches: &Switches,
    spec: &WipeSpec,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> DiskRecord {
    let d = as_disk(emmc, area);
    let protect = switches.write_protect();
    if let Some(why) = protect.reason() {
        return not_wiped(&d, why);
    }
    debug_assert_eq!(protect, WriteProtect::None);
    let writable = match switches.writable() {
        Ok(w) => w,
        Err(e) => return not_wiped(&d, &format!("the kernel's force_ro switch could not be lifted: {e}")),
    };
    // Opened exclusively like any disk: a mounted or otherwise held boot area is refused.
    let claimed = match disk::claim(&d, &SafetyConfig::default()) {
        Ok(c) => c,
        Err(why) => return not_wiped(&d, &disk::refusal_text(&why)),
    };
    let part = Part {
        inner: progress,
        prefix: format!("{}: ", area.name),
    };
    let d = Disk {
        physical_sector_size: claimed.physical_sector_size,
        ..d
    };
    let record = wipe_device(&claimed, &d, spec, stop, &part)
        .unwrap_or_else(|e| not_wiped(&d, &format!("the wipe could not start: {e:#}")));
    drop(claimed);
    // The switch comes back by itself at the next boot; a failure to set it now changes no byte.
    let _ = writable.restore();
    record
}

/// Puts the boot areas' records into their eMMC's record: a boot area that was not erased makes an
/// erased eMMC `erased-with-exceptions`, with one exception per area.
pub fn attach(record: &mut DiskRecord, areas: Vec<DiskRecord>) {
    let left: Vec<Exception> = areas
        .iter()
        .filter(|a| a.outcome.status != OutcomeStatus::Erased)
        .map(|a| Exception {
            kind: ExceptionKind::BootAreaNotErased,
            detail: format!(
                "boot area {} ({} bytes): {}",
                a.device,
                a.capacity_bytes,
                outcome_words(&a.outcome)
            ),
            range: None,
        })
        .collect();
    record.boot_areas = areas;
    if left.is_empty() || record.outcome.status == OutcomeStatus::NotErased {
        return;
    }
    record.outcome.status = OutcomeStatus::ErasedWithExceptions;
    record.outcome.exceptions.extend(left);
}
