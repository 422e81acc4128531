//! `cargo xtask`: Lapterop developer tasks.
//!
//! - `vm-run [--disk BUS:SIZE[:SECTOR]]... [--smbios ...]... [--nic MODEL] [--guestfwd RULE]... -- COMMAND...`
//!   boots the live kernel with a test initramfs under QEMU (TCG) and runs COMMAND in the guest;
//!   exits with the guest command's exit code (or 1 when the VM itself failed).
//! - `e2e [--keep]`: the end-to-end run (docs/live-image.md): the live stick booted in QEMU under SeaBIOS
//!   and under OVMF with Secure Boot against a simulated donated laptop, checked from the host.
//! - `demo [--port PORT]`: the same scenario for a newcomer, ending with the donor page's URL and the
//!   server left running until Ctrl-C.
//! - `vm-bench`: boots the live stick's kernel and initramfs directly (the agent as PID 1, coldplug, the
//!   stick found) and a bare busybox initramfs with the same kernel and modules, three rounds each,
//!   alternating, and prints both boot-to-marker times (for docs/benchmarks.md).
//! - `flow-bench [--rounds N]`: one laptop (a 64 MiB virtio disk) from boot to power-off, the
//!   volunteer's interactive flow on the serial console against the unattended job, alternating.
//! - `stick-boot --image IMG --firmware bios|uefi|secureboot|snakeoil|ia32|ia32-secureboot|ia32-windows-only`:
//!   boots a stick image from an emulated USB stick through that firmware, waits for the agent's ready
//!   line (or the firmware's refusal), prints the stage timings and the agent's lines, and stops QEMU.

use lapterop_certificate::io::io_err;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use xtask::vm::{self, Agent, DiskSpec, VmSpec};

/// Lapterop developer tasks.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Boot the live kernel and a test initramfs in QEMU and run a shell command in the guest.
    VmRun {
        #[command(flatten)]
        vm: VmArgs,
        /// Print the whole serial console (kernel messages included) instead of the command's output.
        #[arg(long)]
        console: bool,
        /// The command (run by busybox sh in the guest; the static agent is /bin/lapterop-agent).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The end-to-end run: build, boot the stick in QEMU (BIOS, Secure Boot, offline then online, and a
    /// refused boot under untrusted keys), check disks, stick and server from the host.
    E2e {
        /// Keep the working directory (disks, stick, consoles, server data) and print its path.
        #[arg(long)]
        keep: bool,
    },
    /// The demo: one laptop wiped, reinstalled and certified from the live stick in QEMU; prints the
    /// donor page and keeps the server running until Ctrl-C.
    Demo {
        /// Port of the collection server on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Measure boot-to-marker with the agent against a bare busybox initramfs (same kernel, modules).
    VmBench {
        #[command(flatten)]
        vm: VmArgs,
    },
    /// One laptop boot to power-off (one 64 MiB virtio disk, serial console), the volunteer's
    /// interactive flow against the unattended job on the same kind of stick, alternating rounds.
    FlowBench {
        /// Rounds of each.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Boot a stick image through firmware from an emulated USB stick; print the stage timings.
    StickBoot {
        /// The stick image (a copy is booted; the image itself is not changed).
        #[arg(long)]
        image: PathBuf,
        /// bios (SeaBIOS), uefi (OVMF), secureboot (OVMF, Secure Boot, Microsoft keys), snakeoil
        /// (OVMF, Secure Boot, a test key only: must be refused), ia32 (32-bit OVMF), ia32-secureboot
        /// (32-bit OVMF, Secure Boot, Microsoft 2011 keys) or ia32-windows-only (32-bit OVMF, Secure
        /// Boot, no third-party CA: must be refused).
        #[arg(long, default_value = "bios")]
        firmware: String,
        /// Seconds to wait for each stage.
        #[arg(long, default_value_t = 150)]
        timeout: u64,
    },
}

#[derive(Debug, clap::Args)]
struct VmArgs {
    /// A disk: BUS:SIZE[:SECTOR] with BUS virtio, nvme or ahci, e.g. nvme:64M:4096.
    #[arg(long)]
    disk: Vec<DiskSpec>,
    /// An -smbios value, e.g. "type=1,serial=XYZ".
    #[arg(long)]
    smbios: Vec<String>,
    /// NIC model on restricted user networking ("none" for no NIC).
    #[arg(long, default_value = "e1000e")]
    nic: String,
    /// A guestfwd rule to a loopback port, e.g. tcp:10.0.2.100:80-tcp:127.0.0.1:8080.
    #[arg(long)]
    guestfwd: Vec<String>,
    /// Use this static agent instead of building one.
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Modules or module sets (storage, usb, fs, nic, usb-net, display, power) to ship and load.
    #[arg(long, value_delimiter = ',')]
    modules: Vec<String>,
    /// Hard timeout in seconds from QEMU start.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
}

impl VmArgs {
    fn spec(&self, command: String) -> VmSpec {
        let mut spec = VmSpec {
            disks: self.disk.clone(),
            smbios: self.smbios.clone(),
            nic: (self.nic != "none").then(|| self.nic.clone()),
            guestfwd: self.guestfwd.clone(),
            command,
            timeout: Duration::from_secs(self.timeout),
            memory_mib: self.memory,
            ..VmSpec::default()
        };
        if let Some(agent) = &self.agent {
            spec.agent = Agent::Path(agent.clone());
        }
        if !self.modules.is_empty() {
            spec.modules = self.modules.clone();
        }
        spec
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `flow-bench`: the interactive and the unattended stick, the same laptop, alternating.
fn flow_bench(rounds: u32) -> Result<ExitCode, vm::VmError> {
    use xtask::console::{build_flow_stick, site_toml, whole_laptop_seconds, Console};
    let agent = vm::build_static_agent()?;
    let work = vm::temp_dir("lapterop-flow-bench-")?;
    let mut sticks = Vec::new();
    for mode in ["interactive", "unattended"] {
        let dir = work.path().join(mode);
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let stick = build_flow_stick(&agent, &dir, Console::Serial, &site_toml("en", None, mode))?;
        sticks.push((mode, stick));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("host load average at the start: {}", load.trim());
    let mut times: Vec<(&str, f64)> = Vec::new();
    for round in 1..=rounds {
        for (mode, stick) in &sticks {
            let dir = work.path().join(format!("{mode}-{round}"));
            std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
            let secs = whole_laptop_seconds(stick, *mode == "interactive", &dir)?;
            println!("{mode:<12} round {round}: boot to power-off {secs:.1} s");
            times.push((mode, secs));
        }
    }
    let median = |mode: &str| {
        let mut v: Vec<f64> = times.iter().filter(|(m, _)| *m == mode).map(|(_, s)| *s).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (i, u) = (median("interactive"), median("unattended"));
    println!(
        "median: interactive {i:.1} s, unattended {u:.1} s, ratio {:.2} (limit 0.80-1.20)",
        i / u
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("host load average at the end: {}", load.trim());
    Ok(ExitCode::SUCCESS)
}

fn stick_boot(image: &std::path::Path, firmware: &str, timeout: u64) -> Result<ExitCode, vm::VmError> {
    use xtask::stick::{BootTimes, Firmware, StickVm};
    let firmware = Firmware::from_arg(firmware)
        .ok_or_else(|| vm::VmError::Spec(format!("--firmware {firmware}: use {}", xtask::stick::FIRMWARE_ARGS)))?;
    let dir = vm::temp_dir("lapterop-stick-boot-")?;
    let copy = dir.path().join("stick.img");
    std::fs::copy(image, &copy).map_err(io_err("copying", image))?;
    let devices = VmSpec {
        nic: Some("e1000e".to_owned()),
        ..VmSpec::default()
    };
    let mut vm = StickVm::start(&copy, firmware, &devices, &[])?;
    let step = Duration::from_secs(timeout);
    let mut t = BootTimes::default();
    if firmware.must_refuse() {
        let (_, at) = vm.wait_for_any(&["Access Denied", "Security Violation"], step)?;
        println!(
            "{}: refused after {:.1} s, as it must be",
            firmware.name(),
            at.as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    t.grub = Some(vm.wait_for("GNU GRUB", step)?);
    // The kernel banner shows only with loglevel >= 6 on the command line (the menu says `quiet`).
    let (which, at) = vm.wait_for_any(&["Linux version", "LAPTEROP-AGENT-READY"], step)?;
    if which == 0 {
        t.kernel = Some(at);
        t.agent_ready = Some(vm.wait_for("LAPTEROP-AGENT-READY", step)?);
    } else {
        t.agent_ready = Some(at);
    }
    let console = vm.console();
    for line in console
        .lines()
        .filter(|l| l.starts_with("lapterop:") || l.contains("READY"))
    {
        println!("{line}");
    }
    println!("{}: {t}", firmware.name());
    Ok(ExitCode::SUCCESS)
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Cmd::E2e { keep } => {
            let work = tempfile::Builder::new()
                .prefix("lapterop-e2e-")
                .tempdir_in(vm::target_dir())?;
            let result = xtask::e2e::run(work.path(), None);
            if keep || result.is_err() {
                let kept = work.keep();
                eprintln!("e2e: working directory kept: {}", kept.display());
            }
            result?;
            println!("e2e: passed");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo { port } => xtask::e2e::demo(port).map(|()| ExitCode::SUCCESS),
        Cmd::StickBoot {
            image,
            firmware,
            timeout,
        } => Ok(stick_boot(&image, &firmware, timeout)?),
        Cmd::VmRun {
            vm: args,
            console,
            command,
        } => {
            let out = vm::run(&args.spec(command.join(" ")))?;
            print!("{}", if console { &out.console } else { &out.output });
            eprintln!("vm-run: exit code {}; {}", out.exit_code, out.timings);
            Ok(ExitCode::from(u8::try_from(out.exit_code).unwrap_or(1)))
        }
        Cmd::FlowBench { rounds } => Ok(flow_bench(rounds)?),
        Cmd::VmBench { vm: args } => {
            let template = args.spec("true".to_owned());
            let agent = match &template.agent {
                Agent::Path(p) => p.clone(),
                Agent::Build | Agent::None => vm::build_static_agent()?,
            };
            // The agent side is the live stick's own kernel and initramfs with the agent as PID 1
            // (coldplug, finding the stick), booted directly; no network on either side.
            let work = tempfile::Builder::new()
                .prefix("lapterop-vm-bench-")
                .tempdir_in(vm::target_dir())?;
            let live = xtask::stick::live_direct_boot(&agent, work.path(), "lapterop.mode=rescue lapterop.net=0")?;
            // The bare side loads what the live initramfs carries (the agent side loads from the same
            // set, then the stick's own modules for the devices it finds: none here).
            let bare = VmSpec {
                agent: Agent::None,
                command: "true".to_owned(),
                nic: None,
                modules: if args.modules.is_empty() {
                    lapterop_image_builder::kmod::DEFAULT_REQUEST
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect()
                } else {
                    args.modules.clone()
                },
                ..template.clone()
            };
            let disk_files = vm::create_disk_files(&bare, work.path())?;
            // Alternate the two so a slow moment on the host does not favour one side.
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            println!("host load average at the start: {}", load.trim());
            let mut rows = Vec::new();
            for round in 1..=3 {
                let mut vm = xtask::stick::StickVm::start_direct(&live.stick, &live.direct, &bare, &disk_files)?;
                let at = vm.wait_for("LAPTEROP-AGENT-READY", Duration::from_secs(args.timeout))?;
                let uptime = vm::guest_uptime(&vm.console()).map_or(f64::NAN, |d| d.as_secs_f64());
                drop(vm);
                println!(
                    "agent         round {round}: agent ready {:.1} s (guest uptime {uptime:.1} s)",
                    at.as_secs_f64()
                );
                rows.push(("agent", at.as_secs_f64(), uptime));
                let out = vm::run(&bare)?;
                if out.exit_code != 0 {
                    eprintln!(
                        "vm-bench: bare busybox round {round} exited {}:\n{}",
                        out.exit_code, out.output
                    );
                    return Ok(ExitCode::FAILURE);
                }
                println!("bare busybox  round {round}: {}", out.timings);
                let uptime = out.timings.guest_uptime_at_marker.map_or(f64::NAN, |d| d.as_secs_f64());
                rows.push(("bare busybox", out.timings.boot_to_marker.as_secs_f64(), uptime));
            }
            for name in ["agent", "bare busybox"] {
                let mine: Vec<&(&str, f64, f64)> = rows.iter().filter(|r| r.0 == name).collect();
                let n = mine.len().max(1) as f64;
                let wall = mine.iter().map(|r| r.1).sum::<f64>() / n;
                let guest = mine.iter().map(|r| r.2).sum::<f64>() / n;
                println!(
                    "{name:<13} mean of {}: boot to marker {wall:.2} s, guest uptime at marker {guest:.2} s",
                    mine.len()
                );
            }
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            println!("host load average at the end: {}", load.trim());
            Ok(ExitCode::SUCCESS)
        }
    }
}
