//! Integration tests of the OS image crate: golden fixture, real ext4/FAT32 disks packed and
//! installed onto files of both sector sizes, tampering, truncation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    dead_code
)]

mod common;
mod disks;
mod golden;
mod leads;
mod ntfs;
mod tamper;
