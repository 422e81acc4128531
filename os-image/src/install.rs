//! Installing a verified image onto a target: wipe the ends, write and check data, zero extents,
//! read back, partition table last; on failure after the first write, wipe the table area again.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::alloc;
use crate::format::{Extent, ExtentKind, ExtentRef, Filesystem, Manifest, Partition, ALIGNMENT, BLOCK};
use crate::reader::{ChunkSource, Decoder, Image, ReadError};

/// A disk to install onto: a regular file in tests, an `O_DIRECT` block device in the agent.
/// Offsets and lengths passed in are multiples of 4096 except inside the partition-table writes,
/// which are multiples of the logical sector size.
pub trait Target: Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Logical sector size in bytes.
    fn logical_sector_size(&self) -> u32;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `offset` (from the medium, not a cache, where possible).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Makes `[offset, offset + len)` read as zeros (hardware zeroing on devices; written zeros on files).
    fn zero_range(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Makes written data durable.
    fn flush(&self) -> io::Result<()>;
    /// Tells the medium that `[offset, offset + len)` holds nothing (TRIM, UNMAP, deallocate), so an
    /// SSD is not handed on with every block mapped; what it reads afterwards is unspecified. `Ok(false)`
    /// when the target cannot (a regular file, a disk without discard).
    fn discard_range(&self, _offset: u64, _len: u64) -> io::Result<bool> {
        Ok(false)
    }
}

/// A regular file as a target, with a chosen logical sector size (tests, images of disks).
#[derive(Debug)]
pub struct FileTarget {
    file: std::fs::File,
    size: u64,
    sector: u32,
}

impl FileTarget {
    /// Wraps an open read-write file of fixed size.
    pub fn new(file: std::fs::File, sector: u32) -> io::Result<FileTarget> {
        let size = file.metadata()?.len();
        Ok(FileTarget { file, size, sector })
    }
}

static ZEROS: [u8; 1 << 20] = [0u8; 1 << 20];

/// Writes zeros over a range with ordinary writes.
pub fn write_zeros(target: &(impl Target + ?Sized), offset: u64, len: u64) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZEROS.len() as u64);
        target.write_at(offset + done, &ZEROS[..usize::try_from(n).unwrap_or(0)])?;
        done += n;
    }
    Ok(())
}

impl Target for FileTarget {
    fn size(&self) -> u64 {
        self.size
    }
    fn logical_sector_size(&self) -> u32 {
        self.sector
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if offset + buf.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write past the end of the target",
            ));
        }
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }
    fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        write_zeros(self, offset, len)
    }
    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Installer settings.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Decoder/writer threads.
    pub threads: usize,
    /// Read back every data extent and compare blake3 (default on); zero extents are sampled.
    pub read_back: bool,
    /// Fixed disk GUID instead of a random one (tests).
    pub disk_guid: Option<uuid::Uuid>,
    /// How many times a chunk that fails to decode or hash is fetched again (sources that offer
    /// [`ChunkSource::refetcher`], such as HTTP); 0 disables it.
    pub refetch_attempts: u32,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            read_back: true,
            disk_guid: None,
            refetch_attempts: 2,
        }
    }
}

/// Byte counts per stage, for progress reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Compressed bytes fetched from the source.
    pub read: u64,
    /// Bytes decoded and hash-checked.
    pub decoded: u64,
    /// Bytes written (data and zero extents).
    pub written: u64,
    /// Bytes read back and checked.
    pub verified: u64,
    /// Bytes to write in total (data + zero extents).
    pub total: u64,
}

/// Where each partition goes on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Logical sector size.
    pub sector: u64,
    /// Per partition: first LBA and last LBA (inclusive).
    pub partitions: Vec<(u64, u64)>,
    /// LBA of the backup GPT header (the last LBA).
    pub backup_lba: u64,
}

/// Why an install stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Refused before anything was written.
    #[error("refusing to install: {0}")]
    Refused(String),
    /// Failed after writing began; the partition table area was wiped again.
    #[error("install failed at {}: {cause}; the disk's partition table was wiped, install again", extent.as_ref().map_or("the partition table".to_string(), ToString::to_string))]
    Failed {
        /// The extent that failed, if the failure belongs to one.
        extent: Option<ExtentRef>,
        /// What went wrong.
        cause: String,
    },
    /// Failed after writing began, and wiping the table area failed too.
    #[error("install failed ({cause}) and wiping the partition table afterwards failed too ({wipe}); do not boot this disk, wipe it")]
    WipeFailed {
        /// The first failure.
        cause: String,
        /// The wipe failure.
        wipe: String,
    },
}

/// What the install did; the agent maps it into the certificate's `InstallRecord`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// Image name.
    pub image_name: String,
    /// Image version.
    pub image_version: String,
    /// Root hash of the manifest.
    pub root_hash: String,
    /// Key id of the signer.
    pub signer_key_id: String,
    /// Bytes written (data, zero extents, wipes and the partition table).
    pub bytes_written: u64,
    /// Data extents read back and matching.
    pub chunks_verified: u64,
    /// Data extents that did not match on read-back (non-zero only in a failed install).
    pub chunk_mismatches: u64,
    /// Zero extents sampled on read-back.
    pub zero_samples: u64,
    /// Bytes discarded after the read-back: the image's skip extents and the space after the last
    /// partition (0 on a target without discard).
    pub discarded_bytes: u64,
    /// Where the partitions went.
    pub layout: Layout,
    /// Time spent fetching frames (summed over threads).
    pub read_time: Duration,
    /// Time spent decoding and hashing (summed over threads).
    pub decode_time: Duration,
    /// Time spent writing data and zeros (summed over threads).
    pub write_time: Duration,
    /// Time spent reading back.
    pub verify_time: Duration,
    /// Wall time of the whole install.
    pub total_time: Duration,
}

/// Lays the partitions out for a target of `size` bytes and `sector`-byte logical sectors.
pub fn plan(manifest: &Manifest, size: u64, sector: u32) -> Result<Layout, InstallError> {
    if sector != 512 && sector != 4096 {
        return Err(InstallError::Refused(format!(
            "the target's logical sector size is {sector} bytes; only 512 and 4096 are supported"
        )));
    }
    if size < manifest.image.min_disk_bytes {
        return Err(InstallError::Refused(format!(
            "the target has {size} bytes, the image needs at least {}",
            manifest.image.min_disk_bytes
        )));
    }
    let ss = u64::from(sector);
    for (i, p) in manifest.partitions.iter().enumerate() {
        if let Some(reason) = unit_too_small(i, p, sector) {
            return Err(InstallError::Refused(reason));
        }
        if !p.sector_sizes.contains(&sector) {
            return Err(InstallError::Refused(format!(
                "partition {} ({:?}) can only be installed on {:?}-byte sectors, the target has {sector}",
                i + 1,
                p.label,
                p.sector_sizes
            )));
        }
    }
    let lbas = size / ss;
    let entry_lbas = 128 * 128 / ss;
    let backup_lba = lbas - 1;
    let last_usable = backup_lba - entry_lbas - 1;
    let align = ALIGNMENT / ss;
    let mut next = align;
    let mut out = Vec::new();
    for p in &manifest.partitions {
        let start = next.div_ceil(align) * align;
        let min_end = start + p.size_bytes.div_ceil(ss) - 1;
        let end = if p.grow { last_usable } else { min_end };
        if min_end > last_usable || end < min_end {
            return Err(InstallError::Refused(format!(
                "partition {:?} does not fit on a target of {size} bytes",
                p.label
            )));
        }
        out.push((start, end));
        next = end + 1;
    }
    Ok(Layout {
        sector: ss,
        partitions: out,
        backup_lba,
    })
}

/// Why a partition cannot go onto `sector`-byte logical sectors because its filesystem's block or
/// cluster is smaller than a sector (Linux and firmware refuse to mount such a filesystem), with what
/// the lead can do; `None` when it can.
pub fn unit_too_small(index: usize, p: &Partition, sector: u32) -> Option<String> {
    let unit = p.fs_block_size.filter(|b| *b < sector)?;
    let (what, fix) = match p.filesystem {
        Filesystem::Ext4 => (
            format!("an ext4 with {unit}-byte blocks"),
            "make the reference root filesystem with 4 KiB blocks (`mkfs.ext4 -b 4096`, the default above 512 MiB) and pack again",
        ),
        Filesystem::Fat32 => (
            format!("a FAT32 with {unit}-byte clusters"),
            "make the ESP with 4 KiB clusters (`mkfs.vfat -F 32 -S 512 -s 8`, at least 260 MiB) and pack again",
        ),
        Filesystem::Ntfs => (
            format!("an NTFS with {unit}-byte clusters"),
            "format the Windows partition with 4 KiB clusters (the default; `format /A:4096`, `mkntfs -c 4096`) and capture again",
        ),
        Filesystem::Other => (
            format!("a filesystem with {unit}-byte blocks"),
            "make it with blocks of at least 4 KiB and pack again",
        ),
    };
    Some(format!(
        "partition {} ({:?}) holds {what}, smaller than this disk's {sector}-byte logical sectors, so it could not be \
         mounted here; nothing was written. To install onto disks like this one, {fix}; this image still installs onto \
         disks with 512-byte sectors",
        index + 1,
        p.label
    ))
}

/// The partition whose filesystem the installer grows after writing (the last one, when it grows and
/// holds ext4 or NTFS): its index and filesystem.
pub fn growable(manifest: &Manifest) -> Option<(usize, Filesystem)> {
    let i = manifest.partitions.len().checked_sub(1)?;
    let p = &manifest.partitions[i];
    (p.grow && matches!(p.filesystem, Filesystem::Ext4 | Filesystem::Ntfs)).then_some((i, p.filesystem))
}

/// Whether a partition needs its FAT boot sector rewritten for the target's sector size.
fn needs_fat_fixup(p: &Partition, sector: u64) -> bool {
    p.filesystem == Filesystem::Fat32 && p.fs_sector_size.is_some_and(|s| u64::from(s) != sector)
}

struct Shared<'a, T: ?Sized> {
    target: &'a T,
    manifest: &'a Manifest,
    layout: &'a Layout,
    abort: AtomicBool,
    read: AtomicU64,
    decoded: AtomicU64,
    written: AtomicU64,
    verified: AtomicU64,
    read_ns: AtomicU64,
    decode_ns: AtomicU64,
    write_ns: AtomicU64,
    /// Blake3 of what was written, per data extent in frame order (differs from the manifest only
    /// where the FAT boot sector was rewritten).
    written_hashes: Mutex<Vec<Option<blake3::Hash>>>,
    total: u64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<T: Target + ?Sized> Shared<'_, T> {
    fn progress(&self) -> Progress {
        Progress {
            read: self.read.load(Ordering::Relaxed),
            decoded: self.decoded.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            verified: self.verified.load(Ordering::Relaxed),
            total: self.total,
        }
    }

    fn part_offset(&self, r: &ExtentRef) -> u64 {
        self.layout.partitions[r.partition].0 * self.layout.sector
    }
}

type Failure = (Option<ExtentRef>, String);

/// Installs the verified `image` onto `target`, calling `progress` after each chunk.
pub fn install<S: ChunkSource, T: Target + ?Sized>(
    image: &mut Image<S>,
    target: &T,
    options: &InstallOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<InstallReport, InstallError> {
    let started = Instant::now();
    let manifest = image.manifest().clone();
    let layout = plan(&manifest, target.size(), target.logical_sector_size())?;
    let shared = Shared {
        target,
        manifest: &manifest,
        layout: &layout,
        abort: AtomicBool::new(false),
        read: AtomicU64::new(0),
        decoded: AtomicU64::new(0),
        written: AtomicU64::new(0),
        verified: AtomicU64::new(0),
        read_ns: AtomicU64::new(0),
        decode_ns: AtomicU64::new(0),
        write_ns: AtomicU64::new(0),
        written_hashes: Mutex::new(vec![None; manifest.data_extents().count()]),
        total: manifest.bytes_of(ExtentKind::Data) + manifest.bytes_of(ExtentKind::Zero),
    };
    let mut wiped = 0u64;
    let mut discarded = 0u64;
    let run = (|| -> Result<(u64, u64, Duration), Failure> {
        wipe_ends(target).map_err(|e| (None, format!("wiping the first and last MiB: {e}")))?;
        wiped = 4 * ALIGNMENT;
        write_data(image, &shared, options, progress)?;
        write_zero_extents(&shared)?;
        target
            .flush()
            .map_err(|e| (None, format!("flushing the target: {e}")))?;
        progress(shared.progress());
        let t = Instant::now();
        let (verified, samples) = if options.read_back {
            read_back(&shared, options.threads.max(1), progress)?
        } else {
            (0, 0)
        };
        let verify_time = t.elapsed();
        discarded = discard_skipped(&shared);
        write_table(target, &manifest, &layout, options.disk_guid)
            .map_err(|e| (None, format!("writing the partition table: {e}")))?;
        target
            .flush()
            .map_err(|e| (None, format!("flushing the target: {e}")))?;
        Ok((verified, samples, verify_time))
    })();
    match run {
        Ok((chunks_verified, zero_samples, verify_time)) => Ok(InstallReport {
            image_name: manifest.image.name.clone(),
            image_version: manifest.image.version.clone(),
            root_hash: manifest.root.clone(),
            signer_key_id: image.signer_key_id().to_owned(),
            bytes_written: shared.written.load(Ordering::Relaxed) + wiped + table_bytes(&layout),
            chunks_verified,
            chunk_mismatches: 0,
            zero_samples,
            discarded_bytes: discarded,
            layout: layout.clone(),
            read_time: Duration::from_nanos(shared.read_ns.load(Ordering::Relaxed)),
            decode_time: Duration::from_nanos(shared.decode_ns.load(Ordering::Relaxed)),
            write_time: Duration::from_nanos(shared.write_ns.load(Ordering::Relaxed)),
            verify_time,
            total_time: started.elapsed(),
        }),
        Err((extent, cause)) => {
            // Even a failed first wipe may have written part of the ends: wipe again in every case.
            match wipe_ends(target).and_then(|()| target.flush()) {
                Ok(()) => Err(InstallError::Failed { extent, cause }),
                Err(w) => Err(InstallError::WipeFailed {
                    cause: match extent {
                        Some(r) => format!("{r}: {cause}"),
                        None => cause,
                    },
                    wipe: w.to_string(),
                }),
            }
        }
    }
}

/// Discards what the image leaves unwritten, after the read-back: its skip extents (space the
/// filesystems do not use) and, on a disk larger than the image, the space after the last partition
/// (up to the last MiB, which holds the backup table). Returns the bytes the target accepted; a target
/// without discard, or one that refuses part way, keeps the rest mapped, which is no failure: every
/// byte the system needs is written and checked by then.
fn discard_skipped<T: Target + ?Sized>(shared: &Shared<'_, T>) -> u64 {
    let mut ranges: Vec<(u64, u64)> = shared
        .manifest
        .extents_of(ExtentKind::Skip)
        .map(|(r, e)| (shared.part_offset(&r) + e.offset, e.length))
        .collect();
    if let Some(&(_, last)) = shared.layout.partitions.iter().max_by_key(|p| p.1) {
        let start = ((last + 1) * shared.layout.sector).div_ceil(ALIGNMENT) * ALIGNMENT;
        let end = shared.target.size().saturating_sub(ALIGNMENT) / ALIGNMENT * ALIGNMENT;
        if end > start {
            ranges.push((start, end - start));
        }
    }
    let mut done = 0;
    for (offset, len) in ranges.into_iter().filter(|r| r.1 > 0) {
        match shared.target.discard_range(offset, len) {
            Ok(true) => done += len,
            Ok(false) | Err(_) => break,
        }
    }
    done
}

fn table_bytes(layout: &Layout) -> u64 {
    // Protective MBR, two headers and two entry arrays.
    layout.sector * 3 + 2 * 128 * 128
}

/// Zeros the first and last MiB (MBR, both GPTs, RAID/LVM labels near the ends).
fn wipe_ends<T: Target + ?Sized>(target: &T) -> io::Result<()> {
    let size = target.size();
    let len = ALIGNMENT.min(size);
    write_zeros(target, 0, len)?;
    let tail = (size - len) / BLOCK * BLOCK;
    write_zeros(target, tail, size - tail)
}

struct Work {
    index: usize,
    extent: ExtentRef,
    meta: Extent,
    frame: Vec<u8>,
}

fn write_data<S: ChunkSource, T: Target + ?Sized>(
    image: &mut Image<S>,
    shared: &Shared<'_, T>,
    options: &InstallOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(), Failure> {
    let extents: Vec<(ExtentRef, Extent)> = shared.manifest.data_extents().map(|(r, e)| (r, e.clone())).collect();
    let threads = options.threads.max(1);
    let (tx, rx) = mpsc::sync_channel::<Work>(threads * 2);
    let rx = Arc::new(Mutex::new(rx));
    let data_offset = image.header().data_offset();
    let attempts = options.refetch_attempts;
    let refetchers: Vec<Option<Box<dyn ChunkSource>>> = (0..threads)
        .map(|_| if attempts > 0 { image.refetcher() } else { None })
        .collect();
    let first_error: Mutex<Option<Failure>> = Mutex::new(None);
    let fail = |f: Failure| {
        shared.abort.store(true, Ordering::SeqCst);
        if let Ok(mut slot) = first_error.lock() {
            slot.get_or_insert(f);
        }
    };
    std::thread::scope(|s| {
        for mut refetcher in refetchers {
            let rx = Arc::clone(&rx);
            let fail = &fail;
            s.spawn(move || {
                let mut w = match Decoder::new() {
                    Ok(decoder) => Worker {
                        decoder,
                        buffer: Vec::new(),
                        source: refetcher.as_deref_mut(),
                        data_offset,
                        attempts,
                    },
                    Err(e) => {
                        fail((None, format!("creating a zstd decoder: {e}")));
                        // Keep draining so the reader is never blocked.
                        while rx.lock().map(|r| r.recv().is_ok()).unwrap_or(false) {}
                        return;
                    }
                };
                loop {
                    let work = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(work) = work else { return };
                    if shared.abort.load(Ordering::SeqCst) {
                        continue;
                    }
                    if let Err(f) = decode_and_write(shared, work, &mut w, progress) {
                        fail(f);
                    }
                }
            });
        }
        for (index, (r, e)) in extents.into_iter().enumerate() {
            if shared.abort.load(Ordering::SeqCst) {
                break;
            }
            let t = Instant::now();
            match image.fetch_frame(&r, &e) {
                Ok(frame) => {
                    shared.read_ns.fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
                    shared.read.fetch_add(frame.len() as u64, Ordering::Relaxed);
                    if tx
                        .send(Work {
                            index,
                            extent: r,
                            meta: e,
                            frame,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
                Err(err) => {
                    fail((Some(r), err.to_string()));
                    break;
                }
            }
        }
        drop(tx);
    });
    match first_error.into_inner() {
        Ok(Some(f)) => Err(f),
        Ok(None) => Ok(()),
        Err(_) => Err((None, "a writer thread panicked".into())),
    }
}

/// A decoder thread's state: its zstd context, its output buffer and its way to fetch a frame again.
struct Worker<'a> {
    decoder: Decoder,
    buffer: Vec<u8>,
    source: Option<&'a mut (dyn ChunkSource + 'static)>,
    data_offset: u64,
    attempts: u32,
}

/// Decodes and hash-checks a frame into `w.buffer`; on failure fetches it again up to
/// `w.attempts` times.
fn decode_with_refetch(shared_read: &AtomicU64, work: &Work, w: &mut Worker<'_>) -> Result<(), Failure> {
    let mut result = w.decoder.decode(&work.extent, &work.meta, &work.frame, &mut w.buffer);
    if let Some(source) = w.source.as_deref_mut() {
        let (off, len) = (work.meta.frame_offset.unwrap_or(0), work.meta.frame_length.unwrap_or(0));
        let mut frame = vec![0u8; usize::try_from(len).unwrap_or(0)];
        for _ in 0..w.attempts {
            if result.is_ok() {
                break;
            }
            if source.read_exact_at(w.data_offset + off, &mut frame).is_ok() {
                shared_read.fetch_add(len, Ordering::Relaxed);
                result = w.decoder.decode(&work.extent, &work.meta, &frame, &mut w.buffer);
            }
        }
    }
    result.map_err(|e| match e {
        ReadError::Hash { .. } | ReadError::Decode { .. } => (Some(work.extent.clone()), strip_extent(&e)),
        other => (Some(work.extent.clone()), other.to_string()),
    })
}

fn decode_and_write<T: Target + ?Sized>(
    shared: &Shared<'_, T>,
    work: Work,
    w: &mut Worker<'_>,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(), Failure> {
    let t = Instant::now();
    decode_with_refetch(&shared.read, &work, w)?;
    let bytes = &mut w.buffer;
    let p = &shared.manifest.partitions[work.extent.partition];
    let start_lba = shared.layout.partitions[work.extent.partition].0;
    if work.meta.offset == 0 && needs_fat_fixup(p, shared.layout.sector) {
        let hidden = u32::try_from(start_lba).map_err(|_| {
            (
                Some(work.extent.clone()),
                "partition start beyond 2^32 sectors".to_string(),
            )
        })?;
        alloc::fat_to_4k(bytes, hidden).map_err(|e| (Some(work.extent.clone()), e.to_string()))?;
    }
    let hash = blake3::hash(bytes);
    shared.decode_ns.fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
    shared.decoded.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    let t = Instant::now();
    shared
        .target
        .write_at(shared.part_offset(&work.extent) + work.meta.offset, bytes)
        .map_err(|e| (Some(work.extent.clone()), format!("writing: {e}")))?;
    shared.write_ns.fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
    shared.written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    if let Ok(mut hashes) = shared.written_hashes.lock() {
        if let Some(slot) = hashes.get_mut(work.index) {
            *slot = Some(hash);
        }
    }
    progress(shared.progress());
    Ok(())
}

/// The error text without the extent (the caller names it).
fn strip_extent(e: &ReadError) -> String {
    match e {
        ReadError::Hash { expected, actual, .. } => {
            format!(
                "the decoded chunk does not match its blake3 (expected {expected}, got {actual}); the image is damaged"
            )
        }
        ReadError::Decode { reason, .. } => format!("the frame does not decode ({reason}); the image is damaged"),
        other => other.to_string(),
    }
}

fn write_zero_extents<T: Target + ?Sized>(shared: &Shared<'_, T>) -> Result<(), Failure> {
    for (r, e) in shared.manifest.extents_of(ExtentKind::Zero) {
        let t = Instant::now();
        shared
            .target
            .zero_range(shared.part_offset(&r) + e.offset, e.length)
            .map_err(|err| (Some(r.clone()), format!("zeroing: {err}")))?;
        shared.write_ns.fetch_add(nanos(t.elapsed()), Ordering::Relaxed);
        shared.written.fetch_add(e.length, Ordering::Relaxed);
    }
    Ok(())
}

/// Reads back every data extent (compared with what was written) and samples each zero extent
/// (first, middle and last 4 KiB). Returns (data extents verified, zero samples).
fn read_back<T: Target + ?Sized>(
    shared: &Shared<'_, T>,
    threads: usize,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(u64, u64), Failure> {
    let extents: Vec<(ExtentRef, Extent)> = shared.manifest.data_extents().map(|(r, e)| (r, e.clone())).collect();
    let hashes = shared
        .written_hashes
        .lock()
        .map_err(|_| (None, "a writer thread panicked".to_string()))?
        .clone();
    let next = AtomicU64::new(0);
    let failure: Mutex<Option<Failure>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    let i = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(usize::MAX);
                    let Some((r, e)) = extents.get(i) else { return };
                    if shared.abort.load(Ordering::SeqCst) {
                        return;
                    }
                    buf.resize(usize::try_from(e.length).unwrap_or(0), 0);
                    let result = shared
                        .target
                        .read_at(shared.part_offset(r) + e.offset, &mut buf)
                        .map_err(|err| format!("reading back: {err}"))
                        .and_then(|()| {
                            let got = blake3::hash(&buf);
                            match hashes.get(i).copied().flatten() {
                                Some(want) if want == got => Ok(()),
                                Some(want) => Err(format!(
                                    "read back {} instead of the written {}; the disk does not keep what is written",
                                    got.to_hex(),
                                    want.to_hex()
                                )),
                                None => Err("was never written".to_string()),
                            }
                        });
                    match result {
                        Ok(()) => {
                            shared.verified.fetch_add(e.length, Ordering::Relaxed);
                            progress(shared.progress());
                        }
                        Err(msg) => {
                            shared.abort.store(true, Ordering::SeqCst);
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert((Some(r.clone()), msg));
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(f) = failure.into_inner().ok().flatten() {
        return Err(f);
    }
    let mut samples = 0;
    let mut block = vec![0u8; usize::try_from(BLOCK).unwrap_or(4096)];
    for (r, e) in shared.manifest.extents_of(ExtentKind::Zero) {
        let base = shared.part_offset(&r) + e.offset;
        // Version 2 extents may be shorter than 4 KiB (512-byte multiples) at a filesystem's end.
        let n = e.length.min(BLOCK);
        let block = &mut block[..usize::try_from(n).unwrap_or(0)];
        for off in [0, (e.length / 2) / 512 * 512, e.length - n] {
            let off = off.min(e.length - n);
            shared
                .target
                .read_at(base + off, block)
                .map_err(|err| (Some(r.clone()), format!("reading back a zero extent: {err}")))?;
            if !crate::pack::is_zero(block) {
                return Err((
                    Some(r.clone()),
                    format!("reads back non-zero at offset {off} after zeroing"),
                ));
            }
            samples += 1;
        }
    }
    Ok((extents.len() as u64, samples))
}

/// `Read + Write + Seek` for gptman over in-memory copies of the two table areas of the target (the
/// first MiB; the backup entries and header at the end), written back in one write each. gptman writes
/// field by field; on an `O_DIRECT` device each small write would be a read-modify-write of a block.
/// An access outside both areas is refused, so the table code can never touch partition data.
struct TableAreas {
    size: u64,
    areas: Vec<(u64, Vec<u8>)>,
    pos: u64,
}

impl TableAreas {
    /// Reads the areas the table of `layout` occupies.
    fn read<T: Target + ?Sized>(target: &T, layout: &Layout) -> io::Result<TableAreas> {
        let size = target.size();
        let head_len = ALIGNMENT.min(size);
        let tail_start = (layout.backup_lba - 128 * 128 / layout.sector) * layout.sector / BLOCK * BLOCK;
        let mut areas = Vec::new();
        for (start, len) in [
            (0, head_len),
            (tail_start.max(head_len), size - tail_start.max(head_len)),
        ] {
            if len > 0 {
                let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
                target.read_at(start, &mut buf)?;
                areas.push((start, buf));
            }
        }
        Ok(TableAreas { size, areas, pos: 0 })
    }

    /// The area holding `[pos, pos + len)` and the offset in it.
    fn locate(&mut self, len: usize) -> io::Result<(&mut Vec<u8>, usize)> {
        let pos = self.pos;
        self.areas
            .iter_mut()
            .find(|(start, buf)| pos >= *start && pos + len as u64 <= start + buf.len() as u64)
            .map(|(start, buf)| (buf, usize::try_from(pos - *start).unwrap_or(0)))
            .ok_or_else(|| {
                io::Error::other(format!(
                    "the partition table code touched byte {pos}, outside the table areas"
                ))
            })
    }

    fn write_back<T: Target + ?Sized>(&self, target: &T) -> io::Result<()> {
        for (start, buf) in &self.areas {
            target.write_at(*start, buf)?;
        }
        Ok(())
    }
}

impl Read for TableAreas {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (area, at) = self.locate(buf.len())?;
        buf.copy_from_slice(&area[at..at + buf.len()]);
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
}

impl Write for TableAreas {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (area, at) = self.locate(buf.len())?;
        area[at..at + buf.len()].copy_from_slice(buf);
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for TableAreas {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}

fn random_guid() -> io::Result<uuid::Uuid> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(uuid::Builder::from_random_bytes(b).into_uuid())
}

fn guid_of(policy: &str) -> io::Result<uuid::Uuid> {
    if policy == "random" {
        random_guid()
    } else {
        uuid::Uuid::parse_str(policy).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }
}

/// Writes the protective MBR, the primary GPT and the backup GPT at the last LBA.
fn write_table<T: Target + ?Sized>(
    target: &T,
    manifest: &Manifest,
    layout: &Layout,
    disk_guid: Option<uuid::Uuid>,
) -> io::Result<()> {
    let gpt_err = |e: gptman::Error| io::Error::other(e.to_string());
    let mut cur = TableAreas::read(target, layout)?;
    let disk = match disk_guid {
        Some(g) => g,
        None => guid_of(&manifest.table.disk_guid)?,
    };
    let mut gpt = gptman::GPT::new_from(&mut cur, layout.sector, disk.to_bytes_le()).map_err(gpt_err)?;
    if gpt.header.backup_lba != layout.backup_lba {
        return Err(io::Error::other(
            "gptman placed the backup header elsewhere than the last LBA",
        ));
    }
    for (i, (p, (start, end))) in manifest.partitions.iter().zip(&layout.partitions).enumerate() {
        let type_guid = uuid::Uuid::parse_str(&p.type_guid).map_err(|e| io::Error::other(e.to_string()))?;
        let index = u32::try_from(i + 1).map_err(|_| io::Error::other("too many partitions"))?;
        gpt[index] = gptman::GPTPartitionEntry {
            partition_type_guid: type_guid.to_bytes_le(),
            unique_partition_guid: guid_of(&p.partition_guid)?.to_bytes_le(),
            starting_lba: *start,
            ending_lba: *end,
            attribute_bits: p.attributes,
            partition_name: p.label.as_str().into(),
        };
    }
    gpt.write_into(&mut cur).map_err(gpt_err)?;
    gptman::GPT::write_protective_mbr_into(&mut cur, layout.sector).map_err(gpt_err)?;
    cur.write_back(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> Manifest {
        let bytes = include_bytes!("../tests/fixtures/golden.osimg");
        let key = lapterop_certificate::keys::fixture_key("os-image test signer").verifying_key();
        let (_, manifest, _) = crate::reader::open_bytes(bytes, &key, Some(bytes.len() as u64)).unwrap();
        manifest
    }

    #[test]
    fn layout_aligns_starts_and_grows_the_last_partition_to_the_backup_gpt() {
        let m = golden();
        let l = plan(&m, 64 << 20, 512).unwrap();
        // 64 MiB = 131072 LBAs; backup header at 131071, its 32-LBA array before it.
        assert_eq!(l.backup_lba, 131_071);
        assert_eq!(l.partitions, vec![(2048, 8191), (8192, 131_071 - 32 - 1)]);
    }

    #[test]
    fn unsupported_sector_sizes_and_small_disks_are_refused() {
        let m = golden();
        let err = plan(&m, 64 << 20, 1024).unwrap_err();
        assert!(err.to_string().contains("only 512 and 4096"), "{err}");
        let err = plan(&m, 64 << 20, 4096).unwrap_err();
        assert!(err.to_string().contains("can only be installed on [512]"), "{err}");
        assert!(plan(&m, m.image.min_disk_bytes, 512).is_ok());
        assert!(plan(&m, m.image.min_disk_bytes - 4096, 512).is_err());
    }
}
