//! Shared helpers: deterministic content, tools, a synthetic GPT disk, an independent GPT checker.

use std::fs::{self, File, OpenOptions};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use ed25519_dalek::SigningKey;
use lapterop_osimage::install::{FileTarget, InstallOptions};

pub fn image_key() -> SigningKey {
    lapterop_certificate::keys::fixture_key("os-image test signer")
}

pub fn other_key() -> SigningKey {
    lapterop_certificate::keys::fixture_key("someone else")
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs a command; panics with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn on_path(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

/// Whether the external tools are there; when not, fails under CI's flag and otherwise says loudly
/// that the test is skipped.
pub fn tools_present(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    if missing.is_empty() {
        return true;
    }
    lapterop_testkit::skip(
        test,
        &format!("missing tools {missing:?}; install scripts/apt-packages.txt"),
    );
    false
}

/// A file of `size` bytes (sparse) as an install target.
pub fn target_file(path: &Path, size: u64, sector: u32) -> FileTarget {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.set_len(size).unwrap();
    FileTarget::new(f, sector).unwrap()
}

pub fn test_options() -> InstallOptions {
    InstallOptions {
        threads: 2,
        ..InstallOptions::default()
    }
}

pub fn pack_options() -> lapterop_osimage::PackOptions {
    let mut o = lapterop_osimage::PackOptions::new("lapterop-test", "1.0");
    o.created = "2026-01-02T03:04:05Z".into();
    o.arch = "x86_64".into();
    o.level = 3;
    o.threads = 2;
    o
}

pub const MIB: u64 = 1024 * 1024;

/// Compressible text-like bytes.
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("line {i} of block {seed}: the quick brown fox\n").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// A small synthetic 512-byte-sector GPT disk (12 MiB): partition "alpha" (3 MiB at 1 MiB: 1 MiB
/// text, 256 KiB zeros, 4 KiB random, zeros) and "beta" (6 MiB at 4 MiB, grows: 4.5 MiB text so one
/// chunk is full and one partial, then zeros), raw contents, fixed GUIDs.
pub fn synthetic_disk() -> Vec<u8> {
    let mut disk = vec![0u8; usize::try_from(12 * MIB).unwrap()];
    let mut cur = Cursor::new(&mut disk);
    let mut gpt = gptman::GPT::new_from(&mut cur, 512, [0x11; 16]).unwrap();
    let parts = [
        ("alpha", 2048u64, 4 * MIB / 512 - 1, [0x21u8; 16]),
        ("beta", 4 * MIB / 512, 10 * MIB / 512 - 1, [0x22; 16]),
    ];
    for (i, (name, start, end, guid)) in parts.iter().enumerate() {
        gpt[u32::try_from(i + 1).unwrap()] = gptman::GPTPartitionEntry {
            partition_type_guid: uuid::Uuid::parse_str("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
                .unwrap()
                .to_bytes_le(),
            unique_partition_guid: *guid,
            starting_lba: *start,
            ending_lba: *end,
            attribute_bits: 0,
            partition_name: (*name).into(),
        };
    }
    gpt.write_into(&mut cur).unwrap();
    gptman::GPT::write_protective_mbr_into(&mut cur, 512).unwrap();
    let a = usize::try_from(MIB).unwrap();
    disk[a..2 * a].copy_from_slice(&text(1, a));
    disk[2 * a + 262_144..2 * a + 266_240].copy_from_slice(&pattern(2, 4096));
    let b = 4 * a;
    disk[b..b + 4 * a + a / 2].copy_from_slice(&text(3, 4 * a + a / 2));
    disk
}

pub fn write_file(path: &Path, bytes: &[u8]) {
    File::create(path).unwrap().write_all(bytes).unwrap();
}

/// Independent GPT check (own parser, CRC32 from crc32fast): protective MBR, primary header at
/// LBA 1, backup header at the last LBA, both CRCs, entry arrays identical, partitions inside the
/// usable range and non-overlapping. Returns the (first, last) LBA of every used entry.
pub fn check_gpt(bytes_of: &dyn Fn(u64, usize) -> Vec<u8>, size: u64, ss: u64) -> Vec<(u64, u64, String)> {
    let le32 = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let le64 = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let mbr = bytes_of(0, 512);
    assert_eq!(&mbr[510..512], &[0x55, 0xAA], "protective MBR signature");
    assert_eq!(mbr[446 + 4], 0xEE, "protective MBR partition type");
    let last = size / ss - 1;
    let mut arrays = Vec::new();
    let mut used = Vec::new();
    for (lba, other) in [(1u64, last), (last, 1)] {
        let h = bytes_of(lba * ss, 92);
        assert_eq!(&h[0..8], b"EFI PART", "GPT signature at LBA {lba}");
        let mut hc = h.clone();
        hc[16..20].fill(0);
        assert_eq!(le32(&h, 16), crc32fast::hash(&hc), "header CRC at LBA {lba}");
        assert_eq!(le64(&h, 24), lba, "my LBA");
        assert_eq!(le64(&h, 32), other, "alternate LBA: backup must be the last LBA");
        let (first_usable, last_usable) = (le64(&h, 40), le64(&h, 48));
        let entries_lba = le64(&h, 72);
        let (n, esize) = (le32(&h, 80) as usize, le32(&h, 84) as usize);
        let arr = bytes_of(entries_lba * ss, n * esize);
        assert_eq!(le32(&h, 88), crc32fast::hash(&arr), "entry array CRC at LBA {lba}");
        let array_lbas = (n * esize) as u64 / ss;
        if lba == 1 {
            assert!(first_usable >= entries_lba + array_lbas);
        } else {
            assert_eq!(
                entries_lba + array_lbas,
                last,
                "backup array just before the backup header"
            );
            assert!(last_usable < entries_lba);
        }
        used.clear();
        for e in arr.chunks(esize) {
            if e[0..16].iter().all(|b| *b == 0) {
                continue;
            }
            let (s, t) = (le64(e, 32), le64(e, 40));
            assert!(
                s >= first_usable && t <= last_usable && s <= t,
                "partition {s}..{t} outside usable range"
            );
            let name: Vec<u16> = e[56..128]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|c| *c != 0)
                .collect();
            used.push((s, t, String::from_utf16(&name).unwrap()));
        }
        arrays.push(arr);
    }
    assert_eq!(arrays[0], arrays[1], "primary and backup entry arrays differ");
    let mut sorted = used.clone();
    sorted.sort();
    for w in sorted.windows(2) {
        assert!(w[0].1 < w[1].0, "partitions overlap");
    }
    used
}

pub fn read_range(path: &Path) -> impl Fn(u64, usize) -> Vec<u8> + '_ {
    move |off, len| {
        let f = File::open(path).unwrap();
        let mut buf = vec![0u8; len];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, off).unwrap();
        buf
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("osimage-test").tempdir().unwrap()
}

/// Copies `len` bytes at `off` of `from` into a new sparse file `to` (all-zero MiBs become holes).
pub fn extract(from: &Path, off: u64, len: u64, to: &Path) -> PathBuf {
    let src = File::open(from).unwrap();
    let out = File::create(to).unwrap();
    out.set_len(len).unwrap();
    let mut done = 0;
    let mut buf = vec![0u8; 1 << 20];
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        std::os::unix::fs::FileExt::read_exact_at(&src, &mut buf[..n], off + done).unwrap();
        if !lapterop_osimage::pack::is_zero(&buf[..n]) {
            std::os::unix::fs::FileExt::write_all_at(&out, &buf[..n], done).unwrap();
        }
        done += n as u64;
    }
    to.to_owned()
}

/// Every regular file under `root`, relative path to contents.
pub fn tree(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "lost+found") {
                    continue;
                }
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_string_lossy().into_owned(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}
