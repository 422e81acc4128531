//! What the pipeline reports while it runs: typed events, one per fact, for the console lines, the
//! per-machine site log and the volunteer's screens alike. No front end learns a fact by reading
//! another's text.

use std::path::Path;

use lapterop_certificate::{Certificate, DiskRecord, InstallRecord};

use super::{Audited, People};
use crate::disk::{Claimed, Disk};
use crate::outbox::Sent;
use crate::preflight::Finding;

/// The pipeline's stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The hardware audit.
    Audit,
    /// Disk discovery, claiming and the firmware plan.
    Disks,
    /// Firmware purge, overwrite and read-back.
    Wipe,
    /// The OS image.
    Install,
    /// Signing and storing the certificate.
    Certificate,
    /// Sending the outbox.
    Upload,
}

impl Stage {
    /// The stage's name in log lines and timings.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Audit => "audit",
            Stage::Disks => "disks",
            Stage::Wipe => "wipe",
            Stage::Install => "install",
            Stage::Certificate => "certificate",
            Stage::Upload => "upload",
        }
    }
}

/// One thing that happened.
#[derive(Debug)]
pub enum Event<'a> {
    /// A stage ended after `seconds`.
    StageDone {
        /// Which.
        stage: Stage,
        /// How long it took.
        seconds: f64,
    },
    /// The laptop was audited; these people run and check the job.
    Audited {
        /// The audit.
        audited: &'a Audited,
        /// Operator and verifier.
        people: &'a People,
    },
    /// A chosen disk could not be taken: it will be certified `not-erased` with the reason.
    Refused {
        /// The disk.
        disk: &'a Disk,
        /// Why, in one line.
        why: &'a str,
    },
    /// A disk left alone on purpose (the stick, USB, removable, not chosen).
    LeftAlone {
        /// The disk.
        disk: &'a Disk,
    },
    /// The asked-for firmware method is not possible on some drive; the automatic plan is used.
    PlanFallback {
        /// Why.
        why: &'a str,
    },
    /// Planning a disk's firmware erase found something a person should read.
    PlanNote {
        /// The disk.
        disk: &'a str,
        /// What.
        note: &'a str,
    },
    /// Drives are frozen by the BIOS: the laptop is suspended to RAM to lift it.
    Suspending {
        /// How many disks are frozen.
        frozen: usize,
        /// For how long.
        seconds: u32,
    },
    /// A pre-flight finding.
    Finding(&'a Finding),
    /// The plan was confirmed: this disk is about to be wiped.
    Wiping(&'a Claimed),
    /// The wipe of every claimed disk started.
    WipeStarted,
    /// The wipe ended (done, stopped or failed).
    WipeFinished,
    /// What became of one disk (wiped or refused).
    DiskOutcome(&'a DiskRecord),
    /// `install.trust` in the site config is not read.
    TrustIgnored {
        /// What the config named.
        configured: &'a Path,
        /// The key that is trusted instead.
        trusted: &'a Path,
    },
    /// The OS image is about to be written.
    InstallStarting {
        /// The image file or URL.
        location: &'a str,
        /// The target disk.
        target: &'a str,
    },
    /// The install step ended: its record, or `None` when no disk ended erased.
    InstallDone(Option<&'a InstallRecord>),
    /// The signed certificate is in the outbox.
    CertificateStored {
        /// The certificate.
        certificate: &'a Certificate,
        /// Its file.
        file: &'a Path,
    },
    /// The outbox is about to be sent.
    UploadSending,
    /// One certificate of the outbox was sent (or not).
    Sent {
        /// Its file name.
        file: &'a str,
        /// What the server said.
        sent: &'a Sent,
    },
    /// The upload step ended; `None` without a server.
    UploadDone(Option<&'a Sent>),
}
