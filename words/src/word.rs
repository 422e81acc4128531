//! The texts both programs show: what the volunteer's screen says about a disk or a laptop, the donor's
//! page and the review page say with the same words.

use crate::Lang;

crate::catalogue! {
    /// A text the agent's screens and the server's pages both show.
    ///
    /// The outcome words are in lower case, with `NOT` / `NIET` in capitals so it cannot be overlooked;
    /// the agent's result banners show them in capitals. The verdicts begin with their status in
    /// capitals, as a stamp. The part names are those of the certificate's `host.verdict.needs`
    /// ([`Word::part`]).
    pub enum Word {
        // A disk's outcome (the certificate's `outcome.status`).
        Erased => "erased", "gewist";
        ErasedWithExceptions => "erased with exceptions", "gewist met uitzonderingen";
        NotErased => "NOT erased", "NIET gewist";
        // A disk left alone (the boot stick, a USB disk, one not chosen).
        NotTouched => "NOT touched", "NIET aangeraakt";

        // The refurbishment verdict (the certificate's `host.verdict.status`).
        Ready => "READY to hand out", "KLAAR om uit te delen";
        NeedsParts => "NEEDS PARTS: {parts}", "HEEFT ONDERDELEN NODIG: {parts}";
        PartsOnly => "PARTS ONLY: not worth refurbishing", "ALLEEN ONDERDELEN: herstellen loont niet";
        // The parts of `host.verdict.needs`.
        PartRam => "memory", "geheugen";
        PartDisk => "disk", "schijf";
        PartBattery => "battery", "batterij";
        PartCharger => "charger", "lader";
        PartScreen => "screen", "scherm";
        PartInspection => "a check by hand", "een controle met de hand";

        // A value the certificate or the laptop does not give (a model, a serial number).
        Unknown => "unknown", "onbekend";
    }
}

impl Word {
    /// The word for a part name of the certificate's `host.verdict.needs` (`ram`, `disk`, `battery`,
    /// `charger`, `screen`, `inspection`); `None` for a name this version does not know.
    pub fn part(name: &str) -> Option<Word> {
        Some(match name {
            "ram" => Word::PartRam,
            "disk" => Word::PartDisk,
            "battery" => Word::PartBattery,
            "charger" => Word::PartCharger,
            "screen" => Word::PartScreen,
            "inspection" => Word::PartInspection,
            _ => return None,
        })
    }

    /// The parts of `host.verdict.needs` in words, joined with commas (`geheugen, batterij`); a name this
    /// version does not know is shown as it is.
    pub fn parts<S: AsRef<str>>(lang: Lang, needs: &[S]) -> String {
        needs
            .iter()
            .map(|n| Word::part(n.as_ref()).map_or(n.as_ref(), |w| lang.t(w)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_words_are_complete_in_both_languages() {
        let problems = crate::check::<Word>(&[]);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn parts_read_in_the_language_and_unknown_names_as_they_are() {
        let needs = ["ram", "battery", "inspection", "keyboard"];
        assert_eq!(
            Word::parts(Lang::Nl, &needs),
            "geheugen, batterij, een controle met de hand, keyboard"
        );
        assert_eq!(
            Lang::En.fill(Word::NeedsParts, &[("parts", &Word::parts(Lang::En, &needs[..1]))]),
            "NEEDS PARTS: memory"
        );
    }
}
