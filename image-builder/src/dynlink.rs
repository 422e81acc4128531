//! Debian programs on the stick that are not static: `wpa_supplicant` ([`SUPPLICANT`]) and the
//! filesystem tools (`crate::tools`). Each comes with the dynamic linker it asks for (`PT_INTERP`)
//! and the closure of the shared libraries it and they name (`DT_NEEDED`), found in the unpacked
//! pinned packages the way Debian's `ld.so` finds them without an `ld.so.cache` (its multiarch
//! directories, [`LIBRARY_DIRS`]). The initramfs then holds exactly the files the dynamic linker
//! opens, once each even when several programs share them, and a library no pinned package ships is
//! an error at build time instead of a program that cannot start on a laptop.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use crate::elf::{self, ElfError};
use crate::io::{io_err, IoError};

/// Where Debian's packages put amd64 libraries (bookworm ships both), searched in this order; the
/// initramfs puts every library in the first, which glibc's `ld.so` searches by default.
pub const LIBRARY_DIRS: &[&str] = &["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];

/// The Wi-Fi supplicant: its path in the package `wpasupplicant` and on the stick (where the agent's
/// init starts it, `agent/src/init/network.rs`).
pub const SUPPLICANT: (&str, &str) = ("sbin/wpa_supplicant", "sbin/wpa_supplicant");

/// Errors while collecting a program's libraries.
#[derive(Debug, thiserror::Error)]
pub enum DynlinkError {
    /// An ELF file could not be read.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// A file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// No pinned package holds the program.
    #[error(
        "{program} is in none of the unpacked packages {roots}; run `lapterop-image-builder lock refresh` if Debian \
         moved it"
    )]
    NoProgram {
        /// The program's path inside the packages.
        program: String,
        /// The package roots searched.
        roots: String,
    },
    /// A library (or the interpreter) is in none of the pinned packages.
    #[error(
        "{program} needs {library} (named by {by}), which none of the pinned packages ships; add the Debian \
         package that holds it to ROOTS and to the program's library roles in image-builder/src/debian.rs, \
         then run `lapterop-image-builder lock refresh`"
    )]
    Missing {
        /// The program.
        program: String,
        /// The library's name.
        library: String,
        /// The file that names it.
        by: String,
    },
    /// A `DT_NEEDED` entry or interpreter that is not a plain name in the multiarch directories.
    #[error("{by} asks for `{name}`, which is not a library name the stick's dynamic linker can find")]
    Unusual {
        /// The file.
        by: String,
        /// What it names.
        name: String,
    },
}

type Result<T> = std::result::Result<T, DynlinkError>;

/// Programs and everything the dynamic linker loads for them: path inside the initramfs (no
/// leading `/`) to the file in an unpacked package, sorted by path, and the interpreter's path as a
/// link to the loader among the libraries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closure {
    /// The files, the programs' own included.
    pub files: BTreeMap<String, PathBuf>,
    /// Symbolic links: path inside the initramfs to the link's target (relative).
    pub links: BTreeMap<String, String>,
}

impl Closure {
    /// The bytes of all files (links count nothing).
    pub fn bytes(&self) -> Result<u64> {
        let mut total = 0;
        for path in self.files.values() {
            total += fs::metadata(path).map_err(io_err("reading", path))?.len();
        }
        Ok(total)
    }
}

/// `rel` inside `root` as a regular file, following symlinks the way they would resolve with `root`
/// as `/` (Debian's `lib64/ld-linux-x86-64.so.2` is an absolute link into `lib/x86_64-linux-gnu`).
fn resolve_in(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut path = root.join(rel);
    // A bound on the chain; Debian's are one or two links long.
    for _ in 0..8 {
        let meta = fs::symlink_metadata(&path).ok()?;
        if meta.file_type().is_file() {
            return Some(path);
        }
        if !meta.file_type().is_symlink() {
            return None;
        }
        let target = fs::read_link(&path).ok()?;
        path = match target.strip_prefix("/") {
            Ok(absolute) => root.join(absolute),
            Err(_) => path.parent()?.join(target),
        };
    }
    None
}

/// The file of library `name` in the first root that ships it.
fn find_library(roots: &[PathBuf], name: &str) -> Option<PathBuf> {
    roots.iter().find_map(|root| {
        LIBRARY_DIRS
            .iter()
            .find_map(|dir| resolve_in(root, &format!("{dir}/{name}")))
    })
}

/// The closure of `programs` (each a path inside the packages, such as `sbin/wpa_supplicant`, and
/// its path in the initramfs) over `roots` (the unpacked packages, searched in order): every program
/// at its path, every library in `lib/x86_64-linux-gnu/`, the loader there too and the interpreter
/// path the programs name (`/lib64/ld-linux-x86-64.so.2`) a link to it, as Debian has it.
pub fn closure(programs: &[(&str, &str)], roots: &[PathBuf]) -> Result<Closure> {
    let mut out = Closure::default();
    let mut todo = VecDeque::new();
    for (program, at) in programs {
        let source =
            roots
                .iter()
                .find_map(|root| resolve_in(root, program))
                .ok_or_else(|| DynlinkError::NoProgram {
                    program: (*program).to_owned(),
                    roots: roots
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
        out.files.insert((*at).to_owned(), source.clone());
        todo.push_back((*program, (*at).to_owned(), source));
    }
    while let Some((program, by, file)) = todo.pop_front() {
        let dynamic = elf::dynamic(&file)?;
        let missing = |library: &str| DynlinkError::Missing {
            program: program.to_owned(),
            library: library.to_owned(),
            by: by.clone(),
        };
        let mut wanted = Vec::new();
        if let Some(interp) = &dynamic.interpreter {
            let (dir, name) = interp.rsplit_once('/').unwrap_or(("", interp));
            if !dir.starts_with('/') || name.is_empty() {
                return Err(DynlinkError::Unusual {
                    by,
                    name: interp.clone(),
                });
            }
            let at = interp.trim_start_matches('/').to_owned();
            let loader = format!("{}/{name}", LIBRARY_DIRS[0]);
            if at != loader && !out.links.contains_key(&at) {
                // Debian's interpreter path is a link to the loader in the multiarch directory.
                let up = "../".repeat(at.matches('/').count());
                out.links.insert(at, format!("{up}{loader}"));
            }
            if !out.files.contains_key(&loader) && find_library(roots, name).is_none() {
                return Err(missing(interp));
            }
            wanted.push(name.to_owned());
        }
        for name in &dynamic.needed {
            if name.contains('/') || name.is_empty() {
                return Err(DynlinkError::Unusual { by, name: name.clone() });
            }
            wanted.push(name.clone());
        }
        for name in wanted {
            let at = format!("{}/{name}", LIBRARY_DIRS[0]);
            if out.files.contains_key(&at) {
                continue;
            }
            let file = find_library(roots, &name).ok_or_else(|| missing(&name))?;
            out.files.insert(at.clone(), file.clone());
            todo.push_back((program, at, file));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_ls_needs_its_libraries_and_the_linker_behind_an_absolute_link() {
        // Debian 12's /bin/ls: libselinux (which needs libpcre2-8), glibc, and /lib64/ld-linux-x86-64.so.2,
        // a link to /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2.
        let c = closure(&[("bin/ls", "usr/bin/ls")], &[PathBuf::from("/")]).unwrap();
        for want in [
            "usr/bin/ls",
            "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libselinux.so.1",
            "lib/x86_64-linux-gnu/libpcre2-8.so.0",
        ] {
            assert!(c.files.contains_key(want), "{want} missing from {:?}", c.files.keys());
        }
        // Every source is a regular file (links followed) and nothing else came in.
        assert!(c
            .files
            .values()
            .all(|p| fs::symlink_metadata(p).unwrap().file_type().is_file()));
        assert_eq!(c.files.len(), 5, "{:?}", c.files.keys());
        // The interpreter's path is a link to the loader, which is there once.
        assert_eq!(
            c.links,
            BTreeMap::from([(
                "lib64/ld-linux-x86-64.so.2".to_owned(),
                "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".to_owned()
            )])
        );
        // Two programs share their libraries.
        let two = closure(&[("bin/ls", "bin/ls"), ("bin/cp", "bin/cp")], &[PathBuf::from("/")]).unwrap();
        // cp adds itself, libacl and libattr.
        assert_eq!(two.files.len(), c.files.len() + 3, "{:?}", two.files.keys());
        assert!(c.bytes().unwrap() > 1 << 20);
    }

    #[test]
    fn a_library_no_package_ships_is_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        fs::copy("/bin/ls", dir.path().join("bin/ls")).unwrap();
        let err = closure(&[("bin/ls", "bin/ls")], &[dir.path().to_owned()]).unwrap_err();
        let msg = err.to_string();
        // The interpreter is looked for first.
        assert!(
            matches!(&err, DynlinkError::Missing { library, by, .. }
                if by == "bin/ls" && library == "/lib64/ld-linux-x86-64.so.2"),
            "{msg}"
        );
        assert!(msg.contains("lock refresh"), "{msg}");
        assert!(matches!(
            closure(&[SUPPLICANT], &[dir.path().to_owned()]),
            Err(DynlinkError::NoProgram { .. })
        ));
    }

    #[test]
    fn links_resolve_inside_the_package_root() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib/x86_64-linux-gnu");
        fs::create_dir_all(&lib).unwrap();
        fs::create_dir_all(dir.path().join("lib64")).unwrap();
        fs::write(lib.join("libz.so.1.2.13"), b"z").unwrap();
        std::os::unix::fs::symlink("libz.so.1.2.13", lib.join("libz.so.1")).unwrap();
        std::os::unix::fs::symlink("/lib/x86_64-linux-gnu/libz.so.1", dir.path().join("lib64/libz.so.1")).unwrap();
        let root = dir.path();
        assert_eq!(resolve_in(root, "lib64/libz.so.1"), Some(lib.join("libz.so.1.2.13")));
        assert_eq!(
            resolve_in(root, "lib/x86_64-linux-gnu/libz.so.1"),
            Some(lib.join("libz.so.1.2.13"))
        );
        assert_eq!(resolve_in(root, "lib/none.so"), None);
        // A loop ends.
        std::os::unix::fs::symlink("b", lib.join("a")).unwrap();
        std::os::unix::fs::symlink("a", lib.join("b")).unwrap();
        assert_eq!(resolve_in(root, "lib/x86_64-linux-gnu/a"), None);
    }
}
