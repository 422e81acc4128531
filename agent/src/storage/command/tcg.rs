//! TCG Level 0 Discovery: whether a drive is self-encrypting (Opal, Opalite, Pyrite, Ruby,
//! Enterprise) and whether its locking is on and a range is locked. A locked Opal drive answers
//! every read and write of a locked range with an error, which without this looks like a dying disk.
//!
//! The request is IF-RECV with security protocol 01h and ComID 0001h (TCG Storage Architecture Core
//! Specification 2.01 §3.3.6 "Level 0 Discovery"), carried by NVMe Security Receive
//! ([`super::nvme::tcg_level0_discovery`]) or ATA TRUSTED RECEIVE ([`super::ata::tcg_level0_discovery`]).
//! The answer (Core §3.3.6.3, Opal SSC 2.01 §3.1.1): a 48-byte header whose first four bytes are the
//! length of what follows (big endian), then feature descriptors of `code (2 bytes, BE), version
//! (4 bits), length (1 byte), data`.

/// Security protocol of TCG Level 0 Discovery.
pub const PROTOCOL: u8 = 0x01;
/// ComID of Level 0 Discovery.
pub const LEVEL0_COMID: u16 = 0x0001;
/// Bytes asked for (four 512-byte blocks).
pub const DISCOVERY_LEN: u32 = 2048;

/// The security subsystem class the drive implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ssc {
    /// Enterprise SSC (0100h).
    Enterprise,
    /// Opal SSC 1.0 (0200h).
    Opal1,
    /// Opal SSC 2.0 (0203h).
    Opal2,
    /// Opalite (0301h).
    Opalite,
    /// Pyrite 1.0 (0302h) / 2.0 (0303h): locking without encryption.
    Pyrite,
    /// Ruby (0304h).
    Ruby,
}

impl Ssc {
    fn from_code(code: u16) -> Option<Ssc> {
        Some(match code {
            0x0100 => Ssc::Enterprise,
            0x0200 => Ssc::Opal1,
            0x0203 => Ssc::Opal2,
            0x0301 => Ssc::Opalite,
            0x0302 | 0x0303 => Ssc::Pyrite,
            0x0304 => Ssc::Ruby,
            _ => return None,
        })
    }

    /// The class's name as drive labels and tools print it.
    pub fn name(self) -> &'static str {
        match self {
            Ssc::Enterprise => "TCG Enterprise",
            Ssc::Opal1 => "TCG Opal 1.0",
            Ssc::Opal2 => "TCG Opal 2",
            Ssc::Opalite => "TCG Opalite",
            Ssc::Pyrite => "TCG Pyrite",
            Ssc::Ruby => "TCG Ruby",
        }
    }
}

/// What Level 0 Discovery says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discovery {
    /// The security subsystem class, if the drive reports one.
    pub ssc: Option<Ssc>,
    /// Base ComID of the SSC (for a later session).
    pub base_comid: Option<u16>,
    /// Locking feature (0002h) present and supported.
    pub locking_supported: bool,
    /// Locking is enabled (a locking range has a password).
    pub locking_enabled: bool,
    /// At least one range is locked now.
    pub locked: bool,
    /// The drive encrypts the media.
    pub media_encryption: bool,
    /// The shadow MBR is on and not done: the host sees the pre-boot image, not the data.
    pub shadow_mbr_shown: bool,
}

impl Discovery {
    /// Why this drive cannot be wiped as it is, for the plan and the pre-flight.
    pub fn blocker(&self) -> Option<String> {
        let class = self.ssc.map_or("self-encrypting", Ssc::name);
        if self.locked {
            return Some(format!(
                "{class} drive with locking on and a range locked: reads and writes of it fail until it is unlocked \
                 or reset with its PSID (the code on the drive's label)"
            ));
        }
        if self.shadow_mbr_shown {
            return Some(format!(
                "{class} drive shows its shadow MBR (pre-boot authentication): the data area is hidden until it is \
                 unlocked or reset with its PSID"
            ));
        }
        None
    }
}

/// Why the answer is not Level 0 Discovery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// Shorter than its header.
    #[error("Level 0 Discovery answer is {0} bytes, shorter than its 48-byte header")]
    Short(usize),
    /// The length field is zero: the drive has no TCG security subsystem.
    #[error("no TCG security subsystem (Level 0 Discovery is empty)")]
    Empty,
}

/// Parses a Level 0 Discovery answer. Descriptors past the buffer or the stated length are ignored.
pub fn parse_discovery(d: &[u8]) -> Result<Discovery, DiscoveryError> {
    if d.len() < 48 {
        return Err(DiscoveryError::Short(d.len()));
    }
    let stated = usize::try_from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])).unwrap_or(usize::MAX);
    if stated == 0 {
        return Err(DiscoveryError::Empty);
    }
    let end = stated.saturating_add(4).min(d.len());
    let mut out = Discovery::default();
    let mut at = 48;
    while at + 4 <= end {
        let code = u16::from_be_bytes([d[at], d[at + 1]]);
        let len = usize::from(d[at + 3]);
        let body = &d[(at + 4).min(end)..(at + 4 + len).min(end)];
        match code {
            0x0002 if !body.is_empty() => {
                let b = body[0];
                out.locking_supported = b & 0x01 != 0;
                out.locking_enabled = b & 0x02 != 0;
                out.locked = b & 0x04 != 0;
                out.media_encryption = b & 0x08 != 0;
                // MBR Enabled (bit 4) without MBR Done (bit 5).
                out.shadow_mbr_shown = b & 0x10 != 0 && b & 0x20 == 0;
            }
            c => {
                if let Some(ssc) = Ssc::from_code(c) {
                    if out.ssc.is_none() {
                        out.ssc = Some(ssc);
                        out.base_comid = (body.len() >= 2).then(|| u16::from_be_bytes([body[0], body[1]]));
                    }
                }
            }
        }
        at += 4 + len;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Level 0 Discovery answer as an Opal 2 SSD gives it: header, TPer (0001h), Locking (0002h)
    /// with `locking`, Opal SSC V2.00 (0203h) with base ComID 07FEh.
    pub(crate) fn opal2(locking: u8) -> Vec<u8> {
        let mut d = vec![0u8; 48];
        d[4..8].copy_from_slice(&1u32.to_be_bytes());
        d.extend_from_slice(&[0x00, 0x01, 0x10, 0x0c, 0x11]);
        d.extend_from_slice(&[0; 11]);
        d.extend_from_slice(&[0x00, 0x02, 0x10, 0x0c, locking]);
        d.extend_from_slice(&[0; 11]);
        d.extend_from_slice(&[0x02, 0x03, 0x10, 0x10, 0x07, 0xfe, 0x00, 0x01]);
        d.extend_from_slice(&[0; 12]);
        let len = u32::try_from(d.len() - 4).unwrap();
        d[0..4].copy_from_slice(&len.to_be_bytes());
        d.resize(2048, 0);
        d
    }

    #[test]
    fn requests_are_if_recv_protocol_1_comid_1() {
        // NVMe 2.0 §5.26 Security Receive: opcode 82h, cdw10 = SECP 01h << 24 | SPSP 0001h << 8.
        let n = super::super::nvme::tcg_level0_discovery();
        assert_eq!(
            n.describe(),
            "nvme admin opc=0x82 nsid=0 cdw10=0x01000100 cdw11=0x00000800"
        );
        // ACS-3 §7.57 TRUSTED RECEIVE 5Ch, PIO data-in, 4 blocks, FEATURE 01h, LBA 15:8 = ComID 01h.
        let a = super::super::ata::tcg_level0_discovery();
        assert_eq!(
            a.cdb,
            [0x85, 0x08, 0x0e, 0, 0x01, 0, 0x04, 0, 0x00, 0, 0x01, 0, 0x00, 0x40, 0x5c, 0]
        );
    }

    #[test]
    fn locking_bits_and_the_ssc_are_read_from_their_descriptors() {
        // Locking byte: bit 0 supported, 1 enabled, 2 locked, 3 media encryption, 4 MBR enabled, 5 MBR done.
        let open = parse_discovery(&opal2(0x09)).unwrap();
        assert_eq!(open.ssc, Some(Ssc::Opal2));
        assert_eq!(open.base_comid, Some(0x07fe));
        assert!(open.locking_supported && open.media_encryption && !open.locking_enabled && !open.locked);
        assert_eq!(open.blocker(), None, "an Opal drive nobody locked wipes like any other");
        let locked = parse_discovery(&opal2(0x0f)).unwrap();
        assert!(locked.locked);
        assert!(locked
            .blocker()
            .unwrap()
            .contains("TCG Opal 2 drive with locking on and a range locked"));
        let shadow = parse_discovery(&opal2(0x1b)).unwrap();
        assert!(!shadow.locked && shadow.shadow_mbr_shown);
        assert!(shadow.blocker().unwrap().contains("shadow MBR"));
        assert!(
            parse_discovery(&opal2(0x3b)).unwrap().blocker().is_none(),
            "MBR done: data visible"
        );
    }

    #[test]
    fn no_security_subsystem_and_short_answers_are_errors() {
        assert_eq!(parse_discovery(&[0u8; 512]), Err(DiscoveryError::Empty));
        assert_eq!(parse_discovery(&[0u8; 20]), Err(DiscoveryError::Short(20)));
        // A descriptor that claims more than the buffer holds is cut, never read past the end.
        let mut d = opal2(0x0f);
        d.truncate(48 + 16 + 6);
        let p = parse_discovery(&d).unwrap();
        assert!(p.locked);
    }

    /// A controller that answers Security Receive with `answer` (or refuses it).
    struct Sed(Option<Vec<u8>>);

    impl crate::firmware::NvmeDrive for Sed {
        fn admin(
            &mut self,
            cmd: super::super::nvme::PassthruCmd,
            data: &mut [u8],
        ) -> std::io::Result<(super::super::nvme::Status, u32)> {
            assert_eq!(cmd.opcode(), 0x82);
            match &self.0 {
                Some(a) => {
                    data.copy_from_slice(a);
                    Ok((super::super::nvme::Status::from_ioctl(0), 0))
                }
                None => Ok((super::super::nvme::Status::from_ioctl(0x01), 0)),
            }
        }
    }

    #[test]
    fn a_locked_opal_drive_is_found_through_the_controller_and_one_without_tcg_is_not() {
        let locked = crate::drive::tcg_nvme(&mut Sed(Some(opal2(0x07)))).unwrap();
        assert!(locked.locked && locked.blocker().is_some());
        assert_eq!(
            crate::drive::tcg_nvme(&mut Sed(None)),
            None,
            "invalid opcode: no TCG subsystem"
        );
    }
}
