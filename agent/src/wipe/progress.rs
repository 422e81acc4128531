//! Progress per disk: `indicatif` bars on a terminal, plain lines at most once a second otherwise
//! (serial console, log file).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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
        let multi = crate::ui::bars_on_stderr().then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self { multi }
    }

    /// The progress of disk `name`.
    pub fn disk(&self, name: &str) -> DiskProgress {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(0));
            let style = ProgressStyle::with_template(
                "{prefix:>9} {msg:28} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
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

impl super::Progress for DiskProgress {
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
            eprintln!("{}: {label}: started, {:.1} MB", self.name, total as f64 / 1e6);
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
        let secs = p.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 {
            (p.total - done.min(p.total)) as f64 / rate
        } else {
            0.0
        };
        eprintln!(
            "{}: {}: {:.1}/{:.1} MB ({:.0}%), {:.0} MB/s, ETA {:.0} s",
            self.name,
            p.label,
            done as f64 / 1e6,
            p.total as f64 / 1e6,
            100.0 * done as f64 / p.total.max(1) as f64,
            rate / 1e6,
            eta
        );
    }

    fn finish(&self, outcome: &lapterop_certificate::DiskOutcome) {
        let outcome = super::outcome_words(outcome);
        if let Some(b) = &self.bar {
            b.finish_with_message(outcome.chars().take(28).collect::<String>());
        }
        eprintln!("{}: {outcome}", self.name);
    }
}
