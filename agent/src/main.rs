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
    Audit(lapterop_agent::audit::AuditArgs),
    /// Check what blocks the job (RAID/VMD mode, eMMC driver, USB bridge, frozen drive, clock, network,
    /// battery). Exit 0 nothing blocks, 1 something does, 2 usage error.
    Preflight(lapterop_agent::preflight::PreflightArgs),
    /// Show one workbench screen with sample data (for looking at the screens and for tests).
    #[command(hide = true)]
    UiDemo(lapterop_agent::ui::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("lapterop-agent {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Upload {
            server,
            outbox,
            server_key,
        } => lapterop_agent::outbox::upload_command(&server, &outbox, server_key.as_deref()),
        Command::Audit(args) => lapterop_agent::audit::cli(&args),
        Command::Preflight(args) => lapterop_agent::preflight::cli(&args),
        Command::UiDemo(args) => lapterop_agent::ui::demo::run(&args),
    }
}
