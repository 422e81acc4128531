//! Asking for the PSID of a locked self-encrypting drive: the volunteer types the 32 letters and
//! digits printed after "PSID" on the drive's label. A wrong length or a stray character asks again;
//! an empty line skips the drive (it stays locked and is not erased); `l` switches the language. What
//! is typed is checked into a [`Psid`] at once and kept nowhere else: not in the log, not on the screen
//! after the line.

use std::io::{self, Write};

use super::{screens, Colour, Style};
use crate::i18n::{Key, Lang, SWITCH_KEY};
use crate::opal::{Psid, PsidError};
use crate::ui::input::Input;

/// Asks for the PSID of disk `disk` (`model` as the label shows it). `None` when the volunteer skips
/// it or the input closes.
pub fn ask_psid(
    input: &mut dyn Input,
    out: &mut dyn Write,
    lang: &mut Lang,
    style: Style,
    disk: &str,
    model: &str,
) -> io::Result<Option<Psid>> {
    let mut ask = Key::PsidAsk;
    let mut count = String::new();
    loop {
        let text = lang.fill(ask, &[("disk", disk), ("model", model), ("count", &count)]);
        writeln!(out, "\n{}", style.bold(&screens::wrap(&text, screens::WIDTH, 0)))?;
        write!(out, "PSID> ")?;
        out.flush()?;
        let Some(typed) = input.line()? else {
            return Ok(None);
        };
        let typed = zeroize::Zeroizing::new(typed);
        if typed.trim().is_empty() {
            writeln!(
                out,
                "{}",
                style.fg(Colour::Yellow, &lang.fill(Key::PsidSkipped, &[("disk", disk)]))
            )?;
            return Ok(None);
        }
        if typed.trim().eq_ignore_ascii_case(SWITCH_KEY) {
            *lang = lang.other();
            continue;
        }
        match Psid::parse(&typed) {
            Ok(psid) => {
                writeln!(
                    out,
                    "{}",
                    style.fg(Colour::Red, &lang.fill(Key::PsidTaken, &[("disk", disk)]))
                )?;
                return Ok(Some(psid));
            }
            Err(PsidError::Length(n)) => {
                count = n.to_string();
                ask = Key::PsidWrongLength;
            }
            Err(PsidError::Characters) => ask = Key::PsidWrongCharacters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::input::Keys;

    fn run(typed: &str) -> (Option<Psid>, Lang, String) {
        let mut input = Keys::new(io::Cursor::new(typed.as_bytes().to_vec()));
        let mut out = Vec::new();
        let mut lang = Lang::Nl;
        let p = ask_psid(
            &mut input,
            &mut out,
            &mut lang,
            Style::PLAIN,
            "nvme0n1",
            "Samsung PM981",
        )
        .unwrap();
        (p, lang, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_psid_of_32_letters_and_digits_is_taken_after_wrong_tries() {
        let (p, lang, out) = run("l\nABC\n0123456789ABCDEFGHIJKLMNOPQRSTU!\n01234567 89ABCDEF GHIJKLMN OPQRSTUV\n");
        assert!(p.is_some());
        assert_eq!(lang, Lang::En);
        assert!(out.contains("Samsung PM981"), "{out}");
        assert!(out.contains("That is 3 characters; a PSID has 32"), "{out}");
        assert!(out.contains("only letters and digits"), "{out}");
        assert!(out.contains("PSID noted for nvme0n1"), "{out}");
        assert!(
            !out.contains("0123456789ABCDEF"),
            "the PSID is not repeated on the screen"
        );
    }

    #[test]
    fn an_empty_line_or_closed_input_skips_the_drive() {
        let (p, lang, out) = run("\n");
        assert!(p.is_none());
        assert_eq!(lang, Lang::Nl);
        assert!(out.contains("nvme0n1"), "{out}");
        assert!(out.contains("kan niet gewist worden"), "{out}");
        assert!(run("").0.is_none());
    }
}
