//! The filesystem tools on the stick: e2fsprogs' `resize2fs` and `e2fsck`, ntfs-3g's `ntfsresize`
//! and `ntfsfix`, which `lapterop-agent capture` shrinks with and the installer grows and checks
//! with (`lapterop_osimage::resize`).
//!
//! They are Debian's own dynamically linked binaries from the pinned packages
//! (`crate::debian::ROOTS`, roles `fstools-*`), not rebuilt: the agent is static, these are not, so
//! the initramfs gets exactly their closure: each program's `DT_NEEDED` libraries, found by soname
//! in the unpacked library packages, the libraries' own needs in turn, and the ELF interpreter they
//! name (glibc's `ld-linux-x86-64.so.2`). glibc's loader looks in `/lib/x86_64-linux-gnu` by
//! default (Debian's multiarch path), so no `ld.so.cache` is needed. A library that no pinned
//! package holds fails the build with its name, never a stick whose tools cannot start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::debian::{Cache, Lock};
use crate::elf::{self, ElfError};
use crate::io::{io_err, IoError};

/// The programs: (role of the package, path in it, path in the initramfs).
pub const PROGRAMS: &[(&str, &str, &str)] = &[
    ("fstools-e2fsprogs", "sbin/resize2fs", "usr/sbin/resize2fs"),
    ("fstools-e2fsprogs", "sbin/e2fsck", "usr/sbin/e2fsck"),
    ("fstools-ntfs-3g", "sbin/ntfsresize", "usr/sbin/ntfsresize"),
    ("fstools-ntfs-3g", "bin/ntfsfix", "usr/sbin/ntfsfix"),
];

/// The packages the programs' libraries come from (searched in this order).
pub const LIBRARY_ROLES: &[&str] = &[
    "fstools-libext2fs",
    "fstools-libcom-err",
    "fstools-libblkid",
    "fstools-libuuid",
    "fstools-libntfs-3g",
    "fstools-libc",
];

/// Where the libraries go in the initramfs (glibc's default search path on Debian amd64).
pub const LIBRARY_DIR: &str = "lib/x86_64-linux-gnu";

/// Directories of an unpacked library package that hold libraries.
const PACKAGE_LIB_DIRS: &[&str] = &["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];

/// Errors while gathering the tools.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// A program is missing from its unpacked package.
    #[error(
        "{path} is missing from the unpacked {package}; run `lapterop-image-builder lock refresh` if Debian moved it"
    )]
    MissingProgram {
        /// The Debian package.
        package: String,
        /// The file.
        path: PathBuf,
    },
    /// A library a program needs is in none of the pinned library packages.
    #[error(
        "{program} needs {soname}, which none of the pinned packages ({roles}) holds; add its package to \
         ROOTS and LIBRARY_ROLES and run `lapterop-image-builder lock refresh`"
    )]
    MissingLibrary {
        /// The program or library that needs it.
        program: String,
        /// The soname.
        soname: String,
        /// The roles searched.
        roles: String,
    },
    /// The program asks for an interpreter other than glibc's x86_64 loader.
    #[error("{program} asks for the ELF interpreter {interp}, which the stick does not have")]
    Interpreter {
        /// The program.
        program: String,
        /// Its `PT_INTERP`.
        interp: String,
    },
    /// The lock list or a package failed.
    #[error(transparent)]
    Debian(#[from] crate::debian::DebianError),
    /// Reading an ELF file failed.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// File I/O failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// The unpacked packages the tools come from.
#[derive(Debug, Clone)]
pub struct ToolPackages {
    /// Role to unpacked root, for [`PROGRAMS`] and [`LIBRARY_ROLES`].
    pub roots: BTreeMap<String, PathBuf>,
}

/// Fetches, verifies and unpacks the packages of the tools pinned in `lock`.
pub fn fetch(lock: &Lock, cache: &Cache) -> Result<ToolPackages, ToolsError> {
    let mut roots = BTreeMap::new();
    for role in PROGRAMS.iter().map(|(r, _, _)| *r).chain(LIBRARY_ROLES.iter().copied()) {
        if !roots.contains_key(role) {
            roots.insert(role.to_owned(), cache.extract(lock.get(role)?)?);
        }
    }
    Ok(ToolPackages { roots })
}

/// One file of the tools in the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolFile {
    /// A program or library, copied from the unpacked package.
    File(PathBuf),
    /// A symbolic link (the interpreter's path, to the loader in [`LIBRARY_DIR`]).
    Link(String),
}

/// The files the tools need in the initramfs, sorted by archive path: the programs, their
/// libraries under [`LIBRARY_DIR`] by soname, and the interpreter's path the programs name as a link
/// to the loader there.
pub fn closure(packages: &ToolPackages, lock: &Lock) -> Result<Vec<(String, ToolFile)>, ToolsError> {
    let mut out = BTreeMap::new();
    // Sonames still to place, with who asked for them.
    let mut todo: Vec<(String, String)> = Vec::new();
    let mut interp = BTreeSet::new();
    for (role, rel, dest) in PROGRAMS {
        let root = packages.roots.get(*role).cloned().unwrap_or_default();
        let path = root.join(rel);
        if !path.is_file() {
            return Err(ToolsError::MissingProgram {
                package: lock
                    .get(role)
                    .map(|e| e.package.clone())
                    .unwrap_or_else(|_| (*role).to_owned()),
                path,
            });
        }
        let (wants, needed) = elf::dynamic_needs(&path)?;
        if let Some(i) = wants {
            interp.insert((i, (*dest).to_owned()));
        }
        todo.extend(needed.into_iter().map(|n| (n, (*dest).to_owned())));
        out.insert((*dest).to_owned(), ToolFile::File(path));
    }
    while let Some((soname, by)) = todo.pop() {
        let dest = format!("{LIBRARY_DIR}/{soname}");
        if out.contains_key(&dest) {
            continue;
        }
        let found = find_library(packages, &soname).ok_or_else(|| ToolsError::MissingLibrary {
            program: by.clone(),
            soname: soname.clone(),
            roles: LIBRARY_ROLES.join(", "),
        })?;
        let (_, needed) = elf::dynamic_needs(&found)?;
        todo.extend(needed.into_iter().map(|n| (n, dest.clone())));
        out.insert(dest, ToolFile::File(found));
    }
    for (path, program) in interp {
        let name = Path::new(&path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path != "/lib64/ld-linux-x86-64.so.2" {
            return Err(ToolsError::Interpreter { program, interp: path });
        }
        let loader = format!("{LIBRARY_DIR}/{name}");
        if !out.contains_key(&loader) {
            let found = find_library(packages, name).ok_or_else(|| ToolsError::MissingLibrary {
                program,
                soname: name.to_owned(),
                roles: LIBRARY_ROLES.join(", "),
            })?;
            out.insert(loader.clone(), ToolFile::File(found));
        }
        out.insert(
            path.trim_start_matches('/').to_owned(),
            ToolFile::Link(format!("../{loader}")),
        );
    }
    Ok(out.into_iter().collect())
}

/// The library file for `soname` in the library packages (a symlink is followed inside its
/// package: `libext2fs.so.2` is a link to `libext2fs.so.2.4`).
fn find_library(packages: &ToolPackages, soname: &str) -> Option<PathBuf> {
    LIBRARY_ROLES.iter().find_map(|role| {
        let root = packages.roots.get(*role)?;
        PACKAGE_LIB_DIRS.iter().find_map(|dir| {
            let mut path = root.join(dir).join(soname);
            for _ in 0..8 {
                let meta = std::fs::symlink_metadata(&path).ok()?;
                if !meta.file_type().is_symlink() {
                    return meta.is_file().then_some(path);
                }
                let target = std::fs::read_link(&path).ok()?;
                // Debian's library links are relative to their directory; an absolute one is inside
                // the package root.
                path = if target.is_absolute() {
                    root.join(target.strip_prefix("/").ok()?)
                } else {
                    path.parent()?.join(target)
                };
            }
            None
        })
    })
}

/// Total bytes of the files (not the links) of `files`, for the build's summary.
pub fn total_bytes(files: &[(String, ToolFile)]) -> Result<u64, ToolsError> {
    let mut total = 0;
    for (_, f) in files {
        if let ToolFile::File(path) = f {
            total += std::fs::metadata(path).map_err(io_err("reading", path))?.len();
        }
    }
    Ok(total)
}
