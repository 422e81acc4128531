//! Recognising a Lapterop stick that is not mounted (a second stick in the laptop, or the boot stick
//! after it was unmounted): its partitions are read, read-only, through the whole disk device (no
//! partition nodes are needed), and a FAT file system on one of them that holds
//! [`lapterop_certificate::STICK_MARKER`] makes the disk the stick. `disk::claim` refuses such a disk,
//! so `wipe`, `install` and `run` never write it.
//!
//! Where a partition starts comes from the MBR (four primary entries) or, behind a protective MBR,
//! the GPT (at most 128 entries); a FAT file system without a partition table (a "superfloppy") is
//! tried at offset 0. Reads go through a window that refuses every write, so the FAT reader can never
//! change the disk.

use std::io::{self, Read, Seek, SeekFrom, Write};

use lapterop_certificate::STICK_MARKER;

/// A read-only view of `inner` from byte `start` on.
struct Window<'a, R> {
    inner: &'a mut R,
    start: u64,
    pos: u64,
}

impl<R: Read + Seek> Read for Window<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R> Write for Window<'_, R> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the stick check never writes",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: Read + Seek> Seek for Window<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let bad = || io::Error::new(io::ErrorKind::InvalidInput, "seek out of range");
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).ok_or_else(bad)?,
            SeekFrom::End(d) => {
                let end = self
                    .inner
                    .seek(SeekFrom::End(0))?
                    .checked_sub(self.start)
                    .ok_or_else(bad)?;
                end.checked_add_signed(d).ok_or_else(bad)?
            }
        };
        Ok(self.pos)
    }
}

fn read_at<R: Read + Seek>(dev: &mut R, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    dev.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    dev.read_exact(&mut buf)?;
    Ok(buf)
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from(u32_at(b, o)) | (u64::from(u32_at(b, o + 4)) << 32)
}

/// Byte offsets where a partition starts (and 0 for a superfloppy), from the MBR or the GPT of a disk
/// with `sector`-byte logical sectors.
pub fn partition_offsets<R: Read + Seek>(dev: &mut R, sector: u32) -> io::Result<Vec<u64>> {
    let sector = u64::from(sector);
    let mbr = read_at(dev, 0, 512)?;
    let mut out = vec![0];
    if mbr[510..512] != [0x55, 0xaa] {
        return Ok(out);
    }
    let mut protective = false;
    for i in 0..4 {
        let e = &mbr[446 + i * 16..446 + (i + 1) * 16];
        match e[4] {
            0 => {}
            0xee => protective = true,
            _ => {
                let lba = u64::from(u32_at(e, 8));
                if lba > 0 {
                    out.push(lba * sector);
                }
            }
        }
    }
    if protective {
        let header = read_at(dev, sector, 92)?;
        if &header[..8] == b"EFI PART" {
            let entries_lba = u64_at(&header, 72);
            let count = u32_at(&header, 80).min(128);
            let size = u32_at(&header, 84);
            if (128..=4096).contains(&size) {
                let table = read_at(dev, entries_lba * sector, (count * size) as usize)?;
                for e in table.chunks_exact(size as usize) {
                    let used = e[..16].iter().any(|b| *b != 0);
                    let first = u64_at(e, 32);
                    if used && first > 0 {
                        out.push(first * sector);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The stick id in the marker file of a FAT file system starting at `offset`, if there is one.
fn marker_at<R: Read + Seek>(dev: &mut R, offset: u64) -> Option<String> {
    let window = Window {
        inner: dev,
        start: offset,
        pos: 0,
    };
    let fs = fatfs::FileSystem::new(window, fatfs::FsOptions::new()).ok()?;
    let mut file = fs.root_dir().open_file(STICK_MARKER).ok()?;
    let mut id = String::new();
    file.read_to_string(&mut id).ok()?;
    Some(id.trim().to_owned())
}

/// Where on the disk `dev` (with `sector`-byte sectors) a Lapterop stick's marker is: the byte offset of
/// its FAT file system and the stick id, or `None` for any other disk.
pub fn find<R: Read + Seek>(dev: &mut R, sector: u32) -> io::Result<Option<(u64, String)>> {
    for offset in partition_offsets(dev, sector)? {
        if let Some(id) = marker_at(dev, offset) {
            return Ok(Some((offset, id)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_and_gpt_offsets() {
        let mut disk = vec![0u8; 64 * 1024];
        disk[510] = 0x55;
        disk[511] = 0xaa;
        // Entry 1: FAT32 LBA at sector 2048; entry 2: protective.
        disk[446 + 4] = 0x0c;
        disk[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        disk[462 + 4] = 0xee;
        disk[462 + 8..462 + 12].copy_from_slice(&1u32.to_le_bytes());
        // GPT header at LBA 1, entries at LBA 2, two entries of 128 bytes, the second used at LBA 4096.
        disk[512..520].copy_from_slice(b"EFI PART");
        disk[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        disk[512 + 80..512 + 84].copy_from_slice(&2u32.to_le_bytes());
        disk[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = 1024 + 128;
        disk[e] = 0xaf;
        disk[e + 32..e + 40].copy_from_slice(&4096u64.to_le_bytes());
        let offsets = partition_offsets(&mut io::Cursor::new(disk), 512).unwrap();
        assert_eq!(offsets, [0, 2048 * 512, 4096 * 512]);
    }

    #[test]
    fn the_window_refuses_writes() {
        let mut data = io::Cursor::new(vec![1u8; 16]);
        let mut w = Window {
            inner: &mut data,
            start: 4,
            pos: 0,
        };
        assert!(w.write(b"x").is_err());
        assert_eq!(w.seek(SeekFrom::End(0)).unwrap(), 12);
        assert_eq!(data.into_inner(), vec![1u8; 16]);
    }

    #[test]
    fn an_empty_disk_has_no_marker() {
        let mut disk = io::Cursor::new(vec![0u8; 1 << 20]);
        assert_eq!(find(&mut disk, 512).unwrap(), None);
    }
}
