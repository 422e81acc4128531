//! `lapterop-image-builder live` with the real pinned packages: the image is reproducible (two builds,
//! same blake3), and independent readers agree with what was asked for: `sfdisk` reads the MBR,
//! `mdir`/`mtype` (mtools) read the FAT32 files in place, `fsck.vfat -n` checks a copy of the
//! partition, and GRUB's boot code and core.img are where the BIOS looks for them.
//!
//! A static stand-in (busybox-static's binary) plays the agent, so these tests need no release build;
//! `xtask/tests/stick.rs` boots the image with the real agent. Needs apt, dpkg-deb, depmod, grub-mkimage
//! (grub-common), mtools, dosfstools and fdisk; when one is missing the test fails under
//! `LAPTEROP_REQUIRE_ROOT_TESTS=1` and otherwise says loudly that it was skipped.

// Test helpers outside #[test] functions may panic on any failure, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use lapterop_image_builder::debian::{self, Cache, Lock};

const EPOCH: &str = "1764000000";

fn tools_present() -> bool {
    let on_path = |tool: &str| {
        ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).exists())
    };
    let tools = [
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("depmod", "kmod"),
        ("grub-mkimage", "grub-common"),
        ("mdir", "mtools"),
        ("fsck.vfat", "dosfstools"),
        ("sfdisk", "fdisk"),
    ];
    let missing: Vec<&str> = tools.iter().filter(|(t, _)| !on_path(t)).map(|(_, p)| *p).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("needs Debian packages {}", missing.join(", "));
    lapterop_testkit::skip(module_path!(), &msg);
    false
}

/// busybox-static's binary: a real static ELF standing in for the agent.
fn stand_in_agent() -> PathBuf {
    let lock = Lock::read(&debian::default_lock_path()).unwrap();
    Cache::new(debian::default_cache_dir())
        .extract(lock.get("busybox").unwrap())
        .unwrap()
        .join("bin/busybox")
}

struct Inputs {
    dir: tempfile::TempDir,
}

impl Inputs {
    fn new() -> Inputs {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("site.toml"), "[site]\nname = \"Leuven repair café\"\n").unwrap();
        std::fs::write(dir.path().join("station.key"), "station secret key bytes\n").unwrap();
        let image_key = lapterop_certificate::keys::fixture_key("live stick image key");
        lapterop_certificate::keys::write_keypair(&dir.path().join("image"), &image_key).unwrap();
        let image: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("pupil-desktop-2026.11.lapimg"), image).unwrap();
        Inputs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the real binary; returns (stdout, image path).
    fn build(&self, out: &str, extra: &[&str]) -> (String, PathBuf) {
        let out = self.path(out);
        let agent = stand_in_agent();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lapterop-image-builder"));
        cmd.env("SOURCE_DATE_EPOCH", EPOCH)
            .arg("live")
            .arg("--agent")
            .arg(&agent)
            .arg("--out")
            .arg(&out)
            .arg("--site")
            .arg(self.path("site.toml"))
            .arg("--station-key")
            .arg(self.path("station.key"))
            .arg("--image-key")
            .arg(self.path("image.pub"))
            .arg("--os-image")
            .arg(self.path("pupil-desktop-2026.11.lapimg"))
            .args(["--zstd-level", "3"])
            .args(extra);
        let result = cmd.output().unwrap();
        assert!(
            result.status.success(),
            "lapterop-image-builder live failed: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        (String::from_utf8(result.stdout).unwrap(), out)
    }
}

fn blake3_file(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap()).to_hex().to_string()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn mtype(img: &Path, file: &str) -> Vec<u8> {
    let out = Command::new("mtype")
        .arg("-i")
        .arg(format!("{}@@1M", img.display()))
        .arg(format!("::{file}"))
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mtype {file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn same_inputs_same_bytes_and_other_inputs_other_bytes() {
    if !tools_present() {
        return;
    }
    let inputs = Inputs::new();
    let (first, a) = inputs.build("a.img", &[]);
    let (_, b) = inputs.build("b.img", &[]);
    eprintln!("{first}");
    assert_eq!(
        blake3_file(&a),
        blake3_file(&b),
        "two builds from the same inputs differ"
    );
    // Another command line changes the menu and the derived stick id, hence the bytes.
    let (_, c) = inputs.build("c.img", &["--extra-cmdline", "lapterop.net=0"]);
    assert_ne!(blake3_file(&a), blake3_file(&c));
}

#[test]
fn independent_readers_see_the_layout_and_the_files() {
    if !tools_present() {
        return;
    }
    let inputs = Inputs::new();
    let (summary, img) = inputs.build(
        "stick.img",
        &[
            "--stick-id",
            "leuven-bench-03",
            "--extra-cmdline",
            "lapterop.mode=rescue",
        ],
    );
    eprintln!("{summary}");
    let data = std::fs::read(&img).unwrap();
    let size = data.len() as u64;
    // Without its OS image (300 kB here) the stick is within the budget.
    assert!(
        size <= lapterop_image_builder::live::MAX_BASE_IMAGE,
        "the stick is {size} bytes, more than the {} MiB budget",
        lapterop_image_builder::live::MAX_BASE_IMAGE >> 20
    );
    assert_eq!(size % (1 << 20), 0);

    // The partition table, as sfdisk reads it: one active FAT32 (LBA) partition from 1 MiB to the end.
    let dump = run(Command::new("sfdisk").arg("--dump").arg(&img));
    eprintln!("{dump}");
    assert!(dump.contains("label: dos"), "{dump}");
    let part = dump.lines().find(|l| l.contains(": start=")).unwrap();
    let sectors = (size - (1 << 20)) / 512;
    assert!(
        part.contains("start=        2048")
            && part.contains(&format!("size={sectors:>12}"))
            && part.contains("type=c")
            && part.contains("bootable"),
        "{part}"
    );
    assert_eq!(dump.lines().filter(|l| l.contains(": start=")).count(), 1);

    // GRUB: boot.img's code in the MBR (not its table area), core.img from sector 1 before 1 MiB.
    let lock = Lock::read(&debian::default_lock_path()).unwrap();
    let grub_pc = Cache::new(debian::default_cache_dir())
        .extract(lock.get("grub-pc").unwrap())
        .unwrap()
        .join("usr/lib/grub/i386-pc");
    let boot_img = std::fs::read(grub_pc.join("boot.img")).unwrap();
    assert_eq!(&data[..440], &boot_img[..440]);
    assert_eq!(&data[510..512], &[0x55, 0xAA]);
    let kernel_img = std::fs::read(grub_pc.join("diskboot.img")).unwrap();
    assert_eq!(
        &data[512..512 + 32],
        &kernel_img[..32],
        "core.img (diskboot) is not at sector 1"
    );

    // The FAT, in place at 1 MiB, read by mtools.
    assert_eq!(mtype(&img, "/lapterop/stick.id"), b"leuven-bench-03\n");
    assert_eq!(
        mtype(&img, "/lapterop/site.toml"),
        std::fs::read(inputs.path("site.toml")).unwrap()
    );
    assert_eq!(
        mtype(&img, "/lapterop/station.key"),
        std::fs::read(inputs.path("station.key")).unwrap()
    );
    assert_eq!(
        mtype(&img, "/lapterop/images/pupil-desktop-2026.11.lapimg"),
        std::fs::read(inputs.path("pupil-desktop-2026.11.lapimg")).unwrap()
    );
    let shim = Cache::new(debian::default_cache_dir())
        .extract(lock.get("shim").unwrap())
        .unwrap()
        .join("usr/lib/shim/shimx64.efi.signed");
    let shim = std::fs::read(shim).unwrap();
    assert_eq!(mtype(&img, "/EFI/BOOT/BOOTX64.EFI"), shim);
    // The pinned shim is signed twice: its Authenticode blob carries the certificates of both
    // Microsoft CAs (old laptops trust only the 2011 one, new ones may trust only the 2023 one).
    let has = |cn: &str| shim.windows(cn.len()).any(|w| w == cn.as_bytes());
    assert!(
        has("Microsoft Corporation UEFI CA 2011"),
        "shim lacks the UEFI CA 2011 signature"
    );
    assert!(has("Microsoft UEFI CA 2023"), "shim lacks the UEFI CA 2023 signature");
    // 32-bit UEFI: Debian's i386 shim (signed twice too), MokManager and GRUB beside the x64 ones.
    let unpacked = |role: &str, rel: &str| {
        let path = Cache::new(debian::default_cache_dir())
            .extract(lock.get(role).unwrap())
            .unwrap()
            .join(rel);
        std::fs::read(path).unwrap()
    };
    let shim_ia32 = unpacked("shim-ia32", "usr/lib/shim/shimia32.efi.signed");
    assert_eq!(mtype(&img, "/EFI/BOOT/BOOTIA32.EFI"), shim_ia32);
    // A PE32 image for i386 (machine 0x014c), not a second copy of the x64 shim.
    let pe = u32::from_le_bytes(shim_ia32[0x3c..0x40].try_into().unwrap()) as usize;
    assert_eq!(&shim_ia32[pe..pe + 6], b"PE\0\0\x4c\x01");
    for cn in ["Microsoft Corporation UEFI CA 2011", "Microsoft UEFI CA 2023"] {
        assert!(
            shim_ia32.windows(cn.len()).any(|w| w == cn.as_bytes()),
            "the ia32 shim lacks the {cn} signature"
        );
    }
    let grub_ia32 = unpacked("grub-ia32", "usr/lib/grub/i386-efi-signed/grubia32.efi.signed");
    assert_eq!(mtype(&img, "/EFI/BOOT/grubia32.efi"), grub_ia32);
    assert_eq!(
        mtype(&img, "/EFI/BOOT/mmia32.efi"),
        unpacked("helpers-ia32", "usr/lib/shim/mmia32.efi.signed")
    );
    // Both signed GRUBs carry the prefix /EFI/debian (on the partition they were loaded from), which
    // is where the stick's early config is: no search, the same decoy protection on ia32 and x64.
    let grub_x64 = unpacked("grub-efi", "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed");
    for (name, grub) in [("grubx64", &grub_x64), ("grubia32", &grub_ia32)] {
        assert!(
            grub.windows(12).any(|w| w == b"/EFI/debian\0"),
            "{name}.efi's built-in prefix is not /EFI/debian"
        );
        let source = b"source $prefix/grub.cfg";
        assert!(
            grub.windows(source.len()).any(|w| w == source),
            "{name}.efi's embedded config changed"
        );
    }
    let early = String::from_utf8(mtype(&img, "/EFI/debian/grub.cfg")).unwrap();
    // Rooted where GRUB was loaded from, never by a search that another disk could answer.
    assert!(!early.contains("search"), "{early}");
    assert!(early.contains("[ -e ($root)/lapterop/stick.id ]"), "{early}");
    let menu = String::from_utf8(mtype(&img, "/boot/grub/grub.cfg")).unwrap();
    assert!(
        menu.contains("console=ttyS0,115200 console=tty0 lapterop.stick=leuven-bench-03"),
        "{menu}"
    );
    // --extra-cmdline goes on every entry (4), and the rescue entry has its own too.
    assert_eq!(menu.matches("lapterop.mode=rescue").count(), 5, "{menu}");
    assert!(menu.contains("menuentry \"Send saved certificates\""), "{menu}");
    let initrd = mtype(&img, "/boot/initrd.img");
    assert_eq!(&initrd[..4], &[0x28, 0xB5, 0x2F, 0xFD], "initrd.img is not zstd");
    // The image key is baked into the initramfs (the only one the agent trusts), never put on the FAT
    // partition where anyone with a PC could swap it.
    let mut archive = Vec::new();
    std::io::Read::read_to_end(
        &mut zstd::stream::read::Decoder::new(initrd.as_slice()).unwrap(),
        &mut archive,
    )
    .unwrap();
    let key_hex = std::fs::read_to_string(inputs.path("image.pub")).unwrap();
    let at = archive
        .windows(b"etc/lapterop/image.pub\0".len())
        .position(|w| w == b"etc/lapterop/image.pub\0")
        .expect("etc/lapterop/image.pub in the initramfs");
    assert!(
        archive[at..]
            .windows(64)
            .take(4096)
            .any(|w| w == key_hex.trim().as_bytes()),
        "the baked key is not the one given"
    );
    let listing = run(Command::new("mdir")
        .arg("-/")
        .arg("-b")
        .arg("-i")
        .arg(format!("{}@@1M", img.display()))
        .arg("::")
        .env("MTOOLS_SKIP_CHECK", "1"));
    for want in [
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/EFI/BOOT/grubx64.efi",
        "::/EFI/BOOT/mmx64.efi",
        "::/EFI/BOOT/BOOTIA32.EFI",
        "::/EFI/BOOT/grubia32.efi",
        "::/EFI/BOOT/mmia32.efi",
        "::/boot/vmlinuz",
        "::/lapterop/outbox/",
    ] {
        assert!(
            listing.lines().any(|l| l.trim() == want),
            "{want} missing from\n{listing}"
        );
    }
    assert!(
        !listing.contains("image.pub"),
        "an image key on the FAT partition:\n{listing}"
    );

    assert_no_signing_key(&data, &archive, &inputs);
    // The filesystem tools are in the initramfs with their loader, and a dynamic program's libraries.
    for want in [
        "usr/sbin/resize2fs\0",
        "usr/sbin/e2fsck\0",
        "usr/sbin/ntfsresize\0",
        "usr/sbin/ntfsfix\0",
        "lib64/ld-linux-x86-64.so.2\0",
        "lib/x86_64-linux-gnu/libc.so.6\0",
        "lib/x86_64-linux-gnu/libext2fs.so.2\0",
        "lib/x86_64-linux-gnu/libntfs-3g.so.89\0",
    ] {
        assert!(
            archive.windows(want.len()).any(|w| w == want.as_bytes()),
            "{} missing from the initramfs",
            want.trim_end_matches('\0')
        );
    }

    // fsck.vfat on a copy of the partition: a clean FAT32, nothing to repair.
    let part_copy = inputs.path("partition.fat");
    std::fs::write(&part_copy, &data[1 << 20..]).unwrap();
    let fsck = Command::new("fsck.vfat")
        .arg("-n")
        .arg("-V")
        .arg(&part_copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert!(
        fsck.status.success(),
        "fsck.vfat found problems:\n{text}{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with('/') && !l.contains("partition.fat:"))
            .count(),
        0,
        "{text}"
    );
    // FAT32 needs at least 65525 clusters; "N files, used/total clusters".
    let total: u64 = text
        .lines()
        .last()
        .and_then(|l| l.rsplit('/').next())
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(total >= 65_525, "{total} clusters is not FAT32");
    // The BPB's hidden sectors say where the partition starts.
    assert_eq!(&data[(1 << 20) + 0x1C..(1 << 20) + 0x20], &2048u32.to_le_bytes());
}

/// No image signing key on the stick: neither the test image key's secret (its 32 bytes, or their
/// hex in either case, as `lapterop-cert keygen` writes them) nor any PEM or OpenSSH private key, in
/// the raw image (every FAT file, the kernel, GRUB) or in the decompressed initramfs. The public
/// half, which the agent trusts, is there (checked above).
fn assert_no_signing_key(image: &[u8], initramfs: &[u8], inputs: &Inputs) {
    let secret = lapterop_certificate::keys::read_signing_key(&inputs.path("image.key")).unwrap();
    let raw = secret.to_bytes();
    let lower = hex::encode(raw);
    let upper = lower.to_ascii_uppercase();
    // A PEM key's BEGIN line ends with a line break; wpa_supplicant's own string constant
    // `-----BEGIN TSS2 PRIVATE KEY-----` (it recognises TPM keys) ends with a NUL, and is no key.
    let needles: [(&str, &[u8]); 6] = [
        ("the image key's secret bytes", &raw),
        ("the image key's secret in hex", lower.as_bytes()),
        ("the image key's secret in upper-case hex", upper.as_bytes()),
        ("a PEM private key", b"PRIVATE KEY-----\n"),
        ("a PEM private key (CRLF)", b"PRIVATE KEY-----\r\n"),
        ("an OpenSSH private key", b"openssh-key-v1\0"),
    ];
    for (what, blob) in [("the stick image", image), ("the initramfs", initramfs)] {
        for (name, needle) in needles {
            assert!(memchr::memmem::find(blob, needle).is_none(), "{name} found in {what}");
        }
    }
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    if !tools_present() {
        return;
    }
    let inputs = Inputs::new();
    let agent = stand_in_agent();
    std::fs::write(inputs.path("junk.pub"), "not a key\n").unwrap();
    let junk = inputs.path("junk.pub").display().to_string();
    // The image key's secret half, as `.key` and under another name beside its `.pub`.
    let secret = inputs.path("image.key").display().to_string();
    std::fs::copy(inputs.path("image.key"), inputs.path("image.hex")).unwrap();
    let renamed = inputs.path("image.hex").display().to_string();
    for (args, says) in [
        (vec!["--stick-id", "has space"], "--stick-id"),
        (vec!["--image-key", &junk], "--image-key"),
        (vec!["--image-key", &secret], "secret half"),
        (vec!["--image-key", &renamed], "secret half"),
        (vec!["--extra-cmdline", "x;reboot"], "--extra-cmdline"),
        (vec!["--site", "/nonexistent/site.toml"], "is not a file"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lapterop-image-builder"))
            .arg("live")
            .arg("--agent")
            .arg(&agent)
            .arg("--out")
            .arg(inputs.path("bad.img"))
            .args(["--zstd-level", "1"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
        assert!(!inputs.path("bad.img").exists());
    }
}

/// An agent that would not run as the initramfs's `/init` (dynamically linked: it needs a C library
/// the initramfs does not have) is refused before anything is fetched or written, with the command
/// that builds the static one.
#[test]
fn a_dynamically_linked_agent_is_refused_with_the_command_that_builds_a_static_one() {
    let inputs = Inputs::new();
    // Debian's own /bin/ls: an ELF interpreter and DT_NEEDED libc, like a plain `cargo build` agent.
    let out = Command::new(env!("CARGO_BIN_EXE_lapterop-image-builder"))
        .args(["live", "--agent", "/bin/ls", "--out"])
        .arg(inputs.path("dynamic.img"))
        // A cache that holds nothing: the refusal comes before any package is needed.
        .arg("--cache")
        .arg(inputs.path("empty-cache"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a dynamic agent was accepted");
    for says in [
        "/bin/ls is dynamically linked",
        "ELF interpreter /lib64/ld-linux-x86-64.so.2",
        "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release -p lapterop-agent --target x86_64-unknown-linux-gnu",
    ] {
        assert!(err.contains(says), "the refusal does not say `{says}`: {err}");
    }
    assert!(!inputs.path("dynamic.img").exists());
    assert!(
        !inputs.path("empty-cache").exists(),
        "packages were fetched before the refusal"
    );
    // A static executable (busybox-static) is what `live` accepts; the other tests build with it.
    if tools_present() {
        lapterop_image_builder::elf::check_static_executable(&stand_in_agent()).unwrap();
    }
}

/// A lead password in the site config (`[lead] password_hash`, GRUB's own PBKDF2 format) locks GRUB's
/// editor and command line behind user `lead` while every entry still boots, and goes into the
/// initramfs for the agent's rescue-shell guard. The hash comes from GRUB's `grub-mkpasswd-pbkdf2`,
/// so the agent's check is proven against GRUB's format; `lead-password` makes the same kind of line;
/// a broken hash stops the build.
#[test]
fn a_lead_password_locks_grubs_editor_and_goes_into_the_initramfs() {
    if !tools_present() {
        return;
    }
    use lapterop_certificate::lead_password::{LeadHash, INITRAMFS_PATH};
    let out = Command::new("grub-mkpasswd-pbkdf2")
        .args(["-c", "1000"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(c.stdin.as_mut().unwrap(), b"Leuven-lead-2026\nLeuven-lead-2026\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let grub_hash = text.split_whitespace().last().unwrap().to_owned();
    let parsed = LeadHash::parse(&grub_hash).expect("GRUB's own hash parses");
    assert!(parsed.verify("Leuven-lead-2026") && !parsed.verify("leuven-lead-2026"));

    let inputs = Inputs::new();
    std::fs::write(
        inputs.path("site.toml"),
        format!("[station]\nsite = \"Kessel-Lo\"\n\n[lead]\npassword_hash = \"{grub_hash}\"\n"),
    )
    .unwrap();
    let (json, img) = inputs.build("locked.img", &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["lead_password"], true, "{json}");
    let menu = String::from_utf8(mtype(&img, "/boot/grub/grub.cfg")).unwrap();
    assert!(
        menu.contains(&format!("set superusers=\"lead\"\npassword_pbkdf2 lead {grub_hash}\n")),
        "{menu}"
    );
    assert_eq!(
        menu.matches("menuentry ").count(),
        menu.matches("\" --unrestricted {").count()
    );
    let mut archive = Vec::new();
    let initrd = mtype(&img, "/boot/initrd.img");
    std::io::Read::read_to_end(
        &mut zstd::stream::read::Decoder::new(initrd.as_slice()).unwrap(),
        &mut archive,
    )
    .unwrap();
    let name = format!("{INITRAMFS_PATH}\0");
    let at = archive
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .expect("the hash file in the initramfs");
    assert!(
        archive[at..]
            .windows(grub_hash.len())
            .take(4096)
            .any(|w| w == grub_hash.as_bytes()),
        "the initramfs holds another hash"
    );

    // The builder's own command makes a line GRUB's format takes.
    let mut c = Command::new(env!("CARGO_BIN_EXE_lapterop-image-builder"))
        .arg("lead-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), b"een lang wachtwoord\n").unwrap();
    let made = String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap();
    let line = made
        .lines()
        .find_map(|l| l.strip_prefix("password_hash = "))
        .unwrap()
        .trim_matches('"');
    let h = LeadHash::parse(line).unwrap();
    assert!(h.verify("een lang wachtwoord"), "{made}");
    assert!(made.starts_with("[lead]\n"), "{made}");

    // A broken hash stops the build with the reason; no image is left behind.
    std::fs::write(inputs.path("site.toml"), "[lead]\npassword_hash = \"lapterop\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lapterop-image-builder"))
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["live", "--agent"])
        .arg(stand_in_agent())
        .arg("--out")
        .arg(inputs.path("broken.img"))
        .arg("--site")
        .arg(inputs.path("site.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("[lead] password_hash"), "{err}");
    assert!(!inputs.path("broken.img").exists());
}
