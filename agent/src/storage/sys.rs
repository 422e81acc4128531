//! Every `unsafe` system call of the agent's disk layer, each behind one safe function.
//!
//! The block-device ioctls are declared with `nix`'s macros from their kernel definitions in
//! `include/uapi/linux/fs.h` (magic `0x12`). Each wrapper takes a borrowed file descriptor, so the
//! descriptor is open for the duration of the call, passes a pointer to a properly sized local, and maps
//! `errno` to a [`SysError`] a caller can match and a user can act on ("device is in use").
//!
//! Ordinary reads, writes, `fdatasync` and `open` with `O_DIRECT | O_EXCL` need no `unsafe`: the
//! standard library's `FileExt`, `File::sync_data` and `OpenOptionsExt::custom_flags` cover them, and
//! this module provides the open helper so that every flag decision lives in one place.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;

/// The raw ioctl declarations. Nothing outside this module calls them directly.
mod ioctl {
    use nix::libc::{c_int, c_uint};
    // #define BLKRRPART  _IO(0x12,95)
    nix::ioctl_none_bad!(blkrrpart, nix::request_code_none!(0x12, 95));
    // #define BLKFLSBUF  _IO(0x12,97)
    nix::ioctl_none_bad!(blkflsbuf, nix::request_code_none!(0x12, 97));
    // #define BLKROGET   _IO(0x12,94)  /* get read-only status (0 = read_write) */  (arg: int *)
    nix::ioctl_read_bad!(blkroget, nix::request_code_none!(0x12, 94), c_int);
    // #define BLKSSZGET  _IO(0x12,104) /* get block device sector size */  (arg: int *)
    nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), c_int);
    // #define BLKGETSIZE64 _IOR(0x12,114,size_t) /* return device size in bytes (u64 *arg) */
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    // #define BLKDISCARD _IO(0x12,119)  (arg: uint64_t range[2] = {start, length} in bytes)
    nix::ioctl_write_ptr_bad!(blkdiscard, nix::request_code_none!(0x12, 119), [u64; 2]);
    // #define BLKPBSZGET _IO(0x12,123)  (arg: unsigned int *)
    nix::ioctl_read_bad!(blkpbszget, nix::request_code_none!(0x12, 123), c_uint);
    // #define BLKSECDISCARD _IO(0x12,125)  (arg: uint64_t range[2] = {start, length} in bytes)
    nix::ioctl_write_ptr_bad!(blksecdiscard, nix::request_code_none!(0x12, 125), [u64; 2]);
    // #define BLKZEROOUT _IO(0x12,127)  (arg: uint64_t range[2] = {start, length} in bytes)
    nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
    // include/uapi/linux/loop.h: `#define LOOP_CTL_GET_FREE 0x4C82` (on /dev/loop-control; returns the
    // number of a free loop device, creating one if needed)
    nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
    // `#define LOOP_CONFIGURE 0x4C0A` (arg: `struct loop_config *`, Linux 5.8)
    nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, super::LoopConfig);
    // `#define LOOP_CLR_FD 0x4C01` (no argument)
    nix::ioctl_none_bad!(loop_clr_fd, 0x4C01);
}

/// `struct loop_info64` of `include/uapi/linux/loop.h` (232 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config { __u32 fd; __u32 block_size; struct loop_info64 info; __u64 __reserved[8]; }`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// `LO_FLAGS_AUTOCLEAR`: the kernel detaches the loop device when its last opener closes it.
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// A loop device showing `[offset, offset + len)` of a disk, with the disk's logical sector size: how
/// the agent reaches one installed partition (for `resize2fs`, `ntfsresize` and the ESP) while it
/// still holds the whole disk `O_EXCL` (which keeps the kernel's own partition nodes from being
/// opened exclusively, and a host without partition nodes has none). Detached when dropped.
#[derive(Debug)]
pub struct PartitionLoop {
    /// `/dev/loopN`.
    pub path: std::path::PathBuf,
    /// The open loop device; closing the last descriptor detaches it (`LO_FLAGS_AUTOCLEAR`).
    pub file: File,
}

impl PartitionLoop {
    /// Attaches a loop device over `[offset, offset + len)` of the block device `disk` (opened again
    /// read-write without `O_EXCL` or `O_DIRECT`, so the page cache is the loop's), with
    /// `block_size`-byte logical sectors.
    pub fn attach(disk: &Path, offset: u64, len: u64, block_size: u32) -> Result<PartitionLoop, SysError> {
        let backing = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(disk)
            .map_err(|e| SysError::new(format!("opening {} for a loop device", disk.display()), errno_of(&e)))?;
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open("/dev/loop-control")
            .map_err(|e| SysError::new("opening /dev/loop-control (is the loop module loaded?)", errno_of(&e)))?;
        let fd =
            u32::try_from(backing.as_raw_fd()).map_err(|_| SysError::new("a negative descriptor", Errno::EBADF))?;
        let config = LoopConfig {
            fd,
            block_size,
            info: LoopInfo64 {
                lo_device: 0,
                lo_inode: 0,
                lo_rdevice: 0,
                lo_offset: offset,
                lo_sizelimit: len,
                lo_number: 0,
                lo_encrypt_type: 0,
                lo_encrypt_key_size: 0,
                lo_flags: LO_FLAGS_AUTOCLEAR,
                lo_file_name: [0; 64],
                lo_crypt_name: [0; 64],
                lo_encrypt_key: [0; 32],
                lo_init: [0; 2],
            },
            reserved: [0; 8],
        };
        // Another process may take the free device between the two calls: try the next one.
        let mut last = Errno::EBUSY;
        for _ in 0..8 {
            // SAFETY: `#define LOOP_CTL_GET_FREE 0x4C82`; `loop_control_ioctl` reads no argument and
            // returns the device number; the control fd is borrowed and open.
            let n = unsafe { ioctl::loop_ctl_get_free(control.as_fd().as_raw_fd()) }
                .map_err(|e| SysError::new("finding a free loop device (LOOP_CTL_GET_FREE)", e))?;
            let path = std::path::PathBuf::from(format!("/dev/loop{n}"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(nix::libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| SysError::new(format!("opening {}", path.display()), errno_of(&e)))?;
            // SAFETY: `#define LOOP_CONFIGURE 0x4C0A`; `loop_configure` copies a `struct loop_config`
            // (304 bytes, mirrored by `LoopConfig` with `repr(C)`, size checked in a test) from the
            // pointer, which points at a live local; `fd` names `backing`, open for the call (the
            // kernel takes its own reference to the file).
            match unsafe { ioctl::loop_configure(file.as_fd().as_raw_fd(), &config) } {
                Ok(_) => return Ok(PartitionLoop { path, file }),
                Err(Errno::EBUSY) => last = Errno::EBUSY,
                Err(e) => {
                    return Err(SysError::new(
                        format!(
                            "attaching {} to {} at {offset} (LOOP_CONFIGURE)",
                            path.display(),
                            disk.display()
                        ),
                        e,
                    ))
                }
            }
        }
        Err(SysError::new("attaching a loop device (LOOP_CONFIGURE)", last))
    }

    /// Writes the loop device's page cache through to the disk.
    pub fn sync(&self) -> Result<(), SysError> {
        self.file
            .sync_all()
            .map_err(|e| SysError::new(format!("flushing {}", self.path.display()), errno_of(&e)))
    }
}

impl Drop for PartitionLoop {
    fn drop(&mut self) {
        let _ = self.file.sync_all();
        // SAFETY: `#define LOOP_CLR_FD 0x4C01`; no argument; the loop fd is borrowed and open. With
        // `LO_FLAGS_AUTOCLEAR` set this only marks the device to detach on the last close, which
        // follows when `file` is dropped.
        let _ = unsafe { ioctl::loop_clr_fd(self.file.as_fd().as_raw_fd()) };
    }
}

/// A failed system call: what was being done, and the kernel's answer in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {}", meaning(*.errno))]
pub struct SysError {
    /// The operation, e.g. `BLKGETSIZE64 on /dev/sda` or `opening /dev/sda`.
    pub op: String,
    /// The errno the kernel returned.
    pub errno: Errno,
}

impl SysError {
    fn new(op: impl Into<String>, errno: Errno) -> Self {
        Self { op: op.into(), errno }
    }

    /// True when the device is busy (mounted, held open exclusively, or claimed by a holder).
    pub fn is_busy(&self) -> bool {
        self.errno == Errno::EBUSY
    }
}

/// errno in words a volunteer can act on.
fn meaning(errno: Errno) -> String {
    match errno {
        Errno::EBUSY => "device is in use (mounted, open by another program, or part of RAID/LVM)".into(),
        Errno::EACCES | Errno::EPERM => "permission denied: run the agent as root".into(),
        Errno::ENOENT | Errno::ENXIO | Errno::ENODEV => "no such device (was it unplugged?)".into(),
        Errno::EROFS => "the device is read-only".into(),
        Errno::ENOTTY => "not a block device".into(),
        Errno::EOPNOTSUPP => "the device does not support this operation".into(),
        Errno::EINVAL => "invalid argument (offset or length not aligned to the sector size?)".into(),
        Errno::EIO => "input/output error: the device reported a media or transport failure".into(),
        other => format!("{} (errno {})", other.desc(), other as i32),
    }
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))
}

/// How a block device is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-only, shared: for discovery (sizes, sector sizes).
    Probe,
    /// Read-only with `O_EXCL`: fails with `EBUSY` while anything else holds or mounts the device.
    ExclusiveRead,
    /// Read-write with `O_EXCL | O_DIRECT`: for wiping and verifying, never through the page cache.
    ExclusiveDirect,
}

/// Opens a block device. `O_EXCL` on a block device claims it: the kernel refuses with `EBUSY` when it
/// is mounted, used as swap, held by device-mapper or md, or opened `O_EXCL` by another process, and
/// keeps others out while the returned file stays open.
pub fn open_block_device(path: &Path, access: Access) -> Result<File, SysError> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    let mut flags = nix::libc::O_CLOEXEC;
    match access {
        Access::Probe => {}
        Access::ExclusiveRead => flags |= nix::libc::O_EXCL,
        Access::ExclusiveDirect => {
            opts.write(true);
            flags |= nix::libc::O_EXCL | nix::libc::O_DIRECT;
        }
    }
    opts.custom_flags(flags);
    opts.open(path)
        .map_err(|e| SysError::new(format!("opening {}", path.display()), errno_of(&e)))
}

/// `BLKGETSIZE64`: the device's size in bytes.
pub fn block_size_bytes(file: &impl AsFd) -> Result<u64, SysError> {
    let mut size: u64 = 0;
    // SAFETY: `#define BLKGETSIZE64 _IOR(0x12,114,size_t)`; the kernel writes one u64 (`put_u64`) to the
    // pointer, which points at the local `size`; the fd is borrowed, so it stays open during the call.
    unsafe { ioctl::blkgetsize64(file.as_fd().as_raw_fd(), &mut size) }
        .map_err(|e| SysError::new("reading the device size (BLKGETSIZE64)", e))?;
    Ok(size)
}

/// `BLKSSZGET`: the logical sector size in bytes.
pub fn logical_sector_size(file: &impl AsFd) -> Result<u32, SysError> {
    let mut size: nix::libc::c_int = 0;
    // SAFETY: `#define BLKSSZGET _IO(0x12,104)`; `blkdev_ioctl` answers with `put_int(argp,
    // bdev_logical_block_size(bdev))`, one int written to our local; the fd is borrowed and open.
    unsafe { ioctl::blksszget(file.as_fd().as_raw_fd(), &mut size) }
        .map_err(|e| SysError::new("reading the logical sector size (BLKSSZGET)", e))?;
    u32::try_from(size).map_err(|_| SysError::new("BLKSSZGET returned a negative size", Errno::EINVAL))
}

/// `BLKPBSZGET`: the physical sector size in bytes.
pub fn physical_sector_size(file: &impl AsFd) -> Result<u32, SysError> {
    let mut size: nix::libc::c_uint = 0;
    // SAFETY: `#define BLKPBSZGET _IO(0x12,123)`; the kernel does `put_uint(argp,
    // bdev_physical_block_size(bdev))`, one unsigned int written to our local; the fd is borrowed.
    unsafe { ioctl::blkpbszget(file.as_fd().as_raw_fd(), &mut size) }
        .map_err(|e| SysError::new("reading the physical sector size (BLKPBSZGET)", e))?;
    Ok(size)
}

/// `BLKROGET`: whether the kernel marks the device read-only.
pub fn is_read_only(file: &impl AsFd) -> Result<bool, SysError> {
    let mut ro: nix::libc::c_int = 0;
    // SAFETY: `#define BLKROGET _IO(0x12,94)`; the kernel does `put_int(argp, bdev_read_only(bdev) != 0)`,
    // one int written to our local; the fd is borrowed and open.
    unsafe { ioctl::blkroget(file.as_fd().as_raw_fd(), &mut ro) }
        .map_err(|e| SysError::new("reading the read-only flag (BLKROGET)", e))?;
    Ok(ro != 0)
}

/// Checks a byte range for the range ioctls: both ends aligned to 512 bytes, as `blk_ioctl_discard` and
/// `blk_ioctl_zeroout` require (they return `EINVAL` otherwise).
fn range(start: u64, len: u64, what: &str) -> Result<[u64; 2], SysError> {
    if start % 512 != 0 || len % 512 != 0 || start.checked_add(len).is_none() {
        return Err(SysError::new(
            format!("{what}: start {start} and length {len} must be multiples of 512"),
            Errno::EINVAL,
        ));
    }
    Ok([start, len])
}

/// `BLKDISCARD`: tells the device the range is unused (no guarantee of what reads return afterwards).
pub fn discard(file: &impl AsFd, start: u64, len: u64) -> Result<(), SysError> {
    let r = range(start, len, "BLKDISCARD")?;
    // SAFETY: `#define BLKDISCARD _IO(0x12,119)`; `blk_ioctl_discard` copies `uint64_t range[2]` from the
    // pointer, which points at our local array of exactly that type; the fd is borrowed and open.
    unsafe { ioctl::blkdiscard(file.as_fd().as_raw_fd(), &r) }
        .map_err(|e| SysError::new(format!("discarding {len} bytes at {start} (BLKDISCARD)"), e))?;
    Ok(())
}

/// `BLKSECDISCARD`: erases the range and every old copy of it (`blk_ioctl_secure_erase`); only drivers
/// that set `max_secure_erase_sectors` offer it (MMC secure erase/trim, some virtio), others answer
/// `EOPNOTSUPP`.
pub fn secure_discard(file: &impl AsFd, start: u64, len: u64) -> Result<(), SysError> {
    let r = range(start, len, "BLKSECDISCARD")?;
    // SAFETY: `#define BLKSECDISCARD _IO(0x12,125)`; `blk_ioctl_secure_erase` copies `uint64_t range[2]`
    // from the pointer, which points at our local array of exactly that type; the fd is borrowed and
    // open.
    unsafe { ioctl::blksecdiscard(file.as_fd().as_raw_fd(), &r) }
        .map_err(|e| SysError::new(format!("securely erasing {len} bytes at {start} (BLKSECDISCARD)"), e))?;
    Ok(())
}

/// `BLKZEROOUT`: the kernel writes zeros to the range (without unmapping), through the device's
/// fastest zeroing command or plain writes.
pub fn zero_out(file: &impl AsFd, start: u64, len: u64) -> Result<(), SysError> {
    let r = range(start, len, "BLKZEROOUT")?;
    // SAFETY: `#define BLKZEROOUT _IO(0x12,127)`; `blk_ioctl_zeroout` copies `uint64_t range[2]` from the
    // pointer, which points at our local array of exactly that type; the fd is borrowed and open.
    unsafe { ioctl::blkzeroout(file.as_fd().as_raw_fd(), &r) }
        .map_err(|e| SysError::new(format!("zeroing {len} bytes at {start} (BLKZEROOUT)"), e))?;
    Ok(())
}

/// `BLKRRPART`: asks the kernel to re-read the partition table (fails with `EBUSY` while a partition is
/// in use).
pub fn reread_partitions(file: &impl AsFd) -> Result<(), SysError> {
    // SAFETY: `#define BLKRRPART _IO(0x12,95)`; the argument is unused by the kernel and none is passed;
    // the fd is borrowed and open.
    unsafe { ioctl::blkrrpart(file.as_fd().as_raw_fd()) }
        .map_err(|e| SysError::new("re-reading the partition table (BLKRRPART)", e))?;
    Ok(())
}

/// `BLKFLSBUF`: writes back and drops the device's page cache (needs `CAP_SYS_ADMIN`).
pub fn flush_buffers(file: &impl AsFd) -> Result<(), SysError> {
    // SAFETY: `#define BLKFLSBUF _IO(0x12,97)`; no argument is read or written; the fd is borrowed and
    // open.
    unsafe { ioctl::blkflsbuf(file.as_fd().as_raw_fd()) }
        .map_err(|e| SysError::new("flushing the device's buffers (BLKFLSBUF)", e))?;
    Ok(())
}

/// The errno of an I/O error as a positive number, `EIO` when the error carries none (a short read).
pub fn io_errno(e: &std::io::Error) -> u32 {
    u32::try_from(errno_of(e) as i32).unwrap_or(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        // Values computed on x86_64 from <linux/fs.h> (research/wipe.md §3.1).
        assert_eq!(nix::request_code_none!(0x12, 95), 0x125F);
        assert_eq!(nix::request_code_none!(0x12, 97), 0x1261);
        assert_eq!(nix::request_code_none!(0x12, 104), 0x1268);
        assert_eq!(
            nix::request_code_read!(0x12, 114, std::mem::size_of::<u64>()),
            0x8008_1272
        );
        assert_eq!(nix::request_code_none!(0x12, 119), 0x1277);
        assert_eq!(nix::request_code_none!(0x12, 123), 0x127B);
        assert_eq!(nix::request_code_none!(0x12, 125), 0x127D);
        assert_eq!(nix::request_code_none!(0x12, 127), 0x127F);
        // <linux/loop.h>: the structures LOOP_CONFIGURE copies.
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    fn range_ioctls_refuse_unaligned_ranges() {
        assert!(range(1, 512, "x").is_err());
        assert!(range(512, 100, "x").is_err());
        assert_eq!(range(512, 1024, "x").ok(), Some([512, 1024]));
    }

    #[test]
    fn ioctl_on_a_regular_file_says_not_a_block_device() {
        let f = File::open("/proc/self/exe").unwrap();
        let e = block_size_bytes(&f).unwrap_err();
        assert_eq!(e.errno, Errno::ENOTTY);
        assert!(e.to_string().contains("not a block device"), "{e}");
    }
}
