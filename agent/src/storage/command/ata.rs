//! ATA commands through SCSI ATA PASS-THROUGH(16), as pure functions: the CDBs we send, the data
//! blocks we write, and the parsers for what the drive returns (IDENTIFY DEVICE, SMART data, SANITIZE
//! STATUS). No I/O here; `sys` sends the bytes with SG_IO.
//!
//! Layouts follow SAT-4 (ATA PASS-THROUGH(16), CDB 85h) and ACS-3/ACS-4 (commands, IDENTIFY words);
//! the worked byte sequences in the tests are those of `shared/research/wipe.md` §3.2, produced with
//! the exact layout hdparm and nwipe use.

/// ATA PASS-THROUGH(16) operation code (SAT-4 §12.2.2).
pub const ATA_16: u8 = 0x85;
/// Device register value with the LBA bit set.
const DEVICE_LBA: u8 = 0x40;

/// SAT protocol field (CDB byte 1, bits 4:1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Non-data (3).
    NonData = 3,
    /// PIO data-in (4).
    PioIn = 4,
    /// PIO data-out (5).
    PioOut = 5,
    /// DMA (6).
    Dma = 6,
}

/// Direction and size of the data phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// No data.
    None,
    /// 512-byte blocks from the device.
    In(u16),
    /// 512-byte blocks to the device.
    Out(u16),
}

/// A complete pass-through request: CDB, data phase and a timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtaCommand {
    /// What it is, for logs and certificate evidence.
    pub name: &'static str,
    /// The 16-byte CDB.
    pub cdb: [u8; 16],
    /// Data phase.
    pub data: Data,
    /// Timeout in seconds.
    pub timeout_secs: u32,
}

impl AtaCommand {
    /// The CDB as hex bytes separated by spaces (certificate evidence).
    pub fn cdb_hex(&self) -> String {
        self.cdb
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The ATA registers of a command (48-bit form).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskFile {
    /// FEATURE (15:0).
    pub feature: u16,
    /// COUNT (15:0).
    pub count: u16,
    /// LBA (47:0).
    pub lba: u64,
    /// COMMAND.
    pub command: u8,
}

/// Builds an ATA PASS-THROUGH(16) CDB (SAT-4 table 191).
///
/// Byte 2 carries T_LENGTH = 2 (length in the COUNT field), BYT_BLOK = 1 (in blocks), T_DIR and,
/// for non-data commands, CK_COND = 1 so the registers come back in the sense data.
fn cdb16(protocol: Protocol, data: Data, extend: bool, tf: TaskFile) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    let [f_hi, f_lo] = tf.feature.to_be_bytes();
    let [c_hi, c_lo] = tf.count.to_be_bytes();
    let lba = tf.lba.to_le_bytes();
    cdb[0] = ATA_16;
    cdb[1] = ((protocol as u8) << 1) | u8::from(extend);
    cdb[2] = match data {
        Data::None => 0x20,   // CK_COND
        Data::In(_) => 0x0e,  // T_DIR=1 (from device), BYT_BLOK=1, T_LENGTH=2
        Data::Out(_) => 0x06, // T_DIR=0, BYT_BLOK=1, T_LENGTH=2
    };
    cdb[3] = f_hi;
    cdb[4] = f_lo;
    cdb[5] = c_hi;
    cdb[6] = c_lo;
    cdb[7] = lba[3];
    cdb[8] = lba[0];
    cdb[9] = lba[4];
    cdb[10] = lba[1];
    cdb[11] = lba[5];
    cdb[12] = lba[2];
    cdb[13] = DEVICE_LBA;
    cdb[14] = tf.command;
    cdb
}

fn cmd(
    name: &'static str,
    protocol: Protocol,
    data: Data,
    extend: bool,
    tf: TaskFile,
    timeout_secs: u32,
) -> AtaCommand {
    AtaCommand {
        name,
        cdb: cdb16(protocol, data, extend, tf),
        data,
        timeout_secs,
    }
}

const SMART: u8 = 0xb0;
/// SMART commands carry 4Fh/C2h in LBA mid/high (ACS-3 §7.48).
const SMART_SIGNATURE: u64 = 0xc2_4f00;

/// TRUSTED RECEIVE (5Ch, PIO data-in; ACS-3 §7.57) of TCG Level 0 Discovery: FEATURE 7:0 = security
/// protocol 01h, COUNT = transfer length in 512-byte blocks, LBA 23:8 = SP specific (ComID 0001h).
pub fn tcg_level0_discovery() -> AtaCommand {
    let blocks = u16::try_from(super::tcg::DISCOVERY_LEN / 512).unwrap_or(4);
    trusted_receive(
        "TRUSTED RECEIVE (TCG Level 0 Discovery)",
        super::tcg::PROTOCOL,
        super::tcg::LEVEL0_COMID,
        blocks,
    )
}

/// TRUSTED RECEIVE (5Ch, PIO data-in; ACS-3 §7.57) of `blocks` 512-byte blocks: FEATURE 7:0 =
/// security protocol, COUNT 7:0 = transfer length 7:0, LBA 7:0 = transfer length 15:8, LBA 23:8 =
/// SP specific (the ComID). Used as TCG IF-RECV.
pub fn trusted_receive(name: &'static str, protocol: u8, comid: u16, blocks: u16) -> AtaCommand {
    let tf = TaskFile {
        feature: u16::from(protocol),
        count: blocks & 0xff,
        lba: u64::from(comid) << 8 | u64::from(blocks >> 8),
        command: 0x5c,
    };
    cmd(name, Protocol::PioIn, Data::In(blocks), false, tf, 30)
}

/// TRUSTED SEND (5Eh, PIO data-out; ACS-3 §7.59), fields as for [`trusted_receive`]: TCG IF-SEND.
pub fn trusted_send(name: &'static str, protocol: u8, comid: u16, blocks: u16) -> AtaCommand {
    let tf = TaskFile {
        feature: u16::from(protocol),
        count: blocks & 0xff,
        lba: u64::from(comid) << 8 | u64::from(blocks >> 8),
        command: 0x5e,
    };
    cmd(name, Protocol::PioOut, Data::Out(blocks), false, tf, 30)
}

/// IDENTIFY DEVICE (ECh), 512 bytes in (ACS-3 §7.12).
pub fn identify() -> AtaCommand {
    cmd(
        "IDENTIFY DEVICE",
        Protocol::PioIn,
        Data::In(1),
        false,
        TaskFile {
            count: 1,
            command: 0xec,
            ..Default::default()
        },
        15,
    )
}

/// SMART READ DATA (B0h/D0h), 512 bytes in.
pub fn smart_read_data() -> AtaCommand {
    let tf = TaskFile {
        feature: 0xd0,
        count: 1,
        lba: SMART_SIGNATURE,
        command: SMART,
    };
    cmd("SMART READ DATA", Protocol::PioIn, Data::In(1), false, tf, 15)
}

/// SMART READ THRESHOLDS (B0h/D1h, obsolete in ACS but still widely implemented), 512 bytes in.
pub fn smart_read_thresholds() -> AtaCommand {
    let tf = TaskFile {
        feature: 0xd1,
        count: 1,
        lba: SMART_SIGNATURE,
        command: SMART,
    };
    cmd("SMART READ THRESHOLDS", Protocol::PioIn, Data::In(1), false, tf, 15)
}

/// SMART RETURN STATUS (B0h/DAh): LBA mid/high come back 4Fh/C2h (ok) or F4h/2Ch (threshold exceeded).
pub fn smart_return_status() -> AtaCommand {
    let tf = TaskFile {
        feature: 0xda,
        lba: SMART_SIGNATURE,
        command: SMART,
        ..Default::default()
    };
    cmd("SMART RETURN STATUS", Protocol::NonData, Data::None, false, tf, 15)
}

/// DEVICE CONFIGURATION IDENTIFY (B1h/C2h), 512 bytes in.
pub fn dco_identify() -> AtaCommand {
    cmd(
        "DCO IDENTIFY",
        Protocol::PioIn,
        Data::In(1),
        false,
        TaskFile {
            feature: 0xc2,
            count: 1,
            command: 0xb1,
            lba: 0,
        },
        15,
    )
}

/// DEVICE CONFIGURATION RESTORE (B1h/C0h).
pub fn dco_restore() -> AtaCommand {
    cmd(
        "DCO RESTORE",
        Protocol::NonData,
        Data::None,
        false,
        TaskFile {
            feature: 0xc0,
            command: 0xb1,
            ..Default::default()
        },
        30,
    )
}

/// READ NATIVE MAX ADDRESS EXT (27h): the returned LBA is the last native sector.
pub fn read_native_max_ext() -> AtaCommand {
    cmd(
        "READ NATIVE MAX ADDRESS EXT",
        Protocol::NonData,
        Data::None,
        true,
        TaskFile {
            command: 0x27,
            ..Default::default()
        },
        15,
    )
}

/// GET NATIVE MAX ADDRESS EXT (78h/0000h, ACS-3 Accessible Max Address Configuration).
pub fn get_native_max_ext() -> AtaCommand {
    cmd(
        "GET NATIVE MAX ADDRESS EXT",
        Protocol::NonData,
        Data::None,
        true,
        TaskFile {
            command: 0x78,
            ..Default::default()
        },
        15,
    )
}

/// SET MAX ADDRESS EXT (37h) to `last_lba`; `volatile` keeps it until the next power cycle (COUNT bit 0
/// clear). Must immediately follow READ NATIVE MAX ADDRESS EXT.
pub fn set_max_address_ext(last_lba: u64, volatile: bool) -> AtaCommand {
    let tf = TaskFile {
        count: u16::from(!volatile),
        lba: last_lba & 0xffff_ffff_ffff,
        command: 0x37,
        ..Default::default()
    };
    cmd("SET MAX ADDRESS EXT", Protocol::NonData, Data::None, true, tf, 15)
}

/// SET ACCESSIBLE MAX ADDRESS EXT (78h/0001h) to `last_lba` (AMAC; always non-volatile).
pub fn set_accessible_max_ext(last_lba: u64) -> AtaCommand {
    let tf = TaskFile {
        feature: 0x0001,
        lba: last_lba & 0xffff_ffff_ffff,
        command: 0x78,
        ..Default::default()
    };
    cmd(
        "SET ACCESSIBLE MAX ADDRESS EXT",
        Protocol::NonData,
        Data::None,
        true,
        tf,
        15,
    )
}

/// SECURITY SET PASSWORD (F1h), 512 bytes out ([`security_block`]).
pub fn security_set_password() -> AtaCommand {
    cmd(
        "SECURITY SET PASSWORD",
        Protocol::PioOut,
        Data::Out(1),
        false,
        TaskFile {
            count: 1,
            command: 0xf1,
            ..Default::default()
        },
        15,
    )
}

/// SECURITY ERASE PREPARE (F3h); ERASE UNIT must follow immediately.
pub fn security_erase_prepare() -> AtaCommand {
    cmd(
        "SECURITY ERASE PREPARE",
        Protocol::NonData,
        Data::None,
        false,
        TaskFile {
            command: 0xf3,
            ..Default::default()
        },
        15,
    )
}

/// SECURITY ERASE UNIT (F4h), 512 bytes out; `timeout_secs` from [`erase_timeout_secs`].
pub fn security_erase_unit(timeout_secs: u32) -> AtaCommand {
    let tf = TaskFile {
        count: 1,
        command: 0xf4,
        ..Default::default()
    };
    cmd(
        "SECURITY ERASE UNIT",
        Protocol::PioOut,
        Data::Out(1),
        false,
        tf,
        timeout_secs,
    )
}

/// SECURITY UNLOCK (F2h), 512 bytes out.
pub fn security_unlock() -> AtaCommand {
    cmd(
        "SECURITY UNLOCK",
        Protocol::PioOut,
        Data::Out(1),
        false,
        TaskFile {
            count: 1,
            command: 0xf2,
            ..Default::default()
        },
        15,
    )
}

/// SECURITY DISABLE PASSWORD (F6h), 512 bytes out.
pub fn security_disable_password() -> AtaCommand {
    let tf = TaskFile {
        count: 1,
        command: 0xf6,
        ..Default::default()
    };
    cmd(
        "SECURITY DISABLE PASSWORD",
        Protocol::PioOut,
        Data::Out(1),
        false,
        tf,
        15,
    )
}

/// Sectors one READ/WRITE DMA EXT may move here: COUNT is 16 bits (0 would mean 65536, never sent)
/// and the data buffer is described in 512-byte blocks by T_LENGTH.
pub const MAX_DMA_SECTORS: u16 = u16::MAX;

fn dma_ext(name: &'static str, command: u8, lba: u64, sectors: u16, data: Data) -> AtaCommand {
    let tf = TaskFile {
        count: sectors,
        lba: lba & 0xffff_ffff_ffff,
        command,
        ..Default::default()
    };
    // 30 s for at most 32 MiB: even a failing disk's retries end well inside it.
    cmd(name, Protocol::Dma, data, true, tf, 30)
}

/// READ DMA EXT (25h): `sectors` (1..=65535) 512-byte sectors from `lba` (ACS-3, READ DMA EXT – 25h). Used to reach a
/// Host Protected Area after a volatile SET MAX, where the kernel's idea of the capacity is stale.
pub fn read_dma_ext(lba: u64, sectors: u16) -> AtaCommand {
    dma_ext("READ DMA EXT", 0x25, lba, sectors, Data::In(sectors))
}

/// WRITE DMA EXT (35h): `sectors` (1..=65535) 512-byte sectors to `lba` (ACS-3, WRITE DMA EXT – 35h).
pub fn write_dma_ext(lba: u64, sectors: u16) -> AtaCommand {
    dma_ext("WRITE DMA EXT", 0x35, lba, sectors, Data::Out(sectors))
}

/// FLUSH CACHE EXT (EAh): the drive's volatile write cache to the media (ACS-3, FLUSH CACHE EXT – EAh).
pub fn flush_cache_ext() -> AtaCommand {
    let tf = TaskFile {
        command: 0xea,
        ..Default::default()
    };
    cmd("FLUSH CACHE EXT", Protocol::NonData, Data::None, true, tf, 60)
}

const SANITIZE: u8 = 0xb4;

/// SANITIZE STATUS EXT (B4h/0000h). `clear_failure` sets COUNT bit 0 (CLEAR SANITIZE OPERATION FAILED).
pub fn sanitize_status_ext(clear_failure: bool) -> AtaCommand {
    let tf = TaskFile {
        count: u16::from(clear_failure),
        command: SANITIZE,
        ..Default::default()
    };
    cmd("SANITIZE STATUS EXT", Protocol::NonData, Data::None, true, tf, 15)
}

/// COUNT bit 4: FAILURE MODE — on failure the drive stays in Sanitize Operation Failed until a
/// successful sanitize (0 lets the host clear the failure with status EXT).
const FAILURE_MODE: u16 = 1 << 4;

/// CRYPTO SCRAMBLE EXT (B4h/0011h, key "Cryp" in LBA 31:0).
pub fn crypto_scramble_ext() -> AtaCommand {
    let tf = TaskFile {
        feature: 0x0011,
        count: FAILURE_MODE,
        lba: 0x4372_7970,
        command: SANITIZE,
    };
    cmd(
        "SANITIZE CRYPTO SCRAMBLE EXT",
        Protocol::NonData,
        Data::None,
        true,
        tf,
        15,
    )
}

/// BLOCK ERASE EXT (B4h/0012h, key "BkEr").
pub fn block_erase_ext() -> AtaCommand {
    let tf = TaskFile {
        feature: 0x0012,
        count: FAILURE_MODE,
        lba: 0x426b_4572,
        command: SANITIZE,
    };
    cmd("SANITIZE BLOCK ERASE EXT", Protocol::NonData, Data::None, true, tf, 15)
}

/// OVERWRITE EXT (B4h/0014h): key 4F57h in LBA 47:32, the 32-bit pattern in LBA 31:0, passes in
/// COUNT 3:0 (1..=15; we never send 0, which ACS reads as 16).
pub fn overwrite_ext(pattern: u32, passes: u8) -> AtaCommand {
    let passes = u16::from(passes.clamp(1, 15));
    let tf = TaskFile {
        feature: 0x0014,
        count: FAILURE_MODE | passes,
        lba: (0x4f57 << 32) | u64::from(pattern),
        command: SANITIZE,
    };
    cmd("SANITIZE OVERWRITE EXT", Protocol::NonData, Data::None, true, tf, 15)
}

/// The 512-byte data block of the SECURITY commands (ACS-3 tables 55-58, hdparm `do_set_security`).
/// `master` selects the master password, `enhanced` the enhanced erase (ERASE UNIT only), `level_max`
/// the security level (SET PASSWORD only). The password is at most 32 bytes, zero-padded.
pub fn security_block(password: &[u8], master: bool, enhanced: bool, level_max: bool) -> [u8; 512] {
    let mut block = [0u8; 512];
    block[0] = u8::from(master) | (u8::from(enhanced) << 1);
    block[1] = u8::from(level_max);
    let n = password.len().min(32);
    block[2..2 + n].copy_from_slice(&password[..n]);
    block
}

/// The ATA registers a command returned (from the ATA Status Return sense descriptor).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Returned {
    /// ERROR register.
    pub error: u8,
    /// COUNT (15:0).
    pub count: u16,
    /// LBA (47:0).
    pub lba: u64,
    /// DEVICE register.
    pub device: u8,
    /// STATUS register.
    pub status: u8,
}

impl Returned {
    /// STATUS bit 0 (ERR) or bit 3 (DRQ left set) means the command failed.
    pub fn failed(&self) -> bool {
        self.status & 0x09 != 0
    }

    /// ERROR bit 2 (ABRT): the device aborted the command (unsupported, frozen, wrong password, ...).
    pub fn aborted(&self) -> bool {
        self.error & 0x04 != 0
    }
}

/// What SANITIZE STATUS EXT returned (ACS-3 §7.34.7, table 96).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SanitizeStatus {
    /// COUNT bit 15: the last sanitize completed without error.
    pub succeeded: bool,
    /// COUNT bit 14: a sanitize is in progress.
    pub in_progress: bool,
    /// COUNT bit 13: sanitize is frozen (FREEZE LOCK).
    pub frozen: bool,
    /// COUNT bit 12: ANTIFREEZE LOCK is set.
    pub antifreeze: bool,
    /// Progress in 1/65536 (LBA 15:0) while in progress.
    pub progress: u16,
    /// The reason when the command itself failed: LBA 7:0.
    pub reason: Option<SanitizeFailure>,
}

/// Sanitize device error reasons (ACS-3 table 97, LBA 7:0 with ERROR ABRT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeFailure {
    /// 01h: the sanitize operation completed with an error (Sanitize Operation Failed state).
    Failed,
    /// 02h: unsupported command.
    Unsupported,
    /// 03h: the device is in the Sanitize Frozen state.
    Frozen,
    /// 04h: ANTIFREEZE LOCK is set.
    Antifreeze,
    /// Any other value.
    Other(u8),
}

/// Decodes the registers returned by SANITIZE STATUS EXT (or by a SANITIZE command that failed).
pub fn sanitize_status(r: &Returned) -> SanitizeStatus {
    let reason = (r.failed() && r.aborted()).then_some(match r.lba.to_le_bytes()[0] {
        1 => SanitizeFailure::Failed,
        2 => SanitizeFailure::Unsupported,
        3 => SanitizeFailure::Frozen,
        4 => SanitizeFailure::Antifreeze,
        other => SanitizeFailure::Other(other),
    });
    SanitizeStatus {
        succeeded: r.count & 0x8000 != 0,
        in_progress: r.count & 0x4000 != 0,
        frozen: r.count & 0x2000 != 0,
        antifreeze: r.count & 0x1000 != 0,
        progress: u16::from_le_bytes([r.lba.to_le_bytes()[0], r.lba.to_le_bytes()[1]]),
        reason,
    }
}

/// ATA security state, IDENTIFY word 128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Security {
    /// Bit 0: security feature set supported.
    pub supported: bool,
    /// Bit 1: a user password is set.
    pub enabled: bool,
    /// Bit 2: the drive is locked.
    pub locked: bool,
    /// Bit 3: frozen (SECURITY FREEZE LOCK, usually by the BIOS at boot).
    pub frozen: bool,
    /// Bit 4: the password attempt counter expired (power-cycle before retrying).
    pub count_expired: bool,
    /// Bit 5: enhanced security erase supported.
    pub enhanced_erase: bool,
    /// Bit 8: security level maximum.
    pub level_max: bool,
}

/// The IDENTIFY DEVICE facts a wipe needs (ACS-3 table 45).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identify {
    /// Words 27-46, trimmed.
    pub model: String,
    /// Words 10-19, trimmed.
    pub serial: String,
    /// Words 23-26, trimmed.
    pub firmware: String,
    /// Word 83 bit 10 and word 86 bit 10: 48-bit addressing supported and enabled.
    pub lba48: bool,
    /// Sectors visible to the host: words 100-103 (48-bit) or 60-61.
    pub user_sectors: u64,
    /// Word 82 bit 10: Host Protected Area feature set supported.
    pub hpa_supported: bool,
    /// Word 85 bit 10: HPA enabled.
    pub hpa_enabled: bool,
    /// Word 83 bit 11: Device Configuration Overlay supported.
    pub dco_supported: bool,
    /// Word 119 bit 8: Accessible Max Address Configuration (ACS-3) supported.
    pub amac_supported: bool,
    /// Word 59 bit 12: SANITIZE feature set.
    pub sanitize: bool,
    /// Word 59 bit 13: CRYPTO SCRAMBLE EXT.
    pub sanitize_crypto: bool,
    /// Word 59 bit 14: OVERWRITE EXT.
    pub sanitize_overwrite: bool,
    /// Word 59 bit 15: BLOCK ERASE EXT.
    pub sanitize_block: bool,
    /// Word 128.
    pub security: Security,
    /// Word 89: normal erase time estimate in minutes, if given.
    pub erase_minutes: Option<u32>,
    /// Word 90: enhanced erase time estimate in minutes, if given.
    pub enhanced_erase_minutes: Option<u32>,
    /// Word 217: 1 = non-rotating media; other values are RPM; 0 = not reported.
    pub rotation_rate: u16,
    /// Word 106: logical sector size in bytes (512 unless the drive says otherwise).
    pub logical_sector_size: u32,
    /// Word 169 bit 0: TRIM supported.
    pub trim: bool,
    /// Word 255: integrity word present (A5h) and checksum correct; `None` when absent.
    pub checksum_ok: Option<bool>,
}

fn word(data: &[u8; 512], n: usize) -> u16 {
    u16::from_le_bytes([data[2 * n], data[2 * n + 1]])
}

fn bit(w: u16, b: u32) -> bool {
    w & (1 << b) != 0
}

/// ATA strings are stored with the two bytes of each word swapped (ACS-3 §3.4.9).
fn ata_string(data: &[u8; 512], first: usize, last: usize) -> String {
    let mut bytes = Vec::with_capacity(2 * (last - first + 1));
    for n in first..=last {
        let [lo, hi] = word(data, n).to_le_bytes();
        bytes.push(hi);
        bytes.push(lo);
    }
    String::from_utf8_lossy(&bytes)
        .trim_matches(|c: char| c == ' ' || c == '\0')
        .to_owned()
}

/// Erase time word (89/90): bit 15 set → bits 14:0 are the time in 2-minute units, else bits 7:0;
/// 0 = not given; all ones of the field = longer than the field can say (we keep the maximum).
fn erase_minutes(w: u16) -> Option<u32> {
    let field = if bit(w, 15) {
        u32::from(w & 0x7fff)
    } else {
        u32::from(w & 0xff)
    };
    (field != 0).then_some(field * 2)
}

/// Parses IDENTIFY DEVICE data.
pub fn parse_identify(data: &[u8; 512]) -> Identify {
    let w = |n| word(data, n);
    let lba48 = bit(w(83), 10) && bit(w(86), 10);
    let sectors48 = (0..4).fold(0u64, |acc, i| acc | (u64::from(w(100 + i)) << (16 * i)));
    let sectors28 = u64::from(w(60)) | (u64::from(w(61)) << 16);
    let sec = w(128);
    // Word 106: bit 14 set and bit 15 clear means the word is valid; bit 12: words 117-118 hold the
    // logical sector size in words.
    let w106 = w(106);
    let logical_sector_size = if bit(w106, 14) && !bit(w106, 15) && bit(w106, 12) {
        let words = u32::from(w(117)) | (u32::from(w(118)) << 16);
        words * 2
    } else {
        512
    };
    let checksum_ok = (data[510] == 0xa5).then(|| data.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0);
    Identify {
        model: ata_string(data, 27, 46),
        serial: ata_string(data, 10, 19),
        firmware: ata_string(data, 23, 26),
        lba48,
        user_sectors: if lba48 && sectors48 != 0 { sectors48 } else { sectors28 },
        hpa_supported: bit(w(82), 10),
        hpa_enabled: bit(w(85), 10),
        dco_supported: bit(w(83), 11),
        amac_supported: bit(w(119), 8),
        sanitize: bit(w(59), 12),
        sanitize_crypto: bit(w(59), 13),
        sanitize_overwrite: bit(w(59), 14),
        sanitize_block: bit(w(59), 15),
        security: Security {
            supported: bit(sec, 0),
            enabled: bit(sec, 1),
            locked: bit(sec, 2),
            frozen: bit(sec, 3),
            count_expired: bit(sec, 4),
            enhanced_erase: bit(sec, 5),
            level_max: bit(sec, 8),
        },
        erase_minutes: erase_minutes(w(89)),
        enhanced_erase_minutes: erase_minutes(w(90)),
        rotation_rate: w(217),
        logical_sector_size,
        trim: bit(w(169), 0),
        checksum_ok,
    }
}

/// Timeout for SECURITY ERASE UNIT, as hdparm computes it: the drive's estimate × 2 + 60 minutes, but
/// at least capacity / (30 MB/s) + 30 minutes; 12 hours when nothing is known.
pub fn erase_timeout_secs(estimate_minutes: Option<u32>, capacity_bytes: u64) -> u32 {
    let by_estimate = estimate_minutes.map(|m| (m * 2 + 60) * 60);
    let by_size = u32::try_from(capacity_bytes / 30_000_000)
        .unwrap_or(u32::MAX)
        .saturating_add(30 * 60);
    match by_estimate {
        Some(e) => e.max(by_size),
        None if capacity_bytes == 0 => 12 * 3600,
        None => by_size.max(12 * 3600),
    }
}

/// One SMART attribute (the vendor-defined table of SMART READ DATA, 30 entries of 12 bytes from byte 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmartAttribute {
    /// Attribute id (5 reallocated, 9 power-on hours, 187 uncorrectable, 188 command timeout,
    /// 197 pending, 198 offline uncorrectable, 199 CRC errors, 177/231/233 wear on many SSDs).
    pub id: u8,
    /// Normalised current value.
    pub value: u8,
    /// Worst value seen.
    pub worst: u8,
    /// Raw value (48 bits, little endian).
    pub raw: u64,
    /// Threshold, when the thresholds were read.
    pub threshold: Option<u8>,
}

/// Parses SMART READ DATA (and optionally READ THRESHOLDS, same layout with the threshold at byte 1
/// of each entry). Entries with id 0 are empty. `None` when the data structure checksum is wrong.
pub fn parse_smart(data: &[u8; 512], thresholds: Option<&[u8; 512]>) -> Option<Vec<SmartAttribute>> {
    if data.iter().fold(0u8, |a, b| a.wrapping_add(*b)) != 0 {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..30 {
        let e = &data[2 + i * 12..2 + (i + 1) * 12];
        if e[0] == 0 {
            continue;
        }
        let raw = e[5..11].iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let threshold = thresholds
            .map(|t| &t[2 + i * 12..2 + (i + 1) * 12])
            .filter(|t| t[0] == e[0])
            .map(|t| t[1]);
        out.push(SmartAttribute {
            id: e[0],
            value: e[3],
            worst: e[4],
            raw,
            threshold,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// Every worked CDB of wipe.md §3.2 (hdparm `sgio.c` / nwipe `se_ata.c` layout, SAT-4 table 191).
    #[test]
    fn cdbs_match_the_reference_encodings() {
        let cases = [
            (identify(), "85 08 0e 00 00 00 01 00 00 00 00 00 00 40 ec 00"),
            (smart_read_data(), "85 08 0e 00 d0 00 01 00 00 00 4f 00 c2 40 b0 00"),
            (smart_return_status(), "85 06 20 00 da 00 00 00 00 00 4f 00 c2 40 b0 00"),
            (dco_identify(), "85 08 0e 00 c2 00 01 00 00 00 00 00 00 40 b1 00"),
            (dco_restore(), "85 06 20 00 c0 00 00 00 00 00 00 00 00 40 b1 00"),
            (read_native_max_ext(), "85 07 20 00 00 00 00 00 00 00 00 00 00 40 27 00"),
            (get_native_max_ext(), "85 07 20 00 00 00 00 00 00 00 00 00 00 40 78 00"),
            (
                security_set_password(),
                "85 0a 06 00 00 00 01 00 00 00 00 00 00 40 f1 00",
            ),
            (
                security_erase_prepare(),
                "85 06 20 00 00 00 00 00 00 00 00 00 00 40 f3 00",
            ),
            (
                security_erase_unit(3600),
                "85 0a 06 00 00 00 01 00 00 00 00 00 00 40 f4 00",
            ),
            (
                security_disable_password(),
                "85 0a 06 00 00 00 01 00 00 00 00 00 00 40 f6 00",
            ),
            (
                sanitize_status_ext(false),
                "85 07 20 00 00 00 00 00 00 00 00 00 00 40 b4 00",
            ),
            (crypto_scramble_ext(), "85 07 20 00 11 00 10 43 70 00 79 00 72 40 b4 00"),
            (block_erase_ext(), "85 07 20 00 12 00 10 42 72 00 45 00 6b 40 b4 00"),
            (overwrite_ext(0, 1), "85 07 20 00 14 00 11 00 00 57 00 4f 00 40 b4 00"),
            // DMA protocol 6 with EXTEND: byte 1 = 6 << 1 | 1 = 0Dh; T_DIR / BYT_BLOK / T_LENGTH=2 as for
            // PIO, COUNT = sectors, LBA 31:24, 7:0, 39:32, 15:8, 47:40, 23:16 (SAT-4 table 191).
            (
                read_dma_ext(0x0000_0123_4567_89ab, 256),
                "85 0d 0e 00 00 01 00 45 ab 23 89 01 67 40 25 00",
            ),
            (
                write_dma_ext(0x1000, 8),
                "85 0d 06 00 00 00 08 00 00 00 10 00 00 40 35 00",
            ),
            (flush_cache_ext(), "85 07 20 00 00 00 00 00 00 00 00 00 00 40 ea 00"),
        ];
        for (c, expected) in cases {
            assert_eq!(c.cdb.to_vec(), hex(expected), "{}", c.name);
        }
        assert_eq!(
            sanitize_status_ext(true).cdb[6],
            0x01,
            "CLEAR SANITIZE OPERATION FAILED is COUNT bit 0"
        );
        assert_eq!(overwrite_ext(0, 0).cdb[6], 0x11, "0 passes would mean 16: clamped to 1");
        assert_eq!(overwrite_ext(0, 99).cdb[6], 0x1f);
    }

    /// SAT-4: LBA bytes are 31:24, 7:0, 39:32, 15:8, 47:40, 23:16 in CDB bytes 7-12.
    #[test]
    fn lba_bytes_land_where_sat_puts_them() {
        let c = set_max_address_ext(0x0000_6543_21fe_dcba, true);
        assert_eq!(&c.cdb[7..13], &[0x21, 0xba, 0x43, 0xdc, 0x65, 0xfe]);
        assert_eq!(c.cdb[6], 0, "volatile: COUNT bit 0 clear");
        assert_eq!(set_max_address_ext(1, false).cdb[6], 1);
        assert_eq!(set_accessible_max_ext(7).cdb[4], 0x01);
    }

    #[test]
    fn security_block_layout() {
        let b = security_block(b"lapterop", false, true, false);
        assert_eq!(
            &b[..12],
            &[0x02, 0x00, b'l', b'a', b'p', b't', b'e', b'r', b'o', b'p', 0, 0]
        );
        let b = security_block(&[b'x'; 40], true, false, true);
        assert_eq!((b[0], b[1]), (0x01, 0x01));
        assert_eq!(&b[2..34], &[b'x'; 32]);
        assert_eq!(b[34], 0);
    }

    /// SECURITY ERASE UNIT in normal mode (ACS-3 §7.45, table "SECURITY ERASE UNIT data content":
    /// word 0 bit 1 Enhanced = 0, bit 0 Identifier = 0 for the user password; words 1-16 the
    /// password): the CDB is the enhanced one's (F4h, PIO out, one block), only the data differs.
    #[test]
    fn security_erase_unit_normal_sends_the_user_password_without_the_enhanced_bit() {
        let b = security_block(crate::firmware::ATA_PASSWORD, false, false, false);
        let mut want = [0u8; 512];
        want[2..10].copy_from_slice(b"lapterop");
        assert_eq!(b, want);
        assert_eq!(
            security_erase_unit(3600).cdb,
            [0x85, 0x0a, 0x06, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0x40, 0xf4, 0]
        );
    }

    /// ACS-3 §7.34.7: COUNT bits 15/14/13/12 and LBA 15:0 progress; error reasons in LBA 7:0.
    #[test]
    fn sanitize_status_decodes() {
        let running = sanitize_status(&Returned {
            count: 0x4000,
            lba: 0x8000,
            status: 0x50,
            ..Default::default()
        });
        assert!(running.in_progress && !running.succeeded && running.progress == 0x8000 && running.reason.is_none());
        let done = sanitize_status(&Returned {
            count: 0x8000,
            status: 0x50,
            ..Default::default()
        });
        assert!(done.succeeded && !done.in_progress);
        let frozen = sanitize_status(&Returned {
            error: 0x04,
            count: 0x2000,
            lba: 3,
            status: 0x51,
            ..Default::default()
        });
        assert_eq!(frozen.reason, Some(SanitizeFailure::Frozen));
        assert!(frozen.frozen);
        let failed = sanitize_status(&Returned {
            error: 0x04,
            lba: 1,
            status: 0x51,
            ..Default::default()
        });
        assert_eq!(failed.reason, Some(SanitizeFailure::Failed));
    }

    fn put_string(data: &mut [u8; 512], first: usize, s: &str, words: usize) {
        let mut bytes = s.as_bytes().to_vec();
        bytes.resize(words * 2, b' ');
        for (i, pair) in bytes.chunks(2).enumerate() {
            data[2 * (first + i)] = pair[1];
            data[2 * (first + i) + 1] = pair[0];
        }
    }

    fn put_word(data: &mut [u8; 512], n: usize, v: u16) {
        data[2 * n..2 * n + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// A synthetic IDENTIFY block per ACS-3 table 45 (byte-swapped strings, checksum in word 255).
    pub(crate) fn identify_block(frozen: bool, sanitize: bool) -> [u8; 512] {
        let mut d = [0u8; 512];
        put_string(&mut d, 10, "WD-WX12A3456789", 10);
        put_string(&mut d, 23, "01.01A01", 4);
        put_string(&mut d, 27, "WDC WD5000LPCX-24C6HT0", 20);
        put_word(&mut d, 59, if sanitize { 0xd000 | 0x0100 } else { 0x0100 }); // sanitize, overwrite, block; no crypto
        put_word(&mut d, 60, 0xffff);
        put_word(&mut d, 61, 0x0fff);
        put_word(&mut d, 82, 1 << 10 | 1 << 1);
        put_word(&mut d, 83, 1 << 10 | 1 << 11 | 1 << 14);
        put_word(&mut d, 85, 1 << 10);
        put_word(&mut d, 86, 1 << 10);
        put_word(&mut d, 89, 0x8000 | 50); // 100 minutes
        put_word(&mut d, 90, 0x0007); // 14 minutes (8-bit form)
        for (i, w) in 976_773_168u64.to_le_bytes().chunks(2).take(4).enumerate() {
            put_word(&mut d, 100 + i, u16::from_le_bytes([w[0], w[1]]));
        }
        put_word(&mut d, 106, 0x6003); // valid, 8 logical per physical (4K physical), no long logical
        put_word(&mut d, 128, 0x0021 | if frozen { 0x0008 } else { 0 });
        put_word(&mut d, 217, 5400);
        d[510] = 0xa5;
        d[511] = 0u8.wrapping_sub(d[..511].iter().fold(0u8, |a, b| a.wrapping_add(*b)));
        d
    }

    #[test]
    fn identify_parses_the_words_that_matter() {
        let id = parse_identify(&identify_block(true, true));
        assert_eq!(id.model, "WDC WD5000LPCX-24C6HT0");
        assert_eq!(id.serial, "WD-WX12A3456789");
        assert_eq!(id.firmware, "01.01A01");
        assert!(id.lba48);
        assert_eq!(id.user_sectors, 976_773_168);
        assert!(id.hpa_supported && id.hpa_enabled && id.dco_supported && !id.amac_supported);
        assert!(id.sanitize && !id.sanitize_crypto && id.sanitize_overwrite && id.sanitize_block);
        assert!(id.security.supported && id.security.frozen && id.security.enhanced_erase && !id.security.locked);
        assert_eq!(id.erase_minutes, Some(100));
        assert_eq!(id.enhanced_erase_minutes, Some(14));
        assert_eq!(id.rotation_rate, 5400);
        assert_eq!(id.logical_sector_size, 512);
        assert_eq!(id.checksum_ok, Some(true));
        let mut corrupt = identify_block(false, false);
        corrupt[20] ^= 1;
        assert_eq!(parse_identify(&corrupt).checksum_ok, Some(false));
        assert!(!parse_identify(&corrupt).security.frozen);
    }

    #[test]
    fn erase_timeout_follows_hdparm() {
        // 100 min estimate: 260 min, more than a 100 GB disk needs at 30 MB/s (3333 s + 30 min).
        assert_eq!(erase_timeout_secs(Some(100), 100_000_000_000), 260 * 60);
        // A 500 GB disk at 30 MB/s: 16 666 s + 30 min = 18 466 s, more than the estimate.
        assert_eq!(erase_timeout_secs(Some(100), 500_000_000_000), 16_666 + 1800);
        assert_eq!(erase_timeout_secs(Some(2), 500_000_000_000), 16_666 + 1800);
        assert_eq!(erase_timeout_secs(None, 0), 12 * 3600);
    }

    #[test]
    fn smart_attributes_parse_with_thresholds() {
        let mut d = [0u8; 512];
        let mut t = [0u8; 512];
        // id 5 reallocated: value 100, worst 100, raw 8; id 9 power-on hours raw 0x0102_0304.
        d[2..14].copy_from_slice(&[5, 0x33, 0, 100, 100, 8, 0, 0, 0, 0, 0, 0]);
        d[14..26].copy_from_slice(&[9, 0x32, 0, 95, 95, 0x04, 0x03, 0x02, 0x01, 0, 0, 0]);
        t[2..4].copy_from_slice(&[5, 36]);
        t[14..16].copy_from_slice(&[9, 0]);
        d[511] = 0u8.wrapping_sub(d.iter().fold(0u8, |a, b| a.wrapping_add(*b)));
        let attrs = parse_smart(&d, Some(&t)).unwrap();
        assert_eq!(attrs.len(), 2);
        assert_eq!(
            attrs[0],
            SmartAttribute {
                id: 5,
                value: 100,
                worst: 100,
                raw: 8,
                threshold: Some(36)
            }
        );
        assert_eq!(attrs[1].raw, 0x0102_0304);
        d[100] ^= 1;
        assert_eq!(parse_smart(&d, None), None, "a bad checksum is not trusted");
    }
}
