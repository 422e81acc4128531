//! Integration tests of `lapterop-agent disks` and `wipe` on real loop devices (root only).
//!
//! Every device here is a loop device over a file in a temporary directory that the test created;
//! the guard detaches it on drop, also when the test panics. Without root the tests print loudly that
//! they were skipped, and fail when `LAPTEROP_REQUIRE_ROOT_TESTS=1` (CI).

// A failed setup step should stop the test with its message; helpers panic like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;

use lapterop_agent::disk::{self, Discovery, SafetyConfig};
use lapterop_agent::wipe::{engine, pattern::Fill, plan};
use lapterop_certificate::{Certificate, OutcomeStatus, RangeOp};

mod support;

use support::{agent, ok, root, run, Loop, MIB};

/// The real `lapterop-cert` built beside the agent (`cargo build -p lapterop-certificate`).
fn cert_tool() -> PathBuf {
    let p = agent().with_file_name("lapterop-cert");
    assert!(
        p.exists(),
        "{} missing: run `cargo build -p lapterop-certificate` first",
        p.display()
    );
    p
}

/// A Python with `blake3`, `rfc8785` and `cryptography`: $LAPTEROP_PYTHON, else the venv scripts/setup.sh makes.
fn python() -> PathBuf {
    std::env::var_os("LAPTEROP_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyvenv/bin/python")).filter(|p| p.exists())
        })
        .expect("set LAPTEROP_PYTHON to a python with the blake3 package (scripts/setup.sh does)")
}

/// blake3 of a file computed by an independent implementation (the Python `blake3` package).
fn independent_blake3(path: &Path) -> String {
    let script = "import blake3,sys\nh=blake3.blake3()\nf=open(sys.argv[1],'rb')\n\
                  while True:\n    b=f.read(1<<22)\n    if not b: break\n    h.update(b)\nprint(h.hexdigest())";
    ok(Command::new(python()).args(["-c", script]).arg(path))
}

fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let prefix = dir.join("station");
    ok(Command::new(cert_tool()).arg("keygen").arg("--out").arg(&prefix));
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

fn wipe(dir: &Path, key: &Path, extra: &[&str], dev: &str) -> (Output, PathBuf) {
    let cert = dir.join(format!("cert-{}.json", dev.trim_start_matches("/dev/")));
    let out = run(Command::new(agent())
        .arg("wipe")
        .args(extra)
        .args(["--yes", "--operator", "test", "--station-key"])
        .arg(key)
        .arg("--certificate")
        .arg(&cert)
        .arg(dev));
    (out, cert)
}

fn read_cert(p: &Path) -> Certificate {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn cert_verifies(cert: &Path, public: &Path) {
    let out = run(Command::new(cert_tool())
        .arg("verify")
        .arg(cert)
        .arg("--key")
        .arg(public));
    assert!(
        out.status.success(),
        "lapterop-cert verify rejected {}: {}",
        cert.display(),
        String::from_utf8_lossy(&out.stdout)
    ); // And an implementation that is not ours: RFC 8785 and Ed25519 from PyPI (certificate/tests/).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../certificate/tests/independent_verify.py");
    let out = run(Command::new(python()).arg(script).arg(cert).arg("-").arg(public));
    assert!(
        out.status.success(),
        "the independent verifier rejected {}: {}{}",
        cert.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn file_is_zero(p: &Path) -> bool {
    use std::io::Read;
    let mut f = std::fs::File::open(p).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let zero = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return true;
        }
        if buf[..n] != zero[..n] {
            return false;
        }
    }
}

#[test]
fn full_zero_wipe_reads_back_as_zeros_and_the_certificate_verifies() {
    if !root("full_zero_wipe") {
        return;
    }
    let l = Loop::new(256 * MIB, 512);
    let (key, public) = keygen(l.dir.path());
    let (out, cert) = wipe(l.dir.path(), &key, &["--pattern", "zero", "--verify", "full"], &l.dev);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(file_is_zero(&l.file), "the device reads back as zeros");
    let c = read_cert(&cert);
    let d = &c.disks[0];
    assert_eq!(d.outcome.status, OutcomeStatus::Erased);
    assert_eq!(d.capacity_bytes, 256 * MIB);
    let v = d.verification.as_ref().unwrap();
    assert_eq!(v.bytes_read, 256 * MIB);
    assert_eq!(v.readback_blake3, independent_blake3(&l.file));
    assert!(c.host.is_none());
    // The certificate names the program that ran: the blake3 of the agent binary itself.
    assert_eq!(
        c.agent.binary_blake3,
        blake3::hash(&std::fs::read(agent()).unwrap()).to_hex().to_string()
    );
    cert_verifies(&cert, &public);
}

#[test]
fn random_wipe_of_two_disks_in_parallel_one_with_4k_sectors() {
    if !root("random_wipe_two_disks") {
        return;
    }
    let l = Loop::new(32 * MIB, 4096);
    let second = Loop::new(16 * MIB, 512);
    let before = independent_blake3(&l.file);
    let (key, public) = keygen(l.dir.path());
    let cert = l.dir.path().join("two.json");
    let out = run(Command::new(agent())
        .args(["wipe", "--pattern", "random", "--passes", "2", "--yes", "--station-key"])
        .arg(&key)
        .arg("--certificate")
        .arg(&cert)
        .args([&l.dev, &second.dev]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let c = read_cert(&cert);
    assert_eq!(c.disks.len(), 2);
    for (d, lp, sector) in [(&c.disks[0], &l, 4096), (&c.disks[1], &second, 512)] {
        assert_eq!(d.device, lp.name());
        assert_eq!(d.outcome.status, OutcomeStatus::Erased);
        assert_eq!(d.logical_sector_size, sector);
        assert_eq!(d.steps.len(), 2);
        let v = d.verification.as_ref().unwrap();
        // The verified pattern is the last pass's stream, whose seed commitment differs from the first's.
        assert_eq!(v.expected, d.steps[1].pattern.clone().unwrap());
        assert_ne!(d.steps[0].pattern, d.steps[1].pattern);
        assert_eq!(v.readback_blake3, independent_blake3(&lp.file));
        assert!(!file_is_zero(&lp.file));
    }
    assert_ne!(before, independent_blake3(&l.file));
    cert_verifies(&cert, &public);
}

#[test]
fn block_ioctls_on_a_real_loop_device() {
    if !root("block_ioctls") {
        return;
    }
    let l = Loop::new(8 * MIB, 4096);
    let disk = Discovery::system().find(&l.dev).unwrap();
    assert_eq!(disk.transport, lapterop_certificate::Transport::Loop);
    assert_eq!(disk.backing_file.as_deref(), Some(l.file.to_str().unwrap()));
    let c = disk::claim(&disk, &SafetyConfig::default()).unwrap();
    assert_eq!((c.capacity_bytes, c.logical_sector_size), (8 * MIB, 4096));
    assert!(c.physical_sector_size >= 4096);
    assert!(!lapterop_agent::sys::is_read_only(&c.file).unwrap());
    // BLKZEROOUT really zeroes the range, and only it.
    lapterop_agent::sys::zero_out(&c.file, MIB, MIB).unwrap();
    let data = std::fs::read(&l.file).unwrap();
    let mib = usize::try_from(MIB).unwrap();
    assert!(data[mib..2 * mib].iter().all(|&b| b == 0));
    assert!(data[..mib].iter().any(|&b| b != 0) && data[2 * mib..3 * mib].iter().any(|&b| b != 0));
    // Unaligned ranges are refused before the kernel sees them; a second exclusive open is EBUSY.
    assert!(lapterop_agent::sys::zero_out(&c.file, 100, 512).is_err());
    let busy = lapterop_agent::sys::open_block_device(Path::new(&l.dev), lapterop_agent::sys::Access::ExclusiveRead)
        .unwrap_err();
    assert!(busy.is_busy(), "{busy}");
    assert!(busy.to_string().contains("device is in use"), "{busy}");
}

#[test]
fn mounted_and_exclusively_held_devices_are_refused_and_unchanged() {
    if !root("refusals") {
        return;
    }
    let mounted = Loop::new(32 * MIB, 512);
    ok(Command::new("mkfs.ext4").args(["-q", "-F", &mounted.dev]));
    let mnt = mounted.dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // Read-only, so that the filesystem itself does not change the bytes we compare.
    ok(Command::new("mount").args(["-o", "ro"]).arg(&mounted.dev).arg(&mnt));
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let held = Loop::new(32 * MIB, 512);
    // Another process holds the device open with O_EXCL.
    let mut holder = Command::new(python())
        .args([
            "-c",
            "import os,sys,time\nfd=os.open(sys.argv[1],os.O_RDONLY|os.O_EXCL)\nprint('held',flush=True)\ntime.sleep(60)",
            &held.dev,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "held");

    let before_mounted = independent_blake3(&mounted.file);
    let before_held = independent_blake3(&held.file);
    let (key, _) = keygen(held.dir.path());
    for (l, why) in [(&mounted, "is mounted at"), (&held, "in use")] {
        let (out, cert) = wipe(l.dir.path(), &key, &["--pattern", "zero"], &l.dev);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
        assert!(stderr.contains("nothing was written"), "{stderr}");
        assert!(!cert.exists());
    }
    // The listing says the same.
    // (Only our two devices: the listing probes each disk with an exclusive open.)
    let listing = ok(Command::new(agent()).args(["disks", "--json", &mounted.dev, &held.dev]));
    let rows: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let row = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    assert!(row(mounted.name())["refusals"][0].as_str().unwrap().contains("mounted"));
    assert!(row(held.name())["refusals"][0].as_str().unwrap().contains("in use"));
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(
        independent_blake3(&mounted.file),
        before_mounted,
        "mounted device unchanged"
    );
    assert_eq!(independent_blake3(&held.file), before_held, "held device unchanged");
}

#[test]
fn boot_stick_partition_uuid_is_refused() {
    if !root("boot_stick") {
        return;
    }
    // One MBR partition; the kernel reports its PARTUUID as <disk id>-01.
    let partition = |file: &Path| sfdisk(file, "label: dos\nlabel-id: 0x1234abcd\nstart=2048, type=83\n");
    let l = Loop::prepared(16 * MIB, 512, partition, &["--partscan"]);
    // Some kernels do not scan loop partitions; add them by hand (no PARTUUID in uevent then, so the
    // agent must read it from the table itself).
    if !Path::new(&format!("/sys/block/{0}/{0}p1", l.name())).exists() {
        ok(Command::new("partx").args(["-a", &l.dev]));
    }
    let disk = Discovery::system().find(&l.dev).unwrap();
    let cfg = SafetyConfig {
        stick_partuuids: vec!["1234abcd-01".into()],
    };
    let refused = disk::claim(&disk, &cfg).unwrap_err();
    assert!(
        refused.iter().any(|r| matches!(r, disk::Refusal::BootStick { .. })),
        "{refused:?} (partitions seen: {:?})",
        disk.partitions
    );
    assert!(
        disk::claim(&disk, &SafetyConfig::default()).is_ok(),
        "without the UUID it may be wiped"
    );
}

/// Starts a long wipe and waits until it has overwritten the start of the device.
fn start_long_wipe(l: &Loop, key: &Path, cert: &Path) -> std::process::Child {
    ok(Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=1", "oflag=direct", "status=none"])
        .arg(format!("of={}", l.dev)));
    let first = std::fs::read(&l.file).unwrap()[..4096].to_vec();
    let child = Command::new(agent())
        .args(["wipe", "--pattern", "zero", "--passes", "16", "--yes", "--station-key"])
        .arg(key)
        .arg("--certificate")
        .arg(cert)
        .arg(&l.dev)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read(&l.file).unwrap()[..4096] == first[..] {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("the wipe ended ({status}) before it was stopped: {err}");
        }
        assert!(std::time::Instant::now() < deadline, "the wipe never started writing");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

#[test]
fn killed_wipe_leaves_no_certificate_and_interrupted_wipe_is_not_erased() {
    if !root("killed_wipe") {
        return;
    }
    let l = Loop::new(256 * MIB, 512);
    let (key, public) = keygen(l.dir.path());

    let cert = l.dir.path().join("killed.json");
    let mut child = start_long_wipe(&l, &key, &cert);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.code().is_none(), "the wipe was killed, not finished ({status})");
    assert!(!cert.exists(), "a killed wipe leaves no certificate");
    let leftovers: Vec<_> = std::fs::read_dir(l.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !leftovers.iter().any(|n| n.to_string_lossy().contains("killed")),
        "{leftovers:?}"
    );

    let cert = l.dir.path().join("interrupted.json");
    let mut child = start_long_wipe(&l, &key, &cert);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let c = read_cert(&cert);
    assert_eq!(c.disks[0].outcome.status, OutcomeStatus::NotErased);
    assert!(c.disks[0].outcome.reason.as_deref().unwrap().starts_with("interrupted"));
    cert_verifies(&cert, &public);
}

#[test]
fn sampled_verify_on_a_loop_device_finds_one_planted_sector() {
    if !root("sampled_verify") {
        return;
    }
    let l = Loop::new(64 * MIB, 512);
    let disk = Discovery::system().find(&l.dev).unwrap();
    let dev = disk::claim(&disk, &SafetyConfig::default()).unwrap();
    let stop = AtomicBool::new(false);
    let pass = engine::write_pass(&dev, &Fill::Zero, &stop, &|_| {});
    assert!(pass.errors.is_empty() && pass.sync_errno.is_none());
    let p = plan::sample_plan(64 * MIB, 512, [7; 32]);
    // Plant one changed sector in the middle of a sample of section 500, and one outside every sample.
    let (lba, count) = p.samples[1000];
    let inside = lba + count / 2;
    let outside = (0..p.sectors)
        .find(|s| !p.extents.iter().any(|&(l, c)| (l..l + c).contains(s)))
        .unwrap();
    for s in [inside, outside] {
        let mut buf = engine::AlignedBuf::new(512);
        buf.get_mut(512).fill(0x5A);
        engine::BlockDevice::write_at(&dev, buf.get(512), s * 512).unwrap();
    }
    let r = engine::read_back(&dev, &p.byte_regions(), Some(&Fill::Zero), &stop, &|_| {});
    let found: Vec<(RangeOp, u64, u64)> = r.errors.iter().map(|e| (e.op, e.lba, e.count)).collect();
    assert_eq!(found, [(RangeOp::Mismatch, inside, 1)]);
    assert_eq!(r.bytes_read, p.planned_bytes());
    // And the command line's sampled mode produces a certificate the verifier accepts, and shows that
    // the sampled content changed (the device holds random data again before it starts).
    drop(dev);
    ok(Command::new("dd")
        .args([
            "if=/dev/urandom",
            "bs=1M",
            "count=64",
            "oflag=direct",
            "iflag=fullblock",
            "status=none",
        ])
        .arg(format!("of={}", l.dev)));
    let (key, public) = keygen(l.dir.path());
    let (out, cert) = wipe(l.dir.path(), &key, &["--pattern", "zero", "--verify", "sample"], &l.dev);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let c = read_cert(&cert);
    let v = c.disks[0].verification.as_ref().unwrap();
    assert!(v.sample.is_some());
    assert_ne!(v.pre_wipe_sample_blake3.as_deref(), Some(v.readback_blake3.as_str()));
    cert_verifies(&cert, &public);
}

/// `lapterop-agent run` on two loop devices from a stick directory: both disks wiped and read back, the
/// OS image installed onto the larger one, the certificate (with the laptop's audit as its host
/// section and the install record) signed into the outbox before the upload is tried; the server is
/// not there, so the certificate waits (exit 3) and nothing is lost.
#[test]
fn run_wipes_installs_and_keeps_the_certificate_when_the_server_is_away() {
    if !root("run") {
        return;
    }
    let (_work, img, stick, station) = run_stick("run test station");
    // A closed port on loopback: the upload fails at once and is retried a few times.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        stick.join("site.toml"),
        format!(
            "[station]\norganisation = \"Iedereendigitaal@Leuven\"\nsite = \"test bench\"\n\n\
             [server]\nurl = \"http://{closed}\"\n\n[wipe]\npattern = \"random\"\nverify = \"full\"\n\n\
             [install]\nimage = \"images/pupil.osimg\"\ntarget = \"largest\"\n\n[flow]\nmode = \"unattended\"\n"
        ),
    )
    .unwrap();
    let small = Loop::new(16 * MIB, 512);
    let large = Loop::new(80 * MIB, 512);
    let out = run(Command::new(agent())
        .args(["run", "--stick"])
        .arg(&stick)
        .arg("--image-key")
        .arg(&img.trust)
        .args(["--only", &small.dev, "--only", &large.dev]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("outcome=erased install=installed upload=waiting"),
        "{stdout}"
    );
    let outbox = stick.join("outbox");
    let mut certs = outbox_certificates(&stick);
    assert_eq!(certs.len(), 1, "one certificate, no receipt: {certs:?}");
    let bytes = std::fs::read(certs.pop().unwrap()).unwrap();
    let cert = lapterop_certificate::verify(&bytes, &station.verifying_key()).unwrap();
    assert_eq!(cert.overall_outcome(), OutcomeStatus::Erased);
    assert_eq!(cert.disks.len(), 2);
    // Every other disk of this machine is listed as not touched (with --only, an internal one as not
    // chosen), and none of the two that were wiped.
    let ours = [&small.dev, &large.dev].map(|d| Path::new(d).file_name().unwrap().to_str().unwrap().to_owned());
    let others: Vec<String> = lapterop_agent::disk::Discovery::system()
        .scan()
        .unwrap()
        .into_iter()
        .filter(|d| d.transport != lapterop_certificate::Transport::Loop && d.capacity_bytes > 0)
        .map(|d| d.name)
        .collect();
    let untouched: Vec<&str> = cert.not_touched.iter().map(|u| u.device.as_str()).collect();
    assert_eq!(untouched, others, "{:?}", cert.not_touched);
    assert!(cert.not_touched.iter().all(|u| !ours.contains(&u.device)));
    for u in &cert.not_touched {
        use lapterop_certificate::{Transport as T, UntouchedReason as R};
        let fixed = matches!(u.transport, T::Sata | T::Nvme | T::Virtio);
        assert!(!fixed || u.reason == R::NotChosen, "{u:?}");
        assert!(u.reason != R::BootStick, "no stick here: {u:?}");
    }
    let host = cert.host.as_ref().expect("the audit's host section");
    assert_eq!(host.device_id.len(), 64, "{}", host.device_id);
    assert!(outbox.join(format!("{}.audit.json", cert.id)).exists());
    let install = cert.install.as_ref().expect("install record");
    assert_eq!(
        install.status,
        lapterop_certificate::model::InstallStatus::Installed,
        "{install:?}"
    );
    assert_eq!(
        install.target_device,
        Path::new(&large.dev).file_name().unwrap().to_str().unwrap()
    );
    assert!(install.chunks_verified > 0);
    let v = ok(Command::new("sgdisk").arg("-v").arg(&large.dev));
    assert!(v.contains("No problems found"), "{v}");
    // The small disk was read back in full: every byte checked, none different.
    let small_rec = cert
        .disks
        .iter()
        .find(|d| Path::new(&small.dev).ends_with(&d.device))
        .unwrap();
    let ver = small_rec.verification.as_ref().unwrap();
    assert_eq!((ver.bytes_read, ver.mismatched_blocks), (16 * MIB, 0), "{ver:?}");
}

/// The image key is the one the live image carries (here `--image-key`, on the stick the key baked into
/// the initramfs), never a key file on the stick's FAT partition, which anyone can edit from a PC. A
/// stick whose `image.pub` and `install.trust` name the key that signed its image, while the baked key
/// is another, does not install it: the certificate says the install failed (not the trusted key), and
/// the target keeps only the wipe.
#[test]
fn run_never_trusts_an_image_key_on_the_stick() {
    if !root("run_never_trusts_an_image_key_on_the_stick") {
        return;
    }
    let (_work, img, stick, station) = run_stick("trust test station");
    // What someone with the stick and a PC would do: put their own key beside their own image.
    std::fs::copy(&img.trust, stick.join("image.pub")).unwrap();
    std::fs::write(
        stick.join("site.toml"),
        "[station]\nsite = \"test bench\"\n\n[wipe]\npattern = \"zero\"\n\n\
         [install]\nimage = \"images/pupil.osimg\"\ntrust = \"image.pub\"\n\n[flow]\nmode = \"unattended\"\n",
    )
    .unwrap();
    let target = Loop::new(80 * MIB, 512);
    let out = run(Command::new(agent())
        .args(["run", "--stick"])
        .arg(&stick)
        .arg("--image-key")
        .arg(&img.other)
        .args(["--only", &target.dev]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("install.trust = \"image.pub\" in site.toml is not read"),
        "{stdout}"
    );
    assert!(stdout.contains("outcome=erased install=failed"), "{stdout}");
    let certs = outbox_certificates(&stick);
    let cert = lapterop_certificate::verify(&std::fs::read(&certs[0]).unwrap(), &station.verifying_key()).unwrap();
    let install = cert.install.as_ref().expect("install record");
    assert_eq!(
        install.status,
        lapterop_certificate::model::InstallStatus::Failed,
        "{install:?}"
    );
    assert!(
        install
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("does not verify with the trusted key")),
        "{install:?}"
    );
    // Nothing of the image reached the disk: it reads back as the zero pattern of the wipe.
    let mut bytes = vec![0u8; 4 << 20];
    std::io::Read::read_exact(&mut std::fs::File::open(&target.dev).unwrap(), &mut bytes).unwrap();
    assert!(
        bytes.iter().all(|&b| b == 0),
        "the image was written although its key is not trusted"
    );
}

/// A Lapterop stick that is not mounted (an MBR, a FAT32 partition at 1 MiB with
/// `lapterop/stick.id`, laid out like `lapterop-image-builder live` makes it) is recognised from its
/// own partition table and file system, read-only, and refused: by `disk::claim` (used by `wipe`,
/// `install` and `run`) and by the `wipe` command; its bytes stay as they were.
#[test]
fn an_unmounted_lapterop_stick_is_recognised_and_refused() {
    if !root("an_unmounted_lapterop_stick_is_recognised_and_refused") {
        return;
    }
    let stick = |file: &Path| {
        sfdisk(file, "label: dos\nstart=2048, type=c, bootable\n");
        let part = format!("{}@@1M", file.display());
        ok(Command::new("mkfs.vfat")
            .args(["-F", "32", "-n", "LAPTEROP", "--offset", "2048"])
            .arg(file)
            .arg(((40 * MIB - MIB) / 1024).to_string()));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lapterop")).unwrap();
        std::fs::write(dir.path().join("lapterop/stick.id"), "0123abcd\n").unwrap();
        ok(Command::new("mcopy")
            .args(["-s", "-i", &part])
            .arg(dir.path().join("lapterop"))
            .arg("::")
            .env("MTOOLS_SKIP_CHECK", "1"));
    };
    let l = Loop::prepared(40 * MIB, 512, stick, &[]);
    let before = digest(&l.file);
    let disk = Discovery::system().find(&l.dev).unwrap();
    assert!(
        disk.partitions.is_empty(),
        "no partition nodes: found through the whole disk only"
    );
    let refused = disk::claim(&disk, &SafetyConfig::default()).unwrap_err();
    assert!(
        matches!(&refused[..], [disk::Refusal::BootStick { why }] if why.contains("stick 0123abcd") && why.contains("1048576")),
        "{refused:?}"
    );
    let work = tempfile::tempdir().unwrap();
    let (key, _) = keygen(work.path());
    let (out, cert) = wipe(work.path(), &key, &[], &l.dev);
    assert!(!out.status.success(), "the wipe command must refuse the stick");
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Lapterop boot stick"), "{text}");
    assert!(!cert.exists(), "no certificate for a disk that was not wiped");
    assert_eq!(digest(&l.file), before, "the stick is unchanged");

    // The same disk with the marker file removed is an ordinary disk again.
    let part = format!("{}@@1M", l.file.display());
    ok(Command::new("mdel")
        .args(["-i", &part, "::lapterop/stick.id"])
        .env("MTOOLS_SKIP_CHECK", "1"));
    // The file changed under the loop device: drop what its page cache holds of the old contents.
    ok(Command::new("blockdev").args(["--flushbufs", &l.dev]));
    assert!(disk::claim(&disk, &SafetyConfig::default()).is_ok());
}

/// A stick directory for `run` in a new temporary directory: the reference OS image in `images/` and
/// a station key pair made from `label`.
fn run_stick(
    label: &str,
) -> (
    tempfile::TempDir,
    support::osimage::Reference,
    PathBuf,
    lapterop_certificate::SigningKey,
) {
    let work = tempfile::tempdir().unwrap();
    let img = support::osimage::Reference::ext4();
    let stick = work.path().join("stick/lapterop");
    std::fs::create_dir_all(stick.join("images")).unwrap();
    std::fs::copy(&img.image, stick.join("images/pupil.osimg")).unwrap();
    let station = lapterop_certificate::keys::fixture_key(label);
    lapterop_certificate::keys::write_keypair(&stick.join("station"), &station).unwrap();
    (work, img, stick, station)
}

/// The JSON files of the stick's outbox except the audits beside the certificates (a receipt counts).
fn outbox_certificates(stick: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(stick.join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".json") && !name.contains(".audit.")
        })
        .collect()
}

/// Writes the partition table `script` (sfdisk's input format) into the disk image `file`.
fn sfdisk(file: &Path, script: &str) {
    let mut c = Command::new("sfdisk")
        .arg("--quiet")
        .arg(file)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut c.stdin.take().unwrap(), script.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "sfdisk failed");
}

fn digest(file: &Path) -> blake3::Hash {
    blake3::hash(&std::fs::read(file).unwrap())
}

/// Every verification read goes through the claimed device, opened `O_DIRECT`: it sees what is on the
/// disk, not what the page cache remembers. The test makes the cache stale on purpose (it reads the
/// loop device buffered, keeps it open, then changes the backing file underneath): a buffered read
/// still sees the old bytes, the claimed device the new ones.
#[test]
fn verification_reads_bypass_the_page_cache() {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    if !root("verification_reads_bypass_the_page_cache") {
        return;
    }
    let l = Loop::new(8 * MIB, 512);
    let mut holder = std::fs::File::open(&l.dev).unwrap();
    let mut cached = vec![0u8; 4096];
    holder.read_exact(&mut cached).unwrap();
    let fresh = vec![if cached[0] == 0xA5 { 0x5A } else { 0xA5 }; 4096];
    let backing = std::fs::OpenOptions::new().write(true).open(&l.file).unwrap();
    backing.write_all_at(&fresh, 0).unwrap();
    backing.sync_all().unwrap();
    let mut buffered = vec![0u8; 4096];
    std::fs::File::open(&l.dev).unwrap().read_exact(&mut buffered).unwrap();
    assert_eq!(
        buffered, cached,
        "premise: the loop device's page cache holds the old bytes"
    );

    let disk = Discovery::system().find(&l.dev).unwrap();
    let claimed = disk::claim(&disk, &SafetyConfig::default()).unwrap();
    let flags = nix::fcntl::fcntl(&claimed.file, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(flags & nix::libc::O_DIRECT, 0, "the claimed device is not O_DIRECT");
    let mut buf = engine::AlignedBuf::new(4096);
    engine::BlockDevice::read_at(&claimed, buf.get_mut(4096), 0).unwrap();
    assert_eq!(
        buf.get(4096),
        &fresh[..],
        "the verification read came from the page cache"
    );
    drop(holder);
}

/// A read-only device and a device in use as swap are refused on real loop devices (beside the
/// mounted and exclusively held ones above), with the reason, and nothing is written.
#[test]
fn read_only_and_swap_devices_are_refused_and_unchanged() {
    if !root("read_only_and_swap_devices_are_refused_and_unchanged") {
        return;
    }
    let ro = Loop::prepared(8 * MIB, 512, |_| {}, &["-r"]);
    let before = digest(&ro.file);
    let disk = Discovery::system().find(&ro.dev).unwrap();
    let refused = disk::claim(&disk, &SafetyConfig::default()).unwrap_err();
    assert!(
        refused.iter().any(|r| matches!(r, disk::Refusal::ReadOnly)),
        "{refused:?}"
    );
    let (key, _) = keygen(ro.dir.path());
    let (out, cert) = wipe(ro.dir.path(), &key, &[], &ro.dev);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!cert.exists());
    assert_eq!(digest(&ro.file), before);

    // The kernel may page out to a swap area in use at any time (under a cgroup's memory limit even
    // with RAM free), so the area covers only the device's first 64 KiB: the kernel writes pages
    // 1-15 of it at most, never its header page (page 0) and never past it; a wipe would write both.
    let swap = Loop::new(16 * MIB, 512);
    ok(Command::new("mkswap").arg("-q").arg(&swap.dev).arg("64"));
    ok(Command::new("swapon").arg("--priority=0").arg(&swap.dev));
    struct SwapOff(String);
    impl Drop for SwapOff {
        fn drop(&mut self) {
            let _ = Command::new("swapoff").arg(&self.0).status();
        }
    }
    let guard = SwapOff(swap.dev.clone());
    let untouchable = |file: &Path| {
        let bytes = std::fs::read(file).unwrap();
        (blake3::hash(&bytes[..4096]), blake3::hash(&bytes[64 * 1024..]))
    };
    let before = untouchable(&swap.file);
    let disk = Discovery::system().find(&swap.dev).unwrap();
    let refused = disk::claim(&disk, &SafetyConfig::default()).unwrap_err();
    assert!(
        refused.iter().any(|r| matches!(r, disk::Refusal::Swap { .. })),
        "{refused:?}"
    );
    let (out, cert) = wipe(swap.dir.path(), &key, &[], &swap.dev);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!cert.exists());
    drop(guard);
    assert_eq!(
        untouchable(&swap.file),
        before,
        "a swap device in use was written: its header page or the bytes past its swap area changed"
    );
}

struct Quiet;

impl lapterop_agent::wipe::Progress for Quiet {
    fn phase(&self, _label: &str, _total: u64) {}
    fn update(&self, _done: u64) {}
    fn finish(&self, _outcome: &lapterop_certificate::DiskOutcome) {}
}

/// An eMMC with two boot areas, as loop devices, with the kernel's switches for the boot areas in a
/// directory of the test: the writable one is overwritten and read back, and its `force_ro` is lifted
/// only meanwhile; the one the chip locks for good is left as it was; both are in the eMMC's record,
/// which is then `erased-with-exceptions` and passes the certificate's rules.
#[test]
fn an_emmcs_boot_areas_are_wiped_with_it_unless_the_chip_locks_them() {
    if !root("an_emmcs_boot_areas_are_wiped_with_it_unless_the_chip_locks_them") {
        return;
    }
    use lapterop_agent::wipe::{self, boot_areas, PatternChoice, VerifyChoice, WipeSpec};
    use lapterop_certificate::{ExceptionKind, Transport};
    let user = Loop::new(8 * MIB, 512);
    let boot0 = Loop::new(MIB, 512);
    let boot1 = Loop::new(MIB, 512);
    let locked_before = digest(&boot1.file);
    let sys = tempfile::tempdir().unwrap();
    let area = |l: &Loop, name: &str, lock: &str| {
        let d = sys.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("force_ro"), "1\n").unwrap();
        std::fs::write(d.join("ro_lock_until_next_power_on"), lock).unwrap();
        disk::BootArea {
            name: name.into(),
            path: l.dev.clone().into(),
            capacity_bytes: MIB,
            force_ro: true,
        }
    };
    let mut emmc = Discovery::system().find(&user.dev).unwrap();
    emmc.transport = Transport::Mmc;
    emmc.boot_areas = vec![area(&boot0, "mmcblk0boot0", "0\n"), area(&boot1, "mmcblk0boot1", "2\n")];
    emmc.rpmb_bytes = Some(4 * MIB);
    let spec = WipeSpec {
        pattern: PatternChoice::Zero,
        passes: 1,
        verify: VerifyChoice::Full,
        discard: wipe::DiscardChoice::Never,
        after_purge: wipe::AfterPurge::Overwrite,
    };
    let stop = AtomicBool::new(false);
    let claimed = disk::claim(&emmc, &SafetyConfig::default()).unwrap();
    let mut record = wipe::wipe_device(&claimed, &emmc, &spec, &stop, &Quiet).unwrap();
    drop(claimed);
    assert_eq!(record.outcome.status, OutcomeStatus::Erased);
    let areas = boot_areas::wipe(&emmc, sys.path(), &spec, &stop, &Quiet);
    boot_areas::attach(&mut record, areas);

    assert!(file_is_zero(&boot0.file), "the writable boot area is overwritten");
    assert_eq!(digest(&boot1.file), locked_before, "the locked one is left alone");
    for n in ["mmcblk0boot0", "mmcblk0boot1"] {
        let ro = std::fs::read_to_string(sys.path().join(n).join("force_ro")).unwrap();
        assert_eq!(ro.trim(), "1", "{n}: force_ro is back");
    }
    let [b0, b1] = &record.boot_areas[..] else {
        panic!("{:?}", record.boot_areas)
    };
    assert_eq!(
        (b0.device.as_str(), b0.outcome.status),
        ("mmcblk0boot0", OutcomeStatus::Erased)
    );
    assert_eq!(b0.verification.as_ref().unwrap().bytes_read, MIB);
    assert_eq!(b1.outcome.status, OutcomeStatus::NotErased);
    assert!(
        b1.outcome.reason.as_deref().unwrap().contains("permanently"),
        "{:?}",
        b1.outcome
    );
    assert_eq!(record.outcome.status, OutcomeStatus::ErasedWithExceptions);
    let e = &record.outcome.exceptions[0];
    assert_eq!(e.kind, ExceptionKind::BootAreaNotErased);
    assert!(
        e.detail
            .starts_with("boot area mmcblk0boot1 (1048576 bytes): NOT ERASED"),
        "{}",
        e.detail
    );
    assert_eq!(record.rpmb_bytes, Some(4 * MIB));

    // The certificate rules hold, and an eMMC claiming `erased` over a locked boot area breaks them.
    let mut c = lapterop_certificate::sample::erased_laptop("0".repeat(32));
    c.issued_at = lapterop_certificate::now_utc();
    c.install = None;
    c.disks = vec![record.clone()];
    let v = lapterop_certificate::validate::invariants(&c);
    assert!(v.is_empty(), "{v:?}");
    record.outcome.status = OutcomeStatus::Erased;
    record.outcome.exceptions.clear();
    c.disks = vec![record];
    let v = lapterop_certificate::validate::invariants(&c);
    assert!(
        v.iter().any(|v| v.to_string().contains("a boot area was not erased")),
        "{v:?}"
    );
}

/// After the verified overwrite an SSD is discarded (its own step, with what a sample read then),
/// a spinning disk is not; the loop device's discard punches the file's blocks out, so the sample
/// reads zeros and the certificate still verifies.
#[test]
fn an_ssd_is_discarded_after_its_verified_overwrite_and_a_hard_disk_is_not() {
    if !root("an_ssd_is_discarded_after_its_verified_overwrite_and_a_hard_disk_is_not") {
        return;
    }
    use lapterop_agent::wipe::{self, PatternChoice, VerifyChoice, WipeSpec};
    use lapterop_certificate::{StepKind, StepOutcome};
    let spec = WipeSpec {
        pattern: PatternChoice::Random,
        passes: 1,
        verify: VerifyChoice::Full,
        discard: wipe::DiscardChoice::Ssd,
        after_purge: wipe::AfterPurge::Overwrite,
    };
    for rotational in [false, true] {
        let l = Loop::new(8 * MIB, 512);
        let mut d = Discovery::system().find(&l.dev).unwrap();
        d.rotational = rotational;
        let claimed = disk::claim(&d, &SafetyConfig::default()).unwrap();
        let r = wipe::wipe_device(&claimed, &d, &spec, &AtomicBool::new(false), &Quiet).unwrap();
        drop(claimed);
        assert_eq!(r.outcome.status, OutcomeStatus::Erased, "{:?}", r.outcome);
        let discard = r.steps.iter().find(|s| s.kind == StepKind::Discard);
        if rotational {
            assert!(discard.is_none(), "a hard disk is not discarded");
            assert!(!file_is_zero(&l.file), "the random pattern stays");
            continue;
        }
        let s = discard.expect("the SSD is discarded");
        assert_eq!((s.outcome, s.bytes), (StepOutcome::Completed, 8 * MIB));
        let ev = s.firmware.as_ref().unwrap();
        assert_eq!(ev.command, format!("BLKDISCARD 0+{}", 8 * MIB));
        assert!(ev.final_state.as_deref().unwrap().ends_with("all zeros"), "{ev:?}");
        assert!(file_is_zero(&l.file), "the loop device punched the blocks out");
        let mut c = lapterop_certificate::sample::erased_laptop("0".repeat(32));
        c.issued_at = lapterop_certificate::now_utc();
        c.install = None;
        c.disks = vec![r];
        let v = lapterop_certificate::validate::invariants(&c);
        assert!(v.is_empty(), "{v:?}");
    }
}

/// The storage tree of a real eMMC laptop, the Acer Swift 1 SF114-32 (how it was rebuilt from the
/// laptop's published boot log: `fixtures/storage/README.md`), read by `lapterop-agent disks --root`:
/// the eMMC with its two boot areas and its RPMB, the M.2 SATA SSD, and no loop device.
#[test]
fn a_real_emmc_laptop_tree_gives_its_emmc_with_boot_areas_and_its_ssd() {
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/storage/acer-swift-sf114-32");
    let out = Command::new(agent())
        .args(["disks", "--json", "--root"])
        .arg(&tree)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mmcblk0", "sda"], "{rows:#?}");
    let (emmc, ssd) = (&rows[0], &rows[1]);
    assert_eq!(emmc["transport"], "mmc");
    assert_eq!(emmc["capacity_bytes"], 62_537_072_640u64);
    assert_eq!(emmc["model"], "DF4064", "an eMMC's CID name is its model");
    assert_eq!(emmc["card"], false, "the soldered eMMC is the laptop's own disk");
    assert_eq!(emmc["rpmb_bytes"], 4u64 << 20);
    assert_eq!(emmc["partitions"].as_array().unwrap().len(), 4);
    let areas: Vec<(&str, u64, bool)> = emmc["boot_areas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap(),
                a["capacity_bytes"].as_u64().unwrap(),
                a["force_ro"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        areas,
        [("mmcblk0boot0", 4 << 20, true), ("mmcblk0boot1", 4 << 20, true)]
    );
    assert_eq!(ssd["transport"], "sata");
    assert_eq!(ssd["capacity_bytes"], 976_773_168u64 * 512);
    assert_eq!(ssd["model"], "WDC WDS500G2B0B-");
    assert_eq!(ssd["firmware"], "90WD");
    assert_eq!(ssd["rotational"], false);
    assert_eq!(ssd["partitions"].as_array().unwrap().len(), 3);
    for r in &rows {
        assert_eq!(r["refusals"], serde_json::json!([]), "{r:#}");
    }
}

/// `scripts/record-storage-tree.sh` records what discovery reads: this machine's tree, read back
/// through `Discovery::at`, gives the same disks as the machine itself (serials redacted).
#[test]
fn a_recorded_tree_of_this_machine_gives_the_same_disks() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/record-storage-tree.sh");
    ok(Command::new("bash").arg(&script).arg(&tree));
    let view = |d: &lapterop_agent::disk::Disk| {
        (
            d.name.clone(),
            d.transport,
            d.capacity_bytes,
            d.model.clone(),
            (d.rotational, d.removable, d.read_only, d.card),
            (d.logical_sector_size, d.physical_sector_size),
            d.partitions
                .iter()
                .map(|p| (p.name.clone(), p.partuuid.clone(), p.mounts.clone()))
                .collect::<Vec<_>>(),
            d.boot_areas.clone(),
            d.mounts.clone(),
        )
    };
    // Loop devices come and go as other tests run; neither side lists them.
    let live: Vec<_> = Discovery::system().scan().unwrap().iter().map(view).collect();
    let recorded: Vec<_> = Discovery::at(&tree).scan().unwrap().iter().map(view).collect();
    assert!(!live.is_empty(), "this machine has no disk to compare");
    let live_names: Vec<_> = live.iter().map(|v| v.0.clone()).collect();
    let recorded: Vec<_> = recorded.into_iter().filter(|v| live_names.contains(&v.0)).collect();
    assert_eq!(recorded.len(), live.len(), "the recorded tree misses a disk");
    for (l, r) in live.iter().zip(&recorded) {
        let mut r = r.clone();
        // Boot areas carry their /dev path, which is under the tree.
        for (a, b) in r.7.iter_mut().zip(&l.7) {
            a.path = b.path.clone();
        }
        assert_eq!(l, &r);
    }
    for d in Discovery::at(&tree).scan().unwrap() {
        assert!(
            d.serial.as_deref().is_none_or(|s| s == "redacted"),
            "{}: the recorder kept a serial",
            d.name
        );
    }
}
