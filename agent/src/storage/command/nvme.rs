//! NVMe admin commands as pure functions: the passthrough structure we hand to
//! `NVME_IOCTL_ADMIN_CMD`, and parsers for Identify, SMART / Health and Sanitize Status data. No I/O
//! here; `sys` issues the ioctl.
//!
//! References: NVMe Base Specification 2.0 (§5.14 Get Log Page, §5.17 Identify, §5.23 Format NVM,
//! §5.24 Sanitize; Figures 207 SMART / Health, 291 Sanitize Status, 275 Identify Controller, 280
//! Identify Namespace), Linux `include/uapi/linux/nvme_ioctl.h`, and `shared/research/wipe.md` §3.3.

/// `struct nvme_passthru_cmd` (a.k.a. `nvme_admin_cmd`), 72 bytes, exactly as the kernel defines it.
///
/// Its fields are private to the command layer: a command is made only by the constructors below,
/// and `sys::nvme_admin` sets the pointer fields itself (the data buffer it is given, no metadata), so
/// no caller can hand the kernel an address of its choosing.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassthruCmd {
    /// Opcode.
    pub(in crate::command) opcode: u8,
    /// Flags (0).
    pub(in crate::command) flags: u8,
    /// Reserved.
    pub(in crate::command) rsvd1: u16,
    /// Namespace id.
    pub(in crate::command) nsid: u32,
    /// Command dword 2.
    pub(in crate::command) cdw2: u32,
    /// Command dword 3.
    pub(in crate::command) cdw3: u32,
    /// Metadata pointer (unused).
    pub(in crate::command) metadata: u64,
    /// Data buffer address (set by `sys` just before the call).
    pub(in crate::command) addr: u64,
    /// Metadata length.
    pub(in crate::command) metadata_len: u32,
    /// Data length in bytes.
    pub(in crate::command) data_len: u32,
    /// Command dword 10.
    pub(in crate::command) cdw10: u32,
    /// Command dword 11.
    pub(in crate::command) cdw11: u32,
    /// Command dword 12.
    pub(in crate::command) cdw12: u32,
    /// Command dword 13.
    pub(in crate::command) cdw13: u32,
    /// Command dword 14.
    pub(in crate::command) cdw14: u32,
    /// Command dword 15.
    pub(in crate::command) cdw15: u32,
    /// Timeout in milliseconds (0 = the driver's default).
    pub(in crate::command) timeout_ms: u32,
    /// Completion dword 0, written by the kernel.
    pub(in crate::command) result: u32,
}

impl PassthruCmd {
    /// Opcode.
    pub fn opcode(&self) -> u8 {
        self.opcode
    }

    /// Namespace id.
    pub fn nsid(&self) -> u32 {
        self.nsid
    }

    /// Command dword 10.
    pub fn cdw10(&self) -> u32 {
        self.cdw10
    }

    /// Bytes the command moves (the data buffer `sys::nvme_admin` needs).
    pub fn data_len(&self) -> u32 {
        self.data_len
    }

    /// The structure's bytes in memory order (x86_64, little endian), for byte-exact tests and logs.
    pub fn to_bytes(&self) -> [u8; 72] {
        let mut b = [0u8; 72];
        b[0] = self.opcode;
        b[1] = self.flags;
        b[2..4].copy_from_slice(&self.rsvd1.to_le_bytes());
        b[4..8].copy_from_slice(&self.nsid.to_le_bytes());
        b[8..12].copy_from_slice(&self.cdw2.to_le_bytes());
        b[12..16].copy_from_slice(&self.cdw3.to_le_bytes());
        b[16..24].copy_from_slice(&self.metadata.to_le_bytes());
        b[24..32].copy_from_slice(&self.addr.to_le_bytes());
        b[32..36].copy_from_slice(&self.metadata_len.to_le_bytes());
        b[36..40].copy_from_slice(&self.data_len.to_le_bytes());
        for (i, dw) in [self.cdw10, self.cdw11, self.cdw12, self.cdw13, self.cdw14, self.cdw15]
            .iter()
            .enumerate()
        {
            b[40 + 4 * i..44 + 4 * i].copy_from_slice(&dw.to_le_bytes());
        }
        b[64..68].copy_from_slice(&self.timeout_ms.to_le_bytes());
        b[68..72].copy_from_slice(&self.result.to_le_bytes());
        b
    }

    /// Short description for certificate evidence: `nvme admin opc=0x84 nsid=0 cdw10=0x0000000c`.
    pub fn describe(&self) -> String {
        format!(
            "nvme admin opc={:#04x} nsid={} cdw10={:#010x} cdw11={:#010x}",
            self.opcode, self.nsid, self.cdw10, self.cdw11
        )
    }
}

/// All namespaces.
pub const NSID_ALL: u32 = 0xffff_ffff;

const OPC_GET_LOG_PAGE: u8 = 0x02;
const OPC_IDENTIFY: u8 = 0x06;
const OPC_FORMAT_NVM: u8 = 0x80;
const OPC_SANITIZE: u8 = 0x84;
const OPC_SECURITY_RECEIVE: u8 = 0x82;
const OPC_SECURITY_SEND: u8 = 0x81;

/// Security Send (NVMe 2.0 §5.25, opcode 81h, host to controller): cdw10 = SECP(31:24) |
/// SPSP1(23:16) | SPSP0(15:8) | NSSF(7:0), cdw11 = transfer length. TCG IF-SEND: protocol 01h,
/// SPSP = the ComID of the session ([`super::tcg_session`]).
pub fn security_send(protocol: u8, comid: u16, len: u32) -> PassthruCmd {
    PassthruCmd {
        opcode: OPC_SECURITY_SEND,
        nsid: 0,
        cdw10: (u32::from(protocol) << 24) | (u32::from(comid) << 8),
        cdw11: len,
        data_len: len,
        ..Default::default()
    }
}

/// Security Receive (NVMe 2.0 §5.26, opcode 82h) of `len` bytes: TCG IF-RECV on `comid`.
pub fn security_receive(protocol: u8, comid: u16, len: u32) -> PassthruCmd {
    PassthruCmd {
        opcode: OPC_SECURITY_RECEIVE,
        nsid: 0,
        cdw10: (u32::from(protocol) << 24) | (u32::from(comid) << 8),
        cdw11: len,
        data_len: len,
        ..Default::default()
    }
}

/// Security Receive (NVMe 2.0 §5.26): cdw10 = SECP(31:24) | SPSP1(23:16) | SPSP0(15:8) | NSSF(7:0),
/// cdw11 = allocation length. Protocol 01h with ComID 0001h is TCG Level 0 Discovery
/// ([`super::tcg`]); 2048 bytes hold every descriptor a drive reports.
pub fn tcg_level0_discovery() -> PassthruCmd {
    security_receive(
        super::tcg::PROTOCOL,
        super::tcg::LEVEL0_COMID,
        super::tcg::DISCOVERY_LEN,
    )
}

/// Identify Controller (CNS 01h), 4096 bytes in.
pub fn identify_controller() -> PassthruCmd {
    PassthruCmd {
        opcode: OPC_IDENTIFY,
        nsid: 0,
        cdw10: 0x01,
        data_len: 4096,
        ..Default::default()
    }
}

/// Identify Namespace (CNS 00h) of `nsid`, 4096 bytes in.
pub fn identify_namespace(nsid: u32) -> PassthruCmd {
    PassthruCmd {
        opcode: OPC_IDENTIFY,
        nsid,
        cdw10: 0x00,
        data_len: 4096,
        ..Default::default()
    }
}

/// Get Log Page: `len` bytes (a multiple of 4) of log `lid`; `rae` retains asynchronous events.
/// cdw10 = LID | LSP<<8 | RAE<<15 | NUMDL<<16, cdw11 = NUMDU, NUMD = len/4 - 1 (NVMe 2.0 §5.16).
pub fn get_log_page(lid: u8, nsid: u32, len: u32, rae: bool) -> PassthruCmd {
    let numd = (len / 4).saturating_sub(1);
    PassthruCmd {
        opcode: OPC_GET_LOG_PAGE,
        nsid,
        cdw10: u32::from(lid) | (u32::from(rae) << 15) | ((numd & 0xffff) << 16),
        cdw11: numd >> 16,
        data_len: len,
        ..Default::default()
    }
}

/// SMART / Health Information log (02h), 512 bytes, controller-wide.
pub fn smart_log() -> PassthruCmd {
    get_log_page(0x02, NSID_ALL, 512, false)
}

/// Sanitize Status log (81h), 512 bytes, with RAE so polling does not clear the sanitize event.
pub fn sanitize_status_log() -> PassthruCmd {
    get_log_page(0x81, NSID_ALL, 512, true)
}

/// Secure Erase Settings of Format NVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureErase {
    /// SES 0: no secure erase (erases nothing reliably; never used by Lapterop for a wipe).
    None = 0,
    /// SES 1: user data erase.
    UserData = 1,
    /// SES 2: cryptographic erase.
    Crypto = 2,
}

/// Format NVM (NVMe 2.0 §5.23): cdw10 = LBAF(3:0) | MSET<<4 | PI<<5 | PIL<<8 | SES<<9 | LBAFU<<12.
/// `nsid` is the namespace, or [`NSID_ALL`] when FNA says format applies to all namespaces.
pub fn format_nvm(nsid: u32, lbaf: u8, ses: SecureErase) -> PassthruCmd {
    let lbaf = u32::from(lbaf);
    PassthruCmd {
        opcode: OPC_FORMAT_NVM,
        nsid,
        cdw10: (lbaf & 0xf) | ((ses as u32) << 9) | (((lbaf >> 4) & 0x3) << 12),
        timeout_ms: 600_000,
        ..Default::default()
    }
}

/// Sanitize actions (SANACT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeAction {
    /// 001b: exit failure mode.
    ExitFailureMode = 1,
    /// 010b: block erase.
    BlockErase = 2,
    /// 011b: overwrite.
    Overwrite = 3,
    /// 100b: crypto erase.
    CryptoErase = 4,
}

/// Sanitize (NVMe 2.0 §5.24), always with NSID 0: cdw10 = SANACT | AUSE<<3 | OWPASS<<4 | OIPBP<<8 |
/// NODAS<<9; cdw11 = overwrite pattern. Every erase action is sent with AUSE = 1 (unrestricted
/// completion mode, §8.21): should it fail, Exit Failure Mode (SANACT 001b) lets the drive serve I/O
/// again, so the overwrite can still run; with AUSE = 0 only a later successful sanitize would.
/// OWPASS is at least 1 (0 would mean 16).
pub fn sanitize(action: SanitizeAction, overwrite_passes: u8, pattern: u32) -> PassthruCmd {
    let owpass = if action == SanitizeAction::Overwrite {
        u32::from(overwrite_passes.clamp(1, 15))
    } else {
        0
    };
    let ause = u32::from(action != SanitizeAction::ExitFailureMode) << 3;
    PassthruCmd {
        opcode: OPC_SANITIZE,
        nsid: 0,
        cdw10: (action as u32) | ause | (owpass << 4),
        cdw11: if action == SanitizeAction::Overwrite {
            pattern
        } else {
            0
        },
        ..Default::default()
    }
}

/// A completion status (the positive return value of the ioctl): SCT in bits 10:8, SC in 7:0,
/// More bit 13, DNR bit 14.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Status code type.
    pub sct: u8,
    /// Status code.
    pub sc: u8,
    /// Do Not Retry.
    pub dnr: bool,
}

impl Status {
    /// Decodes the ioctl's positive return value.
    pub fn from_ioctl(value: u32) -> Self {
        Self {
            sct: value.to_le_bytes()[1] & 0x7,
            sc: value.to_le_bytes()[0],
            dnr: value & 0x4000 != 0,
        }
    }

    /// True for Successful Completion.
    pub fn ok(&self) -> bool {
        self.sct == 0 && self.sc == 0
    }

    /// In words (NVMe 2.0 Figures 100-103, the codes that matter for a wipe).
    pub fn describe(&self) -> String {
        let words = match (self.sct, self.sc) {
            (0, 0x00) => "successful completion",
            (0, 0x01) => "invalid command opcode",
            (0, 0x02) => "invalid field in command",
            (0, 0x0b) => "invalid namespace or format",
            (0, 0x1d) => "sanitize failed",
            (0, 0x1e) => "sanitize in progress",
            (0, 0x20) => "namespace is write protected",
            (1, 0x0a) => "invalid format",
            (1, 0x15) => "namespace insufficient capacity",
            (1, 0x23) => "sanitize prohibited while persistent memory region is enabled",
            (0, 0x06) => "internal error",
            (0, 0x07) => "command abort requested",
            _ => "other status",
        };
        format!(
            "sct {} sc {:#04x} ({words}){}",
            self.sct,
            self.sc,
            if self.dnr { ", do not retry" } else { "" }
        )
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Low 64 bits of a 128-bit little-endian counter, saturated when the high half is not zero.
fn le128_sat(b: &[u8], at: usize) -> u64 {
    if le64(b, at + 8) != 0 {
        u64::MAX
    } else {
        le64(b, at)
    }
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_matches(|c: char| c == ' ' || c == '\0')
        .to_owned()
}

/// Identify Controller fields a wipe needs (NVMe 2.0 Figure 275).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// PCI vendor id (bytes 1:0).
    pub vid: u16,
    /// Serial number (23:4).
    pub serial: String,
    /// Model number (63:24).
    pub model: String,
    /// Firmware revision (71:64).
    pub firmware: String,
    /// OACS bit 1: Format NVM supported.
    pub format_supported: bool,
    /// SANICAP bit 0: crypto erase.
    pub sanitize_crypto: bool,
    /// SANICAP bit 1: block erase.
    pub sanitize_block: bool,
    /// SANICAP bit 2: overwrite.
    pub sanitize_overwrite: bool,
    /// FNA bit 0: format applies to all namespaces.
    pub format_all_namespaces: bool,
    /// FNA bit 1: secure erase applies to all namespaces.
    pub secure_erase_all_namespaces: bool,
    /// FNA bit 2: cryptographic erase supported as part of Format NVM.
    pub format_crypto: bool,
    /// Number of namespaces (NN, 519:516).
    pub namespaces: u32,
}

/// Parses Identify Controller data (4096 bytes).
pub fn parse_controller(d: &[u8; 4096]) -> Controller {
    let oacs = le16(d, 256);
    let sanicap = le32(d, 328);
    let fna = d[524];
    Controller {
        vid: le16(d, 0),
        serial: ascii(&d[4..24]),
        model: ascii(&d[24..64]),
        firmware: ascii(&d[64..72]),
        format_supported: oacs & 0x2 != 0,
        sanitize_crypto: sanicap & 0x1 != 0,
        sanitize_block: sanicap & 0x2 != 0,
        sanitize_overwrite: sanicap & 0x4 != 0,
        format_all_namespaces: fna & 0x1 != 0,
        secure_erase_all_namespaces: fna & 0x2 != 0,
        format_crypto: fna & 0x4 != 0,
        namespaces: le32(d, 516),
    }
}

/// One LBA format (NVMe 2.0 Figure 281).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbaFormat {
    /// Metadata bytes per block.
    pub metadata_size: u16,
    /// Data size in bytes (2^LBADS).
    pub data_size: u32,
    /// Relative performance (0 best).
    pub relative_performance: u8,
}

/// Identify Namespace fields a wipe needs (NVMe 2.0 Figure 280).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Namespace size in logical blocks.
    pub size_blocks: u64,
    /// Capacity in logical blocks.
    pub capacity_blocks: u64,
    /// Blocks in use.
    pub used_blocks: u64,
    /// The LBA formats.
    pub formats: Vec<LbaFormat>,
    /// Index of the format in use (FLBAS bits 3:0 and 6:5).
    pub current_format: u8,
    /// FPI bit 7: format progress indicator supported; bits 6:0 percent remaining.
    pub format_progress: Option<u8>,
    /// DLFEAT bits 2:0: what deallocated blocks read as (1 = zeros, 2 = FFh, 0 = not reported).
    pub deallocated_read: u8,
    /// EUI-64 (bytes 127:120), when not zero.
    pub eui64: Option<[u8; 8]>,
}

impl Namespace {
    /// The logical block size in use.
    pub fn block_size(&self) -> Option<u32> {
        self.formats.get(usize::from(self.current_format)).map(|f| f.data_size)
    }
}

/// Parses Identify Namespace data (4096 bytes).
pub fn parse_namespace(d: &[u8; 4096]) -> Namespace {
    let nlbaf = usize::from(d[25]) + 1;
    let flbas = d[26];
    let formats = (0..nlbaf.min(64))
        .map(|i| {
            let at = 128 + 4 * i;
            let lbads = d[at + 2];
            LbaFormat {
                metadata_size: le16(d, at),
                data_size: if (9..32).contains(&lbads) { 1u32 << lbads } else { 0 },
                relative_performance: d[at + 3] & 0x3,
            }
        })
        .collect();
    let fpi = d[32];
    let mut eui = [0u8; 8];
    eui.copy_from_slice(&d[120..128]);
    Namespace {
        size_blocks: le64(d, 0),
        capacity_blocks: le64(d, 8),
        used_blocks: le64(d, 16),
        formats,
        current_format: (flbas & 0xf) | ((flbas >> 5) & 0x3) << 4,
        format_progress: (fpi & 0x80 != 0).then_some(fpi & 0x7f),
        deallocated_read: d[33] & 0x7,
        eui64: (eui != [0; 8]).then_some(eui),
    }
}

/// SMART / Health Information (NVMe 2.0 Figure 207).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Critical Warning bits (0 spare below threshold, 1 temperature, 2 reliability degraded,
    /// 3 read-only, 4 volatile backup failed, 5 persistent memory read-only).
    pub critical_warning: u8,
    /// Composite temperature in kelvin.
    pub temperature_kelvin: u16,
    /// Available spare, percent.
    pub available_spare: u8,
    /// Available spare threshold, percent.
    pub spare_threshold: u8,
    /// Percentage used (can exceed 100).
    pub percentage_used: u8,
    /// Data units written (1000 × 512 bytes each).
    pub data_units_written: u64,
    /// Power cycles.
    pub power_cycles: u64,
    /// Power-on hours.
    pub power_on_hours: u64,
    /// Unsafe shutdowns.
    pub unsafe_shutdowns: u64,
    /// Media and data integrity errors.
    pub media_errors: u64,
}

/// Parses the SMART / Health log (512 bytes).
pub fn parse_health(d: &[u8; 512]) -> Health {
    Health {
        critical_warning: d[0],
        temperature_kelvin: le16(d, 1),
        available_spare: d[3],
        spare_threshold: d[4],
        percentage_used: d[5],
        data_units_written: le128_sat(d, 48),
        power_cycles: le128_sat(d, 112),
        power_on_hours: le128_sat(d, 128),
        unsafe_shutdowns: le128_sat(d, 144),
        media_errors: le128_sat(d, 160),
    }
}

/// State of the most recent sanitize (SSTAT bits 2:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeState {
    /// 0: never sanitized.
    Never,
    /// 1: completed successfully.
    Succeeded,
    /// 2: in progress.
    InProgress,
    /// 3: failed.
    Failed,
    /// 4: completed successfully with deallocation although No-Deallocate was requested.
    SucceededDeallocated,
    /// Anything else.
    Other(u8),
}

/// The Sanitize Status log (NVMe 2.0 Figure 291).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SanitizeLog {
    /// SPROG: progress in 1/65536 (FFFFh when not in progress).
    pub progress: u16,
    /// SSTAT bits 2:0.
    pub state: SanitizeState,
    /// SSTAT bits 7:3: overwrite passes completed.
    pub overwrite_passes: u8,
    /// SSTAT bit 8: Global Data Erased (no user data written since the last sanitize/format).
    pub global_data_erased: bool,
    /// SCDW10 of the most recent sanitize.
    pub cdw10: u32,
    /// Estimated seconds for crypto erase (ETCE), when reported.
    pub estimate_crypto_secs: Option<u32>,
    /// Estimated seconds for block erase (ETBE), when reported.
    pub estimate_block_secs: Option<u32>,
    /// Estimated seconds for overwrite (ETO), when reported.
    pub estimate_overwrite_secs: Option<u32>,
}

/// Parses the Sanitize Status log (512 bytes).
pub fn parse_sanitize_log(d: &[u8; 512]) -> SanitizeLog {
    let sstat = le16(d, 2);
    let [sstat_lo, sstat_hi] = sstat.to_le_bytes();
    let estimate = |at| Some(le32(d, at)).filter(|v| *v != u32::MAX);
    SanitizeLog {
        progress: le16(d, 0),
        state: match sstat_lo & 0x7 {
            0 => SanitizeState::Never,
            1 => SanitizeState::Succeeded,
            2 => SanitizeState::InProgress,
            3 => SanitizeState::Failed,
            4 => SanitizeState::SucceededDeallocated,
            other => SanitizeState::Other(other),
        },
        overwrite_passes: (sstat_lo >> 3) & 0x1f,
        global_data_erased: sstat_hi & 0x1 != 0,
        cdw10: le32(d, 4),
        estimate_overwrite_secs: estimate(8),
        estimate_block_secs: estimate(12),
        estimate_crypto_secs: estimate(16),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthru_struct_is_the_kernels_72_bytes() {
        // include/uapi/linux/nvme_ioctl.h: struct nvme_passthru_cmd, 72 bytes; result at 68.
        assert_eq!(std::mem::size_of::<PassthruCmd>(), 72);
        assert_eq!(std::mem::align_of::<PassthruCmd>(), 8);
        // include/uapi/linux/nvme_ioctl.h, struct nvme_passthru_cmd, field by field.
        use std::mem::offset_of;
        let offsets = [
            (offset_of!(PassthruCmd, opcode), 0),
            (offset_of!(PassthruCmd, flags), 1),
            (offset_of!(PassthruCmd, rsvd1), 2),
            (offset_of!(PassthruCmd, nsid), 4),
            (offset_of!(PassthruCmd, cdw2), 8),
            (offset_of!(PassthruCmd, cdw3), 12),
            (offset_of!(PassthruCmd, metadata), 16),
            (offset_of!(PassthruCmd, addr), 24),
            (offset_of!(PassthruCmd, metadata_len), 32),
            (offset_of!(PassthruCmd, data_len), 36),
            (offset_of!(PassthruCmd, cdw10), 40),
            (offset_of!(PassthruCmd, cdw15), 60),
            (offset_of!(PassthruCmd, timeout_ms), 64),
            (offset_of!(PassthruCmd, result), 68),
        ];
        for (i, (got, want)) in offsets.iter().enumerate() {
            assert_eq!(got, want, "field {i}");
        }
        let c = PassthruCmd {
            result: 0xdead_beef,
            timeout_ms: 7,
            cdw15: 0x0102_0304,
            ..Default::default()
        };
        let b = c.to_bytes();
        assert_eq!(&b[60..64], &[4, 3, 2, 1]);
        assert_eq!(&b[64..68], &[7, 0, 0, 0]);
        assert_eq!(&b[68..72], &[0xef, 0xbe, 0xad, 0xde]);
    }

    /// wipe.md §3.3 table: opcodes, NSIDs and dwords.
    #[test]
    fn admin_commands_match_the_reference_encodings() {
        let c = identify_controller();
        assert_eq!((c.opcode, c.nsid, c.cdw10, c.data_len), (0x06, 0, 0x01, 4096));
        let c = identify_namespace(1);
        assert_eq!((c.opcode, c.nsid, c.cdw10, c.data_len), (0x06, 1, 0x00, 4096));
        // SMART/Health: cdw10 = 0x007F0002 (NUMDL = 512/4 - 1 = 127), NSID FFFFFFFFh.
        let c = smart_log();
        assert_eq!(
            (c.opcode, c.nsid, c.cdw10, c.cdw11, c.data_len),
            (0x02, NSID_ALL, 0x007f_0002, 0, 512)
        );
        // Sanitize Status with RAE: 0x007F8081.
        assert_eq!(sanitize_status_log().cdw10, 0x007f_8081);
        assert_eq!(get_log_page(0x81, NSID_ALL, 512, false).cdw10, 0x007f_0081);
        // A log longer than 256 KiB spills into NUMDU.
        let c = get_log_page(0x07, NSID_ALL, 1 << 20, false);
        assert_eq!((c.cdw10 >> 16, c.cdw11), (0xffff, 0x0003));
        // Format NVM: SES<<9 → 0x200 user data, 0x400 crypto; LBAF in 3:0 and LBAFU in 13:12.
        assert_eq!(format_nvm(1, 0, SecureErase::UserData).cdw10, 0x200);
        assert_eq!(format_nvm(1, 0, SecureErase::Crypto).cdw10, 0x400);
        assert_eq!(format_nvm(1, 1, SecureErase::Crypto).cdw10, 0x401);
        assert_eq!(format_nvm(1, 0x13, SecureErase::None).cdw10, 0x1003);
        assert_eq!(format_nvm(NSID_ALL, 0, SecureErase::Crypto).opcode, 0x80);
        // Sanitize (NVMe 2.0 §5.24, Figure "Sanitize – Command Dword 10"): NSID 0 always; SANACT 4
        // crypto, 2 block, 3 overwrite with OWPASS (bits 7:4) and pattern; AUSE (bit 3) set on every
        // erase action; Exit Failure Mode is SANACT 1 alone.
        let c = sanitize(SanitizeAction::CryptoErase, 0, 0);
        assert_eq!((c.opcode, c.nsid, c.cdw10, c.cdw11), (0x84, 0, 0x0C, 0));
        assert_eq!(sanitize(SanitizeAction::BlockErase, 0, 0).cdw10, 0x0A);
        let c = sanitize(SanitizeAction::Overwrite, 1, 0xa5a5_a5a5);
        assert_eq!((c.cdw10, c.cdw11), (0x1B, 0xa5a5_a5a5));
        assert_eq!(
            sanitize(SanitizeAction::Overwrite, 0, 0).cdw10,
            0x1B,
            "OWPASS 0 would mean 16"
        );
        assert_eq!(sanitize(SanitizeAction::ExitFailureMode, 0, 0).cdw10, 0x1);
        assert_eq!(
            sanitize(SanitizeAction::CryptoErase, 0, 0).describe(),
            "nvme admin opc=0x84 nsid=0 cdw10=0x0000000c cdw11=0x00000000"
        );
    }

    #[test]
    fn status_decodes() {
        assert!(Status::from_ioctl(0).ok());
        let s = Status::from_ioctl(0x401d);
        assert_eq!((s.sct, s.sc, s.dnr), (0, 0x1d, true));
        assert!(s.describe().contains("sanitize failed"));
        let s = Status::from_ioctl(0x10a);
        assert_eq!((s.sct, s.sc), (1, 0x0a));
        assert!(s.describe().contains("invalid format"));
    }

    /// An Identify Controller page shaped like QEMU's emulated controller (hw/nvme/ctrl.c: VID 1B36,
    /// model "QEMU NVMe Ctrl", OACS format, no SANICAP) and like a Samsung PM981 (SANICAP crypto+block,
    /// FNA crypto).
    #[test]
    fn identify_controller_parses() {
        let mut d = [0u8; 4096];
        d[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        d[4..24].copy_from_slice(b"deadbeef            ");
        d[24..64].copy_from_slice(b"QEMU NVMe Ctrl                          ");
        d[64..72].copy_from_slice(b"9.2.0   ");
        d[256] = 0x02;
        d[516] = 1;
        let c = parse_controller(&d);
        assert_eq!(
            (c.vid, c.serial.as_str(), c.model.as_str(), c.firmware.as_str()),
            (0x1b36, "deadbeef", "QEMU NVMe Ctrl", "9.2.0")
        );
        assert!(c.format_supported && !c.sanitize_crypto && !c.sanitize_block && !c.format_crypto);
        d[328] = 0x03;
        d[524] = 0x04;
        let c = parse_controller(&d);
        assert!(c.sanitize_crypto && c.sanitize_block && !c.sanitize_overwrite && c.format_crypto);
    }

    #[test]
    fn identify_namespace_parses_formats_and_progress() {
        let mut d = [0u8; 4096];
        d[0..8].copy_from_slice(&131_072u64.to_le_bytes());
        d[8..16].copy_from_slice(&131_072u64.to_le_bytes());
        d[25] = 1; // two formats
        d[26] = 1; // using format 1
        d[128 + 2] = 9; // 512
        d[132 + 2] = 12; // 4096
        d[32] = 0x80 | 25;
        d[33] = 0x01;
        let n = parse_namespace(&d);
        assert_eq!(n.size_blocks, 131_072);
        assert_eq!(n.formats.len(), 2);
        assert_eq!(n.block_size(), Some(4096));
        assert_eq!(n.format_progress, Some(25));
        assert_eq!(n.deallocated_read, 1);
        assert_eq!(n.eui64, None);
    }

    #[test]
    fn health_and_sanitize_logs_parse() {
        let mut d = [0u8; 512];
        d[0] = 0x04;
        d[1..3].copy_from_slice(&310u16.to_le_bytes());
        d[3] = 100;
        d[4] = 10;
        d[5] = 7;
        d[128..136].copy_from_slice(&12_345u64.to_le_bytes());
        d[160..168].copy_from_slice(&2u64.to_le_bytes());
        let h = parse_health(&d);
        assert_eq!(
            (h.critical_warning, h.temperature_kelvin, h.percentage_used),
            (4, 310, 7)
        );
        assert_eq!((h.power_on_hours, h.media_errors), (12_345, 2));
        d[168] = 1; // high half of media errors set: saturates rather than wraps
        assert_eq!(parse_health(&d).media_errors, u64::MAX);

        // The typical "done" value from wipe.md §3.3: SPROG FFFFh, SSTAT 0101h.
        let mut s = [0u8; 512];
        s[0..2].copy_from_slice(&0xffffu16.to_le_bytes());
        s[2..4].copy_from_slice(&0x0101u16.to_le_bytes());
        s[4..8].copy_from_slice(&4u32.to_le_bytes());
        s[8..20].fill(0xff);
        s[16..20].copy_from_slice(&30u32.to_le_bytes());
        let l = parse_sanitize_log(&s);
        assert_eq!(l.state, SanitizeState::Succeeded);
        assert!(l.global_data_erased);
        assert_eq!(
            (l.progress, l.cdw10, l.estimate_crypto_secs, l.estimate_block_secs),
            (0xffff, 4, Some(30), None)
        );
        s[2..4].copy_from_slice(&0x0002u16.to_le_bytes());
        s[0..2].copy_from_slice(&0x8000u16.to_le_bytes());
        let l = parse_sanitize_log(&s);
        assert_eq!((l.state, l.progress), (SanitizeState::InProgress, 0x8000));
        s[2..4].copy_from_slice(&0x0003u16.to_le_bytes());
        assert_eq!(parse_sanitize_log(&s).state, SanitizeState::Failed);
    }
}
