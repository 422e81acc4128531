//! Progress of every disk's steps: `indicatif` bars on a terminal (step, bytes, throughput, ETA), plain
//! lines at most once a second per task on a serial console or a pipe. A firmware command that reports
//! no progress (ATA SECURITY ERASE, NVMe Format) shows a spinner and the elapsed time, never a made-up
//! percentage.

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use lapterop_words::{percent, percent_of};

use super::human_size;
use crate::i18n::{Key, Lang};

/// Plain lines come at most this often per task.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

/// A step of the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A firmware erase (sanitize, secure erase, format).
    Firmware,
    /// Host overwrite.
    Overwrite,
    /// Read-back verification.
    Verify,
    /// Writing the OS image.
    Install,
}

impl Step {
    fn key(self) -> Key {
        match self {
            Step::Firmware => Key::StepFirmware,
            Step::Overwrite => Key::StepOverwrite,
            Step::Verify => Key::StepVerify,
            Step::Install => Key::StepInstall,
        }
    }
}

/// A task's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskId(usize);

#[derive(Debug)]
struct Task {
    disk: String,
    step: Step,
    total: Option<u64>,
    done: u64,
    started: Instant,
    printed: Option<Instant>,
    finished: bool,
}

/// `m:ss` or `h:mm:ss`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Bytes a second, the average since the start; 0 before a millisecond has passed.
pub fn rate(done: u64, elapsed: Duration) -> u64 {
    let millis = elapsed.as_millis();
    if millis == 0 {
        return 0;
    }
    u64::try_from(u128::from(done) * 1000 / millis).unwrap_or(u64::MAX)
}

/// `style` with the keys `{size}`, `{total_size}` and `{rate}`, which read as [`human_size`] (and the
/// plan screen, and the server's pages) say: indicatif's own `{bytes}` writes `256.06 GB`, its
/// `{binary_bytes}` GiB.
pub fn with_sizes(style: ProgressStyle) -> ProgressStyle {
    style
        .with_key("size", |s: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = w.write_str(&human_size(s.pos()));
        })
        .with_key("total_size", |s: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = w.write_str(&s.len().map(human_size).unwrap_or_default());
        })
        .with_key("rate", |s: &ProgressState, w: &mut dyn fmt::Write| {
            let _ = write!(w, "{}/s", human_size(rate(s.pos(), s.elapsed())));
        })
}

/// The plain line for a task at `now`.
fn plain_line(lang: Lang, t: &Task, now: Instant) -> String {
    let elapsed = now.saturating_duration_since(t.started);
    let head = format!("{:<10} {:<18}", t.disk, lang.t(t.step.key()));
    let Some(total) = t.total else {
        return format!(
            "{head} {}; {} {}",
            lang.t(Key::NoProgressReported),
            lang.t(Key::Elapsed),
            clock(elapsed)
        );
    };
    let mut line = format!(
        "{head} {} / {}  {:>4}",
        human_size(t.done),
        human_size(total),
        percent(percent_of(t.done, total))
    );
    let millis = elapsed.as_millis();
    if millis > 0 && t.done > 0 {
        line.push_str(&format!("  {}/s", human_size(rate(t.done, elapsed))));
        let left_ms = u128::from(total.saturating_sub(t.done)) * millis / u128::from(t.done);
        let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(u64::MAX));
        line.push_str(&format!("  {} {}", lang.t(Key::Eta), clock(left)));
    }
    line
}

#[derive(Debug)]
enum Mode<W: Write> {
    Bars(MultiProgress, Vec<ProgressBar>),
    Plain(W),
}

/// Progress of all tasks.
#[derive(Debug)]
pub struct Progress<W: Write> {
    lang: Lang,
    mode: Mode<W>,
    tasks: Vec<Task>,
}

impl<W: Write> Progress<W> {
    /// Plain lines written to `out`.
    pub fn plain(lang: Lang, out: W) -> Self {
        Self {
            lang,
            mode: Mode::Plain(out),
            tasks: Vec::new(),
        }
    }

    /// Bars on the terminal (standard error), with `out` unused.
    pub fn bars(lang: Lang) -> Self {
        Self {
            lang,
            mode: Mode::Bars(
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)),
                Vec::new(),
            ),
            tasks: Vec::new(),
        }
    }

    /// Starts a task; `total` bytes, or `None` when the step reports no progress.
    pub fn start(&mut self, disk: &str, step: Step, total: Option<u64>) -> TaskId {
        let id = TaskId(self.tasks.len());
        self.tasks.push(Task {
            disk: disk.to_string(),
            step,
            total,
            done: 0,
            started: Instant::now(),
            printed: None,
            finished: false,
        });
        let lang = self.lang;
        if let Mode::Bars(multi, bars) = &mut self.mode {
            let bar = match total {
                Some(total) => {
                    let bar = multi.add(ProgressBar::new(total));
                    let template = format!(
                        "{{prefix:10}} {{msg:18}} [{{wide_bar}}] {{size}}/{{total_size}} {{rate}} {} {{eta}}",
                        lang.t(Key::Eta)
                    );
                    if let Ok(style) = ProgressStyle::with_template(&template) {
                        bar.set_style(with_sizes(style).progress_chars("=> "));
                    }
                    bar
                }
                None => {
                    let bar = multi.add(ProgressBar::new_spinner());
                    let template = format!(
                        "{{prefix:10}} {{msg:18}} {{spinner}} {}; {} {{elapsed_precise}}",
                        lang.t(Key::NoProgressReported),
                        lang.t(Key::Elapsed)
                    );
                    if let Ok(style) = ProgressStyle::with_template(&template) {
                        bar.set_style(style);
                    }
                    bar.enable_steady_tick(Duration::from_millis(250));
                    bar
                }
            };
            bar.set_prefix(disk.to_string());
            bar.set_message(lang.t(step.key()));
            bars.push(bar);
        } else {
            self.print(id, Instant::now(), true);
        }
        id
    }

    /// `done` bytes of the task are finished.
    pub fn set(&mut self, id: TaskId, done: u64) {
        self.set_at(id, done, Instant::now());
    }

    /// As [`Progress::set`], at a given time (tests).
    pub fn set_at(&mut self, id: TaskId, done: u64, now: Instant) {
        if let Some(t) = self.tasks.get_mut(id.0) {
            t.done = done;
        }
        match &mut self.mode {
            Mode::Bars(_, bars) => {
                if let Some(bar) = bars.get(id.0) {
                    bar.set_position(done);
                }
            }
            Mode::Plain(_) => self.print(id, now, false),
        }
    }

    /// For plain output: prints the elapsed time of tasks that report no progress (call it now and then).
    pub fn tick_at(&mut self, now: Instant) {
        for i in 0..self.tasks.len() {
            if self.tasks[i].total.is_none() && !self.tasks[i].finished {
                self.print(TaskId(i), now, false);
            }
        }
    }

    /// One line between the progress lines (above the bars on a terminal): the network changed.
    pub fn note(&mut self, line: &str) {
        match &mut self.mode {
            Mode::Bars(multi, _) => {
                let _ = multi.println(line);
            }
            Mode::Plain(out) => {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    }

    /// Ends the task with a last line (`done`, `failed: ...`).
    pub fn finish(&mut self, id: TaskId, message: &str) {
        let now = Instant::now();
        if let Some(t) = self.tasks.get_mut(id.0) {
            t.finished = true;
        }
        match &mut self.mode {
            Mode::Bars(_, bars) => {
                if let Some(bar) = bars.get(id.0) {
                    bar.finish_with_message(format!("{} {message}", self.lang.t(self.tasks[id.0].step.key())));
                }
            }
            Mode::Plain(out) => {
                if let Some(t) = self.tasks.get(id.0) {
                    let _ = writeln!(out, "{}  {message}", plain_line(self.lang, t, now));
                    let _ = out.flush();
                }
            }
        }
    }

    fn print(&mut self, id: TaskId, now: Instant, force: bool) {
        let Mode::Plain(out) = &mut self.mode else { return };
        let Some(t) = self.tasks.get_mut(id.0) else { return };
        if !force
            && t.printed
                .is_some_and(|p| now.saturating_duration_since(p) < PLAIN_EVERY)
        {
            return;
        }
        t.printed = Some(now);
        let _ = writeln!(out, "{}", plain_line(self.lang, t, now));
        let _ = out.flush();
    }

    /// The plain output (tests).
    pub fn into_inner(self) -> Option<W> {
        match self.mode {
            Mode::Plain(out) => Some(out),
            Mode::Bars(..) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_at_most_once_a_second_with_rate_and_eta() {
        let mut p = Progress::plain(Lang::En, Vec::new());
        let id = p.start("sda", Step::Overwrite, Some(4_000_000_000));
        let t0 = p.tasks[0].started;
        // Ten updates within 0.9 s after the start line: none printed.
        for i in 1..10 {
            p.set_at(id, i * 10_000_000, t0 + Duration::from_millis(i * 90));
        }
        p.set_at(id, 1_000_000_000, t0 + Duration::from_secs(10));
        p.set_at(id, 1_000_000_001, t0 + Duration::from_millis(10_500));
        let out = String::from_utf8(p.into_inner().unwrap()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("sda        overwriting"), "{out}");
        assert!(lines[1].contains("1.0 GB / 4.0 GB   25%"), "{out}");
        assert!(lines[1].contains("100.0 MB/s"), "{out}");
        assert!(lines[1].ends_with("left 0:30"), "{out}");
    }

    #[test]
    fn firmware_steps_show_elapsed_time_not_a_percentage() {
        let mut p = Progress::plain(Lang::Nl, Vec::new());
        p.start("nvme0n1", Step::Firmware, None);
        let t0 = p.tasks[0].started;
        p.tick_at(t0 + Duration::from_secs(42));
        p.tick_at(t0 + Duration::from_millis(42_500));
        p.tick_at(t0 + Duration::from_secs(3725));
        let out = String::from_utf8(p.into_inner().unwrap()).unwrap();
        assert!(!out.contains('%'), "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[1].ends_with("de schijf meldt geen voortgang; verstreken 0:42"),
            "{out}"
        );
        assert!(lines[2].ends_with("verstreken 1:02:05"), "{out}");
    }
}
