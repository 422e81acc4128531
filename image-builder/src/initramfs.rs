//! A deterministic initramfs: a cpio `newc` archive, compressed with zstd.
//!
//! The tree is described in memory ([`Initramfs`]): directories, regular files (from a path or from
//! bytes), symlinks and device nodes. Writing it is reproducible by construction:
//!
//! - entries are written in byte order of their path (a parent sorts before its children);
//! - inode numbers are 1, 2, 3, ... in that order, every entry has one link;
//! - owner and group are 0, every mtime is the given epoch ([`source_date_epoch`]);
//! - permissions come from the description, not from the build host (a file from disk keeps only
//!   whether it is executable);
//! - zstd runs single-threaded at a fixed level.
//!
//! The archive format is written by the `cpio` crate (the one coreos-installer uses); this module
//! only decides what goes in and in which order.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cpio::newc::Builder;

use crate::io::{io_err, IoError};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;

/// Errors while describing or writing an initramfs.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// A path inside the archive is not a plain relative path.
    #[error("`{0}` is not a valid path inside the initramfs (use a/b/c, no `..`, no empty parts)")]
    BadPath(String),
    /// Two different entries were given the same path, or a file is used as a directory.
    #[error("`{0}` is given twice (or a file is used as a directory) in the initramfs")]
    Conflict(String),
    /// A file is too large for the newc format (4 GiB).
    #[error("{0} is larger than the 4 GiB a cpio newc entry can hold")]
    TooLarge(PathBuf),
    /// `SOURCE_DATE_EPOCH` is set but is not a number that fits the format.
    #[error("SOURCE_DATE_EPOCH=`{0}` is not a number of seconds between 0 and 4294967295")]
    BadEpoch(String),
    /// A source file changed size while it was being archived.
    #[error("{0} changed while it was being archived; retry")]
    Changed(PathBuf),
    /// Reading a source or writing the output failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

type Result<T> = std::result::Result<T, InitramfsError>;

/// Where a regular file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on the build host, read when the archive is written.
    Path(PathBuf),
    /// Bytes given directly.
    Bytes(Vec<u8>),
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file.
    File(Source),
    /// A symbolic link to the given target.
    Symlink(String),
    /// A character device with (major, minor).
    CharDevice(u32, u32),
    /// A block device with (major, minor).
    BlockDevice(u32, u32),
}

/// An initramfs tree: archive path (no leading `/`) to (permission bits, node).
#[derive(Debug, Clone, Default)]
pub struct Initramfs {
    entries: BTreeMap<String, (u32, Node)>,
}

/// The epoch used for every mtime: `$SOURCE_DATE_EPOCH`, or 0 when it is unset.
pub fn source_date_epoch() -> Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| InitramfsError::BadEpoch(v)),
        _ => Ok(0),
    }
}

fn clean_path(path: &str) -> Result<String> {
    let trimmed = path.trim_start_matches('/');
    let parts: Vec<&str> = trimmed.split('/').collect();
    if trimmed.is_empty() || parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return Err(InitramfsError::BadPath(path.to_owned()));
    }
    Ok(parts.join("/"))
}

impl Initramfs {
    /// An empty tree.
    pub fn new() -> Initramfs {
        Initramfs::default()
    }

    /// Adds a node at `path` with permission bits `perm` (e.g. `0o755`); missing parent directories
    /// are added with `0o755`. Adding the same directory twice is allowed; anything else twice is not.
    pub fn add(&mut self, path: &str, perm: u32, node: Node) -> Result<()> {
        let path = clean_path(path)?;
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, p)| p)
            .unwrap_or(&[])
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(parent.clone(), (0o755, Node::Dir));
                }
                Some((_, Node::Dir)) => {}
                Some(_) => return Err(InitramfsError::Conflict(parent)),
            }
        }
        match self.entries.get(&path) {
            Some((_, Node::Dir)) if node == Node::Dir => {
                self.entries.insert(path, (perm & 0o7777, node));
                Ok(())
            }
            Some(_) => Err(InitramfsError::Conflict(path)),
            None => {
                self.entries.insert(path, (perm & 0o7777, node));
                Ok(())
            }
        }
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str) -> Result<()> {
        self.add(path, 0o755, Node::Dir)
    }

    /// Adds a regular file from bytes.
    pub fn bytes(&mut self, path: &str, perm: u32, data: impl Into<Vec<u8>>) -> Result<()> {
        self.add(path, perm, Node::File(Source::Bytes(data.into())))
    }

    /// Adds a host file; it is `0o755` if the host file has any execute bit, else `0o644`.
    pub fn file(&mut self, path: &str, source: &Path) -> Result<()> {
        let meta = fs::metadata(source).map_err(io_err("reading", source))?;
        let perm = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        self.add(path, perm, Node::File(Source::Path(source.to_owned())))
    }

    /// Adds a symlink.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.add(path, 0o777, Node::Symlink(target.to_owned()))
    }

    /// Adds a whole host directory under `prefix`: directories, regular files and symlinks, in
    /// sorted order. Other file types are an error.
    pub fn tree(&mut self, prefix: &str, source: &Path) -> Result<()> {
        let io = io_err("listing", source);
        let mut names: Vec<_> = fs::read_dir(source)
            .map_err(io)?
            .collect::<io::Result<Vec<_>>>()
            .map_err(io)?;
        names.sort_by_key(|e| e.file_name());
        self.dir(prefix)?;
        for entry in names {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{prefix}/{name}");
            let ty = entry.file_type().map_err(io)?;
            if ty.is_dir() {
                self.tree(&path, &entry.path())?;
            } else if ty.is_symlink() {
                let target = fs::read_link(entry.path()).map_err(io)?;
                self.symlink(&path, &target.to_string_lossy())?;
            } else if ty.is_file() {
                self.file(&path, &entry.path())?;
            } else {
                return Err(InitramfsError::BadPath(entry.path().display().to_string()));
            }
        }
        Ok(())
    }

    /// The paths in archive order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Writes the uncompressed cpio archive (with its trailer) to `out`.
    pub fn write_cpio<W: Write>(&self, mut out: W, mtime: u32) -> Result<W> {
        let wio = io_err("writing", Path::new("<initramfs>"));
        for (index, (path, (perm, node))) in self.entries.iter().enumerate() {
            let ino = u32::try_from(index + 1).map_err(|_| InitramfsError::TooLarge(PathBuf::from(path)))?;
            let header = Builder::new(path).ino(ino).uid(0).gid(0).nlink(1).mtime(mtime);
            let (kind, rdev) = match node {
                Node::Dir => (S_IFDIR, None),
                Node::File(_) => (S_IFREG, None),
                Node::Symlink(_) => (S_IFLNK, None),
                Node::CharDevice(ma, mi) => (S_IFCHR, Some((*ma, *mi))),
                Node::BlockDevice(ma, mi) => (S_IFBLK, Some((*ma, *mi))),
            };
            let mut header = header.mode(kind | perm);
            if let Some((major, minor)) = rdev {
                header = header.rdev_major(major).rdev_minor(minor);
            }
            out = match node {
                Node::File(Source::Path(src)) => {
                    let rio = io_err("reading", src);
                    let file = fs::File::open(src).map_err(rio)?;
                    let len = file.metadata().map_err(rio)?.len();
                    let size = u32::try_from(len).map_err(|_| InitramfsError::TooLarge(src.clone()))?;
                    let mut writer = header.write(out, size);
                    let copied = io::copy(&mut file.take(len), &mut writer).map_err(rio)?;
                    if copied != len {
                        return Err(InitramfsError::Changed(src.clone()));
                    }
                    writer.finish().map_err(wio)?
                }
                Node::File(Source::Bytes(data)) => write_entry(header, out, data).map_err(wio)?,
                Node::Symlink(target) => write_entry(header, out, target.as_bytes()).map_err(wio)?,
                Node::Dir | Node::CharDevice(..) | Node::BlockDevice(..) => {
                    header.write(out, 0).finish().map_err(wio)?
                }
            };
        }
        Ok(cpio::newc::trailer(out).map_err(wio)?)
    }

    /// Writes the archive compressed with zstd at `level` (single-threaded, so the bytes depend only
    /// on the tree, the epoch and the level) to the file `out`.
    pub fn write_zstd(&self, out: &Path, mtime: u32, level: i32) -> Result<()> {
        let wio = io_err("writing", out);
        let file = fs::File::create(out).map_err(wio)?;
        let mut encoder =
            zstd::stream::write::Encoder::new(BufWriter::with_capacity(1 << 20, file), level).map_err(wio)?;
        // Compressed size in the frame header and a checksum the kernel's decompressor verifies.
        encoder.include_checksum(true).map_err(wio)?;
        let encoder = self.write_cpio(encoder, mtime)?;
        let mut buffered = encoder.finish().map_err(wio)?;
        buffered.flush().map_err(wio)?;
        buffered
            .into_inner()
            .map_err(|e| wio(e.into_error()))?
            .sync_all()
            .map_err(wio)?;
        Ok(())
    }
}

fn write_entry<W: Write>(header: Builder, out: W, data: &[u8]) -> io::Result<W> {
    let size = u32::try_from(data.len()).map_err(|_| io::Error::other("entry larger than 4 GiB"))?;
    let mut writer = header.write(out, size);
    writer.write_all(data)?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> Initramfs {
        let host = dir.join("tool");
        fs::write(&host, b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(&host, fs::Permissions::from_mode(0o700)).unwrap();
        let mut fs = Initramfs::new();
        fs.bytes("etc/motd", 0o644, "hello\n").unwrap();
        fs.file("bin/tool", &host).unwrap();
        fs.symlink("bin/sh", "tool").unwrap();
        fs.add("dev/console", 0o600, Node::CharDevice(5, 1)).unwrap();
        fs.add("dev/sda", 0o660, Node::BlockDevice(8, 0)).unwrap();
        fs.dir("proc").unwrap();
        fs
    }

    #[test]
    fn entries_read_back_with_fixed_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let archive = sample(dir.path()).write_cpio(Vec::new(), 1_700_000_000).unwrap();
        let mut rest: &[u8] = &archive;
        let mut seen = Vec::new();
        loop {
            let mut reader = cpio::newc::Reader::new(rest).unwrap();
            let e = reader.entry().clone();
            if e.is_trailer() {
                break;
            }
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            assert_eq!(
                (e.uid(), e.gid(), e.nlink(), e.mtime()),
                (0, 0, 1, 1_700_000_000),
                "{}",
                e.name()
            );
            assert_eq!(e.ino() as usize, seen.len() + 1);
            seen.push((e.name().to_owned(), e.mode(), e.rdev_major(), e.rdev_minor(), data));
            rest = reader.finish().unwrap();
        }
        let names: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "bin/tool",
                "dev",
                "dev/console",
                "dev/sda",
                "etc",
                "etc/motd",
                "proc"
            ]
        );
        let get = |n: &str| seen.iter().find(|s| s.0 == n).unwrap();
        assert_eq!(get("bin/tool").1, 0o100_755);
        assert_eq!(get("bin/tool").4, b"#!/bin/sh\necho hi\n");
        assert_eq!(
            (get("bin/sh").1, get("bin/sh").4.as_slice()),
            (0o120_777, b"tool".as_slice())
        );
        assert_eq!(
            (get("dev/console").1, get("dev/console").2, get("dev/console").3),
            (0o020_600, 5, 1)
        );
        assert_eq!((get("dev/sda").1, get("dev/sda").2), (0o060_660, 8));
        assert_eq!(get("etc").1, 0o040_755);
    }

    #[test]
    fn bad_paths_and_conflicts_are_refused() {
        let mut fs = Initramfs::new();
        assert!(matches!(fs.dir("a/../b"), Err(InitramfsError::BadPath(_))));
        assert!(matches!(fs.dir(""), Err(InitramfsError::BadPath(_))));
        fs.bytes("/a/file", 0o644, "x").unwrap();
        assert!(matches!(
            fs.bytes("a/file", 0o644, "y"),
            Err(InitramfsError::Conflict(_))
        ));
        assert!(matches!(
            fs.bytes("a/file/under", 0o644, "y"),
            Err(InitramfsError::Conflict(_))
        ));
        fs.dir("a").unwrap();
    }

    #[test]
    fn same_tree_same_bytes_and_epoch_matters() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.zst");
        let b = dir.path().join("b.zst");
        sample(dir.path()).write_zstd(&a, 42, 3).unwrap();
        sample(dir.path()).write_zstd(&b, 42, 3).unwrap();
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
        sample(dir.path()).write_zstd(&b, 43, 3).unwrap();
        assert_ne!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    }
}
