//! Firmware for the shipped modules: every file a module names (`MODULE_FIRMWARE`, the `firmware=`
//! entries of its `.modinfo`) that one of the pinned firmware packages holds.
//!
//! Debian's firmware packages (`firmware-realtek`, `firmware-misc-nonfree`, ... in the
//! `non-free-firmware` component) install under `lib/firmware/` (`usr/lib/firmware/` after the
//! `/usr` merge); [`FirmwareSet::collect`] looks a name up in each unpacked package in turn. Many
//! names are symbolic links there (`i915/kbl_dmc_ver1.bin` → `kbl_dmc_ver1_04.bin`); the stick's FAT
//! has no links, so a link is resolved (inside the package only) and its target's bytes are shipped
//! under the name the module asks for. A name no package holds is recorded with the modules that
//! name it: those drivers work without it or Debian does not package it, and the docs list them.
//!
//! **Compressed on the stick.** Debian's kernel reads `NAME.xz` when `NAME` is not there
//! (`CONFIG_FW_LOADER_COMPRESS_XZ=y`; `drivers/base/firmware_loader/main.c` tries the plain name,
//! then the `.xz` suffix, in every firmware directory, the stick's included), so every file ships
//! xz-compressed ([`compress_all`]) and the stick stays in its budget with Wi-Fi's firmware on it.
//! The kernel's XZ decoder knows only the CRC32 integrity check (`lib/xz/xz_dec_stream.c`; xz's
//! default is CRC64, which it refuses), hence `--check=crc32` ([`XZ_ARGS`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::elf::{self, ElfError};
use crate::io::{io_err, IoError};

/// Errors while collecting firmware.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// A module could not be read.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// Listing a directory failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// `xz` failed or is missing.
    #[error("compressing firmware {file} with `xz` failed: {detail}; install xz-utils (Debian package xz-utils)")]
    Xz {
        /// The firmware file.
        file: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// A firmware name leaves the firmware directory.
    #[error("module {module} names firmware `{name}`, which is not a plain relative path; the module is broken")]
    BadName {
        /// The module.
        module: String,
        /// The name.
        name: String,
    },
}

type Result<T> = std::result::Result<T, FirmwareError>;

/// Modules whose firmware list spans chip families no donated-class laptop has: only the names that
/// start with one of these prefixes ship (module, prefixes). Chosen from the corpus's 0280
/// controllers and their families (`docs/live-image.md`): iwlwifi names every Intel chip since 2008
/// but the Centrino 100/1000/5000/5150/6000/6050 (2008-2010) are left out (2200/2230, 6205/6235 and
/// everything from the 7260 to the AX210 stay; Alder Lake's CNVi is left out), which keeps the stick
/// within its 128 MiB budget; ath10k's QCA988X/QCA9887 are access-point chips and the QCA6174 hw2.1
/// an early revision; brcmfmac's SDIO parts need a board-specific NVRAM file Debian does not
/// package, so only the PCIe BCM4356 of the corpus ships.
pub const FAMILIES: &[(&str, &[&str])] = &[
    (
        "iwlwifi",
        &[
            "iwlwifi-105-",
            "iwlwifi-135-",
            "iwlwifi-2000-",
            "iwlwifi-2030-",
            "iwlwifi-6000g2",
            "iwlwifi-7",
            "iwlwifi-3160-",
            "iwlwifi-3168-",
            "iwlwifi-8",
            "iwlwifi-9",
            "iwlwifi-cc-",
            "iwlwifi-Qu",
            // Alder Lake's CNVi (so-a0, 2022 on) stays off: newer than donated laptops, and the
            // stick's 128 MiB budget. The AX210 (ty) card of 2021 laptops ships.
            "iwlwifi-ty-",
        ],
    ),
    // ath10k loads the newest firmware API it finds first (firmware-6 before -5 and -4): the older
    // ones of a chip that has a firmware-6 would never load.
    (
        "ath10k_pci",
        &[
            "ath10k/QCA6174/hw3.0/board",
            "ath10k/QCA6174/hw3.0/firmware-6",
            "ath10k/QCA9377/hw1.0/board",
            "ath10k/QCA9377/hw1.0/firmware-6",
        ],
    ),
    ("brcmfmac", &["brcm/brcmfmac4356-pcie"]),
];

/// Debian ships some firmware under another name and picks one with `update-alternatives` at install
/// time (name the kernel asks for, the file in the package): the regulatory database signed with
/// Debian's key, which Debian's kernel trusts.
pub const ALTERNATIVES: &[(&str, &str)] = &[
    ("regulatory.db", "regulatory.db-debian"),
    ("regulatory.db.p7s", "regulatory.db.p7s-debian"),
];

/// Whether `module`'s firmware `name` ships ([`FAMILIES`]).
pub fn wanted(module: &str, name: &str) -> bool {
    FAMILIES
        .iter()
        .find(|(m, _)| *m == module)
        .is_none_or(|(_, prefixes)| prefixes.iter().any(|p| name.starts_with(p)))
}

/// The directories a firmware package installs into, relative to its unpacked root.
pub const PACKAGE_DIRS: &[&str] = &["lib/firmware", "usr/lib/firmware"];

/// The firmware the shipped modules name, split into what the packages hold and what they lack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirmwareSet {
    /// Firmware name (`rtl_nic/rtl8168h-2.fw`) → the file whose bytes ship under that name.
    pub files: BTreeMap<String, PathBuf>,
    /// Firmware name no package holds → the modules that name it.
    pub missing: BTreeMap<String, BTreeSet<String>>,
    /// Firmware name → the modules that name it (both found and missing).
    pub named_by: BTreeMap<String, BTreeSet<String>>,
    /// Firmware name → the module whose chip families leave it out ([`FAMILIES`]).
    pub left_out: BTreeMap<String, String>,
}

impl FirmwareSet {
    /// Reads the firmware names of every `.ko` under `module_dir` and looks each up in the unpacked
    /// firmware packages `packages` (first hit wins).
    pub fn collect(module_dir: &Path, packages: &[PathBuf]) -> Result<FirmwareSet> {
        let mut set = FirmwareSet::default();
        let mut modules = Vec::new();
        find_modules(module_dir, &mut modules)?;
        modules.sort();
        for ko in modules {
            let module = crate::kmod::module_name(&ko.to_string_lossy());
            for name in elf::module_firmware(&ko)? {
                if !plain_relative(&name) {
                    return Err(FirmwareError::BadName { module, name });
                }
                if !wanted(&module, &name) {
                    set.left_out.insert(name, module.clone());
                    continue;
                }
                set.named_by.entry(name).or_default().insert(module.clone());
            }
        }
        for (name, modules) in &set.named_by {
            let packaged = ALTERNATIVES
                .iter()
                .find(|(n, _)| n == name)
                .map_or(name.as_str(), |(_, file)| *file);
            match packages.iter().find_map(|root| lookup(root, packaged)) {
                Some(file) => {
                    set.files.insert(name.clone(), file);
                }
                None => {
                    set.missing.insert(name.clone(), modules.clone());
                }
            }
        }
        Ok(set)
    }

    /// Bytes of the firmware files that ship.
    pub fn bytes(&self) -> Result<u64> {
        let mut total = 0;
        for path in self.files.values() {
            total += fs::metadata(path).map_err(io_err("reading", path))?.len();
        }
        Ok(total)
    }
}

/// The suffix the kernel's firmware loader tries after the plain name.
pub const XZ_SUFFIX: &str = ".xz";

/// How `xz` compresses a firmware file: the CRC32 check the kernel's decoder knows, a 2 MiB
/// dictionary (larger than any firmware file on the stick, and what the decoder then allocates),
/// single-threaded so the same input gives the same bytes.
pub const XZ_ARGS: &[&str] = &[
    "--format=xz",
    "--check=crc32",
    "--lzma2=preset=9,dict=2MiB",
    "--threads=1",
];

/// The first 8 bytes of an xz stream with a CRC32 check (the .xz file format 1.1.0, 2.1.1: magic
/// `FD 37 7A 58 5A 00`, then the stream flags `00 01`, check type 0x01 = CRC32).
pub const XZ_CRC32_HEADER: [u8; 8] = [0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0x01];

/// Compresses `source` into `dest` with `xz` ([`XZ_ARGS`]), written beside it then renamed.
pub fn compress_xz(source: &Path, dest: &Path) -> Result<()> {
    let err = |detail: String| FirmwareError::Xz {
        file: source.to_owned(),
        detail,
    };
    let input = fs::File::open(source).map_err(io_err("reading", source))?;
    // A name of this process and call of its own: two builds may share the cache, and two firmware
    // files with the same bytes have the same `dest`.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dest.with_extension(format!("xz.{}-{call}.partial", std::process::id()));
    let output = fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
    let status = std::process::Command::new("xz")
        .args(XZ_ARGS)
        .arg("--stdout")
        .stdin(input)
        .stdout(output)
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| err(e.to_string()))?;
    if !status.status.success() {
        let _ = fs::remove_file(&tmp);
        return Err(err(String::from_utf8_lossy(&status.stderr).trim().to_owned()));
    }
    fs::rename(&tmp, dest).map_err(io_err("renaming into", dest))?;
    Ok(())
}

/// The stick's firmware files: name with [`XZ_SUFFIX`] → the compressed file, kept in `cache`
/// under the sha256 of the source and [`XZ_ARGS`] (a firmware file is compressed once per build
/// host). Compresses on all cores.
pub fn compress_all(set: &FirmwareSet, cache: &Path) -> Result<BTreeMap<String, PathBuf>> {
    use sha2::{Digest, Sha256};
    fs::create_dir_all(cache).map_err(io_err("creating", cache))?;
    let mut jobs = Vec::new();
    for (name, source) in &set.files {
        let bytes = fs::read(source).map_err(io_err("reading", source))?;
        let mut h = Sha256::new();
        h.update(XZ_ARGS.join(" ").as_bytes());
        h.update(b"\0");
        h.update(&bytes);
        let dest = cache.join(format!("{}.xz", hex::encode(h.finalize())));
        jobs.push((format!("{name}{XZ_SUFFIX}"), source.clone(), dest));
    }
    // Each cache file once (firmware files with the same bytes share one).
    let mut todo: Vec<&(String, PathBuf, PathBuf)> = jobs.iter().filter(|(_, _, dest)| !dest.is_file()).collect();
    todo.sort_by(|a, b| a.2.cmp(&b.2));
    todo.dedup_by(|a, b| a.2 == b.2);
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((_, source, dest)) = todo.get(i) else {
                            return Ok(());
                        };
                        compress_xz(source, dest)?;
                    }
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().unwrap_or_else(|_| {
                Err(FirmwareError::Xz {
                    file: cache.to_owned(),
                    detail: "a compressing thread panicked".into(),
                })
            })
        })
    })?;
    Ok(jobs.into_iter().map(|(name, _, dest)| (name, dest)).collect())
}

fn plain_relative(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('/') && name.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

fn find_modules(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let io = io_err("listing", dir);
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let ty = entry.file_type().map_err(io)?;
        let path = entry.path();
        if ty.is_dir() {
            find_modules(&path, out)?;
        } else if ty.is_file() && path.to_string_lossy().ends_with(".ko") {
            out.push(path);
        }
    }
    Ok(())
}

/// The regular file `name` resolves to inside the unpacked package `root`, following symbolic links
/// only while they stay inside the package's firmware directory.
fn lookup(root: &Path, name: &str) -> Option<PathBuf> {
    PACKAGE_DIRS.iter().find_map(|dir| {
        let base = root.join(dir);
        let base_real = fs::canonicalize(&base).ok()?;
        // Resolve absolute links (`/lib/firmware/x`) against the package, not the build host.
        let mut path = base.join(name);
        for _ in 0..16 {
            let meta = fs::symlink_metadata(&path).ok()?;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).ok()?;
                path = match target.strip_prefix("/") {
                    Ok(abs) => root.join(abs),
                    Err(_) => path.parent()?.join(target),
                };
                continue;
            }
            let real = fs::canonicalize(&path).ok()?;
            return (meta.is_file() && real.starts_with(&base_real)).then_some(real);
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_is_compressed_with_the_check_the_kernel_knows_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let fw = dir.path().join("pkg/lib/firmware/rtl_nic");
        fs::create_dir_all(&fw).unwrap();
        // Compressible like firmware: repeated structure with some noise.
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i % 251) as u8 ^ u8::try_from(i / 4096).unwrap_or(0))
            .collect();
        fs::write(fw.join("rtl8168h-2.fw"), &data).unwrap();
        // Another name with the same bytes (a link in the package ships as a copy): one cache file,
        // compressed once, for both.
        fs::write(fw.join("rtl8168h-1.fw"), &data).unwrap();
        let mut set = FirmwareSet::default();
        set.files
            .insert("rtl_nic/rtl8168h-2.fw".into(), fw.join("rtl8168h-2.fw"));
        set.files
            .insert("rtl_nic/rtl8168h-1.fw".into(), fw.join("rtl8168h-1.fw"));
        let cache = dir.path().join("xz");
        let out = compress_all(&set, &cache).unwrap();
        let file = &out["rtl_nic/rtl8168h-2.fw.xz"];
        assert_eq!(&out["rtl_nic/rtl8168h-1.fw.xz"], file);
        assert_eq!(
            fs::read_dir(&cache).unwrap().count(),
            1,
            "only the one .xz, no .partial left"
        );
        let xz = fs::read(file).unwrap();
        assert_eq!(xz[..8], XZ_CRC32_HEADER, "not CRC32: {:02x?}", &xz[..8]);
        assert!(xz.len() < data.len() / 4, "{} of {}", xz.len(), data.len());
        // xz itself gets the bytes back.
        let back = std::process::Command::new("xz")
            .args(["-dc"])
            .arg(file)
            .output()
            .unwrap();
        assert!(back.status.success());
        assert_eq!(back.stdout, data);
        // The same input is not compressed again: the cached file stays as it is.
        let before = fs::metadata(file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let again = compress_all(&set, &cache).unwrap();
        assert_eq!(again, out);
        assert_eq!(fs::metadata(file).unwrap().modified().unwrap(), before);
        // Deterministic: compressing anew gives the same bytes.
        let other = dir.path().join("other.xz");
        compress_xz(&fw.join("rtl8168h-2.fw"), &other).unwrap();
        assert_eq!(fs::read(other).unwrap(), xz);
    }

    #[test]
    fn names_resolve_through_links_inside_the_package_only() {
        let dir = tempfile::tempdir().unwrap();
        let fw = dir.path().join("pkg/lib/firmware/i915");
        fs::create_dir_all(&fw).unwrap();
        fs::write(fw.join("kbl_dmc_ver1_04.bin"), b"dmc").unwrap();
        std::os::unix::fs::symlink("kbl_dmc_ver1_04.bin", fw.join("kbl_dmc_ver1.bin")).unwrap();
        std::os::unix::fs::symlink("/lib/firmware/i915/kbl_dmc_ver1_04.bin", fw.join("abs.bin")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", fw.join("escape.bin")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", fw.join("up.bin")).unwrap();
        fs::write(dir.path().join("outside"), b"x").unwrap();
        let root = dir.path().join("pkg");
        let real = fs::canonicalize(fw.join("kbl_dmc_ver1_04.bin")).unwrap();
        assert_eq!(lookup(&root, "i915/kbl_dmc_ver1.bin"), Some(real.clone()));
        assert_eq!(lookup(&root, "i915/abs.bin"), Some(real));
        assert_eq!(lookup(&root, "i915/escape.bin"), None);
        assert_eq!(lookup(&root, "i915/up.bin"), None);
        assert_eq!(lookup(&root, "i915/none.bin"), None);
        assert!(plain_relative("rtl_nic/rtl8168h-2.fw"));
        for bad in ["", "/etc/x", "a/../b", "a//b"] {
            assert!(!plain_relative(bad), "{bad}");
        }
    }

    #[test]
    fn only_the_chip_families_of_donated_laptops_ship() {
        // Names from Debian 6.1's `modinfo -F firmware`.
        for (module, name, ships) in [
            ("iwlwifi", "iwlwifi-8265-36.ucode", true),
            ("iwlwifi", "iwlwifi-7265D-29.ucode", true),
            ("iwlwifi", "iwlwifi-cc-a0-72.ucode", true),
            ("iwlwifi", "iwlwifi-QuZ-a0-hr-b0-72.ucode", true),
            ("iwlwifi", "iwlwifi-so-a0-gf-a0-72.ucode", false),
            ("iwlwifi", "iwlwifi-6000g2a-6.ucode", true),
            ("iwlwifi", "iwlwifi-2000-6.ucode", true),
            ("iwlwifi", "iwlwifi-5000-5.ucode", false),
            ("iwlwifi", "iwlwifi-6000-4.ucode", false),
            ("iwlwifi", "iwlwifi-1000-5.ucode", false),
            ("ath10k_pci", "ath10k/QCA6174/hw3.0/board-2.bin", true),
            ("ath10k_pci", "ath10k/QCA988X/hw2.0/firmware-5.bin", false),
            ("ath10k_pci", "ath10k/QCA9377/hw1.0/firmware-5.bin", false),
            ("ath10k_pci", "ath10k/QCA9377/hw1.0/firmware-6.bin", true),
            ("iwlwifi", "iwlwifi-so-a0-jf-b0-72.ucode", false),
            ("iwlwifi", "iwlwifi-ty-a0-gf-a0-72.ucode", true),
            ("brcmfmac", "brcm/brcmfmac4356-pcie.bin", true),
            ("brcmfmac", "brcm/brcmfmac4356-sdio.bin", false),
            ("rtw88_8822c", "rtw88/rtw8822c_fw.bin", true),
            ("r8169", "rtl_nic/rtl8168h-2.fw", true),
        ] {
            assert_eq!(wanted(module, name), ships, "{module} {name}");
        }
    }

    #[test]
    fn the_regulatory_database_ships_under_the_name_cfg80211_asks_for() {
        let dir = tempfile::tempdir().unwrap();
        let fw = dir.path().join("regdb/lib/firmware");
        fs::create_dir_all(&fw).unwrap();
        for f in [
            "regulatory.db-debian",
            "regulatory.db.p7s-debian",
            "regulatory.db-upstream",
        ] {
            fs::write(fw.join(f), f).unwrap();
        }
        let modules = dir.path().join("modules");
        fs::create_dir_all(&modules).unwrap();
        let set = FirmwareSet::collect(&modules, &[dir.path().join("regdb")]).unwrap();
        assert!(set.files.is_empty(), "no module, no firmware");
        let packaged = ALTERNATIVES.iter().find(|(n, _)| *n == "regulatory.db").unwrap().1;
        let file = lookup(&dir.path().join("regdb"), packaged).unwrap();
        assert_eq!(fs::read(file).unwrap(), b"regulatory.db-debian");
    }
}
