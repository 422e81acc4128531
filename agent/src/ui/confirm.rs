//! Confirming the plan: the volunteer types the last four characters of each disk's serial number (or
//! the site's configured word), case-insensitive; a wrong entry asks again, `q` cancels, `l` switches the
//! language. In unattended mode a visible countdown runs instead, and any key cancels it.

use std::io::{self, Write};
use std::time::Duration;

use super::input::{Cbreak, Input, KeyWait, LineWait};
use super::{screens, Colour, PlanDisk, Style};
use crate::i18n::{Key, Lang, SWITCH_KEY};

/// What the volunteer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Confirmed,
    /// Stop; nothing is erased.
    Cancelled,
}

/// What must be typed for one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// The serial's last four letters or digits.
    Serial(String),
    /// The configured word (also used when a disk has no usable serial).
    Word(String),
}

/// Used when neither a word is configured nor the disk has four serial characters.
const FALLBACK_WORD: &str = "ERASE";

/// The token for `disk`: the configured word if any, else the serial's last four letters or digits.
pub fn token(disk: &PlanDisk, word: Option<&str>) -> Token {
    if let Some(word) = word {
        return Token::Word(word.to_string());
    }
    let chars: Vec<char> = disk
        .serial
        .as_deref()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    if chars.len() < 4 {
        return Token::Word(FALLBACK_WORD.to_string());
    }
    Token::Serial(chars[chars.len() - 4..].iter().collect())
}

/// How a typed line answers the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The token, typed right.
    Match,
    /// `q`: cancel.
    Cancel,
    /// The language switch key.
    SwitchLanguage,
    /// Anything else.
    Wrong,
}

/// Judges `typed` against `token` (case-insensitive, surrounding spaces ignored).
pub fn judge(token: &Token, typed: &str) -> Answer {
    let typed = typed.trim();
    let want = match token {
        Token::Serial(s) | Token::Word(s) => s,
    };
    if typed.eq_ignore_ascii_case(want) {
        Answer::Match
    } else if typed.eq_ignore_ascii_case("q") {
        Answer::Cancel
    } else if typed.eq_ignore_ascii_case(SWITCH_KEY) {
        Answer::SwitchLanguage
    } else {
        Answer::Wrong
    }
}

/// Shows the plan and asks for the token of each disk to erase, in turn. Returns `Cancelled` when the
/// volunteer types `q`, when the input closes, or when there is nothing to erase. `lang` follows the
/// volunteer's switches.
pub fn confirm_plan(
    input: &mut dyn Input,
    out: &mut dyn Write,
    lang: &mut Lang,
    style: Style,
    disks: &[PlanDisk],
    word: Option<&str>,
) -> io::Result<Decision> {
    write!(out, "{}", screens::plan(*lang, style, disks))?;
    let targets: Vec<&PlanDisk> = disks.iter().filter(|d| d.target()).collect();
    if targets.is_empty() {
        return Ok(Decision::Cancelled);
    }
    for disk in targets {
        let token = token(disk, word);
        loop {
            let ask = match &token {
                Token::Serial(_) => lang.fill(
                    Key::ConfirmAsk,
                    &[
                        ("disk", &disk.name),
                        ("hint", disk.serial.as_deref().unwrap_or_default()),
                    ],
                ),
                Token::Word(w) => lang.fill(Key::ConfirmAskWord, &[("disk", &disk.name), ("word", w)]),
            };
            writeln!(out, "\n{}", style.bold(&screens::wrap(&ask, screens::WIDTH, 0)))?;
            write!(out, "> ")?;
            out.flush()?;
            let Some(typed) = input.line()? else {
                writeln!(out, "\n{}", lang.t(Key::Cancelled))?;
                return Ok(Decision::Cancelled);
            };
            match judge(&token, &typed) {
                Answer::Match => {
                    writeln!(
                        out,
                        "{}",
                        style.fg(Colour::Red, &lang.fill(Key::ConfirmOk, &[("disk", &disk.name)]))
                    )?;
                    break;
                }
                Answer::Cancel => {
                    writeln!(out, "{}", style.fg(Colour::Green, lang.t(Key::Cancelled)))?;
                    return Ok(Decision::Cancelled);
                }
                Answer::SwitchLanguage => {
                    *lang = lang.other();
                    write!(out, "\n{}", screens::plan(*lang, style, disks))?;
                }
                Answer::Wrong => {
                    let wrong = match &token {
                        Token::Serial(_) => Key::ConfirmWrong,
                        Token::Word(_) => Key::ConfirmWrongWord,
                    };
                    writeln!(out, "{}", style.fg(Colour::Yellow, lang.t(wrong)))?;
                }
            }
        }
    }
    Ok(Decision::Confirmed)
}

/// Shows a screen drawn by `render` and waits for Enter; the switch key redraws it in the other
/// language. `Ok(false)` when the input closed.
pub fn show_and_wait(
    input: &mut dyn Input,
    out: &mut dyn Write,
    lang: &mut Lang,
    render: &dyn Fn(Lang) -> String,
) -> io::Result<bool> {
    loop {
        write!(out, "{}{} ", render(*lang), lang.t(Key::PressEnter))?;
        out.flush()?;
        match input.line()? {
            None => return Ok(false),
            Some(typed) if typed.trim().eq_ignore_ascii_case(SWITCH_KEY) => *lang = lang.other(),
            Some(_) => return Ok(true),
        }
    }
}

/// What to do after the result screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Start over with the next laptop.
    NextMachine,
    /// Power the laptop off.
    PowerOff,
}

/// Shows the result screen drawn by `render` (which ends with the `N` / `P` question) and waits for `N`
/// (next laptop) or `P` (power off); the switch key redraws the screen in the other language, anything
/// else repeats the question. A closed input means power off (nobody is at the keyboard).
pub fn ask_next(
    input: &mut dyn Input,
    out: &mut dyn Write,
    lang: &mut Lang,
    render: &dyn Fn(Lang) -> String,
) -> io::Result<Next> {
    ask_next_live(input, out, lang, render, &mut || false)
}

/// [`ask_next`] on a screen that can change while it waits (the network came and the certificate was
/// sent): every second `changed` is asked, and when it says yes the screen is drawn again, with no
/// key pressed.
pub fn ask_next_live(
    input: &mut dyn Input,
    out: &mut dyn Write,
    lang: &mut Lang,
    render: &dyn Fn(Lang) -> String,
    changed: &mut dyn FnMut() -> bool,
) -> io::Result<Next> {
    write!(out, "{}> ", render(*lang))?;
    loop {
        out.flush()?;
        let typed = match input.line_within(Duration::from_secs(1))? {
            LineWait::Line(typed) => typed,
            LineWait::Closed => return Ok(Next::PowerOff),
            LineWait::Timeout => {
                if changed() {
                    write!(out, "\n{}> ", render(*lang))?;
                }
                continue;
            }
        };
        match typed.trim().to_ascii_lowercase().as_str() {
            "n" => return Ok(Next::NextMachine),
            "p" => return Ok(Next::PowerOff),
            key if key == SWITCH_KEY => {
                *lang = lang.other();
                write!(out, "{}> ", render(*lang))?;
            }
            _ => write!(out, "{}\n> ", lang.t(Key::NextMachine))?,
        }
    }
}

/// The unattended countdown: one line per second, any key cancels. A closed input cannot cancel, so the
/// countdown runs out.
pub fn countdown(
    input: &mut dyn Input,
    out: &mut dyn Write,
    lang: Lang,
    style: Style,
    seconds: u32,
) -> io::Result<Decision> {
    let _cbreak = Cbreak::on();
    for left in (1..=seconds).rev() {
        let line = lang.fill(Key::Countdown, &[("seconds", &left.to_string())]);
        writeln!(out, "{}", style.fg(Colour::Yellow, &line))?;
        out.flush()?;
        match input.key_within(Duration::from_secs(1))? {
            KeyWait::Key(_) => {
                writeln!(out, "{}", style.fg(Colour::Green, lang.t(Key::Cancelled)))?;
                return Ok(Decision::Cancelled);
            }
            KeyWait::Timeout => {}
            KeyWait::Closed => std::thread::sleep(Duration::from_secs(1)),
        }
    }
    writeln!(out, "{}", lang.t(Key::CountdownStart))?;
    Ok(Decision::Confirmed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::input::Keys;
    use crate::ui::{Exclusion, Health, Method};
    use lapterop_certificate::model::Transport;

    fn disk(name: &str, serial: Option<&str>, excluded: Option<Exclusion>) -> PlanDisk {
        PlanDisk {
            name: name.into(),
            model: Some("Samsung SSD 860 EVO 250GB".into()),
            serial: serial.map(Into::into),
            size_bytes: 250_059_350_016,
            transport: Transport::Sata,
            rotational: false,
            removable: false,
            card: false,
            health: Health::Good,
            method: Some(Method::Overwrite),
            excluded,
            frozen: false,
        }
    }

    fn run(typed: &str, disks: &[PlanDisk], word: Option<&str>) -> (Decision, Lang, String) {
        let mut input = Keys::new(io::Cursor::new(typed.as_bytes().to_vec()));
        let mut out = Vec::new();
        let mut lang = Lang::Nl;
        let d = confirm_plan(&mut input, &mut out, &mut lang, Style::PLAIN, disks, word).unwrap();
        (d, lang, String::from_utf8(out).unwrap())
    }

    #[test]
    fn token_is_the_serials_last_four_letters_or_digits() {
        assert_eq!(
            token(&disk("sda", Some("S3Z9NB0K-12 345a "), None), None),
            Token::Serial("345a".into())
        );
        assert_eq!(
            token(&disk("sda", Some("AB1"), None), None),
            Token::Word("ERASE".into())
        );
        assert_eq!(
            token(&disk("sda", None, None), Some("wissen")),
            Token::Word("wissen".into())
        );
        let t = Token::Serial("345A".into());
        assert_eq!(judge(&t, " 345a "), Answer::Match);
        assert_eq!(judge(&t, "Q"), Answer::Cancel);
        assert_eq!(judge(&t, "L"), Answer::SwitchLanguage);
        assert_eq!(judge(&t, "3456"), Answer::Wrong);
        assert_eq!(judge(&t, ""), Answer::Wrong);
    }

    #[test]
    fn wrong_entry_asks_again_then_the_right_one_confirms() {
        let disks = [disk("sda", Some("S3Z9NB0K123456A"), None)];
        let (d, _, out) = run("1234\n456a\n", &disks, None);
        assert_eq!(d, Decision::Confirmed);
        assert_eq!(out.matches("Om sda te wissen").count(), 2, "{out}");
        assert!(out.contains("Dat klopt niet."), "{out}");
        assert!(out.contains("Bevestigd: sda wordt gewist."), "{out}");
    }

    #[test]
    fn q_cancels_and_closed_input_cancels() {
        let disks = [disk("sda", Some("S3Z9NB0K123456A"), None)];
        let (d, _, out) = run("q\n456A\n", &disks, None);
        assert_eq!(d, Decision::Cancelled);
        assert!(out.contains("Geannuleerd. Er is niets gewist."));
        assert!(!out.contains("Bevestigd"));
        let (d, _, _) = run("", &disks, None);
        assert_eq!(d, Decision::Cancelled);
    }

    #[test]
    fn every_target_disk_is_confirmed_and_the_stick_is_never_asked() {
        let disks = [
            disk("nvme0n1", Some("S4EWNX0R123456"), None),
            disk("sdb", Some("STICK0001"), Some(Exclusion::BootStick)),
            disk("sda", Some("WD-WX11A1234567"), None),
        ];
        let (d, _, out) = run("3456\n0001\n4567\n", &disks, None);
        assert_eq!(d, Decision::Confirmed);
        assert!(!out.contains("Om sdb te wissen"), "{out}");
        assert!(out.contains("dit is de opstartstick"), "{out}");
        // The stick's digits were a wrong answer for sda.
        assert_eq!(out.matches("Dat klopt niet.").count(), 1, "{out}");
        assert!(out.contains("Bevestigd: sda wordt gewist."));
        let (d, _, out) = run("", &[disk("sdb", Some("STICK0001"), Some(Exclusion::BootStick))], None);
        assert_eq!(d, Decision::Cancelled);
        assert!(out.contains("Er is geen schijf om te wissen."));
    }

    #[test]
    fn language_switch_redraws_the_plan_in_english() {
        let disks = [disk("sda", Some("S3Z9NB0K123456A"), None)];
        let (d, lang, out) = run("l\nwrong\n456a\n", &disks, Some("wissen"));
        // With a configured word, the serial does not confirm.
        assert_eq!(d, Decision::Cancelled);
        assert_eq!(lang, Lang::En);
        assert!(out.contains("Plan: these disks will be ERASED"), "{out}");
        assert!(out.contains("To erase sda, type the word wissen"), "{out}");
        assert_eq!(out.matches("That does not match.").count(), 2, "{out}");
    }

    #[test]
    fn show_and_wait_redraws_on_the_switch_key() {
        let mut input = Keys::new(io::Cursor::new(b"L\n\n".to_vec()));
        let mut out = Vec::new();
        let mut lang = Lang::Nl;
        let render = |l: Lang| format!("[{}]\n", l.t(Key::AuditTitle));
        assert!(show_and_wait(&mut input, &mut out, &mut lang, &render).unwrap());
        assert_eq!(lang, Lang::En);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("[Deze laptop]\nDruk op Enter om verder te gaan. [This laptop]"),
            "{text}"
        );
        assert!(!show_and_wait(&mut input, &mut Vec::new(), &mut lang, &render).unwrap());
    }

    #[test]
    fn after_the_result_n_is_next_and_p_powers_off() {
        let mut input = Keys::new(io::Cursor::new(b"x\nl\nN\np\n".to_vec()));
        let mut out = Vec::new();
        let mut lang = Lang::Nl;
        let render = |l: Lang| format!("[{}]\n{}\n", l.t(Key::ResultTitle), l.t(Key::NextMachine));
        assert_eq!(
            ask_next(&mut input, &mut out, &mut lang, &render).unwrap(),
            Next::NextMachine
        );
        assert_eq!(lang, Lang::En);
        assert_eq!(
            ask_next(&mut input, &mut out, &mut lang, &render).unwrap(),
            Next::PowerOff
        );
        assert_eq!(
            ask_next(&mut input, &mut out, &mut lang, &render).unwrap(),
            Next::PowerOff
        );
        let text = String::from_utf8(out).unwrap();
        // Screen, then the question again after "x", then the screen in English after "l".
        assert_eq!(text.matches("[Resultaat]").count(), 1, "{text}");
        assert_eq!(text.matches("Typ N en Enter").count(), 2, "{text}");
        assert_eq!(text.matches("[Result]").count(), 3, "{text}");
    }

    #[test]
    fn countdown_runs_out_on_closed_input_and_a_key_cancels() {
        let mut out = Vec::new();
        let mut closed = Keys::new(io::empty());
        assert_eq!(
            countdown(&mut closed, &mut out, Lang::En, Style::PLAIN, 1).unwrap(),
            Decision::Confirmed
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Erasing starts in 1 s."), "{text}");
        assert!(text.contains("Starting now."));

        let mut out = Vec::new();
        let mut typed = Keys::new(io::Cursor::new(b"x".to_vec()));
        assert_eq!(
            countdown(&mut typed, &mut out, Lang::Nl, Style::PLAIN, 30).unwrap(),
            Decision::Cancelled
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Het wissen begint over 30 s."), "{text}");
        assert!(!text.contains("29 s"), "{text}");
        assert!(text.contains("Geannuleerd."));
    }

    #[test]
    fn the_result_screen_redraws_itself_when_something_changed_without_a_key() {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let mut input = Keys::new(std::fs::File::from(reader));
        let mut out = Vec::new();
        let mut lang = Lang::En;
        let sent = std::cell::Cell::new(false);
        let render = |_: Lang| {
            if sent.get() {
                "certificate sent, QR\n".to_string()
            } else {
                "certificate waits\n".to_string()
            }
        };
        // Nothing is typed; after two quiet seconds the certificate is sent, then P comes.
        let mut ticks = 0;
        let mut writer = Some(std::fs::File::from(writer));
        let mut changed = || {
            ticks += 1;
            match ticks {
                2 => {
                    sent.set(true);
                    true
                }
                3 => {
                    if let Some(mut w) = writer.take() {
                        std::io::Write::write_all(&mut w, b"p\n").unwrap();
                    }
                    false
                }
                _ => false,
            }
        };
        let next = ask_next_live(&mut input, &mut out, &mut lang, &render, &mut changed).unwrap();
        assert_eq!(next, Next::PowerOff);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "certificate waits\n> \ncertificate sent, QR\n> ");
    }
}
