//! `lapterop-agent capture` on real loop devices (root only): a reference disk with an ESP (FAT32)
//! and an ext4 root is captured to a file and by HTTP PUT to a server on 127.0.0.1; the image's
//! signature and manifest are checked, the image is installed onto another loop device with
//! `lapterop-agent install`, and the installed filesystems hold the reference's files (mtools,
//! debugfs). The reference disk's bytes are unchanged (blake3 before and after), and the signing key
//! appears nowhere in what capture wrote.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use lapterop_osimage::{Image, SeekSource};

mod support;

use support::osimage::{ext4_files, noise};
use support::putd::PutServer;
use support::{agent, ok, root, run, Loop, MIB};

const ESP_MIB: u64 = 40;
const ROOT_MIB: u64 = 200;

/// A reference disk on a loop device (ESP + ext4 root, the last partition ending at the last usable
/// sector as `sgdisk -n 2:0:0` makes it), and the image key the lead brings.
struct Reference {
    work: tempfile::TempDir,
    disk: Loop,
    key: lapterop_certificate::SigningKey,
    key_file: PathBuf,
    trust: PathBuf,
}

fn esp_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("EFI/BOOT/BOOTX64.EFI", noise(300 << 10, 11)),
        ("EFI/debian/grub.cfg", b"search --fs-uuid --set=root x\n".repeat(20)),
    ]
}

impl Reference {
    fn build() -> Reference {
        let work = tempfile::tempdir().unwrap();
        let files = work.path().join("root");
        for (name, bytes) in ext4_files() {
            let p = files.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let esp = work.path().join("esp.fs");
        File::create(&esp).unwrap().set_len(ESP_MIB * MIB).unwrap();
        ok(Command::new("mkfs.vfat")
            .args(["-F", "32", "-s", "1", "-S", "512", "-n", "ESP"])
            .arg(&esp));
        for (name, bytes) in esp_files() {
            let local = work.path().join("esp-file");
            std::fs::write(&local, bytes).unwrap();
            let mut dir = String::new();
            for part in Path::new(name).parent().unwrap().components() {
                dir = format!("{dir}/{}", part.as_os_str().to_string_lossy());
                let _ = run(Command::new("mmd")
                    .env("MTOOLS_SKIP_CHECK", "1")
                    .arg("-i")
                    .arg(&esp)
                    .arg(format!("::{dir}")));
            }
            ok(Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(&esp)
                .arg(&local)
                .arg(format!("::/{name}")));
        }
        let rootfs = work.path().join("root.fs");
        File::create(&rootfs).unwrap().set_len(ROOT_MIB * MIB).unwrap();
        ok(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-d"])
            .arg(&files)
            .arg(&rootfs));
        let disk = Loop::prepared(
            (ESP_MIB + ROOT_MIB + 2) * MIB,
            512,
            |f| {
                ok(Command::new("sgdisk")
                    .args([
                        "-Z",
                        "-n",
                        &format!("1:2048:+{ESP_MIB}M"),
                        "-t",
                        "1:ef00",
                        "-c",
                        "1:EFI",
                    ])
                    .args(["-n", "2:0:0", "-t", "2:8300", "-c", "2:root"])
                    .arg(f));
                for (fs, seek) in [(&esp, 1), (&rootfs, 1 + ESP_MIB)] {
                    ok(Command::new("dd")
                        .arg(format!("if={}", fs.display()))
                        .arg(format!("of={}", f.display()))
                        .arg(format!("seek={seek}"))
                        .args(["bs=1M", "conv=notrunc", "status=none"]));
                }
            },
            &[],
        );
        let key = lapterop_certificate::keys::fixture_key("capture test image key");
        let prefix = work.path().join("lead-usb/image");
        std::fs::create_dir_all(prefix.parent().unwrap()).unwrap();
        lapterop_certificate::keys::write_keypair(&prefix, &key).unwrap();
        Reference {
            key_file: prefix.with_extension("key"),
            trust: prefix.with_extension("pub"),
            work,
            disk,
            key,
        }
    }

    fn blake3(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update_reader(File::open(&self.disk.dev).unwrap()).unwrap();
        h.finalize().to_hex().to_string()
    }

    fn capture(&self, args: &[&str]) -> std::process::Output {
        run(Command::new(agent())
            .arg("capture")
            .args(["--device", &self.disk.dev, "--key-file"])
            .arg(&self.key_file)
            .args(["--version", "2026.12", "--level", "3"])
            .args(args))
    }

    /// The secret key in the forms it could leak: raw bytes, the key file's bytes, hex.
    fn key_forms(&self) -> Vec<Vec<u8>> {
        vec![
            self.key.to_bytes().to_vec(),
            std::fs::read(&self.key_file).unwrap(),
            hex::encode(self.key.to_bytes()).into_bytes(),
        ]
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The image is signed by the reference key, and installed onto a fresh loop device it holds the
/// reference's files in both partitions.
fn check_image(r: &Reference, image: &Path) {
    let opened = Image::open(SeekSource(File::open(image).unwrap()), &r.key.verifying_key())
        .expect("the captured image opens with the lead's public key");
    let m = opened.manifest();
    assert_eq!(
        m.partitions.len(),
        2,
        "{}",
        lapterop_osimage::inspect(m, opened.signer_key_id())
    );
    assert_eq!(m.image.name, "reference");
    assert_eq!(m.image.version, "2026.12");
    let other = lapterop_certificate::keys::fixture_key("someone else").verifying_key();
    assert!(
        Image::open(SeekSource(File::open(image).unwrap()), &other).is_err(),
        "an image must not verify under another key"
    );
    drop(opened);
    let target = Loop::new((ESP_MIB + ROOT_MIB + 8) * MIB, 512);
    let out = run(Command::new(agent())
        .arg("install")
        .arg("--image")
        .arg(image)
        .arg("--trust")
        .arg(&r.trust)
        .arg("--yes")
        .arg(&target.dev));
    assert!(
        out.status.success(),
        "install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = |n: u32| -> u64 {
        let info = ok(Command::new("sgdisk").args(["-i", &n.to_string()]).arg(&target.dev));
        let s: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("First sector: "))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        s * 512
    };
    for (name, bytes) in esp_files() {
        let got = Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!("{}@@{}", target.file.display(), start(1)))
            .arg(format!("::/{name}"))
            .output()
            .unwrap();
        assert!(got.status.success() && got.stdout == bytes, "ESP file {name} differs");
    }
    let root = Loop::over(&target.file, start(2), ROOT_MIB * MIB);
    for (name, bytes) in ext4_files() {
        let dumped = r.work.path().join("dumped");
        let _ = std::fs::remove_file(&dumped);
        ok(Command::new("debugfs")
            .args(["-R", &format!("dump /{name} {}", dumped.display())])
            .arg(&root.dev));
        assert!(std::fs::read(&dumped).unwrap() == bytes, "root file {name} differs");
    }
    let fsck = run(Command::new("e2fsck").args(["-f", "-n"]).arg(&root.dev));
    assert!(
        fsck.status.success(),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
}

#[test]
fn capture_to_a_file_leaves_the_reference_unchanged_and_installs() {
    if !root("capture_to_a_file_leaves_the_reference_unchanged_and_installs") {
        return;
    }
    let r = Reference::build();
    let before = r.blake3();
    let usb = tempfile::tempdir().unwrap();
    let image = usb.path().join("reference.osimg");
    // Default: shrink when resize2fs is at hand (it is on the test host).
    let out = r.capture(&["--to", image.to_str().unwrap(), "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "capture failed: {stderr}");
    assert!(stderr.contains("capture pass 1/1: read"), "no progress line: {stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["image"], image.display().to_string());
    assert_eq!(v["shrunk"], true);
    assert!(v["min_disk_bytes"].as_u64().unwrap() < (ESP_MIB + ROOT_MIB + 2) * MIB);
    assert_eq!(r.blake3(), before, "the reference disk was written");
    let names: Vec<_> = std::fs::read_dir(usb.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("reference.osimg")],
        "scratch files left behind"
    );
    let bytes = std::fs::read(&image).unwrap();
    for k in r.key_forms() {
        assert!(!contains(&bytes, &k), "the signing key is in the image");
    }
    check_image(&r, &image);
    // Never overwrites.
    let again = r.capture(&["--to", image.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
}

#[test]
fn capture_by_put_streams_a_signed_image() {
    if !root("capture_by_put_streams_a_signed_image") {
        return;
    }
    let r = Reference::build();
    let before = r.blake3();
    let server = PutServer::start(201);
    let out = r.capture(&["--put", &server.url()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "capture failed: {stderr}");
    assert!(
        stderr.contains("not shrinking"),
        "the missing shrink is not said: {stderr}"
    );
    assert!(
        stderr.contains("capture pass 2/2: read"),
        "no progress of the second pass: {stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("HTTP 201"));
    assert_eq!(r.blake3(), before, "the reference disk was written");
    let uploads = server.uploads.lock().unwrap().clone();
    assert_eq!(uploads.len(), 1);
    let u = &uploads[0];
    assert!(
        u.request_line.starts_with("PUT /images/reference.osimg "),
        "{}",
        u.request_line
    );
    assert!(u.complete, "the body was shorter than its Content-Length");
    assert_eq!(u.header("transfer-encoding"), None, "sent chunked: {:?}", u.headers);
    for k in r.key_forms() {
        assert!(!contains(&u.body, &k), "the signing key was uploaded");
    }
    let image = r.work.path().join("uploaded.osimg");
    std::fs::write(&image, &u.body).unwrap();
    check_image(&r, &image);
}

#[test]
fn capture_refuses_bad_input_with_one_line() {
    if !root("capture_refuses_bad_input_with_one_line") {
        return;
    }
    let r = Reference::build();
    let before = r.blake3();
    let line = |out: &std::process::Output| {
        let s = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(s.trim().lines().count(), 1, "not one line: {s}");
        s
    };
    // The key is missing.
    let out = run(Command::new(agent())
        .arg("capture")
        .args(["--device", &r.disk.dev, "--to"])
        .arg(r.work.path().join("x.osimg"))
        .arg("--key-file")
        .arg(r.work.path().join("no.key")));
    assert_eq!(out.status.code(), Some(2));
    assert!(line(&out).contains("--key-file"));
    // The server refuses.
    let server = PutServer::start(403);
    let out = r.capture(&["--put", &server.url(), "--no-shrink"]);
    assert_eq!(out.status.code(), Some(1));
    let s = String::from_utf8_lossy(&out.stderr);
    assert!(s.contains("the server refused the image: 403"), "{s}");
    // Nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = r.capture(&["--put", &format!("http://127.0.0.1:{port}/x"), "--no-shrink"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("check the URL"));
    // No output directory.
    let out = r.capture(&["--to", "/nonexistent-usb/x.osimg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(line(&out).contains("does not exist"));
    assert_eq!(r.blake3(), before, "the reference disk was written");
}
