//! Lapterop image builder: the live USB image and the standard OS image.

use clap::Parser;

/// Lapterop image builder: the live USB image and the standard OS image.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("not yet: this program is being built (see README.md)")
}
