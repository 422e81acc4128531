//! The pipeline's steps, each one thing: open the station, audit, claim, plan, wipe, install, send.
//! They report through the [`Event`] callback `say` and print nothing.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use lapterop_certificate::model::{InstallRecord, InstallStatus};
use lapterop_certificate::{self as cert, DiskRecord, OutcomeStatus, Transport};

use super::{Event, Ports};
use crate::disk::{self, Claimed, Discovery, Disk, SafetyConfig};
use crate::outbox::{Outbox, Sent, Uploader};
use crate::site::{ExternalChoice, Site, TargetChoice};
use crate::wipe::{self, WipeSpec};

/// Whether a disk is one of the laptop's own (what an unattended job wipes): not a loop device, not
/// empty, not the stick, and not attached by USB or marked removable (a volunteer's external disk or a
/// card reader is never taken without being asked).
pub fn is_internal(d: &Disk, stick_disk: Option<&str>) -> bool {
    d.transport != Transport::Loop && !is_external(d) && d.capacity_bytes > 0 && Some(d.name.as_str()) != stick_disk
}

/// Whether a disk is the donor's loose medium rather than the laptop's storage: on USB, removable, or
/// an SD card in the reader. Such a disk is wiped only when the site says so and never receives the
/// OS image.
pub fn is_external(d: &Disk) -> bool {
    d.transport == Transport::Usb || d.removable || d.card
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

/// Why the station could not be opened: the job stops before any disk is touched.
#[derive(Debug, thiserror::Error)]
pub enum StationError {
    /// The station key is missing or unreadable (`LAP-S01`).
    #[error(
        "the station key {} (make one with `lapterop-cert keygen` and enrol it on the server): {source}",
        path.display()
    )]
    Key {
        /// The configured key file.
        path: std::path::PathBuf,
        /// What went wrong.
        source: cert::keys::KeyError,
    },
    /// The stick's outbox cannot be opened, or the agent cannot hash itself (`LAP-S02`).
    #[error("{0:#}")]
    Stick(anyhow::Error),
}

/// Reads the station key and opens the outbox: everything a certificate needs before any disk is
/// touched (so a missing key stops the job before a wipe, not after).
pub fn open_station(site: &Site, dir: &Path) -> Result<Station, StationError> {
    let key = cert::keys::read_signing_key(&site.station.key).map_err(|source| StationError::Key {
        path: site.station.key.clone(),
        source,
    })?;
    let outbox = Outbox::open(&dir.join("outbox"))
        .context("opening the outbox on the stick")
        .map_err(StationError::Stick)?;
    let binary_blake3 = wipe::self_blake3()
        .context("hashing the agent binary")
        .map_err(StationError::Stick)?;
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
pub fn audit_step(site: &Site, ports: &dyn Ports) -> Audited {
    let audit = crate::audit::run(ports.root(), ports.disk_summaries(), &site.policy);
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

pub use crate::disk::refusal_text;

/// Claims every internal disk (or exactly the `only` ones), and the SD cards and USB disks other than
/// the stick when `external` is [`ExternalChoice::Wipe`]; a disk that cannot be taken is kept with
/// its reasons. Errors when a named disk does not exist or sysfs cannot be read.
pub fn claim_disks(only: &[String], stick_disk: Option<&str>, external: ExternalChoice) -> anyhow::Result<Disks> {
    let discovery = Discovery::system();
    let disks = discovery.scan().context("listing the disks")?;
    let cfg = SafetyConfig::from_env(&[]);
    let chosen: Vec<Disk> = if only.is_empty() {
        disks
            .iter()
            .filter(|d| chosen_by_default(d, stick_disk, external))
            .cloned()
            .collect()
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

/// Whether a whole-laptop job takes `d`: an internal disk, or with `external = "wipe"` also an SD
/// card or a USB disk, but never the stick, a loop device or an empty reader.
pub fn chosen_by_default(d: &Disk, stick_disk: Option<&str>, external: ExternalChoice) -> bool {
    is_internal(d, stick_disk)
        || (external == ExternalChoice::Wipe
            && is_external(d)
            && d.transport != Transport::Loop
            && d.capacity_bytes > 0
            && Some(d.name.as_str()) != stick_disk)
}

/// The wipe settings of the site.
fn wipe_spec(site: &Site) -> (WipeSpec, crate::firmware::Policy) {
    let spec = WipeSpec {
        pattern: site.wipe.pattern,
        passes: site.wipe.passes,
        verify: site.wipe.verify,
        discard: site.wipe.discard,
        after_purge: site.wipe.after_purge,
    };
    let policy = crate::firmware::Policy {
        allow_security_erase: site.wipe.allow_security_erase,
        expose_hpa: site.wipe.hidden_areas == crate::site::HiddenAreasChoice::Expose,
        psid_revert: site.wipe.opal_psid_revert,
        ..Default::default()
    };
    (spec, policy)
}

/// The firmware plan of each claimed disk (probing only); a named method a drive lacks falls back to
/// the automatic plan ([`Event::PlanFallback`]).
///
/// Drives frozen by the BIOS: with `[wipe] unfreeze = "suspend"` the laptop is suspended to RAM once
/// with an RTC wake alarm and the plan is made again; each such disk's record starts with the
/// `unfreeze` step and what it achieved. Without that permission the plan falls back and its skipped
/// steps say `frozen`.
pub fn plan_step(
    site: &Site,
    claimed: &[Claimed],
    ports: &dyn Ports,
    say: &mut dyn FnMut(Event<'_>),
) -> anyhow::Result<Vec<wipe::FirmwarePrelude>> {
    let (_, policy) = wipe_spec(site);
    let plan = |say: &mut dyn FnMut(Event<'_>)| match wipe::plan_claimed(claimed, site.wipe.method, &policy) {
        Ok(p) => Ok(p),
        Err(wipe::WipeError::Plan(e)) => {
            say(Event::PlanFallback { why: &e.to_string() });
            wipe::plan_claimed(claimed, crate::firmware::Method::Auto, &policy).map_err(|e| anyhow::anyhow!("{e}"))
        }
        Err(e) => Err(anyhow::anyhow!("{e}")),
    };
    let plans = plan(say)?;
    for (c, p) in claimed.iter().zip(&plans) {
        for note in &p.notes {
            say(Event::PlanNote {
                disk: &c.disk.name,
                note,
            });
        }
    }
    let frozen: Vec<bool> = plans.iter().map(crate::unfreeze::is_frozen).collect();
    if site.wipe.unfreeze != crate::site::UnfreezeChoice::Suspend || !frozen.contains(&true) {
        return Ok(plans);
    }
    drop(plans);
    let seconds = crate::unfreeze::UNFREEZE_SECONDS;
    say(Event::Suspending {
        frozen: frozen.iter().filter(|f| **f).count(),
        seconds,
    });
    let started = cert::now_utc();
    let slept = ports.suspend_for(seconds);
    let mut plans = plan(say)?;
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
    progress: Vec<Box<dyn wipe::Progress + Send>>,
) -> anyhow::Result<Vec<DiskRecord>> {
    let (spec, _) = wipe_spec(site);
    wipe::wipe_planned(claimed, plans, &spec, stop, progress).map_err(|e| anyhow::anyhow!("{e}"))
}

/// What the installed system's `machine.json` says about this laptop (certificate `id`, SMBIOS).
pub fn identity(audited: &Audited, id: &str) -> crate::install::identity::Machine {
    let h = &audited.host;
    crate::install::identity::Machine {
        certificate_id: id.to_owned(),
        donor_url: None,
        serial: h.system.serial.clone(),
        asset_tag: h.chassis.as_ref().and_then(|c| c.asset_tag.clone()),
        vendor: h.system.vendor.clone(),
        model: h.system.product.clone(),
    }
}

/// Installs the site's OS image onto the chosen erased disk; `None` when the site installs nothing or
/// no disk ended erased.
// The job's pieces are passed one by one, as the other steps take them.
#[allow(clippy::too_many_arguments)]
pub fn install_step(
    site: &Site,
    dir: &Path,
    image_key: &Path,
    claimed: &[Claimed],
    records: &[DiskRecord],
    machine: &crate::install::identity::Machine,
    progress: &(dyn Fn(lapterop_osimage::install::Progress) + Sync),
    say: &mut dyn FnMut(Event<'_>),
) -> Option<InstallRecord> {
    let i = site.install.as_ref()?;
    let target = choose_target(claimed, records, i.target)?;
    let location = Site::image_location(i, dir);
    if let Some(ignored) = &i.ignored_trust {
        say(Event::TrustIgnored {
            configured: ignored,
            trusted: image_key,
        });
    }
    say(Event::InstallStarting {
        location: &location,
        target: &target.disk.name,
    });
    Some(match cert::keys::read_public_key(image_key) {
        Ok(trusted) => crate::install::install_onto(
            target,
            &location,
            &trusted,
            &lapterop_osimage::install::InstallOptions::default(),
            Some(&crate::install::Identity {
                machine: machine.clone(),
                hostname_pattern: i.hostname.clone(),
            }),
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

/// Sends the outbox when a server is configured: what became of certificate `id`, and its donor page.
pub fn upload_step(
    site: &Site,
    station: &Station,
    id: &str,
    ports: &dyn Ports,
    say: &mut dyn FnMut(Event<'_>),
) -> anyhow::Result<(Option<Sent>, Option<String>)> {
    match &site.server {
        None => Ok((None, None)),
        Some(server) => {
            // A cable just plugged in may be seconds from its lease (DHCP, a switch port's spanning
            // tree): worth a short wait before the certificate is left for the courier.
            crate::network::wait_for_lease_if_cable(UPLOAD_LEASE_WAIT);
            let (sent, url) = send_outbox(&station.outbox, server, id, &mut |d| ports.sleep(d), say)?;
            Ok((Some(sent), url))
        }
    }
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

/// How long the upload waits for a lease when a cable is in but DHCP has not answered yet.
pub const UPLOAD_LEASE_WAIT: Duration = Duration::from_secs(20);

/// One sender at a time: the job's own upload and the courier (a lease arriving) never send the same
/// certificate twice at once.
static SENDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Sends every pending certificate of the outbox (older ones first) with a few retries; returns what
/// became of `id` and its donor page.
pub fn send_outbox(
    outbox: &Outbox,
    server: &crate::site::Server,
    id: &str,
    sleep: &mut dyn FnMut(Duration),
    say: &mut dyn FnMut(Event<'_>),
) -> anyhow::Result<(Sent, Option<String>)> {
    let key = server
        .key
        .as_deref()
        .map(cert::keys::read_public_key)
        .transpose()
        .context("the server key in the site config")?;
    let uploader = Uploader::new(&server.url, key, Duration::from_secs(30));
    let _one_sender = SENDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let results = crate::outbox::upload_with_backoff(
        outbox,
        &uploader,
        3,
        Duration::from_secs(2),
        Duration::from_secs(8),
        sleep,
    )
    .context("reading the outbox")?;
    let mut mine = Sent::AlreadyDone;
    for (entry, sent) in results {
        let name = entry.certificate.file_name().map(|n| n.to_string_lossy().into_owned());
        say(Event::Sent {
            file: name.as_deref().unwrap_or("?"),
            sent: &sent,
        });
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
        .filter(|(c, r)| r.outcome.status != OutcomeStatus::NotErased && !is_external(&c.disk))
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
pub(super) fn refused_record(d: &Disk, why: &str) -> DiskRecord {
    wipe::not_wiped(d, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, transport: Transport, bytes: u64) -> Disk {
        Disk {
            transport,
            ..Disk::for_tests(name, &Path::new("/dev").join(name), bytes)
        }
    }

    #[test]
    fn sd_cards_and_usb_disks_are_taken_only_when_the_site_says_so() {
        let emmc = disk("mmcblk0", Transport::Mmc, 32 << 30);
        let card = Disk {
            card: true,
            ..disk("mmcblk1", Transport::Mmc, 64 << 30)
        };
        let usb = disk("sdb", Transport::Usb, 500 << 30);
        let stick = disk("sdc", Transport::Usb, 8 << 30);
        let empty_reader = Disk {
            card: true,
            ..disk("mmcblk2", Transport::Mmc, 0)
        };
        let take = |d: &Disk, e| chosen_by_default(d, Some("sdc"), e);
        for external in [ExternalChoice::Leave, ExternalChoice::Wipe] {
            assert!(take(&emmc, external), "the eMMC is always wiped");
            assert!(!take(&stick, external), "never the stick");
            assert!(!take(&empty_reader, external), "an empty reader is no disk");
        }
        assert!(!take(&card, ExternalChoice::Leave) && !take(&usb, ExternalChoice::Leave));
        assert!(take(&card, ExternalChoice::Wipe) && take(&usb, ExternalChoice::Wipe));
        assert!(!is_internal(&card, None) && is_external(&card));
    }
}
