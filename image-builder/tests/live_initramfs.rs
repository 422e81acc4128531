//! Integration tests with the real pinned Debian packages: download and verification, the module
//! closure with depmod, and the initramfs read back by Debian's `cpio` and rebuilt byte for byte.
//!
//! They need apt (with `apt-get update` done), dpkg-deb, depmod (kmod) and cpio. When one is missing
//! they fail if `LAPTEROP_REQUIRE_ROOT_TESTS=1` (CI) and otherwise say loudly that they were skipped.

// Test helpers outside #[test] functions may panic on any failure, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use lapterop_image_builder::debian::{self, Cache, DebianError, Lock, LockEntry};
use lapterop_image_builder::{build_initramfs, fetch_inputs, kmod, Init, InitramfsSpec, DEFAULT_INIT};

fn tools_present() -> bool {
    let on_path = |tool: &str| {
        ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(tool).exists())
    };
    let missing: Vec<&str> = ["apt-get", "dpkg-deb", "depmod", "cpio"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("needs {} (Debian packages apt, dpkg, kmod, cpio)", missing.join(", "));
    lapterop_testkit::skip(module_path!(), &msg);
    false
}

fn cache() -> Cache {
    Cache::new(debian::default_cache_dir())
}

#[test]
fn committed_lock_pins_a_kernel_and_busybox_and_the_binary_shows_it() {
    let lock = Lock::read(&debian::default_lock_path()).unwrap();
    let kernel = lock.get("kernel").unwrap();
    assert!(
        kernel.package.starts_with("linux-image-") && kernel.package.ends_with("-amd64"),
        "{kernel:?}"
    );
    assert_eq!(lock.get("busybox").unwrap().package, "busybox-static");
    // The stick's boot chain: every role `lock refresh` knows is pinned.
    for (role, root) in debian::ROOTS {
        let entry = lock.get(role).unwrap();
        let (package, arch) = debian::split_root(root);
        assert!(
            package.starts_with("linux-image") || entry.package == package,
            "{role}: {entry:?}"
        );
        assert!(entry.arch == arch || entry.arch == "all", "{role}: {entry:?}");
    }
    // The 32-bit UEFI chain comes from Debian's i386 archive.
    for role in ["shim-ia32", "helpers-ia32", "grub-ia32"] {
        assert_eq!(lock.get(role).unwrap().arch, "i386", "{role}");
    }
    assert_eq!(lock.get("shim").unwrap().package, "shim-signed");
    // The firmware packages: Architecture all, from non-free-firmware.
    for role in debian::NON_FREE_FIRMWARE_ROLES {
        let entry = lock.get(role).unwrap();
        assert!(
            entry.package.starts_with("firmware-") && entry.arch == "all",
            "{entry:?}"
        );
    }
    assert_eq!(lock.get("grub-pc").unwrap().package, "grub-pc-bin");
    let out = Command::new(env!("CARGO_BIN_EXE_lapterop-image-builder"))
        .args(["lock", "show"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&kernel.sha256) && text.contains(&kernel.version),
        "{text}"
    );
}

#[test]
fn a_version_debian_no_longer_offers_says_how_to_refresh() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let gone = LockEntry {
        role: "busybox".into(),
        package: "busybox-static".into(),
        version: "1:0.0.1-lapterop-never-existed".into(),
        arch: "amd64".into(),
        suite: "bookworm".into(),
        sha256: "0".repeat(64),
    };
    let err = Cache::new(dir.path()).fetch(&gone).unwrap_err();
    assert!(matches!(err, DebianError::NotDownloadable { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("lapterop-image-builder lock refresh") && msg.contains("0.0.1-lapterop-never-existed"),
        "{msg}"
    );
}

/// Every file under `/etc/apt` with its bytes.
fn etc_apt() -> Vec<(std::path::PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/etc/apt"), &mut out);
    out.sort();
    out
}

/// The firmware packages come from Debian's non-free-firmware component, which the host's apt
/// sources need not have: the builder's own apt state in the cache fetches them (into an empty cache
/// here, so the download really happens), the lock's sha256 checks them, and `/etc/apt` is unchanged.
#[test]
fn firmware_comes_from_non_free_firmware_through_the_builders_own_apt_state() {
    if !tools_present() {
        return;
    }
    let lock = Lock::read(&debian::default_lock_path()).unwrap();
    let entry = lock.get("fw-realtek").unwrap();
    let before = etc_apt();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let deb = cache.fetch(entry).unwrap();
    assert_eq!(debian::sha256_file(&deb).unwrap(), entry.sha256);
    assert!(etc_apt() == before, "/etc/apt changed");
    let state = cache.non_free().state_dir(debian::codename_of(&entry.suite));
    let sources = std::fs::read_to_string(state.join("sources.list")).unwrap();
    let debs: Vec<&str> = sources.lines().filter(|l| l.starts_with("deb ")).collect();
    assert!(
        !debs.is_empty() && debs.iter().all(|l| l.ends_with(" non-free-firmware")),
        "{sources}"
    );
    let unpacked = cache.extract(entry).unwrap();
    assert!(unpacked.join("lib/firmware/rtl_nic/rtl8168h-2.fw").is_file());
}

#[test]
fn refresh_resolves_the_kernel_metapackage_to_a_versioned_package() {
    if !tools_present() {
        return;
    }
    let lock = debian::refresh(&cache()).unwrap();
    let kernel = lock.get("kernel").unwrap();
    assert!(
        kernel.package.starts_with("linux-image-6") || kernel.package.starts_with("linux-image-7"),
        "{kernel:?}"
    );
    assert_ne!(kernel.package, "linux-image-amd64");
    assert!(kernel.sha256.len() == 64 && !kernel.suite.is_empty());
    // The same package name for two architectures: two roots, each resolved in its own archive.
    assert_eq!(lock.get("shim").unwrap().arch, "amd64");
    for role in ["shim-ia32", "helpers-ia32", "grub-ia32"] {
        let e = lock.get(role).unwrap();
        assert!(e.arch == "i386" && e.sha256.len() == 64 && !e.suite.is_empty(), "{e:?}");
    }
    assert_ne!(lock.get("shim").unwrap().sha256, lock.get("shim-ia32").unwrap().sha256);
    // The firmware roles resolve through the builder's non-free-firmware source.
    for role in debian::NON_FREE_FIRMWARE_ROLES {
        let entry = lock.get(role).unwrap();
        assert!(entry.arch == "all" && entry.sha256.len() == 64, "{entry:?}");
    }
    // What refresh writes, the parser reads back.
    assert_eq!(Lock::parse(&lock.render(), Path::new("refreshed")).unwrap(), lock);
}

/// The i386 packages of the 32-bit UEFI chain resolve and download on a host whose apt lists only
/// amd64 (`dpkg --add-architecture i386` not done), through the private apt state in the cache, and
/// the host's apt configuration and lists stay as they were.
#[test]
fn i386_packages_come_from_a_private_apt_state_that_leaves_the_host_alone() {
    if !tools_present() {
        return;
    }
    let foreign = || {
        let out = Command::new("dpkg")
            .arg("--print-foreign-architectures")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    if foreign().lines().any(|a| a == "i386") {
        lapterop_testkit::skip(
            module_path!(),
            "this host's apt already lists i386 (dpkg --add-architecture i386), so the private state is not used",
        );
        return;
    }
    let host_lists = || {
        let mut names: Vec<String> = std::fs::read_dir("/var/lib/apt/lists")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let (lists_before, foreign_before) = (host_lists(), foreign());
    // A cache of its own: the first use fetches the lists.
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let apt = cache.apt_for("i386", false).unwrap();
    assert!(apt.private && apt.just_updated, "{apt:?}");
    assert!(
        cache.apt_for("i386", false).unwrap()
            == debian::AptState {
                just_updated: false,
                ..apt.clone()
            }
    );
    assert!(
        !cache.apt_for("amd64", false).unwrap().private,
        "amd64 is the host's own"
    );
    let committed = Lock::read(&debian::default_lock_path()).unwrap();
    let entry = committed.get("helpers-ia32").unwrap();
    let unpacked = cache.extract(entry).unwrap();
    assert!(unpacked.join("usr/lib/shim/mmia32.efi.signed").is_file());
    // A version the lists lack is refused with the refresh advice, after one fresh look.
    let gone = LockEntry {
        version: "1+0.0-lapterop-never-existed".into(),
        sha256: "0".repeat(64),
        ..entry.clone()
    };
    let err = cache.fetch(&gone).unwrap_err();
    assert!(matches!(err, DebianError::NotDownloadable { .. }), "{err}");
    assert_eq!(host_lists(), lists_before, "the host's apt lists changed");
    assert_eq!(foreign(), foreign_before, "the host's dpkg architectures changed");
    assert!(!host_lists().iter().any(|n| n.contains("binary-i386")));
}

fn cpio_list(archive: &[u8], verbose: bool) -> String {
    let mut child = Command::new("cpio")
        .args([if verbose { "-itv" } else { "-it" }, "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = archive.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "cpio failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn live_initramfs_from_pinned_packages_is_reproducible_and_readable_by_cpio() {
    if !tools_present() {
        return;
    }
    let lock = Lock::read(&debian::default_lock_path()).unwrap();
    let inputs = fetch_inputs(&lock, &cache()).unwrap();
    let kver = inputs.kernel.kver().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("agent");
    std::fs::write(&agent, b"\x7fELF stand-in for the agent").unwrap();
    let spec = InitramfsSpec {
        kernel: inputs.kernel.clone(),
        busybox_root: inputs.busybox_root.clone(),
        modules: vec!["storage".into(), "e1000e".into()],
        agent: Some(agent),
        init: Init::Script(DEFAULT_INIT.as_bytes().to_vec()),
        extra: Vec::new(),
        extra_nodes: Vec::new(),
        zstd_level: 3,
    };
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    let built = build_initramfs(&spec, &dir.path().join("stage-a"), &a, 1_700_000_000).unwrap();
    build_initramfs(&spec, &dir.path().join("stage-b"), &b, 1_700_000_000).unwrap();
    let (bytes_a, bytes_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(bytes_a == bytes_b, "two builds from the same inputs and epoch differ");

    // The modules /init loads are the ones asked for (not built in), and their closure is shipped.
    let asked = kmod::expand_request(&spec.modules);
    assert!(built.modules.iter().all(|m| asked.contains(m)) && built.modules.contains(&"nvme".to_owned()));

    let mut archive = Vec::new();
    zstd::stream::read::Decoder::new(bytes_a.as_slice())
        .unwrap()
        .read_to_end(&mut archive)
        .unwrap();
    let names: BTreeSet<String> = cpio_list(&archive, false).lines().map(str::to_owned).collect();
    let m = format!("lib/modules/{kver}");
    for want in [
        "init".to_owned(),
        "bin/busybox".to_owned(),
        "bin/sh".to_owned(),
        "sbin/modprobe".to_owned(),
        "bin/lapterop-agent".to_owned(),
        "dev/console".to_owned(),
        "etc/lapterop/modules".to_owned(),
        format!("{m}/modules.dep"),
        format!("{m}/modules.alias"),
        format!("{m}/kernel/drivers/nvme/host/nvme.ko"),
        format!("{m}/kernel/drivers/nvme/host/nvme-core.ko"),
        format!("{m}/kernel/drivers/ata/libahci.ko"),
    ] {
        assert!(names.contains(&want), "{want} missing from the initramfs");
    }
    // Only the requested closure: no unrelated drivers.
    assert!(
        !names.iter().any(|n| n.contains("/mlx5")),
        "unrequested modules shipped"
    );

    let verbose = cpio_list(&archive, true);
    let console = verbose.lines().find(|l| l.ends_with(" dev/console")).unwrap();
    assert!(
        console.starts_with("crw-------") && console.contains("5,") && console.contains(" 1 "),
        "{console}"
    );
    assert!(
        verbose.lines().all(|l| l.contains(" root     root ")),
        "every entry is owned by root"
    );
    let init = verbose.lines().find(|l| l.ends_with(" init")).unwrap();
    assert!(init.starts_with("-rwxr-xr-x"), "{init}");

    // depmod's modules.dep inside the archive resolves nvme through its own dependency.
    let mut rest: &[u8] = &archive;
    let dep = loop {
        let mut reader = cpio::newc::Reader::new(rest).unwrap();
        if reader.entry().is_trailer() {
            panic!("modules.dep not found");
        }
        if reader.entry().name() == format!("{m}/modules.dep") {
            let mut text = String::new();
            reader.read_to_string(&mut text).unwrap();
            break text;
        }
        rest = reader.finish().unwrap();
    };
    let nvme = dep
        .lines()
        .find(|l| l.starts_with("kernel/drivers/nvme/host/nvme.ko:"))
        .unwrap();
    assert!(nvme.contains("nvme-core.ko"), "{nvme}");
}

#[test]
fn the_binary_builds_the_same_initramfs_twice_with_source_date_epoch() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("agent");
    std::fs::write(&agent, b"agent stand-in").unwrap();
    let build = |name: &str| {
        let out = dir.path().join(name);
        let status = Command::new(env!("CARGO_BIN_EXE_lapterop-image-builder"))
            .args(["initramfs", "--modules", "nvme,e1000e", "--zstd-level", "3", "--agent"])
            .arg(&agent)
            .arg("--out")
            .arg(&out)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .status()
            .unwrap();
        assert!(status.success(), "lapterop-image-builder initramfs failed");
        std::fs::read(out).unwrap()
    };
    let (first, second) = (build("one.img"), build("two.img"));
    assert!(
        first == second,
        "two runs of the binary with the same SOURCE_DATE_EPOCH differ"
    );
    assert!(
        !dir.path().join("one.img.stage").exists(),
        "the staging directory is left behind"
    );

    let mut archive = Vec::new();
    zstd::stream::read::Decoder::new(first.as_slice())
        .unwrap()
        .read_to_end(&mut archive)
        .unwrap();
    let reader = cpio::newc::Reader::new(archive.as_slice()).unwrap();
    assert_eq!(reader.entry().mtime(), 1_700_000_000, "mtime is SOURCE_DATE_EPOCH");
    let names = cpio_list(&archive, false);
    assert!(
        names.contains("/kernel/drivers/nvme/host/nvme.ko\n") && names.contains("/e1000e.ko\n"),
        "{names}"
    );
    assert!(!names.contains("/ahci.ko"), "only the requested modules");
}
