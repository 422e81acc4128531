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
//!
//! The firmware purge of an eMMC is here too: [`probe`] reads the Extended CSD (CMD8), and
//! [`run_purge`] runs what the plan chose. SANITIZE (eMMC 4.5+, JESD84-B51 §6.6.24) removes the data
//! of every *unmapped* block, old copies included, so the whole user area is discarded first
//! (`BLKDISCARD`), then SANITIZE_START is set (CMD6); the kernel holds the ioctl until the card leaves
//! its busy state, and the card's status (CMD13) must then show no error. Secure erase (eMMC 4.41)
//! goes through the kernel's `BLKSECDISCARD`, which sends secure erase or secure trim with the card's
//! own erase-group geometry and timeouts.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use lapterop_certificate::{Capability, FirmwareEvidence, Step, StepKind};

use crate::command::mmc::{self, MmcIocCmd, R1};
use crate::disk::BootArea;
use crate::firmware::{ran, skipped, Caps, Policy};

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

/// Whether `/sys/block/<name>` is an eMMC (the mmc core's `device/type` is `MMC`; an SD card says
/// `SD` and must never get eMMC commands).
pub fn is_emmc(sys_block: &Path, name: &str) -> bool {
    name.starts_with("mmcblk")
        && std::fs::read_to_string(sys_block.join(name).join("device/type")).is_ok_and(|t| t.trim() == "MMC")
}

/// Sends eMMC commands and the kernel's erase requests to one card.
pub trait MmcDrive {
    /// Runs one command through `MMC_IOC_CMD`; returns the card's R1 response.
    fn cmd(&mut self, cmd: MmcIocCmd, data: &mut [u8]) -> io::Result<R1>;
    /// Discards `len` bytes of the user area from byte 0 (`BLKDISCARD`), or with `secure`
    /// erases them securely (`BLKSECDISCARD`).
    fn discard(&mut self, len: u64, secure: bool) -> io::Result<()>;
}

/// An eMMC reached through its block device (`/dev/mmcblk0`).
#[derive(Debug)]
pub struct MmcCard(File);

impl MmcCard {
    /// Opens the card's block device read-write (not exclusively: the wipe holds that claim).
    pub fn open(dev: &Path) -> io::Result<Self> {
        Ok(Self(std::fs::OpenOptions::new().read(true).write(true).open(dev)?))
    }
}

impl MmcDrive for MmcCard {
    fn cmd(&mut self, cmd: MmcIocCmd, data: &mut [u8]) -> io::Result<R1> {
        crate::command::sys::mmc_cmd(self.0.as_fd(), cmd, data)
    }

    fn discard(&mut self, len: u64, secure: bool) -> io::Result<()> {
        let r = if secure {
            crate::sys::secure_discard(&self.0, 0, len)
        } else {
            crate::sys::discard(&self.0, 0, len)
        };
        r.map_err(|e| io::Error::from_raw_os_error(e.errno as i32))
    }
}

/// Reads the Extended CSD.
pub fn probe(card: &mut dyn MmcDrive) -> Caps {
    let mut d = [0u8; 512];
    match card.cmd(mmc::send_ext_csd(), &mut d) {
        Ok(r) if !r.error() => Caps::Mmc(mmc::parse_ext_csd(&d)),
        Ok(r) => Caps::Unavailable(format!("SEND_EXT_CSD failed: {}", r.describe())),
        Err(e) => Caps::Unavailable(format!("SEND_EXT_CSD could not be sent: {e}")),
    }
}

/// Runs the eMMC purge `kind` over the user area of `capacity` bytes and records it.
pub fn run_purge(card: &mut dyn MmcDrive, kind: StepKind, capacity: u64, policy: &Policy) -> Step {
    let started = lapterop_certificate::now_utc();
    let (first, command) = match kind {
        StepKind::MmcSanitize => {
            let timeout = u32::try_from(policy.max_wait.as_millis()).unwrap_or(u32::MAX);
            let cmd = mmc::sanitize(timeout);
            (false, Some(cmd))
        }
        StepKind::MmcSecureErase => (true, None),
        other => return skipped(other, Capability::NotSupported, "not an eMMC command".into()),
    };
    let what = if first {
        format!("BLKSECDISCARD 0+{capacity}")
    } else {
        format!("BLKDISCARD 0+{capacity}")
    };
    let described = match &command {
        Some(c) => format!("{what}, then {}", c.describe()),
        None => what.clone(),
    };
    let mut ev = FirmwareEvidence {
        command: described,
        status: String::new(),
        polls: 0,
        final_state: None,
    };
    let failed = |mut ev: FirmwareEvidence, status: String, reason: String| {
        ev.status = status;
        ran(
            kind,
            Capability::Supported,
            lapterop_certificate::StepOutcome::Failed,
            Some(reason),
            capacity,
            ev,
            started.clone(),
        )
    };
    if let Err(e) = card.discard(capacity, first) {
        let reason = if first && e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) {
            "the kernel offers no secure erase for this card (BLKSECDISCARD: not supported)".to_string()
        } else {
            format!("{what} failed: {e}")
        };
        return failed(ev, e.to_string(), reason);
    }
    if let Some(cmd) = command {
        match card.cmd(cmd, &mut []) {
            Ok(r) if r.error() => {
                let d = r.describe();
                return failed(ev, d.clone(), format!("the eMMC refused SANITIZE: {d}"));
            }
            Ok(_) => {}
            Err(e) => return failed(ev, e.to_string(), format!("SANITIZE failed: {e}")),
        }
    }
    // The kernel returned once the card left busy; the card itself must now say it is idle and clean.
    ev.polls = 1;
    match card.cmd(mmc::send_status(), &mut []) {
        Ok(r) if r.ready() && !r.error() => {
            ev.status = r.describe();
            ev.final_state = Some(format!("CMD13 after the erase: {}", r.describe()));
            ran(
                kind,
                Capability::Supported,
                lapterop_certificate::StepOutcome::Completed,
                None,
                capacity,
                ev,
                started,
            )
        }
        Ok(r) => {
            let d = r.describe();
            failed(ev, d.clone(), format!("after the erase the eMMC reports {d}"))
        }
        Err(e) => failed(ev, e.to_string(), format!("the eMMC's status could not be read: {e}")),
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

    /// A card that answers like an eMMC: its EXT_CSD, what SWITCH and SEND_STATUS return, whether the
    /// kernel offers secure erase; it logs what it was sent.
    struct FakeCard {
        ext_csd: [u8; 512],
        switch_r1: u32,
        status_r1: u32,
        secure_discard: bool,
        log: Vec<String>,
    }

    impl FakeCard {
        fn new() -> Self {
            FakeCard {
                ext_csd: crate::command::mmc::tests::emmc51(),
                switch_r1: 0x0000_0900,
                status_r1: 0x0000_0900,
                secure_discard: true,
                log: Vec::new(),
            }
        }
    }

    impl MmcDrive for FakeCard {
        fn cmd(&mut self, cmd: MmcIocCmd, data: &mut [u8]) -> io::Result<R1> {
            self.log.push(format!("CMD{} {:#010x}", cmd.opcode, cmd.arg));
            match cmd.opcode {
                8 => {
                    data.copy_from_slice(&self.ext_csd);
                    Ok(R1(0x0000_0900))
                }
                6 => Ok(R1(self.switch_r1)),
                13 => Ok(R1(self.status_r1)),
                _ => Err(io::Error::from_raw_os_error(nix::libc::EINVAL)),
            }
        }

        fn discard(&mut self, len: u64, secure: bool) -> io::Result<()> {
            self.log
                .push(format!("{} {len}", if secure { "BLKSECDISCARD" } else { "BLKDISCARD" }));
            if secure && !self.secure_discard {
                return Err(io::Error::from_raw_os_error(nix::libc::EOPNOTSUPP));
            }
            Ok(())
        }
    }

    fn plan_of(card: &mut FakeCard) -> (Caps, crate::firmware::Plan) {
        let caps = probe(card);
        let p = crate::firmware::plan(crate::firmware::Method::Auto, &caps, false, &Policy::default()).unwrap();
        (caps, p)
    }

    #[test]
    fn sanitize_runs_after_a_discard_and_is_complete_only_when_the_card_says_so() {
        let mut card = FakeCard::new();
        let (_, p) = plan_of(&mut card);
        assert_eq!(
            p.chosen,
            Some(StepKind::MmcSanitize),
            "SANITIZE is stronger than secure erase"
        );
        let step = run_purge(&mut card, StepKind::MmcSanitize, 1 << 30, &Policy::default());
        assert_eq!(step.outcome, lapterop_certificate::StepOutcome::Completed, "{step:?}");
        assert_eq!(step.bytes, 1 << 30);
        assert_eq!(
            card.log,
            [
                "CMD8 0x00000000",
                "BLKDISCARD 1073741824",
                "CMD6 0x03a50101",
                "CMD13 0x00010000"
            ]
        );
        let ev = step.firmware.unwrap();
        assert_eq!(
            ev.command,
            "BLKDISCARD 0+1073741824, then mmc CMD6 arg=0x03a50101 flags=0x49d"
        );
        assert_eq!(
            ev.final_state.as_deref(),
            Some("CMD13 after the erase: R1 0x00000900: state tran, no error")
        );

        // The card refuses the switch: failed, with the R1 bits named.
        let mut card = FakeCard::new();
        card.switch_r1 = 0x0000_0980;
        let step = run_purge(&mut card, StepKind::MmcSanitize, 1 << 30, &Policy::default());
        assert_eq!(step.outcome, lapterop_certificate::StepOutcome::Failed);
        assert!(step.reason.unwrap().contains("SWITCH_ERROR"));
        assert_eq!(step.bytes, 0, "a failed purge covered nothing");

        // Still programming afterwards: not complete.
        let mut card = FakeCard::new();
        card.status_r1 = 0x0000_0E00;
        let step = run_purge(&mut card, StepKind::MmcSanitize, 1 << 30, &Policy::default());
        assert_eq!(step.outcome, lapterop_certificate::StepOutcome::Failed);
        assert!(step.reason.unwrap().contains("state prg"));
    }

    #[test]
    fn an_emmc_before_4_5_gets_secure_erase_and_a_kernel_without_it_says_so() {
        let mut card = FakeCard::new();
        card.ext_csd[crate::command::mmc::ext_csd::EXT_CSD_REV] = 5;
        let (_, p) = plan_of(&mut card);
        assert_eq!(p.chosen, Some(StepKind::MmcSecureErase));
        let skipped = p.skipped_steps();
        assert_eq!(skipped[0].kind, StepKind::MmcSanitize);
        assert!(skipped[0].reason.as_deref().unwrap().contains("eMMC before 4.5"));
        let step = run_purge(&mut card, StepKind::MmcSecureErase, 1 << 20, &Policy::default());
        assert_eq!(step.outcome, lapterop_certificate::StepOutcome::Completed);
        assert!(
            !StepKind::MmcSecureErase.is_purge(),
            "secure erase is a Clear-level step here"
        );
        card.secure_discard = false;
        let step = run_purge(&mut card, StepKind::MmcSecureErase, 1 << 20, &Policy::default());
        assert_eq!(step.outcome, lapterop_certificate::StepOutcome::Failed);
        assert!(step.reason.unwrap().contains("offers no secure erase"));
        // Neither: overwrite only, and both are listed with why.
        card.ext_csd[crate::command::mmc::ext_csd::SEC_FEATURE_SUPPORT] = 0;
        let (_, p) = plan_of(&mut card);
        assert_eq!((p.chosen, p.skipped_steps().len()), (None, 2));
    }

    #[test]
    fn only_an_emmc_gets_emmc_commands() {
        let t = tempfile::tempdir().unwrap();
        for (name, kind) in [("mmcblk0", "MMC\n"), ("mmcblk1", "SD\n")] {
            let d = t.path().join(name).join("device");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("type"), kind).unwrap();
        }
        assert!(is_emmc(t.path(), "mmcblk0"));
        assert!(!is_emmc(t.path(), "mmcblk1"), "CMD8 is SEND_IF_COND to an SD card");
        assert!(!is_emmc(t.path(), "sda"));
    }
}
