//! `lapterop-agent disks`: every disk and whether it may be wiped.

use crate::disk::{probe_exclusive, refusals, Discovery, Disk, Refusal, SafetyConfig};
use lapterop_certificate::Transport;
use serde::Serialize;
use std::path::Path;

/// `lapterop-agent disks [--json]`: every disk and whether it may be wiped. Exit 0, or 2 when sysfs
/// cannot be read.
/// With `only`, just those devices are examined (nothing else is opened). With `root`, a recorded tree
/// is read instead of this machine (no device is opened: nothing is probed).
pub fn list_command(json: bool, only: &[String], root: Option<&Path>) -> std::process::ExitCode {
    let cfg = SafetyConfig::from_env(&[]);
    let discovery = root.map_or_else(Discovery::system, Discovery::at);
    let found = if only.is_empty() {
        discovery.scan()
    } else {
        only.iter().map(|d| discovery.find(d)).collect()
    };
    let disks = match found {
        Ok(d) => d,
        Err(e) => {
            eprintln!("lapterop-agent disks: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let rows: Vec<Listed> = disks
        .iter()
        .map(|d| {
            let mut refusals = refusals(d, &cfg);
            if refusals.is_empty() && root.is_none() {
                refusals.extend(probe_exclusive(d));
            }
            let firmware = (json && root.is_none() && d.transport != Transport::Loop).then(|| {
                let v = crate::drive::probe_json(&d.name, d.rotational, &crate::firmware::Policy::default());
                // The device name is the row's already.
                match v {
                    serde_json::Value::Object(mut m) => {
                        m.remove("device");
                        serde_json::Value::Object(m)
                    }
                    other => other,
                }
            });
            Listed {
                disk: d,
                refusals,
                firmware,
            }
        })
        .collect();
    if json {
        match serde_json::to_string_pretty(&rows) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("lapterop-agent disks: {e}");
                return std::process::ExitCode::from(2);
            }
        }
        return std::process::ExitCode::SUCCESS;
    }
    println!(
        "{:<10} {:>10} {:<8} {:<24} {:<20} STATUS",
        "DEVICE", "SIZE", "BUS", "MODEL", "SERIAL"
    );
    for r in rows {
        let d = r.disk;
        let status = if r.refusals.is_empty() {
            "can be wiped".to_string()
        } else {
            format!(
                "refused: {}",
                r.refusals
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        let bus = serde_json::to_value(d.transport)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!(
            "{:<10} {:>10} {:<8} {:<24} {:<20} {status}",
            d.name,
            lapterop_words::size(d.capacity_bytes),
            bus,
            d.model.as_deref().or(d.backing_file.as_deref()).unwrap_or("-"),
            d.serial.as_deref().unwrap_or("-"),
        );
    }
    std::process::ExitCode::SUCCESS
}

/// One row of `lapterop-agent disks`.
#[derive(Debug, Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    disk: &'a Disk,
    /// Empty when the disk may be wiped.
    refusals: Vec<Refusal>,
    /// With `--json`: what the drive's firmware reports (capabilities, security state, hidden areas,
    /// health, the purge `--method auto` would choose), as `lapterop-agent probe` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    firmware: Option<serde_json::Value>,
}
