//! The signed OS images the install tests put on loop devices: a reference GPT disk with one real
//! filesystem made by mkfs from known files, packed with a fixture key.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use lapterop_certificate::VerifyingKey;
use lapterop_osimage::format::Manifest;
use lapterop_osimage::{Image, SeekSource};

use super::{ok, MIB};

/// A packed reference disk with one partition, and the keys around it.
pub struct Reference {
    pub work: tempfile::TempDir,
    /// The partition's filesystem as made by mkfs.
    pub fs: PathBuf,
    pub fs_mib: u64,
    pub image: PathBuf,
    pub key: lapterop_certificate::SigningKey,
    pub trust: PathBuf,
    pub other: PathBuf,
}

impl Reference {
    /// `mkfs` (its arguments, then the file) makes a `fs_mib` partition of GPT type `type_code` from
    /// `files`; the disk is `fs_mib + 24` MiB.
    pub fn build(files: &[(&str, Vec<u8>)], fs_mib: u64, type_code: &str, mkfs: &dyn Fn(&Path, &Path)) -> Reference {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("files");
        for (name, bytes) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let fs = work.path().join("part.fs");
        File::create(&fs).unwrap().set_len(fs_mib * MIB).unwrap();
        mkfs(&dir, &fs);
        let src = work.path().join("reference.raw");
        File::create(&src).unwrap().set_len((fs_mib + 24) * MIB).unwrap();
        ok(Command::new("sgdisk")
            .args([
                "-n",
                &format!("1:2048:+{fs_mib}M"),
                "-t",
                &format!("1:{type_code}"),
                "-c",
                "1:system",
            ])
            .arg(&src));
        ok(Command::new("dd")
            .arg(format!("if={}", fs.display()))
            .arg(format!("of={}", src.display()))
            .args(["bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"]));
        let key = lapterop_certificate::keys::fixture_key("install test image key");
        let image = work.path().join("pupil.osimg");
        let mut opts = lapterop_osimage::pack::PackOptions::new("pupil-desktop", "2026.11");
        opts.level = 3;
        // These tests compare the installed blocks with the reference filesystem's: keep it unshrunk
        // and ungrown (shrinking is tested in os-image's leads and ntfs tests, growing at install in
        // `install_grows_the_root_and_writes_machine_json`).
        opts.shrink_last = false;
        opts.grow_last = false;
        lapterop_osimage::pack::pack(&src, &image, &key, &opts).unwrap();
        let public = work.path().join("image");
        lapterop_certificate::keys::write_keypair(&public, &key).unwrap();
        let other = work.path().join("other");
        lapterop_certificate::keys::write_keypair(&other, &lapterop_certificate::keys::fixture_key("someone else"))
            .unwrap();
        Reference {
            fs,
            fs_mib,
            image,
            key,
            trust: public.with_extension("pub"),
            other: other.with_extension("pub"),
            work,
        }
    }

    /// An ext4 partition (40 MiB) holding a letter and 6 MiB of incompressible bytes, so the image
    /// has several frames and a stream several MiB long.
    pub fn ext4() -> Reference {
        Reference::build(&ext4_files(), 40, "8300", &|dir, fs| {
            ok(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-b", "4096", "-d"])
                .arg(dir)
                .arg(fs));
        })
    }

    pub fn manifest(&self) -> (Manifest, u64) {
        let image = Image::open(SeekSource(File::open(&self.image).unwrap()), &self.verifying_key()).unwrap();
        (image.manifest().clone(), image.header().data_offset())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The image file offset of the middle of the largest data frame.
    pub fn middle_of_a_frame(&self) -> u64 {
        let (m, data_offset) = self.manifest();
        let (_, e) = m.data_extents().max_by_key(|(_, e)| e.frame_length).unwrap();
        data_offset + e.frame_offset.unwrap() + e.frame_length.unwrap() / 2
    }
}

pub fn ext4_files() -> Vec<(&'static str, Vec<u8>)> {
    let letter = "Welkom op je laptop! Iedereendigitaal@Leuven\n"
        .repeat(200)
        .into_bytes();
    vec![("home/leerling/welkom.txt", letter), ("blob.bin", noise(6 << 20, 7))]
}

/// Incompressible bytes (xorshift), reproducible from `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[5]
        })
        .collect()
}
