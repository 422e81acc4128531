//! `lapterop-agent install`: writes a signed standard OS image onto one disk.
//!
//! The image's header, signature and manifest are checked against the trusted image key before the
//! disk is even opened; the disk goes through the same safety refusals as a wipe and is held
//! `O_EXCL`. The writing itself is the `lapterop-osimage` installer (first and last MiB wiped, GPT laid
//! out for the disk's real size and sector size, chunks hash-checked before they are written, every
//! data extent read back, the partition table last, wiped again on any error). This module is the
//! block-device target behind it: `O_DIRECT` through aligned buffers, zero extents by `BLKZEROOUT`;
//! and the image's source: a file on the stick, or an HTTP(S) URL read by range requests ([`http`]).

use std::io;

use lapterop_certificate::model::{InstallRecord, InstallStatus};
use lapterop_certificate::VerifyingKey;
use lapterop_osimage::install::{self, InstallOptions, Target};
use lapterop_osimage::reader::{ChunkSource, Image, SeekSource};

use crate::disk::Claimed;
use crate::sys::PartitionLoop;
use crate::wipe::engine::AlignedBuf;
use lapterop_certificate::model::GrowRecord;
use lapterop_osimage::format::{Filesystem, Manifest, ALIGNMENT};
use lapterop_osimage::resize;

pub mod http;
pub mod identity;

/// What the agent writes into `lapterop/machine.json` after the install: the laptop and the site's
/// hostname pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The laptop.
    pub machine: identity::Machine,
    /// The `[install] hostname` pattern.
    pub hostname_pattern: String,
}

/// A claimed disk as an installer target.
#[derive(Debug)]
pub struct DiskTarget<'a>(pub &'a Claimed);

impl Target for DiskTarget<'_> {
    fn size(&self) -> u64 {
        self.0.capacity_bytes
    }

    fn logical_sector_size(&self) -> u32 {
        self.0.logical_sector_size
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        // O_DIRECT needs aligned buffers, offsets and lengths; the installer's writes of GPT structures
        // may be smaller than a block, so those are read, patched and written back.
        let (start, len) = aligned_span(offset, buf.len());
        let mut aligned = AlignedBuf::new(len);
        let at = usize::try_from(offset - start).unwrap_or(0);
        if at != 0 || len != buf.len() {
            std::os::unix::fs::FileExt::read_exact_at(&self.0.file, aligned.get_mut(len), start)?;
        }
        aligned.get_mut(len)[at..at + buf.len()].copy_from_slice(buf);
        std::os::unix::fs::FileExt::write_all_at(&self.0.file, aligned.get(len), start)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let (start, len) = aligned_span(offset, buf.len());
        let mut aligned = AlignedBuf::new(len);
        std::os::unix::fs::FileExt::read_exact_at(&self.0.file, aligned.get_mut(len), start)?;
        let at = usize::try_from(offset - start).unwrap_or(0);
        buf.copy_from_slice(&aligned.get(len)[at..at + buf.len()]);
        Ok(())
    }

    fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        match crate::sys::zero_out(&self.0.file, offset, len) {
            Ok(()) => Ok(()),
            // No zeroing offload (or an unaligned range): write the zeros ourselves.
            Err(_) => install::write_zeros(self, offset, len),
        }
    }

    fn flush(&self) -> io::Result<()> {
        self.0.file.sync_data()
    }

    fn discard_range(&self, offset: u64, len: u64) -> io::Result<bool> {
        match crate::sys::discard(&self.0.file, offset, len) {
            Ok(()) => Ok(true),
            // A disk without discard (rotating, most USB bridges) keeps the blocks as they are.
            Err(e) if matches!(e.errno, nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::ENOTTY) => Ok(false),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }
}

/// The 4096-byte-aligned span covering `len` bytes at `offset` (4096 suits 512- and 4096-byte sectors).
fn aligned_span(offset: u64, len: usize) -> (u64, usize) {
    const A: u64 = AlignedBuf::ALIGN as u64;
    let start = offset / A * A;
    let end = (offset + len as u64).div_ceil(A) * A;
    (start, usize::try_from(end - start).unwrap_or(usize::MAX))
}

/// Writes the image at `location` onto a claimed disk and reports it the way the certificate records
/// it. Never fails outright: an image that cannot be opened or checked, or a write that goes wrong,
/// gives a record with status `failed` and the reason (the installer wipes the partition table again).
pub fn install_onto(
    claimed: &Claimed,
    location: &str,
    trusted: &VerifyingKey,
    options: &InstallOptions,
    identity: Option<&Identity>,
    progress: &(dyn Fn(install::Progress) + Sync),
) -> InstallRecord {
    let mut record = InstallRecord {
        reason: None,
        ..failed_record(claimed, String::new())
    };
    let mut image = match open_image(location, trusted) {
        Ok(i) => i,
        Err(reason) => return failed_record(claimed, reason),
    };
    let m = image.manifest();
    record.image_name = Some(m.image.name.clone());
    record.image_version = Some(m.image.version.clone());
    record.root_hash = Some(m.root.to_string());
    record.signer_key_id = Some(image.signer_key_id().to_owned());
    let manifest = m.clone();
    let result = install::install(&mut image, &DiskTarget(claimed), options, progress);
    // Let the kernel see the new (or wiped) partition table; partitions appear a moment later. Only
    // "busy" is worth waiting for; a device without partition support (a loop device without
    // --partscan) answers EINVAL at once and every time.
    for _ in 0..20 {
        match crate::sys::reread_partitions(&claimed.file) {
            Err(e) if e.is_busy() => std::thread::sleep(std::time::Duration::from_millis(100)),
            _ => break,
        }
    }
    match result {
        Ok(r) => {
            record.bytes_written = r.bytes_written;
            record.chunks_verified = r.chunks_verified;
            record.chunk_mismatches = r.chunk_mismatches;
            record.discarded_bytes = (r.discarded_bytes > 0).then_some(r.discarded_bytes);
            match finish(claimed, &manifest, &r.layout, identity, &mut record) {
                Ok(()) => record.status = InstallStatus::Installed,
                Err(reason) => {
                    // The filesystem may be half grown: nothing on this disk should boot.
                    let wiped = wipe_table(claimed);
                    record.grow = None;
                    record.hostname = None;
                    record.reason = Some(match wiped {
                        Ok(()) => format!("{reason}; the partition table was wiped again, install again"),
                        Err(e) => format!(
                            "{reason}; wiping the partition table failed too ({e}): do not boot this disk, wipe it"
                        ),
                    });
                }
            }
        }
        // Refused before the first write: the disk is as it was.
        Err(e @ install::InstallError::Refused(_)) => record.reason = Some(format!("{e}")),
        Err(e) => record.reason = Some(format!("{e}; the partition table was wiped again")),
    }
    record.finished_at = lapterop_certificate::now_utc();
    record
}

/// After the image is written and read back: grows the last filesystem to its partition (which the
/// installer already laid out to the end of the disk) and writes `machine.json` onto the ESP. Both
/// go through loop devices over exactly their partition, because the disk stays claimed `O_EXCL`
/// (the kernel refuses an exclusive open of a partition of a claimed disk, and `resize2fs` opens
/// exclusively) and a host without partition nodes has none to open. `Err` is one line for the
/// record; the caller wipes the table.
fn finish(
    claimed: &Claimed,
    manifest: &Manifest,
    layout: &install::Layout,
    identity: Option<&Identity>,
    record: &mut InstallRecord,
) -> Result<(), String> {
    let sector = claimed.logical_sector_size;
    let attach = |index: usize| -> Result<PartitionLoop, String> {
        let (first, last) = layout.partitions[index];
        PartitionLoop::attach(
            &claimed.disk.path,
            first * layout.sector,
            (last - first + 1) * layout.sector,
            sector,
        )
        .map_err(|e| format!("reaching partition {} of the installed disk: {e}", index + 1))
    };
    if let Some((index, fs)) = install::growable(manifest) {
        let (first, last) = layout.partitions[index];
        let partition_bytes = (last - first + 1) * layout.sector;
        let part = attach(index)?;
        let checked = resize::grow_and_check(fs, &part.path).map_err(|e| {
            format!(
                "growing the installed filesystem of partition {} failed: {e}",
                index + 1
            )
        })?;
        part.sync()
            .map_err(|e| format!("after growing partition {}: {e}", index + 1))?;
        drop(part);
        let grown = matches!(checked.grown, resize::Grown::Grown { .. });
        // Grown means grown to the partition: within one allocation unit (ext4 block, NTFS cluster;
        // at most 64 KiB) of its end.
        if grown && (checked.fs_bytes > partition_bytes || partition_bytes - checked.fs_bytes > 65536) {
            return Err(format!(
                "growing partition {} left its filesystem at {} bytes, the partition has {partition_bytes}",
                index + 1,
                checked.fs_bytes
            ));
        }
        record.grow = Some(GrowRecord {
            partition: u32::try_from(index + 1).unwrap_or(u32::MAX),
            filesystem: match fs {
                Filesystem::Ntfs => "ntfs",
                _ => "ext4",
            }
            .to_owned(),
            partition_bytes,
            filesystem_bytes: checked.fs_bytes,
            grown,
        });
    }
    if let Some(id) = identity {
        if let Some(index) = manifest
            .partitions
            .iter()
            .position(|p| p.type_guid.eq_ignore_ascii_case(identity::ESP_TYPE) && p.filesystem == Filesystem::Fat32)
        {
            let name = identity::hostname(&id.hostname_pattern, &id.machine);
            let file = identity::MachineFile {
                schema: "lapterop-machine/1",
                machine: &id.machine,
                hostname: name.clone(),
                image: format!("{} {}", manifest.image.name, manifest.image.version),
                written_at: lapterop_certificate::now_utc(),
            };
            let esp = attach(index)?;
            identity::write_machine_json(&esp.path, &file)?;
            esp.sync().map_err(|e| format!("after writing machine.json: {e}"))?;
            record.hostname = Some(name);
        }
    }
    claimed
        .file
        .sync_data()
        .map_err(|e| format!("flushing the installed disk: {e}"))?;
    // What the loops wrote went through the page cache; the agent's own O_DIRECT reads must not see
    // stale cached blocks.
    let _ = crate::sys::flush_buffers(&claimed.file);
    Ok(())
}

/// Zeroes the first and last MiB of the claimed disk (both GPT copies and the protective MBR).
fn wipe_table(claimed: &Claimed) -> std::io::Result<()> {
    let t = DiskTarget(claimed);
    let size = claimed.capacity_bytes;
    install::write_zeros(&t, 0, ALIGNMENT.min(size))?;
    let tail = size.saturating_sub(ALIGNMENT) / 4096 * 4096;
    install::write_zeros(&t, tail, size - tail)?;
    t.flush()
}

/// A failed install onto `claimed` before its image was read: no image identity, the reason, now.
pub fn failed_record(claimed: &Claimed, reason: String) -> InstallRecord {
    let now = lapterop_certificate::now_utc();
    InstallRecord {
        status: InstallStatus::Failed,
        image_name: None,
        image_version: None,
        root_hash: None,
        signer_key_id: None,
        target_device: claimed.disk.name.clone(),
        target_serial: claimed.disk.serial.clone(),
        bytes_written: 0,
        chunks_verified: 0,
        chunk_mismatches: 0,
        discarded_bytes: None,
        reason: Some(reason),
        grow: None,
        hostname: None,
        started_at: now.clone(),
        finished_at: now,
    }
}

/// Opens and checks an image (header, signature, manifest) before any disk is touched: a file, or an
/// HTTP(S) URL read by range requests. Both go through the same [`Image::open`] checks.
pub(crate) fn open_image(location: &str, trusted: &VerifyingKey) -> Result<Image<Box<dyn ChunkSource>>, String> {
    let source: Box<dyn ChunkSource> = if http::is_url(location) {
        Box::new(http::HttpSource::new(location, http::HttpPolicy::default()))
    } else {
        let file = std::fs::File::open(location).map_err(|e| format!("opening {location}: {e}"))?;
        Box::new(SeekSource(file))
    };
    Image::open(source, trusted).map_err(|e| format!("{location}: {e}"))
}
