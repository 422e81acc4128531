//! `lapterop-agent capture`: the reference disk into a signed OS image, on the stick.

use crate::capture::{check_output_file, choose_disk, pack_and_put};
use crate::disk::{Discovery, SafetyConfig};
use lapterop_osimage::resize::find_tool;
use lapterop_osimage::{PackOptions, PackProgress, PackSummary};
use std::path::PathBuf;
use std::process::ExitCode;

/// zstd level for a capture: the reference laptop's CPU packs, so fast rather than smallest.
pub const CAPTURE_LEVEL: i32 = 6;

/// `lapterop-agent capture` arguments.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("output").required(true).args(["to", "put"])))]
pub struct CaptureArgs {
    /// The reference disk (default: the one internal disk; refused when there are several).
    #[arg(long)]
    pub device: Option<String>,
    /// Write the image to this new file, on a second USB disk (ext4 or exFAT; FAT32 holds at most
    /// 4 GiB per file).
    #[arg(long, value_name = "FILE")]
    pub to: Option<PathBuf>,
    /// Send the image by HTTP PUT to this URL as it is made (the disk is read twice; nothing is kept
    /// on the stick).
    #[arg(long, value_name = "URL")]
    pub put: Option<String>,
    /// The image signing key (PREFIX.key from `lapterop-cert keygen`), e.g. on the lead's own USB
    /// disk. Read into memory only; never copied.
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// Keep the last filesystem at the reference disk's size (otherwise a copy of it is shrunk when
    /// resize2fs/ntfsresize are at hand and the output is a file).
    #[arg(long)]
    pub no_shrink: bool,
    /// Image name.
    #[arg(long, default_value = "reference")]
    pub name: String,
    /// Image version (default: today's date, YYYY.MM.DD).
    #[arg(long)]
    pub version: Option<String>,
    /// zstd level.
    #[arg(long, default_value_t = CAPTURE_LEVEL)]
    pub level: i32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Partition UUID of the boot stick, never captured (repeatable; also LAPTEROP_STICK_PARTUUIDS).
    #[arg(long, value_name = "UUID")]
    pub stick_partuuid: Vec<String>,
}

/// Runs `lapterop-agent capture`. Exit 0 the image is complete (file renamed into place, or the
/// server answered 2xx), 1 the capture failed part way (no complete image anywhere), 2 nothing was
/// done (bad input).
pub fn run(args: &CaptureArgs) -> ExitCode {
    let usage = |msg: String| {
        eprintln!("lapterop-agent capture: {msg}");
        ExitCode::from(2)
    };
    let key = match lapterop_certificate::keys::read_signing_key(&args.key_file) {
        Ok(k) => k,
        Err(e) => {
            return usage(format!(
                "cannot read the image signing key: {e}; plug in the USB disk with the key and give --key-file"
            ))
        }
    };
    let disk = match choose_disk(
        &Discovery::system(),
        args.device.as_deref(),
        &SafetyConfig::from_env(&args.stick_partuuid),
    ) {
        Ok(d) => d,
        Err(e) => return usage(e.to_string()),
    };
    let out = match &args.to {
        Some(to) => match check_output_file(to, &disk) {
            Ok(p) => Some(p),
            Err(e) => return usage(e.to_string()),
        },
        None => None,
    };
    if let Some(url) = &args.put {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return usage(format!("--put {url}: give an http:// or https:// URL"));
        }
    }
    let version = args.version.clone().unwrap_or_else(|| {
        lapterop_certificate::now_utc()
            .get(..10)
            .unwrap_or("0")
            .replace('-', ".")
    });
    let mut opts = PackOptions::new(&args.name, &version);
    opts.level = args.level;
    let tools = find_tool("resize2fs").is_some() && find_tool("e2fsck").is_some();
    opts.shrink_last = !args.no_shrink && out.is_some() && tools;
    if !args.no_shrink && !opts.shrink_last {
        let why = if out.is_none() {
            "a streamed upload cannot shrink (that needs a copy on disk; use --to to shrink)"
        } else {
            "resize2fs is not on this system"
        };
        eprintln!(
            "capture: not shrinking the last filesystem ({why}); the image needs a disk as large as {}",
            disk.path.display()
        );
    }
    eprintln!(
        "capture: reading {} ({} MiB) read-only",
        disk.path.display(),
        disk.capacity_bytes >> 20
    );
    // Plain lines at most once a second, and the first of each pass.
    let last = std::sync::Mutex::new(None::<(std::time::Instant, u32)>);
    let progress = |p: PackProgress| {
        let Ok(mut last) = last.lock() else { return };
        if last.is_none_or(|(t, pass)| pass != p.pass || t.elapsed() >= std::time::Duration::from_secs(1)) {
            *last = Some((std::time::Instant::now(), p.pass));
            eprintln!(
                "capture pass {}/{}: read {} of {} MiB, compressed {} MiB",
                p.pass,
                p.passes,
                p.read >> 20,
                p.total >> 20,
                p.written >> 20
            );
        }
    };
    let (summary, place) = if let Some(out) = &out {
        match lapterop_osimage::pack_file(&disk.path, out, &key, &opts, &progress) {
            Ok(s) => (s, out.display().to_string()),
            Err(e) => return failed(&format!("{e}; no image was written")),
        }
    } else {
        let url = args.put.clone().unwrap_or_default();
        match pack_and_put(&disk.path, &url, &key, &opts, &progress) {
            Ok((s, status)) => (s, format!("{url} (HTTP {status})")),
            Err(e) => return failed(&e),
        }
    };
    drop(key);
    report(
        args.json,
        &disk.path.display().to_string(),
        &place,
        &summary,
        opts.shrink_last,
    )
}

fn failed(msg: &str) -> ExitCode {
    eprintln!("lapterop-agent capture: FAILED: {msg}");
    ExitCode::from(1)
}

fn report(json: bool, device: &str, place: &str, s: &PackSummary, shrunk: bool) -> ExitCode {
    if json {
        let v = serde_json::json!({
            "device": device,
            "image": place,
            "root": s.root,
            "data_bytes": s.data_bytes,
            "zero_bytes": s.zero_bytes,
            "skip_bytes": s.skip_bytes,
            "file_bytes": s.file_bytes,
            "min_disk_bytes": s.min_disk_bytes,
            "shrunk": shrunk,
        });
        println!("{v}");
    } else {
        println!(
            "captured {device} to {place}: root {}; data {} MiB, file {} MiB, min target {} MiB{}",
            s.root,
            s.data_bytes >> 20,
            s.file_bytes >> 20,
            s.min_disk_bytes >> 20,
            if shrunk { "" } else { " (not shrunk)" }
        );
    }
    ExitCode::SUCCESS
}
