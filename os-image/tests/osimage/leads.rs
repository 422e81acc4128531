//! Reference disks as leads make them (issue 20): a last partition that ends at the disk's last
//! usable sector (`sgdisk -n 2:0:0`), a root filesystem holding a few hundred MB on a 2 GiB disk
//! that must install onto a smaller one, and an ext4 with 1 KiB blocks that cannot work on a 4Kn disk.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use lapterop_osimage::format::{ExtentKind, Filesystem};
use lapterop_osimage::install::{self, InstallError};
use lapterop_osimage::resize;
use lapterop_osimage::{pack, Image, SeekSource};

use crate::common::*;
use crate::disks::place;

const TOOLS: &[&str] = &[
    "mkfs.ext4",
    "mkfs.vfat",
    "mcopy",
    "sgdisk",
    "debugfs",
    "e2fsck",
    "dumpe2fs",
    "resize2fs",
];

/// A reference disk: the raw disk, the files of its root filesystem, its packed image.
pub struct Reference {
    pub dir: tempfile::TempDir,
    pub disk: PathBuf,
    pub root_files: PathBuf,
    pub image: PathBuf,
    /// Byte range of the root partition on the reference disk.
    pub root_part: (u64, u64),
}

/// First and last sector (512 bytes) of partition `n` as sgdisk reports them.
pub fn sgdisk_range(disk: &Path, n: u32) -> (u64, u64) {
    let out = run(Command::new("sgdisk").arg("-i").arg(n.to_string()).arg(disk));
    let field = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {out}"))
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("First sector:"), field("Last sector:"))
}

/// Builds a GPT disk of `disk_bytes` (sparse): with `esp`, a 300 MiB FAT32 ESP first; then the root
/// partition made by `root_spec` (an `sgdisk -n` spec such as `0:0` or `0:+64M`), ext4 with
/// `block`-byte blocks filling it and holding `files`.
pub fn reference(disk_bytes: u64, esp: bool, root_spec: &str, block: u32, files: &[(&str, Vec<u8>)]) -> Reference {
    let dir = temp_dir();
    let d = dir.path();
    let disk = d.join("reference.raw");
    File::create(&disk).unwrap().set_len(disk_bytes).unwrap();
    let root_n = if esp { 2 } else { 1 };
    let mut sg = Command::new("sgdisk");
    if esp {
        sg.args(["-n", "1:1M:+300M", "-t", "1:EF00", "-c", "1:ESP"]);
    }
    sg.args(["-n", &format!("{root_n}:{root_spec}"), "-t", &format!("{root_n}:8300")])
        .args(["-c", &format!("{root_n}:root")]);
    run(sg.arg(&disk));
    let out = fs::OpenOptions::new().write(true).open(&disk).unwrap();
    if esp {
        let fat = d.join("esp.fs");
        File::create(&fat).unwrap().set_len(300 * MIB).unwrap();
        run(Command::new("mkfs.vfat")
            .args(["-F", "32", "-s", "8", "-S", "512", "-n", "ESP"])
            .arg(&fat));
        let efi = d.join("BOOTX64.EFI");
        write_file(&efi, &pattern(7, 200_000));
        run(Command::new("mmd")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&fat)
            .args(["::/EFI", "::/EFI/BOOT"]));
        run(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&fat)
            .arg(&efi)
            .arg("::/EFI/BOOT/BOOTX64.EFI"));
        place(&fat, &out, MIB);
        fs::remove_file(&fat).unwrap();
    }
    let (first, last) = sgdisk_range(&disk, root_n);
    let root_part = (first * 512, (last + 1 - first) * 512);
    let root_files = d.join("root-files");
    for (name, bytes) in files {
        let p = root_files.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
    let ext = d.join("root.fs");
    File::create(&ext).unwrap().set_len(root_part.1).unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", &block.to_string(), "-L", "root", "-d"])
        .arg(&root_files)
        .arg(&ext));
    place(&ext, &out, root_part.0);
    fs::remove_file(&ext).unwrap();
    drop(out);
    let image = d.join("reference.osimg");
    Reference {
        dir,
        disk,
        root_files,
        image,
        root_part,
    }
}

/// A read-write loop device over `[offset, offset + len)` of a test file (a partition of an
/// installed target), detached on drop (also on panic).
pub struct PartLoop(pub String);

impl PartLoop {
    /// `None` (said loudly) without root: growing needs a block device of the partition's size.
    pub fn attach(file: &Path, offset: u64, len: u64) -> Option<PartLoop> {
        if run(Command::new("id").arg("-u")).trim() != "0" {
            lapterop_testkit::skip("growing the installed filesystem", "needs root for a loop device");
            return None;
        }
        let dev = run(Command::new("losetup")
            .args([
                "--find",
                "--show",
                "--offset",
                &offset.to_string(),
                "--sizelimit",
                &len.to_string(),
            ])
            .arg(file));
        Some(PartLoop(dev.trim().to_owned()))
    }
}

impl Drop for PartLoop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// Grows the installed filesystem of `[start, end)` of `path` the way the agent does (the library's
/// `grow_filesystem` on a block device of exactly the partition); `false` when no loop device.
pub fn grow_installed(path: &Path, start: u64, end: u64, fs: Filesystem) -> bool {
    let Some(dev) = PartLoop::attach(path, start, end - start) else {
        return false;
    };
    let grown = resize::grow_filesystem(fs, Path::new(&dev.0)).unwrap();
    assert!(matches!(grown, resize::Grown::Grown { .. }), "{grown:?}");
    true
}

fn open_image(path: &Path) -> Image<SeekSource<File>> {
    Image::open(SeekSource(File::open(path).unwrap()), &image_key().verifying_key()).unwrap()
}

/// `dumpe2fs -h` field as a number.
pub fn dumpe2fs_field(fs_path: &Path, field: &str) -> u64 {
    let out = run(Command::new("dumpe2fs").arg("-h").arg(fs_path));
    out.lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in dumpe2fs"))
        .trim()
        .parse()
        .unwrap()
}

/// Checks an installed root filesystem (extracted to `root`): e2fsck clean, same files as `files`.
pub fn check_root(root: &Path, files: &Path, out_dir: &Path) {
    run(Command::new("e2fsck").arg("-fn").arg(root));
    let root_out = out_dir.join("root-out");
    fs::create_dir(&root_out).unwrap();
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", root_out.display()))
        .arg(root));
    assert!(tree(&root_out) == tree(files), "root files differ after install");
    fs::remove_dir_all(&root_out).unwrap();
}

fn root_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("etc/fstab", b"UUID=x / ext4 defaults 0 1\n".to_vec()),
        ("usr/lib/blob-a", pattern(31, 50 * 1024 * 1024 + 7)),
        ("usr/lib/blob-b", pattern(32, 50 * 1024 * 1024)),
        ("usr/lib/blob-c", pattern(33, 50 * 1024 * 1024 + 4095)),
        ("usr/share/doc/text", text(34, 60 * 1024 * 1024)),
    ]
}

#[test]
fn last_partition_to_the_disk_end_packs_and_installs_onto_a_smaller_disk() {
    let name = "last_partition_to_the_disk_end_packs_and_installs_onto_a_smaller_disk";
    if !tools_present(name, TOOLS) {
        return;
    }
    // 2 GiB + 3 sectors: the root partition, `sgdisk -n 2:0:0`, ends at the last usable sector and
    // its size is a multiple of 512 but not of 4096.
    let disk_bytes = 2048 * MIB + 3 * 512;
    let r = reference(disk_bytes, true, "0:0", 4096, &root_files());
    assert_ne!(
        r.root_part.1 % 4096,
        0,
        "the test needs a partition that is not 4 KiB-sized"
    );
    let summary = pack(&r.disk, &r.image, &image_key(), &pack_options()).unwrap();
    let image = open_image(&r.image);
    let m = image.manifest().clone();
    drop(image);
    // The minimum target follows the data (about 210 MB of files and a 300 MiB ESP), not the 2 GiB disk.
    assert!(
        m.image.min_disk_bytes < 1024 * MIB,
        "min_disk_bytes {} follows the reference disk, not the data",
        m.image.min_disk_bytes
    );
    assert!(summary.data_bytes < 400 * MIB, "{summary:?}");
    // The reference disk is left as it was: its root still spans the whole partition.
    let original = extract(&r.disk, r.root_part.0, r.root_part.1, &r.dir.path().join("original.fs"));
    assert_eq!(
        dumpe2fs_field(&original, "Block count:") * 4096,
        r.root_part.1 / 4096 * 4096
    );
    fs::remove_file(&original).unwrap();
    // The root was shrunk (on a copy) to a size that follows its data; the ESP's FAT ends inside
    // its partition and the rest is recorded as lying past the filesystem.
    let root = &m.partitions[1];
    assert_eq!(root.filesystem, Filesystem::Ext4);
    assert!(
        root.grow && root.size_bytes < 600 * MIB,
        "root size {}",
        root.size_bytes
    );
    assert_eq!(root.fs_block_size, Some(4096));
    let covered: u64 = root.extents.iter().map(|e| e.length).sum();
    assert_eq!(Some(covered), root.fs_bytes);
    let esp = &m.partitions[0];
    assert_eq!(esp.size_bytes, 300 * MIB);
    assert!(esp.fs_bytes.unwrap() <= esp.size_bytes);
    assert!(root.extents.iter().any(|e| e.kind == ExtentKind::Skip));
    for sector in [512u32, 4096] {
        let dir = temp_dir();
        let path = dir.path().join(format!("target-{sector}.raw"));
        let size = 1024 * MIB;
        let target = target_file(&path, size, sector);
        let mut image = open_image(&r.image);
        install::install(&mut image, &target, &test_options(), &|_| {}).unwrap();
        drop(target);
        let ss = u64::from(sector);
        let parts = check_gpt(&read_range(&path), size, ss);
        assert_eq!(parts.len(), 2);
        let (start, end) = (parts[1].0 * ss, (parts[1].1 + 1) * ss);
        assert_eq!(
            parts[1].1,
            size / ss - 1 - 128 * 128 / ss - 1,
            "root ends at the last usable LBA"
        );
        let grown = grow_installed(&path, start, end, Filesystem::Ext4);
        let root = extract(&path, start, end - start, &dir.path().join("root.part"));
        check_root(&root, &r.root_files, dir.path());
        if grown {
            assert_eq!(
                dumpe2fs_field(&root, "Block count:") * 4096,
                (end - start) / 4096 * 4096,
                "the root filesystem fills its partition after install"
            );
        }
    }
}

#[test]
fn ext4_with_1k_blocks_is_refused_on_4kn_before_anything_is_written() {
    let name = "ext4_with_1k_blocks_is_refused_on_4kn_before_anything_is_written";
    if !tools_present(name, TOOLS) {
        return;
    }
    let files = vec![
        ("etc/hostname", b"small\n".to_vec()),
        ("data", pattern(41, 3 * 1024 * 1024)),
    ];
    let r = reference(80 * MIB, false, "1M:+64M", 1024, &files);
    pack(&r.disk, &r.image, &image_key(), &pack_options()).unwrap();
    let dir = temp_dir();
    let path = dir.path().join("target-4kn.raw");
    let size = 128 * MIB;
    let target = target_file(&path, size, 4096);
    let mut image = open_image(&r.image);
    let err = install::install(&mut image, &target, &test_options(), &|_| {}).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, InstallError::Refused(_)), "{text}");
    assert!(
        text.contains("1024-byte blocks") && text.contains("mkfs.ext4 -b 4096"),
        "the refusal says why and what to do: {text}"
    );
    drop(target);
    let bytes = fs::read(&path).unwrap();
    assert!(
        lapterop_osimage::pack::is_zero(&bytes),
        "the refused target was written to"
    );
    // The same image goes onto a 512-byte-sector disk.
    let path = dir.path().join("target-512.raw");
    let target = target_file(&path, size, 512);
    let mut image = open_image(&r.image);
    install::install(&mut image, &target, &test_options(), &|_| {}).unwrap();
    drop(target);
    let parts = check_gpt(&read_range(&path), size, 512);
    let root = extract(
        &path,
        parts[0].0 * 512,
        (parts[0].1 + 1 - parts[0].0) * 512,
        &dir.path().join("root.part"),
    );
    check_root(&root, &r.root_files, dir.path());
}

/// A reference root whose `/etc/machine-id` holds an id: the image still packs, and the summary warns
/// that every laptop would share it, naming the id and the fix; an empty machine-id (as the lead
/// guide asks) and systemd's `uninitialized` give no warning.
#[test]
fn a_reference_root_with_a_machine_id_is_packed_with_a_warning() {
    let name = "a_reference_root_with_a_machine_id_is_packed_with_a_warning";
    if !tools_present(name, TOOLS) {
        return;
    }
    let id = "4f1c0e2a9b7d4e6f8a0b1c2d3e4f5a6b";
    for (content, warned) in [
        (format!("{id}\n"), true),
        (String::new(), false),
        ("uninitialized\n".into(), false),
    ] {
        let files = [
            ("etc/fstab", b"UUID=x / ext4 defaults 0 1\n".to_vec()),
            ("etc/machine-id", content.clone().into_bytes()),
        ];
        let r = reference(96 * MIB, false, "0:0", 4096, &files);
        let summary = pack(&r.disk, &r.image, &image_key(), &pack_options()).unwrap();
        if warned {
            assert_eq!(summary.warnings.len(), 1, "{summary:?}");
            let w = &summary.warnings[0];
            assert!(
                w.contains("partition 1") && w.contains(id) && w.contains("truncate -s 0 /etc/machine-id"),
                "{w}"
            );
        } else {
            assert!(summary.warnings.is_empty(), "{content:?}: {:?}", summary.warnings);
        }
    }
}
