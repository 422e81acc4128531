//! `lapterop-agent`: audit, wipe, install and certify one laptop. Parses arguments and dispatches to
//! the library modules.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Audit, wipe, install and certify a donated laptop.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the agent version.
    Version,
    /// Install the standard OS image onto a disk: checked before writing, read back after, partition
    /// table last. Exit 0 installed, 1 failed (table wiped again), 2 nothing written.
    Install(lapterop_agent::cli::install::InstallArgs),
    /// Pack the reference laptop's internal disk (read-only) into a signed OS image: a new file on a
    /// second USB disk (`--to`) or an HTTP PUT streamed to a workshop server (`--put`), signed with
    /// the key given by `--key-file`. Exit 0 image complete, 1 failed part way, 2 nothing done.
    Capture(lapterop_agent::cli::capture::CaptureArgs),
    /// Show what a drive's firmware reports: capabilities, security state, hidden areas, health, and
    /// the purge `--method auto` would choose (JSON).
    Probe {
        /// The disk, e.g. /dev/nvme0n1 or /dev/sda.
        device: String,
    },
    /// Diagnostic: run only the firmware purge on one disk and print the step as JSON. Issues no
    /// certificate and claims no erasure; `wipe` is the command that erases.
    FirmwareErase {
        /// The disk.
        device: String,
        /// The purge to run (auto: the strongest the drive supports).
        #[arg(long, value_enum, default_value = "auto")]
        method: lapterop_agent::firmware::Method,
        /// Do not ask; this destroys all data on the disk.
        #[arg(long)]
        yes: bool,
    },
    /// Try suspend to RAM with an RTC wake alarm on this laptop (how `[wipe] unfreeze = "suspend"`
    /// lifts a BIOS freeze lock). Exit 0 woke by itself, 1 the suspend failed, 2 not possible here.
    Suspend {
        /// Seconds until the RTC alarm wakes the laptop.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(3..=300))]
        wake_after: u32,
    },
    /// The whole job for this laptop from the stick's site config: audit, wipe every internal disk,
    /// install the OS image, certificate into the outbox, upload. Exit 0 done, 1 a lead must look,
    /// 2 nothing done, 3 only the upload waits for the network.
    Run(lapterop_agent::cli::run::RunArgs),
    /// The volunteer's screens for this laptop from the stick's site config: pre-flight, audit, plan and
    /// confirmation, wipe, install, certificate into the outbox, upload, result. Exit codes as `run`;
    /// 2 also when cancelled or stopped at pre-flight.
    Flow(lapterop_agent::cli::flow::FlowArgs),
    /// Run as PID 1 of the live image: mount, coldplug, network, find the stick, run the flow.
    Init {
        /// Run even when not PID 1 (inside a VM's shell, for tests).
        #[arg(long)]
        force: bool,
    },
    /// Upload the certificates waiting in an outbox; keeps each receipt beside its certificate.
    /// Exit 0 all uploaded, 1 one was refused, 3 some wait for the network, 2 usage error.
    Upload {
        /// Collection server base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        server: String,
        /// Outbox directory (the stick's `outbox/`).
        #[arg(long)]
        outbox: std::path::PathBuf,
        /// The server's public key file; when given, every receipt's signature is checked.
        #[arg(long)]
        server_key: Option<std::path::PathBuf>,
    },
    /// Audit this laptop's hardware and give the refurbishment verdict.
    Audit(lapterop_agent::cli::audit::AuditArgs),
    /// List the disks with their identity, geometry and whether they may be wiped.
    Disks {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only these disks (default: all).
        #[arg(value_name = "DEVICE")]
        devices: Vec<String>,
        /// Read a recorded tree holding `sys/` and `proc/` instead of this machine
        /// (`scripts/record-storage-tree.sh` records one); nothing is opened or probed.
        #[arg(long)]
        root: Option<std::path::PathBuf>,
    },
    /// Overwrite disks, read them back, and write a signed certificate (exit 0 only if all are erased).
    Wipe(lapterop_agent::cli::wipe::WipeArgs),
    /// Check what blocks the job (RAID/VMD mode, eMMC driver, USB bridge, frozen drive, clock, network,
    /// battery). Exit 0 nothing blocks, 1 something does, 2 usage error.
    Preflight(lapterop_agent::cli::preflight::PreflightArgs),
    /// Show one workbench screen with sample data (for looking at the screens and for tests).
    #[command(hide = true)]
    UiDemo(lapterop_agent::ui::demo::DemoArgs),
}

fn main() -> ExitCode {
    // As /init of the live image the kernel starts us as PID 1 with no subcommand (and may pass stray
    // command-line words as arguments): that is `init`.
    if std::process::id() == 1 {
        return run_init(false);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("lapterop-agent {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Install(args) => lapterop_agent::cli::install::run(&args),
        Command::Capture(args) => lapterop_agent::cli::capture::run(&args),
        Command::Upload {
            server,
            outbox,
            server_key,
        } => lapterop_agent::cli::upload::upload_command(&server, &outbox, server_key.as_deref()),
        Command::Init { force } => run_init(force),
        Command::Probe { device } => lapterop_agent::cli::firmware::probe_command(&device),
        Command::Suspend { wake_after } => lapterop_agent::cli::suspend::suspend_command(wake_after),
        Command::FirmwareErase { device, method, yes } => {
            lapterop_agent::cli::firmware::firmware_erase_command(&device, method, yes)
        }
        Command::Audit(args) => lapterop_agent::cli::audit::cli(&args),
        Command::Disks { json, devices, root } => {
            lapterop_agent::cli::disks::list_command(json, &devices, root.as_deref())
        }
        Command::Run(args) => lapterop_agent::cli::run::cli(&args),
        Command::Flow(args) => lapterop_agent::cli::flow::cli(&args),
        Command::Wipe(args) => lapterop_agent::cli::wipe::run(args),
        Command::Preflight(args) => lapterop_agent::cli::preflight::cli(&args),
        Command::UiDemo(args) => lapterop_agent::ui::demo::run(&args),
    }
}

fn run_init(force: bool) -> ExitCode {
    match lapterop_agent::init::run(force) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("lapterop-agent init: {e:#}");
            ExitCode::from(2)
        }
    }
}
