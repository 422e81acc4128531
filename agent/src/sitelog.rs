//! The per-machine log on the stick: one file per laptop (named by its device id) in the stick's log
//! folder, so a workshop lead can see what happened on a machine across evenings. Lines are only ever
//! appended; each is written whole and `fsync`ed before [`SiteLog::append`] returns, so a laptop that
//! loses power keeps every line it showed. A line is `TIME CODE MESSAGE` (`-` when there is no code);
//! `docs/lead-guide.md` explains the codes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The per-machine log.
#[derive(Debug)]
pub struct SiteLog {
    file: File,
    path: PathBuf,
}

/// A device id made safe as a file name on FAT: letters, digits, `-`, `_`, `.`; at most 100 characters.
pub fn file_stem(device_id: &str) -> String {
    let stem: String = device_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let stem = stem.trim_start_matches('.').to_string();
    if stem.is_empty() {
        "unknown-device".to_string()
    } else {
        stem
    }
}

impl SiteLog {
    /// Opens (creating when needed) `dir/<device id>.log` for appending.
    pub fn open(dir: &Path, device_id: &str) -> io::Result<SiteLog> {
        fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.log", file_stem(device_id)));
        let created = !path.exists();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if created {
            // The new name must survive a power cut too.
            File::open(dir)?.sync_all()?;
        }
        Ok(SiteLog { file, path })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line now, and syncs it to the stick.
    pub fn append(&mut self, code: Option<&str>, message: &str) -> io::Result<()> {
        self.append_at(&lapterop_certificate::now_utc(), code, message)
    }

    /// Appends one line with the given time (RFC 3339), and syncs it.
    pub fn append_at(&mut self, time: &str, code: Option<&str>, message: &str) -> io::Result<()> {
        let message: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let line = format!("{time} {} {}\n", code.unwrap_or("-"), message.trim());
        // One write call: with O_APPEND the line lands whole at the end.
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_across_opens_one_file_per_machine() {
        let dir = std::env::temp_dir().join(format!("lapterop-sitelog-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut log = SiteLog::open(&dir, "lenovo/20L5:PF1ABCDE").unwrap();
        assert_eq!(log.path(), dir.join("lenovo_20L5_PF1ABCDE.log"));
        log.append_at("2026-11-26T15:00:00Z", Some("LAP-P06"), "no network\nsecond line")
            .unwrap();
        drop(log);
        let mut log = SiteLog::open(&dir, "lenovo/20L5:PF1ABCDE").unwrap();
        log.append(None, "job started").unwrap();
        SiteLog::open(&dir, "other").unwrap().append(None, "x").unwrap();
        let text = fs::read_to_string(dir.join("lenovo_20L5_PF1ABCDE.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "2026-11-26T15:00:00Z LAP-P06 no network second line");
        assert!(lines[1].ends_with("Z - job started"), "{text}");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
        assert_eq!(file_stem("../.."), "_..");
        assert_eq!(file_stem(""), "unknown-device");
        fs::remove_dir_all(&dir).unwrap();
    }
}
