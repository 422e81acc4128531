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
    /// The trusted OS image key's public half: the one baked into the live image
    /// ([`crate::site::BAKED_IMAGE_KEY`]), never a file on the stick's data partition.
    pub image_key: &'a Path,
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

/// What signs and keeps certificates: the station key, the stick's outbox, the agent's own hash.
#[derive(Debug)]
pub struct Station {
    /// The station's secret key.
    pub key: cert::SigningKey,
    /// The stick's outbox.
    pub outbox: Outbox,
    /// blake3 of the running agent binary.
    pub binary_blake3: String,
}

/// Reads the station key and opens the outbox: everything a certificate needs before any disk is
/// touched (so a missing key stops the job before a wipe, not after).
pub fn open_station(site: &Site, dir: &Path) -> anyhow::Result<Station> {
    let key = cert::keys::read_signing_key(&site.station.key).with_context(|| {
        format!(
            "the station key {} (make one with `lapterop-cert keygen` and enrol it on the server)",
            site.station.key.display()
        )
    })?;
    let outbox = Outbox::open(&dir.join("outbox")).context("opening the outbox on the stick")?;
    let binary_blake3 = wipe::self_blake3().context("hashing the agent binary")?;
    Ok(Station {
        key,
        outbox,
        binary_blake3,
    })
}

/// The laptop's audit, in the forms the screens and the certificate need.
#[derive(Debug)]
pub struct Audited {
    /// The full audit.
    pub audit: crate::audit::Audit,
    /// The full audit as stored beside the certificate.
    pub json: Vec<u8>,
    /// The certificate's host section.
    pub host: cert::model::Host,
}

/// Audits this laptop (identity and health, before anything changes) against the site's policy.
pub fn audit_step(site: &Site) -> Audited {
    let audit = crate::audit::run(Path::new("/"), Some(crate::drive::live_disk_summaries()), &site.policy);
    let json = crate::audit::to_json(&audit);
    let host = crate::audit::host_section(&audit, &json);
    Audited { audit, json, host }
}

/// The disks of a job: the ones held for wiping, the ones that had to be refused (with the reason) and
/// the ones left alone on purpose (the stick, USB, removable).
#[derive(Debug)]
pub struct Disks {
    /// Held open exclusively, to be wiped.
    pub claimed: Vec<Claimed>,
    /// Chosen but refused: each is certified `not-erased` with the reason.
    pub refused: Vec<(Disk, Vec<disk::Refusal>)>,
    /// Not chosen: the stick, USB and removable disks.
    pub left_alone: Vec<Disk>,
}

impl Disks {
    /// The disks left alone on purpose, for the certificate's `not_touched` list (empty card readers,
    /// with no medium, are not disks).
    pub fn untouched(&self, stick_disk: Option<&str>) -> Vec<cert::UntouchedDisk> {
        self.left_alone
            .iter()
            .filter(|d| d.capacity_bytes > 0)
            .map(|d| cert::UntouchedDisk {
                device: d.name.clone(),
                model: d.model.clone(),
                serial: d.serial.clone(),
                transport: d.transport,
                capacity_bytes: d.capacity_bytes,
                reason: if Some(d.name.as_str()) == stick_disk {
                    cert::UntouchedReason::BootStick
                } else if is_internal(d, stick_disk) {
                    cert::UntouchedReason::NotChosen
                } else {
                    cert::UntouchedReason::External
                },
            })
            .collect()
    }

    /// The certificate records of the refused disks.
    pub fn refused_records(&self) -> Vec<DiskRecord> {
        self.refused
            .iter()
            .map(|(d, why)| refused_record(d, &refusal_text(why)))
            .collect()
    }
}

/// The reasons a disk was refused, as one line.
pub fn refusal_text(why: &[disk::Refusal]) -> String {
    why.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Claims every internal disk (or exactly the `only` ones); a disk that cannot be taken is kept with
/// its reasons. Errors when a named disk does not exist or sysfs cannot be read.
pub fn claim_disks(only: &[String], stick_disk: Option<&str>) -> anyhow::Result<Disks> {
    let discovery = Discovery::system();
    let disks = discovery.scan().context("listing the disks")?;
    let cfg = SafetyConfig::from_env(&[]);
    let chosen: Vec<Disk> = if only.is_empty() {
        disks.iter().filter(|d| is_internal(d, stick_disk)).cloned().collect()
    } else {
        only.iter().map(|o| discovery.find(o)).collect::<anyhow::Result<_>>()?
    };
    let mut out = Disks {
        claimed: Vec::new(),
        refused: Vec::new(),
        left_alone: Vec::new(),
    };
    for d in &chosen {
        match disk::claim(d, &cfg) {
            Ok(c) => out.claimed.push(c),
            Err(reasons) => out.refused.push((d.clone(), reasons)),
        }
    }
    out.left_alone = disks
        .into_iter()
        .filter(|d| d.transport != Transport::Loop && !chosen.iter().any(|c| c.name == d.name))
        .collect();
    Ok(out)
}

/// The wipe settings of the site.
fn wipe_spec(site: &Site) -> (WipeSpec, crate::firmware::Policy) {
    let spec = WipeSpec {
        pattern: site.wipe.pattern,
        passes: site.wipe.passes,
        verify: site.wipe.verify,
    };
    let policy = crate::firmware::Policy {
        allow_security_erase: site.wipe.allow_security_erase,
        expose_hpa: site.wipe.hidden_areas == crate::site::HiddenAreasChoice::Expose,
        ..Default::default()
    };
    (spec, policy)
}

/// The firmware plan of each claimed disk (probing only); a named method a drive lacks falls back to
/// the automatic plan, said on standard output.
///
/// Drives frozen by the BIOS: with `[wipe] unfreeze = "suspend"` the laptop is suspended to RAM once
/// with an RTC wake alarm and the plan is made again; each such disk's record starts with the
/// `unfreeze` step and what it achieved. Without that permission the plan falls back and its skipped
/// steps say `frozen`.
pub fn plan_step(site: &Site, claimed: &[Claimed]) -> anyhow::Result<Vec<wipe::FirmwarePrelude>> {
    let (_, policy) = wipe_spec(site);
    let plan = || match wipe::plan_claimed(claimed, site.wipe.method, &policy) {
        Ok(p) => Ok(p),
        Err(wipe::WipeError::Plan(e)) => {
            println!("lapterop: {e}; using the automatic plan instead");
            wipe::plan_claimed(claimed, crate::firmware::Method::Auto, &policy).map_err(|e| anyhow::anyhow!("{e}"))
        }
        Err(e) => Err(anyhow::anyhow!("{e}")),
    };
    let plans = plan()?;
    let frozen: Vec<bool> = plans.iter().map(crate::unfreeze::is_frozen).collect();
    if site.wipe.unfreeze != crate::site::UnfreezeChoice::Suspend || !frozen.contains(&true) {
        return Ok(plans);
    }
    drop(plans);
    let seconds = crate::unfreeze::UNFREEZE_SECONDS;
    println!(
        "lapterop: {} disk(s) frozen by the BIOS; suspending to RAM for {seconds} s to lift it (the laptop wakes by itself)",
        frozen.iter().filter(|f| **f).count()
    );
    let started = cert::now_utc();
    let slept = crate::unfreeze::PowerFiles::system().suspend_for(seconds);
    let mut plans = plan()?;
    for (p, was) in plans.iter_mut().zip(frozen) {
        if was {
            let step = crate::unfreeze::step(&slept, crate::unfreeze::is_frozen(p), started.clone(), seconds);
            p.skipped.insert(0, step);
        }
    }
    Ok(plans)
}

/// Wipes the claimed disks in parallel with their plans; one record per disk, in order.
pub fn wipe_step(
    site: &Site,
    claimed: &[Claimed],
    plans: Vec<wipe::FirmwarePrelude>,
    stop: &AtomicBool,
    progress: Option<wipe::ProgressFactory<'_>>,
) -> anyhow::Result<Vec<DiskRecord>> {
    let (spec, _) = wipe_spec(site);
    wipe::wipe_planned(claimed, plans, &spec, stop, progress).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Installs the site's OS image onto the chosen erased disk; `None` when the site installs nothing or
/// no disk ended erased.
pub fn install_step(
    site: &Site,
    dir: &Path,
    image_key: &Path,
    claimed: &[Claimed],
    records: &[DiskRecord],
    progress: &(dyn Fn(lapterop_osimage::install::Progress) + Sync),
) -> Option<InstallRecord> {
    let i = site.install.as_ref()?;
    let target = choose_target(claimed, records, i.target)?;
    let location = Site::image_location(i, dir);
    if let Some(ignored) = &i.ignored_trust {
        println!(
            "lapterop: NOTE install.trust = {:?} in site.toml is not read: the stick trusts only the image key \
             baked into it ({}); remove the line, and make the stick again with --image-key to change the key",
            ignored.display().to_string(),
            image_key.display()
        );
    }
    println!("lapterop: installing {location} onto {}", target.disk.name);
    Some(match cert::keys::read_public_key(image_key) {
        Ok(trusted) => crate::install::install_onto(
            target,
            &location,
            &trusted,
            &lapterop_osimage::install::InstallOptions::default(),
            progress,
        ),
        Err(e) => crate::install::failed_record(
            target,
            format!(
                "the trusted image key {}: {e} (the live image carries it; elsewhere pass --image-key)",
                image_key.display()
            ),
        ),
    })
}

/// Builds the certificate of the whole laptop, signs it with the station key and writes it atomically
/// into the outbox (with the full audit beside it). Nothing is uploaded here.
pub fn certify_and_store(
    site: &Site,
    station: &Station,
    audited: &Audited,
    people: (Person, Option<Person>),
    disks: (Vec<DiskRecord>, Vec<cert::UntouchedDisk>),
    install: Option<InstallRecord>,
) -> anyhow::Result<(Certificate, PathBuf)> {
    let (disks, not_touched) = disks;
    let mut certificate = Certificate {
        schema: cert::SCHEMA_V1.to_string(),
        id: cert::new_id().context("drawing a certificate id from the kernel's random numbers")?,
        issued_at: cert::now_utc(),
        agent: wipe::agent_info(station.binary_blake3.clone()),
        station: StationInfo {
            key_id: String::new(),
            organisation: site.station.organisation.clone(),
            site: site.station.site.clone(),
            name: site.station.name.clone(),
        },
        operator: people.0,
        verifier: people.1,
        donor: None,
        host: Some(audited.host.clone()),
        disks,
        not_touched,
        install,
        signature: None,
    };
    certificate.sign(&station.key).context("signing the certificate")?;
    let entry = station
        .outbox
        .store(&certificate, Some(&audited.json))
        .context("writing the certificate to the stick's outbox")?;
    println!("lapterop: certificate {} saved in the outbox", certificate.id);
    Ok((certificate, entry.certificate))
}

/// Sends the outbox when a server is configured: what became of certificate `id`, and its donor page.
pub fn upload_step(site: &Site, station: &Station, id: &str) -> anyhow::Result<(Option<Sent>, Option<String>)> {
    match &site.server {
        None => Ok((None, None)),
        Some(server) => {
            let (sent, url) = send_outbox(&station.outbox, server, id)?;
            Ok((Some(sent), url))
        }
    }
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
    let station = open_station(site, job.dir)?;

    let audited = audit_step(site);
    let host = &audited.host;
    println!(
        "lapterop: laptop {} {} serial {} (device id {})",
        host.system.vendor.as_deref().unwrap_or("?"),
        host.system.product.as_deref().unwrap_or("?"),
        host.system.serial.as_deref().unwrap_or("?"),
        host.device_id
    );
    stage("audit", &mut stages);

    // Claim every internal disk; a refused one is certified not erased, with the reason.
    let disks = claim_disks(job.only, job.stick_disk)?;
    for (d, why) in &disks.refused {
        println!("lapterop: refusing {}: {}", d.name, refusal_text(why));
    }
    for d in &disks.left_alone {
        println!("lapterop: leaving {} alone (the stick, USB or removable)", d.name);
    }
    if disks.claimed.is_empty() && disks.refused.is_empty() {
        anyhow::bail!("no internal disk found: check that a disk is fitted and the BIOS storage mode is AHCI");
    }
    for c in &disks.claimed {
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

    let plans = plan_step(site, &disks.claimed)?;
    let mut records = wipe_step(site, &disks.claimed, plans, job.stop, None)?;
    for r in &records {
        println!("lapterop: {}: {}", r.device, wipe::outcome_words(&r.outcome));
    }
    stage("wipe", &mut stages);

    let install = install_step(site, job.dir, job.image_key, &disks.claimed, &records, &|_| {});
    if let Some(line) = install_line(site, install.as_ref()) {
        println!("{line}");
    }
    stage("install", &mut stages);

    records.extend(disks.refused_records());
    let untouched = disks.untouched(job.stick_disk);
    drop(disks);
    let people = (job.operator.clone(), job.verifier.clone());
    let (certificate, certificate_file) =
        certify_and_store(site, &station, &audited, people, (records, untouched), install)?;
    stage("certificate", &mut stages);

    let (upload, donor_url) = upload_step(site, &station, &certificate.id)?;
    stage("upload", &mut stages);
    Ok(JobResult {
        certificate,
        certificate_file,
        upload,
        donor_url,
        stages,
    })
}

/// The console line about the install (`None` when the site installs nothing).
pub fn install_line(site: &Site, install: Option<&InstallRecord>) -> Option<String> {
    match install {
        Some(r) if r.status == InstallStatus::Installed => Some(format!(
            "lapterop: installed {} on {} ({} chunks read back)",
            r.image_label(),
            r.target_device,
            r.chunks_verified
        )),
        Some(r) => Some(format!(
            "lapterop: LAP-I01 install failed: {}",
            r.reason.as_deref().unwrap_or("?")
        )),
        None if site.install.is_some() => {
            Some("lapterop: LAP-I01 no disk ended erased, so the OS image was not installed".into())
        }
        None => None,
    }
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
    /// The trusted OS image key's public half (default: the one baked into the live image). A key file on
    /// the stick is never trusted.
    #[arg(long, value_name = "FILE", default_value = crate::site::BAKED_IMAGE_KEY)]
    pub image_key: PathBuf,
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
        image_key: &args.image_key,
    };
    match run(&job) {
        Ok(r) => exit_code(&r),
        Err(e) => {
            eprintln!("lapterop-agent run: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Prints the job's marker line and donor page, and gives its exit code (see [`cli`]).
pub fn exit_code(r: &JobResult) -> std::process::ExitCode {
    println!("{}", r.marker());
    if let Some(url) = &r.donor_url {
        println!("lapterop: donor page {url}");
    }
    code_of(r)
}

/// The exit code of a finished job (see [`cli`]).
pub fn code_of(r: &JobResult) -> std::process::ExitCode {
    use std::process::ExitCode;
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
