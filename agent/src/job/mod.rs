//! One laptop, start to finish: the one pipeline behind `lapterop-agent run`, the volunteer's flow and
//! the live image's unattended mode.
//!
//! [`run`] goes through the stages in order: open the station (key, outbox) → people → audit → claim
//! → plan → pre-flight → confirm → wipe → install → certify and store → upload. It talks to the world
//! through two small interfaces: [`Ports`] (the root to read `/sys` and `/proc` from, the clock, disk
//! discovery and claiming, suspend to RAM; [`System`] is the real machine) and a [`Frontend`] (who
//! runs it, the confirmations, and the typed [`Event`]s it reports). The unattended job
//! ([`console::Unattended`]: every question answers itself, every event is a console line) and the
//! volunteer's flow (`crate::flow`: the screens and the per-machine log) are the same pipeline with a
//! different front end.
//!
//! Order matters for the promises in `docs/security.md`: the certificate is written to the outbox
//! (atomically, signed) before any upload is tried, so a pulled cable or a dead server loses nothing;
//! the OS image goes only onto a disk whose wipe ended `erased` or `erased-with-exceptions`; a disk that
//! is internal but cannot be claimed is in the certificate as `not-erased` with the reason, so the
//! laptop can never be certified erased while one of its disks was left alone.
//!
//! | module | what |
//! |---|---|
//! | [`steps`] | each stage's work: station, audit, claim, plan, wipe, install, send |
//! | [`plan`] | the plan screen's and the pre-flight's view of the disks |
//! | [`certify`] | the one place the laptop's certificate is assembled, signed and stored |
//! | [`events`] | what the pipeline reports |
//! | [`console`] | the unattended front end |

pub mod certify;

pub mod console;
pub mod events;
pub mod plan;
pub mod steps;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lapterop_certificate::model::InstallStatus;
use lapterop_certificate::{Certificate, OutcomeStatus, Person};

pub use certify::{certify_and_store, Covered};

pub use events::{Event, Stage};
pub use steps::{
    audit_step, claim_disks, donor_url, install_line, install_step, is_internal, open_station, plan_step, refusal_text,
    send_outbox, upload_step, wipe_step, Audited, Disks, Station, StationError,
};

use crate::outbox::{Sent, UploadError};
use crate::preflight::{self, Finding};
use crate::site::{ExternalChoice, Site};
use crate::ui::confirm::Decision;
use crate::ui::PlanDisk;
use crate::wipe;

/// What one job is given.
#[derive(Debug)]
pub struct Job<'a> {
    /// The checked site config.
    pub site: &'a Site,
    /// The stick's `lapterop/` directory (keys, images, `outbox/`, `logs/`).
    pub dir: &'a Path,
    /// Kernel name of the stick's disk, never a target (it is refused anyway: it is mounted).
    pub stick_disk: Option<&'a str>,
    /// Only these disks (paths or names) instead of every internal one; loop devices allowed.
    pub only: &'a [String],
    /// Set by SIGINT/SIGTERM: the wipe stops and its disks end `not-erased`.
    pub stop: &'a AtomicBool,
    /// The trusted OS image key's public half: the one baked into the live image
    /// ([`crate::site::BAKED_IMAGE_KEY`]), never a file on the stick's data partition.
    pub image_key: &'a Path,
}

/// Who ran the job, and who checked it (four eyes), if anyone.
pub type People = (Person, Option<Person>);

/// What became of a job that ran to the end.
#[derive(Debug)]
pub struct JobResult {
    /// The signed certificate (also in the outbox).
    pub certificate: Certificate,
    /// Its file in the outbox.
    pub certificate_file: PathBuf,
    /// The upload: `None` when no server is configured.
    pub upload: Option<Sent>,
    /// The donor page, from the server's receipt.
    pub donor_url: Option<String>,
    /// Seconds per stage, in order.
    pub stages: Vec<(Stage, f64)>,
}

impl JobResult {
    /// One machine-readable line for logs and the end-to-end test.
    pub fn marker(&self) -> String {
        let outcome = match self.certificate.overall_outcome() {
            OutcomeStatus::Erased => "erased",
            OutcomeStatus::ErasedWithExceptions => "erased-with-exceptions",
            OutcomeStatus::NotErased => "not-erased",
        };
        let install = match &self.certificate.install {
            None => "none",
            Some(r) if r.status == InstallStatus::Installed => "installed",
            Some(_) => "failed",
        };
        let upload = match &self.upload {
            None => "no-server",
            Some(Sent::Uploaded | Sent::AlreadyDone) => "sent",
            Some(Sent::Failed(e)) if e.retryable() => "waiting",
            Some(Sent::Failed(_)) => "refused",
        };
        format!(
            "LAPTEROP-JOB-DONE certificate={} outcome={outcome} install={install} upload={upload}",
            self.certificate.id
        )
    }
}

/// Why a job stopped before its certificate: the code on the screen and in the lead guide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCode {
    /// `LAP-S01`: the station key is missing or unreadable.
    Station,
    /// `LAP-S02`: the stick (outbox, log) cannot be written.
    Stick,
    /// `LAP-S03`: the disks could not be listed or planned, or the wipe could not run.
    Job,
}

impl StopCode {
    /// The code as shown.
    pub fn code(self) -> &'static str {
        match self {
            StopCode::Station => "LAP-S01",
            StopCode::Stick => "LAP-S02",
            StopCode::Job => "LAP-S03",
        }
    }
}

/// How a job ended.
#[derive(Debug)]
pub enum Ended {
    /// It ran: the certificate is in the outbox.
    Done(Box<JobResult>),
    /// It stopped with `code` (nothing certified; what was written, if anything, is in `detail`).
    Stopped {
        /// Which stop.
        code: StopCode,
        /// What happened.
        detail: String,
    },
    /// Pre-flight found something that stops the job; nothing was written.
    Preflight(Vec<Finding>),
    /// Cancelled at the plan; nothing was written.
    Cancelled,
    /// The person at the keyboard went away (input closed) before anything was written.
    Closed,
}

/// Whether the job goes on after a screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Go {
    /// On to the next stage.
    On,
    /// The person left (input closed): stop, nothing was written.
    Left,
    /// The front end cannot go on (e.g. the log on the stick cannot be written).
    Stop(StopCode, String),
}

/// The person (or nobody) in front of the laptop: answers the pipeline's questions and hears its events.
pub trait Frontend {
    /// Who runs the job and who checks it; `None` when the input closed.
    fn people(&mut self) -> io::Result<Option<People>>;
    /// The pre-flight findings (none of them stops the job).
    fn preflight(&mut self, findings: &[Finding]) -> io::Result<Go>;
    /// The audit of the laptop.
    fn audit(&mut self, audited: &Audited) -> io::Result<Go>;
    /// The plan, `claimed` disks of it to be wiped: go or cancel.
    fn confirm(&mut self, plan: &[PlanDisk], claimed: usize) -> io::Result<Decision>;
    /// Something happened.
    fn event(&mut self, event: Event<'_>);
    /// The PSID of `disk`, a locked self-encrypting drive the site allows to reset (`why` says what the
    /// drive reports), typed from its label; `None` when none is given (nobody at the keyboard, or the
    /// volunteer skipped it): the disk is then wiped as it is and its locked ranges fail.
    fn psid(&mut self, disk: &crate::disk::Disk, why: &str) -> io::Result<Option<crate::opal::Psid>> {
        let _ = (disk, why);
        Ok(None)
    }
    /// Where the wipe of disk `name` reports its progress (asked before the wipe starts).
    fn disk_progress(&mut self, name: &str) -> Box<dyn wipe::Progress + Send>;
    /// Where the OS install reports its progress.
    fn install_progress(&mut self) -> Box<dyn Fn(lapterop_osimage::install::Progress) + Send + Sync> {
        Box::new(|_| {})
    }
}

/// The machine the pipeline runs on.
pub trait Ports {
    /// The root holding `sys/` and `proc/` (`/` on the laptop; a recorded tree in tests).
    fn root(&self) -> &Path;
    /// Now, Unix seconds.
    fn now(&self) -> i64;
    /// The drives' own health reports, for the audit (`None`: not read).
    fn disk_summaries(&self) -> Option<Vec<crate::audit::DiskSummary>>;
    /// Every disk, claimed (held exclusively), refused with reasons, or left alone; `external` says
    /// whether SD cards and USB disks other than the stick are taken too.
    fn claim(&self, only: &[String], stick_disk: Option<&str>, external: ExternalChoice) -> anyhow::Result<Disks>;
    /// Suspends to RAM for `seconds` with an RTC wake alarm (lifts a BIOS freeze lock).
    fn suspend_for(&self, seconds: u32) -> Result<Duration, crate::unfreeze::SuspendError>;
    /// Waits between upload retries.
    fn sleep(&self, pause: Duration);
}

/// The real machine.
#[derive(Debug, Default)]
pub struct System;

impl Ports for System {
    fn root(&self) -> &Path {
        Path::new("/")
    }

    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn disk_summaries(&self) -> Option<Vec<crate::audit::DiskSummary>> {
        Some(crate::audit::live_disk_summaries())
    }

    fn claim(&self, only: &[String], stick_disk: Option<&str>, external: ExternalChoice) -> anyhow::Result<Disks> {
        claim_disks(only, stick_disk, external)
    }

    fn suspend_for(&self, seconds: u32) -> Result<Duration, crate::unfreeze::SuspendError> {
        crate::unfreeze::PowerFiles::system().suspend_for(seconds)
    }

    fn sleep(&self, pause: Duration) {
        std::thread::sleep(pause);
    }
}

/// Stage timings, each also reported as [`Event::StageDone`].
struct Clock {
    since: Instant,
    stages: Vec<(Stage, f64)>,
}

impl Clock {
    fn done(&mut self, stage: Stage, ui: &mut dyn Frontend) {
        let seconds = self.since.elapsed().as_secs_f64();
        ui.event(Event::StageDone { stage, seconds });
        self.stages.push((stage, seconds));
        self.since = Instant::now();
    }
}

/// Runs the whole job through `ui`. Errors only when the front end fails (the terminal is gone); every
/// problem of the job itself is in the [`Ended`] or in the certificate.
pub fn run(job: &Job<'_>, ports: &dyn Ports, ui: &mut dyn Frontend) -> io::Result<Ended> {
    match prepare(job, ports, ui)? {
        Ok(ready) => carry_out(job, ports, ui, ready),
        Err(ended) => Ok(ended),
    }
}

/// Everything the confirmation decides over, gathered before anything is written.
struct Ready {
    station: Station,
    people: People,
    audited: Audited,
    disks: Disks,
    plans: Vec<wipe::FirmwarePrelude>,
    clock: Clock,
}

/// The stages up to the confirmation: open the station, audit, claim, plan, pre-flight, the
/// questions. Nothing is written; an ending here leaves every disk as it was.
fn prepare(job: &Job<'_>, ports: &dyn Ports, ui: &mut dyn Frontend) -> io::Result<Result<Ready, Ended>> {
    let site = job.site;
    let stopped = |code: StopCode, detail: String| Ok(Err(Ended::Stopped { code, detail }));
    let station = match open_station(site, job.dir) {
        Ok(s) => s,
        Err(e @ StationError::Key { .. }) => return stopped(StopCode::Station, e.to_string()),
        Err(e) => return stopped(StopCode::Stick, e.to_string()),
    };
    let Some(people) = ui.people()? else {
        return Ok(Err(Ended::Closed));
    };
    let mut clock = Clock {
        since: Instant::now(),
        stages: Vec::new(),
    };
    let audited = audit_step(site, ports);
    ui.event(Event::Audited {
        audited: &audited,
        people: &people,
    });
    clock.done(Stage::Audit, ui);

    let disks = match ports.claim(job.only, job.stick_disk, site.wipe.external) {
        Ok(d) => d,
        Err(e) => return stopped(StopCode::Job, format!("{e:#}")),
    };
    for (disk, why) in &disks.refused {
        ui.event(Event::Refused {
            disk,
            why: &refusal_text(why),
        });
    }
    for disk in &disks.left_alone {
        ui.event(Event::LeftAlone { disk });
    }
    let mut plans = match plan_step(site, &disks.claimed, ports, &mut |e| ui.event(e)) {
        Ok(p) => p,
        Err(e) => return stopped(StopCode::Job, format!("{e:#}")),
    };
    ask_psids(&disks.claimed, &mut plans, ui)?;
    let chosen: Vec<_> = plans.iter().map(|p| p.chosen).collect();
    let plan = plan::plan_disks(&disks, &chosen, &audited.audit, job.stick_disk);
    clock.done(Stage::Disks, ui);

    let findings = plan::relevant(
        preflight::check(&preflight::Input {
            root: ports.root(),
            disks: &plan,
            now: ports.now(),
            battery_min_percent: site.ui.battery_min_percent,
            wifi: crate::network::wifi_now(),
        }),
        !job.only.is_empty(),
    );
    for f in &findings {
        ui.event(Event::Finding(f));
    }
    if preflight::blocked(&findings) {
        return Ok(Err(Ended::Preflight(findings)));
    }
    let gone = |go: Go| match go {
        Go::On => None,
        Go::Left => Some(Ended::Closed),
        Go::Stop(code, detail) => Some(Ended::Stopped { code, detail }),
    };
    if let Some(ended) = gone(ui.preflight(&findings)?) {
        return Ok(Err(ended));
    }
    if let Some(ended) = gone(ui.audit(&audited)?) {
        return Ok(Err(ended));
    }
    // Ctrl-C at a question counts as cancelling: nothing has been written yet.
    let decision = ui.confirm(&plan, disks.claimed.len())?;
    if decision == Decision::Cancelled || job.stop.load(Ordering::Relaxed) {
        return Ok(Err(Ended::Cancelled));
    }
    Ok(Ok(Ready {
        station,
        people,
        audited,
        disks,
        plans,
        clock,
    }))
}

/// Asks for the PSID of every locked self-encrypting drive the site allows to reset. Nothing is sent
/// to a drive here: the revert runs at the start of its wipe, after the plan was confirmed.
fn ask_psids(
    claimed: &[crate::disk::Claimed],
    plans: &mut [wipe::FirmwarePrelude],
    ui: &mut dyn Frontend,
) -> io::Result<()> {
    for (c, p) in claimed.iter().zip(plans.iter_mut()) {
        let Some(sed) = p.sed.as_mut() else { continue };
        let disk = &c.disk.name;
        match ui.psid(&c.disk, &sed.why)? {
            Some(psid) => {
                sed.give_psid(psid);
                ui.event(Event::PlanNote {
                    disk,
                    note: "PSID typed: the drive is reset to its factory state (TCG PSID Revert) before it is wiped",
                });
            }
            None => ui.event(Event::PlanNote {
                disk,
                note: &format!(
                    "{}. No PSID was given: its locked ranges will fail and it cannot be erased; run the job again and \
                     type the PSID from the drive's label",
                    sed.why
                ),
            }),
        }
    }
    Ok(())
}

/// The stages after the confirmation: wipe, install, certify, store, upload.
fn carry_out(job: &Job<'_>, ports: &dyn Ports, ui: &mut dyn Frontend, ready: Ready) -> io::Result<Ended> {
    let site = job.site;
    let stopped = |code: StopCode, detail: String| Ok(Ended::Stopped { code, detail });
    let Ready {
        station,
        people,
        audited,
        disks,
        plans,
        mut clock,
    } = ready;
    for c in &disks.claimed {
        ui.event(Event::Wiping(c));
    }
    ui.event(Event::WipeStarted);
    let progress = disks.claimed.iter().map(|c| ui.disk_progress(&c.disk.name)).collect();
    let wiped = wipe_step(site, &disks.claimed, plans, job.stop, progress);
    ui.event(Event::WipeFinished);
    let mut records = match wiped {
        Ok(r) => r,
        Err(e) => return stopped(StopCode::Job, format!("{e:#}")),
    };
    for r in &records {
        ui.event(Event::DiskOutcome(r));
    }
    clock.done(Stage::Wipe, ui);

    // Drawn before the install: the installed system's machine.json carries it.
    let id = match lapterop_certificate::new_id() {
        Ok(id) => id,
        Err(e) => {
            return stopped(
                StopCode::Job,
                format!("drawing a certificate id from the kernel's random numbers: {e}"),
            )
        }
    };
    let install = if site.install.is_some() {
        let progress = ui.install_progress();
        let install = install_step(
            site,
            job.dir,
            job.image_key,
            &disks.claimed,
            &records,
            &steps::identity(&audited, &id),
            &*progress,
            &mut |e| ui.event(e),
        );
        ui.event(Event::InstallDone(install.as_ref()));
        install
    } else {
        None
    };
    clock.done(Stage::Install, ui);

    let refused = disks.refused_records();
    for r in &refused {
        ui.event(Event::DiskOutcome(r));
    }
    records.extend(refused);
    let covered = Covered {
        disks: records,
        not_touched: disks.untouched(job.stick_disk),
        install,
    };
    drop(disks);
    let (certificate, certificate_file) = match certify_and_store(site, &station, &audited, people, covered, id) {
        Ok(c) => c,
        Err(e) => return stopped(StopCode::Stick, format!("{e:#}")),
    };
    ui.event(Event::CertificateStored {
        certificate: &certificate,
        file: &certificate_file,
    });
    clock.done(Stage::Certificate, ui);

    if site.server.is_some() {
        ui.event(Event::UploadSending);
    }
    let (upload, donor_url) = match upload_step(site, &station, &certificate.id, ports, &mut |e| ui.event(e)) {
        Ok(u) => u,
        // A server key that cannot be read: the certificate waits like with a server away.
        Err(e) => (Some(Sent::Failed(UploadError::Unreachable(format!("{e:#}")))), None),
    };
    ui.event(Event::UploadDone(upload.as_ref()));
    clock.done(Stage::Upload, ui);
    Ok(Ended::Done(Box::new(JobResult {
        certificate,
        certificate_file,
        upload,
        donor_url,
        stages: clock.stages,
    })))
}

/// Why a job that did not get to its certificate ended, in one line.
pub fn stopped_line(ended: &Ended) -> String {
    match ended {
        Ended::Done(r) => r.marker(),
        Ended::Stopped { code, detail } => format!("{} {detail}", code.code()),
        Ended::Preflight(findings) => {
            let codes: Vec<String> = findings
                .iter()
                .filter(|f| f.code.severity() == crate::preflight::Severity::Stop)
                .map(|f| format!("{} {}", f.code.as_str(), f.found(crate::i18n::Lang::En)))
                .collect();
            format!("stopped at pre-flight, nothing was written: {}", codes.join("; "))
        }
        Ended::Cancelled => "cancelled at the plan; nothing was written".into(),
        Ended::Closed => "the input closed before the job started; nothing was written".into(),
    }
}

/// The exit code of a finished job (see [`crate::cli::run`]).
pub fn code_of(r: &JobResult) -> ExitCode {
    let erased = r.certificate.overall_outcome() != OutcomeStatus::NotErased;
    let installed = r
        .certificate
        .install
        .as_ref()
        .is_none_or(|i| i.status == InstallStatus::Installed);
    if !erased || !installed {
        return ExitCode::from(1);
    }
    match &r.upload {
        Some(Sent::Failed(e)) if !e.retryable() => ExitCode::from(1),
        Some(Sent::Failed(_)) => ExitCode::from(3),
        _ => ExitCode::SUCCESS,
    }
}
