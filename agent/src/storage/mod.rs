//! Storage: everything between the job and the disks, and nothing above it (no wiping policy, no
//! screens, no audit verdicts).
//!
//! | module | what |
//! |---|---|
//! | [`disk`] | discovery from sysfs and the safety rules that keep the boot stick and busy disks out of reach |
//! | [`drive`] | one drive's firmware path: probe, the firmware plan and prelude, the ATA/NVMe transports |
//! | [`emmc`] | an eMMC's boot areas: the chip's write protection and the kernel's `force_ro` switch |
//! | [`firmware`] | pure planning and the NVMe/ATA purge runners over a transport trait |
//! | [`hpa`] | an ATA Host Protected Area opened for the wipe and closed again |
//! | [`opal`] | the PSID Revert of a locked self-encrypting (TCG Opal) drive, over IF-SEND / IF-RECV |
//! | [`unfreeze`] | suspend to RAM with an RTC wake alarm, to lift a BIOS freeze lock |
//! | [`stickmark`] | recognising a Lapterop stick from its partition table and FAT |
//! | [`command`] | pure ATA and NVMe command encoders and their `sys` ioctls |
//! | [`sys`] | the block-device system calls (the crate's few `unsafe` blocks) |

pub mod command;
pub mod disk;
pub mod drive;
pub mod emmc;
pub mod firmware;
pub mod hpa;
pub mod opal;
pub mod stickmark;
#[allow(unsafe_code)]
pub mod sys;
pub mod unfreeze;
