//! The stick's master boot record: GRUB's boot code, a fixed disk signature and one active FAT32
//! partition (type 0x0C, LBA). MBR rather than GPT: some BIOSes refuse to boot a disk with a valid
//! GPT (archiso's note in `shared/research/imaging.md` §4.4), and UEFI firmware boots
//! `\EFI\BOOT\BOOTX64.EFI` from an MBR FAT partition just as well.

/// Partition type: FAT32 with LBA addressing.
pub const TYPE_FAT32_LBA: u8 = 0x0C;

/// One partition of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// First sector (512-byte LBA).
    pub start: u32,
    /// Number of sectors.
    pub sectors: u32,
    /// Partition type byte.
    pub kind: u8,
    /// The active (bootable) flag.
    pub active: bool,
}

/// CHS address of `lba` with the usual 255 heads and 63 sectors per track, capped at 1023/254/63
/// (BIOSes that still read CHS see a consistent geometry; everything else uses the LBA fields).
pub fn chs(lba: u32) -> [u8; 3] {
    let (heads, sectors) = (255u32, 63u32);
    let cylinder = lba / (heads * sectors);
    let (c, h, s) = if cylinder > 1023 {
        (1023, 254, 63)
    } else {
        (cylinder, (lba / sectors) % heads, lba % sectors + 1)
    };
    // Each value is masked to 8 bits first, so the conversions cannot fail.
    let byte = |v: u32| u8::try_from(v & 0xFF).unwrap_or(0);
    [byte(h), byte((s & 0x3F) | ((c >> 2) & 0xC0)), byte(c)]
}

/// The 512-byte MBR: `boot_code` (at most 440 bytes) at 0, the disk signature at 440, the partition
/// table at 446, and 0x55AA at 510.
pub fn mbr(boot_code: &[u8], disk_signature: u32, partitions: &[Partition]) -> [u8; 512] {
    let mut s = [0u8; 512];
    let n = boot_code.len().min(440);
    s[..n].copy_from_slice(&boot_code[..n]);
    s[440..444].copy_from_slice(&disk_signature.to_le_bytes());
    for (i, p) in partitions.iter().take(4).enumerate() {
        let e = &mut s[446 + 16 * i..446 + 16 * (i + 1)];
        e[0] = if p.active { 0x80 } else { 0 };
        e[1..4].copy_from_slice(&chs(p.start));
        e[4] = p.kind;
        e[5..8].copy_from_slice(&chs(p.start + p.sectors.saturating_sub(1)));
        e[8..12].copy_from_slice(&p.start.to_le_bytes());
        e[12..16].copy_from_slice(&p.sectors.to_le_bytes());
    }
    s[510] = 0x55;
    s[511] = 0xAA;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_matches_the_classic_geometry() {
        assert_eq!(chs(0), [0, 1, 0]);
        // LBA 2048 = cylinder 0, head 32, sector 33 (2048 = 32 * 63 + 32).
        assert_eq!(chs(2048), [32, 33, 0]);
        // LBA 16065 = 255 * 63: cylinder 1, head 0, sector 1.
        assert_eq!(chs(16_065), [0, 1, 1]);
        // Cylinder 1023 and beyond.
        assert_eq!(chs(u32::MAX), [254, 0xFF, 0xFF]);
    }

    #[test]
    fn table_entry_layout() {
        let code = [0xEBu8; 512];
        let m = mbr(
            &code,
            0x1234_5678,
            &[Partition {
                start: 2048,
                sectors: 81_920,
                kind: TYPE_FAT32_LBA,
                active: true,
            }],
        );
        assert!(m[..440].iter().all(|b| *b == 0xEB));
        assert_eq!(&m[440..446], &[0x78, 0x56, 0x34, 0x12, 0, 0]);
        assert_eq!(m[446], 0x80);
        assert_eq!(m[450], 0x0C);
        assert_eq!(&m[454..458], &2048u32.to_le_bytes());
        assert_eq!(&m[458..462], &81_920u32.to_le_bytes());
        assert!(m[462..510].iter().all(|b| *b == 0));
        assert_eq!(&m[510..], &[0x55, 0xAA]);
    }
}
