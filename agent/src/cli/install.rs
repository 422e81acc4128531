//! `lapterop-agent install`: the OS image onto one disk, by hand.

use crate::disk::{self, Discovery, SafetyConfig};
use crate::install::{install_onto, open_image};
use lapterop_certificate::model::InstallStatus;
use lapterop_osimage::install::{self, InstallOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// `lapterop-agent install` arguments.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The OS image (`lapterop-image-builder os-image pack`): a file, or an http:// or https:// URL
    /// on a server that answers range requests.
    #[arg(long)]
    pub image: String,
    /// The image key's public half: the image must be signed by it.
    #[arg(long)]
    pub trust: PathBuf,
    /// Do not ask for the typed confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Skip the read-back of every data extent (not recommended).
    #[arg(long)]
    pub no_read_back: bool,
    /// Partition UUID of the boot stick, never written (repeatable; also LAPTEROP_STICK_PARTUUIDS).
    #[arg(long, value_name = "UUID")]
    pub stick_partuuid: Vec<String>,
    /// Write `lapterop/machine.json` onto the installed ESP with this hostname pattern
    /// (placeholders `{serial}`, `{asset}`, `{model}`, `{vendor}`, `{id}`).
    #[arg(long, value_name = "PATTERN")]
    pub hostname: Option<String>,
    /// Certificate id for machine.json (default: a new one).
    #[arg(long, requires = "hostname")]
    pub certificate_id: Option<String>,
    /// Serial number for machine.json.
    #[arg(long, requires = "hostname")]
    pub serial: Option<String>,
    /// Asset tag for machine.json.
    #[arg(long, requires = "hostname")]
    pub asset_tag: Option<String>,
    /// Manufacturer for machine.json.
    #[arg(long, requires = "hostname")]
    pub vendor: Option<String>,
    /// Model for machine.json.
    #[arg(long, requires = "hostname")]
    pub model: Option<String>,
    /// The disk to install onto.
    pub device: String,
}

/// Runs `lapterop-agent install`. Exit 0 installed and read back, 1 the install failed (the disk's
/// partition table was wiped again), 2 nothing was written (bad image, refused disk, cancelled).
pub fn run(args: &InstallArgs) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("lapterop-agent install: {msg}");
        ExitCode::from(2)
    };
    let trusted = match lapterop_certificate::keys::read_public_key(&args.trust) {
        Ok(k) => k,
        Err(e) => return fail(e.to_string()),
    };
    // Everything about the image is checked before the disk is touched.
    let image = match open_image(&args.image, &trusted) {
        Ok(i) => i,
        Err(e) => return fail(format!("{e}; nothing was written")),
    };
    let discovery = Discovery::system();
    let disk = match discovery.find(&args.device) {
        Ok(d) => d,
        Err(e) => return fail(format!("{e:#}")),
    };
    let claimed = match disk::claim(&disk, &SafetyConfig::from_env(&args.stick_partuuid)) {
        Ok(c) => c,
        Err(reasons) => {
            for r in reasons {
                eprintln!("refusing {}: {r}", disk.path.display());
            }
            return fail("nothing was written".into());
        }
    };
    let identity = match &args.hostname {
        None => None,
        Some(pattern) => {
            if let Err(e) = crate::install::identity::check_pattern(pattern) {
                return fail(e);
            }
            let certificate_id = match &args.certificate_id {
                Some(id) => id.clone(),
                None => match lapterop_certificate::new_id() {
                    Ok(id) => id,
                    Err(e) => return fail(format!("drawing a certificate id: {e}")),
                },
            };
            Some(crate::install::Identity {
                machine: crate::install::identity::Machine {
                    certificate_id,
                    donor_url: None,
                    serial: args.serial.clone(),
                    asset_tag: args.asset_tag.clone(),
                    vendor: args.vendor.clone(),
                    model: args.model.clone(),
                },
                hostname_pattern: pattern.clone(),
            })
        }
    };
    let m = image.manifest();
    // Size, sector size and filesystem blocks against this disk, before the confirmation and before
    // any write (the installer checks again).
    if let Err(e) = install::plan(m, claimed.capacity_bytes, claimed.logical_sector_size) {
        return fail(format!("{} ({}): {e}", disk.path.display(), disk.name));
    }
    println!(
        "image {} {} (root {}), signed by {}; target {} ({} bytes, {}-byte sectors)",
        m.image.name,
        m.image.version,
        m.root,
        image.signer_key_id(),
        disk.path.display(),
        claimed.capacity_bytes,
        claimed.logical_sector_size
    );
    drop(image);
    if !args.yes {
        eprintln!(
            "Everything on {} will be replaced. Type INSTALL to go on:",
            disk.path.display()
        );
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() || line.trim() != "INSTALL" {
            return fail("cancelled; nothing was written".into());
        }
    }
    let options = InstallOptions {
        read_back: !args.no_read_back,
        ..InstallOptions::default()
    };
    // Plain lines at most once a second: fetched vs decoded vs written tells a slow server or stick
    // from a slow disk.
    let last = std::sync::Mutex::new(std::time::Instant::now());
    let progress = |p: install::Progress| {
        let Ok(mut last) = last.lock() else { return };
        if last.elapsed() >= std::time::Duration::from_secs(1) {
            *last = std::time::Instant::now();
            eprintln!(
                "fetched {} MiB, decoded {} MiB, written {} of {} MiB, read back {} MiB",
                p.read >> 20,
                p.decoded >> 20,
                p.written >> 20,
                p.total >> 20,
                p.verified >> 20
            );
        }
    };
    let record = install_onto(&claimed, &args.image, &trusted, &options, identity.as_ref(), &progress);
    match record.status {
        InstallStatus::Installed => {
            let discarded = match record.discarded_bytes {
                Some(n) => format!("{n} bytes the image does not use discarded"),
                None => "nothing discarded (the disk does not discard)".to_string(),
            };
            println!(
                "installed: {} bytes written, {} chunks read back and matching, {discarded}",
                record.bytes_written, record.chunks_verified
            );
            if let Some(g) = &record.grow {
                if g.grown {
                    println!(
                        "grown: partition {} ({}) fills the disk: {} bytes, filesystem {} bytes, checked",
                        g.partition, g.filesystem, g.partition_bytes, g.filesystem_bytes
                    );
                } else {
                    println!(
                        "not grown: partition {} is {} bytes, its {} filesystem keeps the image's {} bytes (no grow tool here)",
                        g.partition, g.partition_bytes, g.filesystem, g.filesystem_bytes
                    );
                }
            }
            if let Some(h) = &record.hostname {
                println!("machine.json written on the ESP: hostname {h}");
            }
            ExitCode::SUCCESS
        }
        InstallStatus::Failed => {
            eprintln!(
                "lapterop-agent install: FAILED: {}; install again",
                record.reason.as_deref().unwrap_or("unknown reason")
            );
            ExitCode::from(1)
        }
    }
}
