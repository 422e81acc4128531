//! Catalogues of texts in both languages: the [`catalogue!`](crate::catalogue!) macro, placeholders and
//! the checks every catalogue's tests run.

use std::fmt::Debug;

/// A key of a catalogue: one text in English and one in Dutch. [`catalogue!`](crate::catalogue!)
/// implements it; [`Lang::t`](crate::Lang::t) reads it.
pub trait Text: Copy + Debug + PartialEq + 'static {
    /// Every key, in catalogue order.
    const ALL: &'static [Self];

    /// The English text.
    fn en(self) -> &'static str;

    /// The Dutch text.
    fn nl(self) -> &'static str;
}

/// Declares a catalogue: an enum of keys, each with its English and its Dutch text side by side.
///
/// ```
/// lapterop_words::catalogue! {
///     /// Texts of the example.
///     pub enum Hello {
///         Greet => "Hello {name}", "Hallo {name}";
///         Bye => "Goodbye", "Tot ziens";
///     }
/// }
///
/// use lapterop_words::Lang;
/// assert_eq!(Lang::Nl.fill(Hello::Greet, &[("name", "An")]), "Hallo An");
/// assert_eq!(Hello::Bye.en(), "Goodbye");
/// assert!(lapterop_words::check::<Hello>(&[]).is_empty());
/// ```
///
/// A key without both texts does not compile:
///
/// ```compile_fail
/// lapterop_words::catalogue! {
///     /// Texts of the example.
///     pub enum Hello {
///         Greet => "Hello";
///     }
/// }
/// ```
///
/// The enum gets [`Text`], `ALL` (every key in catalogue order) and inherent `en()` / `nl()`, so callers
/// need not import the trait.
#[macro_export]
macro_rules! catalogue {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($key:ident => $en:literal, $nl:literal;)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        $vis enum $name {
            $($key,)+
        }

        impl $name {
            /// Every key, in catalogue order.
            pub const ALL: &'static [$name] = &[$($name::$key,)+];

            /// The English text.
            pub fn en(self) -> &'static str {
                match self {
                    $($name::$key => $en,)+
                }
            }

            /// The Dutch text.
            pub fn nl(self) -> &'static str {
                match self {
                    $($name::$key => $nl,)+
                }
            }
        }

        impl $crate::Text for $name {
            const ALL: &'static [$name] = $name::ALL;

            fn en(self) -> &'static str {
                $name::en(self)
            }

            fn nl(self) -> &'static str {
                $name::nl(self)
            }
        }
    };
}

/// `text` with each `{name}` replaced by the value given for `name`, in one pass: a value that holds
/// braces itself (a serial number, a model name) is not filled again. A placeholder without a value
/// stays as written, so a missing argument shows instead of vanishing.
pub fn fill(text: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let value = after.find('}').and_then(|end| {
            args.iter()
                .find(|(name, _)| *name == &after[..end])
                .map(|(_, v)| (end, v))
        });
        match value {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `{name}` placeholders of a text, sorted (a name used twice is listed twice).
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    out.sort_unstable();
    out
}

/// Words that are English and never Dutch: a Dutch text holding one of them as a word was most likely
/// left untranslated or copied half.
const ENGLISH_ONLY: &[&str] = &[
    "the", "and", "with", "not", "this", "that", "your", "please", "press", "from", "erased", "cannot",
];

/// Every problem of the catalogue `K`, one line each; empty when it is sound. Each program's tests call
/// it on its catalogue and assert that the list is empty.
///
/// A problem is a key with an empty text; a key whose two languages use different placeholders (a value
/// the other language would drop or show as `{name}`); a brace without its partner; a Dutch text equal to
/// the English one, unless the key is in `same_in_both` (a word that is the same in both: `STOP`,
/// `Model`); a key in `same_in_both` whose texts differ after all; a Dutch text with an English-only word
/// (`the`, `and`, `not`, ...).
pub fn check<K: Text>(same_in_both: &[K]) -> Vec<String> {
    let mut problems = Vec::new();
    for &key in K::ALL {
        let (en, nl) = (key.en(), key.nl());
        for (lang, text) in [("English", en), ("Dutch", nl)] {
            if text.trim().is_empty() {
                problems.push(format!("{key:?}: the {lang} text is empty"));
            }
            if text.matches('{').count() != text.matches('}').count() {
                problems.push(format!("{key:?}: the {lang} text has a brace without its partner"));
            }
        }
        if placeholders(en) != placeholders(nl) {
            problems.push(format!(
                "{key:?}: English has placeholders {:?}, Dutch {:?}",
                placeholders(en),
                placeholders(nl)
            ));
        }
        let same = same_in_both.contains(&key);
        if en == nl && !same {
            problems.push(format!("{key:?}: the Dutch text is the English one ({nl:?})"));
        }
        if en != nl && same {
            problems.push(format!(
                "{key:?}: listed as the same in both languages, but they differ"
            ));
        }
        if !same {
            let words = nl
                .split(|c: char| !c.is_alphabetic())
                .filter(|w| ENGLISH_ONLY.iter().any(|e| w.eq_ignore_ascii_case(e)));
            for word in words {
                problems.push(format!("{key:?}: the Dutch text has the English word {word:?}: {nl:?}"));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::catalogue! {
        /// A catalogue with one of each mistake.
        enum Broken {
            Fine => "Disk {disk} is frozen", "Schijf {disk} is bevroren";
            Dropped => "Disk {disk} ({model})", "Schijf {disk}";
            Renamed => "{percent}% left", "nog {procent}%";
            Copied => "Press Enter", "Press Enter";
            Half => "Type the word", "Typ the woord";
            Exempt => "STOP", "STOP";
            WronglyExempt => "Model", "Modell";
            Empty => "Nothing", " ";
            Open => "at {percent", "op {percent";
        }
    }

    #[test]
    fn check_names_every_kind_of_mistake_and_nothing_else() {
        let problems = check(&[Broken::Exempt, Broken::WronglyExempt]);
        let keys: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            keys,
            [
                "Dropped",
                "Renamed",
                "Copied",
                "Copied",
                "Half",
                "WronglyExempt",
                "Empty",
                "Open",
                "Open"
            ],
            "{problems:#?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("English word \"the\"")),
            "{problems:#?}"
        );
    }

    #[test]
    fn fill_replaces_each_named_placeholder_once() {
        assert_eq!(
            fill("{disk} ({model}) of {disk}", &[("disk", "sda"), ("model", "X")]),
            "sda (X) of sda"
        );
        // A value with braces is not filled again; an unknown or unclosed placeholder stays.
        assert_eq!(fill("{a} {b}", &[("a", "{b}"), ("b", "2")]), "{b} 2");
        assert_eq!(fill("{missing} and {open", &[("open", "x")]), "{missing} and {open");
        assert_eq!(fill("no placeholders", &[("a", "b")]), "no placeholders");
        assert_eq!(fill("100%: {n}", &[("n", "ü")]), "100%: ü");
    }

    #[test]
    fn placeholders_are_listed_sorted() {
        assert_eq!(placeholders("{used} of {slots}, {used}"), ["slots", "used", "used"]);
        assert!(placeholders("none {").is_empty());
    }
}
