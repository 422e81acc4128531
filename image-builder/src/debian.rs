//! Pinned Debian packages: the lock list, the download cache, and extraction.
//!
//! The live image is made of Debian's own binaries (the signed kernel and its modules, busybox-static,
//! shim and GRUB). Which exact `.deb` files go in is decided by a committed lock list,
//! `image-builder/debian.lock`, one package per line:
//!
//! ```text
//! # role    package                      version      arch   suite              sha256
//! kernel    linux-image-6.1.0-56-amd64   6.1.192-2    amd64  bookworm-security  0f3c…
//! busybox   busybox-static               1:1.35.0-4…  amd64  bookworm           3d3f…
//! ```
//!
//! The *role* is how the builder finds a package (the kernel package's name changes with each ABI
//! bump). Packages are fetched with `apt-get download PACKAGE=VERSION` (the host's apt sources and
//! keys, no root needed), kept in a cache directory, and every file is checked against the pinned
//! sha256 before use, whether it was just downloaded or already cached. Extraction uses
//! `dpkg-deb -x` into a cache directory named after the sha256, so a package is unpacked once.
//!
//! Debian removes superseded versions from its mirrors (security updates replace kernels); a
//! pinned version that apt no longer offers is a [`DebianError::NotDownloadable`] that says to run
//! `lapterop-image-builder lock refresh`, which rewrites the lock from what apt offers now
//! ([`refresh`]).
//!
//! Each root names its architecture the way apt does (`shim-signed:i386`; no suffix means
//! [`ARCH`]). The 32-bit UEFI boot chain comes from Debian's i386 archive, which a build host's apt
//! usually does not list (that takes `dpkg --add-architecture i386`, a change to the host). For an
//! architecture the host's apt does not list, the builder keeps a private apt state in the cache
//! (`<cache>/apt-<arch>/`): the host's sources and keys, with package lists of its own that it
//! fetches with `apt-get update` on first use, on `lock refresh`, and when a pinned version is not in
//! them. The host's configuration and lists are never changed, and no root is needed.
//!
//! **Firmware** comes from Debian's `non-free-firmware` component, which the build hosts' apt
//! sources do not enable and which the builder must not enable for them. The roles in
//! [`NON_FREE_FIRMWARE_ROLES`] are fetched through apt with a source list and state of the builder's
//! own ([`NonFreeApt`], under the cache directory: the host's Debian mirrors and suites, component
//! `non-free-firmware` only, checked against Debian's archive keyring), and the lock's sha256 is
//! checked on them like on every other package. The host's `/etc/apt` is never written.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::io::{io_err, IoError};

/// The packages a lock list pins, as (role, apt package to resolve). A root ending in a metapackage
/// (`linux-image-amd64`) is resolved to the versioned package it depends on.
pub const ROOTS: &[(&str, &str)] = &[
    ("kernel", "linux-image-amd64"),
    ("busybox", "busybox-static"),
    // Secure Boot chain: shim signed by Microsoft (UEFI CA 2011 and 2023), MokManager, Debian's signed GRUB.
    ("shim", "shim-signed"),
    ("shim-helpers", "shim-helpers-amd64-signed"),
    ("grub-efi", "grub-efi-amd64-signed"),
    // GRUB for BIOS: boot.img and the i386-pc modules core.img is made from.
    ("grub-pc", "grub-pc-bin"),
    // 32-bit UEFI (Bay Trail and Cherry Trail laptops and tablets): the same chain built for ia32,
    // from Debian's i386 archive (shimia32, mmia32, grubia32); it boots the amd64 kernel in EFI mixed mode.
    ("shim-ia32", "shim-signed:i386"),
    ("helpers-ia32", "shim-helpers-i386-signed:i386"),
    ("grub-ia32", "grub-efi-ia32-signed:i386"),
    // Firmware the shipped modules name (non-free-firmware, see NON_FREE_FIRMWARE_ROLES): rtl_nic/*
    // for r8169 and r8152; i915/* (DMC, GuC, HuC) and tigon/* (tg3).
    ("fw-realtek", "firmware-realtek"),
    ("fw-misc", "firmware-misc-nonfree"),
    // Filesystem tools (`crate::tools`): e2fsprogs' resize2fs and e2fsck, ntfs-3g's ntfsresize and
    // ntfsfix, for `capture`'s shrink and the install's grow, with the libraries they link (their
    // closure is checked at build time) and glibc's loader.
    ("fstools-e2fsprogs", "e2fsprogs"),
    ("fstools-libext2fs", "libext2fs2"),
    ("fstools-libcom-err", "libcom-err2"),
    ("fstools-libblkid", "libblkid1"),
    ("fstools-libuuid", "libuuid1"),
    ("fstools-ntfs-3g", "ntfs-3g"),
    ("fstools-libntfs-3g", "libntfs-3g89"),
    // glibc: the loader and C library of every dynamically linked program above and below.
    ("libc", "libc6"),
    // Wi-Fi: iwlwifi-*.ucode; ath10k/*; brcm/*; mediatek/* and rtw88/* are in fw-misc and fw-realtek.
    ("fw-iwlwifi", "firmware-iwlwifi"),
    ("fw-atheros", "firmware-atheros"),
    ("fw-brcm", "firmware-brcm80211"),
    // cfg80211's regulatory database (main, not non-free-firmware), signed by Debian's key.
    ("regdb", "wireless-regdb"),
    // Wi-Fi's supplicant (SUPPLICANT_ROLES): wpa_supplicant and the libraries its DT_NEEDED closure
    // names (lapterop_image_builder::dynlink), in the order they are searched.
    ("wpa-supplicant", "wpasupplicant"),
    ("wpa-libssl", "libssl3"),
    ("wpa-libnl", "libnl-3-200"),
    ("wpa-libnl-genl", "libnl-genl-3-200"),
    ("wpa-libnl-route", "libnl-route-3-200"),
    ("wpa-libpcsclite", "libpcsclite1"),
    ("wpa-libdbus", "libdbus-1-3"),
    ("wpa-libsystemd", "libsystemd0"),
    ("wpa-libcap", "libcap2"),
    ("wpa-libgcrypt", "libgcrypt20"),
    ("wpa-libgpg-error", "libgpg-error0"),
    ("wpa-liblzma", "liblzma5"),
    ("wpa-libzstd", "libzstd1"),
    ("wpa-liblz4", "liblz4-1"),
    // TEST ONLY, never on the stick (TEST_ONLY_ROLES): the access point of the Wi-Fi acceptance test.
    ("test-hostapd", "hostapd"),
    ("test-iw", "iw"),
];

/// The roles of [`ROOTS`] that only tests use, never put on a stick: `hostapd` and `iw` for the
/// access point of the Wi-Fi acceptance test (`xtask/src/wifi.rs`), pinned like the rest so the
/// test is reproducible.
pub const TEST_ONLY_ROLES: &[&str] = &["test-hostapd", "test-iw"];

/// The roles of [`ROOTS`] that hold `wpa_supplicant` and the shared libraries it loads: Debian
/// builds it against libnl (nl80211), OpenSSL, D-Bus (whose libdbus pulls in libsystemd and its
/// compressors) and pcsc-lite; all are named in its `DT_NEEDED` closure, so the dynamic linker
/// refuses to start it without every one, even though the stick uses neither D-Bus nor smart cards.
pub const SUPPLICANT_ROLES: &[&str] = &[
    "wpa-supplicant",
    "libc",
    "wpa-libssl",
    "wpa-libnl",
    "wpa-libnl-genl",
    "wpa-libnl-route",
    "wpa-libpcsclite",
    "wpa-libdbus",
    "wpa-libsystemd",
    "wpa-libcap",
    "wpa-libgcrypt",
    "wpa-libgpg-error",
    "wpa-liblzma",
    "wpa-libzstd",
    "wpa-liblz4",
];

/// The roles of [`ROOTS`] that Debian keeps in its `non-free-firmware` component, fetched through
/// [`NonFreeApt`] instead of the host's apt sources.
pub const NON_FREE_FIRMWARE_ROLES: &[&str] = &["fw-realtek", "fw-misc", "fw-iwlwifi", "fw-atheros", "fw-brcm"];

/// Packages from Debian's main component whose files the firmware loader reads, searched after the
/// [`NON_FREE_FIRMWARE_ROLES`].
pub const FIRMWARE_ROLES_MAIN: &[&str] = &["regdb"];

/// Debian's archive keyring (package `debian-archive-keyring`), which the builder's own source list
/// trusts for `non-free-firmware`.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The architecture of a root that names none: the kernel's, and that of every program on the stick.
pub const ARCH: &str = "amd64";

/// A root's package name and architecture, in apt's notation: `shim-signed:i386` is
/// (`shim-signed`, `i386`); `busybox-static` is (`busybox-static`, [`ARCH`]).
pub fn split_root(root: &str) -> (&str, &str) {
    match root.split_once(':') {
        Some((package, arch)) if !arch.is_empty() => (package, arch),
        _ => (root.trim_end_matches(':'), ARCH),
    }
}

/// Errors of the Debian package layer. Each message says what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    /// The lock file could not be read or written.
    #[error("reading or writing the lock list {path}: {source}")]
    LockIo {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A line of the lock file is malformed.
    #[error("{path} line {line}: {reason}; fix the line or run `lapterop-image-builder lock refresh`")]
    LockSyntax {
        /// The file.
        path: PathBuf,
        /// The line number (from 1).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The lock has no package for a role the builder needs.
    #[error("the lock list has no `{0}` package; run `lapterop-image-builder lock refresh`")]
    MissingRole(String),
    /// A tool (apt-get, apt-cache, dpkg-deb) could not be started.
    #[error("running {tool}: {source}; install it (Debian package {package})")]
    ToolMissing {
        /// The program.
        tool: String,
        /// The Debian package.
        package: &'static str,
        /// What the system said.
        source: io::Error,
    },
    /// apt no longer offers the pinned version.
    #[error(
        "Debian no longer offers {package}={version} ({suite}): apt said `{apt}`; run `apt-get update`, then \
         `lapterop-image-builder lock refresh` to pin what is available now, and commit image-builder/debian.lock"
    )]
    NotDownloadable {
        /// The Debian package.
        package: String,
        /// The pinned version.
        version: String,
        /// The suite it was pinned from.
        suite: String,
        /// What apt said.
        apt: String,
    },
    /// The downloaded or cached file does not match the lock.
    #[error("{path} has sha256 {actual} but the lock pins {expected}; delete the file and retry (a mirror or cache served other bytes)")]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// The sha256 the lock pins.
        expected: String,
        /// The sha256 of the file.
        actual: String,
    },
    /// Another command failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// What was being done.
        what: String,
        /// What the command said.
        detail: String,
    },
    /// Cache I/O failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// apt's answer could not be understood while refreshing.
    #[error("refreshing the lock: {0}")]
    Refresh(String),
    /// The host's apt sources offer no packages for an architecture a root needs.
    #[error(
        "the apt sources of this host list no {arch} packages (apt-get update with {arch} added fetched none into \
         {lists}); check that no `Architectures:` line in /etc/apt/sources.list.d/*.sources (or `[arch=...]` in \
         /etc/apt/sources.list) leaves {arch} out"
    )]
    NoArchitecture {
        /// The architecture.
        arch: String,
        /// Where the package lists were fetched to.
        lists: PathBuf,
    },
    /// The builder's own apt source for `non-free-firmware` could not be updated.
    #[error(
        "updating the builder's apt lists for Debian's non-free-firmware component ({dir}) failed: {detail}; check \
         the network and that the host's apt sources name a Debian mirror (`apt-get update` works)"
    )]
    NonFreeUpdate {
        /// The builder's apt directory.
        dir: PathBuf,
        /// What the command said.
        detail: String,
    },
}

type Result<T> = std::result::Result<T, DebianError>;

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEntry {
    /// What the builder uses it for (`kernel`, `busybox`, ...).
    pub role: String,
    /// Debian binary package name.
    pub package: String,
    /// Exact Debian version, with epoch if any.
    pub version: String,
    /// Debian architecture.
    pub arch: String,
    /// The suite apt offered it from when it was pinned (informative: where to look for it).
    pub suite: String,
    /// Lower-case hex sha256 of the `.deb`.
    pub sha256: String,
}

impl LockEntry {
    /// The file name `apt-get download` gives this package (`:` in the version becomes `%3a`).
    pub fn deb_file_name(&self) -> String {
        format!(
            "{}_{}_{}.deb",
            self.package,
            self.version.replace(':', "%3a"),
            self.arch
        )
    }
}

/// A parsed lock list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lock {
    /// Pinned packages in file order.
    pub entries: Vec<LockEntry>,
}

const LOCK_HEADER: &str = "\
# Debian packages the live image is built from, pinned by lapterop-image-builder.
# Regenerate with `lapterop-image-builder lock refresh` (after `apt-get update`) and commit the result.
# role       package                         version                       arch   suite                sha256
";

impl Lock {
    /// Parses the text of a lock file; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Lock> {
        let mut entries = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let syntax = |reason: String| DebianError::LockSyntax {
                path: path.to_owned(),
                line: index + 1,
                reason,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [role, package, version, arch, suite, sha256] = fields[..] else {
                return Err(syntax(format!(
                    "expected 6 fields (role package version arch suite sha256), found {}",
                    fields.len()
                )));
            };
            if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                return Err(syntax(format!("`{sha256}` is not a lower-case hex sha256")));
            }
            if entries.iter().any(|e: &LockEntry| e.role == role) {
                return Err(syntax(format!("role `{role}` appears twice")));
            }
            entries.push(LockEntry {
                role: role.to_owned(),
                package: package.to_owned(),
                version: version.to_owned(),
                arch: arch.to_owned(),
                suite: suite.to_owned(),
                sha256: sha256.to_owned(),
            });
        }
        Ok(Lock { entries })
    }

    /// Reads and parses a lock file.
    pub fn read(path: &Path) -> Result<Lock> {
        let text = fs::read_to_string(path).map_err(|source| DebianError::LockIo {
            path: path.to_owned(),
            source,
        })?;
        Lock::parse(&text, path)
    }

    /// The text of the lock file, aligned in columns.
    pub fn render(&self) -> String {
        let mut out = String::from(LOCK_HEADER);
        for e in &self.entries {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "{:<12} {:<31} {:<29} {:<6} {:<20} {}",
                e.role, e.package, e.version, e.arch, e.suite, e.sha256
            );
        }
        out
    }

    /// Writes the lock file atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("lock.tmp");
        let io = |source| DebianError::LockIo {
            path: path.to_owned(),
            source,
        };
        fs::write(&tmp, self.render()).map_err(io)?;
        fs::rename(&tmp, path).map_err(io)
    }

    /// The entry for a role.
    pub fn get(&self, role: &str) -> Result<&LockEntry> {
        self.entries
            .iter()
            .find(|e| e.role == role)
            .ok_or_else(|| DebianError::MissingRole(role.to_owned()))
    }
}

/// The committed lock list of this source tree.
pub fn default_lock_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("debian.lock")
}

/// Where downloads and extracted trees are kept: `$LAPTEROP_CACHE`, else `target/debian-cache` of
/// this workspace.
pub fn default_cache_dir() -> PathBuf {
    match std::env::var_os("LAPTEROP_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
            crate_dir
                .parent()
                .unwrap_or(crate_dir)
                .join("target")
                .join("debian-cache")
        }
    }
}

/// The download and extraction cache.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache rooted at `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    /// The cache's root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How to run apt for packages of `arch`: the host's own apt when it lists that architecture (and
    /// for `all`), else the newest private state in `<cache>/apt-<arch>/`, fetched now when there is
    /// none yet or when `fresh` asks for new lists.
    pub fn apt_for(&self, arch: &str, fresh: bool) -> Result<AptState> {
        if arch == "all" || host_architectures()?.iter().any(|a| a == arch) {
            return Ok(AptState::default());
        }
        let dir = self.dir.join(format!("apt-{arch}"));
        let (generation, just_updated) = match newest_generation(&dir) {
            Some(generation) if !fresh => (generation, false),
            _ => (update_private_lists(&dir, arch)?, true),
        };
        Ok(AptState {
            options: private_options(&generation, arch),
            private: true,
            just_updated,
        })
    }

    /// Returns the path of the verified `.deb` for `entry`, downloading it with apt if it is not
    /// cached (roles of [`NON_FREE_FIRMWARE_ROLES`] through [`NonFreeApt`]). A cached file is
    /// re-hashed every time: the lock, not the cache, is trusted.
    pub fn fetch(&self, entry: &LockEntry) -> Result<PathBuf> {
        let debs = self.dir.join("debs");
        fs::create_dir_all(&debs).map_err(io_err("creating", &debs))?;
        let path = debs.join(entry.deb_file_name());
        if !path.exists() {
            // Each download goes to its own directory and is renamed into place, so builds running
            // at the same time (parallel tests) never see or clobber each other's partial files.
            let private = tempfile::Builder::new()
                .prefix(".download-")
                .tempdir_in(&debs)
                .map_err(io_err("creating a download directory in", &debs))?;
            let got = if NON_FREE_FIRMWARE_ROLES.contains(&entry.role.as_str()) {
                self.non_free().download(entry, private.path())
            } else {
                let apt = self.apt_for(&entry.arch, false)?;
                let mut got = download(entry, private.path(), &apt.options);
                // Private lists older than the lock (refreshed since, here or on another machine) are
                // fetched anew once before the pin counts as gone.
                if matches!(got, Err(DebianError::NotDownloadable { .. })) && apt.private && !apt.just_updated {
                    let apt = self.apt_for(&entry.arch, true)?;
                    got = download(entry, private.path(), &apt.options);
                }
                got
            };
            if !path.exists() {
                got?;
                fs::rename(private.path().join(entry.deb_file_name()), &path)
                    .map_err(io_err("moving the download into", &path))?;
            }
        }
        let actual = sha256_file(&path)?;
        if actual != entry.sha256 {
            return Err(DebianError::HashMismatch {
                path,
                expected: entry.sha256.clone(),
                actual,
            });
        }
        Ok(path)
    }

    /// The builder's own apt source for `non-free-firmware`, kept under this cache.
    pub fn non_free(&self) -> NonFreeApt {
        NonFreeApt {
            root: self.dir.join("apt-non-free-firmware"),
        }
    }

    /// Fetches `entry` and returns the directory it is unpacked in (`dpkg-deb -x`), unpacking it once
    /// per sha256. The directory is complete when returned: an interrupted unpack is redone.
    pub fn extract(&self, entry: &LockEntry) -> Result<PathBuf> {
        let deb = self.fetch(entry)?;
        let root = self
            .dir
            .join("unpacked")
            .join(format!("{}-{}", entry.package, &entry.sha256[..16]));
        let stamp = root.join(".lapterop-unpacked");
        if stamp.exists() {
            return Ok(root);
        }
        // Unpack beside the final place and rename, so a concurrent or interrupted run never sees
        // a half-unpacked tree.
        let tmp = self
            .dir
            .join("unpacked")
            .join(format!(".tmp-{}-{}", std::process::id(), &entry.sha256[..16]));
        for dir in [&tmp, &root] {
            if dir.exists() {
                fs::remove_dir_all(dir).map_err(io_err("removing", dir))?;
            }
        }
        fs::create_dir_all(&tmp).map_err(io_err("creating", &tmp))?;
        run_checked(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp),
            "dpkg-deb",
            "dpkg",
            format!("unpacking {}", deb.display()),
        )?;
        let tmp_stamp = tmp.join(".lapterop-unpacked");
        fs::write(&tmp_stamp, &entry.sha256).map_err(io_err("writing", &tmp_stamp))?;
        if let Err(source) = fs::rename(&tmp, &root) {
            // Another process finished first: use its tree.
            let _ = fs::remove_dir_all(&tmp);
            if !stamp.exists() {
                return Err(io_err("renaming into", &root)(source).into());
            }
        }
        Ok(root)
    }
}

/// Runs `command` (program `tool` of Debian package `package`) to completion: a missing program is
/// [`DebianError::ToolMissing`], a failure [`DebianError::Command`] with its standard error.
fn run_checked(
    command: &mut Command,
    tool: &str,
    package: &'static str,
    what: impl Into<String>,
) -> Result<std::process::Output> {
    let output = command.output().map_err(|source| DebianError::ToolMissing {
        tool: tool.into(),
        package,
        source,
    })?;
    if !output.status.success() {
        return Err(DebianError::Command {
            what: what.into(),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output)
}

/// How apt is run for one architecture ([`Cache::apt_for`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AptState {
    /// `-o` options given to every apt-get and apt-cache run; empty for the host's own state.
    pub options: Vec<String>,
    /// Whether the options point at a private state in the cache.
    pub private: bool,
    /// Whether that state's lists were fetched by this call.
    pub just_updated: bool,
}

/// The architectures the host's apt lists packages for (`APT::Architecture` and
/// `APT::Architectures`: the host's own and any added with `dpkg --add-architecture`).
fn host_architectures() -> Result<Vec<String>> {
    let output = run_checked(
        Command::new("apt-config").args(["dump", "--format", "%f %v%n"]),
        "apt-config",
        "apt",
        "apt-config dump",
    )?;
    Ok(architectures_in_config(&String::from_utf8_lossy(&output.stdout)))
}

/// The architectures in `apt-config dump --format '%f %v%n'` output.
pub fn architectures_in_config(dump: &str) -> Vec<String> {
    let mut archs: Vec<String> = Vec::new();
    for line in dump.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let value = value.trim();
        let listed = key == "APT::Architecture" || key == "APT::Architectures::";
        if listed && !value.is_empty() && !archs.iter().any(|a| a == value) {
            archs.push(value.to_owned());
        }
    }
    archs
}

/// The options that point apt at the private state `generation` with `arch` added to the host's
/// architectures: its own lists and cache directory, and no binary cache files (apt builds its cache
/// in memory, so parallel runs never share a half-written one).
fn private_options(generation: &Path, arch: &str) -> Vec<String> {
    [
        format!("Dir::State::Lists={}", generation.join("lists").display()),
        format!("Dir::Cache={}", generation.join("cache").display()),
        "Dir::Cache::pkgcache=".to_owned(),
        "Dir::Cache::srcpkgcache=".to_owned(),
        format!("APT::Architectures::={arch}"),
    ]
    .into_iter()
    .flat_map(|o| ["-o".to_owned(), o])
    .collect()
}

/// The marker of a complete private generation (its `apt-get update` succeeded).
const GENERATION_DONE: &str = "complete";

/// The newest complete generation in a private apt directory (`gen-<nanoseconds>-<pid>`).
fn newest_generation(dir: &Path) -> Option<PathBuf> {
    let mut done: Vec<PathBuf> = generations(dir)
        .into_iter()
        .filter(|g| g.join(GENERATION_DONE).is_file())
        .collect();
    done.sort();
    done.pop()
}

fn generations(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("gen-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Fetches package lists for `arch` (and the host's own architectures) into a new generation in `dir`
/// with `apt-get update`, and returns it. Each update has its own directory, so parallel builds never
/// share apt's lock or a half-written list; all but the newest two complete generations are removed,
/// and so are unfinished ones older than an hour.
fn update_private_lists(dir: &Path, arch: &str) -> Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let generation = dir.join(format!("gen-{nanos:020}-{}", std::process::id()));
    for sub in ["lists/partial", "cache/archives/partial"] {
        let p = generation.join(sub);
        fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
    }
    let output = Command::new("apt-get")
        .arg("-q")
        .args(private_options(&generation, arch))
        .arg("update")
        .output()
        .map_err(|source| DebianError::ToolMissing {
            tool: "apt-get".into(),
            package: "apt",
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("E:")).collect();
        return Err(DebianError::Command {
            what: format!(
                "apt-get update of the private {arch} package lists in {} (check the network and the apt sources, then retry)",
                generation.display()
            ),
            detail: if errors.is_empty() { stderr.trim().to_owned() } else { errors.join(" ") },
        });
    }
    let lists = generation.join("lists");
    let wanted = format!("binary-{arch}_Packages");
    let has_arch = fs::read_dir(&lists)
        .map_err(io_err("reading", &lists))?
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains(&wanted));
    if !has_arch {
        return Err(DebianError::NoArchitecture {
            arch: arch.to_owned(),
            lists,
        });
    }
    let done = generation.join(GENERATION_DONE);
    fs::write(&done, b"").map_err(io_err("writing", &done))?;
    prune_generations(dir);
    Ok(generation)
}

/// Removes all but the newest two complete generations, and unfinished ones older than an hour (a
/// run that was stopped); best effort, as a generation in use by another build is at worst re-fetched.
fn prune_generations(dir: &Path) {
    let mut all = generations(dir);
    all.sort();
    let complete: Vec<&PathBuf> = all.iter().filter(|g| g.join(GENERATION_DONE).is_file()).collect();
    let old_complete = complete.len().saturating_sub(2);
    for g in &complete[..old_complete] {
        let _ = fs::remove_dir_all(g);
    }
    let hour_ago = SystemTime::now()
        .checked_sub(Duration::from_secs(3600))
        .unwrap_or(UNIX_EPOCH);
    for g in all.iter().filter(|g| !g.join(GENERATION_DONE).exists()) {
        let stale = fs::metadata(g).and_then(|m| m.modified()).is_ok_and(|t| t < hour_ago);
        if stale {
            let _ = fs::remove_dir_all(g);
        }
    }
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = io_err("hashing", path);
    let mut file = fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn download(entry: &LockEntry, dir: &Path, apt_options: &[String]) -> Result<()> {
    let spec = format!("{}:{}={}", entry.package, entry.arch, entry.version);
    let output = Command::new("apt-get")
        .args(apt_options)
        .args(["download", "-q", &spec])
        .current_dir(dir)
        .output()
        .map_err(|source| DebianError::ToolMissing {
            tool: "apt-get".into(),
            package: "apt",
            source,
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() && dir.join(entry.deb_file_name()).exists() {
        return Ok(());
    }
    let apt = stderr
        .lines()
        .find(|l| l.starts_with("E:"))
        .unwrap_or(stderr.trim())
        .trim()
        .to_owned();
    // apt says "Version '…' for '…' was not found" or "Unable to locate package" when its index
    // lacks the pin; anything else (network, sources) is not a reason to re-pin.
    if apt.contains("was not found") || apt.contains("Unable to locate") || apt.contains("Can't select") {
        return Err(DebianError::NotDownloadable {
            package: entry.package.clone(),
            version: entry.version.clone(),
            suite: entry.suite.clone(),
            apt,
        });
    }
    Err(DebianError::Command {
        what: format!("apt-get download {spec} (check the network and the apt sources, then retry)"),
        detail: apt,
    })
}

fn apt_cache(apt_options: &[String], args: &[&str]) -> Result<String> {
    let output = run_checked(
        Command::new("apt-cache").args(apt_options).args(args),
        "apt-cache",
        "apt",
        format!("apt-cache {}", args.join(" ")),
    )?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One stanza of `apt-cache show`: (field, value) pairs.
fn stanza_field<'a>(stanza: &'a str, field: &str) -> Option<&'a str> {
    stanza.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The versioned package a kernel metapackage depends on: from `Depends: linux-image-6.1.0-56-amd64
/// (= 6.1.192-2)` it returns `linux-image-6.1.0-56-amd64`.
pub fn metapackage_target(depends: &str) -> Option<&str> {
    depends
        .split(',')
        .map(|d| d.split('|').next().unwrap_or("").trim())
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|name| name.starts_with("linux-image-") && name.chars().any(|c| c.is_ascii_digit()))
}

/// The suite a version comes from, from `apt-cache madison` lines
/// (` pkg | version | http://deb.debian.org/debian bookworm/main amd64 Packages`).
pub fn madison_suite(madison: &str, version: &str) -> Option<String> {
    madison.lines().find_map(|line| {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if cols.len() < 3 || cols[1] != version {
            return None;
        }
        let dist = cols[2].split_whitespace().nth(1)?;
        Some(dist.split('/').next().unwrap_or(dist).to_owned())
    })
}

/// The Debian release a suite belongs to: `bookworm-security` -> `bookworm`.
pub fn codename_of(suite: &str) -> &str {
    suite.split('-').next().unwrap_or(suite)
}

/// Debian's `non-free-firmware` component through apt with the builder's own source list, lists and
/// cache (`apt-get -o Dir::Etc::SourceList=...`), so the host's apt configuration stays as it is.
///
/// The source list names the host's own Debian mirrors and suites (from `apt-get indextargets`) for
/// one release, with the component `non-free-firmware` and `signed-by` [`DEBIAN_KEYRING`]. Each
/// release's state lives in `ROOT/<codename>/`; an update is made in a fresh directory and renamed
/// into place, so builds running at the same time never see half-written lists.
#[derive(Debug, Clone)]
pub struct NonFreeApt {
    root: PathBuf,
}

const UPDATED_STAMP: &str = ".lapterop-updated";

impl NonFreeApt {
    /// The state directory of one release (`ROOT/bookworm`).
    pub fn state_dir(&self, codename: &str) -> PathBuf {
        self.root.join(codename)
    }

    /// apt options that make apt use only the state in `dir`: its source list, lists and cache, an
    /// empty dpkg status and no preferences; the host's `apt.conf` (proxies) still applies.
    pub fn apt_options(dir: &Path) -> Vec<String> {
        let at = |rel: &str| dir.join(rel).display().to_string();
        vec![
            format!("Dir::Etc::SourceList={}", at("sources.list")),
            format!("Dir::Etc::SourceParts={}", at("sources.list.d")),
            format!("Dir::Etc::Preferences={}", at("preferences")),
            format!("Dir::Etc::PreferencesParts={}", at("preferences.d")),
            format!("Dir::State::Lists={}", at("lists")),
            format!("Dir::State::status={}", at("status")),
            format!("Dir::Cache={}", at("cache")),
            "Dir::Cache::pkgcache=".to_owned(),
            "Dir::Cache::srcpkgcache=".to_owned(),
            "Acquire::Languages=none".to_owned(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_owned(), o])
        .collect()
    }

    /// The source list for `codename`: one `deb` line per (mirror, suite) of `repos` that belongs
    /// to that release, component `non-free-firmware`.
    pub fn sources_list(repos: &[(String, String)], codename: &str, keyring: Option<&Path>) -> String {
        let signed = keyring.map_or(String::new(), |k| format!(" [signed-by={}]", k.display()));
        let mut out = String::from("# Written by lapterop-image-builder: Debian's non-free-firmware component only.\n");
        for (uri, suite) in repos {
            if codename_of(suite) == codename {
                let _ = writeln!(out, "deb{signed} {uri} {suite} non-free-firmware");
            }
        }
        out
    }

    /// The host's Debian repositories as (mirror, suite), from `apt-get indextargets`.
    fn host_debian_repos() -> Result<Vec<(String, String)>> {
        let output = Command::new("apt-get")
            .args([
                "indextargets",
                "--format",
                "$(ORIGIN)|$(IDENTIFIER)|$(REPO_URI)|$(RELEASE)",
            ])
            .output()
            .map_err(|source| DebianError::ToolMissing {
                tool: "apt-get".into(),
                package: "apt",
                source,
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut repos: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                let [origin, identifier, uri, release] = f[..] else {
                    return None;
                };
                (origin == "Debian" && identifier == "Packages")
                    .then(|| (uri.trim_end_matches('/').to_owned(), release.to_owned()))
            })
            .collect();
        repos.sort();
        repos.dedup();
        Ok(repos)
    }

    /// Makes sure the lists of `codename` exist (`force`: fetch them again), and returns the state
    /// directory.
    pub fn update(&self, codename: &str, force: bool) -> Result<PathBuf> {
        let dir = self.state_dir(codename);
        if !force && dir.join(UPDATED_STAMP).exists() {
            return Ok(dir);
        }
        fs::create_dir_all(&self.root).map_err(io_err("creating", &self.root))?;
        let failed = |detail: String| DebianError::NonFreeUpdate {
            dir: dir.clone(),
            detail,
        };
        let repos = Self::host_debian_repos()?;
        let keyring = Path::new(DEBIAN_KEYRING);
        let sources = Self::sources_list(&repos, codename, keyring.exists().then_some(keyring));
        if !sources.contains("\ndeb") {
            return Err(failed(format!(
                "the host's apt sources name no Debian mirror for {codename} (apt-get indextargets lists none)"
            )));
        }
        let tmp = tempfile::Builder::new()
            .prefix(".update-")
            .tempdir_in(&self.root)
            .map_err(io_err("creating a directory in", &self.root))?;
        for sub in [
            "lists/partial",
            "cache/archives/partial",
            "sources.list.d",
            "preferences.d",
        ] {
            let d = tmp.path().join(sub);
            fs::create_dir_all(&d).map_err(io_err("creating", &d))?;
        }
        for (name, text) in [("sources.list", sources.as_str()), ("status", "")] {
            let f = tmp.path().join(name);
            fs::write(&f, text).map_err(io_err("writing", &f))?;
        }
        let output = Command::new("apt-get")
            .args(Self::apt_options(tmp.path()))
            .args(["update", "-q"])
            .output()
            .map_err(|source| DebianError::ToolMissing {
                tool: "apt-get".into(),
                package: "apt",
                source,
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("E:") || l.starts_with("W: Failed"))
            .collect();
        if !output.status.success() || !errors.is_empty() {
            return Err(failed(if errors.is_empty() {
                stderr.trim().to_owned()
            } else {
                errors.join("; ")
            }));
        }
        let stamp = tmp.path().join(UPDATED_STAMP);
        fs::write(&stamp, codename).map_err(io_err("writing", &stamp))?;
        if dir.join(UPDATED_STAMP).exists() && !force {
            // Another build updated first: use its lists.
            return Ok(dir);
        }
        if dir.exists() {
            let old = self.root.join(format!(".old-{codename}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&old);
            fs::rename(&dir, &old).map_err(io_err("moving aside", &dir))?;
            let _ = fs::remove_dir_all(&old);
        }
        fs::rename(tmp.path(), &dir).map_err(io_err("renaming into", &dir))?;
        Ok(dir)
    }

    /// Downloads `entry` into `into` with this apt state; when the lists do not offer the version,
    /// fetches them again once before saying so.
    fn download(&self, entry: &LockEntry, into: &Path) -> Result<()> {
        let codename = codename_of(&entry.suite);
        let dir = self.update(codename, false)?;
        match download(entry, into, &Self::apt_options(&dir)) {
            Err(DebianError::NotDownloadable { .. }) => {
                let dir = self.update(codename, true)?;
                download(entry, into, &Self::apt_options(&dir))
            }
            other => other,
        }
    }
}

/// Resolves one root with `apt-cache` (under `apt_options`): the versioned package behind a kernel
/// metapackage, its candidate version, architecture, suite and sha256.
fn resolve_root(role: &str, root: &str, apt_options: &[String]) -> Result<LockEntry> {
    let (name, arch) = split_root(root);
    let mut package = name.to_owned();
    let mut stanza = apt_cache(apt_options, &["show", "--no-all-versions", &format!("{name}:{arch}")])?;
    if let Some(target) = stanza_field(&stanza, "Depends").and_then(metapackage_target) {
        package = target.to_owned();
        stanza = apt_cache(
            apt_options,
            &["show", "--no-all-versions", &format!("{package}:{arch}")],
        )?;
    }
    let version = stanza_field(&stanza, "Version")
        .ok_or_else(|| DebianError::Refresh(format!("apt-cache show {package} gave no Version")))?
        .to_owned();
    let sha256 = stanza_field(&stanza, "SHA256")
        .ok_or_else(|| DebianError::Refresh(format!("apt-cache show {package} gave no SHA256")))?
        .to_ascii_lowercase();
    // Firmware packages are `Architecture: all`, and apt names their files so.
    let deb_arch = stanza_field(&stanza, "Architecture").unwrap_or(arch).to_owned();
    let madison = apt_cache(apt_options, &["madison", &format!("{package}:{arch}")])?;
    let suite = madison_suite(&madison, &version)
        .ok_or_else(|| DebianError::Refresh(format!("apt-cache madison {package} does not list {version}")))?;
    Ok(LockEntry {
        role: role.to_owned(),
        package,
        version,
        arch: deb_arch,
        suite,
        sha256,
    })
}

/// Builds a fresh lock from apt's current candidates for [`ROOTS`] (after the host's `apt-get
/// update`): the candidate version, its architecture (`all` for an architecture-independent package),
/// its suite, and the sha256 apt's index lists for it. Roots of an architecture the host's apt does
/// not list are resolved in a private state in `cache` whose lists are fetched anew here
/// ([`Cache::apt_for`]); the `non-free-firmware` roles are resolved through [`NonFreeApt`], whose
/// lists are fetched again for the release of the pinned kernel.
pub fn refresh(cache: &Cache) -> Result<Lock> {
    let mut states: Vec<(&str, AptState)> = Vec::new();
    let mut entries = Vec::new();
    for (role, root) in ROOTS {
        if NON_FREE_FIRMWARE_ROLES.contains(role) {
            continue;
        }
        let (_, arch) = split_root(root);
        let apt = match states.iter().find(|(a, _)| *a == arch) {
            Some((_, state)) => state.clone(),
            None => {
                let state = cache.apt_for(arch, true)?;
                states.push((arch, state.clone()));
                state
            }
        };
        entries.push(resolve_root(role, root, &apt.options)?);
    }
    let codename = entries
        .iter()
        .find(|e| e.role == "kernel")
        .map(|e| codename_of(&e.suite).to_owned())
        .ok_or_else(|| DebianError::MissingRole("kernel".into()))?;
    let non_free = cache.non_free();
    let mut state = None;
    for (role, root) in ROOTS {
        if NON_FREE_FIRMWARE_ROLES.contains(role) {
            let dir = match &state {
                Some(dir) => dir,
                None => state.insert(non_free.update(&codename, true)?),
            };
            entries.push(resolve_root(role, root, &NonFreeApt::apt_options(dir))?);
        }
    }
    // File order follows ROOTS.
    entries.sort_by_key(|e| ROOTS.iter().position(|(role, _)| *role == e.role));
    Ok(Lock { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744";

    #[test]
    fn lock_round_trips_through_its_text() {
        let lock = Lock {
            entries: vec![LockEntry {
                role: "busybox".into(),
                package: "busybox-static".into(),
                version: "1:1.35.0-4+deb12u1+b1".into(),
                arch: "amd64".into(),
                suite: "bookworm".into(),
                sha256: SHA.into(),
            }],
        };
        let parsed = Lock::parse(&lock.render(), Path::new("x.lock")).unwrap();
        assert_eq!(parsed, lock);
        assert_eq!(
            parsed.get("busybox").unwrap().deb_file_name(),
            "busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb"
        );
        assert!(matches!(parsed.get("kernel"), Err(DebianError::MissingRole(_))));
    }

    #[test]
    fn lock_rejects_bad_lines_with_their_number() {
        let bad = format!("# c\nkernel linux 1 amd64 bookworm {}\n", &SHA[..63]);
        let err = Lock::parse(&bad, Path::new("x.lock")).unwrap_err();
        assert!(matches!(err, DebianError::LockSyntax { line: 2, .. }), "{err}");
        let short = "kernel linux 1 amd64\n";
        assert!(matches!(
            Lock::parse(short, Path::new("x")),
            Err(DebianError::LockSyntax { line: 1, .. })
        ));
        let twice = format!("a p 1 amd64 s {SHA}\na q 1 amd64 s {SHA}\n");
        assert!(matches!(
            Lock::parse(&twice, Path::new("x")),
            Err(DebianError::LockSyntax { line: 2, .. })
        ));
    }

    #[test]
    fn metapackage_and_madison_parsing() {
        assert_eq!(
            metapackage_target("linux-image-6.1.0-56-amd64 (= 6.1.192-2)"),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(metapackage_target("libc6 (>= 2.34)"), None);
        let madison = " busybox-static | 1:1.35.0-4+deb12u1+b1 | http://deb.debian.org/debian bookworm/main amd64 Packages\n\
                       linux-image-6.1.0-56-amd64 | 6.1.192-2 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages\n";
        assert_eq!(
            madison_suite(madison, "6.1.192-2").as_deref(),
            Some("bookworm-security")
        );
        assert_eq!(
            madison_suite(madison, "1:1.35.0-4+deb12u1+b1").as_deref(),
            Some("bookworm")
        );
        assert_eq!(madison_suite(madison, "9"), None);
    }

    #[test]
    fn roots_name_their_architecture_like_apt() {
        assert_eq!(split_root("shim-signed:i386"), ("shim-signed", "i386"));
        assert_eq!(split_root("busybox-static"), ("busybox-static", ARCH));
        assert_eq!(split_root("odd:"), ("odd", ARCH));
        // Every root is unique as (package, architecture): the amd64 and i386 shim are two roots.
        let mut seen: Vec<(&str, &str)> = ROOTS.iter().map(|(_, r)| split_root(r)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), ROOTS.len());
        assert!(ROOTS.iter().any(|(_, r)| split_root(r) == ("shim-signed", "i386")));
    }

    #[test]
    fn host_architectures_come_from_apt_config() {
        let dump = "APT \nAPT::Architecture amd64\nAPT::Architectures \nAPT::Architectures:: amd64\n\
                    APT::Architectures:: i386\nAPT::Build-Essential:: build-essential\n";
        assert_eq!(architectures_in_config(dump), ["amd64", "i386"]);
        assert_eq!(architectures_in_config("APT::Architecture arm64\n"), ["arm64"]);
        assert!(architectures_in_config("Dir /\n").is_empty());
    }

    #[test]
    fn private_state_options_and_the_newest_complete_generation() {
        let o = private_options(Path::new("/c/apt-i386/gen-1"), "i386").join(" ");
        assert_eq!(
            o,
            "-o Dir::State::Lists=/c/apt-i386/gen-1/lists -o Dir::Cache=/c/apt-i386/gen-1/cache \
             -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Architectures::=i386"
        );
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_generation(dir.path()), None);
        for (name, done) in [("gen-001-1", true), ("gen-002-1", true), ("gen-003-1", false)] {
            fs::create_dir_all(dir.path().join(name)).unwrap();
            if done {
                fs::write(dir.path().join(name).join(GENERATION_DONE), b"").unwrap();
            }
        }
        // An update still running (no marker) is never used.
        assert_eq!(newest_generation(dir.path()), Some(dir.path().join("gen-002-1")));
        fs::create_dir_all(dir.path().join("gen-000-1")).unwrap();
        fs::write(dir.path().join("gen-000-1").join(GENERATION_DONE), b"").unwrap();
        prune_generations(dir.path());
        assert!(
            !dir.path().join("gen-000-1").exists(),
            "the oldest of three complete ones goes"
        );
        for kept in ["gen-001-1", "gen-002-1", "gen-003-1"] {
            assert!(dir.path().join(kept).exists(), "{kept}");
        }
    }

    #[test]
    fn the_non_free_source_list_keeps_the_hosts_mirrors_for_one_release() {
        let repos: Vec<(String, String)> = [
            ("http://deb.debian.org/debian", "bookworm"),
            ("http://deb.debian.org/debian", "bookworm-updates"),
            ("http://deb.debian.org/debian-security", "bookworm-security"),
            ("http://mirror.example/debian", "trixie"),
        ]
        .map(|(u, s)| (u.to_owned(), s.to_owned()))
        .into();
        let text = NonFreeApt::sources_list(&repos, "bookworm", Some(Path::new("/k/debian.gpg")));
        let debs: Vec<&str> = text.lines().filter(|l| l.starts_with("deb ")).collect();
        assert_eq!(debs.len(), 3, "{text}");
        assert!(debs.contains(
            &"deb [signed-by=/k/debian.gpg] http://deb.debian.org/debian-security bookworm-security non-free-firmware"
        ));
        assert!(debs.iter().all(|l| l.ends_with(" non-free-firmware")), "{text}");
        assert!(!text.contains("trixie"));
        assert!(!NonFreeApt::sources_list(&repos, "bullseye", None).contains("\ndeb"));
        // Every path apt is told about is the builder's own; the host's /etc/apt is only read (apt.conf).
        let opts = NonFreeApt::apt_options(Path::new("/cache/apt/bookworm"));
        assert!(opts.contains(&"Dir::Etc::SourceList=/cache/apt/bookworm/sources.list".to_owned()));
        assert!(opts.contains(&"Dir::State::status=/cache/apt/bookworm/status".to_owned()));
        for o in opts.iter().filter(|o| o.starts_with("Dir::")) {
            let value = o.split_once('=').map_or("", |(_, v)| v);
            assert!(value.is_empty() || value.starts_with("/cache/apt/bookworm/"), "{o}");
        }
        assert_eq!(codename_of("bookworm-security"), "bookworm");
        assert_eq!(codename_of("bookworm"), "bookworm");
        let fw = LockEntry {
            role: "fw-realtek".into(),
            package: "firmware-realtek".into(),
            version: "20230210-5".into(),
            arch: "all".into(),
            suite: "bookworm".into(),
            sha256: SHA.into(),
        };
        assert_eq!(fw.deb_file_name(), "firmware-realtek_20230210-5_all.deb");
        assert!(NON_FREE_FIRMWARE_ROLES
            .iter()
            .all(|r| ROOTS.iter().any(|(role, _)| role == r)));
    }

    #[test]
    fn cached_file_with_wrong_bytes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let entry = LockEntry {
            role: "busybox".into(),
            package: "busybox-static".into(),
            version: "1:1".into(),
            arch: "amd64".into(),
            suite: "bookworm".into(),
            sha256: SHA.into(),
        };
        fs::create_dir_all(dir.path().join("debs")).unwrap();
        fs::write(dir.path().join("debs").join(entry.deb_file_name()), b"not the package").unwrap();
        let err = Cache::new(dir.path()).fetch(&entry).unwrap_err();
        assert!(matches!(err, DebianError::HashMismatch { .. }), "{err}");
    }
}
