//! The pass-through ioctls: SG_IO for ATA PASS-THROUGH(16), NVME_IOCTL_ADMIN_CMD for NVMe admin
//! commands and MMC_IOC_CMD for eMMC commands. This is the only `unsafe` code of the firmware command layer; each call is wrapped
//! in a safe function that owns its buffers for the duration of the call.
//!
//! They need root (CAP_SYS_RAWIO for ATA_16 and MMC_IOC_CMD, CAP_SYS_ADMIN for NVMe admin commands).
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use super::ata::{AtaCommand, Data};
use super::mmc::{MmcIocCmd, R1};
use super::nvme::{PassthruCmd, Status};
use super::AtaOutcome;

/// `struct sg_io_hdr` from `include/scsi/sg.h` (88 bytes on x86_64).
#[repr(C)]
#[derive(Debug)]
struct SgIoHdr {
    interface_id: i32,
    dxfer_direction: i32,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: u32,
    dxferp: *mut c_void,
    cmdp: *const u8,
    sbp: *mut u8,
    timeout: u32,
    flags: u32,
    pack_id: i32,
    usr_ptr: *mut c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: i32,
    duration: u32,
    info: u32,
}

const SG_DXFER_NONE: i32 = -1;
const SG_DXFER_TO_DEV: i32 = -2;
const SG_DXFER_FROM_DEV: i32 = -3;

// include/scsi/sg.h: #define SG_IO 0x2285 — a "bad" ioctl number (no size/direction encoded).
nix::ioctl_readwrite_bad!(
    /// `SG_IO` on a SCSI generic or block device: one command with its data phase and sense buffer.
    sg_io_raw,
    0x2285,
    SgIoHdr
);

// include/uapi/linux/nvme_ioctl.h:
// #define NVME_IOCTL_ADMIN_CMD _IOWR('N', 0x41, struct nvme_admin_cmd)   (= 0xC0484E41)
nix::ioctl_readwrite!(
    /// `NVME_IOCTL_ADMIN_CMD` on an NVMe controller or namespace node: one admin command.
    nvme_admin_raw,
    b'N',
    0x41,
    PassthruCmd
);

// include/uapi/linux/mmc/ioctl.h:
// #define MMC_IOC_CMD _IOWR(MMC_BLOCK_MAJOR, 0, struct mmc_ioc_cmd)   (MMC_BLOCK_MAJOR 179: 0xC048B300)
nix::ioctl_readwrite!(
    /// `MMC_IOC_CMD` on an eMMC's block device: one command with its data phase.
    mmc_ioc_cmd_raw,
    179,
    0,
    MmcIocCmd
);

/// Sends one eMMC command. `data` is its data phase (`blksz × blocks` bytes) or empty. Returns the
/// card's R1 response (word 0).
pub fn mmc_cmd(fd: BorrowedFd<'_>, mut cmd: MmcIocCmd, data: &mut [u8]) -> std::io::Result<R1> {
    let len = u64::from(cmd.blksz) * u64::from(cmd.blocks);
    if data.len() as u64 != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("data buffer is {} bytes, CMD{} moves {len}", data.len(), cmd.opcode),
        ));
    }
    cmd.data_ptr = if data.is_empty() { 0 } else { data.as_mut_ptr() as u64 };
    // SAFETY: MMC_IOC_CMD is _IOWR(179, 0, struct mmc_ioc_cmd) (mmc/ioctl.h); `cmd` is a #[repr(C)] copy
    // of that 72-byte structure (size and offsets checked by a unit test). `data_ptr` points at exactly
    // `blksz * blocks` bytes of `data` (checked above), borrowed mutably for the whole synchronous
    // call; the kernel writes `response`.
    unsafe { mmc_ioc_cmd_raw(fd.as_raw_fd(), &mut cmd) }.map_err(std::io::Error::from)?;
    Ok(R1(cmd.response[0]))
}

/// Sends an ATA command through SG_IO. `data` must be exactly the command's data phase
/// (512 bytes per block) or empty for non-data commands.
pub fn ata_passthrough(fd: BorrowedFd<'_>, cmd: &AtaCommand, data: &mut [u8]) -> std::io::Result<AtaOutcome> {
    let (direction, len) = match cmd.data {
        Data::None => (SG_DXFER_NONE, 0usize),
        Data::In(blocks) => (SG_DXFER_FROM_DEV, usize::from(blocks) * 512),
        Data::Out(blocks) => (SG_DXFER_TO_DEV, usize::from(blocks) * 512),
    };
    if data.len() != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{}: data buffer is {} bytes, the command moves {len}",
                cmd.name,
                data.len()
            ),
        ));
    }
    let mut sense = [0u8; 64];
    let timeout = Duration::from_secs(u64::from(cmd.timeout_secs)).as_millis();
    let mut hdr = SgIoHdr {
        interface_id: i32::from(b'S'),
        dxfer_direction: direction,
        cmd_len: 16,
        mx_sb_len: 64,
        iovec_count: 0,
        dxfer_len: u32::try_from(len).unwrap_or(u32::MAX),
        dxferp: if len == 0 {
            std::ptr::null_mut()
        } else {
            data.as_mut_ptr().cast()
        },
        cmdp: cmd.cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: u32::try_from(timeout).unwrap_or(u32::MAX),
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: SG_IO is `_IOWR`-like on `struct sg_io_hdr` (include/scsi/sg.h). `hdr` is a correctly
    // laid out sg_io_hdr (checked by the size test); `cmdp` points at 16 readable bytes, `sbp` at
    // `mx_sb_len` (64) writable bytes and `dxferp` at `dxfer_len` bytes of `data`, all of which live on
    // this stack frame or are borrowed mutably for the whole call, which is synchronous.
    let rc = unsafe { sg_io_raw(fd.as_raw_fd(), &mut hdr) };
    rc.map_err(std::io::Error::from)?;
    let written = usize::from(hdr.sb_len_wr).min(sense.len());
    Ok(super::classify_ata(
        hdr.status,
        hdr.host_status,
        hdr.driver_status,
        &sense[..written],
    ))
}

/// Sends an NVMe admin command to a controller or namespace device. `data` is the command's data
/// buffer (`cmd.data_len` bytes) or empty. Returns the completion status and completion dword 0.
pub fn nvme_admin(fd: BorrowedFd<'_>, mut cmd: PassthruCmd, data: &mut [u8]) -> std::io::Result<(Status, u32)> {
    if data.len() != usize::try_from(cmd.data_len).unwrap_or(usize::MAX) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "data buffer is {} bytes, the command moves {}",
                data.len(),
                cmd.data_len
            ),
        ));
    }
    // Every pointer the kernel follows is set here: the data buffer we hold, and no metadata.
    cmd.addr = if data.is_empty() { 0 } else { data.as_mut_ptr() as u64 };
    cmd.metadata = 0;
    cmd.metadata_len = 0;
    // SAFETY: NVME_IOCTL_ADMIN_CMD is _IOWR('N', 0x41, struct nvme_admin_cmd) (nvme_ioctl.h); `cmd` is a
    // #[repr(C)] copy of that 72-byte structure (size and every offset checked by a unit test). `addr`
    // points at `data_len` bytes of `data`, borrowed mutably for the whole synchronous call, and there
    // is no metadata buffer (both set just above, whatever the caller built); the kernel writes `result`.
    let rc = unsafe { nvme_admin_raw(fd.as_raw_fd(), &mut cmd) };
    let value = rc.map_err(std::io::Error::from)?;
    Ok((Status::from_ioctl(u32::try_from(value).unwrap_or(0)), cmd.result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sg_io_hdr_is_the_kernels_88_bytes() {
        assert_eq!(std::mem::size_of::<SgIoHdr>(), 88);
        // include/scsi/sg.h, struct sg_io_hdr on x86_64, field by field.
        use std::mem::offset_of;
        let offsets = [
            (offset_of!(SgIoHdr, interface_id), 0),
            (offset_of!(SgIoHdr, dxfer_direction), 4),
            (offset_of!(SgIoHdr, cmd_len), 8),
            (offset_of!(SgIoHdr, mx_sb_len), 9),
            (offset_of!(SgIoHdr, iovec_count), 10),
            (offset_of!(SgIoHdr, dxfer_len), 12),
            (offset_of!(SgIoHdr, dxferp), 16),
            (offset_of!(SgIoHdr, cmdp), 24),
            (offset_of!(SgIoHdr, sbp), 32),
            (offset_of!(SgIoHdr, timeout), 40),
            (offset_of!(SgIoHdr, flags), 44),
            (offset_of!(SgIoHdr, pack_id), 48),
            (offset_of!(SgIoHdr, usr_ptr), 56),
            (offset_of!(SgIoHdr, status), 64),
            (offset_of!(SgIoHdr, masked_status), 65),
            (offset_of!(SgIoHdr, msg_status), 66),
            (offset_of!(SgIoHdr, sb_len_wr), 67),
            (offset_of!(SgIoHdr, host_status), 68),
            (offset_of!(SgIoHdr, driver_status), 70),
            (offset_of!(SgIoHdr, resid), 72),
            (offset_of!(SgIoHdr, duration), 76),
            (offset_of!(SgIoHdr, info), 80),
        ];
        for (i, (got, want)) in offsets.iter().enumerate() {
            assert_eq!(got, want, "field {i}");
        }
    }

    #[test]
    fn wrong_buffer_sizes_are_refused_before_any_ioctl() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsFd::as_fd(&file);
        let err = ata_passthrough(fd, &super::super::ata::identify(), &mut [0u8; 10]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        let err = nvme_admin(fd, super::super::nvme::identify_controller(), &mut []).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        // A real ioctl on something that is not a SCSI/NVMe device fails with an errno, not a crash.
        assert!(ata_passthrough(fd, &super::super::ata::identify(), &mut [0u8; 512]).is_err());
    }
}
