//! Helpers shared by the agent's root-only integration tests: loud skips, commands that must
//! succeed, loop devices over test files detached on drop.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod httpd;
pub mod osimage;
pub mod putd;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const MIB: u64 = 1 << 20;

/// True when the test can run; otherwise says so loudly (and fails in CI).
pub fn root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() && Path::new("/dev/loop-control").exists() {
        return true;
    }
    lapterop_testkit::skip(test, "needs root and loop devices");
    false
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    out
}

pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A loop device over a file in its own temporary directory; detached on drop.
pub struct Loop {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    pub dev: String,
}

impl Loop {
    /// `size` bytes of random content, logical sector size `sector`, optionally `--direct-io=on`.
    pub fn new(size: u64, sector: u32) -> Self {
        Self::prepared(size, sector, |_| {}, &[])
    }

    /// Like [`Loop::new`], with `prepare` run on the file before it is attached with `args`.
    pub fn prepared(size: u64, sector: u32, prepare: impl FnOnce(&Path), args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk.img");
        ok(Command::new("dd")
            .args(["if=/dev/urandom", "bs=1M", "status=none", "iflag=fullblock"])
            .arg(format!("of={}", file.display()))
            .arg(format!("count={}", size / MIB)));
        prepare(&file);
        let dev = ok(Command::new("losetup")
            .args(["--find", "--show", "--sector-size", &sector.to_string()])
            .args(args)
            .arg(&file));
        Self { dir, file, dev }
    }

    pub fn name(&self) -> &str {
        self.dev.trim_start_matches("/dev/")
    }

    /// A read-only loop device over `len` bytes of `file` from `offset` (one partition of a disk image).
    pub fn over(file: &Path, offset: u64, len: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dev = ok(Command::new("losetup")
            .args([
                "--find",
                "--show",
                "--read-only",
                "--offset",
                &offset.to_string(),
                "--sizelimit",
                &len.to_string(),
            ])
            .arg(file));
        Self {
            dir,
            file: file.to_owned(),
            dev,
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

pub fn agent() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lapterop-agent"))
}
