//! State-machine tests of the firmware purge through fake drives that behave like real ones: frozen,
//! locked, sanitize in progress across polls, sanitize failure, aborted commands, drives that claim
//! support and then fail. None may lead to a completed purge it did not do, none may leave a drive
//! locked.

use super::*;
use crate::command::ata::Returned;

#[derive(Default)]
struct Counter(u32);

impl Waiter for Counter {
    fn wait(&mut self, _: Duration) {
        self.0 += 1;
    }
}

fn policy() -> Policy {
    Policy {
        allow_security_erase: true,
        poll_interval: Duration::from_secs(5),
        max_wait: Duration::from_secs(3600),
        expose_hpa: true,
        behind_usb_bridge: false,
        psid_revert: false,
    }
}

// ---------------------------------------------------------------- a fake ATA drive

#[derive(Debug, Clone, Default)]
struct FakeAta {
    security_supported: bool,
    enhanced: bool,
    frozen: bool,
    locked: bool,
    password: Option<Vec<u8>>,
    sanitize: bool,
    crypto: bool,
    block: bool,
    sanitize_frozen: bool,
    polls_needed: u32,
    polls_left: u32,
    in_progress: bool,
    sanitize_fails: bool,
    last_sanitize_ok: Option<bool>,
    erase_unit_fails: bool,
    claims_but_errors: bool,
    abort_all: bool,
    erased: bool,
    sent: Vec<&'static str>,
}

fn ok(status: u8, count: u16, lba: u64) -> AtaOutcome {
    AtaOutcome::Ok(Some(Returned {
        status,
        count,
        lba,
        ..Default::default()
    }))
}

fn aborted(lba: u64) -> AtaOutcome {
    AtaOutcome::Aborted(Returned {
        error: 0x04,
        status: 0x51,
        lba,
        ..Default::default()
    })
}

impl FakeAta {
    fn identify(&self) -> [u8; 512] {
        let mut d = [0u8; 512];
        let mut put = |n: usize, v: u16| d[2 * n..2 * n + 2].copy_from_slice(&v.to_le_bytes());
        let w59 = u16::from(self.sanitize) << 12 | u16::from(self.crypto) << 13 | u16::from(self.block) << 15;
        put(59, w59);
        put(83, 1 << 10);
        put(86, 1 << 10);
        put(100, 0x8000);
        put(90, 0x8000 | 10);
        let enabled = self.password.is_some();
        let w128 = u16::from(self.security_supported)
            | u16::from(enabled) << 1
            | u16::from(self.locked) << 2
            | u16::from(self.frozen) << 3
            | u16::from(self.enhanced) << 5;
        put(128, w128);
        d
    }

    fn password_matches(&self, data: &[u8]) -> bool {
        self.password.as_deref().is_some_and(|p| {
            data.len() >= 34 && data[2..2 + p.len()] == *p && data[2 + p.len()..34].iter().all(|b| *b == 0)
        })
    }
}

impl AtaDrive for FakeAta {
    fn run(&mut self, cmd: &AtaCommand, data: &mut [u8]) -> io::Result<AtaOutcome> {
        self.sent.push(cmd.name);
        let (command, feature) = (cmd.cdb[14], cmd.cdb[4]);
        if command == 0xec {
            data.copy_from_slice(&self.identify());
            return Ok(AtaOutcome::Ok(None));
        }
        if self.abort_all {
            return Ok(aborted(0));
        }
        Ok(match command {
            0xf1 if !self.security_supported || self.frozen || self.locked => aborted(0),
            0xf1 => {
                let n = data[2..34].iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                self.password = Some(data[2..2 + n].to_vec());
                ok(0x50, 0, 0)
            }
            0xf3 if self.frozen => aborted(0),
            0xf3 => ok(0x50, 0, 0),
            0xf4 if self.frozen || !self.password_matches(data) => aborted(0),
            // ACS-3: an enhanced erase on a drive without it is aborted.
            0xf4 if data[0] & 0x02 != 0 && !self.enhanced => aborted(0),
            0xf4 if self.erase_unit_fails => AtaOutcome::Failed(Returned {
                error: 0x40,
                status: 0x51,
                ..Default::default()
            }),
            0xf4 => {
                self.password = None;
                self.locked = false;
                self.erased = true;
                ok(0x50, 0, 0)
            }
            0xf2 if self.password_matches(data) => {
                self.locked = false;
                ok(0x50, 0, 0)
            }
            0xf6 if !self.locked && self.password_matches(data) => {
                self.password = None;
                ok(0x50, 0, 0)
            }
            0xf2 | 0xf6 => aborted(0),
            0xb4 if feature == 0x00 => {
                if self.in_progress {
                    self.polls_left = self.polls_left.saturating_sub(1);
                    if self.polls_left == 0 {
                        self.in_progress = false;
                        self.last_sanitize_ok = Some(!self.sanitize_fails);
                        self.erased = !self.sanitize_fails;
                    } else {
                        let done = (self.polls_needed - self.polls_left) * 65535 / self.polls_needed;
                        return Ok(ok(0x50, 0x4000, u64::from(done)));
                    }
                }
                match self.last_sanitize_ok {
                    Some(true) => ok(0x50, 0x8000, 0xffff),
                    Some(false) => aborted(1),
                    None => ok(0x50, 0, 0),
                }
            }
            0xb4 if !self.sanitize => aborted(2),
            0xb4 if self.sanitize_frozen => AtaOutcome::Aborted(Returned {
                error: 0x04,
                status: 0x51,
                count: 0x2000,
                lba: 3,
                ..Default::default()
            }),
            0xb4 if self.claims_but_errors => AtaOutcome::Failed(Returned {
                error: 0x10,
                status: 0x51,
                ..Default::default()
            }),
            0xb4 => {
                self.in_progress = true;
                self.polls_left = self.polls_needed;
                ok(0x50, 0, 0)
            }
            _ => aborted(0),
        })
    }
}

fn ssd() -> FakeAta {
    FakeAta {
        security_supported: true,
        enhanced: true,
        sanitize: true,
        crypto: true,
        block: true,
        polls_needed: 4,
        ..Default::default()
    }
}

fn ata_caps(d: &mut FakeAta) -> Identify {
    match probe_ata(d) {
        Caps::Ata(id) => id,
        other => panic!("{other:?}"),
    }
}

fn never_left_locked(d: &FakeAta) {
    assert!(!d.locked, "drive left locked");
    assert!(
        d.password.as_deref() != Some(ATA_PASSWORD),
        "drive left with Lapterop's password"
    );
}

// ---------------------------------------------------------------- a fake NVMe controller

#[derive(Debug, Clone, Default)]
struct FakeNvme {
    sanicap: u32,
    format: bool,
    fna: u8,
    polls_needed: u32,
    polls_left: u32,
    in_progress: bool,
    fails: bool,
    last: u16,
    sanitize_status: u32,
    namespace_gone: bool,
    /// A failed sanitize left the drive in its failure state (NVMe 2.0 §8.21): Format is refused
    /// until Exit Failure Mode, which works only after a sanitize sent with AUSE = 1.
    failure_mode: bool,
    ause_last: bool,
    /// Only the first sanitize fails (a firmware that fails crypto erase but manages block erase).
    fails_once: bool,
    sent: Vec<u8>,
    sanact: Vec<u32>,
}

impl NvmeDrive for FakeNvme {
    fn admin(&mut self, cmd: PassthruCmd, data: &mut [u8]) -> io::Result<(Status, u32)> {
        self.sent.push(cmd.opcode());
        let ok = Status::from_ioctl(0);
        match (cmd.opcode(), cmd.cdw10() & 0xff) {
            (0x06, 0x01) => {
                data[256] = u8::from(self.format) << 1;
                data[328..332].copy_from_slice(&self.sanicap.to_le_bytes());
                data[524] = self.fna;
                Ok((ok, 0))
            }
            (0x06, 0x00) => {
                if !self.namespace_gone {
                    data[0..8].copy_from_slice(&131_072u64.to_le_bytes());
                }
                data[128 + 2] = 9;
                Ok((ok, 0))
            }
            (0x84, _) if self.sanitize_status != 0 => Ok((Status::from_ioctl(self.sanitize_status), 0)),
            (0x84, 0x01) => {
                self.sanact.push(1);
                // SC 1Ch "Sanitize Failed": no exit from a restricted-mode failure.
                if self.failure_mode && !self.ause_last {
                    return Ok((Status::from_ioctl(0x1c), 0));
                }
                self.failure_mode = false;
                Ok((ok, 0))
            }
            (0x84, _) => {
                assert_eq!(cmd.nsid(), 0, "Sanitize must be sent with NSID 0");
                self.sanact.push(cmd.cdw10() & 0x7);
                self.ause_last = cmd.cdw10() & 0x8 != 0;
                self.in_progress = true;
                self.polls_left = self.polls_needed;
                Ok((ok, 0))
            }
            (0x80, _) if self.failure_mode => Ok((Status::from_ioctl(0x1c), 0)),
            (0x80, _) => {
                assert_ne!(cmd.cdw10() >> 9 & 0x7, 0, "Format without SES erases nothing");
                Ok((ok, 0))
            }
            (0x02, 0x81) => {
                let (sprog, sstat) = if self.in_progress {
                    self.polls_left = self.polls_left.saturating_sub(1);
                    if self.polls_left == 0 {
                        self.in_progress = false;
                        self.last = if self.fails { 3 } else { 0x101 };
                        self.failure_mode = self.fails;
                        if self.fails_once {
                            self.fails = false;
                        }
                        (0xffff, self.last)
                    } else {
                        (
                            u16::try_from((self.polls_needed - self.polls_left) * 65535 / self.polls_needed).unwrap(),
                            2,
                        )
                    }
                } else {
                    (0xffff, self.last)
                };
                data[0..2].copy_from_slice(&sprog.to_le_bytes());
                data[2..4].copy_from_slice(&sstat.to_le_bytes());
                Ok((ok, 0))
            }
            _ => Ok((Status::from_ioctl(0x01), 0)),
        }
    }
}

fn nvme(sanicap: u32) -> FakeNvme {
    FakeNvme {
        sanicap,
        format: true,
        fna: 0x04,
        polls_needed: 3,
        ..Default::default()
    }
}

// ---------------------------------------------------------------- planning

#[test]
fn auto_plan_picks_the_strongest_purge_the_drive_supports() {
    let p = policy();
    let caps = |d: &mut FakeNvme| probe_nvme(d, 1);
    assert_eq!(
        plan(Method::Auto, &caps(&mut nvme(0b011)), false, &p).unwrap().chosen,
        Some(StepKind::NvmeSanitizeCrypto)
    );
    assert_eq!(
        plan(Method::Auto, &caps(&mut nvme(0b010)), false, &p).unwrap().chosen,
        Some(StepKind::NvmeSanitizeBlock)
    );
    assert_eq!(
        plan(Method::Auto, &caps(&mut nvme(0)), false, &p).unwrap().chosen,
        Some(StepKind::NvmeFormatCrypto)
    );
    let mut no_crypto = nvme(0);
    no_crypto.fna = 0;
    let plan_user = plan(Method::Auto, &caps(&mut no_crypto), false, &p).unwrap();
    assert_eq!(plan_user.chosen, Some(StepKind::NvmeFormatUser));
    // The primitives that were not possible are recorded with their capability.
    let skipped = plan_user.skipped_steps();
    assert_eq!(skipped.len(), 3);
    assert!(skipped
        .iter()
        .all(|s| s.capability == Capability::NotSupported && s.outcome == StepOutcome::Skipped));
    let mut nothing = nvme(0);
    nothing.format = false;
    assert_eq!(plan(Method::Auto, &caps(&mut nothing), false, &p).unwrap().chosen, None);

    let id = ata_caps(&mut ssd());
    assert_eq!(
        plan(Method::Auto, &Caps::Ata(id.clone()), false, &p).unwrap().chosen,
        Some(StepKind::AtaSanitizeCrypto)
    );
    let mut hdd = ssd();
    hdd.crypto = false;
    let hdd_id = ata_caps(&mut hdd);
    // Spinning media: OVERWRITE EXT (not supported by this drive), then security erase if allowed.
    assert_eq!(
        plan(Method::Auto, &Caps::Ata(hdd_id.clone()), true, &p).unwrap().chosen,
        Some(StepKind::AtaSecurityEraseEnhanced)
    );
    let strict = Policy {
        allow_security_erase: false,
        ..policy()
    };
    assert_eq!(
        plan(Method::Auto, &Caps::Ata(hdd_id), true, &strict).unwrap().chosen,
        None
    );
    // Overwrite only.
    assert_eq!(plan(Method::Overwrite, &Caps::Ata(id), false, &p).unwrap().chosen, None);
}

#[test]
fn a_forced_method_the_drive_lacks_is_an_error_not_a_silent_fallback() {
    let p = policy();
    let caps = probe_nvme(&mut nvme(0b010), 1);
    let err = plan(Method::NvmeSanitizeCrypto, &caps, false, &p).unwrap_err();
    assert!(err.to_string().contains("crypto erase not supported"), "{err}");
    let err = plan(Method::AtaSanitizeCrypto, &caps, false, &p).unwrap_err();
    assert!(err.to_string().contains("not a command of this kind"), "{err}");
    let err = plan(
        Method::NvmeFormatUser,
        &Caps::Unavailable("USB bridge".into()),
        false,
        &p,
    )
    .unwrap_err();
    assert!(err.to_string().contains("USB bridge"));
    let mut frozen = ssd();
    frozen.frozen = true;
    let err = plan(Method::AtaSecurityErase, &Caps::Ata(ata_caps(&mut frozen)), false, &p).unwrap_err();
    assert!(err.to_string().contains("frozen"), "{err}");
}

// ---------------------------------------------------------------- NVMe

fn run_n(d: &mut FakeNvme, kind: StepKind) -> (Step, Vec<Option<f64>>, u32) {
    let caps = probe_nvme(d, 1);
    let mut seen = Vec::new();
    let mut w = Counter::default();
    let step = run_nvme(d, kind, &caps, 1 << 30, &policy(), &mut w, &mut |p| seen.push(p));
    (step, seen, w.0)
}

#[test]
fn nvme_sanitize_is_polled_across_progress_to_completion() {
    let mut d = nvme(0b001);
    let (step, seen, waits) = run_n(&mut d, StepKind::NvmeSanitizeCrypto);
    assert_eq!(step.outcome, StepOutcome::Completed, "{step:?}");
    let ev = step.firmware.unwrap();
    assert_eq!(ev.polls, 3);
    assert_eq!(waits, 2);
    assert!(
        ev.command.contains("opc=0x84 nsid=0 cdw10=0x0000000c"),
        "AUSE set: {}",
        ev.command
    );
    assert!(ev.final_state.unwrap().contains("completed successfully"));
    assert_eq!(seen.last(), Some(&Some(1.0)));
    assert!(seen.len() >= 3);
    assert_eq!(step.bytes, 1 << 30);
}

#[test]
fn nvme_sanitize_failure_and_refusal_are_failures() {
    let mut d = nvme(0b001);
    d.fails = true;
    let (step, _, _) = run_n(&mut d, StepKind::NvmeSanitizeCrypto);
    assert_eq!(step.outcome, StepOutcome::Failed);
    assert!(step.reason.unwrap().contains("sanitize failed"));
    assert_eq!(step.bytes, 0);

    // Claims support, then answers "invalid field" (a drive that lies in SANICAP).
    let mut d = nvme(0b001);
    d.sanitize_status = 0x4002;
    let (step, _, _) = run_n(&mut d, StepKind::NvmeSanitizeCrypto);
    assert_eq!(step.outcome, StepOutcome::Failed);
    assert!(step.firmware.unwrap().status.contains("invalid field"));

    // Invalid opcode: the controller refuses the command outright.
    let mut d = nvme(0b001);
    d.sanitize_status = 0x0001;
    let (step, _, _) = run_n(&mut d, StepKind::NvmeSanitizeBlock);
    assert_eq!(
        (step.outcome, step.capability),
        (StepOutcome::Failed, Capability::Refused)
    );

    // A log that never shows a sanitize after the command was accepted.
    let mut d = nvme(0b001);
    d.polls_needed = 0;
    let caps = probe_nvme(&mut d, 1);
    d.in_progress = false;
    let mut silent = FakeNvme { last: 0, ..d.clone() };
    silent.sanitize_status = 0;
    let step = {
        struct Forget(FakeNvme);
        impl NvmeDrive for Forget {
            fn admin(&mut self, cmd: PassthruCmd, data: &mut [u8]) -> io::Result<(Status, u32)> {
                let r = self.0.admin(cmd, data);
                self.0.in_progress = false;
                r
            }
        }
        run_nvme(
            &mut Forget(silent),
            StepKind::NvmeSanitizeCrypto,
            &caps,
            1 << 30,
            &policy(),
            &mut Counter::default(),
            &mut |_| {},
        )
    };
    assert_eq!(step.outcome, StepOutcome::Failed);
    assert!(step.reason.unwrap().contains("no sanitize"));
}

#[test]
fn nvme_sanitize_that_never_ends_times_out_as_failed() {
    let mut d = nvme(0b001);
    d.polls_needed = u32::MAX;
    let caps = probe_nvme(&mut d, 1);
    let short = Policy {
        max_wait: Duration::from_secs(60),
        ..policy()
    };
    let mut w = Counter::default();
    let step = run_nvme(
        &mut d,
        StepKind::NvmeSanitizeCrypto,
        &caps,
        1 << 30,
        &short,
        &mut w,
        &mut |_| {},
    );
    assert_eq!(step.outcome, StepOutcome::Failed);
    assert_eq!(w.0, 12);
    assert!(step.reason.unwrap().contains("still in progress"));
}

#[test]
fn nvme_format_sends_a_secure_erase_setting_and_checks_the_namespace() {
    let mut d = nvme(0);
    let (step, _, _) = run_n(&mut d, StepKind::NvmeFormatCrypto);
    assert_eq!(step.outcome, StepOutcome::Completed);
    assert!(step.firmware.unwrap().command.contains("opc=0x80"));
    let mut gone = nvme(0);
    let caps = probe_nvme(&mut gone, 1);
    gone.namespace_gone = true;
    let step = run_nvme(
        &mut gone,
        StepKind::NvmeFormatUser,
        &caps,
        1 << 30,
        &policy(),
        &mut Counter::default(),
        &mut |_| {},
    );
    assert_eq!(step.outcome, StepOutcome::Failed);
}

// ---------------------------------------------------------------- ATA SANITIZE

fn run_s(d: &mut FakeAta, kind: StepKind) -> (Step, u32) {
    let mut w = Counter::default();
    let step = run_ata_sanitize(d, kind, 1 << 30, &policy(), &mut w, &mut |_| {});
    (step, w.0)
}

#[test]
fn ata_sanitize_is_polled_to_completion() {
    let mut d = ssd();
    let (step, waits) = run_s(&mut d, StepKind::AtaSanitizeCrypto);
    assert_eq!(step.outcome, StepOutcome::Completed, "{step:?}");
    assert!(d.erased);
    let ev = step.firmware.unwrap();
    assert_eq!((ev.polls, waits), (4, 3));
    assert!(ev.command.contains("85 07 20 00 11 00 10 43 70 00 79 00 72 40 b4 00"));
}

#[test]
fn ata_sanitize_failures_are_failures() {
    let mut d = ssd();
    d.sanitize_fails = true;
    let (step, _) = run_s(&mut d, StepKind::AtaSanitizeBlock);
    assert_eq!(step.outcome, StepOutcome::Failed);

    let mut d = ssd();
    d.sanitize_frozen = true;
    let (step, _) = run_s(&mut d, StepKind::AtaSanitizeCrypto);
    assert_eq!(
        (step.outcome, step.capability),
        (StepOutcome::Failed, Capability::Frozen)
    );

    let mut d = ssd();
    d.claims_but_errors = true;
    let (step, _) = run_s(&mut d, StepKind::AtaSanitizeCrypto);
    assert_eq!(step.outcome, StepOutcome::Failed);
    assert!(!d.erased);

    // QEMU's AHCI disk: the command is aborted (no SANITIZE feature set).
    let mut d = FakeAta {
        abort_all: true,
        ..ssd()
    };
    let (step, _) = run_s(&mut d, StepKind::AtaSanitizeCrypto);
    assert_eq!(
        (step.outcome, step.capability),
        (StepOutcome::Failed, Capability::Refused)
    );
}

// ---------------------------------------------------------------- ATA SECURITY ERASE

fn run_se(d: &mut FakeAta) -> Step {
    let id = ata_caps(d);
    run_ata_security_erase(d, StepKind::AtaSecurityEraseEnhanced, &id, 1 << 30)
}

#[test]
fn security_erase_runs_its_sequence_and_leaves_no_password() {
    let mut d = ssd();
    let step = run_se(&mut d);
    assert_eq!(step.outcome, StepOutcome::Completed, "{step:?}");
    assert!(d.erased);
    assert_eq!(
        &d.sent[1..4],
        &["SECURITY SET PASSWORD", "SECURITY ERASE PREPARE", "SECURITY ERASE UNIT"]
    );
    never_left_locked(&d);
}

#[test]
fn a_failed_erase_unit_disables_the_password_again() {
    let mut d = FakeAta {
        erase_unit_fails: true,
        ..ssd()
    };
    let step = run_se(&mut d);
    assert_eq!(step.outcome, StepOutcome::Failed);
    assert!(step.reason.unwrap().contains("ERASE UNIT"));
    assert!(d.sent.contains(&"SECURITY DISABLE PASSWORD"));
    never_left_locked(&d);
    assert!(d.password.is_none());
}

#[test]
fn a_drive_locked_by_an_earlier_run_is_unlocked_first() {
    let mut d = FakeAta {
        locked: true,
        password: Some(ATA_PASSWORD.to_vec()),
        ..ssd()
    };
    let step = run_se(&mut d);
    assert_eq!(step.outcome, StepOutcome::Completed, "{step:?}");
    assert!(d.sent.contains(&"SECURITY UNLOCK"));
    never_left_locked(&d);
}

#[test]
fn a_drive_locked_with_an_unknown_password_is_reported_not_erased() {
    let mut d = FakeAta {
        locked: true,
        password: Some(b"donor's secret".to_vec()),
        ..ssd()
    };
    let step = run_se(&mut d);
    assert_eq!(
        (step.outcome, step.capability),
        (StepOutcome::Failed, Capability::Locked)
    );
    assert!(step.reason.unwrap().contains("LOCKED"));
    assert!(!d.erased);
    assert!(!d.sent.contains(&"SECURITY ERASE UNIT"));
}

#[test]
fn a_frozen_drive_is_skipped_with_the_reason() {
    let mut d = FakeAta { frozen: true, ..ssd() };
    let step = run_se(&mut d);
    assert_eq!(
        (step.outcome, step.capability),
        (StepOutcome::Skipped, Capability::Frozen)
    );
    assert!(!d.sent.contains(&"SECURITY SET PASSWORD"));
    never_left_locked(&d);
}

#[test]
fn aborted_commands_never_complete_and_never_lock() {
    let mut d = FakeAta {
        abort_all: true,
        ..ssd()
    };
    let step = run_se(&mut d);
    assert_eq!(step.outcome, StepOutcome::Failed);
    never_left_locked(&d);
}

#[test]
fn unchanged_content_after_a_firmware_erase_is_caught() {
    assert!(!content_changed("aa", "aa"));
    assert!(content_changed("aa", "bb"));
}

// ---------------------------------------------------------------- namespaces outside the claim

/// A controller with two namespaces, where only nvme0n1 is claimed (nvme0n2 was refused or not
/// chosen): nothing that acts on the whole controller may run, because it would erase nvme0n2 outside
/// any claim and any read-back (issue 15, point 5).
#[test]
fn a_controller_wide_purge_never_erases_a_namespace_that_was_not_claimed() {
    struct Recording {
        inner: FakeNvme,
        sent: Vec<(u8, u32)>,
    }
    impl NvmeDrive for Recording {
        fn admin(&mut self, cmd: PassthruCmd, data: &mut [u8]) -> io::Result<(Status, u32)> {
            self.sent.push((cmd.opcode(), cmd.nsid()));
            self.inner.admin(cmd, data)
        }
    }
    let p = policy();
    let others = vec!["nvme0n2".to_owned()];

    // Sanitize crypto and block supported, Format per namespace (FNA 0x04: crypto erase, this namespace).
    let mut d = Recording {
        inner: nvme(0b011),
        sent: Vec::new(),
    };
    let alone = probe_nvme(&mut d, 1);
    assert_eq!(
        plan(Method::Auto, &alone, false, &p).unwrap().chosen,
        Some(StepKind::NvmeSanitizeCrypto),
        "with one namespace, Sanitize is the purge"
    );
    let shared = alone.clone().sharing_controller_with(others.clone());
    let planned = plan(Method::Auto, &shared, false, &p).unwrap();
    assert_eq!(
        planned.chosen,
        Some(StepKind::NvmeFormatCrypto),
        "the per-namespace Format instead"
    );
    let skipped = planned.skipped_steps();
    for kind in [StepKind::NvmeSanitizeCrypto, StepKind::NvmeSanitizeBlock] {
        let s = skipped.iter().find(|s| s.kind == kind).unwrap();
        assert_eq!(s.capability, Capability::Refused);
        assert!(s.reason.as_deref().unwrap_or_default().contains("nvme0n2"), "{s:?}");
    }
    d.sent.clear();
    let step = run_nvme(
        &mut d,
        StepKind::NvmeFormatCrypto,
        &shared,
        1 << 30,
        &p,
        &mut Counter::default(),
        &mut |_| {},
    );
    assert_eq!(step.outcome, StepOutcome::Completed, "{step:?}");
    assert_eq!(
        d.sent.first(),
        Some(&(0x80, 1)),
        "Format goes to namespace 1 only, never NSID_ALL"
    );

    // A Format that covers every namespace (FNA bit 1) is controller-wide too: overwrite only.
    let mut all = nvme(0b011);
    all.fna = 0x06;
    let shared_all = probe_nvme(&mut all, 1).sharing_controller_with(others.clone());
    assert_eq!(plan(Method::Auto, &shared_all, false, &p).unwrap().chosen, None);
    assert!(
        plan(Method::NvmeSanitizeCrypto, &shared_all, false, &p).is_err(),
        "not even when asked for"
    );

    // And if a caller forces the command anyway, nothing is sent.
    d.sent.clear();
    let step = run_nvme(
        &mut d,
        StepKind::NvmeSanitizeCrypto,
        &shared,
        1 << 30,
        &p,
        &mut Counter::default(),
        &mut |_| {},
    );
    assert_ne!(step.outcome, StepOutcome::Completed);
    assert!(d.sent.is_empty(), "no command reached the drive: {:?}", d.sent);
}

// ---------------------------------------------------------------- locked before planning

/// A power cut during ERASE UNIT leaves the drive locked with Lapterop's password. Before planning it
/// is unlocked and the password removed, so the plan's SANITIZE runs on an open drive; with someone
/// else's password SANITIZE is not planned at all (a locked drive aborts it) and the reason says why
/// (issue 15, point 8).
#[test]
fn a_drive_locked_with_our_password_is_unlocked_before_planning() {
    let p = policy();
    let mut ours = FakeAta {
        locked: true,
        password: Some(ATA_PASSWORD.to_vec()),
        ..ssd()
    };
    let locked_caps = probe_ata(&mut ours);
    let before = plan(Method::Auto, &locked_caps, false, &p).unwrap();
    assert_ne!(
        before.chosen,
        Some(StepKind::AtaSanitizeCrypto),
        "never SANITIZE on a locked drive"
    );
    let (caps, line) = clear_our_password(&mut ours, locked_caps);
    assert!(line.unwrap().contains("unlocked"));
    never_left_locked(&ours);
    assert!(ours.password.is_none(), "the password is disabled too");
    assert_eq!(
        plan(Method::Auto, &caps, false, &p).unwrap().chosen,
        Some(StepKind::AtaSanitizeCrypto)
    );

    let mut theirs = FakeAta {
        locked: true,
        password: Some(b"donor's secret".to_vec()),
        ..ssd()
    };
    let caps = probe_ata(&mut theirs);
    let (caps, line) = clear_our_password(&mut theirs, caps);
    assert!(line.unwrap().contains("does not know"));
    assert!(theirs.locked, "an unknown password is not guessed at");
    let planned = plan(Method::Auto, &caps, false, &p).unwrap();
    // Only the Security Erase path may be planned (it tries the unlock and fails with `locked`).
    assert!(
        matches!(planned.chosen, None | Some(StepKind::AtaSecurityEraseEnhanced)),
        "{:?}",
        planned.chosen
    );
    let s = planned
        .skipped_steps()
        .into_iter()
        .find(|s| s.kind == StepKind::AtaSanitizeCrypto)
        .unwrap();
    assert_eq!(s.capability, Capability::Locked);
    assert!(s.reason.unwrap().contains("locked"));
    assert!(plan(Method::AtaSanitizeCrypto, &caps, false, &p).is_err());
}

#[test]
fn a_drive_without_enhanced_erase_gets_the_normal_one_but_never_through_usb() {
    // A 2014 SATA SSD: Security Erase without the enhanced mode, no SANITIZE.
    let mut d = FakeAta {
        security_supported: true,
        ..Default::default()
    };
    let caps = probe_ata(&mut d);
    let p = plan(Method::Auto, &caps, false, &policy()).unwrap();
    assert_eq!(p.chosen, Some(StepKind::AtaSecurityErase));
    let forced = plan(Method::AtaSecurityErase, &caps, false, &policy()).unwrap();
    assert_eq!(forced.chosen, Some(StepKind::AtaSecurityErase));
    let id = ata_caps(&mut d);
    let step = run_ata_security_erase(&mut d, StepKind::AtaSecurityErase, &id, 1 << 30);
    assert_eq!(step.outcome, StepOutcome::Completed, "{step:?}");
    assert!(d.erased && !StepKind::AtaSecurityErase.is_purge());
    never_left_locked(&d);
    // The enhanced erase on the same drive is refused by the drive, and the password is cleared again.
    let mut e = FakeAta {
        security_supported: true,
        ..Default::default()
    };
    let step = run_ata_security_erase(&mut e, StepKind::AtaSecurityEraseEnhanced, &id, 1 << 30);
    assert_eq!(step.outcome, StepOutcome::Failed);
    never_left_locked(&e);

    // Behind a USB bridge: SANITIZE may run, Security Erase is refused in the plan with the reason.
    let usb = Policy {
        behind_usb_bridge: true,
        ..policy()
    };
    let p = plan(Method::Auto, &caps, false, &usb).unwrap();
    assert_eq!(p.chosen, None);
    let se = p
        .candidates
        .iter()
        .find(|c| c.kind == StepKind::AtaSecurityErase)
        .unwrap();
    assert_eq!(se.capability, Capability::Refused);
    assert!(se.reason.as_deref().unwrap().contains("USB bridge"));
    assert!(plan(Method::AtaSecurityErase, &caps, false, &usb).is_err());
    let sanitizing = probe_ata(&mut ssd());
    assert_eq!(
        plan(Method::Auto, &sanitizing, false, &usb).unwrap().chosen,
        Some(StepKind::AtaSanitizeCrypto)
    );
}

/// Plans `method` for `d` and runs the chain (falling back only under the automatic plan).
fn chain(d: &mut FakeNvme, method: Method) -> Vec<Step> {
    let caps = probe_nvme(d, 1);
    let p = plan(method, &caps, false, &policy()).unwrap();
    let fall_back = method == Method::Auto;
    run_nvme_chain(
        d,
        &p,
        fall_back,
        &caps,
        1 << 30,
        &policy(),
        &mut Counter::default(),
        &mut |_| {},
    )
}

/// A sanitize that fails leaves the drive in its failure state; sent with AUSE = 1 it is left again
/// at once (Exit Failure Mode), and the automatic plan goes on with the next method the drive has
/// (NVMe 2.0 §8.21): the overwrite after it is never blocked by a drive stuck in failure mode.
#[test]
fn a_failed_nvme_sanitize_exits_failure_mode_and_the_next_method_runs() {
    // Crypto erase fails once, block erase then succeeds.
    let mut d = nvme(0b011);
    d.fails = true;
    d.fails_once = true;
    let steps = chain(&mut d, Method::Auto);
    let kinds: Vec<_> = steps.iter().map(|s| (s.kind, s.outcome)).collect();
    assert_eq!(
        kinds,
        [
            (StepKind::NvmeSanitizeCrypto, StepOutcome::Failed),
            (StepKind::NvmeSanitizeBlock, StepOutcome::Completed)
        ]
    );
    assert_eq!(d.sanact, [4, 1, 2], "crypto, exit failure mode, block");
    let fs = steps[0].firmware.as_ref().unwrap().final_state.clone().unwrap();
    assert!(
        fs.contains("Exit Failure Mode: sct 0 sc 0x00 (successful completion)"),
        "{fs}"
    );
    assert!(!d.failure_mode);

    // Every sanitize fails: Format NVM still runs, because the failure mode was left each time.
    let mut d = nvme(0b011);
    d.fails = true;
    let steps = chain(&mut d, Method::Auto);
    let last = steps.last().unwrap();
    assert_eq!(
        (last.kind, last.outcome),
        (StepKind::NvmeFormatCrypto, StepOutcome::Completed)
    );
    assert_eq!(steps.len(), 3);

    // A method named on the command line is tried alone.
    let mut d = nvme(0b011);
    d.fails = true;
    let steps = chain(&mut d, Method::NvmeSanitizeCrypto);
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].outcome, StepOutcome::Failed);

    // Without AUSE (restricted mode) the drive would have refused the exit: the fake says so.
    let mut stuck = nvme(0b001);
    stuck.failure_mode = true;
    stuck.ause_last = false;
    let (s, _) = stuck
        .admin(
            crate::command::nvme::sanitize(crate::command::nvme::SanitizeAction::ExitFailureMode, 0, 0),
            &mut [],
        )
        .unwrap();
    assert!(!s.ok());
}
