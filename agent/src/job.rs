//! One laptop, start to finish: audit, wipe every internal disk, install the standard OS image, sign the
//! certificate, keep it in the stick's outbox and send it (`lapterop-agent run`, and the live image's
//! init in unattended mode).
//!
//! Order matters for the promises in `docs/security.md`: the certificate is written to the outbox
//! (atomically, signed) before any upload is tried, so a pulled cable or a dead server loses nothing;
//! the OS image goes only onto a disk whose wipe ended `erased` or `erased-with-exceptions`; a disk that
//! is internal but cannot be claimed is in the certificate as `not-erased` with the reason, so the
//! laptop can never be certified erased while one of its disks was left alone.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use lapterop_certificate::model::{InstallRecord, InstallStatus};
use lapterop_certificate::{
    self as cert, Certificate, DiskOutcome, DiskRecord, HiddenAreaCheck, HiddenAreas, NistCategory, OutcomeStatus,
    Person, StationInfo, Transport,
};

use crate::disk::{self, Claimed, Discovery, Disk, SafetyConfig};
use crate::outbox::{Outbox, Sent, Uploader};
use crate::site::{Site, TargetChoice};
use crate::wipe::{self, WipeSpec};

/// What one job is given.
#[derive(Debug)]
pub struct Job<'a> {
    /// The checked site config.
    pub site: &'a Site,
    /// The stick's `lapterop/` directory (keys, images, `outbox/`, `logs/`).
    pub dir: &'a Path,
    /// Kernel name of the stick's disk, never a target (it is refused anyway: it is mounted).
    pub stick_disk: Option<&'a str>,
    /// Only these disks (paths or names) instead of every internal one; loop devices allowed.
    pub only: &'a [String],
    /// Who ran it.
    pub operator: Person,
    /// Who checked it.
    pub verifier: Option<Person>,
    /// Set by SIGINT/SIGTERM: the wipe stops and its disks end `not-erased`.
    pub stop: &'a AtomicBool,
}

/// What became of the job.
#[derive(Debug)]
pub struct JobResult {
    /// The signed certificate (also in the outbox).
    pub certificate: Certificate,
    /// Its file in the outbox.
    pub certificate_file: PathBuf,
    /// The upload: `None` when no server is configured.
    pub upload: Option<Sent>,
    /// The donor page, from the server's receipt.
    pub donor_url: Option<String>,
    /// Seconds per stage, in order.
    pub stages: Vec<(&'static str, f64)>,
}

impl JobResult {
    /// One machine-readable line for logs and the end-to-end test.
    pub fn marker(&self) -> String {
        let outcome = match self.certificate.overall_outcome() {
            OutcomeStatus::Erased => "erased",
            OutcomeStatus::ErasedWithExceptions => "erased-with-exceptions",
            OutcomeStatus::NotErased => "not-erased",
        };
        let install = match &self.certificate.install {
            None => "none",
            Some(r) if r.status == InstallStatus::Installed => "installed",
            Some(_) => "failed",
        };
        let upload = match &self.upload {
            None => "no-server",
            Some(Sent::Uploaded | Sent::AlreadyDone) => "sent",
            Some(Sent::Failed(e)) if e.retryable() => "waiting",
            Some(Sent::Failed(_)) => "refused",
        };
        format!(
            "LAPTEROP-JOB-DONE certificate={} outcome={outcome} install={install} upload={upload}",
            self.certificate.id
        )
    }
}

/// Whether a disk is one of the laptop's own (what an unattended job wipes): not a loop device, not
/// empty, not the stick, and not attached by USB or marked removable (a volunteer's external disk or a
/// card reader is never taken without being asked).
pub fn is_internal(d: &Disk, stick_disk: Option<&str>) -> bool {
    d.transport != Transport::Loop
        && d.transport != Transport::Usb
        && !d.removable
        && d.capacity_bytes > 0
        && Some(d.name.as_str()) != stick_disk
}

/// Runs the whole job. Errors only when nothing could be certified at all (no station key, no disk, the
/// outbox cannot be written); everything else ends up in the certificate.
pub fn run(job: &Job<'_>) -> anyhow::Result<JobResult> {
    let site = job.site;
    let mut stages = Vec::new();
    let mut clock = Instant::now();
    let mut stage = |name: &'static str, stages: &mut Vec<(&'static str, f64)>| {
        let secs = clock.elapsed().as_secs_f64();
        println!("lapterop: stage {name} {secs:.1}s");
        stages.push((name, secs));
        clock = Instant::now();
    };
    let key = cert::keys::read_signing_key(&site.station.key).with_context(|| {
        format!(
            "the station key {} (make one with `lapterop-cert keygen` and enrol it on the server)",
            site.station.key.display()
        )
    })?;
    let outbox = Outbox::open(&job.dir.join("outbox")).context("opening the outbox on the stick")?;
    let binary_blake3 = wipe::self_blake3().context("hashing the agent binary")?;

    // Audit: the laptop's identity and health, before anything changes.
    let audit = crate::audit::run(Path::new("/"), Some(crate::drive::live_disk_summaries()), &site.policy);
    let audit_json = crate::audit::to_json(&audit);
    let host = crate::audit::host_section(&audit, &audit_json);
    println!(
        "lapterop: laptop {} {} serial {} (device id {})",
        host.system.vendor.as_deref().unwrap_or("?"),
        host.system.product.as_deref().unwrap_or("?"),
        host.system.serial.as_deref().unwrap_or("?"),
        host.device_id
    );
    stage("audit", &mut stages);

    // Claim every internal disk; a refused one is certified not erased, with the reason.
    let disks = Discovery::system().scan().context("listing the disks")?;
    let cfg = SafetyConfig::from_env(&[]);
    let mut claimed: Vec<Claimed> = Vec::new();
    let mut refused: Vec<DiskRecord> = Vec::new();
    let discovery = Discovery::system();
    let chosen: Vec<Disk> = if job.only.is_empty() {
        disks
            .iter()
            .filter(|d| is_internal(d, job.stick_disk))
            .cloned()
            .collect()
    } else {
        job.only
            .iter()
            .map(|o| discovery.find(o))
            .collect::<anyhow::Result<_>>()?
    };
    for d in &chosen {
        match disk::claim(d, &cfg) {
            Ok(c) => claimed.push(c),
            Err(reasons) => {
                let why: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                println!("lapterop: refusing {}: {}", d.name, why.join("; "));
                refused.push(refused_record(d, &why.join("; ")));
            }
        }
    }
    for d in disks
        .iter()
        .filter(|d| d.transport != Transport::Loop && !chosen.iter().any(|c| c.name == d.name))
    {
        println!("lapterop: leaving {} alone (the stick, USB or removable)", d.name);
    }
    if claimed.is_empty() && refused.is_empty() {
        anyhow::bail!("no internal disk found: check that a disk is fitted and the BIOS storage mode is AHCI");
    }
    for c in &claimed {
        println!(
            "lapterop: wiping {} ({} bytes, {:?}, model {}, serial {})",
            c.disk.name,
            c.capacity_bytes,
            c.disk.transport,
            c.disk.model.as_deref().unwrap_or("?"),
            c.disk.serial.as_deref().unwrap_or("?")
        );
    }
    stage("disks", &mut stages);

    let spec = WipeSpec {
        pattern: site.wipe.pattern,
        passes: site.wipe.passes,
        verify: site.wipe.verify,
    };
    let policy = crate::firmware::Policy {
        allow_security_erase: site.wipe.allow_security_erase,
        ..Default::default()
    };
    let mut records = match wipe::wipe_claimed(&claimed, &spec, site.wipe.method, &policy, job.stop) {
        Ok(r) => r,
        // A named method the drive lacks: nothing was written; fall back to what the drive can do.
        Err(wipe::WipeError::Plan(e)) => {
            println!("lapterop: {e}; using the automatic plan instead");
            wipe::wipe_claimed(&claimed, &spec, crate::firmware::Method::Auto, &policy, job.stop)
                .map_err(|e| anyhow::anyhow!("{e}"))?
        }
        Err(e) => return Err(anyhow::anyhow!("{e}")),
    };
    for r in &records {
        println!("lapterop: {}: {}", r.device, wipe::outcome_words(&r.outcome));
    }
    stage("wipe", &mut stages);

    let install = site.install.as_ref().and_then(|i| {
        let target = choose_target(&claimed, &records, i.target)?;
        let location = Site::image_location(i, job.dir);
        println!("lapterop: installing {location} onto {}", target.disk.name);
        let record = match cert::keys::read_public_key(&i.trust) {
            Ok(trusted) => crate::install::install_onto(
                target,
                &location,
                &trusted,
                &lapterop_osimage::install::InstallOptions::default(),
                &|_| {},
            ),
            Err(e) => failed_install(target, format!("the image key {}: {e}", i.trust.display())),
        };
        Some(record)
    });
    match &install {
        Some(r) if r.status == InstallStatus::Installed => println!(
            "lapterop: installed {} {} on {} ({} chunks read back)",
            r.image_name, r.image_version, r.target_device, r.chunks_verified
        ),
        Some(r) => println!(
            "lapterop: LAP-I01 install failed: {}",
            r.reason.as_deref().unwrap_or("?")
        ),
        None if site.install.is_some() => {
            println!("lapterop: LAP-I01 no disk ended erased, so the OS image was not installed")
        }
        None => {}
    }
    stage("install", &mut stages);
    drop(claimed);

    records.extend(refused);
    let mut certificate = Certificate {
        schema: cert::SCHEMA_V1.to_string(),
        id: cert::new_id(),
        issued_at: cert::now_utc(),
        agent: wipe::agent_info(binary_blake3),
        station: StationInfo {
            key_id: String::new(),
            organisation: site.station.organisation.clone(),
            site: site.station.site.clone(),
            name: site.station.name.clone(),
        },
        operator: job.operator.clone(),
        verifier: job.verifier.clone(),
        donor: None,
        host: Some(host),
        disks: records,
        install,
        signature: None,
    };
    certificate.sign(&key).context("signing the certificate")?;
    let entry = outbox
        .store(&certificate, Some(&audit_json))
        .context("writing the certificate to the stick's outbox")?;
    println!("lapterop: certificate {} saved in the outbox", certificate.id);
    stage("certificate", &mut stages);

    let (upload, donor_url) = match &site.server {
        None => (None, None),
        Some(server) => {
            let (sent, url) = send_outbox(&outbox, server, &certificate.id)?;
            (Some(sent), url)
        }
    };
    stage("upload", &mut stages);
    Ok(JobResult {
        certificate,
        certificate_file: entry.certificate,
        upload,
        donor_url,
        stages,
    })
}

/// Sends every pending certificate of the outbox (older ones first) with a few retries; returns what
/// became of `id` and its donor page.
pub fn send_outbox(outbox: &Outbox, server: &crate::site::Server, id: &str) -> anyhow::Result<(Sent, Option<String>)> {
    let key = server
        .key
        .as_deref()
        .map(cert::keys::read_public_key)
        .transpose()
        .context("the server key in the site config")?;
    let uploader = Uploader::new(&server.url, key, Duration::from_secs(30));
    let results = crate::outbox::upload_with_backoff(
        outbox,
        &uploader,
        3,
        Duration::from_secs(2),
        Duration::from_secs(8),
        &mut std::thread::sleep,
    )
    .context("reading the outbox")?;
    let mut mine = Sent::AlreadyDone;
    for (entry, sent) in results {
        let name = entry.certificate.file_name().map(|n| n.to_string_lossy().into_owned());
        match &sent {
            Sent::Uploaded => println!("lapterop: sent {}", name.as_deref().unwrap_or("?")),
            Sent::AlreadyDone => {}
            Sent::Failed(e) if e.retryable() => println!("lapterop: LAP-N01 {e}"),
            Sent::Failed(e) => println!("lapterop: LAP-N02 {e}"),
        }
        if name.as_deref() == Some(&format!("{id}.json")) {
            mine = sent;
        }
    }
    Ok((mine, donor_url(outbox, id)))
}

/// The donor page of a certificate whose receipt is in the outbox.
pub fn donor_url(outbox: &Outbox, id: &str) -> Option<String> {
    let bytes = std::fs::read(outbox.dir().join(format!("{id}.receipt.json"))).ok()?;
    let receipt: cert::model::Receipt = serde_json::from_slice(&bytes).ok()?;
    Some(receipt.donor_url)
}

/// The erased disk that gets the OS image.
fn choose_target<'c>(claimed: &'c [Claimed], records: &[DiskRecord], how: TargetChoice) -> Option<&'c Claimed> {
    let mut ok: Vec<&Claimed> = claimed
        .iter()
        .zip(records)
        .filter(|(_, r)| r.outcome.status != OutcomeStatus::NotErased)
        .map(|(c, _)| c)
        .collect();
    ok.sort_by(|a, b| a.disk.name.cmp(&b.disk.name));
    match how {
        TargetChoice::First => ok.first().copied(),
        TargetChoice::Largest => ok.iter().copied().rev().max_by_key(|c| c.capacity_bytes),
        TargetChoice::Auto => ok
            .iter()
            .copied()
            .rev()
            .max_by_key(|c| (!c.disk.rotational, c.capacity_bytes)),
    }
}

fn failed_install(target: &Claimed, reason: String) -> InstallRecord {
    let now = cert::now_utc();
    InstallRecord {
        status: InstallStatus::Failed,
        image_name: String::new(),
        image_version: String::new(),
        root_hash: String::new(),
        signer_key_id: String::new(),
        target_device: target.disk.name.clone(),
        target_serial: target.disk.serial.clone(),
        bytes_written: 0,
        chunks_verified: 0,
        chunk_mismatches: 0,
        reason: Some(reason),
        started_at: now.clone(),
        finished_at: now,
    }
}

/// An internal disk the job could not take: in the certificate, not erased, with the reason.
fn refused_record(d: &Disk, why: &str) -> DiskRecord {
    DiskRecord {
        device: d.name.clone(),
        model: d.model.clone(),
        serial: d.serial.clone(),
        firmware: d.firmware.clone(),
        wwn: d.wwn.clone(),
        transport: d.transport,
        rotational: d.rotational,
        capacity_bytes: d.capacity_bytes,
        logical_sector_size: d.logical_sector_size,
        physical_sector_size: d.physical_sector_size,
        hidden_areas: HiddenAreas {
            check: HiddenAreaCheck::Unavailable,
            hpa: None,
            dco: None,
        },
        nist_category: NistCategory::None,
        steps: Vec::new(),
        verification: None,
        outcome: DiskOutcome {
            status: OutcomeStatus::NotErased,
            exceptions: Vec::new(),
            reason: Some(format!("not wiped: {why}")),
        },
    }
}

/// `lapterop-agent run` arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The stick's `lapterop/` directory (site.toml, station.key, images/, outbox/).
    #[arg(long, value_name = "DIR")]
    pub stick: PathBuf,
    /// Run even if the site config asks for the interactive flow, without asking anything.
    #[arg(long)]
    pub unattended: bool,
    /// Name of the person running it (default: the site's ui.operator, else "unattended").
    #[arg(long)]
    pub operator: Option<String>,
    /// Only these disks instead of every internal one (repeatable; loop devices allowed, for tests).
    #[arg(long, value_name = "DEVICE")]
    pub only: Vec<String>,
}

/// `lapterop-agent run`: exit 0 erased (and installed and sent when configured), 1 something needs a
/// lead (a disk not erased, install failed, server refused), 2 nothing was done, 3 only the upload waits.
pub fn cli(args: &RunArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let site = match Site::load(&args.stick) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lapterop-agent run: {e}");
            return ExitCode::from(2);
        }
    };
    if site.flow.mode != crate::site::Mode::Unattended && !args.unattended {
        eprintln!(
            "lapterop-agent run: the site config asks for the interactive flow; pass --unattended to wipe every \
             internal disk without asking"
        );
        return ExitCode::from(2);
    }
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, std::sync::Arc::clone(&stop));
    }
    let operator = Person {
        name: args
            .operator
            .clone()
            .or_else(|| site.ui.operator.clone())
            .unwrap_or_else(|| "unattended".into()),
        role: None,
    };
    let job = Job {
        site: &site,
        dir: &args.stick,
        stick_disk: None,
        only: &args.only,
        operator,
        verifier: None,
        stop: &stop,
    };
    match run(&job) {
        Ok(r) => exit_code(&r),
        Err(e) => {
            eprintln!("lapterop-agent run: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The exit code of a finished job (see [`cli`]).
pub fn exit_code(r: &JobResult) -> std::process::ExitCode {
    use std::process::ExitCode;
    println!("{}", r.marker());
    if let Some(url) = &r.donor_url {
        println!("lapterop: donor page {url}");
    }
    let erased = r.certificate.overall_outcome() != OutcomeStatus::NotErased;
    let installed = r
        .certificate
        .install
        .as_ref()
        .is_none_or(|i| i.status == InstallStatus::Installed);
    if !erased || !installed {
        return ExitCode::from(1);
    }
    match &r.upload {
        Some(Sent::Failed(e)) if !e.retryable() => ExitCode::from(1),
        Some(Sent::Failed(_)) => ExitCode::from(3),
        _ => ExitCode::SUCCESS,
    }
}
