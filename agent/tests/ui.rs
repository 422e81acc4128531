//! The volunteer's screens: both languages complete and not mixed, every error code documented, the
//! pre-flight command on a built sysfs tree, the interactive prompts driven through tmux like a
//! volunteer at the keyboard, and the whole interactive flow (`lapterop-agent flow`) on loop devices
//! (root only: skipped loudly otherwise, failing when `LAPTEROP_REQUIRE_ROOT_TESTS=1`).

// Test helpers panic on purpose when the environment is broken.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use lapterop_agent::i18n::{Key, Lang, Word};
use lapterop_agent::ui::screens::{InstallState, UploadState};
use lapterop_agent::ui::{demo, qr, screens, Style};
use lapterop_words::Text;
use support::{root, Loop, MIB};

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
                None,
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

/// The long literal pieces of every text of catalogue `K` in `lang`, with the key's name, leaving out
/// texts that are the same in both languages. Short pieces ("disk", "Model") may be part of a model name
/// or a shared word.
fn long_pieces<K: Text>(lang: Lang) -> Vec<(String, String)> {
    K::ALL
        .iter()
        .filter(|key| key.en() != key.nl())
        .flat_map(|key| {
            fragments(lang.t(*key))
                .into_iter()
                .map(move |p| (format!("{key:?}"), p))
        })
        .filter(|(_, piece)| piece.chars().count() >= 10)
        .collect()
}

#[test]
fn no_english_text_on_dutch_screens_and_the_reverse() {
    for (lang, other) in [(Lang::Nl, Lang::En), (Lang::En, Lang::Nl)] {
        let pieces = [long_pieces::<Key>(other), long_pieces::<Word>(other)].concat();
        for (name, screen) in all_screens(lang) {
            for (key, piece) in &pieces {
                assert!(
                    !screen.contains(piece),
                    "{name} in {lang:?} shows {other:?} text of {key}: {piece:?}\n{screen}"
                );
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
        // Unique per start: tests run in parallel and some share a name.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = format!("lapterop-ui-{}-{n}-{name}", std::process::id());
        let cmd = format!("{BIN} {}; echo EXIT=$?; sleep 600", args.join(" "));
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

    /// The pane and everything that scrolled out of it.
    fn history(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-J", "-S", "-", "-t", "t"])
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
        self.wait_long(want, Duration::from_secs(30))
    }

    /// Waits up to `limit` for `want` on the pane (with what scrolled out of it).
    fn wait_long(&self, want: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.history();
            if screen.contains(want) {
                return screen;
            }
            assert!(start.elapsed() < limit, "waited for {want:?}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `want` has been shown `n` times.
    fn wait_count(&self, want: &str, n: usize) -> String {
        let start = Instant::now();
        loop {
            let screen = self.history();
            if screen.matches(want).count() >= n {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited for {want:?} {n} times; screen:\n{screen}"
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
        // LAPTEROP_CAPTURE_DIR=DIR keeps every pane as text (the volunteer guide's captures).
        if let Some(dir) = std::env::var_os("LAPTEROP_CAPTURE_DIR") {
            let _ = std::fs::write(Path::new(&dir).join(format!("{}.txt", self.socket)), self.history());
        }
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

fn tmux_or_skip(name: &str, args: &[&str]) -> Option<Tmux> {
    match Tmux::start(name, args) {
        Some(t) => Some(t),
        None => {
            lapterop_testkit::skip(name, "tmux is not installed (scripts/apt-packages.txt lists it)");
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

/// blake3 of a loop device's backing file.
fn digest(disk: &Loop) -> blake3::Hash {
    blake3::hash(&std::fs::read(&disk.file).unwrap())
}

/// A stick's `lapterop/` directory with a station key and `site.toml` (the `[station]` table is added).
fn stick(work: &Path, site: &str) -> PathBuf {
    let dir = work.join("stick/lapterop");
    std::fs::create_dir_all(&dir).unwrap();
    let station = lapterop_certificate::keys::fixture_key("flow test station");
    lapterop_certificate::keys::write_keypair(&dir.join("station"), &station).unwrap();
    let text = format!("[station]\norganisation = \"Iedereendigitaal@Leuven\"\nsite = \"test bench\"\n\n{site}");
    std::fs::write(dir.join("site.toml"), text).unwrap();
    dir
}

/// The certificates in an outbox (not the audits, not the receipts).
fn certificates(outbox: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(outbox) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.ends_with(".json") && n.matches('.').count() == 1
        })
        .collect()
}

/// The one per-machine log in the stick's `logs/`.
fn machine_log(stick: &Path) -> String {
    let logs: Vec<PathBuf> = std::fs::read_dir(stick.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    std::fs::read_to_string(&logs[0]).unwrap()
}

/// What the test server saw of one upload.
#[derive(Debug, Default)]
struct Seen {
    /// Certificate ids received.
    ids: Vec<String>,
    /// For each: the same bytes were already in the outbox when the request came.
    in_outbox_first: Vec<bool>,
    /// Full audits received (`PUT /api/v1/certificates/ID/audit`): the id and whether the bytes were
    /// the ones stored beside the certificate.
    audits: Vec<(String, bool)>,
}

/// A collection server on 127.0.0.1 that answers each certificate upload with a receipt signed by
/// `server_key`, after checking that the certificate already sits in `outbox` with the same bytes.
fn receipt_server(
    outbox: PathBuf,
    server_key: lapterop_certificate::SigningKey,
) -> (String, std::sync::Arc<std::sync::Mutex<Seen>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
    let record = std::sync::Arc::clone(&seen);
    let base = url.clone();
    std::thread::spawn(move || {
        for (position, stream) in (1u64..).zip(listener.incoming()) {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).unwrap_or(0) == 0 {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            // The full audit follows the certificate: PUT /api/v1/certificates/ID/audit.
            if let Some(id) = request
                .strip_prefix("PUT /api/v1/certificates/")
                .and_then(|r| r.split(' ').next())
                .and_then(|p| p.strip_suffix("/audit"))
            {
                let stored = std::fs::read(outbox.join(format!("{id}.audit.json"))).ok();
                record
                    .lock()
                    .unwrap()
                    .audits
                    .push((id.to_string(), stored.as_deref() == Some(&body[..])));
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
                );
                continue;
            }
            let (cert, doc) = lapterop_certificate::parse(&body).unwrap();
            let stored = std::fs::read(outbox.join(format!("{}.json", cert.id))).ok();
            {
                let mut s = record.lock().unwrap();
                s.ids.push(cert.id.clone());
                s.in_outbox_first.push(stored.as_deref() == Some(&body[..]));
            }
            let blake3 = lapterop_certificate::document_blake3(&doc).unwrap();
            let received_at = lapterop_certificate::now_utc();
            let previous = lapterop_certificate::chain::GENESIS.to_string();
            let mut receipt = lapterop_certificate::model::Receipt {
                schema: lapterop_certificate::model::RECEIPT_SCHEMA_V1.to_string(),
                certificate_id: cert.id.clone(),
                entry_hash: lapterop_certificate::chain::entry_hash(&previous, position, &blake3, &received_at),
                certificate_blake3: blake3,
                received_at,
                position,
                previous_hash: previous,
                donor_url: format!("{base}/d/{}", cert.id),
                signature: None,
            };
            lapterop_certificate::chain::sign_receipt(&mut receipt, &server_key).unwrap();
            let json = serde_json::to_vec(&receipt).unwrap();
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                json.len()
            );
            let _ = stream.write_all(&json);
        }
    });
    (url, seen)
}

/// The interactive flow on the host, in Dutch, against two loop devices: one is held open exclusively by
/// this test (so the flow must refuse it and certify it not erased), the other is confirmed with the
/// configured word after a wrong entry, wiped with zeros and read back. The certificate is in the outbox
/// before the server sees it, the receipt comes back, and the final screen shows both results in large
/// words, the reason, the upload and the donor page's QR code.
#[test]
fn tmux_flow_on_loop_devices_in_dutch_with_a_busy_disk() {
    if !root("flow-nl") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let server_key = lapterop_certificate::keys::fixture_key("flow test server");
    let dir = work.path().join("stick/lapterop");
    let (url, seen) = receipt_server(dir.join("outbox"), server_key.clone());
    let server_pub = work.path().join("server");
    lapterop_certificate::keys::write_keypair(&server_pub, &server_key).unwrap();
    let dir = stick(
        work.path(),
        &format!(
            "[server]\nurl = \"{url}\"\nkey = \"{}\"\n\n[wipe]\npattern = \"zero\"\nverify = \"full\"\n\n\
             [ui]\nlanguage = \"nl\"\nconfirm_word = \"WISSEN\"\nask_verifier = true\n",
            server_pub.with_extension("pub").display()
        ),
    );
    let good = Loop::new(8 * MIB, 512);
    let busy = Loop::new(8 * MIB, 512);
    let held = lapterop_agent::sys::open_block_device(Path::new(&busy.dev), lapterop_agent::sys::Access::ExclusiveRead)
        .unwrap();
    let busy_before = digest(&busy);
    let stick_arg = dir.display().to_string();
    let Some(t) = tmux_or_skip(
        "flow-nl",
        &["flow", "--stick", &stick_arg, "--only", &good.dev, "--only", &busy.dev],
    ) else {
        return;
    };
    t.wait_for("Uw naam of vrijwilligerscode:");
    t.type_line("An Peeters");
    t.wait_for("Tweede persoon die controleert");
    t.type_line("Els");
    let s = t.wait_for("Controles vooraf");
    assert!(!s.contains("[STOP]"), "{s}");
    t.type_line("");
    t.wait_for("Deze laptop");
    t.type_line("");
    let s = t.wait_for(&format!("Om {} te wissen, typ het woord WISSEN", good.name()));
    assert!(s.contains("Plan: deze schijven worden GEWIST"), "{s}");
    assert!(s.contains(&format!("1. {}  8.3 MB", good.name())), "{s}");
    assert!(s.contains(&format!("[NIET aangeraakt] {}", busy.name())), "{s}");
    assert!(s.contains("in gebruik (aangekoppeld of bezet)"), "{s}");
    t.type_line("wisen");
    t.wait_for("Dat klopt niet.");
    t.type_line("wissen");
    t.wait_for(&format!("Bevestigd: {} wordt gewist.", good.name()));
    let s = t.wait_long("Typ N en Enter voor de volgende laptop", Duration::from_secs(120));
    for want in [
        "Bezig met wissen",
        "G E W I S T",
        "N I E T   G E W I S T",
        "LAP-R01",
        "Waarom: not wiped: the device is in use by another program",
        "Geef deze schijf NIET mee.",
        "Geen software geïnstalleerd (niet gevraagd).",
        "Certificaat naar de server gestuurd en ontvangstbewijs bewaard.",
        "Pagina voor de schenker (scan met een telefoon):",
        "outcome=not-erased install=none upload=sent",
    ] {
        assert!(s.contains(want), "missing {want:?}\n{s}");
    }
    t.type_line("p");
    let s = t.wait_for("EXIT=");
    // A disk not erased needs a lead: exit 1.
    assert!(s.contains("EXIT=1"), "{s}");
    drop(held);

    // The outbox: one signed certificate with both disks, the operator and the second person, and the
    // receipt beside it; the server saw the certificate only after it was stored.
    let outbox = dir.join("outbox");
    let certs = certificates(&outbox);
    assert_eq!(certs.len(), 1, "{certs:?}");
    let bytes = std::fs::read(&certs[0]).unwrap();
    let station = lapterop_certificate::keys::fixture_key("flow test station").verifying_key();
    let cert = lapterop_certificate::verify(&bytes, &station).unwrap();
    assert_eq!(cert.operator.name, "An Peeters");
    assert_eq!(cert.verifier.as_ref().unwrap().name, "Els");
    let outcome = |name: &str| cert.disks.iter().find(|d| d.device == name).unwrap().outcome.status;
    assert_eq!(outcome(good.name()), lapterop_certificate::OutcomeStatus::Erased);
    assert_eq!(outcome(busy.name()), lapterop_certificate::OutcomeStatus::NotErased);
    assert!(outbox.join(format!("{}.receipt.json", cert.id)).exists());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.ids, std::slice::from_ref(&cert.id));
    assert_eq!(seen.in_outbox_first, [true]);
    assert_eq!(
        seen.audits,
        [(cert.id.clone(), true)],
        "the full audit went up as stored"
    );
    assert!(s.contains(&format!("{url}/d/{}", cert.id)), "{s}");
    // The disks: the confirmed one reads back as zeros, the busy one is untouched.
    assert!(std::fs::read(&good.file).unwrap().iter().all(|b| *b == 0));
    assert_eq!(digest(&busy), busy_before, "the busy disk was written");
    // The laptop's log on the stick has the run, with the codes.
    let log = machine_log(&dir);
    for want in [
        "interactive flow by An Peeters, checked by Els",
        &format!("confirmed: wiping {}", good.name()),
        &format!("LAP-R01 {}: NOT ERASED: not wiped", busy.name()),
        &format!("certificate {} saved in the outbox", cert.id),
        "certificate sent; receipt stored beside it",
        "volunteer chose power off",
    ] {
        assert!(log.contains(want), "log misses {want:?}:\n{log}");
    }
}

/// The flow in English (switched to Dutch and back with L), cancelled at the plan with Q: the disk is
/// byte for byte as before, no certificate is written, and the log says it was cancelled. The upload
/// server is a closed port, and nothing is sent because nothing was certified.
#[test]
fn tmux_flow_in_english_cancelled_at_the_plan_writes_nothing() {
    if !root("flow-en") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = stick(work.path(), "[ui]\nlanguage = \"en\"\n");
    let disk = Loop::new(8 * MIB, 512);
    let before = digest(&disk);
    let stick_arg = dir.display().to_string();
    let Some(t) = tmux_or_skip("flow-en", &["flow", "--stick", &stick_arg, "--only", &disk.dev]) else {
        return;
    };
    t.wait_for("Your name or volunteer code:");
    t.type_line("Bob");
    t.wait_for("Checks before we start");
    t.type_line("L");
    t.wait_for("Controles vooraf");
    t.type_line("l");
    t.wait_count("Checks before we start", 2);
    t.type_line("");
    t.wait_for("This laptop");
    t.type_line("");
    // A loop device has no serial number: the word ERASE is asked instead.
    let s = t.wait_for(&format!(
        "To erase {}, type the word ERASE, or Q to cancel:",
        disk.name()
    ));
    assert!(s.contains("Plan: these disks will be ERASED"), "{s}");
    t.type_line("q");
    let s = t.wait_for("Type N and Enter for the next laptop");
    assert!(s.contains("Cancelled. Nothing was erased."), "{s}");
    t.type_line("n");
    let s = t.wait_for("EXIT=");
    assert!(s.contains("EXIT=2"), "{s}");
    assert!(!s.contains("LAPTEROP-JOB-DONE"), "{s}");
    assert_eq!(digest(&disk), before, "a cancelled flow wrote to the disk");
    assert!(certificates(&dir.join("outbox")).is_empty());
    let log = machine_log(&dir);
    assert!(log.contains("interactive flow by Bob"), "{log}");
    assert!(log.contains("cancelled at the plan; nothing was written"), "{log}");
}

/// The flow with the site's countdown instead of a typed confirmation, in English, with the operator
/// from the config: the countdown runs out, the disk is wiped, the OS image the config names is not on
/// the stick so the install fails with its reason (`LAP-I01`), and without a server the certificate
/// waits on the stick (`LAP-N01`).
#[test]
fn tmux_flow_countdown_runs_out_and_a_missing_image_fails_the_install() {
    if !root("flow-countdown") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let image_key = lapterop_certificate::keys::fixture_key("flow test image");
    let dir = stick(
        work.path(),
        "[install]\nimage = \"images/missing.osimg\"\n\n\
         [ui]\nlanguage = \"en\"\noperator = \"Station 3\"\nunattended_countdown_secs = 1\n",
    );
    lapterop_certificate::keys::write_keypair(&dir.join("image"), &image_key).unwrap();
    let disk = Loop::new(8 * MIB, 512);
    let before = digest(&disk);
    let stick_arg = dir.display().to_string();
    let key_arg = dir.join("image.pub").display().to_string();
    let args = [
        "flow",
        "--stick",
        &stick_arg,
        "--image-key",
        &key_arg,
        "--only",
        &disk.dev,
    ];
    let Some(t) = tmux_or_skip("flow-countdown", &args) else {
        return;
    };
    t.wait_for("Checks before we start");
    t.type_line("");
    t.wait_for("This laptop");
    t.type_line("");
    t.wait_for("Erasing starts in 1 s.");
    let s = t.wait_long("Type N and Enter for the next laptop", Duration::from_secs(120));
    assert!(!s.contains("Your name or volunteer code:"), "{s}");
    for want in [
        "Starting now.",
        "E R A S E D",
        "LAP-I01 Software NOT installed: opening",
        "missing.osimg",
        "LAP-N01 Certificate saved on the stick",
        "outcome=erased install=failed upload=no-server",
    ] {
        assert!(s.contains(want), "missing {want:?}\n{s}");
    }
    t.type_line("p");
    let s = t.wait_for("EXIT=");
    assert!(s.contains("EXIT=1"), "{s}");
    assert_ne!(digest(&disk), before, "the disk was not wiped");
    let certs = certificates(&dir.join("outbox"));
    assert_eq!(certs.len(), 1);
    let station = lapterop_certificate::keys::fixture_key("flow test station").verifying_key();
    let cert = lapterop_certificate::verify(&std::fs::read(&certs[0]).unwrap(), &station).unwrap();
    assert_eq!(cert.operator.name, "Station 3");
    assert_eq!(cert.overall_outcome(), lapterop_certificate::OutcomeStatus::Erased);
    // An image that was never opened has no identity to record, but the certificate still says the
    // install failed and why (as do the screen, the marker line and the log).
    let install = cert.install.as_ref().expect("the failed install is in the certificate");
    assert_eq!(install.status, lapterop_certificate::model::InstallStatus::Failed);
    assert!(
        install.image_name.is_none() && install.root_hash.is_none(),
        "{install:?}"
    );
    assert!(
        install.reason.as_deref().is_some_and(|r| r.contains("missing.osimg")),
        "{install:?}"
    );
    let log = machine_log(&dir);
    assert!(log.contains("LAP-I01 install failed: opening"), "{log}");
    assert!(log.contains("missing.osimg"), "{log}");
}
