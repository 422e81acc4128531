//! The volunteer's screens: both languages complete and not mixed, every error code documented, the
//! pre-flight command on a built sysfs tree, and the interactive prompts driven through tmux like a
//! volunteer at the keyboard.

// Test helpers panic on purpose when the environment is broken.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lapterop_agent::i18n::{Key, Lang};
use lapterop_agent::ui::screens::{InstallState, UploadState};
use lapterop_agent::ui::{demo, qr, screens, Style};

const BIN: &str = env!("CARGO_BIN_EXE_lapterop-agent");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Every screen with sample data, in `lang`.
fn all_screens(lang: Lang) -> Vec<(&'static str, String)> {
    let drawing = qr::render(demo::SAMPLE_URL, Style::PLAIN).unwrap();
    let failed = demo::sample_results(true);
    vec![
        (
            "preflight",
            screens::preflight(lang, Style::PLAIN, &demo::sample_findings()),
        ),
        ("preflight-clear", screens::preflight(lang, Style::PLAIN, &[])),
        ("audit", screens::audit(lang, Style::PLAIN, &demo::sample_audit())),
        ("plan", screens::plan(lang, Style::PLAIN, &demo::sample_disks())),
        (
            "result",
            screens::result(
                lang,
                Style::PLAIN,
                &failed,
                &InstallState::Failed("x".into()),
                &UploadState::Waiting,
                Some((demo::SAMPLE_URL, &drawing)),
            ),
        ),
        (
            "result-ok",
            screens::result(
                lang,
                Style::PLAIN,
                &failed[..1],
                &InstallState::Installed("img 1".into()),
                &UploadState::Refused("y".into()),
                None,
            ),
        ),
    ]
}

/// The literal pieces of a text between its placeholders.
fn fragments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let end = rest.find('{').unwrap_or(rest.len());
        out.push(rest[..end].trim().to_string());
        match rest[end..].find('}') {
            Some(close) => rest = &rest[end + close + 1..],
            None => break,
        }
    }
    out
}

#[test]
fn no_english_text_on_dutch_screens_and_the_reverse() {
    for (lang, other) in [(Lang::Nl, Lang::En), (Lang::En, Lang::Nl)] {
        for (name, screen) in all_screens(lang) {
            for key in Key::ALL {
                if key.en() == key.nl() {
                    continue;
                }
                for piece in fragments(other.t(*key)) {
                    // Short pieces ("disk", "Model") may be part of a model name or a shared word.
                    if piece.chars().count() >= 10 {
                        assert!(
                            !screen.contains(&piece),
                            "{name} in {lang:?} shows {other:?} text of {key:?}: {piece:?}\n{screen}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn screens_carry_their_key_lines_in_both_languages() {
    let nl: String = all_screens(Lang::Nl).into_iter().map(|(_, s)| s).collect();
    let en: String = all_screens(Lang::En).into_iter().map(|(_, s)| s).collect();
    for (text, want) in [
        (&nl, "N I E T   G E W I S T"),
        (&nl, "G E W I S T"),
        (&nl, "[NIET aangeraakt] sdb"),
        (&nl, "dit is de opstartstick"),
        (&nl, "HEEFT ONDERDELEN NODIG: batterij"),
        (&nl, "LAP-R01"),
        (&nl, "LAP-N01"),
        (&nl, "LAP-I01"),
        (&nl, "[STOP]   LAP-P01  Geen interne schijf gevonden"),
        (&en, "N O T   E R A S E D"),
        (&en, "[NOT touched] sdb"),
        (&en, "this is the boot stick"),
        (&en, "NEEDS PARTS: battery"),
        (&en, "LAP-N02"),
        (&en, "Type L and Enter to switch to Nederlands."),
    ] {
        assert!(text.contains(want), "missing {want:?}");
    }
    // The plan lists the disks to erase, never the stick as one of them.
    let plan = screens::plan(Lang::En, Style::PLAIN, &demo::sample_disks());
    assert!(
        plan.contains("1. nvme0n1  250.0 GB") && plan.contains("2. sda  500.1 GB"),
        "{plan}"
    );
    assert!(!plan.contains(". sdb"), "{plan}");
    for (name, screen) in all_screens(Lang::Nl).into_iter().chain(all_screens(Lang::En)) {
        for line in screen.lines() {
            assert!(line.chars().count() <= 80, "{name}: line too wide: {line:?}");
        }
    }
}

/// Every `LAP-X00` code in the agent's source.
fn codes_in(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            codes_in(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let b = text.as_bytes();
            for (i, _) in text.match_indices("LAP-") {
                let code = &b[i..(i + 7).min(b.len())];
                if code.len() == 7 && code[4].is_ascii_uppercase() && code[5..].iter().all(u8::is_ascii_digit) {
                    out.push(String::from_utf8(code.to_vec()).unwrap());
                }
            }
        }
    }
}

#[test]
fn every_error_code_in_the_source_is_in_the_lead_guide() {
    let mut codes = Vec::new();
    codes_in(&repo().join("agent/src"), &mut codes);
    codes.sort();
    codes.dedup();
    assert!(codes.len() >= 13, "{codes:?}");
    let guide = std::fs::read_to_string(repo().join("docs/lead-guide.md")).unwrap();
    for code in codes {
        assert!(
            guide.contains(&format!("| `{code}` |")),
            "docs/lead-guide.md has no row for {code}"
        );
    }
}

#[test]
fn preflight_command_reads_a_tree_and_exits_1_when_blocked() {
    let root = std::env::temp_dir().join(format!("lapterop-ui-preflight-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dev = root.join("sys/bus/pci/devices/0000:00:0e.0");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(dev.join("vendor"), "0x8086\n").unwrap();
    std::fs::write(dev.join("device"), "0xa77f\n").unwrap();
    std::fs::write(dev.join("class"), "0x010400\n").unwrap();
    let now = (lapterop_agent::preflight::clock_floor() + 86_400).to_string();
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["preflight", "--root", root.to_str().unwrap(), "--now", &now])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--json", "--lang", "en"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["LAP-P01", "LAP-P06"]);
    assert_eq!(json[0]["severity"], "stop");
    assert!(json[0]["found"].as_str().unwrap().contains("Intel VMD 8086:a77f"));
    let out = run(&[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Controles vooraf") && text.contains("zet VMD uit"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "colour written to a pipe");
    assert_eq!(run(&["--lang", "fr"]).status.code(), Some(2));
    std::fs::remove_dir_all(&root).unwrap();
}

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `args` of the agent in a detached 100x200 pane; `None` when tmux is not installed.
    fn start(name: &str, args: &[&str]) -> Option<Tmux> {
        let socket = format!("lapterop-ui-{}-{name}", std::process::id());
        let cmd = format!("{BIN} {}; sleep 600", args.join(" "));
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "100",
                "-y",
                "200",
            ])
            .arg(cmd)
            .env("TERM", "xterm-256color")
            .status()
            .ok()?;
        assert!(status.success(), "tmux new-session failed");
        Some(Tmux { socket })
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-J", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane with its colours as escape sequences.
    fn screen_with_colours(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-e", "-J", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, want: &str) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(want) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited for {want:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn type_line(&self, text: &str) {
        self.keys(text);
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "t", "Enter"])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn keys(&self, text: &str) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "t", "-l", text])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

fn tmux_or_skip(name: &str, args: &[&str]) -> Option<Tmux> {
    match Tmux::start(name, args) {
        Some(t) => Some(t),
        None => {
            assert!(
                std::env::var("LAPTEROP_REQUIRE_ROOT_TESTS").as_deref() != Ok("1"),
                "tmux is not installed (scripts/apt-packages.txt lists it)"
            );
            eprintln!("SKIPPED: tmux is not installed; the interactive screen test did not run");
            None
        }
    }
}

#[test]
fn tmux_confirmation_by_serial_after_a_wrong_entry_in_dutch() {
    let Some(t) = tmux_or_skip("nl", &["ui-demo", "--screen", "confirm", "--lang", "nl"]) else {
        return;
    };
    let s = t.wait_for("Om nvme0n1 te wissen, typ de laatste vier tekens");
    assert!(s.contains("Plan: deze schijven worden GEWIST"), "{s}");
    assert!(s.contains("[NIET aangeraakt] sdb"), "{s}");
    t.type_line("1234");
    t.wait_for("Dat klopt niet.");
    t.type_line("456k");
    t.wait_for("Om sda te wissen");
    t.type_line("7B3C");
    let s = t.wait_for("DEMO-END confirmed");
    assert!(
        s.contains("Bevestigd: nvme0n1 wordt gewist.") && s.contains("Bevestigd: sda wordt gewist."),
        "{s}"
    );
}

#[test]
fn tmux_language_switch_then_cancel_with_q() {
    let Some(t) = tmux_or_skip("switch", &["ui-demo", "--screen", "confirm", "--lang", "nl"]) else {
        return;
    };
    t.wait_for("Typ L en Enter voor English.");
    t.type_line("L");
    let s = t.wait_for("To erase nvme0n1, type the last four characters");
    assert!(
        s.contains("Plan: these disks will be ERASED") && s.contains("this is the boot stick"),
        "{s}"
    );
    t.type_line("q");
    let s = t.wait_for("DEMO-END cancelled");
    assert!(s.contains("Cancelled. Nothing was erased."), "{s}");
    assert!(!s.contains("Confirmed:"), "{s}");
}

#[test]
fn tmux_countdown_is_cancelled_by_any_key() {
    let Some(t) = tmux_or_skip(
        "count",
        &["ui-demo", "--screen", "countdown", "--lang", "en", "--seconds", "60"],
    ) else {
        return;
    };
    t.wait_for("Erasing starts in 60 s.");
    // One key, no Enter.
    t.keys("x");
    let s = t.wait_for("DEMO-END cancelled");
    assert!(s.contains("Cancelled. Nothing was erased."), "{s}");
}

#[test]
fn tmux_result_screen_with_a_failed_disk_in_both_languages() {
    for (lang, words) in [
        ("nl", ["N I E T   G E W I S T", "Geef deze schijf NIET mee.", "LAP-R01"]),
        ("en", ["N O T   E R A S E D", "Do NOT hand out this disk.", "LAP-N01"]),
    ] {
        let Some(t) = tmux_or_skip(lang, &["ui-demo", "--screen", "result-failed", "--lang", lang]) else {
            return;
        };
        let s = t.wait_for("DEMO-END");
        for want in words {
            assert!(s.contains(want), "{lang}: missing {want:?}\n{s}");
        }
        assert!(s.contains(demo::SAMPLE_URL), "{s}");
    }
}

#[test]
fn tmux_whole_flow_in_both_languages_with_a_failed_disk() {
    for lang in ["nl", "en"] {
        let Some(t) = tmux_or_skip(
            &format!("flow-{lang}"),
            &["ui-demo", "--screen", "flow", "--lang", lang],
        ) else {
            return;
        };
        let nl = lang == "nl";
        t.wait_for(if nl {
            "Uw naam of vrijwilligerscode:"
        } else {
            "Your name or volunteer code:"
        });
        t.type_line("An");
        t.wait_for(if nl {
            "Tweede persoon die controleert"
        } else {
            "Second person who checks"
        });
        t.type_line("Els");
        t.wait_for(if nl {
            "LAP-P06  Geen netwerk"
        } else {
            "LAP-P06  No network"
        });
        t.type_line("");
        t.wait_for(if nl {
            "HEEFT ONDERDELEN NODIG: batterij"
        } else {
            "NEEDS PARTS: battery"
        });
        t.type_line("");
        t.wait_for(if nl { "Om nvme0n1 te wissen" } else { "To erase nvme0n1" });
        t.type_line("456K");
        t.wait_for(if nl { "Om sda te wissen" } else { "To erase sda" });
        t.type_line("7b3c");
        t.wait_for(if nl {
            "Typ N en Enter voor de volgende laptop"
        } else {
            "Type N and Enter for the next laptop"
        });
        t.type_line("n");
        let s = t.wait_for("DEMO-END flow operator=An verifier=Els then=next");
        let words: &[&str] = if nl {
            &[
                "N I E T   G E W I S T",
                "LAP-R01",
                "Pagina voor de schenker",
                "verstreken",
            ]
        } else {
            &["N O T   E R A S E D", "LAP-R01", "Donor page", "reports no progress"]
        };
        for want in words {
            assert!(s.contains(want), "{lang}: missing {want:?}\n{s}");
        }
    }
}

#[test]
fn tmux_colour_on_a_terminal_and_none_with_plain() {
    let Some(t) = tmux_or_skip("colour", &["ui-demo", "--screen", "result-failed", "--lang", "en"]) else {
        return;
    };
    t.wait_for("DEMO-END");
    let coloured = t.screen_with_colours();
    // The NOT ERASED banner has a red background (SGR 41), switched on between the disk's name and the
    // words (tmux writes an attribute once, where it changes); the ERASED one is green (SGR 42).
    let disk = coloured.find("Disk sda").unwrap();
    let words = coloured.find("N O T   E R A S E D").unwrap();
    assert!(coloured[disk..words].contains("41m"), "{:?}", &coloured[disk..words]);
    let erased = coloured.find("E R A S E D").unwrap();
    assert!(coloured[..erased].contains("42m"), "the ERASED banner is not green");
    drop(t);
    let Some(t) = tmux_or_skip(
        "plain",
        &["ui-demo", "--screen", "result-failed", "--lang", "en", "--plain"],
    ) else {
        return;
    };
    t.wait_for("DEMO-END");
    let plain = t.screen_with_colours();
    assert!(plain.contains("N O T   E R A S E D"));
    assert!(!plain.contains('\x1b'), "escape codes in plain mode:\n{plain}");
}

/// `docs/volunteer-guide.md` with every `<!-- screen: NAME LANG -->` block filled with the current
/// capture of that screen.
fn guide_with_current_screens(guide: &str) -> String {
    let mut out = String::new();
    let mut rest = guide;
    while let Some(start) = rest.find("<!-- screen: ") {
        let open_end = start + rest[start..].find("-->").unwrap() + 3;
        let spec: Vec<&str> = rest[start + 13..open_end - 3].split_whitespace().collect();
        let close = open_end + rest[open_end..].find("<!-- end screen -->").unwrap();
        let lang = Lang::parse(spec[1]).unwrap();
        let screen = demo::render_static(spec[0], lang, Style::PLAIN).unwrap();
        out.push_str(&rest[..open_end]);
        out.push_str("\n```text\n");
        out.push_str(&screen);
        out.push_str("```\n");
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

#[test]
fn volunteer_guide_shows_the_current_screens() {
    let path = repo().join("docs/volunteer-guide.md");
    let guide = std::fs::read_to_string(&path).unwrap();
    let current = guide_with_current_screens(&guide);
    if std::env::var("LAPTEROP_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &current).unwrap();
        return;
    }
    assert!(guide.matches("<!-- screen: ").count() >= 5);
    assert!(
        guide == current,
        "docs/volunteer-guide.md shows outdated screens; run LAPTEROP_BLESS=1 cargo test -p lapterop-agent --test ui volunteer_guide"
    );
}
