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
    /// List the disks with their identity, geometry and whether they may be wiped.
    Disks {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only these disks (default: all).
        #[arg(value_name = "DEVICE")]
        devices: Vec<String>,
    },
    /// Overwrite disks, read them back, and write a signed certificate (exit 0 only if all are erased).
    Wipe(lapterop_agent::wipe::WipeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("lapterop-agent {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Disks { json, devices } => lapterop_agent::disk::list_command(json, &devices),
        Command::Wipe(args) => lapterop_agent::wipe::run(args),
    }
}
