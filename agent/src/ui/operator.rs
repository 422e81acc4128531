//! Who does the job: the volunteer's name or code (from the site config, or asked once per boot and
//! remembered in a file under `/run`), and an optional second person who checks (four-eyes). The lead
//! maps [`Operators`] to the certificate's `operator` and `verifier`.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use lapterop_certificate::model::Person;
use serde::{Deserialize, Serialize};

use super::input::Input;
use super::{Style, UiConfig};
use crate::i18n::{Key, Lang, SWITCH_KEY};

/// Longest name kept, in characters.
const MAX_NAME: usize = 64;

/// The people recorded in the certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operators {
    /// Who ran the job.
    pub operator: String,
    /// Who checked it, when the site asks for four eyes.
    pub verifier: Option<String>,
}

impl Operators {
    /// The certificate's `operator` and `verifier`.
    pub fn people(&self) -> (Person, Option<Person>) {
        let person = |name: &String| Person {
            name: name.clone(),
            role: None,
        };
        (person(&self.operator), self.verifier.as_ref().map(person))
    }

    /// The operators remembered earlier in this boot, if the file holds them.
    pub fn recall(path: &Path) -> Option<Operators> {
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    /// Remembers the operators for the rest of this boot (`path` lives on a tmpfs such as `/run`).
    pub fn remember(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(path, serde_json::to_vec(self).map_err(io::Error::other)?)
    }
}

/// A typed name cleaned: control characters dropped, spaces collapsed, at most [`MAX_NAME`] characters.
pub fn clean_name(typed: &str) -> String {
    let words: Vec<&str> = typed.split_whitespace().collect();
    words
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect()
}

/// Asks for a name until one is typed; `Ok(None)` when the input closes. An empty line is accepted
/// only when `optional`.
fn ask_name(
    input: &mut dyn Input,
    out: &mut dyn Write,
    lang: &mut Lang,
    style: Style,
    key: Key,
    optional: bool,
    not: Option<&str>,
) -> io::Result<Option<Option<String>>> {
    loop {
        write!(out, "{} ", style.bold(lang.t(key)))?;
        out.flush()?;
        let Some(line) = input.line()? else {
            return Ok(None);
        };
        let name = clean_name(&line);
        if name.eq_ignore_ascii_case(SWITCH_KEY) {
            *lang = lang.other();
        } else if name.is_empty() && optional {
            return Ok(Some(None));
        } else if name.is_empty() {
            writeln!(out, "{}", lang.t(Key::OperatorEmpty))?;
        } else if not.is_some_and(|n| n.eq_ignore_ascii_case(&name)) {
            writeln!(out, "{}", lang.t(Key::VerifierSame))?;
        } else {
            return Ok(Some(Some(name)));
        }
    }
}

/// The operators: the configured name or the one typed, then the second person if the site asks for
/// one. `Ok(None)` when the input closed before a name was given.
pub fn ask(
    input: &mut dyn Input,
    out: &mut dyn Write,
    lang: &mut Lang,
    style: Style,
    config: &UiConfig,
) -> io::Result<Option<Operators>> {
    let operator = match config.operator.as_deref().map(clean_name).filter(|n| !n.is_empty()) {
        Some(name) => name,
        None => match ask_name(input, out, lang, style, Key::OperatorAsk, false, None)? {
            Some(Some(name)) => name,
            _ => return Ok(None),
        },
    };
    let verifier = if config.ask_verifier {
        match ask_name(input, out, lang, style, Key::VerifierAsk, true, Some(&operator))? {
            Some(v) => v,
            None => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some(Operators { operator, verifier }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::input::Keys;

    fn run(typed: &str, config: &UiConfig) -> (Option<Operators>, Lang, String) {
        let mut input = Keys::new(io::Cursor::new(typed.as_bytes().to_vec()));
        let mut out = Vec::new();
        let mut lang = Lang::Nl;
        let got = ask(&mut input, &mut out, &mut lang, Style::PLAIN, config).unwrap();
        (got, lang, String::from_utf8(out).unwrap())
    }

    #[test]
    fn asks_until_a_name_and_a_different_second_person() {
        let config = UiConfig {
            ask_verifier: true,
            ..UiConfig::default()
        };
        let (got, _, out) = run("\n  An   Peeters \nan peeters\nV-017\n", &config);
        let got = got.unwrap();
        assert_eq!(got.operator, "An Peeters");
        assert_eq!(got.verifier.as_deref(), Some("V-017"));
        assert!(out.contains("Typ een naam of een code."));
        assert!(out.contains("De tweede persoon moet iemand anders zijn."));
        let (person, verifier) = got.people();
        assert_eq!(person.name, "An Peeters");
        assert_eq!(verifier.unwrap().name, "V-017");
    }

    #[test]
    fn configured_operator_is_not_asked_and_the_verifier_may_be_skipped() {
        let config = UiConfig {
            operator: Some("Station 3".into()),
            ask_verifier: true,
            ..UiConfig::default()
        };
        let (got, _, out) = run("l\n\n", &config);
        assert_eq!(
            got,
            Some(Operators {
                operator: "Station 3".into(),
                verifier: None
            })
        );
        assert!(!out.contains("vrijwilligerscode"));
        assert!(out.contains("Second person who checks"), "{out}");
        assert_eq!(run("", &UiConfig::default()).0, None);
    }

    #[test]
    fn remembered_for_the_boot() {
        let dir = std::env::temp_dir().join(format!("lapterop-operator-{}", std::process::id()));
        let path = dir.join("operator.json");
        let ops = Operators {
            operator: "Jan".into(),
            verifier: Some("Els".into()),
        };
        ops.remember(&path).unwrap();
        assert_eq!(Operators::recall(&path), Some(ops));
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(Operators::recall(&path), None);
        assert_eq!(clean_name(&"x".repeat(200)).len(), MAX_NAME);
        assert_eq!(clean_name("a\u{7}b"), "ab");
    }
}
