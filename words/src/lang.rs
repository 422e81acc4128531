//! The two languages, and how a program finds out which one to speak.

use serde::{Deserialize, Serialize};

use crate::catalogue::{fill, Text};

/// A language of the screens and pages. In config files and JSON it is `nl` or `en`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Dutch (the default: most volunteers and donors read Dutch).
    #[default]
    Nl,
    /// English.
    En,
}

impl Lang {
    /// Both languages, Dutch first.
    pub const ALL: [Lang; 2] = [Lang::Nl, Lang::En];

    /// A language code: `nl` / `en`, also with a region (`nl-BE`, `en_GB`) and in any case (`NL`);
    /// `None` for anything else (`fr`, `e`, `english`).
    pub fn parse(code: &str) -> Option<Lang> {
        let primary = code.trim().split(['-', '_']).next()?;
        if primary.eq_ignore_ascii_case("nl") {
            Some(Lang::Nl)
        } else if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The preferred of Dutch and English in an HTTP `Accept-Language` header (RFC 9110, 12.5.4): the
    /// one with the highest q-value, the first listed on a tie; Dutch when the header names neither.
    /// A range with `q=0` is refused, one with a q-value outside 0 to 1 is ignored.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for range in header.split(',') {
            let mut params = range.split(';');
            let Some(lang) = params.next().and_then(Lang::parse) else {
                continue;
            };
            let q = params
                .find_map(|p| {
                    let (name, value) = p.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| value.trim().parse::<f32>().ok())
                })
                .unwrap_or(Some(1.0));
            let Some(q) = q.filter(|q| (0.0..=1.0).contains(q)) else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::Nl, |(_, lang)| lang)
    }

    /// Two-letter code (`nl`, `en`), as in `?lang=` and the page's `lang` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Nl => "nl",
            Lang::En => "en",
        }
    }

    /// The other language (what a switch link or key switches to).
    pub fn other(self) -> Lang {
        match self {
            Lang::Nl => Lang::En,
            Lang::En => Lang::Nl,
        }
    }

    /// The text of a catalogue key in this language.
    pub fn t<K: Text>(self, key: K) -> &'static str {
        match self {
            Lang::Nl => key.nl(),
            Lang::En => key.en(),
        }
    }

    /// The text of a catalogue key in this language with each `{name}` replaced by its value (see
    /// [`fill`]).
    pub fn fill<K: Text>(self, key: K, args: &[(&str, &str)]) -> String {
        fill(self.t(key), args)
    }

    /// One of two texts written in place (`lang.pick("Log in", "Aanmelden")`), for a text only one
    /// program shows and only one place uses; texts both programs show belong in [`crate::Word`].
    pub fn pick(self, en: &str, nl: &str) -> String {
        match self {
            Lang::Nl => nl.to_owned(),
            Lang::En => en.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_with_regions_and_any_case_parse() {
        assert_eq!(Lang::parse("nl"), Some(Lang::Nl));
        assert_eq!(Lang::parse("nl-BE"), Some(Lang::Nl));
        assert_eq!(Lang::parse(" NL "), Some(Lang::Nl));
        assert_eq!(Lang::parse("EN_gb"), Some(Lang::En));
        assert_eq!(Lang::parse("en"), Some(Lang::En));
        for bad in ["fr", "e", "", "english", "nederlands", "nlx", "*"] {
            assert_eq!(Lang::parse(bad), None, "{bad:?}");
        }
        for lang in Lang::ALL {
            assert_eq!(Lang::parse(lang.code()), Some(lang));
            assert_eq!(lang.other().other(), lang);
            assert_ne!(lang.other(), lang);
        }
    }

    #[test]
    fn accept_language_picks_the_preferred_of_dutch_and_english() {
        assert_eq!(Lang::from_accept_language("en-GB,en;q=0.9,nl;q=0.8"), Lang::En);
        assert_eq!(Lang::from_accept_language("fr, nl-BE;q=0.9, en;q=0.5"), Lang::Nl);
        assert_eq!(Lang::from_accept_language("de"), Lang::Nl);
        assert_eq!(Lang::from_accept_language(""), Lang::Nl);
        assert_eq!(Lang::from_accept_language("nl;q=0, en;q=0.1"), Lang::En);
        // A tie goes to the first listed; parameter names are case-insensitive.
        assert_eq!(Lang::from_accept_language("en;q=0.5, nl;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept_language("nl;Q=0.2, en;q=0.3"), Lang::En);
        // Nonsense q-values do not win.
        assert_eq!(Lang::from_accept_language("en;q=7, nl;q=0.1"), Lang::Nl);
        assert_eq!(Lang::from_accept_language("en;q=NaN, nl;q=0.1"), Lang::Nl);
        assert_eq!(Lang::from_accept_language("en;q=, nl;q=0.1"), Lang::Nl);
        // Only refusals: the default.
        assert_eq!(Lang::from_accept_language("en;q=0"), Lang::Nl);
    }

    #[test]
    fn serde_is_the_lowercase_code_and_nothing_else() {
        assert_eq!(serde_json::to_string(&Lang::Nl).unwrap(), "\"nl\"");
        assert_eq!(serde_json::from_str::<Lang>("\"en\"").unwrap(), Lang::En);
        assert!(serde_json::from_str::<Lang>("\"EN\"").is_err());
        assert!(serde_json::from_str::<Lang>("\"fr\"").is_err());
        assert_eq!(Lang::default(), Lang::Nl);
    }

    #[test]
    fn pick_takes_the_text_of_the_language() {
        assert_eq!(Lang::En.pick("Log in", "Aanmelden"), "Log in");
        assert_eq!(Lang::Nl.pick("Log in", "Aanmelden"), "Aanmelden");
    }
}
