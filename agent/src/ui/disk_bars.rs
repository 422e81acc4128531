//! The wipe's progress per disk on standard error, for the command-line front-ends (`wipe`, `run`):
//! `indicatif` bars on a terminal, plain lines at most once a second otherwise (serial console, log
//! file). The volunteer's screens draw their own ([`super::progress`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lapterop_words::{percent, percent_of, size};

use super::progress::{rate, with_sizes};

/// All disks' progress.
#[derive(Debug)]
pub struct Ui {
    multi: Option<MultiProgress>,
}

impl Default for Ui {
    fn default() -> Self {
        Self::new()
    }
}

impl Ui {
    /// Bars on a terminal standard error, plain lines otherwise.
    pub fn new() -> Self {
        // Bars on a terminal, but never on a serial /dev/console (the live image's unattended mode).
        let multi = super::bars_on_stderr().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { multi }
    }

    /// The progress of disk `name`.
    pub fn disk(&self, name: &str) -> DiskProgress {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(0));
            let style =
                ProgressStyle::with_template("{prefix:>9} {msg:28} [{bar:30}] {size}/{total_size} {rate} ETA {eta}")
                    .map(with_sizes)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            b.set_style(style);
            b.set_prefix(name.to_string());
            b
        });
        DiskProgress {
            name: name.to_string(),
            bar,
            plain: Mutex::new(Plain {
                label: String::new(),
                total: 0,
                started: Instant::now(),
                last: Instant::now(),
            }),
        }
    }
}

#[derive(Debug)]
struct Plain {
    label: String,
    total: u64,
    started: Instant,
    last: Instant,
}

/// One disk's progress.
#[derive(Debug)]
pub struct DiskProgress {
    name: String,
    bar: Option<ProgressBar>,
    plain: Mutex<Plain>,
}

impl crate::wipe::Progress for DiskProgress {
    fn phase(&self, label: &str, total: u64) {
        if let Some(b) = &self.bar {
            b.reset();
            b.set_length(total);
            b.set_message(label.to_string());
        } else if let Ok(mut p) = self.plain.lock() {
            *p = Plain {
                label: label.to_string(),
                total,
                started: Instant::now(),
                last: Instant::now(),
            };
            eprintln!("{}: {label}: started, {}", self.name, size(total));
        }
    }

    fn update(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
            return;
        }
        let Ok(mut p) = self.plain.lock() else { return };
        let finished = done >= p.total;
        if !finished && p.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        p.last = Instant::now();
        let rate = rate(done, p.started.elapsed());
        let eta = p.total.saturating_sub(done).checked_div(rate).unwrap_or(0);
        eprintln!(
            "{}: {}: {}/{} ({}), {}/s, ETA {eta} s",
            self.name,
            p.label,
            size(done),
            size(p.total),
            percent(percent_of(done, p.total)),
            size(rate),
        );
    }

    fn finish(&self, outcome: &lapterop_certificate::DiskOutcome) {
        let outcome = crate::wipe::outcome_words(outcome);
        if let Some(b) = &self.bar {
            b.finish_with_message(outcome.chars().take(28).collect::<String>());
        }
        eprintln!("{}: {outcome}", self.name);
    }
}
