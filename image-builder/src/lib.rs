//! Lapterop image builder library: everything the live USB image is made from.
//!
//! - [`debian`]: the pinned Debian packages (lock list, verified download cache, extraction);
//! - [`kmod`]: the kernel module set (closure over `modules.dep` and softdeps, staging, depmod);
//! - [`firmware`]: the firmware files the shipped modules name, from the pinned firmware packages;
//! - [`elf`]: what is read from ELF files (a module's `.modinfo`, whether the agent is static);
//! - [`dynlink`]: a dynamically linked Debian program with the interpreter and libraries it needs
//!   (`wpa_supplicant`);
//! - [`hardware`]: real laptops' PCI functions from `lspci -vvnnk` dumps and the modules whose
//!   aliases claim them (the coverage test's measure);
//! - [`initramfs`]: a deterministic, compressed cpio `newc` writer;
//! - [`build_initramfs`]: puts them together into the live initramfs (busybox, modules, agent,
//!   `/init`);
//! - [`tools`]: the filesystem tools on the stick (resize2fs, e2fsck, ntfsresize, ntfsfix) with
//!   their library closure;
//! - [`live`]: the bootable stick image (MBR, GRUB for BIOS, shim + GRUB for UEFI, one FAT32
//!   partition with the kernel, the initramfs and the site's data), built from [`mbr`], [`grub`] and
//!   [`fat`];
//! - [`io`]: the error all of them give when an I/O step on a path fails.
//!
//! `xtask` uses them to boot test VMs.

pub mod debian;
pub mod dynlink;
pub mod elf;
pub mod fat;
pub mod firmware;
pub mod grub;
pub mod hardware;
pub mod initramfs;
/// The workspace's one I/O error (what, path, cause), from the certificate crate.
pub use lapterop_certificate::io;
pub mod kmod;
pub mod live;
pub mod mbr;
pub mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use initramfs::{Initramfs, Node};
use io::{io_err, IoError};
use kmod::KernelTree;

/// The busybox `/init` used when no other is given: mounts the pseudo-filesystems, loads the staged
/// modules, and starts a shell on the console. (The agent replaces it as PID 1 later.)
pub const DEFAULT_INIT: &str = include_str!("init.sh");

/// Errors of [`build_initramfs`].
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Fetching or unpacking a Debian package failed.
    #[error(transparent)]
    Debian(#[from] debian::DebianError),
    /// Choosing or staging modules failed.
    #[error(transparent)]
    Kmod(#[from] kmod::KmodError),
    /// Writing the archive failed.
    #[error(transparent)]
    Initramfs(#[from] initramfs::InitramfsError),
    /// Emptying or creating the stage directory failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// busybox could not list its applets.
    #[error("running {0} --list-full: {1}")]
    Busybox(PathBuf, String),
    /// The agent is to be `/init` but no agent binary was given.
    #[error("the initramfs should start the agent as /init, but no agent binary was given (--agent PATH)")]
    NoAgent,
}

/// What the kernel runs as PID 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// This script (or program) is `/init`.
    Script(Vec<u8>),
    /// The agent is `/init` (`/init` is a symlink to `bin/lapterop-agent`, which starts its boot
    /// sequence when it runs as PID 1).
    Agent,
}

/// What goes into a live initramfs.
#[derive(Debug, Clone)]
pub struct InitramfsSpec {
    /// The unpacked kernel package.
    pub kernel: KernelTree,
    /// The unpacked busybox-static package (holds `bin/busybox`).
    pub busybox_root: PathBuf,
    /// Module names or set names ([`kmod::SETS`]).
    pub modules: Vec<String>,
    /// The static agent, installed as `/bin/lapterop-agent` when given.
    pub agent: Option<PathBuf>,
    /// What `/init` is.
    pub init: Init,
    /// Further files: (archive path, permission bits, bytes).
    pub extra: Vec<(String, u32, Vec<u8>)>,
    /// Further nodes (files from the build host, links): (archive path, permission bits, node).
    pub extra_nodes: Vec<(String, u32, Node)>,
    /// zstd level (19 for release images; lower is faster to build and as fast to boot).
    pub zstd_level: i32,
}

/// Unpacked inputs of a live image: the kernel tree and busybox, from the lock list.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The unpacked kernel package, with modules.dep.
    pub kernel: KernelTree,
    /// The unpacked busybox-static package.
    pub busybox_root: PathBuf,
}

/// Fetches, verifies and unpacks the kernel and busybox packages pinned in `lock`.
pub fn fetch_inputs(lock: &debian::Lock, cache: &debian::Cache) -> Result<Inputs, BuildError> {
    let kernel = KernelTree::open(&cache.extract(lock.get("kernel")?)?)?;
    let busybox_root = cache.extract(lock.get("busybox")?)?;
    Ok(Inputs { kernel, busybox_root })
}

/// The summary of a built initramfs.
#[derive(Debug, Clone)]
pub struct Built {
    /// Modules named in `etc/lapterop/modules` (what `/init` loads), in order.
    pub modules: Vec<String>,
    /// Number of archive entries.
    pub entries: usize,
}

/// Assembles the live initramfs in `stage_dir` (emptied first) and writes it, zstd-compressed, to
/// `out`, with every mtime set to `mtime`.
///
/// Layout: `bin/busybox` with a symlink per applet, `lib/modules/KVER` (closure + depmod output),
/// `etc/lapterop/modules` (modules a script `/init` loads), `bin/lapterop-agent`, `/init` (a script, or
/// a symlink to the agent), `dev/console`, and
/// empty `proc`, `sys`, `dev`, `run`, `tmp`, `mnt`.
pub fn build_initramfs(spec: &InitramfsSpec, stage_dir: &Path, out: &Path, mtime: u32) -> Result<Built, BuildError> {
    if stage_dir.exists() {
        std::fs::remove_dir_all(stage_dir).map_err(io_err("removing", stage_dir))?;
    }
    std::fs::create_dir_all(stage_dir).map_err(io_err("creating", stage_dir))?;
    let names: BTreeSet<String> = kmod::expand_request(&spec.modules);
    let modules = spec.kernel.stage(&names, stage_dir)?;

    let mut fs = Initramfs::new();
    for dir in ["proc", "sys", "dev", "run", "tmp", "mnt", "root", "etc"] {
        fs.dir(dir)?;
    }
    fs.add("dev/console", 0o600, Node::CharDevice(5, 1))?;
    fs.add("dev/null", 0o666, Node::CharDevice(1, 3))?;
    let busybox = spec.busybox_root.join("bin/busybox");
    fs.file("bin/busybox", &busybox)?;
    // A real program given in `extra_nodes` (e2fsck from e2fsprogs, ...) wins over a busybox applet.
    let real: BTreeSet<&str> = spec.extra_nodes.iter().map(|(p, _, _)| p.as_str()).collect();
    for applet in busybox_applets(&busybox)? {
        // `linuxrc` is busybox's own init at the root; ours is `/init`.
        if applet != "bin/busybox" && applet.contains('/') && !real.contains(applet.as_str()) {
            let depth = applet.matches('/').count();
            fs.symlink(&applet, &format!("{}bin/busybox", "../".repeat(depth)))?;
        }
    }
    fs.tree("lib/modules", &stage_dir.join("lib/modules"))?;
    let mut list = modules.join("\n");
    list.push('\n');
    fs.bytes("etc/lapterop/modules", 0o644, list)?;
    if let Some(agent) = &spec.agent {
        fs.file("bin/lapterop-agent", agent)?;
    }
    match &spec.init {
        Init::Script(script) => fs.bytes("init", 0o755, script.clone())?,
        Init::Agent if spec.agent.is_some() => fs.symlink("init", "bin/lapterop-agent")?,
        Init::Agent => return Err(BuildError::NoAgent),
    }
    for (path, perm, data) in &spec.extra {
        fs.bytes(path, *perm, data.clone())?;
    }
    for (path, perm, node) in &spec.extra_nodes {
        fs.add(path, *perm, node.clone())?;
    }
    let entries = fs.paths().count();
    fs.write_zstd(out, mtime, spec.zstd_level)?;
    Ok(Built { modules, entries })
}

/// The applet paths busybox installs itself under (`bin/sh`, `sbin/modprobe`, ...), sorted.
fn busybox_applets(busybox: &Path) -> Result<Vec<String>, BuildError> {
    let output = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| BuildError::Busybox(busybox.to_owned(), e.to_string()))?;
    if !output.status.success() {
        let detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(BuildError::Busybox(busybox.to_owned(), detail));
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    applets.sort();
    applets.dedup();
    Ok(applets)
}
