//! The Lapterop agent: everything that runs on the donated laptop.
//!
//! It owns the hardware audit ([`audit`]), disk discovery and the safety rules that keep the boot stick
//! and busy disks out of reach ([`disk`]), the overwrite and verification engine ([`wipe`]), the
//! firmware command encodings for NVMe and ATA ([`command`]) and the few `unsafe` system calls behind
//! them ([`sys`]). The volunteer's side: pre-flight checks ([`preflight`]), the screens and prompts
//! ([`ui`]) in Dutch and English ([`i18n`]), and the per-machine log on the stick ([`sitelog`]), assembled into the volunteer's flow ([`flow`]) beside the
//! unattended job ([`job`]).
//! `main.rs` only parses arguments and dispatches here.

pub mod audit;
pub mod cli;
pub mod command;
pub mod disk;
pub mod drive;
pub mod firmware;
pub mod flow;
pub mod hpa;
pub mod i18n;
pub mod init;
pub mod install;
pub mod job;
pub mod outbox;
pub mod preflight;
pub mod site;
pub mod sitelog;
pub mod stickmark;
#[allow(unsafe_code)]
pub mod sys;
pub mod ui;
pub mod unfreeze;
pub mod wipe;
