//! A Windows-like NTFS reference disk (made with ntfs-3g's `mkntfs`, files copied in with `ntfscp`,
//! no Windows needed): the packer skips the clusters `$Bitmap` calls free and shrinks the volume on
//! a copy, so the image follows the used clusters; it installs onto a smaller disk, is grown there
//! with `ntfsresize`, and `ntfsfix -n`/`ntfsinfo` find it consistent with every file intact.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::process::Command;

use lapterop_osimage::alloc::NtfsGeometry;
use lapterop_osimage::format::{ExtentKind, Filesystem};
use lapterop_osimage::{install, pack, Image, SeekSource};

use crate::common::*;
use crate::disks::place;
use crate::leads::{grow_installed, sgdisk_range};

const TOOLS: &[&str] = &[
    "mkntfs",
    "ntfscp",
    "ntfscat",
    "ntfsfix",
    "ntfsinfo",
    "ntfsresize",
    "sgdisk",
];

#[test]
fn ntfs_packs_by_its_bitmap_and_installs_onto_a_smaller_disk() {
    let name = "ntfs_packs_by_its_bitmap_and_installs_onto_a_smaller_disk";
    if !tools_present(name, TOOLS) {
        return;
    }
    let dir = temp_dir();
    let d = dir.path();
    // 2 GiB disk, one "Basic data" partition to the last usable sector (what Windows Setup makes last).
    let disk = d.join("windows.raw");
    File::create(&disk).unwrap().set_len(2048 * MIB + 7 * 512).unwrap();
    run(Command::new("sgdisk")
        .args(["-n", "1:1M:0", "-t", "1:0700", "-c", "1:Basic data partition"])
        .arg(&disk));
    let (first, last) = sgdisk_range(&disk, 1);
    let part_len = (last + 1 - first) * 512;
    let vol = d.join("c.ntfs");
    File::create(&vol).unwrap().set_len(part_len).unwrap();
    run(Command::new("mkntfs")
        .args([
            "-F",
            "-Q",
            "-q",
            "-s",
            "512",
            "-c",
            "4096",
            "-L",
            "Windows",
            "-p",
            &first.to_string(),
        ])
        .arg(&vol));
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("bootmgr", pattern(51, 400_000)),
        ("pagefile-like.bin", pattern(52, 90 * 1024 * 1024 + 123)),
        ("setup.log", text(53, 30 * 1024 * 1024)),
        ("driver.sys", pattern(54, 40 * 1024 * 1024)),
    ];
    let used: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    for (n, bytes) in &files {
        let src = d.join(n);
        fs::write(&src, bytes).unwrap();
        run(Command::new("ntfscp").arg("-f").arg(&vol).arg(&src).arg(n));
        fs::remove_file(&src).unwrap();
    }
    let out = fs::OpenOptions::new().write(true).open(&disk).unwrap();
    place(&vol, &out, first * 512);
    drop(out);
    fs::remove_file(&vol).unwrap();

    let image = d.join("windows.osimg");
    let summary = pack(&disk, &image, &image_key(), &pack_options()).unwrap();
    let m = Image::open(SeekSource(File::open(&image).unwrap()), &image_key().verifying_key())
        .unwrap()
        .manifest()
        .clone();
    let p = &m.partitions[0];
    assert_eq!(p.filesystem, Filesystem::Ntfs);
    assert_eq!((p.fs_block_size, p.fs_sector_size), (Some(4096), Some(512)));
    // The image follows the used clusters: the files, plus NTFS metadata (MFT, log file) that is in
    // use; free clusters are skipped and the volume was shrunk (on a copy) far below 2 GiB.
    assert!(
        summary.data_bytes >= used && summary.data_bytes + summary.zero_bytes < used + 96 * MIB,
        "{summary:?}, files {used}"
    );
    assert!(
        p.extents.iter().any(|e| e.kind == ExtentKind::Skip),
        "no free cluster skipped"
    );
    assert!(
        p.size_bytes < 600 * MIB && m.image.min_disk_bytes < 700 * MIB,
        "{}",
        p.size_bytes
    );
    assert!(summary.file_bytes < used + 32 * MIB, "{summary:?}");

    let target = d.join("smaller.raw");
    let size = 1024 * MIB;
    let t = target_file(&target, size, 512);
    let mut img = Image::open(SeekSource(File::open(&image).unwrap()), &image_key().verifying_key()).unwrap();
    install::install(&mut img, &t, &test_options(), &|_| {}).unwrap();
    drop(t);
    let parts = check_gpt(&read_range(&target), size, 512);
    let (start, end) = (parts[0].0 * 512, (parts[0].1 + 1) * 512);
    let grown = grow_installed(&target, start, end, Filesystem::Ntfs);
    let part = extract(&target, start, end - start, &d.join("installed.ntfs"));
    let mut bs = [0u8; 512];
    File::open(&part).unwrap().read_exact_at(&mut bs, 0).unwrap();
    let g = NtfsGeometry::parse(&bs).unwrap();
    if grown {
        assert!(
            g.volume_bytes() <= end - start && g.volume_bytes() + g.cluster_bytes > end - start,
            "the volume ({}) fills its partition ({})",
            g.volume_bytes(),
            end - start
        );
    }
    run(Command::new("ntfsfix").arg("-n").arg(&part));
    // ntfsresize marks a resized volume for a consistency check at its next Windows boot (chkdsk runs
    // once): ntfsinfo then needs --force to read it.
    let info = run(Command::new("ntfsinfo").args(["--force", "-m"]).arg(&part));
    assert!(info.contains("Windows"), "{info}");
    for (n, bytes) in &files {
        let got = Command::new("ntfscat")
            .arg("--force")
            .arg(&part)
            .arg(n)
            .output()
            .unwrap();
        assert!(
            got.status.success(),
            "ntfscat {n}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert!(got.stdout == *bytes, "{n} differs after install");
    }
}
