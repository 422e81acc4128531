//! `lapterop-agent audit`: the hardware audit and verdict.

use crate::audit::{render, run, to_json, DiskSummary, Policy};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `lapterop-agent audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Print the full audit as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Read sys/ and proc/ under this directory instead of / (a recorded tree).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Site config whose [refurbishment] table is the policy (default: the built-in policy).
    #[arg(long, value_name = "SITE.toml")]
    pub policy: Option<PathBuf>,
    /// Disk summaries as JSON (an array), as the disk layer reports them; for recorded trees and tests.
    #[arg(long, value_name = "DISKS.json")]
    pub disks: Option<PathBuf>,
}

/// Runs `lapterop-agent audit`. Exit 0 when the audit ran (a partial audit included), 2 when the
/// policy or disk file cannot be used.
pub fn cli(args: &AuditArgs) -> ExitCode {
    let policy = match &args.policy {
        None => Policy::default(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                let base = path.parent().unwrap_or(std::path::Path::new("."));
                crate::site::Site::parse(&text, base)
                    .map(|site| site.policy)
                    .map_err(|e| e.to_string())
            }) {
            Ok(p) => p,
            Err(err) => {
                eprintln!(
                    "error: reading the policy {}: {err}; fix the [refurbishment] table and try again",
                    path.display()
                );
                return ExitCode::from(2);
            }
        },
    };
    let disks = match &args.disks {
        // The live machine: the disk layer and the drives' own health logs.
        None if args.root == Path::new("/") => Some(crate::audit::live_disk_summaries()),
        None => None,
        Some(path) => match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Vec<DiskSummary>>(&b).map_err(|e| e.to_string()))
        {
            Ok(d) => Some(d),
            Err(err) => {
                eprintln!("error: reading the disk list {}: {err}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let audit = run(&args.root, disks, &policy);
    if args.json {
        print!("{}", String::from_utf8_lossy(&to_json(&audit)));
    } else {
        print!("{}", render(&audit));
    }
    ExitCode::SUCCESS
}
