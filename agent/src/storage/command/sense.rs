//! SCSI sense data as returned by SG_IO for ATA PASS-THROUGH, parsed into what the caller needs:
//! the ATA registers (ATA Status Return descriptor), or the sense key and additional sense code of a
//! SCSI-level error, or "no usable sense" (typical of USB bridges without pass-through).
//!
//! References: SPC-5 §4.4 (descriptor format 72h/73h, fixed format 70h/71h), SAT-4 §12.2.7 (ATA Status
//! Return sense data descriptor, code 09h), and `shared/research/wipe.md` §3.2.

use super::ata::Returned;

/// What the sense buffer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sense {
    /// The ATA registers came back (the command reached the drive).
    Ata(Returned),
    /// A SCSI error without ATA registers.
    Scsi {
        /// Sense key (4 bits).
        key: u8,
        /// Additional sense code.
        asc: u8,
        /// Additional sense code qualifier.
        ascq: u8,
    },
    /// No sense data, or none we can read: the transport does not pass ATA commands through.
    Missing,
}

impl Sense {
    /// Words for logs: "ILLEGAL REQUEST, invalid command operation code", ...
    pub fn describe(&self) -> String {
        match self {
            Self::Ata(r) => format!("ATA status {:#04x} error {:#04x}", r.status, r.error),
            Self::Scsi { key, asc, ascq } => format!("{} (asc {asc:#04x} ascq {ascq:#04x})", sense_key_name(*key)),
            Self::Missing => {
                "no ATA sense data: the controller or USB bridge does not pass ATA commands through".into()
            }
        }
    }
}

/// SPC-5 table 48.
pub fn sense_key_name(key: u8) -> &'static str {
    match key & 0x0f {
        0x0 => "NO SENSE",
        0x1 => "RECOVERED ERROR",
        0x2 => "NOT READY",
        0x3 => "MEDIUM ERROR",
        0x4 => "HARDWARE ERROR",
        0x5 => "ILLEGAL REQUEST",
        0x6 => "UNIT ATTENTION",
        0x7 => "DATA PROTECT",
        0xb => "ABORTED COMMAND",
        _ => "OTHER",
    }
}

/// Parses a sense buffer (`sb_len_wr` bytes of it).
pub fn parse(sb: &[u8]) -> Sense {
    let Some(&code) = sb.first() else { return Sense::Missing };
    match code & 0x7f {
        0x72 | 0x73 if sb.len() >= 8 => {
            let key = sb[1] & 0x0f;
            let (asc, ascq) = (sb[2], sb[3]);
            let additional = usize::from(sb[7]);
            let end = (8 + additional).min(sb.len());
            let mut at = 8;
            while at + 2 <= end {
                let (dtype, dlen) = (sb[at], usize::from(sb[at + 1]));
                if dtype == 0x09 && dlen >= 0x0c && at + 14 <= end {
                    return Sense::Ata(ata_status_return(&sb[at..at + 14]));
                }
                at += 2 + dlen;
            }
            Sense::Scsi { key, asc, ascq }
        }
        0x70 | 0x71 if sb.len() >= 14 => Sense::Scsi {
            key: sb[2] & 0x0f,
            asc: sb[12],
            ascq: sb[13],
        },
        _ => Sense::Missing,
    }
}

/// SAT-4 table 209: ATA Status Return descriptor. Byte 2 bit 0 EXTEND; 3 error; 4/5 count 15:8/7:0;
/// 6/7 LBA 31:24 / 7:0; 8/9 LBA 39:32 / 15:8; 10/11 LBA 47:40 / 23:16; 12 device; 13 status.
fn ata_status_return(d: &[u8]) -> Returned {
    let extend = d[2] & 1 != 0;
    let hi = |b: u8| if extend { b } else { 0 };
    let lba = u64::from(d[7])
        | u64::from(d[9]) << 8
        | u64::from(d[11]) << 16
        | u64::from(hi(d[6])) << 24
        | u64::from(hi(d[8])) << 32
        | u64::from(hi(d[10])) << 40;
    Returned {
        error: d[3],
        count: u16::from(d[5]) | u16::from(hi(d[4])) << 8,
        lba,
        device: d[12],
        status: d[13],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Descriptor sense with an ATA Status Return descriptor as a SANITIZE STATUS EXT returns it
    /// (CK_COND=1): sense key RECOVERED ERROR, ASC/ASCQ 00h/1Dh "ATA pass through information available".
    #[test]
    fn ata_status_return_descriptor() {
        let sb = [
            0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 0x0e, // header, additional length 14
            0x09, 0x0c, 0x01, 0x00, // descriptor 09h, length 0Ch, EXTEND, error 0
            0x80, 0x00, // count 15:8 = 80h (succeeded), 7:0
            0x00, 0xff, 0x00, 0xff, 0x00, 0x00, // LBA: 31:24, 7:0, 39:32, 15:8, 47:40, 23:16
            0x40, 0x50, // device, status (DRDY|DSC)
        ];
        let Sense::Ata(r) = parse(&sb) else {
            panic!("expected ATA registers")
        };
        assert_eq!(r.count, 0x8000);
        assert_eq!(r.lba, 0xffff);
        assert_eq!(r.status, 0x50);
        assert!(!r.failed());
        let s = crate::command::ata::sanitize_status(&r);
        assert!(s.succeeded && s.progress == 0xffff);
    }

    /// READ NATIVE MAX ADDRESS EXT answer: LBA 47:0 = 0x3a386030 - 1 (a 500 GB disk), non-extended
    /// bytes ignored when EXTEND is 0.
    #[test]
    fn lba_assembles_in_sat_order() {
        let mut sb = vec![
            0x72, 0x01, 0x00, 0x1d, 0, 0, 0, 0x0e, 0x09, 0x0c, 0x01, 0x00, 0x00, 0x00,
        ];
        sb.extend([0x3a, 0x2f, 0x00, 0x60, 0x00, 0x38, 0x40, 0x50]);
        let Sense::Ata(r) = parse(&sb) else { panic!() };
        assert_eq!(r.lba, 0x3a38_602f);
        sb[10] = 0x00; // EXTEND clear: only LBA 23:0
        let Sense::Ata(r) = parse(&sb) else { panic!() };
        assert_eq!(r.lba, 0x38_602f);
    }

    #[test]
    fn aborted_command_has_err_and_abrt() {
        let sb = [
            0x72, 0x0b, 0x00, 0x00, 0, 0, 0, 0x0e, 0x09, 0x0c, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x51,
        ];
        let Sense::Ata(r) = parse(&sb) else { panic!() };
        assert!(r.failed() && r.aborted());
    }

    /// Fixed-format sense from a bridge that refuses ATA_16: ILLEGAL REQUEST, invalid opcode (20h/00h).
    #[test]
    fn fixed_format_and_missing_sense() {
        let mut sb = [0u8; 18];
        sb[0] = 0x70;
        sb[2] = 0x05;
        sb[12] = 0x20;
        assert_eq!(
            parse(&sb),
            Sense::Scsi {
                key: 5,
                asc: 0x20,
                ascq: 0
            }
        );
        assert!(parse(&sb).describe().contains("ILLEGAL REQUEST"));
        assert_eq!(parse(&[]), Sense::Missing);
        assert_eq!(parse(&[0x72, 0x00]), Sense::Missing);
        // Descriptor sense without the ATA descriptor: a SCSI error.
        assert_eq!(
            parse(&[0x72, 0x05, 0x24, 0x00, 0, 0, 0, 0]),
            Sense::Scsi {
                key: 5,
                asc: 0x24,
                ascq: 0
            }
        );
        // A descriptor that claims more bytes than were written is not read past the end.
        assert!(matches!(
            parse(&[0x72, 0x01, 0, 0x1d, 0, 0, 0, 0x0e, 0x09, 0x0c, 1]),
            Sense::Scsi { .. }
        ));
    }
}
