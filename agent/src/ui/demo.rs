//! `lapterop-agent ui-demo`: each screen with sample data, so the screens can be looked at (and driven
//! from tmux in the tests) before the whole flow is wired. Interactive screens read standard input.
//! The last line is `DEMO-END <outcome>` so a driver knows the screen finished and how.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use lapterop_certificate::model::{OutcomeStatus, Transport, VerdictStatus};

use super::confirm::{self, Decision};
use super::input::Keys;
use super::progress::{Progress, Step};
use super::screens::{self, AuditView, DiskResult, InstallState, Ran, UploadState};
use super::{operator, qr, Exclusion, Health, Method, PlanDisk, Style, UiConfig};
use crate::i18n::Lang;
use crate::preflight::{Code, Finding};

/// The sample donor page.
pub const SAMPLE_URL: &str = "https://lapterop.example.org/d/0193a7c2-5b1e-7f00-8c2d-3e4f5a6b7c8d";

/// Arguments of `ui-demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Screen: preflight, audit, plan, confirm, countdown, operator, progress, result, result-failed, qr,
    /// or flow (operator, pre-flight, audit, plan and confirmation, progress, result with a failed disk).
    #[arg(long)]
    pub screen: String,
    /// Language: nl or en.
    #[arg(long, default_value = "nl")]
    pub lang: String,
    /// Without colour even on a terminal.
    #[arg(long)]
    pub plain: bool,
    /// Countdown length for the `countdown` screen, seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
}

/// Sample disks: an NVMe SSD, a worn SATA disk, and the boot stick.
pub fn sample_disks() -> Vec<PlanDisk> {
    let disk = |name: &str, model: &str, serial: &str, size: u64, transport| PlanDisk {
        name: name.into(),
        model: Some(model.into()),
        serial: Some(serial.into()),
        size_bytes: size,
        transport,
        rotational: false,
        removable: false,
        card: false,
        health: Health::Good,
        method: Some(Method::Overwrite),
        excluded: None,
        frozen: false,
    };
    let mut nvme = disk(
        "nvme0n1",
        "Samsung SSD 970 EVO Plus 250GB",
        "S4EUNX0N123456K",
        250_059_350_016,
        Transport::Nvme,
    );
    nvme.method = Some(Method::FirmwareThenOverwrite("NVMe Sanitize crypto".into()));
    let mut sata = disk("sda", "ST500LM030-2E717D", "WDEX7B3C", 500_107_862_016, Transport::Sata);
    sata.rotational = true;
    sata.health = Health::Worn("4 reallocated sectors".into());
    let mut stick = disk(
        "sdb",
        "SanDisk Ultra Fit",
        "4C530001230817",
        32_017_047_552,
        Transport::Usb,
    );
    stick.removable = true;
    stick.excluded = Some(Exclusion::BootStick);
    stick.method = None;
    vec![nvme, sata, stick]
}

/// Sample pre-flight findings: the VMD case and a waiting network.
pub fn sample_findings() -> Vec<Finding> {
    vec![
        Finding::new(
            Code::P01,
            &[("controller", "Intel VMD 8086:9a0b @ 0000:00:0e.0".to_string())],
        ),
        Finding::new(Code::P06, &[]),
    ]
}

/// A sample audit view.
pub fn sample_audit() -> AuditView {
    AuditView {
        machine: Some("LENOVO 20L5CTO1WW".into()),
        serial: Some("PF1ABCDE".into()),
        cpu: Some(("Intel(R) Core(TM) i5-8350U CPU @ 1.70GHz".into(), Some(4), Some(8))),
        memory: (Some(8 << 30), Some(1), Some(2)),
        disks: vec!["nvme0n1 Samsung SSD 970 EVO Plus 250GB 250.0 GB".into()],
        battery_health: Some(62),
        screen: Some("14.0\" 1920x1080".into()),
        network: vec![(false, Some("e1000e".into())), (true, Some("iwlwifi".into()))],
        gaps: 0,
        verdict: (VerdictStatus::NeedsParts, vec!["battery".into()]),
    }
}

/// Sample results: one disk erased, one not.
pub fn sample_results(failed: bool) -> Vec<DiskResult> {
    let mut out = vec![DiskResult {
        name: "nvme0n1".into(),
        model: Some("Samsung SSD 970 EVO Plus 250GB".into()),
        serial: Some("S4EUNX0N123456K".into()),
        outcome: OutcomeStatus::Erased,
        reasons: Vec::new(),
        method: Some(Ran {
            purge: Some("NVMe Sanitize crypto".into()),
            failed: Vec::new(),
            overwrite: true,
            full_check: Some(true),
        }),
    }];
    if failed {
        out.push(DiskResult {
            name: "sda".into(),
            model: Some("ST500LM030-2E717D".into()),
            serial: Some("WDEX7B3C".into()),
            outcome: OutcomeStatus::NotErased,
            reasons: vec!["write error at sector 81920 (I/O error)".into()],
            method: Some(Ran {
                purge: None,
                failed: Vec::new(),
                overwrite: false,
                full_check: None,
            }),
        });
    }
    out
}

/// Runs the demo of one screen.
pub fn run(args: &DemoArgs) -> ExitCode {
    let Some(mut lang) = Lang::parse(&args.lang) else {
        eprintln!("lapterop-agent ui-demo: unknown language {:?}; use nl or en", args.lang);
        return ExitCode::from(2);
    };
    let style = if args.plain { Style::PLAIN } else { Style::detect() };
    let mut out = io::stdout();
    let mut keys = Keys::stdin();
    let outcome = match args.screen.as_str() {
        "confirm" => match confirm::confirm_plan(&mut keys, &mut out, &mut lang, style, &sample_disks(), None) {
            Ok(Decision::Confirmed) => "DEMO-END confirmed".to_string(),
            Ok(Decision::Cancelled) => "DEMO-END cancelled".to_string(),
            Err(e) => format!("DEMO-END error {e}"),
        },
        "countdown" => match confirm::countdown(&mut keys, &mut out, lang, style, args.seconds) {
            Ok(Decision::Confirmed) => "DEMO-END confirmed".to_string(),
            Ok(Decision::Cancelled) => "DEMO-END cancelled".to_string(),
            Err(e) => format!("DEMO-END error {e}"),
        },
        "operator" => {
            let config = UiConfig {
                ask_verifier: true,
                ..UiConfig::default()
            };
            match operator::ask(&mut keys, &mut out, &mut lang, style, &config) {
                Ok(Some(ops)) => format!(
                    "DEMO-END operator={} verifier={}",
                    ops.operator,
                    ops.verifier.as_deref().unwrap_or("-")
                ),
                Ok(None) => "DEMO-END closed".to_string(),
                Err(e) => format!("DEMO-END error {e}"),
            }
        }
        "flow" => match demo_flow(&mut keys, &mut out, &mut lang, style) {
            Ok(end) => end,
            Err(e) => format!("DEMO-END error {e}"),
        },
        "progress" => {
            demo_progress(lang, style);
            "DEMO-END progress".to_string()
        }
        other => match render_static(other, lang, style) {
            Some(screen) => format!("{screen}DEMO-END shown"),
            None => {
                eprintln!("lapterop-agent ui-demo: unknown screen {other:?}; see --help");
                return ExitCode::from(2);
            }
        },
    };
    let _ = writeln!(out, "{outcome}");
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// A screen that needs no input (preflight, audit, plan, result, result-failed, qr) with sample data.
pub fn render_static(screen: &str, lang: Lang, style: Style) -> Option<String> {
    Some(match screen {
        "preflight" => screens::preflight(lang, style, &sample_findings()),
        "audit" => screens::audit(lang, style, &sample_audit()),
        "plan" => screens::plan(lang, style, &sample_disks()),
        "result" | "result-failed" => {
            let failed = screen == "result-failed";
            let drawing = qr::render(SAMPLE_URL, style).unwrap_or_default();
            let (install, upload) = if failed {
                (InstallState::Failed("disk sda not erased".into()), UploadState::Waiting)
            } else {
                (
                    InstallState::Installed("lapterop-debian 13.2".into()),
                    UploadState::Uploaded,
                )
            };
            screens::result(
                lang,
                style,
                &sample_results(failed),
                &install,
                &upload,
                Some((SAMPLE_URL, &drawing)),
                None,
            )
        }
        "qr" => qr::render(SAMPLE_URL, style).unwrap_or_default(),
        _ => return None,
    })
}

/// The whole flow with sample data, driven by the volunteer's keys.
fn demo_flow(keys: &mut Keys, out: &mut io::Stdout, lang: &mut Lang, style: Style) -> io::Result<String> {
    let config = UiConfig {
        ask_verifier: true,
        ..UiConfig::default()
    };
    let Some(ops) = operator::ask(keys, out, lang, style, &config)? else {
        return Ok("DEMO-END closed".to_string());
    };
    let findings = vec![Finding::new(Code::P06, &[])];
    let preflight_screen = |l: Lang| screens::preflight(l, style, &findings);
    let audit_screen = |l: Lang| screens::audit(l, style, &sample_audit());
    if !confirm::show_and_wait(keys, out, lang, &preflight_screen)?
        || !confirm::show_and_wait(keys, out, lang, &audit_screen)?
    {
        return Ok("DEMO-END closed".to_string());
    }
    if confirm::confirm_plan(keys, out, lang, style, &sample_disks(), None)? == Decision::Cancelled {
        return Ok("DEMO-END cancelled".to_string());
    }
    demo_progress(*lang, style);
    let result_screen = |l: Lang| render_static("result-failed", l, style).unwrap_or_default();
    let next = match confirm::ask_next(keys, out, lang, &result_screen)? {
        confirm::Next::NextMachine => "next",
        confirm::Next::PowerOff => "power-off",
    };
    Ok(format!(
        "DEMO-END flow operator={} verifier={} then={next}",
        ops.operator,
        ops.verifier.as_deref().unwrap_or("-")
    ))
}

/// Three seconds of simulated progress: a firmware step without progress, then an overwrite.
fn demo_progress(lang: Lang, style: Style) {
    let steps = 30u64;
    let total = 250_059_350_016u64;
    let tick = Duration::from_millis(100);
    if style.colour {
        let mut p: Progress<io::Stdout> = Progress::bars(lang);
        let fw = p.start("nvme0n1", Step::Firmware, None);
        let ow = p.start("sda", Step::Overwrite, Some(total));
        for i in 1..=steps {
            std::thread::sleep(tick);
            p.set(ow, if i == steps { total } else { total / steps * i });
        }
        p.finish(fw, "OK");
        p.finish(ow, "OK");
    } else {
        let mut p = Progress::plain(lang, io::stdout());
        let fw = p.start("nvme0n1", Step::Firmware, None);
        let ow = p.start("sda", Step::Overwrite, Some(total));
        for i in 1..=steps {
            std::thread::sleep(tick);
            p.set(ow, if i == steps { total } else { total / steps * i });
            p.tick_at(std::time::Instant::now());
        }
        p.finish(fw, "OK");
        p.finish(ow, "OK");
    }
}
