//! What every crate's tests share: [`skip`], the one way a test that cannot run here says so, and
//! [`python`], the interpreter of the independent checkers.
//!
//! A skipped test must never look like a passed one. libtest captures what a passing test prints with
//! `eprintln!`, so a skip notice printed that way is never seen. [`skip`] instead
//!
//! - writes its line straight to standard error (`std::io::stderr()`, which libtest does not capture),
//! - appends it to the skip log (`LAPTEROP_SKIP_LOG`, which `scripts/test-all.sh` sets and counts at
//!   the end of the run, printing every skipped test), and
//! - fails the test when `LAPTEROP_REQUIRE_ROOT_TESTS=1` (CI), where nothing may be skipped.

use std::io::Write;

/// Whether this run requires every test to run (CI sets `LAPTEROP_REQUIRE_ROOT_TESTS=1`).
pub fn required() -> bool {
    std::env::var("LAPTEROP_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1")
}

/// Says that `test` did not run and why (`why` names what is missing and how to get it): loudly past
/// libtest's capture, counted in the skip log, and as a failure when every test is required.
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIPPED {test}: {why}");
    assert!(
        !required(),
        "LAPTEROP_REQUIRE_ROOT_TESTS=1, so this may not be skipped: {line}"
    );
    let _ = writeln!(std::io::stderr(), "\n!!!!! {line} !!!!!\n");
    if let Some(path) = std::env::var_os("LAPTEROP_SKIP_LOG").filter(|p| !p.is_empty()) {
        log_line(std::path::Path::new(&path), &line);
    }
}

/// Prints a test's own report line (counts a reader of the run should see, e.g. the hostile-input
/// battery's) straight to standard error, past libtest's capture.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The Python of the independent checkers (`LAPTEROP_PYTHON`, else the workspace's
/// `target/pyvenv` that `scripts/setup.sh` makes, with the packages of
/// `scripts/python-requirements.txt`); `None`, after [`skip`] for `test`, when there is none.
pub fn python(test: &str) -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("LAPTEROP_PYTHON") {
        return Some(p.into());
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyvenv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    skip(
        test,
        "needs LAPTEROP_PYTHON or target/pyvenv (scripts/setup.sh: ensure_python_venv)",
    );
    None
}

/// Appends `line` to the skip log at `path`: one write with O_APPEND, so parallel tests never
/// interleave inside a line.
fn log_line(path: &std::path::Path, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_are_appended_one_line_each() {
        let dir = std::env::temp_dir().join(format!("lapterop-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let log = dir.join("skips.txt");
        let _ = std::fs::remove_file(&log);
        log_line(&log, "SKIPPED a: x");
        log_line(&log, "SKIPPED b: y");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap_or_default(),
            "SKIPPED a: x\nSKIPPED b: y\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
