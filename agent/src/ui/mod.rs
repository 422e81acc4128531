//! The volunteer's screens at the workbench, as building blocks the flow is assembled from.
//!
//! Every screen is a function from plain data to a `String` ([`screens`]), so tests read exactly what a
//! volunteer sees; colour is ANSI on a terminal and absent on a serial console or a pipe ([`Style`]).
//! Input goes through the [`input::Input`] trait (lines and single keys with a timeout) so tests drive the
//! confirmation, the countdown and the operator prompt from a script ([`confirm`], [`operator`]).
//! Progress uses `indicatif` on a terminal and plain lines at most once a second elsewhere ([`progress`]).
//! The donor page's QR code is drawn in the terminal ([`qr`]). Texts come from [`crate::i18n`].
//!
//! The disk layer fills [`PlanDisk`]; the wipe and install layers fill [`screens::DiskResult`],
//! [`screens::InstallState`] and [`screens::UploadState`].

pub mod confirm;
pub mod demo;
pub mod disk_bars;
pub mod input;
pub mod operator;
pub mod progress;
pub mod psid;
pub mod qr;
pub mod screens;

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};

use crate::i18n::Lang;

/// A size as disks are sold (`256.0 GB`): the rule the server's pages use too.
pub use lapterop_words::size as human_size;

pub use crate::plan::{Exclusion, Health, Method, PlanDisk};

/// Colours used on screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    /// Success.
    Green,
    /// Needs attention.
    Yellow,
    /// Failure or danger.
    Red,
    /// Headings.
    Cyan,
}

/// Serial lines and hypervisor consoles: plain text there, whatever `TERM` says.
const SERIAL_TTYS: &[&str] = &["/dev/ttyS", "/dev/ttyUSB", "/dev/ttyAMA", "/dev/hvc"];

/// How text is drawn: with ANSI colour on a terminal, plain on a serial console or a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Whether ANSI colour codes are written.
    pub colour: bool,
}

impl Style {
    /// No colour (serial console, pipe, tests).
    pub const PLAIN: Style = Style { colour: false };

    /// Colour when standard output is a terminal that is not a serial line and `NO_COLOR` is unset.
    pub fn detect() -> Style {
        let tty = std::io::stdout().is_terminal();
        let serial = std::fs::read_link("/proc/self/fd/1")
            .map(|p| {
                let p = p.to_string_lossy();
                SERIAL_TTYS.iter().any(|prefix| p.starts_with(prefix))
            })
            .unwrap_or(false);
        let dumb = std::env::var("TERM").map(|t| t == "dumb").unwrap_or(true);
        Style {
            colour: tty && !serial && !dumb && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// `text` in `colour` (foreground, bold).
    pub fn fg(self, colour: Colour, text: &str) -> String {
        self.wrap(&format!("1;{}", 30 + colour.ansi()), text)
    }

    /// `text` in black on a `colour` background, bold: the result banners.
    pub fn banner(self, colour: Colour, text: &str) -> String {
        self.wrap(&format!("1;30;{}", 40 + colour.ansi()), text)
    }

    /// Bold.
    pub fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }

    fn wrap(self, sgr: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

impl Colour {
    fn ansi(self) -> u8 {
        match self {
            Colour::Red => 1,
            Colour::Green => 2,
            Colour::Yellow => 3,
            Colour::Cyan => 6,
        }
    }
}

/// The screen settings from the site config (`[ui]` table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Language at boot: `nl` or `en`.
    pub language: Lang,
    /// A word to type instead of the serial's last four characters (at least four letters or digits).
    pub confirm_word: Option<String>,
    /// Run without a typed confirmation after a countdown of this many seconds (any key cancels).
    pub unattended_countdown_secs: Option<u32>,
    /// The operator's name or code, when the station always has the same one.
    pub operator: Option<String>,
    /// Ask for a second person who checks (four-eyes).
    pub ask_verifier: bool,
    /// Below this battery level an unplugged laptop stops at pre-flight, percent.
    pub battery_min_percent: u32,
    /// Keyboard layout of the laptop's console (a busybox binary keymap `NAME.bmap`: `be`, `us`, ...).
    pub keymap: Option<String>,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            language: Lang::Nl,
            confirm_word: None,
            unattended_countdown_secs: None,
            operator: None,
            ask_verifier: false,
            battery_min_percent: 30,
            keymap: None,
        }
    }
}

/// Colour and progress bars only on the laptop's own screen. The kernel gives PID 1 `TERM=linux`
/// whatever `/dev/console` is, so `TERM` says nothing here: the last entry of
/// `/sys/class/tty/console/active` is the device behind `/dev/console` (the kernel's documentation of
/// that file), and only a virtual terminal (`tty0`, `tty1`) gets colour and bars. A serial line gets
/// plain lines, at most one a second per disk.
pub fn console_style() -> Style {
    let on_console = std::fs::read_link("/proc/self/fd/1").is_ok_and(|p| p == std::path::Path::new("/dev/console"));
    if !on_console {
        return Style::detect();
    }
    let active = std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
    Style {
        colour: console_is_virtual_terminal(&active) && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Whether the device behind `/dev/console` (the last name in `/sys/class/tty/console/active`, e.g.
/// `ttyS0 tty0`) is a virtual terminal.
pub fn console_is_virtual_terminal(active: &str) -> bool {
    active.split_whitespace().last().is_some_and(|n| {
        n.strip_prefix("tty")
            .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
    })
}

/// Whether progress bars may be drawn on standard error: it is a terminal, and when it is
/// `/dev/console`, the console is a virtual terminal (see [`console_style`]).
pub fn bars_on_stderr() -> bool {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return false;
    }
    if std::fs::read_link("/proc/self/fd/2").is_ok_and(|p| p == std::path::Path::new("/dev/console")) {
        let active = std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
        return console_is_virtual_terminal(&active);
    }
    true
}

/// Lines on the terminal of standard output (`None` on a serial line or a pipe, which report no size).
pub fn terminal_rows() -> Option<usize> {
    console::Term::stdout()
        .size_checked()
        .map(|(rows, _)| usize::from(rows))
        .filter(|r| *r > 0)
}

impl UiConfig {
    /// Checks the values a person wrote; one line saying what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(word) = &self.confirm_word {
            if word.chars().filter(char::is_ascii_alphanumeric).count() < 4 || word.eq_ignore_ascii_case("q") {
                return Err(format!(
                    "ui.confirm_word {word:?}: use a word of at least four letters or digits"
                ));
            }
        }
        if let Some(map) = &self.keymap {
            let ok = !map.is_empty()
                && map.len() <= 32
                && map.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
            if !ok {
                return Err(format!(
                    "ui.keymap {map:?}: use a keymap name such as \"be\" or \"us\" (letters, digits, - and _)"
                ));
            }
        }
        if self.battery_min_percent > 100 {
            return Err(format!(
                "ui.battery_min_percent {}: use 0 to 100",
                self.battery_min_percent
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_when_the_console_is_a_virtual_terminal() {
        assert!(console_is_virtual_terminal("tty0\n"));
        // The stick's own command line (console=ttyS0,115200 console=tty0): the screen.
        assert!(console_is_virtual_terminal("ttyS0 tty0\n"));
        // A test stick appends console=ttyS0,115200: the serial line.
        assert!(!console_is_virtual_terminal("tty0 ttyS0\n"));
        assert!(!console_is_virtual_terminal("hvc0"));
        assert!(!console_is_virtual_terminal("tty"));
        assert!(!console_is_virtual_terminal(""));
    }

    #[test]
    fn plain_style_writes_no_escape_codes() {
        assert_eq!(Style::PLAIN.banner(Colour::Red, "NIET GEWIST"), "NIET GEWIST");
        assert!(Style { colour: true }
            .banner(Colour::Red, "X")
            .contains("\x1b[1;30;41m"));
    }

    #[test]
    fn config_refuses_a_short_confirm_word() {
        let mut c = UiConfig {
            confirm_word: Some("ok".into()),
            ..UiConfig::default()
        };
        assert!(c.validate().is_err());
        c.confirm_word = Some("wissen".into());
        assert!(c.validate().is_ok());
    }
}
