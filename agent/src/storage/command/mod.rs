//! Firmware commands for NVMe and ATA drives, as pure functions: every structure we send is built
//! here and checked byte for byte against the specifications in unit tests; every answer is parsed
//! here. The ioctls that carry them live in [`crate::sys`].
//!
//! - [`ata`]: ATA PASS-THROUGH(16) CDBs (IDENTIFY, SMART, hidden areas, SANITIZE, SECURITY) and
//!   parsers for IDENTIFY, SMART data and SANITIZE STATUS.
//! - [`sense`]: SCSI sense data, including the ATA Status Return descriptor.
//! - [`nvme`]: NVMe admin passthrough (Identify, Get Log Page, Format NVM, Sanitize) and parsers.
//! - [`tcg`]: TCG Level 0 Discovery (self-encrypting drives: Opal, Enterprise, Pyrite), sent as NVMe
//!   Security Receive or ATA TRUSTED RECEIVE, and its parser.
//! - [`tcg_session`]: TCG sessions for a PSID Revert (StartSession with the PSID authority, Revert of
//!   the Admin SP) and the parser of the drive's answers.
//! - [`mmc`]: eMMC commands through `MMC_IOC_CMD` (SEND_EXT_CSD, SWITCH for SANITIZE, SEND_STATUS)
//!   and the Extended CSD parser.

pub mod ata;
pub mod mmc;
pub mod nvme;
pub mod sense;
pub mod sys;
pub mod tcg;
pub mod tcg_session;

use ata::Returned;
use sense::Sense;

/// How an ATA pass-through command ended, from SG_IO's status fields and the sense data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtaOutcome {
    /// The command completed; the registers when the drive returned them (CK_COND or an error path).
    Ok(Option<Returned>),
    /// The drive aborted the command (STATUS ERR with ERROR ABRT): unsupported, frozen, wrong password.
    Aborted(Returned),
    /// The drive reported another error.
    Failed(Returned),
    /// The path to the drive does not pass ATA commands through (typical USB bridge or RAID).
    NoPassthrough(String),
    /// A SCSI-level or transport error.
    Error(String),
}

/// SCSI status GOOD.
const GOOD: u8 = 0x00;

/// Classifies the result of an SG_IO call (SAT-4 §12.2.7; `shared/research/wipe.md` §3.2): CHECK
/// CONDITION with DRIVER_SENSE is normal when CK_COND asked for the registers.
pub fn classify_ata(scsi_status: u8, host_status: u16, driver_status: u16, sense: &[u8]) -> AtaOutcome {
    if host_status != 0 {
        return AtaOutcome::Error(format!(
            "transport error (host status {host_status:#x}, driver status {driver_status:#x})"
        ));
    }
    match sense::parse(sense) {
        Sense::Ata(r) if r.failed() && r.aborted() => AtaOutcome::Aborted(r),
        Sense::Ata(r) if r.failed() => AtaOutcome::Failed(r),
        Sense::Ata(r) => AtaOutcome::Ok(Some(r)),
        Sense::Scsi { key: 0 | 1, .. } if scsi_status == GOOD || driver_status & 0x08 != 0 => AtaOutcome::Ok(None),
        s @ Sense::Scsi { key: 5, .. } => AtaOutcome::NoPassthrough(s.describe()),
        s @ Sense::Scsi { .. } => AtaOutcome::Error(s.describe()),
        Sense::Missing if scsi_status == GOOD => AtaOutcome::Ok(None),
        s @ Sense::Missing => AtaOutcome::NoPassthrough(s.describe()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_of_sg_io_results() {
        // Data-in command, no CK_COND: GOOD with no sense.
        assert_eq!(classify_ata(0, 0, 0, &[]), AtaOutcome::Ok(None));
        // CK_COND: CHECK CONDITION (02h), DRIVER_SENSE (08h), ATA descriptor with status 50h.
        let ok = [
            0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 0x0e, 0x09, 0x0c, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x50,
        ];
        assert!(matches!(classify_ata(0x02, 0, 0x08, &ok), AtaOutcome::Ok(Some(r)) if r.status == 0x50));
        // Aborted: status 51h, error 04h (what QEMU's AHCI returns for SECURITY and SANITIZE).
        let mut aborted = ok;
        aborted[11] = 0x04;
        aborted[21] = 0x51;
        assert!(matches!(classify_ata(0x02, 0, 0x08, &aborted), AtaOutcome::Aborted(_)));
        aborted[11] = 0x40; // UNC, not ABRT
        assert!(matches!(classify_ata(0x02, 0, 0x08, &aborted), AtaOutcome::Failed(_)));
        // A USB bridge that rejects ATA_16: fixed sense ILLEGAL REQUEST / invalid opcode.
        let mut fixed = [0u8; 18];
        fixed[0] = 0x70;
        fixed[2] = 0x05;
        fixed[12] = 0x20;
        assert!(matches!(
            classify_ata(0x02, 0, 0x08, &fixed),
            AtaOutcome::NoPassthrough(_)
        ));
        // CHECK CONDITION without any sense at all.
        assert!(matches!(classify_ata(0x02, 0, 0, &[]), AtaOutcome::NoPassthrough(_)));
        // Transport errors (DID_TIME_OUT = 3).
        assert!(matches!(classify_ata(0, 3, 0, &[]), AtaOutcome::Error(_)));
        // MEDIUM ERROR in fixed format.
        fixed[2] = 0x03;
        assert!(matches!(classify_ata(0x02, 0, 0x08, &fixed), AtaOutcome::Error(m) if m.contains("MEDIUM")));
    }
}
