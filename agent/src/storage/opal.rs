//! PSID Revert of a locked self-encrypting (TCG Opal) drive: the 32 characters printed on the drive's
//! label (its PSID) reset it to its factory state, which destroys its media encryption key and every
//! password and locking range. A drive its former owner left locked can then be wiped like any other.
//!
//! Only where the site allows it (`[wipe] opal_psid_revert = true`, or `wipe --psid DEVICE=PSID`),
//! and only after the volunteer typed the PSID and confirmed the plan. The revert is its own step in
//! the certificate (`tcg-psid-revert`); it never counts as the erase: the normal purge, overwrite and
//! read-back follow it. The PSID is held in memory that is zeroed when dropped, shown nowhere, and is
//! neither logged nor written into the certificate.
//!
//! The commands are built in [`crate::command::tcg_session`]; this module carries them as IF-SEND /
//! IF-RECV over the same pass-through paths as Level 0 Discovery (NVMe Security Send / Receive, ATA
//! TRUSTED SEND / RECEIVE) and reads the drive's answers.

use std::time::Duration;

use lapterop_certificate::{Capability, FirmwareEvidence, Step, StepKind, StepOutcome};
use zeroize::Zeroizing;

use crate::command::ata;
use crate::command::tcg::{self, Discovery};
use crate::command::tcg_session::{self as ts, AnswerError, MethodStatus};
use crate::command::{nvme, AtaOutcome};
use crate::firmware::{AtaDrive, NvmeDrive, Waiter};

/// A PSID as typed: exactly 32 letters and digits (spaces and dashes between groups are dropped).
/// Its `Debug` shows nothing of it; its memory is zeroed when it is dropped.
pub struct Psid(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Psid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Psid(hidden)")
    }
}

/// Why a typed PSID is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PsidError {
    /// Not 32 characters.
    #[error("a PSID has 32 characters, this has {0}: type all 32 letters and digits from the drive's label")]
    Length(usize),
    /// Something other than letters and digits.
    #[error("a PSID has only letters and digits: check what you typed against the drive's label")]
    Characters,
}

impl Psid {
    /// Checks a typed PSID. Spaces and dashes are dropped (labels print it in groups); letters are
    /// kept as typed (the drive compares exactly).
    pub fn parse(typed: &str) -> Result<Psid, PsidError> {
        let kept: Zeroizing<Vec<u8>> = Zeroizing::new(
            typed
                .bytes()
                .filter(|b| !b.is_ascii_whitespace() && *b != b'-')
                .collect(),
        );
        if !kept.iter().all(u8::is_ascii_alphanumeric) {
            return Err(PsidError::Characters);
        }
        if kept.len() != 32 {
            return Err(PsidError::Length(kept.len()));
        }
        Ok(Psid(kept))
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// IF-SEND / IF-RECV (TCG Core §3.3.10) to one drive, security protocol 01h.
pub trait TcgTransport {
    /// IF-SEND of `data` to `comid`.
    fn if_send(&mut self, comid: u16, data: &[u8]) -> Result<(), String>;
    /// IF-RECV from `comid` into `data`.
    fn if_recv(&mut self, comid: u16, data: &mut [u8]) -> Result<(), String>;
}

/// An NVMe controller as a TCG transport (Security Send 81h / Security Receive 82h).
#[derive(Debug)]
pub struct NvmeTcg<'a, D: NvmeDrive + ?Sized>(pub &'a mut D);

fn len32(n: usize) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("a transfer of {n} bytes is too long"))
}

impl<D: NvmeDrive + ?Sized> TcgTransport for NvmeTcg<'_, D> {
    fn if_send(&mut self, comid: u16, data: &[u8]) -> Result<(), String> {
        let cmd = nvme::security_send(ts::PROTOCOL, comid, len32(data.len())?);
        let mut buf = Zeroizing::new(data.to_vec());
        match self.0.admin(cmd, &mut buf) {
            Ok((s, _)) if s.ok() => Ok(()),
            Ok((s, _)) => Err(format!("Security Send: {}", s.describe())),
            Err(e) => Err(format!("Security Send: {e}")),
        }
    }

    fn if_recv(&mut self, comid: u16, data: &mut [u8]) -> Result<(), String> {
        let cmd = nvme::security_receive(ts::PROTOCOL, comid, len32(data.len())?);
        match self.0.admin(cmd, data) {
            Ok((s, _)) if s.ok() => Ok(()),
            Ok((s, _)) => Err(format!("Security Receive: {}", s.describe())),
            Err(e) => Err(format!("Security Receive: {e}")),
        }
    }
}

/// An ATA drive as a TCG transport (TRUSTED SEND 5Eh / TRUSTED RECEIVE 5Ch through SAT).
#[derive(Debug)]
pub struct AtaTcg<'a, D: AtaDrive + ?Sized>(pub &'a mut D);

fn blocks(n: usize) -> Result<u16, String> {
    if n % 512 != 0 {
        return Err(format!("a transfer of {n} bytes is not whole 512-byte blocks"));
    }
    u16::try_from(n / 512).map_err(|_| format!("a transfer of {n} bytes is too long"))
}

impl<D: AtaDrive + ?Sized> TcgTransport for AtaTcg<'_, D> {
    fn if_send(&mut self, comid: u16, data: &[u8]) -> Result<(), String> {
        let cmd = ata::trusted_send("TRUSTED SEND (TCG IF-SEND)", ts::PROTOCOL, comid, blocks(data.len())?);
        let mut buf = Zeroizing::new(data.to_vec());
        match self.0.run(&cmd, &mut buf) {
            Ok(AtaOutcome::Ok(_)) => Ok(()),
            Ok(other) => Err(format!("{}: {other:?}", cmd.name)),
            Err(e) => Err(format!("{}: {e}", cmd.name)),
        }
    }

    fn if_recv(&mut self, comid: u16, data: &mut [u8]) -> Result<(), String> {
        let cmd = ata::trusted_receive(
            "TRUSTED RECEIVE (TCG IF-RECV)",
            ts::PROTOCOL,
            comid,
            blocks(data.len())?,
        );
        match self.0.run(&cmd, data) {
            Ok(AtaOutcome::Ok(_)) => Ok(()),
            Ok(other) => Err(format!("{}: {other:?}", cmd.name)),
            Err(e) => Err(format!("{}: {e}", cmd.name)),
        }
    }
}

/// Level 0 Discovery through any transport; `None` when the drive does not answer with one.
pub fn discovery(t: &mut dyn TcgTransport) -> Option<Discovery> {
    let mut d = vec![0u8; tcg::DISCOVERY_LEN as usize];
    t.if_recv(tcg::LEVEL0_COMID, &mut d).ok()?;
    tcg::parse_discovery(&d).ok()
}

/// How long to wait for an answer the drive has not finished (OutstandingData > 0, MinTransfer 0).
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// Between two IF-RECVs.
    pub interval: Duration,
    /// IF-RECVs at most per answer.
    pub max_polls: u32,
}

impl Default for Patience {
    /// Up to 20 minutes, every half second (a Revert erases the key in seconds; Pyrite drives without
    /// encryption may overwrite instead).
    fn default() -> Self {
        Patience {
            interval: Duration::from_millis(500),
            max_polls: 2400,
        }
    }
}

/// The drive's answer on `comid`, asked again while it is not ready. Counts every IF-RECV in `polls`.
fn receive(
    t: &mut dyn TcgTransport,
    comid: u16,
    patience: Patience,
    wait: &mut dyn Waiter,
    polls: &mut u32,
) -> Result<ts::Answer, String> {
    for _ in 0..patience.max_polls.max(1) {
        let mut buf = Zeroizing::new(vec![0u8; ts::TRANSFER_LEN]);
        t.if_recv(comid, &mut buf)?;
        *polls += 1;
        match ts::parse_answer(&buf) {
            Err(AnswerError::Pending) => wait.wait(patience.interval),
            Err(e) => return Err(format!("reading the drive's answer: {e}")),
            Ok(a) => return Ok(a),
        }
    }
    Err(format!(
        "the drive had not answered after {} tries over {:?}",
        patience.max_polls,
        patience.interval * patience.max_polls
    ))
}

/// What a refused StartSession means for the person at the laptop.
fn session_refused(s: MethodStatus) -> String {
    let what = match s {
        MethodStatus::NotAuthorized => {
            "the PSID was refused: check the 32 characters on the drive label (letters and digits exactly as \
             printed; 0 and O, 1 and I look alike) and run the job again with it"
                .to_owned()
        }
        MethodStatus::AuthorityLockedOut => {
            "the drive refuses every PSID after too many wrong tries: switch the laptop off completely, switch it on \
             again and type the PSID from the label once more"
                .to_owned()
        }
        MethodStatus::SpBusy | MethodStatus::NoSessionsAvailable => {
            "the drive is busy with another session: switch the laptop off and on and try again".to_owned()
        }
        other => format!(
            "the drive refused to open a session with its PSID ({}): reset it with its maker's tool or set it aside \
             for destruction",
            other.describe()
        ),
    };
    format!("{what}; nothing was changed on the disk")
}

/// Runs a PSID Revert on a drive whose SSC announced `comid` as its base ComID, then checks with
/// Level 0 Discovery that no range is locked any more. The step is `completed` only then; it
/// records the method statuses and the final discovery, never the PSID. `capacity` is the bytes the
/// revert addresses (the whole drive).
pub fn psid_revert(
    t: &mut dyn TcgTransport,
    comid: u16,
    psid: &Psid,
    capacity: u64,
    patience: Patience,
    wait: &mut dyn Waiter,
) -> Step {
    let started = lapterop_certificate::now_utc();
    let command = format!(
        "TCG IF-SEND protocol 0x01 ComID {comid:#06x}: SMUID.StartSession(SPID Admin SP 0000020500000001, \
         HostSigningAuthority PSID 000000090001FF01, HostChallenge = the PSID, not recorded); \
         AdminSP.Revert (0000000600000202)"
    );
    let mut polls = 0;
    let mut statuses = Vec::new();
    let end = |outcome: StepOutcome, reason: Option<String>, statuses: &[String], polls: u32, last: Option<String>| {
        crate::firmware::ran(
            StepKind::TcgPsidRevert,
            Capability::Locked,
            outcome,
            reason,
            capacity,
            FirmwareEvidence {
                command: command.clone(),
                status: if statuses.is_empty() {
                    "no answer".into()
                } else {
                    statuses.join("; ")
                },
                polls,
                final_state: last,
            },
            started.clone(),
        )
    };
    let failed = |why: String| Some(format!("PSID Revert: {why}"));

    if let Err(why) = start_and_revert(t, comid, psid, patience, wait, &mut polls, &mut statuses) {
        return end(StepOutcome::Failed, failed(why), &statuses, polls, None);
    }

    // The drive said SUCCESS; it counts only when it also says its ranges are open.
    let after = discovery(t);
    let last = after.as_ref().map(|d| {
        format!(
            "Level 0 Discovery after: locking enabled {}, locked {}, shadow MBR shown {}",
            d.locking_enabled, d.locked, d.shadow_mbr_shown
        )
    });
    match after {
        Some(d) if d.blocker().is_none() => end(StepOutcome::Completed, None, &statuses, polls, last),
        Some(d) => end(
            StepOutcome::Failed,
            failed(format!(
                "the drive answered SUCCESS but still reports: {}",
                d.blocker().unwrap_or_default()
            )),
            &statuses,
            polls,
            last,
        ),
        None => end(
            StepOutcome::Failed,
            failed("the drive answered SUCCESS but no Level 0 Discovery afterwards to confirm it is unlocked".into()),
            &statuses,
            polls,
            last,
        ),
    }
}

/// StartSession with the PSID, then Revert of the Admin SP in that session. Each method status is
/// added to `statuses`; the error is why the revert did not happen.
fn start_and_revert(
    t: &mut dyn TcgTransport,
    comid: u16,
    psid: &Psid,
    patience: Patience,
    wait: &mut dyn Waiter,
    polls: &mut u32,
    statuses: &mut Vec<String>,
) -> Result<(), String> {
    // The buffer holding the PSID is zeroed when it goes.
    let request = Zeroizing::new(ts::start_psid_session(comid, psid.bytes()));
    t.if_send(comid, &request)
        .map_err(|e| format!("{e}; nothing was changed on the disk"))?;
    drop(request);
    let answer = receive(t, comid, patience, wait, polls)?;
    let status = answer.status();
    statuses.push(format!(
        "StartSession {}",
        status.clone().map_or_else(|e| e.to_string(), MethodStatus::describe)
    ));
    match status {
        Ok(MethodStatus::Success) => {}
        Ok(s) => return Err(session_refused(s)),
        Err(e) => return Err(format!("StartSession: {e}")),
    }
    let (tsn, hsn) = answer
        .sync_session()
        .map_err(|_| "the drive's answer to StartSession is not a SyncSession; nothing was changed".to_string())?;

    t.if_send(comid, &ts::revert_admin_sp(comid, tsn, hsn))
        .map_err(|e| format!("Revert: {e}"))?;
    let answer = receive(t, comid, patience, wait, polls).map_err(|e| format!("Revert: {e}"))?;
    let status = answer.status();
    statuses.push(format!(
        "Revert {}",
        status.clone().map_or_else(|e| e.to_string(), MethodStatus::describe)
    ));
    match status {
        Ok(MethodStatus::Success) => Ok(()),
        Ok(s) => Err(format!(
            "the drive accepted the PSID but refused the Revert ({}): reset it with its maker's tool or set it \
             aside for destruction",
            s.describe()
        )),
        Err(e) => Err(format!("Revert: {e}")),
    }
}

/// A locked self-encrypting drive found while planning, that the site allows to revert: what it is,
/// and the revert to run once a PSID is given (after the plan is confirmed, before anything else is
/// written).
pub struct LockedSed {
    /// Why it cannot be wiped as it is (the Level 0 Discovery blocker).
    pub why: String,
    run: Box<dyn FnOnce(&Psid) -> Step + Send>,
    psid: Option<Psid>,
}

impl std::fmt::Debug for LockedSed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockedSed")
            .field("why", &self.why)
            .field("psid_given", &self.psid.is_some())
            .finish_non_exhaustive()
    }
}

impl LockedSed {
    /// A locked drive and how to revert it.
    pub fn new(why: String, run: Box<dyn FnOnce(&Psid) -> Step + Send>) -> Self {
        LockedSed { why, run, psid: None }
    }

    /// The PSID the volunteer typed; the revert runs at the start of this disk's wipe.
    pub fn give_psid(&mut self, psid: Psid) {
        self.psid = Some(psid);
    }

    /// Whether a PSID was given.
    pub fn has_psid(&self) -> bool {
        self.psid.is_some()
    }

    /// Runs the revert if a PSID was given (the PSID is dropped, and zeroed, right after).
    pub fn run(self) -> Option<Step> {
        let psid = self.psid?;
        Some((self.run)(&psid))
    }
}

/// Whether a drive with this discovery is one a PSID Revert can open: locked (or showing its shadow
/// MBR), a class with the PSID feature set (not Enterprise), and a base ComID to talk to.
pub fn revertible(d: &Discovery) -> Option<u16> {
    if d.blocker().is_none() || d.ssc == Some(tcg::Ssc::Enterprise) {
        return None;
    }
    d.base_comid.filter(|c| *c != 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::command::tcg_session::tests::{method_status, sync_session, PSID};
    use crate::command::tcg_session::{token, ADMIN_SP, REVERT, SMUID, START_SESSION};

    /// A self-encrypting drive as a state machine at the IF-SEND / IF-RECV boundary: Level 0 Discovery
    /// on ComID 0001h says locked until a Revert succeeded; StartSession on ComID 07FEh is accepted
    /// only with `psid`, Revert only inside that session. `pending` answers "not ready" that many
    /// times before the Revert's status.
    pub(crate) struct FakeSed {
        pub psid: Vec<u8>,
        pub locked: bool,
        pub session: Option<u32>,
        pub queued: Option<Vec<u8>>,
        pub pending: u32,
        pub reverts: u32,
        /// Every IF-SEND's first bytes of payload, to check what was sent.
        pub sent: Vec<Vec<u8>>,
        /// The revert "succeeds" but the drive stays locked (a broken firmware).
        pub stays_locked: bool,
    }

    impl FakeSed {
        pub(crate) fn new() -> Self {
            FakeSed {
                psid: PSID.to_vec(),
                locked: true,
                session: None,
                queued: None,
                pending: 0,
                reverts: 0,
                sent: Vec::new(),
                stays_locked: false,
            }
        }
    }

    const COMID: u16 = 0x07fe;

    impl TcgTransport for FakeSed {
        fn if_send(&mut self, comid: u16, data: &[u8]) -> Result<(), String> {
            assert_eq!(comid, COMID, "sessions go to the base ComID");
            assert_eq!(data.len(), ts::TRANSFER_LEN);
            assert_eq!(&data[4..6], &COMID.to_be_bytes(), "ComPacket ComID");
            let a = ts::parse_answer(data).map_err(|e| e.to_string())?;
            let t = &a.tokens;
            self.sent.push(data[56..76].to_vec());
            let call = |obj: &[u8], m: &[u8]| {
                t.first() == Some(&ts::Token::Control(token::CALL))
                    && t.get(1) == Some(&ts::Token::Bytes(obj.to_vec()))
                    && t.get(2) == Some(&ts::Token::Bytes(m.to_vec()))
            };
            if call(&SMUID, &START_SESSION) {
                // [HSN SPID Write StartName 0 challenge EndName StartName 3 authority EndName]
                let challenge = t.get(9);
                self.queued = Some(if challenge == Some(&ts::Token::Bytes(self.psid.clone())) {
                    self.session = Some(0x1001);
                    sync_session(COMID, 0x1001, 0x00)
                } else {
                    method_status(COMID, 0, 0, 0x01)
                });
            } else if call(&ADMIN_SP, &REVERT) {
                let ok = self.session.is_some() && Some(a.tsn) == self.session && a.hsn == ts::HOST_SESSION;
                self.queued = Some(if ok {
                    self.reverts += 1;
                    self.locked = self.stays_locked;
                    self.session = None;
                    method_status(COMID, 0x1001, ts::HOST_SESSION, 0x00)
                } else {
                    method_status(COMID, a.tsn, a.hsn, 0x01)
                });
            } else {
                self.queued = Some(method_status(COMID, 0, 0, 0x0c));
            }
            Ok(())
        }

        fn if_recv(&mut self, comid: u16, data: &mut [u8]) -> Result<(), String> {
            if comid == tcg::LEVEL0_COMID {
                let d = crate::command::tcg::tests::opal2(if self.locked { 0x0f } else { 0x09 });
                data.copy_from_slice(&d[..data.len()]);
                return Ok(());
            }
            data.fill(0);
            if self.pending > 0 && self.reverts > 0 {
                self.pending -= 1;
                data[8..12].copy_from_slice(&1u32.to_be_bytes());
                return Ok(());
            }
            if let Some(q) = self.queued.take() {
                data.copy_from_slice(&q[..data.len()]);
            }
            Ok(())
        }
    }

    /// Counts waits instead of waiting.
    pub(crate) struct Count(pub u32);

    impl Waiter for Count {
        fn wait(&mut self, _: Duration) {
            self.0 += 1;
        }
    }

    fn quick() -> Patience {
        Patience {
            interval: Duration::from_millis(1),
            max_polls: 5,
        }
    }

    #[test]
    fn the_right_psid_reverts_a_locked_drive_and_it_reports_unlocked() {
        let mut drive = FakeSed::new();
        drive.pending = 2;
        let d = discovery(&mut drive).unwrap();
        assert_eq!(revertible(&d), Some(COMID));
        let psid = Psid::parse(std::str::from_utf8(PSID).unwrap()).unwrap();
        let mut waits = Count(0);
        let step = psid_revert(&mut drive, COMID, &psid, 1 << 30, quick(), &mut waits);
        assert_eq!(step.kind, StepKind::TcgPsidRevert);
        assert_eq!(step.outcome, StepOutcome::Completed, "{:?}", step.reason);
        assert_eq!(drive.reverts, 1);
        assert!(!drive.locked);
        assert_eq!(waits.0, 2, "the two not-ready answers were asked again");
        let ev = step.firmware.as_ref().unwrap();
        assert_eq!(ev.status, "StartSession 0x00 SUCCESS; Revert 0x00 SUCCESS");
        assert_eq!(ev.polls, 4);
        assert!(ev.final_state.as_ref().unwrap().contains("locked false"));
        assert_eq!(step.bytes, 1 << 30);
        // The PSID is nowhere in what the certificate gets.
        let json = serde_json::to_string(&step).unwrap();
        assert!(!json.contains(std::str::from_utf8(PSID).unwrap()));
        assert!(!format!("{psid:?}").contains("0123"));
        assert!(revertible(&discovery(&mut drive).unwrap()).is_none());
    }

    #[test]
    fn a_wrong_psid_is_not_authorized_and_nothing_else_is_sent() {
        let mut drive = FakeSed::new();
        let wrong = Psid::parse("0123456789ABCDEFGHIJKLMNOPQRSTUW").unwrap();
        let step = psid_revert(&mut drive, COMID, &wrong, 1 << 30, quick(), &mut Count(0));
        assert_eq!(step.outcome, StepOutcome::Failed);
        let reason = step.reason.unwrap();
        assert!(
            reason.contains("the PSID was refused: check the 32 characters on the drive label"),
            "{reason}"
        );
        assert!(reason.contains("nothing was changed"));
        assert_eq!(step.bytes, 0);
        assert_eq!(step.firmware.unwrap().status, "StartSession 0x01 NOT_AUTHORIZED");
        assert_eq!(drive.sent.len(), 1, "no Revert after a refused session");
        assert_eq!((drive.reverts, drive.locked), (0, true));
    }

    #[test]
    fn success_without_an_unlocked_drive_is_a_failure() {
        let mut drive = FakeSed::new();
        drive.stays_locked = true;
        let psid = Psid::parse(std::str::from_utf8(PSID).unwrap()).unwrap();
        let step = psid_revert(&mut drive, COMID, &psid, 1 << 30, quick(), &mut Count(0));
        assert_eq!(step.outcome, StepOutcome::Failed);
        assert!(step.reason.unwrap().contains("still reports"));
    }

    #[test]
    fn a_drive_that_never_answers_gives_up() {
        let mut drive = FakeSed::new();
        drive.pending = 100;
        let psid = Psid::parse(std::str::from_utf8(PSID).unwrap()).unwrap();
        let mut waits = Count(0);
        let step = psid_revert(&mut drive, COMID, &psid, 1, quick(), &mut waits);
        assert_eq!(step.outcome, StepOutcome::Failed);
        assert!(step.reason.unwrap().contains("had not answered after 5 tries"));
        assert_eq!(waits.0, 5);
    }

    #[test]
    fn psids_are_checked_and_never_shown() {
        assert!(Psid::parse("01234567 89ABCDEF-GHIJKLMN OPQRSTUV").is_ok());
        assert_eq!(Psid::parse("0123").unwrap_err(), PsidError::Length(4));
        assert_eq!(
            Psid::parse("0123456789ABCDEFGHIJKLMNOPQRSTU!").unwrap_err(),
            PsidError::Characters
        );
        let p = Psid::parse("0123456789ABCDEFGHIJKLMNOPQRSTUV").unwrap();
        assert_eq!(format!("{p:?}"), "Psid(hidden)");
    }

    #[test]
    fn only_locked_non_enterprise_drives_with_a_comid_are_revertible() {
        let open = tcg::parse_discovery(&crate::command::tcg::tests::opal2(0x09)).unwrap();
        assert_eq!(revertible(&open), None, "nothing to revert on an unlocked drive");
        let mut locked = tcg::parse_discovery(&crate::command::tcg::tests::opal2(0x0f)).unwrap();
        assert_eq!(revertible(&locked), Some(0x07fe));
        locked.ssc = Some(tcg::Ssc::Enterprise);
        assert_eq!(revertible(&locked), None, "Enterprise drives have no PSID feature set");
        locked.ssc = Some(tcg::Ssc::Opal2);
        locked.base_comid = None;
        assert_eq!(revertible(&locked), None);
    }

    /// The same drive behind an NVMe controller: Security Send / Receive carry the TCG payloads.
    struct NvmeSed(FakeSed);

    impl NvmeDrive for NvmeSed {
        fn admin(&mut self, cmd: nvme::PassthruCmd, data: &mut [u8]) -> std::io::Result<(nvme::Status, u32)> {
            // NVMe 2.0 Security Send 81h / Receive 82h: cdw10 = SECP 01h << 24 | SPSP (ComID) << 8,
            // cdw11 = transfer / allocation length.
            assert_eq!(cmd.cdw10() >> 24, 0x01);
            let comid = u16::try_from((cmd.cdw10() >> 8) & 0xffff).unwrap();
            assert_eq!(cmd.to_bytes()[44..48], u32::try_from(data.len()).unwrap().to_le_bytes());
            match cmd.opcode() {
                0x81 => self.0.if_send(comid, data).unwrap(),
                0x82 => self.0.if_recv(comid, data).unwrap(),
                op => panic!("unexpected opcode {op:#x}"),
            }
            Ok((nvme::Status::from_ioctl(0), 0))
        }
    }

    /// The same drive behind SAT: TRUSTED SEND / RECEIVE.
    struct AtaSed(FakeSed);

    impl AtaDrive for AtaSed {
        fn run(&mut self, cmd: &ata::AtaCommand, data: &mut [u8]) -> std::io::Result<AtaOutcome> {
            // ACS-3 §7.57/§7.59 through SAT ATA PASS-THROUGH(16): FEATURE 7:0 (byte 4) = protocol,
            // COUNT 7:0 (byte 6) = 512-byte blocks, LBA 7:0 (byte 8) = length 15:8, LBA 15:8 and
            // 23:16 (bytes 10, 12) = ComID, COMMAND (byte 14).
            assert_eq!(cmd.cdb[0], 0x85);
            assert_eq!(cmd.cdb[4], 0x01);
            assert_eq!(usize::from(cmd.cdb[6]) * 512, data.len());
            let comid = u16::from(cmd.cdb[12]) << 8 | u16::from(cmd.cdb[10]);
            match (cmd.cdb[14], cmd.cdb[1] >> 1 & 0x0f) {
                (0x5e, 5) => self.0.if_send(comid, data).unwrap(),
                (0x5c, 4) => self.0.if_recv(comid, data).unwrap(),
                other => panic!("unexpected command {other:?}"),
            }
            Ok(AtaOutcome::Ok(None))
        }
    }

    #[test]
    fn the_revert_runs_through_nvme_security_send_and_ata_trusted_send() {
        let psid = Psid::parse(std::str::from_utf8(PSID).unwrap()).unwrap();
        let mut n = NvmeSed(FakeSed::new());
        let comid = revertible(&crate::drive::tcg_nvme(&mut n).unwrap()).unwrap();
        let step = psid_revert(&mut NvmeTcg(&mut n), comid, &psid, 1, quick(), &mut Count(0));
        assert_eq!(step.outcome, StepOutcome::Completed, "{:?}", step.reason);
        assert!(!n.0.locked);
        let mut a = AtaSed(FakeSed::new());
        let comid = revertible(&crate::drive::tcg_ata(&mut a).unwrap()).unwrap();
        let step = psid_revert(&mut AtaTcg(&mut a), comid, &psid, 1, quick(), &mut Count(0));
        assert_eq!(step.outcome, StepOutcome::Completed, "{:?}", step.reason);
        assert!(!a.0.locked);
        // ATA TRUSTED SEND of 2048 bytes: CDB 85h, PIO data-out (5 << 1), T_DIR 0, BYTE_BLOCK 1,
        // T_LENGTH in COUNT (06h), FEATURE 01h, COUNT 04h, LBA 7:0 00h, LBA 15:8 FEh, 23:16 07h, 5Eh.
        let c = ata::trusted_send("x", 0x01, 0x07fe, 4);
        assert_eq!(
            c.cdb,
            [0x85, 0x0a, 0x06, 0, 0x01, 0, 0x04, 0, 0x00, 0, 0xfe, 0, 0x07, 0x40, 0x5e, 0]
        );
        // NVMe Security Send: opcode 81h, cdw10 = 01h << 24 | 07FEh << 8, cdw11 = 2048.
        assert_eq!(
            nvme::security_send(0x01, 0x07fe, 2048).describe(),
            "nvme admin opc=0x81 nsid=0 cdw10=0x0107fe00 cdw11=0x00000800"
        );
    }
}
