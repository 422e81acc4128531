//! Tampered, truncated and foreign-signed images: refused before any write, or stopped with the
//! partition table area wiped and the failing extent named.

use std::fs;
use std::io::Cursor;

use lapterop_certificate::keys;
use lapterop_osimage::format::{ExtentKind, Header, HeaderError, FORMAT_VERSION, HEADER_LEN, SIGNING_PREFIX};
use lapterop_osimage::install::{self, InstallError, Target};
use lapterop_osimage::{Image, ReadError, SeekSource};

use crate::common::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden.osimg");

fn golden() -> Vec<u8> {
    fs::read(FIXTURE).unwrap()
}

fn open(bytes: &[u8]) -> Result<Image<SeekSource<Cursor<Vec<u8>>>>, ReadError> {
    Image::open(SeekSource(Cursor::new(bytes.to_vec())), &image_key().verifying_key())
}

/// Splits an image into header, manifest, signature block and frames.
fn split(bytes: &[u8]) -> (Header, Vec<u8>, Vec<u8>, Vec<u8>) {
    let h = Header::decode(bytes).unwrap();
    let m_end = HEADER_LEN + h.manifest_len as usize;
    let d = h.data_offset() as usize;
    (
        h,
        bytes[HEADER_LEN..m_end].to_vec(),
        bytes[m_end..d].to_vec(),
        bytes[d..].to_vec(),
    )
}

fn assemble(manifest: &[u8], signature: &[u8], frames: &[u8]) -> Vec<u8> {
    let h = Header {
        version: FORMAT_VERSION,
        manifest_len: manifest.len() as u64,
        signature_len: signature.len() as u64,
        data_len: frames.len() as u64,
    };
    [&h.encode()[..], manifest, signature, frames].concat()
}

fn sign(key: &ed25519_dalek::SigningKey, manifest: &[u8]) -> Vec<u8> {
    let input = [SIGNING_PREFIX, manifest].concat();
    serde_json::to_vec(&keys::sign_bytes(key, &input)).unwrap()
}

#[test]
fn reassembling_the_fixture_gives_the_same_bytes() {
    // Guards the helpers below: without tampering they reproduce a valid image.
    let bytes = golden();
    let (_, m, s, f) = split(&bytes);
    assert_eq!(assemble(&m, &s, &f), bytes);
    assert!(open(&bytes).is_ok());
}

#[test]
fn manifest_signed_by_another_key_is_refused() {
    let (_, m, _, f) = split(&golden());
    let foreign = assemble(&m, &sign(&other_key(), &m), &f);
    let err = open(&foreign).unwrap_err();
    assert!(
        matches!(err, ReadError::Signature(keys::SignatureError::WrongKey { .. })),
        "{err}"
    );
    // The same image opens with the other key: the refusal is about the key, not the bytes.
    assert!(Image::open(SeekSource(Cursor::new(foreign)), &other_key().verifying_key()).is_ok());
    // Another key's signature presented under the trusted key id: the signature does not match.
    let mut block: serde_json::Value = serde_json::from_slice(&sign(&other_key(), &m)).unwrap();
    block["key_id"] = keys::key_id(&image_key().verifying_key()).into();
    let forged = assemble(&m, &serde_json::to_vec(&block).unwrap(), &f);
    let err = open(&forged).unwrap_err();
    assert!(
        matches!(err, ReadError::Signature(keys::SignatureError::Mismatch)),
        "{err}"
    );
}

#[test]
fn a_changed_manifest_is_refused_even_when_re_signed_with_a_wrong_root() {
    let (_, m, _, f) = split(&golden());
    let mut v: serde_json::Value = serde_json::from_slice(&m).unwrap();
    v["image"]["version"] = "9.9".into();
    let changed = serde_json::to_vec(&v).unwrap();
    // Signed by the trusted key but the root hash no longer names the content.
    let err = open(&assemble(&changed, &sign(&image_key(), &changed), &f)).unwrap_err();
    assert!(matches!(err, ReadError::Root { .. }), "{err}");
    // An unknown member is refused (deny_unknown_fields), whatever the signature.
    v["image"]["extra"] = 1.into();
    v["root"] = lapterop_osimage::format::root_hash(&v).unwrap().into();
    let extra = serde_json::to_vec(&v).unwrap();
    let err = open(&assemble(&extra, &sign(&image_key(), &extra), &f)).unwrap_err();
    assert!(matches!(err, ReadError::ManifestJson(_)), "{err}");
}

#[test]
fn every_flipped_byte_before_the_frames_is_refused() {
    let bytes = golden();
    let h = Header::decode(&bytes).unwrap();
    for i in 0..h.data_offset() as usize {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        assert!(open(&t).is_err(), "flipping byte {i} was not noticed");
    }
}

#[test]
fn other_format_versions_are_refused() {
    let bytes = golden();
    let with_version = |v: u8| {
        let mut t = bytes.clone();
        t[8] = v;
        let sum = blake3::hash(&t[0..56]);
        t[56..64].copy_from_slice(&sum.as_bytes()[0..8]);
        t
    };
    let err = open(&with_version(3)).unwrap_err();
    assert!(matches!(err, ReadError::Header(HeaderError::Version(3))), "{err}");
    assert!(err.to_string().contains("reads versions 1 and 2"), "{err}");
    // A version 2 manifest under a version 1 header: the manifest's format must match the header.
    let err = open(&with_version(1)).unwrap_err();
    assert!(matches!(err, ReadError::Manifest(_)), "{err}");
}

#[test]
fn a_version_1_image_still_opens_and_installs() {
    let v1 = fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden-v1.osimg")).unwrap();
    assert_eq!(Header::decode(&v1).unwrap().version, 1);
    let mut image = open(&v1).unwrap();
    let m = image.manifest().clone();
    assert_eq!(m.format, 1);
    assert!(m
        .partitions
        .iter()
        .all(|p| p.fs_bytes.is_none() && p.fs_block_size.is_none()));
    let dir = temp_dir();
    let path = dir.path().join("target.raw");
    let target = target_file(&path, 64 * MIB, 512);
    let report = install::install(&mut image, &target, &test_options(), &|_| {}).unwrap();
    assert_eq!(report.chunks_verified, m.data_extents().count() as u64);
    // Version 1 rules stay: 512-byte sizes and the version 2 members are refused under format 1.
    let (_, manifest, _, frames) = split(&v1);
    let mut value: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    value["partitions"][0]["fs_bytes"] = 4096.into();
    let parsed: lapterop_osimage::Manifest = serde_json::from_value(value).unwrap();
    let err = parsed.check_version(frames.len() as u64, 1).unwrap_err();
    assert!(err.to_string().contains("version 2 members"), "{err}");
}

#[test]
fn truncation_at_any_byte_is_refused() {
    let bytes = golden();
    let head = Header::decode(&bytes).unwrap().data_offset() as usize;
    // Every byte through the manifest and signature and the first frame bytes, then a stride through
    // the frames, and the last bytes.
    let cuts = (0..head + 64)
        .chain((head + 64..bytes.len()).step_by(509))
        .chain(bytes.len() - 16..bytes.len());
    for len in cuts {
        let err = open(&bytes[..len])
            .err()
            .unwrap_or_else(|| panic!("truncated to {len} bytes but accepted"));
        if len >= head {
            assert!(matches!(err, ReadError::Truncated { .. }), "{len}: {err}");
        }
    }
    // The parser of the bytes before the frames never panics on any prefix either.
    for len in 0..head {
        assert!(lapterop_osimage::reader::open_bytes(&bytes[..len], &image_key().verifying_key(), None).is_err());
    }
}

#[test]
fn a_flipped_byte_in_any_frame_is_named_by_verify() {
    let bytes = golden();
    let h = Header::decode(&bytes).unwrap();
    let m = open(&bytes).unwrap().manifest().clone();
    let extents: Vec<_> = m.extents_of(ExtentKind::Data).map(|(r, e)| (r, e.clone())).collect();
    assert_eq!(extents.len(), 4);
    for (r, e) in extents {
        for at in [0, e.frame_length.unwrap() / 2, e.frame_length.unwrap() - 1] {
            let mut t = bytes.clone();
            t[(h.data_offset() + e.frame_offset.unwrap() + at) as usize] ^= 0x40;
            let err = open(&t).unwrap().verify().unwrap_err();
            match &err {
                ReadError::Hash { extent, .. } | ReadError::Decode { extent, .. } => assert_eq!(extent, &r, "{err}"),
                other => panic!("unexpected error {other}"),
            }
            assert!(err.to_string().contains(&format!("extent {}", r.extent)), "{err}");
        }
    }
}

#[test]
fn a_frame_failing_during_install_wipes_the_table_and_names_the_extent() {
    let bytes = golden();
    let h = Header::decode(&bytes).unwrap();
    let m = open(&bytes).unwrap().manifest().clone();
    let (r, e) = m
        .extents_of(ExtentKind::Data)
        .last()
        .map(|(r, e)| (r, e.clone()))
        .unwrap();
    let mut t = bytes.clone();
    t[(h.data_offset() + e.frame_offset.unwrap() + e.frame_length.unwrap() / 2) as usize] ^= 0x40;
    let dir = temp_dir();
    let path = dir.path().join("target.raw");
    let size = 16 * MIB;
    fs::write(&path, vec![0x5Au8; size as usize]).unwrap();
    let target =
        lapterop_osimage::FileTarget::new(fs::OpenOptions::new().read(true).write(true).open(&path).unwrap(), 512)
            .unwrap();
    let mut image = open(&t).unwrap();
    let err = install::install(&mut image, &target, &test_options(), &|_| {}).unwrap_err();
    match &err {
        InstallError::Failed {
            extent: Some(failed), ..
        } => assert_eq!(failed, &r),
        other => panic!("unexpected error {other}"),
    }
    assert!(
        err.to_string().contains("partition 2") && err.to_string().contains("wiped"),
        "{err}"
    );
    let mut first = vec![0u8; MIB as usize];
    target.read_at(0, &mut first).unwrap();
    let mut last = vec![0u8; MIB as usize];
    target.read_at(size - MIB, &mut last).unwrap();
    // The target was 0x5A everywhere: zeros here mean the install wrote, failed, and wiped again.
    assert!(
        first.iter().chain(&last).all(|b| *b == 0),
        "partition table area not wiped after the failure"
    );
}

/// A source that corrupts every read overlapping `bad` (absolute file offset) for its first
/// `corrupt_reads` such reads, counted across itself and its refetchers (a flaky link).
struct Flaky {
    bytes: std::sync::Arc<Vec<u8>>,
    bad: u64,
    remaining: std::sync::Arc<std::sync::atomic::AtomicI64>,
    reads_of_bad: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl lapterop_osimage::ChunkSource for Flaky {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        let end = offset as usize + buf.len();
        if end > self.bytes.len() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.copy_from_slice(&self.bytes[offset as usize..end]);
        if (offset..end as u64).contains(&self.bad) {
            self.reads_of_bad.fetch_add(1, Ordering::SeqCst);
            if self.remaining.fetch_sub(1, Ordering::SeqCst) > 0 {
                buf[(self.bad - offset) as usize] ^= 0x10;
            }
        }
        Ok(())
    }
    fn total_len(&mut self) -> std::io::Result<Option<u64>> {
        Ok(Some(self.bytes.len() as u64))
    }
    fn refetcher(&self) -> Option<Box<dyn lapterop_osimage::ChunkSource>> {
        Some(Box::new(Flaky {
            bytes: self.bytes.clone(),
            bad: self.bad,
            remaining: self.remaining.clone(),
            reads_of_bad: self.reads_of_bad.clone(),
        }))
    }
}

fn flaky_install(corrupt_reads: i64, attempts: u32) -> (Result<install::InstallReport, InstallError>, u64) {
    let bytes = golden();
    let h = Header::decode(&bytes).unwrap();
    let m = open(&bytes).unwrap().manifest().clone();
    let (_, e) = m
        .extents_of(ExtentKind::Data)
        .nth(1)
        .map(|(r, e)| (r, e.clone()))
        .unwrap();
    let source = Flaky {
        bad: h.data_offset() + e.frame_offset.unwrap() + 1,
        bytes: std::sync::Arc::new(bytes),
        remaining: std::sync::Arc::new(corrupt_reads.into()),
        reads_of_bad: std::sync::Arc::default(),
    };
    let reads = source.reads_of_bad.clone();
    let mut image = Image::open(source, &image_key().verifying_key()).unwrap();
    let dir = temp_dir();
    let target = target_file(&dir.path().join("t.raw"), 16 * MIB, 512);
    let options = install::InstallOptions {
        refetch_attempts: attempts,
        ..test_options()
    };
    let result = install::install(&mut image, &target, &options, &|_| {});
    (result, reads.load(std::sync::atomic::Ordering::SeqCst))
}

#[test]
fn a_chunk_damaged_in_transit_is_fetched_again_a_bounded_number_of_times() {
    // Damaged once, re-fetched once: the install completes and verifies.
    let (result, reads) = flaky_install(1, 2);
    assert_eq!(result.unwrap().chunks_verified, 4);
    assert_eq!(reads, 2);
    // Without re-fetching the same damage stops the install, naming the extent.
    let (result, reads) = flaky_install(1, 0);
    let err = result.unwrap_err();
    assert!(err.to_string().contains("extent 2"), "{err}");
    assert_eq!(reads, 1);
    // Damaged on every read: 1 fetch + 2 re-fetches, then it fails.
    let (result, reads) = flaky_install(100, 2);
    assert!(matches!(result, Err(InstallError::Failed { extent: Some(_), .. })));
    assert_eq!(reads, 3);
}
