//! `lapterop-agent wipe`: wipe disks by hand and write their certificate.

use crate::disk::{self, Discovery, SafetyConfig};
use crate::wipe::{
    agent_info, outcome_words, plan_claimed, self_blake3, wipe_planned, write_atomically, PatternChoice, VerifyChoice,
    WipeError, WipeSpec, EXIT_INTERRUPTED, EXIT_NOTHING_DONE, EXIT_NOT_ERASED,
};
use anyhow::{bail, Context};
use lapterop_certificate::{self as cert, OutcomeStatus, Person, StationInfo};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Arguments of `lapterop-agent wipe`.
#[derive(Debug, clap::Args)]
pub struct WipeArgs {
    /// Overwrite pattern.
    #[arg(long, value_enum, default_value_t = PatternChoice::Random)]
    pub pattern: PatternChoice,
    /// Number of overwrite passes (the last one is verified).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub passes: u32,
    /// How the last pass is read back.
    #[arg(long, value_enum, default_value_t = VerifyChoice::Full)]
    pub verify: VerifyChoice,
    /// After the verified overwrite, discard every block of a non-rotational disk (ssd) or not (never).
    #[arg(long, value_enum, default_value = "ssd")]
    pub discard: crate::wipe::DiscardChoice,
    /// After a firmware purge that completed and changed every sampled block: overwrite and read back
    /// as always (overwrite), or stop there with the sampled check as the verification (sampled;
    /// NIST SP 800-88 Purge with sampled verification).
    #[arg(long, value_enum, default_value = "overwrite")]
    pub after_purge: crate::wipe::AfterPurge,
    /// Firmware erase before the overwrite: auto = the strongest purge the drive really supports
    /// (docs/firmware-erase.md); overwrite = none; or one named method (an error if unsupported).
    #[arg(long, value_enum, default_value = "auto")]
    pub method: crate::firmware::Method,
    /// Allow ATA Security Erase (off by default: only a Clear for flash, risky behind USB bridges).
    #[arg(long)]
    pub allow_security_erase: bool,
    /// Leave an ATA Host Protected Area in place instead of opening it for the wipe (the disk is then
    /// at best erased with exceptions).
    #[arg(long)]
    pub keep_hpa: bool,
    /// Reset a locked self-encrypting (TCG Opal) drive with the PSID printed on its label before wiping
    /// it (TCG PSID Revert; destroys everything on it): DEVICE=PSID, repeatable. Only a drive that Level
    /// 0 Discovery reports locked is reverted; the PSID is never logged nor written to the certificate.
    #[arg(long, value_name = "DEVICE=PSID", value_parser = parse_psid_arg)]
    pub psid: Vec<PsidArg>,
    /// Do not ask for a typed confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Station secret key that signs the certificate (PREFIX.key from `lapterop-cert keygen`).
    #[arg(long, value_name = "FILE")]
    pub station_key: Option<PathBuf>,
    /// Name or volunteer code of the person running the wipe.
    #[arg(long, default_value = "unnamed operator")]
    pub operator: String,
    /// Organisation running the workshop.
    #[arg(long, default_value = "Lapterop workshop")]
    pub organisation: String,
    /// Workshop site.
    #[arg(long, default_value = "unspecified site")]
    pub site: String,
    /// Where to write the signed certificate (must not exist yet) [default: lapterop-certificate-ID.json].
    #[arg(long, value_name = "FILE")]
    pub certificate: Option<PathBuf>,
    /// Partition UUID of the boot stick, never wiped (repeatable; also read from LAPTEROP_STICK_PARTUUIDS).
    #[arg(long, value_name = "UUID")]
    pub stick_partuuid: Vec<String>,
    /// Whole disks to wipe (/dev/sdb, /dev/nvme0n1, /dev/disk/by-id/...).
    #[arg(required = true, value_name = "DEVICE")]
    pub devices: Vec<String>,
}

/// One `--psid DEVICE=PSID`.
#[derive(Clone)]
pub struct PsidArg {
    /// The device as named on the command line.
    pub device: String,
    /// The PSID, checked (32 letters and digits).
    pub psid: std::sync::Arc<crate::opal::Psid>,
}

impl std::fmt::Debug for PsidArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PsidArg({}, hidden)", self.device)
    }
}

fn parse_psid_arg(s: &str) -> Result<PsidArg, String> {
    let (device, psid) = s
        .split_once('=')
        .ok_or("expected DEVICE=PSID, for example /dev/nvme0n1=<the 32 characters on the label>")?;
    let psid = crate::opal::Psid::parse(psid).map_err(|e| e.to_string())?;
    Ok(PsidArg {
        device: device.to_owned(),
        psid: std::sync::Arc::new(psid),
    })
}

/// Hands each `--psid` to its disk's locked self-encrypting drive, and says which drives stay locked.
fn give_psids(
    discovery: &Discovery,
    claimed: &[disk::Claimed],
    preludes: &mut [crate::wipe::FirmwarePrelude],
    psids: Vec<PsidArg>,
) -> anyhow::Result<()> {
    let mut named = Vec::new();
    for a in psids {
        let name = discovery.find(&a.device)?.name;
        if !claimed.iter().any(|c| c.disk.name == name) {
            bail!("--psid names {}, which is not one of the disks to wipe", a.device);
        }
        named.push((name, a.psid));
    }
    for (c, p) in claimed.iter().zip(preludes.iter_mut()) {
        let given = named
            .iter()
            .position(|(n, _)| *n == c.disk.name)
            .map(|i| named.swap_remove(i).1);
        match (p.sed.as_mut(), given) {
            (Some(sed), Some(psid)) => {
                let psid = std::sync::Arc::try_unwrap(psid)
                    .map_err(|_| anyhow::anyhow!("--psid is given twice for {}", c.disk.name))?;
                sed.give_psid(psid);
                eprintln!(
                    "{}: {}; it is reset with the PSID given (TCG PSID Revert) before it is wiped",
                    c.disk.name, sed.why
                );
            }
            (Some(sed), None) => eprintln!(
                "{}: {}; no --psid {}=PSID was given: its locked ranges will fail and it will not be erased",
                c.disk.name, sed.why, c.disk.name
            ),
            (None, Some(_)) => eprintln!(
                "{}: --psid given, but the drive does not report a locked range: no PSID Revert, the PSID is not used",
                c.disk.name
            ),
            (None, None) => {}
        }
    }
    Ok(())
}

/// Runs `lapterop-agent wipe`; see the exit codes above and in `docs/wiping.md`.
pub fn run(args: WipeArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lapterop-agent wipe: {e:#}");
            ExitCode::from(EXIT_NOTHING_DONE)
        }
    }
}

/// Shows what will be destroyed and asks for the word ERASE.
fn confirm(claimed: &[disk::Claimed]) -> anyhow::Result<bool> {
    eprintln!("These disks will be overwritten; everything on them will be lost:");
    for c in claimed {
        let d = &c.disk;
        eprintln!(
            "  {}  {}  {:?}  model {}  serial {}",
            d.path.display(),
            lapterop_words::size(c.capacity_bytes),
            d.transport,
            d.model.as_deref().unwrap_or("?"),
            d.serial.as_deref().unwrap_or("?"),
        );
    }
    eprint!("Type ERASE to continue: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim() == "ERASE")
}

fn run_inner(args: WipeArgs) -> anyhow::Result<ExitCode> {
    let key_path = args
        .station_key
        .as_ref()
        .context("no station key: pass --station-key FILE (made by `lapterop-cert keygen`)")?;
    let key = cert::keys::read_signing_key(key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let id = cert::new_id().context("drawing a certificate id from the kernel's random numbers")?;
    let cert_path = args
        .certificate
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("lapterop-certificate-{id}.json")));
    if cert_path.exists() {
        bail!("{} already exists; choose another --certificate", cert_path.display());
    }
    let binary_blake3 = self_blake3().context("hashing the agent binary (/proc/self/exe)")?;

    let discovery = Discovery::system();
    let cfg = SafetyConfig::from_env(&args.stick_partuuid);
    let mut claimed = Vec::new();
    let mut refused = false;
    for dev in &args.devices {
        let d = discovery.find(dev)?;
        if claimed.iter().any(|c: &disk::Claimed| c.disk.name == d.name) {
            bail!("{dev} is listed twice");
        }
        match disk::claim(&d, &cfg) {
            Ok(c) => claimed.push(c),
            Err(reasons) => {
                refused = true;
                for r in reasons {
                    eprintln!("refusing {}: {r}", d.path.display());
                }
            }
        }
    }
    if refused {
        eprintln!("lapterop-agent wipe: nothing was written; fix the reasons above and try again");
        return Ok(ExitCode::from(EXIT_NOTHING_DONE));
    }
    if !args.yes && !confirm(&claimed)? {
        eprintln!("lapterop-agent wipe: cancelled; nothing was written");
        return Ok(ExitCode::from(EXIT_NOTHING_DONE));
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing the signal handler")?;
    }
    let spec = WipeSpec {
        pattern: args.pattern,
        passes: args.passes,
        verify: args.verify,
        discard: args.discard,
        after_purge: args.after_purge,
    };
    let policy = crate::firmware::Policy {
        allow_security_erase: args.allow_security_erase || args.method == crate::firmware::Method::AtaSecurityErase,
        expose_hpa: !args.keep_hpa,
        psid_revert: !args.psid.is_empty(),
        ..Default::default()
    };
    let mut preludes = match plan_claimed(&claimed, args.method, &policy) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("lapterop-agent wipe: {e}; nothing was written");
            return Ok(ExitCode::from(EXIT_NOTHING_DONE));
        }
    };
    give_psids(&discovery, &claimed, &mut preludes, args.psid.clone())?;
    for (c, p) in claimed.iter().zip(&preludes) {
        for note in &p.notes {
            eprintln!("{}: {note}", c.disk.name);
        }
    }
    // The bars live until every disk is done.
    let bars = crate::ui::disk_bars::Ui::new();
    let progress = claimed
        .iter()
        .map(|c| Box::new(bars.disk(&c.disk.name)) as Box<dyn crate::wipe::Progress + Send>)
        .collect();
    let disks = match wipe_planned(&claimed, preludes, &spec, &stop, progress) {
        Ok(d) => d,
        Err(WipeError::Plan(e)) => {
            eprintln!("lapterop-agent wipe: {e}; nothing was written");
            return Ok(ExitCode::from(EXIT_NOTHING_DONE));
        }
        Err(e @ WipeError::Mismatch { .. }) => return Err(e.into()),
        Err(WipeError::Failed(e)) => return Err(e),
    };
    let interrupted = stop.load(Ordering::Relaxed);

    let certificate = cert::Draft {
        agent: agent_info(binary_blake3),
        station: StationInfo {
            key_id: String::new(),
            organisation: args.organisation.clone(),
            site: args.site.clone(),
            name: None,
        },
        operator: Person {
            name: args.operator.clone(),
            role: None,
        },
        verifier: None,
        donor: None,
        host: None,
        disks,
        not_touched: Vec::new(),
        install: None,
    }
    .sign(id, &key)
    .context("signing the certificate")?;
    write_atomically(&cert_path, certificate.to_pretty_json()?.as_bytes())
        .with_context(|| format!("writing the certificate {}", cert_path.display()))?;
    for d in &certificate.disks {
        println!("{}: {}", d.device, outcome_words(&d.outcome));
    }
    println!("certificate: {}", cert_path.display());
    Ok(if interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if certificate.overall_outcome() == OutcomeStatus::Erased {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_ERASED)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psid_arguments_are_device_equals_32_letters_and_digits_and_never_printed() {
        let a = parse_psid_arg("/dev/nvme0n1=0123456789ABCDEF-GHIJKLMNOPQRSTUV").unwrap();
        assert_eq!(a.device, "/dev/nvme0n1");
        assert_eq!(format!("{a:?}"), "PsidArg(/dev/nvme0n1, hidden)");
        assert!(parse_psid_arg("0123456789ABCDEFGHIJKLMNOPQRSTUV")
            .unwrap_err()
            .contains("DEVICE=PSID"));
        assert!(parse_psid_arg("/dev/sda=0123").unwrap_err().contains("32 characters"));
    }
}
