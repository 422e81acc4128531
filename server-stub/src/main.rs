//! Lapterop collection server: ingest, review, donor proof.

use clap::Parser;

/// Lapterop collection server: ingest, review, donor proof.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("not yet: this program is being built (see README.md)")
}
