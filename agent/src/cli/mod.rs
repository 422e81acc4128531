//! The command front ends: each subcommand's arguments, what it prints and its documented exit codes.
//! `main.rs` only parses and dispatches here; the domain modules neither print nor exit (the live
//! image's [`crate::init`] and the volunteer's [`crate::flow`] are front ends of their own).

pub mod audit;
pub mod capture;
pub mod disks;
pub mod firmware;
pub mod flow;
pub mod install;
pub mod preflight;
pub mod run;
pub mod suspend;
pub mod upload;
pub mod wipe;
