//! eMMC commands through the kernel's `MMC_IOC_CMD` (`include/uapi/linux/mmc/ioctl.h`), as pure
//! values: the `struct mmc_ioc_cmd` we send, the Extended CSD register we read, and the R1 device
//! status we check. References are to JEDEC JESD84-B51 (eMMC 5.1): §6.10.4 (command classes and the
//! detailed command description: CMD6 SWITCH, CMD8 SEND_EXT_CSD, CMD13 SEND_STATUS), §6.13 (device
//! status, R1), §7.4 (the Extended CSD register, field by field), §6.6.24 (Sanitize). The response
//! and command-type flags are the kernel's (`include/linux/mmc/core.h`), combined exactly as
//! mmc-utils' `mmc_cmds.c` does.
//!
//! Only three commands are sent this way. Erasing itself goes through the kernel's block layer
//! (`BLKDISCARD`, `BLKSECDISCARD`), which knows the card's erase groups and timeouts; SANITIZE is the
//! SWITCH below, which the kernel recognises and runs with its own busy wait (`mmc_sanitize` in
//! `drivers/mmc/core/mmc_ops.c`).

/// `struct mmc_ioc_cmd` (72 bytes on 64-bit kernels; layout checked by a unit test).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MmcIocCmd {
    /// 1 when the command writes (data or a register), 0 to read.
    pub write_flag: i32,
    /// 1 for an application command (SD only); always 0 here.
    pub is_acmd: i32,
    /// Command index (CMD6 → 6).
    pub opcode: u32,
    /// Argument.
    pub arg: u32,
    /// The card's response, filled in by the kernel (R1: word 0).
    pub response: [u32; 4],
    /// Response type and command class (`MMC_RSP_*`, `MMC_CMD_*`).
    pub flags: u32,
    /// Data block size in bytes.
    pub blksz: u32,
    /// Data blocks.
    pub blocks: u32,
    /// Sleep after the command, minimum (µs).
    pub postsleep_min_us: u32,
    /// Sleep after the command, maximum (µs).
    pub postsleep_max_us: u32,
    /// Data timeout (ns); 0 lets the kernel use the card's.
    pub data_timeout_ns: u32,
    /// Command (busy) timeout (ms); 0 lets the kernel choose.
    pub cmd_timeout_ms: u32,
    /// Padding the kernel structure has before the 64-bit pointer.
    pub pad: u32,
    /// User address of the data buffer (set by the ioctl wrapper, never by callers).
    pub data_ptr: u64,
}

// include/linux/mmc/core.h
const MMC_RSP_PRESENT: u32 = 1 << 0;
const MMC_RSP_CRC: u32 = 1 << 2;
const MMC_RSP_BUSY: u32 = 1 << 3;
const MMC_RSP_OPCODE: u32 = 1 << 4;
const MMC_CMD_AC: u32 = 0 << 5;
const MMC_CMD_ADTC: u32 = 1 << 5;
const MMC_RSP_SPI_S1: u32 = 1 << 7;
const MMC_RSP_SPI_BUSY: u32 = 1 << 10;
/// R1: present, CRC, opcode echoed.
const MMC_RSP_R1: u32 = MMC_RSP_PRESENT | MMC_RSP_CRC | MMC_RSP_OPCODE;
/// R1b: R1 with busy signalling on DAT0.
const MMC_RSP_R1B: u32 = MMC_RSP_R1 | MMC_RSP_BUSY;
const MMC_RSP_SPI_R1: u32 = MMC_RSP_SPI_S1;
const MMC_RSP_SPI_R1B: u32 = MMC_RSP_SPI_S1 | MMC_RSP_SPI_BUSY;

/// The relative card address Linux gives an eMMC (`mmc_init_card`: `card->rca = 1`).
const RCA: u32 = 1;

/// EXT_CSD byte indices (JESD84-B51 §7.4).
pub mod ext_csd {
    /// SANITIZE_START [165] (W/E_P): writing 1 starts a sanitize.
    pub const SANITIZE_START: u8 = 165;
    /// RPMB_SIZE_MULT [168]: RPMB size in 128 KiB units.
    pub const RPMB_SIZE_MULT: usize = 168;
    /// BOOT_WP [173]: boot area write protection.
    pub const BOOT_WP: usize = 173;
    /// BOOT_WP_STATUS [174]: protection per boot area (bits 1:0 area 1, 3:2 area 2).
    pub const BOOT_WP_STATUS: usize = 174;
    /// ERASED_MEM_CONT [181]: what erased memory reads as (0 → 0x00, 1 → 0xFF).
    pub const ERASED_MEM_CONT: usize = 181;
    /// EXT_CSD_REV [192]: 5 = eMMC 4.41, 6 = 4.5/4.51, 7 = 5.0, 8 = 5.1.
    pub const EXT_CSD_REV: usize = 192;
    /// SEC_COUNT [215:212]: user area size in 512-byte sectors (high-capacity devices).
    pub const SEC_COUNT: usize = 212;
    /// BOOT_SIZE_MULT [226]: boot area size in 128 KiB units.
    pub const BOOT_SIZE_MULT: usize = 226;
    /// SEC_FEATURE_SUPPORT [231].
    pub const SEC_FEATURE_SUPPORT: usize = 231;
}

/// CMD8 SEND_EXT_CSD: reads the 512-byte Extended CSD register (§6.10.4, class 0, type adtc, R1).
pub fn send_ext_csd() -> MmcIocCmd {
    MmcIocCmd {
        write_flag: 0,
        opcode: 8,
        arg: 0,
        flags: MMC_RSP_SPI_R1 | MMC_RSP_R1 | MMC_CMD_ADTC,
        blksz: 512,
        blocks: 1,
        ..MmcIocCmd::default()
    }
}

/// CMD6 SWITCH access mode "write byte" (§6.10.4: argument bits 25:24 access, 23:16 index, 15:8
/// value, 2:0 command set).
const SWITCH_WRITE_BYTE: u32 = 3;
/// EXT_CSD_CMD_SET_NORMAL (`include/linux/mmc/mmc.h`), the command set field of CMD6.
const CMD_SET_NORMAL: u32 = 1;

/// CMD6 SWITCH writing `value` to EXT_CSD byte `index` (§6.10.4, class 0, type ac, R1b), with a busy
/// timeout of `timeout_ms`.
pub fn switch(index: u8, value: u8, timeout_ms: u32) -> MmcIocCmd {
    MmcIocCmd {
        write_flag: 1,
        opcode: 6,
        arg: (SWITCH_WRITE_BYTE << 24) | (u32::from(index) << 16) | (u32::from(value) << 8) | CMD_SET_NORMAL,
        flags: MMC_RSP_SPI_R1B | MMC_RSP_R1B | MMC_CMD_AC,
        cmd_timeout_ms: timeout_ms,
        ..MmcIocCmd::default()
    }
}

/// SANITIZE: CMD6 setting SANITIZE_START [165] to 1 (§6.6.24). It removes the data of every unmapped
/// block, so the user area is discarded first.
pub fn sanitize(timeout_ms: u32) -> MmcIocCmd {
    switch(ext_csd::SANITIZE_START, 1, timeout_ms)
}

/// CMD13 SEND_STATUS for the card at RCA 1 (§6.10.4, class 0, type ac, R1: argument bits 31:16 RCA).
pub fn send_status() -> MmcIocCmd {
    MmcIocCmd {
        write_flag: 0,
        opcode: 13,
        arg: RCA << 16,
        flags: MMC_RSP_R1 | MMC_CMD_AC,
        ..MmcIocCmd::default()
    }
}

/// What the Extended CSD says about wiping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtCsd {
    /// EXT_CSD_REV [192].
    pub revision: u8,
    /// SEC_FEATURE_SUPPORT bit 6 SEC_SANITIZE: SANITIZE is supported (eMMC 4.5 and later).
    pub sanitize: bool,
    /// SEC_FEATURE_SUPPORT bit 0 SECURE_ER_EN: secure erase and secure trim (eMMC 4.41; obsolete
    /// from 4.51, where a device may still report it).
    pub secure_erase: bool,
    /// SEC_FEATURE_SUPPORT bit 4 SEC_GB_CL_EN: trim (garbage collection) supported.
    pub trim: bool,
    /// User area in 512-byte sectors (SEC_COUNT).
    pub sectors: u64,
    /// Each boot area in bytes (BOOT_SIZE_MULT × 128 KiB).
    pub boot_area_bytes: u64,
    /// RPMB in bytes (RPMB_SIZE_MULT × 128 KiB).
    pub rpmb_bytes: u64,
    /// BOOT_WP [173] raw.
    pub boot_wp: u8,
    /// BOOT_WP_STATUS [174] per area (0 none, 1 power-on, 2 permanent).
    pub boot_wp_status: [u8; 2],
    /// Erased memory reads as 0xFF (ERASED_MEM_CONT = 1) rather than 0x00.
    pub erased_reads_ones: bool,
}

/// Parses the 512-byte Extended CSD.
pub fn parse_ext_csd(d: &[u8; 512]) -> ExtCsd {
    use ext_csd::*;
    let sec = d[SEC_FEATURE_SUPPORT];
    let status = d[BOOT_WP_STATUS];
    ExtCsd {
        revision: d[EXT_CSD_REV],
        // SEC_SANITIZE is defined from EXT_CSD_REV 6 (eMMC 4.5); before it the bit is reserved.
        sanitize: d[EXT_CSD_REV] >= 6 && sec & (1 << 6) != 0,
        secure_erase: sec & 1 != 0,
        trim: sec & (1 << 4) != 0,
        sectors: u64::from(u32::from_le_bytes([
            d[SEC_COUNT],
            d[SEC_COUNT + 1],
            d[SEC_COUNT + 2],
            d[SEC_COUNT + 3],
        ])),
        boot_area_bytes: u64::from(d[BOOT_SIZE_MULT]) * 128 * 1024,
        rpmb_bytes: u64::from(d[RPMB_SIZE_MULT]) * 128 * 1024,
        boot_wp: d[BOOT_WP],
        boot_wp_status: [status & 0b11, (status >> 2) & 0b11],
        erased_reads_ones: d[ERASED_MEM_CONT] == 1,
    }
}

/// The R1 device status (§6.13, table "Device status").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R1(pub u32);

/// Error bits of R1: 31 ADDRESS_OUT_OF_RANGE, 30 ADDRESS_MISALIGN, 29 BLOCK_LEN_ERROR,
/// 28 ERASE_SEQ_ERROR, 27 ERASE_PARAM, 26 WP_VIOLATION, 24 LOCK_UNLOCK_FAILED, 23 COM_CRC_ERROR,
/// 22 ILLEGAL_COMMAND, 21 DEVICE_ECC_FAILED, 20 CC_ERROR, 19 ERROR, 16 CID/CSD_OVERWRITE,
/// 15 WP_ERASE_SKIP, 7 SWITCH_ERROR.
const R1_ERRORS: u32 = 0xFDF9_8080;

impl R1 {
    /// CURRENT_STATE (bits 12:9): 4 = tran, 7 = prg, ...
    pub fn state(self) -> u32 {
        (self.0 >> 9) & 0xF
    }

    /// Any error bit set.
    pub fn error(self) -> bool {
        self.0 & R1_ERRORS != 0
    }

    /// Idle in the transfer state and ready for data: nothing still running.
    pub fn ready(self) -> bool {
        self.state() == 4 && self.0 & (1 << 8) != 0
    }

    /// In words, for the certificate's evidence.
    pub fn describe(self) -> String {
        let names = [
            (31, "ADDRESS_OUT_OF_RANGE"),
            (30, "ADDRESS_MISALIGN"),
            (29, "BLOCK_LEN_ERROR"),
            (28, "ERASE_SEQ_ERROR"),
            (27, "ERASE_PARAM"),
            (26, "WP_VIOLATION"),
            (24, "LOCK_UNLOCK_FAILED"),
            (23, "COM_CRC_ERROR"),
            (22, "ILLEGAL_COMMAND"),
            (21, "DEVICE_ECC_FAILED"),
            (20, "CC_ERROR"),
            (19, "ERROR"),
            (16, "CID/CSD_OVERWRITE"),
            (15, "WP_ERASE_SKIP"),
            (7, "SWITCH_ERROR"),
        ];
        let errors: Vec<&str> = names
            .iter()
            .filter(|(bit, _)| self.0 & (1u32 << bit) != 0)
            .map(|(_, n)| *n)
            .collect();
        let state = match self.state() {
            0 => "idle",
            1 => "ready",
            2 => "ident",
            3 => "stby",
            4 => "tran",
            5 => "data",
            6 => "rcv",
            7 => "prg",
            8 => "dis",
            9 => "btst",
            10 => "slp",
            _ => "reserved",
        };
        if errors.is_empty() {
            format!("R1 {:#010x}: state {state}, no error", self.0)
        } else {
            format!("R1 {:#010x}: state {state}, {}", self.0, errors.join(", "))
        }
    }
}

impl MmcIocCmd {
    /// The command as the certificate's evidence shows it.
    pub fn describe(&self) -> String {
        format!("mmc CMD{} arg={:#010x} flags={:#x}", self.opcode, self.arg, self.flags)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn mmc_ioc_cmd_is_the_kernels_72_bytes() {
        use std::mem::offset_of;
        assert_eq!(std::mem::size_of::<MmcIocCmd>(), 72);
        // include/uapi/linux/mmc/ioctl.h, struct mmc_ioc_cmd on x86_64.
        for (got, want) in [
            (offset_of!(MmcIocCmd, write_flag), 0),
            (offset_of!(MmcIocCmd, is_acmd), 4),
            (offset_of!(MmcIocCmd, opcode), 8),
            (offset_of!(MmcIocCmd, arg), 12),
            (offset_of!(MmcIocCmd, response), 16),
            (offset_of!(MmcIocCmd, flags), 32),
            (offset_of!(MmcIocCmd, blksz), 36),
            (offset_of!(MmcIocCmd, blocks), 40),
            (offset_of!(MmcIocCmd, postsleep_min_us), 44),
            (offset_of!(MmcIocCmd, postsleep_max_us), 48),
            (offset_of!(MmcIocCmd, data_timeout_ns), 52),
            (offset_of!(MmcIocCmd, cmd_timeout_ms), 56),
            (offset_of!(MmcIocCmd, data_ptr), 64),
        ] {
            assert_eq!(got, want);
        }
        // #define MMC_IOC_CMD _IOWR(MMC_BLOCK_MAJOR, 0, struct mmc_ioc_cmd), MMC_BLOCK_MAJOR 179.
        assert_eq!(nix::request_code_readwrite!(179, 0, 72), 0xC048_B300);
    }

    /// The exact bytes each command puts in the structure (x86_64, little endian).
    fn bytes(c: &MmcIocCmd) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&c.write_flag.to_le_bytes());
        v.extend_from_slice(&c.is_acmd.to_le_bytes());
        for w in [c.opcode, c.arg] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        for w in c.response {
            v.extend_from_slice(&w.to_le_bytes());
        }
        for w in [
            c.flags,
            c.blksz,
            c.blocks,
            c.postsleep_min_us,
            c.postsleep_max_us,
            c.data_timeout_ns,
            c.cmd_timeout_ms,
            c.pad,
        ] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v.extend_from_slice(&c.data_ptr.to_le_bytes());
        v
    }

    #[test]
    fn send_ext_csd_is_cmd8_adtc_r1_one_512_byte_block() {
        // §6.10.4 CMD8 SEND_EXT_CSD: class 0, adtc, R1; flags MMC_RSP_SPI_R1 | MMC_RSP_R1 | MMC_CMD_ADTC
        // = 0x80 | 0x15 | 0x20 = 0xB5 (mmc-utils `read_extcsd`).
        let c = send_ext_csd();
        let mut want = vec![0u8; 72];
        want[8] = 8; // opcode
        want[32] = 0xB5; // flags
        want[36..38].copy_from_slice(&512u16.to_le_bytes()); // blksz
        want[40] = 1; // blocks
        assert_eq!(bytes(&c), want);
    }

    #[test]
    fn sanitize_is_cmd6_write_byte_165_value_1_r1b() {
        // §6.10.4 CMD6 SWITCH argument: [25:24] access 11b (write byte), [23:16] index 165 (0xA5,
        // SANITIZE_START, §7.4), [15:8] value 1, [2:0] command set 1: 0x03A50101. Flags
        // MMC_RSP_SPI_R1B | MMC_RSP_R1B | MMC_CMD_AC = 0x480 | 0x1D = 0x49D.
        let c = sanitize(240_000);
        assert_eq!(c.arg, 0x03A5_0101);
        let b = bytes(&c);
        assert_eq!(&b[0..4], &[1, 0, 0, 0], "write_flag");
        assert_eq!(&b[8..16], &[6, 0, 0, 0, 0x01, 0x01, 0xA5, 0x03]);
        assert_eq!(&b[32..36], &[0x9D, 0x04, 0, 0]);
        assert_eq!(&b[56..60], &240_000u32.to_le_bytes());
        assert!(b[36..56].iter().all(|x| *x == 0), "no data phase");
    }

    #[test]
    fn send_status_is_cmd13_with_rca_1() {
        // §6.10.4 CMD13 SEND_STATUS: [31:16] RCA; R1, ac: flags 0x15.
        let b = bytes(&send_status());
        assert_eq!(&b[8..16], &[13, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(&b[32..36], &[0x15, 0, 0, 0]);
    }

    /// EXT_CSD of a 32 GB eMMC 5.1 (values as a SanDisk DF4032 reports them: rev 8, sanitize and
    /// trim supported, secure erase bit still set, 4 MiB boot areas, 4 MiB RPMB, area 2 locked
    /// until power-off).
    pub(crate) fn emmc51() -> [u8; 512] {
        let mut d = [0u8; 512];
        d[ext_csd::EXT_CSD_REV] = 8;
        d[ext_csd::SEC_FEATURE_SUPPORT] = 0x55;
        d[ext_csd::SEC_COUNT..ext_csd::SEC_COUNT + 4].copy_from_slice(&61_071_360u32.to_le_bytes());
        d[ext_csd::BOOT_SIZE_MULT] = 32;
        d[ext_csd::RPMB_SIZE_MULT] = 32;
        d[ext_csd::BOOT_WP] = 0x01;
        d[ext_csd::BOOT_WP_STATUS] = 0b0100;
        d
    }

    #[test]
    fn ext_csd_fields_are_read_from_their_bytes() {
        let e = parse_ext_csd(&emmc51());
        assert_eq!(e.revision, 8);
        assert!(e.sanitize && e.secure_erase && e.trim);
        assert_eq!(e.sectors, 61_071_360);
        assert_eq!((e.boot_area_bytes, e.rpmb_bytes), (4 << 20, 4 << 20));
        assert_eq!(e.boot_wp_status, [0, 1]);
        assert!(!e.erased_reads_ones);
        // Before EXT_CSD_REV 6 bit 6 is reserved: no sanitize whatever it says.
        let mut old = emmc51();
        old[ext_csd::EXT_CSD_REV] = 5;
        assert!(!parse_ext_csd(&old).sanitize);
    }

    #[test]
    fn r1_status_names_its_state_and_errors() {
        // tran (4 << 9) | READY_FOR_DATA (1 << 8).
        let ok = R1(0x0000_0900);
        assert!(ok.ready() && !ok.error());
        assert_eq!(ok.describe(), "R1 0x00000900: state tran, no error");
        let busy = R1(0x0000_0E00);
        assert_eq!(busy.state(), 7);
        assert!(!busy.ready());
        let bad = R1(0x0000_0980);
        assert!(bad.error());
        assert!(bad.describe().ends_with("SWITCH_ERROR"), "{}", bad.describe());
        assert!(R1(1 << 22).describe().contains("ILLEGAL_COMMAND"));
    }
}
