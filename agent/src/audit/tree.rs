//! Reading a sysfs/procfs tree under a root directory (`/` on the laptop, a recorded tree in tests).
//!
//! Every read is bounded and every failure is an `Option`/`Result` the caller turns into a named gap:
//! a file that is missing, unreadable or garbage never stops the audit.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest file the audit reads (the SMBIOS 3 table may be up to 4 GiB in theory; real ones are < 64 KiB).
const MAX_FILE: u64 = 16 << 20;

/// A root directory that holds `sys/` and `proc/`.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
}

impl Tree {
    /// A tree rooted at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The full path of `rel` (a path relative to the root, such as `sys/class/net`).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// The bytes of `rel`, at most 16 MiB.
    pub fn read(&self, rel: &str) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        fs::File::open(self.path(rel))?.take(MAX_FILE).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// A sysfs attribute as trimmed text; `None` when missing, unreadable or empty.
    pub fn attr(&self, rel: &str) -> Option<String> {
        let bytes = self.read(rel).ok()?;
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        (!text.is_empty()).then_some(text)
    }

    /// A decimal sysfs attribute.
    pub fn attr_u64(&self, rel: &str) -> Option<u64> {
        self.attr(rel)?.parse().ok()
    }

    /// A hexadecimal sysfs attribute (`0x8086` or `8086`).
    pub fn attr_hex(&self, rel: &str) -> Option<u32> {
        let text = self.attr(rel)?;
        u32::from_str_radix(text.trim_start_matches("0x"), 16).ok()
    }

    /// The entry names of directory `rel`, sorted; an error when it cannot be listed.
    pub fn list(&self, rel: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.path(rel))? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// The last component of the target of symlink `rel` (a driver or subsystem name).
    pub fn link_name(&self, rel: &str) -> Option<String> {
        let target = fs::read_link(self.path(rel)).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// Whether `rel` exists (a symlink counts even when its target is not in the tree).
    pub fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.path(rel)).is_ok()
    }
}
