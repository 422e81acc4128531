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
use crate::wipe::engine::AlignedBuf;

pub mod http;

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
            record.status = InstallStatus::Installed;
            record.bytes_written = r.bytes_written;
            record.chunks_verified = r.chunks_verified;
            record.chunk_mismatches = r.chunk_mismatches;
            record.discarded_bytes = (r.discarded_bytes > 0).then_some(r.discarded_bytes);
        }
        // Refused before the first write: the disk is as it was.
        Err(e @ install::InstallError::Refused(_)) => record.reason = Some(format!("{e}")),
        Err(e) => record.reason = Some(format!("{e}; the partition table was wiped again")),
    }
    record.finished_at = lapterop_certificate::now_utc();
    record
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
