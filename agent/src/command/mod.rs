//! Firmware commands for NVMe and ATA drives, as pure functions: every structure we send is built
//! here and checked byte for byte against the specifications in unit tests; every answer is parsed
//! here. The ioctls that carry them live in [`crate::sys`].
//!
//! - [`ata`]: ATA PASS-THROUGH(16) CDBs (IDENTIFY, SMART, hidden areas, SANITIZE, SECURITY) and
//!   parsers for IDENTIFY, SMART data and SANITIZE STATUS.
//! - [`sense`]: SCSI sense data, including the ATA Status Return descriptor.
//! - [`nvme`]: NVMe admin passthrough (Identify, Get Log Page, Format NVM, Sanitize) and parsers.

pub mod ata;
pub mod nvme;
pub mod sense;
