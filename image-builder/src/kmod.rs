//! Kernel modules: choose a set by name, close it over `modules.dep`, stage it, run depmod.
//!
//! Debian's kernel package ships `lib/modules/KVER/kernel/**.ko` and `modules.builtin` but not
//! `modules.dep` (its postinst makes it), so [`KernelTree::open`] runs `depmod -b` once on the
//! unpacked package. [`KernelTree::stage`] then copies the closure of the chosen modules into the
//! initramfs tree and runs `depmod -b` there, so `modules.dep` and `modules.alias` describe exactly
//! what ships (busybox `modprobe` and the agent's coldplug read them).
//!
//! **Compression:** modules are shipped uncompressed. Debian 12 builds with
//! `CONFIG_MODULE_COMPRESS_NONE`; newer Debian kernels ship `.ko.xz`, which this module unpacks at
//! build time. The module signature covers the uncompressed bytes, so it stays valid under Secure
//! Boot lockdown; loading compressed files would need `CONFIG_MODULE_DECOMPRESS` and the
//! `MODULE_INIT_COMPRESSED_FILE` flag of `finit_module`; and the whole initramfs is compressed once,
//! which packs better than per-file compression.
//!
//! **Firmware:** none is shipped yet. The drivers chosen here that name firmware (`r8169`: `rtl_nic/*`)
//! find it in Debian's `firmware-realtek`, which is in the `non-free-firmware` component that the
//! build hosts do not enable; see `docs/live-image.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::io::{io_err, IoError};

/// Named module sets. A request names modules or these sets.
pub const SETS: &[(&str, &[&str])] = &[
    (
        "storage",
        &[
            "nvme",
            "ahci",
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
        ],
    ),
    ("nic", &["e1000e", "e1000", "virtio_net", "r8169", "igb"]),
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

/// The default request: every named set.
pub const DEFAULT_REQUEST: &[&str] = &["storage", "nic", "fs", "usb"];

/// Errors of the module layer.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// The unpacked kernel package has no (or more than one) `lib/modules/KVER`.
    #[error("{0}: expected exactly one lib/modules/<version> directory in the unpacked kernel package")]
    NoKernel(PathBuf),
    /// A requested module is neither a loadable module nor built in.
    #[error("kernel {kver} has no module `{name}` (neither loadable nor built in); check the name with `modinfo`")]
    UnknownModule { kver: String, name: String },
    /// depmod could not be run or failed.
    #[error("depmod -b {root}: {detail}; install Debian's kmod package")]
    Depmod { root: PathBuf, detail: String },
    /// File I/O failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A compressed module could not be unpacked.
    #[error("decompressing {path}: {source}")]
    Decompress { path: PathBuf, source: io::Error },
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
        Ok(KernelTree {
            root: root.to_owned(),
            kver: kver.clone(),
            dep,
            builtin,
        })
    }

    /// The kernel release (`6.1.0-56-amd64`).
    pub fn kver(&self) -> &str {
        &self.kver
    }

    /// The kernel image of the package (`boot/vmlinuz-KVER`).
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join("boot").join(format!("vmlinuz-{}", self.kver))
    }

    /// The files (relative to `lib/modules/KVER`) needed to load `names`, dependencies included,
    /// sorted. Built-in names need nothing; an unknown name is an error.
    pub fn closure(&self, names: &BTreeSet<String>) -> Result<BTreeSet<String>> {
        let mut files = BTreeSet::new();
        for name in names {
            match self.dep.get(name) {
                Some((path, deps)) => {
                    files.insert(path.clone());
                    files.extend(deps.iter().cloned());
                }
                None if self.builtin.contains(name) => {}
                None => {
                    return Err(KmodError::UnknownModule {
                        kver: self.kver.clone(),
                        name: name.clone(),
                    })
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
