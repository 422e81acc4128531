//! `lapterop-image-builder os-image pack|inspect|verify` through the real binary: a GPT disk made with
//! sgdisk (Debian `gdisk`) holding a partition of known bytes is packed and signed with a key from
//! `lapterop-cert keygen`'s format; inspect and verify accept it, a flipped frame byte and another
//! key are refused with exit 1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lapterop-image-builder"))
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn write_key(dir: &Path, label: &str) -> (PathBuf, PathBuf) {
    let key = lapterop_certificate::keys::fixture_key(label);
    let prefix = dir.join(label.replace(' ', "-"));
    lapterop_certificate::keys::write_keypair(&prefix, &key).unwrap();
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

#[test]
fn pack_inspect_verify_and_refuse_tampering() {
    if Command::new("sgdisk").arg("--version").output().is_err() {
        lapterop_testkit::skip(
            "pack_inspect_verify_and_refuse_tampering",
            "sgdisk (Debian gdisk) is missing",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("reference.raw");
    // 16 MiB disk, one 8 MiB Linux partition at 1 MiB filled with recognisable data and zeros.
    let mut bytes = vec![0u8; 16 << 20];
    for (i, b) in bytes[(1 << 20)..(5 << 20)].iter_mut().enumerate() {
        *b = u8::try_from(i % 251).unwrap();
    }
    std::fs::write(&disk, &bytes).unwrap();
    let st = Command::new("sgdisk")
        .args(["-n", "1:2048:+8M", "-t", "1:8300", "-c", "1:system"])
        .arg(&disk)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));

    let (key, public) = write_key(dir.path(), "image key");
    let (_, other) = write_key(dir.path(), "someone else");
    let image = dir.path().join("pupil.osimg");
    let o = run(&[
        "os-image".as_ref(),
        "pack".as_ref(),
        "--input".as_ref(),
        disk.as_os_str(),
        "--name".as_ref(),
        "pupil-desktop".as_ref(),
        "--version".as_ref(),
        "2026.11".as_ref(),
        "--key".as_ref(),
        key.as_os_str(),
        "--out".as_ref(),
        image.as_os_str(),
        "--level".as_ref(),
        "3".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("root "));

    let o = run(&[
        "os-image".as_ref(),
        "inspect".as_ref(),
        image.as_os_str(),
        "--key".as_ref(),
        public.as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("signature: valid") && text.contains("pupil-desktop 2026.11"),
        "{text}"
    );
    assert!(text.contains("\"system\""), "{text}");

    let verify = |key: &Path, file: &Path| {
        run(&[
            "os-image".as_ref(),
            "verify".as_ref(),
            file.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ])
    };
    let o = verify(&public, &image);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("valid:"));

    // Another key: refused.
    let o = verify(&other, &image);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stdout));
    // A flipped byte in the last frame: refused, naming the extent.
    let mut img = std::fs::read(&image).unwrap();
    let n = img.len();
    img[n - 10] ^= 0x40;
    let bad = dir.path().join("tampered.osimg");
    std::fs::write(&bad, &img).unwrap();
    let o = verify(&public, &bad);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("extent"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}
