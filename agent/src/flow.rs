//! The volunteer's interactive flow on one laptop (`lapterop-agent flow`, and the live image's init in
//! interactive mode): operator, pre-flight, audit and verdict, the plan and its confirmation, progress
//! of every disk, the result in large words with what to do, the install, the upload and the donor
//! page's QR code, then next laptop or power off.
//!
//! It runs the same stages as the unattended job ([`crate::job`]: the same claim, firmware plan, wipe,
//! install, certificate and outbox), with screens and questions between them; the certificate is signed
//! and written to the stick's outbox before any upload, exactly as there. Every problem shown carries a
//! code from `docs/lead-guide.md`, and every step is appended to the laptop's log on the stick
//! ([`crate::sitelog`]). Screens come from [`crate::ui`], texts from [`crate::i18n`]; the volunteer
//! switches the language with `L` at every question.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapterop_certificate::model::{InstallRecord, InstallStatus, StepKind};
use lapterop_certificate::{DiskRecord, OutcomeStatus};

use crate::disk::Refusal;
use crate::i18n::{Key, Lang, Word};
use crate::job::{self, Disks, JobResult};
use crate::outbox::Sent;
use crate::preflight::{self, Code, Finding};
use crate::site::Site;
use crate::sitelog::SiteLog;
use crate::ui::confirm::{self, Decision, Next};
use crate::ui::input::{Input, Keys};
use crate::ui::progress::{Progress, Step, TaskId};
use crate::ui::screens::{self, AuditView, DiskResult, InstallState, UploadState};
use crate::ui::{operator, qr, Colour, Exclusion, Health, Method, PlanDisk, Style};

/// Code shown when the station key cannot be used (nothing was done).
pub const CODE_STATION: &str = "LAP-S01";
/// Code shown when the stick cannot be written (outbox or log).
pub const CODE_STICK: &str = "LAP-S02";
/// Code shown when the job stopped outright (disks not listed, the wipe could not run).
pub const CODE_JOB: &str = "LAP-S03";
/// Code shown on the console when the keyboard layout could not be loaded.
pub const CODE_KEYMAP: &str = "LAP-K01";

/// What one interactive run is given.
#[derive(Debug)]
pub struct Flow<'a> {
    /// The checked site config.
    pub site: &'a Site,
    /// The stick's `lapterop/` directory.
    pub dir: &'a Path,
    /// Kernel name of the stick's disk (never a target).
    pub stick_disk: Option<&'a str>,
    /// Only these disks instead of every internal one (loop devices allowed, for tests).
    pub only: &'a [String],
    /// Set by SIGINT/SIGTERM: the wipe stops and its disks end `not-erased`.
    pub stop: &'a AtomicBool,
    /// Where the operators are remembered for the rest of the boot (a file on a tmpfs); `None` asks
    /// every run.
    pub remember: Option<&'a Path>,
    /// The trusted OS image key's public half (see [`job::Job::image_key`]).
    pub image_key: &'a Path,
}

/// How a run ended.
#[derive(Debug)]
pub enum Ending {
    /// The job ran; the certificate is in the outbox.
    Done(Box<JobResult>),
    /// The volunteer cancelled at the plan: nothing was written, no certificate.
    Cancelled,
    /// Pre-flight found something that stops the job: nothing was written.
    Blocked,
    /// The keyboard input closed before the job started: nothing was written.
    Closed,
}

/// A finished run: how it ended and what the volunteer chose next.
#[derive(Debug)]
pub struct FlowEnd {
    /// How it ended.
    pub ending: Ending,
    /// Next laptop or power off.
    pub next: Next,
}

/// Terminal, keyboard and language of a run.
struct Screen<'a> {
    input: &'a mut dyn Input,
    out: &'a mut dyn Write,
    style: Style,
    lang: Lang,
}

impl Screen<'_> {
    /// Shows a problem that ends the run (its code, what was found and what to do, in red), logs it,
    /// and asks next laptop or power off.
    fn stop(&mut self, log: &mut Log, code: &str, detail: &str) -> io::Result<FlowEnd> {
        let (found, todo) = match code {
            CODE_STATION => (Key::S01Found, Key::S01Do),
            CODE_STICK => (Key::S02Found, Key::S02Do),
            _ => (Key::S03Found, Key::S03Do),
        };
        log.line(Some(code), detail);
        let found = self.lang.fill(found, &[("detail", detail)]);
        let head = screens::hang(&format!("[{}] {code}", self.lang.t(Key::SeverityStop)), &found, 18);
        writeln!(self.out, "\n{}", self.style.fg(Colour::Red, &head))?;
        let todo = format!("{}: {}", self.lang.t(Key::WhatToDo), self.lang.t(todo));
        writeln!(self.out, "{}", screens::hang("", &todo, 18))?;
        let next = self.next(&|l: Lang| format!("\n{}\n", l.t(Key::NextMachine)))?;
        Ok(FlowEnd {
            ending: Ending::Blocked,
            next,
        })
    }

    /// Asks next laptop or power off under `render`.
    fn next(&mut self, render: &dyn Fn(Lang) -> String) -> io::Result<Next> {
        confirm::ask_next(self.input, self.out, &mut self.lang, render)
    }
}

/// Runs the flow once. Errors only when the screen itself fails (the terminal is gone); every problem
/// of the job is shown with its code and ends the run with [`Ending::Blocked`] or in the certificate.
pub fn run(flow: &Flow<'_>, input: &mut dyn Input, out: &mut dyn Write, style: Style) -> io::Result<FlowEnd> {
    let site = flow.site;
    let mut s = Screen {
        input,
        out,
        style,
        lang: site.ui.language,
    };
    let end = |ending, next| Ok(FlowEnd { ending, next });

    let station = match job::open_station(site, flow.dir) {
        Ok(st) => st,
        Err(e) => {
            let code = if e.to_string().contains("station key") {
                CODE_STATION
            } else {
                CODE_STICK
            };
            println!("lapterop: {code} {e:#}");
            return s.stop(&mut Log(None), code, &format!("{e:#}"));
        }
    };

    // Who does the job: remembered for the boot, from the config, or asked.
    let recalled = flow.remember.and_then(operator::Operators::recall);
    let ops = match recalled {
        Some(ops) => ops,
        None => match operator::ask(s.input, s.out, &mut s.lang, style, &site.ui)? {
            Some(ops) => {
                if let Some(path) = flow.remember {
                    let _ = ops.remember(path);
                }
                ops
            }
            None => return end(Ending::Closed, Next::PowerOff),
        },
    };

    let audited = job::audit_step(site);
    let mut log = match SiteLog::open(&flow.dir.join("logs"), &audited.host.device_id) {
        Ok(l) => Log(Some(l)),
        Err(e) => {
            println!("lapterop: {CODE_STICK} the log on the stick: {e}");
            return s.stop(&mut Log(None), CODE_STICK, &format!("the log on the stick: {e}"));
        }
    };
    log.line(
        None,
        &format!(
            "interactive flow by {}{}; laptop {} {} serial {}",
            ops.operator,
            ops.verifier
                .as_deref()
                .map(|v| format!(", checked by {v}"))
                .unwrap_or_default(),
            audited.host.system.vendor.as_deref().unwrap_or("?"),
            audited.host.system.product.as_deref().unwrap_or("?"),
            audited.host.system.serial.as_deref().unwrap_or("?"),
        ),
    );

    let disks = match job::claim_disks(flow.only, flow.stick_disk) {
        Ok(d) => d,
        Err(e) => {
            return s.stop(&mut log, CODE_JOB, &format!("{e:#}"));
        }
    };
    let plans = match job::plan_step(site, &disks.claimed) {
        Ok(p) => p,
        Err(e) => {
            return s.stop(&mut log, CODE_JOB, &format!("{e:#}"));
        }
    };
    let chosen: Vec<Option<StepKind>> = plans.iter().map(|p| p.chosen).collect();
    let plan = plan_disks(&disks, &chosen, &audited.audit, flow.stick_disk);

    // Pre-flight.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let findings = relevant(
        preflight::check(&preflight::Input {
            root: Path::new("/"),
            disks: &plan,
            now,
            battery_min_percent: site.ui.battery_min_percent,
        }),
        !flow.only.is_empty(),
    );
    for f in &findings {
        log.line(Some(f.code.as_str()), &f.found(Lang::En));
    }
    let preflight_screen = |l: Lang| screens::preflight(l, style, &findings);
    if preflight::blocked(&findings) {
        log.line(None, "stopped at pre-flight; nothing was written");
        let next = s.next(&|l: Lang| format!("{}{}\n", preflight_screen(l), l.t(Key::NextMachine)))?;
        return end(Ending::Blocked, next);
    }
    if !confirm::show_and_wait(s.input, s.out, &mut s.lang, &preflight_screen)? {
        return end(Ending::Closed, Next::PowerOff);
    }
    let view = AuditView::from_audit(&audited.audit);
    if !confirm::show_and_wait(s.input, s.out, &mut s.lang, &|l: Lang| screens::audit(l, style, &view))? {
        return end(Ending::Closed, Next::PowerOff);
    }

    // The plan and its confirmation.
    let decision = match site.ui.unattended_countdown_secs {
        Some(secs) if !disks.claimed.is_empty() => {
            write!(s.out, "{}", screens::plan(s.lang, style, &plan))?;
            confirm::countdown(s.input, s.out, s.lang, style, secs)?
        }
        _ => confirm::confirm_plan(
            s.input,
            s.out,
            &mut s.lang,
            style,
            &plan,
            site.ui.confirm_word.as_deref(),
        )?,
    };
    // Ctrl-C at a question (see `cli`) counts as cancelling: nothing has been written yet.
    if decision == Decision::Cancelled || flow.stop.load(Ordering::Relaxed) {
        log.line(None, "cancelled at the plan; nothing was written");
        drop(disks);
        let next = s.next(&|l: Lang| format!("\n{}\n{}\n", l.t(Key::Cancelled), l.t(Key::NextMachine)))?;
        return end(Ending::Cancelled, next);
    }
    for c in &disks.claimed {
        log.line(
            None,
            &format!(
                "confirmed: wiping {} ({} bytes, model {}, serial {})",
                c.disk.name,
                c.capacity_bytes,
                c.disk.model.as_deref().unwrap_or("?"),
                c.disk.serial.as_deref().unwrap_or("?")
            ),
        );
    }

    // Erasing, with progress for every disk.
    writeln!(s.out, "\n{}", style.fg(Colour::Cyan, s.lang.t(Key::ProgressTitle)))?;
    s.out.flush()?;
    let bars = Bars::new(s.lang, style);
    let make = |name: &str| -> Box<dyn crate::wipe::Progress + Send> { Box::new(bars.disk(name)) };
    let wiped = bars.ticking(|| job::wipe_step(site, &disks.claimed, plans, flow.stop, Some(&make)));
    let mut records = match wiped {
        Ok(r) => r,
        Err(e) => {
            return s.stop(&mut log, CODE_JOB, &format!("{e:#}"));
        }
    };
    for r in &records {
        log.line(
            outcome_code(r.outcome.status),
            &format!("{}: {}", r.device, crate::wipe::outcome_words(&r.outcome)),
        );
    }

    let install = if site.install.is_some() {
        writeln!(s.out, "\n{}", style.fg(Colour::Cyan, s.lang.t(Key::InstallingTitle)))?;
        s.out.flush()?;
        let task: Mutex<Option<TaskId>> = Mutex::new(None);
        let report = |p: lapterop_osimage::install::Progress| {
            let Ok(mut ui) = bars.ui.lock() else { return };
            let Ok(mut task) = task.lock() else { return };
            let id = *task.get_or_insert_with(|| ui.start("image", Step::Install, Some(p.total)));
            ui.set(id, p.written);
        };
        let install = job::install_step(site, flow.dir, flow.image_key, &disks.claimed, &records, &report);
        if let (Ok(mut ui), Ok(Some(id))) = (bars.ui.lock(), task.lock().map(|t| *t)) {
            ui.finish(id, if install_ok(install.as_ref()) { "OK" } else { "X" });
        }
        install
    } else {
        None
    };
    if let Some(line) = job::install_line(site, install.as_ref()) {
        log.line(
            (!install_ok(install.as_ref())).then_some(screens::CODE_INSTALL_FAILED),
            line.trim_start_matches("lapterop: ")
                .trim_start_matches(screens::CODE_INSTALL_FAILED)
                .trim_start(),
        );
    }

    // The certificate: signed and in the outbox before any upload is tried.
    let refused = disks.refused_records();
    for r in &refused {
        log.line(
            outcome_code(r.outcome.status),
            &format!("{}: {}", r.device, crate::wipe::outcome_words(&r.outcome)),
        );
    }
    records.extend(refused);
    let untouched = disks.untouched(flow.stick_disk);
    drop(disks);
    let people = ops.people();
    let (certificate, certificate_file) =
        match job::certify_and_store(site, &station, &audited, people, (records, untouched), install) {
            Ok(c) => c,
            Err(e) => {
                return s.stop(&mut log, CODE_STICK, &format!("{e:#}"));
            }
        };
    log.line(None, &format!("certificate {} saved in the outbox", certificate.id));
    writeln!(
        s.out,
        "\n{}",
        s.lang.fill(Key::CertificateSaved, &[("id", &certificate.id)])
    )?;
    if site.server.is_some() {
        writeln!(s.out, "{}", s.lang.t(Key::UploadSending))?;
    }
    s.out.flush()?;
    let (upload, donor_url) = match job::upload_step(site, &station, &certificate.id) {
        Ok(u) => u,
        Err(e) => (
            Some(Sent::Failed(crate::outbox::UploadError::Unreachable(format!("{e:#}")))),
            None,
        ),
    };
    let upload_state = match &upload {
        // Without a server the certificate stays on the stick for a lead to send by hand.
        None => UploadState::Waiting,
        Some(Sent::Uploaded | Sent::AlreadyDone) => UploadState::Uploaded,
        Some(Sent::Failed(e)) if e.retryable() => UploadState::Waiting,
        Some(Sent::Failed(e)) => UploadState::Refused(e.to_string()),
    };
    match &upload_state {
        UploadState::Uploaded => log.line(None, "certificate sent; receipt stored beside it"),
        UploadState::Waiting => log.line(Some(screens::CODE_UPLOAD_WAITING), "certificate waits in the outbox"),
        UploadState::Refused(why) => log.line(Some(screens::CODE_UPLOAD_REFUSED), why),
    }
    let result = JobResult {
        certificate,
        certificate_file,
        upload,
        donor_url,
        stages: Vec::new(),
    };
    println!("{}", result.marker());

    // The result.
    let results = disk_results(&result.certificate.disks);
    let install_state = match &result.certificate.install {
        None if site.install.is_none() => InstallState::Skipped,
        None => InstallState::Failed(
            job::install_line(site, None)
                .unwrap_or_default()
                .trim_start_matches("lapterop: LAP-I01 ")
                .to_string(),
        ),
        Some(r) if r.status == InstallStatus::Installed => InstallState::Installed(r.image_label()),
        Some(r) => InstallState::Failed(r.reason.clone().unwrap_or_default()),
    };
    let drawing = result
        .donor_url
        .as_deref()
        .and_then(|url| qr::render(url, style).ok().map(|d| (url.to_string(), d)));
    let rows = crate::ui::terminal_rows();
    let render = |l: Lang| {
        let qr = drawing.as_ref().map(|(u, d)| (u.as_str(), d.as_str()));
        screens::result(l, style, &results, &install_state, &upload_state, qr, rows)
    };
    let next = s.next(&render)?;
    log.line(
        None,
        match next {
            Next::NextMachine => "volunteer chose the next laptop",
            Next::PowerOff => "volunteer chose power off",
        },
    );
    end(Ending::Done(Box::new(result)), next)
}

fn install_ok(r: Option<&InstallRecord>) -> bool {
    r.is_none_or(|r| r.status == InstallStatus::Installed)
}

fn outcome_code(status: OutcomeStatus) -> Option<&'static str> {
    match status {
        OutcomeStatus::Erased => None,
        OutcomeStatus::ErasedWithExceptions => Some(screens::CODE_EXCEPTIONS),
        OutcomeStatus::NotErased => Some(screens::CODE_NOT_ERASED),
    }
}

/// The per-machine log; a line that cannot be written is said on the console (the job goes on: the
/// certificate is what counts).
struct Log(Option<SiteLog>);

impl Log {
    fn line(&mut self, code: Option<&str>, message: &str) {
        if let Some(log) = &mut self.0 {
            if let Err(e) = log.append(code, message) {
                println!("lapterop: {CODE_STICK} writing the log {}: {e}", log.path().display());
                self.0 = None;
            }
        }
    }
}

/// Pre-flight findings that apply: with disks named on the command line (`--only`) the checks for a
/// missing internal disk (`LAP-P01`, `LAP-P02`, `LAP-P08`) do not, as the volunteer chose the disks.
fn relevant(findings: Vec<Finding>, named_disks: bool) -> Vec<Finding> {
    findings
        .into_iter()
        .filter(|f| !(named_disks && matches!(f.code, Code::P01 | Code::P02 | Code::P08)))
        .collect()
}

/// The purge's name as the plan shows it.
pub fn purge_name(kind: StepKind) -> &'static str {
    match kind {
        StepKind::NvmeSanitizeCrypto => "NVMe Sanitize crypto",
        StepKind::NvmeSanitizeBlock => "NVMe Sanitize block",
        StepKind::NvmeSanitizeOverwrite => "NVMe Sanitize overwrite",
        StepKind::NvmeFormatCrypto => "NVMe Format crypto",
        StepKind::NvmeFormatUser => "NVMe Format user data",
        StepKind::AtaSanitizeCrypto => "ATA SANITIZE crypto",
        StepKind::AtaSanitizeBlock => "ATA SANITIZE block",
        StepKind::AtaSanitizeOverwrite => "ATA SANITIZE overwrite",
        StepKind::AtaSecurityErase => "ATA SECURITY ERASE",
        StepKind::AtaSecurityEraseEnhanced => "ATA SECURITY ERASE enhanced",
        StepKind::Overwrite
        | StepKind::HpaExpose
        | StepKind::HpaRestore
        | StepKind::DcoRestore
        | StepKind::Unfreeze => "overwrite",
    }
}

/// Disk health in brief from the audit's firmware reports.
fn health(audit: &crate::audit::Audit, name: &str) -> Health {
    let Some(d) = audit.disks.iter().flatten().find(|d| d.name == name) else {
        return Health::Unknown;
    };
    if let Some(n) = &d.nvme {
        if n.critical_warning != 0 || n.media_errors > 0 {
            return Health::Failing(format!(
                "critical warning {:#x}, {} media errors",
                n.critical_warning, n.media_errors
            ));
        }
        if n.percentage_used >= 80 {
            return Health::Worn(format!("{}% of rated life used", n.percentage_used));
        }
        return Health::Good;
    }
    if let Some(a) = &d.ata {
        let pending = a.pending_sectors.unwrap_or(0) + a.reported_uncorrectable.unwrap_or(0);
        if pending > 0 {
            return Health::Failing(format!("{pending} pending or uncorrectable sectors"));
        }
        if let Some(n) = a.reallocated_sectors.filter(|n| *n > 0) {
            return Health::Worn(format!("{n} reallocated sectors"));
        }
        return Health::Good;
    }
    Health::Unknown
}

/// The plan screen's disks: the claimed ones with their method, the refused ones and the ones left
/// alone marked as not touched.
fn plan_disks(
    disks: &Disks,
    chosen: &[Option<StepKind>],
    audit: &crate::audit::Audit,
    stick_disk: Option<&str>,
) -> Vec<PlanDisk> {
    let row = |d: &crate::disk::Disk, size: u64, method: Option<Method>, excluded: Option<Exclusion>| PlanDisk {
        name: d.name.clone(),
        model: d.model.clone(),
        serial: d.serial.clone(),
        size_bytes: size,
        transport: d.transport,
        rotational: d.rotational,
        removable: d.removable,
        health: health(audit, &d.name),
        method,
        excluded,
        frozen: false,
    };
    let mut out: Vec<PlanDisk> = disks
        .claimed
        .iter()
        .zip(chosen)
        .map(|(c, kind)| {
            let method = match kind {
                Some(k) if k.is_purge() => Method::FirmwareThenOverwrite(purge_name(*k).to_string()),
                _ => Method::Overwrite,
            };
            row(&c.disk, c.capacity_bytes, Some(method), None)
        })
        .collect();
    for (d, why) in &disks.refused {
        let exclusion = if why.iter().any(|r| matches!(r, Refusal::BootStick { .. })) {
            Exclusion::BootStick
        } else if why.iter().any(|r| matches!(r, Refusal::ReadOnly)) {
            Exclusion::ReadOnly
        } else {
            Exclusion::InUse
        };
        out.push(row(d, d.capacity_bytes, None, Some(exclusion)));
    }
    for d in disks.left_alone.iter().filter(|d| d.capacity_bytes > 0) {
        let exclusion = if Some(d.name.as_str()) == stick_disk {
            Exclusion::BootStick
        } else if job::is_internal(d, stick_disk) {
            Exclusion::NotChosen
        } else {
            Exclusion::External
        };
        out.push(row(d, d.capacity_bytes, None, Some(exclusion)));
    }
    out
}

/// The result screen's disks from the certificate.
fn disk_results(records: &[DiskRecord]) -> Vec<DiskResult> {
    records
        .iter()
        .map(|r| {
            let mut reasons: Vec<String> = r.outcome.reason.iter().cloned().collect();
            reasons.extend(r.outcome.exceptions.iter().map(|e| e.detail.clone()));
            DiskResult {
                name: r.device.clone(),
                model: r.model.clone(),
                serial: r.serial.clone(),
                outcome: r.outcome.status,
                reasons,
            }
        })
        .collect()
}

/// The progress of every disk on the screen (bars on a terminal, plain lines on a serial console).
struct Bars {
    ui: Arc<Mutex<Progress<io::Stdout>>>,
    lang: Lang,
}

impl Bars {
    fn new(lang: Lang, style: Style) -> Self {
        let p = if style.colour {
            Progress::bars(lang)
        } else {
            Progress::plain(lang, io::stdout())
        };
        Self {
            ui: Arc::new(Mutex::new(p)),
            lang,
        }
    }

    fn disk(&self, name: &str) -> DiskBar {
        DiskBar {
            ui: Arc::clone(&self.ui),
            name: name.to_string(),
            lang: self.lang,
            task: Mutex::new(None),
        }
    }

    /// Runs `work` while a thread prints the elapsed time of steps that report no progress (plain
    /// lines; the bars tick by themselves).
    fn ticking<T>(&self, work: impl FnOnce() -> T) -> T {
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    if let Ok(mut ui) = self.ui.lock() {
                        ui.tick_at(Instant::now());
                    }
                }
            });
            let out = work();
            done.store(true, Ordering::Relaxed);
            out
        })
    }
}

/// One disk's steps as tasks of the shared progress.
struct DiskBar {
    ui: Arc<Mutex<Progress<io::Stdout>>>,
    name: String,
    lang: Lang,
    task: Mutex<Option<TaskId>>,
}

/// The step a wipe phase belongs to (the wipe names its phases `pass 1/1 random`, `verify full`,
/// `reading samples ...`, `firmware erase (...)`).
fn step_of(label: &str) -> Step {
    if label.starts_with("firmware erase") {
        Step::Firmware
    } else if label.starts_with("pass") {
        Step::Overwrite
    } else {
        Step::Verify
    }
}

impl crate::wipe::Progress for DiskBar {
    fn phase(&self, label: &str, total: u64) {
        let step = step_of(label);
        let (Ok(mut ui), Ok(mut task)) = (self.ui.lock(), self.task.lock()) else {
            return;
        };
        if let Some(previous) = task.take() {
            ui.finish(previous, "OK");
        }
        let total = (step != Step::Firmware).then_some(total);
        *task = Some(ui.start(&self.name, step, total));
    }

    fn update(&self, done: u64) {
        let (Ok(mut ui), Ok(task)) = (self.ui.lock(), self.task.lock()) else {
            return;
        };
        if let Some(id) = *task {
            ui.set(id, done);
        }
    }

    fn finish(&self, outcome: &lapterop_certificate::DiskOutcome) {
        let (Ok(mut ui), Ok(mut task)) = (self.ui.lock(), self.task.lock()) else {
            return;
        };
        // The outcome in the volunteer's language, in capitals as on the banners; the reason is on the
        // result screen.
        let word = self.lang.t(match outcome.status {
            OutcomeStatus::Erased => Word::Erased,
            OutcomeStatus::ErasedWithExceptions => Word::ErasedWithExceptions,
            OutcomeStatus::NotErased => Word::NotErased,
        });
        if let Some(id) = task.take() {
            ui.finish(id, &word.to_uppercase());
        }
    }
}

/// Where the console keyboard layouts are looked for: the stick's `keymaps/` folder first (a lead can
/// add one there), then the live image's.
pub fn keymap_dirs(stick_dir: &Path) -> Vec<PathBuf> {
    vec![
        stick_dir.join("keymaps"),
        PathBuf::from("/usr/share/keymaps"),
        PathBuf::from("/etc/keymaps"),
    ]
}

/// busybox's binary keymap magic (`loadkmap` refuses anything else).
const BMAP_MAGIC: &[u8] = b"bkeymap";

/// The binary keymap file `NAME.bmap` in the first of `dirs` that has a valid one.
pub fn find_keymap(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, String> {
    let mut tried = Vec::new();
    for dir in dirs {
        let path = dir.join(format!("{name}.bmap"));
        match std::fs::read(&path) {
            Ok(bytes) if bytes.starts_with(BMAP_MAGIC) => return Ok(path),
            Ok(_) => tried.push(format!("{} (not a busybox keymap)", path.display())),
            Err(_) => tried.push(path.display().to_string()),
        }
    }
    Err(format!(
        "keyboard layout {name:?} not found (looked for {}); make one with `busybox dumpkmap > {name}.bmap` on a \
         console with that layout and put it in the stick's lapterop/keymaps/",
        tried.join(", ")
    ))
}

/// Loads the site's console keyboard layout with busybox `loadkmap`; one line saying what happened.
pub fn load_keymap(name: &str, stick_dir: &Path) -> Result<String, String> {
    let path = find_keymap(name, &keymap_dirs(stick_dir))?;
    let file = std::fs::File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("busybox");
    let status = std::process::Command::new(busybox)
        .arg("loadkmap")
        .stdin(file)
        .status()
        .map_err(|e| format!("running {busybox} loadkmap: {e}"))?;
    if status.success() {
        Ok(format!("keyboard layout {name} loaded from {}", path.display()))
    } else {
        Err(format!("{busybox} loadkmap < {} failed ({status})", path.display()))
    }
}

/// Arguments of `lapterop-agent flow`.
#[derive(Debug, clap::Args)]
pub struct FlowArgs {
    /// The stick's `lapterop/` directory (site.toml, station.key, images/, outbox/, logs/).
    #[arg(long, value_name = "DIR")]
    pub stick: PathBuf,
    /// Only these disks instead of every internal one (repeatable; loop devices allowed, for tests).
    #[arg(long, value_name = "DEVICE")]
    pub only: Vec<String>,
    /// The trusted OS image key's public half (default: the one baked into the live image). A key file on
    /// the stick is never trusted.
    #[arg(long, value_name = "FILE", default_value = crate::site::BAKED_IMAGE_KEY)]
    pub image_key: std::path::PathBuf,
}

/// `lapterop-agent flow`: the volunteer's screens on this terminal, once. Exit codes as `run` (0 erased,
/// installed and sent; 1 a lead must look; 3 only the upload waits), and 2 when nothing was done
/// (cancelled, stopped at pre-flight, bad config).
pub fn cli(args: &FlowArgs) -> ExitCode {
    let site = match Site::load(&args.stick) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lapterop-agent flow: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    // The first Ctrl-C stops a running wipe (its disks are certified not erased) or cancels at the next
    // question; a second one ends the program at once.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop));
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    let flow = Flow {
        site: &site,
        dir: &args.stick,
        stick_disk: None,
        only: &args.only,
        stop: &stop,
        remember: None,
        image_key: &args.image_key,
    };
    let mut keys = Keys::stdin();
    let mut out = io::stdout();
    match run(&flow, &mut keys, &mut out, Style::detect()) {
        Ok(FlowEnd {
            ending: Ending::Done(r),
            ..
        }) => job::code_of(&r),
        Ok(_) => ExitCode::from(2),
        Err(e) => {
            eprintln!("lapterop-agent flow: the screen failed: {e}");
            ExitCode::from(2)
        }
    }
}

/// The live image's interactive mode: loads the site's keyboard layout, runs the flow once on the
/// console (the operators are remembered for the boot under `/run`) and returns why the boot ends. Both
/// answers end in power off: "next laptop" means the stick moves on to another machine.
pub fn console(site: &Site, dir: &Path, stick_disk: Option<&str>, image_key: &Path) -> String {
    if let Some(map) = &site.ui.keymap {
        match load_keymap(map, dir) {
            Ok(line) => println!("lapterop: {line}"),
            Err(e) => println!("lapterop: {CODE_KEYMAP} {e}"),
        }
    }
    let stop = AtomicBool::new(false);
    let flow = Flow {
        site,
        dir,
        stick_disk,
        only: &[],
        stop: &stop,
        remember: Some(Path::new("/run/lapterop/operators.json")),
        image_key,
    };
    let mut keys = Keys::stdin();
    let mut out = io::stdout();
    match run(&flow, &mut keys, &mut out, crate::ui::console_style()) {
        Ok(FlowEnd {
            next: Next::NextMachine,
            ..
        }) => "done; take the stick out and put it into the next laptop".into(),
        Ok(_) => "done; the volunteer chose power off".into(),
        Err(e) => format!("the console failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_phases_map_to_screen_steps() {
        assert_eq!(step_of("pass 1/2 random"), Step::Overwrite);
        assert_eq!(step_of("verify full"), Step::Verify);
        assert_eq!(step_of("reading samples before the firmware erase"), Step::Verify);
        assert_eq!(
            step_of("firmware erase (the drive reports its own progress)"),
            Step::Firmware
        );
    }

    #[test]
    fn named_disks_drop_the_missing_disk_findings_only() {
        let all = vec![
            Finding::new(Code::P01, &[("controller", "x".into())]),
            Finding::new(Code::P06, &[]),
            Finding::new(Code::P08, &[]),
        ];
        let kept: Vec<Code> = relevant(all.clone(), true).iter().map(|f| f.code).collect();
        assert_eq!(kept, [Code::P06]);
        assert_eq!(relevant(all, false).len(), 3);
    }

    #[test]
    fn keymaps_are_found_by_magic_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("be.bmap"), b"not a keymap").unwrap();
        std::fs::write(b.join("be.bmap"), b"bkeymap\x01\x00").unwrap();
        let dirs = vec![a.clone(), b.clone()];
        assert_eq!(find_keymap("be", &dirs).unwrap(), b.join("be.bmap"));
        let e = find_keymap("us", &dirs).unwrap_err();
        assert!(e.contains("us.bmap") && e.contains("dumpkmap"), "{e}");
        std::fs::remove_file(b.join("be.bmap")).unwrap();
        assert!(find_keymap("be", &dirs).unwrap_err().contains("not a busybox keymap"));
    }
}
