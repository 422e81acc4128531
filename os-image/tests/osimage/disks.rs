//! Real filesystems: ext4 (`mkfs.ext4 -d`) and FAT32 (`mkfs.vfat` + `mcopy`) holding files, in a GPT
//! disk made by `sgdisk`; packed, then installed onto target files with 512- and 4096-byte sectors,
//! smaller and larger than the source disk. Each install is checked with an independent GPT parser
//! (and `sgdisk -v` at 512 bytes), `fsck.vfat`/`e2fsck`, and the files read back with `mcopy`/`debugfs`.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use lapterop_osimage::format::{ExtentKind, Filesystem};
use lapterop_osimage::{install, pack, Image, SeekSource};

use crate::common::*;

const TOOLS: &[&str] = &[
    "mkfs.ext4",
    "mkfs.vfat",
    "mcopy",
    "sgdisk",
    "debugfs",
    "e2fsck",
    "fsck.vfat",
    "dumpe2fs",
];
const ESP_MIB: u64 = 300;
const ROOT_MIB: u64 = 300;
const SOURCE_MIB: u64 = 700;

struct Source {
    _dir: tempfile::TempDir,
    esp_files: PathBuf,
    root_files: PathBuf,
    image: PathBuf,
    root_fs: PathBuf,
    esp_fs: PathBuf,
    root_free_bytes: u64,
    esp_free_bytes: u64,
}

fn populate(dir: &Path, files: &[(&str, Vec<u8>)]) {
    for (name, bytes) in files {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
}

/// Copies `from` into `disk` at `offset`, 1 MiB at a time, skipping all-zero MiBs (both are sparse).
pub fn place(from: &Path, disk: &File, offset: u64) {
    let src = File::open(from).unwrap();
    let len = src.metadata().unwrap().len();
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(MIB) as usize;
        src.read_exact_at(&mut buf[..n], pos).unwrap();
        if !lapterop_osimage::pack::is_zero(&buf[..n]) {
            disk.write_all_at(&buf[..n], offset + pos).unwrap();
        }
        pos += n as u64;
    }
}

fn build_source() -> Source {
    let dir = temp_dir();
    let d = dir.path();
    let esp_files = d.join("esp-files");
    populate(
        &esp_files,
        &[
            ("EFI/BOOT/BOOTX64.EFI", pattern(10, 300_000)),
            ("EFI/debian/grub.cfg", text(11, 2_000)),
            (
                "loader/entries/lapterop.conf",
                b"title Lapterop\nlinux /vmlinuz\n".to_vec(),
            ),
            ("big.txt", text(12, 5 * 1024 * 1024 + 123)),
        ],
    );
    let root_files = d.join("root-files");
    populate(
        &root_files,
        &[
            ("etc/hostname", b"pupil-laptop\n".to_vec()),
            ("usr/bin/tool", pattern(20, 2 * 1024 * 1024 + 17)),
            ("usr/share/doc/manual.txt", text(21, 6 * 1024 * 1024)),
            ("var/lib/zeros.bin", vec![0u8; 1024 * 1024]),
            ("home/pupil/empty", Vec::new()),
        ],
    );
    let fat = d.join("esp.fs");
    File::create(&fat).unwrap().set_len(ESP_MIB * MIB).unwrap();
    run(Command::new("mkfs.vfat")
        .args(["-F", "32", "-s", "8", "-S", "512", "-n", "ESP"])
        .arg(&fat));
    let mut mcopy = Command::new("mcopy");
    mcopy.env("MTOOLS_SKIP_CHECK", "1").arg("-s").arg("-i").arg(&fat);
    for entry in fs::read_dir(&esp_files).unwrap() {
        mcopy.arg(entry.unwrap().path());
    }
    run(mcopy.arg("::/"));
    let ext = d.join("root.fs");
    File::create(&ext).unwrap().set_len(ROOT_MIB * MIB).unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-L", "root", "-d"])
        .arg(&root_files)
        .arg(&ext));

    let disk = d.join("reference.raw");
    File::create(&disk).unwrap().set_len(SOURCE_MIB * MIB).unwrap();
    run(Command::new("sgdisk")
        .args(["-n", &format!("1:1M:+{ESP_MIB}M"), "-t", "1:EF00", "-c", "1:ESP"])
        .args(["-n", &format!("2:0:+{ROOT_MIB}M"), "-t", "2:8300", "-c", "2:root"])
        .arg(&disk));
    let table = run(Command::new("sgdisk").arg("-p").arg(&disk));
    assert!(table.contains("ESP") && table.contains("root"), "{table}");
    let f = fs::OpenOptions::new().write(true).open(&disk).unwrap();
    place(&fat, &f, MIB);
    place(&ext, &f, MIB + ESP_MIB * MIB);

    let dumpe2fs = run(Command::new("dumpe2fs").arg("-h").arg(&ext));
    let free_blocks: u64 = dumpe2fs
        .lines()
        .find_map(|l| l.strip_prefix("Free blocks:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mdir = run(Command::new("mdir")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&fat)
        .arg("::/"));
    let esp_free: u64 = mdir
        .lines()
        .find(|l| l.contains("bytes free"))
        .unwrap()
        .replace("bytes free", "")
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap();

    let image = d.join("standard.osimg");
    // Packed without shrinking: the skip accounting below is against the reference's own free blocks.
    let mut opts = pack_options();
    opts.shrink_last = false;
    pack(&disk, &image, &image_key(), &opts).unwrap();
    Source {
        _dir: dir,
        esp_files,
        root_files,
        image,
        root_fs: ext,
        esp_fs: fat,
        root_free_bytes: free_blocks * 4096,
        esp_free_bytes: esp_free,
    }
}

/// A read-only loop device over a test file, detached on drop (also on panic).
struct Loop(String);

impl Loop {
    /// Attaches `file` with `sector`-byte logical sectors; `None` (said loudly) without root.
    fn attach(file: &Path, sector: u32) -> Option<Loop> {
        let uid = run(Command::new("id").arg("-u"));
        if uid.trim() != "0" || !Path::new("/usr/sbin/losetup").exists() && !Path::new("/sbin/losetup").exists() {
            lapterop_testkit::skip(
                "sgdisk -v at 4096-byte sectors",
                "needs root and losetup for a loop device (check_gpt still ran)",
            );
            return None;
        }
        let dev = run(Command::new("losetup")
            .args(["--find", "--show", "--read-only", "--sector-size", &sector.to_string()])
            .arg(file));
        Some(Loop(dev.trim().to_owned()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn same_outside_skips(p: &lapterop_osimage::format::Partition, source: &Path, installed: &Path, exempt: u64) {
    let (a, b) = (File::open(source).unwrap(), File::open(installed).unwrap());
    let (mut x, mut y) = (vec![0u8; 4096], vec![0u8; 4096]);
    for e in p.extents.iter().filter(|e| e.kind != ExtentKind::Skip) {
        for off in (e.offset..e.offset + e.length).step_by(4096).filter(|o| *o >= exempt) {
            a.read_exact_at(&mut x, off).unwrap();
            b.read_exact_at(&mut y, off).unwrap();
            assert!(
                x == y,
                "{:?}: block at {off} ({:?} extent) differs from the source",
                p.label,
                e.kind
            );
        }
    }
}

fn check_install(src: &Source, sector: u32, size_mib: u64) {
    let dir = temp_dir();
    let path = dir.path().join(format!("target-{sector}-{size_mib}.raw"));
    let target = target_file(&path, size_mib * MIB, sector);
    let mut image = Image::open(
        SeekSource(File::open(&src.image).unwrap()),
        &image_key().verifying_key(),
    )
    .unwrap();
    let manifest = image.manifest().clone();
    let report = install::install(&mut image, &target, &test_options(), &|_| {}).unwrap();
    let data_extents = manifest.extents_of(ExtentKind::Data).count() as u64;
    assert_eq!(report.chunks_verified, data_extents);
    assert!(report.zero_samples > 0);
    drop(target);

    let ss = u64::from(sector);
    let parts = check_gpt(&read_range(&path), size_mib * MIB, ss);
    assert_eq!(parts.len(), 2);
    assert_eq!((parts[0].0 * ss, parts[0].2.as_str()), (MIB, "ESP"));
    assert_eq!((parts[0].1 + 1 - parts[0].0) * ss, ESP_MIB * MIB);
    assert_eq!(parts[1].2, "root");
    assert_eq!(parts[1].0 * ss % MIB, 0, "root starts 1 MiB-aligned");
    let backup_entries = 128 * 128 / ss;
    assert_eq!(
        parts[1].1,
        size_mib * MIB / ss - 1 - backup_entries - 1,
        "root grows up to the backup GPT"
    );
    if sector == 512 {
        // sgdisk treats image files as 512-byte-sector disks.
        let out = run(Command::new("sgdisk").arg("-v").arg(&path));
        assert!(out.contains("No problems found"), "sgdisk -v: {out}");
    } else if let Some(loop_dev) = Loop::attach(&path, sector) {
        // For 4096 bytes sgdisk needs a device that reports the sector size: a read-only loop device.
        let out = run(Command::new("sgdisk").arg("-v").arg(&loop_dev.0));
        assert!(
            out.contains("No problems found"),
            "sgdisk -v on a 4096-byte loop device: {out}"
        );
    }

    let esp = extract(&path, parts[0].0 * ss, ESP_MIB * MIB, &dir.path().join("esp.part"));
    let boot = fs::read(&esp).unwrap();
    assert_eq!(
        u64::from(u16::from_le_bytes([boot[11], boot[12]])),
        ss,
        "FAT bytes per sector follow the target"
    );
    run(Command::new("fsck.vfat").arg("-n").arg(&esp));
    let esp_out = dir.path().join("esp-out");
    fs::create_dir(&esp_out).unwrap();
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["-s", "-n", "-i"])
        .arg(&esp)
        .arg("::/*")
        .arg(&esp_out));
    assert!(
        tree(&esp_out) == tree(&src.esp_files),
        "ESP files differ after install ({sector}, {size_mib} MiB)"
    );

    let root = extract(&path, parts[1].0 * ss, ROOT_MIB * MIB, &dir.path().join("root.part"));
    run(Command::new("e2fsck").arg("-fn").arg(&root));
    // Every block that is not skipped (backup superblocks, inode tables, journal, zero runs) equals
    // the source filesystem's; on 4096-byte sectors the FAT reserved area (rewritten) is exempt.
    same_outside_skips(&manifest.partitions[1], &src.root_fs, &root, 0);
    let fat_reserved = if sector == 4096 { 16 * 1024 } else { 0 };
    same_outside_skips(&manifest.partitions[0], &src.esp_fs, &esp, fat_reserved);
    let root_out = dir.path().join("root-out");
    fs::create_dir(&root_out).unwrap();
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", root_out.display()))
        .arg(&root));
    assert!(
        tree(&root_out) == tree(&src.root_files),
        "root files differ after install ({sector}, {size_mib} MiB)"
    );
}

#[test]
fn real_filesystems_install_on_both_sector_sizes_smaller_and_larger() {
    if !tools_present(
        "real_filesystems_install_on_both_sector_sizes_smaller_and_larger",
        TOOLS,
    ) {
        return;
    }
    let src = build_source();
    let image = Image::open(
        SeekSource(File::open(&src.image).unwrap()),
        &image_key().verifying_key(),
    )
    .unwrap();
    let m = image.manifest();
    assert_eq!(m.partitions[0].filesystem, Filesystem::Fat32);
    assert_eq!(m.partitions[0].sector_sizes, vec![512, 4096]);
    assert_eq!(m.partitions[1].filesystem, Filesystem::Ext4);
    // Skip only what the allocation maps call free: never more, and nearly all of it.
    let skip = |i: usize| {
        m.partitions[i]
            .extents
            .iter()
            .filter(|e| e.kind == ExtentKind::Skip)
            .map(|e| e.length)
            .sum::<u64>()
    };
    assert!(
        skip(0) <= src.esp_free_bytes && skip(0) * 100 >= src.esp_free_bytes * 99,
        "ESP skip {} of free {}",
        skip(0),
        src.esp_free_bytes
    );
    assert!(
        skip(1) <= src.root_free_bytes && skip(1) * 100 >= src.root_free_bytes * 90,
        "root skip {} of free {}",
        skip(1),
        src.root_free_bytes
    );
    // Every skipped ext4 block is free in libext2fs's view too (it computes BLOCK_UNINIT groups itself).
    let mut cmds = String::new();
    for e in m.partitions[1].extents.iter().filter(|e| e.kind == ExtentKind::Skip) {
        cmds.push_str(&format!("testb {} {}\n", e.offset / 4096, e.length / 4096));
    }
    let cmd_file = src.root_fs.with_extension("cmds");
    fs::write(&cmd_file, cmds).unwrap();
    let out = run(Command::new("debugfs").arg("-f").arg(&cmd_file).arg(&src.root_fs));
    assert!(
        out.contains("not in use") && !out.contains("marked in use"),
        "a skipped block is in use: {}",
        &out[..out.len().min(2000)]
    );
    let min = m.image.min_disk_bytes;
    assert_eq!(min, (1 + ESP_MIB + ROOT_MIB + 1) * MIB);
    drop(image);
    let smaller = min / MIB + 4;
    assert!(smaller < SOURCE_MIB);
    for sector in [512, 4096] {
        for size in [smaller, 800] {
            check_install(&src, sector, size);
        }
    }
}
