//! The Lapterop agent: everything that runs on the donated laptop.
//!
//! It owns the hardware audit ([`audit`]), disk discovery and the safety rules that keep the boot stick
//! and busy disks out of reach ([`disk`]), the overwrite and verification engine ([`wipe`]), the
//! firmware command encodings for NVMe and ATA ([`command`]) and the few `unsafe` system calls behind
//! them ([`sys`]). `main.rs` only parses arguments and dispatches here.

pub mod audit;
pub mod command;
pub mod disk;
pub mod drive;
pub mod firmware;
pub mod init;
pub mod outbox;
#[allow(unsafe_code)]
pub mod sys;
pub mod wipe;
