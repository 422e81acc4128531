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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapterop_certificate::model::{InstallRecord, InstallStatus, StepKind, StepOutcome, VerifyMode};
use lapterop_certificate::{DiskRecord, OutcomeStatus};

use crate::i18n::{Key, Lang, Word};
use crate::job::{self, Ended, Event, Go, JobResult, StopCode};
use crate::outbox::Sent;
use crate::preflight::Finding;
use crate::site::Site;
use crate::sitelog::SiteLog;
use crate::ui::confirm::{self, Decision, Next};
use crate::ui::input::{Input, Keys};
use crate::ui::progress::{Progress, Step, TaskId};
use crate::ui::screens::{self, AuditView, DiskResult, InstallState, Ran, UploadState};
use crate::ui::{operator, qr, Colour, PlanDisk, Style};

/// Code shown when the station key cannot be used (nothing was done).
pub const CODE_STATION: &str = "LAP-S01";
/// Code shown when the stick cannot be written (outbox or log).
pub const CODE_STICK: &str = "LAP-S02";
/// Code shown when the job stopped outright (disks not listed, the wipe could not run).
pub const CODE_JOB: &str = "LAP-S03";
/// Code shown on the console when the keyboard layout could not be loaded.
pub const CODE_KEYMAP: &str = "LAP-K01";

/// What one interactive run is given: the job, and where the operators are remembered for the rest of
/// the boot (a file on a tmpfs; `None` asks every run).
#[derive(Debug)]
pub struct Flow<'a> {
    /// The job.
    pub job: job::Job<'a>,
    /// Where the operators are remembered.
    pub remember: Option<&'a Path>,
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

/// The volunteer at the laptop: the pipeline's questions as screens, its events as lines in the
/// laptop's log on the stick and as progress on the screen.
struct Volunteer<'s, 'f> {
    s: Screen<'s>,
    flow: &'f Flow<'f>,
    log: Log,
    /// The log on the stick could not be opened: the job stops before the first question.
    log_failed: Option<String>,
    bars: Option<Arc<Bars>>,
    ticker: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    install_task: Arc<Mutex<Option<TaskId>>>,
}

impl job::Frontend for Volunteer<'_, '_> {
    fn people(&mut self) -> io::Result<Option<job::People>> {
        // Who does the job: remembered for the boot, from the config, or asked.
        if let Some(ops) = self.flow.remember.and_then(operator::Operators::recall) {
            return Ok(Some(ops.people()));
        }
        let site = self.flow.job.site;
        Ok(
            operator::ask(self.s.input, self.s.out, &mut self.s.lang, self.s.style, &site.ui)?.map(|ops| {
                if let Some(path) = self.flow.remember {
                    let _ = ops.remember(path);
                }
                ops.people()
            }),
        )
    }

    fn preflight(&mut self, findings: &[Finding]) -> io::Result<Go> {
        if let Some(e) = self.log_failed.take() {
            return Ok(Go::Stop(StopCode::Stick, e));
        }
        let style = self.s.style;
        let shown = confirm::show_and_wait(self.s.input, self.s.out, &mut self.s.lang, &|l: Lang| {
            screens::preflight(l, style, findings)
        })?;
        Ok(if shown { Go::On } else { Go::Left })
    }

    fn audit(&mut self, audited: &job::Audited) -> io::Result<Go> {
        let style = self.s.style;
        let view = AuditView::from_audit(&audited.audit);
        let shown = confirm::show_and_wait(self.s.input, self.s.out, &mut self.s.lang, &|l: Lang| {
            screens::audit(l, style, &view)
        })?;
        Ok(if shown { Go::On } else { Go::Left })
    }

    fn confirm(&mut self, plan: &[PlanDisk], claimed: usize) -> io::Result<Decision> {
        let (site, style) = (self.flow.job.site, self.s.style);
        match site.ui.unattended_countdown_secs {
            Some(secs) if claimed > 0 => {
                write!(self.s.out, "{}", screens::plan(self.s.lang, style, plan))?;
                confirm::countdown(self.s.input, self.s.out, self.s.lang, style, secs)
            }
            _ => confirm::confirm_plan(
                self.s.input,
                self.s.out,
                &mut self.s.lang,
                style,
                plan,
                site.ui.confirm_word.as_deref(),
            ),
        }
    }

    fn psid(&mut self, disk: &crate::disk::Disk, _why: &str) -> io::Result<Option<crate::opal::Psid>> {
        let model = disk.model.as_deref().unwrap_or("?");
        let psid = crate::ui::psid::ask_psid(
            self.s.input,
            self.s.out,
            &mut self.s.lang,
            self.s.style,
            &disk.name,
            model,
        )?;
        // The log keeps whether a PSID was typed, never the PSID.
        self.log.line(
            None,
            &format!(
                "{}: locked self-encrypting drive; PSID {}",
                disk.name,
                if psid.is_some() {
                    "typed (not recorded)"
                } else {
                    "not given"
                }
            ),
        );
        Ok(psid)
    }

    fn event(&mut self, event: Event<'_>) {
        // The screen is best effort here: a terminal that is gone shows at the next question.
        let _ = self.show(event);
    }

    fn disk_progress(&mut self, name: &str) -> Box<dyn crate::wipe::Progress + Send> {
        let bars = Arc::clone(
            self.bars
                .get_or_insert_with(|| Arc::new(Bars::new(self.s.lang, self.s.style))),
        );
        Box::new(bars.disk(name))
    }

    fn install_progress(&mut self) -> Box<dyn Fn(lapterop_osimage::install::Progress) + Send + Sync> {
        let bars = Arc::clone(
            self.bars
                .get_or_insert_with(|| Arc::new(Bars::new(self.s.lang, self.s.style))),
        );
        let task = Arc::clone(&self.install_task);
        Box::new(move |p: lapterop_osimage::install::Progress| {
            let Ok(mut ui) = bars.ui.lock() else { return };
            let Ok(mut task) = task.lock() else { return };
            let id = *task.get_or_insert_with(|| ui.start("image", Step::Install, Some(p.total)));
            ui.set(id, p.written);
        })
    }
}

impl Volunteer<'_, '_> {
    /// A stage's heading on the screen.
    fn heading(&mut self, key: Key) -> io::Result<()> {
        writeln!(self.s.out, "\n{}", self.s.style.fg(Colour::Cyan, self.s.lang.t(key)))?;
        self.s.out.flush()
    }

    /// What the volunteer sees of an event, and what the log on the stick keeps of it.
    fn show(&mut self, event: Event<'_>) -> io::Result<()> {
        let (site, style) = (self.flow.job.site, self.s.style);
        match event {
            Event::Audited { audited, people } => {
                match SiteLog::open(&self.flow.job.dir.join("logs"), &audited.host.device_id) {
                    Ok(l) => self.log = Log(Some(l)),
                    Err(e) => {
                        println!("lapterop: {CODE_STICK} the log on the stick: {e}");
                        self.log_failed = Some(format!("the log on the stick: {e}"));
                    }
                }
                let s = &audited.host.system;
                self.log.line(
                    None,
                    &format!(
                        "interactive flow by {}{}; laptop {} {} serial {}",
                        people.0.name,
                        people
                            .1
                            .as_ref()
                            .map(|v| format!(", checked by {}", v.name))
                            .unwrap_or_default(),
                        s.vendor.as_deref().unwrap_or("?"),
                        s.product.as_deref().unwrap_or("?"),
                        s.serial.as_deref().unwrap_or("?"),
                    ),
                );
            }
            Event::Finding(f) => self.log.line(Some(f.code.as_str()), &f.found(Lang::En)),
            Event::Wiping(c) => self.log.line(
                None,
                &format!(
                    "confirmed: wiping {} ({} bytes, model {}, serial {})",
                    c.disk.name,
                    c.capacity_bytes,
                    c.disk.model.as_deref().unwrap_or("?"),
                    c.disk.serial.as_deref().unwrap_or("?")
                ),
            ),
            Event::WipeStarted => {
                self.heading(Key::ProgressTitle)?;
                let bars = Arc::clone(self.bars.get_or_insert_with(|| Arc::new(Bars::new(self.s.lang, style))));
                self.ticker = Some(bars.tick());
            }
            Event::WipeFinished => {
                if let Some((done, handle)) = self.ticker.take() {
                    done.store(true, Ordering::Relaxed);
                    let _ = handle.join();
                }
            }
            Event::DiskOutcome(r) => self.log.line(
                outcome_code(r.outcome.status),
                &format!("{}: {}", r.device, crate::wipe::outcome_words(&r.outcome)),
            ),
            Event::InstallStarting { .. } => self.heading(Key::InstallingTitle)?,
            Event::InstallDone(record) => {
                let ok = install_ok(record);
                if let (Some(bars), Ok(Some(id))) = (&self.bars, self.install_task.lock().map(|t| *t)) {
                    if let Ok(mut ui) = bars.ui.lock() {
                        ui.finish(id, if ok { "OK" } else { "X" });
                    }
                }
                if let Some(line) = job::install_line(site, record) {
                    self.log.line(
                        (!ok).then_some(screens::CODE_INSTALL_FAILED),
                        line.trim_start_matches("lapterop: ")
                            .trim_start_matches(screens::CODE_INSTALL_FAILED)
                            .trim_start(),
                    );
                }
            }
            Event::CertificateStored { certificate, .. } => {
                self.log
                    .line(None, &format!("certificate {} saved in the outbox", certificate.id));
                writeln!(
                    self.s.out,
                    "\n{}",
                    self.s.lang.fill(Key::CertificateSaved, &[("id", &certificate.id)])
                )?;
                self.s.out.flush()?;
            }
            Event::UploadSending => {
                writeln!(self.s.out, "{}", self.s.lang.t(Key::UploadSending))?;
                self.s.out.flush()?;
            }
            Event::UploadDone(upload) => match upload_state(upload) {
                UploadState::Uploaded => self.log.line(None, "certificate sent; receipt stored beside it"),
                UploadState::Waiting => self
                    .log
                    .line(Some(screens::CODE_UPLOAD_WAITING), "certificate waits in the outbox"),
                UploadState::Refused(why) => self.log.line(Some(screens::CODE_UPLOAD_REFUSED), &why),
            },
            // The rest is for the console of an unattended run.
            _ => {}
        }
        Ok(())
    }
}

/// What the result screen says about the upload.
fn upload_state(upload: Option<&Sent>) -> UploadState {
    match upload {
        // Without a server the certificate stays on the stick for a lead to send by hand.
        None => UploadState::Waiting,
        Some(Sent::Uploaded | Sent::AlreadyDone) => UploadState::Uploaded,
        Some(Sent::Failed(e)) if e.retryable() => UploadState::Waiting,
        Some(Sent::Failed(e)) => UploadState::Refused(e.to_string()),
    }
}

/// Runs the flow once. Errors only when the screen itself fails (the terminal is gone); every problem
/// of the job is shown with its code and ends the run with [`Ending::Blocked`] or in the certificate.
pub fn run(flow: &Flow<'_>, input: &mut dyn Input, out: &mut dyn Write, style: Style) -> io::Result<FlowEnd> {
    let site = flow.job.site;
    let mut v = Volunteer {
        s: Screen {
            input,
            out,
            style,
            lang: site.ui.language,
        },
        flow,
        log: Log(None),
        log_failed: None,
        bars: None,
        ticker: None,
        install_task: Arc::new(Mutex::new(None)),
    };
    let ended = job::run(&flow.job, &job::System, &mut v)?;
    let end = |ending, next| Ok(FlowEnd { ending, next });
    let Volunteer { mut s, mut log, .. } = v;
    let result = match ended {
        Ended::Done(r) => r,
        Ended::Stopped { code, detail } => {
            println!("lapterop: {} {detail}", code.code());
            return s.stop(&mut log, code.code(), &detail);
        }
        Ended::Preflight(findings) => {
            log.line(None, "stopped at pre-flight; nothing was written");
            let next =
                s.next(&|l: Lang| format!("{}{}\n", screens::preflight(l, style, &findings), l.t(Key::NextMachine)))?;
            return end(Ending::Blocked, next);
        }
        Ended::Cancelled => {
            log.line(None, "cancelled at the plan; nothing was written");
            let next = s.next(&|l: Lang| format!("\n{}\n{}\n", l.t(Key::Cancelled), l.t(Key::NextMachine)))?;
            return end(Ending::Cancelled, next);
        }
        Ended::Closed => return end(Ending::Closed, Next::PowerOff),
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
    // The result screen redraws itself when the network changes, and shows the receipt and the donor
    // page's QR code as soon as the courier (or a lease) got the certificate sent.
    let outbox_dir = flow.job.dir.join("outbox");
    let id = result.certificate.id.clone();
    let shown = std::cell::RefCell::new(Shown::new(
        upload_state(result.upload.as_ref()),
        result.donor_url.as_deref(),
        style,
    ));
    let rows = crate::ui::terminal_rows();
    let render = |l: Lang| {
        let shown = shown.borrow();
        let qr = shown.drawing.as_ref().map(|(u, d)| (u.as_str(), d.as_str()));
        screens::result(l, style, &results, &install_state, &shown.upload, qr, rows)
    };
    let mut changed = || {
        let mut shown = shown.borrow_mut();
        let network = crate::network::summary();
        let mut redraw = network != shown.network;
        shown.network = network;
        if shown.upload == UploadState::Waiting && site.server.is_some() {
            let url = crate::outbox::Outbox::open(&outbox_dir)
                .ok()
                .and_then(|o| job::donor_url(&o, &id));
            if let Some(url) = url {
                *shown = Shown::new(UploadState::Uploaded, Some(&url), style);
                log.line(None, "certificate sent once the network came; receipt stored beside it");
                redraw = true;
            }
        }
        redraw
    };
    let next = confirm::ask_next_live(s.input, s.out, &mut s.lang, &render, &mut changed)?;
    log.line(
        None,
        match next {
            Next::NextMachine => "volunteer chose the next laptop",
            Next::PowerOff => "volunteer chose power off",
        },
    );
    end(Ending::Done(result), next)
}

/// What the result screen shows of the upload, and the network it was drawn with.
struct Shown {
    upload: UploadState,
    /// The donor page and its QR drawing.
    drawing: Option<(String, String)>,
    network: crate::network::Summary,
}

impl Shown {
    fn new(upload: UploadState, donor_url: Option<&str>, style: Style) -> Self {
        Self {
            upload,
            drawing: donor_url.and_then(|url| qr::render(url, style).ok().map(|d| (url.to_string(), d))),
            network: crate::network::summary(),
        }
    }
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
                method: Some(ran(r)),
            }
        })
        .collect()
}

/// What really ran on a disk, from its record: the firmware erase that completed, those that failed
/// before it, the overwrite and how it was read back.
fn ran(r: &DiskRecord) -> Ran {
    let mut ran = Ran::default();
    for s in &r.steps {
        match (job::plan::firmware_name(s.kind), s.outcome) {
            (Some(name), StepOutcome::Completed) => ran.purge = Some(name.to_string()),
            (Some(name), StepOutcome::Failed | StepOutcome::Interrupted) => ran.failed.push(name.to_string()),
            (None, StepOutcome::Completed) if s.kind == StepKind::Overwrite => ran.overwrite = true,
            _ => {}
        }
    }
    ran.full_check = r.verification.as_ref().map(|v| v.mode == VerifyMode::Full);
    ran
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

    /// Starts a thread that prints the elapsed time of steps that report no progress (plain lines; the
    /// bars tick by themselves) until the flag is set.
    fn tick(self: &Arc<Self>) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let done = Arc::new(AtomicBool::new(false));
        let (flag, bars) = (Arc::clone(&done), Arc::clone(self));
        let handle = std::thread::spawn(move || {
            // The network line of the screen before, said again whenever it changes during the wipe.
            let mut network = crate::network::summary();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                let now = crate::network::summary();
                let line = (now != network).then(|| now.line(bars.lang)).flatten();
                network = now;
                if let Ok(mut ui) = bars.ui.lock() {
                    if let Some(line) = &line {
                        ui.note(line);
                    }
                    ui.tick_at(Instant::now());
                }
            }
        });
        (done, handle)
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
        job: job::Job {
            site,
            dir,
            stick_disk,
            only: &[],
            stop: &stop,
            image_key,
        },
        remember: Some(Path::new("/run/lapterop/operators.json")),
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

    /// After a fallback the result screen names the erase that completed and the one that failed,
    /// and a sampled check is not called "every byte".
    #[test]
    fn the_result_names_the_method_that_really_ran() {
        let cert = lapterop_certificate::sample::erased_laptop("k".into());
        let mut r = cert
            .disks
            .iter()
            .find(|d| d.steps.iter().any(|s| s.kind.is_purge()))
            .expect("a sample disk with a firmware purge")
            .clone();
        let purge = r.steps.iter().position(|s| s.kind.is_purge()).unwrap();
        let mut failed = r.steps[purge].clone();
        failed.kind = StepKind::NvmeSanitizeCrypto;
        failed.outcome = StepOutcome::Failed;
        r.steps[purge].kind = StepKind::NvmeFormatCrypto;
        r.steps.insert(purge, failed);
        let line = |r: &DiskRecord, lang| ran(r).text(lang);
        assert_eq!(
            line(&r, Lang::En),
            "NVMe Format crypto (after NVMe Sanitize crypto failed), then overwritten, every byte checked"
        );
        assert_eq!(
            line(&r, Lang::Nl),
            "NVMe Format crypto (nadat NVMe Sanitize crypto mislukte), daarna overschreven, elke byte gecontroleerd"
        );
        r.steps.retain(|s| s.kind != StepKind::Overwrite);
        if let Some(v) = &mut r.verification {
            v.mode = VerifyMode::Sample;
        }
        assert_eq!(
            line(&r, Lang::En),
            "NVMe Format crypto (after NVMe Sanitize crypto failed), checked by samples"
        );
        r.steps.retain(|s| s.kind == StepKind::NvmeSanitizeCrypto);
        r.verification = None;
        assert_eq!(line(&r, Lang::En), "no erase completed (NVMe Sanitize crypto failed)");
    }

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
