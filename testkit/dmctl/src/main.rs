//! `lapterop-dmctl create NAME TABLE` / `lapterop-dmctl remove NAME`: device-mapper through its ioctls
//! (`include/uapi/linux/dm-ioctl.h`, interface version 4), for the fault battery's guest, which has
//! the kernel's `dm-flakey` but no `dmsetup`. Test tooling, never on the stick.
//!
//! `create` makes the device, loads one table line (`START LENGTH TARGET PARAMS`, as `dmsetup`
//! takes it) and resumes it; the kernel then shows `/dev/dm-N` (devtmpfs) and prints nothing else.
//! It prints `dm-N` so a script can name the device.
//!
//! The ioctls need `unsafe`: each block says why it is sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

/// `struct dm_ioctl`: 312 bytes, `#[repr(C)]` as the kernel lays it out.
#[repr(C)]
#[derive(Clone, Copy)]
struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; 128],
    uuid: [u8; 129],
    data: [u8; 7],
}

/// `struct dm_target_spec`: 40 bytes, followed by the target's parameters (NUL-terminated).
#[repr(C)]
#[derive(Clone, Copy)]
struct DmTargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; 16],
}

const DM_IOCTL: u8 = 0xfd;
const DM_DEV_CREATE: u8 = 3;
const DM_DEV_REMOVE: u8 = 4;
const DM_DEV_SUSPEND: u8 = 6;
const DM_TABLE_LOAD: u8 = 9;

/// Size of the buffer handed to the kernel: the header, one target spec and its parameters.
const BUF: usize = 4096;

/// Issues `cmd` with `buf` (a `DmIoctl` header and its data). The request number encodes
/// `sizeof(struct dm_ioctl)`, as `_IOWR(DM_IOCTL, cmd, struct dm_ioctl)` does, whatever the buffer's
/// length.
fn call(ctl: &File, cmd: u8, buf: &mut [u8]) -> nix::Result<()> {
    let request = nix::request_code_readwrite!(DM_IOCTL, cmd, std::mem::size_of::<DmIoctl>());
    // SAFETY: `buf` starts with a `DmIoctl` whose `data_size` is at most `buf.len()`, so the kernel
    // (`copy_params` in drivers/md/dm-ioctl.c) reads and writes inside it; the fd is open.
    let r = unsafe { nix::libc::ioctl(ctl.as_raw_fd(), request as _, buf.as_mut_ptr()) };
    nix::errno::Errno::result(r).map(drop)
}

/// A request header for the device `name` with `data_size` bytes in all.
fn header(name: &str, data_size: usize) -> Result<DmIoctl, String> {
    if name.is_empty() || name.len() >= 128 {
        return Err(format!("a device name of 1-127 bytes, not {name:?}"));
    }
    let mut h = DmIoctl {
        version: [4, 0, 0],
        data_size: u32::try_from(data_size).map_err(|e| e.to_string())?,
        data_start: u32::try_from(std::mem::size_of::<DmIoctl>()).map_err(|e| e.to_string())?,
        target_count: 0,
        open_count: 0,
        flags: 0,
        event_nr: 0,
        padding: 0,
        dev: 0,
        name: [0; 128],
        uuid: [0; 129],
        data: [0; 7],
    };
    h.name[..name.len()].copy_from_slice(name.as_bytes());
    Ok(h)
}

/// Copies the bytes of `v` into `buf` at `at`.
fn put<T: Copy>(buf: &mut [u8], at: usize, v: &T) {
    // SAFETY: T is a plain `#[repr(C)]` struct of integers and byte arrays; reading its bytes is sound.
    let bytes = unsafe { std::slice::from_raw_parts(std::ptr::from_ref(v).cast::<u8>(), std::mem::size_of::<T>()) };
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A command that carries only the header (create, remove, resume); returns the kernel's answer.
fn simple(ctl: &File, cmd: u8, name: &str, flags: u32) -> Result<DmIoctl, String> {
    let mut h = header(name, BUF)?;
    h.flags = flags;
    let mut buf = vec![0u8; BUF];
    put(&mut buf, 0, &h);
    call(ctl, cmd, &mut buf).map_err(|e| format!("device-mapper command {cmd} on {name}: {e}"))?;
    // SAFETY: the kernel wrote a `DmIoctl` back at the start of the buffer.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<DmIoctl>()) })
}

/// Creates `name` with the one-line `table`, resumes it, and returns its kernel name (`dm-N`).
fn create(name: &str, table: &str) -> Result<String, String> {
    let mut words = table.splitn(4, ' ');
    let (Some(start), Some(len), Some(target)) = (words.next(), words.next(), words.next()) else {
        return Err(format!("a table line START LENGTH TARGET PARAMS, not {table:?}"));
    };
    let params = words.next().unwrap_or("");
    let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
    let ctl = File::options()
        .read(true)
        .write(true)
        .open("/dev/mapper/control")
        .map_err(|e| format!("/dev/mapper/control: {e} (is dm_mod loaded?)"))?;
    let made = simple(&ctl, DM_DEV_CREATE, name, 0)?;
    // The table: header, one target spec, its parameters.
    let hdr = std::mem::size_of::<DmIoctl>();
    let spec_len = std::mem::size_of::<DmTargetSpec>();
    let mut h = header(name, BUF)?;
    h.target_count = 1;
    if target.len() >= 16 || hdr + spec_len + params.len() + 1 > BUF {
        return Err(format!("target {target:?} or its parameters are too long"));
    }
    let mut spec = DmTargetSpec {
        sector_start: num(start)?,
        length: num(len)?,
        status: 0,
        next: 0,
        target_type: [0; 16],
    };
    spec.target_type[..target.len()].copy_from_slice(target.as_bytes());
    let mut buf = vec![0u8; BUF];
    put(&mut buf, 0, &h);
    put(&mut buf, hdr, &spec);
    buf[hdr + spec_len..hdr + spec_len + params.len()].copy_from_slice(params.as_bytes());
    call(&ctl, DM_TABLE_LOAD, &mut buf).map_err(|e| {
        let _ = simple(&ctl, DM_DEV_REMOVE, name, 0);
        format!("loading the table {table:?} into {name}: {e}")
    })?;
    // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes the device with the loaded table.
    simple(&ctl, DM_DEV_SUSPEND, name, 0)?;
    // dev_t as the kernel encodes it for userspace (`huge_encode_dev`): minor in bits 0-7 and 20-31.
    let minor = (made.dev & 0xff) | ((made.dev >> 12) & 0xfff00);
    Ok(format!("dm-{minor}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["create", name, table] => create(name, table),
        ["remove", name] => File::options()
            .read(true)
            .write(true)
            .open("/dev/mapper/control")
            .map_err(|e| format!("/dev/mapper/control: {e}"))
            .and_then(|ctl| simple(&ctl, DM_DEV_REMOVE, name, 0))
            .map(|_| format!("removed {name}")),
        _ => Err("usage: lapterop-dmctl create NAME 'START LENGTH TARGET PARAMS' | remove NAME".into()),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lapterop-dmctl: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layouts the kernel expects (`include/uapi/linux/dm-ioctl.h`): `struct dm_ioctl` is 312
    /// bytes with `name` at 48 and `uuid` at 176; `struct dm_target_spec` is 40 bytes with
    /// `target_type` at 24; `DM_TABLE_LOAD` is `_IOWR(0xfd, 9, struct dm_ioctl)` = 0xc138fd09.
    #[test]
    fn layouts_and_request_numbers_match_the_kernel_header() {
        assert_eq!(std::mem::size_of::<DmIoctl>(), 312);
        assert_eq!(std::mem::offset_of!(DmIoctl, dev), 40);
        assert_eq!(std::mem::offset_of!(DmIoctl, name), 48);
        assert_eq!(std::mem::offset_of!(DmIoctl, uuid), 176);
        assert_eq!(std::mem::size_of::<DmTargetSpec>(), 40);
        assert_eq!(std::mem::offset_of!(DmTargetSpec, target_type), 24);
        assert_eq!(
            nix::request_code_readwrite!(DM_IOCTL, DM_TABLE_LOAD, std::mem::size_of::<DmIoctl>()),
            0xc138_fd09
        );
    }
}
