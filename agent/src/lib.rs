//! The Lapterop agent: everything that runs on the donated laptop.
//!
//! | layer | modules | what |
//! |---|---|---|
//! | front ends | [`cli`], [`flow`], [`init`], [`ui`] | each subcommand's arguments, output and exit codes; the volunteer's screens; the progress bars of the command line (`ui::disk_bars`); PID 1 of the live image |
//! | the job | [`job`] | the one pipeline (station → audit → claim → plan → pre-flight → confirm → wipe → install → certify → upload) over ports and a front end, reporting typed events |
//! | wiping | [`wipe`] | firmware purge check, overwrite, read-back, outcome rules, the disk's record; progress goes to a [`wipe::Progress`] the caller gives |
//! | storage | [`storage`]: [`disk`], [`drive`], [`firmware`], [`hpa`], [`opal`], [`unfreeze`], [`stickmark`], [`command`], [`sys`] | discovery and the safety rules, the drive's firmware (probe, plan, NVMe/ATA runners, hidden areas, freeze locks), pure command encoders and the few `unsafe` system calls |
//! | the laptop | [`audit`], [`preflight`], [`plan`] | hardware audit and verdict; the checks before a job; each disk as the plan shows it |
//! | the stick | [`site`], [`outbox`], [`sitelog`], [`install`] | the site config (`site.toml`, parsed only here), certificates waiting for the server, the per-machine log, the OS image installer |
//! | Wi-Fi | [`wifi`] | the configured networks, their PSK, the supplicant's config and events |
//! | words | [`i18n`] | every text a volunteer reads, in Dutch and English (on `lapterop-words`, shared with the server) |
//!
//! `main.rs` only parses arguments and dispatches to [`cli`]; the library below the front ends neither
//! prints nor exits. Arrows point down the table: storage depends on nothing above it, and
//! `scripts/module-cycles.py` (run by the test command) fails on any import cycle between modules.

pub mod audit;
pub mod capture;
pub mod cli;
pub mod flow;
pub mod i18n;
pub mod init;
pub mod install;
pub mod job;
pub mod network;
pub mod outbox;
pub mod plan;
pub mod preflight;
pub mod site;
pub mod sitelog;
pub mod storage;
pub mod ui;
pub mod wifi;
pub mod wipe;

// The storage modules under their short names, as the rest of the crate and the tests use them.
pub use storage::{command, disk, drive, emmc, firmware, hpa, opal, stickmark, sys, unfreeze};
