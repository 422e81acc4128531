//! The screens as text: each function takes plain data and returns what the volunteer sees.
//!
//! Lines are at most [`WIDTH`] columns (an 80-column console with a margin); long texts wrap under
//! their label. Every screen ends with the language hint so the switch key is always visible.

use lapterop_certificate::model::{OutcomeStatus, VerdictStatus};

use super::{human_size, Colour, Exclusion, Health, Method, PlanDisk, Style};
use crate::audit::Audit;
use crate::i18n::{Key, Lang, Word};
use crate::preflight::{self, Finding, Severity};

/// Width of the text on screen.
pub const WIDTH: usize = 78;

/// Shown for a disk that is not erased.
pub const CODE_NOT_ERASED: &str = "LAP-R01";
/// Shown for a disk erased with exceptions.
pub const CODE_EXCEPTIONS: &str = "LAP-R02";
/// Shown when the install failed.
pub const CODE_INSTALL_FAILED: &str = "LAP-I01";
/// Shown when the certificate waits on the stick for a network.
pub const CODE_UPLOAD_WAITING: &str = "LAP-N01";
/// Shown when the server refused the certificate.
pub const CODE_UPLOAD_REFUSED: &str = "LAP-N02";

/// `text` wrapped to `width` columns; continuation lines start with `indent` spaces.
pub fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut col = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if col > indent && col + 1 + len > width {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
        } else if col > 0 && !out.ends_with(' ') {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += len;
    }
    out
}

fn title(out: &mut String, style: Style, text: &str) {
    out.push_str(&style.fg(Colour::Cyan, text));
    out.push('\n');
    out.push_str(&"=".repeat(text.chars().count()));
    out.push('\n');
}

fn footer(out: &mut String, lang: Lang) {
    out.push('\n');
    // The network at every stage, as the live image's link lifecycle sees it (nothing elsewhere).
    if let Some(line) = crate::network::summary().line(lang) {
        out.push_str(&wrap(&line, WIDTH, 4));
        out.push('\n');
    }
    out.push_str(lang.t(Key::SwitchHint));
    out.push('\n');
}

/// `prefix` padded to `indent` columns, then `text` wrapped to [`WIDTH`] with continuation lines under
/// the text.
pub fn hang(prefix: &str, text: &str, indent: usize) -> String {
    let used = prefix.chars().count();
    let start = if used < indent {
        format!("{prefix}{}", " ".repeat(indent - used))
    } else {
        format!("{prefix} ")
    };
    let first = start.chars().count();
    let body = wrap(text, WIDTH.saturating_sub(indent).max(20), 0);
    let mut out = String::new();
    for (i, line) in body.lines().enumerate() {
        if i == 0 {
            out.push_str(&start);
        } else {
            out.push('\n');
            out.push_str(&" ".repeat(indent.min(first)));
        }
        out.push_str(line);
    }
    out
}

/// `label` padded to a column, then the value wrapped under it.
fn field(out: &mut String, label: &str, value: &str) {
    out.push_str(&hang(label, value, 16));
    out.push('\n');
}

/// The pre-flight screen.
pub fn preflight(lang: Lang, style: Style, findings: &[Finding]) -> String {
    let mut out = String::new();
    title(&mut out, style, lang.t(Key::PreflightTitle));
    for f in findings {
        let (label, colour) = match f.code.severity() {
            Severity::Stop => (lang.t(Key::SeverityStop), Colour::Red),
            Severity::Warn => (lang.t(Key::SeverityWarn), Colour::Yellow),
        };
        let head = hang(
            &format!("{:<8} {}", format!("[{label}]"), f.code.as_str()),
            &f.found(lang),
            18,
        );
        out.push_str(&style.fg(colour, &head));
        out.push('\n');
        let todo = format!("{}: {}", lang.t(Key::WhatToDo), f.what_to_do(lang));
        out.push_str(&hang("", &todo, 18));
        out.push_str("\n\n");
    }
    if preflight::blocked(findings) {
        out.push_str(&style.fg(Colour::Red, &wrap(lang.t(Key::PreflightBlocked), WIDTH, 0)));
    } else {
        out.push_str(&style.fg(Colour::Green, lang.t(Key::PreflightAllClear)));
    }
    out.push('\n');
    footer(&mut out, lang);
    out
}

/// What the audit screen shows, taken from an [`Audit`] (or built by hand in the demo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditView {
    /// Vendor and product.
    pub machine: Option<String>,
    /// System serial number.
    pub serial: Option<String>,
    /// CPU model, cores, threads.
    pub cpu: Option<(String, Option<u32>, Option<u32>)>,
    /// Installed memory, slots used, slots.
    pub memory: (Option<u64>, Option<u32>, Option<u32>),
    /// Disks in brief (`nvme0n1 Samsung SSD 970 EVO 250.0 GB`).
    pub disks: Vec<String>,
    /// Battery health percent; `None` when there is no battery.
    pub battery_health: Option<u32>,
    /// Screen in brief (`14.0" 1920x1080`).
    pub screen: Option<String>,
    /// Network adapters: wireless or not, driver.
    pub network: Vec<(bool, Option<String>)>,
    /// How many things could not be read.
    pub gaps: usize,
    /// The verdict and the parts needed (audit policy names: `ram`, `disk`, ...).
    pub verdict: (VerdictStatus, Vec<String>),
}

impl AuditView {
    /// The view of a full audit.
    pub fn from_audit(audit: &Audit) -> Self {
        let summary = crate::audit::summary(audit);
        let sys = audit.system.clone().unwrap_or_default();
        let machine = [sys.vendor, sys.product]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            machine: (!machine.is_empty()).then_some(machine),
            serial: sys.serial,
            cpu: summary.cpu_model.map(|m| (m, summary.cpu_cores, summary.cpu_threads)),
            memory: (summary.memory_bytes, summary.memory_slots_used, summary.memory_slots),
            disks: audit
                .disks
                .iter()
                .flatten()
                .map(|d| {
                    let model = d.model.clone().unwrap_or_default();
                    format!("{} {model} {}", d.name, human_size(d.size_bytes))
                })
                .collect(),
            battery_health: summary.battery_health_percent,
            screen: summary.screen,
            network: audit
                .network
                .iter()
                .map(|n| (n.kind == "wireless", n.driver.clone()))
                .collect(),
            gaps: audit.gaps.len(),
            verdict: (audit.verdict.status, audit.verdict.needs.clone()),
        }
    }
}

/// The audit summary and the verdict on one screen.
pub fn audit(lang: Lang, style: Style, view: &AuditView) -> String {
    let mut out = String::new();
    let unknown = lang.t(Word::Unknown);
    title(&mut out, style, lang.t(Key::AuditTitle));
    field(
        &mut out,
        lang.t(Key::AuditMachine),
        view.machine.as_deref().unwrap_or(unknown),
    );
    field(
        &mut out,
        lang.t(Key::AuditSerial),
        view.serial.as_deref().unwrap_or(unknown),
    );
    let cpu = match &view.cpu {
        Some((model, Some(c), Some(t))) => format!("{model} ({c}C/{t}T)"),
        Some((model, _, _)) => model.clone(),
        None => unknown.to_string(),
    };
    field(&mut out, lang.t(Key::AuditCpu), &cpu);
    let mut memory = view
        .memory
        .0
        .map_or_else(|| unknown.to_string(), lapterop_words::memory);
    if let (Some(used), Some(slots)) = (view.memory.1, view.memory.2) {
        let (used, slots) = (used.to_string(), slots.to_string());
        memory = format!(
            "{memory}, {}",
            lang.fill(Key::AuditSlots, &[("used", &used), ("slots", &slots)])
        );
    }
    field(&mut out, lang.t(Key::AuditMemory), &memory);
    let disks = if view.disks.is_empty() {
        lang.t(Key::AuditNone).to_string()
    } else {
        view.disks.join("; ")
    };
    field(&mut out, lang.t(Key::AuditDisks), &disks);
    let battery = match view.battery_health {
        Some(p) => lang.fill(Key::AuditBatteryHealth, &[("percent", &p.to_string())]),
        None => lang.t(Key::AuditNoBattery).to_string(),
    };
    field(&mut out, lang.t(Key::AuditBattery), &battery);
    field(
        &mut out,
        lang.t(Key::AuditScreen),
        view.screen.as_deref().unwrap_or(unknown),
    );
    let network: Vec<String> = view
        .network
        .iter()
        .map(|(wireless, driver)| {
            let kind = lang.t(if *wireless { Key::NetWireless } else { Key::NetWired });
            driver
                .as_ref()
                .map_or_else(|| kind.to_string(), |d| format!("{kind} ({d})"))
        })
        .collect();
    let network = if network.is_empty() {
        lang.t(Key::AuditNone).to_string()
    } else {
        network.join(", ")
    };
    field(&mut out, lang.t(Key::AuditNetwork), &network);
    if view.gaps > 0 {
        field(&mut out, lang.t(Key::AuditGaps), &view.gaps.to_string());
    }
    out.push('\n');
    let parts = Word::parts(lang, &view.verdict.1);
    let (verdict, colour) = match view.verdict.0 {
        VerdictStatus::Ready => (lang.t(Word::Ready).to_string(), Colour::Green),
        VerdictStatus::NeedsParts => (lang.fill(Word::NeedsParts, &[("parts", &parts)]), Colour::Yellow),
        VerdictStatus::PartsOnly => (lang.t(Word::PartsOnly).to_string(), Colour::Red),
    };
    field(&mut out, lang.t(Key::AuditVerdict), &style.fg(colour, &verdict));
    footer(&mut out, lang);
    out
}

fn health_text(lang: Lang, health: &Health) -> String {
    match health {
        Health::Good => lang.t(Key::HealthGood).to_string(),
        Health::Worn(d) => lang.fill(Key::HealthWorn, &[("detail", d)]),
        Health::Failing(d) => lang.fill(Key::HealthFailing, &[("detail", d)]),
        Health::Unknown => lang.t(Word::Unknown).to_string(),
    }
}

/// The plan: each disk to erase with its identity, health and method; excluded disks (the boot stick)
/// listed apart and marked as not touched.
pub fn plan(lang: Lang, style: Style, disks: &[PlanDisk]) -> String {
    let mut out = String::new();
    title(&mut out, style, lang.t(Key::PlanTitle));
    let unknown = lang.t(Word::Unknown);
    let targets: Vec<&PlanDisk> = disks.iter().filter(|d| d.target()).collect();
    if targets.is_empty() {
        out.push_str(&style.fg(Colour::Yellow, lang.t(Key::PlanNothing)));
        out.push('\n');
    }
    for (n, d) in targets.iter().enumerate() {
        let head = format!("{}. {}  {}", n + 1, d.name, human_size(d.size_bytes));
        out.push_str(&style.fg(Colour::Red, &head));
        out.push('\n');
        field(
            &mut out,
            &format!("   {}", lang.t(Key::PlanModel)),
            d.model.as_deref().unwrap_or(unknown),
        );
        field(
            &mut out,
            &format!("   {}", lang.t(Key::PlanSerial)),
            d.serial.as_deref().unwrap_or(unknown),
        );
        field(
            &mut out,
            &format!("   {}", lang.t(Key::PlanHealth)),
            &health_text(lang, &d.health),
        );
        let method = match &d.method {
            Some(Method::FirmwareThenOverwrite(fw)) => lang.fill(Key::MethodFirmwareThenOverwrite, &[("firmware", fw)]),
            Some(Method::Overwrite) | None => lang.t(Key::MethodOverwrite).to_string(),
        };
        field(&mut out, &format!("   {}", lang.t(Key::PlanMethod)), &method);
        let mut notes = Vec::new();
        if d.transport == lapterop_certificate::model::Transport::Usb {
            notes.push(lang.t(Key::PlanUsbBridge));
        }
        if d.frozen {
            notes.push(lang.t(Key::PlanFrozen));
        }
        if !notes.is_empty() {
            field(
                &mut out,
                &format!("   {}", lang.t(Key::SeverityWarn)),
                &notes.join("; "),
            );
        }
    }
    for d in disks.iter().filter(|d| !d.target()) {
        let why = match d.excluded {
            Some(Exclusion::BootStick) => lang.t(Key::PlanBootStick),
            Some(Exclusion::InUse) => lang.t(Key::PlanInUse),
            Some(Exclusion::External) => lang.t(Key::PlanExternal),
            Some(Exclusion::NotChosen) => lang.t(Key::PlanNotChosen),
            Some(Exclusion::ReadOnly) | None => lang.t(Key::PlanReadOnly),
        };
        let label = format!("[{}]", lang.t(Word::NotTouched));
        let line = format!(
            "{} {}",
            d.name,
            hang(d.model.as_deref().unwrap_or(unknown), &human_size(d.size_bytes), 0)
        );
        out.push('\n');
        out.push_str(&style.fg(Colour::Green, &hang(&label, &line, label.chars().count() + 1)));
        out.push('\n');
        out.push_str(&style.fg(Colour::Green, &hang("", why, label.chars().count() + 1)));
        out.push('\n');
    }
    footer(&mut out, lang);
    out
}

/// One disk's result, as the wipe layer reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskResult {
    /// Kernel name.
    pub name: String,
    /// Model.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// The certificate's outcome for the disk.
    pub outcome: OutcomeStatus,
    /// Why (for exceptions and failures), one line each, as the wipe layer words them.
    pub reasons: Vec<String>,
    /// What ran on the disk, as its certificate records it; `None` shows no method line.
    pub method: Option<Ran>,
}

/// The erasure that really ran on a disk, from its certificate: after a fallback the volunteer sees
/// the method that completed, not the one the plan screen announced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ran {
    /// The firmware purge that completed (its plan-screen name).
    pub purge: Option<String>,
    /// The firmware purges tried before it that did not complete, in order.
    pub failed: Vec<String>,
    /// An overwrite completed.
    pub overwrite: bool,
    /// How the result was read back: every byte (`Some(true)`), samples (`Some(false)`), or not at all.
    pub full_check: Option<bool>,
}

impl Ran {
    /// The method line's text.
    pub fn text(&self, lang: Lang) -> String {
        let failed = self.failed.join(", ");
        let purge = match (&self.purge, failed.is_empty()) {
            (Some(p), true) => Some(p.clone()),
            (Some(p), false) => Some(lang.fill(Key::MethodAfterFailed, &[("purge", p), ("failed", &failed)])),
            (None, _) => None,
        };
        let check = match self.full_check {
            Some(true) => Key::MethodEveryByte,
            Some(false) => Key::MethodSampled,
            None => Key::MethodNotChecked,
        };
        let mut text = match (purge, self.overwrite) {
            (Some(p), true) => lang.fill(Key::MethodPurgeThenOverwrite, &[("purge", &p)]),
            (Some(p), false) => p,
            (None, true) => lang.t(Key::MethodOverwritten).to_string(),
            (None, false) => lang.t(Key::MethodNothingCompleted).to_string(),
        };
        if self.purge.is_some() || self.overwrite {
            text.push_str(", ");
            text.push_str(lang.t(check));
        }
        if self.purge.is_none() && !failed.is_empty() {
            text.push_str(" (");
            text.push_str(&lang.fill(Key::MethodFailedOnly, &[("failed", &failed)]));
            text.push(')');
        }
        text
    }
}

/// The install result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallState {
    /// Not asked for.
    Skipped,
    /// Installed and verified: image name and version.
    Installed(String),
    /// Failed, with the reason.
    Failed(String),
}

/// Where the certificate is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadState {
    /// Uploaded; the receipt is beside it.
    Uploaded,
    /// On the stick, waiting for a network.
    Waiting,
    /// Refused by the server, with its reason.
    Refused(String),
}

/// `word` letter-spaced in a framed banner, wide enough to read across the room.
/// How tall a result banner is: the full five lines, three without the blank ones, or one line when
/// the screen is small (an 80x25 text console with several disks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Banner {
    Full,
    Compact,
    Line,
}

fn banner(style: Style, colour: Colour, word: &str, size: Banner) -> String {
    let spaced = word
        .split_whitespace()
        .map(|w| w.chars().map(String::from).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("   ");
    let inner = spaced.chars().count().max(20) + 6;
    let bar = "#".repeat(inner + 2);
    let blank = format!("#{}#", " ".repeat(inner));
    let text = format!("#   {spaced:<w$}   #", w = inner - 6);
    let lines = match size {
        Banner::Full => vec![bar.clone(), blank.clone(), text, blank, bar],
        Banner::Compact => vec![bar.clone(), text, bar],
        Banner::Line => vec![text],
    };
    lines
        .iter()
        .map(|l| style.banner(colour, l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The result screen: each disk in large words and colour, with the reason and what to do; then the
/// install result, the upload state and (when given) the donor page's QR code. On a screen of `rows`
/// lines the banners shrink until the whole result (without the QR code, which a phone reads from a
/// scrolled screen too) fits, so the first disk's outcome is never scrolled away on an 80x25 text
/// console; `None` (a serial line, a pipe) draws them full size.
pub fn result(
    lang: Lang,
    style: Style,
    disks: &[DiskResult],
    install: &InstallState,
    upload: &UploadState,
    qr: Option<(&str, &str)>,
    rows: Option<usize>,
) -> String {
    let fits = |size: Banner| {
        // The prompt line after the screen counts too.
        rows.is_none_or(|rows| {
            result_with(lang, style, disks, install, upload, None, size)
                .lines()
                .count()
                < rows
        })
    };
    let size = [Banner::Full, Banner::Compact]
        .into_iter()
        .find(|s| fits(*s))
        .unwrap_or(Banner::Line);
    result_with(lang, style, disks, install, upload, qr, size)
}

fn result_with(
    lang: Lang,
    style: Style,
    disks: &[DiskResult],
    install: &InstallState,
    upload: &UploadState,
    qr: Option<(&str, &str)>,
    size: Banner,
) -> String {
    let mut out = String::new();
    title(&mut out, style, lang.t(Key::ResultTitle));
    let unknown = lang.t(Word::Unknown);
    for d in disks {
        let (word, colour, todo, code) = match d.outcome {
            OutcomeStatus::Erased => (Word::Erased, Colour::Green, Key::ErasedDo, None),
            OutcomeStatus::ErasedWithExceptions => (
                Word::ErasedWithExceptions,
                Colour::Yellow,
                Key::ExceptionsDo,
                Some(CODE_EXCEPTIONS),
            ),
            OutcomeStatus::NotErased => (Word::NotErased, Colour::Red, Key::NotErasedDo, Some(CODE_NOT_ERASED)),
        };
        let ident = format!(
            "{} {}  {}  {}",
            lang.t(Key::ResultDisk),
            d.name,
            d.model.as_deref().unwrap_or(unknown),
            d.serial.as_deref().unwrap_or(unknown)
        );
        out.push_str(&style.bold(&ident));
        out.push('\n');
        // The shared outcome word in capitals, to be read across the room.
        out.push_str(&banner(style, colour, &lang.t(word).to_uppercase(), size));
        out.push('\n');
        if let Some(code) = code {
            out.push_str(&format!("{} {code}\n", lang.t(Key::Code)));
        }
        if let Some(ran) = &d.method {
            out.push_str(&wrap(
                &format!("{}: {}", lang.t(Key::PlanMethod), ran.text(lang)),
                WIDTH,
                4,
            ));
            out.push('\n');
        }
        for reason in &d.reasons {
            out.push_str(&wrap(&format!("{}: {reason}", lang.t(Key::Reason)), WIDTH, 4));
            out.push('\n');
        }
        out.push_str(&wrap(&format!("{}: {}", lang.t(Key::WhatToDo), lang.t(todo)), WIDTH, 4));
        out.push_str(if size == Banner::Full { "\n\n" } else { "\n" });
    }
    let (install, colour) = match install {
        InstallState::Skipped => (lang.t(Key::InstallSkipped).to_string(), None),
        InstallState::Installed(image) => (lang.fill(Key::InstallOk, &[("image", image)]), Some(Colour::Green)),
        InstallState::Failed(reason) => (
            format!(
                "{CODE_INSTALL_FAILED} {}",
                lang.fill(Key::InstallFailed, &[("reason", reason)])
            ),
            Some(Colour::Red),
        ),
    };
    let (upload, upload_colour) = match upload {
        UploadState::Uploaded => (lang.t(Key::UploadDone).to_string(), Colour::Green),
        UploadState::Waiting => (
            format!("{CODE_UPLOAD_WAITING} {}", lang.t(Key::UploadWaiting)),
            Colour::Yellow,
        ),
        UploadState::Refused(reason) => (
            format!(
                "{CODE_UPLOAD_REFUSED} {}",
                lang.fill(Key::UploadRefused, &[("reason", reason)])
            ),
            Colour::Red,
        ),
    };
    for (text, colour) in [(install, colour), (upload, Some(upload_colour))] {
        for line in wrap(&text, WIDTH, 4).lines() {
            out.push_str(&colour.map_or_else(|| line.to_string(), |c| style.fg(c, line)));
            out.push('\n');
        }
    }
    if let Some((url, drawing)) = qr {
        out.push('\n');
        out.push_str(lang.t(Key::QrCaption));
        out.push('\n');
        out.push_str(drawing);
        out.push_str(url);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(lang.t(Key::NextMachine));
    out.push('\n');
    footer(&mut out, lang);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_lines_within_width_and_indents_continuations() {
        let text = "a ".repeat(100);
        let wrapped = wrap(&text, 20, 4);
        for (i, line) in wrapped.lines().enumerate() {
            assert!(line.chars().count() <= 20, "{line:?}");
            if i > 0 {
                assert!(line.starts_with("    a"), "{line:?}");
            }
        }
        assert_eq!(wrapped.split_whitespace().count(), 100);
    }

    #[test]
    fn banner_is_framed_and_spaced() {
        let b = banner(Style::PLAIN, Colour::Red, "NIET GEWIST", Banner::Full);
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[2].contains("N I E T   G E W I S T"), "{b}");
        assert!(lines.iter().all(|l| l.chars().count() == lines[0].chars().count()));
    }

    #[test]
    fn the_result_of_several_disks_fits_an_80x25_console() {
        let disk = |name: &str, outcome, reasons: Vec<String>| DiskResult {
            name: name.into(),
            model: Some("SAMSUNG MZVLB256".into()),
            serial: Some("S4DXNF0M123456".into()),
            outcome,
            reasons,
            method: Some(Ran {
                purge: Some("NVMe Format crypto".into()),
                failed: vec!["NVMe Sanitize crypto".into()],
                overwrite: true,
                full_check: Some(true),
            }),
        };
        let disks = vec![
            disk("nvme0n1", OutcomeStatus::Erased, vec![]),
            disk(
                "sda",
                OutcomeStatus::NotErased,
                vec!["1 sectors could not be written".into()],
            ),
        ];
        let screen = |rows| {
            result(
                Lang::Nl,
                Style::PLAIN,
                &disks,
                &InstallState::Skipped,
                &UploadState::Waiting,
                None,
                rows,
            )
        };
        let full = screen(None);
        assert!(
            full.lines().count() >= 25,
            "the full screen is taller than a text console:\n{full}"
        );
        let fitted = screen(Some(25));
        assert!(fitted.lines().count() < 25, "{fitted}");
        for needle in [
            "Schijf nvme0n1",
            "#   G E W I S T",
            "Schijf sda",
            "N I E T   G E W I S T",
            "LAP-R01",
        ] {
            assert!(fitted.contains(needle), "{needle} missing:\n{fitted}");
        }
        // A tall screen keeps the full banners.
        assert_eq!(screen(Some(60)), full);
    }
}
