//! Lifting a BIOS freeze lock: many laptop BIOSes send SECURITY FREEZE LOCK (and SANITIZE FREEZE LOCK)
//! to their disks at boot, so the drive refuses its own erase commands until it is powered off. A
//! suspend to RAM cuts the drive's power and the BIOS does not run again on resume, so after the
//! wake the drive is usually no longer frozen (`shared/research/wipe.md` §3.2, ArchWiki "Solid state
//! drive/Memory cell clearing"). The RTC wake alarm brings the laptop back by itself.
//!
//! Only with the site's permission (`[wipe] unfreeze = "suspend"`): a model that does not wake by
//! itself needs a volunteer to press the power button. `lapterop-agent suspend --wake-after N` tries it
//! on one laptop first.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Seconds the job sleeps to lift a freeze.
pub const UNFREEZE_SECONDS: u32 = 10;

/// Why this laptop cannot be suspended and woken by its RTC.
#[derive(Debug, thiserror::Error)]
pub enum SuspendError {
    /// `/sys/power/state` has no `mem`.
    #[error("the kernel offers no suspend to RAM (/sys/power/state: {states:?})")]
    NoSuspendToRam {
        /// What the file offers.
        states: String,
    },
    /// No `/sys/class/rtc/rtc0/wakealarm`.
    #[error("the machine has no RTC wake alarm (/sys/class/rtc/rtc0/wakealarm)")]
    NoWakeAlarm,
    /// A power file refused a value (a driver that refuses to suspend makes `state` fail).
    #[error("writing {value:?} to {file}: {source}")]
    Write {
        /// What was written.
        value: String,
        /// The file, from `/`.
        file: String,
        /// What the kernel said.
        source: std::io::Error,
    },
}

/// The kernel's power and RTC files under a root (`/` on a laptop; a test tree in tests).
#[derive(Debug, Clone)]
pub struct PowerFiles {
    root: PathBuf,
}

/// How the machine can sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sleep {
    /// ACPI S3, suspend to RAM: the disks lose power.
    Deep,
    /// Suspend-to-idle only: the disks are put into standby and reset on resume, which lifts a
    /// freeze on many drives but not all.
    Idle,
}

impl PowerFiles {
    /// The running system's files.
    pub fn system() -> Self {
        Self::at(Path::new("/"))
    }

    /// The files under `root`.
    pub fn at(root: &Path) -> Self {
        Self { root: root.to_owned() }
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.file(rel)).ok()
    }

    fn write(&self, rel: &str, value: &str) -> Result<(), SuspendError> {
        std::fs::write(self.file(rel), value).map_err(|source| SuspendError::Write {
            value: value.to_owned(),
            file: format!("/{rel}"),
            source,
        })
    }

    /// Whether this machine can suspend to RAM and be woken by its RTC, and how deeply it sleeps.
    pub fn check(&self) -> Result<Sleep, SuspendError> {
        let states = self.read("sys/power/state").unwrap_or_default();
        if !states.split_whitespace().any(|s| s == "mem") {
            return Err(SuspendError::NoSuspendToRam {
                states: states.trim().to_owned(),
            });
        }
        if !self.file("sys/class/rtc/rtc0/wakealarm").exists() {
            return Err(SuspendError::NoWakeAlarm);
        }
        // mem_sleep lists the variants, the chosen one in brackets: "s2idle [deep]".
        let variants = self.read("sys/power/mem_sleep").unwrap_or_else(|| "[deep]".into());
        Ok(
            if variants
                .split_whitespace()
                .any(|v| v.trim_matches(['[', ']']) == "deep")
            {
                Sleep::Deep
            } else {
                Sleep::Idle
            },
        )
    }

    /// Suspends to RAM with the RTC alarm set `seconds` ahead and returns once the machine is awake
    /// again, with the time it was away. Filesystems are synced first (the stick stays mounted).
    pub fn suspend_for(&self, seconds: u32) -> Result<Duration, SuspendError> {
        let sleep = self.check()?;
        nix::unistd::sync();
        // The RTC must be allowed to wake the machine (ACPI RTC_EN); rtc-cmos usually is already.
        let wakeup = "sys/class/rtc/rtc0/device/power/wakeup";
        if self.read(wakeup).is_some_and(|w| w.trim() == "disabled") {
            self.write(wakeup, "enabled")?;
        }
        // An alarm still armed makes the kernel refuse a new one (EBUSY): clear it first.
        self.write("sys/class/rtc/rtc0/wakealarm", "0")?;
        self.write("sys/class/rtc/rtc0/wakealarm", &format!("+{seconds}"))?;
        if sleep == Sleep::Deep && self.file("sys/power/mem_sleep").exists() {
            self.write("sys/power/mem_sleep", "deep")?;
        }
        // CLOCK_BOOTTIME keeps counting while the machine sleeps (CLOCK_MONOTONIC does not).
        let boottime = || nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map(Duration::from);
        let started = boottime();
        // Returns after the resume (or fails at once when a driver refuses to suspend).
        let result = self.write("sys/power/state", "mem");
        let away = match (started, boottime()) {
            (Ok(a), Ok(b)) => b.saturating_sub(a),
            _ => Duration::ZERO,
        };
        let _ = self.write("sys/class/rtc/rtc0/wakealarm", "0");
        result.map(|()| away)
    }
}

/// A drive whose firmware erase the plan skipped because it is frozen.
pub fn is_frozen(p: &crate::drive::FirmwarePrelude) -> bool {
    p.chosen.is_none()
        && p.skipped
            .iter()
            .any(|s| s.capability == lapterop_certificate::Capability::Frozen)
}

/// The certificate's record of a suspend-to-RAM that was to lift a freeze.
pub fn step(
    slept: &Result<std::time::Duration, SuspendError>,
    still_frozen: bool,
    started: String,
    seconds: u32,
) -> lapterop_certificate::Step {
    let (outcome, reason, status) = match slept {
        Err(e) => (
            lapterop_certificate::StepOutcome::Failed,
            Some(format!("suspend to RAM failed: {e}")),
            "not suspended".to_owned(),
        ),
        Ok(d) if still_frozen => (
            lapterop_certificate::StepOutcome::Failed,
            Some("still frozen after suspend and wake: the firmware froze the drive again".to_owned()),
            format!("woke after {:.1} s", d.as_secs_f64()),
        ),
        Ok(d) => (
            lapterop_certificate::StepOutcome::Completed,
            None,
            format!("woke after {:.1} s", d.as_secs_f64()),
        ),
    };
    let evidence = lapterop_certificate::FirmwareEvidence {
        command: format!("suspend to RAM (/sys/power/state = mem) with RTC wake alarm +{seconds} s"),
        status,
        polls: 0,
        final_state: Some(if still_frozen { "frozen" } else { "not frozen" }.to_owned()),
    };
    let (kind, capability) = (
        lapterop_certificate::StepKind::Unfreeze,
        lapterop_certificate::Capability::Frozen,
    );
    crate::firmware::ran(kind, capability, outcome, reason, 0, evidence, started)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(state: &str, mem_sleep: Option<&str>, rtc: bool) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("sys/power")).unwrap();
        std::fs::write(t.path().join("sys/power/state"), state).unwrap();
        if let Some(m) = mem_sleep {
            std::fs::write(t.path().join("sys/power/mem_sleep"), m).unwrap();
        }
        if rtc {
            std::fs::create_dir_all(t.path().join("sys/class/rtc/rtc0/device/power")).unwrap();
            std::fs::write(t.path().join("sys/class/rtc/rtc0/wakealarm"), "").unwrap();
            std::fs::write(t.path().join("sys/class/rtc/rtc0/device/power/wakeup"), "disabled\n").unwrap();
        }
        t
    }

    #[test]
    fn machines_that_cannot_sleep_or_wake_are_refused_with_the_reason() {
        let t = tree("freeze disk\n", Some("s2idle\n"), true);
        assert!(PowerFiles::at(t.path())
            .check()
            .unwrap_err()
            .to_string()
            .contains("no suspend to RAM"));
        let t = tree("freeze mem disk\n", Some("[s2idle] deep\n"), false);
        assert!(PowerFiles::at(t.path())
            .check()
            .unwrap_err()
            .to_string()
            .contains("RTC"));
        let t = tree("freeze mem\n", Some("[s2idle]\n"), true);
        assert_eq!(PowerFiles::at(t.path()).check().unwrap(), Sleep::Idle);
        let t = tree("freeze mem\n", Some("s2idle [deep]\n"), true);
        assert_eq!(PowerFiles::at(t.path()).check().unwrap(), Sleep::Deep);
    }

    #[test]
    fn the_alarm_is_armed_deep_sleep_chosen_and_mem_written_last() {
        let t = tree("freeze mem\n", Some("[s2idle] deep\n"), true);
        let f = PowerFiles::at(t.path());
        f.suspend_for(7).unwrap();
        let read = |p: &str| std::fs::read_to_string(t.path().join(p)).unwrap();
        assert_eq!(read("sys/power/state"), "mem");
        assert_eq!(read("sys/power/mem_sleep"), "deep");
        assert_eq!(read("sys/class/rtc/rtc0/device/power/wakeup"), "enabled");
        assert_eq!(
            read("sys/class/rtc/rtc0/wakealarm"),
            "0",
            "the alarm is cleared after the wake"
        );
    }
}
