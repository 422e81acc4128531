//! The golden fixture pins the format byte for byte; the synthetic disk round-trips exactly.

use std::fs::{self, File};
use std::path::Path;

use lapterop_osimage::format::{ExtentKind, Header, HEADER_LEN};
use lapterop_osimage::install::{self, InstallError, Target};
use lapterop_osimage::{inspect, pack, Image, SeekSource};

use crate::common::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden.osimg");
const FIXTURE_MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden-manifest.json");

/// Packs the synthetic disk with `threads` threads and returns the image bytes.
pub fn golden_bytes(dir: &Path, threads: usize) -> Vec<u8> {
    let disk = dir.join(format!("synthetic-{threads}.raw"));
    write_file(&disk, &synthetic_disk());
    let out = dir.join(format!("golden-{threads}.osimg"));
    let mut opts = pack_options();
    opts.threads = threads;
    opts.keep_partition_guids = true;
    pack(&disk, &out, &image_key(), &opts).unwrap();
    fs::read(&out).unwrap()
}

#[test]
fn golden_fixture_is_reproduced_byte_for_byte() {
    let dir = temp_dir();
    let bytes = golden_bytes(dir.path(), 2);
    assert_eq!(bytes, golden_bytes(dir.path(), 1), "output depends on the thread count");
    let header = Header::decode(&bytes).unwrap();
    let manifest_bytes = &bytes[HEADER_LEN..HEADER_LEN + header.manifest_len as usize];
    let pretty = serde_json::to_string_pretty(&serde_json::from_slice::<serde_json::Value>(manifest_bytes).unwrap())
        .unwrap()
        + "\n";
    if std::env::var("LAPTEROP_UPDATE_GOLDEN").as_deref() == Ok("1") {
        fs::write(FIXTURE, &bytes).unwrap();
        fs::write(FIXTURE_MANIFEST, &pretty).unwrap();
    }
    assert_eq!(
        pretty,
        fs::read_to_string(FIXTURE_MANIFEST).unwrap(),
        "manifest differs from the fixture (LAPTEROP_UPDATE_GOLDEN=1 to update, with the spec)"
    );
    assert!(
        bytes == fs::read(FIXTURE).unwrap(),
        "image bytes differ from the fixture"
    );
}

#[test]
fn golden_fixture_opens_and_verifies() {
    let mut image = Image::open(SeekSource(File::open(FIXTURE).unwrap()), &image_key().verifying_key()).unwrap();
    let m = image.manifest().clone();
    assert_eq!(m.partitions.len(), 2);
    assert_eq!(m.partitions[0].label, "alpha");
    assert_eq!(m.partitions[0].partition_guid, "21212121-2121-2121-2121-212121212121");
    assert!(m.partitions[1].grow && !m.partitions[0].grow);
    // alpha: 1 MiB data (one chunk), 256 KiB zero, 4 KiB data, 764 KiB zero; nothing is skipped
    // in an unknown filesystem.
    let kinds: Vec<(ExtentKind, u64)> = m.partitions[0].extents.iter().map(|e| (e.kind, e.length)).collect();
    assert_eq!(
        kinds,
        vec![
            (ExtentKind::Data, MIB),
            (ExtentKind::Zero, 262_144),
            (ExtentKind::Data, 4096),
            (ExtentKind::Zero, 2 * MIB - MIB - 262_144 - 4096 + MIB)
        ]
    );
    let beta: Vec<(ExtentKind, u64)> = m.partitions[1].extents.iter().map(|e| (e.kind, e.length)).collect();
    assert_eq!(
        beta,
        vec![
            (ExtentKind::Data, 4 * MIB),
            (ExtentKind::Data, MIB / 2),
            (ExtentKind::Zero, MIB + MIB / 2)
        ]
    );
    assert_eq!(m.bytes_of(ExtentKind::Skip), 0);
    let summary = image.verify().unwrap();
    assert_eq!(summary.frames, 4);
    let text = inspect(&m, image.signer_key_id());
    assert!(text.contains("lapterop-test 1.0") && text.contains(&m.root), "{text}");
}

#[test]
fn synthetic_disk_round_trips_onto_a_larger_512_target() {
    let dir = temp_dir();
    let disk = synthetic_disk();
    let mut image = Image::open(SeekSource(File::open(FIXTURE).unwrap()), &image_key().verifying_key()).unwrap();
    let path = dir.path().join("target.raw");
    let target = target_file(&path, 16 * MIB, 512);
    let report = install::install(&mut image, &target, &test_options(), &|_| {}).unwrap();
    assert_eq!(report.chunks_verified, 4);
    assert_eq!(report.root_hash, image.manifest().root);
    let parts = check_gpt(&read_range(&path), 16 * MIB, 512);
    assert_eq!(parts[0], (2048, 4 * MIB / 512 - 1, "alpha".to_string()));
    assert_eq!(parts[1].0, 4 * MIB / 512);
    assert_eq!(parts[1].1, 16 * MIB / 512 - 34, "beta grows to the last usable LBA");
    let mut got = vec![0u8; 3 * MIB as usize];
    target.read_at(MIB, &mut got).unwrap();
    assert!(got == disk[MIB as usize..4 * MIB as usize], "alpha differs");
    let mut got = vec![0u8; 6 * MIB as usize];
    target.read_at(4 * MIB, &mut got).unwrap();
    assert!(got == disk[4 * MIB as usize..10 * MIB as usize], "beta differs");
}

#[test]
fn unknown_filesystem_is_refused_on_4096_sectors_without_writing() {
    let dir = temp_dir();
    let mut image = Image::open(SeekSource(File::open(FIXTURE).unwrap()), &image_key().verifying_key()).unwrap();
    let path = dir.path().join("target.raw");
    fs::write(&path, vec![0xA5u8; 16 * MIB as usize]).unwrap();
    let target =
        lapterop_osimage::FileTarget::new(fs::OpenOptions::new().read(true).write(true).open(&path).unwrap(), 4096)
            .unwrap();
    let err = install::install(&mut image, &target, &test_options(), &|_| {}).unwrap_err();
    assert!(matches!(err, InstallError::Refused(_)), "{err}");
    assert!(
        fs::read(&path).unwrap().iter().all(|b| *b == 0xA5),
        "a refused install wrote to the target"
    );
    let small = dir.path().join("small.raw");
    let target = target_file(&small, 10 * MIB, 512);
    let err = install::install(&mut image, &target, &test_options(), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("needs at least"), "{err}");
}
