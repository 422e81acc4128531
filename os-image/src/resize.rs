//! Resizable images: the last filesystem is shrunk on a copy at pack time (never on the reference
//! disk) and grown to its partition after install. Both use the filesystems' own tools, which know
//! every corner of their format: e2fsprogs' `resize2fs` (with `e2fsck`) for ext2/3/4 and ntfs-3g's
//! `ntfsresize` for NTFS.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::alloc::{self, FreeMap, ReadAt};
use crate::format::{Filesystem, ALIGNMENT, BLOCK};
use crate::pack::is_zero;

/// Room left in a shrunk filesystem above its minimum: 64 MiB plus 5 % of the minimum (the
/// filesystem is grown to the target disk at install anyway; the margin keeps the shrink itself
/// and a first boot on the smallest disk from running full).
pub fn margin(min_bytes: u64) -> u64 {
    64 * 1024 * 1024 + min_bytes / 20
}

/// Where a program lives: `$PATH`, then the sbin directories (the agent runs as root with a short PATH).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs `tool args`; `Ok((exit code, stdout and stderr))` once it ran, `Err` when it is missing.
fn run(tool: &str, args: &[&str]) -> Result<(i32, String), String> {
    let path = find_tool(tool).ok_or_else(|| format!("{tool} is not installed"))?;
    let out = Command::new(&path)
        .args(args)
        .stdin(Stdio::null())
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("running {}: {e}", path.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().unwrap_or(-1), text))
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(4)..].join(" / ")
}

fn number_after(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Copies the in-use blocks of `[base, base + len)` of `src` into a new sparse file at `path`
/// (free blocks and zero blocks are left as holes: their contents do not matter to the filesystem).
fn sparse_copy(src: &File, base: u64, len: u64, free: &FreeMap, path: &Path) -> Result<File, String> {
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    out.set_len(len)
        .map_err(|e| format!("sizing {}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < len {
        let n = (len - pos).min(1 << 20);
        let window = &mut buf[..usize::try_from(n).unwrap_or(0)];
        src.read_exact_at(window, base + pos)
            .map_err(|e| format!("reading the reference disk: {e}"))?;
        for (i, block) in window.chunks(4096).enumerate() {
            let off = pos + i as u64 * BLOCK;
            if !free.is_free(off / BLOCK) && !is_zero(block) {
                out.write_all_at(block, off)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
        }
        pos += n;
    }
    Ok(out)
}

/// A shrunk copy of the last filesystem: the file and the partition size it now needs.
#[derive(Debug)]
pub struct Shrunk {
    /// The copy (delete it when done).
    pub file: File,
    /// The partition size the shrunk filesystem needs, a multiple of 1 MiB.
    pub part_bytes: u64,
}

/// Copies the filesystem at `[base, base + len)` of `src` to `tmp` and shrinks the copy to its
/// minimum plus [`margin`]. `Ok(None)` when shrinking would not save at least 1 MiB.
pub fn shrink_copy(
    src: &File,
    base: u64,
    len: u64,
    fs: Filesystem,
    free: &FreeMap,
    tmp: &Path,
) -> Result<Option<Shrunk>, String> {
    match fs {
        Filesystem::Ext4 => shrink_ext4(src, base, len, free, tmp),
        Filesystem::Ntfs => shrink_ntfs(src, base, len, free, tmp),
        Filesystem::Fat32 | Filesystem::Other => Ok(None),
    }
}

struct AtFile<'a>(&'a File);

impl ReadAt for AtFile<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
}

fn shrink_ext4(src: &File, base: u64, len: u64, free: &FreeMap, tmp: &Path) -> Result<Option<Shrunk>, String> {
    let copy = sparse_copy(src, base, len, free, tmp)?;
    let t = tmp.to_string_lossy();
    // Preen only: a filesystem with errors that need a decision is refused, not repaired in the image.
    let (code, out) = run("e2fsck", &["-f", "-p", &t])?;
    if code > 1 {
        return Err(format!(
            "e2fsck finds errors in the root filesystem it will not fix on its own (exit {code}: {}); \
             run `e2fsck -f` on the reference disk's root partition and capture again",
            tail(&out)
        ));
    }
    let (code, out) = run("resize2fs", &["-P", &t])?;
    let (Some(min_blocks), Some((bs, blocks))) = (
        number_after(&out, "Estimated minimum size of the filesystem:"),
        alloc::ext4_geometry(&AtFile(&copy)),
    ) else {
        return Err(format!(
            "resize2fs -P gave no minimum size (exit {code}: {})",
            tail(&out)
        ));
    };
    let want = (min_blocks * bs + margin(min_blocks * bs)).div_ceil(ALIGNMENT) * ALIGNMENT;
    if want + ALIGNMENT > blocks * bs {
        return Ok(None);
    }
    let new_blocks = (want / bs).to_string();
    let (code, out) = run("resize2fs", &[&t, &new_blocks])?;
    if code != 0 {
        return Err(format!(
            "resize2fs could not shrink the copy of the root filesystem to {want} bytes (exit {code}: {})",
            tail(&out)
        ));
    }
    match alloc::ext4_geometry(&AtFile(&copy)) {
        Some((b, n)) if b * n <= want && b * n > 0 => Ok(Some(Shrunk {
            file: copy,
            part_bytes: want,
        })),
        other => Err(format!(
            "after resize2fs the copy has {other:?} (block size, blocks), not {want} bytes"
        )),
    }
}

fn shrink_ntfs(src: &File, base: u64, len: u64, free: &FreeMap, tmp: &Path) -> Result<Option<Shrunk>, String> {
    let copy = sparse_copy(src, base, len, free, tmp)?;
    let t = tmp.to_string_lossy();
    let (code, out) = run("ntfsresize", &["--info", "--force", "--no-progress-bar", &t])?;
    let Some(min) = number_after(&out, "You might resize at") else {
        return Err(format!(
            "ntfsresize --info gave no minimum size (exit {code}: {}); if Windows was not shut down \
             cleanly (Fast Startup, hibernation), boot it and shut it down with Shift held, then capture again",
            tail(&out)
        ));
    };
    let want = (min + margin(min)).div_ceil(ALIGNMENT) * ALIGNMENT;
    if want + ALIGNMENT > len {
        return Ok(None);
    }
    let (code, out) = run(
        "ntfsresize",
        &[
            "--force",
            "--force",
            "--no-progress-bar",
            "--size",
            &want.to_string(),
            &t,
        ],
    )?;
    if code != 0 {
        return Err(format!(
            "ntfsresize could not shrink the copy of the NTFS volume to {want} bytes (exit {code}: {})",
            tail(&out)
        ));
    }
    let mut bs = [0u8; 512];
    copy.read_exact_at(&mut bs, 0)
        .map_err(|e| format!("reading {}: {e}", tmp.display()))?;
    match alloc::NtfsGeometry::parse(&bs) {
        Some(g) if g.volume_bytes() <= want => Ok(Some(Shrunk {
            file: copy,
            part_bytes: want,
        })),
        other => Err(format!(
            "after ntfsresize the copy's boot sector reads {other:?}, not a volume within {want} bytes"
        )),
    }
}

/// What growing the installed filesystem did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grown {
    /// Grown to fill the partition.
    Grown {
        /// The tool that did it.
        tool: &'static str,
    },
    /// The filesystem kind is not grown by the installer (FAT, other).
    NotGrowable,
    /// The tool is not on this system: the partition is grown, the filesystem keeps the image's size.
    ToolMissing {
        /// The program that is missing.
        tool: &'static str,
    },
}

/// Grows the filesystem `fs` on `device` (the installed partition, a block device or a file of
/// exactly the partition's size) to fill it. An error means the tool ran and failed.
pub fn grow_filesystem(fs: Filesystem, device: &Path) -> Result<Grown, String> {
    let d = device.to_string_lossy();
    let (tool, args): (&'static str, Vec<&str>) = match fs {
        Filesystem::Ext4 => ("resize2fs", vec![&d]),
        Filesystem::Ntfs => ("ntfsresize", vec!["--force", "--no-progress-bar", &d]),
        Filesystem::Fat32 | Filesystem::Other => return Ok(Grown::NotGrowable),
    };
    if find_tool(tool).is_none() {
        return Ok(Grown::ToolMissing { tool });
    }
    let (mut code, mut out) = run(tool, &args)?;
    if fs == Filesystem::Ext4 && code != 0 && out.contains("e2fsck -f") {
        let (c, o) = run("e2fsck", &["-f", "-p", &d])?;
        if c > 1 {
            return Err(format!("e2fsck -f -p {d} before growing: exit {c}: {}", tail(&o)));
        }
        (code, out) = run(tool, &args)?;
    }
    if fs == Filesystem::Ntfs && out.contains("Nothing to do") {
        code = 0;
    }
    if code != 0 {
        return Err(format!("{tool} {d}: exit {code}: {}", tail(&out)));
    }
    Ok(Grown::Grown { tool })
}

/// A grown filesystem, checked: its size in bytes as its own superblock or boot sector says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// What growing did.
    pub grown: Grown,
    /// The filesystem's size after growing (`ext4`: blocks × block size; NTFS: the volume).
    pub fs_bytes: u64,
}

/// Grows `fs` on `device` (exactly the installed partition) with [`grow_filesystem`], then checks it
/// read-only with its own checker (`e2fsck -fn`, `ntfsfix -n`) and reads its new size. An error means
/// the grow or the check failed: the disk must not be reported installed.
pub fn grow_and_check(fs: Filesystem, device: &Path) -> Result<Checked, String> {
    let grown = grow_filesystem(fs, device)?;
    let d = device.to_string_lossy();
    if matches!(grown, Grown::Grown { .. }) {
        let (tool, args): (&str, Vec<&str>) = match fs {
            Filesystem::Ext4 => ("e2fsck", vec!["-f", "-n", &d]),
            _ => ("ntfsfix", vec!["-n", &d]),
        };
        let (code, out) = run(tool, &args)?;
        if code != 0 {
            return Err(format!(
                "{tool} {} after growing finds the filesystem inconsistent (exit {code}: {})",
                args.join(" "),
                tail(&out)
            ));
        }
    }
    let file = File::open(device).map_err(|e| format!("opening {d}: {e}"))?;
    let fs_bytes = match fs {
        Filesystem::Ext4 => alloc::ext4_geometry(&AtFile(&file)).map(|(b, n)| b * n),
        Filesystem::Ntfs => {
            let mut bs = [0u8; 512];
            file.read_exact_at(&mut bs, 0)
                .map_err(|e| format!("reading {d}: {e}"))?;
            alloc::NtfsGeometry::parse(&bs).map(|g| g.volume_bytes())
        }
        Filesystem::Fat32 | Filesystem::Other => Some(0),
    }
    .ok_or_else(|| format!("after growing, {d} holds no filesystem the installer recognises"))?;
    Ok(Checked { grown, fs_bytes })
}

/// The machine-id in `/etc/machine-id` of the ext4 filesystem at byte `offset` of `disk` (read with
/// e2fsprogs' `debugfs`, which opens `disk?offset=N` read-only), or `None` when it is empty,
/// `uninitialized` (systemd's first-boot marker), missing, or `debugfs` is not installed.
pub fn machine_id(disk: &Path, offset: u64) -> Option<String> {
    let target = format!("{}?offset={offset}", disk.display());
    let path = find_tool("debugfs")?;
    let out = Command::new(path)
        .args(["-R", "cat /etc/machine-id", &target])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .env("LC_ALL", "C")
        .output()
        .ok()?;
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}
