//! Integration tests of `lapterop-agent install` and `install_onto` on real loop devices (root only):
//! from a file and from an HTTP server on 127.0.0.1 that drops connections, answers 503 and flips
//! bytes; tampered images; ext4 and FAT32 partitions read back with independent tools (debugfs,
//! mtools, sgdisk, blkid).

// A failed setup step should stop the test with its message; helpers panic like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use lapterop_agent::disk::{self, Discovery, SafetyConfig};
use lapterop_agent::install::install_onto;
use lapterop_certificate::model::{InstallRecord, InstallStatus};
use lapterop_certificate::VerifyingKey;
use lapterop_osimage::format::{ExtentKind, Manifest};
use lapterop_osimage::InstallOptions;

mod support;

use support::httpd::{Fault, Script, Served, Server};
use support::osimage::{ext4_files, noise, Reference};
use support::{agent, ok, root, run, Loop, MIB};

/// The installed partition equals the source filesystem in every block the image does not mark
/// `skip`, and its files read back identical through debugfs.
fn check_ext4(r: &Reference, l: &Loop, sector: u32) {
    let start = first_sector(&l.dev) * u64::from(sector);
    let (m, _) = r.manifest();
    same_outside_skips(&m, &r.fs, &l.file, start);
    let p1 = Loop::over(&l.file, start, r.fs_mib * MIB);
    for (name, bytes) in ext4_files() {
        let out = r.work.path().join("dumped");
        ok(Command::new("debugfs")
            .args(["-R", &format!("dump /{name} {}", out.display())])
            .arg(&p1.dev));
        assert!(
            std::fs::read(&out).unwrap() == bytes,
            "{name} differs on {sector}-byte sectors"
        );
    }
}

/// First sector of partition 1, as sgdisk reads it from the device.
fn first_sector(dev: &str) -> u64 {
    let info = ok(Command::new("sgdisk").args(["-i", "1"]).arg(dev));
    info.lines()
        .find_map(|l| l.strip_prefix("First sector: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no first sector in {info}"))
}

/// Every 4 KiB block of partition 1 that is not in a `skip` extent equals the source filesystem's.
fn same_outside_skips(m: &Manifest, source: &Path, disk: &Path, start: u64) {
    let (a, b) = (File::open(source).unwrap(), File::open(disk).unwrap());
    let (mut x, mut y) = (vec![0u8; 4096], vec![0u8; 4096]);
    let extents = m.partitions[0].extents.iter().filter(|e| e.kind != ExtentKind::Skip);
    for e in extents {
        for off in (e.offset..e.offset + e.length).step_by(4096) {
            a.read_exact_at(&mut x, off).unwrap();
            b.read_exact_at(&mut y, start + off).unwrap();
            assert!(x == y, "block at {off} ({:?} extent) differs from the source", e.kind);
        }
    }
}

/// The disk carries no partition table: first and last MiB zero, and blkid finds no table type.
fn no_partition_table(l: &Loop) {
    let f = File::open(&l.file).unwrap();
    let len = f.metadata().unwrap().len();
    let mut buf = vec![0u8; 1 << 20];
    for at in [0, len - MIB] {
        f.read_exact_at(&mut buf, at).unwrap();
        assert!(
            buf.iter().all(|b| *b == 0),
            "the MiB at {at} was not wiped after the failure"
        );
    }
    let out = run(Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "PTTYPE"])
        .arg(&l.dev));
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "blkid still finds a partition table"
    );
}

/// `install_onto` a loop device, claimed the way the agent claims disks.
fn install_url(l: &Loop, location: &str, trusted: &VerifyingKey) -> InstallRecord {
    let found = Discovery::system().find(&l.dev).unwrap();
    let claimed = disk::claim(&found, &SafetyConfig::default()).unwrap();
    install_onto(&claimed, location, trusted, &InstallOptions::default(), None, &|_| {})
}

/// Serves `data` by `script` and installs it from there onto a new 64 MiB loop device with
/// `sector`-byte sectors; the install must succeed. Gives the device, the record and the server log.
fn install_served(r: &Reference, data: Vec<u8>, script: Script, sector: u32) -> (Loop, InstallRecord, Vec<Served>) {
    let server = Server::start(data, script);
    let l = Loop::prepared(64 * MIB, sector, |_| {}, &["--partscan"]);
    let record = install_url(&l, &server.url(), &r.verifying_key());
    let log = server.log();
    assert_eq!(
        record.status,
        InstallStatus::Installed,
        "{:?}\nserver log: {log:#?}",
        record.reason
    );
    (l, record, log)
}

fn install_cli(image: &Path, trust: &Path, dev: &str) -> std::process::Output {
    run(Command::new(agent())
        .args(["install", "--yes", "--image"])
        .arg(image)
        .arg("--trust")
        .arg(trust)
        .arg(dev))
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `lapterop-agent install` onto loop devices with 512- and 4096-byte sectors, larger and smaller than
/// the source disk: the partition reads back identical (blocks and files), `sgdisk -v` finds no
/// problem, and the backup GPT header is at the last LBA. An image signed by another key is refused
/// before anything is written.
#[test]
fn install_writes_the_os_image_onto_loop_devices_of_both_sector_sizes() {
    if !root("install") {
        return;
    }
    let r = Reference::ext4();
    for (sector, size) in [(512u32, 96 * MIB), (4096, 56 * MIB)] {
        let l = Loop::prepared(size, sector, |_| {}, &["--partscan"]);
        let before = std::fs::read(&l.file).unwrap();
        let out = install_cli(&r.image, &r.other, &l.dev);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            std::fs::read(&l.file).unwrap() == before,
            "a refused install wrote to the disk"
        );

        let allocated = |f: &Path| std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(f).unwrap()) * 512;
        let mapped_before = allocated(&l.file);
        let out = install_cli(&r.image, &r.trust, &l.dev);
        assert!(out.status.success(), "install on {sector}-byte sectors: {}", text(&out));
        // The space the image does not use is discarded: the loop driver punches it out of the file.
        let discarded: u64 = text(&out)
            .lines()
            .filter(|l| l.starts_with("installed: "))
            .flat_map(|l| l.split(", "))
            .find_map(|p| p.strip_suffix(" bytes the image does not use discarded"))
            .unwrap_or_else(|| panic!("no discard reported: {}", text(&out)))
            .parse()
            .unwrap();
        let skipped = r.manifest().0.bytes_of(ExtentKind::Skip);
        assert!(discarded >= skipped, "discarded {discarded} of {skipped} skipped bytes");
        // The filesystem under the loop file may take a block or two for its extent tree.
        assert!(
            allocated(&l.file) <= mapped_before - discarded + MIB,
            "the discarded space is still allocated in the loop file: {} of {} bytes before, {discarded} discarded",
            allocated(&l.file),
            mapped_before
        );
        let v = ok(Command::new("sgdisk").arg("-v").arg(&l.dev));
        assert!(v.contains("No problems found"), "sgdisk -v on {sector}: {v}");
        // The backup GPT header ("EFI PART") sits in the very last logical block.
        let disk = std::fs::read(&l.file).unwrap();
        let last = disk.len() - sector as usize;
        assert_eq!(
            &disk[last..last + 8],
            b"EFI PART",
            "backup GPT header at the last LBA ({sector})"
        );
        check_ext4(&r, &l, sector);
    }
}

/// An ext4 with 1 KiB blocks (what `mkfs.ext4` makes below 512 MiB) cannot be mounted on a disk with
/// 4096-byte sectors: `lapterop-agent install` refuses it with exit 2, the reason and what to do,
/// and the disk is byte for byte as before; `install_onto` records it as failed without claiming a
/// wipe. The same image installs onto a 512-byte-sector disk.
#[test]
fn ext4_with_1k_blocks_is_refused_on_a_4kn_disk_before_writing() {
    if !root("install of a 1 KiB-block ext4") {
        return;
    }
    let r = Reference::build(&ext4_files(), 40, "8300", &|dir, fs| {
        ok(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "1024", "-d"])
            .arg(dir)
            .arg(fs));
    });
    let l = Loop::prepared(64 * MIB, 4096, |_| {}, &[]);
    let before = std::fs::read(&l.file).unwrap();
    let out = install_cli(&r.image, &r.trust, &l.dev);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("1024-byte blocks") && said.contains("mkfs.ext4 -b 4096"),
        "{said}"
    );
    assert!(
        std::fs::read(&l.file).unwrap() == before,
        "a refused install wrote to the disk"
    );
    let record = install_url(&l, r.image.to_str().unwrap(), &r.verifying_key());
    assert_eq!(record.status, InstallStatus::Failed);
    let reason = record.reason.unwrap_or_default();
    assert!(
        reason.contains("nothing was written") && !reason.contains("wiped"),
        "{reason}"
    );
    assert!(
        std::fs::read(&l.file).unwrap() == before,
        "a refused install wrote to the disk"
    );
    let l = Loop::prepared(64 * MIB, 512, |_| {}, &["--partscan"]);
    let out = install_cli(&r.image, &r.trust, &l.dev);
    assert!(out.status.success(), "{}", text(&out));
}

/// Over HTTP from 127.0.0.1: the server drops the connection twice in the middle of the stream,
/// answers 503 once and flips a byte of one frame once; the install still ends `installed` and the
/// partition is bit-exact. The log proves each fault happened and that the damaged frame was fetched
/// again with a range of exactly that frame. Then a server without `Range` support, which also drops
/// once: the streaming fallback installs it as well.
#[test]
fn install_over_http_survives_drops_a_503_and_a_damaged_frame() {
    if !root("install over HTTP") {
        return;
    }
    let r = Reference::ext4();
    let data = std::fs::read(&r.image).unwrap();
    let flipped = r.middle_of_a_frame();
    let script = Script {
        ranges: true,
        faults: [
            (0, Fault::DropAfter(MIB + 12345)),
            (1, Fault::Status(503)),
            (2, Fault::DropAfter(MIB)),
        ]
        .into_iter()
        .collect(),
        corrupt_once: Some(flipped),
        corrupt_always: None,
    };
    let (l, record, log) = install_served(&r, data.clone(), script, 4096);
    let (m, data_offset) = r.manifest();
    assert_eq!(record.chunks_verified, m.data_extents().count() as u64);
    assert_eq!(record.root_hash.as_deref(), Some(m.root.as_str()));
    assert_eq!(log.iter().filter(|s| s.dropped).count(), 2, "{log:#?}");
    assert!(log.iter().any(|s| s.status == 503), "{log:#?}");
    let bad = log
        .iter()
        .position(|s| s.corrupted)
        .expect("the damaged frame was never served");
    let (_, frame) = m
        .data_extents()
        .find(|(_, e)| {
            let start = data_offset + e.frame_offset.unwrap();
            (start..start + e.frame_length.unwrap()).contains(&flipped)
        })
        .unwrap();
    let start = data_offset + frame.frame_offset.unwrap();
    let exact = format!("bytes={start}-{}", start + frame.frame_length.unwrap() - 1);
    assert!(
        log[bad + 1..]
            .iter()
            .any(|s| s.range.as_deref() == Some(exact.as_str()) && s.status == 206 && !s.corrupted),
        "the damaged frame was not fetched again with {exact}: {log:#?}"
    );
    check_ext4(&r, &l, 4096);

    // No Range support: everything comes from whole-file answers, a drop restarts from byte 0.
    let script = Script {
        ranges: false,
        faults: [(0, Fault::DropAfter(2 * MIB))].into_iter().collect(),
        ..Script::default()
    };
    let (l, _, log) = install_served(&r, data, script, 512);
    assert!(
        log.iter().all(|s| s.status == 200) && log.iter().any(|s| s.dropped),
        "{log:#?}"
    );
    check_ext4(&r, &l, 512);
}

/// Over HTTP, an image signed by another key and a truncated image are refused before anything is
/// written (the disk is unchanged, byte for byte); a frame that arrives damaged on every fetch stops
/// the install with the partition table wiped. Each gives a `failed` record with the reason.
#[test]
fn install_over_http_fails_cleanly_on_a_bad_key_a_truncated_file_and_a_damaged_frame() {
    if !root("install over HTTP, failures") {
        return;
    }
    let r = Reference::ext4();
    let data = std::fs::read(&r.image).unwrap();
    let l = Loop::prepared(64 * MIB, 512, |_| {}, &["--partscan"]);
    let before = std::fs::read(&l.file).unwrap();

    let other = lapterop_certificate::keys::read_public_key(&r.other).unwrap();
    let server = Server::start(
        data.clone(),
        Script {
            ranges: true,
            ..Script::default()
        },
    );
    let record = install_url(&l, &server.url(), &other);
    assert_eq!(record.status, InstallStatus::Failed);
    let reason = record.reason.unwrap();
    assert!(reason.contains("signature does not verify"), "{reason}");
    assert!(
        std::fs::read(&l.file).unwrap() == before,
        "a refused install wrote to the disk"
    );
    drop(server);

    let short = data[..data.len() - 100_000].to_vec();
    let server = Server::start(
        short,
        Script {
            ranges: true,
            ..Script::default()
        },
    );
    let record = install_url(&l, &server.url(), &r.verifying_key());
    assert_eq!(record.status, InstallStatus::Failed);
    let reason = record.reason.unwrap();
    assert!(reason.contains("truncated"), "{reason}");
    assert!(
        std::fs::read(&l.file).unwrap() == before,
        "a refused install wrote to the disk"
    );
    drop(server);

    let script = Script {
        ranges: true,
        corrupt_always: Some(r.middle_of_a_frame()),
        ..Script::default()
    };
    let server = Server::start(data, script);
    let record = install_url(&l, &server.url(), &r.verifying_key());
    assert_eq!(record.status, InstallStatus::Failed);
    let reason = record.reason.unwrap();
    assert!(
        reason.contains("partition 1") && reason.contains("wiped"),
        "the reason names the extent and the wipe: {reason}"
    );
    // Fetched once by the stream and again by the refetcher, as many times as allowed.
    let served = server.log().iter().filter(|s| s.corrupted).count();
    assert_eq!(served, 1 + InstallOptions::default().refetch_attempts as usize);
    no_partition_table(&l);
}

/// Tampered images through the binary: a flipped manifest byte or another key exit 2 with the disk
/// untouched; a flipped frame byte exits 1 with the partition table wiped (the documented codes).
#[test]
fn tampered_images_are_refused_or_wiped_by_the_binary() {
    if !root("install, tampered images") {
        return;
    }
    let r = Reference::ext4();
    let l = Loop::prepared(64 * MIB, 512, |_| {}, &["--partscan"]);
    let before = std::fs::read(&l.file).unwrap();
    let data = std::fs::read(&r.image).unwrap();
    let (_, data_offset) = r.manifest();
    let tampered = |at: u64| {
        let mut d = data.clone();
        d[usize::try_from(at).unwrap()] ^= 0x01;
        let p = r.work.path().join(format!("tampered-{at}.osimg"));
        std::fs::write(&p, d).unwrap();
        p
    };
    let manifest_byte = tampered(lapterop_osimage::format::HEADER_LEN as u64 + 40);
    for (image, trust, what) in [
        (&manifest_byte, &r.trust, "a flipped manifest byte"),
        (&r.image, &r.other, "another key"),
    ] {
        let out = install_cli(image, trust, &l.dev);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
        assert!(text(&out).contains("nothing was written"), "{what}: {}", text(&out));
        assert!(
            std::fs::read(&l.file).unwrap() == before,
            "{what}: the disk was written"
        );
    }
    assert!(r.middle_of_a_frame() > data_offset);
    let frame_byte = tampered(r.middle_of_a_frame());
    let out = install_cli(&frame_byte, &r.trust, &l.dev);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("FAILED"), "{}", text(&out));
    no_partition_table(&l);
}

/// A FAT32 partition (4 KiB clusters, files in folders, a multi-cluster file) installs onto 512- and
/// 4096-byte-sector loop devices; an offset copy of the installed partition is read back with mtools
/// (`mdir`, `mtype`) and checked by `fsck.vfat`. Free clusters were skipped per the FAT.
#[test]
fn fat32_partition_installs_and_reads_back_with_mtools() {
    if !root("install, FAT32") {
        return;
    }
    let files = vec![
        ("EFI/BOOT/BOOTX64.EFI", noise(700_000, 3)),
        (
            "EFI/debian/grub.cfg",
            b"search --file --set=root /.lapterop\nconfigfile /boot/grub/grub.cfg\n".to_vec(),
        ),
        (
            "LEESMIJ.TXT",
            "Deze laptop is klaar voor school.\n".repeat(2000).into_bytes(),
        ),
    ];
    let r = Reference::build(&files, 260, "EF00", &|dir, fs| {
        ok(Command::new("mkfs.vfat")
            .args(["-F", "32", "-s", "8", "-S", "512", "-n", "ESP"])
            .arg(fs));
        let mut mcopy = Command::new("mcopy");
        mcopy.env("MTOOLS_SKIP_CHECK", "1").args(["-s", "-i"]).arg(fs);
        for entry in std::fs::read_dir(dir).unwrap() {
            mcopy.arg(entry.unwrap().path());
        }
        ok(mcopy.arg("::/"));
    });
    let (m, _) = r.manifest();
    assert!(
        m.partitions[0].extents.iter().any(|e| e.kind == ExtentKind::Skip),
        "free clusters should be skipped"
    );
    for sector in [512u32, 4096] {
        let l = Loop::prepared(300 * MIB, sector, |_| {}, &["--partscan"]);
        let out = install_cli(&r.image, &r.trust, &l.dev);
        assert!(out.status.success(), "install on {sector}-byte sectors: {}", text(&out));
        let start = first_sector(&l.dev) * u64::from(sector);
        let copy = r.work.path().join(format!("esp-{sector}.part"));
        ok(Command::new("dd")
            .arg(format!("if={}", l.file.display()))
            .arg(format!("of={}", copy.display()))
            .args(["iflag=skip_bytes,count_bytes", "bs=1M", "status=none"])
            .arg(format!("skip={start}"))
            .arg(format!("count={}", r.fs_mib * MIB)));
        ok(Command::new("fsck.vfat").arg("-n").arg(&copy));
        let mtools = |args: &[&str]| {
            let out = run(Command::new(args[0])
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(&copy)
                .args(&args[1..]));
            assert!(out.status.success(), "{args:?} on {sector}: {}", text(&out));
            out.stdout
        };
        let listing = String::from_utf8(mtools(&["mdir", "-b", "-/", "::/"])).unwrap();
        for (name, _) in &files {
            assert!(
                listing.contains(&format!("::/{name}")),
                "{name} missing on {sector}: {listing}"
            );
        }
        for (name, bytes) in &files {
            assert!(
                mtools(&["mtype", &format!("::/{name}")]) == *bytes,
                "{name} differs on {sector}"
            );
        }
    }
}

/// A lead's reference disk: an ESP (FAT32, 4 KiB clusters) and an ext4 root whose partition ends at
/// the last usable sector (`sgdisk -n 2:0:0`), packed resizable (the root shrunk on a copy). Gives
/// the work directory, the image and its public key.
fn esp_and_root_reference() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let esp = w.join("esp.fs");
    File::create(&esp).unwrap().set_len(260 * MIB).unwrap();
    ok(Command::new("mkfs.vfat")
        .args(["-F", "32", "-s", "8", "-S", "512", "-n", "ESP"])
        .arg(&esp));
    std::fs::write(w.join("BOOTX64.EFI"), noise(300_000, 5)).unwrap();
    ok(Command::new("mmd")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&esp)
        .args(["::/EFI", "::/EFI/BOOT"]));
    ok(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&esp)
        .arg(w.join("BOOTX64.EFI"))
        .arg("::/EFI/BOOT/BOOTX64.EFI"));
    let dir = w.join("root");
    for (name, bytes) in ext4_files() {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    // 2 MiB + 260 MiB ESP + 200 MiB root: the root ends at the last usable sector, an odd size.
    let src = w.join("reference.raw");
    File::create(&src).unwrap().set_len(462 * MIB + 7 * 512).unwrap();
    ok(Command::new("sgdisk")
        .args(["-n", "1:2048:+260M", "-t", "1:EF00", "-n", "2:0:0", "-t", "2:8304"])
        .arg(&src));
    let info = ok(Command::new("sgdisk").args(["-i", "2"]).arg(&src));
    let sector_of = |key: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let (first, last) = (sector_of("First sector: "), sector_of("Last sector: "));
    let root = w.join("root.fs");
    File::create(&root).unwrap().set_len((last - first + 1) * 512).unwrap();
    ok(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&dir)
        .arg(&root));
    for (fs, at) in [(&esp, 2048u64), (&root, first)] {
        ok(Command::new("dd")
            .arg(format!("if={}", fs.display()))
            .arg(format!("of={}", src.display()))
            .args(["bs=512", "conv=notrunc,sparse", "status=none"])
            .arg(format!("seek={at}")));
    }
    let key = lapterop_certificate::keys::fixture_key("install test image key");
    let image = w.join("debian.osimg");
    let mut opts = lapterop_osimage::pack::PackOptions::new("pupil-debian", "2026.12");
    opts.level = 3;
    lapterop_osimage::pack::pack(&src, &image, &key, &opts).unwrap();
    let public = w.join("image");
    lapterop_certificate::keys::write_keypair(&public, &key).unwrap();
    (work, image, public.with_extension("pub"))
}

/// `sgdisk -i N` first and last sector of partition `n` on `dev`.
fn partition_span(dev: &str, n: u32) -> (u64, u64) {
    let info = ok(Command::new("sgdisk").args(["-i", &n.to_string()]).arg(dev));
    let get = |key: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {info}"))
    };
    (get("First sector: "), get("Last sector: "))
}

/// Installing a resizable image (ESP + ext4 root, the root shrunk at pack) onto a smaller 4Kn disk and
/// a larger 512-byte disk: the root partition ends at the last usable LBA, `resize2fs` grew the
/// filesystem to the partition (its superblock says so, the record says so) and `e2fsck -fn` finds
/// it clean with the files intact; `lapterop/machine.json` on the ESP carries the certificate id,
/// serial and the hostname pattern applied. When the grow fails (a `resize2fs` that exits 1, put first
/// on PATH: failure injection at the tool), the install exits 1, says so, and the partition table is
/// wiped: never a false "installed".
#[test]
fn install_grows_the_root_and_writes_machine_json() {
    if !root("install, grow and machine.json") {
        return;
    }
    let (work, image, trust) = esp_and_root_reference();
    for (sector, size) in [(512u32, 700 * MIB), (4096, 400 * MIB)] {
        let l = Loop::prepared(size, sector, |_| {}, &["--partscan"]);
        let out = run(Command::new(agent())
            .args(["install", "--yes", "--image"])
            .arg(&image)
            .arg("--trust")
            .arg(&trust)
            .args([
                "--hostname",
                "leuven-{serial}",
                "--serial",
                "5CG 1234/XY",
                "--certificate-id",
            ])
            .arg("019abc12-3456-7def-8123-456789abcdef")
            .arg(&l.dev));
        let said = text(&out);
        assert!(out.status.success(), "install on {sector}: {said}");
        assert!(said.contains("grown: partition 2 (ext4)"), "{said}");
        assert!(said.contains("hostname leuven-5cg-1234-xy"), "{said}");
        let v = ok(Command::new("sgdisk").arg("-v").arg(&l.dev));
        assert!(v.contains("No problems found"), "sgdisk -v on {sector}: {v}");
        let ss = u64::from(sector);
        let lbas = size / ss;
        let last_usable = lbas - 1 - 16384 / ss - 1;
        let (first, last) = partition_span(&l.dev, 2);
        assert_eq!(last, last_usable, "the root reaches the end of the {sector}-byte disk");
        let part_bytes = (last - first + 1) * ss;
        let root = Loop::over(&l.file, first * ss, part_bytes);
        ok(Command::new("e2fsck").args(["-f", "-n"]).arg(&root.dev));
        let dumpe2fs = ok(Command::new("dumpe2fs").arg("-h").arg(&root.dev));
        let field = |k: &str| -> u64 {
            dumpe2fs
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {k}"))
        };
        let fs_bytes = field("Block count:") * field("Block size:");
        assert!(
            fs_bytes <= part_bytes && part_bytes - fs_bytes < 4096,
            "ext4 {fs_bytes} bytes in a {part_bytes}-byte partition on {sector}"
        );
        for (name, bytes) in ext4_files() {
            let dumped = work.path().join("dumped");
            ok(Command::new("debugfs")
                .args(["-R", &format!("dump /{name} {}", dumped.display())])
                .arg(&root.dev));
            assert!(std::fs::read(&dumped).unwrap() == bytes, "{name} on {sector}");
        }
        drop(root);
        let (efirst, elast) = partition_span(&l.dev, 1);
        let esp = work.path().join(format!("esp-{sector}.fs"));
        ok(Command::new("dd")
            .arg(format!("if={}", l.file.display()))
            .arg(format!("of={}", esp.display()))
            .args(["iflag=skip_bytes,count_bytes", "bs=1M", "status=none"])
            .arg(format!("skip={}", efirst * ss))
            .arg(format!("count={}", (elast - efirst + 1) * ss)));
        let fsck = run(Command::new("fsck.vfat").arg("-n").arg(&esp));
        assert!(
            fsck.status.success(),
            "fsck.vfat -n of the ESP on {sector}: {}",
            text(&fsck)
        );
        let json = ok(Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&esp)
            .arg("::/lapterop/machine.json"));
        let m: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(m["schema"], "lapterop-machine/1", "{json}");
        assert_eq!(m["certificate_id"], "019abc12-3456-7def-8123-456789abcdef");
        assert_eq!(m["serial"], "5CG 1234/XY");
        assert_eq!(m["hostname"], "leuven-5cg-1234-xy");
        assert_eq!(m["image"], "pupil-debian 2026.12");
    }

    // A grow that fails: exit 1, the reason, and no partition table left to boot from.
    let fake = work.path().join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    let tool = fake.join("resize2fs");
    std::fs::write(&tool, "#!/bin/sh\necho 'resize2fs: injected failure' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let l = Loop::prepared(700 * MIB, 512, |_| {}, &["--partscan"]);
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    let out = run(Command::new(agent())
        .env("PATH", path)
        .args(["install", "--yes", "--image"])
        .arg(&image)
        .arg("--trust")
        .arg(&trust)
        .arg(&l.dev));
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("growing the installed filesystem of partition 2 failed") && said.contains("injected failure"),
        "{said}"
    );
    assert!(!said.contains("installed:"), "{said}");
    no_partition_table(&l);
}
