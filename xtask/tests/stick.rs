//! Boots the real stick image (built by the image builder's library from the pinned Debian packages and
//! the static agent) from an emulated USB stick on xHCI, through real firmware, under TCG:
//!
//! - SeaBIOS: MBR boot code -> GRUB core.img -> menu -> kernel -> the agent as PID 1;
//! - OVMF with Secure Boot enforced and Microsoft's keys: shim -> signed GRUB -> signed kernel, which
//!   must report Secure Boot on and lockdown `[integrity]`;
//! - OVMF with Secure Boot and only a snake-oil key: the firmware must refuse shim;
//! - 32-bit OVMF (Bay Trail and Cherry Trail laptops and tablets): `BOOTIA32.EFI` -> GRUB ia32 -> the
//!   64-bit kernel in EFI mixed mode (`/sys/firmware/efi/fw_platform_size` is 32), without Secure Boot
//!   and with Secure Boot and Microsoft's 2011 keys; with only the Windows key in db, shim is refused;
//! - for comparison, the same kernel and initramfs booted directly (`-kernel`/`-initrd`).
//!
//! A boot passes when the agent prints `LAPTEROP-AGENT-READY` having mounted the stick (found by its
//! marker file) on /stick; the menu's command line gets `lapterop.mode=rescue`, so the agent then
//! opens the rescue shell, where the test reads the marker back through the guest's own mount and
//! powers off. Each boot prints its stage timings. Boots run one at a time (2 cores).
//!
//! Needs qemu-system-x86, ovmf, ovmf-ia32, grub-common (grub-mkimage), mtools, kmod, dpkg and apt with
//! Debian reachable, and for ia32 Secure Boot the Python package virt-firmware (`LAPTEROP_PYTHON`);
//! when missing the tests fail under `LAPTEROP_REQUIRE_ROOT_TESTS=1` and otherwise say loudly that they
//! were skipped.

// Test helpers outside #[test] functions may panic on any failure, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use xtask::stick::{self, BootTimes, Firmware, StickOptions, StickVm};
use xtask::vm::{self, VmSpec};

/// One boot at a time: three TCG guests at once on 2 cores would each take minutes.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Built {
    image: PathBuf,
    stick_id: String,
    image_bytes: u64,
    build: Duration,
    _dir: tempfile::TempDir,
}

static STICK: OnceLock<Built> = OnceLock::new();

/// The test stick's lead password (`[lead] password_hash` in its site config).
const LEAD_PASSWORD: &str = "Kessel-Lo lead 2026";

fn tools_or_skip(firmware: Firmware) -> bool {
    if !xtask::vm_tools_or_skip() {
        return false;
    }
    let mut missing = stick::missing_firmware(firmware);
    let on_path = |tool: &str| {
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
    };
    for (tool, package) in [("grub-mkimage", "grub-common"), ("mtype", "mtools")] {
        if !on_path(tool) {
            missing.push(format!("{tool} (package {package})"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    xtask::skip("the stick boot test", &format!("needs {}", missing.join(", ")));
    false
}

/// The stick, built once per test run with the real static agent.
fn stick() -> &'static Built {
    STICK.get_or_init(|| {
        let started = Instant::now();
        let agent = vm::build_static_agent().unwrap_or_else(|e| panic!("{e}"));
        let agent_built = started.elapsed();
        let dir = tempfile::Builder::new()
            .prefix("lapterop-stick-test-")
            .tempdir_in(vm::target_dir_created().unwrap())
            .unwrap();
        let image = dir.path().join("stick.img");
        // A lead password (GRUB's default 10,000 rounds keep the guest's checks quick under TCG).
        let hash = lapterop_certificate::lead_password::LeadHash::with_salt(LEAD_PASSWORD, vec![0x5a; 64], 10_000);
        let site = dir.path().join("site.toml");
        std::fs::write(&site, format!("[lead]\npassword_hash = \"{hash}\"\n")).unwrap();
        let opts = StickOptions {
            // Rescue mode needs no flow; loglevel 7 shows the kernel banner and its Secure Boot line.
            extra_cmdline: "console=ttyS0,115200 lapterop.mode=rescue loglevel=7".into(),
            site: Some(site),
            zstd_level: 3,
            ..StickOptions::default()
        };
        let summary = stick::build_stick(&agent, &image, &opts).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "stick: {} bytes ({:.1} MiB), initrd {:.1} MiB, stick id {}; agent build {:.1} s, image build {:.1} s",
            summary.image_bytes,
            summary.image_bytes as f64 / 1048576.0,
            summary.initrd_bytes as f64 / 1048576.0,
            summary.stick_id,
            agent_built.as_secs_f64(),
            (started.elapsed() - agent_built).as_secs_f64()
        );
        Built {
            image,
            stick_id: summary.stick_id,
            image_bytes: summary.image_bytes,
            build: started.elapsed(),
            _dir: dir,
        }
    })
}

/// A private copy of the stick (the guest mounts it read-write).
fn copy_of_stick(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("lapterop-stick-copy-")
        .tempdir_in(vm::target_dir_created().unwrap())
        .unwrap();
    let path = dir.path().join(name);
    std::fs::copy(&stick().image, &path).unwrap();
    (dir, path)
}

fn devices() -> VmSpec {
    VmSpec {
        nic: Some("e1000e".into()),
        memory_mib: 512,
        ..VmSpec::default()
    }
}

/// What a decoy's GRUB config prints if it is ever run.
const DECOY: &str = "DECOY-GRUB-CONFIG-RAN";

/// A donated laptop's own disk that pretends to be the stick (issue 15, point 2): an MBR and a FAT
/// partition at 1 MiB holding `lapterop/stick.id` with the real stick's id (it is on the stick's
/// kernel command line for anyone to read), `boot/grub/grub.cfg` and `EFI/debian/grub.cfg` of its own
/// that print [`DECOY`] and boot nothing.
fn decoy_disk(dir: &Path, stick_id: &str) -> PathBuf {
    let file = dir.join("decoy.raw");
    std::fs::File::create(&file).unwrap().set_len(64 << 20).unwrap();
    let mut c = std::process::Command::new("sfdisk")
        .arg("--quiet")
        .arg(&file)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut c.stdin.take().unwrap(),
        b"label: dos\nstart=2048, type=c, bootable\n",
    )
    .unwrap();
    assert!(c.wait().unwrap().success(), "sfdisk");
    let ok = |cmd: &mut std::process::Command| {
        let out = cmd.env("MTOOLS_SKIP_CHECK", "1").output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(std::process::Command::new("mkfs.vfat")
        .args(["-F", "32", "--offset", "2048"])
        .arg(&file)
        .arg(((63u64 << 20) / 1024).to_string()));
    let tree = dir.join("decoy-files");
    let cfg = format!("echo {DECOY}\nsleep 30\n");
    for (path, text) in [
        ("lapterop/stick.id", format!("{stick_id}\n")),
        ("boot/grub/grub.cfg", cfg.clone()),
        ("EFI/debian/grub.cfg", cfg),
    ] {
        let p = tree.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    for top in ["lapterop", "boot", "EFI"] {
        ok(std::process::Command::new("mcopy")
            .args(["-s", "-i"])
            .arg(format!("{}@@1M", file.display()))
            .arg(tree.join(top))
            .arg("::"));
    }
    file
}

/// Boots the stick, waits for the agent, checks the stick from inside, powers off. Returns the
/// console and the timings. The laptop's own disk is a [`decoy_disk`]: GRUB must boot the stick's own
/// menu and the agent must mount the stick, never the decoy.
fn boot_to_agent(firmware: Firmware) -> (String, BootTimes) {
    let dir = tempfile::Builder::new()
        .prefix("lapterop-decoy-")
        .tempdir_in(vm::target_dir_created().unwrap())
        .unwrap();
    let decoy = decoy_disk(dir.path(), &stick().stick_id);
    let mut spec = devices();
    spec.disks = vec!["virtio:64M".parse().unwrap()];
    let (console, t) = boot_and_check(firmware.name(), true, |image| {
        StickVm::start(image, firmware, &spec, std::slice::from_ref(&decoy)).unwrap_or_else(|e| panic!("{e}"))
    });
    assert!(
        !console.contains(DECOY),
        "GRUB ran the decoy disk's config under {}:\n{}",
        firmware.name(),
        tail(&console)
    );
    (console, t)
}

/// Starts a VM on a private copy of the stick with `start`, waits for GRUB (when `grub`), the kernel
/// and the agent, checks the stick from inside and powers off.
fn boot_and_check(name: &str, grub: bool, start: impl FnOnce(&Path) -> StickVm) -> (String, BootTimes) {
    let built = stick();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_dir, image) = copy_of_stick("stick.img");
    let mut vm = start(&image);
    let mut t = BootTimes::default();
    // Generous limits: the machines are shared; the timings printed below are what a boot takes.
    let step = Duration::from_secs(150);
    let wait =
        |vm: &mut StickVm, what: &str, limit: Duration| vm.wait_for(what, limit).unwrap_or_else(|e| panic!("{e}"));
    if grub {
        t.grub = Some(wait(&mut vm, "GNU GRUB", step));
        // The editor is locked behind the lead password: a wrong one is refused ("access denied",
        // after GRUB's one-second penalty), then the menu's default entry still boots.
        vm.send("e").unwrap();
        wait(&mut vm, "Enter username:", Duration::from_secs(30));
        vm.send("lead\r").unwrap();
        wait(&mut vm, "Enter password:", Duration::from_secs(30));
        vm.send("not the password\r").unwrap();
        wait(&mut vm, "access denied", Duration::from_secs(60));
        // GRUB redraws the menu (its countdown stopped at the first key): Enter boots the default.
        std::thread::sleep(Duration::from_secs(2));
        vm.send("\r").unwrap();
    }
    t.kernel = Some(wait(&mut vm, "Linux version", step));
    t.agent_ready = Some(wait(&mut vm, "LAPTEROP-AGENT-READY", step));
    // The rescue shell asks for the lead password (echo off) and refuses a wrong one.
    wait(&mut vm, "Lead password:", Duration::from_secs(60));
    vm.send("guessed\n").unwrap();
    wait(&mut vm, "wrong password (2 more tries)", Duration::from_secs(60));
    vm.send(&format!("{LEAD_PASSWORD}\n")).unwrap();
    wait(&mut vm, "rescue shell (type", Duration::from_secs(60));
    // The shell computes the end marker, so the terminal's echo of the typed line cannot match it.
    // FW is the firmware's word size as the kernel saw it (32 for ia32 UEFI: EFI mixed mode), or
    // `none` after a BIOS boot.
    vm.send(
        "echo \"MARKER=$(cat /stick/lapterop/stick.id) LOCKDOWN=$(cat /sys/kernel/security/lockdown)\"; \
         echo \"FW=$(cat /sys/firmware/efi/fw_platform_size 2>/dev/null || echo none)\"; \
         echo \"FWPATH=$(cat /sys/module/firmware_class/parameters/path) E1000E=$(cat /sys/module/e1000e/initstate)\"; \
         ls /stick/lapterop; echo CHECKS-$((40+2))\n",
    )
    .unwrap();
    vm.wait_for("CHECKS-42", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    vm.send("poweroff -f\n").unwrap();
    let (status, off) = vm.wait_exit(Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    t.exit = Some(off);
    let console = vm.console();
    assert!(
        !console.contains(LEAD_PASSWORD) && !console.contains("guessed"),
        "a typed password was echoed:\n{}",
        tail(&console)
    );
    eprintln!(
        "{name}: build {:.1} s (once), image {} bytes; {t}; QEMU {status}",
        built.build.as_secs_f64(),
        built.image_bytes
    );
    // The agent found the stick by its marker file and mounted it (a USB disk, first partition).
    let mounted = console
        .lines()
        .find(|l| l.contains("lapterop: stick ") && l.contains(" mounted on /stick"))
        .unwrap_or_else(|| panic!("the agent did not mount the stick:\n{}", tail(&console)));
    assert!(mounted.contains("sda1"), "{mounted}");
    assert!(
        console.contains(&format!("MARKER={} ", built.stick_id)),
        "the guest read another marker:\n{}",
        tail(&console)
    );
    for name in ["stick.id", "outbox"] {
        assert!(
            console.lines().any(|l| l.split_whitespace().any(|w| w == name)),
            "ls /stick/lapterop lacks {name}"
        );
    }
    assert!(
        console.contains(&format!("lapterop.stick={}", built.stick_id)),
        "the kernel command line lacks the stick id"
    );
    // The NIC's driver is not in the initramfs: it came from the stick's FAT after the mount (signed
    // by Debian, so lockdown loads it too), and the firmware loader looks on the stick.
    let loaded = console
        .lines()
        .find(|l| l.contains("lapterop: stick modules:"))
        .unwrap_or_else(|| panic!("the agent did not load the stick's modules:\n{}", tail(&console)));
    assert!(
        loaded
            .split_whitespace()
            .any(|w| w.trim_matches(['(', ')']) == "e1000e"),
        "{loaded}"
    );
    assert!(
        console.contains("FWPATH=/stick/lapterop/firmware E1000E=live"),
        "firmware path or e1000e state:\n{}",
        tail(&console)
    );
    (console, t)
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn stick_is_within_its_budget_without_os_images() {
    if !tools_or_skip(Firmware::Bios) {
        return;
    }
    let built = stick();
    lapterop_testkit::report(&format!(
        "stick image without OS images: {} bytes ({:.1} MiB)",
        built.image_bytes,
        built.image_bytes as f64 / f64::from(1u32 << 20)
    ));
    assert!(
        built.image_bytes <= lapterop_image_builder::live::MAX_BASE_IMAGE,
        "{} bytes",
        built.image_bytes
    );
    assert_eq!(std::fs::metadata(&built.image).unwrap().len(), built.image_bytes);
}

#[test]
fn seabios_boots_grub_from_the_mbr_and_the_agent_mounts_the_stick() {
    if !tools_or_skip(Firmware::Bios) {
        return;
    }
    let (console, _) = boot_to_agent(Firmware::Bios);
    assert!(
        console.contains("LOCKDOWN=[none] integrity confidentiality"),
        "{}",
        tail(&console)
    );
    assert!(console.contains("FW=none"), "{}", tail(&console));
}

#[test]
fn ovmf_secure_boot_with_microsoft_keys_boots_shim_grub_kernel_in_lockdown() {
    if !tools_or_skip(Firmware::UefiSecureBoot) {
        return;
    }
    let (console, _) = boot_to_agent(Firmware::UefiSecureBoot);
    assert!(
        console.contains("secureboot: Secure boot enabled"),
        "{}",
        tail(&console)
    );
    assert!(
        console.contains("LOCKDOWN=none [integrity] confidentiality"),
        "{}",
        tail(&console)
    );
    assert!(console.contains("FW=64"), "{}", tail(&console));
}

/// 32-bit UEFI without Secure Boot: the firmware runs `BOOTIA32.EFI` (shim ia32), which runs
/// `grubia32.efi`; GRUB finds its menu on the stick, not on the decoy disk, with the lead password
/// locking its editor; the 64-bit kernel starts from the 32-bit firmware through the EFI handover
/// protocol (mixed mode), and the agent reaches user space and mounts the stick.
#[test]
fn ovmf_ia32_boots_bootia32_and_the_64_bit_kernel_in_efi_mixed_mode() {
    if !tools_or_skip(Firmware::Ia32Uefi) {
        return;
    }
    let (console, _) = boot_to_agent(Firmware::Ia32Uefi);
    assert!(console.contains("FW=32"), "not a 32-bit UEFI boot:\n{}", tail(&console));
    assert!(
        console.contains("secureboot: Secure boot disabled"),
        "{}",
        tail(&console)
    );
    assert!(
        console.contains("LOCKDOWN=[none] integrity confidentiality"),
        "{}",
        tail(&console)
    );
}

/// 32-bit UEFI with Secure Boot and only Microsoft's 2011 keys, as a Bay Trail tablet ships: the
/// firmware accepts the ia32 shim's UEFI CA 2011 signature, shim accepts Debian's GRUB ia32, GRUB the
/// kernel, which runs in mixed mode and in lockdown; its db (as the kernel logs it) has the 2011 CA and
/// not the 2023 one.
#[test]
fn ovmf_ia32_secure_boot_with_microsoft_2011_keys_boots_shim_grub_kernel_in_lockdown() {
    if !tools_or_skip(Firmware::Ia32SecureBoot) {
        return;
    }
    let (console, _) = boot_to_agent(Firmware::Ia32SecureBoot);
    assert!(console.contains("FW=32"), "not a 32-bit UEFI boot:\n{}", tail(&console));
    assert!(
        console.contains("secureboot: Secure boot enabled"),
        "{}",
        tail(&console)
    );
    assert!(
        console.contains("LOCKDOWN=none [integrity] confidentiality"),
        "{}",
        tail(&console)
    );
    assert!(
        console.contains("Loaded X.509 cert 'Microsoft Corporation UEFI CA 2011"),
        "the kernel did not see the 2011 CA in db:\n{}",
        tail(&console)
    );
    assert!(
        !console.contains("Microsoft UEFI CA 2023"),
        "db has the 2023 CA, so this boot does not prove the 2011 signature"
    );
}

/// The peer for the timings: the same kernel and initramfs (read back from the stick with mtools)
/// booted directly with `-kernel`/`-initrd`, the stick attached the same way, no firmware boot path
/// and no GRUB.
#[test]
fn direct_kernel_boot_of_the_same_kernel_and_initrd_for_comparison() {
    if !tools_or_skip(Firmware::Bios) {
        return;
    }
    let built = stick();
    let dir = tempfile::Builder::new()
        .prefix("lapterop-direct-")
        .tempdir_in(vm::target_dir_created().unwrap())
        .unwrap();
    let (kernel, initrd) = stick::read_boot_files(&built.image, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let direct = stick::DirectBoot {
        kernel,
        initrd,
        append: format!(
            "console=tty0 console=ttyS0,115200 lapterop.stick={} quiet lapterop.mode=rescue loglevel=7",
            built.stick_id
        ),
    };
    boot_and_check("direct kernel (-kernel/-initrd)", false, |image| {
        StickVm::start_direct(image, &direct, &devices(), &[]).unwrap_or_else(|e| panic!("{e}"))
    });
}

/// Boots `firmware`, which does not trust shim's CA: it must refuse shim at once, and GRUB never runs.
fn refuses_shim(firmware: Firmware) {
    let built = stick();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_dir, image) = copy_of_stick("stick.img");
    let mut vm = StickVm::start(&image, firmware, &devices(), &[]).unwrap_or_else(|e| panic!("{e}"));
    let (which, at) = vm
        .wait_for_any(&["Access Denied", "Security Violation"], Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}"));
    let console = vm.console();
    drop(vm);
    eprintln!(
        "{}: refused after {:.1} s ({}); stick {}",
        firmware.name(),
        at.as_secs_f64(),
        ["Access Denied", "Security Violation"][which],
        built.stick_id
    );
    assert!(!console.contains("GNU GRUB"), "GRUB ran although shim is not trusted");
    assert!(!console.contains("LAPTEROP-AGENT-READY"));
    assert!(Path::new(&image).exists());
}

#[test]
fn ovmf_with_snakeoil_keys_refuses_shim() {
    if !tools_or_skip(Firmware::UefiSnakeoil) {
        return;
    }
    refuses_shim(Firmware::UefiSnakeoil);
}

/// 32-bit UEFI with Secure Boot whose db has Microsoft's Windows key but not the third-party UEFI CA
/// (switched off, as on "Secured-core" PCs): the ia32 firmware really checks, and refuses shim.
#[test]
fn ovmf_ia32_without_the_third_party_ca_refuses_shim() {
    if !tools_or_skip(Firmware::Ia32WindowsOnly) {
        return;
    }
    refuses_shim(Firmware::Ia32WindowsOnly);
}
