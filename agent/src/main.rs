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
    /// Audit this laptop's hardware and give the refurbishment verdict.
    Audit(lapterop_agent::audit::AuditArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("lapterop-agent {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Audit(args) => lapterop_agent::audit::cli(&args),
    }
}
