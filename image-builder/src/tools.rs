//! The filesystem tools on the stick: e2fsprogs' `resize2fs` and `e2fsck`, ntfs-3g's `ntfsresize`
//! and `ntfsfix`, which `lapterop-agent capture` shrinks with and the installer grows and checks
//! with (`lapterop_osimage::resize`).
//!
//! They are Debian's own dynamically linked binaries from the pinned packages
//! (`crate::debian::ROOTS`, roles `fstools-*` and `libc`), not rebuilt: the agent is static, these
//! are not, so the initramfs gets exactly their closure ([`crate::dynlink`]), shared with
//! `wpa_supplicant`'s. A library that no pinned package holds fails the build with its name, never a
//! stick whose tools cannot start.

use crate::debian::{Cache, DebianError, Lock};
use crate::dynlink::{self, Closure, DynlinkError};

/// The programs: (role of the package, path in it, path in the initramfs).
pub const PROGRAMS: &[(&str, &str, &str)] = &[
    ("fstools-e2fsprogs", "sbin/resize2fs", "usr/sbin/resize2fs"),
    ("fstools-e2fsprogs", "sbin/e2fsck", "usr/sbin/e2fsck"),
    ("fstools-ntfs-3g", "sbin/ntfsresize", "usr/sbin/ntfsresize"),
    ("fstools-ntfs-3g", "bin/ntfsfix", "usr/sbin/ntfsfix"),
];

/// The packages the programs' libraries come from (searched in this order, after the programs' own).
pub const LIBRARY_ROLES: &[&str] = &[
    "fstools-libext2fs",
    "fstools-libcom-err",
    "fstools-libblkid",
    "fstools-libuuid",
    "fstools-libntfs-3g",
    "libc",
];

/// Errors while gathering the tools.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// The lock list or a package failed.
    #[error(transparent)]
    Debian(#[from] DebianError),
    /// A program or library is missing.
    #[error(transparent)]
    Dynlink(#[from] DynlinkError),
}

/// Fetches, verifies and unpacks the tools' packages pinned in `lock` and gathers their closure.
pub fn closure(lock: &Lock, cache: &Cache) -> Result<Closure, ToolsError> {
    let mut roles: Vec<&str> = Vec::new();
    for role in PROGRAMS.iter().map(|(r, _, _)| *r).chain(LIBRARY_ROLES.iter().copied()) {
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    let roots = roles
        .iter()
        .map(|role| cache.extract(lock.get(role)?))
        .collect::<Result<Vec<_>, DebianError>>()?;
    let programs: Vec<(&str, &str)> = PROGRAMS.iter().map(|(_, path, at)| (*path, *at)).collect();
    Ok(dynlink::closure(&programs, &roots)?)
}
