//! The words the agent's screens and the server's pages share: the two languages, the texts both show
//! and how numbers read.
//!
//! A volunteer at the workbench and a donor reading the proof page look at the same disk, so they must
//! read the same words and the same size for it. The agent and the server each had their own language
//! type and their own size formatting, and they disagreed (`67.1 MB` on the screen, `67 MB` on the page;
//! `1.0 TB` on the screen, `1000.2 GB` on the page). This crate owns what both show:
//!
//! - [`Lang`]: Dutch or English, from a config value (`nl`, `nl-BE`, `en_GB`) or a browser's
//!   `Accept-Language` header ([`Lang::from_accept_language`]).
//! - The catalogue mechanism: [`catalogue!`] declares keys with their English and Dutch texts side by
//!   side, so a key without both does not compile; [`Lang::t`] and [`Lang::fill`] (named placeholders
//!   such as `{disk}`) read them; [`check`] finds keys whose languages use different placeholders or
//!   whose Dutch text is English. Each program keeps its own catalogue of its own texts.
//! - [`Word`]: the one catalogue of texts both programs show (the outcome of a disk, the refurbishment
//!   verdict, the parts a laptop needs, "unknown", "not touched").
//! - Numbers: [`size`], [`memory`], [`percent`], [`percent_of`].
//!
//! It depends on `serde` only: the agent is a static binary and the server needs no more.
//!
//! # How numbers read
//!
//! **Disk sizes** ([`size`]) are in decimal units, as disks are sold and labelled: `B`, `kB`, `MB`,
//! `GB`, `TB` (a kilobyte is 1000 bytes). Below 1000 bytes the number of bytes (`512 B`); from there the
//! largest unit the size reaches, with one decimal (`1.0 kB`, `67.1 MB`, `256.0 GB`, `1.0 TB`); above
//! 1000 TB it stays in TB. The decimal is cut, never rounded up, so a size never reads larger than the
//! disk is and never reaches the next unit early: 999 999 999 bytes read `999.9 MB`, not `1000.0 MB`;
//! a "256 GB" disk of 256 060 514 304 bytes reads `256.0 GB`. Transfer rates use the same rule
//! (`100.0 MB/s`). The same rule in both languages (a point, not a comma: the certificate, the
//! `lapterop-cert` checker and disk labels write it so).
//!
//! **Memory** ([`memory`]) is in binary gibibytes, as modules are sold (`8 GiB`), with one decimal only
//! when it is not whole (`7.6 GiB` of usable memory); the decimal is cut as for disks.
//!
//! **Percentages** ([`percent`]) are whole numbers with the sign right after them, in both languages
//! (`87%`); texts in a catalogue write `{percent}%` the same way. A share of work done
//! ([`percent_of`]) is cut too, so `100%` means finished.
//!
//! Durations are not here: the agent shows a running clock (`1:02:05`), the server a lockout in minutes
//! in words; neither shows the other's.

mod catalogue;
mod lang;
mod number;
mod word;

pub use catalogue::{check, fill, placeholders, Text};
pub use lang::Lang;
pub use number::{memory, percent, percent_of, size};
pub use word::Word;
