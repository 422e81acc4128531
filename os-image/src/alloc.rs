//! Which 4 KiB blocks of a partition a filesystem's own allocation map says are free: ext2/3/4
//! block bitmaps, the FAT32 FAT and NTFS's `$Bitmap`.
//!
//! Parsed by hand: the ext4 crates on crates.io read files, not the block bitmaps, and `fatfs` does not
//! expose its FAT as a free-cluster map. Both readers are conservative: anything they do not
//! understand (unknown incompatible features, bigalloc, a partition larger than the filesystem, a
//! block-size mismatch) counts as in use, so a doubt costs space, never data.

use std::io;

use crate::format::BLOCK;

/// Reads bytes at an offset of the partition.
pub trait ReadAt {
    /// Fills `buf` from `offset`; an error if the partition is shorter.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// One bit per 4 KiB block of a partition: set = free.
#[derive(Debug, Clone)]
pub struct FreeMap {
    bits: Vec<u64>,
    blocks: u64,
}

impl FreeMap {
    /// All blocks in use.
    pub fn all_used(blocks: u64) -> FreeMap {
        FreeMap {
            bits: vec![0; usize::try_from(blocks.div_ceil(64)).unwrap_or(usize::MAX)],
            blocks,
        }
    }

    fn slot(&self, block: u64) -> Option<(usize, u64)> {
        (block < self.blocks).then(|| (usize::try_from(block / 64).unwrap_or(usize::MAX), 1u64 << (block % 64)))
    }

    /// Whether block `block` (4 KiB units) is free.
    pub fn is_free(&self, block: u64) -> bool {
        self.slot(block)
            .and_then(|(i, m)| self.bits.get(i).map(|w| w & m != 0))
            .unwrap_or(false)
    }

    fn set_free(&mut self, block: u64) {
        if let Some((i, m)) = self.slot(block) {
            if let Some(w) = self.bits.get_mut(i) {
                *w |= m;
            }
        }
    }

    /// Number of free blocks.
    pub fn free_blocks(&self) -> u64 {
        self.bits.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Marks free every 4 KiB block whose bytes `[start, end)` all lie in ranges `is_free_byte_range`
    /// reports free; `unit` is the filesystem's allocation unit in bytes.
    fn mark_from_units(&mut self, unit: u64, first_byte: u64, unit_free: impl Fn(u64) -> bool) {
        // A 4 KiB block is free when every allocation unit overlapping it is free.
        for block in 0..self.blocks {
            let (start, end) = (block * BLOCK, (block + 1) * BLOCK);
            if start < first_byte {
                continue;
            }
            let first_unit = (start - first_byte) / unit;
            let last_unit = (end - first_byte - 1) / unit;
            if (first_unit..=last_unit).all(&unit_free) {
                self.set_free(block);
            }
        }
    }
}

fn le16(b: &[u8], o: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[o], b[o + 1]]))
}

fn le32(b: &[u8], o: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]))
}

fn to_usize(v: u64) -> io::Result<usize> {
    usize::try_from(v).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "value too large"))
}

/// Whether the partition starts with an ext2/3/4 superblock.
pub fn is_ext4(part: &dyn ReadAt) -> bool {
    let mut sb = [0u8; 2];
    part.read_at(1024 + 0x38, &mut sb).is_ok() && sb == [0x53, 0xEF]
}

/// Whether the partition starts with a FAT32 boot sector.
pub fn is_fat32(part: &dyn ReadAt) -> bool {
    let mut bs = [0u8; 512];
    part.read_at(0, &mut bs).is_ok() && bs[510..512] == [0x55, 0xAA] && &bs[82..90] == b"FAT32   " && le16(&bs, 22) == 0
}

const INCOMPAT_64BIT: u64 = 0x80;
const INCOMPAT_META_BG: u64 = 0x10;
/// Incompatible features whose meaning for the block bitmaps we know.
const INCOMPAT_KNOWN: u64 =
    0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x200 | 0x400 | 0x1000 | 0x2000 | 0x8000 | 0x10000 | 0x20000;
const RO_COMPAT_SPARSE_SUPER: u64 = 0x1;
const RO_COMPAT_GDT_CSUM: u64 = 0x10;
const RO_COMPAT_BIGALLOC: u64 = 0x200;
const RO_COMPAT_METADATA_CSUM: u64 = 0x400;
const COMPAT_SPARSE_SUPER2: u64 = 0x200;
const BG_BLOCK_UNINIT: u64 = 0x2;

fn has_super_backup(group: u64, sparse: bool) -> bool {
    if !sparse || group <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut n = base;
        while n < group {
            n *= base;
        }
        n == group
    })
}

/// Free map of an ext2/3/4 filesystem from its block bitmaps. Groups marked `BLOCK_UNINIT` are free
/// except the superblock backup and descriptor area and every group's bitmaps and inode table.
pub fn ext4_free_map(part: &dyn ReadAt, part_len: u64) -> io::Result<FreeMap> {
    let blocks4k = part_len / BLOCK;
    let mut map = FreeMap::all_used(blocks4k);
    let mut sb = vec![0u8; 1024];
    part.read_at(1024, &mut sb)?;
    let blocks_lo = le32(&sb, 0x4);
    let first_data_block = le32(&sb, 0x14);
    let log_bs = le32(&sb, 0x18);
    let blocks_per_group = le32(&sb, 0x20);
    let inodes_per_group = le32(&sb, 0x28);
    let compat = le32(&sb, 0x5C);
    let incompat = le32(&sb, 0x60);
    let ro_compat = le32(&sb, 0x64);
    let reserved_gdt = le16(&sb, 0xCE);
    let inode_size = if le32(&sb, 0x4C) >= 1 { le16(&sb, 0x58) } else { 128 };
    let is64 = incompat & INCOMPAT_64BIT != 0;
    let desc_size = if is64 { le16(&sb, 0xFE) } else { 32 };
    let blocks_count = blocks_lo | if is64 { le32(&sb, 0x150) << 32 } else { 0 };
    if log_bs > 2
        || blocks_per_group == 0
        || desc_size < 32
        || incompat & !INCOMPAT_KNOWN != 0
        || incompat & INCOMPAT_META_BG != 0
        || ro_compat & RO_COMPAT_BIGALLOC != 0
        || compat & COMPAT_SPARSE_SUPER2 != 0
    {
        // Something we do not model: nothing is skipped.
        return Ok(map);
    }
    let bs = 1024u64 << log_bs;
    if blocks_count.checked_mul(bs).is_none_or(|b| b > part_len) {
        return Ok(map);
    }
    let groups = (blocks_count - first_data_block).div_ceil(blocks_per_group);
    let csum = ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM) != 0;
    let sparse = ro_compat & RO_COMPAT_SPARSE_SUPER != 0;
    let gdt_blocks = (groups * desc_size).div_ceil(bs);
    let mut gdt = vec![0u8; to_usize(gdt_blocks * bs)?];
    part.read_at((first_data_block + 1) * bs, &mut gdt)?;

    // Per filesystem block: free? Built group by group.
    let mut fs_free = vec![false; to_usize(blocks_count)?];
    let mut metadata: Vec<(u64, u64)> = Vec::new();
    let mut uninit_groups = Vec::new();
    let itable_blocks = (inodes_per_group * inode_size).div_ceil(bs);
    let mut bitmap = vec![0u8; to_usize(bs)?];
    for g in 0..groups {
        let d = &gdt[to_usize(g * desc_size)?..to_usize(g * desc_size + desc_size)?];
        let hi = |o: usize| if is64 { le32(d, o) << 32 } else { 0 };
        let block_bitmap = le32(d, 0x0) | hi(0x20);
        let inode_bitmap = le32(d, 0x4) | hi(0x24);
        let inode_table = le32(d, 0x8) | hi(0x28);
        let flags = le16(d, 0x12);
        metadata.push((block_bitmap, 1));
        metadata.push((inode_bitmap, 1));
        metadata.push((inode_table, itable_blocks));
        let start = first_data_block + g * blocks_per_group;
        let count = blocks_per_group.min(blocks_count - start);
        if csum && flags & BG_BLOCK_UNINIT != 0 {
            uninit_groups.push((g, start, count));
            continue;
        }
        if block_bitmap >= blocks_count {
            return Ok(map);
        }
        part.read_at(block_bitmap * bs, &mut bitmap)?;
        for i in 0..count {
            let bit = bitmap
                .get(to_usize(i / 8)?)
                .is_some_and(|byte| byte & (1 << (i % 8)) != 0);
            fs_free[to_usize(start + i)?] = !bit;
        }
    }
    for (g, start, count) in uninit_groups {
        for i in 0..count {
            fs_free[to_usize(start + i)?] = true;
        }
        if has_super_backup(g, sparse) {
            for b in start..(start + 1 + gdt_blocks + reserved_gdt).min(start + count) {
                fs_free[to_usize(b)?] = false;
            }
        }
    }
    for (b, n) in metadata {
        for x in b..b.saturating_add(n).min(blocks_count) {
            fs_free[to_usize(x)?] = false;
        }
    }
    // Blocks before first_data_block (the boot block of 1 KiB filesystems) stay in use.
    map.mark_from_units(bs, 0, |unit| {
        unit < blocks_count
            && fs_free
                .get(to_usize(unit).unwrap_or(usize::MAX))
                .copied()
                .unwrap_or(false)
    });
    Ok(map)
}

/// Block size and block count of an ext2/3/4 superblock (`None` if it is not one or is implausible).
pub fn ext4_geometry(part: &dyn ReadAt) -> Option<(u64, u64)> {
    let mut sb = vec![0u8; 1024];
    part.read_at(1024, &mut sb).ok()?;
    if sb[0x38..0x3A] != [0x53, 0xEF] {
        return None;
    }
    let log_bs = le32(&sb, 0x18);
    if log_bs > 6 {
        return None;
    }
    let is64 = le32(&sb, 0x60) & INCOMPAT_64BIT != 0;
    let blocks = le32(&sb, 0x4) | if is64 { le32(&sb, 0x150) << 32 } else { 0 };
    Some((1024u64 << log_bs, blocks))
}

/// Geometry of an NTFS volume from its boot sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NtfsGeometry {
    /// Bytes per sector.
    pub bytes_per_sector: u64,
    /// Bytes per cluster.
    pub cluster_bytes: u64,
    /// Sectors of the volume (the backup boot sector lies in the sector after them).
    pub total_sectors: u64,
    /// First cluster of `$MFT`.
    pub mft_lcn: u64,
    /// Bytes per MFT record.
    pub record_bytes: u64,
}

impl NtfsGeometry {
    /// Parses an NTFS boot sector (512 bytes at least).
    pub fn parse(bs: &[u8]) -> Option<NtfsGeometry> {
        if bs.len() < 512 || &bs[3..11] != b"NTFS    " || bs[510..512] != [0x55, 0xAA] {
            return None;
        }
        let bps = le16(bs, 11);
        let spc = match bs[13] {
            0 => return None,
            v if v > 0x80 => 1u64.checked_shl(256 - u32::from(v))?,
            v => u64::from(v),
        };
        let mut total = [0u8; 8];
        total.copy_from_slice(&bs[0x28..0x30]);
        let mut mft = [0u8; 8];
        mft.copy_from_slice(&bs[0x30..0x38]);
        let cluster_bytes = bps.checked_mul(spc)?;
        let raw = i8::from_le_bytes([bs[0x40]]);
        let record_bytes = if raw < 0 {
            1u64.checked_shl(u32::from(raw.unsigned_abs()))?
        } else {
            u64::try_from(raw).ok()?.checked_mul(cluster_bytes)?
        };
        let g = NtfsGeometry {
            bytes_per_sector: bps,
            cluster_bytes,
            total_sectors: u64::from_le_bytes(total),
            mft_lcn: u64::from_le_bytes(mft),
            record_bytes,
        };
        let ok = matches!(bps, 512 | 1024 | 2048 | 4096)
            && cluster_bytes <= 2 * 1024 * 1024
            && (512..=65536).contains(&record_bytes)
            && record_bytes % 512 == 0
            && g.total_sectors > 0;
        ok.then_some(g)
    }

    /// Bytes the volume covers, its backup boot sector included.
    pub fn volume_bytes(&self) -> u64 {
        (self.total_sectors + 1).saturating_mul(self.bytes_per_sector)
    }

    /// Clusters of the volume (bits of `$Bitmap` that count).
    pub fn clusters(&self) -> u64 {
        self.total_sectors * self.bytes_per_sector / self.cluster_bytes
    }
}

/// Whether the partition starts with an NTFS boot sector.
pub fn is_ntfs(part: &dyn ReadAt) -> bool {
    let mut bs = [0u8; 512];
    part.read_at(0, &mut bs).is_ok() && NtfsGeometry::parse(&bs).is_some()
}

/// Applies the update sequence array of an NTFS multi-sector record (`FILE`); `false` if a sector's
/// check value does not match (a torn or foreign record).
fn ntfs_fixup(rec: &mut [u8]) -> bool {
    let usa_off = to_usize(le16(rec, 4)).unwrap_or(usize::MAX);
    let usa_count = to_usize(le16(rec, 6)).unwrap_or(0);
    if usa_count == 0 || usa_off.saturating_add(usa_count * 2) > rec.len() || (usa_count - 1) * 512 > rec.len() {
        return false;
    }
    let usn = [rec[usa_off], rec[usa_off + 1]];
    for i in 1..usa_count {
        let end = i * 512;
        if rec[end - 2..end] != usn {
            return false;
        }
        let fix = [rec[usa_off + 2 * i], rec[usa_off + 2 * i + 1]];
        rec[end - 2..end].copy_from_slice(&fix);
    }
    true
}

/// Decodes an NTFS runlist into (first cluster, cluster count) runs; `None` on a sparse run or
/// malformed bytes.
fn ntfs_runs(mut bytes: &[u8]) -> Option<Vec<(u64, u64)>> {
    let mut runs = Vec::new();
    let mut lcn: i64 = 0;
    loop {
        let (&head, rest) = bytes.split_first()?;
        if head == 0 {
            return Some(runs);
        }
        let (len_n, off_n) = (usize::from(head & 0xF), usize::from(head >> 4));
        if len_n == 0 || len_n > 8 || off_n == 0 || off_n > 8 || rest.len() < len_n + off_n {
            return None;
        }
        let mut len = 0u64;
        for (i, b) in rest[..len_n].iter().enumerate() {
            len |= u64::from(*b) << (8 * i);
        }
        let mut delta = 0i64;
        for (i, b) in rest[len_n..len_n + off_n].iter().enumerate() {
            delta |= i64::from(*b) << (8 * i);
        }
        let shift = 64 - 8 * u32::try_from(off_n).ok()?;
        delta = (delta << shift) >> shift;
        lcn = lcn.checked_add(delta)?;
        runs.push((u64::try_from(lcn).ok()?, len));
        bytes = &rest[len_n + off_n..];
    }
}

/// Reads `$Bitmap`'s data (MFT record 6): one bit per cluster, set = in use. `None` when anything is
/// not as expected (the caller then skips nothing).
fn ntfs_bitmap(part: &dyn ReadAt, g: &NtfsGeometry) -> io::Result<Option<Vec<u8>>> {
    let mut rec = vec![0u8; to_usize(g.record_bytes)?];
    let Some(at) = g
        .mft_lcn
        .checked_mul(g.cluster_bytes)
        .and_then(|b| b.checked_add(6 * g.record_bytes))
    else {
        return Ok(None);
    };
    part.read_at(at, &mut rec)?;
    // "FILE", in use (flag 1), record number 6 (NTFS 3.1 stores it at 0x2C).
    if &rec[0..4] != b"FILE" || le16(&rec, 0x16) & 1 == 0 || le32(&rec, 0x2C) != 6 || !ntfs_fixup(&mut rec) {
        return Ok(None);
    }
    let mut off = to_usize(le16(&rec, 0x14))?;
    while off + 16 <= rec.len() {
        let kind = le32(&rec, off);
        let len = to_usize(le32(&rec, off + 4))?;
        if kind == 0xFFFF_FFFF || len < 16 || off + len > rec.len() {
            return Ok(None);
        }
        let attr = &rec[off..off + len];
        // Unnamed $DATA.
        if kind == 0x80 && attr[9] == 0 {
            if attr[8] == 0 {
                let (vlen, voff) = (to_usize(le32(attr, 0x10))?, to_usize(le16(attr, 0x14))?);
                return Ok(attr.get(voff..voff + vlen).map(<[u8]>::to_vec));
            }
            if len < 0x40 || le32(attr, 0x10) != 0 {
                return Ok(None);
            }
            let mut size = [0u8; 8];
            size.copy_from_slice(&attr[0x30..0x38]);
            let size = u64::from_le_bytes(size);
            let Some(runs) = attr.get(to_usize(le16(attr, 0x20))?..).and_then(ntfs_runs) else {
                return Ok(None);
            };
            if size < g.clusters().div_ceil(8) || size > 1 << 32 {
                return Ok(None);
            }
            let mut out = Vec::with_capacity(to_usize(size)?);
            for (lcn, n) in runs {
                let mut buf = vec![0u8; to_usize(n * g.cluster_bytes)?];
                part.read_at(lcn * g.cluster_bytes, &mut buf)?;
                out.extend_from_slice(&buf);
                if out.len() as u64 >= size {
                    break;
                }
            }
            if (out.len() as u64) < size {
                return Ok(None);
            }
            out.truncate(to_usize(size)?);
            return Ok(Some(out));
        }
        off += len;
    }
    Ok(None)
}

/// Free map of an NTFS volume from `$Bitmap`: a cluster is free when its bit is clear. The backup
/// boot sector past the last cluster and anything `$Bitmap` does not cover stay in use.
pub fn ntfs_free_map(part: &dyn ReadAt, part_len: u64) -> io::Result<FreeMap> {
    let mut map = FreeMap::all_used(part_len / BLOCK);
    let mut bs = [0u8; 512];
    part.read_at(0, &mut bs)?;
    let Some(g) = NtfsGeometry::parse(&bs) else {
        return Ok(map);
    };
    if g.volume_bytes() > part_len {
        return Ok(map);
    }
    let Some(bitmap) = ntfs_bitmap(part, &g)? else {
        return Ok(map);
    };
    let clusters = g.clusters();
    map.mark_from_units(g.cluster_bytes, 0, |c| {
        c < clusters
            && bitmap
                .get(to_usize(c / 8).unwrap_or(usize::MAX))
                .is_some_and(|b| b & (1 << (c % 8)) == 0)
    });
    Ok(map)
}

/// Geometry of a FAT32 volume from its boot sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fat32Geometry {
    /// Bytes per sector.
    pub bytes_per_sector: u64,
    /// Sectors per cluster.
    pub sectors_per_cluster: u64,
    /// Reserved sectors before the first FAT.
    pub reserved_sectors: u64,
    /// Number of FATs.
    pub fats: u64,
    /// Sectors per FAT.
    pub fat_sectors: u64,
    /// Total sectors.
    pub total_sectors: u64,
}

impl Fat32Geometry {
    /// Parses the boot sector (512 bytes at least).
    pub fn parse(bs: &[u8]) -> Option<Fat32Geometry> {
        if bs.len() < 512 {
            return None;
        }
        let g = Fat32Geometry {
            bytes_per_sector: le16(bs, 11),
            sectors_per_cluster: u64::from(bs[13]),
            reserved_sectors: le16(bs, 14),
            fats: u64::from(bs[16]),
            fat_sectors: le32(bs, 36),
            total_sectors: if le16(bs, 19) != 0 { le16(bs, 19) } else { le32(bs, 32) },
        };
        let ok = matches!(g.bytes_per_sector, 512 | 1024 | 2048 | 4096)
            && g.sectors_per_cluster.is_power_of_two()
            && g.reserved_sectors > 0
            && (1..=4).contains(&g.fats)
            && g.fat_sectors > 0
            && g.data_start_sector() < g.total_sectors;
        ok.then_some(g)
    }

    /// First sector of the data region.
    pub fn data_start_sector(&self) -> u64 {
        self.reserved_sectors + self.fats * self.fat_sectors
    }

    /// Bytes of the reserved area.
    pub fn reserved_bytes(&self) -> u64 {
        self.reserved_sectors * self.bytes_per_sector
    }

    /// Number of data clusters.
    pub fn clusters(&self) -> u64 {
        (self.total_sectors - self.data_start_sector()) / self.sectors_per_cluster
    }

    /// Whether the volume can be rewritten for 4096-byte logical sectors (see `fat_to_4k`).
    pub fn convertible_to_4k(&self) -> bool {
        self.bytes_per_sector == 512
            && self.sectors_per_cluster % 8 == 0
            && self.reserved_sectors % 8 == 0
            && self.reserved_sectors / 8 >= 4
            && self.fat_sectors % 8 == 0
    }
}

/// Free map of a FAT32 volume: a cluster is free when its entry is 0 in every FAT. The reserved
/// area, the FATs and bytes after the last cluster stay in use; the root directory is a cluster
/// chain and so in use through the FAT.
pub fn fat32_free_map(part: &dyn ReadAt, part_len: u64) -> io::Result<FreeMap> {
    let mut map = FreeMap::all_used(part_len / BLOCK);
    let mut bs = [0u8; 512];
    part.read_at(0, &mut bs)?;
    let Some(g) = Fat32Geometry::parse(&bs) else {
        return Ok(map);
    };
    if g.total_sectors * g.bytes_per_sector > part_len {
        return Ok(map);
    }
    let clusters = g.clusters();
    let fat_bytes = g.fat_sectors * g.bytes_per_sector;
    if (clusters + 2) * 4 > fat_bytes {
        return Ok(map);
    }
    let mut free = vec![true; to_usize(clusters)?];
    let mut fat = vec![0u8; to_usize(fat_bytes)?];
    for f in 0..g.fats {
        part.read_at(g.reserved_bytes() + f * fat_bytes, &mut fat)?;
        for (c, slot) in free.iter_mut().enumerate() {
            let o = (c + 2) * 4;
            if le32(&fat, o) & 0x0FFF_FFFF != 0 {
                *slot = false;
            }
        }
    }
    let cluster_bytes = g.sectors_per_cluster * g.bytes_per_sector;
    let data_start = g.data_start_sector() * g.bytes_per_sector;
    map.mark_from_units(cluster_bytes, data_start, |c| {
        free.get(to_usize(c).unwrap_or(usize::MAX)).copied().unwrap_or(false)
    });
    Ok(map)
}

/// Rewrites the reserved area of a 512-byte-sector FAT32 volume (the first `reserved_bytes` of
/// `head`) for 4096-byte logical sectors. Byte positions of the FATs and of every cluster do not
/// change; only the counts in the boot sector are divided by 8, the FSInfo sector moves to byte 4096
/// and the backup boot sector and FSInfo to sectors 2 and 3. `hidden_sectors` is the partition's start
/// LBA on the target.
pub fn fat_to_4k(head: &mut [u8], hidden_sectors: u32) -> Result<(), &'static str> {
    let g = Fat32Geometry::parse(head).ok_or("not a FAT32 boot sector")?;
    if !g.convertible_to_4k() {
        return Err("this FAT32 volume cannot be converted to 4096-byte sectors");
    }
    let reserved = to_usize(g.reserved_bytes()).map_err(|_| "reserved area too large")?;
    if head.len() < reserved {
        return Err("the first chunk does not hold the whole reserved area");
    }
    let fsinfo_sector = usize::from(u16::from_le_bytes([head[48], head[49]]));
    let mut boot = [0u8; 512];
    boot.copy_from_slice(&head[0..512]);
    let mut fsinfo = [0u8; 512];
    if fsinfo_sector > 0 && (fsinfo_sector + 1) * 512 <= reserved {
        fsinfo.copy_from_slice(&head[fsinfo_sector * 512..fsinfo_sector * 512 + 512]);
    }
    let put16 =
        |b: &mut [u8; 512], o: usize, v: u64| b[o..o + 2].copy_from_slice(&u16::try_from(v).unwrap_or(0).to_le_bytes());
    let put32 =
        |b: &mut [u8; 512], o: usize, v: u64| b[o..o + 4].copy_from_slice(&u32::try_from(v).unwrap_or(0).to_le_bytes());
    put16(&mut boot, 11, 4096);
    boot[13] = u8::try_from(g.sectors_per_cluster / 8).map_err(|_| "cluster size")?;
    put16(&mut boot, 14, g.reserved_sectors / 8);
    put16(&mut boot, 19, 0);
    put32(&mut boot, 28, u64::from(hidden_sectors));
    put32(&mut boot, 32, g.total_sectors / 8);
    put32(&mut boot, 36, g.fat_sectors / 8);
    put16(&mut boot, 48, 1);
    put16(&mut boot, 50, 2);
    head[0..reserved].fill(0);
    for (sector, block) in [(0usize, &boot), (1, &fsinfo), (2, &boot), (3, &fsinfo)] {
        head[sector * 4096..sector * 4096 + 512].copy_from_slice(block);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_super_backup_groups() {
        let with: Vec<u64> = (0..30).filter(|g| has_super_backup(*g, true)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27]);
        assert!(has_super_backup(11, false));
    }

    #[test]
    fn ntfs_runlists_decode_with_negative_offsets_and_refuse_sparse_runs() {
        // 16 clusters at LCN 0x100, then 8 clusters 16 clusters back (a fragmented $Bitmap).
        let runs = ntfs_runs(&[0x21, 0x10, 0x00, 0x01, 0x11, 0x08, 0xF0, 0x00]).unwrap();
        assert_eq!(runs, vec![(256, 16), (240, 8)]);
        // A sparse run (no offset bytes) and a runlist without its terminator: nothing is trusted.
        assert_eq!(ntfs_runs(&[0x01, 0x10, 0x00]), None);
        assert_eq!(ntfs_runs(&[0x21, 0x10, 0x00, 0x01]), None);
    }

    #[test]
    fn ntfs_fixups_restore_sector_ends_and_catch_torn_records() {
        let mut rec = vec![0u8; 1024];
        rec[0..4].copy_from_slice(b"FILE");
        rec[4..6].copy_from_slice(&48u16.to_le_bytes());
        rec[6..8].copy_from_slice(&3u16.to_le_bytes());
        // Update sequence number 0x0102, the original sector ends 0xAAAA and 0xBBBB.
        rec[48..54].copy_from_slice(&[0x02, 0x01, 0xAA, 0xAA, 0xBB, 0xBB]);
        rec[510..512].copy_from_slice(&[0x02, 0x01]);
        rec[1022..1024].copy_from_slice(&[0x02, 0x01]);
        let mut torn = rec.clone();
        assert!(ntfs_fixup(&mut rec));
        assert_eq!(
            (&rec[510..512], &rec[1022..1024]),
            (&[0xAA, 0xAA][..], &[0xBB, 0xBB][..])
        );
        torn[1022] = 0x07;
        assert!(!ntfs_fixup(&mut torn));
    }
}
