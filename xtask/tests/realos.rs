//! A real system through the whole OS image path, as a lead makes it and a laptop gets it:
//!
//! 1. `scripts/debian-reference.sh` builds a small real Debian 12 (mmdebstrap from Debian's packages:
//!    minbase, linux-image-amd64, systemd-sysv, initramfs-tools with the disk drivers listed, GRUB for
//!    x86_64-efi as `EFI/BOOT/BOOTX64.EFI`, root and `/boot/efi` by UUID, `/etc/machine-id` empty) on a
//!    2 GiB GPT reference disk whose root partition ends at the last usable sector (`sgdisk -n 2:0:0`).
//!    The finished disk is cached under `$LAPTEROP_CACHE/debian-reference/`, keyed on the script's text
//!    (its package list and settings) and its arguments, so only the first run downloads and builds.
//! 2. `lapterop-image-builder os-image pack` (the real CLI) packs it, shrinking the root to its data.
//! 3. `lapterop-agent install` (the real CLI) installs it onto two loop devices: a SMALLER disk with
//!    4096-byte logical sectors and a LARGER one with 512-byte sectors, each with its own serial, so
//!    `lapterop/machine.json` differs.
//! 4. Both installed disk files boot at the same time in QEMU (TCG) under OVMF, the 4Kn one as an NVMe
//!    namespace with 4096-byte blocks, the other on virtio-blk, with no network. The system's
//!    `lapterop-marker.service` prints one line on ttyS0 and powers off; the test checks that the root
//!    was found by its UUID (the device names differ between the two), that the partition reaches the
//!    target's last usable sector and the ext4 fills it, that the ESP was mounted by its FAT volume id,
//!    and that the hostname unit of the lead guide named the machine from `machine.json`.
//!
//! Needs root (loop devices), mmdebstrap, e2fsprogs, dosfstools, mtools, gdisk, qemu-system-x86, ovmf
//! and deb.debian.org on the first run; otherwise it fails under `LAPTEROP_REQUIRE_ROOT_TESTS=1` and says
//! loudly that it was skipped. It prints the seconds each stage took (no timing is asserted).

// Test helpers outside #[test] functions may panic on any failure, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use xtask::vm;

const MIB: u64 = 1 << 20;
/// The reference disk's size and its filesystems' ids (also in the cache key).
const REFERENCE_MIB: u64 = 2048;
const ROOT_UUID: &str = "3d1c6f0e-5b2a-4e8d-9c41-7a2f0b6d8e11";
const ESP_VOLUME_ID: &str = "1a2b3c4d";
const ESP_UUID: &str = "1A2B-3C4D";
/// Partition 2 of the reference disk starts after the 1 MiB gap and the 300 MiB ESP.
const ROOT_START: u64 = 301 * MIB;
const MARKER: &str = "LAPTEROP-REALOS-MARKER ";
const IMAGE_NAME: &str = "lapterop-test-debian";
const IMAGE_VERSION: &str = "12.0";
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| d.join(tool).is_file())
            || ["/usr/sbin", "/sbin"].iter().any(|d| Path::new(d).join(tool).is_file())
    })
}

/// Whether everything is there; otherwise a loud skip (a failure in CI).
fn tools_or_skip() -> bool {
    let test = "the real Debian system: pack, install on 4Kn and 512, boot under OVMF";
    if !xtask::vm_tools_or_skip() {
        return false;
    }
    let root = fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    if !root || !Path::new("/dev/loop-control").exists() {
        xtask::skip(test, "needs root and loop devices");
        return false;
    }
    let mut missing = Vec::new();
    for (tool, package) in [
        ("mmdebstrap", "mmdebstrap"),
        ("sgdisk", "gdisk"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("mkfs.ext4", "e2fsprogs"),
        ("resize2fs", "e2fsprogs"),
        ("losetup", "util-linux"),
    ] {
        if !on_path(tool) {
            missing.push(format!("{tool} (package {package})"));
        }
    }
    for f in [OVMF_CODE, OVMF_VARS] {
        if !Path::new(f).exists() {
            missing.push(format!("{f} (package ovmf)"));
        }
    }
    if !missing.is_empty() {
        xtask::skip(test, &format!("needs {}", missing.join(", ")));
        return false;
    }
    true
}

/// The cached reference disk, built now when the cache has none for this script and these arguments.
/// Returns its path and the seconds the build took (zero on a cache hit).
fn reference_disk() -> (PathBuf, f64) {
    let script = vm::workspace_root().join("scripts/debian-reference.sh");
    let body = fs::read(&script).unwrap();
    let mut key = blake3::Hasher::new();
    key.update(&body);
    key.update(format!("{ROOT_UUID} {ESP_VOLUME_ID} {REFERENCE_MIB}").as_bytes());
    let key = key.finalize().to_hex();
    let dir = lapterop_image_builder::debian::default_cache_dir().join("debian-reference");
    fs::create_dir_all(&dir).unwrap();
    let disk = dir.join(format!("reference-{}.raw", &key[..16]));
    if disk.exists() {
        return (disk, 0.0);
    }
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .arg(&disk)
        .args([ROOT_UUID, ESP_VOLUME_ID, &REFERENCE_MIB.to_string()])
        .env("APT_CACHE", dir.join("apt-archives"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && disk.exists(),
        "building the Debian reference disk failed: {}",
        text(&out)
    );
    (disk, started.elapsed().as_secs_f64())
}

/// A target disk file: random bytes where the image's partitions and tables land (a used laptop's
/// disk is not zeros), sparse in between.
fn target_file(path: &Path, size: u64) {
    fs::File::create(path).unwrap().set_len(size).unwrap();
    for (seek, count) in [(0, 512), (size / MIB - 16, 16)] {
        ok(Command::new("dd")
            .args([
                "if=/dev/urandom",
                "bs=1M",
                "iflag=fullblock",
                "conv=notrunc",
                "status=none",
            ])
            .arg(format!("of={}", path.display()))
            .arg(format!("seek={seek}"))
            .arg(format!("count={count}")));
    }
}

/// A loop device over a file with the given logical sector size; detached on drop.
struct Loop(String);

impl Loop {
    fn attach(file: &Path, sector: u32) -> Loop {
        Loop(ok(Command::new("losetup")
            .args(["--find", "--show", "--sector-size", &sector.to_string()])
            .arg(file)))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// One installed disk booting in QEMU under OVMF.
struct Boot {
    name: &'static str,
    child: Child,
    console: PathBuf,
    started: Instant,
}

impl Boot {
    fn start(work: &Path, name: &'static str, disk: &Path, device: &str) -> Boot {
        let vars = work.join(format!("{name}-OVMF_VARS.fd"));
        fs::copy(OVMF_VARS, &vars).unwrap();
        let console = work.join(format!("{name}-console.log"));
        let child = Command::new("qemu-system-x86_64")
            .args(["-machine", "q35", "-accel", "tcg", "-smp", "1", "-m", "768"])
            .args(["-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none"])
            .args(["-no-reboot", "-nic", "none"])
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"))
            .arg("-drive")
            .arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()))
            .arg("-drive")
            .arg(format!(
                "file={},if=none,id=disk0,format=raw,cache=unsafe",
                disk.display()
            ))
            .args(["-device", device])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting qemu-system-x86_64");
        Boot {
            name,
            child,
            console,
            started: Instant::now(),
        }
    }

    fn console(&self) -> String {
        xtask::stick::strip_escapes(&String::from_utf8_lossy(&fs::read(&self.console).unwrap_or_default()))
    }

    /// Waits for QEMU to exit (the marker unit powers off); returns the marker's fields, the seconds
    /// to the marker (as first seen) and to the exit.
    fn finish(mut self, timeout: Duration) -> (BTreeMap<String, String>, f64, f64) {
        let mut marker_at = None;
        loop {
            let console = self.console();
            if marker_at.is_none() && console.contains(" end\n") && console.contains(MARKER) {
                marker_at = Some(self.started.elapsed().as_secs_f64());
            }
            if let Some(bad) = [
                "Kernel panic",
                "emergency mode",
                "grub rescue>",
                "Gave up waiting for root",
            ]
            .iter()
            .find(|b| console.contains(*b))
            {
                let _ = self.child.kill();
                panic!("{}: `{bad}` on the console:\n{}", self.name, tail(&console));
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                let line = console
                    .lines()
                    .find_map(|l| l.split_once(MARKER).map(|(_, rest)| rest.to_owned()))
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: QEMU exited ({status}) without the marker; {err}\n{}",
                            self.name,
                            tail(&console)
                        )
                    });
                let fields = line
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                let exit = self.started.elapsed().as_secs_f64();
                return (fields, marker_at.unwrap_or(exit), exit);
            }
            if self.started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{}: no power-off within {timeout:?}:\n{}", self.name, tail(&console));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// One target: its size, sector size, the QEMU device it boots as, and what machine.json must say.
struct Target {
    name: &'static str,
    size: u64,
    sector: u32,
    device: &'static str,
    serial: &'static str,
    hostname: &'static str,
    certificate_id: &'static str,
    root_device: &'static str,
}

const TARGETS: [Target; 2] = [
    Target {
        name: "nvme-4kn-smaller",
        size: 1536 * MIB,
        sector: 4096,
        device: "nvme,drive=disk0,serial=LAPTEROP-NVME,logical_block_size=4096,physical_block_size=4096",
        serial: "5CG 4096/AB",
        hostname: "pupil-5cg-4096-ab",
        certificate_id: "019ad000-0000-7000-8000-000000004096",
        root_device: "/dev/nvme0n1p2",
    },
    Target {
        name: "virtio-512-larger",
        size: 3072 * MIB,
        sector: 512,
        device: "virtio-blk-pci,drive=disk0,serial=LAPTEROP-VIRTIO",
        serial: "PF-512.XL",
        hostname: "pupil-pf-512-xl",
        certificate_id: "019ad000-0000-7000-8000-000000000512",
        root_device: "/dev/vda2",
    },
];

/// The marker's facts for one target (see the module docs).
fn check_marker(t: &Target, m: &BTreeMap<String, String>) {
    let get = |k: &str| {
        m.get(k)
            .unwrap_or_else(|| panic!("{}: no {k}= in the marker {m:?}", t.name))
            .as_str()
    };
    let num = |k: &str| -> u64 { get(k).parse().unwrap_or_else(|_| panic!("{}: {k}={}", t.name, get(k))) };
    assert_eq!(get("root"), t.root_device, "{}: the root device", t.name);
    assert_eq!(get("uuid"), ROOT_UUID, "{}: the mounted root's filesystem UUID", t.name);
    assert_eq!(
        get("by-uuid"),
        t.root_device,
        "{}: /dev/disk/by-uuid/{ROOT_UUID}",
        t.name
    );
    assert_eq!(
        get("esp-uuid"),
        ESP_UUID,
        "{}: /boot/efi mounted by the ESP's volume id",
        t.name
    );
    assert_eq!(num("sector"), u64::from(t.sector), "{}: logical sector size", t.name);
    assert_eq!(num("disk-bytes"), t.size, "{}: the disk the guest sees", t.name);
    // GPT: the backup table (16 KiB of entries and its header) after the last usable sector.
    let ss = u64::from(t.sector);
    let last_usable = t.size / ss - 1 - 16384 / ss - 1;
    let part_bytes = (last_usable + 1 - ROOT_START / ss) * ss;
    assert_eq!(
        num("part-bytes"),
        part_bytes,
        "{}: the root partition reaches the last usable sector",
        t.name
    );
    let fs = num("fs-bytes");
    assert!(
        fs <= part_bytes && part_bytes - fs < 4096,
        "{}: ext4 of {fs} bytes in a partition of {part_bytes}: not grown to the target's size",
        t.name
    );
    let id = get("machine-id");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}: systemd made no machine-id: {id:?}",
        t.name
    );
    let json = base64_decode(get("machine"));
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "{}: machine.json read on the ESP: {e}: {}",
            t.name,
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(v["schema"], "lapterop-machine/1", "{}: {v}", t.name);
    assert_eq!(v["certificate_id"], t.certificate_id, "{}: {v}", t.name);
    assert_eq!(v["serial"], t.serial, "{}: {v}", t.name);
    assert_eq!(v["hostname"], t.hostname, "{}: {v}", t.name);
    assert_eq!(v["image"], format!("{IMAGE_NAME} {IMAGE_VERSION}"), "{}: {v}", t.name);
    assert_eq!(
        get("hostname"),
        t.hostname,
        "{}: the lead guide's hostname unit named the machine",
        t.name
    );
}

/// Standard base64 (RFC 4648 §4, with padding), as `base64 -w 0` prints it.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {s:?}"),
        }
    };
    let mut out = Vec::new();
    for chunk in s.trim_end_matches('=').as_bytes().chunks(4) {
        let n = chunk.iter().fold(0u32, |n, &c| (n << 6) | value(c)) << (6 * (4 - chunk.len()));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn a_real_debian_packs_installs_on_4kn_and_512_and_boots_by_uuid_at_full_size() {
    if !tools_or_skip() {
        return;
    }
    let (reference, built) = reference_disk();
    let bin = vm::build_debug(&["lapterop-agent", "lapterop-image-builder"]).unwrap_or_else(|e| panic!("{e}"));
    let work = tempfile::Builder::new()
        .prefix("lapterop-realos-")
        .tempdir_in(vm::target_dir_created().unwrap())
        .unwrap();
    let w = work.path();
    let key = lapterop_certificate::keys::fixture_key("real Debian test image key");
    let (key_file, pub_file) = lapterop_certificate::keys::write_keypair(&w.join("image"), &key).unwrap();

    let image = w.join("debian.osimg");
    let started = Instant::now();
    let out = Command::new(bin.join("lapterop-image-builder"))
        .args(["os-image", "pack", "--input"])
        .arg(&reference)
        .args([
            "--name",
            IMAGE_NAME,
            "--version",
            IMAGE_VERSION,
            "--level",
            "3",
            "--key",
        ])
        .arg(&key_file)
        .arg("--out")
        .arg(&image)
        .output()
        .unwrap();
    let pack = started.elapsed().as_secs_f64();
    let said = text(&out);
    assert!(out.status.success(), "os-image pack: {said}");
    assert!(
        !said.contains("machine-id"),
        "the reference's machine-id is empty, pack says: {said}"
    );
    let inspect = ok(Command::new(bin.join("lapterop-image-builder"))
        .args(["os-image", "inspect"])
        .arg(&image)
        .arg("--key")
        .arg(&pub_file));
    assert!(inspect.contains("Ext4 (4096-byte blocks)"), "{inspect}");
    lapterop_testkit::report(&format!(
        "real Debian: reference disk {built:.1} s (0 = cached), pack {pack:.1} s ({} MiB image)",
        fs::metadata(&image).unwrap().len() / MIB
    ));

    let mut installs = Vec::new();
    for t in &TARGETS {
        let file = w.join(format!("{}.img", t.name));
        target_file(&file, t.size);
        let dev = Loop::attach(&file, t.sector);
        let started = Instant::now();
        let out = Command::new(bin.join("lapterop-agent"))
            .args(["install", "--yes", "--image"])
            .arg(&image)
            .arg("--trust")
            .arg(&pub_file)
            .args([
                "--hostname",
                "pupil-{serial}",
                "--serial",
                t.serial,
                "--certificate-id",
                t.certificate_id,
            ])
            .arg(&dev.0)
            .output()
            .unwrap();
        installs.push(started.elapsed().as_secs_f64());
        let said = text(&out);
        assert!(out.status.success(), "install onto {} ({}): {said}", t.name, dev.0);
        assert!(said.contains("grown: partition 2 (ext4)"), "{}: {said}", t.name);
        lapterop_testkit::report(&format!(
            "real Debian: install onto {} {:.1} s",
            t.name,
            installs[installs.len() - 1]
        ));
    }
    // Both boots at once: one vCPU each on the 2 cores.
    let boots: Vec<Boot> = TARGETS
        .iter()
        .map(|t| Boot::start(w, t.name, &w.join(format!("{}.img", t.name)), t.device))
        .collect();
    for (t, boot) in TARGETS.iter().zip(boots) {
        let (marker, at, exit) = boot.finish(Duration::from_secs(600));
        check_marker(t, &marker);
        lapterop_testkit::report(&format!(
            "real Debian: boot of {} (parallel, TCG): marker at {at:.1} s, powered off at {exit:.1} s",
            t.name
        ));
    }
}
