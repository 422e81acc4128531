//! A reproducible FAT32 partition written straight into a region of an image file.
//!
//! The FAT itself is written by the `fatfs` crate (format, directories, long names, allocation); this
//! module decides what goes in and makes the result depend only on its inputs:
//!
//! - the volume id is given by the caller (derived from the inputs, never random);
//! - every timestamp comes from one fixed moment ([`FixedTime`], from `SOURCE_DATE_EPOCH`);
//! - files and directories are created in byte order of their paths, so clusters are allocated in
//!   the same order every time;
//! - the partition is formatted over a zeroed region, so no stale bytes survive in free clusters.
//!
//! `fatfs` formats with "hidden sectors" 0; a partition that starts at LBA 2048 should say 2048 there
//! (Windows and some firmware use it), so [`write_partition`] patches the field in the boot sector and
//! in its backup copy.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::io::{io_err, IoError};

/// Errors while writing the FAT partition.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// A path on the FAT is not a plain relative path.
    #[error("`{0}` is not a valid path on the stick's FAT partition (use a/b/c, no `..`)")]
    BadPath(String),
    /// The content does not fit the partition that was sized for it.
    #[error("the files need more room than the {size} MiB FAT partition has: {source}")]
    Full {
        /// The partition size in MiB.
        size: u64,
        /// What the system said.
        source: io::Error,
    },
    /// Reading a source file or writing the image failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

type Result<T> = std::result::Result<T, FatError>;

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A file on the build host.
    Path(PathBuf),
    /// Bytes given directly.
    Bytes(Vec<u8>),
}

impl Content {
    /// Size in bytes.
    pub fn size(&self) -> Result<u64> {
        match self {
            Content::Bytes(b) => Ok(b.len() as u64),
            Content::Path(p) => Ok(fs::metadata(p).map_err(io_err("reading", p))?.len()),
        }
    }
}

/// The tree to put on the partition: path (no leading `/`) to its content; `None` is an empty
/// directory. Parent directories are implied.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    entries: BTreeMap<String, Option<Content>>,
}

fn clean(path: &str) -> Result<String> {
    let p = path.trim_start_matches('/');
    if p.is_empty() || p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(FatError::BadPath(path.to_owned()));
    }
    Ok(p.to_owned())
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Adds a file (replacing one at the same path).
    pub fn file(&mut self, path: &str, content: Content) -> Result<()> {
        self.entries.insert(clean(path)?, Some(content));
        Ok(())
    }

    /// Adds an empty directory.
    pub fn dir(&mut self, path: &str) -> Result<()> {
        self.entries.insert(clean(path)?, None);
        Ok(())
    }

    /// Every directory (explicit or implied), sorted, parents first.
    pub fn dirs(&self) -> Vec<String> {
        let mut dirs = std::collections::BTreeSet::new();
        for (path, content) in &self.entries {
            let parts: Vec<&str> = path.split('/').collect();
            let upto = if content.is_none() {
                parts.len()
            } else {
                parts.len() - 1
            };
            for i in 1..=upto {
                dirs.insert(parts[..i].join("/"));
            }
        }
        dirs.into_iter().collect()
    }

    /// The files, sorted by path.
    pub fn files(&self) -> impl Iterator<Item = (&str, &Content)> {
        self.entries
            .iter()
            .filter_map(|(p, c)| c.as_ref().map(|c| (p.as_str(), c)))
    }

    /// Bytes the tree occupies with `cluster`-byte clusters: every file rounded up to whole clusters
    /// (an empty file takes none), plus room for the directories and their long-name entries.
    pub fn allocated_bytes(&self, cluster: u64) -> Result<u64> {
        let mut total = 0;
        for (_, content) in self.files() {
            total += content.size()?.div_ceil(cluster) * cluster;
        }
        // A directory entry with a long name takes up to 4 x 32 bytes; one cluster per directory plus
        // the entries themselves is a safe upper bound.
        let names = (self.entries.len() + self.dirs().len()) as u64 * 128;
        total += (self.dirs().len() as u64 + 1) * cluster + names.div_ceil(cluster) * cluster;
        Ok(total)
    }
}

/// A fixed clock for every timestamp `fatfs` writes.
#[derive(Debug, Clone, Copy)]
pub struct FixedTime(fatfs::DateTime);

impl FixedTime {
    /// The moment `epoch` (seconds since 1970, UTC), clamped to FAT's range (1980..2107).
    pub fn from_epoch(epoch: u64) -> FixedTime {
        let min = 315_532_800; // 1980-01-01T00:00:00Z
        let max = 4_354_819_199; // 2107-12-31T23:59:59Z
        let t = epoch.clamp(min, max);
        let (days, secs) = (t / 86_400, t % 86_400);
        let (year, month, day) = civil_from_days(days);
        // The values are range-checked above: year 1980..=2107, the rest small.
        let u = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
        FixedTime(fatfs::DateTime {
            date: fatfs::Date {
                year: u(year),
                month: u(month),
                day: u(day),
            },
            time: fatfs::Time {
                hour: u(secs / 3600),
                min: u(secs / 60 % 60),
                sec: u(secs % 60),
                millis: 0,
            },
        })
    }

    /// The date and time.
    pub fn date_time(&self) -> fatfs::DateTime {
        self.0
    }
}

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.0
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A window `[start, start + len)` of a file, seen as a whole disk by `fatfs`.
#[derive(Debug)]
pub struct Region<'a> {
    file: &'a fs::File,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Region<'a> {
    /// The window of `file` from `start`, `len` bytes long.
    pub fn new(file: &'a fs::File, start: u64, len: u64) -> Region<'a> {
        Region {
            file,
            start,
            len,
            pos: 0,
        }
    }

    fn room(&self, want: usize) -> usize {
        usize::try_from(self.len.saturating_sub(self.pos)).map_or(want, |r| r.min(want))
    }
}

impl Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.room(buf.len());
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for Region<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.room(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        let done = self.file.write_at(&buf[..n], self.start + self.pos)?;
        self.pos += done as u64;
        Ok(done)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Region<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(t) if t <= self.len => {
                self.pos = t;
                Ok(t)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the partition",
            )),
        }
    }
}

/// How to format the partition.
#[derive(Debug, Clone)]
pub struct Format {
    /// Partition start in the image, in bytes (a multiple of 512).
    pub start: u64,
    /// Partition size in bytes (a multiple of 512).
    pub size: u64,
    /// Bytes per cluster (512 for small sticks keeps FAT32's 65525-cluster minimum within ~34 MiB).
    pub cluster: u32,
    /// The volume serial number.
    pub volume_id: u32,
    /// The volume label (at most 11 ASCII characters).
    pub label: String,
    /// Every timestamp.
    pub time: FixedTime,
}

/// What the written partition holds.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Bytes in use (clusters allocated).
    pub used: u64,
    /// Bytes free.
    pub free: u64,
}

/// Zeroes the partition's region of `image`, formats it FAT32 and writes `tree` into it.
pub fn write_partition(image: &fs::File, path: &Path, format: &Format, tree: &Tree) -> Result<Written> {
    let io = |what| io_err(what, path);
    let sectors = u32::try_from(format.size / 512).map_err(|_| {
        io("formatting")(io::Error::new(
            io::ErrorKind::InvalidInput,
            "partition larger than 2 TiB",
        ))
    })?;
    // Format over zeros, so nothing from an earlier file survives in free clusters.
    zero_region(image, format.start, format.size).map_err(io("zeroing the partition in"))?;
    let mut label = [b' '; 11];
    for (slot, b) in label.iter_mut().zip(format.label.bytes().filter(u8::is_ascii)) {
        *slot = b.to_ascii_uppercase();
    }
    let options = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat32)
        .bytes_per_sector(512)
        .bytes_per_cluster(format.cluster)
        .total_sectors(sectors)
        .volume_id(format.volume_id)
        .volume_label(label);
    fatfs::format_volume(Region::new(image, format.start, format.size), options).map_err(io("formatting FAT32 in"))?;
    set_hidden_sectors(image, format.start).map_err(io("writing the boot sector of"))?;

    // `fatfs` wants a `'static` clock; one small value per image built is leaked on purpose.
    let clock: &'static FixedTime = Box::leak(Box::new(format.time));
    let options = fatfs::FsOptions::new().time_provider(clock).update_accessed_date(false);
    let fs = fatfs::FileSystem::new(Region::new(image, format.start, format.size), options)
        .map_err(io("opening the new FAT in"))?;
    let full = |source| FatError::Full {
        size: format.size >> 20,
        source,
    };
    {
        let root = fs.root_dir();
        for dir in tree.dirs() {
            root.create_dir(&dir).map_err(full)?;
        }
        for (name, content) in tree.files() {
            let mut file = root.create_file(name).map_err(full)?;
            match content {
                Content::Bytes(b) => file.write_all(b).map_err(full)?,
                Content::Path(p) => {
                    let reading = io_err("reading", p);
                    let mut src = fs::File::open(p).map_err(reading)?;
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = src.read(&mut buf).map_err(reading)?;
                        if n == 0 {
                            break;
                        }
                        file.write_all(&buf[..n]).map_err(full)?;
                    }
                }
            }
            file.flush().map_err(full)?;
        }
    }
    let stats = fs.stats().map_err(io("reading the FAT of"))?;
    let cluster = u64::from(stats.cluster_size());
    let written = Written {
        used: u64::from(stats.total_clusters() - stats.free_clusters()) * cluster,
        free: u64::from(stats.free_clusters()) * cluster,
    };
    fs.unmount().map_err(io("closing the FAT of"))?;
    // `fatfs` 0.3.6 puts long names in front of `.` and `..` of each directory it makes.
    lapterop_osimage::fatdirs::fix_dot_entries(image, format.start).map_err(io("fixing the directories of"))?;
    Ok(written)
}

/// Writes zeros over `[start, start + len)` of `file` (in 1 MiB blocks, skipping nothing).
fn zero_region(file: &fs::File, start: u64, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let block = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < len {
        let n = usize::try_from((len - done).min(block.len() as u64)).unwrap_or(block.len());
        file.write_all_at(&block[..n], start + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Sets the BPB "hidden sectors" field (offset 0x1C) of the boot sector and of its FAT32 backup
/// (sector 6, as `fatfs` writes it) to the partition's first LBA.
fn set_hidden_sectors(file: &fs::File, start: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let lba = u32::try_from(start / 512)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "partition start beyond 2 TiB"))?;
    let mut backup = [0u8; 2];
    file.read_exact_at(&mut backup, start + 0x32)?;
    let backup_sector = u64::from(u16::from_le_bytes(backup));
    file.write_all_at(&lba.to_le_bytes(), start + 0x1C)?;
    if backup_sector != 0 {
        file.write_all_at(&lba.to_le_bytes(), start + backup_sector * 512 + 0x1C)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_to_fat_date() {
        let t = FixedTime::from_epoch(1_764_000_000).date_time(); // 2025-11-24T16:00:00Z
        assert_eq!((t.date.year, t.date.month, t.date.day), (2025, 11, 24));
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (16, 0, 0));
        let leap = FixedTime::from_epoch(951_782_400).date_time(); // 2000-02-29
        assert_eq!((leap.date.year, leap.date.month, leap.date.day), (2000, 2, 29));
        let zero = FixedTime::from_epoch(0).date_time();
        assert_eq!((zero.date.year, zero.date.month, zero.date.day), (1980, 1, 1));
    }

    #[test]
    fn tree_lists_implied_directories_in_order() {
        let mut t = Tree::new();
        t.file("boot/grub/grub.cfg", Content::Bytes(b"x".to_vec())).unwrap();
        t.dir("lapterop/outbox").unwrap();
        t.file("/EFI/BOOT/BOOTX64.EFI", Content::Bytes(vec![1; 600])).unwrap();
        assert_eq!(
            t.dirs(),
            ["EFI", "EFI/BOOT", "boot", "boot/grub", "lapterop", "lapterop/outbox"]
        );
        assert!(t.file("a/../b", Content::Bytes(Vec::new())).is_err());
        assert!(t.allocated_bytes(512).unwrap() >= 512 + 1024);
    }

    #[test]
    fn region_stays_inside_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(4096).unwrap();
        let mut r = Region::new(&file, 1024, 1024);
        r.seek(SeekFrom::End(-2)).unwrap();
        assert_eq!(r.write(b"abcd").unwrap(), 2);
        assert!(r.write(b"x").is_err());
        assert!(r.seek(SeekFrom::Start(1025)).is_err());
        let data = fs::read(&path).unwrap();
        assert_eq!(&data[2046..2048], b"ab");
        assert_eq!(data[2048], 0);
    }
}
