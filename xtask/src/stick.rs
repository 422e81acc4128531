//! Boots a stick image through real firmware, the way a laptop does: the image is a USB mass-storage
//! device on an xHCI controller (`-device qemu-xhci -device usb-storage,bootindex=1`), and the
//! firmware is SeaBIOS, OVMF, or OVMF with Secure Boot enforced, for x64 or for ia32 (the 32-bit UEFI
//! of Bay Trail and Cherry Trail laptops and tablets, on the same x86_64 QEMU).
//!
//! [`StickVm::start`] starts QEMU with the serial console on its stdin/stdout: the console is written
//! to a file the harness reads, and [`StickVm::send`] types on it (the rescue shell reads it).
//! [`StickVm::wait_for`] waits for a line on the console and fails at once on a refusal or a crash
//! (`Access Denied`, `Security Violation`, `Kernel panic`, `grub rescue>`); [`StickVm::wait_exit`]
//! waits for the guest to power off. QEMU is ended through its own handle (its PID) when the value is
//! dropped, whatever happened.
//!
//! Secure Boot follows `shared/research/imaging.md` §5.2: `-machine q35,smm=on`, the secure-boot OVMF
//! code read-only on pflash 0, a fresh copy of a variable store on pflash 1 (Debian's `.ms` store has
//! Microsoft's 2011 keys enrolled and Secure Boot on; `.snakeoil` trusts only a test key, so shim must
//! be refused), `-global driver=cfi.pflash01,property=secure,value=on`, `-global ICH9-LPC.disable_s3=1`.
//!
//! Debian's `ovmf-ia32` has one code image, built with SMM and Secure Boot support
//! (`OVMF32_CODE_4M.secboot.fd`, so every ia32 machine gets the SMM settings above), and one empty
//! variable store (`OVMF32_VARS_4M.fd`: no keys, Secure Boot off). For Secure Boot the harness enrols
//! Microsoft's keys in a fresh copy of it with `virt-fw-vars` (PyPI `virt-firmware`, which ships the
//! certificates): Microsoft's 2011 KEK and the db a laptop of that age has ([`Firmware::enrolled_db`]).

use lapterop_certificate::io::io_err;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lapterop_image_builder::{debian, live};

use crate::vm::{self, VmError, VmSpec};

/// Console text that ends a boot at once: the firmware refused a signature, or something crashed.
pub const FATAL: &[&str] = &["Access Denied", "Security Violation", "Kernel panic", "grub rescue>"];

/// Which firmware boots the stick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// QEMU's default SeaBIOS: GRUB i386-pc from the MBR.
    Bios,
    /// OVMF without Secure Boot.
    Uefi,
    /// OVMF with Secure Boot enforced and Microsoft's keys enrolled (`OVMF_VARS_4M.ms.fd`).
    UefiSecureBoot,
    /// OVMF with Secure Boot enforced and only a test key enrolled (`OVMF_VARS_4M.snakeoil.fd`): shim
    /// must be refused.
    UefiSnakeoil,
    /// 32-bit OVMF (`ovmf-ia32`) with its empty variable store, Secure Boot off: runs
    /// `\EFI\BOOT\BOOTIA32.EFI`, and the 64-bit kernel starts in EFI mixed mode.
    Ia32Uefi,
    /// 32-bit OVMF with Secure Boot enforced and Microsoft's 2011 keys enrolled, as such laptops ship:
    /// KEK "Microsoft Corporation KEK CA 2011"; db "Microsoft Windows Production PCA 2011" and
    /// "Microsoft Corporation UEFI CA 2011" (the one that signs shim).
    Ia32SecureBoot,
    /// 32-bit OVMF with Secure Boot enforced and only Microsoft's Windows key in db (the third-party
    /// UEFI CA switched off, as on "Secured-core" PCs): shim must be refused.
    Ia32WindowsOnly,
}

/// Where Debian's `ovmf` and `ovmf-ia32` packages install their firmware.
pub const OVMF_DIR: &str = "/usr/share/OVMF";

/// The owner GUID Microsoft's certificates are enrolled under (`MicrosoftVendor` in virt-firmware and
/// edk2).
pub const MICROSOFT_OWNER: &str = "77fa9abd-0359-4d32-bd60-28f4e78f784b";

impl Firmware {
    /// (code, variable store) in [`OVMF_DIR`], or `None` for SeaBIOS. For the firmware with
    /// [`Firmware::enrolled_db`], the store is the empty template the keys are enrolled into.
    pub fn ovmf_files(self) -> Option<(&'static str, &'static str)> {
        match self {
            Firmware::Bios => None,
            Firmware::Uefi => Some(("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd")),
            Firmware::UefiSecureBoot => Some(("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd")),
            Firmware::UefiSnakeoil => Some(("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.snakeoil.fd")),
            Firmware::Ia32Uefi | Firmware::Ia32SecureBoot | Firmware::Ia32WindowsOnly => {
                Some(("OVMF32_CODE_4M.secboot.fd", "OVMF32_VARS_4M.fd"))
            }
        }
    }

    /// The Debian package that ships [`Firmware::ovmf_files`].
    pub fn package(self) -> &'static str {
        if self.ia32() {
            "ovmf-ia32"
        } else {
            "ovmf"
        }
    }

    /// Whether this is 32-bit UEFI.
    pub fn ia32(self) -> bool {
        matches!(
            self,
            Firmware::Ia32Uefi | Firmware::Ia32SecureBoot | Firmware::Ia32WindowsOnly
        )
    }

    /// Whether this firmware enforces Secure Boot.
    pub fn secure_boot(self) -> bool {
        matches!(
            self,
            Firmware::UefiSecureBoot | Firmware::UefiSnakeoil | Firmware::Ia32SecureBoot | Firmware::Ia32WindowsOnly
        )
    }

    /// Whether the code image needs SMM (`-machine q35,smm=on` and secure pflash): every Secure Boot
    /// build, which is the only ia32 one Debian ships.
    pub fn needs_smm(self) -> bool {
        self.secure_boot() || self.ia32()
    }

    /// Whether this firmware must refuse shim (it does not trust the CA that signed it).
    pub fn must_refuse(self) -> bool {
        matches!(self, Firmware::UefiSnakeoil | Firmware::Ia32WindowsOnly)
    }

    /// The certificates enrolled in db (virt-firmware's names under `certs/microsoft.com/`), with
    /// Microsoft's OEM PK and KEK CA 2011, into a fresh copy of the empty store; `None` when the
    /// store is used as Debian ships it.
    pub fn enrolled_db(self) -> Option<&'static [&'static str]> {
        match self {
            Firmware::Ia32SecureBoot => Some(&["windows-2011", "ms-uefi-2011"]),
            Firmware::Ia32WindowsOnly => Some(&["windows-2011"]),
            _ => None,
        }
    }

    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "seabios",
            Firmware::Uefi => "ovmf",
            Firmware::UefiSecureBoot => "ovmf-secureboot-ms",
            Firmware::UefiSnakeoil => "ovmf-secureboot-snakeoil",
            Firmware::Ia32Uefi => "ovmf-ia32",
            Firmware::Ia32SecureBoot => "ovmf-ia32-secureboot-ms2011",
            Firmware::Ia32WindowsOnly => "ovmf-ia32-secureboot-windows-only",
        }
    }

    /// The firmware for a `--firmware` name of `cargo xtask stick-boot`.
    pub fn from_arg(arg: &str) -> Option<Firmware> {
        Some(match arg {
            "bios" => Firmware::Bios,
            "uefi" => Firmware::Uefi,
            "secureboot" => Firmware::UefiSecureBoot,
            "snakeoil" => Firmware::UefiSnakeoil,
            "ia32" => Firmware::Ia32Uefi,
            "ia32-secureboot" => Firmware::Ia32SecureBoot,
            "ia32-windows-only" => Firmware::Ia32WindowsOnly,
            _ => return None,
        })
    }
}

/// The names [`Firmware::from_arg`] takes.
pub const FIRMWARE_ARGS: &str = "bios, uefi, secureboot, snakeoil, ia32, ia32-secureboot or ia32-windows-only";

/// What `firmware` needs that is missing, each with what to install (empty when it can run).
pub fn missing_firmware(firmware: Firmware) -> Vec<String> {
    let mut missing: Vec<String> = firmware
        .ovmf_files()
        .map(|(code, vars)| {
            [code, vars]
                .iter()
                .map(|f| Path::new(OVMF_DIR).join(f))
                .filter(|p| !p.is_file())
                .map(|p| format!("{} (Debian package {})", p.display(), firmware.package()))
                .collect()
        })
        .unwrap_or_default();
    if firmware.enrolled_db().is_some() && virt_firmware_certs().is_err() {
        missing.push(format!(
            "the Python package virt-firmware for {} (scripts/setup.sh's ensure_python_venv installs it and sets \
             LAPTEROP_PYTHON)",
            python().display()
        ));
    }
    missing
}

/// The Python with virt-firmware: `$LAPTEROP_PYTHON` (the venv scripts/setup.sh makes), else `python3`.
fn python() -> PathBuf {
    std::env::var_os("LAPTEROP_PYTHON")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from)
}

/// The directory of the Microsoft certificates virt-firmware ships (`virt/firmware/certs/microsoft.com`).
fn virt_firmware_certs() -> Result<PathBuf, VmError> {
    let out = Command::new(python())
        .args([
            "-c",
            "import pathlib, virt.firmware; print(pathlib.Path(virt.firmware.__file__).parent / 'certs' / 'microsoft.com')",
        ])
        .output()
        .map_err(|e| VmError::Spec(format!("running {}: {e}", python().display())))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !dir.is_dir() {
        return Err(VmError::Spec(format!(
            "{} has no virt-firmware package ({}); run scripts/setup.sh's ensure_python_venv, or pip install virt-firmware",
            python().display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(dir)
}

/// Writes to `out` the empty variable store `template` with Secure Boot on: Microsoft's OEM PK,
/// "Microsoft Corporation KEK CA 2011", and `db` (virt-firmware's certificate names), by
/// `python -m virt.firmware.vars` (`virt-fw-vars`). Nothing else is set, so the firmware starts from
/// the same state as with Debian's own `.ms` store.
pub fn enroll_microsoft_keys(template: &Path, out: &Path, db: &[&str]) -> Result<(), VmError> {
    let certs = virt_firmware_certs()?;
    let mut cmd = Command::new(python());
    cmd.args(["-m", "virt.firmware.vars", "--input"])
        .arg(template)
        .arg("--output")
        .arg(out)
        .args([
            "--enroll-microsoft",
            "--microsoft-kek",
            "2011",
            "--no-microsoft",
            "--secure-boot",
        ]);
    for cert in db {
        cmd.args(["--add-db", MICROSOFT_OWNER])
            .arg(certs.join(format!("{cert}.pem")));
    }
    let result = cmd
        .output()
        .map_err(|e| VmError::Spec(format!("running {}: {e}", python().display())))?;
    if !result.status.success() || !out.is_file() {
        return Err(VmError::Spec(format!(
            "virt-fw-vars could not enrol the keys into {}: {}",
            out.display(),
            String::from_utf8_lossy(&result.stderr).trim()
        )));
    }
    Ok(())
}

/// The QEMU arguments that choose the machine, the firmware and the stick (without memory, console
/// and the extra devices). `vars` is the writable copy of the variable store for OVMF.
pub fn firmware_and_stick_args(firmware: Firmware, stick: &Path, vars: Option<&Path>) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let machine = if firmware.needs_smm() { "q35,smm=on" } else { "q35" };
    a.extend(["-machine".into(), machine.into()]);
    if let (Some((code, _)), Some(vars)) = (firmware.ovmf_files(), vars) {
        if firmware.needs_smm() {
            a.extend([
                "-global".into(),
                "driver=cfi.pflash01,property=secure,value=on".into(),
                "-global".into(),
                "ICH9-LPC.disable_s3=1".into(),
            ]);
        }
        a.extend([
            "-drive".into(),
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                Path::new(OVMF_DIR).join(code).display()
            ),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        ]);
    }
    a.extend([
        "-drive".into(),
        format!("file={},if=none,id=stick,format=raw,cache=unsafe", stick.display()),
        "-device".into(),
        "qemu-xhci,id=xhci".into(),
        "-device".into(),
        "usb-storage,bus=xhci.0,drive=stick,removable=on,bootindex=1".into(),
    ]);
    a
}

/// A direct kernel boot (no firmware boot path, no GRUB), for comparison.
#[derive(Debug, Clone)]
pub struct DirectBoot {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub append: String,
}

/// A running stick VM.
#[derive(Debug)]
pub struct StickVm {
    child: Child,
    stdin: Option<ChildStdin>,
    console: PathBuf,
    started: Instant,
    firmware: Firmware,
    qmp: Option<crate::qmp::Qmp>,
    work: tempfile::TempDir,
}

/// Moments on the console, measured from QEMU's start.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootTimes {
    /// GRUB's menu appeared (firmware done).
    pub grub: Option<Duration>,
    /// The kernel printed its banner (needs `loglevel` of 6 or more on the command line).
    pub kernel: Option<Duration>,
    /// The agent printed `LAPTEROP-AGENT-READY`.
    pub agent_ready: Option<Duration>,
    /// QEMU exited.
    pub exit: Option<Duration>,
}

impl std::fmt::Display for BootTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
        write!(
            f,
            "firmware -> GRUB {}, kernel banner {}, agent ready {}, powered off {}",
            s(self.grub),
            s(self.kernel),
            s(self.agent_ready),
            s(self.exit)
        )
    }
}

impl StickVm {
    /// Starts QEMU on `stick` (used in place: the guest writes its outbox there) with `firmware`, and
    /// the disks (`disk_files`, one per `devices.disks` entry), NIC, guestfwd rules, SMBIOS values and
    /// memory of `devices` (its command, agent and module fields are not used).
    pub fn start(
        stick: &Path,
        firmware: Firmware,
        devices: &VmSpec,
        disk_files: &[PathBuf],
    ) -> Result<StickVm, VmError> {
        StickVm::spawn(stick, firmware, Vec::new(), devices, disk_files)
    }

    /// For comparison: boots `direct`'s kernel and initramfs with `-kernel`/`-initrd` (SeaBIOS's
    /// loader, no GRUB), with the stick attached the same way so the agent can find it.
    pub fn start_direct(
        stick: &Path,
        direct: &DirectBoot,
        devices: &VmSpec,
        disk_files: &[PathBuf],
    ) -> Result<StickVm, VmError> {
        let extra = vec![
            "-kernel".to_owned(),
            direct.kernel.display().to_string(),
            "-initrd".to_owned(),
            direct.initrd.display().to_string(),
            "-append".to_owned(),
            direct.append.clone(),
        ];
        StickVm::spawn(stick, Firmware::Bios, extra, devices, disk_files)
    }

    fn spawn(
        stick: &Path,
        firmware: Firmware,
        extra: Vec<String>,
        devices: &VmSpec,
        disk_files: &[PathBuf],
    ) -> Result<StickVm, VmError> {
        let missing = missing_firmware(firmware);
        if !missing.is_empty() {
            return Err(VmError::Spec(format!(
                "{} needs {}; install it and retry",
                firmware.name(),
                missing.join(", ")
            )));
        }
        let work = tempfile::Builder::new()
            .prefix("lapterop-stick-")
            .tempdir_in(vm::target_dir_created()?)
            .map_err(io_err("creating a temporary directory in", &vm::target_dir()))?;
        let vars = match firmware.ovmf_files() {
            Some((_, store)) => {
                let copy = work.path().join("OVMF_VARS.fd");
                let src = Path::new(OVMF_DIR).join(store);
                match firmware.enrolled_db() {
                    Some(db) => enroll_microsoft_keys(&src, &copy, db)?,
                    None => {
                        fs::copy(&src, &copy).map_err(io_err("copying", &src))?;
                    }
                }
                Some(copy)
            }
            None => None,
        };
        let console = work.path().join("console.log");
        let qmp_socket = work.path().join("qmp.sock");
        let out = fs::File::create(&console).map_err(io_err("creating", &console))?;
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(firmware_and_stick_args(firmware, stick, vars.as_deref()))
            .args(extra)
            .args(vm::headless_args(devices.memory_mib))
            .args(["-chardev", "stdio,id=ser0,signal=off", "-serial", "chardev:ser0"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()))
            .args(vm::qemu_disk_and_device_args(devices, disk_files)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out))
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| VmError::QemuMissing("qemu-system-x86_64".to_owned(), e))?;
        let stdin = child.stdin.take();
        Ok(StickVm {
            child,
            stdin,
            console,
            started,
            firmware,
            qmp: None,
            work,
        })
    }

    /// The QMP connection to this QEMU (made on first use): keys on the laptop's keyboard, pictures of
    /// its screen.
    pub fn qmp(&mut self) -> Result<&mut crate::qmp::Qmp, VmError> {
        if self.qmp.is_none() {
            let socket = self.work.path().join("qmp.sock");
            self.qmp = Some(crate::qmp::Qmp::connect(&socket, Duration::from_secs(30))?);
        }
        self.qmp
            .as_mut()
            .ok_or_else(|| VmError::Spec("no QMP connection".into()))
    }

    /// A file in this VM's working directory (removed with it).
    pub fn work_file(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// The firmware this VM boots with.
    pub fn firmware(&self) -> Firmware {
        self.firmware
    }

    /// The serial console so far, with `\r` and terminal escape sequences (GRUB's menu drawing)
    /// removed.
    pub fn console(&self) -> String {
        let raw = fs::read(&self.console).unwrap_or_default();
        strip_escapes(&String::from_utf8_lossy(&raw))
    }

    /// The serial console so far as QEMU wrote it (escape sequences included).
    pub fn raw_console(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until the console contains `needle`; returns the time since QEMU started. Fails at once
    /// when a [`FATAL`] string appears first (unless `needle` is one), when QEMU exits, or after
    /// `timeout` from now.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<Duration, VmError> {
        self.wait_for_any(&[needle], timeout).map(|(_, t)| t)
    }

    /// Like [`StickVm::wait_for`] for several needles: returns the index of the first one found.
    pub fn wait_for_any(&mut self, needles: &[&str], timeout: Duration) -> Result<(usize, Duration), VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console();
            if let Some(i) = needles.iter().position(|n| text.contains(n)) {
                return Ok((i, self.started.elapsed()));
            }
            if let Some(bad) = FATAL.iter().find(|f| text.contains(*f)) {
                return Err(VmError::Refused {
                    what: (*bad).to_owned(),
                    tail: tail(&text, 30),
                });
            }
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(io_err("waiting for", std::path::Path::new("qemu-system-x86_64")))?
            {
                return Err(VmError::NoMarker {
                    status: format!("{status} before `{}` appeared{}", needles.join("` or `"), self.stderr()),
                    tail: tail(&text, 30),
                });
            }
            if Instant::now() > deadline {
                return Err(VmError::Timeout {
                    timeout,
                    tail: format!("(waiting for `{}`)\n{}", needles.join("` or `"), tail(&text, 30)),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `text` on the serial console.
    pub fn send(&mut self, text: &str) -> Result<(), VmError> {
        let io = io_err(
            "writing to the serial console of",
            std::path::Path::new("qemu-system-x86_64"),
        );
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| VmError::Spec("the serial console is closed".into()))?;
        stdin.write_all(text.as_bytes()).map_err(io)?;
        Ok(stdin.flush().map_err(io)?)
    }

    /// Waits for QEMU to exit (the guest powered off; `-no-reboot` turns a reboot into an exit too);
    /// returns its status and the time since it started.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(ExitStatus, Duration), VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(io_err("waiting for", std::path::Path::new("qemu-system-x86_64")))?
            {
                return Ok((status, self.started.elapsed()));
            }
            if Instant::now() > deadline {
                return Err(VmError::Timeout {
                    timeout,
                    tail: format!("(waiting for the guest to power off)\n{}", tail(&self.console(), 30)),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// QEMU's exit status if it has exited (the guest powered off), without waiting.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>, VmError> {
        Ok(self
            .child
            .try_wait()
            .map_err(io_err("waiting for", std::path::Path::new("qemu-system-x86_64")))?)
    }

    /// QEMU's own error output, if it has exited (for error messages).
    fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut text);
        }
        if text.trim().is_empty() {
            String::new()
        } else {
            format!("; QEMU said: {}", text.trim())
        }
    }
}

impl Drop for StickVm {
    fn drop(&mut self) {
        // Our own child, ended through its handle (its PID), never by name.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes `\r` and ANSI escape sequences (`ESC [ params final`, `ESC x`) from console text.
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => {
                if chars.next() == Some('[') {
                    // Parameters and intermediates, then one final byte in @..~.
                    for p in chars.by_ref() {
                        if ('@'..='~').contains(&p) {
                            break;
                        }
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Options of a test stick.
#[derive(Debug, Clone, Default)]
pub struct StickOptions {
    /// `--extra-cmdline`.
    pub extra_cmdline: String,
    /// `--site`, `--station-key`, `--image-key`.
    pub site: Option<PathBuf>,
    /// The station's private key.
    pub station_key: Option<PathBuf>,
    /// The image key's public half.
    pub image_key: Option<PathBuf>,
    /// OS images to carry.
    pub os_images: Vec<PathBuf>,
    /// A fixed stick id.
    pub stick_id: Option<String>,
    /// zstd level of the initramfs (3 builds fast; 19 is the release default).
    pub zstd_level: i32,
}

/// Builds a stick image at `out` from the pinned packages and `agent` (a static binary), with the
/// image builder's library (the same code as `lapterop-image-builder live`), timestamps at
/// `SOURCE_DATE_EPOCH` or 0.
pub fn build_stick(agent: &Path, out: &Path, opts: &StickOptions) -> Result<live::LiveSummary, VmError> {
    if vm::has_interpreter(agent)? {
        return Err(VmError::NotStatic(agent.to_owned()));
    }
    let lock = debian::Lock::read(&debian::default_lock_path())?;
    let cache = debian::Cache::new(debian::default_cache_dir());
    let inputs = live::fetch_live_inputs(&lock, &cache).map_err(|e| VmError::Stick(e.to_string()))?;
    let epoch = lapterop_image_builder::initramfs::source_date_epoch().map_err(|e| VmError::Stick(e.to_string()))?;
    let mut spec = live::LiveSpec::new(agent.to_owned(), epoch);
    spec.extra_cmdline = opts.extra_cmdline.clone();
    spec.site = opts.site.clone();
    spec.station_key = opts.station_key.clone();
    spec.image_key = opts.image_key.clone();
    spec.os_images = opts.os_images.clone();
    spec.stick_id = opts.stick_id.clone();
    spec.zstd_level = if opts.zstd_level == 0 { 3 } else { opts.zstd_level };
    let work = out.with_extension("work");
    let built = live::build_live(&spec, &inputs, out, &work);
    let _ = fs::remove_dir_all(&work);
    built.map_err(|e| VmError::Stick(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_stripped_from_the_console() {
        assert_eq!(
            strip_escapes("\u{1b}[H\u{1b}[J\u{1b}[1;1H  Booting `Lapterop'\r\n\u{1b}[?25hok\u{1b}=x"),
            "  Booting `Lapterop'\nokx"
        );
    }

    #[test]
    fn secure_boot_args_follow_the_recipe() {
        let a = firmware_and_stick_args(
            Firmware::UefiSecureBoot,
            Path::new("/t/stick.img"),
            Some(Path::new("/t/vars.fd")),
        )
        .join(" ");
        assert!(a.starts_with("-machine q35,smm=on "), "{a}");
        assert!(a.contains("-global driver=cfi.pflash01,property=secure,value=on -global ICH9-LPC.disable_s3=1"));
        assert!(a.contains("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"));
        assert!(a.contains("if=pflash,format=raw,unit=1,file=/t/vars.fd"));
        assert!(a.ends_with(
            "-device qemu-xhci,id=xhci -device usb-storage,bus=xhci.0,drive=stick,removable=on,bootindex=1"
        ));
        let bios = firmware_and_stick_args(Firmware::Bios, Path::new("/t/s.img"), None).join(" ");
        assert!(bios.starts_with("-machine q35 -drive file=/t/s.img"), "{bios}");
        assert!(!bios.contains("pflash"));
        assert_eq!(
            Firmware::UefiSnakeoil.ovmf_files(),
            Some(("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.snakeoil.fd"))
        );
    }

    #[test]
    fn ia32_firmware_is_the_smm_build_with_its_own_store() {
        // ovmf-ia32 ships only the SMM (secboot) code: even without Secure Boot the machine needs SMM.
        let plain =
            firmware_and_stick_args(Firmware::Ia32Uefi, Path::new("/t/s.img"), Some(Path::new("/t/v.fd"))).join(" ");
        assert!(plain.starts_with("-machine q35,smm=on "), "{plain}");
        assert!(
            plain.contains("driver=cfi.pflash01,property=secure,value=on"),
            "{plain}"
        );
        assert!(
            plain.contains("readonly=on,file=/usr/share/OVMF/OVMF32_CODE_4M.secboot.fd"),
            "{plain}"
        );
        assert!(!Firmware::Ia32Uefi.secure_boot() && Firmware::Ia32Uefi.enrolled_db().is_none());
        // Secure Boot: the shim's CA in db, or (the negative case) only the Windows one.
        assert_eq!(
            Firmware::Ia32SecureBoot.enrolled_db(),
            Some(&["windows-2011", "ms-uefi-2011"][..])
        );
        assert!(!Firmware::Ia32WindowsOnly
            .enrolled_db()
            .unwrap()
            .contains(&"ms-uefi-2011"));
        assert!(Firmware::Ia32WindowsOnly.must_refuse() && !Firmware::Ia32SecureBoot.must_refuse());
        for f in [Firmware::Ia32Uefi, Firmware::Ia32SecureBoot, Firmware::Ia32WindowsOnly] {
            assert_eq!(f.ovmf_files().unwrap().1, "OVMF32_VARS_4M.fd");
            assert_eq!(f.package(), "ovmf-ia32");
        }
        assert_eq!(Firmware::from_arg("ia32-secureboot"), Some(Firmware::Ia32SecureBoot));
        assert_eq!(Firmware::from_arg("amd64"), None);
    }
}

/// A stick built for a direct boot: the image (attached as the USB stick) and its own kernel and
/// initramfs read back from it, with the stick's command line plus `extra`.
#[derive(Debug)]
pub struct LiveDirect {
    /// The stick image.
    pub stick: PathBuf,
    /// Kernel, initramfs and command line.
    pub direct: DirectBoot,
}

/// Builds a stick in `dir` with `agent` and prepares a direct `-kernel`/`-initrd` boot of its own kernel
/// and initramfs (for `vm-bench`: the agent as PID 1, without the firmware and GRUB path).
pub fn live_direct_boot(agent: &Path, dir: &Path, extra: &str) -> Result<LiveDirect, VmError> {
    let stick = dir.join("stick.img");
    let built = build_stick(agent, &stick, &StickOptions::default())?;
    let (kernel, initrd) = read_boot_files(&stick, dir)?;
    let direct = DirectBoot {
        kernel,
        initrd,
        append: format!("console=ttyS0,115200 lapterop.stick={} quiet {extra}", built.stick_id),
    };
    Ok(LiveDirect { stick, direct })
}

/// Copies the stick's own kernel and initramfs out of its FAT partition (mtools) into `dir`, for a
/// direct `-kernel`/`-initrd` boot of exactly what GRUB would boot.
pub fn read_boot_files(stick: &Path, dir: &Path) -> Result<(PathBuf, PathBuf), VmError> {
    let (kernel, initrd) = (dir.join("vmlinuz"), dir.join("initrd.img"));
    for (from, to) in [("::/boot/vmlinuz", &kernel), ("::/boot/initrd.img", &initrd)] {
        let out = Command::new("mtype")
            .arg("-i")
            .arg(format!("{}@@1M", stick.display()))
            .arg(from)
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .map_err(|e| VmError::Stick(format!("mtype (Debian package mtools): {e}")))?;
        if !out.status.success() {
            return Err(VmError::Stick(format!(
                "mtype {from}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        fs::write(to, out.stdout).map_err(io_err("writing", to))?;
    }
    Ok((kernel, initrd))
}
