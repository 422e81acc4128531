//! Packing a captured GPT disk image into an OS image file.

use lapterop_certificate::io::io_err;
use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use lapterop_certificate::keys;

use crate::alloc::{self, FreeMap, ReadAt};
use crate::format::{
    self, Extent, ExtentKind, Filesystem, Header, ImageInfo, Manifest, Partition, TableInfo, ALIGNMENT, BLOCK,
    FORMAT_VERSION, MAX_CHUNK,
};
use crate::resize;

/// Default zstd level: decoding speed does not depend on it, so pack small.
pub const DEFAULT_LEVEL: i32 = 19;

/// What to pack and how.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Image name.
    pub name: String,
    /// Image version.
    pub version: String,
    /// Creation time, RFC 3339 UTC (fixed in tests for reproducible output).
    pub created: String,
    /// CPU architecture of the installed system.
    pub arch: String,
    /// zstd level.
    pub level: i32,
    /// Compression threads (at least 1); the output does not depend on it.
    pub threads: usize,
    /// Keep the source's partition GUIDs (otherwise the installer makes random ones).
    pub keep_partition_guids: bool,
    /// Let the last partition fill the target disk.
    pub grow_last: bool,
    /// Shrink the last filesystem (ext4, NTFS) on a copy to its minimum plus a margin, so the image
    /// fits disks as small as its data (needs `grow_last`; `resize2fs`/`ntfsresize` on the packing host).
    pub shrink_last: bool,
}

impl PackOptions {
    /// Defaults for `name` and `version`: now, x86_64, level 19, all cores, random GUIDs, last
    /// shrunk and grows.
    pub fn new(name: &str, version: &str) -> PackOptions {
        PackOptions {
            name: name.to_owned(),
            version: version.to_owned(),
            created: lapterop_certificate::now_utc(),
            arch: std::env::consts::ARCH.to_owned(),
            level: DEFAULT_LEVEL,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            keep_partition_guids: false,
            grow_last: true,
            shrink_last: true,
        }
    }
}

/// Why packing failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Reading the input or writing the output failed.
    #[error(transparent)]
    Io(#[from] lapterop_certificate::io::IoError),
    /// The input has no readable GPT.
    #[error("{path} has no readable GPT partition table ({reason}); capture the whole disk, not a partition")]
    NoGpt {
        /// The input.
        path: PathBuf,
        /// What gptman said.
        reason: String,
    },
    /// The input cannot be packed as it is.
    #[error("cannot pack {path}: {reason}")]
    Unsupported {
        /// The input.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What was packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSummary {
    /// Root hash of the manifest.
    pub root: String,
    /// Bytes in data extents.
    pub data_bytes: u64,
    /// Bytes in zero extents.
    pub zero_bytes: u64,
    /// Bytes in skip extents.
    pub skip_bytes: u64,
    /// Size of the image file.
    pub file_bytes: u64,
    /// Smallest target disk the image installs onto.
    pub min_disk_bytes: u64,
    /// What the lead should fix in the reference system (the image was packed all the same), one
    /// line each: a non-empty `/etc/machine-id` shared by every installed laptop.
    pub warnings: Vec<String>,
}

struct PartFile<'a> {
    file: &'a File,
    base: u64,
    len: u64,
}

impl ReadAt for PartFile<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the partition end",
            ));
        }
        self.file.read_exact_at(buf, self.base + offset)
    }
}

fn guid_text(raw: [u8; 16]) -> String {
    uuid::Uuid::from_bytes_le(raw).hyphenated().to_string().to_uppercase()
}

/// A data chunk waiting for compression.
struct Job {
    part: usize,
    extent: usize,
    bytes: Vec<u8>,
}

/// How far packing is, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackProgress {
    /// Which reading of the disk this is: 1, or 2 for the second (streamed) pass of [`pack_stream`].
    pub pass: u32,
    /// Passes in all (1 for [`pack_file`], 2 for [`pack_stream`]).
    pub passes: u32,
    /// Partition bytes classified so far in this pass.
    pub read: u64,
    /// Partition bytes to classify in a pass.
    pub total: u64,
    /// Compressed bytes produced so far in this pass.
    pub written: u64,
}

struct FrameWriter<'a> {
    out: Box<dyn Write + 'a>,
    path: &'a Path,
    progress: &'a dyn Fn(PackProgress),
    pass: u32,
    passes: u32,
    read: u64,
    total: u64,
    written: u64,
    level: i32,
    threads: usize,
    batch: Vec<Job>,
    /// (partition, extent, frame offset, frame length) of every frame written.
    placed: Vec<(usize, usize, u64, u64)>,
}

impl FrameWriter<'_> {
    fn push(&mut self, job: Job) -> Result<(), PackError> {
        self.batch.push(job);
        if self.batch.len() >= self.threads * 2 {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is queued and records every frame's place in `parts`.
    fn finish(&mut self, parts: &mut [Partition], path: &Path) -> Result<(), PackError> {
        self.flush()?;
        self.out.flush().map_err(io_err("writing", path))?;
        for &(part, extent, offset, length) in &self.placed {
            if let Some(e) = parts.get_mut(part).and_then(|p| p.extents.get_mut(extent)) {
                e.frame_offset = Some(offset);
                e.frame_length = Some(length);
            }
        }
        Ok(())
    }

    /// `n` more partition bytes classified.
    fn advance(&mut self, n: u64) {
        self.read += n;
        (self.progress)(PackProgress {
            pass: self.pass,
            passes: self.passes,
            read: self.read,
            total: self.total,
            written: self.written,
        });
    }

    /// Compresses the batch on `threads` threads and appends the frames in manifest order.
    fn flush(&mut self) -> Result<(), PackError> {
        let batch = std::mem::take(&mut self.batch);
        let threads = self.threads.max(1);
        let level = self.level;
        let mut frames: Vec<io::Result<Vec<u8>>> = Vec::with_capacity(batch.len());
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let batch = &batch;
                    s.spawn(move || {
                        let mut c = zstd::bulk::Compressor::new(level)?;
                        batch
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| i % threads == t)
                            .map(|(i, j)| Ok((i, c.compress(&j.bytes)?)))
                            .collect::<io::Result<Vec<(usize, Vec<u8>)>>>()
                    })
                })
                .collect();
            let mut slots: Vec<Option<io::Result<Vec<u8>>>> = (0..batch.len()).map(|_| None).collect();
            for h in handles {
                match h.join() {
                    Ok(Ok(list)) => list.into_iter().for_each(|(i, f)| slots[i] = Some(Ok(f))),
                    Ok(Err(e)) => slots
                        .iter_mut()
                        .for_each(|s| *s = Some(Err(io::Error::other(e.to_string())))),
                    Err(_) => slots
                        .iter_mut()
                        .for_each(|s| *s = Some(Err(io::Error::other("compressor panicked")))),
                }
            }
            frames = slots
                .into_iter()
                .map(|s| s.unwrap_or_else(|| Err(io::Error::other("frame missing"))))
                .collect();
        });
        for (job, frame) in batch.iter().zip(frames) {
            let frame = frame.map_err(io_err("compressing for", self.path))?;
            self.out
                .write_all(&frame)
                .map_err(io_err("writing frames of", self.path))?;
            self.placed
                .push((job.part, job.extent, self.written, frame.len() as u64));
            self.written += frame.len() as u64;
        }
        Ok(())
    }
}

/// Whether a block is all zero (a slice comparison: memcmp, fast even in debug builds).
pub fn is_zero(block: &[u8]) -> bool {
    static ZERO_BLOCK: [u8; 4096] = [0u8; 4096];
    block.chunks(4096).all(|c| c == &ZERO_BLOCK[..c.len()])
}

/// Appends a block of `kind` at `offset` to the extent list, merging it into the last extent when
/// allowed. `on_new` runs before a new extent is started (to finish the previous data chunk).
fn push_block<E>(
    extents: &mut Vec<Extent>,
    offset: u64,
    length: u64,
    kind: ExtentKind,
    on_new: impl FnOnce(&mut Vec<Extent>) -> Result<(), E>,
) -> Result<(), E> {
    if let Some(last) = extents.last_mut() {
        let room = kind != ExtentKind::Data || last.length < MAX_CHUNK;
        if last.kind == kind && room && last.offset + last.length == offset {
            last.length += length;
            return Ok(());
        }
    }
    on_new(extents)?;
    extents.push(Extent {
        offset,
        length,
        kind,
        blake3: None,
        frame_offset: None,
        frame_length: None,
    });
    Ok(())
}

/// The GPT of a disk (or disk image) opened read-only: the file, its sector size and its used
/// partitions in disk order.
struct Source {
    file: File,
    ss: u64,
    entries: Vec<gptman::GPTPartitionEntry>,
}

impl Source {
    fn open(input: &Path) -> Result<Source, PackError> {
        // Read-only: the reference disk is never written (a shrink works on a copy).
        let mut file = File::open(input).map_err(io_err("opening", input))?;
        let gpt = gptman::GPT::find_from(&mut file).map_err(|e| PackError::NoGpt {
            path: input.to_owned(),
            reason: e.to_string(),
        })?;
        let mut entries: Vec<_> = gpt
            .iter()
            .filter(|(_, p)| p.is_used())
            .map(|(_, p)| p.clone())
            .collect();
        entries.sort_by_key(|p| p.starting_lba);
        if entries.is_empty() {
            return Err(PackError::Unsupported {
                path: input.to_owned(),
                reason: "the partition table has no partitions".into(),
            });
        }
        Ok(Source {
            file,
            ss: gpt.sector_size,
            entries,
        })
    }

    /// Bytes a pass classifies: every partition's length (an upper bound when the last is shrunk).
    fn total(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| (e.ending_lba + 1 - e.starting_lba) * self.ss)
            .sum()
    }

    fn frame_writer<'a>(
        &self,
        out: Box<dyn Write + 'a>,
        path: &'a Path,
        opts: &PackOptions,
        progress: &'a dyn Fn(PackProgress),
        (pass, passes): (u32, u32),
    ) -> FrameWriter<'a> {
        FrameWriter {
            out,
            path,
            progress,
            pass,
            passes,
            read: 0,
            total: self.total(),
            written: 0,
            level: opts.level,
            threads: opts.threads.max(1),
            batch: Vec::new(),
            placed: Vec::new(),
        }
    }
}

/// Packs the GPT disk image `input` into the signed OS image `out`.
pub fn pack(input: &Path, out: &Path, key: &SigningKey, opts: &PackOptions) -> Result<PackSummary, PackError> {
    pack_file(input, out, key, opts, &|_| {})
}

/// [`pack`] with a progress callback (called after every 4 MiB read).
pub fn pack_file(
    input: &Path,
    out: &Path,
    key: &SigningKey,
    opts: &PackOptions,
    progress: &dyn Fn(PackProgress),
) -> Result<PackSummary, PackError> {
    let src = Source::open(input)?;
    let frames_path = out.with_extension("frames.partial");
    let frames_file = File::create(&frames_path).map_err(io_err("creating", &frames_path))?;
    let sink = Box::new(BufWriter::with_capacity(1 << 20, frames_file));
    let mut frames = src.frame_writer(sink, &frames_path, opts, progress, (1, 1));
    let scratch = out.with_extension("shrink.partial");
    let result = pack_partitions(&src.file, &src.entries, src.ss, opts, &mut frames, input, &scratch);
    let mut parts = match result {
        Ok(parts) => parts,
        Err(e) => {
            let _ = fs::remove_file(&frames_path);
            return Err(e);
        }
    };
    // Every installed laptop would share the reference system's machine-id.
    let warnings: Vec<String> = parts
        .iter()
        .zip(&src.entries)
        .enumerate()
        .filter(|(_, (p, _))| p.filesystem == Filesystem::Ext4)
        .filter_map(|(n, (_, e))| {
            let id = resize::machine_id(input, e.starting_lba * src.ss)?;
            Some(format!(
                "partition {} has a machine-id in /etc/machine-id ({id}): every laptop installed from this image \
                 would share it; empty it on the reference system (`truncate -s 0 /etc/machine-id`) and pack again",
                n + 1
            ))
        })
        .collect();
    let finish = (|| {
        frames.finish(&mut parts, &frames_path)?;
        let written = frames.written;
        drop(frames);
        write_image(out, &frames_path, written, parts, key, opts)
    })()
    .map(|summary| PackSummary { warnings, ..summary });
    let _ = fs::remove_file(&frames_path);
    finish
}

/// Packs `input` into a signed OS image written to a stream (an HTTP upload) without keeping the
/// frames anywhere: the manifest, which precedes the data and records every frame's length, comes
/// from a first pass that compresses and discards; the second pass compresses again (zstd is
/// deterministic for the same level) and streams. A frame whose length differs between the passes
/// (the disk changed under us) fails the pack. `open` gets the image's total length once known and
/// returns the sink. The last filesystem is not shrunk here (that needs a scratch copy on disk);
/// `opts.shrink_last` must be false.
pub fn pack_stream<W: Write>(
    input: &Path,
    key: &SigningKey,
    opts: &PackOptions,
    progress: &dyn Fn(PackProgress),
    open: impl FnOnce(u64) -> io::Result<W>,
) -> Result<(PackSummary, W), PackError> {
    let unsupported = |reason: &str| PackError::Unsupported {
        path: input.to_owned(),
        reason: reason.to_owned(),
    };
    if opts.shrink_last {
        return Err(unsupported(
            "a streamed pack cannot shrink the last filesystem (that needs a copy on disk); pack without shrinking",
        ));
    }
    let src = Source::open(input)?;
    let no_scratch = Path::new("/nonexistent/lapterop-no-scratch");
    // Pass 1: classify, hash and compress, keeping only the frame lengths.
    let mut frames = src.frame_writer(Box::new(io::sink()), input, opts, progress, (1, 2));
    let mut parts = pack_partitions(&src.file, &src.entries, src.ss, opts, &mut frames, input, no_scratch)?;
    frames.finish(&mut parts, input)?;
    let (data_len, first) = (frames.written, std::mem::take(&mut frames.placed));
    drop(frames);
    let signed = sign_manifest(input, data_len, parts, key, opts)?;
    let mut sink = open(signed.header.file_len()).map_err(io_err("starting the upload of", input))?;
    let head = (|| {
        sink.write_all(&signed.header.encode())?;
        sink.write_all(&signed.manifest_bytes)?;
        sink.write_all(&signed.signature)
    })();
    head.map_err(io_err("sending the manifest of", input))?;
    // Pass 2: the same frames, now into the sink.
    let mut frames = src.frame_writer(Box::new(&mut sink), input, opts, progress, (2, 2));
    let mut again = pack_partitions(&src.file, &src.entries, src.ss, opts, &mut frames, input, no_scratch)?;
    frames.finish(&mut again, input)?;
    if frames.placed != first || frames.written != data_len {
        return Err(unsupported(
            "the disk changed between the two passes (a frame came out different); nothing usable was sent, capture again with the disk idle",
        ));
    }
    drop(frames);
    Ok((signed.summary(), sink))
}

/// What the packer found in a partition.
struct Scan {
    filesystem: Filesystem,
    /// Bytes the filesystem covers (at most the partition's length).
    fs_bytes: u64,
    free: FreeMap,
    /// Bytes at the start always stored as data (the FAT reserved area).
    forced_data: u64,
    fs_sector_size: Option<u32>,
    fs_block_size: Option<u32>,
    sector_sizes: Vec<u32>,
}

fn u32_of(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// Recognises the filesystem of a partition of `len` bytes on a disk of `ss`-byte sectors.
fn scan(part: &dyn ReadAt, len: u64, ss: u64) -> io::Result<Scan> {
    let other = Scan {
        filesystem: Filesystem::Other,
        fs_bytes: len,
        free: FreeMap::all_used(len / BLOCK),
        forced_data: 0,
        fs_sector_size: None,
        fs_block_size: None,
        sector_sizes: vec![u32_of(ss)],
    };
    if let Some((bs, blocks)) = alloc::ext4_geometry(part) {
        let fs_bytes = blocks.saturating_mul(bs);
        return Ok(Scan {
            filesystem: Filesystem::Ext4,
            fs_bytes: if fs_bytes == 0 || fs_bytes > len { len } else { fs_bytes },
            free: alloc::ext4_free_map(part, len)?,
            forced_data: 0,
            fs_sector_size: None,
            fs_block_size: Some(u32_of(bs)),
            // ext4 does not record the disk's sector size, but a block smaller than a sector cannot work.
            sector_sizes: if bs >= 4096 { vec![512, 4096] } else { vec![512] },
        });
    }
    if alloc::is_fat32(part) {
        let mut bs = [0u8; 512];
        part.read_at(0, &mut bs)?;
        return Ok(match alloc::Fat32Geometry::parse(&bs) {
            Some(g) if g.reserved_bytes() <= MAX_CHUNK => {
                let bps = u32_of(g.bytes_per_sector);
                let fs_bytes = g.total_sectors * g.bytes_per_sector;
                Scan {
                    filesystem: Filesystem::Fat32,
                    fs_bytes: if fs_bytes > len { len } else { fs_bytes },
                    free: alloc::fat32_free_map(part, len)?,
                    forced_data: g.reserved_bytes(),
                    fs_sector_size: Some(bps),
                    fs_block_size: Some(u32_of(g.sectors_per_cluster * g.bytes_per_sector)),
                    sector_sizes: if g.convertible_to_4k() {
                        vec![512, 4096]
                    } else {
                        vec![bps]
                    },
                }
            }
            _ => other,
        });
    }
    let mut bs = [0u8; 512];
    part.read_at(0, &mut bs)?;
    if let Some(g) = alloc::NtfsGeometry::parse(&bs) {
        let bps = u32_of(g.bytes_per_sector);
        return Ok(Scan {
            filesystem: Filesystem::Ntfs,
            fs_bytes: g.volume_bytes().min(len),
            free: alloc::ntfs_free_map(part, len)?,
            forced_data: 0,
            fs_sector_size: Some(bps),
            fs_block_size: Some(u32_of(g.cluster_bytes)),
            // NTFS records its sector size; it goes onto disks of that sector size only.
            sector_sizes: if matches!(bps, 512 | 4096) {
                vec![bps]
            } else {
                vec![u32_of(ss)]
            },
        });
    }
    Ok(other)
}

fn pack_partitions(
    file: &File,
    entries: &[gptman::GPTPartitionEntry],
    ss: u64,
    opts: &PackOptions,
    frames: &mut FrameWriter<'_>,
    input: &Path,
    scratch: &Path,
) -> Result<Vec<Partition>, PackError> {
    let mut parts: Vec<Partition> = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let last = n + 1 == entries.len();
        let base = entry.starting_lba * ss;
        let len = (entry.ending_lba + 1 - entry.starting_lba) * ss;
        let read_err = || io_err("reading the allocation map of", input);
        let mut part = PartFile { file, base, len };
        let mut found = scan(&part, len, ss).map_err(read_err())?;
        let shrunk = if last && opts.grow_last && opts.shrink_last {
            resize::shrink_copy(file, base, len, found.filesystem, &found.free, scratch).map_err(|reason| {
                let _ = fs::remove_file(scratch);
                PackError::Unsupported {
                    path: input.to_owned(),
                    reason: format!(
                        "partition {} ({:?}): shrinking a copy of its {:?} filesystem: {reason}",
                        n + 1,
                        entry.partition_name.as_str(),
                        found.filesystem
                    ),
                }
            })?
        } else {
            None
        };
        if let Some(s) = &shrunk {
            part = PartFile {
                file: &s.file,
                base: 0,
                len: s.part_bytes,
            };
            found = scan(&part, s.part_bytes, ss).map_err(read_err())?;
        }
        let p = pack_one(&part, entry, last, found, opts, parts.len(), frames, input);
        drop(shrunk);
        if scratch.exists() {
            let _ = fs::remove_file(scratch);
        }
        parts.push(p?);
    }
    Ok(parts)
}

/// Classifies one partition's blocks and queues its data chunks.
#[allow(clippy::too_many_arguments)]
fn pack_one(
    part: &PartFile<'_>,
    entry: &gptman::GPTPartitionEntry,
    last: bool,
    found: Scan,
    opts: &PackOptions,
    part_index: usize,
    frames: &mut FrameWriter<'_>,
    input: &Path,
) -> Result<Partition, PackError> {
    let len = part.len;
    let fs_bytes = found.fs_bytes;
    let mut p = Partition {
        label: entry.partition_name.as_str().to_owned(),
        type_guid: guid_text(entry.partition_type_guid),
        partition_guid: if opts.keep_partition_guids {
            guid_text(entry.unique_partition_guid)
        } else {
            "random".to_owned()
        },
        attributes: entry.attribute_bits,
        size_bytes: len,
        grow: opts.grow_last && last,
        fs_bytes: Some(fs_bytes),
        fs_block_size: found.fs_block_size,
        filesystem: found.filesystem,
        fs_sector_size: found.fs_sector_size,
        sector_sizes: found.sector_sizes,
        extents: Vec::new(),
    };
    // Classify block by block, reading 4 MiB windows; a data chunk is hashed and queued when complete.
    // The last block is shorter when the filesystem ends inside a 4 KiB block (512-byte multiples).
    let mut window = vec![0u8; usize::try_from(MAX_CHUNK).unwrap_or(1 << 22)];
    let mut chunk: Vec<u8> = Vec::new();
    let mut pos = 0u64;
    while pos < fs_bytes {
        let n_bytes = (fs_bytes - pos).min(MAX_CHUNK);
        let buf = &mut window[..usize::try_from(n_bytes).unwrap_or(0)];
        part.read_at(pos, buf).map_err(io_err("reading", input))?;
        for (i, block) in buf.chunks(4096).enumerate() {
            let off = pos + i as u64 * BLOCK;
            let kind = if off >= found.forced_data && found.free.is_free(off / BLOCK) {
                ExtentKind::Skip
            } else if off >= found.forced_data && is_zero(block) {
                ExtentKind::Zero
            } else {
                ExtentKind::Data
            };
            push_block(&mut p.extents, off, block.len() as u64, kind, |extents| {
                queue_chunk(extents, part_index, &mut chunk, frames)
            })?;
            if kind == ExtentKind::Data {
                chunk.extend_from_slice(block);
            }
        }
        pos += n_bytes;
        frames.advance(n_bytes);
    }
    queue_chunk(&mut p.extents, part_index, &mut chunk, frames)?;
    Ok(p)
}

/// Hashes the finished data chunk (the newest data extent without a hash) and queues it.
fn queue_chunk(
    extents: &mut [Extent],
    part_index: usize,
    chunk: &mut Vec<u8>,
    frames: &mut FrameWriter<'_>,
) -> Result<(), PackError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let bytes = std::mem::take(chunk);
    let Some(extent) = extents
        .iter()
        .rposition(|e| e.kind == ExtentKind::Data && e.blake3.is_none())
    else {
        return Ok(());
    };
    extents[extent].blake3 = Some(blake3::hash(&bytes).to_hex().to_string());
    frames.push(Job {
        part: part_index,
        extent,
        bytes,
    })
}

/// A signed manifest and the header in front of it.
struct Signed {
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    signature: Vec<u8>,
    header: Header,
}

impl Signed {
    fn summary(&self) -> PackSummary {
        PackSummary {
            root: self.manifest.root.clone(),
            data_bytes: self.manifest.bytes_of(ExtentKind::Data),
            zero_bytes: self.manifest.bytes_of(ExtentKind::Zero),
            skip_bytes: self.manifest.bytes_of(ExtentKind::Skip),
            file_bytes: self.header.file_len(),
            min_disk_bytes: self.manifest.image.min_disk_bytes,
            warnings: Vec::new(),
        }
    }
}

fn sign_manifest(
    out: &Path,
    data_len: u64,
    partitions: Vec<Partition>,
    key: &SigningKey,
    opts: &PackOptions,
) -> Result<Signed, PackError> {
    let json_err =
        |e: serde_json::Error| PackError::from(io_err("serialising the manifest for", out)(io::Error::other(e)));
    let mut manifest = Manifest {
        format: FORMAT_VERSION,
        image: ImageInfo {
            name: opts.name.clone(),
            version: opts.version.clone(),
            created: opts.created.clone(),
            builder: format!("lapterop-osimage {}", env!("CARGO_PKG_VERSION")),
            arch: opts.arch.clone(),
            min_disk_bytes: format::min_disk_bytes(&partitions),
        },
        table: TableInfo {
            kind: "gpt".to_owned(),
            alignment_bytes: ALIGNMENT,
            disk_guid: "random".to_owned(),
        },
        partitions,
        root: String::new(),
    };
    let value = serde_json::to_value(&manifest).map_err(json_err)?;
    manifest.root = format::root_hash(&value).map_err(|e| PackError::Unsupported {
        path: out.to_owned(),
        reason: e.to_string(),
    })?;
    manifest.check(data_len).map_err(|e| PackError::Unsupported {
        path: out.to_owned(),
        reason: format!("internal error, the packed manifest breaks a rule: {e}"),
    })?;
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(json_err)?;
    let mut signed = format::SIGNING_PREFIX.to_vec();
    signed.extend_from_slice(&manifest_bytes);
    let signature = serde_json::to_vec(&keys::sign_bytes(key, &signed)).map_err(json_err)?;
    let header = Header {
        version: FORMAT_VERSION,
        manifest_len: manifest_bytes.len() as u64,
        signature_len: signature.len() as u64,
        data_len,
    };
    Ok(Signed {
        manifest,
        manifest_bytes,
        signature,
        header,
    })
}

fn write_image(
    out: &Path,
    frames_path: &Path,
    data_len: u64,
    partitions: Vec<Partition>,
    key: &SigningKey,
    opts: &PackOptions,
) -> Result<PackSummary, PackError> {
    let signed = sign_manifest(out, data_len, partitions, key, opts)?;
    let partial = out.with_extension("partial");
    let mut f = File::create(&partial).map_err(io_err("creating", &partial))?;
    let written = (|| {
        f.write_all(&signed.header.encode())?;
        f.write_all(&signed.manifest_bytes)?;
        f.write_all(&signed.signature)?;
        let mut frames = File::open(frames_path)?;
        frames.seek(SeekFrom::Start(0))?;
        io::copy(&mut frames, &mut f)?;
        f.sync_all()
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&partial);
        return Err(io_err("writing", &partial)(source).into());
    }
    fs::rename(&partial, out).map_err(io_err("renaming to", out))?;
    Ok(signed.summary())
}
