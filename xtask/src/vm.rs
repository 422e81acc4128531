//! Boots the live kernel and a test initramfs in QEMU (TCG) and runs a shell command in the guest.
//!
//! [`run`] builds the agent statically (glibc `crt-static`), fetches the pinned Debian kernel and
//! busybox through the image builder, assembles an initramfs (busybox, the static agent at
//! `/bin/lapterop-agent`, the chosen modules, a busybox `/init`), and boots it with `-kernel`/`-initrd`
//! under `qemu-system-x86_64 -accel tcg`. The guest prints `LAPTEROP-VM-BEGIN`, runs the command,
//! prints `LAPTEROP-VM-END rc=N` on the serial console and powers off; the harness returns the
//! console text, the command's output and exit code, and per-stage timings.
//!
//! Disks are sparse raw files in a temporary directory (never a host disk); the NIC is on QEMU user
//! networking with `restrict=on`, so the guest can reach only what `guestfwd` forwards to 127.0.0.1.

use lapterop_certificate::io::io_err;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use lapterop_image_builder::{build_initramfs, debian, fetch_inputs, Init, InitramfsSpec};

const INIT: &str = include_str!("vm-init.sh");
const BEGIN: &str = "LAPTEROP-VM-BEGIN";
const END: &str = "LAPTEROP-VM-END rc=";
const UPTIME: &str = "LAPTEROP-VM-UPTIME ";

/// Errors of the VM harness. Each says what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A `--disk` or other argument is malformed.
    #[error("{0}")]
    Spec(String),
    /// Building the agent failed.
    #[error("building the static agent failed: {0}")]
    AgentBuild(String),
    /// A debug build of workspace packages failed.
    #[error("building the host binaries failed: {0}")]
    HostBuild(String),
    /// The built agent is dynamically linked.
    #[error("{0} is not a static binary (it has an ELF interpreter); build it with -C target-feature=+crt-static")]
    NotStatic(PathBuf),
    /// The Debian inputs or the initramfs could not be made.
    #[error(transparent)]
    Build(#[from] lapterop_image_builder::BuildError),
    /// The lock list could not be read.
    #[error(transparent)]
    Debian(#[from] debian::DebianError),
    /// QEMU is not installed.
    #[error("starting {0}: {1}; install Debian's qemu-system-x86 package")]
    QemuMissing(String, io::Error),
    /// The guest did not finish in time.
    #[error("the VM did not power off within {timeout:?}; last console lines:\n{tail}")]
    Timeout {
        /// How long it was given.
        timeout: Duration,
        /// The last console lines.
        tail: String,
    },
    /// The guest stopped without the end marker.
    #[error("the VM stopped without printing its end marker (QEMU {status}); last console lines:\n{tail}")]
    NoMarker {
        /// QEMU's exit status.
        status: String,
        /// The last console lines.
        tail: String,
    },
    /// The firmware refused to boot, or the guest crashed (a line of [`crate::stick::FATAL`]).
    #[error("the boot stopped: `{what}` on the console; last console lines:\n{tail}")]
    Refused {
        /// The fatal line.
        what: String,
        /// The last console lines.
        tail: String,
    },
    /// The stick image could not be built.
    #[error("building the stick image: {0}")]
    Stick(String),
    /// Local file I/O failed.
    #[error(transparent)]
    Io(#[from] lapterop_certificate::io::IoError),
}

/// How a disk is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// `virtio-blk-pci` (`/dev/vdX`).
    Virtio,
    /// QEMU's NVMe controller, one namespace (`/dev/nvmeXn1`).
    Nvme,
    /// An `ide-hd` on an AHCI controller (`/dev/sdX`, libata).
    Ahci,
    /// An `ide-hd` on a PIIX4 IDE controller: SATA set to IDE/compatibility mode in a laptop's
    /// setup (`ata_piix`, `/dev/sdX`).
    Ide,
    /// An `sd-card` in an `sdhci-pci` reader (`sdhci_pci`, `mmc_block`, `/dev/mmcblkN`).
    Sd,
}

/// One disk: a sparse raw file of `size` bytes with `sector`-byte logical and physical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpec {
    /// Controller type.
    pub bus: Bus,
    /// Size in bytes.
    pub size: u64,
    /// Logical (= physical) block size: 512 or 4096.
    pub sector: u32,
}

impl FromStr for DiskSpec {
    type Err = VmError;

    /// `BUS:SIZE[:SECTOR]` with BUS one of virtio, nvme, ahci, ide, sd; e.g. `virtio:64M`,
    /// `nvme:64M:4096`, `ahci:128M`, `sd:64M`.
    fn from_str(s: &str) -> Result<Self, VmError> {
        let bad = |why: &str| {
            VmError::Spec(format!(
                "--disk {s}: {why} (expected BUS:SIZE[:SECTOR], e.g. nvme:64M:4096)"
            ))
        };
        let mut parts = s.split(':');
        let bus = match parts.next() {
            Some("virtio") => Bus::Virtio,
            Some("nvme") => Bus::Nvme,
            Some("ahci") => Bus::Ahci,
            Some("ide") => Bus::Ide,
            Some("sd") => Bus::Sd,
            _ => return Err(bad("bus must be virtio, nvme, ahci, ide or sd")),
        };
        let size = parts.next().ok_or_else(|| bad("size missing"))?;
        let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit()).unwrap_or(size.len()));
        let mult: u64 = match unit {
            "" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            _ => return Err(bad("size unit must be K, M or G")),
        };
        let size = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .ok_or_else(|| bad("bad size"))?;
        if size == 0 || size > 8 << 30 || size % 4096 != 0 {
            return Err(bad("size must be a multiple of 4 KiB, at most 8 GiB"));
        }
        let sector = match parts.next() {
            None | Some("512") => 512,
            Some("4096") => 4096,
            Some(_) => return Err(bad("sector size must be 512 or 4096")),
        };
        if matches!(bus, Bus::Ahci | Bus::Ide | Bus::Sd) && sector != 512 {
            return Err(bad("QEMU's ide-hd and sd-card support only 512-byte logical sectors"));
        }
        if parts.next().is_some() {
            return Err(bad("too many fields"));
        }
        Ok(DiskSpec { bus, size, sector })
    }
}

/// Where the agent binary comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agent {
    /// Build it statically from this workspace (`cargo build --release`, crt-static).
    Build,
    /// Use this static binary.
    Path(PathBuf),
    /// Boot without the agent (a bare busybox initramfs, for comparison).
    None,
}

/// What to boot and run.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Disks to attach, in order.
    pub disks: Vec<DiskSpec>,
    /// `-smbios` values, e.g. `type=1,serial=XYZ`.
    pub smbios: Vec<String>,
    /// NIC model on user networking (`e1000e`, `virtio-net-pci`, ...); `None` for no NIC.
    pub nic: Option<String>,
    /// `guestfwd` rules (`tcp:10.0.2.100:80-tcp:127.0.0.1:PORT`); their host side must be loopback.
    pub guestfwd: Vec<String>,
    /// Shell command run by busybox `sh` in the guest.
    pub command: String,
    /// The agent to install.
    pub agent: Agent,
    /// Modules or module sets to ship and load.
    pub modules: Vec<String>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Hard limit from QEMU start to power-off.
    pub timeout: Duration,
    /// zstd level of the initramfs.
    pub zstd_level: i32,
    /// A USB Ethernet adapter (`usb-net`: CDC Ethernet/RNDIS) on its own xHCI controller and its own
    /// restricted user network, besides [`VmSpec::nic`].
    pub usb_nic: bool,
    /// With no [`VmSpec::nic`]: the restricted user network `net0` (with the `guestfwd` rules) exists
    /// without a device, for a NIC the test plugs in later through QMP (`device_add
    /// usb-net,netdev=net0,bus=xhci.0`).
    pub nic_later: bool,
    /// A standard VGA card (the laptop's own screen, read through QMP `screendump`); otherwise none.
    pub vga: bool,
    /// I/O errors injected into disks by QEMU's `blkdebug` driver.
    pub faults: Vec<DiskFault>,
    /// Test-only static programs put into the guest's `/bin`, by workspace package name (built like
    /// the agent), e.g. `lapterop-dmctl` for device-mapper.
    pub tools: Vec<String>,
}

/// An I/O error a disk gives at one sector (QEMU `blkdebug`, `event = "none"`: from the start, every
/// time), so the guest kernel sees a real failing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskFault {
    /// Index of the disk in [`VmSpec::disks`].
    pub disk: usize,
    /// The failing sector (512-byte units, as blkdebug counts).
    pub sector: u64,
    /// Which requests fail.
    pub io: FaultIo,
}

/// The requests a [`DiskFault`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultIo {
    /// Writes only (reads of the sector work).
    Write,
    /// Reads only.
    Read,
}

impl DiskFault {
    /// The blkdebug rule file's text (errno 5, EIO).
    pub fn rule(&self) -> String {
        let io = match self.io {
            FaultIo::Write => "write",
            FaultIo::Read => "read",
        };
        format!(
            "[inject-error]\nevent = \"none\"\niotype = \"{io}\"\nsector = \"{}\"\nerrno = \"5\"\n",
            self.sector
        )
    }
}

impl Default for VmSpec {
    fn default() -> Self {
        VmSpec {
            disks: Vec::new(),
            smbios: Vec::new(),
            nic: Some("e1000e".to_owned()),
            usb_nic: false,
            nic_later: false,
            guestfwd: Vec::new(),
            command: "true".to_owned(),
            agent: Agent::Build,
            // The live initramfs's sets and the wired NICs (the live stick has those on its FAT).
            modules: lapterop_image_builder::kmod::DEFAULT_REQUEST
                .iter()
                .chain(&["nic"])
                .map(|s| (*s).to_owned())
                .collect(),
            memory_mib: 512,
            timeout: Duration::from_secs(120),
            zstd_level: 3,
            vga: false,
            faults: Vec::new(),
            tools: Vec::new(),
        }
    }
}

/// Time spent in each stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Building the static agent (zero when not built).
    pub build: Duration,
    /// Fetching the Debian inputs and writing the initramfs.
    pub initramfs: Duration,
    /// From QEMU start to the begin marker on the serial console.
    pub boot_to_marker: Duration,
    /// From QEMU start to QEMU exit.
    pub vm_total: Duration,
    /// The guest kernel's own uptime at the begin marker (the rest of `boot_to_marker` is firmware,
    /// loading and decompressing the kernel before its clock starts).
    pub guest_uptime_at_marker: Option<Duration>,
}

impl fmt::Display for Timings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "build {:.1} s, initramfs {:.1} s, boot to marker {:.1} s (guest uptime {}), VM total {:.1} s",
            self.build.as_secs_f64(),
            self.initramfs.as_secs_f64(),
            self.boot_to_marker.as_secs_f64(),
            self.guest_uptime_at_marker
                .map_or("unknown".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
            self.vm_total.as_secs_f64()
        )
    }
}

/// What the guest did.
#[derive(Debug, Clone)]
pub struct VmOutput {
    /// The whole serial console (kernel messages included), `\r` removed.
    pub console: String,
    /// The command's output: the lines between the markers.
    pub output: String,
    /// The command's exit code.
    pub exit_code: i32,
    /// Stage timings.
    pub timings: Timings,
}

/// The workspace root (parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cargo target directory the harness builds into (`$CARGO_TARGET_DIR` or `target/`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_root().join("target"),
    }
}

/// Builds `lapterop-agent` statically for x86_64 glibc and returns its path.
pub fn build_static_agent() -> Result<PathBuf, VmError> {
    build_static("lapterop-agent")
}

/// `cargo build` (debug, into [`target_dir`]) of the workspace packages `packages`; returns the
/// directory that holds their binaries.
pub fn build_debug(packages: &[&str]) -> Result<PathBuf, VmError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut args = vec!["build", "--locked", "-q"];
    for p in packages {
        args.extend(["-p", p]);
    }
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args(args)
        .env("CARGO_TARGET_DIR", target_dir())
        .status()
        .map_err(|e| VmError::HostBuild(e.to_string()))?;
    if !status.success() {
        return Err(VmError::HostBuild(format!(
            "cargo build of {} exited with {status}; see the messages above",
            packages.join(", ")
        )));
    }
    Ok(target_dir().join("debug"))
}

/// Builds the workspace package `package` (whose binary has the same name) statically for x86_64
/// glibc and returns the binary's path.
pub fn build_static(package: &str) -> Result<PathBuf, VmError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "--locked",
            "-q",
            "-p",
            package,
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", target_dir())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| VmError::AgentBuild(e.to_string()))?;
    if !status.success() {
        return Err(VmError::AgentBuild(format!(
            "cargo exited with {status}; see the messages above"
        )));
    }
    let path = target_dir().join("x86_64-unknown-linux-gnu/release").join(package);
    if has_interpreter(&path)? {
        return Err(VmError::NotStatic(path));
    }
    Ok(path)
}

/// Whether an x86_64 ELF file has a `PT_INTERP` program header (is dynamically linked).
pub fn has_interpreter(path: &Path) -> Result<bool, VmError> {
    let data = fs::read(path).map_err(io_err("reading", path))?;
    let not_elf = || VmError::Spec(format!("{} is not a 64-bit little-endian ELF file", path.display()));
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return Err(not_elf());
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]);
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&data[0x20..0x28]);
    let phoff = usize::try_from(u64::from_le_bytes(phoff)).map_err(|_| not_elf())?;
    let (phentsize, phnum) = (usize::from(u16_at(0x36)), usize::from(u16_at(0x38)));
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        let ty = data.get(o..o + 4).ok_or_else(not_elf)?;
        if u32::from_le_bytes([ty[0], ty[1], ty[2], ty[3]]) == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The QEMU arguments every harness VM shares: TCG with 2 vCPUs and `memory_mib`, no default devices,
/// no display or monitor, and an exit instead of a reboot.
pub fn headless_args(memory_mib: u32) -> Vec<String> {
    let m = memory_mib.to_string();
    [
        "-accel",
        "tcg",
        "-smp",
        "2",
        "-m",
        &m,
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The QEMU arguments for `spec` (without the kernel, initrd and console file).
pub fn qemu_disk_and_device_args(spec: &VmSpec, disk_files: &[PathBuf]) -> Result<Vec<String>, VmError> {
    let mut args = Vec::new();
    let mut ahci_port = 0;
    let mut ide_unit = 0;
    let mut sd_slot = 0;
    for (i, (disk, file)) in spec.disks.iter().zip(disk_files).enumerate() {
        let id = format!("disk{i}");
        let serial = format!("LAPTEROP-D{i}");
        args.push("-drive".to_owned());
        let faults: Vec<&DiskFault> = spec.faults.iter().filter(|f| f.disk == i).collect();
        if faults.is_empty() {
            args.push(format!(
                "file={},if=none,id={id},format=raw,cache=unsafe",
                file.display()
            ));
        } else {
            // The rules sit beside the disk file; blkdebug reads them when QEMU opens the drive.
            let rules = file.with_extension("blkdebug.conf");
            let text: String = faults.iter().map(|f| f.rule()).collect();
            fs::write(&rules, text).map_err(io_err("writing", &rules))?;
            args.push(format!(
                "if=none,id={id},format=raw,cache=unsafe,file.driver=blkdebug,file.config={},\
                 file.image.driver=file,file.image.filename={}",
                rules.display(),
                file.display()
            ));
        }
        let blocks = format!("logical_block_size={0},physical_block_size={0}", disk.sector);
        let device = match disk.bus {
            Bus::Virtio => format!("virtio-blk-pci,drive={id},serial={serial},{blocks}"),
            Bus::Nvme => format!("nvme,drive={id},serial={serial},{blocks}"),
            Bus::Ahci => {
                if ahci_port == 0 {
                    args.extend(["-device".to_owned(), "ahci,id=ahci0".to_owned()]);
                }
                if ahci_port == 6 {
                    return Err(VmError::Spec("at most 6 AHCI disks".to_owned()));
                }
                ahci_port += 1;
                format!(
                    "ide-hd,drive={id},bus=ahci0.{},serial={serial},model=LAPTEROP-AHCI",
                    ahci_port - 1
                )
            }
            Bus::Ide => {
                if ide_unit == 0 {
                    args.extend(["-device".to_owned(), "piix4-ide,id=ide0".to_owned()]);
                }
                if ide_unit == 2 {
                    return Err(VmError::Spec("at most 2 IDE disks".to_owned()));
                }
                ide_unit += 1;
                format!(
                    "ide-hd,drive={id},bus=ide0.{},serial={serial},model=LAPTEROP-IDE",
                    ide_unit - 1
                )
            }
            Bus::Sd => {
                // The card finds the reader's bus by itself, so one reader holds one card.
                if sd_slot == 1 {
                    return Err(VmError::Spec("at most 1 SD card".to_owned()));
                }
                sd_slot += 1;
                args.extend(["-device".to_owned(), "sdhci-pci".to_owned()]);
                format!("sd-card,drive={id}")
            }
        };
        args.extend(["-device".to_owned(), device]);
    }
    if let Some(f) = spec.faults.iter().find(|f| f.disk >= spec.disks.len()) {
        return Err(VmError::Spec(format!(
            "a fault on disk {} of {}",
            f.disk,
            spec.disks.len()
        )));
    }
    if spec.vga {
        args.extend(["-vga".to_owned(), "std".to_owned()]);
    }
    for s in &spec.smbios {
        args.extend(["-smbios".to_owned(), s.clone()]);
    }
    if spec.nic.is_some() || spec.nic_later {
        let mut netdev = "user,id=net0,restrict=on".to_owned();
        for fwd in &spec.guestfwd {
            let host = fwd.split_once('-').map(|(_, h)| h).unwrap_or("");
            if !host.starts_with("tcp:127.0.0.1:") {
                return Err(VmError::Spec(format!(
                    "--guestfwd {fwd}: the host side must be tcp:127.0.0.1:PORT (the guest may reach only loopback)"
                )));
            }
            // QEMU opens a `tcp:` target once, when it starts, and the server would rightly close that
            // idle connection long before the guest speaks. A small relay spawned per guest connection
            // (`cmd:`) connects to the same loopback port only when the guest does.
            let (guest, port) = (
                fwd.split_once('-').map(|(g, _)| g).unwrap_or(""),
                host.trim_start_matches("tcp:127.0.0.1:"),
            );
            if port.parse::<u16>().is_err() {
                return Err(VmError::Spec(format!("--guestfwd {fwd}: {port:?} is not a port")));
            }
            let relay = guestfwd_relay()?;
            netdev.push_str(&format!(",guestfwd={guest}-cmd:python3 {} {port}", relay.display()));
        }
        args.extend(["-netdev".to_owned(), netdev]);
        if let Some(model) = &spec.nic {
            // `id=nic0`: what QMP `set_link` names to pull the cable.
            args.extend(["-device".to_owned(), format!("{model},netdev=net0,id=nic0")]);
        }
    }
    if spec.usb_nic {
        args.extend(
            [
                "-netdev",
                "user,id=net1,restrict=on",
                "-device",
                "qemu-xhci,id=xhci-net",
                "-device",
                "usb-net,netdev=net1,bus=xhci-net.0",
            ]
            .map(str::to_owned),
        );
    }
    Ok(args)
}

/// The relay QEMU spawns for each guest connection of a `guestfwd`: it connects to
/// `127.0.0.1:PORT` then, and copies both ways until either side closes (the guest's socket is its
/// standard input and output).
const GUESTFWD_RELAY: &str = r#"import os, socket, sys, threading
host = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def up():
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        host.sendall(data)
    host.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while True:
    data = host.recv(65536)
    if not data:
        break
    os.write(1, data)
"#;

/// Writes [`GUESTFWD_RELAY`] into the target directory (once per build; the same bytes every time).
fn guestfwd_relay() -> Result<PathBuf, VmError> {
    let path = target_dir_created()?.join("guestfwd-relay.py");
    if fs::read_to_string(&path).ok().as_deref() != Some(GUESTFWD_RELAY) {
        fs::write(&path, GUESTFWD_RELAY).map_err(io_err("writing", &path))?;
    }
    Ok(path)
}

/// Ends QEMU when the harness stops waiting for it, whatever the reason (timeout, error, panic):
/// our own child, ended through its handle (its PID), never by name.
/// How long QEMU may take to exit after the guest's command has finished.
const POWER_OFF_GRACE: Duration = Duration::from_secs(15);

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Creates one sparse raw file per disk of `spec` in `dir` (`disk0.raw`, `disk1.raw`, ...), each of
/// the disk's size, for [`qemu_disk_and_device_args`] (and `crate::stick::StickVm::start`).
pub fn create_disk_files(spec: &VmSpec, dir: &Path) -> Result<Vec<PathBuf>, VmError> {
    let mut disk_files = Vec::new();
    for (i, disk) in spec.disks.iter().enumerate() {
        let path = dir.join(format!("disk{i}.raw"));
        let file = fs::File::create(&path).map_err(io_err("creating", &path))?;
        file.set_len(disk.size).map_err(io_err("sizing", &path))?;
        disk_files.push(path);
    }
    Ok(disk_files)
}

/// Builds everything `spec` needs, boots it, and returns what the guest printed.
pub fn run(spec: &VmSpec) -> Result<VmOutput, VmError> {
    let mut timings = Timings::default();
    let started = Instant::now();
    let agent = match &spec.agent {
        Agent::Build => Some(build_static_agent()?),
        Agent::Path(p) => {
            if has_interpreter(p)? {
                return Err(VmError::NotStatic(p.clone()));
            }
            Some(p.clone())
        }
        Agent::None => None,
    };
    timings.build = started.elapsed();

    let started = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("lapterop-vm-")
        .tempdir_in(target_dir_created()?)
        .map_err(io_err("creating a temporary directory in", &target_dir()))?;
    let lock = debian::Lock::read(&debian::default_lock_path())?;
    let cache = debian::Cache::new(debian::default_cache_dir());
    let inputs = fetch_inputs(&lock, &cache)?;
    let initrd = work.path().join("initrd.img");
    let disk_count = spec.disks.len().to_string();
    let mut extra = vec![
        (
            "etc/lapterop/vm-command".to_owned(),
            0o644,
            format!("{}\n", spec.command).into_bytes(),
        ),
        (
            "etc/lapterop/vm-disks".to_owned(),
            0o644,
            format!("{disk_count}\n").into_bytes(),
        ),
    ];
    for tool in &spec.tools {
        let path = build_static(tool)?;
        let bytes = fs::read(&path).map_err(io_err("reading", &path))?;
        extra.push((format!("bin/{tool}"), 0o755, bytes));
    }
    let spec_fs = InitramfsSpec {
        kernel: inputs.kernel.clone(),
        busybox_root: inputs.busybox_root.clone(),
        modules: spec.modules.clone(),
        agent,
        init: Init::Script(INIT.as_bytes().to_vec()),
        extra,
        extra_nodes: Vec::new(),
        zstd_level: spec.zstd_level,
    };
    build_initramfs(&spec_fs, &work.path().join("stage"), &initrd, 0)?;
    timings.initramfs = started.elapsed();

    let disk_files = create_disk_files(spec, work.path())?;
    let console = work.path().join("console.log");
    let qemu_log = work.path().join("qemu-stderr.log");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-machine", "q35"])
        .args(headless_args(spec.memory_mib))
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(inputs.kernel.vmlinuz())
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0,115200 panic=-1 quiet rdinit=/init"])
        .args(qemu_disk_and_device_args(spec, &disk_files)?)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            fs::File::create(&qemu_log).map_err(io_err("creating", &qemu_log))?,
        ));
    let vm_start = Instant::now();
    let mut child = KillOnDrop(
        cmd.spawn()
            .map_err(|e| VmError::QemuMissing("qemu-system-x86_64".to_owned(), e))?,
    );
    let read_console = || fs::read_to_string(&console).unwrap_or_default().replace('\r', "");
    let (mut ended, mut looked) = (None::<Instant>, Instant::now());
    let status = loop {
        if timings.boot_to_marker.is_zero() && read_console().contains(BEGIN) {
            timings.boot_to_marker = vm_start.elapsed();
        }
        if ended.is_none() && looked.elapsed() > Duration::from_millis(500) {
            looked = Instant::now();
            if read_console().lines().any(|l| l.starts_with(END)) {
                ended = Some(Instant::now());
            }
        }
        if ended.is_some_and(|t| t.elapsed() > POWER_OFF_GRACE) {
            // The command finished and the guest asked to power off, but QEMU still runs: seen after
            // an ACPI S3 suspend and RTC wake under TCG, where the guest's ACPI power-off hangs.
            let _ = child.0.kill();
            break child
                .0
                .wait()
                .map_err(io_err("waiting for", Path::new("qemu-system-x86_64")))?;
        }
        if let Some(status) = child
            .0
            .try_wait()
            .map_err(io_err("waiting for", Path::new("qemu-system-x86_64")))?
        {
            break status;
        }
        if vm_start.elapsed() > spec.timeout {
            drop(child);
            return Err(VmError::Timeout {
                timeout: spec.timeout,
                tail: tail(&read_console(), 30),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    timings.vm_total = vm_start.elapsed();
    let console_text = read_console();
    let stderr = fs::read_to_string(&qemu_log).unwrap_or_default();
    let parsed = parse_console(&console_text);
    let Some((output, exit_code)) = parsed else {
        let mut text = tail(&console_text, 30);
        if !stderr.trim().is_empty() {
            text.push_str("\nQEMU: ");
            text.push_str(stderr.trim());
        }
        return Err(VmError::NoMarker {
            status: status.to_string(),
            tail: text,
        });
    };
    timings.guest_uptime_at_marker = guest_uptime(&console_text);
    Ok(VmOutput {
        console: console_text,
        output,
        exit_code,
        timings,
    })
}

/// A new temporary directory `PREFIX*` in the target directory (removed when dropped).
pub fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, VmError> {
    Ok(tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(target_dir_created()?)
        .map_err(io_err("creating a temporary directory in", &target_dir()))?)
}

/// [`target_dir`], created if needed.
pub fn target_dir_created() -> Result<PathBuf, VmError> {
    let dir = target_dir();
    fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
    Ok(dir)
}

/// The guest uptime the init script printed just before the begin marker.
pub fn guest_uptime(console: &str) -> Option<Duration> {
    let secs: f64 = console
        .lines()
        .find_map(|l| l.strip_prefix(UPTIME))?
        .trim()
        .parse()
        .ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// Finds the command's output and exit code between the markers of a console log.
pub fn parse_console(console: &str) -> Option<(String, i32)> {
    let mut lines = console.lines().skip_while(|l| *l != BEGIN).skip(1);
    let mut output = String::new();
    for line in lines.by_ref() {
        if let Some(rc) = line.strip_prefix(END) {
            return Some((output, rc.trim().parse().ok()?));
        }
        output.push_str(line);
        output.push('\n');
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_specs_parse_and_reject() {
        assert_eq!(
            "nvme:64M:4096".parse::<DiskSpec>().unwrap(),
            DiskSpec {
                bus: Bus::Nvme,
                size: 64 << 20,
                sector: 4096
            }
        );
        assert_eq!("virtio:1G".parse::<DiskSpec>().unwrap().size, 1 << 30);
        for bad in [
            "scsi:64M",
            "nvme",
            "nvme:64X",
            "nvme:64M:1024",
            "ahci:64M:4096",
            "nvme:100",
            "virtio:64M:512:x",
        ] {
            assert!(bad.parse::<DiskSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn qemu_args_attach_each_bus_and_restrict_the_network() {
        let spec = VmSpec {
            disks: vec![
                "virtio:64M".parse().unwrap(),
                "nvme:64M:4096".parse().unwrap(),
                "ahci:64M".parse().unwrap(),
            ],
            smbios: vec!["type=1,serial=S".to_owned()],
            guestfwd: vec!["tcp:10.0.2.100:80-tcp:127.0.0.1:8080".to_owned()],
            ..VmSpec::default()
        };
        let files: Vec<PathBuf> = (0..3).map(|i| PathBuf::from(format!("/tmp/d{i}"))).collect();
        let args = qemu_disk_and_device_args(&spec, &files).unwrap().join(" ");
        assert!(args.contains("virtio-blk-pci,drive=disk0"), "{args}");
        assert!(args.contains("nvme,drive=disk1,serial=LAPTEROP-D1,logical_block_size=4096,physical_block_size=4096"));
        assert!(args.contains("-device ahci,id=ahci0 -device ide-hd,drive=disk2,bus=ahci0.0"));
        assert!(args.contains("-smbios type=1,serial=S"));
        assert!(
            args.contains("user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:python3 ")
                && args.contains("guestfwd-relay.py 8080"),
            "{args}"
        );
        assert!(args.contains("-device e1000e,netdev=net0,id=nic0"));
        let open = VmSpec {
            guestfwd: vec!["tcp:10.0.2.100:80-tcp:192.0.2.1:80".to_owned()],
            ..VmSpec::default()
        };
        assert!(qemu_disk_and_device_args(&open, &[]).is_err());
        let cmd = VmSpec {
            guestfwd: vec!["tcp:10.0.2.100:80-cmd:nc".to_owned()],
            ..VmSpec::default()
        };
        assert!(qemu_disk_and_device_args(&cmd, &[]).is_err());
    }

    #[test]
    fn console_markers_give_output_and_code() {
        let console =
            "[    1.0] boot\nLAPTEROP-VM-BEGIN\nhello\nworld\nLAPTEROP-VM-END rc=3\n[ 2.0] reboot: Power down\n";
        assert_eq!(parse_console(console), Some(("hello\nworld\n".to_owned(), 3)));
        assert_eq!(parse_console("LAPTEROP-VM-BEGIN\nhalf"), None);
        assert_eq!(
            guest_uptime("x\nLAPTEROP-VM-UPTIME 6.84\nLAPTEROP-VM-BEGIN\n"),
            Some(Duration::from_millis(6840))
        );
        assert_eq!(guest_uptime("LAPTEROP-VM-UPTIME soon\n"), None);
        // The init script's own text mentions the marker names; only whole lines count.
        assert_eq!(parse_console("echo LAPTEROP-VM-BEGIN;\n"), None);
    }

    #[test]
    fn interpreter_detection_on_a_real_dynamic_binary() {
        // /bin/sh on the build host is dynamically linked glibc; its ELF header says so.
        if Path::new("/bin/sh").exists() {
            assert!(has_interpreter(Path::new("/bin/sh")).unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk");
        fs::write(&junk, b"not an elf").unwrap();
        assert!(has_interpreter(&junk).is_err());
    }
}
