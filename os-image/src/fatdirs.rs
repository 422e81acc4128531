//! Repairs the directories the `fatfs` crate creates, for both writers of FAT in Lapterop: the image
//! builder (the stick's FAT32 partition) and the agent (`lapterop/machine.json` on an installed ESP).
//!
//! `fatfs` 0.3.6 (the newest release) writes a long-name entry in front of each new directory's `.`
//! and `..` (rafalh/rust-fatfs#117, fixed on its master but not released), so they are not the first
//! two slots as the FAT specification wants (Microsoft FAT32 File System Specification 1.03, §6.7:
//! "the first two entries of a directory are `.` and `..`"). `fsck.vfat` and Windows' chkdsk report
//! them; `fsck.vfat -a` renames them to `FSCK0000.000` and can drop the directory. It also points `..`
//! of a directory under the root at the root's cluster (2), where the specification says 0 (§6.7).
//!
//! [`fix_dot_entries`] walks every directory from the root and rewrites exactly that pattern: `.`
//! and `..` go to slots 0 and 1, the two long-name slots are marked deleted, `..` under the root is
//! set to 0. Any other directory (made by Linux, Windows, mtools or `mkfs`) is left byte for byte as
//! it is. No cluster is allocated or freed, so the FATs stay as they are. FAT32 only: that is what
//! both writers use (the installer writes `machine.json` only on a FAT32 ESP).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::alloc::Fat32Geometry;

/// Bytes of one directory entry.
const ENTRY: usize = 32;

/// Walks every directory of the FAT32 volume that starts at byte `start` of `file` and moves `.`
/// and `..` of each directory `fatfs` made back to slots 0 and 1 (see the module docs). Returns how
/// many directories were rewritten. Call it after the `fatfs::FileSystem` is unmounted.
pub fn fix_dot_entries(file: &File, start: u64) -> io::Result<u64> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut bpb = [0u8; 512];
    file.read_exact_at(&mut bpb, start)?;
    let g = Fat32Geometry::parse(&bpb).ok_or_else(|| bad("not a FAT32 boot sector"))?;
    if u16::from_le_bytes([bpb[22], bpb[23]]) != 0 {
        return Err(bad("a FAT12/FAT16 volume, not FAT32"));
    }
    let cluster = g.bytes_per_sector * g.sectors_per_cluster;
    let cluster_len = usize::try_from(cluster).map_err(|_| bad("cluster size"))?;
    let fat_start = start + g.reserved_bytes();
    let data_start = start + g.data_start_sector() * g.bytes_per_sector;
    let clusters = g.clusters();
    let root = u64::from(u32::from_le_bytes([bpb[44], bpb[45], bpb[46], bpb[47]]));
    let offset = |c: u64| -> io::Result<u64> {
        if (2..clusters + 2).contains(&c) {
            Ok(data_start + (c - 2) * cluster)
        } else {
            Err(bad("a directory points outside the volume"))
        }
    };
    let next = |c: u64| -> io::Result<u64> {
        let mut e = [0u8; 4];
        file.read_exact_at(&mut e, fat_start + c * 4)?;
        Ok(u64::from(u32::from_le_bytes(e) & 0x0FFF_FFFF))
    };
    let mut fixed = 0;
    let mut todo = vec![(root, false)];
    let mut visited = 0u32;
    while let Some((first, under_root)) = todo.pop() {
        visited += 1;
        if visited > 100_000 {
            return Err(bad("the directory tree loops"));
        }
        // The whole directory: its cluster chain.
        let mut data = Vec::new();
        let mut c = first;
        loop {
            let mut buf = vec![0u8; cluster_len];
            file.read_exact_at(&mut buf, offset(c)?)?;
            data.extend_from_slice(&buf);
            if data.len() > 65_536 * ENTRY {
                return Err(bad("a directory chain loops"));
            }
            c = next(c)?;
            if !(2..0x0FFF_FFF8).contains(&c) {
                break;
            }
        }
        for e in data.chunks_exact(ENTRY) {
            if e[0] == 0 {
                break;
            }
            let attr = e[11];
            if e[0] == 0xE5 || attr == 0x0F || e[0] == b'.' || attr & 0x08 != 0 {
                continue;
            }
            if attr & 0x10 != 0 {
                let c = (u64::from(u16::from_le_bytes([e[20], e[21]])) << 16)
                    | u64::from(u16::from_le_bytes([e[26], e[27]]));
                todo.push((c, first == root));
            }
        }
        let is_lfn = |i: usize| data.get(i * ENTRY + 11) == Some(&0x0F);
        let is_name = |i: usize, n: &[u8; 11]| data.get(i * ENTRY..i * ENTRY + 11) == Some(&n[..]);
        if first != root && is_lfn(0) && is_name(1, b".          ") && is_lfn(2) && is_name(3, b"..         ") {
            let mut head = data[..4 * ENTRY].to_vec();
            head.copy_within(ENTRY..2 * ENTRY, 0);
            head.copy_within(3 * ENTRY..4 * ENTRY, ENTRY);
            head[2 * ENTRY] = 0xE5;
            head[3 * ENTRY] = 0xE5;
            if under_root {
                // `..` (now slot 1): first cluster high (offset 20) and low (offset 26) words.
                head[ENTRY + 20..ENTRY + 22].fill(0);
                head[ENTRY + 26..ENTRY + 28].fill(0);
            }
            file.write_all_at(&head, offset(first)?)?;
            fixed += 1;
        }
    }
    Ok(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The first `n` 32-byte slots of the directory whose entry in the root is named `name` (8.3,
    /// space padded), with that entry's first cluster.
    fn slots(img: &File, name: &[u8; 11], n: usize) -> (u64, Vec<[u8; 32]>) {
        let mut bpb = [0u8; 512];
        img.read_exact_at(&mut bpb, 0).unwrap();
        let g = Fat32Geometry::parse(&bpb).unwrap();
        let cluster = g.bytes_per_sector * g.sectors_per_cluster;
        let data = g.data_start_sector() * g.bytes_per_sector;
        let mut root = vec![0u8; usize::try_from(cluster).unwrap()];
        img.read_exact_at(&mut root, data).unwrap();
        let e = root.chunks_exact(32).find(|e| &e[..11] == name).unwrap();
        let c = (u64::from(u16::from_le_bytes([e[20], e[21]])) << 16) | u64::from(u16::from_le_bytes([e[26], e[27]]));
        let mut buf = vec![0u8; 32 * n];
        img.read_exact_at(&mut buf, data + (c - 2) * cluster).unwrap();
        (c, buf.chunks_exact(32).map(|s| s.try_into().unwrap()).collect())
    }

    #[test]
    fn dot_entries_of_fatfs_directories_go_to_slots_0_and_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fat.img");
        // Each user gets its own handle: fatfs wants one at offset 0.
        let open = || std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        std::fs::File::create(&path).unwrap().set_len(40 << 20).unwrap();
        let img = open();
        let opts = fatfs::FormatVolumeOptions::new().fat_type(fatfs::FatType::Fat32);
        fatfs::format_volume(open(), opts).unwrap();
        {
            let fs = fatfs::FileSystem::new(open(), fatfs::FsOptions::new()).unwrap();
            {
                let d = fs.root_dir().create_dir("lapterop").unwrap();
                d.create_dir("outbox").unwrap();
                d.create_file("machine.json").unwrap().write_all(b"{}\n").unwrap();
            }
            fs.unmount().unwrap();
        }
        // What fatfs 0.3.6 wrote: LFN, `.`, LFN, `..` (pointing at the root, cluster 2).
        let (_, before) = slots(&img, b"LAPTEROP   ", 6);
        assert_eq!(
            [before[0][11], before[2][11]],
            [0x0F, 0x0F],
            "the fatfs bug is still there"
        );
        assert_eq!(&before[1][..11], b".          ");

        assert_eq!(fix_dot_entries(&img, 0).unwrap(), 2, "lapterop/ and lapterop/outbox/");
        let (c, after) = slots(&img, b"LAPTEROP   ", 6);
        assert_eq!(&after[0][..11], b".          ");
        assert_eq!(&after[1][..11], b"..         ");
        assert_eq!(after[0][11] & 0x10, 0x10);
        let cluster_of = |e: &[u8; 32]| {
            (u32::from(u16::from_le_bytes([e[20], e[21]])) << 16) | u32::from(u16::from_le_bytes([e[26], e[27]]))
        };
        assert_eq!(u64::from(cluster_of(&after[0])), c, "`.` is the directory itself");
        assert_eq!(cluster_of(&after[1]), 0, "`..` of a directory under the root is 0");
        assert_eq!([after[2][0], after[3][0]], [0xE5, 0xE5]);
        // The other entries did not move; fatfs still reads them.
        assert_eq!(after[4..], before[4..]);
        {
            let fs = fatfs::FileSystem::new(open(), fatfs::FsOptions::new()).unwrap();
            let mut s = String::new();
            std::io::Read::read_to_string(&mut fs.root_dir().open_file("lapterop/machine.json").unwrap(), &mut s)
                .unwrap();
            assert_eq!(s, "{}\n");
            assert!(fs.root_dir().open_dir("lapterop/outbox").is_ok());
        }
        // Nothing left to fix: a second pass (or a directory not made by fatfs) is left alone.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(fix_dot_entries(&img, 0).unwrap(), 0);
        assert!(std::fs::read(&path).unwrap() == bytes);
    }
}
