//! Kernel modules: choose a set by name, close it over `modules.dep` and `modules.softdep`, stage
//! it, run depmod.
//!
//! Debian's kernel package ships `lib/modules/KVER/kernel/**.ko` and `modules.builtin` but not
//! `modules.dep` (its postinst makes it), so [`KernelTree::open`] runs `depmod -b` once on the
//! unpacked package. [`KernelTree::stage`] then copies the closure of the chosen modules into a
//! staging tree and runs `depmod -b` there, so `modules.dep` and `modules.alias` describe exactly
//! what ships (busybox `modprobe` and the agent's coldplug read them). The closure follows softdeps
//! too: `r8169` refuses to probe without the `realtek` PHY driver it names that way.
//!
//! **The set** ([`SETS`]) was chosen from real hardware: the `lspci -vvnnk` dumps of 39 donated-class
//! notebooks in `tests/data/hardware/`, and the siblings of what they hold. `tests/hardware.rs`
//! measures the stick's own `modules.alias` against them (every disk, SD/eMMC host, card reader, USB
//! host, wired NIC, Wi-Fi controller and Intel GPU of the corpus is covered; AMD and NVIDIA graphics
//! are reported, not shipped). Two requests split it ([`DEFAULT_REQUEST`], [`STICK_REQUEST`]): what
//! finding the stick and the laptop's disks need goes into the initramfs; network, graphics and
//! power go onto the stick's FAT partition with the whole tree, and the agent loads them after
//! mounting it (`crate::live`).
//!
//! **Compression:** modules are shipped uncompressed. Debian 12 builds with
//! `CONFIG_MODULE_COMPRESS_NONE`; newer Debian kernels ship `.ko.xz`, which this module unpacks at
//! build time. The module signature covers the uncompressed bytes, so it stays valid under Secure
//! Boot lockdown; loading compressed files would need `CONFIG_MODULE_DECOMPRESS` and the
//! `MODULE_INIT_COMPRESSED_FILE` flag of `finit_module`; and the whole initramfs is compressed once,
//! which packs better than per-file compression.
//!
//! **Firmware** that the shipped modules name comes from Debian's `non-free-firmware` packages
//! pinned in the lock (`crate::debian`) and is collected by `crate::firmware`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::io::{io_err, IoError};

/// Named module sets. A request names modules or these sets.
///
/// The sets were chosen from the `lspci -vvnnk` dumps of 39 real notebooks in
/// `image-builder/tests/data/hardware/` and the siblings of what they hold (a donated laptop is
/// rarely one of those 39); `tests/hardware.rs` measures the coverage against the stick's own
/// `modules.alias` and `docs/live-image.md` gives the figures and the reasons.
pub const SETS: &[(&str, &[&str])] = &[
    // The laptop's own disks: NVMe (also behind Intel VMD), AHCI (also in RAID mode), SATA in IDE
    // mode on older laptops (ata_piix, ata_generic), eMMC and SD on PCI (sdhci-pci), on ACPI (the
    // Bay Trail and Braswell eMMC of cheap laptops, sdhci-acpi) and on Realtek's PCIe card readers
    // (rtsx_pci); QEMU's virtio disks for the tests.
    (
        "storage",
        &[
            "nvme",
            "vmd",
            "ahci",
            "ata_piix",
            "ata_generic",
            "virtio_blk",
            "virtio_pci",
            "virtio_scsi",
            "sd_mod",
            "usb_storage",
            "uas",
            "xhci_pci",
            "xhci_hcd",
            "ehci_pci",
            "ehci_hcd",
            "mmc_block",
            "sdhci",
            "sdhci_pci",
            "sdhci_acpi",
            "rtsx_pci",
            "rtsx_pci_sdmmc",
        ],
    ),
    // Wired Ethernet of laptops from the amd64 era (about 2006 on): Intel (e1000e, and e1000 of older
    // ThinkPads and QEMU), Realtek (r8169, with its PHY driver by softdep), Broadcom (tg3, b44),
    // Atheros/Qualcomm (alx, atl1c, atl1e), Marvell (sky2), JMicron (jme), NVIDIA chipsets
    // (forcedeth); igb and igc for the Intel NICs of Thunderbolt docks; virtio for the tests.
    (
        "nic",
        &[
            "e1000e",
            "e1000",
            "igb",
            "igc",
            "r8169",
            "tg3",
            "b44",
            "alx",
            "atl1c",
            "atl1e",
            "sky2",
            "jme",
            "forcedeth",
            "virtio_net",
        ],
    ),
    // USB Ethernet: the adapters and docks a workshop plugs into laptops without a port (Realtek
    // RTL8152/8153/8156, ASIX AX88179 and AX88772), the class drivers (CDC ECM and NCM), and RNDIS
    // (phones that share their connection, QEMU's usb-net).
    (
        "usb-net",
        &[
            "r8152",
            "r8153_ecm",
            "ax88179_178a",
            "asix",
            "cdc_ether",
            "cdc_ncm",
            "rndis_host",
            "usbnet",
        ],
    ),
    // Wi-Fi (the only network of many workshops and thin laptops), chosen from the corpus's 0280
    // controllers and their chip families: Intel iwlwifi with both firmware layers (iwldvm: Centrino
    // 1000-6250 and 2200/2230; iwlmvm: 7260/3160, 7265/3165, 3168, 8260/8265, 9260, 9560 and the CNVi
    // parts, AX200/AX201/AX210); Qualcomm Atheros ath9k (AR9xxx, QCA9565) and ath10k (QCA6174,
    // QCA9377); Realtek rtw88 (8821CE, 8822BE, 8822CE) and rtlwifi's 8192EE; MediaTek mt7921e
    // (MT7921, MT7922); Broadcom brcmfmac (BCM4356 PCIe) and brcmsmac (BCM43224-43228 through
    // bcma). mac80211 and cfg80211 come in by modules.dep; ccm, gcm and cmac (CCMP, GCMP and PMF) and
    // what they ask for in turn, ctr (under ccm and gcm) and ghash_generic (under gcm), are named
    // because mac80211 asks the crypto API for them by name ("ccm(aes)" needs the templates ccm and
    // ctr), not by symbol, so modules.dep does not list them: without ctr no CCMP key can be set.
    (
        "wifi",
        &[
            "iwlwifi",
            "iwlmvm",
            "iwldvm",
            "ath9k",
            "ath10k_pci",
            "rtw88_8821ce",
            "rtw88_8822be",
            "rtw88_8822ce",
            "rtl8192ee",
            "mt7921e",
            "brcmfmac",
            "brcmsmac",
            "bcma",
            "ccm",
            "ctr",
            "gcm",
            "ghash_generic",
            "cmac",
        ],
    ),
    // Intel graphics (the screen of nearly every donated laptop, and the audit's panel EDID). AMD and
    // NVIDIA drivers are left out: without their large firmware amdgpu blanks the firmware's
    // framebuffer, which then shows the screens (docs/live-image.md).
    ("display", &["i915"]),
    // Battery and charger for the audit (ACPI PNP0C0A and ACPI0003), and USB-C power through UCSI.
    ("power", &["battery", "ac", "ucsi_acpi", "typec_ucsi"]),
    // vfat with Debian's defaults (codepage 437, iocharset ascii, utf8 names) loads nls_cp437 and nls_ascii.
    (
        "fs",
        &[
            "vfat",
            "ext4",
            "nls_cp437",
            "nls_ascii",
            "nls_utf8",
            "nls_iso8859_1",
            "dm_mod",
            // The installer's loop devices over single partitions (grow, machine.json).
            "loop",
        ],
    ),
    // What a live stick needs to find itself on any USB port, and a USB keyboard for the screens.
    (
        "usb",
        &[
            "xhci_pci",
            "ehci_pci",
            "ohci_pci",
            "uhci_hcd",
            "usb_storage",
            "uas",
            "sd_mod",
            "usbhid",
            "hid_generic",
        ],
    ),
];

/// The initramfs's request: what finding the stick needs (USB, its FAT) and the laptop's disks.
pub const DEFAULT_REQUEST: &[&str] = &["storage", "usb", "fs"];

/// What the stick's FAT partition adds (`lapterop/modules/`, loaded by the agent once the stick is
/// mounted): network, graphics and power, with the firmware they name.
pub const STICK_REQUEST: &[&str] = &["nic", "usb-net", "wifi", "display", "power"];

/// Errors of the module layer.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// The unpacked kernel package has no (or more than one) `lib/modules/KVER`.
    #[error("{0}: expected exactly one lib/modules/<version> directory in the unpacked kernel package")]
    NoKernel(PathBuf),
    /// A requested module is neither a loadable module nor built in.
    #[error("kernel {kver} has no module `{name}` (neither loadable nor built in); check the name with `modinfo`")]
    UnknownModule {
        /// The kernel version.
        kver: String,
        /// The name.
        name: String,
    },
    /// depmod could not be run or failed.
    #[error("depmod -b {root}: {detail}; install Debian's kmod package")]
    Depmod {
        /// The module tree.
        root: PathBuf,
        /// What the command said.
        detail: String,
    },
    /// File I/O failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A compressed module could not be unpacked.
    #[error("decompressing {path}: {source}")]
    Decompress {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, KmodError>;

/// `nvme-core`, `nvme_core` and `nvme_core.ko.xz` all name the module `nvme_core`.
pub fn module_name(file_or_name: &str) -> String {
    let base = file_or_name.rsplit('/').next().unwrap_or(file_or_name);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// Expands set names into module names (sorted, deduplicated, normalised).
pub fn expand_request<S: AsRef<str>>(request: &[S]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for item in request {
        let item = item.as_ref();
        match SETS.iter().find(|(set, _)| *set == item) {
            Some((_, members)) => out.extend(members.iter().map(|m| module_name(m))),
            None => {
                out.insert(module_name(item));
            }
        }
    }
    out
}

/// An unpacked kernel package with a `modules.dep`.
#[derive(Debug, Clone)]
pub struct KernelTree {
    root: PathBuf,
    kver: String,
    /// module name -> (path relative to lib/modules/KVER, its direct and indirect deps as paths)
    dep: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
    /// module name -> the names its `softdep` lines ask for (`r8169` -> `realtek`)
    softdep: BTreeMap<String, Vec<String>>,
    /// a plain alias name (`crypto-crc32c`, no glob) -> the modules that carry it
    literal_alias: BTreeMap<String, BTreeSet<String>>,
}

/// The `depmod` binary: on PATH, else in the sbin directories a non-root PATH may lack.
fn depmod_program() -> PathBuf {
    ["/usr/sbin/depmod", "/sbin/depmod"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("depmod"))
}

/// Runs `depmod -b ROOT KVER` (writes `ROOT/lib/modules/KVER/modules.*`).
pub fn depmod(root: &Path, kver: &str) -> Result<()> {
    let output = Command::new(depmod_program())
        .arg("-b")
        .arg(root)
        .arg(kver)
        .output()
        .map_err(|e| KmodError::Depmod {
            root: root.to_owned(),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        let detail = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(KmodError::Depmod {
            root: root.to_owned(),
            detail,
        });
    }
    Ok(())
}

/// Parses `modules.dep` lines (`kernel/a.ko: kernel/b.ko kernel/c.ko`).
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let (path, deps) = line.split_once(':')?;
            let path = path.trim();
            Some((
                module_name(path),
                (path.to_owned(), deps.split_whitespace().map(str::to_owned).collect()),
            ))
        })
        .collect()
}

/// Parses depmod's `modules.softdep` lines (`softdep r8169 pre: realtek`): module -> the names it
/// wants loaded before or after it.
pub fn parse_modules_softdep(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(module) = words.next() else { continue };
        let wanted = words.filter(|w| !w.ends_with(':')).map(module_name);
        out.entry(module_name(module)).or_default().extend(wanted);
    }
    out
}

/// The plain names of `modules.alias` (no `*`, `?` or `[`), such as `crypto-crc32c`, with the
/// modules that carry each; softdeps name modules by such aliases.
fn parse_literal_aliases(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("alias") {
            continue;
        }
        let (Some(alias), Some(module)) = (words.next(), words.next()) else {
            continue;
        };
        if !alias.contains(['*', '?', '[']) {
            out.entry(module_name(alias)).or_default().insert(module_name(module));
        }
    }
    out
}

impl KernelTree {
    /// Opens an unpacked kernel package, running depmod on it if it has no `modules.dep` yet.
    pub fn open(root: &Path) -> Result<KernelTree> {
        let modules = root.join("lib/modules");
        let entries = fs::read_dir(&modules).map_err(io_err("listing", &modules))?;
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &modules))?;
            if entry.path().join("kernel").is_dir() {
                versions.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let [kver] = &versions[..] else {
            return Err(KmodError::NoKernel(root.to_owned()));
        };
        let dir = modules.join(kver);
        let dep_path = dir.join("modules.dep");
        if !dep_path.exists() {
            depmod(root, kver)?;
        }
        let dep = parse_modules_dep(&fs::read_to_string(&dep_path).map_err(io_err("reading", &dep_path))?);
        let builtin_path = dir.join("modules.builtin");
        let builtin = fs::read_to_string(&builtin_path)
            .map_err(io_err("reading", &builtin_path))?
            .lines()
            .map(module_name)
            .collect();
        let optional = |name: &str| -> Result<String> {
            let path = dir.join(name);
            match fs::read_to_string(&path) {
                Ok(text) => Ok(text),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(io_err("reading", &path)(e).into()),
            }
        };
        Ok(KernelTree {
            root: root.to_owned(),
            kver: kver.clone(),
            dep,
            builtin,
            softdep: parse_modules_softdep(&optional("modules.softdep")?),
            literal_alias: parse_literal_aliases(&optional("modules.alias")?),
        })
    }

    /// `lib/modules/KVER` of the unpacked package, with depmod's index of every module Debian ships
    /// (`modules.alias` there says what Debian's kernel can drive at all).
    pub fn module_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.kver)
    }

    /// The kernel release (`6.1.0-56-amd64`).
    pub fn kver(&self) -> &str {
        &self.kver
    }

    /// The kernel image of the package (`boot/vmlinuz-KVER`).
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join("boot").join(format!("vmlinuz-{}", self.kver))
    }

    /// The files (relative to `lib/modules/KVER`) needed to load `names`, sorted: their
    /// dependencies, and what their softdeps ask for (`r8169` does not probe without the `realtek`
    /// PHY driver), with those modules' own dependencies and softdeps. Built-in names need nothing;
    /// an unknown requested name is an error, an unknown softdep is skipped (it is optional).
    pub fn closure(&self, names: &BTreeSet<String>) -> Result<BTreeSet<String>> {
        let mut files = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut todo: Vec<(String, bool)> = names.iter().rev().map(|n| (n.clone(), true)).collect();
        while let Some((name, requested)) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            match self.dep.get(&name) {
                Some((path, deps)) => {
                    files.insert(path.clone());
                    for dep in deps {
                        files.insert(dep.clone());
                        todo.push((module_name(dep), false));
                    }
                }
                None if self.builtin.contains(&name) || !requested => {}
                None => {
                    return Err(KmodError::UnknownModule {
                        kver: self.kver.clone(),
                        name,
                    })
                }
            }
            for wanted in self.softdep.get(&name).into_iter().flatten() {
                if self.dep.contains_key(wanted) {
                    todo.push((wanted.clone(), false));
                } else if let Some(modules) = self.literal_alias.get(wanted) {
                    todo.extend(modules.iter().map(|m| (m.clone(), false)));
                }
            }
        }
        Ok(files)
    }

    /// Copies the closure of `names` into `dest/lib/modules/KVER/` (decompressing `.ko.xz` and
    /// `.ko.zst`), adds `modules.builtin*` and `modules.order`, and runs depmod on `dest`. Returns
    /// the module names loaded on request, in a stable order (the ones asked for that are not built in).
    pub fn stage(&self, names: &BTreeSet<String>, dest: &Path) -> Result<Vec<String>> {
        let src_dir = self.root.join("lib/modules").join(&self.kver);
        let dest_dir = dest.join("lib/modules").join(&self.kver);
        for rel in self.closure(names)? {
            let src = src_dir.join(&rel);
            let out_rel = rel
                .strip_suffix(".xz")
                .or_else(|| rel.strip_suffix(".zst"))
                .unwrap_or(&rel);
            let out = dest_dir.join(out_rel);
            if let Some(parent) = out.parent() {
                fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
            }
            copy_module(&src, &out)?;
        }
        for meta in ["modules.builtin", "modules.builtin.modinfo", "modules.order"] {
            let src = src_dir.join(meta);
            if src.exists() {
                let out = dest_dir.join(meta);
                fs::copy(&src, &out).map_err(io_err("copying", &src))?;
            }
        }
        depmod(dest, &self.kver)?;
        Ok(names.iter().filter(|n| self.dep.contains_key(*n)).cloned().collect())
    }
}

fn copy_module(src: &Path, out: &Path) -> Result<()> {
    let name = src.to_string_lossy();
    if !(name.ends_with(".xz") || name.ends_with(".zst")) {
        fs::copy(src, out).map_err(io_err("copying", src))?;
        return Ok(());
    }
    let file = fs::File::open(src).map_err(io_err("opening", src))?;
    let mut data = Vec::new();
    let read = if name.ends_with(".xz") {
        xz2::read::XzDecoder::new(file).read_to_end(&mut data)
    } else {
        zstd::stream::read::Decoder::new(file).and_then(|mut d| d.read_to_end(&mut data))
    };
    read.map_err(|source| KmodError::Decompress {
        path: src.to_owned(),
        source,
    })?;
    let mut f = fs::File::create(out).map_err(io_err("creating", out))?;
    f.write_all(&data).map_err(io_err("writing", out))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_like_modprobe() {
        assert_eq!(module_name("kernel/drivers/nvme/host/nvme-core.ko"), "nvme_core");
        assert_eq!(module_name("usb-storage"), "usb_storage");
        assert_eq!(module_name("kernel/fs/fat/vfat.ko.xz"), "vfat");
    }

    #[test]
    fn request_expands_sets_and_single_names() {
        let r = expand_request(&["nic", "usb-storage", "e1000e"]);
        assert!(r.contains("r8169") && r.contains("usb_storage") && r.contains("e1000e"));
        assert_eq!(r.iter().filter(|n| *n == "e1000e").count(), 1);
    }

    fn fake_tree(dir: &Path) -> KernelTree {
        let k = dir.join("lib/modules/9.9.9-test");
        fs::create_dir_all(k.join("kernel/a")).unwrap();
        let dep =
            "kernel/a/nvme.ko: kernel/a/nvme-core.ko kernel/a/crc.ko.xz\nkernel/a/nvme-core.ko: kernel/a/crc.ko.xz\n\
                   kernel/a/crc.ko.xz:\nkernel/a/e1000e.ko:\n";
        fs::write(k.join("modules.dep"), dep).unwrap();
        fs::write(k.join("modules.builtin"), "kernel/drivers/virtio/virtio_pci.ko\n").unwrap();
        for m in ["nvme.ko", "nvme-core.ko", "e1000e.ko"] {
            fs::write(k.join("kernel/a").join(m), m).unwrap();
        }
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(b"crc module bytes").unwrap();
        fs::write(k.join("kernel/a/crc.ko.xz"), xz.finish().unwrap()).unwrap();
        KernelTree::open(dir).unwrap()
    }

    #[test]
    fn closure_follows_modules_dep_and_skips_builtins() {
        let dir = tempfile::tempdir().unwrap();
        let tree = fake_tree(dir.path());
        assert_eq!(tree.kver(), "9.9.9-test");
        let want: BTreeSet<String> = ["nvme".to_owned(), "virtio_pci".to_owned()].into();
        let files = tree.closure(&want).unwrap();
        let expected: BTreeSet<String> = ["kernel/a/crc.ko.xz", "kernel/a/nvme-core.ko", "kernel/a/nvme.ko"]
            .map(str::to_owned)
            .into();
        assert_eq!(files, expected);
        let unknown: BTreeSet<String> = ["no_such_driver".to_owned()].into();
        assert!(matches!(tree.closure(&unknown), Err(KmodError::UnknownModule { .. })));
    }

    #[test]
    fn closure_follows_softdeps_by_name_and_by_alias() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("lib/modules/9.9.9-test");
        fs::create_dir_all(k.join("kernel")).unwrap();
        fs::write(
            k.join("modules.dep"),
            "kernel/net/r8169.ko: kernel/net/libphy.ko\nkernel/net/realtek.ko: kernel/net/libphy.ko\n\
             kernel/net/libphy.ko:\nkernel/fs/ext4.ko: kernel/fs/jbd2.ko\nkernel/fs/jbd2.ko:\n\
             kernel/crypto/crc32c_generic.ko:\nkernel/arch/crc32c-intel.ko:\n",
        )
        .unwrap();
        fs::write(k.join("modules.builtin"), "").unwrap();
        fs::write(
            k.join("modules.softdep"),
            "# Soft dependencies extracted from modules themselves.\nsoftdep r8169 pre: realtek\n\
             softdep jbd2 pre: crypto-crc32c post: not_shipped\n",
        )
        .unwrap();
        fs::write(
            k.join("modules.alias"),
            "alias crypto-crc32c crc32c_generic\nalias crypto-crc32c crc32c-intel\nalias crc32c* not_literal\n",
        )
        .unwrap();
        let tree = KernelTree::open(dir.path()).unwrap();
        let files = tree.closure(&["r8169".to_owned()].into()).unwrap();
        let want: BTreeSet<String> = ["kernel/net/libphy.ko", "kernel/net/r8169.ko", "kernel/net/realtek.ko"]
            .map(str::to_owned)
            .into();
        assert_eq!(files, want);
        // ext4 -> jbd2 (modules.dep) -> crypto-crc32c (softdep, an alias of two modules).
        let files = tree.closure(&["ext4".to_owned()].into()).unwrap();
        assert!(files.contains("kernel/crypto/crc32c_generic.ko") && files.contains("kernel/arch/crc32c-intel.ko"));
        assert_eq!(files.len(), 4, "{files:?}");
        assert_eq!(
            parse_modules_softdep("softdep a pre: b c post: d-e\n")["a"],
            ["b", "c", "d_e"]
        );
    }

    #[test]
    fn copy_module_unpacks_xz() {
        let dir = tempfile::tempdir().unwrap();
        let tree = fake_tree(dir.path());
        let src = dir
            .path()
            .join("lib/modules")
            .join(tree.kver())
            .join("kernel/a/crc.ko.xz");
        let out = dir.path().join("crc.ko");
        copy_module(&src, &out).unwrap();
        assert_eq!(fs::read(out).unwrap(), b"crc module bytes");
    }
}
