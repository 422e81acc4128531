//! An eMMC's boot areas: whether the chip lets them be written, and the kernel's `force_ro` switch
//! that keeps them read-only until the wipe lifts it (and puts it back afterwards).
//!
//! The kernel's mmc block driver makes each boot area (JESD84-B51 §6.3.2, "Boot partition") a block
//! device of its own, `mmcblk0boot0` and `mmcblk0boot1`, and refuses to open it for writing while
//! `/sys/block/<area>/force_ro` is 1, its default (`drivers/mmc/core/block.c`, `mmc_blk_open`). The
//! chip's own protection is EXT_CSD BOOT_WP [173] (JESD84-B51 §7.4): power-on write protection
//! (B_PWR_WP_EN, bit 0) lasts until the next power cycle, permanent protection (B_PERM_WP_EN, bit 2)
//! forever. The kernel reads that byte when the card comes up and shows it as
//! `ro_lock_until_next_power_on`: `0` none, `1` power-on, `2` permanent (`power_ro_lock_show`); the
//! file is absent when the chip cannot lock its boot areas at all.

use std::path::{Path, PathBuf};

use crate::disk::BootArea;

/// The chip's write protection of a boot area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteProtect {
    /// Writable (once `force_ro` is lifted).
    None,
    /// Locked until the laptop is next powered off (BOOT_WP B_PWR_WP_EN).
    UntilPowerOff,
    /// Locked for good (BOOT_WP B_PERM_WP_EN): it can never be overwritten.
    Permanent,
}

impl WriteProtect {
    /// Why the area cannot be written, for its record.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::UntilPowerOff => Some(
                "the eMMC write-protects this boot area until the laptop is powered off (EXT_CSD BOOT_WP \
                 power-on protection, usually set by the firmware at boot)",
            ),
            Self::Permanent => Some(
                "the eMMC write-protects this boot area permanently (EXT_CSD BOOT_WP permanent \
                 protection): it holds the manufacturer's boot code and can never be overwritten",
            ),
        }
    }
}

/// Where a boot area's switches are: `/sys/block/<name>` on the machine, a directory in tests.
#[derive(Debug, Clone)]
pub struct Switches {
    dir: PathBuf,
}

impl Switches {
    /// The switches of `area` under the sysfs block directory `sys_block` (`/sys/block`).
    pub fn of(sys_block: &Path, area: &BootArea) -> Switches {
        Switches {
            dir: sys_block.join(&area.name),
        }
    }

    /// The chip's write protection as the kernel read it.
    pub fn write_protect(&self) -> WriteProtect {
        match std::fs::read_to_string(self.dir.join("ro_lock_until_next_power_on")) {
            Ok(s) => match s.trim() {
                "0" => WriteProtect::None,
                "1" => WriteProtect::UntilPowerOff,
                // Anything else the kernel might print is treated as the strongest lock.
                _ => WriteProtect::Permanent,
            },
            // No lock support on this chip: its boot areas are never locked.
            Err(_) => WriteProtect::None,
        }
    }

    /// Lifts `force_ro` for the wipe; the returned guard sets it back to what it was when dropped.
    pub fn writable(&self) -> std::io::Result<Writable> {
        let file = self.dir.join("force_ro");
        let before = std::fs::read_to_string(&file)?.trim().to_string();
        if before != "0" {
            std::fs::write(&file, "0")?;
        }
        Ok(Writable { file, before })
    }
}

/// A boot area made writable; puts `force_ro` back when dropped.
#[derive(Debug)]
pub struct Writable {
    file: PathBuf,
    before: String,
}

impl Writable {
    /// Puts `force_ro` back now and says whether that worked.
    pub fn restore(self) -> std::io::Result<()> {
        let r = self.put_back();
        std::mem::forget(self);
        r
    }

    fn put_back(&self) -> std::io::Result<()> {
        if self.before == "0" {
            return Ok(());
        }
        std::fs::write(&self.file, &self.before)
    }
}

impl Drop for Writable {
    fn drop(&mut self) {
        let _ = self.put_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(dir: &Path, lock: Option<&str>) -> Switches {
        let d = dir.join("mmcblk0boot0");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("force_ro"), "1\n").unwrap();
        if let Some(l) = lock {
            std::fs::write(d.join("ro_lock_until_next_power_on"), l).unwrap();
        }
        let a = BootArea {
            name: "mmcblk0boot0".into(),
            path: "/dev/mmcblk0boot0".into(),
            capacity_bytes: 4 << 20,
            force_ro: true,
        };
        Switches::of(dir, &a)
    }

    #[test]
    fn the_kernels_lock_file_says_how_the_chip_protects_the_area() {
        let t = tempfile::tempdir().unwrap();
        for (lock, want) in [
            (None, WriteProtect::None),
            (Some("0\n"), WriteProtect::None),
            (Some("1\n"), WriteProtect::UntilPowerOff),
            (Some("2\n"), WriteProtect::Permanent),
        ] {
            assert_eq!(area(t.path(), lock).write_protect(), want, "{lock:?}");
        }
        assert!(WriteProtect::Permanent.reason().unwrap().contains("never"));
    }

    #[test]
    fn force_ro_is_lifted_for_the_wipe_and_put_back_even_on_an_early_return() {
        let t = tempfile::tempdir().unwrap();
        let s = area(t.path(), None);
        let ro = || std::fs::read_to_string(t.path().join("mmcblk0boot0/force_ro")).unwrap();
        let w = s.writable().unwrap();
        assert_eq!(ro(), "0");
        w.restore().unwrap();
        assert_eq!(ro().trim(), "1");
        {
            let _w = s.writable().unwrap();
            assert_eq!(ro(), "0");
        }
        assert_eq!(ro().trim(), "1", "dropped without restore: put back all the same");
    }
}
